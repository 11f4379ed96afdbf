//! Load harness for OFREP bulk evaluation, driven by `bench/ofrep.sh`:
//!
//! * `setup` imports a project of 50 client-side flags (static, rules with targets, rollouts,
//!   segment rules, typed configs) and 20 server-only ones through the management API, creates
//!   a client key, and saves the request body (a context) and Flagstaff's answer to it;
//! * `bare` serves `POST /ofrep/v1/evaluate/flags` from a bare actix-web handler that reads and
//!   parses the same JSON body and answers a body of the same size: the yardstick, measured
//!   with `wrk` in the same run.

use std::net::SocketAddr;
use std::path::PathBuf;

use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, HttpServer};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

const PROJECT: &str = "ofrep-bench";
const ENVIRONMENT: &str = "production";

#[derive(Parser)]
#[command(about = "Load harness for OFREP bulk evaluation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import the project, create a client key, save the request body and Flagstaff's answer.
    Setup(SetupArgs),
    /// Serve a bare handler that parses the same body and answers as many bytes.
    Bare(BareArgs),
}

#[derive(Args)]
struct SetupArgs {
    /// Flagstaff's base URL.
    #[arg(long)]
    url: String,
    /// An admin token (`flagstaff token create`).
    #[arg(long)]
    token: String,
    /// Where to write `key`, `request.json` and `answer.json`.
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

/// The allocator `flagstaff` uses, so that the yardstick differs from it only by its handler.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(setup(args)),
        Command::Bare(args) => actix_web::rt::System::new().block_on(bare(args)),
    }
}

fn bool_variations() -> Value {
    json!([{"key": "on", "value": true}, {"key": "off", "value": false}])
}

/// 50 client-side flags of five shapes, 20 server-only flags, two segments.
fn document() -> Value {
    let mut flags = Vec::new();
    let countries = json!(["DE", "FR", "NL", "BE", "AT", "CH", "IT", "ES"]);
    for i in 0..50 {
        let key = format!("web-flag-{i:02}");
        let flag = match i % 5 {
            // On/off, nothing else.
            0 => json!({"key": key, "type": "boolean", "variations": bool_variations(),
                        "environments": {ENVIRONMENT: {"enabled": i % 10 == 0, "fallthrough": {"variation": "on"}}}}),
            // 20 targets and two rules of three clauses.
            1 => json!({"key": key, "type": "boolean", "variations": bool_variations(),
                        "environments": {ENVIRONMENT: {"enabled": true, "off_variation": "off",
                            "targets": [{"variation": "on", "values": (0..20).map(|n| format!("vip-{i}-{n}")).collect::<Vec<_>>()}],
                            "rules": [
                                {"id": "staff", "clauses": [
                                    {"attribute": "email", "op": "ends_with", "values": ["@acme.example"]},
                                    {"attribute": "plan", "op": "in", "values": ["pro", "enterprise"]},
                                    {"attribute": "country", "op": "in", "values": countries}],
                                 "serve": {"variation": "on"}},
                                {"id": "old-app", "clauses": [
                                    {"attribute": "version", "op": "semver_lt", "values": ["2.0.0"]},
                                    {"attribute": "beta", "op": "in", "values": [true]},
                                    {"attribute": "country", "op": "in", "values": ["US"]}],
                                 "serve": {"variation": "off"}}],
                            "fallthrough": {"variation": "off"}}}}),
            // A three-way rollout.
            2 => json!({"key": key, "type": "string",
                        "variations": [{"key": "a", "value": "control"}, {"key": "b", "value": "blue"}, {"key": "c", "value": "green"}],
                        "environments": {ENVIRONMENT: {"enabled": true, "fallthrough": {"rollout": {"variations": [
                            {"variation": "a", "weight": 34000}, {"variation": "b", "weight": 33000}, {"variation": "c", "weight": 33000}]}}}}}),
            // A segment rule, then a 50/50 rollout.
            3 => json!({"key": key, "type": "boolean", "variations": bool_variations(),
                        "environments": {ENVIRONMENT: {"enabled": true,
                            "rules": [{"id": "beta", "clauses": [{"op": "in_segment", "values": [format!("segment-{}", i % 2)]}], "serve": {"variation": "on"}}],
                            "fallthrough": {"rollout": {"variations": [{"variation": "on", "weight": 50000}, {"variation": "off", "weight": 50000}]}}}}}),
            // A client-side JSON config chosen by a semver rule.
            _ => json!({"key": key, "kind": "config", "type": "json", "client_side": true,
                        "variations": [{"key": "v1", "value": {"limit": 10, "layout": "grid", "banner": null}},
                                       {"key": "v2", "value": {"limit": 25, "layout": "list", "banner": "Welcome back"}}],
                        "environments": {ENVIRONMENT: {"enabled": true,
                            "rules": [{"id": "new-app", "clauses": [{"attribute": "version", "op": "semver_gte", "values": ["2.3.0"]}], "serve": {"variation": "v2"}}],
                            "fallthrough": {"variation": "v1"}}}}),
        };
        flags.push(flag);
    }
    for i in 0..20 {
        flags.push(json!({"key": format!("server-only-{i:02}"), "type": "boolean", "client_side": false,
                          "variations": bool_variations(),
                          "environments": {ENVIRONMENT: {"enabled": true, "fallthrough": {"variation": "on"}}}}));
    }
    let segments: Vec<Value> = (0..2)
        .map(|s| {
            json!({"key": format!("segment-{s}"), "name": format!("Segment {s}"),
                   "included": (0..200).map(|n| format!("member-{s}-{n}")).collect::<Vec<_>>(), "excluded": [],
                   "rules": [{"clauses": [{"attribute": "email", "op": "matches", "values": ["^qa-[0-9]+@acme\\.example$"]}]}]})
        })
        .collect();
    json!({"flagstaff": 1, "project": {"key": PROJECT, "name": "OFREP bench"},
           "environments": [{"key": ENVIRONMENT, "name": "Production"}],
           "segments": segments, "flags": flags})
}

/// The context every request sends.
fn request() -> Value {
    json!({"context": {"targetingKey": "user-12345", "email": "someone@example.com", "plan": "pro",
                       "country": "DE", "version": "2.3.1", "beta": true}})
}

async fn setup(args: SetupArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let url = args.url.trim_end_matches('/');
    let key = flagstaff_bench::import_and_create_key(
        &http,
        url,
        &args.token,
        &document(),
        (PROJECT, ENVIRONMENT),
        ("client", "ofrep-bench"),
    )
    .await?;
    let body = serde_json::to_vec(&request())?;
    let answer = http
        .post(format!("{url}/ofrep/v1/evaluate/flags"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let parsed: Value = serde_json::from_slice(&answer)?;
    let flags = parsed["flags"].as_array().context("flags")?;
    let reasons: std::collections::BTreeMap<String, usize> =
        flags
            .iter()
            .fold(std::collections::BTreeMap::default(), |mut m, f| {
                *m.entry(f["reason"].as_str().unwrap_or("error").to_owned())
                    .or_default() += 1;
                m
            });
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("key"), &key)?;
    std::fs::write(args.out.join("request.json"), &body)?;
    std::fs::write(args.out.join("answer.json"), &answer)?;
    println!(
        "answer: {} flags, {} bytes; reasons {reasons:?}; request {} bytes",
        flags.len(),
        answer.len(),
        body.len()
    );
    Ok(())
}

/// The yardstick: read the body, parse it as JSON as Flagstaff does, answer the same number of
/// bytes. No authentication, evaluation, ETag or CORS.
async fn bare_bulk(body: Bytes, answer: web::Data<Bytes>) -> HttpResponse {
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(_)) => HttpResponse::Ok()
            .content_type("application/json")
            .body(answer.get_ref().clone()),
        _ => HttpResponse::BadRequest().finish(),
    }
}

async fn bare(args: BareArgs) -> anyhow::Result<()> {
    let answer = web::Data::new(Bytes::from(std::fs::read(args.dir.join("answer.json"))?));
    HttpServer::new(move || {
        App::new()
            .app_data(answer.clone())
            .route("/ofrep/v1/evaluate/flags", web::post().to(bare_bulk))
    })
    .bind(args.bind)?
    .run()
    .await?;
    Ok(())
}
