//! Shared test helpers: collecting the document text of an extractor output (independently of
//! the adapters' parsers) and proving that none of it reaches the adapters' output.

#![allow(dead_code)]

use std::collections::BTreeSet;

use preflight_adapters::{AdapterOutput, Format};
use serde_json::Value;

/// JSON keys whose string values are document text in some vendor's schema.
const TEXT_KEYS: [&str; 12] = [
    "Text",
    "text",
    "content",
    "description",
    "valueString",
    "valuePhoneNumber",
    "valueDate",
    "valueTime",
    "valueCountryRegion",
    "mentionText",
    "normalizedValue",
    "DetectedText",
];

/// More keys holding document text in a `DoclingDocument`: the original text of an item,
/// list markers, links, and the document's name and source file name / URI.
const DOCLING_TEXT_KEYS: [&str; 6] = ["orig", "marker", "hyperlink", "name", "filename", "uri"];

/// JSON keys naming the extractor (model ids, API versions): the adapters may copy these
/// into `extractor_metadata`, so their tokens are allowed in the output.
const IDENTITY_KEYS: [&str; 9] = [
    "AnalyzeDocumentModelVersion",
    "DetectDocumentTextModelVersion",
    "AnalyzeExpenseModelVersion",
    "AnalyzeIDModelVersion",
    "version",
    "apiVersion",
    "modelId",
    "docType",
    "processor",
];

/// Words the adapters emit on their own: JSON keys, element types, format names, vendor and
/// model names, and the words of the warning templates.
pub const OWN_VOCABULARY: &str = "format pages layout_fingerprint structural_features extractor_metadata warnings \
    element_count table_count text_block_count image_count page_count text_density layout_complexity \
    column_count has_header has_footer bounding_boxes x y width height element_type confidence \
    reading_order page vendor model version latency_ms cost_usd \
    text title heading list table table_cell figure key value selection_mark header footer page_number \
    signature barcode formula other \
    textract azure google tesseract tsv hocr paddleocr docling \
    aws AnalyzeDocument DetectDocumentText AnalyzeExpense AnalyzeID document intelligence ai cloud vision images annotate \
    pp ocr unknown true false null";

/// The words of every warning the adapters can emit (checked against each warning).
pub const WARNING_VOCABULARY: &str = "clamped boxes that extended outside the page largest excursion of size \
    dropped elements with missing or non finite coordinates zero area inside on pages without a usable \
    unknown for estimated from content extent see docs features md skipped an unrecognized type \
    carry no vendor confidence document s mean was used when it has none exceed engine limit per \
    layout found";

pub fn tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
}

fn long_word(t: &str) -> bool {
    t.chars().count() >= 4 && t.chars().any(char::is_alphabetic)
}

/// Text values and identity tokens of an extractor output, found without the adapters.
#[derive(Default, Debug)]
pub struct SourceText {
    /// Whole text values (lines, words, field values), trimmed, at least 4 characters.
    pub strings: BTreeSet<String>,
    /// Extractor identity tokens the output may legitimately contain.
    pub identity: BTreeSet<String>,
}

impl SourceText {
    fn add_text(&mut self, s: &str) {
        let t = s.trim();
        if t.chars().count() >= 4 {
            self.strings.insert(t.to_string());
        }
    }

    fn walk_json(&mut self, v: &Value, key: Option<&str>, text_keys: &[&str]) {
        match v {
            Value::Object(o) => {
                for (k, v) in o {
                    self.walk_json(v, Some(k), text_keys);
                }
            }
            Value::Array(a) => {
                for x in a {
                    // PaddleOCR lines hold their text as a bare array string.
                    if let Value::String(s) = x {
                        if key.is_none() || key.is_some_and(|k| text_keys.contains(&k)) {
                            self.add_text(s);
                        }
                    }
                    self.walk_json(x, key.filter(|k| text_keys.contains(k)).or(None), text_keys);
                }
            }
            Value::String(s) => match key {
                Some(k) if text_keys.contains(&k) => self.add_text(s),
                Some(k) if IDENTITY_KEYS.contains(&k) => {
                    self.identity.extend(tokens(s).map(str::to_string))
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// Collects the text of `bytes` read as `format`.
    pub fn collect(format: Format, bytes: &[u8]) -> SourceText {
        let mut st = SourceText::default();
        match format {
            Format::TesseractTsv => {
                for line in String::from_utf8_lossy(bytes).lines().skip(1) {
                    if let Some(t) = line.split('\t').nth(11) {
                        st.add_text(t);
                    }
                }
            }
            Format::Hocr => {
                let s = String::from_utf8_lossy(bytes);
                // Text between tags, and the `ocr-system` value (engine identity).
                let mut rest = s.as_ref();
                while let Some(end) = rest.find('>') {
                    rest = &rest[end + 1..];
                    let stop = rest.find('<').unwrap_or(rest.len());
                    st.add_text(&rest[..stop]);
                    // Whole lines of running text, as OCRopus writes them.
                    rest = &rest[stop..];
                }
                if let Some(i) = s.find("ocr-system") {
                    let tail = &s[i..s.len().min(i + 120)];
                    if let Some(c) = tail.find("content=") {
                        let v = &tail[c + 9..];
                        let v = &v[..v.find(['\'', '"']).unwrap_or(v.len())];
                        st.identity.extend(tokens(v).map(str::to_string));
                    }
                }
            }
            _ => {
                let v: Value = serde_json::from_slice(bytes).expect("test input is JSON");
                if let Value::Array(items) = &v {
                    // PaddleOCR: [[poly, "text", score], ...] or [[poly, ["text", score]], ...]
                    fn strings(v: &Value, st: &mut SourceText) {
                        match v {
                            Value::String(s) => st.add_text(s),
                            Value::Array(a) => a.iter().for_each(|x| strings(x, st)),
                            _ => {}
                        }
                    }
                    items.iter().for_each(|x| strings(x, &mut st));
                } else {
                    let mut text_keys = TEXT_KEYS.to_vec();
                    if format == Format::Docling {
                        text_keys.extend(DOCLING_TEXT_KEYS);
                    }
                    st.walk_json(&v, None, &text_keys);
                }
            }
        }
        st
    }
}

/// Fails when any source text value of 4+ characters, or any 4+ character word of one, shows
/// up in the serialized output (apart from the adapters' own vocabulary and the extractor's
/// identity fields), or when a warning uses a word outside the warning templates.
pub fn assert_no_text(label: &str, out: &AdapterOutput, src: &SourceText) {
    let json = serde_json::to_string(out).expect("serializable");
    let value: Value = serde_json::from_str(&json).expect("valid JSON");
    let mut out_tokens: BTreeSet<String> = BTreeSet::new();
    fn walk(v: &Value, acc: &mut BTreeSet<String>) {
        match v {
            Value::Object(o) => {
                for (k, v) in o {
                    acc.extend(tokens(k).map(str::to_string));
                    walk(v, acc);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, acc)),
            Value::String(s) => acc.extend(tokens(s).map(str::to_string)),
            _ => {}
        }
    }
    walk(&value, &mut out_tokens);
    let allowed: BTreeSet<String> = tokens(OWN_VOCABULARY)
        .chain(tokens(WARNING_VOCABULARY))
        .map(str::to_lowercase)
        .chain(src.identity.iter().map(|s| s.to_lowercase()))
        .collect();
    for s in &src.strings {
        if s.contains(' ') {
            assert!(
                !json.contains(s.as_str()),
                "{label}: source line {s:?} leaked into the output"
            );
        }
        for t in tokens(s).filter(|t| long_word(t)) {
            if allowed.contains(&t.to_lowercase()) {
                continue;
            }
            assert!(
                !out_tokens.contains(t),
                "{label}: source word {t:?} leaked into the output"
            );
        }
    }
    let warning_words: BTreeSet<&str> = tokens(WARNING_VOCABULARY).collect();
    for w in &out.warnings {
        for t in tokens(w).filter(|t| t.chars().any(char::is_alphabetic)) {
            assert!(
                warning_words.contains(t.to_lowercase().as_str()),
                "{label}: warning word {t:?} is not from a warning template: {w}"
            );
        }
    }
}
