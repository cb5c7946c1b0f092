//! preflight's decision engine: a pure library (no I/O, no async, no clock, no global state)
//! that identifies a document's layout among a tenant's templates and decides
//! MATCH / REVIEW / NEW / REJECT with reasons, drift and reliability.
//!
//! Entry points: [`validate`] turns wire features into a [`ValidatedDocument`] (or a list of
//! field errors for a 422), [`TemplateIndex`] holds a tenant's [`Template`]s, and [`evaluate`]
//! produces an [`Evaluation`]. See `docs/engine.md` for the design and its parameters.

mod align;
pub mod calibration;
pub mod cluster;
pub mod drift;
pub mod evaluate;
pub mod features;
pub mod fingerprint;
pub mod index;
pub mod reliability;
pub mod shape;
mod sketch;
pub mod template;
pub mod validate;

pub use cluster::{cluster_key, cluster_layouts, ClusterInput, ClusterParams, LayoutCluster};
pub use drift::{ChangePoint, DriftDetectorState, DriftObservation, DriftSeries};
pub use evaluate::{
    evaluate, Candidate, ClosestTemplate, Decision, DriftComponent, Evaluation, Policy, Reason,
};
pub use features::{BoundingBox, ElementType, ExtractorMetadata, StructuralFeatures};
pub use fingerprint::{layout_fingerprint, replay_hash};
pub use index::TemplateIndex;
pub use reliability::{reliability_score, ReliabilityInputs};
pub use shape::{input_shape_problems, WireField, WireKind};
pub use template::{CorrectionRule, ExtractorIdentity, OutcomeStats, Template};
pub use validate::{validate, FieldError, ValidatedDocument, ValidationErrors};

/// Measurement hooks for the quality example and benches (not a stable API).
#[doc(hidden)]
pub mod diagnostics {
    use crate::{Template, ValidatedDocument};

    /// Raw layout similarity of a document to a template (0..1).
    pub fn similarity(doc: &ValidatedDocument, t: &Template) -> f64 {
        crate::sketch::similarity(&doc.sketch, t).total
    }

    /// Per-document drift score (0..1) of a document against a given template, whether or
    /// not `evaluate` would report that template (the quality benchmark measures drift of
    /// perturbed layouts against their source template, including ones that became NEW).
    pub fn drift(doc: &ValidatedDocument, t: &Template) -> f64 {
        let sim = crate::sketch::similarity(&doc.sketch, t);
        crate::drift::document_drift(&sim, t).0
    }

    /// Coarse (grids and scalars) similarity of a document to a template.
    pub fn coarse_similarity(doc: &ValidatedDocument, t: &Template) -> f64 {
        crate::sketch::coarse_similarity(&doc.sketch, &t.cells, &t.scalar_mean).coarse
    }

    pub use crate::align::AlignParams;

    /// Box-alignment similarity of a document to a template (closest exemplar) with
    /// explicit tolerances.
    pub fn align_similarity(doc: &ValidatedDocument, t: &Template, p: &AlignParams) -> f64 {
        t.align_with(&doc.sketch.boxes, p)
    }

    /// Exact Jaccard between the document's and the template's LSH token sets.
    pub fn token_jaccard(doc: &ValidatedDocument, t: &Template) -> f64 {
        let a = doc.sketch.tokens();
        let b = t.tokens();
        let inter = a.iter().filter(|k| b.binary_search(k).is_ok()).count();
        let union = a.len() + b.len() - inter;
        if union == 0 {
            1.0
        } else {
            inter as f64 / union as f64
        }
    }

    /// Number of (band, template) LSH collisions of a document in an index.
    pub fn lsh_hits(index: &crate::TemplateIndex, doc: &ValidatedDocument) -> usize {
        index.lsh_hits(&doc.sketch.signature)
    }

    /// LSH (bands, rows).
    pub fn lsh_parameters() -> (usize, usize) {
        (crate::sketch::LSH_BANDS, crate::sketch::LSH_ROWS)
    }
}

/// Version of the decision logic. It is part of every replay hash: a change to scoring,
/// calibration or the canonical forms must bump it so old hashes are never silently reused.
pub const ENGINE_VERSION: &str = "1.2.0";
