//! The `flagstaff` binary itself: user and token creation against the data dir of a running
//! application, invalid settings stopping the start, secrets from `*_FILE`, the first start's
//! instructions, and the health check.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use flagstaff::AppState;
use flagstaff::config::Settings;
use serde_json::Value;

use crate::helpers::TestApp;

const BIN: &str = env!("CARGO_BIN_EXE_flagstaff");

/// `flagstaff` with a clean environment (no FLAGSTAFF_* from the machine running the tests).
pub(crate) fn flagstaff(data_dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FLAGSTAFF_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("FLAGSTAFF_DATA_DIR", data_dir).env("NO_COLOR", "1");
    cmd
}

fn run_with_stdin(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // A command that fails before reading its input closes the pipe: that is not an error here.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().expect("wait")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn user_create(dir: &Path, email: &str, role: &str, password: &str) -> Output {
    let mut cmd = flagstaff(dir);
    cmd.args([
        "user",
        "create",
        "--email",
        email,
        "--role",
        role,
        "--password-stdin",
    ]);
    run_with_stdin(cmd, &format!("{password}\n"))
}

fn token_create(dir: &Path, email: &str, name: &str) -> Output {
    let mut cmd = flagstaff(dir);
    cmd.args(["token", "create", "--email", email, "--name", name]);
    cmd.output().expect("run token create")
}

#[actix_web::test]
async fn user_and_token_created_by_the_cli_authenticate_the_running_app() {
    // The application is open first: the commands work beside a running server.
    let app = TestApp::new();
    let dir = app.dir.path().to_owned();

    let out = user_create(&dir, "ops@example.com", "admin", "a long enough password");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "user create prints nothing on stdout");

    let out = token_create(&dir, "ops@example.com", "ci");
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.strip_suffix('\n').expect("one line");
    assert!(!token.contains(char::is_whitespace), "only the token: {stdout:?}");
    assert!(token.starts_with("fs_adm_") && token.len() == 7 + 43, "{token:?}");

    let reply = app.call("GET", "/api/v1/tokens", Some(token), None).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["tokens"][0]["name"], "ci");
    let users = app.call("GET", "/api/v1/users", Some(token), None).await;
    assert_eq!(users.status, 200, "the token carries the admin role");
    assert_eq!(users.body["users"][0]["email"], "ops@example.com");
    assert_eq!(users.body["users"][0]["must_change_password"], false);

    let hash: String = app
        .state
        .store
        .read_blocking(|c| Ok(c.query_row("SELECT password_hash FROM users", [], |r| r.get(0))?))
        .unwrap();
    assert!(flagstaff::password::verify("a long enough password", &hash));

    let actors: Vec<(String, String)> = app
        .state
        .store
        .read_blocking(|c| {
            let mut stmt = c.prepare("SELECT actor, entity_kind FROM audit_log ORDER BY id")?;
            Ok(stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?)
        })
        .unwrap();
    assert_eq!(
        actors,
        [
            ("cli".into(), "user".into()),
            ("cli".into(), "admin_token".into())
        ]
    );
}

#[test]
fn user_create_refuses_bad_input_with_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let short = user_create(dir.path(), "ops@example.com", "admin", "short");
    assert!(!short.status.success());
    assert!(
        stderr(&short).contains("at least 12 characters"),
        "{}",
        stderr(&short)
    );

    let email = user_create(dir.path(), "not-an-email", "admin", "a long enough password");
    assert!(!email.status.success());
    assert!(
        stderr(&email).contains("not-an-email") && stderr(&email).contains("email"),
        "{}",
        stderr(&email)
    );

    let role = user_create(dir.path(), "ops@example.com", "owner", "a long enough password");
    assert_eq!(role.status.code(), Some(2));
    assert!(stderr(&role).contains("--role"), "{}", stderr(&role));

    let mut cmd = flagstaff(dir.path());
    cmd.args(["user", "create", "--email", "ops@example.com", "--role", "admin"]);
    let no_stdin = run_with_stdin(cmd, "a long enough password\n");
    assert!(!no_stdin.status.success());
    assert!(
        stderr(&no_stdin).contains("--password-stdin"),
        "{}",
        stderr(&no_stdin)
    );

    let ok = user_create(dir.path(), "ops@example.com", "admin", "a long enough password");
    assert!(ok.status.success(), "{}", stderr(&ok));
    let twice = user_create(dir.path(), "OPS@example.com", "viewer", "a long enough password");
    assert!(!twice.status.success());
    assert!(stderr(&twice).contains("already exists"), "{}", stderr(&twice));
}

#[test]
fn token_create_prints_nothing_on_stdout_when_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let no_db = token_create(dir.path(), "ops@example.com", "ci");
    assert!(!no_db.status.success());
    assert!(no_db.stdout.is_empty());
    assert!(stderr(&no_db).contains("--data-dir"), "{}", stderr(&no_db));
    assert!(
        !dir.path().join("flagstaff.db").exists(),
        "a mistyped data dir does not get a new database"
    );

    assert!(
        user_create(dir.path(), "ops@example.com", "viewer", "a long enough password")
            .status
            .success()
    );
    let unknown = token_create(dir.path(), "nobody@example.com", "ci");
    assert!(!unknown.status.success());
    assert!(unknown.stdout.is_empty());
    assert!(
        stderr(&unknown).contains("nobody@example.com"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn invalid_settings_stop_the_start_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let bind = flagstaff(dir.path())
        .args(["serve", "--bind", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(bind.status.code(), Some(2));
    assert!(stderr(&bind).contains("--bind"), "{}", stderr(&bind));

    let env_bind = flagstaff(dir.path())
        .env("FLAGSTAFF_BIND", "nonsense")
        .output()
        .unwrap();
    assert!(!env_bind.status.success());
    assert!(stderr(&env_bind).contains("--bind"), "{}", stderr(&env_bind));

    let format = flagstaff(dir.path())
        .env("FLAGSTAFF_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!format.status.success());
    assert!(stderr(&format).contains("--log-format"), "{}", stderr(&format));

    let log = flagstaff(dir.path())
        .args(["--log", "flagstaff=[[["])
        .output()
        .unwrap();
    assert!(!log.status.success());
    assert!(stderr(&log).contains("--log"), "{}", stderr(&log));

    // A data dir that cannot be one: a regular file.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let data_dir = flagstaff(&file).arg("serve").output().unwrap();
    assert!(!data_dir.status.success());
    let message = stderr(&data_dir);
    assert!(
        message.contains("--data-dir") && message.contains("FLAGSTAFF_DATA_DIR"),
        "{message}"
    );

    // A data dir below a regular file cannot be created.
    let below = flagstaff(&file.join("data"))
        .args(["--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!below.status.success());
    assert!(
        stderr(&below).contains("FLAGSTAFF_DATA_DIR"),
        "{}",
        stderr(&below)
    );

    let missing_file = flagstaff(dir.path())
        .env("FLAGSTAFF_ADMIN_PASSWORD_FILE", dir.path().join("nope"))
        .output()
        .unwrap();
    assert!(!missing_file.status.success());
    assert!(
        stderr(&missing_file).contains("FLAGSTAFF_ADMIN_PASSWORD_FILE"),
        "{}",
        stderr(&missing_file)
    );

    let half = flagstaff(dir.path())
        .env("FLAGSTAFF_ADMIN_EMAIL", "root@example.com")
        .output()
        .unwrap();
    assert!(!half.status.success());
    assert!(
        stderr(&half).contains("FLAGSTAFF_ADMIN_PASSWORD"),
        "{}",
        stderr(&half)
    );
}

/// A `flagstaff serve` child on 127.0.0.1 with an OS-chosen port and JSON logs.
pub(crate) struct Served {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    pub(crate) addr: String,
}

impl Served {
    pub(crate) fn start(mut cmd: Command) -> Served {
        let mut child = cmd
            .args(["serve", "--bind", "127.0.0.1:0", "--log-format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flagstaff serve");
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let mut served = Served {
            child,
            lines,
            seen: Vec::new(),
            addr: String::new(),
        };
        let listening = served.wait_for(|v| v["fields"]["addr"].is_string());
        listening["fields"]["addr"]
            .as_str()
            .unwrap()
            .clone_into(&mut served.addr);
        served
    }

    /// The first log line that satisfies `pred`. Waits at most 60 s (a hang guard).
    fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return line.clone();
        }
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if pred(&line) => return line,
                Ok(line) => self.seen.push(line),
                Err(e) => {
                    let _ = self.child.kill();
                    panic!("flagstaff serve did not log what was expected: {e}");
                }
            }
        }
    }

    pub(crate) fn stop(mut self) {
        self.child.kill().expect("kill the server this test started");
        self.child.wait().expect("reap it");
    }
}

fn message(line: &Value) -> String {
    line["fields"]["message"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn the_first_start_creates_the_database_and_says_how_to_add_an_admin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh/data");
    let mut served = Served::start(flagstaff(&data));
    assert!(
        data.join("flagstaff.db").is_file(),
        "the data dir and database are created"
    );
    let hint = served.wait_for(|l| message(l).contains("user create"));
    let hint = message(&hint);
    let abs = std::path::absolute(&data).unwrap();
    assert!(
        hint.contains(&format!("--data-dir {} user create --email", abs.display()))
            && hint.contains("--role admin --password-stdin"),
        "{hint}"
    );
    let health = flagstaff(&data)
        .args(["healthcheck", "--bind", &served.addr])
        .output()
        .unwrap();
    assert!(health.status.success(), "{}", stderr(&health));
    let addr = served.addr.clone();
    served.stop();

    let down = flagstaff(&data)
        .args(["healthcheck", "--bind", &addr])
        .output()
        .unwrap();
    assert!(
        !down.status.success(),
        "the health check fails when nothing answers"
    );
    assert!(stderr(&down).contains("/healthz"), "{}", stderr(&down));
}

#[test]
fn the_first_admin_comes_from_a_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let secret = dir.path().join("admin-password");
    std::fs::write(&secret, "from a secret file\n").unwrap();
    let mut cmd = flagstaff(&data);
    cmd.env("FLAGSTAFF_ADMIN_EMAIL", "root@example.com")
        .env("FLAGSTAFF_ADMIN_PASSWORD_FILE", &secret);
    let served = Served::start(cmd);
    served.stop();

    let state = AppState::open(Settings::with_data_dir(&data)).unwrap();
    let (role, hash): (String, String) = state
        .store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT role, password_hash FROM users WHERE email = 'root@example.com'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .unwrap();
    assert_eq!(role, "admin");
    assert!(
        flagstaff::password::verify("from a secret file", &hash),
        "the file's content, trimmed"
    );
    drop(state);

    // With users present, the variables are ignored on later starts (no second admin).
    let mut cmd = flagstaff(&data);
    cmd.env("FLAGSTAFF_ADMIN_EMAIL", "other@example.com")
        .env("FLAGSTAFF_ADMIN_PASSWORD_FILE", &secret);
    Served::start(cmd).stop();
    let state = AppState::open(Settings::with_data_dir(&data)).unwrap();
    let n: i64 = state
        .store
        .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(n, 1);
}

const DOCUMENT: &str = r#"{
  "flagstaff": 1,
  "project": {"key": "shop", "name": "Shop"},
  "environments": [{"key": "staging", "name": "Staging"}, {"key": "production", "name": "Production"}],
  "segments": [{"key": "beta", "name": "Beta", "included": ["u-1"]}],
  "flags": [{
    "key": "new-checkout", "name": "New checkout", "type": "boolean",
    "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
    "environments": {"production": {"enabled": true, "rules": [
      {"id": "beta", "clauses": [{"op": "in_segment", "values": ["beta"]}], "serve": {"variation": "on"}}
    ]}}
  }]
}"#;

#[actix_web::test]
async fn import_then_export_round_trips_and_matches_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("shop.json");
    std::fs::write(&file, DOCUMENT).unwrap();

    let imported = flagstaff(&data).args(["import"]).arg(&file).output().unwrap();
    assert!(imported.status.success(), "{}", stderr(&imported));

    let exported = flagstaff(&data)
        .args(["export", "--project", "shop"])
        .output()
        .unwrap();
    assert!(exported.status.success(), "{}", stderr(&exported));
    let out_file = dir.path().join("out.json");
    let to_file = flagstaff(&data)
        .args(["export", "--project", "shop", "--output"])
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(
        to_file.status.success() && to_file.stdout.is_empty(),
        "{}",
        stderr(&to_file)
    );
    assert_eq!(std::fs::read(&out_file).unwrap(), exported.stdout);

    // The same bytes as the API's export, and the data is what the document said.
    let app = TestApp {
        state: AppState::open(Settings::with_data_dir(&data)).unwrap(),
        dir,
    };
    let token = app.token(flagstaff::store::users::Role::Viewer);
    let api = app
        .call("GET", "/api/v1/projects/shop/export", Some(&token), None)
        .await;
    assert_eq!(api.status, 200);
    assert_eq!(
        api.bytes, exported.stdout,
        "CLI and API export the same canonical bytes"
    );
    let doc: Value = serde_json::from_slice(&exported.stdout).unwrap();
    assert_eq!(doc["flags"][0]["environments"]["production"]["enabled"], true);
    assert_eq!(doc["segments"][0]["included"][0], "u-1");
    let snapshot = app
        .state
        .snapshots
        .find("shop", "production")
        .expect("the imported environment is served");
    assert_eq!(snapshot.flags().unwrap().len(), 1);

    // Importing the export again changes nothing (no new audit row).
    let audit = |app: &TestApp| -> i64 {
        app.state
            .store
            .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))?))
            .unwrap()
    };
    let before = audit(&app);
    let again = run_with_stdin(
        {
            let mut cmd = flagstaff(&app.dir.path().join("data"));
            cmd.args(["import", "-"]);
            cmd
        },
        &String::from_utf8(exported.stdout.clone()).unwrap(),
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(audit(&app), before);
    let actors: Vec<String> = app
        .state
        .store
        .read_blocking(|c| {
            let mut stmt = c.prepare("SELECT DISTINCT actor FROM audit_log WHERE entity_kind != 'admin_token' AND entity_kind != 'user'")?;
            Ok(stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?)
        })
        .unwrap();
    assert_eq!(actors, ["cli"]);
}

#[test]
fn an_invalid_import_names_each_problem_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let good = dir.path().join("good.json");
    std::fs::write(&good, DOCUMENT).unwrap();
    assert!(
        flagstaff(&data)
            .arg("import")
            .arg(&good)
            .output()
            .unwrap()
            .status
            .success()
    );
    let before = flagstaff(&data)
        .args(["export", "--project", "shop"])
        .output()
        .unwrap()
        .stdout;

    let bad = dir.path().join("bad.json");
    let broken = DOCUMENT
        .replace(
            r#""op": "in_segment", "values": ["beta"]"#,
            r#""op": "in_segment", "values": ["nope"]"#,
        )
        .replace(r#""included": ["u-1"]"#, r#""included": ["u-1", "u-2"]"#);
    std::fs::write(&bad, broken).unwrap();
    let out = flagstaff(&data).arg("import").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(
        message.contains("flags[0].environments.production.rules[0].clauses[0]"),
        "{message}"
    );
    assert!(message.contains("nothing changed"), "{message}");
    let after = flagstaff(&data)
        .args(["export", "--project", "shop"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        before, after,
        "the valid change to the segment was not written either"
    );

    std::fs::write(
        &bad,
        "{\"flagstaff\": 1, \"project\": {\"key\": \"x\"}, \"flags\": 3}",
    )
    .unwrap();
    let out = flagstaff(&data).arg("import").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a Flagstaff document") && stderr(&out).contains("flags"),
        "{}",
        stderr(&out)
    );

    let missing = flagstaff(&data)
        .args(["export", "--project", "nope"])
        .output()
        .unwrap();
    assert!(!missing.status.success() && missing.stdout.is_empty());
    assert!(stderr(&missing).contains("nope"), "{}", stderr(&missing));
}
