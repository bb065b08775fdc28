//! API keys: long-lived secrets an administrator creates for servers that call the API
//! (the run API, ChatKit sessions). A key acts as the user who created it, with that
//! user's current rights.
//!
//! Invariant: a key is shown once, when created; only its SHA-256 is stored (keys are
//! 192 random bits, so a fast hash is enough) with an 8-character prefix to recognise it.

use chrono::{DateTime, Utc};

use super::{AuthError, AuthResult, Principal};
use crate::{Services, users::User};

/// What every API key starts with, so a bearer token can be told apart from a session
/// token without a database lookup.
pub const PREFIX: &str = "sy_key_";

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    /// The key's first characters, to recognise it in a list.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub user_id: i64,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
}

/// Hex SHA-256 of a secret.
pub fn hash(secret: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        secret.as_bytes(),
    ))
}

pub(crate) fn random_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random generator failed");
    format!("{prefix}{}", hex::encode(bytes))
}

/// Creates a key for the administrator `actor`; returns it with its secret (shown once).
pub async fn create(
    services: &Services,
    actor: &Principal,
    name: &str,
) -> AuthResult<(ApiKey, String)> {
    let actor = actor.admin()?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(AuthError::InvalidRequest(
            "a key's name is 1 to 128 characters".into(),
        ));
    }
    let secret = random_secret(PREFIX);
    let key = services
        .store
        .insert_api_key(
            &NewApiKey {
                user_id: actor.id,
                name: name.to_string(),
                prefix: secret[..PREFIX.len() + 8].to_string(),
                key_hash: hash(&secret),
            },
            Utc::now(),
        )
        .await?;
    Ok((key, secret))
}

pub async fn list(services: &Services, actor: &Principal) -> AuthResult<Vec<ApiKey>> {
    actor.admin()?;
    Ok(services.store.api_keys().await?)
}

/// Revokes a key at once; it authenticates nothing afterwards.
pub async fn revoke(services: &Services, actor: &Principal, id: i64) -> AuthResult<()> {
    actor.admin()?;
    if services.store.revoke_api_key(id, Utc::now()).await? {
        Ok(())
    } else {
        Err(AuthError::InvalidRequest(format!(
            "API key {id} does not exist or is revoked"
        )))
    }
}

/// The user an API key acts as.
pub(crate) async fn authenticate(services: &Services, secret: &str) -> AuthResult<User> {
    let key = services
        .store
        .api_key_by_hash(&hash(secret))
        .await?
        .filter(|k| k.revoked_at.is_none())
        .ok_or(AuthError::InvalidToken)?;
    let user = services
        .store
        .user_by_id(key.user_id)
        .await?
        .ok_or(AuthError::UnknownUser)?;
    // Recorded at most once a minute per key.
    let now = Utc::now();
    if key
        .last_used_at
        .is_none_or(|t| now - t > chrono::Duration::minutes(1))
    {
        services.store.touch_api_key(key.id, now).await?;
    }
    Ok(user)
}
