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
//!
//! The canonical JSON is written straight from the typed parts, keys in
//! sorted order by construction, so no intermediate tree is built.

use sha2::{Digest, Sha256};

use super::json::{Layout, write_object, write_optional_string, write_sorted_strings, write_string};
use super::record::{Decision, MatchedPolicy};
use super::request::NormalizedRequest;
use super::value::Text;

/// Everything that is hashed, borrowed from the decision being made.
pub struct TraceInput<'a> {
    pub domain: &'a str,
    /// The normalised request; `policy_context` is not part of it.
    pub input: &'a NormalizedRequest,
    pub decision: Decision,
    pub reason_codes: &'a [Text],
    pub policy_selection_reason_code: &'a str,
    pub matched_policies: &'a [MatchedPolicy],
    pub combining_algorithm: &'a str,
    pub previous_trace_hash: &'a Option<Text>,
}

/// Returns `(trace_hash, ctx_id)`.
pub fn trace_hash(trace: TraceInput<'_>) -> (String, Text) {
    let mut pre_image = String::with_capacity(2048);
    pre_image.push_str(trace.domain);
    pre_image.push('\n');
    write_record(&mut pre_image, &trace);

    let mut trace_hash = *b"sha256:0000000000000000000000000000000000000000000000000000000000000000";
    hex::encode_to_slice(Sha256::digest(pre_image.as_bytes()), &mut trace_hash[7..]).expect("64 hex digits fit");
    let trace_hash = String::from_utf8(trace_hash.to_vec()).expect("ASCII");
    let ctx_id = ctx_id_of(&trace_hash).expect("a trace hash just made");
    (trace_hash, ctx_id)
}

/// The `ctx_id` Kernite derives from a trace hash: `ctx_` and the hash's
/// first 12 hex digits. `None` for what is not a trace hash. (The audit API
/// finds rows by trace hash through the ctx_id index with it.)
pub fn ctx_id_of(trace_hash: &str) -> Option<Text> {
    let digits = trace_hash.strip_prefix("sha256:")?;
    let prefix = digits.get(..12).filter(|_| digits.len() == 64 && digits.bytes().all(|b| b.is_ascii_hexdigit()))?;
    let mut ctx_id = Text::const_new("ctx_");
    ctx_id.push_str(prefix);
    Some(ctx_id)
}

/// The hashed record, keys in code-point order.
fn write_record(out: &mut String, trace: &TraceInput<'_>) {
    out.push_str("{\"combining_algorithm\":");
    write_string(out, trace.combining_algorithm);
    out.push_str(",\"decision\":");
    write_string(out, trace.decision.as_str());
    out.push_str(",\"input\":");
    write_input(out, trace.input);

    // Each entry sorted by its own canonical JSON, as Kernite does; one
    // entry (the common case) is written in place.
    out.push_str(",\"matched_policies\":[");
    if let [only] = trace.matched_policies {
        only.write_canonical(out);
    } else {
        let mut matched: Vec<String> = trace
            .matched_policies
            .iter()
            .map(|policy| {
                let mut entry = String::with_capacity(256);
                policy.write_canonical(&mut entry);
                entry
            })
            .collect();
        matched.sort_unstable();
        out.push_str(&matched.join(","));
    }

    out.push_str("],\"policy_selection_reason_code\":");
    write_string(out, trace.policy_selection_reason_code);
    out.push_str(",\"previous_trace_hash\":");
    write_optional_string(out, trace.previous_trace_hash.as_deref());

    out.push_str(",\"reason_codes\":");
    write_sorted_strings(out, trace.reason_codes);
    out.push('}');
}

/// The normalised request, as [`NormalizedRequest::to_value`] in canonical form.
pub(super) fn write_input(out: &mut String, input: &NormalizedRequest) {
    out.push_str("{\"context\":");
    write_object(out, &input.context, Layout::Canonical);
    out.push_str(",\"idempotency_key\":");
    write_optional_string(out, input.idempotency_key.as_deref());
    out.push_str(",\"object_type\":");
    write_string(out, &input.object_type);
    out.push_str(",\"operation\":");
    write_string(out, &input.operation);
    out.push_str(",\"payload\":");
    write_object(out, &input.payload, Layout::Canonical);
    out.push_str(",\"principal\":{\"attributes\":");
    write_object(out, &input.principal.attributes, Layout::Canonical);
    out.push_str(",\"id\":");
    write_string(out, &input.principal.id);
    out.push_str(",\"type\":");
    write_string(out, &input.principal.kind);
    out.push_str("},\"resource\":");
    write_object(out, &input.resource, Layout::Canonical);
    out.push_str(",\"workspace_id\":");
    write_string(out, &input.workspace_id);
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::json::{parse, to_string};
    use crate::decision::validate::validate;

    #[test]
    fn a_trace_hash_names_its_ctx_id_and_anything_else_names_none() {
        let hash = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert_eq!(ctx_id_of(&hash).unwrap(), "ctx_0123456789ab");
        for not_a_hash in ["", "sha256:", "sha256:0123", &hash[..70], &format!("{hash}0"), &hash.replace('a', "g")] {
            assert_eq!(ctx_id_of(not_a_hash), None, "{not_a_hash}");
        }
    }

    #[test]
    fn the_input_is_written_exactly_as_its_canonical_value() {
        let body = parse(r#"{"workspace_id": "w", "principal": {"type": "u", "id": "1", "attributes": {"é": 1, "a": [2.5]}}, "object_type": "o", "operation": "create", "payload": {"z": null, "b": {"y": 1, "x": 2}}, "context": {"k": "v"}}"#).unwrap();
        let request = validate(body, Some("key")).unwrap().request;
        let mut written = String::new();
        write_input(&mut written, &request);
        assert_eq!(written, to_string(&request.to_value(), Layout::Canonical));
    }
}
