//! The one loop that follows changes for every Server-Sent Events endpoint: `/sdk/v1/stream`,
//! `/ofrep/v1/stream` and the relays' `/sdk/v1/relay/stream`. Each endpoint keeps its own wire
//! format; what they share is here.
//!
//! * [`Follow`] holds one receiver of the hub (and, for relays, of the keys' changes) and a
//!   keep-alive clock, and says what happened next ([`Signal`]): a change, changes missed
//!   because the stream fell more than the hub's capacity behind (a client that stopped
//!   reading), keys changed, or a quiet keep-alive interval. It ends when the hub closes
//!   (shutdown). The writer and the other streams never wait for it.
//! * [`environment`] is the stream of one environment's revisions for an SDK or OFREP caller:
//!   on connect the current revision unless `Last-Event-ID` names it, then one event per newer
//!   revision, the latest snapshot after missed changes, a keep-alive comment every interval;
//!   it ends when the key is revoked or the environment deleted (checked on every event and
//!   every interval, so within one interval however quiet), and reconnecting then gets a 401.
//! * [`respond`] makes the response: the `retry:` hint, and `X-Accel-Buffering: no` so that
//!   nginx and alike pass events through unbuffered.
//!
//! Nothing is allocated per change beyond the event the endpoint writes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, Responder as _};
use actix_web_lab::sse::{self, Sse};
use async_broadcast::{Receiver, RecvError};
use futures_util::{Stream, StreamExt as _};
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::config::Settings;
use crate::hub::{Change, Hub};
use crate::keys::Keys;
use crate::snapshot::{Snapshot, Snapshots};

/// What a followed stream learns next.
#[derive(Debug)]
pub enum Signal {
    /// An environment changed (any environment: the follower keeps its own).
    Change(Arc<Change>),
    /// Changes were lost while the stream lagged: whatever they were, the snapshots hold their
    /// result.
    Missed,
    /// The SDK, client or relay keys changed (only when following keys).
    Keys,
    /// A keep-alive interval passed: check the caller may still listen, and write a comment.
    KeepAlive,
}

/// The hub, the keys and the clock, as one stream follows them.
pub struct Follow {
    changes: Receiver<Arc<Change>>,
    keys: Option<watch::Receiver<u64>>,
    keep_alive: Interval,
}

impl Follow {
    /// Subscribes to `hub` now (before the caller reads the current state, so no change falls
    /// in between), and to `keys` if given; the first keep-alive is one `period` from now.
    pub fn new(hub: &Hub, keys: Option<watch::Receiver<u64>>, period: Duration) -> Follow {
        let mut keep_alive = tokio::time::interval_at(Instant::now() + period, period);
        keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Follow {
            changes: hub.subscribe(),
            keys,
            keep_alive,
        }
    }

    /// What happened next; `None` once the hub (or the keys' channel) closed: the server is
    /// shutting down. Changes come before keys, keys before the clock.
    pub async fn next(&mut self) -> Option<Signal> {
        let Follow {
            changes,
            keys,
            keep_alive,
        } = self;
        let keys_changed = async {
            match keys {
                Some(keys) => keys.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            received = changes.recv() => match received {
                Ok(change) => Some(Signal::Change(change)),
                Err(RecvError::Overflowed(_)) => Some(Signal::Missed),
                Err(RecvError::Closed) => None,
            },
            changed = keys_changed => changed.ok().map(|()| Signal::Keys),
            _ = keep_alive.tick() => Some(Signal::KeepAlive),
        }
    }
}

/// The keep-alive interval of streams (`--stream-keepalive-secs`, at least a second).
pub fn keep_alive(settings: &Settings) -> Duration {
    Duration::from_secs(settings.serve.stream_keepalive_secs.max(1))
}

/// What an environment stream announces; the endpoint writes it as its wire wants.
pub enum Revision<'a> {
    /// One change, as the hub told it.
    Change(&'a Change),
    /// The client may hold any older revision (it just connected, or changes were missed):
    /// the whole snapshot is news.
    CatchUp(&'a Snapshot),
}

/// The caller an environment stream serves.
#[derive(Debug, Clone, Copy)]
pub struct Listener {
    pub environment_id: i64,
    /// The key it connected with: the stream ends when it is revoked.
    pub key_id: i64,
}

/// The state of one environment stream between events.
struct EnvironmentStream {
    follow: Follow,
    snapshots: Arc<Snapshots>,
    keys: Arc<Keys>,
    listener: Listener,
    /// The newest revision the client has been sent (or had on connect).
    sent: u64,
    announce: fn(Revision<'_>) -> sse::Event,
}

impl EnvironmentStream {
    fn may_listen(&self) -> bool {
        self.keys.is_active(self.listener.key_id)
    }

    async fn next(mut self) -> Option<(Result<sse::Event, Infallible>, EnvironmentStream)> {
        loop {
            let event = match self.follow.next().await? {
                Signal::Change(change) => {
                    if change.environment_id != self.listener.environment_id || change.revision <= self.sent {
                        continue;
                    }
                    if !self.may_listen() {
                        return None;
                    }
                    self.sent = change.revision;
                    (self.announce)(Revision::Change(&change))
                }
                Signal::Missed => {
                    // The environment is gone: end; reconnecting gets a 401.
                    let snapshot = self.snapshots.get(self.listener.environment_id)?;
                    if snapshot.revision <= self.sent {
                        continue;
                    }
                    if !self.may_listen() {
                        return None;
                    }
                    self.sent = snapshot.revision;
                    (self.announce)(Revision::CatchUp(&snapshot))
                }
                Signal::Keys => continue,
                Signal::KeepAlive => {
                    if !self.may_listen() || self.snapshots.get(self.listener.environment_id).is_none() {
                        return None;
                    }
                    sse::Event::Comment("keep-alive".into())
                }
            };
            return Some((Ok(event), self));
        }
    }
}

/// The events of one environment for `listener`, each written by `announce`; `None` when the
/// environment does not exist. `last_event_id` is the revision the client says it has.
pub fn environment(
    hub: &Hub,
    snapshots: Arc<Snapshots>,
    keys: Arc<Keys>,
    listener: Listener,
    last_event_id: Option<u64>,
    keep_alive: Duration,
    announce: fn(Revision<'_>) -> sse::Event,
) -> Option<impl Stream<Item = Result<sse::Event, Infallible>> + 'static> {
    // Subscribe before reading the snapshot, so no change falls between the two.
    let follow = Follow::new(hub, None, keep_alive);
    let snapshot = snapshots.get(listener.environment_id)?;
    // A new subscriber may have missed a change since it last fetched, and one resuming after a
    // gap has missed whatever happened meanwhile: unless it says it has exactly the current
    // revision, it is told now.
    let first =
        (last_event_id != Some(snapshot.revision)).then(|| Ok(announce(Revision::CatchUp(&snapshot))));
    let state = EnvironmentStream {
        follow,
        snapshots,
        keys,
        listener,
        sent: snapshot.revision,
        announce,
    };
    Some(
        futures_util::stream::iter(first).chain(futures_util::stream::unfold(state, EnvironmentStream::next)),
    )
}

/// The revision named by `Last-Event-ID`, if any and a number.
pub fn last_event_id(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// The response carrying `events`, with the `retry:` hint (how long a client waits before
/// reconnecting after the stream ends) and no buffering by proxies.
pub fn respond(
    req: &HttpRequest,
    events: impl Stream<Item = Result<sse::Event, Infallible>> + 'static,
    retry: Duration,
) -> HttpResponse {
    let mut res = Sse::from_stream(events)
        .with_retry_duration(retry)
        .respond_to(req);
    res.headers_mut().insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    res
}
