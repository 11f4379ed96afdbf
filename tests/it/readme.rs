//! The README tells the truth: its configuration table lists every setting, and its API session
//! runs as written (bash and curl against a real `flagstaff serve`).

use std::process::Command;

use clap::CommandFactory as _;
use flagstaff::AppState;
use flagstaff::config::{Cli, Settings};

use crate::cli::{Served, flagstaff};
use crate::helpers::{Tool, tools_installed};

const README: &str = include_str!("../../README.md");

#[test]
fn the_configuration_table_lists_every_setting() {
    let cli = Cli::command();
    let mut settings = 0;
    for arg in cli.get_arguments() {
        let Some(env) = arg.get_env() else { continue };
        settings += 1;
        let env = env.to_string_lossy();
        let flag = format!("--{}", arg.get_long().expect("every setting has a flag"));
        let row = README
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("`{env}`")))
            .unwrap_or_else(|| panic!("README.md's configuration table has no row for {env}"));
        assert!(
            row.contains(&format!("`{flag}`")),
            "the row of {env} names {flag}: {row}"
        );
    }
    assert!(settings >= 4, "{settings} settings found");
}

#[test]
fn the_api_session_runs_as_written() {
    if !tools_installed(&[Tool::Curl]) {
        return;
    }
    let start = README
        .find("<!-- readme-session:start -->")
        .expect("start marker");
    let end = README.find("<!-- readme-session:end -->").expect("end marker");
    let mut script = String::new();
    let mut in_block = false;
    for line in README[start..end].lines() {
        match line.trim() {
            "```sh" => in_block = true,
            "```" => in_block = false,
            _ if in_block => {
                script.push_str(line);
                script.push('\n');
            }
            _ => {}
        }
    }
    assert!(script.contains("curl") && script.contains("flagstaff token create"));

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = Served::start(flagstaff(&data));
    let script = script.replace("http://localhost:8080", &format!("http://{}", served.addr));
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_flagstaff"))
        .parent()
        .unwrap()
        .to_owned();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("PATH", path)
        .env("FLAGSTAFF_DATA_DIR", &data)
        .output()
        .expect("bash runs");
    served.stop();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the session failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("\"key\":\"fs_srv_"),
        "the key was shown: {stdout}"
    );

    // What the session did is there after a restart.
    let state = AppState::open(Settings::with_data_dir(&data)).unwrap();
    let snapshot = state
        .snapshots
        .find("shop", "production")
        .expect("project shop, environment production");
    let flags = snapshot.flags().unwrap();
    let flag = flags.iter().find(|f| f.key == "new-checkout").expect("the flag");
    assert!(
        flag.environments["production"].enabled,
        "toggled on in production"
    );
    let at = stdout.find("\"key\":\"fs_srv_").expect("the key's secret") + "\"key\":\"".len();
    let secret = stdout[at..].split('"').next().unwrap();
    let key = state.keys.find(secret).expect("the printed key works");
    assert_eq!(key.kind, flagstaff::store::api_keys::KeyKind::Server);
    let users: i64 = state
        .store
        .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(users, 2, "the admin and the editor");
}
