//! Webhook endpoints and delivery end to end: the real binary on both backends sends the
//! alerts its evaluations raise to a real HTTP receiver on loopback, signed as Standard
//! Webhooks (checked with the independent `standardwebhooks` crate), retried until the
//! receiver takes them, logged, redelivered on request, signed with both secrets during a
//! rotation; `410 Gone` disables an endpoint; the SSRF guard refuses internal receivers;
//! other tenants see nothing.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use crate::evaluation::{
    base_options, doc, on_both_backends, second_tenant, start, start_with, two_column_text, Api,
    Backend,
};
use crate::support::eventually;

on_both_backends!(
    alerts_reach_the_receiver_signed_retried_logged_and_redelivered,
    gone_disables_an_endpoint_and_internal_receivers_are_refused,
);

/// What the receiver was sent.
#[derive(Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn id(&self) -> &str {
        self.headers["webhook-id"].to_str().unwrap()
    }
}

/// A webhook receiver on loopback that answers the queued statuses (then 200) and keeps
/// every request.
#[derive(Clone, Default)]
struct Receiver {
    answers: Arc<Mutex<VecDeque<u16>>>,
    received: Arc<Mutex<Vec<Received>>>,
    url: String,
}

impl Receiver {
    async fn start() -> Receiver {
        let mut r = Receiver::default();
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    state
                        .received
                        .lock()
                        .unwrap()
                        .push(Received { headers, body });
                    let status = state.answers.lock().unwrap().pop_front().unwrap_or(200);
                    (StatusCode::from_u16(status).unwrap(), "thanks")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        r.url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    fn answer(&self, statuses: &[u16]) {
        self.answers.lock().unwrap().extend(statuses);
    }

    fn of_type(&self, kind: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.json()["type"] == kind)
            .cloned()
            .collect()
    }

    async fn wait_for(&self, kind: &str, n: usize) -> Vec<Received> {
        eventually(Duration::from_secs(15), || async {
            let got = self.of_type(kind);
            (got.len() >= n).then_some(got)
        })
        .await
        .unwrap_or_else(|| panic!("the receiver never got {n} {kind} requests"))
    }
}

/// An RFC 3339 time `offset` seconds from now.
fn rfc3339_from_now(offset: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset)).to_rfc3339()
}

/// Verifies a request with the independent implementation.
fn verified(secret: &str, r: &Received) -> bool {
    let wh = standardwebhooks::Webhook::new(secret).expect("a valid whsec_ secret");
    wh.verify(&r.body, &r.headers).is_ok()
}

/// A server whose SSRF guard lets loopback receivers through, with second-long retries.
fn receiving() -> crate::support::ServerOptions {
    base_options()
        .with("WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8")
        .with("WEBHOOK_RETRY_SECONDS", "1,1,1")
}

async fn alerts_reach_the_receiver_signed_retried_logged_and_redelivered(backend: Backend) {
    let ctx = start_with(backend, receiving()).await;
    let api = &ctx.api;
    let receiver = Receiver::start().await;

    let created = api
        .post(
            "/v1/webhooks",
            &json!({"url": receiver.url, "description": "ops"}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let secret = created.body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let id = created.body["id"].as_str().unwrap().to_string();
    let shown = api.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(shown.status, 200);
    assert!(
        shown.body.get("secret").is_none(),
        "the secret is shown once: {shown:?}"
    );
    assert!(!shown.body.to_string().contains(&secret));
    let listed = api.get("/v1/webhooks").await;
    assert_eq!(listed.body["items"][0]["id"], id.as_str());

    // A test event, synchronously, signed.
    let test = api
        .post(&format!("/v1/webhooks/{id}/test"), &json!({}))
        .await;
    assert_eq!(test.status, 200, "{test:?}");
    assert_eq!(test.body["ok"], true, "{test:?}");
    assert_eq!(test.body["status_code"], 200);
    assert_eq!(test.body["response_excerpt"], "thanks");
    let tests = receiver.of_type("webhook.test");
    assert_eq!(tests.len(), 1);
    assert!(
        verified(&secret, &tests[0]),
        "the test event's signature does not verify"
    );

    // The receiver fails once: the alert (a first extractor vendor) arrives on the retry.
    receiver.answer(&[500]);
    let first = api.evaluate(&doc(two_column_text())).await;
    let got = receiver.wait_for("alert.created", 2).await;
    assert_eq!(got[0].id(), got[1].id(), "a retry keeps the event id");
    for r in &got {
        assert!(verified(&secret, r), "an alert's signature does not verify");
    }
    let event = got[1].json();
    assert_eq!(event["data"]["metric"], "unknown_provider");
    assert_eq!(event["data"]["evaluation_id"], first["evaluation_id"]);
    let alert_id = event["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(got[0].id(), alert_id);

    // The log: one delivery, two attempts, delivered; the alert says so.
    let delivered = eventually(Duration::from_secs(10), || async {
        let a = api.get(&format!("/v1/alerts/{alert_id}")).await;
        (a.body["delivery_status"] == "delivered").then_some(a)
    })
    .await;
    assert!(delivered.is_some(), "the alert never became delivered");
    let log = api.get(&format!("/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(log.status, 200, "{log:?}");
    let items = log.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{log:?}");
    assert_eq!(items[0]["status"], "delivered");
    assert_eq!(items[0]["attempts"], 2);
    assert_eq!(items[0]["event_id"], alert_id.as_str());
    let delivery_id = items[0]["id"].as_str().unwrap().to_string();
    let detail = api
        .get(&format!("/v1/webhooks/{id}/deliveries/{delivery_id}"))
        .await;
    let codes: Vec<i64> = detail.body["attempts_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [500, 200], "{detail:?}");

    // A repeat of the same unresolved alert is an occurrence: nothing more is sent.
    api.evaluate(&doc(two_column_text())).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.of_type("alert.created").len(), 2);

    // Redelivery on request, with the same event id.
    let again = api
        .post(
            &format!("/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver"),
            &json!({}),
        )
        .await;
    assert_eq!(again.status, 202, "{again:?}");
    let got = receiver.wait_for("alert.created", 3).await;
    assert_eq!(got[2].id(), alert_id);

    // During a rotation both secrets sign, so a receiver can switch without a gap.
    let rotated = api
        .post(&format!("/v1/webhooks/{id}/rotate-secret"), &json!({}))
        .await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    let new_secret = rotated.body["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    let mut azure = doc(two_column_text());
    azure["extractor_metadata"]["vendor"] = json!("azure");
    api.evaluate(&azure).await;
    let got = receiver.wait_for("alert.created", 4).await;
    let last = &got[3];
    assert_eq!(last.json()["data"]["details"]["vendor"], "azure");
    let signatures = last.headers["webhook-signature"].to_str().unwrap();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    assert!(verified(&secret, last) && verified(&new_secret, last));
}

async fn gone_disables_an_endpoint_and_internal_receivers_are_refused(backend: Backend) {
    let guarded = start(backend).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/hook",
        "ftp://example.com/hook",
    ] {
        let r = guarded.api.post("/v1/webhooks", &json!({"url": url})).await;
        assert_eq!(r.status, 422, "{url} was accepted: {r:?}");
        assert_eq!(r.body["errors"][0]["field"], "url", "{r:?}");
    }
    drop(guarded);

    // By host name this time: the delivery client resolves it through the guard.
    let ctx = start_with(
        backend,
        receiving().with("WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8,::1/128"),
    )
    .await;
    let api = &ctx.api;
    let receiver = Receiver::start().await;
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let created = api
        .post(
            "/v1/webhooks",
            &json!({"url": by_name, "min_severity": "info", "metrics": ["unknown_provider"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(created.body["metrics"], json!(["unknown_provider"]));
    let bad = api
        .post(
            "/v1/webhooks",
            &json!({"url": receiver.url, "metrics": ["latency"], "min_severity": "loud"}),
        )
        .await;
    assert_eq!(bad.status, 422, "{bad:?}");

    // A receiver that is gone disables its endpoint at once.
    receiver.answer(&[410]);
    api.evaluate(&doc(two_column_text())).await;
    receiver.wait_for("alert.created", 1).await;
    let disabled = eventually(Duration::from_secs(10), || async {
        let e = api.get(&format!("/v1/webhooks/{id}")).await;
        (e.body["enabled"] == false).then_some(e)
    })
    .await
    .expect("the endpoint was not disabled");
    assert!(disabled.body["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("410"));
    let alerts = api.get("/v1/alerts?metric=unknown_provider").await;
    assert_eq!(
        alerts.body["items"][0]["delivery_status"], "failed",
        "{alerts:?}"
    );

    // A read-only key sees endpoints but changes none; another tenant sees none.
    let minted = api
        .post(
            "/v1/api-keys",
            &json!({"name": "reader", "scopes": ["read"]}),
        )
        .await;
    let reader = Api::new(
        &ctx.server.base,
        (
            "x-api-key",
            minted.body["key"].as_str().unwrap().to_string(),
        ),
    );
    assert_eq!(reader.get("/v1/webhooks").await.status, 200);
    let denied = reader
        .post("/v1/webhooks", &json!({"url": receiver.url}))
        .await;
    assert_eq!(denied.status, 403, "{denied:?}");
    let other = second_tenant(&ctx).await;
    assert_eq!(other.get("/v1/webhooks").await.body["items"], json!([]));
    for path in [
        format!("/v1/webhooks/{id}"),
        format!("/v1/webhooks/{id}/deliveries"),
    ] {
        assert_eq!(other.get(&path).await.status, 404, "{path}");
    }
    for path in [
        format!("/v1/webhooks/{id}/test"),
        format!("/v1/webhooks/{id}/rotate-secret"),
    ] {
        assert_eq!(other.post(&path, &json!({})).await.status, 404, "{path}");
    }
    assert_eq!(
        other
            .patch(&format!("/v1/webhooks/{id}"), &json!({"enabled": true}))
            .await
            .status,
        404
    );
    assert_eq!(
        other.delete(&format!("/v1/webhooks/{id}")).await.status,
        404
    );

    // Turned back on by its tenant, the dead letters of the outage are sent again.
    let on = api
        .patch(&format!("/v1/webhooks/{id}"), &json!({"enabled": true}))
        .await;
    assert_eq!(on.body["enabled"], true, "{on:?}");
    assert_eq!(on.body["disabled_reason"], Value::Null);
    let range = json!({"from": "2020-01-01T00:00:00Z", "to": "2020-01-31T00:00:00Z"});
    let wide = api
        .post(&format!("/v1/webhooks/{id}/deliveries/redeliver"), &range)
        .await;
    assert_eq!(wide.status, 202, "{wide:?}");
    assert_eq!(wide.body["queued"], 0, "nothing was created then");
    let from = (rfc3339_from_now(-3600)).to_string();
    let to = (rfc3339_from_now(3600)).to_string();
    let requeued = api
        .post(
            &format!("/v1/webhooks/{id}/deliveries/redeliver"),
            &json!({"from": from, "to": to, "status": "failed"}),
        )
        .await;
    assert_eq!(requeued.body["queued"], 1, "{requeued:?}");
    let got = receiver.wait_for("alert.created", 2).await;
    assert_eq!(got[0].id(), got[1].id(), "a redelivery keeps the event id");
    let too_long = json!({"from": "2020-01-01T00:00:00Z", "to": "2021-01-01T00:00:00Z"});
    let r = api
        .post(
            &format!("/v1/webhooks/{id}/deliveries/redeliver"),
            &too_long,
        )
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(api.delete(&format!("/v1/webhooks/{id}")).await.status, 204);
    assert_eq!(api.get(&format!("/v1/webhooks/{id}")).await.status, 404);
    let logs = ctx.server.logs();
    assert!(
        !logs.contains(created.body["secret"].as_str().unwrap()),
        "a webhook secret reached the logs"
    );
}
