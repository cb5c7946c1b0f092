//! The wire shape of the engine's input types, checked over raw JSON before serde reads it.
//!
//! serde stops at the first field it cannot read; a pipeline whose adapter is wrong wants
//! every problem at once, each with its path. So each input type declares its fields here,
//! next to one checker, and a test keeps the declarations equal to what serde reads and
//! writes: a field added to [`StructuralFeatures`], [`BoundingBox`] or [`ExtractorMetadata`]
//! without its entry fails that test instead of slipping past the check.

use serde_json::{Map, Value};

use crate::features::{BoundingBox, ExtractorMetadata, StructuralFeatures};
use crate::validate::{FieldError, ValidationErrors};

/// The JSON type a field must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireKind {
    Integer,
    Number,
    Bool,
    String,
    Array,
}

impl WireKind {
    pub fn matches(self, v: &Value) -> bool {
        match self {
            WireKind::Integer => v.as_i64().is_some(),
            WireKind::Number => v.is_number(),
            WireKind::Bool => v.is_boolean(),
            WireKind::String => v.is_string(),
            WireKind::Array => v.is_array(),
        }
    }

    /// How the type is named in an error message ("must be a whole number").
    pub fn name(self) -> &'static str {
        match self {
            WireKind::Integer => "a whole number",
            WireKind::Number => "a number",
            WireKind::Bool => "true or false",
            WireKind::String => "a string",
            WireKind::Array => "an array",
        }
    }
}

/// One field of a wire object: its name, JSON type and whether it may be left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireField {
    pub name: &'static str,
    pub kind: WireKind,
    pub required: bool,
}

const fn required(name: &'static str, kind: WireKind) -> WireField {
    WireField {
        name,
        kind,
        required: true,
    }
}

const fn optional(name: &'static str, kind: WireKind) -> WireField {
    WireField {
        name,
        kind,
        required: false,
    }
}

impl StructuralFeatures {
    pub const WIRE_FIELDS: [WireField; 11] = [
        required("element_count", WireKind::Integer),
        required("table_count", WireKind::Integer),
        required("text_block_count", WireKind::Integer),
        required("image_count", WireKind::Integer),
        required("page_count", WireKind::Integer),
        required("text_density", WireKind::Number),
        required("layout_complexity", WireKind::Number),
        required("column_count", WireKind::Integer),
        required("has_header", WireKind::Bool),
        required("has_footer", WireKind::Bool),
        required("bounding_boxes", WireKind::Array),
    ];
}

impl BoundingBox {
    pub const WIRE_FIELDS: [WireField; 8] = [
        required("x", WireKind::Number),
        required("y", WireKind::Number),
        required("width", WireKind::Number),
        required("height", WireKind::Number),
        required("element_type", WireKind::String),
        required("confidence", WireKind::Number),
        required("reading_order", WireKind::Integer),
        optional("page", WireKind::Integer),
    ];
}

impl ExtractorMetadata {
    pub const WIRE_FIELDS: [WireField; 6] = [
        required("vendor", WireKind::String),
        required("model", WireKind::String),
        required("version", WireKind::String),
        required("confidence", WireKind::Number),
        required("latency_ms", WireKind::Number),
        optional("cost_usd", WireKind::Number),
    ];
}

/// Checks one object's fields; `null` counts as absent. Unknown fields are left to serde.
pub fn check_object(
    obj: &Map<String, Value>,
    path: &str,
    fields: &[WireField],
    errors: &mut Vec<FieldError>,
) {
    for field in fields {
        let at = || format!("{path}.{}", field.name);
        match obj.get(field.name) {
            None | Some(Value::Null) if field.required => errors.push(FieldError {
                field: at(),
                message: "is required".into(),
            }),
            None | Some(Value::Null) => {}
            Some(value) if !field.kind.matches(value) => errors.push(FieldError {
                field: at(),
                message: format!("must be {}", field.kind.name()),
            }),
            Some(_) => {}
        }
    }
}

/// Every shape problem of a `structural_features` value at `path`, boxes included.
fn check_features(value: Option<&Value>, path: &str, errors: &mut Vec<FieldError>) {
    let features = match value {
        Some(Value::Object(f)) => f,
        Some(_) => return object_expected(path, errors),
        None => return required_missing(path, errors),
    };
    check_object(features, path, &StructuralFeatures::WIRE_FIELDS, errors);
    if let Some(Value::Array(boxes)) = features.get("bounding_boxes") {
        for (i, b) in boxes.iter().enumerate() {
            let at = format!("{path}.bounding_boxes[{i}]");
            match b.as_object() {
                Some(b) => check_object(b, &at, &BoundingBox::WIRE_FIELDS, errors),
                None => object_expected(&at, errors),
            }
        }
    }
}

fn check_extractor(value: Option<&Value>, path: &str, errors: &mut Vec<FieldError>) {
    match value {
        Some(Value::Object(e)) => check_object(e, path, &ExtractorMetadata::WIRE_FIELDS, errors),
        Some(_) => object_expected(path, errors),
        None => required_missing(path, errors),
    }
}

fn object_expected(path: &str, errors: &mut Vec<FieldError>) {
    errors.push(FieldError {
        field: path.to_string(),
        message: "must be an object".into(),
    });
}

fn required_missing(path: &str, errors: &mut Vec<FieldError>) {
    errors.push(FieldError {
        field: path.to_string(),
        message: "is required".into(),
    });
}

/// Every shape problem of the `structural_features` and `extractor_metadata` members of
/// `request` (a JSON object), with paths under `prefix` (e.g. `documents[3].`). Empty when
/// both members will deserialize.
pub fn input_shape_problems(request: &Map<String, Value>, prefix: &str) -> ValidationErrors {
    let mut errors = Vec::new();
    check_features(
        request.get("structural_features"),
        &format!("{prefix}structural_features"),
        &mut errors,
    );
    check_extractor(
        request.get("extractor_metadata"),
        &format!("{prefix}extractor_metadata"),
        &mut errors,
    );
    ValidationErrors(errors)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn sample() -> (StructuralFeatures, ExtractorMetadata) {
        let bbox = BoundingBox {
            x: 0.1,
            y: 0.1,
            width: 0.5,
            height: 0.05,
            element_type: "text".into(),
            confidence: 0.9,
            reading_order: 0,
            page: Some(0),
        };
        let features = StructuralFeatures {
            element_count: 1,
            table_count: 0,
            text_block_count: 1,
            image_count: 0,
            page_count: 1,
            text_density: 0.2,
            layout_complexity: 0.3,
            column_count: 1,
            has_header: false,
            has_footer: false,
            bounding_boxes: vec![bbox],
        };
        let extractor = ExtractorMetadata {
            vendor: "aws".into(),
            model: "textract".into(),
            version: "1".into(),
            confidence: 0.9,
            latency_ms: 10.0,
            cost_usd: Some(0.01),
        };
        (features, extractor)
    }

    /// The declared fields are exactly the fields serde writes (every optional one set),
    /// each of the declared JSON type.
    fn assert_in_sync(value: Value, fields: &[WireField]) {
        let obj = value.as_object().expect("an object");
        let written: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
        let declared: BTreeSet<&str> = fields.iter().map(|f| f.name).collect();
        assert_eq!(
            written, declared,
            "declared wire fields differ from serde's"
        );
        for f in fields {
            assert!(
                f.kind.matches(&obj[f.name]),
                "{} is not {:?}",
                f.name,
                f.kind
            );
        }
    }

    #[test]
    fn declared_fields_are_the_fields_serde_reads_and_writes() {
        let (features, extractor) = sample();
        assert_in_sync(
            serde_json::to_value(&features.bounding_boxes[0]).unwrap(),
            &BoundingBox::WIRE_FIELDS,
        );
        assert_in_sync(
            serde_json::to_value(&features).unwrap(),
            &StructuralFeatures::WIRE_FIELDS,
        );
        assert_in_sync(
            serde_json::to_value(&extractor).unwrap(),
            &ExtractorMetadata::WIRE_FIELDS,
        );
    }

    #[test]
    fn a_required_field_left_out_is_both_a_shape_problem_and_a_serde_error() {
        let (features, extractor) = sample();
        let full =
            serde_json::json!({"structural_features": features, "extractor_metadata": extractor});
        let cases = [
            ("structural_features", &StructuralFeatures::WIRE_FIELDS[..]),
            ("extractor_metadata", &ExtractorMetadata::WIRE_FIELDS[..]),
        ];
        for (member, fields) in cases {
            for f in fields.iter().filter(|f| f.required) {
                let mut body = full.clone();
                body[member].as_object_mut().unwrap().remove(f.name);
                let problems = input_shape_problems(body.as_object().unwrap(), "");
                let path = format!("{member}.{}", f.name);
                assert!(
                    problems.iter().any(|e| e.field == path),
                    "{path} not reported"
                );
                let parsed = match member {
                    "structural_features" => {
                        serde_json::from_value::<StructuralFeatures>(body[member].clone()).is_ok()
                    }
                    _ => serde_json::from_value::<ExtractorMetadata>(body[member].clone()).is_ok(),
                };
                assert!(
                    !parsed,
                    "serde accepts {path} missing, the check refuses it"
                );
            }
        }
        assert!(input_shape_problems(full.as_object().unwrap(), "").is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let body = serde_json::json!({
            "structural_features": {"element_count": "many", "bounding_boxes": [{"x": 1, "page": "one"}, 3]},
        });
        let problems = input_shape_problems(body.as_object().unwrap(), "documents[2].");
        let fields: Vec<&str> = problems.iter().map(|e| e.field.as_str()).collect();
        for expected in [
            "documents[2].structural_features.element_count",
            "documents[2].structural_features.table_count",
            "documents[2].structural_features.bounding_boxes[0].y",
            "documents[2].structural_features.bounding_boxes[0].page",
            "documents[2].structural_features.bounding_boxes[1]",
            "documents[2].extractor_metadata",
        ] {
            assert!(
                fields.contains(&expected),
                "{expected} missing from {fields:?}"
            );
        }
    }
}
