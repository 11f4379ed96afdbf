//! The Rust SDK (`sdk/rust`, crate `flagstaff-sdk`) against the real `flagstaff` binary on a
//! loopback port: a toggle through the API reaches it over the stream; it starts from its cache
//! file while the server is down and catches up when it comes; it resumes after the server is
//! killed and restarted; polling delivers while the stream is blocked; its counts reach the
//! server; its OpenFeature provider; and (in `parity`) its evaluations equal the server's OFREP
//! answers over a generated corpus.
//!
//! Deadlines here are how long a test waits for something that must happen, never a measure
//! of speed: `toggle_latency` prints the figures for BENCHMARKS.md
//! (`FLAGSTAFF_SDK_LATENCY_SAMPLES=500 cargo test --release --test it sdk_rust::toggle_latency -- --nocapture`).

#[path = "sdk_rust_parity.rs"]
mod parity;

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flagstaff_sdk::{Client, ClientBuilder, Error, FlagstaffProvider, Reason, Source};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_flagstaff");

/// How long a test waits for something that must happen (generous: the machine is shared).
const PATIENCE: Duration = Duration::from_secs(20);

/// A `flagstaff serve` child process on a fixed loopback port and data dir.
pub struct Server {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    env: Vec<(String, String)>,
    pub url: String,
}

/// `flagstaff` with a clean environment (no FLAGSTAFF_* from the machine running the tests).
pub fn flagstaff(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FLAGSTAFF_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("FLAGSTAFF_DATA_DIR", dir).env("NO_COLOR", "1");
    cmd
}

impl Server {
    /// Starts the server on `port` with `dir` and waits until `/healthz` answers.
    pub async fn start(dir: &Path, port: u16, env: &[(&str, &str)]) -> Server {
        let mut server = Server {
            child: None,
            dir: dir.to_owned(),
            port,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            url: format!("http://127.0.0.1:{port}"),
        };
        server.restart().await;
        server
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Starts the process again (after [`Server::kill`]) on the same port and data dir.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("server log");
        let mut cmd = flagstaff(&self.dir);
        cmd.args(["serve", "--bind", &format!("127.0.0.1:{}", self.port)])
            .env("FLAGSTAFF_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        let mut child = cmd.spawn().expect("spawn flagstaff serve");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().expect("child status") {
                panic!("flagstaff serve exited with {status}: {}", self.log());
            }
            if let Ok(resp) = http.get(format!("{}/healthz", self.url)).send().await
                && resp.status() == StatusCode::OK
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "flagstaff serve did not answer /healthz: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = Some(child);
    }

    /// Kills the process (SIGKILL, by its PID) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill flagstaff serve");
            child.wait().expect("reap flagstaff serve");
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A data dir with an admin, a running server, a project imported and a server key.
pub struct Setup {
    pub dir: TempDir,
    pub server: Server,
    pub admin: String,
    pub key: String,
    pub http: reqwest::Client,
}

impl Setup {
    pub async fn new(document: Value) -> Setup {
        Setup::with_env(document, &[]).await
    }

    pub async fn with_env(document: Value, env: &[(&str, &str)]) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = flagstaff(dir.path());
        cmd.args([
            "user",
            "create",
            "--email",
            "sdk@example.test",
            "--role",
            "admin",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn user create");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"correct horse battery staple\n")
            .expect("write password");
        let out = child.wait_with_output().expect("user create");
        assert!(
            out.status.success(),
            "user create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = flagstaff(dir.path())
            .args([
                "token",
                "create",
                "--email",
                "sdk@example.test",
                "--name",
                "sdk-tests",
            ])
            .output()
            .expect("token create");
        assert!(
            out.status.success(),
            "token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let admin = String::from_utf8(out.stdout).expect("utf-8").trim().to_owned();

        let server = Server::start(dir.path(), free_port(), env).await;
        let mut setup = Setup {
            dir,
            server,
            admin,
            key: String::new(),
            http: reqwest::Client::new(),
        };
        let (status, body) = setup.api(Method::POST, "/api/v1/import", Some(document)).await;
        assert!(status.is_success(), "import: {status} {body}");
        setup.key = setup.new_key("server").await;
        setup
    }

    /// A new key of `kind` for shop/production.
    pub async fn new_key(&self, kind: &str) -> String {
        let (status, body) = self
            .api(
                Method::POST,
                "/api/v1/projects/shop/environments/production/keys",
                Some(json!({"kind": kind, "name": format!("sdk tests {kind}")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "key: {body}");
        body["key"].as_str().expect("the key").to_owned()
    }

    pub async fn api(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.server.url))
            .bearer_auth(&self.admin);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("API request");
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Switches shop/production's `flag` on or off.
    pub async fn toggle(&self, flag: &str, enabled: bool) {
        let path = format!("/api/v1/projects/shop/flags/{flag}/environments/production");
        let (status, body) = self
            .api(Method::PATCH, &path, Some(json!({"enabled": enabled})))
            .await;
        assert_eq!(status, StatusCode::OK, "toggle {flag}: {body}");
    }

    /// A builder for this server and key, with delays short enough for tests.
    pub fn builder(&self) -> ClientBuilder {
        Client::builder(&self.server.url, &self.key)
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(400))
            .send_events(false)
    }

    pub fn cache_path(&self) -> PathBuf {
        self.dir.path().join("sdk-cache.json")
    }
}

/// The SDK suites' shop (the Python SDK's tests read the same file): every flag type, a
/// segment, a rule, targets, a prerequisite and a rollout, with hostile strings in names and values.
fn document() -> Value {
    serde_json::from_str(include_str!("../fixtures/sdk-shop.json")).expect("tests/fixtures/sdk-shop.json")
}

fn ctx(value: Value) -> flagstaff_sdk::Context {
    flagstaff_sdk::context(value)
}

/// Waits (up to [`PATIENCE`]) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The revision held in a cache file.
fn cached_revision(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).expect("the cache file exists");
    let file: Value = serde_json::from_str(&text).expect("the cache file is JSON");
    file["bundle"]["revision"].as_u64().expect("a revision")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toggle_through_the_api_reaches_the_sdk_over_the_stream() {
    let setup = Setup::new(document()).await;
    // Polling once an hour: only the stream can deliver within this test.
    let client = setup
        .builder()
        .poll_interval(Duration::from_secs(3600))
        .cache_file(setup.cache_path())
        .build()
        .await
        .expect("client");
    let status = client.status();
    assert_eq!(
        (status.project.as_str(), status.environment.as_str()),
        ("shop", "production")
    );
    assert_eq!(status.source, Source::Server(setup.server.url.clone()));
    assert_eq!(status.flags, 6);
    assert_eq!(
        cached_revision(&setup.cache_path()),
        status.revision,
        "the bundle is written to the cache file"
    );

    let acme = ctx(json!({"targetingKey": "u-9", "email": "ada@acme.com", "plan": "pro"}));
    let other = ctx(json!({"targetingKey": "u-2", "email": "bob@example.com"}));
    assert!(client.bool_value("new-checkout", &acme, false));
    assert!(!client.bool_value("new-checkout", &other, true));
    assert_eq!(client.string_value("banner", &other, "x"), "Welcome back ✓");
    assert_eq!(
        client.string_value("banner", &acme, "x"),
        "Hello, \"world\" <script>\t"
    );
    assert_eq!(client.number_value("max-items", &acme, 0.0), 2.5);
    assert_eq!(client.number_value("max-items", &other, 0.0), 10.0);
    assert_eq!(
        client.json_value("theme", &other, Value::Null),
        json!({"bg": "#000", "size": 3})
    );
    // Wrong type, unknown flag: the default.
    assert_eq!(client.string_value("new-checkout", &acme, "default"), "default");
    assert!(client.bool_value("no-such-flag", &acme, true));
    let detail = client.evaluate("gated", &other);
    assert_eq!(
        (detail.reason, detail.prerequisite.as_deref()),
        (Reason::PrerequisiteFailed, Some("new-checkout"))
    );
    assert_eq!(
        client.evaluate("half", &ctx(json!({}))).error,
        Some(flagstaff_sdk::EvalError::TargetingKeyMissing)
    );

    eventually("the stream connects", || client.status().stream_connected).await;
    let mut changes = client.subscribe();
    setup.toggle("new-checkout", false).await;
    let change = tokio::time::timeout(PATIENCE, changes.recv())
        .await
        .expect("a change within the deadline")
        .expect("change");
    assert_eq!(change.flags, vec!["new-checkout".to_owned()]);
    assert!(change.revision > status.revision);
    assert!(!client.bool_value("new-checkout", &acme, true), "off now");
    let detail = client.evaluate("new-checkout", &acme);
    assert_eq!(
        (detail.reason, detail.variant.as_deref()),
        (Reason::Disabled, Some("off"))
    );
    assert_eq!(client.status().revision, change.revision);
    eventually("the cache file follows", || {
        cached_revision(&setup.cache_path()) == change.revision
    })
    .await;

    client.close().await;
    assert!(!client.status().stream_connected, "closed: the stream is gone");
    assert!(
        !client.bool_value("new-checkout", &acme, true),
        "reads keep working after close"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_tries_the_sources_in_order_and_says_what_each_answered() {
    let setup = Setup::new(document()).await;
    let refused = format!("http://127.0.0.1:{}", free_port());

    // The primary refuses connections: the fallback serves.
    let client = Client::builder(&refused, &setup.key)
        .fallback_url(setup.server.url.clone())
        .send_events(false)
        .build()
        .await
        .expect("the fallback serves");
    assert_eq!(client.status().source, Source::Server(setup.server.url.clone()));
    client.close().await;

    // A key the server does not know, a server that is down, no cache file: an error naming
    // each source's answer.
    let cache = setup.cache_path();
    let error = Client::builder(&setup.server.url, "fs_srv_not-a-real-key")
        .fallback_url(refused.clone())
        .cache_file(&cache)
        .send_events(false)
        .build()
        .await
        .expect_err("no source can serve");
    let Error::NoSource(attempts) = &error else {
        panic!("unexpected error {error}")
    };
    assert_eq!(attempts.len(), 3, "{error}");
    assert_eq!(attempts[0].source, Source::Server(setup.server.url.clone()));
    assert!(
        attempts[0].outcome.contains("401") && attempts[0].outcome.contains("rejected"),
        "{error}"
    );
    assert_eq!(attempts[1].source, Source::Server(refused.clone()));
    assert!(attempts[1].outcome.to_lowercase().contains("refused"), "{error}");
    assert_eq!(attempts[2].source, Source::CacheFile(cache.clone()));
    assert!(attempts[2].outcome.contains("no such file"), "{error}");
    let message = error.to_string();
    assert!(
        !message.contains("not-a-real-key"),
        "the key never appears in an error: {message}"
    );

    // A client key may not read the bundle.
    let client_key = setup.new_key("client").await;
    let error = Client::builder(&setup.server.url, &client_key)
        .build()
        .await
        .expect_err("a client key is refused");
    assert!(error.to_string().contains("403"), "{error}");

    // A cache file written for another key is not used.
    let client = setup.builder().cache_file(&cache).build().await.expect("client");
    client.close().await;
    let error = Client::builder(&refused, "fs_srv_another-key")
        .cache_file(&cache)
        .build()
        .await
        .expect_err("the cache belongs to another key");
    assert!(error.to_string().contains("another server key"), "{error}");

    assert!(matches!(
        Client::builder("ftp://x", "k").build().await,
        Err(Error::InvalidUrl { .. })
    ));
    assert!(matches!(
        Client::builder(&setup.server.url, " ").build().await,
        Err(Error::InvalidKey(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_server_down_the_cache_file_serves_then_the_sdk_catches_up() {
    let mut setup = Setup::new(document()).await;
    let cache = setup.cache_path();
    let first = setup.builder().cache_file(&cache).build().await.expect("client");
    let cached = first.status().revision;
    first.close().await;
    // A change the cache file does not have, then the server goes away.
    setup.toggle("new-checkout", false).await;
    setup.server.kill();

    let acme = ctx(json!({"targetingKey": "u-9", "email": "ada@acme.com"}));
    let client = setup
        .builder()
        .cache_file(&cache)
        .poll_interval(Duration::from_secs(3600))
        .init_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("ready from the cache file");
    let status = client.status();
    assert_eq!(status.source, Source::CacheFile(cache.clone()));
    assert_eq!(status.revision, cached);
    assert!(!status.stream_connected);
    assert!(
        client.bool_value("new-checkout", &acme, false),
        "the cached configuration: still on"
    );

    let mut changes = client.subscribe();
    setup.server.restart().await;
    let change = tokio::time::timeout(PATIENCE, changes.recv())
        .await
        .expect("catches up")
        .expect("change");
    assert!(change.revision > cached);
    assert!(change.flags.contains(&"new-checkout".to_owned()), "{change:?}");
    assert_eq!(client.status().source, Source::Server(setup.server.url.clone()));
    assert!(
        !client.bool_value("new-checkout", &acme, true),
        "the server's configuration: off"
    );
    eventually("the stream connects", || client.status().stream_connected).await;
    eventually("the cache file follows", || {
        cached_revision(&cache) == change.revision
    })
    .await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_resumes_after_the_server_is_killed_and_restarted() {
    let mut setup = Setup::new(document()).await;
    // No polling within the test: the resumed stream must deliver.
    let client = setup
        .builder()
        .poll_interval(Duration::from_secs(3600))
        .build()
        .await
        .expect("client");
    eventually("the stream connects", || client.status().stream_connected).await;
    let acme = ctx(json!({"targetingKey": "u-9", "email": "ada@acme.com"}));

    setup.server.kill();
    eventually("the SDK notices the stream is gone", || {
        !client.status().stream_connected
    })
    .await;
    assert!(
        client.bool_value("new-checkout", &acme, false),
        "reads go on while the server is down"
    );

    setup.server.restart().await;
    eventually("the stream reconnects", || client.status().stream_connected).await;
    let mut changes = client.subscribe();
    setup.toggle("new-checkout", false).await;
    let change = tokio::time::timeout(PATIENCE, changes.recv())
        .await
        .expect("resumed")
        .expect("change");
    assert_eq!(change.flags, vec!["new-checkout".to_owned()]);
    assert!(!client.bool_value("new-checkout", &acme, true));
    client.close().await;
}

/// A server as the SDK sees it: a TCP forwarder on a fixed loopback port to a real server, that
/// can be down (nothing listens: connections are refused) or up. It counts the change streams
/// it carries (`GET /sdk/v1/stream`) and how many are open.
struct Forwarder {
    port: u16,
    url: String,
    target: String,
    up: Option<tokio::task::JoinHandle<()>>,
    streams_opened: Arc<std::sync::atomic::AtomicUsize>,
    streams_open: Arc<std::sync::atomic::AtomicUsize>,
}

impl Forwarder {
    /// Down until [`Forwarder::up`].
    fn down(target: &str) -> Forwarder {
        let port = free_port();
        Forwarder {
            port,
            url: format!("http://127.0.0.1:{port}"),
            target: target.trim_start_matches("http://").to_owned(),
            up: None,
            streams_opened: Arc::default(),
            streams_open: Arc::default(),
        }
    }

    async fn up(&mut self) {
        use std::sync::atomic::Ordering::SeqCst;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the forwarder's port");
        let (target, opened, open) = (
            self.target.clone(),
            Arc::clone(&self.streams_opened),
            Arc::clone(&self.streams_open),
        );
        self.up = Some(tokio::spawn(async move {
            // Aborting this task drops the listener and every connection (the JoinSet).
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let (target, opened, open) = (target.clone(), Arc::clone(&opened), Arc::clone(&open));
                connections.spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    // Requests may share a kept-alive connection: look at every one sent. A
                    // stream holds its connection until it ends.
                    let requests = async {
                        let mut stream = false;
                        let mut buf = vec![0u8; 8192];
                        loop {
                            let n = match from_client.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if !stream && buf[..n].windows(18).any(|w| w == b"GET /sdk/v1/stream") {
                                stream = true;
                                opened.fetch_add(1, SeqCst);
                                open.fetch_add(1, SeqCst);
                            }
                            if to_server.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        stream
                    };
                    let answers = tokio::io::copy(&mut from_server, &mut to_client);
                    let stream = tokio::select! {
                        stream = requests => stream,
                        _ = answers => false,
                    };
                    // Either side ending ends both (the halves are dropped here).
                    if stream {
                        open.fetch_sub(1, SeqCst);
                    }
                });
            }
        }));
    }

    fn streams_opened(&self) -> usize {
        self.streams_opened.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn streams_open(&self) -> usize {
        self.streams_open.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(task) = self.up.take() {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_stream_returns_to_the_primary_once_it_answers() {
    let setup = Setup::new(document()).await;
    // Both in front of the same server, so the configuration is the same whichever serves.
    let mut primary = Forwarder::down(&setup.server.url);
    let mut fallback = Forwarder::down(&setup.server.url);
    fallback.up().await;
    // No polling: only the stream can deliver the change at the end.
    let client = Client::builder(&primary.url, &setup.key)
        .fallback_url(fallback.url.clone())
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(400))
        .poll_interval(Duration::from_secs(3600))
        .send_events(false)
        .build()
        .await
        .expect("the fallback serves while the primary is down");
    assert_eq!(client.status().source, Source::Server(fallback.url.clone()));
    eventually("the stream follows the fallback", || fallback.streams_open() == 1).await;

    primary.up().await;
    eventually(
        "the stream follows the primary again and leaves the fallback",
        || primary.streams_open() == 1 && fallback.streams_open() == 0,
    )
    .await;
    // Bounded: once the primary is up, its first stream attempt is the one followed.
    assert_eq!(
        primary.streams_opened(),
        1,
        "stream attempts on the primary once up"
    );

    let mut changes = client.subscribe();
    setup.toggle("new-checkout", false).await;
    let change = tokio::time::timeout(PATIENCE, changes.recv())
        .await
        .expect("the change arrives over the primary's stream")
        .expect("change");
    assert_eq!(change.flags, vec!["new-checkout".to_owned()]);
    assert_eq!(
        (
            primary.streams_open(),
            fallback.streams_open(),
            primary.streams_opened()
        ),
        (1, 0, 1)
    );
    client.close().await;
}

/// Accepts connections and never answers (a stream path blocked by a proxy, say).
async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_delivers_while_the_stream_is_blocked() {
    let setup = Setup::new(document()).await;
    let (hole, task) = black_hole().await;
    let client = setup
        .builder()
        .stream_url(hole)
        .request_timeout(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(200))
        .build()
        .await
        .expect("client");
    let acme = ctx(json!({"targetingKey": "u-9", "email": "ada@acme.com"}));
    assert!(client.bool_value("new-checkout", &acme, false));
    let mut changes = client.subscribe();
    setup.toggle("new-checkout", false).await;
    let change = tokio::time::timeout(PATIENCE, changes.recv())
        .await
        .expect("polled")
        .expect("change");
    assert_eq!(change.flags, vec!["new-checkout".to_owned()]);
    assert!(!client.bool_value("new-checkout", &acme, true));
    assert!(!client.status().stream_connected, "the stream never answered");
    client.close().await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluation_counts_reach_the_server_at_close() {
    let setup = Setup::with_env(document(), &[("FLAGSTAFF_EVENTS_FLUSH_SECS", "1")]).await;
    let client = setup
        .builder()
        .send_events(true)
        .events_interval(Duration::from_secs(3600))
        .build()
        .await
        .expect("client");
    let acme = ctx(json!({"targetingKey": "u-9", "email": "ada@acme.com"}));
    let other = ctx(json!({"targetingKey": "u-5", "email": "bob@example.com"}));
    for _ in 0..5 {
        assert!(client.bool_value("new-checkout", &acme, false));
    }
    assert!(!client.bool_value("new-checkout", &other, true));
    assert_eq!(client.evaluate("banner", &other).variant.as_deref(), Some("a"));
    // Not served: not counted.
    assert_eq!(client.string_value("new-checkout", &acme, "d"), "d");
    client.evaluate_all(&acme);
    client.close().await;

    // Counts are operational data: in the operational database, beside the live one.
    let db = setup.dir.path().join("work").join("flagstaff.operational.db");
    let read = || -> Vec<(String, String, i64)> {
        let conn = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
        let mut stmt = conn
            .prepare("SELECT flag_key, variant, sum(count) FROM evaluation_counts GROUP BY flag_key, variant ORDER BY 1, 2")
            .expect("query");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect()
    };
    let expected = vec![
        ("banner".to_owned(), "a".to_owned(), 1),
        ("new-checkout".to_owned(), "off".to_owned(), 1),
        ("new-checkout".to_owned(), "on".to_owned(), 5),
    ];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let counts = read();
        if counts == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server has {counts:?}, not {expected:?}: {}",
            setup.server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openfeature_provider_reads_through_the_client() {
    use flagstaff_sdk::open_feature::{
        EvaluationContext, EvaluationErrorCode, EvaluationReason, OpenFeature, StructValue,
    };
    let setup = Setup::new(document()).await;
    let client = setup.builder().build().await.expect("client");
    let name = "flagstaff-sdk-tests";
    OpenFeature::singleton_mut()
        .await
        .set_named_provider(name, FlagstaffProvider::new(client.clone()))
        .await;
    let of = OpenFeature::singleton().await.create_named_client(name);
    let acme = EvaluationContext::default()
        .with_targeting_key("u-9")
        .with_custom_field("email", "ada@acme.com")
        .with_custom_field("plan", "pro");
    let other = EvaluationContext::default().with_targeting_key("u-2");

    let detail = of
        .get_bool_details("new-checkout", Some(&acme), None)
        .await
        .expect("bool");
    assert!(detail.value);
    assert_eq!(detail.reason, Some(EvaluationReason::TargetingMatch));
    assert_eq!(detail.variant.as_deref(), Some("on"));
    assert_eq!(
        detail.flag_metadata.values.get("ruleId"),
        Some(&flagstaff_sdk::open_feature::FlagMetadataValue::String(
            "beta".into()
        ))
    );
    assert_eq!(
        of.get_string_value("banner", Some(&other), None)
            .await
            .expect("string"),
        "Welcome back ✓"
    );
    assert_eq!(
        of.get_float_value("max-items", Some(&acme), None)
            .await
            .expect("float"),
        2.5
    );
    assert_eq!(
        of.get_int_value("max-items", Some(&other), None)
            .await
            .expect("int"),
        10
    );
    let theme: StructValue = of
        .get_struct_value("theme", Some(&other), None)
        .await
        .expect("struct");
    assert_eq!(theme.fields.get("bg").and_then(|v| v.as_str()), Some("#000"));
    let gated = of
        .get_bool_details("gated", Some(&other), None)
        .await
        .expect("bool");
    assert_eq!(
        gated.reason,
        Some(EvaluationReason::Other("PREREQUISITE_FAILED".into()))
    );

    let error = of
        .get_int_value("max-items", Some(&acme), None)
        .await
        .expect_err("2.5 is not an integer");
    assert_eq!(error.code, EvaluationErrorCode::TypeMismatch);
    let error = of
        .get_bool_value("banner", Some(&acme), None)
        .await
        .expect_err("not a boolean");
    assert_eq!(error.code, EvaluationErrorCode::TypeMismatch);
    let error = of
        .get_bool_value("nope", Some(&acme), None)
        .await
        .expect_err("unknown");
    assert_eq!(error.code, EvaluationErrorCode::FlagNotFound);
    let error = of
        .get_bool_value("half", None, None)
        .await
        .expect_err("no targeting key");
    assert_eq!(error.code, EvaluationErrorCode::TargetingKeyMissing);
    client.close().await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// From sending a toggle to the API to the SDK holding the new configuration (the write, the
/// stream event, the bundle fetch and the swap), repeated. Prints the figures recorded in
/// BENCHMARKS.md; asserts only that every toggle arrives, over the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toggle_latency() {
    let samples: usize = std::env::var("FLAGSTAFF_SDK_LATENCY_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let setup = Setup::new(document()).await;
    let client = Arc::new(
        setup
            .builder()
            .poll_interval(Duration::from_secs(3600))
            .build()
            .await
            .expect("client"),
    );
    eventually("the stream connects", || client.status().stream_connected).await;
    let acme = ctx(json!({"targetingKey": "u-9", "email": "ada@acme.com"}));
    let mut changes = client.subscribe();
    let mut latencies = Vec::with_capacity(samples);
    let mut after_response = Vec::with_capacity(samples);
    for i in 0..samples {
        let enabled = i % 2 == 1;
        let sent = Instant::now();
        setup.toggle("new-checkout", enabled).await;
        let answered = Instant::now();
        let change = tokio::time::timeout(PATIENCE, changes.recv())
            .await
            .expect("toggle arrives")
            .expect("change");
        let seen = Instant::now();
        assert_eq!(change.flags, vec!["new-checkout".to_owned()]);
        assert_eq!(client.bool_value("new-checkout", &acme, !enabled), enabled);
        latencies.push(seen - sent);
        after_response.push(seen.saturating_duration_since(answered));
    }
    latencies.sort();
    after_response.sort();
    println!(
        "toggle → SDK over {samples} toggles: median {:?}, p99 {:?}, max {:?}; after the API's answer: median {:?}, p99 {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
        percentile(&after_response, 0.5),
        percentile(&after_response, 0.99),
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_client_stops_its_background_tasks() {
    let setup = Setup::new(document()).await;
    let client = setup.builder().build().await.expect("client");
    let copy = client.clone();
    let mut changes = client.subscribe();
    drop(client);
    // A clone keeps everything running.
    setup.toggle("new-checkout", false).await;
    let change = tokio::time::timeout(PATIENCE, changes.recv())
        .await
        .expect("still running")
        .expect("change");
    assert_eq!(change.flags, vec!["new-checkout".to_owned()]);
    drop(copy);
    // The tasks end and release the channel: the receiver sees it closed.
    let closed = tokio::time::timeout(PATIENCE, changes.recv())
        .await
        .expect("the tasks stop");
    assert!(
        matches!(closed, Err(tokio::sync::broadcast::error::RecvError::Closed)),
        "{closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_leaves_the_sdk_on_its_last_configuration() {
    let setup = Setup::with_env(document(), &[("FLAGSTAFF_STREAM_KEEPALIVE_SECS", "1")]).await;
    let (status, created) = setup
        .api(
            Method::POST,
            "/api/v1/projects/shop/environments/production/keys",
            Some(json!({"kind": "server", "name": "to revoke"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().expect("key");
    let client = Client::builder(&setup.server.url, key)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(400))
        .poll_interval(Duration::from_millis(200))
        .send_events(false)
        .build()
        .await
        .expect("client");
    eventually("the stream connects", || client.status().stream_connected).await;
    let path = format!(
        "/api/v1/projects/shop/environments/production/keys/{}",
        created["id"]
    );
    let (status, body) = setup.api(Method::DELETE, &path, None).await;
    assert!(status.is_success(), "revoke: {status} {body}");
    eventually("the server closes the revoked key's stream", || {
        !client.status().stream_connected
    })
    .await;
    setup.toggle("new-checkout", false).await;
    // Polling and reconnecting are refused from now on; reads go on with what is held.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let acme = ctx(json!({"targetingKey": "u-9", "email": "ada@acme.com"}));
    assert!(
        client.bool_value("new-checkout", &acme, false),
        "the last configuration the key could read"
    );
    assert!(!client.status().stream_connected);
    client.close().await;
}
