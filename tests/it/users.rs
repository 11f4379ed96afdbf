//! Users and admin tokens through `/api/v1`: admins manage users; everyone manages their own
//! tokens; roles are enforced.

use flagstaff::store::users::Role;
use serde_json::{Value, json};

use crate::helpers::TestApp;

fn password_hash(app: &TestApp, email: &str) -> String {
    let email = email.to_owned();
    app.state
        .store
        .read_blocking(move |c| {
            Ok(
                c.query_row("SELECT password_hash FROM users WHERE email = ?1", [email], |r| {
                    r.get(0)
                })?,
            )
        })
        .unwrap()
}

fn audit_count(app: &TestApp, kind: &str) -> i64 {
    let kind = kind.to_owned();
    app.state
        .store
        .read_blocking(move |c| {
            Ok(c.query_row(
                "SELECT count(*) FROM audit_log WHERE entity_kind = ?1",
                [kind],
                |r| r.get(0),
            )?)
        })
        .unwrap()
}

#[actix_web::test]
async fn an_admin_creates_a_user_with_a_temporary_password() {
    let app = TestApp::new();
    let admin = app.token(Role::Admin);
    let body = json!({"email": "Ann@Example.com", "role": "editor", "password": "temporary password 1"});
    let created = app
        .call("POST", "/api/v1/users", Some(&admin), Some(body.clone()))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["email"], "Ann@example.com");
    assert_eq!(created.body["role"], "editor");
    assert_eq!(created.body["disabled"], false);
    assert_eq!(created.body["must_change_password"], true);
    assert!(created.body.get("password_hash").is_none() && created.body.get("password").is_none());
    let hash = password_hash(&app, "ann@example.com");
    assert!(
        flagstaff::password::verify("temporary password 1", &hash),
        "the password is stored as an argon2 hash"
    );
    assert!(
        !created.bytes.windows(9).any(|w| w == b"temporary"),
        "the answer never holds the password"
    );

    let again = app.call("POST", "/api/v1/users", Some(&admin), Some(body)).await;
    assert_eq!(
        again.status, 409,
        "emails are unique, ignoring case: {:?}",
        again.body
    );

    let list = app.call("GET", "/api/v1/users", Some(&admin), None).await;
    assert_eq!(list.status, 200);
    let emails: Vec<&str> = list.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert!(
        emails.contains(&"Ann@example.com") && emails.len() == 2,
        "{emails:?}"
    );
    let id = created.body["id"].as_i64().unwrap();
    let one = app
        .call("GET", &format!("/api/v1/users/{id}"), Some(&admin), None)
        .await;
    assert_eq!(one.body["email"], "Ann@example.com");
    assert_eq!(audit_count(&app, "user"), 1);
}

#[actix_web::test]
async fn bad_user_input_names_the_field_and_creates_nothing() {
    let app = TestApp::new();
    let admin = app.token(Role::Admin);
    let cases = [
        (
            json!({"email": "not-an-email", "role": "viewer", "password": "long enough password"}),
            "email",
        ),
        (
            json!({"role": "viewer", "password": "long enough password"}),
            "email",
        ),
        (
            json!({"email": "a@example.com", "role": "owner", "password": "long enough password"}),
            "role",
        ),
        (
            json!({"email": "a@example.com", "password": "long enough password"}),
            "role",
        ),
        (
            json!({"email": "a@example.com", "role": "viewer", "password": "short"}),
            "password",
        ),
        (json!({"email": "a@example.com", "role": "viewer"}), "password"),
    ];
    for (body, path) in cases {
        let reply = app
            .call("POST", "/api/v1/users", Some(&admin), Some(body.clone()))
            .await;
        assert_eq!(reply.status, 400, "{body}: {:?}", reply.body);
        assert_eq!(reply.body["error"]["path"], path, "{body}: {:?}", reply.body);
    }
    let list = app.call("GET", "/api/v1/users", Some(&admin), None).await;
    assert_eq!(
        list.body["users"].as_array().unwrap().len(),
        1,
        "only the admin exists"
    );
    assert_eq!(audit_count(&app, "user"), 0);
}

#[actix_web::test]
async fn editors_and_viewers_cannot_manage_users() {
    let app = TestApp::new();
    let admin = app.token(Role::Admin);
    let admin_id = app.call("GET", "/api/v1/users", Some(&admin), None).await.body["users"][0]["id"]
        .as_i64()
        .unwrap();
    for role in [Role::Editor, Role::Viewer] {
        let token = app.token(role);
        assert_eq!(
            app.call("GET", "/api/v1/users", Some(&token), None).await.status,
            403,
            "{role:?}"
        );
        let body = json!({"email": "x@example.com", "role": "admin", "password": "long enough password"});
        let post = app.call("POST", "/api/v1/users", Some(&token), Some(body)).await;
        assert_eq!(post.status, 403, "{role:?}");
        assert_eq!(post.body["error"]["code"], "forbidden");
        let patch = app
            .call(
                "PATCH",
                &format!("/api/v1/users/{admin_id}"),
                Some(&token),
                Some(json!({"disabled": true})),
            )
            .await;
        assert_eq!(patch.status, 403, "{role:?}");
    }
    let users = app.call("GET", "/api/v1/users", Some(&admin), None).await.body;
    assert!(
        users["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["disabled"] == false && u["email"] != "x@example.com")
    );
}

#[actix_web::test]
async fn a_disabled_user_s_tokens_stop_working_and_roles_change_at_once() {
    let app = TestApp::new();
    let admin = app.token(Role::Admin);
    let viewer = app.token(Role::Viewer);
    let me = app.call("GET", "/api/v1/tokens", Some(&viewer), None).await;
    assert_eq!(me.status, 200);
    let users = app.call("GET", "/api/v1/users", Some(&admin), None).await.body;
    let viewer_id = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["role"] == "viewer")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/v1/users/{viewer_id}");

    let promoted = app
        .call("PATCH", &path, Some(&admin), Some(json!({"role": "admin"})))
        .await;
    assert_eq!(promoted.status, 200, "{:?}", promoted.body);
    assert_eq!(promoted.body["role"], "admin");
    assert_eq!(
        app.call("GET", "/api/v1/users", Some(&viewer), None).await.status,
        200,
        "the token has the new role"
    );

    let disabled = app
        .call("PATCH", &path, Some(&admin), Some(json!({"disabled": true})))
        .await;
    assert_eq!(disabled.body["disabled"], true);
    assert_eq!(
        app.call("GET", "/api/v1/tokens", Some(&viewer), None)
            .await
            .status,
        401
    );

    let bad = app
        .call("PATCH", &path, Some(&admin), Some(json!({"role": "root"})))
        .await;
    assert_eq!(
        (bad.status.as_u16(), bad.body["error"]["path"].clone()),
        (400, json!("role"))
    );
    assert_eq!(
        app.call("PATCH", &path, Some(&admin), Some(json!({})))
            .await
            .status,
        400
    );
    assert_eq!(
        app.call(
            "PATCH",
            "/api/v1/users/9999",
            Some(&admin),
            Some(json!({"disabled": true}))
        )
        .await
        .status,
        404
    );
    assert_eq!(audit_count(&app, "user"), 2);
}

#[actix_web::test]
async fn the_last_admin_cannot_be_demoted_or_disabled() {
    let app = TestApp::new();
    let admin = app.token(Role::Admin);
    let id = app.call("GET", "/api/v1/users", Some(&admin), None).await.body["users"][0]["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/v1/users/{id}");
    for change in [json!({"role": "editor"}), json!({"disabled": true})] {
        let reply = app.call("PATCH", &path, Some(&admin), Some(change.clone())).await;
        assert_eq!(reply.status, 409, "{change}: {:?}", reply.body);
    }
    let me = app.call("GET", &path, Some(&admin), None).await;
    assert_eq!(
        (me.body["role"].clone(), me.body["disabled"].clone()),
        (json!("admin"), json!(false))
    );
    assert_eq!(
        audit_count(&app, "user"),
        0,
        "a refused change leaves no audit row"
    );
}

#[actix_web::test]
async fn everyone_manages_their_own_tokens_only() {
    let app = TestApp::new();
    let viewer = app.token(Role::Viewer);
    let editor = app.token(Role::Editor);

    let created = app
        .call(
            "POST",
            "/api/v1/tokens",
            Some(&viewer),
            Some(json!({"name": "laptop"})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let token = created.body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("fs_adm_"));
    assert_eq!(created.body["prefix"].as_str(), Some(&token[..12]));
    let id = created.body["id"].as_i64().unwrap();

    let mine = app.call("GET", "/api/v1/tokens", Some(&token), None).await;
    assert_eq!(mine.status, 200, "the new token authenticates");
    let names: Vec<&str> = mine.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["laptop", "tests"]);
    assert!(
        mine.body["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("token").is_none())
    );
    let theirs = app.call("GET", "/api/v1/tokens", Some(&editor), None).await;
    assert_eq!(
        theirs.body["tokens"].as_array().unwrap().len(),
        1,
        "the editor sees only their own token"
    );

    let stolen = app
        .call("DELETE", &format!("/api/v1/tokens/{id}"), Some(&editor), None)
        .await;
    assert_eq!(stolen.status, 404, "another user's token is not found");
    assert_eq!(
        app.call("GET", "/api/v1/tokens", Some(&token), None).await.status,
        200
    );

    let revoked = app
        .call("DELETE", &format!("/api/v1/tokens/{id}"), Some(&viewer), None)
        .await;
    assert_eq!(revoked.status, 204);
    assert_eq!(
        app.call("GET", "/api/v1/tokens", Some(&token), None).await.status,
        401
    );
    assert_eq!(
        app.call("DELETE", &format!("/api/v1/tokens/{id}"), Some(&viewer), None)
            .await
            .status,
        404
    );
    let listed = app.call("GET", "/api/v1/tokens", Some(&viewer), None).await.body;
    assert!(
        listed["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id && t["revoked_at"].is_i64())
    );

    let bad = app
        .call("POST", "/api/v1/tokens", Some(&viewer), Some(json!({"name": ""})))
        .await;
    assert_eq!(
        (bad.status.as_u16(), bad.body["error"]["path"].clone()),
        (400, json!("name"))
    );
    assert_eq!(audit_count(&app, "admin_token"), 2);
}

#[actix_web::test]
async fn a_viewer_cannot_write() {
    let app = TestApp::new();
    let viewer = app.token(Role::Viewer);
    let attempts: [(&str, &str, Value); 3] = [
        ("POST", "/api/v1/projects", json!({"key": "shop", "name": "Shop"})),
        (
            "POST",
            "/api/v1/users",
            json!({"email": "a@example.com", "role": "admin", "password": "long enough password"}),
        ),
        (
            "POST",
            "/api/v1/projects/shop/environments/production/keys",
            json!({"kind": "server", "name": "x"}),
        ),
    ];
    for (method, path, body) in attempts {
        let reply = app.call(method, path, Some(&viewer), Some(body)).await;
        assert_eq!(reply.status, 403, "{method} {path}: {:?}", reply.body);
    }
    let admin = app.token(Role::Admin);
    assert_eq!(
        app.call("GET", "/api/v1/projects", Some(&admin), None).await.body,
        json!({"projects": []})
    );
}

/// A token's last use is recorded (at the next flush of usage) and shown in the list; a token
/// never used shows none.
#[actix_web::test]
async fn a_tokens_last_use_is_recorded() {
    let app = TestApp::new();
    let viewer = app.token(Role::Viewer);
    let created = app
        .call(
            "POST",
            "/api/v1/tokens",
            Some(&viewer),
            Some(json!({"name": "ci"})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let ci = created.body["token"].as_str().unwrap().to_owned();
    let before = flagstaff::store::now_ms();
    flagstaff::events::flush(&app.state).await.expect("flush");

    let listed = app.call("GET", "/api/v1/tokens", Some(&viewer), None).await;
    let last_used = |body: &Value, name: &str| {
        body["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {body}"))["last_used_at"]
            .clone()
    };
    assert_eq!(last_used(&listed.body, "ci"), Value::Null, "not used yet");

    let reply = app.call("GET", "/api/v1/projects", Some(&ci), None).await;
    assert_eq!(reply.status, 200);
    let flushed = flagstaff::events::flush(&app.state).await.expect("flush");
    assert!(flushed.tokens >= 1, "{flushed:?}");
    let listed = app.call("GET", "/api/v1/tokens", Some(&viewer), None).await;
    let at = last_used(&listed.body, "ci").as_i64().expect("a time");
    assert!(at >= before && at <= flagstaff::store::now_ms(), "{at} {before}");
}
