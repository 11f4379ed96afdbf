//! `GET /sdk/v1/stream`: the environment's revisions as Server-Sent Events, on the shared
//! change stream ([`crate::http::change_stream`]): on connect the current revision (unless
//! `Last-Event-ID` already names it), then one event per change, `id:` = the revision; after
//! missed changes the latest revision with every flag listed; a keep-alive comment every
//! interval; the stream ends when the key is revoked, the environment deleted or the server
//! shuts down.
//!
//! Each event's data is `{"revision", "etag", "changed": [flag keys]}`.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_lab::sse;
use serde::Serialize;

use crate::error::ApiError;
use crate::http::auth::ServerKey;
use crate::http::change_stream::{self, Listener, Revision};
use crate::state::Serving;

/// The `retry:` hint: how long a client waits before reconnecting after the stream ends.
const RETRY: Duration = Duration::from_secs(3);

pub async fn stream(
    key: ServerKey,
    req: HttpRequest,
    state: web::Data<Serving>,
) -> Result<HttpResponse, ApiError> {
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
    .ok_or_else(crate::http::auth::environment_gone)?;
    Ok(change_stream::respond(&req, events, RETRY))
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

/// A change lists its flags; a catch-up lists every flag, since the client's view may be any
/// older revision.
fn announce(revision: Revision<'_>) -> sse::Event {
    match revision {
        Revision::Change(change) => event(change.revision, &change.etag, &*change.flags),
        Revision::CatchUp(snapshot) => {
            let flags: Vec<&str> = snapshot
                .engine
                .flags()
                .map(flagstaff_eval::CompiledFlag::key)
                .collect();
            event(snapshot.revision, &snapshot.etag, flags)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::Poll;

    use actix_web_lab::sse::Sse;
    use futures_util::future::poll_fn;
    use futures_util::{Stream as _, StreamExt as _};

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
        let listener = Listener {
            environment_id: env,
            key_id,
        };
        let stream = change_stream::environment(
            &state.hub,
            state.snapshots.clone(),
            state.keys.clone(),
            listener,
            None,
            Duration::from_secs(3600),
            announce,
        )
        .expect("the environment exists");
        let mut stream = pin!(stream);
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
        let pending = poll_fn(|cx| Poll::Ready(stream.as_mut().poll_next(cx))).await;
        assert!(pending.is_pending(), "only one catch-up event is sent");
    }
}
