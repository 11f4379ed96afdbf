//! The application's shared state: the store, the snapshots, the key lookup, the hub.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rusqlite::{Connection, Transaction};

use crate::config::Settings;
use crate::hub::{Change, Hub};
use crate::keys::Keys;
use crate::snapshot::Snapshots;
use crate::store::{Changes, Result, Store};

/// What the read path (SDK, OFREP, client, operators' endpoints) shares: everything it answers
/// from memory, and no store. The primary hands its handlers one made of its [`AppState`]; a relay
/// (`crate::relay`), which has no database, feeds the same structures from what it downloads.
/// Cheap to clone.
#[derive(Clone)]
pub struct Serving {
    pub snapshots: Arc<Snapshots>,
    pub keys: Arc<Keys>,
    pub hub: Hub,
    pub settings: Arc<Settings>,
    pub events: Arc<crate::events::Events>,
    /// `Some` in a relay: what it knows of its source, for `/readyz`.
    pub relay: Option<Arc<crate::relay::Status>>,
}

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub snapshots: Arc<Snapshots>,
    pub keys: Arc<Keys>,
    pub hub: Hub,
    pub settings: Arc<Settings>,
    /// SDKs' evaluation counts and keys' last use, waiting for the next flush.
    pub events: Arc<crate::events::Events>,
    /// Password attempts in flight and recently failed, and the password hashing slots.
    pub sign_in: Arc<crate::throttle::SignInGuard>,
    /// Wakes the applier of scheduled changes (`crate::scheduler`) when one is added.
    pub scheduled: Arc<tokio::sync::Notify>,
    /// The writer's `PRAGMA data_version` when this process last caught up: it changes only
    /// when another process (the command line) commits to the database.
    seen_data_version: Arc<AtomicI64>,
    /// The last group commit whose changes the snapshots follow (every write of a group hands
    /// its hook the group's combined changes: the first hook does the work for all).
    refreshed_group: Arc<std::sync::atomic::AtomicU64>,
}

impl AppState {
    /// Opens the store in the data dir (creating it, applying migrations) and builds every
    /// snapshot. Blocking: call before the server starts or from a blocking task.
    pub fn open(settings: Settings) -> Result<AppState> {
        let store = Store::open(&settings.data_dir)?;
        let (snapshots, keys) =
            store.read_blocking(|conn| Ok((Snapshots::load(conn)?, Keys::load(conn)?)))?;
        let data_version = store.with_writer(|conn| data_version(conn))?;
        Ok(AppState {
            store,
            snapshots: Arc::new(snapshots),
            keys: Arc::new(keys),
            hub: Hub::new(),
            settings: Arc::new(settings),
            events: Arc::default(),
            sign_in: Arc::default(),
            scheduled: Arc::default(),
            seen_data_version: Arc::new(AtomicI64::new(data_version)),
            refreshed_group: Arc::default(),
        })
    }

    /// Rebuilds every snapshot and the key lookup if another process (`flagstaff import`,
    /// `flagstaff user create`…) wrote to the database since the last call, and announces the
    /// environments whose bundle changed. Returns whether anything was rebuilt. Blocking; the
    /// server calls it every second (see [`crate::server`]).
    pub fn catch_up_with_other_processes(&self) -> Result<bool> {
        self.store.with_writer(|conn| {
            let version = data_version(conn)?;
            if self.seen_data_version.swap(version, Ordering::SeqCst) == version {
                return Ok(false);
            }
            let mut changes = Changes {
                api_keys: true,
                ..Changes::default()
            };
            for id in crate::store::served::all_environment_ids(conn)? {
                changes.environment(id);
            }
            let before: std::collections::HashMap<i64, String> = self
                .snapshots
                .all()
                .into_iter()
                .map(|s| (s.environment_id, s.etag.clone()))
                .collect();
            for id in before.keys() {
                if !changes.environments.contains_key(id) {
                    changes.removed_environments.insert(*id);
                }
            }
            // Every environment is rebuilt, but only those whose bundle changed are announced.
            self.refresh(conn, &changes, |snapshot| {
                before.get(&snapshot.environment_id) != Some(&snapshot.etag)
            });
            Ok(true)
        })
    }

    /// Runs a change in one write transaction; after the commit, rebuilds the snapshots it
    /// touched, reloads the keys if needed, and announces each changed environment on the hub.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction) -> Result<(T, Changes)> + Send + 'static,
    {
        let state = self.clone();
        self.store
            .write(f, move |conn, changes| state.after_commit(conn, changes))
            .await
    }

    /// [`AppState::write`] for callers already off the async threads.
    pub fn write_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction) -> Result<(T, Changes)> + Send + 'static,
    ) -> Result<T> {
        let state = self.clone();
        self.store
            .write_blocking(f, move |conn, changes| state.after_commit(conn, changes))
    }

    /// The read path's share of this state (same snapshots, keys, hub and events).
    pub fn serving(&self) -> Serving {
        Serving {
            snapshots: self.snapshots.clone(),
            keys: self.keys.clone(),
            hub: self.hub.clone(),
            settings: self.settings.clone(),
            events: self.events.clone(),
            relay: None,
        }
    }

    fn after_commit(&self, conn: &Connection, changes: &Changes) {
        if changes.group != 0 && self.refreshed_group.swap(changes.group, Ordering::SeqCst) == changes.group {
            return;
        }
        self.refresh(conn, changes, |_| true);
    }

    /// Follows `changes`: reloads keys, rebuilds snapshots, announces those `announce` accepts.
    fn refresh(
        &self,
        conn: &Connection,
        changes: &Changes,
        announce: impl Fn(&crate::snapshot::Snapshot) -> bool,
    ) {
        if changes.api_keys
            && let Err(e) = self.keys.reload(conn)
        {
            tracing::error!(error = %e, "reloading API keys failed");
        }
        let rebuilding = std::time::Instant::now();
        let rebuilt = self.snapshots.apply(conn, changes);
        if !changes.environments.is_empty() || !changes.removed_environments.is_empty() {
            crate::metrics::metrics()
                .snapshot_rebuilds
                .observe(rebuilding.elapsed());
        }
        for (snapshot, flags) in rebuilt.into_iter().filter(|(s, _)| announce(s)) {
            self.hub.publish(Change {
                environment_id: snapshot.environment_id,
                revision: snapshot.revision,
                etag: snapshot.etag.clone(),
                flags: flags.into(),
            });
        }
    }
}

fn data_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
}
