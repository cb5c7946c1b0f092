//! Behavioural tests of the public API on small hand-made and synthetic fixtures.

#[path = "support/synth.rs"]
mod synth;

use preflight_engine::{
    evaluate, layout_fingerprint, validate, BoundingBox, Decision, DriftDetectorState,
    DriftObservation, Evaluation, OutcomeStats, Policy, StructuralFeatures, Template,
    TemplateIndex,
};
use proptest::prelude::*;
use synth::{document, extractor, features, layout, Rng};

const N: usize = 50;

fn template(seed: u64) -> Template {
    Template::new(
        format!("t{seed}"),
        1,
        format!("t{seed}@1"),
        vec![features(&layout(seed, N))],
        0.95,
        vec![preflight_engine::CorrectionRule {
            field: "total".into(),
            rule: "parse_amount".into(),
            parameters: serde_json::json!({"decimal": "."}),
        }],
    )
    .expect("valid template")
}

fn index_of(seeds: impl IntoIterator<Item = u64>) -> TemplateIndex {
    let mut idx = TemplateIndex::new();
    for s in seeds {
        idx.insert(template(s));
    }
    idx
}

fn eval(idx: &TemplateIndex, f: &StructuralFeatures) -> Evaluation {
    let v = validate(f, &extractor(0.95)).expect("valid request");
    evaluate(idx, &v, &Policy::default())
}

fn codes(e: &Evaluation) -> Vec<&str> {
    e.reasons.iter().map(|r| r.code.as_str()).collect()
}

#[test]
fn identical_layout_matches_with_confidence_one() {
    let idx = index_of(0..20);
    let e = eval(&idx, &features(&layout(7, N)));
    assert_eq!(e.decision, Decision::Match, "{e:?}");
    assert_eq!(e.match_confidence, 1.0);
    assert_eq!(e.template_id.as_deref(), Some("t7"));
    assert_eq!(e.template_version_id.as_deref(), Some("t7@1"));
    assert_eq!(e.template_version, Some(1));
    assert_eq!(e.replay_hash.len(), 64);
    assert_eq!(e.engine_version, preflight_engine::ENGINE_VERSION);
    assert!(e.correction_rules.iter().any(|r| r.rule == "parse_amount"));
}

#[test]
fn scaled_and_offset_layout_matches_the_same_template() {
    let idx = index_of(0..20);
    let mut f = features(&layout(3, N));
    for b in &mut f.bounding_boxes {
        b.x = 0.1 + b.x * 0.8;
        b.y = 0.05 + b.y * 0.85;
        b.width *= 0.8;
        b.height *= 0.85;
    }
    let e = eval(&idx, &f);
    assert_eq!(e.decision, Decision::Match, "{e:?}");
    assert_eq!(e.template_id.as_deref(), Some("t3"));
    assert!(e.match_confidence > 0.99, "{}", e.match_confidence);
    assert_ne!(
        e.layout_fingerprint,
        layout_fingerprint(&features(&layout(3, N)))
    );
}

#[test]
fn natural_variation_matches_and_other_templates_do_not() {
    let idx = index_of(0..30);
    for t in 0..10u64 {
        let e = eval(&idx, &document(t, 1000 + t, N, 0.004, 1));
        assert_eq!(
            e.template_id.as_deref(),
            Some(format!("t{t}").as_str()),
            "{e:?}"
        );
        assert_eq!(e.decision, Decision::Match, "{e:?}");
    }
    // Templates 100.. are not registered: never MATCH.
    for t in 100..120u64 {
        let e = eval(&idx, &document(t, 7, N, 0.004, 0));
        assert_ne!(e.decision, Decision::Match, "{e:?}");
    }
}

#[test]
fn removing_a_template_makes_its_documents_new() {
    let mut idx = index_of(0..5);
    let doc = features(&layout(2, N));
    assert_eq!(eval(&idx, &doc).decision, Decision::Match);
    assert!(idx.remove("t2@1"));
    assert!(!idx.remove("t2@1"));
    assert_eq!(idx.len(), 4);
    let e = eval(&idx, &doc);
    assert_eq!(e.decision, Decision::New, "{e:?}");
    assert!(codes(&e).contains(&"NO_TEMPLATE_CLOSE"));
    assert!(e.template_id.is_none());
}

#[test]
fn insert_replaces_same_version_id() {
    let mut idx = index_of(0..3);
    idx.insert(template(1));
    assert_eq!(idx.len(), 3);
    assert!(idx.approx_memory_bytes() > 0);
}

#[test]
fn lsh_path_finds_the_template_among_many() {
    let mut idx = TemplateIndex::new().with_exhaustive_limit(0);
    for s in 0..500 {
        idx.insert(template(s));
    }
    for t in [0u64, 17, 250, 499] {
        let e = eval(&idx, &document(t, 99 + t, N, 0.004, 1));
        assert_eq!(
            e.template_id.as_deref(),
            Some(format!("t{t}").as_str()),
            "{e:?}"
        );
        // The LSH stage proposes at most COARSE_POOL_FACTOR × max_candidates templates
        // for the coarse score; only max_candidates of them are aligned.
        assert!(
            e.candidates_considered
                <= Policy::default().max_candidates * preflight_engine::index::COARSE_POOL_FACTOR
        );
    }
}

#[test]
fn duplicate_templates_are_ambiguous() {
    let mut idx = index_of(0..3);
    let mut twin = template(1);
    twin.template_id = "twin".into();
    twin.template_version_id = "twin@1".into();
    idx.insert(twin);
    let e = eval(&idx, &features(&layout(1, N)));
    assert_eq!(e.decision, Decision::Review);
    assert!(codes(&e).contains(&"AMBIGUOUS_MATCH"), "{e:?}");
    assert!(e.runner_up.is_some());
}

#[test]
fn evaluation_is_deterministic_and_box_order_irrelevant() {
    let idx = index_of(0..10);
    let f = document(4, 5, N, 0.004, 1);
    let a = eval(&idx, &f);
    let mut g = f.clone();
    g.bounding_boxes.reverse();
    let b = eval(&idx, &g);
    assert_eq!(a, b);
    // A fresh index with a different insertion order gives the same answer.
    let mut idx2 = TemplateIndex::new();
    for s in (0..10).rev() {
        idx2.insert(template(s));
    }
    assert_eq!(a, eval(&idx2, &f));
}

#[test]
fn validation_lists_all_errors_with_paths() {
    let mut f = features(&layout(1, 10));
    f.element_count = -1;
    f.text_density = 1.5;
    f.bounding_boxes[3].confidence = 2.0;
    f.bounding_boxes[4].page = Some(3);
    f.bounding_boxes[5].reading_order = -2;
    f.bounding_boxes[6].element_type = String::new();
    let mut x = extractor(0.9);
    x.vendor = String::new();
    x.latency_ms = -1.0;
    x.confidence = f64::NAN;
    let err = validate(&f, &x).unwrap_err();
    let fields: Vec<&str> = err.iter().map(|e| e.field.as_str()).collect();
    for want in [
        "structural_features.element_count",
        "structural_features.text_density",
        "structural_features.bounding_boxes[3].confidence",
        "structural_features.bounding_boxes[4].page",
        "structural_features.bounding_boxes[5].reading_order",
        "structural_features.bounding_boxes[6].element_type",
        "extractor_metadata.vendor",
        "extractor_metadata.latency_ms",
        "extractor_metadata.confidence",
    ] {
        assert!(fields.contains(&want), "missing {want} in {err}");
    }
    assert_eq!(err.len(), 9, "{err}");
    assert!(err.to_string().contains("bounding_boxes[3].confidence"));
}

#[test]
fn too_many_boxes_is_invalid() {
    let mut f = features(&layout(1, 10));
    let b = f.bounding_boxes[0].clone();
    f.bounding_boxes = vec![b; 10_001];
    let err = validate(&f, &extractor(0.9)).unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(err.0[0].field, "structural_features.bounding_boxes");
}

#[test]
fn empty_extraction_is_rejected() {
    let idx = index_of(0..3);
    let mut f = features(&layout(1, N));
    f.bounding_boxes.clear();
    f.element_count = 0;
    let e = eval(&idx, &f);
    assert_eq!(e.decision, Decision::Reject);
    assert!(codes(&e).contains(&"EMPTY_EXTRACTION"));
    assert_eq!(e.reliability_score, 0.0);
}

#[test]
fn impossible_geometry_is_rejected_even_when_the_layout_matches() {
    let idx = index_of(0..3);
    let mut f = features(&layout(1, N));
    f.bounding_boxes[0].x = f64::NAN;
    f.bounding_boxes[1].width = -0.1;
    f.bounding_boxes[2].y = 1.5;
    let e = eval(&idx, &f);
    assert_eq!(e.decision, Decision::Reject, "{e:?}");
    let g = e
        .reasons
        .iter()
        .find(|r| r.code == "GEOMETRY_INVALID")
        .unwrap();
    assert!(g.message.starts_with("3 of"), "{}", g.message);
}

#[test]
fn a_few_degenerate_boxes_are_dropped_with_a_warning() {
    let idx = index_of(0..3);
    let mut f = features(&layout(1, N));
    // One zero-size box and one slightly (0.05) outside the page: real extractor quirks.
    f.bounding_boxes[1].width = 0.0;
    f.bounding_boxes[2].x = 1.0 - f.bounding_boxes[2].width + 0.05;
    let e = eval(&idx, &f);
    assert_ne!(e.decision, Decision::Reject, "{e:?}");
    assert_eq!(e.template_id.as_deref(), Some("t1"));
    let w = e
        .warnings
        .iter()
        .find(|w| w.code == "GEOMETRY_DEGENERATE_DROPPED")
        .expect("warning");
    let n = f.bounding_boxes.len();
    assert!(
        w.message.starts_with(&format!("2 of {n} ")),
        "{}",
        w.message
    );

    // More than 10 % degenerate boxes: the extraction is broken.
    let mut f = features(&layout(1, N));
    let many = f.bounding_boxes.len() / 10 + 1;
    for b in f.bounding_boxes.iter_mut().take(many) {
        b.height = 0.0;
    }
    let e = eval(&idx, &f);
    assert_eq!(e.decision, Decision::Reject, "{e:?}");
    assert!(codes(&e).contains(&"GEOMETRY_INVALID"));
}

#[test]
fn truncated_box_lists_keep_the_counts_of_the_page() {
    let idx = index_of(0..3);
    // The original SDK sends at most 100 boxes with the counts of the whole page.
    let mut f = features(&layout(1, N));
    let one = f.bounding_boxes.clone();
    while f.bounding_boxes.len() < 100 {
        f.bounding_boxes.extend(one.iter().cloned());
    }
    f.bounding_boxes.truncate(100);
    f.element_count = 380;
    f.text_block_count = 300;
    let e = eval(&idx, &f);
    assert_ne!(e.decision, Decision::Reject, "{e:?}");
    assert!(e.warnings.iter().any(|w| w.code == "BOXES_TRUNCATED"));
    // 99 boxes is no truncation: the same counts are inconsistent.
    f.bounding_boxes.pop();
    let e = eval(&idx, &f);
    assert_eq!(e.decision, Decision::Reject);
    assert!(codes(&e).contains(&"COUNTS_INCONSISTENT"));
}

#[test]
fn extractor_change_is_named_and_the_document_identified() {
    let mut idx = TemplateIndex::new();
    for s in 0..5 {
        idx.insert(template(s).with_seen_extractors([&extractor(0.95)]));
    }
    let f = features(&layout(2, N));
    let e = eval(&idx, &f);
    assert_eq!(e.decision, Decision::Match, "same extractor: {e:?}");
    assert!(!codes(&e).contains(&"EXTRACTOR_CHANGED"));
    let mut newer = extractor(0.95);
    newer.version = "2.0".into();
    let v = validate(&f, &newer).unwrap();
    let e = evaluate(&idx, &v, &Policy::default());
    assert_eq!(e.decision, Decision::Review, "{e:?}");
    assert_eq!(e.template_id.as_deref(), Some("t2"));
    let r = e
        .reasons
        .iter()
        .find(|r| r.code == "EXTRACTOR_CHANGED")
        .unwrap();
    assert!(
        r.message.contains("version 2.0 (template has seen 1.0)"),
        "{}",
        r.message
    );
    // A template that records no extractor never claims a change.
    let idx = index_of(0..5);
    let e = evaluate(&idx, &v, &Policy::default());
    assert_eq!(e.decision, Decision::Match);
}

#[test]
fn closest_template_is_reported_for_every_decision() {
    let idx = index_of(0..5);
    let e = eval(&idx, &features(&layout(3, N)));
    let c = e.closest_template.as_ref().unwrap();
    assert_eq!(c.template_id, "t3");
    assert_eq!((c.similarity, c.drift_score), (e.similarity, e.drift_score));
    // A layout of no template: NEW, but the closest template and its drift are known.
    let e = eval(&idx, &features(&layout(99, N)));
    assert_eq!(e.decision, Decision::New);
    let c = e.closest_template.as_ref().unwrap();
    assert_eq!(
        Some(&c.template_id),
        e.runner_up.as_ref().map(|r| &r.template_id)
    );
    assert!(c.similarity > 0.0 && c.drift_score > 0.0, "{c:?}");
    let (tv, obs) = DriftObservation::from_closest(&e, 0.0).unwrap();
    assert_eq!(tv, c.template_version_id);
    assert_eq!(obs.similarity, c.similarity);
    assert!(DriftObservation::from_closest(&e, 0.99).is_none());
    assert!(DriftObservation::from_evaluation(&e).is_none());
    assert!(eval(&TemplateIndex::new(), &features(&layout(3, N)))
        .closest_template
        .is_none());
}

#[test]
fn slightly_outside_is_clamped_with_a_warning() {
    let idx = index_of(0..3);
    let mut f = features(&layout(1, N));
    f.bounding_boxes[0].x = -0.01;
    let e = eval(&idx, &f);
    assert_ne!(e.decision, Decision::Reject);
    assert!(e.warnings.iter().any(|w| w.code == "GEOMETRY_CLAMPED"));
}

#[test]
fn inconsistent_counts_are_rejected() {
    let idx = index_of(0..3);
    let mut f = features(&layout(1, N));
    f.element_count = 5000;
    let e = eval(&idx, &f);
    assert_eq!(e.decision, Decision::Reject);
    assert!(codes(&e).contains(&"COUNTS_INCONSISTENT"));

    let mut f = features(&layout(1, N));
    f.bounding_boxes
        .retain(|b| !b.element_type.starts_with("table"));
    f.element_count = f.bounding_boxes.len() as i64;
    f.table_count = 1;
    assert!(codes(&eval(&idx, &f)).contains(&"COUNTS_INCONSISTENT"));
}

#[test]
fn unknown_element_type_maps_to_other_with_warning() {
    let idx = index_of(0..3);
    let mut f = features(&layout(1, N));
    f.bounding_boxes[0].element_type = "hologram".into();
    let e = eval(&idx, &f);
    assert!(e
        .warnings
        .iter()
        .any(|w| w.code == "UNKNOWN_ELEMENT_TYPE" && w.message.contains("hologram")));
}

#[test]
fn low_confidence_forces_review() {
    let idx = index_of(0..3);
    let f = features(&layout(1, N));
    let v = validate(&f, &extractor(0.3)).unwrap();
    let e = evaluate(&idx, &v, &Policy::default());
    assert_eq!(e.decision, Decision::Review);
    assert!(codes(&e).contains(&"EXTRACTOR_CONFIDENCE_LOW"));

    let mut g = f.clone();
    for b in g.bounding_boxes.iter_mut().take(30) {
        b.confidence = 0.2;
    }
    let e = eval(&idx, &g);
    assert_eq!(e.decision, Decision::Review);
    assert!(codes(&e).contains(&"BOX_CONFIDENCE_LOW"));
    assert!(e
        .correction_rules
        .iter()
        .any(|r| r.rule == "review_low_confidence_elements"));
}

#[test]
fn bad_outcome_history_lowers_reliability_to_review() {
    let mut t = template(1);
    t.outcome_stats.insert(
        Template::outcome_key("aws", "textract"),
        OutcomeStats {
            correct: 5,
            corrected: 40,
            rejected: 20,
        },
    );
    let mut idx = TemplateIndex::new();
    idx.insert(t);
    let e = eval(&idx, &features(&layout(1, N)));
    assert_eq!(e.decision, Decision::Review);
    assert!(codes(&e).contains(&"RELIABILITY_LOW"), "{e:?}");
    assert!(e
        .correction_rules
        .iter()
        .any(|r| r.rule == "verify_all_fields"));
}

#[test]
fn strong_change_gives_high_drift_with_components() {
    let idx = index_of([1]);
    let mut f = features(&layout(1, N));
    // Half the table rows vanish and a big figure appears.
    let cells = f
        .bounding_boxes
        .iter()
        .filter(|b| b.element_type == "table_cell")
        .count();
    let mut seen = 0;
    f.bounding_boxes.retain(|b| {
        seen += usize::from(b.element_type == "table_cell");
        b.element_type != "table_cell" || seen <= cells - 4
    });
    f.bounding_boxes.push(BoundingBox {
        x: 0.5,
        y: 0.5,
        width: 0.2,
        height: 0.1,
        element_type: "signature".into(),
        confidence: 0.9,
        reading_order: 999,
        page: None,
    });
    f.element_count = f.bounding_boxes.len() as i64;
    f.image_count = 1;
    let e = eval(&idx, &f);
    let same = eval(&idx, &features(&layout(1, N)));
    assert_eq!(same.drift_score, 0.0);
    assert!(e.template_id.is_some(), "{e:?}");
    assert!(e.drift_score > 0.02, "{e:?}");
    let top = e
        .drift_components
        .iter()
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .unwrap();
    assert!(top.component.starts_with("layout."), "{top:?}");
}

#[test]
fn template_from_several_exemplars_learns_stability() {
    let ex: Vec<_> = (0..4)
        .map(|i| document(9, i, N, 0.004, i as usize))
        .collect();
    let t = Template::new("t9", 2, "t9@2", ex, 0.9, vec![]).unwrap();
    assert_eq!(t.exemplar_count(), 4);
    let mut idx = index_of(0..9);
    idx.insert(t);
    let e = eval(&idx, &document(9, 77, N, 0.004, 2));
    assert_eq!(e.template_version_id.as_deref(), Some("t9@2"));
    assert_eq!(e.decision, Decision::Match);
}

#[test]
fn broken_exemplar_is_refused() {
    let mut f = features(&layout(1, N));
    f.bounding_boxes[0].width = -1.0;
    let err = Template::new("x", 1, "x@1", vec![f], 0.9, vec![]).unwrap_err();
    assert_eq!(err.0[0].field, "exemplars[0]");
    assert!(
        Template::new("", 1, "x", vec![], 2.0, vec![])
            .unwrap_err()
            .len()
            >= 3
    );
}

#[test]
fn evaluation_serializes_with_contract_names() {
    let idx = index_of(0..3);
    let e = eval(&idx, &features(&layout(1, N)));
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["decision"], "MATCH");
    for k in [
        "match_confidence",
        "template_id",
        "template_version_id",
        "drift_score",
        "reliability_score",
        "reasons",
        "warnings",
        "correction_rules",
        "replay_hash",
        "engine_version",
        "layout_fingerprint",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
}

#[test]
fn fingerprint_test_vector() {
    // Also published in docs/engine.md.
    let f: StructuralFeatures = serde_json::from_str(FIXTURE).unwrap();
    assert_eq!(
        preflight_engine::fingerprint::canonical_layout(&f),
        "preflight-layout-v1\npages=1;elements=2;tables=0;text_blocks=2;images=0;columns=1;header=1;footer=0\n0|text|0.1000|0.2000|0.5000|0.0500\n0|title|0.1000|0.0500|0.8000|0.0800\n"
    );
    assert_eq!(layout_fingerprint(&f), FIXTURE_FP);
}

const FIXTURE: &str = r#"{"element_count":2,"table_count":0,"text_block_count":2,"image_count":0,"page_count":1,
"text_density":0.1,"layout_complexity":0.2,"column_count":1,"has_header":true,"has_footer":false,
"bounding_boxes":[{"x":0.1,"y":0.05,"width":0.8,"height":0.08,"element_type":"title","confidence":0.99,"reading_order":0},
{"x":0.1,"y":0.2,"width":0.5,"height":0.05,"element_type":"paragraph","confidence":0.9,"reading_order":1}]}"#;
const FIXTURE_FP: &str = "6be64fb6d4a002da3518399e7ac59d8fcf209626c8b441f1497d107a86774f63";

// ---------- drift detector ----------

fn obs(sim: f64, drift: f64, conf: f64) -> DriftObservation {
    DriftObservation {
        similarity: sim,
        drift,
        extractor_confidence: conf,
    }
}

#[test]
fn detector_has_few_false_alarms_on_stable_stream() {
    let mut total = 0;
    for seed in 0..3u64 {
        let mut r = Rng(seed);
        let mut d = DriftDetectorState::new();
        for _ in 0..10_000 {
            // Gaussian noise plus 1% outliers (a bad scan now and then).
            let bad = r.f64() < 0.01;
            let s = if bad {
                r.range(0.5, 0.8)
            } else {
                (0.9 + 0.03 * r.normal()).min(1.0)
            };
            let o = obs(
                s,
                (1.0 - s) * 0.8,
                (0.92 + 0.02 * r.normal()).clamp(0.0, 1.0),
            );
            if d.observe(&o).is_some() {
                total += 1;
            }
        }
    }
    assert!(
        total <= 3,
        "{total} false alarms in 30 000 stable observations"
    );
}

/// A stable stream like real documents of one template: a few kinds of member (short and
/// long receipts) with their own similarity level, drawn at random, each with jitter, plus a
/// heavy tail; the extractor confidence takes a few discrete values. Then, from `change_at`,
/// a redesign at similarity `after`.
fn member_stream(seed: u64, len: u64, change_at: u64, after: f64) -> Vec<DriftObservation> {
    const MEMBERS: [(f64, f64); 4] = [(0.84, 0.95), (0.76, 0.94), (0.66, 0.81), (0.55, 0.6)];
    let mut r = Rng(seed);
    (0..len)
        .map(|n| {
            let (level, conf) = MEMBERS[r.below(4) as usize];
            let mut s = level + 0.015 * r.normal();
            if r.f64() < 0.08 {
                // Heavy tail: a badly scanned or unusually long document.
                s -= 0.12 * -r.f64().max(1e-9).ln();
            }
            if n >= change_at {
                s = after + 0.01 * r.normal();
            }
            let s = s.clamp(0.0, 1.0);
            obs(
                s,
                (0.65 * (1.0 - s) + 0.02 * r.normal()).clamp(0.0, 1.0),
                conf,
            )
        })
        .collect()
}

#[test]
fn detector_has_few_false_alarms_on_heavy_tailed_multimodal_stream() {
    let mut total = 0;
    for seed in 0..3u64 {
        let mut d = DriftDetectorState::new();
        for o in member_stream(seed, 10_000, u64::MAX, 0.0) {
            total += usize::from(d.observe(&o).is_some());
        }
    }
    assert!(
        total <= 3,
        "{total} false alarms in 30 000 stable observations"
    );
}

#[test]
fn detector_finds_redesign_in_heavy_tailed_stream_within_ten() {
    for seed in 0..5u64 {
        let mut d = DriftDetectorState::new();
        let mut found = None;
        for (n, o) in (1..).zip(member_stream(seed, 400, 300, 0.35)) {
            if let Some(cp) = d.observe(&o) {
                assert!(n > 300, "seed {seed}: false alarm at {n}");
                found = Some(cp);
                break;
            }
        }
        let cp = found.unwrap_or_else(|| panic!("seed {seed}: not detected"));
        assert!(
            cp.detected_at <= 310,
            "seed {seed}: detected at {}",
            cp.detected_at
        );
    }
}

#[test]
fn detector_state_persisted_by_earlier_versions_deserializes() {
    let series = r#"{"warm":30,"mean":0.2,"var":0.004,"cusum":1.5,"run_start":40,"run_sum":0.5}"#;
    let json = format!(
        r#"{{"observations":41,"similarity":{series},"drift":{series},"extractor_confidence":{series},"changes":0}}"#
    );
    let mut d: DriftDetectorState = serde_json::from_str(&json).unwrap();
    assert_eq!(d.observations, 41);
    assert!(d.observe(&obs(0.8, 0.2, 0.8)).is_none());
}

#[test]
fn detector_finds_sudden_change_within_ten() {
    for (after, label) in [(0.6, "big"), (0.8, "moderate")] {
        let mut r = Rng(42);
        let mut d = DriftDetectorState::new();
        let mut found = None;
        for n in 1..=400u64 {
            let mean = if n <= 300 { 0.9 } else { after };
            let s = (mean + 0.03 * r.normal()).min(1.0);
            if let Some(cp) = d.observe(&obs(s, (1.0 - s) * 0.8, 0.92)) {
                assert!(n > 300, "{label}: false alarm at {n}");
                found = Some(cp);
                break;
            }
        }
        let cp = found.unwrap_or_else(|| panic!("{label}: not detected"));
        assert!(
            cp.detected_at <= 310,
            "{label}: detected at {}",
            cp.detected_at
        );
        assert!(
            (295..=310).contains(&cp.observation),
            "{label}: began at {}",
            cp.observation
        );
    }
}

#[test]
fn detector_absorbs_gradual_evolution_and_roundtrips() {
    let mut r = Rng(7);
    let mut d = DriftDetectorState::new();
    for n in 0..5_000u64 {
        let mean = 0.92 - 0.10 * n as f64 / 5_000.0;
        let s = mean + 0.02 * r.normal();
        assert!(
            d.observe(&obs(s, (1.0 - s) * 0.8, 0.9)).is_none(),
            "alarm at {n}"
        );
        if n == 2_500 {
            let json = serde_json::to_string(&d).unwrap();
            let back: DriftDetectorState = serde_json::from_str(&json).unwrap();
            assert_eq!(back, d);
        }
    }
}

#[test]
fn observation_from_evaluation() {
    let idx = index_of(0..3);
    let e = eval(&idx, &features(&layout(1, N)));
    let o = DriftObservation::from_evaluation(&e).unwrap();
    assert_eq!(o.similarity, 1.0);
    let mut idx2 = idx.clone();
    idx2.remove("t1@1");
    let e = eval(&idx2, &features(&layout(1, N)));
    if e.decision == Decision::New {
        assert!(DriftObservation::from_evaluation(&e).is_none());
    }
}

// ---------- properties ----------

fn arb_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0..1.0f64,
        1 => -2.0..3.0f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(-0.0f64),
        1 => any::<f64>(),
    ]
}

fn arb_box() -> impl Strategy<Value = BoundingBox> {
    (
        arb_f64(),
        arb_f64(),
        arb_f64(),
        arb_f64(),
        prop_oneof!["text", "table", "key", "weird", ""].prop_map(String::from),
        arb_f64(),
        -2i64..100,
        proptest::option::of(-1i64..4),
    )
        .prop_map(
            |(x, y, width, height, element_type, confidence, reading_order, page)| BoundingBox {
                x,
                y,
                width,
                height,
                element_type,
                confidence,
                reading_order,
                page,
            },
        )
}

fn arb_features() -> impl Strategy<Value = StructuralFeatures> {
    (
        (
            -1i64..200,
            -1i64..5,
            -1i64..100,
            -1i64..5,
            -1i64..4,
            -1i64..4,
        ),
        (arb_f64(), arb_f64(), any::<bool>(), any::<bool>()),
        proptest::collection::vec(arb_box(), 0..40),
    )
        .prop_map(|((e, t, tb, im, p, c), (td, lc, hh, hf), bounding_boxes)| {
            StructuralFeatures {
                element_count: e,
                table_count: t,
                text_block_count: tb,
                image_count: im,
                page_count: p,
                text_density: td,
                layout_complexity: lc,
                column_count: c,
                has_header: hh,
                has_footer: hf,
                bounding_boxes,
            }
        })
}

fn in_unit(v: f64) -> bool {
    v.is_finite() && (0.0..=1.0).contains(&v)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_input_never_panics_and_scores_are_in_range(f in arb_features(), conf in arb_f64()) {
        let idx = index_of(0..4);
        match validate(&f, &extractor(conf)) {
            Err(e) => prop_assert!(!e.is_empty()),
            Ok(v) => {
                let e = evaluate(&idx, &v, &Policy::default());
                prop_assert!(in_unit(e.match_confidence));
                prop_assert!(in_unit(e.drift_score));
                prop_assert!(in_unit(e.reliability_score));
                prop_assert!(e.drift_components.iter().all(|c| in_unit(c.score)));
                prop_assert_eq!(e.replay_hash.len(), 64);
                if v.is_broken() { prop_assert_eq!(e.decision, Decision::Reject); }
                let has_nonfinite = f.bounding_boxes.iter().any(|b| ![b.x, b.y, b.width, b.height].iter().all(|x| x.is_finite()));
                if has_nonfinite { prop_assert_ne!(e.decision, Decision::Match); }
            }
        }
    }

    #[test]
    fn arbitrary_json_never_panics(s in "\\PC{0,200}", n in any::<f64>()) {
        let _ = serde_json::from_str::<StructuralFeatures>(&s);
        let j = [
            r#"{"element_count":1,"table_count":0,"text_block_count":1,"image_count":0,"page_count":1,"text_density":"#,
            &n.to_string(),
            r#","layout_complexity":0.1,"column_count":1,"has_header":false,"has_footer":false,"bounding_boxes":[{"x":"#,
            &n.to_string(),
            r#","y":0.1,"width":0.2,"height":0.1,"element_type":"text","confidence":0.9,"reading_order":0}]}"#,
        ]
        .concat();
        if let Ok(f) = serde_json::from_str::<StructuralFeatures>(&j) {
            if let Ok(v) = validate(&f, &extractor(0.9)) {
                let e = evaluate(&index_of(0..2), &v, &Policy::default());
                prop_assert!(in_unit(e.match_confidence));
            }
        }
    }

    #[test]
    fn box_order_is_irrelevant(seed in 0u64..50, doc in 0u64..1000, rot in 0usize..50) {
        let f = document(seed, doc, N, 0.004, 0);
        let mut g = f.clone();
        let k = rot % g.bounding_boxes.len();
        g.bounding_boxes.rotate_left(k);
        prop_assert_eq!(layout_fingerprint(&f), layout_fingerprint(&g));
        let idx = index_of(0..5);
        prop_assert_eq!(eval(&idx, &f), eval(&idx, &g));
    }

    #[test]
    fn reliability_is_monotone(
        base in 0.0..1.0f64, c in 0u64..100, k in 0u64..100, r in 0u64..100,
        ec in 0.0..1.0f64, bc in 0.0..1.0f64, low in 0.0..1.0f64, drift in 0.0..1.0f64,
        d in 0.0..0.5f64,
    ) {
        use preflight_engine::{reliability_score as rel, ReliabilityInputs};
        let i = ReliabilityInputs {
            baseline_reliability: base,
            outcomes: OutcomeStats { correct: c, corrected: k, rejected: r },
            extractor_confidence: ec, mean_box_confidence: bc, low_confidence_share: low, drift,
        };
        let x = rel(&i);
        prop_assert!(in_unit(x));
        let up = |j: ReliabilityInputs| rel(&j) >= x - 1e-12;
        let down = |j: ReliabilityInputs| rel(&j) <= x + 1e-12;
        let ok = up(ReliabilityInputs { baseline_reliability: (base + d).min(1.0), ..i });
        prop_assert!(ok, "not monotone");
        let ok = up(ReliabilityInputs { outcomes: OutcomeStats { correct: c + 5, ..i.outcomes }, ..i });
        prop_assert!(ok, "not monotone");
        let ok = down(ReliabilityInputs { outcomes: OutcomeStats { corrected: k + 5, ..i.outcomes }, ..i });
        prop_assert!(ok, "not monotone");
        let ok = down(ReliabilityInputs { outcomes: OutcomeStats { rejected: r + 5, ..i.outcomes }, ..i });
        prop_assert!(ok, "not monotone");
        let ok = up(ReliabilityInputs { extractor_confidence: (ec + d).min(1.0), ..i });
        prop_assert!(ok, "not monotone");
        let ok = up(ReliabilityInputs { mean_box_confidence: (bc + d).min(1.0), ..i });
        prop_assert!(ok, "not monotone");
        let ok = down(ReliabilityInputs { low_confidence_share: (low + d).min(1.0), ..i });
        prop_assert!(ok, "not monotone");
        let ok = down(ReliabilityInputs { drift: (drift + d).min(1.0), ..i });
        prop_assert!(ok, "not monotone");
    }
}

#[test]
fn page_edge_marks_do_not_move_the_content_frame() {
    // Azure API v2.1 reports page-edge artefacts as large selection marks; a photo's page
    // frame becomes a figure. The layout around them is unchanged and must still match.
    let idx = index_of(0..5);
    let mut f = features(&layout(4, N));
    let mark = |x: f64, y: f64, w: f64, h: f64, t: &str| BoundingBox {
        x,
        y,
        width: w,
        height: h,
        element_type: t.into(),
        confidence: 0.9,
        reading_order: 0,
        page: None,
    };
    f.bounding_boxes
        .push(mark(0.0, 0.9, 0.13, 0.1, "selection_mark"));
    f.bounding_boxes
        .push(mark(0.88, 0.9, 0.12, 0.1, "selection_mark"));
    f.bounding_boxes.push(mark(0.0, 0.0, 0.12, 0.05, "figure"));
    f.element_count += 3;
    let e = eval(&idx, &f);
    assert_eq!(e.template_id.as_deref(), Some("t4"), "{e:?}");
    assert!(e.similarity > 0.9, "{}", e.similarity);
}
