//! What the load harnesses' binaries share: preparing a running Flagstaff through its
//! management API.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

/// Imports `document` into the Flagstaff at `url` (an admin `token`), then creates an SDK key of
/// `kind` (`"server"` or `"client"`) named `name` for `project`/`environment`; returns its secret.
pub async fn import_and_create_key(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    document: &Value,
    (project, environment): (&str, &str),
    (kind, name): (&str, &str),
) -> anyhow::Result<String> {
    let resp = http
        .post(format!("{url}/api/v1/import"))
        .bearer_auth(token)
        .json(document)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("import failed: {} {}", resp.status(), resp.text().await?);
    }
    let resp = http
        .post(format!(
            "{url}/api/v1/projects/{project}/environments/{environment}/keys"
        ))
        .bearer_auth(token)
        .json(&json!({"kind": kind, "name": name}))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("key creation failed: {} {}", resp.status(), resp.text().await?);
    }
    let created: Value = resp.json().await?;
    Ok(created["key"]
        .as_str()
        .context("the created key's secret")?
        .to_owned())
}
