//! `/api/auth`: password login.

use axum::{Json, extract::State};
use domain::users::User;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    error::{ApiResult, ErrorBody},
    extract::{AppJson, ClientAddr},
    routes::users::UserResponse,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login))
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
/// Failed attempts are limited per account and per client address; past the limit the
/// answer is 429 with `Retry-After`.
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
