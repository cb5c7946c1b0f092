//! Evaluation latency without criterion's statistics: builds the evaluate bench's synthetic
//! index of N templates, then times the bench's known document in 5 chunks of ITERATIONS
//! evaluations and prints the best chunk's mean in µs. The best chunk is the least disturbed
//! by other work on a shared machine, so two builds run alternately compare steadily
//! (docs/engine.md, "Benchmarks").
//!
//! Run: `cargo run --release -p preflight-engine --example evaluate_loop -- 1000 400`

#[path = "../tests/support/synth.rs"]
mod synth;

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use preflight_engine::{evaluate, validate, Policy, TemplateIndex};

const BOXES: usize = 50;
const CHUNKS: usize = 5;

fn main() -> ExitCode {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let usage = || {
        eprintln!("usage: evaluate_loop TEMPLATES ITERATIONS (both positive integers)");
        ExitCode::from(2)
    };
    let [templates, iterations] = args[..] else {
        return usage();
    };
    if templates == 0 || iterations == 0 {
        return usage();
    }
    let mut index = TemplateIndex::new();
    for seed in 0..templates as u64 {
        index.insert(synth::bench_template(seed, BOXES));
    }
    // The same known document as benches/evaluate.rs.
    let features = synth::bench_known_document(templates, BOXES);
    let doc = validate(&features, &synth::extractor(0.95)).expect("synthetic document");
    let policy = Policy::default();
    let mut best = f64::INFINITY;
    for _ in 0..CHUNKS {
        let start = Instant::now();
        for _ in 0..iterations {
            black_box(evaluate(&index, black_box(&doc), &policy));
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / iterations as f64);
    }
    println!("{best:.1}");
    ExitCode::SUCCESS
}
