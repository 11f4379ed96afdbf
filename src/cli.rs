//! The command line's work beyond serving: users and tokens, export and import, the first
//! start's setup, and the container health check. Every command opens the same database as a
//! running server (the live database that every process of the data dir shares, in WAL mode with
//! a busy timeout) and writes through the store, with an audit row whose actor is `cli`.

use std::io::{BufRead, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::AppState;
use crate::config::{ConfigError, ExportArgs, FirstAdmin, ImportArgs, TokenCreateArgs, UserCreateArgs};
use crate::password::{self, CredentialError};
use crate::store::audit::{self, Actor, Entity};
use crate::store::import::{self, ImportReport};
use crate::store::users::{self, Role, User};
use crate::store::{self, Changes, Store, StoreError, admin_tokens, projects};

/// Why a command failed; the message is meant for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing a file, standard input or output, or the health check's socket
    /// failed; `context` says what was being done.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The health check reached the server, which did not answer `200`.
    #[error("{0}")]
    Unhealthy(String),
}

impl CliError {
    fn io(context: impl Into<String>, source: std::io::Error) -> CliError {
        CliError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Opens the data dir's database for a command, creating it if `create` (otherwise a missing
/// database is an error naming the data dir, so a mistyped `--data-dir` does not start a new one).
pub fn open_store(data_dir: &Path, create: bool) -> Result<Store, CliError> {
    if !create && !store::database_path(data_dir).exists() {
        return Err(ConfigError::new(
            "--data-dir / FLAGSTAFF_DATA_DIR",
            format!("there is no Flagstaff database in {}", data_dir.display()),
        )
        .into());
    }
    crate::config::prepare_data_dir(data_dir)?;
    Ok(Store::open(data_dir)?)
}

/// Reads a password from the first line of `input` (without its line ending).
pub fn read_password(input: &mut impl BufRead) -> Result<String, CliError> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| CliError::io("cannot read the password from standard input", e))?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err(CliError::Input(
            "no password on standard input (send one line)".into(),
        ));
    }
    Ok(password)
}

/// `flagstaff user create`: creates a user with a password read from `input`.
pub fn user_create(
    data_dir: &Path,
    args: &UserCreateArgs,
    input: &mut impl BufRead,
) -> Result<User, CliError> {
    if !args.password_stdin {
        return Err(CliError::Input(
            "pass the password on standard input and say so with --password-stdin \
             (passwords never go on the command line)"
                .into(),
        ));
    }
    let email = password::parse_email(&args.email)?;
    let password = read_password(input)?;
    password::check_new(&password)?;
    let store = open_store(data_dir, true)?;
    Ok(create_user(&store, &Actor::cli(), &email, args.role, &password)?)
}

/// Creates a user with a password (hashed here, before the write lock is taken) and records it.
pub fn create_user(
    store: &Store,
    actor: &Actor,
    email: &str,
    role: Role,
    password: &str,
) -> Result<User, StoreError> {
    let hash = password::hash(password);
    let actor = actor.clone();
    let email = email.to_owned();
    store.write_blocking(
        move |tx| {
            let user = users::insert(tx, &email, role, &hash)?;
            let after = json!({"id": user.id, "email": user.email, "role": role.as_str(), "disabled": false});
            audit::record(
                tx,
                &actor,
                "create",
                users::audit_entity(&user.email),
                None,
                Some(&after),
            )?;
            Ok((user, Changes::default()))
        },
        |_, _| {},
    )
}

/// `flagstaff token create`: creates an admin token for an existing, enabled user; returns the
/// secret (the only thing the command prints on standard output).
pub fn token_create(data_dir: &Path, args: &TokenCreateArgs) -> Result<String, CliError> {
    let name = args.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(CliError::Input("--name must be 1 to 100 characters".into()));
    }
    let email = args.email.trim().to_owned();
    let store = open_store(data_dir, false)?;
    let secret = store.write_blocking(
        move |tx| {
            let user = users::by_email(tx, &email)?
                .ok_or_else(|| StoreError::not_found(store::Resource::User, format!("user {email}")))?;
            if user.disabled {
                return Err(StoreError::conflict(format!("user {email} is disabled")));
            }
            let secret = admin_tokens::create(tx, user.id, &name)?;
            let id = tx.last_insert_rowid();
            let after = json!({"id": id, "name": name, "user": user.email, "prefix": &secret[..12]});
            let key = id.to_string();
            let entity = Entity {
                kind: "admin_token",
                key: Some(&key),
                project: None,
                environment: None,
            };
            audit::record(tx, &Actor::cli(), "create", entity, None, Some(&after))?;
            Ok((secret, Changes::default()))
        },
        |_, _| {},
    )?;
    Ok(secret)
}

/// At the start of `serve`: when there are no users yet, creates the first admin from the
/// configuration if given, or logs how to create one.
pub fn first_start(state: &AppState, first_admin: Option<FirstAdmin>) -> Result<(), CliError> {
    if state.store.read_blocking(users::count)? > 0 {
        return Ok(());
    }
    match first_admin {
        Some(admin) => {
            let email = password::parse_email(&admin.email)
                .map_err(|e| ConfigError::new("FLAGSTAFF_ADMIN_EMAIL (--admin-email)", e.to_string()))?;
            password::check_new(admin.password.expose())
                .map_err(|e| ConfigError::new("FLAGSTAFF_ADMIN_PASSWORD", e.to_string()))?;
            let user = create_user(
                &state.store,
                &Actor::cli(),
                &email,
                Role::Admin,
                admin.password.expose(),
            )?;
            tracing::info!(email = %user.email, "created the first admin from FLAGSTAFF_ADMIN_EMAIL");
        }
        None => {
            let exe = std::env::args().next().unwrap_or_else(|| "flagstaff".to_owned());
            let dir = std::path::absolute(&state.settings.data_dir)
                .unwrap_or_else(|_| state.settings.data_dir.clone());
            let base = format!("{exe} --data-dir {}", shell_quote(&dir.display().to_string()));
            tracing::warn!(
                "There are no users yet. Create the first admin (type the password, at least {} \
                 characters, then Enter):\n    {base} user create --email you@example.com --role admin --password-stdin\n\
                 and then an API token for scripts:\n    {base} token create --email you@example.com --name cli",
                password::MIN_LENGTH
            );
        }
    }
    Ok(())
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The address `flagstaff healthcheck` connects to for a server bound to `bind`: the loopback
/// address when bound to every interface.
pub fn health_address(bind: SocketAddr) -> SocketAddr {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bind.port())
}

/// `flagstaff healthcheck`: `GET /healthz` over a plain TCP connection with a 2 s budget;
/// succeeds on `200`.
pub fn healthcheck(bind: SocketAddr) -> Result<(), CliError> {
    let addr = health_address(bind);
    let timeout = Duration::from_secs(2);
    let fail = |what: &str, e: std::io::Error| {
        CliError::io(format!("health check of http://{addr}/healthz: {what}"), e)
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| fail("cannot connect", e))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| fail("socket", e))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| fail("socket", e))?;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: flagstaff-healthcheck\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| fail("cannot send", e))?;
    let mut response = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut response)
        .map_err(|e| fail("no answer", e))?;
    let status_line = response
        .split(|&b| b == b'\n')
        .next()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).unwrap_or("");
    if status == "200" {
        Ok(())
    } else {
        Err(CliError::Unhealthy(format!(
            "health check of http://{addr}/healthz answered {:?}",
            status_line.trim()
        )))
    }
}

/// Where `flagstaff import` reads from.
pub fn read_input(file: &Path) -> Result<Vec<u8>, CliError> {
    if file == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| CliError::io("cannot read standard input", e))?;
        Ok(bytes)
    } else {
        std::fs::read(file).map_err(|e| CliError::io(format!("cannot read {}", file.display()), e))
    }
}

/// Where `flagstaff export` writes to: the file (replaced atomically) or standard output.
pub fn write_output(output: Option<&PathBuf>, bytes: &[u8]) -> Result<(), CliError> {
    match output {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)
                .and_then(|()| out.flush())
                .map_err(|e| CliError::io("cannot write", e))
        }
        Some(path) => {
            let tmp = path.with_extension("tmp-flagstaff-export");
            std::fs::write(&tmp, bytes)
                .and_then(|()| std::fs::rename(&tmp, path))
                .map_err(|e| CliError::io(format!("cannot write {}", path.display()), e))
        }
    }
}

/// `flagstaff export`: writes the project's document to the output (or standard output).
pub fn export(data_dir: &Path, args: &ExportArgs) -> Result<(), CliError> {
    let store = open_store(data_dir, false)?;
    let key = args.project.clone();
    let doc = store.read_blocking(move |conn| projects::export(conn, &projects::head(conn, &key)?))?;
    let bytes = projects::export_bytes(&doc)?;
    write_output(args.output.as_ref(), &bytes)
}

/// `flagstaff import`: creates or updates a project from a document, all or nothing, with the
/// full rights of whoever can write the data dir. A running server follows the change within a
/// second (`AppState::catch_up_with_other_processes`).
pub fn import(data_dir: &Path, args: &ImportArgs) -> Result<ImportReport, CliError> {
    let bytes = read_input(&args.file)?;
    let doc = flagstaff_eval::parse_document(&bytes).map_err(|e| {
        let at = if e.path.is_empty() {
            String::new()
        } else {
            format!(" at {}", e.path)
        };
        CliError::Input(format!(
            "{} is not a Flagstaff document{at}: {}",
            args.file.display(),
            e.message
        ))
    })?;
    let store = open_store(data_dir, true)?;
    match store.write_blocking(move |tx| import::import(tx, &Actor::cli(), &doc, true), |_, _| {}) {
        Ok(report) => Ok(report),
        Err(StoreError::Invalid(errors)) => {
            let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
            Err(CliError::Input(format!(
                "{} was not imported (nothing changed): {} problem(s)\n{}",
                args.file.display(),
                errors.len(),
                list.join("\n")
            )))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// A file that cannot be read keeps its `io::Error` as the source; the message names the
    /// file and the reason once.
    #[test]
    fn io_errors_keep_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no such, \"file\"\t<é>.json");
        let err = read_input(&missing).unwrap_err();
        let CliError::Io { source, .. } = &err else {
            panic!("expected an io error, got {err:?}");
        };
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(
            err.source()
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .map(std::io::Error::kind),
            Some(std::io::ErrorKind::NotFound)
        );
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("cannot read {}: ", missing.display())),
            "{text}"
        );
        let err = write_output(Some(&dir.path().join("missing dir").join("out.json")), b"{}").unwrap_err();
        assert!(
            matches!(err, CliError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{err:?}"
        );
    }
}
