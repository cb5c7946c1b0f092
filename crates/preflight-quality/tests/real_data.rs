//! The small benchmark on the shared real data, with regression floors. Ignored by default
//! (it needs ../shared/data); without the data it fails loudly instead of passing.
//! Floors are set a little below what the small run measured (docs/quality.md), so a
//! quality regression fails this test while run-to-run noise does not (it is deterministic
//! anyway: same seed, same data, same engine → same numbers).

use std::collections::BTreeMap;

use preflight_engine::Policy;
use preflight_quality::bench::{run, Config};
use preflight_quality::data::{by_group, default_data_dir, load};
use preflight_quality::report::build;
use preflight_quality::split::Partition;

// Floors: the small run (seed 42, validate partition, engine 1.1.0, issuer labels with
// the address merge) measured real top-1 99.5 %, automation 88.9 % (169/190), MATCH
// precision 97.1 % (169/174), NEW recall 98.8 %; perturbation top-1 100 % (5 %) and 100 %
// (15 %), every MATCH right; all 6 sudden changes detected; 0 false alarms in 720 stable
// documents. The floors sit a little below. Engine 1.1.0 traded MATCH precision on real
// groups (98.4 % → 96.7 %, floor 97 % → 95 %) for automation (65.1 % → 92.1 %, floor
// 60 % → 88 %); the label fixes then moved them to 97.1 % and 88.9 % (docs/quality.md,
// "Tuning"). The 99.5 % precision and 90 % automation targets are not met; why is in
// docs/quality.md. These are regression guards, not the issue #8 targets. The
// false-alarm ceiling allows 1 alarm in 720, not 2.
const REAL_TOP1: f64 = 0.97;
const REAL_AUTOMATION: f64 = 0.88;
const REAL_MATCH_PRECISION: f64 = 0.95;
const REAL_NEW_RECALL: f64 = 0.96;
const P5_TOP1: f64 = 0.97;
const P15_TOP1: f64 = 0.95;
const PERTURB_MATCH_PRECISION: f64 = 0.97;
const SUDDEN_DETECTED: f64 = 1.0;
const MAX_FALSE_ALARMS_PER_10K: f64 = 15.0;

fn at_least(name: &str, r: &preflight_quality::metrics::Ratio, floor: f64) {
    let v = r.value().unwrap_or_else(|| panic!("{name}: no cases"));
    assert!(
        v >= floor,
        "{name} regressed: {} < floor {:.1} %",
        r.pct(),
        floor * 100.0
    );
}

#[test]
#[ignore = "needs ../shared/data (run with --ignored)"]
fn small_benchmark_meets_floors() {
    let dir = default_data_dir();
    let corpus = load(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        corpus.docs.len(),
        987 + 45 + 30 + 3,
        "unexpected corpus size"
    );
    let cfg = Config::small(42);
    let data = run(&corpus.docs, &cfg, &Policy::default());
    let groups = by_group(&corpus.docs).len();
    let rep = build(&data, &cfg, &corpus.data_version, BTreeMap::new(), groups);
    println!("{}", preflight_quality::report::markdown(&rep));

    let v = Partition::Validate;
    let real = &rep
        .real
        .iter()
        .find(|r| r.partition == v && r.scope == "all")
        .expect("validate row")
        .quality;
    at_least("real top-1", &real.top1, REAL_TOP1);
    at_least("real automation", &real.automation, REAL_AUTOMATION);
    at_least(
        "real MATCH precision",
        &real.match_precision,
        REAL_MATCH_PRECISION,
    );
    at_least("real NEW recall", &real.new_recall, REAL_NEW_RECALL);
    let level = |l: f64| {
        &rep.perturbation
            .iter()
            .find(|r| r.partition == v && r.level == l)
            .expect("level row")
            .quality
    };
    at_least("perturbation 5 % top-1", &level(0.05).top1, P5_TOP1);
    at_least("perturbation 15 % top-1", &level(0.15).top1, P15_TOP1);
    for l in [0.05, 0.15, 0.30, 0.50] {
        let mp = &level(l).match_precision;
        if mp.den > 0 {
            at_least(
                &format!("perturbation {l} MATCH precision"),
                mp,
                PERTURB_MATCH_PRECISION,
            );
        }
    }
    let drifts: Vec<f64> = [0.05, 0.15, 0.30, 0.50]
        .iter()
        .map(|&l| level(l).mean_drift.expect("drift"))
        .collect();
    assert!(
        drifts.windows(2).all(|w| w[0] < w[1]),
        "mean drift not increasing: {drifts:?}"
    );
    let sudden = &rep
        .drift
        .iter()
        .find(|r| r.partition == v && r.kind == "sudden")
        .expect("drift row")
        .quality;
    at_least("sudden change detected", &sudden.detected, SUDDEN_DETECTED);
    let all = &rep
        .drift
        .iter()
        .find(|r| r.kind == "all" && r.partition == v)
        .expect("drift row")
        .quality;
    let fa = all.false_alarms_per_10k.expect("stable documents");
    assert!(
        fa <= MAX_FALSE_ALARMS_PER_10K,
        "false alarms per 10 000: {fa:.1}"
    );
}
