//! `/v1/templates`: a tenant's versioned layout templates, their status lifecycle, extra
//! exemplars, registration from an evaluation, and drift over time.
//!
//! Parse, authorize, call `domain::templates` (or `domain::drift`), map: the rules —
//! validation, versioning, the lifecycle, optimistic edits — live in the domain.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use preflight_engine::{CorrectionRule, ExtractorIdentity, StructuralFeatures};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{
    idempotent, next_cursor, page, parse_json_body, replayed, ApiJson, ApiQuery, Keyed, Violations,
};
use super::observe::RequestId;
use crate::auth::{Principal, Scope};
use crate::domain::audit::{self, AuditAction, AuditExt};
use crate::domain::drift::{self, DriftReport, DriftRequest};
use crate::domain::evaluations;
use crate::domain::templates::{
    self, Created, LayoutSource, MetadataEdit, NewVersion, TemplateExport, TemplateRef,
    TemplateStatus, TemplateView,
};
use crate::error::{ApiError, FieldError};
use crate::state::AppState;
use crate::storage::templates::TemplateRow;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplateRequest {
    /// Your name for the layout: 1 to 200 of `A-Z a-z 0-9 . _ : -`.
    pub template_id: String,
    /// At least 1; defaults to the highest existing version + 1.
    pub version: Option<i64>,
    pub name: Option<String>,
    pub description: Option<String>,
    /// One exemplar layout (the `structural_features` of a sample document).
    #[schema(value_type = Option<Object>)]
    pub structural_features: Option<StructuralFeatures>,
    /// One or more exemplar layouts (up to 50), instead of `structural_features`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub exemplars: Option<Vec<StructuralFeatures>>,
    /// 0..1, default 0.9: the prior reliability of extractions of this layout.
    pub baseline_reliability: Option<f64>,
    /// `{field, rule, parameters}` hints returned with matching evaluations.
    #[schema(value_type = Option<Vec<Object>>)]
    pub correction_rules: Option<Vec<CorrectionRule>>,
    /// `active` (default) or `draft`.
    pub status: Option<String>,
    /// `{vendor, model, version}` of the extractor that produced the exemplars: the version
    /// has seen it, and names a document from another extractor `EXTRACTOR_CHANGED`.
    #[schema(value_type = Option<Object>)]
    pub extractor: Option<ExtractorIdentity>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FromEvaluationRequest {
    pub template_id: String,
    pub version: Option<i64>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub baseline_reliability: Option<f64>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub correction_rules: Option<Vec<CorrectionRule>>,
}

/// Metadata changes; the layout itself changes through exemplars or a new version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTemplateRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    pub baseline_reliability: Option<f64>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub correction_rules: Option<Vec<CorrectionRule>>,
}

impl From<UpdateTemplateRequest> for MetadataEdit {
    fn from(r: UpdateTemplateRequest) -> Self {
        MetadataEdit {
            name: r.name,
            description: r.description,
            baseline_reliability: r.baseline_reliability,
            correction_rules: r.correction_rules,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddExemplarRequest {
    #[schema(value_type = Object)]
    pub structural_features: StructuralFeatures,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// `draft`, `active`, `deprecated` or `archived`.
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct TemplatePage {
    pub items: Vec<TemplateView>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub status: Option<String>,
    pub template_id: Option<String>,
    /// 1..=1000, default 100.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Only versions with this status (`draft`, `active`, `deprecated`, `archived`).
    pub status: Option<String>,
    /// Only the versions of this template.
    pub template_id: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetQuery {
    /// With a `template_id` as `{id}`: this version instead of the newest.
    pub version: Option<i64>,
    /// `exemplars` to include the exemplar layouts.
    pub include: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// With a `template_id` as `{id}`: this version instead of the newest.
    pub version: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DriftQuery {
    pub version: Option<i64>,
    /// RFC 3339; default 30 days before `to`.
    pub from: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive; default now.
    pub to: Option<DateTime<Utc>>,
    /// `hour` or `day` (default).
    pub bucket: Option<String>,
}

/// The template a route names: `{id}` in the path (a version id or a `template_id`) and
/// an optional `?version=N`.
pub struct TemplateTarget {
    pub reference: TemplateRef,
    pub version: Option<i64>,
}

impl TemplateTarget {
    async fn resolve(&self, state: &AppState, tenant_id: Uuid) -> Result<TemplateRow, ApiError> {
        templates::resolve(state, tenant_id, &self.reference, self.version).await
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TemplateTarget {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound("template".into()))?;
        let ApiQuery(q) = ApiQuery::<VersionQuery>::from_request_parts(parts, state).await?;
        Ok(TemplateTarget {
            reference: TemplateRef::parse(&id),
            version: q.version,
        })
    }
}

fn created(outcome: Created) -> Response {
    match outcome {
        Created::New(view) => (StatusCode::CREATED, Json(*view)).into_response(),
        Created::Replayed(r) => replayed(r),
    }
}

/// Registers a template version from one or more exemplar layouts.
#[utoipa::path(post, path = "/v1/templates", tag = "templates", request_body = CreateTemplateRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body return the first answer")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = TemplateView), (status = 403, body = crate::error::Problem),
        (status = 409, description = "The version exists, or the tenant is at its active-template limit", body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant_id = principal.tenant_with(Scope::TemplatesWrite)?;
    let key = match idempotent(&state, tenant_id, &headers, "/v1/templates", &body).await? {
        Keyed::Replay(resp) => return Ok(resp),
        Keyed::Proceed(key) => key,
    };
    let req: CreateTemplateRequest = parse_json_body(&headers, &body)?;
    let layout = LayoutSource::Sent {
        one: req.structural_features,
        many: req.exemplars,
    };
    let spec = NewVersion {
        template_id: req.template_id,
        version: req.version,
        name: req.name,
        description: req.description,
        baseline_reliability: req.baseline_reliability,
        correction_rules: req.correction_rules,
        status: req.status,
        extractor: req.extractor,
    };
    let event =
        audit::by(&principal, templates::action_for_create(&layout)).request(Some(&request_id));
    let outcome = templates::create(&state, tenant_id, spec, layout, event, key.as_ref()).await?;
    Ok(created(outcome))
}

/// Registers the layout of a stored evaluation (typically a `NEW` one) as a template.
#[utoipa::path(post, path = "/v1/templates/from-evaluation/{evaluation_id}", tag = "templates",
    request_body = FromEvaluationRequest, params(("evaluation_id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body return the first answer")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = TemplateView), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn from_evaluation(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    Path(evaluation_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant_id = principal.tenant_with(Scope::TemplatesWrite)?;
    let evaluation_id = evaluations::parse_id(&evaluation_id)?;
    let route = format!("/v1/templates/from-evaluation/{evaluation_id}");
    let key = match idempotent(&state, tenant_id, &headers, &route, &body).await? {
        Keyed::Replay(resp) => return Ok(resp),
        Keyed::Proceed(key) => key,
    };
    let req: FromEvaluationRequest = parse_json_body(&headers, &body)?;
    let layout = evaluations::layout_of(&state, tenant_id, evaluation_id).await?;
    let spec = NewVersion {
        template_id: req.template_id,
        version: req.version,
        name: req.name,
        description: req.description,
        baseline_reliability: req.baseline_reliability,
        correction_rules: req.correction_rules,
        status: None,
        extractor: None,
    };
    let event =
        audit::by(&principal, templates::action_for_create(&layout)).request(Some(&request_id));
    let outcome = templates::create(&state, tenant_id, spec, layout, event, key.as_ref()).await?;
    Ok(created(outcome))
}

/// Lists the tenant's template versions in id (creation) order.
#[utoipa::path(get, path = "/v1/templates", tag = "templates", params(ListQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = TemplatePage), (status = 422, body = crate::error::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<TemplatePage>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    let mut v = Violations::default();
    let (limit, after_id) = page::<Uuid>(&mut v, q.limit, q.cursor.as_deref());
    let status = status_filter(&mut v, q.status.as_deref());
    v.into_result()?;
    let rows = templates::list(&state, tenant_id, status, q.template_id, after_id, limit).await?;
    let next_cursor = next_cursor(&rows, limit, |r| r.id);
    Ok(Json(TemplatePage {
        items: rows.iter().map(|r| TemplateView::of(r, false)).collect(),
        next_cursor,
    }))
}

/// A `status` query parameter, checked.
fn status_filter(v: &mut Violations, raw: Option<&str>) -> Option<TemplateStatus> {
    raw.and_then(|s| {
        let parsed = TemplateStatus::parse(s);
        v.check(
            parsed.is_some(),
            "status",
            "must be draft, active, deprecated or archived",
        );
        parsed
    })
}

/// Every version of the tenant (or those of `status` / `template_id`) with its exemplars, in
/// one document: what `preflight.Engine.from_export` in the Python package loads. At most
/// 5 000 versions; past that the answer is a 422 asking for a narrower export.
#[utoipa::path(get, path = "/v1/templates/export", tag = "templates", params(ExportQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = TemplateExport), (status = 422, body = crate::error::Problem)))]
pub async fn export(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Json<TemplateExport>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    let mut v = Violations::default();
    let status = status_filter(&mut v, q.status.as_deref());
    v.into_result()?;
    Ok(Json(
        templates::export(&state, tenant_id, status, q.template_id).await?,
    ))
}

/// One version, by its id or by `template_id` (newest, or `?version=N`).
#[utoipa::path(get, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "Version id, or a template_id"), GetQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = TemplateView), (status = 404, body = crate::error::Problem)))]
pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<GetQuery>,
) -> Result<Json<TemplateView>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    let include_exemplars = match q.include.as_deref() {
        None | Some("") => false,
        Some("exemplars") => true,
        Some(_) => {
            return Err(ApiError::Validation(vec![FieldError {
                field: "include".into(),
                message: "the only value is exemplars".into(),
            }]))
        }
    };
    let row = templates::resolve(&state, tenant_id, &TemplateRef::parse(&id), q.version).await?;
    Ok(Json(TemplateView::of(&row, include_exemplars)))
}

/// Changes a version's name, description, baseline reliability or correction rules.
#[utoipa::path(put, path = "/v1/templates/{id}", tag = "templates", request_body = UpdateTemplateRequest,
    params(("id" = String, Path, description = "Version id, or a template_id"), VersionQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = TemplateView), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn update(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    target: TemplateTarget,
    ApiJson(req): ApiJson<UpdateTemplateRequest>,
) -> Result<Json<TemplateView>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::TemplatesWrite)?;
    let target = target.resolve(&state, tenant_id).await?;
    let event = audit::by(&principal, AuditAction::TemplateUpdated).request(Some(&request_id));
    let row = templates::update_metadata(&state, tenant_id, &target, req.into(), event).await?;
    Ok(Json(TemplateView::of(&row, false)))
}

/// Adds an exemplar so the version learns its natural variation (up to 50 per version).
#[utoipa::path(post, path = "/v1/templates/{id}/exemplars", tag = "templates", request_body = AddExemplarRequest,
    params(("id" = String, Path, description = "Version id, or a template_id"), VersionQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "A retry does not add the exemplar twice")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = TemplateView), (status = 404, body = crate::error::Problem),
        (status = 409, description = "The version holds 50 exemplars", body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn add_exemplar(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    target: TemplateTarget,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant_id = principal.tenant_with(Scope::TemplatesWrite)?;
    let route = format!("/v1/templates/{}/exemplars", target.reference.as_str());
    let key = match idempotent(&state, tenant_id, &headers, &route, &body).await? {
        Keyed::Replay(resp) => return Ok(resp),
        Keyed::Proceed(key) => key,
    };
    let req: AddExemplarRequest = parse_json_body(&headers, &body)?;
    let target = target.resolve(&state, tenant_id).await?;
    let event =
        audit::by(&principal, AuditAction::TemplateExemplarAdded).request(Some(&request_id));
    let row = templates::add_exemplar(
        &state,
        tenant_id,
        &target,
        req.structural_features,
        event,
        key.as_ref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(TemplateView::of(&row, false))).into_response())
}

/// Moves a version through its lifecycle; only `active` versions take part in matching.
#[utoipa::path(patch, path = "/v1/templates/{id}/status", tag = "templates", request_body = StatusRequest,
    params(("id" = String, Path, description = "Version id, or a template_id"), VersionQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = TemplateView), (status = 404, body = crate::error::Problem),
        (status = 409, description = "The transition is not allowed", body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn set_status(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    target: TemplateTarget,
    ApiJson(req): ApiJson<StatusRequest>,
) -> Result<Json<TemplateView>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::TemplatesWrite)?;
    let to = TemplateStatus::parse(&req.status).ok_or_else(|| {
        ApiError::Validation(vec![FieldError {
            field: "status".into(),
            message: "must be draft, active, deprecated or archived".into(),
        }])
    })?;
    let target = target.resolve(&state, tenant_id).await?;
    let event =
        audit::by(&principal, AuditAction::TemplateStatusChanged).request(Some(&request_id));
    let row = templates::set_status(&state, tenant_id, &target, to, event).await?;
    Ok(Json(TemplateView::of(&row, false)))
}

/// Deprecates a version: it stops matching, its history and statistics are kept.
#[utoipa::path(delete, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "Version id, or a template_id"), VersionQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = TemplateView), (status = 404, body = crate::error::Problem),
        (status = 409, description = "The version is archived", body = crate::error::Problem)))]
pub async fn deprecate(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    principal: Principal,
    target: TemplateTarget,
) -> Result<Json<TemplateView>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::TemplatesWrite)?;
    let target = target.resolve(&state, tenant_id).await?;
    let event = audit::by(&principal, AuditAction::TemplateDeprecated).request(Some(&request_id));
    let row = templates::deprecate(&state, tenant_id, &target, event).await?;
    Ok(Json(TemplateView::of(&row, false)))
}

/// The version's similarity, drift, reliability and extractor confidence over time, with
/// the change points its detector confirmed. Every number comes from stored evaluations.
#[utoipa::path(get, path = "/v1/templates/{id}/drift", tag = "templates",
    params(("id" = String, Path, description = "Version id, or a template_id"), DriftQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = DriftReport), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn drift(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DriftQuery>,
) -> Result<Json<DriftReport>, ApiError> {
    let tenant_id = principal.tenant_with(Scope::Read)?;
    let req = DriftRequest {
        version: q.version,
        from: q.from,
        to: q.to,
        bucket: q.bucket,
    };
    Ok(Json(
        drift::report(&state, tenant_id, &TemplateRef::parse(&id), req).await?,
    ))
}
