//! A key whose environment was deleted reads nothing, and says so the same way everywhere.

use flagstaff::store::Changes;
use serde_json::json;

use super::shop;
use crate::helpers::TestApp;

/// The environment is removed while the in-memory key index still holds its keys (the moment
/// between a deletion's commit and the key reload, made to last): every SDK and OFREP path
/// answers 401 with one message, as for a revoked key.
#[actix_web::test]
async fn every_path_answers_401_for_a_key_whose_environment_is_gone() {
    let app = TestApp::new();
    let shop = shop(&app).await;
    let id = shop.environment_id;
    app.state
        .write_blocking(move |tx| {
            tx.execute("DELETE FROM environments WHERE id = ?1", [id])?;
            let mut changes = Changes::default();
            changes.removed_environments.insert(id);
            Ok(((), changes))
        })
        .expect("delete the environment");
    assert!(app.state.snapshots.get(id).is_none(), "no longer served");
    assert!(
        app.state.keys.find(&shop.server).is_some(),
        "the key index was not reloaded"
    );

    let context = json!({"context": {"targetingKey": "u-1"}});
    let now = flagstaff::store::now_ms();
    let events = json!({"start": now, "end": now, "counts": []});
    let cases = [
        ("GET", "/sdk/v1/bundle", &shop.server, None),
        ("GET", "/sdk/v1/stream", &shop.server, None),
        ("POST", "/sdk/v1/events", &shop.server, Some(events.clone())),
        ("POST", "/sdk/v1/events", &shop.client, Some(events)),
        (
            "POST",
            "/ofrep/v1/evaluate/flags",
            &shop.server,
            Some(context.clone()),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags",
            &shop.client,
            Some(context.clone()),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/new-checkout",
            &shop.server,
            Some(context.clone()),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/new-checkout",
            &shop.client,
            Some(context),
        ),
    ];
    let mut messages = Vec::new();
    for (method, path, key, body) in cases {
        let reply = app.call(method, path, Some(key), body).await;
        assert_eq!(reply.status, 401, "{method} {path}: {:?}", reply.body);
        let message = reply.body["error"]["message"]
            .as_str()
            .or_else(|| reply.body["errorDetails"].as_str())
            .unwrap_or_default()
            .to_owned();
        messages.push((path, message));
    }
    let first = messages[0].1.clone();
    assert!(first.contains("environment"), "{first}");
    for (path, message) in &messages {
        assert_eq!(message, &first, "{path}");
    }
}
