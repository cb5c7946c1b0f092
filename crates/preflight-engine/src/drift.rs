//! Drift: per document against the matched template's baseline (with a per-component
//! breakdown), and per template over time with a streaming change detector.
//!
//! The detector is a standardized one-sided CUSUM per series (similarity, drift,
//! extractor confidence), oriented so "worse" is positive. CUSUM was chosen over
//! Page-Hinkley and ADWIN because its state is three numbers per series (small to persist),
//! its false-alarm rate and detection delay have closed-form approximations (Siegmund) that
//! let us pick parameters for the targets (≤ 1 false alarm per 10 000 stable documents,
//! sudden change found within 10), and it reports where the change started (the last time
//! the statistic was zero). The baseline mean/variance follow slow evolution through an
//! EWMA that is frozen while evidence of a change accumulates, so gradual legitimate
//! evolution is absorbed but a sudden shift is not.

use serde::{Deserialize, Serialize};

use crate::evaluate::{DriftComponent, Evaluation};
use crate::sketch::{SimDetail, GROUP_NAMES, NS, SCALAR_NAMES};
use crate::template::Template;

/// Share of the drift score carried by the layout grids (rest: scalar features).
const LAYOUT_SHARE: f64 = 0.7;

/// Per-document drift (0..1) against a template, and its components sorted by name.
pub(crate) fn document_drift(sim: &SimDetail, t: &Template) -> (f64, Vec<DriftComponent>) {
    let mut comps = Vec::new();
    for (g, s) in sim.groups.iter().enumerate() {
        if let Some(s) = s {
            comps.push(DriftComponent {
                component: format!("layout.{}", GROUP_NAMES[g]),
                score: round6((1.0 - s).clamp(0.0, 1.0)),
            });
        }
    }
    let mut scalar_sum = 0.0;
    for (i, name) in SCALAR_NAMES.iter().enumerate() {
        // Deviations are measured in units of the exemplars' own spread (plus a floor), so
        // a feature that naturally varies on this template drifts less for the same move.
        let spread = t.scalar_sd[i] / (t.scalar_mean[i].abs() + 1.0);
        let d = ((1.0 - sim.scalar_parts[i]) / (1.0 + 4.0 * spread)).clamp(0.0, 1.0);
        scalar_sum += d;
        comps.push(DriftComponent {
            component: format!("scalar.{name}"),
            score: round6(d),
        });
    }
    let scalar = scalar_sum / NS as f64;
    let score = LAYOUT_SHARE * (1.0 - sim.grid) + (1.0 - LAYOUT_SHARE) * scalar;
    comps.sort_by(|a, b| a.component.cmp(&b.component));
    (round6(score.clamp(0.0, 1.0)), comps)
}

/// Rounds to 6 decimals so serialized scores are stable and short.
pub(crate) fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// One observation of a template's stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DriftObservation {
    /// Raw layout similarity to the template (0..1).
    pub similarity: f64,
    /// Per-document drift score (0..1).
    pub drift: f64,
    /// The extractor's overall confidence (0..1).
    pub extractor_confidence: f64,
}

impl DriftObservation {
    /// The observation for the template an evaluation matched (`None` when it matched
    /// nothing: NEW, or REJECT without a template).
    pub fn from_evaluation(e: &Evaluation) -> Option<DriftObservation> {
        e.template_version_id.as_ref()?;
        Some(DriftObservation {
            similarity: e.similarity,
            drift: e.drift_score,
            extractor_confidence: e.extractor_confidence,
        })
    }

    /// The observation for the evaluation's closest template (see
    /// [`crate::ClosestTemplate`]) when its confidence is at least `min_confidence`,
    /// whatever the decision: the template version id whose detector should see it, and the
    /// observation. This is how a NEW or REVIEW caused by a redesign or an extractor
    /// upgrade can still reach the template's change detector.
    pub fn from_closest(e: &Evaluation, min_confidence: f64) -> Option<(String, DriftObservation)> {
        let c = e.closest_template.as_ref()?;
        (c.match_confidence >= min_confidence).then(|| {
            (
                c.template_version_id.clone(),
                DriftObservation {
                    similarity: c.similarity,
                    drift: c.drift_score,
                    extractor_confidence: e.extractor_confidence,
                },
            )
        })
    }
}

/// Which series changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftSeries {
    Similarity,
    Drift,
    ExtractorConfidence,
}

impl DriftSeries {
    /// The series' wire name, as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftSeries::Similarity => "similarity",
            DriftSeries::Drift => "drift",
            DriftSeries::ExtractorConfidence => "extractor_confidence",
        }
    }
}

/// A detected change: it began around observation `observation` (1-based count of
/// observations fed to this detector) and was confirmed at `detected_at`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChangePoint {
    pub observation: u64,
    pub detected_at: u64,
    pub series: DriftSeries,
    /// Baseline mean of the series before the change.
    pub baseline_mean: f64,
    /// Mean of the series since the change began.
    pub recent_mean: f64,
}

/// Observations used to learn the baseline before detection starts (and after a change).
pub const WARMUP: u32 = 30;
/// CUSUM reference value k, in standard deviations.
pub const CUSUM_K: f64 = 0.5;
/// CUSUM decision threshold h, in standard deviations.
pub const CUSUM_H: f64 = 10.0;
/// Standardized CUSUM increments are winsorized to this many standard deviations, so one
/// document adds at most `Z_CLIP - CUSUM_K` = 2σ and an alarm needs ≥ 6 consecutive bad
/// documents. Real stable streams are heavy-tailed and multi-modal (short vs long
/// receipts), so runs of 3-4σ documents are common; at 4σ they caused most false alarms.
pub const Z_CLIP: f64 = 2.5;
/// The baseline adapts on deviations winsorized to this many standard deviations (wider
/// than `Z_CLIP`): winsorizing a heavy-tailed series at 2.5σ would understate its variance,
/// shrink σ and let the standardized values grow, which feeds false alarms.
pub const ADAPT_CLIP: f64 = 4.0;
/// Floor of the standard deviation: below this, differences are noise (e.g. an extractor
/// confidence that takes only a few discrete values).
pub const SIGMA_FLOOR: f64 = 0.04;
/// EWMA rate at which the baseline follows gradual evolution.
pub const ADAPT_RATE: f64 = 0.01;
/// The baseline adapts only while the CUSUM statistic is below this (in σ). It must not
/// be small: adapting only on observations that kept the statistic near 0 would select
/// the good ones and bias the baseline towards false alarms.
pub const ADAPT_BELOW: f64 = CUSUM_H / 2.0;

/// State of one series.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SeriesState {
    pub warm: u32,
    pub mean: f64,
    pub var: f64,
    pub cusum: f64,
    /// Observation number at which the current CUSUM excursion started.
    pub run_start: u64,
    /// Sum of raw values since `run_start` (for `recent_mean`).
    pub run_sum: f64,
}

impl SeriesState {
    fn observe(&mut self, x: f64, n: u64) -> Option<(u64, f64, f64)> {
        if self.warm < WARMUP {
            // Welford's online mean/variance.
            self.warm += 1;
            let d = x - self.mean;
            self.mean += d / f64::from(self.warm);
            self.var += (d * (x - self.mean) - self.var) / f64::from(self.warm);
            return None;
        }
        let sd = self.var.max(0.0).sqrt().max(SIGMA_FLOOR);
        let z = ((x - self.mean) / sd).clamp(-Z_CLIP, Z_CLIP);
        if self.cusum <= 0.0 {
            self.run_start = n;
            self.run_sum = 0.0;
        }
        self.cusum = (self.cusum + z - CUSUM_K).max(0.0);
        self.run_sum += x;
        if self.cusum > CUSUM_H {
            let len = (n - self.run_start + 1) as f64;
            return Some((self.run_start, self.mean, self.run_sum / len));
        }
        if self.cusum < ADAPT_BELOW {
            // Winsorized (more loosely than z), so one outlier cannot inflate the variance.
            let d = (x - self.mean).clamp(-ADAPT_CLIP * sd, ADAPT_CLIP * sd);
            self.mean += ADAPT_RATE * d;
            self.var += ADAPT_RATE * (d * d - self.var);
        }
        None
    }
}

/// Streaming change detector for one template; persist it between evaluations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DriftDetectorState {
    pub observations: u64,
    pub similarity: SeriesState,
    pub drift: SeriesState,
    pub extractor_confidence: SeriesState,
    /// Number of change points reported so far.
    pub changes: u64,
}

impl DriftDetectorState {
    pub fn new() -> DriftDetectorState {
        DriftDetectorState::default()
    }

    /// Feeds one observation; returns a change point when a sudden change is confirmed.
    /// After a change the baseline is relearned from the new regime. Non-finite values are
    /// ignored (they never come out of `evaluate`).
    pub fn observe(&mut self, obs: &DriftObservation) -> Option<ChangePoint> {
        let vals = [obs.similarity, obs.drift, obs.extractor_confidence];
        if vals.iter().any(|v| !v.is_finite()) {
            return None;
        }
        self.observations += 1;
        let n = self.observations;
        // Oriented so that larger = worse for all three series.
        let series = [
            (DriftSeries::Similarity, 1.0 - obs.similarity),
            (DriftSeries::Drift, obs.drift),
            (
                DriftSeries::ExtractorConfidence,
                1.0 - obs.extractor_confidence,
            ),
        ];
        let mut found: Option<ChangePoint> = None;
        for (kind, x) in series {
            let st = match kind {
                DriftSeries::Similarity => &mut self.similarity,
                DriftSeries::Drift => &mut self.drift,
                DriftSeries::ExtractorConfidence => &mut self.extractor_confidence,
            };
            if let Some((start, base, recent)) = st.observe(x, n) {
                if found.is_none() {
                    let back = |v: f64| match kind {
                        DriftSeries::Drift => v,
                        _ => 1.0 - v,
                    };
                    found = Some(ChangePoint {
                        observation: start,
                        detected_at: n,
                        series: kind,
                        baseline_mean: back(base),
                        recent_mean: back(recent),
                    });
                }
            }
        }
        if found.is_some() {
            self.changes += 1;
            self.similarity = SeriesState::default();
            self.drift = SeriesState::default();
            self.extractor_confidence = SeriesState::default();
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_names_are_the_names_serde_writes() {
        for s in [
            DriftSeries::Similarity,
            DriftSeries::Drift,
            DriftSeries::ExtractorConfidence,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
