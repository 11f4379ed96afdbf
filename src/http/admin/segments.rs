//! Segments: sets of contexts shared by a project's environments — keys always in, keys
//! always out, and rules built with the same clause builder as flags.

use actix_web::http::StatusCode;
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use flagstaff_eval::model::{Segment, SegmentRule};

use super::editor::{ClauseRow, OPS, clause_rows, parse_clauses};
use super::form::{Form, list, list_text};
use super::projects::frame;
use super::session::{self, AdminSession, Posted};
use super::view::{FieldErrors, Layout, display_name};
use super::{PageError, ok, render, see_other};
use crate::AppState;
use crate::store::segments;
use crate::store::users::Role;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/{project}/segments", web::get().to(list_page))
        .route("/{project}/segments", web::post().to(create))
        .route("/{project}/segments/{segment}", web::get().to(edit_page))
        .route("/{project}/segments/{segment}", web::post().to(save))
        .route("/{project}/segments/{segment}/delete", web::post().to(delete));
}

struct SegmentRow {
    key: String,
    name: String,
    included: usize,
    excluded: usize,
    rules: usize,
}

#[derive(Template)]
#[template(path = "admin/segments.html")]
struct SegmentsPage {
    layout: Layout,
    segments: Vec<SegmentRow>,
    errors: FieldErrors,
    key: String,
    name: String,
}

#[derive(serde::Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn list_view(
    state: &AppState,
    session: &AdminSession,
    project: &str,
    notice: Option<&str>,
) -> Result<SegmentsPage, PageError> {
    let layout = frame(state, session, project, "Segments", "segments")
        .await?
        .notice(notice);
    let p = project.to_owned();
    let list = state.store.read(move |conn| segments::list(conn, &p)).await?;
    Ok(SegmentsPage {
        layout,
        segments: list
            .into_iter()
            .map(|s| SegmentRow {
                name: display_name(&s.name, &s.key).to_owned(),
                included: s.included.len(),
                excluded: s.excluded.len(),
                rules: s.rules.len(),
                key: s.key,
            })
            .collect(),
        errors: FieldErrors::default(),
        key: String::new(),
        name: String::new(),
    })
}

async fn list_page(
    req: HttpRequest,
    session: AdminSession,
    path: web::Path<String>,
    query: web::Query<NoticeQuery>,
) -> Result<HttpResponse, PageError> {
    let state = session::state(&req)?;
    ok(&list_view(&state, &session, &path, query.notice.as_deref()).await?)
}

async fn create(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Editor)?;
    let state = session::state(&req)?;
    let project = path.into_inner();
    let key = posted.form.text("key").to_owned();
    let name = posted.form.text("name").to_owned();
    let segment = Segment {
        key: key.clone(),
        name: name.clone(),
        description: String::new(),
        included: Vec::new(),
        excluded: Vec::new(),
        rules: Vec::new(),
    };
    let (actor, p) = (posted.session.actor(), project.clone());
    match state
        .write(move |tx| segments::create(tx, &actor, &p, segment))
        .await
    {
        Ok(segment) => Ok(see_other(&format!(
            "/projects/{project}/segments/{}?notice=created",
            segment.key
        ))),
        Err(e) => {
            let errors = FieldErrors::from_store(e, "key")?;
            let mut page = list_view(&state, &posted.session, &project, None).await?;
            page.errors = errors;
            page.key = key;
            page.name = name;
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
    }
}

/// A segment rule as typed.
struct RuleRow {
    clauses: Vec<ClauseRow>,
}

/// A segment as typed.
struct SegmentForm {
    name: String,
    description: String,
    included: String,
    excluded: String,
    rules: Vec<RuleRow>,
}

impl SegmentForm {
    fn from_segment(s: &Segment) -> SegmentForm {
        SegmentForm {
            name: s.name.clone(),
            description: s.description.clone(),
            included: list_text(&s.included),
            excluded: list_text(&s.excluded),
            rules: s
                .rules
                .iter()
                .map(|r| RuleRow {
                    clauses: r.clauses.iter().map(ClauseRow::from_clause).collect(),
                })
                .collect(),
        }
    }

    fn from_form(form: &Form) -> SegmentForm {
        SegmentForm {
            name: form.line("name").to_owned(),
            description: form.multiline("description"),
            included: form.multiline("included"),
            excluded: form.multiline("excluded"),
            rules: form
                .indices("rules")
                .into_iter()
                .map(|i| RuleRow {
                    clauses: clause_rows(form, &format!("rules[{i}]")),
                })
                .filter(|r| !r.clauses.is_empty())
                .collect(),
        }
    }

    fn parse(&self, key: &str, previous: &Segment) -> Result<Segment, FieldErrors> {
        let mut errors = FieldErrors::default();
        let rules = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| SegmentRule {
                // Rule ids are kept when the rule stays at its place.
                id: previous.rules.get(i).and_then(|p| p.id.clone()),
                clauses: parse_clauses(&r.clauses, &format!("rules[{i}]"), &mut errors),
            })
            .collect();
        let mut keys = |field: &str, text: &str| {
            list(text).unwrap_or_else(|message| {
                errors.add(field, message);
                Vec::new()
            })
        };
        let included = keys("included", &self.included);
        let excluded = keys("excluded", &self.excluded);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Segment {
            key: key.to_owned(),
            name: self.name.clone(),
            description: self.description.clone(),
            included,
            excluded,
            rules,
        })
    }
}

#[derive(Template)]
#[template(path = "admin/segment.html")]
struct SegmentPage {
    layout: Layout,
    key: String,
    title: String,
    form: SegmentForm,
    errors: FieldErrors,
    ops: &'static [(&'static str, &'static str)],
}

impl SegmentPage {
    fn errors_at(&self, path: impl AsRef<str>) -> Vec<String> {
        let path = path.as_ref();
        self.errors
            .0
            .iter()
            .filter(|(p, _)| {
                p == path
                    || p.strip_prefix(path)
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
            })
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn blank_clause(&self) -> ClauseRow {
        ClauseRow {
            op: "in".into(),
            ..ClauseRow::default()
        }
    }
}

async fn segment_view(
    state: &AppState,
    session: &AdminSession,
    project: &str,
    key: &str,
    form: Option<(SegmentForm, FieldErrors)>,
    notice: Option<&str>,
) -> Result<(SegmentPage, Segment), PageError> {
    let (p, k) = (project.to_owned(), key.to_owned());
    let segment = state.store.read(move |conn| segments::get(conn, &p, &k)).await?;
    let title = display_name(&segment.name, &segment.key).to_owned();
    let layout = frame(state, session, project, &title, "segments")
        .await?
        .notice(notice);
    let (form, errors) =
        form.unwrap_or_else(|| (SegmentForm::from_segment(&segment), FieldErrors::default()));
    Ok((
        SegmentPage {
            layout,
            key: segment.key.clone(),
            title,
            form,
            errors,
            ops: &OPS,
        },
        segment,
    ))
}

async fn edit_page(
    req: HttpRequest,
    session: AdminSession,
    path: web::Path<(String, String)>,
    query: web::Query<NoticeQuery>,
) -> Result<HttpResponse, PageError> {
    let state = session::state(&req)?;
    let (project, key) = path.into_inner();
    let (page, _) = segment_view(&state, &session, &project, &key, None, query.notice.as_deref()).await?;
    ok(&page)
}

async fn save(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Editor)?;
    let state = session::state(&req)?;
    let (project, key) = path.into_inner();
    let form = SegmentForm::from_form(&posted.form);
    let (p, k) = (project.clone(), key.clone());
    let previous = state.store.read(move |conn| segments::get(conn, &p, &k)).await?;
    let errors = match form.parse(&key, &previous) {
        Ok(segment) => {
            let (actor, p, k) = (posted.session.actor(), project.clone(), key.clone());
            match state
                .write(move |tx| segments::update(tx, &actor, &p, &k, segment))
                .await
            {
                Ok(_) => {
                    return Ok(see_other(&format!(
                        "/projects/{project}/segments/{key}?notice=saved"
                    )));
                }
                Err(e) => FieldErrors::from_store(e, "")?,
            }
        }
        Err(errors) => errors,
    };
    let (page, _) = segment_view(
        &state,
        &posted.session,
        &project,
        &key,
        Some((form, errors)),
        None,
    )
    .await?;
    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

async fn delete(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Editor)?;
    let state = session::state(&req)?;
    let (project, key) = path.into_inner();
    let (actor, p) = (posted.session.actor(), project.clone());
    state
        .write(move |tx| segments::delete(tx, &actor, &p, &key))
        .await?;
    Ok(see_other(&format!("/projects/{project}/segments?notice=deleted")))
}
