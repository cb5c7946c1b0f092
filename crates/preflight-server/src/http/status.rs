//! `GET /v1/status`: what a monitoring dashboard wants in one call.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::ops::{check_database, check_redis, ServiceHealth};
use crate::auth::{Principal, Scope};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct RateLimiterStatus {
    /// `redis` or `in-process`.
    pub backend: &'static str,
    /// `fail-open` or `fail-closed`.
    pub mode: &'static str,
    /// True while the limiter skips a failing Redis.
    pub circuit_open: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Dependencies {
    pub database: ServiceHealth,
    pub redis: ServiceHealth,
}

#[derive(Serialize, ToSchema)]
pub struct TemplateCacheStatus {
    /// Tenants whose templates are held in memory on this instance.
    pub tenants: usize,
    pub templates: usize,
    /// Approximate bytes of the in-memory indexes.
    pub approx_bytes: usize,
    /// Bound on templates held (`TEMPLATE_CACHE_MAX_TEMPLATES`).
    pub max_templates: usize,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookStatus {
    /// The caller's tenant's deliveries waiting to be sent (all tenants' for an operator).
    pub pending_deliveries: i64,
    /// How long the oldest of them has waited.
    pub oldest_pending_seconds: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct StatusResponse {
    pub version: &'static str,
    pub engine_version: &'static str,
    pub environment: &'static str,
    pub uptime_seconds: u64,
    pub dependencies: Dependencies,
    pub rate_limiter: RateLimiterStatus,
    pub template_cache: TemplateCacheStatus,
    /// Evaluations answered by this instance since it started, by decision.
    pub evaluations_since_start: std::collections::BTreeMap<&'static str, u64>,
    /// `null` while the database does not answer.
    pub webhooks: Option<WebhookStatus>,
}

#[utoipa::path(get, path = "/v1/status", tag = "operations", security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = StatusResponse), (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem)))]
pub async fn status(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<StatusResponse>, ApiError> {
    principal.require(Scope::Read)?;
    let (database, redis) = tokio::join!(check_database(&state), check_redis(&state));
    let limiter = state.limiter();
    let (tenants, templates, approx_bytes) = state.templates().stats();
    // Bounded like the health checks: a status call must answer while the database does not.
    let backlog = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        crate::domain::webhooks::backlog(&state, principal.tenant_id),
    );
    let webhooks = backlog
        .await
        .ok()
        .and_then(Result::ok)
        .map(|(pending, waited)| WebhookStatus {
            pending_deliveries: pending,
            oldest_pending_seconds: waited,
        });
    Ok(Json(StatusResponse {
        version: env!("CARGO_PKG_VERSION"),
        engine_version: preflight_engine::ENGINE_VERSION,
        environment: state.config().environment.as_str(),
        uptime_seconds: state.uptime().as_secs(),
        dependencies: Dependencies { database, redis },
        rate_limiter: RateLimiterStatus {
            backend: limiter.backend(),
            mode: limiter.mode(),
            circuit_open: limiter.circuit_open(),
        },
        template_cache: TemplateCacheStatus {
            tenants,
            templates,
            approx_bytes,
            max_templates: state.config().storage.template_cache_max,
        },
        evaluations_since_start: state.evaluation_counts().into_iter().collect(),
        webhooks,
    }))
}
