//! Derived features: everything in `StructuralFeatures` besides the boxes themselves is
//! computed here from the geometry, identically for every vendor. The definitions are the
//! ones in docs/features.md ("Derived features"); keep the two in step.

use std::collections::BTreeMap;

use preflight_engine::{
    layout_fingerprint, BoundingBox, ElementType, ExtractorMetadata, StructuralFeatures,
};

use crate::format::Format;
use crate::layout::{Element, Layout, Rect};
use crate::AdapterOutput;

/// The engine refuses documents with more boxes than this (`validate::MAX_BOXES`).
const ENGINE_MAX_BOXES: usize = 10_000;

/// Bins of the horizontal projection used for column detection (1% of the page width each).
const COLUMN_BINS: usize = 100;
/// Share of a page's text lines allowed to cross a gutter (full-width titles, rules of text).
const GUTTER_TOLERANCE: f64 = 0.05;
/// A gutter must be at least this many empty bins wide (2% of the page width).
const MIN_GUTTER_BINS: usize = 2;
/// A column must hold the centres of at least this share of the page's lines (and 3 lines).
const MIN_COLUMN_SHARE: f64 = 0.10;
const MIN_COLUMN_LINES: usize = 3;

/// Header/footer band: the header's content must end above this line (footer: start below
/// 1 − this) ...
const MARGIN_BAND: f64 = 0.15;
/// ... and be separated from the body by an empty gap of at least this (page units) ...
const MIN_MARGIN_GAP: f64 = 0.02;
/// ... or this many median line heights, whichever is larger.
const MARGIN_GAP_LINES: f64 = 1.5;

/// Bins for the left-edge alignment histogram of `layout_complexity`.
const ALIGN_BINS: usize = 20;

/// Turns a parsed layout into the public output.
pub(crate) fn finish(format: Format, mut layout: Layout) -> AdapterOutput {
    // Vendor order within a page, pages in order: a stable sort keeps the vendor's sequence.
    layout.elements.sort_by_key(|e| e.page);
    let elements = &layout.elements;
    let mut warnings = layout.warnings;

    let vendor_conf = {
        let mut m = crate::layout::Mean::default();
        for c in elements.iter().filter_map(|e| e.confidence) {
            m.add(c);
        }
        m.get()
    };
    let doc_confidence = layout.word_confidence.or(vendor_conf);
    let missing = elements.iter().filter(|e| e.confidence.is_none()).count();
    if missing > 0 {
        warnings.push(format!(
            "{missing} elements carry no vendor confidence: the document's mean confidence was used (1.0 when it has none)"
        ));
    }
    let fallback = doc_confidence.unwrap_or(1.0);

    let bounding_boxes: Vec<BoundingBox> = elements
        .iter()
        .enumerate()
        .map(|(i, e)| BoundingBox {
            x: e.rect.x0,
            y: e.rect.y0,
            width: e.rect.width(),
            height: e.rect.height(),
            element_type: e.kind.as_str().to_string(),
            confidence: e.confidence.unwrap_or(fallback),
            reading_order: i as i64,
            page: Some(e.page as i64),
        })
        .collect();
    if bounding_boxes.len() > ENGINE_MAX_BOXES {
        warnings.push(format!(
            "{} boxes exceed the engine's limit of {ENGINE_MAX_BOXES} boxes per document",
            bounding_boxes.len()
        ));
    }
    if elements.is_empty() {
        warnings.push("no layout elements found".to_string());
    }

    let count = |k: ElementType| elements.iter().filter(|e| e.kind == k).count() as i64;
    let pages = by_page(elements);
    let page_count = layout.page_count;

    let features = StructuralFeatures {
        element_count: bounding_boxes.len() as i64,
        table_count: count(ElementType::Table),
        text_block_count: count(ElementType::Text),
        image_count: count(ElementType::Figure),
        page_count: page_count as i64,
        text_density: text_density(&pages, page_count),
        layout_complexity: layout_complexity(elements),
        column_count: column_count(&pages),
        has_header: count(ElementType::Header) > 0 || margin_rule(&pages, Edge::Top),
        has_footer: count(ElementType::Footer) > 0 || margin_rule(&pages, Edge::Bottom),
        bounding_boxes,
    };
    let extractor_metadata = ExtractorMetadata {
        vendor: layout.vendor,
        model: layout.model,
        version: layout.version,
        confidence: doc_confidence.unwrap_or(0.0),
        latency_ms: layout.latency_ms,
        cost_usd: None,
    };
    AdapterOutput {
        format,
        pages: page_count,
        layout_fingerprint: layout_fingerprint(&features),
        structural_features: features,
        extractor_metadata,
        warnings,
    }
}

/// Text-line rectangles per page (pages without text lines are absent).
fn by_page(elements: &[Element]) -> BTreeMap<usize, Vec<Rect>> {
    let mut m: BTreeMap<usize, Vec<Rect>> = BTreeMap::new();
    for e in elements.iter().filter(|e| e.kind == ElementType::Text) {
        m.entry(e.page).or_default().push(e.rect);
    }
    m
}

/// Mean over all pages of the share of the page covered by the union of its text lines.
fn text_density(pages: &BTreeMap<usize, Vec<Rect>>, page_count: usize) -> f64 {
    if page_count == 0 {
        return 0.0;
    }
    // `fold` from +0.0: an empty `sum` of floats is −0.0.
    let total = pages
        .values()
        .map(|r| union_area(r))
        .fold(0.0, |a, b| a + b);
    (total / page_count as f64).clamp(0.0, 1.0)
}

/// Exact area of a union of rectangles: sweep over the distinct x edges and merge the
/// y-intervals of the rectangles spanning each strip. O(n² log n), fine for page sizes.
pub(crate) fn union_area(rects: &[Rect]) -> f64 {
    let mut xs: Vec<f64> = rects.iter().flat_map(|r| [r.x0, r.x1]).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let mut area = 0.0;
    let mut spans: Vec<(f64, f64)> = Vec::new();
    for w in xs.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b <= a {
            continue;
        }
        spans.clear();
        spans.extend(
            rects
                .iter()
                .filter(|r| r.x0 <= a && r.x1 >= b)
                .map(|r| (r.y0, r.y1)),
        );
        if spans.is_empty() {
            continue;
        }
        spans.sort_by(|p, q| p.0.total_cmp(&q.0));
        let mut covered = 0.0;
        let (mut lo, mut hi) = spans[0];
        for &(s, e) in &spans[1..] {
            if s > hi {
                covered += hi - lo;
                lo = s;
                hi = e;
            } else {
                hi = hi.max(e);
            }
        }
        covered += hi - lo;
        area += (b - a) * covered;
    }
    area
}

/// Normalized Shannon entropy of a histogram (0 for fewer than two non-empty bins).
fn entropy(counts: impl IntoIterator<Item = usize>, bins: usize) -> f64 {
    let counts: Vec<usize> = counts.into_iter().filter(|&c| c > 0).collect();
    let n: usize = counts.iter().sum();
    if counts.len() < 2 || bins < 2 {
        return 0.0;
    }
    let h: f64 = counts
        .iter()
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.ln()
        })
        .sum();
    (h / (bins as f64).ln()).clamp(0.0, 1.0)
}

/// Mean of (a) the entropy of the element-type mix, normalized by the 17 engine types, and
/// (b) the entropy of the boxes' left edges in 20 bins of page width. Prose (one type, one
/// left margin) scores near 0; forms with many types and alignments score high.
fn layout_complexity(elements: &[Element]) -> f64 {
    if elements.is_empty() {
        return 0.0;
    }
    let mut types: BTreeMap<ElementType, usize> = BTreeMap::new();
    let mut align = [0usize; ALIGN_BINS];
    for e in elements {
        *types.entry(e.kind).or_default() += 1;
        let bin = ((e.rect.x0 * ALIGN_BINS as f64) as usize).min(ALIGN_BINS - 1);
        align[bin] += 1;
    }
    let h_type = entropy(types.into_values(), ElementType::ALL.len());
    let h_align = entropy(align, ALIGN_BINS);
    (h_type + h_align) / 2.0
}

/// Columns of one page from the horizontal projection of its text lines.
fn page_columns(lines: &[Rect]) -> usize {
    let n = lines.len();
    if n == 0 {
        return 0;
    }
    let bin_of = |x: f64| ((x * COLUMN_BINS as f64) as usize).min(COLUMN_BINS - 1);
    let mut coverage = [0usize; COLUMN_BINS];
    for r in lines {
        for c in &mut coverage[bin_of(r.x0)..=bin_of(r.x1)] {
            *c += 1;
        }
    }
    let tolerance = (GUTTER_TOLERANCE * n as f64).floor() as usize;
    // Occupied runs, merging those separated by gaps narrower than a gutter.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut b = 0;
    while b < COLUMN_BINS {
        if coverage[b] > tolerance {
            let start = b;
            while b < COLUMN_BINS && coverage[b] > tolerance {
                b += 1;
            }
            match runs.last_mut() {
                Some(last) if start - last.1 < MIN_GUTTER_BINS + 1 => last.1 = b - 1,
                _ => runs.push((start, b - 1)),
            }
        } else {
            b += 1;
        }
    }
    let min_support = MIN_COLUMN_LINES.max((MIN_COLUMN_SHARE * n as f64).ceil() as usize);
    let supported = runs
        .iter()
        .filter(|(s, e)| {
            lines
                .iter()
                .filter(|r| (*s..=*e).contains(&bin_of((r.x0 + r.x1) / 2.0)))
                .count()
                >= min_support
        })
        .count();
    supported.max(1)
}

/// The most frequent per-page column count over pages with text (ties: the larger).
fn column_count(pages: &BTreeMap<usize, Vec<Rect>>) -> i64 {
    let mut freq: BTreeMap<usize, usize> = BTreeMap::new();
    for lines in pages.values() {
        *freq.entry(page_columns(lines)).or_default() += 1;
    }
    freq.into_iter()
        .max_by_key(|&(cols, n)| (n, cols))
        .map_or(0, |(cols, _)| cols as i64)
}

#[derive(Clone, Copy)]
enum Edge {
    Top,
    Bottom,
}

/// Whether a page has text in its top (bottom) band separated from the body by a gap.
fn page_margin(lines: &[Rect], edge: Edge) -> bool {
    if lines.len() < 3 {
        return false;
    }
    // Flip the page for the footer so one sweep serves both edges.
    let mut spans: Vec<(f64, f64)> = lines
        .iter()
        .map(|r| match edge {
            Edge::Top => (r.y0, r.y1),
            Edge::Bottom => (1.0 - r.y1, 1.0 - r.y0),
        })
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut heights: Vec<f64> = lines.iter().map(Rect::height).collect();
    heights.sort_by(f64::total_cmp);
    let median = heights[heights.len() / 2];
    let min_gap = MIN_MARGIN_GAP.max(MARGIN_GAP_LINES * median);
    let mut bottom = spans[0].1;
    for (i, &(start, end)) in spans.iter().enumerate().skip(1) {
        if bottom > MARGIN_BAND {
            return false;
        }
        // At least two lines must remain below for the rest to count as a body.
        if start - bottom >= min_gap && spans.len() - i >= 2 {
            return true;
        }
        bottom = bottom.max(end);
    }
    false
}

/// The margin rule holds on at least half of the pages that have text.
fn margin_rule(pages: &BTreeMap<usize, Vec<Rect>>, edge: Edge) -> bool {
    let with_text = pages.len();
    let hits = pages.values().filter(|l| page_margin(l, edge)).count();
    with_text > 0 && 2 * hits >= with_text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(x0: f64, y0: f64, x1: f64, y1: f64) -> Rect {
        Rect { x0, y0, x1, y1 }
    }

    #[test]
    fn union_area_counts_overlap_once() {
        assert!(
            (union_area(&[r(0.0, 0.0, 0.5, 0.5), r(0.25, 0.25, 0.75, 0.75)]) - 0.4375).abs()
                < 1e-12
        );
        assert!((union_area(&[r(0.0, 0.0, 1.0, 1.0), r(0.2, 0.2, 0.3, 0.3)]) - 1.0).abs() < 1e-12);
        assert_eq!(union_area(&[]), 0.0);
    }

    fn column_lines(starts: &[f64], width: f64, n: usize) -> Vec<Rect> {
        let mut v = Vec::new();
        for i in 0..n {
            let y = 0.1 + 0.8 * i as f64 / n as f64;
            for &x in starts {
                v.push(r(x, y, x + width, y + 0.01));
            }
        }
        v
    }

    #[test]
    fn columns_follow_gutters() {
        assert_eq!(page_columns(&column_lines(&[0.1], 0.8, 30)), 1);
        assert_eq!(page_columns(&column_lines(&[0.08, 0.53], 0.4, 30)), 2);
        assert_eq!(
            page_columns(&column_lines(&[0.05, 0.37, 0.69], 0.27, 30)),
            3
        );
        // One full-width title crossing the gutter does not merge the columns.
        let mut lines = column_lines(&[0.08, 0.53], 0.4, 30);
        lines.push(r(0.08, 0.05, 0.93, 0.08));
        assert_eq!(page_columns(&lines), 2);
        assert_eq!(page_columns(&[]), 0);
    }

    #[test]
    fn header_needs_a_gap_below_the_top_band() {
        let mut body = column_lines(&[0.1], 0.8, 30);
        assert!(!page_margin(&body, Edge::Top));
        body.push(r(0.1, 0.02, 0.4, 0.04));
        assert!(page_margin(&body, Edge::Top));
        assert!(!page_margin(&body, Edge::Bottom));
        body.push(r(0.4, 0.96, 0.6, 0.98));
        assert!(page_margin(&body, Edge::Bottom));
    }

    #[test]
    fn complexity_separates_prose_from_forms() {
        let prose: Vec<Element> = column_lines(&[0.1], 0.8, 40)
            .into_iter()
            .map(|rect| Element {
                page: 0,
                kind: ElementType::Text,
                rect,
                confidence: None,
            })
            .collect();
        let kinds = [
            ElementType::Text,
            ElementType::Key,
            ElementType::Value,
            ElementType::SelectionMark,
            ElementType::Table,
        ];
        let form: Vec<Element> = (0..40)
            .map(|i| Element {
                page: 0,
                kind: kinds[i % kinds.len()],
                rect: r(
                    (i % 17) as f64 / 20.0,
                    i as f64 / 45.0,
                    (i % 17) as f64 / 20.0 + 0.05,
                    i as f64 / 45.0 + 0.01,
                ),
                confidence: None,
            })
            .collect();
        let (p, f) = (layout_complexity(&prose), layout_complexity(&form));
        assert!(p < 0.05, "{p}");
        assert!(f > 0.5, "{f}");
        assert!(f <= 1.0);
    }
}
