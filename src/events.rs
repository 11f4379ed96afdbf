//! What SDKs report and do, aggregated in memory and written to the operational database
//! (never published: `store::operational`) in one transaction per interval (never one per request): evaluation counts per environment, flag, variant and
//! hour, when each flag was last evaluated, and when each SDK key and admin token was last used.
//!
//! Recording is a short critical section on a mutex; [`flush`] swaps the pending totals out and
//! writes them. A flush that fails puts its totals back, so nothing is lost but by a crash.
//! OFREP and `/client/v1` count through a per-thread [`tally`] that feeds [`Events::record`].

pub mod tally;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::AppState;
use crate::store;
use crate::store::usage::{self, HourlyCount};

/// Pending evaluation counts and key uses, waiting for the next flush. One per application.
pub struct Events {
    /// Tells this application's entries in [`RECENT_KEYS`] from others' (tests run several).
    id: u64,
    pending: Mutex<Pending>,
    // Apart from the counts so that a big batch being added never delays a bundle request.
    keys_used: Mutex<HashMap<i64, i64>>,
    /// Admin tokens used, by id → Unix ms.
    tokens_used: Mutex<HashMap<i64, i64>>,
    /// Evaluations reported with each client key in the current hour: key id → (hour, sum).
    client_reported: Mutex<HashMap<i64, (i64, u64)>>,
}

impl Default for Events {
    fn default() -> Events {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Events {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            pending: Mutex::default(),
            keys_used: Mutex::default(),
            tokens_used: Mutex::default(),
            client_reported: Mutex::default(),
        }
    }
}

/// How long a thread keeps a key's use to itself: every request notes its key, and the shared
/// map (a lock both workers would take on every request) hears of each key at most this often
/// per thread. A last-use time may so be up to this much early.
const KEY_USE_GRAIN_MS: i64 = 1_000;

thread_local! {
    /// `(Events::id, key id)` → when this thread last handed the key's use to `keys_used`.
    static RECENT_KEYS: RefCell<FxHashMap<(u64, i64), i64>> = RefCell::default();
}

#[derive(Default, Debug, Clone)]
struct Pending {
    counts: HashMap<CountKey, u64>,
    /// `(environment id, flag key)` → Unix ms.
    evaluated: HashMap<(i64, Arc<str>), i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CountKey {
    environment_id: i64,
    flag: Arc<str>,
    variant: Arc<str>,
    /// Unix seconds at the start of the hour.
    hour: i64,
}

/// One flag's evaluations to add: `count` times `variant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count<'a> {
    pub flag: &'a str,
    pub variant: &'a str,
    pub count: u64,
}

/// What a flush wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Rows of hourly counts added to.
    pub counts: usize,
    /// Flags whose last evaluation time was updated.
    pub flags: usize,
    /// SDK keys whose last use was updated.
    pub keys: usize,
    /// Admin tokens whose last use was updated.
    pub tokens: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent whatever panicked while holding them (each update is one insert).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Unix seconds at the start of the hour holding `ms` (Unix milliseconds).
pub fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(3_600_000) * 3_600
}

impl Events {
    /// Reserves `n` evaluations of what the client key `key_id` may report in the clock hour
    /// holding `now` (Unix ms), at most `limit`; when they do not fit, nothing is reserved and
    /// the sum already reported this hour is returned. Checking and adding under one lock:
    /// parallel batches cannot overshoot together.
    pub fn reserve_client_report(&self, key_id: i64, now: i64, n: u64, limit: u64) -> Result<(), u64> {
        let hour = hour_of(now);
        let mut reported = lock(&self.client_reported);
        reported.retain(|_, (h, _)| *h == hour);
        let (_, used) = reported.entry(key_id).or_insert((hour, 0));
        if used.saturating_add(n) > limit {
            return Err(*used);
        }
        *used += n;
        Ok(())
    }

    /// Adds evaluation counts of one environment, made at `at` (Unix ms): they go into the hour
    /// holding `at`, and each flag counted is marked as evaluated at `at`. The caller has
    /// checked that the flags and variants exist.
    pub fn record<'a>(&self, environment_id: i64, at: i64, counts: impl IntoIterator<Item = Count<'a>>) {
        let hour = hour_of(at);
        let mut pending = lock(&self.pending);
        for Count { flag, variant, count } in counts {
            let flag: Arc<str> = Arc::from(flag);
            let key = CountKey {
                environment_id,
                flag: flag.clone(),
                variant: Arc::from(variant),
                hour,
            };
            let total = pending.counts.entry(key).or_default();
            *total = total.saturating_add(count);
            let last = pending.evaluated.entry((environment_id, flag)).or_insert(at);
            *last = (*last).max(at);
        }
    }

    /// Notes that an SDK key was used now (to within [`KEY_USE_GRAIN_MS`]).
    pub fn touch_key(&self, key_id: i64) {
        let now = store::now_ms();
        let stale = RECENT_KEYS.with_borrow_mut(|recent| {
            let last = recent.entry((self.id, key_id)).or_insert(i64::MIN);
            let stale = now.saturating_sub(*last) >= KEY_USE_GRAIN_MS;
            if stale {
                *last = now;
            }
            stale
        });
        if stale {
            lock(&self.keys_used).insert(key_id, now);
        }
    }

    /// Notes that an admin token was used now (`/api/v1` calls are few: no grain needed).
    pub fn touch_token(&self, token_id: i64) {
        lock(&self.tokens_used).insert(token_id, store::now_ms());
    }

    /// Whether anything waits for a flush.
    pub fn is_empty(&self) -> bool {
        let pending = lock(&self.pending);
        pending.counts.is_empty()
            && pending.evaluated.is_empty()
            && lock(&self.keys_used).is_empty()
            && lock(&self.tokens_used).is_empty()
    }

    fn take(&self) -> (Pending, Used) {
        let pending = std::mem::take(&mut *lock(&self.pending));
        let keys = std::mem::take(&mut *lock(&self.keys_used));
        let tokens = std::mem::take(&mut *lock(&self.tokens_used));
        (pending, Used { keys, tokens })
    }

    /// Puts back what a failed flush took.
    fn restore(&self, taken: Pending, used: Used) {
        let mut pending = lock(&self.pending);
        for (key, count) in taken.counts {
            let total = pending.counts.entry(key).or_default();
            *total = total.saturating_add(count);
        }
        for (key, at) in taken.evaluated {
            let last = pending.evaluated.entry(key).or_insert(at);
            *last = (*last).max(at);
        }
        drop(pending);
        for (taken, into) in [(used.keys, &self.keys_used), (used.tokens, &self.tokens_used)] {
            let mut into = lock(into);
            for (id, at) in taken {
                let last = into.entry(id).or_insert(at);
                *last = (*last).max(at);
            }
        }
    }
}

/// What a relay forwards to its primary (`POST /sdk/v1/relay/events`): the evaluation counts
/// and SDK key uses it took in since its last forward.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelayBatch {
    #[serde(default)]
    pub counts: Vec<RelayCount>,
    #[serde(default)]
    pub keys_used: Vec<KeyUse>,
}

/// `count` evaluations of `variant` of `flag` in an environment (the primary's id), the last at
/// `at` (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelayCount {
    pub environment_id: i64,
    pub flag: String,
    pub variant: String,
    pub at: i64,
    pub count: u64,
}

/// An SDK key (the primary's id) used at `at` (Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyUse {
    pub id: i64,
    pub at: i64,
}

impl RelayBatch {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.keys_used.is_empty()
    }
}

impl Events {
    /// Takes everything pending as a batch to forward (a relay, which writes nothing itself).
    pub fn take_relay_batch(&self) -> RelayBatch {
        let (pending, used) = self.take();
        let counts = pending
            .counts
            .into_iter()
            .map(|(k, count)| {
                // The last evaluation of the flag if it falls in this hour, else the hour's start.
                let start = k.hour * 1000;
                let at = pending
                    .evaluated
                    .get(&(k.environment_id, k.flag.clone()))
                    .copied()
                    .filter(|&at| at >= start && at < start + 3_600_000)
                    .unwrap_or(start);
                RelayCount {
                    environment_id: k.environment_id,
                    flag: k.flag.to_string(),
                    variant: k.variant.to_string(),
                    at,
                    count,
                }
            })
            .collect();
        let keys_used = used.keys.into_iter().map(|(id, at)| KeyUse { id, at }).collect();
        RelayBatch { counts, keys_used }
    }

    /// Puts back a batch that could not be forwarded, or adds one a relay forwarded (the
    /// primary, after checking its flags, variants and keys).
    pub fn add_relay_batch(&self, batch: RelayBatch) {
        for c in &batch.counts {
            self.record(
                c.environment_id,
                c.at,
                [Count {
                    flag: &c.flag,
                    variant: &c.variant,
                    count: c.count,
                }],
            );
        }
        let mut used = lock(&self.keys_used);
        for KeyUse { id, at } in batch.keys_used {
            let last = used.entry(id).or_insert(at);
            *last = (*last).max(at);
        }
    }
}

/// SDK keys and admin tokens used since the last flush: id → Unix ms.
#[derive(Debug, Clone, Default)]
struct Used {
    keys: HashMap<i64, i64>,
    tokens: HashMap<i64, i64>,
}

/// Writes everything pending in one transaction. On failure the totals are kept for the next
/// flush and the error is returned.
pub async fn flush(state: &AppState) -> store::Result<Flushed> {
    let (pending, used) = state.events.take();
    if pending.counts.is_empty()
        && pending.evaluated.is_empty()
        && used.keys.is_empty()
        && used.tokens.is_empty()
    {
        return Ok(Flushed::default());
    }
    let taken = Arc::new((pending, used));
    let rows = taken.clone();
    let result = state
        .store
        .operational(move |tx| {
            let (pending, used) = &*rows;
            let counts: Vec<HourlyCount> = pending
                .counts
                .iter()
                .map(|(k, &count)| HourlyCount {
                    environment_id: k.environment_id,
                    flag_key: k.flag.to_string(),
                    variant: k.variant.to_string(),
                    hour: k.hour,
                    count: i64::try_from(count).unwrap_or(i64::MAX),
                })
                .collect();
            let evaluated: Vec<(i64, String, i64)> = pending
                .evaluated
                .iter()
                .map(|((env, flag), &at)| (*env, flag.to_string(), at))
                .collect();
            let keys: Vec<(i64, i64)> = used.keys.iter().map(|(&id, &at)| (id, at)).collect();
            let tokens: Vec<(i64, i64)> = used.tokens.iter().map(|(&id, &at)| (id, at)).collect();
            usage::add_counts(tx, &counts)?;
            usage::mark_evaluated(tx, &evaluated)?;
            usage::mark_keys_used(tx, &keys)?;
            usage::mark_tokens_used(tx, &tokens)?;
            let flushed = Flushed {
                counts: counts.len(),
                flags: evaluated.len(),
                keys: keys.len(),
                tokens: tokens.len(),
            };
            // Usage is not configuration: it goes to the operational database, and
            // flagstaff.db is not published.
            Ok(flushed)
        })
        .await;
    if result.is_err() {
        let (pending, used) = Arc::try_unwrap(taken).unwrap_or_else(|shared| (*shared).clone());
        state.events.restore(pending, used);
    }
    result
}

/// The background task that flushes every `--events-flush-secs`. Dropping it or calling
/// [`Flusher::shutdown`] stops it after one last flush.
pub struct Flusher {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts flushing every `--events-flush-secs` on the current tokio runtime. Call once at start
/// (`flagstaff serve` does) and [`Flusher::shutdown`] at the end so the last counts are kept.
pub fn spawn_flusher(state: AppState) -> Flusher {
    let period = Duration::from_secs(state.settings.serve.events_flush_secs.max(1));
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => flush_logged(&state).await,
                _ = &mut stopped => break,
            }
        }
        flush_logged(&state).await;
    });
    Flusher {
        stop: Some(stop),
        task,
    }
}

async fn flush_logged(state: &AppState) {
    match flush(state).await {
        Ok(f) if f == Flushed::default() => {}
        Ok(f) => tracing::debug!(
            counts = f.counts,
            flags = f.flags,
            keys = f.keys,
            "SDK usage written"
        ),
        Err(e) => tracing::error!(error = %e, "writing SDK usage failed; it is kept for the next try"),
    }
}

impl Flusher {
    /// Stops the timer, writes what is pending, and returns when that is done.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Err(e) = (&mut self.task).await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // The task sees the sender dropped and ends after a last flush.
        self.stop.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_start_on_the_hour() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(3_599_999), 0);
        assert_eq!(hour_of(3_600_000), 3_600);
        assert_eq!(hour_of(1_700_000_123_456), 1_699_999_200);
    }

    #[test]
    fn counts_of_the_same_hour_add_up_and_restore_merges() {
        let events = Events::default();
        let at = 1_700_000_000_000;
        events.record(
            1,
            at,
            [Count {
                flag: "a",
                variant: "on",
                count: 2,
            }],
        );
        events.record(
            1,
            at + 1_000,
            [Count {
                flag: "a",
                variant: "on",
                count: 3,
            }],
        );
        events.record(
            1,
            at,
            [Count {
                flag: "a",
                variant: "off",
                count: u64::MAX,
            }],
        );
        events.record(
            1,
            at,
            [Count {
                flag: "a",
                variant: "off",
                count: 1,
            }],
        );
        let (pending, keys) = events.take();
        assert!(events.is_empty());
        let on = CountKey {
            environment_id: 1,
            flag: "a".into(),
            variant: "on".into(),
            hour: hour_of(at),
        };
        assert_eq!(pending.counts[&on], 5);
        let off = CountKey {
            variant: "off".into(),
            ..on.clone()
        };
        assert_eq!(pending.counts[&off], u64::MAX, "totals saturate");
        assert_eq!(pending.evaluated[&(1, Arc::from("a"))], at + 1_000);

        events.record(
            1,
            at,
            [Count {
                flag: "a",
                variant: "on",
                count: 1,
            }],
        );
        events.restore(pending, keys);
        let (pending, _) = events.take();
        assert_eq!(pending.counts[&on], 6);
    }
}
