//! Parse the configuration, start tracing, open the store, run. Nothing else: each command's
//! work lives in the library (`flagstaff::cli`), where tests reach it.

use std::io::{IsTerminal as _, Write as _};

use anyhow::Context as _;
use clap::Parser as _;
use flagstaff::cli;
use flagstaff::config::{Cli, Command, LogFormat, Settings, TokenCommand, UserCommand};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than the system's malloc: see Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.global.log, cli.global.log_format)?;
    let data_dir = &cli.global.data_dir;
    match cli.command.clone().unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli),
        Command::User {
            command: UserCommand::Create(args),
        } => {
            let user = cli::user_create(data_dir, &args, &mut std::io::stdin().lock())?;
            tracing::info!(email = %user.email, role = user.role.as_str(), "user created");
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Create(args),
        } => {
            let token = cli::token_create(data_dir, &args)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{token}")
                .and_then(|()| out.flush())
                .context("cannot write the token")
        }
        Command::Export(args) => Ok(cli::export(data_dir, &args)?),
        Command::Import(args) => {
            let report = cli::import(data_dir, &args)?;
            let changed = report.changed.len();
            tracing::info!(project = %report.project, created = report.created, changed, "imported");
            Ok(())
        }
        Command::Backup(args) => Ok(flagstaff::ops::backup::command(data_dir, &args.file)?),
        Command::Healthcheck => Ok(cli::healthcheck(cli.serve.bind)?),
        Command::Relay(args) => flagstaff::relay::run(Settings::from_cli(&cli)?, &args),
        Command::Download(args) => {
            let bytes = flagstaff::relay::download(&args)?;
            tracing::info!(bytes, file = %args.output.display(), "bundle saved");
            Ok(())
        }
    }
}

fn init_tracing(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)
        .with_context(|| format!("invalid --log / FLAGSTAFF_LOG value {filter:?}"))?;
    // Colours only on a terminal (not in `docker logs` or a file), and never with NO_COLOR.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

fn serve(cli: &Cli) -> anyhow::Result<()> {
    flagstaff::server::run(Settings::from_cli(cli)?)
}
