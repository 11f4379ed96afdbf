//! The audit log: who changed what and when, with readable diffs, filtered by project and
//! flag; and "restore this version" for flags (definition or one environment's state) and
//! segments.

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use flagstaff_eval::model::Segment;

use super::diff::{Change, diff};
use super::session::{self, AdminSession, Posted};
use super::view::{self, Layout};
use super::{PageError, ok, see_other};
use crate::store::audit::{self, AuditEntry, AuditQuery};
use crate::store::users::Role;
use crate::store::{StoreError, flags, projects, segments};

/// Entries per page.
const PAGE: u32 = 50;
/// Changes shown per entry (a deleted project's diff can be long).
const MAX_CHANGES: usize = 40;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("", web::get().to(page))
        .route("/{id}/restore", web::post().to(restore));
}

#[derive(serde::Deserialize)]
struct AuditParams {
    project: Option<String>,
    flag: Option<String>,
    kind: Option<String>,
    before: Option<i64>,
    notice: Option<String>,
}

struct EntryRow {
    id: i64,
    when: String,
    actor: String,
    action: String,
    /// "flag new-checkout in production"
    what: String,
    /// A link to the thing, if it still has a page.
    link: Option<String>,
    changes: Vec<Change>,
    more: usize,
    restorable: bool,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    layout: Layout,
    entries: Vec<EntryRow>,
    project: String,
    flag: String,
    kind: String,
    next: Option<String>,
}

fn describe(e: &AuditEntry) -> (String, Option<String>) {
    let key = e.entity_key.clone().unwrap_or_default();
    let project = e.project.clone().unwrap_or_default();
    match e.entity_kind.as_str() {
        "flag" => (
            format!("flag {key}"),
            Some(format!("/projects/{project}/flags/{key}")),
        ),
        "flag_state" => {
            let env = e.environment.clone().unwrap_or_default();
            (
                format!("flag {key} in {env}"),
                Some(format!("/projects/{project}/flags/{key}?env={env}")),
            )
        }
        "segment" => (
            format!("segment {key}"),
            Some(format!("/projects/{project}/segments/{key}")),
        ),
        "project" => (format!("project {key}"), Some(format!("/projects/{key}/flags"))),
        "environment" => (
            format!("environment {key}"),
            Some(format!("/projects/{project}/environments")),
        ),
        "api_key" => (
            format!("API key {key} in {}", e.environment.clone().unwrap_or_default()),
            Some(format!("/projects/{project}/keys")),
        ),
        "user" => (format!("user {key}"), None),
        other => (format!("{other} {key}"), None),
    }
}

fn restorable(e: &AuditEntry) -> bool {
    e.after.is_some() && matches!(e.entity_kind.as_str(), "flag" | "flag_state" | "segment")
}

async fn page(
    req: HttpRequest,
    session: AdminSession,
    query: web::Query<AuditParams>,
) -> Result<HttpResponse, PageError> {
    let state = session::state(&req)?;
    let params = query.into_inner();
    let project = params.project.clone().unwrap_or_default();
    let flag = params.flag.clone().unwrap_or_default();
    let kind = params.kind.clone().unwrap_or_default();
    let layout = if project.is_empty() {
        let nav = state.store.read(view::projects_nav).await?;
        Layout::new(&session, "Audit log", "audit").with_projects(nav)
    } else {
        super::projects::frame(&state, &session, &project, "History", "audit").await?
    }
    .notice(params.notice.as_deref());
    let (p, f, k, before) = (project.clone(), flag.clone(), kind.clone(), params.before);
    let entries = state
        .store
        .read(move |conn| {
            let flag_kinds = flags::HISTORY_KINDS;
            let one_kind = [k.as_str()];
            let kinds: &[&str] = if !f.is_empty() {
                &flag_kinds
            } else if !k.is_empty() {
                &one_kind
            } else {
                &[]
            };
            audit::list(
                conn,
                &AuditQuery {
                    project: Some(p.as_str()).filter(|p| !p.is_empty()),
                    entity_kinds: kinds,
                    entity_key: Some(f.as_str()).filter(|f| !f.is_empty()),
                    before,
                    limit: PAGE,
                },
            )
        })
        .await?;
    let next = (entries.len() == PAGE as usize).then(|| {
        let last = entries.last().map(|e| e.id).unwrap_or_default();
        serde_urlencoded::to_string([
            ("project", project.as_str()),
            ("flag", flag.as_str()),
            ("kind", kind.as_str()),
            ("before", &last.to_string()),
        ])
        .unwrap_or_default()
    });
    let can_restore = session.can(Role::Editor);
    let rows = entries
        .iter()
        .map(|e| {
            let (what, link) = describe(e);
            let mut changes = diff(e.before.as_ref(), e.after.as_ref());
            let more = changes.len().saturating_sub(MAX_CHANGES);
            changes.truncate(MAX_CHANGES);
            EntryRow {
                id: e.id,
                when: e
                    .at
                    .replace('T', " ")
                    .trim_end_matches('Z')
                    .chars()
                    .take(19)
                    .collect::<String>()
                    + " UTC",
                actor: e.actor.clone(),
                action: e.action.clone(),
                what,
                link: link.filter(|_| e.after.is_some() || e.entity_kind == "api_key"),
                changes,
                more,
                restorable: can_restore && restorable(e),
            }
        })
        .collect();
    ok(&AuditPage {
        layout,
        entries: rows,
        project,
        flag,
        kind,
        next,
    })
}

async fn restore(req: HttpRequest, posted: Posted, path: web::Path<i64>) -> Result<HttpResponse, PageError> {
    posted.require(Role::Editor)?;
    let state = session::state(&req)?;
    let id = path.into_inner();
    let actor = posted.session.actor();
    let location = state
        .write(move |tx| {
            let entry = audit::get(tx, id)?.ok_or_else(|| {
                StoreError::not_found(crate::store::Resource::AuditEntry, format!("audit entry {id}"))
            })?;
            let (Some(project), Some(key)) = (entry.project.clone(), entry.entity_key.clone()) else {
                return Err(StoreError::bad_request(
                    "this entry names no project and key to restore",
                    None,
                ));
            };
            match entry.entity_kind.as_str() {
                "flag" | "flag_state" => {
                    let (_, changes) = flags::restore(tx, &actor, &project, &key, id)?;
                    let env = entry.environment.map(|e| format!("env={e}&")).unwrap_or_default();
                    Ok((
                        format!("/projects/{project}/flags/{key}?{env}notice=restored"),
                        changes,
                    ))
                }
                "segment" => {
                    let after = entry.after.ok_or_else(|| {
                        StoreError::bad_request(
                            "this entry deleted the segment; restore an earlier one",
                            None,
                        )
                    })?;
                    let segment: Segment = serde_json::from_value(after)?;
                    let head = projects::head(tx, &project)?;
                    let exists = segments::list(tx, &head.key)?.iter().any(|s| s.key == key);
                    let (_, changes) = if exists {
                        segments::update(tx, &actor, &project, &key, segment)?
                    } else {
                        segments::create(tx, &actor, &project, segment)?
                    };
                    Ok((
                        format!("/projects/{project}/segments/{key}?notice=restored"),
                        changes,
                    ))
                }
                other => Err(StoreError::bad_request(
                    format!("a {other} cannot be restored from the audit log"),
                    None,
                )),
            }
        })
        .await?;
    Ok(see_other(&location))
}
