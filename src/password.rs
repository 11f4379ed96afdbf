//! Passwords: argon2id hashes in PHC form, verification, and the rules a new password (and the
//! email it belongs to) must follow. Used by the command line, the users API and the admin pages.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

/// The shortest password accepted for a new user or a password change.
pub const MIN_LENGTH: usize = 12;
/// The longest password accepted (argon2 takes any length; this bounds the work per login).
pub const MAX_LENGTH: usize = 1024;

/// Why a password or email is refused. The message is safe to show and never holds the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the password must be at least {MIN_LENGTH} characters long")]
    PasswordTooShort,
    #[error("the password must be at most {MAX_LENGTH} characters long")]
    PasswordTooLong,
    #[error("{0:?} is not an email address (expected something like name@example.com)")]
    Email(String),
}

/// Hashes a password with argon2id (default parameters, random salt) into a PHC string.
pub fn hash(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2id with default parameters and a generated salt cannot fail")
        .to_string()
}

/// Whether `password` matches a PHC hash made by [`hash`]. A malformed hash (such as the `!`
/// of an account without a password) never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Checks a new password's length (in characters).
pub fn check_new(password: &str) -> Result<(), CredentialError> {
    let n = password.chars().count();
    if n < MIN_LENGTH {
        Err(CredentialError::PasswordTooShort)
    } else if n > MAX_LENGTH {
        Err(CredentialError::PasswordTooLong)
    } else {
        Ok(())
    }
}

/// Checks and normalises an email address: trimmed, one `@` with text on both sides, a dot in
/// the domain, no spaces or control characters, at most 254 characters. Returns it lowercased
/// in the domain part (the local part is kept as typed; lookups ignore case anyway).
pub fn parse_email(email: &str) -> Result<String, CredentialError> {
    let trimmed = email.trim();
    let bad = || CredentialError::Email(trimmed.to_owned());
    if trimmed.len() > 254 || trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = trimmed.split_once('@').ok_or_else(bad)?;
    let domain_ok = !domain.contains('@')
        && domain.contains('.')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
    if local.is_empty() || local.len() > 64 || !domain_ok {
        return Err(bad());
    }
    Ok(format!("{local}@{}", domain.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash("correct horse battery");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterY", &phc));
        assert_ne!(phc, hash("correct horse battery"), "each hash has its own salt");
    }

    #[test]
    fn a_malformed_hash_never_verifies() {
        assert!(!verify("", "!"));
        assert!(!verify("anything", ""));
    }

    #[test]
    fn password_length_is_checked_in_characters() {
        assert_eq!(check_new("short"), Err(CredentialError::PasswordTooShort));
        assert_eq!(check_new("ééééééééééé"), Err(CredentialError::PasswordTooShort));
        assert_eq!(check_new("éééééééééééé"), Ok(()));
        assert_eq!(
            check_new(&"x".repeat(MAX_LENGTH + 1)),
            Err(CredentialError::PasswordTooLong)
        );
    }

    #[test]
    fn emails_are_checked_for_shape() {
        assert_eq!(parse_email(" Ann@Example.COM ").unwrap(), "Ann@example.com");
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "ann@ex..com",
            "a@b@c.com",
        ] {
            assert!(parse_email(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
