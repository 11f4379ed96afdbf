//! Password guessing: who may try a password now, and how many passwords are hashed at once.
//!
//! The promise: whatever number of requests arrive together, one client address gets at most
//! [`FREE_PER_ACCOUNT`] password checks on one account (and [`FREE_PER_ADDRESS`] over all
//! accounts) before it must wait, and each further failure doubles its wait, from
//! [`FIRST_DELAY_MS`] up to [`MAX_DELAY_MS`]. Failures are forgotten after [`WINDOW_MS`]. Waits
//! are per account *and* address, so someone who knows an admin's email delays only their own
//! address, never the admin signing in from elsewhere; an address spraying many accounts is
//! held by its own budget.
//!
//! An attempt is *reserved* before its password is checked ([`SignInGuard::reserve`]): an
//! attempt whose outcome is not yet known counts as a failure happening now. Checking and
//! reserving happen under one lock, so fifty parallel guesses cannot all pass a check that
//! none of them has yet failed. The reservations live in this process's memory, in front of the
//! failures persisted by `store::sessions` (loaded the first time an account and address are
//! seen, so a restart forgets nothing): a database transaction per reservation would cost a
//! write (and today a publication of the database file) for every request, including the
//! refused ones an attacker sends by the thousand, and only one server process serves a data
//! dir, so the in-memory count is exact.
//!
//! Hashing is bounded apart from guessing: argon2id takes 19 MiB and tens of milliseconds per
//! password, so at most [`CONCURRENT_HASHES`] run at once, and a request beyond that is
//! refused at once ([`Busy`], a 429 with `Retry-After: 1`) instead of queueing memory.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::password;

/// How long a failure counts.
pub const WINDOW_MS: i64 = 60 * 60_000;
/// Failures of one address on one account before each attempt waits.
pub const FREE_PER_ACCOUNT: usize = 5;
/// Failures of one address over all accounts before each attempt waits.
pub const FREE_PER_ADDRESS: usize = 20;
/// The wait after the first failure past the free ones; each further failure doubles it.
pub const FIRST_DELAY_MS: i64 = 15_000;
/// The longest wait.
pub const MAX_DELAY_MS: i64 = 15 * 60_000;
/// Passwords hashed or verified at once, at most (19 MiB each).
pub const CONCURRENT_HASHES: usize = 4;

/// What a password is tried for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Signing in to (or proving the password of) an account, by its email.
    Account(String),
    /// The first admin's one-time setup link.
    SetupLink,
}

impl Subject {
    /// The account of `email`, compared without ASCII case as the users table does.
    pub fn account(email: &str) -> Subject {
        Subject::Account(email.to_ascii_lowercase())
    }

    /// The email persisted with a failure, if failures of this subject are persisted. The setup
    /// link's are not: a restart prints a new link, which no earlier guess was about.
    pub fn persisted_email(&self) -> Option<&str> {
        match self {
            Subject::Account(email) => Some(email),
            Subject::SetupLink => None,
        }
    }
}

/// Which budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This address on this subject.
    Subject,
    /// This address on every subject.
    Address,
}

/// An attempt refused before its password was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub scope: Scope,
    /// Milliseconds until an attempt may be made.
    pub wait_ms: i64,
}

impl Throttled {
    /// The wait in whole seconds, at least one (for `Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        (self.wait_ms.max(1000) as u64).div_ceil(1000)
    }
}

/// Every password hashing slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server is busy checking other passwords")]
pub struct Busy;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Pair(Subject, String),
    Address(String),
}

impl Key {
    fn free(&self) -> usize {
        match self {
            Key::Pair(..) => FREE_PER_ACCOUNT,
            Key::Address(_) => FREE_PER_ADDRESS,
        }
    }
}

#[derive(Debug, Default)]
struct Record {
    /// Times of failures within the window, oldest first.
    failures: VecDeque<i64>,
    /// Reserved attempts whose outcome is not known yet.
    pending: usize,
}

impl Record {
    fn forget_before(&mut self, since: i64) {
        while self.failures.front().is_some_and(|&at| at < since) {
            self.failures.pop_front();
        }
    }

    /// How long until another attempt may start, if it must wait.
    fn wait_ms(&self, free: usize, now: i64) -> Option<i64> {
        let count = self.failures.len() + self.pending;
        if count < free {
            return None;
        }
        // A pending attempt is a failure happening now until it is known to be otherwise.
        let last = if self.pending > 0 {
            now
        } else {
            *self.failures.back()?
        };
        let until = last.saturating_add(delay_ms(count - free + 1));
        (until > now).then_some(until - now)
    }

    fn is_idle(&self) -> bool {
        self.failures.is_empty() && self.pending == 0
    }
}

/// Where the guard reads the time: the system's clock, or one a test sets and moves (so no test
/// of waits depends on how fast the machine runs).
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    /// A clock standing at `ms` until [`Clock::advance`] moves it.
    pub fn manual(ms: i64) -> Clock {
        Clock(Some(Arc::new(AtomicI64::new(ms))))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            None => crate::store::now_ms(),
            Some(ms) => ms.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward (the system clock moves by itself).
    pub fn advance(&self, ms: i64) {
        if let Some(now) = &self.0 {
            now.fetch_add(ms, Ordering::SeqCst);
        }
    }
}

/// The wait after the `n`th failure past the free ones (n ≥ 1).
pub fn delay_ms(n: usize) -> i64 {
    let doublings = u32::try_from(n.saturating_sub(1)).unwrap_or(u32::MAX).min(16);
    FIRST_DELAY_MS.saturating_mul(1 << doublings).min(MAX_DELAY_MS)
}

/// Sign-in attempts in flight and recently failed, and the password hashing slots. One per
/// server process ([`crate::AppState::sign_in`]).
pub struct SignInGuard {
    clock: Clock,
    records: Mutex<Records>,
    hashing: Arc<Semaphore>,
    counters: Arc<Counters>,
}

struct Records {
    map: HashMap<Key, Record>,
    /// Size at which idle records are next swept out (keeps memory bounded by recent failures).
    sweep_at: usize,
}

#[derive(Default)]
struct Counters {
    verifications: AtomicU64,
    hashes: AtomicU64,
    running: AtomicUsize,
    most_running: AtomicUsize,
}

impl Default for SignInGuard {
    fn default() -> Self {
        SignInGuard::new()
    }
}

impl SignInGuard {
    pub fn new() -> SignInGuard {
        SignInGuard::with_clock(Clock::default())
    }

    /// A guard reading the time from `clock`.
    pub fn with_clock(clock: Clock) -> SignInGuard {
        SignInGuard {
            clock,
            records: Mutex::new(Records {
                map: HashMap::new(),
                sweep_at: 1024,
            }),
            hashing: Arc::new(Semaphore::new(CONCURRENT_HASHES)),
            counters: Arc::default(),
        }
    }

    /// The time by this guard's clock (ms since the Unix epoch).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn lock(&self) -> MutexGuard<'_, Records> {
        // The records stay consistent whatever panicked while holding the lock (each change is
        // a push or a counter step), so a poisoned lock is used as it is.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this subject and address were seen recently (their failures are in memory).
    pub fn knows(&self, subject: &Subject, address: &str) -> bool {
        let records = self.lock();
        records
            .map
            .contains_key(&Key::Pair(subject.clone(), address.to_owned()))
            && records.map.contains_key(&Key::Address(address.to_owned()))
    }

    /// Takes in the failures persisted for a subject and address (times, any order) unless they
    /// are in memory already — memory has every failure since, and the attempts in flight.
    pub fn remember(&self, subject: &Subject, address: &str, on_subject: Vec<i64>, on_address: Vec<i64>) {
        let mut records = self.lock();
        for (key, mut times) in [
            (Key::Pair(subject.clone(), address.to_owned()), on_subject),
            (Key::Address(address.to_owned()), on_address),
        ] {
            if let Entry::Vacant(slot) = records.map.entry(key) {
                times.sort_unstable();
                slot.insert(Record {
                    failures: times.into(),
                    pending: 0,
                });
            }
        }
    }

    /// Reserves an attempt at `subject` from `address` at `now` (ms), or says how long to wait.
    /// The attempt counts as a failure until [`Attempt::succeeded`] says otherwise; dropped
    /// unsettled (the request ended before a password was checked), it counts for nothing.
    pub fn reserve(
        self: &Arc<Self>,
        subject: &Subject,
        address: &str,
        now: i64,
    ) -> Result<Attempt, Throttled> {
        let keys = [
            Key::Pair(subject.clone(), address.to_owned()),
            Key::Address(address.to_owned()),
        ];
        let mut records = self.lock();
        if records.map.len() >= records.sweep_at {
            records.map.retain(|_, r| {
                r.forget_before(now - WINDOW_MS);
                !r.is_idle()
            });
            records.sweep_at = (records.map.len() * 2).max(1024);
        }
        let mut refusal: Option<Throttled> = None;
        for key in &keys {
            let record = records.map.entry(key.clone()).or_default();
            record.forget_before(now - WINDOW_MS);
            if let Some(wait_ms) = record.wait_ms(key.free(), now)
                && refusal.is_none_or(|r| wait_ms > r.wait_ms)
            {
                let scope = match key {
                    Key::Pair(..) => Scope::Subject,
                    Key::Address(_) => Scope::Address,
                };
                refusal = Some(Throttled { scope, wait_ms });
            }
        }
        if let Some(refused) = refusal {
            return Err(refused);
        }
        for key in &keys {
            records.map.entry(key.clone()).or_default().pending += 1;
        }
        Ok(Attempt {
            guard: Arc::clone(self),
            keys: Some(keys),
        })
    }

    /// A password hashing slot, or [`Busy`] when all are taken.
    pub fn hashing_slot(&self) -> Result<HashingSlot, Busy> {
        let permit = Arc::clone(&self.hashing).try_acquire_owned().map_err(|_| Busy)?;
        Ok(HashingSlot {
            _permit: permit,
            counters: Arc::clone(&self.counters),
        })
    }

    /// Passwords verified since the start.
    pub fn verifications(&self) -> u64 {
        self.counters.verifications.load(Ordering::Relaxed)
    }

    /// Passwords hashed (new hashes) since the start.
    pub fn hashes(&self) -> u64 {
        self.counters.hashes.load(Ordering::Relaxed)
    }

    /// The most password hashes or verifications that ran at the same time.
    pub fn most_concurrent_hashes(&self) -> usize {
        self.counters.most_running.load(Ordering::Relaxed)
    }
}

/// A reserved attempt; settle it with [`Attempt::failed`] or [`Attempt::succeeded`].
pub struct Attempt {
    guard: Arc<SignInGuard>,
    keys: Option<[Key; 2]>,
}

impl Attempt {
    /// The password was wrong (or the setup link unknown) at `at` (ms).
    pub fn failed(mut self, at: i64) {
        if let Some(keys) = self.keys.take() {
            let mut records = self.guard.lock();
            for key in keys {
                let record = records.map.entry(key).or_default();
                record.pending = record.pending.saturating_sub(1);
                record.failures.push_back(at);
            }
        }
    }

    /// The password was right: this address's failures on this subject are forgotten (not its
    /// failures on other accounts, which an attacker could otherwise reset with an account of
    /// their own).
    pub fn succeeded(mut self) {
        if let Some([pair, address]) = self.keys.take() {
            let mut records = self.guard.lock();
            if let Some(record) = records.map.get_mut(&pair) {
                record.failures.clear();
            }
            for key in [pair, address] {
                if let Some(record) = records.map.get_mut(&key) {
                    record.pending = record.pending.saturating_sub(1);
                }
            }
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(keys) = self.keys.take() {
            let mut records = self.guard.lock();
            for key in keys {
                if let Some(record) = records.map.get_mut(&key) {
                    record.pending = record.pending.saturating_sub(1);
                }
            }
        }
    }
}

/// One of the [`CONCURRENT_HASHES`] slots; hashing and verifying are blocking (run them off the
/// async threads).
pub struct HashingSlot {
    _permit: OwnedSemaphorePermit,
    counters: Arc<Counters>,
}

impl HashingSlot {
    fn running(&self) -> Running<'_> {
        let now = self.counters.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.counters.most_running.fetch_max(now, Ordering::SeqCst);
        Running(&self.counters)
    }

    /// [`password::verify`], counted.
    pub fn verify(&self, password: &str, phc: &str) -> bool {
        let _running = self.running();
        self.counters.verifications.fetch_add(1, Ordering::Relaxed);
        password::verify(password, phc)
    }

    /// [`password::hash`], counted.
    pub fn hash(&self, password: &str) -> String {
        let _running = self.running();
        self.counters.hashes.fetch_add(1, Ordering::Relaxed);
        password::hash(password)
    }
}

struct Running<'a>(&'a Counters);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn ann() -> Subject {
        Subject::account("Ann@Example.com")
    }

    #[test]
    fn waits_double_from_the_first_delay_to_the_longest() {
        assert_eq!(delay_ms(1), 15_000);
        assert_eq!(delay_ms(2), 30_000);
        assert_eq!(delay_ms(3), 60_000);
        assert_eq!(delay_ms(7), MAX_DELAY_MS);
        assert_eq!(delay_ms(usize::MAX), MAX_DELAY_MS);
    }

    #[test]
    fn parallel_attempts_past_the_free_ones_are_refused_before_any_fails() {
        let guard = Arc::new(SignInGuard::new());
        let now = 1_000 * MINUTE;
        let held: Vec<Attempt> = (0..FREE_PER_ACCOUNT)
            .map(|_| guard.reserve(&ann(), "192.0.2.1", now).expect("a free attempt"))
            .collect();
        let refused = guard.reserve(&ann(), "192.0.2.1", now).err().expect("refused");
        assert_eq!(refused.scope, Scope::Subject);
        assert_eq!(refused.wait_ms, FIRST_DELAY_MS);
        // The same account in other case is the same account.
        assert!(
            guard
                .reserve(&Subject::account("ANN@example.COM"), "192.0.2.1", now)
                .is_err()
        );
        // Another address, or another account from this address, is not held.
        assert!(guard.reserve(&ann(), "198.51.100.1", now).is_ok());
        assert!(
            guard
                .reserve(&Subject::account("bob@example.com"), "192.0.2.1", now)
                .is_ok()
        );
        for attempt in held {
            attempt.failed(now);
        }
        let refused = guard
            .reserve(&ann(), "192.0.2.1", now + 1)
            .err()
            .expect("refused");
        assert_eq!(refused.wait_ms, FIRST_DELAY_MS - 1);
        assert_eq!(refused.retry_after_secs(), 15);
    }

    #[test]
    fn each_failure_past_the_free_ones_doubles_the_wait_until_the_window_forgets() {
        let guard = Arc::new(SignInGuard::new());
        let mut now = 1_000 * MINUTE;
        for _ in 0..FREE_PER_ACCOUNT {
            guard.reserve(&ann(), "a", now).unwrap().failed(now);
        }
        for n in 1..=8 {
            let wait = guard.reserve(&ann(), "a", now).err().expect("waits").wait_ms;
            assert_eq!(wait, delay_ms(n), "after {n} failures past the free ones");
            assert!(guard.reserve(&ann(), "a", now + wait - 1).is_err());
            now += wait;
            guard
                .reserve(&ann(), "a", now)
                .expect("allowed once the wait is over")
                .failed(now);
        }
        // An hour later every failure is forgotten.
        now += WINDOW_MS + 1;
        for _ in 0..FREE_PER_ACCOUNT {
            guard.reserve(&ann(), "a", now).unwrap().failed(now);
        }
    }

    #[test]
    fn a_pending_attempt_past_the_free_ones_blocks_the_next_until_it_is_settled() {
        let guard = Arc::new(SignInGuard::new());
        let now = 1_000 * MINUTE;
        guard.remember(&ann(), "a", vec![now - 3 * MINUTE; FREE_PER_ACCOUNT], vec![]);
        let one = guard
            .reserve(&ann(), "a", now)
            .expect("the wait after the free ones is over");
        assert!(
            guard.reserve(&ann(), "a", now).is_err(),
            "one at a time past the free ones"
        );
        drop(one);
        let two = guard
            .reserve(&ann(), "a", now)
            .expect("an unsettled attempt counts for nothing");
        two.succeeded();
        for _ in 0..FREE_PER_ACCOUNT {
            guard.reserve(&ann(), "a", now).unwrap().failed(now);
        }
    }

    #[test]
    fn persisted_failures_count_and_never_replace_what_memory_knows() {
        let guard = Arc::new(SignInGuard::new());
        let now = 1_000 * MINUTE;
        assert!(!guard.knows(&ann(), "a"));
        let pending = guard.reserve(&ann(), "a", now).unwrap();
        assert!(guard.knows(&ann(), "a"));
        // A stale load arriving late does not overwrite the attempt in flight.
        guard.remember(&ann(), "a", vec![], vec![]);
        guard.remember(&Subject::SetupLink, "a", vec![], vec![now; FREE_PER_ADDRESS]);
        drop(pending);
        assert!(guard.reserve(&Subject::SetupLink, "a", now).is_ok());

        let other = Arc::new(SignInGuard::new());
        other.remember(&ann(), "b", vec![now - 5_000; FREE_PER_ACCOUNT], vec![]);
        assert_eq!(
            other.reserve(&ann(), "b", now).err().map(|t| t.wait_ms),
            Some(FIRST_DELAY_MS - 5_000)
        );
    }

    #[test]
    fn an_address_spraying_accounts_is_held_by_its_own_budget() {
        let guard = Arc::new(SignInGuard::new());
        let now = 1_000 * MINUTE;
        for i in 0..FREE_PER_ADDRESS {
            let subject = Subject::account(&format!("user-{i}@example.com"));
            guard.reserve(&subject, "a", now).unwrap().failed(now);
        }
        let refused = guard
            .reserve(&Subject::account("new@example.com"), "a", now)
            .err()
            .expect("refused");
        assert_eq!(refused.scope, Scope::Address);
        assert!(
            guard
                .reserve(&Subject::account("new@example.com"), "b", now)
                .is_ok()
        );
    }

    #[test]
    fn a_success_forgets_only_this_address_on_this_account() {
        let guard = Arc::new(SignInGuard::new());
        let now = 1_000 * MINUTE;
        for _ in 0..FREE_PER_ACCOUNT - 1 {
            guard.reserve(&ann(), "a", now).unwrap().failed(now);
            guard.reserve(&ann(), "b", now).unwrap().failed(now);
        }
        guard.reserve(&ann(), "a", now).unwrap().succeeded();
        for _ in 0..FREE_PER_ACCOUNT {
            guard.reserve(&ann(), "a", now).unwrap().failed(now);
        }
        guard.reserve(&ann(), "b", now).unwrap().failed(now);
        assert!(guard.reserve(&ann(), "b", now).is_err());
    }

    #[test]
    fn a_manual_clock_stands_still_until_moved() {
        let clock = Clock::manual(1_000);
        let guard = SignInGuard::with_clock(clock.clone());
        assert_eq!(guard.now_ms(), 1_000);
        clock.advance(500);
        assert_eq!(guard.now_ms(), 1_500);
        assert!(SignInGuard::new().now_ms() > 1_700_000_000_000);
    }

    #[test]
    fn hashing_slots_are_bounded_and_counted() {
        let guard = SignInGuard::new();
        let slots: Vec<HashingSlot> = (0..CONCURRENT_HASHES)
            .map(|_| guard.hashing_slot().expect("a free slot"))
            .collect();
        assert_eq!(guard.hashing_slot().err(), Some(Busy));
        let phc = slots[0].hash("correct horse battery");
        assert!(slots[1].verify("correct horse battery", &phc));
        assert!(!slots[1].verify("wrong", &phc));
        assert_eq!((guard.hashes(), guard.verifications()), (1, 2));
        assert_eq!(guard.most_concurrent_hashes(), 1);
        drop(slots);
        assert!(guard.hashing_slot().is_ok());
    }

    #[test]
    fn idle_records_are_swept_once_the_map_grows() {
        let guard = Arc::new(SignInGuard::new());
        let now = 1_000 * MINUTE;
        for i in 0..3000 {
            drop(guard.reserve(
                &Subject::account(&format!("u{i}@x.com")),
                &format!("10.0.{}.{}", i / 256, i % 256),
                now,
            ));
        }
        assert!(guard.lock().map.len() <= 2048, "{}", guard.lock().map.len());
    }
}
