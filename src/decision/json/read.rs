//! Reading JSON text as `json.loads` does (see [`super`]).

use num_bigint::BigInt;

use super::first_special;
use crate::decision::python::MAX_INT_DIGITS;
use crate::decision::value::{Map, Text, Value};

/// Deepest nesting of arrays and objects accepted in a request.
pub const MAX_DEPTH: usize = 128;

/// Deepest nesting accepted in an OpenAPI document: deeper than any published
/// one, and as deep as Python's own decoder goes (it gives up near 995).
pub const MAX_DOCUMENT_DEPTH: usize = 990;

/// A lone UTF-16 surrogate (U+D800..U+DFFF), which a Rust string cannot
/// hold, as the document reader keeps it: the code point 0xF0000 above it, in
/// Unicode's supplementary private use area, where no published document puts
/// text. [`surrogate_of`] reads it back.
pub fn lone_surrogate(surrogate: u32) -> char {
    char::from_u32(SURROGATE_STAND_IN + (surrogate - 0xd800)).expect("a private use code point")
}

/// The lone surrogate `c` stands for, if it stands for one.
pub fn surrogate_of(c: char) -> Option<u32> {
    let code = c as u32;
    (SURROGATE_STAND_IN..SURROGATE_STAND_IN + 0x800).contains(&code).then(|| code - SURROGATE_STAND_IN + 0xd800)
}

const SURROGATE_STAND_IN: u32 = 0xf0000;

/// How much of what `json.loads` accepts is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// JSON proper, nested at most [`MAX_DEPTH`] levels: what a decision
    /// request may hold (Kernite crashes on the rest).
    Strict,
    /// Also `NaN`, `Infinity`, `-Infinity`, numbers that overflow to
    /// infinity and lone surrogates, nested at most [`MAX_DOCUMENT_DEPTH`]:
    /// what Kernite's authoring tools read (`json.dumps` writes the numbers
    /// back the same way).
    Python,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at byte {offset}")]
pub struct JsonError {
    pub reason: &'static str,
    pub offset: usize,
}

/// Parses one JSON document, as `json.loads` would (with the refusals above).
pub fn parse(text: &str) -> Result<Value, JsonError> {
    parse_as(text, Dialect::Strict)
}

/// Parses one JSON document in `dialect`.
pub fn parse_as(text: &str, dialect: Dialect) -> Result<Value, JsonError> {
    let max_depth = match dialect {
        Dialect::Strict => MAX_DEPTH,
        Dialect::Python => MAX_DOCUMENT_DEPTH,
    };
    let mut parser =
        Parser { bytes: text.as_bytes(), text, pos: 0, entries: Vec::new(), items: Vec::new(), dialect, max_depth };
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
    dialect: Dialect,
    max_depth: usize,
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
            Some(b'N') if self.dialect == Dialect::Python => self.expect_literal("NaN", Value::Float(f64::NAN)),
            Some(b'I') if self.dialect == Dialect::Python => {
                self.expect_literal("Infinity", Value::Float(f64::INFINITY))
            }
            Some(b'N' | b'I') => Err(self.error("NaN and Infinity are not JSON numbers")),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > self.max_depth {
            return Err(self.error("nesting is too deep"));
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
        if depth > self.max_depth {
            return Err(self.error("nesting is too deep"));
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
    /// refused in a request: Python keeps it, then Kernite crashes encoding
    /// the hash input. A document ([`Dialect::Python`]) keeps it as
    /// [`lone_surrogate`] stands for it, as Python keeps it.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let first = self.hex4()?;
        let code = match first {
            0xd800..=0xdbff => match self.low_surrogate_after() {
                Some(second) => 0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00),
                None if self.dialect == Dialect::Python => return Ok(lone_surrogate(first)),
                None => return Err(self.error("lone surrogate in a \\u escape")),
            },
            0xdc00..=0xdfff if self.dialect == Dialect::Python => return Ok(lone_surrogate(first)),
            0xdc00..=0xdfff => return Err(self.error("lone surrogate in a \\u escape")),
            code => code,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))
    }

    /// The low surrogate escaped right after a high one, consumed; `None`
    /// (nothing consumed) when what follows is anything else.
    fn low_surrogate_after(&mut self) -> Option<u32> {
        let digits = self.text.get(self.pos..self.pos + 6)?.strip_prefix("\\u")?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let second = u32::from_str_radix(digits, 16).ok().filter(|c| (0xdc00..=0xdfff).contains(c))?;
        self.pos += 6;
        Some(second)
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
            Some(b'I') if self.dialect == Dialect::Python => {
                return self.expect_literal("Infinity", Value::Float(f64::NEG_INFINITY));
            }
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
            if f.is_infinite() && self.dialect == Dialect::Strict {
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
