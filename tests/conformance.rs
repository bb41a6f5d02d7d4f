//! Every case of the Kernite 0.1.6 conformance corpus, answered by the engine.
//!
//! The corpus (`../shared/conformance`, or `GOVERNANCE_CONFORMANCE_CORPUS`) was
//! produced by Kernite itself. Status 200: the whole response must be equal and
//! byte-equal as canonical JSON. Status 400: the same, except `ctx_id`, which
//! Kernite draws at random. No skips, no tolerances.

use std::path::PathBuf;

use governance_sidecar::decision::json::{self, Layout};
use governance_sidecar::decision::{Answer, Value, execute};

fn corpus_path() -> PathBuf {
    std::env::var_os("GOVERNANCE_CONFORMANCE_CORPUS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/kernite-0.1.6-execute.jsonl")
    })
}

fn field<'a>(case: &'a Value, key: &str) -> &'a Value {
    Value::or_null(case.as_object().expect("a case is an object").get(key))
}

fn without_ctx_id(mut response: Value) -> Value {
    if let Value::Object(map) = &mut response {
        map.shift_remove("ctx_id");
    }
    response
}

/// Our answer in the corpus's shape: `(status, body)`.
fn answer(request_json: &str, idempotency_key: Option<&str>) -> Result<(i64, Value), String> {
    let body = json::parse(request_json).map_err(|e| format!("request_json does not parse: {e}"))?;
    match execute(body, idempotency_key).map_err(|e| format!("engine refused: {e}"))? {
        Answer::Decided(decided) => {
            // The direct writer and the value tree must write the same text.
            let tree = json::to_string(&decided.record.to_value(), Layout::Response);
            if decided.record.response_json() != tree {
                return Err(format!(
                    "write_response differs from to_value:\n  {}\n  {tree}",
                    decided.record.response_json()
                ));
            }
            Ok((200, decided.record.to_value()))
        }
        Answer::Invalid(invalid) => Ok((400, invalid.to_value("ctx_random"))),
    }
}

#[test]
fn every_conformance_case_matches_kernite() {
    let path = corpus_path();
    let corpus = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut total = 0;
    let mut failures = Vec::new();

    for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
        total += 1;
        let case = json::parse(line).expect("corpus line is JSON");
        let name = field(&case, "name").as_str().unwrap_or("?").to_owned();
        let request_json = field(&case, "request_json").as_str().expect("request_json is text");
        let idempotency_key = field(&case, "idempotency_key").as_str();
        let Value::Int(status) = field(&case, "status") else { panic!("{name}: status is not an integer") };
        let expected = field(&case, "response").clone();

        let (got_status, got) = match answer(request_json, idempotency_key) {
            Ok(answer) => answer,
            Err(error) => {
                failures.push(format!("{name}: {error}"));
                continue;
            }
        };
        let (expected, got) =
            if *status == 400 { (without_ctx_id(expected), without_ctx_id(got)) } else { (expected, got) };
        let expected_bytes = json::to_string(&expected, Layout::Canonical);
        let got_bytes = json::to_string(&got, Layout::Canonical);
        if got_status != *status || got != expected || got_bytes != expected_bytes {
            failures.push(format!(
                "{name}: status {got_status} (want {status})\n  want {expected_bytes}\n  got  {got_bytes}"
            ));
        }
    }

    assert_eq!(total, 2007, "the corpus should hold 2,007 cases");
    assert!(
        failures.is_empty(),
        "{} of {total} cases differ from Kernite:\n{}",
        failures.len(),
        failures.iter().take(15).cloned().collect::<Vec<_>>().join("\n")
    );
    println!("conformance: {total} of {total} cases match Kernite 0.1.6");
}
