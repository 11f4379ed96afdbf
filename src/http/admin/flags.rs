//! The flag list (the core page: one toggle per environment, search and filters), creating a
//! flag, toggling it, and deleting it. Flags and configs are the same thing listed apart.
//!
//! Toggling goes through `store::flags::patch_state`, as `PATCH …/environments/{env}` of the
//! API does: one code path for validation, versions and the audit log.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use flagstaff_eval::model::{Flag, FlagKind, FlagType, Variation};
use serde_json::json;

use super::insights::{self, DEFAULT_STALE_DAYS};
use super::projects::frame;
use super::session::{self, AdminSession, Posted};
use super::view::{FieldErrors, Layout, display_name};
use super::{PageError, editor, ok, render, see_other};
use crate::store::environments::{self, Environment};
use crate::store::flags::{self, FlagFilter, StatePatch};
use crate::store::users::Role;
use crate::store::{now_ms, projects};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/{project}/flags", web::get().to(list_flags))
        .route("/{project}/configs", web::get().to(list_configs))
        .route("/{project}/flags", web::post().to(create))
        .route(
            "/{project}/flags/{flag}/environments/{env}/toggle",
            web::post().to(toggle),
        )
        .route("/{project}/flags/{flag}/delete", web::post().to(delete));
    editor::configure(cfg);
}

/// Whether changing this environment asks for a confirmation first: its own setting.
pub fn needs_confirmation(env: &Environment) -> bool {
    env.requires_confirmation
}

#[derive(Debug, Default, serde::Deserialize)]
struct ListQuery {
    q: Option<String>,
    tag: Option<String>,
    kind: Option<String>,
    stale: Option<String>,
    archived: Option<String>,
    days: Option<i64>,
    notice: Option<String>,
}

struct Cell {
    env_key: String,
    env_name: String,
    enabled: bool,
    version: u64,
    confirm: bool,
    /// What it serves beyond on/off, briefly (`2 rules, 1 target list`).
    summary: String,
}

struct Row {
    key: String,
    name: String,
    kind: &'static str,
    flag_type: &'static str,
    tags: Vec<String>,
    temporary: bool,
    archived: bool,
    client_side: bool,
    stale: Option<String>,
    cells: Vec<Cell>,
}

#[derive(Template)]
#[template(path = "admin/flags.html")]
struct FlagsPage {
    layout: Layout,
    /// `flag` or `config`: which list this is.
    list_kind: &'static str,
    environments: Vec<(String, String)>,
    rows: Vec<Row>,
    total: usize,
    tags: Vec<String>,
    q: String,
    tag: String,
    kind: String,
    stale: bool,
    archived: bool,
    days: i64,
    /// This list's URL (with its filters), to come back to after a toggle without script.
    here: String,
    errors: FieldErrors,
    new_key: String,
    new_name: String,
    new_type: String,
}

/// A short description of what a state serves when on.
pub fn summary(state: &flagstaff_eval::model::FlagEnvState) -> String {
    let mut parts = Vec::new();
    let n = |count: usize, one: &str, many: &str| format!("{count} {}", if count == 1 { one } else { many });
    if !state.prerequisites.is_empty() {
        parts.push(n(state.prerequisites.len(), "prerequisite", "prerequisites"));
    }
    if !state.targets.is_empty() {
        parts.push(n(state.targets.len(), "target list", "target lists"));
    }
    if !state.rules.is_empty() {
        parts.push(n(state.rules.len(), "rule", "rules"));
    }
    if let Some(flagstaff_eval::model::Serve::Rollout(_)) = &state.fallthrough {
        parts.push("rollout".to_owned());
    }
    parts.join(", ")
}

fn matches_search(flag: &Flag, q: &str) -> bool {
    let q = q.to_lowercase();
    flag.key.to_lowercase().contains(&q)
        || flag.name.to_lowercase().contains(&q)
        || flag.description.to_lowercase().contains(&q)
        || flag.tags.iter().any(|t| t.to_lowercase().contains(&q))
}

async fn list_flags(
    req: HttpRequest,
    session: AdminSession,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    let page = list_view(
        &req,
        &session,
        &path,
        query.into_inner(),
        FlagKind::Flag,
        FieldErrors::default(),
    )
    .await?;
    ok(&page)
}

async fn list_configs(
    req: HttpRequest,
    session: AdminSession,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    let page = list_view(
        &req,
        &session,
        &path,
        query.into_inner(),
        FlagKind::Config,
        FieldErrors::default(),
    )
    .await?;
    ok(&page)
}

async fn list_view(
    req: &HttpRequest,
    session: &AdminSession,
    project: &str,
    query: ListQuery,
    list_kind: FlagKind,
    errors: FieldErrors,
) -> Result<FlagsPage, PageError> {
    let state = session::state(req)?;
    let (section, title) = match list_kind {
        FlagKind::Flag => ("flags", "Flags"),
        FlagKind::Config => ("configs", "Configs"),
    };
    let layout = frame(&state, session, project, title, section)
        .await?
        .notice(query.notice.as_deref());
    let p = project.to_owned();
    let (envs, all, activity) = state
        .store
        .read(move |conn| {
            let head = projects::head(conn, &p)?;
            Ok((
                environments::list_in(conn, head.id)?,
                flags::list(conn, &p, &FlagFilter::default())?,
                crate::store::insights::activity(conn, head.id)?,
            ))
        })
        .await?;
    let kind = query
        .kind
        .clone()
        .unwrap_or_else(|| list_kind.as_str().to_owned());
    let days = query.days.unwrap_or(DEFAULT_STALE_DAYS).clamp(1, 3650);
    let stale_only = query.stale.is_some_and(|s| !s.is_empty());
    let archived = query.archived.is_some_and(|s| !s.is_empty());
    let q = query.q.unwrap_or_default();
    let tag = query.tag.unwrap_or_default();
    let now = now_ms();
    let tags: BTreeSet<String> = all
        .iter()
        .filter(|f| kind.is_empty() || f.kind.as_str() == kind)
        .flat_map(|f| f.tags.iter().cloned())
        .collect();
    let mut total = 0;
    let mut rows = Vec::new();
    for flag in &all {
        if !kind.is_empty() && flag.kind.as_str() != kind {
            continue;
        }
        total += 1;
        if flag.archived != archived
            || (!q.trim().is_empty() && !matches_search(flag, q.trim()))
            || (!tag.is_empty() && !flag.tags.contains(&tag))
        {
            continue;
        }
        let stale = activity
            .get(&flag.key)
            .and_then(|a| insights::stale_reason(flag, a, &envs, days, now));
        if stale_only && stale.is_none() {
            continue;
        }
        let cells = envs
            .iter()
            .map(|env| {
                let state = flag.environments.get(&env.key).cloned().unwrap_or_default();
                Cell {
                    env_key: env.key.clone(),
                    env_name: display_name(&env.name, &env.key).to_owned(),
                    enabled: state.enabled,
                    version: state.version.unwrap_or(0),
                    confirm: needs_confirmation(env),
                    summary: summary(&state),
                }
            })
            .collect();
        rows.push(Row {
            key: flag.key.clone(),
            name: display_name(&flag.name, &flag.key).to_owned(),
            kind: flag.kind.as_str(),
            flag_type: flag.flag_type.as_str(),
            tags: flag.tags.clone(),
            temporary: flag.is_temporary(),
            archived: flag.archived,
            client_side: flag.is_client_side(),
            stale,
            cells,
        });
    }
    Ok(FlagsPage {
        layout,
        list_kind: list_kind.as_str(),
        environments: envs
            .iter()
            .map(|e| (e.key.clone(), display_name(&e.name, &e.key).to_owned()))
            .collect(),
        rows,
        total,
        tags: tags.into_iter().collect(),
        q,
        tag,
        kind,
        stale: stale_only,
        archived,
        days,
        here: match req.uri().path_and_query() {
            Some(pq) if req.method() == actix_web::http::Method::GET => pq.as_str().to_owned(),
            _ => format!("/projects/{project}/{section}"),
        },
        errors,
        new_key: String::new(),
        new_name: String::new(),
        new_type: FlagType::Boolean.as_str().to_owned(),
    })
}

/// The variations a new flag of a type starts with (edited afterwards in the editor).
fn starting_variations(t: FlagType) -> Vec<Variation> {
    let one = |key: &str, value: serde_json::Value| Variation {
        key: key.to_owned(),
        value,
        name: None,
        description: None,
    };
    match t {
        FlagType::Boolean => vec![one("on", json!(true)), one("off", json!(false))],
        FlagType::String => vec![one("default", json!(""))],
        FlagType::Number => vec![one("default", json!(0))],
        FlagType::Json => vec![one("default", json!({}))],
    }
}

async fn create(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Editor)?;
    let state = session::state(&req)?;
    let project = path.into_inner();
    let form = &posted.form;
    let kind = FlagKind::parse(form.text("kind")).unwrap_or(FlagKind::Flag);
    let key = form.text("key").to_owned();
    let name = form.text("name").to_owned();
    let type_text = form.text("type").to_owned();
    let mut errors = FieldErrors::default();
    let flag_type = FlagType::parse(&type_text);
    if flag_type.is_none() {
        errors.add("type", "Choose boolean, string, number or json.");
    }
    if errors.is_empty() {
        let flag = Flag {
            key: key.clone(),
            name: name.clone(),
            description: String::new(),
            kind,
            flag_type: flag_type.expect("checked above"),
            variations: starting_variations(flag_type.expect("checked above")),
            client_side: None,
            temporary: None,
            // A new flag's tags are typed on one line, comma-separated; the editor then shows
            // them one per line (where a tag may hold a comma).
            tags: form
                .text("tags")
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
            archived: false,
            environments: std::collections::BTreeMap::default(),
        };
        let (actor, p) = (posted.session.actor(), project.clone());
        match state.write(move |tx| flags::create(tx, &actor, &p, flag)).await {
            Ok(flag) => {
                return Ok(see_other(&format!(
                    "/projects/{project}/flags/{}?notice=created",
                    flag.key
                )));
            }
            Err(e) => errors = FieldErrors::from_store(e, "key")?,
        }
    }
    let mut page = list_view(
        &req,
        &posted.session,
        &project,
        ListQuery::default(),
        kind,
        errors,
    )
    .await?;
    page.new_key = key;
    page.new_name = name;
    page.new_type = type_text;
    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

impl FlagsPage {
    fn type_names(&self) -> [&'static str; 4] {
        super::view::type_names()
    }
}

#[derive(Template)]
#[template(path = "admin/confirm_toggle.html")]
struct ConfirmToggle {
    layout: Layout,
    flag_key: String,
    flag_name: String,
    env_key: String,
    env_name: String,
    enabled: bool,
    version: String,
    back: String,
}

async fn toggle(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Editor)?;
    let json = posted.json;
    let state = session::state(&req)?;
    let (project, flag_key, env_key) = path.into_inner();
    let enabled = match posted.form.text("enabled") {
        "true" => true,
        "false" => false,
        _ => return Err(PageError::bad_request("enabled must be true or false").json(json)),
    };
    let expected = match posted.form.text("version") {
        "" => None,
        v => Some(
            v.parse::<u64>()
                .map_err(|_| PageError::bad_request("version must be a number").json(json))?,
        ),
    };
    let back = super::session::safe_next(posted.form.get("back").filter(|b| !b.is_empty()));
    let back = if back == "/projects" {
        format!("/projects/{project}/flags")
    } else {
        back
    };

    // Without our script (which asks itself), a production change is confirmed on a page first.
    if !json && posted.form.text("confirmed") != "yes" {
        let (p, f, e) = (project.clone(), flag_key.clone(), env_key.clone());
        let (flag, env) = state
            .store
            .read(move |conn| {
                let head = projects::head(conn, &p)?;
                Ok((
                    flags::get(conn, &p, &f)?,
                    environments::in_project(conn, &head, &e)?,
                ))
            })
            .await?;
        if needs_confirmation(&env) {
            let layout = frame(&state, &posted.session, &project, "Confirm", "flags").await?;
            return ok(&ConfirmToggle {
                layout,
                flag_name: display_name(&flag.name, &flag.key).to_owned(),
                flag_key: flag.key,
                env_name: display_name(&env.name, &env.key).to_owned(),
                env_key: env.key,
                enabled,
                version: posted.form.text("version").to_owned(),
                back,
            });
        }
    }

    let patch = StatePatch {
        enabled: Some(enabled),
        ..StatePatch::default()
    };
    let actor = posted.session.actor();
    let result = state
        .write(move |tx| flags::patch_state(tx, &actor, &project, &flag_key, &env_key, patch, expected))
        .await
        .map_err(|e| PageError::from(e).json(json))?;
    if json {
        return Ok(HttpResponse::Ok().json(json!({"enabled": result.enabled, "version": result.version})));
    }
    let sep = if back.contains('?') { '&' } else { '?' };
    Ok(see_other(&format!("{back}{sep}notice=toggled")))
}

async fn delete(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Editor)?;
    let state = session::state(&req)?;
    let (project, flag) = path.into_inner();
    let (actor, p) = (posted.session.actor(), project.clone());
    state
        .write(move |tx| flags::delete(tx, &actor, &p, &flag))
        .await?;
    Ok(see_other(&format!("/projects/{project}/flags?notice=deleted")))
}
