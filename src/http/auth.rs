//! Who is calling. Authentication is an extractor; handlers never parse headers.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};

use crate::AppState;
use crate::error::ApiError;
use crate::state::Serving;
use crate::store::admin_tokens;
use crate::store::api_keys::KeyKind;
use crate::store::users::{Role, User};

/// A person calling `/api/v1` with an admin token (`Authorization: Bearer fs_adm_…`).
#[derive(Debug, Clone)]
pub struct Admin {
    pub user: User,
    /// The admin token used; `None` for a signed-in session of the admin pages.
    pub token_id: Option<i64>,
}

impl Admin {
    /// 403 unless the caller's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.user.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs the {} role; {} is {}",
                role.as_str(),
                self.user.email,
                self.user.role.as_str()
            )))
        }
    }

    /// What the audit log records as the actor.
    pub fn actor(&self) -> &str {
        &self.user.email
    }
}

/// The credential of a request: `Authorization: Bearer <secret>` or `X-API-Key: <secret>`.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    if let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let value = value.trim();
        let (scheme, secret) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| secret.trim())
            .filter(|s| !s.is_empty());
    }
    req.headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Admin, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let secret = bearer(req).map(str::to_owned);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let req = req.clone();
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::Internal("application state missing".into()))?;
            let Some(secret) = secret else {
                // The admin pages' own scripts call the API with their session: the session
                // extractor checks `Origin` and the CSRF header on every state-changing call.
                if req.cookie(crate::http::admin::session::SESSION_COOKIE).is_some() {
                    return session_admin(&req).await;
                }
                return Err(ApiError::Unauthorized(
                    "an admin token is required: Authorization: Bearer <token> (or a signed-in session with X-CSRF-Token)"
                        .into(),
                ));
            };
            let found = state
                .store
                .read(move |conn| admin_tokens::authenticate(conn, &secret))
                .await?;
            match found {
                Some((token_id, user)) => {
                    state.events.touch_token(token_id);
                    Ok(Admin {
                        user,
                        token_id: Some(token_id),
                    })
                }
                None => Err(ApiError::Unauthorized(
                    "the admin token is unknown or revoked".into(),
                )),
            }
        })
    }
}

/// The user of a signed-in session of the admin pages, as an API caller.
async fn session_admin(req: &HttpRequest) -> Result<Admin, ApiError> {
    match crate::http::admin::session::AdminSession::extract(req).await {
        Ok(session) => Ok(Admin {
            user: session.user,
            token_id: None,
        }),
        // Signed out: the pages answer with a redirect to the sign-in page, the API with 401.
        Err(e) if e.is_signed_out() => Err(ApiError::Unauthorized(
            "the session is signed out or unknown; sign in again".into(),
        )),
        Err(e) => Err(ApiError::Forbidden(e.message())),
    }
}

/// An SDK key of either kind, found in memory by its hash (no database on this path). 401 when
/// the key is missing, unknown or revoked. Each use is noted for the key's "last used" time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdkKey {
    pub id: i64,
    /// The one environment this key reads.
    pub environment_id: i64,
    pub kind: KeyKind,
}

impl SdkKey {
    fn from_request_sync(req: &HttpRequest) -> Result<SdkKey, ApiError> {
        let state = req
            .app_data::<web::Data<Serving>>()
            .ok_or_else(|| ApiError::Internal("application state missing".into()))?;
        let Some(secret) = bearer(req) else {
            return Err(ApiError::Unauthorized(
                "an SDK key is required: Authorization: Bearer <key> or X-API-Key: <key>".into(),
            ));
        };
        let Some(key) = state.keys.find(secret) else {
            return Err(ApiError::Unauthorized("the SDK key is unknown or revoked".into()));
        };
        state.events.touch_key(key.id);
        Ok(SdkKey {
            id: key.id,
            environment_id: key.environment_id,
            kind: key.kind,
        })
    }
}

impl FromRequest for SdkKey {
    type Error = ApiError;
    type Future = std::future::Ready<Result<SdkKey, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(SdkKey::from_request_sync(req))
    }
}

/// The answer to a key whose environment was deleted (the same 401 on every SDK and OFREP
/// path, as for a revoked key: the key no longer reads anything).
pub(crate) fn environment_gone() -> ApiError {
    ApiError::Unauthorized("the key's environment no longer exists".into())
}

/// A server key (`fs_srv_…`): reads the bundle and the stream of its environment. 401 when
/// missing, unknown or revoked; 403 for a client key, which must never see rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerKey {
    pub id: i64,
    /// The one environment this key reads.
    pub environment_id: i64,
}

impl FromRequest for ServerKey {
    type Error = ApiError;
    type Future = std::future::Ready<Result<ServerKey, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(SdkKey::from_request_sync(req).and_then(|key| match key.kind {
            KeyKind::Server => Ok(ServerKey {
                id: key.id,
                environment_id: key.environment_id,
            }),
            KeyKind::Client => Err(ApiError::Forbidden(
                "a client key cannot read the bundle or the stream: use a server key".into(),
            )),
        }))
    }
}

/// A caller of the evaluation endpoints (OFREP): an SDK key of either kind, from
/// `Authorization: Bearer` or `X-API-Key`. A server key evaluates every flag of its environment;
/// a client key only the client-side ones (any other flag does not exist for it). 401 when the
/// key is missing, unknown or revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationKey {
    pub key: SdkKey,
    /// The client key itself: public by nature, so it may go in a browser's stream URL.
    /// `None` for a server key, which never goes in a URL.
    pub client_secret: Option<String>,
}

impl EvaluationKey {
    /// Whether this caller may evaluate (or even learn of) `flag`.
    pub fn may_evaluate(&self, flag: &flagstaff_eval::CompiledFlag) -> bool {
        self.key.kind == KeyKind::Server || flag.is_client_side()
    }

    /// A client key given in a URL (`/client/v1/{key}/…`, a stream's `?key=`): 401 when unknown
    /// or revoked, 403 for a server key, which must never appear in a URL.
    pub fn client_key_in_url(state: &Serving, secret: &str) -> Result<EvaluationKey, ApiError> {
        let Some(key) = state.keys.find(secret) else {
            return Err(ApiError::Unauthorized(
                "the client key is unknown or revoked".into(),
            ));
        };
        if key.kind != KeyKind::Client {
            return Err(ApiError::Forbidden(
                "only a client key may appear in a URL; this server key is now exposed: revoke it".into(),
            ));
        }
        state.events.touch_key(key.id);
        Ok(EvaluationKey {
            key: SdkKey {
                id: key.id,
                environment_id: key.environment_id,
                kind: key.kind,
            },
            client_secret: Some(secret.to_owned()),
        })
    }
}

impl FromRequest for EvaluationKey {
    type Error = ApiError;
    type Future = std::future::Ready<Result<EvaluationKey, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(SdkKey::from_request_sync(req).map(|key| EvaluationKey {
            client_secret: match key.kind {
                KeyKind::Client => bearer(req).map(str::to_owned),
                KeyKind::Server => None,
            },
            key,
        }))
    }
}
