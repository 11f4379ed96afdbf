//! The admin pages' content and actions without a browser: projects, the flag list and its
//! toggles, the editor, roles, escaping.

use actix_web::http::StatusCode;
use flagstaff::store::users::Role;
use serde_json::json;

use super::{Agent, project, user};
use crate::helpers::TestApp;

/// Creates a boolean flag through the list page's form (as an editor would).
async fn create_flag(agent: &mut Agent<'_>, project: &str, key: &str, name: &str) {
    let page = agent
        .post_with_csrf(
            &format!("/projects/{project}/flags"),
            &format!("/projects/{project}/flags"),
            &[
                ("key", key),
                ("name", name),
                ("type", "boolean"),
                ("kind", "flag"),
                ("tags", "checkout, web"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(
        page.location(),
        format!("/projects/{project}/flags/{key}?notice=created")
    );
}

fn served_state(app: &TestApp, project: &str, env: &str, flag: &str) -> serde_json::Value {
    let snapshot = app.state.snapshots.find(project, env).expect("snapshot");
    let bundle: serde_json::Value = serde_json::from_slice(&snapshot.bundle).unwrap();
    bundle["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == flag)
        .map_or(serde_json::Value::Null, |f| f["environments"][env].clone())
}

#[actix_web::test]
async fn an_admin_creates_a_project_and_a_viewer_cannot() {
    let app = TestApp::new();
    let admin = user(&app, "admin@example.com", Role::Admin);
    let viewer = user(&app, "viewer@example.com", Role::Viewer);
    let mut agent = Agent::signed_in(&app, &admin).await;
    let page = agent
        .post_with_csrf(
            "/projects",
            "/projects",
            &[("key", "Not A Slug"), ("name", "Shop")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.body.contains("id=\"key-error\""),
        "error beside the key field: {}",
        page.body
    );
    assert!(
        page.body.contains("value=\"Not A Slug\""),
        "what was typed is kept"
    );

    let page = agent
        .post_with_csrf("/projects", "/projects", &[("key", "shop"), ("name", "Shop")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), "/projects/shop/flags?notice=created");
    let list = agent.get("/projects").await;
    assert!(list.body.contains("/projects/shop/flags"));
    let envs = agent.get("/projects/shop/environments").await;
    for env in ["development", "staging", "production"] {
        assert!(envs.body.contains(env), "{env}");
    }
    let again = agent
        .post_with_csrf("/projects", "/projects", &[("key", "shop")])
        .await;
    assert_eq!(
        again.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "taken key, shown beside the field"
    );
    assert!(again.body.contains("already exists"));

    for missing in [
        "/projects/shop/nowhere",
        "/projects/shop/flags/no-such-flag",
        "/projects/nope/flags",
    ] {
        let page = agent.get(missing).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{missing}");
        assert!(page.body.contains("not found"), "{missing}: {}", page.body);
        assert!(page.header("content-security-policy").is_some(), "{missing}");
    }

    let mut viewer = Agent::signed_in(&app, &viewer).await;
    let page = viewer.get("/projects").await;
    assert!(page.body.contains("/projects/shop/flags"));
    assert!(!page.body.contains("New project"), "no create form for a viewer");
    let forged = viewer
        .post_with_csrf("/projects", "/projects", &[("key", "evil")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}

#[actix_web::test]
async fn the_flag_list_toggles_each_environment_and_the_bundle_follows() {
    let app = TestApp::new();
    project(&app, "shop");
    let editor = user(&app, "ed@example.com", Role::Editor);
    let mut agent = Agent::signed_in(&app, &editor).await;
    create_flag(&mut agent, "shop", "new-checkout", "New checkout").await;

    let list = agent.get("/projects/shop/flags").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("New checkout"));
    let toggles = list.body.matches("class=\"js-toggle\"").count();
    assert_eq!(toggles, 3, "one toggle per environment");
    assert!(
        list.body
            .contains("data-confirm=\"Turn New checkout {state} in Production?\""),
        "production asks"
    );
    assert!(list.body.contains("role=\"switch\" aria-checked=\"false\""));

    // Our script's call: JSON back, new state at once.
    let csrf = list.csrf();
    let body = format!("csrf={csrf}&enabled=true&version=0");
    let page = agent
        .send(
            "POST",
            "/projects/shop/flags/new-checkout/environments/staging/toggle",
            Some(body),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("accept", "application/json"),
                ("x-csrf-token", &csrf),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.json(), json!({"enabled": true, "version": 1}));
    assert_eq!(
        served_state(&app, "shop", "staging", "new-checkout")["enabled"],
        true
    );
    assert_eq!(
        served_state(&app, "shop", "production", "new-checkout")["enabled"],
        false
    );

    // A stale version is refused (someone else toggled first).
    let body = format!("csrf={csrf}&enabled=false&version=0");
    let page = agent
        .send(
            "POST",
            "/projects/shop/flags/new-checkout/environments/staging/toggle",
            Some(body),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("accept", "application/json"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::PRECONDITION_FAILED);
    assert!(
        page.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Someone else")
    );

    // Without script, production asks on a page first, then toggles.
    let page = agent
        .post(
            "/projects/shop/flags/new-checkout/environments/production/toggle",
            &[
                ("csrf", &csrf),
                ("enabled", "true"),
                ("version", "0"),
                ("back", "/projects/shop/flags?q=new"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Turn New checkout on in Production?"),
        "{}",
        page.body
    );
    assert_eq!(
        served_state(&app, "shop", "production", "new-checkout")["enabled"],
        false,
        "not yet"
    );
    let page = agent
        .post(
            "/projects/shop/flags/new-checkout/environments/production/toggle",
            &[
                ("csrf", &csrf),
                ("enabled", "true"),
                ("version", "0"),
                ("back", "/projects/shop/flags?q=new"),
                ("confirmed", "yes"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/projects/shop/flags?q=new&notice=toggled");
    assert_eq!(
        served_state(&app, "shop", "production", "new-checkout")["enabled"],
        true
    );

    // The change is in the audit log under the editor's name.
    let actor: String = app
        .state
        .store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT actor FROM audit_log WHERE entity_kind = 'flag_state' ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(actor, "ed@example.com");
}

#[actix_web::test]
async fn a_viewer_sees_no_toggle_and_a_forged_toggle_is_refused() {
    let app = TestApp::new();
    project(&app, "shop");
    let editor = user(&app, "ed@example.com", Role::Editor);
    let viewer = user(&app, "vi@example.com", Role::Viewer);
    let mut ed = Agent::signed_in(&app, &editor).await;
    create_flag(&mut ed, "shop", "beta", "Beta").await;
    let mut vi = Agent::signed_in(&app, &viewer).await;
    let list = vi.get("/projects/shop/flags").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("Beta"));
    assert!(!list.body.contains("js-toggle"), "no toggle for a viewer");
    assert!(!list.body.contains("New flag"), "no create form");
    let csrf = list.csrf();
    let page = vi
        .post(
            "/projects/shop/flags/beta/environments/production/toggle",
            &[("csrf", &csrf), ("enabled", "true"), ("confirmed", "yes")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(served_state(&app, "shop", "production", "beta")["enabled"], false);
    let editor_page = vi.get("/projects/shop/flags/beta").await;
    assert_eq!(editor_page.status, StatusCode::OK, "a viewer reads the editor");
    assert!(
        !editor_page.body.contains(">Save production<"),
        "without save buttons"
    );
    let save = vi
        .post(
            "/projects/shop/flags/beta/environments/production",
            &[("csrf", &csrf), ("enabled", "true")],
        )
        .await;
    assert_eq!(save.status, StatusCode::FORBIDDEN);
}

#[actix_web::test]
async fn a_flag_named_like_a_script_shows_as_text() {
    let app = TestApp::new();
    project(&app, "shop");
    let editor = user(&app, "ed@example.com", Role::Editor);
    let mut agent = Agent::signed_in(&app, &editor).await;
    create_flag(&mut agent, "shop", "xss", "<script>alert(1)</script>").await;
    for path in [
        "/projects/shop/flags",
        "/projects/shop/flags/xss",
        "/projects/shop/flags/xss/insights",
        "/audit?project=shop",
    ] {
        let page = agent.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(
            !page.body.contains("<script>alert(1)</script>"),
            "{path} has the raw script"
        );
        let escaped = [
            "&lt;script&gt;alert(1)&lt;/script&gt;",
            "&#60;script&#62;alert(1)&#60;/script&#62;",
        ];
        assert!(
            escaped.iter().any(|e| page.body.contains(e)) || path.starts_with("/audit"),
            "{path}: {}",
            page.body
        );
    }
}

#[actix_web::test]
async fn search_and_filters_narrow_the_list() {
    let app = TestApp::new();
    project(&app, "shop");
    let editor = user(&app, "ed@example.com", Role::Editor);
    let mut agent = Agent::signed_in(&app, &editor).await;
    create_flag(&mut agent, "shop", "new-checkout", "New checkout").await;
    create_flag(&mut agent, "shop", "dark-mode", "Dark mode").await;
    let page = agent
        .post_with_csrf(
            "/projects/shop/configs",
            "/projects/shop/flags",
            &[
                ("key", "max-items"),
                ("name", "Max items"),
                ("type", "number"),
                ("kind", "config"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);

    let page = agent.get("/projects/shop/flags?q=dark").await;
    assert!(page.body.contains("Dark mode") && !page.body.contains("New checkout"));
    let page = agent.get("/projects/shop/flags").await;
    assert!(page.body.contains("Dark mode") && page.body.contains("New checkout"));
    assert!(!page.body.contains("Max items"), "configs are listed apart");
    let page = agent.get("/projects/shop/configs").await;
    assert!(page.body.contains("Max items") && !page.body.contains("Dark mode"));
    let page = agent.get("/projects/shop/flags?kind=").await;
    assert!(
        page.body.contains("Max items") && page.body.contains("Dark mode"),
        "both kinds"
    );
    let page = agent.get("/projects/shop/flags?tag=nope").await;
    assert!(!page.body.contains("Dark mode"));
    let page = agent.get("/projects/shop/flags?tag=web").await;
    assert!(page.body.contains("Dark mode"));
    let page = agent.get("/projects/shop/flags?stale=1").await;
    assert!(!page.body.contains("Dark mode"), "new flags are not stale");
}

#[actix_web::test]
async fn the_editor_saves_rules_rollouts_and_targets_and_shows_errors_beside_fields() {
    let app = TestApp::new();
    project(&app, "shop");
    let editor = user(&app, "ed@example.com", Role::Editor);
    let mut agent = Agent::signed_in(&app, &editor).await;
    create_flag(&mut agent, "shop", "new-checkout", "New checkout").await;
    let page = agent.get("/projects/shop/flags/new-checkout?env=staging").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("In Staging"));
    let csrf = page.csrf();
    let url = "/projects/shop/flags/new-checkout/environments/staging";

    // Weights of 20% + 75%: refused, the message beside the rollout, nothing saved.
    let fields = |on: &'static str, regex: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("version", "0".to_owned()),
            ("enabled", "true".to_owned()),
            ("off_variation", "off".to_owned()),
            ("targets[3].variation", "on".to_owned()),
            ("targets[3].values", "u-1\nu-2".to_owned()),
            ("rules[7].id", "internal".to_owned()),
            ("rules[7].clauses[0].attribute", "email".to_owned()),
            ("rules[7].clauses[0].op", "ends_with".to_owned()),
            ("rules[7].clauses[0].values", "@acme.com".to_owned()),
            ("rules[7].clauses[4].attribute", "name".to_owned()),
            ("rules[7].clauses[4].op", "matches".to_owned()),
            ("rules[7].clauses[4].values", regex.to_owned()),
            ("rules[7].serve", "on".to_owned()),
            ("fallthrough.serve", "*rollout".to_owned()),
            ("fallthrough.rollout.weight.on", on.to_owned()),
            ("fallthrough.rollout.weight.off", "75".to_owned()),
        ]
    };
    let send = |f: Vec<(&'static str, String)>| f;
    let body = send(fields("20", "^a"));
    let pairs: Vec<(&str, &str)> = body.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = agent.post(url, &pairs).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.body
            .contains("The weights add up to 95%; they must add up to 100%."),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("id=\"e-fallthrough.serve\""),
        "beside the fallthrough's fields"
    );
    assert!(page.body.contains("u-1\nu-2"), "what was typed is shown again");
    assert_eq!(
        served_state(&app, "shop", "staging", "new-checkout")["enabled"],
        false
    );

    // A regex the engine cannot compile: its error lands beside that clause.
    let body = fields("25", "(unclosed");
    let pairs: Vec<(&str, &str)> = body.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = agent.post(url, &pairs).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.body.contains("id=\"e-rules[0].clauses[1]\""),
        "beside the second clause: {}",
        page.body
    );

    let body = fields("25", "^a");
    let pairs: Vec<(&str, &str)> = body.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = agent.post(url, &pairs).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let served = served_state(&app, "shop", "staging", "new-checkout");
    assert_eq!(served["enabled"], true);
    assert_eq!(
        served["targets"],
        json!([{"variation": "on", "values": ["u-1", "u-2"]}])
    );
    assert_eq!(served["rules"][0]["id"], "internal");
    assert_eq!(
        served["rules"][0]["clauses"][0],
        json!({"attribute": "email", "op": "ends_with", "values": ["@acme.com"]})
    );
    assert_eq!(served["rules"][0]["serve"], json!({"variation": "on"}));
    assert_eq!(
        served["fallthrough"],
        json!({"rollout": {"variations": [{"variation": "on", "weight": 25000}, {"variation": "off", "weight": 75000}]}})
    );

    // The page shows it back, and a save from the old page (version 0) is refused as stale.
    let page = agent.get("/projects/shop/flags/new-checkout?env=staging").await;
    assert!(page.body.contains("value=\"internal\""));
    assert!(
        page.body.contains(
            "name=\"fallthrough.rollout.weight.on\" type=\"text\" inputmode=\"decimal\" value=\"25\""
        )
    );
    let pairs: Vec<(&str, &str)> = body.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = agent.post(url, &pairs).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("Someone else changed this environment"));
}

#[actix_web::test]
async fn the_definition_form_types_values_and_validates_json() {
    let app = TestApp::new();
    project(&app, "shop");
    let editor = user(&app, "ed@example.com", Role::Editor);
    let mut agent = Agent::signed_in(&app, &editor).await;
    let page = agent
        .post_with_csrf(
            "/projects/shop/configs",
            "/projects/shop/flags",
            &[
                ("key", "theme"),
                ("name", "Theme"),
                ("type", "json"),
                ("kind", "config"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let page = agent.get("/projects/shop/flags/theme").await;
    assert!(
        page.body.contains("data-json"),
        "JSON values are checked as typed"
    );
    let csrf = page.csrf();
    let bad = agent
        .post(
            "/projects/shop/flags/theme",
            &[
                ("csrf", &csrf),
                ("name", "Theme"),
                ("kind", "config"),
                ("type", "json"),
                ("variations[0].key", "dark"),
                ("variations[0].value", "{\"bg\": \"#000\""),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body.contains("id=\"variations[0].value-error\""),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("Not valid JSON"));

    let good = agent
        .post(
            "/projects/shop/flags/theme",
            &[
                ("csrf", &csrf),
                ("name", "Theme"),
                ("description", "Colours"),
                ("tags", "ui"),
                ("kind", "config"),
                ("type", "json"),
                ("variations[0].key", "dark"),
                ("variations[0].value", "{\"bg\": \"#000\"}"),
                ("variations[5].key", "light"),
                ("variations[5].value", "{\"bg\": \"#fff\"}"),
                ("variations[5].name", "Light"),
            ],
        )
        .await;
    assert_eq!(good.status, StatusCode::SEE_OTHER, "{}", good.body);
    let flag = app
        .state
        .store
        .read_blocking(|c| flagstaff::store::flags::get(c, "shop", "theme"))
        .unwrap();
    assert_eq!(flag.variations.len(), 2);
    assert_eq!(flag.variations[1].value, json!({"bg": "#fff"}));
    assert_eq!(flag.variations[1].name.as_deref(), Some("Light"));
    assert_eq!(flag.tags, vec!["ui"]);
    assert!(
        !flag.is_client_side() && !flag.is_temporary(),
        "a config's defaults are kept"
    );

    // A variation key the engine refuses: beside that key.
    let page = agent
        .post(
            "/projects/shop/flags/theme",
            &[
                ("csrf", &csrf),
                ("kind", "config"),
                ("type", "json"),
                ("variations[0].key", "bad key!"),
                ("variations[0].value", "1"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.body.contains("id=\"variations[0].key-error\""),
        "{}",
        page.body
    );
}
