//! Alert rules and the alerts evaluations raise, end to end on the real binary and both
//! backends: the built-ins while a tenant has no rules, its own rules (which replace them),
//! occurrences of an unresolved alert, acknowledge and resolve, filters, validation, scopes
//! and tenant isolation.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::eventually;

use crate::evaluation::{
    base_options, doc, doc_with_confidence, empty_extraction, invoice, on_both_backends,
    second_tenant, start, start_with, two_column_text, Api, Backend, Resp,
};
use crate::support::{ServerOptions, TestServer};

on_both_backends!(
    the_builtins_apply_until_a_tenant_has_rules_and_repeats_are_occurrences,
    rules_fire_past_their_thresholds_and_are_checked_scoped_and_isolated,
    an_extractor_upgrade_is_named_reviewed_and_alerted_until_a_reviewer_confirms_it,
    window_rules_fire_when_a_rate_crosses_on_enough_volume_and_repeat_as_occurrences,
);

async fn alerts(api: &Api, query: &str) -> Vec<Value> {
    let r = api.get(&format!("/v1/alerts?{query}")).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body["items"].as_array().unwrap().clone()
}

fn from_vendor(mut body: Value, vendor: &str) -> Value {
    body["extractor_metadata"]["vendor"] = json!(vendor);
    body
}

fn assert_problem(r: &Resp, status: u16, field: Option<&str>) {
    assert_eq!(r.status.as_u16(), status, "{r:?}");
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json"),
        "{r:?}"
    );
    if let Some(field) = field {
        let fields: Vec<&str> = r.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{field} not in {r:?}");
    }
}

async fn the_builtins_apply_until_a_tenant_has_rules_and_repeats_are_occurrences(backend: Backend) {
    let ctx = start(backend).await;
    let api = &ctx.api;

    // The tenant's first evaluation from a vendor: one info alert, and only once.
    let first = api.evaluate(&doc(two_column_text())).await;
    api.evaluate(&doc(two_column_text())).await;
    let all = alerts(api, "").await;
    assert_eq!(all.len(), 1, "{all:?}");
    let a = &all[0];
    assert_eq!(a["metric"], "unknown_provider");
    assert_eq!(a["severity"], "info");
    assert_eq!(a["status"], "open");
    assert_eq!(a["rule_id"], Value::Null, "a built-in rule");
    assert_eq!(a["evaluation_id"], first["evaluation_id"]);
    assert_eq!(a["occurrences"], 1);
    assert_eq!(a["delivery_status"], "no_endpoint");
    assert_eq!(a["details"]["vendor"], "aws");

    // A matched document from an extractor that is unsure of itself: reliability below
    // 0.80 on the template, one alert however often it happens while unresolved.
    api.create_template(&json!({"template_id": "inv", "structural_features": invoice(0.0, 5)}))
        .await;
    let unsure = doc_with_confidence(invoice(0.0, 5), 0.2, "unsure");
    let e1 = api.evaluate(&unsure).await;
    let e2 = api.evaluate(&unsure).await;
    assert!(e1["reliability_score"].as_f64().unwrap() < 0.8, "{e1}");
    let sure = api
        .evaluate(&doc_with_confidence(invoice(0.0, 5), 0.99, "sure"))
        .await;
    assert!(sure["reliability_score"].as_f64().unwrap() >= 0.8, "{sure}");
    let low = alerts(api, "metric=reliability").await;
    assert_eq!(low.len(), 1, "{low:?}");
    let low = &low[0];
    assert_eq!(low["severity"], "warning");
    assert_eq!(low["template_id"], "inv");
    assert_eq!(low["threshold"], 0.8);
    assert_eq!(low["occurrences"], 2);
    assert_eq!(low["evaluation_id"], e1["evaluation_id"]);
    assert_eq!(low["last_evaluation_id"], e2["evaluation_id"]);
    assert_eq!(low["value"], e1["reliability_score"]);

    // Filters.
    assert_eq!(alerts(api, "severity=info").await.len(), 1);
    assert_eq!(alerts(api, "status=open").await.len(), 2);
    assert_eq!(alerts(api, "template_id=inv").await.len(), 1);
    assert!(alerts(api, "status=resolved").await.is_empty());
    let page = api.get("/v1/alerts?limit=1").await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 1);
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let rest = alerts(api, &format!("limit=1&cursor={cursor}")).await;
    assert_eq!(rest.len(), 1);
    assert_ne!(rest[0]["id"], page.body["items"][0]["id"]);
    for bad in [
        "severity=loud",
        "metric=latency",
        "status=closed",
        "delivery_status=sent",
    ] {
        let field = bad.split('=').next().unwrap();
        assert_problem(
            &api.get(&format!("/v1/alerts?{bad}")).await,
            422,
            Some(field),
        );
    }

    // Acknowledge (twice: the same answer), resolve, and no acknowledging a resolved one.
    let id = low["id"].as_str().unwrap();
    let acked = api
        .post(&format!("/v1/alerts/{id}/acknowledge"), &json!({}))
        .await;
    assert_eq!(acked.status, 200, "{acked:?}");
    assert_eq!(acked.body["status"], "acknowledged");
    assert!(acked.body["acknowledged_by"]
        .as_str()
        .unwrap()
        .starts_with("key:"));
    let again = api
        .post(&format!("/v1/alerts/{id}/acknowledge"), &json!({}))
        .await;
    assert_eq!(again.body, acked.body);
    let resolved = api
        .post(&format!("/v1/alerts/{id}/resolve"), &json!({}))
        .await;
    assert_eq!(resolved.status, 200, "{resolved:?}");
    assert_eq!(resolved.body["status"], "resolved");
    assert_problem(
        &api.post(&format!("/v1/alerts/{id}/acknowledge"), &json!({}))
            .await,
        409,
        None,
    );
    let one = api.get(&format!("/v1/alerts/{id}")).await;
    assert_eq!(one.body, resolved.body);
    // Once resolved, the next firing is a new alert.
    api.evaluate(&unsure).await;
    let reliability = alerts(api, "metric=reliability").await;
    assert_eq!(reliability.len(), 2, "{reliability:?}");
    assert_eq!(reliability[0]["status"], "open");
    assert_eq!(reliability[0]["occurrences"], 1);
    let audit = api.get("/v1/audit-logs?limit=20").await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"alert_acknowledged"), "{actions:?}");
    assert!(actions.contains(&"alert_resolved"), "{actions:?}");

    // Unknown ids, and malformed ones, are 404.
    let nobody = uuid::Uuid::now_v7();
    assert_problem(&api.get(&format!("/v1/alerts/{nobody}")).await, 404, None);
    assert_problem(
        &api.post("/v1/alerts/not-an-id/resolve", &json!({})).await,
        404,
        None,
    );
}

async fn rules_fire_past_their_thresholds_and_are_checked_scoped_and_isolated(backend: Backend) {
    let ctx = start(backend).await;
    let api = &ctx.api;
    api.create_template(&json!({"template_id": "inv", "structural_features": invoice(0.0, 5)}))
        .await;

    // A rule of the tenant's own: the built-ins stop (no unknown-provider alert for azure).
    let created = api
        .post(
            "/v1/alert-rules",
            &json!({"name": "shaky extraction", "metric": "reliability", "operator": "lt",
                    "threshold": 0.95, "severity": "critical", "template_id": "inv"}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let rule = created.body.clone();
    assert_eq!(rule["enabled"], true);
    assert_eq!(rule["operator"], "lt");
    let rule_id = rule["id"].as_str().unwrap();
    let listed = api.get("/v1/alert-rules").await;
    assert_eq!(listed.body["items"], json!([rule]));

    let matched = api
        .evaluate(&from_vendor(
            doc_with_confidence(invoice(0.0, 5), 0.6, "m"),
            "azure",
        ))
        .await;
    assert_eq!(matched["template_id"], "inv", "{matched}");
    let unmatched = api
        .evaluate(&from_vendor(doc(two_column_text()), "azure"))
        .await;
    assert_eq!(unmatched["template_id"], Value::Null, "{unmatched}");
    let all = alerts(api, "").await;
    assert_eq!(
        all.len(),
        1,
        "only the rule fired, on its template: {all:?}"
    );
    assert_eq!(all[0]["rule_id"], rule_id);
    assert_eq!(all[0]["rule_name"], "shaky extraction");
    assert_eq!(all[0]["severity"], "critical");
    assert_eq!(all[0]["evaluation_id"], matched["evaluation_id"]);

    // Disabled, it stops firing; its alert stays.
    let off = api
        .patch(
            &format!("/v1/alert-rules/{rule_id}"),
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(off.status, 200, "{off:?}");
    assert_eq!(off.body["enabled"], false);
    assert_eq!(off.body["threshold"], 0.95, "fields not sent are kept");
    let id = all[0]["id"].as_str().unwrap();
    api.post(&format!("/v1/alerts/{id}/resolve"), &json!({}))
        .await;
    api.evaluate(&doc_with_confidence(invoice(0.0, 5), 0.6, "m2"))
        .await;
    assert_eq!(alerts(api, "status=open").await.len(), 0);

    // An event rule: a new vendor.
    let vendors = api
        .post(
            "/v1/alert-rules",
            &json!({"name": "new extractor", "metric": "unknown_provider", "severity": "warning"}),
        )
        .await;
    assert_eq!(vendors.status, 201, "{vendors:?}");
    api.evaluate(&from_vendor(doc(two_column_text()), "google"))
        .await;
    let open = alerts(api, "status=open").await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["metric"], "unknown_provider");
    assert_eq!(open[0]["details"]["vendor"], "google");
    assert_eq!(open[0]["rule_id"], vendors.body["id"]);

    // Every problem of a rule at once, with its field.
    for (body, field) in [
        (
            json!({"name": "x", "metric": "latency", "severity": "info"}),
            "metric",
        ),
        (
            json!({"name": "x", "metric": "drift", "severity": "info"}),
            "threshold",
        ),
        (
            json!({"name": "x", "metric": "drift", "operator": "ge", "threshold": 0.3, "severity": "info"}),
            "operator",
        ),
        (
            json!({"name": "x", "metric": "drift", "operator": "gt", "threshold": 1.5, "severity": "info"}),
            "threshold",
        ),
        (
            json!({"name": "x", "metric": "change_point", "operator": "gt", "threshold": 0.5, "severity": "info"}),
            "operator",
        ),
        (
            json!({"name": "", "metric": "change_point", "severity": "info"}),
            "name",
        ),
        (
            json!({"name": "x", "metric": "change_point", "severity": "loud"}),
            "severity",
        ),
        (
            json!({"name": "x", "metric": "change_point", "severity": "info", "template_id": "no spaces"}),
            "template_id",
        ),
    ] {
        assert_problem(&api.post("/v1/alert-rules", &body).await, 422, Some(field));
    }
    let change = api
        .patch(
            &format!("/v1/alert-rules/{rule_id}"),
            &json!({"threshold": 2.0}),
        )
        .await;
    assert_problem(&change, 422, Some("threshold"));
    let unknown_field = api
        .patch(
            &format!("/v1/alert-rules/{rule_id}"),
            &json!({"colour": "red"}),
        )
        .await;
    assert_eq!(unknown_field.status, 422, "{unknown_field:?}");
    let everywhere = api
        .patch(
            &format!("/v1/alert-rules/{rule_id}"),
            &json!({"template_id": null}),
        )
        .await;
    assert_eq!(
        everywhere.body["template_id"],
        Value::Null,
        "{everywhere:?}"
    );

    // A read-only key reads rules and alerts but changes neither.
    let reader = api.minted(&["read"]).await;
    assert_eq!(reader.get("/v1/alert-rules").await.status, 200);
    assert_eq!(reader.get("/v1/alerts").await.status, 200);
    let denied = reader
        .post(
            "/v1/alert-rules",
            &json!({"name": "x", "metric": "change_point", "severity": "info"}),
        )
        .await;
    assert_problem(&denied, 403, None);
    assert_eq!(denied.body["code"], "INSUFFICIENT_SCOPE");
    let alert_id = open[0]["id"].as_str().unwrap();
    assert_problem(
        &reader
            .post(&format!("/v1/alerts/{alert_id}/acknowledge"), &json!({}))
            .await,
        403,
        None,
    );

    // Another tenant sees none of it, and cannot touch it.
    let other = second_tenant(&ctx).await;
    assert_eq!(other.get("/v1/alert-rules").await.body["items"], json!([]));
    assert_eq!(alerts(&other, "").await, Vec::<Value>::new());
    assert_problem(
        &other.get(&format!("/v1/alerts/{alert_id}")).await,
        404,
        None,
    );
    for path in [
        format!("/v1/alerts/{alert_id}/acknowledge"),
        format!("/v1/alerts/{alert_id}/resolve"),
    ] {
        assert_problem(&other.post(&path, &json!({})).await, 404, None);
    }
    assert_problem(
        &other
            .patch(
                &format!("/v1/alert-rules/{rule_id}"),
                &json!({"enabled": true}),
            )
            .await,
        404,
        None,
    );
    assert_problem(
        &other.delete(&format!("/v1/alert-rules/{rule_id}")).await,
        404,
        None,
    );
    assert_eq!(
        api.get(&format!("/v1/alerts/{alert_id}")).await.body["status"],
        "open"
    );

    // Deleted: gone, and a second delete is a 404.
    assert_eq!(
        api.delete(&format!("/v1/alert-rules/{rule_id}"))
            .await
            .status,
        204
    );
    assert_problem(
        &api.delete(&format!("/v1/alert-rules/{rule_id}")).await,
        404,
        None,
    );
    assert_problem(&api.delete("/v1/alert-rules/not-an-id").await, 404, None);
    assert_eq!(
        api.get("/v1/alert-rules").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

fn with_version(mut body: Value, version: &str) -> Value {
    body["extractor_metadata"]["version"] = json!(version);
    body
}

fn reason_codes(evaluation: &Value) -> Vec<&str> {
    evaluation["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect()
}

async fn an_extractor_upgrade_is_named_reviewed_and_alerted_until_a_reviewer_confirms_it(
    backend: Backend,
) {
    let ctx = start(backend).await;
    let api = &ctx.api;
    // Registered with the extractor that produced the sample.
    let created = api
        .create_template(
            &json!({"template_id": "inv", "structural_features": invoice(0.0, 5),
            "extractor": {"vendor": "aws", "model": "textract", "version": "2024-06"}}),
        )
        .await;
    assert_eq!(
        created["seen_extractors"],
        json!([{"vendor": "aws", "model": "textract", "version": "2024-06"}])
    );
    let same = api.evaluate(&doc(invoice(0.0, 5))).await;
    assert_eq!(same["decision"], "MATCH", "{same}");

    // The same layout from the upgraded extractor: identified, named, reviewed, alerted.
    let upgraded = with_version(doc(invoice(0.0, 5)), "2025-01");
    let first = api.evaluate(&upgraded).await;
    assert_eq!(first["decision"], "REVIEW", "{first}");
    assert_eq!(first["template_id"], "inv");
    assert!(
        reason_codes(&first).contains(&"EXTRACTOR_CHANGED"),
        "{first}"
    );
    api.evaluate(&upgraded).await;
    let changed = alerts(api, "metric=extractor_changed").await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["occurrences"], 2);
    assert_eq!(changed[0]["evaluation_id"], first["evaluation_id"]);
    assert_eq!(changed[0]["details"]["extractor"], "aws/textract/2025-01");
    assert!(
        changed[0]["message"].as_str().unwrap().contains("2025-01"),
        "{changed:?}"
    );

    // A reviewer confirms it: the version has seen the upgrade, which now matches.
    let id = first["evaluation_id"].as_str().unwrap();
    let fb = api
        .post(
            &format!("/v1/evaluations/{id}/feedback"),
            &json!({"outcome": "correct"}),
        )
        .await;
    assert_eq!(fb.status, 200, "{fb:?}");
    let template = api.get("/v1/templates/inv").await;
    assert_eq!(
        template.body["seen_extractors"].as_array().unwrap().len(),
        2,
        "{template:?}"
    );
    let after = api.evaluate(&upgraded).await;
    assert!(
        !reason_codes(&after).contains(&"EXTRACTOR_CHANGED"),
        "{after}"
    );
    assert_eq!(after["decision"], "MATCH", "{after}");

    // Registered without an extractor: the first matched evaluation's is the first it sees.
    api.create_template(
        &json!({"template_id": "letter", "structural_features": two_column_text()}),
    )
    .await;
    let seeded = api
        .evaluate(&from_vendor(doc(two_column_text()), "azure"))
        .await;
    assert_eq!(seeded["template_id"], "letter", "{seeded}");
    assert!(
        !reason_codes(&seeded).contains(&"EXTRACTOR_CHANGED"),
        "{seeded}"
    );
    let seen = api.get("/v1/templates/letter").await;
    assert_eq!(
        seen.body["seen_extractors"],
        json!([{"vendor": "azure", "model": "textract", "version": "2024-06"}])
    );
    // Every replica reloads the version (its revision moved), this one included.
    let other = with_version(from_vendor(doc(two_column_text()), "azure"), "v4");
    let named = eventually(Duration::from_secs(5), || async {
        let e = api.evaluate(&other).await;
        reason_codes(&e).contains(&"EXTRACTOR_CHANGED").then_some(e)
    })
    .await
    .expect("the seeded extractor was never used to name a change");
    assert_eq!(named["template_id"], "letter");
}

/// Creates a rule and returns its id.
async fn rule(api: &Api, body: Value) -> String {
    let r = api.post("/v1/alert-rules", &body).await;
    assert_eq!(r.status, 201, "{r:?}");
    r.body["id"].as_str().unwrap().to_string()
}

async fn window_rules_fire_when_a_rate_crosses_on_enough_volume_and_repeat_as_occurrences(
    backend: Backend,
) {
    let ctx = start_with(
        backend,
        base_options().with("ALERT_WINDOW_CHECK_SECONDS", "1"),
    )
    .await;
    let api = &ctx.api;
    let new_rate = rule(
        api,
        json!({"name": "too many unknown layouts", "metric": "new_rate", "operator": "gt",
               "threshold": 0.5, "severity": "critical", "window_seconds": 600,
               "min_volume": 4}),
    )
    .await;
    rule(
        api,
        json!({"name": "automation fell", "metric": "automation_rate", "operator": "lt",
               "threshold": 0.5, "severity": "warning", "window_seconds": 600,
               "min_volume": 4}),
    )
    .await;
    // The same rejects would cross this one, but never on its volume.
    rule(
        api,
        json!({"name": "rejects", "metric": "reject_rate", "operator": "gt", "threshold": 0.1,
               "severity": "warning", "window_seconds": 600, "min_volume": 100}),
    )
    .await;
    let shown = api.get(&format!("/v1/alert-rules/{new_rate}")).await;
    assert_eq!(shown.body["window_seconds"], 600, "{shown:?}");
    assert_eq!(shown.body["min_volume"], 4);
    assert!(shown.body["checked_until"].is_string(), "{shown:?}");

    // No templates: everything is NEW (or REJECT), but 3 evaluations are below volume.
    for _ in 0..2 {
        api.evaluate(&doc(two_column_text())).await;
    }
    let rejected = api.evaluate(&doc(empty_extraction())).await;
    assert_eq!(rejected["decision"], "REJECT");
    let checked_before = shown.body["checked_until"].as_str().unwrap().to_string();
    let moved = eventually(Duration::from_secs(10), || async {
        let r = api.get(&format!("/v1/alert-rules/{new_rate}")).await;
        let until = r.body["checked_until"].as_str()?.to_string();
        (until > checked_before).then_some(until)
    })
    .await;
    assert!(moved.is_some(), "the window check never ran");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for metric in ["new_rate", "automation_rate", "reject_rate"] {
        assert!(
            alerts(api, &format!("metric={metric}")).await.is_empty(),
            "{metric} fired below its volume"
        );
    }

    // The fourth: 3 of 4 NEW (0.75 > 0.5) and none MATCHed (0 < 0.5).
    api.evaluate(&doc(invoice(0.0, 5))).await;
    let fired = eventually(Duration::from_secs(10), || async {
        let a = alerts(api, "metric=new_rate").await;
        (!a.is_empty()).then_some(a)
    })
    .await
    .expect("new_rate never fired");
    assert_eq!(fired.len(), 1);
    let a = &fired[0];
    assert_eq!(a["severity"], "critical");
    assert_eq!(a["rule_id"], new_rate.as_str());
    assert_eq!(a["evaluation_id"], Value::Null, "{a}");
    assert_eq!(a["value"], 0.75, "{a}");
    assert_eq!(a["threshold"], 0.5);
    assert_eq!(a["details"]["volume"], 4, "{a}");
    assert_eq!(a["details"]["count"], 3);
    assert_eq!(a["details"]["window_seconds"], 600);
    assert!(
        a["message"]
            .as_str()
            .unwrap()
            .contains("3 of 4 evaluations were NEW"),
        "{a}"
    );
    let automation = eventually(Duration::from_secs(10), || async {
        let a = alerts(api, "metric=automation_rate").await;
        (!a.is_empty()).then_some(a)
    })
    .await
    .expect("automation_rate never fired");
    assert_eq!(automation[0]["value"], 0.0);
    assert!(alerts(api, "metric=reject_rate").await.is_empty());

    // While it is not resolved, each later check that still finds the rate is an
    // occurrence of the same alert; once resolved, the next crossing opens a new one.
    let id = a["id"].as_str().unwrap().to_string();
    let repeated = eventually(Duration::from_secs(10), || async {
        let r = api.get(&format!("/v1/alerts/{id}")).await;
        (r.body["occurrences"].as_i64()? >= 2).then_some(r)
    })
    .await;
    assert!(repeated.is_some(), "a lasting rate is not counted again");
    assert_eq!(alerts(api, "metric=new_rate").await.len(), 1);
    let resolved = api
        .post(&format!("/v1/alerts/{id}/resolve"), &json!({}))
        .await;
    assert_eq!(resolved.status, 200, "{resolved:?}");
    let reopened = eventually(Duration::from_secs(10), || async {
        let a = alerts(api, "metric=new_rate").await;
        (a.len() == 2).then_some(a)
    })
    .await;
    assert!(
        reopened.is_some(),
        "a crossing after the resolve opened nothing"
    );

    // Enabled again after a pause, a window rule starts from then: it does not look back
    // over the time it was off.
    let path = format!("/v1/alert-rules/{new_rate}");
    let off = api.patch(&path, &json!({"enabled": false})).await;
    assert_eq!(off.body["enabled"], false, "{off:?}");
    // Off for longer than a check interval, so the progress it had is clearly older.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let turned_on_at = chrono::Utc::now() - chrono::Duration::milliseconds(5);
    let on = api.patch(&path, &json!({"enabled": true})).await;
    let restarted: chrono::DateTime<chrono::Utc> =
        on.body["checked_until"].as_str().unwrap().parse().unwrap();
    assert!(restarted >= turned_on_at, "{on:?}");

    // Window rules are checked; another tenant sees neither the rules nor their alerts.
    for (body, field) in [
        (
            json!({"name": "w", "metric": "new_rate", "operator": "gt", "threshold": 0.5,
                   "severity": "info", "template_id": "invoice"}),
            "template_id",
        ),
        (
            json!({"name": "w", "metric": "review_rate", "operator": "gt", "threshold": 0.5,
                   "severity": "info", "window_seconds": 5}),
            "window_seconds",
        ),
        (
            json!({"name": "w", "metric": "drift", "operator": "gt", "threshold": 0.5,
                   "severity": "info", "min_volume": 5}),
            "min_volume",
        ),
        (
            json!({"name": "w", "metric": "endpoint_disabled", "severity": "info"}),
            "metric",
        ),
    ] {
        let r = api.post("/v1/alert-rules", &body).await;
        assert_problem(&r, 422, Some(field));
    }
    let other = second_tenant(&ctx).await;
    assert_eq!(
        other
            .get(&format!("/v1/alert-rules/{new_rate}"))
            .await
            .status,
        404
    );
    assert_eq!(other.get(&format!("/v1/alerts/{id}")).await.status, 404);
    let theirs = other.get("/v1/alerts").await;
    assert_eq!(theirs.body["items"], json!([]), "{theirs:?}");
}

/// A server on a database that outlives it (embedded, in `dir`), with the keys of
/// `base` (so a restart accepts the keys the first process issued).
async fn on_database(base: &ServerOptions, dir: &std::path::Path, check_every: &str) -> TestServer {
    let options = ServerOptions {
        env: base.env.clone(),
        ..ServerOptions::default()
    };
    TestServer::start(
        options
            .with("PREFLIGHT_DATA_DIR", dir.to_str().unwrap())
            .with("ALERT_WINDOW_CHECK_SECONDS", check_every),
    )
    .await
}

/// Progress survives a crash: the window a dead process never checked is checked by the
/// next one, even when it ended long before that one started.
#[tokio::test]
async fn a_window_nobody_checked_before_a_crash_is_checked_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Checks once at start (before there is a rule), then not for an hour.
    let base = base_options();
    let mut first = on_database(&base, dir.path(), "3600").await;
    let key = first.first_start_key();
    let api = Api::new(&first.base, ("x-api-key", key.clone()));
    let id = rule(
        &api,
        json!({"name": "rejects", "metric": "reject_rate", "operator": "gt", "threshold": 0.5,
               "severity": "critical", "window_seconds": 10, "min_volume": 3}),
    )
    .await;
    for _ in 0..3 {
        api.evaluate(&doc(empty_extraction())).await;
    }
    first.signal(nix::sys::signal::Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(10)).await;
    // The window holding the rejects ends while nothing runs.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let second = on_database(&base, dir.path(), "1").await;
    let api = api_of(&second, &key);
    let fired = eventually(Duration::from_secs(15), || async {
        let a = alerts(&api, "metric=reject_rate").await;
        (!a.is_empty()).then_some(a)
    })
    .await
    .expect("the window checked by nobody was never checked");
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["rule_id"], id.as_str());
    assert_eq!(fired[0]["details"]["volume"], 3);
    assert_eq!(fired[0]["value"], 1.0);
}

fn api_of(server: &TestServer, key: &str) -> Api {
    Api::new(&server.base, ("x-api-key", key.to_string()))
}
