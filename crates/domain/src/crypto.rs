//! Secrets at rest: AES-256-GCM encryption of provider keys, tokens and passwords, with hints.
//!
//! Ciphertexts are `v1:` followed by base64url(nonce ‖ ciphertext ‖ tag). The version prefix
//! leaves room for key rotation. A key check (a fingerprint of the key) is stored in the
//! database so a server started with another key refuses to start instead of failing later.

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    digest, rand,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::error::{DomainError, ErrorKind};

const PREFIX: &str = "v1:";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the encryption key must be 32 bytes, given as 64 hex digits or base64")]
    BadKey,
    #[error("a stored secret could not be decrypted (wrong key or corrupted value)")]
    Undecryptable,
}

impl DomainError for CryptoError {
    fn kind(&self) -> ErrorKind {
        match self {
            CryptoError::BadKey => ErrorKind::Invalid,
            CryptoError::Undecryptable => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            CryptoError::BadKey => "bad_encryption_key",
            CryptoError::Undecryptable => "secret_undecryptable",
        }
    }
}

/// Encrypts and decrypts secret values with one 256-bit key.
pub struct SecretBox {
    key: LessSafeKey,
    fingerprint: String,
    /// Signs capability URLs (attachment links): derived from the key, so every replica
    /// signs alike and nothing about a link needs to be stored.
    url_key: aws_lc_rs::hmac::Key,
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> SecretBox {
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key fits AES-256");
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"switchyard secret box key check v1");
        ctx.update(key);
        let fingerprint = hex::encode(&ctx.finish().as_ref()[..12]);
        let derive = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
        let url_key_bytes = aws_lc_rs::hmac::sign(&derive, b"switchyard url tokens v1");
        SecretBox {
            key: LessSafeKey::new(unbound),
            fingerprint,
            url_key: aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                url_key_bytes.as_ref(),
            ),
        }
    }

    /// The token of a capability URL for `id` (48 hex digits), the same on every replica
    /// and after every restart; `purpose` keeps tokens of different links apart.
    pub fn url_token(&self, purpose: &str, id: &str) -> String {
        let mut message = Vec::with_capacity(purpose.len() + 1 + id.len());
        message.extend_from_slice(purpose.as_bytes());
        message.push(0);
        message.extend_from_slice(id.as_bytes());
        hex::encode(&aws_lc_rs::hmac::sign(&self.url_key, &message).as_ref()[..24])
    }

    /// Parses a key written as 64 hex digits or as base64 (standard or url-safe) of 32 bytes.
    pub fn parse_key(text: &str) -> Result<[u8; 32], CryptoError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| CryptoError::BadKey)?
        } else {
            let cleaned: String = text
                .trim_end_matches('=')
                .replace('+', "-")
                .replace('/', "_");
            URL_SAFE_NO_PAD
                .decode(cleaned)
                .map_err(|_| CryptoError::BadKey)?
        };
        bytes.try_into().map_err(|_| CryptoError::BadKey)
    }

    /// A fresh random key, written as 64 hex digits.
    pub fn generate_key() -> String {
        let mut key = [0u8; 32];
        rand::fill(&mut key).expect("the system random generator failed");
        hex::encode(key)
    }

    /// A non-secret fingerprint of the key, stored to detect a changed key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn encrypt(&self, plaintext: &str) -> String {
        let mut nonce_bytes = [0u8; NONCE_LEN];
        rand::fill(&mut nonce_bytes).expect("the system random generator failed");
        let mut buffer = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::empty(),
                &mut buffer,
            )
            .expect("AES-GCM sealing of a short buffer cannot fail");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buffer);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    pub fn decrypt(&self, stored: &str) -> Result<String, CryptoError> {
        let body = stored
            .strip_prefix(PREFIX)
            .ok_or(CryptoError::Undecryptable)?;
        let mut bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CryptoError::Undecryptable)?;
        if bytes.len() < NONCE_LEN {
            return Err(CryptoError::Undecryptable);
        }
        let mut sealed = bytes.split_off(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(&bytes).map_err(|_| CryptoError::Undecryptable)?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut sealed)
            .map_err(|_| CryptoError::Undecryptable)?;
        String::from_utf8(plain.to_vec()).map_err(|_| CryptoError::Undecryptable)
    }
}

/// What may be shown of a secret: `••••` and its last four characters (all hidden when short).
pub fn hint(secret: &str) -> String {
    let n_chars = secret.chars().count();
    if n_chars < 8 {
        return "••••".to_string();
    }
    let tail: String = secret.chars().skip(n_chars - 4).collect();
    format!("••••{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let key = SecretBox::parse_key(&SecretBox::generate_key()).unwrap();
        let sb = SecretBox::new(&key);
        let sealed = sb.encrypt("sk-live-abcdef123456");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("abcdef"));
        assert_eq!(sb.decrypt(&sealed).unwrap(), "sk-live-abcdef123456");
        // Two encryptions of one value differ (fresh nonce).
        assert_ne!(sb.encrypt("x"), sb.encrypt("x"));

        let other = SecretBox::new(&[7u8; 32]);
        assert_eq!(other.decrypt(&sealed), Err(CryptoError::Undecryptable));
        assert_ne!(other.fingerprint(), sb.fingerprint());
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(sb.decrypt(&tampered), Err(CryptoError::Undecryptable));
        assert_eq!(sb.decrypt("plain"), Err(CryptoError::Undecryptable));
    }

    #[test]
    fn keys_parse_from_hex_and_base64() {
        let hex_key = "00".repeat(32);
        assert_eq!(SecretBox::parse_key(&hex_key).unwrap(), [0u8; 32]);
        let b64 = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        assert_eq!(SecretBox::parse_key(&b64).unwrap(), [1u8; 32]);
        assert_eq!(SecretBox::parse_key("too short"), Err(CryptoError::BadKey));
    }

    #[test]
    fn hints_show_only_the_tail() {
        assert_eq!(hint("sk-1234567890abcd"), "••••abcd");
        assert_eq!(hint("short"), "••••");
    }
}
