//! Bounded history (DESIGN.md §5): the background upkeep that keeps both databases small for
//! years.
//!
//! Once shortly after the start and then every hour:
//! * evaluation counts older than [`HOURLY_DAYS`] are rolled into one row per day (the row's
//!   `hour` is then the start of its day), counts older than `--insights-retention-days` are
//!   deleted, and so is whatever the operational database holds about environments, keys, tokens
//!   and users that no longer exist; the freed pages are returned (`incremental_vacuum`). None of
//!   this publishes `flagstaff.db`.
//! * audit entries older than `--audit-retention-days` are deleted — except those an enabled
//!   webhook has not delivered yet (`store::webhooks::PRUNABLE`): they wait for it — and entries written before
//!   compression are compacted, in writes of [`BATCH`] rows; when anything was, the live database
//!   is `VACUUM`ed and published, so `flagstaff.db` shrinks. With nothing to do it writes nothing
//!   (a server with no configuration change publishes nothing, hour after hour).

use std::time::Duration;

use crate::AppState;
use crate::store::{self, Changes, audit, usage};

/// Days of evaluation counts kept per hour; older ones are kept per day.
pub const HOURLY_DAYS: i64 = 7;
/// Audit rows deleted or compacted per write (one publication each).
pub const BATCH: u32 = 2_000;
const DAY_MS: i64 = 86_400_000;
/// First upkeep after the start, then every [`PERIOD`].
const FIRST: Duration = Duration::from_secs(30);
const PERIOD: Duration = Duration::from_secs(3_600);

/// What one upkeep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Upkeep {
    /// Hourly count rows folded into daily ones.
    pub counts_rolled_up: usize,
    /// Count rows deleted (older than the insights retention, or of a deleted environment).
    pub counts_deleted: usize,
    pub audit_deleted: usize,
    pub audit_compacted: usize,
    /// Whether `flagstaff.db` was vacuumed and published.
    pub published: bool,
}

/// Runs one upkeep as of `now` (Unix ms). Blocking.
pub fn run(state: &AppState, now: i64) -> store::Result<Upkeep> {
    let serve = &state.settings.serve;
    let mut done = Upkeep::default();

    // The operational database (never published).
    let hourly_before = day_start(now - HOURLY_DAYS * DAY_MS);
    let keep_after = (serve.insights_retention_days > 0)
        .then(|| day_start(now - serve.insights_retention_days as i64 * DAY_MS));
    let alive = state.store.read_blocking(usage::Alive::read)?;
    let webhooks = state.store.read_blocking(store::webhooks::all_ids)?;
    let (rolled, deleted) = state.store.operational_blocking(move |tx| {
        let rolled = usage::roll_up_days(tx, hourly_before / 1000)?;
        let mut deleted = match keep_after {
            Some(after) => usage::prune_counts(tx, after / 1000)?,
            None => 0,
        };
        deleted += usage::forget_the_gone(tx, &alive)?;
        deleted += store::webhooks::forget_the_gone(tx, &webhooks)?;
        Ok((rolled, deleted))
    })?;
    done.counts_rolled_up = rolled;
    done.counts_deleted = deleted;
    if rolled + deleted > 0 {
        state.store.vacuum_operational();
    }

    // The audit log (published).
    let audit_before =
        (serve.audit_retention_days > 0).then(|| now - serve.audit_retention_days as i64 * DAY_MS);
    while state
        .store
        .read_blocking(move |c| audit::needs_upkeep(c, audit_before))?
    {
        let (deleted, compacted) = state.write_blocking(move |tx| {
            let deleted = match audit_before {
                Some(before) => audit::prune(tx, before)?,
                None => 0,
            };
            let compacted = audit::compact_old_entries(tx, BATCH)?;
            Ok(((deleted, compacted), Changes::default()))
        })?;
        done.audit_deleted += deleted;
        done.audit_compacted += compacted;
        if deleted + compacted == 0 {
            break;
        }
    }
    if done.audit_deleted + done.audit_compacted > 0 {
        state.store.vacuum_and_publish()?;
        done.published = true;
    }
    Ok(done)
}

/// Unix ms at the start of the UTC day holding `ms`.
fn day_start(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS) * DAY_MS
}

/// Starts the upkeep on the current runtime; abort the handle to stop it.
pub fn spawn(state: AppState) -> actix_web::rt::task::JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval_at(actix_web::rt::time::Instant::now() + FIRST, PERIOD);
        loop {
            tick.tick().await;
            let state = state.clone();
            match store::run_blocking(move || run(&state, store::now_ms())).await {
                Ok(done) if done == Upkeep::default() => {}
                Ok(done) => tracing::info!(
                    counts_rolled_up = done.counts_rolled_up,
                    counts_deleted = done.counts_deleted,
                    audit_deleted = done.audit_deleted,
                    audit_compacted = done.audit_compacted,
                    "history pruned"
                ),
                Err(e) => tracing::error!(error = %e, "pruning history failed; it is retried in an hour"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_start_at_midnight_utc() {
        assert_eq!(day_start(0), 0);
        assert_eq!(day_start(DAY_MS - 1), 0);
        assert_eq!(day_start(DAY_MS + 5), DAY_MS);
    }
}
