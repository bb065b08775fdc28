//! `/api/auth`: password login; `/api/admin/login-throttles`: failed logins held back.

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use domain::{auth::throttle, users::User};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    error::{ApiResult, ErrorBody},
    extract::{AdminUser, AppJson, AppQuery, ClientAddr},
    routes::users::UserResponse,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(list_throttles, clear_throttles))
}

/// Failed logins counted for an account from an address, an account, or an address.
#[derive(Debug, Serialize, ToSchema)]
pub struct ThrottleResponse {
    /// `account_address`, `account` or `address`.
    pub kind: &'static str,
    /// The account's email (absent for an address's count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The client address (absent for an account's count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub failures: i64,
    pub first_failure_at: DateTime<Utc>,
    pub last_failure_at: DateTime<Utc>,
    /// Until when attempts of this account from this address are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_until: Option<DateTime<Utc>>,
}

impl From<throttle::LoginThrottle> for ThrottleResponse {
    fn from(t: throttle::LoginThrottle) -> ThrottleResponse {
        ThrottleResponse {
            kind: t.kind(),
            email: Some(t.email).filter(|e| !e.is_empty()),
            address: Some(t.address).filter(|a| !a.is_empty()),
            failures: t.failures,
            first_failure_at: t.first_failure_at,
            last_failure_at: t.last_failure_at,
            blocked_until: t.blocked_until,
        }
    }
}

/// The failed logins counted now (within `auth.login_window_seconds`), newest first.
#[utoipa::path(get, path = "/api/admin/login-throttles", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<ThrottleResponse>),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ))]
async fn list_throttles(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> ApiResult<Json<Vec<ThrottleResponse>>> {
    let rows = throttle::list(&state.services, &admin).await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ClearThrottles {
    /// Clear the counts of this account (from every address).
    pub email: Option<String>,
    /// Clear the counts of this client address (for every account). With `email`, only
    /// that account from that address.
    pub address: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClearedResponse {
    /// How many counts were forgotten.
    pub cleared: u64,
}

/// Forgets failed logins: an account's, an address's, or all of them (no parameter), so a
/// held account or address may log in again at once.
#[utoipa::path(delete, path = "/api/admin/login-throttles", tag = "auth", security(("bearer" = [])),
    params(ClearThrottles),
    responses(
        (status = 200, body = ClearedResponse),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ))]
async fn clear_throttles(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppQuery(query): AppQuery<ClearThrottles>,
) -> ApiResult<Json<ClearedResponse>> {
    let cleared = throttle::clear(
        &state.services,
        &admin,
        query.email.as_deref(),
        query.address.as_deref(),
    )
    .await?;
    tracing::info!(admin_id = admin.user.id, email = ?query.email, address = ?query.address, cleared, "cleared failed logins");
    Ok(Json(ClearedResponse { cleared }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// An access token and the user it belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: i64,
    pub user: UserResponse,
}

impl TokenResponse {
    pub(crate) fn new(state: &AppState, user: User) -> TokenResponse {
        TokenResponse {
            access_token: state.services.auth.issue_token(&user),
            token_type: "bearer".into(),
            expires_in: state.services.auth.token_ttl_secs(),
            user: user.into(),
        }
    }
}

/// Exchanges an email and password for an access token.
///
/// Failed attempts are counted per account and client address, per account and per
/// address (shared by every replica): an address that keeps failing for an account waits
/// longer and longer, and one past a limit is held for the window; past a limit the answer
/// is 429 with `Retry-After`. An address that has not failed is never held back from an
/// account by others' failures.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "Wrong email or password", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, description = "Too many failed attempts", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    AppJson(req): AppJson<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let outcome = domain::auth::login(&state.services, &req.email, &req.password, &client).await?;
    Ok(Json(TokenResponse {
        access_token: outcome.access_token,
        token_type: "bearer".into(),
        expires_in: outcome.expires_in_secs,
        user: outcome.user.into(),
    }))
}
