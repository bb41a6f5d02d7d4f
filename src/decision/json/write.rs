//! Writing JSON text as `json.dumps(..., ensure_ascii=False)` does (see [`super`]).

use std::fmt::Write as _;

use super::first_special;
use crate::decision::python::float_repr;
use crate::decision::value::{Map, Value};

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

/// `json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)`: the
/// files Kernite's command line writes.
pub fn to_indented_string(value: &Value) -> String {
    let mut out = String::with_capacity(1024);
    write_indented(&mut out, value, 0);
    out
}

fn write_indented(out: &mut String, value: &Value, depth: usize) {
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', 2 * depth));
    };
    match value {
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write_indented(out, item, depth + 1);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(map) if !map.is_empty() => {
            out.push('{');
            let entries = sorted_entries(map, |a, b| a.cmp(b));
            for (i, &(key, item)) in entries.as_slice().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write_string(out, key);
                out.push_str(": ");
                write_indented(out, item, depth + 1);
            }
            newline(out, depth);
            out.push('}');
        }
        scalar_or_empty => write_value(out, scalar_or_empty, Layout::Canonical),
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
