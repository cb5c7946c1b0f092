//! The audit trail: who changed what, appended in the same transaction as the change.
//!
//! Every write that audits ends with [`Tx::commit_with_audit`], so a change is never stored
//! without its audit row nor an audit row without its change. The table is append-only (the
//! database enforces it with triggers or rules, see the migrations).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::sql::{Arg, Query, Tx};
use super::{SqlStore, StoreError};

#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub tenant_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    /// Never a secret: callers pass ids, prefixes, names and counts only.
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub tenant_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: sqlx::types::Json<serde_json::Value>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Return entries with an id below this one (cursor pagination, newest first).
    pub before_id: Option<i64>,
    pub limit: i64,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Records an event that goes with no other change (e.g. a failed sign-in).
    async fn append_audit(&self, event: &NewAuditEvent) -> Result<(), StoreError>;
    async fn list_audit(
        &self,
        tenant_id: Uuid,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEntry>, StoreError>;
}

pub(crate) fn insert(e: &NewAuditEvent) -> Query {
    Query::new(
        "INSERT INTO audit_log \
         (tenant_id, occurred_at, actor, action, target, ip, request_id, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(e.tenant_id)
    .bind(e.occurred_at)
    .bind(&e.actor)
    .bind(&e.action)
    .bind(e.target.as_deref())
    .bind(e.ip.as_deref())
    .bind(e.request_id.as_deref())
    .bind(Arg::json(&e.details))
}

impl Tx {
    /// Appends an audit event to this transaction (for a change that records more than
    /// one event; most end with [`Tx::commit_with_audit`]).
    pub async fn audit(&mut self, event: &NewAuditEvent) -> Result<(), StoreError> {
        self.execute(insert(event)).await?;
        Ok(())
    }

    /// Appends the audit event and commits: the change and its record land together or
    /// not at all.
    pub async fn commit_with_audit(mut self, event: &NewAuditEvent) -> Result<(), StoreError> {
        self.execute(insert(event)).await?;
        self.commit().await
    }

    /// Runs a change of one row: commits it with its audit event when it changed exactly
    /// one row, rolls back (auditing nothing) otherwise. Says whether it committed.
    pub async fn change_one_with_audit(
        mut self,
        change: Query,
        event: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        if self.execute(change).await? != 1 {
            self.rollback().await?;
            return Ok(false);
        }
        self.commit_with_audit(event).await?;
        Ok(true)
    }
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, event: &NewAuditEvent) -> Result<(), StoreError> {
        self.db.execute(insert(event)).await?;
        Ok(())
    }

    async fn list_audit(
        &self,
        tenant_id: Uuid,
        f: &AuditFilter,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.db
            .fetch_all(
                Query::new(
                    "SELECT id, tenant_id, occurred_at, actor, action, target, ip, request_id, \
                     details FROM audit_log WHERE tenant_id = $1 \
                     AND ($2 IS NULL OR action = $2) \
                     AND ($3 IS NULL OR actor = $3) \
                     AND ($4 IS NULL OR occurred_at >= $4) \
                     AND ($5 IS NULL OR occurred_at < $5) \
                     AND ($6 IS NULL OR id < $6) \
                     ORDER BY id DESC LIMIT $7",
                )
                .bind(tenant_id)
                .bind(f.action.as_deref())
                .bind(f.actor.as_deref())
                .bind(f.from)
                .bind(f.to)
                .bind(f.before_id)
                .bind(f.limit),
            )
            .await
    }
}
