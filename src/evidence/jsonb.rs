//! jsonb as PostgreSQL stores and prints it: what a value must be to be
//! stored ([`make_safe`]), and PostgreSQL's text of a `jsonb` value (what
//! `response_json::text` prints, [`text`]),
//! computed from the value the sidecar stores, so that the leaf's digest of
//! the response can be taken when the row is written rather than by making
//! PostgreSQL print every response again when it is sequenced.
//!
//! jsonb normalises: object keys sorted shorter first, then bytewise; `", "`
//! and `": "` between items; strings escaped as `escape_json` does (only `"`,
//! `\`, and characters below U+0020, as `\b \f \n \r \t` or `\u00xx`: the
//! escapes of Kernite's JSON, so [`write_string`] serves both);
//! numbers parsed as `numeric` and printed in plain notation with the scale
//! their text had (`1.50` stays `1.50`, `1e+16` becomes `10000000000000000`,
//! `1.5e-07` becomes `0.00000015`). `verify` never trusts this: it hashes the
//! text PostgreSQL prints, and a divergence would show as a modified row.

use std::fmt::Write as _;

use crate::decision::Value;
use crate::decision::json::{sorted_entries, write_string};
use crate::decision::python::float_repr;

/// The text `value::jsonb::text` prints, for a value that jsonb accepts
/// (finite numbers: see [`make_safe`]).
pub fn text(value: &Value) -> String {
    let mut out = String::with_capacity(1024);
    write(&mut out, value);
    out
}

/// jsonb has no NaN or Infinity, which Kernite's Python JSON (and a float8
/// column) can hold: the stored copy spells them as strings, `"NaN"`,
/// `"Infinity"`, `"-Infinity"`. The caller's answer keeps Kernite's tokens.
/// Whether anything was respelled.
pub fn make_safe(value: &mut Value) -> bool {
    match value {
        Value::Float(f) if !f.is_finite() => {
            let token = if f.is_nan() {
                "NaN"
            } else if *f > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            *value = Value::str(token);
            true
        }
        // Every item is visited: `|` does not stop at the first.
        Value::Array(items) => items.iter_mut().fold(false, |respelled, item| make_safe(item) | respelled),
        Value::Object(map) => map.values_mut().fold(false, |respelled, item| make_safe(item) | respelled),
        _ => false,
    }
}

fn write(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::BigInt(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(f) => numeric(out, &float_repr(*f)),
        Value::Str(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let entries = sorted_entries(map, |a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            out.push('{');
            for (i, &(key, item)) in entries.as_slice().iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, key);
                out.push_str(": ");
                write(out, item);
            }
            out.push('}');
        }
    }
}

/// `numeric_out(numeric_in(text))` for a JSON number's text: plain notation,
/// with as many decimals as the text's digits after the point minus its exponent.
fn numeric(out: &mut String, text: &str) {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().expect("a JSON exponent")),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let scale = (fraction.len() as i64 - exponent).max(0) as usize;
    // The value is `digits` × 10^(exponent − fraction length).
    let mut digits: String = format!("{whole}{fraction}");
    let shift = exponent - fraction.len() as i64;
    if shift > 0 {
        digits.extend(std::iter::repeat_n('0', shift as usize));
    } else if (digits.len() as i64) <= -shift {
        let pad = (-shift) as usize - digits.len() + 1;
        digits.insert_str(0, &"0".repeat(pad));
    }
    let point = digits.len() - scale;
    let integer = digits[..point].trim_start_matches('0');
    let zero = digits.bytes().all(|b| b == b'0');
    if negative && !zero {
        out.push('-');
    }
    out.push_str(if integer.is_empty() { "0" } else { integer });
    if scale > 0 {
        out.push('.');
        out.push_str(&digits[point..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> String {
        let mut out = String::new();
        numeric(&mut out, text);
        out
    }

    #[test]
    fn numbers_print_as_numeric_does() {
        for (input, printed) in [
            ("0.0", "0.0"),
            ("-0.0", "0.0"),
            ("5.0", "5.0"),
            ("2.50", "2.50"),
            ("1e+16", "10000000000000000"),
            ("1.5e-07", "0.00000015"),
            ("0.0001", "0.0001"),
            ("-1.2345678901234568e+16", "-12345678901234568"),
            ("1.5e+300", &format!("15{}", "0".repeat(299))),
            ("123.456e1", "1234.56"),
            ("7", "7"),
        ] {
            assert_eq!(number(input), printed, "{input}");
        }
    }

    #[test]
    fn objects_sort_shorter_keys_first_and_strings_escape_as_postgres_does() {
        let value =
            crate::decision::json::parse(r#"{"bb": 1, "a": [true, null], "c": "q\"\\\n\u0001é", "aa": {}}"#).unwrap();
        assert_eq!(text(&value), r#"{"a": [true, null], "c": "q\"\\\n\u0001é", "aa": {}, "bb": 1}"#);
    }
}
