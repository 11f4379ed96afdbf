//! The deliverer: one task per server that walks each enabled webhook through the audit log.
//!
//! It wakes on every announced change (the hub) and at least every [`TICK`], and only the process
//! holding `work/webhooks.lock` delivers (an OS file lock: it is released when its process ends,
//! even by `kill -9`, and another `flagstaff serve` on the same data dir takes over). Each webhook
//! is driven by at most one task at a time, one event after the other, so its events arrive in
//! the order of their changes. A failed attempt (anything but 2xx, no answer within [`TIMEOUT`],
//! a refused address) is retried after an exponential backoff with jitter from
//! `--webhook-retry-base-ms` up to [`MAX_DELAY`], for the retry window (24 hours); then the event
//! is recorded as failed, the position moves past it, and the webhook is disabled with the
//! reason shown to admins. Enabling it again goes on with the next event.
//!
//! Requests follow no redirect, use no proxy, and connect only to addresses checked by
//! [`super::address`] (the resolver below refuses names that resolve only to refused addresses;
//! literal addresses are checked before sending).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng as _;

use super::{Event, TEST_EVENT, address};
use crate::AppState;
use crate::store::webhooks::{self as store, Attempt, Retry, Target};
use crate::store::{self as db, Changes, now_ms};

/// A request gets this long to be answered, body included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two attempts of an event.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);
/// The deliverer looks for new audit entries at least this often (changes that the hub does not
/// announce — keys, webhooks — and writes by other processes).
pub const TICK: Duration = Duration::from_secs(1);
/// Bytes of an answer's body kept with the attempt.
pub const RESPONSE_EXCERPT: usize = 1024;
/// Audit entries read at once per webhook.
const BATCH: u32 = 100;

/// What one attempt gave.
#[derive(Debug, Clone)]
pub struct Sent {
    pub status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response: Option<String>,
}

impl Sent {
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// The HTTP client of webhooks.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

/// Resolves names, keeping only the addresses webhooks may reach.
struct CheckedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if allow_private {
                return Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs);
            }
            let mut why = None;
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match address::refused(a.ip()) {
                    Some(reason) => {
                        why.get_or_insert_with(|| format!("{} is {reason}", a.ip()));
                        false
                    }
                    None => true,
                })
                .collect();
            if kept.is_empty() {
                let why = why.unwrap_or_else(|| "no address".to_owned());
                return Err(format!(
                    "{host} is refused: {why} (--webhook-allow-private lets webhooks reach it)"
                )
                .into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl Sender {
    pub fn new(allow_private: bool) -> Sender {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(TIMEOUT)
            .user_agent(concat!("Flagstaff/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(CheckedResolver { allow_private }))
            .build()
            .expect("the webhook client's settings are valid");
        Sender {
            client,
            allow_private,
        }
    }

    /// POSTs `body` to `url`, signed with `secret`.
    pub async fn send(&self, url: &str, secret: &str, event_id: &str, body: Vec<u8>) -> Sent {
        let started = Instant::now();
        let failed = |error: String| Sent {
            status: None,
            latency_ms: started.elapsed().as_millis() as i64,
            error: Some(error),
            response: None,
        };
        let parsed = match url::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return failed(format!("the URL is invalid: {e}")),
        };
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && !self.allow_private
            && let Some(reason) = address::refused(ip)
        {
            return failed(format!(
                "{ip} is {reason} (--webhook-allow-private lets webhooks reach it)"
            ));
        }
        let t = now_ms() / 1000;
        let request = self
            .client
            .post(parsed)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Flagstaff-Signature", super::signature(secret, t, &body))
            .header("Flagstaff-Event-Id", event_id)
            .body(body);
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => return failed(describe(&e.without_url())),
        };
        let status = response.status().as_u16();
        let mut excerpt = Vec::new();
        let mut error = None;
        while excerpt.len() < RESPONSE_EXCERPT {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    error = Some(describe(&e.without_url()));
                    break;
                }
            }
        }
        excerpt.truncate(RESPONSE_EXCERPT);
        if (300..400).contains(&status) {
            error = Some(format!(
                "redirects are not followed (Location: {})",
                response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
            ));
        }
        Sent {
            status: Some(status),
            latency_ms: started.elapsed().as_millis() as i64,
            error,
            response: Some(String::from_utf8_lossy(&excerpt).into_owned()),
        }
    }
}

/// An error and its causes, one after the other.
fn describe(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The wait before attempt `attempts + 1`: `base` doubled per failed attempt, at most
/// [`MAX_DELAY`], and a random half of it taken off (jitter, so receivers coming back are not
/// hit by every sender at once).
pub fn backoff(base: Duration, attempts: i64) -> Duration {
    let doubled = base.saturating_mul(1u32 << attempts.clamp(1, 31).saturating_sub(1) as u32);
    let delay = doubled.min(MAX_DELAY.max(base));
    let half = delay / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

/// Starts the deliverer on the current runtime; abort the handle to stop it.
pub fn spawn(state: AppState) -> actix_web::rt::task::JoinHandle<()> {
    actix_web::rt::spawn(run(state))
}

async fn run(state: AppState) {
    let lock_path = state.store.live_path().with_file_name("webhooks.lock");
    let sender = Sender::new(state.settings.serve.webhooks.webhook_allow_private);
    let mut lock: Option<std::fs::File> = None;
    let mut changes = state.hub.subscribe();
    let mut driving: HashMap<i64, actix_web::rt::task::JoinHandle<()>> = HashMap::new();
    loop {
        if lock.is_none() {
            lock = take_lock(&lock_path);
        }
        if lock.is_some() {
            driving.retain(|_, task| !task.is_finished());
            let found = {
                let store = state.store.clone();
                db::run_blocking(move || store.read_blocking(store::targets)).await
            };
            match found {
                Ok(targets) => {
                    for target in targets {
                        if driving.contains_key(&target.webhook.id) {
                            continue;
                        }
                        let id = target.webhook.id;
                        let (state, sender) = (state.clone(), sender.clone());
                        driving.insert(id, actix_web::rt::spawn(drive(state, sender, target)));
                    }
                }
                Err(e) => tracing::error!(error = %e, "reading webhooks failed; retried in a second"),
            }
        }
        if changes.is_closed() {
            actix_web::rt::time::sleep(TICK).await;
        } else {
            tokio::select! {
                _ = changes.recv() => {}
                () = actix_web::rt::time::sleep(TICK) => {}
            }
        }
    }
}

/// Takes the data dir's delivery lock if no other process holds it.
fn take_lock(path: &std::path::Path) -> Option<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path);
    match file {
        Ok(file) => match file.try_lock() {
            Ok(()) => Some(file),
            Err(std::fs::TryLockError::WouldBlock) => None,
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::error!(error = %e, path = %path.display(), "cannot lock for webhook delivery");
                None
            }
        },
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "cannot open the webhook delivery lock");
            None
        }
    }
}

/// Delivers a webhook's pending events in order until it is caught up or one fails.
async fn drive(state: AppState, sender: Sender, mut target: Target) {
    if let Err(e) = drive_inner(&state, &sender, &mut target).await {
        tracing::error!(webhook = target.webhook.id, error = %e, "webhook delivery failed; retried in a second");
    }
}

async fn drive_inner(state: &AppState, sender: &Sender, target: &mut Target) -> db::Result<()> {
    let settings = &state.settings.serve.webhooks;
    let base = Duration::from_millis(settings.webhook_retry_base_ms);
    let window = settings.webhook_retry_window_secs as i64 * 1000;
    let id = target.webhook.id;
    let filter = target.webhook.filter();
    loop {
        if let Some(retry) = target.retry
            && retry.next_attempt_at > now_ms()
        {
            return Ok(());
        }
        let (project, position) = (target.webhook.project.clone(), target.position);
        let (entries, newest) = state
            .store
            .read(move |conn| {
                // The newest id first: every entry up to it is then in the list below.
                let newest: i64 =
                    conn.query_row("SELECT coalesce(max(id), 0) FROM audit_entries", [], |r| r.get(0))?;
                let entries = store::entries_after(conn, &project, position, BATCH)?;
                Ok((
                    entries.into_iter().filter(|e| e.id <= newest).collect::<Vec<_>>(),
                    newest,
                ))
            })
            .await?;
        let full = entries.len() as u32 == BATCH;
        let mut done = position;
        for entry in entries {
            let event = Event::from_audit(&entry);
            if !filter.wants(&event.event_type, event.environment.as_deref()) {
                done = entry.id;
                continue;
            }
            let body = event.body(target.webhook.format);
            let sent = sender
                .send(&target.webhook.url, &target.secret, &event.id, body)
                .await;
            let now = now_ms();
            let mut attempt = Attempt {
                id: 0,
                audit_id: Some(entry.id),
                event_id: event.id.clone(),
                event_type: event.event_type.clone(),
                at: now,
                status: sent.status,
                latency_ms: sent.latency_ms,
                error: sent.error.clone(),
                response: sent.response.clone(),
                outcome: "delivered".into(),
            };
            if sent.delivered() {
                state
                    .store
                    .operational(move |tx| {
                        store::record_attempt(tx, id, &attempt)?;
                        store::advance(tx, id, entry.id, true)
                    })
                    .await?;
                done = entry.id;
                target.position = done;
                target.retry = None;
                continue;
            }
            let (since, attempts) = match target.retry {
                Some(r) if r.audit_id == entry.id => (r.since, r.attempts + 1),
                _ => (now, 1),
            };
            if now - since >= window {
                attempt.outcome = "failed".into();
                state
                    .store
                    .operational(move |tx| {
                        store::record_attempt(tx, id, &attempt)?;
                        store::advance(tx, id, entry.id, false)
                    })
                    .await?;
                let reason = format!(
                    "Disabled at {}: every attempt to deliver event {} ({}) failed from {} on; it was given up. \
                     Last error: {}",
                    rfc3339(now),
                    event.id,
                    event.event_type,
                    rfc3339(since),
                    sent.error
                        .clone()
                        .or_else(|| sent.status.map(|s| format!("HTTP {s}")))
                        .unwrap_or_default()
                );
                tracing::warn!(webhook = id, event = %event.id, "webhook disabled after failing for the whole retry window");
                state
                    .write(move |tx| Ok((store::disable_for_failures(tx, id, &reason)?, Changes::default())))
                    .await?;
                return Ok(());
            }
            let next = (now + backoff(base, attempts).as_millis() as i64).min(since + window);
            let retry = Retry {
                audit_id: entry.id,
                since,
                attempts,
                next_attempt_at: next,
            };
            attempt.outcome = "retrying".into();
            state
                .store
                .operational(move |tx| {
                    store::record_attempt(tx, id, &attempt)?;
                    store::retry_later(tx, id, done, retry)
                })
                .await?;
            return Ok(());
        }
        if !full {
            done = done.max(newest);
        }
        if done > target.position {
            // Only entries this webhook does not want lie between: no attempt to record.
            state
                .store
                .operational(move |tx| store::advance(tx, id, done, false))
                .await?;
            target.position = done;
        }
        if !full {
            return Ok(());
        }
    }
}

/// Sends a test event to a webhook of a project and records the attempt (outcome `test`); the
/// webhook's position is untouched.
pub async fn send_test(state: &AppState, project: &str, id: i64, actor: &str) -> db::Result<Attempt> {
    let (p, pid) = (project.to_owned(), id);
    let (webhook, secret) = state
        .store
        .read(move |conn| Ok((store::get(conn, &p, pid)?, store::secret(conn, &p, pid)?)))
        .await?;
    let mut nonce = [0u8; 12];
    rand::rng().fill(&mut nonce);
    let now = now_ms();
    let event = Event {
        id: format!("evt_test_{}", hex::encode(nonce)),
        event_type: TEST_EVENT.to_owned(),
        at: rfc3339(now),
        project: Some(webhook.project.clone()),
        environment: None,
        actor: actor.to_owned(),
        resource: super::Resource {
            kind: "webhook".into(),
            key: Some(id.to_string()),
        },
        before: None,
        after: Some(serde_json::json!({"message": "A test event sent from Flagstaff's admin pages or API."})),
        audit_id: None,
    };
    let sender = Sender::new(state.settings.serve.webhooks.webhook_allow_private);
    let sent = sender
        .send(&webhook.url, &secret, &event.id, event.body(webhook.format))
        .await;
    let attempt = Attempt {
        id: 0,
        audit_id: None,
        event_id: event.id,
        event_type: event.event_type,
        at: now,
        status: sent.status,
        latency_ms: sent.latency_ms,
        error: sent.error,
        response: sent.response,
        outcome: "test".into(),
    };
    let recorded = attempt.clone();
    let id = state
        .store
        .operational(move |tx| {
            store::record_attempt(tx, pid, &recorded)?;
            Ok(tx.last_insert_rowid())
        })
        .await;
    Ok(Attempt {
        id: id.unwrap_or(0),
        ..attempt
    })
}

/// Unix ms as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_an_hour() {
        let base = Duration::from_secs(10);
        for attempts in 1..=40 {
            let full = base
                .saturating_mul(1u32 << ((attempts - 1).min(31) as u32))
                .min(MAX_DELAY);
            let d = backoff(base, attempts);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempts}: {d:?} outside {:?}..={full:?}",
                full / 2
            );
        }
    }
}
