//! `/api/users`: the current user, and user management for administrators.

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use domain::{
    Principal,
    users::{self, CreateUser, UpdateUser, User},
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{AdminUser, AppJson, AppPath, AuthUser},
    routes::auth::TokenResponse,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me, update_me))
        .routes(routes!(change_my_password))
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
}

/// A user, as the API shows it. Never carries the password hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub id: i64,
    pub email: String,
    pub display_name: Option<String>,
    pub is_admin: bool,
    pub is_lti: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<User> for UserResponse {
    fn from(user: User) -> Self {
        UserResponse {
            id: user.id,
            email: user.email,
            display_name: user.display_name,
            is_admin: user.is_admin,
            is_lti: user.is_lti,
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// Tells "absent" (leave as is) from `null` (clear) for optional fields of a PATCH.
pub(crate) fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub email: String,
    /// At least 8 characters.
    pub password: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub is_admin: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    #[serde(default)]
    pub email: Option<String>,
    /// `null` clears the display name.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub display_name: Option<Option<String>>,
    #[serde(default)]
    pub is_admin: Option<bool>,
    /// A new password; setting it signs the user out everywhere.
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    /// `null` clears the display name.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub display_name: Option<Option<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    /// At least 8 characters.
    pub new_password: String,
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/users/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, body = UserResponse),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorBody),
    ))]
async fn me(AuthUser(user): AuthUser) -> Json<UserResponse> {
    Json(user.into())
}

/// Updates the signed-in user's own profile.
#[utoipa::path(patch, path = "/api/users/me", tag = "users", security(("bearer" = [])),
    request_body = UpdateMeRequest,
    responses(
        (status = 200, body = UserResponse),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn update_me(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppJson(req): AppJson<UpdateMeRequest>,
) -> ApiResult<Json<UserResponse>> {
    let update = UpdateUser {
        display_name: req.display_name,
        ..UpdateUser::default()
    };
    let me = Principal::user(user);
    let user = users::update(&state.services, &me, me.user.id, update).await?;
    Ok(Json(user.into()))
}

/// Changes the signed-in user's password. Every other session is signed out; the response
/// carries a fresh token for this one.
#[utoipa::path(post, path = "/api/users/me/password", tag = "users", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The current password is wrong", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn change_my_password(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppJson(req): AppJson<ChangePasswordRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let user = users::change_own_password(
        &state.services,
        &user,
        req.current_password,
        req.new_password,
    )
    .await?;
    Ok(Json(TokenResponse::new(&state, user)))
}

/// Lists every user (administrators only).
#[utoipa::path(get, path = "/api/users", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<UserResponse>),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> ApiResult<Json<Vec<UserResponse>>> {
    let users = users::list(&state.services, &admin).await?;
    Ok(Json(users.into_iter().map(UserResponse::from).collect()))
}

/// Creates a user (administrators only).
#[utoipa::path(post, path = "/api/users", tag = "users", security(("bearer" = [])),
    request_body = CreateUserRequest,
    responses(
        (status = 201, body = UserResponse),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "The email is taken", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(req): AppJson<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<UserResponse>)> {
    let user = users::create(
        &state.services,
        &admin,
        CreateUser {
            email: req.email,
            password: req.password,
            display_name: req.display_name,
            is_admin: req.is_admin,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// One user (administrators only).
#[utoipa::path(get, path = "/api/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses(
        (status = 200, body = UserResponse),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
async fn get(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> ApiResult<Json<UserResponse>> {
    Ok(Json(users::get(&state.services, &admin, id).await?.into()))
}

/// Changes a user's email, display name, role or password (administrators only).
/// The last administrator cannot be demoted.
#[utoipa::path(patch, path = "/api/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, body = UserResponse),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Email taken, or last administrator", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn update(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<UpdateUserRequest>,
) -> ApiResult<Json<UserResponse>> {
    let update = UpdateUser {
        email: req.email,
        display_name: req.display_name,
        is_admin: req.is_admin,
        password: req.password,
    };
    Ok(Json(
        users::update(&state.services, &admin, id, update)
            .await?
            .into(),
    ))
}

/// Deletes a user (administrators only). The last administrator cannot be deleted.
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Last administrator", body = ErrorBody),
    ))]
async fn delete(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<StatusCode, ApiError> {
    users::delete(&state.services, &admin, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
