//! Failed-login throttling, kept in the database so every replica and every restart shares
//! it.
//!
//! Three counts, each over `auth.login_window_seconds`:
//! - an account from one address: after `auth.login_free_failures` failures, each further
//!   failure holds that account from that address for a growing delay (1 s, 2 s, 4 s, …,
//!   at most `auth.login_max_delay_secs`), even for the right password;
//! - an address over all accounts: past `auth.login_max_failures_per_ip`, the address is
//!   held until its window ends;
//! - an account from all addresses: past `auth.login_max_failures_per_account`, the
//!   addresses that failed for it are held until its window ends, while an address that
//!   has not failed for it still logs in with the right password. So a guesser cannot
//!   lock the owner out, and each new address it brings gets one guess.

use chrono::{DateTime, Utc};

use super::{AuthError, AuthSettings};
use crate::Services;

/// One row of counts: an account from an address, an account (`address` empty), or an
/// address (`email` empty).
#[derive(Debug, Clone, PartialEq)]
pub struct LoginThrottle {
    pub email: String,
    pub address: String,
    pub failures: i64,
    pub first_failure_at: DateTime<Utc>,
    pub last_failure_at: DateTime<Utc>,
    pub blocked_until: Option<DateTime<Utc>>,
}

impl LoginThrottle {
    /// What the row counts: `account_address`, `account` or `address`.
    pub fn kind(&self) -> &'static str {
        match (self.email.is_empty(), self.address.is_empty()) {
            (false, false) => "account_address",
            (false, true) => "account",
            _ => "address",
        }
    }

    /// Failures still inside the window.
    fn recent(&self, window_start: DateTime<Utc>) -> i64 {
        if self.first_failure_at >= window_start {
            self.failures
        } else {
            0
        }
    }
}

fn window(settings: &AuthSettings) -> chrono::Duration {
    chrono::Duration::seconds(settings.login_window_seconds.max(1) as i64)
}

fn limited(now: DateTime<Utc>, until: DateTime<Utc>) -> AuthError {
    AuthError::RateLimited {
        retry_after_secs: (until - now).num_seconds().max(1) as u64,
    }
}

/// Refuses a login attempt from `address` for `email` while a count holds it.
pub(super) async fn check(
    services: &Services,
    email: &str,
    address: &str,
) -> Result<(), AuthError> {
    let settings = &services.auth.settings;
    let now = Utc::now();
    let window_start = now - window(settings);
    let rows = services.store.login_throttles(email, address).await?;
    let find = |e: &str, a: &str| rows.iter().find(|r| r.email == e && r.address == a);
    let pair = find(email, address);
    if let Some(until) = pair.and_then(|p| p.blocked_until).filter(|u| *u > now) {
        return Err(limited(now, until));
    }
    if let Some(ip) = find("", address)
        && ip.recent(window_start) >= i64::from(settings.login_max_failures_per_ip)
    {
        return Err(limited(now, ip.first_failure_at + window(settings)));
    }
    if let Some(account) = find(email, "")
        && account.recent(window_start) >= i64::from(settings.login_max_failures_per_account)
        && pair.is_some_and(|p| p.recent(window_start) > 0)
    {
        return Err(limited(now, account.first_failure_at + window(settings)));
    }
    Ok(())
}

/// Counts a failed login, and holds the account from the address when it failed too often.
pub(super) async fn failed(
    services: &Services,
    email: &str,
    address: &str,
) -> Result<(), AuthError> {
    let settings = &services.auth.settings;
    let now = Utc::now();
    let rows = services
        .store
        .record_login_failure(email, address, now, now - window(settings))
        .await?;
    let failures = rows
        .iter()
        .find(|r| r.email == email && r.address == address)
        .map_or(0, |r| r.failures);
    if let Some(delay) = delay_after(failures, settings) {
        services
            .store
            .block_login(email, address, now + chrono::Duration::seconds(delay))
            .await?;
    }
    Ok(())
}

/// How long the `failures`-th failure of an account from one address holds that pair, in
/// seconds: nothing for the free ones, then 1, 2, 4, … up to `login_max_delay_secs`.
fn delay_after(failures: i64, settings: &AuthSettings) -> Option<i64> {
    let beyond = failures - i64::from(settings.login_free_failures);
    (beyond > 0).then(|| {
        1i64.checked_shl((beyond - 1).min(40) as u32)
            .unwrap_or(i64::MAX)
            .min(settings.login_max_delay_secs.max(1) as i64)
    })
}

/// Forgets the failures of the account from this address after it logged in.
pub(super) async fn succeeded(services: &Services, email: &str, address: &str) {
    if let Err(err) = services.store.clear_login_pair(email, address).await {
        tracing::warn!(error = %err, "could not clear failed logins after a login");
    }
}

/// The counts an administrator sees: those with a failure in the window or a hold.
pub async fn list(
    services: &Services,
    actor: &super::Principal,
) -> Result<Vec<LoginThrottle>, AuthError> {
    actor.admin()?;
    let since = Utc::now() - window(&services.auth.settings);
    Ok(services.store.list_login_throttles(since).await?)
}

/// Forgets the counts of an account, of an address, of the account from the address
/// (both), or all (neither); returns how many rows.
pub async fn clear(
    services: &Services,
    actor: &super::Principal,
    email: Option<&str>,
    address: Option<&str>,
) -> Result<u64, AuthError> {
    actor.admin()?;
    let email = email.map(|e| e.trim().to_lowercase());
    Ok(services
        .store
        .delete_login_throttles(email.as_deref(), address.map(str::trim))
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stop_at_the_cap() {
        let settings = AuthSettings {
            login_free_failures: 3,
            login_max_delay_secs: 30,
            ..AuthSettings::default()
        };
        let delays: Vec<Option<i64>> = (1..=10).map(|n| delay_after(n, &settings)).collect();
        assert_eq!(
            delays,
            [
                None,
                None,
                None,
                Some(1),
                Some(2),
                Some(4),
                Some(8),
                Some(16),
                Some(30),
                Some(30)
            ]
        );
        assert_eq!(delay_after(i64::MAX, &settings), Some(30));
    }
}
