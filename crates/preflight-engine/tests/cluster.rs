//! Clustering of NEW layouts (`cluster_layouts`): determinism, the similarity guarantee
//! towards each cluster's leader, and separation of clearly different layouts, on the
//! seeded synthetic forms of `support/synth.rs` and two hand-made layout families.

#[path = "support/synth.rs"]
mod synth;

use std::collections::{BTreeMap, BTreeSet};

use preflight_engine::diagnostics::similarity;
use preflight_engine::{
    cluster_key, cluster_layouts, validate, ClusterInput, ClusterParams, LayoutCluster,
    StructuralFeatures, Template, ValidatedDocument,
};
use proptest::prelude::*;
use synth::{document, extractor, features, layout, Layout, Rng};

const N: usize = 40;

/// A UUIDv7-shaped id whose string order is `i`'s order, as evaluation ids are.
fn id(i: usize) -> String {
    format!("01900000-0000-7000-8000-{i:012x}")
}

fn validated(f: &StructuralFeatures) -> ValidatedDocument {
    validate(f, &extractor(0.95)).expect("valid synthetic document")
}

/// Validated documents with ids; `labels[i]` is the layout document `i` was drawn from.
struct Corpus {
    ids: Vec<String>,
    docs: Vec<ValidatedDocument>,
    labels: Vec<u64>,
}

impl Corpus {
    fn new(items: Vec<(u64, StructuralFeatures)>) -> Corpus {
        let ids = (0..items.len()).map(id).collect();
        let labels = items.iter().map(|i| i.0).collect();
        let docs = items.iter().map(|i| validated(&i.1)).collect();
        Corpus { ids, docs, labels }
    }

    /// Documents drawn from the synthetic form layouts `seeds`, `per` each with natural
    /// variation, interleaved in id order.
    fn synthetic(seeds: &[u64], per: usize) -> Corpus {
        let mut items = Vec::new();
        for k in 0..per {
            for &s in seeds {
                let d = document(s, 1000 * s + k as u64, N, 0.004, k % 2);
                items.push((s, d));
            }
        }
        Corpus::new(items)
    }

    fn inputs(&self) -> Vec<ClusterInput<'_>> {
        self.ids
            .iter()
            .zip(&self.docs)
            .map(|(id, d)| ClusterInput { id, document: d })
            .collect()
    }

    fn position(&self, id: &str) -> usize {
        self.ids.iter().position(|i| i == id).expect("known id")
    }
}

fn params(min_cluster_size: usize) -> ClusterParams {
    ClusterParams {
        min_cluster_size,
        ..ClusterParams::default()
    }
}

/// Invariants every result must satisfy, whatever the input.
fn check_invariants(c: &Corpus, out: &[LayoutCluster], p: &ClusterParams) {
    let mut seen = BTreeSet::new();
    for (i, cl) in out.iter().enumerate() {
        assert!(cl.members.len() >= p.min_cluster_size.max(1));
        assert!(cl.members.windows(2).all(|w| w[0] < w[1]), "members sorted");
        for m in &cl.members {
            assert!(seen.insert(m.clone()), "{m} is in two clusters");
        }
        assert_eq!(cl.leader, cl.members[0]);
        assert_eq!(cl.key, cluster_key(&cl.leader));
        assert!(cl.members.contains(&cl.representative));
        assert_eq!(cl.exemplars[0], cl.representative);
        assert!(cl.exemplars.len() <= p.max_exemplars.max(1));
        assert!(cl.exemplars.iter().all(|e| cl.members.contains(e)));
        let distinct: BTreeSet<&str> = cl
            .exemplars
            .iter()
            .map(|e| c.docs[c.position(e)].layout_fingerprint())
            .collect();
        assert_eq!(
            distinct.len(),
            cl.exemplars.len(),
            "exemplar layouts are distinct"
        );
        assert!((0.0..=1.0).contains(&cl.cohesion));
        assert!(cl.min_member_similarity <= cl.cohesion + 1e-12);
        if i > 0 {
            let prev = &out[i - 1];
            let (a, b) = (prev.members.len(), cl.members.len());
            assert!(
                a > b || (a == b && prev.key < cl.key),
                "clusters sorted by size, then key"
            );
        }
        // The guarantees. Every member would MATCH the leader registered alone: its
        // similarity as `evaluate` computes it (1 for the leader's exact fingerprint)
        // reaches min_similarity. Every checked member would MATCH the representative,
        // and cohesion and minimum are exactly the mean and minimum of those similarities.
        let leader = Alone::new(c, &cl.leader);
        for m in &cl.members {
            let s = leader.similarity(c, m);
            assert!(
                s >= p.min_similarity,
                "{m}: similarity {s} to leader {} below {}",
                cl.leader,
                p.min_similarity
            );
        }
        let rep = Alone::new(c, &cl.representative);
        let to_rep: Vec<f64> = checked_members(&cl.members, p.cohesion_sample)
            .into_iter()
            .filter(|m| **m != cl.representative)
            .map(|m| rep.similarity(c, m))
            .collect();
        if to_rep.is_empty() {
            assert_eq!((cl.cohesion, cl.min_member_similarity), (1.0, 1.0));
        } else {
            let min = to_rep.iter().copied().fold(1.0, f64::min);
            assert!(min >= p.min_similarity, "{min} to the representative");
            assert_eq!(cl.min_member_similarity, min);
            assert_eq!(
                cl.cohesion,
                to_rep.iter().sum::<f64>() / to_rep.len() as f64
            );
        }
    }
}

/// The members checked against the representative, as docs/engine.md defines them: all of
/// them up to `k`, else those at positions ⌊i·n/k⌋, i < k, of the sorted member list.
fn checked_members(members: &[String], k: usize) -> Vec<&String> {
    let (n, k) = (members.len(), k.max(1));
    if n <= k {
        return members.iter().collect();
    }
    (0..k).map(|i| &members[i * n / k]).collect()
}

/// A document registered alone as a template.
struct Alone<'c> {
    doc: &'c ValidatedDocument,
    template: Template,
}

impl<'c> Alone<'c> {
    fn new(c: &'c Corpus, id: &str) -> Alone<'c> {
        let doc = &c.docs[c.position(id)];
        let template = Template::new("l", 1, "l", vec![doc.features().clone()], 1.0, vec![])
            .expect("a member is a valid exemplar");
        Alone { doc, template }
    }

    /// Similarity of member `m` to it as `evaluate` scores it: 1 for the exemplar's exact
    /// fingerprint, else the layout similarity.
    fn similarity(&self, c: &Corpus, m: &str) -> f64 {
        let d = &c.docs[c.position(m)];
        if d.layout_fingerprint() == self.doc.layout_fingerprint() {
            return 1.0;
        }
        similarity(d, &self.template)
    }
}

/// Which labels each cluster holds.
fn labels_of(c: &Corpus, out: &[LayoutCluster]) -> Vec<BTreeSet<u64>> {
    out.iter()
        .map(|cl| cl.members.iter().map(|m| c.labels[c.position(m)]).collect())
        .collect()
}

#[test]
fn default_parameters_are_the_documented_ones() {
    let d = ClusterParams::default();
    assert_eq!(d.min_similarity, preflight_engine::calibration::S_MATCH);
    assert_eq!(
        preflight_engine::calibration::confidence(d.min_similarity),
        0.85
    );
    assert_eq!(
        (
            d.min_cluster_size,
            d.max_exemplars,
            d.max_candidates,
            d.max_aligned
        ),
        (3, 3, 64, 4)
    );
    assert_eq!(
        (
            d.exhaustive_limit,
            d.representative_candidates,
            d.representative_sample,
            d.cohesion_sample,
            d.max_leaders
        ),
        (512, 6, 24, 256, 10_000)
    );
    // A configuration names only what it changes.
    let p: ClusterParams = serde_json::from_str(r#"{"min_cluster_size": 5}"#).expect("json");
    assert_eq!(
        p,
        ClusterParams {
            min_cluster_size: 5,
            ..d
        }
    );
}

#[test]
fn exact_duplicates_are_one_cluster() {
    let f = features(&layout(3, N));
    let c = Corpus::new((0..12).map(|_| (3, f.clone())).collect());
    let p = params(2);
    let out = cluster_layouts(&c.inputs(), &p);
    check_invariants(&c, &out, &p);
    assert_eq!(out.len(), 1, "{out:?}");
    let cl = &out[0];
    assert_eq!(cl.members, c.ids);
    // Every candidate scores 1, so the tie goes to the smallest id: the leader.
    assert_eq!(cl.representative, c.ids[0]);
    // Copies of one layout would teach a template nothing: one exemplar.
    assert_eq!(cl.exemplars, vec![c.ids[0].clone()]);
    assert_eq!(cl.cohesion, 1.0);
    assert_eq!(cl.min_member_similarity, 1.0);
}

#[test]
fn large_clusters_are_checked_on_an_even_spread() {
    let c = Corpus::synthetic(&[5, 8], 20);
    let p = ClusterParams {
        min_cluster_size: 1,
        cohesion_sample: 5,
        representative_candidates: 3,
        representative_sample: 4,
        ..ClusterParams::default()
    };
    let out = cluster_layouts(&c.inputs(), &p);
    assert!(out.iter().any(|cl| cl.members.len() > p.cohesion_sample));
    check_invariants(&c, &out, &p);
}

#[test]
fn synthetic_layouts_form_one_pure_cluster_each() {
    let seeds = [1u64, 2, 3, 5, 8, 13, 21, 34];
    let c = Corpus::synthetic(&seeds, 8);
    let p = params(3);
    let out = cluster_layouts(&c.inputs(), &p);
    check_invariants(&c, &out, &p);
    let labels = labels_of(&c, &out);
    assert!(labels.iter().all(|l| l.len() == 1), "impure: {labels:?}");
    assert_eq!(out.len(), seeds.len(), "{labels:?}");
    assert!(out.iter().all(|cl| cl.members.len() == 8));
    for cl in &out {
        assert!(cl.cohesion > 0.8, "cohesion {}", cl.cohesion);
        assert!(cl.min_member_similarity >= ClusterParams::default().min_similarity);
    }
}

#[test]
fn small_clusters_are_not_returned() {
    let c = Corpus::synthetic(&[4, 6], 3);
    assert_eq!(cluster_layouts(&c.inputs(), &params(4)).len(), 0);
    assert_eq!(cluster_layouts(&c.inputs(), &params(3)).len(), 2);
}

#[test]
fn empty_and_broken_inputs_are_skipped() {
    assert!(cluster_layouts(&[], &ClusterParams::default()).is_empty());
    let mut broken = features(&layout(9, N));
    broken.element_count = 0;
    let c = Corpus::new(vec![(9, broken.clone()), (9, broken.clone()), (9, broken)]);
    assert!(c.docs[0].is_broken());
    assert!(cluster_layouts(&c.inputs(), &params(1)).is_empty());
}

#[test]
fn a_repeated_id_is_used_once_whatever_the_order() {
    let c = Corpus::synthetic(&[4, 6], 4);
    let mut inputs = c.inputs();
    // The same id for a document of each layout.
    inputs.push(ClusterInput {
        id: &c.ids[0],
        document: &c.docs[1],
    });
    let forward = cluster_layouts(&inputs, &params(1));
    inputs.reverse();
    let backward = cluster_layouts(&inputs, &params(1));
    assert_eq!(forward, backward);
    let total: usize = forward.iter().map(|cl| cl.members.len()).sum();
    assert_eq!(total, c.ids.len());
}

#[test]
fn a_full_index_gives_up_the_oldest_lonely_leader() {
    let a = features(&layout(11, N));
    let b = features(&layout(12, N));
    let c = Corpus::new(vec![(11, a.clone()), (12, b), (11, a)]);
    let p = ClusterParams {
        min_cluster_size: 1,
        ..ClusterParams::default()
    };
    // With room for every leader the third document joins the first.
    let out = cluster_layouts(&c.inputs(), &p);
    assert_eq!(labels_of(&c, &out).len(), 2);
    // With room for one, the first leader was given up when the second arrived.
    let p1 = ClusterParams {
        max_leaders: 1,
        ..p
    };
    let out = cluster_layouts(&c.inputs(), &p1);
    check_invariants(&c, &out, &p1);
    assert_eq!(out.len(), 3, "{out:?}");
}

/// A two-column key/value form: a title and `rows` rows of two key/value pairs.
fn two_column_form(r: &mut Rng, rows: usize, jitter: f64) -> StructuralFeatures {
    let mut l: Layout = vec![("title", 0.1, 0.04, 0.4, 0.03)];
    for i in 0..rows {
        let y = 0.12 + i as f64 * 0.05;
        for x in [0.08, 0.54] {
            l.push(("key", x, y, 0.14, 0.016));
            l.push(("value", x + 0.16, y, r.range(0.12, 0.24), 0.016));
        }
    }
    jittered(l, r, jitter)
}

/// A single full-width table: a title, the table and `rows` × 4 cells.
fn single_table(r: &mut Rng, rows: usize, jitter: f64) -> StructuralFeatures {
    let row_h = 0.035;
    let mut l: Layout = vec![
        ("title", 0.1, 0.04, 0.4, 0.03),
        ("table", 0.08, 0.12, 0.84, row_h * rows as f64),
    ];
    for i in 0..rows {
        for j in 0..4 {
            let x = 0.08 + j as f64 * 0.21;
            l.push((
                "table_cell",
                x + 0.004,
                0.122 + i as f64 * row_h,
                0.2,
                row_h - 0.004,
            ));
        }
    }
    let _ = r.f64();
    jittered(l, r, jitter)
}

fn jittered(l: Layout, r: &mut Rng, jitter: f64) -> StructuralFeatures {
    let l = l
        .into_iter()
        .map(|(t, x, y, w, h)| {
            (
                t,
                (x + r.range(-jitter, jitter)).clamp(0.0, 1.0 - w),
                (y + r.range(-jitter, jitter)).clamp(0.0, 1.0 - h),
                w,
                h,
            )
        })
        .collect();
    features(&l)
}

/// Up to 12 documents per family in an arbitrary interleaving, each with its own rows.
fn forms_and_tables(seed: u64, n_forms: usize, n_tables: usize) -> Corpus {
    let mut r = Rng(seed);
    let mut items = Vec::new();
    for _ in 0..n_forms {
        let rows = 8 + r.below(5) as usize;
        items.push((0, two_column_form(&mut r, rows, 0.004)));
    }
    for _ in 0..n_tables {
        let rows = 8 + r.below(5) as usize;
        items.push((1, single_table(&mut r, rows, 0.004)));
    }
    for i in (1..items.len()).rev() {
        items.swap(i, r.below(i as u64 + 1) as usize);
    }
    Corpus::new(items)
}

#[test]
fn forms_and_tables_never_share_a_cluster() {
    let c = forms_and_tables(7, 10, 10);
    let p = params(1);
    let out = cluster_layouts(&c.inputs(), &p);
    check_invariants(&c, &out, &p);
    let labels = labels_of(&c, &out);
    assert!(labels.iter().all(|l| l.len() == 1), "{labels:?}");
    // Natural variation (8–12 rows, jitter) keeps each family together here.
    assert_eq!(out.len(), 2, "{out:?}");
}

/// A permutation of 0..n from a seed (Fisher–Yates).
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut r = Rng(seed);
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        v.swap(i, r.below(i as u64 + 1) as usize);
    }
    v
}

proptest! {
    // The engine is built without optimizations in tests; each case clusters ~30 documents.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn clustering_is_invariant_under_input_order(
        seeds in proptest::collection::btree_set(0u64..400, 1..5),
        per in 2usize..7,
        perm_seed in any::<u64>(),
        min_size in 1usize..4,
    ) {
        let seeds: Vec<u64> = seeds.into_iter().collect();
        let c = Corpus::synthetic(&seeds, per);
        let p = params(min_size);
        let inputs = c.inputs();
        let reference = cluster_layouts(&inputs, &p);
        check_invariants(&c, &reference, &p);
        if min_size == 1 {
            let clustered: usize = reference.iter().map(|cl| cl.members.len()).sum();
            prop_assert_eq!(clustered, inputs.len(), "every document is in a cluster");
        }
        let shuffled: Vec<ClusterInput<'_>> =
            permutation(inputs.len(), perm_seed).into_iter().map(|i| inputs[i]).collect();
        prop_assert_eq!(&cluster_layouts(&shuffled, &p), &reference);
    }

    /// Copies of one document, at arbitrary positions among documents of other layouts,
    /// always end up in one cluster.
    #[test]
    fn exact_duplicates_always_share_a_cluster(
        seeds in proptest::collection::btree_set(0u64..400, 1..4),
        per in 1usize..5,
        copy_of in 0u64..400,
        copies in 2usize..6,
        order_seed in any::<u64>(),
    ) {
        let seeds: Vec<u64> = seeds.into_iter().collect();
        let mut items: Vec<(u64, StructuralFeatures)> = Vec::new();
        for k in 0..per {
            for &s in &seeds {
                items.push((s, document(s, 1000 * s + k as u64, N, 0.004, k % 2)));
            }
        }
        let copy = document(copy_of, 77, N, 0.004, 1);
        items.extend((0..copies).map(|_| (u64::MAX, copy.clone())));
        let order = permutation(items.len(), order_seed);
        let c = Corpus::new(order.into_iter().map(|i| items[i].clone()).collect());
        let p = params(1);
        let out = cluster_layouts(&c.inputs(), &p);
        check_invariants(&c, &out, &p);
        let holding: Vec<usize> = out
            .iter()
            .map(|cl| cl.members.iter().filter(|m| c.labels[c.position(m)] == u64::MAX).count())
            .filter(|&n| n > 0)
            .collect();
        prop_assert_eq!(holding, vec![copies]);
    }

    #[test]
    fn forms_and_tables_are_always_separated(
        seed in any::<u64>(),
        n_forms in 0usize..10,
        n_tables in 0usize..10,
    ) {
        let c = forms_and_tables(seed, n_forms, n_tables);
        let p = params(1);
        let out = cluster_layouts(&c.inputs(), &p);
        check_invariants(&c, &out, &p);
        for l in labels_of(&c, &out) {
            prop_assert_eq!(l.len(), 1);
        }
    }

    /// Documents with larger ids never move earlier documents: clustering a prefix of the
    /// id order gives the clusters of the whole set restricted to that prefix, with the
    /// same leaders and keys.
    #[test]
    fn later_documents_never_move_earlier_ones(
        seeds in proptest::collection::btree_set(0u64..400, 1..4),
        per in 2usize..6,
        cut in 0.0f64..1.0,
    ) {
        let seeds: Vec<u64> = seeds.into_iter().collect();
        let c = Corpus::synthetic(&seeds, per);
        let p = params(1);
        let inputs = c.inputs();
        let k = ((inputs.len() as f64) * cut) as usize;
        let whole = cluster_layouts(&inputs, &p);
        let prefix = cluster_layouts(&inputs[..k], &p);
        let restricted: BTreeMap<String, Vec<String>> = whole
            .iter()
            .map(|cl| {
                let m: Vec<String> =
                    cl.members.iter().filter(|m| c.position(m) < k).cloned().collect();
                (cl.key.clone(), m)
            })
            .filter(|(_, m)| !m.is_empty())
            .collect();
        let got: BTreeMap<String, Vec<String>> =
            prefix.iter().map(|cl| (cl.key.clone(), cl.members.clone())).collect();
        prop_assert_eq!(got, restricted);
    }
}
