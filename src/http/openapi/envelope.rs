//! The envelope's schemas in the document: success and error, the error codes, and the
//! `data` of a deletion. What is rendered is `http::envelope`'s; these only describe it.

use serde::Serialize;
use utoipa::openapi::{ObjectBuilder, RefOr, Type};
use utoipa::{PartialSchema, ToSchema};

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
pub(super) const ERROR_CODES: [(&str, u16, &str); 14] = [
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
pub struct ErrorCode;

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
