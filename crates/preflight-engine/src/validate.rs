//! Input validation: splits what a client sent into "invalid request" (field errors, the
//! server answers 422) and "broken extraction" (a valid request whose layout is impossible,
//! which the engine REJECTs with reasons). Everything downstream works on the checked,
//! clamped [`ValidatedDocument`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::evaluate::Reason;
use crate::features::{BoundingBox, ElementType, ExtractorMetadata, StructuralFeatures};
use crate::fingerprint::layout_fingerprint;
use crate::sketch::{DocSketch, NormBox};

/// Upper limit for element/table/text-block/image counts.
pub const MAX_ELEMENT_COUNT: i64 = 100_000;
/// Upper limit for `page_count`.
pub const MAX_PAGE_COUNT: i64 = 5_000;
/// Upper limit for `column_count`.
pub const MAX_COLUMN_COUNT: i64 = 1_000;
/// Upper limit for the number of bounding boxes in one document.
pub const MAX_BOXES: usize = 10_000;
/// Upper limit for string lengths (vendor, model, version, element_type), in characters.
pub const MAX_STRING_LEN: usize = 256;
/// How far (in page units, 0..1) a box may stick out of its page before it counts as
/// impossible geometry. Extractors round and deskew, so a few pixels outside is normal.
pub const GEOMETRY_TOLERANCE: f64 = 0.02;
/// How far (page units) a box may stick out of its page and still count as an extractor
/// quirk (a word cut at a scan's edge, a deskewed box) rather than impossible geometry:
/// such a box, and a zero-size one, is dropped with a warning `GEOMETRY_DEGENERATE_DROPPED`.
pub const DEGENERATE_TOLERANCE: f64 = 0.10;
/// Degenerate boxes are dropped only while they are at most this share of the boxes; above
/// it the extraction itself is suspect and is REJECTed (`GEOMETRY_INVALID`).
pub const MAX_DEGENERATE_SHARE: f64 = 0.10;
/// The original PreFlight SDK sends at most this many boxes with the counts of the whole
/// page: a list of exactly this length may be truncated, so counts above it are accepted
/// (warning `BOXES_TRUNCATED`).
pub const SDK_BOX_LIMIT: usize = 100;
/// At most this many field errors are listed; the rest are summarized in one entry so a
/// pathological request cannot produce a multi-megabyte 422 body.
pub const MAX_LISTED_ERRORS: usize = 100;

/// One invalid field: a JSON-path-like location and a short human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// All field errors of a request (never just the first one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
    fn finish(mut self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() {
            return Ok(());
        }
        if self.0.len() > MAX_LISTED_ERRORS {
            let more = self.0.len() - MAX_LISTED_ERRORS;
            self.0.truncate(MAX_LISTED_ERRORS);
            self.push("", format!("... and {more} more errors"));
        }
        Err(self)
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} invalid field(s): ", self.0.len())?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Mean and low-confidence share of the boxes' confidences.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoxConfidenceProfile {
    pub mean: f64,
    /// Share of boxes whose confidence is below [`LOW_BOX_CONFIDENCE`].
    pub low_share: f64,
}

/// Box confidence below which a box counts as low-confidence in the profile.
pub const LOW_BOX_CONFIDENCE: f64 = 0.5;

/// A request that passed validation. It may still describe a broken extraction (see
/// [`ValidatedDocument::integrity_issues`]); `evaluate` then REJECTs it.
#[derive(Debug, Clone)]
pub struct ValidatedDocument {
    features: StructuralFeatures,
    extractor: ExtractorMetadata,
    warnings: Vec<Reason>,
    integrity: Vec<Reason>,
    fingerprint: String,
    pub(crate) sketch: DocSketch,
    box_confidence: BoxConfidenceProfile,
    pub(crate) replay_prefix: sha2::Sha256,
}

impl ValidatedDocument {
    pub fn features(&self) -> &StructuralFeatures {
        &self.features
    }
    pub fn extractor(&self) -> &ExtractorMetadata {
        &self.extractor
    }
    /// Non-fatal findings (clamped geometry, unknown element types, ...).
    pub fn warnings(&self) -> &[Reason] {
        &self.warnings
    }
    /// REJECT reasons (`EMPTY_EXTRACTION`, `GEOMETRY_INVALID`, `COUNTS_INCONSISTENT`).
    pub fn integrity_issues(&self) -> &[Reason] {
        &self.integrity
    }
    pub fn is_broken(&self) -> bool {
        !self.integrity.is_empty()
    }
    /// The canonical layout fingerprint (see [`crate::layout_fingerprint`]).
    pub fn layout_fingerprint(&self) -> &str {
        &self.fingerprint
    }
    pub fn box_confidence(&self) -> BoxConfidenceProfile {
        self.box_confidence
    }
}

/// Validates a request's features and extractor metadata. Returns every field error at once.
pub fn validate(
    features: &StructuralFeatures,
    extractor: &ExtractorMetadata,
) -> Result<ValidatedDocument, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    check_features(features, "structural_features", &mut errors);
    check_extractor(extractor, "extractor_metadata", &mut errors);
    errors.finish()?;
    let layout = analyze_layout(features);
    Ok(ValidatedDocument {
        features: features.clone(),
        extractor: extractor.clone(),
        warnings: layout.warnings,
        integrity: layout.integrity,
        fingerprint: layout_fingerprint(features),
        sketch: layout.sketch,
        box_confidence: layout.box_confidence,
        replay_prefix: crate::fingerprint::replay_prefix(features, extractor),
    })
}

/// A checked layout without extractor metadata (used for template exemplars too).
pub(crate) struct LayoutAnalysis {
    pub warnings: Vec<Reason>,
    pub integrity: Vec<Reason>,
    pub sketch: DocSketch,
    pub box_confidence: BoxConfidenceProfile,
}

/// Field checks of one `structural_features` object; `prefix` is its path in the request.
pub(crate) fn check_features(f: &StructuralFeatures, prefix: &str, errors: &mut ValidationErrors) {
    let counts = [
        ("element_count", f.element_count, MAX_ELEMENT_COUNT),
        ("table_count", f.table_count, MAX_ELEMENT_COUNT),
        ("text_block_count", f.text_block_count, MAX_ELEMENT_COUNT),
        ("image_count", f.image_count, MAX_ELEMENT_COUNT),
        ("page_count", f.page_count, MAX_PAGE_COUNT),
        ("column_count", f.column_count, MAX_COLUMN_COUNT),
    ];
    for (name, value, max) in counts {
        if value < 0 {
            errors.push(format!("{prefix}.{name}"), "must not be negative");
        } else if value > max {
            errors.push(format!("{prefix}.{name}"), format!("must be at most {max}"));
        }
    }
    check_unit(f.text_density, &format!("{prefix}.text_density"), errors);
    check_unit(
        f.layout_complexity,
        &format!("{prefix}.layout_complexity"),
        errors,
    );
    if f.bounding_boxes.len() > MAX_BOXES {
        errors.push(
            format!("{prefix}.bounding_boxes"),
            format!(
                "at most {MAX_BOXES} boxes are accepted, got {}",
                f.bounding_boxes.len()
            ),
        );
        // Checking 10k+ boxes one by one would only flood the error list.
        return;
    }
    for (i, b) in f.bounding_boxes.iter().enumerate() {
        let p = format!("{prefix}.bounding_boxes[{i}]");
        check_string(&b.element_type, &format!("{p}.element_type"), errors);
        check_unit(b.confidence, &format!("{p}.confidence"), errors);
        if b.reading_order < 0 {
            errors.push(format!("{p}.reading_order"), "must not be negative");
        }
        if let Some(page) = b.page {
            if page < 0 {
                errors.push(format!("{p}.page"), "must not be negative");
            } else if f.page_count >= 1 && page >= f.page_count {
                errors.push(
                    format!("{p}.page"),
                    format!(
                        "page index {page} is out of range for page_count {}",
                        f.page_count
                    ),
                );
            }
        }
    }
}

fn check_extractor(e: &ExtractorMetadata, prefix: &str, errors: &mut ValidationErrors) {
    check_string(&e.vendor, &format!("{prefix}.vendor"), errors);
    check_string(&e.model, &format!("{prefix}.model"), errors);
    check_string(&e.version, &format!("{prefix}.version"), errors);
    check_unit(e.confidence, &format!("{prefix}.confidence"), errors);
    check_non_negative(e.latency_ms, &format!("{prefix}.latency_ms"), errors);
    if let Some(cost) = e.cost_usd {
        check_non_negative(cost, &format!("{prefix}.cost_usd"), errors);
    }
}

fn check_unit(v: f64, field: &str, errors: &mut ValidationErrors) {
    if !v.is_finite() {
        errors.push(field, "must be a finite number");
    } else if !(0.0..=1.0).contains(&v) {
        errors.push(field, format!("must be between 0 and 1, got {v}"));
    }
}

fn check_non_negative(v: f64, field: &str, errors: &mut ValidationErrors) {
    if !v.is_finite() {
        errors.push(field, "must be a finite number");
    } else if v < 0.0 {
        errors.push(field, format!("must not be negative, got {v}"));
    }
}

fn check_string(s: &str, field: &str, errors: &mut ValidationErrors) {
    if s.trim().is_empty() {
        errors.push(field, "must not be empty");
    } else if s.chars().count() > MAX_STRING_LEN {
        errors.push(
            field,
            format!("must be at most {MAX_STRING_LEN} characters"),
        );
    }
}

/// Geometry of one box after the tolerance rules.
enum BoxGeometry {
    Ok {
        clamped: bool,
        b: [f64; 4],
    },
    /// Zero size, or outside the page by more than the clamping tolerance but at most
    /// [`DEGENERATE_TOLERANCE`]: a real extractor quirk, dropped unless there are many.
    Degenerate,
    Invalid,
}

fn box_geometry(b: &BoundingBox) -> BoxGeometry {
    let vals = [b.x, b.y, b.width, b.height];
    if vals.iter().any(|v| !v.is_finite()) || b.width < 0.0 || b.height < 0.0 {
        return BoxGeometry::Invalid;
    }
    let (x0, y0, x1, y1) = (b.x, b.y, b.x + b.width, b.y + b.height);
    let outside = |t: f64| x0 < -t || y0 < -t || x1 > 1.0 + t || y1 > 1.0 + t;
    if outside(DEGENERATE_TOLERANCE) {
        return BoxGeometry::Invalid;
    }
    if b.width == 0.0 || b.height == 0.0 || outside(GEOMETRY_TOLERANCE) {
        return BoxGeometry::Degenerate;
    }
    let c = [
        x0.clamp(0.0, 1.0),
        y0.clamp(0.0, 1.0),
        x1.clamp(0.0, 1.0),
        y1.clamp(0.0, 1.0),
    ];
    let clamped = c != [x0, y0, x1, y1];
    BoxGeometry::Ok { clamped, b: c }
}

/// Integrity checks and sketching of a layout that already passed [`check_features`].
pub(crate) fn analyze_layout(f: &StructuralFeatures) -> LayoutAnalysis {
    let mut warnings = Vec::new();
    let mut integrity = Vec::new();
    let n = f.bounding_boxes.len();

    if n == 0 || f.element_count == 0 {
        integrity.push(Reason::new(
            "EMPTY_EXTRACTION",
            if n == 0 {
                "no bounding boxes were extracted".to_string()
            } else {
                "element_count is 0".to_string()
            },
        ));
    }

    let mut norm = Vec::with_capacity(n);
    let mut invalid = 0usize;
    let mut degenerate = 0usize;
    let mut clamped = 0usize;
    let mut unknown = 0usize;
    let mut unknown_names: Vec<&str> = Vec::new();
    let mut has_table_box = false;
    let mut conf_sum = 0.0;
    let mut low = 0usize;
    for b in &f.bounding_boxes {
        let etype = match ElementType::parse(&b.element_type) {
            Some(t) => t,
            None => {
                unknown += 1;
                if unknown_names.len() < 5 && !unknown_names.contains(&b.element_type.as_str()) {
                    unknown_names.push(&b.element_type);
                }
                ElementType::Other
            }
        };
        if matches!(etype, ElementType::Table | ElementType::TableCell) {
            has_table_box = true;
        }
        conf_sum += b.confidence;
        if b.confidence < LOW_BOX_CONFIDENCE {
            low += 1;
        }
        match box_geometry(b) {
            BoxGeometry::Invalid => invalid += 1,
            BoxGeometry::Degenerate => degenerate += 1,
            BoxGeometry::Ok { clamped: c, b: g } => {
                if c {
                    clamped += 1;
                }
                if g[2] > g[0] && g[3] > g[1] {
                    norm.push(NormBox {
                        page: b.page.unwrap_or(0).max(0) as usize,
                        etype,
                        x0: g[0],
                        y0: g[1],
                        x1: g[2],
                        y1: g[3],
                    });
                }
            }
        }
    }
    // A few degenerate boxes are what real extractors send (a zero-height rule, a word cut
    // at the scan's edge); dropping them keeps the document. Many of them mean the
    // extraction itself is broken.
    let too_many_degenerate = n > 0 && degenerate as f64 > MAX_DEGENERATE_SHARE * n as f64;
    if invalid > 0 || too_many_degenerate {
        let mut parts = Vec::new();
        if invalid > 0 {
            parts.push(format!(
                "{invalid} of {n} boxes have impossible geometry (non-finite, negative size, or more than {DEGENERATE_TOLERANCE} outside the page)"
            ));
        }
        if too_many_degenerate {
            parts.push(format!(
                "{degenerate} of {n} boxes are degenerate (zero size or slightly outside the page), more than {:.0} %",
                MAX_DEGENERATE_SHARE * 100.0
            ));
        }
        integrity.push(Reason::new("GEOMETRY_INVALID", parts.join("; ")));
    } else if degenerate > 0 {
        warnings.push(Reason::new(
            "GEOMETRY_DEGENERATE_DROPPED",
            format!(
                "{degenerate} of {n} boxes had zero size or lay slightly outside the page and were ignored"
            ),
        ));
    }
    if clamped > 0 {
        warnings.push(Reason::new(
            "GEOMETRY_CLAMPED",
            format!("{clamped} boxes extended slightly outside the page and were clamped"),
        ));
    }
    if unknown > 0 {
        warnings.push(Reason::new(
            "UNKNOWN_ELEMENT_TYPE",
            format!(
                "{unknown} boxes have unknown element types (treated as other): {}",
                unknown_names.join(", ")
            ),
        ));
    }

    let mut inconsistent: Vec<String> = Vec::new();
    // A list cut at a client's limit (the original SDK's 100, or ours) carries the counts
    // of the whole page: more elements than boxes is then expected, not inconsistent.
    let truncated = (n == SDK_BOX_LIMIT || n == MAX_BOXES) && f.element_count > n as i64;
    if n > 0 && f.element_count > 0 {
        let e = f.element_count as f64;
        let nb = n as f64;
        if e < nb / 2.0 - 2.0 {
            inconsistent.push(format!("element_count {} but {n} boxes", f.element_count));
        } else if !truncated && e > 2.0 * nb + 10.0 {
            inconsistent.push(format!(
                "element_count {} but only {n} boxes",
                f.element_count
            ));
        }
    }
    if truncated {
        warnings.push(Reason::new(
            "BOXES_TRUNCATED",
            format!(
                "element_count {} with {n} boxes: the box list looks truncated at {n}; the layout is judged on the boxes sent",
                f.element_count
            ),
        ));
    }
    for (name, v) in [
        ("table_count", f.table_count),
        ("text_block_count", f.text_block_count),
        ("image_count", f.image_count),
    ] {
        if v > f.element_count && f.element_count > 0 {
            inconsistent.push(format!(
                "{name} {v} exceeds element_count {}",
                f.element_count
            ));
        }
    }
    // A truncated list may have lost the table boxes.
    if f.table_count > 0 && n > 0 && !has_table_box && !truncated {
        inconsistent.push(format!("table_count {} but no table box", f.table_count));
    }
    if f.page_count == 0 && n > 0 {
        inconsistent.push(format!("page_count is 0 but {n} boxes were sent"));
    }
    if !inconsistent.is_empty() {
        integrity.push(Reason::new("COUNTS_INCONSISTENT", inconsistent.join("; ")));
    }

    let box_confidence = if n == 0 {
        BoxConfidenceProfile {
            mean: 0.0,
            low_share: 0.0,
        }
    } else {
        BoxConfidenceProfile {
            mean: conf_sum / n as f64,
            low_share: low as f64 / n as f64,
        }
    };
    // Float sums over boxes depend on their order; a canonical order makes every score
    // independent of the order the client listed the boxes in.
    norm.sort_by(|a, b| {
        a.page
            .cmp(&b.page)
            .then(a.y0.total_cmp(&b.y0))
            .then(a.x0.total_cmp(&b.x0))
            .then(a.y1.total_cmp(&b.y1))
            .then(a.x1.total_cmp(&b.x1))
            .then(a.etype.cmp(&b.etype))
    });
    let sketch = DocSketch::build(f, &norm);
    LayoutAnalysis {
        warnings,
        integrity,
        sketch,
        box_confidence,
    }
}
