//! The review queue over HTTP, both backends: which evaluations become items and in what
//! order, filters and pages, claims under leases (one winner among many claimers, a lease
//! that runs out returns the item), resolve as feedback, bulk resolve, the queue in
//! analytics, audit, scopes and tenant isolation.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::evaluation::{
    base_options, doc, empty_extraction, invoice, on_both_backends, second_tenant, start,
    start_with, two_column_text, Api, Backend,
};
use crate::support::{redis_url, require_redis, ServerOptions, TestDatabase, TestServer};

on_both_backends!(
    uncertain_answers_become_items_that_resolve_as_feedback,
    many_claimers_get_one_item_each_and_a_lapsed_lease_returns_it,
    sampled_matches_join_the_queue_at_the_configured_rate,
);

/// The priority the queue documents: class by decision, then unreliability.
fn expected_priority(decision: &str, reliability: f64) -> i64 {
    let class = match decision {
        "REVIEW" => 300,
        "REJECT" => 200,
        "NEW" => 100,
        _ => 0,
    };
    class + ((1.0 - reliability.clamp(0.0, 1.0)) * 99.0).round() as i64
}

fn shifted_extractor(features: Value) -> Value {
    json!({"structural_features": features, "extractor_metadata": {
        "vendor": "aws", "model": "textract", "version": "2025-01", "confidence": 0.91,
        "latency_ms": 1200.0}})
}

/// Every item a query selects, following cursors.
async fn all_items(api: &Api, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/review-items?limit=2&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = api.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        out.extend(r.body["items"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

async fn uncertain_answers_become_items_that_resolve_as_feedback(backend: Backend) {
    let ctx = start(backend).await;
    let api = &ctx.api;
    api.create_template(
        &json!({"template_id": "inv", "structural_features": invoice(0.0, 5),
        "extractor": {"vendor": "aws", "model": "textract", "version": "2024-06"}}),
    )
    .await;
    let mut evals = Vec::new();
    for i in 0..3 {
        evals.push(api.evaluate(&doc(invoice(0.002 * i as f64, 5))).await);
    }
    for i in 0..2 {
        evals.push(
            api.evaluate(&shifted_extractor(invoice(0.003 * i as f64, 5)))
                .await,
        );
    }
    for _ in 0..2 {
        evals.push(api.evaluate(&doc(two_column_text())).await);
    }
    evals.push(api.evaluate(&doc(empty_extraction())).await);
    let uncertain: Vec<&Value> = evals.iter().filter(|e| e["decision"] != "MATCH").collect();
    let decisions: BTreeSet<&str> = uncertain
        .iter()
        .map(|e| e["decision"].as_str().unwrap())
        .collect();
    assert!(
        decisions.contains("NEW") && decisions.contains("REJECT"),
        "{decisions:?}"
    );
    assert!(evals.iter().any(|e| e["decision"] == "MATCH"));

    // One item per uncertain answer (no MATCH: the sample rate is 0), in priority order,
    // each with the documented priority; pages of 2 neither skip nor repeat.
    let items = all_items(api, "").await;
    assert_eq!(items.len(), uncertain.len(), "{items:?}");
    for e in &uncertain {
        let item = items
            .iter()
            .find(|i| i["evaluation_id"] == e["evaluation_id"])
            .unwrap_or_else(|| panic!("no item for {e}"));
        assert_eq!(item["decision"], e["decision"]);
        assert_eq!(item["reason"], "decision");
        assert_eq!(item["status"], "open");
        assert_eq!(item["claim_count"], 0);
        assert_eq!(item["template_id"], e["template_id"]);
        assert_eq!(
            item["priority"].as_i64().unwrap(),
            expected_priority(
                e["decision"].as_str().unwrap(),
                e["reliability_score"].as_f64().unwrap()
            ),
            "{item}"
        );
    }
    let order: Vec<(i64, String)> = items
        .iter()
        .map(|i| {
            (
                -i["priority"].as_i64().unwrap(),
                i["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "highest priority first, then oldest");
    let by_age = all_items(api, "sort=age").await;
    let mut age_ids = ids(&by_age);
    let listed = age_ids.clone();
    age_ids.sort();
    assert_eq!(listed, age_ids, "sort=age is oldest first");

    // Filters.
    let new_count = uncertain.iter().filter(|e| e["decision"] == "NEW").count();
    assert_eq!(all_items(api, "decision=NEW").await.len(), new_count);
    let one = &uncertain[0];
    let by_eval = all_items(
        api,
        &format!("evaluation_id={}", one["evaluation_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(by_eval.len(), 1);
    assert_eq!(all_items(api, "extractor_vendor=nobody").await.len(), 0);
    assert_eq!(
        all_items(api, "extractor_vendor=aws").await.len(),
        uncertain.len()
    );
    assert_eq!(all_items(api, "min_age_seconds=3600").await.len(), 0);
    assert_eq!(
        all_items(api, "max_age_seconds=3600").await.len(),
        uncertain.len()
    );
    assert_eq!(all_items(api, "status=resolved").await.len(), 0);
    assert_eq!(all_items(api, "reason=sample").await.len(), 0);
    for bad in [
        "status=bogus",
        "sort=newest",
        "decision=maybe",
        "reason=x",
        "cursor=nope",
        "limit=0",
        "min_age_seconds=-1",
        "evaluation_id=not-a-uuid",
    ] {
        let r = api.get(&format!("/v1/review-items?{bad}")).await;
        assert!(
            r.status == 422 || r.status == 400,
            "{bad}: {r:?} should be a problem"
        );
        assert!(r.body["code"].is_string(), "{bad}: {r:?}");
    }

    // Claim, extend, release, resolve.
    let a = items[0]["id"].as_str().unwrap().to_string();
    let claimed = api
        .post(
            &format!("/v1/review-items/{a}/claim"),
            &json!({"lease_seconds": 60}),
        )
        .await;
    assert_eq!(claimed.status, 200, "{claimed:?}");
    let token = claimed.body["lease_token"].as_str().unwrap().to_string();
    assert_eq!(claimed.body["item"]["status"], "claimed");
    assert_eq!(claimed.body["item"]["claim_count"], 1);
    assert!(claimed.body["item"]["claimed_by"].is_string());
    let again = api
        .post(&format!("/v1/review-items/{a}/claim"), &json!({}))
        .await;
    assert_eq!(again.status, 409, "a held item is not claimable: {again:?}");
    let extended = api
        .post(
            &format!("/v1/review-items/{a}/claim"),
            &json!({"lease_seconds": 3600, "lease_token": token}),
        )
        .await;
    assert_eq!(extended.status, 200, "{extended:?}");
    assert!(
        extended.body["item"]["lease_expires_at"].as_str().unwrap()
            > claimed.body["item"]["lease_expires_at"].as_str().unwrap()
    );
    assert_eq!(
        extended.body["item"]["claim_count"], 1,
        "extending is not a claim"
    );
    let too_long = api
        .post(
            &format!("/v1/review-items/{a}/claim"),
            &json!({"lease_seconds": 99999, "lease_token": token}),
        )
        .await;
    assert_eq!(too_long.status, 422, "{too_long:?}");
    let wrong = uuid::Uuid::new_v4().to_string();
    let r = api
        .post(
            &format!("/v1/review-items/{a}/release"),
            &json!({"lease_token": wrong}),
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    let r = api
        .post(
            &format!("/v1/review-items/{a}/resolve"),
            &json!({"outcome": "correct"}),
        )
        .await;
    assert_eq!(
        r.status, 409,
        "resolving a held item needs its token: {r:?}"
    );
    let released = api
        .post(
            &format!("/v1/review-items/{a}/release"),
            &json!({"lease_token": token}),
        )
        .await;
    assert_eq!(released.status, 200, "{released:?}");
    assert_eq!(released.body["status"], "open");
    let reclaimed = api
        .post(&format!("/v1/review-items/{a}/claim"), &json!({}))
        .await;
    assert_eq!(reclaimed.status, 200, "{reclaimed:?}");
    assert_eq!(reclaimed.body["item"]["claim_count"], 2);
    let token = reclaimed.body["lease_token"].as_str().unwrap().to_string();
    let bad = api
        .post(
            &format!("/v1/review-items/{a}/resolve"),
            &json!({"outcome": "fine", "lease_token": token}),
        )
        .await;
    assert_eq!(bad.status, 422, "{bad:?}");
    let resolved = api
        .post(
            &format!("/v1/review-items/{a}/resolve"),
            &json!({"outcome": "corrected", "lease_token": token, "field_error_count": 2}),
        )
        .await;
    assert_eq!(resolved.status, 200, "{resolved:?}");
    assert_eq!(resolved.body["item"]["status"], "resolved");
    assert_eq!(resolved.body["item"]["outcome"], "corrected");
    assert_eq!(resolved.body["feedback"]["outcome"], "corrected");
    let eval_a = items[0]["evaluation_id"].as_str().unwrap();
    let stored = api.get(&format!("/v1/evaluations/{eval_a}")).await;
    let feedback = &stored.body["feedback"];
    assert_eq!(feedback["outcome"], "corrected", "{stored:?}");
    assert_eq!(feedback["details"]["source"], "review-queue", "{stored:?}");
    assert_eq!(feedback["details"]["field_error_count"], 2, "{stored:?}");
    assert!(feedback["details"]["review_seconds"].as_f64().unwrap() >= 0.0);
    let repeat = api
        .post(
            &format!("/v1/review-items/{a}/resolve"),
            &json!({"outcome": "corrected", "lease_token": token}),
        )
        .await;
    assert_eq!(
        repeat.status, 200,
        "a repeated resolve answers the item: {repeat:?}"
    );
    let changed = api
        .post(
            &format!("/v1/review-items/{a}/resolve"),
            &json!({"outcome": "correct"}),
        )
        .await;
    assert_eq!(changed.status, 409, "{changed:?}");
    let claim_resolved = api
        .post(&format!("/v1/review-items/{a}/claim"), &json!({}))
        .await;
    assert_eq!(claim_resolved.status, 409, "{claim_resolved:?}");

    // Feedback sent to the evaluation directly resolves its item with that outcome.
    let b = &items[1];
    let fb = api
        .post(
            &format!(
                "/v1/evaluations/{}/feedback",
                b["evaluation_id"].as_str().unwrap()
            ),
            &json!({"outcome": "rejected"}),
        )
        .await;
    assert_eq!(fb.status, 200, "{fb:?}");
    let b_now = api
        .get(&format!("/v1/review-items/{}", b["id"].as_str().unwrap()))
        .await;
    assert_eq!(b_now.body["status"], "resolved", "{b_now:?}");
    assert_eq!(b_now.body["outcome"], "rejected");

    // Bulk: two open items, one resolved, one unknown, one bad outcome.
    let open = all_items(api, "status=open").await;
    assert_eq!(open.len(), uncertain.len() - 2);
    assert!(open.len() >= 3, "{open:?}");
    let unknown = uuid::Uuid::now_v7().to_string();
    let bulk = api
        .post(
            "/v1/review-items/resolve",
            &json!({"items": [
                {"id": open[0]["id"], "outcome": "correct"},
                {"id": open[1]["id"], "outcome": "rejected"},
                {"id": a, "outcome": "correct"},
                {"id": unknown, "outcome": "correct"},
                {"id": open[2]["id"], "outcome": "meh"},
            ]}),
        )
        .await;
    assert_eq!(bulk.status, 200, "{bulk:?}");
    let statuses: Vec<i64> = bulk.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 409, 404, 422], "{}", bulk.body);
    assert_eq!(
        (bulk.body["resolved"].as_i64(), bulk.body["failed"].as_i64()),
        (Some(2), Some(3))
    );
    assert_eq!(bulk.body["results"][3]["problem"]["code"], "NOT_FOUND");
    for bad in [
        json!({"items": []}),
        json!({"items": [{"id": a, "outcome": "correct"}, {"id": a, "outcome": "correct"}]}),
        json!({"nope": 1}),
    ] {
        let r = api.post("/v1/review-items/resolve", &bad).await;
        assert_eq!(r.status, 422, "{bad}: {r:?}");
    }

    // The queue in analytics: counts computed from the items as listed.
    let still_open = all_items(api, "status=open").await.len() as i64;
    let resolved_n = all_items(api, "status=resolved").await.len() as i64;
    assert_eq!(resolved_n, 4);
    let summary = api.get("/v1/analytics/summary").await;
    assert_eq!(summary.status, 200, "{summary:?}");
    let q = &summary.body["review_queue"];
    assert_eq!(q["open"], still_open, "{q}");
    assert_eq!(q["claimed"], 0, "{q}");
    assert_eq!(q["resolved"], resolved_n, "{q}");
    assert_eq!(q["open_by_age"]["under_1h"], still_open, "{q}");
    assert!(q["oldest_open_age_seconds"].as_i64().unwrap() < 3600, "{q}");
    assert!(q["mean_resolution_seconds"].as_f64().unwrap() >= 0.0, "{q}");

    // Every move is in the audit trail.
    let audit = api.get("/v1/audit-logs?limit=200").await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    let count = |a: &str| actions.iter().filter(|x| **x == a).count();
    assert_eq!(count("review_item_claimed"), 3, "{actions:?}");
    assert_eq!(count("review_item_released"), 1, "{actions:?}");
    assert_eq!(count("review_item_resolved"), 3, "{actions:?}");

    // A read-only key reads the queue but moves nothing.
    let reader = api.minted(&["read"]).await;
    assert_eq!(reader.get("/v1/review-items").await.status, 200);
    let c = open[2]["id"].as_str().unwrap();
    for path in [
        format!("/v1/review-items/{c}/claim"),
        "/v1/review-items/claim-next".to_string(),
    ] {
        assert_eq!(reader.post(&path, &json!({})).await.status, 403, "{path}");
    }

    // Another tenant sees nothing and reaches nothing.
    let other = second_tenant(&ctx).await;
    let theirs = other.get("/v1/review-items").await;
    assert_eq!(theirs.status, 200);
    assert_eq!(theirs.body["items"], json!([]), "{theirs:?}");
    assert_eq!(
        other.get(&format!("/v1/review-items/{c}")).await.status,
        404
    );
    for (path, body) in [
        (format!("/v1/review-items/{c}/claim"), json!({})),
        (
            format!("/v1/review-items/{c}/release"),
            json!({"lease_token": uuid::Uuid::new_v4()}),
        ),
        (
            format!("/v1/review-items/{c}/resolve"),
            json!({"outcome": "correct"}),
        ),
    ] {
        let r = other.post(&path, &body).await;
        assert_eq!(r.status, 404, "{path}: {r:?}");
    }
    let next = other
        .send(Method::POST, "/v1/review-items/claim-next", None, &[])
        .await;
    assert_eq!(next.status, 204, "{next:?}");
    // claim-next takes open items only: a status is refused, not ignored.
    let r = api
        .send(
            Method::POST,
            "/v1/review-items/claim-next?status=claimed",
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.body["errors"][0]["field"], "status", "{r:?}");
    let bulk = other
        .post(
            "/v1/review-items/resolve",
            &json!({"items": [{"id": c, "outcome": "correct"}]}),
        )
        .await;
    assert_eq!(bulk.body["results"][0]["status"], 404, "{bulk:?}");
    let mine = api.get(&format!("/v1/review-items/{c}")).await;
    assert_eq!(mine.body["status"], "open", "untouched: {mine:?}");
    let other_summary = other.get("/v1/analytics/summary").await;
    assert_eq!(other_summary.body["review_queue"]["open"], 0);
}

async fn many_claimers_get_one_item_each_and_a_lapsed_lease_returns_it(backend: Backend) {
    // Two replicas on one database for PostgreSQL; embedded has one process by design.
    let (first, second, _db) = match backend {
        Backend::Embedded => (TestServer::start(base_options()).await, None, None),
        Backend::Postgres => {
            require_redis().await;
            let db = TestDatabase::create().await;
            // One set of secrets for both replicas (base_options draws new ones).
            let env = base_options()
                .with("DATABASE_URL", db.url.clone())
                .with("REDIS_URL", redis_url())
                .env;
            let options = || ServerOptions {
                env: env.clone(),
                wait_healthy: true,
            };
            let first = TestServer::start(options()).await;
            let second = TestServer::start(options()).await;
            (first, Some(second), Some(db))
        }
    };
    let key = first.first_start_key();
    let apis: Vec<Api> = [Some(&first), second.as_ref()]
        .into_iter()
        .flatten()
        .map(|s| Api::new(&s.base, ("x-api-key", key.clone())))
        .collect();
    let api = &apis[0];
    let mut evals = Vec::new();
    for _ in 0..8 {
        evals.push(api.evaluate(&doc(two_column_text())).await);
    }
    assert!(evals.iter().all(|e| e["decision"] == "NEW"), "{evals:?}");
    let items = all_items(api, "").await;
    assert_eq!(items.len(), 8);

    // 16 reviewers claim the same item at once: exactly one wins.
    let target = items[0]["id"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let api = apis[i % apis.len()].clone();
        let path = format!("/v1/review-items/{target}/claim");
        tasks.push(tokio::spawn(
            async move { api.post(&path, &json!({})).await },
        ));
    }
    let mut wins = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => wins.push(r.body),
            409 => assert!(
                r.body["detail"].as_str().unwrap().contains("claimed"),
                "{r:?}"
            ),
            other => panic!("unexpected {other}: {r:?}"),
        }
    }
    assert_eq!(wins.len(), 1, "{wins:?}");

    // 12 reviewers ask for the next item at once: the 7 others go to 7 of them, one each.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let api = apis[i % apis.len()].clone();
        tasks.push(tokio::spawn(async move {
            api.send(Method::POST, "/v1/review-items/claim-next", None, &[])
                .await
        }));
    }
    let mut got = Vec::new();
    let mut empty = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => got.push(r.body["item"]["id"].as_str().unwrap().to_string()),
            204 => empty += 1,
            other => panic!("unexpected {other}: {r:?}"),
        }
    }
    let distinct: BTreeSet<&String> = got.iter().collect();
    assert_eq!((got.len(), distinct.len(), empty), (7, 7, 5), "{got:?}");
    assert!(!distinct.contains(&target));
    assert_eq!(all_items(api, "status=claimed").await.len(), 8);
    assert_eq!(all_items(api, "status=open").await.len(), 0);

    // A reviewer that vanishes: its one-second lease runs out and the item is open again.
    let winner_token = wins[0]["lease_token"].as_str().unwrap().to_string();
    let short = api
        .post(
            &format!("/v1/review-items/{target}/claim"),
            &json!({"lease_token": winner_token, "lease_seconds": 1}),
        )
        .await;
    assert_eq!(short.status, 200, "{short:?}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let open = all_items(api, "status=open").await;
    assert_eq!(ids(&open), vec![target.clone()], "{open:?}");
    assert_eq!(open[0]["claimed_by"], Value::Null);
    let next = apis[apis.len() - 1]
        .send(Method::POST, "/v1/review-items/claim-next", None, &[])
        .await;
    assert_eq!(next.status, 200, "{next:?}");
    assert_eq!(next.body["item"]["id"], target.as_str());
    assert_eq!(next.body["item"]["claim_count"], 2);
    // The vanished reviewer's token no longer moves it.
    for (path, body) in [
        ("claim", json!({"lease_token": winner_token})),
        ("release", json!({"lease_token": winner_token})),
        (
            "resolve",
            json!({"outcome": "correct", "lease_token": winner_token}),
        ),
    ] {
        let r = api
            .post(&format!("/v1/review-items/{target}/{path}"), &body)
            .await;
        assert_eq!(r.status, 409, "{path}: {r:?}");
    }
    let new_token = next.body["lease_token"].as_str().unwrap();
    let done = api
        .post(
            &format!("/v1/review-items/{target}/resolve"),
            &json!({"outcome": "correct", "lease_token": new_token}),
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
}

async fn sampled_matches_join_the_queue_at_the_configured_rate(backend: Backend) {
    let ctx = start_with(
        backend,
        base_options().with("REVIEW_SAMPLE_MATCH_RATE", "1"),
    )
    .await;
    let api = &ctx.api;
    api.create_template(
        &json!({"template_id": "inv", "structural_features": invoice(0.0, 5),
        "extractor": {"vendor": "aws", "model": "textract", "version": "2024-06"}}),
    )
    .await;
    let mut matches = 0;
    for i in 0..4 {
        let e = api.evaluate(&doc(invoice(0.001 * i as f64, 5))).await;
        if e["decision"] == "MATCH" {
            matches += 1;
        }
    }
    assert!(matches > 0);
    let sampled = all_items(api, "reason=sample").await;
    assert_eq!(sampled.len(), matches, "{sampled:?}");
    for s in &sampled {
        assert_eq!(s["decision"], "MATCH");
        assert!(s["priority"].as_i64().unwrap() < 100, "{s}");
    }
}
