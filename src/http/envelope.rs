//! The documented response envelope. Handlers return `Reply` or `ApiError`, which carry their
//! parts in the response; `middleware::around` renders every body, so that each one
//! gets the request's `requestId` and a module name in one place.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::ApiError;

/// What a response says, before it is rendered with its request ID.
#[derive(Debug, Clone)]
pub struct EnvelopeParts {
    description: Cow<'static, str>,
    data: Data,
    error: Option<ErrorParts>,
}

/// A reply's `data`: a JSON value, or JSON already encoded (an answer served often, encoded
/// once).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum Data {
    Value(Value),
    Encoded(Box<RawValue>),
}

#[derive(Debug, Clone)]
pub struct ErrorParts {
    /// `None`: the module the route belongs to.
    pub module: Option<&'static str>,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    /// The offending field of a `VALIDATION_ERROR`.
    pub field: Option<String>,
}

impl EnvelopeParts {
    pub fn success(description: impl Into<Cow<'static, str>>, data: Value) -> Self {
        Self {
            description: description.into(),
            data: Data::Value(data),
            error: None,
        }
    }

    pub fn failure(error: ErrorParts) -> Self {
        Self {
            description: Cow::Borrowed(""),
            data: Data::Value(Value::Object(Default::default())),
            error: Some(error),
        }
    }

    /// The JSON body of a response with `status`, for the request `request_id` to a route of
    /// `module`.
    pub fn render(&self, status: StatusCode, request_id: &str, module: &'static str) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Envelope<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            success: bool,
            description: &'a str,
            data: &'a Data,
            error: Option<ErrorBody<'a>>,
            request_id: &'a str,
        }

        #[derive(Serialize)]
        struct ErrorBody<'a> {
            module: &'static str,
            code: &'static str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            field: Option<&'a str>,
        }

        let description = match &self.error {
            Some(_) => status.canonical_reason().unwrap_or("Error"),
            None => &self.description,
        };
        let envelope = Envelope {
            kind: "response",
            success: self.error.is_none(),
            description,
            data: &self.data,
            error: self.error.as_ref().map(|e| ErrorBody {
                module: e.module.unwrap_or(module),
                code: e.code,
                message: &e.message,
                field: e.field.as_deref(),
            }),
            request_id,
        };
        serde_json::to_vec(&envelope).expect("an envelope always serializes")
    }
}

impl IntoResponse for EnvelopeParts {
    fn into_response(self) -> Response {
        let mut response = Response::new(axum::body::Body::empty());
        response.extensions_mut().insert(self);
        response
    }
}

/// A successful reply: a status, the documented description and the `data` object.
pub struct Reply {
    status: StatusCode,
    parts: EnvelopeParts,
}

impl Reply {
    /// `data`: the operation's documented type (its schema is in the OpenAPI document).
    pub fn ok(description: &'static str, data: impl Serialize) -> Self {
        Self {
            status: StatusCode::OK,
            parts: EnvelopeParts::success(description, to_value(data)),
        }
    }

    /// `ok`, with `data` encoded already.
    pub fn ok_encoded(description: &'static str, data: Box<RawValue>) -> Self {
        Self {
            status: StatusCode::OK,
            parts: EnvelopeParts {
                description: description.into(),
                data: Data::Encoded(data),
                error: None,
            },
        }
    }

    pub fn created(description: &'static str, data: impl Serialize) -> Self {
        Self {
            status: StatusCode::CREATED,
            parts: EnvelopeParts::success(description, to_value(data)),
        }
    }
}

fn to_value(data: impl Serialize) -> Value {
    serde_json::to_value(data).expect("reply data has string keys only")
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (self.status, self.parts).into_response()
    }
}

/// The module named in error bodies, from the resource a path addresses.
pub fn module_for_path(path: &str) -> &'static str {
    let mut segments = path.trim_start_matches('/').split('/');
    match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some("v1"), Some("accounts"), Some(_), resource) => match resource {
            None | Some("") | Some("keys") => "Accounts",
            // A room's stores and comments belong to their own modules.
            Some("rooms") => match segments.nth(1) {
                Some("stores") => "Stores",
                Some("threads" | "comments") => "Comments",
                _ => "Rooms",
            },
            Some("users") => "Users",
            Some("webhooks") => "Webhooks",
            Some("workflows") => "Workflows",
            Some("upload" | "files" | "storage") => "Storage",
            Some("stores") => "Stores",
            Some("comments") => "Comments",
            Some(_) => "Server",
        },
        _ => "Server",
    }
}

/// An error as the REST API answers it: its status and the envelope (rendered with the
/// request ID by the middleware), and the headers some errors need.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(error) = &self {
            tracing::error!(error = format!("{error:#}"), "request failed");
        }
        let status = self.status();
        let field = match &self {
            ApiError::Validation { field, .. } => Some(field.clone()),
            _ => None,
        };
        let parts = EnvelopeParts::failure(ErrorParts {
            module: self.module(),
            code: self.code(),
            message: self.message(),
            field,
        });
        let mut response = (status, parts).into_response();
        match self {
            ApiError::RateLimited { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            // The rest of the body may still be on its way: the connection cannot be reused,
            // and this tells both the client and hyper to close it after the answer.
            ApiError::RequestTimeout => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_success_shape() {
        let parts =
            EnvelopeParts::success("Room created", serde_json::json!({"room": {"id": "r"}}));
        let body: Value =
            serde_json::from_slice(&parts.render(StatusCode::CREATED, "req_1", "Rooms")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "response", "success": true, "description": "Room created",
                "data": {"room": {"id": "r"}}, "error": null, "requestId": "req_1"
            })
        );
    }

    #[test]
    fn renders_errors_with_the_route_module() {
        let parts = EnvelopeParts::failure(ErrorParts {
            module: None,
            code: "NOT_FOUND",
            message: "Room not found".into(),
            field: None,
        });
        let body: Value =
            serde_json::from_slice(&parts.render(StatusCode::NOT_FOUND, "req_2", "Rooms")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "response", "success": false, "description": "Not Found", "data": {},
                "error": {"module": "Rooms", "code": "NOT_FOUND", "message": "Room not found"},
                "requestId": "req_2"
            })
        );
    }

    #[test]
    fn maps_paths_to_modules() {
        let account = "/v1/accounts/0c2f5a4e-0000-4000-8000-000000000000";
        assert_eq!(module_for_path(&format!("{account}/rooms/x")), "Rooms");
        assert_eq!(
            module_for_path(&format!("{account}/rooms/x/stores/t")),
            "Stores"
        );
        assert_eq!(
            module_for_path(&format!("{account}/rooms/x/threads")),
            "Comments"
        );
        assert_eq!(module_for_path(&format!("{account}/stores")), "Stores");
        assert_eq!(module_for_path(&format!("{account}/users")), "Users");
        assert_eq!(module_for_path(&format!("{account}/keys")), "Accounts");
        assert_eq!(module_for_path(account), "Accounts");
        assert_eq!(module_for_path("/nowhere"), "Server");
    }
}
