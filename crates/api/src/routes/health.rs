//! Liveness, readiness and Prometheus metrics.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(metrics))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LiveResponse {
    /// Always `ok` while the process serves requests.
    pub status: String,
    pub version: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentStatus {
    /// `up` or `down`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrations_pending: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyResponse {
    /// `ready` or `not_ready`.
    pub status: String,
    pub components: BTreeMap<String, ComponentStatus>,
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = LiveResponse)))]
async fn live() -> Json<LiveResponse> {
    Json(LiveResponse {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Readiness: the database answers and every migration is applied.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, body = ReadyResponse),
        (status = 503, description = "A component is down", body = ReadyResponse),
    ))]
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let health = state.services.store.health().await;
    let database_up = health.reachable && health.migrations_pending == 0 && health.error.is_none();
    let error = health.error.or_else(|| {
        (health.migrations_pending > 0)
            .then(|| format!("{} migrations pending", health.migrations_pending))
    });
    if let Some(error) = &error {
        tracing::warn!(error = %error, "readiness check failed");
    }
    let database = ComponentStatus {
        status: if database_up { "up" } else { "down" }.into(),
        backend: Some(health.backend.into()),
        migrations_pending: Some(health.migrations_pending),
        // Details stay in the log: the endpoint is public.
        error: error.map(|_| "database unreachable or not migrated; see the server log".into()),
    };
    let status = if database_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = ReadyResponse {
        status: if database_up { "ready" } else { "not_ready" }.into(),
        components: BTreeMap::from([("database".to_string(), database)]),
    };
    (status, Json(body))
}

/// Prometheus metrics: request counts and latencies by route and status, pool state.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let pool = state.services.store.pool_stats();
    metrics::gauge!("db_pool_connections", "state" => "open").set(f64::from(pool.size));
    metrics::gauge!("db_pool_connections", "state" => "idle").set(f64::from(pool.idle));
    metrics::gauge!("db_pool_max_connections").set(f64::from(pool.max));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
