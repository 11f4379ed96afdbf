//! The admin pages in headless Chromium: `tests/js/admin-pages.mjs` drives Debian's
//! `chromium` (the one on `PATH`) with puppeteer-core against a real server on a loopback socket.
//! Screenshots land in `artifacts/screenshots/` (desktop and phone widths).

use std::process::Command;

use flagstaff::store::users::Role;

use super::{PASSWORD, user};
use crate::helpers::{RealServer, TestApp, Tool, root, tools_installed};

#[actix_web::test]
async fn the_admin_pages_work_in_a_real_browser() {
    if !tools_installed(&[Tool::Chromium, Tool::Node, Tool::JsPackages]) {
        return;
    }
    // Webhooks may reach the script's receiver on 127.0.0.1.
    let app = TestApp::with_settings(|s| s.serve.webhooks.webhook_allow_private = true);
    let admin = user(&app, "admin@example.com", Role::Admin);
    let viewer = user(&app, "viewer@example.com", Role::Viewer);
    let locked = user(&app, "locked@example.com", Role::Editor);
    let server = RealServer::start(&app.state);
    let shots = root().join("artifacts/screenshots");
    let script = root().join("tests/js/admin-pages.mjs");
    let url = server.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(Tool::Node.expect())
            .env("FLAGSTAFF_CHROMIUM", Tool::Chromium.expect())
            .current_dir(root().join("tests/js"))
            .arg(script)
            .args([url.as_str(), &admin, &viewer, &locked, PASSWORD])
            .arg(&shots)
            .output()
            .expect("run node")
    })
    .await
    .expect("the browser script's thread");
    server.stop().await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for step in [
        "[toggle production] toggled on in production after the confirmation, without a reload",
        "[schedule] scheduled at 12:30 local (07:00 UTC), shown in local time, cancelled",
        "[compare] production compared with staging and promoted with one confirmation",
        "[bundle] the bundle serves the toggle, the rule and the rollout",
        "[csrf] a POST without the CSRF token is refused with 403",
        "[viewer] a viewer sees no toggle; a forged toggle is 403",
        "[throttling] sign-ins are throttled after 5 failures (429)",
        "[end] ok",
    ] {
        assert!(
            stdout.contains(step),
            "missing step {step:?} in:\n{stdout}\n{stderr}"
        );
    }
    for name in ["flags-desktop.png", "flags-phone.png", "editor-phone.png"] {
        let file = root().join("artifacts/screenshots").join(name);
        assert!(
            std::fs::metadata(&file).is_ok_and(|m| m.len() > 1000),
            "{} was not written",
            file.display()
        );
    }
}

/// Issue 20, as a new user: setup link → sample project → snippets (the curl one is run) →
/// live demo page → a toggle in another tab shows there. `tests/js/tour.mjs` drives Chromium.
#[actix_web::test]
async fn the_first_ten_minutes_work_in_a_real_browser() {
    if !tools_installed(&[Tool::Chromium, Tool::Node, Tool::JsPackages, Tool::Curl]) {
        return;
    }
    let app = TestApp::new();
    let state = app.state.clone();
    let link = tokio::task::spawn_blocking(move || flagstaff::http::admin::bootstrap(&state))
        .await
        .expect("the bootstrap thread")
        .expect("bootstrap")
        .expect("a setup link: there are no users");
    let setup = &link[link.find("/setup?").expect("the setup path")..];
    let server = RealServer::start(&app.state);
    let shots = root().join("artifacts/screenshots");
    let script = root().join("tests/js/tour.mjs");
    let (url, setup) = (server.url.clone(), setup.to_owned());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(Tool::Node.expect())
            .env("FLAGSTAFF_CHROMIUM", Tool::Chromium.expect())
            .current_dir(root().join("tests/js"))
            .arg(script)
            .args([url.as_str(), &setup])
            .arg(&shots)
            .output()
            .expect("run node")
    })
    .await
    .expect("the browser script's thread");
    server.stop().await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for step in [
        "[sample project] the sample project shows its client and server keys once",
        "[snippets] the snippets name this server and the new keys; the curl snippet answers with the flags",
        "[live] a toggle in another tab shows on the demo page without a reload",
        "[server key] the demo page refuses a server key and takes a pasted client key",
        "[end] ok",
    ] {
        assert!(
            stdout.contains(step),
            "missing step {step:?} in:\n{stdout}\n{stderr}"
        );
    }
    for name in ["projects-empty", "sample", "try", "connect"] {
        for width in ["desktop", "phone"] {
            let file = root()
                .join("artifacts/screenshots")
                .join(format!("{name}-{width}.png"));
            assert!(
                std::fs::metadata(&file).is_ok_and(|m| m.len() > 1000),
                "{} was not written",
                file.display()
            );
        }
    }
}
