//! What the benches share: child processes and their CPU and memory, the
//! sidecar under test, and a private PostgreSQL.

#![allow(dead_code)]
// libc for CPU accounting (clock ticks, children's rusage) and signals; each use has its SAFETY comment.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use governance_sidecar::postgres::local_postgres::LocalPostgres;

pub mod load;

pub const SIDECAR: &str = env!("CARGO_BIN_EXE_governance-sidecar");
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub struct Process {
    pub child: Child,
}

impl Process {
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// User + system CPU time the process has used so far.
    pub fn cpu(&self) -> Duration {
        cpu_of(self.child.id(), false)
    }
}

/// CPU time (user + system) of a process; with `reaped_children`, plus that
/// of the children it has waited for (a PostgreSQL server's ended backends).
pub fn cpu_of(pid: u32, reaped_children: bool) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: utime and stime are the
    // 12th and 13th, cutime and cstime the 14th and 15th.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let range = if reaped_children { 11..15 } else { 11..13 };
    let ticks: u64 = fields.get(range).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}

/// CPU time of this process: the load generator.
pub fn own_cpu() -> Duration {
    cpu_of(std::process::id(), false)
}

/// CPU time of this process's children that have ended and been waited for
/// (a finished pgbench).
pub fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// CPU time of a whole PostgreSQL server: the postmaster, its live
/// processes and the backends that have ended.
pub fn postgres_cpu(data_dir: &Path) -> Duration {
    let pid_file = std::fs::read_to_string(data_dir.join("postmaster.pid")).unwrap_or_default();
    let Some(postmaster) = pid_file.lines().next().and_then(|l| l.trim().parse::<u32>().ok()) else {
        return Duration::ZERO;
    };
    let children = std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        let parent: u32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
        (parent == postmaster).then_some(pid)
    });
    cpu_of(postmaster, true) + children.map(|pid| cpu_of(pid, false)).sum::<Duration>()
}

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_for_port(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `BENCH_SIDECAR_ARGS` adds flags to every sidecar (e.g. `--worker-threads 1`).
pub fn spawn_sidecar(port: u16, extra: &[&str]) -> Process {
    let configured = std::env::var("BENCH_SIDECAR_ARGS").unwrap_or_default();
    let child = Command::new(SIDECAR)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        // The benches' requests carry their policies (the request-policy path).
        .arg("--allow-request-policies")
        .args(extra)
        .args(configured.split_whitespace())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port);
    Process { child }
}

/// A durable private PostgreSQL on its own thread (it dies with that thread).
/// Data directories of earlier benches whose process is gone are removed
/// first: the growth bench's hold tens of gigabytes.
pub fn start_postgres() -> (String, PathBuf) {
    start_postgres_with(&[])
}

/// [`start_postgres`] with `-c name=value` settings.
pub fn start_postgres_with(settings: &'static [&'static str]) -> (String, PathBuf) {
    remove_orphaned_data_dirs();
    let dir = std::env::temp_dir().join(format!("governance-sidecar-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (sender, receiver) = std::sync::mpsc::channel();
    let thread_dir = dir.clone();
    std::thread::spawn(move || {
        let server = LocalPostgres::start_with(&thread_dir, 0, true, settings).unwrap();
        sender.send(server.url("postgres")).unwrap();
        loop {
            std::thread::park();
        }
    });
    (receiver.recv().unwrap(), dir)
}

pub fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> =
        std::fs::read_dir("/usr/lib/postgresql").unwrap().flatten().map(|e| e.path().join("bin").join(name)).collect();
    versions.sort();
    versions.pop().unwrap()
}

pub fn psql(url: &str, sql: &str) {
    let status = Command::new(pg_bin("psql")).args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]).status().unwrap();
    assert!(status.success(), "psql failed: {sql}");
}

fn remove_orphaned_data_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("governance-sidecar-bench-") else { continue };
        if pid.parse::<u32>().is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
