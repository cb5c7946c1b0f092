//! `/v1/review-items`: the review queue — list, claim (or claim the next), extend,
//! release, resolve, bulk resolve.
//!
//! Parse, authorize, call `domain::review`, map. Reading takes `read`; moving items takes
//! `evaluate`, the scope feedback takes, since resolving records feedback.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use preflight_engine::Decision;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{
    next_cursor, optional_json_body, page, resource_id, ApiJson, ApiQuery, Violations,
};
use super::observe::RequestId;
use crate::auth::{Principal, Scope};
use crate::domain::audit::{self, AuditAction, AuditExt};
use crate::domain::review::{
    self, BulkResolveRequest, BulkResolveResponse, ClaimRequest, ClaimedItem, PageCursor,
    ResolveRequest, ResolvedItem, ReviewItemView, ReviewReason,
};
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use crate::storage::review::{QueueOrder, QueueState, ReviewFilter};

/// Which items: every filter is optional and they combine.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueSelection {
    /// Listing only (documented on its route): claim-next takes open items and refuses a
    /// `status`.
    #[param(ignore)]
    pub status: Option<String>,
    /// `MATCH`, `REVIEW`, `NEW` or `REJECT`.
    pub decision: Option<String>,
    /// `decision` or `sample`.
    pub reason: Option<String>,
    pub template_id: Option<String>,
    pub extractor_vendor: Option<String>,
    pub extractor_model: Option<String>,
    pub evaluation_id: Option<Uuid>,
    /// Only items at least this old (seconds since the evaluation).
    pub min_age_seconds: Option<i64>,
    /// Only items at most this old.
    pub max_age_seconds: Option<i64>,
    /// `priority` (default: highest first, then oldest) or `age` (oldest first).
    pub sort: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1..=1000, default 100.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page (of the same `sort`).
    pub cursor: Option<String>,
}

/// The selection as a storage filter; every invalid value is reported at once.
fn filter(
    v: &mut Violations,
    s: QueueSelection,
    limit: i64,
    after: Option<PageCursor>,
    now: DateTime<Utc>,
) -> ReviewFilter {
    let state = match s.status.as_deref() {
        None | Some("unresolved") => QueueState::Unresolved,
        Some("open") => QueueState::Open,
        Some("claimed") => QueueState::Claimed,
        Some("resolved") => QueueState::Resolved,
        Some(_) => {
            v.add("status", "must be open, claimed, resolved or unresolved");
            QueueState::Unresolved
        }
    };
    if let Some(d) = &s.decision {
        v.check(
            Decision::parse(d).is_some(),
            "decision",
            "must be MATCH, REVIEW, NEW or REJECT",
        );
    }
    if let Some(r) = &s.reason {
        v.check(
            ReviewReason::parse(r).is_some(),
            "reason",
            "must be decision or sample",
        );
    }
    let order = match s.sort.as_deref() {
        None | Some("priority") => QueueOrder::Priority,
        Some("age") => QueueOrder::Age,
        Some(_) => {
            v.add("sort", "must be priority or age");
            QueueOrder::Priority
        }
    };
    let age = |v: &mut Violations, field: &str, seconds: Option<i64>| {
        seconds.map(|s| {
            v.check(
                (0..=100 * 366 * 86_400).contains(&s),
                field,
                "must be a number of seconds between 0 and 100 years",
            );
            now - Duration::seconds(s.clamp(0, 100 * 366 * 86_400))
        })
    };
    let created_until = age(v, "min_age_seconds", s.min_age_seconds);
    let created_since = age(v, "max_age_seconds", s.max_age_seconds);
    ReviewFilter {
        state,
        decision: s.decision,
        reason: s.reason,
        template_id: s.template_id,
        extractor_vendor: s.extractor_vendor,
        extractor_model: s.extractor_model,
        evaluation_id: s.evaluation_id,
        created_until,
        created_since,
        order,
        after: after.map(|c| c.0),
        limit,
    }
}

#[derive(Serialize, ToSchema)]
pub struct ReviewPage {
    pub items: Vec<ReviewItemView>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// The queue, highest priority first (or oldest first with `sort=age`).
#[utoipa::path(get, path = "/v1/review-items", tag = "review",
    params(("status" = Option<String>, Query,
            description = "`open` (claimable), `claimed`, `resolved`, or `unresolved` (default: open and claimed)"),
        QueueSelection, PageQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = ReviewPage), (status = 422, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(selection): ApiQuery<QueueSelection>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<ReviewPage>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    let now = Utc::now();
    let mut v = Violations::default();
    let (limit, after) = page::<PageCursor>(&mut v, q.limit, q.cursor.as_deref());
    let filter = filter(&mut v, selection, limit, after, now);
    v.into_result()?;
    let items = review::list(&state, tenant_id, &filter, now).await?;
    let next_cursor = next_cursor(&items, limit, PageCursor::after);
    Ok(Json(ReviewPage { items, next_cursor }))
}

#[utoipa::path(get, path = "/v1/review-items/{id}", tag = "review",
    params(("id" = Uuid, Path, description = "Review item id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = ReviewItemView), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<ReviewItemView>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    let id = resource_id(&id, "review item")?;
    let row = review::get(&state, tenant_id, id).await?;
    Ok(Json(ReviewItemView::of(row, Utc::now())))
}

/// Claims an item for `lease_seconds` (default 600); with the current `lease_token`,
/// extends the claim instead. 409 while someone else holds it or once it is resolved.
#[utoipa::path(post, path = "/v1/review-items/{id}/claim", tag = "review",
    params(("id" = Uuid, Path, description = "Review item id")),
    request_body(content = ClaimRequest, description = "Optional; `{}` claims for 600 s"),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = ClaimedItem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn claim(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ClaimedItem>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Evaluate)?;
    let id = resource_id(&id, "review item")?;
    let req: ClaimRequest = optional_json_body(&headers, &body)?;
    let event = audit::by(&principal, AuditAction::ReviewItemClaimed).request(Some(&request_id));
    let by = principal.audit_actor();
    Ok(Json(
        review::claim(&state, tenant_id, id, &req, &by, event).await?,
    ))
}

/// Claims the next open item (highest priority, then oldest, or oldest with `sort=age`)
/// among those the query selects: reviewers asking at once each get a different item.
/// The body (optional) may set `lease_seconds`. 204 when none is open.
#[utoipa::path(post, path = "/v1/review-items/claim-next", tag = "review", params(QueueSelection),
    request_body(content = ClaimRequest, description = "Optional: `lease_seconds`"),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = ClaimedItem), (status = 204, description = "Nothing open"),
        (status = 422, body = Problem)))]
pub async fn claim_next(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    ApiQuery(selection): ApiQuery<QueueSelection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Evaluate)?;
    let req: ClaimRequest = optional_json_body(&headers, &body)?;
    let mut v = Violations::default();
    v.check(
        req.lease_token.is_none(),
        "lease_token",
        "extend a claim with POST /v1/review-items/{id}/claim",
    );
    v.check(
        selection.status.is_none(),
        "status",
        "claim-next takes open items only; leave status out",
    );
    let filter = filter(&mut v, selection, 1, None, Utc::now());
    v.into_result()?;
    let event = audit::by(&principal, AuditAction::ReviewItemClaimed).request(Some(&request_id));
    let by = principal.audit_actor();
    Ok(
        match review::claim_next(&state, tenant_id, &filter, req.lease_seconds, &by, event).await? {
            Some(claimed) => Json(claimed).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        },
    )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The claim's token.
    pub lease_token: Uuid,
}

/// Returns a claimed item to the queue at once (instead of when its lease runs out).
#[utoipa::path(post, path = "/v1/review-items/{id}/release", tag = "review",
    params(("id" = Uuid, Path, description = "Review item id")), request_body = ReleaseRequest,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = ReviewItemView), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn release(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ReleaseRequest>,
) -> Result<Json<ReviewItemView>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Evaluate)?;
    let id = resource_id(&id, "review item")?;
    let event = audit::by(&principal, AuditAction::ReviewItemReleased).request(Some(&request_id));
    Ok(Json(
        review::release(&state, tenant_id, id, req.lease_token, event).await?,
    ))
}

/// Resolves an item: `outcome` is recorded as the evaluation's feedback (template
/// statistics, reliability learning, calibration) in the same transaction. An item held
/// by someone else is a 409; an open one needs no token.
#[utoipa::path(post, path = "/v1/review-items/{id}/resolve", tag = "review",
    params(("id" = Uuid, Path, description = "Review item id")), request_body = ResolveRequest,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = ResolvedItem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn resolve(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ResolveRequest>,
) -> Result<Json<ResolvedItem>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Evaluate)?;
    let id = resource_id(&id, "review item")?;
    let event = audit::by(&principal, AuditAction::ReviewItemResolved).request(Some(&request_id));
    let by = principal.audit_actor();
    Ok(Json(
        review::resolve(&state, tenant_id, id, req, &by, event).await?,
    ))
}

/// Resolves up to 100 items, each on its own: one that cannot be resolved (404, 409, 422)
/// is reported in its result and does not hold back the others.
#[utoipa::path(post, path = "/v1/review-items/resolve", tag = "review",
    request_body = BulkResolveRequest, security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = BulkResolveResponse), (status = 422, body = Problem)))]
pub async fn bulk_resolve(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    ApiJson(req): ApiJson<BulkResolveRequest>,
) -> Result<Json<BulkResolveResponse>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Evaluate)?;
    let event = audit::by(&principal, AuditAction::ReviewItemResolved).request(Some(&request_id));
    let by = principal.audit_actor();
    Ok(Json(
        review::bulk_resolve(&state, tenant_id, req, &by, event).await?,
    ))
}
