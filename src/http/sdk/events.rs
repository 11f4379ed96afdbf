//! `POST /sdk/v1/events`: evaluation counts aggregated by an SDK,
//! `{"start", "end", "counts": [{"flag", "variant", "count"}]}`. They are added in memory and
//! written with everything else pending at the next flush (`crate::events`).
//!
//! The body is read into a typed [`Batch`] the way the management API reads its bodies
//! ([`crate::http::api::json_body`]): a mistake is a 400 whose `path` names the field
//! (`counts[3].variant`). Unknown fields are ignored, so newer SDKs may send more.

use actix_web::http::header;
use actix_web::web::{self, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde_json::json;

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
    let batch = Batch::read(&body)?;
    if key.kind == KeyKind::Client {
        batch.check_client_limits()?;
    }

    let snapshot = state
        .snapshots
        .get(key.environment_id)
        .ok_or_else(crate::http::auth::environment_gone)?;
    // A client's clock may run ahead: nothing is counted in the future.
    let at = batch.end.0.min(crate::store::now_ms());
    let known = |c: &Count<'_>| {
        snapshot.engine.flag(c.flag).is_some_and(|flag| {
            // A client key only ever evaluates client-side flags.
            (key.kind == KeyKind::Server || flag.is_client_side())
                && flag.variations().any(|(variant, _)| variant == c.variant)
        })
    };
    let (counts, ignored): (Vec<Count<'_>>, Vec<Count<'_>>) = batch.counts().partition(known);
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

/// A batch as sent. Flags and variants are not yet checked against the environment.
#[derive(Debug, Deserialize)]
struct Batch {
    start: Time,
    end: Time,
    counts: Vec<Entry>,
}

/// One entry of `counts`.
#[derive(Debug, Deserialize)]
struct Entry {
    flag: Key,
    variant: Key,
    count: Times,
}

impl Batch {
    /// Reads a body; a 400 names the field at fault.
    fn read(body: &[u8]) -> Result<Batch, ApiError> {
        let batch: Batch = crate::http::api::json_body(body)?;
        if batch.end.0 < batch.start.0 {
            return Err(ApiError::bad_request("end is before start", Some("end")));
        }
        if batch.counts.len() > MAX_COUNTS {
            return Err(ApiError::bad_request(
                format!(
                    "counts has {} entries; at most {MAX_COUNTS} are accepted per request",
                    batch.counts.len()
                ),
                Some("counts"),
            ));
        }
        Ok(batch)
    }

    fn counts(&self) -> impl Iterator<Item = Count<'_>> {
        self.counts.iter().map(|e| Count {
            flag: &e.flag.0,
            variant: &e.variant.0,
            count: e.count.0,
        })
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
        if let Some(i) = self.counts.iter().position(|e| e.count.0 > MAX_COUNT) {
            return Err(ApiError::bad_request(
                format!("count must be a whole number from 0 to {MAX_COUNT} for a client key"),
                Some(&format!("counts[{i}].count")),
            ));
        }
        let total: u64 = self.counts.iter().map(|e| e.count.0).sum();
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

/// A flag or variant key: a string of 1 to [`MAX_KEY_LEN`] bytes.
#[derive(Debug)]
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        let key = String::deserialize(deserializer)?;
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(de::Error::invalid_length(
                key.len(),
                &format!("1 to {MAX_KEY_LEN} characters").as_str(),
            ));
        }
        Ok(Key(key))
    }
}

/// An entry's `count`: a whole number from 0 to [`MAX_COUNT`].
#[derive(Debug)]
struct Times(u64);

impl<'de> Deserialize<'de> for Times {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Times, D::Error> {
        deserializer.deserialize_any(TimesVisitor)
    }
}

struct TimesVisitor;

impl Visitor<'_> for TimesVisitor {
    type Value = Times;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a whole number from 0 to {MAX_COUNT}")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Times, E> {
        if n <= MAX_COUNT {
            Ok(Times(n))
        } else {
            Err(E::invalid_value(Unexpected::Unsigned(n), &self))
        }
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Times, E> {
        match u64::try_from(n) {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(n), &self)),
        }
    }
}

/// A time: Unix milliseconds (not negative), or an RFC 3339 string; kept as Unix milliseconds.
#[derive(Debug)]
struct Time(i64);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Time, D::Error> {
        deserializer.deserialize_any(TimeVisitor)
    }
}

struct TimeVisitor;

impl Visitor<'_> for TimeVisitor {
    type Value = Time;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a time: Unix milliseconds or an RFC 3339 string")
    }

    fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Time, E> {
        i64::try_from(ms)
            .map(Time)
            .map_err(|_| E::invalid_value(Unexpected::Unsigned(ms), &self))
    }

    fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Time, E> {
        if ms >= 0 {
            Ok(Time(ms))
        } else {
            Err(E::invalid_value(Unexpected::Signed(ms), &self))
        }
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Time, E> {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .ok()
            .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
            .filter(|&ms| ms >= 0)
            .map(Time)
            .ok_or_else(|| E::invalid_value(Unexpected::Str(s), &self))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn parse(body: &Value) -> Result<Batch, ApiError> {
        Batch::read(body.to_string().as_bytes())
    }

    fn error_path(body: Value) -> Option<String> {
        match parse(&body) {
            Ok(_) => None,
            Err(ApiError::BadRequest { path, .. }) => Some(path.unwrap_or_default()),
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn times_are_unix_ms_or_rfc3339() {
        let end = |body: Value| parse(&body).map(|b| b.end.0).ok();
        assert_eq!(
            end(json!({"start": "2024-05-01T10:00:00Z", "end": 1_714_557_660_000_u64, "counts": []})),
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

    /// A mistake deep in the batch is named by its whole path, and the message says what was
    /// expected; hostile strings are only ever data.
    #[test]
    fn a_bad_nested_field_is_named_by_its_path() {
        let ok = json!({"flag": "a,\"b\"\t<script>é", "variant": "on", "count": 1});
        let refused = |entry: Value| match parse(&json!({"start": 0, "end": 1, "counts": [ok, ok, entry]})) {
            Err(ApiError::BadRequest { code, message, path }) => (code, message, path.unwrap_or_default()),
            other => panic!("expected a 400, got {other:?}"),
        };
        let (code, message, path) = refused(json!({"flag": "a", "variant": ["<script>"], "count": 1}));
        assert_eq!((code, path.as_str()), ("bad_request", "counts[2].variant"));
        assert!(message.contains("expected a string"), "{message}");
        let (_, message, path) = refused(json!({"flag": "a", "variant": "x".repeat(129), "count": 1}));
        assert_eq!(path, "counts[2].variant");
        assert!(message.contains("1 to 128 characters"), "{message}");
        let (_, message, path) = refused(json!({"flag": "a", "variant": "on", "count": MAX_COUNT + 1}));
        assert_eq!(path, "counts[2].count");
        assert!(message.contains(&MAX_COUNT.to_string()), "{message}");
        let (_, message, path) = refused(json!({"flag": "a", "variant": "on"}));
        assert_eq!(path, "counts[2].count");
        assert!(message.contains("missing field `count`"), "{message}");
        // Unknown fields are ignored, at any depth: newer SDKs may send more.
        let batch = parse(&json!({"start": 0, "end": 1, "sdk": "x", "counts": [{"flag": "f", "variant": "v", "count": 2, "extra": {}}]}))
            .expect("unknown fields are ignored");
        assert_eq!(
            batch
                .counts()
                .map(|c| (c.flag, c.variant, c.count))
                .collect::<Vec<_>>(),
            [("f", "v", 2)]
        );
        // Escapes in keys are read, not kept raw.
        let batch = parse(&json!({"start": 0, "end": 1, "counts": [ok]})).unwrap();
        assert_eq!(batch.counts().next().unwrap().flag, "a,\"b\"\t<script>é");
    }
}
