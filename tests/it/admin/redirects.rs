//! Where `next` (sign-in) and `back` (the flag list's toggles) may send the browser: only to a
//! target on this site, decided on what a browser would resolve the value to.

use flagstaff::store::users::Role;
use serde_json::json;

use super::{PASSWORD, project, user};
use crate::helpers::{RealServer, TestApp, WebBrowser, html_form};

/// Values a browser would follow off this site (after dropping tabs and newlines, reading
/// backslashes as slashes, or a proxy decoding the path).
const HOSTILE: &[&str] = &[
    "/\t/evil.example",
    "/\n/evil.example",
    "/%09/evil.example",
    "/\\/evil.example",
    "\\\\evil.example",
    "/%5C/evil.example",
    "/%5c%5cevil.example",
    "https:evil.example",
    "https://evil.example/x",
    "//evil.example",
    " //evil.example",
    "/%2F/evil.example",
    "/..//evil.example",
    "javascript:alert(document.domain)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
];

/// Values that stay on this site, and where they lead.
const LEGITIMATE: &[(&str, &str)] = &[
    ("/projects/shop/flags", "/projects/shop/flags"),
    (
        "/projects/shop/flags?q=new&tag=web",
        "/projects/shop/flags?q=new&tag=web",
    ),
    ("/ok?next=//x", "/ok?next=//x"),
    (
        "/projects/shop/flags/a%2Cb#rules",
        "/projects/shop/flags/a%2Cb#rules",
    ),
];

const FALLBACK: &str = "/projects";

/// The `Location` a fresh sign-in (POST) sends for `next`.
async fn post_sign_in(server: &RealServer, email: &str, next: &str) -> String {
    let mut browser = WebBrowser::new(server);
    let page = browser.get("/sign-in").await;
    let mut fields = html_form(&page.body, "/sign-in").fields;
    for (name, value) in &mut fields {
        *value = match name.as_str() {
            "email" => email.to_owned(),
            "password" => PASSWORD.to_owned(),
            "next" => next.to_owned(),
            _ => continue,
        };
    }
    let page = browser.post("/sign-in", &fields).await;
    assert_eq!(page.status, 303, "{next:?}: {}", page.body);
    page.location
}

fn query(next: &str) -> String {
    serde_urlencoded::to_string([("next", next)]).unwrap()
}

/// The `href`s of a page's links.
fn links(html: &str) -> Vec<String> {
    let document = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse("a[href]").unwrap();
    document
        .select(&selector)
        .filter_map(|a| a.value().attr("href").map(str::to_owned))
        .collect()
}

fn field<'f>(fields: &'f [(String, String)], name: &str) -> Option<&'f str> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[actix_web::test]
async fn next_leads_only_to_this_site_on_get_and_post() {
    let app = TestApp::new();
    let email = user(&app, "ann@example.com", Role::Admin);
    let server = RealServer::start(&app.state);
    let mut signed_in = WebBrowser::new(&server);
    signed_in.sign_in(&email, PASSWORD).await;
    let mut signed_out = WebBrowser::new(&server);
    let cases = HOSTILE
        .iter()
        .map(|h| (*h, FALLBACK))
        .chain(LEGITIMATE.iter().copied());
    for (next, expected) in cases {
        // GET while signed in: straight to `next`.
        let page = signed_in.get(&format!("/sign-in?{}", query(next))).await;
        assert_eq!(page.status, 303, "{next:?}");
        assert_eq!(page.location, expected, "GET signed in, next={next:?}");

        // GET while signed out: the form carries the checked value, not the raw one.
        let page = signed_out.get(&format!("/sign-in?{}", query(next))).await;
        assert_eq!(page.status, 200, "{next:?}");
        let form = html_form(&page.body, "/sign-in");
        assert_eq!(
            field(&form.fields, "next"),
            Some(expected),
            "GET signed out, next={next:?}"
        );

        // POST: the sign-in's redirect.
        assert_eq!(
            post_sign_in(&server, &email, next).await,
            expected,
            "POST sign-in, next={next:?}"
        );
    }
    server.stop().await;
}

#[actix_web::test]
async fn back_leads_only_to_this_site_from_the_toggles() {
    let app = TestApp::new();
    project(&app, "shop");
    let email = user(&app, "ed@example.com", Role::Admin);
    let token = app.token(Role::Editor);
    let created = app
        .call(
            "POST",
            "/api/v1/projects/shop/flags",
            Some(&token),
            Some(json!({"key": "beta", "type": "boolean",
                "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]})),
        )
        .await;
    assert!(created.status.is_success(), "{:?}", created.body);
    let server = RealServer::start(&app.state);
    let mut browser = WebBrowser::new(&server);
    browser.sign_in(&email, PASSWORD).await;
    let flag_list = "/projects/shop/flags";
    let page = browser.get(flag_list).await;
    let csrf = html_forms_csrf(&page.body);
    let cases = HOSTILE
        .iter()
        .map(|h| (*h, flag_list))
        .chain(LEGITIMATE.iter().copied());
    let mut enabled = false;
    for (back, expected) in cases {
        enabled = !enabled;
        let fields = |env_enabled: &str| {
            vec![
                ("csrf".to_owned(), csrf.clone()),
                ("enabled".to_owned(), env_enabled.to_owned()),
                ("back".to_owned(), back.to_owned()),
            ]
        };
        // Staging toggles at once and sends the browser back.
        let page = browser
            .post(
                "/projects/shop/flags/beta/environments/staging/toggle",
                &fields(&enabled.to_string()),
            )
            .await;
        assert_eq!(page.status, 303, "{back:?}: {}", page.body);
        let sep = if expected.contains('?') { '&' } else { '?' };
        assert_eq!(
            page.location,
            format!("{expected}{sep}notice=toggled"),
            "POST toggle, back={back:?}"
        );

        // Production asks first; its page links back (Cancel) and carries `back` on.
        let action = "/projects/shop/flags/beta/environments/production/toggle";
        let page = browser.post(action, &fields("true")).await;
        assert_eq!(page.status, 200, "{back:?}: {}", page.body);
        let form = html_form(&page.body, action);
        assert_eq!(
            field(&form.fields, "back"),
            Some(expected),
            "confirmation page, back={back:?}"
        );
        let links = links(&page.body);
        assert!(
            links.iter().any(|l| l == expected),
            "Cancel leads back, back={back:?}: {links:?}"
        );
        assert!(
            links
                .iter()
                .all(|l| !l.contains("evil.example") && !l.starts_with("//")),
            "{back:?}: {links:?}"
        );
    }
    server.stop().await;
}

/// The session's CSRF token, from the first form that carries one.
fn html_forms_csrf(html: &str) -> String {
    crate::helpers::html_forms(html)
        .into_iter()
        .find_map(|f| field(&f.fields, "csrf").map(str::to_owned))
        .expect("a form with a csrf field")
}

/// Redirects built from decoded path parameters and form fields go out whatever those hold
/// (a line break, a space, non-ASCII): encoded, never a 500 for a header that cannot be sent.
#[actix_web::test]
async fn a_redirect_built_from_hostile_input_still_goes_out() {
    let app = TestApp::new();
    project(&app, "shop");
    let email = user(&app, "ed@example.com", Role::Admin);
    let token = app.token(Role::Editor);
    let created = app
        .call(
            "POST",
            "/api/v1/projects/shop/flags",
            Some(&token),
            Some(json!({"key": "beta", "type": "boolean",
                "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]})),
        )
        .await;
    assert!(created.status.is_success(), "{:?}", created.body);
    let server = RealServer::start(&app.state);
    let mut browser = WebBrowser::new(&server);
    browser.sign_in(&email, PASSWORD).await;

    for (path, expected) in [
        ("/projects/a%0Ab", "/projects/a%0Ab/flags"),
        ("/projects/%C3%A9t%C3%A9%20x", "/projects/%C3%A9t%C3%A9%20x/flags"),
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, 303, "GET {path}: {}", page.body);
        assert_eq!(page.location, expected, "GET {path}");
    }

    // The definition form's `env` field goes back into the redirect's query.
    let action = "/projects/shop/flags/beta";
    let page = browser.get(action).await;
    let mut fields = html_form(&page.body, action).fields;
    for (name, value) in &mut fields {
        if name == "env" {
            *value = "line\nbreak & more".to_owned();
        }
    }
    let page = browser.post(action, &fields).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(
        page.location,
        "/projects/shop/flags/beta?env=line%0Abreak+%26+more&notice=saved"
    );
    server.stop().await;
}
