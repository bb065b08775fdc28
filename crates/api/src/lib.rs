//! The HTTP layer: routers, extractors, wire DTOs, errors and the OpenAPI document.
//!
//! Invariant: this is the only crate that knows HTTP and JSON wire shapes. Handlers call
//! `domain` functions and convert results to DTOs by hand.

pub mod error;
pub mod extract;
mod middleware;
pub mod routes;

use std::sync::Arc;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderName, HeaderValue, Method, Request, StatusCode, header},
};
use domain::Services;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;

/// HTTP settings (the `[http]` table of the configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Origins allowed to call the API from a browser (CORS). Empty: no CORS headers.
    /// A list, or one comma-separated string.
    #[serde(deserialize_with = "list_or_commas")]
    pub cors_allowed_origins: Vec<String>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// On shutdown, how long in-flight requests may take to finish, in seconds.
    pub shutdown_timeout_secs: u64,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_proxy_headers: bool,
    /// Connections served at once; one more is answered 503 `overloaded`. Open streams
    /// each hold one.
    pub max_connections: usize,
    /// How long a client may take to send a request's head, in seconds (also the idle
    /// time allowed between requests on a kept-alive connection).
    pub header_read_timeout_secs: u64,
    /// How long a client may pause while sending a request's body, in seconds.
    pub body_read_timeout_secs: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            cors_allowed_origins: Vec::new(),
            max_body_bytes: 2 * 1024 * 1024,
            shutdown_timeout_secs: 20,
            trust_proxy_headers: false,
            max_connections: 10_000,
            header_read_timeout_secs: 30,
            body_read_timeout_secs: 60,
        }
    }
}

fn list_or_commas<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        String(String),
    }
    Ok(match ListOrString::deserialize(deserializer)? {
        ListOrString::List(list) => list,
        ListOrString::String(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub http: Arc<HttpSettings>,
    pub metrics: PrometheusHandle,
}

impl AppState {
    pub fn new(services: Services, http: HttpSettings) -> AppState {
        AppState {
            services,
            http: Arc::new(http),
            metrics: middleware::prometheus(),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard",
        description = "Self-hosted AI agent platform: workflows served over ChatKit, LTI 1.3 and SIP.",
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Login and access tokens"),
        (name = "users", description = "The current user and user management"),
        (name = "models", description = "Model providers and the model registry"),
        (name = "runs", description = "Workflow runs: start, inspect, resume, cancel"),
        (name = "api-keys", description = "Keys for servers calling the API"),
        (name = "chatkit", description = "The ChatKit server protocol: threads, items and streamed turns"),
        (name = "vector-stores", description = "Knowledge bases: documents, ingestion jobs and hybrid search"),
        (name = "mcp", description = "MCP servers, and Switchyard's own MCP endpoint with the workflows it offers"),
        (name = "tools", description = "Defined tools: HTTP, client, workflow and knowledge tools agents use by name"),
        (name = "widgets", description = "The widget library: ChatKit widgets that workflows show"),
        (name = "settings", description = "Instance settings and usage reports"),
        (name = "workflows", description = "Workflow graphs, versions, publishing, sharing, import and export"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every route with its OpenAPI description, before the cross-cutting layers.
/// `max_upload` bounds attachment uploads, which may be larger than other bodies.
fn api_routes(max_upload: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::health::router())
        .merge(routes::auth::router())
        .merge(routes::users::router())
        .merge(routes::workflows::router())
        .merge(routes::models::router())
        .merge(routes::settings::router())
        .merge(routes::storage::router())
        .merge(routes::runs::router())
        .merge(routes::widgets::router())
        .merge(routes::chatkit::router(max_upload))
        .merge(routes::api_keys::router())
        .merge(routes::vector_stores::router())
        .merge(routes::mcp::router())
        .merge(routes::mcp_endpoint::router())
        .merge(routes::tools::router())
}

/// The OpenAPI document, as served at `/api/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_routes(0).into_openapi();
    list_extractor_errors(&mut doc);
    doc
}

/// Adds to each operation the errors its extractors and layers answer, which handlers do
/// not list one by one: 401 where a token is needed; 400 for a malformed path, query or
/// JSON body; 413, 415 and 422 where a JSON body is read; 503 when the server is
/// overloaded or its database unreachable.
fn list_extractor_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{
        ContentBuilder, Ref, RefOr, ResponseBuilder,
        path::{Operation, ParameterIn},
    };
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    let complete = |operation: &mut Operation| {
        let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
        let parameters = operation.parameters.iter().flatten().any(|p| {
            matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query))
        });
        let json_body = operation.request_body.as_ref().is_some_and(|body| {
            matches!(body, RefOr::T(body) if body.content.keys().any(|k| k.contains("json")))
        });
        let mut errors: Vec<(&str, &str)> = Vec::new();
        if secured {
            errors.push(("401", "Missing, expired or revoked credentials"));
        }
        if parameters || json_body {
            errors.push(("400", "A malformed path, query or body"));
        }
        if json_body {
            errors.push(("413", "The body is larger than the server accepts"));
            errors.push(("415", "The body is not declared as JSON"));
            errors.push(("422", "The body does not have the expected fields"));
        }
        errors.push((
            "503",
            "The server is overloaded or its database unreachable",
        ));
        for (status, description) in errors {
            operation
                .responses
                .responses
                .entry(status.to_string())
                .or_insert_with(|| error(description));
        }
    };
    for item in doc.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            complete(operation);
        }
    }
}

async fn route_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        "no route matches this path",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that HTTP method",
    )
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin.trim_end_matches('/')).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
            .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
            .allow_credentials(true),
    )
}

/// The whole application: API routes, docs, fallbacks and layers.
pub fn router(state: AppState) -> Router {
    let max_upload =
        usize::try_from(state.services.chat.max_attachment_bytes).unwrap_or(usize::MAX / 2);
    let (api, mut doc) = api_routes(max_upload).split_for_parts();
    list_extractor_errors(&mut doc);
    let max_body = state.http.max_body_bytes;
    let cors = cors(&state.http.cors_allowed_origins);
    let x_request_id = HeaderName::from_static("x-request-id");

    let app = api
        .with_state(state)
        // Swagger UI's assets are compiled in (`vendored`): the docs work with no internet.
        .merge(SwaggerUi::new("/docs").url("/api/openapi.json", doc))
        .fallback(route_not_found)
        // A bug that panics in a handler answers like any internal error instead of
        // dropping the connection.
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                tracing::error!("a request handler panicked");
                axum::response::IntoResponse::into_response(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "an internal error occurred; see the server log for this request id",
                ))
            },
        ))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(middleware::record_metrics))
        .layer(axum::middleware::from_fn(middleware::security_headers));
    let app = match cors {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(
                x_request_id.clone(),
                MakeRequestUuid,
            ))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|req: &Request<_>| {
                        let request_id = req
                            .extensions()
                            .get::<RequestId>()
                            .and_then(|id| id.header_value().to_str().ok())
                            .unwrap_or("-");
                        tracing::info_span!(
                            "request",
                            method = %req.method(),
                            path = %req.uri().path(),
                            request_id = %request_id,
                        )
                    })
                    .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
            )
            .layer(PropagateRequestIdLayer::new(x_request_id)),
    )
}
