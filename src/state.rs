//! The application's shared state: the store, the snapshots, the key lookup, the hub.

use std::sync::Arc;

use rusqlite::{Connection, Transaction};

use crate::config::Settings;
use crate::hub::{Change, Hub};
use crate::keys::Keys;
use crate::snapshot::Snapshots;
use crate::store::{Changes, Result, Store};

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
}

impl AppState {
    /// Opens the store in the data dir (creating it, applying migrations) and builds every
    /// snapshot. Blocking: call before the server starts or from a blocking task.
    pub fn open(settings: Settings) -> Result<AppState> {
        let store = Store::open(&settings.data_dir)?;
        let (snapshots, keys) =
            store.read_blocking(|conn| Ok((Snapshots::load(conn)?, Keys::load(conn)?)))?;
        Ok(AppState {
            store,
            snapshots: Arc::new(snapshots),
            keys: Arc::new(keys),
            hub: Hub::new(),
            settings: Arc::new(settings),
            events: Arc::default(),
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
    pub fn write_blocking<T>(&self, f: impl FnOnce(&Transaction) -> Result<(T, Changes)>) -> Result<T> {
        self.store
            .write_blocking(f, |conn, changes| self.after_commit(conn, changes))
    }

    fn after_commit(&self, conn: &Connection, changes: &Changes) {
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
        for (snapshot, flags) in rebuilt {
            self.hub.publish(Change {
                environment_id: snapshot.environment_id,
                revision: snapshot.revision,
                etag: snapshot.etag.clone(),
                flags: flags.into(),
            });
        }
    }
}
