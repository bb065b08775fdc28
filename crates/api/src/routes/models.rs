//! `/api/models` (what users may choose) and `/api/admin/model-providers`, `/api/admin/models`
//! (the registry, administrators only).

use std::collections::BTreeMap;

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use domain::models::{self, ApiStyle, Model, ModelInput, Provider, ProviderInput, ProviderKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{AdminUser, AppJson, AppPath, AuthUser},
    routes::users::double_option,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_available))
        .routes(routes!(list_providers, create_provider))
        .routes(routes!(get_provider, update_provider, delete_provider))
        .routes(routes!(test_provider))
        .routes(routes!(import_models))
        .routes(routes!(list_models, create_model))
        .routes(routes!(get_model, update_model, delete_model))
}

/// A provider as administrators see it: the key only as a hint, header names only.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderResponse {
    pub id: i64,
    /// `openai`, `openai_compatible`, `litellm` or `local` (models run inside the server).
    pub kind: String,
    pub label: String,
    pub api_base: String,
    /// `responses` or `chat_completions`.
    pub api_style: String,
    pub has_api_key: bool,
    /// `••••` and the key's last four characters.
    pub api_key_hint: Option<String>,
    pub extra_header_names: Vec<String>,
    pub connect_timeout_secs: u64,
    pub first_token_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub request_timeout_secs: u64,
    pub max_retries: u32,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Provider> for ProviderResponse {
    fn from(p: Provider) -> Self {
        ProviderResponse {
            id: p.id,
            kind: p.kind.as_str().into(),
            label: p.label,
            api_base: p.api_base,
            api_style: p.api_style.as_str().into(),
            has_api_key: p.api_key_encrypted.is_some(),
            api_key_hint: p.api_key_hint,
            extra_header_names: p.extra_header_names,
            connect_timeout_secs: p.timeouts.connect_secs,
            first_token_timeout_secs: p.timeouts.first_token_secs,
            idle_timeout_secs: p.timeouts.idle_secs,
            request_timeout_secs: p.timeouts.request_secs,
            max_retries: p.max_retries,
            is_default: p.is_default,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// Create (`kind` and `label` required) or change a provider; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderRequest {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    /// Defaults to `https://api.openai.com/v1` for `openai`.
    #[serde(default)]
    pub api_base: Option<String>,
    #[serde(default)]
    pub api_style: Option<String>,
    /// Stored encrypted; `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub api_key: Option<Option<String>>,
    /// Stored encrypted; replaces every extra header.
    #[serde(default)]
    pub extra_headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub connect_timeout_secs: Option<u64>,
    #[serde(default)]
    pub first_token_timeout_secs: Option<u64>,
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    #[serde(default)]
    pub request_timeout_secs: Option<u64>,
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub is_default: Option<bool>,
}

impl TryFrom<ProviderRequest> for ProviderInput {
    type Error = ApiError;

    fn try_from(r: ProviderRequest) -> Result<Self, ApiError> {
        let bad = |field: &str, allowed: &str| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                format!("{field} must be one of: {allowed}"),
            )
        };
        Ok(ProviderInput {
            kind: r
                .kind
                .map(|k| {
                    ProviderKind::parse(&k)
                        .ok_or_else(|| bad("kind", "openai, openai_compatible, litellm, local"))
                })
                .transpose()?,
            label: r.label,
            api_base: r.api_base,
            api_style: r
                .api_style
                .map(|s| {
                    ApiStyle::parse(&s)
                        .ok_or_else(|| bad("api_style", "responses, chat_completions"))
                })
                .transpose()?,
            api_key: r.api_key,
            extra_headers: r.extra_headers,
            connect_timeout_secs: r.connect_timeout_secs,
            first_token_timeout_secs: r.first_token_timeout_secs,
            idle_timeout_secs: r.idle_timeout_secs,
            request_timeout_secs: r.request_timeout_secs,
            max_retries: r.max_retries,
            is_default: r.is_default,
        })
    }
}

/// A model in the registry.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelResponse {
    pub id: i64,
    pub provider_id: i64,
    /// The id sent to the provider.
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub supports_reasoning: bool,
    pub supports_vision: bool,
    pub supports_tools: bool,
    pub supports_structured_output: bool,
    pub supports_audio: bool,
    pub context_window: Option<i64>,
    pub max_output_tokens: Option<i64>,
    /// US dollars per million tokens.
    pub price_input_per_mtok: Option<f64>,
    pub price_output_per_mtok: Option<f64>,
    pub price_cached_input_per_mtok: Option<f64>,
    pub enabled: bool,
    pub is_default: bool,
    pub is_default_title: bool,
    /// `added` by an administrator, `imported` from the provider's list, or `seen`: an
    /// agent named it and the open registry sent it to the default provider (no prices
    /// until an administrator gives it some).
    pub origin: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Model> for ModelResponse {
    fn from(m: Model) -> Self {
        ModelResponse {
            id: m.id,
            provider_id: m.provider_id,
            name: m.name,
            display_name: m.display_name,
            description: m.description,
            supports_reasoning: m.capabilities.reasoning,
            supports_vision: m.capabilities.vision,
            supports_tools: m.capabilities.tools,
            supports_structured_output: m.capabilities.structured_output,
            supports_audio: m.capabilities.audio,
            context_window: m.context_window,
            max_output_tokens: m.max_output_tokens,
            price_input_per_mtok: m.pricing.input_per_mtok,
            price_output_per_mtok: m.pricing.output_per_mtok,
            price_cached_input_per_mtok: m.pricing.cached_input_per_mtok,
            enabled: m.enabled,
            is_default: m.is_default,
            is_default_title: m.is_default_title,
            origin: m.origin.as_str().into(),
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// Create (`provider_id` and `name` required) or change a model; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelRequest {
    #[serde(default)]
    pub provider_id: Option<i64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub supports_reasoning: Option<bool>,
    #[serde(default)]
    pub supports_vision: Option<bool>,
    #[serde(default)]
    pub supports_tools: Option<bool>,
    #[serde(default)]
    pub supports_structured_output: Option<bool>,
    #[serde(default)]
    pub supports_audio: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub context_window: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub max_output_tokens: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f64>)]
    pub price_input_per_mtok: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f64>)]
    pub price_output_per_mtok: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f64>)]
    pub price_cached_input_per_mtok: Option<Option<f64>>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub is_default: Option<bool>,
    #[serde(default)]
    pub is_default_title: Option<bool>,
}

impl From<ModelRequest> for ModelInput {
    fn from(r: ModelRequest) -> Self {
        ModelInput {
            provider_id: r.provider_id,
            name: r.name,
            display_name: r.display_name,
            description: r.description,
            reasoning: r.supports_reasoning,
            vision: r.supports_vision,
            tools: r.supports_tools,
            structured_output: r.supports_structured_output,
            audio: r.supports_audio,
            context_window: r.context_window,
            max_output_tokens: r.max_output_tokens,
            price_input_per_mtok: r.price_input_per_mtok,
            price_output_per_mtok: r.price_output_per_mtok,
            price_cached_input_per_mtok: r.price_cached_input_per_mtok,
            enabled: r.enabled,
            is_default: r.is_default,
            is_default_title: r.is_default_title,
        }
    }
}

/// The enabled models, for any signed-in user to choose from.
#[utoipa::path(get, path = "/api/models", tag = "models", security(("bearer" = [])),
    responses((status = 200, body = Vec<ModelResponse>), (status = 401, body = ErrorBody)))]
async fn list_available(
    State(state): State<AppState>,
    _user: AuthUser,
) -> ApiResult<Json<Vec<ModelResponse>>> {
    let list = models::enabled_models(&state.services).await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// Every provider.
#[utoipa::path(get, path = "/api/admin/model-providers", tag = "models", security(("bearer" = [])),
    responses((status = 200, body = Vec<ProviderResponse>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_providers(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> ApiResult<Json<Vec<ProviderResponse>>> {
    let list = models::list_providers(&state.services, &admin).await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// Adds a provider. Its API key and extra header values are stored encrypted.
#[utoipa::path(post, path = "/api/admin/model-providers", tag = "models", security(("bearer" = [])),
    request_body = ProviderRequest,
    responses(
        (status = 201, body = ProviderResponse),
        (status = 403, body = ErrorBody),
        (status = 409, description = "Label taken", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn create_provider(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(req): AppJson<ProviderRequest>,
) -> ApiResult<(StatusCode, Json<ProviderResponse>)> {
    let provider = models::create_provider(&state.services, &admin, req.try_into()?).await?;
    Ok((StatusCode::CREATED, Json(provider.into())))
}

#[utoipa::path(get, path = "/api/admin/model-providers/{id}", tag = "models", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = ProviderResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_provider(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> ApiResult<Json<ProviderResponse>> {
    Ok(Json(
        models::get_provider(&state.services, &admin, id)
            .await?
            .into(),
    ))
}

#[utoipa::path(patch, path = "/api/admin/model-providers/{id}", tag = "models", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = ProviderRequest,
    responses(
        (status = 200, body = ProviderResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn update_provider(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<ProviderRequest>,
) -> ApiResult<Json<ProviderResponse>> {
    Ok(Json(
        models::update_provider(&state.services, &admin, id, req.try_into()?)
            .await?
            .into(),
    ))
}

/// Deletes a provider and its models.
#[utoipa::path(delete, path = "/api/admin/model-providers/{id}", tag = "models", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_provider(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> ApiResult<StatusCode> {
    models::delete_provider(&state.services, &admin, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every model, enabled or not.
#[utoipa::path(get, path = "/api/admin/models", tag = "models", security(("bearer" = [])),
    responses((status = 200, body = Vec<ModelResponse>), (status = 403, body = ErrorBody)))]
async fn list_models(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> ApiResult<Json<Vec<ModelResponse>>> {
    let list = models::list_models(&state.services, &admin).await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/admin/models", tag = "models", security(("bearer" = [])),
    request_body = ModelRequest,
    responses(
        (status = 201, body = ModelResponse),
        (status = 403, body = ErrorBody),
        (status = 404, description = "No such provider", body = ErrorBody),
        (status = 409, description = "The provider already has a model of that name", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn create_model(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(req): AppJson<ModelRequest>,
) -> ApiResult<(StatusCode, Json<ModelResponse>)> {
    let model = models::create_model(&state.services, &admin, req.into()).await?;
    Ok((StatusCode::CREATED, Json(model.into())))
}

#[utoipa::path(get, path = "/api/admin/models/{id}", tag = "models", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = ModelResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_model(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> ApiResult<Json<ModelResponse>> {
    Ok(Json(
        models::get_model(&state.services, &admin, id).await?.into(),
    ))
}

#[utoipa::path(patch, path = "/api/admin/models/{id}", tag = "models", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = ModelRequest,
    responses(
        (status = 200, body = ModelResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn update_model(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<ModelRequest>,
) -> ApiResult<Json<ModelResponse>> {
    Ok(Json(
        models::update_model(&state.services, &admin, id, req.into())
            .await?
            .into(),
    ))
}

#[utoipa::path(delete, path = "/api/admin/models/{id}", tag = "models", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_model(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> ApiResult<StatusCode> {
    models::delete_model(&state.services, &admin, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The result of a provider test.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProbeResponse {
    /// `ok`, `unauthorized`, `not_found`, `timeout`, `unreachable` or `error`.
    pub status: String,
    /// What happened, with the provider's own error text.
    pub message: String,
    pub model_count: Option<usize>,
    pub latency_ms: u64,
}

/// A cheap live call (the provider's model list): does it answer, and accept the key?
#[utoipa::path(post, path = "/api/admin/model-providers/{id}/test", tag = "models", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = ProbeResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn test_provider(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> ApiResult<Json<ProbeResponse>> {
    let report = models::test_provider(&state.services, &admin, id).await?;
    Ok(Json(ProbeResponse {
        status: report.status.into(),
        message: report.message,
        model_count: report.model_count,
        latency_ms: report.latency_ms,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportModelsRequest {
    pub provider_id: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportModelsResponse {
    pub imported: usize,
    /// Already in the registry (by name).
    pub skipped: usize,
}

/// Adds the provider's models (from `/models`, or LiteLLM's `/model/info` with prices) that
/// the registry does not have yet.
#[utoipa::path(post, path = "/api/admin/models/import", tag = "models", security(("bearer" = [])),
    request_body = ImportModelsRequest,
    responses(
        (status = 200, body = ImportModelsResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 502, description = "The provider failed; its error is in `message`", body = ErrorBody),
    ))]
async fn import_models(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(req): AppJson<ImportModelsRequest>,
) -> ApiResult<Json<ImportModelsResponse>> {
    match models::import_from_provider(&state.services, &admin, req.provider_id).await? {
        Ok(counts) => Ok(Json(ImportModelsResponse {
            imported: counts.imported,
            skipped: counts.skipped,
        })),
        Err(err) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            domain::error::DomainError::code(&err),
            err.to_string(),
        )),
    }
}
