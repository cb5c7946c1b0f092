//! Google Document AI `Document` JSON (any processor that returns page layout: OCR, Form
//! Parser, Invoice Parser, ...) and Cloud Vision `images:annotate` / `files:annotate`
//! responses with `fullTextAnnotation`. Document AI Layout Parser output (`documentLayout`)
//! and splitter/classifier/quality output carry no page geometry: they give
//! [`AdapterError::NoLayout`] rather than a misleading empty layout.

use preflight_engine::ElementType;
use serde_json::Value;

use crate::error::AdapterError;
use crate::format::Format;
use crate::json::{arr, num, str_of};
use crate::layout::{unit_confidence, Layout, LayoutBuilder, Rect};

const FMT: Format = Format::Google;

/// Bounds of `vertices` (pixels) or `normalizedVertices`. Protobuf JSON omits zero
/// coordinates, so a missing `x`/`y` is 0.
fn vertices(v: Option<&Value>) -> Option<Rect> {
    let a = v?.as_array()?;
    if a.is_empty() {
        return None;
    }
    Rect::from_points(
        a.iter()
            .map(|p| (num(p, "x").unwrap_or(0.0), num(p, "y").unwrap_or(0.0))),
    )
}

fn push_layout(
    b: &mut LayoutBuilder,
    page: usize,
    kind: ElementType,
    layout: Option<&Value>,
    size: Option<(f64, f64)>,
) {
    let Some(layout) = layout else {
        b.push(page, kind, None, None);
        return;
    };
    let c = num(layout, "confidence").and_then(|c| unit_confidence(c, 1.0));
    match poly_rect(layout.get("boundingPoly")) {
        Some((r, true)) => b.push(page, kind, Some(r), c),
        // Pixel vertices: without a page size the element is dropped and counted.
        Some((r, false)) => b.push_scaled(page, kind, Some(r), size, c),
        None => b.push(page, kind, None, c),
    }
}

pub(crate) fn parse(root: &Value) -> Result<Layout, AdapterError> {
    if !root.is_object() {
        return Err(AdapterError::malformed(
            FMT,
            "the top-level value is not an object",
        ));
    }
    if root.get("responses").is_some() || root.get("fullTextAnnotation").is_some() {
        return vision(root);
    }
    let Some(pages) = root.get("pages") else {
        let detail = if root.get("documentLayout").is_some() {
            "Document AI Layout Parser output: `documentLayout` blocks have no bounding boxes"
        } else {
            "a Document AI `Document` without `pages`"
        };
        return Err(AdapterError::NoLayout {
            format: FMT,
            detail: detail.into(),
        });
    };
    let pages = pages
        .as_array()
        .ok_or_else(|| AdapterError::malformed(FMT, "`pages` is not an array"))?;

    const ELEMENT_KEYS: [&str; 9] = [
        "blocks",
        "paragraphs",
        "lines",
        "tokens",
        "tables",
        "formFields",
        "visualElements",
        "detectedBarcodes",
        "symbols",
    ];
    let has_layout = pages.iter().any(|p| {
        p.get("dimension").is_some() || ELEMENT_KEYS.iter().any(|k| !arr(p, k).is_empty())
    });
    if !pages.is_empty() && !has_layout {
        return Err(AdapterError::NoLayout {
            format: FMT,
            detail: "the pages carry neither `dimension` nor layout elements \
                     (splitter, classifier or quality processor output)"
                .into(),
        });
    }

    let mut b = LayoutBuilder::new(FMT, "google-document-ai");
    if let Some(p) = arr(root, "revisions")
        .iter()
        .find_map(|r| str_of(r, "processor"))
    {
        // `projects/<project>/locations/<loc>/processors/<id>[/processorVersions/<v>]`: keep
        // the processor part, not the customer's project.
        let p = p.split_once("/processors/").map_or(p, |(_, rest)| rest);
        b.model = p.chars().take(128).collect();
    }
    for (i, p) in pages.iter().enumerate() {
        // Shards number pages across the whole document; the position in this file is the
        // page index of what we were given.
        let page = b.page(i)?;
        let size = p
            .get("dimension")
            .and_then(|d| Some((num(d, "width")?, num(d, "height")?)))
            .or_else(|| {
                p.get("image")
                    .and_then(|d| Some((num(d, "width")?, num(d, "height")?)))
            });
        for t in arr(p, "tokens") {
            b.word_confidence(
                t.get("layout")
                    .and_then(|l| num(l, "confidence"))
                    .and_then(|c| unit_confidence(c, 1.0)),
            );
        }
        // Lines are the text granularity; older outputs without lines fall back to paragraphs.
        let text = if arr(p, "lines").is_empty() {
            "paragraphs"
        } else {
            "lines"
        };
        for l in arr(p, text) {
            push_layout(&mut b, page, ElementType::Text, l.get("layout"), size);
        }
        for t in arr(p, "tables") {
            push_layout(&mut b, page, ElementType::Table, t.get("layout"), size);
        }
        for f in arr(p, "formFields") {
            if f.get("fieldName").is_some() {
                push_layout(&mut b, page, ElementType::Key, f.get("fieldName"), size);
            }
            if f.get("fieldValue").is_some() {
                push_layout(&mut b, page, ElementType::Value, f.get("fieldValue"), size);
            }
        }
        for v in arr(p, "visualElements") {
            let kind = match str_of(v, "type") {
                Some("filled_checkbox" | "unfilled_checkbox") => ElementType::SelectionMark,
                Some("math_formula") => ElementType::Formula,
                Some("image" | "figure" | "picture") => ElementType::Figure,
                _ => {
                    b.skipped_unknown();
                    continue;
                }
            };
            push_layout(&mut b, page, kind, v.get("layout"), size);
        }
        for bc in arr(p, "detectedBarcodes") {
            push_layout(&mut b, page, ElementType::Barcode, bc.get("layout"), size);
        }
    }
    Ok(b.build())
}

/// Cloud Vision: `responses[].fullTextAnnotation.pages[]` (one response per image, or per
/// page of a file), blocks → paragraphs → words. Vision has no line objects: a line ends at
/// a word whose last symbol carries a line-ending `detectedBreak`, or at a paragraph's end.
fn vision(root: &Value) -> Result<Layout, AdapterError> {
    let responses: Vec<&Value> = match root.get("responses") {
        Some(Value::Array(r)) => r.iter().collect(),
        Some(_) => return Err(AdapterError::malformed(FMT, "`responses` is not an array")),
        None => vec![root],
    };
    let mut b = LayoutBuilder::new(FMT, "google-cloud-vision");
    b.model = "images:annotate".into();
    let mut any = false;
    let mut index = 0usize;
    for resp in responses {
        let Some(fta) = resp.get("fullTextAnnotation") else {
            continue;
        };
        any = true;
        for p in arr(fta, "pages") {
            let page = b.page(index)?;
            index += 1;
            let size = Some((
                num(p, "width").unwrap_or(0.0),
                num(p, "height").unwrap_or(0.0),
            ))
            .filter(|(w, h)| *w > 0.0 && *h > 0.0);
            for block in arr(p, "blocks") {
                let kind = match str_of(block, "blockType") {
                    Some("TABLE") => Some(ElementType::Table),
                    Some("PICTURE") => Some(ElementType::Figure),
                    Some("BARCODE") => Some(ElementType::Barcode),
                    _ => None,
                };
                if let Some(kind) = kind {
                    vision_box(
                        &mut b,
                        page,
                        kind,
                        block.get("boundingBox"),
                        size,
                        num(block, "confidence"),
                    );
                    continue;
                }
                for para in arr(block, "paragraphs") {
                    let mut line: Option<(Rect, bool, crate::layout::Mean)> = None;
                    let words = arr(para, "words");
                    for (wi, w) in words.iter().enumerate() {
                        let c = num(w, "confidence").and_then(|c| unit_confidence(c, 1.0));
                        b.word_confidence(c);
                        let Some((r, norm)) = poly_rect(w.get("boundingBox")) else {
                            continue;
                        };
                        let entry = line.get_or_insert((r, norm, Default::default()));
                        entry.0 = entry.0.union(r);
                        if let Some(c) = c {
                            entry.2.add(c);
                        }
                        let ends_line = arr(w, "symbols")
                            .last()
                            .and_then(|s| s.get("property"))
                            .and_then(|p| p.get("detectedBreak"))
                            .and_then(|d| str_of(d, "type"))
                            .is_some_and(|t| {
                                matches!(t, "EOL_SURE_SPACE" | "LINE_BREAK" | "HYPHEN")
                            });
                        if ends_line || wi + 1 == words.len() {
                            if let Some((r, norm, m)) = line.take() {
                                if norm {
                                    b.push(page, ElementType::Text, Some(r), m.get());
                                } else {
                                    b.push_scaled(page, ElementType::Text, Some(r), size, m.get());
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    if !any {
        return Err(AdapterError::NoLayout {
            format: FMT,
            detail: "a Cloud Vision response without `fullTextAnnotation` \
                     (request TEXT_DETECTION or DOCUMENT_TEXT_DETECTION)"
                .into(),
        });
    }
    Ok(b.build())
}

/// A `boundingPoly`/`boundingBox` and whether it is normalized (`normalizedVertices`, 0..1)
/// rather than pixel `vertices`.
fn poly_rect(poly: Option<&Value>) -> Option<(Rect, bool)> {
    let poly = poly?;
    if let Some(r) = vertices(poly.get("normalizedVertices")) {
        return Some((r, true));
    }
    Some((vertices(poly.get("vertices"))?, false))
}

fn vision_box(
    b: &mut LayoutBuilder,
    page: usize,
    kind: ElementType,
    poly: Option<&Value>,
    size: Option<(f64, f64)>,
    confidence: Option<f64>,
) {
    let c = confidence.and_then(|c| unit_confidence(c, 1.0));
    match poly_rect(poly) {
        Some((r, true)) => b.push(page, kind, Some(r), c),
        Some((r, false)) => b.push_scaled(page, kind, Some(r), size, c),
        None => b.push(page, kind, None, c),
    }
}
