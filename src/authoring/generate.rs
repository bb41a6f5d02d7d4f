//! `kernite policy generate`: a policy bundle, an operation map and a report
//! from an OpenAPI document, as Kernite's `policy_generate.py` makes them.
//!
//! Each governed write operation in enforce or observe mode gets one policy
//! whose rules come from its JSON request schema: `required` becomes a
//! `required_fields` rule, a property's `enum` an `allowed_values` rule and its
//! `maximum` a `max_value` rule. Keywords Kernite cannot turn into rules are
//! listed as unsupported constraints.

use std::collections::{BTreeMap, BTreeSet};

use super::openapi::{self, WriteOperation, slugify};
use super::{OpenApiError, refs};
use crate::decision::json::{self, Layout};
use crate::decision::python::{normalize_lower, str_strip};
use crate::decision::value::object;
use crate::decision::{Map, Value};

/// Schema keywords Kernite reports rather than turns into rules, in its order.
const UNSUPPORTED_KEYWORDS: [(&str, &str); 9] = [
    ("oneOf", "oneOf is not supported in v1 generation."),
    ("anyOf", "anyOf is not supported in v1 generation."),
    ("allOf", "allOf is not supported in v1 generation."),
    ("pattern", "pattern is not supported in v1 generation."),
    ("minLength", "minLength is not supported in v1 generation."),
    ("maxLength", "maxLength is not supported in v1 generation."),
    ("minItems", "minItems is not supported in v1 generation."),
    ("maxItems", "maxItems is not supported in v1 generation."),
    ("uniqueItems", "uniqueItems is not supported in v1 generation."),
];

/// What generation makes: Kernite's `bundle`, `mapping` and `report` objects.
pub struct Artifacts {
    pub bundle: Value,
    pub mapping: Value,
    pub report: Value,
}

impl Artifacts {
    /// Whether the report is valid (false only when unsupported constraints
    /// were found and asked to fail).
    pub fn valid(&self) -> bool {
        super::report_is_valid(&self.report)
    }

    /// The three objects under `bundle`, `mapping` and `report`, as Kernite nests them.
    pub fn into_value(self) -> Value {
        object([("bundle", self.bundle), ("mapping", self.mapping), ("report", self.report)])
    }
}

/// Kernite's `generate_policy_artifacts`.
pub fn artifacts(openapi: &Value, default_mode: &str, fail_on_unsupported: bool) -> Result<Artifacts, OpenApiError> {
    let document = openapi::ensure_document(openapi)?;
    let operations = openapi::write_operations(document, default_mode)?;

    let mut warnings: Vec<Finding> = Vec::new();
    let mut unsupported: Vec<Finding> = Vec::new();
    let mut policies: BTreeMap<String, Value> = BTreeMap::new();
    let mut governed_scopes: BTreeSet<(String, String)> = BTreeSet::new();
    let mut operation_map: Vec<Value> = Vec::with_capacity(operations.len());
    // One budget for the whole document: every operation's schema counts.
    let mut budget = refs::Budget::default();

    for meta in &operations {
        let warn = |code: &'static str, message: String, field: &str| Finding::new(code, message, meta, field);
        for error in &meta.extension_errors {
            warnings.push(warn("invalid_x_kernite_field", error.message.to_owned(), error.field));
        }
        let mut object_type = meta.object_type.clone().unwrap_or_default();
        if object_type.is_empty() && meta.governed {
            warnings.push(warn(
                "unsupported_openapi_shape",
                "Unable to infer object_type from path; set x-kernite.object_type.".to_owned(),
                "x-kernite.object_type",
            ));
            object_type = "object".to_owned();
        }
        let operation = if meta.operation.is_empty() { "update".to_owned() } else { meta.operation.clone() };
        if meta.governed {
            governed_scopes.insert((object_type.clone(), operation.clone()));
        }

        let mut policy_key = meta.policy_key.clone();
        if meta.governed && meta.mode != "skip" {
            let key = policy_key.unwrap_or_else(|| generated_policy_key(meta));
            let mut key = crate::decision::python::strip(&key).to_owned();
            let (schema, schema_warnings) = request_schema(meta.body, openapi, &mut budget)?;
            for message in schema_warnings {
                warnings.push(warn("unsupported_openapi_shape", message.to_owned(), "requestBody"));
            }
            let rules = match &schema {
                Some(schema) => rules(schema, &object_type, &operation, meta, &mut unsupported),
                None => Vec::new(),
            };
            let policy = |key: &str| {
                object([
                    ("policy_key", Value::str(key)),
                    ("policy_version", Value::Int(1)),
                    ("effect", Value::str("allow")),
                    ("rules", Value::Array(rules.clone())),
                ])
            };
            let generated = policy(&key);
            let collides = policies.get(&key).is_some_and(|existing| {
                json::to_string(existing, Layout::Canonical) != json::to_string(&generated, Layout::Canonical)
            });
            if collides {
                let collision_key = format!("{key}_{}", slugify(&meta.operation_id));
                warnings.push(warn(
                    "policy_key_collision",
                    format!("policy_key '{key}' collided; wrote operation-specific key '{collision_key}'."),
                    "x-kernite.policy_key",
                ));
                policies.insert(collision_key.clone(), policy(&collision_key));
                key = collision_key;
            } else {
                policies.insert(key.clone(), generated);
            }
            policy_key = Some(key);
        }

        operation_map.push(object([
            ("path", Value::str(meta.path)),
            ("method", Value::str(meta.method)),
            ("operation_id", Value::str(meta.operation_id.as_str())),
            ("governed", Value::Bool(meta.governed)),
            ("object_type", Value::str(object_type)),
            ("operation", Value::str(operation)),
            ("policy_key", policy_key.map_or(Value::Null, Value::str)),
            ("mode", Value::str(meta.mode.as_str())),
        ]));
    }

    warnings.sort_by(|a, b| (&a.path, a.method, a.code, &a.field).cmp(&(&b.path, b.method, b.code, &b.field)));
    unsupported.sort_by(|a, b| (&a.path, a.method, &a.field, a.code).cmp(&(&b.path, b.method, &b.field, b.code)));
    let governed_operations = operations.iter().filter(|meta| meta.governed).count();
    let report = object([
        ("valid", Value::Bool(!fail_on_unsupported || unsupported.is_empty())),
        (
            "summary",
            object([
                ("write_operations", count(operations.len())),
                ("governed_operations", count(governed_operations)),
                ("policies_generated", count(policies.len())),
                ("warnings", count(warnings.len())),
                ("unsupported_constraints", count(unsupported.len())),
            ]),
        ),
        ("warnings", Value::Array(warnings.into_iter().map(|w| w.into_value("field")).collect())),
        (
            "unsupported_constraints",
            Value::Array(unsupported.into_iter().map(|u| u.into_value("field_path")).collect()),
        ),
    ]);
    let scopes = governed_scopes
        .into_iter()
        .map(|(object_type, operation)| {
            object([("object_type", Value::str(object_type)), ("operation", Value::str(operation))])
        })
        .collect();
    let bundle = object([
        ("schema_version", Value::str("kernite.policy.bundle.v1")),
        ("policies", Value::Array(policies.into_values().collect())),
        ("governed_scopes", Value::Array(scopes)),
        ("operation_map", Value::Array(operation_map.clone())),
        ("source", object([("openapi_sha256", Value::str(openapi::openapi_sha256(openapi)?))])),
    ]);
    let mapping = object([
        ("schema_version", Value::str("kernite.policy.mapping.v1")),
        ("operations", Value::Array(operation_map)),
    ]);
    Ok(Artifacts { bundle, mapping, report })
}

fn count(n: usize) -> Value {
    Value::Int(n as i64)
}

/// The key of an operation's policy when `x-kernite` names none.
fn generated_policy_key(meta: &WriteOperation<'_>) -> String {
    let or = |text: &str, fallback: &str| slugify(if text.is_empty() { fallback } else { text });
    format!(
        "{}_{}_{}_guard",
        or(meta.object_type.as_deref().unwrap_or(""), "object"),
        or(&meta.operation, "operation"),
        or(&meta.operation_id, "operation"),
    )
}

/// A warning or an unsupported constraint of the generation report: what,
/// and where, in which operation.
struct Finding {
    code: &'static str,
    message: String,
    path: String,
    method: &'static str,
    operation_id: String,
    /// The field of `x-kernite` or `requestBody` a warning is about; the
    /// dotted path of the property an unsupported constraint is on.
    field: String,
}

impl Finding {
    fn new(code: &'static str, message: String, meta: &WriteOperation<'_>, field: &str) -> Finding {
        Finding {
            code,
            message,
            path: meta.path.to_owned(),
            method: meta.method,
            operation_id: meta.operation_id.clone(),
            field: field.to_owned(),
        }
    }

    /// As Kernite writes it, the field under `field_key` (`field` for a
    /// warning, `field_path` for an unsupported constraint).
    fn into_value(self, field_key: &str) -> Value {
        object([
            ("code", Value::str(self.code)),
            ("message", Value::str(self.message)),
            ("path", Value::str(self.path)),
            ("method", Value::str(self.method)),
            ("operation_id", Value::str(self.operation_id)),
            (field_key, Value::str(self.field)),
        ])
    }
}

/// The operation's `application/json` request schema with its references
/// resolved, or the warnings that say why there is none. A reference that
/// cannot be resolved fails the whole generation, as in Kernite.
fn request_schema(
    operation: &Map,
    document: &Value,
    budget: &mut refs::Budget,
) -> Result<(Option<Map>, Vec<&'static str>), OpenApiError> {
    let request_body = match operation.get("requestBody") {
        None | Some(Value::Null) => return Ok((None, Vec::new())),
        Some(body) => refs::resolve(body, document, budget)?,
    };
    // The resolved body holds no reference any more: its schema is resolved too.
    let schema = (|| {
        let Value::Object(request_body) = request_body else { return Err("requestBody must resolve to an object.") };
        let Some(Value::Object(content)) = request_body.get("content") else {
            return Err("requestBody.content must be an object.");
        };
        let Some(Value::Object(json_content)) = content.get("application/json") else {
            return Err("Only requestBody.content['application/json'] is supported.");
        };
        match json_content.get("schema") {
            None | Some(Value::Null) => Err("application/json request body must include `schema`."),
            Some(Value::Object(schema)) => Ok(schema.clone()),
            Some(_) => Err("Resolved request schema must be an object."),
        }
    })();
    Ok(match schema {
        Ok(schema) => (Some(schema), Vec::new()),
        Err(warning) => (None, vec![warning]),
    })
}

/// What the schema walk gathers for one operation.
#[derive(Default)]
struct Constraints {
    required: BTreeSet<String>,
    enums: Vec<(String, Vec<Value>)>,
    maximums: Vec<(String, Value)>,
}

/// Kernite's `_build_rules`: one required-fields rule, then one rule per
/// enum, then one per maximum, each sorted by field path.
fn rules(
    schema: &Map,
    object_type: &str,
    operation: &str,
    meta: &WriteOperation<'_>,
    unsupported: &mut Vec<Finding>,
) -> Vec<Value> {
    let mut found = Constraints::default();
    walk(schema, meta, &mut found, unsupported, "");
    let code_base = format!("{}_{}", slugify(object_type), slugify(operation));
    let rule = |key: String, definition: Value, code: String, message: String| {
        object([
            ("rule_key", Value::str(key)),
            ("rule_definition", definition),
            ("reason_code", Value::str(code)),
            ("reason_message", Value::str(message)),
        ])
    };
    let mut rules = Vec::new();
    if !found.required.is_empty() {
        let fields = found.required.into_iter().map(Value::str).collect();
        rules.push(rule(
            format!("require_{}_fields", slugify(operation)),
            object([("type", Value::str("required_fields")), ("fields", Value::Array(fields))]),
            format!("{code_base}_missing_required_fields"),
            "One or more required fields are missing.".to_owned(),
        ));
    }
    found.enums.sort_by(|a, b| a.0.cmp(&b.0));
    for (field, values) in found.enums {
        let slug = slugify(&field);
        rules.push(rule(
            format!("{slug}_allowed_values"),
            object([
                ("type", Value::str("allowed_values")),
                ("field", Value::str(field.as_str())),
                ("values", Value::Array(values)),
            ]),
            format!("{code_base}_{slug}_invalid_value"),
            format!("{field} contains a value outside allowed enum."),
        ));
    }
    found.maximums.sort_by(|a, b| a.0.cmp(&b.0));
    for (field, max) in found.maximums {
        let slug = slugify(&field);
        rules.push(rule(
            format!("{slug}_max_value"),
            object([("type", Value::str("max_value")), ("field", Value::str(field.as_str())), ("max", max)]),
            format!("{code_base}_{slug}_over_max"),
            format!("{field} exceeds maximum allowed value."),
        ));
    }
    rules
}

/// Kernite's `_walk_schema`, over a resolved schema; `prefix` is the dotted
/// path of the properties above, ending in `.`.
fn walk(
    schema: &Map,
    meta: &WriteOperation<'_>,
    found: &mut Constraints,
    unsupported: &mut Vec<Finding>,
    prefix: &str,
) {
    let report = |unsupported: &mut Vec<Finding>, field_path: &str, message: &str| {
        unsupported.push(Finding::new("unsupported_constraint", message.to_owned(), meta, field_path));
    };
    let here = prefix.trim_end_matches('.');
    for (keyword, message) in UNSUPPORTED_KEYWORDS {
        if schema.contains_key(keyword) {
            report(unsupported, here, message);
        }
    }
    if normalize_lower(Value::or_null(schema.get("type"))) == "array" || schema.contains_key("items") {
        report(unsupported, here, "Array constraints are not supported in v1 generation.");
    }
    if let Some(Value::Array(required)) = schema.get("required") {
        for field in required {
            let field = str_strip(field);
            if !field.is_empty() {
                found.required.insert(format!("{prefix}{field}"));
            }
        }
    }
    let Some(Value::Object(properties)) = schema.get("properties") else { return };
    let mut names: Vec<&str> = properties.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    for name in names {
        let Some(Value::Object(child)) = properties.get(name) else { continue };
        let field_path = format!("{prefix}{name}");
        if let Some(Value::Array(values)) = child.get("enum")
            && !values.is_empty()
        {
            let mut keyed: Vec<(String, &Value)> =
                values.iter().map(|v| (json::to_string(v, Layout::Canonical), v)).collect();
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            found.enums.push((field_path.clone(), keyed.into_iter().map(|(_, v)| v.clone()).collect()));
        }
        if let Some(maximum) = child.get("maximum") {
            match maximum {
                Value::Int(_) | Value::BigInt(_) | Value::Float(_) => {
                    found.maximums.push((field_path.clone(), maximum.clone()));
                }
                _ => report(unsupported, &field_path, "maximum must be numeric for v1 generation."),
            }
        }
        walk(child, meta, found, unsupported, &format!("{field_path}."));
    }
}

/// Kernite's answer to `POST /policy/generate`: its status and body, with
/// `ctx_id` in the body.
pub fn respond(payload: &Value, ctx_id: String) -> (u16, Value) {
    let (payload, options) = match super::payload_and_options(payload) {
        Ok(read) => read,
        Err(error) => return super::invalid_payload(ctx_id, "Invalid policy generation payload.", error),
    };
    let default_mode = normalize_lower(Value::or_null(options.get("default_mode")).or(&Value::str("enforce")));
    let fail_on_unsupported = options.get("fail_on_unsupported").is_some_and(Value::is_truthy);
    match artifacts(Value::or_null(payload.get("openapi")), &default_mode, fail_on_unsupported) {
        Err(error) => {
            let data = object([("error", Value::str(error.to_string()))]);
            (400, super::body(ctx_id, "Policy generation failed.", data))
        }
        Ok(artifacts) => {
            let message = if artifacts.valid() {
                "Policy bundle generated."
            } else {
                "Policy bundle generated with unsupported constraints."
            };
            (200, super::body(ctx_id, message, artifacts.into_value()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document whose request body resolves to about a million values
    /// (eighteen levels of two references each), named by `operations` POSTs.
    fn fanning_out(operations: usize) -> Value {
        let mut levels: Vec<String> =
            (0..18).map(|k| format!(r##""l{k}": [{{"$ref": "#/l{n}"}}, {{"$ref": "#/l{n}"}}]"##, n = k + 1)).collect();
        levels.push(r#""l18": 0"#.to_owned());
        let body = r##""rb": {"content": {"application/json": {"schema": {"type": "object",
            "properties": {"p": {"enum": [{"$ref": "#/l0"}]}}}}}}"##;
        let paths: Vec<String> = (0..operations)
            .map(|i| format!(r##""/p{i}": {{"post": {{"requestBody": {{"$ref": "#/rb"}}}}}}"##))
            .collect();
        let text = format!(
            r#"{{"openapi": "3.0.0", "info": {{"title": "t", "version": "1"}}, {}, {body}, "paths": {{{}}}}}"#,
            levels.join(", "),
            paths.join(", ")
        );
        json::parse(&text).unwrap()
    }

    #[test]
    fn the_reference_budget_is_the_whole_documents() {
        if let Err(error) = artifacts(&fanning_out(1), "enforce", false) {
            panic!("{error}");
        }
        // Each operation alone is within the budget; the two together are not.
        let error = artifacts(&fanning_out(2), "enforce", false).err().expect("over the budget");
        assert!(error.to_string().contains("more than 2000000 values"), "{error}");
    }
}
