//! Signing in and out, the first admin's setup link, and the signed-in user's own account
//! (password change, sessions).
//!
//! Every password check — signing in, the current password of a password change, the setup
//! link — first reserves an attempt with [`crate::throttle`] (per account *and* client address,
//! and per address) and takes a hashing slot; a refusal is `429 Too Many Requests` with
//! `Retry-After`, answered without looking at the password.

use std::sync::LazyLock;

use actix_web::http::StatusCode;
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use super::session::{
    self, AdminSession, Posted, SESSION_COOKIE, SIGN_IN_COOKIE, check_origin, client_address, read_form,
    safe_next, same_secret,
};
use super::view::{self, FieldErrors, Layout};
use super::{PageError, assets, ok, render, see_other};
use crate::AppState;
use crate::keys;
use crate::password;
use crate::store::audit::{self, Actor};
use crate::store::users::{self, Role};
use crate::store::{Changes, now_ms, sessions};
use crate::throttle::{Attempt, HashingSlot, Scope, Subject, Throttled, WINDOW_MS};

/// Verified when the email is unknown, so an unknown email takes as long as a wrong password.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| password::hash("flagstaff dummy password"));

pub fn configure_sign_in(cfg: &mut ServiceConfig) {
    cfg.route("", web::get().to(sign_in_page))
        .route("", web::post().to(sign_in));
}

pub fn configure_sign_out(cfg: &mut ServiceConfig) {
    cfg.route("", web::post().to(sign_out));
}

pub fn configure_setup(cfg: &mut ServiceConfig) {
    cfg.route("", web::get().to(setup_page))
        .route("", web::post().to(setup));
}

pub fn configure_account(cfg: &mut ServiceConfig) {
    cfg.route("", web::get().to(account_page))
        .route("/password", web::post().to(change_password))
        .route("/sessions/revoke-others", web::post().to(revoke_other_sessions));
}

#[derive(Template)]
#[template(path = "admin/sign_in.html")]
struct SignInPage<'a> {
    css: &'static str,
    csrf: &'a str,
    email: &'a str,
    next: &'a str,
    error: Option<String>,
}

#[derive(serde::Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn sign_in_response(
    state: &AppState,
    req: &HttpRequest,
    status: StatusCode,
    email: &str,
    next: &str,
    error: Option<String>,
) -> Result<HttpResponse, PageError> {
    let csrf = keys::generate("");
    let page = SignInPage {
        css: assets::css_url(),
        csrf: &csrf,
        email,
        next,
        error,
    };
    let mut resp = render(status, &page)?;
    resp.add_cookie(&session::sign_in_cookie(state, req, csrf.clone()))
        .map_err(PageError::internal)?;
    Ok(resp)
}

async fn sign_in_page(
    req: HttpRequest,
    query: web::Query<NextQuery>,
    current: Option<AdminSession>,
) -> Result<HttpResponse, PageError> {
    let next = safe_next(query.next.as_deref());
    if current.is_some() {
        return Ok(see_other(&next));
    }
    let state = session::state(&req)?;
    if state.store.read(users::count).await? == 0 {
        return ok_setup_hint(&state, &req);
    }
    sign_in_response(&state, &req, StatusCode::OK, "", &next, None)
}

fn ok_setup_hint(state: &AppState, req: &HttpRequest) -> Result<HttpResponse, PageError> {
    sign_in_response(
        state,
        req,
        StatusCode::OK,
        "",
        "/projects",
        Some(
            "There are no users yet. Open the setup link printed in the server's log to create the \
             first admin, or run `flagstaff user create`."
                .to_owned(),
        ),
    )
}

fn throttled(refused: Throttled, subject: &Subject) -> PageError {
    let secs = refused.retry_after_secs();
    let wait = if secs < 60 {
        format!("{secs} seconds")
    } else {
        let minutes = secs.div_ceil(60);
        format!("{minutes} {}", if minutes == 1 { "minute" } else { "minutes" })
    };
    let what = match subject {
        Subject::Account(_) => "sign-ins",
        Subject::SetupLink => "uses of setup links",
    };
    let who = match (refused.scope, subject) {
        (Scope::Subject, Subject::Account(_)) => "for this account from your address",
        _ => "from your address",
    };
    PageError::Throttled {
        message: format!("Too many failed {what} {who}. Wait {wait}, then try again."),
        retry_after: secs,
    }
}

fn busy() -> PageError {
    PageError::Throttled {
        message: "The server is busy checking other passwords. Try again in a second.".to_owned(),
        retry_after: 1,
    }
}

/// Reserves a password attempt at `subject` from `client` (loading the failures persisted for
/// them the first time they are seen), or refuses it with a 429.
async fn reserve(state: &AppState, subject: &Subject, client: &str) -> Result<Attempt, PageError> {
    if !state.sign_in.knows(subject, client) {
        let email = subject.persisted_email().map(str::to_owned);
        let lookup_client = client.to_owned();
        let since = state.sign_in.now_ms() - WINDOW_MS;
        let (on_subject, on_client) = state
            .store
            .read(move |conn| sessions::recent_failures(conn, email.as_deref(), &lookup_client, since))
            .await?;
        state.sign_in.remember(subject, client, on_subject, on_client);
    }
    state.sign_in.reserve(subject, client, state.sign_in.now_ms()).map_err(|refused| {
        tracing::warn!(?subject, %client, wait_ms = refused.wait_ms, "password attempt refused: too many failures");
        throttled(refused, subject)
    })
}

/// A password hashing slot, or a 429 when all are taken.
pub(crate) fn hashing_slot(state: &AppState) -> Result<HashingSlot, PageError> {
    state.sign_in.hashing_slot().map_err(|_| busy())
}

/// Settles a failed attempt: in memory at once, then persisted (so a restart remembers it).
async fn record_failure(
    state: &AppState,
    attempt: Attempt,
    subject: &Subject,
    client: &str,
) -> Result<(), PageError> {
    let at = state.sign_in.now_ms();
    attempt.failed(at);
    if let Some(email) = subject.persisted_email() {
        let (email, client) = (email.to_owned(), client.to_owned());
        state
            .store
            .operational(move |tx| sessions::record_failure(tx, &email, &client, at, at - WINDOW_MS))
            .await?;
    }
    Ok(())
}

async fn sign_in(req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, PageError> {
    check_origin(&req)?;
    let state = session::state(&req)?;
    let form = read_form(&req, &body)?;
    let email = form.text("email").to_owned();
    let password = form.get("password").unwrap_or("").to_owned();
    let next = safe_next(form.get("next"));
    let cookie = req
        .cookie(SIGN_IN_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    if cookie.is_empty() || !same_secret(&cookie, form.text("csrf")) {
        let error = "The sign-in form had expired. Please sign in again.".to_owned();
        return sign_in_response(&state, &req, StatusCode::FORBIDDEN, &email, &next, Some(error));
    }
    if email.is_empty() || password.is_empty() {
        let error = "Enter your email and your password.".to_owned();
        return sign_in_response(&state, &req, StatusCode::BAD_REQUEST, &email, &next, Some(error));
    }

    let client = client_address(&req);
    let subject = Subject::account(&email);
    let attempt = reserve(&state, &subject, &client).await?;

    let lookup = email.clone();
    let credentials = state
        .store
        .read(move |conn| sessions::credentials(conn, &lookup))
        .await?;
    let hash = credentials.as_ref().map(|c| c.password_hash.clone());
    let slot = hashing_slot(&state)?;
    let verified = web::block(move || slot.verify(&password, hash.as_deref().unwrap_or(&DUMMY_HASH)))
        .await
        .map_err(PageError::internal)?;
    let user = credentials.filter(|c| verified && !c.user.disabled);

    let Some(credentials) = user else {
        record_failure(&state, attempt, &subject, &client).await?;
        tracing::info!(%email, %client, "sign-in failed");
        let error = "Wrong email or password.".to_owned();
        return sign_in_response(&state, &req, StatusCode::UNAUTHORIZED, &email, &next, Some(error));
    };
    attempt.succeeded();

    let max_ms = session::max_ms(&state);
    let (user_id, user_email) = (credentials.user.id, credentials.user.email.clone());
    let new = state
        .store
        .operational(move |tx| {
            sessions::clear_failures(tx, &user_email, &client)?;
            sessions::create(tx, user_id, max_ms)
        })
        .await?;
    tracing::info!(email = %credentials.user.email, "signed in");
    let location = if credentials.must_change_password {
        "/account?reason=temporary"
    } else {
        next.as_str()
    };
    let mut resp = see_other(location);
    resp.add_cookie(&session::session_cookie(&state, &req, new.token))
        .map_err(PageError::internal)?;
    resp.add_removal_cookie(&session::sign_in_cookie(&state, &req, String::new()))
        .map_err(PageError::internal)?;
    Ok(resp)
}

async fn sign_out(req: HttpRequest, posted: Posted) -> Result<HttpResponse, PageError> {
    let state = session::state(&req)?;
    let id = posted.session.id;
    state
        .store
        .operational(move |tx| sessions::revoke(tx, id))
        .await?;
    let mut resp = see_other("/sign-in");
    resp.add_cookie(&session::removal_cookie(&state, &req, SESSION_COOKIE))
        .map_err(PageError::internal)?;
    Ok(resp)
}

#[derive(Template)]
#[template(path = "admin/setup.html")]
struct SetupPage<'a> {
    css: &'static str,
    token: &'a str,
    email: &'a str,
    errors: FieldErrors,
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn setup_link_invalid() -> PageError {
    PageError::forbidden(
        "This setup link is not valid: it was used already, has expired, or was replaced by a newer \
         one. Restart the server to print a new link in its log.",
    )
}

async fn setup_page(req: HttpRequest, query: web::Query<TokenQuery>) -> Result<HttpResponse, PageError> {
    let state = session::state(&req)?;
    let token = query.token.clone().unwrap_or_default();
    let check = token.clone();
    let (users, valid) = state
        .store
        .read(move |conn| Ok((users::count(conn)?, sessions::setup_token_valid(conn, &check)?)))
        .await?;
    if users > 0 {
        return Ok(see_other("/sign-in"));
    }
    if !valid {
        return Err(setup_link_invalid());
    }
    ok(&SetupPage {
        css: assets::css_url(),
        token: &token,
        email: "",
        errors: FieldErrors::default(),
    })
}

/// Checks a new password and its confirmation; errors go to `field` / `confirm_field`.
fn check_new_password(
    errors: &mut FieldErrors,
    password: &str,
    confirm: &str,
    field: &str,
    confirm_field: &str,
) {
    if let Err(e) = password::check_new(password) {
        errors.add(field, e.to_string());
    } else if password != confirm {
        errors.add(confirm_field, "The two passwords differ.");
    }
}

async fn setup(req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, PageError> {
    check_origin(&req)?;
    let state = session::state(&req)?;
    let form = read_form(&req, &body)?;
    let token = form.text("token").to_owned();
    let email_input = form.text("email").to_owned();
    let password = form.get("password").unwrap_or("").to_owned();
    let mut errors = FieldErrors::default();
    let email = match password::parse_email(&email_input) {
        Ok(email) => email,
        Err(e) => {
            errors.add("email", e.to_string());
            String::new()
        }
    };
    check_new_password(
        &mut errors,
        &password,
        form.get("confirm").unwrap_or(""),
        "password",
        "confirm",
    );
    if !errors.is_empty() {
        let page = SetupPage {
            css: assets::css_url(),
            token: &token,
            email: &email_input,
            errors,
        };
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    // The link is checked before any password is hashed, and guessing links is throttled like
    // guessing passwords.
    let client = client_address(&req);
    let attempt = reserve(&state, &Subject::SetupLink, &client).await?;
    let check = token.clone();
    let valid = state
        .store
        .read(move |conn| Ok(users::count(conn)? == 0 && sessions::setup_token_valid(conn, &check)?))
        .await?;
    if !valid {
        record_failure(&state, attempt, &Subject::SetupLink, &client).await?;
        tracing::warn!(%client, "setup link refused");
        return Err(setup_link_invalid());
    }
    let slot = hashing_slot(&state)?;
    let hash = web::block(move || slot.hash(&password))
        .await
        .map_err(PageError::internal)?;
    attempt.succeeded();
    let max_ms = session::max_ms(&state);
    let created = state
        .write(move |tx| {
            if users::count(tx)? > 0 || !sessions::use_setup_token(tx, &token)? {
                return Ok((None, Changes::default()));
            }
            let user = users::insert(tx, &email, Role::Admin, &hash)?;
            let after = serde_json::json!({"email": user.email, "role": "admin"});
            let actor = Actor::user(user.id, &user.email);
            audit::record(
                tx,
                &actor,
                "create",
                users::audit_entity(&user.email),
                None,
                Some(&after),
            )?;
            Ok((Some(user.id), Changes::default()))
        })
        .await?;
    let Some(user_id) = created else {
        return Err(setup_link_invalid());
    };
    // The admin exists (published): its first session goes to the operational database.
    let new = state
        .store
        .operational(move |tx| sessions::create(tx, user_id, max_ms))
        .await?;
    tracing::info!(email = %email_input, "created the first admin with the setup link");
    let mut resp = see_other("/projects");
    resp.add_cookie(&session::session_cookie(&state, &req, new.token))
        .map_err(PageError::internal)?;
    Ok(resp)
}

#[derive(Template)]
#[template(path = "admin/account.html")]
struct AccountPage {
    layout: Layout,
    temporary: bool,
    errors: FieldErrors,
    sessions: Vec<SessionRow>,
}

struct SessionRow {
    current: bool,
    started: String,
    last_seen: String,
    expires: String,
}

#[derive(serde::Deserialize)]
struct AccountQuery {
    reason: Option<String>,
    notice: Option<String>,
}

async fn account_view(
    state: &AppState,
    session: &AdminSession,
    notice: Option<&str>,
    errors: FieldErrors,
) -> Result<AccountPage, PageError> {
    let user_id = session.user.id;
    let idle_ms = session::idle_ms(state);
    let (projects, list) = state
        .store
        .read(move |conn| Ok((view::projects_nav(conn)?, sessions::list(conn, user_id, idle_ms)?)))
        .await?;
    let now = now_ms();
    let sessions = list
        .into_iter()
        .map(|s| SessionRow {
            current: s.id == session.id,
            started: view::when(s.created_at),
            last_seen: view::ago(s.last_seen_at, now),
            expires: view::when(s.expires_at),
        })
        .collect();
    Ok(AccountPage {
        layout: Layout::new(session, "Your account", "account")
            .with_projects(projects)
            .notice(notice),
        temporary: session.must_change_password,
        errors,
        sessions,
    })
}

async fn account_page(
    req: HttpRequest,
    session: AdminSession,
    query: web::Query<AccountQuery>,
) -> Result<HttpResponse, PageError> {
    let state = session::state(&req)?;
    let mut page = account_view(&state, &session, query.notice.as_deref(), FieldErrors::default()).await?;
    page.temporary |= query.reason.as_deref() == Some("temporary") && session.must_change_password;
    ok(&page)
}

async fn change_password(req: HttpRequest, posted: Posted) -> Result<HttpResponse, PageError> {
    let state = session::state(&req)?;
    let Posted { session, form, .. } = posted;
    let current = form.get("current").unwrap_or("").to_owned();
    let new_password = form.get("password").unwrap_or("").to_owned();
    let mut errors = FieldErrors::default();
    check_new_password(
        &mut errors,
        &new_password,
        form.get("confirm").unwrap_or(""),
        "password",
        "confirm",
    );
    if current == new_password && errors.is_empty() {
        errors.add("password", "Choose a password different from the current one.");
    }

    let client = client_address(&req);
    let subject = Subject::account(&session.user.email);
    let attempt = reserve(&state, &subject, &client).await?;
    let user_id = session.user.id;
    let hash = state
        .store
        .read(move |conn| sessions::password_hash(conn, user_id))
        .await?
        .unwrap_or_default();
    let slot = hashing_slot(&state)?;
    let (slot, verified) = web::block(move || {
        let verified = slot.verify(&current, &hash);
        (slot, verified)
    })
    .await
    .map_err(PageError::internal)?;
    if verified {
        attempt.succeeded();
    } else {
        record_failure(&state, attempt, &subject, &client).await?;
        errors.0.insert(
            0,
            (
                "current".to_owned(),
                "This is not your current password.".to_owned(),
            ),
        );
    }
    if !errors.is_empty() {
        let mut page = account_view(&state, &session, None, errors).await?;
        page.temporary = session.must_change_password;
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let hash = web::block(move || slot.hash(&new_password))
        .await
        .map_err(PageError::internal)?;
    let (session_id, actor, user_email) = (session.id, session.actor(), session.user.email.clone());
    // The other sessions end first (operational database), then the password changes (published):
    // a crash between the two leaves the old password with everyone else signed out, never the
    // new password with the others still in.
    state
        .store
        .operational(move |tx| sessions::revoke_all(tx, user_id, Some(session_id)))
        .await?;
    state
        .write(move |tx| {
            sessions::set_password(tx, user_id, &hash)?;
            audit::record(
                tx,
                &actor,
                "change_password",
                users::audit_entity(&user_email),
                None,
                None,
            )?;
            Ok(((), Changes::default()))
        })
        .await?;
    Ok(see_other("/account?notice=password"))
}

async fn revoke_other_sessions(req: HttpRequest, posted: Posted) -> Result<HttpResponse, PageError> {
    let state = session::state(&req)?;
    let (user_id, keep) = (posted.session.user.id, posted.session.id);
    state
        .store
        .operational(move |tx| sessions::revoke_all(tx, user_id, Some(keep)))
        .await?;
    Ok(see_other("/account?notice=signed-out-others"))
}
