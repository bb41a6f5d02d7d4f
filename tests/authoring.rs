//! Kernite's authoring tools (`policy generate`, `check`, `start`), compared
//! byte for byte with Kernite 0.1.6 itself: over the HTTP routes of the real
//! server and on the command line of the real binary, for every case of the
//! corpus in `tests/authoring/` (made by `make_corpus.py` from real-world
//! OpenAPI documents and hand-made edge cases). One difference is ours, on
//! purpose: `start` also writes `policy.tests.json` ([`take_our_starter_tests`]).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestServer;
use common::http::post_json;
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::authoring::starter;
use governance_sidecar::config::ServerSettings;
use governance_sidecar::decision::Value;
use governance_sidecar::decision::json;

fn corpus_file(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/authoring").join(name);
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap()).read_to_string(&mut text).unwrap();
    text.lines().map(|line| json::parse(line).expect("a corpus line is JSON")).collect()
}

fn field<'v>(value: &'v Value, key: &str) -> &'v Value {
    Value::or_null(value.as_object().and_then(|map| map.get(key)))
}

fn text<'v>(value: &'v Value, key: &str) -> &'v str {
    field(value, key).as_str().unwrap_or_else(|| panic!("`{key}` is a string"))
}

/// The corpus's cases; `documents` by name for the CLI's input files.
fn cases() -> Vec<Value> {
    let cases = corpus_file("cases.jsonl.gz");
    assert!(cases.len() > 1000, "the corpus has {} cases", cases.len());
    cases
}

/// Where two texts first differ, with some context, for the failure message.
fn first_difference(expected: &str, actual: &str) -> String {
    let at = expected.bytes().zip(actual.bytes()).position(|(a, b)| a != b).unwrap_or(expected.len().min(actual.len()));
    let around = |s: &str| {
        let start = s.floor_char_boundary(at.saturating_sub(120));
        let end = s.ceil_char_boundary((at + 120).min(s.len()));
        s[start..end].to_owned()
    };
    format!("at byte {at}:\n  Kernite: {}\n  ours:    {}", around(expected), around(actual))
}

/// The response with its `ctx_id` masked as the corpus masks it, once it
/// is checked to be one (`ctx_` and 12 hex digits), never answered before,
/// and the one in the `x-ctx-id` header.
fn masked(body: &str, header: Option<&str>, seen: &mut HashSet<String>) -> String {
    const PREFIX: &str = "{\"ctx_id\": \"ctx_";
    let Some(rest) = body.strip_prefix(PREFIX) else { return body.to_owned() };
    let id = &rest[..12.min(rest.len())];
    assert!(id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()), "a ctx_id: {body:.60}");
    assert!(seen.insert(id.to_owned()), "ctx_id {id} answered twice");
    assert_eq!(header, Some(format!("ctx_{id}").as_str()), "x-ctx-id");
    format!("{PREFIX}************{}", &rest[12..])
}

fn report(what: &str, compared: usize, failures: &[String]) {
    eprintln!("{what}: {compared} cases compared, {} differ", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {compared} differ; the first:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n\n")
    );
}

#[tokio::test]
async fn every_case_posted_to_the_authoring_routes_gets_kernites_status_headers_and_bytes() {
    let server = TestServer::start(ServerSettings::default(), GovernanceApi::new()).await;
    let (mut compared, mut failures, mut ctx_ids) = (0, Vec::new(), HashSet::new());
    for case in cases() {
        let http = field(&case, "http");
        if http.is_null() || field(http, "status").is_null() {
            continue; // a CLI-only case, or one Kernite crashed on
        }
        compared += 1;
        let response = post_json(server.address, text(http, "route"), None, text(http, "body")).await;
        let name = text(&case, "name");
        let expected_status = match field(http, "status") {
            Value::Int(status) => *status as u16,
            other => panic!("{name}: status {other:?}"),
        };
        if response.status != expected_status {
            failures.push(format!(
                "{name}: status {} instead of {expected_status}: {:.300}",
                response.status, response.body
            ));
            continue;
        }
        if response.header("content-type") != Some(text(http, "content_type")) {
            failures.push(format!("{name}: content-type {:?}", response.header("content-type")));
        }
        let body = masked(&response.body, response.header("x-ctx-id"), &mut ctx_ids);
        if body != text(http, "response") {
            failures.push(format!("{name}: {}", first_difference(text(http, "response"), &body)));
        }
    }
    report("HTTP", compared, &failures);
}

/// Runs one CLI case in a fresh directory: its differences from Kernite.
fn run_cli_case(name: &str, cli: &Value, directory: &Path) -> Vec<String> {
    let mut differences = Vec::new();
    for (file, content) in field(cli, "files_in").as_object().into_iter().flat_map(|m| m.iter()) {
        let path = directory.join(file.as_str());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content.as_str().unwrap()).unwrap();
    }
    let arguments: Vec<&str> = field(cli, "args").as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let output = Command::new(env!("CARGO_BIN_EXE_governance-sidecar"))
        .args(&arguments)
        .current_dir(directory)
        .output()
        .unwrap();
    let exit = output.status.code().unwrap_or(-1);
    let expected_exit = match field(cli, "exit") {
        Value::Int(code) => *code as i32,
        other => panic!("{name}: exit {other:?}"),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if matches!(field(cli, "crash"), Value::Bool(true)) {
        // Kernite crashed (deep recursion, an unencodable string): no
        // contract to meet but a clean refusal.
        if exit == 0 {
            differences.push(format!("{name}: Kernite crashed, we exited 0"));
        }
        return differences;
    }
    if exit != expected_exit {
        differences.push(format!("{name}: exit {exit} instead of {expected_exit} ({stderr:.300})"));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    if text(cli, "stdout").starts_with("usage: kernite") {
        // Help names its program and lists its commands: ours are not Kernite's.
        if !stdout.contains("Usage: governance-sidecar") {
            differences.push(format!("{name}: no help printed: {stdout:.200}"));
        }
        return differences;
    }
    if stdout != text(cli, "stdout") {
        differences.push(format!("{name}: stdout {}", first_difference(text(cli, "stdout"), &stdout)));
    }
    // Files written, or rewritten with other contents.
    let inputs = field(cli, "files_in").as_object();
    let mut written = BTreeMap::new();
    let mut directories = Vec::new();
    collect_files(directory, directory, &mut written, &mut directories);
    written.retain(|path, content| inputs.and_then(|m| m.get(path)).and_then(Value::as_str) != Some(content));
    let expected: BTreeMap<String, String> = field(cli, "files_out")
        .as_object()
        .into_iter()
        .flat_map(|m| m.iter())
        .map(|(path, content)| (path.to_string(), content.as_str().unwrap().to_owned()))
        .collect();
    differences.extend(take_our_starter_tests(name, &arguments, &expected, &mut written));
    if written.keys().ne(expected.keys()) {
        differences.push(format!("{name}: wrote {:?} instead of {:?}", written.keys(), expected.keys()));
    }
    let input_directories: HashSet<String> = inputs
        .into_iter()
        .flat_map(|m| m.keys())
        .flat_map(|path| {
            Path::new(path.as_str()).ancestors().skip(1).map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>()
        })
        .collect();
    directories.retain(|d| !input_directories.contains(d));
    directories.sort();
    let mut expected_directories: Vec<String> = field(cli, "dirs_out")
        .as_sequence()
        .unwrap_or_default()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    expected_directories.sort();
    if directories != expected_directories {
        differences.push(format!("{name}: made directories {directories:?} instead of {expected_directories:?}"));
    }
    for (path, content) in &expected {
        if let Some(ours) = written.get(path)
            && ours != content
        {
            differences.push(format!("{name}: {path} {}", first_difference(content, ours)));
        }
    }
    differences
}

/// Our one deliberate addition to Kernite's files: `start` (and `scaffold`)
/// also writes the starter policy's tests, `policy.tests.json`, beside
/// Kernite's `policy.json`. Each must be there, as `starter::files` has it;
/// it is then taken out of what was written, so that every other file is
/// compared with Kernite's, byte for byte, and no other extra file passes.
fn take_our_starter_tests(
    name: &str,
    arguments: &[&str],
    expected: &BTreeMap<String, String>,
    written: &mut BTreeMap<String, String>,
) -> Vec<String> {
    if !matches!(arguments.first(), Some(&("start" | "scaffold"))) {
        return Vec::new();
    }
    let ours = starter::files().into_iter().find(|(file, _)| *file == starter::TESTS_FILE).unwrap().1;
    let mut differences = Vec::new();
    for policy in expected.keys().filter(|path| Path::new(path).file_name().is_some_and(|f| f == "policy.json")) {
        let tests = Path::new(policy).with_file_name(starter::TESTS_FILE).to_string_lossy().into_owned();
        match written.remove(&tests) {
            Some(content) if content == ours => {}
            Some(_) => differences.push(format!("{name}: {tests} is not the starter's tests")),
            None => differences.push(format!("{name}: {tests} was not written beside {policy}")),
        }
    }
    differences
}

/// Every file under `directory` with its text, and every directory, relative to `root`.
fn collect_files(root: &Path, directory: &Path, files: &mut BTreeMap<String, String>, directories: &mut Vec<String>) {
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            directories.push(relative);
            collect_files(root, &path, files, directories);
        } else {
            files.insert(relative, String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned());
        }
    }
}

#[test]
fn every_case_run_on_the_command_line_prints_writes_and_exits_as_kernite_does() {
    let cases: Vec<Value> = cases().into_iter().filter(|case| !field(case, "cli").is_null()).collect();
    let scratch = common::scratch("authoring-cli");
    // Two at a time: each case is a process of its own.
    let halves: Vec<Vec<String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|worker| {
                let (cases, scratch) = (&cases, &scratch);
                scope.spawn(move || {
                    let mut differences = Vec::new();
                    for (i, case) in cases.iter().enumerate().skip(worker).step_by(2) {
                        let directory: PathBuf = scratch.join(format!("case-{i}"));
                        std::fs::create_dir_all(&directory).unwrap();
                        differences.extend(run_cli_case(text(case, "name"), field(case, "cli"), &directory));
                        std::fs::remove_dir_all(&directory).unwrap();
                    }
                    differences
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let failures: Vec<String> = halves.into_iter().flatten().collect();
    report("CLI", cases.len(), &failures);
}

/// A server whose requests may be 64 KiB and documents 256 KiB.
async fn small_limits() -> TestServer {
    let mut settings = ServerSettings::default();
    settings.limits.max_message_bytes = 64 * 1024;
    settings.limits.max_document_bytes = 256 * 1024;
    TestServer::start(settings, GovernanceApi::new()).await
}

/// An OpenAPI document of about `bytes` bytes: one write operation and a long description.
fn document_of(bytes: usize) -> String {
    let description = "x".repeat(bytes);
    format!(
        r#"{{"openapi": {{"openapi": "3.0.3", "info": {{"description": "{description}"}}, "paths": {{"/invoices": {{"post": {{}}}}}}}}}}"#
    )
}

#[tokio::test]
async fn a_document_is_read_up_to_its_own_limit_and_refused_beyond_it() {
    let server = small_limits().await;
    let answer = post_json(server.address, "/policy/generate", None, &document_of(200 * 1024)).await;
    assert_eq!(answer.status, 200, "{:.300}", answer.body);
    let answer = post_json(server.address, "/v1/policy/check", None, &document_of(300 * 1024)).await;
    assert_eq!(answer.status, 413, "{:.300}", answer.body);
    // A decision request keeps the request limit.
    let answer = post_json(server.address, "/v1/execute", None, &document_of(200 * 1024)).await;
    assert_eq!(answer.status, 413, "{:.300}", answer.body);
}

#[tokio::test]
async fn references_that_fan_out_are_refused_and_the_sidecar_answers_on() {
    let server = small_limits().await;
    // Each schema refers to the next twice: 2^40 values once resolved, as Kernite would copy them.
    let schemas: Vec<String> = (0..40)
        .map(|i| format!(r##""s{i}": {{"type": "object", "properties": {{"a": {{"$ref": "#/components/schemas/s{n}"}}, "b": {{"$ref": "#/components/schemas/s{n}"}}}}}}"##, n = i + 1))
        .collect();
    let body = format!(
        r##"{{"openapi": {{"openapi": "3.0.3", "paths": {{"/invoices": {{"post": {{"requestBody": {{"content": {{"application/json": {{"schema": {{"$ref": "#/components/schemas/s0"}}}}}}}}}}}}}}, "components": {{"schemas": {{{}, "s40": {{}}}}}}}}}}"##,
        schemas.join(", ")
    );
    let started = std::time::Instant::now();
    let answer = post_json(server.address, "/policy/generate", None, &body).await;
    assert_eq!(answer.status, 400, "{:.300}", answer.body);
    assert!(answer.body.contains("Resolving $ref produces more than 2000000 values"), "{:.300}", answer.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
    let answer = post_json(server.address, "/policy/generate", None, &document_of(10)).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn nesting_as_deep_as_python_reads_is_answered_and_deeper_is_refused() {
    let server = TestServer::start(ServerSettings::default(), GovernanceApi::new()).await;
    let nested = |depth: usize| {
        let value = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        format!(r#"{{"openapi": {{"openapi": "3.0.3", "x-deep": {value}, "paths": {{}}}}}}"#)
    };
    // The body itself and the document are two levels: 988 more reach 990.
    let answer = post_json(server.address, "/policy/generate", None, &nested(988)).await;
    assert_eq!(answer.status, 200, "{:.300}", answer.body);
    let answer = post_json(server.address, "/policy/check", None, &nested(100_000)).await;
    assert_eq!((answer.status, answer.body.as_str()), (400, r#"{"message": "Invalid JSON payload"}"#));
}
