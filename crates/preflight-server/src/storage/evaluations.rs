//! Templates, evaluations, change points and idempotency records in storage.
//!
//! As for identity, one macro body implements the trait for both backends. Two rules keep
//! concurrent writers from losing updates: template metadata is saved with an optimistic
//! revision check, and the per-evaluation detector state is updated under a row lock
//! (`FOR UPDATE` on PostgreSQL; SQLite serializes writers) by the group-commit writer. The
//! two never write the same columns.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use preflight_engine::{
    ChangePoint, DriftDetectorState, DriftObservation, OutcomeStats, StructuralFeatures,
};
use sqlx::types::Json;
use uuid::Uuid;

use super::identity::NewAuditEvent;
use super::StoreError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TemplateRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub template_id: String,
    pub version: i64,
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: String,
    pub baseline_reliability: f64,
    pub correction_rules: Json<Vec<preflight_engine::CorrectionRule>>,
    pub exemplars: Json<Vec<StructuralFeatures>>,
    pub outcome_stats: Json<BTreeMap<String, OutcomeStats>>,
    pub detector_state: Json<DriftDetectorState>,
    pub evaluation_count: i64,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EvaluationRow {
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
    pub request: Json<serde_json::Value>,
    pub response: Json<serde_json::Value>,
    pub feedback_outcome: Option<String>,
    pub feedback: Option<Json<serde_json::Value>>,
    pub feedback_at: Option<DateTime<Utc>>,
}

/// A stored answer for an `Idempotency-Key`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IdempotencyRecord {
    pub tenant_id: Uuid,
    pub key: String,
    pub route: String,
    pub request_hash: String,
    pub status: i32,
    pub response: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
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

/// One evaluation to commit, with what it does to its template's detector.
#[derive(Debug, Clone)]
pub struct EvaluationWrite {
    pub row: EvaluationRow,
    pub observation: Option<DriftObservation>,
    pub idempotency: Option<IdempotencyRecord>,
}

#[derive(Debug, Clone)]
pub enum WriteOutcome {
    Stored {
        change_points: Vec<ChangePoint>,
    },
    /// The idempotency key was already used; nothing was stored for this item.
    Duplicate,
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

#[derive(Debug, Clone, Default)]
pub struct TemplateFilter {
    pub status: Option<String>,
    pub template_id: Option<String>,
    pub after_id: Option<Uuid>,
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
    async fn template_revision(&self, tenant_id: Uuid) -> Result<i64, StoreError>;
    /// Template versions of the tenant changed after `revision` (all of them from 0).
    async fn templates_changed_since(
        &self,
        tenant_id: Uuid,
        revision: i64,
    ) -> Result<Vec<TemplateRow>, StoreError>;
    async fn get_template(
        &self,
        tenant_id: Uuid,
        id: Uuid,
    ) -> Result<Option<TemplateRow>, StoreError>;
    /// The given version, or the newest one, of a template by its client-facing id.
    async fn find_template(
        &self,
        tenant_id: Uuid,
        template_id: &str,
        version: Option<i64>,
    ) -> Result<Option<TemplateRow>, StoreError>;
    async fn max_template_version(
        &self,
        tenant_id: Uuid,
        template_id: &str,
    ) -> Result<Option<i64>, StoreError>;
    async fn list_templates(
        &self,
        tenant_id: Uuid,
        filter: &TemplateFilter,
    ) -> Result<Vec<TemplateRow>, StoreError>;
    async fn count_templates(&self, tenant_id: Uuid, status: &str) -> Result<i64, StoreError>;
    /// Inserts a template version; `Duplicate` when `(template_id, version)` exists. Returns
    /// the revision it was stored with.
    async fn create_template(
        &self,
        row: &TemplateRow,
        audit: &NewAuditEvent,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<i64, StoreError>;
    /// Saves metadata, status, exemplars and outcome statistics if the row is still at
    /// `expected_revision`; `Stale` otherwise (the caller re-reads and retries).
    async fn save_template(
        &self,
        row: &TemplateRow,
        expected_revision: i64,
        audit: &NewAuditEvent,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<i64, StoreError>;
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
    /// statistics, atomically; `Stale` if either changed underneath.
    #[allow(clippy::too_many_arguments)]
    async fn apply_feedback(
        &self,
        tenant_id: Uuid,
        evaluation_id: Uuid,
        previous_outcome: Option<&str>,
        outcome: &str,
        feedback: &serde_json::Value,
        at: DateTime<Utc>,
        template: Option<(&TemplateRow, i64)>,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError>;
    async fn find_idempotency(
        &self,
        tenant_id: Uuid,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// Forgets idempotency records created before `before`; returns how many.
    async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
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

/// The wire name of a detector series.
pub fn series_name(series: preflight_engine::DriftSeries) -> &'static str {
    match series {
        preflight_engine::DriftSeries::Similarity => "similarity",
        preflight_engine::DriftSeries::Drift => "drift",
        preflight_engine::DriftSeries::ExtractorConfidence => "extractor_confidence",
    }
}

/// The answer of an evaluation with the change points it triggered as `alerts`.
pub fn with_alerts(
    mut response: serde_json::Value,
    template_id: Option<&str>,
    template_version_id: Option<Uuid>,
    change_points: &[ChangePoint],
) -> serde_json::Value {
    let alerts: Vec<serde_json::Value> = change_points
        .iter()
        .map(|cp| {
            serde_json::json!({
                "type": "TEMPLATE_CHANGE_POINT",
                "template_id": template_id,
                "template_version_id": template_version_id,
                "series": series_name(cp.series),
                "observation": cp.observation,
                "detected_at_observation": cp.detected_at,
                "baseline_mean": cp.baseline_mean,
                "recent_mean": cp.recent_mean,
                "message": format!(
                    "this template's {} changed around its evaluation {}",
                    series_name(cp.series).replace('_', " "),
                    cp.observation
                ),
            })
        })
        .collect();
    if let Some(obj) = response.as_object_mut() {
        obj.insert("alerts".into(), serde_json::Value::Array(alerts));
    }
    response
}

/// Rows per multi-row INSERT: 25 parameters a row stays far below both backends' limits.
pub const INSERT_CHUNK: usize = 64;

macro_rules! template_columns {
    () => {
        "id, tenant_id, template_id, version, name, description, status, baseline_reliability, \
         correction_rules, exemplars, outcome_stats, detector_state, evaluation_count, revision, \
         created_at, updated_at"
    };
}

macro_rules! evaluation_columns {
    () => {
        "id, tenant_id, created_at, decision, match_confidence, template_id, template_version_id, \
         template_version, similarity, drift_score, reliability_score, extractor_confidence, \
         extractor_vendor, extractor_model, correlation_id, pipeline_id, client_doc_hash, \
         layout_fingerprint, replay_hash, engine_version, request, response, feedback_outcome, \
         feedback, feedback_at"
    };
}

macro_rules! bump_revision {
    ($exec:expr, $tenant:expr) => {{
        let rev: i64 = sqlx::query_scalar(
            "UPDATE tenants SET template_revision = template_revision + 1 WHERE id = $1 RETURNING template_revision",
        )
        .bind($tenant)
        .fetch_one($exec)
        .await?;
        rev
    }};
}

macro_rules! insert_idempotency {
    ($exec:expr, $r:expr) => {{
        let r = $r;
        sqlx::query(
            "INSERT INTO idempotency_keys (tenant_id, key, route, request_hash, status, response, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, key) DO NOTHING",
        )
        .bind(r.tenant_id).bind(&r.key).bind(&r.route).bind(&r.request_hash).bind(r.status)
        .bind(&r.response).bind(r.created_at)
        .execute($exec)
        .await?
        .rows_affected() == 1
    }};
}

macro_rules! impl_evaluation_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::evaluations::EvaluationStore for $store {
            async fn template_revision(&self, tenant_id: uuid::Uuid) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar("SELECT template_revision FROM tenants WHERE id = $1")
                    .bind(tenant_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .unwrap_or(0))
            }

            async fn templates_changed_since(&self, tenant_id: uuid::Uuid, revision: i64) -> Result<Vec<TemplateRow>, StoreError> {
                Ok(sqlx::query_as(concat!("SELECT ", template_columns!(), " FROM templates WHERE tenant_id = $1 AND revision > $2 ORDER BY revision"))
                    .bind(tenant_id).bind(revision)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn get_template(&self, tenant_id: uuid::Uuid, id: uuid::Uuid) -> Result<Option<TemplateRow>, StoreError> {
                Ok(sqlx::query_as(concat!("SELECT ", template_columns!(), " FROM templates WHERE tenant_id = $1 AND id = $2"))
                    .bind(tenant_id).bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn find_template(&self, tenant_id: uuid::Uuid, template_id: &str, version: Option<i64>) -> Result<Option<TemplateRow>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ", template_columns!(),
                    " FROM templates WHERE tenant_id = $1 AND template_id = $2 AND ($3 IS NULL OR version = $3) \
                     ORDER BY version DESC LIMIT 1"
                ))
                .bind(tenant_id).bind(template_id).bind(version)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn max_template_version(&self, tenant_id: uuid::Uuid, template_id: &str) -> Result<Option<i64>, StoreError> {
                Ok(sqlx::query_scalar("SELECT MAX(version) FROM templates WHERE tenant_id = $1 AND template_id = $2")
                    .bind(tenant_id).bind(template_id)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn list_templates(&self, tenant_id: uuid::Uuid, f: &TemplateFilter) -> Result<Vec<TemplateRow>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ", template_columns!(),
                    " FROM templates WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2) \
                     AND ($3 IS NULL OR template_id = $3) AND ($4 IS NULL OR id > $4) ORDER BY id LIMIT $5"
                ))
                .bind(tenant_id).bind(f.status.as_deref()).bind(f.template_id.as_deref()).bind(f.after_id).bind(f.limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn count_templates(&self, tenant_id: uuid::Uuid, status: &str) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM templates WHERE tenant_id = $1 AND status = $2")
                    .bind(tenant_id).bind(status)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn create_template(&self, row: &TemplateRow, audit: &NewAuditEvent, idempotency: Option<&IdempotencyRecord>) -> Result<i64, StoreError> {
                let mut tx = self.pool.begin_with(<$store as Dialect>::BEGIN_WRITE).await?;
                if let Some(r) = idempotency {
                    if !insert_idempotency!(&mut *tx, r) {
                        return Err(StoreError::IdempotencyKeyTaken);
                    }
                }
                let revision = bump_revision!(&mut *tx, row.tenant_id);
                sqlx::query(concat!(
                    "INSERT INTO templates (", template_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
                ))
                .bind(row.id).bind(row.tenant_id).bind(&row.template_id).bind(row.version)
                .bind(row.name.as_deref()).bind(row.description.as_deref()).bind(&row.status)
                .bind(row.baseline_reliability).bind(&row.correction_rules).bind(&row.exemplars)
                .bind(&row.outcome_stats).bind(&row.detector_state).bind(row.evaluation_count)
                .bind(revision).bind(row.created_at).bind(row.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_or(e, "this template_id and version exist already"))?;
                insert_audit!(&mut *tx, audit);
                tx.commit().await?;
                Ok(revision)
            }

            async fn save_template(
                &self,
                row: &TemplateRow,
                expected_revision: i64,
                audit: &NewAuditEvent,
                idempotency: Option<&IdempotencyRecord>,
            ) -> Result<i64, StoreError> {
                let mut tx = self.pool.begin_with(<$store as Dialect>::BEGIN_WRITE).await?;
                if let Some(r) = idempotency {
                    if !insert_idempotency!(&mut *tx, r) {
                        return Err(StoreError::IdempotencyKeyTaken);
                    }
                }
                let revision = bump_revision!(&mut *tx, row.tenant_id);
                let updated = sqlx::query(
                    "UPDATE templates SET name = $3, description = $4, status = $5, baseline_reliability = $6, \
                     correction_rules = $7, exemplars = $8, outcome_stats = $9, revision = $10, updated_at = $11 \
                     WHERE tenant_id = $1 AND id = $2 AND revision = $12",
                )
                .bind(row.tenant_id).bind(row.id).bind(row.name.as_deref()).bind(row.description.as_deref())
                .bind(&row.status).bind(row.baseline_reliability).bind(&row.correction_rules)
                .bind(&row.exemplars).bind(&row.outcome_stats).bind(revision).bind(row.updated_at)
                .bind(expected_revision)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated != 1 {
                    tx.rollback().await?;
                    return Err(StoreError::Stale("template"));
                }
                insert_audit!(&mut *tx, audit);
                tx.commit().await?;
                Ok(revision)
            }

            async fn commit_evaluations(&self, batch: &[EvaluationWrite]) -> Result<Vec<WriteOutcome>, StoreError> {
                let mut tx = self.pool.begin_with(<$store as Dialect>::BEGIN_WRITE).await?;
                // 1. Claim idempotency keys; an item whose key is taken stores nothing.
                let mut stored = vec![true; batch.len()];
                for (i, w) in batch.iter().enumerate() {
                    if let Some(r) = &w.idempotency {
                        stored[i] = insert_idempotency!(&mut *tx, r);
                    }
                }
                // 2. Feed each template's detector in arrival order, under a row lock.
                let mut per_template: std::collections::BTreeMap<(uuid::Uuid, uuid::Uuid), Vec<usize>> = std::collections::BTreeMap::new();
                for (i, w) in batch.iter().enumerate() {
                    if let (true, Some(_), Some(tv)) = (stored[i], w.observation, w.row.template_version_id) {
                        per_template.entry((w.row.tenant_id, tv)).or_default().push(i);
                    }
                }
                let mut change_points: Vec<Vec<preflight_engine::ChangePoint>> = vec![Vec::new(); batch.len()];
                if !per_template.is_empty() {
                    // One read of every touched detector, locked in id order (a consistent
                    // order, so concurrent batches on several replicas cannot deadlock).
                    let mut qb = sqlx::QueryBuilder::new(
                        "SELECT tenant_id, id, detector_state FROM templates WHERE (tenant_id, id) IN (",
                    );
                    let mut sep = qb.separated(", ");
                    for (tenant_id, tv) in per_template.keys() {
                        sep.push("(");
                        sep.push_bind_unseparated(*tenant_id);
                        sep.push_unseparated(", ");
                        sep.push_bind_unseparated(*tv);
                        sep.push_unseparated(")");
                    }
                    qb.push(") ORDER BY id");
                    qb.push(<$store as Dialect>::LOCK_ROW);
                    let states: Vec<(uuid::Uuid, uuid::Uuid, sqlx::types::Json<preflight_engine::DriftDetectorState>)> =
                        qb.build_query_as().fetch_all(&mut *tx).await?;
                    let mut updated = Vec::with_capacity(states.len());
                    for (tenant_id, tv, sqlx::types::Json(mut state)) in states {
                        let Some(items) = per_template.get(&(tenant_id, tv)) else { continue };
                        for &i in items {
                            let w = &batch[i];
                            if let Some(cp) = w.observation.as_ref().and_then(|o| state.observe(o)) {
                                sqlx::query(
                                    "INSERT INTO change_points (tenant_id, template_version_id, evaluation_id, series, \
                                     observation, detected_at, baseline_mean, recent_mean, occurred_at) \
                                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                                )
                                .bind(tenant_id).bind(tv).bind(w.row.id).bind(series_name(cp.series))
                                .bind(cp.observation as i64).bind(cp.detected_at as i64)
                                .bind(cp.baseline_mean).bind(cp.recent_mean).bind(w.row.created_at)
                                .execute(&mut *tx)
                                .await?;
                                change_points[i].push(cp);
                            }
                        }
                        updated.push((tenant_id, tv, state, items.len() as i64));
                    }
                    // And one write of all of them.
                    let mut qb = sqlx::QueryBuilder::new("WITH v (tenant_id, id, state, n) AS (");
                    qb.push_values(&updated, |mut b, (tenant_id, tv, state, n)| {
                        b.push_bind(*tenant_id).push_bind(*tv).push_bind(sqlx::types::Json(state)).push_bind(*n);
                    });
                    qb.push(
                        ") UPDATE templates SET detector_state = v.state, evaluation_count = templates.evaluation_count + v.n \
                         FROM v WHERE templates.tenant_id = v.tenant_id AND templates.id = v.id",
                    );
                    qb.build().execute(&mut *tx).await?;
                }
                // 3. The rows, with the alerts the detector raised in their answer, in
                // multi-row inserts.
                // Only answers that gained alerts are rebuilt; the others are stored as decided.
                let patched: Vec<Option<sqlx::types::Json<serde_json::Value>>> = batch
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        (stored[i] && !change_points[i].is_empty()).then(|| {
                            sqlx::types::Json(with_alerts(
                                w.row.response.0.clone(),
                                w.row.template_id.as_deref(),
                                w.row.template_version_id,
                                &change_points[i],
                            ))
                        })
                    })
                    .collect();
                let rows: Vec<(usize, &sqlx::types::Json<serde_json::Value>)> = batch
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| stored[*i])
                    .map(|(i, w)| (i, patched[i].as_ref().unwrap_or(&w.row.response)))
                    .collect();
                for chunk in rows.chunks(INSERT_CHUNK) {
                    let mut qb = sqlx::QueryBuilder::new(concat!("INSERT INTO evaluations (", evaluation_columns!(), ") "));
                    qb.push_values(chunk, |mut b, (i, response)| {
                        let e = &batch[*i].row;
                        b.push_bind(e.id).push_bind(e.tenant_id).push_bind(e.created_at).push_bind(&e.decision)
                            .push_bind(e.match_confidence).push_bind(e.template_id.as_deref()).push_bind(e.template_version_id)
                            .push_bind(e.template_version).push_bind(e.similarity).push_bind(e.drift_score)
                            .push_bind(e.reliability_score).push_bind(e.extractor_confidence).push_bind(&e.extractor_vendor)
                            .push_bind(&e.extractor_model).push_bind(e.correlation_id.as_deref())
                            .push_bind(e.pipeline_id.as_deref()).push_bind(e.client_doc_hash.as_deref())
                            .push_bind(&e.layout_fingerprint).push_bind(&e.replay_hash).push_bind(&e.engine_version)
                            .push_bind(&e.request).push_bind(response).push_bind(e.feedback_outcome.as_deref())
                            .push_bind(&e.feedback).push_bind(e.feedback_at);
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                for (i, response) in &rows {
                    if let Some(r) = &batch[*i].idempotency {
                        sqlx::query("UPDATE idempotency_keys SET response = $3 WHERE tenant_id = $1 AND key = $2")
                            .bind(r.tenant_id).bind(&r.key).bind(response)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(stored
                    .into_iter()
                    .zip(change_points)
                    .map(|(s, cps)| if s { WriteOutcome::Stored { change_points: cps } } else { WriteOutcome::Duplicate })
                    .collect())
            }

            async fn get_evaluation(&self, tenant_id: uuid::Uuid, id: uuid::Uuid) -> Result<Option<EvaluationRow>, StoreError> {
                Ok(sqlx::query_as(concat!("SELECT ", evaluation_columns!(), " FROM evaluations WHERE tenant_id = $1 AND id = $2"))
                    .bind(tenant_id).bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_evaluations(&self, tenant_id: uuid::Uuid, f: &EvaluationFilter) -> Result<Vec<EvaluationRow>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ", evaluation_columns!(),
                    " FROM evaluations WHERE tenant_id = $1 \
                     AND ($2 IS NULL OR decision = $2) AND ($3 IS NULL OR template_id = $3) \
                     AND ($4 IS NULL OR correlation_id = $4) AND ($5 IS NULL OR pipeline_id = $5) \
                     AND ($6 IS NULL OR reliability_score >= $6) AND ($7 IS NULL OR drift_score <= $7) \
                     AND ($8 IS NULL OR created_at >= $8) AND ($9 IS NULL OR created_at < $9) \
                     AND ($10 IS NULL OR id < $10) ORDER BY id DESC LIMIT $11"
                ))
                .bind(tenant_id).bind(f.decision.as_deref()).bind(f.template_id.as_deref())
                .bind(f.correlation_id.as_deref()).bind(f.pipeline_id.as_deref()).bind(f.min_reliability)
                .bind(f.max_drift).bind(f.from).bind(f.to).bind(f.before_id).bind(f.limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn apply_feedback(
                &self,
                tenant_id: uuid::Uuid,
                evaluation_id: uuid::Uuid,
                previous_outcome: Option<&str>,
                outcome: &str,
                feedback: &serde_json::Value,
                at: chrono::DateTime<chrono::Utc>,
                template: Option<(&TemplateRow, i64)>,
                idempotency: Option<&IdempotencyRecord>,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin_with(<$store as Dialect>::BEGIN_WRITE).await?;
                if let Some(r) = idempotency {
                    if !insert_idempotency!(&mut *tx, r) {
                        return Err(StoreError::IdempotencyKeyTaken);
                    }
                }
                // The previous outcome is part of the predicate: a concurrent change makes this
                // a no-op and the caller retries, so statistics move exactly once per change.
                let updated = sqlx::query(
                    "UPDATE evaluations SET feedback_outcome = $3, feedback = $4, feedback_at = $5 \
                     WHERE tenant_id = $1 AND id = $2 AND \
                     ((feedback_outcome IS NULL AND $6 IS NULL) OR feedback_outcome = $6)",
                )
                .bind(tenant_id).bind(evaluation_id).bind(outcome).bind(sqlx::types::Json(feedback)).bind(at).bind(previous_outcome)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated != 1 {
                    tx.rollback().await?;
                    return Err(StoreError::Stale("evaluation feedback"));
                }
                if let Some((row, expected)) = template {
                    let revision = bump_revision!(&mut *tx, tenant_id);
                    let saved = sqlx::query(
                        "UPDATE templates SET outcome_stats = $3, revision = $4, updated_at = $5 \
                         WHERE tenant_id = $1 AND id = $2 AND revision = $6",
                    )
                    .bind(tenant_id).bind(row.id).bind(&row.outcome_stats).bind(revision).bind(at).bind(expected)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if saved != 1 {
                        tx.rollback().await?;
                        return Err(StoreError::Stale("template"));
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn find_idempotency(&self, tenant_id: uuid::Uuid, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT tenant_id, key, route, request_hash, status, response, created_at \
                     FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
                )
                .bind(tenant_id).bind(key)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn purge_idempotency(&self, before: chrono::DateTime<chrono::Utc>) -> Result<u64, StoreError> {
                Ok(sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }

            async fn series(&self, tenant_id: uuid::Uuid, tv: uuid::Uuid, from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>, limit: i64) -> Result<Vec<SeriesPoint>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT created_at, similarity, drift_score, reliability_score, extractor_confidence \
                     FROM evaluations WHERE tenant_id = $1 AND template_version_id = $2 \
                     AND created_at >= $3 AND created_at < $4 ORDER BY created_at LIMIT $5",
                )
                .bind(tenant_id).bind(tv).bind(from).bind(to).bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn change_points(&self, tenant_id: uuid::Uuid, tv: uuid::Uuid) -> Result<Vec<ChangePointRow>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, template_version_id, evaluation_id, series, observation, detected_at, \
                     baseline_mean, recent_mean, occurred_at FROM change_points \
                     WHERE tenant_id = $1 AND template_version_id = $2 ORDER BY id",
                )
                .bind(tenant_id).bind(tv)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}

pub(crate) use {
    bump_revision, evaluation_columns, impl_evaluation_store, insert_idempotency, template_columns,
};
