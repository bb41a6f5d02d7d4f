//! A test file (`*.tests.json`), read whole into typed cases before anything
//! is decided: a file is either sound or refused, never half run.
//!
//! The format is strict where a mistake would pass unseen: an unknown key
//! anywhere in the file's own structure (`expcet`, `reason_code`) is an
//! error, as are two cases of one name, a fixture that does not exist, and a
//! request that brings its own `policy_context` (a test decides with the
//! policies under test, never the request's). The requests themselves are
//! Kernite's: whatever Kernite ignores in them, this ignores too.

use std::collections::HashMap;
use std::fmt;

use super::merge_patch::merge_patch;
use crate::decision::json::{self, write_string};
use crate::decision::{Decision, Map, Value};

/// The `schema_version` a test file declares.
pub const SCHEMA_VERSION: &str = "governance-sidecar.policy-tests.v1";

const FILE_KEYS: &[&str] = &["schema_version", "fixtures", "cases"];
const CASE_KEYS: &[&str] = &["name", "request", "fixture", "patch", "expect"];
const EXPECT_KEYS: &[&str] = &["decision", "reason_codes", "matched_policies"];

/// A test file's cases, in the file's order, each with its request built.
#[derive(Debug, Clone)]
pub struct Suite {
    pub cases: Vec<Case>,
}

/// One request and what the policies under test must decide for it.
#[derive(Debug, Clone)]
pub struct Case {
    /// Where it is in `cases`, to name it in messages.
    pub index: usize,
    pub name: String,
    /// The Kernite execute request: the case's `request`, or its fixture
    /// with its patch applied.
    pub request: Value,
    pub expect: Expectation,
}

/// What a case expects. A list left out is not checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub decision: Decision,
    /// Sorted: the order Kernite reports them in is not part of a test.
    pub reason_codes: Option<Vec<String>>,
    /// Sorted policy keys.
    pub matched_policies: Option<Vec<String>>,
}

/// Which case something is about: its place in `cases`, and its name once
/// it has one. Shown as `cases[2] "large invoice"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseLabel {
    pub index: usize,
    pub name: Option<String>,
}

impl fmt::Display for CaseLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cases[{}]", self.index)?;
        match &self.name {
            Some(name) => write!(f, " {}", quoted(name)),
            None => Ok(()),
        }
    }
}

impl Case {
    pub fn label(&self) -> CaseLabel {
        CaseLabel { index: self.index, name: Some(self.name.clone()) }
    }
}

/// Why a test file, or one of its cases, cannot be run: where (the case,
/// then the field) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub case: Option<CaseLabel>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(case) = &self.case {
            write!(f, "{case}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A field and what is wrong with it, before it is known which case it is in.
struct Fault {
    field: String,
    message: String,
}

impl Fault {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Fault {
        Fault { field: field.into(), message: message.into() }
    }

    fn in_case(self, case: Option<CaseLabel>) -> Malformed {
        Malformed { case, field: Some(self.field), message: self.message }
    }
}

impl Suite {
    /// Reads a test file's text, checking all of it.
    pub fn parse(text: &str) -> Result<Suite, Malformed> {
        let whole = |message: String| Malformed { case: None, field: None, message };
        let root = json::parse(text).map_err(|error| whole(format!("not valid JSON: {error}")))?;
        let Value::Object(root) = root else { return Err(whole("must be a JSON object".to_owned())) };
        let top = |fault: Fault| fault.in_case(None);
        only_known_keys(&root, "", FILE_KEYS).map_err(top)?;
        match root.get("schema_version") {
            Some(Value::Str(version)) if version == SCHEMA_VERSION => {}
            _ => return Err(top(Fault::new("schema_version", format!("must be {}", quoted(SCHEMA_VERSION))))),
        }
        let fixtures = fixtures(root.get("fixtures")).map_err(top)?;
        let raw_cases = match root.get("cases") {
            Some(Value::Array(cases)) if !cases.is_empty() => cases,
            Some(Value::Array(_)) => return Err(top(Fault::new("cases", "must hold at least one case"))),
            _ => return Err(top(Fault::new("cases", "required: an array of cases"))),
        };
        let mut cases = Vec::with_capacity(raw_cases.len());
        let mut first_named: HashMap<String, usize> = HashMap::new();
        for (index, raw) in raw_cases.iter().enumerate() {
            let case = Case::parse(index, raw, &fixtures)?;
            if let Some(first) = first_named.insert(case.name.clone(), index) {
                let message = format!("{} is also the name of cases[{first}]", quoted(&case.name));
                return Err(Fault::new("name", message).in_case(Some(case.label())));
            }
            cases.push(case);
        }
        Ok(Suite { cases })
    }
}

/// `fixtures`: named requests that cases start from.
fn fixtures(raw: Option<&Value>) -> Result<HashMap<&str, &Map>, Fault> {
    let Some(raw) = raw else { return Ok(HashMap::new()) };
    let Value::Object(raw) = raw else { return Err(Fault::new("fixtures", "must be an object of named requests")) };
    raw.iter()
        .map(|(name, request)| match request {
            Value::Object(request) => Ok((name.as_str(), request)),
            _ => Err(Fault::new(format!("fixtures.{name}"), "must be an object (a Kernite execute request)")),
        })
        .collect()
}

impl Case {
    fn parse(index: usize, raw: &Value, fixtures: &HashMap<&str, &Map>) -> Result<Case, Malformed> {
        let mut label = CaseLabel { index, name: None };
        let Value::Object(raw) = raw else {
            return Err(Malformed { case: Some(label), field: None, message: "must be an object".to_owned() });
        };
        let name = match raw.get("name") {
            Some(Value::Str(name)) if !name.trim().is_empty() => name.to_string(),
            _ => return Err(Fault::new("name", "required: a non-empty string").in_case(Some(label))),
        };
        label.name = Some(name.clone());
        let in_case = |fault: Fault| fault.in_case(Some(label.clone()));
        only_known_keys(raw, "", CASE_KEYS).map_err(in_case)?;
        let request = request(raw, fixtures).map_err(in_case)?;
        let expect = Expectation::parse(raw.get("expect")).map_err(in_case)?;
        Ok(Case { index, name, request, expect })
    }
}

/// A case's request: its own `request`, or its `fixture` with its `patch`.
fn request(case: &Map, fixtures: &HashMap<&str, &Map>) -> Result<Value, Fault> {
    let request = match (case.get("request"), case.get("fixture"), case.get("patch")) {
        (Some(_), Some(_), _) => return Err(Fault::new("fixture", "a case has a request or a fixture, not both")),
        (Some(_), None, Some(_)) => return Err(Fault::new("patch", "only a fixture is patched: give `fixture`")),
        (Some(Value::Object(request)), None, None) => Value::Object(request.clone()),
        (Some(_), None, None) => return Err(Fault::new("request", "must be an object (a Kernite execute request)")),
        (None, Some(Value::Str(name)), patch) => {
            let Some(&fixture) = fixtures.get(name.as_str()) else {
                let mut known: Vec<&str> = fixtures.keys().copied().collect();
                known.sort_unstable();
                let message = format!("no fixture is named {} (fixtures: {})", quoted(name), known.join(", "));
                return Err(Fault::new("fixture", message));
            };
            match patch {
                None => Value::Object(fixture.clone()),
                Some(patch @ Value::Object(_)) => merge_patch(Value::Object(fixture.clone()), patch),
                Some(_) => return Err(Fault::new("patch", "must be an object (a JSON merge patch of the fixture)")),
            }
        }
        (None, Some(_), _) => return Err(Fault::new("fixture", "must be the name of a fixture")),
        (None, None, _) => return Err(Fault::new("request", "required: a request, or a fixture (and a patch)")),
    };
    if request.as_object().and_then(|r| r.get("policy_context")).is_some_and(|context| !context.is_null()) {
        return Err(Fault::new(
            "request.policy_context",
            "not allowed: a test is decided by the --policy-bundle or --policy given, not by the request",
        ));
    }
    Ok(request)
}

impl Expectation {
    fn parse(raw: Option<&Value>) -> Result<Expectation, Fault> {
        let Some(Value::Object(raw)) = raw else {
            return Err(Fault::new("expect", "required: an object with at least `decision`"));
        };
        only_known_keys(raw, "expect.", EXPECT_KEYS)?;
        let decision = match raw.get("decision") {
            Some(Value::Str(word)) => word.parse().ok(),
            _ => None,
        };
        let Some(decision) = decision else {
            return Err(Fault::new("expect.decision", r#"must be "approved" or "denied""#));
        };
        Ok(Expectation {
            decision,
            reason_codes: sorted_strings(raw.get("reason_codes"), "expect.reason_codes")?,
            matched_policies: sorted_strings(raw.get("matched_policies"), "expect.matched_policies")?,
        })
    }
}

/// An optional array of strings, sorted.
fn sorted_strings(raw: Option<&Value>, field: &str) -> Result<Option<Vec<String>>, Fault> {
    let Some(raw) = raw else { return Ok(None) };
    let Value::Array(items) = raw else { return Err(Fault::new(field, "must be an array of strings")) };
    let mut strings = items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::Str(text) => Ok(text.to_string()),
            _ => Err(Fault::new(format!("{field}[{index}]"), "must be a string")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    strings.sort_unstable();
    Ok(Some(strings))
}

/// The first key of `map` that is not `known`, as an error.
fn only_known_keys(map: &Map, prefix: &str, known: &[&str]) -> Result<(), Fault> {
    match map.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(Fault::new(format!("{prefix}{key}"), format!("unknown key (known: {})", known.join(", ")))),
        None => Ok(()),
    }
}

/// `text` as a JSON string, quotes and escapes included.
pub(super) fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    write_string(&mut out, text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = r#"{"workspace_id": "acme", "principal": {"type": "user", "id": "u1"},
        "object_type": "invoice", "operation": "create", "payload": {"amount": 100, "currency": "USD"}}"#;

    /// A test file with these cases (JSON text, comma-separated) and the fixture `invoice`.
    fn file(cases: &str) -> String {
        format!(r#"{{"schema_version": "{SCHEMA_VERSION}", "fixtures": {{"invoice": {FIXTURE}}}, "cases": [{cases}]}}"#)
    }

    fn refusal(text: &str) -> String {
        Suite::parse(text).expect_err("the file is refused").to_string()
    }

    #[test]
    fn a_case_patches_its_fixture_and_sorts_what_it_expects() {
        let suite = Suite::parse(&file(
            r#"{"name": "large", "fixture": "invoice", "patch": {"payload": {"amount": 5000, "currency": null}},
                "expect": {"decision": "denied", "reason_codes": ["b", "a"], "matched_policies": ["p"]}}"#,
        ))
        .unwrap();
        let case = &suite.cases[0];
        assert_eq!(case.name, "large");
        assert_eq!(
            json::to_string(&case.request.as_object().unwrap()["payload"], json::Layout::Canonical),
            r#"{"amount":5000}"#
        );
        assert_eq!(
            case.expect,
            Expectation {
                decision: Decision::Denied,
                reason_codes: Some(vec!["a".into(), "b".into()]),
                matched_policies: Some(vec!["p".into()]),
            }
        );
    }

    #[test]
    fn a_case_may_carry_its_whole_request_and_check_only_the_decision() {
        let suite = Suite::parse(&file(&format!(
            r#"{{"name": "whole", "request": {FIXTURE}, "expect": {{"decision": "approved"}}}}"#
        )))
        .unwrap();
        assert_eq!(suite.cases[0].request, json::parse(FIXTURE).unwrap());
        assert_eq!(suite.cases[0].expect.reason_codes, None);
        assert_eq!(suite.cases[0].expect.matched_policies, None);
    }

    #[test]
    fn a_refusal_names_the_case_and_the_field() {
        let ok = r#"{"name": "fine", "fixture": "invoice", "expect": {"decision": "approved"}}"#;
        for (case, refused) in [
            (
                r#"{"name": "typo", "fixture": "invoice", "expect": {"decison": "approved"}}"#,
                r#"cases[1] "typo": expect.decison: unknown key (known: decision, reason_codes, matched_policies)"#,
            ),
            (
                r#"{"name": "big", "fixture": "invoice", "expect": {"decision": "deny"}}"#,
                r#"cases[1] "big": expect.decision: must be "approved" or "denied""#,
            ),
            (
                r#"{"name": "none", "fixture": "invoice"}"#,
                r#"cases[1] "none": expect: required: an object with at least `decision`"#,
            ),
            (
                r#"{"name": "where", "fixture": "invoise", "expect": {"decision": "approved"}}"#,
                r#"cases[1] "where": fixture: no fixture is named "invoise" (fixtures: invoice)"#,
            ),
            (
                r#"{"name": "own", "fixture": "invoice", "patch": {"policy_context": {"governed": false}}, "expect": {"decision": "approved"}}"#,
                r#"cases[1] "own": request.policy_context: not allowed: a test is decided by the --policy-bundle or --policy given, not by the request"#,
            ),
            (
                r#"{"name": "fine", "fixture": "invoice", "expect": {"decision": "denied"}}"#,
                r#"cases[1] "fine": name: "fine" is also the name of cases[0]"#,
            ),
            (
                r#"{"fixture": "invoice", "expect": {"decision": "denied"}}"#,
                "cases[1]: name: required: a non-empty string",
            ),
            (
                r#"{"name": "both", "fixture": "invoice", "request": {}, "expect": {"decision": "denied"}}"#,
                r#"cases[1] "both": fixture: a case has a request or a fixture, not both"#,
            ),
            (
                r#"{"name": "codes", "fixture": "invoice", "expect": {"decision": "denied", "reason_codes": ["a", 1]}}"#,
                r#"cases[1] "codes": expect.reason_codes[1]: must be a string"#,
            ),
            (
                r#"{"name": "extra", "fixture": "invoice", "expect": {"decision": "denied"}, "skip": true}"#,
                r#"cases[1] "extra": skip: unknown key (known: name, request, fixture, patch, expect)"#,
            ),
        ] {
            assert_eq!(refusal(&file(&format!("{ok}, {case}"))), refused);
        }
    }

    #[test]
    fn a_file_is_refused_for_its_own_structure() {
        assert!(refusal("{").starts_with("not valid JSON: "));
        assert_eq!(refusal("[]"), "must be a JSON object");
        assert_eq!(
            refusal(r#"{"schema_version": "v0", "cases": []}"#),
            r#"schema_version: must be "governance-sidecar.policy-tests.v1""#
        );
        assert_eq!(refusal(&file("")), "cases: must hold at least one case");
        assert_eq!(
            refusal(&format!(r#"{{"schema_version": "{SCHEMA_VERSION}", "case": []}}"#)),
            "case: unknown key (known: schema_version, fixtures, cases)"
        );
        assert_eq!(
            refusal(&format!(r#"{{"schema_version": "{SCHEMA_VERSION}", "fixtures": {{"a": []}}, "cases": []}}"#)),
            "fixtures.a: must be an object (a Kernite execute request)"
        );
    }
}
