//! Access tokens: HS256 JWTs carrying `sub`, `email`, `is_admin`, `iat` and `exp`.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::users::User;

/// The claims of an access token. `type` is always `"access"`, as in the seed system.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub email: String,
    pub is_admin: bool,
    pub iat: i64,
    pub exp: i64,
    /// The user's token version when issued; a mismatch means the token was revoked.
    #[serde(default)]
    pub ver: i64,
    #[serde(rename = "type")]
    pub token_type: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    Expired,
    Invalid,
}

/// Signs and checks access tokens with one symmetric key.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub fn new(secret: &[u8]) -> TokenKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn issue(&self, user: &User, now: DateTime<Utc>, ttl: chrono::Duration) -> String {
        let claims = Claims {
            sub: user.id.to_string(),
            email: user.email.clone(),
            is_admin: user.is_admin,
            iat: now.timestamp(),
            exp: (now + ttl).timestamp(),
            ver: user.token_version,
            token_type: "access".to_string(),
        };
        self.sign(&claims)
    }

    /// Signs arbitrary claims; `issue` is the normal entry point.
    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenProblem> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenProblem::Expired,
                _ => TokenProblem::Invalid,
            })?;
        if data.claims.token_type != "access" {
            return Err(TokenProblem::Invalid);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        let now = Utc::now();
        User {
            id: 7,
            email: "a@b.c".into(),
            display_name: None,
            is_admin: true,
            is_lti: false,
            created_at: now,
            updated_at: now,
            token_version: 0,
        }
    }

    #[test]
    fn issued_tokens_verify() {
        let keys = TokenKeys::new(b"k1-k1-k1-k1-k1-k1-k1-k1-k1-k1-k1");
        let token = keys.issue(&user(), Utc::now(), chrono::Duration::minutes(5));
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.is_admin), ("7", true));
    }

    #[test]
    fn expired_forged_and_foreign_tokens_are_refused() {
        let keys = TokenKeys::new(b"k1-k1-k1-k1-k1-k1-k1-k1-k1-k1-k1");
        let expired = keys.issue(
            &user(),
            Utc::now() - chrono::Duration::hours(2),
            chrono::Duration::hours(1),
        );
        assert_eq!(keys.verify(&expired), Err(TokenProblem::Expired));

        let other = TokenKeys::new(b"k2-k2-k2-k2-k2-k2-k2-k2-k2-k2-k2");
        let forged = other.issue(&user(), Utc::now(), chrono::Duration::minutes(5));
        assert_eq!(keys.verify(&forged), Err(TokenProblem::Invalid));
        assert_eq!(keys.verify("not.a.jwt"), Err(TokenProblem::Invalid));

        let mut claims = keys
            .verify(&keys.issue(&user(), Utc::now(), chrono::Duration::minutes(5)))
            .unwrap();
        claims.token_type = "refresh".into();
        assert_eq!(keys.verify(&keys.sign(&claims)), Err(TokenProblem::Invalid));
    }
}
