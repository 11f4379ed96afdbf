//! The README's example: connect, read flags, react to changes, shut down.
//!
//! ```sh
//! FLAGSTAFF_URL=http://127.0.0.1:8080 FLAGSTAFF_SERVER_KEY=fs_srv_… \
//!     cargo run -p flagstaff-sdk --example quickstart
//! ```

use std::time::Duration;

use flagstaff_sdk::{Client, FlagstaffProvider};
use open_feature::{EvaluationContext, OpenFeature};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("FLAGSTAFF_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let key = std::env::var("FLAGSTAFF_SERVER_KEY")?;

    // Ready once a source answered: the server, a fallback, or the copy on disk.
    let client = Client::builder(&url, &key)
        .cache_file(std::env::temp_dir().join("flagstaff-quickstart.json"))
        .build()
        .await?;
    println!("{:?}", client.status());

    // Reads are local and lock-free: call them as often as you like.
    let user = flagstaff_sdk::context(json!({
        "targetingKey": "user-42",
        "email": "ada@example.com",
        "plan": "pro",
    }));
    let checkout = client.bool_value("new-checkout", &user, false);
    let banner = client.string_value("banner-text", &user, "Welcome");
    let detail = client.evaluate("new-checkout", &user);
    println!(
        "new-checkout = {checkout} ({:?}), banner-text = {banner:?}",
        detail.reason
    );

    // Changes arrive over the stream within milliseconds.
    let mut changes = client.subscribe();
    tokio::spawn(async move {
        while let Ok(change) = changes.recv().await {
            println!(
                "configuration changed (revision {}): {:?}",
                change.revision, change.flags
            );
        }
    });

    // The same client behind the OpenFeature API.
    OpenFeature::singleton_mut()
        .await
        .set_provider(FlagstaffProvider::new(client.clone()))
        .await;
    let openfeature = OpenFeature::singleton().await.create_client();
    let ctx = EvaluationContext::default()
        .with_targeting_key("user-42")
        .with_custom_field("plan", "pro");
    let enabled = openfeature
        .get_bool_value("new-checkout", Some(&ctx), None)
        .await
        .unwrap_or(false);
    println!("through OpenFeature: new-checkout = {enabled}");

    tokio::time::sleep(Duration::from_secs(1)).await;
    // Sends the last evaluation counts and stops the background tasks.
    client.close().await;
    Ok(())
}
