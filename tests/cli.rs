//! The `governance-sidecar` binary itself: offline evaluation and SIGTERM.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_governance-sidecar");

fn evaluate(body: &str, key: &str) -> (Option<i32>, String) {
    let mut child = Command::new(BINARY)
        .args(["evaluate", "--idempotency-key", key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (output.status.code(), String::from_utf8(output.stdout).unwrap())
}

#[test]
fn evaluate_prints_the_kernite_response_for_stdin() {
    let vector = r#"{"workspace_id": "workspace-demo", "principal": {"type": "token", "id": "api:ops-bot"}, "object_type": "document", "operation": "create", "payload": {"title": "Quarterly Plan"}, "policy_context": {"governed": true, "selected_policies": []}}"#;
    let (code, stdout) = evaluate(vector, "vector-001");
    assert_eq!(code, Some(0));
    assert!(
        stdout.starts_with(r#"{"ctx_id": "ctx_8f97889f5781", "message": "Denied by governance policy.""#),
        "{stdout}"
    );

    let (code, stdout) = evaluate(r#"{"workspace_id": "w"}"#, "k");
    assert_eq!(code, Some(2));
    assert!(stdout.contains(r#""valid": false"#));
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut child = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("serving gRPC") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "server exited before serving");
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "server did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
