//! `/v1/webhooks`: a tenant's webhook endpoints, their test, secret rotation, and the log
//! of deliveries with redelivery.
//!
//! Parse, authorize, call `domain::webhooks`, map. Changes take `alerts:manage`; reading
//! takes `read`. A secret is in the answer of creation and rotation only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{next_cursor, page, resource_id, ApiJson, ApiQuery, Violations};
use super::observe::RequestId;
use crate::auth::{Principal, Scope};
use crate::domain::audit::{self, AuditAction, AuditExt};
use crate::domain::webhooks::{
    self, DeliveryDetail, EndpointChange, EndpointSpec, EndpointView, EndpointWithSecret,
    RedeliverRange, Requeued, TestResult,
};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::webhooks::DeliveryRow;

fn endpoint_id(raw: &str) -> Result<Uuid, ApiError> {
    resource_id(raw, "webhook endpoint")
}

#[derive(Serialize, ToSchema)]
pub struct EndpointList {
    pub items: Vec<EndpointView>,
}

/// Creates an endpoint; the answer holds its secret, shown this once.
#[utoipa::path(post, path = "/v1/webhooks", tag = "alerts", request_body = EndpointSpec,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = EndpointWithSecret), (status = 403, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    ApiJson(spec): ApiJson<EndpointSpec>,
) -> Result<(StatusCode, Json<EndpointWithSecret>), ApiError> {
    let tenant_id = principal.tenant_with(Scope::AlertsManage)?;
    let event = audit::by(&principal, AuditAction::WebhookCreated).request(Some(&request_id));
    let created = webhooks::create(&state, tenant_id, spec, event).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/v1/webhooks", tag = "alerts",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = EndpointList)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<EndpointList>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    let items = webhooks::list(&state, tenant_id).await?;
    Ok(Json(EndpointList { items }))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "alerts",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = EndpointView), (status = 404, body = crate::error::Problem)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    let row = webhooks::get(&state, tenant_id, endpoint_id(&id)?).await?;
    Ok(Json(EndpointView::from(&row)))
}

/// Changes some fields (`{"enabled": true}` turns a disabled endpoint back on).
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "alerts", request_body = EndpointChange,
    params(("id" = Uuid, Path, description = "Endpoint id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = EndpointView), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn update(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(change): ApiJson<EndpointChange>,
) -> Result<Json<EndpointView>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::AlertsManage)?;
    let id = endpoint_id(&id)?;
    let event = audit::by(&principal, AuditAction::WebhookUpdated).request(Some(&request_id));
    Ok(Json(
        webhooks::update(&state, tenant_id, id, change, event).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "alerts",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 204, description = "Deleted with its queued deliveries"),
        (status = 404, body = crate::error::Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant_id = principal.tenant_with(Scope::AlertsManage)?;
    let id = endpoint_id(&id)?;
    let event = audit::by(&principal, AuditAction::WebhookDeleted).request(Some(&request_id));
    webhooks::delete(&state, tenant_id, id, event).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a signed `webhook.test` event now and reports the receiver's answer.
#[utoipa::path(post, path = "/v1/webhooks/{id}/test", tag = "alerts",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = TestResult), (status = 404, body = crate::error::Problem)))]
pub async fn test(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<TestResult>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::AlertsManage)?;
    Ok(Json(
        webhooks::send_test(&state, tenant_id, endpoint_id(&id)?).await?,
    ))
}

/// A new secret, shown this once; for 24 hours both are signed with.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "alerts",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = EndpointWithSecret), (status = 404, body = crate::error::Problem)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::AlertsManage)?;
    let id = endpoint_id(&id)?;
    let event = audit::by(&principal, AuditAction::WebhookSecretRotated).request(Some(&request_id));
    Ok(Json(
        webhooks::rotate_secret(&state, tenant_id, id, event).await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// `pending`, `sending`, `delivered` or `failed` (the dead letters).
    pub status: Option<String>,
    /// 1..=1000, default 100.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryRow>,
    pub next_cursor: Option<String>,
}

/// The endpoint's deliveries, newest first.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "alerts", params(("id" = Uuid, Path, description = "Endpoint id"), DeliveryQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = DeliveryPage), (status = 404, body = crate::error::Problem)))]
pub async fn deliveries(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    let id = endpoint_id(&id)?;
    let mut v = Violations::default();
    let (limit, before) = page::<std::num::NonZeroU64>(&mut v, q.limit, q.cursor.as_deref());
    if let Some(s) = &q.status {
        v.check(
            webhooks::DELIVERY_STATUSES.contains(&s.as_str()),
            "status",
            "must be pending, sending, delivered or failed",
        );
    }
    v.into_result()?;
    let before = before.map(|s| i64::try_from(s.get()).unwrap_or(i64::MAX));
    let items =
        webhooks::list_deliveries(&state, tenant_id, id, q.status.as_deref(), before, limit)
            .await?;
    let next_cursor = next_cursor(&items, limit, |d| d.seq);
    Ok(Json(DeliveryPage { items, next_cursor }))
}

/// One delivery with every attempt.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries/{delivery_id}", tag = "alerts",
    params(("id" = Uuid, Path, description = "Endpoint id"), ("delivery_id" = Uuid, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = DeliveryDetail), (status = 404, body = crate::error::Problem)))]
pub async fn delivery(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    let id = endpoint_id(&id)?;
    let delivery_id = resource_id(&delivery_id, "delivery")?;
    Ok(Json(
        webhooks::delivery(&state, tenant_id, id, delivery_id).await?,
    ))
}

/// Queues a delivered or failed delivery again, with the same event id.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver", tag = "alerts",
    params(("id" = Uuid, Path, description = "Endpoint id"), ("delivery_id" = Uuid, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 202, description = "Queued"), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem)))]
pub async fn redeliver(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant_id = principal.tenant_with(Scope::AlertsManage)?;
    let id = endpoint_id(&id)?;
    let delivery_id = resource_id(&delivery_id, "delivery")?;
    let event = audit::by(&principal, AuditAction::WebhookRedelivered).request(Some(&request_id));
    webhooks::redeliver(&state, tenant_id, id, delivery_id, event).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Queues the delivered or failed deliveries of a time range again (e.g. after a receiver
/// outage), each with its event id.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/redeliver", tag = "alerts",
    request_body = RedeliverRange,
    params(("id" = Uuid, Path, description = "Endpoint id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 202, body = Requeued), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn redeliver_range(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(range): ApiJson<RedeliverRange>,
) -> Result<(StatusCode, Json<Requeued>), ApiError> {
    let tenant_id = principal.tenant_with(Scope::AlertsManage)?;
    let id = endpoint_id(&id)?;
    let event = audit::by(&principal, AuditAction::WebhookRedelivered).request(Some(&request_id));
    let queued = webhooks::redeliver_range(&state, tenant_id, id, range, event).await?;
    Ok((StatusCode::ACCEPTED, Json(queued)))
}
