//! Server benchmarks; figures and goals are in BENCHMARKS.md ("Server").
//!
//! `cargo bench --bench server` (about a minute). Options after `--`:
//! `--toggles N` (default 200), `--starts N` (default 15), `--flags N` (default 1000),
//! `--dir PATH` (where the temporary data dir goes; e.g. `/dev/shm` to take the disk's `fsync`
//! out of the figures).
//!
//! * **toggle** — `PATCH /api/v1/projects/shop/flags/{flag}/environments/production` with
//!   `{"enabled": …}` through the real application (`build_app`, admin token, JSON body): the
//!   write transaction, the audit row, the publication of `flagstaff.db`, the commit and the
//!   snapshot rebuild, in an environment of `--flags` flags.
//! * **start** — `AppState::open` on a data dir holding `--flags` flags in 3 environments:
//!   migrations check, live database, every snapshot (compile, bundle, gzip, ETag) and the keys.
//!
//! The project is made with the import of the management store (the same code as
//! `POST /api/v1/import`), from a document of realistic flags: on/off flags, flags with
//! targets and rules, rollouts, segment rules behind a prerequisite, configs chosen by semver.

use std::time::{Duration, Instant};

use flagstaff::config::Settings;
use flagstaff::store::audit::Actor;
use flagstaff::store::flags::{self, StatePatch};
use flagstaff::store::users::{self, Role};
use flagstaff::store::{Changes, admin_tokens, import, projects};
use flagstaff::{AppState, build_app};
use flagstaff_eval::model::Document;
use serde_json::{Value, json};

const ENVIRONMENTS: [&str; 3] = ["development", "staging", "production"];

fn bool_flag(key: &str, states: Value) -> Value {
    json!({"key": key, "name": key, "type": "boolean", "tags": ["bench"],
           "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
           "environments": states})
}

/// The same state in every environment, enabled in production only for odd `i`.
fn everywhere(i: usize, state: Value) -> Value {
    let mut states = serde_json::Map::new();
    for env in ENVIRONMENTS {
        let mut s = state.clone();
        s["enabled"] = json!(env != "production" || i % 2 == 1);
        states.insert(env.to_owned(), s);
    }
    Value::Object(states)
}

/// Flag `i` of a realistic project; `i % 10` picks its shape.
fn realistic_flag(i: usize) -> Value {
    let key = format!("flag-{i:04}");
    match i % 10 {
        0..=3 => bool_flag(&key, everywhere(i, json!({"fallthrough": {"variation": "on"}}))),
        4 | 5 => bool_flag(
            &key,
            everywhere(
                i,
                json!({
                    "targets": [{"variation": "on", "values": (0..20).map(|k| format!("user-{k}")).collect::<Vec<_>>()}],
                    "rules": [
                        {"id": "staff", "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@acme.com"]},
                                                    {"attribute": "country", "op": "in", "values": ["fr", "de", "it"]}],
                         "serve": {"variation": "on"}},
                        {"id": "big", "clauses": [{"attribute": "seats", "op": "gte", "values": [100]}],
                         "serve": {"variation": "on"}}],
                    "fallthrough": {"variation": "off"}}),
            ),
        ),
        6 | 7 => json!({"key": key, "type": "string",
            "variations": [{"key": "a", "value": "a"}, {"key": "b", "value": "b"}, {"key": "c", "value": "c"}],
            "environments": everywhere(i, json!({"fallthrough": {"rollout": {"variations": [
                {"variation": "a", "weight": 50000}, {"variation": "b", "weight": 30000}, {"variation": "c", "weight": 20000}]}}}))}),
        8 => bool_flag(
            &key,
            everywhere(
                i,
                json!({
                    "prerequisites": [{"flag": "flag-0001", "variations": ["on"]}],
                    "rules": [{"id": "beta", "clauses": [{"op": "in_segment", "values": [format!("segment-{}", i % 5)]}],
                               "serve": {"variation": "on"}}]}),
            ),
        ),
        _ => json!({"key": key, "kind": "config", "type": "json",
            "variations": [{"key": "v1", "value": {"limit": 10}}, {"key": "v2", "value": {"limit": 100}}],
            "environments": everywhere(i, json!({
                "rules": [{"id": "new-app", "clauses": [{"attribute": "app_version", "op": "semver_gte", "values": ["2.0.0"]}],
                           "serve": {"variation": "v2"}}],
                "fallthrough": {"variation": "v1"}}))}),
    }
}

fn document(flags: usize) -> Document {
    let segments: Vec<Value> = (0..5)
        .map(|s| {
            json!({"key": format!("segment-{s}"), "name": format!("Segment {s}"),
                   "included": (0..200).map(|k| format!("user-{s}-{k}")).collect::<Vec<_>>(),
                   "rules": [{"clauses": [{"attribute": "email", "op": "matches", "values": [format!("^qa{s}\\+.*@acme\\.com$")]}]}]})
        })
        .collect();
    let doc = json!({
        "flagstaff": 1,
        "project": {"key": "shop", "name": "Shop"},
        "environments": ENVIRONMENTS.iter().map(|e| json!({"key": e, "name": e})).collect::<Vec<_>>(),
        "segments": segments,
        "flags": (0..flags).map(realistic_flag).collect::<Vec<_>>(),
    });
    serde_json::from_value(doc).expect("the benchmark's document has the model's shape")
}

struct Options {
    /// Where the temporary data dir goes (default: the system's temp dir).
    dir: Option<std::path::PathBuf>,
    toggles: usize,
    starts: usize,
    flags: usize,
}

fn options() -> Options {
    let mut o = Options {
        dir: None,
        toggles: 200,
        starts: 15,
        flags: 1000,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || {
            args.get(i + 1)
                .and_then(|v| v.parse().ok())
                .expect("a number after the option")
        };
        match args[i].as_str() {
            "--toggles" => o.toggles = value(),
            "--starts" => o.starts = value(),
            "--flags" => o.flags = value(),
            "--dir" => o.dir = args.get(i + 1).map(Into::into),
            // `cargo bench` passes `--bench`; ignore what is not ours.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

/// CPU time of the calling thread, from `/proc/thread-self/schedstat` (nanoseconds on a CPU).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux /proc");
    Duration::from_nanos(
        stat.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .expect("schedstat"),
    )
}

/// CPU time of the whole process (every thread, user and system), from `/proc/self/stat`, in
/// its unit of 1/100 s: meaningful as a mean over many operations.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("Linux /proc");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    Duration::from_millis(10 * fields.iter().sum::<u64>())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<Duration>, goal: Duration) {
    samples.sort();
    let median = percentile(&samples, 0.5);
    println!(
        "{name:<8} n={:<4} median {:>8.2} ms   p90 {:>8.2} ms   min {:>8.2} ms   max {:>8.2} ms   goal ≤ {} ms: {}",
        samples.len(),
        median.as_secs_f64() * 1e3,
        percentile(&samples, 0.9).as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        goal.as_millis(),
        if median <= goal { "met" } else { "MISSED" }
    );
}

/// Where a toggle's time goes: each part measured alone, `n` times.
fn breakdown(state: &AppState, n: usize) {
    let env_id = state
        .snapshots
        .find("shop", "production")
        .expect("served")
        .environment_id;
    // The CPU time of this thread (each part runs on it), as a mean over `n` runs: unlike
    // wall-clock time, it does not grow when other processes take the machine's cores. And the
    // median wall-clock time, which holds the disk's flushes.
    let time = |f: &mut dyn FnMut()| {
        let start = thread_cpu();
        let mut walls: Vec<Duration> = (0..n)
            .map(|_| {
                let wall = Instant::now();
                f();
                wall.elapsed()
            })
            .collect();
        let cpu = thread_cpu().saturating_sub(start).as_secs_f64() * 1e3 / n as f64;
        walls.sort();
        Part {
            cpu,
            wall: percentile(&walls, 0.5).as_secs_f64() * 1e3,
        }
    };
    let empty_write = time(&mut || {
        state
            .store
            .write_blocking(|_| Ok(((), Changes::default())), |_, _| {})
            .expect("empty write");
    });
    let document_and_validate = time(&mut || {
        state
            .store
            .read_blocking(|conn| {
                let head = projects::head(conn, "shop")?;
                let doc = projects::document(conn, &head)?;
                assert!(flagstaff_eval::validate_document(&doc).is_ok());
                Ok(())
            })
            .expect("document");
    });
    let document_only = time(&mut || {
        state
            .store
            .read_blocking(|conn| {
                Ok(projects::document(conn, &projects::head(conn, "shop")?)?
                    .flags
                    .len())
            })
            .expect("document");
    });
    let mut on = false;
    let store_toggle = time(&mut || {
        on = !on;
        let patch = StatePatch {
            enabled: Some(on),
            ..StatePatch::default()
        };
        state
            .write_blocking(move |tx| {
                flags::patch_state(tx, &Actor::cli(), "shop", "flag-0003", "production", patch, None)
            })
            .expect("store toggle");
    });
    let mut changes = Changes::default();
    changes.flag(env_id, "flag-0007");
    let snapshot = time(&mut || {
        state
            .store
            .read_blocking(|conn| Ok(state.snapshots.apply(conn, &changes).len()))
            .expect("apply");
    });
    println!("breakdown (mean CPU time / median wall-clock time of each part alone):");
    println!("  the toggle without HTTP (AppState::write of flags::patch_state)  {store_toggle}");
    println!("  an empty write transaction (publication + commit)                {empty_write}");
    println!("  the snapshot rebuild of one flag                                 {snapshot}");
    println!(
        "  not in a toggle since state changes validate a reduced document, but in every definition \
         change: load the whole project {document_only}, + validate it {:.2} ms CPU",
        document_and_validate.cpu - document_only.cpu
    );
}

/// The cost of one part of a toggle.
struct Part {
    cpu: f64,
    wall: f64,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} ms CPU / {:.2} ms", self.cpu, self.wall)
    }
}

fn main() {
    let o = options();
    let dir = match &o.dir {
        Some(parent) => tempfile::tempdir_in(parent),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    let settings = Settings::with_data_dir(dir.path());

    let setup = Instant::now();
    let state = AppState::open(settings.clone()).expect("open");
    let doc = document(o.flags);
    let token = state
        .write_blocking(move |tx| {
            let (report, changes) = import::import(tx, &Actor::cli(), &doc, true)?;
            assert!(report.created);
            let user = users::insert(tx, "bench@example.com", Role::Admin, "!")?;
            let token = admin_tokens::create(tx, user.id, "bench")?;
            let mut all = changes;
            all.api_keys = false;
            Ok((token, all))
        })
        .expect("import the benchmark's project");
    let db_size = std::fs::metadata(dir.path().join("flagstaff.db")).map_or(0, |m| m.len());
    println!(
        "setup: {} flags × {} environments imported in {:.0} ms; flagstaff.db is {:.1} MiB",
        o.flags,
        ENVIRONMENTS.len(),
        setup.elapsed().as_secs_f64() * 1e3,
        db_size as f64 / (1024.0 * 1024.0)
    );

    // Toggles through the real application.
    let samples = actix_web::rt::System::new().block_on(async {
        let app = actix_web::test::init_service(build_app(state.clone())).await;
        let mut samples = Vec::with_capacity(o.toggles);
        let mut cpu = Duration::ZERO;
        for n in 0..o.toggles + 10 {
            let flag = format!("flag-{:04}", (n * 7) % o.flags);
            let uri = format!("/api/v1/projects/shop/flags/{flag}/environments/production");
            let req = actix_web::test::TestRequest::patch()
                .uri(&uri)
                .insert_header(("Authorization", format!("Bearer {token}")))
                .set_json(json!({"enabled": n % 2 == 0}))
                .to_request();
            let (start, cpu_start) = (Instant::now(), process_cpu());
            let res = actix_web::test::call_service(&app, req).await;
            let elapsed = start.elapsed();
            assert!(res.status().is_success(), "toggle answered {}", res.status());
            // The first few warm the caches (prepared statements, the page cache).
            if n >= 10 {
                samples.push(elapsed);
                cpu += process_cpu().saturating_sub(cpu_start);
            }
        }
        (samples, cpu / o.toggles as u32)
    });
    let (samples, cpu) = samples;
    let production = state.snapshots.find("shop", "production").expect("served");
    assert_eq!(production.flags().map_or(0, |f| f.len()), o.flags);
    drop(production);
    report("toggle", samples, Duration::from_millis(5));
    println!(
        "toggle   CPU time of the whole process per toggle (mean): {:.2} ms",
        cpu.as_secs_f64() * 1e3
    );
    breakdown(&state, o.toggles);
    drop(state);

    // Starts on the same data dir.
    let mut samples = Vec::with_capacity(o.starts);
    for _ in 0..o.starts {
        let start = Instant::now();
        let state = AppState::open(settings.clone()).expect("reopen");
        let elapsed = start.elapsed();
        assert_eq!(state.snapshots.all().len(), ENVIRONMENTS.len());
        drop(state);
        samples.push(elapsed);
    }
    report("start", samples, Duration::from_millis(300));
}
