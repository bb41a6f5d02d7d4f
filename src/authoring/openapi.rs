//! Reading an OpenAPI document as Kernite's `openapi_tools.py` does: the
//! document's own checks, its write operations with their `x-kernite`
//! extension, and the names Kernite infers from a path and a method.

use sha2::{Digest as _, Sha256};

use super::OpenApiError;
use crate::decision::json::{self, Layout};
use crate::decision::python::{normalize_lower, normalize_string};
use crate::decision::{Map, Value};

/// The HTTP methods that write, in the order Kernite looks for them.
const WRITE_METHODS: [&str; 4] = ["post", "put", "patch", "delete"];

/// Kernite's modes and operations, as `x-kernite` may name them.
pub(super) const MODES: [&str; 3] = ["enforce", "observe", "skip"];
const OPERATIONS: [&str; 6] = ["create", "update", "archive", "activate", "delete", "associate"];

/// The document, once it is known to be an OpenAPI 3 object with `paths`.
pub(super) fn ensure_document(document: &Value) -> Result<&Map, OpenApiError> {
    let Value::Object(map) = document else {
        return Err(OpenApiError::new("OpenAPI document must be a JSON object."));
    };
    let version = normalize_string(Value::or_null(map.get("openapi")));
    if version.is_empty() {
        return Err(OpenApiError::new("OpenAPI document must include `openapi` version."));
    }
    if !version.starts_with("3.") {
        return Err(OpenApiError::new("Only OpenAPI 3.x documents are supported in v1."));
    }
    if !matches!(map.get("paths"), Some(Value::Object(_))) {
        return Err(OpenApiError::new("OpenAPI document must include object `paths`."));
    }
    Ok(map)
}

/// `sha256:` and the hex SHA-256 of the document's canonical JSON, which
/// Python must first encode as UTF-8: a lone surrogate fails that, with
/// Python's message.
pub(super) fn openapi_sha256(document: &Value) -> Result<String, OpenApiError> {
    let canonical = json::to_string(document, Layout::Canonical);
    if let Some(error) = utf8_encode_error(&canonical) {
        return Err(OpenApiError::new(error));
    }
    Ok(format!("sha256:{}", hex::encode(Sha256::digest(canonical.as_bytes()))))
}

/// Python's `UnicodeEncodeError` message for `text.encode("utf-8")`: the
/// first run of lone surrogates, by code point position.
fn utf8_encode_error(text: &str) -> Option<String> {
    let (start, first) = text.chars().enumerate().find_map(|(i, c)| json::surrogate_of(c).map(|s| (i, s)))?;
    let run = text.chars().skip(start).take_while(|&c| json::surrogate_of(c).is_some()).count();
    Some(if run == 1 {
        format!("'utf-8' codec can't encode character '\\u{first:04x}' in position {start}: surrogates not allowed")
    } else {
        format!("'utf-8' codec can't encode characters in position {start}-{}: surrogates not allowed", start + run - 1)
    })
}

/// Kernite's `slugify`: lowercased, every run of characters other than ASCII
/// letters and digits one `_`, no `_` at either end; `value` when nothing is left.
pub(super) fn slugify(text: &str) -> String {
    let lower = normalize_lower(&Value::str(text));
    let mut slug = String::with_capacity(lower.len());
    for c in lower.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('_') {
            slug.push('_');
        }
    }
    let slug = slug.trim_matches('_');
    if slug.is_empty() { "value".to_owned() } else { slug.to_owned() }
}

/// The operation a method implies when `x-kernite` names none.
fn operation_of_method(method: &str) -> &'static str {
    match method {
        "post" => "create",
        "put" | "patch" => "update",
        "delete" => "delete",
        _ => "update",
    }
}

/// The object type a path implies: its last segment that is not a
/// parameter, slugified and made singular (`ies` → `y`, a final `s` dropped).
pub(super) fn object_type_of_path(path: &str) -> Option<String> {
    let leaf = path.split('/').rfind(|s| !s.is_empty() && !s.starts_with('{'))?;
    let leaf = slugify(leaf);
    Some(if let Some(stem) = leaf.strip_suffix("ies").filter(|_| leaf.len() > 3) {
        format!("{stem}y")
    } else if let Some(stem) = leaf.strip_suffix('s').filter(|_| leaf.len() > 1) {
        stem.to_owned()
    } else {
        leaf
    })
}

/// A problem with an operation's `x-kernite` extension.
#[derive(Debug, Clone)]
pub(super) struct ExtensionError {
    pub field: &'static str,
    pub message: &'static str,
}

impl ExtensionError {
    fn new(field: &'static str, message: &'static str) -> ExtensionError {
        ExtensionError { field, message }
    }
}

/// One write operation of the document, with what its `x-kernite` says (or
/// what Kernite infers where it says nothing).
#[derive(Debug)]
pub(super) struct WriteOperation<'d> {
    pub path: &'d str,
    pub method: &'static str,
    pub operation_id: String,
    pub has_x_kernite: bool,
    pub governed: bool,
    /// Always one of [`MODES`].
    pub mode: String,
    pub object_type: Option<String>,
    /// As written, lowercased; possibly not one of Kernite's operations (then
    /// `extension_errors` says so).
    pub operation: String,
    pub policy_key: Option<String>,
    pub extension_errors: Vec<ExtensionError>,
    pub body: &'d Map,
}

/// The default mode as Kernite reads it: trimmed, lowercased, `enforce` when empty.
pub(super) fn default_mode(mode: &str) -> Result<String, OpenApiError> {
    let mode = normalize_lower(&Value::str(mode));
    let mode = if mode.is_empty() { "enforce".into() } else { mode };
    if MODES.contains(&mode.as_str()) {
        Ok(mode.into())
    } else {
        Err(OpenApiError::new("default_mode must be one of: enforce, observe, skip."))
    }
}

/// Every write operation of the document, ordered by path and then method.
pub(super) fn write_operations<'d>(
    document: &'d Map,
    default_mode: &str,
) -> Result<Vec<WriteOperation<'d>>, OpenApiError> {
    let default_mode = self::default_mode(default_mode)?;
    let Some(Value::Object(paths)) = document.get("paths") else {
        return Err(OpenApiError::new("OpenAPI `paths` must be an object."));
    };
    let mut operations = Vec::new();
    for (path, item) in paths.iter() {
        let Value::Object(item) = item else { continue };
        for method in WRITE_METHODS {
            if let Some(Value::Object(operation)) = item.get(method) {
                operations.push(write_operation(path, method, operation, &default_mode));
            }
        }
    }
    operations.sort_by(|a, b| (a.path, a.method).cmp(&(b.path, b.method)));
    Ok(operations)
}

/// Kernite's `normalize_operation_entry`.
fn write_operation<'d>(path: &'d str, method: &'static str, body: &'d Map, default_mode: &str) -> WriteOperation<'d> {
    let mut errors = Vec::new();
    let empty = Map::default();
    let x_kernite = match body.get("x-kernite") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(map)) => map,
        Some(_) => {
            errors.push(ExtensionError::new("x-kernite", "x-kernite must be an object."));
            &empty
        }
    };
    let governed = match x_kernite.get("governed") {
        None => true,
        Some(Value::Bool(governed)) => *governed,
        Some(_) => {
            errors.push(ExtensionError::new("x-kernite.governed", "x-kernite.governed must be a boolean."));
            true
        }
    };
    let named = |key: &str| Value::or_null(x_kernite.get(key));
    let mode = normalize_lower(named("mode").or(&Value::str(default_mode)));
    let mode = if MODES.contains(&mode.as_str()) {
        mode.into()
    } else if mode.is_empty() {
        default_mode.to_owned()
    } else {
        errors.push(ExtensionError::new("x-kernite.mode", "x-kernite.mode must be one of: enforce, observe, skip."));
        default_mode.to_owned()
    };
    let operation: String = normalize_lower(named("operation").or(&Value::str(operation_of_method(method)))).into();
    if !OPERATIONS.contains(&operation.as_str()) {
        errors.push(ExtensionError::new(
            "x-kernite.operation",
            "x-kernite.operation must be one of: activate, archive, associate, create, delete, update.",
        ));
    }
    let object_type = Some(normalize_lower(named("object_type")).to_string())
        .filter(|t| !t.is_empty())
        .or_else(|| object_type_of_path(path));
    let policy_key = Some(normalize_string(named("policy_key")).to_string()).filter(|k| !k.is_empty());
    let operation_id = normalize_string(Value::or_null(body.get("operationId")));
    let operation_id = if operation_id.is_empty() { slugify(&format!("{method}_{path}")) } else { operation_id.into() };
    WriteOperation {
        path,
        method,
        operation_id,
        has_x_kernite: !matches!(body.get("x-kernite"), None | Some(Value::Null)),
        governed,
        mode,
        object_type,
        operation,
        policy_key,
        extension_errors: errors,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lowercase_ascii_words_joined_by_underscores() {
        assert_eq!(slugify("  Create Invoice!! "), "create_invoice");
        assert_eq!(slugify("post_/v1/{id}/items"), "post_v1_id_items");
        assert_eq!(slugify("__"), "value");
        assert_eq!(slugify("Ünicode"), "nicode");
        // The Kelvin sign lowercases to an ASCII k.
        assert_eq!(slugify("\u{212a}ey"), "key");
    }

    #[test]
    fn a_paths_last_static_segment_names_its_object() {
        assert_eq!(object_type_of_path("/v1/companies/{id}"), Some("company".into()));
        assert_eq!(object_type_of_path("/invoices"), Some("invoice".into()));
        assert_eq!(object_type_of_path("/ies"), Some("ie".into()));
        assert_eq!(object_type_of_path("/status"), Some("statu".into()));
        assert_eq!(object_type_of_path("/s"), Some("s".into()));
        assert_eq!(object_type_of_path("/{id}"), None);
        assert_eq!(object_type_of_path("/"), None);
    }
}
