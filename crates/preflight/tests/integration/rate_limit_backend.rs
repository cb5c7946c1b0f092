//! The rate limiter against a real Redis and in process: exactness under concurrency (also
//! across two "replicas" sharing one Redis), quota bookkeeping, the memory bound of the
//! in-process backend, behaviour while Redis is unreachable, slow or refusing (through a
//! TCP relay of the harness), and client-IP extraction. In process: the library API of
//! `preflight-server`, no server binary.
//!
//! Redis comes from `TEST_REDIS_URL` (default `redis://127.0.0.1:6379`). These
//! tests fail, never skip, when it is unreachable: a skipped exactness test proves nothing.
//! Every test uses its own key namespace, so they run in parallel and repeatedly.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};
use ipnet::IpNet;
use metrics_exporter_prometheus::PrometheusHandle;
use preflight_server::config::{Config, GivenKeys};
use preflight_server::rate_limit::{
    self, client_ip, BreakerSettings, LimitDecision, RateLimiter, RateLimiterOptions, Subject,
};
use preflight_server::redis_link::RedisLink;
use tokio::task::JoinSet;

use crate::support::relay::Relay;
use crate::support::{redis_url, ClosedPort};

fn config(vars: &[(&str, &str)]) -> Config<GivenKeys> {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_env_map(&env).expect("test configuration is valid")
}

/// A limiter configured as the server would configure it from `config`.
fn limiter_with(
    config: &Config<GivenKeys>,
    link: Option<RedisLink>,
    options: RateLimiterOptions,
) -> RateLimiter {
    RateLimiter::with_options(&config.limits, &config.redis, link, options)
}

/// A key namespace no other test (or earlier run) shares.
fn namespace(test: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "preflight-test:rl:{test}:{}:{nanos}:{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn options(test: &str) -> RateLimiterOptions {
    RateLimiterOptions {
        namespace: namespace(test),
        ..RateLimiterOptions::default()
    }
}

/// A link that has connected (`RedisLink::start` connects in the background).
async fn connected_link(url: &str, timeout: Duration) -> RedisLink {
    let link =
        RedisLink::start(url, timeout).unwrap_or_else(|e| panic!("invalid Redis URL {url:?}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match link.ping().await {
            Ok(_) => return link,
            Err(e) if Instant::now() >= deadline => panic!(
                "Redis at {url} is unreachable ({e}); these tests need a running Redis \
                 (start one, or point TEST_REDIS_URL at it)"
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Correctness tests get a generous timeout: a loaded CI box must not turn a slow answer
/// into a fail-open that would look like a miscount.
const PATIENT: Duration = Duration::from_secs(3);

async fn redis_limiter(test: &str) -> RateLimiter {
    let link = connected_link(&redis_url(), PATIENT).await;
    limiter_with(
        &config(&[("REDIS_TIMEOUT_MS", "3000")]),
        Some(link),
        options(test),
    )
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    allowed: u32,
    limited: u32,
    degraded: Vec<LimitDecision>,
}

fn tally(decisions: &[LimitDecision], limit: u32) -> Tally {
    let mut t = Tally::default();
    for d in decisions {
        match d {
            LimitDecision::Allowed(q) => {
                assert_eq!(q.limit, limit);
                t.allowed += 1;
            }
            LimitDecision::Limited {
                quota,
                retry_after_secs,
            } => {
                assert_eq!(quota.limit, limit);
                assert_eq!(quota.remaining, 0, "a refusal leaves nothing remaining");
                assert!(*retry_after_secs >= 1, "Retry-After must be at least 1 s");
                assert!(quota.reset_secs >= 1 && quota.reset_secs <= 61);
                t.limited += 1;
            }
            other => t.degraded.push(other.clone()),
        }
    }
    t
}

/// Fires all checks at once from spawned tasks, spread round-robin over `limiters`.
async fn burst(
    limiters: &[RateLimiter],
    subject: &Subject,
    limit: u32,
    count: usize,
) -> Vec<LimitDecision> {
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(count));
    let mut set = JoinSet::new();
    for i in 0..count {
        let limiter = limiters[i % limiters.len()].clone();
        let subject = subject.clone();
        let start = start.clone();
        set.spawn(async move {
            start.wait().await;
            limiter.check(&subject, limit).await
        });
    }
    let mut out = Vec::with_capacity(count);
    while let Some(r) = set.join_next().await {
        out.push(r.expect("check task panicked"));
    }
    out
}

// The limits below keep the emission interval (60 s / limit) far longer than a burst takes,
// so "exactly N" is the whole truth and not "N plus whatever was earned meanwhile".

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_burst_admits_exactly_the_limit() {
    let limiter = redis_limiter("burst").await;
    let (n, k) = (25u32, 15usize);
    let subject = Subject::ApiKey("burst-key".into());
    let decisions = burst(std::slice::from_ref(&limiter), &subject, n, n as usize + k).await;
    let t = tally(&decisions, n);
    assert!(
        t.degraded.is_empty(),
        "Redis answered degraded: {:?}",
        t.degraded
    );
    assert_eq!((t.allowed, t.limited), (n, k as u32));
    assert!(!limiter.circuit_open());
    assert_eq!(limiter.backend(), "redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_burst_is_exact_across_two_replicas() {
    // Two limiters with their own connections stand for two server processes.
    let opts = options("replicas");
    let cfg = config(&[("REDIS_TIMEOUT_MS", "3000")]);
    let a = limiter_with(
        &cfg,
        Some(connected_link(&redis_url(), PATIENT).await),
        opts.clone(),
    );
    let b = limiter_with(
        &cfg,
        Some(connected_link(&redis_url(), PATIENT).await),
        opts,
    );
    let (n, k) = (30u32, 30usize);
    let subject = Subject::Ip("198.51.100.23".parse().unwrap());
    let decisions = burst(&[a.clone(), b.clone()], &subject, n, n as usize + k).await;
    let t = tally(&decisions, n);
    assert!(
        t.degraded.is_empty(),
        "Redis answered degraded: {:?}",
        t.degraded
    );
    assert_eq!((t.allowed, t.limited), (n, k as u32));
    // Both replicas took part, so the shared state (not one process) enforced the limit.
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.allowed + sa.limited, (n as u64 + k as u64) / 2);
    assert_eq!(sb.allowed + sb.limited, (n as u64 + k as u64) / 2);
    assert_eq!(sa.allowed + sb.allowed, n as u64);
}

#[tokio::test]
async fn redis_remaining_decreases_and_refusal_says_when_to_retry() {
    let limiter = redis_limiter("remaining").await;
    let subject = Subject::ApiKey("remaining".into());
    let mut last_reset = 0;
    for expected in (0..5u32).rev() {
        match limiter.check(&subject, 5).await {
            LimitDecision::Allowed(q) => {
                assert_eq!((q.limit, q.remaining), (5, expected));
                // One request is worth 12 s; the time to full quota grows by that much.
                assert!(q.reset_secs > last_reset && q.reset_secs <= 60, "{q:?}");
                last_reset = q.reset_secs;
            }
            other => panic!("expected Allowed with {expected} remaining, got {other:?}"),
        }
    }
    match limiter.check(&subject, 5).await {
        LimitDecision::Limited {
            quota,
            retry_after_secs,
        } => {
            assert_eq!(quota.remaining, 0);
            assert!((1..=12).contains(&retry_after_secs), "{retry_after_secs}");
            assert!((55..=60).contains(&quota.reset_secs), "{quota:?}");
        }
        other => panic!("expected Limited, got {other:?}"),
    }
    let stats = limiter.stats();
    assert_eq!((stats.allowed, stats.limited), (5, 1));
}

#[tokio::test]
async fn redis_scopes_and_identities_are_independent() {
    let limiter = redis_limiter("scopes").await;
    // Same text, different scopes: a key id that looks like an address shares nothing with
    // that address.
    let key = Subject::ApiKey("203.0.113.7".into());
    let ip = Subject::Ip("203.0.113.7".parse().unwrap());
    let other_key = Subject::ApiKey("another".into());
    for _ in 0..2 {
        assert!(matches!(
            limiter.check(&key, 2).await,
            LimitDecision::Allowed(_)
        ));
    }
    assert!(matches!(
        limiter.check(&key, 2).await,
        LimitDecision::Limited { .. }
    ));
    match limiter.check(&ip, 2).await {
        LimitDecision::Allowed(q) => assert_eq!(q.remaining, 1),
        other => panic!("ip scope affected by key scope: {other:?}"),
    }
    match limiter.check(&other_key, 2).await {
        LimitDecision::Allowed(q) => assert_eq!(q.remaining, 1),
        other => panic!("one key affected another: {other:?}"),
    }
}

#[tokio::test]
async fn redis_keys_are_namespaced_hashed_and_expire() {
    let opts = options("keys");
    let ns = opts.namespace.clone();
    let limiter = limiter_with(
        &config(&[("REDIS_TIMEOUT_MS", "3000")]),
        Some(connected_link(&redis_url(), PATIENT).await),
        opts,
    );
    let long_id = "k".repeat(300);
    assert!(limiter
        .check(&Subject::ApiKey("short".into()), 60)
        .await
        .is_allowed());
    assert!(limiter
        .check(&Subject::ApiKey(long_id.clone()), 60)
        .await
        .is_allowed());
    assert!(limiter
        .check(&Subject::Ip("2001:db8:7:7::1".parse().unwrap()), 60)
        .await
        .is_allowed());

    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{ns}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    let hashed = Subject::ApiKey(long_id).id();
    assert!(hashed.starts_with("h:") && hashed.len() == 34);
    let mut expected = vec![
        format!("{ns}:ip:2001:db8:7:7::/64"),
        format!("{ns}:key:short"),
        format!("{ns}:key:{hashed}"),
    ];
    expected.sort();
    assert_eq!(keys, expected);
    for key in &keys {
        // 60/min: one request's state lives one interval (1 s), then the key is gone.
        let pttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(pttl > 0 && pttl <= 1000, "{key} has PTTL {pttl}");
    }
}

#[tokio::test]
async fn redis_and_in_process_decide_alike() {
    let redis = redis_limiter("parity").await;
    let local = limiter_with(&config(&[]), None, RateLimiterOptions::default());
    assert_eq!(local.backend(), "in-process");
    let subject = Subject::ApiKey("parity".into());
    for i in 0..8 {
        let (r, l) = (
            redis.check(&subject, 6).await,
            local.check(&subject, 6).await,
        );
        assert_eq!(r, l, "request {i}: redis {r:?} vs in-process {l:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_burst_admits_exactly_the_limit() {
    let limiter = limiter_with(&config(&[]), None, RateLimiterOptions::default());
    let (n, k) = (50u32, 50usize);
    let subject = Subject::ApiKey("local-burst".into());
    let t = tally(
        &burst(std::slice::from_ref(&limiter), &subject, n, n as usize + k).await,
        n,
    );
    assert!(t.degraded.is_empty());
    assert_eq!((t.allowed, t.limited), (n, k as u32));
    assert_eq!(limiter.tracked_identities(), Some(1));
    assert!(!limiter.circuit_open());
}

#[tokio::test]
async fn in_process_memory_stays_bounded_with_a_million_identities() {
    let limiter = limiter_with(&config(&[]), None, RateLimiterOptions::default());
    let cap = limiter.max_identities().unwrap();
    assert_eq!(cap, rate_limit::DEFAULT_MAX_IDENTITIES);
    // A heavy user who has used up a small quota keeps that state through the flood:
    // eviction takes the identities closest to fresh first.
    let heavy = Subject::ApiKey("heavy".into());
    assert!(limiter.check(&heavy, 2).await.is_allowed());
    assert!(limiter.check(&heavy, 2).await.is_allowed());
    assert!(!limiter.check(&heavy, 2).await.is_allowed());

    let mut peak = 0;
    for i in 0..1_000_000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        assert!(limiter.check(&Subject::Ip(ip), 1000).await.is_allowed());
        if i % 10_000 == 0 {
            let n = limiter.tracked_identities().unwrap();
            assert!(n <= cap, "{n} identities tracked, cap {cap}");
            peak = peak.max(n);
        }
    }
    let n = limiter.tracked_identities().unwrap();
    assert!(n <= cap, "{n} identities tracked, cap {cap}");
    assert!(
        peak > cap / 2,
        "the map was exercised near its cap (peak {peak})"
    );
    assert!(
        matches!(
            limiter.check(&heavy, 2).await,
            LimitDecision::Limited { .. }
        ),
        "the flood evicted a heavy user's state"
    );
}

// ---------------------------------------------------------------------------------------
// Redis unavailable
// ---------------------------------------------------------------------------------------

/// The process-wide Prometheus recorder, installed once for this test binary.
fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle =
            preflight_server::telemetry::install_metrics().expect("install metrics recorder");
        rate_limit::describe_metrics();
        handle
    })
}

/// The value of one series in the Prometheus text, e.g. `name{kind="timeout"}`.
fn metric(series: &str) -> f64 {
    let text = metrics_handle().render();
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|v| v.trim().parse::<f64>().unwrap())
        })
        .unwrap_or_else(|| panic!("series {series} not in:\n{text}"))
}

/// The Redis URL of the test Redis with the relay's address in place of its own.
fn relay_url(relay: &Relay) -> String {
    let mut url = url::Url::parse(&redis_url()).unwrap();
    url.set_host(Some(&relay.addr.ip().to_string())).unwrap();
    url.set_port(Some(relay.addr.port())).unwrap();
    url.to_string()
}

async fn redis_socket_addr() -> SocketAddr {
    let url = url::Url::parse(&redis_url()).unwrap();
    let host = url.host_str().unwrap_or("127.0.0.1").to_string();
    let port = url.port().unwrap_or(6379);
    let mut addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap();
    addrs.next().expect("Redis host resolves")
}

const FAST_FAIL: BreakerSettings = BreakerSettings {
    failure_threshold: 3,
    cool_down: Duration::from_secs(1),
};

/// Checks until the limiter answers from Redis again, or panics after `within`.
async fn until_limiting(
    limiter: &RateLimiter,
    subject: &Subject,
    limit: u32,
    within: Duration,
) -> LimitDecision {
    let deadline = Instant::now() + within;
    loop {
        let d = limiter.check(subject, limit).await;
        if d.quota().is_some() {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "limiting did not resume within {within:?} of Redis returning (last: {d:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn unreachable_redis_fails_open_and_the_breaker_stops_calling_it() {
    metrics_handle();
    // A port nothing listens on.
    let closed = ClosedPort::hold();
    let link = RedisLink::start(
        &format!("redis://127.0.0.1:{}", closed.port),
        Duration::from_millis(200),
    )
    .unwrap();
    let limiter = limiter_with(
        &config(&[("REDIS_TIMEOUT_MS", "200")]),
        Some(link),
        RateLimiterOptions {
            breaker: FAST_FAIL,
            ..options("unreachable")
        },
    );
    assert_eq!(limiter.mode(), "fail-open");
    let errors_before = metric(r#"rate_limiter_backend_errors_total{kind="connection"}"#);
    let open_before = metric(r#"rate_limiter_degraded_total{decision="fail_open"}"#);
    let subject = Subject::ApiKey("unreachable".into());
    for i in 0..50 {
        let d = limiter.check(&subject, 1).await;
        assert_eq!(d, LimitDecision::FailOpen, "check {i}");
    }
    assert!(limiter.circuit_open(), "breaker did not open");
    let stats = limiter.stats();
    assert_eq!(stats.failed_open, 50);
    // Only the calls before the breaker opened (plus at most a probe per elapsed cool-down)
    // reached for Redis; the rest were answered without it.
    assert!(
        stats.backend_errors >= 3 && stats.backend_errors < 10,
        "{stats:?}"
    );
    assert!(
        metric(r#"rate_limiter_backend_errors_total{kind="connection"}"#) - errors_before
            >= stats.backend_errors as f64
    );
    assert!(metric(r#"rate_limiter_degraded_total{decision="fail_open"}"#) - open_before >= 50.0);
    metric("rate_limiter_circuit_open");
}

#[tokio::test]
async fn hanging_redis_fails_closed_then_recovers() {
    metrics_handle();
    let relay = Relay::start(&redis_socket_addr().await.to_string()).await;
    let timeout = Duration::from_millis(200);
    let link = connected_link(&relay_url(&relay), timeout).await;
    let limiter = limiter_with(
        &config(&[
            ("REDIS_TIMEOUT_MS", "200"),
            ("RATE_LIMIT_FAIL_CLOSED", "true"),
        ]),
        Some(link),
        RateLimiterOptions {
            breaker: FAST_FAIL,
            ..options("hanging")
        },
    );
    assert_eq!(limiter.mode(), "fail-closed");
    let subject = Subject::ApiKey("hanging".into());
    match limiter.check(&subject, 10).await {
        LimitDecision::Allowed(q) => assert_eq!(q.remaining, 9),
        other => panic!("relay up, expected Allowed: {other:?}"),
    }

    let timeouts_before = metric(r#"rate_limiter_backend_errors_total{kind="timeout"}"#);
    relay.blackhole();
    for i in 0..50 {
        match limiter.check(&subject, 10).await {
            LimitDecision::FailClosed { retry_after_secs } => {
                assert!(
                    retry_after_secs >= 1,
                    "check {i}: Retry-After {retry_after_secs}"
                )
            }
            other => panic!("check {i}: expected FailClosed, got {other:?}"),
        }
    }
    assert!(limiter.circuit_open(), "breaker did not open");
    let stats = limiter.stats();
    assert_eq!(stats.failed_closed, 50);
    assert!(
        stats.backend_errors >= 3 && stats.backend_errors < 10,
        "{stats:?}"
    );
    assert!(
        metric(r#"rate_limiter_backend_errors_total{kind="timeout"}"#) - timeouts_before >= 3.0,
        "a hanging Redis shows up as timeouts"
    );

    relay.restart();
    match until_limiting(&limiter, &subject, 10, Duration::from_secs(20)).await {
        // The state survived the outage in Redis: the second counted request.
        LimitDecision::Allowed(q) => assert_eq!(q.remaining, 8),
        other => panic!("expected Allowed after recovery: {other:?}"),
    }
    assert!(!limiter.circuit_open(), "breaker closed again");
}

#[tokio::test]
async fn refused_redis_fails_open_then_limiting_resumes() {
    let relay = Relay::start(&redis_socket_addr().await.to_string()).await;
    let link = connected_link(&relay_url(&relay), Duration::from_millis(200)).await;
    let limiter = limiter_with(
        &config(&[("REDIS_TIMEOUT_MS", "200")]),
        Some(link),
        RateLimiterOptions {
            breaker: FAST_FAIL,
            ..options("refused")
        },
    );
    let subject = Subject::Ip("192.0.2.44".parse().unwrap());
    assert!(matches!(
        limiter.check(&subject, 3).await,
        LimitDecision::Allowed(_)
    ));

    relay.close();
    for i in 0..20 {
        assert_eq!(
            limiter.check(&subject, 3).await,
            LimitDecision::FailOpen,
            "check {i}"
        );
    }
    assert!(limiter.circuit_open());

    relay.restart();
    match until_limiting(&limiter, &subject, 3, Duration::from_secs(20)).await {
        LimitDecision::Allowed(q) => assert_eq!(q.remaining, 1),
        other => panic!("expected Allowed after recovery: {other:?}"),
    }
    assert!(!limiter.circuit_open());
    // And it limits again, from the state kept in Redis during the outage.
    assert!(limiter.check(&subject, 3).await.is_allowed());
    assert!(matches!(
        limiter.check(&subject, 3).await,
        LimitDecision::Limited { .. }
    ));
}

// ---------------------------------------------------------------------------------------
// Client IP
// ---------------------------------------------------------------------------------------

#[test]
fn client_ip_ignores_spoofed_forwarded_for() {
    let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
    let mut h = HeaderMap::new();
    h.insert(
        "x-forwarded-for",
        HeaderValue::from_static("1.2.3.4, 203.0.113.9, 10.0.0.2"),
    );
    // An untrusted peer cannot choose its identity by sending the header.
    let direct: SocketAddr = "198.51.100.1:5000".parse().unwrap();
    assert_eq!(
        client_ip(direct, &h, &trusted),
        "198.51.100.1".parse::<IpAddr>().unwrap()
    );
    // Behind the trusted proxies: the right-most untrusted entry, not the forged 1.2.3.4.
    let proxy: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    assert_eq!(
        client_ip(proxy, &h, &trusted),
        "203.0.113.9".parse::<IpAddr>().unwrap()
    );
    // Without trusted proxies configured, the header means nothing.
    assert_eq!(
        client_ip(proxy, &h, &[]),
        "10.0.0.1".parse::<IpAddr>().unwrap()
    );
}

// ---------------------------------------------------------------------------------------
// Benchmark (run explicitly; see docs/rate-limiting.md)
// ---------------------------------------------------------------------------------------

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    format!(
        "n={} p50={:?} p99={:?} max={:?} mean={:?}",
        samples.len(),
        at(0.50),
        at(0.99),
        samples[samples.len() - 1],
        mean
    )
}

async fn time_checks(limiter: &RateLimiter, count: usize) -> Vec<Duration> {
    let subjects: Vec<Subject> = (0..1000)
        .map(|i| Subject::ApiKey(format!("bench-{i}")))
        .collect();
    // Warm-up: connection, script cache, allocator.
    for s in subjects.iter().take(200) {
        limiter.check(s, 1_000_000).await;
    }
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let s = &subjects[i % subjects.len()];
        let started = Instant::now();
        let d = limiter.check(s, 1_000_000).await;
        samples.push(started.elapsed());
        assert!(matches!(d, LimitDecision::Allowed(_)), "{d:?}");
    }
    samples
}

#[tokio::test]
#[ignore = "benchmark: cargo test --release -p preflight --test integration -- --ignored --nocapture rate_limit_backend::bench"]
async fn bench_check_cost() {
    let redis = redis_limiter("bench").await;
    let local = limiter_with(&config(&[]), None, RateLimiterOptions::default());
    println!(
        "redis      {}",
        percentiles(time_checks(&redis, 20_000).await)
    );
    println!(
        "in-process {}",
        percentiles(time_checks(&local, 20_000).await)
    );

    // Resident memory of the in-process backend filled to its cap.
    let rss_before = rss_bytes();
    let full = limiter_with(&config(&[]), None, RateLimiterOptions::default());
    for i in 0..(2 * rate_limit::DEFAULT_MAX_IDENTITIES as u32) {
        let key = Subject::ApiKey(format!("01J9ZQ3K8M2N4P6R8T0V2X4Z6-{i:010}"));
        full.check(&key, 1000).await;
    }
    let rss_after = rss_bytes();
    println!(
        "in-process map at {} identities (36-byte key ids): RSS +{:.1} MiB",
        full.tracked_identities().unwrap(),
        (rss_after.saturating_sub(rss_before)) as f64 / (1024.0 * 1024.0)
    );
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
