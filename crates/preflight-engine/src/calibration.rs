//! Calibration: maps raw layout similarity (0..1) to `match_confidence` so the contract's
//! fixed thresholds keep their meaning: at or above 0.85 the matched template was right at
//! least 99.5% of the time on the quality benchmark's tune partition, below 0.50 the
//! document's template was usually not registered at all. The knots were fitted on that
//! partition (docs/quality.md, "Tuning"; how they hold on the validate partition is in its
//! results); the map is monotone and piecewise linear through (0,0), (S_NEW, 0.50),
//! (S_MATCH, 0.85), (1,1).

/// Similarity that maps to confidence 0.50 (NEW below).
pub const S_NEW: f64 = 0.66;
/// Similarity that maps to confidence 0.85 (MATCH at or above).
pub const S_MATCH: f64 = 0.675;

/// Calibrated confidence for a similarity. Non-finite input gives 0.
pub fn confidence(similarity: f64) -> f64 {
    confidence_with(similarity, S_NEW, S_MATCH)
}

/// The same map with explicit knots (used when refitting).
pub fn confidence_with(s: f64, s_new: f64, s_match: f64) -> f64 {
    if !s.is_finite() {
        return 0.0;
    }
    let s = s.clamp(0.0, 1.0);
    let c = if s < s_new {
        0.5 * s / s_new
    } else if s < s_match {
        0.5 + 0.35 * (s - s_new) / (s_match - s_new)
    } else {
        0.85 + 0.15 * (s - s_match) / (1.0 - s_match)
    };
    c.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knots_and_monotonicity() {
        assert_eq!(confidence(1.0), 1.0);
        assert_eq!(confidence(0.0), 0.0);
        assert!((confidence(S_NEW) - 0.5).abs() < 1e-12);
        assert!((confidence(S_MATCH) - 0.85).abs() < 1e-12);
        assert_eq!(confidence(f64::NAN), 0.0);
        let mut prev = -1.0;
        for i in 0..=1000 {
            let c = confidence(i as f64 / 1000.0);
            assert!(c >= prev);
            prev = c;
        }
    }
}
