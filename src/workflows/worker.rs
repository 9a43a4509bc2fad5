//! A worker process: the same binary started by the server's pool with `WORKER_ARG`. It holds
//! no database connection, no configuration and no secrets (its environment is emptied), confines
//! itself (`sandbox`), then runs what the server sends, one run at a time, each in a fresh
//! engine. Bindings are calls back to the server over the same pipes.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use serde_json::Value;

use super::engine::{self, Host};
use super::protocol::{read_line, write_line, FromWorker, ToWorker};
use super::sandbox;

/// Exit status when the sandbox cannot be set up: the pool reports it in the run's result.
pub const SANDBOX_FAILED: u8 = 3;

/// The worker's `main`: serves runs until the server closes its standard input.
/// `address_space` is the worker's address-space budget beyond what it maps at start.
pub fn main(address_space: Option<&str>) -> ExitCode {
    let Some(address_space) = address_space.and_then(|text| text.parse().ok()) else {
        eprintln!("collabkit workflow worker: expected the address-space budget in bytes");
        return ExitCode::FAILURE;
    };
    if let Err(error) = sandbox::confine(address_space) {
        eprintln!("collabkit workflow worker: the sandbox could not be set up: {error}");
        return ExitCode::from(SANDBOX_FAILED);
    }
    let mut server = Server {
        input: std::io::stdin().lock(),
        output: std::io::stdout().lock(),
    };
    loop {
        match read_line(&mut server.input) {
            Ok(Some(ToWorker::Run { js, event, limits })) => {
                sandbox::budget_cpu(limits.cpu_ms);
                let outcome = engine::run(&js, &event, &mut server, &(&limits).into());
                if write_line(&mut server.output, &FromWorker::from(&outcome)).is_err() {
                    return ExitCode::FAILURE;
                }
            }
            Ok(None) => return ExitCode::SUCCESS,
            Ok(Some(ToWorker::Reply { .. })) | Err(_) => {
                eprintln!("collabkit workflow worker: unexpected input from the server");
                return ExitCode::FAILURE;
            }
        }
    }
}

/// The server's end of the pipes, as the engine's host.
struct Server<I, O> {
    input: I,
    output: O,
}

impl<I: BufRead, O: Write> Host for Server<I, O> {
    fn call(&mut self, name: &str, args: Value) -> Result<Value, String> {
        let call = FromWorker::Call {
            name: name.to_owned(),
            args,
        };
        let gone = |_| "the server did not answer".to_owned();
        write_line(&mut self.output, &call).map_err(gone)?;
        match read_line(&mut self.input).map_err(gone)? {
            Some(ToWorker::Reply { result }) => result,
            // The server hung up or spoke out of turn: nothing sensible can follow.
            _ => std::process::exit(1),
        }
    }
}
