//! Metric arithmetic over labeled outcomes. Kept free of I/O and of the engine's internals
//! so it can be unit-tested on tiny hand-made cases.

use serde::Serialize;

/// The engine's decision for one case, reduced to what the metrics need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Dec {
    Match,
    Review,
    New,
    Reject,
}

/// One evaluated case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The group the document comes from (its layout family, registered or not).
    pub group: String,
    /// The true template group; `None` for a layout that was never registered.
    pub truth: Option<String>,
    /// The top-ranked template's group (for NEW: the closest template), if any.
    pub best: Option<String>,
    pub decision: Dec,
    /// Drift of the document against its true template (0 when unknown).
    pub drift: f64,
    /// Calibrated confidence of the top-ranked template (for NEW: of the closest one;
    /// 0 with an empty index).
    pub confidence: f64,
}

impl Outcome {
    pub fn top1(&self) -> bool {
        self.truth.is_some() && self.best == self.truth
    }
}

/// `num / den`, kept as counts so reports show both (and an empty ratio is visible as such).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Ratio {
    pub num: u64,
    pub den: u64,
}

impl Ratio {
    pub fn new(num: u64, den: u64) -> Ratio {
        Ratio { num, den }
    }
    pub fn value(&self) -> Option<f64> {
        (self.den > 0).then(|| self.num as f64 / self.den as f64)
    }
    /// Percentage with one decimal and the counts, or "n/a".
    pub fn pct(&self) -> String {
        match self.value() {
            Some(v) => format!("{:.1} % ({}/{})", v * 100.0, self.num, self.den),
            None => "n/a (0 cases)".into(),
        }
    }
}

/// Identification and decision quality of a set of outcomes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Quality {
    pub cases: u64,
    /// Known documents whose top-ranked template is the true one.
    pub top1: Ratio,
    /// Known documents answered MATCH or REVIEW with the true template (issue #14's
    /// "identified": the answer names the right template; a NEW whose closest template
    /// happens to be right is not identified).
    pub identified: Ratio,
    /// MATCH decisions that went to the true template (novel MATCHes are always wrong).
    pub match_precision: Ratio,
    /// Known documents MATCHed to the true template.
    pub automation: Ratio,
    /// Novel documents answered NEW.
    pub new_recall: Ratio,
    /// NEW answers that were novel documents.
    pub new_precision: Ratio,
    /// Known documents not answered NEW (recognized as known).
    pub known_recall: Ratio,
    /// (known_recall + new_recall) / 2, when both sides have cases.
    pub balanced_accuracy: Option<f64>,
    /// Decision counts: MATCH, REVIEW, NEW, REJECT.
    pub mix: [u64; 4],
    pub mean_drift: Option<f64>,
}

pub fn quality(outcomes: &[Outcome]) -> Quality {
    let mut q = Quality {
        cases: outcomes.len() as u64,
        ..Quality::default()
    };
    let mut drift_sum = 0.0;
    let mut drift_n = 0u64;
    for o in outcomes {
        let known = o.truth.is_some();
        let right = o.top1();
        q.mix[match o.decision {
            Dec::Match => 0,
            Dec::Review => 1,
            Dec::New => 2,
            Dec::Reject => 3,
        }] += 1;
        if known {
            q.top1.den += 1;
            q.top1.num += u64::from(right);
            q.identified.den += 1;
            q.identified.num += u64::from(right && matches!(o.decision, Dec::Match | Dec::Review));
            q.automation.den += 1;
            q.automation.num += u64::from(right && o.decision == Dec::Match);
            q.known_recall.den += 1;
            q.known_recall.num += u64::from(o.decision != Dec::New);
            drift_sum += o.drift;
            drift_n += 1;
        } else {
            q.new_recall.den += 1;
            q.new_recall.num += u64::from(o.decision == Dec::New);
        }
        if o.decision == Dec::Match {
            q.match_precision.den += 1;
            q.match_precision.num += u64::from(right);
        }
        if o.decision == Dec::New {
            q.new_precision.den += 1;
            q.new_precision.num += u64::from(!known);
        }
    }
    q.balanced_accuracy = match (q.known_recall.value(), q.new_recall.value()) {
        (Some(a), Some(b)) => Some((a + b) / 2.0),
        _ => None,
    };
    q.mean_drift = (drift_n > 0).then(|| drift_sum / drift_n as f64);
    q
}

/// MATCH precision and automation had MATCH required `confidence ≥ threshold` instead of
/// the contract's 0.85. Raising the threshold only turns MATCHes into REVIEWs (every other
/// reason to downgrade is independent of it), so this is exactly what the engine would
/// decide with that threshold.
pub fn at_match_threshold(outcomes: &[Outcome], threshold: f64) -> (Ratio, Ratio) {
    let (mut precision, mut automation) = (Ratio::default(), Ratio::default());
    for o in outcomes {
        let matched = o.decision == Dec::Match && o.confidence >= threshold;
        if matched {
            precision.den += 1;
            precision.num += u64::from(o.top1());
        }
        if o.truth.is_some() {
            automation.den += 1;
            automation.num += u64::from(matched && o.top1());
        }
    }
    (precision, automation)
}

/// A MATCH to the wrong template, set against the template's own documents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WrongMatch {
    /// The document's own group.
    pub group: String,
    /// Whether that group has a template (a known document matched to the wrong one)
    /// or not (a never-registered layout MATCHed).
    pub known: bool,
    /// The template it was matched to.
    pub matched: String,
    pub confidence: f64,
    /// Of the matched template's own held-out documents that rank it first, those that
    /// scored below this one: a threshold that rejects this MATCH rejects them too.
    pub genuine_below: Ratio,
}

/// Every wrong MATCH among `outcomes` (with its index there), and how many of the matched
/// template's genuine held-out documents (in the same `outcomes`) have a lower confidence.
pub fn wrong_matches(outcomes: &[Outcome]) -> Vec<(usize, WrongMatch)> {
    outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.decision == Dec::Match && !o.top1())
        .filter_map(|(i, o)| {
            let matched = o.best.clone()?;
            let genuine: Vec<f64> = outcomes
                .iter()
                .filter(|g| g.truth.as_deref() == Some(matched.as_str()) && g.top1())
                .map(|g| g.confidence)
                .collect();
            Some((
                i,
                WrongMatch {
                    group: o.group.clone(),
                    known: o.truth.is_some(),
                    matched,
                    confidence: o.confidence,
                    genuine_below: Ratio::new(
                        genuine.iter().filter(|&&c| c < o.confidence).count() as u64,
                        genuine.len() as u64,
                    ),
                },
            ))
        })
        .collect()
}

/// One drift stream: stable documents, then a change at `change_at`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamResult {
    pub kind: String,
    pub group: String,
    /// Index of the first changed document (= number of stable documents).
    pub change_at: usize,
    /// Alarm positions (observation indices, 0-based).
    pub alarms: Vec<usize>,
    pub len: usize,
    /// Leading observations in which the detector cannot alarm (its warm-up); they are not
    /// counted as stable documents, so the false-alarm rate is not flattered.
    pub warmup: usize,
}

impl StreamResult {
    /// Alarms raised on stable documents.
    pub fn false_alarms(&self) -> usize {
        self.alarms.iter().filter(|&&a| a < self.change_at).count()
    }
    /// Documents after the change up to and including the first alarm (1 = the first
    /// changed document raised it); `None` if the change was never detected.
    pub fn delay(&self) -> Option<usize> {
        self.alarms
            .iter()
            .find(|&&a| a >= self.change_at)
            .map(|a| a - self.change_at + 1)
    }
}

/// Aggregate drift-detection metrics for one kind of change.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DriftQuality {
    pub streams: u64,
    pub stable_documents: u64,
    pub false_alarms: u64,
    pub false_alarms_per_10k: Option<f64>,
    pub detected: Ratio,
    /// Detected within 10 documents of the change.
    pub detected_within_10: Ratio,
    pub median_delay: Option<f64>,
    pub max_delay: Option<usize>,
}

pub fn drift_quality(streams: &[StreamResult]) -> DriftQuality {
    let mut q = DriftQuality {
        streams: streams.len() as u64,
        ..DriftQuality::default()
    };
    let mut delays = Vec::new();
    for s in streams {
        q.stable_documents += s.change_at.saturating_sub(s.warmup) as u64;
        q.false_alarms += s.false_alarms() as u64;
        q.detected.den += 1;
        q.detected_within_10.den += 1;
        if let Some(d) = s.delay() {
            q.detected.num += 1;
            q.detected_within_10.num += u64::from(d <= 10);
            delays.push(d);
        }
    }
    q.false_alarms_per_10k = (q.stable_documents > 0)
        .then(|| q.false_alarms as f64 * 10_000.0 / q.stable_documents as f64);
    q.median_delay = median(&delays);
    q.max_delay = delays.iter().copied().max();
    q
}

pub fn median(v: &[usize]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m] as f64
    } else {
        (s[m - 1] + s[m]) as f64 / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(truth: Option<&str>, best: Option<&str>, d: Dec) -> Outcome {
        oc(truth, best, d, 0.9)
    }

    fn oc(truth: Option<&str>, best: Option<&str>, d: Dec, confidence: f64) -> Outcome {
        Outcome {
            group: truth.unwrap_or("novel").to_string(),
            truth: truth.map(str::to_string),
            best: best.map(str::to_string),
            decision: d,
            drift: 0.1,
            confidence,
        }
    }

    #[test]
    fn stricter_match_threshold_and_wrong_match_anatomy() {
        let cases = [
            oc(Some("a"), Some("a"), Dec::Match, 0.99),
            oc(Some("a"), Some("a"), Dec::Match, 0.90),
            oc(Some("a"), Some("a"), Dec::Match, 0.86),
            oc(Some("a"), Some("a"), Dec::Review, 0.95), // ambiguous: stays REVIEW
            oc(None, Some("a"), Dec::Match, 0.92),       // impostor
            oc(Some("b"), Some("a"), Dec::Match, 0.87),  // known, wrong template
            oc(Some("b"), Some("b"), Dec::New, 0.40),
        ];
        let (p, a) = at_match_threshold(&cases, 0.85);
        assert_eq!((p, a), (Ratio::new(3, 5), Ratio::new(3, 6)));
        let (p, a) = at_match_threshold(&cases, 0.88);
        assert_eq!((p, a), (Ratio::new(2, 3), Ratio::new(2, 6)));
        let (p, a) = at_match_threshold(&cases, 0.95);
        assert_eq!((p, a), (Ratio::new(1, 1), Ratio::new(1, 6)));
        let w = wrong_matches(&cases);
        assert_eq!(w.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [4, 5]);
        let w: Vec<WrongMatch> = w.into_iter().map(|(_, w)| w).collect();
        assert_eq!((w[0].group.as_str(), w[0].known), ("novel", false));
        assert_eq!(w[0].matched, "a");
        // Genuine "a" documents (top-1 right, any decision): 0.99, 0.90, 0.86, 0.95.
        assert_eq!(w[0].genuine_below, Ratio::new(2, 4));
        assert_eq!((w[1].group.as_str(), w[1].known), ("b", true));
        assert_eq!(w[1].genuine_below, Ratio::new(1, 4));
    }

    #[test]
    fn hand_made_identification_case() {
        let cases = [
            o(Some("a"), Some("a"), Dec::Match),  // right, automated
            o(Some("a"), Some("b"), Dec::Match),  // wrong MATCH
            o(Some("b"), Some("b"), Dec::Review), // right, not automated
            o(Some("b"), Some("a"), Dec::New),    // known but NEW
            o(None, Some("a"), Dec::New),         // novel, NEW
            o(None, Some("a"), Dec::Match),       // novel MATCHed: wrong
            o(None, None, Dec::New),              // novel, empty index
        ];
        let q = quality(&cases);
        assert_eq!(q.cases, 7);
        assert_eq!(q.top1, Ratio::new(2, 4));
        assert_eq!(q.match_precision, Ratio::new(1, 3));
        assert_eq!(q.automation, Ratio::new(1, 4));
        assert_eq!(q.new_recall, Ratio::new(2, 3));
        assert_eq!(q.new_precision, Ratio::new(2, 3));
        assert_eq!(q.known_recall, Ratio::new(3, 4));
        let ba = q.balanced_accuracy.unwrap();
        assert!((ba - (0.75 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(q.mix, [3, 1, 3, 0]);
        assert!((q.mean_drift.unwrap() - 0.1).abs() < 1e-12);
    }

    #[test]
    fn empty_sides_are_reported_as_missing_not_zero() {
        let q = quality(&[o(Some("a"), Some("a"), Dec::Match)]);
        assert_eq!(q.new_recall.value(), None);
        assert_eq!(q.balanced_accuracy, None);
        assert_eq!(q.new_recall.pct(), "n/a (0 cases)");
        assert_eq!(Ratio::new(1, 3).pct(), "33.3 % (1/3)");
    }

    #[test]
    fn stream_delay_and_false_alarms() {
        let s = StreamResult {
            kind: "sudden".into(),
            group: "g".into(),
            change_at: 100,
            alarms: vec![40, 103, 130],
            len: 150,
            warmup: 0,
        };
        assert_eq!(s.false_alarms(), 1);
        assert_eq!(s.delay(), Some(4));
        let missed = StreamResult {
            alarms: vec![],
            ..s.clone()
        };
        assert_eq!(missed.delay(), None);
        let late = StreamResult {
            alarms: vec![125],
            ..s.clone()
        };
        let q = drift_quality(&[s, missed, late]);
        assert_eq!(q.stable_documents, 300);
        assert_eq!(q.false_alarms, 1);
        assert!((q.false_alarms_per_10k.unwrap() - 10_000.0 / 300.0).abs() < 1e-9);
        assert_eq!(q.detected, Ratio::new(2, 3));
        assert_eq!(q.detected_within_10, Ratio::new(1, 3));
        assert_eq!(q.median_delay, Some(15.0)); // delays 4 and 26
        assert_eq!(q.max_delay, Some(26));
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3, 1, 2]), Some(2.0));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
