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
use super::request::{
    Condition, ConditionOp, Effect, ErrorCode, FieldError, NormalizedRequest, PolicyContextInput, PolicyInput,
    Principal, Validation,
};
use super::value::{Map, Text, Value};

/// The operations Kernite accepts, in the order its error message lists them.
pub const OPERATIONS: [&str; 6] = ["activate", "archive", "associate", "create", "delete", "update"];

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

    let resource = optional_object(take(resource), "resource", &mut errors).unwrap_or_default();
    let context = optional_object(take(context), "context", &mut errors).unwrap_or_default();

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

    normalized.governed_scopes = governed_scopes_of(Value::or_null(governed_scopes.as_ref()), errors);
    normalized.selected_policies = selected_policies_of(take(selected_policies), errors)?;
    normalized.default_policy = optional_object(take(default_policy), "policy_context.default_policy", errors);
    normalized.validation_rules = object_list(take(validation_rules), "policy_context.validation_rules", errors);

    normalized.guardrail_result = optional_object(take(guardrail_result), "policy_context.guardrail_result", errors);

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

/// `policy_context.governed_scopes`: each an object naming its object type and operation.
fn governed_scopes_of(value: &Value, errors: &mut Errors) -> Option<Vec<(Text, Text)>> {
    match value {
        Value::Null => None,
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
            Some(normalized_scopes)
        }
        _ => {
            errors.push(
                "policy_context.governed_scopes",
                ErrorCode::InvalidType,
                "policy_context.governed_scopes must be an array.",
            );
            None
        }
    }
}

/// `policy_context.selected_policies`: each a policy ([`validate_policy`]).
fn selected_policies_of(value: Value, errors: &mut Errors) -> Result<Option<Vec<PolicyInput>>, Unanswerable> {
    match value {
        Value::Null => Ok(None),
        Value::Array(policies) => {
            let mut normalized_policies = Vec::with_capacity(policies.len());
            for (index, policy) in policies.into_iter().enumerate() {
                let field = format_args!("policy_context.selected_policies[{index}]");
                match policy {
                    Value::Object(policy) => normalized_policies.push(validate_policy(policy, field, errors)?),
                    _ => errors.push(field, ErrorCode::InvalidType, format!("{field} must be an object.")),
                }
            }
            Ok(Some(normalized_policies))
        }
        _ => {
            errors.push(
                "policy_context.selected_policies",
                ErrorCode::InvalidType,
                "policy_context.selected_policies must be an array.",
            );
            Ok(None)
        }
    }
}

/// An optional object field: `None` when null or absent, or (with an error) of another type.
fn optional_object(value: Value, field: &str, errors: &mut Errors) -> Option<Map> {
    match value {
        Value::Null => None,
        Value::Object(object) => Some(object),
        _ => {
            errors.push(field, ErrorCode::InvalidType, format!("{field} must be an object."));
            None
        }
    }
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
