//! SDK keys through `/api/v1`: create (shown once), list (never the secret), revoke (gone from
//! the in-memory lookup at once), admins only, audited without the secret.

use flagstaff::store::api_keys::KeyKind;
use flagstaff::store::audit::Actor;
use flagstaff::store::projects::{self, NewProject};
use flagstaff::store::users::Role;
use serde_json::{Value, json};

use crate::helpers::TestApp;

const KEYS: &str = "/api/v1/projects/shop/environments/production/keys";

/// An app with project `shop` (development, staging, production) and an admin token.
fn app_with_project() -> (TestApp, String) {
    let app = TestApp::new();
    app.state
        .write_blocking(|tx| {
            let new = NewProject {
                key: "shop".into(),
                name: "Shop".into(),
                environments: None,
            };
            projects::create(tx, &Actor::cli(), new)
        })
        .expect("create project");
    let admin = app.token(Role::Admin);
    (app, admin)
}

fn environment_id(app: &TestApp, env: &str) -> i64 {
    let env = env.to_owned();
    app.state
        .store
        .read_blocking(move |c| Ok(flagstaff::store::environments::get(c, "shop", &env)?.id))
        .unwrap()
}

fn audit_rows(app: &TestApp) -> Vec<(String, String, String)> {
    app.state
        .store
        .read_blocking(|c| {
            let mut stmt = c.prepare(
                "SELECT action, coalesce(before, ''), coalesce(after, '') FROM audit_log
                 WHERE entity_kind = 'api_key' ORDER BY id",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .unwrap()
}

#[actix_web::test]
async fn a_key_is_shown_once_listed_without_secret_and_revoked_at_once() {
    let (app, admin) = app_with_project();
    let created = app
        .call(
            "POST",
            KEYS,
            Some(&admin),
            Some(json!({"kind": "server", "name": "backend"})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let secret = created.body["key"]
        .as_str()
        .expect("the secret is in the answer")
        .to_owned();
    assert!(secret.starts_with("fs_srv_"), "{secret}");
    assert_eq!(created.body["kind"], "server");
    assert_eq!(created.body["name"], "backend");
    assert_eq!(created.body["prefix"].as_str(), Some(&secret[..12]));
    let id = created.body["id"].as_i64().unwrap();

    // The in-memory lookup knows the key at once, for the right environment and kind.
    let found = app.state.keys.find(&secret).expect("the new key is active");
    assert_eq!(
        (found.id, found.environment_id, found.kind),
        (id, environment_id(&app, "production"), KeyKind::Server)
    );

    let listed = app.call("GET", KEYS, Some(&admin), None).await;
    assert_eq!(listed.status, 200);
    let list = listed.body["keys"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["revoked_at"], Value::Null);
    assert_eq!(list[0]["last_used_at"], Value::Null);
    assert!(list[0]["created_at"].is_i64());
    assert!(
        list[0].get("key").is_none() && list[0].get("hash").is_none() && list[0].get("key_hash").is_none()
    );
    assert!(
        !String::from_utf8_lossy(&listed.bytes).contains(&secret[12..]),
        "the listing never holds the secret"
    );

    let revoked = app
        .call("DELETE", &format!("{KEYS}/{id}"), Some(&admin), None)
        .await;
    assert_eq!(revoked.status, 204, "{:?}", revoked.body);
    assert!(
        app.state.keys.find(&secret).is_none(),
        "a revoked key is refused at once"
    );
    assert!(!app.state.keys.is_active(id));

    let again = app
        .call("DELETE", &format!("{KEYS}/{id}"), Some(&admin), None)
        .await;
    assert_eq!(again.status, 404);
    assert_eq!(again.body["error"]["code"], "key_not_found");

    let listed = app.call("GET", KEYS, Some(&admin), None).await;
    assert!(listed.body["keys"][0]["revoked_at"].is_i64(), "{:?}", listed.body);

    // One audit row per change, never the secret.
    let rows = audit_rows(&app);
    assert_eq!(
        rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["create", "revoke"]
    );
    for (_, before, after) in &rows {
        assert!(
            !before.contains(&secret[12..]) && !after.contains(&secret[12..]),
            "{before} {after}"
        );
    }
}

#[actix_web::test]
async fn a_client_key_has_its_own_prefix_and_survives_a_restart() {
    let (app, admin) = app_with_project();
    let created = app
        .call(
            "POST",
            "/api/v1/projects/shop/environments/staging/keys",
            Some(&admin),
            Some(json!({"kind": "client", "name": "web"})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let secret = created.body["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("fs_cli_"), "{secret}");
    let app = app.restart();
    let found = app.state.keys.find(&secret).expect("keys are loaded at start");
    assert_eq!(
        (found.kind, found.environment_id),
        (KeyKind::Client, environment_id(&app, "staging"))
    );
}

#[actix_web::test]
async fn a_key_of_one_environment_cannot_be_revoked_through_another() {
    let (app, admin) = app_with_project();
    let created = app
        .call(
            "POST",
            KEYS,
            Some(&admin),
            Some(json!({"kind": "server", "name": "b"})),
        )
        .await;
    let id = created.body["id"].as_i64().unwrap();
    let secret = created.body["key"].as_str().unwrap().to_owned();
    let other = app
        .call(
            "DELETE",
            &format!("/api/v1/projects/shop/environments/staging/keys/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(other.status, 404);
    assert!(app.state.keys.find(&secret).is_some(), "the key is still active");
    let staging = app
        .call(
            "GET",
            "/api/v1/projects/shop/environments/staging/keys",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(staging.body, json!({"keys": []}));
}

#[actix_web::test]
async fn only_admins_manage_keys() {
    let (app, admin) = app_with_project();
    let created = app
        .call(
            "POST",
            KEYS,
            Some(&admin),
            Some(json!({"kind": "server", "name": "b"})),
        )
        .await;
    let id = created.body["id"].as_i64().unwrap();
    for role in [Role::Editor, Role::Viewer] {
        let token = app.token(role);
        let post = app
            .call(
                "POST",
                KEYS,
                Some(&token),
                Some(json!({"kind": "server", "name": "x"})),
            )
            .await;
        assert_eq!(post.status, 403, "{role:?} creating a key");
        assert_eq!(post.body["error"]["code"], "forbidden");
        assert_eq!(
            app.call("GET", KEYS, Some(&token), None).await.status,
            403,
            "{role:?} listing keys"
        );
        let delete = app
            .call("DELETE", &format!("{KEYS}/{id}"), Some(&token), None)
            .await;
        assert_eq!(delete.status, 403, "{role:?} revoking a key");
    }
    assert_eq!(app.call("GET", KEYS, None, None).await.status, 401);
    assert_eq!(
        app.call("GET", KEYS, Some("fs_adm_not-a-real-token"), None)
            .await
            .status,
        401
    );
    // Nothing changed: still exactly one active key.
    assert_eq!(
        app.call("GET", KEYS, Some(&admin), None).await.body["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(audit_rows(&app).len(), 1);
}

#[actix_web::test]
async fn bad_key_requests_name_the_field_and_change_nothing() {
    let (app, admin) = app_with_project();
    let cases = [
        (json!({"kind": "admin", "name": "x"}), "kind"),
        (json!({"name": "x"}), "kind"),
        (json!({"kind": "server"}), "name"),
        (json!({"kind": "server", "name": "   "}), "name"),
        (json!({"kind": "server", "name": "x".repeat(101)}), "name"),
    ];
    for (body, path) in cases {
        let reply = app.call("POST", KEYS, Some(&admin), Some(body.clone())).await;
        assert_eq!(reply.status, 400, "{body}: {:?}", reply.body);
        assert_eq!(reply.body["error"]["path"], path, "{body}: {:?}", reply.body);
    }
    let unknown_field = app
        .call(
            "POST",
            KEYS,
            Some(&admin),
            Some(json!({"kind": "server", "name": "x", "secret": "y"})),
        )
        .await;
    assert_eq!(unknown_field.status, 400, "{:?}", unknown_field.body);
    let not_json = app
        .request(
            "POST",
            KEYS,
            Some(&admin),
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(not_json.status, 400, "{:?}", not_json.body);
    assert_eq!(
        not_json.body["error"]["code"].as_str().map(|c| !c.is_empty()),
        Some(true)
    );

    let no_env = app
        .call(
            "POST",
            "/api/v1/projects/shop/environments/nope/keys",
            Some(&admin),
            Some(json!({"kind": "server", "name": "x"})),
        )
        .await;
    assert_eq!(no_env.status, 404);
    let no_project = app
        .call(
            "GET",
            "/api/v1/projects/nope/environments/production/keys",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(no_project.status, 404);
    assert_eq!(
        app.call("DELETE", &format!("{KEYS}/not-a-number"), Some(&admin), None)
            .await
            .status,
        404
    );
    assert_eq!(
        app.call("DELETE", &format!("{KEYS}/999"), Some(&admin), None)
            .await
            .status,
        404
    );

    assert_eq!(
        app.call("GET", KEYS, Some(&admin), None).await.body,
        json!({"keys": []})
    );
    assert!(audit_rows(&app).is_empty());
}
