//! Backend SDKs' delivery path (DESIGN.md §1, §4, §5; protocol in docs/sdk-protocol.md):
//! the environment's bundle from the snapshot's bytes, a Server-Sent Events stream of its
//! revisions, and the intake of aggregated evaluation counts; and for browsers the SDK itself,
//! `/sdk/flagstaff.js`. Nothing here touches SQLite.

mod bundle;
pub mod events;
mod js;
pub mod relay;
mod stream;

use actix_web::web::{self, ServiceConfig};

/// Registers `/sdk/v1/bundle`, `/sdk/v1/stream`, `/sdk/v1/events` and `/sdk/flagstaff.js`.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.configure(js::configure);
    cfg.service(
        web::scope("/sdk/v1")
            .route("/bundle", web::get().to(bundle::bundle))
            .route("/stream", web::get().to(stream::stream))
            .route("/events", web::post().to(events::events)),
    );
}
