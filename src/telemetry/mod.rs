//! Logging: human-readable or JSON lines on stderr (stdout stays clean for `--json` output);
//! and, when `traces.otlp_endpoint` is set, the same spans as OpenTelemetry traces (`otlp`).

pub mod otlp;

use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat, TracesConfig};

/// Sets up logging, and tracing if configured. Traces need a Tokio runtime to send from: without
/// one (or with an empty endpoint) there are none.
pub fn init(log: &LogConfig, traces: &TracesConfig) {
    let filter = EnvFilter::try_new(&log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match log.format {
        LogFormat::Human => lines.boxed(),
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    let runtime = tokio::runtime::Handle::try_current().ok();
    let spans = match (traces.otlp_endpoint.as_str(), runtime) {
        ("", _) | (_, None) => None,
        (endpoint, Some(runtime)) => {
            let (layer, export) = otlp::layer(endpoint.to_owned(), traces.service_name.clone());
            runtime.spawn(export);
            // The server's own spans, whatever the log level says.
            let ours = filter_fn(|meta| {
                meta.is_span()
                    && *meta.level() <= tracing::Level::INFO
                    && meta.target().starts_with("collabkit")
            });
            Some(layer.with_filter(ours))
        }
    };
    // A second init (tests that build several apps) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(spans)
        .try_init();
}
