//! Webhooks: the tenant's endpoints, which alerts each takes, what is sent, and what a
//! failed attempt leads to.
//!
//! Every new alert is queued for each enabled endpoint that takes it, in the transaction
//! that raised the alert (`storage::webhooks`), and the delivery worker (`crate::delivery`)
//! sends it in the [Standard Webhooks](https://www.standardwebhooks.com/) format: at least
//! once, never again after a receiver answered 2xx (a redelivery is asked for explicitly),
//! in order per template. A failed attempt is retried on the schedule of
//! `WEBHOOK_RETRY_SECONDS` (about three days by default) with jitter, later if the receiver
//! sent `Retry-After`; `410 Gone` disables the endpoint.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::alerts::{AlertMetric, Severity};
use super::templates::valid_template_id;
use crate::error::{ApiError, Violations};
use crate::outbound::{new_secret, secret_bytes, Reply};
use crate::state::AppState;
use crate::storage::alerts::NewAlert;
use crate::storage::identity::NewAuditEvent;
use crate::storage::webhooks::{
    AttemptEffects, AttemptRow, DeliveryRow, DeliveryStep, DueDelivery, EndpointHealth,
    EndpointRow, NewDelivery,
};

/// The most endpoints one tenant may have.
pub const MAX_ENDPOINTS: usize = 20;
/// How long the previous secret is still signed with after a rotation.
pub const ROTATION_OVERLAP_HOURS: i64 = 24;
const MAX_URL_LEN: usize = 2000;
const MAX_DESCRIPTION_LEN: usize = 500;
/// The event type of a new alert.
pub const ALERT_CREATED: &str = "alert.created";

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// An endpoint as a client describes it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// `https://…` (or `http://`); checked against the SSRF guard.
    pub url: String,
    pub description: Option<String>,
    /// Alert metrics it takes (`drift`, `reliability`, …); absent or empty: every metric.
    pub metrics: Option<Vec<String>>,
    /// The least severity it takes: `info` (default), `warning` or `critical`.
    pub min_severity: Option<String>,
    /// Only alerts of this template.
    pub template_id: Option<String>,
    pub enabled: Option<bool>,
}

/// A change to some fields of an endpoint; `template_id: null` widens it to every template.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub description: Option<String>,
    pub metrics: Option<Vec<String>>,
    pub min_severity: Option<String>,
    #[serde(default, with = "super::alerts::double_option")]
    #[schema(value_type = Option<String>)]
    pub template_id: Option<Option<String>>,
    pub enabled: Option<bool>,
}

/// An endpoint as the API shows it: never its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EndpointView {
    pub id: Uuid,
    pub url: String,
    pub description: Option<String>,
    /// Empty: every metric.
    pub metrics: Vec<String>,
    pub min_severity: String,
    pub template_id: Option<String>,
    pub enabled: bool,
    /// Why preflight disabled it (e.g. the receiver answered 410 Gone).
    pub disabled_reason: Option<String>,
    /// Until when the previous secret is still signed with, after a rotation.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// How its deliveries have been going (the circuit breaker's state).
    pub health: EndpointHealth,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&EndpointRow> for EndpointView {
    fn from(e: &EndpointRow) -> Self {
        EndpointView {
            id: e.id,
            url: e.url.clone(),
            description: e.description.clone(),
            metrics: metrics_of(&e.metrics),
            min_severity: e.min_severity.clone(),
            template_id: e.template_id.clone(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason.clone(),
            previous_secret_until: e.previous_secret_until,
            health: e.health.clone(),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// An endpoint with its secret: the answer of creation and rotation, the only time the
/// secret is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// `whsec_…`: verify `webhook-signature` with it. Store it now.
    pub secret: String,
}

fn metrics_of(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect()
}

/// Checks the fields of an endpoint (the URL against the guard) into `base`.
async fn checked(
    state: &AppState,
    url: &str,
    description: Option<&str>,
    metrics: &[String],
    min_severity: &str,
    template_id: Option<&str>,
    base: EndpointRow,
) -> Result<EndpointRow, ApiError> {
    let mut v = Violations::default();
    if url.len() > MAX_URL_LEN {
        v.add("url", "must be at most 2000 characters");
    } else if let Err(why) = state.outbound().guard().check_url(url).await {
        v.add("url", why);
    }
    if let Some(d) = description {
        v.check(
            d.chars().count() <= MAX_DESCRIPTION_LEN,
            "description",
            "must be at most 500 characters",
        );
    }
    for (i, m) in metrics.iter().enumerate() {
        v.check(
            AlertMetric::parse(m).is_some(),
            &format!("metrics[{i}]"),
            &format!("must be {}", AlertMetric::names()),
        );
    }
    v.check(
        Severity::parse(min_severity).is_some(),
        "min_severity",
        "must be info, warning or critical",
    );
    if let Some(t) = template_id {
        v.check(
            valid_template_id(t),
            "template_id",
            "is not a valid template_id",
        );
    }
    v.into_result()?;
    let mut metrics = metrics.to_vec();
    metrics.sort();
    metrics.dedup();
    Ok(EndpointRow {
        url: url.to_string(),
        description: description.map(str::to_string),
        metrics: metrics.join(","),
        min_severity: min_severity.to_string(),
        template_id: template_id.map(str::to_string),
        ..base
    })
}

fn not_found() -> ApiError {
    ApiError::NotFound("webhook endpoint".into())
}

fn audited(event: NewAuditEvent, e: &EndpointRow) -> NewAuditEvent {
    NewAuditEvent {
        target: Some(format!("webhook:{}", e.id)),
        // Never the secret, nor the URL's query (it may hold a receiver's token).
        details: serde_json::json!({
            "host": url::Url::parse(&e.url).ok().and_then(|u| u.host_str().map(str::to_string)),
            "metrics": e.metrics, "min_severity": e.min_severity,
            "template_id": e.template_id, "enabled": e.enabled,
        }),
        ..event
    }
}

pub async fn create(
    state: &AppState,
    tenant_id: Uuid,
    spec: EndpointSpec,
    event: NewAuditEvent,
) -> Result<EndpointWithSecret, ApiError> {
    let secret = new_secret();
    let at = now();
    let base = EndpointRow {
        id: Uuid::now_v7(),
        tenant_id,
        url: String::new(),
        description: None,
        metrics: String::new(),
        min_severity: String::new(),
        template_id: None,
        enabled: spec.enabled.unwrap_or(true),
        disabled_reason: None,
        secret_sealed: state.sealer().seal(&secret),
        previous_secret_sealed: None,
        previous_secret_until: None,
        created_at: at,
        updated_at: at,
        health: EndpointHealth::default(),
    };
    let row = checked(
        state,
        &spec.url,
        spec.description.as_deref(),
        spec.metrics.as_deref().unwrap_or_default(),
        spec.min_severity.as_deref().unwrap_or("info"),
        spec.template_id.as_deref(),
        base,
    )
    .await?;
    if state.store().list_endpoints(tenant_id).await?.len() >= MAX_ENDPOINTS {
        return Err(ApiError::Conflict(format!(
            "a tenant has at most {MAX_ENDPOINTS} webhook endpoints; delete one first"
        )));
    }
    state
        .store()
        .create_endpoint(&row, &audited(event, &row))
        .await?;
    Ok(EndpointWithSecret {
        endpoint: EndpointView::from(&row),
        secret,
    })
}

pub async fn list(state: &AppState, tenant_id: Uuid) -> Result<Vec<EndpointView>, ApiError> {
    let rows = state.store().list_endpoints(tenant_id).await?;
    Ok(rows.iter().map(EndpointView::from).collect())
}

pub async fn get(state: &AppState, tenant_id: Uuid, id: Uuid) -> Result<EndpointRow, ApiError> {
    state
        .store()
        .get_endpoint(tenant_id, id)
        .await?
        .ok_or_else(not_found)
}

pub async fn update(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
    change: EndpointChange,
    event: NewAuditEvent,
) -> Result<EndpointView, ApiError> {
    let current = get(state, tenant_id, id).await?;
    let url = change.url.unwrap_or_else(|| current.url.clone());
    let description = change.description.or_else(|| current.description.clone());
    let metrics = change
        .metrics
        .unwrap_or_else(|| metrics_of(&current.metrics));
    let min_severity = change
        .min_severity
        .unwrap_or_else(|| current.min_severity.clone());
    let template_id = change
        .template_id
        .unwrap_or_else(|| current.template_id.clone());
    let enabled = change.enabled.unwrap_or(current.enabled);
    let current_enabled = current.enabled;
    let base = EndpointRow {
        enabled,
        // Enabling it again clears why it was disabled.
        disabled_reason: if enabled {
            None
        } else {
            current.disabled_reason.clone()
        },
        updated_at: now(),
        ..current
    };
    let row = checked(
        state,
        &url,
        description.as_deref(),
        &metrics,
        &min_severity,
        template_id.as_deref(),
        base,
    )
    .await?;
    let enabled_again = row.enabled && !current_enabled;
    if !state
        .store()
        .save_endpoint(&row, &audited(event, &row))
        .await?
    {
        return Err(not_found());
    }
    let mut row = row;
    if enabled_again {
        // A tenant who enabled it again starts it with a clean slate (closed circuit, no
        // failure streak), or the next failure would disable it at once.
        state.store().reset_endpoint_health(tenant_id, id).await?;
        row.health = EndpointHealth::default();
    }
    Ok(EndpointView::from(&row))
}

pub async fn delete(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
    event: NewAuditEvent,
) -> Result<(), ApiError> {
    let event = NewAuditEvent {
        target: Some(format!("webhook:{id}")),
        ..event
    };
    if !state.store().delete_endpoint(tenant_id, id, &event).await? {
        return Err(not_found());
    }
    Ok(())
}

/// A new secret; the previous one is still signed with for [`ROTATION_OVERLAP_HOURS`].
pub async fn rotate_secret(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
    event: NewAuditEvent,
) -> Result<EndpointWithSecret, ApiError> {
    let current = get(state, tenant_id, id).await?;
    let secret = new_secret();
    let at = now();
    let row = EndpointRow {
        previous_secret_sealed: Some(current.secret_sealed.clone()),
        previous_secret_until: Some(at + chrono::Duration::hours(ROTATION_OVERLAP_HOURS)),
        secret_sealed: state.sealer().seal(&secret),
        updated_at: at,
        ..current
    };
    if !state
        .store()
        .save_endpoint(&row, &audited(event, &row))
        .await?
    {
        return Err(not_found());
    }
    Ok(EndpointWithSecret {
        endpoint: EndpointView::from(&row),
        secret,
    })
}

/// The key bytes to sign with at `at`: the current secret, and the previous one while the
/// rotation overlap lasts. An unreadable secret (sealed under another `API_KEY_SALT`) is
/// left out, so such an endpoint fails its attempts visibly instead of signing wrongly.
pub fn signing_keys(
    state: &AppState,
    current: &str,
    previous: Option<&str>,
    previous_until: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> Vec<Vec<u8>> {
    let open = |sealed: &str| state.sealer().open(sealed).and_then(|s| secret_bytes(&s));
    let mut keys: Vec<Vec<u8>> = open(current).into_iter().collect();
    if let (Some(p), Some(until)) = (previous, previous_until) {
        if at < until {
            keys.extend(open(p));
        }
    }
    keys
}

/// Whether an endpoint takes an alert: its metrics (all when empty), its least severity,
/// its template.
pub fn takes(e: &EndpointRow, alert: &NewAlert) -> bool {
    let metrics = metrics_of(&e.metrics);
    let severity_ok = match (
        Severity::parse(&e.min_severity),
        Severity::parse(alert.severity),
    ) {
        (Some(min), Some(s)) => s >= min,
        _ => false,
    };
    (metrics.is_empty() || metrics.iter().any(|m| m == alert.metric))
        && severity_ok
        && (e.template_id.is_none() || e.template_id == alert.template_id)
}

/// The event body of a new alert.
pub fn payload(alert: &NewAlert) -> serde_json::Value {
    serde_json::json!({
        "type": ALERT_CREATED,
        "timestamp": alert.created_at,
        "data": {
            "id": alert.id, "rule_id": alert.rule_id, "rule_name": alert.rule_name,
            "metric": alert.metric, "severity": alert.severity, "status": "open",
            "template_id": alert.template_id, "template_version_id": alert.template_version_id,
            "evaluation_id": alert.evaluation_id, "value": alert.value,
            "threshold": alert.threshold, "message": alert.message, "details": alert.details,
            "created_at": alert.created_at,
        }
    })
}

/// The deliveries of a new alert to the endpoints of its tenant that take it; the alert is
/// `pending` when there is one, else it stays `no_endpoint`.
pub fn deliveries(alert: &mut NewAlert, endpoints: &[EndpointRow]) -> Vec<NewDelivery> {
    let body = payload(alert);
    let to: Vec<NewDelivery> = endpoints
        .iter()
        .filter(|e| e.enabled && e.tenant_id == alert.tenant_id && takes(e, alert))
        .map(|e| NewDelivery {
            id: Uuid::now_v7(),
            tenant_id: alert.tenant_id,
            endpoint_id: e.id,
            event_id: alert.id,
            event_type: ALERT_CREATED,
            // One template's events stay in order; events without a template in theirs.
            ordering_key: alert
                .template_version_id
                .map_or_else(|| "tenant".to_string(), |t| t.to_string()),
            payload: body.clone(),
            created_at: alert.created_at,
        })
        .collect();
    if !to.is_empty() {
        alert.delivery_status = super::alerts::DeliveryStatus::Pending.as_str();
    }
    to
}

/// Deliveries waiting to be sent (of one tenant, or of all for the process's gauges), and
/// how many seconds the oldest has waited.
pub async fn backlog(
    state: &AppState,
    tenant_id: Option<Uuid>,
) -> Result<(i64, Option<f64>), ApiError> {
    let (pending, oldest) = state.store().delivery_backlog(tenant_id).await?;
    let waited = oldest.map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0);
    Ok((pending, waited))
}

/// What an attempt's reply leads to. `attempts` counts this one; `jitter` in 0..1 spreads
/// retries of many deliveries (the worker draws it).
pub fn next_step(
    reply: &Reply,
    attempts: usize,
    schedule: &[Duration],
    now: DateTime<Utc>,
    jitter: f64,
) -> DeliveryStep {
    match reply.status {
        Some(s) if (200..300).contains(&s) => return DeliveryStep::Delivered,
        Some(410) => {
            return DeliveryStep::FailedAndDisable("the receiver answered 410 Gone".into())
        }
        _ => {}
    }
    let Some(wait) = schedule.get(attempts.saturating_sub(1)) else {
        return DeliveryStep::Failed;
    };
    // 80 % to 120 % of the scheduled wait, and never sooner than the receiver asked.
    let spread = wait.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0));
    let wait = reply.retry_after.map_or(spread, |r| r.max(spread));
    let wait = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::days(7));
    DeliveryStep::Retry(now + wait)
}

/// Failed attempts in a row that trip an endpoint's circuit.
pub const TRIP_AFTER_FAILURES: i32 = 5;
/// The longest a tripped circuit stays open between probes.
pub const MAX_CIRCUIT_COOLDOWN: Duration = Duration::from_secs(3600);

/// When an endpoint's circuit opens and when it is given up on.
#[derive(Debug, Clone, Copy)]
pub struct HealthPolicy {
    /// How long the circuit stays open after tripping; doubled by each failed probe.
    pub cooldown: Duration,
    /// Failing for this long (with the circuit tripped) disables the endpoint.
    pub disable_after: Duration,
}

/// An endpoint's health after an attempt, and why to disable it if it should be: a
/// success closes the circuit; [`TRIP_AFTER_FAILURES`] failures in a row open it for the
/// cooldown (each further failure, which is then a probe, doubles it up to
/// [`MAX_CIRCUIT_COOLDOWN`]); failing for `disable_after` disables the endpoint, as does a
/// step that says so (410 Gone).
pub fn health_after(
    policy: &HealthPolicy,
    before: &EndpointHealth,
    step: &DeliveryStep,
    at: DateTime<Utc>,
) -> (EndpointHealth, Option<String>) {
    if matches!(step, DeliveryStep::Delivered) {
        return (EndpointHealth::default(), None);
    }
    let failures = before.consecutive_failures.saturating_add(1);
    let failing_since = before.failing_since.unwrap_or(at);
    let circuit_open_until = (failures >= TRIP_AFTER_FAILURES).then(|| {
        let doublings = u32::try_from(failures - TRIP_AFTER_FAILURES)
            .unwrap_or(0)
            .min(16);
        let wait = policy
            .cooldown
            .saturating_mul(1 << doublings)
            .min(MAX_CIRCUIT_COOLDOWN);
        at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1))
    });
    let failing_for = (at - failing_since).to_std().unwrap_or_default();
    let disable = match step {
        DeliveryStep::FailedAndDisable(why) => Some(why.clone()),
        _ if failures >= TRIP_AFTER_FAILURES && failing_for >= policy.disable_after => {
            Some(format!(
                "every attempt failed for {} s ({failures} in a row since {})",
                failing_for.as_secs(),
                failing_since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ))
        }
        _ => None,
    };
    let after = EndpointHealth {
        consecutive_failures: failures,
        failing_since: Some(failing_since),
        circuit_open_until,
    };
    (after, disable)
}

/// Which due deliveries (in queue order) a claim takes: all of endpoints whose circuit is
/// closed, and of an endpoint whose tripped circuit has cooled down only the first — the
/// single probe that decides whether it closes.
pub fn claimable(due: &[DueDelivery]) -> Vec<usize> {
    let mut probed: Vec<Uuid> = Vec::new();
    (0..due.len())
        .filter(|&i| {
            let d = &due[i];
            if !d.tripped {
                return true;
            }
            if probed.contains(&d.endpoint_id) {
                return false;
            }
            probed.push(d.endpoint_id);
            true
        })
        .collect()
}

/// One finished attempt, as the domain judges it (see [`AttemptEffects`]).
pub struct Attempt {
    pub step: DeliveryStep,
    pub policy: HealthPolicy,
    pub tenant_id: Uuid,
    pub endpoint_id: Uuid,
    pub url: String,
    pub at: DateTime<Utc>,
}

impl AttemptEffects for Attempt {
    fn step(&self) -> &DeliveryStep {
        &self.step
    }

    fn health(&self, before: &EndpointHealth) -> (EndpointHealth, Option<String>) {
        health_after(&self.policy, before, &self.step, self.at)
    }

    fn disabled_alert(&self, reason: &str) -> NewAlert {
        super::alerts::endpoint_disabled(
            self.tenant_id,
            self.endpoint_id,
            &self.url,
            reason,
            self.at,
        )
    }

    fn deliveries(&self, alert: &mut NewAlert, endpoints: &[EndpointRow]) -> Vec<NewDelivery> {
        deliveries(alert, endpoints)
    }
}

/// The result of a test delivery.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TestResult {
    /// Whether the receiver answered 2xx.
    pub ok: bool,
    pub status_code: Option<u16>,
    pub latency_ms: f64,
    pub error: Option<String>,
    /// The first kilobyte of the receiver's answer.
    pub response_excerpt: String,
}

/// Sends a signed sample event to the endpoint now and reports what came back; nothing is
/// queued or retried.
pub async fn send_test(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<TestResult, ApiError> {
    let e = get(state, tenant_id, id).await?;
    let at = now();
    let event_id = Uuid::now_v7();
    let body = serde_json::json!({
        "type": "webhook.test",
        "timestamp": at,
        "data": {"endpoint_id": e.id, "message": "a test event from preflight"},
    });
    let body = serde_json::to_vec(&body).map_err(ApiError::internal)?;
    let keys = signing_keys(
        state,
        &e.secret_sealed,
        e.previous_secret_sealed.as_deref(),
        e.previous_secret_until,
        at,
    );
    let reply = state
        .outbound()
        .send(&e.url, &event_id.to_string(), &body, &keys)
        .await;
    Ok(TestResult {
        ok: reply.status.is_some_and(|s| (200..300).contains(&s)),
        status_code: reply.status,
        latency_ms: reply.latency.as_secs_f64() * 1000.0,
        error: reply.error,
        response_excerpt: reply.excerpt,
    })
}

/// The statuses a delivery can have.
pub const DELIVERY_STATUSES: [&str; 4] = ["pending", "sending", "delivered", "failed"];

pub async fn list_deliveries(
    state: &AppState,
    tenant_id: Uuid,
    endpoint_id: Uuid,
    status: Option<&str>,
    before_seq: Option<i64>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, ApiError> {
    get(state, tenant_id, endpoint_id).await?;
    Ok(state
        .store()
        .list_deliveries(tenant_id, endpoint_id, status, before_seq, limit)
        .await?)
}

/// Which deliveries to queue again.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeliverRange {
    /// Deliveries created at or after this time…
    pub from: DateTime<Utc>,
    /// …and before this one (at most 31 days after `from`).
    pub to: DateTime<Utc>,
    /// `failed` (the dead letters) or `delivered`; absent: both.
    pub status: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Requeued {
    /// How many deliveries were queued again.
    pub queued: u64,
}

/// Queues the endpoint's delivered or failed deliveries of a time range again (after a
/// receiver outage, say); each keeps its event id.
pub async fn redeliver_range(
    state: &AppState,
    tenant_id: Uuid,
    endpoint_id: Uuid,
    range: RedeliverRange,
    event: NewAuditEvent,
) -> Result<Requeued, ApiError> {
    let mut v = Violations::default();
    v.check(range.from < range.to, "to", "must be after from");
    v.check(
        range.to - range.from <= chrono::Duration::days(31),
        "to",
        "must be at most 31 days after from",
    );
    if let Some(s) = &range.status {
        v.check(
            matches!(s.as_str(), "failed" | "delivered"),
            "status",
            "must be failed or delivered",
        );
    }
    v.into_result()?;
    get(state, tenant_id, endpoint_id).await?;
    let event = NewAuditEvent {
        target: Some(format!("webhook:{endpoint_id}")),
        ..event
    };
    let queued = state
        .store()
        .redeliver_range(
            tenant_id,
            endpoint_id,
            range.from,
            range.to,
            range.status.as_deref(),
            now(),
            &event,
        )
        .await?;
    Ok(Requeued { queued })
}

/// One delivery with its attempts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: DeliveryRow,
    pub attempts_log: Vec<AttemptRow>,
}

pub async fn delivery(
    state: &AppState,
    tenant_id: Uuid,
    endpoint_id: Uuid,
    delivery_id: Uuid,
) -> Result<DeliveryDetail, ApiError> {
    let found = state
        .store()
        .get_delivery(tenant_id, endpoint_id, delivery_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("delivery".into()))?;
    let attempts_log = state.store().list_attempts(tenant_id, delivery_id).await?;
    Ok(DeliveryDetail {
        delivery: found,
        attempts_log,
    })
}

/// Queues a delivered or failed delivery again (same event id: receivers deduplicate).
pub async fn redeliver(
    state: &AppState,
    tenant_id: Uuid,
    endpoint_id: Uuid,
    delivery_id: Uuid,
    event: NewAuditEvent,
) -> Result<(), ApiError> {
    get(state, tenant_id, endpoint_id).await?;
    let event = NewAuditEvent {
        target: Some(format!("webhook_delivery:{delivery_id}")),
        ..event
    };
    if !state
        .store()
        .redeliver(tenant_id, endpoint_id, delivery_id, now(), &event)
        .await?
    {
        return Err(ApiError::Conflict(
            "no such delivered or failed delivery of this endpoint (a pending one is still queued)"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: Option<u16>, retry_after: Option<u64>) -> Reply {
        Reply {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            excerpt: String::new(),
            error: None,
            latency: Duration::ZERO,
        }
    }

    #[test]
    fn failures_retry_on_the_schedule_with_jitter_and_retry_after_then_give_up() {
        let schedule = [Duration::from_secs(10), Duration::from_secs(100)];
        let t0 = Utc::now();
        assert!(matches!(
            next_step(&reply(Some(204), None), 1, &schedule, t0, 0.5),
            DeliveryStep::Delivered
        ));
        assert!(matches!(
            next_step(&reply(Some(410), None), 1, &schedule, t0, 0.5),
            DeliveryStep::FailedAndDisable(_)
        ));
        let DeliveryStep::Retry(at) = next_step(&reply(Some(500), None), 1, &schedule, t0, 0.0)
        else {
            panic!("a 500 is retried")
        };
        assert_eq!((at - t0).num_seconds(), 8, "80 % of the first wait");
        let DeliveryStep::Retry(at) = next_step(&reply(None, None), 2, &schedule, t0, 1.0) else {
            panic!("no answer is retried")
        };
        assert_eq!((at - t0).num_seconds(), 120, "120 % of the second wait");
        let DeliveryStep::Retry(at) =
            next_step(&reply(Some(429), Some(3600)), 1, &schedule, t0, 0.5)
        else {
            panic!("a 429 is retried")
        };
        assert_eq!(
            (at - t0).num_seconds(),
            3600,
            "never sooner than Retry-After"
        );
        assert!(matches!(
            next_step(&reply(Some(500), None), 3, &schedule, t0, 0.5),
            DeliveryStep::Failed
        ));
    }

    #[test]
    fn the_circuit_trips_after_failures_in_a_row_backs_off_and_closes_on_a_success() {
        let policy = HealthPolicy {
            cooldown: Duration::from_secs(30),
            disable_after: Duration::from_secs(3600),
        };
        let t0 = Utc::now();
        let failed = DeliveryStep::Retry(t0);
        let mut h = EndpointHealth::default();
        for i in 1..TRIP_AFTER_FAILURES {
            let (next, disable) = health_after(&policy, &h, &failed, t0);
            assert_eq!(next.consecutive_failures, i);
            assert_eq!(next.failing_since, Some(t0));
            assert_eq!(
                next.circuit_open_until, None,
                "closed before {TRIP_AFTER_FAILURES}"
            );
            assert!(disable.is_none());
            h = next;
        }
        let (tripped, _) = health_after(&policy, &h, &failed, t0);
        assert_eq!(
            tripped.circuit_open_until,
            Some(t0 + chrono::Duration::seconds(30))
        );
        // Each failed probe doubles the wait, up to an hour.
        let (probe, _) = health_after(&policy, &tripped, &failed, t0);
        assert_eq!(
            probe.circuit_open_until,
            Some(t0 + chrono::Duration::seconds(60))
        );
        let long = EndpointHealth {
            consecutive_failures: 40,
            ..probe.clone()
        };
        let (capped, _) = health_after(&policy, &long, &failed, t0);
        assert_eq!(
            capped.circuit_open_until,
            Some(t0 + chrono::Duration::hours(1))
        );
        // A success closes it and forgets the streak.
        let (closed, _) = health_after(&policy, &probe, &DeliveryStep::Delivered, t0);
        assert_eq!(closed, EndpointHealth::default());
    }

    #[test]
    fn an_endpoint_failing_for_long_enough_or_gone_is_disabled() {
        let policy = HealthPolicy {
            cooldown: Duration::from_secs(30),
            disable_after: Duration::from_secs(3600),
        };
        let t0 = Utc::now();
        let failing = EndpointHealth {
            consecutive_failures: TRIP_AFTER_FAILURES,
            failing_since: Some(t0),
            circuit_open_until: Some(t0),
        };
        let failed = DeliveryStep::Retry(t0);
        let (_, early) = health_after(
            &policy,
            &failing,
            &failed,
            t0 + chrono::Duration::minutes(59),
        );
        assert!(early.is_none());
        let (_, late) = health_after(
            &policy,
            &failing,
            &failed,
            t0 + chrono::Duration::minutes(60),
        );
        assert!(late.unwrap().contains("every attempt failed for 3600 s"));
        // Failing for long but with few failures (rare deliveries) is not "sustained".
        let sparse = EndpointHealth {
            consecutive_failures: 1,
            ..failing.clone()
        };
        let (_, sparse) = health_after(&policy, &sparse, &failed, t0 + chrono::Duration::days(9));
        assert!(sparse.is_none());
        let gone = DeliveryStep::FailedAndDisable("the receiver answered 410 Gone".into());
        let (_, why) = health_after(&policy, &EndpointHealth::default(), &gone, t0);
        assert_eq!(why.as_deref(), Some("the receiver answered 410 Gone"));
    }

    #[test]
    fn a_tripped_endpoint_gets_one_probe_and_the_others_all_their_due_deliveries() {
        let (closed, tripped, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let due = |seq, endpoint_id, tripped| DueDelivery {
            seq,
            endpoint_id,
            tripped,
        };
        let queue = [
            due(1, closed, false),
            due(2, tripped, true),
            due(3, closed, false),
            due(4, tripped, true),
            due(5, other, true),
        ];
        assert_eq!(claimable(&queue), [0, 1, 2, 4]);
        assert!(claimable(&[]).is_empty());
    }
}
