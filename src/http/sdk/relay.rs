//! What relays read from their primary (DESIGN.md §8), with a relay key (`fs_rly_…`) of the
//! project:
//!
//! * `GET /sdk/v1/relay`: every environment of the project with its bundle (the very bytes
//!   `/sdk/v1/bundle` serves, so a relay serves the same bytes and ETags), and the ids, kinds,
//!   environments and SHA-256 hashes of the active SDK keys — never a key. `ETag`, 304.
//! * `GET /sdk/v1/relay/stream`: Server-Sent Events, one `data: {"etag": …}` whenever that
//!   document changes (a flag, a segment, an environment, a key), first on connect; keep-alive
//!   comments; it ends when the relay key is revoked.
//! * `POST /sdk/v1/relay/events`: the evaluation counts and key uses a relay took in
//!   ([`crate::events::RelayBatch`]).
//!
//! Like the rest of the SDK path, all of it answers from memory.

use std::collections::HashSet;
use std::convert::Infallible;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, ServiceConfig};
use actix_web::{FromRequest, HttpRequest, HttpResponse};
use actix_web_lab::sse;
use serde_json::json;

use crate::error::ApiError;
use crate::events::RelayBatch;
use crate::http::auth::bearer;
use crate::http::change_stream::{self, Follow, Signal};
use crate::http::conditional::IfNoneMatch;
use crate::snapshot::Snapshot;
use crate::state::Serving;
use crate::store::api_keys::ActiveKey;

/// Version of the relay document's format.
pub const FORMAT: u32 = 1;

/// Registers the relay routes (only on a primary: a relay does not relay).
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::scope("/sdk/v1/relay")
            .route("", web::get().to(document))
            .route("/stream", web::get().to(stream))
            .route("/events", web::post().to(events)),
    );
}

/// A relay key: reads what a relay needs of one project. 401 when missing, unknown or revoked;
/// 403 for an SDK key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayKey {
    pub id: i64,
    pub project_id: i64,
}

impl FromRequest for RelayKey {
    type Error = ApiError;
    type Future = std::future::Ready<Result<RelayKey, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready((|| {
            let state = req
                .app_data::<web::Data<Serving>>()
                .ok_or_else(|| ApiError::Internal("application state missing".into()))?;
            let Some(secret) = bearer(req) else {
                return Err(ApiError::Unauthorized(
                    "a relay key is required: Authorization: Bearer <key>".into(),
                ));
            };
            if let Some(key) = state.keys.find_relay(secret) {
                return Ok(RelayKey {
                    id: key.id,
                    project_id: key.project_id,
                });
            }
            if state.keys.find(secret).is_some() {
                return Err(ApiError::Forbidden(
                    "an SDK key cannot read a relay's document: create a relay key (POST /api/v1/projects/{project}/keys with {\"kind\": \"relay\"})".into(),
                ));
            }
            Err(ApiError::Unauthorized(
                "the relay key is unknown or revoked".into(),
            ))
        })())
    }
}

/// What the relay document of a project holds: its environments' snapshots and their keys.
fn parts(state: &Serving, project_id: i64) -> (Vec<Arc<Snapshot>>, Vec<ActiveKey>) {
    let mut snapshots: Vec<_> = state
        .snapshots
        .all()
        .into_iter()
        .filter(|s| s.project_id == project_id)
        .collect();
    snapshots.sort_by_key(|s| s.environment_id);
    let ids: HashSet<i64> = snapshots.iter().map(|s| s.environment_id).collect();
    let keys = state.keys.of_environments(&ids);
    (snapshots, keys)
}

/// The document's ETag: a hash of its environments' ETags and its keys.
fn tag(snapshots: &[Arc<Snapshot>], keys: &[ActiveKey]) -> String {
    let mut tag = xxhash_rust::xxh3::Xxh3::new();
    for s in snapshots {
        tag.update(&s.environment_id.to_le_bytes());
        tag.update(s.etag.as_bytes());
    }
    for k in keys {
        tag.update(&k.id.to_le_bytes());
        tag.update(&k.hash);
    }
    format!("\"relay-{:032x}\"", tag.digest128())
}

/// The ETag of the relay document of a project, without writing the document.
pub fn etag(state: &Serving, project_id: i64) -> String {
    let (snapshots, keys) = parts(state, project_id);
    tag(&snapshots, &keys)
}

/// The relay document of a project and its ETag, from the current snapshots and keys.
pub fn build(state: &Serving, project_id: i64) -> (Vec<u8>, String) {
    let (snapshots, keys) = parts(state, project_id);
    let etag = tag(&snapshots, &keys);
    let size: usize = snapshots.iter().map(|s| s.bundle.len() + 128).sum::<usize>() + keys.len() * 128 + 64;
    let mut out = Vec::with_capacity(size);
    let write = "writing JSON to a Vec cannot fail";
    write!(
        out,
        "{{\"flagstaff_relay\":{FORMAT},\"project_id\":{project_id},\"environments\":["
    )
    .expect(write);
    for (i, s) in snapshots.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write!(out, "{{\"id\":{},\"key\":", s.environment_id).expect(write);
        serde_json::to_writer(&mut out, &s.environment).expect(write);
        write!(out, ",\"revision\":{},\"etag\":", s.revision).expect(write);
        serde_json::to_writer(&mut out, &s.etag).expect(write);
        // The bundle's own bytes: a relay keeps them as they are.
        out.extend_from_slice(b",\"bundle\":");
        out.extend_from_slice(&s.bundle);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"keys\":");
    let keys: Vec<_> = keys
        .iter()
        .map(|k| json!({"id": k.id, "environment_id": k.environment_id, "kind": k.kind.as_str(), "sha256": hex::encode(k.hash)}))
        .collect();
    serde_json::to_writer(&mut out, &keys).expect(write);
    out.push(b'}');
    (out, etag)
}

/// `GET /sdk/v1/relay`.
async fn document(
    key: RelayKey,
    if_none_match: IfNoneMatch,
    state: web::Data<Serving>,
) -> Result<HttpResponse, ApiError> {
    let (body, etag) = build(&state, key.project_id);
    let etag_value = HeaderValue::try_from(etag.as_str()).map_err(|e| ApiError::Internal(Box::new(e)))?;
    if if_none_match.matches(&etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag_value))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag_value))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .content_type("application/json")
        .body(body))
}

/// What one relay stream follows: every change and every change of keys, on the shared loop
/// ([`crate::http::change_stream`]).
struct RelayStream {
    state: web::Data<Serving>,
    key: RelayKey,
    follow: Follow,
    /// The ETag last announced.
    sent: Option<String>,
}

impl RelayStream {
    async fn next(mut self) -> Option<(Result<sse::Event, Infallible>, RelayStream)> {
        loop {
            let etag = etag(&self.state, self.key.project_id);
            if self.sent.as_deref() != Some(etag.as_str()) {
                let data = json!({ "etag": etag }).to_string();
                self.sent = Some(etag);
                return Some((Ok(sse::Data::new(data).into()), self));
            }
            match self.follow.next().await? {
                // Any change may be this project's: the ETag above tells.
                Signal::Change(_) | Signal::Missed => {}
                Signal::Keys => {
                    if !self.state.keys.is_relay_active(self.key.id) {
                        return None;
                    }
                }
                Signal::KeepAlive => {
                    if !self.state.keys.is_relay_active(self.key.id) {
                        return None;
                    }
                    return Some((Ok(sse::Event::Comment("keep-alive".into())), self));
                }
            }
        }
    }
}

/// `GET /sdk/v1/relay/stream`.
async fn stream(
    key: RelayKey,
    req: HttpRequest,
    state: web::Data<Serving>,
) -> Result<HttpResponse, ApiError> {
    let mut keys = state.keys.changes();
    keys.mark_unchanged();
    let follow = Follow::new(&state.hub, Some(keys), change_stream::keep_alive(&state.settings));
    let stream = RelayStream {
        state: state.clone(),
        key,
        follow,
        sent: None,
    };
    let events = futures_util::stream::unfold(stream, RelayStream::next);
    Ok(change_stream::respond(&req, events, Duration::from_secs(3)))
}

/// Most entries of a relay's batch (a relay sends more in several).
pub const MAX_BATCH: usize = 10_000;

/// `POST /sdk/v1/relay/events`: counts for environments of the relay key's project, on flags
/// and variants they have, and uses of their keys; anything else is ignored (and counted in the
/// answer), as `POST /sdk/v1/events` does.
async fn events(
    key: RelayKey,
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<Serving>,
) -> Result<HttpResponse, ApiError> {
    let body = super::events::read_body(&req, &mut payload).await?;
    let batch: RelayBatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a relay batch: {e}"), None))?;
    if batch.counts.len() + batch.keys_used.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            format!("a batch holds at most {MAX_BATCH} counts and key uses together"),
            Some("counts"),
        ));
    }
    let now = crate::store::now_ms();
    let current = state.snapshots.current();
    let ours = |environment_id: i64| {
        current
            .get(environment_id)
            .filter(|s| s.project_id == key.project_id)
    };
    let total = batch.counts.len() + batch.keys_used.len();
    let counts: Vec<_> = batch
        .counts
        .into_iter()
        .filter(|c| {
            c.count > 0
                && ours(c.environment_id).is_some_and(|s| {
                    s.engine
                        .flag(&c.flag)
                        .is_some_and(|f| f.variations().any(|(variant, _)| variant == c.variant))
                })
        })
        .map(|mut c| {
            // A relay's clock may run ahead: nothing is counted in the future.
            c.at = c.at.min(now);
            c
        })
        .collect();
    let ids: HashSet<i64> = state
        .snapshots
        .all()
        .iter()
        .filter(|s| s.project_id == key.project_id)
        .map(|s| s.environment_id)
        .collect();
    let project_keys: HashSet<i64> = state.keys.of_environments(&ids).iter().map(|k| k.id).collect();
    let keys_used: Vec<_> = batch
        .keys_used
        .into_iter()
        .filter(|k| project_keys.contains(&k.id))
        .map(|mut k| {
            k.at = k.at.min(now);
            k
        })
        .collect();
    let evaluations: u64 = counts.iter().map(|c| c.count).sum();
    crate::metrics::record_evaluations(crate::metrics::Source::Sdk, evaluations);
    let accepted = counts.len() + keys_used.len();
    state.events.add_relay_batch(RelayBatch { counts, keys_used });
    Ok(HttpResponse::Accepted().json(json!({"accepted": accepted, "ignored": total - accepted})))
}
