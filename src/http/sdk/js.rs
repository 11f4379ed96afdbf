//! `GET /sdk/flagstaff.js`: the dependency-free browser SDK (`sdk/js/flagstaff.js`), embedded
//! in the binary, gzipped once, with an ETag, cacheable for five minutes; CORS for browsers.

use std::io::Write as _;
use std::sync::LazyLock;

use actix_web::HttpResponse;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, Bytes, ServiceConfig};

use crate::http::conditional::{AcceptEncoding, IfNoneMatch};
use crate::http::cors;
use crate::http::evaluation::etag;

/// Registers `/sdk/flagstaff.js`.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::resource("/sdk/flagstaff.js")
            .wrap(cors::PublicCors)
            .route(web::get().to(sdk_js)),
    );
}

/// The browser SDK, as embedded at build time, with its gzip and ETag.
struct Asset {
    body: Bytes,
    gzip: Bytes,
    etag: String,
}

static SDK_JS: LazyLock<Asset> = LazyLock::new(|| {
    let body = include_str!("../../../sdk/js/flagstaff.js").as_bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(body).expect("compressing into a Vec cannot fail");
    let gzip = gz.finish().expect("compressing into a Vec cannot fail");
    Asset {
        body: Bytes::from_static(body),
        gzip: Bytes::from(gzip),
        etag: etag(0, body),
    }
});

/// `GET /sdk/flagstaff.js`.
async fn sdk_js(if_none_match: IfNoneMatch, accept_encoding: AcceptEncoding) -> HttpResponse {
    let asset = &*SDK_JS;
    let mut res = if if_none_match.matches(&asset.etag) {
        HttpResponse::NotModified().finish()
    } else {
        let mut res = HttpResponse::Ok();
        res.content_type("text/javascript; charset=utf-8");
        if accept_encoding.gzip() {
            res.insert_header((header::CONTENT_ENCODING, "gzip"))
                .body(asset.gzip.clone())
        } else {
            res.body(asset.body.clone())
        }
    };
    let headers = res.headers_mut();
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&asset.etag).expect("a hex ETag is a valid header"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    res
}
