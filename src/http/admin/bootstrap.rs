//! The first start: with no users (and no first admin from `FLAGSTAFF_ADMIN_EMAIL`, which
//! `cli::first_start` creates before this runs), print a one-time setup link to the log that
//! opens a page creating the first admin.

use std::net::{IpAddr, Ipv4Addr};

use crate::AppState;
use crate::store::users;
use crate::store::{Changes, StoreError, sessions};

/// How long a printed setup link works.
pub const SETUP_LINK_VALID_MS: i64 = 24 * 3_600_000;

/// Why the first start could not be prepared.
#[derive(Debug, thiserror::Error)]
#[error("cannot prepare the admin pages: {0}")]
pub struct BootstrapError(#[from] StoreError);

/// Prunes ended sessions and, when the database has no users, prints a one-time setup link
/// (and returns it). Blocking (database work): call once before the server starts.
pub fn bootstrap(state: &AppState) -> Result<Option<String>, BootstrapError> {
    let idle_ms = super::session::idle_ms(state);
    state
        .store
        .operational_blocking(|tx| sessions::prune(tx, idle_ms))?;
    if state.store.read_blocking(users::count)? > 0 {
        return Ok(None);
    }
    let token = state.write_blocking(|tx| {
        if users::count(tx)? > 0 {
            return Ok((None, Changes::default()));
        }
        Ok((
            Some(sessions::new_setup_token(tx, SETUP_LINK_VALID_MS)?),
            Changes::default(),
        ))
    })?;
    Ok(token.map(|token| {
        let base = base_url(state);
        // DESIGN.md §6: this one-time link is the one secret that may appear in the log. It works
        // once, for a day, and only while there are no users; each start replaces it.
        tracing::warn!(
            "No users yet. To create the first admin in your browser, open {base}/setup?token={token} \
             (works once, for 24 hours; a restart prints a new link)."
        );
        format!("{base}/setup?token={token}")
    }))
}

/// Where people reach this server: `FLAGSTAFF_PUBLIC_URL`, else the bind address (with a
/// wildcard address shown as `localhost`).
pub fn base_url(state: &AppState) -> String {
    if let Some(url) = &state.settings.serve.frontend.public_url {
        return url.clone();
    }
    let bind = state.settings.serve.bind;
    match bind.ip() {
        ip if ip.is_unspecified() => format!("http://localhost:{}", bind.port()),
        IpAddr::V4(ip) if ip == Ipv4Addr::LOCALHOST => format!("http://localhost:{}", bind.port()),
        IpAddr::V6(ip) => format!("http://[{ip}]:{}", bind.port()),
        IpAddr::V4(ip) => format!("http://{ip}:{}", bind.port()),
    }
}
