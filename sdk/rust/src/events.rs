//! Evaluation counts: incremented lock-free in the current snapshot's counters by every read,
//! gathered here into a bounded table, and sent to `POST /sdk/v1/events` in the background.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::snapshot::Snapshot;

/// The largest count the server takes for one (flag, variant) in a report.
const MAX_COUNT: u64 = 1_000_000_000_000;

/// Counts gathered since `start` and not yet accepted by a server.
#[derive(Debug)]
pub(crate) struct Pending {
    pub start: SystemTime,
    pub counts: HashMap<(Box<str>, Box<str>), u64>,
    /// Counts thrown away because the table was full.
    pub dropped: u64,
}

/// Gathers counts from snapshots, current and replaced.
pub(crate) struct Recorder {
    max_entries: usize,
    pending: Mutex<Pending>,
    /// Snapshots swapped out whose counters may still receive increments from reads that
    /// loaded them just before the swap. Drained until nobody else holds them.
    retired: Mutex<Vec<Arc<Snapshot>>>,
}

/// The body of `POST /sdk/v1/events`.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct Report {
    pub start: String,
    pub end: String,
    pub counts: Vec<Count>,
}

#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Count {
    pub flag: String,
    pub variant: String,
    pub count: u64,
}

/// Adds `n` to the count of (`flag`, `variant`), or to `dropped` when `counts` is full.
fn add(
    counts: &mut HashMap<(Box<str>, Box<str>), u64>,
    dropped: &mut u64,
    max_entries: usize,
    flag: &str,
    variant: &str,
    n: u64,
) {
    let key = (Box::from(flag), Box::from(variant));
    if let Some(count) = counts.get_mut(&key) {
        *count += n;
    } else if counts.len() < max_entries {
        counts.insert(key, n);
    } else {
        *dropped += n;
    }
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t).format(&Rfc3339).unwrap_or_default()
}

impl Recorder {
    /// A recorder keeping at most `max_entries` distinct (flag, variant) pairs between sends.
    pub fn new(max_entries: usize) -> Recorder {
        Recorder {
            max_entries,
            pending: Mutex::new(Pending {
                start: SystemTime::now(),
                counts: HashMap::new(),
                dropped: 0,
            }),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// Called when `old` stops being the current snapshot.
    pub fn retire(&self, old: Arc<Snapshot>) {
        self.retired.lock().expect("retired list lock poisoned").push(old);
    }

    /// Moves the counts of `current` and of retired snapshots into the pending table.
    pub fn gather(&self, current: &Snapshot) {
        let mut pending = self.pending.lock().expect("pending counts lock poisoned");
        let mut retired = self.retired.lock().expect("retired list lock poisoned");
        let pending = &mut *pending;
        let mut sink = |flag: &str, variant: &str, n: u64| {
            add(
                &mut pending.counts,
                &mut pending.dropped,
                self.max_entries,
                flag,
                variant,
                n,
            );
        };
        for old in retired.iter() {
            old.drain_counts(&mut sink);
        }
        current.drain_counts(&mut sink);
        // A retired snapshot only this list holds can receive no more increments.
        retired.retain(|old| Arc::strong_count(old) > 1);
    }

    /// Takes everything pending as a report ending now; `None` when there is nothing to send.
    pub fn take(&self) -> Option<(Report, Pending)> {
        let mut pending = self.pending.lock().expect("pending counts lock poisoned");
        let now = SystemTime::now();
        if pending.counts.is_empty() {
            pending.start = now;
            return None;
        }
        let taken = std::mem::replace(
            &mut *pending,
            Pending {
                start: now,
                counts: HashMap::new(),
                dropped: 0,
            },
        );
        if taken.dropped > 0 {
            tracing::warn!(
                dropped = taken.dropped,
                max_entries = self.max_entries,
                "evaluation counts dropped: too many distinct (flag, variant) pairs between sends"
            );
        }
        let mut counts: Vec<Count> = taken
            .counts
            .iter()
            .map(|((flag, variant), &count)| Count {
                flag: flag.to_string(),
                variant: variant.to_string(),
                count: count.min(MAX_COUNT),
            })
            .collect();
        counts.sort_unstable();
        let report = Report {
            start: rfc3339(taken.start),
            end: rfc3339(now),
            counts,
        };
        Some((report, taken))
    }

    /// Puts back counts a server did not accept, to be sent with the next report.
    pub fn restore(&self, taken: Pending) {
        let mut pending = self.pending.lock().expect("pending counts lock poisoned");
        pending.start = pending.start.min(taken.start);
        let pending = &mut *pending;
        // `taken.dropped` was reported when taken; only the counts come back.
        for ((flag, variant), n) in taken.counts {
            add(
                &mut pending.counts,
                &mut pending.dropped,
                self.max_entries,
                &flag,
                &variant,
                n,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Source;
    use flagstaff_eval::model::Bundle;

    fn snapshot(flags: usize) -> Snapshot {
        let flags: Vec<serde_json::Value> = (0..flags)
            .map(|i| {
                serde_json::json!({"key": format!("f{i}"), "type": "boolean",
                    "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
                    "environments": {"production": {"enabled": true, "fallthrough": {"variation": "on"}}}})
            })
            .collect();
        let bundle: Bundle = serde_json::from_value(serde_json::json!({
            "flagstaff": 1, "project": {"key": "p"}, "environment": "production", "revision": 1, "flags": flags
        }))
        .expect("bundle");
        Snapshot::from_bundle(&bundle, None, Source::Server("http://x.test".into()))
    }

    fn counts(report: &Report) -> Vec<(&str, &str, u64)> {
        report
            .counts
            .iter()
            .map(|c| (c.flag.as_str(), c.variant.as_str(), c.count))
            .collect()
    }

    #[test]
    fn counts_from_current_and_replaced_snapshots_add_up() {
        let recorder = Recorder::new(100);
        let old = Arc::new(snapshot(2));
        old.count("f0", "on");
        old.count("f0", "on");
        old.count("f1", "off");
        old.count("unknown", "on");
        old.count("f0", "unknown");
        let current = snapshot(2);
        recorder.retire(Arc::clone(&old));
        current.count("f0", "on");
        recorder.gather(&current);
        let (report, _) = recorder.take().expect("counts to send");
        assert_eq!(counts(&report), vec![("f0", "on", 3), ("f1", "off", 1)]);
        // Still held elsewhere, so kept, but drained: nothing counted twice.
        recorder.gather(&current);
        assert!(recorder.take().is_none());
        old.count("f1", "on");
        recorder.gather(&current);
        let (report, _) = recorder.take().expect("a late count on the old snapshot");
        assert_eq!(counts(&report), vec![("f1", "on", 1)]);
        drop(old);
        recorder.gather(&current);
        assert!(
            recorder.retired.lock().expect("lock").is_empty(),
            "a snapshot nobody holds is released"
        );
    }

    #[test]
    fn the_table_is_bounded_and_counts_beyond_are_dropped() {
        let recorder = Recorder::new(10);
        let current = snapshot(20);
        for i in 0..20 {
            current.count(&format!("f{i}"), "on");
        }
        recorder.gather(&current);
        let (report, taken) = recorder.take().expect("counts");
        assert_eq!(report.counts.len(), 10);
        assert_eq!(report.counts.iter().map(|c| c.count).sum::<u64>(), 10);
        assert_eq!(taken.dropped, 10);
    }

    #[test]
    fn unsent_counts_come_back_merged_and_still_bounded() {
        let recorder = Recorder::new(3);
        let current = snapshot(5);
        current.count("f0", "on");
        current.count("f1", "on");
        recorder.gather(&current);
        let (first, taken) = recorder.take().expect("counts");
        current.count("f0", "on");
        current.count("f2", "on");
        current.count("f3", "on");
        recorder.gather(&current);
        recorder.restore(taken);
        let (report, taken) = recorder.take().expect("counts");
        assert_eq!(
            report.start, first.start,
            "the window starts at the oldest unsent count"
        );
        assert_eq!(report.counts.len(), 3);
        assert_eq!(counts(&report)[0], ("f0", "on", 2));
        assert_eq!(taken.dropped, 1);
    }

    #[test]
    fn a_report_has_rfc3339_times_and_the_documented_shape() {
        let recorder = Recorder::new(10);
        let current = snapshot(1);
        current.count("f0", "off");
        recorder.gather(&current);
        let (report, _) = recorder.take().expect("counts");
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(
            json["counts"],
            serde_json::json!([{"flag": "f0", "variant": "off", "count": 1}])
        );
        for field in ["start", "end"] {
            let text = json[field].as_str().expect("string");
            time::OffsetDateTime::parse(text, &Rfc3339).expect("RFC 3339");
        }
    }
}
