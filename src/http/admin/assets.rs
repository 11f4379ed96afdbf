//! The pages' stylesheet, script and icon: compiled into the binary and served under URLs that
//! carry a hash of their content, so browsers may cache them for a year.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use actix_web::http::header;
use actix_web::web::{self, ServiceConfig};
use sha2::{Digest, Sha256};

use crate::http::conditional::IfNoneMatch;

struct Asset {
    /// `admin.3f2a9c0d1b7e4f56.css`
    file: String,
    url: String,
    content_type: &'static str,
    body: &'static [u8],
    etag: String,
}

fn asset(stem: &str, ext: &str, content_type: &'static str, body: &'static [u8]) -> Asset {
    let digest = Sha256::digest(body);
    let hash = hex::encode(&digest[..8]);
    let file = format!("{stem}.{hash}.{ext}");
    Asset {
        url: format!("/static/{file}"),
        file,
        content_type,
        body,
        etag: format!("\"{hash}\""),
    }
}

static ASSETS: LazyLock<[Asset; 4]> = LazyLock::new(|| {
    [
        asset(
            "admin",
            "css",
            "text/css; charset=utf-8",
            include_bytes!("../../../static/admin.css"),
        ),
        asset(
            "admin",
            "js",
            "text/javascript; charset=utf-8",
            include_bytes!("../../../static/admin.js"),
        ),
        asset(
            "icon",
            "svg",
            "image/svg+xml",
            include_bytes!("../../../static/icon.svg"),
        ),
        // The live demo page's script (a module: it imports /sdk/flagstaff.js).
        asset(
            "try",
            "js",
            "text/javascript; charset=utf-8",
            include_bytes!("../../../static/try.js"),
        ),
    ]
});

/// The stylesheet's URL.
pub fn css_url() -> &'static str {
    &ASSETS[0].url
}

/// The script's URL.
pub fn js_url() -> &'static str {
    &ASSETS[1].url
}

/// The icon's URL.
pub fn icon_url() -> &'static str {
    &ASSETS[2].url
}

/// The live demo page's script.
pub fn try_js_url() -> &'static str {
    &ASSETS[3].url
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/{file}", web::get().to(serve));
}

async fn serve(if_none_match: IfNoneMatch, file: web::Path<String>) -> HttpResponse {
    let Some(asset) = ASSETS.iter().find(|a| a.file == *file) else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no such file");
    };
    let fresh = if_none_match.matches(&asset.etag);
    let mut resp = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    resp.insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .insert_header((header::ETAG, asset.etag.clone()));
    if fresh {
        return resp.finish();
    }
    resp.content_type(asset.content_type).body(asset.body)
}
