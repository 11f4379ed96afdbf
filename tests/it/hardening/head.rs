//! `HEAD` answers on every `GET` route, over a real socket: the status and headers of `GET`,
//! no body.

use serde_json::json;

use super::shop;
use crate::helpers::{RealServer, TestApp};

#[actix_web::test]
async fn head_answers_like_get_without_a_body_on_every_get_route() {
    let app = TestApp::new();
    let shop = shop(&app).await;
    let context = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        serde_json::to_vec(&json!({"targetingKey": "u-1"})).unwrap(),
    );
    let server = RealServer::start(&app.state);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // An asset's hashed path, as the pages link it.
    let sign_in = http
        .get(format!("{}/sign-in", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let asset = sign_in
        .split('"')
        .find(|s| s.starts_with("/static/"))
        .expect("the sign-in page links an asset")
        .to_owned();

    let client_values = format!("/client/v1/{}/{context}", shop.client);
    let routes: Vec<(&str, Option<&str>)> = vec![
        ("/", None),
        ("/sign-in", None),
        ("/sign-in?next=%2Fprojects", None),
        ("/projects", None),
        ("/projects/shop/flags", None),
        ("/users", None),
        ("/audit", None),
        ("/account", None),
        ("/backup", None),
        ("/setup", None),
        (asset.as_str(), None),
        ("/healthz", None),
        ("/readyz", None),
        ("/metrics", None),
        ("/sdk/flagstaff.js", None),
        ("/sdk/v1/bundle", Some(shop.server.as_str())),
        ("/sdk/v1/stream", Some(shop.server.as_str())),
        ("/ofrep/v1/stream", Some(shop.server.as_str())),
        (client_values.as_str(), None),
        ("/api/v1/openapi.json", None),
        ("/api/v1/projects", Some(shop.admin.as_str())),
        ("/api/v1/projects/shop/flags", Some(shop.admin.as_str())),
        (
            "/api/v1/projects/shop/flags/new-checkout",
            Some(shop.admin.as_str()),
        ),
        ("/api/v1/projects/shop/segments", Some(shop.admin.as_str())),
        ("/api/v1/projects/shop/export", Some(shop.admin.as_str())),
        ("/api/v1/audit", Some(shop.admin.as_str())),
        ("/api/v1/users", Some(shop.admin.as_str())),
    ];
    let same_headers = [
        "content-type",
        "cache-control",
        "etag",
        "location",
        "content-length",
    ];
    for (path, key) in routes {
        let request = |method: reqwest::Method| {
            let mut request = http.request(method, format!("{}{path}", server.url));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            request
        };
        let head = request(reqwest::Method::HEAD).send().await.unwrap();
        let status = head.status();
        let head_headers = head.headers().clone();
        let head_body = head.bytes().await.unwrap();
        assert_ne!(status, 405, "HEAD {path}");
        assert!(head_body.is_empty(), "HEAD {path} sent a body");
        if path.ends_with("/stream") {
            // An endless stream: its headers are the answer.
            assert_eq!(status, 200, "HEAD {path}");
            assert!(
                head_headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/event-stream"),
                "HEAD {path}"
            );
            continue;
        }
        let get = request(reqwest::Method::GET).send().await.unwrap();
        assert_eq!(status, get.status(), "HEAD {path} and GET differ");
        for name in same_headers {
            if name == "content-length" && head_headers.get("etag").is_none() {
                // A page whose bytes change per request (a CSRF token, a time) may differ.
                continue;
            }
            assert_eq!(
                head_headers.get(name),
                get.headers().get(name),
                "HEAD {path}: {name}"
            );
        }
    }
    server.stop().await;
}
