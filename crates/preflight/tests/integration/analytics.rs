//! Analytics and usage over HTTP, both backends: every aggregate checked against a direct
//! computation from the evaluations' own answers, the range rules, tenant isolation, and
//! quotas that stay exact with two replicas racing at the limit.

use std::collections::BTreeMap;
use std::process::Stdio;

use reqwest::Method;
use serde_json::{json, Value};

use crate::evaluation::{
    base_options, doc, empty_extraction, invoice, on_both_backends, second_tenant, start,
    two_column_text, Api, Backend,
};
use crate::support::{
    clean_command, redis_url, require_redis, ServerOptions, TestDatabase, TestServer,
};

on_both_backends!(
    analytics_aggregates_equal_a_direct_computation_and_stay_within_the_tenant,
    quotas_admit_exactly_the_limit_and_refuse_the_rest,
);

const EPS: f64 = 1e-9;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn close(a: &Value, b: f64, what: &str) {
    assert!((f(a) - b).abs() < EPS, "{what}: got {a}, expected {b}");
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The nearest-rank p95, reported as the upper edge of its 0.01 bin (docs/analytics.md).
fn p95_edge(xs: &[f64]) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = (0.95 * s.len() as f64).ceil() as usize;
    let v = s[rank - 1];
    (((v * 100.0).floor().clamp(0.0, 100.0) + 1.0) / 100.0).min(1.0)
}

/// The aggregate fields of a summary or bucket, checked against the evaluations in it.
fn check_aggregate(got: &Value, evals: &[&Value], what: &str) {
    let n = evals.len();
    assert_eq!(got["total"], n, "{what}: {got}");
    let count = |d: &str| evals.iter().filter(|e| e["decision"] == d).count();
    for d in ["MATCH", "REVIEW", "NEW", "REJECT"] {
        assert_eq!(got["decision_breakdown"][d], count(d), "{what} {d}: {got}");
    }
    if n == 0 {
        assert!(
            got["avg_drift"].is_null() && got["p95_reliability"].is_null(),
            "{got}"
        );
        assert!(got["automation_rate"].is_null(), "{got}");
        return;
    }
    let drift: Vec<f64> = evals.iter().map(|e| f(&e["drift_score"])).collect();
    let rel: Vec<f64> = evals.iter().map(|e| f(&e["reliability_score"])).collect();
    close(
        &got["avg_drift"],
        mean(&drift),
        &format!("{what} avg_drift"),
    );
    close(
        &got["p95_drift"],
        p95_edge(&drift),
        &format!("{what} p95_drift"),
    );
    close(
        &got["avg_reliability"],
        mean(&rel),
        &format!("{what} avg_reliability"),
    );
    close(
        &got["p95_reliability"],
        p95_edge(&rel),
        &format!("{what} p95_reliability"),
    );
    let rate = |d: &str| count(d) as f64 / n as f64;
    close(&got["automation_rate"], rate("MATCH"), what);
    close(&got["review_rate"], rate("REVIEW"), what);
    close(&got["new_rate"], rate("NEW"), what);
    close(&got["reject_rate"], rate("REJECT"), what);
    assert_eq!(got["review_load"], count("REVIEW") + count("NEW"), "{what}");
}

fn upgraded(features: Value) -> Value {
    json!({"structural_features": features, "extractor_metadata": {
        "vendor": "aws", "model": "textract", "version": "2025-01", "confidence": 0.91,
        "latency_ms": 1200.0}})
}

fn hour_of(created_at: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(created_at)
        .unwrap()
        .timestamp()
        .div_euclid(3600)
        * 3600
}

async fn analytics_aggregates_equal_a_direct_computation_and_stay_within_the_tenant(
    backend: Backend,
) {
    let ctx = start(backend).await;
    let api = &ctx.api;
    api.create_template(
        &json!({"template_id": "inv", "structural_features": invoice(0.0, 5),
        "extractor": {"vendor": "aws", "model": "textract", "version": "2024-06"}}),
    )
    .await;
    let mut evals = Vec::new();
    for i in 0..8 {
        evals.push(api.evaluate(&doc(invoice(0.002 * i as f64, 5))).await);
    }
    for i in 0..3 {
        evals.push(api.evaluate(&upgraded(invoice(0.003 * i as f64, 5))).await);
    }
    for _ in 0..2 {
        evals.push(api.evaluate(&doc(two_column_text())).await);
    }
    evals.push(api.evaluate(&doc(empty_extraction())).await);
    let decisions: std::collections::BTreeSet<&str> = evals
        .iter()
        .map(|e| e["decision"].as_str().unwrap())
        .collect();
    assert_eq!(
        decisions.len(),
        4,
        "the set holds every decision: {decisions:?}"
    );
    let all: Vec<&Value> = evals.iter().collect();

    // Summary over the default range (the last 30 days, whole hours).
    let summary = api.get("/v1/analytics/summary").await;
    assert_eq!(summary.status, 200, "{summary:?}");
    check_aggregate(&summary.body, &all, "summary");
    assert_eq!(summary.body["timezone"], "UTC");

    // Hourly buckets: each one holds exactly the evaluations created in its hour.
    let from = chrono::Utc::now() - chrono::Duration::hours(3);
    let ts = api
        .get(&format!(
            "/v1/analytics/timeseries?interval=hour&from_ts={}",
            from.timestamp()
        ))
        .await;
    assert_eq!(ts.status, 200, "{ts:?}");
    let buckets = ts.body["buckets"].as_array().unwrap();
    assert!((3..=5).contains(&buckets.len()), "{}", ts.body);
    let mut seen = 0;
    for b in buckets {
        let start = hour_of(b["bucket_start"].as_str().unwrap());
        let inside: Vec<&Value> = evals
            .iter()
            .filter(|e| hour_of(e["created_at"].as_str().unwrap()) == start)
            .collect();
        seen += inside.len();
        check_aggregate(b, &inside, "hour bucket");
    }
    assert_eq!(seen, evals.len());
    let daily = api.get("/v1/analytics/timeseries?tz=%2B05:00").await;
    assert_eq!(daily.status, 200, "{daily:?}");
    assert_eq!(daily.body["interval"], "day");
    assert_eq!(daily.body["timezone"], "+05:00");
    let days = daily.body["buckets"].as_array().unwrap();
    assert!(days.len() == 30 || days.len() == 31, "{}", days.len());
    // Local midnight at +05:00 is 19:00 UTC.
    assert!(
        days[0]["bucket_start"]
            .as_str()
            .unwrap()
            .ends_with("T19:00:00Z"),
        "{}",
        days[0]
    );
    let total: i64 = days.iter().map(|d| d["total"].as_i64().unwrap()).sum();
    assert_eq!(total, evals.len() as i64);

    // Per extractor identity.
    let ex = api.get("/v1/analytics/extractors").await;
    assert_eq!(ex.status, 200, "{ex:?}");
    let rows = ex.body["extractors"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{}", ex.body);
    for (row, version, latency, cost) in [
        (&rows[0], "2024-06", 850.0, Some(0.015)),
        (&rows[1], "2025-01", 1200.0, None),
    ] {
        assert_eq!(row["version"], version);
        let mine: Vec<&Value> = (0..evals.len())
            .filter(|&i| (8..11).contains(&i) == (version == "2025-01"))
            .map(|i| &evals[i])
            .collect();
        assert_eq!(row["count"], mine.len(), "{row}");
        let drift: Vec<f64> = mine.iter().map(|e| f(&e["drift_score"])).collect();
        close(&row["avg_drift"], mean(&drift), "extractor avg_drift");
        close(&row["avg_latency_ms"], latency, "extractor latency");
        match cost {
            Some(c) => close(&row["avg_cost_usd"], c, "extractor cost"),
            None => assert!(row["avg_cost_usd"].is_null(), "{row}"),
        }
        let matched = mine.iter().filter(|e| e["decision"] == "MATCH").count();
        assert_eq!(row["decision_breakdown"]["MATCH"], matched);
    }

    // Per template version.
    let tp = api.get("/v1/analytics/templates").await;
    assert_eq!(tp.status, 200, "{tp:?}");
    let rows = tp.body["templates"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{}", tp.body);
    let of_inv: Vec<&Value> = evals.iter().filter(|e| e["template_id"] == "inv").collect();
    assert_eq!(rows[0]["volume"], of_inv.len());
    assert_eq!(rows[0]["template_version"], 1);
    assert_eq!(rows[0]["change_points"], 0);
    let rel: Vec<f64> = of_inv.iter().map(|e| f(&e["reliability_score"])).collect();
    close(
        &rows[0]["avg_reliability"],
        mean(&rel),
        "template avg_reliability",
    );

    // Calibration: feedback on MATCHes, a REVIEW and a NEW; one verdict changed.
    let by = |d: &str| -> Vec<&Value> { evals.iter().filter(|e| e["decision"] == d).collect() };
    let (matches, reviews, news) = (by("MATCH"), by("REVIEW"), by("NEW"));
    assert!(matches.len() >= 5 && !reviews.is_empty() && !news.is_empty());
    let mut verdicts: Vec<(&Value, &str)> = Vec::new();
    for (i, e) in matches.iter().take(5).enumerate() {
        verdicts.push((e, if i < 4 { "correct" } else { "corrected" }));
    }
    verdicts.push((reviews[0], "rejected"));
    verdicts.push((news[0], "correct"));
    for (e, outcome) in &verdicts {
        let r = api
            .post(
                &format!(
                    "/v1/evaluations/{}/feedback",
                    e["evaluation_id"].as_str().unwrap()
                ),
                &json!({"outcome": outcome}),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    // The first MATCH was wrong after all.
    let r = api
        .post(
            &format!(
                "/v1/evaluations/{}/feedback",
                matches[0]["evaluation_id"].as_str().unwrap()
            ),
            &json!({"outcome": "corrected"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    verdicts[0].1 = "corrected";
    let cal = api.get("/v1/analytics/calibration").await;
    assert_eq!(cal.status, 200, "{cal:?}");
    let c = &cal.body;
    assert_eq!(c["evaluations"], evals.len());
    assert_eq!(c["with_feedback"], verdicts.len());
    close(
        &c["feedback_coverage"],
        verdicts.len() as f64 / evals.len() as f64,
        "coverage",
    );
    assert_eq!(c["automated"]["with_feedback"], 5);
    assert_eq!(c["automated"]["correct"], 3);
    close(&c["automated"]["precision"], 0.6, "precision");
    let (lo, hi) = (f(&c["automated"]["ci_low"]), f(&c["automated"]["ci_high"]));
    assert!(lo < 0.6 && 0.6 < hi && lo > 0.2 && hi < 0.95, "{lo} {hi}");
    assert_eq!(c["errors"], 3);
    assert_eq!(c["missed_errors"], 2);
    close(&c["review_catch_rate"], 1.0 / 3.0, "catch rate");
    let y = |o: &str| if o == "correct" { 1.0 } else { 0.0 };
    let brier = verdicts
        .iter()
        .map(|(e, o)| (f(&e["reliability_score"]) - y(o)).powi(2))
        .sum::<f64>()
        / verdicts.len() as f64;
    close(&c["brier_score"], brier, "brier");
    let mut bands: BTreeMap<usize, (f64, f64, usize)> = BTreeMap::new();
    for (e, o) in &verdicts {
        let r = f(&e["reliability_score"]);
        let b = bands
            .entry(((r * 10.0).floor() as usize).min(9))
            .or_default();
        b.0 += r;
        b.1 += y(o);
        b.2 += 1;
    }
    let ece = bands.values().map(|(r, k, _)| (k - r).abs()).sum::<f64>() / verdicts.len() as f64;
    close(&c["ece"], ece, "ece");
    let shown = c["bands"].as_array().unwrap();
    assert_eq!(shown.len(), 10);
    for (i, band) in shown.iter().enumerate() {
        let (r, k, n) = bands.get(&i).copied().unwrap_or_default();
        assert_eq!(band["count"], n, "band {i}");
        if n > 0 {
            close(&band["accuracy"], k / n as f64, "band accuracy");
            close(&band["mean_reliability"], r / n as f64, "band mean");
        } else {
            assert!(band["accuracy"].is_null());
        }
    }

    // Usage counts every stored evaluation; nothing is enforced by default.
    let usage = api.get("/v1/usage").await;
    assert_eq!(usage.status, 200, "{usage:?}");
    assert_eq!(usage.body["used"], evals.len());
    assert_eq!(usage.body["plan"], "free");
    assert_eq!(usage.body["monthly_limit"], 1000);
    assert_eq!(usage.body["remaining"], 1000 - evals.len());
    assert_eq!(usage.body["enforced"], false);

    // Another tenant sees none of it.
    let other = second_tenant(&ctx).await;
    let s = other.get("/v1/analytics/summary").await;
    assert_eq!(s.status, 200);
    assert_eq!(s.body["total"], 0);
    for (path, list) in [
        ("/v1/analytics/extractors", "extractors"),
        ("/v1/analytics/templates", "templates"),
    ] {
        let r = other.get(path).await;
        assert_eq!(r.body[list], json!([]), "{path}: {r:?}");
    }
    let r = other.get("/v1/analytics/calibration").await;
    assert_eq!(
        (
            r.body["evaluations"].as_i64(),
            r.body["with_feedback"].as_i64()
        ),
        (Some(0), Some(0))
    );
    let r = other.get("/v1/usage").await;
    assert_eq!(r.body["used"], 0);

    // The range rules: 400 problem+json naming the field.
    for (query, field) in [
        (
            "from_ts=2026-12-02T00:00:00Z&to_ts=2026-12-01T00:00:00Z",
            "from_ts",
        ),
        (
            "from_ts=2025-01-01T00:00:00Z&to_ts=2026-12-01T00:00:00Z",
            "to_ts",
        ),
        ("from_ts=yesterday", "from_ts"),
        ("tz=Europe/Berlin", "tz"),
    ] {
        let r = api.get(&format!("/v1/analytics/summary?{query}")).await;
        assert_eq!(r.status, 400, "{query}: {r:?}");
        assert_eq!(r.body["code"], "INVALID_QUERY");
        assert_eq!(r.body["errors"][0]["field"], field, "{query}: {r:?}");
        assert_eq!(r.headers["content-type"], "application/problem+json");
    }
    let r = api
        .get("/v1/analytics/timeseries?interval=hour&from_ts=2026-01-01T00:00:00Z&to_ts=2026-03-01T00:00:00Z")
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.body["errors"][0]["field"], "interval");
    let r = api.get("/v1/analytics/timeseries?interval=week").await;
    assert_eq!(r.status, 400, "{r:?}");
    let r = api.get("/v1/analytics/summary?interval=day").await;
    assert_eq!(r.status, 400, "{r:?}");

    // A key without `read` is refused.
    let r = Api::new(&ctx.server.base, ("x-api-key", "pf_nope".into()))
        .get("/v1/analytics/summary")
        .await;
    assert_eq!(r.status, 401);
}

/// `preflight admin …` against a server's database.
async fn admin(env: &BTreeMap<String, String>, data_dir: &std::path::Path, args: &[&str]) -> Value {
    let mut cmd = clean_command(data_dir);
    cmd.arg("admin").args(args).arg("--json");
    cmd.envs(env.iter())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn quotas_admit_exactly_the_limit_and_refuse_the_rest(backend: Backend) {
    let mut env: BTreeMap<String, String> = base_options().env.into_iter().collect();
    env.insert("USAGE_ENFORCE_QUOTA".into(), "true".into());
    let db = match backend {
        Backend::Embedded => None,
        Backend::Postgres => {
            require_redis().await;
            let db = TestDatabase::create().await;
            env.insert("DATABASE_URL".into(), db.url.clone());
            env.insert("REDIS_URL".into(), redis_url());
            Some(db)
        }
    };
    let options = || ServerOptions {
        env: env.clone().into_iter().collect(),
        wait_healthy: true,
    };
    let first = TestServer::start(options()).await;
    let key = first.first_start_key();
    // Two replicas on one database; embedded has one process by design.
    let second = match backend {
        Backend::Postgres => Some(TestServer::start(options()).await),
        Backend::Embedded => None,
    };
    let apis: Vec<Api> = [Some(&first), second.as_ref()]
        .into_iter()
        .flatten()
        .map(|s| Api::new(&s.base, ("x-api-key", key.clone())))
        .collect();
    let data_dir = first.data_dir.path().to_path_buf();
    let tenants = admin(&env, &data_dir, &["list-tenants"]).await;
    let tenant = tenants["items"][0]["id"].as_str().unwrap().to_string();
    let set = admin(
        &env,
        &data_dir,
        &[
            "set-plan",
            "--tenant",
            &tenant,
            "--plan",
            "free",
            "--monthly-limit",
            "20",
        ],
    )
    .await;
    assert_eq!(
        (set["monthly_limit"].as_i64(), set["used"].as_i64()),
        (Some(20), Some(0))
    );

    // 36 single documents and two batches of 4 race across the replicas at a limit of 20.
    let mut tasks = Vec::new();
    for i in 0..36 {
        let api = apis[i % apis.len()].clone();
        tasks.push(tokio::spawn(async move {
            let r = api
                .post("/v1/evaluate", &doc(invoice(0.001 * i as f64, 5)))
                .await;
            vec![(
                r.status.as_u16(),
                r.body,
                r.headers.get("retry-after").is_some(),
            )]
        }));
    }
    for b in 0..2 {
        let api = apis[b % apis.len()].clone();
        tasks.push(tokio::spawn(async move {
            let docs: Vec<Value> = (0..4).map(|_| doc(two_column_text())).collect();
            let r = api
                .post("/v1/evaluate/batch", &json!({"documents": docs}))
                .await;
            assert_eq!(r.status, 200, "{r:?}");
            r.body["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| {
                    let status = item["status"].as_u64().unwrap() as u16;
                    let body = if status == 200 {
                        item["evaluation"].clone()
                    } else {
                        item["error"].clone()
                    };
                    (status, body, status == 429)
                })
                .collect()
        }));
    }
    let mut stored = 0;
    let mut refused = 0;
    for t in tasks {
        for (status, body, retry_after) in t.await.unwrap() {
            match status {
                200 => stored += 1,
                429 => {
                    refused += 1;
                    assert_eq!(body["code"], "QUOTA_EXCEEDED", "{body}");
                    assert_eq!(body["plan"], "free");
                    assert_eq!(body["limit"], 20);
                    assert_eq!(body["used"], 20);
                    assert!(
                        body["period_end"].as_str().unwrap().ends_with("T00:00:00Z"),
                        "{body}"
                    );
                    assert!(retry_after, "a refused single call says when to retry");
                }
                other => panic!("unexpected status {other}: {body}"),
            }
        }
    }
    assert_eq!((stored, refused), (20, 24));
    let usage = apis[0].get("/v1/usage").await;
    assert_eq!(usage.body["used"], 20, "{usage:?}");
    assert_eq!(usage.body["remaining"], 0);
    assert_eq!(usage.body["enforced"], true);
    assert_eq!(usage.body["limit_overridden"], true);
    assert_eq!(apis[0].all_evaluations("").await.len(), 20);

    // A keyed request refused for the quota is decided afresh once there is room.
    let keyed = |api: &Api| {
        let api = api.clone();
        async move {
            api.send(
                Method::POST,
                "/v1/evaluate",
                Some(&doc(invoice(0.0, 5))),
                &[("idempotency-key", "quota-retry-1")],
            )
            .await
        }
    };
    let r = keyed(&apis[0]).await;
    assert_eq!(r.status, 429, "{r:?}");
    admin(
        &env,
        &data_dir,
        &["set-plan", "--tenant", &tenant, "--plan", "developer"],
    )
    .await;
    let r = keyed(apis.last().unwrap()).await;
    assert_eq!(r.status, 200, "{r:?}");
    let again = keyed(&apis[0]).await;
    assert_eq!(
        again.body["evaluation_id"], r.body["evaluation_id"],
        "the retry replays it"
    );
    let usage = apis[0].get("/v1/usage").await;
    assert_eq!(
        (
            usage.body["plan"].as_str(),
            usage.body["monthly_limit"].as_i64(),
            usage.body["used"].as_i64()
        ),
        (Some("developer"), Some(10_000), Some(21))
    );
    // The plan change is in the audit trail.
    let audit = apis[0].get("/v1/audit-logs?action=plan_changed").await;
    assert_eq!(
        audit.body["items"].as_array().unwrap().len(),
        2,
        "{audit:?}"
    );
    drop(second);
    drop(first);
    drop(db);
}
