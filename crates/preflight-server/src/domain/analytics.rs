//! Analytics: how a tenant's extraction is doing, from rollups rather than raw rows.
//!
//! Every committed evaluation adds itself to rollup rows per extractor and per template
//! version and to drift and reliability histograms, each at an hour and a UTC-day grain;
//! feedback adds to calibration rows (see `storage::analytics`). The routes read only
//! those — day rows for a range's whole UTC days, hour rows for its edges — so their cost
//! grows with days × extractors (or templates), never with evaluations.
//!
//! What that buys and costs, stated once so the API docs can repeat it:
//! - Ranges are whole hours (whole `interval`s for the timeseries): `from_ts` is rounded
//!   down and `to_ts` up, and the answer says which range it covers.
//! - Averages and rates are exact. Percentiles are read from histograms of 0.01-wide bins
//!   and reported as the upper edge of the bin holding the nearest-rank value, so a p95 is
//!   at most 0.01 above the exact one and never below it.
//! - Time zones are explicit: `tz` is `UTC` (default) or a whole-hour offset such as
//!   `+05:00`, and moves day boundaries; every timestamp in an answer is UTC.
//! - The range rules are the original PreFlight's: default the last 30 days, `from < to`,
//!   at most 366 days, at most 1 000 buckets; violations are 400 `INVALID_QUERY`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use preflight_engine::{Decision, ExtractorIdentity, ExtractorMetadata};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::evaluations::FeedbackOutcome;
use super::review::{self, QueueSummary};
use crate::error::{ApiError, Violations};
use crate::storage::analytics::{
    BucketRange, FeedbackDelta, FeedbackTotals, RollupEntry, RollupKey, Totals, DRIFT_METRIC,
    RELIABILITY_METRIC,
};
use crate::storage::evaluations::DecidedEvaluation;
use crate::storage::Store;

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
const DEFAULT_RANGE: i64 = 30 * DAY;
const MAX_RANGE: i64 = 366 * DAY;
pub const MAX_BUCKETS: i64 = 1_000;
/// Histogram bins per unit (0.01 wide); a value of exactly 1.0 has a bin of its own.
const BINS_PER_UNIT: f64 = 100.0;
/// Reliability bands of calibration (0.1 wide; 1.0 falls in the last).
const BANDS: i16 = 10;

/// The histogram bin of a score in 0..1.
pub fn score_bin(x: f64) -> i16 {
    if x.is_finite() {
        (x * BINS_PER_UNIT).floor().clamp(0.0, BINS_PER_UNIT) as i16
    } else {
        0
    }
}

/// The calibration band of a reliability in 0..1.
pub fn reliability_band(x: f64) -> i16 {
    if x.is_finite() {
        ((x * f64::from(BANDS)).floor() as i64).clamp(0, i64::from(BANDS) - 1) as i16
    } else {
        0
    }
}

/// The start (unix seconds) of the UTC hour an instant falls in.
pub fn hour_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(HOUR) * HOUR
}

/// What one decided evaluation adds to the rollups once it is stored.
pub fn rollup_entry(
    e: &DecidedEvaluation,
    extractor: &ExtractorIdentity,
    metadata: &ExtractorMetadata,
) -> RollupEntry {
    let decision = Decision::parse(&e.decision);
    let is = |d: Decision| i64::from(decision == Some(d));
    let cost = metadata.cost_usd.filter(|c| c.is_finite());
    RollupEntry {
        key: RollupKey {
            bucket_start: hour_of(e.created_at),
            template_id: e.template_id.clone().unwrap_or_default(),
            template_version: e.template_version.unwrap_or(0),
            extractor_vendor: extractor.vendor.clone(),
            extractor_model: extractor.model.clone(),
            extractor_version: extractor.version.clone(),
        },
        template_version_id: e.template_version_id,
        totals: Totals {
            evaluations: 1,
            match_count: is(Decision::Match),
            review_count: is(Decision::Review),
            new_count: is(Decision::New),
            reject_count: is(Decision::Reject),
            sum_drift: e.drift_score,
            sum_reliability: e.reliability_score,
            sum_match_confidence: e.match_confidence,
            sum_extractor_confidence: e.extractor_confidence,
            sum_latency_ms: if metadata.latency_ms.is_finite() {
                metadata.latency_ms
            } else {
                0.0
            },
            cost_count: i64::from(cost.is_some()),
            sum_cost_usd: cost.unwrap_or(0.0),
        },
        drift_bin: score_bin(e.drift_score),
        reliability_bin: score_bin(e.reliability_score),
    }
}

/// What a feedback change does to its evaluation's calibration row: a first verdict adds
/// the evaluation; a changed one moves one count between outcomes.
pub fn feedback_delta(
    e: &DecidedEvaluation,
    previous: Option<FeedbackOutcome>,
    outcome: FeedbackOutcome,
) -> Option<FeedbackDelta> {
    if previous == Some(outcome) {
        return None;
    }
    let r = e.reliability_score;
    let count = |o: FeedbackOutcome| i64::from(outcome == o) - i64::from(previous == Some(o));
    let first = i64::from(previous.is_none());
    let correct = count(FeedbackOutcome::Correct);
    Some(FeedbackDelta {
        bucket_start: hour_of(e.created_at),
        decision: e.decision.clone(),
        reliability_bin: reliability_band(r),
        delta: FeedbackTotals {
            n: first,
            correct,
            corrected: count(FeedbackOutcome::Corrected),
            rejected: count(FeedbackOutcome::Rejected),
            sum_reliability: first as f64 * r,
            sum_reliability_sq: first as f64 * r * r,
            sum_reliability_correct: correct as f64 * r,
        },
    })
}

/// The query string every analytics route takes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsQuery {
    /// Start, RFC 3339 or unix seconds; default `to_ts` minus 30 days. Rounded down to
    /// the hour (to the interval for the timeseries).
    pub from_ts: Option<String>,
    /// End (exclusive), RFC 3339 or unix seconds; default now. Rounded up likewise.
    pub to_ts: Option<String>,
    /// Timeseries only (documented on its route); 400 elsewhere.
    #[param(ignore)]
    pub interval: Option<String>,
    /// `UTC` (default) or a whole-hour UTC offset such as `+05:00` or `-08:00`: where
    /// day boundaries fall.
    pub tz: Option<String>,
}

/// A timeseries bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Hour,
    Day,
}

impl Interval {
    fn seconds(self) -> i64 {
        match self {
            Interval::Hour => HOUR,
            Interval::Day => DAY,
        }
    }
}

/// A validated range: `[from, to)` aligned to `size`-second buckets in the time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: i64,
    pub to: i64,
    pub size: i64,
    /// Seconds east of UTC.
    pub offset: i64,
}

impl Range {
    fn buckets(&self) -> BucketRange {
        BucketRange {
            from: self.from,
            to: self.to,
            size: self.size,
            offset: self.offset,
        }
    }

    /// The range as one bucket: the store sums every hour of it.
    fn whole(&self) -> BucketRange {
        BucketRange::whole(self.from, self.to)
    }

    fn time(&self, t: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(t, 0).unwrap_or_default()
    }

    fn timezone(&self) -> String {
        if self.offset == 0 {
            "UTC".into()
        } else {
            let sign = if self.offset < 0 { '-' } else { '+' };
            format!("{sign}{:02}:00", self.offset.abs() / HOUR)
        }
    }
}

/// An instant as RFC 3339 or unix seconds.
fn parse_instant(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return DateTime::from_timestamp(secs, 0).map(|t| t.timestamp());
    }
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp())
}

fn parse_tz(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "00"));
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m == 0 && rest.len() <= 5).then_some(sign * h * HOUR)
}

fn align_down(t: i64, size: i64, offset: i64) -> i64 {
    (t + offset).div_euclid(size) * size - offset
}

fn align_up(t: i64, size: i64, offset: i64) -> i64 {
    let down = align_down(t, size, offset);
    if down == t {
        t
    } else {
        down + size
    }
}

/// Checks a query against the range rules; `timeseries` says whether `interval` applies.
pub fn parse_range(
    q: &AnalyticsQuery,
    timeseries: bool,
    now: DateTime<Utc>,
) -> Result<(Range, Option<Interval>), ApiError> {
    let mut v = Violations::default();
    let mut instant = |name: &str, raw: &Option<String>| match raw {
        None => None,
        Some(s) => {
            let t = parse_instant(s);
            if t.is_none() {
                v.add(name, "must be an RFC 3339 timestamp or unix seconds");
            }
            t
        }
    };
    let to_raw = instant("to_ts", &q.to_ts);
    let from_raw = instant("from_ts", &q.from_ts);
    let to = to_raw.unwrap_or_else(|| now.timestamp());
    let from = from_raw.unwrap_or(to - DEFAULT_RANGE);
    let offset = match q.tz.as_deref() {
        None => 0,
        Some(s) => parse_tz(s).unwrap_or_else(|| {
            v.add("tz", "must be UTC or a whole-hour offset such as +05:00");
            0
        }),
    };
    let interval = match (timeseries, q.interval.as_deref()) {
        (false, None) => None,
        (false, Some(_)) => {
            v.add("interval", "applies to /v1/analytics/timeseries only");
            None
        }
        (true, None | Some("day")) => Some(Interval::Day),
        (true, Some("hour")) => Some(Interval::Hour),
        (true, Some(_)) => {
            v.add("interval", "must be hour or day");
            None
        }
    };
    if from >= to {
        v.add("from_ts", "must be before to_ts");
    } else if to - from > MAX_RANGE {
        v.add("to_ts", "the range may span at most 366 days");
    }
    let size = interval.map_or(HOUR, Interval::seconds);
    let range = Range {
        from: align_down(from, size, offset),
        to: align_up(to, size, offset),
        size,
        offset,
    };
    if timeseries && from < to && (range.to - range.from) / size > MAX_BUCKETS {
        v.add(
            "interval",
            "the range holds more than 1000 buckets; shorten it or use interval=day",
        );
    }
    let errors = v.into_errors();
    if errors.is_empty() {
        Ok((range, interval))
    } else {
        Err(ApiError::InvalidQuery(errors))
    }
}

/// Counts per decision, under the decisions' wire names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct DecisionBreakdown {
    #[serde(rename = "MATCH")]
    pub matched: i64,
    #[serde(rename = "REVIEW")]
    pub review: i64,
    #[serde(rename = "NEW")]
    pub new: i64,
    #[serde(rename = "REJECT")]
    pub reject: i64,
}

impl DecisionBreakdown {
    fn of(t: &Totals) -> DecisionBreakdown {
        DecisionBreakdown {
            matched: t.match_count,
            review: t.review_count,
            new: t.new_count,
            reject: t.reject_count,
        }
    }
}

/// The aggregate of a set of evaluations, as summary and timeseries buckets report it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Aggregate {
    pub total: i64,
    pub decision_breakdown: DecisionBreakdown,
    /// `null` when there are no evaluations (so with every average and rate).
    pub avg_drift: Option<f64>,
    /// Upper edge of the 0.01 bin holding the nearest-rank 95th percentile.
    pub p95_drift: Option<f64>,
    pub avg_reliability: Option<f64>,
    pub p95_reliability: Option<f64>,
    /// MATCH ÷ total: documents that needed nobody.
    pub automation_rate: Option<f64>,
    /// REVIEW ÷ total.
    pub review_rate: Option<f64>,
    /// NEW ÷ total.
    pub new_rate: Option<f64>,
    /// REJECT ÷ total.
    pub reject_rate: Option<f64>,
    /// REVIEW + NEW: documents a person has to look at (or register).
    pub review_load: i64,
}

fn ratio(a: i64, b: i64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

fn mean(sum: f64, n: i64) -> Option<f64> {
    (n > 0).then(|| sum / n as f64)
}

/// The nearest-rank 95th percentile of a histogram (bin → count), as its bin's upper edge.
fn p95(bins: &BTreeMap<i16, i64>) -> Option<f64> {
    let n: i64 = bins.values().sum();
    if n <= 0 {
        return None;
    }
    let rank = (0.95 * n as f64).ceil() as i64;
    let mut seen = 0;
    for (&bin, &count) in bins {
        seen += count;
        if seen >= rank {
            return Some(((f64::from(bin) + 1.0) / BINS_PER_UNIT).min(1.0));
        }
    }
    None
}

/// Histograms of one bucket: per metric, bin → count.
#[derive(Default)]
struct Histograms {
    drift: BTreeMap<i16, i64>,
    reliability: BTreeMap<i16, i64>,
}

fn aggregate(t: &Totals, h: Option<&Histograms>) -> Aggregate {
    let n = t.evaluations;
    Aggregate {
        total: n,
        decision_breakdown: DecisionBreakdown::of(t),
        avg_drift: mean(t.sum_drift, n),
        p95_drift: h.and_then(|h| p95(&h.drift)),
        avg_reliability: mean(t.sum_reliability, n),
        p95_reliability: h.and_then(|h| p95(&h.reliability)),
        automation_rate: ratio(t.match_count, n),
        review_rate: ratio(t.review_count, n),
        new_rate: ratio(t.new_count, n),
        reject_rate: ratio(t.reject_count, n),
        review_load: t.review_count + t.new_count,
    }
}

async fn histograms(
    store: &dyn Store,
    tenant_id: Uuid,
    range: BucketRange,
) -> Result<BTreeMap<i64, Histograms>, ApiError> {
    let mut out: BTreeMap<i64, Histograms> = BTreeMap::new();
    for (bucket, metric, bin, n) in store.histogram_bins(tenant_id, range).await? {
        let h = out.entry(bucket).or_default();
        let bins = match metric {
            DRIFT_METRIC => &mut h.drift,
            RELIABILITY_METRIC => &mut h.reliability,
            _ => continue,
        };
        *bins.entry(bin).or_default() += n;
    }
    Ok(out)
}

/// `GET /v1/analytics/summary`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Summary {
    /// The range covered (whole hours, UTC).
    pub from_ts: DateTime<Utc>,
    pub to_ts: DateTime<Utc>,
    pub timezone: String,
    #[serde(flatten)]
    pub aggregate: Aggregate,
    /// The review queue: its state now (counts and ages, the SLA view) and the items
    /// resolved in the range.
    pub review_queue: QueueSummary,
}

pub async fn summary(
    store: &dyn Store,
    tenant_id: Uuid,
    q: &AnalyticsQuery,
    now: DateTime<Utc>,
) -> Result<Summary, ApiError> {
    let (range, _) = parse_range(q, false, now)?;
    let whole = range.whole();
    let (from_ts, to_ts) = (range.time(range.from), range.time(range.to));
    // Three independent reads, each on its own connection: the answer takes the longest
    // of them, not their sum (at 10 M evaluations the queue's state and the histograms
    // take 20–40 ms each).
    let (buckets, hist, review_queue) = tokio::try_join!(
        async { Ok::<_, ApiError>(store.totals_by_bucket(tenant_id, whole).await?) },
        histograms(store, tenant_id, whole),
        review::queue_summary(store, tenant_id, from_ts, to_ts, now),
    )?;
    let mut totals = Totals::default();
    for b in buckets {
        totals.add(&b.totals);
    }
    Ok(Summary {
        review_queue,
        from_ts,
        to_ts,
        timezone: range.timezone(),
        aggregate: aggregate(&totals, hist.values().next()),
    })
}

/// One bucket of `GET /v1/analytics/timeseries`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimeseriesBucket {
    /// The bucket's start (UTC); it spans one `interval`.
    pub bucket_start: DateTime<Utc>,
    #[serde(flatten)]
    pub aggregate: Aggregate,
}

/// `GET /v1/analytics/timeseries`: every bucket of the range, empty ones included.
#[derive(Debug, Serialize, ToSchema)]
pub struct Timeseries {
    pub from_ts: DateTime<Utc>,
    pub to_ts: DateTime<Utc>,
    pub interval: Interval,
    pub timezone: String,
    pub buckets: Vec<TimeseriesBucket>,
}

pub async fn timeseries(
    store: &dyn Store,
    tenant_id: Uuid,
    q: &AnalyticsQuery,
    now: DateTime<Utc>,
) -> Result<Timeseries, ApiError> {
    let (range, interval) = parse_range(q, true, now)?;
    let (buckets, hist) = tokio::try_join!(
        async { Ok::<_, ApiError>(store.totals_by_bucket(tenant_id, range.buckets()).await?) },
        histograms(store, tenant_id, range.buckets()),
    )?;
    let totals: BTreeMap<i64, Totals> = buckets.into_iter().map(|b| (b.bucket, b.totals)).collect();
    let empty = Totals::default();
    let buckets = (range.from..range.to)
        .step_by(range.size as usize)
        .map(|start| TimeseriesBucket {
            bucket_start: range.time(start),
            aggregate: aggregate(totals.get(&start).unwrap_or(&empty), hist.get(&start)),
        })
        .collect();
    Ok(Timeseries {
        from_ts: range.time(range.from),
        to_ts: range.time(range.to),
        interval: interval.unwrap_or(Interval::Day),
        timezone: range.timezone(),
        buckets,
    })
}

/// One extractor identity in `GET /v1/analytics/extractors`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExtractorStats {
    pub vendor: String,
    pub model: String,
    pub version: String,
    pub count: i64,
    pub decision_breakdown: DecisionBreakdown,
    pub automation_rate: Option<f64>,
    pub avg_drift: Option<f64>,
    pub avg_reliability: Option<f64>,
    /// The mean of the evaluations' `match_confidence`, NEW and REJECT included (theirs is
    /// the closest template's confidence, 0 when the tenant has none): how well this
    /// extractor's output matches the templates at all.
    pub avg_match_confidence: Option<f64>,
    /// The extractor's own confidence, as it reported it.
    pub avg_extractor_confidence: Option<f64>,
    pub avg_latency_ms: Option<f64>,
    /// Over the evaluations that reported a cost; `null` when none did.
    pub avg_cost_usd: Option<f64>,
    /// The first and last hour (UTC) it was seen in, within the range.
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// `GET /v1/analytics/extractors`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExtractorsReport {
    pub from_ts: DateTime<Utc>,
    pub to_ts: DateTime<Utc>,
    /// By vendor, model and version.
    pub extractors: Vec<ExtractorStats>,
}

pub async fn extractors(
    store: &dyn Store,
    tenant_id: Uuid,
    q: &AnalyticsQuery,
    now: DateTime<Utc>,
) -> Result<ExtractorsReport, ApiError> {
    let (range, _) = parse_range(q, false, now)?;
    let rows = store
        .totals_by_extractor(tenant_id, range.buckets())
        .await?;
    let extractors = rows
        .into_iter()
        .map(|r| {
            let t = &r.totals;
            let n = t.evaluations;
            ExtractorStats {
                vendor: r.extractor_vendor,
                model: r.extractor_model,
                version: r.extractor_version,
                count: n,
                decision_breakdown: DecisionBreakdown::of(t),
                automation_rate: ratio(t.match_count, n),
                avg_drift: mean(t.sum_drift, n),
                avg_reliability: mean(t.sum_reliability, n),
                avg_match_confidence: mean(t.sum_match_confidence, n),
                avg_extractor_confidence: mean(t.sum_extractor_confidence, n),
                avg_latency_ms: mean(t.sum_latency_ms, n),
                avg_cost_usd: mean(t.sum_cost_usd, t.cost_count),
                first_seen: range.time(r.first_bucket),
                last_seen: range.time(r.last_bucket),
            }
        })
        .collect();
    Ok(ExtractorsReport {
        from_ts: range.time(range.from),
        to_ts: range.time(range.to),
        extractors,
    })
}

/// One template version in `GET /v1/analytics/templates`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateStats {
    pub template_id: String,
    pub template_version: i64,
    pub template_version_id: Option<Uuid>,
    /// Evaluations attributed to this version (MATCH and REVIEW).
    pub volume: i64,
    pub decision_breakdown: DecisionBreakdown,
    pub automation_rate: Option<f64>,
    pub avg_drift: Option<f64>,
    pub avg_reliability: Option<f64>,
    /// The mean `match_confidence` of the evaluations attributed to this version.
    pub avg_match_confidence: Option<f64>,
    /// Change points its drift detector confirmed within the range.
    pub change_points: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// `GET /v1/analytics/templates`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplatesReport {
    pub from_ts: DateTime<Utc>,
    pub to_ts: DateTime<Utc>,
    /// By template id and version.
    pub templates: Vec<TemplateStats>,
}

pub async fn templates(
    store: &dyn Store,
    tenant_id: Uuid,
    q: &AnalyticsQuery,
    now: DateTime<Utc>,
) -> Result<TemplatesReport, ApiError> {
    let (range, _) = parse_range(q, false, now)?;
    let rows = store.totals_by_template(tenant_id, range.buckets()).await?;
    let change_points: BTreeMap<Uuid, i64> = store
        .change_point_counts(tenant_id, range.time(range.from), range.time(range.to))
        .await?
        .into_iter()
        .collect();
    let templates = rows
        .into_iter()
        .map(|r| {
            let t = &r.totals;
            let n = t.evaluations;
            TemplateStats {
                change_points: r
                    .template_version_id
                    .and_then(|tv| change_points.get(&tv).copied())
                    .unwrap_or(0),
                template_id: r.template_id,
                template_version: r.template_version,
                template_version_id: r.template_version_id,
                volume: n,
                decision_breakdown: DecisionBreakdown::of(t),
                automation_rate: ratio(t.match_count, n),
                avg_drift: mean(t.sum_drift, n),
                avg_reliability: mean(t.sum_reliability, n),
                avg_match_confidence: mean(t.sum_match_confidence, n),
                first_seen: range.time(r.first_bucket),
                last_seen: range.time(r.last_bucket),
            }
        })
        .collect();
    Ok(TemplatesReport {
        from_ts: range.time(range.from),
        to_ts: range.time(range.to),
        templates,
    })
}

/// Automated decisions (MATCH) that received feedback.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub struct AutomatedPrecision {
    pub with_feedback: i64,
    pub correct: i64,
    /// correct ÷ with_feedback.
    pub precision: Option<f64>,
    /// Wilson score interval at 95 %.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

/// One reliability band (0.1 wide) of evaluations with feedback.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub struct ReliabilityBand {
    pub band_start: f64,
    pub band_end: f64,
    pub count: i64,
    pub mean_reliability: Option<f64>,
    /// Share whose outcome was `correct`.
    pub accuracy: Option<f64>,
}

/// `GET /v1/analytics/calibration`: does reliability mean what it says, and does review
/// catch the errors? Over evaluations created in the range that have feedback.
#[derive(Debug, Serialize, ToSchema)]
pub struct Calibration {
    pub from_ts: DateTime<Utc>,
    pub to_ts: DateTime<Utc>,
    pub evaluations: i64,
    pub with_feedback: i64,
    /// with_feedback ÷ evaluations.
    pub feedback_coverage: Option<f64>,
    pub automated: AutomatedPrecision,
    /// Outcomes `corrected` or `rejected`.
    pub errors: i64,
    /// Errors among decisions that went to a person (REVIEW, NEW, REJECT) ÷ all errors.
    pub review_catch_rate: Option<f64>,
    /// Errors among MATCHes: what automation let through.
    pub missed_errors: i64,
    /// Mean of (reliability − [correct])² over evaluations with feedback.
    pub brier_score: Option<f64>,
    /// Expected calibration error over the ten bands.
    pub ece: Option<f64>,
    pub bands: Vec<ReliabilityBand>,
}

/// The Wilson score interval of `k` successes in `n` at 95 %.
fn wilson(k: i64, n: i64) -> Option<(f64, f64)> {
    if n <= 0 {
        return None;
    }
    let z = 1.959_963_984_540_054_f64;
    let (n, p) = (n as f64, k as f64 / n as f64);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

pub async fn calibration(
    store: &dyn Store,
    tenant_id: Uuid,
    q: &AnalyticsQuery,
    now: DateTime<Utc>,
) -> Result<Calibration, ApiError> {
    let (range, _) = parse_range(q, false, now)?;
    let whole = range.whole();
    let evaluations: i64 = store
        .totals_by_bucket(tenant_id, whole)
        .await?
        .iter()
        .map(|b| b.totals.evaluations)
        .sum();
    let rows = store.feedback_bands(tenant_id, range.buckets()).await?;
    let mut all = FeedbackTotals::default();
    let mut matched = FeedbackTotals::default();
    let mut bands: Vec<FeedbackTotals> = vec![FeedbackTotals::default(); BANDS as usize];
    for r in &rows {
        for acc in [
            Some(&mut all),
            (r.decision == Decision::Match.as_str()).then_some(&mut matched),
            bands.get_mut(r.reliability_bin.clamp(0, BANDS - 1) as usize),
        ]
        .into_iter()
        .flatten()
        {
            acc.add(&r.totals);
        }
    }
    let errors = all.corrected + all.rejected;
    let missed = matched.corrected + matched.rejected;
    let n = all.n;
    let brier = (n > 0).then(|| {
        (all.sum_reliability_sq - 2.0 * all.sum_reliability_correct + all.correct as f64) / n as f64
    });
    let ece = (n > 0).then(|| {
        bands
            .iter()
            .map(|b| (b.correct as f64 - b.sum_reliability).abs())
            .sum::<f64>()
            / n as f64
    });
    let ci = wilson(matched.correct, matched.n);
    Ok(Calibration {
        from_ts: range.time(range.from),
        to_ts: range.time(range.to),
        evaluations,
        with_feedback: n,
        feedback_coverage: ratio(n, evaluations),
        automated: AutomatedPrecision {
            with_feedback: matched.n,
            correct: matched.correct,
            precision: ratio(matched.correct, matched.n),
            ci_low: ci.map(|c| c.0),
            ci_high: ci.map(|c| c.1),
        },
        errors,
        review_catch_rate: ratio(errors - missed, errors),
        missed_errors: missed,
        brier_score: brier,
        ece,
        bands: bands
            .iter()
            .enumerate()
            .map(|(i, b)| ReliabilityBand {
                band_start: i as f64 / f64::from(BANDS),
                band_end: (i + 1) as f64 / f64::from(BANDS),
                count: b.n,
                mean_reliability: mean(b.sum_reliability, b.n),
                accuracy: ratio(b.correct, b.n),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    fn query(from: &str, to: &str) -> AnalyticsQuery {
        AnalyticsQuery {
            from_ts: Some(from.into()),
            to_ts: Some(to.into()),
            ..Default::default()
        }
    }

    fn fields(e: ApiError) -> Vec<String> {
        match e {
            ApiError::InvalidQuery(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected InvalidQuery, got {other:?}"),
        }
    }

    #[test]
    fn the_default_range_is_the_last_thirty_days_in_whole_hours() {
        let now = at(2026, 12, 2, 10, 34);
        let (r, interval) = parse_range(&AnalyticsQuery::default(), false, now).unwrap();
        assert_eq!(interval, None);
        assert_eq!(r.to, at(2026, 12, 2, 11, 0).timestamp());
        assert_eq!(r.from, at(2026, 11, 2, 10, 0).timestamp());
    }

    #[test]
    fn ranges_are_checked_as_the_original_did() {
        let now = at(2026, 12, 2, 0, 0);
        let backwards = query("2026-12-02T00:00:00Z", "2026-12-01T00:00:00Z");
        assert_eq!(
            fields(parse_range(&backwards, false, now).unwrap_err()),
            ["from_ts"]
        );
        let empty = query("2026-12-01T00:00:00Z", "2026-12-01T00:00:00Z");
        assert_eq!(
            fields(parse_range(&empty, false, now).unwrap_err()),
            ["from_ts"]
        );
        let long = query("2025-01-01T00:00:00Z", "2026-12-01T00:00:00Z");
        assert_eq!(
            fields(parse_range(&long, false, now).unwrap_err()),
            ["to_ts"]
        );
        // 366 days is allowed; hourly that is 8 784 buckets, over the limit.
        let year = query("2025-12-01T00:00:00Z", "2026-12-02T00:00:00Z");
        assert!(parse_range(&year, false, now).is_ok());
        let mut hourly = year;
        hourly.interval = Some("hour".into());
        assert_eq!(
            fields(parse_range(&hourly, true, now).unwrap_err()),
            ["interval"]
        );
        let garbage = AnalyticsQuery {
            from_ts: Some("yesterday".into()),
            interval: Some("week".into()),
            tz: Some("+05:30".into()),
            ..Default::default()
        };
        assert_eq!(
            fields(parse_range(&garbage, true, now).unwrap_err()),
            ["from_ts", "tz", "interval"]
        );
        let interval_on_summary = AnalyticsQuery {
            interval: Some("day".into()),
            ..Default::default()
        };
        assert_eq!(
            fields(parse_range(&interval_on_summary, false, now).unwrap_err()),
            ["interval"]
        );
    }

    #[test]
    fn days_start_at_midnight_of_the_time_zone_asked_for() {
        let now = at(2026, 12, 2, 0, 0);
        let q = AnalyticsQuery {
            from_ts: Some("2026-11-30T12:00:00Z".into()),
            to_ts: Some("2026-12-01T12:00:00Z".into()),
            interval: Some("day".into()),
            tz: Some("+05:00".into()),
        };
        let (r, interval) = parse_range(&q, true, now).unwrap();
        assert_eq!(interval, Some(Interval::Day));
        // Midnight at +05:00 is 19:00 UTC the day before.
        assert_eq!(r.from, at(2026, 11, 29, 19, 0).timestamp());
        assert_eq!(r.to, at(2026, 12, 1, 19, 0).timestamp());
        assert_eq!(r.timezone(), "+05:00");
        // Unix seconds are accepted too: 2025-12-02T00:00:00Z.
        assert_eq!(parse_instant("1764633600"), Some(1_764_633_600));
    }

    #[test]
    fn p95_is_the_upper_edge_of_the_nearest_rank_bin() {
        // One value in each bin 0..=99: nearest rank 95 of 100 is in bin 94, edge 0.95.
        let bins: BTreeMap<i16, i64> = (0..100).map(|i| (i, 1)).collect();
        assert_eq!(p95(&bins), Some(0.95));
        assert_eq!(p95(&BTreeMap::from([(100, 3)])), Some(1.0));
        assert_eq!(p95(&BTreeMap::new()), None);
        assert_eq!(score_bin(1.0), 100);
        assert_eq!(score_bin(0.945), 94);
        // As IEEE arithmetic has it, in Rust and in both databases' SQL alike.
        assert_eq!(score_bin(0.29), 28);
        assert_eq!(score_bin(f64::NAN), 0);
        assert_eq!(reliability_band(1.0), 9);
        assert_eq!(reliability_band(0.85), 8);
    }

    #[test]
    fn a_changed_verdict_moves_counts_and_a_repeated_one_nothing() {
        let e = DecidedEvaluation {
            id: Uuid::nil(),
            tenant_id: Uuid::nil(),
            created_at: at(2026, 12, 1, 10, 30),
            decision: "MATCH".into(),
            match_confidence: 0.9,
            template_id: Some("t".into()),
            template_version_id: None,
            template_version: Some(1),
            similarity: 0.9,
            drift_score: 0.1,
            reliability_score: 0.8,
            extractor_confidence: 0.9,
            extractor_vendor: "v".into(),
            extractor_model: "m".into(),
            correlation_id: None,
            pipeline_id: None,
            client_doc_hash: None,
            layout_fingerprint: String::new(),
            replay_hash: String::new(),
            engine_version: String::new(),
            request: sqlx::types::Json(serde_json::json!({})),
        };
        let first = feedback_delta(&e, None, FeedbackOutcome::Correct).unwrap();
        assert_eq!(first.bucket_start, at(2026, 12, 1, 10, 0).timestamp());
        assert_eq!(first.reliability_bin, 8);
        assert_eq!((first.delta.n, first.delta.correct), (1, 1));
        assert_eq!(first.delta.sum_reliability_correct, 0.8);
        let changed = feedback_delta(
            &e,
            Some(FeedbackOutcome::Correct),
            FeedbackOutcome::Rejected,
        )
        .unwrap();
        assert_eq!(
            (
                changed.delta.n,
                changed.delta.correct,
                changed.delta.rejected
            ),
            (0, -1, 1)
        );
        assert_eq!(changed.delta.sum_reliability, 0.0);
        assert_eq!(changed.delta.sum_reliability_correct, -0.8);
        assert!(
            feedback_delta(&e, Some(FeedbackOutcome::Correct), FeedbackOutcome::Correct).is_none()
        );
    }

    #[test]
    fn the_wilson_interval_brackets_the_proportion() {
        let (lo, hi) = wilson(95, 100).unwrap();
        assert!(
            (lo - 0.8882).abs() < 1e-3 && (hi - 0.9785).abs() < 1e-3,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 10).unwrap();
        assert_eq!(lo, 0.0);
        assert!(hi > 0.0 && hi < 0.35);
        assert_eq!(wilson(0, 0), None);
    }
}
