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
