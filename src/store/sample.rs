//! The sample project (issue 20): a small, realistic project a new user can create with one
//! button (or `flagstaff serve --sample-project`) to see the whole loop before writing code.
//!
//! It is an embedded document (`sample-project.json`) imported through [`import::import`], so
//! it is validated and audited exactly like any import, plus one client key and one server key
//! of its `development` environment (audited like keys made on the keys page). Created once:
//! when a project with its key exists, nothing is written.

use flagstaff_eval::model::Document;
use rusqlite::Connection;

use super::api_keys::{self, KeyKind};
use super::audit::Actor;
use super::{Changes, Result, import, projects};

/// The embedded document.
pub const DOCUMENT: &str = include_str!("sample-project.json");

/// The sample project's key.
pub const PROJECT: &str = "sample";

/// The environment its keys belong to.
pub const ENVIRONMENT: &str = "development";

/// The sample document, parsed.
pub fn document() -> Document {
    flagstaff_eval::parse_document(DOCUMENT.as_bytes())
        .expect("the embedded sample project parses (tests/it/tour.rs imports it)")
}

/// The sample project just created, with its keys' secrets (shown once, never stored).
#[derive(Debug)]
pub struct Created {
    pub report: import::ImportReport,
    pub client_key: String,
    pub server_key: String,
}

/// Creates the sample project with its two keys, unless a project with its key exists
/// (then `None`, and nothing is written). The caller's write must pass the returned
/// [`Changes`] on.
pub fn create(tx: &Connection, actor: &Actor) -> Result<(Option<Created>, Changes)> {
    if projects::find(tx, PROJECT)?.is_some() {
        return Ok((None, Changes::default()));
    }
    let doc = document();
    let (report, mut changes) = import::import(tx, actor, &doc, true)?;
    let client =
        api_keys::create_audited(tx, actor, PROJECT, ENVIRONMENT, KeyKind::Client, "sample web app")?;
    let server =
        api_keys::create_audited(tx, actor, PROJECT, ENVIRONMENT, KeyKind::Server, "sample backend")?;
    changes.api_keys = true;
    Ok((
        Some(Created {
            report,
            client_key: client.secret,
            server_key: server.secret,
        }),
        changes,
    ))
}
