//! Flagstaff: a self-hosted feature-flag and remote-config server. One binary, one SQLite file.
//!
//! `build_app` is the whole HTTP application, so tests drive exactly what `flagstaff serve` runs.

pub mod cli;
pub mod config;
pub mod error;
pub mod events;
pub mod http;
pub mod hub;
pub mod keys;
pub mod metrics;
pub mod ops;
pub mod password;
pub mod relay;
pub mod retention;
pub mod scheduler;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod throttle;
pub mod webhooks;

use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::{App, web};

pub use state::AppState;

/// The whole HTTP application over `state`.
pub fn build_app(
    state: AppState,
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
        .app_data(web::Data::new(state.serving()))
        .app_data(web::Data::new(state))
        // Every GET route answers HEAD too: the handler runs as for GET and the HTTP layer sends
        // the status and headers without the body (it knows the request was HEAD). A stream
        // (SSE) would never end, so its answer to HEAD is the headers alone.
        .wrap_fn(head_as_get)
        // Request id, request span and log line, metrics: one layer for every route.
        .wrap(ops::request_log::RequestLog)
        .configure(http::configure)
}

/// Answers HEAD as GET (the HTTP layer drops the body), a stream's with its headers alone:
/// `build_app`'s and a relay's outermost layer.
pub(crate) fn head_as_get<S, B>(
    mut req: ServiceRequest,
    srv: &S,
) -> impl std::future::Future<
    Output = Result<ServiceResponse<EitherBody<B, actix_web::body::None>>, actix_web::Error>,
> + use<S, B>
where
    S: actix_web::dev::Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let head = req.method() == Method::HEAD;
    if head {
        req.head_mut().method = Method::GET;
    }
    let answer = srv.call(req);
    async move {
        let res = answer.await?;
        Ok(if head && res.response().body().size() == BodySize::Stream {
            res.map_body(|_, _| EitherBody::right(actix_web::body::None::new()))
        } else {
            res.map_into_left_body()
        })
    }
}
