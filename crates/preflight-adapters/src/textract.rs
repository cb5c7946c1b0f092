//! AWS Textract responses: DetectDocumentText, AnalyzeDocument (FORMS, TABLES, LAYOUT,
//! SIGNATURES, QUERIES), AnalyzeExpense and AnalyzeID, single- or multi-page (sync or the
//! concatenated async `Get*` pages). Geometry is already normalized to the page by Textract.

use preflight_engine::ElementType;
use serde_json::Value;

use crate::error::AdapterError;
use crate::format::Format;
use crate::json::{arr, num, page_index, str_of};
use crate::layout::{unit_confidence, Layout, LayoutBuilder, Rect};

const FMT: Format = Format::Textract;

/// What happens to each Textract block type.
enum Mapping {
    Emit(ElementType),
    /// Covered by other emitted boxes (words by lines, cells by their table and lines,
    /// LAYOUT_TEXT/TABLE/KEY_VALUE by lines/tables/key-values) or not layout (queries).
    Skip,
    Unknown,
}

fn map_block(block_type: &str, entity_types: &[Value]) -> Mapping {
    use ElementType as E;
    let has_entity = |t: &str| entity_types.iter().any(|e| e.as_str() == Some(t));
    match block_type {
        "LINE" => Mapping::Emit(E::Text),
        "TABLE" => Mapping::Emit(E::Table),
        "KEY_VALUE_SET" if has_entity("KEY") => Mapping::Emit(E::Key),
        "KEY_VALUE_SET" if has_entity("VALUE") => Mapping::Emit(E::Value),
        "SELECTION_ELEMENT" => Mapping::Emit(E::SelectionMark),
        "SIGNATURE" => Mapping::Emit(E::Signature),
        "LAYOUT_FIGURE" => Mapping::Emit(E::Figure),
        "LAYOUT_TITLE" => Mapping::Emit(E::Title),
        "LAYOUT_SECTION_HEADER" => Mapping::Emit(E::Heading),
        "LAYOUT_HEADER" => Mapping::Emit(E::Header),
        "LAYOUT_FOOTER" => Mapping::Emit(E::Footer),
        "LAYOUT_PAGE_NUMBER" => Mapping::Emit(E::PageNumber),
        "LAYOUT_LIST" => Mapping::Emit(E::List),
        "PAGE" | "WORD" | "CELL" | "MERGED_CELL" | "TABLE_TITLE" | "TABLE_FOOTER"
        | "LAYOUT_TEXT" | "LAYOUT_TABLE" | "LAYOUT_KEY_VALUE" | "QUERY" | "QUERY_RESULT"
        | "KEY_VALUE_SET" => Mapping::Skip,
        _ => Mapping::Unknown,
    }
}

/// `Geometry.BoundingBox` (Left/Top/Width/Height), else the bounds of `Geometry.Polygon`.
fn geometry(v: &Value) -> Option<Rect> {
    let g = v.get("Geometry")?;
    if let Some(bb) = g.get("BoundingBox") {
        if let (Some(l), Some(t), Some(w), Some(h)) = (
            num(bb, "Left"),
            num(bb, "Top"),
            num(bb, "Width"),
            num(bb, "Height"),
        ) {
            return Rect::from_ltwh(l, t, w, h);
        }
    }
    let poly = g.get("Polygon")?.as_array()?;
    let pts: Option<Vec<(f64, f64)>> = poly
        .iter()
        .map(|p| Some((num(p, "X")?, num(p, "Y")?)))
        .collect();
    Rect::from_points(pts?)
}

fn confidence(v: &Value) -> Option<f64> {
    num(v, "Confidence").and_then(|c| unit_confidence(c, 100.0))
}

/// The 0-based page of an element: `Page` on blocks, `PageNumber` on expense fields.
fn page_of(b: &mut LayoutBuilder, v: &Value, key: &str) -> Result<usize, AdapterError> {
    b.page(page_index(v, key).unwrap_or(0))
}

fn blocks(b: &mut LayoutBuilder, list: &Value) -> Result<bool, AdapterError> {
    let Some(items) = list.as_array() else {
        return Err(AdapterError::malformed(FMT, "`Blocks` is not an array"));
    };
    let mut analyzed = false;
    for block in items {
        let Some(bt) = str_of(block, "BlockType") else {
            return Err(AdapterError::malformed(FMT, "a block has no `BlockType`"));
        };
        if bt == "WORD" {
            b.word_confidence(confidence(block));
        }
        if !matches!(bt, "PAGE" | "LINE" | "WORD") {
            analyzed = true;
        }
        let page = page_of(b, block, "Page")?;
        match map_block(bt, arr(block, "EntityTypes")) {
            Mapping::Emit(kind) => b.push(page, kind, geometry(block), confidence(block)),
            Mapping::Skip => {}
            Mapping::Unknown => b.skipped_unknown(),
        }
    }
    Ok(analyzed)
}

/// AnalyzeExpense: the OCR blocks, summary fields as key/value, line-item groups as tables.
fn expense_document(b: &mut LayoutBuilder, doc: &Value) -> Result<(), AdapterError> {
    if let Some(list) = doc.get("Blocks") {
        blocks(b, list)?;
    }
    for field in arr(doc, "SummaryFields") {
        let page = page_of(b, field, "PageNumber")?;
        for (key, kind) in [
            ("LabelDetection", ElementType::Key),
            ("ValueDetection", ElementType::Value),
        ] {
            if let Some(det) = field.get(key) {
                if det.get("Geometry").is_some() {
                    b.push(page, kind, geometry(det), confidence(det));
                }
            }
        }
    }
    for group in arr(doc, "LineItemGroups") {
        // One table box per page the group spans: the union of its fields' detections.
        let mut per_page: Vec<(usize, Rect, crate::layout::Mean)> = Vec::new();
        for item in arr(group, "LineItems") {
            for field in arr(item, "LineItemExpenseFields") {
                let page = page_of(b, field, "PageNumber")?;
                for key in ["LabelDetection", "ValueDetection"] {
                    let Some(det) = field.get(key) else { continue };
                    let Some(r) = geometry(det) else { continue };
                    match per_page.iter_mut().find(|(p, _, _)| *p == page) {
                        Some((_, acc, m)) => {
                            *acc = acc.union(r);
                            if let Some(c) = confidence(det) {
                                m.add(c);
                            }
                        }
                        None => {
                            let mut m = crate::layout::Mean::default();
                            if let Some(c) = confidence(det) {
                                m.add(c);
                            }
                            per_page.push((page, r, m));
                        }
                    }
                }
            }
        }
        for (page, r, m) in per_page {
            b.push(page, ElementType::Table, Some(r), m.get());
        }
    }
    Ok(())
}

pub(crate) fn parse(root: &Value) -> Result<Layout, AdapterError> {
    if !root.is_object() {
        return Err(AdapterError::malformed(
            FMT,
            "the top-level value is not an object",
        ));
    }
    let expense = root.get("ExpenseDocuments");
    let identity = root.get("IdentityDocuments");
    let top_blocks = root.get("Blocks");
    if expense.is_none() && identity.is_none() && top_blocks.is_none() {
        return Err(AdapterError::malformed(
            FMT,
            "no `Blocks`, `ExpenseDocuments` or `IdentityDocuments`",
        ));
    }
    let mut b = LayoutBuilder::new(FMT, "aws-textract");
    let mut analyzed = false;
    if let Some(list) = top_blocks {
        analyzed = blocks(&mut b, list)?;
    }
    if let Some(docs) = expense {
        let docs = docs
            .as_array()
            .ok_or_else(|| AdapterError::malformed(FMT, "`ExpenseDocuments` is not an array"))?;
        for d in docs {
            expense_document(&mut b, d)?;
        }
    }
    if let Some(docs) = identity {
        let docs = docs
            .as_array()
            .ok_or_else(|| AdapterError::malformed(FMT, "`IdentityDocuments` is not an array"))?;
        for d in docs {
            if let Some(list) = d.get("Blocks") {
                blocks(&mut b, list)?;
            }
        }
    }
    if let Some(pages) = root.get("DocumentMetadata").and_then(|m| num(m, "Pages")) {
        if pages >= 0.0 {
            b.declare_pages(pages.min(1e9) as usize)?;
        }
    }

    b.model = if expense.is_some() {
        "AnalyzeExpense"
    } else if identity.is_some() {
        "AnalyzeID"
    } else if analyzed || root.get("AnalyzeDocumentModelVersion").is_some() {
        "AnalyzeDocument"
    } else {
        "DetectDocumentText"
    }
    .to_string();
    if let Some(v) = [
        "AnalyzeDocumentModelVersion",
        "DetectDocumentTextModelVersion",
        "AnalyzeExpenseModelVersion",
        "AnalyzeIDModelVersion",
    ]
    .iter()
    .find_map(|k| str_of(root, k))
    {
        b.version = v.chars().take(64).collect();
    }
    Ok(b.build())
}
