//! Extractors: JSON bodies and paths with our errors, the current user, an admin, the client address.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, FromRequest, FromRequestParts, Request},
    http::{StatusCode, header, request::Parts},
};
use chrono::{DateTime, NaiveDate, Utc};
use domain::{
    auth::{AuthError, Principal},
    users::User,
};
use serde::de::DeserializeOwned;

use crate::{AppState, error::ApiError};

/// `axum::Json`, but rejections answer with our error body.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Parse to a JSON value first (content type, syntax and size are checked there),
        // refuse NUL characters, which PostgreSQL cannot store, then map to `T`.
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state).await?;
        from_json_value(value).map(AppJson)
    }
}

/// A JSON body with the text it was read from, for checks that need the document as
/// written (keys an object gives twice, which parsing keeps silently); rejections as
/// [`AppJson`]'s.
#[derive(Debug, Clone)]
pub struct JsonText {
    pub text: String,
    pub value: serde_json::Value,
}

impl<S> FromRequest<S> for JsonText
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "the request body is larger than the server accepts",
                    )
                } else {
                    ApiError::new(rejection.status(), "unreadable_body", rejection.body_text())
                }
            })?;
        // The same checks as every JSON body (content type, syntax, NUL characters).
        let mut again = Request::new(axum::body::Body::from(bytes.clone()));
        if let Some(content_type) = content_type {
            again
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type);
        }
        let AppJson(value) = AppJson::<serde_json::Value>::from_request(again, state).await?;
        Ok(JsonText {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            value,
        })
    }
}

/// Maps a parsed JSON body to `T`, refusing NUL characters anywhere in it.
pub(crate) fn from_json_value<T: DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, ApiError> {
    if contains_nul(&value) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "text may not contain NUL (\\u0000) characters",
        ));
    }
    serde_json::from_value(value).map_err(|err| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("invalid request body: {err}"),
        )
    })
}

fn contains_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => text.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(contains_nul),
        serde_json::Value::Object(map) => {
            map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v))
        }
        _ => false,
    }
}

/// `axum::extract::Query`, but rejections answer with our error body.
#[derive(Debug)]
pub struct AppQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(AppQuery(value))
    }
}

/// `axum::extract::Path`, but rejections answer with our error body.
#[derive(Debug)]
pub struct AppPath<T>(pub T);

impl<T, S> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(AppPath(value))
    }
}

/// The authenticated user, loaded from the database on every request.
///
/// A deleted user's token stops working at once, and `is_admin` is the stored value,
/// not the token's claim.
#[derive(Debug, Clone)]
pub struct AuthUser(pub User);

fn bearer_token(parts: &Parts) -> Result<&str, AuthError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::MissingToken)?;
    let value = value.to_str().map_err(|_| AuthError::InvalidToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::InvalidToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::InvalidToken);
    }
    Ok(token.trim())
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?;
        let user = domain::auth::authenticate(&state.services, token).await?;
        Ok(AuthUser(user))
    }
}

/// An authenticated administrator, as the principal services take; anyone else gets 403
/// (or 401 without a valid token) before the request is read. The services check again.
#[derive(Debug, Clone)]
pub struct AdminUser(pub Principal);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let AuthUser(user) = AuthUser::from_request_parts(parts, state).await?;
        if !user.is_admin {
            return Err(AuthError::AdminRequired.into());
        }
        Ok(AdminUser(Principal::user(user)))
    }
}

/// The client's address: the socket peer, or the first `X-Forwarded-For` hop when the
/// server is configured to trust its proxy.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.http.trust_proxy_headers {
            let forwarded = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty());
            if let Some(addr) = forwarded {
                return Ok(ClientAddr(addr.to_string()));
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        Ok(ClientAddr(peer))
    }
}

/// A time given in a query: RFC 3339, or a date (`YYYY-MM-DD`, midnight UTC).
pub(crate) fn instant(text: &str, field: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("`{field}` must be RFC 3339 or YYYY-MM-DD"),
            )
        })
}
