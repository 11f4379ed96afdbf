//! Fixtures shared by the management API tests (`api_*`).

use flagstaff::store::users::Role;
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// A fresh app and an admin token.
pub fn app() -> (TestApp, String) {
    let app = TestApp::new();
    let token = app.token(Role::Admin);
    (app, token)
}

/// A project document with two environments, a segment, a flag with a full production state
/// (prerequisite, target, rule, rollout), its prerequisite flag, and a config.
pub fn shop() -> Value {
    json!({
        "flagstaff": 1,
        "project": {"key": "shop", "name": "Shop"},
        "environments": [
            {"key": "development", "name": "Development"},
            {"key": "production", "name": "Production"}
        ],
        "segments": [{
            "key": "beta", "name": "Beta", "included": ["u-1"], "excluded": [],
            "rules": [{"clauses": [{"attribute": "email", "op": "ends_with", "values": ["@acme.com"]}]}]
        }],
        "flags": [
            {
                "key": "new-checkout", "name": "New checkout", "kind": "flag", "type": "boolean",
                "client_side": true, "temporary": true, "tags": ["checkout"],
                "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
                "environments": {"production": {
                    "enabled": true, "off_variation": "off",
                    "prerequisites": [{"flag": "payments-v2", "variations": ["on"]}],
                    "targets": [{"variation": "on", "values": ["u-1", "u-2"]}],
                    "rules": [{"id": "internal", "clauses": [
                        {"attribute": "email", "op": "ends_with", "values": ["@acme.com"]},
                        {"op": "in_segment", "values": ["beta"]}
                    ], "serve": {"variation": "on"}}],
                    "fallthrough": {"rollout": {"bucket_by": "targetingKey", "variations": [
                        {"variation": "on", "weight": 25000}, {"variation": "off", "weight": 75000}
                    ]}}
                }}
            },
            {
                "key": "payments-v2", "name": "Payments v2", "type": "boolean",
                "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
                "environments": {"production": {"enabled": true, "fallthrough": {"variation": "on"}}}
            },
            {
                "key": "checkout.color", "name": "Checkout colour", "kind": "config", "type": "string",
                "variations": [{"key": "blue", "value": "blue"}, {"key": "green", "value": "green"}],
                "environments": {"development": {"enabled": true, "fallthrough": {"variation": "green"}}}
            }
        ]
    })
}

/// Imports [`shop`] and checks it worked.
pub async fn import_shop(app: &TestApp, token: &str) {
    let reply = app
        .call("POST", "/api/v1/import", Some(token), Some(shop()))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// A boolean flag body with no states.
pub fn boolean_flag(key: &str) -> Value {
    json!({
        "key": key, "name": key, "type": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]
    })
}

/// Every row of every table, as text: to show that something changed nothing at all.
pub fn dump(app: &TestApp) -> Vec<(String, Vec<String>)> {
    app.state
        .store
        .read_blocking(|conn| {
            let tables: Vec<String> = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::new();
            for table in tables {
                let mut stmt = conn
                    .prepare(&format!("SELECT * FROM \"{table}\" ORDER BY rowid"))
                    .or_else(|_| conn.prepare(&format!("SELECT * FROM \"{table}\"")))?;
                let columns = stmt.column_count();
                let rows = stmt
                    .query_map([], |r| {
                        let mut row = Vec::new();
                        for i in 0..columns {
                            row.push(format!("{:?}", r.get_ref(i)?));
                        }
                        Ok(row.join("|"))
                    })?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                out.push((table, rows));
            }
            Ok(out)
        })
        .expect("dump the database")
}

/// The number of audit rows.
pub fn audit_rows(app: &TestApp) -> i64 {
    app.state
        .store
        .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))?))
        .expect("count audit rows")
}

/// The revision of an environment, as stored.
pub fn revision(app: &TestApp, project: &str, env: &str) -> i64 {
    let (project, env) = (project.to_owned(), env.to_owned());
    app.state
        .store
        .read_blocking(move |c| {
            Ok(c.query_row(
                "SELECT e.revision FROM environments e JOIN projects p ON p.id = e.project_id
                 WHERE p.key = ?1 AND e.key = ?2",
                [&project, &env],
                |r| r.get(0),
            )?)
        })
        .expect("read a revision")
}

/// The error of a reply: `(code, path)`.
pub fn error_of(body: &Value) -> (&str, Option<&str>) {
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "an error message in {body}"
    );
    (error["code"].as_str().unwrap_or(""), error["path"].as_str())
}

/// The paths of every error in a 422 reply.
pub fn error_paths(body: &Value) -> Vec<String> {
    body["error"]["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["path"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}
