//! Around every request: its ID, its span and log line, CORS, compression, panics turned
//! into 500s, a time limit, the hard body cap, and the envelope rendered into every body.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::envelope::{module_for_path, EnvelopeParts, ErrorParts};
use crate::config::Config;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest client-supplied request ID we adopt; longer ones are replaced.
const MAX_CLIENT_REQUEST_ID: usize = 128;

/// The middleware around every route, outermost first: the request ID (tower-http: adopted
/// from the client when plain, else made, and echoed), the request's span (tower-http), CORS
/// for the configured origins (tower-http), compression of answers the client accepts
/// compressed (tower-http), the envelope and the log line (ours), panics turned into a 500
/// (tower-http), a time limit on the whole request and a hard cap on bodies (tower-http). The
/// envelope sits inside the last three so that their answers are enveloped too.
pub fn around(router: Router, layers: &Layers) -> Router {
    let limited = router
        .clone()
        .layer(RequestBodyLimitLayer::new(layers.hard_body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            layers.request_timeout,
        ));
    // Uploads (`POST .../upload`) stream large bodies for a long time: the same routes, with
    // their own body cap and time limit instead.
    let router = match layers.uploads {
        None => limited,
        Some(uploads) => {
            let uploading = router
                .layer(RequestBodyLimitLayer::new(uploads.body_limit))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    uploads.timeout,
                ));
            Router::new().fallback(move |request: Request| {
                let routes = if super::files::is_upload(request.method(), request.uri().path()) {
                    uploading.clone()
                } else {
                    limited.clone()
                };
                async move {
                    use tower::ServiceExt as _;
                    match routes.oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    }
                }
            })
        }
    };
    let router = router
        .layer(CatchPanicLayer::custom(panic_answer))
        .layer(axum::middleware::from_fn(envelope))
        .layer(CompressionLayer::new().compress_when(DefaultPredicate::new().and(NotStoredFiles)));
    let router = match cors(&layers.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                // The envelope middleware writes the one log line, knowing the module.
                .on_request(())
                .on_response(())
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeId))
        .layer(axum::middleware::from_fn(drop_unusable_request_id))
}

/// Stored files go out as stored: their length, ranges and ETag are those of the bytes.
#[derive(Debug, Clone, Copy)]
struct NotStoredFiles;

impl Predicate for NotStoredFiles {
    fn should_compress<B>(&self, response: &axum::http::Response<B>) -> bool
    where
        B: axum::body::HttpBody,
    {
        response
            .extensions()
            .get::<super::files::Uncompressed>()
            .is_none()
    }
}

/// The limits of uploads, which replace the usual ones.
#[derive(Debug, Clone, Copy)]
pub struct UploadLayers {
    pub body_limit: usize,
    pub timeout: Duration,
}

/// What the middleware needs from the configuration.
#[derive(Debug, Clone)]
pub struct Layers {
    /// Bodies larger than this are refused before any handler (`limits.max_body_bytes` is the
    /// documented limit, checked while reading; this is the hard stop beyond the draining).
    pub hard_body_limit: usize,
    pub request_timeout: Duration,
    pub cors_origins: Vec<String>,
    /// `None`: uploads get the usual limits.
    pub uploads: Option<UploadLayers>,
}

impl Layers {
    pub fn from_config(config: &Config) -> Self {
        Self {
            hard_body_limit: hard_body_limit(config.limits.max_body_bytes),
            request_timeout: config.http.request_timeout(),
            cors_origins: config.http.cors_origins.clone(),
            uploads: Some(UploadLayers {
                // The file, its multipart framing and form fields, and what is drained of a
                // refused one.
                body_limit: usize::try_from(config.files.max_file_bytes)
                    .unwrap_or(usize::MAX)
                    .saturating_add(UPLOAD_FRAMING_BYTES)
                    .saturating_add(super::extract::OVERSIZED_DRAIN_BYTES),
                timeout: config.files.upload_timeout(),
            }),
        }
    }
}

/// CORS for the configured origins (`*`: any); none configured, no CORS at all.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                request_id.clone(),
            ])
            .expose_headers([request_id, header::RETRY_AFTER])
            .max_age(CORS_MAX_AGE),
    )
}

/// Room for an upload's multipart boundaries, part headers and ID fields around the file.
const UPLOAD_FRAMING_BYTES: usize = 64 * 1024;

/// How long a browser may keep a preflight's answer.
const CORS_MAX_AGE: Duration = Duration::from_secs(600);

fn request_span(request: &axum::http::Request<Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// Makes the ID of a request that came without a usable one.
#[derive(Clone, Copy)]
struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&format!("req_{}", uuid::Uuid::new_v4().simple()))
            .ok()
            .map(RequestId::new)
    }
}

/// Removes the client's `X-Request-Id` unless it is one short and plain value (it ends up in
/// logs and answers), so that one is made instead.
async fn drop_unusable_request_id(mut request: Request, next: Next) -> Response {
    let mut given = request.headers().get_all(REQUEST_ID_HEADER).iter();
    let usable = match (given.next(), given.next()) {
        (None, _) => true,
        (Some(id), None) => id.to_str().is_ok_and(is_plain_request_id),
        (Some(_), Some(_)) => false,
    };
    if !usable {
        request.headers_mut().remove(REQUEST_ID_HEADER);
    }
    next.run(request).await
}

fn is_plain_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_REQUEST_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Renders every answer's envelope with the request's ID and module, and logs the request.
async fn envelope(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let path = request.uri().path().to_owned();
    let response = render(next.run(request).await, &request_id, module_for_path(&path));
    let status = response.status().as_u16();
    let latency_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1000.0;
    // Probes run every few seconds; keep them out of the default log.
    if path == "/healthz" || path == "/readyz" {
        tracing::debug!(status, latency_ms, "request");
    } else {
        tracing::info!(status, latency_ms, "request");
    }
    response
}

/// A handler panicked: a 500 in the envelope, and the log says so (never the panic's text in
/// the answer).
fn panic_answer(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    let status = StatusCode::INTERNAL_SERVER_ERROR;
    (status, fallback_parts(status)).into_response()
}

/// The hard cap on a body: what may be read and thrown away to answer 413 cleanly, on top of
/// the documented limit.
pub fn hard_body_limit(max_body_bytes: usize) -> usize {
    max_body_bytes.saturating_add(super::extract::OVERSIZED_DRAIN_BYTES)
}

/// Writes the envelope of `response` into its body. A failure that did not come from our code
/// (an extractor of the framework, say) gets an envelope made from its status.
fn render(mut response: Response, request_id: &str, module: &'static str) -> Response {
    let status = response.status();
    let parts = match response.extensions_mut().remove::<EnvelopeParts>() {
        Some(parts) => Some(parts),
        // The dashboard's pages answer their failures in HTML of their own.
        None if response.extensions().get::<OwnBody>().is_some() => None,
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

/// Marks an answer whose body is the handler's own (a dashboard page in HTML), which the
/// envelope leaves alone whatever its status.
#[derive(Debug, Clone, Copy)]
pub struct OwnBody;

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
        StatusCode::SERVICE_UNAVAILABLE => (
            "SERVICE_UNAVAILABLE",
            "The request took too long to serve; try again",
        ),
        StatusCode::REQUEST_TIMEOUT => ("REQUEST_TIMEOUT", "The request did not arrive in time"),
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
    use axum::body::to_bytes;
    use axum::routing::{get, post};
    use serde_json::Value;
    use tower::ServiceExt as _;

    use super::*;

    const LIMIT: usize = 1024;

    /// The middleware around a few routes that misbehave on purpose.
    fn app(cors_origins: &[&str]) -> Router {
        let routes = Router::new()
            .route("/ok", get(|| async { "x".repeat(4096) }))
            .route(
                "/panic",
                get(|| async {
                    panic!("secret detail");
                    #[allow(unreachable_code)]
                    ()
                }),
            )
            .route(
                "/slow",
                get(|| async { tokio::time::sleep(Duration::from_secs(5)).await }),
            )
            .route("/echo", post(|body: axum::body::Bytes| async move { body }));
        let layers = Layers {
            hard_body_limit: LIMIT,
            request_timeout: Duration::from_millis(50),
            cors_origins: cors_origins.iter().map(|o| o.to_string()).collect(),
            uploads: None,
        };
        around(routes, &layers)
    }

    async fn call(app: Router, request: axum::http::Request<Body>) -> (Response, Value) {
        let response = app.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = to_bytes(body, usize::MAX).await.unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (Response::from_parts(parts, Body::empty()), value)
    }

    fn get_request(path: &str) -> axum::http::Request<Body> {
        axum::http::Request::get(path).body(Body::empty()).unwrap()
    }

    fn assert_envelope(response: &Response, body: &Value, code: &str) {
        assert_eq!(body["type"], "response", "{body}");
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], code, "{body}");
        let id = body["requestId"].as_str().unwrap();
        assert_eq!(response.headers()[REQUEST_ID_HEADER], id);
    }

    #[test]
    fn adopts_plain_client_request_ids_only() {
        assert!(is_plain_request_id("trace-42.a:b_c"));
        assert!(!is_plain_request_id("has space"));
        assert!(!is_plain_request_id(""));
        assert!(!is_plain_request_id(&"x".repeat(MAX_CLIENT_REQUEST_ID + 1)));
    }

    #[tokio::test]
    async fn request_ids_are_adopted_when_plain_and_made_otherwise() {
        let request = axum::http::Request::get("/nope")
            .header(REQUEST_ID_HEADER, "trace-1")
            .body(Body::empty())
            .unwrap();
        let (response, body) = call(app(&[]), request).await;
        assert_eq!(body["requestId"], "trace-1");
        assert_eq!(response.headers()[REQUEST_ID_HEADER], "trace-1");
        for ids in [vec!["has space"], vec!["a", "b"]] {
            let mut request = axum::http::Request::get("/nope");
            for id in ids {
                request = request.header(REQUEST_ID_HEADER, id);
            }
            let (response, body) = call(app(&[]), request.body(Body::empty()).unwrap()).await;
            let made = body["requestId"].as_str().unwrap();
            assert!(made.starts_with("req_"), "{made}");
            assert_eq!(response.headers()[REQUEST_ID_HEADER], made);
        }
    }

    #[tokio::test]
    async fn a_panic_is_a_500_in_the_envelope_without_its_detail() {
        let (response, body) = call(app(&[]), get_request("/panic")).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_envelope(&response, &body, "INTERNAL_ERROR");
        assert!(!body.to_string().contains("secret detail"));
    }

    #[tokio::test]
    async fn a_request_over_the_time_limit_is_a_503_in_the_envelope() {
        let (response, body) = call(app(&[]), get_request("/slow")).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_envelope(&response, &body, "SERVICE_UNAVAILABLE");
    }

    #[tokio::test]
    async fn a_body_over_the_hard_cap_is_a_413_in_the_envelope() {
        let request = axum::http::Request::post("/echo")
            .header(header::CONTENT_LENGTH, LIMIT + 1)
            .body(Body::from(vec![b'x'; LIMIT + 1]))
            .unwrap();
        let (response, body) = call(app(&[]), request).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_envelope(&response, &body, "PAYLOAD_TOO_LARGE");
    }

    #[tokio::test]
    async fn answers_are_compressed_for_clients_that_accept_it() {
        let request = axum::http::Request::get("/ok")
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Body::empty())
            .unwrap();
        let response = app(&[]).oneshot(request).await.unwrap();
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
        let response = app(&[]).oneshot(get_request("/ok")).await.unwrap();
        assert!(response.headers().get(header::CONTENT_ENCODING).is_none());
    }

    #[tokio::test]
    async fn cors_answers_the_configured_origins_only() {
        let origin = "https://app.example.com";
        let preflight = || {
            axum::http::Request::options("/ok")
                .header(header::ORIGIN, origin)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
                .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
                .body(Body::empty())
                .unwrap()
        };
        let response = app(&[origin]).oneshot(preflight()).await.unwrap();
        assert!(response.status().is_success());
        assert_eq!(
            response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            origin
        );
        let simple = axum::http::Request::get("/ok")
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .unwrap();
        let response = app(&[origin]).oneshot(simple).await.unwrap();
        assert_eq!(
            response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            origin
        );
        let exposed = response.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(exposed.contains(REQUEST_ID_HEADER), "{exposed}");
        // Another origin, or none configured: no CORS at all.
        for (configured, asking) in [(&[origin][..], "https://evil.example"), (&[][..], origin)] {
            let request = axum::http::Request::get("/ok")
                .header(header::ORIGIN, asking)
                .body(Body::empty())
                .unwrap();
            let response = app(configured).oneshot(request).await.unwrap();
            assert!(response
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none());
        }
    }
}
