//! Login attempts, counted per client address and per email address in fixed windows, so
//! that guessing passwords is slow whether one address tries many logins or many addresses
//! try one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys remembered per kind before windows that ended are swept.
const SWEEP_AT: usize = 10_000;

pub struct LoginLimiter {
    window: Duration,
    per_address: u32,
    per_email: u32,
    counts: Mutex<HashMap<String, (Instant, u32)>>,
}

impl LoginLimiter {
    pub fn new(window: Duration, per_address: u32, per_email: u32) -> Self {
        Self {
            window,
            per_address,
            per_email,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt; `Err(seconds to wait)` when either limit is reached.
    pub fn attempt(&self, address: &str, email: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if counts.len() >= SWEEP_AT {
            let window = self.window;
            counts.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let mut wait = 0;
        for (key, limit) in [
            (format!("a:{address}"), self.per_address),
            (format!("e:{email}"), self.per_email),
        ] {
            let entry = counts.entry(key).or_insert((now, 0));
            if now.duration_since(entry.0) >= self.window {
                *entry = (now, 0);
            }
            entry.1 = entry.1.saturating_add(1);
            if entry.1 > limit {
                let left = self.window.saturating_sub(now.duration_since(entry.0));
                wait = wait.max(left.as_secs().max(1));
            }
        }
        if wait > 0 {
            Err(wait)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_email_and_per_address() {
        let limiter = LoginLimiter::new(Duration::from_secs(60), 5, 2);
        assert!(limiter.attempt("1.1.1.1", "a@x").is_ok());
        assert!(limiter.attempt("2.2.2.2", "a@x").is_ok());
        assert!(
            limiter.attempt("3.3.3.3", "a@x").is_err(),
            "third try at one email"
        );
        assert!(
            limiter.attempt("4.4.4.4", "b@x").is_ok(),
            "another email is fine"
        );
        // Five tries from one address, each at another email, then no more.
        for email in ["c@x", "d@x", "e@x", "f@x", "g@x"] {
            assert!(limiter.attempt("9.9.9.9", email).is_ok(), "{email}");
        }
        let wait = limiter.attempt("9.9.9.9", "h@x").unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
    }

    #[test]
    fn windows_end() {
        let limiter = LoginLimiter::new(Duration::ZERO, 1, 1);
        for _ in 0..3 {
            assert!(limiter.attempt("1.1.1.1", "a@x").is_ok());
        }
    }
}
