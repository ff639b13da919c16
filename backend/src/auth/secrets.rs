//! Passwords and secrets: argon2id hashes for passwords, random secrets for sessions, CSRF and
//! API tokens (stored only as their SHA-256), the rules for account names and passwords, and
//! the comparison of secrets in constant time.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// API tokens start with this, so that a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "kokushi_";

/// The longest account name, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;
/// The longest password, in characters: argon2 reads every byte, so a password is bounded
/// before it is hashed or checked.
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// The shortest password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Hashes a password with argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane) and a
/// random salt, as a PHC string. Takes tens of milliseconds by design: call it off the async
/// workers (`web::block`).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("hashing a password failed: {e}")))
}

/// Whether `password` matches a stored PHC hash. An unreadable hash matches nothing.
pub fn verify_password(stored: &str, password: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A hash that no password matches in practice, checked when a sign-in names an unknown
/// account so that its answer takes as long as for a known one.
pub static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password("not a password of anyone's").unwrap_or_default());

/// 32 random bytes from the operating system, as 64 hex digits.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

/// `n` random bytes from the operating system, as `2n` hex digits.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

/// A random handle below 2^53 (exact in any JSON reader) and above 0, for names that must
/// reveal nothing (an annotator's assignments).
pub fn random_handle() -> i64 {
    let n = OsRng.next_u64() % ((1u64 << 53) - 1);
    i64::try_from(n + 1).unwrap_or(1)
}

/// A new personal API token: [`TOKEN_PREFIX`] and a secret.
pub fn new_api_token() -> String {
    format!("{TOKEN_PREFIX}{}", new_secret())
}

/// What is stored of a session cookie or API token: its SHA-256, in hex. The secrets carry
/// 256 bits of randomness, so a fast hash is enough (no dictionary to try).
pub fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Compares two secrets in time independent of where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Rules for account names, checked wherever one is set.
pub fn check_username(username: &str) -> Result<(), ApiError> {
    let ok = (1..=MAX_USERNAME_CHARS).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "user name {} must be 1 to {MAX_USERNAME_CHARS} characters of letters, digits and \
             . _ - @",
            for_log(username)
        )))
    }
}

/// Rules for passwords, checked wherever one is set.
pub fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "a password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters long \
             (this one has {n})"
        )))
    }
}

/// A name a caller sent, fit for a log line or a message: at most 64 characters, quoted, with
/// control characters escaped, so that it can neither flood a log nor forge a line of it.
pub fn for_log(name: &str) -> String {
    let mut cut: String = name.chars().take(MAX_USERNAME_CHARS).collect();
    if cut.len() < name.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_and_nothing_else() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse batterz"));
        assert!(!verify_password("not a hash", "correct horse battery"));
        let again = hash_password("correct horse battery").expect("hash");
        assert_ne!(hash, again, "a fresh salt each time");
    }

    #[test]
    fn secrets_are_random_and_stored_only_as_digests() {
        let (a, b) = (new_secret(), new_secret());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(digest(&a), digest(&a));
        assert_ne!(digest(&a), a);
        assert!(new_api_token().starts_with(TOKEN_PREFIX));
        assert_eq!(random_hex(8).len(), 16);
        // echo -n abc | sha256sum
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }

    #[test]
    fn names_in_logs_are_cut_and_cannot_forge_a_line() {
        assert_eq!(for_log("alice"), "\"alice\"");
        assert_eq!(for_log("a\nINFO forged"), "\"a\\nINFO forged\"");
        let long = "x".repeat(10_000);
        let shown = for_log(&long);
        assert!(shown.chars().count() <= MAX_USERNAME_CHARS + 3, "{shown}");
    }
}
