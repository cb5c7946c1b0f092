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
    a_failing_endpoint_trips_its_circuit_is_probed_and_closes_on_success,
    an_endpoint_failing_for_too_long_is_disabled_with_an_alert_and_loses_nothing,
    a_kill_during_delivery_under_load_loses_no_event_and_repeats_none_answered_before_it,
);

/// What the receiver was sent.
#[derive(Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
    at: chrono::DateTime<chrono::Utc>,
    /// What the receiver answered.
    status: u16,
    /// When the answer was ready to go (after `delay`).
    answered_at: chrono::DateTime<chrono::Utc>,
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
    /// Answered when no queued answer is left (200 unless changed).
    fallback: Arc<Mutex<Option<u16>>>,
    received: Arc<Mutex<Vec<Received>>>,
    /// How long each answer takes.
    delay: Arc<Mutex<Duration>>,
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
                    let at = chrono::Utc::now();
                    let status = state.answers.lock().unwrap().pop_front();
                    let status = status.or(*state.fallback.lock().unwrap()).unwrap_or(200);
                    let delay = *state.delay.lock().unwrap();
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    state.received.lock().unwrap().push(Received {
                        headers,
                        body,
                        at,
                        status,
                        answered_at: chrono::Utc::now(),
                    });
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

    /// Answers `status` from now on (queued answers are dropped).
    fn always(&self, status: u16) {
        self.answers.lock().unwrap().clear();
        *self.fallback.lock().unwrap() = Some(status);
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

/// Creates an endpoint and returns its id.
async fn endpoint(api: &Api, body: Value) -> String {
    let r = api.post("/v1/webhooks", &body).await;
    assert_eq!(r.status, 201, "{r:?}");
    r.body["id"].as_str().unwrap().to_string()
}

fn from_vendor(vendor: &str) -> Value {
    let mut body = doc(two_column_text());
    body["extractor_metadata"]["vendor"] = json!(vendor);
    body
}

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

async fn a_failing_endpoint_trips_its_circuit_is_probed_and_closes_on_success(backend: Backend) {
    let ctx = start_with(
        backend,
        receiving()
            .with("WEBHOOK_RETRY_SECONDS", "1,1,1,1,1,1,1,1,1,1")
            .with("WEBHOOK_CIRCUIT_SECONDS", "3"),
    )
    .await;
    let api = &ctx.api;
    let receiver = Receiver::start().await;
    let id = endpoint(api, json!({"url": receiver.url})).await;
    receiver.always(500);

    // Five failed attempts in a row trip the circuit.
    api.evaluate(&from_vendor("aws")).await;
    receiver.wait_for("alert.created", 5).await;
    let tripped = eventually(Duration::from_secs(10), || async {
        let e = api.get(&format!("/v1/webhooks/{id}")).await;
        (e.body["health"]["consecutive_failures"].as_i64()? >= 5).then_some(e)
    })
    .await
    .expect("the failures were not counted");
    let health = &tripped.body["health"];
    assert_eq!(health["consecutive_failures"], 5, "{tripped:?}");
    assert!(health["failing_since"].is_string());
    let open_until = time(&health["circuit_open_until"]);
    let fifth = receiver.of_type("alert.created")[4].at;
    assert!(
        open_until > fifth + chrono::Duration::milliseconds(2500),
        "{tripped:?}"
    );
    assert_eq!(tripped.body["enabled"], true, "tripping is not disabling");

    // While it is open nothing is sent, though a second alert is queued and its retry is
    // due; after the cooldown one probe goes, fails, and the circuit opens for longer.
    api.evaluate(&from_vendor("azure")).await;
    let probe = receiver.wait_for("alert.created", 6).await;
    assert!(
        probe[5].at >= open_until,
        "an attempt at {} while the circuit was open until {open_until}",
        probe[5].at
    );
    let longer = eventually(Duration::from_secs(10), || async {
        let e = api.get(&format!("/v1/webhooks/{id}")).await;
        (e.body["health"]["consecutive_failures"].as_i64()? >= 6).then_some(e)
    })
    .await
    .unwrap();
    let reopened_until = time(&longer.body["health"]["circuit_open_until"]);
    assert!(
        reopened_until >= probe[5].at + chrono::Duration::milliseconds(5500),
        "a failed probe doubles the cooldown: {longer:?}"
    );

    // The receiver recovers: the next probe succeeds, the circuit closes, and both alerts
    // arrive in the order they were raised.
    receiver.always(200);
    let delivered = eventually(Duration::from_secs(20), || async {
        let a = api.get("/v1/alerts?delivery_status=delivered").await;
        (a.body["items"].as_array()?.len() == 2).then_some(a)
    })
    .await;
    assert!(
        delivered.is_some(),
        "the alerts were not delivered after recovery"
    );
    let healthy = api.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(
        healthy.body["health"]["consecutive_failures"], 0,
        "{healthy:?}"
    );
    assert_eq!(healthy.body["health"]["circuit_open_until"], Value::Null);
    let ok: Vec<String> = receiver
        .of_type("alert.created")
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| {
            r.json()["data"]["details"]["vendor"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ok, ["aws", "azure"]);
    assert!(
        receiver
            .of_type("alert.created")
            .iter()
            .all(|r| r.at < open_until || r.at >= reopened_until || r.at == probe[5].at),
        "something was sent while the circuit was open"
    );
}

async fn an_endpoint_failing_for_too_long_is_disabled_with_an_alert_and_loses_nothing(
    backend: Backend,
) {
    let ctx = start_with(
        backend,
        receiving()
            .with("WEBHOOK_RETRY_SECONDS", "1,1,1,1,1,1,1,1,1,1,1,1")
            .with("WEBHOOK_CIRCUIT_SECONDS", "1")
            .with("WEBHOOK_DISABLE_AFTER_SECONDS", "3"),
    )
    .await;
    let api = &ctx.api;
    let broken = Receiver::start().await;
    let pager = Receiver::start().await;
    let id = endpoint(api, json!({"url": broken.url})).await;
    endpoint(
        api,
        json!({"url": pager.url, "metrics": ["endpoint_disabled"], "min_severity": "critical"}),
    )
    .await;
    broken.always(503);

    let first = api.evaluate(&from_vendor("aws")).await;
    let disabled = eventually(Duration::from_secs(30), || async {
        let e = api.get(&format!("/v1/webhooks/{id}")).await;
        (e.body["enabled"] == false).then_some(e)
    })
    .await
    .expect("a receiver failing for longer than the limit was not disabled");
    let reason = disabled.body["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("every attempt failed"), "{disabled:?}");
    assert!(broken.of_type("alert.created").len() >= 5);

    // The tenant is told, by an alert and at its other endpoint.
    let alerts = api.get("/v1/alerts?metric=endpoint_disabled").await;
    let told = &alerts.body["items"][0];
    assert_eq!(told["severity"], "critical", "{alerts:?}");
    assert_eq!(told["details"]["endpoint_id"], id.as_str());
    assert_eq!(told["evaluation_id"], Value::Null);
    let paged = pager.wait_for("alert.created", 1).await;
    assert_eq!(paged[0].json()["data"]["metric"], "endpoint_disabled");
    assert_eq!(
        pager.of_type("alert.created").len(),
        1,
        "only what it takes"
    );

    // Nothing is lost: the alert waits, and reaches the receiver once it is back and the
    // endpoint is enabled again (with a clean slate).
    let sent_while_broken = broken.of_type("alert.created").len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(broken.of_type("alert.created").len(), sent_while_broken);
    broken.always(200);
    let on = api
        .patch(&format!("/v1/webhooks/{id}"), &json!({"enabled": true}))
        .await;
    assert_eq!(on.status, 200, "{on:?}");
    assert_eq!(on.body["health"]["consecutive_failures"], 0, "{on:?}");
    let got = eventually(Duration::from_secs(15), || async {
        let ok: Vec<Received> = broken
            .of_type("alert.created")
            .into_iter()
            .filter(|r| r.status == 200)
            .collect();
        (!ok.is_empty()).then_some(ok)
    })
    .await
    .expect("the waiting alert was not delivered");
    assert_eq!(
        got[0].json()["data"]["evaluation_id"],
        first["evaluation_id"]
    );
}

/// A database and settings that outlive one server process.
struct Durable {
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
    _db: Option<crate::support::TestDatabase>,
}

impl Durable {
    async fn new(backend: Backend, receiver_delay_settings: &[(&str, &str)]) -> Durable {
        let dir = tempfile::tempdir().unwrap();
        // The keys too: a restart must accept the keys the first process issued.
        let mut env: Vec<(String, String)> = receiving().env.into_iter().collect();
        env.push((
            "PREFLIGHT_DATA_DIR".to_string(),
            dir.path().to_str().unwrap().to_string(),
        ));
        let db = match backend {
            Backend::Embedded => None,
            Backend::Postgres => {
                crate::support::require_redis().await;
                let db = crate::support::TestDatabase::create().await;
                env.push(("DATABASE_URL".into(), db.url.clone()));
                env.push(("REDIS_URL".into(), crate::support::redis_url()));
                Some(db)
            }
        };
        env.extend(
            receiver_delay_settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Durable {
            env,
            _dir: dir,
            _db: db,
        }
    }

    async fn start(&self) -> crate::support::TestServer {
        let mut options = crate::support::ServerOptions::default();
        for (k, v) in &self.env {
            options = options.with(k, v.clone());
        }
        crate::support::TestServer::start(options).await
    }
}

/// Sends evaluations from `first_vendor` on, each from a vendor never seen (so each raises
/// a new alert), four at a time, until `stop` or `count` were sent.
fn load(
    base: String,
    key: String,
    vendors: std::ops::Range<usize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(vendors.start));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (base, key, next, stop) =
                    (base.clone(), key.clone(), next.clone(), stop.clone());
                let end = vendors.end;
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if i >= end || stop.load(std::sync::atomic::Ordering::SeqCst) {
                            return;
                        }
                        // A request cut by the kill may or may not have committed; the
                        // server's alert list is the truth checked below.
                        let _ = client
                            .post(format!("{base}/v1/evaluate"))
                            .header("x-api-key", &key)
                            .json(&from_vendor(&format!("vendor-{i}")))
                            .send()
                            .await;
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.await;
        }
    })
}

async fn a_kill_during_delivery_under_load_loses_no_event_and_repeats_none_answered_before_it(
    backend: Backend,
) {
    // Short attempts, so the leases of the killed process run out within seconds.
    let durable = Durable::new(
        backend,
        &[
            ("WEBHOOK_TIMEOUT_SECONDS", "2"),
            ("WEBHOOK_RETRY_SECONDS", "1,1,1,1,1,1,1,1,1,1"),
        ],
    )
    .await;
    let receiver = Receiver::start().await;
    // Slow enough answers that deliveries are in flight when the process dies.
    *receiver.delay.lock().unwrap() = Duration::from_millis(20);
    let mut first = durable.start().await;
    let key = first.first_start_key();
    let api = Api::new(&first.base, ("x-api-key", key.clone()));
    endpoint(
        &api,
        json!({"url": receiver.url, "metrics": ["unknown_provider"]}),
    )
    .await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = load(first.base.clone(), key.clone(), 0..400, stop.clone());
    receiver.wait_for("alert.created", 40).await;
    first.signal(nix::sys::signal::Signal::SIGKILL);
    let killed_at = chrono::Utc::now();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    first.wait_exit(Duration::from_secs(10)).await;
    let _ = running.await;
    drop(first);

    // Started again on the same database, under more load.
    let second = durable.start().await;
    let api = Api::new(&second.base, ("x-api-key", key.clone()));
    let more = load(
        second.base.clone(),
        key.clone(),
        1000..1100,
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    more.await.unwrap();

    // Every alert the database holds reaches the receiver.
    let mut ids: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/alerts?metric=unknown_provider&limit=200&cursor={c}"),
            None => "/v1/alerts?metric=unknown_provider&limit=200".to_string(),
        };
        let page = api.get(&q).await;
        assert_eq!(page.status, 200, "{page:?}");
        for a in page.body["items"].as_array().unwrap() {
            ids.push(a["id"].as_str().unwrap().to_string());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert!(ids.len() >= 140, "only {} alerts were stored", ids.len());
    let all_there = eventually(Duration::from_secs(60), || async {
        let got: std::collections::HashSet<String> = receiver
            .of_type("alert.created")
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.id().to_string())
            .collect();
        ids.iter().all(|id| got.contains(id)).then_some(())
    })
    .await;
    assert!(
        all_there.is_some(),
        "after the restart some stored alerts never reached the receiver"
    );

    // None is sent again after a 2xx, except one whose 2xx the killed process had not
    // recorded yet (answered in the instant before the kill).
    let received = receiver.of_type("alert.created");
    let mut first_ok: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>> =
        std::collections::HashMap::new();
    let mut repeats = Vec::new();
    for r in &received {
        match first_ok.get(r.id()) {
            Some(answered) => repeats.push((r.id().to_string(), *answered)),
            None if r.status == 200 => {
                first_ok.insert(r.id().to_string(), r.answered_at);
            }
            None => {}
        }
    }
    let in_flight = chrono::Duration::seconds(2);
    for (id, answered) in &repeats {
        assert!(
            *answered > killed_at - in_flight && *answered <= killed_at + in_flight,
            "event {id} was answered 2xx at {answered} and sent again (the kill was at {killed_at})"
        );
    }
    assert!(repeats.len() <= 32, "{} repeats", repeats.len());
    let per_event: std::collections::HashMap<&str, usize> =
        received.iter().fold(Default::default(), |mut m, r| {
            *m.entry(r.id()).or_default() += 1;
            m
        });
    eprintln!(
        "kill -9 under load: {} alerts, {} requests, {} repeats of a 2xx in flight at the kill",
        ids.len(),
        per_event.values().sum::<usize>(),
        repeats.len()
    );
}
