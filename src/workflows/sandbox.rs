//! A worker process confines itself before it runs any customer code: operating-system limits
//! (address space, CPU time, no core dumps, no new descriptors) and, on Linux,
//! a seccomp filter that lets through only what a running engine needs — memory, time, the
//! pipes it already holds, and leaving. Opening files, sockets, processes, `ptrace` or
//! anything else fails with `EPERM`: even code that broke out of the engine has nothing to
//! reach the host with.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use rustix::time::{clock_gettime, ClockId};

/// Limits, then the filter: both for the life of the process. Fails closed: if a file still
/// opens afterwards, the worker must not run anything.
pub fn confine(address_space: u64) -> Result<(), String> {
    // A worker outlives no server: killed with it, even by `kill -9`.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|error| format!("asking to die with the server: {error}"))?;
    let mapped = mapped_bytes()?;
    let limit = |resource, value: u64, what: &str| {
        setrlimit(
            resource,
            Rlimit {
                current: Some(value),
                maximum: Some(value),
            },
        )
        .map_err(|error| format!("limiting {what}: {error}"))
    };
    limit(Resource::Core, 0, "core dumps")?;
    // Standard input, output and error, and not one more.
    limit(Resource::Nofile, 3, "open files")?;
    // What the binary, its libraries and the heap map already, and the budget on top.
    limit(
        Resource::As,
        mapped.saturating_add(address_space),
        "the address space",
    )?;
    filter_system_calls()?;
    match std::fs::File::open("/") {
        Ok(_) => Err("a file still opens under the seccomp filter".to_owned()),
        Err(_) => Ok(()),
    }
}

/// Lets the process use `cpu_ms` more CPU time (rounded up to whole seconds, plus one): past
/// it the kernel ends the process (`SIGXCPU`). The engine's own check is finer; this one also
/// holds inside long built-in calls, where the engine does not look at the clock.
pub fn budget_cpu(cpu_ms: u64) {
    let used = clock_gettime(ClockId::ProcessCPUTime);
    let seconds = used.tv_sec as u64 + cpu_ms.div_ceil(1000) + 1;
    let maximum = getrlimit(Resource::Cpu).maximum;
    let current = maximum.map_or(seconds, |maximum| seconds.min(maximum));
    // Failing leaves the engine's check and the server's deadline: still bounded.
    let _ = setrlimit(
        Resource::Cpu,
        Rlimit {
            current: Some(current),
            maximum,
        },
    );
}

/// The process's virtual size now, from `/proc/self/statm` (in pages).
fn mapped_bytes() -> Result<u64, String> {
    let statm = std::fs::read_to_string("/proc/self/statm")
        .map_err(|error| format!("reading /proc/self/statm: {error}"))?;
    let pages: u64 = statm
        .split_whitespace()
        .next()
        .and_then(|pages| pages.parse().ok())
        .ok_or("/proc/self/statm is not as expected")?;
    Ok(pages * rustix::param::page_size() as u64)
}

#[cfg(target_os = "linux")]
fn filter_system_calls() -> Result<(), String> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};

    // What a single-threaded engine run needs after start-up, and nothing that names a path,
    // an address or another process.
    let allowed = [
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_close,
        libc::SYS_brk,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        libc::SYS_futex,
        libc::SYS_clock_gettime,
        libc::SYS_gettimeofday,
        libc::SYS_getrusage,
        libc::SYS_getrandom,
        libc::SYS_prlimit64,
        libc::SYS_sched_yield,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        // Leaving, and `abort` (a panic in the engine) raising its signal.
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_tgkill,
    ];
    let rules = allowed.into_iter().map(|call| (call, Vec::new())).collect();
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|error| format!("no seccomp filter for this architecture: {error:?}"))?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(|error| format!("building the seccomp filter: {error}"))?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|error| format!("compiling the seccomp filter: {error:?}"))?;
    seccompiler::apply_filter(&program)
        .map_err(|error| format!("installing the seccomp filter: {error}"))
}

#[cfg(not(target_os = "linux"))]
fn filter_system_calls() -> Result<(), String> {
    Err("system-call filtering needs Linux (seccomp)".to_owned())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::ErrorKind;

    use super::filter_system_calls;

    /// The filter holds for the thread that installs it (a worker has only that one): files,
    /// sockets and processes are refused, memory and time still work.
    #[test]
    fn a_filtered_thread_opens_no_file_socket_or_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let refused = std::thread::spawn(move || {
            filter_system_calls().unwrap();
            let denied = |kind: ErrorKind| kind == ErrorKind::PermissionDenied;
            let file = std::fs::File::open("/etc/hostname").map(|_| ());
            let created = std::fs::File::create("/tmp/collabkit-sandbox-probe").map(|_| ());
            let socket = std::net::TcpStream::connect(address).map(|_| ());
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").map(|_| ());
            let process = std::process::Command::new("/bin/true").status().map(|_| ());
            let memory = vec![7u8; 8 << 20]
                .iter()
                .map(|&b| b as usize)
                .sum::<usize>();
            let _ = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
            [file, created, socket, udp, process]
                .map(|result| result.is_err_and(|error| denied(error.kind())))
                .into_iter()
                .chain([memory == 7 * (8 << 20)])
                .collect::<Vec<bool>>()
        })
        .join()
        .unwrap();
        assert_eq!(
            refused,
            vec![true; 6],
            "file, create, tcp, udp, process, memory"
        );
    }
}
