//! SDK keys of a project's environments (admins only): create (the secret is shown once, with
//! a copy button), list with last use, revoke. The audit rows have the shape the API writes.

use actix_web::http::StatusCode;
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use super::connect::{self, Snippet};
use super::projects::frame;
use super::session::{self, AdminSession, Posted};
use super::view::{self, FieldErrors, Layout, display_name};
use super::{PageError, ok, render, see_other};
use crate::AppState;
use crate::store::api_keys::{self, KeyKind};
use crate::store::flags::{self, FlagFilter};
use crate::store::users::Role;
use crate::store::{Changes, StoreError, environments, now_ms, projects};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/{project}/keys", web::get().to(page))
        .route("/{project}/keys", web::post().to(create))
        .route("/{project}/keys/{env}/{id}/revoke", web::post().to(revoke));
}

struct KeyRow {
    id: i64,
    kind: &'static str,
    name: String,
    prefix: String,
    created: String,
    last_used: String,
    revoked: Option<String>,
}

struct EnvKeys {
    key: String,
    name: String,
    keys: Vec<KeyRow>,
}

/// A key just created: its secret, shown this once, with the snippets to connect an app and,
/// for a client key, a link to the live demo that carries it in the fragment.
struct Created {
    env_key: String,
    env_name: String,
    kind: &'static str,
    name: String,
    secret: String,
    snippets: Vec<Snippet>,
    try_link: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/keys.html")]
struct KeysPage {
    layout: Layout,
    environments: Vec<EnvKeys>,
    created: Option<Created>,
    errors: FieldErrors,
    name: String,
    env: String,
    kind: String,
}

#[derive(serde::Deserialize)]
struct PageQuery {
    notice: Option<String>,
    /// Preselects the new key's environment and kind (links from "Connect an app").
    env: Option<String>,
    kind: Option<String>,
}

async fn view(
    state: &AppState,
    session: &AdminSession,
    project: &str,
    notice: Option<&str>,
) -> Result<KeysPage, PageError> {
    let layout = frame(state, session, project, "API keys", "keys")
        .await?
        .notice(notice);
    let p = project.to_owned();
    let envs = state
        .store
        .read(move |conn| {
            let head = projects::head(conn, &p)?;
            let mut out = Vec::new();
            for env in environments::list_in(conn, head.id)? {
                let keys = api_keys::list(conn, env.id)?;
                out.push((env, keys));
            }
            Ok(out)
        })
        .await?;
    let now = now_ms();
    Ok(KeysPage {
        layout,
        environments: envs
            .into_iter()
            .map(|(env, keys)| EnvKeys {
                name: display_name(&env.name, &env.key).to_owned(),
                key: env.key,
                keys: keys
                    .into_iter()
                    .map(|k| KeyRow {
                        id: k.id,
                        kind: k.kind.as_str(),
                        name: k.name,
                        prefix: k.prefix,
                        created: view::when(k.created_at),
                        last_used: k
                            .last_used_at
                            .map_or_else(|| "never".to_owned(), |t| view::ago(t, now)),
                        revoked: k.revoked_at.map(view::when),
                    })
                    .collect(),
            })
            .collect(),
        created: None,
        errors: FieldErrors::default(),
        name: String::new(),
        env: String::new(),
        kind: "server".to_owned(),
    })
}

async fn page(
    req: HttpRequest,
    session: AdminSession,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, PageError> {
    session.require(Role::Admin)?;
    let state = session::state(&req)?;
    let mut page = view(&state, &session, &path, query.notice.as_deref()).await?;
    // Only values the form offers: anything else leaves the defaults.
    if let Some(env) = query
        .env
        .as_deref()
        .filter(|e| page.environments.iter().any(|x| x.key == *e))
    {
        page.env = env.to_owned();
    }
    if let Some(kind) = query.kind.as_deref().and_then(KeyKind::parse) {
        kind.as_str().clone_into(&mut page.kind);
    }
    ok(&page)
}

async fn create(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    let project = path.into_inner();
    let form = &posted.form;
    let name = form.text("name").to_owned();
    let env = form.text("environment").to_owned();
    let kind_text = form.text("kind").to_owned();
    let mut errors = FieldErrors::default();
    let kind = KeyKind::parse(&kind_text);
    if kind.is_none() {
        errors.add("kind", "Choose server or client.");
    }
    if name.is_empty() || name.chars().count() > 100 {
        errors.add(
            "name",
            "Give the key a name (1 to 100 characters), e.g. the service that uses it.",
        );
    }
    if let (Some(kind), true) = (kind, errors.is_empty()) {
        let (actor, p, e, n) = (posted.session.actor(), project.clone(), env.clone(), name.clone());
        let result = state
            .write(move |tx| {
                let created = api_keys::create_audited(tx, &actor, &p, &e, kind, &n)?;
                let env_name = display_name(&created.environment.name, &created.environment.key).to_owned();
                Ok((
                    (created.environment.key, env_name, created.secret),
                    Changes {
                        api_keys: true,
                        ..Changes::default()
                    },
                ))
            })
            .await;
        match result {
            Ok((env_key, env_name, secret)) => {
                let mut page = view(&state, &posted.session, &project, None).await?;
                let p = project.clone();
                let flag = state
                    .store
                    .read(move |conn| {
                        Ok(connect::example_flag(&flags::list(
                            conn,
                            &p,
                            &FlagFilter::default(),
                        )?))
                    })
                    .await?;
                let base = connect::public_url(&state, &req);
                let (server_key, client_key) = match kind {
                    KeyKind::Server => (Some(secret.as_str()), None),
                    KeyKind::Client => (None, Some(secret.as_str())),
                };
                let snippets = connect::snippets(&base, server_key, client_key, &flag);
                let try_link =
                    client_key.map(|key| format!("/projects/{project}/environments/{env_key}/try#key={key}"));
                page.created = Some(Created {
                    env_key,
                    env_name,
                    kind: kind.as_str(),
                    name,
                    secret,
                    snippets,
                    try_link,
                });
                // The secret is in this page only: it must not be kept by a cache.
                return render(StatusCode::CREATED, &page);
            }
            Err(StoreError::NotFound { what, .. }) => errors.add("environment", format!("{what} not found")),
            Err(e) => return Err(e.into()),
        }
    }
    let mut page = view(&state, &posted.session, &project, None).await?;
    page.errors = errors;
    page.name = name;
    page.env = env;
    page.kind = kind_text;
    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

async fn revoke(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<(String, String, i64)>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    let (project, env, id) = path.into_inner();
    let (actor, p) = (posted.session.actor(), project.clone());
    state
        .write(move |tx| {
            api_keys::revoke_audited(tx, &actor, &p, &env, id)?;
            Ok((
                (),
                Changes {
                    api_keys: true,
                    ..Changes::default()
                },
            ))
        })
        .await?;
    Ok(see_other(&format!("/projects/{project}/keys?notice=revoked")))
}
