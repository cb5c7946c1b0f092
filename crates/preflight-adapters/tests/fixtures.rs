//! Default-run tests on small hand-written fixtures (one or more per format, in
//! `tests/fixtures/`): exact boxes, counts, metadata and warnings, detection, the no-text
//! guarantee and acceptance by the engine's validator. They need no shared data.

mod common;

use preflight_adapters::{
    detect_format, features_from_bytes, features_from_bytes_with, AdapterError, AdapterOptions,
    AdapterOutput, BoundingBox, Format, PageSize,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Converts a fixture with auto-detection, checks the detected format, the no-text
/// guarantee and that the engine accepts the result.
fn convert(name: &str, expected: Format) -> AdapterOutput {
    let bytes = fixture(name);
    assert_eq!(detect_format(&bytes).unwrap(), expected, "{name}");
    let out = features_from_bytes(&bytes, None).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(out.format, expected);
    let forced = features_from_bytes(&bytes, Some(expected)).unwrap();
    assert_eq!(
        forced, out,
        "{name}: forcing the detected format changes nothing"
    );
    common::assert_no_text(name, &out, &common::SourceText::collect(expected, &bytes));
    check_invariants(name, &out);
    out
}

fn check_invariants(name: &str, out: &AdapterOutput) {
    let f = &out.structural_features;
    assert_eq!(f.element_count as usize, f.bounding_boxes.len(), "{name}");
    assert_eq!(f.page_count as usize, out.pages, "{name}");
    assert_eq!(
        out.layout_fingerprint,
        preflight_engine::layout_fingerprint(f),
        "{name}"
    );
    for (i, b) in f.bounding_boxes.iter().enumerate() {
        assert_eq!(b.reading_order, i as i64, "{name}");
        assert!(
            b.x >= 0.0 && b.y >= 0.0 && b.width > 0.0 && b.height > 0.0,
            "{name}: {b:?}"
        );
        assert!(
            b.x + b.width <= 1.0 + 1e-12 && b.y + b.height <= 1.0 + 1e-12,
            "{name}: {b:?}"
        );
        assert!((0.0..=1.0).contains(&b.confidence), "{name}: {b:?}");
        assert!(b.page.unwrap() < f.page_count, "{name}: {b:?}");
        assert!(
            preflight_engine::ElementType::parse(&b.element_type).is_some(),
            "{name}"
        );
    }
    assert!((0.0..=1.0).contains(&f.text_density), "{name}");
    assert!((0.0..=1.0).contains(&f.layout_complexity), "{name}");
    if let Err(errors) = preflight_engine::validate(f, &out.extractor_metadata) {
        panic!("{name}: the engine rejects the request: {errors:?}");
    }
}

fn types(out: &AdapterOutput) -> Vec<&str> {
    out.structural_features
        .bounding_boxes
        .iter()
        .map(|b| b.element_type.as_str())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn assert_box(b: &BoundingBox, x: f64, y: f64, w: f64, h: f64) {
    assert!(
        close(b.x, x) && close(b.y, y) && close(b.width, w) && close(b.height, h),
        "{b:?} != ({x}, {y}, {w}, {h})"
    );
}

#[test]
fn textract_analyze_document_two_pages() {
    let out = convert("textract_analyze_2pages.json", Format::Textract);
    let f = &out.structural_features;
    assert_eq!(
        types(&out),
        [
            "text",
            "text",
            "text",
            "table",
            "key",
            "value",
            "selection_mark",
            "header",
            "text",
            "signature"
        ]
    );
    assert_eq!(
        (
            f.page_count,
            f.text_block_count,
            f.table_count,
            f.image_count
        ),
        (2, 4, 1, 0)
    );
    assert!(f.has_header, "LAYOUT_HEADER sets has_header");
    let pages: Vec<i64> = f.bounding_boxes.iter().map(|b| b.page.unwrap()).collect();
    assert_eq!(pages, [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    // The polygon-only line starts at x = −0.01: clamped to the page and reported.
    assert_box(&f.bounding_boxes[1], 0.0, 0.3, 0.4, 0.03);
    assert_box(&f.bounding_boxes[0], 0.1, 0.02, 0.5, 0.03);
    assert!(close(f.bounding_boxes[0].confidence, 0.99));
    let m = &out.extractor_metadata;
    assert_eq!(
        (m.vendor.as_str(), m.model.as_str(), m.version.as_str()),
        ("aws-textract", "AnalyzeDocument", "1.0")
    );
    assert!(
        close(m.confidence, 0.94),
        "mean WORD confidence: {}",
        m.confidence
    );
    assert_eq!(m.latency_ms, 0.0);
    assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
    assert!(out.warnings[0].starts_with("clamped 1 boxes") && out.warnings[0].contains("0.0100"));
    assert!(out.warnings[1].starts_with("skipped 1 elements of an unrecognized type"));
}

#[test]
fn azure_v2_inch_units() {
    let out = convert("azure_v2_inch.json", Format::Azure);
    let f = &out.structural_features;
    assert_eq!(
        types(&out),
        ["text", "text", "selection_mark", "table", "value"]
    );
    assert_box(&f.bounding_boxes[0], 0.1, 0.05, 0.4, 0.03);
    assert!(
        close(f.bounding_boxes[0].confidence, 0.8),
        "line = mean of its words"
    );
    // A 2.x table without its own box is the union of its cells.
    assert_box(&f.bounding_boxes[3], 0.1, 0.3, 0.8, 0.1);
    assert!(
        close(f.bounding_boxes[3].confidence, 0.8),
        "no table confidence: document mean"
    );
    assert_eq!((f.page_count, f.text_block_count, f.table_count), (1, 2, 1));
    let m = &out.extractor_metadata;
    assert_eq!(
        (m.model.as_str(), m.version.as_str()),
        ("custom:gadget-model", "2.1.0")
    );
    assert!(close(m.confidence, 0.8));
    assert_eq!(
        m.latency_ms, 2_500.0,
        "lastUpdatedDateTime − createdDateTime"
    );
    assert_eq!(out.warnings.len(), 1);
    assert!(out.warnings[0].starts_with("1 elements carry no vendor confidence"));
}

#[test]
fn azure_v3_pixel_units_and_roles() {
    let out = convert("azure_v3_pixel.json", Format::Azure);
    let f = &out.structural_features;
    assert_eq!(
        types(&out),
        [
            "text",
            "text",
            "selection_mark",
            "title",
            "footer",
            "table",
            "figure",
            "key",
            "value"
        ]
    );
    assert_box(&f.bounding_boxes[0], 0.1, 0.05, 0.4, 0.025);
    assert!(
        close(f.bounding_boxes[0].confidence, 0.7),
        "words in the line's span"
    );
    assert!(close(f.bounding_boxes[1].confidence, 0.8));
    assert_eq!(
        (f.image_count, f.table_count, f.text_block_count),
        (1, 1, 2)
    );
    assert!(f.has_footer, "pageFooter paragraph");
    let m = &out.extractor_metadata;
    assert_eq!(
        (m.model.as_str(), m.version.as_str()),
        ("prebuilt-layout", "2023-07-31")
    );
    assert!(close(m.confidence, (0.9 + 0.5 + 0.8) / 3.0));
}

#[test]
fn google_document_ai_mixed_vertices() {
    let out = convert("google_docai.json", Format::Google);
    let f = &out.structural_features;
    assert_eq!(
        types(&out),
        ["text", "text", "table", "key", "value", "selection_mark"]
    );
    // Pixel vertices with omitted zero x, divided by `dimension`.
    assert_box(&f.bounding_boxes[0], 0.0, 0.05, 0.5, 0.025);
    assert_box(&f.bounding_boxes[1], 0.1, 0.5, 0.4, 0.02);
    assert_eq!(f.page_count, 2, "a page without elements still counts");
    let m = &out.extractor_metadata;
    assert_eq!(
        (m.vendor.as_str(), m.model.as_str()),
        ("google-document-ai", "ocr")
    );
    assert!(close(m.confidence, 0.8), "mean token confidence");
    assert_eq!(out.warnings.len(), 1);
    assert!(out.warnings[0].starts_with("skipped 1 elements"));
}

#[test]
fn google_cloud_vision_lines_from_breaks() {
    let out = convert("google_vision.json", Format::Google);
    let f = &out.structural_features;
    assert_eq!(types(&out), ["text", "text", "figure"]);
    assert_box(&f.bounding_boxes[0], 0.1, 0.1, 0.6, 0.05);
    assert!(close(f.bounding_boxes[0].confidence, 0.85));
    assert_box(&f.bounding_boxes[1], 0.1, 0.25, 0.2, 0.05);
    assert_eq!(out.extractor_metadata.vendor, "google-cloud-vision");
}

#[test]
fn google_layout_parser_has_no_geometry() {
    let bytes = fixture("google_layout_parser.json");
    assert_eq!(detect_format(&bytes).unwrap(), Format::Google);
    match features_from_bytes(&bytes, None) {
        Err(AdapterError::NoLayout {
            format: Format::Google,
            detail,
        }) => {
            assert!(detail.contains("Layout Parser"), "{detail}");
            assert!(!detail.contains("Chapter"), "errors carry no document text");
        }
        other => panic!("expected NoLayout, got {other:?}"),
    }
}

#[test]
fn tesseract_tsv_lines_with_words() {
    let out = convert("tesseract.tsv", Format::TesseractTsv);
    let f = &out.structural_features;
    // The second line of block 1 holds only a blank word: not text.
    assert_eq!(types(&out), ["text", "text"]);
    // Line boxes are the level-4 rows (the word sticking out above is not unioned in).
    assert_box(&f.bounding_boxes[0], 0.05, 0.1, 0.4, 0.05);
    assert!(close(f.bounding_boxes[0].confidence, 0.805));
    assert_box(&f.bounding_boxes[1], 0.05, 0.5, 0.45, 0.05);
    assert!(close(
        out.extractor_metadata.confidence,
        (0.905 + 0.705 + 0.40) / 3.0
    ));
    assert_eq!(out.extractor_metadata.version, "unknown");
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

#[test]
fn hocr_lenient_html() {
    let out = convert("tesseract.hocr", Format::Hocr);
    let f = &out.structural_features;
    assert_eq!(types(&out), ["text", "text", "figure"]);
    let tsv = features_from_bytes(&fixture("tesseract.tsv"), None).unwrap();
    assert_eq!(
        f.bounding_boxes[..2]
            .iter()
            .map(|b| (b.x, b.y, b.width, b.height))
            .collect::<Vec<_>>(),
        tsv.structural_features
            .bounding_boxes
            .iter()
            .map(|b| (b.x, b.y, b.width, b.height))
            .collect::<Vec<_>>(),
        "the same Tesseract page gives the same text boxes in hOCR and TSV"
    );
    assert_box(&f.bounding_boxes[2], 0.6, 0.4, 0.3, 0.5);
    assert!(close(f.bounding_boxes[0].confidence, 0.8));
    let m = &out.extractor_metadata;
    assert_eq!(
        (m.vendor.as_str(), m.version.as_str()),
        ("tesseract", "5.3.0")
    );
    assert!(close(m.confidence, 2.0 / 3.0));
}

#[test]
fn paddleocr_page_size_estimated_or_given() {
    let out = convert("paddleocr.json", Format::Paddleocr);
    let f = &out.structural_features;
    // Content spans x 100..500, y 100..350: the page is estimated as 600 × 450.
    assert_box(
        &f.bounding_boxes[0],
        100.0 / 600.0,
        100.0 / 450.0,
        400.0 / 600.0,
        50.0 / 450.0,
    );
    assert!(out
        .warnings
        .iter()
        .any(|w| w.starts_with("page size unknown for 1 pages")));
    assert!(close(out.extractor_metadata.confidence, 0.8));

    let opts = AdapterOptions {
        page_size: Some(PageSize {
            width: 1000.0,
            height: 1000.0,
        }),
    };
    let given = features_from_bytes_with(&fixture("paddleocr.json"), None, &opts).unwrap();
    assert_box(
        &given.structural_features.bounding_boxes[0],
        0.1,
        0.1,
        0.4,
        0.05,
    );
    assert!(given.warnings.is_empty(), "{:?}", given.warnings);

    let bad = AdapterOptions {
        page_size: Some(PageSize {
            width: 0.0,
            height: f64::NAN,
        }),
    };
    assert!(matches!(
        features_from_bytes_with(&fixture("paddleocr.json"), None, &bad),
        Err(AdapterError::InvalidOption(_))
    ));
}

#[test]
fn paddleocr_per_page_lists() {
    let out = convert("paddleocr_pages.json", Format::Paddleocr);
    let f = &out.structural_features;
    assert_eq!(f.page_count, 3);
    let pages: Vec<i64> = f.bounding_boxes.iter().map(|b| b.page.unwrap()).collect();
    assert_eq!(pages, [0, 2]);
}

#[test]
fn forcing_the_wrong_format_is_a_clear_error() {
    let tsv = fixture("tesseract.tsv");
    for f in [
        Format::Textract,
        Format::Azure,
        Format::Google,
        Format::Paddleocr,
        Format::Docling,
    ] {
        let e = features_from_bytes(&tsv, Some(f)).unwrap_err();
        assert!(
            matches!(e, AdapterError::Malformed { format, .. } if format == f),
            "{e}"
        );
    }
    let e =
        features_from_bytes(&fixture("azure_v2_inch.json"), Some(Format::Textract)).unwrap_err();
    assert!(e.to_string().starts_with("malformed textract input"), "{e}");
    let e = features_from_bytes(&fixture("azure_v2_inch.json"), Some(Format::TesseractTsv))
        .unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
    assert!(
        !e.to_string().contains("Fabrikam"),
        "no document text in errors: {e}"
    );
    let e = features_from_bytes(&fixture("textract_analyze_2pages.json"), Some(Format::Hocr))
        .unwrap_err();
    assert!(
        matches!(
            e,
            AdapterError::Malformed {
                format: Format::Hocr,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn unrecognized_inputs_are_errors() {
    for input in [
        &b"%PDF-1.7 binary"[..],
        b"{\"hello\": \"world\"}",
        b"",
        b"<html><p>x</p></html>",
    ] {
        assert!(matches!(
            features_from_bytes(input, None),
            Err(AdapterError::UnknownFormat(_))
        ));
    }
}

#[test]
fn page_numbers_are_bounded() {
    let doc = br#"{"Blocks":[{"BlockType":"LINE","Page":4000000000,"Confidence":99,"Geometry":{"BoundingBox":{"Left":0.1,"Top":0.1,"Width":0.1,"Height":0.1}}}]}"#;
    let e = features_from_bytes(doc, None).unwrap_err();
    assert!(e.to_string().contains("beyond the limit"), "{e}");
}

#[test]
#[should_panic(expected = "leaked into the output")]
fn the_no_text_check_catches_a_leaked_word() {
    let bytes = fixture("textract_analyze_2pages.json");
    let mut out = features_from_bytes(&bytes, None).unwrap();
    out.extractor_metadata.model = "Thornbury".into();
    common::assert_no_text(
        "mutated",
        &out,
        &common::SourceText::collect(Format::Textract, &bytes),
    );
}

#[test]
#[should_panic(expected = "not from a warning template")]
fn the_no_text_check_catches_a_leak_in_warnings() {
    let bytes = fixture("tesseract.hocr");
    let mut out = features_from_bytes(&bytes, None).unwrap();
    out.warnings.push("skipped element Zanzibar".into());
    common::assert_no_text(
        "mutated",
        &out,
        &common::SourceText::collect(Format::Hocr, &bytes),
    );
}

#[test]
fn docling_document_order_origins_and_labels() {
    let out = convert("docling.json", Format::Docling);
    let f = &out.structural_features;
    // `body` order (the page header is referenced first, the list items through their
    // group, the caption as the table's child, the key/value region as its two cells), the
    // item continued on page 2, then the footer that no tree references.
    assert_eq!(
        types(&out),
        [
            "header", "title", "list", "list", "heading", "table", "text", "figure", "key",
            "value", "text", "text", "footer"
        ]
    );
    let pages: Vec<i64> = f.bounding_boxes.iter().map(|b| b.page.unwrap()).collect();
    assert_eq!(pages, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    // TOPLEFT boxes divided by the 600 × 800 page.
    assert_box(&f.bounding_boxes[0], 0.1, 0.02, 0.4, 0.03);
    assert_box(&f.bounding_boxes[1], 0.1, 0.1, 0.8, 0.05);
    assert_box(&f.bounding_boxes[5], 0.1, 0.35, 0.8, 0.2);
    // BOTTOMLEFT: t = 320, b = 160 above the bottom edge of an 800-high page.
    assert_box(&f.bounding_boxes[7], 0.1, 0.6, 0.4, 0.2);
    assert_box(&f.bounding_boxes[8], 0.55, 0.6, 0.15, 0.02);
    // One item, two provenance boxes: the end of page 1 and (BOTTOMLEFT) the top of page 2.
    assert_box(&f.bounding_boxes[10], 0.1, 0.9, 0.8, 0.09);
    assert_box(&f.bounding_boxes[11], 0.1, 0.05, 0.8, 0.05);
    assert_box(&f.bounding_boxes[12], 0.1, 0.96, 0.8, 0.02);
    assert_eq!(
        (
            f.page_count,
            f.text_block_count,
            f.table_count,
            f.image_count
        ),
        (3, 3, 1, 1),
        "page 3 has no items but is declared; page 4 is not"
    );
    assert!(f.has_header && f.has_footer);
    assert!(f.bounding_boxes.iter().all(|b| b.confidence == 1.0));
    let m = &out.extractor_metadata;
    assert_eq!(
        (m.vendor.as_str(), m.model.as_str(), m.version.as_str()),
        ("docling", "docling", "1.10.0")
    );
    assert_eq!(m.confidence, 0.0, "docling reports no confidences");
    assert_eq!(
        out.warnings,
        [
            "dropped 1 elements on pages without a usable page size",
            "skipped 1 elements of an unrecognized type",
            "13 elements carry no vendor confidence: the document's mean confidence was used (1.0 when it has none)",
        ]
    );
    assert_eq!(
        "docling-json".parse::<Format>().unwrap(),
        Format::Docling,
        "alias"
    );
}

#[test]
fn docling_without_page_layout_is_no_layout() {
    // What docling writes for a DOCX or HTML source: items, no pages, no provenance.
    let doc = br##"{"schema_name":"DoclingDocument","version":"1.10.0","name":"memo",
        "body":{"self_ref":"#/body","children":[{"$ref":"#/texts/0"}]},
        "texts":[{"self_ref":"#/texts/0","label":"paragraph","prov":[],"orig":"Dear Oonagh","text":"Dear Oonagh"}],
        "pages":{}}"##;
    match features_from_bytes(doc, None) {
        Err(AdapterError::NoLayout {
            format: Format::Docling,
            detail,
        }) => assert!(!detail.contains("Oonagh"), "{detail}"),
        other => panic!("expected NoLayout, got {other:?}"),
    }
}
