//! Operational endpoints: liveness, readiness and Prometheus metrics. Never authenticated,
//! never rate limited, and bounded in time even when a dependency hangs.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// The database check gets this long; with Redis bounded by `REDIS_TIMEOUT_MS` and both run
/// concurrently, `/ready` answers well inside the 2 s we promise and the probe's 10 s.
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_millis(1500);

#[derive(Serialize, ToSchema)]
pub struct HealthResponse {
    /// Always `healthy` when the process can answer.
    #[schema(example = "healthy")]
    pub status: &'static str,
}

/// Health of one dependency, as in the deployment guide.
#[derive(Serialize, ToSchema, Clone, Debug)]
pub struct ServiceHealth {
    pub healthy: bool,
    /// Round-trip time of the check; absent when the check failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// `postgresql` or `sqlite` for the database; `redis` or `in-process` for the limiter backend.
    pub backend: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct ReadyServices {
    pub database: ServiceHealth,
    pub redis: ServiceHealth,
}

#[derive(Serialize, ToSchema)]
pub struct ReadyResponse {
    /// `ready`, `degraded` (Redis down, limiter failing open) or `not_ready`.
    #[schema(example = "ready")]
    pub status: &'static str,
    pub services: ReadyServices,
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Process is alive", body = HealthResponse)))]
pub async fn health() -> Json<HealthResponse> {
    Json(HealthResponse { status: "healthy" })
}

pub async fn check_database(state: &AppState) -> ServiceHealth {
    let store = state.store();
    let started = Instant::now();
    let healthy = matches!(
        tokio::time::timeout(DATABASE_CHECK_TIMEOUT, store.ping()).await,
        Ok(Ok(()))
    );
    ServiceHealth {
        healthy,
        latency_ms: healthy.then(|| round_ms(started.elapsed())),
        backend: store.backend(),
    }
}

pub async fn check_redis(state: &AppState) -> ServiceHealth {
    match state.redis() {
        Some(link) => match link.ping().await {
            Ok(rtt) => ServiceHealth {
                healthy: true,
                latency_ms: Some(round_ms(rtt)),
                backend: "redis",
            },
            Err(_) => ServiceHealth {
                healthy: false,
                latency_ms: None,
                backend: "redis",
            },
        },
        // Embedded mode: limits live in this process, which is evidently running.
        None => ServiceHealth {
            healthy: true,
            latency_ms: Some(0.0),
            backend: "in-process",
        },
    }
}

/// Readiness: can this instance serve? Database down → 503 `not_ready`. Redis down → the
/// limiter fails open, so 200 `degraded` (or 503 when `READY_REQUIRE_REDIS=true`).
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready (or degraded: Redis down, limiter failing open)", body = ReadyResponse),
        (status = 503, description = "A required dependency is down", body = ReadyResponse)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let (database, redis) = tokio::join!(check_database(&state), check_redis(&state));
    let require_redis = state.config().redis.ready_require;
    let (status_code, status) = if !database.healthy || (!redis.healthy && require_redis) {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    } else if !redis.healthy {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ready")
    };
    let body = ReadyResponse {
        status,
        services: ReadyServices { database, redis },
    };
    let mut resp = (status_code, Json(body)).into_response();
    if status_code == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(5u32));
    }
    resp
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics().render();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
