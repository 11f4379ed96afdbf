//! Keys, users, segments, the audit log with restore, insights and backup, without a browser.

use actix_web::http::StatusCode;
use flagstaff::store::users::Role;
use flagstaff::store::{Changes, usage};
use serde_json::json;

use super::{Agent, PASSWORD, project, user};
use crate::helpers::TestApp;

#[actix_web::test]
async fn an_admin_creates_a_key_sees_it_once_and_revokes_it() {
    let app = TestApp::new();
    project(&app, "shop");
    let admin = user(&app, "admin@example.com", Role::Admin);
    let editor = user(&app, "ed@example.com", Role::Editor);
    let mut agent = Agent::signed_in(&app, &admin).await;
    let page = agent
        .post_with_csrf(
            "/projects/shop/keys",
            "/projects/shop/keys",
            &[
                ("environment", "production"),
                ("kind", "server"),
                ("name", "checkout-service"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::CREATED, "{}", page.body);
    let start = page.body.find("id=\"new-secret\">").expect("the secret is shown") + 16;
    let secret = page.body[start..start + page.body[start..].find('<').unwrap()].to_owned();
    assert!(secret.starts_with("fs_srv_"), "{secret}");
    assert!(
        page.body.contains("data-copy=\"new-secret\""),
        "with a copy button"
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let key = app.state.keys.find(&secret).expect("the key works at once");

    let list = agent.get("/projects/shop/keys").await;
    assert!(!list.body.contains(&secret), "never shown again");
    assert!(list.body.contains(&secret[..12]), "its start is");
    assert!(list.body.contains("checkout-service"));

    let mut ed = Agent::signed_in(&app, &editor).await;
    assert_eq!(ed.get("/projects/shop/keys").await.status, StatusCode::FORBIDDEN);
    let forged = ed
        .post_with_csrf(
            "/projects/shop/flags",
            &format!("/projects/shop/keys/production/{}/revoke", key.id),
            &[],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let empty_name = agent
        .post_with_csrf(
            "/projects/shop/keys",
            "/projects/shop/keys",
            &[("environment", "production"), ("kind", "client"), ("name", "")],
        )
        .await;
    assert_eq!(empty_name.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty_name.body.contains("id=\"name-error\""));

    let page = agent
        .post_with_csrf(
            "/projects/shop/keys",
            &format!("/projects/shop/keys/production/{}/revoke", key.id),
            &[],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(app.state.keys.find(&secret).is_none(), "revoked at once");
    assert!(agent.get("/projects/shop/keys").await.body.contains("revoked"));
}

#[actix_web::test]
async fn an_admin_invites_changes_the_role_of_and_disables_users() {
    let app = TestApp::new();
    let admin = user(&app, "admin@example.com", Role::Admin);
    let mut agent = Agent::signed_in(&app, &admin).await;
    let temporary = "temporary password 1";
    let page = agent
        .post_with_csrf(
            "/users",
            "/users",
            &[
                ("email", "new@example.com"),
                ("role", "editor"),
                ("password", temporary),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let bad = agent
        .post_with_csrf(
            "/users",
            "/users",
            &[("email", "nope"), ("role", "editor"), ("password", "short")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("id=\"email-error\"") && bad.body.contains("id=\"password-error\""));

    // The new user must choose a password first.
    let mut newcomer = Agent::new(&app);
    assert_eq!(
        newcomer.sign_in("new@example.com", temporary).await.location(),
        "/account?reason=temporary"
    );
    assert_eq!(newcomer.get("/projects").await.status, StatusCode::SEE_OTHER);
    let page = newcomer
        .post_with_csrf(
            "/account",
            "/account/password",
            &[
                ("current", temporary),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(newcomer.get("/projects").await.status, StatusCode::OK);
    assert_eq!(
        newcomer.get("/users").await.status,
        StatusCode::FORBIDDEN,
        "an editor manages no users"
    );

    let id = app
        .state
        .store
        .read_blocking(|c| {
            Ok(flagstaff::store::users::by_email(c, "new@example.com")?
                .unwrap()
                .id)
        })
        .unwrap();
    let page = agent
        .post_with_csrf("/users", &format!("/users/{id}"), &[("role", "viewer")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let list = newcomer.get("/projects").await;
    assert!(list.body.contains("title=\"viewer\""), "the role applies at once");
    let page = agent
        .post_with_csrf("/users", &format!("/users/{id}"), &[("disabled", "true")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        newcomer.get("/projects").await.status,
        StatusCode::SEE_OTHER,
        "signed out"
    );
    assert!(agent.get("/users").await.body.contains("disabled"));

    // The last admin cannot demote themselves.
    let me = app
        .state
        .store
        .read_blocking(|c| {
            Ok(flagstaff::store::users::by_email(c, "admin@example.com")?
                .unwrap()
                .id)
        })
        .unwrap();
    let page = agent
        .post_with_csrf("/users", &format!("/users/{me}"), &[("role", "editor")])
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(page.body.contains("no enabled admin"));
    assert_eq!(agent.get("/users").await.status, StatusCode::OK, "still admin");
}

#[actix_web::test]
async fn the_audit_log_shows_diffs_and_restores_a_version() {
    let app = TestApp::new();
    project(&app, "shop");
    let editor = user(&app, "ed@example.com", Role::Editor);
    let viewer = user(&app, "vi@example.com", Role::Viewer);
    let mut agent = Agent::signed_in(&app, &editor).await;
    let page = agent
        .post_with_csrf(
            "/projects/shop/flags",
            "/projects/shop/flags",
            &[("key", "beta"), ("name", "Beta"), ("type", "boolean")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let csrf = agent.get("/projects/shop/flags").await.csrf();
    for enabled in ["true", "false"] {
        let page = agent
            .post(
                "/projects/shop/flags/beta/environments/development/toggle",
                &[("csrf", &csrf), ("enabled", enabled)],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
    }
    let history = agent.get("/audit?project=shop&flag=beta").await;
    assert_eq!(history.status, StatusCode::OK);
    assert!(
        history
            .body
            .contains("<code>enabled</code>: <del>false</del> → <ins>true</ins>"),
        "{}",
        history.body
    );
    assert!(history.body.contains("flag beta in development"));
    assert!(history.body.contains("ed@example.com"));

    // Restore the version after the first toggle (on).
    let id: i64 = app
        .state
        .store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT id FROM audit_log WHERE entity_kind = 'flag_state' ORDER BY id LIMIT 1",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    let mut vi = Agent::signed_in(&app, &viewer).await;
    let vi_history = vi.get("/audit?project=shop&flag=beta").await;
    assert!(
        !vi_history.body.contains("Restore this version"),
        "viewers cannot restore"
    );
    assert_eq!(
        vi.post_with_csrf("/audit", &format!("/audit/{id}/restore"), &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    let page = agent
        .post_with_csrf("/audit", &format!("/audit/{id}/restore"), &[])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(
        page.location(),
        "/projects/shop/flags/beta?env=development&notice=restored"
    );
    let state = app
        .state
        .store
        .read_blocking(|c| flagstaff::store::flags::state(c, "shop", "beta", "development"))
        .unwrap();
    assert!(state.enabled, "restored to on");
    let global = agent.get("/audit").await;
    assert!(global.body.contains("restore"));
}

#[actix_web::test]
async fn segments_are_edited_with_the_clause_builder_and_used_by_flags() {
    let app = TestApp::new();
    project(&app, "shop");
    let editor = user(&app, "ed@example.com", Role::Editor);
    let mut agent = Agent::signed_in(&app, &editor).await;
    let page = agent
        .post_with_csrf(
            "/projects/shop/segments",
            "/projects/shop/segments",
            &[("key", "beta-testers"), ("name", "Beta testers")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let url = "/projects/shop/segments/beta-testers";
    let page = agent
        .post_with_csrf(
            url,
            url,
            &[
                ("name", "Beta testers"),
                ("included", "u-1\nu-2"),
                ("excluded", "u-3"),
                ("rules[0].clauses[0].attribute", "email"),
                ("rules[0].clauses[0].op", "ends_with"),
                ("rules[0].clauses[0].values", "@acme.com"),
                ("rules[0].clauses[1].attribute", "age"),
                ("rules[0].clauses[1].op", "gte"),
                ("rules[0].clauses[1].values", "eighteen"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.body.contains("id=\"e-rules[0].clauses[1]\""),
        "{}",
        page.body
    );
    let page = agent
        .post_with_csrf(
            url,
            url,
            &[
                ("name", "Beta testers"),
                ("included", "u-1\nu-2"),
                ("excluded", "u-3"),
                ("rules[0].clauses[0].attribute", "email"),
                ("rules[0].clauses[0].op", "ends_with"),
                ("rules[0].clauses[0].values", "@acme.com"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let segment = app
        .state
        .store
        .read_blocking(|c| flagstaff::store::segments::get(c, "shop", "beta-testers"))
        .unwrap();
    assert_eq!(segment.included, vec!["u-1", "u-2"]);
    assert_eq!(segment.rules[0].clauses[0].values, vec![json!("@acme.com")]);
    let list = agent.get("/projects/shop/segments").await;
    assert!(list.body.contains("Beta testers"));
    let bundle = app.state.snapshots.find("shop", "production").unwrap();
    assert!(
        String::from_utf8_lossy(&bundle.bundle).contains("beta-testers"),
        "served at once"
    );
}

#[actix_web::test]
async fn insights_draw_evaluations_per_variation_and_list_stale_flags() {
    let app = TestApp::new();
    project(&app, "shop");
    let viewer = user(&app, "vi@example.com", Role::Viewer);
    let editor = user(&app, "ed@example.com", Role::Editor);
    let mut ed = Agent::signed_in(&app, &editor).await;
    for key in ["checkout", "old-banner"] {
        let page = ed
            .post_with_csrf(
                "/projects/shop/flags",
                "/projects/shop/flags",
                &[("key", key), ("type", "boolean")],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
    }
    let env_id = app
        .state
        .snapshots
        .find("shop", "production")
        .unwrap()
        .environment_id;
    let hour = flagstaff::store::now_ms() / 1000 / 3600 * 3600;
    let counts = vec![
        usage::HourlyCount {
            environment_id: env_id,
            flag_key: "checkout".into(),
            variant: "on".into(),
            hour,
            count: 1234,
        },
        usage::HourlyCount {
            environment_id: env_id,
            flag_key: "checkout".into(),
            variant: "off".into(),
            hour: hour - 3600,
            count: 321,
        },
    ];
    let now = flagstaff::store::now_ms();
    app.state
        .store
        .operational_blocking(move |tx| {
            usage::add_counts(tx, &counts)?;
            usage::mark_evaluated(tx, &[(env_id, "checkout".to_owned(), now)])
        })
        .unwrap();
    app.state
        .write_blocking(move |tx| {
            // "old-banner" was created 90 days ago and never evaluated.
            tx.execute(
                "UPDATE flags SET created_at = ?1 WHERE key = 'old-banner'",
                [now - 90 * 86_400_000],
            )?;
            Ok(((), Changes::default()))
        })
        .unwrap();
    let mut vi = Agent::signed_in(&app, &viewer).await;
    let page = vi
        .get("/projects/shop/flags/checkout/insights?env=production&range=24h")
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<svg class=\"chart\""));
    assert!(
        page.body.contains("<strong>1555</strong> evaluations"),
        "{}",
        page.body
    );
    assert!(page.body.contains("on: 1234") && page.body.contains("off: 321"));
    assert!(page.body.contains("Production: just now"));
    for range in ["7d", "30d"] {
        let page = vi
            .get(&format!(
                "/projects/shop/flags/checkout/insights?env=production&range={range}"
            ))
            .await;
        assert!(page.body.contains("<strong>1555</strong>"), "{range}");
    }
    let overview = vi.get("/projects/shop/insights").await;
    assert!(
        overview.body.contains("old-banner") && overview.body.contains("never evaluated"),
        "{}",
        overview.body
    );
    let stale_section = &overview.body
        [overview.body.find("Stale flags").unwrap()..overview.body.find("Evaluations in the last").unwrap()];
    assert!(
        !stale_section.contains("/flags/checkout\""),
        "evaluated just now: not stale"
    );
    let list = vi.get("/projects/shop/flags?stale=1").await;
    assert!(list.body.contains("old-banner") && !list.body.contains("data-flag=\"checkout\""));
}

#[actix_web::test]
async fn an_admin_downloads_a_consistent_backup() {
    let app = TestApp::new();
    project(&app, "shop");
    let admin = user(&app, "admin@example.com", Role::Admin);
    let editor = user(&app, "ed@example.com", Role::Editor);
    let mut agent = Agent::signed_in(&app, &admin).await;
    let page = agent.get("/backup").await;
    assert_eq!(page.status, StatusCode::OK);
    let page = agent.post_with_csrf("/backup", "/backup", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.header("content-disposition")
            .unwrap()
            .starts_with("attachment; filename=\"flagstaff-")
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("copy.db");
    let bytes = download_bytes(&app, &mut agent).await;
    std::fs::write(&file, &bytes).unwrap();
    let conn = rusqlite::Connection::open(&file).unwrap();
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let projects: i64 = conn
        .query_row("SELECT count(*) FROM projects WHERE key = 'shop'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(projects, 1);

    let mut ed = Agent::signed_in(&app, &editor).await;
    assert_eq!(ed.get("/backup").await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        ed.post_with_csrf("/projects", "/backup", &[]).await.status,
        StatusCode::FORBIDDEN
    );
}

/// The backup's bytes, exactly.
async fn download_bytes(app: &TestApp, agent: &mut Agent<'_>) -> Vec<u8> {
    let csrf = agent.get("/backup").await.csrf();
    let service = actix_web::test::init_service(flagstaff::build_app(app.state.clone())).await;
    let cookie = agent
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let req = actix_web::test::TestRequest::post()
        .uri("/backup")
        .insert_header(("cookie", cookie))
        .insert_header(("content-type", "application/x-www-form-urlencoded"))
        .set_payload(format!("csrf={csrf}"))
        .to_request();
    let resp = actix_web::test::call_service(&service, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    actix_web::test::read_body(resp).await.to_vec()
}
