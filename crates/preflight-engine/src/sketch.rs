//! Layout representation and similarity.
//!
//! A document becomes multi-resolution occupancy grids (4×4, 8×8, 16×16) per element-type
//! group and page, in coordinates normalized to the page's (trimmed) content bounding box,
//! so margins, scan offsets and uniform scale disappear. Cell values are `u8` (sqrt of the
//! covered area share, saturated), stored dense for the query document and sparse for
//! templates. Similarity is a weighted generalized Jaccard per resolution plus a scalar
//! (counts) term; coarse grids forgive small shifts, fine grids separate templates.
//! A MinHash signature over the coarse occupied cells feeds the LSH candidate index.

use serde::{Deserialize, Serialize};

use crate::align::{AlignParams, BoxSet};
use crate::features::{ElementType, StructuralFeatures};

/// Element-type groups that get their own grid channel.
pub(crate) const GROUPS: usize = 4;
pub(crate) const GROUP_NAMES: [&str; GROUPS] = ["text", "form", "table", "graphic"];
/// Pages with their own channels; later pages fold into the last one.
pub(crate) const MAX_PAGES: usize = 8;
pub(crate) const RESOLUTIONS: [usize; 3] = [4, 8, 16];
const RES_OFFSETS: [usize; 3] = [0, 16, 80];
/// Cells per (page, group) channel over all resolutions.
pub(crate) const CELLS: usize = 16 + 64 + 256;
/// Weight of each resolution in the grid similarity (coarse → fine).
pub(crate) const RES_WEIGHTS: [f64; 3] = [0.25, 0.35, 0.40];
/// Share of the final similarity carried by the grids; the rest is the scalar term.
pub(crate) const GRID_WEIGHT: f64 = 0.85;
/// Trimmed share on each side when computing the content box, against stray specks.
const TRIM: f64 = 0.02;
/// Minimum content extent (page units) so a one-line document is not blown up.
const MIN_CONTENT_EXTENT: f64 = 0.05;
/// Minimum box extent in normalized coordinates so thin rules and dots still register.
const MIN_BOX_EXTENT: f64 = 1.0 / 64.0;
/// Cells at or above this value (of 255) become LSH tokens.
pub(crate) const TOKEN_MIN: u8 = 64;
/// Resolutions (indices into [`RESOLUTIONS`]) used as LSH tokens.
const TOKEN_RES: [usize; 2] = [0, 1];

/// MinHash/LSH parameters (see docs/engine.md for the collision curve that chose them).
pub(crate) const LSH_BANDS: usize = 20;
pub(crate) const LSH_ROWS: usize = 4;
pub(crate) const MINHASH_K: usize = LSH_BANDS * LSH_ROWS;

pub(crate) fn group_of(t: ElementType) -> usize {
    use ElementType::*;
    match t {
        Key | Value | SelectionMark => 1,
        Table | TableCell => 2,
        Figure | Signature | Barcode => 3,
        Text | Title | Heading | List | Header | Footer | PageNumber | Formula | Other => 0,
    }
}

/// Packs (page, group, resolution, cell) into a `u16` key.
#[inline]
fn key(page: usize, group: usize, res: usize, cell: usize) -> u16 {
    ((page * GROUPS + group) * CELLS + RES_OFFSETS[res] + cell) as u16
}

/// Decodes a key into (group, resolution index).
#[inline]
pub(crate) fn key_group_res(k: u16) -> (usize, usize) {
    let k = k as usize;
    let group = (k / CELLS) % GROUPS;
    let rem = k % CELLS;
    let res = if rem < 16 {
        0
    } else if rem < 80 {
        1
    } else {
        2
    };
    (group, res)
}

#[inline]
pub(crate) fn key_is_token(k: u16) -> bool {
    let (_, r) = key_group_res(k);
    TOKEN_RES.contains(&r)
}

/// The boxes of one page that define its content frame: all but selection marks and
/// graphics, unless fewer than [`MIN_FRAME_BOXES`] remain. Extractors report marks and
/// graphics inconsistently (Azure API v2.1 reports page-edge artefacts as selection marks
/// 0.1–0.2 page units large; a photo's page frame becomes a figure), and one such box at a
/// page corner moves the whole normalized frame, so every cell of the document shifts.
/// Text, form keys/values and tables are what the layout is made of.
pub(crate) fn frame_boxes<'a>(on_page: &[&'a NormBox]) -> Vec<&'a NormBox> {
    let core: Vec<&NormBox> = on_page
        .iter()
        .copied()
        .filter(|b| {
            !matches!(
                b.etype,
                ElementType::SelectionMark
                    | ElementType::Figure
                    | ElementType::Signature
                    | ElementType::Barcode
            )
        })
        .collect();
    if core.len() >= MIN_FRAME_BOXES {
        core
    } else {
        on_page.to_vec()
    }
}

/// Fewest content boxes that define a frame on their own (see [`frame_boxes`]).
pub(crate) const MIN_FRAME_BOXES: usize = 3;

/// A validated, clamped box in page units.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NormBox {
    pub page: usize,
    pub etype: ElementType,
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

/// Scalar features compared besides the grids, in a fixed order.
pub(crate) const SCALAR_NAMES: [&str; 10] = [
    "element_count",
    "table_count",
    "text_block_count",
    "image_count",
    "page_count",
    "column_count",
    "has_header",
    "has_footer",
    "text_density",
    "layout_complexity",
];
pub(crate) const NS: usize = SCALAR_NAMES.len();
const SCALAR_WEIGHTS: [f64; NS] = [1.0, 1.0, 0.5, 0.5, 2.0, 1.0, 0.5, 0.5, 0.5, 0.5];

pub(crate) fn scalars_of(f: &StructuralFeatures) -> [f64; NS] {
    [
        f.element_count as f64,
        f.table_count as f64,
        f.text_block_count as f64,
        f.image_count as f64,
        f.page_count as f64,
        f.column_count as f64,
        f64::from(u8::from(f.has_header)),
        f64::from(u8::from(f.has_footer)),
        f.text_density,
        f.layout_complexity,
    ]
}

/// Per-feature similarity in [0,1] between a document value and a template mean.
pub(crate) fn scalar_sim(i: usize, doc: f64, mean: f64) -> f64 {
    match i {
        // Counts: log-ratio, because 40 vs 50 line items is as natural as 4 vs 5.
        0..=3 => (-0.7 * ((doc + 1.0) / (mean + 1.0)).ln().abs()).exp(),
        4 => (-2.0 * ((doc + 1.0) / (mean + 1.0)).ln().abs()).exp(),
        5 => 0.5f64.powf((doc - mean).abs()),
        6 | 7 => 1.0 - (doc - mean).abs().min(1.0),
        _ => 1.0 - ((doc - mean).abs() / 0.5).min(1.0),
    }
}

/// The query document's sketch: dense grids plus precomputed totals and MinHash.
#[derive(Debug, Clone)]
pub(crate) struct DocSketch {
    pub dense: Vec<u8>,
    /// Non-zero keys in increasing order.
    pub nonzero: Vec<u16>,
    /// Sum of cell values per (group, resolution).
    pub totals: [[u64; 3]; GROUPS],
    pub scalars: [f64; NS],
    pub signature: Vec<u32>,
    /// The boxes themselves, for the fine alignment (see `align`).
    pub boxes: BoxSet,
}

impl DocSketch {
    pub fn build(f: &StructuralFeatures, boxes: &[NormBox]) -> DocSketch {
        let pages = (f.page_count.max(1) as usize).min(MAX_PAGES).max(
            boxes
                .iter()
                .map(|b| b.page.min(MAX_PAGES - 1) + 1)
                .max()
                .unwrap_or(1),
        );
        let mut cov = vec![0f32; pages * GROUPS * CELLS];
        for page in 0..pages {
            let on_page: Vec<&NormBox> = boxes
                .iter()
                .filter(|b| b.page.min(MAX_PAGES - 1) == page)
                .collect();
            if on_page.is_empty() {
                continue;
            }
            let frame = frame_boxes(&on_page);
            let (bx0, bx1) = trimmed_extent(frame.iter().map(|b| (b.x0, b.x1)));
            let (by0, by1) = trimmed_extent(frame.iter().map(|b| (b.y0, b.y1)));
            let (sx, sy) = (bx1 - bx0, by1 - by0);
            for b in on_page {
                let g = group_of(b.etype);
                let mut u = [
                    ((b.x0 - bx0) / sx).clamp(0.0, 1.0),
                    ((b.y0 - by0) / sy).clamp(0.0, 1.0),
                    ((b.x1 - bx0) / sx).clamp(0.0, 1.0),
                    ((b.y1 - by0) / sy).clamp(0.0, 1.0),
                ];
                widen(&mut u, 0, 2);
                widen(&mut u, 1, 3);
                for (r, &res) in RESOLUTIONS.iter().enumerate() {
                    rasterize(&mut cov, page, g, r, res, u);
                }
            }
        }
        let mut dense = vec![0u8; cov.len()];
        let mut nonzero = Vec::new();
        let mut totals = [[0u64; 3]; GROUPS];
        for (i, c) in cov.iter().enumerate() {
            let v = quantize_cov(*c);
            if v > 0 {
                dense[i] = v;
                nonzero.push(i as u16);
                let (g, r) = key_group_res(i as u16);
                totals[g][r] += u64::from(v);
            }
        }
        let mut s = DocSketch {
            dense,
            nonzero,
            totals,
            scalars: scalars_of(f),
            signature: Vec::new(),
            boxes: BoxSet::build(boxes),
        };
        s.signature = minhash(s.tokens().into_iter());
        s
    }

    /// LSH tokens of the document.
    pub fn tokens(&self) -> Vec<u16> {
        self.nonzero
            .iter()
            .copied()
            .filter(|&k| key_is_token(k) && self.dense[k as usize] >= TOKEN_MIN)
            .collect()
    }

    /// Non-zero cells with their values, in key order.
    pub fn cells(&self) -> impl Iterator<Item = (u16, u8)> + '_ {
        self.nonzero.iter().map(|&k| (k, self.dense[k as usize]))
    }
}

fn widen(u: &mut [f64; 4], lo: usize, hi: usize) {
    if u[hi] - u[lo] < MIN_BOX_EXTENT {
        let c = ((u[lo] + u[hi]) / 2.0).clamp(MIN_BOX_EXTENT / 2.0, 1.0 - MIN_BOX_EXTENT / 2.0);
        u[lo] = c - MIN_BOX_EXTENT / 2.0;
        u[hi] = c + MIN_BOX_EXTENT / 2.0;
    }
}

/// Value stored for a cell: sqrt of the covered share, so a cell crossed by one text line
/// is not negligible next to a filled table cell.
fn quantize_cov(c: f32) -> u8 {
    if c <= 0.0 {
        return 0;
    }
    let v = c.min(1.0).sqrt();
    ((v * 255.0).round() as u8).max(1)
}

/// Content extent along one axis, ignoring the outermost TRIM share of boxes on each side.
fn trimmed_extent(it: impl Iterator<Item = (f64, f64)>) -> (f64, f64) {
    let (mut lo, mut hi): (Vec<f64>, Vec<f64>) = it.unzip();
    lo.sort_by(f64::total_cmp);
    hi.sort_by(f64::total_cmp);
    let n = lo.len();
    let k = ((n as f64) * TRIM).floor() as usize;
    let mut a = lo[k.min(n - 1)];
    let mut b = hi[n - 1 - k.min(n - 1)];
    if b - a < MIN_CONTENT_EXTENT {
        let c = (a + b) / 2.0;
        a = c - MIN_CONTENT_EXTENT / 2.0;
        b = c + MIN_CONTENT_EXTENT / 2.0;
    }
    (a, b)
}

fn rasterize(cov: &mut [f32], page: usize, g: usize, r: usize, res: usize, u: [f64; 4]) {
    let rf = res as f64;
    let cx0 = ((u[0] * rf).floor() as usize).min(res - 1);
    let cx1 = (((u[2] * rf).ceil() as usize).max(1) - 1).min(res - 1);
    let cy0 = ((u[1] * rf).floor() as usize).min(res - 1);
    let cy1 = (((u[3] * rf).ceil() as usize).max(1) - 1).min(res - 1);
    for cy in cy0..=cy1 {
        let oy = (u[3].min((cy + 1) as f64 / rf) - u[1].max(cy as f64 / rf)).max(0.0);
        for cx in cx0..=cx1 {
            let ox = (u[2].min((cx + 1) as f64 / rf) - u[0].max(cx as f64 / rf)).max(0.0);
            let k = key(page, g, r, cy * res + cx) as usize;
            cov[k] += (ox * oy * rf * rf) as f32;
        }
    }
}

/// Seeded 64-bit mixer (splitmix64 finalizer): fixed constants, so hashing is deterministic.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const fn minhash_params() -> [(u64, u64); MINHASH_K] {
    let mut out = [(0u64, 0u64); MINHASH_K];
    let mut state: u64 = 0x005e_ed0f_9e37_79b9;
    let mut i = 0;
    while i < MINHASH_K {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let a = (z ^ (z >> 31)) | 1;
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out[i] = (a, z ^ (z >> 31));
        i += 1;
    }
    out
}

static MINHASH_PARAMS: [(u64, u64); MINHASH_K] = minhash_params();

/// MinHash signature of a token set: per hash function, the minimum of a seeded
/// multiply-add permutation of the token's mixed hash. An empty set gives all `u32::MAX`.
pub(crate) fn minhash(tokens: impl Iterator<Item = u16>) -> Vec<u32> {
    let mut sig = vec![u32::MAX; MINHASH_K];
    for t in tokens {
        let h = mix64(u64::from(t) ^ 0x7a3c_55aa_0f0f_1234);
        for (s, (a, b)) in sig.iter_mut().zip(MINHASH_PARAMS.iter()) {
            let v = (h.wrapping_mul(*a).wrapping_add(*b) >> 32) as u32;
            if v < *s {
                *s = v;
            }
        }
    }
    sig
}

/// The LSH band keys of a signature.
pub(crate) fn band_keys(sig: &[u32]) -> impl Iterator<Item = u64> + '_ {
    sig.chunks(LSH_ROWS).enumerate().map(|(band, rows)| {
        let mut h = mix64(band as u64 + 1);
        for &r in rows {
            h = mix64(h ^ u64::from(r));
        }
        h
    })
}

/// One stored template cell: mean value and stability weight (both 0..255).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProfileCell {
    pub key: u16,
    pub mean: u8,
    pub weight: u8,
}

/// Similarity of a document to a template, with the parts drift reports need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SimDetail {
    pub grid: f64,
    /// Grid similarity per element group; `None` when the group is absent from both.
    pub groups: [Option<f64>; GROUPS],
    pub scalar_parts: [f64; NS],
    /// Grids and scalars combined (the coarse similarity that ranks candidates).
    pub coarse: f64,
    /// The similarity decisions use: coarse and alignment blended (see [`ALIGN_WEIGHT`]).
    pub total: f64,
}

/// Share of the final similarity carried by the box alignment (rest: the coarse term).
/// Chosen on the quality benchmark's tune partition (docs/quality.md, "Tuning").
pub(crate) const ALIGN_WEIGHT: f64 = 0.3;

impl SimDetail {
    /// Adds the alignment score and recomputes the total.
    pub(crate) fn with_align(mut self, align: f64) -> SimDetail {
        self.total = (ALIGN_WEIGHT * align + (1.0 - ALIGN_WEIGHT) * self.coarse).clamp(0.0, 1.0);
        self
    }
}

/// Coarse similarity: weighted generalized Jaccard between the dense document grid and a
/// sparse profile, plus the scalar term. Cells the template never occupies weigh 1 (255):
/// unexpected content always counts.
pub(crate) fn coarse_similarity(
    doc: &DocSketch,
    cells: &[ProfileCell],
    scalar_means: &[f64; NS],
) -> SimDetail {
    let mut wmin = [[0u64; 3]; GROUPS];
    let mut wmax = [[0u64; 3]; GROUPS];
    let mut d_in = [[0u64; 3]; GROUPS];
    // Cells come sorted by key, so keys of one (page, group, resolution) form runs: sum a
    // run in registers and add it to its accumulator once, instead of a read-modify-write
    // of the accumulator in memory per cell.
    // Integer sums: the result does not depend on the order, sorted or not.
    let (mut run_start, mut run_end) = (0usize, 0usize);
    let (mut g, mut r) = (0usize, 0usize);
    let (mut s_min, mut s_max, mut s_in) = (0u64, 0u64, 0u64);
    for c in cells {
        let k = usize::from(c.key);
        if k < run_start || k >= run_end {
            wmin[g][r] += s_min;
            wmax[g][r] += s_max;
            d_in[g][r] += s_in;
            (s_min, s_max, s_in) = (0, 0, 0);
            (g, r) = key_group_res(c.key);
            run_start = k - (k % CELLS) + RES_OFFSETS[r];
            run_end = run_start + RESOLUTIONS[r] * RESOLUTIONS[r];
        }
        let d = doc.dense.get(k).copied().unwrap_or(0);
        let w = u64::from(c.weight);
        s_min += w * u64::from(d.min(c.mean));
        s_max += w * u64::from(d.max(c.mean));
        s_in += u64::from(d);
    }
    wmin[g][r] += s_min;
    wmax[g][r] += s_max;
    d_in[g][r] += s_in;
    let mut res_num = [0u64; 3];
    let mut res_den = [0u64; 3];
    let mut groups = [None; GROUPS];
    for g in 0..GROUPS {
        let mut num = 0.0;
        let mut wsum = 0.0;
        for r in 0..3 {
            let den = (doc.totals[g][r] - d_in[g][r]) * 255 + wmax[g][r];
            res_num[r] += wmin[g][r];
            res_den[r] += den;
            if den > 0 {
                num += RES_WEIGHTS[r] * wmin[g][r] as f64 / den as f64;
                wsum += RES_WEIGHTS[r];
            }
        }
        if wsum > 0.0 {
            groups[g] = Some(num / wsum);
        }
    }
    let mut grid = 0.0;
    for r in 0..3 {
        let j = if res_den[r] == 0 {
            1.0
        } else {
            res_num[r] as f64 / res_den[r] as f64
        };
        grid += RES_WEIGHTS[r] * j;
    }
    let mut scalar_parts = [0.0; NS];
    let mut sw = 0.0;
    let mut ss = 0.0;
    for i in 0..NS {
        let s = scalar_sim(i, doc.scalars[i], scalar_means[i]);
        scalar_parts[i] = s;
        ss += SCALAR_WEIGHTS[i] * s;
        sw += SCALAR_WEIGHTS[i];
    }
    let scalar = ss / sw;
    let mut total = GRID_WEIGHT * grid + (1.0 - GRID_WEIGHT) * scalar;
    // Rounding of the weight sums must not keep an identical layout below 1.
    if total > 1.0 - 1e-9 {
        total = 1.0;
    }
    SimDetail {
        grid,
        groups,
        scalar_parts,
        coarse: total.clamp(0.0, 1.0),
        total: total.clamp(0.0, 1.0),
    }
}

/// Full similarity of a document to a template: coarse term and box alignment.
pub(crate) fn similarity(doc: &DocSketch, t: &crate::template::Template) -> SimDetail {
    coarse_similarity(doc, &t.cells, &t.scalar_mean)
        .with_align(t.align_with(&doc.boxes, &AlignParams::default()))
}
