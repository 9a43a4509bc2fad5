//! One run inside QuickJS: the runtime and its limits, the prelude's globals, the module, the
//! loop that runs jobs and answers binding calls, and how a run's end becomes an `Outcome`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Instant;

use rquickjs::convert::Coerced;
use rquickjs::promise::PromiseState;
use rquickjs::{Context, Ctx, Function, Module, Object, Promise, Runtime, Value};

use super::clock::{Deadline, Halt};
use super::logs::LogBuffer;
use super::{Host, Limits, Outcome, Status};

/// What QuickJS calls the workflow's module in stack traces.
const MODULE_NAME: &str = "workflow.js";

const PRELUDE: &str = include_str!("prelude.js");

const BYTES_PER_MB: usize = 1024 * 1024;

/// rquickjs turns a stack limit above 16 MiB, like 0, into no limit at all, and then deep
/// recursion would overflow the real stack; below 64 KiB not even the prelude runs.
const STACK_BYTES_RANGE: (usize, usize) = (64 * 1024, 16 * 1024 * 1024);

/// How a run ended when it did not succeed.
#[derive(Debug)]
enum Failure {
    Halted(Halt),
    OutOfMemory,
    StackOverflow,
    ResultTooLarge,
    NeverSettled,
    Thrown(String),
}

impl Failure {
    fn message(&self, limits: &Limits) -> String {
        match self {
            Failure::Halted(Halt::Time) => {
                format!("time limit exceeded ({} ms)", limits.time.as_millis())
            }
            Failure::Halted(Halt::Cpu) => {
                format!("CPU time limit exceeded ({} ms)", limits.cpu.as_millis())
            }
            Failure::OutOfMemory => {
                format!(
                    "memory limit exceeded ({} MB)",
                    limits.memory_bytes / BYTES_PER_MB
                )
            }
            Failure::StackOverflow => "stack limit exceeded (deep recursion)".into(),
            Failure::ResultTooLarge => format!("result exceeds {} bytes", limits.result_bytes),
            Failure::NeverSettled => "the workflow's promise never settled".into(),
            Failure::Thrown(message) => message.clone(),
        }
    }
}

/// What the JavaScript callbacks and the job loop share. Callbacks must own what they use,
/// hence the `Rc`s.
struct Sandbox {
    deadline: Deadline,
    /// Set once a limit trips; from then on every interrupt check stops the code again.
    halted: Rc<Cell<Option<Halt>>>,
    logs: Rc<RefCell<LogBuffer>>,
    host_calls: Rc<RefCell<HostCalls>>,
}

impl Sandbox {
    fn halt_if_due(&self) -> Option<Halt> {
        halt_if_due(&self.halted, &self.deadline)
    }
}

fn halt_if_due(halted: &Cell<Option<Halt>>, deadline: &Deadline) -> Option<Halt> {
    if halted.get().is_none() {
        halted.set(deadline.passed());
    }
    halted.get()
}

/// Binding calls made by the code and not yet answered.
///
/// The host cannot be called from inside a JavaScript callback: rquickjs callbacks must own
/// what they capture, and `run` only borrows the host. So a call is queued, and the job loop,
/// which holds the host, answers it before running anything else.
struct HostCalls {
    queued: VecDeque<HostCall>,
    made: usize,
    allowed: usize,
}

struct HostCall {
    id: usize,
    name: String,
    args: serde_json::Value,
}

impl HostCalls {
    /// Queues a call; returns the id `settle` will answer it under, or the message of the
    /// Error the binding rejects with.
    fn queue(&mut self, name: String, args_json: &str) -> Result<usize, String> {
        if self.made == self.allowed {
            return Err(format!(
                "host call limit exceeded: {} calls per run (this {name} call was refused)",
                self.allowed
            ));
        }
        let args = serde_json::from_str(args_json)
            .map_err(|error| format!("{name}: the arguments are not JSON ({error})"))?;
        let id = self.made;
        self.made += 1;
        self.queued.push_back(HostCall { id, name, args });
        Ok(id)
    }
}

/// The stack limit QuickJS gets for `limits.stack_bytes`.
fn js_stack_bytes(limits: &Limits) -> usize {
    limits
        .stack_bytes
        .clamp(STACK_BYTES_RANGE.0, STACK_BYTES_RANGE.1)
}

/// Runs `js` on the calling thread and reports how it ended.
pub(super) fn run_sandboxed(
    js: &str,
    event_json: &str,
    host: &mut dyn Host,
    limits: &Limits,
    started: Instant,
) -> Outcome {
    let sandbox = Sandbox {
        deadline: Deadline::start(started, limits.time, limits.cpu),
        halted: Rc::new(Cell::new(None)),
        logs: Rc::new(RefCell::new(LogBuffer::new(limits.log_bytes))),
        host_calls: Rc::new(RefCell::new(HostCalls {
            queued: VecDeque::new(),
            made: 0,
            allowed: limits.host_calls,
        })),
    };
    let ended = evaluate(js, event_json, host, limits, &sandbox);
    let logs = sandbox.logs.replace(LogBuffer::new(0)).into_text();
    match ended {
        Ok(json) => Outcome {
            status: Status::Success,
            result: json,
            logs,
        },
        Err(failure) => Outcome {
            status: Status::Failed,
            result: failure.message(limits),
            logs,
        },
    }
}

fn evaluate(
    js: &str,
    event_json: &str,
    host: &mut dyn Host,
    limits: &Limits,
    sandbox: &Sandbox,
) -> Result<String, Failure> {
    let runtime = Runtime::new().map_err(|_| Failure::OutOfMemory)?;
    runtime.set_memory_limit(limits.memory_bytes);
    // Counted from here: the calling thread's stack must have this much room left.
    runtime.set_max_stack_size(js_stack_bytes(limits));
    let halted = sandbox.halted.clone();
    let deadline = sandbox.deadline;
    // QuickJS calls this every few thousand instructions and during regular expression
    // matching, but not inside one long built-in call (`"x".repeat(1e8)`, sorting or
    // stringifying a huge array): there the check comes when the built-in returns, and the
    // worker's CPU rlimit and the server's kill at the deadline cover the gap.
    runtime.set_interrupt_handler(Some(Box::new(move || {
        halt_if_due(&halted, &deadline).is_some()
    })));
    let context = Context::full(&runtime).map_err(|_| Failure::OutOfMemory)?;
    let ended = context.with(|ctx| run_module(&ctx, js, event_json, host, limits, sandbox));
    ended.map_err(|failure| sandbox.halted.get().map_or(failure, Failure::Halted))
}

fn run_module<'js>(
    ctx: &Ctx<'js>,
    js: &str,
    event_json: &str,
    host: &mut dyn Host,
    limits: &Limits,
    sandbox: &Sandbox,
) -> Result<String, Failure> {
    let caught = |error| failure_from_error(ctx, error);
    let prelude = install_prelude(ctx, sandbox).map_err(caught)?;
    let invoke: Function = prelude.get("invoke").map_err(caught)?;
    let settle: Function = prelude.get("settle").map_err(caught)?;
    let module = Module::declare(ctx.clone(), MODULE_NAME, js).map_err(caught)?;
    let (module, evaluation) = module.eval().map_err(caught)?;
    let namespace = module.namespace().map_err(caught)?;
    let event = ctx.json_parse(event_json).map_err(caught)?;
    let settled: Promise = invoke
        .call((evaluation, namespace, event))
        .map_err(caught)?;
    drive(ctx, &settled, host, &settle, sandbox)?;
    let json: rquickjs::String = match settled.result() {
        Some(result) => result.map_err(caught)?,
        None => return Err(Failure::NeverSettled),
    };
    // Converted inside QuickJS, so an oversized result is never copied out.
    let json = json.to_cstring().map_err(caught)?;
    if json.len() > limits.result_bytes {
        return Err(Failure::ResultTooLarge);
    }
    Ok(json.as_str().to_owned())
}

/// Answers binding calls and runs queued jobs until `promise` settles, a limit passes, or
/// nothing is left to do.
fn drive<'js>(
    ctx: &Ctx<'js>,
    promise: &Promise<'js>,
    host: &mut dyn Host,
    settle: &Function<'js>,
    sandbox: &Sandbox,
) -> Result<(), Failure> {
    while promise.state() == PromiseState::Pending {
        // Checked here too: time spent in the host runs no JavaScript, so no interrupt check
        // sees it.
        if let Some(halt) = sandbox.halt_if_due() {
            return Err(Failure::Halted(halt));
        }
        let call = sandbox.host_calls.borrow_mut().queued.pop_front();
        if let Some(call) = call {
            answer(host, call, settle).map_err(|error| failure_from_error(ctx, error))?;
        } else if !ctx.execute_pending_job() {
            return Err(Failure::NeverSettled);
        }
    }
    Ok(())
}

/// Asks the host and hands the answer to the prelude's `settle`, which resolves or rejects
/// the binding's promise.
fn answer(host: &mut dyn Host, call: HostCall, settle: &Function<'_>) -> rquickjs::Result<()> {
    // A panicking host must not take the worker down; the workflow sees a rejection.
    let reply = panic::catch_unwind(AssertUnwindSafe(|| host.call(&call.name, call.args)))
        .unwrap_or_else(|_| Err(format!("{} failed inside the server", call.name)));
    match reply {
        Ok(value) => settle.call((call.id, true, value.to_string())),
        Err(message) => settle.call((call.id, false, message)),
    }
}

/// Evaluates the prelude with the engine's primitives; returns its `{ invoke, settle }`.
fn install_prelude<'js>(ctx: &Ctx<'js>, sandbox: &Sandbox) -> rquickjs::Result<Object<'js>> {
    let engine = Object::new(ctx.clone())?;
    engine.set("log", log_function(ctx, sandbox.logs.clone())?)?;
    engine.set("host", host_function(ctx, sandbox.host_calls.clone())?)?;
    let prelude: Function = ctx.eval(PRELUDE)?;
    prelude.call((engine,))
}

/// `engine.log(level, line)`: false once the log budget is spent.
fn log_function<'js>(
    ctx: &Ctx<'js>,
    logs: Rc<RefCell<LogBuffer>>,
) -> rquickjs::Result<Function<'js>> {
    Function::new(
        ctx.clone(),
        move |level: String, line: rquickjs::String<'js>| {
            // Converted inside QuickJS first, so only the part that is kept is copied out.
            let line = line.to_cstring()?;
            rquickjs::Result::Ok(logs.borrow_mut().push(&level, line.as_str()))
        },
    )
}

/// `engine.host(name, argsJson)`: the id of the queued call, or a thrown Error.
fn host_function<'js>(
    ctx: &Ctx<'js>,
    host_calls: Rc<RefCell<HostCalls>>,
) -> rquickjs::Result<Function<'js>> {
    Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, name: String, args: rquickjs::String<'js>| {
            let args = args.to_cstring()?;
            let queued = host_calls.borrow_mut().queue(name, args.as_str());
            queued.map_err(|message| rquickjs::Exception::throw_message(&ctx, &message))
        },
    )
}

/// Turns an error out of QuickJS into how the run ended.
fn failure_from_error(ctx: &Ctx<'_>, error: rquickjs::Error) -> Failure {
    match error {
        rquickjs::Error::Exception => failure_from_thrown(ctx, ctx.catch()),
        rquickjs::Error::Allocation => Failure::OutOfMemory,
        other => Failure::Thrown(other.to_string()),
    }
}

/// QuickJS reports its limits as ordinary errors; those become limit failures. Anything else
/// is described the way console.log would show it.
fn failure_from_thrown<'js>(ctx: &Ctx<'js>, thrown: Value<'js>) -> Failure {
    // When even its "out of memory" error cannot be allocated, QuickJS throws null instead.
    // A workflow that throws null itself is reported the same way; no other value is.
    if thrown.is_null() {
        return Failure::OutOfMemory;
    }
    let Some(error) = thrown.as_exception() else {
        return Failure::Thrown(describe(ctx, thrown));
    };
    let name: String = error.get("name").unwrap_or_else(|_| "Error".into());
    let message = error.message().unwrap_or_default();
    match (name.as_str(), message.as_str()) {
        ("InternalError", "out of memory") => Failure::OutOfMemory,
        ("RangeError", "Maximum call stack size exceeded") => Failure::StackOverflow,
        (_, "") => Failure::Thrown(name),
        _ => Failure::Thrown(format!("{name}: {message}")),
    }
}

fn describe<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> String {
    if let Some(text) = value.as_string() {
        return text.to_string().unwrap_or_default();
    }
    match ctx.json_stringify(value.clone()) {
        Ok(Some(json)) => json.to_string().unwrap_or_default(),
        _ => value
            .get::<Coerced<String>>()
            .map(|text| text.0)
            .unwrap_or_else(|_| "a value that cannot be shown was thrown".into()),
    }
}
