//! Evaluations: deciding a document, committing the decision durably before answering,
//! replaying keyed retries, the history, and outcome feedback.
//!
//! The request's shape is checked in full before serde reads it (so a client sees every
//! problem at once), the engine decides against the tenant's in-memory index, and the
//! group-commit writer stores the row, its idempotency record and its template's detector
//! update in one transaction. A 200 therefore always means committed.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use preflight_engine::{
    evaluate as engine_evaluate, validate, Decision, DriftObservation, Evaluation,
    ExtractorIdentity, ExtractorMetadata, OutcomeStats, Policy, StructuralFeatures, Template,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::alerts::{self, Alert, AlertRule, Observed};
use super::analytics;
use super::idempotency::{self, IdempotencyKey};
use super::review;
use super::templates::LayoutSource;
use super::usage;
use super::webhooks;
use crate::error::{ApiError, FieldError, Problem, Violations};
use crate::state::AppState;
use crate::storage::alerts::NewAlert;
use crate::storage::analytics::QuotaRule;
use crate::storage::evaluations::{
    CommitEffects, DecidedEvaluation, EvaluationFilter, EvaluationRow, EvaluationWrite,
    FeedbackWrite, Found, WriteOutcome,
};
use crate::storage::review::ReviewResolution;
use crate::storage::webhooks::{EndpointRow, NewDelivery};
use crate::storage::StoreError;
use crate::telemetry::EVALUATION_LATENCY;
use crate::writer::WriteError;

pub const MAX_BATCH_DOCUMENTS: usize = 100;
const MAX_TAG_LEN: usize = 256;
/// Re-reads after a concurrent feedback change before giving up with a 409.
const FEEDBACK_RETRIES: usize = 5;

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
    #[schema(value_type = String)]
    pub decision: Decision,
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
    pub alerts: Vec<Alert>,
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
    decision: Decision,
}

/// An evaluation as decided, waiting for what its commit finds: its answer gains the
/// change points it confirmed, and the tenant's alert rules see both.
struct Effects {
    response: EvaluateResponse,
    rules: Arc<Vec<AlertRule>>,
    observed: Observed,
}

impl CommitEffects for Effects {
    fn answer(&self, found: &Found) -> Result<serde_json::Value, serde_json::Error> {
        if found.change_points.is_empty() {
            return serde_json::to_value(&self.response);
        }
        let mut answer = self.response.clone();
        answer.alerts = found
            .change_points
            .iter()
            .map(|cp| {
                Alert::change_point(
                    answer.template_id.as_deref(),
                    self.observed.template_version_id,
                    cp,
                )
            })
            .collect();
        serde_json::to_value(&answer)
    }

    fn alerts(&self, found: &Found) -> Vec<NewAlert> {
        alerts::raised(&self.rules, &self.observed, found)
    }

    fn deliveries(&self, alert: &mut NewAlert, endpoints: &[EndpointRow]) -> Vec<NewDelivery> {
        webhooks::deliveries(alert, endpoints)
    }
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
        .await?;
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
        decision: evaluation.decision,
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
    let extractor = ExtractorIdentity::of(&req.extractor_metadata);
    let decided = DecidedEvaluation {
        id,
        tenant_id,
        created_at,
        decision: evaluation.decision.as_str().to_string(),
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
        correlation_id: req.client_correlation_id,
        pipeline_id: req.pipeline_id,
        client_doc_hash: req.client_doc_hash,
        layout_fingerprint: evaluation.layout_fingerprint.clone(),
        replay_hash: evaluation.replay_hash.clone(),
        engine_version: evaluation.engine_version.clone(),
        // The request as received (already parsed once): metadata only, re-serialized by
        // nobody but the database driver.
        request: sqlx::types::Json(request_json),
    };
    let observed = Observed {
        tenant_id,
        evaluation_id: id,
        at: created_at,
        template_id: decided.template_id.clone(),
        template_version_id: decided.template_version_id,
        drift: decided.drift_score,
        reliability: decided.reliability_score,
        vendor: decided.extractor_vendor.clone(),
        extractor: format!(
            "{}/{}/{}",
            extractor.vendor, extractor.model, extractor.version
        ),
        extractor_changed: evaluation
            .reasons
            .iter()
            .find(|r| r.code == "EXTRACTOR_CHANGED")
            .map(|r| r.message.clone()),
    };
    let rules = alerts::rules_for(state, tenant_id).await?;
    let rollup = analytics::rollup_entry(&decided, &extractor, &req.extractor_metadata);
    let quota: Option<QuotaRule> = state
        .config()
        .usage
        .enforce_quota
        .then_some(usage::monthly_limit);
    let review = review::item_for(
        &decided,
        evaluation.decision,
        state.config().review.sample_match_rate,
    );
    Ok(Decided {
        write: EvaluationWrite {
            review,
            rollup,
            usage_period: usage::period_of(created_at),
            quota,
            extractor,
            observation: DriftObservation::from_evaluation(&evaluation),
            evaluation: decided,
            effects: Box::new(Effects {
                response,
                rules,
                observed,
            }),
            idempotency: None,
        },
        decision: evaluation.decision,
    })
}

/// The committed answer of a stored write; a write that queued webhook deliveries wakes
/// this process's delivery worker, so they leave now instead of at its next poll.
fn committed(state: &AppState, outcome: WriteOutcome) -> Option<serde_json::Value> {
    match outcome {
        WriteOutcome::Stored {
            answer,
            queued_deliveries,
        } => {
            if queued_deliveries {
                state.delivery_wakeup().notify_one();
            }
            Some(answer)
        }
        WriteOutcome::Duplicate | WriteOutcome::QuotaExceeded(_) => None,
    }
}

/// A 503 for a decision that could not be stored; nothing of it was committed.
fn write_error(e: WriteError) -> ApiError {
    tracing::warn!(error = %e, "evaluation not stored");
    ApiError::Unavailable {
        what: "database",
        retry_after_secs: 2,
    }
}

/// Counts a committed answer in the instance's counters and latency histogram.
fn count(state: &AppState, decision: Decision, started: Instant) {
    metrics::histogram!(EVALUATION_LATENCY, "decision" => decision.as_str())
        .record(started.elapsed().as_secs_f64());
    state.count_evaluation(decision);
}

/// The answer of a single evaluate call.
pub enum Answer {
    /// Decided and committed now.
    Committed(serde_json::Value),
    /// A retry of a request answered before.
    Replayed(idempotency::Replay),
}

/// Decides one document (the parsed body `value`) and stores the decision durably before
/// answering.
pub async fn evaluate_one(
    state: &AppState,
    tenant_id: Uuid,
    value: serde_json::Value,
    key: Option<IdempotencyKey>,
) -> Result<Answer, ApiError> {
    let started = Instant::now();
    let req = parse_request(&value, "")?;
    let Decided {
        mut write,
        decision,
    } = decide(state, tenant_id, req, value, "").await?;
    write.idempotency = key.as_ref().map(|k| k.claim(200));
    let outcome = state
        .writer()
        .write_all(vec![write])
        .await
        .pop()
        .expect("one result per write")
        .map_err(write_error)?;
    if let WriteOutcome::QuotaExceeded(q) = &outcome {
        return Err(usage::exceeded(q));
    }
    match (committed(state, outcome), &key) {
        (Some(answer), _) => {
            count(state, decision, started);
            Ok(Answer::Committed(answer))
        }
        // A concurrent retry with the same key won; answer what it stored.
        (None, Some(k)) => match idempotency::lookup(state, k).await? {
            Some(replay) => Ok(Answer::Replayed(replay)),
            None => Err(StoreError::IdempotencyKeyTaken.into()),
        },
        (None, None) => Err(ApiError::internal(anyhow::anyhow!(
            "an evaluation without a key was a duplicate"
        ))),
    }
}

/// One document's result in a batch.
#[derive(Serialize, ToSchema)]
pub struct BatchItem {
    pub index: usize,
    /// 200 when decided and stored, else the status of `error`.
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub evaluation: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

impl BatchItem {
    fn stored(index: usize, evaluation: serde_json::Value) -> BatchItem {
        BatchItem {
            index,
            status: 200,
            evaluation: Some(evaluation),
            error: None,
        }
    }

    fn failed(index: usize, e: &ApiError) -> BatchItem {
        BatchItem {
            index,
            status: e.status().as_u16(),
            evaluation: None,
            error: Some(e.to_problem()),
        }
    }
}

/// The answers of a batch, and whether every one of them was replayed.
pub struct BatchAnswer {
    pub results: Vec<BatchItem>,
    pub replayed_all: bool,
}

/// Decides up to 100 documents; each result is independent (a bad document does not fail
/// the others), in request order. With a key, every item is stored under its own derived
/// key, so a retried batch answers the stored items as stored and decides only the rest.
pub async fn evaluate_batch(
    state: &AppState,
    tenant_id: Uuid,
    documents: Vec<serde_json::Value>,
    key: Option<IdempotencyKey>,
) -> Result<BatchAnswer, ApiError> {
    let started = Instant::now();
    if documents.is_empty() || documents.len() > MAX_BATCH_DOCUMENTS {
        return Err(ApiError::Validation(vec![FieldError {
            field: "documents".into(),
            message: format!("must hold 1 to {MAX_BATCH_DOCUMENTS} documents"),
        }]));
    }
    let mut results: Vec<Option<BatchItem>> = (0..documents.len()).map(|_| None).collect();
    let mut replayed_all = key.is_some();
    if let Some(k) = &key {
        for (i, slot) in results.iter_mut().enumerate() {
            match idempotency::lookup(state, &k.item(i)).await? {
                Some(replay) => *slot = Some(BatchItem::stored(i, replay.body)),
                None => replayed_all = false,
            }
        }
    }
    let mut writes = Vec::new();
    let mut pending = Vec::new();
    for (i, raw) in documents.into_iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        let prefix = format!("documents[{i}].");
        let decided = match parse_request(&raw, &prefix) {
            Ok(r) => decide(state, tenant_id, r, raw, &prefix).await,
            Err(e) => Err(e),
        };
        match decided {
            Ok(Decided {
                write: mut w,
                decision,
            }) => {
                w.idempotency = key.as_ref().map(|k| k.item(i).claim(200));
                writes.push(w);
                pending.push((i, decision));
            }
            Err(e @ ApiError::Validation(_)) => results[i] = Some(BatchItem::failed(i, &e)),
            Err(e) => return Err(e),
        }
    }
    let outcomes = state.writer().write_all(writes).await;
    for ((i, decision), outcome) in pending.into_iter().zip(outcomes) {
        if let Ok(WriteOutcome::QuotaExceeded(q)) = &outcome {
            results[i] = Some(BatchItem::failed(i, &usage::exceeded(q)));
            continue;
        }
        results[i] = Some(match outcome.map(|o| committed(state, o)) {
            Ok(Some(answer)) => {
                count(state, decision, started);
                BatchItem::stored(i, answer)
            }
            // A concurrent retry stored this item first: answer what it stored.
            Ok(None) => {
                let item = key.as_ref().expect("duplicates need a key").item(i);
                match idempotency::lookup(state, &item).await? {
                    Some(replay) => BatchItem::stored(i, replay.body),
                    None => BatchItem::failed(i, &StoreError::IdempotencyKeyTaken.into()),
                }
            }
            Err(e) => BatchItem::failed(i, &write_error(e)),
        });
    }
    Ok(BatchAnswer {
        results: results
            .into_iter()
            .map(|r| r.expect("every document has a result"))
            .collect(),
        replayed_all,
    })
}

/// An evaluation id from a path; a malformed one is the same 404 as an unknown one.
pub fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| not_found())
}

fn not_found() -> ApiError {
    ApiError::NotFound("evaluation".into())
}

pub async fn get(state: &AppState, tenant_id: Uuid, id: Uuid) -> Result<EvaluationRow, ApiError> {
    state
        .store()
        .get_evaluation(tenant_id, id)
        .await?
        .ok_or_else(not_found)
}

/// The tenant's evaluations, newest first, one page.
pub async fn list(
    state: &AppState,
    tenant_id: Uuid,
    filter: &EvaluationFilter,
) -> Result<Vec<EvaluationRow>, ApiError> {
    Ok(state.store().list_evaluations(tenant_id, filter).await?)
}

/// The extractor a stored evaluation was sent from.
fn extractor_of(evaluation: &EvaluationRow) -> Option<ExtractorIdentity> {
    evaluation
        .decided
        .request
        .0
        .get("extractor_metadata")
        .and_then(|e| serde_json::from_value::<ExtractorMetadata>(e.clone()).ok())
        .map(|e| ExtractorIdentity::of(&e))
}

/// The layout a stored evaluation decided on, for registering it as a template.
pub async fn layout_of(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<LayoutSource, ApiError> {
    let evaluation = get(state, tenant_id, id).await?;
    // The stored request is the metadata-only input the evaluation decided on.
    let features: StructuralFeatures = evaluation
        .decided
        .request
        .0
        .get("structural_features")
        .cloned()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("stored evaluation lacks features")))
        .and_then(|f| serde_json::from_value(f).map_err(ApiError::internal))?;
    let extractor = extractor_of(&evaluation);
    Ok(LayoutSource::Evaluation {
        id,
        decision: evaluation.decided.decision,
        features,
        extractor,
    })
}

/// What a reviewer or a downstream check found about an evaluation's extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FeedbackOutcome {
    Correct,
    Corrected,
    Rejected,
}

impl FeedbackOutcome {
    pub const ALL: [FeedbackOutcome; 3] = [
        FeedbackOutcome::Correct,
        FeedbackOutcome::Corrected,
        FeedbackOutcome::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackOutcome::Correct => "correct",
            FeedbackOutcome::Corrected => "corrected",
            FeedbackOutcome::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<FeedbackOutcome> {
        FeedbackOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    fn counter(self, stats: &mut OutcomeStats) -> &mut u64 {
        match self {
            FeedbackOutcome::Correct => &mut stats.correct,
            FeedbackOutcome::Corrected => &mut stats.corrected,
            FeedbackOutcome::Rejected => &mut stats.rejected,
        }
    }
}

/// Moves one verdict from `previous` to `outcome` in a template's statistics.
fn move_outcome(
    stats: &mut OutcomeStats,
    previous: Option<FeedbackOutcome>,
    outcome: FeedbackOutcome,
) {
    if let Some(p) = previous {
        let slot = p.counter(stats);
        *slot = slot.saturating_sub(1);
    }
    let slot = outcome.counter(stats);
    *slot = slot.saturating_add(1);
}

/// The answer of a feedback call.
pub enum FeedbackAnswer {
    Recorded(FeedbackResponse),
    Replayed(idempotency::Replay),
}

/// Records (or changes) the outcome of an evaluation; the template's per-extractor
/// statistics move exactly once per change of outcome and feed reliability. `review` says
/// how the evaluation's review item moves with it (in the same transaction).
pub async fn record_feedback(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
    req: FeedbackRequest,
    key: Option<IdempotencyKey>,
    review: ReviewResolution<'_>,
) -> Result<FeedbackAnswer, ApiError> {
    let mut v = Violations::default();
    let outcome = FeedbackOutcome::parse(&req.outcome);
    v.check(
        outcome.is_some(),
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
    let outcome = outcome.expect("validated above");
    let details = serde_json::to_value(&req).map_err(ApiError::internal)?;
    for _attempt in 0..FEEDBACK_RETRIES {
        let eval = get(state, tenant_id, id).await?;
        let previous = eval
            .feedback_outcome
            .as_deref()
            .and_then(FeedbackOutcome::parse);
        let changed = previous != Some(outcome);
        let template = match (changed, eval.decided.template_version_id) {
            (true, Some(tv)) => state.store().get_template(tenant_id, tv).await?,
            _ => None,
        };
        let updated_template = template.map(|mut t| {
            let expected = t.revision;
            let key = Template::outcome_key(
                &eval.decided.extractor_vendor,
                &eval.decided.extractor_model,
            );
            move_outcome(t.outcome_stats.0.entry(key).or_default(), previous, outcome);
            // A confirmed document's extractor is one the version has now seen.
            if outcome != FeedbackOutcome::Rejected {
                if let Some(extractor) = extractor_of(&eval) {
                    t.seen_extractors.0.insert(extractor);
                }
            }
            (t, expected)
        });
        let response = FeedbackResponse {
            evaluation_id: id,
            outcome: outcome.as_str().to_string(),
            previous_outcome: eval.feedback_outcome.clone(),
            statistics_updated: updated_template.is_some(),
        };
        let record = key.as_ref().map(|k| k.record(200, &response)).transpose()?;
        let calibration = analytics::feedback_delta(&eval.decided, previous, outcome);
        let write = FeedbackWrite {
            template: updated_template.as_ref().map(|(t, rev)| (t, *rev)),
            calibration: calibration.as_ref(),
            idempotency: record.as_ref(),
            ..FeedbackWrite::verdict(
                tenant_id,
                id,
                eval.feedback_outcome.as_deref(),
                outcome.as_str(),
                &details,
                Utc::now(),
                review.clone(),
            )
        };
        match state.store().apply_feedback(&write).await {
            Ok(()) => {
                if updated_template.is_some() {
                    state.templates().refresh(tenant_id).await?;
                }
                return Ok(FeedbackAnswer::Recorded(response));
            }
            Err(StoreError::IdempotencyKeyTaken | StoreError::Stale(_)) => {
                if let Some(k) = &key {
                    if let Some(replay) = idempotency::lookup(state, k).await? {
                        return Ok(FeedbackAnswer::Replayed(replay));
                    }
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(
        "the evaluation changed concurrently; retry".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_verdict_moves_one_count_and_never_goes_below_zero() {
        let mut stats = OutcomeStats::default();
        move_outcome(&mut stats, None, FeedbackOutcome::Correct);
        assert_eq!((stats.correct, stats.corrected, stats.rejected), (1, 0, 0));
        move_outcome(
            &mut stats,
            Some(FeedbackOutcome::Correct),
            FeedbackOutcome::Rejected,
        );
        assert_eq!((stats.correct, stats.corrected, stats.rejected), (0, 0, 1));
        move_outcome(
            &mut stats,
            Some(FeedbackOutcome::Corrected),
            FeedbackOutcome::Corrected,
        );
        assert_eq!((stats.correct, stats.corrected, stats.rejected), (0, 1, 1));
    }

    #[test]
    fn decisions_and_outcomes_round_trip_through_their_names() {
        for d in Decision::ALL {
            assert_eq!(Decision::parse(d.as_str()), Some(d));
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
        for o in FeedbackOutcome::ALL {
            assert_eq!(FeedbackOutcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(FeedbackOutcome::parse("Correct"), None);
    }

    #[test]
    fn the_tag_fields_are_the_members_serde_reads_beside_the_engine_inputs() {
        let (features, extractor) = (
            crate::storage::tests::exemplar(),
            ExtractorMetadata {
                vendor: "aws".into(),
                model: "textract".into(),
                version: "1".into(),
                confidence: 0.9,
                latency_ms: 10.0,
                cost_usd: None,
            },
        );
        let tag = Some("t".to_string());
        let req = EvaluateRequest {
            structural_features: features,
            extractor_metadata: extractor,
            layout_fingerprint: tag.clone(),
            client_doc_hash: tag.clone(),
            client_correlation_id: tag.clone(),
            pipeline_id: tag,
        };
        let value = serde_json::to_value(&req).unwrap();
        let mut written: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut declared = vec!["structural_features", "extractor_metadata"];
        declared.extend(EvaluateRequest::TAG_FIELDS);
        written.sort_unstable();
        declared.sort_unstable();
        assert_eq!(written, declared);
    }

    #[test]
    fn every_shape_problem_is_reported_with_its_path() {
        let body = serde_json::json!({
            "structural_features": {"element_count": "many", "bounding_boxes": [{"x": 1}]},
            "pipeline_id": 7
        });
        let Err(ApiError::Validation(errors)) = shape_violations(&body, "documents[2].") else {
            panic!("expected a validation error");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"documents[2].structural_features.element_count"));
        assert!(fields.contains(&"documents[2].structural_features.bounding_boxes[0].y"));
        assert!(fields.contains(&"documents[2].extractor_metadata"));
        assert!(fields.contains(&"documents[2].pipeline_id"));
    }
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

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackResponse {
    pub evaluation_id: Uuid,
    pub outcome: String,
    pub previous_outcome: Option<String>,
    /// Whether the template's outcome statistics changed.
    pub statistics_updated: bool,
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
            extractor_vendor: r.decided.extractor_vendor,
            extractor_model: r.decided.extractor_model,
            client_doc_hash: r.decided.client_doc_hash,
            feedback: r.feedback_outcome.map(|o| {
                serde_json::json!({"outcome": o, "details": r.feedback.map(|f| f.0), "at": r.feedback_at})
            }),
        }
    }
}

impl EvaluateRequest {
    /// The optional string members beside the engine's two input objects.
    const TAG_FIELDS: [&'static str; 4] = [
        "layout_fingerprint",
        "client_doc_hash",
        "client_correlation_id",
        "pipeline_id",
    ];
}

/// Shape problems reported per request at most, so a broken client gets a readable answer.
const MAX_SHAPE_ERRORS: usize = 100;

/// Every shape problem of an evaluate request at once (serde alone stops at the first):
/// the engine checks its input types, this the request's own members.
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
    for e in preflight_engine::input_shape_problems(root, prefix).into_vec() {
        v.add(e.field, e.message);
    }
    for name in EvaluateRequest::TAG_FIELDS {
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
pub fn parse_request(value: &serde_json::Value, prefix: &str) -> Result<EvaluateRequest, ApiError> {
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
