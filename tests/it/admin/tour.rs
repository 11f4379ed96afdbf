//! The first ten minutes (issue 20) without a browser: the sample project (button and
//! `serve --sample-project`), "Connect an app" snippets, the live demo page, and the empty
//! states of the list pages. `browser.rs` walks the same path in Chromium.

use actix_web::http::StatusCode;
use flagstaff::store::users::Role;
use serde_json::{Value, json};

use super::{Agent, project, user};
use crate::helpers::TestApp;

const HOSTILE: &str = "<script>alert(\"x\")</script>, 'quoted'\ttab é";

/// The text of the element with this id (`<code id="…">text</code>`), HTML entities decoded.
fn element_text(html: &str, id: &str) -> Option<String> {
    let doc = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse(&format!("#{id}")).ok()?;
    doc.select(&selector).next().map(|e| e.text().collect())
}

async fn audit(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let reply = app
        .call("GET", &format!("/api/v1/audit?{query}"), Some(token), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["entries"].as_array().cloned().unwrap_or_default()
}

async fn key_count(app: &TestApp, token: &str) -> usize {
    let reply = app
        .call(
            "GET",
            "/api/v1/projects/sample/environments/development/keys",
            Some(token),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body.as_array().map_or_else(
        || {
            reply.body["keys"]
                .as_array()
                .map(Vec::len)
                .expect("a list of keys")
        },
        Vec::len,
    )
}

async fn ofrep_keys(app: &TestApp, key: &str) -> Vec<String> {
    let reply = app
        .call(
            "POST",
            "/ofrep/v1/evaluate/flags",
            Some(key),
            Some(json!({"context": {"targetingKey": "user-1"}})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let mut keys: Vec<String> = reply.body["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .map(|f| f["key"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    keys
}

#[actix_web::test]
async fn the_sample_project_is_created_once_audited_and_its_keys_work() {
    let app = TestApp::new();
    let admin = user(&app, "admin@example.com", Role::Admin);
    let viewer = user(&app, "viewer@example.com", Role::Viewer);
    let token = app.token(Role::Admin);

    // A viewer sees the empty page without the button, and cannot create it.
    let mut as_viewer = Agent::signed_in(&app, &viewer).await;
    let page = as_viewer.get("/projects").await;
    assert!(page.body.contains("No projects yet") && !page.body.contains("create-sample"));
    let refused = as_viewer
        .post_with_csrf("/projects", "/projects/create-sample", &[])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let mut agent = Agent::signed_in(&app, &admin).await;
    let page = agent.get("/projects").await;
    assert!(
        page.body.contains("action=\"/projects/create-sample\""),
        "{}",
        page.body
    );
    let created = agent
        .post_with_csrf("/projects", "/projects/create-sample", &[])
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let client = element_text(&created.body, "sample-client-key").expect("the client key");
    let server = element_text(&created.body, "sample-server-key").expect("the server key");
    assert!(client.starts_with("fs_cli_") && server.starts_with("fs_srv_"));
    assert!(created.body.contains(&format!(
        "href=\"/projects/sample/environments/development/try#key={client}\""
    )));
    // The snippets are filled in with both keys and the page's origin.
    let rust = element_text(&created.body, "snippet-rust").unwrap();
    assert!(
        rust.contains("http://localhost:8080") && rust.contains(&server),
        "{rust}"
    );
    let browser = element_text(&created.body, "snippet-browser").unwrap();
    assert!(
        browser.contains(&client) && browser.contains("<script type=\"module\">"),
        "{browser}"
    );

    // The client key reads client-side flags only; the server key reads the whole bundle.
    assert_eq!(
        ofrep_keys(&app, &client).await,
        [
            "beta-dashboard",
            "checkout-button-text",
            "new-checkout",
            "storefront-settings"
        ]
    );
    let bundle = app.call("GET", "/sdk/v1/bundle", Some(&server), None).await;
    assert_eq!(bundle.status, StatusCode::OK);
    assert_eq!(bundle.body["flags"].as_array().unwrap().len(), 5);
    assert_eq!(bundle.body["segments"][0]["key"], "beta-testers");

    // Audited like any import, and the keys like keys made on the keys page.
    let entries = audit(&app, &token, "project=sample&limit=100").await;
    let imported = entries
        .iter()
        .filter(|e| e["action"] == "import" && e["actor"] == "admin@example.com")
        .count();
    assert_eq!(
        imported,
        1 + 3 + 1 + 5,
        "project, environments, segment, flags: {entries:#?}"
    );
    let keys = entries
        .iter()
        .filter(|e| e["entity_kind"] == "api_key" && e["action"] == "create")
        .count();
    assert_eq!(keys, 2);
    assert!(
        !serde_json::to_string(&entries).unwrap().contains(&server[7..]),
        "no secret in the audit log"
    );

    // Not created twice: the button leads to the project.
    let again = agent
        .post_with_csrf("/projects", "/projects/create-sample", &[])
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.location(), "/projects/sample/flags?notice=sample-exists");
    assert_eq!(key_count(&app, &token).await, 2);
    assert_eq!(
        audit(&app, &token, "project=sample&limit=100").await.len(),
        entries.len()
    );
    let flags = agent.get(again.location()).await;
    assert!(flags.body.contains("The sample project exists already"));
    // The projects page is no longer empty.
    assert!(!agent.get("/projects").await.body.contains("create-sample"));
}

#[actix_web::test]
async fn serve_with_sample_project_creates_it_once_and_prints_its_keys_on_stdout() {
    let app = TestApp::new();
    let mut out = Vec::new();
    assert!(flagstaff::http::admin::create_sample_at_start(&app.state, &mut out).unwrap());
    let printed = String::from_utf8(out).unwrap();
    let word = |prefix: &str| {
        printed
            .split_whitespace()
            .find(|w| w.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} key in {printed}"))
            .to_owned()
    };
    let (client, server) = (word("fs_cli_"), word("fs_srv_"));
    assert!(printed.contains("/projects/sample/environments/development/try#key="));
    assert_eq!(ofrep_keys(&app, &client).await.len(), 4);
    assert_eq!(
        app.call("GET", "/sdk/v1/bundle", Some(&server), None)
            .await
            .status,
        StatusCode::OK
    );
    let mut out = Vec::new();
    assert!(!flagstaff::http::admin::create_sample_at_start(&app.state, &mut out).unwrap());
    assert!(out.is_empty(), "nothing printed the second time");
    let token = app.token(Role::Admin);
    assert_eq!(key_count(&app, &token).await, 2);
    let entries = audit(&app, &token, "project=sample&limit=100").await;
    assert!(entries.iter().all(|e| e["actor"] == "cli"), "{entries:#?}");
}

#[test]
fn the_binary_takes_sample_project_and_creates_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let created = |v: &Value| {
        v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("created the sample project"))
    };
    let exists = |v: &Value| {
        v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("the sample project exists already"))
    };
    for first in [true, false] {
        let mut server = crate::ops::Flagstaff::start(dir.path(), &[("FLAGSTAFF_SAMPLE_PROJECT", "true")]);
        if first {
            server.wait_for_log(created);
        } else {
            server.wait_for_log(exists);
            assert!(
                !server
                    .logs()
                    .iter()
                    .any(|l| l.contains("fs_srv_") || l.contains("fs_cli_"))
            );
        }
        let (status, _) = server.terminate();
        assert!(status.success());
        let logs = server.logs();
        assert!(
            !logs
                .iter()
                .any(|l| l.contains("fs_srv_") || l.contains("fs_cli_")),
            "no key in the log: {logs:#?}"
        );
    }
}

#[actix_web::test]
async fn connect_snippets_name_the_public_url_or_the_pages_origin_never_a_spoofed_host() {
    let app = TestApp::new();
    let admin = user(&app, "admin@example.com", Role::Admin);
    project(&app, "shop");
    let mut agent = Agent::signed_in(&app, &admin).await;

    let page = agent.get("/projects/shop/environments/staging/connect").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let curl = element_text(&page.body, "snippet-curl").unwrap();
    assert!(
        curl.starts_with("curl -sS -X POST 'http://localhost:8080/ofrep/v1/evaluate/flags'"),
        "{curl}"
    );
    assert!(curl.contains("Bearer YOUR_CLIENT_KEY"), "{curl}");
    for id in ["browser", "rust", "node", "python", "openfeature", "curl"] {
        assert!(
            element_text(&page.body, &format!("snippet-{id}")).is_some(),
            "snippet {id}"
        );
        assert!(page.body.contains(&format!("data-copy=\"snippet-{id}\"")));
    }

    // A Host that is not a plain host name is not shown: the bind address is.
    for host in ["evil.example\"><script>alert(1)</script>", "a b", "x'y:80"] {
        let page = agent
            .send(
                "GET",
                "/projects/shop/environments/staging/connect",
                None,
                &[("host", host)],
            )
            .await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.body.contains("<script>alert(1)"), "{}", page.body);
        let curl = element_text(&page.body, "snippet-curl").unwrap();
        assert!(curl.contains("'http://localhost:0/ofrep"), "{host}: {curl}");
    }
    // X-Forwarded-Host is believed only from a trusted proxy (none here).
    let page = agent
        .send(
            "GET",
            "/projects/shop/environments/staging/connect",
            None,
            &[("x-forwarded-host", "attacker.example")],
        )
        .await;
    assert!(!page.body.contains("attacker.example"));

    // --public-url wins.
    let app =
        TestApp::with_settings(|s| s.serve.frontend.public_url = Some("https://flags.example.com".into()));
    let admin = user(&app, "admin@example.com", Role::Admin);
    project(&app, "shop");
    let mut agent = Agent::signed_in(&app, &admin).await;
    let page = agent.get("/projects/shop/environments/production/connect").await;
    let node = element_text(&page.body, "snippet-node").unwrap();
    assert!(node.contains("url: 'https://flags.example.com'"), "{node}");

    // Unknown environment or project: 404; signed out: to the sign-in page.
    assert_eq!(
        agent.get("/projects/shop/environments/nope/connect").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        agent.get("/projects/nope/environments/staging/try").await.status,
        StatusCode::NOT_FOUND
    );
    let mut anonymous = Agent::new(&app);
    let page = anonymous.get("/projects/shop/environments/staging/try").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page.location().starts_with("/sign-in"), "{}", page.location());
}

#[actix_web::test]
async fn a_new_key_is_shown_once_with_its_snippets_and_never_on_a_page_again() {
    let app = TestApp::new();
    let admin = user(&app, "admin@example.com", Role::Admin);
    let viewer = user(&app, "viewer@example.com", Role::Viewer);
    project(&app, "shop");
    let mut agent = Agent::signed_in(&app, &admin).await;

    // No client key yet: the demo page says so and links to create one.
    let page = agent.get("/projects/shop/environments/development/try").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("has no client key yet"), "{}", page.body);
    assert!(
        page.body
            .contains("/projects/shop/keys?env=development&amp;kind=client#new-key")
    );
    let keys = agent.get("/projects/shop/keys?env=development&kind=client").await;
    assert!(keys.body.contains("<option value=\"development\" selected>"));
    assert!(keys.body.contains("<option value=\"client\" selected>"));

    let mut secrets = Vec::new();
    for kind in ["client", "server"] {
        let created = agent
            .post_with_csrf(
                "/projects/shop/keys",
                "/projects/shop/keys",
                &[("environment", "development"), ("kind", kind), ("name", HOSTILE)],
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let secret = element_text(&created.body, "new-secret").unwrap();
        let curl = element_text(&created.body, "snippet-curl").unwrap();
        assert!(curl.contains(&format!("Bearer {secret}")), "{curl}");
        assert!(!created.body.contains("<script>alert"), "the name is escaped");
        if kind == "client" {
            assert!(created.body.contains(&format!(
                "href=\"/projects/shop/environments/development/try#key={secret}\""
            )));
            assert!(
                element_text(&created.body, "snippet-browser")
                    .unwrap()
                    .contains(&secret)
            );
        } else {
            assert!(
                !created.body.contains("/try#key="),
                "never a server key in a demo link"
            );
            assert!(
                element_text(&created.body, "snippet-python")
                    .unwrap()
                    .contains(&secret)
            );
        }
        secrets.push(secret);
    }

    // Afterwards, no page holds either secret (only their first characters).
    let mut as_viewer = Agent::signed_in(&app, &viewer).await;
    for (as_admin, path) in [
        (true, "/projects/shop/keys"),
        (true, "/projects/shop/environments/development/connect"),
        (true, "/projects/shop/environments/development/try"),
        (false, "/projects/shop/environments/development/connect"),
        (false, "/projects/shop/environments/development/try"),
    ] {
        let who = if as_admin { &mut agent } else { &mut as_viewer };
        let page = who.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        for secret in &secrets {
            assert!(!page.body.contains(secret.as_str()), "{path} holds a secret");
            // Keys are named by their start; the demo page names client keys only.
            let named = !path.ends_with("/try") || secret.starts_with("fs_cli_");
            assert_eq!(
                page.body.contains(&secret[..12]),
                named,
                "{path} and {}",
                &secret[..12]
            );
        }
    }
    // A viewer gets no button creating keys on the demo page.
    let page = as_viewer.get("/projects/shop/environments/development/try").await;
    assert!(!page.body.contains("try-create-key"));
    assert!(page.body.contains("id=\"try-key-form\""));
}

#[actix_web::test]
async fn hostile_names_show_as_text_on_the_new_pages() {
    let app = TestApp::new();
    let admin = user(&app, "admin@example.com", Role::Admin);
    let token = app.token(Role::Admin);
    let doc = json!({
        "flagstaff": 1,
        "project": {"key": "evil", "name": HOSTILE},
        "environments": [{"key": "dev", "name": HOSTILE}],
        "flags": [{"key": "f.x_y-z", "name": HOSTILE, "kind": "flag", "type": "boolean",
                   "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]}]
    });
    let reply = app.call("POST", "/api/v1/import", Some(&token), Some(doc)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let mut agent = Agent::signed_in(&app, &admin).await;
    for path in [
        "/projects/evil/environments/dev/connect",
        "/projects/evil/environments/dev/try",
        "/projects/evil/keys",
        "/projects/evil/environments",
    ] {
        let page = agent.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(!page.body.contains("<script>alert"), "{path}: {}", page.body);
        assert!(
            page.body.contains("&lt;script&gt;alert") || page.body.contains("&#60;script&#62;alert"),
            "{path}: the name shows as text"
        );
    }
    let page = agent.get("/projects/evil/environments/dev/connect").await;
    let rust = element_text(&page.body, "snippet-rust").unwrap();
    assert!(
        rust.contains("bool_value(\"f.x_y-z\""),
        "the example reads a flag of the project: {rust}"
    );
}

#[actix_web::test]
async fn every_list_page_says_what_to_do_when_empty() {
    let app = TestApp::new();
    let admin = user(&app, "admin@example.com", Role::Admin);
    project(&app, "shop");
    let mut agent = Agent::signed_in(&app, &admin).await;
    for (path, says, links) in [
        ("/projects/shop/flags", "No flags yet", "href=\"#new-flag\""),
        ("/projects/shop/configs", "No configs yet", "href=\"#new-flag\""),
        (
            "/projects/shop/segments",
            "No segments yet",
            "href=\"#new-segment\"",
        ),
        (
            "/projects/shop/keys",
            "No keys yet",
            "href=\"?env=production#new-key\"",
        ),
        ("/users", "You are the only user", "href=\"#invite\""),
        (
            "/projects/shop/insights",
            "No flags yet",
            "/projects/shop/flags#new-flag",
        ),
    ] {
        let page = agent.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(page.body.contains(says), "{path} should say {says:?}");
        assert!(page.body.contains(links), "{path} should link {links:?}");
    }
    // The flag list points at connecting an app too.
    let page = agent.get("/projects/shop/flags").await;
    assert!(
        page.body
            .contains("/projects/shop/environments/production/connect")
    );
    // With flags but no evaluations, insights say where counts come from.
    agent
        .post_with_csrf(
            "/projects/shop/flags",
            "/projects/shop/flags",
            &[
                ("key", "one"),
                ("name", "One"),
                ("type", "boolean"),
                ("kind", "flag"),
            ],
        )
        .await;
    let page = agent.get("/projects/shop/insights").await;
    assert!(
        page.body.contains("Nothing was evaluated in Production"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("/projects/shop/environments/production/connect")
    );
    // A viewer is told who can act, and gets no link to a form it cannot use.
    let viewer = user(&app, "viewer@example.com", Role::Viewer);
    assert!(!agent.get("/users").await.body.contains("You are the only user"));
    let mut as_viewer = Agent::signed_in(&app, &viewer).await;
    let page = as_viewer.get("/projects/shop/segments").await;
    assert!(page.body.contains("An editor can create one") && !page.body.contains("#new-segment\""));
}
