//! `/api/workflows`: workflows, versions, publishing, sharing, validation, import and export.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use domain::{
    store::WorkflowPatch,
    workflows::{
        self, Access, CreateWorkflow, Graph, ImportRequest, Permission, Problem, Severity, Share,
        ShareWith, Version, Workflow, WorkflowError,
    },
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{AdminUser, AppJson, AppPath, AuthUser, JsonText},
    routes::users::double_option,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(validate))
        .routes(routes!(node_kinds))
        .routes(routes!(import))
        .routes(routes!(get_chatkit_default, set_chatkit_default))
        .routes(routes!(get, update, delete))
        .routes(routes!(duplicate))
        .routes(routes!(list_versions, create_version))
        .routes(routes!(get_version, update_version))
        .routes(routes!(export_version))
        .routes(routes!(diff_versions))
        .routes(routes!(publish))
        .routes(routes!(list_shares, share))
        .routes(routes!(unshare))
}

/// A workflow graph, as the API takes and gives it (documentation of
/// `domain::workflows::Graph`; requests are read by the domain's own types).
#[derive(Debug, ToSchema)]
#[schema(as = Graph)]
#[allow(dead_code)]
pub struct GraphSchema {
    pub nodes: Vec<NodeSchema>,
    pub edges: Vec<EdgeSchema>,
    /// JSON Schema of the state variables, with their defaults.
    #[schema(value_type = Option<Object>)]
    pub state_schema: Option<Value>,
    /// JSON Schema of the input a headless caller gives.
    #[schema(value_type = Option<Object>)]
    pub input_schema: Option<Value>,
}

/// One step of a workflow: its kind's parameters are listed at
/// `GET /api/workflows/node-kinds`.
#[derive(Debug, ToSchema)]
#[schema(as = Node)]
#[allow(dead_code)]
pub struct NodeSchema {
    /// Unique in the graph: letters, digits, `-` and `_`.
    pub slug: String,
    /// `start`, `agent`, `condition`, `end`, … (`GET /api/workflows/node-kinds`).
    pub kind: String,
    pub display_name: Option<String>,
    /// The enclosing `while` loop, if any.
    pub parent_slug: Option<String>,
    /// A disabled node is bypassed (default `true`).
    pub is_enabled: Option<bool>,
    /// The kind's configuration.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Editor data (position, colours); stored, never interpreted.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// A transition between two nodes.
#[derive(Debug, ToSchema)]
#[schema(as = Edge)]
#[allow(dead_code)]
pub struct EdgeSchema {
    pub source: String,
    pub target: String,
    /// The branch label (`true`/`false`, a case's label, `approve`/`reject`, `error`, …);
    /// `label` is read as the same.
    pub condition: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// A workflow and the caller's access to it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowResponse {
    pub id: i64,
    pub slug: String,
    pub display_name: String,
    pub description: Option<String>,
    /// `null` for system workflows.
    pub owner_id: Option<i64>,
    pub is_chatkit_default: bool,
    /// Running conversations move to a newly published version at their next turn.
    pub follow_production: bool,
    /// The version in production, if any.
    pub production_version_id: Option<i64>,
    /// The caller's rights: `served` (may chat with it, not see it), `read`, `write`, `owner` or `admin`.
    pub access: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WorkflowResponse {
    fn new(workflow: Workflow, access: Access) -> WorkflowResponse {
        WorkflowResponse {
            id: workflow.id,
            slug: workflow.slug,
            display_name: workflow.display_name,
            description: workflow.description,
            owner_id: workflow.owner_id,
            is_chatkit_default: workflow.is_chatkit_default,
            follow_production: workflow.follow_production,
            production_version_id: workflow.production_version_id,
            access: access.as_str().into(),
            created_at: workflow.created_at,
            updated_at: workflow.updated_at,
        }
    }
}

/// A version with its graph.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionResponse {
    pub id: i64,
    pub workflow_id: i64,
    pub number: i64,
    pub name: Option<String>,
    /// `draft` (editable) or `published` (immutable).
    pub status: String,
    pub is_production: bool,
    /// Send it back (or the `ETag`) when editing, to detect concurrent edits.
    pub revision: i64,
    #[schema(value_type = GraphSchema)]
    pub graph: Value,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_by: Option<i64>,
    pub updated_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    pub published_by: Option<i64>,
}

impl From<Version> for VersionResponse {
    fn from(version: Version) -> Self {
        VersionResponse {
            status: if version.is_published() {
                "published"
            } else {
                "draft"
            }
            .into(),
            graph: serde_json::to_value(&version.graph).expect("graphs serialise"),
            id: version.id,
            workflow_id: version.workflow_id,
            number: version.number,
            name: version.name,
            is_production: version.is_production,
            revision: version.revision,
            created_by: version.created_by,
            created_at: version.created_at,
            updated_by: version.updated_by,
            updated_at: version.updated_at,
            published_at: version.published_at,
            published_by: version.published_by,
        }
    }
}

/// A version in a listing, without its graph.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionSummary {
    pub id: i64,
    pub number: i64,
    pub name: Option<String>,
    pub status: String,
    pub is_production: bool,
    pub revision: i64,
    pub node_count: usize,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
}

impl From<Version> for VersionSummary {
    fn from(version: Version) -> Self {
        VersionSummary {
            status: if version.is_published() {
                "published"
            } else {
                "draft"
            }
            .into(),
            node_count: version.graph.nodes.len(),
            id: version.id,
            number: version.number,
            name: version.name,
            is_production: version.is_production,
            revision: version.revision,
            created_by: version.created_by,
            created_at: version.created_at,
            updated_at: version.updated_at,
            published_at: version.published_at,
        }
    }
}

/// One validation finding.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemResponse {
    /// `error` (refuses the save) or `warning`.
    pub severity: String,
    /// Stable code, e.g. `duplicate_slug`, `invalid_expression`.
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl From<Problem> for ProblemResponse {
    fn from(problem: Problem) -> Self {
        ProblemResponse {
            severity: match problem.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            }
            .into(),
            code: problem.code.into(),
            node: problem.node,
            field: problem.field,
            message: problem.message,
        }
    }
}

fn problems(list: Vec<Problem>) -> Vec<ProblemResponse> {
    list.into_iter().map(Into::into).collect()
}

/// A created workflow with its first version, and any warnings.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedResponse {
    pub workflow: WorkflowResponse,
    pub version: VersionResponse,
    pub warnings: Vec<ProblemResponse>,
}

/// A saved version, and any warnings.
#[derive(Debug, Serialize, ToSchema)]
pub struct SavedVersionResponse {
    pub version: VersionResponse,
    /// The edited version was published, so this new draft was made from the edit.
    pub created_draft: bool,
    pub warnings: Vec<ProblemResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShareResponse {
    pub user_id: i64,
    pub email: String,
    /// `read` or `write`.
    pub permission: String,
    pub created_at: DateTime<Utc>,
}

impl From<Share> for ShareResponse {
    fn from(share: Share) -> Self {
        ShareResponse {
            user_id: share.user_id,
            email: share.email,
            permission: share.permission.as_str().into(),
            created_at: share.created_at,
        }
    }
}

fn parse_graph(value: Value) -> Result<Graph, ApiError> {
    Graph::from_json(value).map_err(|message| {
        WorkflowError::Invalid(vec![Problem {
            severity: Severity::Error,
            code: "malformed_graph",
            node: None,
            field: None,
            message,
        }])
        .into()
    })
}

fn etag(version: &Version) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}-{}\"", version.id, version.revision))
        .expect("digits and quotes are a valid header")
}

/// Reads `If-Match: "<id>-<revision>"`; `*` or no header means no check.
fn if_match(headers: &HeaderMap, version_id: i64) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    let revision = text
        .trim_start_matches("W/")
        .trim_matches('"')
        .split_once('-')
        .filter(|(id, _)| id.parse() == Ok(version_id))
        .and_then(|(_, revision)| revision.parse().ok());
    match revision {
        Some(revision) => Ok(Some(revision)),
        None => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "invalid_if_match",
            "If-Match must be the version's ETag, as returned by GET",
        )),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkflowRequest {
    /// Derived from the display name when absent.
    #[serde(default)]
    pub slug: Option<String>,
    pub display_name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Defaults to start → end.
    #[serde(default)]
    #[schema(value_type = Option<GraphSchema>)]
    pub graph: Option<Value>,
    #[serde(default)]
    pub version_name: Option<String>,
    /// Put version 1 into production at once.
    #[serde(default)]
    pub publish: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkflowRequest {
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub follow_production: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DuplicateRequest {
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVersionRequest {
    /// The new draft's graph; otherwise a copy of `base_version_id`, else of production.
    #[serde(default)]
    #[schema(value_type = Option<GraphSchema>)]
    pub graph: Option<Value>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub base_version_id: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateVersionRequest {
    #[schema(value_type = GraphSchema)]
    pub graph: Value,
    #[serde(default)]
    pub name: Option<String>,
    /// The revision the edit is based on (or send `If-Match`); a stale edit gets 409.
    #[serde(default)]
    pub revision: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    pub version_id: i64,
    /// Publish only if the version is still at this revision.
    #[serde(default)]
    pub revision: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatkitDefaultRequest {
    pub workflow_id: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    #[schema(value_type = GraphSchema)]
    pub graph: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ValidateResponse {
    /// No errors (warnings may remain).
    pub valid: bool,
    pub problems: Vec<ProblemResponse>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    /// The colleague's email.
    #[serde(default)]
    pub email: Option<String>,
    /// Administrators may give a user id instead.
    #[serde(default)]
    pub user_id: Option<i64>,
    /// `read` or `write`.
    pub permission: String,
}

/// The workflows the caller owns, has a share on, or (administrators) all of them.
#[utoipa::path(get, path = "/api/workflows", tag = "workflows", security(("bearer" = [])),
    responses((status = 200, body = Vec<WorkflowResponse>), (status = 401, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> ApiResult<Json<Vec<WorkflowResponse>>> {
    let listed = workflows::list(&state.services, &user).await?;
    Ok(Json(
        listed
            .into_iter()
            .map(|(w, a)| WorkflowResponse::new(w, a))
            .collect(),
    ))
}

/// Creates a workflow with its version 1 (a draft unless `publish`).
#[utoipa::path(post, path = "/api/workflows", tag = "workflows", security(("bearer" = [])),
    request_body = CreateWorkflowRequest,
    responses(
        (status = 201, body = CreatedResponse),
        (status = 401, body = ErrorBody),
        (status = 409, description = "Slug taken", body = ErrorBody),
        (status = 422, description = "Invalid fields or graph; `problems` lists every issue", body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppJson(req): AppJson<CreateWorkflowRequest>,
) -> ApiResult<(StatusCode, Json<CreatedResponse>)> {
    let graph = req.graph.map(parse_graph).transpose()?;
    let saved = workflows::create(
        &state.services,
        &user,
        CreateWorkflow {
            slug: req.slug,
            display_name: req.display_name,
            description: req.description,
            graph,
            version_name: req.version_name,
            publish: req.publish,
        },
    )
    .await?;
    let (workflow, version) = saved.value;
    Ok((
        StatusCode::CREATED,
        Json(CreatedResponse {
            workflow: WorkflowResponse::new(workflow, Access::Owner),
            version: version.into(),
            warnings: problems(saved.warnings),
        }),
    ))
}

/// A kind of node an author can use.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeKindResponse {
    pub kind: String,
    /// `false` for kinds a later version adds: they may sit in a graph, disabled.
    pub runnable: bool,
    /// A valid `parameters` object for this kind.
    #[schema(value_type = Object)]
    pub example: Value,
}

/// The node kinds and an example configuration of each.
#[utoipa::path(get, path = "/api/workflows/node-kinds", tag = "workflows", security(("bearer" = [])),
    responses((status = 200, body = Vec<NodeKindResponse>), (status = 401, body = ErrorBody)))]
async fn node_kinds(_user: AuthUser) -> Json<Vec<NodeKindResponse>> {
    let runnable = workflows::nodes::Kind::ALL
        .iter()
        .map(|kind| NodeKindResponse {
            kind: kind.as_str().into(),
            runnable: true,
            example: serde_json::from_str(kind.example()).expect("examples are JSON"),
        });
    let planned = workflows::nodes::PLANNED_KINDS
        .iter()
        .map(|kind| NodeKindResponse {
            kind: (*kind).into(),
            runnable: false,
            example: Value::Object(Default::default()),
        });
    Json(runnable.chain(planned).collect())
}

/// Validates a graph without saving it.
#[utoipa::path(post, path = "/api/workflows/validate", tag = "workflows", security(("bearer" = [])),
    request_body = ValidateRequest,
    responses((status = 200, body = ValidateResponse), (status = 401, body = ErrorBody)))]
async fn validate(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppJson(req): AppJson<ValidateRequest>,
) -> ApiResult<Json<ValidateResponse>> {
    let found = match Graph::from_json(req.graph) {
        Ok(graph) => workflows::validate_only(&state.services, &user, &graph, None).await?,
        Err(message) => vec![Problem {
            severity: Severity::Error,
            code: "malformed_graph",
            node: None,
            field: None,
            message,
        }],
    };
    Ok(Json(ValidateResponse {
        valid: !found.iter().any(|p| p.severity == Severity::Error),
        problems: problems(found),
    }))
}

/// Imports a workflow: a Switchyard export, a seed-system graph or export, or an OpenAI
/// Agent Builder workflow. The body is the document itself, or
/// `{document, workflow_id?, slug?, display_name?, description?, version_name?, publish?}`.
/// With `workflow_id`, the import becomes a new version of that workflow.
#[utoipa::path(post, path = "/api/workflows/import", tag = "workflows", security(("bearer" = [])),
    request_body(content = Object, description = "The document, or an import request wrapping it"),
    responses(
        (status = 201, body = CreatedResponse),
        (status = 401, body = ErrorBody),
        (status = 422, description = "Unreadable document or invalid graph", body = ErrorBody),
    ))]
async fn import(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    JsonText { text, value: body }: JsonText,
) -> ApiResult<(StatusCode, Json<CreatedResponse>)> {
    let repeated_keys = workflows::import::repeated_keys(&text);
    let request = match body {
        Value::Object(mut wrapper) if wrapper.contains_key("document") => {
            let text = |v: Option<Value>| v.and_then(|v| v.as_str().map(str::to_string));
            ImportRequest {
                document: wrapper.remove("document").unwrap_or(Value::Null),
                workflow_id: match wrapper.remove("workflow_id") {
                    None | Some(Value::Null) => None,
                    Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
                    Some(_) => {
                        return Err(ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "invalid_body",
                            "`workflow_id` must be an integer",
                        ));
                    }
                },
                slug: text(wrapper.remove("slug")),
                display_name: text(wrapper.remove("display_name")),
                description: text(wrapper.remove("description")),
                version_name: text(wrapper.remove("version_name")),
                publish: wrapper
                    .remove("publish")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
                repeated_keys,
            }
        }
        document => ImportRequest {
            document,
            repeated_keys,
            ..ImportRequest::default()
        },
    };
    let saved = workflows::import_workflow(&state.services, &user, request).await?;
    let (workflow, version) = saved.value;
    let (_, access) = workflows::access(&state.services, &user, workflow.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedResponse {
            workflow: WorkflowResponse::new(workflow, access),
            version: version.into(),
            warnings: problems(saved.warnings),
        }),
    ))
}

/// The workflow plain ChatKit users talk to.
#[utoipa::path(get, path = "/api/workflows/chatkit", tag = "workflows", security(("bearer" = [])),
    responses(
        (status = 200, body = WorkflowResponse),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No default workflow", body = ErrorBody),
    ))]
async fn get_chatkit_default(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> ApiResult<Json<WorkflowResponse>> {
    let (workflow, access) = workflows::chatkit_default_for(&state.services, &user)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_chatkit_default",
                "no workflow is the ChatKit default",
            )
        })?;
    Ok(Json(WorkflowResponse::new(workflow, access)))
}

/// Makes a published workflow the ChatKit default (administrators only).
#[utoipa::path(post, path = "/api/workflows/chatkit", tag = "workflows", security(("bearer" = [])),
    request_body = ChatkitDefaultRequest,
    responses(
        (status = 200, body = WorkflowResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The workflow has no published version", body = ErrorBody),
    ))]
async fn set_chatkit_default(
    State(state): State<AppState>,
    AdminUser(user): AdminUser,
    AppJson(req): AppJson<ChatkitDefaultRequest>,
) -> ApiResult<Json<WorkflowResponse>> {
    let workflow =
        workflows::set_chatkit_default(&state.services, &user.user, req.workflow_id).await?;
    Ok(Json(WorkflowResponse::new(workflow, Access::Admin)))
}

/// One workflow.
#[utoipa::path(get, path = "/api/workflows/{id}", tag = "workflows", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = WorkflowResponse), (status = 404, body = ErrorBody)))]
async fn get(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<i64>,
) -> ApiResult<Json<WorkflowResponse>> {
    let (workflow, access) = workflows::get(&state.services, &user, id).await?;
    Ok(Json(WorkflowResponse::new(workflow, access)))
}

/// Changes a workflow's slug, name, description or `follow_production` (write access).
#[utoipa::path(patch, path = "/api/workflows/{id}", tag = "workflows", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = UpdateWorkflowRequest,
    responses(
        (status = 200, body = WorkflowResponse),
        (status = 403, description = "Read-only share", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn update(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<UpdateWorkflowRequest>,
) -> ApiResult<Json<WorkflowResponse>> {
    let patch = WorkflowPatch {
        slug: req.slug,
        display_name: req.display_name,
        description: req.description,
        follow_production: req.follow_production,
    };
    let workflow = workflows::update(&state.services, &user, id, patch).await?;
    let (_, access) = workflows::access(&state.services, &user, id).await?;
    Ok(Json(WorkflowResponse::new(workflow, access)))
}

/// Deletes a workflow and all its versions (owner or administrator).
#[utoipa::path(delete, path = "/api/workflows/{id}", tag = "workflows", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<i64>,
) -> ApiResult<StatusCode> {
    workflows::delete(&state.services, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Copies a workflow (its production graph, else its newest version) into a new draft
/// workflow owned by the caller.
#[utoipa::path(post, path = "/api/workflows/{id}/duplicate", tag = "workflows", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body(content = Option<DuplicateRequest>, description = "Optional"),
    responses((status = 201, body = CreatedResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn duplicate(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<i64>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<CreatedResponse>)> {
    // The body is optional here: an empty one means "derive the slug and name".
    let req: DuplicateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DuplicateRequest {
            slug: None,
            display_name: None,
        }
    } else {
        let value = serde_json::from_slice(&body).map_err(|err| {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", err.to_string())
        })?;
        crate::extract::from_json_value(value)?
    };
    let saved =
        workflows::duplicate(&state.services, &user, id, req.slug, req.display_name).await?;
    let (workflow, version) = saved.value;
    Ok((
        StatusCode::CREATED,
        Json(CreatedResponse {
            workflow: WorkflowResponse::new(workflow, Access::Owner),
            version: version.into(),
            warnings: problems(saved.warnings),
        }),
    ))
}

/// The versions of a workflow, newest first.
#[utoipa::path(get, path = "/api/workflows/{id}/versions", tag = "workflows", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = Vec<VersionSummary>), (status = 404, body = ErrorBody)))]
async fn list_versions(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<i64>,
) -> ApiResult<Json<Vec<VersionSummary>>> {
    let versions = workflows::list_versions(&state.services, &user, id).await?;
    Ok(Json(versions.into_iter().map(Into::into).collect()))
}

/// Creates a draft version.
#[utoipa::path(post, path = "/api/workflows/{id}/versions", tag = "workflows", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = CreateVersionRequest,
    responses(
        (status = 201, body = SavedVersionResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn create_version(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<CreateVersionRequest>,
) -> ApiResult<Response> {
    let graph = req.graph.map(parse_graph).transpose()?;
    let saved = workflows::create_version(
        &state.services,
        &user,
        id,
        graph,
        req.name,
        req.base_version_id,
    )
    .await?;
    let tag = etag(&saved.value);
    let body = SavedVersionResponse {
        version: saved.value.into(),
        created_draft: true,
        warnings: problems(saved.warnings),
    };
    Ok((StatusCode::CREATED, [(header::ETAG, tag)], Json(body)).into_response())
}

/// One version with its graph; the `ETag` identifies its revision.
#[utoipa::path(get, path = "/api/workflows/{id}/versions/{version_id}", tag = "workflows", security(("bearer" = [])),
    params(("id" = i64, Path), ("version_id" = i64, Path)),
    responses((status = 200, body = VersionResponse, headers(("ETag" = String))), (status = 404, body = ErrorBody)))]
async fn get_version(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath((id, version_id)): AppPath<(i64, i64)>,
) -> ApiResult<Response> {
    let version = workflows::get_version(&state.services, &user, id, version_id).await?;
    let tag = etag(&version);
    Ok(([(header::ETAG, tag)], Json(VersionResponse::from(version))).into_response())
}

/// Edits a draft in place. Editing the published version creates a new draft instead
/// (201), leaving production untouched. Send `If-Match` (or `revision`) to refuse a stale edit.
#[utoipa::path(put, path = "/api/workflows/{id}/versions/{version_id}", tag = "workflows", security(("bearer" = [])),
    params(("id" = i64, Path), ("version_id" = i64, Path)), request_body = UpdateVersionRequest,
    responses(
        (status = 200, description = "The draft was edited", body = SavedVersionResponse),
        (status = 201, description = "A new draft was made from an edit of a published version", body = SavedVersionResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Stale edit; `current_revision` says where the version is now", body = ErrorBody),
        (status = 412, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn update_version(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath((id, version_id)): AppPath<(i64, i64)>,
    headers: HeaderMap,
    AppJson(req): AppJson<UpdateVersionRequest>,
) -> ApiResult<Response> {
    let expected = if_match(&headers, version_id)?.or(req.revision);
    let graph = parse_graph(req.graph)?;
    let edited = workflows::update_version(
        &state.services,
        &user,
        id,
        version_id,
        graph,
        req.name,
        expected,
    )
    .await?;
    let status = if edited.created_draft {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let tag = etag(&edited.version);
    let body = SavedVersionResponse {
        version: edited.version.into(),
        created_draft: edited.created_draft,
        warnings: problems(edited.warnings),
    };
    Ok((status, [(header::ETAG, tag)], Json(body)).into_response())
}

/// A version as a self-contained document that `POST /api/workflows/import` takes back.
#[utoipa::path(get, path = "/api/workflows/{id}/versions/{version_id}/export", tag = "workflows", security(("bearer" = [])),
    params(("id" = i64, Path), ("version_id" = i64, Path)),
    responses((status = 200, description = "The export document", body = Object), (status = 404, body = ErrorBody)))]
async fn export_version(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath((id, version_id)): AppPath<(i64, i64)>,
) -> ApiResult<Response> {
    let document = workflows::export(&state.services, &user, id, version_id).await?;
    let slug = document["workflow"]["slug"]
        .as_str()
        .unwrap_or("workflow")
        .to_string();
    let number = document["version"]["number"].as_i64().unwrap_or(0);
    let disposition =
        HeaderValue::from_str(&format!("attachment; filename=\"{slug}-v{number}.json\""))
            .unwrap_or(HeaderValue::from_static("attachment"));
    Ok(([(header::CONTENT_DISPOSITION, disposition)], Json(document)).into_response())
}

/// What changed from version `a` to version `b`.
#[utoipa::path(get, path = "/api/workflows/{id}/versions/{a}/diff/{b}", tag = "workflows", security(("bearer" = [])),
    params(("id" = i64, Path), ("a" = i64, Path, description = "The older version"), ("b" = i64, Path, description = "The newer version")),
    responses(
        (status = 200, description = "Nodes and edges added, removed and changed, parameter by parameter", body = Object),
        (status = 404, body = ErrorBody),
    ))]
async fn diff_versions(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath((id, a, b)): AppPath<(i64, i64, i64)>,
) -> ApiResult<Json<Value>> {
    let diff = workflows::diff_versions(&state.services, &user, id, a, b).await?;
    Ok(Json(serde_json::to_value(diff).expect("diffs serialise")))
}

/// Puts a version into production; also how to roll back to an older version.
#[utoipa::path(post, path = "/api/workflows/{id}/production", tag = "workflows", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = PublishRequest,
    responses(
        (status = 200, body = VersionResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "The version's graph has errors", body = ErrorBody),
    ))]
async fn publish(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<PublishRequest>,
) -> ApiResult<Json<VersionResponse>> {
    let version =
        workflows::publish(&state.services, &user, id, req.version_id, req.revision).await?;
    Ok(Json(version.into()))
}

/// Who the workflow is shared with (owner or administrator).
#[utoipa::path(get, path = "/api/workflows/{id}/shares", tag = "workflows", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = Vec<ShareResponse>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_shares(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<i64>,
) -> ApiResult<Json<Vec<ShareResponse>>> {
    let shares = workflows::list_shares(&state.services, &user, id).await?;
    Ok(Json(shares.into_iter().map(Into::into).collect()))
}

/// Shares the workflow with a user, or changes their permission (owner or administrator).
#[utoipa::path(post, path = "/api/workflows/{id}/shares", tag = "workflows", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = ShareRequest,
    responses(
        (status = 200, description = "Every share after the change", body = Vec<ShareResponse>),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn share(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<ShareRequest>,
) -> ApiResult<Json<Vec<ShareResponse>>> {
    let permission = Permission::parse(&req.permission).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_permission",
            "permission must be `read` or `write`",
        )
    })?;
    let with = match (req.email, req.user_id) {
        (Some(email), None) => ShareWith::Email(email),
        (None, Some(user_id)) => ShareWith::Id(user_id),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "give exactly one of `email` and `user_id`",
            ));
        }
    };
    let shares = workflows::share(&state.services, &user, id, with, permission).await?;
    Ok(Json(shares.into_iter().map(Into::into).collect()))
}

/// Stops sharing the workflow with a user (owner or administrator).
#[utoipa::path(delete, path = "/api/workflows/{id}/shares/{user_id}", tag = "workflows", security(("bearer" = [])),
    params(("id" = i64, Path), ("user_id" = i64, Path)),
    responses((status = 204, description = "Unshared"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn unshare(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath((id, user_id)): AppPath<(i64, i64)>,
) -> ApiResult<StatusCode> {
    workflows::unshare(&state.services, &user, id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
