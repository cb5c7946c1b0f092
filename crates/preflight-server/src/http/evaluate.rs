//! The working surface: `POST /v1/evaluate`, `/v1/evaluate/batch`, the evaluation history
//! and outcome feedback.
//!
//! Parse, authorize, call `domain::evaluations`, map. The body is read as bytes once: it is
//! hashed for the Idempotency-Key, parsed into a JSON value whose shape the domain checks in
//! full, and stored as received.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use preflight_engine::Decision;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{
    idempotent, key_of, next_cursor, page, parse_json_body, replayed, ApiQuery, Keyed, Violations,
};
use crate::auth::{Principal, Scope};
use crate::domain::evaluations::{
    self, Answer, BatchItem, EvaluationView, FeedbackAnswer, FeedbackRequest, FeedbackResponse,
};
use crate::domain::evaluations::{EvaluateRequest, EvaluateResponse};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::evaluations::EvaluationFilter;
use crate::storage::review::ReviewResolution;

/// Decides one document and stores the decision durably before answering.
#[utoipa::path(post, path = "/v1/evaluate", tag = "evaluations", request_body = EvaluateRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body return the first answer")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = EvaluateResponse), (status = 400, body = crate::error::Problem),
        (status = 413, body = crate::error::Problem), (status = 415, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem), (status = 429, body = crate::error::Problem),
        (status = 503, body = crate::error::Problem)))]
pub async fn evaluate(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Evaluate)?;
    let key = match idempotent(&state, tenant_id, &headers, "/v1/evaluate", &body).await? {
        Keyed::Replay(resp) => return Ok(resp),
        Keyed::Proceed(key) => key,
    };
    let value: serde_json::Value = parse_json_body(&headers, &body)?;
    Ok(
        match evaluations::evaluate_one(&state, tenant_id, value, key).await? {
            Answer::Committed(answer) => Json(answer).into_response(),
            Answer::Replayed(r) => replayed(r),
        },
    )
}

#[derive(Deserialize)]
struct BatchRequest {
    documents: Vec<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResponse {
    /// One result per document, in request order.
    pub results: Vec<BatchItem>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BatchRequestSchema {
    /// 1 to 100 evaluate requests.
    documents: Vec<EvaluateRequest>,
}

/// Decides up to 100 documents; each result is independent (a bad document does not fail
/// the others), in request order.
#[utoipa::path(post, path = "/v1/evaluate/batch", tag = "evaluations", request_body = BatchRequestSchema,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = BatchResponse), (status = 422, body = crate::error::Problem)))]
pub async fn evaluate_batch(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Evaluate)?;
    // Items are replayed one by one (a retried batch may be partly stored), so the key is
    // only parsed here; the domain looks each item up.
    let key = key_of(tenant_id, &headers, "/v1/evaluate/batch", &body)?;
    let req: BatchRequest = parse_json_body(&headers, &body)?;
    let answer = evaluations::evaluate_batch(&state, tenant_id, req.documents, key).await?;
    let mut resp = Json(BatchResponse {
        results: answer.results,
    })
    .into_response();
    if answer.replayed_all {
        resp.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(resp)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EvaluationQuery {
    /// `MATCH`, `REVIEW`, `NEW` or `REJECT`.
    pub decision: Option<String>,
    pub template_id: Option<String>,
    pub correlation_id: Option<String>,
    pub pipeline_id: Option<String>,
    pub min_reliability: Option<f64>,
    pub max_drift: Option<f64>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// 1..=1000, default 100.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EvaluationPage {
    pub items: Vec<EvaluationView>,
    pub next_cursor: Option<String>,
}

/// The tenant's evaluations, newest first, filtered, with a stable cursor.
#[utoipa::path(get, path = "/v1/evaluations", tag = "evaluations", params(EvaluationQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = EvaluationPage), (status = 422, body = crate::error::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<EvaluationQuery>,
) -> Result<Json<EvaluationPage>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    let mut v = Violations::default();
    let (limit, before_id) = page::<Uuid>(&mut v, q.limit, q.cursor.as_deref());
    if let Some(d) = &q.decision {
        v.check(
            Decision::parse(d).is_some(),
            "decision",
            "must be MATCH, REVIEW, NEW or REJECT",
        );
    }
    for (name, value) in [
        ("min_reliability", q.min_reliability),
        ("max_drift", q.max_drift),
    ] {
        if let Some(x) = value {
            v.check(
                x.is_finite() && (0.0..=1.0).contains(&x),
                name,
                "must be between 0 and 1",
            );
        }
    }
    v.into_result()?;
    let filter = EvaluationFilter {
        decision: q.decision,
        template_id: q.template_id,
        correlation_id: q.correlation_id,
        pipeline_id: q.pipeline_id,
        min_reliability: q.min_reliability,
        max_drift: q.max_drift,
        from: q.from,
        to: q.to,
        before_id,
        limit,
    };
    let rows = evaluations::list(&state, tenant_id, &filter).await?;
    let next_cursor = next_cursor(&rows, limit, |r| r.decided.id);
    Ok(Json(EvaluationPage {
        items: rows.into_iter().map(EvaluationView::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/evaluations/{id}", tag = "evaluations", params(("id" = Uuid, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = EvaluationView), (status = 404, body = crate::error::Problem)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<EvaluationView>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    let id = evaluations::parse_id(&id)?;
    Ok(Json(evaluations::get(&state, tenant_id, id).await?.into()))
}

/// Records (or changes) the outcome of an evaluation; the template's per-extractor
/// statistics move exactly once per change of outcome and feed reliability.
#[utoipa::path(post, path = "/v1/evaluations/{id}/feedback", tag = "evaluations", params(("id" = Uuid, Path)),
    request_body = FeedbackRequest, security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = FeedbackResponse), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn feedback(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Evaluate)?;
    let id = evaluations::parse_id(&id)?;
    let route = format!("/v1/evaluations/{id}/feedback");
    let key = match idempotent(&state, tenant_id, &headers, &route, &body).await? {
        Keyed::Replay(resp) => return Ok(resp),
        Keyed::Proceed(key) => key,
    };
    let req: FeedbackRequest = parse_json_body(&headers, &body)?;
    Ok(
        match evaluations::record_feedback(
            &state,
            tenant_id,
            id,
            req,
            key,
            ReviewResolution::Follow {
                by: &principal.audit_actor(),
            },
        )
        .await?
        {
            FeedbackAnswer::Recorded(r) => Json(r).into_response(),
            FeedbackAnswer::Replayed(r) => replayed(r),
        },
    )
}
