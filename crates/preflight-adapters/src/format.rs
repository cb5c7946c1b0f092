//! Input formats: their names, auto-detection from the bytes, and the first parsing step
//! (JSON or text) shared by detection and the parsers so a file is parsed only once.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

use crate::error::AdapterError;

/// A supported extractor output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// AWS Textract responses: DetectDocumentText, AnalyzeDocument, AnalyzeExpense, AnalyzeID.
    Textract,
    /// Azure Form Recognizer 2.x and Document Intelligence 3.x/4.x analyze results.
    Azure,
    /// Google Document AI `Document` JSON, or a Cloud Vision `images:annotate` response.
    Google,
    /// Tesseract `tsv` output (12 columns).
    TesseractTsv,
    /// hOCR (Tesseract, OCRopus, ...).
    Hocr,
    /// PaddleOCR 2.x `ocr()` / RapidOCR line results.
    Paddleocr,
    /// docling `DoclingDocument` JSON (docling-core schema 1.x).
    Docling,
}

impl Format {
    /// The canonical names accepted by [`Format::from_str`], in declaration order.
    pub const NAMES: [&'static str; 7] = [
        "textract",
        "azure",
        "google",
        "tesseract-tsv",
        "hocr",
        "paddleocr",
        "docling",
    ];

    /// Every format, in the order of [`Format::NAMES`].
    pub const ALL: [Format; 7] = [
        Format::Textract,
        Format::Azure,
        Format::Google,
        Format::TesseractTsv,
        Format::Hocr,
        Format::Paddleocr,
        Format::Docling,
    ];

    /// The canonical name (`textract`, `tesseract-tsv`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Format::Textract => "textract",
            Format::Azure => "azure",
            Format::Google => "google",
            Format::TesseractTsv => "tesseract-tsv",
            Format::Hocr => "hocr",
            Format::Paddleocr => "paddleocr",
            Format::Docling => "docling",
        }
    }

    fn is_json(self) -> bool {
        matches!(
            self,
            Format::Textract | Format::Azure | Format::Google | Format::Paddleocr | Format::Docling
        )
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = AdapterError;

    /// Accepts the canonical names and a few common aliases, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let f = match lower.as_str() {
            "textract" | "aws-textract" | "aws" => Format::Textract,
            "azure"
            | "azure-document-intelligence"
            | "document-intelligence"
            | "form-recognizer" => Format::Azure,
            "google" | "document-ai" | "docai" | "google-document-ai" | "google-vision"
            | "vision" => Format::Google,
            "tesseract-tsv" | "tsv" => Format::TesseractTsv,
            "hocr" | "tesseract-hocr" => Format::Hocr,
            "paddleocr" | "paddle" | "rapidocr" => Format::Paddleocr,
            "docling" | "docling-json" | "docling-document" | "doclingdocument" => Format::Docling,
            _ => {
                let hint = if lower == "tesseract" {
                    "Tesseract writes two formats: use tesseract-tsv or hocr".to_string()
                } else {
                    format!("expected one of: {}", Format::NAMES.join(", "))
                };
                // Names come from the caller, not the document; cap them anyway so an
                // error message stays one line.
                let name: String = s.chars().take(64).collect();
                return Err(AdapterError::UnknownFormatName { name, hint });
            }
        };
        Ok(f)
    }
}

/// A format as a caller names it (a `--from` flag, a `from_=` argument): one [`Format`], or
/// `tesseract` alone. Tesseract writes two formats, so [`Format::from_str`] refuses the bare
/// name; a caller who only knows "this came from Tesseract" lets the content settle which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatChoice {
    Exact(Format),
    /// Tesseract TSV or hOCR, told apart by the content.
    Tesseract,
}

impl FromStr for FormatChoice {
    type Err = AdapterError;

    /// The names of [`Format::from_str`], plus `tesseract` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("tesseract") {
            return Ok(FormatChoice::Tesseract);
        }
        Format::from_str(s)
            .map(FormatChoice::Exact)
            .map_err(|e| match e {
                AdapterError::UnknownFormatName { name, hint } => AdapterError::UnknownFormatName {
                    name,
                    hint: format!("{hint} (or tesseract)"),
                },
                other => other,
            })
    }
}

impl FormatChoice {
    /// The format to read `bytes` as: the exact one, or for `tesseract` the detected one if
    /// it is TSV or hOCR. Detection looks at the content only, as everywhere.
    pub fn resolve(self, bytes: &[u8]) -> Result<Format, AdapterError> {
        match self {
            FormatChoice::Exact(f) => Ok(f),
            FormatChoice::Tesseract => match detect_format(bytes) {
                Ok(f @ (Format::TesseractTsv | Format::Hocr)) => Ok(f),
                Ok(other) => Err(AdapterError::NotTesseract {
                    detail: format!("this is {other} output, not Tesseract TSV or hOCR"),
                    unrecognized: false,
                }),
                Err(e) => Err(AdapterError::NotTesseract {
                    detail: format!("not Tesseract TSV or hOCR ({e})"),
                    unrecognized: e.is_unrecognized(),
                }),
            },
        }
    }
}

/// The input after the first parsing step.
pub(crate) enum Input<'a> {
    Json(Format, Value),
    Text(Format, &'a str),
}

impl<'a> Input<'a> {
    pub(crate) fn format(&self) -> Format {
        match self {
            Input::Json(f, _) | Input::Text(f, _) => *f,
        }
    }

    /// Parses `bytes` as `format` (JSON or text), or detects the format when `None`.
    pub(crate) fn read(bytes: &'a [u8], format: Option<Format>) -> Result<Self, AdapterError> {
        let body = strip_bom(bytes);
        match format {
            Some(f) if f.is_json() => {
                let v = parse_json(body).map_err(|e| AdapterError::malformed(f, e))?;
                Ok(Input::Json(f, v))
            }
            Some(f) => {
                let s = std::str::from_utf8(body)
                    .map_err(|e| AdapterError::malformed(f, format!("not UTF-8 text ({e})")))?;
                Ok(Input::Text(f, s))
            }
            None => detect(body),
        }
    }
}

/// Detects the format of an extractor output from its content (never from a file name).
pub fn detect_format(bytes: &[u8]) -> Result<Format, AdapterError> {
    detect(strip_bom(bytes)).map(|i| i.format())
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

fn parse_json(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON ({e})"))
}

fn detect(body: &[u8]) -> Result<Input<'_>, AdapterError> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Err(AdapterError::UnknownFormat("the input is empty".into()));
    };
    if matches!(body[start], b'{' | b'[') {
        let v = parse_json(body).map_err(AdapterError::UnknownFormat)?;
        let f = detect_json(&v).ok_or_else(|| {
            AdapterError::UnknownFormat(
                "JSON that is not a Textract, Azure, Google, PaddleOCR or docling result".into(),
            )
        })?;
        return Ok(Input::Json(f, v));
    }
    let s = std::str::from_utf8(body)
        .map_err(|_| AdapterError::UnknownFormat("neither JSON nor UTF-8 text".into()))?;
    if is_tsv(s) {
        return Ok(Input::Text(Format::TesseractTsv, s));
    }
    if is_hocr(s) {
        return Ok(Input::Text(Format::Hocr, s));
    }
    Err(AdapterError::UnknownFormat(
        "text that is neither Tesseract TSV nor hOCR".into(),
    ))
}

fn detect_json(v: &Value) -> Option<Format> {
    match v {
        Value::Object(o) => {
            let has = |k: &str| o.contains_key(k);
            // Before Google: a DoclingDocument has `pages` too (a map, not a list).
            if crate::docling::looks_like_docling(o) {
                return Some(Format::Docling);
            }
            if has("Blocks")
                || has("ExpenseDocuments")
                || has("IdentityDocuments")
                || has("DocumentMetadata")
            {
                return Some(Format::Textract);
            }
            if has("analyzeResult")
                || has("readResults")
                || (has("pages") && (has("apiVersion") || has("modelId")))
            {
                return Some(Format::Azure);
            }
            if has("pages")
                || has("documentLayout")
                || has("responses")
                || has("fullTextAnnotation")
                || (has("text") && has("mimeType"))
            {
                return Some(Format::Google);
            }
            None
        }
        Value::Array(items) => {
            // PaddleOCR/RapidOCR: a list of lines, or a list of pages (null or a list of lines).
            let plausible = items.iter().all(|it| match it {
                Value::Null => true,
                Value::Array(a) => {
                    a.is_empty()
                        || crate::paddle::looks_like_line(a)
                        || crate::paddle::looks_like_page(a)
                }
                _ => false,
            });
            plausible.then_some(Format::Paddleocr)
        }
        _ => None,
    }
}

/// The first non-empty line is Tesseract's TSV header, or a 12-column row of numbers.
fn is_tsv(s: &str) -> bool {
    let Some(first) = s.lines().find(|l| !l.trim().is_empty()) else {
        return false;
    };
    if first.starts_with("level\tpage_num\tblock_num") {
        return true;
    }
    let cols: Vec<&str> = first.split('\t').collect();
    (11..=12).contains(&cols.len()) && cols[..10].iter().all(|c| c.trim().parse::<i64>().is_ok())
}

fn is_hocr(s: &str) -> bool {
    // hOCR is identified by its class vocabulary; plain HTML without it is not hOCR.
    let head = &s[..floor_char_boundary(s, 1 << 20)];
    head.contains("ocr_page")
        || head.contains("ocr_line")
        || head.contains("ocrx_word")
        || head.contains("ocr-system")
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (f, n) in Format::ALL.iter().zip(Format::NAMES) {
            assert_eq!(f.name(), n);
            assert_eq!(n.parse::<Format>().unwrap(), *f);
            assert_eq!(serde_json::to_value(f).unwrap(), Value::String(n.into()));
        }
    }

    #[test]
    fn ambiguous_and_unknown_names_are_errors() {
        let e = "tesseract".parse::<Format>().unwrap_err();
        assert!(e.to_string().contains("tesseract-tsv or hocr"), "{e}");
        let e = "pdf".parse::<Format>().unwrap_err();
        assert!(e.to_string().contains("textract, azure"), "{e}");
    }

    #[test]
    fn tesseract_choice_resolves_by_content() {
        let choice: FormatChoice = "Tesseract".parse().unwrap();
        assert_eq!(choice, FormatChoice::Tesseract);
        let tsv = b"level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n";
        assert_eq!(choice.resolve(tsv).unwrap(), Format::TesseractTsv);
        let e = choice.resolve(b"{\"Blocks\": []}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "tesseract: this is textract output, not Tesseract TSV or hOCR"
        );
        assert!(!e.is_unrecognized());
        let e = choice.resolve(b"hello world").unwrap_err();
        assert!(e.is_unrecognized(), "{e}");
        assert_eq!(
            "tsv".parse::<FormatChoice>().unwrap(),
            FormatChoice::Exact(Format::TesseractTsv)
        );
        let e = "pdf".parse::<FormatChoice>().unwrap_err();
        assert!(e.to_string().ends_with("(or tesseract)"), "{e}");
    }

    #[test]
    fn detection_rejects_unrelated_inputs() {
        for input in [
            &b""[..],
            b"   \n",
            b"{}",
            b"[1,2,3]",
            b"{\"foo\": 1}",
            b"hello world",
            b"<html><body><p>plain</p></body></html>",
            b"\xff\xfe\x00binary",
            b"{\"Blocks\": ",
        ] {
            assert!(
                detect_format(input).is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
