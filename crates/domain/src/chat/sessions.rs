//! Embedded ChatKit sessions, as OpenAI's hosted ChatKit offers them: an integrator's
//! server (with an API key or an administrator's token) creates a session for one of
//! its end users and one workflow, and hands the short-lived `client_secret` to the
//! ChatKit client in the page, which sends it as its bearer token.
//!
//! Invariants: a session's secret is stored as a SHA-256 only; it works until it expires
//! or is cancelled; everything done with it is scoped to its workflow and its end user
//! (threads carry the end user, and a session sees only that end user's threads of that
//! workflow); its request rate limit is counted per process.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{ChatError, ChatResult, Principal, new_id};
use crate::{Services, auth::api_keys, users::User, workflows};

/// What every session secret starts with.
pub const PREFIX: &str = "sy_cks_";

/// The default and the longest lifetime of a session.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, PartialEq)]
pub struct ChatSession {
    pub id: String,
    pub created_by: i64,
    pub workflow_id: i64,
    /// A pinned version; the production version otherwise.
    pub version_id: Option<i64>,
    pub end_user: String,
    /// Values the runs start with (over the state schema's defaults).
    pub state_variables: Option<Value>,
    pub max_requests_per_minute: Option<i64>,
    pub expires_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl ChatSession {
    pub fn status(&self) -> &'static str {
        if self.cancelled_at.is_some() {
            "cancelled"
        } else if self.expires_at <= Utc::now() {
            "expired"
        } else {
            "active"
        }
    }
}

/// What an integrator asks for.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    pub workflow_id: i64,
    pub version: Option<i64>,
    pub end_user: String,
    pub state_variables: Option<Value>,
    pub expires_after: Option<Duration>,
    pub max_requests_per_minute: Option<i64>,
}

/// Creates a session; returns it with its secret (shown once).
pub async fn create(
    services: &Services,
    actor: &Principal,
    new: NewSession,
) -> ChatResult<(ChatSession, String)> {
    let Ok(actor) = actor.admin() else {
        return Err(ChatError::Invalid(
            "sessions are created with an API key or an administrator's token".into(),
        ));
    };
    let end_user = new.end_user.trim();
    if end_user.is_empty() || end_user.chars().count() > 256 {
        return Err(ChatError::Invalid("`user` is 1 to 256 characters".into()));
    }
    workflows::access(services, actor, new.workflow_id)
        .await
        .map_err(|_| ChatError::Invalid(format!("workflow {} does not exist", new.workflow_id)))?;
    let version_id = match new.version {
        Some(number) => Some(
            services
                .store
                .list_versions(new.workflow_id)
                .await?
                .into_iter()
                .find(|v| v.number == number)
                .ok_or_else(|| ChatError::Invalid(format!("the workflow has no version {number}")))?
                .id,
        ),
        None => {
            services
                .store
                .production_version(new.workflow_id)
                .await?
                .ok_or_else(|| {
                    ChatError::Invalid("the workflow has no published version".into())
                })?;
            None
        }
    };
    if new.state_variables.as_ref().is_some_and(|s| !s.is_object()) {
        return Err(ChatError::Invalid("`state_variables` is an object".into()));
    }
    let ttl = new.expires_after.unwrap_or(DEFAULT_TTL);
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(ChatError::Invalid(format!(
            "a session lasts between 1 second and {} seconds",
            MAX_TTL.as_secs()
        )));
    }
    if new.max_requests_per_minute.is_some_and(|n| n < 1) {
        return Err(ChatError::Invalid(
            "`max_requests_per_1_minute` is at least 1".into(),
        ));
    }
    let now = Utc::now();
    let secret = api_keys::random_secret(PREFIX);
    let session = ChatSession {
        id: new_id("cksess"),
        created_by: actor.id,
        workflow_id: new.workflow_id,
        version_id,
        end_user: end_user.to_string(),
        state_variables: new.state_variables,
        max_requests_per_minute: new.max_requests_per_minute,
        expires_at: now + chrono::Duration::from_std(ttl).unwrap_or_default(),
        cancelled_at: None,
        created_at: now,
    };
    services
        .store
        .insert_chat_session(&session, &api_keys::hash(&secret))
        .await?;
    Ok((session, secret))
}

/// Ends a session at once.
pub async fn cancel(services: &Services, actor: &Principal, id: &str) -> ChatResult<ChatSession> {
    let session = services
        .store
        .chat_session(id)
        .await?
        .filter(|s| actor.is_admin() || (actor.session.is_none() && s.created_by == actor.user.id))
        .ok_or_else(|| ChatError::Invalid(format!("session {id} does not exist")))?;
    services
        .store
        .cancel_chat_session(&session.id, Utc::now())
        .await?;
    Ok(ChatSession {
        cancelled_at: Some(Utc::now()),
        ..session
    })
}

/// Why a session secret does not work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Expired,
    RateLimited { retry_after_secs: u64 },
}

/// The session and its creator behind a secret, if it may be used now.
pub async fn authenticate(
    services: &Services,
    secret: &str,
) -> ChatResult<Result<(User, ChatSession), Refusal>> {
    let Some(session) = services
        .store
        .chat_session_by_hash(&api_keys::hash(secret))
        .await?
    else {
        return Ok(Err(Refusal::Unknown));
    };
    if session.status() != "active" {
        return Ok(Err(Refusal::Expired));
    }
    if let Some(limit) = session.max_requests_per_minute
        && let Err(wait) = services.chat_limits.hit(&session.id, limit as usize)
    {
        return Ok(Err(Refusal::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        }));
    }
    // A session acts with its creator's rights as they are now.
    let Some(user) = services
        .store
        .user_by_id(session.created_by)
        .await?
        .filter(|u| u.is_admin)
    else {
        return Ok(Err(Refusal::Expired));
    };
    Ok(Ok((user, session)))
}

/// Requests per session in a sliding minute (per process).
#[derive(Default)]
pub struct SessionLimits {
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl SessionLimits {
    /// Counts a request; `Err(wait)` when the session is over its limit.
    pub fn hit(&self, session_id: &str, per_minute: usize) -> Result<(), Duration> {
        let window = Duration::from_secs(60);
        let now = Instant::now();
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        // Forget sessions idle for a window, so the map stays small.
        if hits.len() > 10_000 {
            hits.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let queue = hits.entry(session_id.to_string()).or_default();
        while queue
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            queue.pop_front();
        }
        if queue.len() >= per_minute {
            let oldest = *queue.front().expect("non-empty when over the limit");
            return Err(window.saturating_sub(now.duration_since(oldest)));
        }
        queue.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_a_sliding_minute() {
        let limits = SessionLimits::default();
        assert!(limits.hit("a", 2).is_ok());
        assert!(limits.hit("a", 2).is_ok());
        let wait = limits.hit("a", 2).unwrap_err();
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(50));
        assert!(limits.hit("b", 2).is_ok(), "sessions are counted apart");
    }
}
