//! Command line and configuration: every option is also a `FLAGSTAFF_*` environment variable,
//! and a secret option `X` may instead be read from the file named by `FLAGSTAFF_X_FILE`
//! (or `--x-file`), for Docker and Kubernetes secrets. An invalid setting stops the start with
//! a message naming it.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::store::users::Role;

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
    /// Address to listen on (also the address `flagstaff healthcheck` checks).
    #[arg(long, env = "FLAGSTAFF_BIND", default_value = "0.0.0.0:8080", global = true)]
    pub bind: SocketAddr,
    /// Email of the first admin, created at start when there are no users yet (with
    /// FLAGSTAFF_ADMIN_PASSWORD or FLAGSTAFF_ADMIN_PASSWORD_FILE), for unattended installs.
    #[arg(long, env = "FLAGSTAFF_ADMIN_EMAIL", global = true)]
    pub admin_email: Option<String>,
    /// Password of that first admin. Prefer FLAGSTAFF_ADMIN_PASSWORD_FILE.
    #[arg(long, env = "FLAGSTAFF_ADMIN_PASSWORD", hide_env_values = true, global = true)]
    pub admin_password: Option<Secret>,
    /// File holding the first admin's password (trimmed).
    #[arg(long, env = "FLAGSTAFF_ADMIN_PASSWORD_FILE", global = true)]
    pub admin_password_file: Option<PathBuf>,
    /// Seconds between keep-alive comments on SDK streams. A gone client's or a revoked key's
    /// stream is closed within one interval.
    #[arg(long, env = "FLAGSTAFF_STREAM_KEEPALIVE_SECS", default_value_t = DEFAULT_STREAM_KEEPALIVE_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub stream_keepalive_secs: u64,
    /// Seconds between the writes of SDKs' evaluation counts (and keys' last use) to the
    /// database: one transaction per interval, whatever the number of requests.
    #[arg(long, env = "FLAGSTAFF_EVENTS_FLUSH_SECS", default_value_t = DEFAULT_EVENTS_FLUSH_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub events_flush_secs: u64,
    /// Days the audit log keeps an entry; older ones are deleted in the background (and
    /// `flagstaff.db` shrinks). 0 (the default) keeps every entry.
    #[arg(long, env = "FLAGSTAFF_AUDIT_RETENTION_DAYS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=36_500), global = true)]
    pub audit_retention_days: u64,
    /// Days of evaluation counts kept for insights (hourly for the last 7 days, then per day);
    /// older ones are deleted in the background. 0 keeps them for ever.
    #[arg(long, env = "FLAGSTAFF_INSIGHTS_RETENTION_DAYS", default_value_t = DEFAULT_INSIGHTS_RETENTION_DAYS,
          value_parser = clap::value_parser!(u64).range(0..=36_500), global = true)]
    pub insights_retention_days: u64,
    /// `max-age` of `GET /sdk/v1/bundle` in seconds. 0 (the default) makes every cache
    /// revalidate; raise it only with a CDN in front that may serve a bundle that old.
    #[arg(long, env = "FLAGSTAFF_BUNDLE_MAX_AGE", default_value_t = 0, global = true)]
    pub bundle_max_age: u64,
    /// Browser-facing evaluation: OFREP, `/client/v1`, `/sdk/flagstaff.js`.
    #[command(flatten)]
    pub frontend: FrontendArgs,
    /// The admin pages: sessions and cookies.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Reverse proxies (IP addresses or CIDR ranges, comma-separated, e.g. `127.0.0.1,10.0.0.0/8`)
    /// whose `X-Forwarded-For` is believed for the client's address (logs, sign-in throttling),
    /// and whose `X-Forwarded-Proto`/`X-Forwarded-Host`/`Forwarded` for the scheme and host
    /// (the `Secure` cookie, the Origin check). Empty (the default): these headers are ignored.
    #[arg(long, env = "FLAGSTAFF_TRUSTED_PROXIES", value_delimiter = ',', global = true)]
    pub trusted_proxies: Vec<crate::ops::proxy::IpRange>,
    /// Create the sample project at start unless it exists: a few example flags, a segment,
    /// and a client key and a server key of its development environment, whose secrets are
    /// printed once on standard output (never in the log).
    #[arg(long, env = "FLAGSTAFF_SAMPLE_PROJECT", global = true)]
    pub sample_project: bool,
    /// Webhook delivery.
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

/// Options of webhook delivery (DESIGN.md §10).
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct WebhookArgs {
    /// Let webhooks reach loopback, private, link-local and metadata addresses (refused by
    /// default, after DNS resolution). For receivers on your own network.
    #[arg(long, env = "FLAGSTAFF_WEBHOOK_ALLOW_PRIVATE", default_value_t = false,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", global = true)]
    pub webhook_allow_private: bool,
    /// First retry delay of a failed delivery in milliseconds; each next one doubles (with
    /// jitter), up to an hour. For tests.
    #[arg(long, env = "FLAGSTAFF_WEBHOOK_RETRY_BASE_MS", default_value_t = WebhookArgs::DEFAULT_RETRY_BASE_MS,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000), hide = true, global = true)]
    pub webhook_retry_base_ms: u64,
    /// How long an event is retried before it is given up and its webhook disabled, in seconds.
    /// For tests.
    #[arg(long, env = "FLAGSTAFF_WEBHOOK_RETRY_WINDOW_SECS", default_value_t = WebhookArgs::DEFAULT_RETRY_WINDOW_SECS,
          value_parser = clap::value_parser!(u64).range(1..=2_592_000), hide = true, global = true)]
    pub webhook_retry_window_secs: u64,
}

impl WebhookArgs {
    pub const DEFAULT_RETRY_BASE_MS: u64 = 10_000;
    pub const DEFAULT_RETRY_WINDOW_SECS: u64 = 24 * 3600;
}

impl Default for WebhookArgs {
    /// The same defaults as the command line's.
    fn default() -> Self {
        WebhookArgs {
            webhook_allow_private: false,
            webhook_retry_base_ms: Self::DEFAULT_RETRY_BASE_MS,
            webhook_retry_window_secs: Self::DEFAULT_RETRY_WINDOW_SECS,
        }
    }
}

/// Options of the admin pages' sign-in (sessions, cookies, throttling).
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct AdminArgs {
    /// When the session cookie gets the `Secure` attribute: `auto` (when the request came over
    /// HTTPS, directly or as a trusted proxy's `X-Forwarded-Proto`/`Forwarded` says), `always`,
    /// `never`.
    #[arg(long, env = "FLAGSTAFF_SECURE_COOKIES", value_enum, default_value_t = SecureCookies::Auto, global = true)]
    pub secure_cookies: SecureCookies,
    /// Minutes without a request after which a session ends.
    #[arg(long, env = "FLAGSTAFF_SESSION_IDLE_MINUTES", default_value_t = AdminArgs::DEFAULT_SESSION_IDLE_MINUTES,
          value_parser = clap::value_parser!(u64).range(1..=525_600), global = true)]
    pub session_idle_minutes: u64,
    /// Hours after sign-in at which a session ends however active it is.
    #[arg(long, env = "FLAGSTAFF_SESSION_MAX_HOURS", default_value_t = AdminArgs::DEFAULT_SESSION_MAX_HOURS,
          value_parser = clap::value_parser!(u64).range(1..=8760), global = true)]
    pub session_max_hours: u64,
}

/// When the session cookie is marked `Secure`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureCookies {
    Auto,
    Always,
    Never,
}

impl AdminArgs {
    pub const DEFAULT_SESSION_IDLE_MINUTES: u64 = 12 * 60;
    pub const DEFAULT_SESSION_MAX_HOURS: u64 = 7 * 24;
}

impl Default for AdminArgs {
    /// The same defaults as the command line's.
    fn default() -> Self {
        AdminArgs {
            secure_cookies: SecureCookies::Auto,
            session_idle_minutes: Self::DEFAULT_SESSION_IDLE_MINUTES,
            session_max_hours: Self::DEFAULT_SESSION_MAX_HOURS,
        }
    }
}

/// Options of the public evaluation endpoints (OFREP, `/client/v1`, `/sdk/flagstaff.js`).
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct FrontendArgs {
    /// Origins whose pages may call the public evaluation endpoints (comma-separated, e.g.
    /// `https://shop.example.com,https://admin.example.com`), or `*` for any. Never applies to
    /// `/api` or the admin pages, which allow no other origin.
    #[arg(
        long,
        env = "FLAGSTAFF_CORS_ORIGINS",
        default_value = "*",
        value_parser = AllowedOrigins::parse,
        global = true
    )]
    pub cors_origins: AllowedOrigins,
    /// The URL browsers and SDKs reach this server at (e.g. `https://flags.example.com`), used
    /// for the stream URLs of OFREP `eventStreams`. By default those URLs are relative to the
    /// URL each OFREP provider was configured with.
    #[arg(long, env = "FLAGSTAFF_PUBLIC_URL", value_parser = parse_public_url, global = true)]
    pub public_url: Option<String>,
    /// Largest evaluation context accepted from OFREP and `/client/v1`, in bytes of JSON.
    #[arg(long, env = "FLAGSTAFF_MAX_CONTEXT_BYTES", default_value_t = FrontendArgs::DEFAULT_MAX_CONTEXT_BYTES,
          value_parser = clap::value_parser!(u64).range(64..=1_048_576), global = true)]
    pub max_context_bytes: u64,
    /// Deepest nesting of objects and arrays accepted in an evaluation context (the context
    /// object itself is depth 1).
    #[arg(long, env = "FLAGSTAFF_MAX_CONTEXT_DEPTH", default_value_t = FrontendArgs::DEFAULT_MAX_CONTEXT_DEPTH,
          value_parser = clap::value_parser!(u64).range(1..=64), global = true)]
    pub max_context_depth: u64,
    /// `max-age` of `GET /client/v1` answers, in seconds: how long a browser or CDN may serve
    /// one without asking again.
    #[arg(long, env = "FLAGSTAFF_CLIENT_MAX_AGE", default_value_t = FrontendArgs::DEFAULT_CLIENT_MAX_AGE, global = true)]
    pub client_max_age: u64,
    /// `stale-if-error` of `GET /client/v1` answers, in seconds: how long a CDN or reverse proxy
    /// may keep serving its last copy while Flagstaff is down or failing.
    #[arg(long, env = "FLAGSTAFF_CLIENT_STALE_IF_ERROR", default_value_t = FrontendArgs::DEFAULT_CLIENT_STALE_IF_ERROR, global = true)]
    pub client_stale_if_error: u64,
}

impl FrontendArgs {
    pub const DEFAULT_MAX_CONTEXT_BYTES: u64 = 16 * 1024;
    pub const DEFAULT_MAX_CONTEXT_DEPTH: u64 = 8;
    pub const DEFAULT_CLIENT_MAX_AGE: u64 = 10;
    pub const DEFAULT_CLIENT_STALE_IF_ERROR: u64 = 7 * 24 * 3600;
}

/// The origins whose pages may call the public evaluation endpoints (`--cors-origins`), parsed
/// once at start so that a request only compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`: any origin.
    Any,
    /// These origins only: trimmed, without a trailing `/`, compared without regard to case.
    Listed(Vec<String>),
}

impl AllowedOrigins {
    /// Reads a comma-separated list (`https://a.example, https://b.example/`); a `*` anywhere in
    /// it allows any origin. Empty entries are left out.
    pub fn parse(list: &str) -> Result<AllowedOrigins, String> {
        let entries: Vec<&str> = list.split(',').map(str::trim).filter(|o| !o.is_empty()).collect();
        if entries.contains(&"*") {
            return Ok(AllowedOrigins::Any);
        }
        Ok(AllowedOrigins::Listed(
            entries
                .into_iter()
                .map(|o| o.trim_end_matches('/').to_owned())
                .collect(),
        ))
    }

    /// Whether a page of `origin` (an `Origin` header's value) may call.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::Listed(origins) => origins.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

/// An absolute `http(s)://` URL without query or fragment; kept without its trailing `/`.
fn parse_public_url(s: &str) -> Result<String, String> {
    let url = s.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !url.contains(['?', '#', ' ']) => {
            Ok(url.to_owned())
        }
        _ => Err(format!(
            "expected an absolute http:// or https:// URL such as https://flags.example.com, got {s:?}"
        )),
    }
}

impl Default for FrontendArgs {
    /// The same defaults as the command line's.
    fn default() -> Self {
        FrontendArgs {
            cors_origins: AllowedOrigins::Any,
            public_url: None,
            max_context_bytes: Self::DEFAULT_MAX_CONTEXT_BYTES,
            max_context_depth: Self::DEFAULT_MAX_CONTEXT_DEPTH,
            client_max_age: Self::DEFAULT_CLIENT_MAX_AGE,
            client_stale_if_error: Self::DEFAULT_CLIENT_STALE_IF_ERROR,
        }
    }
}

/// Default of `--stream-keepalive-secs`.
pub const DEFAULT_STREAM_KEEPALIVE_SECS: u64 = 15;
/// Default of `--events-flush-secs`.
pub const DEFAULT_EVENTS_FLUSH_SECS: u64 = 10;
/// Default of `--insights-retention-days`.
pub const DEFAULT_INSIGHTS_RETENTION_DAYS: u64 = 90;

impl ServeArgs {
    /// Defaults (no option given, no variable set) with the given address.
    pub fn new(bind: SocketAddr) -> ServeArgs {
        ServeArgs {
            bind,
            admin_email: None,
            admin_password: None,
            admin_password_file: None,
            stream_keepalive_secs: DEFAULT_STREAM_KEEPALIVE_SECS,
            events_flush_secs: DEFAULT_EVENTS_FLUSH_SECS,
            audit_retention_days: 0,
            insights_retention_days: DEFAULT_INSIGHTS_RETENTION_DAYS,
            bundle_max_age: 0,
            frontend: FrontendArgs::default(),
            admin: AdminArgs::default(),
            trusted_proxies: Vec::new(),
            sample_project: false,
            webhooks: WebhookArgs::default(),
        }
    }

    /// The first admin to create when there are no users yet, if configured. Both the email and
    /// a password (direct or from its file) must be given, or neither.
    pub fn first_admin(&self) -> Result<Option<FirstAdmin>, ConfigError> {
        let password = SecretSetting::ADMIN_PASSWORD
            .resolve(self.admin_password.clone(), self.admin_password_file.as_deref())?;
        match (&self.admin_email, password) {
            (None, None) => Ok(None),
            (Some(email), Some(password)) => Ok(Some(FirstAdmin {
                email: email.clone(),
                password,
            })),
            (Some(_), None) => Err(ConfigError::new(
                "FLAGSTAFF_ADMIN_PASSWORD",
                "FLAGSTAFF_ADMIN_EMAIL is set, so the first admin also needs a password \
                 (FLAGSTAFF_ADMIN_PASSWORD or FLAGSTAFF_ADMIN_PASSWORD_FILE)",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "FLAGSTAFF_ADMIN_EMAIL",
                "a first admin password is set, so FLAGSTAFF_ADMIN_EMAIL (--admin-email) is needed too",
            )),
        }
    }
}

/// The first admin, taken from the configuration.
#[derive(Debug, Clone)]
pub struct FirstAdmin {
    pub email: String,
    pub password: Secret,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Manage users (works while the server runs).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage admin tokens for the /api/v1 management API (works while the server runs).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Write a project as a document (JSON) to standard output or a file.
    Export(ExportArgs),
    /// Create or update a project from a document (JSON) file; `-` reads standard input. A
    /// running server serves the imported data within a second.
    Import(ImportArgs),
    /// Write a consistent copy of the database to FILE (`-`: standard output) while the server
    /// runs or not. Restore: stop the server, put the copy in place of flagstaff.db, start.
    Backup(BackupArgs),
    /// Exit 0 when the server at --bind answers /healthz with 200 (for Docker's HEALTHCHECK).
    Healthcheck,
    /// Serve a project's environments read-only, with no database (DESIGN.md §8): from a
    /// primary Flagstaff (`--upstream` with `--relay-key`), or offline from a file that
    /// `flagstaff download` wrote (`--from-file` with the keys to accept).
    Relay(RelayArgs),
    /// Save an environment's bundle to a file, for `flagstaff relay --from-file`.
    Download(DownloadArgs),
}

/// Options of `flagstaff relay` (with the server's `--bind` and serving options).
#[derive(Args, Debug, Clone)]
pub struct RelayArgs {
    /// URL of the primary Flagstaff, e.g. `https://flags.example.com`.
    #[arg(long, env = "FLAGSTAFF_UPSTREAM", value_parser = parse_public_url,
          conflicts_with = "from_file", required_unless_present = "from_file")]
    pub upstream: Option<String>,
    /// A relay key of the project (`fs_rly_…`). Prefer FLAGSTAFF_RELAY_KEY_FILE.
    #[arg(long, env = "FLAGSTAFF_RELAY_KEY", hide_env_values = true)]
    pub relay_key: Option<Secret>,
    /// File holding the relay key (trimmed).
    #[arg(long, env = "FLAGSTAFF_RELAY_KEY_FILE")]
    pub relay_key_file: Option<PathBuf>,
    /// Where to keep the last configuration received, to start from when the primary is down.
    #[arg(long, env = "FLAGSTAFF_CACHE_FILE", conflicts_with = "from_file")]
    pub cache_file: Option<PathBuf>,
    /// Serve this bundle (written by `flagstaff download`) with no upstream; re-read on change.
    #[arg(long, env = "FLAGSTAFF_FROM_FILE")]
    pub from_file: Option<PathBuf>,
    /// With --from-file: a client key to accept (repeatable; the variable takes a comma list).
    #[arg(
        long = "client-key",
        env = "FLAGSTAFF_CLIENT_KEYS",
        value_delimiter = ',',
        hide_env_values = true,
        requires = "from_file"
    )]
    pub client_keys: Vec<Secret>,
    /// With --from-file: a server key to accept (repeatable; the variable takes a comma list).
    #[arg(
        long = "server-key",
        env = "FLAGSTAFF_SERVER_KEYS",
        value_delimiter = ',',
        hide_env_values = true,
        requires = "from_file"
    )]
    pub server_keys: Vec<Secret>,
    /// With --from-file: a file of keys to accept, one a line (`fs_srv_…` or `fs_cli_…`; blank
    /// lines and lines starting with `#` are skipped).
    #[arg(long, env = "FLAGSTAFF_KEYS_FILE", requires = "from_file")]
    pub keys_file: Option<PathBuf>,
}

impl RelayArgs {
    /// The relay key, from --relay-key or its file.
    pub fn relay_key(&self) -> Result<Option<Secret>, ConfigError> {
        SecretSetting {
            env: "FLAGSTAFF_RELAY_KEY",
            flag: "--relay-key",
        }
        .resolve(self.relay_key.clone(), self.relay_key_file.as_deref())
    }
}

/// Options of `flagstaff download`.
#[derive(Args, Debug, Clone)]
pub struct DownloadArgs {
    /// URL of the Flagstaff (or relay) to download from.
    #[arg(long, env = "FLAGSTAFF_UPSTREAM", value_parser = parse_public_url)]
    pub upstream: String,
    /// A server key of the environment (`fs_srv_…`).
    #[arg(long, env = "FLAGSTAFF_SERVER_KEY", hide_env_values = true)]
    pub key: Secret,
    /// Where to write the bundle (replaced atomically).
    #[arg(long, short)]
    pub output: PathBuf,
}

#[derive(Subcommand, Debug, Clone)]
pub enum UserCommand {
    /// Create a user. The password is read from standard input (one line).
    Create(UserCreateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct UserCreateArgs {
    /// The user's email; it is the login name.
    #[arg(long)]
    pub email: String,
    /// What the user may do.
    #[arg(long, value_parser = role_parser())]
    pub role: Role,
    /// Read the password from standard input (required: passwords never go on the command line).
    #[arg(long)]
    pub password_stdin: bool,
}

fn role_parser() -> impl clap::builder::TypedValueParser<Value = Role> {
    PossibleValuesParser::new(["admin", "editor", "viewer"])
        .map(|s| Role::parse(&s).expect("the parser only lets the three role names through"))
}

#[derive(Subcommand, Debug, Clone)]
pub enum TokenCommand {
    /// Create an admin token for a user and print it (only it) on standard output.
    Create(TokenCreateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct TokenCreateArgs {
    /// The email of the user the token acts for (with that user's role).
    #[arg(long)]
    pub email: String,
    /// A name to recognise the token by (e.g. `ci`).
    #[arg(long)]
    pub name: String,
}

#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// The project's key.
    #[arg(long)]
    pub project: String,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct BackupArgs {
    /// Where to write the copy (replaced atomically if it exists); `-` for standard output.
    pub file: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// The document to import (`-` for standard input).
    pub file: PathBuf,
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
            serve: ServeArgs::new(SocketAddr::from(([127, 0, 0, 1], 0))),
        }
    }

    /// The settings of a parsed command line, checked.
    pub fn from_cli(cli: &Cli) -> Result<Settings, ConfigError> {
        cli.serve.first_admin()?;
        Ok(Settings {
            data_dir: cli.global.data_dir.clone(),
            serve: cli.serve.clone(),
        })
    }
}

/// A setting that cannot be used. `setting` names it as the user set it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {message}")]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(setting: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

/// A secret value: never shown by `Debug` (so never in a log line).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself; use it, never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// A secret option `X`: set directly (`--x` / `FLAGSTAFF_X`) or read from a file
/// (`--x-file` / `FLAGSTAFF_X_FILE`, content trimmed). Declare the two clap arguments, then call
/// [`SecretSetting::resolve`] with both.
#[derive(Debug, Clone, Copy)]
pub struct SecretSetting {
    /// The environment variable, e.g. `FLAGSTAFF_ADMIN_PASSWORD`.
    pub env: &'static str,
    /// The command-line flag, e.g. `--admin-password`.
    pub flag: &'static str,
}

impl SecretSetting {
    pub const ADMIN_PASSWORD: SecretSetting = SecretSetting {
        env: "FLAGSTAFF_ADMIN_PASSWORD",
        flag: "--admin-password",
    };

    /// The secret's value from the direct setting or the file, `None` when neither is set.
    /// Both set, an unreadable file, or an empty value is an error naming the setting.
    pub fn resolve(
        &self,
        direct: Option<Secret>,
        file: Option<&Path>,
    ) -> Result<Option<Secret>, ConfigError> {
        let file_setting = format!("{}_FILE", self.env);
        match (direct, file) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(ConfigError::new(
                format!("{} / {file_setting}", self.env),
                format!(
                    "set either {} ({}) or {file_setting} ({}-file), not both",
                    self.env, self.flag, self.flag
                ),
            )),
            (Some(value), None) if value.0.trim().is_empty() => Err(ConfigError::new(
                format!("{} ({})", self.env, self.flag),
                "the value is empty",
            )),
            (Some(value), None) => Ok(Some(value)),
            (None, Some(path)) => {
                let setting = format!("{file_setting} ({}-file)", self.flag);
                let content = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(&setting, format!("cannot read {}: {e}", path.display()))
                })?;
                let value = content.trim();
                if value.is_empty() {
                    return Err(ConfigError::new(setting, format!("{} is empty", path.display())));
                }
                Ok(Some(Secret(value.to_owned())))
            }
        }
    }
}

/// Creates the data dir if needed and checks that a database can be written there.
pub fn prepare_data_dir(dir: &Path) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::new("--data-dir / FLAGSTAFF_DATA_DIR", message);
    if dir.exists() && !dir.is_dir() {
        return Err(invalid(format!(
            "{} exists and is not a directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| invalid(format!("cannot create {}: {e}", dir.display())))?;
    // SQLite needs to create the -wal and -shm files next to the database: probe for that.
    let probe = dir.join(format!(".flagstaff-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| invalid(format!("cannot write in {}: {e}", dir.display())))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("flagstaff").chain(args.iter().copied()))
    }

    #[test]
    fn serve_is_the_default_command() {
        let cli = parse(&["--bind", "127.0.0.1:9000"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.bind, "127.0.0.1:9000".parse().unwrap());
    }

    #[test]
    fn a_bad_bind_address_is_refused_naming_the_option() {
        let err = parse(&["serve", "--bind", "nonsense"]).unwrap_err().to_string();
        assert!(err.contains("--bind"), "{err}");
    }

    #[test]
    fn user_create_takes_a_role_among_three() {
        let cli = parse(&[
            "user",
            "create",
            "--email",
            "a@b.co",
            "--role",
            "editor",
            "--password-stdin",
        ])
        .unwrap();
        let Some(Command::User {
            command: UserCommand::Create(args),
        }) = cli.command
        else {
            panic!("user create")
        };
        assert_eq!(args.role, Role::Editor);
        assert!(args.password_stdin);
        let err = parse(&["user", "create", "--email", "a@b.co", "--role", "owner"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--role") && err.contains("admin"), "{err}");
    }

    #[test]
    fn a_secret_comes_from_its_file_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "  s3cret-from-file\n").unwrap();
        let got = SecretSetting::ADMIN_PASSWORD
            .resolve(None, Some(&file))
            .unwrap()
            .unwrap();
        assert_eq!(got.expose(), "s3cret-from-file");
        assert_eq!(format!("{got:?}"), "Secret(***)");
    }

    #[test]
    fn secret_errors_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = SecretSetting::ADMIN_PASSWORD
            .resolve(None, Some(&missing))
            .unwrap_err();
        assert!(err.to_string().contains("FLAGSTAFF_ADMIN_PASSWORD_FILE"), "{err}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = SecretSetting::ADMIN_PASSWORD
            .resolve(None, Some(&empty))
            .unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        let err = SecretSetting::ADMIN_PASSWORD
            .resolve(Some(Secret::new("x")), Some(&empty))
            .unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        assert_eq!(SecretSetting::ADMIN_PASSWORD.resolve(None, None).unwrap(), None);
    }

    #[test]
    fn the_first_admin_needs_both_email_and_password() {
        let mut args = ServeArgs::new("127.0.0.1:0".parse().unwrap());
        assert!(args.first_admin().unwrap().is_none());
        args.admin_email = Some("root@example.com".into());
        assert_eq!(
            args.first_admin().unwrap_err().setting,
            "FLAGSTAFF_ADMIN_PASSWORD"
        );
        args.admin_password = Some(Secret::new("long enough password"));
        assert_eq!(args.first_admin().unwrap().unwrap().email, "root@example.com");
    }

    #[test]
    fn a_file_in_place_of_the_data_dir_is_refused_naming_the_option() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = prepare_data_dir(&file).unwrap_err().to_string();
        assert!(
            err.contains("--data-dir") && err.contains("FLAGSTAFF_DATA_DIR"),
            "{err}"
        );
        prepare_data_dir(&dir.path().join("new/nested")).unwrap();
        assert!(dir.path().join("new/nested").is_dir());
    }
}
