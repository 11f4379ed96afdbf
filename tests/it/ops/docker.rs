//! The Docker image, without a Docker engine: the Dockerfile's pieces are checked, and the binary
//! is run the way the image runs it — its entrypoint and command, its environment, as its
//! non-root user, with a `/data`-like data dir — and its `HEALTHCHECK` command must pass.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{free_port, root};

const BIN: &str = env!("CARGO_BIN_EXE_flagstaff");

/// One Dockerfile instruction: its keyword and its arguments, continuation lines joined.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, args) = current.split_once(char::is_whitespace).unwrap_or((&current, ""));
        out.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_owned(),
        });
        current.clear();
    }
    out
}

/// The stages: each `FROM` and the instructions after it.
fn stages(all: &[Instruction]) -> Vec<Vec<Instruction>> {
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for i in all {
        if i.keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("the Dockerfile starts with FROM")
            .push(i.clone());
    }
    stages
}

/// An exec-form argument list (`["a", "b"]`).
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not an exec-form list ({e}): {args}"))
}

/// `KEY=value` pairs of `ENV` instructions.
fn env_pairs(args: &str) -> Vec<(String, String)> {
    args.split_whitespace()
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("ENV KEY=value expected: {pair}"));
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect()
}

/// The Dockerfile, read as Docker would, with the pieces this test needs.
struct Image {
    /// The `RUN` that builds the binary from the sources.
    build_run: String,
    /// The build stage's instructions before the sources are copied (`COPY . .`).
    before_sources: Vec<Instruction>,
    user: String,
    env: Vec<(String, String)>,
    volumes: Vec<String>,
    exposed: Vec<String>,
    healthcheck: Vec<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    installed_binary: String,
}

fn image() -> Image {
    let text =
        std::fs::read_to_string(root().join("Dockerfile")).expect("a Dockerfile at the repository's root");
    let stages = stages(&instructions(&text));
    assert!(
        stages.len() >= 2,
        "a multi-stage build: a build stage and a small runtime stage"
    );
    let (build, runtime) = (&stages[0], stages.last().unwrap());
    let find = |stage: &[Instruction], kw: &str| -> Vec<String> {
        stage
            .iter()
            .filter(|i| i.keyword == kw)
            .map(|i| i.args.clone())
            .collect()
    };
    let sources_at = build
        .iter()
        .position(|i| i.keyword == "COPY" && i.args.split_whitespace().next() == Some("."))
        .expect("the build stage copies the sources (COPY . .)");
    let build_run = find(&build[sources_at..], "RUN")
        .into_iter()
        .find(|r| r.contains("cargo build"))
        .expect("cargo build after the sources are copied");
    let from = &runtime[0].args;
    assert!(
        !from.contains("rust:"),
        "the runtime stage is not the Rust toolchain image: {from}"
    );
    let copies = find(runtime, "COPY");
    let binary_copy = copies
        .iter()
        .find(|c| c.starts_with("--from=") && c.contains("flagstaff"))
        .expect("the runtime stage copies the binary from the build stage");
    let installed_binary = binary_copy.split_whitespace().last().unwrap().to_owned();
    let healthcheck = find(runtime, "HEALTHCHECK").pop().expect("a HEALTHCHECK");
    let cmd_at = healthcheck.find("CMD ").expect("HEALTHCHECK ... CMD [...]");
    Image {
        build_run,
        before_sources: build[..sources_at].to_vec(),
        user: find(runtime, "USER").pop().expect("a USER"),
        env: find(runtime, "ENV").iter().flat_map(|e| env_pairs(e)).collect(),
        volumes: find(runtime, "VOLUME")
            .iter()
            .flat_map(|v| v.split_whitespace().map(str::to_owned))
            .collect(),
        exposed: find(runtime, "EXPOSE")
            .iter()
            .flat_map(|v| v.split_whitespace().map(str::to_owned))
            .collect(),
        healthcheck: exec_form(&healthcheck[cmd_at + 4..]),
        entrypoint: exec_form(&find(runtime, "ENTRYPOINT").pop().expect("an ENTRYPOINT")),
        cmd: find(runtime, "CMD")
            .pop()
            .map(|c| exec_form(&c))
            .unwrap_or_default(),
        installed_binary,
    }
}

#[test]
fn the_dockerfile_builds_what_ci_builds_and_runs_it_small_non_root_on_a_data_volume() {
    let image = image();
    // The same package binary CI builds and tests, with the lock file, in release mode, with no
    // other features or target: `cargo build --release --locked --bin flagstaff`.
    let words: Vec<&str> = image
        .build_run
        .split("&&")
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let mut flags: Vec<&str> = words
        .iter()
        .copied()
        .skip_while(|w| *w != "build")
        .skip(1)
        .collect();
    flags.sort_unstable();
    assert_eq!(
        flags,
        ["--bin", "--locked", "--release", "flagstaff"],
        "{}",
        image.build_run
    );
    assert!(
        image.build_run.contains("target/release/flagstaff"),
        "{}",
        image.build_run
    );

    // The dependencies are built in a layer of their own, before the sources are copied, from
    // every member's manifest and the lock file alone: a change to the sources reuses it.
    let deps_run = image
        .before_sources
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .expect("a RUN building the dependencies before the sources are copied");
    assert!(
        deps_run
            .args
            .contains("cargo build --release --locked --bin flagstaff"),
        "the dependencies are built as the binary is: {}",
        deps_run.args
    );
    let copied: Vec<&str> = image
        .before_sources
        .iter()
        .filter(|i| i.keyword == "COPY")
        .flat_map(|i| {
            let words: Vec<&str> = i.args.split_whitespace().collect();
            words[..words.len() - 1].to_vec()
        })
        .collect();
    assert!(
        copied
            .iter()
            .all(|c| c.ends_with("Cargo.toml") || c.ends_with("Cargo.lock")),
        "only manifests before the dependency layer: {copied:?}"
    );
    for member in toml_members::read(&root().join("Cargo.toml")).0 {
        let manifest = match member.as_str() {
            "." => "Cargo.toml".to_owned(),
            m => format!("{m}/Cargo.toml"),
        };
        assert!(
            copied.contains(&manifest.as_str()),
            "{manifest} is not copied before the dependency layer: {copied:?}"
        );
    }
    assert!(copied.contains(&"Cargo.lock"), "{copied:?}");

    let uid = image.user.split(':').next().unwrap();
    assert!(
        !["root", "0", ""].contains(&uid),
        "the image runs as a non-root user, not {:?}",
        image.user
    );
    assert!(
        image
            .volumes
            .iter()
            .any(|v| v.trim_matches(['[', ']', '"', ',']) == "/data"),
        "{:?}",
        image.volumes
    );
    assert!(
        image.exposed.iter().any(|p| p == "8080" || p == "8080/tcp"),
        "{:?}",
        image.exposed
    );
    let env = |k: &str| image.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(env("FLAGSTAFF_DATA_DIR").as_deref(), Some("/data"));
    assert!(
        env("FLAGSTAFF_BIND").is_some_and(|b| b.ends_with(":8080")),
        "{:?}",
        image.env
    );
    assert_eq!(
        image.healthcheck,
        [image.installed_binary.as_str(), "healthcheck"]
    );
    assert_eq!(image.entrypoint, [image.installed_binary.as_str()]);
    assert_eq!(image.cmd, ["serve"]);
}

/// `.dockerignore` patterns, as Docker matches them against paths from the context's root.
fn ignored(patterns: &[String], path: &str) -> bool {
    fn glob(pattern: &[u8], text: &[u8]) -> bool {
        match (pattern.first(), text.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                glob(&pattern[1..], text)
                    || (!text.is_empty() && text[0] != b'/' && glob(pattern, &text[1..]))
            }
            (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
            _ => false,
        }
    }
    let mut ignored = false;
    for raw in patterns {
        let (negate, pattern) = match raw.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, raw.as_str()),
        };
        let pattern = pattern.trim_end_matches('/');
        // A pattern matches the path or one of its parent directories; `**/` matches any depth.
        let candidates: Vec<String> = {
            let parts: Vec<&str> = path.split('/').collect();
            (1..=parts.len()).map(|n| parts[..n].join("/")).collect()
        };
        let matches = candidates.iter().any(|c| match pattern.strip_prefix("**/") {
            Some(rest) => c.split('/').enumerate().any(|(i, _)| {
                let tail: Vec<&str> = c.split('/').skip(i).collect();
                glob(rest.as_bytes(), tail.join("/").as_bytes())
            }),
            None => glob(pattern.as_bytes(), c.as_bytes()),
        });
        if matches {
            ignored = !negate;
        }
    }
    ignored
}

#[test]
fn the_docker_context_keeps_everything_the_build_needs() {
    let patterns: Vec<String> = std::fs::read_to_string(root().join(".dockerignore"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    assert!(
        ignored(&patterns, "target/debug/flagstaff"),
        "target/ stays out of the context: {patterns:?}"
    );
    // The build compiles the workspace's members and embeds migrations, templates and assets.
    let manifest: toml_members::Members = toml_members::read(&root().join("Cargo.toml"));
    let mut needed = vec![
        "Cargo.toml".to_owned(),
        "Cargo.lock".to_owned(),
        "src/main.rs".to_owned(),
    ];
    for dir in ["migrations", "templates", "static"] {
        if root().join(dir).is_dir() {
            needed.push(format!("{dir}/x"));
        }
    }
    for member in manifest.0 {
        if member != "." {
            needed.push(format!("{member}/Cargo.toml"));
            needed.push(format!("{member}/src/lib.rs"));
        }
    }
    for path in needed {
        assert!(
            !ignored(&patterns, &path),
            "{path} is needed by the image's build but .dockerignore leaves it out"
        );
    }
}

/// Just enough of Cargo.toml: the workspace's `members` list.
mod toml_members {
    use std::path::Path;

    pub struct Members(pub Vec<String>);

    pub fn read(path: &Path) -> Members {
        let text = std::fs::read_to_string(path).unwrap();
        let start = text.find("members").expect("workspace members");
        let list = &text[start..];
        let list = &list[list.find('[').unwrap() + 1..list.find(']').unwrap()];
        Members(
            list.split(',')
                .map(|m| m.trim().trim_matches('"').to_owned())
                .filter(|m| !m.is_empty())
                .collect(),
        )
    }
}

/// A command run as the image's user when this test runs as root (`setpriv`, from util-linux);
/// as the current user otherwise (which is not root, so the point still holds).
fn as_image_user(user: &str, program: &str) -> (Command, Option<(u32, u32)>) {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !is_root {
        eprintln!("not root: running as the current (non-root) user instead of {user}");
        return (Command::new(program), None);
    }
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    let (uid, gid): (u32, u32) = (
        uid.parse()
            .expect("a numeric USER uid (a distroless image has no /etc/passwd to look names up in)"),
        gid.parse().expect("a numeric USER gid"),
    );
    let mut cmd = Command::new("setpriv");
    cmd.args([
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".into(),
        "--".into(),
        program.into(),
    ]);
    (cmd, Some((uid, gid)))
}

#[test]
fn the_binary_runs_as_the_image_runs_it_and_passes_its_healthcheck() {
    let image = image();
    let data = tempfile::tempdir().unwrap();
    // The image's /data: a directory owned by the image's user.
    let volume = data.path().join("data");
    std::fs::create_dir(&volume).unwrap();
    let bind = format!("127.0.0.1:{}", free_port());
    let env: Vec<(String, String)> = image
        .env
        .iter()
        .map(|(k, v)| match k.as_str() {
            "FLAGSTAFF_DATA_DIR" => (k.clone(), volume.display().to_string()),
            "FLAGSTAFF_BIND" => (k.clone(), bind.clone()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    let program = |argv: &[String]| -> Command {
        // The image's binary path is this build's binary here.
        assert_eq!(argv[0], image.installed_binary);
        let (mut cmd, owner) = as_image_user(&image.user, BIN);
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&volume, Some(uid), Some(gid)).unwrap();
            // The temp dir itself must be traversable by that user.
            std::fs::set_permissions(data.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        cmd.args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(env.iter().cloned());
        cmd
    };

    let argv: Vec<String> = image.entrypoint.iter().chain(&image.cmd).cloned().collect();
    let mut server = program(&argv)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server");
    let healthcheck = || {
        program(&image.healthcheck)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    // The image's start period: the check may fail while the server starts.
    let until = Instant::now() + Duration::from_secs(60);
    while !healthcheck().success() {
        if let Some(status) = server.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(server.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the server exited ({status}): {err}");
        }
        assert!(Instant::now() < until, "the HEALTHCHECK never passed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let db = volume.join("flagstaff.db");
    let owner = std::fs::metadata(&db)
        .expect("the database is in the data volume")
        .uid();
    if let Some((uid, _)) = as_image_user(&image.user, BIN).1 {
        assert_eq!(owner, uid, "the database belongs to the image's user");
    }

    // `docker stop` sends SIGTERM: a clean exit, after which the health check fails.
    let stopped = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = server.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !healthcheck().success(),
        "the HEALTHCHECK fails when nothing answers"
    );
    assert!(Path::new(&db).exists());
}

#[test]
fn dockerignore_patterns_match_as_docker_does() {
    let p: Vec<String> = ["target/", "**/node_modules/", "*.db", "tests/js/", ".venv*/"]
        .map(String::from)
        .to_vec();
    assert!(ignored(&p, "target/release/flagstaff"));
    assert!(ignored(&p, "sdk/js/node_modules/x/index.js"));
    assert!(ignored(&p, "flagstaff.db"));
    assert!(ignored(&p, "tests/js/package.json"));
    assert!(ignored(&p, ".venv-tests/bin/python"));
    assert!(!ignored(&p, "src/main.rs"));
    assert!(!ignored(&p, "tests/it/main.rs"));
    assert!(!ignored(&p, "data/flagstaff.dbx"));
    let negated: Vec<String> = ["static/", "!static/keep.css"].map(String::from).to_vec();
    assert!(!ignored(&negated, "static/keep.css"));
}
