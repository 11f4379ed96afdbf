//! `POST /sdk/v1/events` with a client key: bounded per batch and per hour, refused whole
//! beyond the bounds (a 4xx naming the limit), never stored.

use flagstaff::http::sdk::events::client_limits;
use serde_json::{Value, json};

use super::shop;
use crate::helpers::{RealServer, TestApp};

struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

fn batch(counts: Value) -> Value {
    let now = flagstaff::store::now_ms();
    json!({"start": now - 60_000, "end": now, "counts": counts})
}

/// The sum of stored counts of `new-checkout` after a flush.
async fn stored(app: &TestApp) -> i64 {
    flagstaff::events::flush(&app.state).await.expect("flush");
    app.state
        .store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT coalesce(sum(count), 0) FROM evaluation_counts WHERE flag_key = 'new-checkout'",
                [],
                |r| r.get::<_, i64>(0),
            )?)
        })
        .unwrap()
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

#[actix_web::test]
async fn a_client_key_cannot_report_more_than_a_browser_could_have_evaluated() {
    let app = TestApp::new();
    let shop = shop(&app).await;
    // Over a real socket: a hundred batches through one server.
    let server = RealServer::start(&app.state);
    let http = reqwest::Client::new();
    let url = format!("{}/sdk/v1/events", server.url);
    let post = |key: &str, counts: Value| {
        let request = http.post(&url).bearer_auth(key).json(&batch(counts));
        async move {
            let response = request.send().await.expect("events request");
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: Value = response.json().await.unwrap_or(Value::Null);
            Answer {
                status,
                retry_after,
                body,
            }
        }
    };

    // What a page could really report is counted.
    let fine = post(
        &shop.client,
        json!([{"flag": "new-checkout", "variant": "on", "count": 120},
               {"flag": "new-checkout", "variant": "off", "count": 3}]),
    )
    .await;
    assert_eq!(fine.status, 202, "{:?}", fine.body);
    assert_eq!(stored(&app).await, 123);

    // One huge count (accepted up to 10^12 before): refused, naming the field and the limit.
    let huge = post(
        &shop.client,
        json!([{"flag": "new-checkout", "variant": "on", "count": 1_000_000_000_000u64}]),
    )
    .await;
    assert_eq!(huge.status, 400, "{:?}", huge.body);
    assert_eq!(huge.body["error"]["path"], "counts[0].count");
    assert!(
        message(&huge.body).contains(&client_limits::MAX_COUNT.to_string()),
        "{:?}",
        huge.body
    );

    // Many entries each within bounds, together beyond the batch's sum: refused whole.
    let per_entry = client_limits::MAX_COUNT;
    let entries = (client_limits::MAX_BATCH_TOTAL / per_entry + 1) as usize;
    let counts: Vec<Value> = (0..entries)
        .map(|i| {
            let variant = if i % 2 == 0 { "on" } else { "off" };
            json!({"flag": "new-checkout", "variant": variant, "count": per_entry})
        })
        .collect();
    let summed = post(&shop.client, Value::Array(counts)).await;
    assert_eq!(summed.status, 400, "{:?}", summed.body);
    assert_eq!(summed.body["error"]["path"], "counts");
    assert!(
        message(&summed.body).contains(&client_limits::MAX_BATCH_TOTAL.to_string()),
        "{:?}",
        summed.body
    );

    // More entries than a page has flags.
    let counts: Vec<Value> = (0..=client_limits::MAX_COUNTS)
        .map(|i| json!({"flag": format!("f-{i}"), "variant": "on", "count": 1}))
        .collect();
    let many = post(&shop.client, Value::Array(counts)).await;
    assert_eq!(many.status, 400, "{:?}", many.body);
    assert!(
        message(&many.body).contains(&client_limits::MAX_COUNTS.to_string()),
        "{:?}",
        many.body
    );
    assert_eq!(stored(&app).await, 123, "nothing of a refused batch is stored");

    // Over an hour: full batches until the key's hourly sum is reached, then refused whole.
    // (Should the clock hour turn during the loop, the sums start again: the loop allows it.)
    let full: Vec<Value> = (0..client_limits::MAX_BATCH_TOTAL / per_entry)
        .map(|_| json!({"flag": "new-checkout", "variant": "on", "count": per_entry}))
        .collect();
    let per_batch = client_limits::MAX_BATCH_TOTAL as i64;
    let mut accepted = 0i64;
    let mut refused = None;
    for _ in 0..2 * (client_limits::MAX_PER_HOUR / client_limits::MAX_BATCH_TOTAL) + 2 {
        let reply = post(&shop.client, Value::Array(full.clone())).await;
        if reply.status == 202 {
            accepted += per_batch;
        } else {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("the hourly limit refuses a batch");
    assert_eq!(refused.status, 429, "{:?}", refused.body);
    assert!(
        message(&refused.body).contains(&client_limits::MAX_PER_HOUR.to_string()),
        "{:?}",
        refused.body
    );
    let retry: u64 = refused
        .retry_after
        .as_deref()
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    let limit = client_limits::MAX_PER_HOUR as i64;
    assert!(accepted + 123 > limit - per_batch, "refused early: {accepted}");
    assert_eq!(
        stored(&app).await,
        123 + accepted,
        "the refused batch was not stored"
    );

    // A server key (a secret on a server) keeps its own, wider limits.
    let wide = post(
        &shop.server,
        json!([{"flag": "new-checkout", "variant": "on", "count": 1_000_000_000u64}]),
    )
    .await;
    assert_eq!(wide.status, 202, "{:?}", wide.body);
    assert_eq!(stored(&app).await, 123 + accepted + 1_000_000_000);
    server.stop().await;
}
