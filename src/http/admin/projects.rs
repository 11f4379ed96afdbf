//! Projects and their environments. Everyone reads; admins create, rename and delete.

use actix_web::http::StatusCode;
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use flagstaff_eval::model::EnvironmentInfo;

use super::session::{self, AdminSession, Posted};
use super::view::{self, FieldErrors, Layout, display_name};
use super::{PageError, connect, demo, flags, insights, keys, ok, render, sample, see_other, segments};
use crate::AppState;
use crate::store::environments::{self, EnvironmentUpdate};
use crate::store::projects::{self, NewProject, ProjectUpdate};
use crate::store::users::Role;

pub fn configure(cfg: &mut ServiceConfig) {
    // Before `/{project}`: a fixed path wins over a project key.
    sample::configure(cfg);
    cfg.route("", web::get().to(list))
        .route("", web::post().to(create))
        .route("/go", web::get().to(go))
        .route("/{project}", web::get().to(project_home))
        .route("/{project}/settings", web::post().to(rename))
        .route("/{project}/delete", web::post().to(delete))
        .route("/{project}/environments", web::get().to(environments_page))
        .route("/{project}/environments", web::post().to(create_environment))
        .route(
            "/{project}/environments/{env}",
            web::post().to(rename_environment),
        )
        .route(
            "/{project}/environments/{env}/delete",
            web::post().to(delete_environment),
        );
    flags::configure(cfg);
    segments::configure(cfg);
    keys::configure(cfg);
    insights::configure(cfg);
    super::webhooks::configure(cfg);
    connect::configure(cfg);
    demo::configure(cfg);
}

#[derive(serde::Deserialize)]
pub(crate) struct NoticeQuery {
    pub notice: Option<String>,
}

/// The frame of a page of project `key`: the layout with the project switcher; 404 if the
/// project does not exist.
pub(crate) async fn frame(
    state: &AppState,
    session: &AdminSession,
    project: &str,
    title: &str,
    section: &'static str,
) -> Result<Layout, PageError> {
    let key = project.to_owned();
    let (head, nav) = state
        .store
        .read(move |conn| Ok((projects::head(conn, &key)?, view::projects_nav(conn)?)))
        .await?;
    Ok(Layout::new(
        session,
        format!("{title} · {}", display_name(&head.name, &head.key)),
        section,
    )
    .in_project(&head.key, &head.name)
    .with_projects(nav))
}

struct ProjectRow {
    key: String,
    name: String,
    environments: String,
}

#[derive(Template)]
#[template(path = "admin/projects.html")]
struct ProjectsPage {
    layout: Layout,
    projects: Vec<ProjectRow>,
    errors: FieldErrors,
    key: String,
    name: String,
}

async fn projects_page(
    state: &AppState,
    session: &AdminSession,
    notice: Option<&str>,
    errors: FieldErrors,
    key: String,
    name: String,
) -> Result<ProjectsPage, PageError> {
    let (list, nav) = state
        .store
        .read(|conn| Ok((projects::list(conn)?, view::projects_nav(conn)?)))
        .await?;
    let projects = list
        .into_iter()
        .map(|p| ProjectRow {
            name: display_name(&p.name, &p.key).to_owned(),
            environments: p
                .environments
                .iter()
                .map(|e| display_name(&e.name, &e.key))
                .collect::<Vec<_>>()
                .join(", "),
            key: p.key,
        })
        .collect();
    Ok(ProjectsPage {
        layout: Layout::new(session, "Projects", "projects")
            .with_projects(nav)
            .notice(notice),
        projects,
        errors,
        key,
        name,
    })
}

async fn list(
    req: HttpRequest,
    session: AdminSession,
    query: web::Query<NoticeQuery>,
) -> Result<HttpResponse, PageError> {
    let state = session::state(&req)?;
    let page = projects_page(
        &state,
        &session,
        query.notice.as_deref(),
        FieldErrors::default(),
        String::new(),
        String::new(),
    )
    .await?;
    ok(&page)
}

async fn create(req: HttpRequest, posted: Posted) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    let key = posted.form.text("key").to_owned();
    let name = posted.form.text("name").to_owned();
    let new = NewProject {
        key: key.clone(),
        name: name.clone(),
        environments: None,
    };
    let actor = posted.session.actor();
    match state.write(move |tx| projects::create(tx, &actor, new)).await {
        Ok(project) => Ok(see_other(&format!(
            "/projects/{}/flags?notice=created",
            project.key
        ))),
        Err(e) => {
            let errors = FieldErrors::from_store(e, "key")?;
            let page = projects_page(&state, &posted.session, None, errors, key, name).await?;
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
    }
}

#[derive(serde::Deserialize)]
struct GoQuery {
    project: Option<String>,
}

async fn go(_session: AdminSession, query: web::Query<GoQuery>) -> HttpResponse {
    match query
        .project
        .as_deref()
        .filter(|p| flagstaff_eval::validate::is_valid_slug(p))
    {
        Some(project) => see_other(&format!("/projects/{project}/flags")),
        None => see_other("/projects"),
    }
}

async fn project_home(_session: AdminSession, path: web::Path<String>) -> HttpResponse {
    see_other(&format!("/projects/{}/flags", path.into_inner()))
}

struct EnvironmentRow {
    key: String,
    name: String,
    revision: u64,
    requires_confirmation: bool,
}

#[derive(Template)]
#[template(path = "admin/environments.html")]
struct EnvironmentsPage {
    layout: Layout,
    project_name: String,
    environments: Vec<EnvironmentRow>,
    errors: FieldErrors,
    key: String,
    name: String,
}

async fn environments_view(
    state: &AppState,
    session: &AdminSession,
    project: &str,
    notice: Option<&str>,
    errors: FieldErrors,
    key: String,
    name: String,
) -> Result<EnvironmentsPage, PageError> {
    let layout = frame(state, session, project, "Environments", "environments")
        .await?
        .notice(notice);
    let p = project.to_owned();
    let (head, list) = state
        .store
        .read(move |conn| Ok((projects::head(conn, &p)?, environments::list(conn, &p)?)))
        .await?;
    Ok(EnvironmentsPage {
        layout,
        project_name: head.name,
        environments: list
            .into_iter()
            .map(|e| EnvironmentRow {
                name: e.name,
                key: e.key,
                revision: e.revision,
                requires_confirmation: e.requires_confirmation,
            })
            .collect(),
        errors,
        key,
        name,
    })
}

async fn environments_page(
    req: HttpRequest,
    session: AdminSession,
    path: web::Path<String>,
    query: web::Query<NoticeQuery>,
) -> Result<HttpResponse, PageError> {
    let state = session::state(&req)?;
    let page = environments_view(
        &state,
        &session,
        &path,
        query.notice.as_deref(),
        FieldErrors::default(),
        String::new(),
        String::new(),
    )
    .await?;
    ok(&page)
}

async fn create_environment(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    let project = path.into_inner();
    let key = posted.form.text("key").to_owned();
    let name = posted.form.text("name").to_owned();
    let info = EnvironmentInfo {
        key: key.clone(),
        name: name.clone(),
        requires_confirmation: None,
    };
    let (actor, p) = (posted.session.actor(), project.clone());
    match state
        .write(move |tx| environments::create(tx, &actor, &p, info))
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/projects/{project}/environments?notice=created"
        ))),
        Err(e) => {
            let errors = FieldErrors::from_store(e, "key")?;
            let page = environments_view(&state, &posted.session, &project, None, errors, key, name).await?;
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
    }
}

async fn rename_environment(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    let (project, env) = path.into_inner();
    let update = EnvironmentUpdate {
        key: None,
        name: posted.form.text("name").to_owned(),
        requires_confirmation: Some(posted.form.checked("requires_confirmation")),
    };
    let (actor, p) = (posted.session.actor(), project.clone());
    state
        .write(move |tx| environments::update(tx, &actor, &p, &env, update))
        .await?;
    Ok(see_other(&format!(
        "/projects/{project}/environments?notice=saved"
    )))
}

async fn delete_environment(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    let (project, env) = path.into_inner();
    let (actor, p) = (posted.session.actor(), project.clone());
    state
        .write(move |tx| environments::delete(tx, &actor, &p, &env))
        .await?;
    Ok(see_other(&format!(
        "/projects/{project}/environments?notice=deleted"
    )))
}

async fn rename(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    let project = path.into_inner();
    let update = ProjectUpdate {
        key: None,
        name: posted.form.text("name").to_owned(),
    };
    let (actor, p) = (posted.session.actor(), project.clone());
    state
        .write(move |tx| projects::update(tx, &actor, &p, update))
        .await?;
    Ok(see_other(&format!(
        "/projects/{project}/environments?notice=saved"
    )))
}

async fn delete(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    let project = path.into_inner();
    if posted.form.text("confirm_key") != project {
        return Err(PageError::bad_request(format!(
            "To delete the project, type its key ({project}) in the confirmation field."
        )));
    }
    let actor = posted.session.actor();
    state
        .write(move |tx| projects::delete(tx, &actor, &project))
        .await?;
    Ok(see_other("/projects?notice=deleted"))
}
