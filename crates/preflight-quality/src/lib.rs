//! preflight's decision-quality benchmark: labeled cases built from the shared real data
//! (real same-template groups, never-registered layouts, seeded perturbation series and
//! drift streams), evaluated through the engine's public API, and aggregated into the
//! metrics and targets of issue #8. Everything is a pure function of the seed and the data.
//!
//! Run: `cargo run --release -p preflight-quality -- --seed 42 --out target/quality`
//! (see docs/quality.md).

pub mod bench;
pub mod data;
pub mod metrics;
pub mod minimal;
pub mod perturb;
pub mod protocols;
pub mod report;
pub mod rng;
pub mod split;
