//! Deciding each case as the server decides a request: Kernite's validation,
//! then the engine under the policies under test ([`Policies::context_for`],
//! what `serve` resolves from its bundle), then the decision compared with
//! what the case expects.
//!
//! A case the engine cannot decide, because Kernite's validation rejects its
//! request (the server's 400) or Kernite 0.1.6 could not answer it, is
//! malformed, not failed: it tests nothing about the policies.

use std::time::{Duration, Instant};

use super::policies::Policies;
use super::suite::{Case, Expectation, Malformed, Suite, quoted};
use crate::decision::record::PolicyOutcome;
use crate::decision::{self, Decision, DecisionRecord, Unanswerable};

/// How one case went.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub name: String,
    pub verdict: Verdict,
    /// Validating and deciding its request.
    pub elapsed: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed(Failure),
}

/// A case whose decision is not what it expects: the first difference, in
/// the order decision, reason codes, matched policies, and the reason codes
/// Kernite gave, which usually say why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub difference: Difference,
    pub reason_codes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    Decision { expected: Decision, actual: Decision },
    ReasonCodes { expected: Vec<String>, actual: Vec<String> },
    MatchedPolicies { expected: Vec<String>, actual: Vec<String> },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Decision { expected, actual } => {
                write!(f, "decision: expected {}, got {}", quoted(expected.as_str()), quoted(actual.as_str()))
            }
            Difference::ReasonCodes { expected, actual } => {
                write!(f, "reason_codes: expected {}, got {}", list(expected), list(actual))
            }
            Difference::MatchedPolicies { expected, actual } => {
                write!(f, "matched_policies: expected {}, got {}", list(expected), list(actual))
            }
        }
    }
}

/// Strings as a JSON array: `["a", "b"]`.
pub(super) fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| quoted(item)).collect();
    format!("[{}]", quoted.join(", "))
}

/// Decides every case of `suite`: their outcomes, or every malformed case.
pub fn run(suite: &Suite, policies: &Policies) -> Result<Vec<Outcome>, Vec<Malformed>> {
    let mut outcomes = Vec::with_capacity(suite.cases.len());
    let mut malformed = Vec::new();
    for case in &suite.cases {
        let started = Instant::now();
        match decide(case, policies) {
            Ok(record) => outcomes.push(Outcome {
                name: case.name.clone(),
                verdict: verdict(&case.expect, &record),
                elapsed: started.elapsed(),
            }),
            Err(errors) => malformed.extend(errors),
        }
    }
    if malformed.is_empty() { Ok(outcomes) } else { Err(malformed) }
}

/// Kernite's decision on the case's request under the policies under test.
fn decide(case: &Case, policies: &Policies) -> Result<DecisionRecord, Vec<Malformed>> {
    let malformed =
        |field: String, message: String| Malformed { case: Some(case.label()), field: Some(field), message };
    let cannot_decide = |error: Unanswerable| {
        vec![malformed(error.field, format!("Kernite 0.1.6 cannot decide this request: {}", error.reason))]
    };
    let validation = match decision::validate(case.request.clone(), None) {
        Ok(Ok(validation)) => validation,
        Ok(Err(invalid)) => {
            return Err(invalid
                .errors
                .into_iter()
                .map(|error| {
                    let field =
                        if error.field == "body" { "request".to_owned() } else { format!("request.{}", error.field) };
                    malformed(
                        field,
                        format!("Kernite's validation rejects it ({}): {}", error.code.as_str(), error.message),
                    )
                })
                .collect());
        }
        // Kernite could not read the request: the field is the request's.
        Err(error) => return Err(cannot_decide(Unanswerable::new(format!("request.{}", error.field), error.reason))),
    };
    decision::evaluate_under(&validation.request, policies.context_for(&validation.request)).map_err(cannot_decide)
}

/// Whether `record` is what `expect` says, and if not, the first difference.
fn verdict(expect: &Expectation, record: &DecisionRecord) -> Verdict {
    let reason_codes: Vec<String> = record.reason_codes.iter().map(ToString::to_string).collect();
    let mut sorted_codes = reason_codes.clone();
    sorted_codes.sort_unstable();
    let difference = if expect.decision != record.decision {
        Some(Difference::Decision { expected: expect.decision, actual: record.decision })
    } else if let Some(expected) = expect.reason_codes.as_ref().filter(|&expected| *expected != sorted_codes) {
        Some(Difference::ReasonCodes { expected: expected.clone(), actual: sorted_codes })
    } else {
        let matched = matched_policies(record);
        expect
            .matched_policies
            .as_ref()
            .filter(|&expected| *expected != matched)
            .map(|expected| Difference::MatchedPolicies { expected: expected.clone(), actual: matched })
    };
    match difference {
        None => Verdict::Passed,
        Some(difference) => Verdict::Failed(Failure { difference, reason_codes }),
    }
}

/// The keys of the policies that applied to the request, sorted: Kernite's
/// `matched_policies` entries that approved or denied it. An entry
/// `not_applicable` (its conditions did not hold) did not match.
fn matched_policies(record: &DecisionRecord) -> Vec<String> {
    let mut keys: Vec<String> = record
        .matched_policies
        .iter()
        .filter(|policy| policy.outcome != PolicyOutcome::NotApplicable)
        .map(|policy| policy.policy_key.to_string())
        .collect();
    keys.sort_unstable();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy_tests::suite::SCHEMA_VERSION;

    /// A policy for invoices in USD up to 1000, and another that applies to EUR only.
    const BUNDLE: &str = r#"{
      "schema_version": "kernite.policy.bundle.v1",
      "policies": [
        {"policy_key": "invoice_limit", "effect": "allow",
         "rules": [{"rule_key": "max", "rule_definition": {"type": "max_value", "field": "amount", "max": 1000},
                    "reason_code": "amount_over_limit"}]},
        {"policy_key": "euro_only", "effect": "allow", "conditions": [{"left": "payload.currency", "op": "eq", "right": "EUR"}],
         "rules": [{"rule_key": "min", "rule_definition": {"type": "required_fields", "fields": ["vat_id"]}}]}
      ],
      "operation_map": [
        {"object_type": "invoice", "operation": "create", "policy_key": "invoice_limit"},
        {"object_type": "invoice", "operation": "create", "policy_key": "euro_only"}
      ]
    }"#;

    fn outcomes(cases: &str) -> Result<Vec<Outcome>, Vec<String>> {
        let text = format!(
            r#"{{"schema_version": "{SCHEMA_VERSION}", "fixtures": {{"invoice": {{"workspace_id": "acme",
                "principal": {{"type": "user", "id": "u1"}}, "object_type": "invoice", "operation": "create",
                "payload": {{"amount": 100, "currency": "USD"}}}}}}, "cases": [{cases}]}}"#
        );
        let policies = Policies::bundle(BUNDLE.as_bytes()).unwrap();
        run(&Suite::parse(&text).unwrap(), &policies).map_err(|all| all.iter().map(ToString::to_string).collect())
    }

    fn verdicts(cases: &str) -> Vec<Verdict> {
        outcomes(cases).unwrap().into_iter().map(|outcome| outcome.verdict).collect()
    }

    #[test]
    fn a_case_passes_when_the_decision_is_what_it_expects() {
        let verdicts = verdicts(
            r#"{"name": "small", "fixture": "invoice",
                "expect": {"decision": "approved", "reason_codes": [], "matched_policies": ["invoice_limit"]}},
               {"name": "large", "fixture": "invoice", "patch": {"payload": {"amount": 5000}},
                "expect": {"decision": "denied", "reason_codes": ["amount_over_limit"]}},
               {"name": "out of scope", "fixture": "invoice", "patch": {"operation": "delete"},
                "expect": {"decision": "approved", "reason_codes": ["out_of_scope_phase1"], "matched_policies": []}}"#,
        );
        assert_eq!(verdicts, [Verdict::Passed, Verdict::Passed, Verdict::Passed]);
    }

    #[test]
    fn a_failure_reports_the_first_difference_and_kernites_reason_codes() {
        let verdicts = verdicts(
            r#"{"name": "wrong decision and codes", "fixture": "invoice", "patch": {"payload": {"amount": 5000}},
                "expect": {"decision": "approved", "reason_codes": ["nothing"]}},
               {"name": "wrong codes", "fixture": "invoice", "patch": {"payload": {"amount": 5000}},
                "expect": {"decision": "denied", "reason_codes": ["nothing"], "matched_policies": []}},
               {"name": "wrong policies", "fixture": "invoice",
                "expect": {"decision": "approved", "matched_policies": ["euro_only", "invoice_limit"]}}"#,
        );
        let codes = vec!["amount_over_limit".to_owned()];
        assert_eq!(
            verdicts,
            [
                Verdict::Failed(Failure {
                    difference: Difference::Decision { expected: Decision::Approved, actual: Decision::Denied },
                    reason_codes: codes.clone(),
                }),
                Verdict::Failed(Failure {
                    difference: Difference::ReasonCodes { expected: vec!["nothing".into()], actual: codes.clone() },
                    reason_codes: codes,
                }),
                Verdict::Failed(Failure {
                    difference: Difference::MatchedPolicies {
                        expected: vec!["euro_only".into(), "invoice_limit".into()],
                        actual: vec!["invoice_limit".into()],
                    },
                    reason_codes: vec![],
                }),
            ]
        );
        let Verdict::Failed(failure) = &verdicts[0] else { unreachable!() };
        assert_eq!(failure.difference.to_string(), r#"decision: expected "approved", got "denied""#);
    }

    #[test]
    fn a_policy_whose_conditions_hold_is_matched() {
        let verdicts = verdicts(
            r#"{"name": "euro", "fixture": "invoice", "patch": {"payload": {"currency": "EUR", "vat_id": "x"}},
                "expect": {"decision": "approved", "matched_policies": ["euro_only", "invoice_limit"]}}"#,
        );
        assert_eq!(verdicts, [Verdict::Passed]);
    }

    #[test]
    fn a_request_kernite_rejects_is_malformed_naming_each_field() {
        let refused = outcomes(
            r#"{"name": "fine", "fixture": "invoice", "expect": {"decision": "approved"}},
               {"name": "no payload", "fixture": "invoice", "patch": {"payload": 7, "workspace_id": null},
                "expect": {"decision": "approved"}}"#,
        )
        .unwrap_err();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(
            refused[0].starts_with(r#"cases[1] "no payload": request.workspace_id: Kernite's validation rejects it"#)
        );
        assert!(refused[1].starts_with(r#"cases[1] "no payload": request.payload: Kernite's validation rejects it"#));
    }
}
