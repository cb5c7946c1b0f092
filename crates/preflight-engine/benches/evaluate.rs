//! Evaluation latency against 10 … 100 000 synthetic templates, index insert cost, and
//! memory per template. Templates and documents come from the seeded generator in
//! `tests/support/synth.rs`, so every run measures the same data.
//!
//! Run: `cargo bench -p preflight-engine -- --warm-up-time 1 --measurement-time 3`

#[path = "../tests/support/synth.rs"]
mod synth;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use preflight_engine::{evaluate, validate, Policy, Template, TemplateIndex};

const BOXES: usize = 50;

fn template(seed: u64) -> Template {
    synth::bench_template(seed, BOXES)
}

fn bench_evaluate(c: &mut Criterion) {
    let policy = Policy::default();
    let mut group = c.benchmark_group("evaluate");
    // BENCH_SIZES=10,10000 runs a subset (quick checks); the default is the full set.
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 1_000, 10_000, 100_000]);
    for n in sizes {
        let mut idx = TemplateIndex::new();
        for s in 0..n as u64 {
            idx.insert(template(s));
        }
        println!(
            "templates={n} approx_memory_bytes={} per_template={}",
            idx.approx_memory_bytes(),
            idx.approx_memory_bytes() / n
        );
        let f = synth::bench_known_document(n, BOXES);
        let x = synth::extractor(0.95);
        let doc = validate(&f, &x).unwrap();
        let e = evaluate(&idx, &doc, &policy);
        println!(
            "templates={n} known doc: decision={:?} template={:?} confidence={} candidates={} lsh_collisions={}",
            e.decision,
            e.template_id,
            e.match_confidence,
            e.candidates_considered,
            preflight_engine::diagnostics::lsh_hits(&idx, &doc)
        );
        let unknown = validate(&synth::document(10_000_000, 1, BOXES, 0.004, 0), &x).unwrap();
        let e = evaluate(&idx, &unknown, &policy);
        println!(
            "templates={n} unknown doc: decision={:?} candidates={}",
            e.decision, e.candidates_considered
        );
        group.bench_with_input(BenchmarkId::new("known_doc", n), &n, |b, _| {
            b.iter(|| evaluate(black_box(&idx), black_box(&doc), &policy))
        });
        group.bench_with_input(BenchmarkId::new("unknown_doc", n), &n, |b, _| {
            b.iter(|| evaluate(black_box(&idx), black_box(&unknown), &policy))
        });
        group.bench_with_input(BenchmarkId::new("validate_and_evaluate", n), &n, |b, _| {
            b.iter(|| {
                let d = validate(black_box(&f), black_box(&x)).unwrap();
                evaluate(&idx, &d, &policy)
            })
        });
        if n == 10_000 {
            let t = template(20_000_000);
            group.bench_function("insert_into_10000", |b| {
                b.iter(|| {
                    idx.insert(black_box(t.clone()));
                    idx.remove("tpl-20000000@1")
                })
            });
            let feats = synth::features(&synth::layout(7, BOXES));
            group.bench_function("template_new", |b| {
                b.iter(|| Template::new("t", 1, "t@1", vec![black_box(feats.clone())], 0.9, vec![]))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_evaluate);
criterion_main!(benches);
