//! Parse the configuration, start tracing, open the store, run. Nothing else.

use anyhow::Context as _;
use clap::Parser as _;
use flagstaff::config::{Cli, Command, LogFormat, Settings};
use flagstaff::{AppState, build_app};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.global.log, cli.global.log_format)?;
    match cli.command.clone().unwrap_or(Command::Serve) {
        Command::Serve => serve(cli),
    }
}

fn init_tracing(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter).with_context(|| format!("invalid --log / FLAGSTAFF_LOG value {filter:?}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

fn serve(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings { data_dir: cli.global.data_dir, serve: cli.serve };
    let bind = settings.serve.bind;
    let state = AppState::open(settings.clone())
        .with_context(|| format!("cannot open the database in {}", settings.data_dir.display()))?;
    actix_web::rt::System::new().block_on(async move {
        let server = actix_web::HttpServer::new(move || build_app(state.clone()))
            .bind(bind)
            .with_context(|| format!("cannot listen on {bind} (--bind / FLAGSTAFF_BIND)"))?;
        for addr in server.addrs() {
            tracing::info!(%addr, data_dir = %settings.data_dir.display(), "Flagstaff is listening on http://{addr}");
        }
        server.run().await.context("server failed")
    })
}
