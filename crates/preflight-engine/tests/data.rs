//! Data-driven tests on the shared real data. Ignored by default; CI runs them with
//! `--ignored`. Without the data they fail loudly (see `support::data_dir`).

mod support;

use preflight_engine::{evaluate, validate, Decision, Policy, Template, TemplateIndex};
use support::{by_group, Doc};

fn identification(docs: &[Doc], min_group: usize) -> (usize, usize, usize, usize) {
    let groups = by_group(docs);
    let mut idx = TemplateIndex::new();
    let mut queries = Vec::new();
    for (g, m) in &groups {
        if m.len() < min_group {
            continue;
        }
        let ex = m[..3].iter().map(|d| d.features.clone()).collect();
        idx.insert(Template::new(g.clone(), 1, format!("{g}@1"), ex, 0.9, vec![]).unwrap());
        queries.extend(m[3..].iter().map(|d| (g.clone(), *d)));
    }
    let (mut top1, mut matched, mut matched_ok) = (0, 0, 0);
    for (g, d) in &queries {
        let v = validate(&d.features, &d.extractor).expect("real data validates");
        let e = evaluate(&idx, &v, &Policy::default());
        let best = e.template_id.clone().or(e.runner_up.map(|c| c.template_id));
        let ok = best.as_deref() == Some(g.as_str());
        top1 += usize::from(ok);
        if e.decision == Decision::Match {
            matched += 1;
            matched_ok += usize::from(ok);
        }
    }
    (queries.len(), top1, matched, matched_ok)
}

#[test]
#[ignore = "needs ../shared/data (run with --ignored)"]
fn vrdu_templates_are_identified() {
    let docs = support::load_vrdu();
    assert_eq!(docs.len(), 45);
    let (n, top1, matched, ok) = identification(&docs, 5);
    println!("VRDU: top-1 {top1}/{n}, MATCH {matched} (correct {ok})");
    assert!(top1 * 100 >= n * 80, "top-1 {top1}/{n}");
    assert_eq!(matched, ok, "a MATCH went to the wrong template");
}

#[test]
#[ignore = "needs ../shared/data (run with --ignored)"]
fn sroie_issuers_are_identified() {
    let docs = support::load_sroie();
    assert_eq!(docs.len(), 987);
    let (n, top1, matched, ok) = identification(&docs, 5);
    println!("SROIE: top-1 {top1}/{n}, MATCH {matched} (correct {ok})");
    assert!(top1 * 100 >= n * 88, "top-1 {top1}/{n}");
    assert!(ok * 1000 >= matched * 985, "MATCH precision {ok}/{matched}");
}

#[test]
#[ignore = "needs ../shared/data (run with --ignored)"]
fn unregistered_issuers_are_rarely_matched() {
    let docs = support::load_sroie();
    let groups = by_group(&docs);
    let mut idx = TemplateIndex::new();
    let mut others = Vec::new();
    for (g, m) in &groups {
        if m.len() >= 5 && support::split_of(g) == 0 {
            let ex = m[..3].iter().map(|d| d.features.clone()).collect();
            idx.insert(Template::new(g.clone(), 1, format!("{g}@1"), ex, 0.9, vec![]).unwrap());
        } else if m.len() >= 5 || support::split_of(g) == 1 {
            others.extend(m.iter().copied());
        }
    }
    let mut matched = 0;
    let mut new = 0;
    for d in &others {
        let v = validate(&d.features, &d.extractor).unwrap();
        match evaluate(&idx, &v, &Policy::default()).decision {
            Decision::Match => matched += 1,
            Decision::New => new += 1,
            _ => {}
        }
    }
    println!(
        "unregistered: {} docs, MATCH {matched}, NEW {new}",
        others.len()
    );
    assert!(
        matched * 100 <= others.len() * 2,
        "{matched} of {} unregistered receipts matched",
        others.len()
    );
    assert!(
        new * 100 >= others.len() * 50,
        "only {new} of {} were NEW",
        others.len()
    );
}

#[test]
#[ignore = "needs ../shared/data (run with --ignored)"]
fn identical_real_document_matches_with_confidence_one() {
    let docs = support::load_vrdu();
    let t = Template::new("a", 1, "a@1", vec![docs[0].features.clone()], 0.9, vec![]).unwrap();
    let mut idx = TemplateIndex::new();
    idx.insert(t);
    let v = validate(&docs[0].features, &docs[0].extractor).unwrap();
    let e = evaluate(&idx, &v, &Policy::default());
    assert_eq!(e.match_confidence, 1.0);
    assert_ne!(e.decision, Decision::New);
}
