//! Masking secrets before anything is stored.
//!
//! Kernite's response echoes request values: a failed rule's
//! `details.current`, a guardrail's reasons, a default policy. Before the
//! response JSON (or a mutation's RETURNING values) reaches the database,
//! two kinds of operator rules mask them:
//! - request paths (`payload.card_number`): the `current` value of any reason
//!   or rule event whose `field_path` lies at or under the path;
//! - key-name patterns (`password`, `*_token`, case-insensitive, `*` is a
//!   wildcard): any object entry with a matching key, anywhere, and the
//!   `current` value of a rule on a field whose name matches.
//!
//! The `trace_hash` is computed before this, over the unredacted input, so
//! it stays equal to Kernite's.

use crate::decision::{Map, Value};

/// What a masked value is replaced with.
pub const MASK: &str = "[REDACTED]";

/// Key names masked when the operator configures none.
pub const DEFAULT_KEY_PATTERNS: &[&str] =
    &["password", "passwd", "secret", "*_secret", "token", "*_token", "api_key", "authorization", "card_number", "cvv"];

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Payload-relative paths: `payload.card.number` is stored as `["card", "number"]`.
    payload_paths: Vec<Vec<String>>,
    key_patterns: Vec<String>,
}

/// A value with secrets masked, and where they were.
#[derive(Debug, Clone, PartialEq)]
pub struct Redacted {
    pub value: Value,
    pub masked: Vec<String>,
}

impl Redactor {
    /// `paths` are request paths; only `payload.…` paths can be echoed by Kernite's rules.
    pub fn new(paths: &[String], key_patterns: &[String]) -> anyhow::Result<Redactor> {
        let mut payload_paths = Vec::new();
        for path in paths {
            let Some(rest) = path.strip_prefix("payload.") else {
                anyhow::bail!("redaction path `{path}` must start with `payload.` (the only part rules echo)");
            };
            payload_paths.push(rest.split('.').map(str::to_owned).collect());
        }
        Ok(Redactor { payload_paths, key_patterns: key_patterns.iter().map(|p| p.to_ascii_lowercase()).collect() })
    }

    fn key_is_sensitive(&self, key: &str) -> bool {
        self.key_patterns.iter().any(|pattern| glob_matches(pattern.as_bytes(), key.as_bytes()))
    }

    /// Whether a rule's `field_path` (payload-relative, dotted) names a secret.
    fn field_is_sensitive(&self, field_path: &str) -> bool {
        let segments: Vec<&str> = field_path.split('.').collect();
        let under_path = self
            .payload_paths
            .iter()
            .any(|path| segments.len() >= path.len() && path.iter().zip(&segments).all(|(a, b)| a == b));
        under_path || segments.iter().any(|s| self.key_is_sensitive(s))
    }

    /// Masks a Kernite response body.
    pub fn redact_response(&self, mut value: Value) -> Redacted {
        let mut masked = Vec::new();
        self.mask_keys(&mut value, "", &mut masked);
        if let Some(Value::Object(data)) = value.as_object_mut().and_then(|body| body.get_mut("data")) {
            for list in ["reasons", "rule_events"] {
                if let Some(Value::Array(entries)) = data.get_mut(list) {
                    for (i, entry) in entries.iter_mut().enumerate() {
                        self.mask_current(entry, &format!("data.{list}[{i}]"), &mut masked);
                    }
                }
            }
        }
        masked.sort();
        masked.dedup();
        Redacted { value, masked }
    }

    /// Masks RETURNING rows by key name.
    pub fn redact_rows(&self, rows: &[Map]) -> Vec<Map> {
        let mut masked = Vec::new();
        rows.iter()
            .map(|row| {
                let mut value = Value::Object(row.clone());
                self.mask_keys(&mut value, "", &mut masked);
                match value {
                    Value::Object(map) => map,
                    _ => unreachable!("an object stays an object"),
                }
            })
            .collect()
    }

    fn mask_current(&self, entry: &mut Value, at: &str, masked: &mut Vec<String>) {
        let Value::Object(entry) = entry else { return };
        let sensitive = entry.get("field_path").and_then(Value::as_str).is_some_and(|p| self.field_is_sensitive(p));
        if !sensitive {
            return;
        }
        if let Some(Value::Object(details)) = entry.get_mut("details")
            && let Some(current) = details.get_mut("current")
            && !current.is_null()
        {
            *current = Value::str(MASK);
            masked.push(format!("{at}.details.current"));
        }
    }

    fn mask_keys(&self, value: &mut Value, at: &str, masked: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
                    if self.key_is_sensitive(key) && !item.is_null() {
                        *item = Value::str(MASK);
                        masked.push(path);
                    } else {
                        self.mask_keys(item, &path, masked);
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.mask_keys(item, &format!("{at}[{i}]"), masked);
                }
            }
            _ => {}
        }
    }
}

/// `*` matches any run of bytes; everything else matches itself, ignoring
/// ASCII case (patterns are stored lowercased). Works on bytes so that no
/// key is copied to compare it.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.iter().position(|&b| b == b'*') {
        None => pattern.eq_ignore_ascii_case(text),
        Some(star) => {
            let (prefix, rest) = (&pattern[..star], &pattern[star + 1..]);
            if text.len() < prefix.len() || !prefix.eq_ignore_ascii_case(&text[..prefix.len()]) {
                return false;
            }
            let tail = &text[prefix.len()..];
            rest.is_empty() || (0..=tail.len()).any(|i| glob_matches(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::json::parse;

    fn redactor() -> Redactor {
        let keys: Vec<String> = DEFAULT_KEY_PATTERNS.iter().map(|s| s.to_string()).collect();
        Redactor::new(&["payload.card".into()], &keys).unwrap()
    }

    #[test]
    fn globs_match_whole_names_case_insensitively() {
        let r = redactor();
        assert!(r.key_is_sensitive("Password"));
        assert!(r.key_is_sensitive("refresh_token"));
        assert!(!r.key_is_sensitive("tokens_used"));
        assert!(!r.key_is_sensitive("amount"));
    }

    #[test]
    fn masks_echoed_values_under_paths_and_sensitive_keys() {
        let response = parse(
            r#"{"ctx_id": "c", "data": {"reasons": [
                {"code": "a", "field_path": "card.number", "details": {"current": "4111", "max": 1.0}},
                {"code": "b", "field_path": "amount", "details": {"current": 5000}},
                {"code": "c", "field_path": "user.password", "details": {"current": "hunter2"}}
              ], "rule_events": [], "policy": {"api_key": "k-123", "name": "p"}}}"#,
        )
        .unwrap();
        let redacted = redactor().redact_response(response);
        let text = crate::decision::json::to_string(&redacted.value, crate::decision::json::Layout::Canonical);
        for secret in ["4111", "hunter2", "k-123"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains("5000"), "non-secret values stay");
        assert_eq!(
            redacted.masked,
            ["data.policy.api_key", "data.reasons[0].details.current", "data.reasons[2].details.current"]
        );
    }

    #[test]
    fn only_payload_paths_are_accepted() {
        assert!(Redactor::new(&["resource.secret".into()], &[]).is_err());
    }
}
