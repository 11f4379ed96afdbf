//! `POST /api/v1/import` and `GET /api/v1/projects/{project}/export`.

use flagstaff::store::users::Role;
use flagstaff_eval::model::Document;
use serde_json::{Value, json};

use crate::api_common::{app, audit_rows, dump, error_of, error_paths, import_shop, revision, shop};
use crate::helpers::TestApp;

async fn export(app: &TestApp, token: &str, project: &str) -> Vec<u8> {
    let reply = app
        .call(
            "GET",
            &format!("/api/v1/projects/{project}/export"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    reply.bytes
}

/// Imports raw bytes (not re-serialised by the test).
async fn import_bytes(app: &TestApp, token: &str, bytes: &[u8]) -> crate::helpers::Reply {
    let body: Value = serde_json::from_slice(bytes).expect("an export is JSON");
    app.call("POST", "/api/v1/import", Some(token), Some(body)).await
}

#[actix_web::test]
async fn an_import_creates_the_project_and_exports_back() {
    let (app, admin) = app();
    let reply = app
        .call("POST", "/api/v1/import", Some(&admin), Some(shop()))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["project"], "shop");
    assert_eq!(reply.body["created"], true);
    let changed: Vec<String> = reply.body["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {} {}",
                c["action"].as_str().unwrap(),
                c["kind"].as_str().unwrap(),
                c["key"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        changed,
        [
            "create project shop",
            "create environment development",
            "create environment production",
            "create segment beta",
            "create flag new-checkout",
            "create flag payments-v2",
            "create flag checkout.color",
        ]
    );

    let flag = app
        .call(
            "GET",
            "/api/v1/projects/shop/flags/new-checkout",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        flag.body["environments"]["production"]["rules"][0]["id"],
        "internal"
    );
    assert_eq!(flag.body["environments"]["production"]["version"], 1);
    assert_eq!(flag.body["environments"]["development"]["version"], 0);
    let snapshot = app
        .state
        .snapshots
        .find("shop", "production")
        .expect("served at once");
    assert_eq!(snapshot.engine.len(), 3);

    // The export is the document: the same parts, canonically ordered.
    let exported: Document = serde_json::from_slice(&export(&app, &admin, "shop").await).unwrap();
    let mut expected: Document = serde_json::from_value(shop()).unwrap();
    expected.flags.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(exported, expected);
}

#[actix_web::test]
async fn import_is_idempotent_and_export_import_export_is_byte_identical() {
    let (app, admin) = app();
    import_shop(&app, &admin).await;
    let first = export(&app, &admin, "shop").await;
    let (rows, before) = (audit_rows(&app), dump(&app));
    let revisions = (
        revision(&app, "shop", "development"),
        revision(&app, "shop", "production"),
    );

    let again = app
        .call("POST", "/api/v1/import", Some(&admin), Some(shop()))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["created"], false);
    assert_eq!(again.body["changed"], json!([]));
    let reply = import_bytes(&app, &admin, &first).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["changed"], json!([]));
    assert_eq!(
        dump(&app),
        before,
        "importing the same document again changes nothing"
    );
    assert_eq!(audit_rows(&app), rows);
    assert_eq!(
        (
            revision(&app, "shop", "development"),
            revision(&app, "shop", "production")
        ),
        revisions
    );
    assert_eq!(export(&app, &admin, "shop").await, first);

    // Into another server, too.
    let (other, other_admin) = crate::api_common::app();
    let reply = import_bytes(&other, &other_admin, &first).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(export(&other, &other_admin, "shop").await, first);
}

#[actix_web::test]
async fn an_import_updates_only_what_changed() {
    let (app, admin) = app();
    import_shop(&app, &admin).await;
    // Something the document does not name stays.
    let extra = crate::api_common::boolean_flag("extra");
    assert_eq!(
        app.call("POST", "/api/v1/projects/shop/flags", Some(&admin), Some(extra))
            .await
            .status,
        201
    );
    let rows = audit_rows(&app);
    let revisions = (
        revision(&app, "shop", "development"),
        revision(&app, "shop", "production"),
    );

    let mut doc = shop();
    doc["flags"][1]["environments"]["production"]["enabled"] = json!(false);
    doc["environments"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "qa", "name": "QA"}));
    let reply = app.call("POST", "/api/v1/import", Some(&admin), Some(doc)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body["changed"],
        json!([{"kind": "environment", "key": "qa", "action": "create"}, {"kind": "flag", "key": "payments-v2", "action": "update"}])
    );
    assert_eq!(audit_rows(&app), rows + 2);
    assert_eq!(
        (
            revision(&app, "shop", "development"),
            revision(&app, "shop", "production")
        ),
        (revisions.0 + 1, revisions.1 + 1)
    );
    let state = app
        .call(
            "GET",
            "/api/v1/projects/shop/flags/payments-v2/environments/production",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (state.body["enabled"].clone(), state.body["version"].clone()),
        (json!(false), json!(2))
    );
    assert_eq!(
        app.call("GET", "/api/v1/projects/shop/flags/extra", Some(&admin), None)
            .await
            .status,
        200
    );
    assert!(app.state.snapshots.find("shop", "qa").is_some());
}

#[actix_web::test]
async fn an_invalid_import_lists_every_error_and_changes_nothing() {
    let (app, admin) = app();
    import_shop(&app, &admin).await;
    let before = dump(&app);

    let mut doc = shop();
    doc["project"]["name"] = json!("Renamed");
    doc["flags"][0]["environments"]["production"]["rules"][0]["clauses"][1]["values"] =
        json!(["no-such-segment"]);
    doc["flags"][1]["variations"][0]["value"] = json!("not a boolean");
    doc["flags"][2]["environments"]["development"]["fallthrough"] = json!({"variation": "red"});
    doc["segments"][0]["key"] = json!("Beta!");
    let reply = app.call("POST", "/api/v1/import", Some(&admin), Some(doc)).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    let paths = error_paths(&reply.body);
    for path in [
        "segments[0].key",
        "flags[0].environments.production.rules[0].clauses[1].values[0]",
        "flags[1].variations[0].value",
        "flags[2].environments.development.fallthrough.variation",
    ] {
        assert!(paths.contains(&path.to_owned()), "{path} in {paths:?}");
    }
    assert_eq!(dump(&app), before, "a rejected import changes nothing");

    // A document that is not one: 400 with the path of the first bad field.
    let mut doc = shop();
    doc["flags"][0]["environments"]["production"]["rules"][0]["clauses"][1]["op"] = json!("nonsense");
    let reply = app.call("POST", "/api/v1/import", Some(&admin), Some(doc)).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(
        error_of(&reply.body).1,
        Some("flags[0].environments.production.rules[0].clauses[1].op")
    );
    let mut doc = shop();
    doc["flags"][1].as_object_mut().unwrap().remove("type");
    let reply = app.call("POST", "/api/v1/import", Some(&admin), Some(doc)).await;
    assert_eq!(
        (reply.status.as_u16(), error_of(&reply.body).1),
        (400, Some("flags[1].type"))
    );
    let broken = app
        .request(
            "POST",
            "/api/v1/import",
            Some(&admin),
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(broken.status, 400);
    assert_eq!(dump(&app), before);
}

#[actix_web::test]
async fn editors_import_into_existing_projects_and_viewers_export() {
    let (app, admin) = app();
    let editor = app.token(Role::Editor);
    let viewer = app.token(Role::Viewer);

    let reply = app
        .call("POST", "/api/v1/import", Some(&editor), Some(shop()))
        .await;
    assert_eq!(
        reply.status, 403,
        "creating a project needs an admin: {}",
        reply.body
    );
    import_shop(&app, &admin).await;

    let mut doc = shop();
    doc["flags"][0]["tags"] = json!(["checkout", "q3"]);
    let reply = app
        .call("POST", "/api/v1/import", Some(&editor), Some(doc.clone()))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    doc["environments"][0]["name"] = json!("Dev");
    let reply = app
        .call("POST", "/api/v1/import", Some(&editor), Some(doc.clone()))
        .await;
    assert_eq!(
        reply.status, 403,
        "renaming an environment needs an admin: {}",
        reply.body
    );
    assert_eq!(
        app.call("POST", "/api/v1/import", Some(&viewer), Some(doc))
            .await
            .status,
        403
    );
    assert_eq!(
        app.call("POST", "/api/v1/import", None, Some(shop()))
            .await
            .status,
        401
    );

    assert!(!export(&app, &viewer, "shop").await.is_empty());
    assert_eq!(
        app.call("GET", "/api/v1/projects/nope/export", Some(&viewer), None)
            .await
            .status,
        404
    );
    assert_eq!(
        app.call("GET", "/api/v1/projects/shop/export", None, None)
            .await
            .status,
        401
    );
}
