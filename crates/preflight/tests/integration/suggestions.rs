//! Template suggestions over HTTP, both backends: NEW evaluations of unregistered layouts
//! become suggestions with exact sizes and times, accepting one registers a template the
//! layout then MATCHes, a dismissed layout stays dismissed when it recurs, tenants never
//! see each other's suggestions, and bad input is a problem document. Plus SROIE receipts
//! of never-registered issuers through the server (ignored without ../shared/data).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::evaluation::{
    base_options, doc, empty_extraction, invoice, on_both_backends, second_tenant, start,
    start_with, two_column_text, Api, Backend,
};

on_both_backends!(
    new_layouts_become_suggestions_and_an_accepted_one_matches,
    a_dismissed_layout_stays_dismissed_when_it_recurs,
    suggestions_stay_within_the_tenant_and_bad_input_is_a_problem,
);

const LIST: &str = "/v1/template-suggestions";

/// The layout with every box moved vertically by up to `d` (a pattern per box), so copies
/// of one layout differ as scans of one form do.
fn nudged(mut features: Value, d: f64) -> Value {
    for (i, b) in features["bounding_boxes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        let h = b["height"].as_f64().unwrap();
        let y = b["y"].as_f64().unwrap() + d * ((i % 5) as f64 - 2.0) / 2.0;
        b["y"] = json!(((y.clamp(0.0, 1.0 - h)) * 10_000.0).round() / 10_000.0);
    }
    features
}

/// A photo sheet: a 3 × 3 grid of figures with captions, unlike an invoice or an article.
fn photo_sheet() -> Value {
    let mut boxes = Vec::new();
    for r in 0..3 {
        for c in 0..3 {
            let (x, y) = (0.05 + c as f64 * 0.31, 0.05 + r as f64 * 0.31);
            boxes.push(json!({"x": x, "y": y, "width": 0.28, "height": 0.22,
                "element_type": "figure", "confidence": 0.95, "reading_order": boxes.len()}));
            boxes.push(json!({"x": x, "y": y + 0.23, "width": 0.28, "height": 0.03,
                "element_type": "caption", "confidence": 0.95, "reading_order": boxes.len()}));
        }
    }
    json!({
        "element_count": boxes.len(), "table_count": 0, "text_block_count": 9,
        "image_count": 9, "page_count": 1, "text_density": 0.08, "layout_complexity": 0.5,
        "column_count": 3, "has_header": false, "has_footer": false, "bounding_boxes": boxes,
    })
}

/// Evaluates and expects NEW; returns (evaluation id, created_at).
async fn new_evaluation(api: &Api, features: Value) -> (String, String) {
    let e = api.evaluate(&doc(features)).await;
    assert_eq!(e["decision"], "NEW", "{e}");
    (
        e["evaluation_id"].as_str().unwrap().to_string(),
        e["created_at"].as_str().unwrap().to_string(),
    )
}

/// An instant to the microsecond (PostgreSQL stores microseconds, SQLite nanoseconds).
fn micros(t: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap_or_else(|| panic!("not a time: {t}")))
        .unwrap()
        .timestamp_micros()
}

fn ids(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

async fn listing(api: &Api, query: &str) -> Vec<Value> {
    let r = api.get(&format!("{LIST}{query}")).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body["suggestions"].as_array().unwrap().clone()
}

/// A suggestion's fields against the evaluations it should hold.
fn check_suggestion(s: &Value, members: &[(String, String)]) {
    let want: BTreeSet<String> = members.iter().map(|m| m.0.clone()).collect();
    assert_eq!(s["size"], members.len(), "{s}");
    assert_eq!(ids(&s["sample_evaluation_ids"]), want, "{s}");
    assert_eq!(
        micros(&s["first_seen"]),
        micros(&json!(members[0].1)),
        "{s}"
    );
    assert_eq!(
        micros(&s["last_seen"]),
        micros(&json!(members.last().unwrap().1)),
        "{s}"
    );
    let rep = s["representative"]["evaluation_id"].as_str().unwrap();
    assert!(want.contains(rep), "{s}");
    let exemplars = ids(&s["exemplar_evaluation_ids"]);
    assert!(!exemplars.is_empty() && exemplars.is_subset(&want), "{s}");
    assert_eq!(s["exemplar_evaluation_ids"][0], rep, "{s}");
    assert_eq!(s["extractor_vendors"], json!(["aws"]));
    let (cohesion, min) = (
        s["cohesion"].as_f64().unwrap(),
        s["min_member_similarity"].as_f64().unwrap(),
    );
    assert!(min >= 0.675 && min <= cohesion && cohesion <= 1.0, "{s}");
    assert_eq!(s["id"].as_str().unwrap().len(), 64);
    let layout = &s["representative"]["layout"];
    assert_eq!(
        layout["layout_fingerprint"].as_str().unwrap().len(),
        64,
        "{s}"
    );
    assert!(layout["element_count"].as_i64().unwrap() > 0, "{s}");
    // Metadata only: counts and types, never the boxes themselves.
    assert!(!s.to_string().contains("bounding_boxes"), "{s}");
}

async fn new_layouts_become_suggestions_and_an_accepted_one_matches(backend: Backend) {
    let ctx = start(backend).await;
    let api = &ctx.api;
    // Four invoices, three articles and one photo sheet, none registered; interleaved so
    // times and ids of the groups overlap. A REJECT is not NEW and is never suggested.
    let mut invoices = Vec::new();
    let mut articles = Vec::new();
    for i in 0..4 {
        invoices.push(new_evaluation(api, invoice(0.002 * i as f64, 5 + i % 2)).await);
        if i < 3 {
            articles.push(new_evaluation(api, nudged(two_column_text(), 0.002 * i as f64)).await);
        }
    }
    let single = new_evaluation(api, photo_sheet()).await;
    let rejected = api.evaluate(&doc(empty_extraction())).await;
    assert_eq!(rejected["decision"], "REJECT");

    let r = api.get(LIST).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["evaluations_considered"], 8, "{r:?}");
    assert_eq!(
        (r.body["truncated"].clone(), r.body["min_size"].clone()),
        (json!(false), json!(3))
    );
    assert_eq!(r.body["input_limit"], 5000);
    let list = r.body["suggestions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{r:?}");
    check_suggestion(&list[0], &invoices);
    check_suggestion(&list[1], &articles);
    let (invoice_id, article_id) = (
        list[0]["id"].as_str().unwrap().to_string(),
        list[1]["id"].as_str().unwrap().to_string(),
    );
    // The singleton is no suggestion at any size; a larger minimum leaves the articles out.
    let pairs = listing(api, "?min_size=2").await;
    assert_eq!(pairs.len(), 2, "{pairs:?}");
    assert!(!pairs
        .iter()
        .any(|s| ids(&s["sample_evaluation_ids"]).contains(&single.0)));
    let fours = listing(api, "?min_size=4").await;
    assert_eq!(fours.len(), 1);
    assert_eq!(fours[0]["id"], invoice_id.as_str());
    // The same data, the same suggestions, the same ids.
    let again = listing(api, "").await;
    assert_eq!(again, *list);

    // Accept the invoices: a template from the cluster's exemplars.
    let accepted = api
        .post(
            &format!("{LIST}/{invoice_id}/accept"),
            &json!({"template_id": "acme-invoice", "name": "Acme invoice", "description": "from a suggestion"}),
        )
        .await;
    assert_eq!(accepted.status, 201, "{accepted:?}");
    let b = &accepted.body;
    assert_eq!(b["template"]["template_id"], "acme-invoice");
    assert_eq!(b["template"]["version"], 1);
    assert_eq!(b["template"]["status"], "active");
    assert_eq!(b["template"]["name"], "Acme invoice");
    assert_eq!(
        b["template"]["exemplar_count"],
        list[0]["exemplar_evaluation_ids"].as_array().unwrap().len()
    );
    assert_eq!(b["suggestion"], list[0]);
    assert_eq!(b["decision"]["status"], "accepted");
    assert_eq!(b["decision"]["id"], invoice_id.as_str());
    assert_eq!(b["decision"]["template_id"], "acme-invoice");
    assert_eq!(b["decision"]["template_version_id"], b["template"]["id"]);
    assert_eq!(b["decision"]["size"], 4);
    let template = api
        .get("/v1/templates/acme-invoice?include=exemplars")
        .await;
    assert_eq!(template.status, 200, "{template:?}");
    assert_eq!(template.body["id"], b["template"]["id"]);

    // The layout now MATCHes the template, and the accepted members are gone.
    let e = api.evaluate(&doc(invoice(0.003, 5))).await;
    assert_eq!(
        (e["decision"].as_str(), e["template_id"].as_str()),
        (Some("MATCH"), Some("acme-invoice")),
        "{e}"
    );
    let after = api.get(LIST).await;
    assert_eq!(after.body["evaluations_considered"], 4, "{after:?}");
    let after = after.body["suggestions"].as_array().unwrap().clone();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["id"], article_id.as_str());

    // Accepting again, or another suggestion under a taken template_id, is a conflict.
    let twice = api
        .post(
            &format!("{LIST}/{invoice_id}/accept"),
            &json!({"template_id": "acme-invoice-2"}),
        )
        .await;
    assert_eq!(twice.status, 409, "{twice:?}");
    assert_eq!(twice.body["code"], "CONFLICT");
    let taken = api
        .post(
            &format!("{LIST}/{article_id}/accept"),
            &json!({"template_id": "acme-invoice"}),
        )
        .await;
    assert_eq!(taken.status, 409, "{taken:?}");
    assert!(
        taken.body["detail"].as_str().unwrap().contains("exists"),
        "{taken:?}"
    );
    assert_eq!(
        listing(api, "").await,
        after,
        "a failed accept changes nothing"
    );
    // A retry with the same Idempotency-Key answers the first acceptance once.
    let body = json!({"template_id": "article"});
    let path = format!("{LIST}/{article_id}/accept");
    let headers = [("idempotency-key", "accept-article-1")];
    let first = api
        .send(reqwest::Method::POST, &path, Some(&body), &headers)
        .await;
    assert_eq!(first.status, 201, "{first:?}");
    let retry = api
        .send(reqwest::Method::POST, &path, Some(&body), &headers)
        .await;
    assert_eq!((retry.status, &retry.body), (first.status, &first.body));
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert!(listing(api, "").await.is_empty());

    // Both acceptances are in the audit trail, each with the template creation it made.
    let audit = api
        .get("/v1/audit-logs?action=template_suggestion_accepted")
        .await;
    let entries = audit.body["items"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{audit:?}");
    let targets: BTreeSet<String> = entries
        .iter()
        .map(|e| e["target"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        targets,
        BTreeSet::from([
            format!("template_suggestion:{invoice_id}"),
            format!("template_suggestion:{article_id}")
        ])
    );
    let created = api.get("/v1/audit-logs?action=template_created").await;
    let from_suggestions = created.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["details"]["suggestion_id"].is_string())
        .count();
    assert_eq!(from_suggestions, 2, "{created:?}");
}

async fn a_dismissed_layout_stays_dismissed_when_it_recurs(backend: Backend) {
    let ctx = start(backend).await;
    let api = &ctx.api;
    for i in 0..3 {
        new_evaluation(api, nudged(two_column_text(), 0.002 * i as f64)).await;
    }
    let list = listing(api, "").await;
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_str().unwrap().to_string();

    let dismissed = api.post(&format!("{LIST}/{id}/dismiss"), &json!({})).await;
    assert_eq!(dismissed.status, 200, "{dismissed:?}");
    assert_eq!(dismissed.body["status"], "dismissed");
    assert_eq!(dismissed.body["id"], id.as_str());
    assert_eq!(dismissed.body["size"], 3);
    assert_eq!(
        dismissed.body["representative_evaluation_id"],
        list[0]["representative"]["evaluation_id"]
    );
    // Dismissing twice answers the same decision.
    let twice = api.post(&format!("{LIST}/{id}/dismiss"), &json!({})).await;
    assert_eq!(
        (twice.status, &twice.body),
        (dismissed.status, &dismissed.body)
    );
    assert!(listing(api, "").await.is_empty());
    let accept = api
        .post(
            &format!("{LIST}/{id}/accept"),
            &json!({"template_id": "article"}),
        )
        .await;
    assert_eq!(accept.status, 409, "{accept:?}");

    // More of the layout arrives: the cluster keeps its id and stays dismissed. A window
    // holding only the newer ones forms the cluster around another leader (another id);
    // it is the same layout, so it stays dismissed too — while a new layout is listed.
    let mut later = Vec::new();
    for i in 0..3 {
        later.push(new_evaluation(api, nudged(two_column_text(), 0.001 + 0.002 * i as f64)).await);
    }
    let mut invoices = Vec::new();
    for i in 0..3 {
        invoices.push(new_evaluation(api, invoice(0.002 * i as f64, 5)).await);
    }
    let all = listing(api, "").await;
    assert_eq!(all.len(), 1, "{all:?}");
    check_suggestion(&all[0], &invoices);
    let since = format!("?from_ts={}", later[0].1);
    let recent = api.get(&format!("{LIST}{since}")).await;
    assert_eq!(recent.body["evaluations_considered"], 6, "{recent:?}");
    let recent = recent.body["suggestions"].as_array().unwrap().clone();
    assert_eq!(recent.len(), 1, "{recent:?}");
    assert_eq!(recent[0]["id"], all[0]["id"]);
    // Those articles do form a cluster: in a tenant that dismissed nothing they are a
    // suggestion (a dismissal is the tenant's own).
    let other = second_tenant(&ctx).await;
    let mut theirs = Vec::new();
    for i in 0..3 {
        theirs.push(
            new_evaluation(&other, nudged(two_column_text(), 0.001 + 0.002 * i as f64)).await,
        );
    }
    let suggested = listing(&other, "").await;
    assert_eq!(suggested.len(), 1, "{suggested:?}");
    check_suggestion(&suggested[0], &theirs);

    let audit = api
        .get("/v1/audit-logs?action=template_suggestion_dismissed")
        .await;
    let entries = audit.body["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "dismissing twice audits once: {audit:?}");
    assert_eq!(entries[0]["target"], format!("template_suggestion:{id}"));
}

async fn suggestions_stay_within_the_tenant_and_bad_input_is_a_problem(backend: Backend) {
    let ctx = start(backend).await;
    let a = &ctx.api;
    for i in 0..3 {
        new_evaluation(a, invoice(0.002 * i as f64, 5)).await;
    }
    let list = listing(a, "").await;
    assert_eq!(list.len(), 1);
    let id = list[0]["id"].as_str().unwrap().to_string();

    // Another tenant sees nothing of it and cannot decide on it.
    let b = second_tenant(&ctx).await;
    let theirs = b.get(LIST).await;
    assert_eq!(theirs.status, 200);
    assert_eq!(theirs.body["suggestions"], json!([]));
    assert_eq!(theirs.body["evaluations_considered"], 0);
    for r in [
        b.post(
            &format!("{LIST}/{id}/accept"),
            &json!({"template_id": "stolen"}),
        )
        .await,
        b.post(&format!("{LIST}/{id}/dismiss"), &json!({})).await,
    ] {
        assert_eq!(r.status, 404, "{r:?}");
        assert_eq!(r.body["code"], "NOT_FOUND");
    }
    // An id that never named anything is a 404 too; one that names an evaluation of the
    // listing but is no suggestion of it any more (here: under a larger minimum) is 409.
    let unknown = "0".repeat(64);
    let r = a
        .post(&format!("{LIST}/{unknown}/dismiss"), &json!({}))
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    let r = a
        .post(
            &format!("{LIST}/{id}/accept?min_size=4"),
            &json!({"template_id": "inv"}),
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.body["detail"].as_str().unwrap().contains("list"), "{r:?}");

    // Bad input: problem documents naming what is wrong, never a 500.
    let problem = |r: &crate::evaluation::Resp, status: u16, code: &str, field: Option<&str>| {
        assert_eq!(r.status, status, "{r:?}");
        assert_eq!(
            r.headers["content-type"], "application/problem+json",
            "{r:?}"
        );
        assert_eq!(r.body["code"], code, "{r:?}");
        if let Some(f) = field {
            let fields: Vec<&str> = r.body["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["field"].as_str().unwrap())
                .collect();
            assert!(fields.contains(&f), "{f} not in {r:?}");
        }
    };
    for (query, field) in [
        ("?from_ts=yesterday", "from_ts"),
        (
            "?from_ts=2026-01-02T00:00:00Z&to_ts=2026-01-01T00:00:00Z",
            "from_ts",
        ),
        (
            "?from_ts=2020-01-01T00:00:00Z&to_ts=2026-01-01T00:00:00Z",
            "to_ts",
        ),
        ("?min_size=1", "min_size"),
        ("?min_size=lots", "min_size"),
    ] {
        let r = a.get(&format!("{LIST}{query}")).await;
        problem(&r, 400, "INVALID_QUERY", Some(field));
        let r = a
            .post(
                &format!("{LIST}/{id}/accept{query}"),
                &json!({"template_id": "inv"}),
            )
            .await;
        problem(&r, 400, "INVALID_QUERY", Some(field));
    }
    for path in [
        format!("{LIST}/not-a-suggestion/accept"),
        format!("{LIST}/{}/dismiss", &id[1..]),
    ] {
        let r = a.post(&path, &json!({"template_id": "inv"})).await;
        problem(&r, 422, "VALIDATION_FAILED", Some("id"));
    }
    let accept = format!("{LIST}/{id}/accept");
    for (body, field) in [
        (json!({}), "template_id"),
        (json!({"template_id": "has space"}), "template_id"),
        (
            json!({"template_id": "ok", "name": "x".repeat(201)}),
            "name",
        ),
        (json!({"template_id": "ok", "version": 2}), "version"),
    ] {
        let r = a.post(&accept, &body).await;
        problem(&r, 422, "VALIDATION_FAILED", None);
        let text = r.body.to_string();
        assert!(text.contains(field), "{field}: {r:?}");
    }
    let r = a
        .send(
            reqwest::Method::POST,
            &accept,
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert!(matches!(r.status.as_u16(), 400 | 422), "{r:?}");
    // A read-only key lists but cannot decide.
    let reader = a.minted(&["read"]).await;
    assert_eq!(reader.get(LIST).await.status, 200);
    let r = reader.post(&accept, &json!({"template_id": "inv"})).await;
    problem(&r, 403, "INSUFFICIENT_SCOPE", None);
    let r = reader
        .post(&format!("{LIST}/{id}/dismiss"), &json!({}))
        .await;
    problem(&r, 403, "INSUFFICIENT_SCOPE", None);
    // Nothing above changed the suggestion.
    assert_eq!(listing(a, "").await, list);

    // The routes are in the served OpenAPI description, under their own tag.
    let spec: Value = reqwest::get(ctx.server.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, method) in [
        (LIST.to_string(), "get"),
        (format!("{LIST}/{{id}}/accept"), "post"),
        (format!("{LIST}/{{id}}/dismiss"), "post"),
    ] {
        let op = &spec["paths"][&path][method];
        assert_eq!(op["tags"], json!(["suggestions"]), "{path} {method}: {op}");
    }
    assert!(
        spec["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "suggestions"),
        "{}",
        spec["tags"]
    );
}

/// SROIE receipts of issuers no template knows, evaluated through the server: the
/// suggestions must be the engine's own clusters of the same documents, and group the
/// receipts by issuer. Ignored without the data (CI runs it, and fails without it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs ../shared/data (run with --ignored)"]
async fn sroie_receipts_of_unregistered_issuers_are_suggested_by_issuer() {
    use preflight_engine::{cluster_layouts, validate, ClusterInput, ClusterParams};
    use preflight_quality::data::{by_group, default_data_dir, load_sroie};

    let docs = load_sroie(&default_data_dir()).unwrap_or_else(|e| panic!("{e}"));
    // The eight issuers with the most receipts (ties by name), up to 12 receipts each.
    let groups = by_group(&docs);
    let mut issuers: Vec<(&str, usize)> = groups.iter().map(|(g, m)| (*g, m.len())).collect();
    issuers.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    issuers.truncate(8);
    assert!(issuers.iter().all(|i| i.1 >= 5), "{issuers:?}");
    let ctx = start_with(Backend::Embedded, base_options()).await;
    let api = &ctx.api;
    let mut issuer_of: BTreeMap<String, String> = BTreeMap::new();
    let mut sent = Vec::new();
    // Round-robin over issuers, so arrival order mixes them as a pipeline would.
    for round in 0..12 {
        for (g, _) in &issuers {
            let Some(d) = groups[g].get(round) else {
                continue;
            };
            let e = api
                .evaluate(
                    &json!({"structural_features": d.features, "extractor_metadata": d.extractor}),
                )
                .await;
            let id = e["evaluation_id"].as_str().unwrap().to_string();
            if e["decision"] == "NEW" {
                issuer_of.insert(id.clone(), g.to_string());
                sent.push((id, *d));
            }
        }
    }
    assert!(sent.len() >= 60, "only {} receipts were NEW", sent.len());

    let r = api.get(LIST).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["evaluations_considered"], sent.len());
    let suggestions = r.body["suggestions"].as_array().unwrap();

    // The server's suggestions are the engine's clusters of the same documents.
    let validated: Vec<_> = sent
        .iter()
        .map(|(_, d)| validate(&d.features, &d.extractor).expect("real data validates"))
        .collect();
    let inputs: Vec<ClusterInput<'_>> = sent
        .iter()
        .zip(&validated)
        .map(|((id, _), v)| ClusterInput { id, document: v })
        .collect();
    let engine = cluster_layouts(&inputs, &ClusterParams::default());
    let by_key = |key: &str| engine.iter().find(|c| c.key == key);
    assert_eq!(suggestions.len(), engine.len(), "{r:?}");
    for s in suggestions {
        let c =
            by_key(s["id"].as_str().unwrap()).unwrap_or_else(|| panic!("not the engine's: {s}"));
        assert_eq!(s["size"], c.members.len());
        assert_eq!(
            s["representative"]["evaluation_id"],
            c.representative.as_str()
        );
        assert_eq!(
            ids(&s["exemplar_evaluation_ids"]),
            c.exemplars.iter().cloned().collect()
        );
    }

    // And they group the receipts by issuer: clusters are (nearly) pure, and every issuer
    // leads one.
    let (mut clustered, mut majority) = (0, 0);
    let mut led: BTreeSet<&str> = BTreeSet::new();
    for c in &engine {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for m in &c.members {
            *counts.entry(issuer_of[m].as_str()).or_default() += 1;
        }
        let (top, n) = counts
            .iter()
            .max_by_key(|x| *x.1)
            .map(|(g, n)| (*g, *n))
            .unwrap();
        clustered += c.members.len();
        majority += n;
        if 2 * n > c.members.len() {
            led.insert(top);
        }
        println!("suggestion of {} receipts: {counts:?}", c.members.len());
    }
    println!(
        "SROIE through the server: {} NEW receipts of {} issuers, {} suggestions holding \
         {clustered} of them, purity {majority}/{clustered}, {} issuers lead one",
        sent.len(),
        issuers.len(),
        engine.len(),
        led.len()
    );
    assert!(
        majority * 100 >= clustered * 90,
        "purity {majority}/{clustered}"
    );
    assert!(
        clustered * 100 >= sent.len() * 70,
        "{clustered} of {} clustered",
        sent.len()
    );
    assert!(
        led.len() * 100 >= issuers.len() * 75,
        "{} of {} issuers lead a suggestion",
        led.len(),
        issuers.len()
    );
}
