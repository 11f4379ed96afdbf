//! `/api/v1/projects` and `/api/v1/projects/{project}/environments`.

use flagstaff::store::users::Role;
use serde_json::json;

use crate::api_common::{app, audit_rows, dump, error_of, error_paths};

#[actix_web::test]
async fn a_new_project_gets_three_environments_and_can_be_renamed_and_deleted() {
    let (app, admin) = app();
    let reply = app
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"key": "shop", "name": "Shop"})),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.header("location"), Some("/api/v1/projects/shop"));
    let envs: Vec<&str> = reply.body["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(envs, ["development", "staging", "production"]);
    assert_eq!(reply.body["environments"][2]["name"], "Production");
    for env in envs {
        let snapshot = app
            .state
            .snapshots
            .find("shop", env)
            .expect("a snapshot for each new environment");
        assert!(snapshot.revision >= 1);
    }

    let list = app.call("GET", "/api/v1/projects", Some(&admin), None).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["projects"][0]["key"], "shop");

    let renamed = app
        .call(
            "PUT",
            "/api/v1/projects/shop",
            Some(&admin),
            Some(json!({"name": "The Shop"})),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(renamed.body["name"], "The Shop");
    let bundle = app
        .state
        .snapshots
        .find("shop", "production")
        .unwrap()
        .bundle
        .clone();
    assert!(
        String::from_utf8_lossy(&bundle).contains("The Shop"),
        "the bundle carries the new name"
    );
    let got = app.call("GET", "/api/v1/projects/shop", Some(&admin), None).await;
    assert_eq!(got.body["name"], "The Shop");

    let deleted = app
        .call("DELETE", "/api/v1/projects/shop", Some(&admin), None)
        .await;
    assert_eq!(deleted.status, 204);
    assert!(app.state.snapshots.find("shop", "production").is_none());
    let gone = app.call("GET", "/api/v1/projects/shop", Some(&admin), None).await;
    assert_eq!(gone.status, 404);
    assert_eq!(error_of(&gone.body).0, "project_not_found");
    // create, update, delete
    assert_eq!(audit_rows(&app), 3);
}

#[actix_web::test]
async fn a_project_may_list_its_environments() {
    let (app, admin) = app();
    let body = json!({"key": "p", "name": "P", "environments": [{"key": "live", "name": "Live"}]});
    let reply = app
        .call("POST", "/api/v1/projects", Some(&admin), Some(body))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(
        reply.body["environments"],
        json!([{"key": "live", "name": "Live", "revision": 1, "requires_confirmation": false}])
    );
}

#[actix_web::test]
async fn project_mistakes_are_4xx_and_change_nothing() {
    let (app, admin) = app();
    let editor = app.token(Role::Editor);
    let viewer = app.token(Role::Viewer);
    let ok = app
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"key": "shop"})),
        )
        .await;
    assert_eq!(ok.status, 201);
    let before = dump(&app);

    let cases = [
        (
            None,
            "POST",
            "/api/v1/projects",
            Some(json!({"key": "x"})),
            401,
            "unauthorized",
            None,
        ),
        (
            Some(&editor),
            "POST",
            "/api/v1/projects",
            Some(json!({"key": "x"})),
            403,
            "forbidden",
            None,
        ),
        (
            Some(&viewer),
            "DELETE",
            "/api/v1/projects/shop",
            None,
            403,
            "forbidden",
            None,
        ),
        (
            Some(&editor),
            "PUT",
            "/api/v1/projects/shop",
            Some(json!({"name": "n"})),
            403,
            "forbidden",
            None,
        ),
        (
            Some(&admin),
            "POST",
            "/api/v1/projects",
            Some(json!({"key": 5})),
            400,
            "bad_request",
            Some("key"),
        ),
        (
            Some(&admin),
            "POST",
            "/api/v1/projects",
            Some(json!({"name": "no key"})),
            400,
            "bad_request",
            Some("key"),
        ),
        (
            Some(&admin),
            "POST",
            "/api/v1/projects",
            Some(json!({"key": "x", "colour": 1})),
            400,
            "bad_request",
            Some("colour"),
        ),
        (
            Some(&admin),
            "POST",
            "/api/v1/projects",
            Some(json!({"key": "Bad Key"})),
            422,
            "invalid",
            Some("key"),
        ),
        (
            Some(&admin),
            "POST",
            "/api/v1/projects",
            Some(json!({"key": "x", "environments": [{"key": "a"}, {"key": "a"}]})),
            422,
            "invalid",
            Some("environments[1].key"),
        ),
        (
            Some(&admin),
            "POST",
            "/api/v1/projects",
            Some(json!({"key": "shop"})),
            409,
            "conflict",
            None,
        ),
        (
            Some(&admin),
            "GET",
            "/api/v1/projects/nope",
            None,
            404,
            "project_not_found",
            None,
        ),
        (
            Some(&admin),
            "PUT",
            "/api/v1/projects/nope",
            Some(json!({"name": "n"})),
            404,
            "project_not_found",
            None,
        ),
        (
            Some(&admin),
            "DELETE",
            "/api/v1/projects/nope",
            None,
            404,
            "project_not_found",
            None,
        ),
        (
            Some(&admin),
            "PUT",
            "/api/v1/projects/shop",
            Some(json!({"key": "other", "name": "n"})),
            400,
            "bad_request",
            Some("key"),
        ),
        (
            Some(&admin),
            "GET",
            "/api/v1/no-such-thing",
            None,
            404,
            "not_found",
            None,
        ),
        (
            Some(&admin),
            "DELETE",
            "/api/v1/projects",
            None,
            405,
            "method_not_allowed",
            None,
        ),
    ];
    for (token, method, path, body, status, code, error_path) in cases {
        let reply = app
            .call(method, path, token.map(String::as_str), body.clone())
            .await;
        assert_eq!(reply.status, status, "{method} {path} {body:?}: {}", reply.body);
        let (got_code, got_path) = error_of(&reply.body);
        assert_eq!(got_code, code, "{method} {path} {body:?}: {}", reply.body);
        if error_path.is_some() {
            assert_eq!(got_path, error_path, "{method} {path} {body:?}: {}", reply.body);
        }
    }

    // Broken JSON is a 400 too.
    let broken = app
        .request(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(broken.status, 400);
    assert_eq!(dump(&app), before, "no rejected request changed anything");
}

#[actix_web::test]
async fn invalid_projects_list_every_error() {
    let (app, admin) = app();
    let body = json!({"key": "-x", "environments": [{"key": "UP"}, {"key": "ok"}, {"key": "ok"}]});
    let reply = app
        .call("POST", "/api/v1/projects", Some(&admin), Some(body))
        .await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(
        error_paths(&reply.body),
        ["key", "environments[0].key", "environments[2].key"]
    );
}

#[actix_web::test]
async fn environments_are_created_renamed_and_deleted_by_admins() {
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

    let created = app
        .call(
            "POST",
            "/api/v1/projects/shop/environments",
            Some(&admin),
            Some(json!({"key": "qa", "name": "QA"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.header("location"),
        Some("/api/v1/projects/shop/environments/qa")
    );
    assert_eq!(created.body["key"], "qa");
    let snapshot = app
        .state
        .snapshots
        .find("shop", "qa")
        .expect("the new environment is served");
    assert_eq!(snapshot.revision, 1);

    let list = app
        .call("GET", "/api/v1/projects/shop/environments", Some(&viewer), None)
        .await;
    assert_eq!(list.status, 200);
    let keys: Vec<&str> = list.body["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["development", "staging", "production", "qa"]);
    let one = app
        .call(
            "GET",
            "/api/v1/projects/shop/environments/qa",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(one.body["name"], "QA");

    let renamed = app
        .call(
            "PUT",
            "/api/v1/projects/shop/environments/qa",
            Some(&admin),
            Some(json!({"name": "Quality"})),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(renamed.body["name"], "Quality");

    let before = dump(&app);
    let cases = [
        (
            &editor,
            "POST",
            "/api/v1/projects/shop/environments",
            Some(json!({"key": "x"})),
            403,
        ),
        (
            &editor,
            "PUT",
            "/api/v1/projects/shop/environments/qa",
            Some(json!({"name": "x"})),
            403,
        ),
        (
            &editor,
            "DELETE",
            "/api/v1/projects/shop/environments/qa",
            None,
            403,
        ),
        (
            &viewer,
            "DELETE",
            "/api/v1/projects/shop/environments/qa",
            None,
            403,
        ),
        (
            &admin,
            "POST",
            "/api/v1/projects/shop/environments",
            Some(json!({"key": "qa"})),
            409,
        ),
        (
            &admin,
            "POST",
            "/api/v1/projects/shop/environments",
            Some(json!({"key": "Q A"})),
            422,
        ),
        (
            &admin,
            "POST",
            "/api/v1/projects/shop/environments",
            Some(json!({"name": "no key"})),
            400,
        ),
        (
            &admin,
            "POST",
            "/api/v1/projects/nope/environments",
            Some(json!({"key": "x"})),
            404,
        ),
        (
            &admin,
            "GET",
            "/api/v1/projects/shop/environments/nope",
            None,
            404,
        ),
        (
            &admin,
            "DELETE",
            "/api/v1/projects/shop/environments/nope",
            None,
            404,
        ),
        (
            &admin,
            "PUT",
            "/api/v1/projects/shop/environments/qa",
            Some(json!({"key": "zz", "name": "x"})),
            400,
        ),
    ];
    for (token, method, path, body, status) in cases {
        let reply = app.call(method, path, Some(token), body.clone()).await;
        assert_eq!(reply.status, status, "{method} {path} {body:?}: {}", reply.body);
    }
    let invalid = app
        .call(
            "POST",
            "/api/v1/projects/shop/environments",
            Some(&admin),
            Some(json!({"key": "Q A"})),
        )
        .await;
    assert_eq!(error_of(&invalid.body).1, Some("key"));
    assert_eq!(dump(&app), before);

    let deleted = app
        .call(
            "DELETE",
            "/api/v1/projects/shop/environments/qa",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert!(app.state.snapshots.find("shop", "qa").is_none());
    let gone = app
        .call("GET", "/api/v1/projects/shop/environments/qa", Some(&admin), None)
        .await;
    assert_eq!(gone.status, 404);
}

/// Every 404 of the management API says what was missing in its code (docs/api.md lists them),
/// and its message names the thing as the caller wrote it; an unknown endpoint stays
/// `not_found`. Nothing is stored by a refused call.
#[actix_web::test]
async fn each_missing_thing_has_its_own_code() {
    let (app, admin) = app();
    crate::api_common::import_shop(&app, &admin).await;
    let before = dump(&app);
    // A key that is no flag, segment or environment of the project: comma, quote, tab,
    // unicode and markup, percent-encoded in the URL.
    let hostile = "a,\"b\"\t<script>é";
    let enc = percent_encoding::utf8_percent_encode(hostile, percent_encoding::NON_ALPHANUMERIC).to_string();
    let p = "/api/v1/projects/shop";
    let cases: Vec<(&str, String, Option<serde_json::Value>, &str)> = vec![
        (
            "GET",
            format!("/api/v1/projects/{enc}"),
            None,
            "project_not_found",
        ),
        (
            "GET",
            format!("/api/v1/projects/{enc}/flags"),
            None,
            "project_not_found",
        ),
        (
            "GET",
            format!("{p}/environments/{enc}"),
            None,
            "environment_not_found",
        ),
        (
            "PATCH",
            format!("{p}/flags/new-checkout/environments/{enc}"),
            Some(json!({"enabled": true})),
            "environment_not_found",
        ),
        ("GET", format!("{p}/flags/{enc}"), None, "flag_not_found"),
        (
            "PATCH",
            format!("{p}/flags/{enc}/environments/production"),
            Some(json!({"enabled": true})),
            "flag_not_found",
        ),
        ("GET", format!("{p}/segments/{enc}"), None, "segment_not_found"),
        ("DELETE", format!("{p}/segments/{enc}"), None, "segment_not_found"),
        (
            "DELETE",
            format!("{p}/flags/new-checkout/environments/production/schedules/999"),
            None,
            "schedule_not_found",
        ),
        (
            "DELETE",
            format!("{p}/environments/production/keys/999"),
            None,
            "key_not_found",
        ),
        (
            "DELETE",
            format!("{p}/environments/production/keys/{enc}"),
            None,
            "key_not_found",
        ),
        ("DELETE", format!("{p}/keys/999"), None, "relay_key_not_found"),
        ("DELETE", "/api/v1/tokens/999".to_owned(), None, "token_not_found"),
        ("GET", "/api/v1/users/999".to_owned(), None, "user_not_found"),
        ("GET", format!("/api/v1/users/{enc}"), None, "user_not_found"),
        ("GET", format!("{p}/webhooks/999"), None, "webhook_not_found"),
        (
            "POST",
            format!("{p}/flags/new-checkout/restore"),
            Some(json!({"audit_id": 999_999})),
            "audit_entry_not_found",
        ),
        ("GET", format!("/api/v1/{enc}"), None, "not_found"),
    ];
    for (method, path, body, code) in cases {
        let reply = app.call(method, &path, Some(&admin), body).await;
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.body);
        let (got, message) = (
            error_of(&reply.body).0,
            reply.body["error"]["message"].as_str().unwrap_or(""),
        );
        assert_eq!(got, code, "{method} {path}: {}", reply.body);
        assert!(message.ends_with("not found"), "{method} {path}: {message}");
        if path.contains(&enc) && code != "key_not_found" && code != "user_not_found" && code != "not_found" {
            assert!(
                message.contains(&format!("{hostile:?}")),
                "{method} {path}: the message names {hostile:?}: {message}"
            );
        }
    }
    assert_eq!(dump(&app), before, "a refused call changes nothing");
}
