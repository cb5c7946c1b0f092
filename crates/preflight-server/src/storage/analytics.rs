//! Rollups for analytics and the monthly usage counters, in storage.
//!
//! Analytics never scans evaluations. Every commit adds its evaluations to rollup rows at
//! three grains — hour rows, UTC-day rows and UTC-month rows, written by the same
//! statement — along one dimension each: per extractor (summary, timeseries, extractors),
//! per template version (templates), and sparse histograms of drift and reliability
//! (percentiles); feedback adds to calibration rows and a resolved review item to the review
//! rows; the tenant's usage counter for the month is bumped. A read covers a range with the
//! coarsest rows that fit ([`BucketRange::cover`]): month rows for the whole months of a
//! range summed as one, day rows for its whole UTC days, hour rows for the rest. A year's
//! summary sums about a dozen rows per dimension value and a 30-day one a few tens,
//! instead of hundreds per hour, whatever the volume.
//!
//! All writes are additive upserts written once for both backends (`ON CONFLICT … DO
//! UPDATE SET x = t.x + excluded.x`), keyed and ordered so concurrent commits lock rows in
//! one order. What a row means — which bin, which period, what a plan allows — is decided by
//! the domain (`domain::analytics`, `domain::usage`); this module only adds and sums.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::NewAuditEvent;
use super::sql::{Arg, Query, Tx};
use super::{SqlStore, StoreError};

/// Where one evaluation falls in the rollups: its hour, template version and extractor.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RollupKey {
    /// Unix seconds of the hour's start; the day row is derived from it.
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

/// The grains every rollup table holds: hours and UTC days, in seconds, and UTC calendar
/// months, whose `grain` value is a label (30 days) since a month has no fixed length.
pub const HOUR: i64 = 3_600;
pub const DAY: i64 = 86_400;
pub const MONTH: i64 = 2_592_000;
const GRAINS: [i64; 3] = [HOUR, DAY, MONTH];

/// The start of the `grain` bucket an instant (unix seconds) falls in.
fn bucket_of(t: i64, grain: i64) -> i64 {
    if grain == MONTH {
        month_start(t)
    } else {
        t.div_euclid(grain) * grain
    }
}

/// The first midnight (UTC) of the calendar month an instant falls in.
fn month_start(t: i64) -> i64 {
    let day = t.div_euclid(DAY);
    // Days since 1970-01-01 to the proleptic Gregorian date, without a fallible chrono
    // conversion: Howard Hinnant's civil-from-days.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day_of_month = doy - (153 * mp + 2) / 5; // 0-based
    (day - day_of_month) * DAY
}

/// The first midnight (UTC) of the month after the one an instant falls in.
fn next_month_start(t: i64) -> i64 {
    // 32 days past a month's first day always lands in the next month.
    month_start(month_start(t) + 32 * DAY)
}

/// A time range of rollup buckets: `[from, to)` in unix seconds (hour-aligned), grouped in
/// buckets of `size` seconds whose boundaries sit at `offset` seconds from UTC's.
#[derive(Debug, Clone, Copy)]
pub struct BucketRange {
    pub from: i64,
    pub to: i64,
    pub size: i64,
    pub offset: i64,
}

/// Which rows of a rollup table cover a range: month rows for `[month_from, month_to)`,
/// day rows for the rest of `[day_from, day_to)`, hour rows for the rest of `[from, to)`.
/// Empty spans sit at `to` (no days) or `day_to` (no months).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cover {
    pub from: i64,
    pub to: i64,
    pub day_from: i64,
    pub day_to: i64,
    pub month_from: i64,
    pub month_to: i64,
}

impl BucketRange {
    /// The SQL of a row's bucket start: floor to `size` in the shifted time, shifted back.
    /// Placeholders `$2` (offset) and `$3` (size); `$1` is the tenant, `$4`–`$9` the cover.
    const BUCKET: &'static str = "((bucket_start + $2) / $3 * $3 - $2)";

    /// A range summed as one bucket.
    pub fn whole(from: i64, to: i64) -> BucketRange {
        BucketRange {
            from,
            to,
            size: to - from,
            offset: -from,
        }
    }

    /// The rows that cover the range. Day rows serve its whole UTC days when no bucket
    /// boundary falls inside a UTC day — buckets of whole UTC days, the range as one bucket,
    /// or (`grouped` false) a query that sums the range without grouping it in time; hour
    /// rows serve the rest, and all of it in a time zone whose days are not UTC's. Month
    /// rows serve its whole UTC months when the range is summed as one bucket (buckets are
    /// never months).
    pub fn cover(&self, grouped: bool) -> Cover {
        let day_from = (self.from + DAY - 1).div_euclid(DAY) * DAY;
        let day_to = self.to.div_euclid(DAY) * DAY;
        let one_bucket = (self.from + self.offset).rem_euclid(self.size) == 0
            && self.to - self.from <= self.size;
        let whole_days = self.size % DAY == 0 && self.offset.rem_euclid(DAY) == 0;
        let days = (!grouped || one_bucket || whole_days) && day_from < day_to;
        // Without days, an empty day span at the end leaves every hour to hour rows.
        let (day_from, day_to) = if days {
            (day_from, day_to)
        } else {
            (self.to, self.to)
        };
        // The first month start at or after day_from: the day before is in the month before
        // exactly when day_from starts a month.
        let month_from = next_month_start(day_from - DAY);
        let month_to = month_start(day_to);
        let months = days && (!grouped || one_bucket) && month_from < month_to;
        let (month_from, month_to) = if months {
            (month_from, month_to)
        } else {
            (day_to, day_to)
        };
        Cover {
            from: self.from,
            to: self.to,
            day_from,
            day_to,
            month_from,
            month_to,
        }
    }

    /// A query grouped by bucket: `$1` tenant, `$2`/`$3` offset and size, `$4`–`$9` the cover.
    fn grouped(&self, tenant_id: Uuid, sql: String) -> Query {
        let c = self.cover(true);
        Query::new(sql)
            .bind(tenant_id)
            .bind(self.offset)
            .bind(self.size)
            .bind(c.from)
            .bind(c.to)
            .bind(c.day_from)
            .bind(c.day_to)
            .bind(c.month_from)
            .bind(c.month_to)
    }

    /// A query over the whole range, ungrouped in time: `$1` tenant, `$2`–`$7` the cover.
    pub(crate) fn ungrouped(&self, tenant_id: Uuid, sql: String) -> Query {
        let c = self.cover(false);
        Query::new(sql)
            .bind(tenant_id)
            .bind(c.from)
            .bind(c.to)
            .bind(c.day_from)
            .bind(c.day_to)
            .bind(c.month_from)
            .bind(c.month_to)
    }
}

/// The rows of a rollup `table` that cover a range, as a subquery: `$1` is the tenant and
/// `$p`…`$p+5` the [`Cover`]'s from, to, day_from, day_to, month_from and month_to. Five
/// index ranges of the primary key (tenant, grain, bucket) rather than one predicate with
/// ORs, so both planners read only the rows they sum.
pub(crate) fn covering(table: &str, p: usize) -> String {
    let (from, to, day_from, day_to) = (p, p + 1, p + 2, p + 3);
    let (month_from, month_to) = (p + 4, p + 5);
    format!(
        "(SELECT * FROM {table} WHERE tenant_id = $1 AND grain = {MONTH} \
         AND bucket_start >= ${month_from} AND bucket_start < ${month_to} \
         UNION ALL SELECT * FROM {table} WHERE tenant_id = $1 AND grain = {DAY} \
         AND bucket_start >= ${day_from} AND bucket_start < ${month_from} \
         UNION ALL SELECT * FROM {table} WHERE tenant_id = $1 AND grain = {DAY} \
         AND bucket_start >= ${month_to} AND bucket_start < ${day_to} \
         UNION ALL SELECT * FROM {table} WHERE tenant_id = $1 AND grain = {HOUR} \
         AND bucket_start >= ${from} AND bucket_start < ${day_from} \
         UNION ALL SELECT * FROM {table} WHERE tenant_id = $1 AND grain = {HOUR} \
         AND bucket_start >= ${day_to} AND bucket_start < ${to}) r"
    )
}

#[async_trait]
pub trait AnalyticsStore: Send + Sync {
    /// Rollup totals per bucket of `range` (buckets without evaluations are absent).
    async fn totals_by_bucket(
        &self,
        tenant_id: Uuid,
        range: BucketRange,
    ) -> Result<Vec<BucketTotals>, StoreError>;
    /// Histogram counts by bucket, metric and bin: `(bucket, metric, bin, n)`, in no order
    /// and not always summed (a key may come in several rows: the caller adds them up).
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
        let sql = format!(
            "SELECT {} AS bucket, {} FROM {} GROUP BY 1 ORDER BY 1",
            BucketRange::BUCKET,
            summed_totals(),
            covering("extractor_rollups", 4)
        );
        self.db.fetch_all(range.grouped(tenant_id, sql)).await
    }

    async fn histogram_bins(
        &self,
        tenant_id: Uuid,
        range: BucketRange,
    ) -> Result<Vec<(i64, i16, i16, i64)>, StoreError> {
        // The caller folds the rows into its bins whatever their order, so SQL sums only
        // where that shrinks the answer: a bucket coarser than the rows read. Where each
        // row is its own bucket's bin (hour buckets; UTC days read from day rows) grouping
        // and sorting cost PostgreSQL three times the scan (110 ms against 36 ms for a
        // year of daily bins at 10 M evaluations) and saved nothing.
        let cover = range.cover(true);
        let row_per_bin = range.size == HOUR
            || (range.size == DAY
                && cover.day_from < cover.day_to
                && cover.month_from == cover.month_to);
        let sql = if row_per_bin {
            format!(
                "SELECT {} AS bucket, metric, bin, n FROM {}",
                BucketRange::BUCKET,
                covering("score_histograms", 4)
            )
        } else {
            format!(
                "SELECT {} AS bucket, metric, bin, CAST(SUM(n) AS BIGINT) FROM {} GROUP BY 1, 2, 3",
                BucketRange::BUCKET,
                covering("score_histograms", 4)
            )
        };
        self.db.fetch_all(range.grouped(tenant_id, sql)).await
    }

    async fn totals_by_extractor(
        &self,
        tenant_id: Uuid,
        range: BucketRange,
    ) -> Result<Vec<ExtractorTotals>, StoreError> {
        let sql = format!(
            "SELECT extractor_vendor, extractor_model, extractor_version, \
             MIN(first_hour) AS first_bucket, MAX(last_hour) AS last_bucket, {} FROM {} \
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            summed_totals(),
            covering("extractor_rollups", 2)
        );
        self.db.fetch_all(range.ungrouped(tenant_id, sql)).await
    }

    async fn totals_by_template(
        &self,
        tenant_id: Uuid,
        range: BucketRange,
    ) -> Result<Vec<TemplateTotals>, StoreError> {
        let sql = format!(
            "SELECT template_id, template_version, template_version_id, \
             MIN(first_hour) AS first_bucket, MAX(last_hour) AS last_bucket, {} FROM {} \
             GROUP BY 1, 2, 3 ORDER BY 1, 2",
            summed_totals(),
            covering("template_rollups", 2)
        );
        self.db.fetch_all(range.ungrouped(tenant_id, sql)).await
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
             FROM "
            .to_string()
            + &covering("calibration_rollups", 2)
            + " GROUP BY 1, 2 ORDER BY 1, 2";
        self.db.fetch_all(range.ungrouped(tenant_id, sql)).await
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

/// Rollup rows of one table to upsert: the key's values, the values set only on insert,
/// and the first/last hour and totals to merge.
struct SpanRow {
    key: Vec<Arg>,
    fixed: Vec<Arg>,
    first_hour: i64,
    last_hour: i64,
    totals: Totals,
}

impl SpanRow {
    fn merge(&mut self, hour: i64, totals: &Totals) {
        self.first_hour = self.first_hour.min(hour);
        self.last_hour = self.last_hour.max(hour);
        self.totals.add(totals);
    }
}

/// Upserts span rows: totals added, first/last hour widened (`CASE`, which both dialects
/// share, where PostgreSQL's `LEAST` and SQLite's two-argument `MIN` differ).
async fn upsert_spans(
    tx: &mut Tx,
    table: &str,
    key_columns: &[&str],
    fixed_columns: &[&str],
    rows: Vec<SpanRow>,
) -> Result<(), StoreError> {
    let keys = key_columns.join(", ");
    let columns = key_columns
        .iter()
        .chain(fixed_columns)
        .chain(&["first_hour", "last_hour"])
        .chain(TOTAL_COLUMNS.iter())
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let updates = TOTAL_COLUMNS
        .iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .chain([
            format!(
                "first_hour = CASE WHEN excluded.first_hour < {table}.first_hour \
                 THEN excluded.first_hour ELSE {table}.first_hour END"
            ),
            format!(
                "last_hour = CASE WHEN excluded.last_hour > {table}.last_hour \
                 THEN excluded.last_hour ELSE {table}.last_hour END"
            ),
        ])
        .collect::<Vec<_>>()
        .join(", ");
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<SpanRow> = rows.by_ref().take(ROLLUP_CHUNK).collect();
        let insert = Query::new(format!("INSERT INTO {table} ({columns}) VALUES "))
            .push_tuples(chunk.into_iter().map(|r| {
                let mut args = r.key;
                args.extend(r.fixed);
                args.extend([Arg::I64(r.first_hour), Arg::I64(r.last_hour)]);
                args.extend(r.totals.args());
                args
            }))
            .push(&format!(" ON CONFLICT ({keys}) DO UPDATE SET {updates}"));
        tx.execute(insert).await?;
    }
    Ok(())
}

/// Adds the rollup entries of a commit's stored evaluations to the hour, day and month rows of
/// every rollup table: one row per key, summed first (an upsert may touch a row once per
/// statement) and written in key order (so concurrent commits lock in one order).
pub(crate) async fn add_rollups<'a>(
    tx: &mut Tx,
    entries: impl Iterator<Item = (Uuid, &'a RollupEntry)>,
) -> Result<(), StoreError> {
    type ExtractorKey<'k> = (Uuid, i64, i64, &'k str, &'k str, &'k str);
    type TemplateKey<'k> = (Uuid, i64, i64, &'k str, i64);
    let mut extractors: BTreeMap<ExtractorKey, SpanRow> = BTreeMap::new();
    let mut templates: BTreeMap<TemplateKey, SpanRow> = BTreeMap::new();
    let mut bins: BTreeMap<(Uuid, i64, i64, i16, i16), i64> = BTreeMap::new();
    let span = |key: Vec<Arg>, fixed: Vec<Arg>, hour: i64| SpanRow {
        key,
        fixed,
        first_hour: hour,
        last_hour: hour,
        totals: Totals::default(),
    };
    for (tenant_id, e) in entries {
        let k = &e.key;
        let hour = k.bucket_start;
        for grain in GRAINS {
            let bucket = bucket_of(hour, grain);
            let head = || vec![Arg::Uuid(tenant_id), Arg::I64(grain), Arg::I64(bucket)];
            extractors
                .entry((
                    tenant_id,
                    grain,
                    bucket,
                    &k.extractor_vendor,
                    &k.extractor_model,
                    &k.extractor_version,
                ))
                .or_insert_with(|| {
                    let mut key = head();
                    key.extend([
                        (&k.extractor_vendor).into(),
                        (&k.extractor_model).into(),
                        (&k.extractor_version).into(),
                    ]);
                    span(key, Vec::new(), hour)
                })
                .merge(hour, &e.totals);
            if !k.template_id.is_empty() {
                templates
                    .entry((tenant_id, grain, bucket, &k.template_id, k.template_version))
                    .or_insert_with(|| {
                        let mut key = head();
                        key.extend([(&k.template_id).into(), Arg::I64(k.template_version)]);
                        span(key, vec![e.template_version_id.into()], hour)
                    })
                    .merge(hour, &e.totals);
            }
            for (metric, bin) in [
                (DRIFT_METRIC, e.drift_bin),
                (RELIABILITY_METRIC, e.reliability_bin),
            ] {
                *bins
                    .entry((tenant_id, grain, bucket, metric, bin))
                    .or_default() += e.totals.evaluations;
            }
        }
    }
    if extractors.is_empty() {
        return Ok(());
    }
    upsert_spans(
        tx,
        "extractor_rollups",
        &[
            "tenant_id",
            "grain",
            "bucket_start",
            "extractor_vendor",
            "extractor_model",
            "extractor_version",
        ],
        &[],
        extractors.into_values().collect(),
    )
    .await?;
    upsert_spans(
        tx,
        "template_rollups",
        &[
            "tenant_id",
            "grain",
            "bucket_start",
            "template_id",
            "template_version",
        ],
        &["template_version_id"],
        templates.into_values().collect(),
    )
    .await?;
    let bins: Vec<_> = bins.into_iter().collect();
    for chunk in bins.chunks(ROLLUP_CHUNK * 4) {
        let insert = Query::new(
            "INSERT INTO score_histograms (tenant_id, grain, bucket_start, metric, bin, n) VALUES ",
        )
        .push_tuples(
            chunk
                .iter()
                .map(|((tenant_id, grain, bucket, metric, bin), n)| {
                    [
                        Arg::Uuid(*tenant_id),
                        Arg::I64(*grain),
                        Arg::I64(*bucket),
                        Arg::I32(i32::from(*metric)),
                        Arg::I32(i32::from(*bin)),
                        Arg::I64(*n),
                    ]
                }),
        )
        .push(
            " ON CONFLICT (tenant_id, grain, bucket_start, metric, bin) \
             DO UPDATE SET n = score_histograms.n + excluded.n",
        );
        tx.execute(insert).await?;
    }
    Ok(())
}

/// Rollup rows per multi-row upsert (20 parameters a row).
const ROLLUP_CHUNK: usize = 64;

/// Adds one feedback change to its evaluated hour's, day's and month's calibration rows.
pub(crate) async fn add_feedback(
    tx: &mut Tx,
    tenant_id: Uuid,
    d: &FeedbackDelta,
) -> Result<(), StoreError> {
    let t = &d.delta;
    let insert = Query::new(
        "INSERT INTO calibration_rollups (tenant_id, grain, bucket_start, decision, \
         reliability_bin, n, correct, corrected, rejected, sum_reliability, sum_reliability_sq, \
         sum_reliability_correct) VALUES ",
    )
    .push_tuples(GRAINS.map(|grain| {
        [
            Arg::Uuid(tenant_id),
            Arg::I64(grain),
            Arg::I64(bucket_of(d.bucket_start, grain)),
            d.decision.as_str().into(),
            Arg::I32(i32::from(d.reliability_bin)),
            Arg::I64(t.n),
            Arg::I64(t.correct),
            Arg::I64(t.corrected),
            Arg::I64(t.rejected),
            Arg::F64(t.sum_reliability),
            Arg::F64(t.sum_reliability_sq),
            Arg::F64(t.sum_reliability_correct),
        ]
    }))
    .push(
        " ON CONFLICT (tenant_id, grain, bucket_start, decision, reliability_bin) DO UPDATE SET \
         n = calibration_rollups.n + excluded.n, \
         correct = calibration_rollups.correct + excluded.correct, \
         corrected = calibration_rollups.corrected + excluded.corrected, \
         rejected = calibration_rollups.rejected + excluded.rejected, \
         sum_reliability = calibration_rollups.sum_reliability + excluded.sum_reliability, \
         sum_reliability_sq = calibration_rollups.sum_reliability_sq + excluded.sum_reliability_sq, \
         sum_reliability_correct = \
             calibration_rollups.sum_reliability_correct + excluded.sum_reliability_correct",
    );
    tx.execute(insert).await?;
    Ok(())
}

/// Adds one resolved review item to its resolved hour's, day's and month's review rows, with the
/// time from the item's creation in whole milliseconds.
pub(crate) async fn add_review_resolution(
    tx: &mut Tx,
    tenant_id: Uuid,
    resolved_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    // Each instant rounded to the millisecond, then subtracted: what SQLite's date
    // functions (millisecond precision) and so both backfills compute.
    let millis = |t: DateTime<Utc>| {
        let nanos =
            i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos());
        (nanos + 500_000).div_euclid(1_000_000)
    };
    let seconds = (millis(resolved_at) - millis(created_at)) as f64 / 1000.0;
    let insert = Query::new(
        "INSERT INTO review_rollups (tenant_id, grain, bucket_start, resolved, \
         sum_resolution_seconds, max_resolution_seconds) VALUES ",
    )
    .push_tuples(GRAINS.map(|grain| {
        [
            Arg::Uuid(tenant_id),
            Arg::I64(grain),
            Arg::I64(bucket_of(resolved_at.timestamp(), grain)),
            Arg::I64(1),
            Arg::F64(seconds),
            Arg::F64(seconds),
        ]
    }))
    .push(
        " ON CONFLICT (tenant_id, grain, bucket_start) DO UPDATE SET \
         resolved = review_rollups.resolved + excluded.resolved, \
         sum_resolution_seconds = \
             review_rollups.sum_resolution_seconds + excluded.sum_resolution_seconds, \
         max_resolution_seconds = CASE \
             WHEN excluded.max_resolution_seconds > review_rollups.max_resolution_seconds \
             THEN excluded.max_resolution_seconds ELSE review_rollups.max_resolution_seconds END",
    );
    tx.execute(insert).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_start_is_the_first_midnight_of_the_utc_month() {
        // Every day from 1900 to 2200, against chrono's calendar.
        use chrono::{Datelike, NaiveDate};
        let first = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap();
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for d in 0..(300 * 366) {
            let date = first + chrono::Days::new(d);
            let t = (date - epoch).num_days() * DAY + 13 * HOUR + 7;
            let expected = (date.with_day(1).unwrap() - epoch).num_days() * DAY;
            assert_eq!(month_start(t), expected, "{date}");
            let next = date.with_day(1).unwrap() + chrono::Months::new(1);
            assert_eq!(
                next_month_start(t),
                (next - epoch).num_days() * DAY,
                "{date}"
            );
        }
    }

    /// The spans a cover reads, as (grain, from, to), empty ones left out.
    fn spans(c: Cover) -> Vec<(i64, i64, i64)> {
        [
            (MONTH, c.month_from, c.month_to),
            (DAY, c.day_from, c.month_from),
            (DAY, c.month_to, c.day_to),
            (HOUR, c.from, c.day_from),
            (HOUR, c.day_to, c.to),
        ]
        .into_iter()
        .filter(|(_, a, b)| a < b)
        .collect()
    }

    /// Every hour of the range is read exactly once, from a row of a grain aligned to it.
    fn assert_partition(c: Cover) {
        let mut s = spans(c);
        s.sort_by_key(|x| x.1);
        let mut at = c.from;
        for (grain, a, b) in s {
            assert_eq!(a, at, "{c:?}");
            assert_eq!(bucket_of(a, grain), a, "{c:?}");
            assert_eq!(bucket_of(b, grain), b, "{c:?}");
            at = b;
        }
        assert_eq!(at, c.to, "{c:?}");
    }

    #[test]
    fn a_year_summed_as_one_reads_month_rows_for_its_whole_months() {
        // 2025-12-01T05:00Z to 2026-12-01T05:00Z: January to November whole, December's
        // last 30 days, and hours at each end.
        let from = 1_764_565_200;
        let to = from + 365 * DAY;
        let c = BucketRange::whole(from, to).cover(true);
        assert_partition(c);
        assert_eq!(
            spans(c),
            vec![
                (MONTH, 1_767_225_600, 1_796_083_200), // 2026-01-01 to 2026-12-01
                (DAY, 1_764_633_600, 1_767_225_600),   // 2025-12-02 to 2026-01-01
                (HOUR, from, 1_764_633_600),
                (HOUR, 1_796_083_200, to),
            ]
        );
    }

    #[test]
    fn buckets_in_time_never_read_month_rows() {
        let from = 1_764_547_200; // 2025-12-01T00:00Z
        for (size, offset) in [(DAY, 0), (HOUR, 0), (DAY, 5 * HOUR)] {
            let r = BucketRange {
                from,
                to: from + 120 * DAY,
                size,
                offset,
            };
            let c = r.cover(true);
            assert_partition(c);
            assert!(spans(c).iter().all(|s| s.0 != MONTH), "{r:?}");
        }
        // Ungrouped queries (extractors, templates, calibration) read them.
        let c = BucketRange {
            from,
            to: from + 120 * DAY,
            size: DAY,
            offset: 0,
        }
        .cover(false);
        assert_partition(c);
        // December to February whole; March's 30 days from day rows.
        assert_eq!(spans(c)[0], (MONTH, from, 1_772_323_200));
        assert_eq!(spans(c)[1], (DAY, 1_772_323_200, from + 120 * DAY));
    }

    #[test]
    fn covers_partition_any_hour_aligned_range() {
        let base = 1_700_000_000_i64.div_euclid(HOUR) * HOUR;
        for start in (0..2_000).step_by(37) {
            for len in [1, 5, 23, 24, 25, 24 * 31, 24 * 45, 24 * 400, 24 * 366] {
                let (from, to) = (base + start * HOUR, base + (start + len) * HOUR);
                for grouped in [false, true] {
                    assert_partition(BucketRange::whole(from, to).cover(grouped));
                }
            }
        }
    }
}
