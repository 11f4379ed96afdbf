//! The applier of scheduled changes (DESIGN.md §9): a background task that sleeps until the next
//! pending schedule is due — at most [`LOOK_AGAIN`], so one added by another process on the same
//! data dir is seen in time, and no longer than needed when this process adds one (the API
//! wakes it) — and applies every due one, in time order, each in its own write. At the start,
//! whatever fell due while the server was down is applied first, in time order.
//!
//! Each write claims its schedule before applying it (see [`crate::store::schedules`]), so two
//! processes on one data dir never apply one twice. The write goes through
//! [`AppState::write`]: snapshots are rebuilt and SDK streams told, as for any change.

use std::time::Duration;

use crate::AppState;
use crate::store::schedules::{self, Applied};
use crate::store::{self, now_ms};

/// The longest the applier sleeps without looking at the database.
pub const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// Starts the applier on the current actix runtime.
pub fn spawn(state: AppState) -> actix_web::rt::task::JoinHandle<()> {
    actix_web::rt::spawn(run(state))
}

async fn run(state: AppState) {
    loop {
        let wait = match apply_due(&state).await {
            Ok(next) => next
                .map(|at| Duration::from_millis((at - now_ms()).max(0) as u64))
                .map_or(LOOK_AGAIN, |d| d.min(LOOK_AGAIN)),
            Err(e) => {
                tracing::error!(error = %e, "applying scheduled changes failed; trying again");
                LOOK_AGAIN
            }
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            () = actix_web::rt::time::sleep(wait) => {}
            () = state.scheduled.notified() => {}
        }
    }
}

/// Applies every schedule due now, in time order; returns when the next pending one is due.
pub async fn apply_due(state: &AppState) -> store::Result<Option<i64>> {
    let now = now_ms();
    let due = state.store.read(move |conn| schedules::due(conn, now)).await?;
    for id in due {
        match state.write(move |tx| schedules::apply(tx, id)).await? {
            Applied::NotPending => {}
            Applied::Done { version } => {
                tracing::info!(schedule = id, version, "applied a scheduled change");
            }
            Applied::Failed { error } => {
                tracing::warn!(schedule = id, %error, "a scheduled change no longer applies; the flag is untouched");
            }
        }
    }
    state.store.read(schedules::next_due).await
}
