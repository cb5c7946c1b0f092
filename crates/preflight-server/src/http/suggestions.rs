//! `/v1/template-suggestions`: recurring layouts among a tenant's NEW evaluations, and
//! turning one into a template (accept) or putting it aside for good (dismiss).
//!
//! Parse, authorize, call `domain::suggestions`, map: the window, the clustering, what a
//! dismissal suppresses and what an acceptance creates are the domain's.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;

use super::extract::{idempotent, parse_json_body, replayed, ApiQuery, Keyed};
use super::observe::RequestId;
use crate::auth::{Principal, Scope};
use crate::domain::audit::{self, AuditAction, AuditExt};
use crate::domain::suggestions::{
    self, AcceptOutcome, AcceptRequest, Accepted, DecisionView, SuggestionList, SuggestionQuery,
};
use crate::error::{ApiError, Problem};
use crate::state::AppState;

/// Clusters of the tenant's NEW evaluations that look like one unregistered template each,
/// largest first. At most the 5 000 most recent NEW evaluations of the window are
/// clustered (`truncated` says when the window held more).
#[utoipa::path(get, path = "/v1/template-suggestions", tag = "suggestions", params(SuggestionQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = SuggestionList), (status = 400, body = Problem),
        (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<SuggestionQuery>,
) -> Result<Json<SuggestionList>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    Ok(Json(
        suggestions::list(&state, tenant_id, &q, Utc::now()).await?,
    ))
}

/// Registers the suggestion's layout as a template (version 1) whose exemplars are the
/// cluster's exemplars; its members leave later listings. Send the listing's query
/// parameters so the same clusters are recomputed.
#[utoipa::path(post, path = "/v1/template-suggestions/{id}/accept", tag = "suggestions",
    request_body = AcceptRequest,
    params(("id" = String, Path, description = "The suggestion id from the listing"), SuggestionQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body return the first answer")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = Accepted), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "The template_id is taken, the suggestion was decided, or it is no longer in the listing (list again)", body = Problem),
        (status = 422, body = Problem)))]
pub async fn accept(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SuggestionQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant_id = principal.tenant_with(Scope::TemplatesWrite)?;
    let key_id = suggestions::parse_id(&id)?;
    let route = format!("/v1/template-suggestions/{key_id}/accept");
    let key = match idempotent(&state, tenant_id, &headers, &route, &body).await? {
        Keyed::Replay(resp) => return Ok(resp),
        Keyed::Proceed(key) => key,
    };
    let req: AcceptRequest = parse_json_body(&headers, &body)?;
    // The template is created as any other (`template_created`, naming the suggestion);
    // the acceptance is its own event, in the same transaction.
    let layout_event =
        audit::by(&principal, AuditAction::TemplateCreated).request(Some(&request_id));
    let event =
        audit::by(&principal, AuditAction::TemplateSuggestionAccepted).request(Some(&request_id));
    let outcome = suggestions::accept(
        &state,
        tenant_id,
        &key_id,
        &q,
        req,
        layout_event,
        event,
        key.as_ref(),
        Utc::now(),
    )
    .await?;
    Ok(match outcome {
        AcceptOutcome::New(accepted) => (StatusCode::CREATED, Json(*accepted)).into_response(),
        AcceptOutcome::Replayed(r) => replayed(r),
    })
}

/// Puts the suggestion aside: neither it nor a later cluster of the same layout is listed
/// again. Dismissing it again answers the same decision.
#[utoipa::path(post, path = "/v1/template-suggestions/{id}/dismiss", tag = "suggestions",
    params(("id" = String, Path, description = "The suggestion id from the listing"), SuggestionQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = DecisionView), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "The suggestion was accepted, or it is no longer in the listing (list again)", body = Problem),
        (status = 422, body = Problem)))]
pub async fn dismiss(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SuggestionQuery>,
) -> Result<Json<DecisionView>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::TemplatesWrite)?;
    let event =
        audit::by(&principal, AuditAction::TemplateSuggestionDismissed).request(Some(&request_id));
    Ok(Json(
        suggestions::dismiss(&state, tenant_id, &id, &q, event, Utc::now()).await?,
    ))
}
