//! Shared test helpers: a temp-dir data dir, the real app through `build_app`, tokens, and a
//! real server on a loopback socket.

#![allow(dead_code)]

use std::net::SocketAddr;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use flagstaff::config::Settings;
use flagstaff::store::users::{self, Role};
use flagstaff::store::{Changes, admin_tokens};
use flagstaff::{AppState, build_app};
use serde_json::Value;
use tempfile::TempDir;

/// A data dir in a temp folder with the application opened on it.
pub struct TestApp {
    pub dir: TempDir,
    pub state: AppState,
}

impl TestApp {
    pub fn new() -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = AppState::open(Settings::with_data_dir(dir.path())).expect("open app state");
        TestApp { dir, state }
    }

    /// Closes the application and opens it again on the same data dir (a restart).
    pub fn restart(self) -> TestApp {
        let TestApp { dir, state } = self;
        drop(state);
        let state = AppState::open(Settings::with_data_dir(dir.path())).expect("reopen app state");
        TestApp { dir, state }
    }

    /// Creates a user with `role` (email `<role>-<n>@example.test`) and returns a new admin
    /// token for it. The user has no password: it can only use tokens.
    pub fn token(&self, role: Role) -> String {
        self.state
            .write_blocking(move |tx| {
                let n: i64 = tx.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
                let email = format!("{}-{n}@example.test", role.as_str());
                // "!" is not a PHC string, so no password ever verifies against it.
                let user = users::insert(tx, &email, role, "!")?;
                Ok((admin_tokens::create(tx, user.id, "tests")?, Changes::default()))
            })
            .expect("create token")
    }

    /// Sends a request through the real application (no socket) and returns status, headers
    /// and the body parsed as JSON (`Value::Null` when empty or not JSON).
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        self.request(method, path, token, body, &[]).await
    }

    /// Like [`TestApp::call`] with extra headers.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let app = actix_web::test::init_service(build_app(self.state.clone())).await;
        let mut req = actix_web::test::TestRequest::default()
            .method(method.parse().expect("HTTP method"))
            .uri(path);
        if let Some(token) = token {
            req = req.insert_header(("Authorization", format!("Bearer {token}")));
        }
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        if let Some(body) = body {
            req = req.set_json(body);
        }
        let resp = actix_web::test::call_service(&app, req.to_request()).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = actix_web::test::read_body(resp).await;
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body: json,
            bytes: bytes.to_vec(),
        }
    }
}

/// A response as tests look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub bytes: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The real application on a loopback socket, for SSE and third-party clients.
pub struct RealServer {
    pub addr: SocketAddr,
    pub url: String,
    handle: ServerHandle,
}

impl RealServer {
    /// Starts `build_app(state)` on 127.0.0.1 with an OS-chosen port, on the current actix
    /// runtime (use inside `#[actix_web::test]`).
    pub fn start(state: &AppState) -> RealServer {
        let state = state.clone();
        let server = actix_web::HttpServer::new(move || build_app(state.clone()))
            .workers(2)
            // As `flagstaff serve`: a client that closes its side is gone (ends its SSE stream).
            .h1_allow_half_closed(false)
            .disable_signals()
            .shutdown_timeout(1)
            .bind(("127.0.0.1", 0))
            .expect("bind loopback");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        RealServer {
            addr,
            url: format!("http://{addr}"),
            handle,
        }
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

impl TestApp {
    /// Like [`TestApp::new`] with settings changed by `change` (e.g. a short stream keep-alive).
    /// [`TestApp::restart`] goes back to the defaults.
    pub fn with_settings(change: impl FnOnce(&mut Settings)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings::with_data_dir(dir.path());
        change(&mut settings);
        let state = AppState::open(settings).expect("open app state");
        TestApp { dir, state }
    }
}
