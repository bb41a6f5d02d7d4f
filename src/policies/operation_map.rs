//! Kernite's operation map (`kernite.policy.mapping.v1`: what `policy
//! generate` writes as `policy-map.generated.json`, and what a generated
//! bundle carries as `operation_map`): each write operation of an API, by
//! its `operationId`, with the scope it is governed in. A mutation of the
//! registry may name its operation instead of its scope, so that the API's
//! own document, not a second hand-kept list, says which scope a write is.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::decision::json;
use crate::decision::{Map, Value};

/// One operation of the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedOperation {
    pub method: String,
    pub path: String,
    pub object_type: String,
    pub operation: String,
    /// `false` when the map lists the operation as not governed (`"governed":
    /// false`); absent means governed, as every entry Kernite writes is.
    pub governed: bool,
}

/// The operations of a map, by `operation_id`.
#[derive(Debug, Clone, Default)]
pub struct OperationMap {
    by_id: HashMap<String, MappedOperation>,
}

impl OperationMap {
    pub fn load(path: &Path) -> anyhow::Result<OperationMap> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the operation map {}", path.display()))?;
        OperationMap::parse(&text).with_context(|| format!("in the operation map {}", path.display()))
    }

    /// A mapping (`operations`) or a bundle (`operation_map`). Every entry
    /// needs a string `operation_id`, `method`, `path`, `object_type` and
    /// `operation`; an id listed twice is refused, since a mutation naming it
    /// would be ambiguous.
    pub fn parse(text: &str) -> anyhow::Result<OperationMap> {
        let root = json::parse(text).map_err(|e| anyhow::anyhow!("not valid JSON: {e}"))?;
        let root = root.as_object().context("not a JSON object")?;
        let entries = match (root.get("operations"), root.get("operation_map")) {
            (Some(Value::Array(entries)), _) | (None, Some(Value::Array(entries))) => entries,
            _ => bail!("neither a mapping's `operations` nor a bundle's `operation_map` array"),
        };
        let mut by_id = HashMap::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let entry = entry.as_object().with_context(|| format!("entry {index} is not an object"))?;
            let text = |key: &str| field(entry, key).with_context(|| format!("entry {index}"));
            let id = text("operation_id")?;
            let operation = MappedOperation {
                method: text("method")?,
                path: text("path")?,
                object_type: text("object_type")?,
                operation: text("operation")?,
                governed: match entry.get("governed") {
                    None => true,
                    Some(Value::Bool(governed)) => *governed,
                    Some(_) => bail!("entry {index}: `governed` is not true or false"),
                },
            };
            if by_id.insert(id.clone(), operation).is_some() {
                bail!("operation_id `{id}` is listed twice");
            }
        }
        Ok(OperationMap { by_id })
    }

    pub fn get(&self, operation_id: &str) -> Option<&MappedOperation> {
        self.by_id.get(operation_id)
    }

    /// Every operation with its `operation_id`, in the order of the ids.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MappedOperation)> {
        let mut operations: Vec<_> = self.by_id.iter().map(|(id, operation)| (id.as_str(), operation)).collect();
        operations.sort_unstable_by_key(|(id, _)| *id);
        operations.into_iter()
    }
}

fn field(entry: &Map, key: &str) -> anyhow::Result<String> {
    match entry.get(key) {
        Some(Value::Str(text)) if !text.is_empty() => Ok(text.to_string()),
        _ => bail!("`{key}` is not a non-empty string"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_and_a_bundle_name_operations_alike() {
        let entry = r#"{"path": "/invoices", "method": "post", "operation_id": "createInvoice", "governed": true,
                        "object_type": "invoice", "operation": "create", "policy_key": "k", "mode": "enforce"}"#;
        for text in [format!(r#"{{"operations": [{entry}]}}"#), format!(r#"{{"operation_map": [{entry}]}}"#)] {
            let map = OperationMap::parse(&text).unwrap();
            let create = map.get("createInvoice").unwrap();
            assert_eq!((create.object_type.as_str(), create.operation.as_str()), ("invoice", "create"));
            assert!(map.get("deleteInvoice").is_none());
        }
        let twice = format!(r#"{{"operations": [{entry}, {entry}]}}"#);
        assert!(OperationMap::parse(&twice).unwrap_err().to_string().contains("listed twice"));
        assert!(OperationMap::parse(r#"{"operations": [{"operation_id": "x"}]}"#).is_err());
    }
}
