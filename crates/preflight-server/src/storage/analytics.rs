//! Rollups for analytics and the monthly usage counters, in storage.
//!
//! Analytics never scans evaluations: every commit adds its evaluations to hourly rollup
//! rows (tenant × hour × template version × extractor), to sparse per-hour histograms of
//! drift and reliability (percentiles), and bumps the tenant's usage counter for the month;
//! feedback adds to per-hour calibration rows. All of it is additive upserts written once
//! for both backends (`ON CONFLICT … DO UPDATE SET x = t.x + excluded.x`), keyed and
//! ordered so concurrent commits lock rows in one order. What a row means — which bin,
//! which period, what a plan allows — is decided by the domain (`domain::analytics`,
//! `domain::usage`); this module only adds and sums.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::NewAuditEvent;
use super::sql::{Arg, Query, Tx};
use super::{SqlStore, StoreError};

/// The identity of one rollup row within a tenant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RollupKey {
    /// Unix seconds of the hour's start.
    pub bucket_start: i64,
    /// `""` when the evaluation has no template.
    pub template_id: String,
    /// `0` when the evaluation has no template.
    pub template_version: i64,
    pub extractor_vendor: String,
    pub extractor_model: String,
    pub extractor_version: String,
}

/// Additive totals of a set of evaluations (one evaluation's contribution, a rollup row, or
/// the sum of rows).
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow)]
pub struct Totals {
    pub evaluations: i64,
    pub match_count: i64,
    pub review_count: i64,
    pub new_count: i64,
    pub reject_count: i64,
    pub sum_drift: f64,
    pub sum_reliability: f64,
    pub sum_match_confidence: f64,
    pub sum_extractor_confidence: f64,
    pub sum_latency_ms: f64,
    pub cost_count: i64,
    pub sum_cost_usd: f64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.evaluations += o.evaluations;
        self.match_count += o.match_count;
        self.review_count += o.review_count;
        self.new_count += o.new_count;
        self.reject_count += o.reject_count;
        self.sum_drift += o.sum_drift;
        self.sum_reliability += o.sum_reliability;
        self.sum_match_confidence += o.sum_match_confidence;
        self.sum_extractor_confidence += o.sum_extractor_confidence;
        self.sum_latency_ms += o.sum_latency_ms;
        self.cost_count += o.cost_count;
        self.sum_cost_usd += o.sum_cost_usd;
    }

    fn args(&self) -> [Arg; 12] {
        [
            Arg::I64(self.evaluations),
            Arg::I64(self.match_count),
            Arg::I64(self.review_count),
            Arg::I64(self.new_count),
            Arg::I64(self.reject_count),
            Arg::F64(self.sum_drift),
            Arg::F64(self.sum_reliability),
            Arg::F64(self.sum_match_confidence),
            Arg::F64(self.sum_extractor_confidence),
            Arg::F64(self.sum_latency_ms),
            Arg::I64(self.cost_count),
            Arg::F64(self.sum_cost_usd),
        ]
    }
}

/// The additive columns of [`Totals`], in its field order.
pub(crate) const TOTAL_COLUMNS: [&str; 12] = [
    "evaluations",
    "match_count",
    "review_count",
    "new_count",
    "reject_count",
    "sum_drift",
    "sum_reliability",
    "sum_match_confidence",
    "sum_extractor_confidence",
    "sum_latency_ms",
    "cost_count",
    "sum_cost_usd",
];

/// `CAST(SUM(c) AS …) AS c` for every total column: PostgreSQL sums BIGINTs as NUMERIC.
fn summed_totals() -> String {
    TOTAL_COLUMNS
        .iter()
        .map(|c| {
            let ty = if c.starts_with("sum_") {
                "DOUBLE PRECISION"
            } else {
                "BIGINT"
            };
            format!("CAST(SUM({c}) AS {ty}) AS {c}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one evaluation adds to the rollups, as the domain computed it.
#[derive(Debug, Clone)]
pub struct RollupEntry {
    pub key: RollupKey,
    pub template_version_id: Option<Uuid>,
    pub totals: Totals,
    /// Histogram bins (see `domain::analytics`) of its drift and reliability.
    pub drift_bin: i16,
    pub reliability_bin: i16,
}

/// Histogram metric ids, as stored.
pub const DRIFT_METRIC: i16 = 0;
pub const RELIABILITY_METRIC: i16 = 1;

/// Feedback totals of a set of evaluations (or a change to them, with negative parts).
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow)]
pub struct FeedbackTotals {
    pub n: i64,
    pub correct: i64,
    pub corrected: i64,
    pub rejected: i64,
    pub sum_reliability: f64,
    pub sum_reliability_sq: f64,
    pub sum_reliability_correct: f64,
}

impl FeedbackTotals {
    pub fn add(&mut self, o: &FeedbackTotals) {
        self.n += o.n;
        self.correct += o.correct;
        self.corrected += o.corrected;
        self.rejected += o.rejected;
        self.sum_reliability += o.sum_reliability;
        self.sum_reliability_sq += o.sum_reliability_sq;
        self.sum_reliability_correct += o.sum_reliability_correct;
    }
}

/// A feedback change on one evaluation, to add to its hour's calibration row.
#[derive(Debug, Clone)]
pub struct FeedbackDelta {
    pub bucket_start: i64,
    pub decision: String,
    pub reliability_bin: i16,
    pub delta: FeedbackTotals,
}

/// A sum of rollups grouped by a time bucket.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BucketTotals {
    pub bucket: i64,
    #[sqlx(flatten)]
    pub totals: Totals,
}

/// A sum of rollups per extractor identity.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExtractorTotals {
    pub extractor_vendor: String,
    pub extractor_model: String,
    pub extractor_version: String,
    pub first_bucket: i64,
    pub last_bucket: i64,
    #[sqlx(flatten)]
    pub totals: Totals,
}

/// A sum of rollups per template version.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TemplateTotals {
    pub template_id: String,
    pub template_version: i64,
    pub template_version_id: Option<Uuid>,
    pub first_bucket: i64,
    pub last_bucket: i64,
    #[sqlx(flatten)]
    pub totals: Totals,
}

/// Feedback summed per decision and reliability band.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FeedbackBand {
    pub decision: String,
    pub reliability_bin: i16,
    #[sqlx(flatten)]
    pub totals: FeedbackTotals,
}

/// A tenant's plan and this period's count.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantUsage {
    pub plan: String,
    pub monthly_limit_override: Option<i64>,
    pub used: i64,
}

/// The monthly limit a plan (with an override) allows; `None` is unlimited. The domain's
/// rule, handed to the commit so it can admit evaluations under the counter's lock.
pub type QuotaRule = fn(plan: &str, limit_override: Option<i64>) -> Option<i64>;

/// A time range of rollup buckets: `[from, to)` in unix seconds (hour-aligned), grouped in
/// buckets of `size` seconds whose boundaries sit at `offset` seconds from UTC's.
#[derive(Debug, Clone, Copy)]
pub struct BucketRange {
    pub from: i64,
    pub to: i64,
    pub size: i64,
    pub offset: i64,
}

impl BucketRange {
    /// The SQL of a row's bucket start: floor to `size` in the shifted time, shifted back.
    /// Placeholders `$2` (offset) and `$3` (size); `$1` is the tenant, `$4`/`$5` the range.
    const BUCKET: &'static str = "((bucket_start + $2) / $3 * $3 - $2)";

    fn query(&self, tenant_id: Uuid, sql: String) -> Query {
        Query::new(sql)
            .bind(tenant_id)
            .bind(self.offset)
            .bind(self.size)
            .bind(self.from)
            .bind(self.to)
    }

    /// A query over the whole range, ungrouped in time: `$1` tenant, `$2`/`$3` the range.
    fn whole(&self, tenant_id: Uuid, sql: String) -> Query {
        Query::new(sql)
            .bind(tenant_id)
            .bind(self.from)
            .bind(self.to)
    }
}

#[async_trait]
pub trait AnalyticsStore: Send + Sync {
    /// Rollup totals per bucket of `range` (buckets without evaluations are absent).
    async fn totals_by_bucket(
        &self,
        tenant_id: Uuid,
        range: BucketRange,
    ) -> Result<Vec<BucketTotals>, StoreError>;
    /// Histogram counts per bucket, metric and bin: `(bucket, metric, bin, n)`.
    async fn histogram_bins(
        &self,
        tenant_id: Uuid,
        range: BucketRange,
    ) -> Result<Vec<(i64, i16, i16, i64)>, StoreError>;
    async fn totals_by_extractor(
        &self,
        tenant_id: Uuid,
        range: BucketRange,
    ) -> Result<Vec<ExtractorTotals>, StoreError>;
    async fn totals_by_template(
        &self,
        tenant_id: Uuid,
        range: BucketRange,
    ) -> Result<Vec<TemplateTotals>, StoreError>;
    /// Change points per template version that occurred in `[from, to)`.
    async fn change_point_counts(
        &self,
        tenant_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, i64)>, StoreError>;
    async fn feedback_bands(
        &self,
        tenant_id: Uuid,
        range: BucketRange,
    ) -> Result<Vec<FeedbackBand>, StoreError>;
    /// The tenant's plan and its count for `period`; `None` for an unknown tenant.
    async fn tenant_usage(
        &self,
        tenant_id: Uuid,
        period: &str,
    ) -> Result<Option<TenantUsage>, StoreError>;
    /// Sets a tenant's plan and limit override with its audit event; false for an unknown
    /// tenant.
    async fn set_plan(
        &self,
        tenant_id: Uuid,
        plan: &str,
        monthly_limit_override: Option<i64>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
}

#[async_trait]
impl AnalyticsStore for SqlStore {
    async fn totals_by_bucket(
        &self,
        tenant_id: Uuid,
        range: BucketRange,
    ) -> Result<Vec<BucketTotals>, StoreError> {
        let bucket = BucketRange::BUCKET;
        let sql = format!(
            "SELECT {bucket} AS bucket, {} FROM evaluation_rollups \
             WHERE tenant_id = $1 AND bucket_start >= $4 AND bucket_start < $5 \
             GROUP BY 1 ORDER BY 1",
            summed_totals()
        );
        self.db.fetch_all(range.query(tenant_id, sql)).await
    }

    async fn histogram_bins(
        &self,
        tenant_id: Uuid,
        range: BucketRange,
    ) -> Result<Vec<(i64, i16, i16, i64)>, StoreError> {
        let bucket = BucketRange::BUCKET;
        let sql = format!(
            "SELECT {bucket} AS bucket, metric, bin, CAST(SUM(n) AS BIGINT) \
             FROM evaluation_histograms \
             WHERE tenant_id = $1 AND bucket_start >= $4 AND bucket_start < $5 \
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        );
        self.db.fetch_all(range.query(tenant_id, sql)).await
    }

    async fn totals_by_extractor(
        &self,
        tenant_id: Uuid,
        range: BucketRange,
    ) -> Result<Vec<ExtractorTotals>, StoreError> {
        let sql = format!(
            "SELECT extractor_vendor, extractor_model, extractor_version, \
             MIN(bucket_start) AS first_bucket, MAX(bucket_start) AS last_bucket, {} \
             FROM evaluation_rollups \
             WHERE tenant_id = $1 AND bucket_start >= $2 AND bucket_start < $3 \
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            summed_totals()
        );
        self.db.fetch_all(range.whole(tenant_id, sql)).await
    }

    async fn totals_by_template(
        &self,
        tenant_id: Uuid,
        range: BucketRange,
    ) -> Result<Vec<TemplateTotals>, StoreError> {
        let sql = format!(
            "SELECT template_id, template_version, template_version_id, MIN(bucket_start) AS first_bucket, MAX(bucket_start) AS last_bucket, {} \
             FROM evaluation_rollups \
             WHERE tenant_id = $1 AND bucket_start >= $2 AND bucket_start < $3 AND template_id <> '' \
             GROUP BY 1, 2, 3 ORDER BY 1, 2",
            summed_totals()
        );
        self.db.fetch_all(range.whole(tenant_id, sql)).await
    }

    async fn change_point_counts(
        &self,
        tenant_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, i64)>, StoreError> {
        self.db
            .fetch_all(
                Query::new(
                    "SELECT template_version_id, COUNT(*) FROM change_points \
                     WHERE tenant_id = $1 AND occurred_at >= $2 AND occurred_at < $3 \
                     GROUP BY 1",
                )
                .bind(tenant_id)
                .bind(from)
                .bind(to),
            )
            .await
    }

    async fn feedback_bands(
        &self,
        tenant_id: Uuid,
        range: BucketRange,
    ) -> Result<Vec<FeedbackBand>, StoreError> {
        let sql = "SELECT decision, reliability_bin, CAST(SUM(n) AS BIGINT) AS n, \
             CAST(SUM(correct) AS BIGINT) AS correct, \
             CAST(SUM(corrected) AS BIGINT) AS corrected, \
             CAST(SUM(rejected) AS BIGINT) AS rejected, \
             CAST(SUM(sum_reliability) AS DOUBLE PRECISION) AS sum_reliability, \
             CAST(SUM(sum_reliability_sq) AS DOUBLE PRECISION) AS sum_reliability_sq, \
             CAST(SUM(sum_reliability_correct) AS DOUBLE PRECISION) AS sum_reliability_correct \
             FROM feedback_rollups \
             WHERE tenant_id = $1 AND bucket_start >= $2 AND bucket_start < $3 \
             GROUP BY 1, 2 ORDER BY 1, 2"
            .to_string();
        self.db.fetch_all(range.whole(tenant_id, sql)).await
    }

    async fn tenant_usage(
        &self,
        tenant_id: Uuid,
        period: &str,
    ) -> Result<Option<TenantUsage>, StoreError> {
        self.db
            .fetch_optional(
                Query::new(
                    "SELECT t.plan, t.monthly_limit_override, COALESCE(u.used, 0) AS used \
                     FROM tenants t LEFT JOIN usage_counters u \
                     ON u.tenant_id = t.id AND u.period = $2 WHERE t.id = $1",
                )
                .bind(tenant_id)
                .bind(period),
            )
            .await
    }

    async fn set_plan(
        &self,
        tenant_id: Uuid,
        plan: &str,
        monthly_limit_override: Option<i64>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().await?;
        tx.change_one_with_audit(
            Query::new("UPDATE tenants SET plan = $2, monthly_limit_override = $3 WHERE id = $1")
                .bind(tenant_id)
                .bind(plan)
                .bind(monthly_limit_override),
            audit,
        )
        .await
    }
}

/// Adds the rollup entries of a commit's stored evaluations: one row per key and one
/// histogram row per bin, summed first (an upsert may touch a row once per statement) and
/// written in key order (so concurrent commits lock in one order).
pub(crate) async fn add_rollups<'a>(
    tx: &mut Tx,
    entries: impl Iterator<Item = (Uuid, &'a RollupEntry)>,
) -> Result<(), StoreError> {
    let mut rows: BTreeMap<(Uuid, &RollupKey), (Option<Uuid>, Totals)> = BTreeMap::new();
    let mut bins: BTreeMap<(Uuid, i64, i16, i16), i64> = BTreeMap::new();
    for (tenant_id, e) in entries {
        let row = rows
            .entry((tenant_id, &e.key))
            .or_insert_with(|| (e.template_version_id, Totals::default()));
        row.1.add(&e.totals);
        for (metric, bin) in [
            (DRIFT_METRIC, e.drift_bin),
            (RELIABILITY_METRIC, e.reliability_bin),
        ] {
            *bins
                .entry((tenant_id, e.key.bucket_start, metric, bin))
                .or_default() += e.totals.evaluations;
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = rows.into_iter().collect();
    let updates = TOTAL_COLUMNS
        .iter()
        .map(|c| format!("{c} = evaluation_rollups.{c} + excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    for chunk in rows.chunks(ROLLUP_CHUNK) {
        let insert = Query::new(format!(
            "INSERT INTO evaluation_rollups (tenant_id, bucket_start, template_id, \
             template_version, extractor_vendor, extractor_model, extractor_version, \
             template_version_id, {}) VALUES ",
            TOTAL_COLUMNS.join(", ")
        ))
        .push_tuples(chunk.iter().map(|((tenant_id, k), (tv, totals))| {
            let mut args = vec![
                Arg::Uuid(*tenant_id),
                Arg::I64(k.bucket_start),
                (&k.template_id).into(),
                Arg::I64(k.template_version),
                (&k.extractor_vendor).into(),
                (&k.extractor_model).into(),
                (&k.extractor_version).into(),
                (*tv).into(),
            ];
            args.extend(totals.args());
            args
        }))
        .push(&format!(
            " ON CONFLICT (tenant_id, bucket_start, template_id, template_version, \
             extractor_vendor, extractor_model, extractor_version) DO UPDATE SET {updates}"
        ));
        tx.execute(insert).await?;
    }
    let bins: Vec<_> = bins.into_iter().collect();
    for chunk in bins.chunks(ROLLUP_CHUNK * 4) {
        let insert = Query::new(
            "INSERT INTO evaluation_histograms (tenant_id, bucket_start, metric, bin, n) VALUES ",
        )
        .push_tuples(chunk.iter().map(|((tenant_id, bucket, metric, bin), n)| {
            [
                Arg::Uuid(*tenant_id),
                Arg::I64(*bucket),
                Arg::I32(i32::from(*metric)),
                Arg::I32(i32::from(*bin)),
                Arg::I64(*n),
            ]
        }))
        .push(
            " ON CONFLICT (tenant_id, bucket_start, metric, bin) \
             DO UPDATE SET n = evaluation_histograms.n + excluded.n",
        );
        tx.execute(insert).await?;
    }
    Ok(())
}

/// Rollup rows per multi-row upsert (20 parameters a row).
const ROLLUP_CHUNK: usize = 64;

/// Adds one feedback change to its hour's calibration row.
pub(crate) async fn add_feedback(
    tx: &mut Tx,
    tenant_id: Uuid,
    d: &FeedbackDelta,
) -> Result<(), StoreError> {
    let t = &d.delta;
    tx.execute(
        Query::new(
            "INSERT INTO feedback_rollups (tenant_id, bucket_start, decision, reliability_bin, \
             n, correct, corrected, rejected, sum_reliability, sum_reliability_sq, \
             sum_reliability_correct) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (tenant_id, bucket_start, decision, reliability_bin) DO UPDATE SET \
             n = feedback_rollups.n + excluded.n, \
             correct = feedback_rollups.correct + excluded.correct, \
             corrected = feedback_rollups.corrected + excluded.corrected, \
             rejected = feedback_rollups.rejected + excluded.rejected, \
             sum_reliability = feedback_rollups.sum_reliability + excluded.sum_reliability, \
             sum_reliability_sq = feedback_rollups.sum_reliability_sq + excluded.sum_reliability_sq, \
             sum_reliability_correct = \
                 feedback_rollups.sum_reliability_correct + excluded.sum_reliability_correct",
        )
        .bind(tenant_id)
        .bind(d.bucket_start)
        .bind(d.decision.as_str())
        .bind(i32::from(d.reliability_bin))
        .bind(t.n)
        .bind(t.correct)
        .bind(t.corrected)
        .bind(t.rejected)
        .bind(t.sum_reliability)
        .bind(t.sum_reliability_sq)
        .bind(t.sum_reliability_correct),
    )
    .await?;
    Ok(())
}

/// Adds counts to usage counters, in key order.
pub(crate) async fn add_usage(
    tx: &mut Tx,
    counts: &BTreeMap<(Uuid, String), i64>,
) -> Result<(), StoreError> {
    let rows: Vec<_> = counts.iter().filter(|(_, n)| **n > 0).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let insert = Query::new("INSERT INTO usage_counters (tenant_id, period, used) VALUES ")
        .push_tuples(
            rows.iter()
                .map(|((tenant_id, period), n)| [Arg::Uuid(*tenant_id), period.into(), Arg::I64(**n)]),
        )
        .push(
            " ON CONFLICT (tenant_id, period) DO UPDATE SET used = usage_counters.used + excluded.used",
        );
    tx.execute(insert).await?;
    Ok(())
}

/// Locks a tenant's counter for `period` (creating it) and returns its plan and count, so
/// the commit can admit evaluations up to the limit exactly, whichever replica commits.
pub(crate) async fn lock_usage(
    tx: &mut Tx,
    tenant_id: Uuid,
    period: &str,
) -> Result<TenantUsage, StoreError> {
    tx.execute(
        Query::new(
            "INSERT INTO usage_counters (tenant_id, period, used) VALUES ($1, $2, 0) \
             ON CONFLICT (tenant_id, period) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(period),
    )
    .await?;
    let lock = tx.backend().lock_row();
    let (used,): (i64,) = tx
        .fetch_one(
            Query::new(format!(
                "SELECT used FROM usage_counters WHERE tenant_id = $1 AND period = $2{lock}"
            ))
            .bind(tenant_id)
            .bind(period),
        )
        .await?;
    let (plan, monthly_limit_override): (String, Option<i64>) = tx
        .fetch_one(
            Query::new("SELECT plan, monthly_limit_override FROM tenants WHERE id = $1")
                .bind(tenant_id),
        )
        .await?;
    Ok(TenantUsage {
        plan,
        monthly_limit_override,
        used,
    })
}
