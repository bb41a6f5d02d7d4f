//! `kernite start`: the starter bundle, file for file as Kernite 0.1.6 writes
//! it. A policy for invoices (a currency is required, an amount at most
//! 1000), a request it denies and one it approves, Kernite's guard for
//! Python, and a README. The text files are Kernite's own, kept in
//! `starter/`; the JSON files are written from the policy below.
//!
//! One file is ours, written after Kernite's: `policy.tests.json`, the
//! policy's tests for `policy test --policy policy.json`, so that a starter
//! begins with its policy tested. Kernite's five files stay byte for byte
//! Kernite's (`tests/authoring.rs` checks both).

use crate::decision::Value;
use crate::decision::json::{self, to_indented_string};

/// Kernite's `STARTER_POLICY`.
const POLICY: &str = r#"{
  "policy_key": "invoice_create_guard",
  "policy_version": 1,
  "effect": "allow",
  "rules": [
    {"rule_key": "require_currency",
     "rule_definition": {"type": "required_fields", "fields": ["currency"]},
     "reason_code": "required_currency", "reason_message": "currency is required."},
    {"rule_key": "max_amount",
     "rule_definition": {"type": "max_value", "field": "amount", "max": 1000},
     "reason_code": "amount_over_limit", "reason_message": "amount must be <= 1000."}
  ]
}"#;

/// An execute request for the starter's scope, deciding with its own policy.
fn request(payload: &str) -> String {
    format!(
        r#"{{"workspace_id": "workspace-demo", "principal": {{"type": "token", "id": "api:ops-bot"}},
            "object_type": "invoice", "operation": "create",
            "policy_context": {{"governed": true, "selected_policies": [{POLICY}]}},
            "payload": {payload}}}"#
    )
}

/// Our addition to Kernite's starter: the tests of its policy.
pub const TESTS_FILE: &str = "policy.tests.json";

/// The starter's files, names and contents: Kernite's, in the order Kernite
/// writes them, then [`TESTS_FILE`].
pub fn files() -> Vec<(&'static str, String)> {
    let file = |text: &str| {
        let value: Value = json::parse(text).expect("the starter's JSON is valid");
        to_indented_string(&value) + "\n"
    };
    vec![
        ("policy.json", file(POLICY)),
        ("execute-request.denied.json", file(&request(r#"{"amount": 1200}"#))),
        ("execute-request.approved.json", file(&request(r#"{"amount": 500, "currency": "USD"}"#))),
        ("guard.py", include_str!("starter/guard.py").to_owned()),
        ("README.md", include_str!("starter/README.md").to_owned()),
        (TESTS_FILE, include_str!("starter/policy.tests.json").to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_requests_are_decided_as_its_readme_says() {
        for (name, decision) in
            [("execute-request.denied.json", "denied"), ("execute-request.approved.json", "approved")]
        {
            let answer = crate::decision::execute(json::parse(&file(name)).unwrap(), None).unwrap();
            let crate::decision::Answer::Decided(decided) = answer else { panic!("{name} is invalid") };
            let response = decided.record.to_value();
            let data = response.as_object().unwrap()["data"].as_object().unwrap();
            assert_eq!(data["decision"], Value::str(decision));
        }
    }

    fn file(name: &str) -> String {
        files().into_iter().find(|(file, _)| *file == name).unwrap().1
    }

    #[test]
    fn the_starter_tests_pass_against_its_policy_and_test_its_requests() {
        use crate::policy_tests::policies::Policies;
        use crate::policy_tests::run::{Verdict, run};
        use crate::policy_tests::suite::Suite;

        let suite = Suite::parse(&file(TESTS_FILE)).unwrap();
        let outcomes = run(&suite, &Policies::single(&file("policy.json")).unwrap()).unwrap();
        assert!(outcomes.iter().all(|outcome| outcome.verdict == Verdict::Passed), "{outcomes:?}");
        // Its first two cases are the starter's two requests, without their policy_context.
        for (case, name) in suite.cases.iter().zip(["execute-request.approved.json", "execute-request.denied.json"]) {
            let mut request = json::parse(&file(name)).unwrap();
            request.as_object_mut().unwrap().shift_remove("policy_context");
            assert_eq!(case.request, request, "{}", case.name);
        }
    }
}
