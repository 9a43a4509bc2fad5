//! Prometheus metrics (`GET /metrics`; names, units and suggested alerts in
//! docs/operations.md#metrics). Counters and histograms are kept where things happen; gauges
//! are read when scraped. No label takes an unbounded value: routes are the router's patterns
//! (never a room or user id), statuses are HTTP codes, outcomes are a fixed few words.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histograms' buckets, in seconds.
const SECONDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram with the `SECONDS` buckets.
#[derive(Default)]
pub struct Histogram {
    /// Observations at most each bucket's bound (not cumulative; summed when rendered).
    buckets: [AtomicU64; SECONDS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(bucket) = SECONDS.iter().position(|&bound| seconds <= bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let separator = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in SECONDS.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {count}"
        );
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = |labels: &str| {
            if labels.is_empty() {
                String::new()
            } else {
                format!("{{{labels}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// Counts of a fixed set of outcomes.
pub struct Outcomes<const N: usize> {
    names: [&'static str; N],
    counts: [AtomicU64; N],
}

impl<const N: usize> Outcomes<N> {
    fn new(names: [&'static str; N]) -> Self {
        Self {
            names,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Counts one `outcome`; false (nothing counted) unless it is one of the names given at
    /// creation.
    pub fn add(&self, outcome: &str) -> bool {
        let found = self.names.iter().position(|&name| name == outcome);
        if let Some(i) = found {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        found.is_some()
    }

    fn render(&self, out: &mut String, name: &str, label: &str) {
        for (outcome, count) in self.names.iter().zip(&self.counts) {
            let count = count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{{label}=\"{outcome}\"}} {count}");
        }
    }
}

/// Counts by the values of one label, a fixed list given at creation.
pub struct Tally {
    names: Vec<&'static str>,
    counts: Vec<AtomicU64>,
}

impl Tally {
    fn new(names: Vec<&'static str>) -> Self {
        let counts = names.iter().map(|_| AtomicU64::new(0)).collect();
        Self { names, counts }
    }

    /// Where `name` is counted, if it is one of the names.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|&known| known == name)
    }

    pub fn add_at(&self, index: usize, count: u64) {
        self.counts[index].fetch_add(count, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, label: &str) {
        for (value, count) in self.names.iter().zip(&self.counts) {
            let count = count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {count}");
        }
    }
}

/// One route's requests: by status, and their latency.
#[derive(Default)]
struct RouteStats {
    statuses: BTreeMap<u16, u64>,
    latency: Histogram,
}

/// What this process counts.
pub struct Metrics {
    /// By route pattern, then method.
    http: Mutex<BTreeMap<String, BTreeMap<String, RouteStats>>>,
    /// Webhook delivery attempts: `delivered`, `failed` (to be retried or given up).
    pub webhook_attempts: Outcomes<2>,
    pub webhook_attempt_latency: Histogram,
    /// Workflow runs recorded: `success`, `failed`.
    pub workflow_runs: Outcomes<2>,
    pub workflow_run_duration: Histogram,
    /// Socket requests by method (the protocol's names, or `invalid`).
    socket_requests: Mutex<BTreeMap<String, u64>>,
    /// Store entry writes committed (over the socket or REST), and their time.
    pub store_writes: Histogram,
    /// Authenticated sockets closed, by close code (docs/protocol.md); `4000`: too slow.
    socket_closes: Outcomes<10>,
    /// Presence updates that replaced a state of the same user not yet sent (latest wins).
    pub presence_coalesced: AtomicU64,
    /// Frames written to sockets, by frame type or event name
    /// (`realtime::protocol::frame_label`).
    pub frames_sent: Tally,
    /// From a relayed message's publication on its node to its handling on this one.
    pub relay_lag: Histogram,
}

impl Metrics {
    /// Counters at zero; `frame_labels` are the values the frames-sent metric counts by (the
    /// protocol's: `realtime::protocol::frame_labels`, which this module does not depend on).
    pub fn new(frame_labels: Vec<&'static str>) -> Self {
        Self {
            http: Mutex::default(),
            webhook_attempts: Outcomes::new(["delivered", "failed"]),
            webhook_attempt_latency: Histogram::default(),
            workflow_runs: Outcomes::new(["success", "failed"]),
            workflow_run_duration: Histogram::default(),
            socket_requests: Mutex::default(),
            store_writes: Histogram::default(),
            presence_coalesced: AtomicU64::new(0),
            frames_sent: Tally::new(frame_labels),
            relay_lag: Histogram::default(),
            socket_closes: Outcomes::new([
                "1000", "1001", "1002", "1009", "1013", "4000", "4001", "4401", "4404", "other",
            ]),
        }
    }
}

/// What is read at scrape time.
pub struct Gauges {
    pub http_connections: usize,
    pub sockets_open: usize,
    pub sockets_joined: usize,
    pub rooms_active: usize,
    pub db_connections_in_use: usize,
    pub db_connections_idle: usize,
    pub webhook_deliveries_pending: Option<i64>,
    pub workflow_runs_queued: Option<i64>,
    /// With a relay (several nodes): what it carried.
    pub relay: Option<crate::relay::RelayCounts>,
}

impl Metrics {
    /// Counts one HTTP request: `route` is the matched pattern (`/v1/accounts/{accountId}/rooms`),
    /// or `unmatched`.
    pub fn http_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let mut http = self.http.lock().expect("not poisoned");
        let stats = slot(slot(&mut http, route), method);
        *stats.statuses.entry(status).or_default() += 1;
        stats.latency.observe(took);
    }

    /// Counts one socket request of `method` (a protocol method name, or `invalid`).
    pub fn socket_request(&self, method: &str) {
        *slot(
            &mut self.socket_requests.lock().expect("not poisoned"),
            method,
        ) += 1;
    }

    /// Counts an authenticated socket's close with `code`.
    pub fn socket_closed(&self, code: u16) {
        if !self.socket_closes.add(&code.to_string()) {
            self.socket_closes.add("other");
        }
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(16 * 1024);
        header(
            &mut out,
            "collabkit_http_requests_total",
            "counter",
            "HTTP requests answered, by method, route pattern and status.",
        );
        {
            let http = self.http.lock().expect("not poisoned");
            for (route, method, stats) in by_route(&http) {
                for (status, count) in &stats.statuses {
                    let _ = writeln!(out, "collabkit_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {count}", escape(route));
                }
            }
            header(
                &mut out,
                "collabkit_http_request_duration_seconds",
                "histogram",
                "Time to answer an HTTP request (to the upgrade, for WebSockets).",
            );
            for (route, method, stats) in by_route(&http) {
                let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
                stats
                    .latency
                    .render(&mut out, "collabkit_http_request_duration_seconds", &labels);
            }
        }
        gauge(
            &mut out,
            "collabkit_http_connections",
            "Open HTTP connections, upgraded WebSockets included.",
            gauges.http_connections,
        );
        gauge(
            &mut out,
            "collabkit_sockets_open",
            "Authenticated WebSockets on this node.",
            gauges.sockets_open,
        );
        gauge(
            &mut out,
            "collabkit_sockets_joined",
            "WebSockets that joined their room.",
            gauges.sockets_joined,
        );
        header(&mut out, "collabkit_socket_requests_total", "counter", "Socket requests received, by method (`invalid`: a method or params that did not parse).");
        for (method, count) in self.socket_requests.lock().expect("not poisoned").iter() {
            let _ = writeln!(
                out,
                "collabkit_socket_requests_total{{method=\"{}\"}} {count}",
                escape(method)
            );
        }
        header(
            &mut out,
            "collabkit_socket_frames_sent_total",
            "counter",
            "Frames written to sockets, by type: an event's name (`presence`, `changed`, ...), \
             `res`, `welcome`, `error`, `authFailed`, `pong`, or `other`.",
        );
        self.frames_sent
            .render(&mut out, "collabkit_socket_frames_sent_total", "type");
        header(
            &mut out,
            "collabkit_presence_coalesced_total",
            "counter",
            "Presence updates replaced by a later one of the same user before they went out.",
        );
        let coalesced = self.presence_coalesced.load(Ordering::Relaxed);
        let _ = writeln!(out, "collabkit_presence_coalesced_total {coalesced}");
        header(
            &mut out,
            "collabkit_socket_closes_total",
            "counter",
            "Authenticated sockets closed, by close code (4000: too slow, 4001: no heartbeat).",
        );
        self.socket_closes
            .render(&mut out, "collabkit_socket_closes_total", "code");
        header(
            &mut out,
            "collabkit_store_write_duration_seconds",
            "histogram",
            "Store entry writes committed, and their time (count: the writes).",
        );
        self.store_writes
            .render(&mut out, "collabkit_store_write_duration_seconds", "");
        if let Some(relay) = &gauges.relay {
            header(
                &mut out,
                "collabkit_relay_messages_total",
                "counter",
                "Room messages through Redis, by direction (`dropped`: queues full or Redis away).",
            );
            let _ = writeln!(
                out,
                "collabkit_relay_messages_total{{direction=\"published\"}} {}",
                relay.published
            );
            let _ = writeln!(
                out,
                "collabkit_relay_messages_total{{direction=\"received\"}} {}",
                relay.received
            );
            let _ = writeln!(
                out,
                "collabkit_relay_messages_total{{direction=\"dropped\"}} {}",
                relay.dropped
            );
            header(
                &mut out,
                "collabkit_relay_lag_seconds",
                "histogram",
                "From a room message's publication on another node to its handling here \
                 (the nodes' clock difference included).",
            );
            self.relay_lag
                .render(&mut out, "collabkit_relay_lag_seconds", "");
        }
        gauge(
            &mut out,
            "collabkit_rooms_active",
            "Rooms loaded on this node (with sockets or recent activity).",
            gauges.rooms_active,
        );
        header(
            &mut out,
            "collabkit_db_connections",
            "gauge",
            "Database pool connections, by state.",
        );
        let _ = writeln!(
            out,
            "collabkit_db_connections{{state=\"in_use\"}} {}",
            gauges.db_connections_in_use
        );
        let _ = writeln!(
            out,
            "collabkit_db_connections{{state=\"idle\"}} {}",
            gauges.db_connections_idle
        );
        header(
            &mut out,
            "collabkit_webhook_attempts_total",
            "counter",
            "Webhook delivery attempts made by this node, by outcome.",
        );
        self.webhook_attempts
            .render(&mut out, "collabkit_webhook_attempts_total", "outcome");
        header(
            &mut out,
            "collabkit_webhook_attempt_duration_seconds",
            "histogram",
            "Time of a webhook delivery attempt.",
        );
        self.webhook_attempt_latency.render(
            &mut out,
            "collabkit_webhook_attempt_duration_seconds",
            "",
        );
        if let Some(pending) = gauges.webhook_deliveries_pending {
            gauge(
                &mut out,
                "collabkit_webhook_deliveries_pending",
                "Webhook deliveries waiting for an attempt (all nodes).",
                pending,
            );
        }
        header(
            &mut out,
            "collabkit_workflow_runs_total",
            "counter",
            "Workflow runs recorded by this node, by status.",
        );
        self.workflow_runs
            .render(&mut out, "collabkit_workflow_runs_total", "status");
        header(
            &mut out,
            "collabkit_workflow_run_duration_seconds",
            "histogram",
            "Time of a workflow run, from its start to its outcome.",
        );
        self.workflow_run_duration
            .render(&mut out, "collabkit_workflow_run_duration_seconds", "");
        if let Some(queued) = gauges.workflow_runs_queued {
            gauge(
                &mut out,
                "collabkit_workflow_runs_queued",
                "Workflow runs waiting or running (all nodes).",
                queued,
            );
        }
        out
    }
}

/// Every (route, method) and its stats.
fn by_route(
    http: &BTreeMap<String, BTreeMap<String, RouteStats>>,
) -> impl Iterator<Item = (&String, &String, &RouteStats)> {
    http.iter().flat_map(|(route, methods)| {
        methods
            .iter()
            .map(move |(method, stats)| (route, method, stats))
    })
}

/// The entry of `key`, made on first use: a key seen before costs no allocation (these are
/// counted on every request).
fn slot<'a, V: Default>(map: &'a mut BTreeMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("just inserted")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_requests_are_counted_by_route() {
        let metrics = Metrics::new(vec!["presence", "changed", "other"]);
        metrics.http_request("GET", "/healthz", 200, Duration::from_micros(500));
        metrics.http_request("GET", "/healthz", 200, Duration::from_millis(30));
        metrics.http_request("GET", "/healthz", 503, Duration::from_secs(20));
        metrics.workflow_runs.add("failed");
        metrics.workflow_runs.add("bogus");
        let gauges = Gauges {
            http_connections: 3,
            sockets_open: 2,
            sockets_joined: 1,
            rooms_active: 1,
            db_connections_in_use: 1,
            db_connections_idle: 4,
            webhook_deliveries_pending: Some(7),
            workflow_runs_queued: None,
            relay: None,
        };
        metrics.socket_request("presence.update");
        metrics.socket_request("presence.update");
        let presence = metrics.frames_sent.index("presence").unwrap();
        metrics.frames_sent.add_at(presence, 3);
        let text = metrics.render(&gauges);
        for line in [
            "collabkit_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2",
            "collabkit_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"503\"} 1",
            "collabkit_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"0.001\"} 1",
            "collabkit_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"0.05\"} 2",
            "collabkit_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"10\"} 2",
            "collabkit_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"+Inf\"} 3",
            "collabkit_http_request_duration_seconds_count{method=\"GET\",route=\"/healthz\"} 3",
            "collabkit_workflow_runs_total{status=\"failed\"} 1",
            "collabkit_workflow_runs_total{status=\"success\"} 0",
            "collabkit_webhook_deliveries_pending 7",
            "collabkit_db_connections{state=\"idle\"} 4",
            "collabkit_socket_requests_total{method=\"presence.update\"} 2",
            "collabkit_store_write_duration_seconds_count 0",
            "collabkit_socket_frames_sent_total{type=\"presence\"} 3",
            "collabkit_socket_frames_sent_total{type=\"changed\"} 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(!text.contains("collabkit_workflow_runs_queued"));
        assert!(!text.contains("collabkit_relay_messages_total"));
    }
}
