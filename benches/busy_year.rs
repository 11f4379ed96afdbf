//! A year of a busy team (issue 13; figures in BENCHMARKS.md, "Operations": "A year of a busy
//! team"). Not a Criterion bench: a harness that generates the data, runs two real servers on
//! loopback and prints a Markdown table.
//!
//! ```sh
//! cargo bench --bench busy_year -- --new-bin target/release/flagstaff \
//!     [--main-bin /path/to/flagstaff-of-main] [--dir /var/tmp] [--sdk-secs 600]
//! ```
//!
//! 1. **Generates** a data dir as today's main leaves it (published schema 2: counts, sessions
//!    and last uses inside `flagstaff.db`): one project, 3 environments, 300 flags (a third with
//!    targets, rules on segments and percentage rollouts), 40 segments, 20 users with a session
//!    each, 60 SDK keys, 50,000 audit entries (state changes, definition changes and segment
//!    changes, before and after as the code writes them), and a year of hourly evaluation counts
//!    from 1,000 SDK instances reporting every 10 s (production: every flag, both variants, every
//!    hour; staging and development: every flag during working hours).
//! 2. **Upgrades** a copy with this version (in place, as a first start does) and runs the
//!    retention upkeep once (defaults: audit kept, 90 days of counts, hourly for 7).
//! 3. Starts each server (`--main-bin` on the first copy, `--new-bin` on the upgraded one) and
//!    measures admin toggle latency (`PATCH …/environments/production`, sequentially), the time
//!    of N toggles of different flags sent sequentially and all at once, and — for the new one —
//!    publications of `flagstaff.db` while 1,000 simulated SDKs report every 10 s with no
//!    configuration change (`--sdk-secs`, default 600; the count is read from the published
//!    file's `publication` row and by watching its inode).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flagstaff::AppState;
use flagstaff::config::Settings;
use flagstaff::store::users::Role;
use flagstaff::store::{self, admin_tokens, api_keys, users};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

const FLAGS: usize = 300;
const SEGMENTS: usize = 40;
const USERS: usize = 20;
const KEYS: usize = 60;
const AUDIT: usize = 50_000;
const SDKS: usize = 1_000;
const ENVS: [&str; 3] = ["production", "staging", "development"];
const DAY_MS: i64 = 86_400_000;

/// A small deterministic generator (xorshift), so every run has the same data.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn flag_key(i: usize) -> String {
    let area = ["checkout", "search", "billing", "onboarding", "mobile", "reports"][i % 6];
    format!("{area}.feature-{i:03}")
}

/// A flag's state in one environment: simple for most, targets/rules/rollouts for a third.
fn state(rng: &mut Rng, i: usize, env: usize, version: u64) -> Value {
    let mut s = json!({"enabled": rng.below(3) != 0, "off_variation": "off",
        "fallthrough": {"variation": if rng.below(2) == 0 { "on" } else { "off" }}});
    if i.is_multiple_of(3) {
        let users: Vec<String> = (0..(5 + rng.below(25)))
            .map(|u| format!("user-{}", rng.below(100_000) + u))
            .collect();
        s["targets"] = json!([{"variation": "on", "values": users}]);
        s["rules"] = json!([
            {"id": format!("r{i}-{env}-a"), "clauses": [{"attribute": "email", "op": "ends_with",
                "values": ["@acme.com", "@example.org"]}], "serve": {"variation": "on"}},
            {"id": format!("r{i}-{env}-b"), "clauses": [{"op": "in_segment",
                "values": [format!("segment-{:02}", i % SEGMENTS)]}],
             "serve": {"rollout": {"bucket_by": "targetingKey", "variations": [
                {"variation": "on", "weight": 10_000 * (1 + rng.below(9))},
                {"variation": "off", "weight": 100_000 - 10_000 * (1 + rng.below(9)).min(9)}]}}}
        ]);
        // Keep the weights summing to 100,000.
        let on = s["rules"][1]["serve"]["rollout"]["variations"][0]["weight"]
            .as_u64()
            .unwrap();
        s["rules"][1]["serve"]["rollout"]["variations"][1]["weight"] = json!(100_000 - on);
    }
    if version > 0 {
        s["version"] = json!(version);
    }
    s
}

fn document(rng: &mut Rng) -> Value {
    let segments: Vec<Value> = (0..SEGMENTS)
        .map(|s| {
            json!({"key": format!("segment-{s:02}"), "name": format!("Segment {s}: beta, \"early\" users"),
                "included": (0..10).map(|u| format!("user-{s}-{u}")).collect::<Vec<_>>(), "excluded": [],
                "rules": [{"clauses": [{"attribute": "plan", "op": "in", "values": ["pro", "enterprise"]},
                                       {"attribute": "country", "op": "in", "values": ["DE", "FR", "NL"]}]}]})
        })
        .collect();
    let flags: Vec<Value> = (0..FLAGS)
        .map(|i| {
            let environments: serde_json::Map<String, Value> = ENVS
                .iter()
                .enumerate()
                .map(|(e, env)| (env.to_string(), state(rng, i, e, 0)))
                .collect();
            let team = ["team-a", "team-b", "team-c"][i % 3];
            json!({"key": flag_key(i), "name": format!("Feature {i}"), "kind": "flag", "type": "boolean",
                "description": "Rolls the new behaviour out to customers, team by team.",
                "tags": [team, "2026"], "temporary": i % 4 != 0,
                "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
                "environments": environments})
        })
        .collect();
    json!({"flagstaff": 1, "project": {"key": "shop", "name": "Shop"},
        "environments": ENVS.iter().map(|e| json!({"key": e, "name": e})).collect::<Vec<_>>(),
        "segments": segments, "flags": flags})
}

/// Builds the configuration with this version's code in `scratch`; returns an admin token.
fn configure(scratch: &Path, rng: &mut Rng) -> String {
    let state = AppState::open(Settings::with_data_dir(scratch)).expect("open scratch");
    let doc: flagstaff_eval::model::Document = serde_json::from_value(document(rng)).expect("document");
    state
        .write_blocking(move |tx| {
            let (admin, token) = {
                let user = users::insert(tx, "admin@example.test", Role::Admin, "!")?;
                (user.clone(), admin_tokens::create(tx, user.id, "bench")?)
            };
            for u in 1..USERS {
                let role = [Role::Editor, Role::Viewer][u % 2];
                users::insert(tx, &format!("person-{u}@example.test"), role, "!")?;
            }
            let actor = store::audit::Actor::user(admin.id, &admin.email);
            let (_, changes) = store::import::import(tx, &actor, &doc, true)?;
            let envs: Vec<i64> = tx
                .prepare("SELECT id FROM environments ORDER BY id")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for k in 0..KEYS {
                let kind = [api_keys::KeyKind::Server, api_keys::KeyKind::Client][k % 2];
                api_keys::create(
                    tx,
                    envs[k % envs.len()],
                    kind,
                    &format!("service {k}"),
                    Some(admin.id),
                )?;
            }
            Ok((token, changes))
        })
        .expect("configure")
}

/// Writes the data dir of today's main (schema 2) at `dir` from the configuration in `scratch`.
fn generate_main(dir: &Path, scratch: &Path, rng: &mut Rng, now: i64, days: i64) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("flagstaff.db");
    let mut db = Connection::open(&path).unwrap();
    store::migrations().to_version(&mut db, 2).expect("schema 2");
    db.execute(
        "ATTACH DATABASE ?1 AS scratch",
        [scratch.join("work").join("flagstaff.db").to_string_lossy()],
    )
    .unwrap();
    // The scratch database has today's schema; copy the columns both schemas have.
    let mut copy = String::from("BEGIN;");
    for table in [
        "projects",
        "environments",
        "flags",
        "flag_states",
        "segments",
        "users",
        "admin_tokens",
        "api_keys",
    ] {
        let columns: String = db
            .query_row(
                "SELECT group_concat(name, ', ') FROM pragma_table_info(?1, 'main')
                 WHERE name IN (SELECT name FROM pragma_table_info(?1, 'scratch'))",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        let _ = write!(
            copy,
            "INSERT INTO {table} ({columns}) SELECT {columns} FROM scratch.{table};"
        );
    }
    copy.push_str("COMMIT;");
    db.execute_batch(&copy).unwrap();
    db.execute("DETACH DATABASE scratch", []).unwrap();

    let tx = db.transaction().unwrap();
    // 50,000 audit entries over the year: mostly state changes, some definition and segment edits.
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO audit_log (at, actor_user_id, actor, action, project_key, environment_key, entity_kind, entity_key, before, after)
                 VALUES (?1, ?2, ?3, ?4, 'shop', ?5, ?6, ?7, ?8, ?9)",
            )
            .unwrap();
        for n in 0..AUDIT {
            let at = now - 365 * DAY_MS + (n as i64) * (365 * DAY_MS / AUDIT as i64);
            let i = rng.below(FLAGS as u64) as usize;
            let e = rng.below(3) as usize;
            let user = 1 + rng.below(USERS as u64) as i64;
            let actor = if user == 1 {
                "admin@example.test".to_owned()
            } else {
                format!("person-{}@example.test", user - 1)
            };
            let version = 1 + (n / FLAGS) as u64;
            match n % 20 {
                0 => {
                    let before = json!({"key": flag_key(i), "name": format!("Feature {i}"), "kind": "flag",
                        "type": "boolean", "description": "Rolls the new behaviour out to customers, team by team.",
                        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
                        "tags": ["team-a", "2026"], "environments": ENVS.iter().enumerate()
                            .map(|(e, env)| (env.to_string(), state(rng, i, e, version)))
                            .collect::<serde_json::Map<_, _>>()});
                    let mut after = before.clone();
                    after["description"] = json!(format!("Rolls the new behaviour out, step {n}."));
                    insert
                        .execute(params![
                            at,
                            user,
                            actor,
                            "update",
                            None::<String>,
                            "flag",
                            flag_key(i),
                            before.to_string(),
                            after.to_string()
                        ])
                        .unwrap();
                }
                1 => {
                    let s = i % SEGMENTS;
                    let before = json!({"key": format!("segment-{s:02}"), "name": format!("Segment {s}"),
                        "included": (0..10).map(|u| format!("user-{s}-{u}")).collect::<Vec<_>>(), "excluded": [],
                        "rules": [{"clauses": [{"attribute": "plan", "op": "in", "values": ["pro", "enterprise"]}]}]});
                    let mut after = before.clone();
                    after["included"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!(format!("user-{n}")));
                    insert
                        .execute(params![
                            at,
                            user,
                            actor,
                            "update",
                            None::<String>,
                            "segment",
                            format!("segment-{s:02}"),
                            before.to_string(),
                            after.to_string()
                        ])
                        .unwrap();
                }
                _ => {
                    let before = state(rng, i, e, version);
                    let mut after = before.clone();
                    after["enabled"] = json!(!before["enabled"].as_bool().unwrap_or(false));
                    after["version"] = json!(version + 1);
                    insert
                        .execute(params![
                            at,
                            user,
                            actor,
                            "update",
                            ENVS[e],
                            "flag_state",
                            flag_key(i),
                            before.to_string(),
                            after.to_string()
                        ])
                        .unwrap();
                }
            }
        }
    }
    // A year of hourly counts.
    {
        let mut insert = tx
            .prepare("INSERT INTO evaluation_counts VALUES (?1, ?2, ?3, ?4, ?5)")
            .unwrap();
        let envs: Vec<i64> = tx
            .prepare("SELECT id FROM environments ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let keys: Vec<String> = (0..FLAGS).map(flag_key).collect();
        let first_hour = (now - days * DAY_MS).div_euclid(3_600_000) * 3_600;
        for h in 0..days * 24 {
            let hour = first_hour + h * 3_600;
            let (weekday, hour_of_day) = (((hour / 86_400) + 4) % 7, (hour % 86_400) / 3_600);
            let working = weekday < 5 && (8..18).contains(&hour_of_day);
            for (e, env) in envs.iter().enumerate() {
                if e > 0 && !working {
                    continue;
                }
                // Production: 800 of the 1,000 instances, 360 reports an hour, a few evaluations each.
                let per_flag = if e == 0 { 800 * 360 * 3 } else { 100 * 360 };
                for key in &keys {
                    let on = rng.below(per_flag);
                    insert.execute(params![env, key, "on", hour, on as i64]).unwrap();
                    if e == 0 {
                        insert
                            .execute(params![env, key, "off", hour, (per_flag - on) as i64])
                            .unwrap();
                    }
                }
            }
        }
        for env in &envs {
            for key in &keys {
                tx.execute(
                    "INSERT INTO flag_last_evaluated VALUES (?1, ?2, ?3)",
                    params![env, key, now - rng.below(3_600_000) as i64],
                )
                .unwrap();
            }
        }
    }
    tx.execute("UPDATE api_keys SET last_used_at = ?1", [now - 5_000])
        .unwrap();
    tx.execute("UPDATE admin_tokens SET last_used_at = ?1", [now - 60_000])
        .unwrap();
    for u in 1..=USERS as i64 {
        tx.execute(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, last_seen_at, expires_at)
             VALUES (randomblob(32), ?1, 'csrf', ?2, ?2, ?3)",
            params![u, now - 3_600_000, now + 7 * DAY_MS],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    db.pragma_update(None, "journal_mode", "DELETE").unwrap();
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join("flagstaff.db"), to.join("flagstaff.db")).unwrap();
}

/// A `flagstaff serve` child on a loopback port.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(bin: &Path, dir: &Path, env: &[(&str, &str)]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("FLAGSTAFF_DATA_DIR", dir)
            .env("FLAGSTAFF_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start flagstaff");
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(600);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            assert!(child.try_wait().unwrap().is_none(), "the server exited");
            std::thread::sleep(Duration::from_millis(100));
        }
        Server { child, url }
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

async fn toggle(http: &reqwest::Client, url: &str, token: &str, flag: &str, on: bool) -> Duration {
    let started = Instant::now();
    let res = http
        .patch(format!(
            "{url}/api/v1/projects/shop/flags/{flag}/environments/production"
        ))
        .bearer_auth(token)
        .json(&json!({"enabled": on}))
        .send()
        .await
        .expect("toggle");
    assert!(res.status().is_success(), "toggle {flag}: {}", res.status());
    started.elapsed()
}

fn percentile(times: &mut [Duration], p: f64) -> Duration {
    times.sort_unstable();
    times[((times.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

struct Toggles {
    p50: Duration,
    p99: Duration,
    sequential: Duration,
    concurrent: Duration,
    /// Publications of `flagstaff.db` during the N concurrent toggles.
    group_publications: Option<i64>,
    /// The server's write work during the N concurrent toggles.
    group_work: Work,
    n: usize,
}

/// The published file's count of publications (`None` for a version without one).
fn publication_seq(dir: &Path) -> Option<i64> {
    Connection::open_with_flags(
        dir.join("flagstaff.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .ok()
    .and_then(|c| {
        c.query_row("SELECT seq FROM publication", [], |r| r.get::<_, i64>(0))
            .ok()
    })
}

async fn measure_toggles(url: &str, token: &str, dir: &Path, latency_runs: usize, n: usize) -> Toggles {
    let http = reqwest::Client::new();
    // Every timed toggle changes something (a toggle to the state a flag already has publishes
    // nothing): the latency runs flip one flag back and forth; the N flags are first set off,
    // untimed, then turned on one after the other, then off all at once.
    // Warm up: the first request builds connection pools and caches.
    let flipped = flag_key(FLAGS - 1);
    toggle(&http, url, token, &flipped, true).await;
    let mut times = Vec::new();
    for k in 0..latency_runs {
        times.push(toggle(&http, url, token, &flipped, k % 2 == 1).await);
    }
    for k in 0..n {
        toggle(&http, url, token, &flag_key(k % FLAGS), false).await;
    }
    let started = Instant::now();
    for k in 0..n {
        toggle(&http, url, token, &flag_key(k % FLAGS), true).await;
    }
    let sequential = started.elapsed();
    let seq_before = publication_seq(dir);
    let metrics_before = work_metrics(&http, url).await;
    let started = Instant::now();
    let all: Vec<_> = (0..n)
        .map(|k| {
            let (http, url, token) = (http.clone(), url.to_owned(), token.to_owned());
            tokio::spawn(async move { toggle(&http, &url, &token, &flag_key(k % FLAGS), false).await })
        })
        .collect();
    for t in all {
        t.await.unwrap();
    }
    let concurrent = started.elapsed();
    let group_publications = seq_before.zip(publication_seq(dir)).map(|(a, b)| b - a);
    let metrics_after = work_metrics(&http, url).await;
    let group_work = metrics_after
        .iter()
        .zip(&metrics_before)
        .map(|((name, sum, count), (_, sum0, count0))| (*name, sum - sum0, count - count0))
        .collect();
    Toggles {
        p50: percentile(&mut times, 0.5),
        p99: percentile(&mut times, 0.99),
        sequential,
        concurrent,
        group_publications,
        group_work,
        n,
    }
}

/// The server's own account of its write work: (what, seconds summed, times) of each histogram.
type Work = Vec<(&'static str, f64, f64)>;

/// Reads the write, publication and snapshot-rebuild histograms from `/metrics`.
async fn work_metrics(http: &reqwest::Client, url: &str) -> Work {
    let text = match http.get(format!("{url}/metrics")).send().await {
        Ok(res) => res.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let value = |line: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(line)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    [
        ("writes", "flagstaff_database_write_seconds"),
        ("publications", "flagstaff_database_publish_seconds"),
        ("rebuilds", "flagstaff_snapshot_rebuild_seconds"),
    ]
    .into_iter()
    .map(|(what, name)| {
        (
            what,
            value(&format!("{name}_sum ")),
            value(&format!("{name}_count ")),
        )
    })
    .collect()
}

/// 1,000 SDK instances reporting every 10 s for `secs`; returns (publications counted from the
/// published file's `publication` row, distinct inodes of `flagstaff.db` seen, reports sent).
async fn sdk_load(url: &str, token: &str, dir: &Path, secs: u64) -> (Option<i64>, usize, usize) {
    let published = dir.join("flagstaff.db");
    let seq = || {
        Connection::open_with_flags(&published, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()
            .and_then(|c| {
                c.query_row("SELECT seq FROM publication", [], |r| r.get::<_, i64>(0))
                    .ok()
            })
    };
    let http = reqwest::Client::new();
    // The generated keys' secrets are not stored: make one through the API (a configuration
    // change, before the window opens).
    let key = sdk_key(&http, url, token).await;
    let before = seq();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut inodes = BTreeSet::new();
    let mut sent = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(10)); // 100 reports a second
    let mut n = 0usize;
    while Instant::now() < end {
        tick.tick().await;
        if let Ok(m) = std::fs::metadata(&published) {
            inodes.insert(std::os::unix::fs::MetadataExt::ino(&m));
        }
        let instance = n % SDKS;
        n += 1;
        let now = store::now_ms();
        let counts: Vec<Value> = (0..20)
            .map(|j| json!({"flag": flag_key((instance * 7 + j) % FLAGS), "variant": "on", "count": 3}))
            .collect();
        let (http, url, key) = (http.clone(), url.to_owned(), key.clone());
        tokio::spawn(async move {
            let _ = http
                .post(format!("{url}/sdk/v1/events"))
                .bearer_auth(&key)
                .json(&json!({"start": now - 10_000, "end": now, "counts": counts}))
                .send()
                .await;
        });
        sent += 1;
    }
    // Let the last flush happen inside the window's accounting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Ok(m) = std::fs::metadata(&published) {
        inodes.insert(std::os::unix::fs::MetadataExt::ino(&m));
    }
    let after = seq();
    (before.zip(after).map(|(b, a)| a - b), inodes.len() - 1, sent)
}

/// Creates a server key for production through the API (secrets are shown once).
async fn sdk_key(http: &reqwest::Client, url: &str, token: &str) -> String {
    let res: Value = http
        .post(format!("{url}/api/v1/projects/shop/environments/production/keys"))
        .bearer_auth(token)
        .json(&json!({"kind": "server", "name": "load"}))
        .send()
        .await
        .expect("create key")
        .json()
        .await
        .expect("key JSON");
    res["key"]
        .as_str()
        .or_else(|| res["secret"].as_str())
        .expect("key secret")
        .to_owned()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let base: PathBuf = arg("--dir").map_or_else(std::env::temp_dir, PathBuf::from);
    let new_bin = arg("--new-bin").map(PathBuf::from);
    let main_bin = arg("--main-bin").map(PathBuf::from);
    let sdk_secs: u64 = arg("--sdk-secs").and_then(|v| v.parse().ok()).unwrap_or(600);
    let main_sdk_secs: u64 = arg("--main-sdk-secs").and_then(|v| v.parse().ok()).unwrap_or(60);
    let runs: usize = arg("--runs").and_then(|v| v.parse().ok()).unwrap_or(60);
    // Days of counts (365: a year; fewer for a quick try of the harness).
    let days: i64 = arg("--days").and_then(|v| v.parse().ok()).unwrap_or(365);
    let group: usize = arg("--group").and_then(|v| v.parse().ok()).unwrap_or(100);

    // `--data DIR`: measure this version again on the upgraded data dir a `--keep` run left in
    // DIR (DIR/new), without generating anything.
    if let Some(data) = arg("--data") {
        let dir = PathBuf::from(data).join("new");
        let token = {
            let state = AppState::open(Settings::with_data_dir(&dir)).expect("open the data dir");
            state
                .store
                .write_blocking(
                    |tx| {
                        Ok((
                            admin_tokens::create(tx, 1, "bench again")?,
                            store::Changes::default(),
                        ))
                    },
                    |_, _| {},
                )
                .expect("a token")
        };
        let bin = new_bin.expect("--new-bin");
        let server = Server::start(&bin, &dir, &[]);
        let t = measure_toggles(&server.url, &token, &dir, runs, group).await;
        server.stop();
        println!(
            "toggle p50 {} p99 {}; {group} sequential {}, at once {} ({} publications): {:.1}×",
            ms(t.p50),
            ms(t.p99),
            ms(t.sequential),
            ms(t.concurrent),
            t.group_publications.map_or("—".to_owned(), |p| p.to_string()),
            t.sequential.as_secs_f64() / t.concurrent.as_secs_f64()
        );
        for (what, secs, count) in &t.group_work {
            println!(
                "  during them: {count} {what}, {} in all",
                ms(Duration::from_secs_f64(*secs))
            );
        }
        return;
    }
    let root = tempfile::tempdir_in(&base).expect("temp dir");
    let root = if args.iter().any(|a| a == "--keep") {
        let kept = root.keep();
        println!("data dirs kept in {}", kept.display());
        Root::Kept(kept)
    } else {
        Root::Temporary(root)
    };
    let (scratch, main_dir, new_dir) = (
        root.path().join("scratch"),
        root.path().join("main"),
        root.path().join("new"),
    );
    let mut rng = Rng(0x5eed_f1a6_0000_0001);
    let now = store::now_ms();

    let started = Instant::now();
    let token = configure(&scratch, &mut rng);
    generate_main(&main_dir, &scratch, &mut rng, now, days);
    println!(
        "generated the data dir of today's main in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let main_size = size(&main_dir.join("flagstaff.db"));

    copy_dir(&main_dir, &new_dir);
    let started = Instant::now();
    let (new_size, ops_size) = {
        let state = AppState::open(Settings::with_data_dir(&new_dir)).expect("upgrade");
        let upgraded = started.elapsed();
        let upkeep = flagstaff::retention::run(&state, now).expect("upkeep");
        println!(
            "upgraded in place in {:.1} s; upkeep {:.1} s: {upkeep:?}",
            upgraded.as_secs_f64(),
            started.elapsed().checked_sub(upgraded).unwrap().as_secs_f64()
        );
        state.store.checkpoint();
        (
            size(&new_dir.join("flagstaff.db")),
            size(state.store.operational_path()),
        )
    };
    println!();
    println!("| | today's main | this branch |");
    println!("|---|---|---|");
    println!("| `flagstaff.db` | {} | {} |", mb(main_size), mb(new_size));
    println!("| `work/flagstaff.operational.db` | — | {} |", mb(ops_size));

    // Toggles first, on both (the latency figures), then the long SDK windows.
    let servers = [
        ("today's main", main_bin.as_ref(), &main_dir),
        ("this branch", new_bin.as_ref(), &new_dir),
    ];
    let mut toggles = Vec::new();
    for (name, bin, dir) in servers {
        let Some(bin) = bin else { continue };
        let server = Server::start(bin, dir, &[]);
        let n = if name == "today's main" {
            group.min(20)
        } else {
            group
        };
        toggles.push((name, measure_toggles(&server.url, &token, dir, runs, n).await));
        server.stop();
    }
    let mut rows = Vec::new();
    for ((name, bin, dir), (_, t)) in servers.into_iter().filter(|s| s.1.is_some()).zip(toggles) {
        let Some(bin) = bin else { continue };
        let server = Server::start(bin, dir, &[]);
        let secs = if name == "this branch" {
            sdk_secs
        } else {
            main_sdk_secs
        };
        let (seq, inodes, sent) = sdk_load(&server.url, &token, dir, secs).await;
        server.stop();
        rows.push((name, t, secs, seq, inodes, sent));
    }
    println!();
    println!(
        "| server | toggle p50 | toggle p99 | N toggles sequential | N at once | speed-up | SDK reports (window) | publications in the window |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, t, secs, seq, inodes, sent) in rows {
        println!(
            "| {name} | {} | {} | {} (N = {}) | {} ({} publications) | {:.1}× | {sent} in {secs} s | {} (inode changes: {inodes}) |",
            ms(t.p50),
            ms(t.p99),
            ms(t.sequential),
            t.n,
            ms(t.concurrent),
            t.group_publications.map_or("—".to_owned(), |p| p.to_string()),
            t.sequential.as_secs_f64() / t.concurrent.as_secs_f64(),
            seq.map_or("—".to_owned(), |s| s.to_string()),
        );
    }
}

/// Where the data dirs go: removed at the end, or kept (`--keep`).
enum Root {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl Root {
    fn path(&self) -> &Path {
        match self {
            Root::Temporary(dir) => dir.path(),
            Root::Kept(path) => path,
        }
    }
}
