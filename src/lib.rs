//! Flagstaff: a self-hosted feature-flag and remote-config server. One binary, one SQLite file.
//!
//! `build_app` is the whole HTTP application, so tests drive exactly what `flagstaff serve` runs.

pub mod answers;
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
pub mod server;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod throttle;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
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
        .app_data(web::Data::new(state))
        // Request id, request span and log line, metrics: one layer for every route.
        .wrap(ops::request_log::RequestLog)
        .configure(http::configure)
}
