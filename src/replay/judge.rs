//! One recorded row against the candidate: its class, and the candidate's
//! decision where there is one. Pure: no I/O, no clock.

use std::collections::HashMap;

use crate::decision::json::{Dialect, parse_as};
use crate::decision::record::PolicyOutcome;
use crate::decision::{self, DecisionRecord, NormalizedRequest, Reads, Text};
use crate::policies::PolicyBundle;
use crate::vocabulary::{Decision, Mode, RecordedDecision};

use super::selection::RecordedRow;

/// What became of a row under the candidate. The first three compare; the
/// rest say why a row was not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// The write would fare as it did: allowed, or blocked.
    Unchanged,
    /// Allowed then, blocked under the candidate: an approval lost.
    ApprovedToDenied,
    /// Blocked then, allowed under the candidate: a denial lost.
    DeniedToApproved,
    /// The stored request was masked where the candidate reads.
    Undecidable,
    /// Decided by the caller's own `policy_context`, not a bundle.
    CallerPolicy,
    /// Recorded in observe or skip mode: the decision gated nothing.
    NotEnforced,
    /// No request kept: written before requests were recorded (migration
    /// 11), or larger than the operator keeps.
    Unrecorded,
    /// The candidate does not govern the row's scope: the sidecar would
    /// refuse its mutation unless marked `ungoverned`.
    Ungoverned,
    /// Kernite 0.1.6 could not decide the request under the candidate.
    Unanswerable,
}

impl Class {
    pub const ALL: [Class; 9] = [
        Class::Unchanged,
        Class::ApprovedToDenied,
        Class::DeniedToApproved,
        Class::Undecidable,
        Class::CallerPolicy,
        Class::NotEnforced,
        Class::Unrecorded,
        Class::Ungoverned,
        Class::Unanswerable,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Class::Unchanged => "unchanged",
            Class::ApprovedToDenied => "approved_to_denied",
            Class::DeniedToApproved => "denied_to_approved",
            Class::Undecidable => "undecidable",
            Class::CallerPolicy => "caller_policy",
            Class::NotEnforced => "not_enforced",
            Class::Unrecorded => "unrecorded",
            Class::Ungoverned => "ungoverned",
            Class::Unanswerable => "unanswerable",
        }
    }

    pub const fn is_flip(self) -> bool {
        matches!(self, Class::ApprovedToDenied | Class::DeniedToApproved)
    }
}

/// The candidate's decision on a row.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDecision {
    /// `skipped` when the candidate's mode for the scope is skip.
    pub decision: RecordedDecision,
    pub mode: Mode,
    pub reason_codes: Vec<Text>,
    /// What decided it: `policy/rule (reason code)` for each reason of a
    /// denial, the approving policies' keys for an approval, or the
    /// selection's reason code (`out_of_scope_phase1`, …) when no policy applied.
    pub decided_by: Vec<String>,
    pub trace_hash: String,
}

/// A row's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub class: Class,
    pub new: Option<NewDecision>,
    /// Why a row was not compared: the masked path read, or what Kernite cannot answer.
    pub detail: Option<String>,
    /// Unchanged, but for other reasons.
    pub reasons_changed: bool,
    /// Replayed under the very bundle that decided it, unmasked: whether its
    /// decision and trace_hash came out exactly as recorded. `None` otherwise.
    pub reproduced: Option<bool>,
}

impl Verdict {
    fn only(class: Class, detail: Option<String>) -> Verdict {
        Verdict { class, new: None, detail, reasons_changed: false, reproduced: None }
    }
}

/// Judges rows under one candidate bundle, remembering per scope what its
/// policies read (worked out once per scope, not per row).
pub struct Judge {
    candidate: std::sync::Arc<PolicyBundle>,
    reads: HashMap<(Text, Text), Result<Reads, String>>,
}

impl Judge {
    pub fn new(candidate: std::sync::Arc<PolicyBundle>) -> Judge {
        Judge { candidate, reads: HashMap::new() }
    }

    pub fn candidate(&self) -> &PolicyBundle {
        &self.candidate
    }

    pub fn judge(&mut self, row: &RecordedRow) -> Verdict {
        let Some(stored) = &row.request_json else {
            let why = "no request kept: written before migration 11, or larger than --max-recorded-request-bytes";
            return Verdict::only(Class::Unrecorded, Some(why.to_owned()));
        };
        if row.mode != Mode::Enforce {
            return Verdict::only(Class::NotEnforced, Some(format!("recorded in {} mode", row.mode)));
        }
        if row.policy_bundle_sha256.is_none() {
            return Verdict::only(Class::CallerPolicy, None);
        }
        let request =
            match parse_as(stored, Dialect::Python).map_err(|e| e.to_string()).and_then(NormalizedRequest::from_stored)
            {
                Ok(request) => request,
                Err(why) => return Verdict::only(Class::Unanswerable, Some(format!("the stored request: {why}"))),
            };
        let Judge { candidate, reads: reads_of_scope } = self;
        let resolution = candidate.resolve(&request.object_type, &request.operation);
        let Some(mode) = resolution.mode else {
            let scope = format!("the candidate does not govern {}/{}", request.object_type, request.operation);
            return Verdict::only(Class::Ungoverned, Some(scope));
        };
        if !row.request_redacted_paths.is_empty() {
            let scope = (request.object_type.clone(), request.operation.clone());
            let reads =
                reads_of_scope.entry(scope).or_insert_with(|| Reads::of(resolution.context).map_err(|e| e.to_string()));
            match reads {
                Err(why) => return Verdict::only(Class::Unanswerable, Some(why.clone())),
                Ok(reads) => {
                    if let Some(path) = reads.first_overlap(&row.request_redacted_paths) {
                        let detail = format!("{path} was masked when stored, and the candidate reads it");
                        return Verdict::only(Class::Undecidable, Some(detail));
                    }
                }
            }
        }
        let new = if mode == Mode::Skip {
            NewDecision {
                decision: RecordedDecision::Skipped,
                mode,
                reason_codes: Vec::new(),
                decided_by: vec!["mode skip".to_owned()],
                trace_hash: String::new(),
            }
        } else {
            match decision::evaluate_under(&request, resolution.context) {
                Ok(record) => new_decision(&record, mode),
                Err(unanswerable) => return Verdict::only(Class::Unanswerable, Some(unanswerable.to_string())),
            }
        };
        compare(row, new, &candidate.sha256)
    }
}

/// The classes of an enforced row with a new decision.
fn compare(row: &RecordedRow, new: NewDecision, candidate_sha256: &str) -> Verdict {
    let was_allowed = row.decision == RecordedDecision::Approved;
    let is_allowed = new.mode != Mode::Enforce || new.decision == RecordedDecision::Approved;
    let class = match (was_allowed, is_allowed) {
        (true, false) => Class::ApprovedToDenied,
        (false, true) => Class::DeniedToApproved,
        _ => Class::Unchanged,
    };
    let reasons_changed = class == Class::Unchanged && sorted(&row.reason_codes) != sorted(&new.reason_codes);
    let same_bundle = row.policy_bundle_sha256.as_deref() == Some(candidate_sha256);
    let reproduced = (same_bundle && row.request_redacted_paths.is_empty())
        .then(|| new.decision == row.decision && new.trace_hash == row.trace_hash);
    Verdict { class, new: Some(new), detail: None, reasons_changed, reproduced }
}

fn sorted<S: AsRef<str>>(codes: &[S]) -> Vec<&str> {
    let mut codes: Vec<&str> = codes.iter().map(AsRef::as_ref).collect();
    codes.sort_unstable();
    codes
}

fn new_decision(record: &DecisionRecord, mode: Mode) -> NewDecision {
    let decided_by = match record.decision {
        Decision::Denied => record
            .reasons
            .iter()
            .map(|reason| {
                let policy = reason.details.get("policy_key").and_then(|v| v.as_str());
                let rule = reason.rule_key.as_str();
                match (policy, rule) {
                    (Some(policy), Some(rule)) => format!("{policy}/{rule} ({})", reason.code),
                    (Some(policy), None) => format!("{policy} ({})", reason.code),
                    (None, Some(rule)) => format!("{rule} ({})", reason.code),
                    (None, None) => reason.code.to_string(),
                }
            })
            .collect(),
        Decision::Approved => {
            let approving: Vec<String> = record
                .matched_policies
                .iter()
                .filter(|policy| policy.outcome == PolicyOutcome::Approved)
                .map(|policy| policy.policy_key.to_string())
                .collect();
            if approving.is_empty() { vec![record.policy_selection_reason_code.to_string()] } else { approving }
        }
    };
    NewDecision {
        decision: RecordedDecision::from(Some(record.decision)),
        mode,
        reason_codes: record.reason_codes.clone(),
        decided_by,
        trace_hash: record.trace_hash.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// The invoice bundle with its limit at `max`, its scope in `mode`.
    fn candidate(max: u32, mode: &str) -> Judge {
        let bundle = format!(
            r#"{{"schema_version": "kernite.policy.bundle.v1",
                "policies": [{{"policy_key": "invoice_create", "effect": "allow", "rules": [
                    {{"rule_key": "max_amount", "rule_definition": {{"type": "max_value", "field": "amount", "max": {max}}}}}]}}],
                "operation_map": [{{"object_type": "invoice", "operation": "create", "policy_key": "invoice_create",
                                    "mode": "{mode}"}}]}}"#
        );
        Judge::new(Arc::new(PolicyBundle::parse(bundle.as_bytes()).unwrap()))
    }

    /// A row recorded in enforce mode under another bundle.
    fn row(amount: u32, decision: RecordedDecision, reason_codes: &[&str]) -> RecordedRow {
        let body = format!(
            r#"{{"workspace_id": "w", "principal": {{"type": "user", "id": "u"}}, "object_type": "invoice",
                "operation": "create", "payload": {{"amount": {amount}}}}}"#
        );
        let request = decision::validate(decision::json::parse(&body).unwrap(), None).unwrap().unwrap().request;
        RecordedRow {
            id: 1,
            created_at_micros: 0,
            workspace_id: "w".into(),
            object_type: "invoice".into(),
            operation: "create".into(),
            decision,
            mode: Mode::Enforce,
            reason_codes: reason_codes.iter().map(|c| c.to_string()).collect(),
            trace_hash: String::new(),
            policy_bundle_sha256: Some("sha256:recorded".into()),
            request_json: Some(request.to_canonical_json()),
            request_redacted_paths: Vec::new(),
        }
    }

    #[test]
    fn a_flip_is_named_by_what_happens_to_the_write_and_what_decided_it() {
        let verdict = candidate(100, "enforce").judge(&row(500, RecordedDecision::Approved, &[]));
        assert_eq!(verdict.class, Class::ApprovedToDenied);
        let new = verdict.new.unwrap();
        assert_eq!(new.decided_by, ["invoice_create/max_amount (max_amount_denied)"]);
        assert_eq!(verdict.reproduced, None, "another bundle decided it");
        let verdict = candidate(1000, "enforce").judge(&row(500, RecordedDecision::Denied, &["max_amount_denied"]));
        assert_eq!(
            (verdict.class, verdict.new.unwrap().decided_by),
            (Class::DeniedToApproved, vec!["invoice_create".into()])
        );
    }

    #[test]
    fn a_candidate_that_stops_enforcing_lets_a_denied_write_through() {
        for mode in ["observe", "skip"] {
            let verdict = candidate(100, mode).judge(&row(500, RecordedDecision::Denied, &["max_amount_denied"]));
            assert_eq!(verdict.class, Class::DeniedToApproved, "{mode}");
        }
        let skipped = candidate(100, "skip").judge(&row(500, RecordedDecision::Denied, &["x"])).new.unwrap();
        assert_eq!((skipped.decision, skipped.mode), (RecordedDecision::Skipped, Mode::Skip));
    }

    #[test]
    fn the_same_outcome_for_other_reasons_is_unchanged_but_counted() {
        let verdict = candidate(100, "enforce").judge(&row(500, RecordedDecision::Denied, &["currency_denied"]));
        assert_eq!((verdict.class, verdict.reasons_changed), (Class::Unchanged, true));
        let verdict = candidate(100, "enforce").judge(&row(500, RecordedDecision::Denied, &["max_amount_denied"]));
        assert_eq!((verdict.class, verdict.reasons_changed), (Class::Unchanged, false));
    }

    #[test]
    fn rows_that_cannot_be_compared_are_set_aside_before_anything_is_decided() {
        let mut judge = candidate(100, "enforce");
        let mut unrecorded = row(500, RecordedDecision::Approved, &[]);
        unrecorded.request_json = None;
        assert_eq!(judge.judge(&unrecorded).class, Class::Unrecorded);
        let mut observed = row(500, RecordedDecision::Approved, &[]);
        observed.mode = Mode::Observe;
        assert_eq!(judge.judge(&observed).class, Class::NotEnforced);
        let mut own_policies = row(500, RecordedDecision::Approved, &[]);
        own_policies.policy_bundle_sha256 = None;
        assert_eq!(judge.judge(&own_policies).class, Class::CallerPolicy);
        let mut elsewhere = row(500, RecordedDecision::Approved, &[]);
        elsewhere.request_json =
            elsewhere.request_json.map(|json| json.replace(r#""operation":"create""#, r#""operation":"void""#));
        assert_eq!(judge.judge(&elsewhere).class, Class::Ungoverned);
        let mut masked = row(500, RecordedDecision::Approved, &[]);
        masked.request_redacted_paths = vec!["payload.amount".into()];
        let verdict = judge.judge(&masked);
        assert_eq!((verdict.class, verdict.new), (Class::Undecidable, None));
    }

    #[test]
    fn under_the_bundle_that_decided_it_a_row_reproduces_its_trace_hash_or_says_it_does_not() {
        let mut judge = candidate(1000, "enforce");
        let sha256 = judge.candidate().sha256.clone();
        let mut recorded = row(500, RecordedDecision::Approved, &[]);
        recorded.policy_bundle_sha256 = Some(sha256);
        let first = judge.judge(&recorded);
        recorded.trace_hash = first.new.unwrap().trace_hash;
        assert_eq!(judge.judge(&recorded).reproduced, Some(true));
        recorded.trace_hash = "sha256:forged".into();
        assert_eq!(judge.judge(&recorded).reproduced, Some(false));
    }
}
