//! Traces over OTLP/HTTP with JSON encoding (`traces.otlp_endpoint`; off when empty): the
//! spans the logs already carry (`request`, `socket`, `room`, ...) become OpenTelemetry spans —
//! a trace per root span, children under their parents — batched and posted to a collector.
//! A collector that does not answer loses spans, never slows the server: the queue is bounded
//! and what does not fit is dropped.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Finished spans waiting to be sent; past this they are dropped.
const QUEUE: usize = 8_192;
/// Spans sent in one request at most.
const BATCH: usize = 512;
/// How long a finished span may wait for its batch.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Time for the collector to take one batch.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// One span as recorded, then as sent.
struct SpanRecord {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_id: Option<[u8; 8]>,
    name: &'static str,
    /// Server spans: a request or a socket, started by a client.
    server: bool,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<(&'static str, String)>,
}

impl SpanRecord {
    fn json(&self) -> Value {
        let attributes: Vec<Value> = self
            .attributes
            .iter()
            .map(|(key, value)| json!({ "key": key, "value": { "stringValue": value } }))
            .collect();
        let mut span = json!({
            "traceId": hex(&self.trace_id),
            "spanId": hex(&self.span_id),
            "name": self.name,
            // SPAN_KIND_SERVER, SPAN_KIND_INTERNAL.
            "kind": if self.server { 2 } else { 1 },
            "startTimeUnixNano": nanos(self.start).to_string(),
            "endTimeUnixNano": nanos(self.end).to_string(),
            "attributes": attributes,
        });
        if let Some(parent) = &self.parent_id {
            span["parentSpanId"] = json!(hex(parent));
        }
        span
    }
}

/// The span's fields as text attributes.
struct Fields<'a>(&'a mut Vec<(&'static str, String)>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name(), value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name(), format!("{value:?}")));
    }
}

/// The layer that records spans and hands finished ones to the exporter.
pub struct OtlpLayer {
    finished: mpsc::Sender<SpanRecord>,
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = span.parent().and_then(|parent| {
            parent
                .extensions()
                .get::<SpanRecord>()
                .map(|p| (p.trace_id, p.span_id))
        });
        let mut attributes = Vec::new();
        attrs.record(&mut Fields(&mut attributes));
        let name = attrs.metadata().name();
        let record = SpanRecord {
            trace_id: parent.map_or_else(random, |(trace, _)| trace),
            span_id: random(),
            parent_id: parent.map(|(_, span)| span),
            name,
            server: matches!(name, "request" | "socket"),
            start: SystemTime::now(),
            end: SystemTime::now(),
            attributes,
        };
        span.extensions_mut().insert(record);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        let Some(record) = extensions.get_mut::<SpanRecord>() else {
            return;
        };
        // A field recorded later (a socket's user and room) replaces its empty declaration.
        let mut added = Vec::new();
        values.record(&mut Fields(&mut added));
        record
            .attributes
            .retain(|(key, _)| !added.iter().any(|(k, _)| k == key));
        record.attributes.extend(added);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(mut record) = span.extensions_mut().remove::<SpanRecord>() else {
            return;
        };
        record.end = SystemTime::now();
        // Full: the collector is slow or away; this span is lost.
        let _ = self.finished.try_send(record);
    }
}

/// The layer, and the task that sends what it records to `endpoint` (to spawn on a runtime).
pub fn layer(
    endpoint: String,
    service: String,
) -> (OtlpLayer, impl std::future::Future<Output = ()> + Send) {
    let (finished, queue) = mpsc::channel(QUEUE);
    (OtlpLayer { finished }, export(endpoint, service, queue))
}

async fn export(endpoint: String, service: String, mut queue: mpsc::Receiver<SpanRecord>) {
    // No proxy and no tracing of its own: the exporter's requests make no spans.
    let Ok(client) = reqwest::Client::builder()
        .no_proxy()
        .timeout(SEND_TIMEOUT)
        .build()
    else {
        return;
    };
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = match queue.recv().await {
            Some(span) => span,
            None => return,
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let body = json!({
            "resourceSpans": [{
                "resource": { "attributes": [
                    { "key": "service.name", "value": { "stringValue": service } },
                    { "key": "service.version", "value": { "stringValue": env!("CARGO_PKG_VERSION") } },
                ]},
                "scopeSpans": [{
                    "scope": { "name": "collabkit" },
                    "spans": batch.drain(..).map(|span| span.json()).collect::<Vec<_>>(),
                }],
            }],
        });
        // A failure is not logged: a log line per lost batch would itself be traced.
        let _ = client.post(&endpoint).json(&body).send().await;
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The operating system's source does not fail on Linux; all-zero ids would be invalid,
    // so a failure gives the time's bytes instead.
    if getrandom::fill(&mut bytes).is_err() {
        let now = nanos(SystemTime::now()).to_le_bytes();
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = now[i % now.len()] | 1;
        }
    }
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn nanos(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
}
