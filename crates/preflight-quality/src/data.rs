//! Loads the shared real data into labeled documents: SROIE receipts grouped by normalized
//! issuer, and — through `preflight-adapters`, exactly as a client would produce them — the
//! VRDU FARA Tesseract TSVs grouped by VRDU template, the Azure `same_template/*` sets and the
//! Textract `same_template/` pages. The data directory is only read, never copied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use preflight_engine::{BoundingBox, ExtractorMetadata, StructuralFeatures};
use sha2::{Digest, Sha256};

/// One real document with its template-group label.
#[derive(Debug, Clone)]
pub struct Doc {
    /// Data set: `sroie`, `vrdu`, `azure`, `textract`.
    pub source: &'static str,
    /// Template group (same layout family); unique across sources.
    pub group: String,
    /// File or record name (stable order within a group).
    pub name: String,
    pub features: StructuralFeatures,
    pub extractor: ExtractorMetadata,
}

/// All loaded documents plus the data version they came from.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub docs: Vec<Doc>,
    /// First 16 hex digits of SHA-256(MANIFEST.tsv): identifies the data release.
    pub data_version: String,
}

/// The data directory: `PREFLIGHT_DATA_DIR`, else `<workspace>/../shared/data`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("PREFLIGHT_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"))
        })
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn read_str(path: &Path) -> Result<String, String> {
    String::from_utf8(read(path)?).map_err(|e| format!("{} is not UTF-8: {e}", path.display()))
}

/// Loads every source. Errors (missing directory, unreadable or unparsable file) are
/// returned, never skipped: a silently smaller corpus would make the numbers incomparable.
pub fn load(dir: &Path) -> Result<Corpus, String> {
    if !dir.join("MANIFEST.tsv").is_file() {
        return Err(format!(
            "shared data not found at {} (set PREFLIGHT_DATA_DIR to the shared data directory)",
            dir.display()
        ));
    }
    let manifest = read(&dir.join("MANIFEST.tsv"))?;
    let data_version = hex::encode(&Sha256::digest(&manifest)[..8]);
    let mut docs = load_sroie(dir)?;
    docs.extend(load_vrdu(dir)?);
    docs.extend(load_azure(dir)?);
    docs.extend(load_textract(dir)?);
    Ok(Corpus { docs, data_version })
}

/// Issuers that appear in SROIE under two legal names that neither normalization nor a
/// shared address joins, mapped to the name kept. Domino's Pizza Malaysia receipts are
/// issued by its operator Dommal Food Services (their receipts share no address key); one
/// issuer, one group. (McDonald's "Gerbang Alaf" / "Golden Arches" pair is joined by its
/// shared address, see [`merge_by_address`].)
pub const ISSUER_ALIASES: [(&str, &str); 1] = [("DOMMALFOODSERVICES", "DOMINOPIZZA")];

/// Normalizes an SROIE company name so issuer variants group together
/// ("MR. D.I.Y. (KUCHAI) SDN BHD" and "MR. D.I.Y. (M) SDN BHD" → "MRDIY").
pub fn normalize_company(c: &str) -> String {
    let mut s = String::new();
    let mut depth = 0i32;
    for ch in c.to_uppercase().chars() {
        match ch {
            // A parenthesized part separates words ("MR.D.I.Y(M)SDN BHD" is "MR DIY SDN BHD").
            '(' => {
                depth += 1;
                s.push(' ');
            }
            ')' => {
                depth = (depth - 1).max(0);
                s.push(' ');
            }
            _ if depth == 0 => s.push(if ch.is_ascii_alphanumeric() { ch } else { ' ' }),
            _ => {}
        }
    }
    let name = s
        .split_whitespace()
        .filter(|w| !matches!(*w, "SDN" | "BHD" | "SDNBHD" | "S" | "B" | "M"))
        .collect::<Vec<_>>()
        .concat();
    match ISSUER_ALIASES.iter().find(|(alias, _)| *alias == name) {
        Some((_, kept)) => kept.to_string(),
        None => name,
    }
}

pub fn levenshtein(a: &str, b: &str) -> usize {
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

/// Maps each normalized name to its canonical spelling: the most frequent variant it is a
/// typo of (edit distance ≤ 2, ≥ 8 chars) or a branch suffix of (prefix, ≥ 6 chars). SROIE
/// company strings are transcriptions, so "RSTORAN WAN SHENG" and "RESTORAN WAN SHENG" are
/// one issuer and one layout.
pub fn merge_variants(names: &[String]) -> BTreeMap<String, String> {
    let mut freq: BTreeMap<&str, usize> = BTreeMap::new();
    for n in names {
        *freq.entry(n.as_str()).or_default() += 1;
    }
    let mut by_freq: Vec<(&str, usize)> = freq.into_iter().collect();
    by_freq.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut canon: BTreeMap<String, String> = BTreeMap::new();
    for (i, (n, _)) in by_freq.iter().enumerate() {
        let target = by_freq[..i]
            .iter()
            .map(|(m, _)| canon[*m].clone())
            .find(|m| {
                (n.len() >= 6 && m.len() >= 6 && (n.starts_with(m.as_str()) || m.starts_with(n)))
                    || (n.len() >= 8 && levenshtein(n, m) <= 2)
            });
        canon.insert(n.to_string(), target.unwrap_or_else(|| n.to_string()));
    }
    canon
}

/// Characters of the normalized address that identify a shop: enough for street and
/// number, short enough that transcription noise at the end (postcode, city) is ignored.
const ADDRESS_KEY_LEN: usize = 30;

/// An SROIE address reduced to its identifying part: upper-case letters and digits only,
/// the first [`ADDRESS_KEY_LEN`] of them. Empty when the record has no address.
pub fn address_key(address: &str) -> String {
    address
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .take(ADDRESS_KEY_LEN)
        .collect()
}

/// Joins issuer names whose receipts carry the same address key: one shop prints one
/// receipt layout, whatever name the annotator read off it (a franchise and its operator,
/// an abbreviated trading name). Input: (canonical name, address key) per receipt; output:
/// each name's issuer, the most frequent name of its address-connected component (ties:
/// the alphabetically first). Receipts without an address join nothing.
pub fn merge_by_address(receipts: &[(String, String)]) -> BTreeMap<String, String> {
    let mut freq: BTreeMap<&str, usize> = BTreeMap::new();
    for (n, _) in receipts {
        *freq.entry(n.as_str()).or_default() += 1;
    }
    let names: Vec<&str> = freq.keys().copied().collect();
    let id = |n: &str| names.binary_search(&n).expect("name was counted");
    let mut parent: Vec<usize> = (0..names.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut first_at: BTreeMap<&str, usize> = BTreeMap::new();
    for (n, a) in receipts.iter().filter(|(_, a)| !a.is_empty()) {
        let i = id(n);
        let j = *first_at.entry(a.as_str()).or_insert(i);
        let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
        parent[ri] = rj;
    }
    let mut best: BTreeMap<usize, &str> = BTreeMap::new();
    for (i, n) in names.iter().enumerate() {
        let r = root(&mut parent, i);
        let e = best.entry(r).or_insert(n);
        if freq[n] > freq[*e] {
            *e = n;
        }
    }
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), best[&root(&mut parent, i)].to_string()))
        .collect()
}

/// Features from pixel boxes `[x0, y0, x1, y1]` on a `w`×`h` page (SROIE segments are text
/// lines, so every box is `text`).
pub fn features_from_pixels(boxes: &[[f64; 4]], w: f64, h: f64) -> StructuralFeatures {
    let mut out = Vec::with_capacity(boxes.len());
    let mut area = 0.0;
    for b in boxes {
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
            confidence: 1.0,
            reading_order: out.len() as i64,
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

/// The 987 SROIE receipts, grouped as `sroie:<canonical issuer>`.
pub fn load_sroie(dir: &Path) -> Result<Vec<Doc>, String> {
    let dir = dir.join("layouts/sroie");
    let mut raw = Vec::new();
    for file in ["train.metadata.jsonl", "test.metadata.jsonl"] {
        let path = dir.join(file);
        for (ln, line) in read_str(&path)?.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = || format!("{}:{}: unexpected SROIE record", path.display(), ln + 1);
            let v: serde_json::Value = serde_json::from_str(line).map_err(|_| bad())?;
            let w = v["image_size"]["width"].as_f64().ok_or_else(bad)?;
            let h = v["image_size"]["height"].as_f64().ok_or_else(bad)?;
            let mut boxes = Vec::new();
            for b in v["bboxes"].as_array().ok_or_else(bad)? {
                let a: Vec<f64> = b
                    .as_array()
                    .ok_or_else(bad)?
                    .iter()
                    .filter_map(serde_json::Value::as_f64)
                    .collect();
                if a.len() != 4 {
                    return Err(bad());
                }
                boxes.push([a[0], a[1], a[2], a[3]]);
            }
            raw.push((
                normalize_company(v["entities"]["company"].as_str().unwrap_or("")),
                address_key(v["entities"]["address"].as_str().unwrap_or("")),
                v["file_name"].as_str().unwrap_or("").to_string(),
                features_from_pixels(&boxes, w, h),
            ));
        }
    }
    let names: Vec<String> = raw.iter().map(|r| r.0.clone()).collect();
    let canon = merge_variants(&names);
    let pairs: Vec<(String, String)> = raw
        .iter()
        .map(|r| (canon[&r.0].clone(), r.1.clone()))
        .collect();
    let issuer = merge_by_address(&pairs);
    let mut docs: Vec<Doc> = raw
        .into_iter()
        .map(|(company, _, name, features)| Doc {
            source: "sroie",
            group: format!("sroie:{}", issuer[&canon[&company]]),
            name,
            features,
            extractor: ExtractorMetadata {
                vendor: "sroie".into(),
                model: "annotations".into(),
                version: "1".into(),
                confidence: 0.95,
                latency_ms: 0.0,
                cost_usd: None,
            },
        })
        .collect();
    docs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(docs)
}

/// Which converter turns an extractor file into features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Converter {
    /// `preflight-adapters`, as a client using our SDK would.
    Adapters,
    /// The benchmark's own minimal converter (`crate::minimal`), as a client with its own
    /// converter would.
    Minimal,
}

impl Converter {
    pub fn as_str(self) -> &'static str {
        match self {
            Converter::Adapters => "adapters",
            Converter::Minimal => "minimal",
        }
    }
}

/// Reads one extractor file through the chosen converter.
pub fn convert_file(
    path: &Path,
    conv: Converter,
) -> Result<(StructuralFeatures, ExtractorMetadata), String> {
    let bytes = read(path)?;
    match conv {
        Converter::Adapters => {
            let out = preflight_adapters::features_from_bytes(&bytes, None)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((out.structural_features, out.extractor_metadata))
        }
        Converter::Minimal => crate::minimal::convert(&bytes)
            .ok_or_else(|| format!("{}: the minimal converter found nothing", path.display())),
    }
}

/// Loads every source with the extractor files read through `conv` (SROIE has no
/// extractor files: its loader is the same for both).
pub fn load_with(dir: &Path, conv: Converter) -> Result<Corpus, String> {
    if conv == Converter::Adapters {
        return load(dir);
    }
    let mut c = load(dir)?;
    let mut other = load_vrdu_with(dir, conv)?;
    other.extend(load_azure_with(dir, conv)?);
    other.extend(load_textract_with(dir, conv)?);
    c.docs.retain(|d| d.source == "sroie");
    c.docs.extend(other);
    Ok(c)
}

/// The 45 VRDU FARA first pages (Tesseract 5.3.0 TSV via the adapters), grouped by template.
pub fn load_vrdu(dir: &Path) -> Result<Vec<Doc>, String> {
    load_vrdu_with(dir, Converter::Adapters)
}

/// [`load_vrdu`] through a chosen converter.
pub fn load_vrdu_with(dir: &Path, conv: Converter) -> Result<Vec<Doc>, String> {
    let dir =
        dir.join("extractors/tesseract/generated_tesseract_5.3.0/vrdu_fara_registration_forms");
    let manifest = read_str(&dir.join("manifest.csv"))?;
    let mut docs = Vec::new();
    for line in manifest.lines().skip(1) {
        let stem = line.split(',').next().unwrap_or("");
        let Some((folder, _)) = stem.split_once("__") else {
            continue;
        };
        let (features, extractor) =
            convert_file(&dir.join(folder).join(format!("{stem}.page1.tsv")), conv)?;
        docs.push(Doc {
            source: "vrdu",
            group: format!("vrdu:{folder}"),
            name: stem.to_string(),
            features,
            extractor,
        });
    }
    docs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(docs)
}

/// Azure `same_template/*` sets; `contoso_invoices_v2.0` and `_v2.1` are the same five
/// invoices through two API versions, i.e. one template, so the API suffix is dropped.
pub fn load_azure(dir: &Path) -> Result<Vec<Doc>, String> {
    load_azure_with(dir, Converter::Adapters)
}

/// [`load_azure`] through a chosen converter.
pub fn load_azure_with(dir: &Path, conv: Converter) -> Result<Vec<Doc>, String> {
    let root = dir.join("extractors/azure/same_template");
    let mut docs = Vec::new();
    for set in sorted_entries(&root)? {
        let set_name = set
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let group = match set_name.rsplit_once("_v") {
            Some((base, _)) => base.to_string(),
            None => set_name.clone(),
        };
        for f in sorted_entries(&set)? {
            let n = f
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if !n.ends_with(".ocr.json") {
                continue;
            }
            let (features, extractor) = convert_file(&f, conv)?;
            docs.push(Doc {
                source: "azure",
                group: format!("azure:{group}"),
                name: format!("{set_name}/{n}"),
                features,
                extractor,
            });
        }
    }
    Ok(docs)
}

/// The three Textract `same_template/` pages (one group).
pub fn load_textract(dir: &Path) -> Result<Vec<Doc>, String> {
    load_textract_with(dir, Converter::Adapters)
}

/// [`load_textract`] through a chosen converter.
pub fn load_textract_with(dir: &Path, conv: Converter) -> Result<Vec<Doc>, String> {
    let mut docs = Vec::new();
    for f in sorted_entries(&dir.join("extractors/textract/same_template"))? {
        let (features, extractor) = convert_file(&f, conv)?;
        docs.push(Doc {
            source: "textract",
            group: "textract:textractor_test_document".into(),
            name: f
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string(),
            features,
            extractor,
        });
    }
    Ok(docs)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

/// Groups documents by label (deterministic order; members keep the corpus order).
pub fn by_group(docs: &[Doc]) -> BTreeMap<&str, Vec<&Doc>> {
    let mut m: BTreeMap<&str, Vec<&Doc>> = BTreeMap::new();
    for d in docs {
        m.entry(d.group.as_str()).or_default().push(d);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn company_names_normalize_and_merge() {
        assert_eq!(normalize_company("MR. D.I.Y. (KUCHAI) SDN BHD"), "MRDIY");
        assert_eq!(normalize_company("mr. d.i.y. (m) sdn. bhd."), "MRDIY");
        let names: Vec<String> = [
            "RESTORANWANSHENG",
            "RESTORANWANSHENG",
            "RSTORANWANSHENG",
            "GARDENIA",
            "GARDENIABAKERIESKL",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let c = merge_variants(&names);
        assert_eq!(c["RSTORANWANSHENG"], "RESTORANWANSHENG");
        assert_eq!(c["GARDENIABAKERIESKL"], "GARDENIA");
        assert_eq!(c["GARDENIA"], "GARDENIA");
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        // Glued parenthesized parts still separate the name from its legal suffix.
        assert_eq!(normalize_company("MR.D.I.Y(M)SDN BHD"), "MRDIY");
    }

    #[test]
    fn issuers_sharing_an_address_are_one_issuer() {
        assert_eq!(
            address_key("No. 2, Jalan Temenggung 19/9, Seksyen 9, Bandar Mahkota Cheras"),
            "NO2JALANTEMENGGUNG199SEKSYEN9B"
        );
        let r = |n: &str, a: &str| (n.to_string(), a.to_string());
        let m = merge_by_address(&[
            r("MAXINCOME", "A1"),
            r("FAMILYMART", "A1"),
            r("MAXINCOME", "A1"),
            r("FAMILYMART", "A2"),
            r("OTHERSHOP", "A2"),
            r("LONER", ""),
            r("NOADDRESS", ""),
        ]);
        // A1 joins FAMILYMART and MAXINCOME; A2 joins OTHERSHOP to them: one component,
        // named by its most frequent name (a tie, so the alphabetically first).
        assert_eq!(m["MAXINCOME"], "FAMILYMART");
        assert_eq!(m["FAMILYMART"], "FAMILYMART");
        assert_eq!(m["OTHERSHOP"], "FAMILYMART");
        // No address, no join.
        assert_eq!(m["LONER"], "LONER");
        assert_eq!(m["NOADDRESS"], "NOADDRESS");
    }

    #[test]
    fn pixel_boxes_become_normalized_text_lines() {
        let f = features_from_pixels(
            &[[10.0, 20.0, 110.0, 40.0], [5.0, 5.0, 5.0, 9.0]],
            200.0,
            100.0,
        );
        assert_eq!(f.bounding_boxes.len(), 1, "degenerate box dropped");
        let b = &f.bounding_boxes[0];
        assert!((b.x - 0.05).abs() < 1e-12 && (b.width - 0.5).abs() < 1e-12);
        assert!((b.y - 0.2).abs() < 1e-12 && (b.height - 0.2).abs() < 1e-12);
        assert_eq!(f.element_count, 1);
        assert!((f.text_density - 0.1).abs() < 1e-12);
    }

    #[test]
    fn missing_data_is_an_error() {
        let e = load(Path::new("/nonexistent/preflight-data")).unwrap_err();
        assert!(e.contains("shared data not found"), "{e}");
    }
}
