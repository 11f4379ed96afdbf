//! Counting what the evaluation paths (OFREP, `/client/v1`) served. `Events::record` takes a
//! lock and allocates per flag, which would be most of a bulk evaluation's cost; so each worker
//! thread adds its counts to a tally of its own — an array per snapshot, one slot per flag
//! variation, so counting is an increment — and hands the tally to [`Events`] once a second,
//! by flag and variant key. At shutdown, at most that last second of counts is lost.
//!
//! The slots of a snapshot: the flags in the engine's order ([`CompiledEnvironment::flags`]),
//! each owning one slot per variation, in order — the slot of the flag at `i` serving its
//! variation `v` is the number of variations of the flags before it, plus `v`. The HTTP side's
//! pre-written answers (`http::evaluation::answers`) hand out slots by the same rule.
//!
//! [`CompiledEnvironment::flags`]: flagstaff_eval::CompiledEnvironment::flags

use std::cell::RefCell;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Count, Events};
use crate::snapshot::Snapshot;

/// How often a worker hands its counts to `Events`.
const EVERY: Duration = Duration::from_secs(1);

/// One application's counts on this thread (tests run several applications in a process).
struct Tally {
    events: Weak<Events>,
    /// The snapshots served since the last hand-over (usually one per environment, more
    /// after changes), each with its counter slots.
    counts: Vec<(Arc<Snapshot>, Vec<u64>)>,
}

thread_local! {
    static TALLIES: RefCell<Vec<Tally>> = const { RefCell::new(Vec::new()) };
}

/// Counts one each in the counter slots `served` of `snapshot`, which has `len` of them.
pub fn add(events: &Arc<Events>, snapshot: &Arc<Snapshot>, len: usize, served: &[usize]) {
    let started = TALLIES.with_borrow_mut(|tallies| {
        let found = tallies
            .iter()
            .position(|t| std::ptr::eq(t.events.as_ptr(), Arc::as_ptr(events)));
        let (index, started) = match found {
            Some(index) => (index, false),
            None => {
                let events = Arc::downgrade(events);
                tallies.push(Tally {
                    events,
                    counts: Vec::new(),
                });
                (tallies.len() - 1, true)
            }
        };
        let tally = &mut tallies[index];
        // The latest snapshot is the likeliest: look from the end.
        let slots = match tally.counts.iter().rposition(|(s, _)| Arc::ptr_eq(s, snapshot)) {
            Some(i) => &mut tally.counts[i].1,
            None => {
                tally.counts.push((Arc::clone(snapshot), vec![0; len]));
                &mut tally.counts.last_mut().expect("pushed just above").1
            }
        };
        for &slot in served {
            slots[slot] += 1;
        }
        started
    });
    if started {
        let events = Arc::downgrade(events);
        actix_web::rt::spawn(async move {
            let mut tick = actix_web::rt::time::interval(EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                if !flush(&events) {
                    break;
                }
            }
        });
    }
}

/// Hands this thread's counts for `events` over; false once that application is gone.
fn flush(events: &Weak<Events>) -> bool {
    let Some(target) = events.upgrade() else {
        TALLIES.with_borrow_mut(|tallies| tallies.retain(|t| t.events.strong_count() > 0));
        return false;
    };
    let taken = TALLIES.with_borrow_mut(|tallies| {
        let tally = tallies.iter_mut().find(|t| t.events.ptr_eq(events))?;
        Some(std::mem::take(&mut tally.counts))
    });
    let Some(counts) = taken else { return true };
    // Counted within the last second: they are dated when handed over (reading the clock on
    // every request would cost more than the counting).
    let at = crate::store::now_ms();
    for (snapshot, slots) in &counts {
        let mut next = 0;
        let counts = snapshot.engine.flags().flat_map(|flag| {
            let first = next;
            next += flag.variations().len();
            flag.variations()
                .zip(&slots[first..])
                .filter(|(_, count)| **count > 0)
                .map(move |((variant, _), count)| Count {
                    flag: flag.key(),
                    variant,
                    count: *count,
                })
        });
        target.record(snapshot.environment_id, at, counts);
    }
    true
}
