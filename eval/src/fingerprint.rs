//! Which flags a new bundle changed: every SDK that evaluates locally compares the fingerprints
//! of the bundle it holds with those of the one it just loaded, and tells its listeners the keys
//! (the Rust SDK's `changes`, Node's `change` event, Python's `on_change`). One implementation so
//! the SDKs cannot disagree on what changed.

use std::hash::Hasher as _;
use std::io;

use rustc_hash::{FxHashMap, FxHasher};

use crate::model::Flag;

/// A hash of each flag's whole definition as the bundle carries it (its environment's state
/// included), by flag key.
#[derive(Debug, Default, Clone)]
pub struct Fingerprints {
    by_key: FxHashMap<Box<str>, u64>,
}

impl Fingerprints {
    /// The fingerprints of a bundle's flags.
    pub fn of(flags: &[Flag]) -> Fingerprints {
        let by_key = flags
            .iter()
            .map(|flag| {
                let mut hasher = HashWriter(FxHasher::default());
                serde_json::to_writer(&mut hasher, flag).expect("a flag always serialises");
                (flag.key.as_str().into(), hasher.0.finish())
            })
            .collect();
        Fingerprints { by_key }
    }

    /// The keys of the flags added, changed or removed from `old` to `self`, sorted.
    pub fn changed_since(&self, old: &Fingerprints) -> Vec<String> {
        let mut keys: Vec<String> = self
            .by_key
            .iter()
            .filter(|(key, print)| old.by_key.get(*key) != Some(print))
            .map(|(key, _)| key.to_string())
            .chain(
                old.by_key
                    .keys()
                    .filter(|key| !self.by_key.contains_key(*key))
                    .map(std::string::ToString::to_string),
            )
            .collect();
        keys.sort_unstable();
        keys
    }
}

/// Feeds serialised bytes into a hasher without building them in memory.
struct HashWriter(FxHasher);

impl io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(json: serde_json::Value) -> Vec<Flag> {
        serde_json::from_value(json).expect("flags")
    }

    #[test]
    fn added_changed_and_removed_flags_are_named_once_sorted() {
        let boolean = |key: &str, enabled: bool| {
            serde_json::json!({"key": key, "type": "boolean",
                "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
                "environments": {"production": {"enabled": enabled}}})
        };
        let old = Fingerprints::of(&flags(serde_json::json!([
            boolean("kept", true),
            boolean("toggled", false),
            boolean("removed", true)
        ])));
        let new = Fingerprints::of(&flags(serde_json::json!([
            boolean("toggled", true),
            boolean("kept", true),
            boolean("added, \"new\"", false)
        ])));
        assert_eq!(new.changed_since(&old), ["added, \"new\"", "removed", "toggled"]);
        assert!(new.changed_since(&new).is_empty());
    }
}
