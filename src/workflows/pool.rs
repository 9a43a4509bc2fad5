//! The server's side of the worker processes: at most `workers` at a time, each running one
//! run, kept for the next when it ends well and replaced when it does not. The server holds
//! the deadline: a worker still busy at the run's time limit plus a grace period is killed
//! (`SIGKILL`), whatever the engine inside is doing. A worker that dies — a crash, the
//! kernel's CPU limit, a forbidden system call — fails its run and nothing else.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::engine::{Outcome, Status};
use super::protocol::{FromWorker, RunLimits, ToWorker, WORKER_ARG};
use super::worker::SANDBOX_FAILED;

/// How long past a run's time limit its worker may take to report before it is killed: the
/// engine's own check ends most runs before the limit.
const GRACE: Duration = Duration::from_millis(1_000);
/// Largest line a worker may send, beyond what a run's logs and result may hold: a call's
/// arguments (a `fetch` body).
const MESSAGE_SLACK: usize = 2 << 20;

/// A binding's data: the server's side of `store.get`, `fetch`, ...
#[async_trait]
pub trait Bindings: Send {
    async fn call(&mut self, name: &str, args: Value) -> Result<Value, String>;
}

/// One run: compiled code, the event, the limits.
#[derive(Debug, Clone)]
pub struct Job {
    pub js: String,
    pub event: Value,
    pub limits: RunLimits,
}

pub struct Pool {
    program: PathBuf,
    /// Each worker's address-space budget beyond what it maps at start.
    address_space: u64,
    workers: usize,
    slots: Semaphore,
    idle: Mutex<Vec<Worker>>,
}

impl Pool {
    /// `program` is this server's binary (or one like it): it runs as a worker when given
    /// `WORKER_ARG`.
    pub fn new(program: PathBuf, workers: usize, address_space: u64) -> Self {
        Self {
            program,
            address_space,
            workers,
            slots: Semaphore::new(workers),
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Runs a job in a worker as soon as one is free; the outcome says how it ended, however
    /// the worker fared.
    pub async fn run(&self, job: Job, bindings: &mut dyn Bindings) -> Outcome {
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the pool's slots never close");
        let deadline = Instant::now() + Duration::from_millis(job.limits.time_ms) + GRACE;
        let mut worker = match self.started(&job).await {
            Ok(worker) => worker,
            Err(error) => return failed(format!("starting a workflow worker failed: {error}")),
        };
        let max_line = job.limits.log_bytes + job.limits.result_bytes + MESSAGE_SLACK;
        match tokio::time::timeout_at(deadline, worker.finish(bindings, max_line)).await {
            Ok(Ok(outcome)) => {
                self.idle.lock().expect("not poisoned").push(worker);
                outcome
            }
            Ok(Err(_)) => worker.ended(&job.limits).await,
            Err(_) => {
                // Dropping the child kills it.
                drop(worker);
                failed(time_limit(&job.limits))
            }
        }
    }

    /// A worker that took the job: an idle one, or a new one if none is idle or the idle one
    /// turns out to be gone.
    async fn started(&self, job: &Job) -> std::io::Result<Worker> {
        let run = ToWorker::Run {
            js: job.js.clone(),
            event: job.event.clone(),
            limits: job.limits.clone(),
        };
        let mut line = serde_json::to_vec(&run)?;
        line.push(b'\n');
        let idle = self.idle.lock().expect("not poisoned").pop();
        if let Some(mut worker) = idle {
            if worker.send(&line).await.is_ok() {
                return Ok(worker);
            }
        }
        let mut worker = self.spawn()?;
        worker.send(&line).await?;
        Ok(worker)
    }

    fn spawn(&self) -> std::io::Result<Worker> {
        let mut child = Command::new(&self.program)
            .arg(WORKER_ARG)
            .arg(self.address_space.to_string())
            // Nothing of the server's: no secrets in the environment, no working directory.
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let input = child.stdin.take().expect("piped");
        let output = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Worker {
            child,
            input,
            output,
        })
    }
}

struct Worker {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Worker {
    async fn send(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.input.write_all(line).await?;
        self.input.flush().await
    }

    /// Serves the run's calls until it reports its outcome. An error: the worker is gone or
    /// broke the protocol.
    async fn finish(
        &mut self,
        bindings: &mut dyn Bindings,
        max_line: usize,
    ) -> std::io::Result<Outcome> {
        loop {
            match self.receive(max_line).await? {
                FromWorker::Call { name, args } => {
                    let result = bindings.call(&name, args).await;
                    let mut line = serde_json::to_vec(&ToWorker::Reply { result })?;
                    line.push(b'\n');
                    self.send(&line).await?;
                }
                FromWorker::Done {
                    success,
                    result,
                    logs,
                } => {
                    let status = if success {
                        Status::Success
                    } else {
                        Status::Failed
                    };
                    return Ok(Outcome {
                        status,
                        result,
                        logs,
                    });
                }
            }
        }
    }

    /// One message, of at most `max_line` bytes.
    async fn receive(&mut self, max_line: usize) -> std::io::Result<FromWorker> {
        let mut line = Vec::new();
        (&mut self.output)
            .take(max_line as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if line.last() != Some(&b'\n') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the worker ended or sent an overlong message",
            ));
        }
        serde_json::from_slice(&line)
            .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))
    }

    /// The outcome of a run whose worker stopped answering: why, from how it ended.
    async fn ended(mut self, limits: &RunLimits) -> Outcome {
        // It may still run (it sent nonsense): it is not trusted with another run.
        let _ = self.child.start_kill();
        match self.child.wait().await {
            Ok(status) => failed(why_ended(status, limits)),
            Err(error) => failed(format!("the workflow engine stopped: {error}")),
        }
    }
}

fn why_ended(status: ExitStatus, limits: &RunLimits) -> String {
    const SIGKILL: i32 = 9;
    const SIGSYS: i32 = 31;
    const SIGXCPU: i32 = 24;
    match (status.code(), status.signal()) {
        (_, Some(SIGXCPU)) => cpu_limit(limits),
        (_, Some(SIGSYS)) => "the workflow engine made a forbidden system call".to_owned(),
        (_, Some(SIGKILL)) => "the workflow engine was killed (out of memory?)".to_owned(),
        (_, Some(signal)) => format!("the workflow engine crashed (signal {signal})"),
        (Some(code), _) if code == i32::from(SANDBOX_FAILED) => {
            "the workflow sandbox could not be set up on this server (see its log)".to_owned()
        }
        (code, _) => format!("the workflow engine stopped (exit status {code:?})"),
    }
}

pub fn time_limit(limits: &RunLimits) -> String {
    format!("time limit exceeded ({} ms)", limits.time_ms)
}

fn cpu_limit(limits: &RunLimits) -> String {
    format!("CPU time limit exceeded ({} ms)", limits.cpu_ms)
}

pub fn failed(result: String) -> Outcome {
    Outcome {
        status: Status::Failed,
        result,
        logs: String::new(),
    }
}
