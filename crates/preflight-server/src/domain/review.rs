//! The review queue: which evaluations become work for people, in what order, and how a
//! reviewer claims, keeps, returns and finishes an item.
//!
//! An item is created in its evaluation's own commit when the answer asks for a person
//! (REVIEW, NEW, REJECT) or when a MATCH is drawn for quality assurance
//! (`REVIEW_SAMPLE_MATCH_RATE`). The draw is a pure function of the evaluation id, so a
//! replayed or re-examined evaluation is sampled the same way. A claim is a lease with a
//! token: only the token's holder may extend, release or resolve under it, and a lease
//! that runs out returns the item to the queue by itself. Resolving records the outcome as
//! the evaluation's feedback in the same transaction, so the template statistics,
//! calibration and the item can never disagree.

use chrono::{DateTime, Duration, Utc};
use preflight_engine::Decision;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::evaluations::{self, FeedbackAnswer, FeedbackRequest, FeedbackResponse};
use crate::error::{ApiError, Problem, Violations};
use crate::state::AppState;
use crate::storage::audit::NewAuditEvent;
use crate::storage::evaluations::DecidedEvaluation;
use crate::storage::review::{
    Claim, NewReviewItem, QueueCursor, QueueStats, ResolvedStats, ReviewFilter, ReviewItemRow,
    ReviewResolution,
};
use crate::storage::Store;

/// A lease's length when the claim names none.
pub const DEFAULT_LEASE_SECONDS: i64 = 600;
/// The longest lease one claim (or extension) grants; a reviewer keeps an item longer by
/// extending it.
pub const MAX_LEASE_SECONDS: i64 = 14_400;
/// Items one bulk resolve may name.
pub const MAX_BULK_ITEMS: usize = 100;

/// Why an evaluation is in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReviewReason {
    /// The answer itself asks for a person: REVIEW, NEW or REJECT.
    Decision,
    /// A MATCH drawn for quality assurance.
    Sample,
}

impl ReviewReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewReason::Decision => "decision",
            ReviewReason::Sample => "sample",
        }
    }

    pub fn parse(s: &str) -> Option<ReviewReason> {
        [ReviewReason::Decision, ReviewReason::Sample]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// An item's state as a reviewer sees it: a claim whose lease ran out is open again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReviewStatus {
    Open,
    Claimed,
    Resolved,
}

impl ReviewStatus {
    pub fn of(row: &ReviewItemRow, now: DateTime<Utc>) -> ReviewStatus {
        match row.status.as_str() {
            "resolved" => ReviewStatus::Resolved,
            "claimed" if row.lease_expires_at.is_some_and(|t| t > now) => ReviewStatus::Claimed,
            _ => ReviewStatus::Open,
        }
    }
}

/// Queue priority, higher first. REVIEW blocks a document its pipeline is waiting on, so
/// it leads; a REJECT may hide a recoverable document; a NEW waits for a template; a
/// sampled MATCH is QA. Within a class, the less reliable the extraction, the sooner.
pub fn priority(decision: Decision, reliability: f64) -> i32 {
    let class = match decision {
        Decision::Review => 300,
        Decision::Reject => 200,
        Decision::New => 100,
        Decision::Match => 0,
    };
    let urgency = ((1.0 - reliability.clamp(0.0, 1.0)) * 99.0).round() as i32;
    class + urgency
}

/// Whether the MATCH with this id is drawn for QA at `rate`: the id mixed (SplitMix64
/// over both halves) into a uniform number in [0, 1). The id's own bits are not uniform
/// enough: UUIDv7 spends some of its "random" bits on a counter that keeps ids of one
/// millisecond ordered.
pub fn sampled(id: Uuid, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let (hi, lo) = id.as_u64_pair();
    let draw = mix(hi ^ mix(lo)) >> 11; // 53 bits: exact in an f64
    (draw as f64) / ((1u64 << 53) as f64) < rate
}

/// The item an evaluation creates, if any.
pub fn item_for(
    e: &DecidedEvaluation,
    decision: Decision,
    sample_rate: f64,
) -> Option<NewReviewItem> {
    let reason = match decision {
        Decision::Review | Decision::New | Decision::Reject => ReviewReason::Decision,
        Decision::Match if sampled(e.id, sample_rate) => ReviewReason::Sample,
        Decision::Match => return None,
    };
    Some(NewReviewItem {
        id: Uuid::now_v7(),
        reason: reason.as_str(),
        priority: priority(decision, e.reliability_score),
    })
}

/// One review item as the API shows it. The lease token is shown only to the claimer, in
/// the claim's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewItemView {
    pub id: Uuid,
    pub evaluation_id: Uuid,
    pub created_at: DateTime<Utc>,
    /// Seconds since the evaluation, at the time of the answer.
    pub age_seconds: i64,
    /// `MATCH`, `REVIEW`, `NEW` or `REJECT`.
    pub decision: String,
    pub reason: ReviewReason,
    pub priority: i32,
    pub template_id: Option<String>,
    pub template_version: Option<i64>,
    pub extractor_vendor: String,
    pub extractor_model: String,
    pub reliability_score: f64,
    pub drift_score: f64,
    pub status: ReviewStatus,
    /// Who holds the item (while `claimed`), as the audit trail names actors.
    pub claimed_by: Option<String>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// How many claims the item has had (a count above 1 means it came back).
    pub claim_count: i32,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    /// `correct`, `corrected` or `rejected` once resolved.
    pub outcome: Option<String>,
}

impl ReviewItemView {
    pub fn of(row: ReviewItemRow, now: DateTime<Utc>) -> ReviewItemView {
        let status = ReviewStatus::of(&row, now);
        let held = status == ReviewStatus::Claimed;
        ReviewItemView {
            id: row.id,
            evaluation_id: row.evaluation_id,
            age_seconds: (now - row.created_at).num_seconds().max(0),
            created_at: row.created_at,
            decision: row.decision,
            reason: ReviewReason::parse(&row.reason).unwrap_or(ReviewReason::Decision),
            priority: row.priority,
            template_id: row.template_id,
            template_version: row.template_version,
            extractor_vendor: row.extractor_vendor,
            extractor_model: row.extractor_model,
            reliability_score: row.reliability_score,
            drift_score: row.drift_score,
            status,
            claimed_by: row.claimed_by.filter(|_| held),
            claimed_at: row.claimed_at.filter(|_| held),
            lease_expires_at: row.lease_expires_at.filter(|_| held),
            claim_count: row.claim_count,
            resolved_at: row.resolved_at,
            resolved_by: row.resolved_by,
            outcome: row.outcome,
        }
    }
}

/// A page cursor of the queue: the last item's priority and id (`<priority>.<id>`), so
/// pages neither skip nor repeat items while new ones arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor(pub QueueCursor);

impl PageCursor {
    pub fn after(item: &ReviewItemView) -> PageCursor {
        PageCursor(QueueCursor {
            priority: item.priority,
            id: item.id,
        })
    }
}

impl std::fmt::Display for PageCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0.priority, self.0.id)
    }
}

impl std::str::FromStr for PageCursor {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (priority, id) = s.split_once('.').ok_or(())?;
        Ok(PageCursor(QueueCursor {
            priority: priority.parse().map_err(|_| ())?,
            id: Uuid::parse_str(id).map_err(|_| ())?,
        }))
    }
}

/// A claim's answer: the item and the token that proves the claim.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimedItem {
    pub item: ReviewItemView,
    /// Send it with `claim` (to extend), `release` and `resolve`.
    pub lease_token: Uuid,
}

/// Claim one item, or extend the lease of an item already held.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// Lease length, 1 to 14 400 seconds; default 600.
    pub lease_seconds: Option<i64>,
    /// The token of the claim to extend; absent for a new claim.
    pub lease_token: Option<Uuid>,
}

fn lease(v: &mut Violations, seconds: Option<i64>) -> Duration {
    let seconds = seconds.unwrap_or(DEFAULT_LEASE_SECONDS);
    v.check(
        (1..=MAX_LEASE_SECONDS).contains(&seconds),
        "lease_seconds",
        "must be between 1 and 14400",
    );
    Duration::seconds(seconds.clamp(1, MAX_LEASE_SECONDS))
}

pub async fn get(state: &AppState, tenant_id: Uuid, id: Uuid) -> Result<ReviewItemRow, ApiError> {
    state
        .store()
        .get_review_item(tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("review item".into()))
}

pub async fn list(
    state: &AppState,
    tenant_id: Uuid,
    filter: &ReviewFilter,
    now: DateTime<Utc>,
) -> Result<Vec<ReviewItemView>, ApiError> {
    Ok(state
        .store()
        .list_review_items(tenant_id, filter, now)
        .await?
        .into_iter()
        .map(|r| ReviewItemView::of(r, now))
        .collect())
}

/// The 409 for an item that is not the caller's to move, saying why.
fn not_yours(row: &ReviewItemRow, now: DateTime<Utc>) -> ApiError {
    match ReviewStatus::of(row, now) {
        ReviewStatus::Resolved => ApiError::Conflict(format!(
            "the review item is resolved ({})",
            row.outcome.as_deref().unwrap_or("no outcome")
        )),
        ReviewStatus::Claimed => ApiError::Conflict(format!(
            "the review item is claimed by someone else until {}",
            row.lease_expires_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()
        )),
        ReviewStatus::Open => ApiError::Conflict(
            "the review item is not claimed under this lease token (it ran out and was \
             released or claimed again); claim it anew"
                .into(),
        ),
    }
}

/// Claims an item (or, with the current `lease_token`, extends the claim).
pub async fn claim(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
    req: &ClaimRequest,
    by: &str,
    audit: NewAuditEvent,
) -> Result<ClaimedItem, ApiError> {
    let mut v = Violations::default();
    let length = lease(&mut v, req.lease_seconds);
    v.into_result()?;
    let now = Utc::now();
    let audit = NewAuditEvent {
        target: Some(format!("review_item:{id}")),
        details: serde_json::json!({
            "lease_seconds": length.num_seconds(),
            "extended": req.lease_token.is_some(),
        }),
        ..audit
    };
    let store = state.store();
    let (moved, token) = match req.lease_token {
        Some(token) => (
            store
                .extend_review_lease(tenant_id, id, token, now + length, &audit)
                .await?,
            token,
        ),
        None => {
            let token = Uuid::new_v4();
            let claim = Claim {
                token,
                by,
                at: now,
                until: now + length,
            };
            (
                store
                    .claim_review_item(tenant_id, id, &claim, &audit)
                    .await?,
                token,
            )
        }
    };
    let row = get(state, tenant_id, id).await?;
    if !moved {
        return Err(not_yours(&row, now));
    }
    Ok(ClaimedItem {
        item: ReviewItemView::of(row, now),
        lease_token: token,
    })
}

/// Claims the first claimable item the filter selects, in its order; `None` when there
/// is none.
pub async fn claim_next(
    state: &AppState,
    tenant_id: Uuid,
    filter: &ReviewFilter,
    lease_seconds: Option<i64>,
    by: &str,
    audit: NewAuditEvent,
) -> Result<Option<ClaimedItem>, ApiError> {
    let mut v = Violations::default();
    let length = lease(&mut v, lease_seconds);
    v.into_result()?;
    let now = Utc::now();
    let token = Uuid::new_v4();
    let claim = Claim {
        token,
        by,
        at: now,
        until: now + length,
    };
    let audit = NewAuditEvent {
        details: serde_json::json!({ "lease_seconds": length.num_seconds(), "next": true }),
        ..audit
    };
    let Some(id) = state
        .store()
        .claim_next_review_item(tenant_id, filter, &claim, &audit)
        .await?
    else {
        return Ok(None);
    };
    let row = get(state, tenant_id, id).await?;
    Ok(Some(ClaimedItem {
        item: ReviewItemView::of(row, now),
        lease_token: token,
    }))
}

/// Returns a claimed item to the queue.
pub async fn release(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
    token: Uuid,
    audit: NewAuditEvent,
) -> Result<ReviewItemView, ApiError> {
    let audit = NewAuditEvent {
        target: Some(format!("review_item:{id}")),
        ..audit
    };
    let moved = state
        .store()
        .release_review_item(tenant_id, id, token, &audit)
        .await?;
    let now = Utc::now();
    let row = get(state, tenant_id, id).await?;
    if !moved {
        return Err(not_yours(&row, now));
    }
    Ok(ReviewItemView::of(row, now))
}

/// Finish an item: the outcome is recorded as the evaluation's feedback.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// `correct`, `corrected` or `rejected`.
    pub outcome: String,
    /// The claim's token. An item nobody holds (open, or its lease ran out) may be
    /// resolved without one.
    pub lease_token: Option<Uuid>,
    /// How many fields the reviewer had to fix.
    pub field_error_count: Option<u32>,
    /// Time spent; default: from the claim to now.
    pub review_seconds: Option<f64>,
    /// Where the verdict came from; default `review-queue`.
    pub source: Option<String>,
}

/// A resolved item and the feedback it recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResolvedItem {
    pub item: ReviewItemView,
    pub feedback: FeedbackResponse,
}

/// Resolves an item; its outcome becomes the evaluation's feedback in one transaction.
/// Repeating a resolve (same outcome, same actor) answers the item as it is, so a client
/// may retry one whose answer it lost.
pub async fn resolve(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
    req: ResolveRequest,
    by: &str,
    audit: NewAuditEvent,
) -> Result<ResolvedItem, ApiError> {
    let row = get(state, tenant_id, id).await?;
    let now = Utc::now();
    match ReviewStatus::of(&row, now) {
        ReviewStatus::Resolved
            if row.outcome.as_deref() == Some(req.outcome.as_str())
                && row.resolved_by.as_deref() == Some(by) =>
        {
            let feedback = FeedbackResponse {
                evaluation_id: row.evaluation_id,
                outcome: req.outcome,
                previous_outcome: row.outcome.clone(),
                statistics_updated: false,
            };
            return Ok(ResolvedItem {
                item: ReviewItemView::of(row, now),
                feedback,
            });
        }
        ReviewStatus::Resolved => return Err(not_yours(&row, now)),
        ReviewStatus::Claimed if req.lease_token != row.lease_token => {
            return Err(not_yours(&row, now))
        }
        _ => {}
    }
    let held_since = row.claimed_at.filter(|_| req.lease_token.is_some());
    let feedback = FeedbackRequest {
        outcome: req.outcome,
        field_error_count: req.field_error_count,
        review_seconds: req
            .review_seconds
            .or_else(|| held_since.map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)),
        source: req.source.or_else(|| Some("review-queue".into())),
    };
    let audit = NewAuditEvent {
        target: Some(format!("review_item:{id}")),
        details: serde_json::json!({
            "evaluation_id": row.evaluation_id,
            "outcome": feedback.outcome,
        }),
        ..audit
    };
    let resolution = ReviewResolution::Item {
        id,
        lease_token: req.lease_token,
        by,
        audit: &audit,
    };
    let answer = evaluations::record_feedback(
        state,
        tenant_id,
        row.evaluation_id,
        feedback,
        None,
        resolution,
    )
    .await;
    let feedback = match answer {
        Ok(FeedbackAnswer::Recorded(r)) => r,
        Ok(FeedbackAnswer::Replayed(_)) => {
            return Err(ApiError::internal(anyhow::anyhow!(
                "a resolve without an idempotency key was replayed"
            )))
        }
        Err(ApiError::Conflict(_)) => {
            // Lost a race for the item (claimed or resolved meanwhile): say by whom.
            let row = get(state, tenant_id, id).await?;
            return Err(not_yours(&row, Utc::now()));
        }
        Err(e) => return Err(e),
    };
    let row = get(state, tenant_id, id).await?;
    Ok(ResolvedItem {
        item: ReviewItemView::of(row, Utc::now()),
        feedback,
    })
}

/// One item of a bulk resolve.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkResolveItem {
    pub id: Uuid,
    /// `correct`, `corrected` or `rejected`.
    pub outcome: String,
    pub lease_token: Option<Uuid>,
    pub field_error_count: Option<u32>,
}

/// Resolve up to 100 items in one call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkResolveRequest {
    pub items: Vec<BulkResolveItem>,
    /// Applies to every item; default `review-queue`.
    pub source: Option<String>,
}

/// How one item of a bulk resolve went.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResolveResult {
    pub id: Uuid,
    /// 200 when resolved, or the problem's status: 404 (no such item), 409 (resolved or
    /// held by someone else), 422 (invalid outcome).
    pub status: u16,
    pub item: Option<ReviewItemView>,
    /// Why it was not resolved, as the single call would have answered.
    pub problem: Option<Problem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResolveResponse {
    pub resolved: usize,
    pub failed: usize,
    /// In request order.
    pub results: Vec<BulkResolveResult>,
}

/// Resolves each item on its own (an item that cannot be resolved does not hold back the
/// others); every result says how it went.
pub async fn bulk_resolve(
    state: &AppState,
    tenant_id: Uuid,
    req: BulkResolveRequest,
    by: &str,
    audit: NewAuditEvent,
) -> Result<BulkResolveResponse, ApiError> {
    let mut v = Violations::default();
    v.check(
        (1..=MAX_BULK_ITEMS).contains(&req.items.len()),
        "items",
        "must name 1 to 100 items",
    );
    let mut seen = std::collections::BTreeSet::new();
    for (i, item) in req.items.iter().enumerate() {
        v.check(
            seen.insert(item.id),
            &format!("items[{i}].id"),
            "names an item twice",
        );
    }
    v.into_result()?;
    let mut results = Vec::with_capacity(req.items.len());
    for item in req.items {
        let one = ResolveRequest {
            outcome: item.outcome,
            lease_token: item.lease_token,
            field_error_count: item.field_error_count,
            review_seconds: None,
            source: req.source.clone(),
        };
        let id = item.id;
        let result = match resolve(state, tenant_id, id, one, by, audit.clone()).await {
            Ok(r) => BulkResolveResult {
                id,
                status: 200,
                item: Some(r.item),
                problem: None,
            },
            Err(e @ (ApiError::NotFound(_) | ApiError::Conflict(_) | ApiError::Validation(_))) => {
                BulkResolveResult {
                    id,
                    status: e.status().as_u16(),
                    item: None,
                    problem: Some(e.to_problem()),
                }
            }
            Err(e) => return Err(e),
        };
        results.push(result);
    }
    let resolved = results.iter().filter(|r| r.status == 200).count();
    Ok(BulkResolveResponse {
        resolved,
        failed: results.len() - resolved,
        results,
    })
}

/// The queue in `GET /v1/analytics/summary`: its state now (the SLA view) and the items
/// resolved in the range.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueSummary {
    /// Claimable now (open, or a lease ran out).
    pub open: i64,
    /// Held under a live lease.
    pub claimed: i64,
    /// Age of the oldest claimable item, in seconds.
    pub oldest_open_age_seconds: Option<i64>,
    /// Claimable items by age.
    pub open_by_age: OpenByAge,
    /// Items resolved in the range.
    pub resolved: i64,
    /// Mean and longest time from evaluation to resolution of those, in seconds.
    pub mean_resolution_seconds: Option<f64>,
    pub max_resolution_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OpenByAge {
    pub under_1h: i64,
    pub from_1h_to_4h: i64,
    pub from_4h_to_24h: i64,
    pub over_24h: i64,
}

pub async fn queue_summary(
    store: &dyn Store,
    tenant_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<QueueSummary, ApiError> {
    let (q, r): (QueueStats, ResolvedStats) = tokio::try_join!(
        store.review_queue_stats(tenant_id, now),
        store.resolved_review_stats(tenant_id, from, to),
    )?;
    Ok(QueueSummary {
        open: q.open,
        claimed: q.claimed,
        oldest_open_age_seconds: q.oldest_open_at.map(|t| (now - t).num_seconds().max(0)),
        open_by_age: OpenByAge {
            under_1h: q.open_under_1h,
            from_1h_to_4h: q.open_1h_to_4h,
            from_4h_to_24h: q.open_4h_to_24h,
            over_24h: q.open_over_24h,
        },
        resolved: r.resolved,
        mean_resolution_seconds: (r.resolved > 0)
            .then(|| r.sum_resolution_seconds / r.resolved as f64),
        max_resolution_seconds: (r.resolved > 0).then_some(r.max_resolution_seconds),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_orders_classes_then_unreliability() {
        let p = |d, r| priority(d, r);
        assert!(p(Decision::Review, 1.0) > p(Decision::Reject, 0.0));
        assert!(p(Decision::Reject, 1.0) > p(Decision::New, 0.0));
        assert!(p(Decision::New, 1.0) > p(Decision::Match, 0.0));
        assert!(p(Decision::Review, 0.2) > p(Decision::Review, 0.9));
        assert_eq!(p(Decision::Review, 1.0), 300);
        assert_eq!(p(Decision::Review, 0.0), 399);
        assert_eq!(p(Decision::Match, 0.5), 50);
        assert_eq!(
            p(Decision::Match, f64::NAN),
            0,
            "no reliability adds no urgency"
        );
        assert_eq!(
            p(Decision::New, 7.0),
            100,
            "out-of-range reliability is clamped"
        );
    }

    #[test]
    fn sampling_is_a_pure_function_of_the_id_at_the_rate() {
        let ids: Vec<Uuid> = (0..20_000).map(|_| Uuid::now_v7()).collect();
        for rate in [0.0, 0.1, 0.5, 1.0] {
            let drawn = ids.iter().filter(|id| sampled(**id, rate)).count() as f64;
            let share = drawn / ids.len() as f64;
            // Binomial: 20 000 draws put the share within ±0.02 of the rate far beyond
            // 5 standard deviations (σ ≤ 0.0036).
            assert!((share - rate).abs() < 0.02, "rate {rate}: share {share}");
            assert_eq!(
                ids.iter().filter(|id| sampled(**id, rate)).count() as f64,
                drawn
            );
        }
        assert!(ids.iter().all(|id| sampled(*id, 1.0)));
        assert!(ids.iter().all(|id| !sampled(*id, 0.0)));
    }

    fn row(status: &str, lease: Option<DateTime<Utc>>) -> ReviewItemRow {
        ReviewItemRow {
            id: Uuid::now_v7(),
            tenant_id: Uuid::nil(),
            evaluation_id: Uuid::now_v7(),
            created_at: Utc::now(),
            decision: "REVIEW".into(),
            reason: "decision".into(),
            priority: 300,
            template_id: None,
            template_version: None,
            extractor_vendor: "v".into(),
            extractor_model: "m".into(),
            reliability_score: 1.0,
            drift_score: 0.0,
            status: status.into(),
            lease_token: lease.map(|_| Uuid::new_v4()),
            claimed_by: lease.map(|_| "api_key:x".into()),
            claimed_at: lease,
            lease_expires_at: lease,
            claim_count: 1,
            resolved_at: None,
            resolved_by: None,
            outcome: None,
        }
    }

    #[test]
    fn a_claim_whose_lease_ran_out_reads_as_open_without_its_holder() {
        let now = Utc::now();
        let live = row("claimed", Some(now + Duration::seconds(5)));
        let gone = row("claimed", Some(now - Duration::seconds(5)));
        assert_eq!(ReviewStatus::of(&live, now), ReviewStatus::Claimed);
        assert_eq!(ReviewStatus::of(&gone, now), ReviewStatus::Open);
        let view = ReviewItemView::of(gone, now);
        assert_eq!((view.claimed_by, view.lease_expires_at), (None, None));
        assert_eq!(
            ReviewStatus::of(&row("resolved", None), now),
            ReviewStatus::Resolved
        );
    }
}
