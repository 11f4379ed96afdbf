//! Relays and offline serving (DESIGN.md §8, issue 18), with real processes: a primary
//! (`flagstaff serve`) and relays (`flagstaff relay`) on loopback ports, killed and restarted
//! by PID.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::free_port;
use crate::sdk_rust::{Setup, flagstaff};

/// How long a test waits for something that must happen (generous: the machine is shared).
const PATIENCE: Duration = Duration::from_secs(30);

/// A project whose strings are hostile (quotes, commas, tabs, unicode, markup).
fn document() -> Value {
    json!({
        "flagstaff": 1,
        "project": {"key": "shop", "name": "Shop, \"the\" <script>alert(1)</script>"},
        "environments": [{"key": "production", "name": "Production"}, {"key": "staging", "name": "Staging\tété"}],
        "segments": [{"key": "beta", "name": "Beta, \"β\"", "included": ["u-1", "<script>"]}],
        "flags": [
            {"key": "new-checkout", "type": "boolean", "client_side": true,
             "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
             "environments": {"production": {"enabled": true,
                "rules": [{"id": "beta", "clauses": [{"op": "in_segment", "values": ["beta"]}], "serve": {"variation": "on"}}],
                "fallthrough": {"variation": "off"}}}},
            {"key": "banner", "type": "string", "client_side": true,
             "variations": [{"key": "a", "value": "Hello, \"world\"\t✓ <b>"}, {"key": "b", "value": "Welcome back"}],
             "environments": {"production": {"enabled": true, "fallthrough": {"variation": "a"}}}},
            {"key": "secret-config", "kind": "config", "type": "json",
             "variations": [{"key": "v", "value": {"customers": ["acme, inc", "ünïcode"]}}],
             "environments": {"production": {"enabled": true, "fallthrough": {"variation": "v"}}}}
        ]
    })
}

/// A `flagstaff relay` child process.
struct Relay {
    child: Option<Child>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    dir: PathBuf,
    port: u16,
    url: String,
}

impl Relay {
    /// Starts `flagstaff relay <args>` and waits until `/healthz` answers (not `/readyz`).
    async fn start(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Relay {
        let port = free_port();
        let mut relay = Relay {
            child: None,
            args: args.iter().map(std::string::ToString::to_string).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            log: dir.join(format!("{name}.log")),
            dir: dir.join(name),
            port,
            url: format!("http://127.0.0.1:{port}"),
        };
        std::fs::create_dir_all(&relay.dir).expect("relay dir");
        relay.restart().await;
        relay
    }

    async fn restart(&mut self) {
        assert!(self.child.is_none(), "the relay is running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("relay log");
        // The relay's "data dir" does not exist: a relay must never create or open a database.
        let mut cmd = flagstaff(&self.dir.join("no-such-data-dir"));
        cmd.arg("relay")
            .args(&self.args)
            .args(["--bind", &format!("127.0.0.1:{}", self.port)])
            .env("FLAGSTAFF_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        let mut child = cmd.spawn().expect("spawn flagstaff relay");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().expect("child status") {
                panic!("flagstaff relay exited with {status}: {}", self.log());
            }
            if let Ok(resp) = http.get(format!("{}/healthz", self.url)).send().await
                && resp.status() == StatusCode::OK
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the relay did not answer /healthz: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = Some(child);
    }

    /// Waits until `/readyz` answers 200.
    async fn ready(&self) -> Value {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let resp = http
                .get(format!("{}/readyz", self.url))
                .send()
                .await
                .expect("readyz");
            if resp.status() == StatusCode::OK {
                return resp.json().await.expect("readyz JSON");
            }
            assert!(
                Instant::now() < deadline,
                "the relay never became ready: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill flagstaff relay");
            child.wait().expect("reap flagstaff relay");
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A new relay key of shop (admin API).
async fn relay_key(setup: &Setup) -> String {
    let (status, body) = setup
        .api(
            Method::POST,
            "/api/v1/projects/shop/keys",
            Some(json!({"kind": "relay", "name": "edge, \"eu\" ✓"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["kind"], "relay");
    body["key"].as_str().expect("the key").to_owned()
}

/// GET with a key: status, ETag and the body's bytes.
async fn get(url: &str, key: &str, headers: &[(&str, &str)]) -> (StatusCode, Option<String>, Vec<u8>) {
    let mut req = reqwest::Client::new().get(url).bearer_auth(key);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.expect("GET");
    let status = resp.status();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, etag, resp.bytes().await.expect("body").to_vec())
}

/// An open SDK stream (`GET /sdk/v1/stream`): its events' data, as they arrive.
struct SdkStream {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<actix_web::web::Bytes>> + Send>>,
    buffer: String,
}

impl SdkStream {
    async fn open(base: &str, key: &str) -> SdkStream {
        let resp = reqwest::Client::new()
            .get(format!("{base}/sdk/v1/stream"))
            .bearer_auth(key)
            .send()
            .await
            .expect("stream");
        assert_eq!(resp.status(), StatusCode::OK);
        SdkStream {
            body: Box::pin(resp.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event's data as JSON; `None` when the stream ends.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return Some(serde_json::from_str(data).expect("event data is JSON"));
                }
                continue;
            }
            let chunk = tokio::time::timeout(PATIENCE, self.body.next())
                .await
                .expect("the stream said something in time")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk.ok()?).expect("UTF-8"));
        }
    }

    /// Waits for an event naming `flag`.
    async fn changed(&mut self, flag: &str) -> Value {
        loop {
            let event = self.next().await.expect("the stream is open");
            if event["changed"]
                .as_array()
                .is_some_and(|c| c.iter().any(|f| f == flag))
            {
                return event;
            }
        }
    }
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Relay keys through the API: admins only, shown once, listed without the secret, revocable,
/// audited; the relay document carries the bundles' bytes and the keys' hashes, never a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_keys_read_the_relay_document_and_nothing_else() {
    let setup = Setup::new(document()).await;
    let primary = &setup.server.url;
    // Wrong kinds and missing fields are 400s naming the field.
    for (body, field) in [
        (json!({"kind": "server", "name": "x"}), "kind"),
        (json!({"name": "x"}), "kind"),
        (json!({"kind": "relay"}), "name"),
        (json!({"kind": "relay", "name": "  "}), "name"),
    ] {
        let (status, reply) = setup
            .api(Method::POST, "/api/v1/projects/shop/keys", Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        assert_eq!(reply["error"]["path"], field, "{reply}");
    }
    let (status, _) = setup
        .api(
            Method::POST,
            "/api/v1/projects/nope/keys",
            Some(json!({"kind": "relay", "name": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let key = relay_key(&setup).await;
    assert!(key.starts_with("fs_rly_"));
    let (status, listed) = setup.api(Method::GET, "/api/v1/projects/shop/keys", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);
    assert!(
        !listed.to_string().contains(&key[8..]),
        "the secret is never listed"
    );
    assert_eq!(listed["keys"][0]["name"], "edge, \"eu\" ✓");

    // An editor may not create one.
    let out = flagstaff(setup.dir.path())
        .args([
            "user",
            "create",
            "--email",
            "ed@example.test",
            "--role",
            "editor",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"correct horse battery staple\n")?;
            c.wait()
        })
        .expect("user create");
    assert!(out.success());
    let editor_token = flagstaff(setup.dir.path())
        .args(["token", "create", "--email", "ed@example.test", "--name", "t"])
        .output()
        .expect("token");
    let editor_token = String::from_utf8(editor_token.stdout).unwrap().trim().to_owned();
    let resp = reqwest::Client::new()
        .post(format!("{primary}/api/v1/projects/shop/keys"))
        .bearer_auth(&editor_token)
        .json(&json!({"kind": "relay", "name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // The document: each environment's bundle byte for byte, the hashes of active SDK keys.
    let server_key = setup.key.clone();
    let client_key = setup.new_key("client").await;
    let (status, etag, bytes) = get(&format!("{primary}/sdk/v1/relay"), &key, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        !text.contains(&server_key) && !text.contains(&client_key),
        "never a key"
    );
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["environments"].as_array().unwrap().len(), 2);
    let (_, bundle_etag, bundle) = get(&format!("{primary}/sdk/v1/bundle"), &server_key, &[]).await;
    assert!(
        text.contains(std::str::from_utf8(&bundle).unwrap()),
        "the bundle's own bytes"
    );
    let production = doc["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "production")
        .unwrap();
    assert_eq!(production["etag"].as_str(), bundle_etag.as_deref());
    let hashes: Vec<&str> = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["sha256"].as_str().unwrap())
        .collect();
    use sha2::Digest as _;
    assert!(hashes.contains(&hex::encode(sha2::Sha256::digest(server_key.as_bytes())).as_str()));
    assert!(hashes.contains(&hex::encode(sha2::Sha256::digest(client_key.as_bytes())).as_str()));
    // 304 while nothing changes; a new key changes it.
    let etag = etag.expect("an ETag");
    let (status, _, _) = get(
        &format!("{primary}/sdk/v1/relay"),
        &key,
        &[("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    setup.new_key("server").await;
    let (status, newer, _) = get(
        &format!("{primary}/sdk/v1/relay"),
        &key,
        &[("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(newer.as_deref(), Some(etag.as_str()));

    // SDK keys cannot read it, nor a relay key the SDK paths.
    let (status, _, _) = get(&format!("{primary}/sdk/v1/relay"), &server_key, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = get(&format!("{primary}/sdk/v1/bundle"), &key, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Revoked: refused, and audited (create and revoke).
    let id = listed["keys"][0]["id"].as_i64().unwrap();
    let (status, _) = setup
        .api(Method::DELETE, &format!("/api/v1/projects/shop/keys/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = setup
        .api(Method::DELETE, &format!("/api/v1/projects/shop/keys/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(&format!("{primary}/sdk/v1/relay"), &key, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, audit) = setup.api(Method::GET, "/api/v1/audit?limit=50", None).await;
    let audit = audit.to_string();
    assert!(audit.contains("relay_key"), "{audit}");
    assert!(!audit.contains(&key[8..]), "the audit log never holds the secret");
}

/// A primary and two relays: both serve the primary's bytes and ETags, their SDK streams hear a
/// toggle, OFREP and `/client/v1` answer through them, and they refuse a revoked key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_serve_the_primary_and_follow_its_changes() {
    let setup = Setup::with_env(document(), &[("FLAGSTAFF_STREAM_KEEPALIVE_SECS", "1")]).await;
    let primary = setup.server.url.clone();
    let key = relay_key(&setup).await;
    let client_key = setup.new_key("client").await;
    let server_key = setup.key.clone();
    let env = [
        ("FLAGSTAFF_RELAY_KEY", key.as_str()),
        ("FLAGSTAFF_STREAM_KEEPALIVE_SECS", "1"),
    ];
    let a = Relay::start(setup.dir.path(), "relay-a", &["--upstream", &primary], &env).await;
    let b = Relay::start(setup.dir.path(), "relay-b", &["--upstream", &primary], &env).await;
    for relay in [&a, &b] {
        let ready = relay.ready().await;
        assert_eq!(ready["environments"], 2, "{ready}");
    }
    assert!(
        !setup.dir.path().join("relay-a").join("no-such-data-dir").exists(),
        "a relay opens no database"
    );

    // Same bytes, same ETag, 304 on the primary's ETag, gzip.
    let (_, primary_etag, primary_bundle) = get(&format!("{primary}/sdk/v1/bundle"), &server_key, &[]).await;
    for relay in [&a, &b] {
        let (status, etag, bundle) = get(&format!("{}/sdk/v1/bundle", relay.url), &server_key, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(etag, primary_etag);
        assert_eq!(bundle, primary_bundle);
        let etag = primary_etag.clone().unwrap();
        let (status, _, _) = get(
            &format!("{}/sdk/v1/bundle", relay.url),
            &server_key,
            &[("If-None-Match", &etag)],
        )
        .await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        // A client key never reads a bundle, on a relay either.
        let (status, _, _) = get(&format!("{}/sdk/v1/bundle", relay.url), &client_key, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // No admin pages, no API.
        let (status, _, _) = get(&format!("{}/api/v1/projects", relay.url), &setup.admin, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = get(&format!("{}/sdk/v1/relay", relay.url), &key, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    // OFREP bulk with a client key: only client-side flags, the same answer as the primary's,
    // and eventStreams pointing at the relay (relative to the URL asked).
    let ofrep = |base: String| {
        let client_key = client_key.clone();
        async move {
            let resp = reqwest::Client::new()
                .post(format!("{base}/ofrep/v1/evaluate/flags"))
                .bearer_auth(&client_key)
                .json(&json!({"context": {"targetingKey": "u-1"}}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            resp.json::<Value>().await.unwrap()
        }
    };
    let from_primary = ofrep(primary.clone()).await;
    let from_relay = ofrep(a.url.clone()).await;
    assert_eq!(from_primary["flags"], from_relay["flags"]);
    assert!(!from_relay.to_string().contains("secret-config"));
    // Relative to the URL the provider was given: the relay's.
    let stream_uri = from_relay["eventStreams"][0]["endpoint"]["requestUri"]
        .as_str()
        .unwrap_or_default();
    assert!(stream_uri.starts_with("/ofrep/v1/stream?"), "{from_relay}");
    let resp = reqwest::Client::new()
        .get(format!("{}{stream_uri}", a.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "the relay serves its own OFREP stream"
    );
    drop(resp);
    // /client/v1 and the browser SDK.
    use base64::Engine as _;
    let context = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"targetingKey":"u-1"}"#);
    let (status, _, values) = get(&format!("{}/client/v1/{client_key}/{context}", b.url), "", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let values: Value = serde_json::from_slice(&values).unwrap();
    assert_eq!(values["flags"]["banner"], "Hello, \"world\"\t✓ <b>", "{values}");
    let (status, _, js) = get(&format!("{}/sdk/flagstaff.js", b.url), "", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!js.is_empty());
    let (status, _, metrics) = get(&format!("{}/metrics", b.url), "", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&metrics).contains("flagstaff_environments 2"));

    // A toggle on the primary reaches the SDK streams of both relays, with the primary's ETag.
    let mut on_a = SdkStream::open(&a.url, &server_key).await;
    let mut on_b = SdkStream::open(&b.url, &server_key).await;
    let first = on_a.next().await.unwrap();
    on_b.next().await.unwrap();
    setup.toggle("banner", false).await;
    let (_, new_etag, new_bundle) = get(&format!("{primary}/sdk/v1/bundle"), &server_key, &[]).await;
    for stream in [&mut on_a, &mut on_b] {
        let event = stream.changed("banner").await;
        assert!(event["revision"].as_u64() > first["revision"].as_u64());
        assert_eq!(Some(event["etag"].as_str().unwrap()), new_etag.as_deref());
    }
    let (_, etag, bundle) = get(&format!("{}/sdk/v1/bundle", b.url), &server_key, &[]).await;
    assert_eq!((etag, bundle), (new_etag, new_bundle));

    // A revoked key is refused by the relays, and its open stream ends.
    let (_, keys) = setup
        .api(
            Method::GET,
            "/api/v1/projects/shop/environments/production/keys",
            None,
        )
        .await;
    let id = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| server_key.starts_with(k["prefix"].as_str().unwrap()))
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, _) = setup
        .api(
            Method::DELETE,
            &format!("/api/v1/projects/shop/environments/production/keys/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for relay in [&a, &b] {
        wait_for("the relay to refuse the revoked key", async || {
            get(&format!("{}/sdk/v1/bundle", relay.url), &server_key, &[])
                .await
                .0
                == StatusCode::UNAUTHORIZED
        })
        .await;
    }
    for stream in [&mut on_a, &mut on_b] {
        while stream.next().await.is_some() {}
    }
}

/// The primary killed: relays keep serving; restarted: they follow it again. A relay started
/// while the primary is down serves from its cache file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_outlive_the_primary_and_start_from_their_cache_file() {
    let mut setup = Setup::new(document()).await;
    let primary = setup.server.url.clone();
    let key = relay_key(&setup).await;
    let server_key = setup.key.clone();
    let cache = setup.dir.path().join("relay-cache.json");
    let cache_arg = cache.display().to_string();
    let env = [("FLAGSTAFF_RELAY_KEY", key.as_str())];
    let a = Relay::start(
        setup.dir.path(),
        "relay-a",
        &["--upstream", &primary, "--cache-file", &cache_arg],
        &env,
    )
    .await;
    a.ready().await;
    wait_for("the cache file", async || cache.exists()).await;
    let (_, etag, bundle) = get(&format!("{}/sdk/v1/bundle", a.url), &server_key, &[]).await;

    setup.server.kill();
    let (status, still_etag, still) = get(&format!("{}/sdk/v1/bundle", a.url), &server_key, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&still_etag, &still), (&etag, &bundle));

    // Started with the primary down: serves the cache file, ready.
    let b = Relay::start(
        setup.dir.path(),
        "relay-b",
        &["--upstream", &primary, "--cache-file", &cache_arg],
        &env,
    )
    .await;
    let ready = b.ready().await;
    assert_eq!(ready["relay"]["loaded_from"], "cache_file", "{ready}");
    let (status, b_etag, b_bundle) = get(&format!("{}/sdk/v1/bundle", b.url), &server_key, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((b_etag, b_bundle), (etag.clone(), bundle.clone()));
    // Without a cache file and without a primary there is nothing to serve: not ready.
    let c = Relay::start(setup.dir.path(), "relay-c", &["--upstream", &primary], &env).await;
    let resp = reqwest::get(format!("{}/readyz", c.url)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

    // The primary back: the relays reconnect and follow its changes.
    setup.server.restart().await;
    let mut on_a = SdkStream::open(&a.url, &server_key).await;
    let mut on_b = SdkStream::open(&b.url, &server_key).await;
    c.ready().await;
    wait_for("relay b to reconnect", async || {
        let ready: Value = reqwest::get(format!("{}/readyz", b.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ready["relay"]["connected"] == true && ready["relay"]["loaded_from"] == "upstream"
    })
    .await;
    wait_for("relay a to reconnect", async || {
        let ready: Value = reqwest::get(format!("{}/readyz", a.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ready["relay"]["connected"] == true
    })
    .await;
    setup.toggle("new-checkout", false).await;
    on_a.changed("new-checkout").await;
    on_b.changed("new-checkout").await;
    let (_, primary_etag, _) = get(&format!("{primary}/sdk/v1/bundle"), &server_key, &[]).await;
    assert_ne!(primary_etag, etag);
    // Relay c follows too (its stream may hear the change a moment after a's and b's).
    wait_for("relay c to follow", async || {
        let (_, c_etag, _) = get(&format!("{}/sdk/v1/bundle", c.url), &server_key, &[]).await;
        c_etag == primary_etag
    })
    .await;
}

/// The Rust SDK pointed at a relay, with the primary as its fallback; evaluation counts sent
/// to the relay reach the primary's insights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_reads_through_a_relay_and_its_counts_reach_the_primary() {
    let setup = Setup::new(document()).await;
    let primary = setup.server.url.clone();
    let key = relay_key(&setup).await;
    let relay = Relay::start(
        setup.dir.path(),
        "relay",
        &["--upstream", &primary],
        &[
            ("FLAGSTAFF_RELAY_KEY", key.as_str()),
            ("FLAGSTAFF_EVENTS_FLUSH_SECS", "1"),
        ],
    )
    .await;
    relay.ready().await;
    let client = flagstaff_sdk::Client::builder(&relay.url, &setup.key)
        .fallback_url(&primary)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(400))
        .events_interval(Duration::from_millis(200))
        .build()
        .await
        .expect("client through the relay");
    let beta = flagstaff_sdk::context(json!({"targetingKey": "u-1"}));
    let other = flagstaff_sdk::context(json!({"targetingKey": "u-9"}));
    assert!(client.bool_value("new-checkout", &beta, false));
    assert!(!client.bool_value("new-checkout", &other, true));
    let mut changes = client.subscribe();
    setup.toggle("new-checkout", false).await;
    tokio::time::timeout(PATIENCE, changes.recv())
        .await
        .expect("the change arrives through the relay")
        .expect("a change");
    assert!(!client.bool_value("new-checkout", &beta, true));
    for _ in 0..3 {
        client.bool_value("new-checkout", &beta, true);
    }
    client.close().await;

    // The relay forwards the counts; the primary writes them to its operational database.
    let db = setup.dir.path().join("work").join("flagstaff.operational.db");
    wait_for("the counts to reach the primary", async || {
        let Ok(conn) = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        else {
            return false;
        };
        let count: i64 = conn
            .query_row(
                "SELECT coalesce(sum(count), 0) FROM evaluation_counts WHERE flag_key = 'new-checkout'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0);
        count >= 4
    })
    .await;
}

/// `flagstaff download`, then a relay serving the file with no upstream at all, re-reading it
/// when it changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downloaded_bundle_is_served_offline() {
    let setup = Setup::new(document()).await;
    let primary = setup.server.url.clone();
    let client_key = setup.new_key("client").await;
    let file = setup.dir.path().join("production, \"offline\".json");
    let download = |file: PathBuf| {
        let out = flagstaff(setup.dir.path())
            .args([
                "download",
                "--upstream",
                &primary,
                "--key",
                &setup.key,
                "--output",
            ])
            .arg(&file)
            .output()
            .expect("download");
        assert!(
            out.status.success(),
            "download: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    download(file.clone());
    let (_, etag, bundle) = get(&format!("{primary}/sdk/v1/bundle"), &setup.key, &[]).await;
    assert_eq!(std::fs::read(&file).unwrap(), bundle);

    // A wrong key refuses the download and leaves the file as it was.
    let out = flagstaff(setup.dir.path())
        .args([
            "download",
            "--upstream",
            &primary,
            "--key",
            "fs_srv_wrong",
            "--output",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    assert_eq!(std::fs::read(&file).unwrap(), bundle);

    // No key given: the relay refuses to start, naming the options.
    let out = flagstaff(setup.dir.path())
        .args(["relay", "--from-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--server-key"));

    let file_arg = file.display().to_string();
    let relay = Relay::start(
        setup.dir.path(),
        "offline",
        &[
            "--from-file",
            &file_arg,
            "--server-key",
            &setup.key,
            "--client-key",
            &client_key,
        ],
        &[("FLAGSTAFF_STREAM_KEEPALIVE_SECS", "1")],
    )
    .await;
    // The primary is not needed any more.
    drop(setup.server.url.clone());
    let ready = relay.ready().await;
    assert_eq!(ready["relay"]["loaded_from"], "file");
    let (status, relay_etag, relay_bundle) =
        get(&format!("{}/sdk/v1/bundle", relay.url), &setup.key, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((relay_etag, relay_bundle), (etag.clone(), bundle));
    let (status, _, _) = get(&format!("{}/sdk/v1/bundle", relay.url), "fs_srv_unknown", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let resp = reqwest::Client::new()
        .post(format!("{}/ofrep/v1/evaluate/flags/banner", relay.url))
        .bearer_auth(&client_key)
        .json(&json!({"context": {"targetingKey": "u-1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["value"],
        "Hello, \"world\"\t✓ <b>"
    );

    // A new download replaces the file: the relay serves it and tells its streams.
    let mut stream = SdkStream::open(&relay.url, &setup.key).await;
    stream.next().await.unwrap();
    setup.toggle("banner", false).await;
    download(file.clone());
    stream.changed("banner").await;
    let (_, new_etag, _) = get(&format!("{}/sdk/v1/bundle", relay.url), &setup.key, &[]).await;
    let (_, primary_etag, _) = get(&format!("{primary}/sdk/v1/bundle"), &setup.key, &[]).await;
    assert_eq!(new_etag, primary_etag);
    assert_ne!(new_etag, etag);
}
