//! Clustering of NEW layouts into template suggestions.
//!
//! A tenant's NEW evaluations often come from a handful of layouts nobody has registered
//! yet ("42 documents since Monday look like one unregistered template"). [`cluster_layouts`]
//! groups such documents so that a cluster means "these would MATCH each other if one were
//! registered": membership is decided by the engine's own similarity (the value `evaluate`
//! calibrates, 1 for an exemplar's exact fingerprint) against
//! [`ClusterParams::min_similarity`], which defaults to the MATCH knot of the calibration.
//!
//! The algorithm is leader clustering in id order, with the engine's MinHash/LSH band keys
//! as the candidate search and an exact upper bound that skips most box alignments, then a
//! sampled medoid pass that picks a representative and exemplars per cluster. It is pure
//! and deterministic (docs/engine.md, *Clustering NEW layouts*): the output depends on the
//! set of inputs, not on their order, and documents appended later with larger ids never
//! move earlier documents between clusters, which keeps cluster keys stable.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::align::AlignParams;
use crate::index::{FixedHasher, MIN_BUCKET_CAP};
use crate::sketch::{band_keys, coarse_similarity, SimDetail, LSH_BANDS};
use crate::template::Template;
use crate::validate::ValidatedDocument;

/// One document to cluster: the id of its evaluation and its validated features.
#[derive(Debug, Clone, Copy)]
pub struct ClusterInput<'a> {
    /// Evaluation id. Ids order the documents (UUIDv7 strings sort by time), break every tie
    /// and name the members of the result, so they should be unique.
    pub id: &'a str,
    pub document: &'a ValidatedDocument,
}

/// Parameters of [`cluster_layouts`]; the defaults are listed in docs/engine.md. Missing
/// fields deserialize to their defaults, so a configuration may name only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterParams {
    /// A document joins a cluster when its similarity to the cluster's leader reaches this
    /// (default: [`crate::calibration::S_MATCH`] = 0.675, the similarity of match
    /// confidence 0.85).
    pub min_similarity: f64,
    /// Clusters with fewer members are not returned (default 3).
    pub min_cluster_size: usize,
    /// Exemplars suggested per cluster, the representative first (default 3; at least 1
    /// is always returned).
    pub max_exemplars: usize,
    /// LSH candidates (leaders colliding in the most bands) given the coarse similarity per
    /// document (default 64).
    pub max_candidates: usize,
    /// Of the candidates whose bound reaches `min_similarity`, the best this many by
    /// coarse similarity and the best this many by shape signature are aligned, as
    /// `Policy::max_candidates` does for `evaluate` (default 4).
    pub max_aligned: usize,
    /// While there are at most this many leaders, a document no LSH candidate accepts is
    /// scored against every leader before it starts a cluster (default 512, the template
    /// index's exhaustive limit).
    pub exhaustive_limit: usize,
    /// Members tried as the representative, spread evenly in id order (default 6).
    pub representative_candidates: usize,
    /// Members each representative candidate is scored against (default 24).
    pub representative_sample: usize,
    /// Members checked against the representative and measured for `cohesion`: all of
    /// them up to this many, else this many spread evenly in id order (default 256).
    pub cohesion_sample: usize,
    /// At most this many leaders are kept searchable (each is a single-exemplar template,
    /// ~5.5 KB); beyond it the oldest leader still alone in its cluster stops accepting
    /// members (default 10 000).
    pub max_leaders: usize,
}

impl Default for ClusterParams {
    fn default() -> Self {
        ClusterParams {
            min_similarity: crate::calibration::S_MATCH,
            min_cluster_size: 3,
            max_exemplars: 3,
            max_candidates: 64,
            max_aligned: 4,
            exhaustive_limit: crate::index::DEFAULT_EXHAUSTIVE_LIMIT,
            representative_candidates: 6,
            representative_sample: 24,
            cohesion_sample: 256,
            max_leaders: 10_000,
        }
    }
}

/// A group of documents that look like one unregistered template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayoutCluster {
    /// Stable identifier, [`cluster_key`] of the leader: 64 lowercase hex digits of
    /// `SHA-256("preflight-layout-cluster-v1\n" + leader)`. Documents with later ids never
    /// change which cluster earlier documents are in, so the key survives them.
    pub key: String,
    /// Member ids, sorted.
    pub members: Vec<String>,
    /// The first member (smallest id). Every member's similarity to it reaches
    /// `min_similarity` (or the member has the leader's exact layout fingerprint).
    pub leader: String,
    /// The member with the highest mean similarity to a sample of the others among those
    /// every checked member (see `ClusterParams::cohesion_sample`) would MATCH; the
    /// leader if no other candidate qualifies.
    pub representative: String,
    /// Up to `max_exemplars` ids to register as the template's exemplars: the
    /// representative, then the next most central candidates, each with a layout
    /// fingerprint not already among them.
    pub exemplars: Vec<String>,
    /// Mean similarity of the other checked members to the representative (1 for a
    /// single member). The checked members are all members up to `cohesion_sample`, else
    /// that many spread evenly in id order.
    pub cohesion: f64,
    /// Lowest similarity of another checked member to the representative (1 for a single
    /// member); never below `ClusterParams::min_similarity`.
    pub min_member_similarity: f64,
}

/// Groups documents by layout (see the module documentation and docs/engine.md). Broken
/// extractions (`is_broken`) are skipped; of several inputs with the same id only the one
/// with the smallest layout fingerprint (then canonical input) is used. Clusters come
/// sorted by size (largest first), then by key; only those with at least
/// `min_cluster_size` members are returned.
pub fn cluster_layouts(inputs: &[ClusterInput<'_>], params: &ClusterParams) -> Vec<LayoutCluster> {
    let docs = ordered(inputs);
    let min_size = params.min_cluster_size.max(1);
    let mut out: Vec<LayoutCluster> = assign(&docs, params)
        .iter()
        .filter(|c| c.members.len() >= min_size)
        .map(|c| refine(&docs, c, params))
        .collect();
    out.sort_by(|a, b| {
        b.members
            .len()
            .cmp(&a.members.len())
            .then_with(|| a.key.cmp(&b.key))
    });
    out
}

/// The stable key of a cluster with this leader id.
pub fn cluster_key(leader: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"preflight-layout-cluster-v1\n");
    h.update(leader.as_bytes());
    hex::encode(h.finalize())
}

/// The inputs to cluster, in the order that defines the result: by id, one per id.
fn ordered<'a>(inputs: &[ClusterInput<'a>]) -> Vec<ClusterInput<'a>> {
    // The canonical input hash settles repeated ids with the same fingerprint (different
    // density or confidences), so not even that case depends on the caller's order.
    let mut keyed: Vec<(&str, &str, [u8; 32], ClusterInput<'a>)> = inputs
        .iter()
        .filter(|i| !i.document.is_broken())
        .map(|i| {
            let h: [u8; 32] = i.document.replay_prefix.clone().finalize().into();
            (i.id, i.document.layout_fingerprint(), h, *i)
        })
        .collect();
    keyed.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    keyed.dedup_by(|later, first| later.0 == first.0);
    keyed.into_iter().map(|k| k.3).collect()
}

/// A cluster during assignment: positions in the ordered inputs, the first is the leader.
struct Open {
    members: Vec<usize>,
}

type FixedMap<K, V> = HashMap<K, V, BuildHasherDefault<FixedHasher>>;

/// The searchable leaders: one single-exemplar template per cluster (by cluster number)
/// and the engine's LSH band keys of their MinHash signatures.
///
/// Not a [`crate::TemplateIndex`]: its ranking aligns a fixed number of candidates, while
/// clustering only needs the best leader, and the bound `0.7·coarse + 0.3` on the blended
/// similarity lets it skip the alignment of most candidates exactly (the alignment is
/// most of the cost of a similarity).
struct Leaders {
    templates: Vec<Option<Template>>,
    active: usize,
    bands: Vec<FixedMap<u64, Vec<u32>>>,
    /// Collision counts per cluster, zero between queries.
    counts: Vec<u8>,
}

impl Leaders {
    fn new() -> Leaders {
        Leaders {
            templates: Vec::new(),
            active: 0,
            bands: (0..LSH_BANDS).map(|_| FixedMap::default()).collect(),
            counts: Vec::new(),
        }
    }

    fn insert(&mut self, cluster: usize, t: Template) {
        debug_assert_eq!(cluster, self.templates.len());
        let slot = cluster as u32;
        for (b, key) in band_keys(&t.signature).enumerate() {
            self.bands[b].entry(key).or_default().push(slot);
        }
        self.templates.push(Some(t));
        self.counts.push(0);
        self.active += 1;
    }

    fn remove(&mut self, cluster: usize) {
        let Some(t) = self.templates[cluster].take() else {
            return;
        };
        let slot = cluster as u32;
        for (b, key) in band_keys(&t.signature).enumerate() {
            if let Some(v) = self.bands[b].get_mut(&key) {
                v.retain(|&s| s != slot);
                if v.is_empty() {
                    self.bands[b].remove(&key);
                }
            }
        }
        self.active -= 1;
    }

    fn is_active(&self, cluster: usize) -> bool {
        self.templates[cluster].is_some()
    }

    /// Whether the document may join this cluster: it has the leader's fingerprint (which
    /// `evaluate` scores 1), or its similarity to the leader reaches `min`.
    fn accepts(&self, cluster: usize, doc: &ValidatedDocument, min: f64) -> bool {
        self.templates[cluster]
            .as_ref()
            .is_some_and(|t| similarity(doc, t) >= min)
    }

    /// The leader a document joins: the most similar at or above `min_similarity` (ties to
    /// the older leader) among the LSH candidates, or, when none qualifies and there are at
    /// most `exhaustive_limit` leaders, among all of them.
    fn best(&mut self, doc: &ValidatedDocument, p: &ClusterParams) -> Option<usize> {
        let candidates = self.lsh_candidates(&doc.sketch.signature, p.max_candidates.max(1));
        if let Some(c) = self.best_of(doc, &candidates, p) {
            return Some(c);
        }
        if self.active > p.exhaustive_limit {
            return None;
        }
        // LSH misses a true leader now and then (a coarse token set unlike the leader's);
        // a miss would split a cluster, so before a document starts one, every leader is
        // scored. Only documents no candidate accepts pay for this, and most of them do
        // start a cluster.
        let rest: Vec<usize> = (0..self.templates.len())
            .filter(|&c| self.templates[c].is_some() && candidates.binary_search(&c).is_err())
            .collect();
        self.best_of(doc, &rest, p)
    }

    /// Best of `clusters` at or above `min`, by the index's two stages: coarse similarity
    /// and shape signature for all, the box alignment for the `max_aligned` best by either.
    /// The alignment runs in order of the bound and stops once the bound cannot beat the
    /// best so far, which leaves the winner unchanged.
    fn best_of(
        &self,
        doc: &ValidatedDocument,
        clusters: &[usize],
        p: &ClusterParams,
    ) -> Option<usize> {
        let min = p.min_similarity;
        // The blend is monotone in the alignment (at most 1), so its value at alignment 1
        // bounds the similarity from above.
        let mut scored: Vec<(f64, SimDetail, usize, &Template)> = clusters
            .iter()
            .filter_map(|&c| Some((c, self.templates[c].as_ref()?)))
            .map(|(c, t)| {
                let sim = coarse_similarity(&doc.sketch, &t.cells, &t.scalar_mean);
                (sim.with_align(1.0).total, sim, c, t)
            })
            .filter(|s| s.0 >= min)
            .collect();
        let keep = p.max_aligned.max(1);
        if scored.len() > keep {
            // Receipts are alike on the grids but not in their line shapes: the best by
            // either score are aligned, as in `TemplateIndex::rank`.
            let shape: Vec<f64> = scored
                .iter()
                .map(|s| s.3.shape_with(&doc.sketch.boxes))
                .collect();
            let mut chosen = vec![false; scored.len()];
            for by_shape in [true, false] {
                let score = |i: usize| if by_shape { shape[i] } else { scored[i].0 };
                let mut order: Vec<usize> = (0..scored.len()).collect();
                order.sort_by(|&a, &b| {
                    score(b)
                        .total_cmp(&score(a))
                        .then_with(|| scored[a].2.cmp(&scored[b].2))
                });
                for &i in order.iter().take(keep) {
                    chosen[i] = true;
                }
            }
            let mut i = 0;
            scored.retain(|_| {
                i += 1;
                chosen[i - 1]
            });
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.2.cmp(&b.2)));
        let mut best: Option<(f64, usize)> = None;
        for (bound, sim, c, t) in scored {
            if best.is_some_and(|b| bound < b.0) {
                break;
            }
            // Exactly `sketch::similarity`, the value `evaluate` decides on.
            let align = t.align_with(&doc.sketch.boxes, &AlignParams::default());
            let total = sim.with_align(align).total;
            let better = match best {
                None => total >= min,
                Some((b, bc)) => total > b || (total == b && c < bc),
            };
            if better {
                best = Some((total, c));
            }
        }
        best.map(|b| b.1)
    }

    /// Leaders colliding with the signature in at least one band, the `limit` with the most
    /// colliding bands (ties to the older leader), sorted by cluster number.
    fn lsh_candidates(&mut self, sig: &[u32], limit: usize) -> Vec<usize> {
        // As in the template index: a bucket holding a large share of the leaders is a
        // pattern common to many layouts, evidence of little worth at a large cost, so it
        // is skipped whenever a more specific bucket matched too.
        let cap = (self.active / 100).max(MIN_BUCKET_CAP);
        let buckets: Vec<&Vec<u32>> = band_keys(sig)
            .enumerate()
            .filter_map(|(b, key)| self.bands[b].get(&key))
            .collect();
        let specific = buckets.iter().any(|v| v.len() <= cap);
        let mut touched: Vec<u32> = Vec::new();
        for v in buckets.iter().filter(|v| !specific || v.len() <= cap) {
            for &s in v.iter() {
                let c = &mut self.counts[s as usize];
                if *c == 0 {
                    touched.push(s);
                }
                // At most LSH_BANDS (20) collisions: no overflow.
                *c += 1;
            }
        }
        let mut ranked: Vec<(u8, u32)> = touched
            .iter()
            .map(|&s| (self.counts[s as usize], s))
            .collect();
        for &s in &touched {
            self.counts[s as usize] = 0;
        }
        if ranked.len() > limit {
            let key = |x: &(u8, u32)| (u8::MAX - x.0, x.1);
            ranked.select_nth_unstable_by_key(limit - 1, key);
            ranked.truncate(limit);
        }
        let mut out: Vec<usize> = ranked.into_iter().map(|x| x.1 as usize).collect();
        out.sort_unstable();
        out
    }
}

/// Leader clustering: each document, in id order, joins the cluster of an earlier document
/// with its layout fingerprint if it may (see [`Leaders::accepts`]), else the most similar
/// leader at or above `min_similarity`, or becomes a leader itself.
fn assign(docs: &[ClusterInput<'_>], p: &ClusterParams) -> Vec<Open> {
    let mut leaders = Leaders::new();
    let mut clusters: Vec<Open> = Vec::new();
    // Leaders still alone, oldest first: the ones given up when the index is full, since a
    // layout seen once long ago is the least likely to be seen again.
    let mut lonely: VecDeque<usize> = VecDeque::new();
    // The cluster of the first document with each fingerprint. Without it a copy could
    // leave its original: a leader that appeared after the original may be closer.
    let mut seen: FixedMap<[u8; 32], usize> = FixedMap::default();
    for (pos, input) in docs.iter().enumerate() {
        let doc = input.document;
        let fp = raw_fingerprint(doc);
        let earlier = seen.get(&fp).copied().filter(|&c| leaders.is_active(c));
        let joined = match earlier {
            Some(c) if leaders.accepts(c, doc, p.min_similarity) => Some(c),
            _ => leaders.best(doc, p),
        };
        let c = match joined {
            Some(c) => {
                clusters[c].members.push(pos);
                c
            }
            None => {
                let Some(t) = single_template(doc) else {
                    // A validated, unbroken document is a valid exemplar; should that ever
                    // not hold, the document stays out of every cluster rather than
                    // failing the call.
                    continue;
                };
                let c = clusters.len();
                leaders.insert(c, t);
                lonely.push_back(c);
                clusters.push(Open { members: vec![pos] });
                while leaders.active > p.max_leaders.max(1) {
                    let Some(old) = lonely.pop_front() else { break };
                    if clusters[old].members.len() == 1 {
                        leaders.remove(old);
                    }
                }
                c
            }
        };
        if earlier.is_none() {
            seen.insert(fp, c);
        }
    }
    clusters
}

/// The layout fingerprint as bytes, as templates store their exemplars'.
fn raw_fingerprint(doc: &ValidatedDocument) -> [u8; 32] {
    let mut raw = [0u8; 32];
    // `layout_fingerprint` is always 64 hex digits, so decoding cannot fail.
    let _ = hex::decode_to_slice(doc.layout_fingerprint(), &mut raw);
    raw
}

/// Similarity of a document to a template exactly as `evaluate` scores it: 1 for an
/// exemplar's fingerprint, else the blended layout similarity.
fn similarity(doc: &ValidatedDocument, t: &Template) -> f64 {
    if t.fingerprints.contains(&raw_fingerprint(doc)) {
        return 1.0;
    }
    crate::sketch::similarity(&doc.sketch, t).total
}

fn single_template(doc: &ValidatedDocument) -> Option<Template> {
    Template::new("r", 1, "r", vec![doc.features().clone()], 1.0, Vec::new()).ok()
}

/// Up to `k` members spread evenly over the id order (the leader always among them).
fn spread(members: &[usize], k: usize) -> Vec<usize> {
    let n = members.len();
    let k = k.max(1);
    if n <= k {
        return members.to_vec();
    }
    (0..k).map(|i| members[i * n / k]).collect()
}

/// Similarities of the `check` members (other than `rep`) to a candidate representative,
/// or `None` as soon as one falls below `min`.
fn checked(
    docs: &[ClusterInput<'_>],
    check: &[usize],
    rep: usize,
    t: &Template,
    min: f64,
) -> Option<Vec<f64>> {
    let mut sims = Vec::with_capacity(check.len());
    for &m in check.iter().filter(|&&m| m != rep) {
        let s = similarity(docs[m].document, t);
        if s < min {
            return None;
        }
        sims.push(s);
    }
    Some(sims)
}

/// Picks the representative and exemplars of a cluster and measures its cohesion.
fn refine(docs: &[ClusterInput<'_>], c: &Open, p: &ClusterParams) -> LayoutCluster {
    let leader = c.members[0];
    let candidates = spread(
        &c.members,
        p.representative_candidates.max(p.max_exemplars).max(1),
    );
    let sample = spread(&c.members, p.representative_sample);
    // (mean similarity of the sample to the candidate, position, its template).
    let mut scored: Vec<(f64, usize, Template)> = candidates
        .iter()
        .filter_map(|&cand| {
            let t = single_template(docs[cand].document)?;
            let (sum, n) = sample
                .iter()
                .filter(|&&s| s != cand)
                .fold((0.0, 0usize), |(sum, n), &s| {
                    (sum + similarity(docs[s].document, &t), n + 1)
                });
            let mean = if n == 0 { 1.0 } else { sum / n as f64 };
            Some((mean, cand, t))
        })
        .collect();
    // Best mean first; equal means go to the smaller id (positions follow id order).
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    // The most central candidate is only taken if every checked member would still MATCH
    // it: a medoid by mean can sit closer to most members and yet lose a few at the
    // cluster's edge. The leader passes by construction (every member joined it at or
    // above `min_similarity`, computed the same way), so the search always ends.
    let check = spread(&c.members, p.cohesion_sample);
    let mut chosen: Option<(usize, Vec<f64>)> = None;
    for s in &scored {
        if let Some(sims) = checked(docs, &check, s.1, &s.2, p.min_similarity) {
            chosen = Some((s.1, sims));
            break;
        }
    }
    let (rep, sims) = match chosen {
        Some(c) => c,
        // Only reachable if the leader could not be made a template, which a validated,
        // unbroken document always can; the leader is then reported unmeasured.
        None => (leader, Vec::new()),
    };
    // A second copy of a layout teaches a template nothing (every cell stays "always
    // occupied"), so exemplars have distinct fingerprints.
    let mut exemplars = vec![docs[rep].id.to_string()];
    let mut fingerprints = vec![docs[rep].document.layout_fingerprint()];
    for s in scored.iter().filter(|s| s.1 != rep) {
        if exemplars.len() >= p.max_exemplars.max(1) {
            break;
        }
        let fp = docs[s.1].document.layout_fingerprint();
        if !fingerprints.contains(&fp) {
            fingerprints.push(fp);
            exemplars.push(docs[s.1].id.to_string());
        }
    }
    let (cohesion, min_member_similarity) = if sims.is_empty() {
        (1.0, 1.0)
    } else {
        (
            sims.iter().sum::<f64>() / sims.len() as f64,
            sims.iter().copied().fold(1.0, f64::min),
        )
    };
    LayoutCluster {
        key: cluster_key(docs[leader].id),
        members: c.members.iter().map(|&m| docs[m].id.to_string()).collect(),
        leader: docs[leader].id.to_string(),
        representative: docs[rep].id.to_string(),
        exemplars,
        cohesion,
        min_member_similarity,
    }
}
