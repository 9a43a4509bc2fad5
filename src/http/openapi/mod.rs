//! The OpenAPI 3.1 document of the REST API, served at `GET /v1/openapi.json`: generated from
//! the `#[utoipa::path]` annotation on each handler and the `ToSchema` types handlers answer
//! with; the envelope's schemas are in `envelope`, and what every route shares (the errors the
//! middleware gives, the `accountId` path parameter, the security schemes) is added in one
//! pass by `conventions`.

mod conventions;
mod envelope;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{Number, OpenApi};

use super::{
    accounts, comments, files, health, metrics, rooms, stores, users, webhooks, workflows,
};
use crate::config::Config;
use crate::state::AppState;
use conventions::Conventions;
pub use envelope::{Deleted, Envelope, ErrorBody, ErrorCode, ErrorEnvelope};

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::envelope::ERROR_CODES;
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
