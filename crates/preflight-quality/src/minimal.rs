//! A second, deliberately minimal converter from extractor output to structural features,
//! written from the formats' documentation and the original PreFlight wire schema, sharing
//! no code with `preflight-adapters`.
//!
//! Why it exists (issue #14, protocol f): every number of the benchmark used to come from
//! features our own adapters computed, so an adapter choice that happens to suit the engine
//! (or an engine quirk the adapters happen to avoid) was invisible. A client with its own
//! converter sends something else. This one makes the obvious choices and nothing more:
//!
//! * one `text` box per text **line** (Azure `lines`, Textract `LINE`, Tesseract TSV level 4
//!   with at least one word), one `table` box per table (Azure tables: the union of the
//!   cells; Textract `TABLE`), one `checkbox` per selection mark (Azure `selectionMarks`,
//!   Textract `SELECTION_ELEMENT`), Textract `KEY_VALUE_SET` as `key` / `value`;
//! * box = the axis-aligned hull of the polygon divided by the page size, clamped to the
//!   page; a box with no area is skipped;
//! * `element_count` = boxes, `text_block_count` = text lines, `table_count` = tables,
//!   `image_count` 0, `column_count` 1, no header/footer flags;
//! * `text_density` = summed text-box area (capped at 1); `layout_complexity` = share of
//!   non-text boxes;
//! * confidence: the element's own (Textract 0–100 scaled, Tesseract mean word `conf`), else
//!   the mean of its words, else 1.
//!
//! It is *not* meant to be good; it is meant to be different in the ways real clients are.

use preflight_engine::{BoundingBox, ExtractorMetadata, StructuralFeatures};
use serde_json::Value;

/// Builder of one document's features.
#[derive(Default)]
struct Acc {
    boxes: Vec<BoundingBox>,
    pages: i64,
    tables: i64,
    lines: i64,
}

impl Acc {
    /// Adds a box from page-unit hull `[x0, y0, x1, y1]` on a `w`×`h` page.
    fn push(&mut self, hull: [f64; 4], w: f64, h: f64, kind: &str, conf: f64, page: i64) {
        if !(w > 0.0 && h > 0.0) {
            return;
        }
        let x0 = (hull[0] / w).clamp(0.0, 1.0);
        let y0 = (hull[1] / h).clamp(0.0, 1.0);
        let x1 = (hull[2] / w).clamp(0.0, 1.0);
        let y1 = (hull[3] / h).clamp(0.0, 1.0);
        if x1 <= x0 || y1 <= y0 {
            return;
        }
        match kind {
            "table" => self.tables += 1,
            "text" => self.lines += 1,
            _ => {}
        }
        self.boxes.push(BoundingBox {
            x: x0,
            y: y0,
            width: x1 - x0,
            height: y1 - y0,
            element_type: kind.to_string(),
            confidence: conf.clamp(0.0, 1.0),
            reading_order: self.boxes.len() as i64,
            page: (page > 0).then_some(page),
        });
    }

    fn finish(self) -> Option<StructuralFeatures> {
        if self.boxes.is_empty() {
            return None;
        }
        let n = self.boxes.len() as i64;
        let text_area: f64 = self
            .boxes
            .iter()
            .filter(|b| b.element_type == "text")
            .map(|b| b.width * b.height)
            .sum();
        let non_text = self
            .boxes
            .iter()
            .filter(|b| b.element_type != "text")
            .count();
        Some(StructuralFeatures {
            element_count: n,
            table_count: self.tables,
            text_block_count: self.lines,
            image_count: 0,
            page_count: self.pages.max(1),
            text_density: text_area.min(1.0),
            layout_complexity: non_text as f64 / n as f64,
            column_count: 1,
            has_header: false,
            has_footer: false,
            bounding_boxes: self.boxes,
        })
    }
}

/// Hull of a flat polygon `[x1, y1, x2, y2, ...]`.
fn hull(poly: &[Value]) -> Option<[f64; 4]> {
    let v: Vec<f64> = poly.iter().filter_map(Value::as_f64).collect();
    if v.len() < 4 || !v.len().is_multiple_of(2) {
        return None;
    }
    let xs = v.iter().step_by(2);
    let ys = v.iter().skip(1).step_by(2);
    Some([
        xs.clone().copied().fold(f64::INFINITY, f64::min),
        ys.clone().copied().fold(f64::INFINITY, f64::min),
        xs.copied().fold(f64::NEG_INFINITY, f64::max),
        ys.copied().fold(f64::NEG_INFINITY, f64::max),
    ])
}

fn union(a: Option<[f64; 4]>, b: [f64; 4]) -> [f64; 4] {
    match a {
        None => b,
        Some(a) => [
            a[0].min(b[0]),
            a[1].min(b[1]),
            a[2].max(b[2]),
            a[3].max(b[3]),
        ],
    }
}

fn mean_word_conf(line: &Value) -> f64 {
    let c: Vec<f64> = line["words"]
        .as_array()
        .map(|w| w.iter().filter_map(|w| w["confidence"].as_f64()).collect())
        .unwrap_or_default();
    if c.is_empty() {
        1.0
    } else {
        c.iter().sum::<f64>() / c.len() as f64
    }
}

fn extractor(vendor: &str, model: &str, version: &str) -> ExtractorMetadata {
    ExtractorMetadata {
        vendor: vendor.into(),
        model: model.into(),
        version: version.into(),
        confidence: 0.9,
        latency_ms: 0.0,
        cost_usd: None,
    }
}

/// Azure Form Recognizer v2.x (`readResults`) and the v3 preview (`pages`).
fn azure(v: &Value) -> Option<(StructuralFeatures, ExtractorMetadata)> {
    let a = &v["analyzeResult"];
    let mut acc = Acc::default();
    if let Some(pages) = a["readResults"].as_array() {
        let mut sizes = Vec::new();
        for (i, p) in pages.iter().enumerate() {
            let (w, h) = (p["width"].as_f64()?, p["height"].as_f64()?);
            sizes.push((w, h));
            for l in p["lines"].as_array().into_iter().flatten() {
                if let Some(b) = l["boundingBox"].as_array().and_then(|b| hull(b)) {
                    acc.push(b, w, h, "text", mean_word_conf(l), i as i64);
                }
            }
            for m in p["selectionMarks"].as_array().into_iter().flatten() {
                if let Some(b) = m["boundingBox"].as_array().and_then(|b| hull(b)) {
                    let c = m["confidence"].as_f64().unwrap_or(1.0);
                    acc.push(b, w, h, "checkbox", c, i as i64);
                }
            }
        }
        acc.pages = pages.len() as i64;
        for (i, pr) in a["pageResults"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let (w, h) = sizes.get(i).copied().unwrap_or((0.0, 0.0));
            for t in pr["tables"].as_array().into_iter().flatten() {
                let mut u = None;
                for c in t["cells"].as_array().into_iter().flatten() {
                    if let Some(b) = c["boundingBox"].as_array().and_then(|b| hull(b)) {
                        u = Some(union(u, b));
                    }
                }
                if let Some(u) = u {
                    acc.push(u, w, h, "table", 1.0, i as i64);
                }
            }
        }
        let version = a["version"].as_str().unwrap_or("2");
        return acc
            .finish()
            .map(|f| (f, extractor("azure", "form-recognizer-layout", version)));
    }
    let pages = a["pages"].as_array()?;
    let mut sizes = Vec::new();
    for (i, p) in pages.iter().enumerate() {
        let (w, h) = (p["width"].as_f64()?, p["height"].as_f64()?);
        sizes.push((w, h));
        for l in p["lines"].as_array().into_iter().flatten() {
            if let Some(b) = l["boundingBox"].as_array().and_then(|b| hull(b)) {
                acc.push(b, w, h, "text", 1.0, i as i64);
            }
        }
        for m in p["selectionMarks"].as_array().into_iter().flatten() {
            if let Some(b) = m["boundingBox"].as_array().and_then(|b| hull(b)) {
                let c = m["confidence"].as_f64().unwrap_or(1.0);
                acc.push(b, w, h, "checkbox", c, i as i64);
            }
        }
    }
    acc.pages = pages.len() as i64;
    for t in a["tables"].as_array().into_iter().flatten() {
        for r in t["boundingRegions"].as_array().into_iter().flatten() {
            let page = r["pageNumber"].as_i64().unwrap_or(1) - 1;
            let (w, h) = sizes.get(page as usize).copied().unwrap_or((0.0, 0.0));
            if let Some(b) = r["boundingBox"].as_array().and_then(|b| hull(b)) {
                acc.push(b, w, h, "table", 1.0, page);
            }
        }
    }
    let version = a["apiVersion"].as_str().unwrap_or("3");
    let model = a["modelId"].as_str().unwrap_or("layout");
    acc.finish()
        .map(|f| (f, extractor("azure", model, version)))
}

/// AWS Textract `Blocks` (coordinates already 0..1 of the page).
fn textract(v: &Value) -> Option<(StructuralFeatures, ExtractorMetadata)> {
    let blocks = v["Blocks"].as_array()?;
    let mut acc = Acc::default();
    for b in blocks {
        let kind = match b["BlockType"].as_str().unwrap_or("") {
            "PAGE" => {
                acc.pages += 1;
                continue;
            }
            "LINE" => "text",
            "TABLE" => "table",
            "SELECTION_ELEMENT" => "checkbox",
            "KEY_VALUE_SET" => {
                let key = b["EntityTypes"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "KEY"));
                if key {
                    "key"
                } else {
                    "value"
                }
            }
            _ => continue,
        };
        let bb = &b["Geometry"]["BoundingBox"];
        let (Some(l), Some(t), Some(w), Some(h)) = (
            bb["Left"].as_f64(),
            bb["Top"].as_f64(),
            bb["Width"].as_f64(),
            bb["Height"].as_f64(),
        ) else {
            continue;
        };
        let conf = b["Confidence"].as_f64().unwrap_or(100.0) / 100.0;
        let page = b["Page"].as_i64().unwrap_or(1) - 1;
        acc.push([l, t, l + w, t + h], 1.0, 1.0, kind, conf, page);
    }
    let version = v["AnalyzeDocumentModelVersion"]
        .as_str()
        .or(v["DetectDocumentTextModelVersion"].as_str())
        .unwrap_or("1.0");
    acc.finish()
        .map(|f| (f, extractor("aws", "textract", version)))
}

/// Tesseract TSV: level-1 rows give the page size, level-4 rows the lines (kept when a
/// level-5 word with text follows), word `conf` (0–100) averaged per line.
fn tesseract_tsv(s: &str) -> Option<(StructuralFeatures, ExtractorMetadata)> {
    let mut acc = Acc::default();
    let (mut w, mut h) = (0.0, 0.0);
    let mut line: Option<([f64; 4], Vec<f64>, i64)> = None;
    let flush = |acc: &mut Acc, line: &mut Option<([f64; 4], Vec<f64>, i64)>, w, h| {
        if let Some((b, confs, page)) = line.take() {
            if !confs.is_empty() {
                let c = confs.iter().sum::<f64>() / confs.len() as f64 / 100.0;
                acc.push(b, w, h, "text", c, page);
            }
        }
    };
    for row in s.lines().skip(1) {
        let c: Vec<&str> = row.split('\t').collect();
        if c.len() < 11 {
            continue;
        }
        let num = |i: usize| c[i].trim().parse::<f64>().ok();
        let (Some(level), Some(page), Some(l), Some(t), Some(bw), Some(bh)) =
            (num(0), num(1), num(6), num(7), num(8), num(9))
        else {
            continue;
        };
        match level as i64 {
            1 => {
                flush(&mut acc, &mut line, w, h);
                (w, h) = (bw, bh);
                acc.pages += 1;
            }
            4 => {
                flush(&mut acc, &mut line, w, h);
                line = Some(([l, t, l + bw, t + bh], Vec::new(), page as i64 - 1));
            }
            5 => {
                let text = c.get(11).map_or("", |t| t.trim());
                if let (Some(conf), Some(line)) = (num(10), line.as_mut()) {
                    if !text.is_empty() && conf >= 0.0 {
                        line.1.push(conf);
                    }
                }
            }
            _ => {}
        }
    }
    flush(&mut acc, &mut line, w, h);
    acc.finish()
        .map(|f| (f, extractor("tesseract", "tsv", "5")))
}

/// Converts one extractor output (Azure v2/v3-preview JSON, Textract JSON or Tesseract
/// TSV). `None` when the format is not one of these or nothing with an area was found.
pub fn convert(bytes: &[u8]) -> Option<(StructuralFeatures, ExtractorMetadata)> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.starts_with("level\t") {
        return tesseract_tsv(text);
    }
    let v: Value = serde_json::from_str(text).ok()?;
    if v.get("analyzeResult").is_some() {
        azure(&v)
    } else if v.get("Blocks").is_some() {
        textract(&v)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_v2_lines_marks_and_tables() {
        let doc = serde_json::json!({"analyzeResult": {"version": "2.1.0",
            "readResults": [{"page": 1, "width": 10.0, "height": 20.0, "unit": "inch",
                "lines": [{"boundingBox": [1.0, 2.0, 5.0, 2.0, 5.0, 3.0, 1.0, 3.0],
                           "words": [{"confidence": 0.8}, {"confidence": 0.6}]},
                          {"boundingBox": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], "words": []}],
                "selectionMarks": [{"boundingBox": [2.0, 4.0, 3.0, 4.0, 3.0, 5.0, 2.0, 5.0], "confidence": 0.9}]}],
            "pageResults": [{"tables": [{"cells": [
                {"boundingBox": [0.0, 10.0, 5.0, 10.0, 5.0, 12.0, 0.0, 12.0]},
                {"boundingBox": [5.0, 10.0, 10.0, 10.0, 10.0, 14.0, 5.0, 14.0]}]}]}]}});
        let (f, e) = convert(doc.to_string().as_bytes()).unwrap();
        assert_eq!(e.version, "2.1.0");
        // The zero-area line is skipped.
        assert_eq!(f.bounding_boxes.len(), 3);
        let t = &f.bounding_boxes[0];
        assert!((t.x - 0.1).abs() < 1e-12 && (t.width - 0.4).abs() < 1e-12);
        assert!((t.y - 0.1).abs() < 1e-12 && (t.height - 0.05).abs() < 1e-12);
        assert!((t.confidence - 0.7).abs() < 1e-12);
        let table = &f.bounding_boxes[2];
        assert_eq!(table.element_type, "table");
        assert!((table.width - 1.0).abs() < 1e-12 && (table.height - 0.2).abs() < 1e-12);
        assert_eq!(
            (f.element_count, f.table_count, f.text_block_count),
            (3, 1, 1)
        );
    }

    #[test]
    fn tesseract_lines_with_words_only() {
        let tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n\
1\t1\t0\t0\t0\t0\t0\t0\t100\t200\t-1\t\n\
4\t1\t1\t1\t1\t0\t10\t20\t50\t10\t-1\t\n\
5\t1\t1\t1\t1\t1\t10\t20\t20\t10\t90\tword\n\
5\t1\t1\t1\t1\t2\t35\t20\t25\t10\t70\tword\n\
4\t1\t1\t1\t2\t0\t10\t40\t50\t10\t-1\t\n\
5\t1\t1\t1\t2\t1\t10\t40\t20\t10\t95\t \n";
        let (f, e) = convert(tsv.as_bytes()).unwrap();
        assert_eq!(e.vendor, "tesseract");
        assert_eq!(f.bounding_boxes.len(), 1, "a line without text is dropped");
        let b = &f.bounding_boxes[0];
        assert!((b.x - 0.1).abs() < 1e-12 && (b.y - 0.1).abs() < 1e-12);
        assert!((b.confidence - 0.8).abs() < 1e-12);
    }

    #[test]
    fn textract_blocks_by_type() {
        let bb = |l: f64| serde_json::json!({"BoundingBox": {"Left": l, "Top": 0.1, "Width": 0.2, "Height": 0.05}});
        let doc = serde_json::json!({"AnalyzeDocumentModelVersion": "1.0", "Blocks": [
            {"BlockType": "PAGE", "Geometry": bb(0.0)},
            {"BlockType": "LINE", "Confidence": 99.0, "Geometry": bb(0.1)},
            {"BlockType": "WORD", "Confidence": 99.0, "Geometry": bb(0.1)},
            {"BlockType": "KEY_VALUE_SET", "EntityTypes": ["KEY"], "Confidence": 80.0, "Geometry": bb(0.3)},
            {"BlockType": "KEY_VALUE_SET", "EntityTypes": ["VALUE"], "Confidence": 80.0, "Geometry": bb(0.5)},
            {"BlockType": "TABLE", "Confidence": 90.0, "Geometry": bb(0.6)}]});
        let (f, _) = convert(doc.to_string().as_bytes()).unwrap();
        let kinds: Vec<&str> = f
            .bounding_boxes
            .iter()
            .map(|b| b.element_type.as_str())
            .collect();
        assert_eq!(kinds, ["text", "key", "value", "table"]);
        assert_eq!((f.page_count, f.table_count), (1, 1));
        assert!(convert(b"{\"other\": 1}").is_none());
    }
}
