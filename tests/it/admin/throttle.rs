//! Sign-in throttling under attack: parallel guesses are counted before the password is
//! checked, one address's failures never lock the account's owner out elsewhere, and the setup
//! and password-change forms are held to the same rules.

use std::sync::Arc;

use actix_web::http::StatusCode;
use flagstaff::store::users::Role;
use flagstaff::throttle::{Clock, SignInGuard};
use futures_util::future::join_all;

use super::{Agent, PASSWORD, Page, user};
use crate::helpers::TestApp;

/// How many wrong passwords one address may try on one account before it has to wait.
const FREE_GUESSES: usize = 5;

/// Gives the app's sign-in guard a clock that stands still until the test moves it, so no
/// assertion about waits depends on how fast the machine runs.
pub fn freeze_clock(app: &mut TestApp) -> Clock {
    let clock = Clock::manual(flagstaff::store::now_ms());
    app.state.sign_in = Arc::new(SignInGuard::with_clock(clock.clone()));
    clock
}

fn behind_proxy() -> TestApp {
    TestApp::with_settings(|s| s.serve.trusted_proxies = vec!["127.0.0.1".parse().unwrap()])
}

/// An agent whose requests arrive through the trusted proxy on 127.0.0.1 for `client`.
fn agent_for<'a>(app: &'a TestApp, client: &str) -> (Agent<'a>, String) {
    let mut agent = Agent::new(app);
    agent.peer = Some("127.0.0.1:40000".parse().unwrap());
    (agent, client.to_owned())
}

/// Opens the sign-in page and posts the form, both with `X-Forwarded-For: client`.
async fn sign_in_as(agent: &mut Agent<'_>, client: &str, email: &str, password: &str) -> Page {
    let page = agent
        .send("GET", "/sign-in", None, &[("x-forwarded-for", client)])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    post_sign_in(agent, client, &page.csrf(), email, password).await
}

async fn post_sign_in(agent: &mut Agent<'_>, client: &str, csrf: &str, email: &str, password: &str) -> Page {
    let body = serde_urlencoded::to_string([
        ("csrf", csrf),
        ("email", email),
        ("password", password),
        ("next", "/projects"),
    ])
    .unwrap();
    agent
        .send(
            "POST",
            "/sign-in",
            Some(body),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-forwarded-for", client),
            ],
        )
        .await
}

fn retry_after(page: &Page) -> u64 {
    page.header("retry-after")
        .unwrap_or_else(|| panic!("a 429 without Retry-After: {:?}", page.headers))
        .parse()
        .expect("Retry-After in seconds")
}

#[actix_web::test]
async fn fifty_parallel_wrong_passwords_get_only_the_allowed_guesses() {
    let mut app = TestApp::new();
    freeze_clock(&mut app);
    let email = user(&app, "Ann.O'Neil+<script>@example.com", Role::Admin);
    let before = app.state.sign_in.verifications();
    let mut agents: Vec<(Agent, String)> = Vec::new();
    for i in 0..50 {
        let mut agent = Agent::new(&app);
        agent.peer = Some(format!("192.0.2.7:{}", 40000 + i).parse().unwrap());
        let csrf = agent.get("/sign-in").await.csrf();
        agents.push((agent, csrf));
    }
    // Every guess is sent before any answer arrives; the email's case varies, as it may.
    let pages = join_all(agents.iter_mut().enumerate().map(|(i, (agent, csrf))| {
        let email = if i % 2 == 0 {
            email.clone()
        } else {
            email.to_ascii_uppercase()
        };
        let password = format!("wrong, \"guess\"\t{i} ✓");
        async move {
            agent
                .post(
                    "/sign-in",
                    &[
                        ("csrf", csrf.as_str()),
                        ("email", &email),
                        ("password", &password),
                    ],
                )
                .await
        }
    }))
    .await;

    let checked = pages
        .iter()
        .filter(|p| p.status == StatusCode::UNAUTHORIZED)
        .count();
    let refused: Vec<&Page> = pages
        .iter()
        .filter(|p| p.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(
        checked + refused.len(),
        50,
        "only 401 and 429: {:?}",
        pages.iter().map(|p| p.status).collect::<Vec<_>>()
    );
    assert!(
        checked <= FREE_GUESSES,
        "{checked} of 50 parallel guesses had their password checked; at most {FREE_GUESSES} may"
    );
    for page in &refused {
        assert!(retry_after(page) >= 1);
    }
    let verified = app.state.sign_in.verifications() - before;
    assert!(
        verified <= FREE_GUESSES as u64,
        "{verified} argon2 verifications for 50 parallel guesses"
    );
    assert_eq!(
        verified as usize, checked,
        "each 401 is one verification, each 429 none"
    );

    // A reserved guess that found every hashing slot taken was refused as "busy" and counts for
    // nothing, so fewer than the free guesses may have been spent; spend the rest one by one.
    let busy = refused.iter().filter(|p| p.body.contains("busy")).count();
    assert!(
        checked + busy >= FREE_GUESSES,
        "{checked} checked and {busy} busy: the free guesses were not all reserved"
    );
    for i in checked..FREE_GUESSES {
        let mut agent = Agent::new(&app);
        agent.peer = Some(format!("192.0.2.7:{}", 45000 + i).parse().unwrap());
        let page = agent.sign_in(&email, &format!("one more, {i}")).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
    }
    assert_eq!(app.state.sign_in.verifications() - before, FREE_GUESSES as u64);

    // The right password from the same address now waits too: it is the guesser's address.
    let mut late = Agent::new(&app);
    late.peer = Some("192.0.2.7:50000".parse().unwrap());
    let page = late.sign_in(&email, PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
    assert!(page.body.contains("for this account"), "{}", page.body);
}

#[actix_web::test]
async fn parallel_sign_ins_never_run_more_password_checks_at_once_than_allowed() {
    let app = TestApp::new();
    let mut agents: Vec<(Agent, String, String)> = Vec::new();
    for i in 0..24 {
        let email = user(&app, &format!("user-{i}@example.com"), Role::Viewer);
        let mut agent = Agent::new(&app);
        agent.peer = Some(format!("198.51.100.{}:4000", i + 1).parse().unwrap());
        let csrf = agent.get("/sign-in").await.csrf();
        agents.push((agent, csrf, email));
    }
    let pages = join_all(agents.iter_mut().map(|(agent, csrf, email)| async move {
        agent
            .post(
                "/sign-in",
                &[
                    ("csrf", csrf.as_str()),
                    ("email", email.as_str()),
                    ("password", PASSWORD),
                ],
            )
            .await
    }))
    .await;
    for page in &pages {
        match page.status {
            StatusCode::SEE_OTHER => {}
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(page.body.contains("busy"), "{}", page.body);
                assert_eq!(retry_after(page), 1);
            }
            other => panic!("{other}: {}", page.body),
        }
    }
    let most = app.state.sign_in.most_concurrent_hashes();
    assert!(
        (1..=flagstaff::throttle::CONCURRENT_HASHES).contains(&most),
        "{most} password hashes ran at once"
    );
}

#[actix_web::test]
async fn the_real_admin_signs_in_from_another_address_during_an_attack() {
    let mut app = behind_proxy();
    let clock = freeze_clock(&mut app);
    let email = user(&app, "admin@example.com", Role::Admin);
    let (mut attacker, from) = agent_for(&app, "203.0.113.66");
    let mut statuses = Vec::new();
    for i in 0..30 {
        let page = sign_in_as(&mut attacker, &from, &email, &format!("guess {i}")).await;
        statuses.push(page.status);
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        FREE_GUESSES,
        "{statuses:?}"
    );
    assert!(
        statuses[FREE_GUESSES..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS)
    );
    // Even the right password waits at the attacker's address…
    let page = sign_in_as(&mut attacker, &from, &email, PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);

    // …while the admin, elsewhere, signs in at once, and so does anyone else.
    let (mut admin, home) = agent_for(&app, "198.51.100.20");
    let page = sign_in_as(&mut admin, &home, &email, PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(admin.get("/users").await.status, StatusCode::OK);

    // The attacker's address is not believed when it does not come from the trusted proxy.
    let mut spoofer = Agent::new(&app);
    spoofer.peer = Some("203.0.113.66:1234".parse().unwrap());
    let page = sign_in_as(&mut spoofer, "198.51.100.20", &email, PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);

    // A wait, not a lock: once it is over the attacker has one more guess, then waits twice as
    // long.
    let wait = retry_after(&page);
    assert_eq!(wait, 15);
    clock.advance(wait as i64 * 1000);
    let page = sign_in_as(&mut attacker, &from, &email, "one more guess").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
    let page = sign_in_as(&mut attacker, &from, &email, "and another").await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&page), 30);
    clock.advance(30_000);
    let page = sign_in_as(&mut attacker, &from, &email, PASSWORD).await;
    assert_eq!(
        page.status,
        StatusCode::SEE_OTHER,
        "the right password after the wait"
    );
}

#[actix_web::test]
async fn parallel_wrong_current_passwords_get_only_the_allowed_guesses() {
    let mut app = TestApp::new();
    freeze_clock(&mut app);
    let email = user(&app, "ann@example.com", Role::Viewer);
    let mut owner = Agent::signed_in(&app, &email).await;
    let csrf = owner.get("/account").await.csrf();
    let before = app.state.sign_in.verifications();
    let new_password = "a brand new password, \"quoted\" 42";
    let mut agents: Vec<Agent> = (0..40)
        .map(|_| Agent {
            app: &app,
            cookies: owner.cookies.clone(),
            origin: owner.origin.clone(),
            peer: None,
        })
        .collect();
    let pages = join_all(agents.iter_mut().enumerate().map(|(i, agent)| {
        let (csrf, current) = (csrf.clone(), format!("not it {i}"));
        async move {
            agent
                .post(
                    "/account/password",
                    &[
                        ("csrf", csrf.as_str()),
                        ("current", &current),
                        ("password", new_password),
                        ("confirm", new_password),
                    ],
                )
                .await
        }
    }))
    .await;
    let checked = pages
        .iter()
        .filter(|p| p.status == StatusCode::UNPROCESSABLE_ENTITY)
        .count();
    let refused = pages
        .iter()
        .filter(|p| p.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(
        checked + refused,
        40,
        "{:?}",
        pages.iter().map(|p| p.status).collect::<Vec<_>>()
    );
    assert!(
        checked <= FREE_GUESSES,
        "{checked} current passwords were checked"
    );
    assert!(app.state.sign_in.verifications() - before <= FREE_GUESSES as u64);
    // The password did not change (signing in from elsewhere: this address now waits).
    let mut elsewhere = Agent::new(&app);
    elsewhere.peer = Some("198.51.100.8:1000".parse().unwrap());
    assert_eq!(
        elsewhere.sign_in(&email, PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
}

#[actix_web::test]
async fn wrong_setup_tokens_are_throttled_and_never_hashed() {
    let mut app = TestApp::new();
    freeze_clock(&mut app);
    let link = flagstaff::http::admin::bootstrap(&app.state)
        .unwrap()
        .expect("a setup link with no users");
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let before = app.state.sign_in.hashes();
    let mut guesser = Agent::new(&app);
    guesser.peer = Some("192.0.2.99:1000".parse().unwrap());
    let mut statuses = Vec::new();
    for i in 0..30 {
        let page = guesser
            .post(
                "/setup",
                &[
                    ("token", &format!("guess-{i}")),
                    ("email", "root@example.com"),
                    ("password", PASSWORD),
                    ("confirm", PASSWORD),
                ],
            )
            .await;
        statuses.push(page.status);
    }
    assert!(
        statuses
            .iter()
            .all(|s| [StatusCode::FORBIDDEN, StatusCode::TOO_MANY_REQUESTS].contains(s)),
        "{statuses:?}"
    );
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(refused >= 20, "wrong setup tokens are throttled: {statuses:?}");
    assert_eq!(
        app.state.sign_in.hashes(),
        before,
        "no password is hashed for a wrong token"
    );

    // The operator, elsewhere, still uses the link.
    let mut operator = Agent::new(&app);
    operator.peer = Some("198.51.100.5:1000".parse().unwrap());
    let page = operator
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
}
