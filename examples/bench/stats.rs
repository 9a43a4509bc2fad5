//! Closed-loop load generation and latency percentiles.

use std::future::Future;
use std::time::{Duration, Instant};

pub struct Summary {
    pub completed: usize,
    pub failed: usize,
    pub elapsed: Duration,
    /// Latencies of successful calls, sorted, in microseconds.
    pub latencies_us: Vec<u64>,
}

impl Summary {
    pub fn from_samples(mut latencies_us: Vec<u64>, failed: usize, elapsed: Duration) -> Self {
        latencies_us.sort_unstable();
        Self {
            completed: latencies_us.len(),
            failed,
            elapsed,
            latencies_us,
        }
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * (self.latencies_us.len() - 1) as f64).round() as usize;
        self.latencies_us[rank] as f64 / 1000.0
    }

    pub fn per_second(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    pub fn header() -> String {
        format!(
            "{:<24} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "scenario", "req/s", "p50 ms", "p99 ms", "requests", "errors"
        )
    }

    pub fn row(&self, name: &str) -> String {
        format!(
            "{:<24} {:>10.0} {:>10.2} {:>10.2} {:>10} {:>8}",
            name,
            self.per_second(),
            self.percentile_ms(50.0),
            self.percentile_ms(99.0),
            self.completed,
            self.failed
        )
    }
}

/// Runs `concurrency` workers, each calling `call` back to back for `duration`; `call` gets a
/// running counter and says whether the call succeeded.
pub async fn run_load<F, Fut>(concurrency: usize, duration: Duration, call: F) -> Summary
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = bool> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (call, counter) = (call.clone(), counter.clone());
            tokio::spawn(async move {
                let (mut latencies, mut failed) = (Vec::new(), 0);
                while Instant::now() < deadline {
                    let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let sent = Instant::now();
                    if call(i).await {
                        latencies.push(sent.elapsed().as_micros() as u64);
                    } else {
                        failed += 1;
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let (mut latencies, mut failed) = (Vec::new(), 0);
    for worker in workers {
        if let Ok((l, f)) = worker.await {
            latencies.extend(l);
            failed += f;
        }
    }
    Summary::from_samples(latencies, failed, started.elapsed())
}
