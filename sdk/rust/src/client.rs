//! The client: how it is built, what it reads, what it tells.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use flagstaff_eval::{Context, EvalError, Reason, Value};
use reqwest::header::HeaderValue;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cache;
use crate::events::Recorder;
use crate::http::{self, Endpoint, Fetched};
use crate::snapshot::Snapshot;
use crate::sync;

/// Where a configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A Flagstaff server, by base URL (the primary or a fallback).
    Server(String),
    /// The cache file.
    CacheFile(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Server(url) => write!(f, "server {url}"),
            Source::CacheFile(path) => write!(f, "cache file {}", path.display()),
        }
    }
}

/// What one source answered when [`ClientBuilder::build`] tried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAttempt {
    pub source: Source,
    /// Why it gave no configuration, e.g. `connection refused` or `HTTP 401 …`.
    pub outcome: String,
}

impl fmt::Display for SourceAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.outcome)
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid server key: {0}")]
    InvalidKey(&'static str),
    #[error("cannot set up the HTTP client: {0}")]
    Http(String),
    /// Every source was tried and none gave a configuration; each one's answer, in order.
    #[error("no source gave a configuration: {}", list(.0))]
    NoSource(Vec<SourceAttempt>),
}

fn list(attempts: &[SourceAttempt]) -> String {
    let parts: Vec<String> = attempts.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

/// The result of [`Client::evaluate`]: the value and why it was served.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub key: String,
    /// The served value; `None` only with an error.
    pub value: Option<Value>,
    /// The served variation's key; `None` only with an error.
    pub variant: Option<String>,
    pub reason: Reason,
    pub error: Option<EvalError>,
    /// The matched rule's id, when a rule with an id served the value.
    pub rule_id: Option<String>,
    /// The prerequisite that failed, with [`Reason::PrerequisiteFailed`].
    pub prerequisite: Option<String>,
    /// The version of the flag's state in the environment; 0 when unknown.
    pub version: u64,
}

impl Evaluation {
    fn from_engine(e: &flagstaff_eval::Evaluation<'_>) -> Evaluation {
        Evaluation {
            key: e.key.to_owned(),
            value: e.value.cloned(),
            variant: e.variant.map(str::to_owned),
            reason: e.reason,
            error: e.error,
            rule_id: e.rule_id.map(str::to_owned),
            prerequisite: e.prerequisite.map(str::to_owned),
            version: e.version,
        }
    }
}

/// Sent to [`Client::subscribe`]rs each time a new configuration is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// The environment's revision now held.
    pub revision: u64,
    /// The keys of the flags added, changed or removed, sorted.
    pub flags: Vec<String>,
    pub source: Source,
}

/// What the client holds and how it is connected, from [`Client::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub project: String,
    pub environment: String,
    pub revision: u64,
    pub etag: Option<String>,
    /// Where the configuration held came from.
    pub source: Source,
    /// When it was installed.
    pub loaded_at: SystemTime,
    /// Number of flags and configs.
    pub flags: usize,
    /// Whether the change stream is connected (polling runs while it is not).
    pub stream_connected: bool,
}

/// The settings of a client, fixed at build.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub endpoints: Vec<Endpoint>,
    pub stream_endpoint: Option<Endpoint>,
    pub key: HeaderValue,
    pub key_fingerprint: String,
    pub cache_file: Option<PathBuf>,
    pub init_timeout: Duration,
    pub request_timeout: Duration,
    pub poll_interval: Duration,
    pub stream: bool,
    pub stream_idle_timeout: Duration,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    /// The delays were set by the builder: the server's `retry:` hint does not change them.
    pub reconnect_configured: bool,
    pub send_events: bool,
    pub events_interval: Duration,
    pub max_event_entries: usize,
}

/// State shared by the client handles and the background tasks.
pub(crate) struct Shared {
    pub config: Config,
    pub http: reqwest::Client,
    pub snapshot: ArcSwap<Snapshot>,
    pub recorder: Recorder,
    pub changes: broadcast::Sender<ConfigChange>,
    pub stream_connected: AtomicBool,
}

impl Shared {
    /// Makes `new` the current configuration and tells subscribers. Only the update task calls
    /// this, so installs never race.
    pub fn install(&self, new: Snapshot) {
        let new = Arc::new(new);
        let old = self.snapshot.swap(Arc::clone(&new));
        let change = ConfigChange {
            revision: new.revision,
            flags: new.changed_since(&old),
            source: new.source.clone(),
        };
        self.recorder.retire(old);
        tracing::debug!(revision = change.revision, flags = change.flags.len(), source = %change.source, "configuration updated");
        // No subscriber is not an error.
        let _ = self.changes.send(change);
    }
}

/// The most counts `POST /sdk/v1/events` takes in one report.
const MAX_EVENT_ENTRIES: usize = 10_000;

/// Builds a [`Client`]: `Client::builder(url, server_key)…build().await`.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .build().await"]
pub struct ClientBuilder {
    urls: Vec<String>,
    stream_url: Option<String>,
    server_key: String,
    cache_file: Option<PathBuf>,
    init_timeout: Duration,
    request_timeout: Duration,
    poll_interval: Duration,
    stream: bool,
    stream_idle_timeout: Duration,
    reconnect_initial: Duration,
    reconnect_max: Duration,
    reconnect_configured: bool,
    send_events: bool,
    events_interval: Duration,
    max_event_entries: usize,
}

impl ClientBuilder {
    fn new(url: &str, server_key: &str) -> ClientBuilder {
        ClientBuilder {
            urls: vec![url.to_owned()],
            stream_url: None,
            server_key: server_key.to_owned(),
            cache_file: None,
            init_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(60),
            stream: true,
            stream_idle_timeout: Duration::from_secs(45),
            reconnect_initial: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
            reconnect_configured: false,
            send_events: true,
            events_interval: Duration::from_secs(60),
            max_event_entries: MAX_EVENT_ENTRIES,
        }
    }

    /// How long [`build`](Self::build) may spend on servers before it falls back to the cache
    /// file (default 5 s). The time is shared between the URLs still to try, so one server that
    /// hangs cannot starve the fallbacks.
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = timeout;
        self
    }

    /// Adds a fallback server, tried after the primary and earlier fallbacks, at start and
    /// whenever the others fail.
    pub fn fallback_url(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }

    /// Adds several fallback servers, in order.
    pub fn fallback_urls<I: IntoIterator<Item = S>, S: Into<String>>(mut self, urls: I) -> Self {
        self.urls.extend(urls.into_iter().map(Into::into));
        self
    }

    /// Where to keep a copy of the last configuration: a start-up source when no server
    /// answers, replaced atomically after each update. The directory must exist.
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache_file = Some(path.into());
        self
    }

    /// How often to poll while the stream is down or off (default 60 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Whether to listen to the change stream (default yes); without it, changes arrive by
    /// polling only.
    pub fn stream(mut self, enabled: bool) -> Self {
        self.stream = enabled;
        self
    }

    /// A base URL for the stream alone, when streams go through another route than bundles
    /// (default: the primary URL, then the fallbacks).
    pub fn stream_url(mut self, url: impl Into<String>) -> Self {
        self.stream_url = Some(url.into());
        self
    }

    /// A connected stream silent for this long is considered dead and reconnected (default
    /// 45 s, three of the server's 15 s keep-alives).
    pub fn stream_idle_timeout(mut self, timeout: Duration) -> Self {
        self.stream_idle_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// Stream reconnection delays: exponential from `initial` up to `max`, with jitter
    /// (defaults 1 s, or the server's `retry:` hint, and 30 s).
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.reconnect_initial = initial;
        self.reconnect_max = max;
        self.reconnect_configured = true;
        self
    }

    /// Time limit of each background request, and of connecting the stream (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// Whether to send evaluation counts to the server (default yes).
    pub fn send_events(mut self, enabled: bool) -> Self {
        self.send_events = enabled;
        self
    }

    /// How often evaluation counts are sent (default 60 s; also at [`Client::close`]).
    pub fn events_interval(mut self, interval: Duration) -> Self {
        self.events_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// At most this many distinct (flag, variation) counts are kept between sends (default and
    /// maximum 10,000, what the server takes in one report); counts beyond are dropped with a
    /// warning.
    pub fn max_event_entries(mut self, entries: usize) -> Self {
        self.max_event_entries = entries.min(MAX_EVENT_ENTRIES);
        self
    }

    fn config(&self) -> Result<Config, Error> {
        let parse = |url: &String| {
            Endpoint::parse(url).map_err(|reason| Error::InvalidUrl {
                url: url.clone(),
                reason,
            })
        };
        let endpoints = self.urls.iter().map(parse).collect::<Result<Vec<_>, _>>()?;
        let stream_endpoint = self.stream_url.as_ref().map(parse).transpose()?;
        let key = self.server_key.trim();
        if key.is_empty() {
            return Err(Error::InvalidKey("it is empty"));
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| Error::InvalidKey("it holds characters not allowed in an HTTP header"))?;
        header.set_sensitive(true);
        Ok(Config {
            endpoints,
            stream_endpoint,
            key: header,
            key_fingerprint: cache::key_fingerprint(key),
            cache_file: self.cache_file.clone(),
            init_timeout: self.init_timeout,
            request_timeout: self.request_timeout,
            poll_interval: self.poll_interval,
            stream: self.stream,
            stream_idle_timeout: self.stream_idle_timeout,
            reconnect_initial: self.reconnect_initial,
            reconnect_max: self.reconnect_max,
            reconnect_configured: self.reconnect_configured,
            send_events: self.send_events,
            events_interval: self.events_interval,
            max_event_entries: self.max_event_entries,
        })
    }

    /// Loads the configuration from the first source that gives one — the primary URL, the
    /// fallbacks in order, then the cache file — and starts the background updates. Must be
    /// called inside a Tokio runtime, which then runs the background tasks.
    ///
    /// A client started from the cache file keeps trying the servers in the background.
    pub async fn build(self) -> Result<Client, Error> {
        let config = self.config()?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.request_timeout)
            .tcp_nodelay(true)
            .user_agent(concat!("flagstaff-sdk-rust/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Http(e.to_string()))?;

        let mut attempts = Vec::new();
        let mut loaded = None;
        let deadline = Instant::now() + config.init_timeout;
        let count = config.endpoints.len();
        for (i, endpoint) in config.endpoints.iter().enumerate() {
            let source = Source::Server(endpoint.base.clone());
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                attempts.push(SourceAttempt {
                    source,
                    outcome: "not tried: the init timeout was used up".into(),
                });
                continue;
            }
            let share = left / u32::try_from(count - i).unwrap_or(u32::MAX);
            match http::fetch_bundle(&http, endpoint, &config.key, None, share).await {
                Ok(Fetched::Bundle { bytes, etag }) => {
                    match Snapshot::from_bytes(&bytes, etag, source.clone()) {
                        Ok(snapshot) => {
                            loaded = Some((snapshot, Some(bytes)));
                            break;
                        }
                        Err(e) => attempts.push(SourceAttempt { source, outcome: e }),
                    }
                }
                Ok(Fetched::NotModified) => attempts.push(SourceAttempt {
                    source,
                    outcome: "HTTP 304 to an unconditional request".into(),
                }),
                Err(e) => attempts.push(SourceAttempt {
                    source,
                    outcome: e.to_string(),
                }),
            }
        }
        if loaded.is_none()
            && let Some(path) = &config.cache_file
        {
            let source = Source::CacheFile(path.clone());
            let (path, print) = (path.clone(), config.key_fingerprint.clone());
            let read = tokio::task::spawn_blocking(move || cache::read(&path, &print))
                .await
                .expect("reading the cache file does not panic");
            match read {
                Ok(cached) => {
                    loaded = Some((Snapshot::from_bundle(&cached.bundle, cached.etag, source), None));
                }
                Err(e) => attempts.push(SourceAttempt {
                    source,
                    outcome: e.to_string(),
                }),
            }
        }
        let Some((snapshot, bytes)) = loaded else {
            return Err(Error::NoSource(attempts));
        };
        for attempt in &attempts {
            tracing::warn!(source = %attempt.source, outcome = %attempt.outcome, "configuration source failed");
        }
        tracing::info!(
            source = %snapshot.source, project = %snapshot.project, environment = %snapshot.environment,
            revision = snapshot.revision, flags = snapshot.engine.len(), "Flagstaff client ready"
        );
        if let (Some(bytes), Some(_)) = (bytes, &config.cache_file) {
            sync::save_cache(&config, snapshot.etag.clone(), bytes).await;
        }

        let (changes, _) = broadcast::channel(64);
        let shared = Arc::new(Shared {
            recorder: Recorder::new(config.max_event_entries),
            snapshot: ArcSwap::from_pointee(snapshot),
            config,
            http,
            changes,
            stream_connected: AtomicBool::new(false),
        });
        let stop = CancellationToken::new();
        let mut tasks = vec![tokio::spawn(sync::run_updates(Arc::clone(&shared), stop.clone()))];
        if shared.config.send_events {
            tasks.push(tokio::spawn(sync::run_events(Arc::clone(&shared), stop.clone())));
        }
        Ok(Client {
            inner: Arc::new(Inner {
                shared,
                stop,
                tasks: Mutex::new(tasks),
            }),
        })
    }
}

/// A Flagstaff client. Cheap to clone (all clones share one configuration and one set of
/// background tasks); the background tasks stop when [`close`](Client::close) is called or the
/// last clone is dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.inner.shared.snapshot.load();
        f.debug_struct("Client")
            .field("project", &snapshot.project)
            .field("environment", &snapshot.environment)
            .field("revision", &snapshot.revision)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts building a client for the server at `url` (e.g. `https://flags.example.com`)
    /// with a server key of the environment to read.
    pub fn builder(url: &str, server_key: &str) -> ClientBuilder {
        ClientBuilder::new(url, server_key)
    }

    /// Evaluates `key` and converts its value; counts the evaluation when a value is served.
    #[inline]
    fn value_as<T>(
        &self,
        key: &str,
        context: &Context,
        convert: impl FnOnce(&Value) -> Option<T>,
    ) -> Option<T> {
        let snapshot = self.inner.shared.snapshot.load();
        let evaluation = snapshot.engine.evaluate(key, context);
        let value = convert(evaluation.value?)?;
        if let Some(variant) = evaluation.variant {
            snapshot.count(key, variant);
        }
        Some(value)
    }

    /// Runs `f` on the engine's evaluation, counting it when `f` accepts the value.
    #[cfg(feature = "open-feature")]
    pub(crate) fn resolve<T>(
        &self,
        key: &str,
        context: &Context,
        f: impl FnOnce(&flagstaff_eval::Evaluation<'_>) -> Result<T, crate::provider::ResolveError>,
    ) -> Result<T, crate::provider::ResolveError> {
        let snapshot = self.inner.shared.snapshot.load();
        let evaluation = snapshot.engine.evaluate(key, context);
        let out = f(&evaluation)?;
        if let Some(variant) = evaluation.variant {
            snapshot.count(key, variant);
        }
        Ok(out)
    }

    /// The boolean value of `key` for `context`; `default` when the flag is unknown, not
    /// boolean, or cannot be evaluated for this context.
    pub fn bool_value(&self, key: &str, context: &Context, default: bool) -> bool {
        self.value_as(key, context, Value::as_bool).unwrap_or(default)
    }

    /// The string value of `key` for `context`, or `default`.
    pub fn string_value(&self, key: &str, context: &Context, default: &str) -> String {
        self.value_as(key, context, |v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| default.to_owned())
    }

    /// The number value of `key` for `context`, or `default`.
    pub fn number_value(&self, key: &str, context: &Context, default: f64) -> f64 {
        self.value_as(key, context, Value::as_f64).unwrap_or(default)
    }

    /// The value of `key` for `context` whatever its type (for `json` flags and configs), or
    /// `default`.
    pub fn json_value(&self, key: &str, context: &Context, default: Value) -> Value {
        self.value_as(key, context, |v| Some(v.clone()))
            .unwrap_or(default)
    }

    /// The full result for `key`: value, variation, reason, error and metadata.
    pub fn evaluate(&self, key: &str, context: &Context) -> Evaluation {
        let snapshot = self.inner.shared.snapshot.load();
        let evaluation = snapshot.engine.evaluate(key, context);
        if let Some(variant) = evaluation.variant {
            snapshot.count(key, variant);
        }
        Evaluation::from_engine(&evaluation)
    }

    /// Every flag and config evaluated for `context`, sorted by key (e.g. to bootstrap a
    /// page). These evaluations are not counted as uses of the flags.
    pub fn evaluate_all(&self, context: &Context) -> Vec<Evaluation> {
        let snapshot = self.inner.shared.snapshot.load();
        snapshot
            .engine
            .evaluate_all(context, |_| true)
            .iter()
            .map(Evaluation::from_engine)
            .collect()
    }

    /// The keys of every flag and config, sorted.
    pub fn flag_keys(&self) -> Vec<String> {
        self.inner
            .shared
            .snapshot
            .load()
            .engine
            .flags()
            .map(|f| f.key().to_owned())
            .collect()
    }

    /// What the client holds and how it is connected.
    pub fn status(&self) -> Status {
        let shared = &self.inner.shared;
        let snapshot = shared.snapshot.load();
        Status {
            project: snapshot.project.clone(),
            environment: snapshot.environment.clone(),
            revision: snapshot.revision,
            etag: snapshot.etag.clone(),
            source: snapshot.source.clone(),
            loaded_at: snapshot.loaded_at,
            flags: snapshot.engine.len(),
            stream_connected: shared.stream_connected.load(Ordering::Relaxed),
        }
    }

    /// A receiver of every configuration change from now on. A receiver that falls more than
    /// 64 changes behind gets [`broadcast::error::RecvError::Lagged`] and then the latest ones.
    pub fn subscribe(&self) -> broadcast::Receiver<ConfigChange> {
        self.inner.shared.changes.subscribe()
    }

    /// Stops the background tasks after sending the evaluation counts not yet sent (waiting at
    /// most 2 s for the server). Reads keep working on the last configuration. Calling it again
    /// does nothing.
    pub async fn close(&self) {
        self.inner.stop.cancel();
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().expect("task list lock poisoned"));
        for task in tasks {
            if let Err(e) = task.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}
