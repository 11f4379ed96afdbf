//! Defects a review found (issue 12), each with the test that shows it fixed: client keys'
//! evaluation counts are bounded, `HEAD` answers on every `GET` route, a key whose environment
//! is gone gets the same 401 everywhere. The admin pages' round trips, open redirects and form
//! fuzzing are under `admin/`.

mod environment_gone;
mod events;
mod head;

use flagstaff::store::users::Role;
use serde_json::json;

use crate::helpers::TestApp;

/// Project `shop` (staging, production) with a client-side flag and a server-only one, and a
/// server and a client key for production; made through the management API.
pub struct Shop {
    pub admin: String,
    pub server: String,
    pub client: String,
    pub environment_id: i64,
}

pub async fn shop(app: &TestApp) -> Shop {
    let admin = app.token(Role::Admin);
    let document = json!({
        "flagstaff": 1,
        "project": {"key": "shop", "name": "Shop"},
        "environments": [{"key": "staging", "name": "Staging"}, {"key": "production", "name": "Production"}],
        "segments": [],
        "flags": [
            {"key": "new-checkout", "name": "New checkout", "kind": "flag", "type": "boolean",
             "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
             "environments": {"production": {"enabled": true, "fallthrough": {"variation": "on"}}}},
            {"key": "server-only", "kind": "flag", "type": "boolean", "client_side": false,
             "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]}
        ]
    });
    let imported = app
        .call("POST", "/api/v1/import", Some(&admin), Some(document))
        .await;
    assert!(imported.status.is_success(), "import: {:?}", imported.body);
    let keys = "/api/v1/projects/shop/environments/production/keys";
    let mut made = Vec::new();
    for kind in ["server", "client"] {
        let key = app
            .call(
                "POST",
                keys,
                Some(&admin),
                Some(json!({"kind": kind, "name": kind})),
            )
            .await;
        assert_eq!(key.status, 201, "{:?}", key.body);
        made.push(key.body["key"].as_str().unwrap().to_owned());
    }
    let client = made.pop().unwrap();
    let server = made.pop().unwrap();
    let environment_id = app
        .state
        .snapshots
        .find("shop", "production")
        .expect("production is served")
        .environment_id;
    Shop {
        admin,
        server,
        client,
        environment_id,
    }
}
