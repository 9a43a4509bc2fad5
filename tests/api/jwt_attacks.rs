//! The JWT attack matrix on the socket's handshake (the first frame, `{type: "auth", token}`):
//! every forged, confused, mangled, expired or orphaned token gets `authFailed` and close
//! 4401, a token over the frame limit gets `PAYLOAD_TOO_LARGE` and 1009, and the valid token
//! still works afterwards.

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{both_backends, Backend, TestApp, TEST_JWT_SECRET};
use crate::realtime::{room_with_users, token, user_id};
use crate::socket::Socket;

both_backends!(every_attack_on_the_token_gets_auth_failed_then_4401);

/// How a forged token is signed.
#[derive(Clone, Copy)]
enum Key<'a> {
    Hs256(&'a [u8]),
    Hs384(&'a [u8]),
    Hs512(&'a [u8]),
    /// An empty signature.
    Unsigned,
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], input: &str) -> Vec<u8> {
    let mut mac = <M as Mac>::new_from_slice(key).unwrap();
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A token made of raw header and claims JSON text (so that duplicated keys survive).
fn forge(header: &str, claims: &str, key: Key<'_>) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let signature = match key {
        Key::Hs256(key) => mac::<Hmac<sha2::Sha256>>(key, &input),
        Key::Hs384(key) => mac::<Hmac<sha2::Sha384>>(key, &input),
        Key::Hs512(key) => mac::<Hmac<sha2::Sha512>>(key, &input),
        Key::Unsigned => Vec::new(),
    };
    format!("{input}.{}", b64(signature))
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

const SECRET: Key<'static> = Key::Hs256(TEST_JWT_SECRET.as_bytes());
const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Each segment of `token` decoded and re-encoded with `engine`.
fn reencode(token: &str, engine: &impl base64::Engine) -> String {
    token
        .split('.')
        .map(|part| engine.encode(URL_SAFE_NO_PAD.decode(part).unwrap()))
        .collect::<Vec<_>>()
        .join(".")
}

async fn every_attack_on_the_token_gets_auth_failed_then_4401(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let other_account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Alice", "Doomed"]).await;
    let (other_room_id, _) = room_with_users(&account, &["Carol"]).await;
    let (_, strangers) = room_with_users(&other_account, &["Mallory"]).await;
    let alice = user_id(&users[0]).to_owned();
    let mallory = user_id(&strangers[0]).to_owned();
    let good = token(&users[0]).to_owned();
    // A deleted user's own token, and the token of a user whose room was deleted.
    let doomed = token(&users[1]).to_owned();
    account
        .delete(&format!("/users/{}?roomId={room_id}", user_id(&users[1])))
        .await
        .expect(StatusCode::OK);
    let (gone_room, orphans) = room_with_users(&account, &["Orphan"]).await;
    account
        .delete(&format!("/rooms/{gone_room}"))
        .await
        .expect(StatusCode::OK);
    let orphan = token(&orphans[0]).to_owned();

    let now = now_secs();
    let claims = json!({
        "accountId": account.id, "userId": alice, "roomId": room_id,
        "iat": now - 10, "exp": now + 3600,
    });
    let with = |changes: Value| {
        let mut claims = claims.clone();
        for (key, value) in changes.as_object().unwrap() {
            claims[key] = value.clone();
        }
        claims.to_string()
    };
    let without = |key: &str| {
        let mut claims = claims.clone();
        claims.as_object_mut().unwrap().remove(key);
        claims.to_string()
    };
    let valid = claims.to_string();
    let signed = |claims: &str| forge(HS256, claims, SECRET);
    let header = |alg: &str, extra: &str| format!(r#"{{"alg":"{alg}","typ":"JWT"{extra}}}"#);
    let attacker_key: &[u8] = b"attacker-chosen-key-attacker-chosen-key";
    let good_signature = good.rsplit('.').next().unwrap().to_owned();
    let signing_input = good.rsplit_once('.').unwrap().0.to_owned();

    let mut attacks: Vec<(String, String)> = Vec::new();
    let mut add = |what: &str, token: String| attacks.push((what.to_owned(), token));
    // alg none, in every casing, unsigned or keeping some signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        add(
            &format!("alg {alg}"),
            forge(&header(alg, ""), &valid, Key::Unsigned),
        );
        add(
            &format!("alg {alg}, signed anyway"),
            forge(&header(alg, ""), &valid, SECRET),
        );
        add(
            &format!("alg {alg}, two segments"),
            format!("{}.{}", b64(header(alg, "")), b64(&valid)),
        );
    }
    // HS256 with the signature taken away.
    add("an empty signature", forge(HS256, &valid, Key::Unsigned));
    add(
        "a signature cut by 4 characters",
        format!(
            "{signing_input}.{}",
            &good_signature[..good_signature.len() - 4]
        ),
    );
    add(
        "a signature cut to 16 bytes",
        format!(
            "{signing_input}.{}",
            b64(&URL_SAFE_NO_PAD.decode(&good_signature).unwrap()[..16])
        ),
    );
    add("a signature of one character", format!("{signing_input}.A"));
    add(
        "a signature of zeros",
        format!("{signing_input}.{}", b64([0u8; 32])),
    );
    // Algorithm confusion: asymmetric algorithms named, the HMAC secret used as their key.
    for alg in ["RS256", "ES256", "PS256", "EdDSA", "hs256", "HS256 ", ""] {
        add(
            &format!("alg {alg:?} signed with the secret"),
            forge(&header(alg, ""), &valid, SECRET),
        );
    }
    add(
        "HS384 with the secret",
        forge(
            &header("HS384", ""),
            &valid,
            Key::Hs384(TEST_JWT_SECRET.as_bytes()),
        ),
    );
    add(
        "HS512 with the secret",
        forge(
            &header("HS512", ""),
            &valid,
            Key::Hs512(TEST_JWT_SECRET.as_bytes()),
        ),
    );
    add(
        "alg HS256 signed with HS512",
        forge(HS256, &valid, Key::Hs512(TEST_JWT_SECRET.as_bytes())),
    );
    // Headers that point at another key, signed with that key.
    for (what, extra, key) in [
        (
            "kid of /dev/null, empty key",
            r#","kid":"../../../../dev/null""#,
            &b""[..],
        ),
        (
            "kid of an attacker's key",
            r#","kid":"attacker""#,
            attacker_key,
        ),
        (
            "kid with SQL",
            r#","kid":"x' UNION SELECT 'attacker-chosen-key-attacker-chosen-key'--""#,
            attacker_key,
        ),
        (
            "jku",
            r#","jku":"http://127.0.0.1:1/jwks.json""#,
            attacker_key,
        ),
        (
            "x5u",
            r#","x5u":"http://127.0.0.1:1/cert.pem""#,
            attacker_key,
        ),
        (
            "an embedded jwk",
            r#","jwk":{"kty":"oct","k":"YXR0YWNrZXItY2hvc2VuLWtleS1hdHRhY2tlci1jaG9zZW4ta2V5"}"#,
            attacker_key,
        ),
    ] {
        add(
            what,
            forge(&header("HS256", extra), &valid, Key::Hs256(key)),
        );
    }
    add(
        "another secret",
        forge(HS256, &valid, Key::Hs256(attacker_key)),
    );
    // Claims missing, one by one (signed with the right secret).
    for key in ["accountId", "userId", "roomId", "iat", "exp"] {
        add(&format!("no {key}"), signed(&without(key)));
    }
    add("no claims", signed("{}"));
    add("claims that are an array", signed("[]"));
    add("claims that are null", signed("null"));
    // Claims of the wrong type or range.
    for (what, changes) in [
        (
            "exp as a string",
            json!({ "exp": (now + 3600).to_string() }),
        ),
        (
            "exp as a float",
            json!({ "exp": (now + 3600) as f64 + 0.5 }),
        ),
        ("exp of 1e30", json!({ "exp": 1e30 })),
        (
            "exp over i64",
            json!({ "exp": 9_223_372_036_854_775_808u64 }),
        ),
        ("exp null", json!({ "exp": null })),
        ("exp true", json!({ "exp": true })),
        ("iat as a string", json!({ "iat": "yesterday" })),
        ("accountId as a number", json!({ "accountId": 1 })),
        ("userId not a UUID", json!({ "userId": "alice" })),
        ("roomId null", json!({ "roomId": null })),
        (
            "userId with a NUL",
            json!({ "userId": format!("{alice}\u{0}") }),
        ),
        ("expired by one second", json!({ "exp": now - 1 })),
        ("expiring now", json!({ "exp": now })),
        ("expired long ago", json!({ "exp": 0 })),
        ("exp negative", json!({ "exp": i64::MIN })),
    ] {
        add(what, signed(&with(changes)));
    }
    // Someone else's identity, correctly signed.
    for (what, changes) in [
        (
            "another account's user, for this room",
            json!({ "accountId": other_account.id, "userId": mallory }),
        ),
        (
            "another account's user, this account",
            json!({ "userId": mallory }),
        ),
        (
            "this user, another account",
            json!({ "accountId": other_account.id }),
        ),
        (
            "this user, another room of the account",
            json!({ "roomId": other_room_id }),
        ),
        (
            "an account that does not exist",
            json!({ "accountId": uuid::Uuid::new_v4() }),
        ),
    ] {
        add(what, signed(&with(changes)));
    }
    add("a deleted user's token", doomed);
    add("a deleted room's user's token", orphan);
    // Duplicated keys: a parser that takes the first and one that takes the last disagree.
    let duplicated = valid.replacen(
        &format!(r#""userId":"{alice}""#),
        &format!(r#""userId":"{alice}","userId":"{mallory}""#),
        1,
    );
    assert_ne!(duplicated, valid);
    add("a duplicated userId", signed(&duplicated));
    add(
        "a duplicated exp",
        signed(&valid.replacen(r#""exp":"#, r#""exp":0,"exp":"#, 1)),
    );
    add(
        "a duplicated alg, none last",
        forge(r#"{"alg":"HS256","alg":"none"}"#, &valid, SECRET),
    );
    add(
        "a duplicated alg, none first",
        forge(r#"{"alg":"none","alg":"HS256"}"#, &valid, SECRET),
    );
    // The right token, mangled.
    add("padded base64", reencode(&good, &URL_SAFE));
    add("standard base64, padded", reencode(&good, &STANDARD));
    add("a trailing =", format!("{good}="));
    add("a leading space", format!(" {good}"));
    add("a trailing newline", format!("{good}\n"));
    add("a space inside", good.replacen('.', ". ", 1));
    add("a tab inside", good.replacen('.', "\t.", 1));
    add("a Bearer prefix", format!("Bearer {good}"));
    add("in quotes", format!("\"{good}\""));
    add("a tampered payload", {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[1] = b64(with(json!({ "exp": now + 7200 })));
        parts.join(".")
    });
    // Segments: too few, too many, empty.
    add("one segment", b64(HS256));
    add("two segments", signing_input.clone());
    add("four segments", format!("{good}.{good_signature}"));
    add("a trailing dot", format!("{good}."));
    add("five segments (JWE)", format!("{good}.a.b"));
    add(
        "an empty payload",
        format!("{}..{good_signature}", b64(HS256)),
    );
    add("only dots", "....".to_owned());
    add("empty", String::new());
    add("garbage", "garbage".to_owned());
    add(
        "a huge token under the frame limit",
        format!(
            "{}.{}.{}",
            b64("x".repeat(20_000)),
            b64(&valid),
            good_signature
        ),
    );

    let mut failures = Vec::new();
    for (what, token) in &attacks {
        let mut socket = Socket::open(&app.base).await;
        let answer = socket.auth(token).await;
        if answer["type"] != "authFailed"
            || answer["code"] != "UNAUTHORIZED"
            || !answer["message"].is_string()
        {
            failures.push(format!("{what}: answered {answer}"));
            continue;
        }
        let after = socket.next_frame().await;
        let code = socket.closed.as_ref().map(|c| c.0);
        if after.is_some() || code != Some(4401) {
            failures.push(format!("{what}: then {after:?}, closed with {code:?}"));
        }
    }
    // A first frame whose token is not a string.
    for (what, frame) in [
        ("a numeric token", json!({ "type": "auth", "token": 1 })),
        ("a null token", json!({ "type": "auth", "token": null })),
        (
            "an object token",
            json!({ "type": "auth", "token": { "jwt": good } }),
        ),
        (
            "a token in an array",
            json!({ "type": "auth", "token": [good] }),
        ),
        ("no token", json!({ "type": "auth" })),
    ] {
        let mut socket = Socket::open(&app.base).await;
        socket.send_json(frame).await;
        let answer = socket.next_frame().await;
        let answered = answer.as_ref().map(|a| a["type"].clone());
        let after = socket.next_frame().await;
        let code = socket.closed.as_ref().map(|c| c.0);
        if answered != Some(json!("authFailed")) || after.is_some() || code != Some(4401) {
            failures.push(format!(
                "{what}: {answer:?}, then {after:?}, closed {code:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} attacks were not refused as documented:\n{}",
        failures.len(),
        attacks.len() + 5,
        failures.join("\n")
    );

    // A token over the frame limit is a broken client, not a bad token: 1009.
    let mut socket = Socket::open(&app.base).await;
    let oversized = "a".repeat(app.config.realtime.max_message_bytes + 1);
    let answer = socket.auth(&oversized).await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["error"]["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(socket.closed_with().await, 1009);

    // After all of it, the valid token is welcomed and served.
    let (mut socket, welcome) = Socket::connect(&app.base, &good).await;
    assert_eq!(welcome["user"]["id"], alice.as_str());
    let joined = socket.request("room.join", json!({})).await.unwrap();
    assert_eq!(joined["room"]["id"], room_id.as_str());
    socket.close().await;
}
