//! Users (admins only): invite by creating with a temporary password (changed at the first
//! sign-in), change role, disable or enable. At least one enabled admin always remains. A
//! disabled user's sessions and tokens stop working at once.

use actix_web::http::StatusCode;
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use super::session::{self, AdminSession, Posted};
use super::view::{self, FieldErrors, Layout};
use super::{PageError, ok, render, see_other};
use crate::AppState;
use crate::password;
use crate::store::users::{self, Role};
use crate::store::{Changes, StoreError};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("", web::get().to(page))
        .route("", web::post().to(create))
        .route("/{id}", web::post().to(update));
}

struct UserRow {
    id: i64,
    email: String,
    role: &'static str,
    disabled: bool,
    temporary: bool,
    created: String,
    me: bool,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<UserRow>,
    errors: FieldErrors,
    email: String,
    role: String,
}

#[derive(serde::Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn view(
    state: &AppState,
    session: &AdminSession,
    notice: Option<&str>,
) -> Result<UsersPage, PageError> {
    let (list, nav) = state
        .store
        .read(|conn| Ok((users::list(conn)?, view::projects_nav(conn)?)))
        .await?;
    Ok(UsersPage {
        layout: Layout::new(session, "Users", "users")
            .with_projects(nav)
            .notice(notice),
        users: list
            .into_iter()
            .map(|u| UserRow {
                id: u.user.id,
                me: u.user.id == session.user.id,
                email: u.user.email,
                role: u.user.role.as_str(),
                disabled: u.user.disabled,
                temporary: u.must_change_password,
                created: view::when(u.created_at),
            })
            .collect(),
        errors: FieldErrors::default(),
        email: String::new(),
        role: "viewer".to_owned(),
    })
}

async fn page(
    req: HttpRequest,
    session: AdminSession,
    query: web::Query<NoticeQuery>,
) -> Result<HttpResponse, PageError> {
    session.require(Role::Admin)?;
    let state = session::state(&req)?;
    ok(&view(&state, &session, query.notice.as_deref()).await?)
}

async fn create(req: HttpRequest, posted: Posted) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    let form = &posted.form;
    let email_input = form.text("email").to_owned();
    let role_text = form.text("role").to_owned();
    let temporary = form.get("password").unwrap_or("").to_owned();
    let mut errors = FieldErrors::default();
    let email = password::parse_email(&email_input)
        .map_err(|e| errors.add("email", e.to_string()))
        .ok();
    let role = Role::parse(&role_text);
    if role.is_none() {
        errors.add("role", "Choose admin, editor or viewer.");
    }
    if let Err(e) = password::check_new(&temporary) {
        errors.add("password", e.to_string());
    }
    if let (Some(email), Some(role), true) = (email, role, errors.is_empty()) {
        let slot = super::account::hashing_slot(&state).map_err(|e| e.json(posted.json))?;
        let hash = web::block(move || slot.hash(&temporary))
            .await
            .map_err(PageError::internal)?;
        let actor = posted.session.actor();
        let result = state
            .write(move |tx| {
                users::invite(tx, &actor, &email, role, &hash)?;
                Ok(((), Changes::default()))
            })
            .await;
        match result {
            Ok(()) => return Ok(see_other("/users?notice=created")),
            Err(e) => errors = FieldErrors::from_store(e, "email")?,
        }
    }
    let mut page = view(&state, &posted.session, None).await?;
    page.errors = errors;
    page.email = email_input;
    page.role = role_text;
    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

async fn update(req: HttpRequest, posted: Posted, path: web::Path<i64>) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    let id = path.into_inner();
    let role = match posted.form.get("role") {
        Some(r) => Some(
            Role::parse(r).ok_or_else(|| PageError::bad_request("role must be admin, editor or viewer"))?,
        ),
        None => None,
    };
    let disabled = match posted.form.get("disabled") {
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(PageError::bad_request("disabled must be true or false")),
        None => None,
    };
    if role.is_none() && disabled.is_none() {
        return Err(PageError::bad_request("Nothing to change."));
    }
    let actor = posted.session.actor();
    let result = state
        .write(move |tx| {
            users::change(tx, &actor, id, role, disabled)?;
            Ok(((), Changes::default()))
        })
        .await;
    match result {
        Ok(()) => Ok(see_other("/users?notice=saved")),
        Err(StoreError::Conflict { message }) => {
            let mut page = view(&state, &posted.session, None).await?;
            page.errors.add("", message);
            render(StatusCode::CONFLICT, &page)
        }
        Err(e) => Err(e.into()),
    }
}
