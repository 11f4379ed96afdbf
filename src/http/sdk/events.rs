//! `POST /sdk/v1/events`: evaluation counts aggregated by an SDK,
//! `{"start", "end", "counts": [{"flag", "variant", "count"}]}`. They are added in memory and
//! written with everything else pending at the next flush (`crate::events`).

use actix_web::http::header;
use actix_web::web::{self, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt as _;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::events::Count;
use crate::http::auth::SdkKey;
use crate::state::Serving;
use crate::store::api_keys::KeyKind;

/// Largest body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most entries in `counts`.
pub const MAX_COUNTS: usize = 10_000;
/// Largest `count` of one entry.
pub const MAX_COUNT: u64 = 1_000_000_000_000;
/// What a client key may report. A client key ships in web pages, so anyone can post with it;
/// these bounds keep what it can add to insights and to the stale-flag list to what browsers
/// could really have evaluated. (The browser SDK, `/sdk/flagstaff.js`, reports nothing: the
/// server counts the evaluations it answers itself. These bounds are for a page that counts
/// its own.) docs/sdk-protocol.md states them.
pub mod client_limits {
    /// Most entries in one batch.
    pub const MAX_COUNTS: usize = 500;
    /// Largest `count` of one entry.
    pub const MAX_COUNT: u64 = 1_000;
    /// Largest sum of a batch's counts.
    pub const MAX_BATCH_TOTAL: u64 = 10_000;
    /// Largest sum of the counts one client key reports in one clock hour (UTC).
    pub const MAX_PER_HOUR: u64 = 1_000_000;
}

/// Longest flag key or variant key (the model's limit for flag keys).
const MAX_KEY_LEN: usize = 128;

pub async fn events(
    key: SdkKey,
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<Serving>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, &mut payload).await?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}"), None))?;
    let batch = Batch::parse(&value)?;
    if key.kind == KeyKind::Client {
        batch.check_client_limits()?;
    }

    let snapshot = state
        .snapshots
        .get(key.environment_id)
        .ok_or_else(crate::http::auth::environment_gone)?;
    // A client's clock may run ahead: nothing is counted in the future.
    let at = batch.end.min(crate::store::now_ms());
    let known = |c: &Count<'_>| {
        snapshot.engine.flag(c.flag).is_some_and(|flag| {
            // A client key only ever evaluates client-side flags.
            (key.kind == KeyKind::Server || flag.is_client_side())
                && flag.variations().any(|(variant, _)| variant == c.variant)
        })
    };
    let (counts, ignored): (Vec<Count<'_>>, Vec<Count<'_>>) = batch.counts.into_iter().partition(known);
    let accepted = counts.len();
    let total: u64 = counts.iter().map(|c| c.count).sum();
    if key.kind == KeyKind::Client {
        let now = crate::store::now_ms();
        state
            .events
            .reserve_client_report(key.id, now, total, client_limits::MAX_PER_HOUR)
            .map_err(|used| {
                let next_hour_ms = (crate::events::hour_of(now) + 3_600) * 1000;
                ApiError::TooManyRequests {
                    message: format!(
                        "this client key has reported {used} evaluations this hour; a client key may \
                         report at most {} per hour, and this batch has {total}",
                        client_limits::MAX_PER_HOUR
                    ),
                    retry_after: u64::try_from((next_hour_ms - now + 999) / 1000)
                        .unwrap_or(1)
                        .max(1),
                }
            })?;
    }
    crate::metrics::record_evaluations(crate::metrics::Source::Sdk, total);
    state
        .events
        .record(key.environment_id, at, counts.into_iter().filter(|c| c.count > 0));
    Ok(HttpResponse::Accepted().json(json!({"accepted": accepted, "ignored": ignored.len()})))
}

/// The request's body, at most [`MAX_BODY_BYTES`] (413 beyond).
pub(crate) async fn read_body(req: &HttpRequest, payload: &mut web::Payload) -> Result<BytesMut, ApiError> {
    let too_large = || ApiError::PayloadTooLarge(format!("the body is larger than {MAX_BODY_BYTES} bytes"));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(4096).min(MAX_BODY_BYTES));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("the body could not be read: {e}"), None))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A parsed batch. Flags and variants are not yet checked against the environment.
struct Batch<'a> {
    end: i64,
    counts: Vec<Count<'a>>,
}

impl<'a> Batch<'a> {
    fn parse(value: &'a Value) -> Result<Batch<'a>, ApiError> {
        let object = value
            .as_object()
            .ok_or_else(|| ApiError::bad_request("the body must be a JSON object", None))?;
        let start = time_field(object, "start")?;
        let end = time_field(object, "end")?;
        if end < start {
            return Err(ApiError::bad_request("end is before start", Some("end")));
        }
        let entries = object
            .get("counts")
            .ok_or_else(|| ApiError::bad_request("counts is required", Some("counts")))?
            .as_array()
            .ok_or_else(|| ApiError::bad_request("counts must be an array", Some("counts")))?;
        if entries.len() > MAX_COUNTS {
            return Err(ApiError::bad_request(
                format!(
                    "counts has {} entries; at most {MAX_COUNTS} are accepted per request",
                    entries.len()
                ),
                Some("counts"),
            ));
        }
        let counts = entries
            .iter()
            .enumerate()
            .map(|(i, entry)| count(i, entry))
            .collect::<Result<_, _>>()?;
        Ok(Batch { end, counts })
    }

    /// Refuses a client key's batch beyond [`client_limits`], naming the limit.
    fn check_client_limits(&self) -> Result<(), ApiError> {
        use client_limits::{MAX_BATCH_TOTAL, MAX_COUNT, MAX_COUNTS};
        if self.counts.len() > MAX_COUNTS {
            return Err(ApiError::bad_request(
                format!(
                    "counts has {} entries; a client key may send at most {MAX_COUNTS} per request",
                    self.counts.len()
                ),
                Some("counts"),
            ));
        }
        if let Some(i) = self.counts.iter().position(|c| c.count > MAX_COUNT) {
            return Err(ApiError::bad_request(
                format!("count must be a whole number from 0 to {MAX_COUNT} for a client key"),
                Some(&format!("counts[{i}].count")),
            ));
        }
        let total: u64 = self.counts.iter().map(|c| c.count).sum();
        if total > MAX_BATCH_TOTAL {
            return Err(ApiError::bad_request(
                format!(
                    "the counts add up to {total}; a client key may report at most {MAX_BATCH_TOTAL} \
                     evaluations per request"
                ),
                Some("counts"),
            ));
        }
        Ok(())
    }
}

fn count(i: usize, entry: &Value) -> Result<Count<'_>, ApiError> {
    let path = |field: &str| format!("counts[{i}]{field}");
    let entry = entry
        .as_object()
        .ok_or_else(|| ApiError::bad_request("must be an object", Some(&path(""))))?;
    let key = |field: &str| -> Result<&str, ApiError> {
        let path = path(&format!(".{field}"));
        match entry.get(field) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_KEY_LEN => Ok(s),
            Some(Value::String(_)) => Err(ApiError::bad_request(
                format!("{field} must be 1 to {MAX_KEY_LEN} characters long"),
                Some(&path),
            )),
            Some(_) => Err(ApiError::bad_request(
                format!("{field} must be a string"),
                Some(&path),
            )),
            None => Err(ApiError::bad_request(format!("{field} is required"), Some(&path))),
        }
    };
    let flag = key("flag")?;
    let variant = key("variant")?;
    let count = match entry.get("count") {
        Some(n) => n.as_u64().filter(|&n| n <= MAX_COUNT).ok_or_else(|| {
            ApiError::bad_request(
                format!("count must be a whole number from 0 to {MAX_COUNT}"),
                Some(&path(".count")),
            )
        })?,
        None => return Err(ApiError::bad_request("count is required", Some(&path(".count")))),
    };
    Ok(Count { flag, variant, count })
}

/// A time: Unix milliseconds, or an RFC 3339 string.
fn time_field(object: &Map<String, Value>, field: &str) -> Result<i64, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            format!("{field} must be a time: Unix milliseconds or an RFC 3339 string"),
            Some(field),
        )
    };
    match object.get(field) {
        None => Err(ApiError::bad_request(format!("{field} is required"), Some(field))),
        Some(Value::Number(n)) => n.as_i64().filter(|&ms| ms >= 0).ok_or_else(invalid),
        Some(Value::String(s)) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| invalid())?;
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
                .ok()
                .filter(|&ms| ms >= 0)
                .ok_or_else(invalid)
        }
        Some(_) => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_path(body: Value) -> Option<String> {
        match Batch::parse(&body) {
            Ok(_) => None,
            Err(ApiError::BadRequest { path, .. }) => Some(path.unwrap_or_default()),
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn times_are_unix_ms_or_rfc3339() {
        let end = |body: Value| Batch::parse(&body).map(|b| b.end).ok();
        assert_eq!(
            end(json!({"start": "2024-05-01T10:00:00Z", "end": 1714557660000u64, "counts": []})),
            Some(1_714_557_660_000)
        );
        assert_eq!(
            end(json!({"start": 0, "end": "2024-05-01T12:00:00.5+02:00", "counts": []})),
            Some(1_714_557_600_500)
        );
    }

    #[test]
    fn every_mistake_names_its_field() {
        let ok = json!({"flag": "a", "variant": "on", "count": 1});
        assert_eq!(error_path(json!({"start": 0, "end": 1, "counts": [ok]})), None);
        assert_eq!(error_path(json!([])), Some(String::new()));
        assert_eq!(
            error_path(json!({"end": 1, "counts": []})).as_deref(),
            Some("start")
        );
        assert_eq!(
            error_path(json!({"start": "yesterday", "end": 1, "counts": []})).as_deref(),
            Some("start")
        );
        assert_eq!(
            error_path(json!({"start": -5, "end": 1, "counts": []})).as_deref(),
            Some("start")
        );
        assert_eq!(
            error_path(json!({"start": 2, "end": 1, "counts": []})).as_deref(),
            Some("end")
        );
        assert_eq!(
            error_path(json!({"start": 0, "end": 1})).as_deref(),
            Some("counts")
        );
        assert_eq!(
            error_path(json!({"start": 0, "end": 1, "counts": {}})).as_deref(),
            Some("counts")
        );
        let bad = |entry: Value| error_path(json!({"start": 0, "end": 1, "counts": [ok, entry]}));
        assert_eq!(bad(json!(3)).as_deref(), Some("counts[1]"));
        assert_eq!(
            bad(json!({"variant": "on", "count": 1})).as_deref(),
            Some("counts[1].flag")
        );
        assert_eq!(
            bad(json!({"flag": "", "variant": "on", "count": 1})).as_deref(),
            Some("counts[1].flag")
        );
        assert_eq!(
            bad(json!({"flag": "a", "variant": 1, "count": 1})).as_deref(),
            Some("counts[1].variant")
        );
        assert_eq!(
            bad(json!({"flag": "a", "variant": "on", "count": -1})).as_deref(),
            Some("counts[1].count")
        );
        assert_eq!(
            bad(json!({"flag": "a", "variant": "on", "count": 1.5})).as_deref(),
            Some("counts[1].count")
        );
        assert_eq!(
            bad(json!({"flag": "a", "variant": "on"})).as_deref(),
            Some("counts[1].count")
        );
        let many: Vec<Value> = (0..=MAX_COUNTS).map(|_| ok.clone()).collect();
        assert_eq!(
            error_path(json!({"start": 0, "end": 1, "counts": many})).as_deref(),
            Some("counts")
        );
    }
}
