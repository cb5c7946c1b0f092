//! `preflight._native`: the Rust half of the `preflight` Python package.
//!
//! Two things cross this boundary, both as JSON text:
//!
//! * [`features_json`] runs exactly the adapters' code path of `preflight features`
//!   ([`FormatChoice::resolve`], then [`features_from_bytes_with`]) and returns the
//!   serialized [`preflight_adapters::AdapterOutput`], so Python sees the same numbers, byte
//!   for byte, as the CLI prints;
//! * [`Engine`] holds a [`TemplateIndex`] built from exported templates and evaluates
//!   documents with [`preflight_engine::evaluate`] and [`Policy::default`], as the server does.
//!
//! JSON rather than Python objects built field by field: `serde_json` is the serializer the
//! CLI and the server use, so float formatting and field order are theirs by construction,
//! and `json.loads` on the Python side is a single C call. The heavy work runs with the
//! interpreter detached, so other Python threads keep running.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use preflight_adapters::{
    features_from_bytes_with, AdapterError as RustAdapterError, AdapterOptions, FormatChoice,
    PageSize,
};
use preflight_engine::{
    evaluate, validate, CorrectionRule, ExtractorIdentity, ExtractorMetadata, OutcomeStats, Policy,
    Reason, StructuralFeatures, Template, TemplateIndex,
};
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use serde::Deserialize;

// Rust's allocations only (Python objects keep Python's allocator): the same allocator as
// the CLI, so the adapters run at the CLI's speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pyo3::create_exception!(
    _native,
    AdapterError,
    PyValueError,
    "An extractor output could not be turned into structural features. `kind` says why."
);
pyo3::create_exception!(
    _native,
    EngineError,
    PyException,
    "The offline engine refused its templates or a document. `errors` lists (field, message)."
);

/// A stable name for each [`RustAdapterError`] variant, for programs that branch on the cause.
fn adapter_error_kind(e: &RustAdapterError) -> &'static str {
    match e {
        RustAdapterError::UnknownFormat(_) => "unrecognized",
        RustAdapterError::UnknownFormatName { .. } => "unknown_format_name",
        RustAdapterError::Malformed { .. } => "malformed",
        RustAdapterError::NoLayout { .. } => "no_layout",
        RustAdapterError::InvalidOption(_) => "invalid_option",
        RustAdapterError::NotTesseract { .. } => "not_tesseract",
    }
}

fn adapter_err(py: Python<'_>, e: RustAdapterError) -> PyErr {
    let err = AdapterError::new_err(e.to_string());
    // Attributes on the instance rather than extra args, so `str(err)` stays the message.
    // Setting an attribute on a fresh exception instance cannot fail short of memory
    // exhaustion; the error itself must still be raised then, so a failure is ignored.
    let value = err.value(py);
    let _ = value.setattr("kind", adapter_error_kind(&e));
    let _ = value.setattr("unrecognized", e.is_unrecognized());
    err
}

fn engine_err(py: Python<'_>, message: String, errors: Vec<(String, String)>) -> PyErr {
    let err = EngineError::new_err(message);
    let _ = err.value(py).setattr("errors", errors);
    err
}

/// Structural features of one extractor output, as the JSON text of the adapters' output.
///
/// `from_` is a format name as `preflight features --from` takes it (`None`: detected from
/// the content); `page_width`/`page_height` are the page size in the input's units for
/// formats that carry none (both or neither).
#[pyfunction]
#[pyo3(signature = (data, from_=None, page_width=None, page_height=None))]
fn features_json(
    py: Python<'_>,
    data: &[u8],
    from_: Option<&str>,
    page_width: Option<f64>,
    page_height: Option<f64>,
) -> PyResult<String> {
    let page_size = match (page_width, page_height) {
        (Some(width), Some(height)) => Some(PageSize { width, height }),
        (None, None) => None,
        _ => {
            return Err(PyValueError::new_err(
                "page_size needs both a width and a height",
            ))
        }
    };
    let choice = from_
        .map(FormatChoice::from_str)
        .transpose()
        .map_err(|e| adapter_err(py, e))?;
    let options = AdapterOptions { page_size };
    let result = py.detach(|| {
        let format = choice.map(|c| c.resolve(data)).transpose()?;
        features_from_bytes_with(data, format, &options)
    });
    let output = result.map_err(|e| adapter_err(py, e))?;
    serde_json::to_string(&output).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// One template version as `GET /v1/templates/{id}?include=exemplars` shows it; only the
/// fields the engine needs are read, the rest of the API's object is ignored.
#[derive(Deserialize)]
struct TemplateRecord {
    id: String,
    template_id: String,
    version: i64,
    status: String,
    baseline_reliability: f64,
    #[serde(default)]
    correction_rules: Vec<CorrectionRule>,
    #[serde(default)]
    outcome_stats: BTreeMap<String, OutcomeStats>,
    #[serde(default)]
    seen_extractors: BTreeSet<ExtractorIdentity>,
    #[serde(default)]
    exemplars: Option<Vec<StructuralFeatures>>,
}

/// The part of `POST /v1/evaluate`'s body the engine decides on.
#[derive(Deserialize)]
struct EvaluateInput {
    structural_features: StructuralFeatures,
    extractor_metadata: ExtractorMetadata,
    #[serde(default)]
    layout_fingerprint: Option<String>,
}

/// A tenant's active templates in the engine's index, evaluated in-process.
#[pyclass(module = "preflight._native", frozen)]
struct Engine {
    index: TemplateIndex,
    policy: Policy,
}

#[pymethods]
impl Engine {
    /// Builds the index from a JSON array of template objects (the `templates` of an export).
    /// Versions whose `status` is not `active` are skipped, as the server skips them.
    #[new]
    fn new(py: Python<'_>, templates_json: &str) -> PyResult<Engine> {
        let records: Vec<TemplateRecord> = serde_json::from_str(templates_json)
            .map_err(|e| engine_err(py, format!("templates: {e}"), Vec::new()))?;
        let mut index = TemplateIndex::new();
        for (i, r) in records.into_iter().enumerate() {
            if r.status != "active" {
                continue;
            }
            let Some(exemplars) = r.exemplars else {
                return Err(engine_err(
                    py,
                    format!(
                        "templates[{i}] ({}): no exemplars; export templates with their exemplar layouts",
                        r.template_id
                    ),
                    Vec::new(),
                ));
            };
            // The server builds its index entries exactly like this (registry::engine_template):
            // the version's UUID is the index key and part of the replay hash.
            let mut t = Template::new(
                r.template_id.clone(),
                r.version,
                r.id,
                exemplars,
                r.baseline_reliability,
                r.correction_rules,
            )
            .map_err(|errors| {
                let errors: Vec<(String, String)> = errors
                    .into_vec()
                    .into_iter()
                    .map(|e| (format!("templates[{i}].{}", e.field), e.message))
                    .collect();
                engine_err(
                    py,
                    format!("templates[{i}] ({}) does not build", r.template_id),
                    errors,
                )
            })?;
            t.outcome_stats = r.outcome_stats;
            t.seen_extractors = r.seen_extractors;
            index.insert(t);
        }
        Ok(Engine {
            index,
            policy: Policy::default(),
        })
    }

    /// Number of active template versions held.
    fn __len__(&self) -> usize {
        self.index.len()
    }

    /// Evaluates one document (JSON text of an evaluate request body) and returns the
    /// engine's evaluation as JSON text. Invalid input raises `EngineError` with the same
    /// field errors the server's 422 would list.
    fn evaluate_json(&self, py: Python<'_>, request_json: &str) -> PyResult<String> {
        let result = py.detach(|| -> Result<String, (String, Vec<(String, String)>)> {
            let input: EvaluateInput = serde_json::from_str(request_json)
                .map_err(|e| (format!("body: {e}"), vec![("body".into(), e.to_string())]))?;
            let doc = validate(&input.structural_features, &input.extractor_metadata).map_err(
                |errors| {
                    let errors: Vec<(String, String)> = errors
                        .into_vec()
                        .into_iter()
                        .map(|e| (e.field, e.message))
                        .collect();
                    (
                        format!("{} invalid field(s)", errors.len()),
                        errors,
                    )
                },
            )?;
            let mut evaluation = evaluate(&self.index, &doc, &self.policy);
            // The server adds this warning after the engine (http/evaluate.rs); same text.
            if let Some(fp) = &input.layout_fingerprint {
                if !fp.eq_ignore_ascii_case(&evaluation.layout_fingerprint) {
                    evaluation.warnings.push(Reason::new(
                        "CLIENT_FINGERPRINT_MISMATCH",
                        "the layout_fingerprint sent differs from the canonical one computed by the server",
                    ));
                }
            }
            serde_json::to_string(&evaluation).map_err(|e| (e.to_string(), Vec::new()))
        });
        result.map_err(|(message, errors)| engine_err(py, message, errors))
    }
}

/// The native module; the public API is the `preflight` package around it.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(features_json, m)?)?;
    m.add_class::<Engine>()?;
    m.add("AdapterError", m.py().get_type::<AdapterError>())?;
    m.add("EngineError", m.py().get_type::<EngineError>())?;
    m.add("VERSION", env!("CARGO_PKG_VERSION"))?;
    m.add("ENGINE_VERSION", preflight_engine::ENGINE_VERSION)?;
    Ok(())
}
