//! When a run must stop: its wall-clock deadline and the CPU time its thread may use.

use std::time::{Duration, Instant};

/// The limit that stopped a run before its code finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Halt {
    Time,
    Cpu,
}

/// A run's deadlines; `None` where a limit is too large to reach.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    wall: Option<Instant>,
    cpu: Option<Duration>,
}

impl Deadline {
    /// Wall time counts from `started`; CPU time from now, on the calling thread, which must
    /// be the thread that runs the JavaScript.
    pub(super) fn start(started: Instant, time: Duration, cpu: Duration) -> Self {
        Self {
            wall: started.checked_add(time),
            cpu: thread_cpu_time().checked_add(cpu),
        }
    }

    /// The first limit already passed, wall time first.
    pub(super) fn passed(&self) -> Option<Halt> {
        if self.wall.is_some_and(|wall| Instant::now() >= wall) {
            Some(Halt::Time)
        } else if self.cpu.is_some_and(|cpu| thread_cpu_time() >= cpu) {
            Some(Halt::Cpu)
        } else {
            None
        }
    }
}

/// CPU time used so far by the calling thread (time spent waiting does not count).
fn thread_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(now.tv_nsec).unwrap_or(0);
    Duration::new(seconds, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_deadline_counts_work_not_waiting() {
        let deadline = Deadline::start(
            Instant::now(),
            Duration::from_secs(60),
            Duration::from_millis(50),
        );
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(deadline.passed(), None, "sleeping used no CPU time");

        let spin_until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < spin_until {
            std::hint::black_box(0u64);
        }
        assert_eq!(deadline.passed(), Some(Halt::Cpu));
    }

    #[test]
    fn wall_deadline_counts_from_the_start() {
        let started = Instant::now() - Duration::from_millis(20);
        let deadline = Deadline::start(started, Duration::from_millis(10), Duration::from_secs(60));
        assert_eq!(deadline.passed(), Some(Halt::Time));
    }

    #[test]
    fn limits_too_large_to_reach_never_pass() {
        let deadline = Deadline::start(Instant::now(), Duration::MAX, Duration::MAX);
        assert_eq!(deadline.passed(), None);
    }
}
