//! `$ref` resolution as Kernite's `resolve_refs` does it: local JSON
//! pointers only, followed wherever they appear, with a cycle along one chain
//! of references an error.
//!
//! Kernite copies every referenced subtree in full, so a document whose
//! references fan out can resolve to far more than its own size. Python would
//! grind on; here the resolutions of one document share a [`Budget`] and stop
//! with an error past [`MAX_NODES`] values in all, or [`MAX_DEPTH`] levels
//! (Python itself fails near 1,000). In all: a document with thousands of
//! operations each naming one large schema would otherwise be resolved, and
//! copied, thousands of times.

use std::collections::HashSet;

use super::OpenApiError;
use crate::decision::python::{str_strip, to_int, to_str};
use crate::decision::{Map, Value};

/// The most values the resolutions of one document may produce in all.
pub const MAX_NODES: usize = 2_000_000;
/// The deepest a resolved value may be.
pub const MAX_DEPTH: usize = 1_000;

/// The values one document's resolutions have produced so far.
#[derive(Debug, Default)]
pub struct Budget {
    nodes: usize,
}

/// `value` with every `$ref` replaced by what it points to in `document`,
/// its values counted against `budget`.
pub fn resolve(value: &Value, document: &Value, budget: &mut Budget) -> Result<Value, OpenApiError> {
    let mut resolver = Resolver { document, chain: Vec::new(), following: HashSet::new(), budget };
    resolver.resolve(value, 0)
}

struct Resolver<'d, 'b> {
    document: &'d Value,
    /// The references being followed, outermost first (for the cycle's message).
    chain: Vec<String>,
    /// The same, to find a cycle without reading the whole chain at every step.
    following: HashSet<String>,
    budget: &'b mut Budget,
}

impl<'d> Resolver<'d, '_> {
    fn resolve(&mut self, value: &'d Value, depth: usize) -> Result<Value, OpenApiError> {
        self.budget.nodes += 1;
        if self.budget.nodes > MAX_NODES || depth > MAX_DEPTH {
            return Err(OpenApiError::new(format!(
                "Resolving $ref produces more than {MAX_NODES} values or {MAX_DEPTH} levels; \
                 this sidecar stops there."
            )));
        }
        match value {
            Value::Object(map) => match map.get("$ref") {
                Some(reference) if !reference.is_null() => self.follow(reference, depth),
                _ => {
                    let mut resolved = Map::with_capacity(map.len());
                    for (key, item) in map.iter().filter(|(key, _)| key.as_str() != "$ref") {
                        resolved.insert(key.clone(), self.resolve(item, depth + 1)?);
                    }
                    Ok(Value::Object(resolved))
                }
            },
            Value::Array(items) => {
                items.iter().map(|item| self.resolve(item, depth + 1)).collect::<Result<_, _>>().map(Value::Array)
            }
            scalar => Ok(scalar.clone()),
        }
    }

    fn follow(&mut self, reference: &Value, depth: usize) -> Result<Value, OpenApiError> {
        let reference = str_strip(reference).to_string();
        if reference.is_empty() {
            return Err(OpenApiError::new("$ref must be a non-empty string."));
        }
        if self.following.contains(&reference) {
            let cycle = self.chain.join(" -> ");
            return Err(OpenApiError::new(format!("Ref cycle detected: {cycle} -> {reference}")));
        }
        // Each step along the pointer is work too: a long pointer followed a
        // million times must spend the budget, not only the values it yields.
        self.budget.nodes += reference.matches('/').count();
        let target = pointed_at(self.document, &reference)?;
        self.following.insert(reference.clone());
        self.chain.push(reference);
        let resolved = self.resolve(target, depth + 1);
        if let Some(reference) = self.chain.pop() {
            self.following.remove(&reference);
        }
        resolved
    }
}

/// What a local JSON pointer (`#/a/b~1c/0`) names in `document`.
fn pointed_at<'d>(document: &'d Value, pointer: &str) -> Result<&'d Value, OpenApiError> {
    let Some(tokens) = pointer.strip_prefix("#/") else {
        return Err(OpenApiError::new(format!("Only local refs are supported: {pointer}")));
    };
    let mut current = document;
    for token in tokens.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        current = match current {
            Value::Object(map) => map
                .get(&token)
                .ok_or_else(|| OpenApiError::new(format!("Unknown ref token `{token}` in `{pointer}`")))?,
            Value::Array(items) => {
                let index = to_int(&Value::str(token.as_str())).map_err(|_| {
                    OpenApiError::new(format!("Ref token `{token}` must be array index in `{pointer}`"))
                })?;
                let item = match &index {
                    Value::Int(i) => usize::try_from(*i).ok().and_then(|i| items.get(i)),
                    _ => None,
                };
                item.ok_or_else(|| {
                    OpenApiError::new(format!("Ref index `{}` out of range in `{pointer}`", to_str(&index)))
                })?
            }
            _ => return Err(OpenApiError::new(format!("Ref token `{token}` is not resolvable in `{pointer}`"))),
        };
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::json::{Layout, parse, to_string};

    fn resolved(document: &str, value: &str) -> Result<String, String> {
        let document = parse(document).unwrap();
        resolve(&parse(value).unwrap(), &document, &mut Budget::default())
            .map(|v| to_string(&v, Layout::Response))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn references_are_replaced_by_their_targets_and_siblings_dropped() {
        let document = r##"{"c": {"a/b": {"x~y": [10, {"$ref": "#/c/n"}]}, "n": 5}}"##;
        assert_eq!(resolved(document, r##"{"$ref": "#/c/a~1b/x~0y", "ignored": 1}"##), Ok("[10, 5]".into()));
        assert_eq!(resolved(document, r##"{"k": {"$ref": " #/c/n "}, "$ref": null}"##), Ok(r#"{"k": 5}"#.into()));
    }

    #[test]
    fn array_indexes_are_read_as_python_reads_an_int() {
        let document = r#"{"a": [1, 2, 3]}"#;
        for index in ["1", "01", "+1", " 1", "\u{661}"] {
            assert_eq!(resolved(document, &format!(r##"{{"$ref": "#/a/{index}"}}"##)), Ok("2".into()), "{index}");
        }
        assert_eq!(
            resolved(document, r##"{"$ref": "#/a/-0_3"}"##),
            Err("Ref index `-3` out of range in `#/a/-0_3`".into())
        );
        assert_eq!(
            resolved(document, r##"{"$ref": "#/a/x"}"##),
            Err("Ref token `x` must be array index in `#/a/x`".into())
        );
    }

    #[test]
    fn a_cycle_names_the_chain_of_references() {
        let document = r##"{"a": {"$ref": "#/b"}, "b": {"p": {"$ref": "#/a"}}}"##;
        assert_eq!(resolved(document, r##"{"$ref": "#/a"}"##), Err("Ref cycle detected: #/a -> #/b -> #/a".into()));
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        let document = r#"{"s": "text"}"#;
        assert_eq!(resolved(document, r#"{"$ref": ""}"#), Err("$ref must be a non-empty string.".into()));
        assert_eq!(resolved(document, r#"{"$ref": 5}"#), Err("Only local refs are supported: 5".into()));
        assert_eq!(resolved(document, r#"{"$ref": {"a": 1}}"#), Err("Only local refs are supported: {'a': 1}".into()));
        assert_eq!(resolved(document, r##"{"$ref": "#/t"}"##), Err("Unknown ref token `t` in `#/t`".into()));
        assert_eq!(
            resolved(document, r##"{"$ref": "#/s/x"}"##),
            Err("Ref token `x` is not resolvable in `#/s/x`".into())
        );
    }

    #[test]
    fn references_that_fan_out_stop_at_the_bound() {
        // Each level refers to the next twice: 2^30 values once resolved.
        let levels: Vec<String> =
            (0..30).map(|i| format!(r##""l{i}": [{{"$ref": "#/l{n}"}}, {{"$ref": "#/l{n}"}}]"##, n = i + 1)).collect();
        let document = format!("{{{}, \"l30\": 0}}", levels.join(", "));
        assert!(resolved(&document, r##"{"$ref": "#/l0"}"##).unwrap_err().contains("more than"));
    }
}
