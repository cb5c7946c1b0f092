//! Extractor adapters: turn the native output of an OCR / document-extraction service
//! (AWS Textract, Azure Document Intelligence, Google Document AI / Cloud Vision, Tesseract
//! TSV and hOCR, PaddleOCR / RapidOCR, docling) into preflight's wire-level
//! [`StructuralFeatures`], a suggested [`ExtractorMetadata`] and the engine's canonical
//! layout fingerprint.
//!
//! Only geometry, element types, counts and confidences leave this crate: no text from the
//! document is ever copied into the output. Every derived feature is specified in
//! `docs/features.md`; the code implements exactly those definitions.
//!
//! The public surface is deliberately small: [`features_from_bytes`] (with
//! [`features_from_bytes_with`] for the one option that exists), [`detect_format`],
//! [`Format`], [`FormatChoice`] (a format as a caller names it, `tesseract` included),
//! [`AdapterOutput`], [`AdapterOptions`] and [`AdapterError`].

mod azure;
mod derive;
mod docling;
mod error;
mod format;
mod google;
mod hocr;
mod json;
mod layout;
mod paddle;
mod textract;
mod time;
mod tsv;

use serde::Serialize;

pub use error::AdapterError;
pub use format::{detect_format, Format, FormatChoice};
pub use preflight_engine::{BoundingBox, ElementType, ExtractorMetadata, StructuralFeatures};

/// Everything the adapters derive from one extractor output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdapterOutput {
    /// The format the input was read as (detected or forced).
    pub format: Format,
    /// Number of pages of the document (same as `structural_features.page_count`).
    pub pages: usize,
    /// The engine's canonical layout fingerprint of `structural_features` (SHA-256 hex).
    pub layout_fingerprint: String,
    pub structural_features: StructuralFeatures,
    /// A suggestion built from what the document says about its extractor; a pipeline that
    /// knows better (real latency, cost) should overwrite the fields it knows.
    pub extractor_metadata: ExtractorMetadata,
    /// Things the caller should know about the conversion (clamped boxes, estimated page
    /// sizes, skipped elements). Never contains document text.
    pub warnings: Vec<String>,
}

/// Options for formats that lack information the adapters need.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AdapterOptions {
    /// Page size in the input's own units (pixels for PaddleOCR). Used only by formats that
    /// carry no page size (PaddleOCR / RapidOCR results, and Tesseract/hOCR pages whose size
    /// is missing); ignored by every format that states its page size.
    pub page_size: Option<PageSize>,
}

/// A page size in the units of the input's coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageSize {
    pub width: f64,
    pub height: f64,
}

/// Reads one extractor output and derives its structural features.
///
/// `format` forces a parser; `None` detects it with [`detect_format`]. Unknown, malformed or
/// box-less inputs give an [`AdapterError`]; this function never panics on any input.
pub fn features_from_bytes(
    bytes: &[u8],
    format: Option<Format>,
) -> Result<AdapterOutput, AdapterError> {
    features_from_bytes_with(bytes, format, &AdapterOptions::default())
}

/// [`features_from_bytes`] with [`AdapterOptions`].
pub fn features_from_bytes_with(
    bytes: &[u8],
    format: Option<Format>,
    options: &AdapterOptions,
) -> Result<AdapterOutput, AdapterError> {
    if let Some(size) = options.page_size {
        if !(size.width.is_finite() && size.height.is_finite())
            || size.width <= 0.0
            || size.height <= 0.0
        {
            return Err(AdapterError::InvalidOption(
                "page_size must have finite, positive width and height".into(),
            ));
        }
    }
    let input = format::Input::read(bytes, format)?;
    let layout = match &input {
        format::Input::Json(Format::Textract, v) => textract::parse(v)?,
        format::Input::Json(Format::Azure, v) => azure::parse(v)?,
        format::Input::Json(Format::Google, v) => google::parse(v)?,
        format::Input::Json(Format::Paddleocr, v) => paddle::parse(v, options.page_size)?,
        format::Input::Json(Format::Docling, v) => docling::parse(v)?,
        format::Input::Text(Format::TesseractTsv, s) => tsv::parse(s, options.page_size)?,
        format::Input::Text(Format::Hocr, s) => hocr::parse(s, options.page_size)?,
        // `Input::read` pairs JSON formats with parsed JSON and text formats with text.
        format::Input::Json(f, _) | format::Input::Text(f, _) => {
            return Err(AdapterError::Malformed {
                format: *f,
                detail: "input kind does not match the format".into(),
            })
        }
    };
    Ok(derive::finish(input.format(), layout))
}
