//! The decision: identify the layout, then apply the safeguards (broken extraction,
//! extractor confidence, drift, reliability, ambiguity) and explain the outcome with
//! machine-readable reasons.

use serde::{Deserialize, Serialize};

use crate::calibration;
use crate::drift::{document_drift, round6};
use crate::fingerprint::replay_finish;
use crate::index::TemplateIndex;
use crate::reliability::{reliability_score, ReliabilityInputs};
use crate::template::{CorrectionRule, OutcomeStats};
use crate::validate::ValidatedDocument;

/// The decision for one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    Match,
    Review,
    New,
    Reject,
}

impl Decision {
    /// Every decision, in a fixed order (counters are kept in this order).
    pub const ALL: [Decision; 4] = [
        Decision::Match,
        Decision::Review,
        Decision::New,
        Decision::Reject,
    ];

    /// The decision with this wire name (`MATCH`, ...).
    pub fn parse(s: &str) -> Option<Decision> {
        Decision::ALL.into_iter().find(|d| d.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Match => "MATCH",
            Decision::Review => "REVIEW",
            Decision::New => "NEW",
            Decision::Reject => "REJECT",
        }
    }
}

/// A machine-readable code (SCREAMING_SNAKE) with a short human message. Used for reasons
/// and warnings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub message: String,
}

impl Reason {
    pub fn new(code: &str, message: impl Into<String>) -> Reason {
        Reason {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// One component of the per-document drift (`layout.<group>` or `scalar.<feature>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftComponent {
    pub component: String,
    pub score: f64,
}

/// A template that was considered but not reported as the match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub template_id: String,
    pub template_version_id: String,
    pub template_version: i64,
    pub match_confidence: f64,
}

/// The top-ranked template of an evaluation, whatever the decision, with what a drift
/// monitor needs: a NEW or REVIEW document whose closest template is near enough may be
/// that template's changed layout (a redesign, an extractor upgrade), and the server can
/// feed this template's change detector with it (issue #14). `match_confidence` tells how
/// near: compare it with a threshold of the caller's choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosestTemplate {
    pub template_id: String,
    pub template_version_id: String,
    pub template_version: i64,
    pub match_confidence: f64,
    /// Raw layout similarity (0..1) to this template.
    pub similarity: f64,
    /// Per-document drift (0..1) against this template.
    pub drift_score: f64,
}

/// Thresholds of the decision. `Policy::default()` is the contract's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Confidence at or above which a document MATCHes.
    pub match_threshold: f64,
    /// Confidence at or above which a document is REVIEW rather than NEW.
    pub review_threshold: f64,
    /// A runner-up of another template within this confidence margin makes the match
    /// ambiguous (REVIEW).
    pub ambiguity_margin: f64,
    /// Extractor confidence below this forces REVIEW.
    pub min_extractor_confidence: f64,
    /// Boxes below this confidence count as low-confidence.
    pub low_box_confidence: f64,
    /// A share of low-confidence boxes above this forces REVIEW.
    pub max_low_confidence_share: f64,
    /// Drift score above this forces REVIEW.
    pub max_drift: f64,
    /// Reliability below this forces REVIEW.
    pub min_reliability: f64,
    /// Prior reliability used when no template matched.
    pub default_reliability: f64,
    /// Reliability below this adds a "verify all fields" correction hint.
    pub verify_hint_below: f64,
    /// How many LSH candidates are exactly scored.
    pub max_candidates: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            match_threshold: 0.85,
            review_threshold: 0.50,
            ambiguity_margin: 0.05,
            min_extractor_confidence: 0.60,
            low_box_confidence: 0.50,
            max_low_confidence_share: 0.25,
            max_drift: 0.45,
            min_reliability: 0.70,
            default_reliability: 0.50,
            verify_hint_below: 0.85,
            max_candidates: 16,
        }
    }
}

impl Policy {
    /// Canonical text of the policy (part of the replay hash).
    pub fn canonical(&self) -> String {
        format!(
            "match={:.4};review={:.4};ambiguity={:.4};min_extractor={:.4};low_box={:.4};max_low_share={:.4};max_drift={:.4};min_reliability={:.4};default_reliability={:.4};verify_hint={:.4};max_candidates={}",
            self.match_threshold,
            self.review_threshold,
            self.ambiguity_margin,
            self.min_extractor_confidence,
            self.low_box_confidence,
            self.max_low_confidence_share,
            self.max_drift,
            self.min_reliability,
            self.default_reliability,
            self.verify_hint_below,
            self.max_candidates
        )
    }
}

/// The engine's answer for one document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub decision: Decision,
    pub match_confidence: f64,
    pub template_id: Option<String>,
    pub template_version_id: Option<String>,
    pub template_version: Option<i64>,
    /// Raw layout similarity to the reported template (0 when none).
    pub similarity: f64,
    pub drift_score: f64,
    pub drift_components: Vec<DriftComponent>,
    pub reliability_score: f64,
    pub extractor_confidence: f64,
    pub reasons: Vec<Reason>,
    pub warnings: Vec<Reason>,
    pub correction_rules: Vec<CorrectionRule>,
    pub replay_hash: String,
    pub engine_version: String,
    pub layout_fingerprint: String,
    /// Templates exactly scored for this document.
    pub candidates_considered: usize,
    /// The best other template (for NEW: the closest template, which was not close enough).
    pub runner_up: Option<Candidate>,
    /// The top-ranked template whatever the decision (for MATCH/REVIEW the reported one, for
    /// NEW the closest one), with its similarity and drift; `None` with an empty index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closest_template: Option<ClosestTemplate>,
}

/// Evaluates a validated document against a tenant's templates.
pub fn evaluate(index: &TemplateIndex, doc: &ValidatedDocument, policy: &Policy) -> Evaluation {
    let (ranked, considered) =
        index.rank(&doc.sketch, doc.layout_fingerprint(), policy.max_candidates);
    let ext = doc.extractor();
    let boxes = doc.box_confidence();
    let low_share = low_share(doc, policy.low_box_confidence);
    let mut reasons: Vec<Reason> = doc.integrity_issues().to_vec();
    let broken = doc.is_broken();

    let conf_of = |s: &crate::index::Scored<'_>| {
        if s.exact {
            1.0
        } else {
            round6(calibration::confidence(s.sim.total))
        }
    };
    let best = ranked.first();
    let best_conf = best.map_or(0.0, conf_of);
    let as_candidate = |s: &crate::index::Scored<'_>| Candidate {
        template_id: s.template.template_id.clone(),
        template_version_id: s.template.template_version_id.clone(),
        template_version: s.template.version,
        match_confidence: conf_of(s),
    };

    let mut decision;
    let matched = best.filter(|_| best_conf >= policy.review_threshold);
    let runner_up;
    let mut drift_score = 0.0;
    let mut drift_components = Vec::new();
    let mut correction_rules = Vec::new();
    let reliability;
    let mut similarity = 0.0;
    if let Some(m) = matched {
        decision = if best_conf >= policy.match_threshold {
            Decision::Match
        } else {
            reasons.push(Reason::new(
                "LOW_MATCH_CONFIDENCE",
                format!(
                    "best template {} matched with confidence {best_conf:.3}, below {:.2}",
                    m.template.template_id, policy.match_threshold
                ),
            ));
            Decision::Review
        };
        similarity = round6(m.sim.total);
        let second = ranked
            .iter()
            .skip(1)
            .find(|s| s.template.template_id != m.template.template_id);
        runner_up = second.map(as_candidate);
        if let Some(s) = second {
            let c = conf_of(s);
            if c >= policy.review_threshold && best_conf - c < policy.ambiguity_margin {
                reasons.push(Reason::new(
                    "AMBIGUOUS_MATCH",
                    format!(
                        "template {} is almost as close ({c:.3} vs {best_conf:.3})",
                        s.template.template_id
                    ),
                ));
                decision = Decision::Review;
            }
        }
        let (d, comps) = document_drift(&m.sim, m.template);
        drift_score = d;
        drift_components = comps;
        if drift_score > policy.max_drift {
            let top = drift_components
                .iter()
                .max_by(|a, b| {
                    a.score
                        .total_cmp(&b.score)
                        .then_with(|| b.component.cmp(&a.component))
                })
                .map(|c| c.component.clone())
                .unwrap_or_default();
            reasons.push(Reason::new(
                "DRIFT_HIGH",
                format!(
                    "drift {drift_score:.3} from template baseline exceeds {:.2} (largest: {top})",
                    policy.max_drift
                ),
            ));
            decision = Decision::Review;
        }
        if let Some(msg) = extractor_change(m.template, ext) {
            // A new vendor, model or version is unverified on this layout: the history the
            // reliability uses is another extractor's, and boxes may be cut differently.
            reasons.push(Reason::new("EXTRACTOR_CHANGED", msg));
            decision = Decision::Review;
        }
        let outcomes = m.template.outcomes_for(ext);
        reliability = reliability_score(&ReliabilityInputs {
            baseline_reliability: m.template.baseline_reliability,
            outcomes,
            extractor_confidence: ext.confidence,
            mean_box_confidence: boxes.mean,
            low_confidence_share: low_share,
            drift: drift_score,
        });
        if reliability < policy.min_reliability {
            reasons.push(Reason::new(
                "RELIABILITY_LOW",
                format!(
                    "predicted reliability {reliability:.3} is below {:.2}",
                    policy.min_reliability
                ),
            ));
            decision = Decision::Review;
        }
        correction_rules.extend(m.template.correction_rules.iter().cloned());
    } else {
        decision = Decision::New;
        runner_up = best.map(as_candidate);
        reasons.push(Reason::new(
            "NO_TEMPLATE_CLOSE",
            match best {
                Some(b) => format!(
                    "closest template {} has confidence {best_conf:.3}, below {:.2}",
                    b.template.template_id, policy.review_threshold
                ),
                None => "no registered template is close to this layout".to_string(),
            },
        ));
        reliability = reliability_score(&ReliabilityInputs {
            baseline_reliability: policy.default_reliability,
            outcomes: OutcomeStats::default(),
            extractor_confidence: ext.confidence,
            mean_box_confidence: boxes.mean,
            low_confidence_share: low_share,
            drift: 0.0,
        });
    }

    if ext.confidence < policy.min_extractor_confidence {
        reasons.push(Reason::new(
            "EXTRACTOR_CONFIDENCE_LOW",
            format!(
                "extractor confidence {:.3} is below {:.2}",
                ext.confidence, policy.min_extractor_confidence
            ),
        ));
        if decision == Decision::Match {
            decision = Decision::Review;
        }
    }
    if low_share > policy.max_low_confidence_share {
        reasons.push(Reason::new(
            "BOX_CONFIDENCE_LOW",
            format!(
                "{:.0}% of boxes have confidence below {:.2}",
                low_share * 100.0,
                policy.low_box_confidence
            ),
        ));
        if decision == Decision::Match {
            decision = Decision::Review;
        }
    }

    let mut reliability = round6(reliability);
    if broken {
        decision = Decision::Reject;
        reliability = 0.0;
    }

    if decision != Decision::Reject && reliability < policy.verify_hint_below {
        correction_rules.push(CorrectionRule {
            field: "*".to_string(),
            rule: "verify_all_fields".to_string(),
            parameters: serde_json::json!({ "reliability": reliability }),
        });
    }
    if decision != Decision::Reject && low_share > 0.0 {
        let idx: Vec<usize> = doc
            .features()
            .bounding_boxes
            .iter()
            .enumerate()
            .filter(|(_, b)| b.confidence < policy.low_box_confidence)
            .map(|(i, _)| i)
            .take(20)
            .collect();
        correction_rules.push(CorrectionRule {
            field: "*".to_string(),
            rule: "review_low_confidence_elements".to_string(),
            parameters: serde_json::json!({
                "confidence_below": policy.low_box_confidence,
                "box_indices": idx,
                "share": round6(low_share),
            }),
        });
    }

    let closest_template = best.map(|b| ClosestTemplate {
        template_id: b.template.template_id.clone(),
        template_version_id: b.template.template_version_id.clone(),
        template_version: b.template.version,
        match_confidence: best_conf,
        similarity: round6(b.sim.total),
        drift_score: if matched.is_some() {
            drift_score
        } else {
            document_drift(&b.sim, b.template).0
        },
    });
    let template_version_id = matched.map(|m| m.template.template_version_id.clone());
    let replay = replay_finish(
        doc.replay_prefix.clone(),
        template_version_id.as_deref(),
        &policy.canonical(),
    );
    Evaluation {
        decision,
        match_confidence: best_conf,
        template_id: matched.map(|m| m.template.template_id.clone()),
        template_version_id,
        template_version: matched.map(|m| m.template.version),
        similarity,
        drift_score,
        drift_components,
        reliability_score: reliability,
        extractor_confidence: ext.confidence,
        reasons,
        warnings: doc.warnings().to_vec(),
        correction_rules,
        replay_hash: replay,
        engine_version: crate::ENGINE_VERSION.to_string(),
        layout_fingerprint: doc.layout_fingerprint().to_string(),
        candidates_considered: considered,
        runner_up,
        closest_template,
    }
}

/// The `EXTRACTOR_CHANGED` message when the document's extractor is not one the template
/// has seen (`None` when it is, or when the template records none). The message names what
/// differs against the seen identity closest to the document's (same vendor and model
/// first), e.g. "version 2.1.0 (template has seen 2.0.0)".
fn extractor_change(
    t: &crate::template::Template,
    ext: &crate::features::ExtractorMetadata,
) -> Option<String> {
    if t.seen_extractors.is_empty() {
        return None;
    }
    let id = crate::template::ExtractorIdentity::of(ext);
    if t.seen_extractors.contains(&id) {
        return None;
    }
    let near = t
        .seen_extractors
        .iter()
        .max_by_key(|s| (s.vendor == id.vendor, s.model == id.model))
        .expect("not empty");
    let what = if near.vendor != id.vendor {
        format!(
            "vendor {}/{} {} (template has seen {}/{} {})",
            id.vendor, id.model, id.version, near.vendor, near.model, near.version
        )
    } else if near.model != id.model {
        format!(
            "model {} {} (template has seen {} {})",
            id.model, id.version, near.model, near.version
        )
    } else {
        format!(
            "version {} (template has seen {})",
            id.version, near.version
        )
    };
    Some(format!(
        "the layout matches template {} but the extractor changed: {what}",
        t.template_id
    ))
}

fn low_share(doc: &ValidatedDocument, below: f64) -> f64 {
    let boxes = &doc.features().bounding_boxes;
    if boxes.is_empty() {
        return 0.0;
    }
    boxes.iter().filter(|b| b.confidence < below).count() as f64 / boxes.len() as f64
}
