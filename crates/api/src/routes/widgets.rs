//! `/api/widgets` (the widget library, administrators) and `/api/workflow-widgets` (what
//! the builder offers to every user).

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use domain::widgets::{self, NewWidget, Widget, WidgetError, WidgetPatch};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{AdminUser, AppJson, AppPath, AuthUser},
    routes::workflows::ProblemResponse,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(preview))
        .routes(routes!(get, update, delete))
        .routes(routes!(for_builder))
}

/// A widget of the library.
#[derive(Debug, Serialize, ToSchema)]
pub struct WidgetResponse {
    pub slug: String,
    pub title: Option<String>,
    pub description: Option<String>,
    /// A ChatKit widget root (`Card`, `ListView` or `Basic`).
    #[schema(value_type = Object)]
    pub definition: Value,
    /// JSON Schema of the data the widget is filled with.
    #[schema(value_type = Option<Object>)]
    pub data_schema: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Widget> for WidgetResponse {
    fn from(w: Widget) -> Self {
        WidgetResponse {
            slug: w.slug,
            title: w.title,
            description: w.description,
            definition: w.definition,
            data_schema: w.data_schema,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// A widget as the workflow builder lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WidgetSummary {
    pub slug: String,
    pub title: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub data_schema: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWidgetRequest {
    pub slug: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[schema(value_type = Object)]
    pub definition: Value,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data_schema: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWidgetRequest {
    /// `null` clears it.
    #[serde(default, deserialize_with = "crate::routes::users::double_option")]
    #[schema(value_type = Option<String>)]
    pub title: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::routes::users::double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub definition: Option<Value>,
    #[serde(default, deserialize_with = "crate::routes::users::double_option")]
    #[schema(value_type = Option<Object>)]
    pub data_schema: Option<Option<Value>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    #[schema(value_type = Object)]
    pub definition: Value,
    /// Values by component `id`, `key` or `name`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewResponse {
    /// The definition filled with the data.
    #[schema(value_type = Object)]
    pub definition: Value,
}

impl From<WidgetError> for ApiError {
    fn from(err: WidgetError) -> ApiError {
        let problems = match &err {
            WidgetError::Invalid(list) => Some(
                list.iter()
                    .map(|p| ProblemResponse {
                        severity: "error".into(),
                        code: "invalid_widget".into(),
                        node: None,
                        field: Some(p.path.clone()),
                        message: p.message.clone(),
                    })
                    .collect(),
            ),
            _ => None,
        };
        ApiError::from_domain(&err).with_problems(problems)
    }
}

/// Every widget of the library.
#[utoipa::path(get, path = "/api/widgets", tag = "widgets", security(("bearer" = [])),
    responses((status = 200, body = Vec<WidgetResponse>), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> ApiResult<Json<Vec<WidgetResponse>>> {
    let list = widgets::list(&state.services, &admin).await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// Adds a widget; the definition is validated and every problem is listed (`problems`).
#[utoipa::path(post, path = "/api/widgets", tag = "widgets", security(("bearer" = [])),
    request_body = CreateWidgetRequest,
    responses((status = 201, body = WidgetResponse), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(req): AppJson<CreateWidgetRequest>,
) -> ApiResult<(StatusCode, Json<WidgetResponse>)> {
    let new = NewWidget {
        slug: req.slug,
        title: req.title,
        description: req.description,
        definition: req.definition,
        data_schema: req.data_schema,
    };
    let widget = widgets::create(&state.services, &admin, new).await?;
    Ok((StatusCode::CREATED, Json(widget.into())))
}

#[utoipa::path(get, path = "/api/widgets/{slug}", tag = "widgets", security(("bearer" = [])),
    params(("slug" = String, Path)),
    responses((status = 200, body = WidgetResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(slug): AppPath<String>,
) -> ApiResult<Json<WidgetResponse>> {
    Ok(Json(
        widgets::get(&state.services, &admin, &slug).await?.into(),
    ))
}

#[utoipa::path(patch, path = "/api/widgets/{slug}", tag = "widgets", security(("bearer" = [])),
    params(("slug" = String, Path)), request_body = UpdateWidgetRequest,
    responses((status = 200, body = WidgetResponse), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(slug): AppPath<String>,
    AppJson(req): AppJson<UpdateWidgetRequest>,
) -> ApiResult<Json<WidgetResponse>> {
    let patch = WidgetPatch {
        title: req.title,
        description: req.description,
        definition: req.definition,
        data_schema: req.data_schema,
    };
    Ok(Json(
        widgets::update(&state.services, &admin, &slug, patch)
            .await?
            .into(),
    ))
}

#[utoipa::path(delete, path = "/api/widgets/{slug}", tag = "widgets", security(("bearer" = [])),
    params(("slug" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(slug): AppPath<String>,
) -> ApiResult<StatusCode> {
    widgets::delete(&state.services, &admin, &slug).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Validates a definition and fills it with `data`, without saving.
#[utoipa::path(post, path = "/api/widgets/preview", tag = "widgets", security(("bearer" = [])),
    request_body = PreviewRequest,
    responses((status = 200, body = PreviewResponse), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn preview(
    _admin: AdminUser,
    AppJson(req): AppJson<PreviewRequest>,
) -> ApiResult<Json<PreviewResponse>> {
    let definition = widgets::preview(&req.definition, req.data.as_ref())?;
    Ok(Json(PreviewResponse { definition }))
}

/// The widgets a workflow may show, for the builder.
#[utoipa::path(get, path = "/api/workflow-widgets", tag = "widgets", security(("bearer" = [])),
    responses((status = 200, body = Vec<WidgetSummary>)))]
async fn for_builder(
    State(state): State<AppState>,
    _user: AuthUser,
) -> ApiResult<Json<Vec<WidgetSummary>>> {
    let list = widgets::summaries(&state.services).await?;
    Ok(Json(
        list.into_iter()
            .map(|w| WidgetSummary {
                slug: w.slug,
                title: w.title,
                description: w.description,
                data_schema: w.data_schema,
            })
            .collect(),
    ))
}
