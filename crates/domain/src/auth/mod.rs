//! Authentication: password login with rate limiting, access tokens, and token checks.

pub mod api_keys;
pub mod password;
mod principal;
pub mod throttle;
pub mod token;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::{
    Services,
    error::{DomainError, ErrorKind},
    secret::Secret,
    store::StoreError,
    users::{self, User},
};
use password::Verified;
pub use principal::Principal;
use token::{TokenKeys, TokenProblem};

/// Authentication settings (the `[auth]` table of the configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Key that signs access tokens (HS256). When unset, generated once and stored in the
    /// database, encrypted, so every replica signs alike.
    pub jwt_secret: Option<Secret>,
    /// Lifetime of an access token, in minutes.
    pub access_token_ttl_minutes: u64,
    /// Failed logins per account from all addresses within `login_window_seconds`, after
    /// which the addresses that failed for it are held (the others still log in).
    pub login_max_failures_per_account: u32,
    /// Failed logins per client address over all accounts within `login_window_seconds`,
    /// after which the address is held.
    pub login_max_failures_per_ip: u32,
    /// Length of the window over which login failures count, in seconds.
    pub login_window_seconds: u64,
    /// Failed logins of an account from one address before each further one holds that
    /// pair for a growing delay.
    pub login_free_failures: u32,
    /// The longest of those delays, in seconds.
    pub login_max_delay_secs: u64,
    /// Email of an administrator to create at start when no user has it.
    pub admin_email: Option<String>,
    /// Password for `admin_email`.
    pub admin_password: Option<Secret>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            jwt_secret: None,
            access_token_ttl_minutes: 24 * 60,
            login_max_failures_per_account: 20,
            login_max_failures_per_ip: 100,
            login_window_seconds: 15 * 60,
            login_free_failures: 3,
            login_max_delay_secs: 30,
            admin_email: None,
            admin_password: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("too many failed login attempts; retry in {retry_after_secs} seconds")]
    RateLimited { retry_after_secs: u64 },
    #[error("authentication required: send an `Authorization: Bearer <token>` header")]
    MissingToken,
    #[error("the access token is malformed or its signature is invalid")]
    InvalidToken,
    #[error("the access token has expired; log in again")]
    TokenExpired,
    #[error("the access token was revoked; log in again")]
    TokenRevoked,
    #[error("the user of this access token no longer exists")]
    UnknownUser,
    #[error("administrator access required")]
    AdminRequired,
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DomainError for AuthError {
    fn kind(&self) -> ErrorKind {
        match self {
            AuthError::InvalidCredentials
            | AuthError::MissingToken
            | AuthError::InvalidToken
            | AuthError::TokenExpired
            | AuthError::TokenRevoked
            | AuthError::UnknownUser => ErrorKind::Unauthenticated,
            AuthError::RateLimited { .. } => ErrorKind::RateLimited,
            AuthError::InvalidRequest(_) => ErrorKind::Invalid,
            AuthError::AdminRequired => ErrorKind::Forbidden,
            AuthError::Store(StoreError::Unavailable(_)) => ErrorKind::Unavailable,
            AuthError::Store(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AuthError::InvalidCredentials => "invalid_credentials",
            AuthError::RateLimited { .. } => "too_many_login_attempts",
            AuthError::MissingToken => "missing_token",
            AuthError::InvalidToken => "invalid_token",
            AuthError::TokenExpired => "token_expired",
            AuthError::TokenRevoked => "token_revoked",
            AuthError::UnknownUser => "invalid_token",
            AuthError::AdminRequired => "admin_required",
            AuthError::InvalidRequest(_) => "invalid_request",
            AuthError::Store(StoreError::Unavailable(_)) => "database_unavailable",
            AuthError::Store(_) => "internal_error",
        }
    }
}

pub type AuthResult<T> = Result<T, AuthError>;

/// Token keys, login limits and the decoy hash, built once at start.
pub struct Auth {
    keys: TokenKeys,
    token_ttl: chrono::Duration,
    /// The login limits (see [`throttle`]).
    settings: AuthSettings,
    /// Verified against when the email is unknown, so both paths cost the same.
    decoy_hash: String,
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub user: User,
    pub access_token: String,
    pub expires_in_secs: i64,
}

impl Auth {
    pub fn new(settings: &AuthSettings, jwt_secret: &[u8]) -> Auth {
        Auth {
            keys: TokenKeys::new(jwt_secret),
            token_ttl: chrono::Duration::minutes(
                i64::try_from(settings.access_token_ttl_minutes).unwrap_or(i64::MAX / 120_000),
            ),
            settings: AuthSettings {
                jwt_secret: None,
                admin_password: None,
                ..settings.clone()
            },
            decoy_hash: password::hash("decoy password that matches nothing"),
        }
    }

    pub fn keys(&self) -> &TokenKeys {
        &self.keys
    }

    pub fn token_ttl_secs(&self) -> i64 {
        self.token_ttl.num_seconds()
    }

    pub fn issue_token(&self, user: &User) -> String {
        self.keys.issue(user, Utc::now(), self.token_ttl)
    }
}

/// Checks an email and password, and returns a fresh access token.
///
/// Failures are counted in the database ([`throttle`]); a held attempt answers
/// [`AuthError::RateLimited`] before the password is checked. An unknown email costs the
/// same argon2 verification as a known one. A login through an old hash scheme rehashes it.
pub async fn login(
    services: &Services,
    email: &str,
    password: &str,
    client: &str,
) -> AuthResult<LoginOutcome> {
    let auth = &services.auth;
    if password.len() > users::MAX_PASSWORD_BYTES {
        // No stored password is this long; refuse before spending a hash on it.
        return Err(AuthError::InvalidCredentials);
    }
    let email = email.trim().to_lowercase();
    throttle::check(services, &email, client).await?;

    let credentials = services.store.credentials_by_email(&email).await?;
    let stored_hash = credentials
        .as_ref()
        .map_or_else(|| auth.decoy_hash.clone(), |c| c.password_hash.clone());
    let verified = password::verify_blocking(password.to_string(), stored_hash).await;

    let (Some(credentials), Verified::Valid { needs_rehash }) = (credentials, verified) else {
        throttle::failed(services, &email, client).await?;
        return Err(AuthError::InvalidCredentials);
    };
    throttle::succeeded(services, &email, client).await;

    let user = credentials.user;
    if needs_rehash {
        let new_hash = password::hash_blocking(password.to_string()).await;
        match services
            .store
            .set_password_hash(user.id, &new_hash, false, Utc::now())
            .await
        {
            Ok(_) => tracing::info!(
                user_id = user.id,
                "rehashed a legacy password with argon2id"
            ),
            // The login itself succeeded; the upgrade is retried at the next login.
            Err(err) => {
                tracing::warn!(user_id = user.id, error = %err, "could not rehash a legacy password")
            }
        }
    }
    Ok(LoginOutcome {
        access_token: auth.issue_token(&user),
        expires_in_secs: auth.token_ttl.num_seconds(),
        user,
    })
}

/// Resolves a bearer token (an access token or an API key) to its user, loaded fresh from
/// the store.
pub async fn authenticate(services: &Services, token: &str) -> AuthResult<User> {
    if token.starts_with(api_keys::PREFIX) {
        return api_keys::authenticate(services, token).await;
    }
    let claims = services
        .auth
        .keys
        .verify(token)
        .map_err(|problem| match problem {
            TokenProblem::Expired => AuthError::TokenExpired,
            TokenProblem::Invalid => AuthError::InvalidToken,
        })?;
    let user_id: i64 = claims.sub.parse().map_err(|_| AuthError::InvalidToken)?;
    let user = services
        .store
        .user_by_id(user_id)
        .await?
        .ok_or(AuthError::UnknownUser)?;
    if claims.ver != user.token_version {
        return Err(AuthError::TokenRevoked);
    }
    Ok(user)
}

/// Creates the configured first administrator when no user has that email yet.
///
/// Returns the created user, or `None` when the email already exists.
pub async fn bootstrap_admin(
    services: &Services,
    email: &str,
    password: &Secret,
) -> Result<Option<User>, users::UserError> {
    let email = users::normalize_email(email)?;
    if services.store.credentials_by_email(&email).await?.is_some() {
        return Ok(None);
    }
    let created = users::provision(
        services,
        users::CreateUser {
            email,
            password: password.expose().to_string(),
            display_name: None,
            is_admin: true,
        },
    )
    .await;
    match created {
        Ok(user) => Ok(Some(user)),
        // Another replica created it first.
        Err(users::UserError::EmailTaken(_)) => Ok(None),
        Err(err) => Err(err),
    }
}
