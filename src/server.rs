//! `flagstaff serve`: open the data dir, start the background work, serve HTTP until SIGTERM or
//! SIGINT, then shut down in order (DESIGN.md §8):
//!
//! 1. `/readyz` turns 503 and every change stream ends (the hub closes), so SDKs reconnect to
//!    another instance and a load balancer stops sending traffic;
//! 2. the listener stops accepting; requests in flight finish (idle keep-alive connections are
//!    closed); whatever is still open after [`SHUTDOWN_GRACE`] is dropped;
//! 3. pending evaluation counts are written;
//! 4. the live database is checkpointed (`flagstaff.db` already holds every change: each write
//!    published it), and the process exits 0.
//!
//! A second signal during the shutdown drops the remaining connections at once.

use std::future::Future;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::config::{self, Settings};
use crate::{AppState, build_app, cli, events};

/// How long requests in flight get to finish once a shutdown begins. With the rest of the
/// shutdown this keeps the whole under five seconds.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Runs the server until SIGTERM or SIGINT, then shuts it down gracefully.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    let first_admin = settings.serve.first_admin()?;
    config::prepare_data_dir(&settings.data_dir)?;
    let bind = settings.serve.bind;
    let state = AppState::open(settings.clone())
        .with_context(|| format!("cannot open the database in {}", settings.data_dir.display()))?;
    cli::first_start(&state, first_admin)?;
    crate::http::admin::bootstrap(&state)?;
    if settings.serve.sample_project {
        crate::http::admin::create_sample_at_start(&state, &mut std::io::stdout().lock())?;
    }
    let listener = TcpListener::bind(bind)
        .with_context(|| format!("cannot listen on {bind} (--bind / FLAGSTAFF_BIND)"))?;
    actix_web::rt::System::new().block_on(serve(state, listener, termination()))
}

/// Serves `state` on `listener` until `stop` completes, then shuts down gracefully (see the
/// module documentation). Call it inside an actix system (`actix_web::rt::System`).
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    stop: impl Future<Output = Signal>,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("the listener has no address")?;
    let flusher = events::spawn_flusher(state.clone());
    let watcher = actix_web::rt::spawn(follow_other_processes(state.clone()));
    let upkeep = crate::retention::spawn(state.clone());
    let webhooks = crate::webhooks::deliver::spawn(state.clone());
    let scheduler = crate::scheduler::spawn(state.clone());
    let app_state = state.clone();
    let server = actix_web::HttpServer::new(move || build_app(app_state.clone()))
        // Signals are handled below, so that streams end before the server waits for them.
        .disable_signals()
        // A client that closes its side is gone: its stream ends and its receiver is dropped.
        .h1_allow_half_closed(false)
        .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
        // Thousands of SDKs reconnect at once after a restart.
        .backlog(4096)
        .listen(listener)
        .with_context(|| format!("cannot serve on {addr}"))?
        .run();
    let handle = server.handle();
    // Listen for the signals before saying the server listens: polled once here, `stop`
    // registers its handlers, so a SIGTERM sent as soon as that line is read is handled, not
    // the default (the process killed).
    let mut stop = Box::pin(stop);
    let early = futures_util::FutureExt::now_or_never(&mut stop);
    tracing::info!(%addr, data_dir = %state.settings.data_dir.display(), "Flagstaff is listening on http://{addr}");
    let running = actix_web::rt::spawn(server);

    let signal = match early {
        Some(signal) => signal,
        None => stop.await,
    };
    let started = Instant::now();
    tracing::info!(
        signal = signal.name(),
        open_streams = state.hub.receivers(),
        "shutting down: ending streams, finishing requests in flight"
    );
    state.hub.close();
    let forced = actix_web::rt::spawn({
        let handle = handle.clone();
        async move {
            if let Some(again) = termination_again().await {
                tracing::warn!(
                    signal = again.name(),
                    "second signal: dropping the remaining connections"
                );
                handle.stop(false).await;
            }
        }
    });
    handle.stop(true).await;
    forced.abort();
    let served = running.await.context("the server task failed")?;
    watcher.abort();
    upkeep.abort();
    webhooks.abort();
    scheduler.abort();
    flusher.shutdown().await;
    let store = state.store.clone();
    crate::store::run_blocking(move || {
        store.checkpoint();
        Ok(())
    })
    .await?;
    tracing::info!(took_ms = started.elapsed().as_millis() as u64, "stopped");
    served.context("server failed")
}

/// How often the server looks for writes made by other processes (the command line).
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps the snapshots in step with writes made by other processes — `flagstaff import` or
/// `flagstaff user create` beside a running server — by checking SQLite's `data_version`.
async fn follow_other_processes(state: AppState) {
    let mut tick = actix_web::rt::time::interval(FOLLOW_INTERVAL);
    loop {
        tick.tick().await;
        let state = state.clone();
        match crate::store::run_blocking(move || state.catch_up_with_other_processes()).await {
            Ok(true) => tracing::info!("followed a change made by another process"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "following other processes' changes failed"),
        }
    }
}

/// What stopped the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Terminate,
    Interrupt,
    /// Asked by the embedding program (tests).
    Requested,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Terminate => "SIGTERM",
            Signal::Interrupt => "SIGINT",
            Signal::Requested => "requested",
        }
    }
}

/// Completes at the first SIGTERM or SIGINT.
pub async fn termination() -> Signal {
    match listen().await {
        Ok(signal) => signal,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for signals; stop the process with SIGKILL");
            std::future::pending().await
        }
    }
}

async fn termination_again() -> Option<Signal> {
    listen().await.ok()
}

async fn listen() -> std::io::Result<Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = terminate.recv() => Signal::Terminate,
        _ = interrupt.recv() => Signal::Interrupt,
    })
}
