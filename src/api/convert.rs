//! Translation between the wire types and the engine's values, done once at the edge.

use prost_types::value::Kind;

use super::error::ApiError;
use crate::decision::json::{self, Layout};
use crate::decision::record::{DecisionRecord, Reason};
use crate::decision::{Map, Text, Value};
use crate::evidence::MutationResult;
use crate::proto;
use crate::vocabulary::{Decision, Mode};

/// Doubles in this range that are whole numbers enter the engine as JSON integers.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0; // 2^53

/// The Kernite request body carried by either form of the `body` oneof.
/// A text field that PostgreSQL is asked about must hold no U+0000, which
/// no stored row can hold either.
pub(super) fn storable_text(value: String, field: &str) -> Result<String, ApiError> {
    if value.contains('\0') {
        return Err(ApiError::BadAuditRequest(format!(
            "{field} holds a NUL character (U+0000), which PostgreSQL cannot store"
        )));
    }
    Ok(value)
}

/// A protobuf timestamp as microseconds since the Unix epoch, within the
/// years 1 to 9999: a filter's bound beyond them selects what the bound at
/// the edge selects, where PostgreSQL would refuse the timestamp itself.
pub(super) fn timestamp_micros(at: prost_types::Timestamp) -> i64 {
    use crate::evidence::audit::{EARLIEST_MICROS, LATEST_MICROS};
    at.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(at.nanos) / 1_000)
        .clamp(EARLIEST_MICROS, LATEST_MICROS)
}

pub(super) fn request_body(body: Option<proto::evaluate_request::Body>) -> Result<Value, ApiError> {
    match body.ok_or(ApiError::MissingBody)? {
        proto::evaluate_request::Body::Request(request) => typed_request(request),
        proto::evaluate_request::Body::RequestJson(text) => json::parse(&text).map_err(ApiError::BadJson),
    }
}

/// ExecuteWithEvidence carries the same oneof as Evaluate.
pub(super) fn evaluate_body(body: proto::execute_with_evidence_request::Body) -> proto::evaluate_request::Body {
    use proto::execute_with_evidence_request::Body;
    match body {
        Body::Request(request) => proto::evaluate_request::Body::Request(request),
        Body::RequestJson(text) => proto::evaluate_request::Body::RequestJson(text),
    }
}

/// The typed form as the JSON body Kernite would receive. Empty strings
/// stand for absent ones: Kernite treats both as missing.
pub(super) fn typed_request(request: proto::ExecuteRequest) -> Result<Value, ApiError> {
    let mut body = Map::default();
    body.insert("workspace_id".into(), Value::str(request.workspace_id));
    if let Some(principal) = request.principal {
        let mut map = Map::default();
        map.insert("type".into(), Value::str(principal.r#type));
        map.insert("id".into(), Value::str(principal.id));
        if let Some(attributes) = principal.attributes {
            map.insert("attributes".into(), from_struct(attributes, "principal.attributes")?);
        }
        body.insert("principal".into(), Value::Object(map));
    }
    body.insert("object_type".into(), Value::str(request.object_type));
    body.insert("operation".into(), Value::str(request.operation));
    for (key, part) in [
        ("payload", request.payload),
        ("resource", request.resource),
        ("context", request.context),
        ("policy_context", request.policy_context),
    ] {
        if let Some(part) = part {
            body.insert(key.into(), from_struct(part, key)?);
        }
    }
    Ok(Value::Object(body))
}

pub(super) fn from_struct(s: prost_types::Struct, field: &str) -> Result<Value, ApiError> {
    map_from_struct(s, field).map(Value::Object)
}

pub(super) fn map_from_struct(s: prost_types::Struct, field: &str) -> Result<Map, ApiError> {
    let mut map = Map::with_capacity(s.fields.len());
    for (key, value) in s.fields {
        map.insert(key.into(), from_proto_value(value, field)?);
    }
    Ok(map)
}

fn from_proto_value(value: prost_types::Value, field: &str) -> Result<Value, ApiError> {
    Ok(match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StringValue(s)) => Value::str(s),
        Some(Kind::NumberValue(n)) if !n.is_finite() => {
            return Err(ApiError::BadStruct(format!("{field}: NaN and infinite numbers are not JSON")));
        }
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() <= MAX_EXACT_INTEGER => Value::Int(n as i64),
        Some(Kind::NumberValue(n)) => Value::Float(n),
        Some(Kind::StructValue(s)) => from_struct(s, field)?,
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.into_iter().map(|v| from_proto_value(v, field)).collect::<Result<_, _>>()?)
        }
    })
}

/// A value for a typed response field. Integers beyond 2^53 lose precision
/// here, as any double would; `response_json` keeps them exact.
pub(super) fn to_proto_value(value: &Value) -> prost_types::Value {
    use num_traits::ToPrimitive;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Int(n) => Kind::NumberValue(*n as f64),
        Value::BigInt(n) => Kind::NumberValue(n.to_f64().unwrap_or(f64::NAN)),
        Value::Float(f) => Kind::NumberValue(*f),
        Value::Str(s) => Kind::StringValue(s.to_string()),
        Value::Array(items) => {
            Kind::ListValue(prost_types::ListValue { values: items.iter().map(to_proto_value).collect() })
        }
        Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

pub(super) fn to_struct(map: &Map) -> prost_types::Struct {
    prost_types::Struct { fields: map.iter().map(|(k, v)| (k.to_string(), to_proto_value(v))).collect() }
}

/// Strings stay strings; other JSON (from a guardrail) is given as its text.
fn optional_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::Str(s) => Some(s.to_string()),
        other => Some(json::to_string(other, Layout::Canonical)),
    }
}

fn reason(reason: &Reason) -> proto::Reason {
    proto::Reason {
        code: reason.code.to_string(),
        message: reason.message.to_string(),
        rule_key: optional_text(&reason.rule_key),
        field_path: optional_text(&reason.field_path),
        details: Some(to_struct(&reason.details)),
    }
}

/// The typed answer; it takes the record, whose rendered text it moves into `response_json`.
/// The decision as the caller asked to be answered (`answer_form`): typed,
/// as Kernite's JSON, or both (an unknown form is read as both).
pub(super) fn evaluate_response(record: DecisionRecord, form: i32) -> proto::EvaluateResponse {
    match proto::AnswerForm::try_from(form).unwrap_or_default() {
        proto::AnswerForm::Unspecified | proto::AnswerForm::Both => typed_response(record, true),
        proto::AnswerForm::Typed => typed_response(record, false),
        proto::AnswerForm::KerniteJson => proto::EvaluateResponse {
            decision: decision(record.decision).into(),
            trace_hash: record.trace_hash.clone(),
            ctx_id: record.ctx_id.to_string(),
            response_json: record.into_response_json(),
            ..proto::EvaluateResponse::default()
        },
    }
}

fn decision(decision: Decision) -> proto::Decision {
    match decision {
        Decision::Approved => proto::Decision::Approved,
        Decision::Denied => proto::Decision::Denied,
    }
}

/// Every typed field, and Kernite's JSON response too if `with_json`.
fn typed_response(record: DecisionRecord, with_json: bool) -> proto::EvaluateResponse {
    proto::EvaluateResponse {
        decision: decision(record.decision).into(),
        reason_codes: record.reason_codes.iter().map(Text::to_string).collect(),
        reasons: record.reasons.iter().map(reason).collect(),
        policy_selection_reason_code: record.policy_selection_reason_code.to_string(),
        policy: Some(proto::PolicyRef {
            policy_key: record.policy_key().unwrap_or_default().to_owned(),
            policy_version: record.policy_version(),
            document: Some(to_struct(&record.policy)),
        }),
        trace_hash: record.trace_hash.clone(),
        ctx_id: record.ctx_id.to_string(),
        message: record.message().to_owned(),
        idempotency_key: record.idempotency_key.as_ref().map(Text::to_string),
        previous_trace_hash: record.previous_trace_hash.as_ref().map(Text::to_string),
        combining_algorithm: record.combining_algorithm.to_string(),
        response_json: if with_json { record.into_response_json() } else { String::new() },
    }
}

impl From<Mode> for proto::Mode {
    fn from(mode: Mode) -> proto::Mode {
        match mode {
            Mode::Enforce => proto::Mode::Enforce,
            Mode::Observe => proto::Mode::Observe,
            Mode::Skip => proto::Mode::Skip,
        }
    }
}

pub(super) fn mutation_result(result: &MutationResult) -> proto::MutationResult {
    proto::MutationResult {
        rows_affected: result.rows_affected,
        returning: result.returning.iter().map(to_struct).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(n: f64) -> prost_types::Value {
        prost_types::Value { kind: Some(Kind::NumberValue(n)) }
    }

    #[test]
    fn whole_doubles_within_2_pow_53_become_integers() {
        assert!(matches!(from_proto_value(number(3.0), "f"), Ok(Value::Int(3))));
        assert!(matches!(from_proto_value(number(-0.0), "f"), Ok(Value::Int(0))));
        assert!(matches!(
            from_proto_value(number(9_007_199_254_740_992.0), "f"),
            Ok(Value::Int(9_007_199_254_740_992))
        ));
        assert!(matches!(from_proto_value(number(9_007_199_254_740_994.0), "f"), Ok(Value::Float(_))));
        assert!(matches!(from_proto_value(number(2.5), "f"), Ok(Value::Float(f)) if f == 2.5));
        assert!(from_proto_value(number(f64::NAN), "f").is_err());
        assert!(from_proto_value(number(f64::INFINITY), "f").is_err());
    }
}
