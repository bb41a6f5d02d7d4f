//! `kernite start`: the starter bundle, file for file as Kernite 0.1.6 writes
//! it. A policy for invoices (a currency is required, an amount at most
//! 1000), a request it denies and one it approves, Kernite's guard for
//! Python, and a README. The text files are Kernite's own, kept in
//! `starter/`; the JSON files are written from the policy below.

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

/// The starter's files, names and contents, in the order Kernite writes them.
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
            let text = &files().into_iter().find(|(file, _)| *file == name).unwrap().1;
            let answer = crate::decision::execute(json::parse(text).unwrap(), None).unwrap();
            let crate::decision::Answer::Decided(decided) = answer else { panic!("{name} is invalid") };
            let response = decided.record.to_value();
            let data = response.as_object().unwrap()["data"].as_object().unwrap();
            assert_eq!(data["decision"], Value::str(decision));
        }
    }
}
