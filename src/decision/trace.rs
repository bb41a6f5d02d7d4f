//! The `trace_hash` and `ctx_id`: what auditors recompute to check a decision.
//!
//! ```text
//! pre-image  = domain + "\n" + canonical_json({input, decision, reason_codes (sorted),
//!              policy_selection_reason_code, matched_policies (sorted), combining_algorithm,
//!              previous_trace_hash})
//! trace_hash = "sha256:" + hex(sha256(pre-image))
//! ctx_id     = "ctx_" + first 12 hex digits
//! ```
//! `reasons`, `rule_events`, `policy` and `message` are not hashed.

use sha2::{Digest, Sha256};

use super::json::{Layout, write_value};
use super::record::{Decision, MatchedPolicy, object, optional_str};
use super::value::Value;

/// Everything that is hashed, borrowed from the decision being made.
pub struct TraceInput<'a> {
    pub domain: &'a str,
    /// The normalised request (see [`super::validate::NormalizedRequest`]).
    pub input: Value,
    pub decision: Decision,
    pub reason_codes: &'a [String],
    pub policy_selection_reason_code: &'a str,
    pub matched_policies: &'a [MatchedPolicy],
    pub combining_algorithm: &'a str,
    pub previous_trace_hash: &'a Option<String>,
}

/// Returns `(trace_hash, ctx_id)`.
pub fn trace_hash(trace: TraceInput<'_>) -> (String, String) {
    let mut reason_codes = trace.reason_codes.to_vec();
    reason_codes.sort_unstable();

    // Each entry sorted by its own canonical JSON, as Kernite does.
    let mut matched: Vec<(String, Value)> = trace
        .matched_policies
        .iter()
        .map(|policy| {
            let value = policy.to_value(true);
            let mut key = String::new();
            write_value(&mut key, &value, Layout::Canonical);
            (key, value)
        })
        .collect();
    matched.sort_by(|a, b| a.0.cmp(&b.0));

    let record = object([
        ("input", trace.input),
        ("decision", Value::str(trace.decision.as_str())),
        ("reason_codes", Value::Array(reason_codes.into_iter().map(Value::Str).collect())),
        ("policy_selection_reason_code", Value::str(trace.policy_selection_reason_code)),
        ("matched_policies", Value::Array(matched.into_iter().map(|(_, v)| v).collect())),
        ("combining_algorithm", Value::str(trace.combining_algorithm)),
        ("previous_trace_hash", optional_str(trace.previous_trace_hash)),
    ]);

    let mut pre_image = String::with_capacity(1024);
    pre_image.push_str(trace.domain);
    pre_image.push('\n');
    write_value(&mut pre_image, &record, Layout::Canonical);

    let digest = hex::encode(Sha256::digest(pre_image.as_bytes()));
    let ctx_id = format!("ctx_{}", &digest[..12]);
    (format!("sha256:{digest}"), ctx_id)
}
