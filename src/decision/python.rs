//! The Python builtins Kernite applies to request values, reproduced exactly.
//!
//! Kernite normalises with `str(v or "").strip()`, `int(v)` and `float(v)`;
//! each of these has behaviour (float `repr`, `str` of a list, underscores in
//! numeric strings, what counts as whitespace) that reaches the response and
//! the `trace_hash`, so "close enough" is not enough.

use std::fmt::Write as _;

use num_bigint::BigInt;
use num_traits::{FromPrimitive, ToPrimitive};

use super::value::{Map, Text, Value};

/// Python 3.11 refuses to convert integers longer than this to or from text.
pub const MAX_INT_DIGITS: usize = 4300;

/// Python's `str.isspace`: Unicode White_Space plus the ASCII separators
/// U+001C..U+001F, which Python also strips.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
pub fn strip(s: &str) -> &str {
    // Most strings start and end with a visible ASCII character: nothing to strip.
    let visible = |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii_graphic());
    if visible(s.as_bytes().first()) && visible(s.as_bytes().last()) {
        return s;
    }
    s.trim_matches(is_python_space)
}

/// Python's `str(value or "").strip()`, Kernite's identity-string normaliser.
pub fn normalize_string(value: &Value) -> Text {
    if !value.is_truthy() {
        return Text::default();
    }
    match value {
        Value::Str(s) => Text::from(strip(s)),
        other => Text::from(strip(&to_str(other))),
    }
}

/// Python's `str(value).strip()`, without the `or ""` of [`normalize_string`]:
/// `None` is `"None"`, `False` is `"False"`.
pub fn str_strip(value: &Value) -> Text {
    match value {
        Value::Str(s) => Text::from(strip(s)),
        other => Text::from(strip(&to_str(other))),
    }
}

/// Like [`normalize_string`], then Python's `str.lower()` (full Unicode lowercasing).
pub fn normalize_lower(value: &Value) -> Text {
    let mut s = normalize_string(value);
    // Usually already lowercase ASCII: one pass (without early exit, so it
    // vectorises) to know. On ASCII, Python's lower() is ASCII lowercasing.
    let (upper, non_ascii) =
        s.bytes().fold((false, false), |(upper, high), b| (upper | b.is_ascii_uppercase(), high | !b.is_ascii()));
    if non_ascii {
        Text::from(s.to_lowercase())
    } else {
        if upper {
            s.make_ascii_lowercase();
        }
        s
    }
}

/// Python's `str(value)`.
pub fn to_str(value: &Value) -> Text {
    match value {
        Value::Str(s) => s.clone(),
        other => {
            let mut out = String::new();
            write_repr(&mut out, other);
            Text::from(out)
        }
    }
}

/// Python's `repr(value)`, appended to `out`.
fn write_repr(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::BigInt(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(f) => out.push_str(&float_repr(*f)),
        Value::Str(s) => write_str_repr(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_dict_repr(out, map),
    }
}

fn write_dict_repr(out: &mut String, map: &Map) {
    out.push('{');
    for (i, (key, item)) in map.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_str_repr(out, key);
        out.push_str(": ");
        write_repr(out, item);
    }
    out.push('}');
}

/// Python's `repr(str)`: single quotes unless the text has a single quote
/// and no double quote; non-printable characters escaped.
fn write_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_printable(c) => out.push(c),
            c if (c as u32) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push(quote);
}

/// Python's `str.isprintable` for one character: everything but the
/// categories Cc, Cf, Co, Cs, Cn, Zl, Zp and Zs other than the ASCII space.
/// The non-ASCII ranges below cover the control, format, separator and
/// private-use characters; unassigned code points are printed as they are.
fn is_printable(c: char) -> bool {
    let u = c as u32;
    if u < 0x7f {
        return u >= 0x20;
    }
    !matches!(u,
        0x7f..=0xa0 | 0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890..=0x891
        | 0x8e2 | 0x1680 | 0x180e | 0x2000..=0x200f | 0x2028..=0x202f
        | 0x205f..=0x2064 | 0x2066..=0x206f | 0x3000 | 0xd800..=0xf8ff | 0xfeff
        | 0xfff9..=0xfffb | 0x110bd | 0x110cd | 0x13430..=0x13438 | 0x1bca0..=0x1bca3
        | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f | 0xf0000..=0x10ffff)
}

/// Python's `repr(float)`: the shortest digits that round-trip, laid out in
/// plain notation for decimal exponents in [-4, 16) and as `d.ddde±XX` otherwise;
/// whole numbers in plain notation keep a `.0`.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    // Rust's `{:e}` finds the shortest digit count that round-trips. When two
    // strings of that length both round-trip, Python takes the one nearest the
    // exact value (ties to even); Rust's exact formatting at that precision
    // rounds the same way, so the digits come from there.
    let shortest = format!("{:e}", f.abs());
    let digit_count =
        shortest.split_once('e').expect("LowerExp writes an exponent").0.len() - usize::from(shortest.contains('.'));
    let scientific = format!("{:.*e}", digit_count - 1, f.abs());
    let (mantissa, exponent) = scientific.split_once('e').expect("LowerExp writes an exponent");
    let exponent: i32 = exponent.parse().expect("LowerExp writes an integer exponent");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();

    let mut out = String::with_capacity(digits.len() + 8);
    if f < 0.0 {
        out.push('-');
    }
    if (-4..16).contains(&exponent) {
        if exponent >= 0 {
            let int_len = exponent as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exponent - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exponent.abs());
    }
    out
}

/// Removes Python's digit-group underscores, which are only allowed singly
/// between two digits; `None` if they are misplaced.
fn strip_digit_underscores(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'_' {
            let before = i.checked_sub(1).map(|j| bytes[j]);
            let after = bytes.get(i + 1).copied();
            if !before.is_some_and(|c| c.is_ascii_digit()) || !after.is_some_and(|c| c.is_ascii_digit()) {
                return None;
            }
        }
    }
    Some(s.replace('_', ""))
}

/// Python's `int(text)` for a string, base 10.
fn parse_int_str(text: &str) -> Option<BigInt> {
    let text = decimal_digits_as_ascii(text);
    let text = strip_number(&text);
    let (sign, digits) = match text.as_bytes().first() {
        Some(b'+') => ("", &text[1..]),
        Some(b'-') => ("-", &text[1..]),
        _ => ("", text),
    };
    let digits = strip_digit_underscores(digits)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > MAX_INT_DIGITS {
        return None;
    }
    format!("{sign}{digits}").parse().ok()
}

/// The first code point of each run of ten decimal digits (Unicode category
/// Nd) in Python 3.11's Unicode 14.0 database: `int("١٢")` is 12.
const DECIMAL_ZEROS: [u32; 66] = [
    0x30, 0x660, 0x6f0, 0x7c0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66, 0xce6, 0xd66, 0xde6, 0xe50, 0xed0,
    0xf20, 0x1040, 0x1090, 0x17e0, 0x1810, 0x1946, 0x19d0, 0x1a80, 0x1a90, 0x1b50, 0x1bb0, 0x1c40, 0x1c50, 0xa620,
    0xa8d0, 0xa900, 0xa9d0, 0xa9f0, 0xaa50, 0xabf0, 0xff10, 0x104a0, 0x10d30, 0x11066, 0x110f0, 0x11136, 0x111d0,
    0x112f0, 0x11450, 0x114d0, 0x11650, 0x116c0, 0x11730, 0x118e0, 0x11950, 0x11c50, 0x11d50, 0x11da0, 0x16a60,
    0x16ac0, 0x16b50, 0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6, 0x1e140, 0x1e2f0, 0x1e950, 0x1fbf0,
];

/// The whitespace `int()` and `float()` ignore around a number: Unicode
/// White_Space, which, unlike `str.strip`, leaves U+001C..U+001F alone.
fn strip_number(text: &str) -> &str {
    text.trim_matches(char::is_whitespace)
}

/// Python reads every decimal digit as its ASCII digit before parsing a
/// number (`_PyUnicode_TransformDecimalAndSpaceToASCII`).
fn decimal_digits_as_ascii(text: &str) -> std::borrow::Cow<'_, str> {
    if text.is_ascii() {
        return std::borrow::Cow::Borrowed(text);
    }
    let digit = |c: char| {
        let zero = DECIMAL_ZEROS.partition_point(|&zero| zero <= c as u32).checked_sub(1)?;
        let value = c as u32 - DECIMAL_ZEROS[zero];
        (value < 10).then(|| char::from(b'0' + value as u8))
    };
    std::borrow::Cow::Owned(text.chars().map(|c| digit(c).unwrap_or(c)).collect())
}

/// Why Python's `int(value)` fails: Kernite catches `TypeError` and
/// `ValueError` but not `OverflowError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntError {
    /// Python raises TypeError or ValueError: Kernite treats the value as invalid.
    Invalid,
    /// Python raises OverflowError (`int(inf)`): Kernite itself crashes.
    Overflow,
}

/// Python's `int(value)` on a JSON value.
pub fn to_int(value: &Value) -> Result<Value, IntError> {
    match value {
        Value::Bool(b) => Ok(Value::Int(i64::from(*b))),
        Value::Int(_) | Value::BigInt(_) => Ok(value.clone()),
        Value::Float(f) if f.is_nan() => Err(IntError::Invalid),
        Value::Float(f) if f.is_infinite() => Err(IntError::Overflow),
        Value::Float(f) => {
            let whole = f.trunc();
            Ok(match whole.to_i64() {
                Some(small) => Value::Int(small),
                None => Value::from_bigint(BigInt::from_f64(whole).expect("a finite whole float converts exactly")),
            })
        }
        Value::Str(s) => parse_int_str(s).map(Value::from_bigint).ok_or(IntError::Invalid),
        Value::Null | Value::Array(_) | Value::Object(_) => Err(IntError::Invalid),
    }
}

/// Python's `float(text)` for a string: decimal literals with digit-group
/// underscores, and `inf`, `infinity`, `nan` in any case, each with a sign.
fn parse_float_str(text: &str) -> Option<f64> {
    let text = decimal_digits_as_ascii(text);
    let text = strip_number(&text);
    let (negative, body) = match text.as_bytes().first() {
        Some(b'+') => (false, &text[1..]),
        Some(b'-') => (true, &text[1..]),
        _ => (false, text),
    };
    let lower = body.to_ascii_lowercase();
    let magnitude = if lower == "inf" || lower == "infinity" {
        f64::INFINITY
    } else if lower == "nan" {
        f64::NAN
    } else {
        let plain = strip_digit_underscores(body)?;
        if !is_decimal_literal(&plain) {
            return None;
        }
        plain.parse::<f64>().ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// `digits [. digits] [e [sign] digits]` with at least one mantissa digit, or `.digits`.
fn is_decimal_literal(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = all_digits(int_part) && all_digits(frac_part) && (int_part.len() + frac_part.len()) > 0;
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}

/// Why Kernite's `to_float` has no number for a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatError {
    /// Python raises OverflowError (`float(10**400)`): Kernite itself crashes.
    Overflow,
}

/// Kernite's `core.to_float`: `None` for missing values, booleans and text
/// that is not a number; Python's `float()` otherwise.
pub fn kernite_to_float(value: &Value) -> Result<Option<f64>, FloatError> {
    Ok(match value {
        Value::Null | Value::Bool(_) => None,
        Value::Int(n) => Some(*n as f64),
        Value::BigInt(n) => {
            let f = n.to_f64().unwrap_or(f64::INFINITY);
            if f.is_infinite() {
                return Err(FloatError::Overflow);
            }
            Some(f)
        }
        Value::Float(f) => Some(*f),
        Value::Str(s) => parse_float_str(s),
        Value::Array(_) | Value::Object(_) => parse_float_str(&to_str(value)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::excessive_precision)] // exact binary values are the point
    fn float_repr_matches_python() {
        let cases = [
            (1.0, "1.0"),
            (100.0, "100.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (-0.0, "-0.0"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (1e22, "1e+22"),
            (5e-324, "5e-324"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (123456.789, "123456.789"),
            (1.5e-7, "1.5e-07"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            // Exact ties in the last digit round half to even, as in Python.
            (1608882928643910.25, "1608882928643910.2"),
            (19657848128154.8125, "19657848128154.812"),
        ];
        for (f, expected) in cases {
            assert_eq!(float_repr(f), expected, "{f:e}");
        }
    }

    #[test]
    fn str_of_containers_is_python_repr() {
        let mut map = Map::default();
        map.insert("a".into(), Value::Array(vec![Value::str("x"), Value::Null, Value::Bool(true), Value::Float(1.0)]));
        map.insert("it's".into(), Value::str("say \"hi\"\n"));
        assert_eq!(to_str(&Value::Object(map)), r#"{'a': ['x', None, True, 1.0], "it's": 'say "hi"\n'}"#);
    }

    #[test]
    fn identity_strings_follow_str_or_empty_strip() {
        assert_eq!(normalize_string(&Value::Int(123)), "123");
        assert_eq!(normalize_lower(&Value::Bool(true)), "true");
        assert_eq!(normalize_string(&Value::Int(0)), "");
        assert_eq!(normalize_string(&Value::str("\u{1c} a \u{3000}")), "a");
        assert_eq!(normalize_string(&Value::Float(1.5)), "1.5");
    }

    #[test]
    fn int_follows_python() {
        let int = |v: Value| to_int(&v);
        assert_eq!(int(Value::str(" 12 ")), Ok(Value::Int(12)));
        assert_eq!(int(Value::str("1_0")), Ok(Value::Int(10)));
        assert_eq!(int(Value::str("-007")), Ok(Value::Int(-7)));
        assert_eq!(int(Value::Float(3.9)), Ok(Value::Int(3)));
        assert_eq!(int(Value::Float(-3.9)), Ok(Value::Int(-3)));
        assert_eq!(int(Value::Bool(true)), Ok(Value::Int(1)));
        assert_eq!(int(Value::str("3.9")), Err(IntError::Invalid));
        assert_eq!(int(Value::str("_1")), Err(IntError::Invalid));
        assert_eq!(int(Value::str("1__0")), Err(IntError::Invalid));
        assert_eq!(int(Value::Float(f64::INFINITY)), Err(IntError::Overflow));
        assert_eq!(int(Value::Array(vec![])), Err(IntError::Invalid));
        assert_eq!(int(Value::Float(1e30)), Ok(Value::from_bigint("1000000000000000019884624838656".parse().unwrap())));
        // Any script's decimal digits, and Unicode spaces but not U+001C..U+001F.
        assert_eq!(int(Value::str("\u{661}\u{662}")), Ok(Value::Int(12)));
        assert_eq!(int(Value::str("\u{ff11}\u{ff10}")), Ok(Value::Int(10)));
        assert_eq!(int(Value::str("\u{3000}+1\u{85}")), Ok(Value::Int(1)));
        assert_eq!(int(Value::str("\u{1f}1")), Err(IntError::Invalid));
        assert_eq!(int(Value::str("\u{660}x")), Err(IntError::Invalid));
    }

    #[test]
    fn to_float_follows_kernite() {
        let float = |s: &str| kernite_to_float(&Value::str(s)).unwrap();
        assert_eq!(float("1_000"), Some(1000.0));
        assert_eq!(float(" 1e3 "), Some(1000.0));
        assert_eq!(float("+1.5"), Some(1.5));
        assert_eq!(float(".5"), Some(0.5));
        assert_eq!(float("5."), Some(5.0));
        assert_eq!(float("-Infinity"), Some(f64::NEG_INFINITY));
        assert!(float("nan").unwrap().is_nan());
        assert_eq!(float("0x10"), None);
        assert_eq!(float(""), None);
        assert_eq!(kernite_to_float(&Value::Bool(true)), Ok(None));
        let huge = Value::from_bigint(BigInt::from(10).pow(400));
        assert_eq!(kernite_to_float(&huge), Err(FloatError::Overflow));
    }
}
