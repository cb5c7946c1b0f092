//! Evaluation latency against 10 … 100 000 synthetic templates, index insert cost, memory
//! per template, and the clustering of 1 000 … 100 000 NEW documents. Templates and
//! documents come from the seeded generator in `tests/support/synth.rs`, so every run
//! measures the same data.
//!
//! Run: `cargo bench -p preflight-engine -- --warm-up-time 1 --measurement-time 3`; the
//! clustering alone: `cargo bench -p preflight-engine --bench evaluate -- cluster`.

#[path = "../tests/support/synth.rs"]
mod synth;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use preflight_engine::{
    cluster_layouts, evaluate, validate, ClusterInput, ClusterParams, Policy, Template,
    TemplateIndex, ValidatedDocument,
};

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

/// Layouts the clustering bench draws its NEW documents from.
const CLUSTER_LAYOUTS: u64 = 50;

/// `n` NEW documents of `CLUSTER_LAYOUTS` unregistered layouts with natural variation
/// (jitter, value widths, 0–2 dropped table rows), in a seeded order, with UUIDv7-shaped
/// ids in that order, and the layout each was drawn from.
fn cluster_corpus(n: usize) -> (Vec<String>, Vec<ValidatedDocument>, Vec<u64>) {
    let x = synth::extractor(0.95);
    let mut r = synth::Rng(0xc1u64);
    let ids = (0..n)
        .map(|i| format!("01900000-0000-7000-8000-{i:012x}"))
        .collect();
    let labels: Vec<u64> = (0..n)
        .map(|_| 1_000_000 + r.below(CLUSTER_LAYOUTS))
        .collect();
    let docs = labels
        .iter()
        .enumerate()
        .map(|(i, &layout)| {
            let f = synth::document(layout, i as u64, BOXES, 0.004, i % 3);
            validate(&f, &x).expect("synthetic document is valid")
        })
        .collect();
    (ids, docs, labels)
}

fn bench_cluster(c: &mut Criterion) {
    let params = ClusterParams::default();
    let mut group = c.benchmark_group("cluster");
    // CLUSTER_SIZES=1000 runs a subset; the default is the full set.
    let sizes: Vec<usize> = std::env::var("CLUSTER_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 100_000]);
    for n in sizes {
        let (ids, docs, labels) = cluster_corpus(n);
        let inputs: Vec<ClusterInput<'_>> = ids
            .iter()
            .zip(&docs)
            .map(|(id, document)| ClusterInput { id, document })
            .collect();
        let start = Instant::now();
        let out = cluster_layouts(&inputs, &params);
        let once = start.elapsed();
        let position: HashMap<&str, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut majority = 0;
        let mut clusters_of: HashMap<u64, usize> = HashMap::new();
        for cl in &out {
            let mut counts: HashMap<u64, usize> = HashMap::new();
            for m in &cl.members {
                *counts.entry(labels[position[m.as_str()]]).or_default() += 1;
            }
            let (&top, &k) = counts
                .iter()
                .max_by_key(|(l, k)| (**k, std::cmp::Reverse(**l)))
                .expect("clusters are not empty");
            majority += k;
            *clusters_of.entry(top).or_default() += 1;
        }
        let clustered: usize = out.iter().map(|c| c.members.len()).sum();
        let min_cohesion = out.iter().map(|c| c.cohesion).fold(1.0, f64::min);
        println!(
            "cluster n={n}: {} clusters of {CLUSTER_LAYOUTS} layouts ({} layouts split), \
             {clustered} documents clustered, purity {majority}/{clustered}, largest {}, \
             smallest {}, min cohesion {min_cohesion:.3}, one run {once:.2?}",
            out.len(),
            clusters_of.values().filter(|&&k| k > 1).count(),
            out.first().map_or(0, |c| c.members.len()),
            out.last().map_or(0, |c| c.members.len()),
        );
        if n > 10_000 {
            // One run takes seconds: criterion's minimum of 10 samples is the measurement.
            group.sample_size(10);
        }
        group.bench_with_input(BenchmarkId::new("cluster_layouts", n), &n, |b, _| {
            b.iter(|| cluster_layouts(black_box(&inputs), &params))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_evaluate, bench_cluster);
criterion_main!(benches);
