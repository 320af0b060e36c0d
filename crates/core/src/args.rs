//! A job's arguments: a map from name to value, kept as one sorted vector.
//!
//! Why not `BTreeMap`: a request keeps its arguments in memory for as long
//! as it runs, once per job, and a B-tree's first node is a 544-byte
//! allocation however few entries it holds; jobs have one to four. A
//! sorted vector of pairs ([`litemap::LiteMap`]) holds one argument in 48
//! bytes and looks keys up by binary search.
//!
//! Invariants, the same as the map it replaces: keys are unique and kept in
//! order, so iteration and the serialized form (a JSON object with sorted
//! keys, never an array — even when empty) are canonical and content hashes
//! of requests do not change. Built from pairs with a repeated key, the
//! last value wins.

use litemap::LiteMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ops::{Deref, DerefMut, Index};

/// A job's arguments, name → value, in key order.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Args(LiteMap<String, String>);

/// As the map's: `{"name": "value"}`, in test failures and debug logs.
impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl Args {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Deref for Args {
    type Target = LiteMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Args {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// `args["name"]` panics when absent, as a map's index does: for arguments
/// the job's schema requires, which validation has checked.
impl Index<&str> for Args {
    type Output = String;
    fn index(&self, key: &str) -> &String {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("argument {key:?} is missing"))
    }
}

impl FromIterator<(String, String)> for Args {
    /// Sorted, the last of a repeated key kept, and no spare room: the
    /// vector grows as it is read (to four pairs for one), and a request
    /// keeps its arguments for its whole run.
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut pairs = iter.into_iter().collect::<LiteMap<_, _>>().into_tuple_vec();
        pairs.shrink_to_fit();
        Self(LiteMap::from_sorted_store_unchecked(pairs))
    }
}

impl<const N: usize> From<[(String, String); N]> for Args {
    fn from(pairs: [(String, String); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl From<std::collections::BTreeMap<String, String>> for Args {
    fn from(map: std::collections::BTreeMap<String, String>) -> Self {
        // Already sorted and unique.
        Self(LiteMap::from_sorted_store_unchecked(
            map.into_iter().collect(),
        ))
    }
}

impl From<Args> for std::collections::BTreeMap<String, String> {
    fn from(args: Args) -> Self {
        args.into_iter().collect()
    }
}

impl Extend<(String, String)> for Args {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, iter: I) {
        self.0.extend(iter)
    }
}

impl IntoIterator for Args {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_tuple_vec().into_iter()
    }
}

impl<'a> IntoIterator for &'a Args {
    type Item = (&'a String, &'a String);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a String, &'a String),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.as_slice().iter().map(|(k, v)| (k, v))
    }
}

/// Always a map, even when empty (`LiteMap`'s own serde form, a feature
/// not enabled here, writes an empty map as `[]`).
impl Serialize for Args {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through a map visitor, so an object with keys out of order or
        // repeated comes out sorted, last value winning.
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Args;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of argument names to string values")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut m: M) -> Result<Args, M::Error> {
                let mut pairs = Vec::new();
                while let Some(kv) = m.next_entry::<String, String>()? {
                    pairs.push(kv);
                }
                Ok(pairs.into_iter().collect())
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn serializes_as_the_btreemap_did() {
        for kv in [
            &[][..],
            &[("b", "2"), ("a", "1")][..],
            &[("seconds", "0")][..],
        ] {
            let args: Args = pairs(kv).into_iter().collect();
            let map: BTreeMap<String, String> = pairs(kv).into_iter().collect();
            assert_eq!(
                serde_json::to_string(&args).unwrap(),
                serde_json::to_string(&map).unwrap()
            );
        }
        assert_eq!(serde_json::to_string(&Args::new()).unwrap(), "{}");
    }

    #[test]
    fn repeated_keys_keep_the_last_value_in_key_order() {
        let args: Args = serde_json::from_str(r#"{"z":"1","a":"2","z":"3"}"#).unwrap();
        let got: Vec<_> = args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, [("a", "2"), ("z", "3")]);
        let args: Args = pairs(&[("k", "1"), ("k", "2")]).into_iter().collect();
        assert_eq!(args["k"], "2");
        assert_eq!(args.len(), 1);
    }

    #[test]
    fn an_array_or_a_number_is_refused() {
        assert!(serde_json::from_str::<Args>("[]").is_err());
        assert!(serde_json::from_str::<Args>(r#"{"a":1}"#).is_err());
    }

    #[test]
    fn from_a_btreemap_and_indexing() {
        let map: BTreeMap<String, String> = pairs(&[("b", "2"), ("a", "1")]).into_iter().collect();
        let args = Args::from(map);
        assert_eq!(args["a"], "1");
        assert_eq!(format!("{args:?}"), r#"{"a": "1", "b": "2"}"#);
        assert_eq!(args.keys().collect::<Vec<_>>(), ["a", "b"]);
    }
}
