//! The review queue in storage: items created in the evaluation's commit, claimed under a
//! lease, released, and resolved in the feedback's own transaction.
//!
//! Exclusivity is a single conditional UPDATE per move: a claim succeeds only on an item
//! that is open or whose lease has run out, and every later move of the claim names the
//! lease token it got. Two reviewers therefore never hold one item, and an item whose
//! reviewer vanished is claimable again the moment its lease ends — no sweeper, so nothing
//! to keep running and nothing to lose on a restart. `claim_next` takes the first claimable
//! item in queue order, skipping rows another replica is claiming (PostgreSQL) or under
//! SQLite's single writer.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::analytics::{add_review_resolution, covering, BucketRange};
use super::audit::NewAuditEvent;
use super::evaluations::DecidedEvaluation;
use super::sql::{Arg, Query, Tx};
use super::{SqlStore, StoreError};

/// A review item about to be created with its evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReviewItem {
    pub id: Uuid,
    /// `decision` (the answer asks for a person) or `sample` (a MATCH drawn for QA).
    pub reason: &'static str,
    pub priority: i32,
}

/// A stored review item. Strings hold the domain's enums by their wire names.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReviewItemRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub evaluation_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub decision: String,
    pub reason: String,
    pub priority: i32,
    pub template_id: Option<String>,
    pub template_version: Option<i64>,
    pub extractor_vendor: String,
    pub extractor_model: String,
    pub reliability_score: f64,
    pub drift_score: f64,
    /// As stored: `claimed` with a lease in the past reads as open (see the domain).
    pub status: String,
    pub lease_token: Option<Uuid>,
    pub claimed_by: Option<String>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub claim_count: i32,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    pub outcome: Option<String>,
}

const COLUMNS: &str = "id, tenant_id, evaluation_id, created_at, decision, reason, priority, \
     template_id, template_version, extractor_vendor, extractor_model, reliability_score, \
     drift_score, status, lease_token, claimed_by, claimed_at, lease_expires_at, claim_count, \
     resolved_at, resolved_by, outcome";

/// Which items a listing or a `claim_next` looks at, by their state at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    /// Open or claimed: everything not resolved.
    Unresolved,
    /// Claimable: open, or claimed with a lease that has run out.
    Open,
    /// Held under a lease that has not run out.
    Claimed,
    Resolved,
}

impl QueueState {
    /// The predicate, with `now` bound at `now`. States that do not depend on the time
    /// still name it (`IS NOT NULL` is always true), so every query of the queue binds the
    /// same placeholders in the same places.
    ///
    /// The unresolved states say `status <> 'resolved'` in so many words although their
    /// other terms imply it: SQLite uses a partial index only when the query contains the
    /// index's own condition, and without the queue indexes every claim would read and sort
    /// all the items the tenant ever had, resolved ones included.
    fn predicate(self, now: &str) -> String {
        match self {
            QueueState::Unresolved => format!("status <> 'resolved' AND {now} IS NOT NULL"),
            QueueState::Open => format!(
                "status <> 'resolved' \
                 AND (status = 'open' OR (status = 'claimed' AND lease_expires_at <= {now}))"
            ),
            QueueState::Claimed => {
                format!("status <> 'resolved' AND status = 'claimed' AND lease_expires_at > {now}")
            }
            QueueState::Resolved => format!("status = 'resolved' AND {now} IS NOT NULL"),
        }
    }
}

/// Queue order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOrder {
    /// Highest priority first, then oldest.
    Priority,
    /// Oldest first.
    Age,
}

/// Where a page starts: after this item, in the listing's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCursor {
    pub priority: i32,
    pub id: Uuid,
}

#[derive(Debug, Clone)]
pub struct ReviewFilter {
    pub state: QueueState,
    pub decision: Option<String>,
    pub reason: Option<String>,
    pub template_id: Option<String>,
    pub extractor_vendor: Option<String>,
    pub extractor_model: Option<String>,
    pub evaluation_id: Option<Uuid>,
    /// Only items created at or before this (a minimum age).
    pub created_until: Option<DateTime<Utc>>,
    /// Only items created at or after this (a maximum age).
    pub created_since: Option<DateTime<Utc>>,
    pub order: QueueOrder,
    pub after: Option<QueueCursor>,
    pub limit: i64,
}

/// A claim about to be made: who, until when, under which new token.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub token: Uuid,
    pub by: &'a str,
    pub at: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// How a feedback write touches the review queue.
#[derive(Debug, Clone)]
pub enum ReviewResolution<'a> {
    /// Feedback sent to the evaluation directly: its item, if it has one, takes the
    /// outcome, and is resolved now unless it was before (whoever held it: the verdict is
    /// in, so the work is done).
    Follow { by: &'a str },
    /// Resolving one item: it must be unresolved and not held under someone else's live
    /// lease; the feedback rolls back with [`StoreError::Conflict`] otherwise.
    Item {
        id: Uuid,
        lease_token: Option<Uuid>,
        by: &'a str,
        audit: &'a NewAuditEvent,
    },
}

/// The queue's state for analytics: counts now, and the items resolved in a range.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow)]
pub struct QueueStats {
    pub open: i64,
    pub claimed: i64,
    pub oldest_open_at: Option<DateTime<Utc>>,
    pub open_under_1h: i64,
    pub open_1h_to_4h: i64,
    pub open_4h_to_24h: i64,
    pub open_over_24h: i64,
}

/// Items resolved in a range: how many, and the sum of their times to resolution.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow)]
pub struct ResolvedStats {
    pub resolved: i64,
    pub sum_resolution_seconds: f64,
    pub max_resolution_seconds: f64,
}

#[async_trait]
pub trait ReviewStore: Send + Sync {
    async fn get_review_item(
        &self,
        tenant_id: Uuid,
        id: Uuid,
    ) -> Result<Option<ReviewItemRow>, StoreError>;
    async fn list_review_items(
        &self,
        tenant_id: Uuid,
        filter: &ReviewFilter,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReviewItemRow>, StoreError>;
    /// Claims the item if it is claimable at `claim.at`; whether it did.
    async fn claim_review_item(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        claim: &Claim<'_>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    /// Claims the first claimable item the filter selects (its `state` and cursor are
    /// ignored), in its order; the id of the item claimed.
    async fn claim_next_review_item(
        &self,
        tenant_id: Uuid,
        filter: &ReviewFilter,
        claim: &Claim<'_>,
        audit: &NewAuditEvent,
    ) -> Result<Option<Uuid>, StoreError>;
    /// Moves the lease's end of an item still held under `token`; whether it did.
    async fn extend_review_lease(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        token: Uuid,
        until: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    /// Returns an item held under `token` to the queue; whether it did.
    async fn release_review_item(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        token: Uuid,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    async fn review_queue_stats(
        &self,
        tenant_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<QueueStats, StoreError>;
    /// Items resolved in `[from, to)` (whole hours: read from the review rollups).
    async fn resolved_review_stats(
        &self,
        tenant_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<ResolvedStats, StoreError>;
}

/// The filter's predicates after `tenant_id = $1` and the state at `$2`, then the order;
/// the cursor only where `with_cursor`. Only the filters given become predicates, so the
/// statement's plan is the one for what is asked (a generic `$n IS NULL OR …` plan cannot
/// know that a bare claim-next wants the first entry of the queue index).
fn filtered(q: Query, f: &ReviewFilter, with_cursor: bool) -> Query {
    fn and(q: Query, condition: &str, value: Option<Arg>) -> Query {
        match value {
            Some(v) => q.push(" AND ").push(condition).push_list([v]),
            None => q,
        }
    }
    let mut q = and(q, "decision = ", f.decision.as_deref().map(Arg::from));
    q = and(q, "reason = ", f.reason.as_deref().map(Arg::from));
    q = and(q, "template_id = ", f.template_id.as_deref().map(Arg::from));
    q = and(
        q,
        "extractor_vendor = ",
        f.extractor_vendor.as_deref().map(Arg::from),
    );
    q = and(
        q,
        "extractor_model = ",
        f.extractor_model.as_deref().map(Arg::from),
    );
    q = and(q, "evaluation_id = ", f.evaluation_id.map(Arg::from));
    q = and(q, "created_at <= ", f.created_until.map(Arg::from));
    q = and(q, "created_at >= ", f.created_since.map(Arg::from));
    if let (true, Some(c)) = (with_cursor, f.after) {
        q = match f.order {
            QueueOrder::Priority => q
                .push(" AND (priority < ")
                .push_list([c.priority.into()])
                .push(" OR (priority = ")
                .push_list([c.priority.into()])
                .push(" AND id > ")
                .push_list([c.id.into()])
                .push("))"),
            QueueOrder::Age => and(q, "id > ", Some(c.id.into())),
        };
    }
    q.push(match f.order {
        QueueOrder::Priority => " ORDER BY priority DESC, id",
        QueueOrder::Age => " ORDER BY id",
    })
}

/// Creates the items of a commit's evaluations, with the columns the queue filters on
/// copied from the evaluation so listing never joins the evaluations.
pub(crate) async fn insert_review_items(
    tx: &mut Tx,
    items: &[(&DecidedEvaluation, &NewReviewItem)],
) -> Result<(), StoreError> {
    for chunk in items.chunks(super::evaluations::INSERT_CHUNK) {
        let insert = Query::new(
            "INSERT INTO review_items (id, tenant_id, evaluation_id, created_at, decision, \
             reason, priority, template_id, template_version, extractor_vendor, extractor_model, \
             reliability_score, drift_score, status) VALUES ",
        )
        .push_tuples(chunk.iter().map(|(e, item)| {
            vec![
                Arg::from(item.id),
                e.tenant_id.into(),
                e.id.into(),
                e.created_at.into(),
                (&e.decision).into(),
                item.reason.into(),
                item.priority.into(),
                e.template_id.as_deref().into(),
                e.template_version.into(),
                (&e.extractor_vendor).into(),
                (&e.extractor_model).into(),
                e.reliability_score.into(),
                e.drift_score.into(),
                "open".into(),
            ]
        }));
        tx.execute(insert).await?;
    }
    Ok(())
}

/// The UPDATE that hands an item to `claim` (`$5` is the claim's time); callers add the
/// condition under which the item may be taken.
fn claim_update(tenant_id: Uuid, id: Uuid, claim: &Claim<'_>) -> Query {
    Query::new(
        "UPDATE review_items SET status = 'claimed', lease_token = $3, claimed_by = $4, \
         claimed_at = $5, lease_expires_at = $6, claim_count = claim_count + 1 \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(claim.token)
    .bind(claim.by)
    .bind(claim.at)
    .bind(claim.until)
}

/// The review side of a feedback write, inside its transaction.
pub(crate) async fn resolve_in(
    tx: &mut Tx,
    tenant_id: Uuid,
    evaluation_id: Uuid,
    outcome: &str,
    at: DateTime<Utc>,
    review: &ReviewResolution<'_>,
) -> Result<(), StoreError> {
    match review {
        ReviewResolution::Follow { by } => {
            // A changed verdict on a resolved item only changes its outcome; the first one
            // resolves it, and only that counts in the review rollups.
            tx.execute(
                Query::new(
                    "UPDATE review_items SET outcome = $3 \
                     WHERE tenant_id = $1 AND evaluation_id = $2 AND status = 'resolved'",
                )
                .bind(tenant_id)
                .bind(evaluation_id)
                .bind(outcome),
            )
            .await?;
            let resolved: Vec<(DateTime<Utc>, DateTime<Utc>)> = tx
                .fetch_all(
                    Query::new(
                        "UPDATE review_items SET outcome = $3, status = 'resolved', \
                         resolved_at = $4, resolved_by = $5, lease_token = NULL, \
                         lease_expires_at = NULL \
                         WHERE tenant_id = $1 AND evaluation_id = $2 AND status <> 'resolved' \
                         RETURNING created_at, resolved_at",
                    )
                    .bind(tenant_id)
                    .bind(evaluation_id)
                    .bind(outcome)
                    .bind(at)
                    .bind(*by),
                )
                .await?;
            for (created_at, resolved_at) in resolved {
                add_review_resolution(tx, tenant_id, resolved_at, created_at).await?;
            }
        }
        ReviewResolution::Item {
            id,
            lease_token,
            by,
            audit,
        } => {
            let resolved: Vec<(DateTime<Utc>, DateTime<Utc>)> = tx
                .fetch_all(
                    Query::new(
                        "UPDATE review_items SET outcome = $4, status = 'resolved', resolved_at = $5, \
                         resolved_by = $6, lease_token = NULL, lease_expires_at = NULL \
                         WHERE tenant_id = $1 AND id = $2 AND evaluation_id = $3 \
                         AND (status = 'open' OR (status = 'claimed' \
                              AND (lease_expires_at <= $5 OR lease_token = $7))) \
                         RETURNING created_at, resolved_at",
                    )
                    .bind(tenant_id)
                    .bind(*id)
                    .bind(evaluation_id)
                    .bind(outcome)
                    .bind(at)
                    .bind(*by)
                    .bind(*lease_token),
                )
                .await?;
            let [(created_at, resolved_at)] = resolved[..] else {
                return Err(StoreError::Conflict("review item"));
            };
            add_review_resolution(tx, tenant_id, resolved_at, created_at).await?;
            tx.execute(super::audit::insert(audit)).await?;
        }
    }
    Ok(())
}

#[async_trait]
impl ReviewStore for SqlStore {
    async fn get_review_item(
        &self,
        tenant_id: Uuid,
        id: Uuid,
    ) -> Result<Option<ReviewItemRow>, StoreError> {
        self.db
            .fetch_optional(Query::tenant_row(COLUMNS, "review_items", tenant_id, id))
            .await
    }

    async fn list_review_items(
        &self,
        tenant_id: Uuid,
        f: &ReviewFilter,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReviewItemRow>, StoreError> {
        let q = Query::new(format!(
            "SELECT {COLUMNS} FROM review_items WHERE tenant_id = $1 AND {}",
            f.state.predicate("$2")
        ))
        .bind(tenant_id)
        .bind(now);
        let limit = f.limit;
        self.db
            .fetch_all(
                filtered(q, f, true)
                    .push(" LIMIT ")
                    .push(&limit.to_string()),
            )
            .await
    }

    async fn claim_review_item(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        claim: &Claim<'_>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().await?;
        let claimable = format!(" AND {}", QueueState::Open.predicate("$5"));
        tx.change_one_with_audit(claim_update(tenant_id, id, claim).push(&claimable), audit)
            .await
    }

    async fn claim_next_review_item(
        &self,
        tenant_id: Uuid,
        f: &ReviewFilter,
        claim: &Claim<'_>,
        audit: &NewAuditEvent,
    ) -> Result<Option<Uuid>, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let skip_locked = tx.backend().skip_locked("review_items");
        let candidate = Query::new(format!(
            "SELECT id FROM review_items WHERE tenant_id = $1 AND {}",
            QueueState::Open.predicate("$2")
        ))
        .bind(tenant_id)
        .bind(claim.at);
        let candidate = filtered(candidate, f, false)
            .push(" LIMIT 1")
            .push(&skip_locked);
        let picked: Vec<(Uuid,)> = tx.fetch_all(candidate).await?;
        let Some((id,)) = picked.into_iter().next() else {
            tx.rollback().await?;
            return Ok(None);
        };
        // The row is locked (PostgreSQL) or this is the only writer (SQLite): the claim
        // cannot lose it between the pick and the update.
        let audit = NewAuditEvent {
            target: Some(format!("review_item:{id}")),
            ..audit.clone()
        };
        let claimed = tx
            .change_one_with_audit(claim_update(tenant_id, id, claim), &audit)
            .await?;
        Ok(claimed.then_some(id))
    }

    async fn extend_review_lease(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        token: Uuid,
        until: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        // A lease that ran out may be extended while nobody else claimed the item: a new
        // claim replaces the token, so the old one no longer matches.
        let tx = self.db.begin_write().await?;
        tx.change_one_with_audit(
            Query::new(
                "UPDATE review_items SET lease_expires_at = $4 \
                 WHERE tenant_id = $1 AND id = $2 AND status = 'claimed' AND lease_token = $3",
            )
            .bind(tenant_id)
            .bind(id)
            .bind(token)
            .bind(until),
            audit,
        )
        .await
    }

    async fn release_review_item(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        token: Uuid,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().await?;
        tx.change_one_with_audit(
            Query::new(
                "UPDATE review_items SET status = 'open', lease_token = NULL, claimed_by = NULL, \
                 claimed_at = NULL, lease_expires_at = NULL \
                 WHERE tenant_id = $1 AND id = $2 AND status = 'claimed' AND lease_token = $3",
            )
            .bind(tenant_id)
            .bind(id)
            .bind(token),
            audit,
        )
        .await
    }

    async fn review_queue_stats(
        &self,
        tenant_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<QueueStats, StoreError> {
        let hour = chrono::Duration::hours(1);
        let open = QueueState::Open.predicate("$2");
        self.db
            .fetch_one(
                Query::new(format!(
                    // The state is decided once per item in the inner query: the sums
                    // then compare integers (seven CASEs over the predicate cost 3× the
                    // index-only scan of `review_items_open_ages` at 72 000 open items).
                    "SELECT \
                     COALESCE(SUM(o), 0) AS open, \
                     COALESCE(SUM(1 - o), 0) AS claimed, \
                     MIN(CASE WHEN o = 1 THEN created_at END) AS oldest_open_at, \
                     COALESCE(SUM(CASE WHEN created_at > $3 THEN o ELSE 0 END), 0) AS open_under_1h, \
                     COALESCE(SUM(CASE WHEN created_at <= $3 AND created_at > $4 THEN o ELSE 0 END), 0) AS open_1h_to_4h, \
                     COALESCE(SUM(CASE WHEN created_at <= $4 AND created_at > $5 THEN o ELSE 0 END), 0) AS open_4h_to_24h, \
                     COALESCE(SUM(CASE WHEN created_at <= $5 THEN o ELSE 0 END), 0) AS open_over_24h \
                     FROM (SELECT created_at, CASE WHEN {open} THEN 1 ELSE 0 END AS o \
                     FROM review_items WHERE tenant_id = $1 AND status <> 'resolved') q"
                ))
                .bind(tenant_id)
                .bind(now)
                .bind(now - hour)
                .bind(now - hour * 4)
                .bind(now - hour * 24),
            )
            .await
    }

    async fn resolved_review_stats(
        &self,
        tenant_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<ResolvedStats, StoreError> {
        let range = BucketRange::whole(from.timestamp(), to.timestamp());
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(resolved), 0) AS BIGINT) AS resolved, \
             CAST(COALESCE(SUM(sum_resolution_seconds), 0.0) AS DOUBLE PRECISION) \
                 AS sum_resolution_seconds, \
             CAST(COALESCE(MAX(max_resolution_seconds), 0.0) AS DOUBLE PRECISION) \
                 AS max_resolution_seconds \
             FROM {}",
            covering("review_rollups", 2)
        );
        self.db.fetch_one(range.ungrouped(tenant_id, sql)).await
    }
}
