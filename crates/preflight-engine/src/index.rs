//! Per-tenant in-memory template index.
//!
//! Exact layout fingerprints of exemplars short-circuit the search. Otherwise MinHash/LSH
//! over coarse layout tokens (bands × rows, see docs/engine.md) proposes candidates, which
//! are ranked by the number of colliding bands and exactly scored. Small indexes are
//! scanned exhaustively because that is both cheaper and exact. All hash maps use a fixed
//! hasher, so nothing depends on process-random seeds.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::align::AlignParams;
use crate::sketch::{band_keys, coarse_similarity, DocSketch, SimDetail, LSH_BANDS};
use crate::template::Template;

/// Deterministic FNV-1a-style hasher with a final mix (keys are ids and LSH band hashes).
#[derive(Default)]
pub(crate) struct FixedHasher(u64);

impl Hasher for FixedHasher {
    fn finish(&self) -> u64 {
        crate::sketch::mix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = self.0.rotate_left(5) ^ v;
    }
}

type FixedMap<K, V> = HashMap<K, V, BuildHasherDefault<FixedHasher>>;

/// Indexes at or below this size are scored exhaustively.
pub const DEFAULT_EXHAUSTIVE_LIMIT: usize = 512;

/// The LSH stage proposes this many times `max_candidates` for the coarse ranking.
pub const COARSE_POOL_FACTOR: usize = 8;

/// Buckets up to this size are always used; larger ones only above 1 % of the index.
pub const MIN_BUCKET_CAP: usize = 256;

/// A scored candidate (internal).
#[derive(Debug, Clone)]
pub(crate) struct Scored<'a> {
    pub template: &'a Template,
    pub sim: SimDetail,
    pub exact: bool,
}

/// The templates of one tenant.
#[derive(Debug, Clone)]
pub struct TemplateIndex {
    slots: Vec<Option<Template>>,
    /// Hash of each slot's `template_version_id`: a cheap, insertion-order independent
    /// tie-break when ranking LSH candidates.
    tie: Vec<u64>,
    free: Vec<u32>,
    by_id: FixedMap<String, u32>,
    bands: Vec<FixedMap<u64, Vec<u32>>>,
    fingerprints: FixedMap<[u8; 32], Vec<u32>>,
    exhaustive_limit: usize,
}

impl Default for TemplateIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl TemplateIndex {
    pub fn new() -> TemplateIndex {
        TemplateIndex {
            slots: Vec::new(),
            tie: Vec::new(),
            free: Vec::new(),
            by_id: FixedMap::default(),
            bands: (0..LSH_BANDS).map(|_| FixedMap::default()).collect(),
            fingerprints: FixedMap::default(),
            exhaustive_limit: DEFAULT_EXHAUSTIVE_LIMIT,
        }
    }

    /// Changes the size up to which every template is scored (0 forces LSH always; used to
    /// measure LSH recall on small data sets).
    pub fn with_exhaustive_limit(mut self, limit: usize) -> TemplateIndex {
        self.exhaustive_limit = limit;
        self
    }

    /// Inserts a template, replacing one with the same `template_version_id`.
    pub fn insert(&mut self, template: Template) {
        self.remove(&template.template_version_id);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.tie.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        self.tie[slot as usize] = id_hash(&template.template_version_id);
        for (b, key) in band_keys(&template.signature).enumerate() {
            self.bands[b].entry(key).or_default().push(slot);
        }
        for fp in &template.fingerprints {
            self.fingerprints.entry(*fp).or_default().push(slot);
        }
        self.by_id
            .insert(template.template_version_id.clone(), slot);
        self.slots[slot as usize] = Some(template);
    }

    /// Removes a template version; returns whether it was present.
    pub fn remove(&mut self, template_version_id: &str) -> bool {
        let Some(slot) = self.by_id.remove(template_version_id) else {
            return false;
        };
        let Some(t) = self.slots[slot as usize].take() else {
            return false;
        };
        for (b, key) in band_keys(&t.signature).enumerate() {
            if let Some(v) = self.bands[b].get_mut(&key) {
                v.retain(|&s| s != slot);
                if v.is_empty() {
                    self.bands[b].remove(&key);
                }
            }
        }
        for fp in &t.fingerprints {
            if let Some(v) = self.fingerprints.get_mut(fp) {
                v.retain(|&s| s != slot);
                if v.is_empty() {
                    self.fingerprints.remove(fp);
                }
            }
        }
        self.free.push(slot);
        true
    }

    pub fn get(&self, template_version_id: &str) -> Option<&Template> {
        let slot = *self.by_id.get(template_version_id)?;
        self.slots[slot as usize].as_ref()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Iterates the templates (in slot order, not sorted).
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.slots.iter().flatten()
    }

    /// Approximate memory used by the templates and the index structures.
    pub fn approx_memory_bytes(&self) -> usize {
        let templates: usize = self.templates().map(Template::approx_memory_bytes).sum();
        let bucket_overhead = 8 + 24 + 8; // key, Vec header, hash-table control/slack
        let bands: usize = self
            .bands
            .iter()
            .map(|m| {
                m.capacity() * bucket_overhead + m.values().map(|v| v.capacity() * 4).sum::<usize>()
            })
            .sum();
        let fps = self.fingerprints.capacity() * (32 + 24 + 8)
            + self
                .fingerprints
                .values()
                .map(|v| v.capacity() * 4)
                .sum::<usize>();
        let ids = self.by_id.capacity() * (24 + 4 + 8)
            + self.by_id.keys().map(String::capacity).sum::<usize>();
        std::mem::size_of::<Self>()
            + self.slots.capacity() * std::mem::size_of::<Option<Template>>()
            + self.tie.capacity() * 8
            + templates
            + bands
            + fps
            + ids
    }

    /// Finds and scores the best candidates, best first (ties broken by
    /// `template_version_id` so results never depend on insertion order). Returns the
    /// ranking and how many templates were exactly scored.
    pub(crate) fn rank(
        &self,
        doc: &DocSketch,
        fingerprint: &str,
        max_candidates: usize,
    ) -> (Vec<Scored<'_>>, usize) {
        let mut raw = [0u8; 32];
        if hex::decode_to_slice(fingerprint, &mut raw).is_ok() {
            if let Some(slots) = self.fingerprints.get(&raw) {
                let mut out: Vec<Scored<'_>> = slots
                    .iter()
                    .filter_map(|&s| self.slots[s as usize].as_ref())
                    .map(|t| {
                        // The total is 1 by definition; only the parts (for drift) are
                        // needed, so the alignment is not computed.
                        let mut sim = coarse_similarity(doc, &t.cells, &t.scalar_mean);
                        sim.total = 1.0;
                        Scored {
                            template: t,
                            sim,
                            exact: true,
                        }
                    })
                    .collect();
                if !out.is_empty() {
                    sort_scored(&mut out);
                    let n = out.len();
                    return (out, n);
                }
            }
        }
        let keep = max_candidates.max(1);
        let slots: Vec<u32> = if self.len() <= self.exhaustive_limit {
            self.by_id.values().copied().collect()
        } else {
            self.lsh_candidates(&doc.signature, keep * COARSE_POOL_FACTOR)
        };
        // Two stages: every candidate gets the cheap coarse similarity and the cheaper
        // shape signature; the best `max_candidates` by either (receipts are alike on the
        // grids but not in their line shapes) get the costlier, sharper box alignment and
        // the final rank.
        let mut out: Vec<Scored<'_>> = slots
            .iter()
            .filter_map(|&s| self.slots[s as usize].as_ref())
            .map(|t| Scored {
                template: t,
                sim: coarse_similarity(doc, &t.cells, &t.scalar_mean),
                exact: false,
            })
            .collect();
        let n = out.len();
        if out.len() > keep {
            let shape: Vec<f64> = out
                .iter()
                .map(|s| s.template.shape_with(&doc.boxes))
                .collect();
            let coarse: Vec<f64> = out.iter().map(|s| s.sim.total).collect();
            let mut chosen = vec![false; out.len()];
            for score in [&shape, &coarse] {
                // The `keep` best by this score, ties by version id (insertion-order free).
                let mut order: Vec<usize> = (0..out.len()).collect();
                order.sort_by(|&a, &b| {
                    score[b].total_cmp(&score[a]).then_with(|| {
                        out[a]
                            .template
                            .template_version_id
                            .cmp(&out[b].template.template_version_id)
                    })
                });
                for &i in order.iter().take(keep) {
                    chosen[i] = true;
                }
            }
            let mut i = 0;
            out.retain(|_| {
                let k = chosen[i];
                i += 1;
                k
            });
        }
        for s in out.iter_mut() {
            s.sim = s
                .sim
                .with_align(s.template.align_with(&doc.boxes, &AlignParams::default()));
        }
        sort_scored(&mut out);
        (out, n)
    }

    /// Slots colliding with the signature in at least one band, the `limit` with the most
    /// colliding bands (an estimate of Jaccard similarity).
    fn lsh_candidates(&self, sig: &[u32], limit: usize) -> Vec<u32> {
        // Buckets holding a large share of the index are "stop words" (a layout pattern
        // common to many templates): they carry little evidence and dominate the cost, so
        // they are skipped whenever a more specific bucket also matched.
        let cap = (self.len() / 100).max(MIN_BUCKET_CAP);
        let buckets: Vec<&Vec<u32>> = band_keys(sig)
            .enumerate()
            .filter_map(|(b, key)| self.bands[b].get(&key))
            .collect();
        let specific = buckets.iter().any(|v| v.len() <= cap);
        let used = || {
            buckets
                .iter()
                .filter(move |v| !specific || v.len() <= cap)
                .flat_map(|v| v.iter().copied())
        };
        // Count collisions per slot in a dense byte array (≤ 20 bands, so u8 never
        // overflows) instead of sorting all hits: at 100 000 templates a query touches
        // ~24 000 (band, slot) pairs and the sort dominated the evaluation. Slots are
        // remembered the moment they reach 2 collisions; only when fewer than `limit`
        // do, the single-collision slots are gathered in a second pass. The ranking key
        // (collisions desc, id hash, slot) is unchanged, so the candidates are exactly
        // those of the former sort-and-count.
        let mut counts = vec![0u8; self.slots.len()];
        let mut multi: Vec<u32> = Vec::new();
        let mut any = false;
        for s in used() {
            any = true;
            let c = &mut counts[s as usize];
            *c += 1;
            if *c == 2 {
                multi.push(s);
            }
        }
        if !any {
            return Vec::new();
        }
        let mut counted: Vec<(u32, u32)> = multi
            .iter()
            .map(|&s| (s, u32::from(counts[s as usize])))
            .collect();
        if counted.len() < limit {
            counted.extend(used().filter(|&s| counts[s as usize] == 1).map(|s| (s, 1)));
        }
        if counted.len() > limit {
            let key = |c: &(u32, u32)| (u32::MAX - c.1, self.tie[c.0 as usize], c.0);
            counted.select_nth_unstable_by_key(limit - 1, key);
            counted.truncate(limit);
        }
        counted.into_iter().map(|(s, _)| s).collect()
    }

    /// Number of (band, template) collisions for a document (a diagnostic of bucket load).
    pub(crate) fn lsh_hits(&self, sig: &[u32]) -> usize {
        band_keys(sig)
            .enumerate()
            .map(|(b, key)| self.bands[b].get(&key).map_or(0, Vec::len))
            .sum()
    }
}

fn id_hash(id: &str) -> u64 {
    let mut h = FixedHasher::default();
    h.write(id.as_bytes());
    h.finish()
}

fn sort_scored(v: &mut [Scored<'_>]) {
    v.sort_by(|a, b| {
        b.sim.total.total_cmp(&a.sim.total).then_with(|| {
            a.template
                .template_version_id
                .cmp(&b.template.template_version_id)
        })
    });
}
