//! Shared test helpers: a temp-dir data dir, the real app through `build_app`, tokens, a real
//! server on a loopback socket, forms as a browser submits them, and the repository's paths,
//! free ports and the tools some tests run (Chromium, Node, nginx…).

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Once;

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

// ---------------------------------------------------------------------------------------------
// Forms as a browser submits them, and a browser over a real socket (issue 12's suites).

/// One `<form>` of a page: its method, its action and the fields a browser would send if it
/// were submitted untouched.
#[derive(Debug, Clone)]
pub struct HtmlForm {
    pub method: String,
    pub action: String,
    pub fields: Vec<(String, String)>,
}

/// Every form of `html` (outside `<template>`s), with the fields a browser would submit: the
/// HTML form-submission algorithm for the controls the pages use — named, enabled controls
/// (not inside a disabled fieldset), checked boxes only (value `on` by default), each select's
/// selected option (the first when none is), a text input's value without line breaks (value
/// sanitization), a textarea's text (the parser drops a newline right after `<textarea>`),
/// and every line break sent as CR LF.
pub fn html_forms(html: &str) -> Vec<HtmlForm> {
    use scraper::{ElementRef, Html, Selector};
    let document = Html::parse_document(html);
    let forms = Selector::parse("form").expect("selector");
    let controls = Selector::parse("input, select, textarea").expect("selector");
    let options = Selector::parse("option").expect("selector");
    let in_template = |e: &ElementRef<'_>| {
        e.ancestors()
            .any(|a| a.value().as_element().is_some_and(|el| el.name() == "template"))
    };
    let disabled = |e: &ElementRef<'_>| {
        e.value().attr("disabled").is_some()
            || e.ancestors().any(|a| {
                a.value()
                    .as_element()
                    .is_some_and(|el| el.name() == "fieldset" && el.attr("disabled").is_some())
            })
    };
    let crlf = |s: &str| s.replace("\r\n", "\n").replace('\r', "\n").replace('\n', "\r\n");
    let mut out = Vec::new();
    for form in document.select(&forms).filter(|f| !in_template(f)) {
        let mut fields = Vec::new();
        for control in form.select(&controls) {
            let element = control.value();
            let Some(name) = element.attr("name") else {
                continue;
            };
            if in_template(&control) || disabled(&control) {
                continue;
            }
            let value = match element.name() {
                "input" => {
                    let kind = element.attr("type").unwrap_or("text").to_ascii_lowercase();
                    let value = element.attr("value").unwrap_or("");
                    match kind.as_str() {
                        "checkbox" | "radio" if element.attr("checked").is_none() => continue,
                        "checkbox" | "radio" => element.attr("value").unwrap_or("on").to_owned(),
                        "submit" | "button" | "reset" | "image" | "file" => continue,
                        "hidden" => value.to_owned(),
                        _ => value.replace(['\r', '\n'], ""),
                    }
                }
                "textarea" => control.text().collect::<String>(),
                "select" => {
                    let all: Vec<ElementRef<'_>> = control.select(&options).collect();
                    let chosen = all
                        .iter()
                        .rev()
                        .find(|o| o.value().attr("selected").is_some())
                        .or_else(|| all.iter().find(|o| o.value().attr("disabled").is_none()));
                    let Some(option) = chosen else { continue };
                    match option.value().attr("value") {
                        Some(v) => v.to_owned(),
                        None => option
                            .text()
                            .collect::<String>()
                            .split_ascii_whitespace()
                            .collect::<Vec<_>>()
                            .join(" "),
                    }
                }
                _ => continue,
            };
            fields.push((crlf(name), crlf(&value)));
        }
        out.push(HtmlForm {
            method: form.value().attr("method").unwrap_or("get").to_ascii_lowercase(),
            action: form.value().attr("action").unwrap_or("").to_owned(),
            fields,
        });
    }
    out
}

/// The form of `html` whose action is `action`.
pub fn html_form(html: &str, action: &str) -> HtmlForm {
    html_forms(html)
        .into_iter()
        .find(|f| f.action == action)
        .unwrap_or_else(|| panic!("no form with action {action:?} in:\n{html}"))
}

/// What a [`WebBrowser`] got back.
#[derive(Debug)]
pub struct WebPage {
    pub status: u16,
    pub location: String,
    pub body: String,
}

/// A browser without JavaScript over a real socket: keeps cookies, sends `Origin` with posts,
/// follows no redirect. One server for many requests, so suites of thousands stay fast.
pub struct WebBrowser {
    pub base: String,
    http: reqwest::Client,
    pub cookies: std::collections::BTreeMap<String, String>,
}

impl WebBrowser {
    pub fn new(server: &RealServer) -> WebBrowser {
        WebBrowser {
            base: server.url.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("HTTP client"),
            cookies: std::collections::BTreeMap::default(),
        }
    }

    pub async fn get(&mut self, path: &str) -> WebPage {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    /// Posts fields as `application/x-www-form-urlencoded`, as a browser does.
    pub async fn post(&mut self, path: &str, fields: &[(String, String)]) -> WebPage {
        let body = serde_urlencoded::to_string(fields).expect("encode form");
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("origin", self.base.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(request).await
    }

    /// Signs in with the sign-in form.
    pub async fn sign_in(&mut self, email: &str, password: &str) {
        let page = self.get("/sign-in").await;
        let mut form = html_form(&page.body, "/sign-in").fields;
        for (name, value) in &mut form {
            match name.as_str() {
                "email" => email.clone_into(value),
                "password" => password.clone_into(value),
                _ => {}
            }
        }
        let page = self.post("/sign-in", &form).await;
        assert_eq!(page.status, 303, "sign-in: {}", page.body);
    }

    async fn send(&mut self, mut request: reqwest::RequestBuilder) -> WebPage {
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.expect("request");
        for value in response.headers().get_all("set-cookie") {
            let value = value.to_str().expect("cookie header");
            let pair = value.split(';').next().expect("cookie pair");
            let (name, v) = pair.split_once('=').expect("cookie name=value");
            if value.contains("Max-Age=0") || v.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), v.to_owned());
            }
        }
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response.text().await.expect("body");
        WebPage {
            status,
            location,
            body,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The repository, ports, and the tools a few tests run.

/// The repository's root (the server package's directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A loopback port that was free a moment ago (for a child process that binds it itself).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// The `value` of the first input named `name` in some HTML, as the pages write it
/// (`name="…" value="…"`).
pub fn field_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// What a few tests run besides the server, all installed by `scripts/install-test-deps.sh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `chromium` on `PATH` (Debian's package), driven by puppeteer-core.
    Chromium,
    /// `node` on `PATH`.
    Node,
    /// The npm packages of `tests/js` (puppeteer-core, the OpenFeature SDKs).
    JsPackages,
    /// `nginx` (Debian's package, in `/usr/sbin`).
    Nginx,
    /// `curl` on `PATH`.
    Curl,
    /// `python3` on `PATH`.
    Python,
    /// The Python OFREP client's venv, `.venv-tests`.
    PythonVenv,
}

impl Tool {
    const ALL: [Tool; 7] = [
        Tool::Chromium,
        Tool::Node,
        Tool::JsPackages,
        Tool::Nginx,
        Tool::Curl,
        Tool::Python,
        Tool::PythonVenv,
    ];

    /// Where the tool is, if it is installed.
    pub fn path(self) -> Option<PathBuf> {
        let on_path = |name: &str| {
            let paths = std::env::var_os("PATH")?;
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        };
        let existing = |p: PathBuf| p.exists().then_some(p);
        match self {
            Tool::Chromium => on_path("chromium"),
            Tool::Node => on_path("node"),
            Tool::JsPackages => {
                let modules = root().join("tests/js/node_modules");
                [
                    "puppeteer-core",
                    "@openfeature/web-sdk",
                    "@openfeature/server-sdk",
                ]
                .iter()
                .all(|package| modules.join(package).join("package.json").is_file())
                .then_some(modules)
            }
            // nginx lives in /usr/sbin, which a user's PATH often lacks.
            Tool::Nginx => on_path("nginx").or_else(|| existing(PathBuf::from("/usr/sbin/nginx"))),
            Tool::Curl => on_path("curl"),
            Tool::Python => on_path("python3"),
            Tool::PythonVenv => existing(root().join(".venv-tests/bin/python")),
        }
    }

    /// The tool's path; the test checked [`tools_installed`] first.
    pub fn expect(self) -> PathBuf {
        self.path()
            .unwrap_or_else(|| panic!("{} is missing: {INSTALL}", self.describe()))
    }

    fn describe(self) -> &'static str {
        match self {
            Tool::Chromium => "chromium (on PATH)",
            Tool::Node => "node (on PATH)",
            Tool::JsPackages => "the npm packages of tests/js",
            Tool::Nginx => "nginx",
            Tool::Curl => "curl (on PATH)",
            Tool::Python => "python3 (on PATH)",
            Tool::PythonVenv => "the Python venv .venv-tests",
        }
    }
}

const INSTALL: &str = "run `bash scripts/install-test-deps.sh`";

/// Set (to anything but `0`) by `scripts/test.sh`, which CI runs: a missing tool fails the test.
pub const REQUIRE_ALL_TOOLS: &str = "FLAGSTAFF_REQUIRE_ALL_TOOLS";

/// Whether every tool in `tools` is installed. When one is missing the test must return at
/// once (it is skipped) — unless `FLAGSTAFF_REQUIRE_ALL_TOOLS` is set, as `scripts/test.sh` does,
/// and then it fails here naming what is missing. Skips print one notice per run (per
/// `cargo test` process; per nextest run, whose tests are processes of their own) naming every
/// tool this machine lacks and the command that installs them.
#[must_use]
pub fn tools_installed(tools: &[Tool]) -> bool {
    let missing = |tools: &[Tool]| -> Option<String> {
        let names: Vec<&str> = tools
            .iter()
            .filter(|t| t.path().is_none())
            .map(|t| t.describe())
            .collect();
        (!names.is_empty()).then(|| names.join(", "))
    };
    let Some(needed) = missing(tools) else {
        return true;
    };
    let required = std::env::var(REQUIRE_ALL_TOOLS).is_ok_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "{needed} missing ({REQUIRE_ALL_TOOLS} is set, so this fails rather than skips): {INSTALL}"
    );
    static NOTICE: Once = Once::new();
    NOTICE.call_once(|| {
        // nextest runs each test in a process of its own: the first one to skip in a run says so.
        let first_in_run = match std::env::var("NEXTEST_RUN_ID") {
            Ok(run) => std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("skip-notice-{run}")))
                .is_ok(),
            Err(_) => true,
        };
        if first_in_run {
            let all = missing(&Tool::ALL).unwrap_or(needed);
            // Straight to stderr: libtest captures `eprintln!` of a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "\nSKIPPED: this machine lacks {all}; the tests that need them pass without \
                 running. To run them, {INSTALL}. (With {REQUIRE_ALL_TOOLS}=1, as scripts/test.sh \
                 sets for CI, a missing tool fails its tests instead.)\n"
            );
        }
    });
    false
}
