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
    pub evaluation_id: Uuid,
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
    /// `drift`, `reliability`, `unknown_provider`, `change_point` or `extractor_changed`.
    pub metric: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    #[serde(skip)]
    pub dedupe_key: String,
    pub template_id: Option<String>,
    pub template_version_id: Option<Uuid>,
    /// The evaluation that raised it first, and the latest one that raised it again.
    pub evaluation_id: Uuid,
    pub last_evaluation_id: Uuid,
    /// The value that crossed the threshold (the recent mean for a change point).
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub message: String,
    #[schema(value_type = Object)]
    pub details: Json<serde_json::Value>,
    /// How many evaluations raised it while it was not resolved.
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
}

const RULE_COLUMNS: &str = "id, tenant_id, name, metric, operator, threshold, severity, \
     template_id, enabled, created_at, updated_at";

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
    last_evaluation_id: Uuid,
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
        tx.execute(Query::insert_row(
            "alert_rules",
            RULE_COLUMNS,
            rule_values(rule),
        ))
        .await?;
        tx.commit_with_audit(audit).await
    }

    async fn list_alert_rules(&self, tenant_id: Uuid) -> Result<Vec<AlertRuleRow>, StoreError> {
        self.db
            .fetch_all(Query::tenant_rows(RULE_COLUMNS, "alert_rules", tenant_id))
            .await
    }

    async fn get_alert_rule(
        &self,
        tenant_id: Uuid,
        id: Uuid,
    ) -> Result<Option<AlertRuleRow>, StoreError> {
        self.db
            .fetch_optional(Query::tenant_row(
                RULE_COLUMNS,
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
}
