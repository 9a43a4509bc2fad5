//! Bearer authentication, 401/403, revocation, rate limits and user JWTs.

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::harness::{both_backends, eventually, Backend, TestApp, TEST_JWT_SECRET};

both_backends!(
    missing_and_bad_credentials_get_the_documented_401,
    padded_and_unpadded_tokens_both_work,
    a_key_of_another_account_is_forbidden,
    a_key_revoked_through_the_api_stops_at_once,
    a_key_revoked_elsewhere_stops_within_the_cache_ttl,
    the_rate_limit_answers_429_with_retry_after,
    user_jwts_carry_the_documented_header_and_claims,
    a_generated_jwt_secret_survives_a_restart,
);

/// The seed's 401 body, to the letter, plus our `requestId`.
fn assert_documented_401(body: &Value) {
    let mut body = body.clone();
    let request_id = body
        .as_object_mut()
        .unwrap()
        .remove("requestId")
        .expect("requestId");
    assert!(request_id.as_str().unwrap().starts_with("req_"));
    assert_eq!(
        body,
        json!({
            "type": "response",
            "success": false,
            "description": "Unauthorized",
            "data": {},
            "error": {
                "module": "Auth",
                "code": "UNAUTHORIZED",
                "message": "Invalid or missing authentication credentials"
            }
        })
    );
}

async fn missing_and_bad_credentials_get_the_documented_401(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let url = account.url("/rooms");
    let wrong_key = STANDARD.encode(format!("{}:ck_wrongwrongwrongwr", account.id));
    let other_account = STANDARD.encode(format!("{}:{}", uuid::Uuid::new_v4(), account.api_key));
    let headers = [
        None,
        Some("".to_owned()),
        Some("Bearer".to_owned()),
        Some("Bearer garbage!!".to_owned()),
        Some(format!("Bearer {wrong_key}")),
        Some(format!("Bearer {other_account}")),
        Some(format!("Basic {}", account.token)),
        Some(format!("Bearer {}", STANDARD.encode("not-a-uuid:key"))),
        Some(format!("Bearer {}", "A".repeat(10_000))),
    ];
    for header in headers {
        let mut request = app.client.get(&url);
        if let Some(header) = &header {
            request = request.header("authorization", header);
        }
        let reply = crate::harness::Reply::from(request.send().await.unwrap()).await;
        reply.expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert_documented_401(&reply.body);
    }
    // The same body whatever the route or method.
    let reply = app
        .call(
            Method::POST,
            &format!("/v1/accounts/{}/users", account.id),
            Some(json!({})),
        )
        .await;
    assert_documented_401(&reply.body);
}

async fn padded_and_unpadded_tokens_both_work(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    // Generated keys make `accountId:apiKey` exactly 57 bytes, which base64 needs no padding
    // for; a (legacy or hand-made) 19-character key encodes with one `=`.
    assert!(!account.token.ends_with('='));
    account.get("/rooms").await.expect(StatusCode::OK);
    let secret = "ck_0123456789abcdef";
    let store = collabkit::app::open_store(&app.config).await.unwrap();
    store
        .create_api_key(
            &collabkit::store::NewApiKey {
                id: collabkit::domain::ApiKeyId::new(),
                account_id: account.id.parse().unwrap(),
                key_hash: collabkit::auth::api_keys::hash_key(secret),
                prefix: secret[..7].to_owned(),
                name: String::new(),
                created_at: collabkit::domain::Timestamp::now(),
            },
            20,
        )
        .await
        .unwrap();
    let padded = STANDARD.encode(format!("{}:{secret}", account.id));
    assert!(padded.ends_with('=') && !padded.ends_with("=="));
    for token in [padded.clone(), padded.trim_end_matches('=').to_owned()] {
        let reply = account
            .send(app.client.get(account.url("/rooms")).bearer_auth(&token))
            .await;
        reply.expect(StatusCode::OK);
    }
    // One character short of the key is not the key, padded or not.
    let short = STANDARD.encode(format!("{}:{}", account.id, &secret[..18]));
    for token in [short.clone(), short.trim_end_matches('=').to_owned()] {
        let reply = account
            .send(app.client.get(account.url("/rooms")).bearer_auth(&token))
            .await;
        reply.expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
}

async fn a_key_of_another_account_is_forbidden(backend: Backend) {
    let app = TestApp::start(backend).await;
    let alice = app.account().await;
    let bob = app.account().await;
    let room = alice.room("alice's room").await;
    let room_id = room["id"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, "/rooms".to_owned()),
        (Method::GET, format!("/rooms/{room_id}")),
        (Method::POST, "/rooms".to_owned()),
        (Method::DELETE, format!("/rooms/{room_id}")),
        (Method::GET, format!("/users?roomId={room_id}")),
        (Method::GET, String::new()),
    ] {
        let url = format!("{}/v1/accounts/{}{path}", app.base, alice.id);
        let request = app
            .client
            .request(method, url)
            .bearer_auth(&bob.token)
            .json(&json!({"name": "x"}));
        let reply = bob.send(request).await;
        reply.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN");
        assert_eq!(reply.body["error"]["module"], "Auth");
    }
    // Nothing happened to Alice's room.
    alice
        .get(&format!("/rooms/{room_id}"))
        .await
        .expect(StatusCode::OK);
    // A malformed account in the path is not Bob's either.
    let url = format!("{}/v1/accounts/not-an-account/rooms", app.base);
    let reply = bob.send(app.client.get(url).bearer_auth(&bob.token)).await;
    reply.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN");
}

async fn a_key_revoked_through_the_api_stops_at_once(backend: Backend) {
    // A long cache TTL: only the local revocation can make the key fail this fast.
    let app = TestApp::start_with(backend, |c| c.auth.key_cache_ttl_ms = 600_000).await;
    let account = app.account().await;
    let second = account.post("/keys", json!({})).await;
    second.expect(StatusCode::CREATED);
    let second_token = second.data()["token"].as_str().unwrap().to_owned();
    let second_id = second.data()["key"]["id"].as_str().unwrap().to_owned();
    let with_second = || {
        app.client
            .get(account.url("/rooms"))
            .bearer_auth(&second_token)
    };
    account.send(with_second()).await.expect(StatusCode::OK);

    let revoked = account.delete(&format!("/keys/{second_id}")).await;
    revoked.expect(StatusCode::OK);
    assert_eq!(revoked.data()["key"]["id"], second_id.as_str());
    assert!(revoked.data()["key"]["revoked_at"].is_string());

    let reply = account.send(with_second()).await;
    reply.expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_documented_401(&reply.body);
    // The first key still works, and the list shows one revoked key.
    let keys = account.get("/keys").await;
    keys.expect(StatusCode::OK);
    let keys = keys.data()["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.iter().filter(|k| k["revoked_at"].is_null()).count(), 1);
    assert!(keys
        .iter()
        .all(|k| k.get("key_hash").is_none() && k.get("apiKey").is_none()));
}

async fn a_key_revoked_elsewhere_stops_within_the_cache_ttl(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.auth.key_cache_ttl_ms = 300).await;
    let account = app.account().await;
    account.get("/rooms").await.expect(StatusCode::OK);
    // Another node (here: a second store on the same database) revokes the key.
    let other_node = collabkit::app::open_store(&app.config).await.unwrap();
    other_node
        .revoke_api_key(account.id.parse().unwrap(), account.key_id.parse().unwrap())
        .await
        .unwrap();
    let stopped = eventually(Duration::from_secs(5), || async {
        account.get("/rooms").await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(
        stopped,
        "a key revoked elsewhere still works after the cache TTL"
    );
}

async fn the_rate_limit_answers_429_with_retry_after(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.rate_limit.per_second = 1;
        c.rate_limit.burst = 3;
    })
    .await;
    let account = app.account().await;
    let other = app.account().await;
    for _ in 0..3 {
        account.get("/rooms").await.expect(StatusCode::OK);
    }
    let reply = account.get("/rooms").await;
    reply.expect_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert_eq!(reply.body["error"]["module"], "Auth");
    let retry_after: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    // Per key: another account's key is not affected.
    other.get("/rooms").await.expect(StatusCode::OK);
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn user_jwts_carry_the_documented_header_and_claims(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room = account.room("jwt room").await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let created = account.user(room["id"].as_str().unwrap(), "Alice").await;
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with("eyJhbGciOiJIUzI1NiIs"));
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(
        decode_part(parts[0]),
        json!({ "alg": "HS256", "typ": "JWT" })
    );
    let claims = decode_part(parts[1]);
    assert_eq!(claims["accountId"], account.id.as_str());
    assert_eq!(claims["userId"], created["user"]["id"]);
    assert_eq!(claims["roomId"], room["id"]);
    let iat = claims["iat"].as_i64().unwrap();
    assert!(
        (before - 1..=before + 5).contains(&iat),
        "iat {iat} vs now {before}"
    );
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 90 * 24 * 60 * 60);

    let mut mac = Hmac::<Sha256>::new_from_slice(TEST_JWT_SECRET.as_bytes()).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    mac.verify_slice(&signature)
        .expect("signed with the configured secret");

    // Get-user shows the same token.
    let user_id = created["user"]["id"].as_str().unwrap();
    let fetched = account
        .get(&format!(
            "/users/{user_id}?roomId={}",
            room["id"].as_str().unwrap()
        ))
        .await;
    fetched.expect(StatusCode::OK);
    assert_eq!(fetched.data()["user"]["token"], token);
}

async fn a_generated_jwt_secret_survives_a_restart(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.jwt_secret = String::new()).await;
    let secret_file = app.config.data_dir.join("jwt-secret");
    assert!(
        secret_file.exists(),
        "the generated secret is kept in the data directory"
    );
    let account = app.account().await;
    let room = account.room("restart").await;
    let room_id = room["id"].as_str().unwrap().to_owned();
    let created = account.user(&room_id, "Alice").await;
    let user_id = created["user"]["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();

    let config = app.config.clone();
    let db = app.stop().await;
    let app = TestApp::start_on(db, config).await;
    let account = crate::harness::TestAccount::clone(&account);
    let reply = account
        .send(
            app.client
                .get(format!(
                    "{}/v1/accounts/{}/users/{user_id}?roomId={room_id}",
                    app.base, account.id
                ))
                .bearer_auth(&account.token),
        )
        .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.data()["user"]["token"], token.as_str());
    // The secret file holds the secret that signs it.
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.trim().as_bytes()).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
        .unwrap();
}
