//! `GET /v1/analytics/*` and `GET /v1/usage`: how a tenant's extraction is doing, from
//! rollups (see `domain::analytics`), and what its plan allows this month.

use axum::extract::State;
use axum::Json;
use chrono::Utc;

use super::extract::ApiQuery;
use crate::auth::{Principal, Scope};
use crate::domain::analytics::{
    self, AnalyticsQuery, Calibration, ExtractorsReport, Summary, TemplatesReport, Timeseries,
};
use crate::domain::usage::{self, UsageReport};
use crate::error::{ApiError, Problem};
use crate::state::AppState;

#[utoipa::path(get, path = "/v1/analytics/summary", tag = "analytics", params(AnalyticsQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Summary), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn summary(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<AnalyticsQuery>,
) -> Result<Json<Summary>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    Ok(Json(
        analytics::summary(state.store().as_ref(), tenant_id, &q, Utc::now()).await?,
    ))
}

#[utoipa::path(get, path = "/v1/analytics/timeseries", tag = "analytics",
    params(AnalyticsQuery,
        ("interval" = Option<String>, Query, description = "`hour` or `day` (default `day`)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Timeseries), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn timeseries(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<AnalyticsQuery>,
) -> Result<Json<Timeseries>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    Ok(Json(
        analytics::timeseries(state.store().as_ref(), tenant_id, &q, Utc::now()).await?,
    ))
}

#[utoipa::path(get, path = "/v1/analytics/extractors", tag = "analytics", params(AnalyticsQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = ExtractorsReport), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn extractors(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<AnalyticsQuery>,
) -> Result<Json<ExtractorsReport>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    Ok(Json(
        analytics::extractors(state.store().as_ref(), tenant_id, &q, Utc::now()).await?,
    ))
}

#[utoipa::path(get, path = "/v1/analytics/templates", tag = "analytics", params(AnalyticsQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = TemplatesReport), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn templates(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<AnalyticsQuery>,
) -> Result<Json<TemplatesReport>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    Ok(Json(
        analytics::templates(state.store().as_ref(), tenant_id, &q, Utc::now()).await?,
    ))
}

#[utoipa::path(get, path = "/v1/analytics/calibration", tag = "analytics", params(AnalyticsQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Calibration), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn calibration(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<AnalyticsQuery>,
) -> Result<Json<Calibration>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    Ok(Json(
        analytics::calibration(state.store().as_ref(), tenant_id, &q, Utc::now()).await?,
    ))
}

#[utoipa::path(get, path = "/v1/usage", tag = "usage",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = UsageReport), (status = 403, body = Problem)))]
pub async fn usage(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<UsageReport>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    let enforced = state.config().usage.enforce_quota;
    Ok(Json(
        usage::report(state.store().as_ref(), tenant_id, enforced, Utc::now()).await?,
    ))
}
