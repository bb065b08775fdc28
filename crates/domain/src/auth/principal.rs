//! Who is acting: the one identity every service receives, whatever the channel.
//!
//! Invariants:
//! - A principal is a platform user (an access token or an API key), or the end user of
//!   an embedded session acting through the user who created the session, within the
//!   session's workflow. LTI learners and phone callers will be further kinds.
//! - Only a platform user who is an administrator is one here: an end user acting
//!   through an administrator's session never is ([`Principal::admin`]).

use super::{AuthError, AuthResult};
use crate::{chat::sessions::ChatSession, users::User};

#[derive(Debug, Clone)]
pub struct Principal {
    /// The platform user, or the user an end user acts through.
    pub user: User,
    /// The embedded session an end user acts in.
    pub session: Option<ChatSession>,
}

impl Principal {
    /// A platform user acting for themself.
    pub fn user(user: User) -> Principal {
        Principal {
            user,
            session: None,
        }
    }

    /// The end user the principal's threads belong to (`None` for a platform user).
    pub fn end_user(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.end_user.as_str())
    }

    /// Whether this is an administrator acting for themself.
    pub fn is_admin(&self) -> bool {
        self.user.is_admin && self.session.is_none()
    }

    /// The administrator acting, or `admin_required`: what every administrators' service
    /// checks first.
    pub fn admin(&self) -> AuthResult<&User> {
        if self.is_admin() {
            Ok(&self.user)
        } else {
            Err(AuthError::AdminRequired)
        }
    }
}

impl From<User> for Principal {
    fn from(user: User) -> Principal {
        Principal::user(user)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn user(is_admin: bool) -> User {
        User {
            id: 1,
            email: "a@example.com".into(),
            display_name: None,
            is_admin,
            is_lti: false,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            token_version: 0,
        }
    }

    #[test]
    fn only_an_administrator_acting_for_themself_is_one() {
        assert!(Principal::user(user(true)).admin().is_ok());
        assert!(matches!(
            Principal::user(user(false)).admin(),
            Err(AuthError::AdminRequired)
        ));
        let session = ChatSession {
            id: "cks_1".into(),
            created_by: 1,
            workflow_id: 1,
            version_id: None,
            end_user: "visitor".into(),
            state_variables: None,
            max_requests_per_minute: None,
            expires_at: Utc::now(),
            cancelled_at: None,
            created_at: Utc::now(),
        };
        let through = Principal {
            user: user(true),
            session: Some(session),
        };
        assert!(!through.is_admin());
        assert_eq!(through.end_user(), Some("visitor"));
        assert!(matches!(through.admin(), Err(AuthError::AdminRequired)));
    }
}
