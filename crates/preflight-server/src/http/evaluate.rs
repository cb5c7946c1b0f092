//! The working surface: `POST /v1/evaluate`, `/v1/evaluate/batch`, the evaluation history
//! and outcome feedback.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use preflight_engine::{
    evaluate as engine_evaluate, validate, DriftObservation, Evaluation, ExtractorMetadata, Policy,
    StructuralFeatures, Template,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{next_cursor, page, parse_json_body, ApiQuery, Violations};
use crate::app::AppState;
use crate::auth::{store_unavailable, Principal, Scope};
use crate::error::{ApiError, FieldError};
use crate::idempotency::{self, Begin};
use crate::storage::evaluations::{EvaluationFilter, EvaluationRow, EvaluationWrite, WriteOutcome};
use crate::storage::StoreError;
use crate::telemetry::EVALUATION_LATENCY;
use crate::writer::WriteError;

pub const MAX_BATCH_DOCUMENTS: usize = 100;
const MAX_TAG_LEN: usize = 256;

/// One document's layout metadata, as sent by a pipeline after extraction.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct EvaluateRequest {
    /// Counts, normalized boxes with element types and confidences (see docs/api.md).
    #[schema(value_type = Object)]
    pub structural_features: StructuralFeatures,
    /// `vendor`, `model`, `version`, `confidence` (0..1), `latency_ms`, optional `cost_usd`.
    #[schema(value_type = Object)]
    pub extractor_metadata: ExtractorMetadata,
    /// Optional client-computed fingerprint (64 hex); the server computes its own.
    pub layout_fingerprint: Option<String>,
    pub client_doc_hash: Option<String>,
    pub client_correlation_id: Option<String>,
    pub pipeline_id: Option<String>,
}

/// The decision for one document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EvaluateResponse {
    pub evaluation_id: Uuid,
    /// `MATCH`, `REVIEW`, `NEW` or `REJECT`.
    pub decision: String,
    pub match_confidence: f64,
    pub template_id: Option<String>,
    pub template_version_id: Option<String>,
    pub template_version: Option<i64>,
    pub drift_score: f64,
    #[schema(value_type = Vec<Object>)]
    pub drift_components: Vec<preflight_engine::DriftComponent>,
    pub reliability_score: f64,
    #[schema(value_type = Vec<Object>)]
    pub reasons: Vec<preflight_engine::Reason>,
    #[schema(value_type = Vec<Object>)]
    pub warnings: Vec<preflight_engine::Reason>,
    #[schema(value_type = Vec<Object>)]
    pub correction_rules: Vec<preflight_engine::CorrectionRule>,
    /// Change points this evaluation confirmed on its template.
    #[schema(value_type = Vec<Object>)]
    pub alerts: Vec<serde_json::Value>,
    pub replay_hash: String,
    pub engine_version: String,
    pub layout_fingerprint: String,
    /// Time spent validating and deciding, in milliseconds.
    pub processing_time_ms: f64,
    pub client_correlation_id: Option<String>,
    pub pipeline_id: Option<String>,
    pub created_at: DateTime<Utc>,
    #[schema(value_type = Option<Object>)]
    pub runner_up: Option<preflight_engine::Candidate>,
}

fn tag_checks(v: &mut Violations, prefix: &str, req: &EvaluateRequest) {
    for (name, value) in [
        ("client_doc_hash", &req.client_doc_hash),
        ("client_correlation_id", &req.client_correlation_id),
        ("pipeline_id", &req.pipeline_id),
    ] {
        if let Some(s) = value {
            v.check(
                s.chars().count() <= MAX_TAG_LEN,
                &format!("{prefix}{name}"),
                "must be at most 256 characters",
            );
        }
    }
    if let Some(fp) = &req.layout_fingerprint {
        v.check(
            fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()),
            &format!("{prefix}layout_fingerprint"),
            "must be 64 hexadecimal characters",
        );
    }
}

/// A decided document, ready to be committed.
struct Decided {
    write: EvaluationWrite,
    /// The answer as decided (the stored row holds the same JSON).
    answer: serde_json::Value,
    decision: &'static str,
}

/// Validates and decides one document; field errors carry `prefix` (e.g. `documents[3].`).
async fn decide(
    state: &AppState,
    tenant_id: Uuid,
    req: EvaluateRequest,
    request_json: serde_json::Value,
    prefix: &str,
) -> Result<Decided, ApiError> {
    let started = Instant::now();
    let mut v = Violations::default();
    tag_checks(&mut v, prefix, &req);
    let doc = match validate(&req.structural_features, &req.extractor_metadata) {
        Ok(doc) => Some(doc),
        Err(errors) => {
            for e in errors.into_vec() {
                v.add(format!("{prefix}{}", e.field), e.message);
            }
            None
        }
    };
    v.into_result()?;
    let doc = doc.expect("validated above");
    let policy = Policy::default();
    let mut evaluation: Evaluation = state
        .templates()
        .with_index(tenant_id, |index| engine_evaluate(index, &doc, &policy))
        .await
        .map_err(store_unavailable)?;
    if let Some(fp) = &req.layout_fingerprint {
        if !fp.eq_ignore_ascii_case(&evaluation.layout_fingerprint) {
            evaluation.warnings.push(preflight_engine::Reason::new(
                "CLIENT_FINGERPRINT_MISMATCH",
                "the layout_fingerprint sent differs from the canonical one computed by the server",
            ));
        }
    }
    let processing_time_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    let id = Uuid::now_v7();
    let created_at = Utc::now();
    let response = EvaluateResponse {
        evaluation_id: id,
        decision: evaluation.decision.as_str().to_string(),
        match_confidence: evaluation.match_confidence,
        template_id: evaluation.template_id.clone(),
        template_version_id: evaluation.template_version_id.clone(),
        template_version: evaluation.template_version,
        drift_score: evaluation.drift_score,
        drift_components: evaluation.drift_components.clone(),
        reliability_score: evaluation.reliability_score,
        reasons: evaluation.reasons.clone(),
        warnings: evaluation.warnings.clone(),
        correction_rules: evaluation.correction_rules.clone(),
        alerts: Vec::new(),
        replay_hash: evaluation.replay_hash.clone(),
        engine_version: evaluation.engine_version.clone(),
        layout_fingerprint: evaluation.layout_fingerprint.clone(),
        processing_time_ms,
        client_correlation_id: req.client_correlation_id.clone(),
        pipeline_id: req.pipeline_id.clone(),
        created_at,
        runner_up: evaluation.runner_up.clone(),
    };
    let answer = serde_json::to_value(&response).map_err(ApiError::internal)?;
    let row = EvaluationRow {
        id,
        tenant_id,
        created_at,
        decision: response.decision.clone(),
        match_confidence: evaluation.match_confidence,
        template_id: evaluation.template_id.clone(),
        template_version_id: evaluation
            .template_version_id
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok()),
        template_version: evaluation.template_version,
        similarity: evaluation.similarity,
        drift_score: evaluation.drift_score,
        reliability_score: evaluation.reliability_score,
        extractor_confidence: evaluation.extractor_confidence,
        extractor_vendor: req.extractor_metadata.vendor.clone(),
        extractor_model: req.extractor_metadata.model.clone(),
        correlation_id: req.client_correlation_id.clone(),
        pipeline_id: req.pipeline_id.clone(),
        client_doc_hash: req.client_doc_hash.clone(),
        layout_fingerprint: evaluation.layout_fingerprint.clone(),
        replay_hash: evaluation.replay_hash.clone(),
        engine_version: evaluation.engine_version.clone(),
        // The request as received (already parsed once): metadata only, re-serialized by
        // nobody but the database driver.
        request: sqlx::types::Json(request_json),
        response: sqlx::types::Json(answer.clone()),
        feedback_outcome: None,
        feedback: None,
        feedback_at: None,
    };
    Ok(Decided {
        write: EvaluationWrite {
            observation: DriftObservation::from_evaluation(&evaluation),
            row,
            idempotency: None,
        },
        answer,
        decision: evaluation.decision.as_str(),
    })
}

fn write_error(e: WriteError) -> ApiError {
    match e {
        WriteError::Timeout | WriteError::Overloaded | WriteError::Store(_) => {
            tracing::warn!(error = %e, "evaluation not stored");
            ApiError::Unavailable {
                what: "database",
                retry_after_secs: 2,
            }
        }
    }
}

/// What was decided, kept by the handler while the row itself goes to the writer.
struct Pending {
    answer: serde_json::Value,
    decision: &'static str,
    template_id: Option<String>,
    template_version_id: Option<Uuid>,
}

impl Decided {
    /// Splits into the write (moved to the writer) and what the answer needs afterwards.
    fn split(self) -> (EvaluationWrite, Pending) {
        let pending = Pending {
            answer: self.answer,
            decision: self.decision,
            template_id: self.write.row.template_id.clone(),
            template_version_id: self.write.row.template_version_id,
        };
        (self.write, pending)
    }
}

impl Pending {
    /// The committed answer: as decided, plus the alerts its commit raised.
    fn committed(self, outcome: &WriteOutcome) -> serde_json::Value {
        match outcome {
            WriteOutcome::Stored { change_points } if !change_points.is_empty() => {
                crate::storage::evaluations::with_alerts(
                    self.answer,
                    self.template_id.as_deref(),
                    self.template_version_id,
                    change_points,
                )
            }
            _ => self.answer,
        }
    }
}

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
    let started = Instant::now();
    principal.require(Scope::Evaluate)?;
    let tenant_id = principal.tenant()?;
    let key = match idempotency::begin(&state, tenant_id, &headers, "/v1/evaluate", &body).await? {
        Begin::Replay(resp) => return Ok(resp),
        Begin::Fresh(k) => Some(k),
        Begin::None => None,
    };
    let value: serde_json::Value = parse_json_body(&headers, &body)?;
    let req = parse_evaluate_request(&value, "")?;
    let decided = decide(&state, tenant_id, req, value, "").await?;
    let (mut write, pending) = decided.split();
    write.idempotency = key
        .as_ref()
        .map(|k| k.record(StatusCode::OK, &pending.answer));
    let outcome = state
        .writer()
        .write_all(vec![write])
        .await
        .pop()
        .expect("one result per write")
        .map_err(write_error)?;
    if matches!(outcome, WriteOutcome::Duplicate) {
        // A concurrent retry with the same key won; answer what it stored.
        if let Some(k) = &key {
            if let Some(resp) = idempotency::lookup(&state, k).await? {
                return Ok(resp);
            }
        }
    }
    let decision = pending.decision;
    let body = pending.committed(&outcome);
    metrics::histogram!(EVALUATION_LATENCY, "decision" => decision)
        .record(started.elapsed().as_secs_f64());
    state.count_evaluation(decision);
    Ok((StatusCode::OK, Json(body)).into_response())
}

#[derive(Deserialize)]
struct BatchRequest {
    documents: Vec<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchItem {
    pub index: usize,
    /// 200 when decided and stored, else the status of `error`.
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub evaluation: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::error::Problem>,
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
    let started = Instant::now();
    principal.require(Scope::Evaluate)?;
    let tenant_id = principal.tenant()?;
    let route = "/v1/evaluate/batch";
    let batch_key = idempotency::parse(tenant_id, &headers, route, &body)?;
    let req: BatchRequest = parse_json_body(&headers, &body)?;
    if req.documents.is_empty() || req.documents.len() > MAX_BATCH_DOCUMENTS {
        return Err(ApiError::Validation(vec![FieldError {
            field: "documents".into(),
            message: format!("must hold 1 to {MAX_BATCH_DOCUMENTS} documents"),
        }]));
    }
    let mut results: Vec<Option<BatchItem>> = (0..req.documents.len()).map(|_| None).collect();
    let mut decided: Vec<(usize, Decided)> = Vec::new();
    // Items of a retried batch that were stored before answer what was stored; the others
    // (failed validation, 503s) are decided now.
    let mut replayed_all = batch_key.is_some();
    if let Some(k) = &batch_key {
        for (i, slot) in results.iter_mut().enumerate() {
            match stored_item(&state, k, i).await? {
                Some(value) => {
                    *slot = Some(BatchItem {
                        index: i,
                        status: 200,
                        evaluation: Some(value),
                        error: None,
                    })
                }
                None => replayed_all = false,
            }
        }
    }
    for (i, raw) in req.documents.into_iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        let prefix = format!("documents[{i}].");
        let outcome = match parse_evaluate_request(&raw, &prefix) {
            Ok(r) => decide(&state, tenant_id, r, raw, &prefix).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(mut d) => {
                d.write.idempotency = batch_key
                    .as_ref()
                    .map(|k| k.item(i).record(StatusCode::OK, &d.answer));
                decided.push((i, d));
            }
            Err(e @ ApiError::Validation(_)) => {
                results[i] = Some(BatchItem {
                    index: i,
                    status: e.status().as_u16(),
                    evaluation: None,
                    error: Some(e.to_problem()),
                });
            }
            Err(e) => return Err(e),
        }
    }
    let (writes, pending): (Vec<EvaluationWrite>, Vec<(usize, Pending)>) = decided
        .into_iter()
        .map(|(i, d)| {
            let (w, p) = d.split();
            (w, (i, p))
        })
        .unzip();
    let outcomes = state.writer().write_all(writes).await;
    for ((i, d), outcome) in pending.into_iter().zip(outcomes) {
        let i = &i;
        results[*i] = Some(match outcome {
            // A concurrent retry stored this item first: answer what it stored.
            Ok(WriteOutcome::Duplicate) => match stored_item(
                &state,
                batch_key.as_ref().expect("duplicates need a key"),
                *i,
            )
            .await?
            {
                Some(value) => BatchItem {
                    index: *i,
                    status: 200,
                    evaluation: Some(value),
                    error: None,
                },
                None => {
                    let err = ApiError::Conflict(
                        "a concurrent request with the same Idempotency-Key is in progress".into(),
                    );
                    BatchItem {
                        index: *i,
                        status: err.status().as_u16(),
                        evaluation: None,
                        error: Some(err.to_problem()),
                    }
                }
            },
            Ok(o) => {
                state.count_evaluation(d.decision);
                metrics::histogram!(EVALUATION_LATENCY, "decision" => d.decision)
                    .record(started.elapsed().as_secs_f64());
                BatchItem {
                    index: *i,
                    status: 200,
                    evaluation: Some(d.committed(&o)),
                    error: None,
                }
            }
            Err(e) => {
                let err = write_error(e);
                BatchItem {
                    index: *i,
                    status: err.status().as_u16(),
                    evaluation: None,
                    error: Some(err.to_problem()),
                }
            }
        });
    }
    let results = results
        .into_iter()
        .map(|r| r.expect("every document has a result"))
        .collect();
    let mut resp = Json(BatchResponse { results }).into_response();
    if replayed_all {
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
pub struct EvaluationView {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub response: serde_json::Value,
    pub extractor_vendor: String,
    pub extractor_model: String,
    pub client_doc_hash: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub feedback: Option<serde_json::Value>,
}

impl From<EvaluationRow> for EvaluationView {
    fn from(r: EvaluationRow) -> Self {
        EvaluationView {
            response: r.response.0,
            extractor_vendor: r.extractor_vendor,
            extractor_model: r.extractor_model,
            client_doc_hash: r.client_doc_hash,
            feedback: r.feedback_outcome.map(|o| {
                serde_json::json!({"outcome": o, "details": r.feedback.map(|f| f.0), "at": r.feedback_at})
            }),
        }
    }
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
    principal.require(Scope::Read)?;
    let tenant_id = principal.tenant()?;
    let mut v = Violations::default();
    let (limit, before_id) = page::<Uuid>(&mut v, q.limit, q.cursor.as_deref());
    if let Some(d) = &q.decision {
        v.check(
            matches!(d.as_str(), "MATCH" | "REVIEW" | "NEW" | "REJECT"),
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
    let rows = state
        .store()
        .list_evaluations(
            tenant_id,
            &EvaluationFilter {
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
            },
        )
        .await
        .map_err(store_unavailable)?;
    let next_cursor = next_cursor(&rows, limit, |r| r.id);
    Ok(Json(EvaluationPage {
        items: rows.into_iter().map(EvaluationView::from).collect(),
        next_cursor,
    }))
}

fn parse_evaluation_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound("evaluation".into()))
}

#[utoipa::path(get, path = "/v1/evaluations/{id}", tag = "evaluations", params(("id" = Uuid, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = EvaluationView), (status = 404, body = crate::error::Problem)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<EvaluationView>, ApiError> {
    principal.require(Scope::Read)?;
    let tenant_id = principal.tenant()?;
    let id = parse_evaluation_id(&id)?;
    let row = state
        .store()
        .get_evaluation(tenant_id, id)
        .await
        .map_err(store_unavailable)?
        .ok_or_else(|| ApiError::NotFound("evaluation".into()))?;
    Ok(Json(row.into()))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// `correct`, `corrected` or `rejected`.
    pub outcome: String,
    /// How many fields a reviewer had to fix.
    pub field_error_count: Option<u32>,
    pub review_seconds: Option<f64>,
    /// Where the verdict came from, e.g. `human-review` or `downstream-validation`.
    pub source: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct FeedbackResponse {
    pub evaluation_id: Uuid,
    pub outcome: String,
    pub previous_outcome: Option<String>,
    /// Whether the template's outcome statistics changed.
    pub statistics_updated: bool,
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
    principal.require(Scope::Evaluate)?;
    let tenant_id = principal.tenant()?;
    let id = parse_evaluation_id(&id)?;
    let route = format!("/v1/evaluations/{id}/feedback");
    let key = match idempotency::begin(&state, tenant_id, &headers, &route, &body).await? {
        Begin::Replay(resp) => return Ok(resp),
        Begin::Fresh(k) => Some(k),
        Begin::None => None,
    };
    let req: FeedbackRequest = parse_json_body(&headers, &body)?;
    let mut v = Violations::default();
    v.check(
        matches!(req.outcome.as_str(), "correct" | "corrected" | "rejected"),
        "outcome",
        "must be correct, corrected or rejected",
    );
    if let Some(s) = req.review_seconds {
        v.check(
            s.is_finite() && s >= 0.0,
            "review_seconds",
            "must be a non-negative number",
        );
    }
    if let Some(s) = &req.source {
        v.check(
            s.chars().count() <= 100,
            "source",
            "must be at most 100 characters",
        );
    }
    v.into_result()?;
    let details = serde_json::to_value(&req).map_err(ApiError::internal)?;
    for _attempt in 0..5 {
        let eval = state
            .store()
            .get_evaluation(tenant_id, id)
            .await
            .map_err(store_unavailable)?
            .ok_or_else(|| ApiError::NotFound("evaluation".into()))?;
        let previous = eval.feedback_outcome.clone();
        let changed = previous.as_deref() != Some(req.outcome.as_str());
        let template = match (changed, eval.template_version_id) {
            (true, Some(tv)) => state
                .store()
                .get_template(tenant_id, tv)
                .await
                .map_err(store_unavailable)?,
            _ => None,
        };
        let updated_template = template.map(|mut t| {
            let expected = t.revision;
            let key = Template::outcome_key(&eval.extractor_vendor, &eval.extractor_model);
            let stats = t.outcome_stats.0.entry(key).or_default();
            bump(stats, previous.as_deref(), -1);
            bump(stats, Some(req.outcome.as_str()), 1);
            (t, expected)
        });
        let response = FeedbackResponse {
            evaluation_id: id,
            outcome: req.outcome.clone(),
            previous_outcome: previous.clone(),
            statistics_updated: updated_template.is_some(),
        };
        let response_json = serde_json::to_value(&response).map_err(ApiError::internal)?;
        let record = key
            .as_ref()
            .map(|k| k.record(StatusCode::OK, &response_json));
        match state
            .store()
            .apply_feedback(
                tenant_id,
                id,
                previous.as_deref(),
                &req.outcome,
                &details,
                Utc::now(),
                updated_template.as_ref().map(|(t, rev)| (t, *rev)),
                record.as_ref(),
            )
            .await
        {
            Ok(()) => {
                if updated_template.is_some() {
                    state
                        .templates()
                        .refresh(tenant_id)
                        .await
                        .map_err(store_unavailable)?;
                }
                return Ok(Json(response_json).into_response());
            }
            Err(StoreError::Stale(_) | StoreError::IdempotencyKeyTaken) => {
                if let Some(k) = &key {
                    if let Some(resp) = idempotency::lookup(&state, k).await? {
                        return Ok(resp);
                    }
                }
                continue;
            }
            Err(e) => return Err(store_unavailable(e)),
        }
    }
    Err(ApiError::Conflict(
        "the evaluation changed concurrently; retry".into(),
    ))
}

fn bump(stats: &mut preflight_engine::OutcomeStats, outcome: Option<&str>, delta: i64) {
    let slot = match outcome {
        Some("correct") => &mut stats.correct,
        Some("corrected") => &mut stats.corrected,
        Some("rejected") => &mut stats.rejected,
        _ => return,
    };
    *slot = if delta < 0 {
        slot.saturating_sub(1)
    } else {
        slot.saturating_add(1)
    };
}

/// JSON type a field must have.
#[derive(Clone, Copy)]
enum Kind {
    Integer,
    Number,
    Bool,
    String,
    Array,
}

impl Kind {
    fn matches(self, v: &serde_json::Value) -> bool {
        match self {
            Kind::Integer => v.as_i64().is_some(),
            Kind::Number => v.is_number(),
            Kind::Bool => v.is_boolean(),
            Kind::String => v.is_string(),
            Kind::Array => v.is_array(),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Integer => "a whole number",
            Kind::Number => "a number",
            Kind::Bool => "true or false",
            Kind::String => "a string",
            Kind::Array => "an array",
        }
    }
}

const FEATURE_FIELDS: [(&str, Kind); 11] = [
    ("element_count", Kind::Integer),
    ("table_count", Kind::Integer),
    ("text_block_count", Kind::Integer),
    ("image_count", Kind::Integer),
    ("page_count", Kind::Integer),
    ("text_density", Kind::Number),
    ("layout_complexity", Kind::Number),
    ("column_count", Kind::Integer),
    ("has_header", Kind::Bool),
    ("has_footer", Kind::Bool),
    ("bounding_boxes", Kind::Array),
];
const BOX_FIELDS: [(&str, Kind); 7] = [
    ("x", Kind::Number),
    ("y", Kind::Number),
    ("width", Kind::Number),
    ("height", Kind::Number),
    ("element_type", Kind::String),
    ("confidence", Kind::Number),
    ("reading_order", Kind::Integer),
];
const EXTRACTOR_FIELDS: [(&str, Kind); 5] = [
    ("vendor", Kind::String),
    ("model", Kind::String),
    ("version", Kind::String),
    ("confidence", Kind::Number),
    ("latency_ms", Kind::Number),
];
/// Shape problems reported per request at most, so a broken client gets a readable answer.
const MAX_SHAPE_ERRORS: usize = 100;

fn check_fields(
    v: &mut Violations,
    obj: &serde_json::Map<String, serde_json::Value>,
    path: &str,
    fields: &[(&str, Kind)],
) {
    for (name, kind) in fields {
        match obj.get(*name) {
            None | Some(serde_json::Value::Null) => v.add(format!("{path}.{name}"), "is required"),
            Some(value) if !kind.matches(value) => {
                v.add(format!("{path}.{name}"), format!("must be {}", kind.name()))
            }
            _ => {}
        }
    }
}

/// Every shape problem of an evaluate request at once (serde alone stops at the first).
pub fn shape_violations(value: &serde_json::Value, prefix: &str) -> Result<(), ApiError> {
    let mut v = Violations::default();
    let Some(root) = value.as_object() else {
        v.add(
            if prefix.is_empty() {
                "body".to_string()
            } else {
                prefix.trim_end_matches('.').to_string()
            },
            "must be a JSON object",
        );
        return v.into_result();
    };
    match root.get("structural_features") {
        Some(serde_json::Value::Object(f)) => {
            let path = format!("{prefix}structural_features");
            check_fields(&mut v, f, &path, &FEATURE_FIELDS);
            if let Some(serde_json::Value::Array(boxes)) = f.get("bounding_boxes") {
                for (i, b) in boxes.iter().enumerate() {
                    let bpath = format!("{path}.bounding_boxes[{i}]");
                    match b.as_object() {
                        Some(b) => {
                            check_fields(&mut v, b, &bpath, &BOX_FIELDS);
                            if let Some(p) = b.get("page") {
                                if !p.is_null() && p.as_i64().is_none() {
                                    v.add(format!("{bpath}.page"), "must be a whole number");
                                }
                            }
                        }
                        None => v.add(bpath, "must be an object"),
                    }
                }
            }
        }
        Some(_) => v.add(format!("{prefix}structural_features"), "must be an object"),
        None => v.add(format!("{prefix}structural_features"), "is required"),
    }
    match root.get("extractor_metadata") {
        Some(serde_json::Value::Object(e)) => check_fields(
            &mut v,
            e,
            &format!("{prefix}extractor_metadata"),
            &EXTRACTOR_FIELDS,
        ),
        Some(_) => v.add(format!("{prefix}extractor_metadata"), "must be an object"),
        None => v.add(format!("{prefix}extractor_metadata"), "is required"),
    }
    for name in [
        "layout_fingerprint",
        "client_doc_hash",
        "client_correlation_id",
        "pipeline_id",
    ] {
        if let Some(x) = root.get(name) {
            if !x.is_null() && !x.is_string() {
                v.add(format!("{prefix}{name}"), "must be a string");
            }
        }
    }
    v.truncate(MAX_SHAPE_ERRORS);
    v.into_result()
}

/// Parses an evaluate request, reporting every shape problem together.
fn parse_evaluate_request(
    value: &serde_json::Value,
    prefix: &str,
) -> Result<EvaluateRequest, ApiError> {
    shape_violations(value, prefix)?;
    EvaluateRequest::deserialize(value).map_err(|e| {
        ApiError::Validation(vec![FieldError {
            field: if prefix.is_empty() {
                "body".into()
            } else {
                prefix.trim_end_matches('.').into()
            },
            message: e.to_string(),
        }])
    })
}

/// The stored answer of item `i` of a keyed batch; a 422 if the key was used for another body.
async fn stored_item(
    state: &AppState,
    key: &crate::idempotency::IdempotencyKey,
    i: usize,
) -> Result<Option<serde_json::Value>, ApiError> {
    let item = key.item(i);
    match state
        .store()
        .find_idempotency(item.tenant_id, &item.key)
        .await
        .map_err(store_unavailable)?
    {
        None => Ok(None),
        Some(r) if r.request_hash == item.request_hash && r.route == item.route => {
            Ok(Some(r.response.0))
        }
        Some(_) => Err(ApiError::Validation(vec![FieldError {
            field: "Idempotency-Key".into(),
            message: "was already used with a different request".into(),
        }])),
    }
}
