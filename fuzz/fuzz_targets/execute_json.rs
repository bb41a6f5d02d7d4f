//! Any bytes as a Kernite request body: parse, validate, decide, and write
//! the answer. Nothing may panic; canonical JSON must re-parse to itself; and
//! the fast writers (the response and the hashed policies, written straight
//! from the decision) must agree byte for byte with the value-tree writers.
#![no_main]

use governance_sidecar::decision::json::{self, Layout};
use governance_sidecar::decision::{self, Answer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: whether an idempotency key is sent; the key is the next line.
    let Some((&flag, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let (key, body) = match (flag & 1, text.split_once('\n')) {
        (1, Some((key, body))) => (Some(key), body),
        _ => (None, text),
    };
    let Ok(value) = json::parse(body) else { return };
    let canonical = json::to_string(&value, Layout::Canonical);
    let reparsed = json::parse(&canonical).expect("canonical JSON parses");
    assert_eq!(json::to_string(&reparsed, Layout::Canonical), canonical, "canonical JSON is stable");

    match decision::execute(value, key) {
        Ok(Answer::Decided(decided)) => {
            let direct = decided.record.response_json();
            let through_tree = json::to_string(&decided.record.to_value(), Layout::Response);
            assert_eq!(direct, through_tree, "the direct writer agrees with the value tree");
            if let Err(error) = json::parse(&direct) {
                // Python's JSON, as Kernite writes it: NaN and Infinity tokens included.
                assert!(error.to_string().contains("NaN and Infinity"), "the response is not JSON: {error}");
            }
            // The trace pre-image's policies, written directly, equal the tree's canonical form.
            for policy in &decided.record.matched_policies {
                let mut direct = String::new();
                policy.write_canonical(&mut direct);
                assert_eq!(direct, json::to_string(&policy.to_value(true), Layout::Canonical));
            }
        }
        Ok(Answer::Invalid(invalid)) => {
            let body = json::to_string(&invalid.to_value("ctx_fuzz"), Layout::Response);
            json::parse(&body).expect("the 400 body is JSON");
        }
        Err(_unanswerable) => {}
    }
});
