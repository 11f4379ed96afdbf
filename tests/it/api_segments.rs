//! `/api/v1/projects/{project}/segments`.

use flagstaff::store::users::Role;
use flagstaff_eval::Context;
use serde_json::json;

use crate::api_common::{app, audit_rows, dump, error_of, import_shop, revision};

#[actix_web::test]
async fn a_segment_is_created_read_replaced_and_deleted() {
    let (app, admin) = app();
    let editor = app.token(Role::Editor);
    let viewer = app.token(Role::Viewer);
    app.call(
        "POST",
        "/api/v1/projects",
        Some(&admin),
        Some(json!({"key": "shop"})),
    )
    .await;
    let revisions = || ["development", "staging", "production"].map(|e| revision(&app, "shop", e));
    let start = revisions();

    let segment = json!({"key": "staff", "name": "Staff", "included": ["u-9"],
        "rules": [{"clauses": [{"attribute": "email", "op": "ends_with", "values": ["@acme.com"]}]}]});
    let created = app
        .call(
            "POST",
            "/api/v1/projects/shop/segments",
            Some(&editor),
            Some(segment),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.header("location"),
        Some("/api/v1/projects/shop/segments/staff")
    );
    assert_eq!(
        revisions(),
        start.map(|r| r + 1),
        "a segment changes every environment"
    );

    let list = app
        .call("GET", "/api/v1/projects/shop/segments", Some(&viewer), None)
        .await;
    assert_eq!(list.body["segments"][0]["key"], "staff");
    let got = app
        .call("GET", "/api/v1/projects/shop/segments/staff", Some(&viewer), None)
        .await;
    assert_eq!(got.body["included"], json!(["u-9"]));

    let replaced = app
        .call(
            "PUT",
            "/api/v1/projects/shop/segments/staff",
            Some(&editor),
            Some(json!({"name": "Staff", "excluded": ["u-9"]})),
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(replaced.body["key"], "staff");
    assert_eq!(replaced.body["excluded"], json!(["u-9"]));
    assert_eq!(replaced.body["rules"], json!([]));
    let rows = audit_rows(&app);
    let same = app
        .call(
            "PUT",
            "/api/v1/projects/shop/segments/staff",
            Some(&editor),
            Some(json!({"name": "Staff", "excluded": ["u-9"]})),
        )
        .await;
    assert_eq!(same.status, 200);
    assert_eq!(audit_rows(&app), rows, "a PUT of what is stored changes nothing");
    assert_eq!(revisions(), start.map(|r| r + 2));

    let deleted = app
        .call(
            "DELETE",
            "/api/v1/projects/shop/segments/staff",
            Some(&editor),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        app.call("GET", "/api/v1/projects/shop/segments/staff", Some(&viewer), None)
            .await
            .status,
        404
    );
    assert!(
        !app.state
            .snapshots
            .find("shop", "production")
            .unwrap()
            .engine
            .has_segment("staff")
    );
}

#[actix_web::test]
async fn a_segment_change_is_served_by_flags_using_it() {
    let (app, admin) = app();
    import_shop(&app, &admin).await;
    let mut ctx = Context::new();
    ctx.insert("targetingKey".into(), json!("u-77"));
    ctx.insert("email".into(), json!("x@acme.com"));
    let variant = |app: &crate::helpers::TestApp| {
        let snapshot = app.state.snapshots.find("shop", "production").unwrap();
        snapshot
            .engine
            .evaluate("new-checkout", &ctx)
            .reason
            .as_str()
            .to_owned()
    };
    // The flag's rule wants an @acme.com email and the segment `beta`.
    assert_eq!(
        variant(&app),
        "TARGETING_MATCH",
        "u-77 is in beta by the segment's rule"
    );
    let emptied = app
        .call(
            "PUT",
            "/api/v1/projects/shop/segments/beta",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(emptied.status, 200, "{}", emptied.body);
    assert_eq!(variant(&app), "SPLIT", "with beta empty, the rollout decides");
    let reply = app
        .call(
            "PUT",
            "/api/v1/projects/shop/segments/beta",
            Some(&admin),
            Some(json!({"included": ["u-77"]})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(variant(&app), "TARGETING_MATCH");
}

#[actix_web::test]
async fn segment_mistakes_are_4xx_and_change_nothing() {
    let (app, admin) = app();
    let viewer = app.token(Role::Viewer);
    import_shop(&app, &admin).await;
    let before = dump(&app);
    let segments = "/api/v1/projects/shop/segments";
    let bad_regex =
        json!({"key": "x", "rules": [{"clauses": [{"attribute": "a", "op": "matches", "values": ["("]}]}]});
    let in_segment = json!({"key": "x", "rules": [{"clauses": [{"op": "in_segment", "values": ["beta"]}]}]});
    let cases = [
        (
            None,
            "POST",
            segments.to_owned(),
            Some(json!({"key": "x"})),
            401,
            None,
        ),
        (
            Some(&viewer),
            "POST",
            segments.to_owned(),
            Some(json!({"key": "x"})),
            403,
            None,
        ),
        (
            Some(&viewer),
            "DELETE",
            format!("{segments}/beta"),
            None,
            403,
            None,
        ),
        (
            Some(&admin),
            "POST",
            segments.to_owned(),
            Some(json!({"key": "x", "included": "u-1"})),
            400,
            Some("included"),
        ),
        (
            Some(&admin),
            "POST",
            segments.to_owned(),
            Some(json!({"name": "x"})),
            400,
            Some("key"),
        ),
        (
            Some(&admin),
            "POST",
            segments.to_owned(),
            Some(json!({"key": "Not A Slug"})),
            422,
            Some("key"),
        ),
        (
            Some(&admin),
            "POST",
            segments.to_owned(),
            Some(bad_regex),
            422,
            Some("rules[0].clauses[0].values[0]"),
        ),
        (
            Some(&admin),
            "POST",
            segments.to_owned(),
            Some(in_segment),
            422,
            Some("rules[0].clauses[0].op"),
        ),
        (
            Some(&admin),
            "POST",
            segments.to_owned(),
            Some(json!({"key": "beta"})),
            409,
            None,
        ),
        (Some(&admin), "GET", format!("{segments}/nope"), None, 404, None),
        (
            Some(&admin),
            "PUT",
            format!("{segments}/nope"),
            Some(json!({"name": "n"})),
            404,
            None,
        ),
        (
            Some(&admin),
            "PUT",
            format!("{segments}/beta"),
            Some(json!({"key": "other"})),
            400,
            Some("key"),
        ),
        (
            Some(&admin),
            "DELETE",
            format!("{segments}/nope"),
            None,
            404,
            None,
        ),
        (
            Some(&admin),
            "GET",
            "/api/v1/projects/nope/segments".to_owned(),
            None,
            404,
            None,
        ),
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

    // `beta` is used by new-checkout's rule in production.
    let in_use = app
        .call("DELETE", &format!("{segments}/beta"), Some(&admin), None)
        .await;
    assert_eq!(in_use.status, 409, "{}", in_use.body);
    assert!(
        in_use.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("new-checkout (production)")
    );
    assert_eq!(dump(&app), before);
}
