//! Box alignment: a fine-grained similarity that pairs the individual boxes of a document
//! with those of a template exemplar.
//!
//! Occupancy grids (see `sketch`) are robust but coarse: every receipt is a centred column
//! of text lines, so unrelated receipts look alike on a 16×16 grid. Two documents of the
//! same layout share the *exact* positions and widths of most of their boxes (the same
//! printed header, the same field labels), which a grid blurs away. Here each box is
//! compared with the template's boxes of the same element group by left edge, top edge and
//! log width, after the two layouts are put in a common frame:
//!
//! * the **page frame** (page coordinates as sent), right when the page itself is the
//!   reference (forms, re-extractions of the same scan), and
//! * the **content frame**: origin at the content's robust left/top edge, unit = the
//!   content's robust width, so scans of the same layout at another scale or crop line up.
//!
//! In each frame a vertical offset is voted from box pairs of similar left edge and width
//! (the two strongest offsets are kept, so a header and a footer separated by a
//! variable-length body both align). A box's match quality is the best kernel product
//! over its candidates; the score is the harmonic mean of the document-side and
//! template-side mean qualities (added boxes lower the first, dropped boxes the second),
//! and the best frame wins.

use crate::sketch::{group_of, NormBox, MAX_PAGES};

/// Boxes kept per layout (in page/top/left order); more add cost, not discrimination.
pub(crate) const MAX_ALIGN_BOXES: usize = 400;
/// Exemplar box sets kept per template (the first ones learned).
pub(crate) const MAX_EXEMPLAR_SETS: usize = 8;

/// Tolerances of the alignment (kernel radii) and the offset search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlignParams {
    /// Position tolerance in page units (page frame).
    pub tol_page: f64,
    /// Position tolerance in content widths (content frame).
    pub tol_content: f64,
    /// Tolerance on ln(width ratio).
    pub tol_log_width: f64,
    /// Vertical position tolerance in median box heights (content frame).
    pub tol_lines: f64,
    /// Largest vertical offset searched, in page units (page frame).
    pub max_shift: f64,
    /// Largest vertical offset searched, in median box heights (content frame).
    pub max_shift_lines: f64,
}

impl Default for AlignParams {
    fn default() -> Self {
        AlignParams {
            tol_page: 0.02,
            tol_content: 0.03,
            tol_log_width: 0.15,
            tol_lines: 1.0,
            max_shift: 0.25,
            max_shift_lines: 12.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct ABox {
    /// page * GROUPS + group: boxes only pair within the same channel.
    channel: u16,
    x0: f32,
    y0: f32,
    /// ln(width) in page units.
    lw: f32,
}

/// Robust content extent of one page (page units).
#[derive(Debug, Clone, Copy, Default)]
struct Frame {
    x0: f32,
    y0: f32,
    width: f32,
    /// Median box height: the vertical unit, so the frame does not depend on the page's
    /// aspect ratio (boxes are normalized by page width and height separately).
    line: f32,
}

/// The boxes of one layout, ready for alignment.
#[derive(Debug, Clone, Default)]
pub(crate) struct BoxSet {
    /// Sorted by (channel, y0, x0).
    boxes: Vec<ABox>,
    /// Start index of each channel in `boxes` (len = channels + 1).
    starts: Vec<u32>,
    frames: Vec<Frame>,
    /// Which (left edge, log width) bins, in the content frame, hold a box: a cheap,
    /// vertically invariant shape signature that preselects candidates for alignment.
    shape: [u64; SHAPE_WORDS],
    /// (x, y, ln width) of each box (in `boxes` order) in the page frame and in the
    /// content frame, computed once so scoring only subtracts.
    page: Vec<[f32; 3]>,
    content: Vec<[f32; 3]>,
}

const SHAPE_X_BINS: usize = 32;
const SHAPE_W_BINS: usize = 16;
const SHAPE_WORDS: usize = SHAPE_X_BINS * SHAPE_W_BINS / 64;

const CHANNELS: usize = MAX_PAGES * crate::sketch::GROUPS;

impl BoxSet {
    pub(crate) fn build(boxes: &[NormBox]) -> BoxSet {
        let mut v: Vec<ABox> = boxes
            .iter()
            .map(|b| ABox {
                channel: (b.page.min(MAX_PAGES - 1) * crate::sketch::GROUPS + group_of(b.etype))
                    as u16,
                x0: b.x0 as f32,
                y0: b.y0 as f32,
                lw: ((b.x1 - b.x0).max(1e-4)).ln() as f32,
            })
            .collect();
        v.sort_by(|a, b| {
            a.channel
                .cmp(&b.channel)
                .then(a.y0.total_cmp(&b.y0))
                .then(a.x0.total_cmp(&b.x0))
                .then(a.lw.total_cmp(&b.lw))
        });
        if v.len() > MAX_ALIGN_BOXES {
            // Evenly spaced subsample keeps the layout's shape, deterministically.
            let n = v.len();
            v = (0..MAX_ALIGN_BOXES)
                .map(|i| v[i * n / MAX_ALIGN_BOXES])
                .collect();
        }
        let mut starts = vec![0u32; CHANNELS + 1];
        for b in &v {
            starts[b.channel as usize + 1] += 1;
        }
        for c in 0..CHANNELS {
            starts[c + 1] += starts[c];
        }
        let mut frames = vec![Frame::default(); MAX_PAGES];
        for (page, frame) in frames.iter_mut().enumerate() {
            let on: Vec<&NormBox> = boxes
                .iter()
                .filter(|b| b.page.min(MAX_PAGES - 1) == page)
                .collect();
            if on.is_empty() {
                continue;
            }
            let on = crate::sketch::frame_boxes(&on);
            let mut xs: Vec<f64> = on.iter().map(|b| b.x0).collect();
            let mut xe: Vec<f64> = on.iter().map(|b| b.x1).collect();
            let mut ys: Vec<f64> = on.iter().map(|b| b.y0).collect();
            let mut hs: Vec<f64> = on.iter().map(|b| b.y1 - b.y0).collect();
            hs.sort_by(f64::total_cmp);
            xs.sort_by(f64::total_cmp);
            xe.sort_by(f64::total_cmp);
            ys.sort_by(f64::total_cmp);
            let n = on.len();
            // Robust edges: ignore the outermost ~5 % (stray specks, noise boxes).
            let k = n / 20;
            let x0 = xs[k];
            let x1 = xe[n - 1 - k];
            *frame = Frame {
                x0: x0 as f32,
                y0: ys[k] as f32,
                width: (x1 - x0).max(0.05) as f32,
                line: hs[n / 2].max(1e-3) as f32,
            };
        }
        let mut shape = [0u64; SHAPE_WORDS];
        for b in boxes {
            let f = frames[b.page.min(MAX_PAGES - 1)];
            let x = (b.x0 - f64::from(f.x0)) / f64::from(f.width);
            let lw = ((b.x1 - b.x0).max(1e-4) / f64::from(f.width)).ln();
            let xb = ((x + 0.1) / 1.2 * SHAPE_X_BINS as f64).floor();
            let wb = ((lw + 4.0) / 4.2 * SHAPE_W_BINS as f64).floor();
            let wb = wb.clamp(0.0, (SHAPE_W_BINS - 1) as f64) as usize;
            // Each box also marks the neighbouring left-edge bins, so jitter does not
            // move it out of its own bin.
            for dx in -1i64..=1 {
                let xi = (xb as i64 + dx).clamp(0, SHAPE_X_BINS as i64 - 1) as usize;
                let bit = wb * SHAPE_X_BINS + xi;
                shape[bit / 64] |= 1 << (bit % 64);
            }
        }
        let page = v.iter().map(|b| [b.x0, b.y0, b.lw]).collect();
        let content = v
            .iter()
            .map(|b| {
                let f = frames[b.channel as usize / crate::sketch::GROUPS];
                [
                    (b.x0 - f.x0) / f.width,
                    (b.y0 - f.y0) / f.line,
                    b.lw - f.width.ln(),
                ]
            })
            .collect();
        BoxSet {
            boxes: v,
            starts,
            frames,
            shape,
            page,
            content,
        }
    }

    /// Jaccard similarity of the two shape signatures (0..1).
    pub(crate) fn shape_similarity(&self, other: &BoxSet) -> f64 {
        let (mut inter, mut union) = (0u32, 0u32);
        for (a, b) in self.shape.iter().zip(other.shape.iter()) {
            inter += (a & b).count_ones();
            union += (a | b).count_ones();
        }
        if union == 0 {
            1.0
        } else {
            f64::from(inter) / f64::from(union)
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.boxes.len()
    }

    /// A channel's boxes as (x, y, ln width) in the chosen frame, sorted by y (the content
    /// transform is increasing in y within a page, so one order serves both frames).
    fn channel(&self, c: usize, content: bool) -> &[[f32; 3]] {
        let all = if content { &self.content } else { &self.page };
        &all[self.starts[c] as usize..self.starts[c + 1] as usize]
    }

    pub(crate) fn approx_memory_bytes(&self) -> usize {
        self.boxes.capacity() * std::mem::size_of::<ABox>()
            + self.starts.capacity() * 4
            + self.frames.capacity() * std::mem::size_of::<Frame>()
            + (self.page.capacity() + self.content.capacity()) * 12
    }
}

/// `max(0, 1 − (d·inv)²)` with `inv` = 1 / tolerance.
#[inline]
fn kernel(d: f32, inv: f32) -> f32 {
    let u = d * inv;
    (1.0 - u * u).max(0.0)
}

/// Alignment similarity (0..1) of a document's boxes to one exemplar's boxes.
pub(crate) fn align_similarity(doc: &BoxSet, ex: &BoxSet, p: &AlignParams) -> f64 {
    if doc.len() == 0 || ex.len() == 0 {
        return if doc.len() == ex.len() { 1.0 } else { 0.0 };
    }
    let page = frame_score(
        doc,
        ex,
        false,
        [p.tol_page as f32; 2],
        p.max_shift as f32,
        p,
    );
    let content = frame_score(
        doc,
        ex,
        true,
        [p.tol_content as f32, p.tol_lines as f32],
        p.max_shift_lines as f32,
        p,
    );
    page.max(content)
}

fn frame_score(
    doc: &BoxSet,
    ex: &BoxSet,
    content: bool,
    [tol, toly]: [f32; 2],
    max_shift: f32,
    p: &AlignParams,
) -> f64 {
    let tw = p.tol_log_width as f32;
    let (inv_x, inv_w) = (1.0 / tol, 1.0 / tw);
    let bin = toly / 2.0;
    let nbins = (2.0 * max_shift / bin).ceil() as usize + 1;
    let mut votes = vec![0f32; nbins];
    // Vote for vertical offsets (doc − template) from pairs alike in left edge and width.
    for c in 0..CHANNELS {
        let (ds, es) = (doc.channel(c, content), ex.channel(c, content));
        if ds.is_empty() || es.is_empty() {
            continue;
        }
        // Both sides are sorted by y, so the window's start only moves forward.
        let mut from = 0;
        for &[dx, dy, dl] in ds {
            // Template boxes whose y' lies within ±max_shift of the document box.
            while from < es.len() && es[from][1] < dy - max_shift {
                from += 1;
            }
            for &[ex_, ey, el] in es[from..].iter().take_while(|e| e[1] <= dy + max_shift) {
                let ddx = dx - ex_;
                let ddl = dl - el;
                if ddx.abs() >= tol || ddl.abs() >= tw {
                    continue;
                }
                let w = kernel(ddx, inv_x) * kernel(ddl, inv_w);
                let b = round_half_away(((dy - ey + max_shift) / bin) as f64);
                if b >= 0 && (b as usize) < nbins {
                    votes[b as usize] += w;
                }
            }
        }
    }
    let shifts = peaks(&votes, bin, max_shift, toly);
    if shifts.is_empty() {
        return 0.0;
    }
    let md = side_score(doc, ex, content, &shifts, [tol, toly], tw);
    let neg: Vec<f32> = shifts.iter().map(|s| -s).collect();
    let mt = side_score(ex, doc, content, &neg, [tol, toly], tw);
    if md + mt <= 0.0 {
        0.0
    } else {
        f64::from(2.0 * md * mt / (md + mt))
    }
}

/// `x.round() as isize` (halves away from zero) without the libm call `f32::round`
/// compiles to on baseline x86-64, in the innermost vote loop. Exact: the truncation and
/// the fractional part are exact in f64 for the small values used here.
#[inline]
fn round_half_away(x: f64) -> isize {
    let t = x as isize;
    let frac = x - t as f64;
    if frac >= 0.5 {
        t + 1
    } else if frac <= -0.5 {
        t - 1
    } else {
        t
    }
}

/// Offsets kept per frame (see [`peaks`]).
const MAX_SHIFTS: usize = 2;

/// The [`MAX_SHIFTS`] strongest offsets (smoothed over neighbouring bins), at least `tol`
/// apart.
fn peaks(votes: &[f32], bin: f32, max_shift: f32, tol: f32) -> Vec<f32> {
    let n = votes.len();
    let smooth: Vec<f32> = (0..n)
        .map(|i| {
            votes[i]
                + 0.5 * (if i > 0 { votes[i - 1] } else { 0.0 })
                + 0.5 * (if i + 1 < n { votes[i + 1] } else { 0.0 })
        })
        .collect();
    let best = |skip: Option<usize>| {
        let mut b: Option<(usize, f32)> = None;
        for (i, &v) in smooth.iter().enumerate() {
            if v <= 0.0 {
                continue;
            }
            if let Some(s) = skip {
                if ((i as f32 - s as f32) * bin).abs() < tol * 2.0 {
                    continue;
                }
            }
            if b.is_none_or(|(_, bv)| v > bv) {
                b = Some((i, v));
            }
        }
        b
    };
    let mut out = Vec::new();
    if let Some((i, _)) = best(None) {
        out.push(i as f32 * bin - max_shift);
        if let Some((j, _)) = best(Some(i)) {
            out.push(j as f32 * bin - max_shift);
        }
    }
    out
}

/// Mean over `a`'s boxes of the best match quality among `b`'s boxes, for any of the
/// offsets (a' − b').
fn side_score(
    a: &BoxSet,
    b: &BoxSet,
    content: bool,
    shifts: &[f32],
    [tol, toly]: [f32; 2],
    tw: f32,
) -> f32 {
    let (inv_x, inv_y, inv_w) = (1.0 / tol, 1.0 / toly, 1.0 / tw);
    let mut sum = 0.0f32;
    for c in 0..CHANNELS {
        let (as_, bs) = (a.channel(c, content), b.channel(c, content));
        if as_.is_empty() || bs.is_empty() {
            continue;
        }
        // `as_` is sorted by y, so each offset's window start only moves forward.
        let mut from = [0usize; MAX_SHIFTS];
        for &[ax, ay, al] in as_ {
            let mut best = 0.0f32;
            for (&s, from) in shifts.iter().zip(from.iter_mut()) {
                let target = ay - s;
                while *from < bs.len() && bs[*from][1] < target - toly {
                    *from += 1;
                }
                for &[bx, by, bl] in bs[*from..].iter().take_while(|e| e[1] <= target + toly) {
                    let ddx = ax - bx;
                    let ddl = al - bl;
                    if ddx.abs() >= tol || ddl.abs() >= tw {
                        continue;
                    }
                    let q = kernel(ddx, inv_x) * kernel(target - by, inv_y) * kernel(ddl, inv_w);
                    if q > best {
                        best = q;
                    }
                }
            }
            sum += best;
        }
    }
    sum / a.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_half_away_is_f32_round() {
        let mut xs: Vec<f32> = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            0.49999997,
            -0.49999997,
        ];
        xs.extend((-4000..=4000).map(|i| i as f32 * 0.0137));
        xs.extend((-200..=200).map(|i| i as f32 * 0.25));
        for x in xs {
            assert_eq!(round_half_away(f64::from(x)), x.round() as isize, "{x}");
        }
    }
}
