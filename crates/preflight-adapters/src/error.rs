//! The adapters' error type. Messages name the format and what is wrong with the input's
//! structure (a JSON path, a line number, a byte offset) but never quote document content,
//! so they are as safe to log as the features themselves.

use crate::format::Format;

/// Why an input could not be turned into structural features.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdapterError {
    /// The bytes are not any supported extractor output (auto-detection failed).
    #[error("unrecognized input: {0}")]
    UnknownFormat(String),
    /// A format name given by the caller is not one of [`Format::NAMES`].
    #[error("unknown format name {name:?}: {hint}")]
    UnknownFormatName { name: String, hint: String },
    /// The input claims (or was forced) to be `format` but its structure is broken.
    #[error("malformed {format} input: {detail}")]
    Malformed { format: Format, detail: String },
    /// A well-formed output that carries no layout geometry at all (for example Google's
    /// Layout Parser, or a splitter/classifier `Document` without page layout).
    #[error("{format} input has no layout geometry: {detail}")]
    NoLayout { format: Format, detail: String },
    /// An [`crate::AdapterOptions`] value is unusable.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// [`crate::FormatChoice::Tesseract`] was asked for, but the input is neither Tesseract
    /// TSV nor hOCR. `unrecognized` is true when the input is no extractor output at all.
    #[error("tesseract: {detail}")]
    NotTesseract { detail: String, unrecognized: bool },
}

impl AdapterError {
    /// True when the input is no extractor output at all (detection failed), as opposed to
    /// a broken or layout-less extractor output. Batch callers may skip such inputs (label
    /// files, manifests) instead of failing on them.
    pub fn is_unrecognized(&self) -> bool {
        matches!(
            self,
            AdapterError::UnknownFormat(_)
                | AdapterError::NotTesseract {
                    unrecognized: true,
                    ..
                }
        )
    }

    pub(crate) fn malformed(format: Format, detail: impl Into<String>) -> Self {
        AdapterError::Malformed {
            format,
            detail: detail.into(),
        }
    }
}
