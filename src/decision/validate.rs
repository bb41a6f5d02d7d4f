//! Kernite's `validate_execute_request`: check the body, collect every error
//! in Kernite's order, and normalise what is valid.
//!
//! Validation also prunes: unknown policy keys are dropped, numeric policy
//! fields become integers, invalid conditions are removed. Evaluation runs on
//! the pruned form, so it is the input of [`super::evaluate`].

use std::fmt::Display;

use super::Unanswerable;
use super::map::fields;
use super::python::{IntError, normalize_lower, normalize_string, to_int};
use super::record::{object, optional_str};
use super::value::{Map, Text, Value};

/// The operations Kernite accepts, in the order its error message lists them.
pub const OPERATIONS: [&str; 6] = ["activate", "archive", "associate", "create", "delete", "update"];

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

struct Errors(Vec<FieldError>);

impl Errors {
    /// Field names are `Display` so that a valid request never spells them.
    fn push(&mut self, field: impl Display, code: ErrorCode, message: impl Into<String>) {
        self.0.push(FieldError { field: field.to_string(), code, message: message.into() });
    }
}

/// Validates a request body as Kernite 0.1.6 does. The body is consumed:
/// its payload, attributes and policies move into the result uncopied.
pub fn validate(body: Value, idempotency_key: Option<&str>) -> Result<Validation, Unanswerable> {
    let mut errors = Errors(Vec::new());
    let body = match body {
        Value::Object(map) => map,
        _ => {
            errors.push("body", ErrorCode::InvalidType, "Request body must be an object.");
            Map::default()
        }
    };
    fields!(body => workspace_id, object_type, operation, payload, principal, resource, context, policy_context);
    let take = |field: Option<Value>| field.unwrap_or(Value::Null);

    let workspace_id = normalize_string(&take(workspace_id));
    let object_type = normalize_lower(&take(object_type));
    let operation = normalize_lower(&take(operation));

    if workspace_id.is_empty() {
        errors.push("workspace_id", ErrorCode::Required, "workspace_id is required.");
    }
    if object_type.is_empty() {
        errors.push("object_type", ErrorCode::Required, "object_type is required.");
    }
    if operation.is_empty() {
        errors.push("operation", ErrorCode::Required, "operation is required.");
    } else if !OPERATIONS.contains(&operation.as_str()) {
        errors.push(
            "operation",
            ErrorCode::InvalidValue,
            format!("operation must be one of: {}", OPERATIONS.join(", ")),
        );
    }

    let payload = match take(payload) {
        Value::Object(payload) => payload,
        _ => {
            errors.push("payload", ErrorCode::InvalidType, "payload must be an object.");
            Map::default()
        }
    };

    let raw_principal = take(principal);
    let mut principal = Principal { kind: Text::default(), id: Text::default(), attributes: Map::default() };
    match raw_principal {
        Value::Object(mut raw) => {
            principal.kind = normalize_lower(Value::or_null(raw.get("type")));
            principal.id = normalize_string(Value::or_null(raw.get("id")));
            if principal.kind.is_empty() {
                errors.push("principal.type", ErrorCode::Required, "principal.type is required.");
            }
            if principal.id.is_empty() {
                errors.push("principal.id", ErrorCode::Required, "principal.id is required.");
            }
            match raw.swap_remove("attributes").unwrap_or(Value::Null) {
                Value::Null => {}
                Value::Object(attributes) => principal.attributes = attributes,
                _ => errors.push(
                    "principal.attributes",
                    ErrorCode::InvalidType,
                    "principal.attributes must be an object.",
                ),
            }
        }
        _ => errors.push("principal", ErrorCode::InvalidType, "principal must be an object."),
    }

    let resource = optional_object(take(resource), "resource", &mut errors);
    let context = optional_object(take(context), "context", &mut errors);

    let policy_context = match take(policy_context) {
        Value::Null => None,
        Value::Object(raw) => Some(validate_policy_context(raw, &mut errors)?),
        _ => {
            errors.push("policy_context", ErrorCode::InvalidType, "policy_context must be an object.");
            None
        }
    };

    Ok(Validation {
        errors: errors.0,
        request: NormalizedRequest {
            workspace_id,
            principal,
            object_type,
            operation,
            payload,
            resource,
            context,
            idempotency_key: idempotency_key.map(Text::from),
        },
        policy_context,
    })
}

fn optional_object(value: Value, field: &str, errors: &mut Errors) -> Map {
    match value {
        Value::Null => Map::default(),
        Value::Object(map) => map,
        _ => {
            errors.push(field, ErrorCode::InvalidType, format!("{field} must be an object."));
            Map::default()
        }
    }
}

/// A field that must be a non-empty string once normalised, when present.
fn non_empty_string(value: Option<&Value>, field: impl Display, errors: &mut Errors) -> Option<Text> {
    let value = value.filter(|v| !v.is_null())?;
    let normalized = normalize_string(value);
    if normalized.is_empty() {
        errors.push(&field, ErrorCode::InvalidValue, format!("{field} must be a non-empty string."));
        return None;
    }
    Some(normalized)
}

/// An array of objects, each kept as sent.
fn object_list(value: Value, field: impl Display, errors: &mut Errors) -> Option<Vec<Map>> {
    let items = match value {
        Value::Null => return None,
        Value::Array(items) => items,
        _ => {
            errors.push(&field, ErrorCode::InvalidType, format!("{field} must be an array."));
            return None;
        }
    };
    let mut objects = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        match item {
            Value::Object(map) => objects.push(map),
            _ => {
                errors.push(
                    format_args!("{field}[{index}]"),
                    ErrorCode::InvalidType,
                    format!("{field}[{index}] must be an object."),
                );
            }
        }
    }
    Some(objects)
}

/// Validates a `policy_context` object on its own, as it would be inside a
/// request: for policies that come from elsewhere (an operator's bundle).
pub fn policy_context(raw: Map) -> Result<Result<PolicyContextInput, Vec<FieldError>>, Unanswerable> {
    let mut errors = Errors(Vec::new());
    let context = validate_policy_context(raw, &mut errors)?;
    Ok(if errors.0.is_empty() { Ok(context) } else { Err(errors.0) })
}

fn validate_policy_context(raw: Map, errors: &mut Errors) -> Result<PolicyContextInput, Unanswerable> {
    fields!(raw => governed, policy_selection_reason_code, governed_scopes, selected_policies, default_policy,
        validation_rules, guardrail_result, no_policy_decision, no_policy_reason_code, no_policy_message,
        previous_trace_hash, combining_algorithm, trace_domain);
    let take = |field: Option<Value>| field.unwrap_or(Value::Null);
    let mut normalized = PolicyContextInput::default();

    match Value::or_null(governed.as_ref()) {
        Value::Null => {}
        Value::Bool(governed) => normalized.governed = Some(*governed),
        _ => {
            errors.push(
                "policy_context.governed",
                ErrorCode::InvalidType,
                "policy_context.governed must be a boolean.",
            );
        }
    }

    normalized.policy_selection_reason_code =
        non_empty_string(policy_selection_reason_code.as_ref(), "policy_context.policy_selection_reason_code", errors);

    match Value::or_null(governed_scopes.as_ref()) {
        Value::Null => {}
        Value::Array(scopes) => {
            let mut normalized_scopes = Vec::with_capacity(scopes.len());
            for (index, scope) in scopes.iter().enumerate() {
                let field = || format!("policy_context.governed_scopes[{index}]");
                let Value::Object(scope) = scope else {
                    let field = field();
                    errors.push(&field, ErrorCode::InvalidType, format!("{field} must be an object."));
                    continue;
                };
                let object_type = normalize_lower(Value::or_null(scope.get("object_type")));
                let operation = normalize_lower(Value::or_null(scope.get("operation")));
                if object_type.is_empty() || operation.is_empty() {
                    let field = field();
                    errors.push(
                        &field,
                        ErrorCode::InvalidValue,
                        format!("{field} must include object_type and operation."),
                    );
                    continue;
                }
                normalized_scopes.push((object_type, operation));
            }
            normalized.governed_scopes = Some(normalized_scopes);
        }
        _ => errors.push(
            "policy_context.governed_scopes",
            ErrorCode::InvalidType,
            "policy_context.governed_scopes must be an array.",
        ),
    }

    match take(selected_policies) {
        Value::Null => {}
        Value::Array(policies) => {
            let mut normalized_policies = Vec::with_capacity(policies.len());
            for (index, policy) in policies.into_iter().enumerate() {
                let field = format_args!("policy_context.selected_policies[{index}]");
                match policy {
                    Value::Object(policy) => normalized_policies.push(validate_policy(policy, field, errors)?),
                    _ => errors.push(field, ErrorCode::InvalidType, format!("{field} must be an object.")),
                }
            }
            normalized.selected_policies = Some(normalized_policies);
        }
        _ => errors.push(
            "policy_context.selected_policies",
            ErrorCode::InvalidType,
            "policy_context.selected_policies must be an array.",
        ),
    }

    match take(default_policy) {
        Value::Null => {}
        Value::Object(policy) => normalized.default_policy = Some(policy),
        _ => errors.push(
            "policy_context.default_policy",
            ErrorCode::InvalidType,
            "policy_context.default_policy must be an object.",
        ),
    }

    normalized.validation_rules = object_list(take(validation_rules), "policy_context.validation_rules", errors);

    match take(guardrail_result) {
        Value::Null => {}
        Value::Object(result) => normalized.guardrail_result = Some(result),
        _ => errors.push(
            "policy_context.guardrail_result",
            ErrorCode::InvalidType,
            "policy_context.guardrail_result must be an object.",
        ),
    }

    if let Some(decision) = no_policy_decision.filter(|v| !v.is_null()) {
        let decision = normalize_lower(&decision);
        if decision == "approved" || decision == "denied" {
            normalized.no_policy_decision = Some(decision);
        } else {
            errors.push(
                "policy_context.no_policy_decision",
                ErrorCode::InvalidValue,
                "policy_context.no_policy_decision must be one of: approved, denied.",
            );
        }
    }

    let mut string_field = |value: Option<Value>, key: &str| {
        non_empty_string(value.as_ref(), format_args!("policy_context.{key}"), errors)
    };
    normalized.no_policy_reason_code = string_field(no_policy_reason_code, "no_policy_reason_code");
    normalized.no_policy_message = string_field(no_policy_message, "no_policy_message");
    normalized.previous_trace_hash = string_field(previous_trace_hash, "previous_trace_hash");
    normalized.combining_algorithm = string_field(combining_algorithm, "combining_algorithm");
    normalized.trace_domain = string_field(trace_domain, "trace_domain");

    Ok(normalized)
}

fn validate_policy(raw: Map, field: std::fmt::Arguments<'_>, errors: &mut Errors) -> Result<PolicyInput, Unanswerable> {
    fields!(raw => policy_key, effect, policy_version, version, priority, policy_id, policy_version_id,
        policy_name, deny_reason_code, deny_reason_message, conditions, rules);
    let mut policy = PolicyInput {
        policy_key: non_empty_string(policy_key.as_ref(), format_args!("{field}.policy_key"), errors),
        ..PolicyInput::default()
    };

    if let Some(effect) = effect.filter(|v| !v.is_null()) {
        match normalize_lower(&effect).as_str() {
            "allow" => policy.effect = Some(Effect::Allow),
            "deny" => policy.effect = Some(Effect::Deny),
            _ => errors.push(
                format!("{field}.effect"),
                ErrorCode::InvalidValue,
                format!("{field}.effect must be one of: allow, deny."),
            ),
        }
    }

    for (key, raw_number, slot) in [
        ("policy_version", policy_version, &mut policy.policy_version),
        ("version", version, &mut policy.version),
        ("priority", priority, &mut policy.priority),
    ] {
        let Some(raw_number) = raw_number.filter(|v| !v.is_null()) else { continue };
        match to_int(&raw_number) {
            Ok(number) => *slot = Some(number),
            Err(IntError::Invalid) => errors.push(
                format!("{field}.{key}"),
                ErrorCode::InvalidType,
                format!("{field}.{key} must be an integer."),
            ),
            Err(IntError::Overflow) => {
                return Err(Unanswerable::new(format!("{field}.{key}"), "an infinite number cannot be an integer"));
            }
        }
    }

    // Empty identifiers are dropped silently, unlike the deny fields below.
    for (value, slot) in [
        (policy_id, &mut policy.policy_id),
        (policy_version_id, &mut policy.policy_version_id),
        (policy_name, &mut policy.policy_name),
    ] {
        if let Some(value) = value {
            *slot = Some(normalize_string(&value)).filter(|s| !s.is_empty());
        }
    }

    policy.deny_reason_code =
        non_empty_string(deny_reason_code.as_ref(), format_args!("{field}.deny_reason_code"), errors);
    policy.deny_reason_message =
        non_empty_string(deny_reason_message.as_ref(), format_args!("{field}.deny_reason_message"), errors);

    match conditions.unwrap_or(Value::Null) {
        Value::Null => {}
        Value::Array(conditions) => {
            policy.conditions = Some(validate_conditions(conditions, format_args!("{field}.conditions"), errors));
        }
        _ => errors.push(
            format!("{field}.conditions"),
            ErrorCode::InvalidType,
            format!("{field}.conditions must be an array."),
        ),
    }

    policy.rules = object_list(rules.unwrap_or(Value::Null), format_args!("{field}.rules"), errors);
    Ok(policy)
}

fn validate_conditions(conditions: Vec<Value>, field: impl Display, errors: &mut Errors) -> Vec<Condition> {
    let mut valid = Vec::with_capacity(conditions.len());
    for (index, condition) in conditions.into_iter().enumerate() {
        let field = format!("{field}[{index}]");
        let Value::Object(mut condition) = condition else {
            errors.push(&field, ErrorCode::InvalidType, format!("{field} must be an object."));
            continue;
        };
        let left = normalize_string(Value::or_null(condition.get("left")));
        let op = match normalize_lower(Value::or_null(condition.get("op"))).as_str() {
            "eq" => Some(ConditionOp::Eq),
            "neq" => Some(ConditionOp::Neq),
            _ => None,
        };
        if left.is_empty() {
            errors.push(format!("{field}.left"), ErrorCode::Required, format!("{field}.left is required."));
        }
        if op.is_none() {
            errors.push(format!("{field}.op"), ErrorCode::InvalidValue, format!("{field}.op must be one of: eq, neq."));
        }
        let Some(right) = condition.swap_remove("right") else {
            errors.push(format!("{field}.right"), ErrorCode::Required, format!("{field}.right is required."));
            continue;
        };
        if let (false, Some(op)) = (left.is_empty(), op) {
            valid.push(Condition { left, op, right });
        }
    }
    valid
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
