//! Wire-level layout metadata: what a pipeline sends about one extracted document.
//!
//! These types mirror the `structural_features` and `extractor_metadata` objects of the
//! public API field for field, so existing clients keep working. They carry no text from the
//! document. They are deliberately permissive to deserialize (any numbers, any element type
//! string); `crate::validate` turns them into checked values before any scoring happens.

use serde::{Deserialize, Serialize};

/// Structural features of one extracted document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StructuralFeatures {
    pub element_count: i64,
    pub table_count: i64,
    pub text_block_count: i64,
    pub image_count: i64,
    pub page_count: i64,
    /// Share of the page area covered by text elements, 0..1.
    pub text_density: f64,
    /// How structured the layout is, 0..1 (see docs/features.md for the adapters' definition).
    pub layout_complexity: f64,
    pub column_count: i64,
    pub has_header: bool,
    pub has_footer: bool,
    pub bounding_boxes: Vec<BoundingBox>,
}

/// One layout element: a normalized box (0..1 of its page), its type and confidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    /// One of [`ElementType`]'s names; unknown names are kept and treated as `other`.
    pub element_type: String,
    pub confidence: f64,
    pub reading_order: i64,
    /// Zero-based page index for multi-page documents; absent means page 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<i64>,
}

/// What the client's extractor said about itself for this document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractorMetadata {
    pub vendor: String,
    pub model: String,
    pub version: String,
    /// The extractor's overall confidence for the document, 0..1.
    pub confidence: f64,
    pub latency_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// The element vocabulary the engine reasons about. Adapters map vendor block types onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ElementType {
    /// A line or block of running text.
    Text,
    Title,
    Heading,
    List,
    Table,
    TableCell,
    Figure,
    /// A key of a key/value pair (form field label).
    Key,
    /// The value of a key/value pair (form field value).
    Value,
    SelectionMark,
    Header,
    Footer,
    PageNumber,
    Signature,
    Barcode,
    Formula,
    Other,
}

impl ElementType {
    pub const ALL: [ElementType; 17] = [
        ElementType::Text,
        ElementType::Title,
        ElementType::Heading,
        ElementType::List,
        ElementType::Table,
        ElementType::TableCell,
        ElementType::Figure,
        ElementType::Key,
        ElementType::Value,
        ElementType::SelectionMark,
        ElementType::Header,
        ElementType::Footer,
        ElementType::PageNumber,
        ElementType::Signature,
        ElementType::Barcode,
        ElementType::Formula,
        ElementType::Other,
    ];

    /// The wire name, as used in `element_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ElementType::Text => "text",
            ElementType::Title => "title",
            ElementType::Heading => "heading",
            ElementType::List => "list",
            ElementType::Table => "table",
            ElementType::TableCell => "table_cell",
            ElementType::Figure => "figure",
            ElementType::Key => "key",
            ElementType::Value => "value",
            ElementType::SelectionMark => "selection_mark",
            ElementType::Header => "header",
            ElementType::Footer => "footer",
            ElementType::PageNumber => "page_number",
            ElementType::Signature => "signature",
            ElementType::Barcode => "barcode",
            ElementType::Formula => "formula",
            ElementType::Other => "other",
        }
    }

    /// Parses a wire name, accepting common synonyms clients of the old API sent
    /// (`paragraph`, `line`, `image`, `checkbox`, ...). Unknown names give `None`.
    pub fn parse(name: &str) -> Option<ElementType> {
        let lower = name.trim().to_ascii_lowercase();
        let t = match lower.as_str() {
            "text" | "line" | "word" | "paragraph" | "text_block" | "block" => ElementType::Text,
            "title" => ElementType::Title,
            "heading" | "section_header" | "section" | "subtitle" => ElementType::Heading,
            "list" | "list_item" => ElementType::List,
            "table" => ElementType::Table,
            "table_cell" | "cell" => ElementType::TableCell,
            "figure" | "image" | "picture" | "logo" => ElementType::Figure,
            "key" | "form_key" | "field_label" => ElementType::Key,
            "value" | "form_value" | "field" | "field_value" | "key_value" => ElementType::Value,
            "selection_mark" | "checkbox" | "selection_element" => ElementType::SelectionMark,
            "header" | "page_header" => ElementType::Header,
            "footer" | "page_footer" => ElementType::Footer,
            "page_number" => ElementType::PageNumber,
            "signature" => ElementType::Signature,
            "barcode" | "qr_code" => ElementType::Barcode,
            "formula" | "equation" => ElementType::Formula,
            "other" => ElementType::Other,
            _ => return None,
        };
        Some(t)
    }
}
