//! Kernite's `core.evaluate_policy_rules`: the four rule kinds, applied to a payload.

use std::borrow::Cow;

use super::Unanswerable;
use super::map::fields;
use super::python::{FloatError, kernite_to_float, normalize_lower, normalize_string, to_str};
use super::record::{Reason, RuleEvent, RuleStatus};
use super::value::{Map, Text, Value, float_greater};

/// `[]`, what a rule without its list reads (`definition.get("fields") or []`).
static EMPTY_LIST: Value = Value::Array(Vec::new());

/// Kernite's rule path reader: an empty path reads nothing, empty tokens are
/// keys (`"a..b"` looks up `""`), lists are not indexed.
pub fn read_rule_path<'a>(payload: &'a Map, path: Option<&str>) -> &'a Value {
    let Some(path) = path.filter(|p| !p.is_empty()) else { return &Value::Null };
    if !path.contains('.') {
        return Value::or_null(payload.get(path));
    }
    let mut tokens = path.split('.');
    let first = tokens.next().expect("split yields at least one token");
    let mut current = Value::or_null(payload.get(first));
    for token in tokens {
        match current {
            Value::Object(map) => current = Value::or_null(map.get(token)),
            _ => return &Value::Null,
        }
    }
    current
}

/// Python's `for item in value` on the values Kernite iterates: lists give
/// their items (borrowed: the common case copies nothing), strings their
/// characters, objects their keys. Anything else raises TypeError in Kernite.
fn python_iter<'a>(value: &'a Value, field: &str) -> Result<Cow<'a, [Value]>, Unanswerable> {
    match value {
        Value::Array(items) => Ok(Cow::Borrowed(items)),
        Value::Str(s) => Ok(s.chars().map(|c| Value::str(c.to_string())).collect()),
        Value::Object(map) => Ok(map.keys().map(|k| Value::Str(k.clone())).collect()),
        _ => Err(Unanswerable::new(field, "Kernite 0.1.6 cannot iterate a number or boolean here")),
    }
}

/// Python's `dict(value)` for a JSON value: objects are borrowed as they
/// are, and a list of two-item pairs (two-element lists, two-character
/// strings) becomes an object, as Python builds it. Anything else raises in Kernite.
pub fn python_dict<'a>(value: &'a Value, field: &str) -> Result<Cow<'a, Map>, Unanswerable> {
    match value {
        Value::Object(map) => Ok(Cow::Borrowed(map)),
        Value::Array(pairs) => {
            let mut map = Map::default();
            for pair in pairs {
                let (key, item) = match pair {
                    Value::Array(kv) if kv.len() == 2 => (&kv[0], kv[1].clone()),
                    Value::Str(s) if s.chars().count() == 2 => {
                        let mut chars = s.chars();
                        let key = Text::from(chars.next().expect("two characters").to_string());
                        map.insert(key, Value::str(chars.next().expect("two characters").to_string()));
                        continue;
                    }
                    _ => return Err(Unanswerable::new(field, "Kernite 0.1.6 cannot make an object of this list")),
                };
                let Value::Str(key) = key else {
                    return Err(Unanswerable::new(field, "object keys built from a list must be strings"));
                };
                map.insert(key.clone(), item);
            }
            Ok(Cow::Owned(map))
        }
        _ => Err(Unanswerable::new(field, "Kernite 0.1.6 cannot make an object of this value")),
    }
}

/// The reasons and events of one list of rules applied to `payload`.
#[derive(Debug, Default)]
pub struct RulesOutcome {
    pub reasons: Vec<Reason>,
    pub events: Vec<RuleEvent>,
}

pub fn evaluate_rules(rules: &[Map], payload: &Map) -> Result<RulesOutcome, Unanswerable> {
    let mut outcome = RulesOutcome::default();
    for rule in rules {
        evaluate_rule(rule, payload, &mut outcome)?;
    }
    Ok(outcome)
}

fn evaluate_rule(rule: &Map, payload: &Map, outcome: &mut RulesOutcome) -> Result<(), Unanswerable> {
    static DEFAULT_RULE_KEY: Value = Value::Str(Text::const_new("rule"));
    fields!(rule.iter() => rule_key, rule_definition, rule_reason_code = "reason_code",
        rule_reason_message = "reason_message");
    let rule_key = to_str(Value::or_null(rule_key).or(&DEFAULT_RULE_KEY));
    let definition = match Value::or_null(rule_definition) {
        v if !v.is_truthy() => Cow::Owned(Map::default()),
        v => python_dict(v, "rule_definition")?,
    };
    fields!(definition.iter() => kind = "type", reason_code, message, field, fields, max, values);
    let [kind, reason_code, message, field, fields, max, values] =
        [kind, reason_code, message, field, fields, max, values].map(Value::or_null);
    let rule_type = normalize_lower(kind);
    let reason_code = match Value::or_null(rule_reason_code).or(reason_code) {
        v if v.is_truthy() => to_str(v),
        _ => format!("{rule_key}_denied").into(),
    };
    let reason_message = match Value::or_null(rule_reason_message).or(message) {
        v if v.is_truthy() => to_str(v),
        _ => Text::const_new("Policy rule denied the request."),
    };
    let field_path = Some(normalize_string(field)).filter(|s| !s.is_empty());

    let mut failure =
        |event_message: &'static str, code: &str, message: Text, reason_field: Option<Text>, details: Map| {
            outcome.reasons.push(Reason {
                code: code.into(),
                message,
                rule_key: Value::Str(rule_key.clone()),
                field_path: reason_field.map_or(Value::Null, Value::Str),
                details: details.clone(),
            });
            RuleEvent {
                rule_key: Some(rule_key.clone()),
                rule_type: rule_type.clone(),
                status: RuleStatus::Failed,
                message: Text::const_new(event_message),
                reason_code: Some(code.into()),
                field_path: field_path.clone(),
                details,
            }
        };
    let path_value = || field_path.clone().map_or(Value::Null, Value::Str);

    let failed_event = match rule_type.as_str() {
        "required_fields" => {
            let fields = python_iter(fields.or(&EMPTY_LIST), "rule_definition.fields")?;
            let missing: Vec<Value> = fields
                .iter()
                .map(to_str)
                .filter(|field| is_missing(read_rule_path(payload, Some(field))))
                .map(Value::str)
                .collect();
            (!missing.is_empty()).then(|| {
                let details = Map::from_iter([("missing_fields".into(), Value::Array(missing))]);
                failure("Missing required fields", &reason_code, reason_message.clone(), None, details)
            })
        }
        "max_value" => {
            let to_float = |v: &Value| {
                kernite_to_float(v).map_err(|FloatError::Overflow| {
                    Unanswerable::new("rule_definition.max", "an integer beyond the float range cannot be compared")
                })
            };
            let max = to_float(max)?;
            let current = to_float(read_rule_path(payload, field_path.as_deref()))?;
            let float_or_null = |f: Option<f64>| f.map_or(Value::Null, Value::Float);
            match (current, max) {
                (Some(current), Some(max)) if !float_greater(current, max) => None,
                (Some(current), Some(max)) => {
                    let details = Map::from_iter([
                        ("field".into(), path_value()),
                        ("current".into(), Value::Float(current)),
                        ("max".into(), Value::Float(max)),
                    ]);
                    Some(failure(
                        "Value exceeds max",
                        &reason_code,
                        reason_message.clone(),
                        field_path.clone(),
                        details,
                    ))
                }
                _ => {
                    let details = Map::from_iter([("field".into(), path_value()), ("max".into(), float_or_null(max))]);
                    Some(failure(
                        "Rule or payload is not numeric",
                        &reason_code,
                        reason_message.clone(),
                        field_path.clone(),
                        details,
                    ))
                }
            }
        }
        "allowed_values" => {
            let allowed = python_iter(values.or(&EMPTY_LIST), "rule_definition.values")?;
            let current = read_rule_path(payload, field_path.as_deref());
            (!allowed.contains(current)).then(|| {
                let details = Map::from_iter([
                    ("field".into(), path_value()),
                    ("current".into(), current.clone()),
                    ("allowed_values".into(), Value::Array(allowed.into_owned())),
                ]);
                failure("Value is not allowed", &reason_code, reason_message.clone(), field_path.clone(), details)
            })
        }
        _ => {
            let details = Map::from_iter([("rule_type".into(), Value::str(rule_type.as_str()))]);
            let message = format!("Unsupported rule type: {rule_type}").into();
            Some(failure("Unsupported rule type", "unsupported_rule_type", message, field_path.clone(), details))
        }
    };

    outcome.events.push(failed_event.unwrap_or_else(|| RuleEvent {
        rule_key: Some(rule_key.clone()),
        rule_type: rule_type.clone(),
        status: RuleStatus::Passed,
        message: Text::const_new("Rule passed"),
        reason_code: None,
        field_path: field_path.clone(),
        details: Map::default(),
    }));
    Ok(())
}

/// `required_fields` treats `None`, `""` and `[]` as missing, by Python `==`.
fn is_missing(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Str(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::json::parse;

    fn object(text: &str) -> Map {
        parse(text).unwrap().as_object().unwrap().clone()
    }

    #[test]
    fn rule_paths_keep_empty_tokens_and_do_not_index_lists() {
        let payload = object(r#"{"a": {"": {"b": 1}}, "list": [1, 2]}"#);
        assert_eq!(read_rule_path(&payload, Some("a..b")), &Value::Int(1));
        assert!(read_rule_path(&payload, Some("")).is_null());
        assert!(read_rule_path(&payload, Some("list.0")).is_null());
    }

    #[test]
    fn allowed_values_uses_python_membership() {
        let payload = object(r#"{"flag": true, "n": "1"}"#);
        let rules = [
            object(r#"{"rule_definition": {"type": "allowed_values", "field": "flag", "values": [1]}}"#),
            object(r#"{"rule_definition": {"type": "allowed_values", "field": "n", "values": [1]}}"#),
            object(r#"{"rule_definition": {"type": "allowed_values", "field": "missing", "values": [null]}}"#),
        ];
        let outcome = evaluate_rules(&rules, &payload).unwrap();
        let statuses: Vec<_> = outcome.events.iter().map(|e| e.status).collect();
        assert_eq!(statuses, [RuleStatus::Passed, RuleStatus::Failed, RuleStatus::Passed]);
    }

    #[test]
    fn max_value_passes_when_nan_is_involved_and_fails_on_non_numbers() {
        let payload = object(r#"{"amount": "nan", "text": "abc", "big": 5}"#);
        let rules = [
            object(r#"{"rule_definition": {"type": "max_value", "field": "amount", "max": 1}}"#),
            object(r#"{"rule_definition": {"type": "max_value", "field": "text", "max": 1}}"#),
            object(r#"{"rule_definition": {"type": "max_value", "field": "big", "max": "4.5"}}"#),
        ];
        let outcome = evaluate_rules(&rules, &payload).unwrap();
        let codes: Vec<_> = outcome.reasons.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["rule_denied", "rule_denied"]);
        assert_eq!(outcome.events[0].status, RuleStatus::Passed);
        assert_eq!(outcome.events[2].message, "Value exceeds max");
    }

    #[test]
    fn kernite_crashes_become_unanswerable_errors() {
        let payload = object(r#"{"a": 1}"#);
        let beyond_float_range = format!("1{}", "0".repeat(400));
        for rule in [
            r#"{"rule_definition": {"type": "required_fields", "fields": 5}}"#.to_owned(),
            r#"{"rule_definition": {"type": "allowed_values", "values": true}}"#.to_owned(),
            r#"{"rule_definition": "xy"}"#.to_owned(),
            format!(r#"{{"rule_definition": {{"type": "max_value", "field": "a", "max": {beyond_float_range}}}}}"#),
        ] {
            assert!(evaluate_rules(&[object(&rule)], &payload).is_err(), "{rule}");
        }
    }

    #[test]
    fn rule_definitions_may_be_lists_of_pairs_as_python_dict_allows() {
        let payload = Map::default();
        let rule = object(r#"{"rule_definition": [["type", "required_fields"], "xy", ["fields", ["x"]]]}"#);
        let outcome = evaluate_rules(&[rule], &payload).unwrap();
        assert_eq!(outcome.reasons[0].details.get("missing_fields"), Some(&Value::Array(vec![Value::str("x")])));
    }
}
