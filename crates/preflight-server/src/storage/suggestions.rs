//! Template suggestions in storage: the NEW evaluations a listing clusters, and the
//! decisions operators took on suggestions.
//!
//! Suggestions themselves are not stored: each listing clusters the tenant's NEW
//! evaluations afresh (`domain::suggestions`), so they always reflect the data. What is
//! stored is what must outlive a listing — a dismissal (with the representative's layout, so
//! the same layout stays dismissed when its cluster re-forms under another key) and an
//! acceptance (with its template, and its members, which later listings leave out). An
//! acceptance commits with the template it creates, both audit events and the request's
//! idempotency record, in one transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use preflight_engine::StructuralFeatures;
use sqlx::types::Json;
use uuid::Uuid;

use super::audit::NewAuditEvent;
use super::idempotency::{claim_or_fail, IdempotencyRecord};
use super::sql::{Arg, Query};
use super::templates::{insert_template, TemplateRow};
use super::{SqlStore, StoreError};

/// One NEW evaluation as clustering needs it: the stored request holds its features and
/// extractor (metadata only).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SuggestionInput {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub extractor_vendor: String,
    pub request: Json<serde_json::Value>,
}

/// An operator's decision on a suggestion.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SuggestionDecision {
    pub tenant_id: Uuid,
    pub suggestion_id: String,
    /// `accepted` or `dismissed`.
    pub status: String,
    pub representative_evaluation_id: Uuid,
    pub representative_features: Json<StructuralFeatures>,
    pub layout_fingerprint: String,
    pub size: i64,
    pub template_id: Option<String>,
    pub template_version_id: Option<Uuid>,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
}

const DECISION_COLUMNS: &str = "tenant_id, suggestion_id, status, representative_evaluation_id, \
     representative_features, layout_fingerprint, size, template_id, template_version_id, \
     decided_by, decided_at";

/// Member rows per multi-row insert (3 parameters a row).
const MEMBER_CHUNK: usize = 300;

fn insert_decision(d: &SuggestionDecision) -> Query {
    Query::insert_row(
        "template_suggestion_decisions",
        DECISION_COLUMNS,
        vec![
            d.tenant_id.into(),
            (&d.suggestion_id).into(),
            (&d.status).into(),
            d.representative_evaluation_id.into(),
            Arg::json(&d.representative_features),
            (&d.layout_fingerprint).into(),
            d.size.into(),
            d.template_id.as_deref().into(),
            d.template_version_id.into(),
            (&d.decided_by).into(),
            d.decided_at.into(),
        ],
    )
    .on_duplicate("this suggestion was accepted or dismissed meanwhile")
}

#[async_trait]
pub trait SuggestionStore: Send + Sync {
    /// The tenant's NEW evaluations created in `[from, to)` that are not members of an
    /// accepted suggestion, the `limit` most recent.
    async fn suggestion_inputs(
        &self,
        tenant_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<SuggestionInput>, StoreError>;
    /// Every decision of the tenant, oldest first.
    async fn suggestion_decisions(
        &self,
        tenant_id: Uuid,
    ) -> Result<Vec<SuggestionDecision>, StoreError>;
    async fn suggestion_decision(
        &self,
        tenant_id: Uuid,
        suggestion_id: &str,
    ) -> Result<Option<SuggestionDecision>, StoreError>;
    /// Records a dismissal with its audit event; `Duplicate` if the suggestion was decided
    /// meanwhile.
    async fn dismiss_suggestion(
        &self,
        decision: &SuggestionDecision,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
    /// Creates the template version and records the acceptance with its members, both audit
    /// events and the idempotency record, in one transaction. `Duplicate` when the template
    /// version exists or the suggestion was decided meanwhile (the message says which);
    /// returns the template revision it was stored with.
    #[allow(clippy::too_many_arguments)]
    async fn accept_suggestion(
        &self,
        template: &TemplateRow,
        template_audit: &NewAuditEvent,
        decision: &SuggestionDecision,
        members: &[Uuid],
        audit: &NewAuditEvent,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<i64, StoreError>;
}

#[async_trait]
impl SuggestionStore for SqlStore {
    async fn suggestion_inputs(
        &self,
        tenant_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<SuggestionInput>, StoreError> {
        // Walks (tenant_id, decision, id DESC): newest first, so the cap keeps the most
        // recent, and ids are time-ordered (UUIDv7), so the scan stops at `limit`.
        self.db
            .fetch_all(
                Query::new(
                    "SELECT e.id, e.created_at, e.extractor_vendor, e.request \
                     FROM evaluations e \
                     WHERE e.tenant_id = $1 AND e.decision = 'NEW' \
                     AND e.created_at >= $2 AND e.created_at < $3 \
                     AND NOT EXISTS (SELECT 1 FROM template_suggestion_members m \
                         WHERE m.tenant_id = $1 AND m.evaluation_id = e.id) \
                     ORDER BY e.id DESC LIMIT $4",
                )
                .bind(tenant_id)
                .bind(from)
                .bind(to)
                .bind(limit),
            )
            .await
    }

    async fn suggestion_decisions(
        &self,
        tenant_id: Uuid,
    ) -> Result<Vec<SuggestionDecision>, StoreError> {
        self.db
            .fetch_all(
                Query::new(format!(
                    "SELECT {DECISION_COLUMNS} FROM template_suggestion_decisions \
                     WHERE tenant_id = $1 ORDER BY decided_at, suggestion_id"
                ))
                .bind(tenant_id),
            )
            .await
    }

    async fn suggestion_decision(
        &self,
        tenant_id: Uuid,
        suggestion_id: &str,
    ) -> Result<Option<SuggestionDecision>, StoreError> {
        self.db
            .fetch_optional(
                Query::new(format!(
                    "SELECT {DECISION_COLUMNS} FROM template_suggestion_decisions \
                     WHERE tenant_id = $1 AND suggestion_id = $2"
                ))
                .bind(tenant_id)
                .bind(suggestion_id),
            )
            .await
    }

    async fn dismiss_suggestion(
        &self,
        decision: &SuggestionDecision,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        tx.execute(insert_decision(decision)).await?;
        tx.commit_with_audit(audit).await
    }

    async fn accept_suggestion(
        &self,
        template: &TemplateRow,
        template_audit: &NewAuditEvent,
        decision: &SuggestionDecision,
        members: &[Uuid],
        audit: &NewAuditEvent,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.db.begin_write().await?;
        claim_or_fail(&mut tx, idempotency).await?;
        // The decision first: of two concurrent acceptances (or an acceptance racing a
        // dismissal) one wins here, before anything else is written.
        tx.execute(insert_decision(decision)).await?;
        let revision = insert_template(&mut tx, template).await?;
        for chunk in members.chunks(MEMBER_CHUNK) {
            let q = Query::new(
                "INSERT INTO template_suggestion_members (tenant_id, evaluation_id, suggestion_id) \
                 VALUES ",
            )
            .push_tuples(chunk.iter().map(|id| {
                [
                    Arg::Uuid(decision.tenant_id),
                    Arg::Uuid(*id),
                    (&decision.suggestion_id).into(),
                ]
            }))
            // A member of an earlier accepted suggestion is not an input any more, so this
            // only meets a concurrent acceptance's rows, which the decision insert stopped.
            .on_duplicate("an evaluation of this suggestion was accepted meanwhile");
            tx.execute(q).await?;
        }
        tx.audit(template_audit).await?;
        tx.commit_with_audit(audit).await?;
        Ok(revision)
    }
}
