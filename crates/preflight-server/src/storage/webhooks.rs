//! Webhook endpoints, deliveries and their attempts, in storage.
//!
//! A delivery row is written in the transaction that raised its alert ([`insert_deliveries`],
//! called by the evaluation commit), so an event can never be lost between the commit and
//! the queue. The delivery worker claims due rows with a lease ([`WebhookStore::claim_deliveries`]:
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas share the queue without sending a row
//! twice at once); a lease that runs out (the process died mid-delivery) makes the row due
//! again. A row is claimable only when no earlier undelivered row of the same endpoint and
//! ordering key exists, which keeps each template's events in order at each receiver.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::alerts::{insert_alerts_with_deliveries, NewAlert};
use super::audit::NewAuditEvent;
use super::sql::{Arg, Query, Tx};
use super::{SqlStore, StoreError};

/// A tenant's webhook endpoint. Secrets are sealed; the domain opens them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub url: String,
    pub description: Option<String>,
    /// Comma-separated metrics; empty: every metric.
    pub metrics: String,
    pub min_severity: String,
    pub template_id: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub secret_sealed: String,
    pub previous_secret_sealed: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Kept by the delivery worker ([`WebhookStore::finish_attempt`]); a change to the
    /// endpoint never writes it.
    #[sqlx(flatten)]
    pub health: EndpointHealth,
}

/// How an endpoint's deliveries have been going, for the circuit breaker and auto-disable.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow, Serialize, ToSchema)]
pub struct EndpointHealth {
    /// Failed attempts since the last success.
    pub consecutive_failures: i32,
    /// The first failed attempt since the last success.
    pub failing_since: Option<DateTime<Utc>>,
    /// Set once the circuit tripped: while in the future, nothing is sent to the endpoint
    /// but one probe after it; cleared by a success.
    pub circuit_open_until: Option<DateTime<Utc>>,
}

/// What the domain makes of one finished attempt, applied by [`WebhookStore::finish_attempt`]
/// in the transaction that records it.
pub trait AttemptEffects: Send + Sync {
    /// The delivery's next step.
    fn step(&self) -> &DeliveryStep;
    /// The endpoint's health after this attempt (read under its row lock), and the reason
    /// to disable it, if this attempt should.
    fn health(&self, before: &EndpointHealth) -> (EndpointHealth, Option<String>);
    /// The alert telling the tenant the endpoint was disabled, routed like any alert.
    fn disabled_alert(&self, reason: &str) -> NewAlert;
    fn deliveries(&self, alert: &mut NewAlert, endpoints: &[EndpointRow]) -> Vec<NewDelivery>;
}

/// A delivery to write with the alert that caused it.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub endpoint_id: Uuid,
    pub event_id: Uuid,
    pub event_type: &'static str,
    pub ordering_key: String,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// A delivery as its endpoint's log shows it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, ToSchema)]
pub struct DeliveryRow {
    #[serde(skip)]
    pub seq: i64,
    pub id: Uuid,
    pub endpoint_id: Uuid,
    /// The `webhook-id` header: the alert's id.
    pub event_id: Uuid,
    pub event_type: String,
    /// `pending`, `sending`, `delivered` or `failed` (retries exhausted, or the receiver
    /// answered 410 Gone).
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    /// The receiver's last HTTP status, if it answered.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// One attempt, as the delivery log shows it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, ToSchema)]
pub struct AttemptRow {
    #[serde(skip)]
    pub id: i64,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub latency_ms: f64,
    pub error: Option<String>,
    /// The first kilobyte of the receiver's answer.
    pub response_excerpt: String,
}

/// A due delivery, first of its ordering key, as a claim finds it (in queue order).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DueDelivery {
    pub seq: i64,
    pub endpoint_id: Uuid,
    /// The endpoint's circuit tripped (and its cooldown is over).
    pub tripped: bool,
}

/// Which of the due deliveries a claim takes, by index: the domain's circuit-breaker rule,
/// applied inside the claiming transaction.
pub type ChooseClaims = dyn Fn(&[DueDelivery]) -> Vec<usize> + Send + Sync;

#[derive(sqlx::FromRow)]
struct EndpointHealthWithState {
    #[sqlx(flatten)]
    health: EndpointHealth,
    enabled: bool,
}

/// A due delivery claimed by the worker, with what sending it needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub seq: i64,
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub endpoint_id: Uuid,
    pub event_id: Uuid,
    pub payload: Json<serde_json::Value>,
    /// Attempts including this one.
    pub attempts: i32,
    pub url: String,
    pub secret_sealed: String,
    pub previous_secret_sealed: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
}

/// What became of an attempt, decided by the domain's retry policy.
#[derive(Debug, Clone)]
pub enum DeliveryStep {
    Delivered,
    /// Try again at this time.
    Retry(DateTime<Utc>),
    /// Given up (retries exhausted).
    Failed,
    /// Given up, and the endpoint is disabled for this reason (e.g. 410 Gone).
    FailedAndDisable(String),
}

/// The attempt's record, for the log.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub latency_ms: f64,
    pub error: Option<String>,
    pub response_excerpt: String,
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn create_endpoint(
        &self,
        e: &EndpointRow,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
    async fn list_endpoints(&self, tenant_id: Uuid) -> Result<Vec<EndpointRow>, StoreError>;
    async fn get_endpoint(
        &self,
        tenant_id: Uuid,
        id: Uuid,
    ) -> Result<Option<EndpointRow>, StoreError>;
    /// Saves every field; false when the endpoint no longer exists.
    async fn save_endpoint(
        &self,
        e: &EndpointRow,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    async fn delete_endpoint(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    /// An endpoint's deliveries (of one status, or all), newest first.
    async fn list_deliveries(
        &self,
        tenant_id: Uuid,
        endpoint_id: Uuid,
        status: Option<&str>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, StoreError>;
    async fn get_delivery(
        &self,
        tenant_id: Uuid,
        endpoint_id: Uuid,
        id: Uuid,
    ) -> Result<Option<DeliveryRow>, StoreError>;
    async fn list_attempts(
        &self,
        tenant_id: Uuid,
        delivery_id: Uuid,
    ) -> Result<Vec<AttemptRow>, StoreError>;
    /// Makes a delivered or failed delivery due again now; false when there is no such
    /// delivery of this endpoint, or it is still pending.
    async fn redeliver(
        &self,
        tenant_id: Uuid,
        endpoint_id: Uuid,
        delivery_id: Uuid,
        at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    /// Makes the endpoint's delivered or failed deliveries (of `status`, or both) created
    /// in `[from, to)` due again now; how many.
    #[allow(clippy::too_many_arguments)]
    async fn redeliver_range(
        &self,
        tenant_id: Uuid,
        endpoint_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        status: Option<&str>,
        at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<u64, StoreError>;
    /// Claims up to `limit` due deliveries (of enabled endpoints, first of their ordering
    /// key) until `lease_until`.
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        choose: &ChooseClaims,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// Records an attempt and what it led to, with the endpoint's health (which may
    /// disable it, raising an alert); the alert's delivery status follows.
    async fn finish_attempt(
        &self,
        claimed: &ClaimedDelivery,
        attempt: &AttemptRecord,
        effects: &dyn AttemptEffects,
    ) -> Result<(), StoreError>;
    /// Forgets an endpoint's failures (it was enabled again by the tenant).
    async fn reset_endpoint_health(&self, tenant_id: Uuid, id: Uuid) -> Result<(), StoreError>;
    /// Deliveries waiting to be sent (of one tenant, or all), and when the oldest was
    /// queued.
    async fn delivery_backlog(
        &self,
        tenant_id: Option<Uuid>,
    ) -> Result<(i64, Option<DateTime<Utc>>), StoreError>;
}

const ENDPOINT_COLUMNS: &str = "id, tenant_id, url, description, metrics, min_severity, \
     template_id, enabled, disabled_reason, secret_sealed, previous_secret_sealed, \
     previous_secret_until, created_at, updated_at";

/// What an endpoint is read with: its columns and its health.
fn endpoint_select() -> String {
    format!("{ENDPOINT_COLUMNS}, consecutive_failures, failing_since, circuit_open_until")
}

const DELIVERY_COLUMNS: &str = "seq, id, endpoint_id, event_id, event_type, status, attempts, \
     next_attempt_at, last_status, last_error, delivered_at, created_at";

/// The enabled endpoints of these tenants, for matching the alerts a commit raises.
pub(super) async fn enabled_endpoints(
    tx: &mut Tx,
    tenant_ids: &[Uuid],
) -> Result<Vec<EndpointRow>, StoreError> {
    if tenant_ids.is_empty() {
        return Ok(Vec::new());
    }
    let q = Query::new(format!(
        "SELECT {} FROM webhook_endpoints WHERE enabled AND tenant_id IN (",
        endpoint_select()
    ))
    .push_list(tenant_ids.iter().map(|t| Arg::Uuid(*t)))
    .push(")");
    tx.fetch_all(q).await
}

/// Rows per multi-row delivery INSERT (10 parameters a row).
const DELIVERY_CHUNK: usize = 100;

pub(super) async fn insert_deliveries(tx: &mut Tx, rows: &[NewDelivery]) -> Result<(), StoreError> {
    for chunk in rows.chunks(DELIVERY_CHUNK) {
        let q = Query::new(
            "INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, event_type, \
             ordering_key, payload, status, attempts, next_attempt_at, created_at) VALUES ",
        )
        .push_tuples(chunk.iter().map(|d| {
            vec![
                d.id.into(),
                d.tenant_id.into(),
                d.endpoint_id.into(),
                d.event_id.into(),
                d.event_type.into(),
                (&d.ordering_key).into(),
                Arg::json(&d.payload),
                "pending".into(),
                0i32.into(),
                d.created_at.into(),
                d.created_at.into(),
            ]
        }));
        tx.execute(q).await?;
    }
    Ok(())
}

/// An endpoint's values in [`ENDPOINT_COLUMNS`] order.
fn endpoint_values(e: &EndpointRow) -> Vec<Arg> {
    vec![
        e.id.into(),
        e.tenant_id.into(),
        (&e.url).into(),
        e.description.as_deref().into(),
        (&e.metrics).into(),
        (&e.min_severity).into(),
        e.template_id.as_deref().into(),
        e.enabled.into(),
        e.disabled_reason.as_deref().into(),
        (&e.secret_sealed).into(),
        e.previous_secret_sealed.as_deref().into(),
        e.previous_secret_until.into(),
        e.created_at.into(),
        e.updated_at.into(),
    ]
}

#[async_trait]
impl WebhookStore for SqlStore {
    async fn create_endpoint(
        &self,
        e: &EndpointRow,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        tx.execute(Query::insert_row(
            "webhook_endpoints",
            ENDPOINT_COLUMNS,
            endpoint_values(e),
        ))
        .await?;
        tx.commit_with_audit(audit).await
    }

    async fn list_endpoints(&self, tenant_id: Uuid) -> Result<Vec<EndpointRow>, StoreError> {
        self.db
            .fetch_all(Query::tenant_rows(
                &endpoint_select(),
                "webhook_endpoints",
                tenant_id,
            ))
            .await
    }

    async fn get_endpoint(
        &self,
        tenant_id: Uuid,
        id: Uuid,
    ) -> Result<Option<EndpointRow>, StoreError> {
        self.db
            .fetch_optional(Query::tenant_row(
                &endpoint_select(),
                "webhook_endpoints",
                tenant_id,
                id,
            ))
            .await
    }

    async fn save_endpoint(
        &self,
        e: &EndpointRow,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().await?;
        tx.change_one_with_audit(
            Query::update_tenant_row("webhook_endpoints", ENDPOINT_COLUMNS, endpoint_values(e)),
            audit,
        )
        .await
    }

    async fn delete_endpoint(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().await?;
        tx.change_one_with_audit(
            Query::delete_tenant_row("webhook_endpoints", tenant_id, id),
            audit,
        )
        .await
    }

    async fn list_deliveries(
        &self,
        tenant_id: Uuid,
        endpoint_id: Uuid,
        status: Option<&str>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        self.db
            .fetch_all(
                Query::new(format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
                     WHERE tenant_id = $1 AND endpoint_id = $2 AND ($3 IS NULL OR seq < $3) \
                     AND ($5 IS NULL OR status = $5) ORDER BY seq DESC LIMIT $4"
                ))
                .bind(tenant_id)
                .bind(endpoint_id)
                .bind(before_seq)
                .bind(limit)
                .bind(status),
            )
            .await
    }

    async fn redeliver_range(
        &self,
        tenant_id: Uuid,
        endpoint_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        status: Option<&str>,
        at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<u64, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let queued = tx
            .execute(
                Query::new(
                    "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $6, \
                     locked_until = NULL WHERE tenant_id = $1 AND endpoint_id = $2 \
                     AND created_at >= $3 AND created_at < $4 \
                     AND status IN ('delivered', 'failed') AND ($5 IS NULL OR status = $5)",
                )
                .bind(tenant_id)
                .bind(endpoint_id)
                .bind(from)
                .bind(to)
                .bind(status)
                .bind(at),
            )
            .await?;
        if queued == 0 {
            tx.rollback().await?;
            return Ok(0);
        }
        let audit = NewAuditEvent {
            details: serde_json::json!({"queued": queued, "from": from, "to": to, "status": status}),
            ..audit.clone()
        };
        tx.commit_with_audit(&audit).await?;
        Ok(queued)
    }

    async fn get_delivery(
        &self,
        tenant_id: Uuid,
        endpoint_id: Uuid,
        id: Uuid,
    ) -> Result<Option<DeliveryRow>, StoreError> {
        self.db
            .fetch_optional(
                Query::new(format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
                     WHERE tenant_id = $1 AND endpoint_id = $2 AND id = $3"
                ))
                .bind(tenant_id)
                .bind(endpoint_id)
                .bind(id),
            )
            .await
    }

    async fn list_attempts(
        &self,
        tenant_id: Uuid,
        delivery_id: Uuid,
    ) -> Result<Vec<AttemptRow>, StoreError> {
        self.db
            .fetch_all(
                Query::new(
                    "SELECT id, attempted_at, status_code, latency_ms, error, response_excerpt \
                     FROM webhook_attempts WHERE tenant_id = $1 AND delivery_id = $2 ORDER BY id",
                )
                .bind(tenant_id)
                .bind(delivery_id),
            )
            .await
    }

    async fn redeliver(
        &self,
        tenant_id: Uuid,
        endpoint_id: Uuid,
        delivery_id: Uuid,
        at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().await?;
        tx.change_one_with_audit(
            Query::new(
                "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $4, \
                 locked_until = NULL WHERE tenant_id = $1 AND endpoint_id = $2 AND id = $3 \
                 AND status IN ('delivered', 'failed')",
            )
            .bind(tenant_id)
            .bind(endpoint_id)
            .bind(delivery_id)
            .bind(at),
            audit,
        )
        .await
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        choose: &ChooseClaims,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let mut tx = self.db.begin_write().await?;
        // The endpoint rows are locked too, so two replicas never both send a probe to a
        // tripped endpoint.
        let skip_locked = tx.backend().skip_locked("d, w");
        let due: Vec<DueDelivery> = tx
            .fetch_all(
                Query::new(format!(
                    "SELECT d.seq, d.endpoint_id, w.circuit_open_until IS NOT NULL AS tripped \
                     FROM webhook_deliveries d \
                     JOIN webhook_endpoints w ON w.id = d.endpoint_id AND w.tenant_id = d.tenant_id \
                     WHERE w.enabled AND (w.circuit_open_until IS NULL OR w.circuit_open_until <= $1) \
                     AND ((d.status = 'pending' AND d.next_attempt_at <= $1) \
                          OR (d.status = 'sending' AND d.locked_until < $1)) \
                     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e \
                         WHERE e.endpoint_id = d.endpoint_id AND e.ordering_key = d.ordering_key \
                         AND e.seq < d.seq AND e.status IN ('pending', 'sending')) \
                     ORDER BY d.seq LIMIT $2{skip_locked}"
                ))
                .bind(now)
                .bind(limit),
            )
            .await?;
        let chosen: Vec<&DueDelivery> = choose(&due)
            .into_iter()
            .filter_map(|i| due.get(i))
            .collect();
        let claimed: Vec<i64> = chosen.iter().map(|d| d.seq).collect();
        // A tripped endpoint's circuit stays shut to other claims until its probe is
        // finished.
        let probed: Vec<Uuid> = chosen
            .iter()
            .filter(|d| d.tripped)
            .map(|d| d.endpoint_id)
            .collect();
        if claimed.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        tx.execute(
            Query::new(
                "UPDATE webhook_deliveries SET status = 'sending', locked_until = $1, \
                 attempts = attempts + 1 WHERE seq IN (",
            )
            .bind(lease_until)
            .push_list(claimed.iter().map(|s| Arg::I64(*s)))
            .push(")"),
        )
        .await?;
        if !probed.is_empty() {
            tx.execute(
                Query::new("UPDATE webhook_endpoints SET circuit_open_until = $1 WHERE id IN (")
                    .bind(lease_until)
                    .push_list(probed.iter().map(|e| Arg::Uuid(*e)))
                    .push(")"),
            )
            .await?;
        }
        let rows: Vec<ClaimedDelivery> = tx
            .fetch_all(
                Query::new(
                    "SELECT d.seq, d.id, d.tenant_id, d.endpoint_id, d.event_id, d.payload, \
                     d.attempts, w.url, w.secret_sealed, w.previous_secret_sealed, \
                     w.previous_secret_until FROM webhook_deliveries d \
                     JOIN webhook_endpoints w ON w.id = d.endpoint_id AND w.tenant_id = d.tenant_id \
                     WHERE d.seq IN (",
                )
                .push_list(claimed.iter().map(|s| Arg::I64(*s)))
                .push(") ORDER BY d.seq"),
            )
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    async fn finish_attempt(
        &self,
        c: &ClaimedDelivery,
        a: &AttemptRecord,
        effects: &dyn AttemptEffects,
    ) -> Result<(), StoreError> {
        let step = effects.step();
        let mut tx = self.db.begin_write().await?;
        tx.execute(
            Query::new(
                "INSERT INTO webhook_attempts (tenant_id, delivery_id, attempted_at, status_code, \
                 latency_ms, error, response_excerpt) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(c.tenant_id)
            .bind(c.id)
            .bind(a.at)
            .bind(a.status_code)
            .bind(a.latency_ms)
            .bind(a.error.as_deref())
            .bind(&a.response_excerpt),
        )
        .await?;
        let (status, next, delivered_at) = match step {
            DeliveryStep::Delivered => ("delivered", a.at, Some(a.at)),
            DeliveryStep::Retry(at) => ("pending", *at, None),
            DeliveryStep::Failed | DeliveryStep::FailedAndDisable(_) => ("failed", a.at, None),
        };
        tx.execute(
            Query::new(
                "UPDATE webhook_deliveries SET status = $3, next_attempt_at = $4, \
                 locked_until = NULL, last_status = $5, last_error = $6, \
                 delivered_at = COALESCE($7, delivered_at) \
                 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(c.tenant_id)
            .bind(c.id)
            .bind(status)
            .bind(next)
            .bind(a.status_code)
            .bind(a.error.as_deref())
            .bind(delivered_at),
        )
        .await?;
        let lock = tx.backend().lock_row();
        let before: Option<(EndpointHealth, bool)> = tx
            .fetch_all::<EndpointHealthWithState>(
                Query::new(format!(
                    "SELECT consecutive_failures, failing_since, circuit_open_until, enabled \
                     FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2{lock}"
                ))
                .bind(c.tenant_id)
                .bind(c.endpoint_id),
            )
            .await?
            .into_iter()
            .next()
            .map(|r| (r.health, r.enabled));
        if let Some((before, enabled)) = before {
            let (after, disable) = effects.health(&before);
            tx.execute(
                Query::new(
                    "UPDATE webhook_endpoints SET consecutive_failures = $3, failing_since = $4, \
                     circuit_open_until = $5 WHERE tenant_id = $1 AND id = $2",
                )
                .bind(c.tenant_id)
                .bind(c.endpoint_id)
                .bind(after.consecutive_failures)
                .bind(after.failing_since)
                .bind(after.circuit_open_until),
            )
            .await?;
            if let (Some(reason), true) = (disable, enabled) {
                tx.execute(
                    Query::new(
                        "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $3, \
                         updated_at = $4 WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(c.tenant_id)
                    .bind(c.endpoint_id)
                    .bind(reason.as_str())
                    .bind(a.at),
                )
                .await?;
                // Read after the change: the disabled endpoint is not among those told.
                let alert = effects.disabled_alert(&reason);
                insert_alerts_with_deliveries(&mut tx, vec![((), alert)], |(), a, e| {
                    effects.deliveries(a, e)
                })
                .await?;
            }
        }
        // The alert's delivery status summarizes its deliveries.
        tx.execute(
            Query::new(
                "UPDATE alerts SET delivery_status = CASE \
                   WHEN EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.tenant_id = $1 \
                       AND d.event_id = $2 AND d.status = 'failed') THEN 'failed' \
                   WHEN EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.tenant_id = $1 \
                       AND d.event_id = $2 AND d.status IN ('pending', 'sending')) THEN 'pending' \
                   ELSE 'delivered' END \
                 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(c.tenant_id)
            .bind(c.event_id),
        )
        .await?;
        tx.commit().await
    }

    async fn delivery_backlog(
        &self,
        tenant_id: Option<Uuid>,
    ) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
        // Without a tenant (the process's gauges), only a count and a time leave.
        let (count,): (i64,) = self
            .db
            .fetch_one(
                Query::new(
                    "SELECT COUNT(*) FROM webhook_deliveries \
                     WHERE status IN ('pending', 'sending') AND ($1 IS NULL OR tenant_id = $1)",
                )
                .bind(tenant_id),
            )
            .await?;
        let oldest: Option<(DateTime<Utc>,)> = self
            .db
            .fetch_optional(
                Query::new(
                    "SELECT created_at FROM webhook_deliveries \
                     WHERE status IN ('pending', 'sending') AND ($1 IS NULL OR tenant_id = $1) \
                     ORDER BY seq LIMIT 1",
                )
                .bind(tenant_id),
            )
            .await?;
        Ok((count, oldest.map(|(t,)| t)))
    }

    async fn reset_endpoint_health(&self, tenant_id: Uuid, id: Uuid) -> Result<(), StoreError> {
        self.db
            .execute(
                Query::new(
                    "UPDATE webhook_endpoints SET consecutive_failures = 0, failing_since = NULL, \
                     circuit_open_until = NULL WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant_id)
                .bind(id),
            )
            .await?;
        Ok(())
    }
}
