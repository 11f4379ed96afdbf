//! Changing flags safely on the admin pages (DESIGN.md §9): a flag's scheduled changes in one
//! environment (listed on the flag page, added and cancelled there), and the comparison of two
//! environments with one confirmed promotion.
//!
//! Times are stored in UTC; the pages write them as UTC and our script shows them in the
//! browser's time zone (`<time class="js-local-time">`) and turns the `datetime-local` field
//! into UTC before the form is sent (without script, that field is read as UTC).

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use flagstaff_eval::model::FlagType;
use serde_json::{Value, json};

use super::projects::frame;
use super::session::{self, AdminSession, Posted};
use super::view::{Layout, display_name};
use super::{PageError, ok, see_other};
use crate::store::promote::{self, Promotion};
use crate::store::schedules::{self, NewSchedule, Schedule};
use crate::store::users::Role;
use crate::store::{environments, flags};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route(
        "/{project}/flags/{flag}/environments/{env}/schedules",
        web::post().to(add),
    )
    .route(
        "/{project}/flags/{flag}/environments/{env}/schedules/{id}/cancel",
        web::post().to(cancel),
    )
    .route("/{project}/compare", web::get().to(compare_page))
    .route("/{project}/promote", web::post().to(promote_flags));
}

/// One schedule as the flag page lists it.
pub struct ScheduleRow {
    pub id: i64,
    /// RFC 3339 UTC (the `datetime` our script shows in local time).
    pub at: String,
    /// The same, readable without script.
    pub at_text: String,
    pub what: String,
    pub patch: String,
    pub status: String,
    pub error: String,
    pub created_by: String,
}

/// `2030-01-01T08:00:00.000Z` → `2030-01-01 08:00 UTC`.
fn readable(at: &str) -> String {
    match (at.get(..10), at.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => at.to_owned(),
    }
}

/// What a patch does, in words.
pub fn describe(patch: &Value) -> String {
    let Some(map) = patch.as_object() else {
        return String::new();
    };
    let mut parts = Vec::new();
    if let Some(on) = map.get("enabled").and_then(Value::as_bool) {
        parts.push(if on {
            "turn on".to_owned()
        } else {
            "turn off".to_owned()
        });
    }
    if let Some(rollout) = map.get("fallthrough").and_then(|f| f.get("rollout")) {
        let shares: Vec<String> = rollout["variations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                let pct = v["weight"].as_f64().unwrap_or(0.0) / 1000.0;
                format!("{} {pct}%", v["variation"].as_str().unwrap_or("?"))
            })
            .collect();
        parts.push(format!("set the rollout to {}", shares.join(", ")));
    } else if let Some(variation) = map
        .get("fallthrough")
        .and_then(|f| f.get("variation"))
        .and_then(Value::as_str)
    {
        parts.push(format!("serve {variation} by default"));
    }
    for field in ["off_variation", "prerequisites", "targets", "rules"] {
        if map.contains_key(field) {
            parts.push(format!("set {}", field.replace('_', " ")));
        }
    }
    let text = parts.join(", ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => "No change".to_owned(),
    }
}

/// The flag page's list: pending schedules of `flag` in `env`, then recent ones.
pub async fn rows(
    state: &crate::AppState,
    project: &str,
    flag: &str,
    env: &str,
) -> Result<Vec<ScheduleRow>, PageError> {
    let (p, f, e) = (project.to_owned(), flag.to_owned(), env.to_owned());
    let list: Vec<Schedule> = state
        .store
        .read(move |conn| schedules::list(conn, &p, &f, &e))
        .await?;
    Ok(list
        .into_iter()
        .map(|s| ScheduleRow {
            id: s.id,
            at_text: readable(&s.at),
            at: s.at,
            what: describe(&s.patch),
            patch: s.patch.to_string(),
            status: s.status,
            error: s.error.unwrap_or_default(),
            created_by: s.created_by,
        })
        .collect())
}

/// The patch a form asks for: `on`, `off`, `rollout` (with `percent` of the flag's first
/// variation — for a boolean flag its `true` one — and the rest to the other), or `json`.
fn patch_from(posted: &Posted, flag: &flagstaff_eval::model::Flag) -> Result<Value, PageError> {
    match posted.form.text("change") {
        "on" => Ok(json!({"enabled": true})),
        "off" => Ok(json!({"enabled": false})),
        "rollout" => {
            let percent: f64 = posted
                .form
                .text("percent")
                .trim()
                .parse()
                .ok()
                .filter(|p: &f64| (0.0..=100.0).contains(p))
                .ok_or_else(|| {
                    PageError::bad_request("The rollout percentage must be a number from 0 to 100.")
                })?;
            let mut keys: Vec<&str> = flag.variations.iter().map(|v| v.key.as_str()).collect();
            if flag.flag_type == FlagType::Boolean
                && let Some(i) = flag.variations.iter().position(|v| v.value == Value::Bool(true))
            {
                keys.swap(0, i);
            }
            let [first, second, ..] = keys.as_slice() else {
                return Err(PageError::bad_request("A rollout needs at least two variations."));
            };
            let weight = (percent * 1000.0).round() as u64;
            Ok(json!({"fallthrough": {"rollout": {"variations": [
                {"variation": first, "weight": weight},
                {"variation": second, "weight": 100_000 - weight}
            ]}}}))
        }
        "json" => serde_json::from_str(posted.form.text("patch"))
            .map_err(|e| PageError::bad_request(format!("The state to apply is not JSON: {e}"))),
        other => Err(PageError::bad_request(format!("Unknown change {other:?}."))),
    }
}

async fn add(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Editor)?;
    let state = session::state(&req)?;
    let (project, flag_key, env) = path.into_inner();
    let (p, f) = (project.clone(), flag_key.clone());
    let flag = state.store.read(move |conn| flags::get(conn, &p, &f)).await?;
    let patch = patch_from(&posted, &flag)?;
    // Our script sends the browser's local time as UTC in `at`; without it, `at_local` is UTC.
    let at = match posted.form.text("at") {
        "" => match posted.form.text("at_local") {
            "" => return Err(PageError::bad_request("Choose when the change happens.")),
            local if local.len() == 16 => format!("{local}:00Z"),
            local => format!("{local}Z"),
        },
        at => at.to_owned(),
    };
    let (actor, p, f, e) = (
        posted.session.actor(),
        project.clone(),
        flag_key.clone(),
        env.clone(),
    );
    state
        .write(move |tx| schedules::create(tx, &actor, &p, &f, &e, NewSchedule { at, patch }))
        .await?;
    state.scheduled.notify_one();
    Ok(see_other(&format!(
        "/projects/{project}/flags/{flag_key}?env={env}&notice=scheduled#schedules"
    )))
}

async fn cancel(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<(String, String, String, i64)>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Editor)?;
    let state = session::state(&req)?;
    let (project, flag_key, env, id) = path.into_inner();
    let (actor, p, f, e) = (
        posted.session.actor(),
        project.clone(),
        flag_key.clone(),
        env.clone(),
    );
    state
        .write(move |tx| schedules::cancel(tx, &actor, &p, &f, &e, id))
        .await?;
    Ok(see_other(&format!(
        "/projects/{project}/flags/{flag_key}?env={env}&notice=cancelled#schedules"
    )))
}

// ---------------------------------------------------------------------------------------------
// Compare and promote

struct CompareRow {
    key: String,
    name: String,
    equal: bool,
    differences: String,
    from_version: u64,
    to_version: u64,
    from_summary: String,
    to_summary: String,
}

#[derive(Template)]
#[template(path = "admin/compare.html")]
struct ComparePage {
    layout: Layout,
    environments: Vec<(String, String)>,
    from: String,
    to: String,
    from_name: String,
    to_name: String,
    rows: Vec<CompareRow>,
    differing: usize,
}

#[derive(serde::Deserialize)]
struct CompareQuery {
    from: Option<String>,
    to: Option<String>,
    notice: Option<String>,
}

fn state_summary(s: &flagstaff_eval::model::FlagEnvState) -> String {
    let mut text = if s.enabled {
        "On".to_owned()
    } else {
        "Off".to_owned()
    };
    let more = super::flags::summary(s);
    if !more.is_empty() {
        text.push_str("; ");
        text.push_str(&more);
    }
    text
}

async fn compare_page(
    req: HttpRequest,
    session: AdminSession,
    path: web::Path<String>,
    query: web::Query<CompareQuery>,
) -> Result<HttpResponse, PageError> {
    let state = session::state(&req)?;
    let project = path.into_inner();
    let layout = frame(&state, &session, &project, "Compare environments", "compare")
        .await?
        .notice(query.notice.as_deref());
    let p = project.clone();
    let envs = state.store.read(move |conn| environments::list(conn, &p)).await?;
    let pick = |wanted: Option<&str>, fallback: usize| -> Result<environments::Environment, PageError> {
        match wanted {
            Some(key) => envs
                .iter()
                .find(|e| e.key == key)
                .cloned()
                .ok_or_else(|| PageError::not_found(format!("environment {key:?}"))),
            None => envs
                .get(fallback.min(envs.len().saturating_sub(1)))
                .cloned()
                .ok_or_else(|| PageError::not_found("an environment of this project")),
        }
    };
    // By default the last two environments: staging → production.
    let from = pick(query.from.as_deref(), envs.len().saturating_sub(2))?;
    let to = pick(query.to.as_deref(), envs.len().saturating_sub(1))?;
    let (p, a, b) = (project.clone(), from.key.clone(), to.key.clone());
    let comparison = state
        .store
        .read(move |conn| promote::compare(conn, &p, &a, &b))
        .await?;
    let rows: Vec<CompareRow> = comparison
        .flags
        .iter()
        .map(|f| CompareRow {
            key: f.key.clone(),
            name: display_name(&f.name, &f.key).to_owned(),
            equal: f.equal,
            differences: f
                .differences
                .iter()
                .map(|d| d.replace('_', " "))
                .collect::<Vec<_>>()
                .join(", "),
            from_version: f.from.version.unwrap_or(0),
            to_version: f.to.version.unwrap_or(0),
            from_summary: state_summary(&f.from),
            to_summary: state_summary(&f.to),
        })
        .collect();
    ok(&ComparePage {
        layout,
        environments: envs
            .iter()
            .map(|e| (e.key.clone(), display_name(&e.name, &e.key).to_owned()))
            .collect(),
        from_name: display_name(&from.name, &from.key).to_owned(),
        to_name: display_name(&to.name, &to.key).to_owned(),
        from: from.key,
        to: to.key,
        differing: rows.iter().filter(|r| !r.equal).count(),
        rows,
    })
}

async fn promote_flags(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Editor)?;
    let state = session::state(&req)?;
    let project = path.into_inner();
    let from = posted.form.text("from").to_owned();
    let to = posted.form.text("to").to_owned();
    let flags: Vec<String> = posted.form.all("flag").into_iter().map(str::to_owned).collect();
    if flags.is_empty() {
        return Err(PageError::bad_request("Tick at least one flag to promote."));
    }
    let mut expect_versions = std::collections::BTreeMap::new();
    for key in &flags {
        let version = posted.form.text(&format!("version.{key}"));
        let version = version
            .parse::<u64>()
            .map_err(|_| PageError::bad_request(format!("The compared version of {key} is missing.")))?;
        expect_versions.insert(key.clone(), version);
    }
    let promotion = Promotion {
        from: from.clone(),
        flags,
        expect_versions,
    };
    let (actor, p, t) = (posted.session.actor(), project.clone(), to.clone());
    state
        .write(move |tx| promote::promote(tx, &actor, &p, &t, promotion))
        .await?;
    Ok(see_other(&format!(
        "/projects/{project}/compare?from={from}&to={to}&notice=promoted"
    )))
}
