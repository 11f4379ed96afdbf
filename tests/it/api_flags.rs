//! `/api/v1/projects/{project}/flags`, their per-environment state, and what a change does to
//! snapshots, revisions, the hub and the audit log.

use flagstaff::store::users::Role;
use flagstaff_eval::Context;
use serde_json::{Value, json};

use crate::api_common::{app, audit_rows, boolean_flag, dump, error_of, error_paths, import_shop, revision};
use crate::helpers::TestApp;

async fn project(app: &TestApp, token: &str) {
    let reply = app
        .call(
            "POST",
            "/api/v1/projects",
            Some(token),
            Some(json!({"key": "shop"})),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[actix_web::test]
async fn a_flag_is_created_read_listed_replaced_and_deleted() {
    let (app, admin) = app();
    let editor = app.token(Role::Editor);
    let viewer = app.token(Role::Viewer);
    project(&app, &admin).await;

    let mut body = boolean_flag("dark-mode");
    body["tags"] = json!(["ui"]);
    body["environments"] = json!({"production": {"enabled": true, "fallthrough": {"variation": "on"}}});
    let created = app
        .call("POST", "/api/v1/projects/shop/flags", Some(&editor), Some(body))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.header("location"),
        Some("/api/v1/projects/shop/flags/dark-mode")
    );
    let envs = &created.body["environments"];
    assert_eq!(envs["production"]["enabled"], true);
    assert_eq!(envs["production"]["version"], 1);
    assert_eq!(
        envs["development"],
        json!({"enabled": false, "prerequisites": [], "targets": [], "rules": [], "version": 0})
    );
    assert_eq!(envs["staging"]["version"], 0);

    let config = json!({
        "key": "timeout", "kind": "config", "type": "number",
        "variations": [{"key": "short", "value": 1.5}, {"key": "long", "value": 30}]
    });
    let created = app
        .call("POST", "/api/v1/projects/shop/flags", Some(&editor), Some(config))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);

    let got = app
        .call(
            "GET",
            "/api/v1/projects/shop/flags/dark-mode",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["tags"], json!(["ui"]));
    assert_eq!(got.body["environments"]["production"]["version"], 1);

    let all = app
        .call("GET", "/api/v1/projects/shop/flags", Some(&viewer), None)
        .await;
    let keys = |reply: &crate::helpers::Reply| -> Vec<String> {
        reply.body["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["key"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(keys(&all), ["dark-mode", "timeout"]);
    assert_eq!(all.body["flags"][0]["environments"]["production"]["version"], 1);
    let configs = app
        .call(
            "GET",
            "/api/v1/projects/shop/flags?kind=config",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(keys(&configs), ["timeout"]);
    let tagged = app
        .call("GET", "/api/v1/projects/shop/flags?tag=ui", Some(&viewer), None)
        .await;
    assert_eq!(keys(&tagged), ["dark-mode"]);
    let bad = app
        .call(
            "GET",
            "/api/v1/projects/shop/flags?kind=toggle",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!((bad.status.as_u16(), error_of(&bad.body).1), (400, Some("kind")));

    // A PUT of what GET returned, with a new name, keeps every state (the key may be left out).
    let mut put = got.body.clone();
    put["name"] = json!("Dark mode");
    put.as_object_mut().unwrap().remove("key");
    let replaced = app
        .call(
            "PUT",
            "/api/v1/projects/shop/flags/dark-mode",
            Some(&editor),
            Some(put.clone()),
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(replaced.body["name"], "Dark mode");
    assert_eq!(
        replaced.body["environments"]["production"]["version"], 1,
        "the state did not change"
    );
    let rows = audit_rows(&app);
    let again = app
        .call(
            "PUT",
            "/api/v1/projects/shop/flags/dark-mode",
            Some(&editor),
            Some(put),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(audit_rows(&app), rows, "a PUT of what is stored changes nothing");

    // A PUT naming a state replaces it and bumps its version.
    let mut put = boolean_flag("dark-mode");
    put["environments"] = json!({"staging": {"enabled": true}});
    let replaced = app
        .call(
            "PUT",
            "/api/v1/projects/shop/flags/dark-mode",
            Some(&editor),
            Some(put),
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(replaced.body["environments"]["staging"]["version"], 1);
    assert_eq!(replaced.body["environments"]["production"]["enabled"], true);

    let deleted = app
        .call(
            "DELETE",
            "/api/v1/projects/shop/flags/dark-mode",
            Some(&editor),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    let gone = app
        .call(
            "GET",
            "/api/v1/projects/shop/flags/dark-mode",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(gone.status, 404);
    let snapshot = app.state.snapshots.find("shop", "production").unwrap();
    assert!(
        snapshot.engine.flag("dark-mode").is_none(),
        "a deleted flag is no longer served"
    );
    assert!(snapshot.engine.flag("timeout").is_some());
}

#[actix_web::test]
async fn flag_mistakes_are_4xx_with_paths_and_change_nothing() {
    let (app, admin) = app();
    let viewer = app.token(Role::Viewer);
    project(&app, &admin).await;
    let ok = app
        .call(
            "POST",
            "/api/v1/projects/shop/flags",
            Some(&admin),
            Some(boolean_flag("a")),
        )
        .await;
    assert_eq!(ok.status, 201);
    let before = dump(&app);

    let flags = "/api/v1/projects/shop/flags";
    let no_type = json!({"key": "b", "variations": []});
    let unknown_field = json!({"key": "b", "type": "boolean", "variations": [], "colour": "red"});
    let bad_nested = json!({"key": "b", "type": "boolean", "variations": [{"key": "on"}]});
    let wrong_value = json!({"key": "b", "type": "boolean", "variations": [{"key": "on", "value": "yes"}]});
    let mut unknown_env = boolean_flag("b");
    unknown_env["environments"] = json!({"nope": {"enabled": true}});
    let mut bad_rule = boolean_flag("b");
    bad_rule["environments"] = json!({"production": {"rules": [
        {"clauses": [{"attribute": "email", "op": "nonsense", "values": ["x"]}], "serve": {"variation": "on"}}
    ]}});
    let cases = [
        (None, "POST", flags.to_owned(), Some(boolean_flag("b")), 401, None),
        (
            Some(&viewer),
            "POST",
            flags.to_owned(),
            Some(boolean_flag("b")),
            403,
            None,
        ),
        (Some(&viewer), "DELETE", format!("{flags}/a"), None, 403, None),
        (
            Some(&admin),
            "POST",
            flags.to_owned(),
            Some(no_type),
            400,
            Some("type"),
        ),
        (
            Some(&admin),
            "POST",
            flags.to_owned(),
            Some(unknown_field),
            400,
            Some("colour"),
        ),
        (
            Some(&admin),
            "POST",
            flags.to_owned(),
            Some(bad_nested),
            400,
            Some("variations[0].value"),
        ),
        (
            Some(&admin),
            "POST",
            flags.to_owned(),
            Some(bad_rule),
            400,
            Some("environments.production.rules[0].clauses[0].op"),
        ),
        (
            Some(&admin),
            "POST",
            flags.to_owned(),
            Some(wrong_value),
            422,
            Some("variations[0].value"),
        ),
        (
            Some(&admin),
            "POST",
            flags.to_owned(),
            Some(unknown_env),
            422,
            Some("environments.nope"),
        ),
        (
            Some(&admin),
            "POST",
            flags.to_owned(),
            Some(boolean_flag("bad key!")),
            422,
            Some("key"),
        ),
        (
            Some(&admin),
            "POST",
            flags.to_owned(),
            Some(boolean_flag("a")),
            409,
            None,
        ),
        (
            Some(&admin),
            "POST",
            "/api/v1/projects/nope/flags".to_owned(),
            Some(boolean_flag("b")),
            404,
            None,
        ),
        (Some(&admin), "GET", format!("{flags}/nope"), None, 404, None),
        (
            Some(&admin),
            "PUT",
            format!("{flags}/nope"),
            Some(boolean_flag("nope")),
            404,
            None,
        ),
        (
            Some(&admin),
            "PUT",
            format!("{flags}/a"),
            Some(boolean_flag("b")),
            400,
            Some("key"),
        ),
        (Some(&admin), "DELETE", format!("{flags}/nope"), None, 404, None),
    ];
    for (token, method, path, body, status, error_path) in cases {
        let reply = app
            .call(method, &path, token.map(String::as_str), body.clone())
            .await;
        assert_eq!(reply.status, status, "{method} {path} {body:?}: {}", reply.body);
        if error_path.is_some() {
            assert_eq!(
                error_of(&reply.body).1,
                error_path,
                "{method} {path} {body:?}: {}",
                reply.body
            );
        }
    }
    assert_eq!(dump(&app), before, "no rejected request changed anything");
}

#[actix_web::test]
async fn a_change_that_breaks_another_flag_is_refused_naming_it() {
    let (app, admin) = app();
    import_shop(&app, &admin).await;
    let before = dump(&app);

    // payments-v2 is new-checkout's prerequisite in production: it cannot go.
    let reply = app
        .call(
            "DELETE",
            "/api/v1/projects/shop/flags/payments-v2",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("new-checkout (production)"),
        "{}",
        reply.body
    );

    // Renaming its variation `on` would break that prerequisite: 422 naming the other flag.
    let renamed = json!({
        "key": "payments-v2", "type": "boolean",
        "variations": [{"key": "yes", "value": true}, {"key": "off", "value": false}]
    });
    let reply = app
        .call(
            "PUT",
            "/api/v1/projects/shop/flags/payments-v2",
            Some(&admin),
            Some(renamed),
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    let paths = error_paths(&reply.body);
    assert!(
        paths.contains(&"environments.production.fallthrough.variation".to_owned()),
        "{paths:?}"
    );
    assert!(
        paths.contains(
            &"flags[\"new-checkout\"].environments.production.prerequisites[0].variations[0]".to_owned()
        ),
        "{paths:?}"
    );

    // A prerequisite cycle is refused.
    let reply = app
        .call(
            "PATCH",
            "/api/v1/projects/shop/flags/payments-v2/environments/production",
            Some(&admin),
            Some(json!({"prerequisites": [{"flag": "new-checkout", "variations": ["on"]}]})),
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(dump(&app), before);
}

#[actix_web::test]
async fn a_state_patch_changes_what_it_names_and_honours_if_match() {
    let (app, admin) = app();
    let viewer = app.token(Role::Viewer);
    project(&app, &admin).await;
    app.call(
        "POST",
        "/api/v1/projects/shop/flags",
        Some(&admin),
        Some(boolean_flag("f")),
    )
    .await;
    let path = "/api/v1/projects/shop/flags/f/environments/production";

    let got = app.call("GET", path, Some(&viewer), None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["version"], 0);
    assert_eq!(got.header("etag"), Some("\"0\""));

    let on = app
        .call("PATCH", path, Some(&admin), Some(json!({"enabled": true})))
        .await;
    assert_eq!(on.status, 200, "{}", on.body);
    assert_eq!(on.body["enabled"], true);
    assert_eq!(on.body["version"], 1);
    assert_eq!(on.header("etag"), Some("\"1\""));

    let rules = json!({"rules": [{"id": "staff", "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@acme.com"]}], "serve": {"variation": "on"}}]});
    let reply = app
        .request("PATCH", path, Some(&admin), Some(rules), &[("If-Match", "\"1\"")])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["version"], 2);
    assert_eq!(reply.body["enabled"], true, "fields not sent are kept");
    assert_eq!(reply.body["rules"][0]["id"], "staff");

    let reply = app
        .request(
            "PATCH",
            path,
            Some(&admin),
            Some(json!({"fallthrough": {"variation": "on"}})),
            &[("If-Match", "2")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["version"], 3);
    let reply = app
        .call("PATCH", path, Some(&admin), Some(json!({"fallthrough": null})))
        .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.get("fallthrough").is_none(),
        "null resets to the default: {}",
        reply.body
    );
    assert_eq!(reply.body["version"], 4);

    // Sending what is stored changes nothing.
    let rows = audit_rows(&app);
    let rev = revision(&app, "shop", "production");
    let same = app
        .call("PATCH", path, Some(&admin), Some(json!({"enabled": true})))
        .await;
    assert_eq!(same.status, 200);
    assert_eq!(same.body["version"], 4);
    assert_eq!(
        (audit_rows(&app), revision(&app, "shop", "production")),
        (rows, rev)
    );

    let before = dump(&app);
    let stale = app
        .request(
            "PATCH",
            path,
            Some(&admin),
            Some(json!({"enabled": false})),
            &[("If-Match", "\"3\"")],
        )
        .await;
    assert_eq!(stale.status, 412, "{}", stale.body);
    assert_eq!(error_of(&stale.body).0, "precondition_failed");
    let cases = [
        (Some(&viewer), json!({"enabled": false}), vec![], 403, None),
        (None, json!({"enabled": false}), vec![], 401, None),
        (
            Some(&admin),
            json!({"enabled": false}),
            vec![("If-Match", "three")],
            400,
            Some("If-Match"),
        ),
        (
            Some(&admin),
            json!({"enable": false}),
            vec![],
            400,
            Some("enable"),
        ),
        (
            Some(&admin),
            json!({"enabled": "yes"}),
            vec![],
            400,
            Some("enabled"),
        ),
        (Some(&admin), json!([1]), vec![], 400, None),
        (
            Some(&admin),
            json!({"off_variation": "nope"}),
            vec![],
            422,
            Some("off_variation"),
        ),
        (
            Some(&admin),
            json!({"rules": [{"clauses": [{"attribute": "v", "op": "matches", "values": ["("]}], "serve": {"variation": "on"}}]}),
            vec![],
            422,
            Some("rules[0].clauses[0].values[0]"),
        ),
        (
            Some(&admin),
            json!({"fallthrough": {"rollout": {"variations": [{"variation": "on", "weight": 1}]}}}),
            vec![],
            422,
            None,
        ),
    ];
    for (token, body, headers, status, error_path) in cases {
        let reply = app
            .request(
                "PATCH",
                path,
                token.map(String::as_str),
                Some(body.clone()),
                &headers,
            )
            .await;
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
        if error_path.is_some() {
            assert_eq!(error_of(&reply.body).1, error_path, "{body}: {}", reply.body);
        }
    }
    for (path, status) in [
        ("/api/v1/projects/shop/flags/f/environments/nope", 404),
        ("/api/v1/projects/shop/flags/nope/environments/production", 404),
        ("/api/v1/projects/nope/flags/f/environments/production", 404),
    ] {
        let reply = app
            .call("PATCH", path, Some(&admin), Some(json!({"enabled": false})))
            .await;
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
    }
    assert_eq!(dump(&app), before, "no rejected patch changed anything");
}

#[actix_web::test]
async fn a_toggle_reaches_the_snapshot_the_engine_and_the_hub() {
    let (app, admin) = app();
    project(&app, &admin).await;
    app.call(
        "POST",
        "/api/v1/projects/shop/flags",
        Some(&admin),
        Some(boolean_flag("f")),
    )
    .await;
    let before = app.state.snapshots.find("shop", "production").unwrap();
    let staging_before = app.state.snapshots.find("shop", "staging").unwrap().revision;
    let mut ctx = Context::new();
    ctx.insert("targetingKey".into(), json!("u-1"));
    assert_eq!(before.engine.evaluate("f", &ctx).value, Some(&json!(false)));

    let mut changes = app.state.hub.subscribe();
    let body = json!({"enabled": true, "fallthrough": {"variation": "on"}});
    let reply = app
        .call(
            "PATCH",
            "/api/v1/projects/shop/flags/f/environments/production",
            Some(&admin),
            Some(body),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let after = app.state.snapshots.find("shop", "production").unwrap();
    assert_eq!(after.revision, before.revision + 1);
    assert_ne!(after.bundle, before.bundle);
    assert_ne!(after.etag, before.etag);
    assert_eq!(after.engine.evaluate("f", &ctx).value, Some(&json!(true)));
    assert_eq!(
        app.state.snapshots.find("shop", "staging").unwrap().revision,
        staging_before,
        "other environments keep theirs"
    );

    let change = tokio::time::timeout(std::time::Duration::from_secs(10), changes.recv())
        .await
        .expect("a change is published")
        .expect("the hub is open");
    assert_eq!(change.environment_id, after.environment_id);
    assert_eq!(change.revision, after.revision);
    assert_eq!(change.etag, after.etag);
    assert_eq!(&*change.flags, ["f".to_owned()]);
    assert_eq!(revision(&app, "shop", "production") as u64, after.revision);
}

#[actix_web::test]
async fn a_hundred_concurrent_toggles_are_all_applied() {
    let (app, admin) = app();
    project(&app, &admin).await;
    for i in 0..50 {
        let reply = app
            .call(
                "POST",
                "/api/v1/projects/shop/flags",
                Some(&admin),
                Some(boolean_flag(&format!("f{i}"))),
            )
            .await;
        assert_eq!(reply.status, 201);
    }
    let rows = audit_rows(&app);
    let rev = revision(&app, "shop", "production");

    // 50 toggles of 50 flags, and 50 changes of one flag's targets, all at once.
    let toggles = (0..50).map(|i| {
        let path = format!("/api/v1/projects/shop/flags/f{i}/environments/production");
        let app = &app;
        let admin = &admin;
        async move {
            app.call("PATCH", &path, Some(admin), Some(json!({"enabled": true})))
                .await
        }
    });
    let targets = (0..50).map(|i| {
        let app = &app;
        let admin = &admin;
        let body = json!({"targets": [{"variation": "on", "values": [format!("u-{i}")]}]});
        async move {
            app.call(
                "PATCH",
                "/api/v1/projects/shop/flags/f0/environments/staging",
                Some(admin),
                Some(body),
            )
            .await
        }
    });
    let (toggled, targeted) = futures_util::future::join(
        futures_util::future::join_all(toggles),
        futures_util::future::join_all(targets),
    )
    .await;
    for reply in toggled.iter().chain(&targeted) {
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let mut versions: Vec<u64> = targeted
        .iter()
        .map(|r| r.body["version"].as_u64().unwrap())
        .collect();
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=50).collect::<Vec<u64>>(),
        "each change of f0 got its own version"
    );

    assert_eq!(audit_rows(&app), rows + 100, "one audit row per change");
    assert_eq!(revision(&app, "shop", "production"), rev + 50);
    let snapshot = app.state.snapshots.find("shop", "production").unwrap();
    assert_eq!(snapshot.revision as i64, rev + 50);
    assert!(
        snapshot.engine.flags().all(flagstaff_eval::CompiledFlag::enabled),
        "every toggle is served"
    );
    let list = app
        .call("GET", "/api/v1/projects/shop/flags", Some(&admin), None)
        .await;
    for flag in list.body["flags"].as_array().unwrap() {
        assert_eq!(flag["environments"]["production"]["version"], 1, "{flag}");
    }
    assert_eq!(list.body["flags"][0]["environments"]["staging"]["version"], 50);
}

#[actix_web::test]
async fn data_survives_a_restart() {
    let (app, admin) = app();
    import_shop(&app, &admin).await;
    let reply = app
        .call(
            "PATCH",
            "/api/v1/projects/shop/flags/payments-v2/environments/development",
            Some(&admin),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(reply.status, 200);
    let flags: Value = app
        .call("GET", "/api/v1/projects/shop/flags", Some(&admin), None)
        .await
        .body;
    let bundle = app
        .state
        .snapshots
        .find("shop", "development")
        .unwrap()
        .bundle
        .clone();

    let app = app.restart();
    let again = app
        .call("GET", "/api/v1/projects/shop/flags", Some(&admin), None)
        .await;
    assert_eq!(again.body, flags);
    assert_eq!(
        app.state.snapshots.find("shop", "development").unwrap().bundle,
        bundle
    );
}
