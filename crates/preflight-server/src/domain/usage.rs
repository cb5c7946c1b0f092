//! Usage and quotas: plans, monthly periods, what a tenant may still evaluate.
//!
//! Every stored evaluation counts once in its tenant's calendar month (UTC), in the same
//! transaction that stores it, so the count is exact whatever replica committed it and
//! however a batch was retried. With `USAGE_ENFORCE_QUOTA=true` the commit admits
//! evaluations under the counter's row lock up to the plan's limit ([`monthly_limit`]);
//! the rest are refused with 429 `QUOTA_EXCEEDED` and store nothing. Operators set plans
//! with `preflight admin set-plan`; a tenant-specific limit overrides the plan's.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::audit::{self, AuditAction, AuditExt};
use crate::error::{ApiError, FieldError};
use crate::storage::evaluations::QuotaState;
use crate::storage::Store;

/// A tenant's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    Free,
    Developer,
    Team,
    Enterprise,
}

impl Plan {
    pub const ALL: [Plan; 4] = [Plan::Free, Plan::Developer, Plan::Team, Plan::Enterprise];

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Developer => "developer",
            Plan::Team => "team",
            Plan::Enterprise => "enterprise",
        }
    }

    pub fn parse(s: &str) -> Option<Plan> {
        Plan::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Evaluations per calendar month; `None` is unlimited.
    pub fn monthly_limit(self) -> Option<i64> {
        match self {
            Plan::Free => Some(1_000),
            Plan::Developer => Some(10_000),
            Plan::Team => Some(100_000),
            Plan::Enterprise => None,
        }
    }
}

/// The limit a tenant's plan and override allow: the override wins; an unknown plan (a
/// row written by a newer version) is held to the free plan's limit rather than none.
pub fn monthly_limit(plan: &str, limit_override: Option<i64>) -> Option<i64> {
    limit_override.or_else(|| Plan::parse(plan).unwrap_or(Plan::Free).monthly_limit())
}

/// The usage period an instant counts in: its calendar month in UTC, e.g. `2026-12`.
pub fn period_of(at: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", at.year(), at.month())
}

/// The first instant of a period and of the one after it.
pub fn period_bounds(period: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (y, m) = period.split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    let start = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()?;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let end = Utc.with_ymd_and_hms(ny, nm, 1, 0, 0, 0).single()?;
    Some((start, end))
}

/// `GET /v1/usage`: the tenant's plan and this month's count.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageReport {
    /// `free`, `developer`, `team` or `enterprise`.
    pub plan: String,
    /// The calendar month (UTC), e.g. `2026-12`.
    pub period: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// Evaluations allowed this period; `null` is unlimited.
    pub monthly_limit: Option<i64>,
    /// Whether the limit comes from a tenant-specific override rather than the plan.
    pub limit_overridden: bool,
    /// Evaluations stored this period.
    pub used: i64,
    /// `max(0, monthly_limit - used)`; `null` when unlimited.
    pub remaining: Option<i64>,
    /// Whether evaluations beyond the limit are refused (`USAGE_ENFORCE_QUOTA`).
    pub enforced: bool,
}

/// The tenant's usage now.
pub async fn report(
    store: &dyn Store,
    tenant_id: Uuid,
    enforced: bool,
    now: DateTime<Utc>,
) -> Result<UsageReport, ApiError> {
    let period = period_of(now);
    let (period_start, period_end) = period_bounds(&period).expect("a period we formatted");
    let usage = store
        .tenant_usage(tenant_id, &period)
        .await?
        .ok_or_else(|| ApiError::NotFound("tenant".into()))?;
    let limit = monthly_limit(&usage.plan, usage.monthly_limit_override);
    Ok(UsageReport {
        plan: usage.plan,
        period,
        period_start,
        period_end,
        monthly_limit: limit,
        limit_overridden: usage.monthly_limit_override.is_some(),
        used: usage.used,
        remaining: limit.map(|l| (l - usage.used).max(0)),
        enforced,
    })
}

/// The 429 of an evaluation refused for its tenant's quota.
pub fn exceeded(q: &QuotaState) -> ApiError {
    let period_end = period_bounds(&q.period).map(|(_, end)| end);
    ApiError::QuotaExceeded {
        plan: q.plan.clone(),
        limit: q.limit,
        used: q.used,
        period_end,
    }
}

/// Sets a tenant's plan and optional limit override (operators, `preflight admin`).
pub async fn set_plan(
    store: &dyn Store,
    tenant_id: Uuid,
    plan: &str,
    limit_override: Option<i64>,
    actor: &str,
) -> Result<(), ApiError> {
    let Some(plan) = Plan::parse(plan) else {
        return Err(ApiError::Validation(vec![FieldError {
            field: "plan".into(),
            message: "must be free, developer, team or enterprise".into(),
        }]));
    };
    if limit_override.is_some_and(|l| l < 0) {
        return Err(ApiError::Validation(vec![FieldError {
            field: "monthly_limit".into(),
            message: "must be zero or more".into(),
        }]));
    }
    let audit = audit::event(Some(tenant_id), actor, AuditAction::PlanChanged)
        .target(format!("tenant:{tenant_id}"))
        .details(serde_json::json!({
            "plan": plan.as_str(),
            "monthly_limit_override": limit_override,
        }));
    if store
        .set_plan(tenant_id, plan.as_str(), limit_override, &audit)
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::NotFound("tenant".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_have_the_published_limits_and_an_override_wins() {
        assert_eq!(monthly_limit("free", None), Some(1_000));
        assert_eq!(monthly_limit("developer", None), Some(10_000));
        assert_eq!(monthly_limit("team", None), Some(100_000));
        assert_eq!(monthly_limit("enterprise", None), None);
        assert_eq!(monthly_limit("enterprise", Some(5)), Some(5));
        assert_eq!(monthly_limit("free", Some(0)), Some(0));
        assert_eq!(monthly_limit("platinum", None), Some(1_000));
    }

    #[test]
    fn a_period_is_the_utc_month_and_ends_where_the_next_begins() {
        let at = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
        assert_eq!(period_of(at), "2026-12");
        let (start, end) = period_bounds("2026-12").unwrap();
        assert_eq!(start, Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
        assert_eq!(end, Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
        assert_eq!(period_bounds("2026-13"), None);
        assert_eq!(period_bounds("nonsense"), None);
    }
}
