//! REST fuzzing: every documented route with its documented methods and wrong ones, hostile
//! values in each path parameter, query parameter and body field, hostile bodies and content
//! types. Every answer must be under 500 and in the envelope with a documented code, except
//! the bare answers hyper gives to request heads it refuses (`docs/rest-api.md`, "Answers
//! without the envelope").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::{both_backends, Backend, Reply, TestAccount, TestApp};
use crate::hostile::{self, FieldPath, Hostile};
use crate::receiver::Receiver;
use crate::socket::{Socket, WAIT};

both_backends!(every_route_answers_hostile_input_in_the_envelope);

/// Requests in flight at once: under the database pool, so that none waits for a connection.
const IN_FLIGHT: usize = 4;
/// The body limit the fuzzer runs with (the default): a 1 MB string fits, one more byte of
/// body past it is a 413.
const BODY_LIMIT: usize = 1024 * 1024;
/// A request target longer than hyper's limit (65534 bytes): 414 without the envelope.
const OVERLONG_TARGET: usize = 70_000;

/// The documented codes and their statuses (`docs/rest-api.md`), 500 excluded.
const CODES: [(&str, u16); 12] = [
    ("UNAUTHORIZED", 401),
    ("FORBIDDEN", 403),
    ("NOT_FOUND", 404),
    ("METHOD_NOT_ALLOWED", 405),
    ("BAD_REQUEST", 400),
    ("VALIDATION_ERROR", 400),
    ("CONFLICT", 409),
    ("PAYLOAD_TOO_LARGE", 413),
    ("UNSUPPORTED_MEDIA_TYPE", 415),
    ("REQUEST_TIMEOUT", 408),
    ("RATE_LIMITED", 429),
    ("SERVICE_UNAVAILABLE", 503),
];

/// A body a route takes: a valid one to start from, and where hostile values go in it.
struct BodySpec {
    method: &'static str,
    base: fn(&Fixture) -> Value,
    fields: &'static [FieldPath],
}

/// One route of `docs/rest-api.md`, below `/v1/accounts/{account}` unless it starts with
/// `//`; `{name}` is a path parameter, filled from the fixture.
struct Route {
    path: &'static str,
    methods: &'static [&'static str],
    /// Query parameters every request of the route carries (users need their room).
    query: &'static str,
    /// Query parameters the route documents for methods other than GET.
    mutating_query: &'static [&'static str],
    bodies: &'static [BodySpec],
}

const NO_BODIES: &[BodySpec] = &[];

// Bodies that create leave `customId` out (a hostile one is added as a field), and those that
// update keep the fixture's own, so that the custom-ID routes keep finding it.
fn room_body(_: &Fixture) -> Value {
    json!({ "name": "fuzzed" })
}

fn room_patch(_: &Fixture) -> Value {
    json!({ "name": "fuzz target", "customId": "fuzz-room" })
}

fn user_body(f: &Fixture) -> Value {
    json!({ "name": "Fuzz", "roomId": f.get("room"), "profilePicture": "https://example.com/a.png" })
}

fn user_patch(_: &Fixture) -> Value {
    json!({ "name": "Alice", "profilePicture": null, "customId": "fuzz-user" })
}

fn schema_body(_: &Fixture) -> Value {
    json!({ "schema": { "text": { "type": "string" }, "n": { "type": "number", "default": 0 } } })
}

fn entry_body(_: &Fixture) -> Value {
    json!({ "value": { "text": "hello" } })
}

fn webhook_body(f: &Fixture) -> Value {
    json!({ "url": f.get("receiver"), "events": ["user.created"], "roomId": f.get("room") })
}

fn webhook_patch(f: &Fixture) -> Value {
    json!({ "url": f.get("receiver"), "events": ["user.created"], "roomId": null, "enabled": true })
}

fn workflow_body(f: &Fixture) -> Value {
    json!({
        "name": "fuzz", "code": "export default async () => 1;",
        "events": ["user.created"], "roomId": f.get("room")
    })
}

fn workflow_patch(_: &Fixture) -> Value {
    json!({
        "name": "fuzz", "code": "export default async () => 2;",
        "events": ["user.created"], "roomId": null, "enabled": true
    })
}

fn empty_body(_: &Fixture) -> Value {
    json!({})
}

/// Routes whose documented body is none still get hostile bodies, with nothing to fill.
const NONE_BODY: &[FieldPath] = &[&["nope"]];

const ROUTES: &[Route] = &[
    Route {
        path: "",
        methods: &["GET"],
        query: "",
        mutating_query: &[],
        bodies: NO_BODIES,
    },
    Route {
        path: "/keys",
        methods: &["GET", "POST"],
        query: "",
        mutating_query: &[],
        bodies: &[BodySpec {
            method: "POST",
            base: empty_body,
            fields: NONE_BODY,
        }],
    },
    Route {
        path: "/keys/{keyId}",
        methods: &["DELETE"],
        query: "",
        mutating_query: &[],
        bodies: NO_BODIES,
    },
    Route {
        path: "/rooms",
        methods: &["GET", "POST"],
        query: "",
        mutating_query: &[],
        bodies: &[BodySpec {
            method: "POST",
            base: room_body,
            fields: &[&["name"], &["customId"]],
        }],
    },
    Route {
        path: "/rooms/{room}",
        methods: &["GET", "PATCH", "DELETE"],
        query: "",
        mutating_query: &[],
        bodies: &[BodySpec {
            method: "PATCH",
            base: room_patch,
            fields: &[&["name"], &["customId"]],
        }],
    },
    Route {
        path: "/rooms/custom/{roomCustom}",
        methods: &["GET"],
        query: "",
        mutating_query: &[],
        bodies: NO_BODIES,
    },
    Route {
        path: "/rooms/{room}/reconcile",
        methods: &["POST"],
        query: "",
        mutating_query: &[],
        bodies: &[BodySpec {
            method: "POST",
            base: empty_body,
            fields: NONE_BODY,
        }],
    },
    Route {
        path: "/users",
        methods: &["GET", "POST"],
        query: "roomId={room}",
        mutating_query: &[],
        bodies: &[BodySpec {
            method: "POST",
            base: user_body,
            fields: &[&["name"], &["roomId"], &["profilePicture"], &["customId"]],
        }],
    },
    Route {
        path: "/users/{user}",
        methods: &["GET", "PATCH", "DELETE"],
        query: "roomId={room}",
        mutating_query: &["roomId"],
        bodies: &[BodySpec {
            method: "PATCH",
            base: user_patch,
            fields: &[&["name"], &["profilePicture"], &["customId"]],
        }],
    },
    Route {
        path: "/users/custom/{userCustom}",
        methods: &["GET"],
        query: "roomId={room}",
        mutating_query: &[],
        bodies: NO_BODIES,
    },
    Route {
        path: "/stores",
        methods: &["GET"],
        query: "",
        mutating_query: &[],
        bodies: NO_BODIES,
    },
    Route {
        path: "/stores/{store}",
        methods: &["GET", "PUT"],
        query: "",
        mutating_query: &[],
        bodies: &[BodySpec {
            method: "PUT",
            base: schema_body,
            fields: &[
                &["schema"],
                &["schema", "text"],
                &["schema", "text", "type"],
                &["schema", "n", "default"],
                &["schema", "text", "required"],
            ],
        }],
    },
    Route {
        path: "/rooms/{room}/stores",
        methods: &["GET"],
        query: "",
        mutating_query: &[],
        bodies: NO_BODIES,
    },
    Route {
        path: "/rooms/{room}/stores/{store}",
        methods: &["GET"],
        query: "",
        mutating_query: &[],
        bodies: NO_BODIES,
    },
    Route {
        path: "/rooms/{room}/stores/{store}/{key}",
        methods: &["GET", "PUT", "PATCH", "DELETE"],
        query: "",
        mutating_query: &[],
        bodies: &[
            BodySpec {
                method: "PUT",
                base: entry_body,
                fields: &[&["value"], &["value", "text"], &["value", "n"]],
            },
            BodySpec {
                method: "PATCH",
                base: entry_body,
                fields: &[&["value"], &["value", "text"], &["value", "n"]],
            },
        ],
    },
    Route {
        path: "/rooms/{room}/threads",
        methods: &["GET"],
        query: "",
        mutating_query: &[],
        bodies: NO_BODIES,
    },
    Route {
        path: "/rooms/{room}/threads/{thread}",
        methods: &["GET", "DELETE"],
        query: "",
        mutating_query: &[],
        bodies: NO_BODIES,
    },
    Route {
        path: "/rooms/{room}/threads/{thread}/comments",
        methods: &["GET"],
        query: "",
        mutating_query: &[],
        bodies: NO_BODIES,
    },
    Route {
        path: "/rooms/{room}/comments/{comment}",
        methods: &["DELETE"],
        query: "",
        mutating_query: &[],
        bodies: NO_BODIES,
    },
    Route {
        path: "/webhooks",
        methods: &["GET", "POST"],
        query: "",
        mutating_query: &[],
        bodies: &[BodySpec {
            method: "POST",
            base: webhook_body,
            fields: &[&["url"], &["events"], &["events", "0"], &["roomId"]],
        }],
    },
    Route {
        path: "/webhooks/{webhook}",
        methods: &["GET", "PATCH", "DELETE"],
        query: "",
        mutating_query: &[],
        bodies: &[BodySpec {
            method: "PATCH",
            base: webhook_patch,
            fields: &[&["url"], &["events"], &["roomId"], &["enabled"]],
        }],
    },
    Route {
        path: "/workflows",
        methods: &["GET", "POST"],
        query: "",
        mutating_query: &[],
        bodies: &[BodySpec {
            method: "POST",
            base: workflow_body,
            fields: &[
                &["name"],
                &["code"],
                &["events"],
                &["events", "0"],
                &["roomId"],
            ],
        }],
    },
    Route {
        path: "/workflows/{workflow}",
        methods: &["GET", "PATCH", "DELETE"],
        query: "",
        mutating_query: &[],
        bodies: &[BodySpec {
            method: "PATCH",
            base: workflow_patch,
            fields: &[&["name"], &["code"], &["events"], &["roomId"], &["enabled"]],
        }],
    },
    Route {
        path: "/workflows/{workflow}/executions",
        methods: &["GET"],
        query: "",
        mutating_query: &[],
        bodies: NO_BODIES,
    },
    Route {
        path: "/webhooks/{webhook}/deliveries",
        methods: &["GET"],
        query: "",
        mutating_query: &[],
        bodies: NO_BODIES,
    },
    Route {
        path: "/webhooks/{webhook}/test",
        methods: &["POST"],
        query: "",
        mutating_query: &[],
        bodies: &[BodySpec {
            method: "POST",
            base: empty_body,
            fields: NONE_BODY,
        }],
    },
    Route {
        path: "/webhooks/{webhook}/rotate-secret",
        methods: &["POST"],
        query: "",
        mutating_query: &[],
        bodies: &[BodySpec {
            method: "POST",
            base: empty_body,
            fields: NONE_BODY,
        }],
    },
    Route {
        path: "//healthz",
        methods: &["GET"],
        query: "",
        mutating_query: &[],
        bodies: NO_BODIES,
    },
    Route {
        path: "//readyz",
        methods: &["GET"],
        query: "",
        mutating_query: &[],
        bodies: NO_BODIES,
    },
    Route {
        path: "//v1/realtime",
        methods: &["GET"],
        query: "",
        mutating_query: &[],
        bodies: NO_BODIES,
    },
];

/// Every method tried on every route; those a route does not document must be 405.
const METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE", "PURGE",
];

const QUERY_PARAMETERS: [&str; 8] = [
    "limit", "offset", "search", "from", "to", "roomId", "resolved", "after",
];

const CONTENT_TYPES: [&str; 9] = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    "application/jsonx",
    "application/json; charset=utf-16",
    "APPLICATION/JSON",
    "application/vnd.api+json",
    "",
];

/// The objects the routes name, by placeholder.
struct Fixture(HashMap<&'static str, String>);

impl Fixture {
    fn get(&self, name: &str) -> &str {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("no fixture {name}"))
    }
}

async fn fixture(app: &TestApp, account: &TestAccount, receiver: &Receiver) -> Fixture {
    let room = account
        .post(
            "/rooms",
            json!({ "name": "fuzz target", "customId": "fuzz-room" }),
        )
        .await;
    room.expect(StatusCode::CREATED);
    let room_id = room.data()["room"]["id"].as_str().unwrap().to_owned();
    let user = account
        .post(
            "/users",
            json!({ "name": "Alice", "roomId": room_id, "customId": "fuzz-user" }),
        )
        .await;
    user.expect(StatusCode::CREATED);
    let user_id = user.data()["user"]["id"].as_str().unwrap().to_owned();
    let token = user.data()["token"].as_str().unwrap().to_owned();
    account
        .send(
            account
                .request(Method::PUT, "/stores/notes")
                .json(&schema_body_for_fixture()),
        )
        .await
        .expect(StatusCode::CREATED);
    account
        .send(
            account
                .request(Method::PUT, &format!("/rooms/{room_id}/stores/notes/k1"))
                .json(&json!({ "value": { "text": "first" } })),
        )
        .await
        .expect(StatusCode::OK);
    let (mut socket, _) = Socket::connect(&app.base, &token).await;
    let thread = socket
        .request("comments.createThread", json!({ "body": "a thread" }))
        .await
        .unwrap()["thread"]
        .clone();
    let comment = socket
        .request(
            "comments.reply",
            json!({ "threadId": thread["id"], "body": "a reply" }),
        )
        .await
        .unwrap()["comment"]
        .clone();
    socket.close().await;
    let webhook = account
        .post(
            "/webhooks",
            json!({ "url": receiver.url(), "events": ["user.created", "user.updated"] }),
        )
        .await;
    webhook.expect(StatusCode::CREATED);
    let workflow = account
        .post(
            "/workflows",
            json!({ "name": "fuzz", "code": "export default async () => 1;", "events": ["user.created"] }),
        )
        .await;
    workflow.expect(StatusCode::CREATED);
    Fixture(HashMap::from([
        ("account", account.id.clone()),
        ("keyId", account.key_id.clone()),
        ("room", room_id),
        ("roomCustom", "fuzz-room".to_owned()),
        ("user", user_id),
        ("userCustom", "fuzz-user".to_owned()),
        ("store", "notes".to_owned()),
        ("key", "k1".to_owned()),
        ("thread", thread["id"].as_str().unwrap().to_owned()),
        ("comment", comment["id"].as_str().unwrap().to_owned()),
        (
            "webhook",
            webhook.data()["webhook"]["id"].as_str().unwrap().to_owned(),
        ),
        (
            "workflow",
            workflow.data()["workflow"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        ),
        ("receiver", receiver.url()),
    ]))
}

fn schema_body_for_fixture() -> Value {
    schema_body(&Fixture(HashMap::new()))
}

/// A body to send: whole text, or a hostile value put into a field of a good body.
#[derive(Clone)]
enum Body {
    Text(Arc<str>),
    Field {
        base: Arc<Value>,
        path: FieldPath,
        value: Arc<Hostile>,
    },
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Text(text) => text.as_bytes().to_vec(),
            Body::Field { base, path, value } => {
                hostile::substitute(base, path, &value.text).into_bytes()
            }
        }
    }
}

/// One request of the campaign, and what it must get besides the general rules.
#[derive(Clone)]
struct Case {
    label: String,
    method: Method,
    /// Path and query, from the server's root.
    target: String,
    content_type: Option<&'static str>,
    body: Option<Body>,
    expect: Expect,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Anything under 500 in the envelope.
    Survive,
    /// The route exists, the method does not.
    MethodNotAllowed,
    /// A request target over hyper's limit: a bare 414 (or 431 for a huge head).
    TooLongForHyper,
}

/// Fills the placeholders of a route's path (`hostile` replaces one of them).
fn fill(template: &str, fixture: &Fixture, hostile: Option<(&str, &str)>) -> String {
    let (prefix, rest) = match template.strip_prefix("//") {
        Some(rest) => (String::new(), format!("/{rest}")),
        None => (
            format!("/v1/accounts/{}", fixture.get("account")),
            template.to_owned(),
        ),
    };
    let mut out = prefix;
    for (i, piece) in rest.split('{').enumerate() {
        if i == 0 {
            out.push_str(piece);
            continue;
        }
        let (name, tail) = piece.split_once('}').unwrap();
        match hostile {
            Some((target, value)) if target == name => out.push_str(value),
            _ => out.push_str(fixture.get(name)),
        }
        out.push_str(tail);
    }
    out
}

/// The account's own path parameter can be hostile too.
fn fill_account(template: &str, fixture: &Fixture, value: &str) -> Option<String> {
    if template.starts_with("//") {
        return None;
    }
    let path = fill(template, fixture, None);
    Some(path.replacen(fixture.get("account"), value, 1))
}

fn with_query(path: &str, base: &str, fixture: &Fixture, extra: Option<String>) -> String {
    let mut parts = Vec::new();
    if !base.is_empty() {
        parts.push(base.replace("{room}", fixture.get("room")));
    }
    parts.extend(extra);
    if parts.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", parts.join("&"))
    }
}

/// Path parameters of a route template.
fn placeholders(template: &str) -> Vec<&str> {
    template
        .split('{')
        .skip(1)
        .map(|piece| piece.split_once('}').unwrap().0)
        .collect()
}

fn cases(fixture: &Fixture) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut values: Vec<Hostile> = hostile::json_values(1_000_000, 0x5eed_0001);
    values.push(Hostile {
        name: "over the body limit".to_owned(),
        text: format!("\"{}\"", "x".repeat(BODY_LIMIT + 1)),
    });
    let values: Vec<Arc<Hostile>> = values.into_iter().map(Arc::new).collect();
    let segments = hostile::path_segments();
    let queries = hostile::query_values();
    let survive = |label: String, method: &str, target: String| Case {
        label,
        method: Method::from_bytes(method.as_bytes()).unwrap(),
        target,
        content_type: None,
        body: None,
        expect: Expect::Survive,
    };
    for route in ROUTES {
        let path = fill(route.path, fixture, None);
        let base_target = with_query(&path, route.query, fixture, None);
        let body_of = |method: &str| {
            route
                .bodies
                .iter()
                .find(|b| b.method == method)
                .map(|b| Body::Text((b.base)(fixture).to_string().into()))
        };
        // Methods: the wrong ones are 405; GET works; mutating ones are not sent with the
        // fixture's IDs here (they would delete what the other cases need).
        for method in METHODS {
            let documented = route.methods.contains(&method);
            let head_of_get = method == "HEAD" && route.methods.contains(&"GET");
            if documented && method != "GET" {
                continue;
            }
            let mut case = survive(
                format!("{method} {}", route.path),
                method,
                base_target.clone(),
            );
            if !documented && !head_of_get {
                case.expect = Expect::MethodNotAllowed;
            }
            cases.push(case);
        }
        for &method in route.methods {
            // Each path parameter, hostile.
            for name in placeholders(route.path) {
                for segment in &segments {
                    let path = fill(route.path, fixture, Some((name, &segment.text)));
                    let mut case = survive(
                        format!("{method} {} with {name} = {}", route.path, segment.name),
                        method,
                        with_query(&path, route.query, fixture, None),
                    );
                    if let Some(body) = body_of(method) {
                        case.content_type = Some("application/json");
                        case.body = Some(body);
                    }
                    cases.push(case);
                }
            }
            // The account in the path, hostile (GET only: the others would act on it).
            if method == "GET" {
                for segment in &segments {
                    if let Some(path) = fill_account(route.path, fixture, &segment.text) {
                        cases.push(survive(
                            format!("GET {} with accountId = {}", route.path, segment.name),
                            "GET",
                            path,
                        ));
                    }
                }
            }
            // Each query parameter, hostile: all of them on reads; on writes only those
            // the route documents (the rest are ignored, and the write would happen).
            let parameters: Vec<&str> = if method == "GET" {
                QUERY_PARAMETERS.to_vec()
            } else {
                route.mutating_query.to_vec()
            };
            for parameter in parameters {
                for value in &queries {
                    let target = if route.query.contains(&format!("{parameter}=")) {
                        with_query(
                            &path,
                            "",
                            fixture,
                            Some(format!("{parameter}={}", value.text)),
                        )
                    } else {
                        with_query(
                            &path,
                            route.query,
                            fixture,
                            Some(format!("{parameter}={}", value.text)),
                        )
                    };
                    let mut case = survive(
                        format!("{method} {} with {parameter} = {}", route.path, value.name),
                        method,
                        target,
                    );
                    if let Some(body) = body_of(method) {
                        case.content_type = Some("application/json");
                        case.body = Some(body);
                    }
                    cases.push(case);
                }
            }
        }
        // Hostile query parameter names, repeated and bracketed ones, on reads.
        if route.methods.contains(&"GET") {
            for extra in [
                "%00=1",
                "limit%00=1",
                "limit=1&limit=2&limit=",
                "limit[]=1",
                "offset=1&&&=&",
                "%FF=%FF",
            ] {
                cases.push(survive(
                    format!("GET {} with query {extra}", route.path),
                    "GET",
                    with_query(&path, route.query, fixture, Some(extra.to_owned())),
                ));
            }
        }
        for spec in route.bodies {
            let base = Arc::new((spec.base)(fixture));
            // Each field, hostile.
            for field in spec.fields {
                for value in &values {
                    cases.push(Case {
                        label: format!(
                            "{} {} with body {} = {}",
                            spec.method,
                            route.path,
                            field.join("."),
                            value.name
                        ),
                        method: Method::from_bytes(spec.method.as_bytes()).unwrap(),
                        target: base_target.clone(),
                        content_type: Some("application/json"),
                        body: Some(Body::Field {
                            base: base.clone(),
                            path: field,
                            value: value.clone(),
                        }),
                        expect: Expect::Survive,
                    });
                }
            }
            // Hostile as a whole, and absent.
            for document in hostile::whole_documents() {
                cases.push(Case {
                    label: format!("{} {} with body {}", spec.method, route.path, document.name),
                    method: Method::from_bytes(spec.method.as_bytes()).unwrap(),
                    target: base_target.clone(),
                    content_type: Some("application/json"),
                    body: Some(Body::Text(document.text.into())),
                    expect: Expect::Survive,
                });
            }
            let mut absent = survive(
                format!("{} {} without a body", spec.method, route.path),
                spec.method,
                base_target.clone(),
            );
            absent.body = None;
            cases.push(absent);
            // A good body under other content types.
            for content_type in CONTENT_TYPES {
                cases.push(Case {
                    label: format!("{} {} as {content_type:?}", spec.method, route.path),
                    method: Method::from_bytes(spec.method.as_bytes()).unwrap(),
                    target: base_target.clone(),
                    content_type: Some(content_type),
                    body: Some(Body::Text(base.to_string().into())),
                    expect: Expect::Survive,
                });
            }
        }
    }
    // Request targets over hyper's limit, once each: a path, a query, a huge query.
    let rooms = fill("/rooms", fixture, None);
    for (label, target) in [
        (
            "an overlong path segment",
            format!("{rooms}/{}", "x".repeat(OVERLONG_TARGET)),
        ),
        (
            "an overlong query value",
            format!("{rooms}?search={}", "x".repeat(OVERLONG_TARGET)),
        ),
        (
            "a 1 MB query value",
            format!("{rooms}?search={}", "x".repeat(1_000_000)),
        ),
    ] {
        cases.push(Case {
            label: label.to_owned(),
            method: Method::GET,
            target,
            content_type: None,
            body: None,
            expect: Expect::TooLongForHyper,
        });
    }
    cases
}

/// Sends one case; `Err` says what was wrong with the answer.
async fn run(
    client: &reqwest::Client,
    base: &str,
    bearer: &str,
    case: &Case,
) -> Result<u16, String> {
    if case.expect == Expect::TooLongForHyper {
        return run_raw(base, bearer, case).await;
    }
    let mut request = client
        .request(case.method.clone(), format!("{base}{}", case.target))
        .bearer_auth(bearer);
    if let Some(content_type) = case.content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(body) = &case.body {
        request = request.body(body.bytes());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| format!("{status}: the body did not arrive: {e}"))?;
    if status.is_server_error() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if case.method == Method::HEAD {
        // An answer to HEAD has no body: only the status and our header can be checked.
        if header("x-request-id").is_none() {
            return Err(format!("{status}: no X-Request-Id"));
        }
        return match case.expect {
            Expect::MethodNotAllowed if status != StatusCode::METHOD_NOT_ALLOWED => {
                Err(format!("{status} to HEAD where 405 was due"))
            }
            _ => Ok(status.as_u16()),
        };
    }
    let body: Value = serde_json::from_slice(&bytes).map_err(|_| {
        format!(
            "{status}: the body is not JSON: {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        )
    })?;
    let reply = Reply {
        status,
        headers,
        body,
    };
    envelope_problem(&reply)?;
    if case.expect == Expect::MethodNotAllowed && status != StatusCode::METHOD_NOT_ALLOWED {
        return Err(format!("{status} where 405 was due: {}", reply.body));
    }
    Ok(status.as_u16())
}

/// A request target no HTTP client library builds (over 65534 bytes), written by hand:
/// hyper's own answer must come, bare (no envelope, nothing of ours), and close.
async fn run_raw(base: &str, bearer: &str, case: &Case) -> Result<u16, String> {
    let tcp = TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .map_err(|e| format!("no connection: {e}"))?;
    let (mut reader, mut writer) = tcp.into_split();
    let head = format!(
        "{} {} HTTP/1.1\r\nHost: collabkit\r\nAuthorization: Bearer {bearer}\r\n\r\n",
        case.method, case.target
    );
    // The server may answer and close before it has read everything: write aside.
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(head.as_bytes()).await;
        writer
    });
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(WAIT, reader.read_to_end(&mut bytes)).await;
    let _ = writing.await;
    match read {
        Err(_) => return Err("no answer in time, or the connection stayed open".to_owned()),
        Ok(Err(e)) if bytes.is_empty() => return Err(format!("no answer: {e}")),
        Ok(_) => {}
    }
    let text = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).unwrap_or_default();
    let bare = matches!(status, "414" | "431")
        && body.is_empty()
        && head.contains("\r\ncontent-length: 0")
        && head.contains("\r\nconnection: close")
        && !head.contains("x-request-id");
    if bare {
        Ok(status.parse().unwrap())
    } else {
        Err(format!("not hyper's bare 414 or 431: {text:?}"))
    }
}

/// What is wrong with an answer's envelope, if anything: the harness's checks, a documented
/// code with its documented status, and the field of a `VALIDATION_ERROR`.
fn envelope_problem(reply: &Reply) -> Result<(), String> {
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        reply.assert_envelope();
    }));
    if checked.is_err() {
        return Err(format!(
            "{}: not the envelope: {}",
            reply.status, reply.body
        ));
    }
    if reply.status.is_success() {
        return Ok(());
    }
    let code = reply.body["error"]["code"].as_str().unwrap_or_default();
    match CODES.iter().find(|(c, _)| *c == code) {
        Some((_, status)) if *status == reply.status.as_u16() => {}
        _ => {
            return Err(format!(
                "{}: code {code} is not the documented one for it: {}",
                reply.status, reply.body
            ))
        }
    }
    if code == "VALIDATION_ERROR" && !reply.body["error"]["field"].is_string() {
        return Err(format!("a VALIDATION_ERROR names no field: {}", reply.body));
    }
    Ok(())
}

async fn every_route_answers_hostile_input_in_the_envelope(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.webhooks.allow_private_addresses = true;
        c.limits.max_body_bytes = BODY_LIMIT;
        c.database.max_connections = 10;
    })
    .await;
    let receiver = Receiver::start().await;
    let account = app.account().await;
    let fixture = fixture(&app, &account, &receiver).await;
    let cases = cases(&fixture);
    let started = Instant::now();
    let total = cases.len();
    let (base, bearer, client) = (&app.base, &account.token, &app.client);
    let outcomes: Vec<Result<u16, String>> = futures_util::stream::iter(cases)
        .map(|case| async move {
            run(client, base, bearer, &case)
                .await
                .map_err(|problem| format!("{}: {problem}", case.label))
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for status in outcomes.iter().flatten() {
        *statuses.entry(*status).or_default() += 1;
    }
    eprintln!(
        "REST fuzzing ({backend:?}): {total} requests in {:.1} s; statuses {statuses:?}",
        started.elapsed().as_secs_f64()
    );
    let failures: Vec<String> = outcomes.into_iter().filter_map(Result::err).collect();
    assert!(
        failures.is_empty(),
        "{} of {total} answers broke the rules:\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .map(|f| f.chars().take(600).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The targets are still there and still served.
    account
        .get(&format!("/rooms/{}", fixture.get("room")))
        .await
        .expect(StatusCode::OK);
    account
        .get(&format!(
            "/rooms/{}/threads/{}",
            fixture.get("room"),
            fixture.get("thread")
        ))
        .await
        .expect(StatusCode::OK);
}
