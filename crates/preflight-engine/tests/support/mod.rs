//! Test/bench/example-only loaders for the shared real data (SROIE receipts, VRDU FARA
//! Tesseract TSVs). They turn each document into wire `StructuralFeatures`; the library
//! itself never reads files.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use preflight_engine::{BoundingBox, ExtractorMetadata, StructuralFeatures};

/// One real document with its template group.
#[derive(Debug, Clone)]
pub struct Doc {
    pub source: &'static str,
    pub group: String,
    pub name: String,
    pub features: StructuralFeatures,
    pub extractor: ExtractorMetadata,
}

/// The data directory: `PREFLIGHT_DATA_DIR`, else `../shared/data` from the workspace root.
/// Panics with a clear message when it is missing, so ignored data tests never pass
/// silently without data.
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os("PREFLIGHT_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"))
        });
    assert!(
        dir.join("README.md").is_file(),
        "test data not found at {} (set PREFLIGHT_DATA_DIR to the shared data directory)",
        dir.display()
    );
    dir
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Builds features from pixel boxes `[x0, y0, x1, y1]` with confidences on a `w`×`h` page.
pub fn features_from_pixels(boxes: &[([f64; 4], f64)], w: f64, h: f64) -> StructuralFeatures {
    let mut out = Vec::with_capacity(boxes.len());
    let mut area = 0.0;
    for (i, (b, conf)) in boxes.iter().enumerate() {
        let x0 = (b[0] / w).clamp(0.0, 1.0);
        let y0 = (b[1] / h).clamp(0.0, 1.0);
        let x1 = (b[2] / w).clamp(0.0, 1.0);
        let y1 = (b[3] / h).clamp(0.0, 1.0);
        if x1 <= x0 || y1 <= y0 {
            continue;
        }
        area += (x1 - x0) * (y1 - y0);
        out.push(BoundingBox {
            x: x0,
            y: y0,
            width: x1 - x0,
            height: y1 - y0,
            element_type: "text".to_string(),
            confidence: conf.clamp(0.0, 1.0),
            reading_order: i as i64,
            page: None,
        });
    }
    let n = out.len() as i64;
    StructuralFeatures {
        element_count: n,
        table_count: 0,
        text_block_count: n,
        image_count: 0,
        page_count: 1,
        text_density: area.min(1.0),
        layout_complexity: 0.3,
        column_count: 1,
        has_header: false,
        has_footer: false,
        bounding_boxes: out,
    }
}

fn extractor(vendor: &str, model: &str, conf: f64) -> ExtractorMetadata {
    ExtractorMetadata {
        vendor: vendor.to_string(),
        model: model.to_string(),
        version: "1".to_string(),
        confidence: conf,
        latency_ms: 100.0,
        cost_usd: None,
    }
}

/// Normalizes an SROIE company name so issuer variants group together
/// ("MR. D.I.Y. (KUCHAI) SDN BHD" and "MR. D.I.Y. (M) SDN BHD" → "MRDIY").
pub fn normalize_company(c: &str) -> String {
    let mut s = String::new();
    let mut depth = 0;
    for ch in c.to_uppercase().chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth = (depth - 1).max(0),
            _ if depth == 0 => s.push(if ch.is_ascii_alphanumeric() { ch } else { ' ' }),
            _ => {}
        }
    }
    let words: Vec<&str> = s
        .split_whitespace()
        .filter(|w| !matches!(*w, "SDN" | "BHD" | "SDNBHD" | "S" | "B" | "M"))
        .collect();
    words.concat()
}

/// All 987 SROIE receipts, grouped by normalized company.
pub fn load_sroie() -> Vec<Doc> {
    let dir = data_dir().join("layouts/sroie");
    let mut docs = Vec::new();
    for file in ["train.metadata.jsonl", "test.metadata.jsonl"] {
        for line in read(dir.join(file))
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line).expect("SROIE line is JSON");
            let w = v["image_size"]["width"].as_f64().expect("width");
            let h = v["image_size"]["height"].as_f64().expect("height");
            let boxes: Vec<([f64; 4], f64)> = v["bboxes"]
                .as_array()
                .expect("bboxes")
                .iter()
                .map(|b| {
                    let a: Vec<f64> = b
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect();
                    ([a[0], a[1], a[2], a[3]], 1.0)
                })
                .collect();
            docs.push(Doc {
                source: "sroie",
                group: normalize_company(v["entities"]["company"].as_str().unwrap_or("")),
                name: v["file_name"].as_str().unwrap_or("").to_string(),
                features: features_from_pixels(&boxes, w, h),
                extractor: extractor("sroie", "annotations", 0.95),
            });
        }
    }
    merge_variants(&mut docs);
    docs.sort_by(|a, b| a.name.cmp(&b.name));
    docs
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Merges issuer-name variants into the most frequent spelling: typos (edit distance ≤ 2)
/// and branch suffixes (one name a prefix of the other, both ≥ 6 characters). SROIE's
/// company strings are transcriptions, so "RSTORAN WAN SHENG" and "RESTORAN WAN SHENG" are
/// one issuer and one layout.
fn merge_variants(docs: &mut [Doc]) {
    let mut freq: BTreeMap<String, usize> = BTreeMap::new();
    for d in docs.iter() {
        *freq.entry(d.group.clone()).or_default() += 1;
    }
    let mut names: Vec<(String, usize)> = freq.into_iter().collect();
    names.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut canon: BTreeMap<String, String> = BTreeMap::new();
    for (i, (n, _)) in names.iter().enumerate() {
        let target = names[..i]
            .iter()
            .map(|(m, _)| m)
            .find(|m| {
                let m = canon.get(*m).unwrap_or(m);
                (n.len() >= 6
                    && m.len() >= 6
                    && (n.starts_with(m.as_str()) || m.starts_with(n.as_str())))
                    || (n.len() >= 8 && levenshtein(n, m) <= 2)
            })
            .map(|m| canon.get(m).cloned().unwrap_or_else(|| m.clone()));
        canon.insert(n.clone(), target.unwrap_or_else(|| n.clone()));
    }
    for d in docs.iter_mut() {
        d.group = canon[&d.group].clone();
    }
}

/// Parses a Tesseract TSV: level-5 words with non-empty text, page size from level 1.
pub fn tesseract_tsv_features(tsv: &str) -> (StructuralFeatures, f64) {
    let mut w = 0.0;
    let mut h = 0.0;
    let mut boxes = Vec::new();
    for line in tsv.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 12 {
            continue;
        }
        let num = |i: usize| cols[i].trim().parse::<f64>().unwrap_or(0.0);
        match cols[0] {
            "1" => {
                w = num(8);
                h = num(9);
            }
            "5" if !cols[11].trim().is_empty() => {
                let (l, t, bw, bh) = (num(6), num(7), num(8), num(9));
                boxes.push(([l, t, l + bw, t + bh], num(10) / 100.0));
            }
            _ => {}
        }
    }
    assert!(w > 0.0 && h > 0.0, "TSV without a level-1 page row");
    let mean_conf = boxes.iter().map(|b| b.1).sum::<f64>() / boxes.len().max(1) as f64;
    (features_from_pixels(&boxes, w, h), mean_conf)
}

/// The 45 VRDU FARA first pages (15 per template), grouped by template.
pub fn load_vrdu() -> Vec<Doc> {
    let dir = data_dir()
        .join("extractors/tesseract/generated_tesseract_5.3.0/vrdu_fara_registration_forms");
    let manifest = read(dir.join("manifest.csv"));
    let mut docs = Vec::new();
    for line in manifest.lines().skip(1) {
        let stem = line.split(',').next().unwrap_or("");
        let Some((folder, _)) = stem.split_once("__") else {
            continue;
        };
        let (features, conf) =
            tesseract_tsv_features(&read(dir.join(folder).join(format!("{stem}.page1.tsv"))));
        docs.push(Doc {
            source: "vrdu",
            group: format!("vrdu:{folder}"),
            name: stem.to_string(),
            features,
            extractor: extractor("tesseract", "5.3.0", conf),
        });
    }
    docs.sort_by(|a, b| a.name.cmp(&b.name));
    docs
}

/// Groups documents by group name (deterministic order).
pub fn by_group(docs: &[Doc]) -> BTreeMap<String, Vec<&Doc>> {
    let mut m: BTreeMap<String, Vec<&Doc>> = BTreeMap::new();
    for d in docs {
        m.entry(d.group.clone()).or_default().push(d);
    }
    m
}

/// Deterministic split of group names into two halves (FNV-1a parity).
pub fn split_of(group: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in group.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 7) as usize % 2
}
