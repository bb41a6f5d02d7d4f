//! JSON values as Kernite's Python sees them.
//!
//! Kernite works on what `json.loads` returns, so three Python facts are part
//! of the contract and shape this type:
//! - integers and floats stay distinct (`5` and `5.0` hash differently) and
//!   integers have arbitrary precision;
//! - objects remember insertion order (Python's `str(dict)` and the response
//!   body depend on it) and a duplicate key keeps its first position but its
//!   last value, which is what [`Map::insert`] does;
//! - equality is Python's `==`: `True == 1 == 1.0`, recursively.

use std::cmp::Ordering;

use num_bigint::BigInt;
use num_traits::{FromPrimitive, ToPrimitive};

pub use super::map::Map;

/// The strings of a value tree, keys included. Up to 24 bytes are stored
/// inline: most keys and many values of a request are that short, and a
/// decision otherwise spent a quarter of its time allocating and freeing them.
pub type Text = compact_str::CompactString;

#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// An integer outside the `i64` range; never holds a value that fits.
    BigInt(Box<BigInt>),
    Float(f64),
    Str(Text),
    Array(Vec<Value>),
    Object(Map),
}

impl Value {
    /// Whether a string or a key anywhere in the value holds U+0000, which
    /// PostgreSQL can store neither in `text` nor in `jsonb`.
    pub fn contains_nul(&self) -> bool {
        match self {
            Value::Str(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(Value::contains_nul),
            Value::Object(map) => map.iter().any(|(key, value)| key.contains('\0') || value.contains_nul()),
            _ => false,
        }
    }

    /// An integer value, stored in the narrowest variant that holds it.
    pub fn from_bigint(n: BigInt) -> Value {
        match n.to_i64() {
            Some(small) => Value::Int(small),
            None => Value::BigInt(Box::new(n)),
        }
    }

    pub fn str(s: impl Into<Text>) -> Value {
        Value::Str(s.into())
    }

    /// `None` when absent, as Python's `dict.get` would give.
    pub fn or_null(value: Option<&Value>) -> &Value {
        value.unwrap_or(&Value::Null)
    }

    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Python truthiness: `None`, `False`, `0`, `0.0`, `""`, `[]`, `{}` are false.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(n) => *n != 0,
            Value::BigInt(_) => true,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Array(items) => !items.is_empty(),
            Value::Object(map) => !map.is_empty(),
        }
    }

    /// Python's `a or b`.
    pub fn or<'a>(&'a self, fallback: &'a Value) -> &'a Value {
        if self.is_truthy() { self } else { fallback }
    }

    /// Python's `isinstance(v, Sequence) and not isinstance(v, str)`: JSON arrays.
    pub fn as_sequence(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// A number in Python's numeric tower, for cross-type comparison.
enum Number<'a> {
    Int(i64),
    Big(&'a BigInt),
    Float(f64),
}

impl Value {
    fn as_number(&self) -> Option<Number<'_>> {
        match self {
            Value::Bool(b) => Some(Number::Int(i64::from(*b))),
            Value::Int(n) => Some(Number::Int(*n)),
            Value::BigInt(n) => Some(Number::Big(n)),
            Value::Float(f) => Some(Number::Float(*f)),
            _ => None,
        }
    }
}

/// Python compares an int and a float exactly, never by rounding the int.
fn int_equals_float(int: &BigInt, float: f64) -> bool {
    float.fract() == 0.0 && BigInt::from_f64(float).is_some_and(|exact| &exact == int)
}

fn numbers_equal(a: Number<'_>, b: Number<'_>) -> bool {
    match (a, b) {
        (Number::Int(x), Number::Int(y)) => x == y,
        (Number::Big(x), Number::Big(y)) => x == y,
        (Number::Int(_), Number::Big(_)) | (Number::Big(_), Number::Int(_)) => false,
        (Number::Float(x), Number::Float(y)) => x == y,
        (Number::Int(i), Number::Float(f)) | (Number::Float(f), Number::Int(i)) => {
            // A whole float outside the i64 range cannot equal an i64.
            f.fract() == 0.0 && f.to_i64() == Some(i)
        }
        (Number::Big(b), Number::Float(f)) | (Number::Float(f), Number::Big(b)) => int_equals_float(b, f),
    }
}

/// Python's `==` on JSON values.
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        if let (Some(a), Some(b)) = (self.as_number(), other.as_number()) {
            return numbers_equal(a, b);
        }
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Array(a), Value::Array(b)) => a == b,
            (Value::Object(a), Value::Object(b)) => a == b,
            _ => false,
        }
    }
}

/// Python's `float > float` for the `max_value` rule: false whenever NaN is involved.
pub fn float_greater(a: f64, b: f64) -> bool {
    a.partial_cmp(&b) == Some(Ordering::Greater)
}

/// A string, or null.
pub fn optional_str(value: &Option<impl AsRef<str>>) -> Value {
    value.as_ref().map_or(Value::Null, |s| Value::str(s.as_ref()))
}

/// An object from `(key, value)` pairs, in order.
pub fn object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(entries.into_iter().map(|(k, v)| (Text::from(k), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_across_bool_int_and_float_like_python() {
        assert_eq!(Value::Bool(true), Value::Int(1));
        assert_eq!(Value::Int(1), Value::Float(1.0));
        assert_eq!(Value::Bool(false), Value::Float(0.0));
        assert_ne!(Value::Int(1), Value::Float(1.5));
        assert_ne!(Value::str("1"), Value::Int(1));
    }

    #[test]
    #[allow(clippy::excessive_precision)] // exact binary values are the point
    fn big_integers_compare_exactly_with_floats() {
        let two_to_70 = Value::from_bigint(BigInt::from(2).pow(70));
        assert_eq!(two_to_70, Value::Float(2f64.powi(70)));
        let off_by_one = Value::from_bigint(BigInt::from(2).pow(70) + 1);
        assert_ne!(off_by_one, Value::Float(2f64.powi(70)));
        // 2**53 + 1 is not equal to the float 2**53, although it rounds to it.
        assert_ne!(Value::Int((1 << 53) + 1), Value::Float(9007199254740992.0));
        assert_eq!(Value::Int(i64::MIN), Value::Float(-9.223372036854775808e18));
    }

    #[test]
    fn containers_compare_recursively_and_objects_ignore_order() {
        let mut a = Map::default();
        a.insert("x".into(), Value::Int(1));
        a.insert("y".into(), Value::Array(vec![Value::Bool(true)]));
        let mut b = Map::default();
        b.insert("y".into(), Value::Array(vec![Value::Float(1.0)]));
        b.insert("x".into(), Value::Float(1.0));
        assert_eq!(Value::Object(a), Value::Object(b));
    }

    #[test]
    fn truthiness_follows_python() {
        for falsy in [
            Value::Null,
            Value::Bool(false),
            Value::Int(0),
            Value::Float(0.0),
            Value::str(""),
            Value::Array(vec![]),
            Value::Object(Map::default()),
        ] {
            assert!(!falsy.is_truthy(), "{falsy:?}");
        }
        assert!(Value::str(" ").is_truthy());
        assert!(Value::Float(f64::NAN).is_truthy());
    }
}
