//! What Kernite's validation produces: the request as normalised, its
//! policies and policy context as pruned, and the errors it reports; and
//! how each renders (the `normalized` echo of a 400 body, the trace hash's
//! input). [`super::validate`] makes them.

use super::value::{Map, Text, Value, object, optional_str};

/// One validation error, as Kernite reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Required,
    InvalidType,
    InvalidValue,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Required => "required",
            ErrorCode::InvalidType => "invalid_type",
            ErrorCode::InvalidValue => "invalid_value",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionOp {
    Eq,
    Neq,
}

/// A policy condition that passed validation: `left op right`.
#[derive(Debug, Clone)]
pub struct Condition {
    pub left: Text,
    pub op: ConditionOp,
    pub right: Value,
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub kind: Text,
    pub id: Text,
    pub attributes: Map,
}

/// The request as Kernite normalises it; this is the `input` that is hashed.
#[derive(Debug, Clone)]
pub struct NormalizedRequest {
    pub workspace_id: Text,
    pub principal: Principal,
    pub object_type: Text,
    pub operation: Text,
    pub payload: Map,
    pub resource: Map,
    pub context: Map,
    pub idempotency_key: Option<Text>,
}

/// A selected policy after validation: only the keys Kernite keeps.
#[derive(Debug, Clone, Default)]
pub struct PolicyInput {
    pub policy_key: Option<Text>,
    pub effect: Option<Effect>,
    /// Integers, as Python's `int()` made them.
    pub policy_version: Option<Value>,
    pub version: Option<Value>,
    pub priority: Option<Value>,
    pub policy_id: Option<Text>,
    pub policy_version_id: Option<Text>,
    pub policy_name: Option<Text>,
    pub deny_reason_code: Option<Text>,
    pub deny_reason_message: Option<Text>,
    pub conditions: Option<Vec<Condition>>,
    /// Rules are kept as the objects the caller sent; evaluation interprets them.
    pub rules: Option<Vec<Map>>,
}

/// `policy_context` after validation; `None` fields were absent.
#[derive(Debug, Clone, Default)]
pub struct PolicyContextInput {
    pub governed: Option<bool>,
    pub policy_selection_reason_code: Option<Text>,
    pub governed_scopes: Option<Vec<(Text, Text)>>,
    pub selected_policies: Option<Vec<PolicyInput>>,
    pub default_policy: Option<Map>,
    pub validation_rules: Option<Vec<Map>>,
    pub guardrail_result: Option<Map>,
    pub no_policy_decision: Option<Text>,
    pub no_policy_reason_code: Option<Text>,
    pub no_policy_message: Option<Text>,
    pub previous_trace_hash: Option<Text>,
    pub combining_algorithm: Option<Text>,
    pub trace_domain: Option<Text>,
}

/// The outcome of validation: the normalised request, and the errors that
/// make it invalid (none for a valid request).
#[derive(Debug, Clone)]
pub struct Validation {
    pub errors: Vec<FieldError>,
    pub request: NormalizedRequest,
    pub policy_context: Option<PolicyContextInput>,
}

/// Rendering for the `normalized` echo of a 400 body and for the hash input.
impl NormalizedRequest {
    pub fn principal_value(&self) -> Value {
        object([
            ("type", Value::Str(self.principal.kind.clone())),
            ("id", Value::Str(self.principal.id.clone())),
            ("attributes", Value::Object(self.principal.attributes.clone())),
        ])
    }

    /// The request in canonical JSON: exactly the `input` its trace_hash
    /// hashes, and what evidence stores for replay.
    pub fn to_canonical_json(&self) -> String {
        let mut out = String::with_capacity(512);
        super::trace::write_input(&mut out, self);
        out
    }

    /// Reads back a request stored as [`Self::to_value`] wrote it (the
    /// evidence's copy): every field present, of its type, nothing else.
    /// Not Kernite's validation: a stored request is already normalised,
    /// and normalising it again could change it.
    pub fn from_stored(value: Value) -> Result<NormalizedRequest, String> {
        let Value::Object(mut request) = value else { return Err("the request is not an object".into()) };
        let mut take = |field: &str| request.shift_remove(field).ok_or_else(|| format!("{field} is missing"));
        let text = |value: Value, field: &str| match value {
            Value::Str(text) => Ok(text),
            _ => Err(format!("{field} is not a string")),
        };
        let map = |value: Value, field: &str| match value {
            Value::Object(map) => Ok(map),
            _ => Err(format!("{field} is not an object")),
        };
        let workspace_id = text(take("workspace_id")?, "workspace_id")?;
        let mut principal = map(take("principal")?, "principal")?;
        let object_type = text(take("object_type")?, "object_type")?;
        let operation = text(take("operation")?, "operation")?;
        let payload = map(take("payload")?, "payload")?;
        let resource = map(take("resource")?, "resource")?;
        let context = map(take("context")?, "context")?;
        let idempotency_key = match take("idempotency_key")? {
            Value::Null => None,
            key => Some(text(key, "idempotency_key")?),
        };
        if let Some(extra) = request.keys().next() {
            return Err(format!("{extra} is not a request field"));
        }
        let mut part =
            |field: &str| principal.shift_remove(field).ok_or_else(|| format!("principal.{field} is missing"));
        let principal = Principal {
            kind: text(part("type")?, "principal.type")?,
            id: text(part("id")?, "principal.id")?,
            attributes: map(part("attributes")?, "principal.attributes")?,
        };
        Ok(NormalizedRequest {
            workspace_id,
            principal,
            object_type,
            operation,
            payload,
            resource,
            context,
            idempotency_key,
        })
    }

    /// The request as Kernite hashes it: `policy_context` is not part of it.
    pub fn to_value(&self) -> Value {
        object([
            ("workspace_id", Value::Str(self.workspace_id.clone())),
            ("principal", self.principal_value()),
            ("object_type", Value::Str(self.object_type.clone())),
            ("operation", Value::Str(self.operation.clone())),
            ("payload", Value::Object(self.payload.clone())),
            ("resource", Value::Object(self.resource.clone())),
            ("context", Value::Object(self.context.clone())),
            ("idempotency_key", optional_str(&self.idempotency_key)),
        ])
    }
}

/// Appends `key: value` when the value is present.
fn put<T>(map: &mut Map, key: &str, value: &Option<T>, render: impl FnOnce(&T) -> Value) {
    if let Some(value) = value {
        map.insert(key.into(), render(value));
    }
}

fn objects(items: &[Map]) -> Value {
    Value::Array(items.iter().cloned().map(Value::Object).collect())
}

impl PolicyInput {
    pub fn to_value(&self) -> Value {
        let mut map = Map::default();
        let text = |s: &Text| Value::Str(s.clone());
        put(&mut map, "policy_key", &self.policy_key, text);
        put(&mut map, "effect", &self.effect, |e| Value::str(e.as_str()));
        put(&mut map, "policy_version", &self.policy_version, Value::clone);
        put(&mut map, "version", &self.version, Value::clone);
        put(&mut map, "priority", &self.priority, Value::clone);
        put(&mut map, "policy_id", &self.policy_id, text);
        put(&mut map, "policy_version_id", &self.policy_version_id, text);
        put(&mut map, "policy_name", &self.policy_name, text);
        put(&mut map, "deny_reason_code", &self.deny_reason_code, text);
        put(&mut map, "deny_reason_message", &self.deny_reason_message, text);
        put(&mut map, "conditions", &self.conditions, |conditions| {
            Value::Array(
                conditions
                    .iter()
                    .map(|c| {
                        let op = match c.op {
                            ConditionOp::Eq => "eq",
                            ConditionOp::Neq => "neq",
                        };
                        object([
                            ("left", Value::Str(c.left.clone())),
                            ("op", Value::str(op)),
                            ("right", c.right.clone()),
                        ])
                    })
                    .collect(),
            )
        });
        put(&mut map, "rules", &self.rules, |rules| objects(rules));
        Value::Object(map)
    }
}

impl PolicyContextInput {
    pub fn to_value(&self) -> Value {
        let mut map = Map::default();
        let text = |s: &Text| Value::Str(s.clone());
        put(&mut map, "governed", &self.governed, |g| Value::Bool(*g));
        put(&mut map, "policy_selection_reason_code", &self.policy_selection_reason_code, text);
        put(&mut map, "governed_scopes", &self.governed_scopes, |scopes| {
            Value::Array(
                scopes
                    .iter()
                    .map(|(object_type, operation)| {
                        object([
                            ("object_type", Value::Str(object_type.clone())),
                            ("operation", Value::Str(operation.clone())),
                        ])
                    })
                    .collect(),
            )
        });
        put(&mut map, "selected_policies", &self.selected_policies, |policies| {
            Value::Array(policies.iter().map(PolicyInput::to_value).collect())
        });
        put(&mut map, "default_policy", &self.default_policy, |p| Value::Object(p.clone()));
        put(&mut map, "validation_rules", &self.validation_rules, |rules| objects(rules));
        put(&mut map, "guardrail_result", &self.guardrail_result, |g| Value::Object(g.clone()));
        put(&mut map, "no_policy_decision", &self.no_policy_decision, text);
        put(&mut map, "no_policy_reason_code", &self.no_policy_reason_code, text);
        put(&mut map, "no_policy_message", &self.no_policy_message, text);
        put(&mut map, "previous_trace_hash", &self.previous_trace_hash, text);
        put(&mut map, "combining_algorithm", &self.combining_algorithm, text);
        put(&mut map, "trace_domain", &self.trace_domain, text);
        Value::Object(map)
    }
}

impl Validation {
    /// The `normalized` object of Kernite's validation response.
    pub fn normalized_value(&self) -> Value {
        let mut value = self.request.to_value();
        if let (Value::Object(map), Some(policy_context)) = (&mut value, &self.policy_context) {
            map.insert("policy_context".into(), policy_context.to_value());
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::json::{Dialect, parse, parse_as};

    #[test]
    fn a_stored_request_reads_back_to_the_same_canonical_text() {
        let body = parse(
            r#"{"workspace_id": " W ", "principal": {"type": "user", "id": "u", "attributes": {"z": 1, "a": [1.0, 1e+20]}},
                "object_type": "Invoice", "operation": " Create ", "resource": {"big": 123456789012345678901234567890},
                "payload": {"amount": 1.5e-07, "name": "é\u2028\"", "nested": {"k": null}}, "context": {}}"#,
        )
        .unwrap();
        let request = crate::decision::validate(body, Some("key-1")).unwrap().unwrap().request;
        let stored = request.to_canonical_json();
        let read = NormalizedRequest::from_stored(parse_as(&stored, Dialect::Python).unwrap()).unwrap();
        assert_eq!(read.to_canonical_json(), stored);
        assert_eq!(read.idempotency_key.as_deref(), Some("key-1"));
        assert!(stored.contains("1e+20") && stored.contains("1.5e-07"), "{stored}");
    }

    #[test]
    fn a_stored_request_missing_a_field_or_with_one_too_many_is_refused_by_name() {
        let stored = |text: &str| NormalizedRequest::from_stored(parse(text).unwrap()).unwrap_err();
        assert_eq!(stored(r#"{"workspace_id": "w"}"#), "principal is missing");
        let whole = r#""workspace_id": "w", "principal": {"type": "t", "id": "i", "attributes": {}}, "object_type": "o",
            "operation": "p", "payload": {}, "resource": {}, "context": {}, "idempotency_key": null"#;
        assert!(NormalizedRequest::from_stored(parse(&format!("{{{whole}}}")).unwrap()).is_ok());
        assert_eq!(stored(&format!(r#"{{{whole}, "policy_context": {{}}}}"#)), "policy_context is not a request field");
        assert_eq!(
            stored(&format!("{{{}}}", whole.replace(r#""payload": {}"#, r#""payload": []"#))),
            "payload is not an object"
        );
    }
}
