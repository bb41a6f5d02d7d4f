//! What a decision is made of, and how it renders as Kernite's response body.
//!
//! Each `to_value` writes keys in the order Kernite builds its dicts, so that
//! the response JSON is the same text `kernite serve` writes.

use std::sync::OnceLock;

use super::json::{Layout, write_object, write_optional_string, write_sorted_strings, write_string, write_value};
use super::request::Effect;
use super::value::{Map, Text, Value, object, optional_str};

pub use crate::vocabulary::Decision;

/// One reason behind a decision. Reasons a guardrail supplies may carry any
/// JSON as `rule_key` and `field_path`; Kernite passes them through.
#[derive(Debug, Clone)]
pub struct Reason {
    pub code: Text,
    pub message: Text,
    pub rule_key: Value,
    pub field_path: Value,
    pub details: Map,
}

impl Reason {
    /// A reason with no rule behind it (no-policy outcomes, the `policy_denied` fallback).
    pub fn synthesized(code: &str, message: &str) -> Reason {
        Reason {
            code: code.into(),
            message: message.into(),
            rule_key: Value::Null,
            field_path: Value::Null,
            details: Map::default(),
        }
    }

    pub fn to_value(&self) -> Value {
        object([
            ("code", Value::Str(self.code.clone())),
            ("message", Value::Str(self.message.clone())),
            ("rule_key", self.rule_key.clone()),
            ("field_path", self.field_path.clone()),
            ("details", Value::Object(self.details.clone())),
        ])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleStatus {
    Passed,
    Failed,
}

/// What one rule did, for the audit trail in `rule_events`.
#[derive(Debug, Clone)]
pub struct RuleEvent {
    pub rule_key: Option<Text>,
    pub rule_type: Text,
    pub status: RuleStatus,
    pub message: Text,
    pub reason_code: Option<Text>,
    pub field_path: Option<Text>,
    pub details: Map,
}

impl RuleEvent {
    pub fn to_value(&self) -> Value {
        let status = match self.status {
            RuleStatus::Passed => "passed",
            RuleStatus::Failed => "failed",
        };
        object([
            ("rule_key", optional_str(&self.rule_key)),
            ("rule_type", Value::Str(self.rule_type.clone())),
            ("status", Value::str(status)),
            ("message", Value::Str(self.message.clone())),
            ("reason_code", optional_str(&self.reason_code)),
            ("field_path", optional_str(&self.field_path)),
            ("details", Value::Object(self.details.clone())),
        ])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyOutcome {
    Approved,
    Denied,
    NotApplicable,
}

/// One selected policy's verdict, in `matched_policies`.
///
/// Kernite hashes these with their reason codes sorted; [`Self::write_canonical`]
/// writes that form directly, keys in code-point order.
#[derive(Debug, Clone)]
pub struct MatchedPolicy {
    pub policy_version_id: Option<Text>,
    pub policy_id: Option<Text>,
    pub policy_key: Text,
    pub policy_name: Text,
    pub effect: Effect,
    pub priority: Value,
    pub version: Value,
    pub rule_count: usize,
    pub outcome: PolicyOutcome,
    pub reason_codes: Vec<Text>,
    pub condition_count: usize,
}

impl MatchedPolicy {
    fn outcome_str(&self) -> &'static str {
        match self.outcome {
            PolicyOutcome::Approved => "approved",
            PolicyOutcome::Denied => "denied",
            PolicyOutcome::NotApplicable => "not_applicable",
        }
    }

    /// The hashed form as canonical JSON: equal to writing `to_value` with its
    /// reason codes sorted, without building it.
    pub fn write_canonical(&self, out: &mut String) {
        out.push_str("{\"condition_count\":");
        out.push_str(itoa::Buffer::new().format(self.condition_count));
        out.push_str(",\"decision\":");
        write_string(out, self.outcome_str());
        out.push_str(",\"effect\":");
        write_string(out, self.effect.as_str());
        out.push_str(",\"policy_id\":");
        write_optional_string(out, self.policy_id.as_deref());
        out.push_str(",\"policy_key\":");
        write_string(out, &self.policy_key);
        out.push_str(",\"policy_name\":");
        write_string(out, &self.policy_name);
        out.push_str(",\"policy_version_id\":");
        write_optional_string(out, self.policy_version_id.as_deref());
        out.push_str(",\"priority\":");
        write_value(out, &self.priority, Layout::Canonical);
        out.push_str(",\"reason_codes\":");
        write_sorted_strings(out, &self.reason_codes);
        out.push_str(",\"rule_count\":");
        out.push_str(itoa::Buffer::new().format(self.rule_count));
        out.push_str(",\"version\":");
        write_value(out, &self.version, Layout::Canonical);
        out.push('}');
    }

    /// The entry as Kernite writes it; `sorted_codes` gives the hashed form.
    pub fn to_value(&self, sorted_codes: bool) -> Value {
        let outcome = self.outcome_str();
        let mut codes = self.reason_codes.clone();
        if sorted_codes {
            codes.sort_unstable();
        }
        object([
            ("policy_version_id", optional_str(&self.policy_version_id)),
            ("policy_id", optional_str(&self.policy_id)),
            ("policy_key", Value::Str(self.policy_key.clone())),
            ("policy_name", Value::Str(self.policy_name.clone())),
            ("effect", Value::str(self.effect.as_str())),
            ("priority", self.priority.clone()),
            ("version", self.version.clone()),
            ("rule_count", Value::Int(self.rule_count as i64)),
            ("decision", Value::str(outcome)),
            ("reason_codes", Value::Array(codes.into_iter().map(Value::Str).collect())),
            ("condition_count", Value::Int(self.condition_count as i64)),
        ])
    }
}

/// A complete Kernite decision: the `data` of the response, its ctx_id and message.
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    pub ctx_id: Text,
    pub decision: Decision,
    pub reason_codes: Vec<Text>,
    pub reasons: Vec<Reason>,
    pub rule_events: Vec<RuleEvent>,
    pub matched_policies: Vec<MatchedPolicy>,
    pub combining_algorithm: Text,
    pub policy_selection_reason_code: Text,
    /// The `policy` object: the default policy, or the first applicable one's key and version.
    pub policy: Map,
    pub trace_hash: String,
    pub previous_trace_hash: Option<Text>,
    pub idempotency_key: Option<Text>,
    /// The response body's text, rendered on first use: an
    /// ExecuteWithEvidence answer and its evidence row's stored copy (when
    /// redaction masks nothing) are the same text, written once. A record is
    /// never changed once decided, so the text cannot go stale.
    pub(super) rendered: OnceLock<String>,
}

impl DecisionRecord {
    /// The key of the `policy` Kernite reports, when one applied.
    pub fn policy_key(&self) -> Option<&str> {
        self.policy.get("policy_key").and_then(Value::as_str)
    }

    /// The version of the `policy` Kernite reports, when it has an integer one.
    pub fn policy_version(&self) -> Option<i64> {
        match self.policy.get("policy_version") {
            Some(Value::Int(version)) => Some(*version),
            _ => None,
        }
    }

    pub fn message(&self) -> &'static str {
        match self.decision {
            Decision::Approved => "Approved by governance policy.",
            Decision::Denied => "Denied by governance policy.",
        }
    }

    /// Kernite's response body: `{ctx_id, message, data}`.
    pub fn to_value(&self) -> Value {
        let data = object([
            ("decision", Value::str(self.decision.as_str())),
            ("reason_codes", Value::Array(self.reason_codes.iter().cloned().map(Value::Str).collect())),
            ("reasons", Value::Array(self.reasons.iter().map(Reason::to_value).collect())),
            ("rule_events", Value::Array(self.rule_events.iter().map(RuleEvent::to_value).collect())),
            ("matched_policies", Value::Array(self.matched_policies.iter().map(|m| m.to_value(false)).collect())),
            ("combining_algorithm", Value::Str(self.combining_algorithm.clone())),
            ("policy_selection_reason_code", Value::Str(self.policy_selection_reason_code.clone())),
            ("policy", Value::Object(self.policy.clone())),
            ("trace_hash", Value::str(&self.trace_hash)),
            ("previous_trace_hash", optional_str(&self.previous_trace_hash)),
            ("idempotency_key", optional_str(&self.idempotency_key)),
        ]);
        object([("ctx_id", Value::Str(self.ctx_id.clone())), ("message", Value::str(self.message())), ("data", data)])
    }
}

/// Writes one object in the response layout, entries in the order given.
struct ObjectWriter<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> ObjectWriter<'a> {
    fn open(out: &'a mut String) -> ObjectWriter<'a> {
        out.push('{');
        ObjectWriter { out, empty: true }
    }

    /// Writes the key; the caller writes the value into the returned buffer.
    /// Keys are Kernite's field names, which need no escaping.
    fn key(&mut self, key: &'static str) -> &mut String {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{key:?} needs escaping");
        if !self.empty {
            self.out.push_str(", ");
        }
        self.empty = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\": ");
        self.out
    }

    fn str(&mut self, key: &'static str, value: &str) {
        write_string(self.key(key), value);
    }

    fn optional(&mut self, key: &'static str, value: Option<&str>) {
        write_optional_string(self.key(key), value);
    }

    fn value(&mut self, key: &'static str, value: &Value) {
        write_value(self.key(key), value, Layout::Response);
    }

    fn map(&mut self, key: &'static str, map: &Map) {
        write_object(self.key(key), map, Layout::Response);
    }

    fn list<T>(&mut self, key: &'static str, items: &[T], write: impl Fn(&mut String, &T)) {
        let out = self.key(key);
        out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write(out, item);
        }
        out.push(']');
    }

    fn close(self) {
        self.out.push('}');
    }
}

impl DecisionRecord {
    /// The response body as `kernite serve` writes it: the same text as
    /// rendering [`Self::to_value`], written without building that tree.
    pub fn write_response(&self, out: &mut String) {
        let mut body = ObjectWriter::open(out);
        body.str("ctx_id", &self.ctx_id);
        body.str("message", self.message());
        let mut data = ObjectWriter::open(body.key("data"));
        data.str("decision", self.decision.as_str());
        data.list("reason_codes", &self.reason_codes, |out, code| write_string(out, code));
        data.list("reasons", &self.reasons, |out, reason| {
            let mut entry = ObjectWriter::open(out);
            entry.str("code", &reason.code);
            entry.str("message", &reason.message);
            entry.value("rule_key", &reason.rule_key);
            entry.value("field_path", &reason.field_path);
            entry.map("details", &reason.details);
            entry.close();
        });
        data.list("rule_events", &self.rule_events, |out, event| {
            let mut entry = ObjectWriter::open(out);
            entry.optional("rule_key", event.rule_key.as_deref());
            entry.str("rule_type", &event.rule_type);
            entry.str(
                "status",
                match event.status {
                    RuleStatus::Passed => "passed",
                    RuleStatus::Failed => "failed",
                },
            );
            entry.str("message", &event.message);
            entry.optional("reason_code", event.reason_code.as_deref());
            entry.optional("field_path", event.field_path.as_deref());
            entry.map("details", &event.details);
            entry.close();
        });
        data.list("matched_policies", &self.matched_policies, |out, policy| {
            let mut entry = ObjectWriter::open(out);
            entry.optional("policy_version_id", policy.policy_version_id.as_deref());
            entry.optional("policy_id", policy.policy_id.as_deref());
            entry.str("policy_key", &policy.policy_key);
            entry.str("policy_name", &policy.policy_name);
            entry.str("effect", policy.effect.as_str());
            entry.value("priority", &policy.priority);
            entry.value("version", &policy.version);
            entry.key("rule_count").push_str(itoa::Buffer::new().format(policy.rule_count));
            entry.str("decision", policy.outcome_str());
            entry.list("reason_codes", &policy.reason_codes, |out, code| write_string(out, code));
            entry.key("condition_count").push_str(itoa::Buffer::new().format(policy.condition_count));
            entry.close();
        });
        data.str("combining_algorithm", &self.combining_algorithm);
        data.str("policy_selection_reason_code", &self.policy_selection_reason_code);
        data.map("policy", &self.policy);
        data.str("trace_hash", &self.trace_hash);
        data.optional("previous_trace_hash", self.previous_trace_hash.as_deref());
        data.optional("idempotency_key", self.idempotency_key.as_deref());
        data.close();
        body.close();
    }

    /// The response body as `kernite serve` writes it, rendered once.
    pub fn response_text(&self) -> &str {
        self.rendered.get_or_init(|| self.render())
    }

    pub fn response_json(&self) -> String {
        self.response_text().to_owned()
    }

    /// The response body, moved out of the record that answers with it:
    /// rendered now, or the text already rendered, without a copy.
    pub fn into_response_json(mut self) -> String {
        match self.rendered.take() {
            Some(text) => text,
            None => self.render(),
        }
    }

    fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        self.write_response(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::json::to_string;

    #[test]
    fn matched_policy_canonical_form_equals_its_sorted_value() {
        let matched = MatchedPolicy {
            policy_version_id: None,
            policy_id: Some("pid".into()),
            policy_key: "k\u{e9}".into(),
            policy_name: "name \"q\"".into(),
            effect: Effect::Deny,
            priority: Value::Int(-3),
            version: Value::Int(7),
            rule_count: 2,
            outcome: PolicyOutcome::Denied,
            reason_codes: vec!["zeta".into(), "alpha".into()],
            condition_count: 1,
        };
        let mut written = String::new();
        matched.write_canonical(&mut written);
        assert_eq!(written, to_string(&matched.to_value(true), Layout::Canonical));
    }
}
