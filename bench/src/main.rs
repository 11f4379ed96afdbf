//! Load harness for Flagstaff's SDK delivery path, driven by `bench/run.sh`:
//!
//! * `setup` imports a project of N flags through the management API, creates a server key, and
//!   saves the bundle (plain and gzip) and its ETag for the bare handler;
//! * `bare` serves those same bytes from a bare actix-web handler (the yardstick for
//!   `GET /sdk/v1/bundle`, measured with `wrk` in the same run);
//! * `streams` opens many SSE streams from this one process, measures the server's memory per
//!   stream, then toggles a flag through the API and times how long each stream takes to hear it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

#[derive(Parser)]
#[command(about = "Load harness for Flagstaff's SDK delivery path")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import a project of N flags, create a server key, save the bundle, its gzip and ETag.
    Setup(SetupArgs),
    /// Serve saved bundle bytes from a bare actix-web handler (If-None-Match → 304, gzip).
    Bare(BareArgs),
    /// Serve Flagstaff's SDK routes alone (no app-wide middleware) from a data dir, to tell the
    /// handler's cost from the middleware's.
    Handler(HandlerArgs),
    /// Open many SSE streams, report memory per stream and toggle-to-delivery latency.
    Streams(StreamsArgs),
}

#[derive(Args)]
struct SetupArgs {
    /// Flagstaff's base URL.
    #[arg(long)]
    url: String,
    /// An admin token (`flagstaff token create`).
    #[arg(long)]
    token: String,
    /// How many flags the project has.
    #[arg(long, default_value_t = 100)]
    flags: usize,
    /// Where to write `key`, `etag`, `bundle.json` and `bundle.json.gz`.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct BareArgs {
    #[arg(long)]
    bind: SocketAddr,
    /// The directory `setup` wrote.
    #[arg(long)]
    dir: PathBuf,
}

#[derive(Args)]
struct HandlerArgs {
    #[arg(long)]
    bind: SocketAddr,
    /// The running server's data dir (read at start).
    #[arg(long)]
    data_dir: PathBuf,
}

#[derive(Args)]
struct StreamsArgs {
    /// Flagstaff's address (host:port).
    #[arg(long)]
    addr: SocketAddr,
    /// A server key of `bench/production`.
    #[arg(long)]
    key: String,
    /// An admin token, to toggle the flag.
    #[arg(long)]
    token: String,
    /// How many streams to open.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// How many toggles to time.
    #[arg(long, default_value_t = 10)]
    toggles: usize,
    /// The server's process id, to read its memory from /proc.
    #[arg(long)]
    server_pid: u32,
    /// Connections being opened at the same time.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
}

const PROJECT: &str = "bench";
const ENVIRONMENT: &str = "production";
const TOGGLED_FLAG: &str = "flag-000";

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bare(args) => actix_web::rt::System::new().block_on(bare(args)),
        Command::Handler(args) => handler(args),
        Command::Setup(args) => runtime()?.block_on(setup(args)),
        Command::Streams(args) => runtime()?.block_on(streams(args)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// A project of `n` flags of several shapes, in the document format.
fn document(n: usize) -> Value {
    let flags: Vec<Value> = (0..n)
        .map(|i| {
            let key = format!("flag-{i:03}");
            match i % 4 {
                0 => json!({"key": key, "name": format!("Release {i}"), "kind": "flag", "type": "boolean",
                    "tags": ["bench"], "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
                    "environments": {ENVIRONMENT: {"enabled": true, "off_variation": "off",
                        "targets": [{"variation": "on", "values": ["u-1", "u-2", "u-3"]}],
                        "rules": [{"id": "staff", "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@example.com"]}],
                                   "serve": {"variation": "on"}}],
                        "fallthrough": {"rollout": {"variations": [{"variation": "on", "weight": 25000},
                                                                   {"variation": "off", "weight": 75000}]}}}}}),
                1 => json!({"key": key, "name": format!("Switch {i}"), "kind": "flag", "type": "boolean",
                    "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
                    "environments": {ENVIRONMENT: {"enabled": true, "fallthrough": {"variation": "on"}}}}),
                2 => json!({"key": key, "name": format!("Experiment {i}"), "kind": "flag", "type": "string",
                    "variations": [{"key": "control", "value": "control"}, {"key": "a", "value": "variant-a"},
                                   {"key": "b", "value": "variant-b"}],
                    "environments": {ENVIRONMENT: {"enabled": true,
                        "rules": [{"id": "eu", "clauses": [{"attribute": "country", "op": "in", "values": ["de", "fr", "it", "es"]}],
                                   "serve": {"variation": "a"}}],
                        "fallthrough": {"variation": "control"}}}}),
                _ => json!({"key": key, "name": format!("Limit {i}"), "kind": "config", "type": "number",
                    "variations": [{"key": "low", "value": 10}, {"key": "high", "value": 1000}],
                    "environments": {ENVIRONMENT: {"enabled": true, "fallthrough": {"variation": "low"}}}}),
            }
        })
        .collect();
    json!({"flagstaff": 1, "project": {"key": PROJECT, "name": "Bench"},
           "environments": [{"key": "staging", "name": "Staging"}, {"key": ENVIRONMENT, "name": "Production"}],
           "flags": flags})
}

async fn setup(args: SetupArgs) -> anyhow::Result<()> {
    // No automatic decompression: the bare handler must serve the exact gzip bytes.
    let http = reqwest::Client::builder().no_gzip().build()?;
    let url = args.url.trim_end_matches('/');
    let key = flagstaff_bench::import_and_create_key(
        &http,
        url,
        &args.token,
        &document(args.flags),
        (PROJECT, ENVIRONMENT),
        ("server", "bench"),
    )
    .await?;

    let plain = http
        .get(format!("{url}/sdk/v1/bundle"))
        .bearer_auth(&key)
        .send()
        .await?
        .error_for_status()?;
    let etag = plain
        .headers()
        .get("etag")
        .context("an ETag")?
        .to_str()?
        .to_owned();
    let plain = plain.bytes().await?;
    let gzip = http
        .get(format!("{url}/sdk/v1/bundle"))
        .bearer_auth(&key)
        .header("accept-encoding", "gzip")
        .send()
        .await?
        .error_for_status()?;
    if gzip
        .headers()
        .get("content-encoding")
        .map(reqwest::header::HeaderValue::as_bytes)
        != Some(b"gzip")
    {
        bail!("the bundle did not come gzip-encoded");
    }
    let gzip = gzip.bytes().await?;
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("key"), &key)?;
    std::fs::write(args.out.join("etag"), &etag)?;
    std::fs::write(args.out.join("bundle.json"), &plain)?;
    std::fs::write(args.out.join("bundle.json.gz"), &gzip)?;
    println!(
        "bundle: {} flags, {} bytes, {} bytes gzip, ETag {etag}",
        args.flags,
        plain.len(),
        gzip.len()
    );
    Ok(())
}

struct BareBundle {
    json: Bytes,
    gzip: Bytes,
    etag: HeaderValue,
}

/// The yardstick: the same bytes and the same headers' work, without authentication, lookups
/// or middleware.
async fn bare_bundle(req: HttpRequest, bundle: web::Data<BareBundle>) -> HttpResponse {
    if req.headers().get(header::IF_NONE_MATCH) == Some(&bundle.etag) {
        return HttpResponse::build(StatusCode::NOT_MODIFIED)
            .insert_header((header::ETAG, bundle.etag.clone()))
            .finish();
    }
    let gzip = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let mut resp = HttpResponse::Ok();
    resp.insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header((header::ETAG, bundle.etag.clone()));
    if gzip {
        resp.insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(bundle.gzip.clone())
    } else {
        resp.body(bundle.json.clone())
    }
}

async fn bare(args: BareArgs) -> anyhow::Result<()> {
    let bundle = web::Data::new(BareBundle {
        json: std::fs::read(args.dir.join("bundle.json"))?.into(),
        gzip: std::fs::read(args.dir.join("bundle.json.gz"))?.into(),
        etag: HeaderValue::try_from(std::fs::read_to_string(args.dir.join("etag"))?.trim())?,
    });
    HttpServer::new(move || {
        App::new()
            .app_data(bundle.clone())
            .route("/sdk/v1/bundle", web::get().to(bare_bundle))
    })
    .bind(args.bind)?
    .run()
    .await?;
    Ok(())
}

fn handler(args: HandlerArgs) -> anyhow::Result<()> {
    let state = flagstaff::AppState::open(flagstaff::config::Settings::with_data_dir(&args.data_dir))?;
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .configure(flagstaff::http::sdk::configure)
        })
        .bind(args.bind)?
        .run()
        .await?;
        Ok(())
    })
}

/// What every stream task reports.
struct Shared {
    base: Instant,
    ready: AtomicUsize,
    failed: AtomicUsize,
    /// Per toggle: how many streams heard it, and when each did (ns after `base`, 0: not yet).
    rounds: Vec<(AtomicUsize, Vec<AtomicU64>)>,
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("VmRSS in /proc/PID/status")?;
    Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
}

async fn streams(args: StreamsArgs) -> anyhow::Result<()> {
    let n = args.connections;
    let shared = Arc::new(Shared {
        base: Instant::now(),
        ready: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        rounds: (0..args.toggles)
            .map(|_| (AtomicUsize::new(0), (0..n).map(|_| AtomicU64::new(0)).collect()))
            .collect(),
    });
    let request = Arc::new(format!(
        "GET /sdk/v1/stream HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        args.addr, args.key
    ));
    let rss_before = rss_kib(args.server_pid)?;
    let connecting = Arc::new(Semaphore::new(args.connect_concurrency));
    let started = Instant::now();
    for i in 0..n {
        let permit = connecting.clone().acquire_owned().await?;
        let (shared, request, addr) = (shared.clone(), request.clone(), args.addr);
        tokio::spawn(async move {
            if let Err(e) = stream(i, addr, &request, &shared, permit).await
                && shared.failed.fetch_add(1, Ordering::Relaxed) < 5
            {
                eprintln!("stream {i}: {e:#}");
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while shared.ready.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} streams opened",
                shared.ready.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = shared.ready.load(Ordering::Relaxed);
    if ready < n {
        bail!("{} of {n} streams failed", n - ready);
    }
    println!("opened {n} streams in {:.1} s", started.elapsed().as_secs_f64());
    // Let the server settle (allocator, timers) before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(args.server_pid)?;
    let per_stream = (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / n as f64;
    println!(
        "server RSS: {rss_before} KiB before, {rss_after} KiB with {n} streams: {:.1} KiB per stream",
        per_stream / 1024.0
    );

    let http = reqwest::Client::new();
    let toggle_url = format!(
        "http://{}/api/v1/projects/{PROJECT}/flags/{TOGGLED_FLAG}/environments/{ENVIRONMENT}",
        args.addr
    );
    let (mut after_answer_p99, mut fan_out_p99, mut fan_out_last, mut sent_to_last) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (round, (heard, times)) in shared.rounds.iter().enumerate() {
        let sent = Instant::now();
        let resp = http
            .patch(&toggle_url)
            .bearer_auth(&args.token)
            .json(&json!({"enabled": round % 2 == 1}))
            .send()
            .await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        let answered = Instant::now();
        if !status.is_success() {
            bail!("toggle failed: {status} {}", String::from_utf8_lossy(&body));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while heard.load(Ordering::Relaxed) < n {
            if Instant::now() > deadline {
                bail!(
                    "toggle {round}: only {} of {n} streams heard it",
                    heard.load(Ordering::Relaxed)
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let at = |instant: Instant| (instant - shared.base).as_nanos() as u64;
        let mut received: Vec<u64> = times.iter().map(|t| t.load(Ordering::Relaxed)).collect();
        received.sort_unstable();
        let first = received[0];
        let before_answer = received.iter().filter(|&&t| t < at(answered)).count();
        // Percentiles of the delay from `from` (negative delays count as 0).
        let pct = |from: u64, p: f64| {
            let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
            received[i].saturating_sub(from)
        };
        let ms = |ns: u64| ns as f64 / 1e6;
        println!(
            "toggle {round}: API answered in {:.1} ms, {before_answer} streams had the event before that; \
             after the answer p99 {:.1} ms, last {:.1} ms; after the first stream: p50 {:.1} ms, p99 {:.1} ms, \
             last {:.1} ms; request sent to last stream {:.1} ms",
            ms(at(answered) - at(sent)),
            ms(pct(at(answered), 0.99)),
            ms(pct(at(answered), 1.0)),
            ms(pct(first, 0.50)),
            ms(pct(first, 0.99)),
            ms(pct(first, 1.0)),
            ms(pct(at(sent), 1.0)),
        );
        after_answer_p99.push(pct(at(answered), 0.99));
        fan_out_p99.push(pct(first, 0.99));
        fan_out_last.push(pct(first, 1.0));
        sent_to_last.push(pct(at(sent), 1.0));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let median = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2] as f64 / 1e6
    };
    let worst = |v: &[u64]| v.iter().max().copied().unwrap_or(0) as f64 / 1e6;
    println!(
        "SUMMARY streams={n} per_stream_kib={:.1} toggles={} medians: after_answer_p99_ms={:.1} \
         fan_out_p99_ms={:.1} fan_out_last_ms={:.1} sent_to_last_ms={:.1}; worst fan_out_last_ms={:.1} sent_to_last_ms={:.1}",
        per_stream / 1024.0,
        args.toggles,
        median(&mut after_answer_p99),
        median(&mut fan_out_p99),
        median(&mut fan_out_last),
        median(&mut sent_to_last),
        worst(&fan_out_last),
        worst(&sent_to_last),
    );
    Ok(())
}

/// One SSE stream: reads the HTTP/1.1 chunked body, splits events, and records when each change
/// after the first (connect) event arrives.
async fn stream(
    i: usize,
    addr: SocketAddr,
    request: &str,
    shared: &Shared,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> anyhow::Result<()> {
    let mut socket = TcpStream::connect(addr).await.context("connect")?;
    socket.set_nodelay(true)?;
    socket.write_all(request.as_bytes()).await?;
    let mut raw: Vec<u8> = Vec::with_capacity(2048);
    let mut body: Vec<u8> = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let mut head_done = false;
    let mut connected = false;
    let mut permit = Some(permit);
    let mut changes = 0usize;
    loop {
        let read = socket.read(&mut chunk).await?;
        if read == 0 {
            bail!("the server closed the stream");
        }
        let now = shared.base.elapsed().as_nanos() as u64;
        raw.extend_from_slice(&chunk[..read]);
        if !head_done {
            let Some(end) = find(&raw, b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&raw[..end]).to_string();
            if !head.starts_with("HTTP/1.1 200") {
                bail!("unexpected answer: {}", head.lines().next().unwrap_or(""));
            }
            if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
                bail!("expected a chunked stream");
            }
            raw.drain(..end + 4);
            head_done = true;
        }
        // De-chunk what is complete.
        while let Some(line_end) = find(&raw, b"\r\n") {
            let size_text = std::str::from_utf8(&raw[..line_end])?
                .split(';')
                .next()
                .unwrap_or("")
                .trim();
            let size = usize::from_str_radix(size_text, 16).context("chunk size")?;
            if size == 0 {
                bail!("the server ended the stream");
            }
            if raw.len() < line_end + 2 + size + 2 {
                break;
            }
            body.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
            raw.drain(..line_end + 2 + size + 2);
        }
        // Split events; only those with an id (revisions) matter.
        while let Some(end) = find(&body, b"\n\n") {
            let has_id = body[..end]
                .split(|&b| b == b'\n')
                .any(|line| line.starts_with(b"id:"));
            body.drain(..end + 2);
            if !has_id {
                continue;
            }
            if !connected {
                connected = true;
                permit.take();
                shared.ready.fetch_add(1, Ordering::Relaxed);
            } else if let Some((heard, times)) = shared.rounds.get(changes) {
                times[i].store(now.max(1), Ordering::Relaxed);
                heard.fetch_add(1, Ordering::Relaxed);
                changes += 1;
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
