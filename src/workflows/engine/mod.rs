//! The engine: QuickJS (through `rquickjs`) running one workflow run in a fresh runtime and
//! context, under limits. Runs in a worker process (`workflows::worker`), never in the server.
//!
//! QuickJS is built without its `std` and `os` modules and without a module loader: the code
//! reaches nothing of the host but the bindings of `prelude.js`. Binding calls are queued as
//! the code makes them and answered by the `Host` whenever no JavaScript job is ready, so a
//! run is one thread and one loop: run jobs, else answer a call, else the run is stuck.

mod compile;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rquickjs::{Context, Ctx, Function, Module, Object, Promise, Runtime, Value};
use rustix::time::{clock_gettime, ClockId};

pub use compile::{compile, SyntaxError, MAX_CODE_BYTES};

/// The bindings and globals every run gets.
const PRELUDE: &str = include_str!("prelude.js");
/// Marks where a run's console output was cut.
const TRUNCATED: &str = "… logs truncated\n";

#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock time, from the start of `run`.
    pub time: Duration,
    /// CPU time of the running thread.
    pub cpu: Duration,
    /// The engine's heap.
    pub memory_bytes: usize,
    /// The engine's stack: deeper recursion fails.
    pub stack_bytes: usize,
    /// Console output kept; beyond it one marker line, and the run goes on.
    pub log_bytes: usize,
    /// The JSON of the return value, at most.
    pub result_bytes: usize,
    /// Binding calls answered per run; beyond it they reject.
    pub host_calls: usize,
}

/// The bindings' other end. Called synchronously, between JavaScript jobs.
pub trait Host {
    /// `name` is a binding (`store.get`, `fetch`, ...); `args` a JSON array of its arguments.
    /// Ok resolves the binding's promise with the value; Err rejects it with an `Error`.
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
    /// Success: the JSON of the return value (`undefined`: `null`). Failed: the error
    /// (`Error: boom`) or the limit that ended the run.
    pub result: String,
    /// `console.*` output, a line a call: `[log] ...`.
    pub logs: String,
}

/// Why a run stopped before its code finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Time,
    Cpu,
    NeverSettled,
}

/// The run's clocks, read by QuickJS's interrupt handler (every few thousand operations; not
/// inside one long built-in call such as `"x".repeat(1e8)`, which the worker's `RLIMIT_CPU`
/// and the server's deadline cover) and between jobs.
struct Watch {
    started: Instant,
    cpu_started: Duration,
    limits: Limits,
    stopped: Cell<Option<Stop>>,
}

impl Watch {
    fn new(limits: &Limits) -> Self {
        Self {
            started: Instant::now(),
            cpu_started: thread_cpu(),
            limits: limits.clone(),
            stopped: Cell::new(None),
        }
    }

    /// Whether the run must stop now (and why, kept in `stopped`).
    fn over(&self) -> bool {
        if self.stopped.get().is_none() {
            if self.started.elapsed() > self.limits.time {
                self.stopped.set(Some(Stop::Time));
            } else if thread_cpu().saturating_sub(self.cpu_started) > self.limits.cpu {
                self.stopped.set(Some(Stop::Cpu));
            }
        }
        self.stopped.get().is_some()
    }
}

fn thread_cpu() -> Duration {
    let now = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// A binding call waiting for its answer.
struct Call {
    id: u32,
    name: String,
    args: String,
}

/// Console output, cut at the limit.
struct Logs {
    text: String,
    limit: usize,
    cut: bool,
}

impl Logs {
    fn push(&mut self, level: &str, line: &str) {
        if self.cut {
            return;
        }
        let length = level.len() + line.len() + 4;
        if self.text.len() + length > self.limit {
            self.cut = true;
            self.text.push_str(TRUNCATED);
            return;
        }
        self.text.push('[');
        self.text.push_str(level);
        self.text.push_str("] ");
        self.text.push_str(line);
        self.text.push('\n');
    }
}

/// Runs compiled code once, in a runtime and context of its own.
pub fn run(js: &str, event: &serde_json::Value, host: &mut dyn Host, limits: &Limits) -> Outcome {
    let logs = Rc::new(RefCell::new(Logs {
        text: String::new(),
        limit: limits.log_bytes,
        cut: false,
    }));
    let ended =
        match Runtime::new().and_then(|runtime| Context::full(&runtime).map(|c| (runtime, c))) {
            Ok((runtime, context)) => {
                runtime.set_memory_limit(limits.memory_bytes);
                runtime.set_max_stack_size(limits.stack_bytes);
                let watch = Rc::new(Watch::new(limits));
                let interrupt = watch.clone();
                runtime.set_interrupt_handler(Some(Box::new(move || interrupt.over())));
                let ended = context.with(|ctx| {
                    let mut run = Run {
                        ctx: ctx.clone(),
                        host,
                        calls: Rc::new(RefCell::new(VecDeque::new())),
                        answered: 0,
                        watch: &watch,
                        limits,
                    };
                    run.start(js, event, &logs)
                });
                // Values of the run are gone with `with`; the context and runtime go now.
                drop(context);
                drop(runtime);
                ended
            }
            Err(error) => Err(format!("the engine could not start: {error}")),
        };
    let logs = std::mem::take(&mut logs.borrow_mut().text);
    match ended {
        Ok(result) if result.len() > limits.result_bytes => Outcome {
            status: Status::Failed,
            result: format!("result exceeds {} bytes", limits.result_bytes),
            logs,
        },
        Ok(result) => Outcome {
            status: Status::Success,
            result,
            logs,
        },
        Err(result) => Outcome {
            status: Status::Failed,
            result,
            logs,
        },
    }
}

fn memory_exceeded(limits: &Limits) -> String {
    format!("memory limit exceeded ({} MB)", limits.memory_bytes >> 20)
}

struct Run<'js, 'a> {
    ctx: Ctx<'js>,
    host: &'a mut dyn Host,
    calls: Rc<RefCell<VecDeque<Call>>>,
    answered: usize,
    watch: &'a Watch,
    limits: &'a Limits,
}

impl<'js> Run<'js, '_> {
    /// The run from the prelude to the result: the JSON of the return value, or why it failed.
    fn start(
        &mut self,
        js: &str,
        event: &serde_json::Value,
        logs: &Rc<RefCell<Logs>>,
    ) -> Result<String, String> {
        let ctx = self.ctx.clone();
        let calls = self.calls.clone();
        let enqueue = Function::new(ctx.clone(), move |id: u32, name: String, args: String| {
            calls.borrow_mut().push_back(Call { id, name, args });
        })
        .map_err(|e| self.failure(e))?;
        let logs = logs.clone();
        let print = Function::new(ctx.clone(), move |level: String, line: String| {
            logs.borrow_mut().push(&level, &line);
        })
        .map_err(|e| self.failure(e))?;
        let prelude: Function = ctx.eval(PRELUDE).map_err(|e| self.failure(e))?;
        let tools: Object = prelude
            .call((enqueue, print, self.limits.log_bytes + 1))
            .map_err(|e| self.failure(e))?;
        let settle: Function = tools.get("settle").map_err(|e| self.failure(e))?;
        let invoke: Function = tools.get("invoke").map_err(|e| self.failure(e))?;

        let module =
            Module::declare(ctx.clone(), "workflow.js", js).map_err(|e| self.failure(e))?;
        let (module, evaluated) = module.eval().map_err(|e| self.failure(e))?;
        self.settle(&evaluated, &settle)?;
        if let Some(Err(error)) = evaluated.result::<Value>() {
            return Err(self.failure(error));
        }
        let main: Value = module.get("default").map_err(|e| self.failure(e))?;
        let event = ctx
            .json_parse(event.to_string())
            .map_err(|e| self.failure(e))?;
        let answer: Promise = invoke.call((main, event)).map_err(|e| self.failure(e))?;
        self.settle(&answer, &settle)?;
        let answer: Object = match answer.result() {
            Some(Ok(answer)) => answer,
            Some(Err(error)) => return Err(self.failure(error)),
            None => return Err(self.stopped(Stop::NeverSettled)),
        };
        let ok: bool = answer.get("ok").map_err(|e| self.failure(e))?;
        let value: String = answer.get("value").map_err(|e| self.failure(e))?;
        if ok {
            Ok(value)
        } else {
            Err(self.explained(value))
        }
    }

    /// Runs jobs and answers binding calls until `promise` settles, a limit is passed, or
    /// nothing is left that could settle it.
    fn settle(&mut self, promise: &Promise<'js>, settle: &Function<'js>) -> Result<(), String> {
        loop {
            if self.watch.over() {
                return Err(self.stopped(self.watch.stopped.get().unwrap_or(Stop::Time)));
            }
            if !matches!(promise.state(), rquickjs::promise::PromiseState::Pending) {
                return Ok(());
            }
            if self.ctx.execute_pending_job() {
                continue;
            }
            let Some(call) = self.calls.borrow_mut().pop_front() else {
                return Err(self.stopped(Stop::NeverSettled));
            };
            let (ok, payload) = match self.answer(&call) {
                Ok(value) => (true, value.to_string()),
                Err(message) => (false, message),
            };
            settle
                .call::<_, ()>((call.id, ok, payload))
                .map_err(|e| self.failure(e))?;
        }
    }

    fn answer(&mut self, call: &Call) -> Result<serde_json::Value, String> {
        if self.answered >= self.limits.host_calls {
            return Err(format!(
                "{}: limit of {} binding calls per run reached",
                call.name, self.limits.host_calls
            ));
        }
        self.answered += 1;
        let args = serde_json::from_str(&call.args).unwrap_or(serde_json::Value::Null);
        self.host.call(&call.name, args)
    }

    /// The message of an error that escaped: a limit if one was passed, else what was thrown.
    fn failure(&self, error: rquickjs::Error) -> String {
        if let Some(stop) = self.watch.stopped.get() {
            return self.stopped(stop);
        }
        let message = match error {
            rquickjs::Error::Exception => {
                let thrown = self.ctx.catch();
                match thrown.as_exception() {
                    Some(exception) => format!(
                        "{}: {}",
                        exception
                            .get::<_, String>("name")
                            .unwrap_or_else(|_| "Error".to_owned()),
                        exception.message().unwrap_or_default()
                    ),
                    None => format!("{thrown:?}"),
                }
            }
            other => other.to_string(),
        };
        self.explained(message)
    }

    /// Names the limit behind an engine error (`out of memory`, `stack overflow`).
    fn explained(&self, message: String) -> String {
        if let Some(stop) = self.watch.stopped.get() {
            return self.stopped(stop);
        }
        if message.contains("out of memory") || message.contains("Allocation failed") {
            memory_exceeded(self.limits)
        } else if message.contains("stack overflow")
            || message.contains("Maximum call stack size exceeded")
        {
            "stack limit exceeded (deep recursion)".to_owned()
        } else {
            message
        }
    }

    fn stopped(&self, stop: Stop) -> String {
        match stop {
            Stop::Time => format!("time limit exceeded ({} ms)", self.limits.time.as_millis()),
            Stop::Cpu => format!(
                "CPU time limit exceeded ({} ms)",
                self.limits.cpu.as_millis()
            ),
            Stop::NeverSettled => "the workflow's promise never settled".to_owned(),
        }
    }
}
