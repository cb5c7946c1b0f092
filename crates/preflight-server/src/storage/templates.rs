//! Template versions in storage, and the per-tenant revision that keeps replicas in step.
//!
//! Every template change bumps its tenant's `template_revision` in the same transaction and
//! stamps the changed row with the new value, so "what changed since revision N" is one
//! indexed query. Metadata is saved with an optimistic check on the row's revision: a
//! concurrent edit makes the save fail as [`StoreError::Stale`] instead of being lost. The
//! group-commit writer updates the detector columns of the same rows under a row lock; the
//! two never write the same columns.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use preflight_engine::{DriftDetectorState, ExtractorIdentity, OutcomeStats, StructuralFeatures};
use sqlx::types::Json;
use uuid::Uuid;

use super::audit::NewAuditEvent;
use super::idempotency::{claim_or_fail, IdempotencyRecord};
use super::sql::{Arg, Query, Tx};
use super::{SqlStore, StoreError};

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
    /// The extractors this version has seen on confirmed documents (empty: not known yet).
    pub seen_extractors: Json<BTreeSet<ExtractorIdentity>>,
    pub evaluation_count: i64,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct TemplateFilter {
    pub status: Option<String>,
    pub template_id: Option<String>,
    pub after_id: Option<Uuid>,
    pub limit: i64,
}

#[async_trait]
pub trait TemplateStore: Send + Sync {
    async fn template_revision(&self, tenant_id: Uuid) -> Result<i64, StoreError>;
    /// The current template revision of each of these tenants, in one round trip per
    /// [`REVISIONS_CHUNK`] tenants; tenants that do not exist are left out.
    async fn template_revisions(&self, tenant_ids: &[Uuid])
        -> Result<Vec<(Uuid, i64)>, StoreError>;
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
    /// Inserts a template version; `Duplicate` when `(template_id, version)` exists,
    /// `IdempotencyKeyTaken` when the key was claimed meanwhile. Returns the revision it was
    /// stored with.
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
}

/// What a `Duplicate` from inserting a template version says (the version exists).
pub const TEMPLATE_VERSION_EXISTS: &str = "this template_id and version exist already";

/// Tenants per revision query: far below both backends' bound-parameter limits, and one
/// query still serves a replica's whole cache in the common case.
pub const REVISIONS_CHUNK: usize = 500;

const TEMPLATE_COLUMNS: &str = "id, tenant_id, template_id, version, name, description, status, \
     baseline_reliability, correction_rules, exemplars, outcome_stats, detector_state, \
     evaluation_count, revision, created_at, updated_at, seen_extractors";

fn select(condition: &str) -> Query {
    Query::new(format!(
        "SELECT {TEMPLATE_COLUMNS} FROM templates WHERE {condition}"
    ))
}

/// Moves the tenant's template revision on; returns the new value, to stamp the changed row.
pub(super) async fn bump_revision(tx: &mut Tx, tenant_id: Uuid) -> Result<i64, StoreError> {
    let (revision,): (i64,) = tx
        .fetch_one(
            Query::new(
                "UPDATE tenants SET template_revision = template_revision + 1 WHERE id = $1 \
                 RETURNING template_revision",
            )
            .bind(tenant_id),
        )
        .await?;
    Ok(revision)
}

/// Inserts a new version in a write transaction, moving its tenant's revision on; returns the
/// revision it was stored with. `Duplicate` when `(template_id, version)` exists. Shared by
/// the plain creation and by creations that commit more with it (an accepted suggestion).
pub(crate) async fn insert_template(tx: &mut Tx, row: &TemplateRow) -> Result<i64, StoreError> {
    let revision = bump_revision(tx, row.tenant_id).await?;
    tx.execute(
        Query::new(format!(
            "INSERT INTO templates ({TEMPLATE_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        ))
        .bind(row.id)
        .bind(row.tenant_id)
        .bind(&row.template_id)
        .bind(row.version)
        .bind(row.name.as_deref())
        .bind(row.description.as_deref())
        .bind(&row.status)
        .bind(row.baseline_reliability)
        .bind(Arg::json(&row.correction_rules))
        .bind(Arg::json(&row.exemplars))
        .bind(Arg::json(&row.outcome_stats))
        .bind(Arg::json(&row.detector_state))
        .bind(row.evaluation_count)
        .bind(revision)
        .bind(row.created_at)
        .bind(row.updated_at)
        .bind(Arg::json(&row.seen_extractors))
        .on_duplicate(TEMPLATE_VERSION_EXISTS),
    )
    .await?;
    Ok(revision)
}

#[async_trait]
impl TemplateStore for SqlStore {
    async fn template_revision(&self, tenant_id: Uuid) -> Result<i64, StoreError> {
        let revision: Option<(i64,)> = self
            .db
            .fetch_optional(
                Query::new("SELECT template_revision FROM tenants WHERE id = $1").bind(tenant_id),
            )
            .await?;
        Ok(revision.map_or(0, |(r,)| r))
    }

    async fn template_revisions(
        &self,
        tenant_ids: &[Uuid],
    ) -> Result<Vec<(Uuid, i64)>, StoreError> {
        let mut revisions = Vec::with_capacity(tenant_ids.len());
        for chunk in tenant_ids.chunks(REVISIONS_CHUNK) {
            let q = Query::new("SELECT id, template_revision FROM tenants WHERE id IN (")
                .push_list(chunk.iter().map(|id| Arg::Uuid(*id)))
                .push(")");
            revisions.extend(self.db.fetch_all::<(Uuid, i64)>(q).await?);
        }
        Ok(revisions)
    }

    async fn templates_changed_since(
        &self,
        tenant_id: Uuid,
        revision: i64,
    ) -> Result<Vec<TemplateRow>, StoreError> {
        self.db
            .fetch_all(
                select("tenant_id = $1 AND revision > $2 ORDER BY revision")
                    .bind(tenant_id)
                    .bind(revision),
            )
            .await
    }

    async fn get_template(
        &self,
        tenant_id: Uuid,
        id: Uuid,
    ) -> Result<Option<TemplateRow>, StoreError> {
        self.db
            .fetch_optional(
                select("tenant_id = $1 AND id = $2")
                    .bind(tenant_id)
                    .bind(id),
            )
            .await
    }

    async fn find_template(
        &self,
        tenant_id: Uuid,
        template_id: &str,
        version: Option<i64>,
    ) -> Result<Option<TemplateRow>, StoreError> {
        self.db
            .fetch_optional(
                select(
                    "tenant_id = $1 AND template_id = $2 AND ($3 IS NULL OR version = $3) \
                     ORDER BY version DESC LIMIT 1",
                )
                .bind(tenant_id)
                .bind(template_id)
                .bind(version),
            )
            .await
    }

    async fn max_template_version(
        &self,
        tenant_id: Uuid,
        template_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        let (max,): (Option<i64>,) = self
            .db
            .fetch_one(
                Query::new(
                    "SELECT MAX(version) FROM templates WHERE tenant_id = $1 AND template_id = $2",
                )
                .bind(tenant_id)
                .bind(template_id),
            )
            .await?;
        Ok(max)
    }

    async fn list_templates(
        &self,
        tenant_id: Uuid,
        f: &TemplateFilter,
    ) -> Result<Vec<TemplateRow>, StoreError> {
        self.db
            .fetch_all(
                select(
                    "tenant_id = $1 AND ($2 IS NULL OR status = $2) \
                     AND ($3 IS NULL OR template_id = $3) AND ($4 IS NULL OR id > $4) \
                     ORDER BY id LIMIT $5",
                )
                .bind(tenant_id)
                .bind(f.status.as_deref())
                .bind(f.template_id.as_deref())
                .bind(f.after_id)
                .bind(f.limit),
            )
            .await
    }

    async fn count_templates(&self, tenant_id: Uuid, status: &str) -> Result<i64, StoreError> {
        let (count,): (i64,) = self
            .db
            .fetch_one(
                Query::new("SELECT COUNT(*) FROM templates WHERE tenant_id = $1 AND status = $2")
                    .bind(tenant_id)
                    .bind(status),
            )
            .await?;
        Ok(count)
    }

    async fn create_template(
        &self,
        row: &TemplateRow,
        audit: &NewAuditEvent,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.db.begin_write().await?;
        claim_or_fail(&mut tx, idempotency).await?;
        let revision = insert_template(&mut tx, row).await?;
        tx.commit_with_audit(audit).await?;
        Ok(revision)
    }

    async fn save_template(
        &self,
        row: &TemplateRow,
        expected_revision: i64,
        audit: &NewAuditEvent,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.db.begin_write().await?;
        claim_or_fail(&mut tx, idempotency).await?;
        let revision = bump_revision(&mut tx, row.tenant_id).await?;
        let updated = tx
            .execute(
                Query::new(
                    "UPDATE templates SET name = $3, description = $4, status = $5, \
                     baseline_reliability = $6, correction_rules = $7, exemplars = $8, \
                     outcome_stats = $9, revision = $10, updated_at = $11, seen_extractors = $13 \
                     WHERE tenant_id = $1 AND id = $2 AND revision = $12",
                )
                .bind(row.tenant_id)
                .bind(row.id)
                .bind(row.name.as_deref())
                .bind(row.description.as_deref())
                .bind(&row.status)
                .bind(row.baseline_reliability)
                .bind(Arg::json(&row.correction_rules))
                .bind(Arg::json(&row.exemplars))
                .bind(Arg::json(&row.outcome_stats))
                .bind(revision)
                .bind(row.updated_at)
                .bind(expected_revision)
                .bind(Arg::json(&row.seen_extractors)),
            )
            .await?;
        if updated != 1 {
            tx.rollback().await?;
            return Err(StoreError::Stale("template"));
        }
        tx.commit_with_audit(audit).await?;
        Ok(revision)
    }
}
