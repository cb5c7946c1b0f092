//! `/v1/alert-rules` and `/v1/alerts`: a tenant's alert rules, and the alerts its
//! evaluations raised, with acknowledge and resolve.
//!
//! Parse, authorize, call `domain::alerts`, map. Changing rules and moving alerts takes
//! `alerts:manage`; reading takes `read`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{next_cursor, page, resource_id, ApiJson, ApiQuery, Violations};
use super::observe::RequestId;
use crate::auth::{Principal, Scope};
use crate::domain::alerts::{
    self, AlertMetric, AlertRuleView, AlertStatus, DeliveryStatus, RuleChange, RuleSpec, Severity,
};
use crate::domain::audit::{self, AuditAction, AuditExt};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::alerts::{AlertFilter, AlertRow, AlertTransition};

#[derive(Serialize, ToSchema)]
pub struct AlertRuleList {
    /// In creation order. While this is empty, the built-in rules apply.
    pub items: Vec<AlertRuleView>,
}

/// Creates a rule. A tenant's first rule replaces the built-ins.
#[utoipa::path(post, path = "/v1/alert-rules", tag = "alerts", request_body = RuleSpec,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = AlertRuleView), (status = 403, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn create_rule(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    ApiJson(spec): ApiJson<RuleSpec>,
) -> Result<(StatusCode, Json<AlertRuleView>), ApiError> {
    let tenant_id = principal.tenant_with(Scope::AlertsManage)?;
    let event = audit::by(&principal, AuditAction::AlertRuleCreated).request(Some(&request_id));
    let rule = alerts::create_rule(&state, tenant_id, &spec, event).await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

#[utoipa::path(get, path = "/v1/alert-rules", tag = "alerts",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AlertRuleList)))]
pub async fn list_rules(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<AlertRuleList>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    let items = alerts::list_rules(&state, tenant_id).await?;
    Ok(Json(AlertRuleList { items }))
}

/// One rule, with a window rule's progress (`checked_until`).
#[utoipa::path(get, path = "/v1/alert-rules/{id}", tag = "alerts",
    params(("id" = Uuid, Path, description = "Rule id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AlertRuleView), (status = 404, body = crate::error::Problem)))]
pub async fn get_rule(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<AlertRuleView>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    let id = resource_id(&id, "alert rule")?;
    Ok(Json(alerts::rule_view(&state, tenant_id, id).await?))
}

/// Changes some fields of a rule (e.g. `{"enabled": false}`).
#[utoipa::path(patch, path = "/v1/alert-rules/{id}", tag = "alerts", request_body = RuleChange,
    params(("id" = Uuid, Path, description = "Rule id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AlertRuleView), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn update_rule(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(change): ApiJson<RuleChange>,
) -> Result<Json<AlertRuleView>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::AlertsManage)?;
    let id = resource_id(&id, "alert rule")?;
    let event = audit::by(&principal, AuditAction::AlertRuleUpdated).request(Some(&request_id));
    Ok(Json(
        alerts::update_rule(&state, tenant_id, id, change, event).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/alert-rules/{id}", tag = "alerts",
    params(("id" = Uuid, Path, description = "Rule id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 404, body = crate::error::Problem)))]
pub async fn delete_rule(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant_id = principal.tenant_with(Scope::AlertsManage)?;
    let id = resource_id(&id, "alert rule")?;
    let event = audit::by(&principal, AuditAction::AlertRuleDeleted).request(Some(&request_id));
    alerts::delete_rule(&state, tenant_id, id, event).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// `open`, `acknowledged` or `resolved`.
    pub status: Option<String>,
    /// `info`, `warning` or `critical`.
    pub severity: Option<String>,
    /// `drift`, `reliability`, `unknown_provider`, `change_point` or `extractor_changed`.
    pub metric: Option<String>,
    /// `no_endpoint`, `pending`, `delivered` or `failed`.
    pub delivery_status: Option<String>,
    pub template_id: Option<String>,
    /// 1..=1000, default 100.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AlertPage {
    pub items: Vec<AlertRow>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// Checks that an optional filter value is one of an enum's names.
fn one_of<T>(
    v: &mut Violations,
    field: &str,
    value: &Option<String>,
    parse: fn(&str) -> Option<T>,
    names: &str,
) {
    if let Some(x) = value {
        v.check(parse(x).is_some(), field, &format!("must be {names}"));
    }
}

/// The tenant's alerts, newest first.
#[utoipa::path(get, path = "/v1/alerts", tag = "alerts", params(AlertQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AlertPage), (status = 422, body = crate::error::Problem)))]
pub async fn list_alerts(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<AlertQuery>,
) -> Result<Json<AlertPage>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    let mut v = Violations::default();
    let (limit, before_id) = page::<Uuid>(&mut v, q.limit, q.cursor.as_deref());
    one_of(
        &mut v,
        "status",
        &q.status,
        AlertStatus::parse,
        "open, acknowledged or resolved",
    );
    one_of(
        &mut v,
        "severity",
        &q.severity,
        Severity::parse,
        "info, warning or critical",
    );
    one_of(
        &mut v,
        "metric",
        &q.metric,
        AlertMetric::parse,
        &AlertMetric::names(),
    );
    one_of(
        &mut v,
        "delivery_status",
        &q.delivery_status,
        DeliveryStatus::parse,
        "no_endpoint, pending, delivered or failed",
    );
    v.into_result()?;
    let filter = AlertFilter {
        status: q.status,
        severity: q.severity,
        metric: q.metric,
        delivery_status: q.delivery_status,
        template_id: q.template_id,
        before_id,
        limit,
    };
    let rows = alerts::list_alerts(&state, tenant_id, &filter).await?;
    let next_cursor = next_cursor(&rows, limit, |r| r.id);
    Ok(Json(AlertPage {
        items: rows,
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/alerts/{id}", tag = "alerts",
    params(("id" = Uuid, Path, description = "Alert id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AlertRow), (status = 404, body = crate::error::Problem)))]
pub async fn get_alert(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<AlertRow>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    let id = resource_id(&id, "alert")?;
    Ok(Json(alerts::get_alert(&state, tenant_id, id).await?))
}

async fn move_alert(
    state: AppState,
    request_id: String,
    principal: Principal,
    id: String,
    to: AlertTransition,
) -> Result<Json<AlertRow>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::AlertsManage)?;
    let id = resource_id(&id, "alert")?;
    let action = match to {
        AlertTransition::Acknowledge => AuditAction::AlertAcknowledged,
        AlertTransition::Resolve => AuditAction::AlertResolved,
    };
    let event = audit::by(&principal, action).request(Some(&request_id));
    Ok(Json(
        alerts::transition(&state, tenant_id, id, to, event).await?,
    ))
}

/// Marks an open alert as seen by someone; repeating it changes nothing.
#[utoipa::path(post, path = "/v1/alerts/{id}/acknowledge", tag = "alerts",
    params(("id" = Uuid, Path, description = "Alert id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AlertRow), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem)))]
pub async fn acknowledge(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<AlertRow>, ApiError> {
    move_alert(
        state,
        request_id,
        principal,
        id,
        AlertTransition::Acknowledge,
    )
    .await
}

/// Closes an alert; the next firing of its rule on the same template opens a new one.
#[utoipa::path(post, path = "/v1/alerts/{id}/resolve", tag = "alerts",
    params(("id" = Uuid, Path, description = "Alert id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AlertRow), (status = 404, body = crate::error::Problem)))]
pub async fn resolve(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<AlertRow>, ApiError> {
    move_alert(state, request_id, principal, id, AlertTransition::Resolve).await
}
