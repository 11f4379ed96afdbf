//! The live demo page (issue 20), `/projects/{p}/environments/{e}/try`, for signed-in users: a
//! tiny app built on `/sdk/flagstaff.js` that shows every client-side flag's value, variant and
//! reason for a context typed in the page, and updates by itself when someone changes a flag.
//!
//! Which key: keys are stored only as hashes, so the server cannot put an existing key in the
//! page, and it never puts one there. The page's script (`static/try.js`) takes a client key
//! from the address's fragment (`#key=…`, which browsers never send to a server; the links
//! shown right after a client key is created carry it, and the script removes it from the
//! address bar at once), from this tab's `sessionStorage`, or from the person pasting one. It
//! refuses a server key: that one reads every rule and never belongs in a browser. With no
//! client key in the environment, the page says so and links to create one.
//!
//! The script talks to this same origin only (the page's `connect-src 'self'`), whatever
//! `--public-url` says.

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use super::connect::{KeyHint, key_hints};
use super::projects::frame;
use super::session::{self, AdminSession};
use super::view::{Layout, display_name};
use super::{PageError, assets, ok};
use crate::store::api_keys;
use crate::store::environments;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/{project}/environments/{env}/try", web::get().to(page));
}

#[derive(Template)]
#[template(path = "admin/try.html")]
struct TryPage {
    layout: Layout,
    env_key: String,
    env_name: String,
    /// The environment's client keys that work (their visible start only).
    client_keys: Vec<KeyHint>,
    script: &'static str,
}

async fn page(
    req: HttpRequest,
    session: AdminSession,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let state = session::state(&req)?;
    let (project, env) = path.into_inner();
    let layout = frame(&state, &session, &project, "Live demo", "environments").await?;
    let (environment, keys) = state
        .store
        .read(move |conn| {
            let environment = environments::get(conn, &project, &env)?;
            let keys = api_keys::list(conn, environment.id)?;
            Ok((environment, keys))
        })
        .await?;
    let client_keys = key_hints(&keys)
        .into_iter()
        .filter(|k| k.kind == "client")
        .collect();
    ok(&TryPage {
        layout,
        env_name: display_name(&environment.name, &environment.key).to_owned(),
        env_key: environment.key,
        client_keys,
        script: assets::try_js_url(),
    })
}
