//! RFC 7396 JSON merge patch: how a case changes its fixture.
//!
//! A patch names only what changes, so a case that differs from its fixture
//! by one field says just that field: `{"payload": {"amount": 5000}}` keeps
//! the rest of the payload, and `null` removes a field (the one way to test
//! a request without it). A patch that is not an object replaces the whole
//! value, arrays included: JSON merge patch does not merge arrays.

use crate::decision::{Map, Value};

/// `target` with `patch` applied, as RFC 7396's `MergePatch` defines it.
/// A member the target already has keeps its place among the others.
pub fn merge_patch(target: Value, patch: &Value) -> Value {
    let Value::Object(changes) = patch else { return patch.clone() };
    let mut merged = match target {
        Value::Object(map) => map,
        _ => Map::default(),
    };
    for (key, change) in changes.iter() {
        if change.is_null() {
            merged.shift_remove(key);
        } else if let Some(slot) = merged.get_mut(key) {
            *slot = merge_patch(std::mem::replace(slot, Value::Null), change);
        } else {
            merged.insert(key.clone(), merge_patch(Value::Null, change));
        }
    }
    Value::Object(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::json::{self, Layout};

    fn patched(target: &str, patch: &str) -> String {
        let merged = merge_patch(json::parse(target).unwrap(), &json::parse(patch).unwrap());
        json::to_string(&merged, Layout::Canonical)
    }

    /// Every example of RFC 7396, Appendix A.
    #[test]
    fn the_rfcs_examples_give_the_rfcs_results() {
        for (target, patch, result) in [
            (r#"{"a":"b"}"#, r#"{"a":"c"}"#, r#"{"a":"c"}"#),
            (r#"{"a":"b"}"#, r#"{"b":"c"}"#, r#"{"a":"b","b":"c"}"#),
            (r#"{"a":"b"}"#, r#"{"a":null}"#, r#"{}"#),
            (r#"{"a":"b","b":"c"}"#, r#"{"a":null}"#, r#"{"b":"c"}"#),
            (r#"{"a":["b"]}"#, r#"{"a":"c"}"#, r#"{"a":"c"}"#),
            (r#"{"a":"c"}"#, r#"{"a":["b"]}"#, r#"{"a":["b"]}"#),
            (r#"{"a":{"b":"c"}}"#, r#"{"a":{"b":"d","c":null}}"#, r#"{"a":{"b":"d"}}"#),
            (r#"{"a":[{"b":"c"}]}"#, r#"{"a":[1]}"#, r#"{"a":[1]}"#),
            (r#"["a","b"]"#, r#"["c","d"]"#, r#"["c","d"]"#),
            (r#"{"a":"b"}"#, r#"["c"]"#, r#"["c"]"#),
            (r#"{"a":"foo"}"#, "null", "null"),
            (r#"{"a":"foo"}"#, r#""bar""#, r#""bar""#),
            (r#"{"e":null}"#, r#"{"a":1}"#, r#"{"a":1,"e":null}"#),
            ("[1,2]", r#"{"a":"b","c":null}"#, r#"{"a":"b"}"#),
            ("{}", r#"{"a":{"bb":{"ccc":null}}}"#, r#"{"a":{"bb":{}}}"#),
        ] {
            assert_eq!(patched(target, patch), result, "{target} patched with {patch}");
        }
    }

    #[test]
    fn a_changed_member_keeps_its_place_and_a_new_one_comes_last() {
        let merged = merge_patch(
            json::parse(r#"{"workspace_id": "w", "payload": {"amount": 1, "currency": "USD"}, "operation": "create"}"#)
                .unwrap(),
            &json::parse(r#"{"payload": {"amount": 5000, "memo": "x"}}"#).unwrap(),
        );
        assert_eq!(
            json::to_string(&merged, Layout::Response),
            r#"{"workspace_id": "w", "payload": {"amount": 5000, "currency": "USD", "memo": "x"}, "operation": "create"}"#
        );
    }
}
