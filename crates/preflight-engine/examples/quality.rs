//! Measures identification quality on the shared real data and fits the confidence
//! calibration knots (`calibration::S_NEW`, `calibration::S_MATCH`).
//!
//! Run: `cargo run --release -p preflight-engine --example quality`
//!
//! Protocol: SROIE issuers with ≥ 5 receipts and the 3 VRDU FARA templates become templates
//! (first 3 documents of each group, by file name, are the exemplars). SROIE groups are
//! split in two halves by a hash of the group name; VRDU queries alternate between halves.
//! For a half, the index holds that half's templates; positives are its remaining
//! documents, negatives are all SROIE receipts whose issuer is not in the index. Knots are
//! fitted on half B (the larger one) and the result is reported on the held-out half A.

#[path = "../tests/support/mod.rs"]
mod support;

use preflight_engine::calibration::{confidence_with, S_MATCH, S_NEW};
use preflight_engine::diagnostics::{lsh_parameters, token_jaccard};
use preflight_engine::{evaluate, validate, Policy, Template, TemplateIndex};
use support::{by_group, split_of, Doc};

#[derive(Clone)]
struct Rec {
    sim: f64,
    positive: bool,
    correct: bool,
    decision: String,
    jaccard: Option<f64>,
    lsh_hit: Option<bool>,
    vrdu: bool,
}

const EXEMPLARS: usize = 3;

fn run_split(docs: &[Doc], split: usize) -> Vec<Rec> {
    let groups = by_group(docs);
    let mut index = TemplateIndex::new();
    let mut templates = std::collections::BTreeMap::new();
    let mut positives: Vec<(&Doc, String)> = Vec::new();
    let mut negatives: Vec<&Doc> = Vec::new();
    for (g, members) in &groups {
        let is_vrdu = g.starts_with("vrdu:");
        let big = members.len() >= 5;
        if big && (is_vrdu || split_of(g) == split) {
            let ex: Vec<_> = members[..EXEMPLARS]
                .iter()
                .map(|d| d.features.clone())
                .collect();
            let t =
                Template::new(g.clone(), 1, format!("{g}@1"), ex, 0.9, vec![]).expect("template");
            templates.insert(g.clone(), t.clone());
            index.insert(t);
            for (i, d) in members[EXEMPLARS..].iter().enumerate() {
                if !is_vrdu || i % 2 == split {
                    positives.push((d, g.clone()));
                }
            }
        } else if !is_vrdu {
            negatives.push(members[0]);
            negatives.extend(members[1..].iter().copied());
        }
    }
    let policy = Policy::default();
    let mut out = Vec::new();
    for (d, g) in positives {
        let v = validate(&d.features, &d.extractor).expect("valid");
        let e = evaluate(&index, &v, &policy);
        let t = &templates[&g];
        let j = token_jaccard(&v, t);
        let mut solo = TemplateIndex::new().with_exhaustive_limit(0);
        solo.insert(t.clone());
        let lsh_hit = evaluate(&solo, &v, &policy).candidates_considered > 0;
        let best = e
            .template_id
            .clone()
            .or(e.runner_up.as_ref().map(|c| c.template_id.clone()));
        out.push(Rec {
            sim: e.similarity.max(best_sim(&e)),
            positive: true,
            correct: best.as_deref() == Some(g.as_str()),
            decision: format!("{:?}", e.decision),
            jaccard: Some(j),
            lsh_hit: Some(lsh_hit),
            vrdu: d.source == "vrdu",
        });
    }
    for d in negatives {
        let v = validate(&d.features, &d.extractor).expect("valid");
        let e = evaluate(&index, &v, &policy);
        if std::env::var_os("QUALITY_DEBUG").is_some() && best_sim(&e) >= 0.88 {
            eprintln!(
                "neg {:.3} {} -> {:?}",
                best_sim(&e),
                d.group,
                e.template_id
                    .clone()
                    .or(e.runner_up.as_ref().map(|c| c.template_id.clone()))
            );
        }
        out.push(Rec {
            sim: best_sim(&e),
            positive: false,
            correct: false,
            decision: format!("{:?}", e.decision),
            jaccard: None,
            lsh_hit: None,
            vrdu: false,
        });
    }
    out
}

/// Raw similarity of the best template (for NEW, recomputed from the calibrated confidence).
fn best_sim(e: &preflight_engine::Evaluation) -> f64 {
    if e.template_id.is_some() {
        return e.similarity;
    }
    let c = e.runner_up.as_ref().map_or(0.0, |c| c.match_confidence);
    // invert the piecewise-linear map
    let mut lo = 0.0;
    let mut hi = 1.0;
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if confidence_with(mid, S_NEW, S_MATCH) < c {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn fit(recs: &[Rec]) -> (f64, f64) {
    let mut cands: Vec<f64> = recs.iter().map(|r| r.sim).collect();
    cands.sort_by(f64::total_cmp);
    cands.dedup();
    // S_MATCH: smallest threshold with precision ≥ 99.5% among everything at or above it,
    // counting one virtual error so a perfect sample still needs ≥ 200 correct items.
    let mut s_match = 1.0;
    for &t in &cands {
        let above: Vec<&Rec> = recs.iter().filter(|r| r.sim >= t).collect();
        let correct = above.iter().filter(|r| r.correct).count() as f64;
        let wrong = above.len() as f64 - correct + 1.0;
        if correct / (correct + wrong) >= 0.995 {
            s_match = t;
            break;
        }
    }
    // S_NEW: the cut minimizing errors of "top template is right" (P(correct|s) ≈ 0.5 there).
    let mut best = (usize::MAX, 0.0);
    for &t in &cands {
        if t >= s_match {
            break;
        }
        let err = recs.iter().filter(|r| (r.sim >= t) != r.correct).count();
        if err < best.0 {
            best = (err, t);
        }
    }
    (best.1, s_match)
}

fn curve(name: &str, recs: &[Rec]) {
    print!("{name} precision above threshold t (n):");
    for i in 0..=15 {
        let t = 0.85 + 0.01 * i as f64;
        let above: Vec<&Rec> = recs.iter().filter(|r| r.sim >= t).collect();
        let c = above.iter().filter(|r| r.correct).count();
        print!(
            " {t:.2}:{:.1}%({})",
            100.0 * c as f64 / above.len().max(1) as f64,
            above.len()
        );
    }
    println!();
}

fn report(name: &str, recs: &[Rec], s_new: f64, s_match: f64) {
    curve(name, recs);
    let vr: Vec<Rec> = recs.iter().filter(|r| r.vrdu).cloned().collect();
    curve("  VRDU-only positives", &vr);
    let pos: Vec<&Rec> = recs.iter().filter(|r| r.positive).collect();
    let neg: Vec<&Rec> = recs.iter().filter(|r| !r.positive).collect();
    let top1 = pos.iter().filter(|r| r.correct).count() as f64 / pos.len() as f64;
    let conf = |r: &Rec| confidence_with(r.sim, s_new, s_match);
    let matched: Vec<&Rec> = recs.iter().filter(|r| conf(r) >= 0.85).collect();
    let m_correct = matched.iter().filter(|r| r.correct).count();
    let pos_match = pos.iter().filter(|r| conf(r) >= 0.85 && r.correct).count();
    let pos_review = pos
        .iter()
        .filter(|r| (0.5..0.85).contains(&conf(r)))
        .count();
    let pos_new = pos.iter().filter(|r| conf(r) < 0.5).count();
    let neg_new = neg.iter().filter(|r| conf(r) < 0.5).count();
    let neg_review = neg
        .iter()
        .filter(|r| (0.5..0.85).contains(&conf(r)))
        .count();
    let neg_match = neg.iter().filter(|r| conf(r) >= 0.85).count();
    println!(
        "## {name}: {} positives, {} negatives",
        pos.len(),
        neg.len()
    );
    println!(
        "top-1 identification (positives): {:.1}% ({}/{})",
        top1 * 100.0,
        pos.iter().filter(|r| r.correct).count(),
        pos.len()
    );
    println!(
        "confidence >= 0.85 (MATCH band): {} docs, precision {:.2}% ({} correct)",
        matched.len(),
        100.0 * m_correct as f64 / matched.len().max(1) as f64,
        m_correct
    );
    println!(
        "positives: MATCH-band&correct {:.1}%, REVIEW-band {:.1}%, NEW-band {:.1}%",
        100.0 * pos_match as f64 / pos.len() as f64,
        100.0 * pos_review as f64 / pos.len() as f64,
        100.0 * pos_new as f64 / pos.len() as f64
    );
    println!(
        "negatives (issuer not registered): NEW-band {:.1}%, REVIEW-band {:.1}%, MATCH-band {:.1}%",
        100.0 * neg_new as f64 / neg.len() as f64,
        100.0 * neg_review as f64 / neg.len() as f64,
        100.0 * neg_match as f64 / neg.len() as f64
    );
    let mut dec = std::collections::BTreeMap::new();
    for r in &pos {
        *dec.entry(format!("pos {}", r.decision)).or_insert(0) += 1;
    }
    for r in &neg {
        *dec.entry(format!("neg {}", r.decision)).or_insert(0) += 1;
    }
    println!("engine decisions (library constants, default policy): {dec:?}");
    let mut js: Vec<f64> = pos.iter().filter_map(|r| r.jaccard).collect();
    let (b, r) = lsh_parameters();
    let lsh = pos.iter().filter(|r| r.lsh_hit == Some(true)).count();
    println!(
        "token Jaccard to true template: p1 {:.3} p5 {:.3} p10 {:.3} p50 {:.3}; LSH (b={b}, r={r}) candidate recall {}/{}",
        pct(&mut js, 0.01),
        pct(&mut js, 0.05),
        pct(&mut js, 0.10),
        pct(&mut js, 0.5),
        lsh,
        pos.len()
    );
    let mut sp: Vec<f64> = pos.iter().filter(|r| r.correct).map(|r| r.sim).collect();
    let mut sn: Vec<f64> = neg.iter().map(|r| r.sim).collect();
    println!(
        "similarity: positives p5 {:.3} p50 {:.3}; negatives p50 {:.3} p95 {:.3} p99 {:.3} max {:.3}",
        pct(&mut sp, 0.05),
        pct(&mut sp, 0.5),
        pct(&mut sn, 0.5),
        pct(&mut sn, 0.95),
        pct(&mut sn, 0.99),
        pct(&mut sn, 1.0)
    );
}

fn main() {
    let mut docs = support::load_sroie();
    docs.extend(support::load_vrdu());
    let a = run_split(&docs, 0);
    let b = run_split(&docs, 1);
    // Half B has 4x the positives of half A, so it is the fitting half.
    let (s_new, s_match) = fit(&b);
    println!("fitted on half B: S_NEW = {s_new:.4}, S_MATCH = {s_match:.4} (library: {S_NEW}, {S_MATCH})");
    report("half B (fit), library knots", &b, S_NEW, S_MATCH);
    report("half A (held out), library knots", &a, S_NEW, S_MATCH);
}
