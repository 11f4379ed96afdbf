//! Operations (issue 8): backups by plain copy and by `flagstaff backup`, restore, crash safety,
//! graceful shutdown, health and metrics, the Docker image's settings, nginx in front, and logs
//! that never show a secret. Most of these run the real binary as a child process on a temp
//! data dir and an OS-chosen port, and stop it by its PID.

mod backup;
mod crash;
mod docker;
mod follow;
mod health;
mod logs;
mod proxy;
mod shutdown;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use flagstaff::store::users::Role;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::TestApp;

/// The project every test here works on: `FLAGS` boolean flags in `production`.
pub const PROJECT: &str = "ops";
pub const ENV: &str = "production";
pub const FLAGS: usize = 50;

pub fn flag_key(i: usize) -> String {
    format!("f{:02}", i % FLAGS)
}

/// The document imported by [`Prepared::new`].
pub fn document() -> Value {
    let flags: Vec<Value> = (0..FLAGS)
        .map(|i| {
            json!({
                "key": flag_key(i), "name": format!("Flag {i}"), "kind": "flag", "type": "boolean",
                "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
                "environments": {ENV: {"enabled": true, "fallthrough": {"variation": "off"}}}
            })
        })
        .collect();
    json!({
        "flagstaff": 1,
        "project": {"key": PROJECT, "name": "Operations"},
        "environments": [{"key": ENV, "name": "Production"}],
        "segments": [],
        "flags": flags
    })
}

/// A data dir holding the test project, an admin token and a server key, prepared through the
/// real application and closed again, ready for a `flagstaff serve` child.
pub struct Prepared {
    pub dir: TempDir,
    pub token: String,
    pub server_key: String,
    pub client_key: String,
}

impl Prepared {
    pub async fn new() -> Prepared {
        let app = TestApp::new();
        let token = app.token(Role::Admin);
        let imported = app
            .call("POST", "/api/v1/import", Some(&token), Some(document()))
            .await;
        assert!(
            imported.status.is_success(),
            "import: {} {}",
            imported.status,
            imported.body
        );
        let keys = format!("/api/v1/projects/{PROJECT}/environments/{ENV}/keys");
        let mut secrets = Vec::new();
        for kind in ["server", "client"] {
            let reply = app
                .call(
                    "POST",
                    &keys,
                    Some(&token),
                    Some(json!({"kind": kind, "name": "ops"})),
                )
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
            secrets.push(reply.body["key"].as_str().expect("the new key").to_owned());
        }
        let TestApp { dir, state } = app;
        drop(state);
        let client_key = secrets.pop().unwrap();
        let server_key = secrets.pop().unwrap();
        Prepared {
            dir,
            token,
            server_key,
            client_key,
        }
    }
}

/// `flagstaff` with a clean environment on `data_dir`.
pub fn command(data_dir: &Path) -> Command {
    crate::cli::flagstaff(data_dir)
}

/// A `flagstaff serve` child with JSON logs on 127.0.0.1 and an OS-chosen port.
pub struct Flagstaff {
    child: Child,
    pub url: String,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    exited: Option<ExitStatus>,
}

/// How long a start may take before the test gives up (a hang guard, not a speed check).
const START_GUARD: Duration = Duration::from_secs(60);

impl Flagstaff {
    /// Starts `flagstaff serve` on `data_dir` with extra environment variables.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Flagstaff {
        let mut cmd = command(data_dir);
        cmd.env("FLAGSTAFF_LOG", "info");
        for (name, value) in env {
            cmd.env(name, value);
        }
        Self::spawn(cmd)
    }

    /// Starts `cmd` (a `flagstaff` command with its environment) as `flagstaff serve`.
    pub fn spawn(mut cmd: Command) -> Flagstaff {
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--log-format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn flagstaff serve");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let stderr = child.stderr.take().expect("stderr is piped");
        let collected = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && let Some(addr) = v["fields"]["addr"].as_str()
                    && v["fields"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("listening"))
                {
                    let _ = tx.send(addr.to_owned());
                }
                collected.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(START_GUARD) {
            Ok(addr) => addr,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "flagstaff serve did not start ({e}): {:#?}",
                    lines.lock().unwrap()
                );
            }
        };
        Flagstaff {
            child,
            url: format!("http://{addr}"),
            lines,
            reader: Some(reader),
            exited: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`TERM`, `INT`) to this child, by its PID.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// Waits for the child to exit, at most `guard`.
    pub fn wait(&mut self, guard: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + guard;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(status);
                // Every line the process wrote is read once its end of the pipe is closed.
                if let Some(reader) = self.reader.take() {
                    reader.join().expect("the log reader");
                }
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// SIGTERM, then the exit status and how long the exit took (at most 30 s: a hang guard).
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        let started = Instant::now();
        self.signal("TERM");
        let status = self.wait(Duration::from_secs(30)).unwrap_or_else(|| {
            panic!(
                "flagstaff did not exit within 30 s of SIGTERM: {:#?}",
                self.logs()
            )
        });
        (status, started.elapsed())
    }

    /// SIGKILL (`kill -9`) by PID, and reap the child.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL the server this test started");
        self.exited = Some(self.child.wait().expect("reap it"));
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a log line satisfies `pred` (at most 20 s) and returns it parsed.
    pub fn wait_for_log(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| pred(v));
            if let Some(v) = found {
                return v;
            }
            assert!(Instant::now() < until, "no such log line: {:#?}", self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Flagstaff {
    fn drop(&mut self) {
        if self.exited.is_none() && self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An HTTP client for the child servers (no proxy from the environment).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// `PATCH` one flag's production state; returns the status and the body.
pub async fn patch_state(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    flag: &str,
    body: &Value,
) -> (u16, Value) {
    let res = http
        .patch(format!(
            "{url}/api/v1/projects/{PROJECT}/flags/{flag}/environments/{ENV}"
        ))
        .bearer_auth(token)
        .json(body)
        .send()
        .await;
    match res {
        Ok(res) => {
            let status = res.status().as_u16();
            (status, res.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// The production bundle, as the server key reads it.
pub async fn bundle(http: &reqwest::Client, url: &str, server_key: &str) -> Value {
    let res = http
        .get(format!("{url}/sdk/v1/bundle"))
        .bearer_auth(server_key)
        .send()
        .await
        .expect("bundle");
    assert_eq!(res.status(), 200);
    res.json().await.expect("bundle JSON")
}
