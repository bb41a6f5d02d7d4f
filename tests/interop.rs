//! Polyglot clients against the real sidecar: Python (grpcio), Node.js
//! (@grpc/grpc-js) and the README's grpcurl commands, each against its own
//! `governance-sidecar dev` (private PostgreSQL, the invoice example), the way
//! a user meets it. The clients live in `tests/interop/`; their toolchains are
//! installed into `target/interop` by `tests/interop/setup.sh` on first use.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::dev::DevSidecar;

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn corpus() -> PathBuf {
    std::env::var_os("GOVERNANCE_CONFORMANCE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository().join("../shared/conformance/kernite-0.1.6-execute.jsonl"))
}

/// Runs `tests/interop/setup.sh` once per test binary; returns its output directory.
fn toolchains() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or(repository().join("target"));
        let dir = target.join("interop");
        let output = Command::new("bash").arg(repository().join("tests/interop/setup.sh")).arg(&dir).output().unwrap();
        assert_success("tests/interop/setup.sh", &output);
        dir
    })
}

fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs a client program against a fresh sidecar and returns what it printed.
fn run_client(program: &Path, script: &str) -> String {
    // The corpus is Kernite's answers without an operator's bundle.
    let name = format!("interop-{}", program.file_name().unwrap().to_string_lossy());
    let sidecar = DevSidecar::start_with(&name, &["--example-policies=false"]);
    let output = Command::new(program)
        .arg(repository().join(script))
        .args(["--address", &sidecar.address, "--proto-dir"])
        .arg(repository().join("proto"))
        .arg("--corpus")
        .arg(corpus())
        .output()
        .unwrap();
    assert_success(script, &output);
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn python_grpcio_client_decides_writes_and_matches_the_corpus() {
    let printed = run_client(&toolchains().join("python/bin/python"), "tests/interop/python/client.py");
    println!("{printed}");
    assert!(printed.contains("ok: the same key replays the same evidence"), "{printed}");
    assert!(printed.contains("refusals of the corpus answered like Kernite 0.1.6"), "{printed}");
}

#[test]
fn python_verifies_the_evidence_log_with_the_public_key_and_no_code_of_ours() {
    let sidecar = DevSidecar::start("interop-log");
    let public_key = std::fs::read_to_string(sidecar.data_dir.join("log-public-key")).unwrap();
    let output = Command::new(toolchains().join("python/bin/python"))
        .arg(repository().join("tests/interop/python/log_verifier.py"))
        .args(["--address", &sidecar.address, "--proto-dir"])
        .arg(repository().join("proto"))
        .args(["--public-key", public_key.trim()])
        .output()
        .unwrap();
    assert_success("tests/interop/python/log_verifier.py", &output);
    let printed = String::from_utf8(output.stdout).unwrap();
    println!("{printed}");
    assert!(printed.contains("rows (approved and denied) proven in the signed tree"), "{printed}");
    assert!(printed.contains("is a prefix of the tree of"), "{printed}");
}

#[test]
fn node_grpc_js_client_decides_writes_and_matches_the_corpus() {
    toolchains();
    let printed = run_client(Path::new("node"), "tests/interop/node/client.js");
    println!("{printed}");
    assert!(printed.contains("ok: the same key replays the same evidence"), "{printed}");
    assert!(printed.contains("refusals of the corpus answered like Kernite 0.1.6"), "{printed}");
}

/// What each grpcurl command of the README must print, in the README's order:
/// (a fragment that identifies the command, whether it succeeds, fragments of its output).
const README_GRPCURL: &[(&str, bool, &[&str])] = &[
    (" list", true, &["governance.v1.Governance", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"]),
    ("describe governance.v1.EvaluateRequest", true, &["message EvaluateRequest", "string request_json = 2;"]),
    (r#"\"amount\": 5000}, \"policy_context\""#, true, &[r#""decision": "DECISION_DENIED""#, r#""max_amount_denied""#]),
    (
        r#""payload": {"amount": 250, "currency": "USD"}}}"#,
        true,
        &[r#""decision": "DECISION_APPROVED""#, r#""policyKey": "invoice_create""#],
    ),
    ("grpc.health.v1.Health/Check", true, &[r#""status": "SERVING""#]),
    (
        r#""idempotency_key": "invoice-1", "mutation""#,
        true,
        &[r#""evidenceId": "1""#, r#""mutationApplied": true"#, r#""id": 1"#, r#""mode": "MODE_ENFORCE""#],
    ),
    (r#""idempotency_key": "invoice-1", "mutation""#, true, &[r#""evidenceId": "1""#, r#""replayed": true"#]),
    (r#""idempotency_key": "invoice-1", "mutation""#, false, &["Code: AlreadyExists"]),
    (
        r#""idempotency_key": "invoice-2", "mutation""#,
        true,
        &[r#""decision": "DECISION_DENIED""#, r#""evidenceId": "4""#],
    ),
    (
        "governance.v1.Governance/GetEvidence",
        true,
        &[
            r#""evidenceId": "1""#,
            r#""outcome": "applied""#,
            r#""mutationName": "create_invoice""#,
            r#""rowsAffected": "1""#,
        ],
    ),
    (
        "governance.v1.Governance/ListEvidence",
        true,
        &[r#""evidenceId": "4""#, r#""outcome": "not_applied""#, r#""nextPageToken": "v1."#],
    ),
    ("governance.v1.Governance/GetCheckpoint", true, &[r#""signedNote": "governance-sidecar.dev/evidence\n2\n"#]),
    (
        "governance.v1.Governance/GetInclusionProof",
        true,
        &[r#""evidenceId": "1""#, r#""leafHash": "#, r#""auditPath": ["#, r#""treeSize": "2""#],
    ),
    ("governance.v1.Governance/GetConsistencyProof", true, &[r#""secondSize": "2""#, r#""proof": ["#]),
];

/// The grpcurl commands of README.md's `sh` blocks from "Calling it" on,
/// continuation lines joined. (The first run's block, above it, has a test of its own.)
fn readme_grpcurl_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let readme = readme.split("\n## Calling it").nth(1).expect("a Calling it section");
    let mut commands = Vec::new();
    let mut in_shell = false;
    let mut current: Option<String> = None;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_shell = line == "```sh";
            continue;
        }
        if let Some(command) = current.as_mut() {
            command.push_str(line.trim_end_matches('\\'));
        } else if in_shell && line.starts_with("grpcurl ") {
            current = Some(line.trim_end_matches('\\').to_owned());
        }
        if !line.ends_with('\\') {
            commands.extend(current.take());
        }
    }
    commands
}

#[test]
fn readme_grpcurl_commands_print_what_the_readme_says() {
    let grpcurl_dir = toolchains().join("bin");
    let commands = readme_grpcurl_commands();
    assert_eq!(commands.len(), README_GRPCURL.len(), "a README grpcurl command without an expectation: {commands:#?}");
    let sidecar = DevSidecar::start("interop-grpcurl");
    let path = format!("{}:{}", grpcurl_dir.display(), std::env::var("PATH").unwrap());
    for (command, (identifies, succeeds, prints)) in commands.iter().zip(README_GRPCURL) {
        assert!(command.contains(identifies), "README order changed: {command} lacks {identifies}");
        let command = command.replace("127.0.0.1:50051", &sidecar.address);
        if command.contains("GetCheckpoint") {
            // As the README says, a row is in a checkpoint about a second after it commits.
            std::thread::sleep(std::time::Duration::from_millis(2_500));
        }
        let output = Command::new("bash").args(["-c", &command]).env("PATH", &path).output().unwrap();
        let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert_eq!(output.status.success(), *succeeds, "{command}\n{printed}");
        for fragment in *prints {
            assert!(printed.contains(fragment), "{command}\nprinted\n{printed}\nwithout {fragment}");
        }
    }
}

#[test]
fn the_readme_client_examples_are_the_code_the_tests_run() {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    for (path, language) in [("tests/interop/python/client.py", "Python"), ("tests/interop/node/client.js", "Node")] {
        let source = std::fs::read_to_string(repository().join(path)).unwrap();
        let start = format!("README's {language} example starts here");
        let end = format!("README's {language} example ends here");
        let from = source.find(&start).and_then(|i| source[i..].find('\n').map(|n| i + n + 1)).expect(&start);
        let to = source[..source.find(&end).expect(&end)].rfind('\n').unwrap() + 1;
        assert!(readme.contains(&source[from..to]), "README.md's {language} example differs from {path}");
    }
}

/// `dev` prints the README's first lines, and each of its commands does what
/// its comment says: one write approved, one denied, and both rows of evidence.
#[test]
fn dev_prints_the_readmes_first_run_and_it_governs() {
    let mut sidecar = DevSidecar::start("interop-first-run");
    let printed = sidecar.first_run();
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    assert!(readme.contains(&printed.replace(&sidecar.address, "127.0.0.1:50051")), "README.md lacks:\n{printed}");

    let path = format!("{}:{}", toolchains().join("bin").display(), std::env::var("PATH").unwrap());
    let commands: Vec<&str> = printed.lines().filter(|line| !line.is_empty() && !line.starts_with('#')).collect();
    let expected: [&[&str]; 3] = [
        &[r#""decision": "DECISION_APPROVED""#, r#""mutationApplied": true"#, r#""rowsAffected": "1""#],
        &[r#""decision": "denied""#, r#""mutation_applied": false"#, r#""max_amount""#],
        &[
            r#""decision": "denied""#,
            r#""outcome": "not_applied""#,
            r#""decision": "approved""#,
            r#""outcome": "applied""#,
        ],
    ];
    assert_eq!(commands.len(), expected.len(), "{printed}");
    for (command, fragments) in commands.iter().zip(expected) {
        let output = Command::new("bash").args(["-c", command]).env("PATH", &path).output().unwrap();
        let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{command}\n{printed}");
        for fragment in fragments {
            assert!(printed.contains(fragment), "{command}\nprinted\n{printed}\nwithout {fragment}");
        }
    }
}

/// With the standard OTEL_* variables set, every call's span reaches an OTLP
/// collector (a Python one, from the opentelemetry-proto package), continuing
/// the caller's traceparent, with the PostgreSQL transaction as its child.
#[test]
fn spans_reach_an_otlp_collector_continuing_the_callers_trace() {
    use std::io::{BufRead as _, BufReader};
    let mut receiver = Command::new(toolchains().join("otlp/bin/python"))
        .arg(repository().join("tests/interop/otlp/receiver.py"))
        .args(["0", "--exit-on-stdin-eof"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _held_open = receiver.stdin.take();
    let mut lines = BufReader::new(receiver.stdout.take().unwrap()).lines();
    let port = lines.next().unwrap().unwrap();
    let (spans, received) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = spans.send(serde_json::from_str(&line).unwrap());
        }
    });

    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "governance-sidecar-under-test"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let sidecar = DevSidecar::start_with_env("interop-otel", &[], &env);
    let (trace_id, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime.block_on(async {
        use governance_sidecar::proto::governance_client::GovernanceClient;
        use governance_sidecar::proto::{ExecuteWithEvidenceRequest, MutationCall, execute_with_evidence_request::Body};
        let mut client = GovernanceClient::connect(format!("http://{}", sidecar.address)).await.unwrap();
        let body = r#"{"workspace_id": "ws_otel", "principal": {"type": "user", "id": "u"}, "object_type": "invoice", "operation": "create", "payload": {"amount": 250, "currency": "USD"}}"#;
        let mut request = tonic::Request::new(ExecuteWithEvidenceRequest {
            body: Some(Body::RequestJson(body.into())),
            idempotency_key: Some("otel-1".into()),
            mutation: Some(MutationCall { name: "create_invoice".into(), params: None }),
        });
        let traceparent = format!("00-{trace_id}-{caller_span}-01");
        request.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
        client.execute_with_evidence(request).await.unwrap().into_inner()
    });
    let decision = answer.decision.unwrap();

    let (mut call, mut transaction) = (None, None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while call.is_none() || transaction.is_none() {
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        let span = received.recv_timeout(wait).expect("the call's spans did not reach the collector");
        if span["trace_id"] != trace_id {
            continue;
        }
        match span["name"].as_str().unwrap() {
            "ExecuteWithEvidence" => call = Some(span),
            "PostgreSQL transaction" => transaction = Some(span),
            _ => {}
        }
    }
    let (call, transaction) = (call.unwrap(), transaction.unwrap());
    assert_eq!(call["parent_span_id"], caller_span, "the call continues the caller's span: {call}");
    assert_eq!(call["service_name"], "governance-sidecar-under-test");
    assert_eq!(call["kind"], 2, "a server span: {call}");
    let attributes = &call["attributes"];
    assert_eq!(attributes["method"], "ExecuteWithEvidence");
    assert_eq!(attributes["ctx_id"], decision.ctx_id.as_str());
    assert_eq!(attributes["decision"], "approved");
    assert_eq!(attributes["trace_hash"], decision.trace_hash.as_str());
    assert_eq!(transaction["parent_span_id"], call["span_id"], "the transaction is the call's child: {transaction}");
    assert_eq!(transaction["attributes"]["db.system"], "postgresql");
    drop(sidecar);
    let _ = receiver.kill();
    let _ = receiver.wait();
}
