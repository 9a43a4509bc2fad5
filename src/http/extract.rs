//! Request extractors whose failures answer in the envelope: JSON bodies, query strings and
//! path parameters.

use std::str::FromStr;

use std::time::Duration;

use axum::body::{Body, HttpBody as _};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::header;
use axum::http::request::Parts;
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;

use crate::domain::text;
use crate::domain::time::TimeBound;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Entity, ListFilter, Page};

/// Longest `search` term; a longer one cannot match any name we accept.
const MAX_SEARCH_CHARS: usize = 256;

/// A JSON object body deserialized into `T`. Malformed JSON is `BAD_REQUEST`; JSON that does
/// not fit `T` (a wrong type, an unknown field) is `VALIDATION_ERROR` naming the field.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        if let Some(content_type) = request.headers().get(header::CONTENT_TYPE) {
            if !is_json(content_type.to_str().unwrap_or("")) {
                return Err(ApiError::UnsupportedMediaType);
            }
        }
        let limit = state.config().limits.max_body_bytes;
        let timeout = state.config().http.body_read_timeout();
        let bytes = read_limited(request.into_body(), limit, timeout).await?;
        parse_json_object(&bytes).map(JsonBody)
    }
}

/// How much of an oversized body is still read (and thrown away) before answering 413: a
/// server that answers and closes while the client is still sending makes the client's TCP
/// stack drop the answer (a reset), so the client would see a broken connection instead.
pub const OVERSIZED_DRAIN_BYTES: usize = 8 * 1024 * 1024;
const OVERSIZED_DRAIN_TIME: Duration = Duration::from_secs(5);

/// The body, if it is at most `limit` bytes and arrives whole within `timeout`. The deadline
/// covers the whole body, not each read: a client trickling a byte at a time must not hold
/// the request (and its connection) open for ever.
async fn read_limited(body: Body, limit: usize, timeout: Duration) -> Result<Vec<u8>, ApiError> {
    let declared = body
        .size_hint()
        .exact()
        .and_then(|n| usize::try_from(n).ok());
    let too_large = ApiError::PayloadTooLarge { limit };
    if declared.is_some_and(|n| n > limit.saturating_add(OVERSIZED_DRAIN_BYTES)) {
        return Err(too_large);
    }
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let deadline = tokio::time::Instant::now() + timeout;
    while let Some(chunk) = tokio::time::timeout_at(deadline, stream.next())
        .await
        .map_err(|_| ApiError::RequestTimeout)?
    {
        let chunk =
            chunk.map_err(|_| ApiError::BadRequest("The request body could not be read".into()))?;
        if bytes.len() + chunk.len() > limit {
            drain(stream, chunk.len()).await;
            return Err(too_large);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

async fn drain(mut stream: axum::body::BodyDataStream, already: usize) {
    let mut drained = already;
    let _ = tokio::time::timeout(OVERSIZED_DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            drained += chunk.len();
            if drained > OVERSIZED_DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

pub fn parse_json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(ApiError::BadRequest(
                "The request body is empty; send a JSON object".into(),
            ))
        }
        Some(b'{') => {}
        // A struct would also accept a JSON array, field by position: refuse it here.
        Some(_) => {
            return Err(ApiError::BadRequest(
                "The request body must be a JSON object".into(),
            ))
        }
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("Malformed JSON: {e}").into()))?;
    ApiError::check_storable(&value, "body")?;
    ApiError::parse_value(value)
}

/// The query string's parameters; when one repeats, the last wins.
pub struct QueryParams(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|_| ApiError::BadRequest("Malformed query string".into()))?;
        if let Some((key, _)) = pairs
            .iter()
            .find(|(key, value)| !text::is_storable(key) || !text::is_storable(value))
        {
            let name = key.replace(text::FORBIDDEN, "");
            let message = format!("{name} must not contain NUL characters");
            return Err(ApiError::validation(name, message));
        }
        Ok(Self(pairs))
    }
}

/// The query parameters `QueryParams::page` reads, as the OpenAPI document describes them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(dead_code, reason = "describes what `QueryParams::page` reads")]
pub struct PageQuery {
    /// Items per page.
    #[param(minimum = 1, maximum = 100, default = 50, nullable = false)]
    limit: Option<i64>,
    /// Items to skip.
    #[param(minimum = 0, default = 0, nullable = false)]
    offset: Option<i64>,
}

/// A `from` or `to`: a date (`2026-06-01`) or a date-time (`2026-06-01T10:00:00Z`); the
/// server also takes a date-time without an offset, in UTC (see `TimeBound::parse`).
fn time_bound_schema() -> RefOr<Schema> {
    let string = |format| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(format)))
    };
    OneOfBuilder::new()
        .item(string(KnownFormat::Date))
        .item(string(KnownFormat::DateTime))
        .into()
}

/// The query parameters `QueryParams::page` and `QueryParams::filter` read, as the OpenAPI
/// document describes them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(dead_code, reason = "describes what `QueryParams::filter` reads")]
pub struct ListQuery {
    /// Items per page.
    #[param(minimum = 1, maximum = 100, default = 50, nullable = false)]
    limit: Option<i64>,
    /// Items to skip.
    #[param(minimum = 0, default = 0, nullable = false)]
    offset: Option<i64>,
    /// Case-insensitive substring (`%` and `_` match themselves).
    #[param(max_length = 256, nullable = false)]
    search: Option<String>,
    /// Created at or after: an ISO date or date-time (without an offset: UTC).
    #[param(schema_with = time_bound_schema)]
    from: Option<String>,
    /// Created at or before: an ISO date (the whole day) or date-time.
    #[param(schema_with = time_bound_schema)]
    to: Option<String>,
}

impl QueryParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of a repeated parameter, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// `limit` (1 to 100, default 50) and `offset` (0 or more, default 0).
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = match self.get("limit") {
            None => Page::DEFAULT_LIMIT,
            Some(text) => text
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=Page::MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::validation(
                        "limit",
                        format!("limit must be an integer from 1 to {}", Page::MAX_LIMIT),
                    )
                })?,
        };
        let offset = match self.get("offset") {
            None => 0,
            Some(text) => text
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    ApiError::validation("offset", "offset must be an integer of 0 or more")
                })?,
        };
        Ok(Page { limit, offset })
    }

    /// `search`, `from` and `to`.
    pub fn filter(&self) -> Result<ListFilter, ApiError> {
        let search = self.get("search").map(str::trim).filter(|s| !s.is_empty());
        if search.is_some_and(|s| s.chars().count() > MAX_SEARCH_CHARS) {
            return Err(ApiError::validation(
                "search",
                format!("search must be at most {MAX_SEARCH_CHARS} characters"),
            ));
        }
        let bound = |name: &str| -> Result<Option<TimeBound>, ApiError> {
            self.get(name)
                .map(|text| {
                    TimeBound::parse(text).ok_or_else(|| {
                        ApiError::validation(
                            name,
                            format!(
                                "{name} must be an ISO date (2026-06-01) or date-time \
                                 (2026-06-01T10:00:00Z)"
                            ),
                        )
                    })
                })
                .transpose()
        };
        Ok(ListFilter {
            search: search.map(str::to_owned),
            created_from: bound("from")?.map(TimeBound::start),
            created_before: bound("to")?.map(TimeBound::end_exclusive),
        })
    }

    /// A required parameter holding an identifier.
    pub fn required_id<T: FromStr>(&self, name: &str) -> Result<T, ApiError> {
        let text = self
            .get(name)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::validation(name, format!("{name} is required")))?;
        text.parse()
            .map_err(|_| ApiError::validation(name, format!("{name} must be a UUID")))
    }
}

/// The route's path parameters, percent-decoded.
pub struct PathParams(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::BadRequest("Malformed path".into()))?;
        // Nothing with a NUL in it can exist, and PostgreSQL cannot even be asked.
        if raw.iter().any(|(_, value)| !text::is_storable(value)) {
            return Err(ApiError::NotFound("Not found".into()));
        }
        Ok(Self(
            raw.iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        ))
    }
}

impl PathParams {
    pub fn text(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.as_str())
    }

    /// An identifier in the path; one that cannot exist is simply not found.
    pub fn id<T: FromStr>(&self, name: &str, entity: Entity) -> Result<T, ApiError> {
        self.text(name)
            .parse()
            .map_err(|_| ApiError::not_found(entity))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Body {
        #[allow(dead_code)]
        name: Option<String>,
        #[allow(dead_code)]
        custom_id: Option<String>,
    }

    fn error(bytes: &[u8]) -> (String, String, String) {
        match parse_json_object::<Body>(bytes).unwrap_err() {
            ApiError::Validation { field, message } => ("VALIDATION_ERROR".into(), field, message),
            other => (other.code().into(), String::new(), other.message().into()),
        }
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        for bytes in [
            &b""[..],
            b"   ",
            b"{",
            b"{\"name\":}",
            b"[1]",
            b"\"x\"",
            b"{} x",
            b"\xff\xfe",
        ] {
            assert_eq!(
                error(bytes).0,
                "BAD_REQUEST",
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert_eq!(error(b"{\"name\":\"\xff\"}").0, "BAD_REQUEST");
    }

    #[test]
    fn wrong_shapes_name_the_field() {
        assert_eq!(
            error(b"{\"name\": 5}"),
            (
                "VALIDATION_ERROR".into(),
                "name".into(),
                "name: invalid type: integer `5`, expected a string".into()
            )
        );
        let (code, field, message) = error(b"{\"nmae\": \"x\"}");
        assert_eq!(
            (code.as_str(), field.as_str()),
            ("VALIDATION_ERROR", "nmae")
        );
        assert_eq!(message, "Unknown field 'nmae'");
    }

    #[test]
    fn accepts_json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
