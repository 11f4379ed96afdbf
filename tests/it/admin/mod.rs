//! The admin pages through the real application (no browser): sign-in, sessions, CSRF and
//! Origin checks, roles, throttling, and each page's HTML. `browser` drives headless Chromium.

mod api_session;
mod browser;
mod form_fuzz;
mod manage;
mod pages;
mod redirects;
mod round_trip;
mod sign_in;
mod throttle;
mod tour;

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use flagstaff::build_app;
use flagstaff::store::Changes;
use flagstaff::store::users::{self, Role};

use crate::helpers::{TestApp, field_value};

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// Creates a user who can sign in with [`PASSWORD`]; returns the email.
pub fn user(app: &TestApp, email: &str, role: Role) -> String {
    let email = email.to_owned();
    let hash = flagstaff::password::hash(PASSWORD);
    app.state
        .write_blocking(move |tx| Ok((users::insert(tx, &email, role, &hash)?.email, Changes::default())))
        .expect("create user")
}

/// A page as the tests look at it.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn location(&self) -> &str {
        self.header("location").unwrap_or("")
    }

    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        field_value(&self.body, "csrf").unwrap_or_else(|| panic!("no csrf field in:\n{}", self.body))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A browser without JavaScript: keeps cookies, sends forms.
pub struct Agent<'a> {
    pub app: &'a TestApp,
    pub cookies: BTreeMap<String, String>,
    /// Sent as `Origin` with every POST (like a browser); `None` sends none.
    pub origin: Option<String>,
    pub peer: Option<std::net::SocketAddr>,
}

impl<'a> Agent<'a> {
    pub fn new(app: &'a TestApp) -> Agent<'a> {
        Agent {
            app,
            cookies: BTreeMap::new(),
            origin: Some("http://localhost:8080".to_owned()),
            peer: None,
        }
    }

    /// An agent signed in as `email` (with [`PASSWORD`]).
    pub async fn signed_in(app: &'a TestApp, email: &str) -> Agent<'a> {
        let mut agent = Agent::new(app);
        let page = agent.sign_in(email, PASSWORD).await;
        assert_eq!(
            page.status,
            StatusCode::SEE_OTHER,
            "sign-in failed: {}",
            page.body
        );
        agent
    }

    /// Opens the sign-in page and sends the form.
    pub async fn sign_in(&mut self, email: &str, password: &str) -> Page {
        let page = self.get("/sign-in").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let csrf = page.csrf();
        self.post(
            "/sign-in",
            &[
                ("csrf", &csrf),
                ("email", email),
                ("password", password),
                ("next", "/projects"),
            ],
        )
        .await
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, None, &[]).await
    }

    /// Posts a form (fields as given; add `csrf` yourself).
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(fields).expect("encode form");
        self.send(
            "POST",
            path,
            Some(body),
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await
    }

    /// Posts a form with the session's CSRF token taken from `page_path`.
    pub async fn post_with_csrf(&mut self, page_path: &str, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.get(page_path).await.csrf();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(path, &all).await
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Page {
        let app = actix_web::test::init_service(build_app(self.app.state.clone())).await;
        let mut req = actix_web::test::TestRequest::default()
            .method(method.parse().expect("method"))
            .uri(path)
            .insert_header(("host", "localhost:8080"));
        if let Some(peer) = self.peer {
            req = req.peer_addr(peer);
        }
        if method != "GET"
            && let Some(origin) = &self.origin
        {
            req = req.insert_header(("origin", origin.as_str()));
        }
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req = req.insert_header(("cookie", cookie));
        }
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        if let Some(body) = body {
            req = req.set_payload(body);
        }
        let resp = actix_web::test::call_service(&app, req.to_request()).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        for value in headers.get_all("set-cookie") {
            let value = value.to_str().expect("cookie header");
            let pair = value.split(';').next().expect("cookie pair");
            let (name, v) = pair.split_once('=').expect("cookie name=value");
            let removed = value.contains("Max-Age=0") || v.is_empty();
            if removed {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), v.to_owned());
            }
        }
        let bytes = actix_web::test::read_body(resp).await;
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }
}

/// A project with the default environments, created through the store as an admin would.
pub fn project(app: &TestApp, key: &str) {
    let key = key.to_owned();
    app.state
        .write_blocking(move |tx| {
            let new = flagstaff::store::projects::NewProject {
                key,
                name: String::new(),
                environments: None,
            };
            let (_, changes) =
                flagstaff::store::projects::create(tx, &flagstaff::store::audit::Actor::cli(), new)?;
            Ok(((), changes))
        })
        .expect("create project");
}
