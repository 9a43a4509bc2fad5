//! Room files over REST, on both databases and both storage backends (a local directory, and
//! S3 as a real `moto` server speaks it): the documented examples (curl's `-F` form too),
//! filters, the public GET (ETag, 304, Range, HEAD, safe headers), delete, API keys and user
//! JWTs, limits, hostile names and spoofed types, interrupted uploads, events, and what room
//! deletion and a restart clean up.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::TryStreamExt as _;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;

use crate::harness::{count_rows, eventually, Backend, Reply, TestAccount, TestApp};
use crate::socket::Socket;

/// Runs each scenario on {SQLite, PostgreSQL} x {local directory, S3}.
macro_rules! files_scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::{Backend, Storage};

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_local() {
                    super::$name(Backend::Sqlite, Storage::Local).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_local() {
                    super::$name(Backend::Postgres, Storage::Local).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_s3() {
                    super::$name(Backend::Sqlite, Storage::S3).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_s3() {
                    super::$name(Backend::Postgres, Storage::S3).await
                }
            }
        )*
    };
}

files_scenarios!(
    documented_examples_round_trip,
    lists_filter_by_type_and_uploader,
    jwts_allow_their_own_room_and_user_only,
    size_limit_and_quota_leave_nothing_behind,
    hostile_names_and_spoofed_types_are_served_safely,
    interrupted_uploads_leave_nothing,
    concurrent_uploads_of_one_name_get_two_keys,
    events_reach_sockets_and_webhooks,
    deleting_a_room_deletes_its_files_and_a_restart_sweeps_leftovers,
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Local,
    S3,
}

const WAIT: Duration = Duration::from_secs(15);
const BUCKET: &str = "collabkit-test";

/// A `moto` S3 server on a free loopback port, stopped when dropped. Not finding moto fails
/// the test (`.ci/run` installs it): the S3 path is never skipped silently.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server (pip install 'moto[server]'; .ci/run does)");
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let up = eventually(Duration::from_secs(60), || {
            let request = client.get(format!("{}/moto-api/", moto.endpoint)).send();
            async move { request.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        assert!(up, "moto did not start on port {port}");
        let made = client
            .put(format!("{}/{BUCKET}", moto.endpoint))
            .send()
            .await
            .unwrap();
        assert!(
            made.status().is_success(),
            "creating the bucket: {}",
            made.status()
        );
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server on `backend` with files on `storage` (moto started for S3), configured further
/// by `tweak`.
pub async fn start(
    backend: Backend,
    storage: Storage,
    tweak: impl FnOnce(&mut collabkit::config::Config),
) -> (TestApp, Option<Moto>) {
    let moto = match storage {
        Storage::Local => None,
        Storage::S3 => Some(Moto::start().await),
    };
    let endpoint = moto.as_ref().map(|m| m.endpoint.clone());
    let app = TestApp::start_with(backend, |config| {
        if let Some(endpoint) = endpoint {
            s3_config(config, &endpoint);
        }
        tweak(config);
    })
    .await;
    (app, moto)
}

fn s3_config(config: &mut collabkit::config::Config, endpoint: &str) {
    let files = &mut config.files;
    files.backend = collabkit::config::FilesBackend::S3;
    files.s3.endpoint = endpoint.to_owned();
    files.s3.bucket = BUCKET.to_owned();
    files.s3.access_key_id = "testing".to_owned();
    files.s3.secret_access_key = "testing".to_owned();
    files.s3.path_style = true;
}

/// A room and a user in it: (room id, user id, user's JWT).
async fn room_and_user(account: &TestAccount) -> (String, String, String) {
    let room = account.room("gallery").await;
    let room_id = room["id"].as_str().unwrap().to_owned();
    let data = account.user(&room_id, "Alice").await;
    (
        room_id,
        data["user"]["id"].as_str().unwrap().to_owned(),
        data["token"].as_str().unwrap().to_owned(),
    )
}

fn form(room_id: &str, user_id: &str, name: &str, bytes: Vec<u8>) -> Form {
    Form::new()
        .text("roomId", room_id.to_owned())
        .text("userId", user_id.to_owned())
        .part("file", Part::bytes(bytes).file_name(name.to_owned()))
}

async fn upload(
    account: &TestAccount,
    room: &str,
    user: &str,
    name: &str,
    bytes: Vec<u8>,
) -> Reply {
    account
        .send(
            account
                .request(Method::POST, "/upload")
                .multipart(form(room, user, name, bytes)),
        )
        .await
}

/// Uploads and returns the key.
async fn uploaded(
    account: &TestAccount,
    room: &str,
    user: &str,
    name: &str,
    bytes: Vec<u8>,
) -> String {
    let reply = upload(account, room, user, name, bytes).await;
    reply.expect(StatusCode::CREATED);
    reply.data()["file"]["key"].as_str().unwrap().to_owned()
}

async fn list(account: &TestAccount, query: &str) -> Vec<Value> {
    let reply = account.get(&format!("/files?{query}")).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "Files retrieved");
    reply.data()["files"].as_array().unwrap().clone()
}

fn png(len: usize) -> Vec<u8> {
    let mut bytes = vec![
        0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R',
    ];
    bytes.extend((0..len.saturating_sub(16)).map(|i| (i % 251) as u8));
    bytes
}

/// Every object in the app's file storage.
async fn objects(app: &TestApp) -> usize {
    let all: Vec<_> = app
        .state
        .engine()
        .storage()
        .list()
        .try_collect()
        .await
        .unwrap();
    all.len()
}

async fn documented_examples_round_trip(backend: Backend, storage: Storage) {
    let (app, _moto) = start(backend, storage, |_| {}).await;
    let account = app.account().await;
    let (room_id, user_id, _) = room_and_user(&account).await;
    let bytes = png(3000);

    let reply = upload(
        &account,
        &room_id,
        &user_id,
        "screenshot.png",
        bytes.clone(),
    )
    .await;
    reply.expect(StatusCode::CREATED);
    assert_eq!(reply.body["description"], "File uploaded");
    let file = &reply.data()["file"];
    let key = file["key"].as_str().unwrap().to_owned();
    assert_eq!(
        file["url"],
        format!("{}/v1/accounts/{}/storage/{key}", app.base, account.id)
    );
    assert!(key.ends_with(".png"), "{key}");

    let files = list(&account, &format!("roomId={room_id}")).await;
    assert_eq!(files.len(), 1);
    let listed = &files[0];
    let fields: Vec<&str> = listed
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "key",
            "url",
            "filename",
            "mimeType",
            "size",
            "uploadedAt",
            "uploadedBy"
        ]
    );
    assert_eq!(listed["key"], key.as_str());
    assert_eq!(listed["filename"], "screenshot.png");
    assert_eq!(listed["mimeType"], "image/png");
    assert_eq!(listed["size"], bytes.len());
    assert_eq!(listed["uploadedBy"], user_id.as_str());
    assert!(listed["uploadedAt"].as_str().unwrap().ends_with('Z'));

    // The public GET: no credentials.
    let url = file["url"].as_str().unwrap().to_owned();
    let got = app.client.get(&url).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    let headers = got.headers().clone();
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["content-length"], bytes.len().to_string().as_str());
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("inline"));
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(got.bytes().await.unwrap().as_ref(), bytes.as_slice());

    let cached = app
        .client
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(cached.headers()["etag"], etag.as_str());
    assert!(cached.bytes().await.unwrap().is_empty());

    let part = app
        .client
        .get(&url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 100-199/{}", bytes.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &bytes[100..200]);
    let tail = app
        .client
        .get(&url)
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        tail.bytes().await.unwrap().as_ref(),
        &bytes[bytes.len() - 10..]
    );
    let beyond = app
        .client
        .get(&url)
        .header("range", format!("bytes={}-", bytes.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    Reply::from(beyond)
        .await
        .expect_error(StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_NOT_SATISFIABLE");

    let head = app.client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()["content-length"],
        bytes.len().to_string().as_str()
    );
    assert_eq!(head.headers()["etag"], etag.as_str());

    // Compression never changes a stored file.
    let gz = app
        .client
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(gz.headers().get("content-encoding").is_none());

    // curl's -F form, as the documentation shows it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, b"hello from curl").unwrap();
    let output = Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            &account.url("/upload"),
            "-H",
            &format!("Authorization: Bearer {}", account.token),
            "-F",
            &format!("roomId={room_id}"),
            "-F",
            &format!("userId={user_id}"),
            "-F",
            &format!("file=@{}", path.display()),
        ])
        .output()
        .expect("curl runs");
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["description"], "File uploaded");
    let curl_url = answer["data"]["file"]["url"].as_str().unwrap();
    let text = app.client.get(curl_url).send().await.unwrap();
    assert_eq!(text.headers()["content-type"], "text/plain");
    assert_eq!(text.text().await.unwrap(), "hello from curl");

    // Delete: JSON { key }.
    let reply = account
        .send(
            account
                .request(Method::DELETE, "/upload")
                .json(&json!({ "key": key })),
        )
        .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "File deleted");
    assert_eq!(reply.data()["key"], key.as_str());
    let gone = app
        .call(Method::GET, &url.replacen(&app.base, "", 1), None)
        .await;
    gone.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(gone.body["error"]["module"], "Storage");
    let again = account
        .send(
            account
                .request(Method::DELETE, "/upload")
                .json(&json!({ "key": key })),
        )
        .await;
    again.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(list(&account, &format!("roomId={room_id}")).await.len(), 1);
    assert_eq!(objects(&app).await, 1);

    // Requests that cannot be served.
    account
        .get("/files")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    let missing = upload(
        &account,
        &room_id,
        &uuid::Uuid::new_v4().to_string(),
        "a.png",
        png(20),
    )
    .await;
    missing.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    let no_file = account
        .send(
            account.request(Method::POST, "/upload").multipart(
                Form::new()
                    .text("roomId", room_id.clone())
                    .text("userId", user_id.clone()),
            ),
        )
        .await;
    no_file.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    // A field the API does not take is refused, as in JSON bodies, and nothing is stored.
    let files_before = list(&account, &format!("roomId={room_id}")).await.len();
    let extra = account
        .send(
            account.request(Method::POST, "/upload").multipart(
                Form::new()
                    .text("roomId", room_id.clone())
                    .text("userId", user_id.clone())
                    .text("caption", "hello")
                    .part("file", Part::bytes(png(20)).file_name("a.png")),
            ),
        )
        .await;
    extra.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert_eq!(extra.body["error"]["field"], "caption");
    assert_eq!(
        list(&account, &format!("roomId={room_id}")).await.len(),
        files_before
    );
    let not_multipart = account.post("/upload", json!({ "roomId": room_id })).await;
    not_multipart.expect_error(StatusCode::BAD_REQUEST, "BAD_REQUEST");
    let unknown = format!(
        "/v1/accounts/{}/storage/{}",
        account.id, "abcdef12/0123456789abcdef0123456789abcdef.png"
    );
    app.call(Method::GET, &unknown, None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

async fn lists_filter_by_type_and_uploader(backend: Backend, storage: Storage) {
    let (app, _moto) = start(backend, storage, |_| {}).await;
    let account = app.account().await;
    let (room_id, alice, _) = room_and_user(&account).await;
    let bob = account.user(&room_id, "Bob").await["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let image = uploaded(&account, &room_id, &alice, "a.png", png(100)).await;
    let pdf = uploaded(
        &account,
        &room_id,
        &bob,
        "b.pdf",
        b"%PDF-1.4\n%\xe2\xe3\n1 0 obj".to_vec(),
    )
    .await;
    let text = uploaded(&account, &room_id, &bob, "c.txt", b"plain words".to_vec()).await;
    let other_room = account.room("other").await;
    let other_room = other_room["id"].as_str().unwrap();
    let carl = account.user(other_room, "Carl").await["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    uploaded(&account, other_room, &carl, "d.png", png(50)).await;

    let keys = |files: Vec<Value>| {
        let mut keys: Vec<String> = files
            .iter()
            .map(|f| f["key"].as_str().unwrap().to_owned())
            .collect();
        keys.sort();
        keys
    };
    let sorted = |mut k: Vec<String>| {
        k.sort();
        k
    };
    let all = list(&account, &format!("roomId={room_id}")).await;
    assert_eq!(
        keys(all),
        sorted(vec![image.clone(), pdf.clone(), text.clone()])
    );
    let images = list(&account, &format!("roomId={room_id}&mimeType=image/")).await;
    assert_eq!(keys(images), vec![image.clone()]);
    let either = list(
        &account,
        &format!("roomId={room_id}&mimeType=image/png&mimeType=application/pdf"),
    )
    .await;
    assert_eq!(keys(either), sorted(vec![image.clone(), pdf.clone()]));
    let bobs = list(&account, &format!("roomId={room_id}&userId={bob}")).await;
    assert_eq!(keys(bobs), sorted(vec![pdf.clone(), text.clone()]));
    let bobs_text = list(
        &account,
        &format!("roomId={room_id}&userId={bob}&mimeType=text/"),
    )
    .await;
    assert_eq!(keys(bobs_text), vec![text.clone()]);
    let none = list(&account, &format!("roomId={room_id}&mimeType=video/")).await;
    assert!(none.is_empty());
    account
        .get(&format!("/files?roomId={}", uuid::Uuid::new_v4()))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    account
        .get(&format!("/files?roomId={room_id}&userId=nope"))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
}

async fn jwts_allow_their_own_room_and_user_only(backend: Backend, storage: Storage) {
    let (app, _moto) = start(backend, storage, |_| {}).await;
    let account = app.account().await;
    let (room_id, user_id, token) = room_and_user(&account).await;
    let other_room = account.room("other").await;
    let other_room = other_room["id"].as_str().unwrap().to_owned();
    let other_user = account.user(&other_room, "Otto").await;
    let other_user_id = other_user["user"]["id"].as_str().unwrap().to_owned();
    let jwt = |method: Method, path: &str| {
        app.client
            .request(method, account.url(path))
            .bearer_auth(&token)
    };

    // A JWT upload names nothing: the token says the room and the user.
    let only_file = Form::new().part("file", Part::bytes(png(64)).file_name("me.png"));
    let reply = account
        .send(jwt(Method::POST, "/upload").multipart(only_file))
        .await;
    reply.expect(StatusCode::CREATED);
    let key = reply.data()["file"]["key"].as_str().unwrap().to_owned();
    let reply = account.send(jwt(Method::GET, "/files")).await;
    reply.expect(StatusCode::OK);
    let files = reply.data()["files"].as_array().unwrap().clone();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["uploadedBy"], user_id.as_str());

    // Another room, or uploading as another user: refused.
    let elsewhere = account
        .send(jwt(Method::POST, "/upload").multipart(form(&other_room, &user_id, "x.png", png(10))))
        .await;
    elsewhere.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    let as_other = Form::new()
        .text("userId", other_user_id.clone())
        .part("file", Part::bytes(png(10)).file_name("x.png"));
    account
        .send(jwt(Method::POST, "/upload").multipart(as_other))
        .await
        .expect_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    account
        .send(jwt(Method::GET, &format!("/files?roomId={other_room}")))
        .await
        .expect_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    // A file of another room cannot be deleted with this token.
    let theirs = uploaded(&account, &other_room, &other_user_id, "t.png", png(10)).await;
    account
        .send(jwt(Method::DELETE, "/upload").json(&json!({ "key": theirs })))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");

    // Another account's path: 403, with a JWT as with an API key.
    let stranger = app.account().await;
    let foreign = app
        .client
        .get(format!("{}/v1/accounts/{}/files", app.base, stranger.id))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    Reply::from(foreign)
        .await
        .expect_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    let cross = app
        .client
        .get(format!(
            "{}/v1/accounts/{}/files?roomId={room_id}",
            app.base, account.id
        ))
        .bearer_auth(&stranger.token)
        .send()
        .await
        .unwrap();
    Reply::from(cross)
        .await
        .expect_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    // A forged token, or none.
    let forged = format!("{}x", &token[..token.len() - 1]);
    let reply = app
        .client
        .get(account.url("/files"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    Reply::from(reply)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    app.call(
        Method::GET,
        &format!("/v1/accounts/{}/files?roomId={room_id}", account.id),
        None,
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    // The JWT deletes in its room.
    let reply = account
        .send(jwt(Method::DELETE, "/upload").json(&json!({ "key": key })))
        .await;
    reply.expect(StatusCode::OK);

    // A deleted user's token opens nothing; their files stay, uploaded by them.
    let kept = uploaded(&account, &room_id, &user_id, "kept.png", png(10)).await;
    account
        .delete(&format!("/users/{user_id}?roomId={room_id}"))
        .await
        .expect(StatusCode::OK);
    account
        .send(jwt(Method::GET, "/files"))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let files = list(&account, &format!("roomId={room_id}")).await;
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["key"], kept.as_str());
    assert_eq!(files[0]["uploadedBy"], user_id.as_str());

    // CORS lets a browser on a configured origin call the file endpoints.
    drop(app);
    let origin = "https://app.example.com";
    let (app, _moto2) = start(backend, Storage::Local, |c| {
        c.http.cors_origins = vec![origin.to_owned()];
    })
    .await;
    let preflight = app
        .client
        .request(
            Method::OPTIONS,
            format!("{}/v1/accounts/x/upload", app.base),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], origin);
}

async fn size_limit_and_quota_leave_nothing_behind(backend: Backend, storage: Storage) {
    let (app, _moto) = start(backend, storage, |c| {
        c.files.max_file_bytes = 100_000;
        c.files.max_account_bytes = 250_000;
    })
    .await;
    let account = app.account().await;
    let (room_id, user_id, _) = room_and_user(&account).await;

    let reply = upload(&account, &room_id, &user_id, "big.bin", vec![7; 150_000]).await;
    reply.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    assert!(reply.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("100000"));
    // Larger than a part (5 MiB): refused while streaming, the body drained or cut.
    let huge = account
        .request(Method::POST, "/upload")
        .multipart(form(
            &room_id,
            &user_id,
            "huge.bin",
            vec![1; 6 * 1024 * 1024],
        ))
        .send()
        .await;
    if let Ok(response) = huge {
        Reply::from(response)
            .await
            .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    }
    assert!(
        eventually(WAIT, || async {
            count_rows(&app, "files", &room_id).await == 0
        })
        .await,
        "no row is left"
    );
    assert!(
        eventually(WAIT, || async { objects(&app).await == 0 }).await,
        "no object is left"
    );

    // The quota: two files of 100 000 bytes fit in 250 000, a third does not.
    uploaded(&account, &room_id, &user_id, "1.bin", vec![1; 100_000]).await;
    uploaded(&account, &room_id, &user_id, "2.bin", vec![2; 100_000]).await;
    let reply = upload(&account, &room_id, &user_id, "3.bin", vec![3; 100_000]).await;
    reply.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("quota"),
        "{}",
        reply.body
    );
    assert!(
        eventually(WAIT, || async {
            count_rows(&app, "files", &room_id).await == 2
        })
        .await
    );
    assert!(eventually(WAIT, || async { objects(&app).await == 2 }).await);
    // A small one still fits.
    uploaded(&account, &room_id, &user_id, "4.bin", vec![4; 40_000]).await;
}

async fn hostile_names_and_spoofed_types_are_served_safely(backend: Backend, storage: Storage) {
    let (app, _moto) = start(backend, storage, |_| {}).await;
    let account = app.account().await;
    let (room_id, user_id, _) = room_and_user(&account).await;

    let page = b"<!DOCTYPE html><html><script>alert(document.cookie)</script></html>".to_vec();
    let names = [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\win.ini", "win.ini"),
        ("a\u{202E}gnp.html", "agnp.html"),
        ("..", "file"),
    ];
    for (name, kept) in names {
        let key = uploaded(&account, &room_id, &user_id, name, page.clone()).await;
        assert!(!key.contains(".."), "{key}");
        let files = list(&account, &format!("roomId={room_id}")).await;
        let file = files.iter().find(|f| f["key"] == key.as_str()).unwrap();
        assert_eq!(file["filename"], kept, "{name}");
    }
    let long = format!("{}.png", "x".repeat(1000));
    let key = uploaded(&account, &room_id, &user_id, &long, png(40)).await;
    let files = list(&account, &format!("roomId={room_id}")).await;
    let file = files.iter().find(|f| f["key"] == key.as_str()).unwrap();
    assert!(file["filename"].as_str().unwrap().len() <= 255);

    // HTML named .png: served as HTML, but as an attachment in a sandbox.
    let key = uploaded(&account, &room_id, &user_id, "cat.png", page.clone()).await;
    let url = format!("{}/v1/accounts/{}/storage/{key}", app.base, account.id);
    let got = app.client.get(&url).send().await.unwrap();
    assert_eq!(got.headers()["content-type"], "text/html");
    assert!(got.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert!(got.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));
    assert_eq!(got.headers()["x-content-type-options"], "nosniff");
    // A PNG named .html is a PNG.
    let key = uploaded(&account, &room_id, &user_id, "evil.html", png(64)).await;
    let url = format!("{}/v1/accounts/{}/storage/{key}", app.base, account.id);
    let got = app.client.get(&url).send().await.unwrap();
    assert_eq!(got.headers()["content-type"], "image/png");
    // SVG is never inline.
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>".to_vec();
    let key = uploaded(&account, &room_id, &user_id, "logo.svg", svg).await;
    let url = format!("{}/v1/accounts/{}/storage/{key}", app.base, account.id);
    let got = app.client.get(&url).send().await.unwrap();
    assert_eq!(got.headers()["content-type"], "image/svg+xml");
    assert!(got.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    // Bytes of no known kind.
    let key = uploaded(
        &account,
        &room_id,
        &user_id,
        "blob.png",
        vec![0, 159, 146, 150, 0, 1],
    )
    .await;
    let url = format!("{}/v1/accounts/{}/storage/{key}", app.base, account.id);
    let got = app.client.get(&url).send().await.unwrap();
    assert_eq!(got.headers()["content-type"], "application/octet-stream");
    assert!(got.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    // Keys that try to leave their place are simply not found.
    for path in ["../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "abc"] {
        let reply = app
            .call(
                Method::GET,
                &format!("/v1/accounts/{}/storage/{path}", account.id),
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
}

async fn interrupted_uploads_leave_nothing(backend: Backend, storage: Storage) {
    let (app, _moto) = start(backend, storage, |_| {}).await;
    let account = app.account().await;
    let (room_id, user_id, _) = room_and_user(&account).await;

    // A client that announces 20 MB, sends 6 MB of the file (more than a part) and goes.
    let boundary = "collabkitboundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"roomId\"\r\n\r\n{room_id}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"userId\"\r\n\r\n{user_id}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"half.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "POST /v1/accounts/{}/upload HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 20000000\r\n\r\n{head}",
        account.id, account.token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..96 {
        stream.write_all(&chunk).await.unwrap();
    }
    stream.flush().await.unwrap();
    // The upload is under way: its row is there (pending), not listed.
    assert!(
        eventually(WAIT, || async {
            count_rows(&app, "files", &room_id).await == 1
        })
        .await,
        "the upload began"
    );
    assert!(list(&account, &format!("roomId={room_id}"))
        .await
        .is_empty());
    drop(stream);
    assert!(
        eventually(WAIT, || async {
            count_rows(&app, "files", &room_id).await == 0
        })
        .await,
        "no row is left"
    );
    assert!(
        eventually(WAIT, || async { objects(&app).await == 0 }).await,
        "no object is left"
    );
    if storage == Storage::Local {
        // Nor staged parts on disk.
        let dir = app.config.files_dir();
        assert!(
            eventually(WAIT, || async { count_files(&dir) == 0 }).await,
            "files left in {}",
            dir.display()
        );
    }
}

/// Regular files under `dir`, at any depth.
fn count_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                count_files(&path)
            } else {
                1
            }
        })
        .sum()
}

async fn concurrent_uploads_of_one_name_get_two_keys(backend: Backend, storage: Storage) {
    let (app, _moto) = start(backend, storage, |_| {}).await;
    let account = app.account().await;
    let (room_id, user_id, _) = room_and_user(&account).await;
    // Over limits.max_body_bytes (1 MiB), and one over a multipart part (5 MiB): uploads have
    // their own limit, and parts are put back together in order.
    let large = png(6 * 1024 * 1024 + 123);
    let medium = {
        let mut other = png(1536 * 1024);
        other[4000] = 1;
        other
    };
    let (a, b) = tokio::join!(
        upload(&account, &room_id, &user_id, "same.png", large.clone()),
        upload(&account, &room_id, &user_id, "same.png", medium.clone()),
    );
    a.expect(StatusCode::CREATED);
    b.expect(StatusCode::CREATED);
    let (ka, kb) = (&a.data()["file"]["key"], &b.data()["file"]["key"]);
    assert_ne!(ka, kb);
    let files = list(&account, &format!("roomId={room_id}")).await;
    assert_eq!(files.len(), 2);
    assert!(files.iter().all(|f| f["filename"] == "same.png"));
    // Each key serves its own bytes.
    for (reply, bytes) in [(&a, &large), (&b, &medium)] {
        let got = app
            .client
            .get(reply.data()["file"]["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(got.bytes().await.unwrap().as_ref(), bytes.as_slice());
    }
}

async fn events_reach_sockets_and_webhooks(backend: Backend, storage: Storage) {
    let (app, _moto) = start(backend, storage, |c| {
        c.webhooks.allow_private_addresses = true;
    })
    .await;
    let account = app.account().await;
    let (room_id, user_id, token) = room_and_user(&account).await;
    let hook = account
        .post(
            "/webhooks",
            json!({ "url": "http://127.0.0.1:9/hook", "events": ["file.uploaded", "file.deleted"] }),
        )
        .await;
    hook.expect(StatusCode::CREATED);
    let hook_id = hook.data()["webhook"]["id"].as_str().unwrap().to_owned();
    let (mut socket, _) = Socket::join(&app.base, &token).await;

    let key = uploaded(&account, &room_id, &user_id, "live.png", png(100)).await;
    let event = socket.event("fileUploaded").await;
    assert_eq!(event["file"]["key"], key.as_str());
    assert_eq!(event["file"]["mimeType"], "image/png");
    assert_eq!(event["file"]["uploadedBy"], user_id.as_str());
    account
        .send(
            account
                .request(Method::DELETE, "/upload")
                .json(&json!({ "key": key })),
        )
        .await
        .expect(StatusCode::OK);
    let event = socket.event("fileDeleted").await;
    assert_eq!(event["key"], key.as_str());

    let found = eventually(WAIT, || async {
        let reply = account
            .get(&format!("/webhooks/{hook_id}/deliveries?limit=100"))
            .await;
        let deliveries = reply.data()["deliveries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut names: Vec<String> = deliveries
            .iter()
            .map(|d| d["event"].as_str().unwrap_or("").to_owned())
            .collect();
        names.sort();
        names == ["file.deleted", "file.uploaded"]
            && deliveries.iter().all(|d| {
                let body: Value = serde_json::from_str(d["payload"].as_str().unwrap()).unwrap();
                body["file"]["key"] == key.as_str() && body["data"]["key"] == key.as_str()
            })
    })
    .await;
    assert!(found, "file.uploaded and file.deleted deliveries");
}

async fn deleting_a_room_deletes_its_files_and_a_restart_sweeps_leftovers(
    backend: Backend,
    storage: Storage,
) {
    let (app, moto) = start(backend, storage, |c| {
        c.realtime.node_id = "files-node".to_owned();
    })
    .await;
    let account = app.account().await;
    let (room_id, user_id, _) = room_and_user(&account).await;
    let (kept_room, kept_user, _) = room_and_user(&account).await;
    let key = uploaded(&account, &room_id, &user_id, "a.png", png(100)).await;
    let kept = uploaded(&account, &kept_room, &kept_user, "b.png", png(100)).await;
    assert_eq!(objects(&app).await, 2);
    account
        .delete(&format!("/rooms/{room_id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(count_rows(&app, "files", &room_id).await, 0);
    assert!(eventually(WAIT, || async { objects(&app).await == 1 }).await);
    app.call(
        Method::GET,
        &format!("/v1/accounts/{}/storage/{key}", account.id),
        None,
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");

    // What a crash leaves: an object with no row, and an upload pending on this node (its
    // row and object). A restart removes both and keeps the finished file.
    let storage_handle = app.state.engine().storage().clone();
    let account_id: collabkit::domain::AccountId = account.id.parse().unwrap();
    let room: collabkit::domain::RoomId = kept_room.parse().unwrap();
    let orphan = collabkit::domain::FileKey::generate(room, "orphan.bin").unwrap();
    let pending = collabkit::domain::FileKey::generate(room, "pending.bin").unwrap();
    for key in [&orphan, &pending] {
        let mut writer = storage_handle.writer(account_id, key).await.unwrap();
        writer.write(b"left behind").await.unwrap();
        writer.finish().await.unwrap();
    }
    app.state
        .store()
        .begin_upload(&collabkit::store::files::NewUpload {
            key: pending.clone(),
            scope: collabkit::store::RoomScope {
                account_id,
                room_id: room,
            },
            uploaded_by: kept_user.parse().unwrap(),
            filename: "pending.bin".to_owned(),
            started_at: collabkit::domain::Timestamp::now(),
            node_id: collabkit::domain::NodeId::new("files-node"),
        })
        .await
        .unwrap();
    assert_eq!(objects(&app).await, 3);
    // On local disk, a crash mid-upload also leaves the bytes object_store staged.
    let staged = app
        .config
        .files_dir()
        .join(format!("{account_id}/{pending}#1"));
    if storage == Storage::Local {
        std::fs::write(&staged, b"half an upload").unwrap();
    }
    let config = app.config.clone();
    let db = app.abandon().await;
    let app = TestApp::start_on(db, config).await;
    assert!(
        eventually(WAIT, || async { objects(&app).await == 1 }).await,
        "the orphan and the abandoned upload are swept"
    );
    assert_eq!(count_rows(&app, "files", &kept_room).await, 1);
    assert!(!staged.exists(), "staged bytes are swept too");
    assert!(!app
        .state
        .engine()
        .storage()
        .exists(account_id, &orphan)
        .await
        .unwrap());
    let got = app
        .client
        .get(format!(
            "{}/v1/accounts/{}/storage/{kept}",
            app.base, account.id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    drop(moto);
}
