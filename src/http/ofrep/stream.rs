//! `GET /ofrep/v1/stream`: Server-Sent Events, one `refetchEvaluation` per change of the
//! caller's environment, `id:` = the environment's revision, `Last-Event-ID` honoured; the
//! stream ends when the key is revoked. The loop is the shared one
//! ([`crate::http::change_stream`]); what is OFREP's is who may listen and the event.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_lab::sse;
use serde::Deserialize;

use super::OfrepError;
use super::token::{StreamToken, unix_now};
use crate::error::ApiError;
use crate::http::auth::{EvaluationKey, SdkKey};
use crate::http::change_stream::{self, Listener, Revision};
use crate::state::Serving;
use crate::store::api_keys::KeyKind;

/// The `retry:` hint: how long a client waits before reconnecting after the stream ends.
const RETRY: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
pub(super) struct StreamQuery {
    key: Option<String>,
    token: Option<String>,
}

/// Who may follow an environment's changes: a client key in the URL, a token, or any SDK key
/// in the headers (for non-browser clients).
fn stream_caller(
    state: &Serving,
    query: &StreamQuery,
    header_key: Result<EvaluationKey, ApiError>,
) -> Result<SdkKey, ApiError> {
    if let Some(secret) = &query.key {
        return EvaluationKey::client_key_in_url(state, secret).map(|k| k.key);
    }
    if let Some(token) = &query.token {
        let invalid =
            || ApiError::Unauthorized("the stream token is invalid or expired: evaluate again".into());
        let (environment_id, id) = StreamToken::verify(token, unix_now()).ok_or_else(invalid)?;
        if !state.keys.is_active(id) {
            return Err(invalid());
        }
        state.events.touch_key(id);
        return Ok(SdkKey {
            id,
            environment_id,
            kind: KeyKind::Server,
        });
    }
    header_key.map(|k| k.key)
}

fn refetch_event(revision: u64, etag: &str) -> sse::Event {
    let data = serde_json::json!({"type": "refetchEvaluation", "etag": etag.trim_matches('"')});
    sse::Data::new(data.to_string()).id(revision.to_string()).into()
}

/// Every revision is one `refetchEvaluation`: OFREP clients evaluate again, whatever changed.
fn announce(revision: Revision<'_>) -> sse::Event {
    match revision {
        Revision::Change(change) => refetch_event(change.revision, &change.etag),
        Revision::CatchUp(snapshot) => refetch_event(snapshot.revision, &snapshot.etag),
    }
}

/// `GET /ofrep/v1/stream?key=<client key>` (or `?token=…`, or a key in the headers).
pub(super) async fn stream(
    state: web::Data<Serving>,
    req: HttpRequest,
    query: web::Query<StreamQuery>,
    header_key: Result<EvaluationKey, ApiError>,
) -> Result<HttpResponse, OfrepError> {
    let key = stream_caller(&state, &query, header_key)?;
    let events = change_stream::environment(
        &state.hub,
        state.snapshots.clone(),
        state.keys.clone(),
        Listener {
            environment_id: key.environment_id,
            key_id: key.id,
        },
        change_stream::last_event_id(&req),
        change_stream::keep_alive(&state.settings),
        announce,
    )
    .ok_or_else(|| OfrepError::from(crate::http::auth::environment_gone()))?;
    Ok(change_stream::respond(&req, events, RETRY))
}
