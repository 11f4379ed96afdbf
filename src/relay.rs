//! `flagstaff relay` (DESIGN.md §8): the same binary with no database, serving a project's
//! environments read-only — bundle, SDK stream, OFREP, `/client/v1`, `/sdk/flagstaff.js`,
//! operators' endpoints — exactly as the primary does, with the same keys.
//!
//! It feeds the server's own structures ([`Snapshots`], [`Keys`], the hub, [`Events`]) and
//! registers the server's own handlers (`http::configure_read_path`): nothing of the read path
//! is written twice, and nothing of it touches SQLite on the primary either.
//!
//! * **From a primary** (`--upstream`, `--relay-key`): it follows `GET /sdk/v1/relay/stream`;
//!   each announced ETag it does not hold makes it fetch `GET /sdk/v1/relay` (every
//!   environment's bundle, byte for byte, and the hashes of the active SDK keys), swap the
//!   snapshots and keys in, and announce the changed environments to its own streams. When the
//!   primary is unreachable it keeps serving what it has and reconnects with exponential
//!   backoff and jitter; `--cache-file` keeps the last document, so a relay started while the
//!   primary is down serves at once. Evaluation counts and key uses are forwarded in batches
//!   (`POST /sdk/v1/relay/events`), kept for the next try when that fails.
//! * **Offline** (`--from-file`): it serves a bundle written by `flagstaff download`, with the
//!   keys given (hashed in memory), and re-reads the file when it changes.

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpResponse, web};
use anyhow::Context as _;
use futures_util::StreamExt as _;
use rand::Rng as _;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::config::{RelayArgs, Secret, Settings};
use crate::events::Events;
use crate::hub::{Change, Hub};
use crate::keys::Keys;
use crate::server::Signal;
use crate::snapshot::{Snapshot, Snapshots};
use crate::state::Serving;
use crate::store::api_keys::{ActiveKey, KeyKind};

/// Where a relay's data comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A primary Flagstaff, followed over its relay stream.
    Upstream {
        url: String,
        relay_key: Secret,
        cache_file: Option<PathBuf>,
    },
    /// A bundle file, with the keys to accept.
    File { path: PathBuf, keys: Vec<Secret> },
}

impl Source {
    /// The source the command line describes; an error names the setting at fault.
    pub fn from_args(args: &RelayArgs) -> anyhow::Result<Source> {
        if let Some(path) = &args.from_file {
            let mut keys: Vec<Secret> = args
                .server_keys
                .iter()
                .chain(&args.client_keys)
                .cloned()
                .collect();
            if let Some(file) = &args.keys_file {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("--keys-file: cannot read {}", file.display()))?;
                keys.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(Secret::new),
                );
            }
            if keys.is_empty() {
                anyhow::bail!(
                    "--from-file needs the keys to accept: --server-key, --client-key or --keys-file"
                );
            }
            for key in &keys {
                offline_kind(key.expose())?;
            }
            return Ok(Source::File {
                path: path.clone(),
                keys,
            });
        }
        let url = args
            .upstream
            .clone()
            .context("--upstream (FLAGSTAFF_UPSTREAM) or --from-file is required")?;
        let relay_key = args.relay_key()?.context(
            "--relay-key (FLAGSTAFF_RELAY_KEY or FLAGSTAFF_RELAY_KEY_FILE) is required with --upstream",
        )?;
        Ok(Source::Upstream {
            url,
            relay_key,
            cache_file: args.cache_file.clone(),
        })
    }

    fn describe(&self) -> String {
        match self {
            Source::Upstream { url, .. } => url.clone(),
            Source::File { path, .. } => path.display().to_string(),
        }
    }
}

/// The kind of a key given to an offline relay, by its prefix.
fn offline_kind(secret: &str) -> anyhow::Result<KeyKind> {
    if secret.starts_with(crate::keys::prefix(KeyKind::Server)) {
        Ok(KeyKind::Server)
    } else if secret.starts_with(crate::keys::prefix(KeyKind::Client)) {
        Ok(KeyKind::Client)
    } else {
        anyhow::bail!(
            "--server-key/--client-key/--keys-file: a key starting {:?} is neither a server key (fs_srv_…) nor a client key (fs_cli_…)",
            secret.chars().take(7).collect::<String>()
        )
    }
}

/// What a relay knows of its source, for `/readyz` and the logs.
#[derive(Debug)]
pub struct Status {
    source: String,
    /// Something to serve has been loaded (from the source, the cache file or the file).
    ready: AtomicBool,
    /// The upstream stream is open (or the offline file was readable at the last look).
    connected: AtomicBool,
    /// When the data last changed, Unix ms (0: never).
    updated_at: AtomicI64,
    /// Where the data served now came from: `upstream`, `cache_file` or `file`.
    loaded_from: Mutex<&'static str>,
}

impl Status {
    fn new(source: String) -> Status {
        Status {
            source,
            ready: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            updated_at: AtomicI64::new(0),
            loaded_from: Mutex::new(""),
        }
    }

    /// Whether the relay is ready (it has data: it serves what it has even with its source
    /// down), with the body of `/readyz`.
    pub fn readiness(&self, environments: usize) -> (bool, serde_json::Value) {
        let ready = self.ready.load(Ordering::SeqCst);
        let from = *self
            .loaded_from
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let body = json!({
            "status": if ready { "ready" } else { "waiting_for_data" },
            "relay": {
                "source": self.source,
                "connected": self.connected.load(Ordering::SeqCst),
                "loaded_from": from,
                "updated_at": self.updated_at.load(Ordering::SeqCst),
            },
            "environments": environments,
        });
        (ready, body)
    }

    fn loaded(&self, from: &'static str) {
        *self
            .loaded_from
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = from;
        self.updated_at.store(crate::store::now_ms(), Ordering::SeqCst);
        self.ready.store(true, Ordering::SeqCst);
    }
}

/// The read path's state for a relay: empty snapshots and keys, filled by its source.
pub fn serving(settings: Settings, source: &Source) -> Serving {
    Serving {
        snapshots: Arc::new(Snapshots::default()),
        keys: Arc::new(Keys::default()),
        hub: Hub::new(),
        settings: Arc::new(settings),
        events: Arc::new(Events::default()),
        relay: Some(Arc::new(Status::new(source.describe()))),
    }
}

fn status(serving: &Serving) -> &Status {
    serving
        .relay
        .as_deref()
        .expect("a relay's state has a relay status")
}

/// The relay's HTTP application: the server's read-path handlers over `serving`.
pub fn build_relay_app(
    serving: Serving,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new(serving))
        .wrap_fn(crate::head_as_get)
        .wrap(crate::ops::request_log::RequestLog)
        .configure(crate::http::configure_read_path)
        .default_service(web::to(not_served))
}

async fn not_served() -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": {
        "code": "not_found",
        "message": "a relay serves SDKs and browsers only (bundle, stream, OFREP, /client/v1): no admin pages, no /api; use the primary",
    }}))
}

// ---------------------------------------------------------------------------------------------
// The relay document (`GET /sdk/v1/relay`, `crate::http::sdk::relay`).

#[derive(Deserialize)]
struct Document<'a> {
    flagstaff_relay: u32,
    project_id: i64,
    #[serde(borrow)]
    environments: Vec<DocumentEnvironment<'a>>,
    keys: Vec<DocumentKey>,
}

#[derive(Deserialize)]
struct DocumentEnvironment<'a> {
    id: i64,
    #[serde(borrow)]
    bundle: &'a RawValue,
}

#[derive(Deserialize)]
struct DocumentKey {
    id: i64,
    environment_id: i64,
    kind: String,
    sha256: String,
}

/// Swaps in the snapshots and keys of a relay document and announces what changed. Returns
/// how many environments changed.
pub fn apply_document(serving: &Serving, bytes: &[u8]) -> Result<usize, String> {
    let doc: Document<'_> =
        serde_json::from_slice(bytes).map_err(|e| format!("the relay document is not valid: {e}"))?;
    if doc.flagstaff_relay != crate::http::sdk::relay::FORMAT {
        return Err(format!(
            "the relay document has format {}, this relay reads {}: run the same version as the primary",
            doc.flagstaff_relay,
            crate::http::sdk::relay::FORMAT
        ));
    }
    let mut snapshots = Vec::with_capacity(doc.environments.len());
    for env in &doc.environments {
        let snapshot = Snapshot::from_bundle(env.id, doc.project_id, env.bundle.get().as_bytes())
            .map_err(|e| format!("the bundle of environment {} is not valid: {e}", env.id))?;
        snapshots.push(snapshot);
    }
    let mut keys = Vec::with_capacity(doc.keys.len());
    for key in &doc.keys {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&key.sha256, &mut hash).map_err(|e| format!("key {}: bad hash: {e}", key.id))?;
        let kind = KeyKind::parse(&key.kind)
            .ok_or_else(|| format!("key {}: unknown kind {:?}", key.id, key.kind))?;
        keys.push(ActiveKey {
            id: key.id,
            hash,
            environment_id: key.environment_id,
            kind,
        });
    }
    Ok(swap_in(serving, snapshots, keys))
}

/// Swaps new snapshots and keys in (snapshots first: a new key never reads a missing
/// environment) and announces each changed environment on the hub.
fn swap_in(serving: &Serving, snapshots: Vec<Snapshot>, keys: Vec<ActiveKey>) -> usize {
    let changed = serving.snapshots.replace(snapshots);
    serving.keys.replace(keys);
    let n = changed.len();
    for (snapshot, flags) in changed {
        serving.hub.publish(Change {
            environment_id: snapshot.environment_id,
            revision: snapshot.revision,
            etag: snapshot.etag.clone(),
            flags: flags.into(),
        });
    }
    n
}

// ---------------------------------------------------------------------------------------------
// Following a primary.

/// Exponential backoff with jitter (each delay drawn in its upper half).
struct Backoff {
    next: Duration,
}

const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Silence on the upstream stream after which it is taken for dead (the primary sends a
/// keep-alive comment every 15 s by default).
const UPSTREAM_IDLE: Duration = Duration::from_secs(45);

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: BACKOFF_FIRST }
    }

    fn delay(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
    }

    fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("flagstaff-relay/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with these settings always builds")
}

/// Writes `bytes` to `path` atomically (temporary file, rename).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The relay's view of its primary: the document's ETag it holds.
struct Upstream {
    client: reqwest::Client,
    url: String,
    key: Secret,
    cache_file: Option<PathBuf>,
    etag: Option<String>,
}

impl Upstream {
    /// Fetches the document unless it is the one held, and swaps it in.
    async fn fetch(&mut self, serving: &Serving) -> Result<(), String> {
        let mut req = self
            .client
            .get(format!("{}/sdk/v1/relay", self.url))
            .bearer_auth(self.key.expose())
            .timeout(Duration::from_secs(30));
        if let Some(etag) = &self.etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        let res = req.send().await.map_err(|e| format!("GET /sdk/v1/relay: {e}"))?;
        if res.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(());
        }
        if !res.status().is_success() {
            return Err(refusal("GET /sdk/v1/relay", res).await);
        }
        let etag = res
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res.bytes().await.map_err(|e| format!("GET /sdk/v1/relay: {e}"))?;
        let changed = apply_document(serving, &body)?;
        status(serving).loaded("upstream");
        self.etag = etag;
        tracing::info!(
            changed_environments = changed,
            "relay: configuration received from the primary"
        );
        if let Some(path) = &self.cache_file
            && let Err(e) = write_atomically(path, &body)
        {
            tracing::warn!(file = %path.display(), error = %e, "relay: cannot write the cache file");
        }
        Ok(())
    }

    /// Follows the relay stream until it ends or fails; fetches on each new ETag.
    async fn follow(&mut self, serving: &Serving, backoff: &mut Backoff) -> Result<(), String> {
        let res = self
            .client
            .get(format!("{}/sdk/v1/relay/stream", self.url))
            .bearer_auth(self.key.expose())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| format!("GET /sdk/v1/relay/stream: {e}"))?;
        if !res.status().is_success() {
            return Err(refusal("GET /sdk/v1/relay/stream", res).await);
        }
        let mut body = res.bytes_stream();
        let mut events = EventLines::default();
        let mut connected = false;
        loop {
            let chunk = match tokio::time::timeout(UPSTREAM_IDLE, body.next()).await {
                Err(_) => return Err(format!("the relay stream was silent for {UPSTREAM_IDLE:?}")),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => return Err(format!("the relay stream broke: {e}")),
                Ok(Some(Ok(chunk))) => chunk,
            };
            for data in events.feed(&chunk) {
                let etag = serde_json::from_str::<serde_json::Value>(&data)
                    .ok()
                    .and_then(|v| v["etag"].as_str().map(str::to_owned));
                if etag.is_none() || etag != self.etag {
                    self.fetch(serving).await?;
                }
                if !connected {
                    connected = true;
                    status(serving).connected.store(true, Ordering::SeqCst);
                    backoff.reset();
                    tracing::info!(upstream = %self.url, "relay: following the primary");
                }
            }
        }
    }
}

/// A refused request's status and error message, for the log.
async fn refusal(what: &str, res: reqwest::Response) -> String {
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or(body);
    format!("{what}: {status}: {message}")
}

/// The `data` of each event of a `text/event-stream`, from its bytes as they arrive. The relay
/// stream is ours and sends one-line `data:` events and comments only, so this reads no more of
/// the format than that.
#[derive(Default)]
struct EventLines {
    line: Vec<u8>,
    data: Option<String>,
}

impl EventLines {
    fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let line = String::from_utf8_lossy(&self.line)
                .trim_end_matches('\r')
                .to_owned();
            self.line.clear();
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    out.push(data);
                }
            } else if let Some(data) = line.strip_prefix("data:") {
                self.data = Some(data.strip_prefix(' ').unwrap_or(data).to_owned());
            }
        }
        out
    }
}

/// Follows the primary for ever: stream, fetch on change, reconnect with backoff.
async fn follow_upstream(serving: Serving, url: String, key: Secret, cache_file: Option<PathBuf>) {
    let mut upstream = Upstream {
        client: http_client(),
        url,
        key,
        cache_file,
        etag: None,
    };
    let mut backoff = Backoff::new();
    loop {
        let result = upstream.follow(&serving, &mut backoff).await;
        status(&serving).connected.store(false, Ordering::SeqCst);
        let delay = backoff.delay();
        match result {
            Ok(()) => tracing::info!(
                retry_in_ms = delay.as_millis() as u64,
                "relay: the primary ended the stream"
            ),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "relay: the primary is unreachable; serving what it has");
            }
        }
        tokio::time::sleep(delay).await;
    }
}

/// Loads the cache file, if there is one and it is readable.
fn load_cache(serving: &Serving, path: &Path) {
    match std::fs::read(path) {
        Ok(bytes) => match apply_document(serving, &bytes) {
            Ok(n) => {
                status(serving).loaded("cache_file");
                tracing::info!(file = %path.display(), environments = n, "relay: serving from the cache file until the primary answers");
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "relay: the cache file is not usable");
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(file = %path.display(), error = %e, "relay: cannot read the cache file"),
    }
}

/// Forwards evaluation counts and key uses every `--events-flush-secs`; what fails is kept.
async fn forward_events(serving: Serving, url: String, key: Secret) {
    let client = http_client();
    let period = Duration::from_secs(serving.settings.serve.events_flush_secs.max(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tick.tick().await;
        send_events(&serving, &client, &url, &key).await;
    }
}

/// Sends what is pending in batches the primary accepts; puts back what was not sent.
async fn send_events(serving: &Serving, client: &reqwest::Client, url: &str, key: &Secret) {
    const CHUNK: usize = crate::http::sdk::relay::MAX_BATCH / 2;
    let mut batch = serving.events.take_relay_batch();
    while !batch.is_empty() {
        let mut part = crate::events::RelayBatch {
            counts: batch.counts.split_off(batch.counts.len().saturating_sub(CHUNK)),
            keys_used: Vec::new(),
        };
        if part.counts.len() < CHUNK {
            let room = CHUNK - part.counts.len();
            part.keys_used = batch
                .keys_used
                .split_off(batch.keys_used.len().saturating_sub(room));
        }
        let sent = client
            .post(format!("{url}/sdk/v1/relay/events"))
            .bearer_auth(key.expose())
            .timeout(Duration::from_secs(30))
            .json(&part)
            .send()
            .await;
        match sent {
            Ok(res) if res.status().is_success() => {}
            // Refused (a bad batch would be refused again): dropped, and said.
            Ok(res)
                if res.status().is_client_error()
                    && res.status() != reqwest::StatusCode::TOO_MANY_REQUESTS =>
            {
                tracing::warn!(error = %refusal("POST /sdk/v1/relay/events", res).await, "relay: evaluation counts refused by the primary; dropped");
            }
            failed => {
                let error = match failed {
                    Ok(res) => refusal("POST /sdk/v1/relay/events", res).await,
                    Err(e) => e.to_string(),
                };
                tracing::warn!(error = %error, "relay: cannot forward evaluation counts; kept for the next try");
                serving.events.add_relay_batch(part);
                serving.events.add_relay_batch(batch);
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Offline: a bundle file.

/// The environment id and project id an offline relay gives its one environment.
const OFFLINE_ENVIRONMENT: i64 = 1;

/// Serves `path`, re-reading it when its modification time or size changes.
async fn follow_file(serving: Serving, path: PathBuf, keys: Vec<Secret>) {
    let keys: Vec<ActiveKey> = keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| {
            Some(ActiveKey {
                id: i as i64 + 1,
                hash: crate::keys::hash(k.expose()),
                environment_id: OFFLINE_ENVIRONMENT,
                kind: offline_kind(k.expose()).ok()?,
            })
        })
        .collect();
    let mut seen = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let stamp = std::fs::metadata(&path).and_then(|m| Ok((m.modified()?, m.len())));
        let stamp = match stamp {
            Ok(stamp) => stamp,
            Err(e) => {
                if status(&serving).connected.swap(false, Ordering::SeqCst) || seen.is_none() {
                    tracing::warn!(file = %path.display(), error = %e, "relay: cannot read the file; serving what it has");
                }
                continue;
            }
        };
        if seen == Some(stamp) {
            continue;
        }
        seen = Some(stamp);
        let loaded = std::fs::read(&path).map_err(|e| e.to_string()).and_then(|bytes| {
            Snapshot::from_bundle(OFFLINE_ENVIRONMENT, OFFLINE_ENVIRONMENT, &bytes).map_err(|e| e.to_string())
        });
        match loaded {
            Ok(snapshot) => {
                let revision = snapshot.revision;
                swap_in(&serving, vec![snapshot], keys.clone());
                status(&serving).connected.store(true, Ordering::SeqCst);
                status(&serving).loaded("file");
                tracing::info!(file = %path.display(), revision, "relay: serving the file");
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "relay: the file is not a bundle; serving what it has");
            }
        }
    }
}

/// An offline relay forwards nothing: counts are dropped every interval so they do not pile up.
async fn drop_events(serving: Serving) {
    let period = Duration::from_secs(serving.settings.serve.events_flush_secs.max(1));
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        drop(serving.events.take_relay_batch());
    }
}

// ---------------------------------------------------------------------------------------------
// Running.

/// `flagstaff relay`: serves until SIGTERM or SIGINT.
pub fn run(settings: Settings, args: &RelayArgs) -> anyhow::Result<()> {
    let source = Source::from_args(args)?;
    let bind = settings.serve.bind;
    let listener = TcpListener::bind(bind)
        .with_context(|| format!("cannot listen on {bind} (--bind / FLAGSTAFF_BIND)"))?;
    actix_web::rt::System::new().block_on(serve(settings, source, listener, crate::server::termination()))
}

/// Serves a relay on `listener` until `stop` completes; then ends the streams, finishes the
/// requests in flight and forwards the last counts. Call inside an actix system.
pub async fn serve(
    settings: Settings,
    source: Source,
    listener: TcpListener,
    stop: impl Future<Output = Signal>,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("the listener has no address")?;
    let serving = serving(settings, &source);
    let mut tasks = Vec::new();
    match &source {
        Source::Upstream {
            url,
            relay_key,
            cache_file,
        } => {
            if let Some(path) = cache_file {
                load_cache(&serving, path);
            }
            tasks.push(actix_web::rt::spawn(follow_upstream(
                serving.clone(),
                url.clone(),
                relay_key.clone(),
                cache_file.clone(),
            )));
            tasks.push(actix_web::rt::spawn(forward_events(
                serving.clone(),
                url.clone(),
                relay_key.clone(),
            )));
        }
        Source::File { path, keys } => {
            tasks.push(actix_web::rt::spawn(follow_file(
                serving.clone(),
                path.clone(),
                keys.clone(),
            )));
            tasks.push(actix_web::rt::spawn(drop_events(serving.clone())));
        }
    }
    let app_serving = serving.clone();
    let server = actix_web::HttpServer::new(move || build_relay_app(app_serving.clone()))
        .disable_signals()
        .h1_allow_half_closed(false)
        .shutdown_timeout(crate::server::SHUTDOWN_GRACE.as_secs())
        .backlog(4096)
        .listen(listener)
        .with_context(|| format!("cannot serve on {addr}"))?
        .run();
    let handle = server.handle();
    tracing::info!(%addr, source = %source.describe(), "Flagstaff relay is listening on http://{addr}");
    let running = actix_web::rt::spawn(server);

    let signal = stop.await;
    let started = Instant::now();
    tracing::info!(signal = signal.name(), "relay shutting down: ending streams");
    serving.hub.close();
    handle.stop(true).await;
    let served = running.await.context("the server task failed")?;
    for task in &tasks {
        task.abort();
    }
    if let Source::Upstream { url, relay_key, .. } = &source {
        send_events(&serving, &http_client(), url, relay_key).await;
    }
    tracing::info!(took_ms = started.elapsed().as_millis() as u64, "relay stopped");
    served.context("server failed")
}

/// `flagstaff download`: saves an environment's bundle (from a primary or a relay) to `output`.
pub fn download(args: &crate::config::DownloadArgs) -> anyhow::Result<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let res = http_client()
            .get(format!("{}/sdk/v1/bundle", args.upstream))
            .bearer_auth(args.key.expose())
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .with_context(|| format!("cannot reach {}", args.upstream))?;
        if !res.status().is_success() {
            anyhow::bail!("{}", refusal("GET /sdk/v1/bundle", res).await);
        }
        let body = res.bytes().await.context("the bundle could not be read")?;
        // Checked before it replaces a good file.
        Snapshot::from_bundle(OFFLINE_ENVIRONMENT, OFFLINE_ENVIRONMENT, &body)
            .map_err(|e| anyhow::anyhow!("the answer is not a bundle: {e}"))?;
        write_atomically(&args.output, &body)
            .with_context(|| format!("--output: cannot write {}", args.output.display()))?;
        Ok(body.len() as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_are_read_across_chunks() {
        let mut lines = EventLines::default();
        assert!(lines.feed(b"retry: 3000\n\n: keep-alive\n\nda").is_empty());
        assert_eq!(
            lines.feed(b"ta: {\"etag\":\"a\"}\r\n\r\ndata: b\n"),
            vec!["{\"etag\":\"a\"}"]
        );
        assert_eq!(lines.feed(b"\n"), vec!["b"]);
    }

    #[test]
    fn backoff_grows_to_its_ceiling_and_resets() {
        let mut backoff = Backoff::new();
        let delays: Vec<Duration> = (0..12).map(|_| backoff.delay()).collect();
        assert!(delays[0] <= BACKOFF_FIRST);
        assert!(delays.iter().all(|d| *d <= BACKOFF_MAX));
        assert!(delays[11] >= BACKOFF_MAX / 2);
        backoff.reset();
        assert!(backoff.delay() <= BACKOFF_FIRST);
    }

    #[test]
    fn offline_keys_are_told_by_their_prefix() {
        assert_eq!(offline_kind("fs_srv_abc").unwrap(), KeyKind::Server);
        assert_eq!(offline_kind("fs_cli_abc").unwrap(), KeyKind::Client);
        let err = offline_kind("fs_rly_abc, \"<script>").unwrap_err().to_string();
        assert!(err.contains("fs_rly_"), "{err}");
    }
}
