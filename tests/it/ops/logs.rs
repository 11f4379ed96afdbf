//! Logs: JSON when asked, a request id on every request line, and never a secret. A server runs
//! at `debug` level (every crate) while a session uses every kind of secret — the first admin's
//! password, a user's password and a wrong one, an admin token, server and client keys in
//! headers and in URLs, a revoked key, an OFREP stream token, the session and sign-in cookies
//! and the CSRF token — then the whole log (and the command line's) is searched for each one.

use std::io::Write as _;
use std::process::Stdio;

use reqwest::header;
use serde_json::{Value, json};

use super::{ENV, Flagstaff, PROJECT, command, document};
use crate::helpers::field_value;

const ADMIN_EMAIL: &str = "root@example.com";
const ADMIN_PASSWORD: &str = "first-admin-Pa55word-q8Zr";
const USER_PASSWORD: &str = "second-user-Pa55word-Kx3v";
const WRONG_PASSWORD: &str = "wrong-guess-Pa55word-J7tm";

/// The value of `name` in a response's `Set-Cookie` headers.
fn cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers().get_all(header::SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let (pair, _) = v.split_once(';').unwrap_or((v, ""));
        let (n, value) = pair.split_once('=')?;
        (n.trim() == name && !value.is_empty()).then(|| value.to_owned())
    })
}

#[actix_web::test]
async fn no_secret_used_in_a_session_ever_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut secrets: Vec<(&str, String)> = vec![
        ("first admin password", ADMIN_PASSWORD.into()),
        ("user password", USER_PASSWORD.into()),
        ("wrong password", WRONG_PASSWORD.into()),
    ];
    let mut cli_log = String::new();

    let mut server = Flagstaff::start(
        &data,
        &[
            ("FLAGSTAFF_LOG", "debug"),
            ("FLAGSTAFF_ADMIN_EMAIL", ADMIN_EMAIL),
            ("FLAGSTAFF_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ],
    );
    let url = server.url.clone();
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The command line: a user with a password on standard input, an admin token.
    let mut create = command(&data)
        .args([
            "--log",
            "debug",
            "user",
            "create",
            "--email",
            "dev@example.com",
            "--role",
            "editor",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(create.stdin.take().unwrap(), "{USER_PASSWORD}").unwrap();
    let out = create.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    cli_log.push_str(&String::from_utf8_lossy(&out.stderr));
    let out = command(&data)
        .args([
            "--log",
            "debug",
            "token",
            "create",
            "--email",
            ADMIN_EMAIL,
            "--name",
            "ci",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    cli_log.push_str(&String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    secrets.push(("admin token", token.clone()));

    // The API with the token; keys created, used in headers and in URLs, one revoked.
    let imported = http
        .post(format!("{url}/api/v1/import"))
        .bearer_auth(&token)
        .json(&document())
        .send()
        .await
        .unwrap();
    assert!(imported.status().is_success());
    let keys = format!("{url}/api/v1/projects/{PROJECT}/environments/{ENV}/keys");
    let new_key = |kind: &'static str| {
        let (http, keys, token) = (http.clone(), keys.clone(), token.clone());
        async move {
            let res = http
                .post(&keys)
                .bearer_auth(&token)
                .json(&json!({"kind": kind, "name": kind}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
            res.json::<Value>().await.unwrap()
        }
    };
    let server_key = new_key("server").await;
    let client_key = new_key("client").await;
    let revoked = new_key("server").await;
    let (server_key, client_key) = (
        server_key["key"].as_str().unwrap().to_owned(),
        client_key["key"].as_str().unwrap().to_owned(),
    );
    secrets.push(("server key", server_key.clone()));
    secrets.push(("client key", client_key.clone()));
    secrets.push(("revoked key", revoked["key"].as_str().unwrap().to_owned()));
    let gone = http
        .delete(format!("{keys}/{}", revoked["id"]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success());

    let bundle = http
        .get(format!("{url}/sdk/v1/bundle"))
        .header("X-API-Key", &server_key)
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200);
    let refused = http
        .get(format!("{url}/sdk/v1/bundle"))
        .bearer_auth(revoked["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let wrong = http
        .get(format!("{url}/api/v1/projects"))
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    secrets.push(("mistyped admin token", format!("{token}x")));
    let context = "eyJ0YXJnZXRpbmdLZXkiOiJ1LTEifQ"; // {"targetingKey":"u-1"}
    let values = http
        .get(format!("{url}/client/v1/{client_key}/{context}"))
        .send()
        .await
        .unwrap();
    assert_eq!(values.status(), 200);
    let bulk = http
        .post(format!("{url}/ofrep/v1/evaluate/flags"))
        .bearer_auth(&server_key)
        .json(&json!({"context": {"targetingKey": "u-1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bulk.status(), 200);
    let bulk: Value = bulk.json().await.unwrap();
    // A stream URL for browsers carries a credential in its query: a client key or a token.
    let streams = bulk["eventStreams"].as_array().expect("OFREP eventStreams");
    for stream in streams {
        let address = stream["url"]
            .as_str()
            .or(stream["endpoint"]["requestUri"].as_str())
            .expect("a stream address");
        if let Some((_, token)) = address.split_once("token=") {
            secrets.push(("stream token", token.split('&').next().unwrap().to_owned()));
        }
        let absolute = if address.starts_with("http") {
            address.to_owned()
        } else {
            format!("{url}{address}")
        };
        let opened = http.get(&absolute).send().await.unwrap();
        assert_eq!(opened.status(), 200, "{absolute}");
    }
    assert!(
        secrets.iter().any(|(what, _)| *what == "stream token"),
        "a server key's stream URL carries a token"
    );
    let by_query = http
        .get(format!("{url}/ofrep/v1/stream?key={client_key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), 200);
    drop(by_query);

    // The admin pages: a wrong password, then a sign-in with cookies and a CSRF token.
    let page = http.get(format!("{url}/sign-in")).send().await.unwrap();
    let sign_in_cookie = cookie(&page, "flagstaff_sign_in").expect("the sign-in cookie");
    let csrf = field_value(&page.text().await.unwrap(), "csrf").expect("the csrf field");
    secrets.push(("sign-in cookie", sign_in_cookie.clone()));
    secrets.push(("sign-in csrf", csrf.clone()));
    for password in [WRONG_PASSWORD, ADMIN_PASSWORD] {
        let res = http
            .post(format!("{url}/sign-in"))
            .header(header::COOKIE, format!("flagstaff_sign_in={sign_in_cookie}"))
            .header(header::ORIGIN, &url)
            .form(&[
                ("email", ADMIN_EMAIL),
                ("password", password),
                ("csrf", &csrf),
                ("next", "/projects"),
            ])
            .send()
            .await
            .unwrap();
        if password == ADMIN_PASSWORD {
            assert_eq!(res.status(), 303);
            let session = cookie(&res, "flagstaff_session").expect("the session cookie");
            let projects = http
                .get(format!("{url}/projects"))
                .header(header::COOKIE, format!("flagstaff_session={session}"))
                .send()
                .await
                .unwrap();
            assert_eq!(projects.status(), 200);
            let html = projects.text().await.unwrap();
            if let Some(page_csrf) = field_value(&html, "csrf") {
                secrets.push(("page csrf", page_csrf));
            }
            secrets.push(("session cookie", session));
        } else {
            assert_ne!(res.status(), 303, "a wrong password does not sign in");
        }
    }

    let (status, _) = server.terminate();
    assert!(status.success());
    let log = server.logs();

    // The log is what was asked for: JSON lines, request lines with ids, debug on.
    assert!(log.len() > 25, "{} lines: {log:#?}", log.len());
    let parsed: Vec<Value> = log
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let requests: Vec<&Value> = parsed
        .iter()
        .filter(|l| l["target"] == "flagstaff::request")
        .collect();
    assert!(requests.len() >= 15, "{} request lines: {log:#?}", requests.len());
    assert!(
        requests
            .iter()
            .all(|l| l["span"]["request_id"].as_str().is_some_and(|id| id.len() == 36))
    );
    assert!(
        requests.iter().any(|l| l["fields"]["status"] == 401),
        "refusals are logged"
    );
    assert!(
        parsed
            .iter()
            .any(|l| l["level"] == "DEBUG" && l["target"] != "flagstaff::request")
    );

    let everything = format!("{}\n{cli_log}", log.join("\n"));
    for (what, secret) in &secrets {
        assert!(
            secret.len() >= 16,
            "{what} is too short to search for: {secret:?}"
        );
        assert!(!everything.contains(secret.as_str()), "the {what} is in the log");
        // Keys and tokens also without their visible prefix.
        if let Some((_, body)) = secret
            .split_once("fs_")
            .and_then(|(_, rest)| rest.split_once('_'))
        {
            assert!(
                !everything.contains(body),
                "the {what} (without its prefix) is in the log"
            );
        }
    }
}
