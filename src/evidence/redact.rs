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
//! The request's stored copy (what `replay` re-decides) is masked by the
//! same rules: the value at each payload path, and any object entry with a
//! matching key in the payload, resource, context and principal attributes
//! (never the identifiers: replay reads the scope from them).
//!
//! The `trace_hash` is computed before this, over the unredacted input, so
//! it stays equal to Kernite's.

use crate::decision::{Map, NormalizedRequest, Value};

/// What a masked value is replaced with.
pub const MASK: &str = "[REDACTED]";

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Payload-relative paths: `payload.card.number` is stored as `["card", "number"]`.
    payload_paths: Vec<Vec<String>>,
    key_patterns: Vec<KeyPattern>,
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
        Ok(Redactor { payload_paths, key_patterns: key_patterns.iter().map(|p| KeyPattern::new(p)).collect() })
    }

    /// Whether an object key (or a column name) names a secret.
    pub(super) fn key_is_sensitive(&self, key: &str) -> bool {
        self.key_patterns.iter().any(|pattern| pattern.matches(key.as_bytes()))
    }

    /// Whether a rule's `field_path` (payload-relative, dotted) names a secret.
    fn field_is_sensitive(&self, field_path: &str) -> bool {
        let under_path = self.payload_paths.iter().any(|path| {
            let mut segments = field_path.split('.');
            path.iter().all(|a| segments.next() == Some(a.as_str()))
        });
        under_path || field_path.split('.').any(|s| self.key_is_sensitive(s))
    }

    /// Masks a Kernite response body.
    pub fn redact_response(&self, mut value: Value) -> Redacted {
        let mut masked = Vec::new();
        self.mask_keys(&mut value, None, &mut masked);
        if let Some(Value::Object(data)) = value.as_object_mut().and_then(|body| body.get_mut("data")) {
            for list in ["reasons", "rule_events"] {
                if let Some(Value::Array(entries)) = data.get_mut(list) {
                    let data_at = At { parent: None, step: Step::Key("data") };
                    let list_at = At { parent: Some(&data_at), step: Step::Key(list) };
                    for (i, entry) in entries.iter_mut().enumerate() {
                        self.mask_current(entry, &At { parent: Some(&list_at), step: Step::Index(i) }, &mut masked);
                    }
                }
            }
        }
        masked.sort();
        masked.dedup();
        Redacted { value, masked }
    }

    /// Masks the request's stored copy; `None` when nothing is masked (the
    /// common case, and the only one without a copy of the request).
    pub fn redact_request(&self, request: &NormalizedRequest) -> Option<Redacted> {
        if self.payload_paths.is_empty() && self.key_patterns.is_empty() {
            return None;
        }
        let mut value = request.to_value();
        let mut masked = Vec::new();
        let request_map = value.as_object_mut().expect("a request renders as an object");
        if let Some(Value::Object(payload)) = request_map.get_mut("payload") {
            for path in &self.payload_paths {
                mask_path(payload, path, &mut masked);
            }
        }
        for field in ["payload", "resource", "context"] {
            let at = At { parent: None, step: Step::Key(field) };
            self.mask_keys(request_map.get_mut(field).expect("every request has it"), Some(&at), &mut masked);
        }
        if let Some(Value::Object(principal)) = request_map.get_mut("principal") {
            let principal_at = At { parent: None, step: Step::Key("principal") };
            let at = At { parent: Some(&principal_at), step: Step::Key("attributes") };
            self.mask_keys(principal.get_mut("attributes").expect("every principal has them"), Some(&at), &mut masked);
        }
        masked.sort();
        masked.dedup();
        (!masked.is_empty()).then_some(Redacted { value, masked })
    }

    /// Masks RETURNING rows by key name.
    pub fn redact_rows(&self, rows: &[Map]) -> Vec<Map> {
        let mut masked = Vec::new();
        rows.iter()
            .map(|row| {
                let mut value = Value::Object(row.clone());
                self.mask_keys(&mut value, None, &mut masked);
                match value {
                    Value::Object(map) => map,
                    _ => unreachable!("an object stays an object"),
                }
            })
            .collect()
    }

    fn mask_current(&self, entry: &mut Value, at: &At<'_>, masked: &mut Vec<String>) {
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
            masked.push(format!("{}.details.current", at.render()));
        }
    }

    /// Walks the whole value; the path of a node is only spelled out when
    /// something there is masked, which is rarely.
    fn mask_keys(&self, value: &mut Value, at: Option<&At<'_>>, masked: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    let here = At { parent: at, step: Step::Key(key) };
                    if self.key_is_sensitive(key) && !item.is_null() {
                        *item = Value::str(MASK);
                        masked.push(here.render());
                    } else {
                        self.mask_keys(item, Some(&here), masked);
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let here = At { parent: at, step: Step::Index(i) };
                    self.mask_keys(item, Some(&here), masked);
                }
            }
            _ => {}
        }
    }
}

/// Masks the value at a payload path (`["card", "number"]`), whatever it is,
/// naming it `payload.card.number`.
fn mask_path(payload: &mut Map, path: &[String], masked: &mut Vec<String>) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut map = payload;
    for key in parents {
        match map.get_mut(key) {
            Some(Value::Object(inner)) => map = inner,
            _ => return,
        }
    }
    if let Some(value) = map.get_mut(last)
        && !value.is_null()
    {
        *value = Value::str(MASK);
        masked.push(format!("payload.{}", path.join(".")));
    }
}

/// Where a node sits, as a chain up to the root on the walker's stack.
struct At<'a> {
    parent: Option<&'a At<'a>>,
    step: Step<'a>,
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

impl At<'_> {
    /// `data.reasons[0].details`: keys joined by dots, indices in brackets.
    fn render(&self) -> String {
        let mut steps = vec![&self.step];
        let mut node = self;
        while let Some(parent) = node.parent {
            steps.push(&parent.step);
            node = parent;
        }
        let mut out = String::new();
        for step in steps.into_iter().rev() {
            match step {
                Step::Key(key) if out.is_empty() => out.push_str(key),
                Step::Key(key) => {
                    out.push('.');
                    out.push_str(key);
                }
                Step::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

/// A key-name pattern, compiled once: `*` matches any run of bytes,
/// everything else matches itself ignoring ASCII case. The common shapes
/// (a name, `prefix*`, `*suffix`) are a length check and one comparison,
/// because every key of every stored response is checked against them.
#[derive(Debug, Clone)]
enum KeyPattern {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    Suffix(Vec<u8>),
    Glob(Vec<u8>),
}

impl KeyPattern {
    fn new(pattern: &str) -> KeyPattern {
        let bytes = pattern.to_ascii_lowercase().into_bytes();
        match bytes.iter().filter(|&&b| b == b'*').count() {
            0 => KeyPattern::Exact(bytes),
            1 if bytes.last() == Some(&b'*') => KeyPattern::Prefix(bytes[..bytes.len() - 1].to_vec()),
            1 if bytes.first() == Some(&b'*') => KeyPattern::Suffix(bytes[1..].to_vec()),
            _ => KeyPattern::Glob(bytes),
        }
    }

    fn matches(&self, key: &[u8]) -> bool {
        match self {
            KeyPattern::Exact(name) => name.eq_ignore_ascii_case(key),
            KeyPattern::Prefix(prefix) => {
                key.len() >= prefix.len() && prefix.eq_ignore_ascii_case(&key[..prefix.len()])
            }
            KeyPattern::Suffix(suffix) => {
                key.len() >= suffix.len() && suffix.eq_ignore_ascii_case(&key[key.len() - suffix.len()..])
            }
            KeyPattern::Glob(pattern) => glob_matches(pattern, key),
        }
    }
}

/// The general case of [`KeyPattern`]: works on bytes so that no key is
/// copied to compare it.
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
    use crate::defaults::DEFAULT_KEY_PATTERNS;

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
    fn every_pattern_shape_matches_like_the_general_glob() {
        let keys = ["token", "TOKEN", "api_token", "token_id", "x_token_y", "tok", "", "_token", "a*b"];
        for pattern in ["token", "*_token", "token*", "*token*", "a*b*c", "*", "x*y"] {
            let compiled = KeyPattern::new(pattern);
            for key in keys {
                assert_eq!(
                    compiled.matches(key.as_bytes()),
                    glob_matches(pattern.as_bytes(), key.to_ascii_lowercase().as_bytes()),
                    "{pattern} against {key}"
                );
            }
        }
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
    fn the_requests_copy_is_masked_in_its_maps_but_never_in_its_identifiers() {
        let body = parse(
            r#"{"workspace_id": "w", "principal": {"type": "user", "id": "u", "attributes": {"api_key": "k-1"}},
                "object_type": "invoice", "operation": "create",
                "payload": {"card": {"number": "4111"}, "amount": 5, "items": [{"password": "p"}]},
                "context": {"session_token": "s-1"}}"#,
        )
        .unwrap();
        let validation = crate::decision::validate(body, None).unwrap().unwrap();
        let redacted = redactor().redact_request(&validation.request).expect("something is masked");
        let text = crate::decision::json::to_string(&redacted.value, crate::decision::json::Layout::Canonical);
        for secret in ["4111", "k-1", "s-1", "\"p\""] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains(r#""amount":5"#) && text.contains(r#""workspace_id":"w""#), "{text}");
        assert_eq!(
            redacted.masked,
            ["context.session_token", "payload.card", "payload.items[0].password", "principal.attributes.api_key"]
        );
        assert!(Redactor::default().redact_request(&validation.request).is_none());
        let nothing_secret = Redactor::new(&["payload.cvv".into()], &[]).unwrap();
        assert!(nothing_secret.redact_request(&validation.request).is_none());
    }

    #[test]
    fn only_payload_paths_are_accepted() {
        assert!(Redactor::new(&["resource.secret".into()], &[]).is_err());
    }
}
