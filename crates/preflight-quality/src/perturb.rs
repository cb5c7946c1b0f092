//! Seeded perturbations of a real layout at a severity level (0.05 OCR jitter, 0.15 mild
//! revision, 0.30 significant revision, 0.50 redesign). Every probability and spread grows
//! linearly with the level p; the exact protocol (also in docs/quality.md):
//!
//! 1. **Section moves**: 3 trials with probability p; each picks a horizontal band
//!    (top U(0, 0.85), height U(0.05, 0.15)) and moves its boxes (by centre) by U(−0.1, 0.1).
//! 2. **Box jitter**: x, y += N(0, 0.03·p); width, height ×= exp(N(0, 0.5·p)).
//! 3. **Drop**: each box removed with probability 0.4·p (at least one box stays).
//! 4. **Add**: per original box, with probability 0.4·p a new `text` box with the size of a
//!    random existing box at a uniform position.
//! 5. **Flips**, each with probability 0.5·p: table (remove all table boxes and
//!    `table_count` = 0, or add one table box of U(0.6, 0.9)×U(0.1, 0.3) and `table_count`
//!    = 1), pages (drop the last page's boxes, or add a page carrying a random half of page
//!    0's boxes), columns (±1, ≥ 1), header, footer.
//! 6. **Counts**: `element_count` = boxes·exp(N(0, 0.3·p)) within [boxes/2, 2·boxes];
//!    `text_block_count` and `image_count` scaled by the box-count ratio and capped by it.
//! 7. **Scalars**: text density and layout complexity += N(0, 0.1·p), clamped to [0, 1].
//!
//! Geometry is clamped to the page so a perturbed document is always a *valid* extraction:
//! the benchmark measures identification, not the REJECT rules.

use preflight_engine::{BoundingBox, ElementType, StructuralFeatures};

use crate::rng::SplitMix64;

/// The benchmark's levels and their names.
pub const LEVELS: [(f64, &str); 4] = [
    (0.05, "ocr_jitter"),
    (0.15, "mild_revision"),
    (0.30, "significant_revision"),
    (0.50, "redesign"),
];

const MIN_SIZE: f64 = 0.002;

fn clamp_box(b: &mut BoundingBox) {
    b.width = b.width.clamp(MIN_SIZE, 1.0);
    b.height = b.height.clamp(MIN_SIZE, 1.0);
    b.x = b.x.clamp(0.0, 1.0 - b.width);
    b.y = b.y.clamp(0.0, 1.0 - b.height);
}

fn is_table(b: &BoundingBox) -> bool {
    matches!(
        ElementType::parse(&b.element_type),
        Some(ElementType::Table | ElementType::TableCell)
    )
}

/// A perturbed copy of `f` at level `p` (0..1).
pub fn perturb(f: &StructuralFeatures, p: f64, rng: &mut SplitMix64) -> StructuralFeatures {
    let mut out = f.clone();
    let n0 = f.bounding_boxes.len().max(1);
    let mut boxes = std::mem::take(&mut out.bounding_boxes);

    for _ in 0..3 {
        if rng.chance(p) {
            let top = rng.range(0.0, 0.85);
            let h = rng.range(0.05, 0.15);
            let dy = rng.range(-0.1, 0.1);
            for b in boxes.iter_mut() {
                let c = b.y + b.height / 2.0;
                if c >= top && c < top + h {
                    b.y += dy;
                }
            }
        }
    }
    for b in boxes.iter_mut() {
        b.x += rng.normal() * 0.03 * p;
        b.y += rng.normal() * 0.03 * p;
        b.width *= (rng.normal() * 0.5 * p).exp();
        b.height *= (rng.normal() * 0.5 * p).exp();
    }
    let mut kept: Vec<BoundingBox> = Vec::with_capacity(boxes.len());
    for b in boxes.iter() {
        if !rng.chance(0.4 * p) {
            kept.push(b.clone());
        }
    }
    if kept.is_empty() && !boxes.is_empty() {
        kept.push(boxes[rng.below(boxes.len())].clone());
    }
    let mut boxes = kept;
    if !boxes.is_empty() {
        for _ in 0..n0 {
            if rng.chance(0.4 * p) {
                let src = &boxes[rng.below(boxes.len())];
                let (w, h, page) = (src.width, src.height, src.page);
                boxes.push(BoundingBox {
                    x: rng.range(0.0, (1.0 - w).max(0.0)),
                    y: rng.range(0.0, (1.0 - h).max(0.0)),
                    width: w,
                    height: h,
                    element_type: "text".into(),
                    confidence: src.confidence,
                    reading_order: 0,
                    page,
                });
            }
        }
    }

    // Flips.
    if rng.chance(0.5 * p) {
        if out.table_count > 0 || boxes.iter().any(is_table) {
            boxes.retain(|b| !is_table(b));
            out.table_count = 0;
        } else {
            let w = rng.range(0.6, 0.9);
            let h = rng.range(0.1, 0.3);
            boxes.push(BoundingBox {
                x: rng.range(0.0, 1.0 - w),
                y: rng.range(0.0, 1.0 - h),
                width: w,
                height: h,
                element_type: "table".into(),
                confidence: 0.95,
                reading_order: 0,
                page: None,
            });
            out.table_count = 1;
        }
    }
    if rng.chance(0.5 * p) {
        let pages = out.page_count.max(1);
        if pages > 1 && rng.chance(0.5) {
            let last = pages - 1;
            let before = boxes.len();
            boxes.retain(|b| b.page.unwrap_or(0) != last);
            if boxes.is_empty() && before > 0 {
                // Never empty the document: the remaining page keeps one line.
                boxes.push(BoundingBox {
                    x: 0.1,
                    y: 0.1,
                    width: 0.5,
                    height: 0.02,
                    element_type: "text".into(),
                    confidence: 0.9,
                    reading_order: 0,
                    page: None,
                });
            }
            out.page_count = last;
        } else {
            let first: Vec<BoundingBox> = boxes
                .iter()
                .filter(|b| b.page.unwrap_or(0) == 0)
                .cloned()
                .collect();
            for b in first {
                if rng.chance(0.5) {
                    boxes.push(BoundingBox {
                        page: Some(pages),
                        ..b
                    });
                }
            }
            out.page_count = pages + 1;
        }
    }
    if rng.chance(0.5 * p) {
        out.column_count = if out.column_count > 1 && rng.chance(0.5) {
            out.column_count - 1
        } else {
            out.column_count + 1
        };
    }
    if rng.chance(0.5 * p) {
        out.has_header = !out.has_header;
    }
    if rng.chance(0.5 * p) {
        out.has_footer = !out.has_footer;
    }

    for (i, b) in boxes.iter_mut().enumerate() {
        clamp_box(b);
        b.reading_order = i as i64;
    }
    let n = boxes.len() as i64;
    let ratio = n as f64 / n0 as f64;
    let ec = ((n as f64) * (rng.normal() * 0.3 * p).exp()).round() as i64;
    out.element_count = ec.clamp((n + 1) / 2, (2 * n).max(1));
    out.text_block_count =
        ((f.text_block_count as f64 * ratio).round() as i64).clamp(0, out.element_count);
    out.image_count = ((f.image_count as f64 * ratio).round() as i64).clamp(0, out.element_count);
    out.table_count = out.table_count.min(out.element_count);
    if out.table_count > 0 && !boxes.iter().any(is_table) {
        out.table_count = 0;
    }
    out.text_density = (f.text_density + rng.normal() * 0.1 * p).clamp(0.0, 1.0);
    out.layout_complexity = (f.layout_complexity + rng.normal() * 0.1 * p).clamp(0.0, 1.0);
    out.bounding_boxes = boxes;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use preflight_engine::{validate, ExtractorMetadata};

    fn base() -> StructuralFeatures {
        let mut boxes = Vec::new();
        for i in 0..40 {
            boxes.push(BoundingBox {
                x: 0.1 + (i % 2) as f64 * 0.4,
                y: 0.05 + (i / 2) as f64 * 0.045,
                width: 0.3,
                height: 0.02,
                element_type: if i == 0 {
                    "table".into()
                } else {
                    "text".into()
                },
                confidence: 0.9,
                reading_order: i,
                page: Some(i % 2),
            });
        }
        StructuralFeatures {
            element_count: 40,
            table_count: 1,
            text_block_count: 39,
            image_count: 0,
            page_count: 2,
            text_density: 0.3,
            layout_complexity: 0.4,
            column_count: 2,
            has_header: true,
            has_footer: false,
            bounding_boxes: boxes,
        }
    }

    fn ext() -> ExtractorMetadata {
        ExtractorMetadata {
            vendor: "t".into(),
            model: "m".into(),
            version: "1".into(),
            confidence: 0.9,
            latency_ms: 1.0,
            cost_usd: None,
        }
    }

    #[test]
    fn perturbed_documents_are_always_valid_and_never_broken() {
        let b = base();
        for seed in 0..300 {
            for (p, _) in LEVELS {
                let f = perturb(&b, p, &mut SplitMix64::new(seed));
                let v = validate(&f, &ext()).expect("perturbed features validate");
                assert!(
                    !v.is_broken(),
                    "seed {seed} level {p}: {:?}",
                    v.integrity_issues()
                );
            }
        }
    }

    #[test]
    fn perturbation_is_deterministic_and_grows_with_level() {
        let b = base();
        let a1 = perturb(&b, 0.3, &mut SplitMix64::new(9));
        let a2 = perturb(&b, 0.3, &mut SplitMix64::new(9));
        assert_eq!(a1, a2);
        // Mean absolute displacement of surviving boxes rises with the level.
        let disp = |p: f64| {
            let mut s = 0.0;
            for seed in 0..50 {
                let f = perturb(&b, p, &mut SplitMix64::new(seed));
                let changed = f.bounding_boxes.len() as f64 - b.bounding_boxes.len() as f64;
                s += changed.abs() + f.element_count.abs_diff(b.element_count) as f64;
            }
            s
        };
        let (d5, d15, d30, d50) = (disp(0.05), disp(0.15), disp(0.30), disp(0.50));
        assert!(d5 < d15 && d15 < d30 && d30 < d50, "{d5} {d15} {d30} {d50}");
    }

    #[test]
    fn level_zero_changes_nothing_but_order_numbers() {
        let b = base();
        let f = perturb(&b, 0.0, &mut SplitMix64::new(1));
        assert_eq!(f.bounding_boxes, b.bounding_boxes);
        assert_eq!(f.element_count, b.element_count);
    }
}
