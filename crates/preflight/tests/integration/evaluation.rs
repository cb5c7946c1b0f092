//! The evaluation API end to end on the real binary: templates, decisions, feedback,
//! idempotency, batches, validation, tenant isolation, list filters, a database outage under
//! load and template sync between two instances.
//!
//! Every scenario that does not need a fault or a second instance runs on both backends:
//! embedded SQLite, and PostgreSQL with Redis. The layouts are built here as realistic
//! metadata (an invoice with header, key/value rows, line items and footer; a shifted copy
//! with more line items; an unrelated two-column text page; an empty extraction).

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::relay::Relay;
use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// Layouts

#[derive(Clone, Copy)]
struct Bx {
    t: &'static str,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

fn bx(t: &'static str, x: f64, y: f64, w: f64, h: f64) -> Bx {
    Bx { t, x, y, w, h }
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// Wire `structural_features` with counts consistent with the boxes.
fn features(boxes: &[Bx], columns: i64) -> Value {
    let is_text = |t: &str| matches!(t, "title" | "text" | "key" | "value" | "footer" | "header");
    let bounding_boxes: Vec<Value> = boxes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({
                "x": round4(b.x), "y": round4(b.y), "width": round4(b.w), "height": round4(b.h),
                "element_type": b.t, "confidence": 0.96, "reading_order": i,
            })
        })
        .collect();
    let density: f64 = boxes
        .iter()
        .filter(|b| is_text(b.t))
        .map(|b| b.w * b.h)
        .sum();
    json!({
        "element_count": boxes.len(),
        "table_count": boxes.iter().filter(|b| b.t == "table").count(),
        "text_block_count": boxes.iter().filter(|b| is_text(b.t)).count(),
        "image_count": boxes.iter().filter(|b| b.t == "figure").count(),
        "page_count": 1,
        "text_density": round4(density.min(1.0)),
        "layout_complexity": if columns > 1 { 0.35 } else { 0.62 },
        "column_count": columns,
        "has_header": true,
        "has_footer": true,
        "bounding_boxes": bounding_boxes,
    })
}

/// An invoice: logo and title, two key/value blocks, a line-item table, totals and a footer
/// (53 boxes with five line items). `jitter` shifts every box a little; `items` is the
/// number of line items.
pub(crate) fn invoice(jitter: f64, items: usize) -> Value {
    let mut b = vec![
        bx("title", 0.05, 0.04, 0.40, 0.05),
        bx("figure", 0.70, 0.03, 0.25, 0.08),
    ];
    for i in 0..6 {
        let y = 0.14 + i as f64 * 0.035;
        b.push(bx("key", 0.05, y, 0.16, 0.025));
        b.push(bx("value", 0.23, y, 0.24, 0.025));
    }
    for i in 0..3 {
        let y = 0.14 + i as f64 * 0.035;
        b.push(bx("key", 0.55, y, 0.14, 0.025));
        b.push(bx("value", 0.71, y, 0.22, 0.025));
    }
    b.push(bx("table", 0.05, 0.40, 0.90, 0.36));
    let cols = [(0.06, 0.44), (0.51, 0.12), (0.64, 0.14), (0.79, 0.15)];
    for (x, w) in cols {
        b.push(bx("table_cell", x, 0.41, w, 0.03));
    }
    for r in 0..items {
        let y = 0.45 + r as f64 * 0.04;
        for (x, w) in cols {
            b.push(bx("table_cell", x, y, w, 0.03));
        }
    }
    for i in 0..3 {
        let y = 0.79 + i as f64 * 0.035;
        b.push(bx("key", 0.60, y, 0.15, 0.025));
        b.push(bx("value", 0.77, y, 0.17, 0.025));
    }
    b.push(bx("footer", 0.05, 0.93, 0.90, 0.03));
    b.push(bx("page_number", 0.90, 0.965, 0.05, 0.02));
    if jitter > 0.0 {
        for (i, bb) in b.iter_mut().enumerate() {
            let dx = (((i * 37 + 11) % 21) as f64 / 10.0 - 1.0) * jitter;
            let dy = (((i * 53 + 5) % 17) as f64 / 8.0 - 1.0) * jitter;
            bb.x = (bb.x + dx).clamp(0.0, 1.0 - bb.w);
            bb.y = (bb.y + dy).clamp(0.0, 1.0 - bb.h);
        }
    }
    features(&b, 1)
}

/// A dense two-column article page: nothing like an invoice.
pub(crate) fn two_column_text() -> Value {
    let mut b = vec![bx("title", 0.08, 0.05, 0.84, 0.06)];
    for col in 0..2 {
        let x = 0.08 + col as f64 * 0.44;
        for line in 0..20 {
            b.push(bx("text", x, 0.14 + line as f64 * 0.04, 0.40, 0.032));
        }
    }
    b.push(bx("page_number", 0.48, 0.96, 0.04, 0.02));
    features(&b, 2)
}

/// An extraction that found nothing.
pub(crate) fn empty_extraction() -> Value {
    json!({
        "element_count": 0, "table_count": 0, "text_block_count": 0, "image_count": 0,
        "page_count": 1, "text_density": 0.0, "layout_complexity": 0.0, "column_count": 0,
        "has_header": false, "has_footer": false, "bounding_boxes": [],
    })
}

pub(crate) fn extractor() -> Value {
    json!({"vendor": "aws", "model": "textract", "version": "2024-06", "confidence": 0.97,
           "latency_ms": 850.0, "cost_usd": 0.015})
}

pub(crate) fn doc(features: Value) -> Value {
    json!({"structural_features": features, "extractor_metadata": extractor()})
}

fn doc_tagged(features: Value, correlation: &str, pipeline: &str) -> Value {
    json!({"structural_features": features, "extractor_metadata": extractor(),
           "client_correlation_id": correlation, "pipeline_id": pipeline})
}

// ---------------------------------------------------------------------------------------
// Harness

pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Value,
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

#[derive(Clone)]
pub(crate) struct Api {
    base: String,
    auth: (&'static str, String),
    client: reqwest::Client,
}

impl Api {
    pub(crate) fn new(base: &str, auth: (&'static str, String)) -> Api {
        Api {
            base: base.to_string(),
            auth,
            client: http_client(),
        }
    }

    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .header(self.auth.0, &self.auth.1);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None, &[]).await
    }
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::POST, path, Some(body), &[]).await
    }
    pub(crate) async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::PUT, path, Some(body), &[]).await
    }
    pub(crate) async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::PATCH, path, Some(body), &[]).await
    }
    pub(crate) async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, None, &[]).await
    }

    /// A new API key of this caller's tenant with `scopes`, as a client of its own.
    pub(crate) async fn minted(&self, scopes: &[&str]) -> Api {
        let r = self
            .post(
                "/v1/api-keys",
                &json!({"name": format!("{} key", scopes.join("+")), "scopes": scopes}),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        let key = r.body["key"].as_str().unwrap().to_string();
        Api::new(&self.base, ("x-api-key", key))
    }

    /// Evaluates one document and expects a decision.
    pub(crate) async fn evaluate(&self, body: &Value) -> Value {
        let r = self.post("/v1/evaluate", body).await;
        assert_eq!(r.status, 200, "{r:?}");
        r.body
    }

    pub(crate) async fn create_template(&self, body: &Value) -> Value {
        let r = self.post("/v1/templates", body).await;
        assert_eq!(r.status, 201, "{r:?}");
        r.body
    }

    /// Every evaluation matching `query`, following cursors.
    pub(crate) async fn all_evaluations(&self, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/evaluations?limit=1000&{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let r = self.get(&path).await;
            assert_eq!(r.status, 200, "{r:?}");
            out.extend(r.body["items"].as_array().unwrap().iter().cloned());
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    Embedded,
    Postgres,
}

/// A server with the first tenant's admin key. Fields drop in order: server, then database.
pub(crate) struct Ctx {
    pub(crate) server: TestServer,
    pub(crate) api: Api,
    _db: Option<TestDatabase>,
}

pub(crate) fn base_options() -> ServerOptions {
    ServerOptions::default()
        .with("RATE_LIMIT_UNAUTHENTICATED", "10000")
        .with("RATE_LIMIT_PER_MINUTE", "1000000")
        .with("JWT_SECRET", test_secret())
        .with("API_KEY_SALT", test_secret())
}

pub(crate) async fn start(backend: Backend) -> Ctx {
    start_with(backend, base_options()).await
}

/// [`start`] with other settings.
pub(crate) async fn start_with(backend: Backend, base: ServerOptions) -> Ctx {
    let (options, db) = match backend {
        Backend::Embedded => (base, None),
        Backend::Postgres => {
            require_redis().await;
            let db = TestDatabase::create().await;
            (
                base.with("DATABASE_URL", db.url.clone())
                    .with("REDIS_URL", redis_url()),
                Some(db),
            )
        }
    };
    let server = TestServer::start(options).await;
    let key = server.first_start_key();
    let api = Api::new(&server.base, ("x-api-key", key));
    Ctx {
        server,
        api,
        _db: db,
    }
}

/// A second tenant through self-service signup, acting with its admin's bearer token.
pub(crate) async fn second_tenant(ctx: &Ctx) -> Api {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let r = reqwest::Client::new()
        .post(ctx.server.url("/v1/auth/signup"))
        .json(&json!({
            "tenant_name": format!("Other Co {id}"),
            "email": format!("admin-{id}@example.com"),
            "password": "correct horse battery staple 42",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    let token = body["access_token"].as_str().expect("access_token");
    Api::new(
        &ctx.server.base,
        ("authorization", format!("Bearer {token}")),
    )
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn embedded() {
                super::$name(super::Backend::Embedded).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

pub(crate) use on_both_backends;

on_both_backends!(
    decisions_follow_the_registered_templates,
    feedback_moves_statistics_once_per_change_and_reliability_follows,
    idempotent_retries_store_one_row,
    batch_answers_every_document_in_order,
    validation_errors_list_every_bad_field,
    tenants_never_see_each_other,
    template_versions_and_status_transitions,
    evaluation_list_filters_and_cursor_pages,
    a_lasting_change_is_an_alert_in_the_answer_that_confirms_it,
    the_export_holds_the_tenants_versions_with_their_exemplars,
);

/// A document whose extractor reports `confidence` for the whole page.
pub(crate) fn doc_with_confidence(features: Value, confidence: f64, correlation: &str) -> Value {
    let mut extractor = extractor();
    extractor["confidence"] = json!(confidence);
    json!({"structural_features": features, "extractor_metadata": extractor,
           "client_correlation_id": correlation})
}

fn codes(evaluation: &Value) -> Vec<String> {
    evaluation["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Scenarios on both backends

async fn decisions_follow_the_registered_templates(backend: Backend) {
    let ctx = start(backend).await;
    let api = &ctx.api;
    let created = api
        .create_template(&json!({
            "template_id": "acme-invoice", "name": "ACME invoice",
            "structural_features": invoice(0.0, 5),
            "correction_rules": [{"field": "total", "rule": "sum_of_line_items", "parameters": {"tolerance": 0.01}}],
        }))
        .await;
    assert_eq!(created["template_id"], "acme-invoice");
    assert_eq!(created["version"], 1);
    assert_eq!(created["status"], "active");
    assert_eq!(created["exemplar_count"], 1);
    assert_eq!(created["baseline_reliability"], 0.9);
    assert!(
        created.get("exemplars").is_none(),
        "exemplars only on request"
    );
    let tv = created["id"].as_str().unwrap().to_string();

    // The very layout it was registered from.
    let same = api.evaluate(&doc(invoice(0.0, 5))).await;
    assert_eq!(same["decision"], "MATCH", "{same}");
    assert_eq!(same["match_confidence"], 1.0);
    assert_eq!(same["template_id"], "acme-invoice");
    assert_eq!(same["template_version_id"], tv.as_str());
    assert_eq!(same["template_version"], 1);
    assert_eq!(same["correction_rules"][0]["rule"], "sum_of_line_items");
    assert!(same["reliability_score"].as_f64().unwrap() > 0.5);
    for field in [
        "evaluation_id",
        "replay_hash",
        "engine_version",
        "layout_fingerprint",
        "processing_time_ms",
        "created_at",
        "drift_components",
        "warnings",
        "alerts",
    ] {
        assert!(same.get(field).is_some(), "{field} missing: {same}");
    }

    // Shifted boxes and two more line items: still this template, possibly for review.
    let shifted = api.evaluate(&doc(invoice(0.006, 7))).await;
    let decision = shifted["decision"].as_str().unwrap();
    assert!(
        decision == "MATCH" || decision == "REVIEW",
        "a perturbed copy is {decision}: {shifted}"
    );
    assert_eq!(shifted["template_version_id"], tv.as_str());
    if decision == "REVIEW" {
        assert!(!codes(&shifted).is_empty(), "REVIEW without reasons");
    }
    assert!(shifted["match_confidence"].as_f64().unwrap() < 1.0);

    let unrelated = api.evaluate(&doc(two_column_text())).await;
    assert_eq!(unrelated["decision"], "NEW", "{unrelated}");
    assert!(unrelated["template_version_id"].is_null());

    let broken = api.evaluate(&doc(empty_extraction())).await;
    assert_eq!(broken["decision"], "REJECT", "{broken}");
    assert!(
        codes(&broken).contains(&"EMPTY_EXTRACTION".to_string()),
        "{broken}"
    );
    assert_eq!(broken["reliability_score"], 0.0);

    // An empty extraction cannot become a template.
    let refused = api
        .post(
            &format!(
                "/v1/templates/from-evaluation/{}",
                broken["evaluation_id"].as_str().unwrap()
            ),
            &json!({"template_id": "nothing"}),
        )
        .await;
    assert_eq!(refused.status, 422, "{refused:?}");

    // Promote the NEW layout; the same layout now matches it.
    let promoted = api
        .post(
            &format!(
                "/v1/templates/from-evaluation/{}",
                unrelated["evaluation_id"].as_str().unwrap()
            ),
            &json!({"template_id": "journal-article", "name": "Two-column article"}),
        )
        .await;
    assert_eq!(promoted.status, 201, "{promoted:?}");
    assert_eq!(promoted.body["version"], 1);
    let again = api.evaluate(&doc(two_column_text())).await;
    assert_eq!(again["decision"], "MATCH", "{again}");
    assert_eq!(again["template_id"], "journal-article");
    assert_eq!(again["template_version_id"], promoted.body["id"]);

    // Lookups by version id, by template_id, by template_id and version.
    for path in [
        format!("/v1/templates/{tv}"),
        "/v1/templates/acme-invoice".to_string(),
        "/v1/templates/acme-invoice?version=1".to_string(),
    ] {
        let r = api.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.body["id"], tv.as_str());
    }
    assert_eq!(
        api.get("/v1/templates/acme-invoice?version=2").await.status,
        404
    );
    let with = api
        .get(&format!("/v1/templates/{tv}?include=exemplars"))
        .await;
    assert_eq!(with.body["exemplars"].as_array().unwrap().len(), 1);
    assert_eq!(
        with.body["exemplars"][0]["element_count"],
        invoice(0.0, 5)["element_count"]
    );

    // Drift: every number comes from the evaluations matched to this version.
    let matched: Vec<Value> = api
        .all_evaluations("template_id=acme-invoice")
        .await
        .into_iter()
        .filter(|e| e["template_version_id"] == tv.as_str())
        .collect();
    assert_eq!(matched.len(), 2, "the exact and the shifted copy");
    let drift = api.get(&format!("/v1/templates/{tv}/drift")).await;
    assert_eq!(drift.status, 200, "{drift:?}");
    let d = &drift.body;
    assert_eq!(d["template_version_id"], tv.as_str());
    assert_eq!(d["evaluation_count"], 2);
    assert_eq!(d["detector"]["observations"], 2);
    let buckets = d["buckets"].as_array().unwrap();
    let count: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(count, 2);
    let weighted = |field: &str| -> f64 {
        buckets
            .iter()
            .map(|b| b["count"].as_f64().unwrap() * b[field].as_f64().unwrap())
            .sum::<f64>()
            / count as f64
    };
    let mean = |field: &str| -> f64 {
        matched
            .iter()
            .map(|e| e[field].as_f64().unwrap())
            .sum::<f64>()
            / matched.len() as f64
    };
    assert!((weighted("mean_reliability") - mean("reliability_score")).abs() < 1e-9);
    assert!((weighted("mean_drift") - mean("drift_score")).abs() < 1e-9);
    let hourly = api
        .get("/v1/templates/acme-invoice/drift?bucket=hour")
        .await;
    assert_eq!(hourly.status, 200);
    assert_eq!(hourly.body["bucket"], "hour");
    let hourly_count: u64 = hourly.body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(hourly_count, 2);
    let bad = api
        .get(&format!("/v1/templates/{tv}/drift?bucket=week"))
        .await;
    assert_eq!(bad.status, 422);
}

fn stats(template: &Value) -> (u64, u64, u64) {
    let s = &template["outcome_stats"]["aws/textract"];
    (
        s["correct"].as_u64().unwrap_or(0),
        s["corrected"].as_u64().unwrap_or(0),
        s["rejected"].as_u64().unwrap_or(0),
    )
}

async fn a_lasting_change_is_an_alert_in_the_answer_that_confirms_it(backend: Backend) {
    let ctx = start(backend).await;
    let api = &ctx.api;
    let created = api
        .create_template(
            &json!({"template_id": "drifting", "structural_features": invoice(0.0, 5)}),
        )
        .await;
    let tv = created["id"].as_str().unwrap().to_string();
    // A steady baseline, then an extractor whose confidence dropped and stays low.
    for i in 0..40 {
        let steady = 0.95 + f64::from(i % 3) * 0.01;
        let answer = api
            .evaluate(&doc_with_confidence(invoice(0.0, 5), steady, "steady"))
            .await;
        assert_eq!(answer["alerts"], json!([]), "{answer}");
    }
    let mut confirming = None;
    for i in 0..30 {
        let body = doc_with_confidence(invoice(0.0, 5), 0.55, &format!("low-{i}"));
        let key = format!("drift-{i}");
        let r = api
            .send(
                Method::POST,
                "/v1/evaluate",
                Some(&body),
                &[("idempotency-key", key.as_str())],
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        if r.body["alerts"].as_array().unwrap().is_empty() {
            continue;
        }
        confirming = Some((body, key, r.body));
        break;
    }
    let (body, key, answer) = confirming.expect("the drop was never confirmed as a change point");
    let alert = &answer["alerts"][0];
    assert_eq!(alert["type"], "TEMPLATE_CHANGE_POINT", "{answer}");
    assert_eq!(alert["series"], "extractor_confidence", "{answer}");
    assert_eq!(alert["template_id"], "drifting");
    assert_eq!(alert["template_version_id"], tv.as_str());
    assert!(alert["observation"].as_u64().unwrap() > 40, "{alert}");
    assert!(alert["recent_mean"].as_f64().unwrap() < alert["baseline_mean"].as_f64().unwrap());

    // The answer is stored as sent: read back, and replayed for the same key.
    let id = answer["evaluation_id"].as_str().unwrap();
    let stored = api.get(&format!("/v1/evaluations/{id}")).await;
    assert_eq!(stored.status, 200, "{stored:?}");
    assert_eq!(stored.body["alerts"], answer["alerts"]);
    let replay = api
        .send(
            Method::POST,
            "/v1/evaluate",
            Some(&body),
            &[("idempotency-key", key.as_str())],
        )
        .await;
    assert_eq!(
        replay.body, answer,
        "a replay answers exactly what was sent"
    );

    // And the drift report names the same change.
    let drift = api.get(&format!("/v1/templates/{tv}/drift")).await;
    let points = drift.body["change_points"].as_array().unwrap();
    assert_eq!(points.len(), 1, "{drift:?}");
    assert_eq!(points[0]["evaluation_id"], id);
    assert_eq!(points[0]["observation"], alert["observation"]);

    // And the built-in change-point rule stored it as an alert, raised by that evaluation.
    let stored = api.get("/v1/alerts?metric=change_point").await;
    let items = stored.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{stored:?}");
    assert_eq!(items[0]["evaluation_id"], id);
    assert_eq!(items[0]["template_version_id"], tv.as_str());
    assert_eq!(items[0]["details"]["series"], alert["series"]);
    assert_eq!(items[0]["message"], alert["message"]);
}

async fn the_export_holds_the_tenants_versions_with_their_exemplars(backend: Backend) {
    let ctx = start(backend).await;
    let api = &ctx.api;
    let invoice_v1 = api
        .create_template(
            &json!({"template_id": "inv", "exemplars": [invoice(0.0, 5), invoice(0.004, 6)]}),
        )
        .await;
    let letter = api
        .create_template(&json!({"template_id": "letter", "status": "draft",
                                 "structural_features": two_column_text()}))
        .await;
    let invoice_v2 = api
        .create_template(&json!({"template_id": "inv", "structural_features": invoice(0.0, 7)}))
        .await;
    let export = api.get("/v1/templates/export").await;
    assert_eq!(export.status, 200, "{export:?}");
    assert_eq!(export.body["format"], "preflight-templates");
    assert_eq!(export.body["version"], 1);
    let items = export.body["templates"].as_array().unwrap();
    let ids: Vec<&str> = items.iter().map(|t| t["id"].as_str().unwrap()).collect();
    let created: Vec<&str> = [&invoice_v1, &letter, &invoice_v2]
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, created, "every version, in creation order");
    for item in items {
        let one = api
            .get(&format!(
                "/v1/templates/{}?include=exemplars",
                item["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(&one.body, item, "an item is the version with its exemplars");
    }
    assert_eq!(items[0]["exemplars"].as_array().unwrap().len(), 2);

    let drafts = api.get("/v1/templates/export?status=draft").await;
    let drafts = drafts.body["templates"].as_array().unwrap();
    assert_eq!(drafts.len(), 1);
    assert_eq!(drafts[0]["template_id"], "letter");
    let one_template = api.get("/v1/templates/export?template_id=inv").await;
    assert_eq!(one_template.body["templates"].as_array().unwrap().len(), 2);
    let bad = api.get("/v1/templates/export?status=live").await;
    assert_eq!(bad.status, 422, "{bad:?}");

    // Another tenant exports only its own (nothing).
    let other = second_tenant(&ctx).await;
    let theirs = other.get("/v1/templates/export").await;
    assert_eq!(theirs.status, 200, "{theirs:?}");
    assert_eq!(theirs.body["templates"], json!([]));
}

async fn feedback_moves_statistics_once_per_change_and_reliability_follows(backend: Backend) {
    let ctx = start(backend).await;
    let api = &ctx.api;
    let t = api
        .create_template(&json!({"template_id": "inv", "structural_features": invoice(0.0, 5)}))
        .await;
    let path = format!("/v1/templates/{}", t["id"].as_str().unwrap());
    let mut ids = Vec::new();
    let mut before = Vec::new();
    for _ in 0..8 {
        let e = api.evaluate(&doc(invoice(0.0, 5))).await;
        assert_eq!(e["decision"], "MATCH");
        before.push(e["reliability_score"].as_f64().unwrap());
        ids.push(e["evaluation_id"].as_str().unwrap().to_string());
    }
    let baseline = before[0];
    assert!(
        before.iter().all(|r| (r - baseline).abs() < 1e-12),
        "no feedback yet, so every reliability is the same: {before:?}"
    );
    let feedback = |id: &str| format!("/v1/evaluations/{id}/feedback");

    let r = api
        .post(
            &feedback(&ids[0]),
            &json!({"outcome": "correct", "review_seconds": 12.5, "source": "human-review"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["statistics_updated"], true);
    assert_eq!(stats(&api.get(&path).await.body), (1, 0, 0));

    // The same outcome again changes nothing.
    let r = api
        .post(&feedback(&ids[0]), &json!({"outcome": "correct"}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["statistics_updated"], false);
    assert_eq!(r.body["previous_outcome"], "correct");
    assert_eq!(stats(&api.get(&path).await.body), (1, 0, 0));

    // A changed outcome moves the count from one bucket to the other, once.
    let r = api
        .post(
            &feedback(&ids[0]),
            &json!({"outcome": "corrected", "field_error_count": 2}),
        )
        .await;
    assert_eq!(r.body["statistics_updated"], true);
    assert_eq!(stats(&api.get(&path).await.body), (0, 1, 0));
    let r = api
        .post(&feedback(&ids[0]), &json!({"outcome": "rejected"}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(stats(&api.get(&path).await.body), (0, 0, 1));

    // Concurrent identical feedback on one evaluation still counts once.
    let (path1, rejected) = (feedback(&ids[1]), json!({"outcome": "rejected"}));
    let posts = (0..6).map(|_| api.post(&path1, &rejected));
    for r in futures::future::join_all(posts).await {
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert_eq!(stats(&api.get(&path).await.body), (0, 0, 2));

    for id in &ids[2..] {
        let r = api
            .post(&feedback(id), &json!({"outcome": "rejected"}))
            .await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert_eq!(stats(&api.get(&path).await.body), (0, 0, 8));
    let shown = api.get(&format!("/v1/evaluations/{}", ids[0])).await;
    assert_eq!(shown.body["feedback"]["outcome"], "rejected");

    let after = api.evaluate(&doc(invoice(0.0, 5))).await;
    let reliability = after["reliability_score"].as_f64().unwrap();
    assert!(
        reliability < baseline - 0.05,
        "eight rejections should lower reliability: {baseline} -> {reliability}"
    );

    let bad = api
        .post(&feedback(&ids[0]), &json!({"outcome": "great"}))
        .await;
    assert_eq!(bad.status, 422);
    let missing = api
        .post(
            &feedback(&uuid::Uuid::new_v4().to_string()),
            &json!({"outcome": "correct"}),
        )
        .await;
    assert_eq!(missing.status, 404);
}

async fn idempotent_retries_store_one_row(backend: Backend) {
    let ctx = start(backend).await;
    let api = &ctx.api;
    api.create_template(&json!({"template_id": "inv", "structural_features": invoice(0.0, 5)}))
        .await;
    let body = doc_tagged(invoice(0.0, 5), "corr-idem-1", "p");
    let key = [("idempotency-key", "retry-0001")];
    let first = api
        .send(Method::POST, "/v1/evaluate", Some(&body), &key)
        .await;
    assert_eq!(first.status, 200, "{first:?}");
    let retry = api
        .send(Method::POST, "/v1/evaluate", Some(&body), &key)
        .await;
    assert_eq!(retry.status, 200, "{retry:?}");
    assert_eq!(retry.body["evaluation_id"], first.body["evaluation_id"]);
    assert_eq!(retry.body["decision"], first.body["decision"]);
    let rows = api.all_evaluations("correlation_id=corr-idem-1").await;
    assert_eq!(rows.len(), 1, "{rows:?}");

    // The same key with another body is refused, and stores nothing.
    let other = doc_tagged(invoice(0.0, 5), "corr-idem-2", "p");
    let refused = api
        .send(Method::POST, "/v1/evaluate", Some(&other), &key)
        .await;
    assert_eq!(refused.status, 422, "{refused:?}");
    assert!(api
        .all_evaluations("correlation_id=corr-idem-2")
        .await
        .is_empty());

    // Concurrent retries of one request: one row, one answer.
    let body = doc_tagged(invoice(0.0, 5), "corr-idem-3", "p");
    let key = [("idempotency-key", "retry-0003")];
    let sends = (0..8).map(|_| api.send(Method::POST, "/v1/evaluate", Some(&body), &key));
    let answers = futures::future::join_all(sends).await;
    let ids: HashSet<String> = answers
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{r:?}");
            r.body["evaluation_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(
        api.all_evaluations("correlation_id=corr-idem-3")
            .await
            .len(),
        1
    );

    // Templates too: a retried creation is one version.
    let create = json!({"template_id": "idem-tpl", "structural_features": two_column_text()});
    let key = [("idempotency-key", "tpl-0001")];
    let a = api
        .send(Method::POST, "/v1/templates", Some(&create), &key)
        .await;
    let b = api
        .send(Method::POST, "/v1/templates", Some(&create), &key)
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(b.status, 201, "{b:?}");
    assert_eq!(a.body["id"], b.body["id"]);
    let listed = api.get("/v1/templates?template_id=idem-tpl").await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    let changed = json!({"template_id": "idem-tpl", "structural_features": invoice(0.0, 4)});
    let refused = api
        .send(Method::POST, "/v1/templates", Some(&changed), &key)
        .await;
    assert_eq!(refused.status, 422, "{refused:?}");

    // An exemplar added with a key is added once, whatever the retries.
    let tpl = a.body["id"].as_str().unwrap().to_string();
    let exemplar = json!({"structural_features": two_column_text()});
    let key = [("idempotency-key", "exemplar-0001")];
    let path = format!("/v1/templates/{tpl}/exemplars");
    let first = api.send(Method::POST, &path, Some(&exemplar), &key).await;
    let again = api.send(Method::POST, &path, Some(&exemplar), &key).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(again.status, 201, "{again:?}");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let current = api.get(&format!("/v1/templates/{tpl}")).await;
    assert_eq!(current.body["exemplar_count"], 2, "{current:?}");

    // A keyed batch with one bad document: the retry answers the stored documents with
    // their first answers (same ids, no new rows) and decides only the bad one again.
    let mut documents: Vec<Value> = (0..4)
        .map(|i| doc_tagged(invoice(0.0, 5), &format!("corr-batch-idem-{i}"), "p"))
        .collect();
    documents[2] = json!({"structural_features": {"element_count": -1}, "extractor_metadata": {}});
    let batch = json!({"documents": documents});
    let key = [("idempotency-key", "batch-0001")];
    let first = api
        .send(Method::POST, "/v1/evaluate/batch", Some(&batch), &key)
        .await;
    let retry = api
        .send(Method::POST, "/v1/evaluate/batch", Some(&batch), &key)
        .await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(retry.status, 200, "{retry:?}");
    for i in [0usize, 1, 3] {
        assert_eq!(
            first.body["results"][i]["evaluation"]["evaluation_id"],
            retry.body["results"][i]["evaluation"]["evaluation_id"],
            "document {i}"
        );
        let rows = api
            .all_evaluations(&format!("correlation_id=corr-batch-idem-{i}"))
            .await;
        assert_eq!(rows.len(), 1, "document {i}: {rows:?}");
    }
    assert_eq!(retry.body["results"][2]["status"], 422);
    // Reusing the key for a different batch is refused.
    let other = json!({"documents": [doc_tagged(invoice(0.0, 6), "corr-batch-other", "p")]});
    let refused = api
        .send(Method::POST, "/v1/evaluate/batch", Some(&other), &key)
        .await;
    assert_eq!(refused.status, 422, "{refused:?}");
}

async fn batch_answers_every_document_in_order(backend: Backend) {
    let ctx = start(backend).await;
    let api = &ctx.api;
    api.create_template(&json!({"template_id": "inv", "structural_features": invoice(0.0, 5)}))
        .await;
    let kind = |i: usize| i % 4;
    let documents: Vec<Value> = (0..100)
        .map(|i| {
            let mut d = match kind(i) {
                0 => doc(invoice(0.0, 5)),
                1 => doc(two_column_text()),
                2 => doc(empty_extraction()),
                _ => doc(invoice(0.0, 5)),
            };
            d["client_correlation_id"] = json!(format!("batch-{i}"));
            if i == 97 {
                // One invalid document fails alone.
                d["extractor_metadata"]["confidence"] = json!(7.5);
            }
            d
        })
        .collect();
    let r = api
        .post("/v1/evaluate/batch", &json!({ "documents": documents }))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let results = r.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 100);
    let mut ids = HashSet::new();
    for (i, item) in results.iter().enumerate() {
        assert_eq!(item["index"], i);
        if i == 97 {
            assert_eq!(item["status"], 422, "{item}");
            let fields: Vec<&str> = item["error"]["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["field"].as_str().unwrap())
                .collect();
            assert!(
                fields
                    .iter()
                    .all(|f| f.starts_with("documents[97].extractor_metadata")),
                "{fields:?}"
            );
            continue;
        }
        assert_eq!(item["status"], 200, "{item}");
        let e = &item["evaluation"];
        assert_eq!(e["client_correlation_id"], format!("batch-{i}"));
        let want = match kind(i) {
            0 | 3 => "MATCH",
            1 => "NEW",
            _ => "REJECT",
        };
        assert_eq!(e["decision"], want, "document {i}");
        ids.insert(e["evaluation_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 99);
    // Every answered document was stored.
    let stored: HashSet<String> = api
        .all_evaluations("")
        .await
        .iter()
        .map(|e| e["evaluation_id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.is_subset(&stored));

    let too_many = json!({"documents": vec![doc(invoice(0.0, 5)); 101]});
    assert_eq!(api.post("/v1/evaluate/batch", &too_many).await.status, 422);
    let empty = json!({"documents": []});
    assert_eq!(api.post("/v1/evaluate/batch", &empty).await.status, 422);
}

fn error_fields(r: &Resp) -> BTreeSet<String> {
    r.body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors list: {r:?}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

async fn validation_errors_list_every_bad_field(backend: Backend) {
    let ctx = start(backend).await;
    let api = &ctx.api;
    let mut body = doc(invoice(0.0, 5));
    body["structural_features"]["element_count"] = json!("fifty");
    body["structural_features"]["bounding_boxes"][3]
        .as_object_mut()
        .unwrap()
        .remove("x");
    body["extractor_metadata"]
        .as_object_mut()
        .unwrap()
        .remove("vendor");
    let r = api.post("/v1/evaluate", &body).await;
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.body["code"], "VALIDATION_FAILED");
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/problem+json"));
    assert_eq!(
        error_fields(&r),
        BTreeSet::from([
            "structural_features.element_count".to_string(),
            "structural_features.bounding_boxes[3].x".to_string(),
            "extractor_metadata.vendor".to_string(),
        ])
    );

    // Range problems are listed together too.
    let mut body = doc(invoice(0.0, 5));
    body["structural_features"]["text_density"] = json!(1.7);
    body["extractor_metadata"]["confidence"] = json!(-0.2);
    body["pipeline_id"] = json!("p".repeat(300));
    let r = api.post("/v1/evaluate", &body).await;
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.body["errors"].as_array().unwrap().len(), 3, "{r:?}");

    let r = api
        .post(
            "/v1/templates",
            &json!({"template_id": "bad id!", "baseline_reliability": 2.0, "status": "live",
                    "structural_features": invoice(0.0, 5)}),
        )
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(
        error_fields(&r),
        BTreeSet::from([
            "template_id".to_string(),
            "baseline_reliability".to_string(),
            "status".to_string(),
        ])
    );
    let r = api
        .post("/v1/templates", &json!({"template_id": "no-layout"}))
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.body["errors"].as_array().unwrap().len(), 1, "{r:?}");
    // A box outside the page is named by its path in the field the client sent.
    let mut f = invoice(0.0, 5);
    f["bounding_boxes"][2]["x"] = json!(1.8);
    let r = api
        .post(
            "/v1/templates",
            &json!({"template_id": "geo", "exemplars": [invoice(0.0, 5), f]}),
        )
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert!(
        error_fields(&r)
            .iter()
            .all(|f| f.starts_with("exemplars[1]")),
        "{r:?}"
    );
}

async fn tenants_never_see_each_other(backend: Backend) {
    let ctx = start(backend).await;
    let a = &ctx.api;
    let b = second_tenant(&ctx).await;
    let t = a
        .create_template(
            &json!({"template_id": "private-invoice", "structural_features": invoice(0.0, 5)}),
        )
        .await;
    let tv = t["id"].as_str().unwrap().to_string();
    let e = a.evaluate(&doc(invoice(0.0, 5))).await;
    assert_eq!(e["decision"], "MATCH");
    let eid = e["evaluation_id"].as_str().unwrap().to_string();

    // B's index does not hold A's template.
    let b_eval = b.evaluate(&doc(invoice(0.0, 5))).await;
    assert_eq!(b_eval["decision"], "NEW", "{b_eval}");
    let b_eid = b_eval["evaluation_id"].as_str().unwrap().to_string();

    for id in [tv.as_str(), "private-invoice"] {
        let p = format!("/v1/templates/{id}");
        let answers = [
            b.get(&p).await,
            b.put(&p, &json!({"name": "stolen"})).await,
            b.delete(&p).await,
            b.patch(&format!("{p}/status"), &json!({"status": "deprecated"}))
                .await,
            b.post(
                &format!("{p}/exemplars"),
                &json!({"structural_features": invoice(0.0, 6)}),
            )
            .await,
            b.get(&format!("{p}/drift")).await,
        ];
        for r in answers {
            assert_eq!(r.status, 404, "{id}: {r:?}");
            assert_eq!(r.body["code"], "NOT_FOUND");
        }
    }
    let answers = [
        b.get(&format!("/v1/evaluations/{eid}")).await,
        b.post(
            &format!("/v1/evaluations/{eid}/feedback"),
            &json!({"outcome": "rejected"}),
        )
        .await,
        b.post(
            &format!("/v1/templates/from-evaluation/{eid}"),
            &json!({"template_id": "copied"}),
        )
        .await,
    ];
    for r in answers {
        assert_eq!(r.status, 404, "{r:?}");
    }
    // And the other way round.
    assert_eq!(a.get(&format!("/v1/evaluations/{b_eid}")).await.status, 404);

    // Lists hold only the caller's own rows.
    let b_templates = b.get("/v1/templates?limit=1000").await;
    assert!(b_templates.body["items"].as_array().unwrap().is_empty());
    let b_evals = b.all_evaluations("").await;
    assert_eq!(b_evals.len(), 1);
    assert_eq!(b_evals[0]["evaluation_id"], b_eid.as_str());
    assert!(b
        .all_evaluations("template_id=private-invoice")
        .await
        .is_empty());
    assert!(!a
        .all_evaluations("")
        .await
        .iter()
        .any(|e| e["evaluation_id"] == b_eid.as_str()));

    // Nothing B tried changed A's template; B may use the same template_id for its own.
    let unchanged = a.get(&format!("/v1/templates/{tv}")).await;
    assert_eq!(unchanged.body["status"], "active");
    assert!(unchanged.body["name"].is_null());
    assert_eq!(unchanged.body["exemplar_count"], 1);
    assert_eq!(stats(&unchanged.body), (0, 0, 0));
    let own = b
        .create_template(
            &json!({"template_id": "private-invoice", "structural_features": two_column_text()}),
        )
        .await;
    assert_eq!(own["version"], 1);
    assert_ne!(own["id"], tv.as_str());
}

async fn template_versions_and_status_transitions(backend: Backend) {
    let ctx = start(backend).await;
    let api = &ctx.api;
    let draft = api
        .create_template(&json!({"template_id": "lifecycle", "status": "draft",
                                 "structural_features": invoice(0.0, 5)}))
        .await;
    assert_eq!(draft["status"], "draft");
    let p = format!("/v1/templates/{}", draft["id"].as_str().unwrap());
    let status = |s: &str| json!({ "status": s });

    // A draft does not match.
    assert_eq!(api.evaluate(&doc(invoice(0.0, 5))).await["decision"], "NEW");
    let r = api.patch(&format!("{p}/status"), &status("active")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "active");
    assert_eq!(
        api.evaluate(&doc(invoice(0.0, 5))).await["decision"],
        "MATCH"
    );

    // Not a documented transition.
    let r = api.patch(&format!("{p}/status"), &status("draft")).await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.body["code"], "CONFLICT");
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("active") && detail.contains("draft"),
        "{detail}"
    );
    assert_eq!(
        api.patch(&format!("{p}/status"), &status("retired"))
            .await
            .status,
        422
    );
    // The same status is a no-op.
    let before = r_updated(api, &p).await;
    let same = api.patch(&format!("{p}/status"), &status("active")).await;
    assert_eq!(same.status, 200);
    assert_eq!(same.body["updated_at"], before);

    // DELETE deprecates; deprecated versions stop matching.
    let r = api.delete(&p).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "deprecated");
    assert_eq!(api.evaluate(&doc(invoice(0.0, 5))).await["decision"], "NEW");
    assert_eq!(api.delete(&p).await.status, 200);
    let r = api.patch(&format!("{p}/status"), &status("archived")).await;
    assert_eq!(r.body["status"], "archived");
    assert_eq!(api.delete(&p).await.status, 409);
    assert_eq!(
        api.patch(&format!("{p}/status"), &status("active"))
            .await
            .status,
        409
    );

    // Versions: the next one is chosen, an existing one is a conflict.
    let v2 = api
        .create_template(
            &json!({"template_id": "lifecycle", "structural_features": invoice(0.0, 5)}),
        )
        .await;
    assert_eq!(v2["version"], 2);
    let dup = api
        .post(
            "/v1/templates",
            &json!({"template_id": "lifecycle", "version": 2, "structural_features": invoice(0.0, 5)}),
        )
        .await;
    assert_eq!(dup.status, 409, "{dup:?}");
    assert_eq!(dup.body["code"], "CONFLICT");
    assert_eq!(
        api.get("/v1/templates/lifecycle").await.body["id"],
        v2["id"]
    );
    let v2p = format!("/v1/templates/{}", v2["id"].as_str().unwrap());

    // Metadata edits; the layout is not editable in place.
    let r = api
        .put(
            &v2p,
            &json!({"name": "Lifecycle invoice", "baseline_reliability": 0.8,
                    "correction_rules": [{"field": "date", "rule": "iso8601", "parameters": {}}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["name"], "Lifecycle invoice");
    assert_eq!(r.body["baseline_reliability"], 0.8);
    let r = api
        .put(&v2p, &json!({"exemplars": [invoice(0.0, 5)]}))
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    let r = api.put(&v2p, &json!({"baseline_reliability": 1.5})).await;
    assert_eq!(r.status, 422, "{r:?}");
    let m = api.evaluate(&doc(invoice(0.0, 5))).await;
    assert_eq!(m["template_version_id"], v2["id"]);
    assert_eq!(m["correction_rules"][0]["rule"], "iso8601");

    // An exemplar with more line items teaches the version its variation.
    let r = api
        .post(
            &format!("{v2p}/exemplars"),
            &json!({"structural_features": invoice(0.004, 8)}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["exemplar_count"], 2);
    let r = api
        .post(
            &format!("{v2p}/exemplars"),
            &json!({"structural_features": empty_extraction()}),
        )
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(
        api.get(&v2p).await.body["exemplar_count"],
        2,
        "a refused exemplar is not stored"
    );

    // Lists filter by status and template_id, and page without gaps.
    for i in 0..5 {
        api.create_template(
            &json!({"template_id": format!("page-{i}"), "structural_features": two_column_text()}),
        )
        .await;
    }
    let all = api.get("/v1/templates?limit=1000").await.body["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(all.len(), 7);
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = api
            .get(&format!("/v1/templates?limit=2{cursor}"))
            .await
            .body;
        paged.extend(
            r["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].clone()),
        );
        match r["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        paged,
        all.iter().map(|t| t["id"].clone()).collect::<Vec<_>>()
    );
    let archived = api.get("/v1/templates?status=archived").await.body;
    assert_eq!(archived["items"].as_array().unwrap().len(), 1);
    let versions = api.get("/v1/templates?template_id=lifecycle").await.body;
    assert_eq!(versions["items"].as_array().unwrap().len(), 2);
    assert_eq!(api.get("/v1/templates?status=gone").await.status, 422);

    // Every change is in the audit trail.
    let audit = api.get("/v1/audit-logs?limit=1000").await;
    assert_eq!(audit.status, 200, "{audit:?}");
    let actions: HashSet<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "template_created",
        "template_status_changed",
        "template_deprecated",
        "template_updated",
        "template_exemplar_added",
    ] {
        assert!(
            actions.contains(action),
            "{action} not audited: {actions:?}"
        );
    }
}

async fn r_updated(api: &Api, path: &str) -> Value {
    api.get(path).await.body["updated_at"].clone()
}

async fn evaluation_list_filters_and_cursor_pages(backend: Backend) {
    let ctx = start(backend).await;
    let api = &ctx.api;
    api.create_template(&json!({"template_id": "inv", "structural_features": invoice(0.0, 5)}))
        .await;
    let layouts = [
        invoice(0.0, 5),
        invoice(0.008, 7),
        two_column_text(),
        empty_extraction(),
    ];
    for i in 0..23 {
        let pipeline = if i % 3 == 0 { "east" } else { "west" };
        let mut d = doc_tagged(layouts[i % 4].clone(), &format!("list-{i}"), pipeline);
        // A lower extractor confidence for some documents spreads the reliability.
        if i % 5 == 0 {
            d["extractor_metadata"]["confidence"] = json!(0.55);
        }
        api.evaluate(&d).await;
    }
    let all = api.all_evaluations("").await;
    assert_eq!(all.len(), 23);
    let ids = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|e| e["evaluation_id"].as_str().unwrap().to_string())
            .collect()
    };
    let all_ids = ids(&all);
    let mut sorted = all_ids.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(all_ids, sorted, "newest first");

    // Each filter returns exactly the rows that satisfy it.
    let check = |query: &'static str, keep: &dyn Fn(&Value) -> bool| {
        let expected: Vec<String> =
            ids(&all.iter().filter(|e| keep(e)).cloned().collect::<Vec<_>>());
        (query, expected)
    };
    let cases = [
        check("decision=MATCH", &|e| e["decision"] == "MATCH"),
        check("decision=REJECT", &|e| e["decision"] == "REJECT"),
        check("template_id=inv", &|e| e["template_id"] == "inv"),
        check("pipeline_id=east", &|e| e["pipeline_id"] == "east"),
        check("min_reliability=0.5", &|e| {
            e["reliability_score"].as_f64().unwrap() >= 0.5
        }),
        check("max_drift=0.01", &|e| {
            e["drift_score"].as_f64().unwrap() <= 0.01
        }),
        check("decision=MATCH&pipeline_id=west", &|e| {
            e["decision"] == "MATCH" && e["pipeline_id"] == "west"
        }),
    ];
    for (query, expected) in cases {
        assert!(
            !expected.is_empty() && expected.len() < all.len(),
            "{query} must split the data to mean anything ({} of {})",
            expected.len(),
            all.len()
        );
        let got = ids(&api.all_evaluations(query).await);
        assert_eq!(got, expected, "{query}");
    }

    // Pages of 4: no duplicates, no gaps, same order.
    let mut paged = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let r = api.get(&format!("/v1/evaluations?limit=4{cursor}")).await;
        assert_eq!(r.status, 200, "{r:?}");
        let items = r.body["items"].as_array().unwrap();
        assert!(items.len() <= 4);
        paged.extend(ids(items));
        pages += 1;
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert!(pages >= 6);
    assert_eq!(paged, all_ids);
    for q in [
        "limit=0",
        "limit=1001",
        "decision=MAYBE",
        "min_reliability=2",
    ] {
        assert_eq!(
            api.get(&format!("/v1/evaluations?{q}")).await.status,
            422,
            "{q}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL only: faults and several instances

fn postgres_target() -> String {
    let url = pg_admin_url();
    url.split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

struct Outcome {
    status: StatusCode,
    took: Duration,
    retry_after: bool,
    problem_json: bool,
    evaluation_id: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage_under_load_loses_no_acknowledged_write() {
    require_redis().await;
    let db = TestDatabase::create().await;
    let relay = Relay::start(&postgres_target()).await;
    let server = TestServer::start(
        base_options()
            .with("DATABASE_URL", db.url_via(relay.port))
            .with("REDIS_URL", redis_url())
            .with("DATABASE_CONNECT_TIMEOUT_SECONDS", "1"),
    )
    .await;
    let api = Api::new(&server.base, ("x-api-key", server.first_start_key()));
    api.create_template(&json!({"template_id": "inv", "structural_features": invoice(0.0, 5)}))
        .await;
    assert_eq!(
        api.evaluate(&doc(invoice(0.0, 5))).await["decision"],
        "MATCH"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let api = api.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let body = doc_tagged(invoice(0.0, 5), &format!("load-{t}-{n}"), "load");
                let started = Instant::now();
                let r = api.post("/v1/evaluate", &body).await;
                out.push(Outcome {
                    status: r.status,
                    took: started.elapsed(),
                    retry_after: r.headers.contains_key("retry-after"),
                    problem_json: r
                        .headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with("application/problem+json")),
                    evaluation_id: r.body["evaluation_id"].as_str().map(str::to_string),
                });
            }
            out
        }));
    }
    // The load runs over time on purpose: some of it before the outage, a 2 s outage (longer
    // than a request may take to give up), and some after the recovery.
    tokio::time::sleep(Duration::from_millis(800)).await;
    relay.close();
    tokio::time::sleep(Duration::from_secs(2)).await;
    relay.open();
    // Until the pool has reconnected and then a little longer.
    let recovered = Instant::now();
    loop {
        let r = api
            .post(
                "/v1/evaluate",
                &doc_tagged(invoice(0.0, 5), "probe", "probe"),
            )
            .await;
        if r.status == 200 {
            break;
        }
        assert!(
            recovered.elapsed() < Duration::from_secs(20),
            "no recovery: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "recovered {:?} after the database came back",
        recovered.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.extend(t.await.unwrap());
    }

    let ok: Vec<&Outcome> = outcomes.iter().filter(|o| o.status == 200).collect();
    let unavailable = outcomes.iter().filter(|o| o.status == 503).count();
    assert!(
        !ok.is_empty() && unavailable > 0,
        "the load must see both service and the outage ({} ok, {unavailable} 503)",
        ok.len()
    );
    for o in &outcomes {
        assert!(
            o.status == 200 || o.status == 503,
            "unexpected {}",
            o.status
        );
        if o.status == 503 {
            assert!(
                o.retry_after && o.problem_json,
                "503 without Retry-After or problem+json"
            );
        }
        // The writer gives up after 3 s; 2 s covers the rest of the request.
        assert!(
            o.took < Duration::from_secs(5),
            "a request took {:?}",
            o.took
        );
    }
    // Every acknowledged evaluation is durable.
    for o in ok {
        let id = o.evaluation_id.as_ref().expect("200 carries an id");
        let r = api.get(&format!("/v1/evaluations/{id}")).await;
        assert_eq!(
            r.status, 200,
            "acknowledged evaluation {id} was lost: {r:?}"
        );
    }
    let after = api.evaluate(&doc(invoice(0.0, 5))).await;
    assert_eq!(after["decision"], "MATCH");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_template_created_on_one_instance_is_used_by_another_within_a_second() {
    require_redis().await;
    let db = TestDatabase::create().await;
    let options = || {
        ServerOptions::default()
            .with("RATE_LIMIT_UNAUTHENTICATED", "10000")
            .with("RATE_LIMIT_PER_MINUTE", "1000000")
            .with("DATABASE_URL", db.url.clone())
            .with("REDIS_URL", redis_url())
    };
    let salt = test_secret();
    let jwt = test_secret();
    let a = TestServer::start(
        options()
            .with("API_KEY_SALT", salt.clone())
            .with("JWT_SECRET", jwt.clone()),
    )
    .await;
    let b = TestServer::start(options().with("API_KEY_SALT", salt).with("JWT_SECRET", jwt)).await;
    let key = a.first_start_key();
    let api_a = Api::new(&a.base, ("x-api-key", key.clone()));
    let api_b = Api::new(&b.base, ("x-api-key", key));

    // B has loaded the tenant's (empty) index, so only the sync can teach it the template.
    assert_eq!(
        api_b.evaluate(&doc(two_column_text())).await["decision"],
        "NEW"
    );
    let t = api_a
        .create_template(
            &json!({"template_id": "shared", "structural_features": two_column_text()}),
        )
        .await;
    let created = Instant::now();
    loop {
        let e = api_b.evaluate(&doc(two_column_text())).await;
        if e["decision"] == "MATCH" {
            assert_eq!(e["template_version_id"], t["id"]);
            break;
        }
        assert!(
            created.elapsed() < Duration::from_secs(3),
            "instance B still does not know the template after {:?}",
            created.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Deprecation propagates the same way.
    assert_eq!(
        api_a
            .delete(&format!("/v1/templates/{}", t["id"].as_str().unwrap()))
            .await
            .status,
        200
    );
    let deprecated = Instant::now();
    loop {
        let e = api_b.evaluate(&doc(two_column_text())).await;
        if e["decision"] == "NEW" {
            break;
        }
        assert!(
            deprecated.elapsed() < Duration::from_secs(3),
            "instance B still matches a deprecated template"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
