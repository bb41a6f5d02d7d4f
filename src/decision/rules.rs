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

/// The payload paths a list of rules reads, as its rules would look them up
/// (dotted, payload-relative), read the way [`evaluate_rules`] reads the
/// rules; a rule Kernite could not read is an error, as it is when deciding.
pub fn paths_read(rules: &[Map]) -> Result<Vec<Text>, Unanswerable> {
    let mut paths = Vec::new();
    for rule in rules {
        with_rule(rule, |rule| {
            match rule.kind.as_str() {
                "required_fields" => {
                    let fields = python_iter(rule.fields.or(&EMPTY_LIST), "rule_definition.fields")?;
                    paths.extend(fields.iter().map(to_str));
                }
                "max_value" | "allowed_values" => paths.extend(rule.field_path.clone()),
                // An unsupported rule denies without reading the payload.
                _ => {}
            }
            Ok(())
        })?;
    }
    Ok(paths)
}

/// Reads one rule as Kernite does, and hands it to `use_rule`.
fn with_rule<T>(rule: &Map, use_rule: impl FnOnce(&Rule<'_>) -> Result<T, Unanswerable>) -> Result<T, Unanswerable> {
    fields!(rule.iter() => rule_key, rule_definition, rule_reason_code = "reason_code",
        rule_reason_message = "reason_message");
    let definition = match Value::or_null(rule_definition) {
        v if !v.is_truthy() => Cow::Owned(Map::default()),
        v => python_dict(v, "rule_definition")?,
    };
    use_rule(&Rule::read(rule_key, rule_reason_code, rule_reason_message, &definition))
}

fn evaluate_rule(rule: &Map, payload: &Map, outcome: &mut RulesOutcome) -> Result<(), Unanswerable> {
    with_rule(rule, |rule| evaluate_read_rule(rule, payload, outcome))
}

fn evaluate_read_rule(rule: &Rule<'_>, payload: &Map, outcome: &mut RulesOutcome) -> Result<(), Unanswerable> {
    let event = match rule.check(payload)? {
        Some(failure) => rule.failed(failure, &mut outcome.reasons),
        None => rule.event(RuleStatus::Passed, Text::const_new("Rule passed"), None, Map::default()),
    };
    outcome.events.push(event);
    Ok(())
}

/// A rule as Kernite reads it: its key, type, reason and the field it checks.
struct Rule<'r> {
    key: Text,
    kind: Text,
    reason_code: Text,
    reason_message: Text,
    field_path: Option<Text>,
    fields: &'r Value,
    max: &'r Value,
    values: &'r Value,
}

/// How a rule failed: its event's message, and the reason it gives.
struct Failure {
    event_message: &'static str,
    code: Text,
    message: Text,
    field: Option<Text>,
    details: Map,
}

impl<'r> Rule<'r> {
    fn read(
        rule_key: Option<&Value>,
        rule_reason_code: Option<&Value>,
        rule_reason_message: Option<&Value>,
        definition: &'r Map,
    ) -> Rule<'r> {
        static DEFAULT_RULE_KEY: Value = Value::Str(Text::const_new("rule"));
        let key = to_str(Value::or_null(rule_key).or(&DEFAULT_RULE_KEY));
        fields!(definition.iter() => kind = "type", reason_code, message, field, fields, max, values);
        let [kind, reason_code, message, field, fields, max, values] =
            [kind, reason_code, message, field, fields, max, values].map(Value::or_null);
        let reason_code = match Value::or_null(rule_reason_code).or(reason_code) {
            v if v.is_truthy() => to_str(v),
            _ => format!("{key}_denied").into(),
        };
        let reason_message = match Value::or_null(rule_reason_message).or(message) {
            v if v.is_truthy() => to_str(v),
            _ => Text::const_new("Policy rule denied the request."),
        };
        let field_path = Some(normalize_string(field)).filter(|s| !s.is_empty());
        Rule { key, kind: normalize_lower(kind), reason_code, reason_message, field_path, fields, max, values }
    }

    /// Checks the payload; `None` when the rule passes.
    fn check(&self, payload: &Map) -> Result<Option<Failure>, Unanswerable> {
        match self.kind.as_str() {
            "required_fields" => self.required_fields(payload),
            "max_value" => self.max_value(payload),
            "allowed_values" => self.allowed_values(payload),
            _ => {
                let details = Map::from_iter([("rule_type".into(), Value::str(self.kind.as_str()))]);
                Ok(Some(Failure {
                    event_message: "Unsupported rule type",
                    code: Text::const_new("unsupported_rule_type"),
                    message: format!("Unsupported rule type: {}", self.kind).into(),
                    field: self.field_path.clone(),
                    details,
                }))
            }
        }
    }

    fn required_fields(&self, payload: &Map) -> Result<Option<Failure>, Unanswerable> {
        let fields = python_iter(self.fields.or(&EMPTY_LIST), "rule_definition.fields")?;
        let missing: Vec<Value> = fields
            .iter()
            .map(to_str)
            .filter(|field| is_missing(read_rule_path(payload, Some(field))))
            .map(Value::str)
            .collect();
        Ok((!missing.is_empty()).then(|| {
            let details = Map::from_iter([("missing_fields".into(), Value::Array(missing))]);
            self.failure("Missing required fields", None, details)
        }))
    }

    fn max_value(&self, payload: &Map) -> Result<Option<Failure>, Unanswerable> {
        let to_float = |v: &Value| {
            kernite_to_float(v).map_err(|FloatError::Overflow| {
                Unanswerable::new("rule_definition.max", "an integer beyond the float range cannot be compared")
            })
        };
        let max = to_float(self.max)?;
        let current = to_float(read_rule_path(payload, self.field_path.as_deref()))?;
        Ok(match (current, max) {
            (Some(current), Some(max)) if !float_greater(current, max) => None,
            (Some(current), Some(max)) => {
                let details = Map::from_iter([
                    ("field".into(), self.path_value()),
                    ("current".into(), Value::Float(current)),
                    ("max".into(), Value::Float(max)),
                ]);
                Some(self.failure("Value exceeds max", self.field_path.clone(), details))
            }
            _ => {
                let max = max.map_or(Value::Null, Value::Float);
                let details = Map::from_iter([("field".into(), self.path_value()), ("max".into(), max)]);
                Some(self.failure("Rule or payload is not numeric", self.field_path.clone(), details))
            }
        })
    }

    fn allowed_values(&self, payload: &Map) -> Result<Option<Failure>, Unanswerable> {
        let allowed = python_iter(self.values.or(&EMPTY_LIST), "rule_definition.values")?;
        let current = read_rule_path(payload, self.field_path.as_deref());
        Ok((!allowed.contains(current)).then(|| {
            let details = Map::from_iter([
                ("field".into(), self.path_value()),
                ("current".into(), current.clone()),
                ("allowed_values".into(), Value::Array(allowed.into_owned())),
            ]);
            self.failure("Value is not allowed", self.field_path.clone(), details)
        }))
    }

    /// A failure with the rule's own reason code and message.
    fn failure(&self, event_message: &'static str, field: Option<Text>, details: Map) -> Failure {
        Failure { event_message, code: self.reason_code.clone(), message: self.reason_message.clone(), field, details }
    }

    fn path_value(&self) -> Value {
        self.field_path.clone().map_or(Value::Null, Value::Str)
    }

    /// A failure's reason, added to `reasons`, and its event.
    fn failed(&self, failure: Failure, reasons: &mut Vec<Reason>) -> RuleEvent {
        let Failure { event_message, code, message, field, details } = failure;
        reasons.push(Reason {
            code: code.clone(),
            message,
            rule_key: Value::Str(self.key.clone()),
            field_path: field.map_or(Value::Null, Value::Str),
            details: details.clone(),
        });
        self.event(RuleStatus::Failed, Text::const_new(event_message), Some(code), details)
    }

    fn event(&self, status: RuleStatus, message: Text, reason_code: Option<Text>, details: Map) -> RuleEvent {
        RuleEvent {
            rule_key: Some(self.key.clone()),
            rule_type: self.kind.clone(),
            status,
            message,
            reason_code,
            field_path: self.field_path.clone(),
            details,
        }
    }
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
