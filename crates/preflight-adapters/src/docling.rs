//! docling `DoclingDocument` JSON (docling-core schema 1.x, as `export_to_dict()` /
//! `save_as_json` write it): `pages` (a map from page number to its `size`), the item arrays
//! `texts`, `tables`, `pictures`, `key_value_items`, `form_items` (each item a `label` and
//! `prov` boxes in page units, with a `coord_origin`), and the `body` / `furniture` trees of
//! `$ref`s that give the document order. A document converted from a format without page
//! layout (DOCX, HTML, Markdown) has neither pages nor boxes: it gives
//! [`AdapterError::NoLayout`]. Docling states no confidences; the shared fallback applies.

use std::collections::{HashMap, HashSet};

use preflight_engine::ElementType;
use serde_json::{Map, Value};

use crate::error::AdapterError;
use crate::format::Format;
use crate::json::{arr, num, page_index, str_of};
use crate::layout::{Layout, LayoutBuilder, Rect};

const FMT: Format = Format::Docling;

/// The arrays whose items carry `prov` boxes, in the order items outside both trees are
/// appended.
const ITEM_ARRAYS: [&str; 5] = [
    "texts",
    "tables",
    "pictures",
    "key_value_items",
    "form_items",
];
/// Everything a `$ref` may point to: the item arrays, then `groups` (structure only: a group
/// has children but no box of its own).
const REF_TARGETS: [&str; 6] = [
    "texts",
    "tables",
    "pictures",
    "key_value_items",
    "form_items",
    "groups",
];
const GROUPS: usize = 5;

/// Whether a JSON object is a `DoclingDocument`: its fixed `schema_name`, or (for writers
/// that drop defaults) the `body` tree next to the `texts` array and the `pages` map.
pub(crate) fn looks_like_docling(o: &Map<String, Value>) -> bool {
    o.get("schema_name").and_then(Value::as_str) == Some("DoclingDocument")
        || (o.get("body").is_some_and(Value::is_object)
            && o.get("texts").is_some_and(Value::is_array)
            && o.get("pages").is_some_and(Value::is_object))
}

/// The engine type of a docling item label (`DocItemLabel`); `None` for labels the adapter
/// does not know. docs/features.md has this table; keep the two in step.
fn element_type(label: &str) -> Option<ElementType> {
    Some(match label {
        "text" | "paragraph" | "caption" | "footnote" | "code" | "reference"
        | "handwritten_text" | "field_hint" => ElementType::Text,
        "title" => ElementType::Title,
        "section_header" | "field_heading" => ElementType::Heading,
        "list_item" => ElementType::List,
        "table" | "document_index" => ElementType::Table,
        "picture" | "chart" => ElementType::Figure,
        "formula" => ElementType::Formula,
        "checkbox_selected" | "checkbox_unselected" => ElementType::SelectionMark,
        "page_header" => ElementType::Header,
        "page_footer" => ElementType::Footer,
        "field_key" => ElementType::Key,
        "field_value" | "empty_value" => ElementType::Value,
        // Regions that group other elements and have no closer engine type.
        "key_value_region" | "form" | "field_region" | "field_item" | "grading_scale" => {
            ElementType::Other
        }
        _ => return None,
    })
}

/// The engine type of a key/value graph cell (`GraphCellLabel`).
fn cell_type(label: &str) -> Option<ElementType> {
    Some(match label {
        "key" => ElementType::Key,
        "value" => ElementType::Value,
        "checkbox" => ElementType::SelectionMark,
        _ => return None,
    })
}

/// The `(array, index)` a `{"$ref": "#/texts/3"}` points to, for the arrays of
/// [`REF_TARGETS`]; `None` for the tree roots and anything else.
fn ref_target(r: &Value) -> Option<(usize, usize)> {
    let path = str_of(r, "$ref")?.strip_prefix("#/")?;
    let (array, index) = path.split_once('/')?;
    let array = REF_TARGETS.iter().position(|a| *a == array)?;
    Some((array, index.parse().ok()?))
}

/// Every item of the arrays in document order: a pre-order walk of `body`, then of the
/// (older schemas') `furniture` tree, then the items neither tree reaches, in array order.
/// Each item is taken once, so shared or cyclic references cannot loop or duplicate boxes.
fn document_order(root: &Value) -> Vec<&Value> {
    let arrays: Vec<&[Value]> = REF_TARGETS.iter().map(|a| arr(root, a)).collect();
    let mut seen: HashSet<(usize, usize)> = HashSet::new();
    let mut order = Vec::new();
    for tree in ["body", "furniture"] {
        let mut stack: Vec<&Value> = root
            .get(tree)
            .map(|t| arr(t, "children").iter().rev().collect())
            .unwrap_or_default();
        while let Some(r) = stack.pop() {
            let Some((a, i)) = ref_target(r) else {
                continue;
            };
            let Some(item) = arrays[a].get(i) else {
                continue;
            };
            if !seen.insert((a, i)) {
                continue;
            }
            if a != GROUPS {
                order.push(item);
            }
            stack.extend(arr(item, "children").iter().rev());
        }
    }
    for (a, items) in arrays.iter().enumerate().take(GROUPS) {
        for (i, item) in items.iter().enumerate() {
            if seen.insert((a, i)) {
                order.push(item);
            }
        }
    }
    order
}

/// A `bbox` (`l`, `t`, `r`, `b` in page units) as a top-down rectangle. `BOTTOMLEFT` boxes
/// have y growing upward, so they are flipped by the page height; a missing `coord_origin`
/// is docling's default, `TOPLEFT`; any other origin is unusable.
fn bbox_rect(bbox: &Value, page_height: f64) -> Option<Rect> {
    let (l, t, r, b) = (
        num(bbox, "l")?,
        num(bbox, "t")?,
        num(bbox, "r")?,
        num(bbox, "b")?,
    );
    let (top, bottom) = match str_of(bbox, "coord_origin") {
        None => (t, b),
        Some(o) if o.eq_ignore_ascii_case("TOPLEFT") => (t, b),
        Some(o) if o.eq_ignore_ascii_case("BOTTOMLEFT") => (page_height - t, page_height - b),
        Some(_) => return None,
    };
    Rect::from_points([(l, top), (r, bottom)])
}

/// Page sizes by 0-based page index.
type Sizes = HashMap<usize, (f64, f64)>;

/// Adds the box of one provenance entry (`{page_no, bbox, charspan}`).
fn push_prov(b: &mut LayoutBuilder, kind: ElementType, prov: &Value, sizes: &Sizes) {
    let Some(page) = page_index(prov, "page_no") else {
        b.push(0, kind, None, None);
        return;
    };
    // A page the `pages` map does not list has no size: the box is dropped and counted.
    let size = sizes.get(&page).copied();
    let rect = match (size, prov.get("bbox")) {
        (Some((_, h)), Some(bbox)) => bbox_rect(bbox, h),
        _ => None,
    };
    match (size, rect) {
        (Some(_), None) => b.push(page, kind, None, None),
        _ => b.push_scaled(page, kind, rect, size, None),
    }
}

/// Graph cells (of key/value regions and forms) that carry a box.
fn boxed_cells(item: &Value) -> impl Iterator<Item = &Value> {
    item.get("graph")
        .map(|g| arr(g, "cells"))
        .unwrap_or(&[])
        .iter()
        .filter(|c| c.get("prov").is_some_and(Value::is_object))
}

/// Adds the boxes of one item: one per `prov` entry (an item continued on the next page has
/// one per page). A key/value region or form whose graph cells have boxes gives the cells
/// (keys, values, checkboxes) instead of its region box, which would only duplicate them.
fn push_item(b: &mut LayoutBuilder, item: &Value, sizes: &Sizes) {
    if boxed_cells(item).next().is_some() {
        for cell in boxed_cells(item) {
            match str_of(cell, "label").and_then(cell_type) {
                Some(kind) => push_prov(b, kind, &cell["prov"], sizes),
                None => b.skipped_unknown(),
            }
        }
        return;
    }
    let provs = arr(item, "prov");
    if provs.is_empty() {
        // No geometry (an item from a DOCX/HTML source, or a caption-less stub): nothing to
        // place on a page.
        return;
    }
    let Some(kind) = str_of(item, "label").and_then(element_type) else {
        b.skipped_unknown();
        return;
    };
    for p in provs {
        push_prov(b, kind, p, sizes);
    }
}

/// A schema version such as `1.10.0`, else `None`: the field is copied into the metadata,
/// so anything that is not a short version string stays out.
fn schema_version(root: &Value) -> Option<String> {
    let v = str_of(root, "version")?.trim();
    let ok = !v.is_empty()
        && v.len() <= 32
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    ok.then(|| v.to_string())
}

pub(crate) fn parse(root: &Value) -> Result<Layout, AdapterError> {
    if !root.is_object() {
        return Err(AdapterError::malformed(
            FMT,
            "the top-level value is not an object",
        ));
    }
    let pages = match root.get("pages") {
        None | Some(Value::Null) => None,
        Some(Value::Object(p)) => Some(p),
        Some(_) => return Err(AdapterError::malformed(FMT, "`pages` is not an object")),
    };
    for key in REF_TARGETS {
        if !matches!(root.get(key), None | Some(Value::Null | Value::Array(_))) {
            return Err(AdapterError::malformed(
                FMT,
                format!("`{key}` is not an array"),
            ));
        }
    }
    let has_boxes = ITEM_ARRAYS
        .iter()
        .flat_map(|a| arr(root, a))
        .any(|item| !arr(item, "prov").is_empty() || boxed_cells(item).next().is_some());
    if pages.is_none_or(Map::is_empty) && !has_boxes {
        return Err(AdapterError::NoLayout {
            format: FMT,
            detail: "a DoclingDocument without pages or provenance boxes \
                     (converted from a source without page layout, such as DOCX, HTML or Markdown)"
                .into(),
        });
    }

    let mut b = LayoutBuilder::new(FMT, "docling");
    // The document states its schema version, not the docling release or its models.
    b.model = "docling".into();
    if let Some(v) = schema_version(root) {
        b.version = v;
    }
    let mut sizes = Sizes::new();
    for (key, p) in pages.into_iter().flatten() {
        // `page_no` is authoritative; the map key is the same number as a string.
        let index = page_index(p, "page_no").or_else(|| {
            key.trim()
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
        });
        let Some(index) = index else {
            continue;
        };
        let page = b.page(index)?;
        if let Some(size) = p
            .get("size")
            .and_then(|s| Some((num(s, "width")?, num(s, "height")?)))
        {
            sizes.insert(page, size);
        }
    }
    for item in document_order(root) {
        push_item(&mut b, item, &sizes);
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features_from_bytes;
    use serde_json::json;

    /// A one-page (100 × 200) document whose `texts` are the given `(label, prov)` pairs, all
    /// listed in `body` in order.
    fn doc(texts: &[(&str, Value)]) -> Value {
        let items: Vec<Value> = texts
            .iter()
            .enumerate()
            .map(|(i, (label, prov))| {
                json!({"self_ref": format!("#/texts/{i}"), "label": label, "prov": prov,
                       "text": "Lorem ipsum", "orig": "Lorem ipsum"})
            })
            .collect();
        let refs: Vec<Value> = (0..texts.len())
            .map(|i| json!({"$ref": format!("#/texts/{i}")}))
            .collect();
        json!({"schema_name": "DoclingDocument", "version": "1.10.0",
               "body": {"self_ref": "#/body", "children": refs},
               "texts": items,
               "pages": {"1": {"size": {"width": 100.0, "height": 200.0}, "page_no": 1}}})
    }

    fn prov(page: i64, l: f64, t: f64, r: f64, b: f64, origin: Option<&str>) -> Value {
        let mut bbox = json!({"l": l, "t": t, "r": r, "b": b});
        if let Some(o) = origin {
            bbox["coord_origin"] = json!(o);
        }
        json!([{"page_no": page, "bbox": bbox, "charspan": [0, 1]}])
    }

    fn run(v: &Value) -> crate::AdapterOutput {
        features_from_bytes(v.to_string().as_bytes(), None).unwrap()
    }

    /// The output's element types, in box order.
    fn element_types(out: &crate::AdapterOutput) -> Vec<&str> {
        let boxes = &out.structural_features.bounding_boxes;
        boxes.iter().map(|b| b.element_type.as_str()).collect()
    }

    /// Box `i` of the output, rounded to 1e-9 (page units).
    fn rect(out: &crate::AdapterOutput, i: usize) -> [f64; 4] {
        let b = &out.structural_features.bounding_boxes[i];
        [b.x, b.y, b.width, b.height].map(|v| (v * 1e9).round() / 1e9)
    }

    #[test]
    fn coordinate_origins() {
        let out = run(&doc(&[
            ("text", prov(1, 10.0, 20.0, 60.0, 40.0, Some("TOPLEFT"))),
            (
                "text",
                prov(1, 10.0, 180.0, 60.0, 160.0, Some("BOTTOMLEFT")),
            ),
            // docling's default origin is TOPLEFT.
            ("text", prov(1, 10.0, 20.0, 60.0, 40.0, None)),
            ("text", prov(1, 10.0, 20.0, 60.0, 40.0, Some("CENTER"))),
        ]));
        assert_eq!(rect(&out, 0), [0.1, 0.1, 0.5, 0.1]);
        assert_eq!(
            rect(&out, 1),
            rect(&out, 0),
            "the same box from the bottom edge"
        );
        assert_eq!(rect(&out, 2), rect(&out, 0));
        assert_eq!(out.structural_features.bounding_boxes.len(), 3);
        assert_eq!(
            out.warnings[0],
            "dropped 1 elements with missing or non-finite coordinates"
        );
    }

    #[test]
    fn every_docling_label_has_a_type() {
        // docling-core 2.x `DocItemLabel` values: all mapped, none skipped.
        let labels = [
            "caption",
            "chart",
            "footnote",
            "formula",
            "list_item",
            "page_footer",
            "page_header",
            "picture",
            "section_header",
            "table",
            "text",
            "title",
            "document_index",
            "code",
            "checkbox_selected",
            "checkbox_unselected",
            "form",
            "key_value_region",
            "grading_scale",
            "handwritten_text",
            "empty_value",
            "paragraph",
            "reference",
            "field_region",
            "field_heading",
            "field_item",
            "field_key",
            "field_value",
            "field_hint",
        ];
        for l in labels {
            assert!(element_type(l).is_some(), "{l}");
        }
        let texts: Vec<(&str, Value)> = labels
            .iter()
            .map(|l| (*l, prov(1, 10.0, 20.0, 60.0, 40.0, None)))
            .collect();
        let out = run(&doc(&texts));
        let types = element_types(&out);
        assert_eq!(types.len(), labels.len());
        assert_eq!(
            &types[..12],
            [
                "text", "figure", "text", "formula", "list", "footer", "header", "figure",
                "heading", "table", "text", "title"
            ]
        );
        assert_eq!(
            (types[14], types[17], types[26], types[27]),
            ("selection_mark", "other", "key", "value")
        );
        let out = run(&doc(&[("marker", prov(1, 10.0, 20.0, 60.0, 40.0, None))]));
        assert_eq!(out.structural_features.element_count, 0);
        assert!(out.warnings[0].starts_with("skipped 1 elements of an unrecognized type"));
    }

    #[test]
    fn key_value_cells_replace_their_region() {
        let mut v = doc(&[]);
        let cell = |label: &str, l: f64| {
            json!({"label": label, "cell_id": 0, "text": "Lorem", "orig": "Lorem",
                   "prov": {"page_no": 1, "bbox": {"l": l, "t": 20.0, "r": l + 10.0, "b": 40.0}}})
        };
        v["key_value_items"] = json!([
            {"label": "key_value_region", "prov": prov(1, 10.0, 20.0, 90.0, 40.0, None),
             "graph": {"cells": [cell("key", 10.0), cell("value", 30.0), cell("checkbox", 50.0)]}},
            // Without boxed cells, the region itself is the box.
            {"label": "key_value_region", "prov": prov(1, 10.0, 60.0, 90.0, 80.0, None),
             "graph": {"cells": [{"label": "key", "cell_id": 0, "text": "Lorem"}]}}
        ]);
        let out = run(&v);
        let types = element_types(&out);
        assert_eq!(types, ["key", "value", "selection_mark", "other"]);
        assert_eq!(rect(&out, 1), [0.3, 0.1, 0.1, 0.1]);
    }

    #[test]
    fn pages_and_order() {
        let mut v = doc(&[
            ("text", prov(2, 10.0, 20.0, 60.0, 40.0, None)),
            ("title", prov(1, 10.0, 20.0, 60.0, 40.0, None)),
            // Page 7 is not in `pages`: no size, dropped and counted.
            ("text", prov(7, 10.0, 20.0, 60.0, 40.0, None)),
        ]);
        v["pages"]["2"] = json!({"size": {"width": 100.0, "height": 100.0}, "page_no": 2});
        // Page 3 is declared through its key only.
        v["pages"]["3"] = json!({"size": {"width": 100.0, "height": 100.0}});
        // A cycle and a repeated reference give each item once; a dangling one is ignored.
        v["texts"][1]["children"] = json!([{"$ref": "#/texts/1"}, {"$ref": "#/texts/0"}]);
        v["body"]["children"]
            .as_array_mut()
            .unwrap()
            .push(json!({"$ref": "#/texts/99"}));
        let out = run(&v);
        let f = &out.structural_features;
        assert_eq!(f.page_count, 3);
        assert_eq!(f.element_count, 2);
        assert_eq!(
            f.bounding_boxes
                .iter()
                .map(|b| (b.page, b.element_type.as_str()))
                .collect::<Vec<_>>(),
            [(Some(0), "title"), (Some(1), "text")]
        );
        assert_eq!(rect(&out, 1), [0.1, 0.2, 0.5, 0.2], "page 2 is 100 × 100");
        assert!(out.warnings[0].starts_with("dropped 1 elements on pages without a usable"));

        let mut huge = doc(&[]);
        huge["pages"]["4000000000"] = json!({"size": {"width": 1, "height": 1}, "page_no": 4e9});
        let e = features_from_bytes(huge.to_string().as_bytes(), None).unwrap_err();
        assert!(e.to_string().contains("beyond the limit"), "{e}");
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let forced = |v: Value| {
            features_from_bytes(v.to_string().as_bytes(), Some(Format::Docling)).unwrap_err()
        };
        assert_eq!(
            forced(json!([1, 2])).to_string(),
            "malformed docling input: the top-level value is not an object"
        );
        let mut v = doc(&[]);
        v["pages"] = json!([]);
        assert_eq!(
            forced(v).to_string(),
            "malformed docling input: `pages` is not an object"
        );
        let mut v = doc(&[]);
        v["texts"] = json!({"0": "Lorem ipsum"});
        assert_eq!(
            forced(v).to_string(),
            "malformed docling input: `texts` is not an array"
        );
        assert!(matches!(
            forced(json!({"schema_name": "DoclingDocument", "texts": []})),
            AdapterError::NoLayout { .. }
        ));
        // A blank scanned page: pages, no items. A valid, empty layout.
        let out = run(&doc(&[]));
        assert_eq!((out.pages, out.structural_features.element_count), (1, 0));
    }

    #[test]
    fn detection_and_version() {
        let v = doc(&[]);
        let o = v.as_object().unwrap();
        assert!(looks_like_docling(o));
        let mut bare = v.clone();
        bare.as_object_mut().unwrap().remove("schema_name");
        assert!(looks_like_docling(bare.as_object().unwrap()));
        // Document AI has `pages` (a list) and `text`, never `body` with `texts`.
        assert!(!looks_like_docling(
            json!({"pages": [], "text": "x"}).as_object().unwrap()
        ));
        assert_eq!(schema_version(&v).as_deref(), Some("1.10.0"));
        for bad in ["Lorem ipsum", "", "v1", "1.0 beta"] {
            assert_eq!(schema_version(&json!({ "version": bad })), None, "{bad}");
        }
        assert_eq!(run(&bare).extractor_metadata.version, "1.10.0");
    }
}
