//! Command line and configuration: every option is also a `FLAGSTAFF_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Flagstaff: a self-hosted feature-flag and remote-config server.
#[derive(Parser, Debug, Clone)]
#[command(name = "flagstaff", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Directory holding the database file `flagstaff.db`.
    #[arg(long, env = "FLAGSTAFF_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// Log filter: a level (`info`, `debug`…) or a tracing filter (`flagstaff=debug,info`).
    #[arg(long, env = "FLAGSTAFF_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Log format.
    #[arg(long, env = "FLAGSTAFF_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Options of the server (`flagstaff serve`, the default command).
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "FLAGSTAFF_BIND", default_value = "0.0.0.0:8080", global = true)]
    pub bind: SocketAddr,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Run the server (the default).
    Serve,
}

/// What the running application needs to know of its configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub serve: ServeArgs,
}

impl Settings {
    /// Defaults (as if no option were given and no variable set) with the given data dir.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Settings {
        Settings {
            data_dir: data_dir.into(),
            serve: ServeArgs { bind: SocketAddr::from(([127, 0, 0, 1], 0)) },
        }
    }
}
