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
use preflight_engine::{ChangePoint, Decision, DriftSeries};
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
    /// The share of NEW decisions over a sliding window (tenant-wide).
    NewRate,
    /// The share of REJECT decisions over a sliding window (tenant-wide).
    RejectRate,
    /// The share of REVIEW decisions over a sliding window.
    ReviewRate,
    /// The share of MATCH decisions (documents that went through untouched) over a
    /// sliding window.
    AutomationRate,
    /// A webhook endpoint was disabled by preflight (410 Gone, or failing for longer than
    /// `WEBHOOK_DISABLE_AFTER_SECONDS`). Raised by the delivery worker, not by a rule.
    EndpointDisabled,
}

impl AlertMetric {
    pub const ALL: [AlertMetric; 10] = [
        AlertMetric::Drift,
        AlertMetric::Reliability,
        AlertMetric::UnknownProvider,
        AlertMetric::ChangePoint,
        AlertMetric::ExtractorChanged,
        AlertMetric::NewRate,
        AlertMetric::RejectRate,
        AlertMetric::ReviewRate,
        AlertMetric::AutomationRate,
        AlertMetric::EndpointDisabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertMetric::Drift => "drift",
            AlertMetric::Reliability => "reliability",
            AlertMetric::UnknownProvider => "unknown_provider",
            AlertMetric::ChangePoint => "change_point",
            AlertMetric::ExtractorChanged => "extractor_changed",
            AlertMetric::NewRate => "new_rate",
            AlertMetric::RejectRate => "reject_rate",
            AlertMetric::ReviewRate => "review_rate",
            AlertMetric::AutomationRate => "automation_rate",
            AlertMetric::EndpointDisabled => "endpoint_disabled",
        }
    }

    /// The names for an error message: "drift, reliability, ... or endpoint_disabled".
    pub fn names() -> String {
        Self::join(&AlertMetric::ALL)
    }

    /// The metrics a rule may watch, for an error message.
    pub fn rule_names() -> String {
        let rule: Vec<AlertMetric> = AlertMetric::ALL
            .into_iter()
            .filter(|m| m.is_rule_metric())
            .collect();
        Self::join(&rule)
    }

    fn join(metrics: &[AlertMetric]) -> String {
        let names: Vec<&str> = metrics.iter().map(|m| m.as_str()).collect();
        let (last, rest) = names.split_last().expect("metrics exist");
        format!("{} or {last}", rest.join(", "))
    }

    pub fn parse(s: &str) -> Option<AlertMetric> {
        AlertMetric::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether the metric is a number compared with a threshold (else an event).
    pub fn has_threshold(self) -> bool {
        matches!(self, AlertMetric::Drift | AlertMetric::Reliability) || self.is_window()
    }

    /// Whether the metric is a rate over a sliding window, checked by the background task
    /// rather than by each evaluation's commit.
    pub fn is_window(self) -> bool {
        self.counted_decision().is_some()
    }

    /// The decision whose share a window metric is.
    pub fn counted_decision(self) -> Option<Decision> {
        match self {
            AlertMetric::NewRate => Some(Decision::New),
            AlertMetric::RejectRate => Some(Decision::Reject),
            AlertMetric::ReviewRate => Some(Decision::Review),
            AlertMetric::AutomationRate => Some(Decision::Match),
            _ => None,
        }
    }

    /// Whether a tenant's rule may watch it (`endpoint_disabled` is preflight's own).
    pub fn is_rule_metric(self) -> bool {
        self != AlertMetric::EndpointDisabled
    }

    /// Whether a window metric may be scoped to a template: NEW and REJECT decisions have
    /// none.
    pub fn takes_template_scope(self) -> bool {
        !matches!(self, AlertMetric::NewRate | AlertMetric::RejectRate)
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
    /// For window metrics.
    pub window: Option<RuleWindow>,
}

/// The sliding window of a rate rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleWindow {
    pub seconds: u32,
    /// Fewer evaluations than this in a window say nothing (the rate is not checked).
    pub min_volume: u32,
}

/// The window a rate rule gets when it names none.
pub const DEFAULT_WINDOW_SECONDS: u32 = 900;
pub const DEFAULT_MIN_VOLUME: u32 = 20;
const WINDOW_SECONDS: std::ops::RangeInclusive<u32> = 10..=86_400;
const MIN_VOLUME: std::ops::RangeInclusive<u32> = 1..=1_000_000;

impl AlertRule {
    /// A stored rule; `None` if a value is one this version does not know (a newer
    /// replica's rule), which is then skipped rather than misread.
    fn of(row: &AlertRuleRow) -> Option<AlertRule> {
        let condition = match (row.operator.as_deref(), row.threshold) {
            (Some(op), Some(t)) => Some((Comparison::parse(op)?, t)),
            _ => None,
        };
        let window = match (row.window_seconds, row.min_volume) {
            (Some(seconds), Some(min_volume)) => Some(RuleWindow {
                seconds: u32::try_from(seconds).ok()?,
                min_volume: u32::try_from(min_volume).ok()?,
            }),
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
            window,
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
        window: None,
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
            evaluation_id: Some(o.evaluation_id),
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
            // Checked over windows by the background task (`window_alert`); preflight's
            // own alerts are raised where they happen.
            AlertMetric::NewRate
            | AlertMetric::RejectRate
            | AlertMetric::ReviewRate
            | AlertMetric::AutomationRate
            | AlertMetric::EndpointDisabled => {}
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

/// How many evaluations of each decision a window held (in [`Decision::ALL`] order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCounts(pub [u64; 4]);

impl WindowCounts {
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn of(&self, d: Decision) -> u64 {
        let i = Decision::ALL
            .iter()
            .position(|x| *x == d)
            .expect("every decision");
        self.0[i]
    }

    pub fn add(&mut self, d: Decision, n: u64) {
        let i = Decision::ALL
            .iter()
            .position(|x| *x == d)
            .expect("every decision");
        self.0[i] += n;
    }
}

/// The most windows one check looks at after a pause (a restart, a long database outage):
/// the gap is covered by back-to-back windows, then the window ending now.
pub const MAX_CATCH_UP_WINDOWS: usize = 96;

/// The ends of the windows a rule's next check looks at. Checks happen at multiples of
/// `every` since the epoch, so every replica agrees on them; a rule checked until
/// `checked_until` goes on from there, covering a gap longer than its window with
/// back-to-back windows so that what happened while nobody checked is still seen.
pub fn window_ends(
    checked_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    every: std::time::Duration,
    window: std::time::Duration,
) -> Vec<DateTime<Utc>> {
    let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX).max(1);
    let end_ms = now.timestamp_millis().div_euclid(every_ms) * every_ms;
    let Some(end) = DateTime::<Utc>::from_timestamp_millis(end_ms) else {
        return Vec::new();
    };
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::days(1));
    let mut ends = Vec::new();
    match checked_until {
        Some(done) if done >= end => return ends,
        Some(done) => {
            let mut t = done + window;
            while t < end && ends.len() < MAX_CATCH_UP_WINDOWS {
                ends.push(t);
                t += window;
            }
        }
        None => {}
    }
    ends.push(end);
    ends
}

/// The alert a window rule raises for the window ending at `end`, if its rate crossed the
/// threshold on at least the rule's minimum volume. One alert per rule while it is not
/// resolved: each window that crosses again is an occurrence.
pub fn window_alert(
    rule: &AlertRule,
    tenant_id: Uuid,
    counts: &WindowCounts,
    end: DateTime<Utc>,
) -> Option<NewAlert> {
    let decision = rule.metric.counted_decision()?;
    let (window, (cmp, threshold)) = (rule.window?, rule.condition?);
    let total = counts.total();
    if total == 0 || total < u64::from(window.min_volume) {
        return None;
    }
    let counted = counts.of(decision);
    let rate = counted as f64 / total as f64;
    if !cmp.holds(rate, threshold) {
        return None;
    }
    let scope = rule
        .template_id
        .as_deref()
        .map_or_else(|| "all templates".to_string(), |t| format!("template {t}"));
    let start = end - chrono::Duration::seconds(i64::from(window.seconds));
    Some(NewAlert {
        id: Uuid::now_v7(),
        tenant_id,
        rule_id: rule.id,
        rule_name: rule.name.clone(),
        metric: rule.metric.as_str(),
        severity: rule.severity.as_str(),
        dedupe_key: format!("{}:window", rule.key()),
        template_id: rule.template_id.clone(),
        template_version_id: None,
        evaluation_id: None,
        value: Some(rate),
        threshold: Some(threshold),
        message: format!(
            "{} {rate:.3} is {} {threshold} over the {} s before {} on {scope} \
             ({counted} of {total} evaluations were {})",
            rule.metric.as_str().replace('_', " "),
            cmp.words(),
            window.seconds,
            end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            decision.as_str(),
        ),
        details: serde_json::json!({
            "comparison": cmp.as_str(), "window_seconds": window.seconds,
            "window_start": start, "window_end": end, "volume": total,
            "count": counted, "decision": decision.as_str(),
        }),
        delivery_status: DeliveryStatus::NoEndpoint.as_str(),
        created_at: now(),
    })
}

/// Checks every enabled window rule of every tenant whose next window has ended, stores
/// what they raise (with deliveries) and moves their progress; how many alerts were
/// raised. Replicas may all run this: a rule's check commits only where its progress
/// moved, so each window is counted once.
pub async fn check_window_rules(state: &AppState, now: DateTime<Utc>) -> Result<usize, ApiError> {
    let metrics: Vec<&str> = AlertMetric::ALL
        .into_iter()
        .filter(|m| m.is_window())
        .map(AlertMetric::as_str)
        .collect();
    let every = state.config().alerts.window_check_every;
    let mut raised = 0;
    for row in state.store().window_rules(&metrics).await? {
        let Some(rule) = AlertRule::of(&row) else {
            continue;
        };
        let Some(window) = rule.window else { continue };
        let length = std::time::Duration::from_secs(u64::from(window.seconds));
        let ends = window_ends(row.checked_until, now, every, length);
        let Some(&until) = ends.last() else { continue };
        let mut alerts = Vec::new();
        for end in ends {
            let start = end - chrono::Duration::seconds(i64::from(window.seconds));
            let mut counts = WindowCounts::default();
            for (decision, n) in state
                .store()
                .decision_counts(row.tenant_id, rule.template_id.as_deref(), start, end)
                .await?
            {
                if let Some(d) = Decision::parse(&decision) {
                    counts.add(d, u64::try_from(n).unwrap_or(0));
                }
            }
            alerts.extend(window_alert(&rule, row.tenant_id, &counts, end));
        }
        let n = alerts.len();
        if state
            .store()
            .commit_window_check(
                row.tenant_id,
                row.id,
                row.checked_until,
                until,
                alerts,
                &super::webhooks::deliveries,
            )
            .await?
        {
            raised += n;
        }
    }
    if raised > 0 {
        state.delivery_wakeup().notify_one();
    }
    Ok(raised)
}

/// The alert raised when preflight disables a tenant's webhook endpoint.
pub fn endpoint_disabled(
    tenant_id: Uuid,
    endpoint_id: Uuid,
    url: &str,
    why: &str,
    at: DateTime<Utc>,
) -> NewAlert {
    NewAlert {
        id: Uuid::now_v7(),
        tenant_id,
        rule_id: None,
        rule_name: "webhook endpoint disabled".into(),
        metric: AlertMetric::EndpointDisabled.as_str(),
        severity: Severity::Critical.as_str(),
        dedupe_key: format!("endpoint_disabled:{endpoint_id}"),
        template_id: None,
        template_version_id: None,
        evaluation_id: None,
        value: None,
        threshold: None,
        message: format!("webhook endpoint {url} was disabled: {why}; re-enable it with PATCH /v1/webhooks/{endpoint_id}"),
        details: serde_json::json!({"endpoint_id": endpoint_id, "url": url, "reason": why}),
        delivery_status: DeliveryStatus::NoEndpoint.as_str(),
        created_at: at.trunc_subsecs(6),
    }
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
    /// `drift`, `reliability`, the window rates `new_rate`, `reject_rate`, `review_rate`,
    /// `automation_rate` (all with `operator` and `threshold`), or the events
    /// `unknown_provider`, `change_point`, `extractor_changed`.
    pub metric: String,
    /// `gt`, `lt` or `eq`; threshold metrics only.
    pub operator: Option<String>,
    /// 0..1; threshold metrics only.
    pub threshold: Option<f64>,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Only evaluations matched to this template (not for `new_rate` and `reject_rate`,
    /// whose decisions have no template).
    pub template_id: Option<String>,
    pub enabled: Option<bool>,
    /// Window metrics: the sliding window, 10 to 86400 seconds (default 900).
    pub window_seconds: Option<u32>,
    /// Window metrics: the least number of evaluations in a window for its rate to count,
    /// 1 to 1000000 (default 20).
    pub min_volume: Option<u32>,
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
    /// Window metrics only.
    pub window_seconds: Option<u32>,
    pub min_volume: Option<u32>,
    /// Window metrics: the end of the last window checked.
    pub checked_until: Option<DateTime<Utc>>,
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
            window_seconds: rule.window.map(|w| w.seconds),
            min_volume: rule.window.map(|w| w.min_volume),
            checked_until: row.checked_until,
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
    let metric = AlertMetric::parse(&spec.metric).filter(|m| m.is_rule_metric());
    v.check(
        metric.is_some(),
        "metric",
        &format!("must be {}", AlertMetric::rule_names()),
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
    let window = metric.is_some_and(AlertMetric::is_window);
    if let Some(w) = spec.window_seconds {
        v.check(window, "window_seconds", "only window metrics take one");
        v.check(
            WINDOW_SECONDS.contains(&w),
            "window_seconds",
            "must be 10 to 86400",
        );
    }
    if let Some(n) = spec.min_volume {
        v.check(window, "min_volume", "only window metrics take one");
        v.check(
            MIN_VOLUME.contains(&n),
            "min_volume",
            "must be 1 to 1000000",
        );
    }
    if let Some(t) = &spec.template_id {
        v.check(
            valid_template_id(t),
            "template_id",
            "is not a valid template_id",
        );
        v.check(
            metric.is_none_or(AlertMetric::takes_template_scope),
            "template_id",
            "new_rate and reject_rate count decisions that have no template; they are tenant-wide",
        );
    }
    v.into_result()?;
    let (window_seconds, min_volume) = if window {
        (
            Some(spec.window_seconds.unwrap_or(DEFAULT_WINDOW_SECONDS) as i32),
            Some(spec.min_volume.unwrap_or(DEFAULT_MIN_VOLUME) as i32),
        )
    } else {
        (None, None)
    };
    Ok(AlertRuleRow {
        name: spec.name.trim().to_string(),
        metric: spec.metric.clone(),
        operator: spec.operator.clone(),
        threshold: spec.threshold,
        severity: spec.severity.clone(),
        template_id: spec.template_id.clone(),
        enabled: spec.enabled.unwrap_or(base.enabled),
        window_seconds,
        min_volume,
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

pub async fn rule_view(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<AlertRuleView, ApiError> {
    AlertRuleView::of(&get_rule(state, tenant_id, id).await?)
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
            window_seconds: None,
            min_volume: None,
            checked_until: None,
            created_at: now,
            updated_at: now,
        },
    )?;
    // A window rule watches from its creation on: a restart before its first check
    // still covers the evaluations since.
    let row = AlertRuleRow {
        checked_until: row.window_seconds.map(|_| now),
        ..row
    };
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
    pub window_seconds: Option<u32>,
    pub min_volume: Option<u32>,
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
    let (current_enabled, current_metric, current_window) = (
        current.enabled,
        current.metric.clone(),
        current.window_seconds,
    );
    let metric = change.metric.unwrap_or_else(|| current.metric.clone());
    // A rule that becomes an event rule drops its threshold unless one is sent (and
    // refused); one that stays a threshold rule keeps the fields not sent.
    let keeps_threshold = AlertMetric::parse(&metric).is_some_and(AlertMetric::has_threshold);
    let keeps_window = AlertMetric::parse(&metric).is_some_and(AlertMetric::is_window);
    let kept = |given: Option<u32>, stored: Option<i32>| {
        given.or(stored
            .filter(|_| keeps_window)
            .and_then(|v| u32::try_from(v).ok()))
    };
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
        window_seconds: kept(change.window_seconds, current.window_seconds),
        min_volume: kept(change.min_volume, current.min_volume),
    };
    let row = checked(
        &spec,
        AlertRuleRow {
            updated_at: now(),
            ..current
        },
    )?;
    let event = audited(event, &row);
    // A window rule enabled again, or one that now watches another rate or window, starts
    // from now: its catch-up must not look back over a time it was not watching.
    let restarted = row.window_seconds.is_some()
        && (row.enabled && !current_enabled
            || row.metric != current_metric
            || row.window_seconds != current_window);
    if !state.store().save_alert_rule(&row, &event).await? {
        return Err(rule_not_found());
    }
    let mut row = row;
    if restarted {
        let at = now();
        state
            .store()
            .restart_window_check(tenant_id, id, at)
            .await?;
        row.checked_until = Some(at);
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
            "window_seconds": row.window_seconds, "min_volume": row.min_volume,
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
            window_seconds: None,
            min_volume: None,
            checked_until: None,
            created_at: now,
            updated_at: now,
        };
        let rules = effective_rules(&[row("change_point", true), row("unknown_provider", false)]);
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].metric, AlertMetric::ChangePoint);
        // A value from a newer version is skipped, not misread.
        assert!(effective_rules(&[row("latency", true)]).is_empty());
    }

    fn window_rule(metric: AlertMetric, cmp: Comparison, threshold: f64) -> AlertRule {
        AlertRule {
            id: Some(Uuid::nil()),
            name: "w".into(),
            metric,
            condition: Some((cmp, threshold)),
            severity: Severity::Warning,
            template_id: None,
            enabled: true,
            window: Some(RuleWindow {
                seconds: 900,
                min_volume: 10,
            }),
        }
    }

    fn counts(matched: u64, review: u64, new: u64, reject: u64) -> WindowCounts {
        WindowCounts([matched, review, new, reject])
    }

    #[test]
    fn a_window_rule_fires_past_its_threshold_and_only_on_enough_volume() {
        let end = Utc::now();
        let reject = window_rule(AlertMetric::RejectRate, Comparison::Gt, 0.2);
        // 3 of 10 rejected: 0.3 > 0.2.
        let a = window_alert(&reject, Uuid::nil(), &counts(7, 0, 0, 3), end).unwrap();
        assert_eq!(a.metric, "reject_rate");
        assert!((a.value.unwrap() - 0.3).abs() < 1e-12);
        assert_eq!(a.evaluation_id, None);
        assert_eq!(a.details["volume"], 10);
        assert_eq!(a.details["count"], 3);
        // Exactly at the threshold, or below: nothing.
        assert!(window_alert(&reject, Uuid::nil(), &counts(8, 0, 0, 2), end).is_none());
        // The same share on too few evaluations says nothing.
        assert!(window_alert(&reject, Uuid::nil(), &counts(6, 0, 0, 3), end).is_none());
        assert!(window_alert(&reject, Uuid::nil(), &WindowCounts::default(), end).is_none());

        let automation = window_rule(AlertMetric::AutomationRate, Comparison::Lt, 0.8);
        assert!(window_alert(&automation, Uuid::nil(), &counts(8, 2, 0, 0), end).is_none());
        let low = window_alert(&automation, Uuid::nil(), &counts(7, 2, 1, 0), end).unwrap();
        assert!(
            low.message.contains("7 of 10 evaluations were MATCH"),
            "{}",
            low.message
        );
        let review = window_rule(AlertMetric::ReviewRate, Comparison::Gt, 0.1);
        assert!(window_alert(&review, Uuid::nil(), &counts(5, 5, 0, 0), end).is_some());
        let new = window_rule(AlertMetric::NewRate, Comparison::Gt, 0.1);
        assert!(window_alert(&new, Uuid::nil(), &counts(5, 5, 0, 0), end).is_none());
        // One alert per rule while unresolved: every window has the same key.
        let later = window_alert(&review, Uuid::nil(), &counts(1, 9, 0, 0), end).unwrap();
        let first = window_alert(&review, Uuid::nil(), &counts(5, 5, 0, 0), end).unwrap();
        assert_eq!(later.dedupe_key, first.dedupe_key);
        // The per-evaluation rules never raise a window metric.
        let o = observed(0.9, 0.1);
        assert!(raised(&[reject], &o, &NOTHING).is_empty());
    }

    #[test]
    fn window_checks_fall_on_multiples_of_the_interval_and_cover_a_gap_with_whole_windows() {
        let at = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap();
        let every = std::time::Duration::from_secs(15);
        let window = std::time::Duration::from_secs(60);
        // A rule never checked: the window ending at the last multiple of 15 s.
        assert_eq!(
            window_ends(None, at(1_000_007), every, window),
            [at(1_000_005)]
        );
        // Checked up to that end already: nothing until the next multiple.
        assert!(window_ends(Some(at(1_000_005)), at(1_000_019), every, window).is_empty());
        // The next tick: one window.
        assert_eq!(
            window_ends(Some(at(1_000_005)), at(1_000_020), every, window),
            [at(1_000_020)]
        );
        // Down for 200 s: back-to-back windows from where it stopped, then the window
        // ending at the last multiple.
        assert_eq!(
            window_ends(Some(at(1_000_005)), at(1_000_205), every, window),
            [at(1_000_065), at(1_000_125), at(1_000_185), at(1_000_200)]
        );
        // Down for a year: at most MAX_CATCH_UP_WINDOWS windows, the last ending now.
        let ends = window_ends(Some(at(0)), at(40_000_005), every, window);
        assert_eq!(ends.len(), MAX_CATCH_UP_WINDOWS + 1);
        assert_eq!(*ends.last().unwrap(), at(40_000_005));
    }

    #[test]
    fn rule_specs_for_windows_are_checked() {
        let base = |metric: &str| RuleSpec {
            name: "r".into(),
            metric: metric.into(),
            operator: Some("gt".into()),
            threshold: Some(0.2),
            severity: "warning".into(),
            template_id: None,
            enabled: None,
            window_seconds: None,
            min_volume: None,
        };
        let row = || AlertRuleRow {
            id: Uuid::nil(),
            tenant_id: Uuid::nil(),
            name: String::new(),
            metric: String::new(),
            operator: None,
            threshold: None,
            severity: String::new(),
            template_id: None,
            enabled: true,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            window_seconds: None,
            min_volume: None,
            checked_until: None,
        };
        let ok = checked(&base("reject_rate"), row()).unwrap();
        assert_eq!(ok.window_seconds, Some(DEFAULT_WINDOW_SECONDS as i32));
        assert_eq!(ok.min_volume, Some(DEFAULT_MIN_VOLUME as i32));
        let mut scoped = base("new_rate");
        scoped.template_id = Some("invoice".into());
        assert!(checked(&scoped, row()).is_err());
        scoped.metric = "review_rate".into();
        assert!(checked(&scoped, row()).is_ok());
        let mut short = base("review_rate");
        short.window_seconds = Some(5);
        assert!(checked(&short, row()).is_err());
        let mut windowed_drift = base("drift");
        windowed_drift.min_volume = Some(5);
        assert!(checked(&windowed_drift, row()).is_err());
        let drift = checked(&base("drift"), row()).unwrap();
        assert_eq!(drift.window_seconds, None);
        // preflight's own alert is not a rule a tenant defines.
        let mut own = base("endpoint_disabled");
        own.operator = None;
        own.threshold = None;
        assert!(checked(&own, row()).is_err());
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
