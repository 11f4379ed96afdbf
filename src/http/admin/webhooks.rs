//! Webhooks of a project (admins only): the list, a new webhook (its secret shown once), and
//! each webhook's page — edit, enable/disable, send a test event, rotate the secret, delete, and
//! the delivery log with every attempt. Changes go through `store::webhooks` like the API.

use actix_web::http::StatusCode;
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use super::form::Form;
use super::projects::{NoticeQuery, frame};
use super::session::{self, AdminSession, Posted};
use super::view::{self, FieldErrors, Layout, display_name};
use super::{PageError, ok, render, see_other};
use crate::AppState;
use crate::store::users::Role;
use crate::store::webhooks::{self, Attempt, Change, Settings, Webhook};
use crate::store::{Changes, StoreError, environments, projects};
use crate::webhooks::{EVENT_TYPES, Format, check_events, check_secret, check_url, deliver};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/{project}/webhooks", web::get().to(list_page))
        .route("/{project}/webhooks", web::post().to(create))
        .route("/{project}/webhooks/{id}", web::get().to(webhook_page))
        .route("/{project}/webhooks/{id}", web::post().to(save))
        .route("/{project}/webhooks/{id}/enabled", web::post().to(set_enabled))
        .route("/{project}/webhooks/{id}/test", web::post().to(test))
        .route("/{project}/webhooks/{id}/secret", web::post().to(rotate))
        .route("/{project}/webhooks/{id}/delete", web::post().to(delete));
}

/// A choice of the events checkboxes.
struct EventChoice {
    value: String,
    checked: bool,
}

/// An environment checkbox.
struct EnvChoice {
    key: String,
    name: String,
    checked: bool,
}

/// The fields of the webhook form, as shown (and as posted back).
struct FormFields {
    url: String,
    events: Vec<EventChoice>,
    environments: Vec<EnvChoice>,
    format: String,
    enabled: bool,
}

impl FormFields {
    fn new(
        url: &str,
        events: &[String],
        envs: &[environments::Environment],
        chosen: Option<&[String]>,
        format: &str,
        enabled: bool,
    ) -> FormFields {
        // "*", each family, each type; any pattern a webhook holds is one of them, so posting
        // the form back untouched stores the same events.
        let mut values: Vec<String> = vec!["*".into()];
        for t in EVENT_TYPES {
            let family = format!("{}.*", t.split('.').next().unwrap_or(t));
            if !values.contains(&family) {
                values.push(family);
            }
        }
        values.extend(EVENT_TYPES.iter().map(|t| (*t).to_owned()));
        FormFields {
            url: url.to_owned(),
            events: values
                .into_iter()
                .map(|value| EventChoice {
                    checked: events.contains(&value),
                    value,
                })
                .collect(),
            environments: envs
                .iter()
                .map(|e| EnvChoice {
                    checked: chosen.is_some_and(|c| c.contains(&e.key)),
                    key: e.key.clone(),
                    name: display_name(&e.name, &e.key).to_owned(),
                })
                .collect(),
            format: format.to_owned(),
            enabled,
        }
    }
}

struct WebhookRow {
    id: i64,
    url: String,
    events: String,
    environments: String,
    format: &'static str,
    enabled: bool,
    disabled_reason: Option<String>,
    failing_since: Option<String>,
}

impl WebhookRow {
    fn from(w: &Webhook) -> WebhookRow {
        WebhookRow {
            id: w.id,
            url: w.url.clone(),
            events: w.events.join(", "),
            environments: w
                .environments
                .as_ref()
                .map_or_else(|| "every environment".to_owned(), |e| e.join(", ")),
            format: w.format.as_str(),
            enabled: w.enabled,
            disabled_reason: w.disabled_reason.clone(),
            failing_since: w.failing_since.map(view::when),
        }
    }
}

struct AttemptRow {
    at: String,
    event_type: String,
    event_id: String,
    outcome: String,
    status: String,
    latency: String,
    error: String,
    response: String,
}

impl AttemptRow {
    fn from(a: &Attempt) -> AttemptRow {
        AttemptRow {
            at: view::when(a.at),
            event_type: a.event_type.clone(),
            event_id: a.event_id.clone(),
            outcome: a.outcome.clone(),
            status: a.status.map_or_else(|| "—".into(), |s| s.to_string()),
            latency: format!("{} ms", a.latency_ms),
            error: a.error.clone().unwrap_or_default(),
            response: a.response.clone().unwrap_or_default(),
        }
    }
}

/// A secret just created or rotated, shown this once.
struct ShownSecret {
    id: i64,
    secret: String,
}

#[derive(Template)]
#[template(path = "admin/webhooks.html")]
struct ListPage {
    layout: Layout,
    webhooks: Vec<WebhookRow>,
    created: Option<ShownSecret>,
    form: FormFields,
    errors: FieldErrors,
}

#[derive(Template)]
#[template(path = "admin/webhook.html")]
struct WebhookPage {
    layout: Layout,
    webhook: WebhookRow,
    form: FormFields,
    errors: FieldErrors,
    secret: Option<ShownSecret>,
    tested: Option<AttemptRow>,
    attempts: Vec<AttemptRow>,
}

async fn environments_of(
    state: &AppState,
    project: &str,
) -> Result<Vec<environments::Environment>, PageError> {
    let p = project.to_owned();
    Ok(state
        .store
        .read(move |conn| {
            let head = projects::head(conn, &p)?;
            environments::list_in(conn, head.id)
        })
        .await?)
}

async fn list_view(
    state: &AppState,
    session: &AdminSession,
    project: &str,
    notice: Option<&str>,
) -> Result<ListPage, PageError> {
    let layout = frame(state, session, project, "Webhooks", "webhooks")
        .await?
        .notice(notice);
    let p = project.to_owned();
    let hooks = state.store.read(move |conn| webhooks::list(conn, &p)).await?;
    let envs = environments_of(state, project).await?;
    Ok(ListPage {
        layout,
        webhooks: hooks.iter().map(WebhookRow::from).collect(),
        created: None,
        form: FormFields::new("", &["*".to_owned()], &envs, None, "json", true),
        errors: FieldErrors::default(),
    })
}

async fn webhook_view(
    state: &AppState,
    session: &AdminSession,
    project: &str,
    id: i64,
    notice: Option<&str>,
) -> Result<WebhookPage, PageError> {
    let layout = frame(state, session, project, "Webhook", "webhooks")
        .await?
        .notice(notice);
    let p = project.to_owned();
    let (hook, attempts) = state
        .store
        .read(move |conn| {
            Ok((
                webhooks::get(conn, &p, id)?,
                webhooks::attempts(conn, &p, id, 100)?,
            ))
        })
        .await?;
    let envs = environments_of(state, project).await?;
    Ok(WebhookPage {
        layout,
        form: FormFields::new(
            &hook.url,
            &hook.events,
            &envs,
            hook.environments.as_deref(),
            hook.format.as_str(),
            hook.enabled,
        ),
        webhook: WebhookRow::from(&hook),
        errors: FieldErrors::default(),
        secret: None,
        tested: None,
        attempts: attempts.iter().map(AttemptRow::from).collect(),
    })
}

async fn list_page(
    req: HttpRequest,
    session: AdminSession,
    path: web::Path<String>,
    query: web::Query<NoticeQuery>,
) -> Result<HttpResponse, PageError> {
    session.require(Role::Admin)?;
    let state = session::state(&req)?;
    ok(&list_view(&state, &session, &path, query.notice.as_deref()).await?)
}

/// Reads the webhook form; errors by field name.
fn read_form(form: &Form, allow_private: bool) -> (Change, FieldErrors) {
    let mut errors = FieldErrors::default();
    let url = match check_url(form.line("url"), allow_private) {
        Ok(url) => Some(url),
        Err(m) => {
            errors.add("url", m);
            None
        }
    };
    let chosen: Vec<String> = form.all("events").iter().map(|s| (*s).to_owned()).collect();
    let events = match check_events(&chosen) {
        Ok(events) => Some(events),
        Err((_, m)) => {
            errors.add("events", m);
            None
        }
    };
    let envs: Vec<String> = form.all("environments").iter().map(|s| (*s).to_owned()).collect();
    let format = Format::parse(form.text("format"));
    if format.is_none() {
        errors.add("format", "Choose JSON or Slack.");
    }
    (
        Change {
            url,
            events,
            environments: Some(Some(envs).filter(|e| !e.is_empty())),
            format,
            enabled: Some(form.checked("enabled")),
        },
        errors,
    )
}

fn refill(form: &Form, envs: &[environments::Environment]) -> FormFields {
    let events: Vec<String> = form.all("events").iter().map(|s| (*s).to_owned()).collect();
    let chosen: Vec<String> = form.all("environments").iter().map(|s| (*s).to_owned()).collect();
    FormFields::new(
        form.line("url"),
        &events,
        envs,
        Some(&chosen),
        form.text("format"),
        form.checked("enabled"),
    )
}

async fn create(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    let project = path.into_inner();
    let (change, mut errors) = read_form(&posted.form, state.settings.serve.webhooks.webhook_allow_private);
    let secret_text = posted.form.line("secret");
    let secret = if secret_text.is_empty() {
        None
    } else {
        match check_secret(secret_text) {
            Ok(s) => Some(s),
            Err(m) => {
                errors.add("secret", m);
                None
            }
        }
    };
    if errors.is_empty()
        && let (Some(url), Some(events), Some(format)) = (change.url, change.events, change.format)
    {
        let settings = Settings {
            url,
            events,
            environments: change.environments.flatten(),
            format,
            enabled: change.enabled.unwrap_or(true),
        };
        let (actor, p) = (posted.session.actor(), project.clone());
        let result = state
            .write(move |tx| {
                Ok((
                    webhooks::create_audited(tx, &actor, &p, settings, secret)?,
                    Changes::default(),
                ))
            })
            .await;
        match result {
            Ok((hook, secret)) => {
                let mut page = list_view(&state, &posted.session, &project, Some("created")).await?;
                page.created = Some(ShownSecret { id: hook.id, secret });
                // The secret is in this page only: it must not be kept by a cache.
                return render(StatusCode::CREATED, &page);
            }
            Err(e) => errors = FieldErrors::from_store(e, "url")?,
        }
    }
    let envs = environments_of(&state, &project).await?;
    let mut page = list_view(&state, &posted.session, &project, None).await?;
    page.form = refill(&posted.form, &envs);
    page.errors = errors;
    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

async fn webhook_page(
    req: HttpRequest,
    session: AdminSession,
    path: web::Path<(String, i64)>,
    query: web::Query<NoticeQuery>,
) -> Result<HttpResponse, PageError> {
    session.require(Role::Admin)?;
    let state = session::state(&req)?;
    let (project, id) = path.into_inner();
    ok(&webhook_view(&state, &session, &project, id, query.notice.as_deref()).await?)
}

fn here(project: &str, id: i64, notice: &str) -> HttpResponse {
    see_other(&format!("/projects/{project}/webhooks/{id}?notice={notice}"))
}

async fn save(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    let (project, id) = path.into_inner();
    let (change, mut errors) = read_form(&posted.form, state.settings.serve.webhooks.webhook_allow_private);
    if errors.is_empty() {
        let (actor, p) = (posted.session.actor(), project.clone());
        match state
            .write(move |tx| {
                Ok((
                    webhooks::update_audited(tx, &actor, &p, id, change)?,
                    Changes::default(),
                ))
            })
            .await
        {
            Ok(_) => return Ok(here(&project, id, "saved")),
            Err(StoreError::NotFound { what, .. }) => return Err(PageError::not_found(what)),
            Err(e) => errors = FieldErrors::from_store(e, "url")?,
        }
    }
    let envs = environments_of(&state, &project).await?;
    let mut page = webhook_view(&state, &posted.session, &project, id, None).await?;
    page.form = refill(&posted.form, &envs);
    page.errors = errors;
    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

async fn set_enabled(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    let (project, id) = path.into_inner();
    let enabled = posted.form.text("enabled") == "true";
    let (actor, p) = (posted.session.actor(), project.clone());
    let change = Change {
        enabled: Some(enabled),
        ..Change::default()
    };
    state
        .write(move |tx| {
            Ok((
                webhooks::update_audited(tx, &actor, &p, id, change)?,
                Changes::default(),
            ))
        })
        .await?;
    Ok(here(&project, id, "saved"))
}

async fn test(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    let (project, id) = path.into_inner();
    let attempt = deliver::send_test(&state, &project, id, &posted.session.user.email).await?;
    let mut page = webhook_view(&state, &posted.session, &project, id, None).await?;
    page.tested = Some(AttemptRow::from(&attempt));
    ok(&page)
}

async fn rotate(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    let (project, id) = path.into_inner();
    let (actor, p) = (posted.session.actor(), project.clone());
    let secret = state
        .write(move |tx| {
            Ok((
                webhooks::rotate_secret_audited(tx, &actor, &p, id, None)?,
                Changes::default(),
            ))
        })
        .await?;
    let mut page = webhook_view(&state, &posted.session, &project, id, None).await?;
    page.secret = Some(ShownSecret { id, secret });
    ok(&page)
}

async fn delete(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    let (project, id) = path.into_inner();
    let (actor, p) = (posted.session.actor(), project.clone());
    state
        .write(move |tx| Ok((webhooks::delete_audited(tx, &actor, &p, id)?, Changes::default())))
        .await?;
    Ok(see_other(&format!("/projects/{project}/webhooks?notice=deleted")))
}
