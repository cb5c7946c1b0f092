//! The client CLI end to end: `features`, `evaluate` and `templates register` run as the real
//! binary, against the real server binary (embedded mode, free port) or against a tiny
//! scripted HTTP server where the test needs answers the real one does not give on demand
//! (503, 429) or needs to see the exact bytes on the wire.
//!
//! Fixtures are small extractor outputs written into temp dirs by the tests; every word in
//! them is a made-up token so "no text leaves the machine" can be checked by searching for
//! those words in what was printed, sent and stored.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use crate::support::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Words used in the fixtures. None can occur by chance in JSON numbers, hex hashes, UUIDs,
/// field names or timestamps (they contain letters beyond a–f and are not English).
const SECRET_WORDS: [&str; 12] = [
    "Zorblaxian",
    "Quuxington",
    "Mxyzptlkova",
    "Vrolijkheid",
    "Snarfwhistle",
    "Plumbusworth",
    "Glimmerquist",
    "Thwompledge",
    "Kwizzlebottom",
    "Yzerfontijn",
    "Brumbleknot",
    "Wuggawoozle",
];

/// A line of a fixture: normalized box (left, top, width, height) and its words.
struct Line {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    words: Vec<&'static str>,
}

fn word(i: usize) -> &'static str {
    SECRET_WORDS[i % SECRET_WORDS.len()]
}

/// An invoice-like page: a header block, a table of rows, a footer.
fn layout_a() -> Vec<Line> {
    let mut lines = vec![
        Line {
            x: 0.08,
            y: 0.04,
            w: 0.30,
            h: 0.03,
            words: vec![word(0), word(1)],
        },
        Line {
            x: 0.65,
            y: 0.04,
            w: 0.25,
            h: 0.02,
            words: vec![word(2)],
        },
        Line {
            x: 0.65,
            y: 0.08,
            w: 0.20,
            h: 0.02,
            words: vec![word(3), word(4)],
        },
        Line {
            x: 0.08,
            y: 0.16,
            w: 0.35,
            h: 0.02,
            words: vec![word(5)],
        },
        Line {
            x: 0.08,
            y: 0.19,
            w: 0.28,
            h: 0.02,
            words: vec![word(6), word(7)],
        },
    ];
    for row in 0..8 {
        let y = 0.32 + row as f64 * 0.045;
        lines.push(Line {
            x: 0.08,
            y,
            w: 0.40,
            h: 0.02,
            words: vec![word(row), word(row + 3)],
        });
        lines.push(Line {
            x: 0.75,
            y,
            w: 0.12,
            h: 0.02,
            words: vec![word(row + 5)],
        });
    }
    lines.push(Line {
        x: 0.08,
        y: 0.93,
        w: 0.60,
        h: 0.02,
        words: vec![word(8), word(9), word(10)],
    });
    lines
}

/// A letter-like page: one long column of prose lines in the lower half.
fn layout_b() -> Vec<Line> {
    (0..18)
        .map(|i| Line {
            x: 0.55,
            y: 0.45 + i as f64 * 0.028,
            w: 0.38,
            h: 0.015,
            words: vec![word(i + 1), word(i + 4), word(i + 7)],
        })
        .collect()
}

fn textract(lines: &[Line]) -> String {
    let mut blocks = vec![json!({"BlockType": "PAGE", "Id": "page", "Page": 1,
        "Geometry": {"BoundingBox": {"Left": 0.0, "Top": 0.0, "Width": 1.0, "Height": 1.0}}})];
    for (i, l) in lines.iter().enumerate() {
        blocks.push(
            json!({"BlockType": "LINE", "Id": format!("line-{i}"), "Page": 1,
            "Confidence": 98.5, "Text": l.words.join(" "),
            "Geometry": {"BoundingBox": {"Left": l.x, "Top": l.y, "Width": l.w, "Height": l.h}}}),
        );
        let ww = l.w / l.words.len() as f64;
        for (j, w) in l.words.iter().enumerate() {
            blocks.push(
                json!({"BlockType": "WORD", "Id": format!("word-{i}-{j}"), "Page": 1,
                "Confidence": 97.0, "Text": w, "TextType": "PRINTED",
                "Geometry": {"BoundingBox": {"Left": l.x + ww * j as f64, "Top": l.y,
                    "Width": ww, "Height": l.h}}}),
            );
        }
    }
    json!({"DocumentMetadata": {"Pages": 1}, "Blocks": blocks}).to_string()
}

/// Azure Form Recognizer 2.1 read result, page in inches.
fn azure(lines: &[Line]) -> String {
    let (pw, ph) = (8.5, 11.0);
    let quad = |x: f64, y: f64, w: f64, h: f64| {
        json!([
            x * pw,
            y * ph,
            (x + w) * pw,
            y * ph,
            (x + w) * pw,
            (y + h) * ph,
            x * pw,
            (y + h) * ph
        ])
    };
    let lines: Vec<Value> = lines
        .iter()
        .map(|l| {
            let ww = l.w / l.words.len() as f64;
            let words: Vec<Value> = l
                .words
                .iter()
                .enumerate()
                .map(|(j, w)| json!({"text": w, "confidence": 0.93,
                    "boundingBox": quad(l.x + ww * j as f64, l.y, ww, l.h)}))
                .collect();
            json!({"text": l.words.join(" "), "boundingBox": quad(l.x, l.y, l.w, l.h), "words": words})
        })
        .collect();
    json!({"status": "succeeded", "createdDateTime": "2021-03-01T10:00:00Z",
        "lastUpdatedDateTime": "2021-03-01T10:00:01Z",
        "analyzeResult": {"version": "2.1.0", "readResults": [{"page": 1, "angle": 0,
            "width": pw, "height": ph, "unit": "inch", "lines": lines}]}})
    .to_string()
}

/// Tesseract 5 TSV, page 2000 × 3000 px.
fn tesseract_tsv(lines: &[Line]) -> String {
    let (pw, ph) = (2000.0, 3000.0);
    let px = |v: f64, scale: f64| (v * scale).round() as i64;
    let mut out =
        String::from("level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n");
    out.push_str("1\t1\t0\t0\t0\t0\t0\t0\t2000\t3000\t-1\t\n");
    for (i, l) in lines.iter().enumerate() {
        let b = i + 1;
        let (x, y, w, h) = (px(l.x, pw), px(l.y, ph), px(l.w, pw), px(l.h, ph));
        out.push_str(&format!("2\t1\t{b}\t0\t0\t0\t{x}\t{y}\t{w}\t{h}\t-1\t\n"));
        out.push_str(&format!("3\t1\t{b}\t1\t0\t0\t{x}\t{y}\t{w}\t{h}\t-1\t\n"));
        out.push_str(&format!("4\t1\t{b}\t1\t1\t0\t{x}\t{y}\t{w}\t{h}\t-1\t\n"));
        let ww = w / l.words.len() as i64;
        for (j, word) in l.words.iter().enumerate() {
            let wx = x + ww * j as i64;
            out.push_str(&format!(
                "5\t1\t{b}\t1\t1\t{}\t{wx}\t{y}\t{ww}\t{h}\t91.5\t{word}\n",
                j + 1
            ));
        }
    }
    out
}

/// A Textract answer with a page but no text at all: a broken extraction.
fn textract_empty() -> String {
    json!({"DocumentMetadata": {"Pages": 1}, "Blocks": [{"BlockType": "PAGE", "Id": "p",
        "Page": 1, "Geometry": {"BoundingBox": {"Left": 0.0, "Top": 0.0, "Width": 1.0, "Height": 1.0}}}]})
    .to_string()
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    path
}

/// Asserts that none of the fixture words occurs in `haystack` (case-insensitively).
fn assert_no_text(what: &str, haystack: &[u8]) {
    let lower = String::from_utf8_lossy(haystack).to_lowercase();
    for w in SECRET_WORDS {
        assert!(
            !lower.contains(&w.to_lowercase()),
            "{what} contains the document word {w:?}"
        );
    }
}

/// Runs the binary with a clean environment (plus `env`) in `dir`, off the async runtime.
async fn cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = clean_command(dir);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("run preflight"))
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// features

#[tokio::test]
async fn features_prints_layout_metadata_and_never_text() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "a.textract.json", &textract(&layout_a()));
    write(d, "b.azure.json", &azure(&layout_a()));
    write(d, "c.tsv", &tesseract_tsv(&layout_a()));

    // One file: one object, the adapter output plus the file as given.
    let o = cli(d, &["features", "a.textract.json"], &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_no_text("features output", &o.stdout);
    let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc["file"], "a.textract.json");
    assert_eq!(doc["format"], "textract");
    assert_eq!(doc["layout_fingerprint"].as_str().unwrap().len(), 64);
    let f = &doc["structural_features"];
    assert_eq!(f["text_block_count"], layout_a().len());
    assert_eq!(
        f["bounding_boxes"].as_array().unwrap().len(),
        layout_a().len()
    );
    assert_eq!(doc["extractor_metadata"]["vendor"], "aws-textract");

    // Several files: one array in argument order; detection by content; --pretty.
    let o = cli(
        d,
        &[
            "features",
            "--pretty",
            "c.tsv",
            "b.azure.json",
            "a.textract.json",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_no_text("features output", &o.stdout);
    assert!(stdout(&o).contains("\n  "), "pretty-printed");
    let docs: Vec<Value> = serde_json::from_str(&stdout(&o)).unwrap();
    let formats: Vec<&str> = docs.iter().map(|d| d["format"].as_str().unwrap()).collect();
    assert_eq!(formats, ["tesseract-tsv", "azure", "textract"]);
    // The same layout through three vendors gives the same number of text boxes.
    for d in &docs {
        assert_eq!(
            d["structural_features"]["text_block_count"],
            layout_a().len()
        );
    }

    // --jsonl: one object per line.
    let o = cli(d, &["features", "--jsonl", "a.textract.json", "c.tsv"], &[]).await;
    assert_eq!(o.status.code(), Some(0));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["file"], "c.tsv");

    // `--from tesseract` is resolved by content; the other Tesseract format is refused.
    let o = cli(d, &["features", "--from", "tesseract", "c.tsv"], &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json_lines(&o)[0]["format"], "tesseract-tsv");
    let o = cli(
        d,
        &["features", "--from", "tesseract", "a.textract.json"],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("a.textract.json") && stderr(&o).contains("not Tesseract"),
        "{}",
        stderr(&o)
    );
    // A forced format that does not fit the bytes.
    let o = cli(d, &["features", "--from", "azure", "c.tsv"], &[]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("c.tsv: malformed azure input"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn features_reports_bad_inputs_by_file_name_with_documented_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "good.json", &textract(&layout_a()));
    write(
        d,
        "notes.json",
        &json!({"remark": SECRET_WORDS[0]}).to_string(),
    );

    // Unrecognized content: exit 1, the file named, and no partial array on stdout.
    let o = cli(
        d,
        &["features", "good.json", "notes.json", "missing.json"],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("notes.json: unrecognized input"), "{err}");
    assert!(err.contains("missing.json: cannot read"), "{err}");
    assert!(stdout(&o).is_empty(), "no incomplete JSON: {}", stdout(&o));
    // Error messages don't quote the document either.
    assert_no_text("features errors", &o.stderr);

    // Usage errors are 2.
    for args in [
        vec!["features", "--from", "wordperfect", "good.json"],
        vec!["features", "--page-width", "100", "good.json"],
        vec![
            "features",
            "--page-width",
            "-3",
            "--page-height",
            "5",
            "good.json",
        ],
        vec!["features"],
    ] {
        let o = cli(d, &args, &[]).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

// ---------------------------------------------------------------------------------------
// evaluate against the real server

#[tokio::test]
async fn evaluate_a_folder_prints_results_in_order_with_a_summary_and_exit_codes() {
    let server = TestServer::start(ServerOptions::default()).await;
    let key = server.first_start_key();
    let env = [
        ("PREFLIGHT_URL", server.base.as_str()),
        ("PREFLIGHT_API_KEY", key.as_str()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let docs = d.join("docs");
    write(&docs, "a.json", &textract(&layout_a()));
    write(&docs, "b.json", &azure(&layout_b()));
    write(&docs, "empty.json", &textract_empty());
    write(&docs, "nested/c.tsv", &tesseract_tsv(&layout_a()));
    write(&docs, ".hidden.json", &textract(&layout_b()));
    write(&docs, ".git/d.json", &textract(&layout_b()));
    write(
        &docs,
        "readme.txt",
        "Zorblaxian notes, not an extractor output",
    );

    // --json: one object per file, sorted, hidden entries skipped, then the summary.
    let o = cli(d, &["evaluate", "--json", "docs"], &env).await;
    assert_eq!(o.status.code(), Some(1), "readme.txt fails: {}", stderr(&o));
    let lines = json_lines(&o);
    let files: Vec<&str> = lines.iter().filter_map(|l| l["file"].as_str()).collect();
    assert_eq!(
        files,
        [
            "docs/a.json",
            "docs/b.json",
            "docs/empty.json",
            "docs/nested/c.tsv",
            "docs/readme.txt"
        ]
    );
    for l in &lines[..4] {
        assert!(l["evaluation_id"].is_string(), "{l}");
        assert!(l["match_confidence"].is_number(), "{l}");
        assert!(l["reasons"].is_array(), "{l}");
    }
    // No templates yet: real layouts are NEW, the empty extraction is REJECTed.
    let decisions: Vec<&str> = lines[..4]
        .iter()
        .map(|l| l["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["NEW", "NEW", "REJECT", "NEW"]);
    assert!(
        lines[2]["reasons"].to_string().contains("EMPTY_EXTRACTION"),
        "{}",
        lines[2]
    );
    assert!(lines[4]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unrecognized input"));
    assert!(
        stderr(&o).contains("docs/readme.txt: unrecognized input"),
        "{}",
        stderr(&o)
    );
    let summary = &lines[5]["summary"];
    assert_eq!(
        summary,
        &json!({"files": 5, "evaluated": 4, "skipped": 0, "failed": 1, "exit_code": 1,
            "decisions": {"MATCH": 0, "REVIEW": 0, "NEW": 3, "REJECT": 1}})
    );

    // --skip-unrecognized: the text file is skipped, not failed; all evaluated → 0.
    let o = cli(
        d,
        &[
            "evaluate",
            "--skip-unrecognized",
            "--concurrency",
            "2",
            "docs",
        ],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let rows: Vec<&str> = out.lines().take(4).collect();
    assert!(
        rows[0].starts_with("NEW ")
            && rows[0].contains("docs/a.json")
            && rows[0].contains("[NO_TEMPLATE_CLOSE]"),
        "{out}"
    );
    assert!(
        rows[2].starts_with("REJECT")
            && rows[2].contains("docs/empty.json")
            && rows[2].contains("EMPTY_EXTRACTION"),
        "{out}"
    );
    assert!(
        out.contains("summary: 5 files, 4 evaluated, 1 skipped, 0 failed"),
        "{out}"
    );
    assert!(
        out.contains("  NEW           3\n") && out.contains("  REJECT        1\n"),
        "{out}"
    );
    assert!(
        stderr(&o).contains("skipped docs/readme.txt"),
        "{}",
        stderr(&o)
    );

    // --fail-on turns decisions into exit code 3, only for the decisions named.
    let files = ["docs/a.json", "docs/empty.json"];
    let o = cli(
        d,
        &[&["evaluate", "--fail-on", "reject"][..], &files].concat(),
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let o = cli(
        d,
        &[&["evaluate", "--fail-on", "MATCH,REVIEW"][..], &files].concat(),
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // ... but a failed file wins: the run is incomplete.
    let o = cli(
        d,
        &[
            "evaluate",
            "--fail-on",
            "REJECT",
            "docs/empty.json",
            "docs/nope.json",
        ],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("docs/nope.json: cannot read"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn evaluate_sends_and_stores_layout_only_and_retries_are_idempotent() {
    let server = TestServer::start(ServerOptions::default()).await;
    let key = server.first_start_key();
    let env = [
        ("PREFLIGHT_URL", server.base.as_str()),
        ("PREFLIGHT_API_KEY", key.as_str()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The folder name is sensitive too: only the file name may be sent.
    let folder = "Snarfwhistle-client-files";
    let path = write(&d.join(folder), "scan-0001.json", &textract(&layout_a()));
    let bytes = std::fs::read(&path).unwrap();
    let arg = format!("{folder}/scan-0001.json");

    let o = cli(
        d,
        &["evaluate", "--json", "--pipeline-id", "nightly", &arg],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let answer = &json_lines(&o)[0];
    let id = answer["evaluation_id"].as_str().unwrap().to_string();
    assert_eq!(answer["client_correlation_id"], "scan-0001.json");
    assert_eq!(answer["pipeline_id"], "nightly");

    let stored: Value = http_client()
        .get(server.url(&format!("/v1/evaluations/{id}")))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["evaluation_id"], id.as_str());
    assert_eq!(stored["client_doc_hash"], sha256_hex(&bytes));
    assert_eq!(stored["extractor_vendor"], "aws-textract");
    assert_no_text("the stored evaluation", stored.to_string().as_bytes());

    // What the server keeps on disk (database and its WAL): layout only, no folder name.
    let mut on_disk = Vec::new();
    for name in ["preflight.db", "preflight.db-wal"] {
        if let Ok(b) = std::fs::read(server.data_dir.path().join(name)) {
            on_disk.extend(b);
        }
    }
    assert!(!on_disk.is_empty());
    assert!(
        String::from_utf8_lossy(&on_disk).contains("scan-0001.json"),
        "the search below must be able to find what was stored"
    );
    assert_no_text("the server's database", &on_disk);

    // The same run id → the same Idempotency-Key → the first answer, nothing stored twice.
    let run = ["evaluate", "--json", "--run-id", "r1", &arg];
    let first = json_lines(&cli(d, &run, &env).await)[0]["evaluation_id"].clone();
    let again = json_lines(&cli(d, &run, &env).await)[0]["evaluation_id"].clone();
    assert_eq!(first, again);
    // Without a run id each invocation is a new evaluation.
    let fresh =
        json_lines(&cli(d, &["evaluate", "--json", &arg], &env).await)[0]["evaluation_id"].clone();
    assert_ne!(fresh, first);
    assert_ne!(fresh.as_str(), Some(id.as_str()));
}

#[tokio::test]
async fn evaluate_configuration_errors_exit_2() {
    let server = TestServer::start(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "a.json", &textract(&layout_a()));
    std::fs::create_dir(d.join("empty")).unwrap();
    let url = server.base.as_str();

    // No key at all (clap names the flag and the variable is documented).
    let o = cli(d, &["evaluate", "--url", url, "a.json"], &[]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--api-key"), "{}", stderr(&o));
    // A key the server refuses: the run stops as a configuration error.
    let o = cli(
        d,
        &["evaluate", "--url", url, "a.json"],
        &[("PREFLIGHT_API_KEY", "pf_nope_nope")],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("HTTP 401") && stderr(&o).contains("refused the API key"),
        "{}",
        stderr(&o)
    );
    // The key never appears in help output, even when it comes from the environment.
    let o = cli(
        d,
        &["evaluate", "--help"],
        &[("PREFLIGHT_API_KEY", "pf_visible_secret")],
    )
    .await;
    assert_eq!(o.status.code(), Some(0));
    assert!(!stdout(&o).contains("pf_visible_secret"));

    let key = [("PREFLIGHT_API_KEY", "pf_x_y")];
    for args in [
        vec!["evaluate", "--url", "ftp://example.org", "a.json"],
        vec!["evaluate", "--url", "not a url", "a.json"],
        vec!["evaluate", "--url", url, "empty"],
        vec!["evaluate", "--url", url, "--concurrency", "65", "a.json"],
        vec!["evaluate", "--url", url, "--concurrency", "0", "a.json"],
        vec!["evaluate", "--url", url, "--fail-on", "MAYBE", "a.json"],
        vec!["evaluate", "--url", url, "--timeout", "0", "a.json"],
    ] {
        let o = cli(d, &args, &key).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty());
    }
}

#[tokio::test]
async fn evaluate_against_nothing_fails_after_the_retries_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "a.json", &textract(&layout_a()));
    write(d, "b.json", &textract(&layout_b()));
    let closed = ClosedPort::hold();
    let url = format!("http://127.0.0.1:{}", closed.port);
    let o = cli(
        d,
        &[
            "evaluate",
            "--url",
            &url,
            "--retries",
            "1",
            "--json",
            "a.json",
            "b.json",
        ],
        &[("PREFLIGHT_API_KEY", "pf_x_y")],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("a.json: cannot reach") && err.contains("(after 2 attempts)"),
        "{err}"
    );
    let lines = json_lines(&o);
    assert!(lines[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("cannot reach"));
    assert_eq!(lines[2]["summary"]["failed"], 2);
}

// ---------------------------------------------------------------------------------------
// evaluate / templates against a scripted server: exact bytes on the wire, 429 and 503

#[derive(Clone, Debug)]
struct Recorded {
    request_line: String,
    /// Header names lower-cased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP/1.1 server that answers the n-th request with `script[n]` (the last one
/// repeated) and records every request.
struct Scripted {
    url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

fn http_answer(status: &str, extra_headers: &str, body: &Value) -> String {
    let body = body.to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra_headers}connection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn scripted(script: Vec<String>) -> Scripted {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let head_end = loop {
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(i);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let mut lines = head.split("\r\n");
            let request_line = lines.next().unwrap_or_default().to_string();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = buf[head_end + 4..].to_vec();
            while body.len() < length {
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            let answer = {
                let mut all = seen.lock().unwrap();
                all.push(Recorded {
                    request_line,
                    headers,
                    body,
                });
                script[(all.len() - 1).min(script.len() - 1)].clone()
            };
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    Scripted { url, requests }
}

fn fake_evaluation(decision: &str) -> Value {
    json!({"evaluation_id": "01a2148d-9b95-7442-a51c-21b983ac90dc", "decision": decision,
        "match_confidence": 0.91, "template_id": "inv", "template_version": 2,
        "reasons": [], "warnings": []})
}

#[tokio::test]
async fn evaluate_retries_503_and_429_under_one_idempotency_key_and_sends_only_layout() {
    let mock = scripted(vec![
        http_answer(
            "503 Service Unavailable",
            "retry-after: 0\r\n",
            &json!({"status": 503, "code": "SERVICE_UNAVAILABLE"}),
        ),
        http_answer(
            "429 Too Many Requests",
            "retry-after: 0\r\n",
            &json!({"status": 429, "code": "RATE_LIMITED"}),
        ),
        http_answer("200 OK", "", &fake_evaluation("MATCH")),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = write(&d.join("Thwompledge"), "scan.json", &azure(&layout_a()));
    let o = cli(
        d,
        &[
            "evaluate",
            "--url",
            &mock.url,
            "--retries",
            "2",
            "Thwompledge/scan.json",
        ],
        &[("PREFLIGHT_API_KEY", "pf_test_key")],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("MATCH   0.910  inv@v2"),
        "{}",
        stdout(&o)
    );

    let requests = mock.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 3, "two retries");
    let key = requests[0]
        .header("idempotency-key")
        .expect("an Idempotency-Key")
        .to_string();
    for r in &requests {
        assert_eq!(r.request_line, "POST /v1/evaluate HTTP/1.1");
        assert_eq!(r.header("idempotency-key"), Some(key.as_str()));
        assert_eq!(r.header("x-api-key"), Some("pf_test_key"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body, requests[0].body, "a retry sends the same bytes");
        assert_no_text("the request", &r.body);
    }
    // Exactly these fields go over the wire.
    let body = requests[0].json();
    let mut fields: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "client_correlation_id",
            "client_doc_hash",
            "extractor_metadata",
            "layout_fingerprint",
            "structural_features"
        ]
    );
    assert_eq!(body["client_correlation_id"], "scan.json");
    assert_eq!(
        body["client_doc_hash"],
        sha256_hex(&std::fs::read(&path).unwrap())
    );

    // --no-correlation-id sends no name at all; --retries 0 gives up at the first 503.
    let mock = scripted(vec![http_answer(
        "503 Service Unavailable",
        "retry-after: 0\r\n",
        &json!({"status": 503, "code": "SERVICE_UNAVAILABLE", "detail": "database unavailable"}),
    )])
    .await;
    let o = cli(
        d,
        &[
            "evaluate",
            "--url",
            &mock.url,
            "--retries",
            "0",
            "--no-correlation-id",
            "Thwompledge/scan.json",
        ],
        &[("PREFLIGHT_API_KEY", "pf_test_key")],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("scan.json: HTTP 503 SERVICE_UNAVAILABLE: database unavailable"),
        "{}",
        stderr(&o)
    );
    let requests = mock.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].json().get("client_correlation_id").is_none());
}

#[tokio::test]
async fn evaluate_does_not_retry_a_validation_error() {
    let mock = scripted(vec![http_answer(
        "422 Unprocessable Entity",
        "",
        &json!({"status": 422, "code": "VALIDATION_FAILED", "detail": "invalid fields",
            "errors": [{"field": "structural_features.bounding_boxes", "message": "too many"}]}),
    )])
    .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.json", &textract(&layout_a()));
    let o = cli(
        dir.path(),
        &["evaluate", "--url", &mock.url, "a.json"],
        &[("PREFLIGHT_API_KEY", "k")],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("HTTP 422 VALIDATION_FAILED: invalid fields (structural_features.bounding_boxes: too many)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(mock.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn templates_register_sends_the_layout_and_prints_the_created_template() {
    let created = json!({"id": "0b7d6a4e-0000-7000-8000-000000000001", "template_id": "inv",
        "version": 3, "name": "Invoices", "status": "active"});
    let mock = scripted(vec![http_answer("201 Created", "", &created)]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "sample.tsv", &tesseract_tsv(&layout_a()));
    let env = [
        ("PREFLIGHT_URL", mock.url.as_str()),
        ("PREFLIGHT_API_KEY", "pf_k"),
    ];
    let args = [
        "templates",
        "register",
        "--from",
        "tesseract",
        "sample.tsv",
        "--template-id",
        "inv",
        "--version",
        "3",
        "--name",
        "Invoices",
    ];
    let o = cli(d, &args, &env).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "registered template inv version 3 (id 0b7d6a4e-0000-7000-8000-000000000001)"
    );
    let requests = mock.requests.lock().unwrap().clone();
    assert_eq!(requests[0].request_line, "POST /v1/templates HTTP/1.1");
    assert!(requests[0].header("idempotency-key").is_some());
    assert_no_text("the template request", &requests[0].body);
    let body = requests[0].json();
    let mut fields: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "extractor",
            "name",
            "structural_features",
            "template_id",
            "version"
        ]
    );
    // The sample's extractor, which the template has then seen.
    let mut extractor: Vec<&str> = body["extractor"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    extractor.sort();
    assert_eq!(extractor, ["model", "vendor", "version"]);
    assert_eq!(body["extractor"]["vendor"], "tesseract");
    assert_eq!(body["template_id"], "inv");
    assert_eq!(body["version"], 3);
    assert_eq!(
        body["structural_features"]["text_block_count"],
        layout_a().len()
    );

    let o = cli(d, &[&args[..], &["--json"]].concat(), &env).await;
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(json_lines(&o)[0], created);

    // Several samples become the template's exemplars.
    write(d, "again.json", &textract(&layout_a()));
    let o = cli(
        d,
        &[
            "templates",
            "register",
            "sample.tsv",
            "again.json",
            "--template-id",
            "inv",
        ],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let body = mock.requests.lock().unwrap()[2].json();
    assert!(body.get("structural_features").is_none(), "{body}");
    let exemplars = body["exemplars"].as_array().unwrap();
    assert_eq!(exemplars.len(), 2);
    assert_eq!(exemplars[1]["text_block_count"], layout_a().len());

    // A conflict is a failure (1) with the server's message; a bad file fails before sending.
    let mock = scripted(vec![http_answer(
        "409 Conflict",
        "",
        &json!({"status": 409, "code": "CONFLICT", "detail": "template inv version 3 exists"}),
    )])
    .await;
    let o = cli(
        d,
        &args,
        &[
            ("PREFLIGHT_URL", mock.url.as_str()),
            ("PREFLIGHT_API_KEY", "pf_k"),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("HTTP 409 CONFLICT: template inv version 3 exists"),
        "{}",
        stderr(&o)
    );
    let o = cli(
        d,
        &["templates", "register", "nope.json", "--template-id", "x"],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("nope.json: cannot read"),
        "{}",
        stderr(&o)
    );
    let o = cli(d, &["templates", "register", "sample.tsv"], &env).await;
    assert_eq!(o.status.code(), Some(2), "--template-id is required");
}

// ---------------------------------------------------------------------------------------
// templates register + evaluate against the real server

#[tokio::test]
async fn a_registered_sample_matches_itself_and_other_layouts_stay_new() {
    let server = TestServer::start(ServerOptions::default()).await;
    let key = server.first_start_key();
    let env = [
        ("PREFLIGHT_URL", server.base.as_str()),
        ("PREFLIGHT_API_KEY", key.as_str()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "docs/a.json", &textract(&layout_a()));
    write(d, "docs/a.tsv", &tesseract_tsv(&layout_a()));
    write(d, "docs/b.json", &textract(&layout_b()));

    let o = cli(
        d,
        &[
            "templates",
            "register",
            "docs/a.json",
            "--template-id",
            "letterhead",
            "--json",
        ],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let created = &json_lines(&o)[0];
    assert_eq!(created["template_id"], "letterhead");

    let o = cli(d, &["evaluate", "--json", "docs"], &env).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines = json_lines(&o);
    let by_file = |f: &str| lines.iter().find(|l| l["file"] == f).unwrap().clone();
    let a = by_file("docs/a.json");
    assert_eq!(
        a["decision"],
        "MATCH",
        "{a}\n{}\n{}",
        stdout(&o),
        server.logs()
    );
    assert_eq!(a["match_confidence"], 1.0, "{a}");
    assert_eq!(a["template_id"], "letterhead");
    // The same page read by another engine is the same layout, from an extractor the
    // template has not seen: named, for review.
    let tsv = by_file("docs/a.tsv");
    assert_eq!(tsv["template_id"], "letterhead", "{tsv}");
    assert_eq!(tsv["decision"], "REVIEW", "{tsv}");
    assert!(
        tsv["reasons"].to_string().contains("EXTRACTOR_CHANGED"),
        "{tsv}"
    );
    assert_eq!(by_file("docs/b.json")["decision"], "NEW");
    assert_eq!(lines.last().unwrap()["summary"]["decisions"]["NEW"], 1);
}

// ---------------------------------------------------------------------------------------
// shared data

fn data_dir() -> PathBuf {
    let dir = std::env::var_os("PREFLIGHT_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    assert!(
        dir.join("extractors").is_dir(),
        "shared data not found at {} (set PREFLIGHT_DATA_DIR)",
        dir.display()
    );
    dir
}

#[tokio::test]
#[ignore = "needs ../shared/data (run with --ignored)"]
async fn shared_data_azure_invoices_match_their_registered_template() {
    let data = data_dir();
    let group = data.join("extractors/azure/same_template/contoso_invoices_v2.0");
    let other = data.join("extractors/azure/same_template/hero_purchase_orders_v2.0");
    let server = TestServer::start(ServerOptions::default()).await;
    let key = server.first_start_key();
    let env = [
        ("PREFLIGHT_URL", server.base.as_str()),
        ("PREFLIGHT_API_KEY", key.as_str()),
    ];
    let d = server.data_dir.path();
    let sample = group.join("Invoice_1.pdf.ocr.json");

    let o = cli(
        d,
        &[
            "templates",
            "register",
            "--from",
            "azure",
            sample.to_str().unwrap(),
            "--template-id",
            "contoso-invoice",
        ],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).starts_with("registered template contoso-invoice version "),
        "{}",
        stdout(&o)
    );

    // The folder also holds human labels and a field list: not extractor outputs.
    let o = cli(
        d,
        &[
            "evaluate",
            "--json",
            "--skip-unrecognized",
            group.to_str().unwrap(),
        ],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines = json_lines(&o);
    let evaluated: Vec<&Value> = lines.iter().filter(|l| l["decision"].is_string()).collect();
    assert_eq!(evaluated.len(), 5, "{}", stdout(&o));
    for l in &evaluated {
        let file = l["file"].as_str().unwrap();
        assert_eq!(l["template_id"], "contoso-invoice", "{file}: {l}");
        if file.ends_with("Invoice_1.pdf.ocr.json") {
            assert_eq!(l["decision"], "MATCH", "{l}");
            assert_eq!(l["match_confidence"], 1.0, "{l}");
        } else {
            assert!(
                matches!(l["decision"].as_str(), Some("MATCH" | "REVIEW")),
                "{file}: {l}"
            );
        }
    }
    assert_eq!(lines.last().unwrap()["summary"]["skipped"], 6);

    let o = cli(
        d,
        &[
            "evaluate",
            "--json",
            "--skip-unrecognized",
            other.to_str().unwrap(),
        ],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines = json_lines(&o);
    let evaluated: Vec<&Value> = lines.iter().filter(|l| l["decision"].is_string()).collect();
    assert_eq!(evaluated.len(), 5);
    for l in evaluated {
        assert_eq!(l["decision"], "NEW", "{l}");
    }
}
