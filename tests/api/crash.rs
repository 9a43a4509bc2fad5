//! `kill -9` of the real binary under load: socket clients writing to a store, a REST client
//! creating and renaming users and renaming the room, a webhook receiver slow enough that
//! deliveries are in flight. After a restart on the same database, every write acknowledged
//! before the kill is there with its version, and every event of an acknowledged REST change
//! reaches the receiver, and the server's delivery log says so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::cli::ServerProcess;
use crate::harness::{both_backends, eventually, Backend};
use crate::receiver::Receiver;
use crate::socket::Socket;

both_backends!(nothing_acknowledged_is_lost_to_kill_9_under_load);

/// Concurrent socket writers.
const WRITERS: usize = 4;
/// Writes acknowledged, and REST changes, before the kill: enough that it comes mid-load.
const SOCKET_ACKS: usize = 120;
const REST_ACKS: usize = 30;
/// How long the restarted server may take to deliver what it owes.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(20);

/// Quick retries, loopback receivers, and room for the load.
const ENV: &[(&str, &str)] = &[
    ("COLLABKIT_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES", "true"),
    ("COLLABKIT_WEBHOOKS_RETRY_DELAYS_MS", "100,200,300,400,500"),
    ("COLLABKIT_WEBHOOKS_POLL_INTERVAL_MS", "50"),
    ("COLLABKIT_RATE_LIMIT_PER_SECOND", "0"),
    ("COLLABKIT_REALTIME_MESSAGES_PER_SECOND", "10000"),
    ("COLLABKIT_REALTIME_MESSAGE_BURST", "10000"),
];

/// A REST call below `account_url` that may fail (the server is killed under it): the
/// status and body of an answer, or `None`.
async fn call(
    client: &reqwest::Client,
    (account_url, bearer): (&str, &str),
    method: Method,
    path: &str,
    body: Value,
) -> Option<(StatusCode, Value)> {
    let response = client
        .request(method, format!("{account_url}{path}"))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .ok()?;
    let status = response.status();
    Some((status, response.json().await.ok()?))
}

/// What the REST client had acknowledged.
#[derive(Default)]
struct RestAcks {
    /// Users created: their ID and the name they were given.
    created: Vec<(String, String)>,
    /// Renames: the user's ID and the new name.
    renamed: Vec<(String, String)>,
    /// The room's names: the last acknowledged one, and the one in flight when the server died.
    room_name: Option<String>,
    room_name_in_flight: Option<String>,
}

impl RestAcks {
    fn count(&self) -> usize {
        self.created.len() + self.renamed.len()
    }
}

async fn nothing_acknowledged_is_lost_to_kill_9_under_load(backend: Backend) {
    let receiver = Receiver::start().await;
    let mut server = ServerProcess::start_with(backend, ENV).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let room = server.post("/rooms", json!({ "name": "load" })).await;
    let room_id = room["data"]["room"]["id"].as_str().unwrap().to_owned();
    let webhook = server
        .post(
            "/webhooks",
            json!({ "url": receiver.url(), "events": ["user.created", "user.updated"] }),
        )
        .await;
    let webhook_id = webhook["data"]["webhook"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (account_url, bearer) = (server.url(""), server.bearer());
    let (status, _) = call(
        &client,
        (&account_url, &bearer),
        Method::PUT,
        "/stores/tasks",
        json!({ "schema": crate::stores::tasks_schema() }),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::CREATED);
    let mut tokens = Vec::new();
    let mut rest = RestAcks::default();
    for w in 0..WRITERS {
        let name = format!("writer-{w}");
        let user = server
            .post("/users", json!({ "name": name, "roomId": room_id }))
            .await;
        tokens.push(user["data"]["token"].as_str().unwrap().to_owned());
        rest.created.push((
            user["data"]["user"]["id"].as_str().unwrap().to_owned(),
            name,
        ));
    }
    // From now on the receiver is slow: deliveries stay in flight, leased, until the kill.
    receiver.hold();

    // Socket writers: each its own keys, so each acknowledged version is the entry's.
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let writers: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(w, token)| {
            let (base, token, acked) = (server.base.clone(), token.clone(), acked.clone());
            tokio::spawn(async move {
                let (mut socket, _) = Socket::connect(&base, &token).await;
                for i in 0.. {
                    let key = format!("w{w}-{i}");
                    let params = json!({ "store": "tasks", "key": key, "value": { "title": key } });
                    match socket.try_request("stores.set", params).await {
                        Some(Ok(ack)) => {
                            let version = ack["version"].as_i64().expect("a version");
                            acked.lock().unwrap().push((key, version));
                        }
                        Some(Err(error)) => panic!("stores.set {key} refused: {error}"),
                        // The server is gone: whatever was not acknowledged may be lost.
                        None => return,
                    }
                }
            })
        })
        .collect();
    // A REST client: create a user, rename them, rename the room, again and again, until
    // the server goes away under it or the test says stop.
    let rest = Arc::new(Mutex::new(rest));
    let stop = tokio_util::sync::CancellationToken::new();
    let rest_client = {
        let (client, rest, room_id) = (client.clone(), rest.clone(), room_id.clone());
        let (account_url, bearer, stop) = (account_url.clone(), bearer.clone(), stop.clone());
        tokio::spawn(async move {
            let to = (account_url.as_str(), bearer.as_str());
            for i in 0.. {
                if stop.is_cancelled() {
                    return;
                }
                let name = format!("rest-{i}");
                let body = json!({ "name": name, "roomId": room_id });
                let Some((StatusCode::CREATED, created)) =
                    call(&client, to, Method::POST, "/users", body).await
                else {
                    return;
                };
                let id = created["data"]["user"]["id"].as_str().unwrap().to_owned();
                rest.lock()
                    .unwrap()
                    .created
                    .push((id.clone(), name.clone()));
                let renamed = format!("{name}-renamed");
                let path = format!("/users/{id}?roomId={room_id}");
                let body = json!({ "name": renamed });
                let Some((StatusCode::OK, _)) = call(&client, to, Method::PATCH, &path, body).await
                else {
                    return;
                };
                rest.lock().unwrap().renamed.push((id, renamed));
                let room_name = format!("load-{i}");
                rest.lock().unwrap().room_name_in_flight = Some(room_name.clone());
                let path = format!("/rooms/{room_id}");
                let body = json!({ "name": room_name });
                let Some((StatusCode::OK, _)) = call(&client, to, Method::PATCH, &path, body).await
                else {
                    return;
                };
                let mut rest = rest.lock().unwrap();
                rest.room_name = rest.room_name_in_flight.take();
            }
        })
    };
    // The kill comes once enough is acknowledged, while everyone is still writing.
    let loaded = eventually(Duration::from_secs(60), || async {
        acked.lock().unwrap().len() >= SOCKET_ACKS
            && rest.lock().unwrap().count() >= REST_ACKS
            && !receiver.received().is_empty()
    })
    .await;
    assert!(
        loaded && !rest_client.is_finished(),
        "the load did not build up: {} socket writes, {} REST changes, {} deliveries",
        acked.lock().unwrap().len(),
        rest.lock().unwrap().count(),
        receiver.received().len()
    );
    let received_before = receiver.received().len();
    server.crash_and_restart().await;
    // Writers whose sockets died have stopped; a REST client that reached the restarted
    // server is told to.
    stop.cancel();
    for writer in writers {
        tokio::time::timeout(Duration::from_secs(15), writer)
            .await
            .expect("a writer notices the server is gone")
            .expect("a writer ran cleanly");
    }
    tokio::time::timeout(Duration::from_secs(15), rest_client)
        .await
        .expect("the REST client stops")
        .expect("the REST client ran cleanly");
    receiver.release();
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let rest = std::mem::take(&mut *rest.lock().unwrap());
    eprintln!(
        "kill -9 ({backend:?}): {} store writes, {} users created, {} renamed acknowledged; \
         {received_before} deliveries in flight or received before the kill",
        acked.len(),
        rest.created.len(),
        rest.renamed.len(),
    );

    // Every acknowledged store write, with its version.
    let (mut socket, _) = Socket::connect(&server.base, &tokens[0]).await;
    let mut stored = HashMap::new();
    let mut after = Value::Null;
    loop {
        let page = socket
            .request("stores.getAll", json!({ "store": "tasks", "after": after }))
            .await
            .unwrap();
        for entry in page["entries"].as_array().unwrap() {
            stored.insert(
                entry["key"].as_str().unwrap().to_owned(),
                (entry["version"].as_i64().unwrap(), entry["value"].clone()),
            );
        }
        if page["hasMore"] != true {
            break;
        }
        after = page["cursor"].clone();
    }
    let lost: Vec<_> = acked
        .iter()
        .filter(|(key, version)| {
            stored.get(key) != Some(&(*version, json!({ "title": key, "completed": false })))
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost or changed: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );

    // Every acknowledged REST change.
    let renamed: HashMap<&str, &str> = rest
        .renamed
        .iter()
        .map(|(id, name)| (id.as_str(), name.as_str()))
        .collect();
    for (id, name) in &rest.created {
        let got = server.get(&format!("/users/{id}?roomId={room_id}")).await;
        let expected = renamed.get(id.as_str()).copied().unwrap_or(name);
        let got_name = got["data"]["user"]["name"].as_str();
        // A rename in flight at the kill may have been committed too.
        let in_flight = format!("{name}-renamed");
        assert!(
            got_name == Some(expected) || got_name == Some(in_flight.as_str()),
            "user {id} ({expected}) after kill -9: {got}"
        );
    }
    let room = server.get(&format!("/rooms/{room_id}")).await;
    let room_name = room["data"]["room"]["name"].as_str().unwrap_or_default();
    let acknowledged = rest.room_name.as_deref().unwrap_or("load");
    assert!(
        room_name == acknowledged || Some(room_name) == rest.room_name_in_flight.as_deref(),
        "the room is named {room_name:?}; {acknowledged:?} was acknowledged"
    );

    // Every event of an acknowledged change reaches the receiver.
    let missing = |received: &[crate::receiver::Received]| {
        let events: Vec<(String, String, String)> = received
            .iter()
            .map(|r| r.json())
            .map(|e| {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                (
                    text(&e["event"]),
                    text(&e["user"]["id"]),
                    text(&e["user"]["name"]),
                )
            })
            .collect();
        let has = |event: &str, id: &str, name: Option<&str>| {
            events
                .iter()
                .any(|(e, i, n)| e == event && i == id && name.is_none_or(|name| n == name))
        };
        let mut missing = Vec::new();
        for (id, name) in &rest.created {
            if !has("user.created", id, None) {
                missing.push(format!("user.created of {name}"));
            }
        }
        for (id, name) in &rest.renamed {
            if !has("user.updated", id, Some(name)) {
                missing.push(format!("user.updated to {name}"));
            }
        }
        missing
    };
    let delivered = eventually(DELIVERY_DEADLINE, || async {
        missing(&receiver.received()).is_empty()
    })
    .await;
    assert!(
        delivered,
        "events of acknowledged changes never arrived: {:?}",
        missing(&receiver.received())
    );
    // And the server knows it delivered them: its log has nothing pending, even of the
    // deliveries that were in flight when it was killed.
    let pending = || async {
        let mut pending = Vec::new();
        let mut offset = json!(0);
        while let Some(at) = offset.as_i64() {
            let page = server
                .get(&format!(
                    "/webhooks/{webhook_id}/deliveries?limit=100&offset={at}"
                ))
                .await;
            let deliveries = page["data"]["deliveries"].as_array().unwrap();
            pending.extend(
                deliveries
                    .iter()
                    .filter(|d| d["status"] != "success")
                    .map(|d| format!("{} {} {}", d["id"], d["event"], d["status"])),
            );
            offset = page["data"]["nextOffset"].clone();
        }
        pending
    };
    let settled = eventually(DELIVERY_DEADLINE, || async { pending().await.is_empty() }).await;
    assert!(
        settled,
        "deliveries still not done {} s after the restart: {:?}",
        DELIVERY_DEADLINE.as_secs(),
        pending().await
    );
}
