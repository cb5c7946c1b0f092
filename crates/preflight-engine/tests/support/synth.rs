//! Deterministic synthetic layouts for tests and benches: a seeded PRNG (splitmix64) and a
//! form generator (title, key/value rows, a table, a footer) whose structure depends on the
//! template seed, plus per-document natural variation (jitter, extra or missing rows).
#![allow(dead_code)]

use preflight_engine::{BoundingBox, ExtractorMetadata, StructuralFeatures, Template};

/// splitmix64: tiny, seedable, good enough for fixtures.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(1e-300);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// One template's boxes: (element_type, x, y, w, h).
pub type Layout = Vec<(&'static str, f64, f64, f64, f64)>;

/// A form layout of about `n` boxes; its structure depends only on `seed`: a title, then
/// sections (key/value block, table, paragraph block) in a seed-dependent order and size.
pub fn layout(seed: u64, n: usize) -> Layout {
    let mut r = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0xabcdef);
    let mut out: Layout = Vec::new();
    let left = r.range(0.05, 0.15);
    let right = r.range(0.85, 0.95);
    let tx = r.range(left, 0.5);
    out.push(("title", tx, r.range(0.03, 0.07), r.range(0.2, 0.4), 0.03));
    if r.below(2) == 0 {
        out.push((
            "figure",
            r.range(0.55, 0.8),
            0.03,
            r.range(0.08, 0.15),
            0.06,
        ));
    }
    let mut kinds = [0u8, 1, 2, r.below(3) as u8];
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, r.below(i as u64 + 1) as usize);
    }
    let mut y = r.range(0.1, 0.16);
    let budget = n.saturating_sub(4);
    let mut remaining = budget;
    for (si, kind) in kinds.iter().enumerate() {
        let share = if si + 1 == kinds.len() {
            remaining
        } else {
            (budget as f64 * r.range(0.15, 0.35)) as usize
        };
        let share = share.min(remaining).max(2);
        remaining = remaining.saturating_sub(share);
        if y > 0.9 {
            break;
        }
        match kind {
            0 => {
                let cols = 1 + r.below(2) as usize;
                let rows = (share / (2 * cols)).max(1);
                let step = r.range(0.018, 0.03);
                let key_w = r.range(0.06, 0.18);
                let col_w = (right - left) / cols as f64;
                for _ in 0..rows {
                    for c in 0..cols {
                        let x = left + c as f64 * col_w;
                        out.push(("key", x, y, key_w, 0.014));
                        out.push((
                            "value",
                            x + key_w + 0.01,
                            y,
                            col_w * r.range(0.3, 0.6),
                            0.014,
                        ));
                    }
                    y += step;
                }
            }
            1 => {
                let tcols = 2 + r.below(4) as usize;
                let trows = (share / tcols).clamp(1, 20);
                let row_h = r.range(0.015, 0.025);
                let h = (row_h * trows as f64).min(0.95 - y);
                out.push(("table", left, y, right - left, h));
                let cw = (right - left) / tcols as f64;
                for i in 0..trows {
                    let cy = y + i as f64 * row_h;
                    if cy + row_h > 0.95 {
                        break;
                    }
                    for j in 0..tcols {
                        out.push((
                            "table_cell",
                            left + j as f64 * cw + 0.003,
                            cy + 0.002,
                            cw - 0.006,
                            row_h - 0.004,
                        ));
                    }
                }
                y += h;
            }
            _ => {
                let indent = r.range(0.0, 0.3);
                let lines = share.max(1);
                for _ in 0..lines {
                    let w = (right - left - indent) * r.range(0.6, 1.0);
                    out.push(("text", left + indent, y, w, 0.012));
                    y += 0.016;
                }
            }
        }
        y += r.range(0.02, 0.06);
    }
    out.retain(|b| b.2 + b.4 <= 0.97);
    out.push((
        "footer",
        left,
        r.range(0.97, 0.98),
        r.range(0.2, 0.5),
        0.012,
    ));
    out
}

/// Features for a set of boxes with consistent counts.
pub fn features(boxes: &Layout) -> StructuralFeatures {
    let bounding_boxes: Vec<BoundingBox> = boxes
        .iter()
        .enumerate()
        .map(|(i, &(t, x, y, w, h))| BoundingBox {
            x,
            y,
            width: w,
            height: h,
            element_type: t.to_string(),
            confidence: 0.95,
            reading_order: i as i64,
            page: None,
        })
        .collect();
    let n = bounding_boxes.len() as i64;
    let tables = boxes.iter().filter(|b| b.0 == "table").count() as i64;
    let images = boxes.iter().filter(|b| b.0 == "figure").count() as i64;
    let text = boxes
        .iter()
        .filter(|b| matches!(b.0, "title" | "text" | "key" | "value" | "footer"))
        .count() as i64;
    let area: f64 = boxes.iter().map(|b| b.3 * b.4).sum();
    StructuralFeatures {
        element_count: n,
        table_count: tables,
        text_block_count: text,
        image_count: images,
        page_count: 1,
        text_density: area.min(1.0),
        layout_complexity: 0.5,
        column_count: 1,
        has_header: false,
        has_footer: true,
        bounding_boxes,
    }
}

/// A document of template `seed` with natural variation: each box shifted by up to
/// `jitter`, some value widths changed (text length), and `drop` table rows removed.
pub fn document(
    seed: u64,
    doc_seed: u64,
    n: usize,
    jitter: f64,
    drop: usize,
) -> StructuralFeatures {
    let base = layout(seed, n);
    let mut r = Rng(doc_seed ^ 0x5151_5151);
    let mut cells_seen = 0usize;
    let total_cells = base.iter().filter(|b| b.0 == "table_cell").count();
    let out: Layout = base
        .into_iter()
        .filter(|b| {
            if b.0 == "table_cell" {
                cells_seen += 1;
                cells_seen + drop * 4 <= total_cells
            } else {
                true
            }
        })
        .map(|(t, x, y, w, h)| {
            let w = if t == "value" {
                w * r.range(0.7, 1.1)
            } else {
                w
            };
            let x = (x + r.range(-jitter, jitter)).clamp(0.0, 1.0 - w);
            let y = (y + r.range(-jitter, jitter)).clamp(0.0, 1.0 - h);
            (t, x, y, w, h)
        })
        .collect();
    features(&out)
}

pub fn extractor(conf: f64) -> ExtractorMetadata {
    ExtractorMetadata {
        vendor: "aws".to_string(),
        model: "textract".to_string(),
        version: "1.0".to_string(),
        confidence: conf,
        latency_ms: 120.0,
        cost_usd: Some(0.01),
    }
}

/// The evaluate bench's template for a seed: id `tpl-<seed>`, one exemplar of `boxes`
/// boxes (shared by `benches/evaluate.rs` and `examples/evaluate_loop.rs`).
pub fn bench_template(seed: u64, boxes: usize) -> Template {
    Template::new(
        format!("tpl-{seed}"),
        1,
        format!("tpl-{seed}@1"),
        vec![features(&layout(seed, boxes))],
        0.95,
        vec![],
    )
    .expect("synthetic template is valid")
}

/// The evaluate bench's known document for an index of `templates` bench templates: a
/// natural variant of template `templates / 2`.
pub fn bench_known_document(templates: usize, boxes: usize) -> StructuralFeatures {
    document(templates as u64 / 2, 12345, boxes, 0.004, 1)
}
