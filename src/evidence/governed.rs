//! What a governed write is made of, and what it came to: the vocabulary
//! of the evidence store's one write operation ([`super::write`]).

use sha2::{Digest as _, Sha256};

use super::returning::MutationResult;
use crate::decision::json::{Layout, write_object, write_value};
use crate::decision::{DecisionRecord, Map, NormalizedRequest, Value};
use crate::mutations::Mutation;
use crate::vocabulary::{Decision, Mode, RecordedDecision};

/// One governed write, ready to commit.
pub struct GovernedWrite<'a> {
    pub request: &'a NormalizedRequest,
    /// The decision; `None` in skip mode, where nothing is evaluated.
    pub decision: Option<&'a DecisionRecord>,
    pub mode: Mode,
    pub mutation: &'a Mutation,
    pub caller_params: &'a Map,
    pub fingerprint: Fingerprint,
    /// `sha256:…` of the policy bundle the decision was made under, if any.
    pub policy_bundle: Option<&'a str>,
    /// The caller's W3C trace id, joining the row to its distributed trace.
    pub trace_id: Option<&'a str>,
    /// Who called, as the gate identified it (`crate::access`): recorded
    /// beside the `principal` the request claims.
    pub caller: &'a str,
}

impl GovernedWrite<'_> {
    /// Whether the mutation may run: the decision gates it only in enforce mode.
    pub(super) fn allows_write(&self) -> bool {
        match self.mode {
            Mode::Enforce => self.decision.is_some_and(|d| d.decision == Decision::Approved),
            Mode::Observe | Mode::Skip => true,
        }
    }
}

/// How an ExecuteWithEvidence call ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub evidence_id: i64,
    pub mutation_applied: bool,
    pub result: Option<MutationResult>,
    pub replayed: bool,
    /// A replay's recorded decision, as the earlier call was answered
    /// (`None` for a new row): a gateway answers a retried check with it.
    pub recorded: Option<RecordedAnswer>,
}

/// The decision an evidence row records, as its caller was answered.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedAnswer {
    pub decision: RecordedDecision,
    pub ctx_id: String,
    pub trace_hash: String,
    pub reason_codes: Vec<String>,
    /// Kernite's response as stored (secrets masked).
    pub response_json: String,
}

/// What makes two calls "the same request": the SHA-256 of the whole body
/// as canonical JSON, the mutation's name and the caller's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Taken from the body as the caller sent it, before validation
    /// normalises it: two bodies Kernite reads alike are still two requests.
    pub fn of(body: &Value, mutation: &str, caller_params: &Map) -> Fingerprint {
        let mut canonical = String::with_capacity(2048);
        write_value(&mut canonical, body, Layout::Canonical);
        canonical.push('\n');
        canonical.push_str(mutation);
        canonical.push('\n');
        write_object(&mut canonical, caller_params, Layout::Canonical);
        Fingerprint(format!("sha256:{}", hex::encode(Sha256::digest(canonical.as_bytes()))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
