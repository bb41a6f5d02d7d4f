//! The `governance-sidecar dev` binary as a child process: the README's run
//! command, with its own private PostgreSQL and the invoice example.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

pub const BINARY: &str = env!("CARGO_BIN_EXE_governance-sidecar");

pub struct DevSidecar {
    child: Child,
    /// What `dev` prints for people: how to try it.
    stdout: Option<ChildStdout>,
    /// The gRPC address it logged, e.g. `127.0.0.1:40123`.
    pub address: String,
    pub postgres_port: u16,
    pub data_dir: PathBuf,
    /// What it logged after it started serving.
    log: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl DevSidecar {
    /// Starts `dev` on an ephemeral loopback port and waits until it serves.
    pub fn start(name: &str) -> DevSidecar {
        DevSidecar::start_with(name, &[])
    }

    /// Starts `dev` with more arguments (e.g. `--example-policies=false`).
    pub fn start_with(name: &str, arguments: &[&str]) -> DevSidecar {
        DevSidecar::start_with_env(name, arguments, &[])
    }

    /// Starts `dev` with more arguments and environment variables.
    pub fn start_with_env(name: &str, arguments: &[&str], env: &[(&str, &str)]) -> DevSidecar {
        let data_dir = super::postgres::scratch_dir(name);
        let mut child = Command::new(BINARY)
            .args(["dev", "--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
            .arg(&data_dir)
            .args(arguments)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let postgres_line = wait_for_line(&mut stderr, "private PostgreSQL is up");
        let serving = wait_for_line(&mut stderr, "serving gRPC");
        // Keep draining the log so that a full pipe never blocks the server.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            let mut line = Vec::new();
            while stderr.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                kept.lock().unwrap().append(&mut line);
            }
        });
        let address = logged_address(&serving);
        let postgres_port =
            postgres_line.split("127.0.0.1:").nth(1).unwrap().split('/').next().unwrap().parse().unwrap();
        let stdout = child.stdout.take();
        DevSidecar { child, stdout, address, postgres_port, data_dir, log }
    }

    /// The block `dev` prints on how to try it (up to its last command).
    pub fn first_run(&mut self) -> String {
        let mut stdout = BufReader::new(self.stdout.take().expect("read once"));
        let mut printed = String::new();
        while !printed.contains("governance.v1.Governance/ListEvidence") {
            assert!(stdout.read_line(&mut printed).unwrap() > 0, "dev printed no first run: {printed}");
        }
        printed
    }

    /// The process id, to read its memory from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it and returns what it logged after it started serving.
    pub fn stop_and_read_log(mut self) -> String {
        self.terminate();
        std::thread::sleep(Duration::from_millis(100));
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// Sends SIGTERM and waits (at most 10 s) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        terminate_and_wait(&mut self.child)
    }
}

impl Drop for DevSidecar {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The address in a JSON log line's `"address"` field.
pub fn logged_address(line: &str) -> String {
    line.split("\"address\":\"").nth(1).and_then(|rest| rest.split('"').next()).expect(line).to_owned()
}

/// Reads stderr until a line containing `needle`; returns that line.
pub fn wait_for_line(stderr: &mut impl BufRead, needle: &str) -> String {
    let mut line = String::new();
    while !line.contains(needle) {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the process exited before logging {needle:?}");
    }
    line
}

pub fn terminate_and_wait(child: &mut Child) -> ExitStatus {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}
