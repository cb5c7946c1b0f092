//! Reliability: the predicted probability that this document's extraction is correct.
//!
//! Formula (documented in docs/engine.md):
//! 1. History: a Beta posterior over "extraction correct" for this template and extractor,
//!    with the template's baseline reliability `r0` as prior mean and a prior strength of
//!    [`PRIOR_STRENGTH`] pseudo-documents: `p_hist = (n0·r0 + correct) / (n0 + total)`,
//!    where `corrected` and `rejected` feedback both count as "not correct".
//! 2. Evidence of this document, added in logit space so the result stays in (0,1):
//!    `logit(r) = logit(p_hist) + W_CONF·(c − C_REF) − W_LOW·low_share − W_DRIFT·drift`,
//!    with `c` the mean of the extractor confidence and the mean box confidence.
//!
//! The result is monotone: up with baseline, correct feedback and confidences; down with
//! corrected/rejected feedback, low-confidence share and drift (property-tested).

use crate::template::OutcomeStats;

/// Weight of the template's baseline reliability, in pseudo-documents.
pub const PRIOR_STRENGTH: f64 = 10.0;
/// Confidence level considered neutral (no adjustment).
pub const C_REF: f64 = 0.9;
pub const W_CONF: f64 = 4.0;
pub const W_LOW: f64 = 2.0;
pub const W_DRIFT: f64 = 3.0;

/// Inputs of [`reliability_score`]; all probabilities/shares in 0..1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReliabilityInputs {
    pub baseline_reliability: f64,
    pub outcomes: OutcomeStats,
    pub extractor_confidence: f64,
    pub mean_box_confidence: f64,
    pub low_confidence_share: f64,
    pub drift: f64,
}

fn unit(v: f64) -> f64 {
    if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The Beta-posterior mean of the history part alone.
pub fn history_reliability(baseline: f64, o: OutcomeStats) -> f64 {
    let r0 = unit(baseline);
    let total = o.total() as f64;
    (PRIOR_STRENGTH * r0 + o.correct as f64) / (PRIOR_STRENGTH + total)
}

/// Predicted probability (0..1) that the extraction is correct.
pub fn reliability_score(i: &ReliabilityInputs) -> f64 {
    let p = history_reliability(i.baseline_reliability, i.outcomes).clamp(1e-4, 1.0 - 1e-4);
    let c = 0.5 * unit(i.extractor_confidence) + 0.5 * unit(i.mean_box_confidence);
    let z = (p / (1.0 - p)).ln() + W_CONF * (c - C_REF)
        - W_LOW * unit(i.low_confidence_share)
        - W_DRIFT * unit(i.drift);
    let r = 1.0 / (1.0 + (-z).exp());
    r.clamp(0.0, 1.0)
}
