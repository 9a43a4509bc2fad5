//! Around every request: its ID, its log span and line, panics turned into 500s, and the
//! envelope rendered into the body.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use tracing::Instrument as _;

use super::envelope::{module_for_path, EnvelopeParts, ErrorParts};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest client-supplied request ID we adopt; longer ones are replaced.
const MAX_CLIENT_REQUEST_ID: usize = 128;

pub async fn request_context(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request_id(request.headers());
    let path = request.uri().path().to_owned();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %path,
    );
    let response = AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .instrument(span.clone())
        .await
        .unwrap_or_else(|_| {
            tracing::error!(parent: &span, "request handler panicked");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                fallback_parts(StatusCode::INTERNAL_SERVER_ERROR),
            )
                .into_response()
        });
    let response = render(response, &request_id, module_for_path(&path));
    let status = response.status().as_u16();
    let latency_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1000.0;
    // Probes run every few seconds; keep them out of the default log.
    if path == "/healthz" || path == "/readyz" {
        tracing::debug!(parent: &span, status, latency_ms, "request");
    } else {
        tracing::info!(parent: &span, status, latency_ms, "request");
    }
    response
}

/// The client's `X-Request-Id` when it is short and plain, else a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= MAX_CLIENT_REQUEST_ID
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| format!("req_{}", uuid::Uuid::new_v4().simple()))
}

/// Writes the envelope of `response` into its body. A failure that did not come from our code
/// (an extractor of the framework, say) gets an envelope made from its status.
fn render(mut response: Response, request_id: &str, module: &'static str) -> Response {
    let status = response.status();
    let parts = match response.extensions_mut().remove::<EnvelopeParts>() {
        Some(parts) => Some(parts),
        None if status.is_client_error() || status.is_server_error() => {
            Some(fallback_parts(status))
        }
        None => None,
    };
    if let Some(parts) = parts {
        let body = parts.render(status, request_id, module);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.remove(header::CONTENT_LENGTH);
        *response.body_mut() = Body::from(body);
    }
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

fn fallback_parts(status: StatusCode) -> EnvelopeParts {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("NOT_FOUND", "Route not found"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("METHOD_NOT_ALLOWED", "Method not allowed on this route")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("PAYLOAD_TOO_LARGE", "Request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "UNSUPPORTED_MEDIA_TYPE",
            "Content-Type must be application/json",
        ),
        StatusCode::UNAUTHORIZED => (
            "UNAUTHORIZED",
            "Invalid or missing authentication credentials",
        ),
        StatusCode::TOO_MANY_REQUESTS => ("RATE_LIMITED", "Too many requests"),
        s if s.is_server_error() => ("INTERNAL_ERROR", "An internal error occurred"),
        _ => ("BAD_REQUEST", "The request could not be understood"),
    };
    EnvelopeParts::failure(ErrorParts {
        module: None,
        code,
        message: message.into(),
        field: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adopts_plain_client_request_ids_only() {
        let mut headers = HeaderMap::new();
        assert!(request_id(&headers).starts_with("req_"));
        headers.insert(
            REQUEST_ID_HEADER,
            HeaderValue::from_static("trace-42.a:b_c"),
        );
        assert_eq!(request_id(&headers), "trace-42.a:b_c");
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("has space"));
        assert!(request_id(&headers).starts_with("req_"));
        let long = "x".repeat(MAX_CLIENT_REQUEST_ID + 1);
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(&long).unwrap());
        assert!(request_id(&headers).starts_with("req_"));
    }
}
