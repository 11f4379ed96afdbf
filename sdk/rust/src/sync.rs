//! The background tasks: the change stream, the update loop that fetches and installs bundles
//! (one at a time, so installs never race), the safety-net polling, and the event sender.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, timeout};
use tokio_util::sync::CancellationToken;

use crate::Source;
use crate::backoff::Backoff;
use crate::cache;
use crate::client::{Config, Shared};
use crate::events::Pending;
use crate::http::{self, Endpoint, Fetched, RequestError};
use crate::snapshot::Snapshot;
use crate::sse::{self, Item};

/// Longest line accepted on the stream.
const MAX_STREAM_LINE: usize = 1 << 20;

/// How long [`crate::Client::close`] waits for the last evaluation counts to be accepted.
const FINAL_EVENTS_TIMEOUT: Duration = Duration::from_secs(2);

/// The data of a stream event: the environment's revision and bundle ETag now.
#[derive(Debug, Deserialize)]
struct StreamMessage {
    revision: Option<u64>,
    etag: Option<String>,
}

/// From the stream task to the update loop: the server is at this revision.
#[derive(Debug)]
struct Notice {
    /// The index in `config.endpoints` of the server that said so, if it is one of them.
    endpoint: Option<usize>,
    revision: Option<u64>,
    etag: Option<String>,
}

/// Writes the cache file, if one is configured; failures are logged, not fatal.
pub(crate) async fn save_cache(config: &Config, etag: Option<String>, bytes: Vec<u8>) {
    let Some(path) = config.cache_file.clone() else {
        return;
    };
    let print = config.key_fingerprint.clone();
    let written = tokio::task::spawn_blocking(move || {
        let result = cache::write(&path, &print, etag.as_deref(), &bytes);
        (path, result)
    })
    .await;
    match written {
        Ok((_, Ok(()))) => {}
        Ok((path, Err(e))) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the Flagstaff cache file");
        }
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Keeps the configuration current until `stop`.
pub(crate) async fn run_updates(shared: Arc<Shared>, stop: CancellationToken) {
    let (notices, mut received) = mpsc::channel(16);
    let stream = if shared.config.stream {
        Some(tokio::spawn(run_stream(
            Arc::clone(&shared),
            stop.clone(),
            notices,
        )))
    } else {
        drop(notices);
        None
    };
    let period = shared.config.poll_interval;
    let mut poll = interval_at(Instant::now() + period, period);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut updater = Updater {
        shared: &shared,
        failing: false,
    };
    // A revision announced by the stream but not fetched (the server busy, say) is retried soon,
    // with backoff, rather than at the next poll: polling is off while the stream is up.
    let mut retry = Backoff::new(shared.config.reconnect_initial, period);
    let mut retry_at: Option<Instant> = None;
    loop {
        let retry_due = async move {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let preferred = tokio::select! {
            () = stop.cancelled() => break,
            Some(notice) = received.recv() => {
                let current = shared.snapshot.load();
                let known = match (&notice.etag, &current.etag) {
                    (Some(new), Some(held)) => new == held,
                    _ => notice.revision.is_some() && notice.revision == Some(current.revision),
                };
                if known {
                    continue;
                }
                notice.endpoint
            }
            () = retry_due => None,
            _ = poll.tick() => {
                if shared.stream_connected.load(Ordering::Relaxed) && retry_at.is_none() {
                    continue;
                }
                None
            }
        };
        let fetched = tokio::select! {
            () = stop.cancelled() => break,
            fetched = updater.refresh(preferred) => fetched,
        };
        if fetched {
            retry.reset();
            retry_at = None;
        } else if shared.stream_connected.load(Ordering::Relaxed) {
            retry_at = Some(Instant::now() + retry.next_delay(&mut rand::rng()));
        } else {
            // Polling takes over.
            retry_at = None;
        }
    }
    if let Some(stream) = stream
        && let Err(e) = stream.await
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
    shared.stream_connected.store(false, Ordering::Relaxed);
}

struct Updater<'a> {
    shared: &'a Shared,
    /// The last refresh found no server: log the next failure quietly.
    failing: bool,
}

impl Updater<'_> {
    /// Fetches the bundle (conditionally) from `preferred`, then the other servers in order,
    /// and installs it when it is new. False when no server gave it.
    async fn refresh(&mut self, preferred: Option<usize>) -> bool {
        let config = &self.shared.config;
        let order = preferred
            .into_iter()
            .chain((0..config.endpoints.len()).filter(|i| Some(*i) != preferred));
        let mut errors = Vec::new();
        for i in order {
            let endpoint = &config.endpoints[i];
            let held = self.shared.snapshot.load().etag.clone();
            match http::fetch_bundle(
                &self.shared.http,
                endpoint,
                &config.key,
                held.as_deref(),
                config.request_timeout,
            )
            .await
            {
                Ok(Fetched::NotModified) => {
                    self.recovered();
                    return true;
                }
                Ok(Fetched::Bundle { bytes, etag }) => {
                    if etag.is_some() && etag == held {
                        self.recovered();
                        return true;
                    }
                    match self.install(endpoint, bytes, etag).await {
                        Ok(()) => {
                            self.recovered();
                            return true;
                        }
                        Err(e) => errors.push(format!("{endpoint}: {e}")),
                    }
                }
                Err(e) => errors.push(format!("{endpoint}: {e}")),
            }
        }
        let errors = errors.join("; ");
        if self.failing {
            tracing::debug!(%errors, "no Flagstaff server gave the configuration; keeping the one held");
        } else {
            tracing::warn!(%errors, "no Flagstaff server gave the configuration; keeping the one held");
        }
        self.failing = true;
        false
    }

    fn recovered(&mut self) {
        if self.failing {
            tracing::info!("a Flagstaff server answers again");
        }
        self.failing = false;
    }

    async fn install(&self, endpoint: &Endpoint, bytes: Vec<u8>, etag: Option<String>) -> Result<(), String> {
        let source = Source::Server(endpoint.base.clone());
        // Parsing and compiling a large bundle takes milliseconds: keep it off the runtime.
        let (snapshot, bytes, etag) = tokio::task::spawn_blocking(move || {
            let snapshot = Snapshot::from_bytes(&bytes, etag.clone(), source);
            (snapshot, bytes, etag)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        self.shared.install(snapshot?);
        save_cache(&self.shared.config, etag, bytes).await;
        Ok(())
    }
}

/// How a stream connection ended.
enum StreamEnd {
    /// It could not be opened.
    Failed(RequestError),
    /// It was open, then ended.
    Ended(String),
}

/// Listens to `/sdk/v1/stream`, reconnecting with backoff, until `stop`.
///
/// A failed connection moves on to the next server. On a fallback, the primary (the first URL)
/// is tried again in the background with the reconnect backoff (so at most one attempt per
/// `reconnect_max`); as soon as it accepts a stream, the fallback's is closed and the stream
/// follows the primary again.
async fn run_stream(shared: Arc<Shared>, stop: CancellationToken, notices: mpsc::Sender<Notice>) {
    let config = &shared.config;
    let endpoints: Vec<(Endpoint, Option<usize>)> = match &config.stream_endpoint {
        Some(endpoint) => vec![(endpoint.clone(), None)],
        None => config
            .endpoints
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, e)| (e, Some(i)))
            .collect(),
    };
    let mut backoff = Backoff::new(config.reconnect_initial, config.reconnect_max);
    let mut which = 0;
    let mut quiet = false;
    // A stream the primary accepted while a fallback was followed.
    let mut reopened: Option<Opened> = None;
    loop {
        let (endpoint, index) = &endpoints[which];
        let end = tokio::select! {
            () = stop.cancelled() => return,
            end = listen(&shared, endpoint, *index, reopened.take(), &notices, &mut backoff) => end,
            opened = primary_answers(&shared, &endpoints[0].0), if which != 0 => {
                tracing::info!(server = %endpoints[0].0, "the primary Flagstaff server answers again; following its stream");
                which = 0;
                quiet = false;
                reopened = Some(opened);
                continue;
            }
        };
        shared.stream_connected.store(false, Ordering::Relaxed);
        match &end {
            StreamEnd::Ended(why) => {
                tracing::info!(server = %endpoint, %why, "Flagstaff stream ended; reconnecting");
                quiet = false;
            }
            StreamEnd::Failed(e) => {
                if quiet {
                    tracing::debug!(server = %endpoint, error = %e, "Flagstaff stream unavailable; polling meanwhile");
                } else {
                    tracing::warn!(server = %endpoint, error = %e, "Flagstaff stream unavailable; polling meanwhile");
                    quiet = true;
                }
                // Try the next server; one that streamed is retried first.
                which = (which + 1) % endpoints.len();
            }
        }
        let delay = backoff.next_delay(&mut rand::rng());
        tokio::select! {
            () = stop.cancelled() => return,
            () = sleep(delay) => {}
        }
    }
}

/// A stream the server accepted, and the revision it was opened after (`Last-Event-ID`).
struct Opened {
    response: reqwest::Response,
    held: Option<String>,
}

/// Opens `endpoint`'s stream after the revision held.
async fn open(shared: &Shared, endpoint: &Endpoint) -> Result<Opened, RequestError> {
    // Name the revision held, so the server skips the catch-up event when there is nothing new.
    // Only a configuration a server gave counts: a cache file's may come from elsewhere.
    let held = {
        let snapshot = shared.snapshot.load();
        matches!(snapshot.source, Source::Server(_)).then(|| snapshot.revision.to_string())
    };
    let config = &shared.config;
    let response = http::open_stream(
        &shared.http,
        endpoint,
        &config.key,
        held.as_deref(),
        config.request_timeout,
    )
    .await?;
    Ok(Opened { response, held })
}

/// Tries the primary's stream with the reconnect backoff until it accepts one.
async fn primary_answers(shared: &Shared, primary: &Endpoint) -> Opened {
    let config = &shared.config;
    let mut backoff = Backoff::new(config.reconnect_initial, config.reconnect_max);
    loop {
        let delay = backoff.next_delay(&mut rand::rng());
        sleep(delay).await;
        match open(shared, primary).await {
            Ok(opened) => return opened,
            Err(e) => {
                tracing::debug!(server = %primary, error = %e, "the primary Flagstaff server still does not stream");
            }
        }
    }
}

/// One stream connection (`opened`, or opened here): reads events until it ends, passing
/// revisions on.
async fn listen(
    shared: &Shared,
    endpoint: &Endpoint,
    index: Option<usize>,
    opened: Option<Opened>,
    notices: &mpsc::Sender<Notice>,
    backoff: &mut Backoff,
) -> StreamEnd {
    let config = &shared.config;
    let opened = match opened {
        Some(opened) => Ok(opened),
        None => open(shared, endpoint).await,
    };
    let Opened { mut response, held } = match opened {
        Ok(opened) => opened,
        Err(e) => return StreamEnd::Failed(e),
    };
    backoff.reset();
    shared.stream_connected.store(true, Ordering::Relaxed);
    tracing::debug!(server = %endpoint, "Flagstaff stream connected");
    let mut parser = sse::Parser::new(MAX_STREAM_LINE).with_last_id(held);
    let mut items = Vec::new();
    loop {
        let chunk = match timeout(config.stream_idle_timeout, http::next_chunk(&mut response)).await {
            Err(_) => {
                return StreamEnd::Ended(format!("nothing received for {:?}", config.stream_idle_timeout));
            }
            Ok(Err(e)) => return StreamEnd::Ended(e.to_string()),
            Ok(Ok(None)) => return StreamEnd::Ended("closed by the server".into()),
            Ok(Ok(Some(chunk))) => chunk,
        };
        if let Err(e) = parser.feed(&chunk, &mut items) {
            return StreamEnd::Ended(e.to_string());
        }
        if let Some(ms) = parser.take_retry()
            && !config.reconnect_configured
        {
            backoff.set_initial(Duration::from_millis(ms));
        }
        for item in items.drain(..) {
            let Item::Event(event) = item else { continue };
            let message: StreamMessage = match serde_json::from_str(&event.data) {
                Ok(message) => message,
                Err(e) => {
                    tracing::debug!(event = %event.event, error = %e, "ignoring a stream event that is not a revision");
                    continue;
                }
            };
            let notice = Notice {
                endpoint: index,
                revision: message.revision,
                etag: message.etag,
            };
            if notices.send(notice).await.is_err() {
                return StreamEnd::Ended("the client is closing".into());
            }
        }
    }
}

/// Sends evaluation counts every `events_interval` and once more at `stop`.
pub(crate) async fn run_events(shared: Arc<Shared>, stop: CancellationToken) {
    let period = shared.config.events_interval;
    let mut tick = interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = send_events(&shared, shared.config.request_timeout) => {}
                }
            }
        }
    }
    if timeout(FINAL_EVENTS_TIMEOUT, send_events(&shared, FINAL_EVENTS_TIMEOUT))
        .await
        .is_err()
    {
        tracing::warn!("evaluation counts not sent at close: no Flagstaff server answered in time");
    }
}

/// Sends what was counted since the last accepted report; keeps it for next time on failure
/// (or when the send is cancelled by [`crate::Client::close`], for the final send).
async fn send_events(shared: &Shared, request_timeout: Duration) {
    shared.recorder.gather(&shared.snapshot.load());
    let Some((report, taken)) = shared.recorder.take() else {
        return;
    };
    let mut unsent = Unsent {
        shared,
        taken: Some(taken),
    };
    let config = &shared.config;
    let mut errors = Vec::new();
    for endpoint in &config.endpoints {
        match http::post_events(&shared.http, endpoint, &config.key, &report, request_timeout).await {
            Ok(()) => {
                unsent.taken = None;
                return;
            }
            Err(e @ RequestError::Status(status, _))
                if status.is_client_error()
                    && status != StatusCode::REQUEST_TIMEOUT
                    && status != StatusCode::TOO_MANY_REQUESTS =>
            {
                // Sending the same report again would be refused again.
                tracing::error!(server = %endpoint, error = %e, "evaluation counts refused by the server; dropped");
                unsent.taken = None;
                return;
            }
            Err(e) => errors.push(format!("{endpoint}: {e}")),
        }
    }
    tracing::warn!(errors = %errors.join("; "), "evaluation counts not sent; keeping them for the next attempt");
}

/// Counts taken for a report, given back to the recorder unless the report was accepted.
struct Unsent<'a> {
    shared: &'a Shared,
    taken: Option<Pending>,
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if let Some(taken) = self.taken.take() {
            self.shared.recorder.restore(taken);
        }
    }
}
