//! What every operation shares, added to the document after the annotations are read: the
//! security schemes, the `accountId` path parameter, and the error answers the middleware and
//! the extractors may give.

use axum::http::StatusCode;
use serde_json::json;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{Modify, PartialSchema};

use super::ACCOUNT_PREFIX;
use crate::auth::sessions::COOKIE_NAME;
use crate::domain::AccountId;

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
pub(super) struct Conventions;

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
