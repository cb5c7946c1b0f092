//! Stored answers for `Idempotency-Key`s.
//!
//! A key is claimed inside the transaction of the write it protects ([`claim`]), and the
//! answer is stored with it, so a retry finds either nothing (the write did not happen) or
//! the exact answer of the write that did.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::sql::{Arg, Query, Tx};
use super::{SqlStore, StoreError};

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

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    async fn find_idempotency(
        &self,
        tenant_id: Uuid,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// Forgets idempotency records created before `before`; returns how many.
    async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Claims the record's key in `tx`; false when it is taken already (by an earlier or a
/// concurrent request), in which case the caller stores nothing.
pub(super) async fn claim(tx: &mut Tx, r: &IdempotencyRecord) -> Result<bool, StoreError> {
    let inserted = tx
        .execute(
            Query::new(
                "INSERT INTO idempotency_keys \
                 (tenant_id, key, route, request_hash, status, response, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, key) DO NOTHING",
            )
            .bind(r.tenant_id)
            .bind(&r.key)
            .bind(&r.route)
            .bind(&r.request_hash)
            .bind(r.status)
            .bind(Arg::json(&r.response))
            .bind(r.created_at),
        )
        .await?;
    Ok(inserted == 1)
}

/// [`claim`], failing with [`StoreError::IdempotencyKeyTaken`] when the key is taken.
pub(super) async fn claim_or_fail(
    tx: &mut Tx,
    r: Option<&IdempotencyRecord>,
) -> Result<(), StoreError> {
    match r {
        Some(r) if !claim(tx, r).await? => Err(StoreError::IdempotencyKeyTaken),
        _ => Ok(()),
    }
}

#[async_trait]
impl IdempotencyStore for SqlStore {
    async fn find_idempotency(
        &self,
        tenant_id: Uuid,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.db
            .fetch_optional(
                Query::new(
                    "SELECT tenant_id, key, route, request_hash, status, response, created_at \
                     FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
                )
                .bind(tenant_id)
                .bind(key),
            )
            .await
    }

    async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.db
            .execute(Query::new("DELETE FROM idempotency_keys WHERE created_at < $1").bind(before))
            .await
    }
}
