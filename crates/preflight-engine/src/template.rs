//! Templates: a tenant's known layouts, learned from one or more exemplar documents.
//!
//! A template keeps only compact statistics of its exemplars (sparse per-cell sums and
//! occupancy counts, scalar means/variances, exemplar fingerprints), never the exemplars
//! themselves, so it costs a few KB whatever the number of exemplars. From several
//! exemplars it learns which cells are stable (always or never occupied) and weighs
//! them more than cells that come and go (e.g. variable line items).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::align::{align_similarity, AlignParams, BoxSet, MAX_EXEMPLAR_SETS};
use crate::features::{ExtractorMetadata, StructuralFeatures};
use crate::sketch::{key_is_token, minhash, DocSketch, ProfileCell, NS, SCALAR_NAMES, TOKEN_MIN};
use crate::validate::{analyze_layout, check_features, ValidationErrors, MAX_STRING_LEN};

/// A correction-rule hint handed back with matching evaluations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrectionRule {
    pub field: String,
    pub rule: String,
    #[serde(default)]
    pub parameters: serde_json::Value,
}

/// Outcome feedback counters for one extractor on one template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutcomeStats {
    pub correct: u64,
    pub corrected: u64,
    pub rejected: u64,
}

impl OutcomeStats {
    pub fn total(&self) -> u64 {
        self.correct
            .saturating_add(self.corrected)
            .saturating_add(self.rejected)
    }
}

/// Which extractor produced a layout: vendor, model and version as the client reported
/// them. A template remembers the identities it has seen (see
/// [`Template::seen_extractors`]) so an evaluation can name an extractor change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExtractorIdentity {
    pub vendor: String,
    pub model: String,
    pub version: String,
}

impl ExtractorIdentity {
    /// The identity of an extractor's metadata (strings trimmed, as validation checks them).
    pub fn of(e: &ExtractorMetadata) -> ExtractorIdentity {
        ExtractorIdentity {
            vendor: e.vendor.trim().to_string(),
            model: e.model.trim().to_string(),
            version: e.version.trim().to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CellAcc {
    key: u16,
    occupied: u16,
    sum: u32,
}

/// A versioned layout template.
#[derive(Debug, Clone)]
pub struct Template {
    pub template_id: String,
    pub version: i64,
    /// Caller-supplied unique id of this version; the index key.
    pub template_version_id: String,
    /// Prior probability (0..1) that extractions of this layout are correct.
    pub baseline_reliability: f64,
    pub correction_rules: Vec<CorrectionRule>,
    /// Feedback counters per extractor, keyed by [`Template::outcome_key`].
    pub outcome_stats: BTreeMap<String, OutcomeStats>,
    /// Extractors whose output this template has seen (usually its exemplars' extractors,
    /// plus those of confirmed documents). Data the caller supplies, like `outcome_stats`:
    /// the engine does no I/O. Empty means "unknown" and never produces
    /// `EXTRACTOR_CHANGED`; otherwise a matched document from an extractor not in the set
    /// gets that reason (docs/engine.md, *Decision and reasons*).
    pub seen_extractors: BTreeSet<ExtractorIdentity>,
    n: u32,
    acc: Vec<CellAcc>,
    pub(crate) cells: Vec<ProfileCell>,
    scalar_sum: [f64; NS],
    scalar_sq: [f64; NS],
    pub(crate) scalar_mean: [f64; NS],
    pub(crate) scalar_sd: [f64; NS],
    pub(crate) signature: Vec<u32>,
    pub(crate) fingerprints: Vec<[u8; 32]>,
    /// Box sets of the first exemplars, for the fine alignment.
    pub(crate) box_sets: Vec<BoxSet>,
}

impl Template {
    /// Builds a template from its exemplar layouts. Every exemplar must be valid and not a
    /// broken extraction (empty, impossible geometry, inconsistent counts).
    pub fn new(
        template_id: impl Into<String>,
        version: i64,
        template_version_id: impl Into<String>,
        exemplars: Vec<StructuralFeatures>,
        baseline_reliability: f64,
        correction_rules: Vec<CorrectionRule>,
    ) -> Result<Template, ValidationErrors> {
        let template_id = template_id.into();
        let template_version_id = template_version_id.into();
        let mut errors = ValidationErrors::default();
        for (name, v) in [
            ("template_id", &template_id),
            ("template_version_id", &template_version_id),
        ] {
            if v.trim().is_empty() {
                errors.0.push(fe(name, "must not be empty"));
            } else if v.chars().count() > MAX_STRING_LEN {
                errors.0.push(fe(
                    name,
                    &format!("must be at most {MAX_STRING_LEN} characters"),
                ));
            }
        }
        if !baseline_reliability.is_finite() || !(0.0..=1.0).contains(&baseline_reliability) {
            errors.0.push(fe(
                "baseline_reliability",
                "must be a finite number between 0 and 1",
            ));
        }
        if exemplars.is_empty() {
            errors
                .0
                .push(fe("exemplars", "at least one exemplar layout is required"));
        }
        for (i, r) in correction_rules.iter().enumerate() {
            if r.field.trim().is_empty() {
                errors.0.push(fe(
                    &format!("correction_rules[{i}].field"),
                    "must not be empty",
                ));
            }
            if r.rule.trim().is_empty() {
                errors.0.push(fe(
                    &format!("correction_rules[{i}].rule"),
                    "must not be empty",
                ));
            }
        }
        let mut sketches = Vec::with_capacity(exemplars.len());
        for (i, f) in exemplars.iter().enumerate() {
            if let Some(s) = exemplar_sketch(f, &format!("exemplars[{i}]"), &mut errors) {
                sketches.push((s, f));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut t = Template {
            template_id,
            version,
            template_version_id,
            baseline_reliability,
            correction_rules,
            outcome_stats: BTreeMap::new(),
            seen_extractors: BTreeSet::new(),
            n: 0,
            acc: Vec::new(),
            cells: Vec::new(),
            scalar_sum: [0.0; NS],
            scalar_sq: [0.0; NS],
            scalar_mean: [0.0; NS],
            scalar_sd: [0.0; NS],
            signature: Vec::new(),
            fingerprints: Vec::new(),
            box_sets: Vec::new(),
        };
        for (s, f) in &sketches {
            t.accumulate(s, f);
        }
        t.rebuild();
        Ok(t)
    }

    /// Adds one exemplar. A template already in a [`crate::TemplateIndex`] must be
    /// re-inserted afterwards so the index sees the new sketch.
    pub fn add_exemplar(&mut self, features: &StructuralFeatures) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let s = exemplar_sketch(features, "exemplar", &mut errors);
        match s {
            Some(s) if errors.is_empty() => {
                self.accumulate(&s, features);
                self.rebuild();
                Ok(())
            }
            _ => Err(errors),
        }
    }

    /// Records that this template has seen output of `extractor` (e.g. an exemplar's).
    pub fn record_extractor(&mut self, extractor: &ExtractorMetadata) {
        self.seen_extractors
            .insert(ExtractorIdentity::of(extractor));
    }

    /// [`Template::record_extractor`] for several extractors, builder style.
    pub fn with_seen_extractors<'a>(
        mut self,
        extractors: impl IntoIterator<Item = &'a ExtractorMetadata>,
    ) -> Template {
        for e in extractors {
            self.record_extractor(e);
        }
        self
    }

    /// Number of exemplars learned.
    pub fn exemplar_count(&self) -> u32 {
        self.n
    }

    /// The key of [`Template::outcome_stats`] for an extractor: `vendor/model`.
    pub fn outcome_key(vendor: &str, model: &str) -> String {
        format!("{vendor}/{model}")
    }

    /// Feedback counters for this extractor (zero when none were recorded).
    pub fn outcomes_for(&self, extractor: &ExtractorMetadata) -> OutcomeStats {
        self.outcome_stats
            .get(&Self::outcome_key(&extractor.vendor, &extractor.model))
            .copied()
            .unwrap_or_default()
    }

    /// Per-scalar baseline (name, mean, standard deviation over exemplars).
    pub fn scalar_baseline(&self) -> Vec<(&'static str, f64, f64)> {
        (0..NS)
            .map(|i| (SCALAR_NAMES[i], self.scalar_mean[i], self.scalar_sd[i]))
            .collect()
    }

    /// Approximate heap + inline size of this template.
    pub fn approx_memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.template_id.capacity()
            + self.template_version_id.capacity()
            + self.acc.capacity() * std::mem::size_of::<CellAcc>()
            + self.cells.capacity() * std::mem::size_of::<ProfileCell>()
            + self.signature.capacity() * 4
            + self.fingerprints.capacity() * 32
            + self
                .box_sets
                .iter()
                .map(|b| std::mem::size_of::<BoxSet>() + b.approx_memory_bytes())
                .sum::<usize>()
            + self
                .correction_rules
                .iter()
                .map(|r| {
                    std::mem::size_of::<CorrectionRule>()
                        + r.field.len()
                        + r.rule.len()
                        + serde_json::to_string(&r.parameters).map_or(0, |s| s.len() * 2)
                })
                .sum::<usize>()
            + self
                .outcome_stats
                .keys()
                .map(|k| k.len() + 64)
                .sum::<usize>()
            + self
                .seen_extractors
                .iter()
                .map(|e| e.vendor.len() + e.model.len() + e.version.len() + 96)
                .sum::<usize>()
    }

    fn accumulate(&mut self, s: &DocSketch, f: &StructuralFeatures) {
        if self.n == 1 && self.acc.is_empty() {
            // A single-exemplar template keeps only its profile (values are exact then).
            self.acc = self
                .cells
                .iter()
                .map(|c| CellAcc {
                    key: c.key,
                    sum: u32::from(c.mean),
                    occupied: 1,
                })
                .collect();
        }
        self.n += 1;
        let mut merged = Vec::with_capacity(self.acc.len() + s.nonzero.len());
        let mut a = self.acc.iter().peekable();
        let mut b = s.cells().peekable();
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some((k, v))) if x.key == *k => {
                    merged.push(CellAcc {
                        key: x.key,
                        sum: x.sum + u32::from(*v),
                        occupied: x.occupied.saturating_add(1),
                    });
                    a.next();
                    b.next();
                }
                (Some(x), Some((k, _))) if x.key < *k => {
                    merged.push(**x);
                    a.next();
                }
                (_, Some((k, v))) => {
                    merged.push(CellAcc {
                        key: *k,
                        sum: u32::from(*v),
                        occupied: 1,
                    });
                    b.next();
                }
                (Some(x), None) => {
                    merged.push(**x);
                    a.next();
                }
                (None, None) => break,
            }
        }
        self.acc = merged;
        for i in 0..NS {
            self.scalar_sum[i] += s.scalars[i];
            self.scalar_sq[i] += s.scalars[i] * s.scalars[i];
        }
        if self.box_sets.len() < MAX_EXEMPLAR_SETS {
            self.box_sets.push(s.boxes.clone());
        }
        let fp = crate::fingerprint::layout_fingerprint(f);
        let mut raw = [0u8; 32];
        if hex::decode_to_slice(&fp, &mut raw).is_ok() && !self.fingerprints.contains(&raw) {
            self.fingerprints.push(raw);
        }
    }

    fn rebuild(&mut self) {
        let n = self.n.max(1);
        let nf = f64::from(n);
        self.cells = self
            .acc
            .iter()
            .map(|c| {
                let f = f64::from(c.occupied) / nf;
                // Cells present in about half of the exemplars are the least predictable;
                // always/never-occupied cells keep full weight.
                let stability = if n == 1 {
                    1.0
                } else {
                    1.0 - 0.8 * 4.0 * f * (1.0 - f)
                };
                ProfileCell {
                    key: c.key,
                    mean: ((f64::from(c.sum) / nf).round() as u32).clamp(1, 255) as u8,
                    weight: ((stability * 255.0).round() as u32).clamp(1, 255) as u8,
                }
            })
            .collect();
        self.cells.shrink_to_fit();
        self.acc.shrink_to_fit();
        for i in 0..NS {
            let m = self.scalar_sum[i] / nf;
            self.scalar_mean[i] = m;
            self.scalar_sd[i] = (self.scalar_sq[i] / nf - m * m).max(0.0).sqrt();
        }
        self.signature = minhash(self.tokens().into_iter());
        if n == 1 {
            self.acc = Vec::new();
        }
    }

    /// Box-alignment similarity of a document's boxes to the closest exemplar.
    pub(crate) fn align_with(&self, boxes: &BoxSet, p: &AlignParams) -> f64 {
        self.box_sets
            .iter()
            .map(|b| align_similarity(boxes, b, p))
            .fold(0.0, f64::max)
    }

    /// Shape-signature similarity to the closest exemplar (candidate preselection).
    pub(crate) fn shape_with(&self, boxes: &BoxSet) -> f64 {
        self.box_sets
            .iter()
            .map(|b| boxes.shape_similarity(b))
            .fold(0.0, f64::max)
    }

    /// LSH tokens: coarse cells occupied in at least half of the exemplars, strongly enough.
    pub(crate) fn tokens(&self) -> Vec<u16> {
        let n = self.n.max(1);
        if self.acc.is_empty() {
            return self
                .cells
                .iter()
                .filter(|c| key_is_token(c.key) && c.mean >= TOKEN_MIN)
                .map(|c| c.key)
                .collect();
        }
        self.acc
            .iter()
            .filter(|c| {
                key_is_token(c.key)
                    && 2 * u32::from(c.occupied) >= n
                    && c.sum >= u32::from(TOKEN_MIN) * u32::from(c.occupied)
            })
            .map(|c| c.key)
            .collect()
    }
}

fn fe(field: &str, message: &str) -> crate::validate::FieldError {
    crate::validate::FieldError {
        field: field.to_string(),
        message: message.to_string(),
    }
}

fn exemplar_sketch(
    f: &StructuralFeatures,
    prefix: &str,
    errors: &mut ValidationErrors,
) -> Option<DocSketch> {
    let before = errors.len();
    check_features(f, prefix, errors);
    if errors.len() > before {
        return None;
    }
    let a = analyze_layout(f);
    if !a.integrity.is_empty() {
        for r in &a.integrity {
            errors.0.push(fe(
                prefix,
                &format!("broken exemplar layout ({}): {}", r.code, r.message),
            ));
        }
        return None;
    }
    Some(a.sketch)
}
