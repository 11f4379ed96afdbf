//! `GET /sdk/v1/stream`: the environment's revisions as Server-Sent Events.
//!
//! Each stream holds one receiver of the hub and keeps its own environment's changes. On
//! connect it sends the current revision (unless `Last-Event-ID` already names it); on overflow
//! (the stream fell more than the hub's capacity behind, e.g. a client that stopped reading)
//! it sends the latest revision from the snapshot, so the writer and other streams never wait.
//! Every keep-alive interval it writes a comment, which is also when it checks that its key is
//! still active and when a gone client's write fails; the hub closing (shutdown) ends it.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, Responder as _, web};
use actix_web_lab::sse::{self, Sse};
use async_broadcast::{Receiver, RecvError};
use futures_util::Stream;
use serde::Serialize;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::error::ApiError;
use crate::http::auth::ServerKey;
use crate::hub::Change;
use crate::keys::Keys;
use crate::snapshot::{Snapshot, Snapshots};
use crate::state::Serving;

/// The `retry:` hint: how long a client waits before reconnecting after the stream ends.
const RETRY: Duration = Duration::from_secs(3);

pub async fn stream(
    key: ServerKey,
    req: HttpRequest,
    state: web::Data<Serving>,
) -> Result<HttpResponse, ApiError> {
    // Subscribe before reading the snapshot, so no change falls between the two.
    let receiver = state.hub.subscribe();
    let snapshot = state
        .snapshots
        .get(key.environment_id)
        .ok_or_else(crate::http::auth::environment_gone)?;
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let keep_alive = Duration::from_secs(state.settings.serve.stream_keepalive_secs.max(1));
    let body = RevisionStream::new(
        state.snapshots.clone(),
        state.keys.clone(),
        key,
        receiver,
        &snapshot,
        last_event_id,
        keep_alive,
    );
    let mut resp = Sse::from_stream(body).with_retry_duration(RETRY).respond_to(&req);
    // Tells nginx (and alike) not to buffer the stream.
    resp.headers_mut().insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(resp)
}

/// The events of one SDK stream.
pub struct RevisionStream {
    snapshots: Arc<Snapshots>,
    keys: Arc<Keys>,
    environment_id: i64,
    key_id: i64,
    receiver: Receiver<Arc<Change>>,
    keep_alive: Interval,
    /// The event to send before anything else (the connect event).
    first: Option<sse::Event>,
    /// The newest revision the client has (sent, or named by `Last-Event-ID`).
    sent: u64,
    ended: bool,
}

#[derive(Serialize)]
struct Payload<'a, I: Serialize> {
    revision: u64,
    etag: &'a str,
    changed: I,
}

fn event(revision: u64, etag: &str, changed: impl Serialize) -> sse::Event {
    let data = serde_json::to_string(&Payload {
        revision,
        etag,
        changed,
    })
    .expect("a payload of numbers and strings always serialises");
    sse::Data::new(data).id(revision.to_string()).into()
}

/// The event that tells a client to catch up with `snapshot`: the client's view may be any
/// older revision, so every flag is listed as changed.
fn catch_up(snapshot: &Snapshot) -> sse::Event {
    let flags: Vec<&str> = snapshot.engine.flags().map(|f| f.key()).collect();
    event(snapshot.revision, &snapshot.etag, flags)
}

impl RevisionStream {
    pub fn new(
        snapshots: Arc<Snapshots>,
        keys: Arc<Keys>,
        key: ServerKey,
        receiver: Receiver<Arc<Change>>,
        snapshot: &Snapshot,
        last_event_id: Option<u64>,
        keep_alive: Duration,
    ) -> RevisionStream {
        let first = (last_event_id != Some(snapshot.revision)).then(|| catch_up(snapshot));
        let mut keep_alive = tokio::time::interval_at(Instant::now() + keep_alive, keep_alive);
        keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        RevisionStream {
            snapshots,
            keys,
            environment_id: key.environment_id,
            key_id: key.id,
            receiver,
            keep_alive,
            first,
            sent: snapshot.revision,
            ended: false,
        }
    }

    fn end(&mut self) -> Poll<Option<Result<sse::Event, Infallible>>> {
        self.ended = true;
        Poll::Ready(None)
    }
}

impl Stream for RevisionStream {
    type Item = Result<sse::Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        loop {
            match Pin::new(&mut this.receiver).poll_recv(cx) {
                Poll::Ready(Some(Ok(change))) => {
                    if change.environment_id == this.environment_id && change.revision > this.sent {
                        this.sent = change.revision;
                        return Poll::Ready(Some(Ok(event(change.revision, &change.etag, &*change.flags))));
                    }
                }
                Poll::Ready(Some(Err(RecvError::Overflowed(_)))) => {
                    // Changes were lost: whatever they were, the snapshot holds their result.
                    match this.snapshots.get(this.environment_id) {
                        Some(snapshot) if snapshot.revision > this.sent => {
                            this.sent = snapshot.revision;
                            return Poll::Ready(Some(Ok(catch_up(&snapshot))));
                        }
                        Some(_) => {}
                        None => return this.end(),
                    }
                }
                // The hub closed: the server is shutting down.
                Poll::Ready(None) | Poll::Ready(Some(Err(RecvError::Closed))) => return this.end(),
                Poll::Pending => break,
            }
        }
        if this.keep_alive.poll_tick(cx).is_ready() {
            if !this.keys.is_active(this.key_id) || this.snapshots.get(this.environment_id).is_none() {
                // Revoked key or deleted environment: end the stream; reconnecting gets a 401.
                return this.end();
            }
            return Poll::Ready(Some(Ok(sse::Event::Comment("keep-alive".into()))));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;
    use futures_util::future::poll_fn;

    use super::*;
    use crate::AppState;
    use crate::config::Settings;
    use crate::hub::Change;
    use crate::store::{Changes, api_keys};

    async fn data_of(event: sse::Event) -> serde_json::Value {
        let body = actix_web::body::to_bytes(Sse::from_stream(futures_util::stream::iter([Ok::<
            _,
            Infallible,
        >(event)])))
        .await
        .expect("encodes");
        let body = std::str::from_utf8(&body).expect("UTF-8");
        let json = body
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("a data line");
        serde_json::from_str(json).expect("JSON data")
    }

    #[actix_web::test]
    async fn a_stream_that_fell_behind_is_sent_the_latest_revision() {
        let dir = tempfile::tempdir().unwrap();
        let state = AppState::open(Settings::with_data_dir(dir.path())).unwrap();
        let (env, key_id) = state
            .write_blocking(|tx| {
                tx.execute(
                    "INSERT INTO projects (key, name, created_at, updated_at) VALUES ('p', 'P', 0, 0)",
                    [],
                )?;
                tx.execute(
                    "INSERT INTO environments (project_id, key, name, position, created_at, updated_at)
                     VALUES (1, 'production', 'Production', 0, 0, 0)",
                    [],
                )?;
                let env = tx.last_insert_rowid();
                let (key_id, _) = api_keys::create(tx, env, api_keys::KeyKind::Server, "k", None)?;
                let mut changes = Changes {
                    api_keys: true,
                    ..Changes::default()
                };
                changes.environment(env);
                Ok(((env, key_id), changes))
            })
            .unwrap();
        let snapshot = state.snapshots.get(env).unwrap();
        let key = ServerKey {
            id: key_id,
            environment_id: env,
        };
        let mut stream = RevisionStream::new(
            state.snapshots.clone(),
            state.keys.clone(),
            key,
            state.hub.subscribe(),
            &snapshot,
            None,
            Duration::from_secs(3600),
        );
        let first = data_of(stream.next().await.unwrap().unwrap()).await;
        assert_eq!(first["revision"], snapshot.revision);

        // A real change, then more changes of another environment than the hub holds: the real
        // one is pushed out of this receiver's queue.
        state
            .write_blocking(move |_| {
                let mut changes = Changes::default();
                changes.environment(env);
                Ok(((), changes))
            })
            .unwrap();
        let latest = state.snapshots.get(env).unwrap().revision;
        assert_eq!(latest, snapshot.revision + 1);
        for revision in 0..1000 {
            state.hub.publish(Change {
                environment_id: env + 1000,
                revision,
                etag: String::new(),
                flags: Arc::from(Vec::new()),
            });
        }
        let next = tokio::time::timeout(Duration::from_secs(30), stream.next()).await;
        let caught_up = data_of(next.expect("the latest revision is sent").unwrap().unwrap()).await;
        assert_eq!(caught_up["revision"], latest);
        // Nothing else is pending for this environment.
        let pending = poll_fn(|cx| Poll::Ready(Pin::new(&mut stream).poll_next(cx))).await;
        assert!(pending.is_pending(), "only one catch-up event is sent");
    }
}
