//! Loopback load generator for the benchmarks in docs/BENCHMARKS.md.
//!
//! Registers synthetic but realistic templates (about 50 boxes: header, key/value rows in two
//! columns, a line-item table, footer), then keeps `--concurrency` requests in flight for
//! `--duration` seconds and prints requests/s and latency percentiles. Deterministic by seed.
//!
//! ```text
//! cargo run --release -p preflight --example loadgen -- \
//!     --url http://127.0.0.1:8000 --key pf_... --mode evaluate --templates 1000 \
//!     --concurrency 16 --duration 20
//! ```
//!
//! `--mode` is `evaluate` (default), `status` (`GET /v1/status`, which also pings the
//! database and Redis), `me` (`GET /v1/auth/me`: authentication and rate limiting only) or
//! `health` (`GET /health`: neither), or `get` (`GET --path PATH` with the key, e.g.
//! `--path '/v1/analytics/summary'`; with `--concurrency 1` that is sequential latency).
//!
//! `--versions V` registers versions 1..=V of each of the `--templates` ids (each version a
//! slightly moved layout), and `--duration 0` stops after registering.
//!
//! `--mode review` measures the review queue: `--fill N` first evaluates N documents of
//! unseen layouts through `POST /v1/evaluate/batch` (100 a request; in a tenant without
//! templates each is NEW, so each becomes a review item), then each of `--concurrency`
//! reviewers loops `POST /v1/review-items/claim-next` → `POST /v1/review-items/{id}/resolve`
//! with outcome `correct` and the claim's lease token, until claim-next answers 204 (the
//! queue is empty) or `--duration` seconds have passed. It prints items resolved per second
//! and the claim's and the resolve's latency percentiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Args {
    url: String,
    key: Option<String>,
    mode: String,
    templates: usize,
    versions: usize,
    path: String,
    concurrency: usize,
    duration: u64,
    seed: u64,
    fill: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        url: "http://127.0.0.1:8000".into(),
        key: std::env::var("PREFLIGHT_API_KEY").ok(),
        mode: "evaluate".into(),
        templates: 1000,
        versions: 1,
        path: "/health".into(),
        concurrency: 16,
        duration: 20,
        seed: 1,
        fill: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = value(),
            "--key" => a.key = Some(value()),
            "--mode" => a.mode = value(),
            "--templates" => a.templates = value().parse().expect("--templates N"),
            "--versions" => a.versions = value().parse().expect("--versions N"),
            "--path" => a.path = value(),
            "--concurrency" => a.concurrency = value().parse().expect("--concurrency N"),
            "--duration" => a.duration = value().parse().expect("--duration SECONDS"),
            "--seed" => a.seed = value().parse().expect("--seed N"),
            "--fill" => a.fill = value().parse().expect("--fill N"),
            other => panic!("unknown flag {other}; see the example's doc comment"),
        }
    }
    a
}

/// SplitMix64: small, fast, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// A form-like layout of one template; `jitter` shifts boxes and varies the line items as
/// documents of the same template do.
fn layout(template_seed: u64, doc_rng: Option<&mut Rng>) -> Value {
    let mut t = Rng(template_seed);
    let mut jitter_rng = doc_rng;
    let mut boxes = Vec::new();
    let mut push = |x: f64, y: f64, w: f64, h: f64, kind: &str, jr: &mut Option<&mut Rng>| {
        let (dx, dy, conf) = match jr {
            Some(r) => (
                r.range(-0.004, 0.004),
                r.range(-0.004, 0.004),
                r.range(0.85, 0.99),
            ),
            None => (0.0, 0.0, 0.97),
        };
        let x = (x + dx).clamp(0.0, 0.98);
        let y = (y + dy).clamp(0.0, 0.98);
        boxes.push(json!({
            "x": x, "y": y, "width": w.min(1.0 - x), "height": h.min(1.0 - y),
            "element_type": kind, "confidence": conf, "reading_order": 0
        }));
    };
    let header_h = t.range(0.04, 0.08);
    push(
        t.range(0.05, 0.3),
        0.03,
        t.range(0.3, 0.5),
        header_h,
        "title",
        &mut jitter_rng,
    );
    let kv_rows = 6 + (t.next() % 8) as usize;
    let kv_top = 0.05 + header_h + t.range(0.02, 0.05);
    let col2 = t.range(0.45, 0.6);
    for i in 0..kv_rows {
        let y = kv_top + i as f64 * 0.03;
        push(0.06, y, 0.15, 0.02, "key", &mut jitter_rng);
        push(0.23, y, t.range(0.12, 0.2), 0.02, "value", &mut jitter_rng);
        if t.unit() < 0.6 {
            push(col2, y, 0.12, 0.02, "key", &mut jitter_rng);
            push(col2 + 0.14, y, 0.2, 0.02, "value", &mut jitter_rng);
        }
    }
    let table_top = kv_top + kv_rows as f64 * 0.03 + 0.03;
    let base_items = 4 + (t.next() % 6) as usize;
    let items = match jitter_rng.as_deref_mut() {
        Some(r) => (base_items as i64 + (r.next() % 5) as i64 - 2).max(1) as usize,
        None => base_items,
    };
    let table_h = 0.03 * (items + 1) as f64;
    push(0.05, table_top, 0.9, table_h, "table", &mut jitter_rng);
    for i in 0..items {
        push(
            0.06,
            table_top + 0.03 * (i + 1) as f64,
            0.4,
            0.02,
            "text",
            &mut jitter_rng,
        );
    }
    push(
        0.6,
        table_top + table_h + 0.02,
        0.3,
        0.03,
        "text",
        &mut jitter_rng,
    );
    push(0.05, 0.94, 0.9, 0.03, "footer", &mut jitter_rng);
    for (i, b) in boxes.iter_mut().enumerate() {
        b["reading_order"] = json!(i);
    }
    let n = boxes.len();
    json!({
        "element_count": n, "table_count": 1, "text_block_count": n - 2, "image_count": 0,
        "page_count": 1, "text_density": 0.3, "layout_complexity": 0.5, "column_count": 2,
        "has_header": true, "has_footer": true, "bounding_boxes": boxes
    })
}

fn evaluate_body(features: Value, i: u64) -> Value {
    json!({
        "structural_features": features,
        "extractor_metadata": {"vendor": "aws", "model": "textract-analyze", "version": "1.0",
                               "confidence": 0.93, "latency_ms": 900.0},
        "client_correlation_id": format!("load-{i}"),
        "pipeline_id": "loadgen"
    })
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let key = args.key.clone().unwrap_or_default();

    if args.mode == "evaluate" && args.templates > 0 {
        let started = Instant::now();
        let mut created = 0;
        for v in 1..=args.versions.max(1) {
            for i in 0..args.templates {
                let mut features = layout(args.seed * 1_000_003 + i as u64, None);
                if v > 1 {
                    // A later version: the same form with its boxes moved a little.
                    let mut r = Rng(args.seed ^ ((i as u64) << 8) ^ (v as u64));
                    features = layout(args.seed * 1_000_003 + i as u64, Some(&mut r));
                }
                let body = json!({
                    "template_id": format!("load-{i}"), "version": v,
                    "structural_features": features
                });
                let r = client
                    .post(format!("{}/v1/templates", args.url))
                    .header("x-api-key", &key)
                    .json(&body)
                    .send()
                    .await
                    .expect("register template");
                match r.status().as_u16() {
                    201 => created += 1,
                    409 => {}
                    s => panic!(
                        "registering a template answered {s}: {}",
                        r.text().await.unwrap_or_default()
                    ),
                }
            }
        }
        let total = args.templates * args.versions.max(1);
        eprintln!(
            "template versions: {created} created, {} already there ({:.1}s)",
            total - created,
            started.elapsed().as_secs_f64()
        );
    }
    if args.mode == "review" {
        if args.fill > 0 {
            fill_queue(&args, &client, &key).await;
        }
        if args.duration > 0 {
            review(&args, &client, &key).await;
        }
        return;
    }
    if args.duration == 0 {
        return;
    }

    // Pre-built bodies: 90% documents of registered templates, 10% unseen layouts.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..512u64)
            .map(|i| {
                let mut r = Rng(args.seed ^ (i + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
                let template = if args.templates > 0 && r.unit() < 0.9 {
                    args.seed * 1_000_003 + r.next() % args.templates as u64
                } else {
                    u64::MAX - i
                };
                serde_json::to_vec(&evaluate_body(layout(template, Some(&mut r)), i)).unwrap()
            })
            .collect(),
    );

    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.concurrency {
        let client = client.clone();
        let bodies = bodies.clone();
        let key = key.clone();
        let url = args.url.clone();
        let mode = args.mode.clone();
        let path = args.path.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut statuses = std::collections::BTreeMap::new();
            let mut i = w;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let req = match mode.as_str() {
                    "health" => client.get(format!("{url}/health")),
                    "status" => client
                        .get(format!("{url}/v1/status"))
                        .header("x-api-key", &key),
                    // Authentication and the rate limiter, no dependency checks.
                    "me" => client
                        .get(format!("{url}/v1/auth/me"))
                        .header("x-api-key", &key),
                    "get" => client.get(format!("{url}{path}")).header("x-api-key", &key),
                    _ => client
                        .post(format!("{url}/v1/evaluate"))
                        .header("x-api-key", &key)
                        .header("content-type", "application/json")
                        .body(bodies[i % bodies.len()].clone()),
                };
                let status = match req.send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                latencies.push(t0.elapsed());
                *statuses.entry(status).or_insert(0u64) += 1;
                i += 7;
            }
            (latencies, statuses)
        }));
    }
    let mut all = Vec::new();
    let mut statuses = std::collections::BTreeMap::new();
    for t in tasks {
        let (l, s) = t.await.unwrap();
        all.extend(l);
        for (k, v) in s {
            *statuses.entry(k).or_insert(0u64) += v;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    let mode = match args.mode.as_str() {
        "get" => format!("get {}", args.path),
        m => m.to_string(),
    };
    println!(
        "mode={} concurrency={} duration={:.1}s requests={} rps={:.0} p50={:.3}ms p95={:.3}ms p99={:.3}ms statuses={:?}",
        mode,
        args.concurrency,
        elapsed,
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.95),
        pct(0.99),
        statuses
    );
}

/// The latency at quantile `p` of sorted latencies, in milliseconds (0 when there are none).
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Evaluates `--fill` documents of layouts no template has, 100 a batch, four batches in
/// flight; says how many came back NEW (each of those is a review item).
async fn fill_queue(args: &Args, client: &reqwest::Client, key: &str) {
    let started = Instant::now();
    let batches = args.fill.div_ceil(100);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.clamp(1, 4) {
        let (client, key, next) = (client.clone(), key.to_string(), next.clone());
        let (url, seed, fill) = (args.url.clone(), args.seed, args.fill);
        tasks.push(tokio::spawn(async move {
            let (mut evaluated, mut new) = (0usize, 0usize);
            loop {
                let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if b >= batches {
                    break;
                }
                let documents: Vec<Value> = (b * 100..((b + 1) * 100).min(fill))
                    .map(|i| {
                        let i = i as u64;
                        let mut r = Rng(seed ^ (i + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
                        // A layout seed no registered template uses (those are seed × 1 000 003 + i).
                        evaluate_body(layout(u64::MAX - (1 << 32) - i, Some(&mut r)), i)
                    })
                    .collect();
                let r = client
                    .post(format!("{url}/v1/evaluate/batch"))
                    .header("x-api-key", &key)
                    .json(&json!({ "documents": documents }))
                    .send()
                    .await
                    .expect("evaluate a batch");
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or_default();
                assert_eq!(status, 200, "a fill batch answered {status}: {body}");
                for item in body["results"].as_array().into_iter().flatten() {
                    if item["status"] == 200 {
                        evaluated += 1;
                        new += usize::from(item["evaluation"]["decision"] == "NEW");
                    }
                }
            }
            (evaluated, new)
        }));
    }
    let (mut evaluated, mut new) = (0, 0);
    for t in tasks {
        let (e, n) = t.await.unwrap();
        evaluated += e;
        new += n;
    }
    eprintln!(
        "fill: {evaluated} of {} documents evaluated, {new} NEW ({:.1}s)",
        args.fill,
        started.elapsed().as_secs_f64()
    );
}

/// Reviewers claiming the next item and resolving it as correct until the queue is empty.
async fn review(args: &Args, client: &reqwest::Client, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, key, url) = (client.clone(), key.to_string(), args.url.clone());
        tasks.push(tokio::spawn(async move {
            let (mut claims, mut resolves) = (Vec::new(), Vec::new());
            let mut claim_statuses = std::collections::BTreeMap::new();
            let mut resolve_statuses = std::collections::BTreeMap::new();
            let mut resolved = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let claim = client
                    .post(format!("{url}/v1/review-items/claim-next"))
                    .header("x-api-key", &key)
                    .send()
                    .await;
                let (status, body) = match claim {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        (s, r.bytes().await.unwrap_or_default())
                    }
                    Err(_) => (0, Default::default()),
                };
                claims.push(t0.elapsed());
                *claim_statuses.entry(status).or_insert(0u64) += 1;
                if status == 204 {
                    break; // the queue is empty
                }
                let claimed: Value = serde_json::from_slice(&body).unwrap_or_default();
                let (Some(id), Some(token)) = (
                    claimed["item"]["id"].as_str(),
                    claimed["lease_token"].as_str(),
                ) else {
                    continue;
                };
                let t1 = Instant::now();
                let status = match client
                    .post(format!("{url}/v1/review-items/{id}/resolve"))
                    .header("x-api-key", &key)
                    .json(&json!({ "outcome": "correct", "lease_token": token }))
                    .send()
                    .await
                {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                resolves.push(t1.elapsed());
                *resolve_statuses.entry(status).or_insert(0u64) += 1;
                resolved += u64::from(status == 200);
            }
            (claims, resolves, claim_statuses, resolve_statuses, resolved)
        }));
    }
    let (mut claims, mut resolves) = (Vec::new(), Vec::new());
    let mut claim_statuses = std::collections::BTreeMap::new();
    let mut resolve_statuses = std::collections::BTreeMap::new();
    let mut resolved = 0;
    for t in tasks {
        let (c, r, cs, rs, n) = t.await.unwrap();
        claims.extend(c);
        resolves.extend(r);
        for (k, v) in cs {
            *claim_statuses.entry(k).or_insert(0u64) += v;
        }
        for (k, v) in rs {
            *resolve_statuses.entry(k).or_insert(0u64) += v;
        }
        resolved += n;
    }
    let elapsed = started.elapsed().as_secs_f64();
    claims.sort();
    resolves.sort();
    println!(
        "mode=review concurrency={} duration={:.1}s requests={} items={} items_per_s={:.0} claim_p50={:.3}ms claim_p95={:.3}ms claim_p99={:.3}ms resolve_p50={:.3}ms resolve_p95={:.3}ms resolve_p99={:.3}ms claim_statuses={:?} resolve_statuses={:?}",
        args.concurrency,
        elapsed,
        claims.len() + resolves.len(),
        resolved,
        resolved as f64 / elapsed,
        percentile(&claims, 0.50),
        percentile(&claims, 0.95),
        percentile(&claims, 0.99),
        percentile(&resolves, 0.50),
        percentile(&resolves, 0.95),
        percentile(&resolves, 0.99),
        claim_statuses,
        resolve_statuses
    );
}
