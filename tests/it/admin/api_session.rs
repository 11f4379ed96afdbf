//! The admin pages' own scripts call `/api/v1` with their session (DESIGN.md §4): reads with the
//! cookie alone, changes only with the session's CSRF token and from our own origin.

use actix_web::http::StatusCode;
use flagstaff::store::users::Role;

use super::{Agent, project, user};
use crate::helpers::TestApp;

const TOGGLE: &str = "/api/v1/projects/shop/flags/beta/environments/production";
const FLAG: &str = r#"{"key": "beta", "type": "boolean",
    "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]}"#;

#[actix_web::test]
async fn a_signed_in_session_uses_the_api_with_its_csrf_token() {
    let app = TestApp::new();
    project(&app, "shop");
    let email = user(&app, "editor@example.test", Role::Editor);
    let mut agent = Agent::signed_in(&app, &email).await;
    let csrf = agent.get("/projects").await.csrf();
    let json = ("content-type", "application/json");

    let listed = agent.get("/api/v1/projects").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert!(listed.body.contains("\"shop\""));

    let created = agent
        .send(
            "POST",
            "/api/v1/projects/shop/flags",
            Some(FLAG.into()),
            &[json, ("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

    // Without the token, or with another session's, or from another origin: refused, unchanged.
    let body = Some(r#"{"enabled": true}"#.to_owned());
    let forged = agent.send("PATCH", TOGGLE, body.clone(), &[json]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    let wrong = agent
        .send("PATCH", TOGGLE, body.clone(), &[json, ("x-csrf-token", "not-it")])
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    agent.origin = Some("https://evil.example".to_owned());
    let cross = agent
        .send("PATCH", TOGGLE, body.clone(), &[json, ("x-csrf-token", &csrf)])
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    agent.origin = Some("http://localhost:8080".to_owned());
    let state = agent.get(TOGGLE).await;
    assert!(state.body.contains("\"enabled\":false"), "{}", state.body);

    let toggled = agent
        .send("PATCH", TOGGLE, body, &[json, ("x-csrf-token", &csrf)])
        .await;
    assert_eq!(toggled.status, StatusCode::OK, "{}", toggled.body);
    assert!(toggled.body.contains("\"enabled\":true"), "{}", toggled.body);

    // The session's role still decides: an editor cannot create projects.
    let project = agent
        .send(
            "POST",
            "/api/v1/projects",
            Some(r#"{"key": "other", "name": "Other"}"#.into()),
            &[json, ("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(project.status, StatusCode::FORBIDDEN, "{}", project.body);

    // Signed out: the cookie no longer opens the API.
    let mut stranger = Agent::new(&app);
    stranger
        .cookies
        .insert("flagstaff_session".into(), "made-up".into());
    assert_eq!(
        stranger.get("/api/v1/projects").await.status,
        StatusCode::UNAUTHORIZED
    );
}
