//! `kernite check`: whether every write operation of an OpenAPI document is
//! governed, as Kernite's `policy_check.py` decides it. An operation needs an
//! `x-kernite` extension with a policy key; given an operation map, the map
//! must list it with the same scope, mode and key; given a bundle, the bundle
//! must hold its policy. Not strict, the coverage findings are warnings.

use std::collections::{HashMap, HashSet};

use super::OpenApiError;
use super::openapi::{self, MODES, slugify};
use crate::decision::python::{normalize_lower, normalize_string};
use crate::decision::value::object;
use crate::decision::{Map, Value};

/// The findings that only say something is not covered: warnings when not strict.
const COVERAGE_CODES: [&str; 4] =
    ["missing_x_kernite", "missing_policy_key", "mapping_missing_operation", "bundle_missing_policy"];

const INVALID_FIELD: &str = "invalid_x_kernite_field";

/// One finding of the report.
struct Violation {
    code: &'static str,
    message: String,
    field: String,
    /// The operation it is about, when it is about one: path, method, operation id.
    at: Option<(String, &'static str, String)>,
}

impl Violation {
    fn new(code: &'static str, message: impl Into<String>, field: impl Into<String>) -> Violation {
        Violation { code, message: message.into(), field: field.into(), at: None }
    }

    fn sort_key(&self) -> (&str, &str, &str, &str) {
        let (path, method) = self.at.as_ref().map_or(("", ""), |(path, method, _)| (path.as_str(), *method));
        (path, method, &self.field, self.code)
    }

    fn into_value(self) -> Value {
        let mut map = Map::with_capacity(6);
        map.insert("code".into(), Value::str(self.code));
        map.insert("message".into(), Value::str(self.message));
        map.insert("field".into(), Value::str(self.field));
        if let Some((path, method, operation_id)) = self.at {
            // Kernite leaves out the empty ones.
            for (key, value) in [("path", path), ("method", method.to_owned()), ("operation_id", operation_id)] {
                if !value.is_empty() {
                    map.insert(key.into(), Value::str(value));
                }
            }
        }
        Value::Object(map)
    }
}

/// How an operation is named in an operation map.
fn operation_key(method: &str, path: &str) -> String {
    let method = normalize_lower(&Value::str(method));
    let path = normalize_string(&Value::str(path));
    format!("{method} {path}")
}

/// The entries of the array `name.key` of an optional object (`Null`: not
/// given), each an object, with its field name (`mapping.operations[2]`);
/// Kernite's violations for what is not so.
fn entries_of<'v>(value: &'v Value, name: &str, key: &str, violations: &mut Vec<Violation>) -> Vec<(String, &'v Map)> {
    let entries = match value {
        Value::Null => return Vec::new(),
        Value::Object(object) => object.get(key),
        _ => {
            violations.push(Violation::new(INVALID_FIELD, format!("{name} must be an object."), name));
            return Vec::new();
        }
    };
    let Some(Value::Array(entries)) = entries else {
        let field = format!("{name}.{key}");
        violations.push(Violation::new(INVALID_FIELD, format!("{field} must be an array."), field));
        return Vec::new();
    };
    let mut objects = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let field = format!("{name}.{key}[{index}]");
        match entry {
            Value::Object(entry) => objects.push((field, entry)),
            _ => violations.push(Violation::new(INVALID_FIELD, format!("{field} must be an object."), field)),
        }
    }
    objects
}

/// The operation map's entries by operation, and what is wrong with it.
fn read_mapping(mapping: &Value, violations: &mut Vec<Violation>) -> HashMap<String, Map> {
    let mut entries = HashMap::new();
    for (field, item) in entries_of(mapping, "mapping", "operations", violations) {
        let path = normalize_string(Value::or_null(item.get("path")));
        let method = normalize_lower(Value::or_null(item.get("method")));
        if path.is_empty() || method.is_empty() {
            violations.push(Violation::new(INVALID_FIELD, format!("{field} must include path and method."), field));
            continue;
        }
        entries.insert(operation_key(&method, &path), item.clone());
    }
    entries
}

/// The bundle's policy keys, and what is wrong with it.
fn read_bundle(bundle: &Value, violations: &mut Vec<Violation>) -> HashSet<String> {
    let mut keys = HashSet::new();
    for (field, policy) in entries_of(bundle, "bundle", "policies", violations) {
        let key = normalize_string(Value::or_null(policy.get("policy_key")));
        if key.is_empty() {
            let message = format!("{field}.policy_key must be a non-empty string.");
            violations.push(Violation::new(INVALID_FIELD, message, format!("{field}.policy_key")));
            continue;
        }
        if !matches!(policy.get("rules"), None | Some(Value::Null | Value::Array(_))) {
            let message = format!("{field}.rules must be an array.");
            violations.push(Violation::new(INVALID_FIELD, message, format!("{field}.rules")));
        }
        keys.insert(key.into());
    }
    keys
}

/// Kernite's `check_policy_coverage`: its report. `mapping` and `bundle` are
/// `Null` when not given.
pub fn coverage(openapi: &Value, mapping: &Value, bundle: &Value, strict: bool) -> Result<Value, OpenApiError> {
    let document = openapi::ensure_document(openapi)?;
    let operations = openapi::write_operations(document, "enforce")?;
    let mut violations = Vec::new();
    let mapping_entries = read_mapping(mapping, &mut violations);
    let bundle_keys = read_bundle(bundle, &mut violations);

    for operation in &operations {
        let at = (operation.path.to_owned(), operation.method, operation.operation_id.clone());
        let mut found = |code: &'static str, message: &str, field: &str| {
            violations.push(Violation {
                code,
                message: message.to_owned(),
                field: field.to_owned(),
                at: Some(at.clone()),
            });
        };
        if !operation.has_x_kernite {
            found("missing_x_kernite", "Write operation is missing required x-kernite extension.", "x-kernite");
        }
        for error in &operation.extension_errors {
            found(INVALID_FIELD, error.message, error.field);
        }
        let governed = operation.governed;
        let mode = if MODES.contains(&operation.mode.as_str()) { operation.mode.as_str() } else { "enforce" };
        let decides = mode != "skip";
        let object_type = operation.object_type.as_deref().unwrap_or("");
        if governed && object_type.is_empty() {
            found(
                INVALID_FIELD,
                "x-kernite.object_type is required when governed scope is enabled.",
                "x-kernite.object_type",
            );
        }
        let operation_name = operation.operation.as_str();
        if governed && operation_name.is_empty() {
            found(
                INVALID_FIELD,
                "x-kernite.operation is required when governed scope is enabled.",
                "x-kernite.operation",
            );
        }
        let policy_key = operation.policy_key.as_deref().unwrap_or("");
        if governed && decides && policy_key.is_empty() {
            found(
                "missing_policy_key",
                "x-kernite.policy_key is required for governed enforce/observe operations.",
                "x-kernite.policy_key",
            );
        }

        if !mapping.is_null() && governed {
            match mapping_entries.get(&operation_key(operation.method, operation.path)) {
                None => found(
                    "mapping_missing_operation",
                    "Governed operation is missing from mapping.operations.",
                    "mapping.operations",
                ),
                Some(entry) => {
                    let entry_lower = |key: &str| normalize_lower(Value::or_null(entry.get(key)));
                    if !object_type.is_empty() && entry_lower("object_type") != object_type {
                        found(
                            INVALID_FIELD,
                            "mapping object_type does not match operation object_type.",
                            "mapping.operations[].object_type",
                        );
                    }
                    if !operation_name.is_empty() && entry_lower("operation") != operation_name {
                        found(
                            INVALID_FIELD,
                            "mapping operation does not match x-kernite operation.",
                            "mapping.operations[].operation",
                        );
                    }
                    let entry_mode = entry_lower("mode");
                    if !entry_mode.is_empty() && entry_mode != mode {
                        found(
                            INVALID_FIELD,
                            "mapping mode does not match x-kernite mode.",
                            "mapping.operations[].mode",
                        );
                    }
                    let entry_key = normalize_string(Value::or_null(entry.get("policy_key")));
                    if decides && !policy_key.is_empty() && entry_key != policy_key {
                        found(
                            INVALID_FIELD,
                            "mapping policy_key does not match x-kernite policy_key.",
                            "mapping.operations[].policy_key",
                        );
                    }
                }
            }
        }

        if !bundle.is_null() && governed && decides {
            let key = if policy_key.is_empty() {
                format!("{}_{}_guard", slugify(object_type), slugify(operation_name))
            } else {
                policy_key.to_owned()
            };
            if !bundle_keys.contains(&key) {
                found(
                    "bundle_missing_policy",
                    "Referenced policy_key is missing from bundle.policies.",
                    "bundle.policies",
                );
            }
        }
    }

    let (mut violations, mut warnings): (Vec<Violation>, Vec<Violation>) =
        violations.into_iter().partition(|v| strict || !COVERAGE_CODES.contains(&v.code));
    violations.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    warnings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    Ok(report(operations.len(), strict, violations, warnings))
}

fn report(write_operations: usize, strict: bool, violations: Vec<Violation>, warnings: Vec<Violation>) -> Value {
    object([
        ("valid", Value::Bool(violations.is_empty())),
        (
            "summary",
            object([
                ("write_operations", Value::Int(write_operations as i64)),
                ("violations", Value::Int(violations.len() as i64)),
                ("warnings", Value::Int(warnings.len() as i64)),
                ("strict", Value::Bool(strict)),
            ]),
        ),
        ("violations", Value::Array(violations.into_iter().map(Violation::into_value).collect())),
        ("warnings", Value::Array(warnings.into_iter().map(Violation::into_value).collect())),
    ])
}

/// Kernite's answer to `POST /policy/check`: its status and body, with
/// `ctx_id` in the body.
pub fn respond(payload: &Value, ctx_id: String) -> (u16, Value) {
    let (payload, options) = match super::payload_and_options(payload) {
        Ok(read) => read,
        Err(error) => return super::invalid_payload(ctx_id, "Invalid policy check payload.", error),
    };
    let strict = options.get("strict").is_none_or(Value::is_truthy);
    let given = |key: &str| Value::or_null(payload.get(key));
    match coverage(given("openapi"), given("mapping"), given("bundle"), strict) {
        Ok(report) => {
            let message = if super::report_is_valid(&report) {
                "Schema coverage check passed."
            } else {
                "Schema coverage check failed."
            };
            (200, super::body(ctx_id, message, report))
        }
        Err(error) => {
            let violation = Violation::new("unsupported_openapi_shape", error.to_string(), "openapi");
            (400, super::body(ctx_id, "Schema coverage check failed.", report(0, strict, vec![violation], Vec::new())))
        }
    }
}
