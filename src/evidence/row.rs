//! The evidence row of one call: every column computed once, before a
//! connection is taken, with secrets masked (see [`super::redact`]).

use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;

use super::governed::GovernedWrite;
use super::redact::Redactor;
use crate::decision::json::{self, Layout};
use crate::decision::record::object;
use crate::decision::{DecisionRecord, Value};
use crate::vocabulary::RecordedDecision;

/// The columns of one call's evidence that do not depend on how it ends
/// (the outcome, the claimed key and the SQLSTATE are added at insert, see
/// [`super::idempotency::Recording`]).
pub(super) struct EvidenceRow<'w> {
    pub write: &'w GovernedWrite<'w>,
    pub decision: RecordedDecision,
    /// JSON array of Kernite's reason codes.
    pub reason_codes: String,
    pub ctx_id: String,
    pub trace_hash: String,
    /// Kernite's response as stored: redacted, and jsonb-safe.
    pub response_json: String,
    /// SHA-256 of the response as PostgreSQL will print it, for the
    /// verifiable log: taken here from the value in hand, so that the log's
    /// sequencer need not have PostgreSQL print every response again.
    pub response_digest: [u8; 32],
    /// JSON array of the paths redaction masked.
    pub redacted_paths: String,
    /// The `policy` Kernite reports: key and version, when one applied.
    pub policy_key: Option<String>,
    pub policy_version: Option<i64>,
}

impl<'w> EvidenceRow<'w> {
    /// The columns of `write`: its decision (or the skip), with secrets masked.
    pub fn new(write: &'w GovernedWrite<'w>, redactor: &Redactor) -> EvidenceRow<'w> {
        let (reason_codes, ctx_id, trace_hash, response) = match write.decision {
            Some(record) => (
                Value::Array(record.reason_codes.iter().cloned().map(Value::Str).collect()),
                record.ctx_id.to_string(),
                record.trace_hash.clone(),
                record.to_value(),
            ),
            None => {
                // Nothing was decided, so nothing was hashed: a fresh ctx_id joins the logs.
                let ctx_id = crate::ctx_id::random();
                let response = object([
                    ("ctx_id", Value::str(&ctx_id)),
                    ("message", Value::str("Governance skipped by operator mode.")),
                    ("data", object([("decision", Value::str("skipped")), ("mode", Value::str("skip"))])),
                ]);
                (Value::Array(Vec::new()), ctx_id, String::new(), response)
            }
        };
        let mut redacted = redactor.redact_response(response);
        let respelled = jsonb_safe(&mut redacted.value);
        // Nothing masked or respelled: the stored copy is Kernite's own text,
        // which the answer renders too (the record keeps it).
        let response_json = match write.decision {
            Some(record) if redacted.masked.is_empty() && !respelled => record.response_text().to_owned(),
            _ => json::to_string(&redacted.value, Layout::Response),
        };
        EvidenceRow {
            write,
            decision: write.decision.map(|record| record.decision).into(),
            reason_codes: json::to_string(&reason_codes, Layout::Canonical),
            ctx_id,
            trace_hash,
            response_json,
            response_digest: Sha256::digest(super::log::jsonb::text(&redacted.value)).into(),
            redacted_paths: json::to_string(
                &Value::Array(redacted.masked.into_iter().map(Value::str).collect()),
                Layout::Canonical,
            ),
            policy_key: write.decision.and_then(DecisionRecord::policy_key).map(str::to_owned),
            policy_version: write.decision.and_then(DecisionRecord::policy_version),
        }
    }
}

/// The evidence INSERT's columns, in the order of its parameters
/// (`idempotency::insert_params!`), each with the cast its text parameter needs.
const INSERT_COLUMNS: [(&str, &str); 21] = [
    ("workspace_id", ""),
    ("principal_id", ""),
    ("object_type", ""),
    ("operation", ""),
    ("decision", ""),
    ("reason_codes", "::text::jsonb"),
    ("ctx_id", ""),
    ("trace_hash", ""),
    ("idempotency_key", ""),
    ("response_json", "::text::jsonb"),
    ("outcome", ""),
    ("mutation_name", ""),
    ("request_fingerprint", ""),
    ("error_sqlstate", ""),
    ("mode", ""),
    ("redacted_paths", "::text::jsonb"),
    ("policy_bundle_sha256", ""),
    ("policy_key", ""),
    ("policy_version", ""),
    ("trace_id", ""),
    ("response_json_sha256", ""),
];

/// How many parameters the evidence INSERT takes.
pub(super) const INSERT_PARAMS: usize = INSERT_COLUMNS.len();

/// `INSERT INTO governance_events (…) VALUES (…)`, its parameters numbered
/// from `$first`: the one-statement write puts the mutation's parameters first.
pub(super) fn insert_sql(first: usize) -> String {
    let columns: Vec<&str> = INSERT_COLUMNS.iter().map(|(column, _)| *column).collect();
    let values: Vec<String> =
        INSERT_COLUMNS.iter().enumerate().map(|(i, (_, cast))| format!("${}{cast}", first + i)).collect();
    format!("INSERT INTO governance_events ({}) VALUES ({})", columns.join(", "), values.join(", "))
}

/// A parameter copied into a box of its own: what the group committer holds
/// of a caller's write, so that nothing it sends borrows from the caller.
pub(super) type OwnedParam = Box<dyn ToSql + Send + Sync>;

/// The evidence INSERT's parameter types, each copied the way it is bound.
pub(super) trait ToOwnedParam {
    fn to_owned_param(&self) -> OwnedParam;
}

impl ToOwnedParam for &str {
    fn to_owned_param(&self) -> OwnedParam {
        Box::new((*self).to_owned())
    }
}

impl ToOwnedParam for String {
    fn to_owned_param(&self) -> OwnedParam {
        Box::new(self.clone())
    }
}

impl ToOwnedParam for Option<&str> {
    fn to_owned_param(&self) -> OwnedParam {
        Box::new(self.map(str::to_owned))
    }
}

impl ToOwnedParam for Option<String> {
    fn to_owned_param(&self) -> OwnedParam {
        Box::new(self.clone())
    }
}

impl ToOwnedParam for Option<i64> {
    fn to_owned_param(&self) -> OwnedParam {
        Box::new(*self)
    }
}

impl ToOwnedParam for &[u8] {
    fn to_owned_param(&self) -> OwnedParam {
        Box::new(self.to_vec())
    }
}

/// `insert_params!(owned: …)`'s wrapper.
pub(super) fn owned<T: ToOwnedParam>(value: &T) -> OwnedParam {
    value.to_owned_param()
}

/// jsonb has no NaN or Infinity, which Kernite's Python JSON (and a float8
/// column) can hold: the stored copy spells them as strings, `"NaN"`,
/// `"Infinity"`, `"-Infinity"`. The caller's answer keeps Kernite's tokens.
/// Whether anything was respelled.
pub(super) fn jsonb_safe(value: &mut Value) -> bool {
    match value {
        Value::Float(f) if !f.is_finite() => {
            let token = if f.is_nan() {
                "NaN"
            } else if *f > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            *value = Value::str(token);
            true
        }
        // Every item is visited: `|` does not stop at the first.
        Value::Array(items) => items.iter_mut().fold(false, |respelled, item| jsonb_safe(item) | respelled),
        Value::Object(map) => map.values_mut().fold(false, |respelled, item| jsonb_safe(item) | respelled),
        _ => false,
    }
}
