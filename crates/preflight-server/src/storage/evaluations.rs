//! Evaluations, their feedback and the change points they raised, in storage.
//!
//! Evaluations arrive through the group-commit writer: one transaction per batch claims the
//! idempotency keys, feeds each touched template's drift detector under a row lock (`FOR
//! UPDATE` on PostgreSQL; SQLite serializes writers), claims each extractor vendor's first
//! use by its tenant, and inserts the rows, their answers and the alerts they raise (the
//! outbox webhook delivery reads) in multi-row statements. Feedback moves the evaluation's outcome with an optimistic check on the
//! previous outcome, so the template's statistics move exactly once per change.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use preflight_engine::{ChangePoint, DriftDetectorState, DriftObservation, ExtractorIdentity};
use sqlx::types::Json;
use uuid::Uuid;

// Where callers import these today; they live with their own aggregates now.
pub use super::idempotency::IdempotencyRecord;
pub use super::templates::{TemplateFilter, TemplateRow};

use super::alerts::{first_uses_of_vendors, insert_alerts_with_deliveries, NewAlert};
use super::analytics::{
    add_feedback, add_rollups, add_usage, lock_usage, FeedbackDelta, QuotaRule, RollupEntry,
};
use super::idempotency::{claim, claim_or_fail};
use super::review::{insert_review_items, resolve_in, NewReviewItem, ReviewResolution};
use super::sql::{Arg, Query};
use super::templates::bump_revision;
use super::webhooks::{EndpointRow, NewDelivery};
use super::{SqlStore, StoreError};

/// An evaluation as decided, before its commit: every stored column but the answer (rendered
/// by the commit, see [`CommitEffects`]) and the feedback (which comes later).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DecidedEvaluation {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub decision: String,
    pub match_confidence: f64,
    pub template_id: Option<String>,
    pub template_version_id: Option<Uuid>,
    pub template_version: Option<i64>,
    pub similarity: f64,
    pub drift_score: f64,
    pub reliability_score: f64,
    pub extractor_confidence: f64,
    pub extractor_vendor: String,
    pub extractor_model: String,
    pub correlation_id: Option<String>,
    pub pipeline_id: Option<String>,
    pub client_doc_hash: Option<String>,
    pub layout_fingerprint: String,
    pub replay_hash: String,
    pub engine_version: String,
    /// The request as received: layout metadata only.
    pub request: Json<serde_json::Value>,
}

/// A stored evaluation: as decided, its answer, and the feedback on it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EvaluationRow {
    #[sqlx(flatten)]
    pub decided: DecidedEvaluation,
    /// The answer exactly as it was sent.
    pub response: Json<serde_json::Value>,
    pub feedback_outcome: Option<String>,
    pub feedback: Option<Json<serde_json::Value>>,
    pub feedback_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChangePointRow {
    pub id: i64,
    pub template_version_id: Uuid,
    pub evaluation_id: Uuid,
    pub series: String,
    pub observation: i64,
    pub detected_at: i64,
    pub baseline_mean: f64,
    pub recent_mean: f64,
    pub occurred_at: DateTime<Utc>,
}

/// What the commit of an evaluation found, which its answer and its alerts depend on: the
/// drift detector runs inside the commit, under the template's row lock, and a vendor's
/// first use is claimed there, so only the commit knows.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    /// The change points this evaluation confirmed on its template.
    pub change_points: &'a [ChangePoint],
    /// Whether this is the tenant's first evaluation from its extractor vendor.
    pub first_use_of_vendor: bool,
}

/// The parts of an evaluation that are decided by the domain's rules once the commit says
/// what it found; each is built once, there, and stored (and sent) as built.
pub trait CommitEffects: Send + Sync {
    /// The answer, as stored, replayed and sent.
    fn answer(&self, found: &Found) -> Result<serde_json::Value, serde_json::Error>;
    /// The alerts the tenant's rules raise for it.
    fn alerts(&self, found: &Found) -> Vec<NewAlert>;
    /// The deliveries of a new alert to those of its tenant's `endpoints` (enabled ones of
    /// every tenant in the commit) that take it; sets the alert's delivery status to match.
    fn deliveries(&self, alert: &mut NewAlert, endpoints: &[EndpointRow]) -> Vec<NewDelivery>;
}

/// A template version's detector and seen extractors, read under its row lock.
type DetectorRow = (
    Uuid,
    Uuid,
    Json<DriftDetectorState>,
    Json<BTreeSet<ExtractorIdentity>>,
);

/// One evaluation to commit, with what it does to its template's detector.
pub struct EvaluationWrite {
    pub evaluation: DecidedEvaluation,
    /// The extractor as sent (the row keeps only vendor and model).
    pub extractor: ExtractorIdentity,
    pub effects: Box<dyn CommitEffects>,
    pub observation: Option<DriftObservation>,
    /// Claimed first; the commit stores the rendered answer with it (whatever answer the
    /// record holds is replaced).
    pub idempotency: Option<IdempotencyRecord>,
    /// What it adds to the analytics rollups once stored.
    pub rollup: RollupEntry,
    /// The usage period it counts in (e.g. `2026-12`).
    pub usage_period: String,
    /// When quotas are enforced, the rule the commit admits it by (under the tenant's
    /// counter lock); `None` counts it without a limit.
    pub quota: Option<QuotaRule>,
    /// The review item it creates once stored (REVIEW, NEW, REJECT, sampled MATCHes).
    pub review: Option<NewReviewItem>,
}

/// Why an evaluation was not stored: its tenant's monthly quota is used up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaState {
    pub plan: String,
    pub limit: i64,
    pub used: i64,
    pub period: String,
}

#[derive(Debug, Clone)]
pub enum WriteOutcome {
    /// Committed; the answer as stored, and whether its alerts queued webhook deliveries.
    Stored {
        answer: serde_json::Value,
        queued_deliveries: bool,
    },
    /// The idempotency key was already used; nothing was stored for this item.
    Duplicate,
    /// The tenant's monthly quota was used up; nothing was stored for this item.
    QuotaExceeded(QuotaState),
}

/// One feedback write: the verdict and everything that moves with it.
#[derive(Debug, Clone)]
pub struct FeedbackWrite<'a> {
    pub tenant_id: Uuid,
    pub evaluation_id: Uuid,
    /// The outcome read before: part of the update's predicate, so statistics move once.
    pub previous_outcome: Option<&'a str>,
    pub outcome: &'a str,
    pub details: &'a serde_json::Value,
    pub at: DateTime<Utc>,
    /// The template with its new statistics, and the revision it was read at.
    pub template: Option<(&'a TemplateRow, i64)>,
    pub calibration: Option<&'a FeedbackDelta>,
    pub idempotency: Option<&'a IdempotencyRecord>,
    pub review: ReviewResolution<'a>,
}

impl<'a> FeedbackWrite<'a> {
    /// A verdict alone: no template, calibration or key; `review` says how the
    /// evaluation's review item moves with it.
    pub fn verdict(
        tenant_id: Uuid,
        evaluation_id: Uuid,
        previous_outcome: Option<&'a str>,
        outcome: &'a str,
        details: &'a serde_json::Value,
        at: DateTime<Utc>,
        review: ReviewResolution<'a>,
    ) -> Self {
        FeedbackWrite {
            tenant_id,
            evaluation_id,
            previous_outcome,
            outcome,
            details,
            at,
            template: None,
            calibration: None,
            idempotency: None,
            review,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct EvaluationFilter {
    pub decision: Option<String>,
    pub template_id: Option<String>,
    pub correlation_id: Option<String>,
    pub pipeline_id: Option<String>,
    pub min_reliability: Option<f64>,
    pub max_drift: Option<f64>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub before_id: Option<Uuid>,
    pub limit: i64,
}

/// The series points of one template version, for drift over time.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SeriesPoint {
    pub created_at: DateTime<Utc>,
    pub similarity: f64,
    pub drift_score: f64,
    pub reliability_score: f64,
    pub extractor_confidence: f64,
}

#[async_trait]
pub trait EvaluationStore: Send + Sync {
    /// Commits a batch of evaluations in one transaction (group commit), updating each
    /// template's detector under a row lock.
    async fn commit_evaluations(
        &self,
        batch: &[EvaluationWrite],
    ) -> Result<Vec<WriteOutcome>, StoreError>;
    async fn get_evaluation(
        &self,
        tenant_id: Uuid,
        id: Uuid,
    ) -> Result<Option<EvaluationRow>, StoreError>;
    async fn list_evaluations(
        &self,
        tenant_id: Uuid,
        filter: &EvaluationFilter,
    ) -> Result<Vec<EvaluationRow>, StoreError>;
    /// Records feedback on an evaluation and, when its outcome changed, the template's new
    /// statistics, the calibration rollup and the evaluation's review item, atomically;
    /// `Stale` if the feedback or the template changed underneath, `IdempotencyKeyTaken`
    /// if the key was claimed meanwhile, `Conflict` if the review item may not be resolved.
    async fn apply_feedback(&self, write: &FeedbackWrite<'_>) -> Result<(), StoreError>;
    async fn series(
        &self,
        tenant_id: Uuid,
        template_version_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<SeriesPoint>, StoreError>;
    async fn change_points(
        &self,
        tenant_id: Uuid,
        template_version_id: Uuid,
    ) -> Result<Vec<ChangePointRow>, StoreError>;
}

/// Rows per multi-row INSERT: 25 parameters a row stays far below both backends' limits.
pub const INSERT_CHUNK: usize = 64;

/// The columns of a [`DecidedEvaluation`], then its answer: what a commit inserts.
const INSERT_COLUMNS: &str = "id, tenant_id, created_at, decision, match_confidence, \
     template_id, template_version_id, template_version, similarity, drift_score, \
     reliability_score, extractor_confidence, extractor_vendor, extractor_model, \
     correlation_id, pipeline_id, client_doc_hash, layout_fingerprint, replay_hash, \
     engine_version, request, response";

/// The columns of an [`EvaluationRow`].
fn evaluation_columns() -> String {
    format!("{INSERT_COLUMNS}, feedback_outcome, feedback, feedback_at")
}

/// The values of one evaluation in [`INSERT_COLUMNS`] order.
fn evaluation_values(e: &DecidedEvaluation, response: &serde_json::Value) -> Vec<Arg> {
    vec![
        e.id.into(),
        e.tenant_id.into(),
        e.created_at.into(),
        (&e.decision).into(),
        e.match_confidence.into(),
        e.template_id.as_deref().into(),
        e.template_version_id.into(),
        e.template_version.into(),
        e.similarity.into(),
        e.drift_score.into(),
        e.reliability_score.into(),
        e.extractor_confidence.into(),
        (&e.extractor_vendor).into(),
        (&e.extractor_model).into(),
        e.correlation_id.as_deref().into(),
        e.pipeline_id.as_deref().into(),
        e.client_doc_hash.as_deref().into(),
        (&e.layout_fingerprint).into(),
        (&e.replay_hash).into(),
        (&e.engine_version).into(),
        Arg::json(&e.request),
        Arg::json(response),
    ]
}

#[async_trait]
impl EvaluationStore for SqlStore {
    async fn commit_evaluations(
        &self,
        batch: &[EvaluationWrite],
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        let mut tx = self.db.begin_write().await?;
        // 1. Claim idempotency keys; an item whose key is taken stores nothing.
        let mut stored = vec![true; batch.len()];
        for (i, w) in batch.iter().enumerate() {
            if let Some(r) = &w.idempotency {
                stored[i] = claim(&mut tx, r).await?;
            }
        }
        // 1b. Quotas, when enforced: each tenant's counter is locked (in key order) and its
        // evaluations admitted up to the limit, so replicas racing at the limit together
        // store exactly the limit. The others store nothing and answer 429.
        let mut over_quota: Vec<Option<QuotaState>> = vec![None; batch.len()];
        let mut counted = vec![false; batch.len()];
        let mut enforced: BTreeMap<(Uuid, &str), (QuotaRule, Vec<usize>)> = BTreeMap::new();
        for (i, w) in batch.iter().enumerate() {
            if let (true, Some(rule)) = (stored[i], w.quota) {
                enforced
                    .entry((w.evaluation.tenant_id, w.usage_period.as_str()))
                    .or_insert_with(|| (rule, Vec::new()))
                    .1
                    .push(i);
            }
        }
        for ((tenant_id, period), (rule, items)) in &enforced {
            let usage = lock_usage(&mut tx, *tenant_id, period).await?;
            let limit = rule(&usage.plan, usage.monthly_limit_override);
            let room = limit.map_or(items.len(), |l| {
                usize::try_from((l - usage.used).max(0)).unwrap_or(usize::MAX)
            });
            let admitted = room.min(items.len());
            for (n, &i) in items.iter().enumerate() {
                if n < admitted {
                    counted[i] = true;
                } else {
                    stored[i] = false;
                    // Its key was claimed above: let it go, so a retry once there is
                    // room is decided afresh rather than replayed as nothing.
                    if let Some(r) = &batch[i].idempotency {
                        tx.execute(
                            Query::new(
                                "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
                            )
                            .bind(r.tenant_id)
                            .bind(&r.key),
                        )
                        .await?;
                    }
                    over_quota[i] = Some(QuotaState {
                        plan: usage.plan.clone(),
                        limit: limit.unwrap_or(i64::MAX),
                        used: usage.used + admitted as i64,
                        period: period.to_string(),
                    });
                }
            }
            add_usage(
                &mut tx,
                &BTreeMap::from([((*tenant_id, period.to_string()), admitted as i64)]),
            )
            .await?;
        }
        // 2. Feed each template's detector in arrival order, under a row lock.
        let mut per_template: BTreeMap<(Uuid, Uuid), Vec<usize>> = BTreeMap::new();
        for (i, w) in batch.iter().enumerate() {
            if let (true, Some(_), Some(tv)) =
                (stored[i], w.observation, w.evaluation.template_version_id)
            {
                per_template
                    .entry((w.evaluation.tenant_id, tv))
                    .or_default()
                    .push(i);
            }
        }
        let mut change_points: Vec<Vec<ChangePoint>> = vec![Vec::new(); batch.len()];
        if !per_template.is_empty() {
            // One read of every touched detector, locked in id order (a consistent
            // order, so concurrent batches on several replicas cannot deadlock).
            let read = Query::new(
                "SELECT tenant_id, id, detector_state, seen_extractors FROM templates \
                 WHERE (tenant_id, id) IN (",
            )
            .push_tuples(
                per_template
                    .keys()
                    .map(|(tenant_id, tv)| [Arg::Uuid(*tenant_id), Arg::Uuid(*tv)]),
            )
            .push(") ORDER BY id")
            .push(tx.backend().lock_row());
            let states: Vec<DetectorRow> = tx.fetch_all(read).await?;
            let mut updated = Vec::with_capacity(states.len());
            let mut first_seen = Vec::new();
            for (tenant_id, tv, Json(mut state), Json(seen)) in states {
                let Some(items) = per_template.get(&(tenant_id, tv)) else {
                    continue;
                };
                // A version that has seen no extractor yet learns its first matched one.
                if seen.is_empty() {
                    let first = &batch[items[0]].extractor;
                    first_seen.push((tenant_id, tv, BTreeSet::from([first.clone()])));
                }
                for &i in items {
                    let w = &batch[i];
                    if let Some(cp) = w.observation.as_ref().and_then(|o| state.observe(o)) {
                        tx.execute(
                            Query::new(
                                "INSERT INTO change_points (tenant_id, template_version_id, \
                                 evaluation_id, series, observation, detected_at, baseline_mean, \
                                 recent_mean, occurred_at) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                            )
                            .bind(tenant_id)
                            .bind(tv)
                            .bind(w.evaluation.id)
                            .bind(cp.series.as_str())
                            .bind(cp.observation as i64)
                            .bind(cp.detected_at as i64)
                            .bind(cp.baseline_mean)
                            .bind(cp.recent_mean)
                            .bind(w.evaluation.created_at),
                        )
                        .await?;
                        change_points[i].push(cp);
                    }
                }
                updated.push((tenant_id, tv, state, items.len() as i64));
            }
            // And one write of all of them.
            if !updated.is_empty() {
                let write = Query::new("WITH v (tenant_id, id, state, n) AS (VALUES ")
                    .push_tuples(updated.iter().map(|(tenant_id, tv, state, n)| {
                        [
                            Arg::Uuid(*tenant_id),
                            Arg::Uuid(*tv),
                            Arg::json(state),
                            Arg::I64(*n),
                        ]
                    }))
                    .push(
                        ") UPDATE templates SET detector_state = v.state, \
                         evaluation_count = templates.evaluation_count + v.n \
                         FROM v WHERE templates.tenant_id = v.tenant_id AND templates.id = v.id",
                    );
                tx.execute(write).await?;
            }
            // Rare (once a version): a changed decision input, so the tenant's template
            // revision moves and every replica reloads the version.
            for (tenant_id, tv, seen) in &first_seen {
                let revision = bump_revision(&mut tx, *tenant_id).await?;
                tx.execute(
                    Query::new(
                        "UPDATE templates SET seen_extractors = $3, revision = $4 \
                         WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(*tenant_id)
                    .bind(*tv)
                    .bind(Arg::json(seen))
                    .bind(revision),
                )
                .await?;
            }
        }
        // 3. Each vendor's first use by its tenant, claimed here so one evaluation sees it.
        let mut uses: Vec<(Uuid, &str)> = batch
            .iter()
            .enumerate()
            .filter(|(i, _)| stored[*i])
            .map(|(_, w)| {
                (
                    w.evaluation.tenant_id,
                    w.evaluation.extractor_vendor.as_str(),
                )
            })
            .collect();
        uses.sort_unstable();
        uses.dedup();
        let at = batch
            .first()
            .map_or_else(Utc::now, |w| w.evaluation.created_at);
        let mut first_uses = first_uses_of_vendors(&mut tx, &uses, at).await?;
        // 4. Each stored item's answer and alerts, built once now that the commit knows
        // what it found; then the rows, the keyed answers and the alerts.
        let mut answers: Vec<Option<serde_json::Value>> = Vec::with_capacity(batch.len());
        let mut alerts = Vec::new();
        for (i, w) in batch.iter().enumerate() {
            if !stored[i] {
                answers.push(None);
                continue;
            }
            let e = &w.evaluation;
            let first = first_uses
                .iter()
                .position(|(t, v)| *t == e.tenant_id && *v == e.extractor_vendor)
                .map(|p| first_uses.swap_remove(p))
                .is_some();
            let found = Found {
                change_points: &change_points[i],
                first_use_of_vendor: first,
            };
            let answer = w
                .effects
                .answer(&found)
                .map_err(|e| StoreError::Other(format!("answer not rendered: {e}")))?;
            answers.push(Some(answer));
            alerts.extend(w.effects.alerts(&found).into_iter().map(|a| (i, a)));
        }
        let rows: Vec<(&EvaluationWrite, &serde_json::Value)> = batch
            .iter()
            .zip(&answers)
            .filter_map(|(w, a)| Some((w, a.as_ref()?)))
            .collect();
        for chunk in rows.chunks(INSERT_CHUNK) {
            let insert = Query::new(format!(
                "INSERT INTO evaluations ({INSERT_COLUMNS}) VALUES "
            ))
            .push_tuples(
                chunk
                    .iter()
                    .map(|(w, answer)| evaluation_values(&w.evaluation, answer)),
            );
            tx.execute(insert).await?;
        }
        for (w, answer) in &rows {
            if let Some(r) = &w.idempotency {
                tx.execute(
                    Query::new(
                        "UPDATE idempotency_keys SET response = $3 \
                         WHERE tenant_id = $1 AND key = $2",
                    )
                    .bind(r.tenant_id)
                    .bind(&r.key)
                    .bind(Arg::json(answer)),
                )
                .await?;
            }
        }
        let items: Vec<(&DecidedEvaluation, &NewReviewItem)> = rows
            .iter()
            .filter_map(|(w, _)| Some((&w.evaluation, w.review.as_ref()?)))
            .collect();
        insert_review_items(&mut tx, &items).await?;
        // 5. The analytics rollups and the usage counted without a limit: additive upserts
        // of rows every commit of the tenant touches, so they go last and hold their
        // locks only until the commit.
        add_rollups(
            &mut tx,
            rows.iter()
                .map(|(w, _)| (w.evaluation.tenant_id, &w.rollup)),
        )
        .await?;
        let mut usage: BTreeMap<(Uuid, String), i64> = BTreeMap::new();
        for (i, w) in batch.iter().enumerate() {
            if stored[i] && !counted[i] {
                *usage
                    .entry((w.evaluation.tenant_id, w.usage_period.clone()))
                    .or_default() += 1;
            }
        }
        add_usage(&mut tx, &usage).await?;
        // 6. The alerts, with their deliveries to the tenants' webhook endpoints (the
        // outbox).
        let mut queued = vec![false; batch.len()];
        for i in insert_alerts_with_deliveries(&mut tx, alerts, |i, alert, endpoints| {
            batch[i].effects.deliveries(alert, endpoints)
        })
        .await?
        {
            queued[i] = true;
        }
        tx.commit().await?;
        Ok(answers
            .into_iter()
            .zip(queued)
            .zip(over_quota)
            .map(|((a, queued_deliveries), over)| match (a, over) {
                (Some(answer), _) => WriteOutcome::Stored {
                    answer,
                    queued_deliveries,
                },
                (None, Some(quota)) => WriteOutcome::QuotaExceeded(quota),
                (None, None) => WriteOutcome::Duplicate,
            })
            .collect())
    }

    async fn get_evaluation(
        &self,
        tenant_id: Uuid,
        id: Uuid,
    ) -> Result<Option<EvaluationRow>, StoreError> {
        self.db
            .fetch_optional(Query::tenant_row(
                &evaluation_columns(),
                "evaluations",
                tenant_id,
                id,
            ))
            .await
    }

    async fn list_evaluations(
        &self,
        tenant_id: Uuid,
        f: &EvaluationFilter,
    ) -> Result<Vec<EvaluationRow>, StoreError> {
        self.db
            .fetch_all(
                Query::new(format!(
                    "SELECT {} FROM evaluations WHERE tenant_id = $1 \
                     AND ($2 IS NULL OR decision = $2) AND ($3 IS NULL OR template_id = $3) \
                     AND ($4 IS NULL OR correlation_id = $4) AND ($5 IS NULL OR pipeline_id = $5) \
                     AND ($6 IS NULL OR reliability_score >= $6) \
                     AND ($7 IS NULL OR drift_score <= $7) \
                     AND ($8 IS NULL OR created_at >= $8) AND ($9 IS NULL OR created_at < $9) \
                     AND ($10 IS NULL OR id < $10) ORDER BY id DESC LIMIT $11",
                    evaluation_columns()
                ))
                .bind(tenant_id)
                .bind(f.decision.as_deref())
                .bind(f.template_id.as_deref())
                .bind(f.correlation_id.as_deref())
                .bind(f.pipeline_id.as_deref())
                .bind(f.min_reliability)
                .bind(f.max_drift)
                .bind(f.from)
                .bind(f.to)
                .bind(f.before_id)
                .bind(f.limit),
            )
            .await
    }

    async fn apply_feedback(&self, w: &FeedbackWrite<'_>) -> Result<(), StoreError> {
        let FeedbackWrite {
            tenant_id,
            evaluation_id,
            previous_outcome,
            outcome,
            details: feedback,
            at,
            template,
            calibration,
            idempotency,
            ref review,
        } = *w;
        let mut tx = self.db.begin_write().await?;
        claim_or_fail(&mut tx, idempotency).await?;
        // The previous outcome is part of the predicate: a concurrent change makes this
        // a no-op and the caller retries, so statistics move exactly once per change.
        let updated = tx
            .execute(
                Query::new(
                    "UPDATE evaluations SET feedback_outcome = $3, feedback = $4, feedback_at = $5 \
                     WHERE tenant_id = $1 AND id = $2 AND \
                     ((feedback_outcome IS NULL AND $6 IS NULL) OR feedback_outcome = $6)",
                )
                .bind(tenant_id)
                .bind(evaluation_id)
                .bind(outcome)
                .bind(Arg::json(feedback))
                .bind(at)
                .bind(previous_outcome),
            )
            .await?;
        if updated != 1 {
            tx.rollback().await?;
            return Err(StoreError::Stale("evaluation feedback"));
        }
        if let Some((row, expected)) = template {
            let revision = bump_revision(&mut tx, tenant_id).await?;
            let saved = tx
                .execute(
                    Query::new(
                        "UPDATE templates SET outcome_stats = $3, revision = $4, updated_at = $5, \
                         seen_extractors = $7 WHERE tenant_id = $1 AND id = $2 AND revision = $6",
                    )
                    .bind(tenant_id)
                    .bind(row.id)
                    .bind(Arg::json(&row.outcome_stats))
                    .bind(revision)
                    .bind(at)
                    .bind(expected)
                    .bind(Arg::json(&row.seen_extractors)),
                )
                .await?;
            if saved != 1 {
                tx.rollback().await?;
                return Err(StoreError::Stale("template"));
            }
        }
        if let Some(delta) = calibration {
            add_feedback(&mut tx, tenant_id, delta).await?;
        }
        if let Err(e) = resolve_in(&mut tx, tenant_id, evaluation_id, outcome, at, review).await {
            tx.rollback().await?;
            return Err(e);
        }
        tx.commit().await
    }

    async fn series(
        &self,
        tenant_id: Uuid,
        tv: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        self.db
            .fetch_all(
                Query::new(
                    "SELECT created_at, similarity, drift_score, reliability_score, \
                     extractor_confidence FROM evaluations \
                     WHERE tenant_id = $1 AND template_version_id = $2 \
                     AND created_at >= $3 AND created_at < $4 ORDER BY created_at LIMIT $5",
                )
                .bind(tenant_id)
                .bind(tv)
                .bind(from)
                .bind(to)
                .bind(limit),
            )
            .await
    }

    async fn change_points(
        &self,
        tenant_id: Uuid,
        tv: Uuid,
    ) -> Result<Vec<ChangePointRow>, StoreError> {
        self.db
            .fetch_all(
                Query::new(
                    "SELECT id, template_version_id, evaluation_id, series, observation, \
                     detected_at, baseline_mean, recent_mean, occurred_at FROM change_points \
                     WHERE tenant_id = $1 AND template_version_id = $2 ORDER BY id",
                )
                .bind(tenant_id)
                .bind(tv),
            )
            .await
    }
}
