//! Password hashing: argon2id for new hashes; bcrypt and the seed system's PBKDF2 accepted on login.
//!
//! Formats recognised by [`verify`]:
//! - `$argon2id$v=19$m=…` (PHC string, what [`hash`] writes);
//! - `$2a$`, `$2b$`, `$2y$` bcrypt hashes;
//! - `<salt>$<64 hex digits>`: the seed system's PBKDF2-HMAC-SHA256 with 390,000 rounds,
//!   the salt used as its UTF-8 text.

use std::num::NonZeroU32;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier, password_hash::SaltString};
use aws_lc_rs::{pbkdf2, rand};

/// Rounds the seed system used for its PBKDF2 hashes.
const SEED_PBKDF2_ROUNDS: u32 = 390_000;

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The password matches. `needs_rehash` is set when the hash uses an old scheme.
    Valid {
        needs_rehash: bool,
    },
    Invalid,
}

/// Hashes a password with argon2id and a fresh random salt. CPU-heavy: see [`hash_blocking`].
pub fn hash(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt).expect("the system random generator failed");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt length");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters cannot fail on a valid salt")
        .to_string()
}

/// [`hash`] on the blocking thread pool, so it does not stall the async runtime.
pub async fn hash_blocking(password: String) -> String {
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .expect("password hashing task panicked")
}

/// Checks `password` against `stored`, whatever recognised scheme `stored` uses.
pub fn verify(password: &str, stored: &str) -> Verified {
    let matched = if stored.starts_with("$argon2") {
        return verify_argon2(password, stored);
    } else if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$")
    {
        bcrypt::verify(password, stored).unwrap_or(false)
    } else if let Some((salt, digest)) = seed_pbkdf2_parts(stored) {
        verify_seed_pbkdf2(password, salt, digest)
    } else {
        tracing::warn!("a stored password hash has an unrecognised format");
        false
    };
    if matched {
        Verified::Valid { needs_rehash: true }
    } else {
        Verified::Invalid
    }
}

/// [`verify`] on the blocking thread pool.
pub async fn verify_blocking(password: String, stored: String) -> Verified {
    tokio::task::spawn_blocking(move || verify(&password, &stored))
        .await
        .expect("password verification task panicked")
}

fn verify_argon2(password: &str, stored: &str) -> Verified {
    let Ok(parsed) = PasswordHash::new(stored) else {
        tracing::warn!("a stored argon2 hash could not be parsed");
        return Verified::Invalid;
    };
    if Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_err()
    {
        return Verified::Invalid;
    }
    // Hashes made with other argon2 variants or weaker parameters are upgraded too.
    let current = Argon2::default();
    let params = current.params();
    let same_params = parsed.algorithm.as_str() == "argon2id"
        && parsed.params.get_decimal("m") == Some(params.m_cost())
        && parsed.params.get_decimal("t") == Some(params.t_cost())
        && parsed.params.get_decimal("p") == Some(params.p_cost());
    Verified::Valid {
        needs_rehash: !same_params,
    }
}

fn seed_pbkdf2_parts(stored: &str) -> Option<(&str, &str)> {
    let (salt, digest) = stored.split_once('$')?;
    let well_formed =
        !salt.is_empty() && digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then_some((salt, digest))
}

fn verify_seed_pbkdf2(password: &str, salt: &str, digest_hex: &str) -> bool {
    let Ok(expected) = hex::decode(digest_hex) else {
        return false;
    };
    let rounds = NonZeroU32::new(SEED_PBKDF2_ROUNDS).expect("non-zero constant");
    // `pbkdf2::verify` compares in constant time.
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt.as_bytes(),
        password.as_bytes(),
        &expected,
    )
    .is_ok()
}

/// Computes a seed-format PBKDF2 hash. Only tests need to make these.
pub fn seed_pbkdf2_hash(password: &str, salt: &str) -> String {
    let mut out = [0u8; 32];
    let rounds = NonZeroU32::new(SEED_PBKDF2_ROUNDS).expect("non-zero constant");
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt.as_bytes(),
        password.as_bytes(),
        &mut out,
    );
    format!("{salt}${}", hex::encode(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_round_trip() {
        let stored = hash("correct horse");
        assert!(stored.starts_with("$argon2id$"));
        assert_eq!(
            verify("correct horse", &stored),
            Verified::Valid {
                needs_rehash: false
            }
        );
        assert_eq!(verify("wrong horse", &stored), Verified::Invalid);
    }

    #[test]
    fn bcrypt_hashes_verify_and_ask_for_rehash() {
        let stored = bcrypt::hash("legacy-pass", 4).unwrap();
        assert!(stored.starts_with("$2b$"));
        assert_eq!(
            verify("legacy-pass", &stored),
            Verified::Valid { needs_rehash: true }
        );
        assert_eq!(verify("other", &stored), Verified::Invalid);
        // `$2a$` is the same algorithm under an older prefix.
        let older = stored.replacen("$2b$", "$2a$", 1);
        assert_eq!(
            verify("legacy-pass", &older),
            Verified::Valid { needs_rehash: true }
        );
    }

    #[test]
    fn seed_pbkdf2_hashes_verify() {
        // Computed by the seed system's `hash_password` algorithm (salt used as text).
        let stored = seed_pbkdf2_hash("seed-password", "0123456789abcdef0123456789abcdef");
        assert_eq!(
            verify("seed-password", &stored),
            Verified::Valid { needs_rehash: true }
        );
        assert_eq!(verify("seed-passworD", &stored), Verified::Invalid);
    }

    #[test]
    fn unknown_formats_never_match() {
        for stored in ["", "plain", "$unknown$abc", "salt$nothex"] {
            assert_eq!(verify("plain", stored), Verified::Invalid);
        }
    }
}
