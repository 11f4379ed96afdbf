//! One configuration as the client holds it: the engine's compiled environment, where it came
//! from, and the evaluation counters of its flags. Swapped whole when a new bundle arrives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use flagstaff_eval::model::Bundle;
use flagstaff_eval::{CompiledEnvironment, Fingerprints, parse_bundle};
use rustc_hash::FxHashMap;

use crate::Source;

/// A compiled bundle plus what the client needs around it.
pub(crate) struct Snapshot {
    pub engine: CompiledEnvironment,
    pub project: String,
    pub environment: String,
    pub revision: u64,
    /// The bundle's ETag, for `If-None-Match`; `None` when the server sent none.
    pub etag: Option<String>,
    pub source: Source,
    pub loaded_at: SystemTime,
    /// A hash of each flag's definition, to tell which flags a new bundle changed.
    fingerprints: Fingerprints,
    /// Where each flag's counters start, and its variation keys in order.
    slots: FxHashMap<Box<str>, Slot>,
    /// One counter per (flag, variation), incremented by reads and drained by the event sender.
    counters: Box<[AtomicU64]>,
}

struct Slot {
    first: usize,
    variations: Box<[Box<str>]>,
}

impl Snapshot {
    /// Parses and compiles bundle bytes. Fails only on malformed JSON; the engine neutralises
    /// anything it cannot use.
    pub fn from_bytes(bytes: &[u8], etag: Option<String>, source: Source) -> Result<Snapshot, String> {
        let bundle = parse_bundle(bytes).map_err(|e| format!("not a bundle: {e}"))?;
        Ok(Snapshot::from_bundle(&bundle, etag, source))
    }

    pub fn from_bundle(bundle: &Bundle, etag: Option<String>, source: Source) -> Snapshot {
        let engine = CompiledEnvironment::from_bundle(bundle);
        let fingerprints = Fingerprints::of(&bundle.flags);
        let mut slots = FxHashMap::default();
        let mut total = 0;
        for flag in engine.flags() {
            let variations: Box<[Box<str>]> = flag.variations().map(|(key, _)| key.into()).collect();
            let count = variations.len();
            slots.insert(
                flag.key().into(),
                Slot {
                    first: total,
                    variations,
                },
            );
            total += count;
        }
        let counters = (0..total).map(|_| AtomicU64::new(0)).collect();
        Snapshot {
            project: bundle.project.key.clone(),
            environment: bundle.environment.clone(),
            revision: bundle.revision,
            engine,
            etag,
            source,
            loaded_at: SystemTime::now(),
            fingerprints,
            slots,
            counters,
        }
    }

    /// Counts one evaluation of `flag` that served `variant`.
    #[inline]
    pub fn count(&self, flag: &str, variant: &str) {
        if let Some(slot) = self.slots.get(flag)
            && let Some(i) = slot.variations.iter().position(|v| **v == *variant)
        {
            self.counters[slot.first + i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes the counts accumulated so far (leaving zeros) and gives them to `sink`.
    pub fn drain_counts(&self, mut sink: impl FnMut(&str, &str, u64)) {
        for (flag, slot) in &self.slots {
            for (i, variant) in slot.variations.iter().enumerate() {
                let n = self.counters[slot.first + i].swap(0, Ordering::Relaxed);
                if n > 0 {
                    sink(flag, variant, n);
                }
            }
        }
    }

    /// The keys of the flags added, changed or removed from `old` to `self`, sorted.
    pub fn changed_since(&self, old: &Snapshot) -> Vec<String> {
        self.fingerprints.changed_since(&old.fingerprints)
    }
}
