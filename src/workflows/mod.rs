//! Workflows: customer JavaScript or TypeScript run on room events (docs/workflows.md).
//!
//! In the server: `runner` leases queued runs and records executions, `pool` keeps the worker
//! processes, `bindings` answers their calls for data. In a worker process (`worker`, confined
//! by `sandbox`): `engine`, QuickJS with a fresh context per run. `protocol` is what the two
//! say over the worker's pipes.

pub mod bindings;
pub mod engine;
pub mod pool;
pub mod protocol;
pub mod runner;
pub mod sandbox;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use engine::SyntaxError;

/// Compiled versions kept; past it the cache starts afresh.
const COMPILED_KEPT: usize = 1_000;

/// Customer code to JavaScript, once per version of the code.
#[derive(Default)]
pub struct Compiler {
    compiled: Mutex<HashMap<[u8; 32], Arc<str>>>,
}

impl Compiler {
    /// The code as the engine runs it, or where it does not parse. Off the async runtime's
    /// threads: parsing large code takes a while.
    pub async fn compiled(&self, code: &str) -> Result<Arc<str>, SyntaxError> {
        let version: [u8; 32] = Sha256::digest(code.as_bytes()).into();
        if let Some(js) = self.compiled.lock().expect("not poisoned").get(&version) {
            return Ok(js.clone());
        }
        let code = code.to_owned();
        let js: Arc<str> = tokio::task::spawn_blocking(move || engine::compile(&code))
            .await
            .expect("compiling does not panic")?
            .into();
        let mut compiled = self.compiled.lock().expect("not poisoned");
        if compiled.len() >= COMPILED_KEPT {
            compiled.clear();
        }
        compiled.insert(version, js.clone());
        Ok(js)
    }
}
