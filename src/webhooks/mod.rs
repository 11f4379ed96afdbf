//! Webhooks (DESIGN.md §10): every audited change of a project, delivered to the team's other
//! tools, signed, in order, never lost.
//!
//! The promise: an event exists exactly when its change committed, because the audit log *is*
//! the outbox — an event is built from its audit entry when it is delivered, never stored apart.
//! Each webhook's position in the log and every attempt live in the operational database
//! ([`crate::store::webhooks`]), so delivering never republishes `flagstaff.db`. The deliverer
//! ([`deliver`]) moves a webhook's position past an entry only after a 2xx answer, or after the
//! entry kept failing for the retry window (24 hours; the webhook is then disabled and admins see
//! why), so a restart or `kill -9` between a delivery and its record sends that event again
//! (at-least-once; receivers tell repeats by `Flagstaff-Event-Id`) and never skips or reorders one.
//!
//! This module holds what involves no I/O: which changes a webhook wants ([`Filter`]), the event
//! built from an audit entry ([`Event`]), its Slack text, and the signature.

pub mod address;
pub mod deliver;

use hmac::{Hmac, Mac as _};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::store::audit::AuditEntry;

/// Event types a webhook may name (or `<family>.*`, or `*`).
pub const EVENT_TYPES: &[&str] = &[
    "flag.created",
    "flag.updated",
    "flag.deleted",
    "segment.created",
    "segment.updated",
    "segment.deleted",
    "environment.created",
    "environment.updated",
    "environment.deleted",
    "project.created",
    "project.updated",
    "key.created",
    "key.revoked",
    "webhook.created",
    "webhook.updated",
    "webhook.deleted",
    "schedule.created",
    "schedule.cancelled",
    "schedule.applied",
    "schedule.failed",
];

/// The type of the event the "send test event" button sends.
pub const TEST_EVENT: &str = "webhook.test";

/// The body's shape: Flagstaff's JSON event, or `{"text": …}` for Slack and Mattermost incoming
/// webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Json,
    Slack,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Slack => "slack",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "json" => Some(Format::Json),
            "slack" => Some(Format::Slack),
            _ => None,
        }
    }
}

/// Checks one entry of a webhook's `events`: `*`, a type of [`EVENT_TYPES`], or `<family>.*` of
/// one of their families. The error says what is accepted.
pub fn check_event_pattern(pattern: &str) -> Result<(), String> {
    if pattern == "*" || EVENT_TYPES.contains(&pattern) {
        return Ok(());
    }
    if let Some(family) = pattern.strip_suffix(".*")
        && EVENT_TYPES.iter().any(|t| t.split('.').next() == Some(family))
    {
        return Ok(());
    }
    Err(format!(
        "unknown event type {pattern:?}: use \"*\", a family such as \"flag.*\", or one of {}",
        EVENT_TYPES.join(", ")
    ))
}

/// Checks a webhook's URL: absolute `http://` or `https://` with a host, no fragment, at most
/// 2,048 characters, and — unless `allow_private` — not a refused literal address (names are
/// checked on what they resolve to, at each attempt). Returns it as the URL parser writes it.
pub fn check_url(url: &str, allow_private: bool) -> Result<String, String> {
    let url = url.trim();
    if url.is_empty() || url.len() > 2048 {
        return Err("url is required: an http:// or https:// URL of at most 2048 characters".into());
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("url is not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "url must be http:// or https://, not {}:",
            parsed.scheme()
        ));
    }
    if parsed.fragment().is_some() {
        return Err("url must not have a #fragment".into());
    }
    let ip = match parsed.host() {
        None => return Err("url must name a host".into()),
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
    };
    if let Some(ip) = ip
        && !allow_private
        && let Some(reason) = address::refused(ip)
    {
        return Err(format!(
            "url points to {ip}, {reason}: webhooks may not reach it unless the server runs with \
             --webhook-allow-private"
        ));
    }
    Ok(parsed.to_string())
}

/// Checks a webhook's events: at least one, each known (error: the index and why); repeats
/// are dropped.
pub fn check_events(events: &[String]) -> Result<Vec<String>, (usize, String)> {
    if events.is_empty() {
        return Err((
            0,
            "events must name at least one event type, or \"*\" for all".into(),
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let e = e.trim();
        check_event_pattern(e).map_err(|m| (i, m))?;
        if !out.iter().any(|o| o == e) {
            out.push(e.to_owned());
        }
    }
    Ok(out)
}

/// Checks a secret given by the caller: 16 to 256 characters, no control characters or spaces
/// at either end.
pub fn check_secret(secret: &str) -> Result<String, String> {
    let n = secret.chars().count();
    if !(16..=256).contains(&n) || secret.chars().any(char::is_control) || secret.trim() != secret {
        return Err(
            "secret must be 16 to 256 characters, without control characters or surrounding spaces \
                    (leave it out to have one generated)"
                .into(),
        );
    }
    Ok(secret.to_owned())
}

/// Which changes a webhook wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub events: Vec<String>,
    /// `None`: every environment. Otherwise changes of these environments, plus changes that
    /// concern every environment (a flag's definition, a segment).
    pub environments: Option<Vec<String>>,
}

impl Filter {
    /// Whether an event of `event_type` in `environment` is wanted.
    pub fn wants(&self, event_type: &str, environment: Option<&str>) -> bool {
        let type_ok = self.events.iter().any(|p| {
            p == "*"
                || p == event_type
                || p.strip_suffix(".*")
                    .is_some_and(|family| event_type.split('.').next() == Some(family))
        });
        let env_ok = match (&self.environments, environment) {
            (None, _) | (_, None) => true,
            (Some(envs), Some(env)) => envs.iter().any(|e| e == env),
        };
        type_ok && env_ok
    }
}

/// The event type of an audit entry: `<family>.<past tense>` (`flag_state` changes are
/// `flag.updated` with an `environment`).
pub fn event_type(entry: &AuditEntry) -> String {
    let family = match entry.entity_kind.as_str() {
        "flag" | "flag_state" => "flag",
        "api_key" => "key",
        "admin_token" => "token",
        other => other,
    };
    let verb = match entry.action.as_str() {
        "create" => "created",
        "delete" => "deleted",
        "revoke" => "revoked",
        "import" if entry.before.is_none() => "created",
        "update" | "import" | "restore" | "rotate_secret" | "change_password" => "updated",
        "cancel" => "cancelled",
        "apply" => "applied",
        "fail" => "failed",
        other => other,
    };
    format!("{family}.{verb}")
}

/// What changed, in an event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resource {
    /// The audit entry's kind: `flag`, `flag_state`, `segment`, `environment`, `project`,
    /// `api_key`, `webhook`…
    pub kind: String,
    pub key: Option<String>,
}

/// The JSON body of a delivery (DESIGN.md §10).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Stable across retries of the same event; a receiver drops repeats by it.
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// RFC 3339, when the change was made.
    pub at: String,
    pub project: Option<String>,
    pub environment: Option<String>,
    pub actor: String,
    pub resource: Resource,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// The audit entry (none for a test event).
    pub audit_id: Option<i64>,
}

impl Event {
    /// The event of an audit entry.
    pub fn from_audit(entry: &AuditEntry) -> Event {
        // Audit ids restart after a restore from an older backup; the time and project make the
        // id differ from an event a receiver saw before the restore.
        let digest = Sha256::digest(format!(
            "{}\n{}\n{}",
            entry.id,
            entry.at,
            entry.project.as_deref().unwrap_or_default()
        ));
        Event {
            id: format!("evt_{}", hex::encode(&digest[..16])),
            event_type: event_type(entry),
            at: entry.at.clone(),
            project: entry.project.clone(),
            environment: entry.environment.clone(),
            actor: entry.actor.clone(),
            resource: Resource {
                kind: entry.entity_kind.clone(),
                key: entry.entity_key.clone(),
            },
            before: entry.before.clone(),
            after: entry.after.clone(),
            audit_id: Some(entry.id),
        }
    }

    /// The body sent in `format`.
    pub fn body(&self, format: Format) -> Vec<u8> {
        let value = match format {
            Format::Json => serde_json::to_value(self).unwrap_or(Value::Null),
            Format::Slack => serde_json::json!({ "text": self.slack_text() }),
        };
        value.to_string().into_bytes()
    }

    /// One line a person reads in Slack or Mattermost: "alice@example.com turned on
    /// new-checkout in production". `&`, `<` and `>` are escaped as Slack requires.
    pub fn slack_text(&self) -> String {
        let actor = &self.actor;
        let key = self.resource.key.as_deref().unwrap_or("");
        let name_of = |side: &Option<Value>| {
            side.as_ref()
                .and_then(|v| v.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let place = match (&self.project, &self.environment) {
            (Some(p), Some(e)) => format!(" in {p}/{e}"),
            (Some(p), None) => format!(" in {p}"),
            _ => String::new(),
        };
        let text = if self.event_type == TEST_EVENT {
            format!("Test event from Flagstaff{place}, sent by {actor}: this webhook works.")
        } else if self.resource.kind == "flag_state" {
            let enabled = |side: &Option<Value>| {
                side.as_ref()
                    .and_then(|v| v.get("enabled"))
                    .and_then(Value::as_bool)
            };
            let env = self.environment.as_deref().unwrap_or("");
            match (enabled(&self.before), enabled(&self.after)) {
                (Some(false), Some(true)) => format!("{actor} turned on {key} in {env}"),
                (Some(true), Some(false)) => format!("{actor} turned off {key} in {env}"),
                _ => format!("{actor} changed {key} in {env}"),
            }
        } else {
            let noun = match self.resource.kind.as_str() {
                "api_key" => "SDK key",
                "admin_token" => "admin token",
                other => other,
            };
            let verb = match self.event_type.split_once('.').map(|(_, v)| v) {
                Some("updated") => "changed",
                Some(v) => v,
                None => "changed",
            };
            let named = match self.resource.kind.as_str() {
                "api_key" | "webhook" | "admin_token" => name_of(&self.after)
                    .or_else(|| name_of(&self.before))
                    .or_else(|| {
                        self.after
                            .as_ref()
                            .or(self.before.as_ref())
                            .and_then(|v| v.get("url"))
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| key.to_owned()),
                _ => key.to_owned(),
            };
            format!("{actor} {verb} {noun} {named}{place}")
        };
        slack_escape(&text)
    }
}

/// Slack's three control characters in message text.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The `Flagstaff-Signature` header of `body` sent at `t` (Unix seconds):
/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A new signing secret: `whsec_` and 32 random bytes.
pub fn generate_secret() -> String {
    crate::keys::generate("whsec_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, action: &str, before: Option<Value>, after: Option<Value>) -> AuditEntry {
        AuditEntry {
            id: 7,
            at: "2026-12-07T10:00:00.000Z".into(),
            actor: "alice@example.com".into(),
            actor_user_id: Some(1),
            action: action.into(),
            project: Some("shop".into()),
            environment: (kind == "flag_state").then(|| "production".into()),
            entity_kind: kind.into(),
            entity_key: Some("new-checkout".into()),
            before,
            after,
        }
    }

    #[test]
    fn types_follow_the_entry() {
        let cases = [
            ("flag", "create", None, "flag.created"),
            ("flag", "import", None, "flag.created"),
            ("flag", "import", Some(Value::Null), "flag.updated"),
            ("flag", "restore", Some(Value::Null), "flag.updated"),
            ("flag_state", "update", Some(Value::Null), "flag.updated"),
            ("segment", "delete", Some(Value::Null), "segment.deleted"),
            ("api_key", "revoke", Some(Value::Null), "key.revoked"),
            ("webhook", "rotate_secret", Some(Value::Null), "webhook.updated"),
        ];
        for (kind, action, before, expected) in cases {
            assert_eq!(
                event_type(&entry(kind, action, before, None)),
                expected,
                "{kind} {action}"
            );
        }
    }

    #[test]
    fn filters_match_types_families_and_environments() {
        let filter = Filter {
            events: vec!["segment.*".into(), "flag.updated".into()],
            environments: Some(vec!["production".into()]),
        };
        assert!(filter.wants("flag.updated", Some("production")));
        assert!(
            filter.wants("flag.updated", None),
            "a definition concerns every environment"
        );
        assert!(!filter.wants("flag.updated", Some("staging")));
        assert!(filter.wants("segment.deleted", None));
        assert!(!filter.wants("flag.created", None));
        assert!(!filter.wants("segmentx.created", None));
        let all = Filter {
            events: vec!["*".into()],
            environments: None,
        };
        assert!(all.wants("key.created", Some("staging")));
    }

    #[test]
    fn patterns_are_checked() {
        for ok in ["*", "flag.*", "flag.updated", "schedule.applied", "key.*"] {
            assert!(check_event_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["flag.update", "flags.*", "", "**", "flag.*.*", "<script>"] {
            assert!(check_event_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slack_text_says_what_happened_and_escapes() {
        let on = Event::from_audit(&entry(
            "flag_state",
            "update",
            Some(serde_json::json!({"enabled": false})),
            Some(serde_json::json!({"enabled": true})),
        ));
        assert_eq!(
            on.slack_text(),
            "alice@example.com turned on new-checkout in production"
        );
        let mut hostile = entry("segment", "create", None, Some(serde_json::json!({})));
        hostile.actor = "<script>&\"bob\"".into();
        assert_eq!(
            Event::from_audit(&hostile).slack_text(),
            "&lt;script&gt;&amp;\"bob\" created segment new-checkout in shop"
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // Expected value from Python: hmac.new(b"Jefe", b"0.what do ya want for nothing?", sha256).
        assert_eq!(
            signature("Jefe", 0, b"what do ya want for nothing?"),
            "t=0,v1=37f471929915ccd2cbbe79feb84ffcff4f2bb25e15fc41c2506687331ae179cc"
        );
        let id = Event::from_audit(&entry("flag", "create", None, None)).id;
        assert_eq!(id, Event::from_audit(&entry("flag", "create", None, None)).id);
        assert!(id.starts_with("evt_") && id.len() == 36);
    }
}
