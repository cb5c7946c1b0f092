//! Canonical text forms and their SHA-256 hashes: the layout fingerprint (what the layout
//! is, independent of box order and confidences) and the replay hash (everything that
//! determined a decision). Both are specified byte for byte in docs/engine.md so any client
//! can reproduce them; changing them requires a new `preflight-layout-vN` header.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::features::{ElementType, ExtractorMetadata, StructuralFeatures};

/// Decimal places kept for every float in the canonical forms.
const SCALE: f64 = 10_000.0;

/// Quantizes a float to an integer number of 1e-4 units; non-finite values get sentinels
/// that sort after (NaN, +inf) or before (-inf) every finite value.
fn quantize(v: f64) -> i64 {
    if v.is_nan() {
        i64::MAX
    } else if v == f64::INFINITY {
        i64::MAX - 1
    } else if v == f64::NEG_INFINITY {
        i64::MIN
    } else {
        // `as` saturates, and `round` is half-away-from-zero on every platform.
        (v * SCALE).round() as i64
    }
}

/// Appends the decimal digits of `v` (no allocation, no `fmt` machinery: this runs for
/// every number of every request).
fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(b as char);
    }
}

fn push_i64(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Writes a float with exactly 4 decimals, from its quantized value (no float formatting,
/// so the output is platform independent). `-0.0000` never appears.
fn write_num(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("nan");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "inf" } else { "-inf" });
        return;
    }
    let q = quantize(v);
    let a = q.unsigned_abs();
    if q < 0 {
        out.push('-');
    }
    push_u64(out, a / 10_000);
    out.push('.');
    let f = a % 10_000;
    for d in [1000, 100, 10, 1] {
        out.push((b'0' + ((f / d) % 10) as u8) as char);
    }
}

fn canonical_type(name: &str) -> &'static str {
    ElementType::parse(name)
        .unwrap_or(ElementType::Other)
        .as_str()
}

struct BoxKey<'a> {
    page: i64,
    etype: &'static str,
    q: [i64; 4],
    conf: i64,
    b: &'a crate::features::BoundingBox,
}

fn sorted_boxes(f: &StructuralFeatures) -> Vec<BoxKey<'_>> {
    let mut keys: Vec<BoxKey<'_>> = f
        .bounding_boxes
        .iter()
        .map(|b| BoxKey {
            page: b.page.unwrap_or(0),
            etype: canonical_type(&b.element_type),
            q: [
                quantize(b.y),
                quantize(b.x),
                quantize(b.height),
                quantize(b.width),
            ],
            conf: quantize(b.confidence),
            b,
        })
        .collect();
    // The full tuple (then confidence and reading order) makes the order total, so equal
    // inputs in any order produce the same text.
    keys.sort_unstable_by(|a, b| {
        (a.page, a.etype, a.q, a.conf, a.b.reading_order).cmp(&(
            b.page,
            b.etype,
            b.q,
            b.conf,
            b.b.reading_order,
        ))
    });
    keys
}

/// The canonical layout text that [`layout_fingerprint`] hashes (see docs/engine.md).
pub fn canonical_layout(f: &StructuralFeatures) -> String {
    let mut out = String::with_capacity(64 + 40 * f.bounding_boxes.len());
    out.push_str("preflight-layout-v1\n");
    let _ = writeln!(
        out,
        "pages={};elements={};tables={};text_blocks={};images={};columns={};header={};footer={}",
        f.page_count,
        f.element_count,
        f.table_count,
        f.text_block_count,
        f.image_count,
        f.column_count,
        u8::from(f.has_header),
        u8::from(f.has_footer)
    );
    for k in sorted_boxes(f) {
        push_i64(&mut out, k.page);
        out.push('|');
        out.push_str(k.etype);
        out.push('|');
        write_num(&mut out, k.b.x);
        out.push('|');
        write_num(&mut out, k.b.y);
        out.push('|');
        write_num(&mut out, k.b.width);
        out.push('|');
        write_num(&mut out, k.b.height);
        out.push('\n');
    }
    out
}

/// SHA-256 (lowercase hex, 64 chars) of [`canonical_layout`]. Box order, confidences,
/// reading order, text density and layout complexity do not change it; element type
/// synonyms (`line` / `text`) are canonicalized first.
pub fn layout_fingerprint(features: &StructuralFeatures) -> String {
    hex::encode(Sha256::digest(canonical_layout(features).as_bytes()))
}

/// Everything of a request that can influence a decision, in canonical form. Latency and
/// cost are left out on purpose: they vary run to run and never change the decision.
pub fn canonical_input(f: &StructuralFeatures, e: &ExtractorMetadata) -> String {
    let mut out = canonical_layout(f);
    out.push_str("scalars|");
    write_num(&mut out, f.text_density);
    out.push('|');
    write_num(&mut out, f.layout_complexity);
    out.push('\n');
    for k in sorted_boxes(f) {
        out.push_str("box|");
        push_i64(&mut out, k.page);
        out.push('|');
        out.push_str(k.etype);
        out.push('|');
        for v in [k.b.x, k.b.y, k.b.width, k.b.height, k.b.confidence] {
            write_num(&mut out, v);
            out.push('|');
        }
        push_i64(&mut out, k.b.reading_order);
        out.push('\n');
    }
    let _ = write!(
        out,
        "extractor|{}|{}|{}|",
        escape(&e.vendor),
        escape(&e.model),
        escape(&e.version)
    );
    write_num(&mut out, e.confidence);
    out.push('\n');
    out
}

/// Percent-escapes the separators so free-form strings cannot forge canonical lines.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => o.push_str("%25"),
            '|' => o.push_str("%7C"),
            '\n' => o.push_str("%0A"),
            '\r' => o.push_str("%0D"),
            _ => o.push(c),
        }
    }
    o
}

/// SHA-256 state after the replay header and the canonical input: computed once per
/// document at validation, so each evaluation only hashes the short suffix.
pub(crate) fn replay_prefix(f: &StructuralFeatures, e: &ExtractorMetadata) -> Sha256 {
    let mut h = Sha256::new();
    h.update(b"preflight-replay-v1\n");
    h.update(canonical_input(f, e).as_bytes());
    h
}

pub(crate) fn replay_finish(
    mut h: Sha256,
    template_version_id: Option<&str>,
    policy_canonical: &str,
) -> String {
    h.update(b"template_version_id|");
    h.update(escape(template_version_id.unwrap_or("-")).as_bytes());
    h.update(b"\nengine|");
    h.update(crate::ENGINE_VERSION.as_bytes());
    h.update(b"\npolicy|");
    h.update(policy_canonical.as_bytes());
    h.update(b"\n");
    hex::encode(h.finalize())
}

/// SHA-256 hex over the canonical input, the matched template version (or `-`), the
/// engine version and the policy's canonical form.
pub fn replay_hash(
    f: &StructuralFeatures,
    e: &ExtractorMetadata,
    template_version_id: Option<&str>,
    policy_canonical: &str,
) -> String {
    replay_finish(replay_prefix(f, e), template_version_id, policy_canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_fixed_point() {
        let mut s = String::new();
        for v in [0.0, -0.0, 0.12345, 0.99995, -0.00004, 1.5, f64::NAN] {
            write_num(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "0.0000 0.0000 0.1235 1.0000 0.0000 1.5000 nan ");
    }
}
