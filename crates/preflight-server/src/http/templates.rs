//! `/v1/templates`: a tenant's versioned layout templates, their status lifecycle, extra
//! exemplars, registration from an evaluation, and drift over time.
//!
//! Handlers are thin: parse, authorize, go through the store, then bring this instance's
//! template index up to date at once (other instances follow within the registry's sync
//! interval). Metadata edits are optimistic: a concurrent change (another edit, or feedback
//! moving the outcome statistics) makes the save fail, and the edit is re-applied to a fresh
//! read, so no update is lost.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use preflight_engine::{
    CorrectionRule, DriftDetectorState, OutcomeStats, StructuralFeatures, Template,
    ValidationErrors,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{next_cursor, page, parse_json_body, ApiJson, ApiQuery, Violations};
use super::observe::RequestId;
use crate::app::AppState;
use crate::audit::{self, AuditExt};
use crate::auth::{store_unavailable, Principal, Scope};
use crate::error::{ApiError, FieldError};
use crate::idempotency::{self, Begin, IdempotencyKey};
use crate::storage::evaluations::{TemplateFilter, TemplateRow};
use crate::storage::identity::NewAuditEvent;
use crate::storage::StoreError;

/// Active template versions one tenant may hold; bounds the in-memory index per tenant.
pub const MAX_ACTIVE_TEMPLATES: i64 = 50_000;
/// Exemplars one version may learn from; more adds cost without teaching much more.
pub const MAX_EXEMPLARS: usize = 50;
const MAX_TEMPLATE_ID_LEN: usize = 200;
const MAX_NAME_LEN: usize = 200;
const MAX_DESCRIPTION_LEN: usize = 2_000;
const MAX_CORRECTION_RULES: usize = 100;
const DEFAULT_BASELINE_RELIABILITY: f64 = 0.9;
/// Re-reads after an optimistic conflict before giving up with a 409.
const SAVE_RETRIES: usize = 3;
/// Evaluations read per drift request; the answer says when the range held more.
const DRIFT_SERIES_LIMIT: i64 = 100_000;
const STATUSES: [&str; 4] = ["draft", "active", "deprecated", "archived"];

/// All template routes, to be merged into the authenticated `/v1` router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/templates", post(create).get(list))
        .route(
            "/v1/templates/{id}",
            get(get_one).put(update).delete(deprecate),
        )
        .route("/v1/templates/{id}/status", patch(set_status))
        .route("/v1/templates/{id}/exemplars", post(add_exemplar))
        .route("/v1/templates/{id}/drift", get(drift))
        .route(
            "/v1/templates/from-evaluation/{evaluation_id}",
            post(from_evaluation),
        )
}

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

/// One template version as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateView {
    /// The version's own id (`template_version_id` in evaluations).
    pub id: Uuid,
    pub template_id: String,
    pub version: i64,
    pub name: Option<String>,
    pub description: Option<String>,
    /// `draft`, `active`, `deprecated` or `archived`; only `active` versions match.
    pub status: String,
    pub baseline_reliability: f64,
    #[schema(value_type = Vec<Object>)]
    pub correction_rules: Vec<CorrectionRule>,
    pub exemplar_count: usize,
    /// Evaluations matched to this version so far.
    pub evaluation_count: i64,
    /// Feedback counters per extractor, keyed `vendor/model`.
    #[schema(value_type = Object)]
    pub outcome_stats: BTreeMap<String, OutcomeStats>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Only with `?include=exemplars`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub exemplars: Option<Vec<StructuralFeatures>>,
}

impl TemplateView {
    fn of(row: &TemplateRow, include_exemplars: bool) -> TemplateView {
        TemplateView {
            id: row.id,
            template_id: row.template_id.clone(),
            version: row.version,
            name: row.name.clone(),
            description: row.description.clone(),
            status: row.status.clone(),
            baseline_reliability: row.baseline_reliability,
            correction_rules: row.correction_rules.0.clone(),
            exemplar_count: row.exemplars.0.len(),
            evaluation_count: row.evaluation_count,
            outcome_stats: row.outcome_stats.0.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            exemplars: include_exemplars.then(|| row.exemplars.0.clone()),
        }
    }
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

#[derive(Serialize, ToSchema)]
pub struct DriftBucket {
    pub start: DateTime<Utc>,
    pub count: usize,
    pub mean_similarity: f64,
    pub mean_drift: f64,
    pub mean_reliability: f64,
    pub mean_extractor_confidence: f64,
}

#[derive(Serialize, ToSchema)]
pub struct ChangePointView {
    /// The evaluation (1-based, per version) where the change began.
    pub observation: i64,
    /// The evaluation at which the detector confirmed it.
    pub detected_at_observation: i64,
    /// `similarity`, `drift` or `extractor_confidence`.
    pub series: String,
    pub baseline_mean: f64,
    pub recent_mean: f64,
    pub evaluation_id: Uuid,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct DetectorView {
    pub observations: u64,
    pub changes: u64,
}

#[derive(Serialize, ToSchema)]
pub struct DriftReport {
    pub template_id: String,
    pub template_version_id: Uuid,
    pub version: i64,
    pub evaluation_count: i64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// `hour` or `day`.
    pub bucket: String,
    /// Buckets holding at least one evaluation, oldest first.
    pub buckets: Vec<DriftBucket>,
    /// True when the range held more than 100 000 evaluations and only the oldest were read.
    pub truncated: bool,
    /// Change points that occurred within the range.
    pub change_points: Vec<ChangePointView>,
    pub detector: DetectorView,
}

fn not_found() -> ApiError {
    ApiError::NotFound("template".into())
}

fn valid_template_id(id: &str) -> bool {
    let n = id.chars().count();
    (1..=MAX_TEMPLATE_ID_LEN).contains(&n)
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Finds a version by its UUID, or by `template_id` (newest, or `version`). Another
/// tenant's template is the same 404 as a missing one: every query carries the tenant.
pub async fn resolve(
    state: &AppState,
    tenant_id: Uuid,
    id: &str,
    version: Option<i64>,
) -> Result<TemplateRow, ApiError> {
    if let Ok(uuid) = Uuid::parse_str(id) {
        let found = state
            .store()
            .get_template(tenant_id, uuid)
            .await
            .map_err(store_unavailable)?;
        if let Some(row) = found {
            return match version {
                Some(v) if v != row.version => Err(not_found()),
                _ => Ok(row),
            };
        }
        // A template_id may itself look like a UUID; fall through to the name lookup.
    }
    if !valid_template_id(id) {
        return Err(not_found());
    }
    state
        .store()
        .find_template(tenant_id, id, version)
        .await
        .map_err(store_unavailable)?
        .ok_or_else(not_found)
}

/// Shared checks of the metadata fields of create, from-evaluation and update.
fn check_metadata(
    v: &mut Violations,
    name: Option<&str>,
    description: Option<&str>,
    correction_rules: Option<&[CorrectionRule]>,
) {
    if let Some(name) = name {
        v.check(
            name.chars().count() <= MAX_NAME_LEN,
            "name",
            "must be at most 200 characters",
        );
    }
    if let Some(d) = description {
        v.check(
            d.chars().count() <= MAX_DESCRIPTION_LEN,
            "description",
            "must be at most 2000 characters",
        );
    }
    if let Some(rules) = correction_rules {
        v.check(
            rules.len() <= MAX_CORRECTION_RULES,
            "correction_rules",
            "must hold at most 100 rules",
        );
    }
}

/// Adds the engine's own findings (exemplar geometry, reliability range, rule fields),
/// renaming the engine's `exemplars[i]` paths to the field the client actually sent.
fn add_engine_errors(
    v: &mut Violations,
    errors: ValidationErrors,
    rename: &dyn Fn(&str) -> String,
) {
    for e in errors.into_vec() {
        v.add(rename(&e.field), e.message);
    }
}

/// Builds the engine template from a row, which is the real validation of its exemplars.
fn build(row: &TemplateRow) -> Result<Template, ValidationErrors> {
    Template::new(
        // The client's template_id is checked by our own, stricter rule.
        "validated-separately",
        row.version,
        row.id.to_string(),
        row.exemplars.0.clone(),
        row.baseline_reliability,
        row.correction_rules.0.clone(),
    )
}

/// What a client asked to create, from either creation route.
struct NewVersion {
    template_id: String,
    version: Option<i64>,
    name: Option<String>,
    description: Option<String>,
    exemplars: Vec<StructuralFeatures>,
    baseline_reliability: f64,
    correction_rules: Vec<CorrectionRule>,
    status: String,
}

impl NewVersion {
    fn row(&self, tenant_id: Uuid, version: i64) -> TemplateRow {
        let now = Utc::now();
        TemplateRow {
            id: Uuid::now_v7(),
            tenant_id,
            template_id: self.template_id.clone(),
            version,
            name: self.name.clone(),
            description: self.description.clone(),
            status: self.status.clone(),
            baseline_reliability: self.baseline_reliability,
            correction_rules: sqlx::types::Json(self.correction_rules.clone()),
            exemplars: sqlx::types::Json(self.exemplars.clone()),
            outcome_stats: sqlx::types::Json(BTreeMap::new()),
            detector_state: sqlx::types::Json(DriftDetectorState::new()),
            evaluation_count: 0,
            revision: 0,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Refuses a new active version past the per-tenant bound. Concurrent creations can pass
/// the check together, so the bound may be exceeded by a handful; it protects memory, not
/// an invariant.
async fn check_active_limit(state: &AppState, tenant_id: Uuid) -> Result<(), ApiError> {
    let active = state
        .store()
        .count_templates(tenant_id, "active")
        .await
        .map_err(store_unavailable)?;
    if active >= MAX_ACTIVE_TEMPLATES {
        return Err(ApiError::Conflict(format!(
            "this tenant already has {active} active template versions (the limit is \
             {MAX_ACTIVE_TEMPLATES}); deprecate or archive some first"
        )));
    }
    Ok(())
}

/// Brings this instance's index up to date. The change is committed already, so a failure
/// here must not turn into an error: the background sync applies it shortly.
async fn refresh(state: &AppState, tenant_id: Uuid) {
    if let Err(e) = state.templates().refresh(tenant_id).await {
        tracing::warn!(tenant = %tenant_id, error = %e, "template index refresh deferred to the background sync");
    }
}

/// Stores a new version (with its idempotency record in the same transaction) and answers
/// 201 with its view.
async fn store_new_version(
    state: &AppState,
    tenant_id: Uuid,
    spec: NewVersion,
    event: NewAuditEvent,
    extra_details: serde_json::Value,
    key: Option<IdempotencyKey>,
) -> Result<Response, ApiError> {
    if spec.status == "active" {
        check_active_limit(state, tenant_id).await?;
    }
    // A defaulted version can collide with a concurrent creation of the same template_id;
    // such a collision is retried with the next number, an explicit one is the client's 409.
    for _attempt in 0..=SAVE_RETRIES {
        let version = match spec.version {
            Some(v) => v,
            None => {
                state
                    .store()
                    .max_template_version(tenant_id, &spec.template_id)
                    .await
                    .map_err(store_unavailable)?
                    .unwrap_or(0)
                    + 1
            }
        };
        let row = spec.row(tenant_id, version);
        let view = TemplateView::of(&row, false);
        let view_json = serde_json::to_value(&view).map_err(ApiError::internal)?;
        let record = key
            .as_ref()
            .map(|k| k.record(StatusCode::CREATED, &view_json));
        let mut details = serde_json::json!({
            "template_id": row.template_id,
            "version": row.version,
            "status": row.status,
            "exemplar_count": row.exemplars.0.len(),
        });
        if let (Some(d), Some(extra)) = (details.as_object_mut(), extra_details.as_object()) {
            d.extend(extra.clone());
        }
        let audit = event
            .clone()
            .target(format!("template:{}", row.id))
            .details(details);
        match state
            .store()
            .create_template(&row, &audit, record.as_ref())
            .await
        {
            Ok(_) => {
                refresh(state, tenant_id).await;
                return Ok((StatusCode::CREATED, Json(view_json)).into_response());
            }
            Err(message @ (StoreError::Duplicate(_) | StoreError::IdempotencyKeyTaken)) => {
                // The key may have been claimed by a concurrent retry of this request.
                if let Some(k) = &key {
                    if let Some(replayed) = idempotency::lookup(state, k).await? {
                        return Ok(replayed);
                    }
                }
                if spec.version.is_none() {
                    continue;
                }
                tracing::debug!(%message, "template version exists");
                return Err(ApiError::Conflict(format!(
                    "template {:?} version {version} exists already",
                    spec.template_id
                )));
            }
            Err(e) => return Err(store_unavailable(e)),
        }
    }
    Err(ApiError::Conflict(format!(
        "template {:?} is being versioned concurrently; retry",
        spec.template_id
    )))
}

/// Validates the common creation fields; returns the spec or every problem at once.
#[allow(clippy::too_many_arguments)]
fn new_version_spec(
    v: &mut Violations,
    template_id: String,
    version: Option<i64>,
    name: Option<String>,
    description: Option<String>,
    exemplars: Vec<StructuralFeatures>,
    baseline_reliability: Option<f64>,
    correction_rules: Option<Vec<CorrectionRule>>,
    status: String,
    rename: &dyn Fn(&str) -> String,
) -> NewVersion {
    v.check(
        valid_template_id(&template_id),
        "template_id",
        "must be 1 to 200 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'",
    );
    if let Some(version) = version {
        v.check(version >= 1, "version", "must be at least 1");
    }
    check_metadata(
        v,
        name.as_deref(),
        description.as_deref(),
        correction_rules.as_deref(),
    );
    v.check(
        exemplars.len() <= MAX_EXEMPLARS,
        "exemplars",
        "must hold at most 50 exemplar layouts",
    );
    let spec = NewVersion {
        template_id,
        version,
        name,
        description,
        exemplars,
        baseline_reliability: baseline_reliability.unwrap_or(DEFAULT_BASELINE_RELIABILITY),
        correction_rules: correction_rules.unwrap_or_default(),
        status,
    };
    // The engine checks the reliability range, the rules and each exemplar's geometry.
    if let Err(errors) = build(&spec.row(Uuid::nil(), spec.version.unwrap_or(1))) {
        add_engine_errors(v, errors, rename);
    }
    spec
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
    principal.require(Scope::TemplatesWrite)?;
    let tenant_id = principal.tenant()?;
    let key = match idempotency::begin(&state, tenant_id, &headers, "/v1/templates", &body).await? {
        Begin::Replay(resp) => return Ok(resp),
        Begin::Fresh(k) => Some(k),
        Begin::None => None,
    };
    let req: CreateTemplateRequest = parse_json_body(&headers, &body)?;
    let mut v = Violations::default();
    let single = req.structural_features.is_some();
    let exemplars = match (req.structural_features, req.exemplars) {
        (Some(_), Some(_)) => {
            v.add(
                "exemplars",
                "send either structural_features or exemplars, not both",
            );
            Vec::new()
        }
        (Some(f), None) => vec![f],
        (None, Some(list)) => {
            v.check(
                !list.is_empty(),
                "exemplars",
                "at least one exemplar layout is required",
            );
            list
        }
        (None, None) => {
            v.add(
                "structural_features",
                "an exemplar layout is required (structural_features or exemplars)",
            );
            Vec::new()
        }
    };
    let status = req.status.unwrap_or_else(|| "active".into());
    v.check(
        matches!(status.as_str(), "active" | "draft"),
        "status",
        "must be active or draft",
    );
    let rename = move |field: &str| -> String {
        if single {
            field.replacen("exemplars[0]", "structural_features", 1)
        } else {
            field.to_string()
        }
    };
    let has_exemplars = !exemplars.is_empty();
    let spec = new_version_spec(
        &mut v,
        req.template_id,
        req.version,
        req.name,
        req.description,
        exemplars,
        req.baseline_reliability,
        req.correction_rules,
        status,
        &|field: &str| {
            // "at least one exemplar" was reported above under the field the client used.
            if !has_exemplars && field == "exemplars" {
                String::new()
            } else {
                rename(field)
            }
        },
    );
    finish_violations(v)?;
    let event = audit::by(&principal, "template_created").request(Some(&request_id));
    store_new_version(&state, tenant_id, spec, event, serde_json::json!({}), key).await
}

/// Answers 422 with every problem, minus the ones marked as already reported (empty field).
fn finish_violations(v: Violations) -> Result<(), ApiError> {
    match v.into_result() {
        Err(ApiError::Validation(errors)) => {
            let errors: Vec<FieldError> =
                errors.into_iter().filter(|e| !e.field.is_empty()).collect();
            if errors.is_empty() {
                Ok(())
            } else {
                Err(ApiError::Validation(errors))
            }
        }
        other => other,
    }
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
    principal.require(Scope::TemplatesWrite)?;
    let tenant_id = principal.tenant()?;
    let evaluation_id =
        Uuid::parse_str(&evaluation_id).map_err(|_| ApiError::NotFound("evaluation".into()))?;
    let route = format!("/v1/templates/from-evaluation/{evaluation_id}");
    let key = match idempotency::begin(&state, tenant_id, &headers, &route, &body).await? {
        Begin::Replay(resp) => return Ok(resp),
        Begin::Fresh(k) => Some(k),
        Begin::None => None,
    };
    let req: FromEvaluationRequest = parse_json_body(&headers, &body)?;
    let evaluation = state
        .store()
        .get_evaluation(tenant_id, evaluation_id)
        .await
        .map_err(store_unavailable)?
        .ok_or_else(|| ApiError::NotFound("evaluation".into()))?;
    // The stored request is the metadata-only input the evaluation decided on.
    let features: StructuralFeatures = evaluation
        .request
        .0
        .get("structural_features")
        .cloned()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("stored evaluation lacks features")))
        .and_then(|f| serde_json::from_value(f).map_err(ApiError::internal))?;
    let mut v = Violations::default();
    let mut layout_problems = Vec::new();
    let spec = new_version_spec(
        &mut v,
        req.template_id,
        req.version,
        req.name,
        req.description,
        vec![features],
        req.baseline_reliability,
        req.correction_rules,
        "active".into(),
        &|field: &str| field.to_string(),
    );
    // The client did not send the layout, so its problems are reported against the
    // evaluation, in one entry (e.g. a REJECTed, empty extraction cannot be a template).
    let v = {
        let mut kept = Violations::default();
        if let Err(ApiError::Validation(errors)) = v.into_result() {
            for e in errors {
                if e.field.starts_with("exemplars") {
                    layout_problems.push(format!("{}: {}", e.field, e.message));
                } else {
                    kept.add(e.field, e.message);
                }
            }
        }
        if !layout_problems.is_empty() {
            kept.add(
                "evaluation_id",
                format!(
                    "this evaluation's layout cannot be a template: {}",
                    layout_problems.join("; ")
                ),
            );
        }
        kept
    };
    v.into_result()?;
    let event =
        audit::by(&principal, "template_created_from_evaluation").request(Some(&request_id));
    store_new_version(
        &state,
        tenant_id,
        spec,
        event,
        serde_json::json!({"evaluation_id": evaluation_id, "evaluation_decision": evaluation.decision}),
        key,
    )
    .await
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
    principal.require(Scope::Read)?;
    let tenant_id = principal.tenant()?;
    let mut v = Violations::default();
    let (limit, after_id) = page::<Uuid>(&mut v, q.limit, q.cursor.as_deref());
    if let Some(s) = &q.status {
        v.check(
            STATUSES.contains(&s.as_str()),
            "status",
            "must be draft, active, deprecated or archived",
        );
    }
    v.into_result()?;
    let rows = state
        .store()
        .list_templates(
            tenant_id,
            &TemplateFilter {
                status: q.status,
                template_id: q.template_id,
                after_id,
                limit,
            },
        )
        .await
        .map_err(store_unavailable)?;
    let next_cursor = next_cursor(&rows, limit, |r| r.id);
    Ok(Json(TemplatePage {
        items: rows.iter().map(|r| TemplateView::of(r, false)).collect(),
        next_cursor,
    }))
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
    principal.require(Scope::Read)?;
    let tenant_id = principal.tenant()?;
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
    let row = resolve(&state, tenant_id, &id, q.version).await?;
    Ok(Json(TemplateView::of(&row, include_exemplars)))
}

/// The result of applying an edit to a fresh read.
enum Edit {
    /// Nothing to save (e.g. the status is already the one asked for).
    Unchanged,
    /// Save, auditing these details.
    Changed(serde_json::Value),
}

/// Applies `edit` to the current row and saves it if nobody changed it meanwhile; on a
/// conflict the edit is re-applied to a fresh read, up to [`SAVE_RETRIES`] times.
async fn save_edit(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
    event: NewAuditEvent,
    idempotency: Option<(&idempotency::IdempotencyKey, StatusCode)>,
    mut edit: impl FnMut(&mut TemplateRow) -> Result<Edit, ApiError>,
) -> Result<TemplateRow, ApiError> {
    for _attempt in 0..=SAVE_RETRIES {
        let mut row = state
            .store()
            .get_template(tenant_id, id)
            .await
            .map_err(store_unavailable)?
            .ok_or_else(not_found)?;
        let expected = row.revision;
        let details = match edit(&mut row)? {
            Edit::Unchanged => return Ok(row),
            Edit::Changed(details) => details,
        };
        row.updated_at = Utc::now();
        let audit = event
            .clone()
            .target(format!("template:{id}"))
            .details(details);
        // The answer is the saved view, stored with the change in one transaction.
        let record = idempotency.map(|(k, status)| {
            k.record(
                status,
                &serde_json::to_value(TemplateView::of(&row, false)).unwrap_or_default(),
            )
        });
        match state
            .store()
            .save_template(&row, expected, &audit, record.as_ref())
            .await
        {
            Ok(revision) => {
                row.revision = revision;
                refresh(state, tenant_id).await;
                return Ok(row);
            }
            Err(StoreError::Stale(_) | StoreError::IdempotencyKeyTaken) => {
                if let Some((k, _)) = idempotency {
                    if idempotency::lookup(state, k).await?.is_some() {
                        return Err(ApiError::Conflict(
                            "a request with this Idempotency-Key was completed meanwhile; retry to get its answer".into(),
                        ));
                    }
                }
                continue;
            }
            Err(e) => return Err(store_unavailable(e)),
        }
    }
    Err(ApiError::Conflict(
        "the template kept changing concurrently; retry".into(),
    ))
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
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
    ApiJson(req): ApiJson<UpdateTemplateRequest>,
) -> Result<Json<TemplateView>, ApiError> {
    principal.require(Scope::TemplatesWrite)?;
    let tenant_id = principal.tenant()?;
    let target = resolve(&state, tenant_id, &id, q.version).await?;
    let mut v = Violations::default();
    check_metadata(
        &mut v,
        req.name.as_deref(),
        req.description.as_deref(),
        req.correction_rules.as_deref(),
    );
    // Reliability and rules are checked by the engine against the current exemplars.
    let mut candidate = target.clone();
    apply_update(&mut candidate, &req);
    if let Err(errors) = build(&candidate) {
        add_engine_errors(&mut v, errors, &|f| f.to_string());
    }
    v.into_result()?;
    let changed: Vec<&str> = [
        ("name", req.name.is_some()),
        ("description", req.description.is_some()),
        ("baseline_reliability", req.baseline_reliability.is_some()),
        ("correction_rules", req.correction_rules.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, present)| present.then_some(f))
    .collect();
    let event = audit::by(&principal, "template_updated").request(Some(&request_id));
    let row = save_edit(&state, tenant_id, target.id, event, None, |row| {
        if changed.is_empty() {
            return Ok(Edit::Unchanged);
        }
        apply_update(row, &req);
        Ok(Edit::Changed(serde_json::json!({
            "template_id": row.template_id,
            "version": row.version,
            "fields": changed,
        })))
    })
    .await?;
    Ok(Json(TemplateView::of(&row, false)))
}

fn apply_update(row: &mut TemplateRow, req: &UpdateTemplateRequest) {
    if let Some(n) = &req.name {
        row.name = Some(n.clone());
    }
    if let Some(d) = &req.description {
        row.description = Some(d.clone());
    }
    if let Some(b) = req.baseline_reliability {
        row.baseline_reliability = b;
    }
    if let Some(r) = &req.correction_rules {
        row.correction_rules = sqlx::types::Json(r.clone());
    }
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
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.require(Scope::TemplatesWrite)?;
    let tenant_id = principal.tenant()?;
    let key = match idempotency::begin(
        &state,
        tenant_id,
        &headers,
        &format!("/v1/templates/{id}/exemplars"),
        &body,
    )
    .await?
    {
        Begin::Replay(resp) => return Ok(resp),
        Begin::Fresh(k) => Some(k),
        Begin::None => None,
    };
    let req: AddExemplarRequest = parse_json_body(&headers, &body)?;
    let target = resolve(&state, tenant_id, &id, q.version).await?;
    let features = req.structural_features;
    let event = audit::by(&principal, "template_exemplar_added").request(Some(&request_id));
    let row = save_edit(&state, tenant_id, target.id, event, key.as_ref().map(|k| (k, StatusCode::CREATED)), |row| {
        if row.exemplars.0.len() >= MAX_EXEMPLARS {
            return Err(ApiError::Conflict(format!(
                "this version holds {MAX_EXEMPLARS} exemplars already; register a new version instead"
            )));
        }
        row.exemplars.0.push(features.clone());
        let added = format!("exemplars[{}]", row.exemplars.0.len() - 1);
        if let Err(errors) = build(row) {
            let mut v = Violations::default();
            add_engine_errors(&mut v, errors, &|f| {
                f.replacen(&added, "structural_features", 1)
            });
            v.into_result()?;
        }
        Ok(Edit::Changed(serde_json::json!({
            "template_id": row.template_id,
            "version": row.version,
            "exemplar_count": row.exemplars.0.len(),
        })))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(TemplateView::of(&row, false))).into_response())
}

fn transition_allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("draft", "active")
            | ("draft", "archived")
            | ("active", "deprecated")
            | ("deprecated", "active")
            | ("deprecated", "archived")
    )
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
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
    ApiJson(req): ApiJson<StatusRequest>,
) -> Result<Json<TemplateView>, ApiError> {
    principal.require(Scope::TemplatesWrite)?;
    let tenant_id = principal.tenant()?;
    if !STATUSES.contains(&req.status.as_str()) {
        return Err(ApiError::Validation(vec![FieldError {
            field: "status".into(),
            message: "must be draft, active, deprecated or archived".into(),
        }]));
    }
    let target = resolve(&state, tenant_id, &id, q.version).await?;
    if req.status == "active" && target.status != "active" {
        check_active_limit(&state, tenant_id).await?;
    }
    let to = req.status;
    let event = audit::by(&principal, "template_status_changed").request(Some(&request_id));
    let row = save_edit(&state, tenant_id, target.id, event, None, |row| {
        change_status(row, &to)
    })
    .await?;
    Ok(Json(TemplateView::of(&row, false)))
}

fn change_status(row: &mut TemplateRow, to: &str) -> Result<Edit, ApiError> {
    let from = row.status.clone();
    if from == to {
        return Ok(Edit::Unchanged);
    }
    if !transition_allowed(&from, to) {
        return Err(ApiError::Conflict(format!(
            "a template cannot go from {from} to {to}"
        )));
    }
    row.status = to.to_string();
    Ok(Edit::Changed(serde_json::json!({
        "template_id": row.template_id,
        "version": row.version,
        "from": from,
        "to": to,
    })))
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
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> Result<Json<TemplateView>, ApiError> {
    principal.require(Scope::TemplatesWrite)?;
    let tenant_id = principal.tenant()?;
    let target = resolve(&state, tenant_id, &id, q.version).await?;
    let event = audit::by(&principal, "template_deprecated").request(Some(&request_id));
    let row = save_edit(&state, tenant_id, target.id, event, None, |row| {
        match row.status.as_str() {
            "deprecated" => Ok(Edit::Unchanged),
            "archived" => Err(ApiError::Conflict(
                "an archived template cannot be deprecated".into(),
            )),
            // DELETE retires a draft too, which the status route only allows as `archived`.
            from => {
                let from = from.to_string();
                row.status = "deprecated".into();
                Ok(Edit::Changed(serde_json::json!({
                    "template_id": row.template_id,
                    "version": row.version,
                    "from": from,
                    "to": "deprecated",
                })))
            }
        }
    })
    .await?;
    Ok(Json(TemplateView::of(&row, false)))
}

/// Start of the bucket holding `at`.
fn bucket_start(at: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
    let ts = at.timestamp();
    DateTime::from_timestamp(ts - ts.rem_euclid(seconds), 0).unwrap_or(at)
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
    principal.require(Scope::Read)?;
    let tenant_id = principal.tenant()?;
    let mut v = Violations::default();
    let bucket = q.bucket.unwrap_or_else(|| "day".into());
    let seconds = match bucket.as_str() {
        "hour" => 3_600,
        "day" => 86_400,
        _ => {
            v.add("bucket", "must be hour or day");
            86_400
        }
    };
    let to = q.to.unwrap_or_else(Utc::now);
    let from = q.from.unwrap_or(to - Duration::days(30));
    v.check(from < to, "from", "must be before to");
    v.into_result()?;
    let row = resolve(&state, tenant_id, &id, q.version).await?;
    let points = state
        .store()
        .series(tenant_id, row.id, from, to, DRIFT_SERIES_LIMIT)
        .await
        .map_err(store_unavailable)?;
    let truncated = points.len() as i64 == DRIFT_SERIES_LIMIT;
    // (count, sums of similarity, drift, reliability, extractor confidence) per bucket.
    let mut sums: BTreeMap<DateTime<Utc>, (usize, [f64; 4])> = BTreeMap::new();
    for p in &points {
        let entry = sums
            .entry(bucket_start(p.created_at, seconds))
            .or_insert((0, [0.0; 4]));
        entry.0 += 1;
        for (acc, x) in entry.1.iter_mut().zip([
            p.similarity,
            p.drift_score,
            p.reliability_score,
            p.extractor_confidence,
        ]) {
            *acc += x;
        }
    }
    let buckets = sums
        .into_iter()
        .map(|(start, (count, s))| {
            let n = count as f64;
            DriftBucket {
                start,
                count,
                mean_similarity: s[0] / n,
                mean_drift: s[1] / n,
                mean_reliability: s[2] / n,
                mean_extractor_confidence: s[3] / n,
            }
        })
        .collect();
    let change_points = state
        .store()
        .change_points(tenant_id, row.id)
        .await
        .map_err(store_unavailable)?
        .into_iter()
        .filter(|c| c.occurred_at >= from && c.occurred_at < to)
        .map(|c| ChangePointView {
            observation: c.observation,
            detected_at_observation: c.detected_at,
            series: c.series,
            baseline_mean: c.baseline_mean,
            recent_mean: c.recent_mean,
            evaluation_id: c.evaluation_id,
            occurred_at: c.occurred_at,
        })
        .collect();
    let detector = &row.detector_state.0;
    Ok(Json(DriftReport {
        template_id: row.template_id.clone(),
        template_version_id: row.id,
        version: row.version,
        evaluation_count: row.evaluation_count,
        from,
        to,
        bucket,
        buckets,
        truncated,
        change_points,
        detector: DetectorView {
            observations: detector.observations,
            changes: detector.changes,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_ids_follow_the_documented_alphabet() {
        assert!(valid_template_id("acme-invoice.v2:eu_1"));
        assert!(!valid_template_id(""));
        assert!(!valid_template_id("has space"));
        assert!(!valid_template_id("slash/inside"));
        assert!(valid_template_id(&"a".repeat(200)));
        assert!(!valid_template_id(&"a".repeat(201)));
    }

    #[test]
    fn only_the_documented_transitions_are_allowed() {
        let allowed = [
            ("draft", "active"),
            ("draft", "archived"),
            ("active", "deprecated"),
            ("deprecated", "active"),
            ("deprecated", "archived"),
        ];
        for from in STATUSES {
            for to in STATUSES {
                assert_eq!(
                    transition_allowed(from, to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn buckets_start_on_utc_hour_and_day_boundaries() {
        let at = DateTime::parse_from_rfc3339("2024-05-06T13:47:12Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            bucket_start(at, 3_600).to_rfc3339(),
            "2024-05-06T13:00:00+00:00"
        );
        assert_eq!(
            bucket_start(at, 86_400).to_rfc3339(),
            "2024-05-06T00:00:00+00:00"
        );
    }
}
