//! A request's path, query and body, read once and strictly: whatever the
//! sidecar decides on must be what the upstream will act on, so anything a
//! server could read two ways is refused rather than guessed.
//!
//! - The path is split on `/` before each segment is percent-decoded, so an
//!   encoded `/` never makes a segment; `.`, `..`, an empty segment (`//`,
//!   though a trailing `/` is kept for the route to match), a `;` (a path
//!   parameter, which some servers strip), an encoded `/` or `\`, and bad
//!   encodings are refused.
//! - The payload is the JSON body (any non-empty body must be a JSON object,
//!   whatever its `content-type` says: many servers parse JSON regardless),
//!   with the path's parameters and the query's, as strings; a query name
//!   given more than once is an array of its values. A name found in two of
//!   these with different values is refused as ambiguous.

use super::Untranslatable;
use super::request::HttpRequest;
use crate::decision::json;
use crate::decision::{Map, Value};

/// Envoy sets this when it sent only the first part of the body.
const PARTIAL_BODY_HEADER: &str = "x-envoy-auth-partial-body";

/// The decoded segments of `path` (`/` is no segment at all).
pub(super) fn path_segments(path: &str) -> Result<Vec<String>, Untranslatable> {
    let bad = |why: &str| Untranslatable::BadPath(why.to_owned());
    let rest = path.strip_prefix('/').ok_or_else(|| bad("it does not start with /"))?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let count = rest.split('/').count();
    rest.split('/')
        .enumerate()
        .map(|(index, segment)| {
            if segment.is_empty() && index + 1 < count {
                return Err(bad("an empty segment"));
            }
            if segment.contains(';') {
                return Err(bad("a `;` in a segment"));
            }
            let decoded = percent_decode(segment, false).ok_or_else(|| bad("a bad percent-encoding"))?;
            if decoded == "." || decoded == ".." {
                return Err(bad("a `.` or `..` segment"));
            }
            if decoded.contains(['/', '\\']) {
                return Err(bad("an encoded / or \\ in a segment"));
            }
            Ok(decoded)
        })
        .collect()
}

/// The payload: the body's fields, then the path's and the query's parameters.
pub(super) fn payload(request: &HttpRequest<'_>, parameters: Map, query: &str) -> Result<Map, Untranslatable> {
    let mut payload = body(request)?;
    for (name, value) in parameters {
        add(&mut payload, name.to_string(), value)?;
    }
    for (name, value) in query_parameters(query)? {
        add(&mut payload, name, value)?;
    }
    Ok(payload)
}

fn body(request: &HttpRequest<'_>) -> Result<Map, Untranslatable> {
    if request.headers.get(PARTIAL_BODY_HEADER)?.is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(Untranslatable::PartialBody);
    }
    let Some(bytes) = request.body.filter(|b| !b.is_empty()) else { return Ok(Map::default()) };
    let text = std::str::from_utf8(bytes).map_err(|_| Untranslatable::BadBody("it is not UTF-8".into()))?;
    match json::parse(text) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(Untranslatable::BadBody("it is JSON, but not an object".into())),
        Err(error) => Err(Untranslatable::BadBody(error.to_string())),
    }
}

/// The query's parameters in order, a repeated name's values gathered.
fn query_parameters(query: &str) -> Result<Vec<(String, Value)>, Untranslatable> {
    let mut parameters: Vec<(String, Value)> = Vec::new();
    // Where each name is in `parameters`: thousands of names cost no more than their length.
    let mut positions: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |text: &str| {
            percent_decode(text, true)
                .ok_or_else(|| Untranslatable::BadQuery(format!("a bad percent-encoding in `{pair}`")))
        };
        let (name, value) = (decode(name)?, Value::str(decode(value)?));
        match positions.get(&name).map(|&position| &mut parameters[position].1) {
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![std::mem::replace(first, Value::Null), value]),
            None => {
                positions.insert(name.clone(), parameters.len());
                parameters.push((name, value));
            }
        }
    }
    Ok(parameters)
}

/// Adds `name`, unless the payload already holds it with another value.
fn add(payload: &mut Map, name: String, value: Value) -> Result<(), Untranslatable> {
    match payload.get(name.as_str()) {
        None => {
            payload.insert(name.into(), value);
            Ok(())
        }
        Some(held) if same(held, &value) => Ok(()),
        Some(_) => Err(Untranslatable::Ambiguous(name)),
    }
}

/// Whether a body's value and a parameter's text say the same: `7` and `"7"` do.
fn same(held: &Value, parameter: &Value) -> bool {
    match (held, parameter) {
        (Value::Str(_), _) | (Value::Array(_), _) => held == parameter,
        (held, Value::Str(text)) => json::to_string(held, json::Layout::Canonical) == text.as_str(),
        _ => false,
    }
}

/// `%XX` decoded (and `+` as a space in a query), as UTF-8; `None` if malformed.
fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = bytes.get(index + 1..index + 3).filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))?;
                decoded.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                index += 3;
            }
            b'+' if plus_is_space => {
                decoded.push(b' ');
                index += 1;
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_decoded_and_a_repeated_name_gathered() {
        let parameters = query_parameters("a=1&b=x+y%21&a=2&&c").unwrap();
        let names: Vec<&str> = parameters.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(parameters[0].1, Value::Array(vec![Value::str("1"), Value::str("2")]));
        assert_eq!(parameters[1].1, Value::str("x y!"));
        assert_eq!(parameters[2].1, Value::str(""));
        assert!(query_parameters("a=%4").is_err() && query_parameters("a=%ff").is_err());
        assert!(query_parameters("a=%+5").is_err() && query_parameters("a=%-5").is_err());
    }

    #[test]
    fn segments_are_decoded_after_the_split() {
        assert_eq!(path_segments("/").unwrap(), Vec::<String>::new());
        assert_eq!(path_segments("/a%20b/c").unwrap(), ["a b", "c"]);
        assert_eq!(path_segments("/a/b/").unwrap(), ["a", "b", ""]);
        assert_eq!(path_segments("/a%3Bb").unwrap(), ["a;b"]);
        for bad in ["a", "/%2e%2e/x", "/./x", "/a%5cb", "/%", "/a//b", "//a", "/a;v=1/b", "/a/b;", "/a%+5"] {
            assert!(path_segments(bad).is_err(), "{bad}");
        }
    }
}
