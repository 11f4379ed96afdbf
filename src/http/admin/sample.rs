//! The sample project's button (issue 20): creates it (see [`crate::store::sample`]) and shows,
//! this once, its two keys with the snippets to connect an app and a link to the live demo.
//! Pressed again, it leads to the project: nothing is created twice.

use std::io::Write;

use actix_web::http::StatusCode;
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use super::connect::{self, Snippet};
use super::projects::frame;
use super::session::{self, Posted};
use super::view::Layout;
use super::{PageError, render, see_other};
use crate::AppState;
use crate::store::audit::Actor;
use crate::store::users::Role;
use crate::store::{StoreError, sample};

/// Why `--sample-project` failed at start.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("cannot create the sample project: {0}")]
    Store(#[from] StoreError),
    #[error("cannot print the sample project's keys: {0}")]
    Output(#[from] std::io::Error),
}

/// `flagstaff serve --sample-project`: creates the sample project unless it exists, and writes
/// its keys to `out` (standard output: the log never holds a key). Returns whether it created
/// it. Blocking (database work): call before the server starts.
pub fn create_at_start(state: &AppState, out: &mut impl Write) -> Result<bool, SampleError> {
    let Some(created) = state.write_blocking(|tx| sample::create(tx, &Actor::cli()))? else {
        tracing::info!(
            project = sample::PROJECT,
            "--sample-project: the sample project exists already; nothing was created"
        );
        return Ok(false);
    };
    let changed = created.report.changed.len();
    tracing::info!(
        project = sample::PROJECT,
        changed,
        "created the sample project (--sample-project); its keys are printed once on standard output"
    );
    let base = super::bootstrap::base_url(state);
    writeln!(
        out,
        "The sample project is ready. Its keys for {env}, shown this once:\n  \
         client key (web pages): {client}\n  \
         server key (backend SDKs, keep it secret): {server}\n\
         Sign in, then see it live at {base}/projects/{project}/environments/{env}/try#key={client}",
        env = sample::ENVIRONMENT,
        project = sample::PROJECT,
        client = created.client_key,
        server = created.server_key,
    )?;
    out.flush()?;
    Ok(true)
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/create-sample", web::post().to(create));
}

#[derive(Template)]
#[template(path = "admin/sample.html")]
struct SamplePage {
    layout: Layout,
    env_key: &'static str,
    client_key: String,
    server_key: String,
    try_link: String,
    snippets: Vec<Snippet>,
}

async fn create(req: HttpRequest, posted: Posted) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    let actor = posted.session.actor();
    let Some(created) = state.write(move |tx| sample::create(tx, &actor)).await? else {
        return Ok(see_other(&format!(
            "/projects/{}/flags?notice=sample-exists",
            sample::PROJECT
        )));
    };
    let layout = frame(
        &state,
        &posted.session,
        sample::PROJECT,
        "Sample project",
        "flags",
    )
    .await?
    .notice(Some("created"));
    let base = connect::public_url(&state, &req);
    let flag = connect::example_flag(&sample::document().flags);
    let snippets = connect::snippets(&base, Some(&created.server_key), Some(&created.client_key), &flag);
    let page = SamplePage {
        layout,
        env_key: sample::ENVIRONMENT,
        try_link: format!(
            "/projects/{}/environments/{}/try#key={}",
            sample::PROJECT,
            sample::ENVIRONMENT,
            created.client_key
        ),
        client_key: created.client_key,
        server_key: created.server_key,
        snippets,
    };
    // The keys are in this answer only (admin pages are `no-store`).
    render(StatusCode::CREATED, &page)
}
