//! What the server and a worker process say to each other: one JSON object a line, over the
//! worker's standard input and output. The server sends a run; the worker answers with
//! binding calls (each answered before the next) and then the run's outcome.

use std::io::{BufRead, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::engine::{Limits, Outcome, Status};

/// The argument that makes the binary a worker (`main.rs`); not a documented subcommand.
pub const WORKER_ARG: &str = "__workflow-worker";

/// Server to worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum ToWorker {
    Run {
        js: String,
        event: Value,
        limits: RunLimits,
    },
    /// The answer to the worker's last `Call`.
    Reply { result: Result<Value, String> },
}

/// Worker to server.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum FromWorker {
    /// A binding called by the code: `store.get`, `fetch`, ...
    Call { name: String, args: Value },
    Done {
        success: bool,
        result: String,
        logs: String,
    },
}

/// `engine::Limits` on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunLimits {
    pub time_ms: u64,
    pub cpu_ms: u64,
    pub memory_bytes: usize,
    pub stack_bytes: usize,
    pub log_bytes: usize,
    pub result_bytes: usize,
    pub host_calls: usize,
}

impl From<&RunLimits> for Limits {
    fn from(limits: &RunLimits) -> Self {
        Limits {
            time: Duration::from_millis(limits.time_ms),
            cpu: Duration::from_millis(limits.cpu_ms),
            memory_bytes: limits.memory_bytes,
            stack_bytes: limits.stack_bytes,
            log_bytes: limits.log_bytes,
            result_bytes: limits.result_bytes,
            host_calls: limits.host_calls,
        }
    }
}

impl From<&Outcome> for FromWorker {
    fn from(outcome: &Outcome) -> Self {
        FromWorker::Done {
            success: outcome.status == Status::Success,
            result: outcome.result.clone(),
            logs: outcome.logs.clone(),
        }
    }
}

/// Writes one message and its line end, flushed.
pub fn write_line(output: &mut impl Write, message: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *output, message)?;
    output.write_all(b"\n")?;
    output.flush()
}

/// Reads one message; `None` at the end of the input (the other side is gone).
pub fn read_line<T: for<'de> Deserialize<'de>>(
    input: &mut impl BufRead,
) -> std::io::Result<Option<T>> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))
}
