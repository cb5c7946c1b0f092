//! Rate limiting at the HTTP level (issue #4): the real binary, real Redis and PostgreSQL.
//!
//! Isolation on the shared Redis: API-key state is keyed by key id, and every test starts
//! from a fresh database, so key ids never repeat. Client-IP state is shared by every test
//! that reaches Redis from 127.0.0.1, so tests that spend an IP budget either run embedded
//! (in-process limiter, one per server process) or, with Redis, trust 127.0.0.1 as a proxy
//! and send a random `X-Forwarded-For` address of their own. No test here exhausts
//! 127.0.0.1 in the shared Redis.

use std::time::{Duration, Instant};

use crate::support::relay::Relay;
use crate::support::{
    eventually, http_client, redis_url, require_redis, test_secret, ServerOptions, TestDatabase,
    TestServer,
};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

/// `RATE_LIMIT_PER_MINUTE` in these tests: one request is earned back every 3 s.
const PER_MINUTE: u32 = 20;
/// `RATE_LIMIT_UNAUTHENTICATED` in these tests: one request is earned back every 12 s.
const UNAUTHENTICATED: u32 = 5;

/// One response, read whole.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
    elapsed: Duration,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn number(&self, name: &str) -> Option<u64> {
        self.header(name).map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: {v:?} is not a number"))
        })
    }

    /// `(X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset)`, all or nothing.
    fn quota(&self) -> Option<(u64, u64, u64)> {
        let parts = (
            self.number("x-ratelimit-limit"),
            self.number("x-ratelimit-remaining"),
            self.number("x-ratelimit-reset"),
        );
        match parts {
            (Some(l), Some(r), Some(s)) => Some((l, r, s)),
            (None, None, None) => None,
            other => panic!(
                "incomplete rate-limit headers {other:?}: {:?}",
                self.headers
            ),
        }
    }

    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} quota={:?} retry-after={:?} {}",
            self.status,
            self.quota(),
            self.header("retry-after"),
            self.body
        )
    }
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    let started = Instant::now();
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("a whole body");
    Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        elapsed: started.elapsed(),
    }
}

/// `GET /v1/auth/me` with a key (and an `X-Forwarded-For` when given): authenticated, no
/// dependency checks.
async fn me(client: &reqwest::Client, server: &TestServer, key: &str, xff: Option<&str>) -> Reply {
    let mut request = client.get(server.url("/v1/auth/me"));
    if !key.is_empty() {
        request = request.header("x-api-key", key);
    }
    if let Some(xff) = xff {
        request = request.header("x-forwarded-for", xff);
    }
    send(request).await
}

/// A 429 as documented: problem+json `RATE_LIMITED`, `Retry-After` of 1..=`max_retry` s,
/// the quota headers with nothing remaining.
fn assert_rate_limited(r: &Reply, limit: u64, max_retry: u64) {
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{r:?}"
    );
    assert_eq!(r.code(), "RATE_LIMITED", "{r:?}");
    assert_eq!(r.body["status"], 429, "{r:?}");
    let retry = r.number("retry-after").expect("Retry-After on a 429");
    assert!((1..=max_retry).contains(&retry), "{r:?}");
    let (l, remaining, reset) = r.quota().expect("quota headers on a 429");
    assert_eq!((l, remaining), (limit, 0), "{r:?}");
    assert!((1..=61).contains(&reset), "{r:?}");
}

fn base_options(jwt_secret: &str, salt: &str) -> ServerOptions {
    ServerOptions::default()
        .with("JWT_SECRET", jwt_secret)
        .with("API_KEY_SALT", salt)
        .with("RATE_LIMIT_PER_MINUTE", PER_MINUTE.to_string())
        .with("RATE_LIMIT_UNAUTHENTICATED", UNAUTHENTICATED.to_string())
}

/// An embedded server (in-process limiter, its own state) and its first-start key.
async fn embedded(extra: &[(&str, &str)]) -> (TestServer, String) {
    let mut options = base_options(&test_secret(), &test_secret());
    for (k, v) in extra {
        options = options.with(k, *v);
    }
    let server = TestServer::start(options).await;
    let key = server.first_start_key();
    (server, key)
}

/// A client address nobody else uses: a random /64 of the documentation prefix (the
/// limiter keys IPv6 clients by their /64).
fn unique_client_ip() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    format!(
        "2001:db8:{:x}:{:x}::1",
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]])
    )
}

async fn scrape(client: &reqwest::Client, server: &TestServer) -> String {
    let r = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The sum of a metric's samples whose label set contains `labels` (e.g. `scope="ip"`).
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    let series: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.is_empty() || l.contains(labels))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .collect();
    assert!(
        !series.is_empty(),
        "no {name}{{{labels}}} series in /metrics:\n{text}"
    );
    series.iter().sum()
}

async fn create_key(
    client: &reqwest::Client,
    server: &TestServer,
    admin: &str,
    body: Value,
) -> Value {
    let r = send(
        client
            .post(server.url("/v1/api-keys"))
            .header("x-api-key", admin)
            .json(&body),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    r.body
}

// ---------------------------------------------------------------------------------------
// Exactness and headers, across two replicas sharing one Redis and one database
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn two_replicas_sharing_redis_admit_exactly_the_limit_with_decreasing_headers() {
    require_redis().await;
    let db = TestDatabase::create().await;
    let (jwt, salt) = (test_secret(), test_secret());
    let options = || {
        base_options(&jwt, &salt)
            .with("DATABASE_URL", db.url.clone())
            .with("REDIS_URL", redis_url())
    };
    // The first-start key is printed by the first process on the empty database only.
    let a = TestServer::start(options()).await;
    let admin = a.first_start_key();
    let b = TestServer::start(options()).await;
    assert!(
        !b.logs().contains("pf_"),
        "the second replica must not bootstrap again"
    );
    let client = http_client();
    // Two keys with the server's limit, one for the sequential run and one for the burst.
    let mut keys = Vec::new();
    for name in ["sequential", "burst"] {
        let created = create_key(
            &client,
            &a,
            &admin,
            json!({"name": name, "scopes": ["read"]}),
        )
        .await;
        keys.push(created["key"].as_str().unwrap().to_string());
    }
    let limit = u64::from(PER_MINUTE);

    // Sequential, alternating replicas: one budget, counted down by one per request.
    let mut last_reset = 0;
    for i in 0..limit {
        let server = if i % 2 == 0 { &a } else { &b };
        let r = me(&client, server, &keys[0], None).await;
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        let (l, remaining, reset) = r.quota().expect("quota headers on every admitted request");
        assert_eq!(l, limit, "{r:?}");
        assert_eq!(
            remaining,
            limit - 1 - i,
            "request {i} on replica {}: {r:?}",
            i % 2
        );
        assert!(
            reset >= last_reset && reset <= 60,
            "reset must grow as the quota is used: {last_reset} then {r:?}"
        );
        last_reset = reset;
    }
    for server in [&a, &b] {
        let r = me(&client, server, &keys[0], None).await;
        // One request is earned back every 3 s.
        assert_rate_limited(&r, limit, 3);
    }

    // A burst of N + 10 concurrent requests, half on each replica: exactly N admitted.
    let extra = 10;
    let started = Instant::now();
    let replies = futures::future::join_all((0..limit + extra).map(|i| {
        let server = if i % 2 == 0 { &a } else { &b };
        me(&client, server, &keys[1], None)
    }))
    .await;
    let took = started.elapsed();
    let admitted = replies.iter().filter(|r| r.status == 200).count() as u64;
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        admitted + refused.len() as u64,
        limit + extra,
        "only 200 and 429 expected: {replies:?}"
    );
    assert_eq!(
        admitted,
        limit,
        "a burst of {} over two replicas admitted {admitted} (burst took {took:?}; \
         one request is earned back every 3 s)",
        limit + extra
    );
    for r in refused {
        assert_rate_limited(r, limit, 3);
    }
    let mut remaining: Vec<u64> = replies
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.quota().unwrap().1)
        .collect();
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        (0..limit).collect::<Vec<_>>(),
        "each admitted request of the burst saw its own place in one shared count"
    );
}

// ---------------------------------------------------------------------------------------
// Refused requests are not processed; a key's own limit
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn refused_requests_are_not_processed_and_a_keys_own_limit_holds() {
    require_redis().await;
    let db = TestDatabase::create().await;
    let server = TestServer::start(
        base_options(&test_secret(), &test_secret())
            .with("DATABASE_URL", db.url.clone())
            .with("REDIS_URL", redis_url()),
    )
    .await;
    let admin = server.first_start_key();
    let client = http_client();

    let limited = create_key(
        &client,
        &server,
        &admin,
        json!({"name": "limited", "scopes": ["keys:manage", "read"], "rate_limit_per_minute": 3}),
    )
    .await;
    assert_eq!(limited["rate_limit_per_minute"], 3);
    let limited = limited["key"].as_str().unwrap().to_string();

    // Six creations with a key limited to 3 per minute: 3 created, 3 refused.
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = send(
            client
                .post(server.url("/v1/api-keys"))
                .header("x-api-key", &limited)
                .json(&json!({"name": format!("made-by-limited-{i}"), "scopes": ["read"]})),
        )
        .await;
        statuses.push(r.status);
        if i < 3 {
            assert_eq!(r.status, 201, "creation {i}: {r:?}");
            let (l, remaining, _) = r.quota().unwrap();
            assert_eq!((l, remaining), (3, 2 - i), "{r:?}");
        } else {
            // One request is earned back every 20 s.
            assert_rate_limited(&r, 3, 20);
        }
    }
    assert_eq!(statuses, [201, 201, 201, 429, 429, 429]);

    // Counted with another key: the refused creations do not exist.
    let list = send(
        client
            .get(server.url("/v1/api-keys"))
            .header("x-api-key", &admin),
    )
    .await;
    assert_eq!(list.status, 200, "{list:?}");
    let mut made: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["name"].as_str())
        .filter(|n| n.starts_with("made-by-limited-"))
        .collect();
    made.sort_unstable();
    assert_eq!(
        made,
        [
            "made-by-limited-0",
            "made-by-limited-1",
            "made-by-limited-2"
        ]
    );

    // A burst with a key of its own limit 3 (the server's is 20): exactly 3 admitted.
    let three = create_key(
        &client,
        &server,
        &admin,
        json!({"name": "three", "scopes": ["read"], "rate_limit_per_minute": 3}),
    )
    .await;
    let three = three["key"].as_str().unwrap().to_string();
    let replies =
        futures::future::join_all((0..8).map(|_| me(&client, &server, &three, None))).await;
    let admitted: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(admitted.len(), 3, "{replies:?}");
    for r in &admitted {
        assert_eq!(r.quota().unwrap().0, 3, "{r:?}");
    }
    for r in replies.iter().filter(|r| r.status != 200) {
        assert_rate_limited(r, 3, 20);
    }
}

// ---------------------------------------------------------------------------------------
// Bad credentials pay from the client IP's budget; hit counters
// ---------------------------------------------------------------------------------------

/// Floods bad credentials from one client while a valid key is in use, and checks the
/// `rate_limit_hits_total` counters of that process.
async fn bad_credentials_flood(server: &TestServer, key: &str, xff: Option<&str>) {
    let client = http_client();
    let hits = |text: &str, scope: &str| {
        metric(text, "rate_limit_hits_total", &format!("scope=\"{scope}\""))
    };
    let before = scrape(&client, server).await;

    let first = me(&client, server, key, xff).await;
    assert_eq!(first.status, 200, "{first:?}");
    let (_, remaining_before, _) = first.quota().unwrap();
    assert_eq!(remaining_before, u64::from(PER_MINUTE) - 1);

    // A near miss of the valid key, random well-formed keys, garbage, no credentials at all,
    // and a bad bearer token: all are the same anonymous client.
    let mut near_miss = key.to_string();
    let last = near_miss.pop().unwrap();
    near_miss.push(if last == 'A' { 'B' } else { 'A' });
    let bad: Vec<(&str, String)> = vec![
        ("x-api-key", near_miss),
        ("x-api-key", format!("pf_{}", uuid::Uuid::new_v4().simple())),
        ("x-api-key", "not-a-key".into()),
        ("authorization", "Bearer not.a.token".into()),
        ("", String::new()),
        ("x-api-key", format!("pf_{}", uuid::Uuid::new_v4().simple())),
        ("x-api-key", format!("pf_{}", uuid::Uuid::new_v4().simple())),
        ("x-api-key", format!("pf_{}", uuid::Uuid::new_v4().simple())),
        ("authorization", "Bearer x".into()),
        ("x-api-key", key[..key.len() - 1].to_string()),
        ("", String::new()),
        ("x-api-key", format!("pf_{}", uuid::Uuid::new_v4().simple())),
    ];
    let limit = u64::from(UNAUTHENTICATED);
    for (i, (name, value)) in bad.iter().enumerate() {
        let mut request = client.get(server.url("/v1/auth/me"));
        if !name.is_empty() {
            request = request.header(*name, value);
        }
        if let Some(xff) = xff {
            request = request.header("x-forwarded-for", xff);
        }
        let r = send(request).await;
        if (i as u64) < limit {
            assert_eq!(r.status, 401, "bad credential {i}: {r:?}");
            assert!(
                ["INVALID_API_KEY", "INVALID_TOKEN", "MISSING_CREDENTIALS"].contains(&r.code()),
                "{r:?}"
            );
            assert_eq!(
                r.quota().map(|q| (q.0, q.1)),
                Some((limit, limit - 1 - i as u64)),
                "bad credentials count against the IP limit: {r:?}"
            );
        } else {
            // One request is earned back every 12 s.
            assert_rate_limited(&r, limit, 12);
        }
    }
    let ip_refusals = bad.len() as u64 - limit;

    // The valid key's budget is untouched: exactly one less than before, for this request.
    let after = me(&client, server, key, xff).await;
    assert_eq!(after.status, 200, "{after:?}");
    assert_eq!(after.quota().unwrap().1, remaining_before - 1, "{after:?}");

    // Now use the key up: its refusals count as scope="key".
    let mut key_refusals = 0;
    for _ in 0..PER_MINUTE {
        let r = me(&client, server, key, xff).await;
        if r.status == 429 {
            assert_rate_limited(&r, u64::from(PER_MINUTE), 3);
            key_refusals += 1;
        } else {
            assert_eq!(r.status, 200, "{r:?}");
        }
    }
    assert_eq!(
        key_refusals, 2,
        "20 budget, 2 used before, 20 more requests"
    );

    let text = scrape(&client, server).await;
    assert_eq!(
        hits(&text, "ip") - hits(&before, "ip"),
        ip_refusals as f64,
        "rate_limit_hits_total{{scope=\"ip\"}}"
    );
    assert_eq!(
        hits(&text, "key") - hits(&before, "key"),
        key_refusals as f64,
        "rate_limit_hits_total{{scope=\"key\"}}"
    );
}

#[tokio::test]
async fn bad_credentials_pay_from_the_ip_budget_embedded() {
    let (server, key) = embedded(&[]).await;
    bad_credentials_flood(&server, &key, None).await;
}

#[tokio::test]
async fn bad_credentials_pay_from_the_ip_budget_with_redis() {
    require_redis().await;
    // A client address of this test's own, forwarded by a trusted local proxy.
    let redis = redis_url();
    let (server, key) = embedded(&[
        ("REDIS_URL", redis.as_str()),
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
    ])
    .await;
    let client_ip = unique_client_ip();
    bad_credentials_flood(&server, &key, Some(&client_ip)).await;
}

// ---------------------------------------------------------------------------------------
// X-Forwarded-For
// ---------------------------------------------------------------------------------------

async fn anonymous(client: &reqwest::Client, server: &TestServer, xff: Option<&str>) -> Reply {
    me(client, server, "", xff).await
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let client = http_client();
    let limit = u64::from(UNAUTHENTICATED);

    // No TRUSTED_PROXIES: every request is 127.0.0.1, whatever the header claims.
    let (untrusting, _) = embedded(&[]).await;
    for i in 0..limit + 3 {
        let r = anonymous(&client, &untrusting, Some(&format!("203.0.113.{i}"))).await;
        if i < limit {
            assert_eq!(r.status, 401, "{r:?}");
            assert_eq!(r.code(), "MISSING_CREDENTIALS", "{r:?}");
        } else {
            assert_rate_limited(&r, limit, 12);
        }
    }

    // 127.0.0.1 trusted: each forwarded client has a budget of its own.
    let (trusting, _) = embedded(&[("TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    for client_ip in ["203.0.113.1", "203.0.113.2", "2001:db8:7::1"] {
        for i in 0..limit {
            let r = anonymous(&client, &trusting, Some(client_ip)).await;
            assert_eq!(r.status, 401, "{client_ip} request {i}: {r:?}");
            assert_eq!(r.quota().unwrap().1, limit - 1 - i, "{r:?}");
        }
    }
    let r = anonymous(&client, &trusting, Some("203.0.113.1")).await;
    assert_rate_limited(&r, limit, 12);
    // A spoofed left-most entry changes nothing: the right-most untrusted entry is the client.
    let r = anonymous(&client, &trusting, Some("198.51.100.77, 203.0.113.1")).await;
    assert_rate_limited(&r, limit, 12);
    // The same /64 is the same client.
    let r = anonymous(&client, &trusting, Some("2001:db8:7::ffff")).await;
    assert_rate_limited(&r, limit, 12);
    // Someone new, and the proxy itself, still have their budgets.
    let r = anonymous(&client, &trusting, Some("203.0.113.9")).await;
    assert_eq!((r.status, r.quota().unwrap().1), (401, limit - 1), "{r:?}");
    let r = anonymous(&client, &trusting, None).await;
    assert_eq!((r.status, r.quota().unwrap().1), (401, limit - 1), "{r:?}");
}

// ---------------------------------------------------------------------------------------
// Probes and metrics
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn health_ready_and_metrics_are_never_limited() {
    let (server, _) = embedded(&[("RATE_LIMIT_UNAUTHENTICATED", "2")]).await;
    let client = http_client();
    let hammer = || async {
        for path in ["/health", "/ready", "/metrics"] {
            for _ in 0..25 {
                let r = send(client.get(server.url(path))).await;
                assert_eq!(r.status, 200, "{path}: {r:?}");
                assert_eq!(r.quota(), None, "{path} carries no rate-limit headers");
            }
        }
    };
    hammer().await;
    // The anonymous limit is in force on /v1 for the same client...
    assert_eq!(anonymous(&client, &server, None).await.status, 401);
    assert_eq!(anonymous(&client, &server, None).await.status, 401);
    assert_rate_limited(&anonymous(&client, &server, None).await, 2, 30);
    // ...and an exhausted client can still be probed and scraped.
    hammer().await;
}

// ---------------------------------------------------------------------------------------
// Redis unreachable
// ---------------------------------------------------------------------------------------

const REDIS_TIMEOUT_MS: &str = "300";

/// An embedded server whose limiter reaches Redis through a relay the test controls.
async fn behind_relay(extra: &[(&str, &str)]) -> (Relay, TestServer, String) {
    require_redis().await;
    let target = redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string();
    let relay = Relay::start(&target).await;
    let mut env = vec![
        ("REDIS_URL", format!("redis://127.0.0.1:{}", relay.port)),
        ("REDIS_TIMEOUT_MS", REDIS_TIMEOUT_MS.to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (server, key) = embedded(&env).await;
    // The limiter's first call must meet a connected Redis: a call made while the server is
    // still connecting counts as a backend error, and the tests count those. /ready asks
    // the connection itself, outside the limiter and its counters.
    let client = &http_client();
    let ready = &server.url("/ready");
    let connected = eventually(Duration::from_secs(10), || async move {
        let body: Value = client.get(ready).send().await.ok()?.json().await.ok()?;
        (body["services"]["redis"]["healthy"] == true).then_some(())
    })
    .await;
    assert!(
        connected.is_some(),
        "the server never connected to Redis; log:\n{}",
        server.logs()
    );
    (relay, server, key)
}

/// Requests until the limiter has its Redis connection (a 200 with quota headers).
async fn wait_limited_by_redis(client: &reqwest::Client, server: &TestServer, key: &str) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = me(client, server, key, None).await;
        if r.quota().is_some() {
            return r;
        }
        assert!(Instant::now() < deadline, "Redis never answered: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Until the relay has cut the server's open Redis connection, so that the requests that
/// follow meet an unreachable Redis and not the last moments of a reachable one.
async fn wait_cut(relay: &Relay) {
    let cut = eventually(Duration::from_secs(5), || {
        std::future::ready((relay.forwarding() == 0).then_some(()))
    })
    .await;
    assert!(
        cut.is_some(),
        "the relay still forwards {} connections",
        relay.forwarding()
    );
}

fn backend_errors(text: &str) -> f64 {
    metric(text, "rate_limiter_backend_errors_total", "")
}

#[tokio::test]
async fn redis_outage_fails_open_within_the_timeout_and_limiting_resumes() {
    let (relay, server, key) = behind_relay(&[]).await;
    let client = http_client();
    let limit = u64::from(PER_MINUTE);

    // Exhaust the key while Redis is there.
    let first = wait_limited_by_redis(&client, &server, &key).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.quota().unwrap().1, limit - 1, "{first:?}");
    for i in 1..limit {
        let r = me(&client, &server, &key, None).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.quota().unwrap().1, limit - 1 - i, "{r:?}");
    }
    assert_rate_limited(&me(&client, &server, &key, None).await, limit, 3);
    let text = scrape(&client, &server).await;
    // Described at start-up: the series exist at zero before anything failed.
    assert!(
        text.contains(r#"rate_limiter_backend_errors_total{kind="connection"} 0"#),
        "{text}"
    );
    let errors_before = backend_errors(&text);

    // Connections refused: the exhausted key is served, without quota headers.
    relay.close();
    wait_cut(&relay).await;
    for i in 0..10 {
        let r = me(&client, &server, &key, None).await;
        assert_eq!(r.status, 200, "fail-open request {i}: {r:?}");
        assert_eq!(r.quota(), None, "{r:?}");
        assert!(
            r.elapsed < Duration::from_secs(2),
            "{r:?} took {:?}",
            r.elapsed
        );
    }
    let text = scrape(&client, &server).await;
    let errors_closed = backend_errors(&text);
    assert!(errors_closed > errors_before, "{text}");
    assert!(
        metric(
            &text,
            "rate_limiter_degraded_total",
            r#"decision="fail_open""#
        ) >= 10.0,
        "{text}"
    );
    // Past the breaker's cool-down a probe tries Redis again and fails again. The cool-down
    // is real time in the server, so the test waits it out.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..3 {
        assert_eq!(me(&client, &server, &key, None).await.status, 200);
    }
    let text = scrape(&client, &server).await;
    let errors_probed = backend_errors(&text);
    let timeouts_probed = metric(
        &text,
        "rate_limiter_backend_errors_total",
        r#"kind="timeout""#,
    );
    assert!(
        errors_probed > errors_closed,
        "the counter keeps rising: {errors_closed} then {errors_probed}"
    );

    // Connections accepted but never answered: every request still answers within the
    // timeout plus slack, sequential and concurrent, through several cool-downs.
    relay.hang();
    let hang_started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut answered = 0;
    while hang_started.elapsed() < Duration::from_secs(4) {
        let batch =
            futures::future::join_all((0..4).map(|_| me(&client, &server, &key, None))).await;
        for r in batch {
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(r.quota(), None, "{r:?}");
            slowest = slowest.max(r.elapsed);
            answered += 1;
        }
    }
    assert!(
        slowest < Duration::from_secs(2),
        "with REDIS_TIMEOUT_MS={REDIS_TIMEOUT_MS} a request took {slowest:?}"
    );
    assert!(answered >= 8, "only {answered} requests in 4 s");
    let text = scrape(&client, &server).await;
    let errors_hung = backend_errors(&text);
    assert!(
        errors_hung > errors_probed,
        "{errors_probed} then {errors_hung}"
    );
    // The hang was met by the time bound, not by a refused connection.
    assert!(
        metric(
            &text,
            "rate_limiter_backend_errors_total",
            r#"kind="timeout""#
        ) > timeouts_probed,
        "{text}"
    );

    // Redis back: limiting resumes by itself, from the state Redis kept (the key is still
    // far over its budget; it earned back one request per 3 s of the outage).
    relay.open();
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let r = me(&client, &server, &key, None).await;
        if r.status == 429 {
            break r;
        }
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            Instant::now() < deadline,
            "no 429 within 10 s of Redis coming back; last: {r:?}\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_rate_limited(&refused, limit, 3);
}

#[tokio::test]
async fn fail_closed_answers_503_while_redis_is_unreachable() {
    let (relay, server, key) = behind_relay(&[("RATE_LIMIT_FAIL_CLOSED", "true")]).await;
    let client = http_client();
    let first = wait_limited_by_redis(&client, &server, &key).await;
    assert_eq!(first.status, 200, "{first:?}");

    relay.close();
    wait_cut(&relay).await;
    for i in 0..6 {
        let r = me(&client, &server, &key, None).await;
        assert_eq!(r.status, 503, "fail-closed request {i}: {r:?}");
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{r:?}"
        );
        assert_eq!(r.code(), "SERVICE_UNAVAILABLE", "{r:?}");
        let retry = r.number("retry-after").expect("Retry-After on the 503");
        assert!((1..=2).contains(&retry), "{r:?}");
        assert_eq!(r.quota(), None, "no quota is known: {r:?}");
    }
    let text = scrape(&client, &server).await;
    assert!(
        metric(
            &text,
            "rate_limiter_degraded_total",
            r#"decision="fail_closed""#
        ) >= 6.0,
        "{text}"
    );
    assert_eq!(send(client.get(server.url("/health"))).await.status, 200);

    relay.open();
    let back = wait_limited_by_redis(&client, &server, &key).await;
    assert_eq!(back.status, 200, "{back:?}");
}
