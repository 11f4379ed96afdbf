//! Stream tokens: a server key's caller gets, instead of its key, a token naming the key,
//! signed with a per-process secret (HMAC-SHA256, truncated to 128 bits). It is valid until the
//! end of the next hour, and the same within an hour, so the bulk answer (and its ETag) stays
//! the same for an hour at a time. A restart makes new secrets: clients evaluate again.

use std::sync::LazyLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::http::auth::SdkKey;

static TOKEN_SECRET: LazyLock<[u8; 32]> = LazyLock::new(|| {
    use rand::RngCore as _;
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    secret
});

/// Validity of a stream token: until the end of the hour after the one it was issued in.
const TOKEN_HOURS: u64 = 2;

/// Issues and verifies stream tokens.
pub struct StreamToken;

impl StreamToken {
    fn mac(message: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&*TOKEN_SECRET).expect("HMAC takes a key of any length");
        mac.update(message.as_bytes());
        mac
    }

    /// `v1.<environment>.<key id>.<expiry, Unix seconds>.<MAC>`.
    pub fn issue(key: &SdkKey, now: u64) -> String {
        let expires = (now / 3600 + TOKEN_HOURS) * 3600;
        let message = format!("v1.{}.{}.{expires}", key.environment_id, key.id);
        let tag = Self::mac(&message).finalize().into_bytes();
        format!("{message}.{}", hex::encode(&tag[..16]))
    }

    /// The environment and key a token names, if it is genuine and not expired.
    pub fn verify(token: &str, now: u64) -> Option<(i64, i64)> {
        let (message, tag) = token.rsplit_once('.')?;
        let tag = hex::decode(tag).ok()?;
        Self::mac(message)
            .verify_truncated_left(&tag)
            .ok()
            .filter(|()| tag.len() == 16)?;
        let mut parts = message.split('.');
        let (Some("v1"), Some(env), Some(key), Some(expires), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let expires: u64 = expires.parse().ok()?;
        (now < expires).then_some((env.parse().ok()?, key.parse().ok()?))
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::api_keys::KeyKind;

    #[test]
    fn stream_tokens_verify_until_they_expire_and_not_when_altered() {
        let key = SdkKey {
            id: 7,
            environment_id: 3,
            kind: KeyKind::Server,
        };
        let now = 1_700_000_000;
        let token = StreamToken::issue(&key, now);
        assert_eq!(
            StreamToken::issue(&key, now + 60),
            token,
            "stable within the hour"
        );
        assert_eq!(StreamToken::verify(&token, now), Some((3, 7)));
        assert_eq!(StreamToken::verify(&token, now + 3600), Some((3, 7)));
        assert_eq!(StreamToken::verify(&token, now + 2 * 3600 + 1), None);
        let forged = token.replacen("v1.3.7", "v1.4.7", 1);
        assert_eq!(StreamToken::verify(&forged, now), None);
        assert!(!token.contains("fs_srv_"));
    }
}
