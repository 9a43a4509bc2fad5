//! The OpenAPI 3.1 document of the REST API, served at `GET /v1/openapi.json`: generated from
//! the `#[utoipa::path]` annotation on each handler and the `ToSchema` types handlers answer
//! with, plus what every route shares (the envelope, the errors the middleware gives, the
//! `accountId` path parameter, the security schemes), added here in one pass.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, RefOr, Required, ResponseBuilder, Type,
};
use utoipa::{Modify, Number, OpenApi, PartialSchema, ToSchema};

use super::{
    accounts, comments, files, health, metrics, rooms, stores, users, webhooks, workflows,
};
use crate::auth::sessions::COOKIE_NAME;
use crate::config::Config;
use crate::domain::AccountId;
use crate::state::AppState;

const ACCOUNT_PREFIX: &str = "/v1/accounts/{accountId}";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "CollabKit",
        description = "The REST API of a self-hostable real-time collaboration backend. Every \
                       JSON answer is in the envelope (`type`, `success`, `description`, `data`, \
                       `error`, `requestId`); errors carry a code from `ErrorCode`. The WebSocket \
                       protocol is described in docs/protocol.md.",
        license(name = "Apache-2.0")
    ),
    paths(
        health::healthz,
        health::readyz,
        metrics::metrics,
        openapi_json,
        accounts::get_account
    ),
    nest(
        (path = "/v1/accounts/{accountId}", api = accounts::Api),
        (path = "/v1/accounts/{accountId}", api = rooms::Api),
        (path = "/v1/accounts/{accountId}", api = users::Api),
        (path = "/v1/accounts/{accountId}", api = stores::Api),
        (path = "/v1/accounts/{accountId}", api = comments::Api),
        (path = "/v1/accounts/{accountId}", api = files::Api),
        (path = "/v1/accounts/{accountId}", api = webhooks::Api),
        (path = "/v1/accounts/{accountId}", api = workflows::Api),
    ),
    components(schemas(ErrorEnvelope, ErrorBody, ErrorCode)),
    modifiers(&Conventions),
    tags(
        (name = "Server", description = "Probes, metrics and this document: no authentication."),
        (name = "Accounts", description = "The calling account and its API keys."),
        (name = "Rooms", description = "Rooms: the spaces users meet in."),
        (name = "Users", description = "Users: one person in one room, each with a 90-day JWT for the socket."),
        (name = "Stores", description = "Schema-driven stores: schemas per account, entries per room."),
        (name = "Comments", description = "Comment threads, for listing and moderation (users write over the socket)."),
        (name = "Storage", description = "Room files."),
        (name = "Webhooks", description = "Signed, retried deliveries of room events."),
        (name = "Workflows", description = "Customer code run in a sandbox on room events."),
    )
)]
pub struct ApiDoc;

/// The document itself (no authentication, not in the envelope).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "Server",
    security(()),
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json"))
)]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    let body = state.api_document().clone();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The document as `config` makes it: the annotations give the default limits; the ones a
/// setting changes are written in from it.
pub fn document(config: &Config) -> Bytes {
    let mut document = ApiDoc::openapi();
    let path = |path: &str| format!("{ACCOUNT_PREFIX}{path}");
    let comments = path("/rooms/{roomId}/threads/{threadId}/comments");
    if let Some(operation) = document
        .paths
        .paths
        .get_mut(&comments)
        .and_then(|item| item.get.as_mut())
    {
        for parameter in operation.parameters.iter_mut().flatten() {
            if let RefOr::T(parameter) = parameter {
                if parameter.name == "limit" {
                    if let Some(RefOr::T(Schema::Object(limit))) = parameter.schema.as_mut() {
                        limit.maximum = Some(Number::Int(config.comments.page_comments as isize));
                    }
                }
            }
        }
    }
    let schemas = document.components.as_mut().map(|c| &mut c.schemas);
    if let Some(RefOr::T(Schema::Object(body))) = schemas.and_then(|s| s.get_mut("PutStoreBody")) {
        if let Some(RefOr::T(Schema::Object(fields))) = body.properties.get_mut("schema") {
            fields.max_properties = Some(config.stores.max_fields);
        }
    }
    Bytes::from(document.to_json().expect("the document serializes"))
}

// Rendered by `envelope::EnvelopeParts::render`; only described here, and schemathesis holds
// every answer to it (scripts/schemathesis).
/// The envelope of a successful answer; `data` is the operation's.
#[derive(ToSchema)]
#[expect(dead_code, reason = "describes what `EnvelopeParts::render` writes")]
pub struct Envelope<T> {
    #[schema(rename = "type", inline)]
    kind: ResponseType,
    #[schema(schema_with = always_true)]
    success: bool,
    /// What happened (`Room created`).
    description: String,
    data: T,
    #[schema(schema_with = null, required = true)]
    error: Option<String>,
    #[schema(rename = "requestId", example = "req_6f1c2a9e0b3d4c5e")]
    request_id: String,
}

/// The `data` of a deletion: the ID of what is gone.
#[derive(Serialize, ToSchema)]
pub struct Deleted<T> {
    pub id: T,
}

/// The envelope of every error.
#[derive(ToSchema)]
#[expect(dead_code, reason = "describes what `EnvelopeParts::render` writes")]
pub struct ErrorEnvelope {
    #[schema(rename = "type", inline)]
    kind: ResponseType,
    #[schema(schema_with = always_false)]
    success: bool,
    /// The HTTP reason phrase (`Not Found`).
    #[schema(example = "Not Found")]
    description: String,
    /// Always `{}`.
    #[schema(schema_with = empty_object)]
    data: (),
    error: ErrorBody,
    #[schema(rename = "requestId", example = "req_6f1c2a9e0b3d4c5e")]
    request_id: String,
}

#[derive(ToSchema)]
#[expect(dead_code, reason = "describes what `EnvelopeParts::render` writes")]
pub struct ErrorBody {
    /// The server module: `Auth`, `Rooms`, `Users`, `Storage`, `Webhooks`, `Workflows`,
    /// `Stores`, `Comments`, `Accounts`, `Server`.
    #[schema(example = "Rooms")]
    module: String,
    code: ErrorCode,
    #[schema(example = "Room not found")]
    message: String,
    /// The offending field of a `VALIDATION_ERROR` (`body`: the body as a whole).
    #[schema(required = false, nullable = false)]
    field: Option<String>,
}

#[derive(ToSchema)]
#[expect(dead_code, reason = "describes what `EnvelopeParts::render` writes")]
enum ResponseType {
    #[schema(rename = "response")]
    Response,
}

/// The error codes, their status, and when they are answered.
const ERROR_CODES: [(&str, u16, &str); 14] = [
    ("UNAUTHORIZED", 401, "missing, malformed or invalid credentials"),
    ("FORBIDDEN", 403, "valid credentials, but the path names another account; with the session cookie also a write without the CSRF token, or a viewer's write; with a user's JWT, another room or user"),
    ("NOT_FOUND", 404, "no such object (a malformed ID in a path is simply not found), or no such route"),
    ("METHOD_NOT_ALLOWED", 405, "the route exists, the method does not"),
    ("BAD_REQUEST", 400, "the body is not a JSON object, or cannot be read; a malformed query string"),
    ("VALIDATION_ERROR", 400, "a field or parameter breaks a rule (`field` names it): missing, mistyped, unknown, out of range"),
    ("CONFLICT", 409, "a duplicate `customId`; testing a disabled webhook"),
    ("PAYLOAD_TOO_LARGE", 413, "a body over `limits.max_body_bytes`, a value or file over its own limit, or an account's files over its quota"),
    ("RANGE_NOT_SATISFIABLE", 416, "a `Range` the file does not have"),
    ("UNSUPPORTED_MEDIA_TYPE", 415, "a `Content-Type` other than JSON on a call that takes a JSON body"),
    ("REQUEST_TIMEOUT", 408, "the body did not arrive whole within `http.body_read_timeout_ms`"),
    ("RATE_LIMITED", 429, "over the key's rate limit; `Retry-After` says how many seconds to wait"),
    ("SERVICE_UNAVAILABLE", 503, "the database cannot be reached, no connection became free in time, or the request took longer than `http.request_timeout_ms`"),
    ("INTERNAL_ERROR", 500, "a bug or an outage; the body never carries details"),
];

/// The documented error codes.
struct ErrorCode;

impl PartialSchema for ErrorCode {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        let mut table = String::from("| code | HTTP | when |\n|---|---|---|\n");
        for (code, status, when) in ERROR_CODES {
            table.push_str(&format!("| `{code}` | {status} | {when} |\n"));
        }
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ERROR_CODES.map(|(code, _, _)| code)))
            .description(Some(table))
            .into()
    }
}

impl ToSchema for ErrorCode {}

fn always_true() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([true]))
}

fn always_false() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([false]))
}

fn null() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Null)
}

fn empty_object() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(0))
}

/// An error answer the middleware or the extractors may give, shared by operations.
struct SharedError {
    status: &'static str,
    name: &'static str,
    description: &'static str,
    code: &'static str,
    message: &'static str,
}

const SHARED_ERRORS: [SharedError; 10] = [
    SharedError {
        status: "400",
        name: "BadRequest",
        description: "`BAD_REQUEST` (the body is not a JSON object, a malformed query string) or \
                      `VALIDATION_ERROR` (a field or parameter breaks a rule; `field` names it)",
        code: "VALIDATION_ERROR",
        message: "name is required",
    },
    SharedError {
        status: "401",
        name: "Unauthorized",
        description: "`UNAUTHORIZED`: missing, malformed or invalid credentials",
        code: "UNAUTHORIZED",
        message: "Invalid or missing authentication credentials",
    },
    SharedError {
        status: "403",
        name: "Forbidden",
        description: "`FORBIDDEN`: the credentials are valid but the path names another account \
                      (or, with the session cookie, a write without the CSRF token or by a viewer)",
        code: "FORBIDDEN",
        message: "These credentials do not give access to this account",
    },
    SharedError {
        status: "404",
        name: "NotFound",
        description: "`NOT_FOUND`: no such object (a malformed ID in a path is simply not found)",
        code: "NOT_FOUND",
        message: "Room not found",
    },
    SharedError {
        status: "408",
        name: "RequestTimeout",
        description: "`REQUEST_TIMEOUT`: the body did not arrive whole within \
                      `http.body_read_timeout_ms`",
        code: "REQUEST_TIMEOUT",
        message: "The request body did not arrive in time",
    },
    SharedError {
        status: "413",
        name: "PayloadTooLarge",
        description: "`PAYLOAD_TOO_LARGE`: a body over `limits.max_body_bytes` (or a value over \
                      its own limit)",
        code: "PAYLOAD_TOO_LARGE",
        message: "Request body is larger than 1048576 bytes",
    },
    SharedError {
        status: "415",
        name: "UnsupportedMediaType",
        description: "`UNSUPPORTED_MEDIA_TYPE`: a `Content-Type` other than JSON",
        code: "UNSUPPORTED_MEDIA_TYPE",
        message: "Content-Type must be application/json",
    },
    SharedError {
        status: "429",
        name: "RateLimited",
        description: "`RATE_LIMITED`: over the key's rate limit; `Retry-After` says how many \
                      seconds to wait",
        code: "RATE_LIMITED",
        message: "Too many requests; retry after 1 s",
    },
    SharedError {
        status: "500",
        name: "InternalError",
        description: "`INTERNAL_ERROR`: a bug or an outage; the body never carries details",
        code: "INTERNAL_ERROR",
        message: "Internal server error",
    },
    SharedError {
        status: "503",
        name: "ServiceUnavailable",
        description: "`SERVICE_UNAVAILABLE`: the database cannot be reached, no connection \
                      became free in time, or the request took longer than \
                      `http.request_timeout_ms`",
        code: "SERVICE_UNAVAILABLE",
        message: "Service unavailable",
    },
];

/// What every operation shares, added after the annotations are read.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`base64(accountId:apiKey)` (padded or not). The file routes also take a \
                         user's JWT.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                COOKIE_NAME.to_owned(),
                "The dashboard's session cookie, from a browser logged in to the dashboard. A \
                 request that changes something also sends the session's `X-CSRF-Token`."
                    .to_owned(),
            ))),
        );
        for error in &SHARED_ERRORS {
            let example = json!({
                "type": "response", "success": false,
                "description": error.status.parse().ok()
                    .and_then(|status| StatusCode::from_u16(status).ok())
                    .and_then(|status| status.canonical_reason()),
                "data": {},
                "error": {
                    // Credentials are checked by the `Auth` module, whatever the route.
                    "module": if error.status == "401" { "Auth" } else { "Rooms" },
                    "code": error.code,
                    "message": error.message,
                },
                "requestId": "req_6f1c2a9e0b3d4c5e"
            });
            let mut response = ResponseBuilder::new()
                .description(error.description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                        .example(Some(example))
                        .build(),
                );
            if error.status == "429" {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(i64::schema()))
                        .description(Some("Seconds to wait"))
                        .build(),
                );
            }
            components
                .responses
                .insert(error.name.to_owned(), response.build().into());
        }

        for (path, item) in openapi.paths.paths.iter_mut() {
            let in_account = path.starts_with(ACCOUNT_PREFIX);
            let path_ids = path.matches('{').count() - usize::from(in_account);
            for operation in operations(item) {
                add_conventions(operation, in_account, path_ids > 0);
            }
        }
    }
}

/// Adds to one operation what the routes under `/v1/accounts/{accountId}` (`in_account`)
/// share, and the errors any route may answer.
fn add_conventions(operation: &mut Operation, in_account: bool, has_ids: bool) {
    let takes_input = operation.request_body.is_some()
        || operation
            .parameters
            .as_ref()
            .is_some_and(|parameters| parameters.iter().any(is_query));
    let public = operation
        .security
        .as_ref()
        .is_some_and(|requirements| requirements.iter().all(is_empty_requirement));
    if in_account {
        let account = account_parameter();
        operation
            .parameters
            .get_or_insert_with(Vec::new)
            .insert(0, account.into());
        if operation.security.is_none() {
            operation.security = Some(vec![
                SecurityRequirement::new("bearer", Vec::<String>::new()),
                SecurityRequirement::new("session", Vec::<String>::new()),
            ]);
        }
    }
    let mut shared = vec!["500", "503"];
    if in_account && !public {
        shared.extend(["401", "403", "429"]);
    }
    if takes_input {
        shared.push("400");
    }
    if has_ids {
        shared.push("404");
    }
    if let Some(body) = &operation.request_body {
        shared.extend(["408", "413"]);
        let json = matches!(body, RefOr::T(body) if body.content.contains_key("application/json"));
        if json {
            shared.push("415");
        }
    }
    for error in SHARED_ERRORS.iter().filter(|e| shared.contains(&e.status)) {
        operation
            .responses
            .responses
            .entry(error.status.to_owned())
            .or_insert_with(|| Ref::new(format!("#/components/responses/{}", error.name)).into());
    }
}

fn account_parameter() -> Parameter {
    ParameterBuilder::new()
        .name("accountId")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some("The account: the one the credentials belong to"))
        .schema(Some(AccountId::schema()))
        .build()
}

fn is_query(parameter: &RefOr<Parameter>) -> bool {
    matches!(parameter, RefOr::T(p) if p.parameter_in == ParameterIn::Query)
}

fn is_empty_requirement(requirement: &SecurityRequirement) -> bool {
    requirement == &SecurityRequirement::default()
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
    ]
    .into_iter()
    .flatten()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::error::ApiError;

    /// `/storage/{*key}` (axum) is `/storage/{key}` (OpenAPI).
    fn openapi_path(axum_path: &str) -> String {
        axum_path.replace("{*", "{")
    }

    #[test]
    fn the_document_lists_exactly_the_routes_the_server_has() {
        let served: BTreeSet<(String, String)> = super::super::api_routes()
            .table()
            .iter()
            .map(|route| (route.method.to_string(), openapi_path(&route.path)))
            .collect();
        let mut document = ApiDoc::openapi();
        let mut documented = BTreeSet::new();
        for (path, item) in document.paths.paths.iter_mut() {
            let methods = [
                ("GET", item.get.is_some()),
                ("PUT", item.put.is_some()),
                ("POST", item.post.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
                ("HEAD", item.head.is_some()),
                ("OPTIONS", item.options.is_some()),
                ("TRACE", item.trace.is_some()),
            ];
            for (method, present) in methods {
                if present {
                    documented.insert((method.to_owned(), path.clone()));
                }
            }
        }
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from the document: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "documented but not routed: {unserved:?}"
        );
        assert!(served.len() > 40, "the table holds the whole API");
    }

    #[test]
    fn every_operation_has_an_id_a_tag_a_success_and_the_shared_errors() {
        let document = ApiDoc::openapi();
        let mut ids = BTreeSet::new();
        for (path, item) in &document.paths.paths {
            let operations = [&item.get, &item.put, &item.post, &item.delete, &item.patch];
            for operation in operations.into_iter().flatten() {
                let id = operation.operation_id.clone().unwrap_or_default();
                assert!(ids.insert(id.clone()), "{path}: operation id {id:?} twice");
                assert!(
                    operation.tags.as_ref().is_some_and(|t| t.len() == 1),
                    "{path}: one tag"
                );
                let statuses: Vec<&String> = operation.responses.responses.keys().collect();
                assert!(
                    statuses.iter().any(|s| s.starts_with('2')),
                    "{path}: a success answer"
                );
                assert!(
                    statuses.contains(&&"500".to_owned()),
                    "{path}: {statuses:?}"
                );
                if path.starts_with(ACCOUNT_PREFIX) && !path.contains("/storage/") {
                    for status in ["401", "403", "429"] {
                        assert!(statuses.contains(&&status.to_owned()), "{path}: {status}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_served_document_has_the_configured_limits() {
        let mut config = Config::defaults();
        config.comments.page_comments = 7;
        config.stores.max_fields = 3;
        let document: serde_json::Value = serde_json::from_slice(&document(&config)).unwrap();
        let comments = &document["paths"]
            ["/v1/accounts/{accountId}/rooms/{roomId}/threads/{threadId}/comments"]["get"];
        let limit = comments["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap();
        assert_eq!(limit["schema"]["maximum"], 7);
        let fields = &document["components"]["schemas"]["PutStoreBody"]["properties"]["schema"];
        assert_eq!(fields["maxProperties"], 3);
        // The pages' bounds are the store's own constants.
        let rooms = &document["paths"]["/v1/accounts/{accountId}/rooms"]["get"]["parameters"];
        let page_limit = rooms
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap();
        assert_eq!(
            page_limit["schema"]["maximum"],
            crate::store::Page::MAX_LIMIT
        );
        assert_eq!(
            page_limit["schema"]["default"],
            crate::store::Page::DEFAULT_LIMIT
        );
    }

    #[test]
    fn every_error_code_is_in_the_document() {
        let errors = [
            ApiError::Unauthorized,
            ApiError::Forbidden,
            ApiError::NotFound("x".into()),
            ApiError::MethodNotAllowed,
            ApiError::BadRequest("x".into()),
            ApiError::validation("f", "m"),
            ApiError::Conflict("x".into()),
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::RangeNotSatisfiable,
            ApiError::UnsupportedMediaType,
            ApiError::RequestTimeout,
            ApiError::RateLimited {
                retry_after_secs: 1,
            },
            ApiError::Unavailable,
            ApiError::Internal(anyhow::anyhow!("x")),
        ];
        for error in errors {
            let documented = ERROR_CODES
                .iter()
                .find(|(code, _, _)| *code == error.code());
            let (_, status, _) = documented.unwrap_or_else(|| panic!("{}", error.code()));
            assert_eq!(*status, error.status().as_u16(), "{}", error.code());
        }
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let codes = &document["components"]["schemas"]["ErrorCode"]["enum"];
        assert_eq!(codes.as_array().unwrap().len(), ERROR_CODES.len());
    }
}
