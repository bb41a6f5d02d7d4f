//! A Kernite policy bundle (`kernite.policy.bundle.v1`, what `kernite policy
//! generate` writes), resolved once into a ready `policy_context` per scope.
//!
//! For a request's `(object_type, operation)` the bundle yields
//! `{"governed": …, "selected_policies": […]}`, and the engine decides under it
//! exactly as Kernite decides a request carrying that `policy_context`:
//! - the scope is governed when `governed_scopes` lists it or an
//!   `operation_map` entry for it says `governed` (the default);
//! - its policies are those named by its governed `enforce`/`observe` entries,
//!   in `operation_map` order, each once (Kernite's generator gives `skip`
//!   entries no policy);
//! - its mode is its entries' `mode` (they must agree);
//! - a scope the bundle does not mention is not governed: approved as
//!   `out_of_scope_phase1`, as Kernite answers without a `policy_context`.
//!
//! Everything is checked when the bundle is loaded, policies included (with the
//! engine's own `policy_context` validation), so a bundle either loads whole
//! or not at all.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::decision::json;
use crate::decision::python::normalize_lower;
use crate::decision::validate::policy_context;
use crate::decision::{Map, PolicyContextInput, Value};
use crate::vocabulary::Mode;

pub const SCHEMA_VERSION: &str = "kernite.policy.bundle.v1";

/// The most JSON values a bundle's scopes may select in all, a policy
/// counted once for every scope that selects it. Each scope holds a resolved
/// copy of its policies, so this bounds the memory a bundle takes whatever
/// its size on disk: a replay's candidate comes from a caller, and a small
/// file naming one large policy from many scopes would otherwise take
/// gigabytes. Five hundred scopes each selecting ten policies of a hundred
/// values are half of it.
pub const MAX_SELECTED_VALUES: usize = 1_000_000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BundleError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> BundleError {
    BundleError::Invalid { field: field.into(), message: message.into() }
}

/// One `(object_type, operation)` the bundle speaks about.
#[derive(Debug, Clone)]
pub struct Scope {
    pub context: PolicyContextInput,
    pub mode: Mode,
}

/// What the bundle says about one request.
#[derive(Debug, Clone, Copy)]
pub struct Resolution<'a> {
    pub context: &'a PolicyContextInput,
    /// `None` when the bundle does not mention the scope.
    pub mode: Option<Mode>,
}

#[derive(Debug)]
pub struct PolicyBundle {
    /// `sha256:<hex>` of the file's bytes, recorded with every decision made under it.
    pub sha256: String,
    pub policy_count: usize,
    scopes: HashMap<(String, String), Scope>,
    ungoverned: PolicyContextInput,
}

impl PolicyBundle {
    pub fn parse(bytes: &[u8]) -> Result<PolicyBundle, BundleError> {
        let sha256 = sha256_of(bytes);
        let text = std::str::from_utf8(bytes).map_err(|e| BundleError::Json(e.to_string()))?;
        let root = json::parse(text).map_err(|e| BundleError::Json(e.to_string()))?;
        let Value::Object(root) = root else { return Err(invalid("bundle", "must be an object")) };

        match root.get("schema_version").and_then(Value::as_str) {
            Some(SCHEMA_VERSION) => {}
            other => return Err(invalid("schema_version", format!("must be {SCHEMA_VERSION:?}, found {other:?}"))),
        }
        let policies = policies_by_key(&root)?;
        let mut entries: HashMap<(String, String), ScopeEntries> = HashMap::new();
        for (index, scope) in objects(&root, "governed_scopes")?.into_iter().enumerate() {
            let key = scope_key(scope, &format!("governed_scopes[{index}]"))?;
            entries.entry(key).or_default().governed = true;
        }
        for (index, entry) in objects(&root, "operation_map")?.into_iter().enumerate() {
            let field = format!("operation_map[{index}]");
            let key = scope_key(entry, &field)?;
            let scope = entries.entry(key).or_default();
            scope.add(entry, &field, &policies)?;
        }

        let sizes: HashMap<&str, usize> =
            policies.iter().map(|(key, policy)| (key.as_str(), policy.values().map(value_count).sum())).collect();
        let selected: usize =
            entries.values().flat_map(|entry| &entry.policy_keys).map(|key| sizes[key.as_str()]).sum();
        if selected > MAX_SELECTED_VALUES {
            return Err(invalid(
                "operation_map",
                format!(
                    "its scopes select {selected} JSON values of policy in all, counting a policy once per scope \
                     that selects it: at most {MAX_SELECTED_VALUES}"
                ),
            ));
        }

        let mut scopes = HashMap::with_capacity(entries.len());
        for (key, entry) in entries {
            let context = resolved_context(entry.governed, &entry.policy_keys, &policies)
                .map_err(|message| invalid(format!("scope {}/{}", key.0, key.1), message))?;
            scopes.insert(key, Scope { context, mode: entry.mode.unwrap_or_default() });
        }
        let ungoverned = resolved_context(false, &[], &policies).map_err(|message| invalid("bundle", message))?;
        Ok(PolicyBundle { sha256, policy_count: policies.len(), scopes, ungoverned })
    }

    /// The policy context and mode for a request's (normalised) scope.
    pub fn resolve(&self, object_type: &str, operation: &str) -> Resolution<'_> {
        match self.scopes.get(&(object_type.to_owned(), operation.to_owned())) {
            Some(scope) => Resolution { context: &scope.context, mode: Some(scope.mode) },
            None => Resolution { context: &self.ungoverned, mode: None },
        }
    }

    pub fn scope_count(&self) -> usize {
        self.scopes.len()
    }
}

/// How a bundle file is identified: `sha256:<hex>` of its bytes.
pub fn sha256_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// What the bundle's entries say about one scope, gathered before resolving.
#[derive(Default)]
struct ScopeEntries {
    governed: bool,
    mode: Option<Mode>,
    policy_keys: Vec<String>,
}

impl ScopeEntries {
    fn add(&mut self, entry: &Map, field: &str, policies: &HashMap<String, &Map>) -> Result<(), BundleError> {
        let governed = match entry.get("governed") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(governed)) => *governed,
            Some(_) => return Err(invalid(format!("{field}.governed"), "must be a boolean")),
        };
        let mode = match entry.get("mode") {
            None | Some(Value::Null) => Mode::Enforce,
            Some(value) => normalize_lower(value)
                .parse()
                .map_err(|_| invalid(format!("{field}.mode"), "must be one of: enforce, observe, skip"))?,
        };
        match self.mode {
            Some(earlier) if earlier != mode => {
                return Err(invalid(
                    format!("{field}.mode"),
                    format!("{} conflicts with {} set for the same scope earlier", mode.as_str(), earlier.as_str()),
                ));
            }
            _ => self.mode = Some(mode),
        }
        self.governed |= governed;
        if governed && mode != Mode::Skip {
            let key = match entry.get("policy_key") {
                Some(Value::Str(key)) if !key.trim().is_empty() => key.trim().to_owned(),
                _ => return Err(invalid(format!("{field}.policy_key"), "a governed enforce/observe entry needs one")),
            };
            if !policies.contains_key(&key) {
                return Err(invalid(format!("{field}.policy_key"), format!("{key:?} is not in policies")));
            }
            if !self.policy_keys.contains(&key) {
                self.policy_keys.push(key);
            }
        }
        Ok(())
    }
}

/// `policies`, by their unique `policy_key`.
fn policies_by_key(root: &Map) -> Result<HashMap<String, &Map>, BundleError> {
    let mut by_key = HashMap::new();
    for (index, policy) in objects(root, "policies")?.into_iter().enumerate() {
        let field = format!("policies[{index}].policy_key");
        let key = match policy.get("policy_key") {
            Some(Value::Str(key)) if !key.trim().is_empty() => key.trim().to_owned(),
            _ => return Err(invalid(field, "must be a non-empty string")),
        };
        if by_key.insert(key.clone(), policy).is_some() {
            return Err(invalid(field, format!("{key:?} appears twice")));
        }
    }
    Ok(by_key)
}

/// The objects of the array `root[name]` (absent: none).
fn objects<'a>(root: &'a Map, name: &str) -> Result<Vec<&'a Map>, BundleError> {
    match root.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                item.as_object().ok_or_else(|| invalid(format!("{name}[{index}]"), "must be an object"))
            })
            .collect(),
        Some(_) => Err(invalid(name, "must be an array")),
    }
}

/// `(object_type, operation)` normalised as Kernite compares scopes.
fn scope_key(entry: &Map, field: &str) -> Result<(String, String), BundleError> {
    let part = |name: &str| {
        let value = normalize_lower(Value::or_null(entry.get(name)));
        if value.is_empty() {
            Err(invalid(format!("{field}.{name}"), "must be a non-empty string"))
        } else {
            Ok(String::from(value))
        }
    };
    Ok((part("object_type")?, part("operation")?))
}

/// How many JSON values `value` holds, itself included.
fn value_count(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(value_count).sum(),
        Value::Object(map) => map.values().map(value_count).sum(),
        _ => 0,
    }
}

/// The `policy_context` Kernite would be given, validated by the engine.
fn resolved_context(
    governed: bool,
    keys: &[String],
    policies: &HashMap<String, &Map>,
) -> Result<PolicyContextInput, String> {
    let selected = keys.iter().map(|key| Value::Object(policies[key].clone())).collect();
    let mut raw = Map::default();
    raw.insert("governed".into(), Value::Bool(governed));
    raw.insert("selected_policies".into(), Value::Array(selected));
    match policy_context(raw) {
        Ok(Ok(context)) => Ok(context),
        Ok(Err(errors)) => Err(errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; ")),
        Err(unanswerable) => Err(unanswerable.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUNDLE: &str = r#"{
      "schema_version": "kernite.policy.bundle.v1",
      "policies": [
        {"policy_key": "invoice_limit", "policy_version": 3, "effect": "allow",
         "rules": [{"rule_key": "max_amount", "rule_definition": {"type": "max_value", "field": "amount", "max": 1000}}]}
      ],
      "governed_scopes": [{"object_type": "invoice", "operation": "create"}, {"object_type": "invoice", "operation": "delete"}],
      "operation_map": [
        {"path": "/invoices", "method": "post", "object_type": "Invoice", "operation": "create", "governed": true,
         "policy_key": "invoice_limit", "mode": "observe"},
        {"path": "/invoices/{id}", "method": "get", "object_type": "invoice", "operation": "update", "governed": false,
         "policy_key": null, "mode": "enforce"}
      ]
    }"#;

    #[test]
    fn a_bundle_whose_scopes_select_too_much_policy_is_refused_before_resolving() {
        // One policy of ~2,000 values, selected by 600 scopes: 1.2 million in all.
        let fields: Vec<String> = (0..2_000).map(|i| format!("\"f{i}\"")).collect();
        let policy = format!(
            r#"{{"policy_key": "big", "policy_version": 1, "effect": "allow",
                "rules": [{{"rule_key": "r", "rule_definition": {{"type": "required_fields", "fields": [{}]}}}}]}}"#,
            fields.join(",")
        );
        let entries: Vec<String> = (0..600)
            .map(|i| format!(r#"{{"object_type": "o{i}", "operation": "create", "policy_key": "big"}}"#))
            .collect();
        let bundle = format!(
            r#"{{"schema_version": "{SCHEMA_VERSION}", "policies": [{policy}], "operation_map": [{}]}}"#,
            entries.join(",")
        );
        let error = PolicyBundle::parse(bundle.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("at most 1000000"), "{error}");
        // The same policy from 400 scopes is within the bound.
        let fewer = bundle.replacen(&entries[400..].join(","), "", 1).replace(",]", "]");
        assert_eq!(PolicyBundle::parse(fewer.as_bytes()).unwrap().scope_count(), 400);
    }

    #[test]
    fn a_scope_gets_its_policies_governance_and_mode() {
        let bundle = PolicyBundle::parse(BUNDLE.as_bytes()).unwrap();
        assert!(bundle.sha256.starts_with("sha256:") && bundle.sha256.len() == 71);
        let create = bundle.resolve("invoice", "create");
        assert_eq!(create.mode, Some(Mode::Observe));
        assert_eq!(create.context.governed, Some(true));
        let policies = create.context.selected_policies.as_ref().unwrap();
        assert_eq!(policies.len(), 1);
        assert_eq!(policies[0].policy_key.as_deref(), Some("invoice_limit"));

        let delete = bundle.resolve("invoice", "delete");
        assert_eq!((delete.context.governed, delete.mode), (Some(true), Some(Mode::Enforce)));
        assert!(delete.context.selected_policies.as_ref().unwrap().is_empty(), "governed, no policy: denied");

        let update = bundle.resolve("invoice", "update");
        assert_eq!(update.context.governed, Some(false));
        let unknown = bundle.resolve("payment", "create");
        assert_eq!((unknown.context.governed, unknown.mode), (Some(false), None));
    }

    fn error_of(text: &str) -> String {
        PolicyBundle::parse(text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn a_broken_bundle_is_refused_with_the_field_at_fault() {
        assert!(error_of("{").starts_with("not valid JSON"));
        assert!(error_of(r#"{"schema_version": "v2"}"#).starts_with("schema_version"));
        let with = |replace: &str, by: &str| BUNDLE.replacen(replace, by, 1);
        assert_eq!(
            error_of(&with(r#""policy_key": "invoice_limit", "mode""#, r#""policy_key": "nope", "mode""#)),
            r#"operation_map[0].policy_key: "nope" is not in policies"#
        );
        assert!(error_of(&with(r#""mode": "observe""#, r#""mode": "audit""#)).starts_with("operation_map[0].mode"));
        assert!(
            error_of(&with(r#""rules": ["#, r#""rules": 7, "x": ["#)).contains("rules"),
            "the policies themselves are validated by the engine"
        );
        let twice = with(r#""policies": ["#, r#""policies": [{"policy_key": "invoice_limit", "rules": []},"#);
        assert_eq!(error_of(&twice), r#"policies[1].policy_key: "invoice_limit" appears twice"#);
    }

    #[test]
    fn entries_of_one_scope_must_agree_on_the_mode() {
        let conflicting = BUNDLE.replacen(
            r#""operation_map": ["#,
            r#""operation_map": [{"object_type": "invoice", "operation": "create", "policy_key": "invoice_limit", "mode": "enforce"},"#,
            1,
        );
        assert!(error_of(&conflicting).contains("conflicts with enforce"));
    }
}
