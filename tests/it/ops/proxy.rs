//! Behind a reverse proxy: Debian's nginx runs `tests/nginx/flagstaff.conf` (the configuration
//! README.md shows) in front of a real server. Streams arrive unbuffered; bundles and
//! browser GETs are cached, revalidated, never served to the wrong key, and served stale while
//! Flagstaff is down; the client's address comes from `X-Forwarded-For` only when the proxy is
//! trusted.

use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::{ENV, Flagstaff, Prepared, client, patch_state};
use crate::helpers::{Tool, root, tools_installed};

/// How long after storing it a one-second entry is surely stale for nginx, which counts
/// whole seconds.
const STALE_AFTER: Duration = Duration::from_millis(2100);

fn config_path() -> PathBuf {
    root().join("tests/nginx/flagstaff.conf")
}

/// An nginx running `tests/nginx/flagstaff.conf` in front of `upstream`.
struct Nginx {
    child: Child,
    url: String,
    dir: TempDir,
}

impl Nginx {
    fn start(upstream: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // nginx's workers run as `nobody` when started by root: they need these.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["cache", "tmp"] {
            std::fs::create_dir(root.join(sub)).unwrap();
            std::fs::set_permissions(root.join(sub), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let shipped = std::fs::read_to_string(config_path()).unwrap();
        let mut conf = shipped.clone();
        for (from, to) in [
            ("server 127.0.0.1:8080;", format!("server {upstream};")),
            ("listen 80;", format!("listen 127.0.0.1:{port};")),
            (
                "/var/cache/nginx/flagstaff",
                root.join("cache").display().to_string(),
            ),
        ] {
            assert!(
                conf.contains(from),
                "tests/nginx/flagstaff.conf no longer has {from:?}"
            );
            conf = conf.replace(from, &to);
        }
        std::fs::write(root.join("flagstaff.conf"), conf).unwrap();
        let r = root.display();
        let main = format!(
            "daemon off;\nworker_processes 1;\npid {r}/nginx.pid;\nerror_log {r}/error.log info;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log {r}/access.log;\n  client_body_temp_path {r}/tmp/body;\n  \
             proxy_temp_path {r}/tmp/proxy;\n  fastcgi_temp_path {r}/tmp/fastcgi;\n  uwsgi_temp_path {r}/tmp/uwsgi;\n  \
             scgi_temp_path {r}/tmp/scgi;\n  include {r}/flagstaff.conf;\n}}\n"
        );
        std::fs::write(root.join("nginx.conf"), main).unwrap();
        let mut child = Command::new(Tool::Nginx.expect())
            .arg("-e")
            .arg(root.join("error.log"))
            .arg("-p")
            .arg(root)
            .arg("-c")
            .arg(root.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if child.try_wait().unwrap().is_some() || Instant::now() > until {
                let log = std::fs::read_to_string(root.join("error.log")).unwrap_or_default();
                let _ = child.kill();
                panic!("nginx did not start: {log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM is nginx's fast shutdown; it is our child, stopped by its PID.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

/// Reads a stream until `needle` has arrived, at most 5 s.
async fn read_until(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<actix_web::web::Bytes>> + Unpin),
    seen: &mut String,
    needle: &str,
) {
    let arrived = tokio::time::timeout(Duration::from_secs(5), async {
        while !seen.contains(needle) {
            let chunk = body.next().await.expect("the stream is open").unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(
        arrived.is_ok(),
        "{needle:?} did not come through the proxy within 5 s: {seen:?}"
    );
}

fn cache_status(res: &reqwest::Response) -> String {
    res.headers()
        .get("x-cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn etag(res: &reqwest::Response) -> String {
    res.headers().get("etag").unwrap().to_str().unwrap().to_owned()
}

#[actix_web::test]
async fn through_nginx_streams_are_unbuffered_and_bundles_and_browser_gets_are_cached_and_revalidated() {
    if !tools_installed(&[Tool::Nginx]) {
        return;
    }
    let prepared = Prepared::new().await;
    let mut server = Flagstaff::start(prepared.dir.path(), &[("FLAGSTAFF_CLIENT_MAX_AGE", "1")]);
    let nginx = Nginx::start(server.url.trim_start_matches("http://"));
    let (proxy, key) = (nginx.url.as_str(), prepared.server_key.as_str());
    let http = client();

    // A stream through the proxy: its first event, then a change's event, as they happen. A
    // buffering proxy would hold them until the keep-alive comment 15 s later.
    let stream = http
        .get(format!("{proxy}/sdk/v1/stream"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut body = stream.bytes_stream();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "id:").await;
    let (status, changed) =
        patch_state(&http, proxy, &prepared.token, "f00", &json!({"enabled": false})).await;
    assert_eq!(status, 200, "{changed}");
    // (The new revision, from Flagstaff itself: the proxy's cache is for the checks below.)
    let bundle: Value = http
        .get(format!("{}/sdk/v1/bundle", server.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    read_until(&mut body, &mut seen, &format!("id: {}", bundle["revision"])).await;
    drop(body);

    // Bundles: stored, served, revalidated (a 304 behind the scenes) once a second old…
    let bundle_url = format!("{proxy}/sdk/v1/bundle");
    let get = |inm: Option<&str>| {
        let mut req = http.get(&bundle_url).bearer_auth(key);
        if let Some(tag) = inm {
            req = req.header("If-None-Match", tag);
        }
        req.send()
    };
    let first = get(None).await.unwrap();
    assert_eq!(
        (first.status().as_u16(), cache_status(&first)),
        (200, "MISS".into())
    );
    let e1 = etag(&first);
    let again = get(None).await.unwrap();
    assert_eq!(
        (again.status().as_u16(), cache_status(&again), etag(&again)),
        (200, "HIT".into(), e1.clone())
    );
    // Browser GETs (max-age 1 s here): a hit, a revalidation once stale, and the last copy
    // while Flagstaff is down.
    let values = format!(
        "{proxy}/client/v1/{}/eyJ0YXJnZXRpbmdLZXkiOiJ1LTEifQ",
        prepared.client_key
    );
    let c1 = http.get(&values).send().await.unwrap();
    assert_eq!((c1.status().as_u16(), cache_status(&c1)), (200, "MISS".into()));
    let v1: Value = c1.json().await.unwrap();
    let c2 = http.get(&values).send().await.unwrap();
    assert_eq!((c2.status().as_u16(), cache_status(&c2)), (200, "HIT".into()));
    actix_web::rt::time::sleep(STALE_AFTER).await;
    let later = get(None).await.unwrap();
    assert_eq!(
        (later.status().as_u16(), cache_status(&later), etag(&later)),
        (200, "REVALIDATED".into(), e1.clone())
    );
    let c3 = http.get(&values).send().await.unwrap();
    assert_eq!(
        (c3.status().as_u16(), cache_status(&c3)),
        (200, "REVALIDATED".into())
    );
    // …never handed to a caller without the key, or with another one…
    for credential in [None, Some("fs_srv_not-a-key-of-this-server")] {
        let mut req = http.get(&bundle_url);
        if let Some(c) = credential {
            req = req.bearer_auth(c);
        }
        assert_eq!(req.send().await.unwrap().status(), 401, "{credential:?}");
    }
    // …and an SDK that holds a bundle (If-None-Match) gets a change at once, which nginx keeps.
    assert_eq!(
        patch_state(&http, proxy, &prepared.token, "f01", &json!({"enabled": false}))
            .await
            .0,
        200
    );
    let after = get(Some(&e1)).await.unwrap();
    assert_eq!(
        (after.status().as_u16(), cache_status(&after)),
        (200, "BYPASS".into())
    );
    let e2 = etag(&after);
    assert_ne!(e1, e2);
    let body: Value = after.json().await.unwrap();
    let f01 = body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "f01")
        .unwrap();
    assert_eq!(f01["environments"][ENV]["enabled"], false);
    let starting = get(None).await.unwrap();
    assert_eq!(
        (cache_status(&starting), etag(&starting)),
        ("HIT".into(), e2.clone())
    );
    assert_eq!(get(Some(&e2)).await.unwrap().status(), 304);

    let (stopped, _) = server.terminate();
    assert!(stopped.success());
    actix_web::rt::time::sleep(STALE_AFTER).await;
    let c4 = http.get(&values).send().await.unwrap();
    assert_eq!((c4.status().as_u16(), cache_status(&c4)), (200, "STALE".into()));
    assert_eq!(c4.json::<Value>().await.unwrap(), v1);
    let down = get(None).await.unwrap();
    assert_eq!(
        (down.status().as_u16(), cache_status(&down), etag(&down)),
        (200, "STALE".into(), e2)
    );
    assert_eq!(v1["flags"]["f00"], false, "{v1}");
}

/// The client address Flagstaff logged for the request that got `request_id`.
fn logged_client(server: &Flagstaff, request_id: &str) -> String {
    let line =
        server.wait_for_log(|l| l["target"] == "flagstaff::request" && l["span"]["request_id"] == request_id);
    line["span"]["client_ip"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn the_client_address_comes_from_x_forwarded_for_only_when_the_proxy_is_trusted() {
    if !tools_installed(&[Tool::Nginx]) {
        return;
    }
    let prepared = Prepared::new().await;
    let other = Prepared::new().await;
    let access_log = ("FLAGSTAFF_LOG", "info,flagstaff::request=debug");
    // nginx reaches Flagstaff from 127.0.0.1; the client comes from 127.0.0.2.
    let trusting = Flagstaff::start(
        prepared.dir.path(),
        &[access_log, ("FLAGSTAFF_TRUSTED_PROXIES", "127.0.0.1")],
    );
    let plain = Flagstaff::start(other.dir.path(), &[access_log]);
    let (nginx_trusted, nginx_plain) = (
        Nginx::start(trusting.url.trim_start_matches("http://")),
        Nginx::start(plain.url.trim_start_matches("http://")),
    );
    let http = reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .unwrap();
    // The client claims to be someone else.
    let spoofed = "198.51.100.7";
    let ask = |url: String| {
        let http = http.clone();
        async move {
            let res = http
                .get(format!("{url}/healthz"))
                .header("X-Forwarded-For", spoofed)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.headers()
                .get("x-request-id")
                .expect("the request id comes through")
                .to_str()
                .unwrap()
                .to_owned()
        }
    };

    let id = ask(nginx_trusted.url.clone()).await;
    assert_eq!(
        logged_client(&trusting, &id),
        "127.0.0.2",
        "through the trusted proxy: the address nginx saw"
    );
    let id = ask(trusting.url.clone()).await;
    assert_eq!(
        logged_client(&trusting, &id),
        "127.0.0.2",
        "directly: the header is not believed"
    );
    let id = ask(nginx_plain.url.clone()).await;
    assert_eq!(
        logged_client(&plain, &id),
        "127.0.0.1",
        "no proxy trusted: the proxy's own address"
    );
    for server in [&trusting, &plain] {
        assert!(
            !server.logs().iter().any(|l| l.contains(spoofed)),
            "the spoofed address is never believed"
        );
    }
}

#[test]
fn the_readme_shows_the_tested_nginx_configuration() {
    let shipped = std::fs::read_to_string(config_path()).unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```nginx\n{}\n```", shipped.trim_end())),
        "README.md must show tests/nginx/flagstaff.conf as it is"
    );
}
