//! What /proc says about a process under measurement: CPU time, resident memory, the open
//! files limit, and waiting for it to go quiet.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::Instant;

/// Waits until the process has been nearly idle for a second (at most ten seconds).
pub async fn settle(pid: u32) -> anyhow::Result<()> {
    let began = Instant::now();
    let mut last = cpu_ticks(pid)?;
    while began.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = cpu_ticks(pid)?;
        if (now - last) as f64 <= ticks_per_second() * 0.05 {
            break;
        }
        last = now;
    }
    Ok(())
}

/// User plus system CPU time a process has used, in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15, the 12th and 13th after the name.
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (tick(11), tick(12)) {
        (Some(user), Some(system)) => Ok(user + system),
        _ => bail!("unreadable /proc/{pid}/stat"),
    }
}

/// The whole machine's busy CPU time so far, in clock ticks: every core's time in `/proc/stat`
/// but idle and iowait. What the server and the load generator do not account for is the
/// database's (and anything else running).
pub fn machine_busy_ticks() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let Some(cpu) = stat
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
    else {
        bail!("unreadable /proc/stat");
    };
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    if ticks.len() < 8 {
        bail!("unreadable /proc/stat");
    }
    Ok(ticks[..8].iter().sum::<u64>() - ticks[3] - ticks[4])
}

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ: 100 on Linux).
pub fn ticks_per_second() -> f64 {
    100.0
}

/// The resident set size of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}

/// This process's soft limit on open files (the server it spawns inherits it).
pub fn open_files_limit() -> anyhow::Result<u64> {
    let limits =
        std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|soft| soft.parse().unwrap_or(u64::MAX))
        .context("no open files limit in /proc/self/limits")
}
