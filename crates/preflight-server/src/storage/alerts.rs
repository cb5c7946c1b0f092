//! Alert rules and alerts in storage.
//!
//! Alerts are written inside the transaction of the evaluation batch that raised them
//! ([`insert_alerts`], called by the group-commit writer), so an alert exists exactly when
//! its evaluation does: an outbox, which webhook delivery reads. While an alert is not
//! resolved, a repeat firing with the same `dedupe_key` counts as one more occurrence of it
//! (a partial unique index enforces one unresolved alert per key, on both backends).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::audit::NewAuditEvent;
use super::sql::{Arg, Query, Tx};
use super::webhooks::{enabled_endpoints, insert_deliveries, EndpointRow, NewDelivery};
use super::{SqlStore, StoreError};

/// A tenant's alert rule. Strings hold the domain's enums by their wire names.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AlertRuleRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub metric: String,
    pub operator: Option<String>,
    pub threshold: Option<f64>,
    pub severity: String,
    pub template_id: Option<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Window metrics only.
    pub window_seconds: Option<i32>,
    pub min_volume: Option<i32>,
    /// Moved only by the window check ([`AlertStore::commit_window_check`]), never by a
    /// change to the rule.
    pub checked_until: Option<DateTime<Utc>>,
}

/// An alert an evaluation raises, before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub rule_id: Option<Uuid>,
    pub rule_name: String,
    pub metric: &'static str,
    pub severity: &'static str,
    pub dedupe_key: String,
    pub template_id: Option<String>,
    pub template_version_id: Option<Uuid>,
    /// `None` for an alert no single evaluation raised (a window rule, a disabled
    /// endpoint).
    pub evaluation_id: Option<Uuid>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub message: String,
    pub details: serde_json::Value,
    pub delivery_status: &'static str,
    pub created_at: DateTime<Utc>,
}

/// A stored alert, as the API shows it too. Strings hold the domain's enums by their wire
/// names.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, ToSchema)]
#[schema(as = AlertRecord)]
pub struct AlertRow {
    pub id: Uuid,
    #[serde(skip)]
    pub tenant_id: Uuid,
    /// `None` for a built-in rule.
    pub rule_id: Option<Uuid>,
    pub rule_name: String,
    /// `drift`, `reliability`, `unknown_provider`, `change_point`, `extractor_changed`,
    /// `new_rate`, `reject_rate`, `review_rate`, `automation_rate` or `endpoint_disabled`.
    pub metric: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    #[serde(skip)]
    pub dedupe_key: String,
    pub template_id: Option<String>,
    pub template_version_id: Option<Uuid>,
    /// The evaluation that raised it first, and the latest one that raised it again;
    /// `null` for a window rule's alert (its `details` name the window) and a disabled
    /// endpoint's.
    pub evaluation_id: Option<Uuid>,
    pub last_evaluation_id: Option<Uuid>,
    /// The value that crossed the threshold (the recent mean for a change point).
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub message: String,
    #[schema(value_type = Object)]
    pub details: Json<serde_json::Value>,
    /// How many evaluations (or window checks) raised it while it was not resolved.
    pub occurrences: i64,
    /// `no_endpoint`, `pending`, `delivered` or `failed`.
    pub delivery_status: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub status: Option<String>,
    pub severity: Option<String>,
    pub metric: Option<String>,
    pub delivery_status: Option<String>,
    pub template_id: Option<String>,
    pub before_id: Option<Uuid>,
    pub limit: i64,
}

/// How an alert leaves `open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertTransition {
    /// `open` → `acknowledged`.
    Acknowledge,
    /// `open` or `acknowledged` → `resolved`.
    Resolve,
}

#[async_trait]
pub trait AlertStore: Send + Sync {
    async fn create_alert_rule(
        &self,
        rule: &AlertRuleRow,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
    /// The tenant's rules in creation order.
    async fn list_alert_rules(&self, tenant_id: Uuid) -> Result<Vec<AlertRuleRow>, StoreError>;
    async fn get_alert_rule(
        &self,
        tenant_id: Uuid,
        id: Uuid,
    ) -> Result<Option<AlertRuleRow>, StoreError>;
    /// Saves every field of the rule; false when it no longer exists.
    async fn save_alert_rule(
        &self,
        rule: &AlertRuleRow,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    /// False when there was no such rule (and nothing was audited).
    async fn delete_alert_rule(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    /// The tenant's alerts, newest first.
    async fn list_alerts(
        &self,
        tenant_id: Uuid,
        filter: &AlertFilter,
    ) -> Result<Vec<AlertRow>, StoreError>;
    async fn get_alert(&self, tenant_id: Uuid, id: Uuid) -> Result<Option<AlertRow>, StoreError>;
    /// Moves the alert if its status allows; false (and nothing audited) otherwise.
    async fn transition_alert(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        transition: AlertTransition,
        by: &str,
        at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    /// The enabled rules on window metrics of every tenant, for the background check
    /// (which is no tenant's request; each rule it reads then names its tenant).
    async fn window_rules(&self, metrics: &[&str]) -> Result<Vec<AlertRuleRow>, StoreError>;
    /// How many of the tenant's evaluations (of one template, or all) were decided in
    /// `[from, to)`, per decision.
    async fn decision_counts(
        &self,
        tenant_id: Uuid,
        template_id: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Makes a window rule's next check start at `at` (it was enabled again or changed).
    async fn restart_window_check(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Moves a rule's `checked_until` from `previous` to `until` and stores the alerts the
    /// check raised with their deliveries, in one transaction; false (nothing written)
    /// when another replica or an earlier run already moved it.
    async fn commit_window_check(
        &self,
        tenant_id: Uuid,
        rule_id: Uuid,
        previous: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
        alerts: Vec<NewAlert>,
        route: &Route,
    ) -> Result<bool, StoreError>;
}

/// How an alert finds its deliveries among its tenant's enabled endpoints (the domain's
/// rule, called inside the transaction that stores the alert).
pub type Route = dyn Fn(&mut NewAlert, &[EndpointRow]) -> Vec<NewDelivery> + Send + Sync;

const RULE_COLUMNS: &str = "id, tenant_id, name, metric, operator, threshold, severity, \
     template_id, enabled, created_at, updated_at, window_seconds, min_volume";

/// What a rule is read with: its columns and the check's progress.
fn rule_select() -> String {
    format!("{RULE_COLUMNS}, checked_until")
}

const ALERT_INSERT_COLUMNS: &str = "id, tenant_id, rule_id, rule_name, metric, severity, \
     status, dedupe_key, template_id, template_version_id, evaluation_id, last_evaluation_id, \
     value, threshold, message, details, occurrences, delivery_status, created_at, last_seen_at";

fn alert_columns() -> String {
    format!("{ALERT_INSERT_COLUMNS}, acknowledged_at, acknowledged_by, resolved_at, resolved_by")
}

/// Rows per multi-row alert INSERT (20 parameters a row).
const ALERT_CHUNK: usize = 64;

/// Marks the vendors of `uses` as used by their tenants; returns the pairs that were used
/// for the first time (in this transaction, so exactly one evaluation ever sees it).
pub(super) async fn first_uses_of_vendors(
    tx: &mut Tx,
    uses: &[(Uuid, &str)],
    at: DateTime<Utc>,
) -> Result<Vec<(Uuid, String)>, StoreError> {
    if uses.is_empty() {
        return Ok(Vec::new());
    }
    let insert =
        Query::new("INSERT INTO tenant_extractors (tenant_id, vendor, first_seen_at) VALUES ")
            .push_tuples(
                uses.iter().map(|(tenant_id, vendor)| {
                    [Arg::Uuid(*tenant_id), (*vendor).into(), at.into()]
                }),
            )
            .push(" ON CONFLICT (tenant_id, vendor) DO NOTHING RETURNING tenant_id, vendor");
    tx.fetch_all(insert).await
}

/// The firings of one key in one commit.
struct Merged {
    alert: NewAlert,
    occurrences: i64,
    last_evaluation_id: Option<Uuid>,
    last_seen_at: DateTime<Utc>,
}

/// Stores the alerts of one commit. Firings that share a tenant and `dedupe_key` are one
/// alert with several occurrences, and a key that has an unresolved alert already adds its
/// occurrences to that alert instead of opening another. Returns the ids of the alerts
/// this opened (the others were occurrences).
pub(super) async fn insert_alerts(
    tx: &mut Tx,
    alerts: Vec<NewAlert>,
) -> Result<std::collections::HashSet<Uuid>, StoreError> {
    let mut opened = std::collections::HashSet::new();
    // One row per key in a statement: an upsert may not touch one row twice.
    let mut merged: Vec<Merged> = Vec::new();
    let mut at: BTreeMap<(Uuid, String), usize> = BTreeMap::new();
    for alert in alerts {
        match at.get(&(alert.tenant_id, alert.dedupe_key.clone())) {
            Some(&i) => {
                let m = &mut merged[i];
                m.occurrences += 1;
                m.last_evaluation_id = alert.evaluation_id;
                m.last_seen_at = alert.created_at;
            }
            None => {
                at.insert((alert.tenant_id, alert.dedupe_key.clone()), merged.len());
                merged.push(Merged {
                    occurrences: 1,
                    last_evaluation_id: alert.evaluation_id,
                    last_seen_at: alert.created_at,
                    alert,
                });
            }
        }
    }
    for chunk in merged.chunks(ALERT_CHUNK) {
        let insert = Query::new(format!(
            "INSERT INTO alerts ({ALERT_INSERT_COLUMNS}) VALUES "
        ))
        .push_tuples(chunk.iter().map(|m| {
            let a = &m.alert;
            vec![
                a.id.into(),
                a.tenant_id.into(),
                a.rule_id.into(),
                (&a.rule_name).into(),
                a.metric.into(),
                a.severity.into(),
                "open".into(),
                (&a.dedupe_key).into(),
                a.template_id.as_deref().into(),
                a.template_version_id.into(),
                a.evaluation_id.into(),
                m.last_evaluation_id.into(),
                a.value.into(),
                a.threshold.into(),
                (&a.message).into(),
                Arg::json(&a.details),
                m.occurrences.into(),
                a.delivery_status.into(),
                a.created_at.into(),
                m.last_seen_at.into(),
            ]
        }))
        .push(
            " ON CONFLICT (tenant_id, dedupe_key) WHERE status <> 'resolved' DO UPDATE SET \
                 occurrences = alerts.occurrences + excluded.occurrences, \
                 last_seen_at = excluded.last_seen_at, \
                 last_evaluation_id = excluded.last_evaluation_id RETURNING id",
        );
        // An occurrence returns the existing alert's id, a new alert the one proposed.
        let returned: Vec<(Uuid,)> = tx.fetch_all(insert).await?;
        let proposed: std::collections::HashSet<Uuid> = chunk.iter().map(|m| m.alert.id).collect();
        opened.extend(
            returned
                .into_iter()
                .map(|(id,)| id)
                .filter(|id| proposed.contains(id)),
        );
    }
    Ok(opened)
}

/// Stores alerts with their deliveries to the enabled endpoints of their tenants that take
/// them (the outbox), in `tx`. `route` gives each alert (with its caller's tag) its
/// deliveries; a repeat of an unresolved alert is an occurrence and queues nothing. Returns
/// the tags whose alert opened and queued at least one delivery.
pub(super) async fn insert_alerts_with_deliveries<T: Copy>(
    tx: &mut Tx,
    alerts: Vec<(T, NewAlert)>,
    route: impl Fn(T, &mut NewAlert, &[EndpointRow]) -> Vec<NewDelivery>,
) -> Result<Vec<T>, StoreError> {
    if alerts.is_empty() {
        return Ok(Vec::new());
    }
    let mut tenants: Vec<Uuid> = alerts.iter().map(|(_, a)| a.tenant_id).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let endpoints = enabled_endpoints(tx, &tenants).await?;
    let mut routed = Vec::with_capacity(alerts.len());
    let alerts: Vec<NewAlert> = alerts
        .into_iter()
        .map(|(tag, mut alert)| {
            let to = route(tag, &mut alert, &endpoints);
            routed.push((tag, alert.id, to));
            alert
        })
        .collect();
    let opened = insert_alerts(tx, alerts).await?;
    let mut queued = Vec::new();
    let mut deliveries = Vec::new();
    for (tag, id, to) in routed {
        if opened.contains(&id) && !to.is_empty() {
            queued.push(tag);
            deliveries.extend(to);
        }
    }
    insert_deliveries(tx, &deliveries).await?;
    Ok(queued)
}

/// A rule's values in [`RULE_COLUMNS`] order.
fn rule_values(r: &AlertRuleRow) -> Vec<Arg> {
    vec![
        r.id.into(),
        r.tenant_id.into(),
        (&r.name).into(),
        (&r.metric).into(),
        r.operator.as_deref().into(),
        r.threshold.into(),
        (&r.severity).into(),
        r.template_id.as_deref().into(),
        r.enabled.into(),
        r.created_at.into(),
        r.updated_at.into(),
        r.window_seconds.into(),
        r.min_volume.into(),
    ]
}

#[async_trait]
impl AlertStore for SqlStore {
    async fn create_alert_rule(
        &self,
        rule: &AlertRuleRow,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        let mut values = rule_values(rule);
        values.push(rule.checked_until.into());
        tx.execute(Query::insert_row("alert_rules", &rule_select(), values))
            .await?;
        tx.commit_with_audit(audit).await
    }

    async fn list_alert_rules(&self, tenant_id: Uuid) -> Result<Vec<AlertRuleRow>, StoreError> {
        self.db
            .fetch_all(Query::tenant_rows(&rule_select(), "alert_rules", tenant_id))
            .await
    }

    async fn get_alert_rule(
        &self,
        tenant_id: Uuid,
        id: Uuid,
    ) -> Result<Option<AlertRuleRow>, StoreError> {
        self.db
            .fetch_optional(Query::tenant_row(
                &rule_select(),
                "alert_rules",
                tenant_id,
                id,
            ))
            .await
    }

    async fn save_alert_rule(
        &self,
        r: &AlertRuleRow,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().await?;
        tx.change_one_with_audit(
            Query::update_tenant_row("alert_rules", RULE_COLUMNS, rule_values(r)),
            audit,
        )
        .await
    }

    async fn delete_alert_rule(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().await?;
        tx.change_one_with_audit(
            Query::delete_tenant_row("alert_rules", tenant_id, id),
            audit,
        )
        .await
    }

    async fn list_alerts(
        &self,
        tenant_id: Uuid,
        f: &AlertFilter,
    ) -> Result<Vec<AlertRow>, StoreError> {
        self.db
            .fetch_all(
                Query::new(format!(
                    "SELECT {} FROM alerts WHERE tenant_id = $1 \
                     AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR severity = $3) \
                     AND ($4 IS NULL OR metric = $4) AND ($5 IS NULL OR delivery_status = $5) \
                     AND ($6 IS NULL OR template_id = $6) AND ($7 IS NULL OR id < $7) \
                     ORDER BY id DESC LIMIT $8",
                    alert_columns()
                ))
                .bind(tenant_id)
                .bind(f.status.as_deref())
                .bind(f.severity.as_deref())
                .bind(f.metric.as_deref())
                .bind(f.delivery_status.as_deref())
                .bind(f.template_id.as_deref())
                .bind(f.before_id)
                .bind(f.limit),
            )
            .await
    }

    async fn get_alert(&self, tenant_id: Uuid, id: Uuid) -> Result<Option<AlertRow>, StoreError> {
        self.db
            .fetch_optional(Query::tenant_row(&alert_columns(), "alerts", tenant_id, id))
            .await
    }

    async fn transition_alert(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        transition: AlertTransition,
        by: &str,
        at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let sql = match transition {
            AlertTransition::Acknowledge => {
                "UPDATE alerts SET status = 'acknowledged', acknowledged_at = $3, \
                 acknowledged_by = $4 WHERE tenant_id = $1 AND id = $2 AND status = 'open'"
            }
            AlertTransition::Resolve => {
                "UPDATE alerts SET status = 'resolved', resolved_at = $3, resolved_by = $4 \
                 WHERE tenant_id = $1 AND id = $2 AND status IN ('open', 'acknowledged')"
            }
        };
        let tx = self.db.begin_write().await?;
        tx.change_one_with_audit(
            Query::new(sql).bind(tenant_id).bind(id).bind(at).bind(by),
            audit,
        )
        .await
    }

    async fn window_rules(&self, metrics: &[&str]) -> Result<Vec<AlertRuleRow>, StoreError> {
        let q = Query::new(format!(
            "SELECT {} FROM alert_rules WHERE enabled AND metric IN (",
            rule_select()
        ))
        .push_list(metrics.iter().map(|m| Arg::from(*m)))
        .push(") ORDER BY tenant_id, id");
        self.db.fetch_all(q).await
    }

    async fn decision_counts(
        &self,
        tenant_id: Uuid,
        template_id: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        // Evaluation ids are UUIDv7, so a time range is an id range of the tenant's
        // primary-key index (no scan of `created_at`).
        self.db
            .fetch_all(
                Query::new(
                    "SELECT decision, COUNT(*) FROM evaluations WHERE tenant_id = $1 \
                     AND id >= $2 AND id < $3 AND ($4 IS NULL OR template_id = $4) \
                     GROUP BY decision",
                )
                .bind(tenant_id)
                .bind(uuid_v7_floor(from))
                .bind(uuid_v7_floor(to))
                .bind(template_id),
            )
            .await
    }

    async fn restart_window_check(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                Query::new(
                    "UPDATE alert_rules SET checked_until = $3 WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant_id)
                .bind(id)
                .bind(at),
            )
            .await?;
        Ok(())
    }

    async fn commit_window_check(
        &self,
        tenant_id: Uuid,
        rule_id: Uuid,
        previous: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
        alerts: Vec<NewAlert>,
        route: &Route,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let moved = tx
            .execute(
                Query::new(
                    "UPDATE alert_rules SET checked_until = $3 WHERE tenant_id = $1 AND id = $2 \
                     AND ((checked_until IS NULL AND $4 IS NULL) OR checked_until = $4)",
                )
                .bind(tenant_id)
                .bind(rule_id)
                .bind(until)
                .bind(previous),
            )
            .await?;
        if moved != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        let alerts = alerts.into_iter().map(|a| ((), a)).collect();
        insert_alerts_with_deliveries(&mut tx, alerts, |(), a, e| route(a, e)).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// The least UUIDv7 of the millisecond `at`: ids of `[from, to)` are those in
/// `[floor(from), floor(to))`.
fn uuid_v7_floor(at: DateTime<Utc>) -> Uuid {
    let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v7_floor_orders_below_every_id_of_its_millisecond_and_above_the_earlier_ones() {
        let at = Utc::now();
        let ms = u64::try_from(at.timestamp_millis()).unwrap();
        let ts = |ms: u64| {
            uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, (ms % 1000) as u32 * 1_000_000)
        };
        for _ in 0..100 {
            let same = Uuid::new_v7(ts(ms));
            let before = Uuid::new_v7(ts(ms - 1));
            assert!(uuid_v7_floor(at) <= same);
            assert!(before < uuid_v7_floor(at));
        }
    }
}
