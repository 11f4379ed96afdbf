//! `GET /api/v1/audit`, a flag's history, and restoring an earlier version.

use flagstaff::store::users::Role;
use serde_json::{Value, json};

use crate::api_common::{app, audit_rows, boolean_flag, dump, error_of};
use crate::helpers::TestApp;

fn ids(body: &Value) -> Vec<i64> {
    body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

async fn setup(app: &TestApp, admin: &str) {
    let reply = app
        .call(
            "POST",
            "/api/v1/projects",
            Some(admin),
            Some(json!({"key": "shop"})),
        )
        .await;
    assert_eq!(reply.status, 201);
    let reply = app
        .call(
            "POST",
            "/api/v1/projects/shop/flags",
            Some(admin),
            Some(boolean_flag("f")),
        )
        .await;
    assert_eq!(reply.status, 201);
}

#[actix_web::test]
async fn the_audit_log_says_who_changed_what_newest_first() {
    let (app, admin) = app();
    let viewer = app.token(Role::Viewer);
    setup(&app, &admin).await;
    let path = "/api/v1/projects/shop/flags/f/environments/production";
    app.call("PATCH", path, Some(&admin), Some(json!({"enabled": true})))
        .await;
    app.call(
        "POST",
        "/api/v1/projects",
        Some(&admin),
        Some(json!({"key": "other"})),
    )
    .await;

    let all = app.call("GET", "/api/v1/audit", Some(&viewer), None).await;
    assert_eq!(all.status, 200, "{}", all.body);
    let entries = all.body["entries"].as_array().unwrap();
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["entity_kind"].as_str().unwrap())
        .collect();
    // The token helper's user creation is not audited: these are the API's changes.
    assert_eq!(&kinds[..4], ["project", "flag_state", "flag", "project"]);
    let toggle = &entries[1];
    assert_eq!(toggle["actor"], "admin-0@example.test");
    assert_eq!(toggle["action"], "update");
    assert_eq!(toggle["project"], "shop");
    assert_eq!(toggle["environment"], "production");
    assert_eq!(toggle["entity_key"], "f");
    assert_eq!(toggle["before"]["enabled"], false);
    assert_eq!(toggle["after"]["enabled"], true);
    assert_eq!(toggle["after"]["version"], 1);
    assert!(toggle["at"].as_str().unwrap().ends_with('Z'));

    let filtered = app
        .call(
            "GET",
            "/api/v1/audit?project=shop&entity_kind=flag&entity_key=f",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(filtered.body["entries"].as_array().unwrap().len(), 1);
    assert_eq!(filtered.body["entries"][0]["action"], "create");

    // Pages: `limit`, then `before` = `next_before`.
    let first = app
        .call("GET", "/api/v1/audit?limit=2", Some(&viewer), None)
        .await;
    assert_eq!(ids(&first.body).len(), 2);
    let next = first.body["next_before"].as_i64().expect("a next page");
    let second = app
        .call(
            "GET",
            &format!("/api/v1/audit?limit=2&before={next}"),
            Some(&viewer),
            None,
        )
        .await;
    let all_ids = ids(&all.body);
    assert_eq!([ids(&first.body), ids(&second.body)].concat(), all_ids[..4]);

    for (query, path) in [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("before=-1", "before"),
        ("colour=red", "colour"),
    ] {
        let reply = app
            .call("GET", &format!("/api/v1/audit?{query}"), Some(&viewer), None)
            .await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        assert_eq!(error_of(&reply.body).1, Some(path));
    }
    assert_eq!(app.call("GET", "/api/v1/audit", None, None).await.status, 401);
}

#[actix_web::test]
async fn a_flag_has_a_history_and_an_earlier_version_can_be_restored() {
    let (app, admin) = app();
    let editor = app.token(Role::Editor);
    let viewer = app.token(Role::Viewer);
    setup(&app, &admin).await;
    let state = "/api/v1/projects/shop/flags/f/environments/production";
    let flag = "/api/v1/projects/shop/flags/f";
    let rules = json!({"enabled": true, "targets": [{"variation": "on", "values": ["u-1"]}]});
    assert_eq!(
        app.call("PATCH", state, Some(&editor), Some(rules)).await.status,
        200
    );
    let mut renamed = boolean_flag("f");
    renamed["name"] = json!("Renamed");
    renamed["tags"] = json!(["new"]);
    assert_eq!(
        app.call("PUT", flag, Some(&editor), Some(renamed)).await.status,
        200
    );
    assert_eq!(
        app.call(
            "PATCH",
            state,
            Some(&editor),
            Some(json!({"enabled": false, "targets": []}))
        )
        .await
        .status,
        200
    );

    let history = app
        .call("GET", &format!("{flag}/history"), Some(&viewer), None)
        .await;
    assert_eq!(history.status, 200, "{}", history.body);
    let entries = history.body["entries"].as_array().unwrap();
    let summary: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["entity_kind"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("flag_state", "update"),
        ("flag", "update"),
        ("flag_state", "update"),
        ("flag", "create"),
    ];
    assert_eq!(summary, expected.map(|(k, a)| (k.to_owned(), a.to_owned())));
    let created_id = entries[3]["id"].as_i64().unwrap();
    let first_patch_id = entries[2]["id"].as_i64().unwrap();
    let paged = app
        .call(
            "GET",
            &format!("{flag}/history?limit=1&before={}", entries[0]["id"]),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(ids(&paged.body), [entries[1]["id"].as_i64().unwrap()]);

    // Restore the state as it was after the first patch: targeted and on again.
    let reply = app
        .call(
            "POST",
            &format!("{flag}/restore"),
            Some(&editor),
            Some(json!({"audit_id": first_patch_id})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let production = &reply.body["environments"]["production"];
    assert_eq!(
        (
            production["enabled"].clone(),
            production["targets"][0]["values"].clone()
        ),
        (json!(true), json!(["u-1"]))
    );
    assert_eq!(production["version"], 3);
    assert_eq!(
        reply.body["name"], "Renamed",
        "a state restore keeps the definition"
    );
    let snapshot = app.state.snapshots.find("shop", "production").unwrap();
    assert!(snapshot.engine.flag("f").unwrap().enabled());

    // Restore the definition as created: the name goes back; the states it recorded too.
    let reply = app
        .call(
            "POST",
            &format!("{flag}/restore"),
            Some(&editor),
            Some(json!({"audit_id": created_id})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["name"], "f");
    assert_eq!(reply.body["tags"], json!([]));
    assert_eq!(reply.body["environments"]["production"]["enabled"], false);
    assert_eq!(reply.body["environments"]["production"]["version"], 4);

    let history = app
        .call("GET", &format!("{flag}/history"), Some(&viewer), None)
        .await;
    let latest: Vec<&str> = history.body["entries"].as_array().unwrap()[..2]
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(latest, ["restore", "restore"], "restores are audited");

    // Restoring the current version again changes nothing.
    let rows = audit_rows(&app);
    let reply = app
        .call(
            "POST",
            &format!("{flag}/restore"),
            Some(&editor),
            Some(json!({"audit_id": created_id})),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(audit_rows(&app), rows);
}

#[actix_web::test]
async fn a_deleted_flag_can_be_restored_from_its_history() {
    let (app, admin) = app();
    setup(&app, &admin).await;
    let flag = "/api/v1/projects/shop/flags/f";
    app.call(
        "PATCH",
        &format!("{flag}/environments/staging"),
        Some(&admin),
        Some(json!({"enabled": true})),
    )
    .await;
    let before_delete = app.call("GET", flag, Some(&admin), None).await.body;
    assert_eq!(app.call("DELETE", flag, Some(&admin), None).await.status, 204);

    let history = app
        .call("GET", &format!("{flag}/history"), Some(&admin), None)
        .await;
    assert_eq!(history.status, 200, "the history outlives the flag");
    let entries = history.body["entries"].as_array().unwrap();
    assert_eq!(entries[0]["action"], "delete");
    let delete_id = entries[0]["id"].as_i64().unwrap();
    let reply = app
        .call(
            "POST",
            &format!("{flag}/restore"),
            Some(&admin),
            Some(json!({"audit_id": delete_id})),
        )
        .await;
    assert_eq!(
        reply.status, 422,
        "nothing to restore after a delete: {}",
        reply.body
    );

    // The create entry's `after` is the flag as created; the state patch recorded staging.
    let created = entries.iter().find(|e| e["action"] == "create").unwrap()["id"]
        .as_i64()
        .unwrap();
    let reply = app
        .call(
            "POST",
            &format!("{flag}/restore"),
            Some(&admin),
            Some(json!({"audit_id": created})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let patched = entries.iter().find(|e| e["entity_kind"] == "flag_state").unwrap()["id"]
        .as_i64()
        .unwrap();
    let reply = app
        .call(
            "POST",
            &format!("{flag}/restore"),
            Some(&admin),
            Some(json!({"audit_id": patched})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["name"], before_delete["name"]);
    assert_eq!(reply.body["environments"]["staging"]["enabled"], true);
    assert!(
        app.state
            .snapshots
            .find("shop", "staging")
            .unwrap()
            .engine
            .flag("f")
            .unwrap()
            .enabled()
    );
}

#[actix_web::test]
async fn restore_mistakes_are_4xx_and_change_nothing() {
    let (app, admin) = app();
    let viewer = app.token(Role::Viewer);
    setup(&app, &admin).await;
    app.call(
        "POST",
        "/api/v1/projects/shop/flags",
        Some(&admin),
        Some(boolean_flag("g")),
    )
    .await;
    let g_created = app
        .call("GET", "/api/v1/audit?entity_key=g", Some(&admin), None)
        .await
        .body["entries"][0]["id"]
        .as_i64()
        .unwrap();
    let project_created = app
        .call("GET", "/api/v1/audit?entity_kind=project", Some(&admin), None)
        .await
        .body["entries"][0]["id"]
        .as_i64()
        .unwrap();
    let before = dump(&app);
    let restore = "/api/v1/projects/shop/flags/f/restore";
    let cases = [
        (Some(&viewer), restore, json!({"audit_id": g_created}), 403, None),
        (None, restore, json!({"audit_id": g_created}), 401, None),
        (Some(&admin), restore, json!({"audit_id": 999_999}), 404, None),
        (
            Some(&admin),
            restore,
            json!({"audit_id": "one"}),
            400,
            Some("audit_id"),
        ),
        (Some(&admin), restore, json!({}), 400, Some("audit_id")),
        (
            Some(&admin),
            restore,
            json!({"audit_id": g_created}),
            422,
            Some("audit_id"),
        ),
        (
            Some(&admin),
            restore,
            json!({"audit_id": project_created}),
            422,
            Some("audit_id"),
        ),
        (
            Some(&admin),
            "/api/v1/projects/nope/flags/f/restore",
            json!({"audit_id": g_created}),
            404,
            None,
        ),
    ];
    for (token, path, body, status, error_path) in cases {
        let reply = app
            .call("POST", path, token.map(String::as_str), Some(body.clone()))
            .await;
        assert_eq!(reply.status, status, "{path} {body}: {}", reply.body);
        if error_path.is_some() {
            assert_eq!(error_of(&reply.body).1, error_path, "{body}: {}", reply.body);
        }
    }
    assert_eq!(
        app.call(
            "GET",
            "/api/v1/projects/shop/flags/nope/history",
            Some(&admin),
            None
        )
        .await
        .status,
        404
    );
    assert_eq!(dump(&app), before);
}
