//! Azure Form Recognizer / Document Intelligence analyze results. Two schema generations:
//! 2.x (`readResults` / `pageResults` / `documentResults`, 8-number `boundingBox` in the
//! page's `unit`) and 3.x/4.x (`pages`, `paragraphs`, `tables`, `figures`, `keyValuePairs`,
//! `documents`, with `boundingRegions` holding `polygon` or the preview's `boundingBox`).
//! Either may come wrapped in the operation envelope (`status`, `analyzeResult`) or bare.

use std::collections::HashMap;

use preflight_engine::ElementType;
use serde_json::Value;

use crate::error::AdapterError;
use crate::format::Format;
use crate::json::{arr, as_f64, num, page_index, str_of};
use crate::layout::{unit_confidence, Layout, LayoutBuilder, Mean, Rect};

const FMT: Format = Format::Azure;

/// Bounds of a flat `[x1, y1, x2, y2, ...]` polygon.
fn flat_polygon(v: Option<&Value>) -> Option<Rect> {
    let a = v?.as_array()?;
    if a.len() < 4 || a.len() % 2 != 0 {
        return None;
    }
    let nums: Option<Vec<f64>> = a.iter().map(as_f64).collect();
    let nums = nums?;
    Rect::from_points(nums.chunks(2).map(|c| (c[0], c[1])))
}

/// `polygon` (3.x GA, 4.x) or `boundingBox` (2.x, 3.x preview).
fn region_rect(v: &Value) -> Option<Rect> {
    flat_polygon(v.get("polygon")).or_else(|| flat_polygon(v.get("boundingBox")))
}

fn conf(v: &Value) -> Option<f64> {
    num(v, "confidence").and_then(|c| unit_confidence(c, 1.0))
}

/// Page sizes by 0-based index.
type Sizes = HashMap<usize, (f64, f64)>;

pub(crate) fn parse(root: &Value) -> Result<Layout, AdapterError> {
    if !root.is_object() {
        return Err(AdapterError::malformed(
            FMT,
            "the top-level value is not an object",
        ));
    }
    let ar = root.get("analyzeResult").unwrap_or(root);
    if let Some(status) = str_of(root, "status") {
        if !status.eq_ignore_ascii_case("succeeded")
            && ar.get("readResults").is_none()
            && ar.get("pages").is_none()
        {
            return Err(AdapterError::NoLayout {
                format: FMT,
                detail: "the analyze operation did not succeed (no results)".into(),
            });
        }
    }
    let mut b = LayoutBuilder::new(FMT, "azure-document-intelligence");
    if let (Some(a), Some(z)) = (
        str_of(root, "createdDateTime").and_then(crate::time::parse_rfc3339_ms),
        str_of(root, "lastUpdatedDateTime").and_then(crate::time::parse_rfc3339_ms),
    ) {
        if z >= a {
            b.latency_ms = z - a;
        }
    }
    if ar.get("readResults").is_some() {
        v2(&mut b, ar)?;
    } else if ar.get("pages").is_some() {
        v3(&mut b, ar)?;
    } else {
        return Err(AdapterError::malformed(
            FMT,
            "`analyzeResult` has neither `readResults` (2.x) nor `pages` (3.x/4.x)",
        ));
    }
    Ok(b.build())
}

fn page_size(p: &Value) -> Option<(f64, f64)> {
    Some((num(p, "width")?, num(p, "height")?))
}

fn v2(b: &mut LayoutBuilder, ar: &Value) -> Result<(), AdapterError> {
    let read = ar
        .get("readResults")
        .and_then(Value::as_array)
        .ok_or_else(|| AdapterError::malformed(FMT, "`readResults` is not an array"))?;
    b.version = str_of(ar, "version")
        .unwrap_or("2.x")
        .chars()
        .take(64)
        .collect();
    b.model = ar
        .get("documentResults")
        .and_then(|d| d.get(0))
        .and_then(|d| str_of(d, "docType").or_else(|| str_of(d, "modelId")))
        .unwrap_or("layout")
        .chars()
        .take(128)
        .collect();

    let mut sizes = Sizes::new();
    for (i, p) in read.iter().enumerate() {
        let page = b.page(page_index(p, "page").unwrap_or(i))?;
        let size = page_size(p);
        if let Some(s) = size {
            sizes.insert(page, s);
        }
        for line in arr(p, "lines") {
            let mut m = Mean::default();
            for w in arr(line, "words") {
                let c = conf(w);
                b.word_confidence(c);
                if let Some(c) = c {
                    m.add(c);
                }
            }
            b.push_scaled(
                page,
                ElementType::Text,
                flat_polygon(line.get("boundingBox")),
                size,
                m.get(),
            );
        }
        for mark in arr(p, "selectionMarks") {
            b.push_scaled(
                page,
                ElementType::SelectionMark,
                flat_polygon(mark.get("boundingBox")),
                size,
                conf(mark),
            );
        }
    }
    for (i, pr) in arr(ar, "pageResults").iter().enumerate() {
        let page = b.page(page_index(pr, "page").unwrap_or(i))?;
        let size = sizes.get(&page).copied();
        for table in arr(pr, "tables") {
            // 2.0 tables have no box of their own: use the union of their cells.
            let rect = flat_polygon(table.get("boundingBox")).or_else(|| {
                arr(table, "cells")
                    .iter()
                    .filter_map(|c| flat_polygon(c.get("boundingBox")))
                    .reduce(Rect::union)
            });
            let mut m = Mean::default();
            for c in arr(table, "cells").iter().filter_map(conf) {
                m.add(c);
            }
            b.push_scaled(page, ElementType::Table, rect, size, m.get());
        }
        for kv in arr(pr, "keyValuePairs") {
            let c = conf(kv);
            for (k, kind) in [("key", ElementType::Key), ("value", ElementType::Value)] {
                if let Some(part) = kv.get(k) {
                    if part.get("boundingBox").is_some() {
                        b.push_scaled(page, kind, flat_polygon(part.get("boundingBox")), size, c);
                    }
                }
            }
        }
    }
    for doc in arr(ar, "documentResults") {
        if let Some(fields) = doc.get("fields").and_then(Value::as_object) {
            for f in fields.values() {
                v2_field(b, f, &sizes)?;
            }
        }
    }
    Ok(())
}

/// Calls `leaf` on every field without children. Arrays and objects are walked so list
/// items (invoice line items) count like flat fields; both schema generations nest the same.
fn for_each_leaf_field(
    f: &Value,
    depth: usize,
    leaf: &mut dyn FnMut(&Value) -> Result<(), AdapterError>,
) -> Result<(), AdapterError> {
    if depth > 16 || !f.is_object() {
        return Ok(());
    }
    let mut children = false;
    for item in arr(f, "valueArray") {
        children = true;
        for_each_leaf_field(item, depth + 1, leaf)?;
    }
    if let Some(obj) = f.get("valueObject").and_then(Value::as_object) {
        for v in obj.values() {
            children = true;
            for_each_leaf_field(v, depth + 1, leaf)?;
        }
    }
    if !children {
        leaf(f)?;
    }
    Ok(())
}

/// Located v2 fields (leaves with `boundingBox` and `page`) become `value` boxes.
fn v2_field(b: &mut LayoutBuilder, f: &Value, sizes: &Sizes) -> Result<(), AdapterError> {
    for_each_leaf_field(f, 0, &mut |leaf| {
        if leaf.get("boundingBox").is_some() {
            if let Some(page) = page_index(leaf, "page") {
                let page = b.page(page)?;
                let size = sizes.get(&page).copied();
                b.push_scaled(
                    page,
                    ElementType::Value,
                    flat_polygon(leaf.get("boundingBox")),
                    size,
                    conf(leaf),
                );
            }
        }
        Ok(())
    })
}

fn v3(b: &mut LayoutBuilder, ar: &Value) -> Result<(), AdapterError> {
    let pages = ar
        .get("pages")
        .and_then(Value::as_array)
        .ok_or_else(|| AdapterError::malformed(FMT, "`pages` is not an array"))?;
    b.version = str_of(ar, "apiVersion")
        .unwrap_or("3.x")
        .chars()
        .take(64)
        .collect();
    b.model = str_of(ar, "modelId")
        .unwrap_or("unknown")
        .chars()
        .take(128)
        .collect();

    let mut sizes = Sizes::new();
    for (i, p) in pages.iter().enumerate() {
        let page = b.page(page_index(p, "pageNumber").unwrap_or(i))?;
        let size = page_size(p);
        if let Some(s) = size {
            sizes.insert(page, s);
        }
        // Lines carry no confidence in 3.x: average the words inside each line's spans.
        let mut words: Vec<(f64, Option<f64>)> = arr(p, "words")
            .iter()
            .filter_map(|w| {
                let c = conf(w);
                b.word_confidence(c);
                Some((num(w.get("span")?, "offset")?, c))
            })
            .collect();
        words.sort_by(|a, b| a.0.total_cmp(&b.0));
        for line in arr(p, "lines") {
            let mut m = Mean::default();
            for span in arr(line, "spans") {
                let (Some(off), Some(len)) = (num(span, "offset"), num(span, "length")) else {
                    continue;
                };
                let start = words.partition_point(|w| w.0 < off);
                for w in words[start..].iter().take_while(|w| w.0 < off + len) {
                    if let Some(c) = w.1 {
                        m.add(c);
                    }
                }
            }
            b.push_scaled(page, ElementType::Text, region_rect(line), size, m.get());
        }
        for mark in arr(p, "selectionMarks") {
            b.push_scaled(
                page,
                ElementType::SelectionMark,
                region_rect(mark),
                size,
                conf(mark),
            );
        }
        for code in arr(p, "barcodes") {
            b.push_scaled(
                page,
                ElementType::Barcode,
                region_rect(code),
                size,
                conf(code),
            );
        }
        for formula in arr(p, "formulas") {
            b.push_scaled(
                page,
                ElementType::Formula,
                region_rect(formula),
                size,
                conf(formula),
            );
        }
    }

    for para in arr(ar, "paragraphs") {
        // Role-less paragraphs are running text already covered by lines.
        let kind = match str_of(para, "role") {
            Some("title") => ElementType::Title,
            Some("sectionHeading") => ElementType::Heading,
            Some("pageHeader") => ElementType::Header,
            Some("pageFooter") => ElementType::Footer,
            Some("pageNumber") => ElementType::PageNumber,
            Some("formulaBlock") => ElementType::Formula,
            _ => continue,
        };
        regions(b, para, kind, &sizes, None)?;
    }
    for table in arr(ar, "tables") {
        let mut m = Mean::default();
        for c in arr(table, "cells").iter().filter_map(conf) {
            m.add(c);
        }
        regions(b, table, ElementType::Table, &sizes, m.get())?;
    }
    for fig in arr(ar, "figures") {
        regions(b, fig, ElementType::Figure, &sizes, conf(fig))?;
    }
    for kv in arr(ar, "keyValuePairs") {
        let c = conf(kv);
        if let Some(k) = kv.get("key") {
            regions(b, k, ElementType::Key, &sizes, c)?;
        }
        if let Some(v) = kv.get("value") {
            regions(b, v, ElementType::Value, &sizes, c)?;
        }
    }
    for doc in arr(ar, "documents") {
        if let Some(fields) = doc.get("fields").and_then(Value::as_object) {
            for f in fields.values() {
                v3_field(b, f, &sizes)?;
            }
        }
    }
    Ok(())
}

/// One box per `boundingRegions` entry (an element split across pages has several).
fn regions(
    b: &mut LayoutBuilder,
    v: &Value,
    kind: ElementType,
    sizes: &Sizes,
    confidence: Option<f64>,
) -> Result<(), AdapterError> {
    for region in arr(v, "boundingRegions") {
        let page = b.page(page_index(region, "pageNumber").unwrap_or(0))?;
        b.push_scaled(
            page,
            kind,
            region_rect(region),
            sizes.get(&page).copied(),
            confidence.or_else(|| conf(v)),
        );
    }
    Ok(())
}

fn v3_field(b: &mut LayoutBuilder, f: &Value, sizes: &Sizes) -> Result<(), AdapterError> {
    for_each_leaf_field(f, 0, &mut |leaf| {
        regions(b, leaf, ElementType::Value, sizes, conf(leaf))
    })
}
