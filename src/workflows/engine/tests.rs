//! What `compile` and `run` promise, one protection per test. (Over our usual 600 lines: the
//! engine is where customer code meets the host, and each of its defences gets a test of its
//! own here, beside the others, rather than scattered over the engine's files.)

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

/// Answers like a small real server would, and remembers what it was asked.
#[derive(Default)]
struct FakeHost {
    calls: Vec<(String, Value)>,
}

impl Host for FakeHost {
    fn call(&mut self, name: &str, args: Value) -> Result<Value, String> {
        self.calls.push((name.to_string(), args));
        match name {
            "store.get" => Ok(json!({ "title": "Write tests" })),
            "store.getAll" => Ok(json!([1, 2, 3])),
            "room.get" => Ok(json!({ "id": "room-1" })),
            "files.list" => Err("files are offline".into()),
            "fetch" => Ok(json!({
                "status": 201,
                "statusText": "Created",
                "headers": { "Content-Type": "application/json" },
                "body": "{\"id\":7}",
            })),
            "room.getUsers" => panic!("the fake host fails here on purpose"),
            _ => Err(format!("unexpected call {name}")),
        }
    }
}

/// Room for the largest JavaScript stack (16 MiB) and the engine below it, like a worker's
/// main thread; test threads have 2 MiB.
const CALLER_STACK_BYTES: usize = 32 * 1024 * 1024;

/// Far longer than any limit below needs.
const PATIENCE: Duration = Duration::from_secs(20);

fn limits() -> Limits {
    Limits {
        time: Duration::from_secs(5),
        cpu: Duration::from_secs(5),
        memory_bytes: 32 * 1024 * 1024,
        stack_bytes: 1024 * 1024,
        log_bytes: 64 * 1024,
        result_bytes: 64 * 1024,
        host_calls: 10,
    }
}

fn event() -> Value {
    json!({ "type": "user.joined", "data": { "userId": "u1", "roomId": "r1" } })
}

fn run_with(code: &str, limits: &Limits) -> Outcome {
    let js = compile(code).unwrap_or_else(|error| panic!("does not compile: {error}"));
    run(&js, &event(), &mut FakeHost::default(), limits)
}

/// Like `run_with`, but a run that does not end within `patience` fails the test instead of
/// hanging it: that is what a missing limit looks like.
fn run_within(code: &str, limits: &Limits, patience: Duration) -> Outcome {
    let js = compile(code).unwrap_or_else(|error| panic!("does not compile: {error}"));
    let limits = limits.clone();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .stack_size(CALLER_STACK_BYTES)
        .spawn(move || sender.send(run(&js, &event(), &mut FakeHost::default(), &limits)))
        .expect("thread starts");
    receiver
        .recv_timeout(patience)
        .expect("the run should have been stopped by a limit")
}

fn run_code(code: &str) -> Outcome {
    run_with(code, &limits())
}

fn assert_success(outcome: &Outcome, json: &str) {
    assert_eq!(
        (outcome.status, outcome.result.as_str()),
        (Status::Success, json),
        "{outcome:?}"
    );
}

fn assert_failure(outcome: &Outcome, message: &str) {
    assert_eq!(
        (outcome.status, outcome.result.as_str()),
        (Status::Failed, message),
        "{outcome:?}"
    );
}

// --- the documented example and return values -------------------------------------------

#[test]
fn documented_example_runs() {
    let outcome = run_code(
        "export default async function (event, { store, room, files }) {
           console.log(`User ${event.data.userId} joined room ${event.data.roomId}`);
           return { success: true };
         }",
    );
    assert_success(&outcome, r#"{"success":true}"#);
    assert_eq!(outcome.logs, "[log] User u1 joined room r1\n");
}

#[test]
fn undefined_result_is_null() {
    assert_success(&run_code("export default async function () {}"), "null");
}

#[test]
fn thrown_error_is_name_and_message() {
    let outcome = run_code("export default async function () { throw new Error('boom') }");
    assert_failure(&outcome, "Error: boom");
}

#[test]
fn rejected_promise_is_name_and_message() {
    let outcome =
        run_code("export default function () { return Promise.reject(new TypeError('bad')) }");
    assert_failure(&outcome, "TypeError: bad");
}

#[test]
fn thrown_non_errors_are_shown_as_json() {
    assert_failure(
        &run_code("export default function () { throw { code: 7 } }"),
        r#"{"code":7}"#,
    );
    assert_failure(
        &run_code("export default function () { throw 'plain' }"),
        "plain",
    );
}

#[test]
fn result_larger_than_the_limit_fails() {
    let limits = Limits {
        result_bytes: 100,
        ..limits()
    };
    let outcome = run_with("export default () => 'x'.repeat(200)", &limits);
    assert_failure(&outcome, "result exceeds 100 bytes");
    assert_success(
        &run_with("export default () => 'x'.repeat(90)", &limits),
        &format!("\"{}\"", "x".repeat(90)),
    );
}

#[test]
fn unserializable_result_fails() {
    let outcome = run_code("export default () => 1n");
    assert_eq!(outcome.status, Status::Failed);
    assert!(outcome.result.starts_with("TypeError"), "{outcome:?}");
}

#[test]
fn a_promise_that_never_settles_fails() {
    let outcome = run_code("export default () => new Promise(() => {})");
    assert_failure(&outcome, "the workflow's promise never settled");
}

#[test]
fn default_export_must_be_a_function() {
    let outcome = run_code("export default 42");
    assert_failure(&outcome, "TypeError: the default export is not a function");
}

#[test]
fn top_level_await_runs_before_the_default_export() {
    let outcome = run_code(
        "const ready = await Promise.resolve('ready');
         export default () => ready",
    );
    assert_success(&outcome, "\"ready\"");
}

#[test]
fn event_reaches_the_workflow() {
    assert_success(
        &run_code("export default (event) => event.data.userId"),
        "\"u1\"",
    );
}

// --- limits ---------------------------------------------------------------------------------

#[test]
fn endless_loop_stops_at_the_time_limit() {
    let limits = Limits {
        time: Duration::from_millis(300),
        ..limits()
    };
    let started = Instant::now();
    let outcome = run_within(
        "export default () => { while (true) {} }",
        &limits,
        PATIENCE,
    );
    assert_failure(&outcome, "time limit exceeded (300 ms)");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn endless_loop_in_top_level_code_stops_at_the_time_limit() {
    let limits = Limits {
        time: Duration::from_millis(300),
        ..limits()
    };
    let outcome = run_within("while (true) {}\nexport default () => 1", &limits, PATIENCE);
    assert_failure(&outcome, "time limit exceeded (300 ms)");
}

#[test]
fn caught_interrupts_do_not_keep_the_loop_alive() {
    let limits = Limits {
        time: Duration::from_millis(300),
        ..limits()
    };
    let outcome = run_within(
        "export default async () => {
           while (true) { try { while (true) {} } catch (e) {} }
         }",
        &limits,
        PATIENCE,
    );
    assert_failure(&outcome, "time limit exceeded (300 ms)");
}

#[test]
fn busy_code_stops_at_the_cpu_limit() {
    let limits = Limits {
        time: Duration::from_secs(20),
        cpu: Duration::from_millis(200),
        ..limits()
    };
    let outcome = run_within(
        "export default () => { while (true) {} }",
        &limits,
        PATIENCE,
    );
    assert_failure(&outcome, "CPU time limit exceeded (200 ms)");
}

#[test]
fn array_allocation_bomb_hits_the_memory_limit() {
    let limits = Limits {
        memory_bytes: 16 * 1024 * 1024,
        ..limits()
    };
    let outcome = run_within(
        "export default () => { let a = []; while (true) a.push(new Array(1e6).fill(1)) }",
        &limits,
        PATIENCE,
    );
    assert_failure(&outcome, "memory limit exceeded (16 MB)");
}

#[test]
fn string_doubling_bomb_hits_the_memory_limit() {
    let limits = Limits {
        memory_bytes: 16 * 1024 * 1024,
        ..limits()
    };
    let outcome = run_within(
        "export default () => { let s = 'x'; while (true) s = [s, s].join('') }",
        &limits,
        PATIENCE,
    );
    assert_failure(&outcome, "memory limit exceeded (16 MB)");
}

#[test]
fn rope_doubling_stops_at_the_string_length_limit() {
    // `s += s` builds a rope that costs almost nothing until QuickJS's 2^30 length cap.
    let limits = Limits {
        memory_bytes: 16 * 1024 * 1024,
        ..limits()
    };
    let outcome = run_within(
        "export default () => { let s = 'x'; while (true) s += s }",
        &limits,
        PATIENCE,
    );
    assert_eq!(outcome.status, Status::Failed);
    assert!(
        outcome.result == "InternalError: string too long"
            || outcome.result == "memory limit exceeded (16 MB)",
        "{outcome:?}"
    );
}

#[test]
fn stack_limits_beyond_what_quickjs_checks_are_clamped() {
    let limits = Limits {
        stack_bytes: 256 * 1024 * 1024,
        ..limits()
    };
    let outcome = run_within(
        "export default () => { function f() { return f() + 1 } return f() }",
        &limits,
        PATIENCE,
    );
    assert_failure(&outcome, "stack limit exceeded (deep recursion)");
}

#[test]
fn deep_recursion_hits_the_stack_limit() {
    let outcome = run_within(
        "export default () => { function f() { return f() + 1 } return f() }",
        &limits(),
        PATIENCE,
    );
    assert_failure(&outcome, "stack limit exceeded (deep recursion)");
}

#[test]
fn synchronous_promise_flood_is_stopped_by_a_limit() {
    let limits = Limits {
        time: Duration::from_millis(500),
        ..limits()
    };
    let outcome = run_within(
        "export default () => { while (true) Promise.resolve().then(() => {}) }",
        &limits,
        PATIENCE,
    );
    assert_eq!(outcome.status, Status::Failed);
    assert!(
        outcome.result.starts_with("time limit exceeded")
            || outcome.result.starts_with("memory limit exceeded"),
        "{outcome:?}"
    );
}

#[test]
fn promise_flood_hits_the_memory_limit_even_when_quickjs_throws_null() {
    // Near the limit QuickJS cannot allocate its "out of memory" error either, and throws null.
    let limits = Limits {
        time: Duration::from_secs(10),
        memory_bytes: 16 * 1024 * 1024,
        ..limits()
    };
    let outcome = run_within(
        "export default () => { while (true) Promise.resolve().then(() => {}) }",
        &limits,
        PATIENCE,
    );
    assert_failure(&outcome, "memory limit exceeded (16 MB)");
}

#[test]
fn self_rescheduling_microtasks_are_stopped_by_the_time_limit() {
    let limits = Limits {
        time: Duration::from_millis(300),
        ..limits()
    };
    let outcome = run_within(
        "export default async () => {
           function f() { Promise.resolve().then(f) }
           f();
           await new Promise(() => {});
         }",
        &limits,
        PATIENCE,
    );
    assert_failure(&outcome, "time limit exceeded (300 ms)");
}

#[test]
fn console_flood_is_truncated_and_the_run_goes_on() {
    let limits = Limits {
        log_bytes: 10_000,
        ..limits()
    };
    let outcome = run_with(
        "export default () => {
           for (let i = 0; i < 20000; i++) console.log('line', i, 'x'.repeat(100));
           console.log('y'.repeat(5_000_000));
           return 'finished';
         }",
        &limits,
    );
    assert_success(&outcome, "\"finished\"");
    assert!(
        outcome.logs.len() <= 10_000 + "… logs truncated\n".len(),
        "{}",
        outcome.logs.len()
    );
    assert!(outcome.logs.starts_with("[log] line 0 xxx"));
    assert!(outcome.logs.ends_with("\n… logs truncated\n"));
    assert_eq!(outcome.logs.matches("logs truncated").count(), 1);
}

// --- the sandbox's boundaries -------------------------------------------------------------

#[test]
fn no_host_globals_are_reachable() {
    let outcome = run_code(
        "export default () => [typeof process, typeof require, typeof Deno, typeof std, typeof os,
                               typeof scriptArgs, typeof print, typeof setTimeout]",
    );
    assert_success(&outcome, &json!(vec!["undefined"; 8]).to_string());
}

#[test]
fn dynamic_import_rejects_without_reading_files() {
    let outcome = run_code(
        "export default async () => {
           try { await import('/etc/passwd'); return 'loaded' } catch (e) { return String(e) }
         }",
    );
    assert_eq!(outcome.status, Status::Success);
    assert!(
        outcome.result.contains("could not load module"),
        "{outcome:?}"
    );
    assert!(!outcome.result.contains("root:"));
}

#[test]
fn prototype_pollution_does_not_reach_the_next_run() {
    let polluted = run_code(
        "export default () => { Object.prototype.polluted = 1; globalThis.leak = 2; return ({}).polluted }",
    );
    assert_success(&polluted, "1");
    let next = run_code("export default () => [typeof ({}).polluted, typeof leak]");
    assert_success(&next, r#"["undefined","undefined"]"#);
}

#[test]
fn replaced_json_stringify_cannot_forge_the_result() {
    let outcome =
        run_code("export default () => { JSON.stringify = () => 'not json'; return { a: 1 } }");
    assert_success(&outcome, r#"{"a":1}"#);
}

#[test]
fn eval_stays_inside_the_sandbox() {
    let outcome =
        run_code("export default () => [eval('1 + 1'), new Function('return typeof process')()]");
    assert_success(&outcome, r#"[2,"undefined"]"#);
}

// --- console ------------------------------------------------------------------------------

#[test]
fn console_levels_and_formatting() {
    let outcome = run_code(
        "export default () => {
           console.log('text', 1, { a: [1, 'b'] }, undefined, null);
           console.info('info');
           console.warn('warn');
           console.error(new Error('bad'));
           console.debug('debug');
           const cycle = {}; cycle.self = cycle;
           console.log(cycle, 2n);
         }",
    );
    assert_success(&outcome, "null");
    assert_eq!(
        outcome.logs,
        "[log] text 1 {\"a\":[1,\"b\"]} undefined null\n[info] info\n[warn] warn\n\
         [error] Error: bad\n[log] debug\n[log] [object Object] 2\n"
    );
}

// --- bindings -----------------------------------------------------------------------------

#[test]
fn bindings_call_the_host_with_json_arguments() {
    let js = compile(
        "export default async (event, { store, room }) => {
           const task = await store.get('tasks', 'a');
           const all = await store.getAll('tasks');
           const current = await room.get();
           return { title: task.title, count: all.length, room: current.id };
         }",
    )
    .expect("compiles");
    let mut host = FakeHost::default();
    let outcome = run(&js, &event(), &mut host, &limits());
    assert_success(
        &outcome,
        r#"{"title":"Write tests","count":3,"room":"room-1"}"#,
    );
    assert_eq!(
        host.calls,
        vec![
            ("store.get".to_string(), json!(["tasks", "a"])),
            ("store.getAll".to_string(), json!(["tasks"])),
            ("room.get".to_string(), json!([])),
        ]
    );
}

/// Takes its time over every call, like a server under load.
struct SlowHost(Duration);

impl Host for SlowHost {
    fn call(&mut self, _name: &str, _args: Value) -> Result<Value, String> {
        std::thread::sleep(self.0);
        Ok(json!(null))
    }
}

#[test]
fn time_spent_in_host_calls_counts() {
    let js = compile("export default async (e, { room }) => { await room.get(); return 'done' }")
        .expect("compiles");
    let limits = Limits {
        time: Duration::from_millis(200),
        ..limits()
    };
    let outcome = run(
        &js,
        &event(),
        &mut SlowHost(Duration::from_millis(300)),
        &limits,
    );
    assert_failure(&outcome, "time limit exceeded (200 ms)");
    let outcome = run(
        &js,
        &event(),
        &mut SlowHost(Duration::from_millis(10)),
        &limits,
    );
    assert_success(&outcome, "\"done\"");
}

#[test]
fn missing_arguments_reach_the_host_as_null() {
    let js =
        compile("export default async (e, { store }) => store.get('tasks')").expect("compiles");
    let mut host = FakeHost::default();
    run(&js, &event(), &mut host, &limits());
    assert_eq!(
        host.calls,
        vec![("store.get".to_string(), json!(["tasks", null]))]
    );
}

#[test]
fn host_errors_reject_and_can_be_caught() {
    let outcome = run_code(
        "export default async (e, { files }) => {
           try { await files.list(); return 'listed' } catch (error) { return String(error) }
         }",
    );
    assert_success(&outcome, "\"Error: files are offline\"");
}

#[test]
fn a_panicking_host_rejects_instead_of_crashing() {
    let outcome = run_code("export default async (e, { room }) => room.getUsers()");
    assert_failure(&outcome, "Error: room.getUsers failed inside the server");
}

#[test]
fn host_calls_beyond_the_limit_reject() {
    let limits = Limits {
        host_calls: 2,
        ..limits()
    };
    let js = compile(
        "export default async (e, { store }) => {
           await store.get('s', 'a');
           await store.get('s', 'b');
           try { await store.get('s', 'c') } catch (error) { return error.message }
         }",
    )
    .expect("compiles");
    let mut host = FakeHost::default();
    let outcome = run(&js, &event(), &mut host, &limits);
    assert_success(
        &outcome,
        "\"host call limit exceeded: 2 calls per run (this store.get call was refused)\"",
    );
    assert_eq!(host.calls.len(), 2);
}

#[test]
fn fetch_returns_a_response() {
    let js = compile(
        "export default async () => {
           const response = await fetch('https://api.example.com/items', {
             method: 'post', headers: { 'X-Key': 1 }, body: JSON.stringify({ a: 1 }),
           });
           return {
             ok: response.ok, status: response.status, statusText: response.statusText,
             url: response.url, type: response.headers.get('content-type'),
             missing: response.headers.get('x-missing'), body: await response.json(),
             text: await response.text(),
           };
         }",
    )
    .expect("compiles");
    let mut host = FakeHost::default();
    let outcome = run(&js, &event(), &mut host, &limits());
    let result: Value = serde_json::from_str(&outcome.result).expect("JSON");
    assert_eq!(
        result,
        json!({
            "ok": true, "status": 201, "statusText": "Created", "url": "https://api.example.com/items",
            "type": "application/json", "missing": null, "body": { "id": 7 }, "text": "{\"id\":7}",
        })
    );
    assert_eq!(
        host.calls,
        vec![(
            "fetch".to_string(),
            json!(["https://api.example.com/items", { "method": "POST", "headers": { "X-Key": "1" }, "body": "{\"a\":1}" }])
        )]
    );
}

#[test]
fn fetch_refuses_a_body_that_is_not_a_string() {
    let outcome = run_code(
        "export default () => fetch('https://example.com', { method: 'POST', body: { a: 1 } })",
    );
    assert_failure(
        &outcome,
        "TypeError: fetch body must be a string: use JSON.stringify(body)",
    );
}

// --- TypeScript and compile errors --------------------------------------------------------

#[test]
fn typescript_runs() {
    let outcome = run_code(
        "export default async function (event: any, ctx: { store: any }): Promise<{ok: boolean}> {
           const x: number = 1;
           return { ok: x === 1 };
         }",
    );
    assert_success(&outcome, r#"{"ok":true}"#);
}

#[test]
fn typescript_types_enums_and_namespaces_are_stripped_or_transformed() {
    let outcome = run_code(
        "interface Task { title: string }
         type Id = string | number;
         enum Color { Red, Green = 'green' }
         namespace Util { export const twice = (n: number) => n * 2 }
         function first<T>(items: T[]): T { return items[0] }
         class Box<T> { constructor(private readonly value: T) {} get(): T { return this.value } }
         export default async (): Promise<unknown> => {
           const task = { title: 'a' } as Task;
           const id: Id = first<Id>([3, 4]);
           return [task.title, id, Color.Red, Color.Green, Util.twice(2), new Box(5).get(), <number>(1)!];
         }",
    );
    assert_success(&outcome, r#"["a",3,0,"green",4,5,1]"#);
}

#[test]
fn modern_javascript_is_not_downleveled() {
    let js = compile(
        "export default async () => { const { a, ...rest } = { a: 1, b: 2 }; return rest?.b ?? 0 }",
    )
    .expect("compiles");
    assert!(
        js.contains("...rest") && js.contains("?.") && js.contains("??"),
        "{js}"
    );
}

#[test]
fn syntax_error_has_line_and_column() {
    let error = compile("export default function ( {").expect_err("does not compile");
    assert_eq!((error.line, error.column), (1, 28), "{error}");
    let error = compile("// héllo\nconst é = 1;\nexport default function () { return é + }")
        .expect_err("does not compile");
    // Column 41 in characters; counting bytes would say 42.
    assert_eq!((error.line, error.column), (3, 41), "{error}");
}

#[test]
fn missing_default_export_is_refused() {
    let error = compile("export function main() {}").expect_err("refused");
    assert!(error.message.contains("no default export"), "{error}");
    assert!(compile("function main() {}\nexport { main as default }").is_ok());
}

#[test]
fn imports_are_refused() {
    for code in [
        "import fs from 'fs';\nexport default () => 1",
        "import type { T } from './t';\nexport default () => 1",
        "export * from 'x';\nexport default () => 1",
        "export { a } from 'x';\nexport default () => 1",
        "import fs = require('fs');\nexport default () => 1",
    ] {
        let error = compile(code).expect_err(code);
        assert!(error.message.contains("cannot import"), "{code}: {error}");
        assert_eq!(error.line, 1, "{code}");
    }
}

#[test]
fn oversized_code_is_refused() {
    let code = format!("export default () => 1;{}", " ".repeat(MAX_CODE_BYTES));
    let error = compile(&code).expect_err("refused");
    assert!(error.message.contains("longer than"), "{error}");
}

#[test]
fn pathological_nesting_never_crashes() {
    let prefix = "export default ";
    let inputs = [
        format!("{prefix}{}", "(".repeat(200_000)),
        format!("{prefix}{}", "[".repeat(200_000)),
        format!("{prefix}{}1", "!".repeat(200_000)),
        format!("let a, b;\n{prefix}{}b", "a?b:".repeat(60_000)),
        format!("{prefix}{}1{}", "(".repeat(100_000), ")".repeat(100_000)),
        format!("{prefix}{}{}", "[".repeat(120_000), "]".repeat(120_000)),
        format!("let x;\n{prefix}x{}", ".a".repeat(120_000)),
        format!("{prefix}async () => {{{}1}}", "await ".repeat(40_000)),
    ];
    for code in inputs {
        let outcome = compile(&code);
        if let Err(error) = &outcome {
            assert!(error.line >= 1 && error.column >= 1);
        }
    }
    let error = compile(&format!(
        "{prefix}{}{}",
        "[".repeat(5_000),
        "]".repeat(5_000)
    ))
    .expect_err("too deep");
    assert!(error.message.contains("nested more than"), "{error}");
}

#[test]
fn nesting_that_makes_parsing_quadratic_is_refused_before_parsing() {
    for open in ["a=(", "({a=", "x<"] {
        let code = format!("let a, x;\nexport default {}1", open.repeat(2_000));
        let error = compile(&code).expect_err("refused");
        assert!(
            error
                .message
                .starts_with("brackets are nested more than 64"),
            "{error}"
        );
        assert_eq!(error.line, 2);
    }
}

#[test]
fn deeply_nested_but_allowed_code_fails_cleanly_at_run_time() {
    let code = format!(
        "export default () => {}true",
        "!".repeat(MAX_TREE_DEPTH - 20)
    );
    let limits = Limits {
        stack_bytes: 64 * 1024,
        ..limits()
    };
    assert_failure(
        &run_with(&code, &limits),
        "stack limit exceeded (deep recursion)",
    );
}
