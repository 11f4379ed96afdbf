//! Real third-party clients against a real Flagstaff socket: the OpenFeature server SDK with
//! its OFREP provider in Node, the Python OFREP provider from PyPI, the OpenFeature web SDK with
//! its OFREP web provider in headless Chromium, and flagstaff.js in headless Chromium — pages
//! served from another origin. The tools come from `scripts/install-test-deps.sh`; without one
//! a test is skipped with the command to run (fails, with `FLAGSTAFF_REQUIRE_ALL_TOOLS=1`).
//!
//! Each script prints `{"step": …}` JSON lines and waits for a line on stdin where the test has
//! something to do (toggle a flag, stop the server). Expectations live here, in Rust.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{RealServer, Tool, root, tools_installed};
use crate::ofrep::{SECRETS, Web};

/// The tools a script of `tests/js` needs (each test checks them first)…
const JS: [Tool; 2] = [Tool::Node, Tool::JsPackages];
/// … and one that drives Chromium.
const BROWSER: [Tool; 3] = [Tool::Node, Tool::JsPackages, Tool::Chromium];

fn js_script(name: &str) -> (PathBuf, Vec<String>) {
    (
        Tool::Node.expect(),
        vec![root().join("tests/js").join(name).display().to_string()],
    )
}

/// A running client script.
struct Script {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    name: String,
}

impl Script {
    fn start((program, mut args): (PathBuf, Vec<String>), extra: &[&str]) -> Script {
        args.extend(extra.iter().map(std::string::ToString::to_string));
        let name = args.first().cloned().unwrap_or_default();
        let mut command = Command::new(&program);
        if let Some(chromium) = Tool::Chromium.path() {
            command.env("FLAGSTAFF_CHROMIUM", chromium);
        }
        let mut child = command
            .args(&args)
            .current_dir(root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Script {
            child,
            stdin,
            lines,
            stderr,
            name,
        }
    }

    /// The next step the script reports; it must be `name`. Bounded: 90 s.
    async fn expect(&mut self, name: &str) -> Value {
        let lines = std::mem::replace(&mut self.lines, mpsc::channel().1);
        let (lines, got) = actix_web::rt::task::spawn_blocking(move || {
            let got = lines.recv_timeout(Duration::from_secs(90));
            (lines, got)
        })
        .await
        .expect("waiting thread");
        self.lines = lines;
        let stderr = || self.stderr.lock().unwrap().clone();
        let line = got.unwrap_or_else(|_| {
            panic!(
                "{}: no step {name:?} (exited or silent)\nstderr:\n{}",
                self.name,
                stderr()
            )
        });
        let value: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("{}: not JSON: {line}", self.name));
        assert_eq!(
            value["step"],
            name,
            "{}: unexpected step: {value}\nstderr:\n{}",
            self.name,
            stderr()
        );
        value
    }

    /// Tells the script to go on.
    fn proceed(&mut self) {
        writeln!(self.stdin, "go")
            .and_then(|()| self.stdin.flush())
            .expect("write to the script");
    }

    /// Waits for the script to exit and asserts it succeeded.
    async fn finish(mut self) {
        let status = actix_web::rt::task::spawn_blocking(move || {
            let status = self.child.wait();
            (status, self.stderr, self.name)
        })
        .await
        .expect("waiting thread");
        let (status, stderr, name) = status;
        let status = status.expect("wait for the script");
        assert!(
            status.success(),
            "{name} failed: {status}\nstderr:\n{}",
            stderr.lock().unwrap()
        );
    }
}

fn details(results: &Value, name: &str) -> (Value, Value, Value, Value) {
    let d = &results["results"][name];
    (
        d["value"].clone(),
        d["variant"].clone(),
        d["reason"].clone(),
        d["errorCode"].clone(),
    )
}

#[actix_web::test]
async fn openfeature_server_sdk_with_the_ofrep_provider_in_node() {
    if !tools_installed(&JS) {
        return;
    }
    let web = Web::new().await;
    let server = RealServer::start(&web.app.state);
    let mut script = Script::start(js_script("node-ofrep.mjs"), &[&server.url, &web.server]);
    let r = script.expect("results").await;
    script.finish().await;
    server.stop().await;

    assert_eq!(
        details(&r, "staff"),
        (json!(true), json!("on"), json!("TARGETING_MATCH"), Value::Null)
    );
    assert_eq!(r["results"]["staff"]["flagMetadata"]["ruleId"], "acme-staff");
    assert_eq!(
        details(&r, "noTargetingKey"),
        (json!(false), json!("off"), json!("DEFAULT"), Value::Null)
    );
    let (value, _, reason, _) = details(&r, "split");
    assert!(value == "A" || value == "B", "{value}");
    assert_eq!(reason, "SPLIT");
    assert_eq!(
        details(&r, "splitNoTargetingKey"),
        (
            json!("none"),
            Value::Null,
            json!("ERROR"),
            json!("TARGETING_KEY_MISSING")
        )
    );
    // JavaScript has one number type: 1.0 arrives as 1.
    assert_eq!(
        details(&r, "price"),
        (json!(1), json!("full"), json!("STATIC"), Value::Null)
    );
    assert_eq!(details(&r, "maxItems").0, json!(30));
    assert_eq!(details(&r, "theme").0, json!({"bg": "#000", "fg": "#fff"}));
    assert_eq!(
        details(&r, "internal").0,
        json!(true),
        "a server key sees server-only flags"
    );
    assert_eq!(
        details(&r, "gated"),
        (json!(false), json!("off"), json!("DISABLED"), Value::Null)
    );
    assert_eq!(
        r["results"]["gated"]["flagMetadata"]["prerequisite"],
        "internal-tool"
    );
    assert_eq!(
        details(&r, "missing"),
        (json!(true), Value::Null, json!("ERROR"), json!("FLAG_NOT_FOUND"))
    );
    assert_eq!(details(&r, "wrongType").3, json!("TYPE_MISMATCH"));
}

#[actix_web::test]
async fn openfeature_python_sdk_with_the_ofrep_provider_from_pypi() {
    if !tools_installed(&[Tool::PythonVenv]) {
        return;
    }
    let web = Web::new().await;
    let server = RealServer::start(&web.app.state);
    let python = Tool::PythonVenv.expect();
    let script = root().join("tests/py/ofrep_provider.py").display().to_string();
    let mut script = Script::start((python, vec![script]), &[&server.url, &web.client]);
    let r = script.expect("results").await;
    script.finish().await;
    server.stop().await;

    assert_eq!(
        details(&r, "staff"),
        (json!(true), json!("on"), json!("TARGETING_MATCH"), Value::Null)
    );
    assert_eq!(
        details(&r, "noContext"),
        (json!(false), json!("off"), json!("DEFAULT"), Value::Null)
    );
    assert_eq!(
        details(&r, "noTargetingKey"),
        (json!(false), json!("off"), json!("DEFAULT"), Value::Null)
    );
    assert_eq!(details(&r, "split").2, json!("SPLIT"));
    assert_eq!(
        details(&r, "splitNoTargetingKey").3,
        json!("TARGETING_KEY_MISSING")
    );
    assert_eq!(details(&r, "splitNoTargetingKey").0, json!("none"));
    // The float stays a float (1.0) and the integer an integer for the typed getters.
    assert_eq!(
        details(&r, "price"),
        (json!(1.0), json!("full"), json!("STATIC"), Value::Null)
    );
    assert_eq!(r["results"]["price"]["type"], "float");
    assert_eq!(
        (details(&r, "maxItems").0, &r["results"]["maxItems"]["type"]),
        (json!(30), &json!("int"))
    );
    assert_eq!(details(&r, "theme").0, json!({"bg": "#000", "fg": "#fff"}));
    // A client key: server-only flags do not exist; the prerequisite's name is not told.
    assert_eq!(
        details(&r, "internal"),
        (json!(false), Value::Null, json!("ERROR"), json!("FLAG_NOT_FOUND"))
    );
    assert_eq!(
        details(&r, "gated"),
        (json!(false), json!("off"), json!("DISABLED"), Value::Null)
    );
    assert_eq!(
        r["results"]["gated"]["flagMetadata"],
        json!({"version": r["results"]["gated"]["flagMetadata"]["version"], "prerequisiteFailed": true})
    );
    assert_eq!(details(&r, "missing").3, json!("FLAG_NOT_FOUND"));
}

#[actix_web::test]
async fn openfeature_web_sdk_with_the_ofrep_web_provider_in_chromium() {
    if !tools_installed(&BROWSER) {
        return;
    }
    web_provider_in_chromium(false).await;
}

/// Issue 18: the same browser test pointed at a relay (`flagstaff::relay::serve`, following a
/// real primary over its socket); the toggles are made on the primary.
#[actix_web::test]
async fn openfeature_web_sdk_with_the_ofrep_web_provider_through_a_relay() {
    if !tools_installed(&BROWSER) {
        return;
    }
    web_provider_in_chromium(true).await;
}

async fn web_provider_in_chromium(through_relay: bool) {
    let web = Web::new().await;
    let server = RealServer::start(&web.app.state);
    let mut stop_relay = None;
    let mut url = server.url.clone();
    if through_relay {
        let reply = web
            .app
            .call(
                "POST",
                "/api/v1/projects/web/keys",
                Some(&web.admin),
                Some(json!({"kind": "relay", "name": "browser tests"})),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        let source = flagstaff::relay::Source::Upstream {
            url: server.url.clone(),
            relay_key: flagstaff::config::Secret::new(reply.body["key"].as_str().unwrap()),
            cache_file: None,
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let dir = tempfile::tempdir().unwrap();
        let settings = flagstaff::config::Settings::with_data_dir(dir.path().join("unused"));
        let relay = actix_web::rt::spawn(flagstaff::relay::serve(settings, source, listener, async move {
            let _ = stopped.await;
            flagstaff::server::Signal::Requested
        }));
        stop_relay = Some((stop, relay, dir));
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .map_or(true, |r| r.status() != 200)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the relay never became ready"
            );
            actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let mut script = Script::start(js_script("web-ofrep.mjs"), &[&url, &web.client]);

    let ready = script.expect("ready").await;
    assert_ne!(ready["pageOrigin"], json!(url), "the page is on another origin");
    let v = &ready["values"];
    assert_eq!(
        (&v["newCheckout"]["value"], &v["newCheckout"]["reason"]),
        (&json!(false), &json!("DEFAULT"))
    );
    assert_eq!(
        (&v["betaUi"]["value"], &v["betaUi"]["reason"]),
        (&json!(false), &json!("DISABLED"))
    );
    assert_eq!(v["theme"]["value"], json!({"bg": "#000", "fg": "#fff"}));
    assert_eq!(v["price"]["value"], json!(1));
    assert_eq!(v["split"]["reason"], "SPLIT");
    assert_eq!(v["gated"]["value"], false);
    assert_eq!(v["internal"]["errorCode"], "FLAG_NOT_FOUND");
    assert_eq!(ready["bulk"][0], 200);
    assert!(
        ready["bulk"].as_array().unwrap().contains(&json!(304)),
        "304 on the refetch: {}",
        ready["bulk"]
    );

    web.toggle("beta-ui", true).await;
    script.proceed();
    let changed = script.expect("changed").await;
    assert_eq!(changed["values"]["betaUi"]["value"], true);
    assert_eq!(changed["values"]["betaUi"]["reason"], "STATIC");
    let flags_changed: Vec<Value> = changed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c.as_array().unwrap().clone())
        .collect();
    assert!(
        flags_changed.contains(&json!("beta-ui")),
        "{}",
        changed["changes"]
    );
    assert!(
        changed["bulk"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| **s == 200)
            .count()
            >= 2
    );

    // A change the client key cannot see: the provider refetches and gets 304.
    web.toggle("internal-tool", false).await;
    script.proceed();
    let unchanged = script.expect("unchanged").await;
    assert_eq!(
        unchanged["bulk"].as_array().unwrap().last(),
        Some(&json!(304)),
        "{}",
        unchanged["bulk"]
    );
    assert_eq!(unchanged["values"]["betaUi"]["value"], true);
    script.finish().await;
    if let Some((stop, relay, _dir)) = stop_relay {
        let _ = stop.send(());
        relay
            .await
            .expect("the relay task")
            .expect("the relay stopped cleanly");
    }
    server.stop().await;
}

#[actix_web::test]
async fn flagstaff_js_in_chromium_live_fallback_cache_and_timeout() {
    if !tools_installed(&BROWSER) {
        return;
    }
    let web = Web::new().await;
    let server = RealServer::start(&web.app.state);
    let mut script = Script::start(js_script("browser-sdk.mjs"), &[&server.url, &web.client]);

    let ready = script.expect("ready").await;
    assert_ne!(
        ready["pageOrigin"],
        json!(server.url),
        "the page is on another origin"
    );
    assert_eq!(ready["ok"], true);
    assert_eq!(
        (&ready["newCheckout"], &ready["betaUi"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(ready["theme"], json!({"bg": "#000", "fg": "#fff"}));
    assert_eq!(ready["maxItems"], json!(30));
    assert_eq!(
        (&ready["unknownEnabled"], &ready["unknownIsUndefined"]),
        (&json!(false), &json!(true))
    );
    assert_eq!(ready["internalIsUndefined"], true);
    let all = ready["all"].to_string();
    for secret in SECRETS {
        if secret != "u-target-1" {
            assert!(!all.contains(secret), "{secret} reached the browser: {all}");
        }
    }
    let requests = ready["requests"].as_array().unwrap();
    assert_eq!(
        requests[0],
        json!({"page": "main", "method": "GET", "status": 200, "get": true}),
        "the belt first"
    );
    assert!(
        !requests.iter().any(|r| r["method"] == "POST"),
        "no POST while the GET works: {requests:?}"
    );

    web.toggle("beta-ui", true).await;
    script.proceed();
    let changed = script.expect("changed").await;
    assert!(
        changed["changes"].to_string().contains("beta-ui"),
        "{}",
        changed["changes"]
    );

    let identified = script.expect("identified").await;
    assert_eq!(identified["other"]["ok"], true);
    assert_eq!(identified["other"]["newCheckout"], false, "u-2 is not targeted");
    assert!(
        identified["other"]["changes"]
            .to_string()
            .contains("new-checkout"),
        "{identified}"
    );
    assert_eq!(identified["back"], true);

    let fallback = script.expect("fallback").await;
    assert_eq!(fallback["ok"], true);
    assert_eq!(
        (&fallback["newCheckout"], &fallback["betaUi"]),
        (&json!(false), &json!(true))
    );
    let posts = fallback["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "POST" && r["status"] == 200)
        .count();
    assert!(posts >= 1, "the OFREP POST answered: {}", fallback["requests"]);

    // Issue 18: a belt that never answers gives way to the suspenders within the timeout.
    let slow = script.expect("slow-belt").await;
    assert_eq!(slow["ok"], true, "{slow}");
    assert_eq!(
        (&slow["newCheckout"], &slow["betaUi"]),
        (&json!(false), &json!(true))
    );
    assert!(
        slow["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["method"] == "POST" && r["status"] == 200),
        "{slow}"
    );
    // A stream that cannot be held: polling brings the change.
    let polling = script.expect("polling").await;
    assert_eq!(polling["maxItems"], json!(30));
    web.toggle("max-items", false).await;
    script.proceed();
    let polled = script.expect("polled").await;
    assert_ne!(polled["maxItems"], json!(30), "{polled}");

    script.expect("stop-server").await;
    server.stop().await;
    script.proceed();
    let cached = script.expect("cached").await;
    assert_eq!(cached["ok"], false, "the server is down");
    assert_eq!(
        (&cached["newCheckout"], &cached["betaUi"]),
        (&json!(true), &json!(true)),
        "the last values, kept"
    );
    assert_eq!(cached["theme"], json!({"bg": "#000", "fg": "#fff"}));

    let down = script.expect("down-defaults").await;
    assert_eq!(
        (&down["ok"], &down["newCheckout"], &down["theme"]),
        (&json!(false), &json!(false), &Value::Null)
    );

    let timed_out = script.expect("timeout").await;
    assert_eq!(
        (&timed_out["ok"], &timed_out["newCheckout"], &timed_out["theme"]),
        (&json!(false), &json!(false), &Value::Null)
    );
    assert_eq!(timed_out["all"], json!({}));
    assert!(
        timed_out["elapsed"].as_f64().unwrap() >= 690.0,
        "it waited for the timeout: {}",
        timed_out["elapsed"]
    );
    script.finish().await;
}
