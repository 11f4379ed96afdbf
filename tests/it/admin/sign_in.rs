//! Signing in and out, sessions, the setup link, password changes, throttling, CSRF, Origin and
//! the security headers.

use actix_web::http::StatusCode;
use flagstaff::store::users::Role;

use super::{Agent, PASSWORD, user};
use crate::helpers::TestApp;

fn session_cookie_header(page: &super::Page) -> String {
    page.headers
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("flagstaff_session="))
        .unwrap_or_else(|| panic!("no session cookie in {:?}", page.headers))
        .to_owned()
}

#[actix_web::test]
async fn signing_in_sets_an_httponly_lax_session_cookie_and_opens_the_pages() {
    let app = TestApp::new();
    let email = user(&app, "ann@example.com", Role::Admin);
    let mut agent = Agent::new(&app);

    let before = agent.get("/projects").await;
    assert_eq!(before.status, StatusCode::SEE_OTHER);
    assert_eq!(before.location(), "/sign-in?next=%2Fprojects");

    let page = agent.sign_in(&email, PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), "/projects");
    let cookie = session_cookie_header(&page);
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP without the setting: {cookie}"
    );

    let projects = agent.get("/projects").await;
    assert_eq!(projects.status, StatusCode::OK, "{}", projects.body);
    assert!(projects.body.contains("ann@example.com"));

    // Only a hash of the cookie's token is in the database.
    let token = agent.cookies["flagstaff_session"].clone();
    let stored: Vec<Vec<u8>> = app
        .state
        .store
        .read_blocking(|c| {
            let mut s = c.prepare("SELECT token_hash FROM sessions")?;
            Ok(s.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], token.as_bytes());
    assert_eq!(stored[0], flagstaff::keys::hash(&token).to_vec());
}

/// Signs in with `headers` on both the page and the form.
async fn sign_in_with(agent: &mut Agent<'_>, email: &str, headers: &[(&str, &str)]) -> super::Page {
    let page = agent.send("GET", "/sign-in", None, headers).await;
    let csrf = page.csrf();
    let body =
        serde_urlencoded::to_string([("csrf", csrf.as_str()), ("email", email), ("password", PASSWORD)])
            .unwrap();
    let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    agent.send("POST", "/sign-in", Some(body), &all).await
}

#[actix_web::test]
async fn the_cookie_is_secure_over_https_from_a_trusted_proxy_or_when_configured() {
    let app = TestApp::with_settings(|s| s.serve.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()]);
    let email = user(&app, "ann@example.com", Role::Admin);
    let https = [("x-forwarded-proto", "https")];

    let mut proxied = Agent::new(&app);
    proxied.peer = Some("10.1.2.3:443".parse().unwrap());
    let page = sign_in_with(&mut proxied, &email, &https).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(session_cookie_header(&page).contains("Secure"));

    // Anyone else saying so is not believed.
    let mut direct = Agent::new(&app);
    direct.peer = Some("192.0.2.10:5000".parse().unwrap());
    let page = sign_in_with(&mut direct, &email, &https).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(
        !session_cookie_header(&page).contains("Secure"),
        "plain HTTP from an untrusted peer"
    );
    let mut forwarded = Agent::new(&app);
    forwarded.peer = Some("192.0.2.10:5001".parse().unwrap());
    let page = sign_in_with(&mut forwarded, &email, &[("forwarded", "proto=https")]).await;
    assert!(!session_cookie_header(&page).contains("Secure"));

    let always =
        TestApp::with_settings(|s| s.serve.admin.secure_cookies = flagstaff::config::SecureCookies::Always);
    let email = user(&always, "ann@example.com", Role::Admin);
    let page = sign_in_with(&mut Agent::new(&always), &email, &[]).await;
    assert!(session_cookie_header(&page).contains("Secure"));
}

#[actix_web::test]
async fn the_origin_check_believes_a_forwarded_host_only_from_a_trusted_proxy() {
    let app = TestApp::with_settings(|s| s.serve.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()]);
    let email = user(&app, "ann@example.com", Role::Admin);
    let as_evil = [("x-forwarded-host", "evil.example")];

    // An attacker's page posts from evil.example and claims that host itself.
    let mut attacker = Agent::new(&app);
    attacker.peer = Some("192.0.2.10:5000".parse().unwrap());
    attacker.origin = Some("https://evil.example".to_owned());
    let page = sign_in_with(&mut attacker, &email, &as_evil).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(page.body.contains("Origin"), "{}", page.body);
    let page = sign_in_with(&mut attacker, &email, &[("forwarded", "host=evil.example")]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);

    // Behind the trusted proxy, the public host is the one it reports.
    let mut proxied = Agent::new(&app);
    proxied.peer = Some("10.1.2.3:443".parse().unwrap());
    proxied.origin = Some("https://flags.example.com".to_owned());
    let page = sign_in_with(
        &mut proxied,
        &email,
        &[
            ("x-forwarded-host", "flags.example.com"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    // And the proxy's own Host header is not the public one then.
    let mut mismatch = Agent::new(&app);
    mismatch.peer = Some("10.1.2.3:443".parse().unwrap());
    mismatch.origin = Some("http://localhost:8080".to_owned());
    let page = sign_in_with(
        &mut mismatch,
        &email,
        &[("x-forwarded-host", "flags.example.com")],
    )
    .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
}

#[actix_web::test]
async fn a_wrong_password_is_refused_and_the_sign_in_form_is_protected() {
    let app = TestApp::new();
    let email = user(&app, "ann@example.com", Role::Editor);
    let mut agent = Agent::new(&app);
    let page = agent.sign_in(&email, "not the password").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("Wrong email or password."), "{}", page.body);
    assert!(!agent.cookies.contains_key("flagstaff_session"));
    let page = agent.sign_in("nobody@example.com", PASSWORD).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(
        page.body.contains("Wrong email or password."),
        "same answer for an unknown email"
    );

    // The sign-in form's own token: without it, or from another site, nothing is checked.
    let mut fresh = Agent::new(&app);
    let page = fresh
        .post("/sign-in", &[("email", &email), ("password", PASSWORD)])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let mut other_site = Agent::new(&app);
    other_site.origin = Some("https://evil.example".to_owned());
    let page = other_site.sign_in(&email, PASSWORD).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
}

#[actix_web::test]
async fn repeated_failures_are_throttled_per_account_with_429() {
    let mut app = TestApp::new();
    super::throttle::freeze_clock(&mut app);
    let email = user(&app, "ann@example.com", Role::Viewer);
    let mut agent = Agent::new(&app);
    for _ in 0..5 {
        let page = agent.sign_in(&email, "wrong password!").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    // Now even the right password is refused, with a message and Retry-After.
    let page = agent.sign_in(&email, PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
    assert!(
        page.body
            .contains("Too many failed sign-ins for this account from your address"),
        "{}",
        page.body
    );
    let wait: u64 = page.header("retry-after").expect("Retry-After").parse().unwrap();
    assert_eq!(wait, 15, "the first wait past the free guesses");
    // The failures of one account do not lock another.
    let other = user(&app, "bob@example.com", Role::Viewer);
    let page = agent.sign_in(&other, PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

#[actix_web::test]
async fn repeated_failures_are_throttled_per_client_address() {
    let mut app = TestApp::new();
    super::throttle::freeze_clock(&mut app);
    let email = user(&app, "ann@example.com", Role::Viewer);
    let mut attacker = Agent::new(&app);
    attacker.peer = Some("192.0.2.7:40000".parse().unwrap());
    for i in 0..20 {
        let page = attacker
            .sign_in(&format!("guess-{i}@example.com"), "wrong password!")
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    let page = attacker.sign_in(&email, PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.body.contains("from your address"), "{}", page.body);
    // Someone else signs in to that account from elsewhere.
    let mut owner = Agent::new(&app);
    owner.peer = Some("198.51.100.1:50000".parse().unwrap());
    assert_eq!(
        owner.sign_in(&email, PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
}

#[actix_web::test]
async fn signing_out_ends_the_session_on_the_server() {
    let app = TestApp::new();
    let email = user(&app, "ann@example.com", Role::Viewer);
    let mut agent = Agent::signed_in(&app, &email).await;
    let token = agent.cookies["flagstaff_session"].clone();
    let page = agent.post_with_csrf("/account", "/sign-out", &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/sign-in");
    assert!(
        !agent.cookies.contains_key("flagstaff_session"),
        "the cookie is removed"
    );
    // The old token no longer works even if someone kept it.
    agent.cookies.insert("flagstaff_session".into(), token);
    assert_eq!(agent.get("/account").await.status, StatusCode::SEE_OTHER);
}

#[actix_web::test]
async fn sessions_end_after_the_idle_time_and_at_the_absolute_time() {
    let app = TestApp::new();
    let email = user(&app, "ann@example.com", Role::Viewer);
    let mut idle = Agent::signed_in(&app, &email).await;
    let mut old = Agent::signed_in(&app, &email).await;
    assert_eq!(idle.get("/account").await.status, StatusCode::OK);
    let day = 86_400_000i64;
    let token = idle.cookies["flagstaff_session"].clone();
    let hash = flagstaff::keys::hash(&token).to_vec();
    let last_seen = |hash: Vec<u8>| {
        app.state
            .store
            .read_blocking(move |c| {
                Ok(c.query_row(
                    "SELECT last_seen_at FROM sessions WHERE token_hash = ?1",
                    [hash],
                    |r| r.get::<_, i64>(0),
                )?)
            })
            .unwrap()
    };
    // Used ten minutes ago: a request extends the session.
    let h = hash.clone();
    app.state
        .store
        .operational_blocking(move |tx| {
            tx.execute(
                "UPDATE sessions SET last_seen_at = last_seen_at - 600000 WHERE token_hash = ?1",
                rusqlite::params![h],
            )?;
            Ok(())
        })
        .unwrap();
    let before = last_seen(hash.clone());
    assert_eq!(idle.get("/account").await.status, StatusCode::OK);
    assert!(
        last_seen(hash.clone()) >= before + 600_000 - 5_000,
        "the last use is written"
    );
    app.state
        .store
        .operational_blocking(move |tx| {
            // Idle for a day (the default idle limit is 12 hours).
            tx.execute(
                "UPDATE sessions SET last_seen_at = last_seen_at - ?1 WHERE token_hash = ?2",
                rusqlite::params![day, hash],
            )?;
            Ok(())
        })
        .unwrap();
    assert_eq!(idle.get("/account").await.status, StatusCode::SEE_OTHER);

    let hash = flagstaff::keys::hash(&old.cookies["flagstaff_session"]).to_vec();
    app.state
        .store
        .operational_blocking(move |tx| {
            tx.execute(
                "UPDATE sessions SET expires_at = ?1 WHERE token_hash = ?2",
                rusqlite::params![1i64, hash],
            )?;
            Ok(())
        })
        .unwrap();
    assert_eq!(old.get("/account").await.status, StatusCode::SEE_OTHER);
}

#[actix_web::test]
async fn a_post_without_the_csrf_token_or_from_another_origin_is_refused() {
    let app = TestApp::new();
    let email = user(&app, "ann@example.com", Role::Admin);
    let mut agent = Agent::signed_in(&app, &email).await;
    let page = agent.post("/sign-out", &[]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("CSRF"), "{}", page.body);
    let page = agent.post("/sign-out", &[("csrf", "forged")]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(
        agent.get("/account").await.status,
        StatusCode::OK,
        "still signed in"
    );

    let csrf = agent.get("/account").await.csrf();
    agent.origin = Some("https://evil.example".to_owned());
    let page = agent.post("/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("Origin"), "{}", page.body);
    let page = agent
        .send(
            "POST",
            "/sign-out",
            Some(format!("csrf={csrf}")),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    agent.origin = Some("http://localhost:8080".to_owned());
    assert_eq!(
        agent.get("/account").await.status,
        StatusCode::OK,
        "still signed in"
    );
    assert_eq!(
        agent.post("/sign-out", &[("csrf", &csrf)]).await.status,
        StatusCode::SEE_OTHER
    );
}

#[actix_web::test]
async fn every_page_carries_the_security_headers() {
    let app = TestApp::new();
    let email = user(&app, "ann@example.com", Role::Admin);
    let mut agent = Agent::signed_in(&app, &email).await;
    for path in ["/sign-in", "/account", "/projects", "/users", "/audit", "/backup"] {
        let page = agent.get(path).await;
        let csp = page
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no CSP"));
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(page.header("x-frame-options"), Some("DENY"), "{path}");
        assert!(page.header("referrer-policy").is_some(), "{path}");
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert!(!page.body.contains("<script>"), "{path}: no inline script");
    }
}

#[actix_web::test]
async fn assets_are_served_under_content_hashed_urls_with_a_long_cache() {
    let app = TestApp::new();
    let email = user(&app, "ann@example.com", Role::Admin);
    let mut agent = Agent::signed_in(&app, &email).await;
    let page = agent.get("/account").await;
    for (attr, ext) in [("href=\"", ".css"), ("src=\"", ".js")] {
        let needle = format!("{attr}/static/admin.");
        let start = page.body.find(&needle).unwrap_or_else(|| panic!("no {ext} link")) + attr.len();
        let url = page.body[start..start + page.body[start..].find('"').unwrap()].to_owned();
        assert!(url.ends_with(ext), "{url}");
        let asset = agent.get(&url).await;
        assert_eq!(asset.status, StatusCode::OK, "{url}");
        assert_eq!(
            asset.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        assert!(!asset.body.is_empty());
    }
    assert_eq!(
        agent.get("/static/admin.0000000000000000.css").await.status,
        StatusCode::NOT_FOUND
    );
}

#[actix_web::test]
async fn the_setup_link_creates_the_first_admin_once() {
    let app = TestApp::new();
    let link = flagstaff::http::admin::bootstrap(&app.state)
        .unwrap()
        .expect("a setup link with no users");
    let path = &link[link.find("/setup").unwrap()..];
    let token = path.split("token=").nth(1).unwrap().to_owned();
    let mut agent = Agent::new(&app);
    let sign_in = agent.get("/sign-in").await;
    assert!(sign_in.body.contains("no users yet"), "{}", sign_in.body);
    let page = agent.get(path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.header("referrer-policy"), Some("same-origin"));

    let bad = agent
        .post(
            "/setup",
            &[
                ("token", &token),
                ("email", "root@example.com"),
                ("password", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("at least 12 characters"), "{}", bad.body);

    let page = agent
        .post(
            "/setup",
            &[
                ("token", &token),
                ("email", "root@example.com"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(
        agent.get("/users").await.status,
        StatusCode::OK,
        "signed in as an admin"
    );

    // The link works once; with users, no new link is made.
    let mut again = Agent::new(&app);
    let page = again
        .post(
            "/setup",
            &[
                ("token", &token),
                ("email", "evil@example.com"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(again.get(path).await.status, StatusCode::SEE_OTHER);
    assert!(flagstaff::http::admin::bootstrap(&app.state).unwrap().is_none());
    assert_eq!(
        again.sign_in("evil@example.com", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[actix_web::test]
async fn changing_the_password_checks_the_current_one_and_signs_out_other_sessions() {
    let app = TestApp::new();
    let email = user(&app, "ann@example.com", Role::Viewer);
    let mut here = Agent::signed_in(&app, &email).await;
    let mut elsewhere = Agent::signed_in(&app, &email).await;
    let new_password = "a brand new password 42";

    let page = here
        .post_with_csrf(
            "/account",
            "/account/password",
            &[
                ("current", "not my password"),
                ("password", new_password),
                ("confirm", new_password),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.body.contains("id=\"current-error\""),
        "error beside the field: {}",
        page.body
    );
    let page = here
        .post_with_csrf(
            "/account",
            "/account/password",
            &[
                ("current", PASSWORD),
                ("password", new_password),
                ("confirm", "something else entirely"),
            ],
        )
        .await;
    assert!(page.body.contains("id=\"confirm-error\""), "{}", page.body);

    let page = here
        .post_with_csrf(
            "/account",
            "/account/password",
            &[
                ("current", PASSWORD),
                ("password", new_password),
                ("confirm", new_password),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(
        here.get("/account").await.status,
        StatusCode::OK,
        "this session lives on"
    );
    assert_eq!(
        elsewhere.get("/account").await.status,
        StatusCode::SEE_OTHER,
        "the other one ended"
    );
    let mut fresh = Agent::new(&app);
    assert_eq!(
        fresh.sign_in(&email, PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        fresh.sign_in(&email, new_password).await.status,
        StatusCode::SEE_OTHER
    );
}

#[actix_web::test]
async fn a_temporary_password_must_be_changed_first_and_a_disabled_user_is_signed_out() {
    let app = TestApp::new();
    let email = user(&app, "ann@example.com", Role::Editor);
    let id = app
        .state
        .store
        .read_blocking(|c| {
            Ok(flagstaff::store::users::by_email(c, "ann@example.com")?
                .unwrap()
                .id)
        })
        .unwrap();
    app.state
        .write_blocking(move |tx| {
            flagstaff::store::users::require_password_change(tx, id)?;
            Ok(((), flagstaff::store::Changes::default()))
        })
        .unwrap();
    let mut agent = Agent::new(&app);
    let page = agent.sign_in(&email, PASSWORD).await;
    assert_eq!(page.location(), "/account?reason=temporary");
    let page = agent.get("/projects").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page.location().starts_with("/account"));
    let call = agent
        .send("GET", "/projects", None, &[("accept", "application/json")])
        .await;
    assert_eq!(
        call.status,
        StatusCode::FORBIDDEN,
        "a script's call gets an error, not a redirect"
    );
    assert!(call.body.contains("temporary password"), "{}", call.body);
    let account = agent.get("/account?reason=temporary").await;
    assert!(
        account.body.contains("Choose your own password"),
        "{}",
        account.body
    );

    app.state
        .write_blocking(move |tx| {
            flagstaff::store::users::update(tx, id, None, Some(true))?;
            Ok(((), flagstaff::store::Changes::default()))
        })
        .unwrap();
    assert_eq!(
        agent.get("/account").await.status,
        StatusCode::SEE_OTHER,
        "disabled: signed out"
    );
}

#[actix_web::test]
async fn the_first_admin_from_the_environment_signs_in_and_no_setup_link_is_printed() {
    let app = TestApp::new();
    let first = flagstaff::config::FirstAdmin {
        email: "root@example.com".to_owned(),
        password: flagstaff::config::Secret::new(PASSWORD),
    };
    flagstaff::cli::first_start(&app.state, Some(first)).unwrap();
    assert!(
        flagstaff::http::admin::bootstrap(&app.state).unwrap().is_none(),
        "a user exists: no link"
    );
    let mut agent = Agent::signed_in(&app, "root@example.com").await;
    assert_eq!(agent.get("/users").await.status, StatusCode::OK, "an admin");
}
