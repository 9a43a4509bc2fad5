//! The engine that runs customers' workflow code: `compile` turns TypeScript into JavaScript,
//! `run` executes it once in a fresh QuickJS sandbox under time, CPU, memory, stack, log,
//! result and host-call limits, with no access to files, modules or the network except
//! through `Host`.

mod clock;
mod compile;
mod logs;
mod nesting;
mod sandbox;
#[cfg(test)]
mod tests;

use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

pub use self::compile::{compile, SyntaxError, MAX_CODE_BYTES, MAX_TREE_DEPTH};
pub use self::nesting::MAX_BRACKET_DEPTH;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall clock from the start of `run`, host calls included (one in progress is not
    /// interrupted: the deadline is checked when it returns).
    pub time: Duration,
    /// CPU time of the calling thread during the run (time spent waiting does not count).
    pub cpu: Duration,
    /// QuickJS heap limit.
    pub memory_bytes: usize,
    /// QuickJS stack limit, clamped to 64 KiB..=16 MiB; deeper recursion fails the run.
    /// Counted from where `run` starts, on the calling thread's stack.
    pub stack_bytes: usize,
    /// Console output kept; past it one marker line "… logs truncated" and the rest dropped
    /// (the run goes on).
    pub log_bytes: usize,
    /// Longest JSON text of the return value; longer fails the run.
    pub result_bytes: usize,
    /// Binding calls allowed per run; the next one rejects with a message naming the limit.
    pub host_calls: usize,
}

/// The bindings' other end. The engine calls it on the thread running `run`, between
/// JavaScript jobs: a binding's request is answered as soon as the code that made it yields
/// (usually its `await`), before anything else runs.
pub trait Host {
    /// `name` is one of "store.get", "store.getAll", "room.get", "room.getUsers", "files.list",
    /// "fetch"; `args` is a JSON array of the JS arguments (undefined -> null). Ok(value) resolves
    /// the binding's promise with `value`; Err(message) rejects it with `new Error(message)`.
    fn call(&mut self, name: &str, args: serde_json::Value) -> Result<serde_json::Value, String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Failed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    /// Success: the JSON text of the resolved return value (`undefined` -> "null").
    /// Failed: the error message, e.g. "Error: boom", or which limit stopped the run.
    pub result: String,
    /// console.* output, one "[level] text" line per call.
    pub logs: String,
}

/// Runs compiled JS (from `compile`) once: a fresh Runtime and Context per call (nothing
/// survives between runs), evaluates the module, calls its default export with
/// (event, { store, room, files }), drives the job queue until the returned promise settles,
/// under `limits`. Never panics; every way a run can end is an `Outcome`.
///
/// Runs on the calling thread (a worker process has only one), whose stack must have
/// `limits.stack_bytes` plus about 1 MiB to spare.
pub fn run(js: &str, event: &serde_json::Value, host: &mut dyn Host, limits: &Limits) -> Outcome {
    let started = Instant::now();
    let event_json = event.to_string();
    let ran = panic::catch_unwind(AssertUnwindSafe(|| {
        sandbox::run_sandboxed(js, &event_json, host, limits, started)
    }));
    ran.unwrap_or_else(|_| Outcome {
        status: Status::Failed,
        result: "internal error: the engine panicked".into(),
        logs: String::new(),
    })
}
