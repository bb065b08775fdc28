//! Users: accounts, administrators, and the rules that keep at least one administrator.

use chrono::{DateTime, Utc};

use crate::{
    Services,
    auth::{AuthError, Principal, password},
    error::{DomainError, ErrorKind},
    store::{Guarded, StoreError},
};

/// A user account as the rest of the platform sees it (never with its password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub display_name: Option<String>,
    pub is_admin: bool,
    pub is_lti: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Tokens carry this number; bumping it (on a password change) revokes them all.
    pub token_version: i64,
}

/// A user with the stored password hash, for login only.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

/// A user about to be inserted; `password_hash` is already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub display_name: Option<String>,
    pub password_hash: String,
    pub is_admin: bool,
    pub is_lti: bool,
}

/// Profile fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub email: Option<String>,
    /// `Some(None)` clears the display name.
    pub display_name: Option<Option<String>>,
    pub is_admin: Option<bool>,
}

/// What a caller asks for when creating a user.
#[derive(Debug, Clone)]
pub struct CreateUser {
    pub email: String,
    pub password: String,
    pub display_name: Option<String>,
    pub is_admin: bool,
}

/// What an administrator may change on a user.
#[derive(Debug, Clone, Default)]
pub struct UpdateUser {
    pub email: Option<String>,
    pub display_name: Option<Option<String>>,
    pub is_admin: Option<bool>,
    pub password: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {0} not found")]
    NotFound(i64),
    #[error("a user with email {0} already exists")]
    EmailTaken(String),
    #[error("invalid email address: {0}")]
    InvalidEmail(String),
    #[error("{0}")]
    WeakPassword(String),
    #[error("display name must be at most 255 characters")]
    InvalidDisplayName,
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("the last administrator cannot be deleted or demoted; promote another user first")]
    LastAdmin,
    #[error(transparent)]
    Access(AuthError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<AuthError> for UserError {
    fn from(err: AuthError) -> Self {
        UserError::Access(err)
    }
}

impl From<StoreError> for UserError {
    fn from(err: StoreError) -> Self {
        UserError::Store(err)
    }
}

impl DomainError for UserError {
    fn kind(&self) -> ErrorKind {
        match self {
            UserError::NotFound(_) => ErrorKind::NotFound,
            UserError::EmailTaken(_) | UserError::LastAdmin => ErrorKind::Conflict,
            UserError::WrongPassword => ErrorKind::Forbidden,
            UserError::Access(err) => err.kind(),
            UserError::InvalidEmail(_)
            | UserError::WeakPassword(_)
            | UserError::InvalidDisplayName => ErrorKind::Invalid,
            UserError::Store(StoreError::Unavailable(_)) => ErrorKind::Unavailable,
            UserError::Store(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            UserError::NotFound(_) => "user_not_found",
            UserError::EmailTaken(_) => "email_taken",
            UserError::InvalidEmail(_) => "invalid_email",
            UserError::WeakPassword(_) => "weak_password",
            UserError::InvalidDisplayName => "invalid_display_name",
            UserError::LastAdmin => "last_admin",
            UserError::WrongPassword => "wrong_password",
            UserError::Access(err) => err.code(),
            UserError::Store(StoreError::Unavailable(_)) => "database_unavailable",
            UserError::Store(_) => "internal_error",
        }
    }
}

pub type UserResult<T> = Result<T, UserError>;

/// Trims and lower-cases an email, and checks it has the shape `local@domain`.
pub fn normalize_email(raw: &str) -> UserResult<String> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 320
        && !email.chars().any(char::is_whitespace)
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty() && !domain.is_empty() && !domain.contains('@')
            }
            None => false,
        };
    if valid {
        Ok(email)
    } else {
        Err(UserError::InvalidEmail(raw.trim().to_string()))
    }
}

/// Longer passwords are refused outright (hashing cost grows with length).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The minimum a new password must meet.
pub fn check_password_strength(password: &str) -> UserResult<()> {
    let n_chars = password.chars().count();
    if n_chars < 8 {
        return Err(UserError::WeakPassword(
            "password must be at least 8 characters".into(),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(UserError::WeakPassword(
            "password must be at most 1024 bytes".into(),
        ));
    }
    // Control characters (a pasted newline, NUL, escape) cannot be typed back at a login
    // form; stored hashes made elsewhere are not checked, only new passwords.
    if password.chars().any(char::is_control) {
        return Err(UserError::WeakPassword(
            "password must not contain control characters (newlines, tabs, NUL)".into(),
        ));
    }
    Ok(())
}

fn normalize_display_name(name: Option<String>) -> UserResult<Option<String>> {
    let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 255) {
        return Err(UserError::InvalidDisplayName);
    }
    Ok(name)
}

fn map_email_conflict(err: StoreError, email: &str) -> UserError {
    match err {
        StoreError::Conflict { .. } => UserError::EmailTaken(email.to_string()),
        other => UserError::Store(other),
    }
}

/// An administrator adds a user.
pub async fn create(services: &Services, actor: &Principal, req: CreateUser) -> UserResult<User> {
    actor.admin()?;
    provision(services, req).await
}

/// Adds a user with no one acting: the machine's operator (`switchyard users create`) and
/// the configured first administrator.
pub async fn provision(services: &Services, req: CreateUser) -> UserResult<User> {
    let email = normalize_email(&req.email)?;
    check_password_strength(&req.password)?;
    let display_name = normalize_display_name(req.display_name)?;
    let password_hash = password::hash_blocking(req.password).await;
    let new_user = NewUser {
        email: email.clone(),
        display_name,
        password_hash,
        is_admin: req.is_admin,
        is_lti: false,
    };
    services
        .store
        .insert_user(&new_user, Utc::now())
        .await
        .map_err(|err| map_email_conflict(err, &email))
}

/// A user, for an administrator or for themself.
pub async fn get(services: &Services, actor: &Principal, id: i64) -> UserResult<User> {
    if !(actor.is_admin() || (actor.session.is_none() && actor.user.id == id)) {
        return Err(AuthError::AdminRequired.into());
    }
    user(services, id).await
}

async fn user(services: &Services, id: i64) -> UserResult<User> {
    services
        .store
        .user_by_id(id)
        .await?
        .ok_or(UserError::NotFound(id))
}

pub async fn list(services: &Services, actor: &Principal) -> UserResult<Vec<User>> {
    actor.admin()?;
    Ok(services.store.list_users().await?)
}

/// Applies an administrator's changes, or a user's own change of display name. A
/// password change also revokes the user's tokens.
pub async fn update(
    services: &Services,
    actor: &Principal,
    id: i64,
    req: UpdateUser,
) -> UserResult<User> {
    let own_name = actor.session.is_none()
        && actor.user.id == id
        && req.email.is_none()
        && req.is_admin.is_none()
        && req.password.is_none();
    if !own_name {
        actor.admin()?;
    }
    let email = req.email.as_deref().map(normalize_email).transpose()?;
    let display_name = req.display_name.map(normalize_display_name).transpose()?;
    if let Some(password) = &req.password {
        check_password_strength(password)?;
    }
    let patch = UserPatch {
        email: email.clone(),
        display_name,
        is_admin: req.is_admin,
    };
    let now = Utc::now();
    let user = match services.store.update_user(id, &patch, now).await {
        Ok(Guarded::Done(user)) => user,
        Ok(Guarded::NotFound) => return Err(UserError::NotFound(id)),
        Ok(Guarded::LastAdmin) => return Err(UserError::LastAdmin),
        Err(err) => return Err(map_email_conflict(err, email.as_deref().unwrap_or(""))),
    };
    match req.password {
        Some(password) => set_password(services, user.id, password, true).await,
        None => Ok(user),
    }
}

/// Sets a new password. With `revoke_tokens`, every token issued so far stops working.
pub async fn set_password(
    services: &Services,
    id: i64,
    password: String,
    revoke_tokens: bool,
) -> UserResult<User> {
    check_password_strength(&password)?;
    let hash = password::hash_blocking(password).await;
    if !services
        .store
        .set_password_hash(id, &hash, revoke_tokens, Utc::now())
        .await?
    {
        return Err(UserError::NotFound(id));
    }
    user(services, id).await
}

/// A user changing their own password: the current one must match. Other sessions end.
pub async fn change_own_password(
    services: &Services,
    user: &User,
    current_password: String,
    new_password: String,
) -> UserResult<User> {
    check_password_strength(&new_password)?;
    let credentials = services
        .store
        .credentials_by_email(&user.email)
        .await?
        .ok_or(UserError::NotFound(user.id))?;
    match password::verify_blocking(current_password, credentials.password_hash).await {
        password::Verified::Valid { .. } => {
            set_password(services, user.id, new_password, true).await
        }
        password::Verified::Invalid => Err(UserError::WrongPassword),
    }
}

pub async fn delete(services: &Services, actor: &Principal, id: i64) -> UserResult<()> {
    actor.admin()?;
    match services.store.delete_user(id).await? {
        Guarded::Done(()) => Ok(()),
        Guarded::NotFound => Err(UserError::NotFound(id)),
        Guarded::LastAdmin => Err(UserError::LastAdmin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(
            normalize_email("  Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        for bad in ["", "alice", "@example.com", "alice@", "a b@c.d", "a@b@c"] {
            assert!(normalize_email(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_password_strength("short").is_err());
        assert!(check_password_strength("long enough").is_ok());
        assert!(check_password_strength("long\nenough").is_err());
        assert!(check_password_strength("long\u{0}enough").is_err());
        assert!(check_password_strength("épée à l'école").is_ok());
    }
}
