//! A template version's drift over time: its similarity, drift, reliability and extractor
//! confidence per hour or day, with the change points its detector confirmed.
//!
//! Every number comes from stored evaluations; the bucketing is a pure function of the
//! series, so it is tested without a server.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::templates::{resolve, TemplateRef};
use crate::error::{ApiError, Violations};
use crate::state::AppState;
use crate::storage::evaluations::{ChangePointRow, SeriesPoint};

/// Evaluations read per drift request; the answer says when the range held more.
const DRIFT_SERIES_LIMIT: i64 = 100_000;

/// The width of a drift bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn parse(s: &str) -> Option<Bucket> {
        match s {
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            _ => None,
        }
    }

    fn seconds(self) -> i64 {
        match self {
            Bucket::Hour => 3_600,
            Bucket::Day => 86_400,
        }
    }

    /// Start of the bucket holding `at` (UTC boundaries).
    fn start(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let ts = at.timestamp();
        DateTime::from_timestamp(ts - ts.rem_euclid(self.seconds()), 0).unwrap_or(at)
    }
}

#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct DriftBucket {
    pub start: DateTime<Utc>,
    pub count: usize,
    pub mean_similarity: f64,
    pub mean_drift: f64,
    pub mean_reliability: f64,
    pub mean_extractor_confidence: f64,
}

#[derive(Serialize, ToSchema)]
pub struct ChangePointView {
    /// The evaluation (1-based, per version) where the change began.
    pub observation: i64,
    /// The evaluation at which the detector confirmed it.
    pub detected_at_observation: i64,
    /// `similarity`, `drift` or `extractor_confidence`.
    pub series: String,
    pub baseline_mean: f64,
    pub recent_mean: f64,
    pub evaluation_id: Uuid,
    pub occurred_at: DateTime<Utc>,
}

impl From<ChangePointRow> for ChangePointView {
    fn from(c: ChangePointRow) -> Self {
        ChangePointView {
            observation: c.observation,
            detected_at_observation: c.detected_at,
            series: c.series,
            baseline_mean: c.baseline_mean,
            recent_mean: c.recent_mean,
            evaluation_id: c.evaluation_id,
            occurred_at: c.occurred_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DetectorView {
    pub observations: u64,
    pub changes: u64,
}

#[derive(Serialize, ToSchema)]
pub struct DriftReport {
    pub template_id: String,
    pub template_version_id: Uuid,
    pub version: i64,
    pub evaluation_count: i64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// `hour` or `day`.
    pub bucket: Bucket,
    /// Buckets holding at least one evaluation, oldest first.
    pub buckets: Vec<DriftBucket>,
    /// True when the range held more than 100 000 evaluations and only the oldest were read.
    pub truncated: bool,
    /// Change points that occurred within the range.
    pub change_points: Vec<ChangePointView>,
    pub detector: DetectorView,
}

/// What a client asks of a drift report, as sent.
pub struct DriftRequest {
    pub version: Option<i64>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub bucket: Option<String>,
}

/// Means per bucket, oldest first; empty buckets are left out.
pub fn bucketize(points: &[SeriesPoint], bucket: Bucket) -> Vec<DriftBucket> {
    // (count, sums of similarity, drift, reliability, extractor confidence) per bucket.
    let mut sums: BTreeMap<DateTime<Utc>, (usize, [f64; 4])> = BTreeMap::new();
    for p in points {
        let entry = sums
            .entry(bucket.start(p.created_at))
            .or_insert((0, [0.0; 4]));
        entry.0 += 1;
        for (acc, x) in entry.1.iter_mut().zip([
            p.similarity,
            p.drift_score,
            p.reliability_score,
            p.extractor_confidence,
        ]) {
            *acc += x;
        }
    }
    sums.into_iter()
        .map(|(start, (count, s))| {
            let n = count as f64;
            DriftBucket {
                start,
                count,
                mean_similarity: s[0] / n,
                mean_drift: s[1] / n,
                mean_reliability: s[2] / n,
                mean_extractor_confidence: s[3] / n,
            }
        })
        .collect()
}

/// The drift report of one version over `[from, to)` (default: the 30 days before now).
pub async fn report(
    state: &AppState,
    tenant_id: Uuid,
    target: &TemplateRef,
    req: DriftRequest,
) -> Result<DriftReport, ApiError> {
    let mut v = Violations::default();
    let bucket = match req.bucket.as_deref() {
        None => Bucket::Day,
        Some(s) => Bucket::parse(s).unwrap_or_else(|| {
            v.add("bucket", "must be hour or day");
            Bucket::Day
        }),
    };
    let to = req.to.unwrap_or_else(Utc::now);
    let from = req.from.unwrap_or(to - Duration::days(30));
    v.check(from < to, "from", "must be before to");
    v.into_result()?;
    let row = resolve(state, tenant_id, target, req.version).await?;
    let points = state
        .store()
        .series(tenant_id, row.id, from, to, DRIFT_SERIES_LIMIT)
        .await?;
    let change_points = state
        .store()
        .change_points(tenant_id, row.id)
        .await?
        .into_iter()
        .filter(|c| c.occurred_at >= from && c.occurred_at < to)
        .map(ChangePointView::from)
        .collect();
    let detector = &row.detector_state.0;
    Ok(DriftReport {
        template_id: row.template_id.clone(),
        template_version_id: row.id,
        version: row.version,
        evaluation_count: row.evaluation_count,
        from,
        to,
        bucket,
        truncated: points.len() as i64 == DRIFT_SERIES_LIMIT,
        buckets: bucketize(&points, bucket),
        change_points,
        detector: DetectorView {
            observations: detector.observations,
            changes: detector.changes,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn point(s: &str, similarity: f64) -> SeriesPoint {
        SeriesPoint {
            created_at: at(s),
            similarity,
            drift_score: 1.0 - similarity,
            reliability_score: 0.9,
            extractor_confidence: 0.8,
        }
    }

    #[test]
    fn buckets_start_on_utc_hour_and_day_boundaries() {
        let t = at("2024-05-06T13:47:12Z");
        assert_eq!(
            Bucket::Hour.start(t).to_rfc3339(),
            "2024-05-06T13:00:00+00:00"
        );
        assert_eq!(
            Bucket::Day.start(t).to_rfc3339(),
            "2024-05-06T00:00:00+00:00"
        );
    }

    #[test]
    fn means_are_per_bucket_and_empty_buckets_are_left_out() {
        let points = [
            point("2024-05-06T13:10:00Z", 0.9),
            point("2024-05-06T13:50:00Z", 0.7),
            point("2024-05-06T16:00:00Z", 0.5),
        ];
        let hours = bucketize(&points, Bucket::Hour);
        assert_eq!(hours.len(), 2);
        assert_eq!(hours[0].count, 2);
        assert!((hours[0].mean_similarity - 0.8).abs() < 1e-12);
        assert!((hours[0].mean_drift - 0.2).abs() < 1e-12);
        assert_eq!(hours[1].start, at("2024-05-06T16:00:00Z"));
        let days = bucketize(&points, Bucket::Day);
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].count, 3);
        assert!((days[0].mean_similarity - 0.7).abs() < 1e-12);
    }
}
