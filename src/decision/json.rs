//! JSON text in and out, with the semantics of Python's `json` module.
//!
//! Reading follows `json.loads`: integers stay integers of any size, numbers
//! with a fraction or exponent become floats, duplicate keys keep the last
//! value. Three things Python accepts are refused, because Kernite either
//! crashes on them or they are not JSON: lone surrogate escapes, the literals
//! `NaN`/`Infinity`, and numbers that overflow to infinity (`1e400`). Nesting is
//! bounded so that no input can exhaust the stack.
//!
//! Writing follows `json.dumps(..., ensure_ascii=False)` in the two layouts
//! Kernite uses: canonical (sorted keys, `(",", ":")`), which is hashed, and
//! the response layout of `kernite serve` (insertion order, `(", ", ": ")`).

use std::fmt::Write as _;

use num_bigint::BigInt;

use super::python::{MAX_INT_DIGITS, float_repr};
use super::value::{Map, Text, Value};

/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at byte {offset}")]
pub struct JsonError {
    pub reason: &'static str,
    pub offset: usize,
}

/// Parses one JSON document, as `json.loads` would (with the refusals above).
pub fn parse(text: &str) -> Result<Value, JsonError> {
    let mut parser = Parser { bytes: text.as_bytes(), text, pos: 0, entries: Vec::new(), items: Vec::new() };
    parser.skip_whitespace();
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.pos != parser.bytes.len() {
        return Err(parser.error("extra data after the JSON value"));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Scratch stacks: an object's entries (an array's items) are gathered
    /// here, then moved into a map (vector) of exactly their number, instead
    /// of growing each container step by step. Nested containers use the
    /// part of the stack above their parent's.
    entries: Vec<(Text, Value)>,
    items: Vec<Value>,
}

impl Parser<'_> {
    fn error(&self, reason: &'static str) -> JsonError {
        JsonError { reason, offset: self.pos }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// JSON whitespace only: Python's decoder skips exactly these four.
    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect_literal(&mut self, literal: &str, value: Value) -> Result<Value, JsonError> {
        if self.text[self.pos..].starts_with(literal) {
            self.pos += literal.len();
            Ok(value)
        } else {
            Err(self.error("invalid literal"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        match self.peek() {
            None => Err(self.error("expected a value, found the end of the input")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Value::Str),
            Some(b't') => self.expect_literal("true", Value::Bool(true)),
            Some(b'f') => self.expect_literal("false", Value::Bool(false)),
            Some(b'n') => self.expect_literal("null", Value::Null),
            Some(b'N' | b'I') => Err(self.error("NaN and Infinity are not JSON numbers")),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nesting is deeper than 128 levels"));
        }
        self.pos += 1;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(Map::default()));
        }
        let start = self.entries.len();
        let result = self.object_entries(depth);
        let entries: Vec<_> = self.entries.drain(start..).collect();
        result?;
        // A repeated key keeps its first position and takes the last value, as in Python.
        Ok(Value::Object(Map::from_entries(entries)))
    }

    fn object_entries(&mut self, depth: usize) -> Result<(), JsonError> {
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let key = self.string()?;
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':' after an object key"));
            }
            self.pos += 1;
            self.skip_whitespace();
            let value = self.value(depth)?;
            self.entries.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected ',' or '}' in an object")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nesting is deeper than 128 levels"));
        }
        self.pos += 1;
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(Vec::new()));
        }
        let start = self.items.len();
        let result = self.array_items(depth);
        let items: Vec<Value> = self.items.drain(start..).collect();
        result?;
        Ok(Value::Array(items))
    }

    fn array_items(&mut self, depth: usize) -> Result<(), JsonError> {
        loop {
            self.skip_whitespace();
            let item = self.value(depth)?;
            self.items.push(item);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected ',' or ']' in an array")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self.text.get(self.pos..self.pos + 4).ok_or_else(|| self.error("truncated \\u escape"))?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.error("invalid \\u escape"));
        }
        self.pos += 4;
        Ok(u32::from_str_radix(digits, 16).expect("four hex digits"))
    }

    fn string(&mut self) -> Result<Text, JsonError> {
        self.pos += 1; // opening quote
        // Most strings have no escape: take them in one exactly-sized copy.
        let rest = &self.bytes[self.pos..];
        if let Some(len) = first_special(rest)
            && rest[len] == b'"'
        {
            let text = Text::new(&self.text[self.pos..self.pos + len]);
            self.pos += len + 1;
            return Ok(text);
        }
        let mut out = String::new();
        loop {
            let start = self.pos;
            let rest = &self.bytes[start..];
            self.pos += first_special(rest).unwrap_or(rest.len());
            out.push_str(&self.text[start..self.pos]);
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Text::from(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escape = self.peek().ok_or_else(|| self.error("unterminated string"))?;
                    self.pos += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape()?),
                        _ => return Err(self.error("invalid escape")),
                    }
                }
                Some(_) => return Err(self.error("control character in a string")),
            }
        }
    }

    /// A `\uXXXX` escape, joining a surrogate pair. A lone surrogate is
    /// refused: Python keeps it, then Kernite crashes encoding the hash input.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let first = self.hex4()?;
        let code = match first {
            0xd800..=0xdbff => {
                if !self.text[self.pos..].starts_with("\\u") {
                    return Err(self.error("lone surrogate in a \\u escape"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return Err(self.error("lone surrogate in a \\u escape"));
                }
                0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(self.error("lone surrogate in a \\u escape")),
            code => code,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))
    }

    /// Python's number grammar: `-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?`.
    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.skip_digits(),
            Some(b'I') => return Err(self.error("NaN and Infinity are not JSON numbers")),
            _ => return Err(self.error("expected a digit")),
        }
        let int_end = self.pos;
        let mut is_float = false;
        if self.peek() == Some(b'.') && self.bytes.get(self.pos + 1).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
            self.skip_digits();
            is_float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let mut end = self.pos + 1;
            if matches!(self.bytes.get(end), Some(b'+' | b'-')) {
                end += 1;
            }
            if self.bytes.get(end).is_some_and(u8::is_ascii_digit) {
                self.pos = end;
                self.skip_digits();
                is_float = true;
            }
        }
        let literal = &self.text[start..self.pos];
        if is_float {
            let f: f64 = literal.parse().map_err(|_| self.error("invalid number"))?;
            if f.is_infinite() {
                return Err(JsonError { reason: "number is too large for a double", offset: start });
            }
            return Ok(Value::Float(f));
        }
        if int_end - start > MAX_INT_DIGITS {
            return Err(JsonError { reason: "integer has more than 4300 digits", offset: start });
        }
        Ok(match literal.parse::<i64>() {
            Ok(n) => Value::Int(n),
            Err(_) => Value::from_bigint(literal.parse::<BigInt>().map_err(|_| self.error("invalid number"))?),
        })
    }

    fn skip_digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }
}

/// The two `json.dumps` layouts Kernite uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `sort_keys=True, separators=(",", ":")`: the trace_hash pre-image.
    Canonical,
    /// Insertion order, `(", ", ": ")`: what `kernite serve` writes.
    Response,
}

/// Writes `value` as `json.dumps(value, ensure_ascii=False, ...)` would.
pub fn to_string(value: &Value, layout: Layout) -> String {
    let mut out = String::with_capacity(256);
    write_value(&mut out, value, layout);
    out
}

pub fn write_value(out: &mut String, value: &Value, layout: Layout) {
    let item_sep = match layout {
        Layout::Canonical => ",",
        Layout::Response => ", ",
    };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Int(n) => out.push_str(itoa::Buffer::new().format(*n)),
        Value::BigInt(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(f) => write_float(out, *f),
        Value::Str(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                write_value(out, item, layout);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map, layout),
    }
}

/// Writes an object as [`write_value`] would write `Value::Object(map)`.
pub fn write_object(out: &mut String, map: &Map, layout: Layout) {
    let (item_sep, key_sep) = match layout {
        Layout::Canonical => (",", ":"),
        Layout::Response => (", ", ": "),
    };
    out.push('{');
    let mut write_entry = |i: usize, key: &str, item: &Value| {
        if i > 0 {
            out.push_str(item_sep);
        }
        write_string(out, key);
        out.push_str(key_sep);
        write_value(out, item, layout);
    };
    match layout {
        Layout::Response => {
            for (i, (key, item)) in map.iter().enumerate() {
                write_entry(i, key, item);
            }
        }
        Layout::Canonical => {
            // Rust orders strings by UTF-8 bytes, which is code-point
            // order: the order Python's sort_keys gives.
            let entries = sorted_entries(map, |a, b| a.cmp(b));
            for (i, &(key, item)) in entries.as_slice().iter().enumerate() {
                write_entry(i, key, item);
            }
        }
    }
    out.push('}');
}

/// A map's entries sorted by key with `order`; small objects (nearly all)
/// are sorted on the stack, without allocating.
pub fn sorted_entries(map: &Map, order: impl Fn(&str, &str) -> std::cmp::Ordering) -> SortedEntries<'_> {
    let mut entries = if map.len() <= ON_STACK {
        let mut on_stack = [("", &NULL); ON_STACK];
        for (slot, (key, item)) in on_stack.iter_mut().zip(map.iter()) {
            *slot = (key.as_str(), item);
        }
        SortedEntries::OnStack(on_stack, map.len())
    } else {
        SortedEntries::OnHeap(map.iter().map(|(key, item)| (key.as_str(), item)).collect())
    };
    entries.as_mut_slice().sort_unstable_by(|a, b| order(a.0, b.0));
    entries
}

/// Objects of up to this many keys are sorted on the stack.
const ON_STACK: usize = 16;
static NULL: Value = Value::Null;

/// What [`sorted_entries`] returns: key and value pairs, in order.
#[allow(clippy::large_enum_variant, reason = "the array is the point: no allocation for small objects")]
pub enum SortedEntries<'m> {
    OnStack([(&'m str, &'m Value); ON_STACK], usize),
    OnHeap(Vec<(&'m str, &'m Value)>),
}

impl<'m> SortedEntries<'m> {
    pub fn as_slice(&self) -> &[(&'m str, &'m Value)] {
        match self {
            SortedEntries::OnStack(entries, len) => &entries[..*len],
            SortedEntries::OnHeap(entries) => entries,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [(&'m str, &'m Value)] {
        match self {
            SortedEntries::OnStack(entries, len) => &mut entries[..*len],
            SortedEntries::OnHeap(entries) => entries,
        }
    }
}

/// A string, or `null`.
pub fn write_optional_string(out: &mut String, value: Option<&str>) {
    match value {
        Some(s) => write_string(out, s),
        None => out.push_str("null"),
    }
}

/// Strings sorted by code point, as a canonical array: how Kernite hashes reason codes.
pub fn write_sorted_strings(out: &mut String, strings: &[impl AsRef<str>]) {
    let mut sorted: Vec<&str> = strings.iter().map(AsRef::as_ref).collect();
    sorted.sort_unstable();
    out.push('[');
    for (i, s) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, s);
    }
    out.push(']');
}

/// `json.dumps` writes floats with `float.__repr__`, and the non-finite
/// ones (which can arise from `float("inf")` inside Kernite) as JavaScript literals.
fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        out.push_str(&float_repr(f));
    }
}

/// Python's string escaping with `ensure_ascii=False`: only the quote, the
/// backslash and characters below U+0020 are escaped.
#[inline]
pub fn write_string(out: &mut String, s: &str) {
    match first_special(s.as_bytes()) {
        None => {
            out.reserve(s.len() + 2);
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        Some(first) => write_escaped_string(out, s, first),
    }
}

/// [`write_string`] for a string with a byte to escape at `first`: whole runs
/// between such bytes are copied as they are.
#[cold]
fn write_escaped_string(out: &mut String, s: &str, first: usize) {
    out.reserve(s.len() + 8);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut next = Some(first);
    while let Some(offset) = next {
        let i = start + offset;
        out.push_str(&s[start..i]);
        match bytes[i] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            b => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
        next = first_special(&bytes[start..]);
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Where the first byte is that a JSON string cannot hold as it is: `"`,
/// `\` or a control character. Both the parser and the writer scan every
/// string for these, so this looks at eight bytes at a time: a byte below
/// 0x20, or equal to one of the two, sets its high bit in `found`. A borrow
/// can also flag bytes after a true match, never before it, so the lowest
/// flagged byte is the answer. UTF-8 bytes above 0x7F are never flagged.
fn first_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x;
    let mut chunks = bytes.chunks_exact(8);
    for (i, chunk) in chunks.by_ref().enumerate() {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let control = word.wrapping_sub(ONES * 0x20) & !word;
        let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
        let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
        let found = (control | quote | backslash) & HIGH_BITS;
        if found != 0 {
            return Some(i * 8 + (found.trailing_zeros() / 8) as usize);
        }
    }
    let tail = chunks.remainder();
    let offset = bytes.len() - tail.len();
    tail.iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\').map(|p| offset + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_at_a_time_scan_finds_what_a_byte_scan_finds() {
        let naive = |bytes: &[u8]| bytes.iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\');
        // Every special byte at every position of strings up to 40 bytes,
        // among ordinary ASCII, 0x20, 0x7f and UTF-8 continuation bytes.
        let fillers: [&[u8]; 5] = [
            b"abcdefgh",
            b"        ",
            "é€é€".as_bytes(),
            b"\x7f!#[]~{}",
            &[0x80, 0x9f, 0xa0, 0xff, 0x20, 0x21, 0x5b, 0x5d],
        ];
        for filler in fillers {
            for len in 0..40 {
                let base: Vec<u8> = filler.iter().copied().cycle().take(len).collect();
                assert_eq!(first_special(&base), naive(&base));
                for at in 0..len {
                    for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                        let mut bytes = base.clone();
                        bytes[at] = special;
                        assert_eq!(first_special(&bytes), naive(&bytes), "{bytes:?}");
                        // A second special byte later changes nothing.
                        if at + 3 < len {
                            bytes[at + 3] = b'"';
                            assert_eq!(first_special(&bytes), Some(at));
                        }
                    }
                }
            }
        }
    }

    fn canonical(text: &str) -> String {
        to_string(&parse(text).unwrap(), Layout::Canonical)
    }

    #[test]
    fn numbers_keep_python_types_and_formatting() {
        assert_eq!(
            canonical("[100, 100.0, 1E2, 1e16, 1e-5, -0, -0.0, 0.0001]"),
            "[100,100.0,100.0,1e+16,1e-05,0,-0.0,0.0001]"
        );
        assert_eq!(canonical("1180591620717411303424"), "1180591620717411303424");
        assert_eq!(canonical("-9223372036854775809"), "-9223372036854775809");
    }

    #[test]
    fn keys_sort_by_code_point_and_duplicates_keep_the_last_value() {
        assert_eq!(canonical(r#"{"b":1,"a":2,"é":3,"Z":4,"a":5}"#), r#"{"Z":4,"a":5,"b":1,"é":3}"#);
        let value = parse(r#"{"b":1,"a":2,"b":3}"#).unwrap();
        assert_eq!(to_string(&value, Layout::Response), r#"{"b": 3, "a": 2}"#);
    }

    #[test]
    fn strings_escape_like_python_with_ensure_ascii_false() {
        assert_eq!(
            canonical(r#""a\"\\\/\b\f\n\r\t\u0001\u007f\u2028é😀""#),
            "\"a\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\u{7f}\u{2028}é😀\""
        );
        assert_eq!(canonical(r#""\ud83d\ude00""#), "\"😀\"");
    }

    #[test]
    fn refuses_what_kernite_cannot_answer() {
        for bad in [
            "NaN",
            "-Infinity",
            "[Infinity]",
            "1e400",
            r#""\ud800""#,
            r#""\udc00x""#,
            "\"a\u{1}\"",
            "01",
            "1.",
            ".5",
            "[1,]",
            r#"{"a":1,}"#,
            "",
            "  ",
            "[1] [2]",
            "tru",
            "\u{feff}{}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn nesting_is_bounded_without_overflowing_the_stack() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
        let deep = "[".repeat(100_000);
        assert_eq!(parse(&deep).unwrap_err().reason, "nesting is deeper than 128 levels");
        let deep_objects = r#"{"a":"#.repeat(MAX_DEPTH + 1);
        assert!(parse(&deep_objects).is_err());
    }

    #[test]
    fn huge_integers_are_refused_like_python() {
        assert!(parse(&"9".repeat(4300)).is_ok());
        assert!(parse(&"9".repeat(4301)).is_err());
    }
}
