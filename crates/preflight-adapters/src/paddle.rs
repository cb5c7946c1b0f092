//! PaddleOCR 2.x `ocr()` and RapidOCR line results: a list of text lines, each
//! `[[[x, y] × 4], "text", score]` (RapidOCR) or `[[[x, y] × 4], ["text", score]]`
//! (PaddleOCR), optionally wrapped in one list per page (PaddleOCR returns `[lines]` per
//! image, `null` for a page without text). Coordinates are pixels and the page size is not
//! part of the output: it comes from [`crate::AdapterOptions::page_size`] or is estimated
//! (see [`crate::layout::estimate_page_size`]).

use preflight_engine::ElementType;
use serde_json::Value;

use crate::error::AdapterError;
use crate::format::Format;
use crate::json::as_f64;
use crate::layout::{estimate_page_size, Layout, LayoutBuilder, Rect};
use crate::PageSize;

const FMT: Format = Format::Paddleocr;

fn polygon(v: &Value) -> Option<Rect> {
    let pts = v.as_array()?;
    if pts.len() < 2 {
        return None;
    }
    let pts: Option<Vec<(f64, f64)>> = pts
        .iter()
        .map(|p| {
            let p = p.as_array()?;
            (p.len() == 2).then_some(())?;
            Some((as_f64(&p[0])?, as_f64(&p[1])?))
        })
        .collect();
    Rect::from_points(pts?)
}

/// `[poly, "text", score]` or `[poly, ["text", score]]`.
pub(crate) fn looks_like_line(a: &[Value]) -> bool {
    let poly_ok = a.first().and_then(Value::as_array).is_some_and(|p| {
        p.first()
            .and_then(Value::as_array)
            .is_some_and(|pt| pt.len() == 2)
    });
    let rest_ok = match a.len() {
        3 => a[1].is_string() && a[2].is_number(),
        2 => a[1]
            .as_array()
            .is_some_and(|ts| ts.len() == 2 && ts[0].is_string() && ts[1].is_number()),
        _ => false,
    };
    poly_ok && rest_ok
}

/// A page: a list whose items are all lines (an empty page is `[]` or `null`).
pub(crate) fn looks_like_page(a: &[Value]) -> bool {
    !a.is_empty()
        && a.iter()
            .all(|l| l.as_array().is_some_and(|l| looks_like_line(l)))
}

/// Bounds and score of one line.
fn line(v: &Value) -> Result<(Option<Rect>, Option<f64>), AdapterError> {
    let a = v.as_array().filter(|a| looks_like_line(a)).ok_or_else(|| {
        AdapterError::malformed(FMT, "an item is not a [polygon, text, score] line")
    })?;
    let score = match a.len() {
        3 => as_f64(&a[2]),
        _ => a[1].get(1).and_then(as_f64),
    };
    Ok((polygon(&a[0]), score.map(|s| s.clamp(0.0, 1.0))))
}

pub(crate) fn parse(root: &Value, page_size: Option<PageSize>) -> Result<Layout, AdapterError> {
    let items = root
        .as_array()
        .ok_or_else(|| AdapterError::malformed(FMT, "the top-level value is not a list"))?;
    // A list of pages when every item is null or a list of lines; otherwise a list of lines.
    let paged = !items.is_empty()
        && items.iter().all(|it| {
            it.is_null()
                || it
                    .as_array()
                    .is_some_and(|a| a.is_empty() || looks_like_page(a))
        })
        && !items
            .iter()
            .any(|it| it.as_array().is_some_and(|a| looks_like_line(a)));
    let pages: Vec<&[Value]> = if paged {
        items
            .iter()
            .map(|p| p.as_array().map(Vec::as_slice).unwrap_or(&[]))
            .collect()
    } else {
        vec![items.as_slice()]
    };

    let mut b = LayoutBuilder::new(FMT, "paddleocr");
    b.model = "pp-ocr".into();
    b.declare_pages(pages.len())?;
    for (page, lines) in pages.into_iter().enumerate() {
        let parsed: Vec<(Option<Rect>, Option<f64>)> =
            lines.iter().map(line).collect::<Result<_, _>>()?;
        if parsed.is_empty() {
            continue;
        }
        let size = match page_size {
            Some(p) => Some((p.width, p.height)),
            None => {
                b.estimated_page();
                estimate_page_size(parsed.iter().filter_map(|l| l.0))
            }
        };
        for (rect, score) in parsed {
            // No word level: the line scores are the document's word confidences.
            b.word_confidence(score);
            b.push_scaled(page, ElementType::Text, rect, size, score);
        }
    }
    Ok(b.build())
}
