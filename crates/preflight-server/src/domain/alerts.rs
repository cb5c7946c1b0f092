//! Alerts: telling people when a template or an extractor changes.
//!
//! Two things live here. [`Alert`] is what an evaluation's answer carries: a change point the
//! template's drift detector confirmed while committing it (the detector runs inside the
//! commit, under the template's row lock, so it is known only then). And the tenant's
//! **alert rules**, which turn each evaluation into stored alerts (`GET /v1/alerts`):
//! thresholds on drift and reliability, an extractor vendor the tenant never used, and
//! change points. A tenant without rules of its own gets the built-ins
//! ([`builtin_rules`]). Rules are applied by [`raised`] while the evaluation commits, so an
//! alert is stored in the same transaction as the evaluation that raised it; a repeat of an
//! unresolved alert (same rule, same template version) counts as one more occurrence.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, SubsecRound, Utc};
use preflight_engine::{ChangePoint, DriftSeries};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::templates::valid_template_id;
use crate::error::{ApiError, Violations};
use crate::state::AppState;
use crate::storage::alerts::{AlertFilter, AlertRow, AlertRuleRow, AlertTransition, NewAlert};
use crate::storage::evaluations::Found;
use crate::storage::identity::NewAuditEvent;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertKind {
    /// A drift series of the template shifted and stayed shifted.
    TemplateChangePoint,
}

/// One alert in an evaluation's `alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    #[serde(rename = "type")]
    pub kind: AlertKind,
    pub template_id: Option<String>,
    pub template_version_id: Option<Uuid>,
    /// `similarity`, `drift` or `extractor_confidence`.
    #[schema(value_type = String)]
    pub series: DriftSeries,
    /// The evaluation (1-based, per template version) where the change began.
    pub observation: u64,
    /// The evaluation at which the detector confirmed it.
    pub detected_at_observation: u64,
    pub baseline_mean: f64,
    pub recent_mean: f64,
    pub message: String,
}

impl Alert {
    /// The alert for a change point confirmed on a template version.
    pub fn change_point(
        template_id: Option<&str>,
        template_version_id: Option<Uuid>,
        cp: &ChangePoint,
    ) -> Alert {
        Alert {
            kind: AlertKind::TemplateChangePoint,
            template_id: template_id.map(str::to_string),
            template_version_id,
            series: cp.series,
            observation: cp.observation,
            detected_at_observation: cp.detected_at,
            baseline_mean: cp.baseline_mean,
            recent_mean: cp.recent_mean,
            message: format!(
                "this template's {} changed around its evaluation {}",
                cp.series.as_str().replace('_', " "),
                cp.observation
            ),
        }
    }
}

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertMetric {
    /// The evaluation's drift score against its template (0..1), with a threshold.
    Drift,
    /// The evaluation's reliability score (0..1), with a threshold.
    Reliability,
    /// The tenant's first evaluation from an extractor vendor.
    UnknownProvider,
    /// The template's drift detector confirmed a lasting change.
    ChangePoint,
    /// A matched document came from an extractor (vendor, model or version) the template
    /// has not seen (the evaluation's `EXTRACTOR_CHANGED` reason).
    ExtractorChanged,
}

impl AlertMetric {
    pub const ALL: [AlertMetric; 5] = [
        AlertMetric::Drift,
        AlertMetric::Reliability,
        AlertMetric::UnknownProvider,
        AlertMetric::ChangePoint,
        AlertMetric::ExtractorChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertMetric::Drift => "drift",
            AlertMetric::Reliability => "reliability",
            AlertMetric::UnknownProvider => "unknown_provider",
            AlertMetric::ChangePoint => "change_point",
            AlertMetric::ExtractorChanged => "extractor_changed",
        }
    }

    /// The names for an error message: "drift, reliability, ... or extractor_changed".
    pub fn names() -> String {
        let names: Vec<&str> = AlertMetric::ALL.iter().map(|m| m.as_str()).collect();
        let (last, rest) = names.split_last().expect("metrics exist");
        format!("{} or {last}", rest.join(", "))
    }

    pub fn parse(s: &str) -> Option<AlertMetric> {
        AlertMetric::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether the metric is a number compared with a threshold (else an event).
    pub fn has_threshold(self) -> bool {
        matches!(self, AlertMetric::Drift | AlertMetric::Reliability)
    }
}

/// How a value is compared with a rule's threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Comparison {
    Gt,
    Lt,
    Eq,
}

/// Values closer than this to a threshold are equal to it (scores are rounded floats).
const EQ_TOLERANCE: f64 = 1e-9;

impl Comparison {
    pub const ALL: [Comparison; 3] = [Comparison::Gt, Comparison::Lt, Comparison::Eq];

    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Gt => "gt",
            Comparison::Lt => "lt",
            Comparison::Eq => "eq",
        }
    }

    pub fn parse(s: &str) -> Option<Comparison> {
        Comparison::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Gt => value > threshold,
            Comparison::Lt => value < threshold,
            Comparison::Eq => (value - threshold).abs() < EQ_TOLERANCE,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Comparison::Gt => "above",
            Comparison::Lt => "below",
            Comparison::Eq => "at",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Where a stored alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Open,
    Acknowledged,
    Resolved,
}

impl AlertStatus {
    pub const ALL: [AlertStatus; 3] = [
        AlertStatus::Open,
        AlertStatus::Acknowledged,
        AlertStatus::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<AlertStatus> {
        AlertStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Whether an alert reached the tenant's webhook endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// No webhook endpoint takes it.
    NoEndpoint,
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::NoEndpoint,
        DeliveryStatus::Pending,
        DeliveryStatus::Delivered,
        DeliveryStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::NoEndpoint => "no_endpoint",
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A rule as the engine of alerts applies it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// `None` for a built-in rule.
    pub id: Option<Uuid>,
    pub name: String,
    pub metric: AlertMetric,
    /// For threshold metrics.
    pub condition: Option<(Comparison, f64)>,
    pub severity: Severity,
    /// Only evaluations matched to this template; `None`: every template.
    pub template_id: Option<String>,
    pub enabled: bool,
}

impl AlertRule {
    /// A stored rule; `None` if a value is one this version does not know (a newer
    /// replica's rule), which is then skipped rather than misread.
    fn of(row: &AlertRuleRow) -> Option<AlertRule> {
        let condition = match (row.operator.as_deref(), row.threshold) {
            (Some(op), Some(t)) => Some((Comparison::parse(op)?, t)),
            _ => None,
        };
        Some(AlertRule {
            id: Some(row.id),
            name: row.name.clone(),
            metric: AlertMetric::parse(&row.metric)?,
            condition,
            severity: Severity::parse(&row.severity)?,
            template_id: row.template_id.clone(),
            enabled: row.enabled,
        })
    }

    /// What identifies the rule in a dedupe key.
    fn key(&self) -> String {
        match self.id {
            Some(id) => id.to_string(),
            None => format!("builtin:{}", self.metric.as_str()),
        }
    }
}

/// The rules of a tenant that has none of its own (those of the original PreFlight, plus
/// change points).
pub fn builtin_rules() -> Vec<AlertRule> {
    let rule = |name: &str, metric, condition, severity| AlertRule {
        id: None,
        name: name.to_string(),
        metric,
        condition,
        severity,
        template_id: None,
        enabled: true,
    };
    vec![
        rule(
            "built-in: drift above 0.30",
            AlertMetric::Drift,
            Some((Comparison::Gt, 0.30)),
            Severity::Warning,
        ),
        rule(
            "built-in: reliability below 0.80",
            AlertMetric::Reliability,
            Some((Comparison::Lt, 0.80)),
            Severity::Warning,
        ),
        rule(
            "built-in: unknown extractor vendor",
            AlertMetric::UnknownProvider,
            None,
            Severity::Info,
        ),
        rule(
            "built-in: template change point",
            AlertMetric::ChangePoint,
            None,
            Severity::Warning,
        ),
        rule(
            "built-in: extractor changed",
            AlertMetric::ExtractorChanged,
            None,
            Severity::Warning,
        ),
    ]
}

/// The rules that apply to a tenant's evaluations: its enabled rules, or the built-ins
/// while it has defined none.
pub fn effective_rules(rows: &[AlertRuleRow]) -> Vec<AlertRule> {
    if rows.is_empty() {
        return builtin_rules();
    }
    rows.iter()
        .filter_map(AlertRule::of)
        .filter(|r| r.enabled)
        .collect()
}

/// What one decided evaluation showed, for the rules.
#[derive(Debug, Clone)]
pub struct Observed {
    pub tenant_id: Uuid,
    pub evaluation_id: Uuid,
    pub at: DateTime<Utc>,
    /// The matched template, if any: the threshold and change-point rules need one.
    pub template_id: Option<String>,
    pub template_version_id: Option<Uuid>,
    pub drift: f64,
    pub reliability: f64,
    pub vendor: String,
    /// `vendor/model/version` as sent.
    pub extractor: String,
    /// The `EXTRACTOR_CHANGED` reason's message, when the evaluation has one.
    pub extractor_changed: Option<String>,
}

/// The alerts `rules` raise for an evaluation, given what its commit found.
pub fn raised(rules: &[AlertRule], o: &Observed, found: &Found) -> Vec<NewAlert> {
    let mut out = Vec::new();
    let template = o.template_id.as_deref();
    let version = o
        .template_version_id
        .map_or_else(|| "-".to_string(), |v| v.to_string());
    for rule in rules {
        if rule.template_id.is_some() && rule.template_id.as_deref() != template {
            continue;
        }
        let alert = |dedupe: String, value, threshold, message: String, details| NewAlert {
            id: Uuid::now_v7(),
            tenant_id: o.tenant_id,
            rule_id: rule.id,
            rule_name: rule.name.clone(),
            metric: rule.metric.as_str(),
            severity: rule.severity.as_str(),
            dedupe_key: format!("{}:{dedupe}", rule.key()),
            template_id: o.template_id.clone(),
            template_version_id: o.template_version_id,
            evaluation_id: o.evaluation_id,
            value,
            threshold,
            message,
            details,
            delivery_status: DeliveryStatus::NoEndpoint.as_str(),
            created_at: o.at,
        };
        match rule.metric {
            AlertMetric::Drift | AlertMetric::Reliability => {
                let (Some(t), Some((cmp, threshold))) = (template, rule.condition) else {
                    continue;
                };
                let value = if rule.metric == AlertMetric::Drift {
                    o.drift
                } else {
                    o.reliability
                };
                if cmp.holds(value, threshold) {
                    let message = format!(
                        "{} {value:.3} is {} {threshold} on template {t}",
                        rule.metric.as_str(),
                        cmp.words()
                    );
                    let details = serde_json::json!({"comparison": cmp.as_str()});
                    out.push(alert(
                        version.clone(),
                        Some(value),
                        Some(threshold),
                        message,
                        details,
                    ));
                }
            }
            AlertMetric::UnknownProvider => {
                if found.first_use_of_vendor {
                    let message = format!(
                        "first evaluation from extractor vendor {:?} in this tenant",
                        o.vendor
                    );
                    let details = serde_json::json!({"vendor": o.vendor});
                    out.push(alert(o.vendor.clone(), None, None, message, details));
                }
            }
            AlertMetric::ExtractorChanged => {
                if let (Some(t), Some(why)) = (template, &o.extractor_changed) {
                    let message = format!("template {t}: {why}");
                    let details = serde_json::json!({"extractor": o.extractor});
                    let dedupe = format!("{version}:{}", o.extractor);
                    out.push(alert(dedupe, None, None, message, details));
                }
            }
            AlertMetric::ChangePoint => {
                for cp in found.change_points {
                    let change = Alert::change_point(template, o.template_version_id, cp);
                    let details = serde_json::json!({
                        "series": cp.series.as_str(),
                        "observation": cp.observation,
                        "detected_at_observation": cp.detected_at,
                        "baseline_mean": cp.baseline_mean,
                        "recent_mean": cp.recent_mean,
                    });
                    let dedupe = format!("{version}:{}:{}", cp.series.as_str(), cp.observation);
                    out.push(alert(
                        dedupe,
                        Some(cp.recent_mean),
                        None,
                        change.message,
                        details,
                    ));
                }
            }
        }
    }
    out
}

/// The rules that apply to the tenant now, from the cache or the store.
pub async fn rules_for(state: &AppState, tenant_id: Uuid) -> Result<Arc<Vec<AlertRule>>, ApiError> {
    let now = Instant::now();
    let rows = match state.alert_rules().get(tenant_id, now) {
        Some(rows) => rows,
        None => {
            let rows = Arc::new(state.store().list_alert_rules(tenant_id).await?);
            state.alert_rules().put(tenant_id, rows.clone(), now);
            rows
        }
    };
    Ok(Arc::new(effective_rules(&rows)))
}

/// Now, to the microsecond both backends store, so an answer shows what was stored.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The most rules one tenant may define.
pub const MAX_RULES: usize = 100;
const MAX_RULE_NAME: usize = 200;

/// A rule as a client describes it (creation, or the whole rule after a change).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct RuleSpec {
    /// 1 to 200 characters.
    pub name: String,
    /// `drift`, `reliability` (with `operator` and `threshold`), `unknown_provider`,
    /// `change_point`, `extractor_changed`.
    pub metric: String,
    /// `gt`, `lt` or `eq`; threshold metrics only.
    pub operator: Option<String>,
    /// 0..1; threshold metrics only.
    pub threshold: Option<f64>,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Only evaluations matched to this template.
    pub template_id: Option<String>,
    pub enabled: Option<bool>,
}

/// A rule as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertRuleView {
    pub id: Uuid,
    pub name: String,
    pub metric: AlertMetric,
    pub operator: Option<Comparison>,
    pub threshold: Option<f64>,
    pub severity: Severity,
    pub template_id: Option<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AlertRuleView {
    fn of(row: &AlertRuleRow) -> Result<AlertRuleView, ApiError> {
        let rule = AlertRule::of(row).ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("alert rule {} has unknown values", row.id))
        })?;
        Ok(AlertRuleView {
            id: row.id,
            name: rule.name,
            metric: rule.metric,
            operator: rule.condition.map(|(c, _)| c),
            threshold: rule.condition.map(|(_, t)| t),
            severity: rule.severity,
            template_id: rule.template_id,
            enabled: rule.enabled,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Checks a spec into the row it describes (`id`, `tenant_id` and times from `base`).
fn checked(spec: &RuleSpec, base: AlertRuleRow) -> Result<AlertRuleRow, ApiError> {
    let mut v = Violations::default();
    let n = spec.name.trim().chars().count();
    v.check(
        (1..=MAX_RULE_NAME).contains(&n),
        "name",
        "must be 1 to 200 characters",
    );
    let metric = AlertMetric::parse(&spec.metric);
    v.check(
        metric.is_some(),
        "metric",
        &format!("must be {}", AlertMetric::names()),
    );
    let severity = Severity::parse(&spec.severity);
    v.check(
        severity.is_some(),
        "severity",
        "must be info, warning or critical",
    );
    if let Some(op) = &spec.operator {
        v.check(
            Comparison::parse(op).is_some(),
            "operator",
            "must be gt, lt or eq",
        );
    }
    if let Some(t) = spec.threshold {
        v.check(
            t.is_finite() && (0.0..=1.0).contains(&t),
            "threshold",
            "must be between 0 and 1",
        );
    }
    match metric {
        Some(m) if m.has_threshold() => {
            v.check(
                spec.operator.is_some(),
                "operator",
                "is required for this metric",
            );
            v.check(
                spec.threshold.is_some(),
                "threshold",
                "is required for this metric",
            );
        }
        Some(_) => {
            v.check(
                spec.operator.is_none(),
                "operator",
                "only threshold metrics take one",
            );
            v.check(
                spec.threshold.is_none(),
                "threshold",
                "only threshold metrics take one",
            );
        }
        None => {}
    }
    if let Some(t) = &spec.template_id {
        v.check(
            valid_template_id(t),
            "template_id",
            "is not a valid template_id",
        );
    }
    v.into_result()?;
    Ok(AlertRuleRow {
        name: spec.name.trim().to_string(),
        metric: spec.metric.clone(),
        operator: spec.operator.clone(),
        threshold: spec.threshold,
        severity: spec.severity.clone(),
        template_id: spec.template_id.clone(),
        enabled: spec.enabled.unwrap_or(base.enabled),
        ..base
    })
}

fn rule_not_found() -> ApiError {
    ApiError::NotFound("alert rule".into())
}

pub async fn list_rules(state: &AppState, tenant_id: Uuid) -> Result<Vec<AlertRuleView>, ApiError> {
    let rows = state.store().list_alert_rules(tenant_id).await?;
    rows.iter().map(AlertRuleView::of).collect()
}

pub async fn get_rule(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<AlertRuleRow, ApiError> {
    state
        .store()
        .get_alert_rule(tenant_id, id)
        .await?
        .ok_or_else(rule_not_found)
}

pub async fn create_rule(
    state: &AppState,
    tenant_id: Uuid,
    spec: &RuleSpec,
    event: NewAuditEvent,
) -> Result<AlertRuleView, ApiError> {
    let now = now();
    let row = checked(
        spec,
        AlertRuleRow {
            id: Uuid::now_v7(),
            tenant_id,
            name: String::new(),
            metric: String::new(),
            operator: None,
            threshold: None,
            severity: String::new(),
            template_id: None,
            enabled: true,
            created_at: now,
            updated_at: now,
        },
    )?;
    if state.store().list_alert_rules(tenant_id).await?.len() >= MAX_RULES {
        return Err(ApiError::Conflict(format!(
            "a tenant has at most {MAX_RULES} alert rules; delete one first"
        )));
    }
    let event = audited(event, &row);
    state.store().create_alert_rule(&row, &event).await?;
    state.alert_rules().forget(tenant_id);
    AlertRuleView::of(&row)
}

/// A change to some of a rule's fields; absent fields keep their value. `template_id:
/// null` makes the rule apply to every template again.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleChange {
    pub name: Option<String>,
    pub metric: Option<String>,
    pub operator: Option<String>,
    pub threshold: Option<f64>,
    pub severity: Option<String>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub template_id: Option<Option<String>>,
    pub enabled: Option<bool>,
}

/// Tells "absent" (keep) from `null` (clear) for one field.
pub(crate) mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

pub async fn update_rule(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
    change: RuleChange,
    event: NewAuditEvent,
) -> Result<AlertRuleView, ApiError> {
    let current = get_rule(state, tenant_id, id).await?;
    let metric = change.metric.unwrap_or_else(|| current.metric.clone());
    // A rule that becomes an event rule drops its threshold unless one is sent (and
    // refused); one that stays a threshold rule keeps the fields not sent.
    let keeps_threshold = AlertMetric::parse(&metric).is_some_and(AlertMetric::has_threshold);
    let spec = RuleSpec {
        name: change.name.unwrap_or_else(|| current.name.clone()),
        operator: change
            .operator
            .or_else(|| current.operator.clone().filter(|_| keeps_threshold)),
        threshold: change
            .threshold
            .or(current.threshold.filter(|_| keeps_threshold)),
        metric,
        severity: change.severity.unwrap_or_else(|| current.severity.clone()),
        template_id: change
            .template_id
            .unwrap_or_else(|| current.template_id.clone()),
        enabled: change.enabled,
    };
    let row = checked(
        &spec,
        AlertRuleRow {
            updated_at: now(),
            ..current
        },
    )?;
    let event = audited(event, &row);
    if !state.store().save_alert_rule(&row, &event).await? {
        return Err(rule_not_found());
    }
    state.alert_rules().forget(tenant_id);
    AlertRuleView::of(&row)
}

pub async fn delete_rule(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
    event: NewAuditEvent,
) -> Result<(), ApiError> {
    let event = NewAuditEvent {
        target: Some(format!("alert_rule:{id}")),
        ..event
    };
    if !state
        .store()
        .delete_alert_rule(tenant_id, id, &event)
        .await?
    {
        return Err(rule_not_found());
    }
    state.alert_rules().forget(tenant_id);
    Ok(())
}

fn audited(event: NewAuditEvent, row: &AlertRuleRow) -> NewAuditEvent {
    NewAuditEvent {
        target: Some(format!("alert_rule:{}", row.id)),
        details: serde_json::json!({
            "name": row.name, "metric": row.metric, "operator": row.operator,
            "threshold": row.threshold, "severity": row.severity,
            "template_id": row.template_id, "enabled": row.enabled,
        }),
        ..event
    }
}

fn alert_not_found() -> ApiError {
    ApiError::NotFound("alert".into())
}

pub async fn list_alerts(
    state: &AppState,
    tenant_id: Uuid,
    filter: &AlertFilter,
) -> Result<Vec<AlertRow>, ApiError> {
    Ok(state.store().list_alerts(tenant_id, filter).await?)
}

pub async fn get_alert(state: &AppState, tenant_id: Uuid, id: Uuid) -> Result<AlertRow, ApiError> {
    state
        .store()
        .get_alert(tenant_id, id)
        .await?
        .ok_or_else(alert_not_found)
}

/// Acknowledges or resolves an alert. Repeating the transition it already made answers
/// the alert unchanged; acknowledging a resolved alert is a 409.
pub async fn transition(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
    to: AlertTransition,
    event: NewAuditEvent,
) -> Result<AlertRow, ApiError> {
    let by = event.actor.clone();
    let event = NewAuditEvent {
        target: Some(format!("alert:{id}")),
        ..event
    };
    let moved = state
        .store()
        .transition_alert(tenant_id, id, to, &by, now(), &event)
        .await?;
    let alert = get_alert(state, tenant_id, id).await?;
    let reached = match to {
        AlertTransition::Acknowledge => AlertStatus::Acknowledged,
        AlertTransition::Resolve => AlertStatus::Resolved,
    };
    if moved || AlertStatus::parse(&alert.status) == Some(reached) {
        return Ok(alert);
    }
    Err(ApiError::Conflict(format!(
        "the alert is {}; a resolved alert cannot be acknowledged",
        alert.status
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(drift: f64, reliability: f64) -> Observed {
        Observed {
            tenant_id: Uuid::nil(),
            evaluation_id: Uuid::now_v7(),
            at: Utc::now(),
            template_id: Some("invoice".into()),
            template_version_id: Some(Uuid::nil()),
            drift,
            reliability,
            vendor: "aws".into(),
            extractor: "aws/textract/1".into(),
            extractor_changed: None,
        }
    }

    const NOTHING: Found<'static> = Found {
        change_points: &[],
        first_use_of_vendor: false,
    };

    fn metrics(alerts: &[NewAlert]) -> Vec<&str> {
        alerts.iter().map(|a| a.metric).collect()
    }

    #[test]
    fn the_builtins_fire_exactly_past_their_thresholds() {
        let rules = effective_rules(&[]);
        assert_eq!(rules, builtin_rules());
        assert!(raised(&rules, &observed(0.30, 0.80), &NOTHING).is_empty());
        assert_eq!(
            metrics(&raised(&rules, &observed(0.31, 0.80), &NOTHING)),
            ["drift"]
        );
        assert_eq!(
            metrics(&raised(&rules, &observed(0.0, 0.79), &NOTHING)),
            ["reliability"]
        );
        let first_vendor = Found {
            change_points: &[],
            first_use_of_vendor: true,
        };
        let alerts = raised(&rules, &observed(0.0, 0.9), &first_vendor);
        assert_eq!(metrics(&alerts), ["unknown_provider"]);
        assert_eq!(alerts[0].severity, "info");
        assert_eq!(alerts[0].dedupe_key, "builtin:unknown_provider:aws");
    }

    #[test]
    fn threshold_rules_need_a_matched_template_and_respect_their_scope() {
        let mut rule = builtin_rules().remove(0);
        rule.template_id = Some("receipt".into());
        assert!(raised(&[rule.clone()], &observed(0.9, 0.9), &NOTHING).is_empty());
        rule.template_id = Some("invoice".into());
        assert_eq!(
            raised(&[rule.clone()], &observed(0.9, 0.9), &NOTHING).len(),
            1
        );
        let mut unmatched = observed(0.9, 0.9);
        unmatched.template_id = None;
        assert!(raised(&[builtin_rules().remove(0)], &unmatched, &NOTHING).is_empty());
    }

    #[test]
    fn an_extractor_change_on_a_matched_template_is_an_alert_per_extractor() {
        let rules = builtin_rules();
        let mut changed = observed(0.0, 0.9);
        changed.extractor_changed = Some("version 2 (template has seen 1)".into());
        let alerts = raised(&rules, &changed, &NOTHING);
        assert_eq!(metrics(&alerts), ["extractor_changed"]);
        assert!(alerts[0].dedupe_key.ends_with(":aws/textract/1"));
        assert!(alerts[0].message.contains("version 2"));
        changed.template_id = None;
        assert!(raised(&rules, &changed, &NOTHING).is_empty());
    }

    #[test]
    fn every_change_point_is_its_own_alert() {
        let cps = [
            ChangePoint {
                observation: 41,
                detected_at: 47,
                series: DriftSeries::Similarity,
                baseline_mean: 0.95,
                recent_mean: 0.6,
            },
            ChangePoint {
                observation: 60,
                detected_at: 64,
                series: DriftSeries::Similarity,
                baseline_mean: 0.6,
                recent_mean: 0.9,
            },
        ];
        let found = Found {
            change_points: &cps,
            first_use_of_vendor: false,
        };
        let rules = [builtin_rules().remove(3)];
        let alerts = raised(&rules, &observed(0.0, 0.9), &found);
        assert_eq!(alerts.len(), 2);
        assert_ne!(alerts[0].dedupe_key, alerts[1].dedupe_key);
    }

    #[test]
    fn a_tenant_with_rules_of_its_own_gets_no_builtins_and_disabled_rules_are_skipped() {
        let now = Utc::now();
        let row = |metric: &str, enabled| AlertRuleRow {
            id: Uuid::now_v7(),
            tenant_id: Uuid::nil(),
            name: "r".into(),
            metric: metric.into(),
            operator: None,
            threshold: None,
            severity: "critical".into(),
            template_id: None,
            enabled,
            created_at: now,
            updated_at: now,
        };
        let rules = effective_rules(&[row("change_point", true), row("unknown_provider", false)]);
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].metric, AlertMetric::ChangePoint);
        // A value from a newer version is skipped, not misread.
        assert!(effective_rules(&[row("latency", true)]).is_empty());
    }

    #[test]
    fn wire_names_round_trip() {
        for m in AlertMetric::ALL {
            assert_eq!(AlertMetric::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        for c in Comparison::ALL {
            assert_eq!(Comparison::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        for s in Severity::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in AlertStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in DeliveryStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn a_change_point_alert_has_the_wire_shape_clients_read() {
        let cp = ChangePoint {
            observation: 41,
            detected_at: 47,
            series: DriftSeries::ExtractorConfidence,
            baseline_mean: 0.91,
            recent_mean: 0.62,
        };
        let tv = Uuid::nil();
        let json =
            serde_json::to_value(Alert::change_point(Some("invoice"), Some(tv), &cp)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "TEMPLATE_CHANGE_POINT",
                "template_id": "invoice",
                "template_version_id": tv,
                "series": "extractor_confidence",
                "observation": 41,
                "detected_at_observation": 47,
                "baseline_mean": 0.91,
                "recent_mean": 0.62,
                "message": "this template's extractor confidence changed around its evaluation 41",
            })
        );
    }
}
