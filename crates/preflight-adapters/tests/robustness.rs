//! Property tests: no input makes the adapters panic. Random bytes, truncations and
//! structural mutations of every fixture (values replaced, keys removed, markup damaged) go
//! through auto-detection and every forced parser; whenever a result comes back it must
//! still satisfy the output invariants.

use preflight_adapters::{features_from_bytes, AdapterOutput, Format};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

const JSON_FIXTURES: [&str; 9] = [
    "textract_analyze_2pages.json",
    "azure_v2_inch.json",
    "azure_v3_pixel.json",
    "google_docai.json",
    "google_vision.json",
    "paddleocr.json",
    "paddleocr_pages.json",
    "google_layout_parser.json",
    "docling.json",
];
const TEXT_FIXTURES: [&str; 2] = ["tesseract.tsv", "tesseract.hocr"];

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn invariants(out: &AdapterOutput) {
    let f = &out.structural_features;
    assert_eq!(f.element_count as usize, f.bounding_boxes.len());
    assert!((0.0..=1.0).contains(&f.text_density), "{}", f.text_density);
    assert!((0.0..=1.0).contains(&f.layout_complexity));
    assert!(f.page_count >= 0 && f.page_count <= 5_000);
    for b in &f.bounding_boxes {
        assert!(
            b.x >= 0.0 && b.y >= 0.0 && b.width > 0.0 && b.height > 0.0,
            "{b:?}"
        );
        assert!(
            b.x + b.width <= 1.0 + 1e-12 && b.y + b.height <= 1.0 + 1e-12,
            "{b:?}"
        );
        assert!((0.0..=1.0).contains(&b.confidence), "{b:?}");
        assert!(b.page.unwrap_or(0) < f.page_count.max(1));
    }
    assert!((0.0..=1.0).contains(&out.extractor_metadata.confidence));
    assert!(out.extractor_metadata.latency_ms >= 0.0);
}

/// Runs the input through detection and every parser; panics only on a broken invariant.
fn exercise(bytes: &[u8]) {
    let _ = preflight_adapters::detect_format(bytes);
    for format in std::iter::once(None).chain(Format::ALL.into_iter().map(Some)) {
        if let Ok(out) = features_from_bytes(bytes, format) {
            invariants(&out);
        }
    }
}

/// Every path (object key or array index sequence) in a JSON value, pre-order.
fn paths(v: &Value, prefix: &mut Vec<PathSeg>, out: &mut Vec<Vec<PathSeg>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                prefix.push(PathSeg::Key(k.clone()));
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                prefix.push(PathSeg::Index(i));
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum PathSeg {
    Key(String),
    Index(usize),
}

fn at<'a>(v: &'a mut Value, path: &[PathSeg]) -> Option<&'a mut Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            PathSeg::Key(k) => cur.get_mut(k.as_str())?,
            PathSeg::Index(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}

fn replacement(choice: usize) -> Option<Value> {
    let v = match choice {
        0 => Value::Null,
        1 => serde_json::json!(-1),
        2 => serde_json::json!(1e308),
        3 => serde_json::json!(-1e308),
        4 => serde_json::json!(0),
        5 => serde_json::json!("not a number"),
        6 => serde_json::json!([]),
        7 => serde_json::json!({}),
        8 => serde_json::json!(true),
        9 => serde_json::json!(4_000_000_000u64),
        10 => serde_json::json!([1e308, -1e308, 0, 0, 1, 1, 0.5, 0.5]),
        11 => serde_json::json!("2021-13-99T99:99:99Z"),
        _ => return None, // delete the key / element
    };
    Some(v)
}

fn mutate(bytes: &[u8], edits: &[(Index, usize)]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(bytes).unwrap();
    for (idx, choice) in edits {
        let mut all = Vec::new();
        paths(&v, &mut Vec::new(), &mut all);
        let path = idx.get(&all).clone();
        match replacement(*choice) {
            Some(new) => {
                if let Some(slot) = at(&mut v, &path) {
                    *slot = new;
                }
            }
            None => {
                if let Some((last, parent)) = path.split_last() {
                    match (at(&mut v, parent), last) {
                        (Some(Value::Object(o)), PathSeg::Key(k)) => {
                            o.remove(k);
                        }
                        (Some(Value::Array(a)), PathSeg::Index(i)) if *i < a.len() => {
                            a.remove(*i);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    serde_json::to_vec(&v).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    #[test]
    fn random_json_shaped_text_never_panics(s in r#"[\[\]{}",:0-9a-zA-Z \-.]{0,200}"#) {
        exercise(s.as_bytes());
    }

    #[test]
    fn mutated_json_never_panics(
        which in 0..JSON_FIXTURES.len(),
        edits in proptest::collection::vec((any::<Index>(), 0usize..14), 1..6),
    ) {
        let bytes = mutate(&fixture(JSON_FIXTURES[which]), &edits);
        exercise(&bytes);
    }

    #[test]
    fn truncated_inputs_never_panic(which in 0..(JSON_FIXTURES.len() + TEXT_FIXTURES.len()), cut in any::<Index>()) {
        let name = JSON_FIXTURES.iter().chain(TEXT_FIXTURES.iter()).nth(which).unwrap();
        let bytes = fixture(name);
        exercise(&bytes[..cut.index(bytes.len() + 1)]);
    }

    #[test]
    fn damaged_text_formats_never_panic(
        which in 0..TEXT_FIXTURES.len(),
        edits in proptest::collection::vec((any::<Index>(), prop::sample::select(vec![
            "<", ">", "&", "'", "\"", "\t", "\n", "-1", "1e999", "bbox", "x_wconf", "</span>",
            "<span class='ocr_line' title='bbox 5 5 1 1'>", "ocr_page", "\u{fffd}", "",
        ])), 1..8),
    ) {
        let mut s = String::from_utf8(fixture(TEXT_FIXTURES[which])).unwrap();
        for (at, piece) in edits {
            let mut i = at.index(s.len() + 1);
            while !s.is_char_boundary(i) {
                i -= 1;
            }
            // Replace one character (or insert at the end).
            let end = s[i..].chars().next().map_or(i, |c| i + c.len_utf8());
            s.replace_range(i..end, piece);
        }
        exercise(s.as_bytes());
    }
}
