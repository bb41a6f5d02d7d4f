//! JSON objects: insertion-ordered, and cheap when small.
//!
//! Nearly every object a request carries has a handful of keys, and the
//! engine builds and reads hundreds of them per decision. Up to
//! [`LINEAR_LIMIT`] entries a map is a plain vector searched from the front:
//! no hashing, one allocation. A larger map (a hostile request may send a
//! million keys) also keeps a hash index of positions, so that no input makes
//! building or reading it quadratic.
//!
//! The semantics are those of `IndexMap`, which this replaced, and of a
//! Python `dict` read by `json.loads`: a repeated key keeps its first
//! position and takes the last value; `swap_remove` moves the last entry
//! into the hole, `shift_remove` closes it up.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::value::{Text, Value};

/// Up to this many entries, lookups scan the entries instead of hashing.
const LINEAR_LIMIT: usize = 8;

#[derive(Clone, Default)]
pub struct Map {
    entries: Vec<(Text, Value)>,
    /// Positions in `entries`, by key; present only above [`LINEAR_LIMIT`].
    /// Boxed: most maps never have one, and every value carries a map's size.
    index: Option<Box<Index>>,
}

/// Hashed with foldhash, seeded at random per process: fast on short keys,
/// and its seed keeps collisions unpredictable to a client.
#[derive(Clone)]
struct Index {
    table: HashTable<usize>,
    hasher: foldhash::fast::RandomState,
}

impl Index {
    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn build(entries: &[(Text, Value)]) -> Box<Index> {
        let mut index =
            Index { table: HashTable::with_capacity(entries.len()), hasher: foldhash::fast::RandomState::default() };
        for (position, (key, _)) in entries.iter().enumerate() {
            let hash = index.hash(key);
            index.table.insert_unique(hash, position, |&p| index.hasher.hash_one(entries[p].0.as_str()));
        }
        Box::new(index)
    }
}

impl Map {
    pub fn with_capacity(capacity: usize) -> Map {
        Map { entries: Vec::with_capacity(capacity), index: None }
    }

    /// The object `entries` make when read in order: a repeated key keeps
    /// its first position and takes the last value. A small object without
    /// repeats (nearly every one) takes the vector as it is.
    pub fn from_entries(entries: Vec<(Text, Value)>) -> Map {
        let repeats = |entries: &[(Text, Value)]| {
            entries.iter().enumerate().any(|(i, (key, _))| entries[..i].iter().any(|(earlier, _)| earlier == key))
        };
        if entries.len() <= LINEAR_LIMIT && !repeats(&entries) {
            return Map { entries, index: None };
        }
        let mut map = Map::with_capacity(entries.len());
        for (key, value) in entries {
            map.insert(key, value);
        }
        map
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            None => self.entries.iter().position(|(k, _)| k == key),
            Some(index) => index.table.find(index.hash(key), |&p| self.entries[p].0 == key).copied(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key).map(|p| &self.entries[p].1)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.position(key).map(|p| &mut self.entries[p].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Sets `key` to `value`; a key already present keeps its position, and
    /// its old value is returned.
    pub fn insert(&mut self, key: Text, value: Value) -> Option<Value> {
        if let Some(p) = self.position(&key) {
            return Some(std::mem::replace(&mut self.entries[p].1, value));
        }
        let position = self.entries.len();
        if let Some(index) = &mut self.index {
            let entries = &self.entries;
            let hash = index.hash(&key);
            let hasher = &index.hasher;
            index.table.insert_unique(hash, position, |&p| hasher.hash_one(entries[p].0.as_str()));
        }
        self.entries.push((key, value));
        if self.index.is_none() && self.entries.len() > LINEAR_LIMIT {
            self.index = Some(Index::build(&self.entries));
        }
        None
    }

    /// Removes `key`, moving the last entry into its place.
    pub fn swap_remove(&mut self, key: &str) -> Option<Value> {
        let position = self.position(key)?;
        let last = self.entries.len() - 1;
        if let Some(index) = &mut self.index {
            let hash = index.hash(key);
            if let Ok(slot) = index.table.find_entry(hash, |&p| p == position) {
                slot.remove();
            }
            if position != last {
                let moved = index.hash(&self.entries[last].0);
                if let Some(slot) = index.table.find_mut(moved, |&p| p == last) {
                    *slot = position;
                }
            }
        }
        Some(self.entries.swap_remove(position).1)
    }

    /// Removes `key`, keeping the order of the others.
    pub fn shift_remove(&mut self, key: &str) -> Option<Value> {
        let position = self.position(key)?;
        let (_, value) = self.entries.remove(position);
        if self.index.is_some() {
            self.index = Some(Index::build(&self.entries));
        }
        Some(value)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Text, &Value)> + ExactSizeIterator {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = (&Text, &mut Value)> + ExactSizeIterator {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Text> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Value> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut Value> + ExactSizeIterator {
        self.entries.iter_mut().map(|(_, v)| v)
    }
}

/// Binds the named fields of an object in one pass over its entries, instead
/// of a lookup per field (a map has no repeated keys, so both read the same).
/// Each `name`, or `name = "key"` where the key is not a Rust name, becomes an
/// `Option` of its value: owned when given the map, borrowed when given
/// `map.iter()`. Other keys are skipped.
macro_rules! fields {
    ($entries:expr => $($name:ident $(= $key:literal)?),+ $(,)?) => {
        $(let mut $name = None;)+
        for (key, value) in $entries {
            match key.as_str() {
                $(fields!(@key $name $($key)?) => $name = Some(value),)+
                _ => {}
            }
        }
    };
    (@key $name:ident $key:literal) => { $key };
    (@key $name:ident) => { stringify!($name) };
}
pub(crate) use fields;

/// `map["key"]`, for tests and code that knows the key is there; panics otherwise.
impl std::ops::Index<&str> for Map {
    type Output = Value;

    fn index(&self, key: &str) -> &Value {
        self.get(key).unwrap_or_else(|| panic!("no key {key:?} in the map"))
    }
}

/// Equal when both hold the same keys with equal values, in any order (as
/// Python compares dicts).
impl PartialEq for Map {
    fn eq(&self, other: &Map) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k).is_some_and(|w| v == w))
    }
}

impl std::fmt::Debug for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Extend<(Text, Value)> for Map {
    fn extend<I: IntoIterator<Item = (Text, Value)>>(&mut self, items: I) {
        if self.is_empty() {
            *self = Map::from_iter(items);
            return;
        }
        let items = items.into_iter();
        self.entries.reserve(items.size_hint().0);
        for (key, value) in items {
            self.insert(key, value);
        }
    }
}

impl FromIterator<(Text, Value)> for Map {
    fn from_iter<I: IntoIterator<Item = (Text, Value)>>(items: I) -> Map {
        Map::from_entries(items.into_iter().collect())
    }
}

impl IntoIterator for Map {
    type Item = (Text, Value);
    type IntoIter = std::vec::IntoIter<(Text, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a> IntoIterator for &'a Map {
    type Item = (&'a Text, &'a Value);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (Text, Value)>, fn(&'a (Text, Value)) -> (&'a Text, &'a Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(map: &Map) -> Vec<&str> {
        map.keys().map(Text::as_str).collect()
    }

    /// The same operations on a small map and on one past the linear limit.
    fn both_sizes(test: impl Fn(usize)) {
        test(0);
        test(LINEAR_LIMIT * 4);
    }

    fn filled(extra: usize) -> Map {
        let mut map = Map::default();
        for i in 0..extra {
            map.insert(format!("pad{i}").into(), Value::Int(i as i64));
        }
        map
    }

    #[test]
    fn a_repeated_key_keeps_its_first_position_and_takes_the_last_value() {
        both_sizes(|extra| {
            let mut map = filled(extra);
            map.extend([("a".into(), Value::Int(1)), ("b".into(), Value::Int(2)), ("a".into(), Value::Int(3))]);
            assert_eq!(map.len(), extra + 2);
            assert_eq!(map.get("a"), Some(&Value::Int(3)));
            assert_eq!(&keys(&map)[extra..], ["a", "b"]);
        });
    }

    #[test]
    fn from_entries_reads_repeats_as_insert_does() {
        for len in [2, LINEAR_LIMIT, LINEAR_LIMIT + 1, LINEAR_LIMIT * 4] {
            for repeat_at in [None, Some(1), Some(len - 1)] {
                let mut entries: Vec<(Text, Value)> =
                    (0..len).map(|i| (Text::from(format!("k{i}")), Value::Int(i as i64))).collect();
                if let Some(at) = repeat_at {
                    entries[at].0 = "k0".into();
                }
                let mut inserted = Map::default();
                for (key, value) in entries.clone() {
                    inserted.insert(key, value);
                }
                let built = Map::from_entries(entries);
                assert_eq!(keys(&built), keys(&inserted), "{len} entries, repeat at {repeat_at:?}");
                assert_eq!(built, inserted);
                assert_eq!(built.index.is_some(), built.len() > LINEAR_LIMIT);
            }
        }
    }

    #[test]
    fn swap_remove_moves_the_last_entry_into_the_hole() {
        both_sizes(|extra| {
            let mut map = filled(extra);
            for key in ["a", "b", "c", "d"] {
                map.insert(key.into(), Value::str(key));
            }
            assert_eq!(map.swap_remove("b"), Some(Value::str("b")));
            assert_eq!(&keys(&map)[extra..], ["a", "d", "c"]);
            for key in ["a", "c", "d"] {
                assert_eq!(map.get(key), Some(&Value::str(key)), "{key} after swap_remove");
            }
            assert_eq!(map.swap_remove("b"), None);
            assert_eq!(map.swap_remove("d"), Some(Value::str("d")));
            assert_eq!(map.get("c"), Some(&Value::str("c")));
        });
    }

    #[test]
    fn shift_remove_keeps_the_order() {
        both_sizes(|extra| {
            let mut map = filled(extra);
            for key in ["a", "b", "c"] {
                map.insert(key.into(), Value::str(key));
            }
            assert_eq!(map.shift_remove("a"), Some(Value::str("a")));
            assert_eq!(&keys(&map)[extra..], ["b", "c"]);
            assert_eq!(map.get("c"), Some(&Value::str("c")));
        });
    }

    #[test]
    fn a_large_map_finds_every_key_after_growing_past_the_linear_limit() {
        let mut map = Map::default();
        for i in 0..10_000 {
            map.insert(i.to_string().into(), Value::Int(i));
        }
        for i in (0..10_000).step_by(2) {
            map.swap_remove(i.to_string().as_str());
        }
        assert_eq!(map.len(), 5_000);
        for i in 0..10_000 {
            let expected = (i % 2 == 1).then_some(Value::Int(i));
            assert_eq!(map.get(&i.to_string()), expected.as_ref(), "key {i}");
        }
    }
}
