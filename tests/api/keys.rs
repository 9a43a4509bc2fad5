//! The account and its API keys over REST.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{both_backends, Backend, TestApp};

both_backends!(
    keys_are_created_listed_and_revoked,
    the_account_describes_itself,
    accounts_hold_a_bounded_number_of_keys,
);

async fn keys_are_created_listed_and_revoked(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let reply = account.post("/keys", json!({})).await;
    reply.expect(StatusCode::CREATED);
    assert_eq!(reply.body["description"], "API key created");
    let secret = reply.data()["apiKey"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 20);
    assert!(secret.starts_with("ck_"));
    let key = reply.data()["key"].clone();
    assert_eq!(key["prefix"], &secret[..7]);
    assert!(key["revoked_at"].is_null());

    // The new key works on its own.
    let token = reply.data()["token"].as_str().unwrap().to_owned();
    let with_new = account
        .send(app.client.get(account.url("/rooms")).bearer_auth(&token))
        .await;
    with_new.expect(StatusCode::OK);

    let list = account.get("/keys").await;
    list.expect(StatusCode::OK);
    assert_eq!(list.body["description"], "API keys retrieved");
    let keys = list.data()["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let text = list.body.to_string();
    assert!(
        !text.contains(&secret) && !text.contains(&account.api_key),
        "secrets never listed"
    );

    let id = key["id"].as_str().unwrap();
    account
        .delete(&format!("/keys/{id}"))
        .await
        .expect(StatusCode::OK);
    // Revoking twice is harmless; revoking an unknown key is 404.
    account
        .delete(&format!("/keys/{id}"))
        .await
        .expect(StatusCode::OK);
    account
        .delete(&format!("/keys/{}", uuid::Uuid::new_v4()))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    // Another account cannot revoke this account's keys.
    let other = app.account().await;
    let url = account.url(&format!("/keys/{}", account.key_id));
    other
        .send(app.client.delete(url).bearer_auth(&other.token))
        .await
        .expect_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    account.get("/rooms").await.expect(StatusCode::OK);
}

async fn the_account_describes_itself(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let reply = account.get("").await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.data()["account"]["id"], account.id.as_str());
    assert_eq!(reply.data()["account"]["name"], "Test account");
}

async fn accounts_hold_a_bounded_number_of_keys(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.auth.max_keys_per_account = 2).await;
    let account = app.account().await;
    let second = account.post("/keys", json!({})).await;
    second.expect(StatusCode::CREATED);
    let reply = account.post("/keys", json!({})).await;
    reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert_eq!(reply.body["error"]["field"], "keys");
    assert_eq!(
        account.get("/keys").await.data()["keys"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Revoking one makes room for another.
    let id = second.data()["key"]["id"].as_str().unwrap();
    account
        .delete(&format!("/keys/{id}"))
        .await
        .expect(StatusCode::OK);
    account
        .post("/keys", json!({}))
        .await
        .expect(StatusCode::CREATED);
}
