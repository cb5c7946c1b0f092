//! Request rate limiting: one GCRA limiter, shared through Redis across replicas or kept in
//! process for a single instance.
//!
//! The algorithm is the generic cell rate algorithm (GCRA): per identity we keep one number,
//! the "theoretical arrival time" (TAT). A limit of `N` per minute means one request is
//! "earned" every `60 s / N`, and at most `N` can be banked (a burst of `N`). Because the whole
//! state is a single integer, the Redis script is a GET and a SET, the in-process map stays
//! small, and an idle identity's state is indistinguishable from a fresh one once its TAT has
//! passed — which is what makes expiry (Redis TTL) and eviction (in process) harmless.
//!
//! With Redis, every check is one atomic Lua script using Redis's own clock, so any number
//! of replicas sharing one Redis admit exactly `N` of a burst, whatever their clocks say.
//! When Redis is down, slow or refusing, `check` fails open or closed per configuration,
//! bounded by `REDIS_TIMEOUT_MS`, and a circuit breaker stops paying that timeout on every
//! request. See `docs/rate-limiting.md` for the full rationale and measured costs.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::{IpNet, Ipv6Net};
use sha2::{Digest, Sha256};

use crate::config::{LimitsConfig, RedisConfig};
use crate::error::ApiError;
use crate::redis_link::{RedisLink, RedisLinkError};
use crate::telemetry::RATE_LIMIT_HITS;

/// Counter: Redis calls of the limiter that failed, by `kind` (`timeout` | `connection` |
/// `command`).
pub const BACKEND_ERRORS: &str = "rate_limiter_backend_errors_total";
/// Gauge: 1 while the circuit breaker keeps the limiter away from Redis, else 0.
pub const CIRCUIT_OPEN: &str = "rate_limiter_circuit_open";
/// Counter: checks answered without a backend, by `decision` (`fail_open` | `fail_closed`).
pub const DEGRADED: &str = "rate_limiter_degraded_total";

/// Redis key prefix; keys are `{namespace}:{scope}:{id}`.
pub const DEFAULT_NAMESPACE: &str = "preflight:rl";
/// Most identities the in-process backend tracks at once (about 10 MB at worst).
pub const DEFAULT_MAX_IDENTITIES: usize = 100_000;
/// Ids longer than this are stored as a hash so keys stay short whatever a caller passes.
pub const MAX_PLAIN_ID_LEN: usize = 64;

/// The quota period: limits are "per minute".
const WINDOW_US: u64 = 60_000_000;
/// The backend-failure warning is logged at most this often, not once per request.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// Shards of the in-process map: enough that two cores rarely contend on one lock.
const LOCAL_SHARDS: usize = 32;
/// Idle state is swept at least this often even when the map is not full.
const LOCAL_SWEEP_EVERY_US: u64 = WINDOW_US;

/// Who is being limited.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// An API key, by its id (never the secret).
    ApiKey(String),
    /// A client address, for unauthenticated calls.
    Ip(IpAddr),
}

impl Subject {
    /// The `scope` label of `rate_limit_hits_total` and the key segment in Redis.
    pub fn scope(&self) -> &'static str {
        match self {
            Subject::ApiKey(_) => "key",
            Subject::Ip(_) => "ip",
        }
    }

    /// The identity within its scope, as stored.
    ///
    /// IPv6 clients are grouped by their /64: a single host is routinely given a whole /64,
    /// so per-address limits would let one client rotate through 2^64 identities.
    /// IPv4-mapped IPv6 addresses count as the IPv4 address they carry.
    pub fn id(&self) -> String {
        match self {
            Subject::ApiKey(id) => storage_id(id),
            Subject::Ip(ip) => match ip.to_canonical() {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => Ipv6Net::new(v6, 64)
                    .map(|net| net.trunc().to_string())
                    .unwrap_or_else(|_| v6.to_string()),
            },
        }
    }
}

/// Keeps ids short and printable: long or odd ids become a 128-bit SHA-256 prefix.
fn storage_id(id: &str) -> String {
    let plain = id.len() <= MAX_PLAIN_ID_LEN
        && !id.is_empty()
        && !id.starts_with("h:")
        && id.bytes().all(|b| b.is_ascii_graphic());
    if plain {
        id.to_string()
    } else {
        format!("h:{}", hex::encode(&Sha256::digest(id.as_bytes())[..16]))
    }
}

/// What the client is told in the `X-RateLimit-*` headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Requests per minute.
    pub limit: u32,
    /// Requests that may still be made right now.
    pub remaining: u32,
    /// Seconds until the full quota is available again.
    pub reset_secs: u64,
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitDecision {
    /// Serve; send the quota headers.
    Allowed(Quota),
    /// Refuse with 429, the quota headers and `Retry-After`.
    Limited { quota: Quota, retry_after_secs: u64 },
    /// The backend is unavailable and the limiter fails open: serve, without quota headers.
    FailOpen,
    /// The backend is unavailable and `RATE_LIMIT_FAIL_CLOSED=true`: refuse with 503 and
    /// `Retry-After`.
    FailClosed { retry_after_secs: u64 },
}

impl LimitDecision {
    /// The quota to put in headers, when there is one.
    pub fn quota(&self) -> Option<&Quota> {
        match self {
            LimitDecision::Allowed(q) | LimitDecision::Limited { quota: q, .. } => Some(q),
            LimitDecision::FailOpen | LimitDecision::FailClosed { .. } => None,
        }
    }

    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, LimitDecision::Allowed(_) | LimitDecision::FailOpen)
    }

    /// The error to answer with when the request may not proceed (429 or 503).
    pub fn to_error(&self) -> Option<ApiError> {
        match self {
            LimitDecision::Limited {
                retry_after_secs, ..
            } => Some(ApiError::RateLimited {
                retry_after_secs: *retry_after_secs,
            }),
            LimitDecision::FailClosed { retry_after_secs } => Some(ApiError::Unavailable {
                what: "rate limiter",
                retry_after_secs: *retry_after_secs,
            }),
            LimitDecision::Allowed(_) | LimitDecision::FailOpen => None,
        }
    }
}

/// Circuit-breaker parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failed Redis calls that open the circuit.
    pub failure_threshold: u32,
    /// How long Redis is skipped once the circuit is open, before one probe call is let
    /// through (half-open).
    pub cool_down: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failure_threshold: 3,
            cool_down: Duration::from_secs(1),
        }
    }
}

/// Tuning that has sensible defaults; tests use it for isolated key namespaces.
#[derive(Debug, Clone)]
pub struct RateLimiterOptions {
    /// Prefix of every Redis key.
    pub namespace: String,
    pub breaker: BreakerSettings,
    /// Cap of the in-process backend (ignored with Redis).
    pub max_identities: usize,
}

impl Default for RateLimiterOptions {
    fn default() -> Self {
        RateLimiterOptions {
            namespace: DEFAULT_NAMESPACE.to_string(),
            breaker: BreakerSettings::default(),
            max_identities: DEFAULT_MAX_IDENTITIES,
        }
    }
}

/// Counts of one limiter instance (the metrics are process-wide; these are per instance).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimiterStats {
    pub allowed: u64,
    pub limited: u64,
    pub backend_errors: u64,
    pub failed_open: u64,
    pub failed_closed: u64,
}

#[derive(Default)]
struct StatCounters {
    allowed: AtomicU64,
    limited: AtomicU64,
    backend_errors: AtomicU64,
    failed_open: AtomicU64,
    failed_closed: AtomicU64,
}

/// The limiter; cheap to clone (shared state behind an `Arc`).
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    fail_closed: bool,
    stats: StatCounters,
}

enum Backend {
    Redis(Box<RedisBackend>),
    Local(LocalStore),
}

impl RateLimiter {
    /// A limiter on Redis when `redis` is given, else in process.
    pub fn new(limits: &LimitsConfig, redis: &RedisConfig, link: Option<RedisLink>) -> RateLimiter {
        RateLimiter::with_options(limits, redis, link, RateLimiterOptions::default())
    }

    pub fn with_options(
        limits: &LimitsConfig,
        redis: &RedisConfig,
        link: Option<RedisLink>,
        options: RateLimiterOptions,
    ) -> RateLimiter {
        let backend = match link {
            Some(link) => Backend::Redis(Box::new(RedisBackend {
                link,
                script: redis::Script::new(GCRA_LUA),
                timeout: redis.timeout,
                namespace: options.namespace,
                breaker: Breaker::new(options.breaker),
                log: LogThrottle::new(LOG_EVERY),
            })),
            None => Backend::Local(LocalStore::new(options.max_identities)),
        };
        RateLimiter {
            inner: Arc::new(Inner {
                backend,
                fail_closed: limits.fail_closed,
                stats: StatCounters::default(),
            }),
        }
    }

    /// Counts one request of `subject` against `limit_per_minute` and says whether to serve
    /// it. A limit of 0 refuses everything (a disabled key) without touching the backend.
    pub async fn check(&self, subject: &Subject, limit_per_minute: u32) -> LimitDecision {
        let decision = if limit_per_minute == 0 {
            LimitDecision::Limited {
                quota: Quota {
                    limit: 0,
                    remaining: 0,
                    reset_secs: WINDOW_US / 1_000_000,
                },
                retry_after_secs: WINDOW_US / 1_000_000,
            }
        } else {
            let gcra = Gcra::per_minute(limit_per_minute);
            match &self.inner.backend {
                Backend::Local(store) => {
                    let key = format!("{}:{}", subject.scope(), subject.id());
                    store.check(&key, gcra).into_decision(limit_per_minute)
                }
                Backend::Redis(redis) => {
                    self.check_redis(redis, subject, gcra, limit_per_minute)
                        .await
                }
            }
        };
        let stats = &self.inner.stats;
        match &decision {
            LimitDecision::Allowed(_) => {
                stats.allowed.fetch_add(1, Ordering::Relaxed);
            }
            LimitDecision::Limited { .. } => {
                stats.limited.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(RATE_LIMIT_HITS, "scope" => subject.scope()).increment(1);
            }
            LimitDecision::FailOpen => {
                stats.failed_open.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(DEGRADED, "decision" => "fail_open").increment(1);
            }
            LimitDecision::FailClosed { .. } => {
                stats.failed_closed.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(DEGRADED, "decision" => "fail_closed").increment(1);
            }
        }
        decision
    }

    async fn check_redis(
        &self,
        redis: &RedisBackend,
        subject: &Subject,
        gcra: Gcra,
        limit: u32,
    ) -> LimitDecision {
        if let Admission::Skip { retry_after } = redis.breaker.admit(Instant::now()) {
            return self.degraded(retry_after);
        }
        let key = format!("{}:{}:{}", redis.namespace, subject.scope(), subject.id());
        match redis.run(&key, gcra).await {
            Ok(step) => {
                if redis.breaker.record_success() {
                    metrics::gauge!(CIRCUIT_OPEN).set(0.0);
                    tracing::info!(
                        backend = "redis",
                        "rate limiter backend is reachable again; limiting resumed"
                    );
                }
                step.into_decision(limit)
            }
            Err(e) => {
                let kind = error_kind(&e);
                self.inner
                    .stats
                    .backend_errors
                    .fetch_add(1, Ordering::Relaxed);
                metrics::counter!(BACKEND_ERRORS, "kind" => kind).increment(1);
                let now = Instant::now();
                if redis.breaker.record_failure(now) {
                    metrics::gauge!(CIRCUIT_OPEN).set(1.0);
                }
                if let Some(suppressed) = redis.log.admit(now) {
                    tracing::warn!(
                        backend = "redis",
                        error = %e,
                        kind,
                        mode = self.mode(),
                        circuit_open = redis.breaker.is_open(),
                        similar_since_last_log = suppressed,
                        "rate limiter backend unavailable; requests are served per RATE_LIMIT_FAIL_CLOSED"
                    );
                }
                self.degraded(redis.breaker.settings.cool_down)
            }
        }
    }

    fn degraded(&self, retry_after: Duration) -> LimitDecision {
        if self.inner.fail_closed {
            LimitDecision::FailClosed {
                retry_after_secs: ceil_secs(retry_after.as_micros() as u64).max(1),
            }
        } else {
            LimitDecision::FailOpen
        }
    }

    /// `"redis"` or `"in-process"`, for `/v1/status`.
    pub fn backend(&self) -> &'static str {
        match self.inner.backend {
            Backend::Redis(_) => "redis",
            Backend::Local(_) => "in-process",
        }
    }

    /// `"fail-open"` or `"fail-closed"`: what happens while the backend is unavailable.
    pub fn mode(&self) -> &'static str {
        if self.inner.fail_closed {
            "fail-closed"
        } else {
            "fail-open"
        }
    }

    /// Whether the breaker currently keeps the limiter away from Redis (never in process).
    pub fn circuit_open(&self) -> bool {
        match &self.inner.backend {
            Backend::Redis(r) => r.breaker.is_open(),
            Backend::Local(_) => false,
        }
    }

    /// Identities held by the in-process backend; `None` with Redis (state lives there).
    pub fn tracked_identities(&self) -> Option<usize> {
        match &self.inner.backend {
            Backend::Redis(_) => None,
            Backend::Local(store) => Some(store.len()),
        }
    }

    /// The in-process cap; `None` with Redis.
    pub fn max_identities(&self) -> Option<usize> {
        match &self.inner.backend {
            Backend::Redis(_) => None,
            Backend::Local(store) => Some(store.capacity()),
        }
    }

    pub fn stats(&self) -> RateLimiterStats {
        let s = &self.inner.stats;
        RateLimiterStats {
            allowed: s.allowed.load(Ordering::Relaxed),
            limited: s.limited.load(Ordering::Relaxed),
            backend_errors: s.backend_errors.load(Ordering::Relaxed),
            failed_open: s.failed_open.load(Ordering::Relaxed),
            failed_closed: s.failed_closed.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("backend", &self.backend())
            .field("mode", &self.mode())
            .field("circuit_open", &self.circuit_open())
            .finish()
    }
}

/// Describes the limiter's metrics and creates their zero-valued series, so dashboards and
/// alerts bind from the first scrape. Call once after installing the recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        BACKEND_ERRORS,
        "Failed rate-limiter calls to Redis, by kind (timeout, connection, command)"
    );
    metrics::describe_gauge!(
        CIRCUIT_OPEN,
        "1 while the rate limiter's circuit breaker skips Redis, else 0"
    );
    metrics::describe_counter!(
        DEGRADED,
        "Requests decided without a rate-limit backend, by decision (fail_open, fail_closed)"
    );
    for kind in ["timeout", "connection", "command"] {
        metrics::counter!(BACKEND_ERRORS, "kind" => kind).increment(0);
    }
    for decision in ["fail_open", "fail_closed"] {
        metrics::counter!(DEGRADED, "decision" => decision).increment(0);
    }
    metrics::gauge!(CIRCUIT_OPEN).set(0.0);
}

/// Sets `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds).
pub fn apply_headers(headers: &mut HeaderMap, quota: &Quota) {
    headers.insert(
        HeaderName::from_static("x-ratelimit-limit"),
        HeaderValue::from(quota.limit),
    );
    headers.insert(
        HeaderName::from_static("x-ratelimit-remaining"),
        HeaderValue::from(quota.remaining),
    );
    headers.insert(
        HeaderName::from_static("x-ratelimit-reset"),
        HeaderValue::from(quota.reset_secs),
    );
}

/// The address to limit a request by.
///
/// The socket peer, unless the peer is a trusted proxy; then `X-Forwarded-For` is walked
/// from the right (each proxy appends the address it received from), skipping trusted
/// proxies, and the first untrusted entry is the client. Entries further left were written
/// by the client or an untrusted hop and are ignored, so a spoofed left-most entry changes
/// nothing. An unparsable entry stops the walk at the last trusted hop, because nothing to
/// its left can be attributed; if every entry is trusted, the left-most one is the client.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer_ip = peer.ip().to_canonical();
    if !is_trusted(peer_ip, trusted) {
        return peer_ip;
    }
    // Header lines of a list-valued header are one list in order (RFC 9110 §5.3).
    let mut entries: Vec<Option<IpAddr>> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        match value.to_str() {
            Ok(text) => entries.extend(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(parse_forwarded_ip),
            ),
            Err(_) => entries.push(None),
        }
    }
    let mut nearest = peer_ip;
    for entry in entries.iter().rev() {
        match entry {
            Some(ip) => {
                let ip = ip.to_canonical();
                if is_trusted(ip, trusted) {
                    nearest = ip;
                } else {
                    return ip;
                }
            }
            None => return nearest,
        }
    }
    nearest
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// Accepts `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]` and `[2001:db8::1]:80`.
fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            s.strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|inner| inner.parse::<IpAddr>().ok())
        })
}

fn ceil_secs(micros: u64) -> u64 {
    micros.div_ceil(1_000_000)
}

// ---------------------------------------------------------------------------------------
// GCRA
// ---------------------------------------------------------------------------------------

/// The per-limit constants of GCRA, in whole microseconds.
///
/// The emission interval is rounded *up* so `limit` intervals span at least a minute: the
/// sustained rate never exceeds the configured one, and all later arithmetic is exact integer
/// arithmetic (no float drift that could refuse the N-th request of a burst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gcra {
    /// Time "earned" back per request: ceil(60 s / limit).
    interval_us: u64,
    /// Burst tolerance: `limit * interval_us` (>= 60 s, < 60 s + limit µs).
    window_us: u64,
}

/// One GCRA decision. `new_tat` is the state to store when `allowed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    allowed: bool,
    new_tat: u64,
    remaining: u64,
    reset_us: u64,
    retry_after_us: u64,
}

impl Gcra {
    fn per_minute(limit: u32) -> Gcra {
        let limit = u64::from(limit.max(1));
        let interval_us = WINDOW_US.div_ceil(limit).max(1);
        Gcra {
            interval_us,
            window_us: interval_us * limit,
        }
    }

    /// The decision at `now` given the stored TAT. Mirrored line by line by `GCRA_LUA`.
    ///
    /// A request is admitted when, after charging it, the TAT is at most one window ahead of
    /// now; `remaining` is how many more intervals fit in that window. Written as
    /// `new_tat > now + window` (not `new_tat - window > now`) so an in-process clock that
    /// starts at zero cannot underflow.
    fn step(&self, now: u64, stored_tat: Option<u64>) -> Step {
        let tat = stored_tat.unwrap_or(now).max(now);
        let new_tat = tat + self.interval_us;
        let horizon = now + self.window_us;
        if new_tat > horizon {
            Step {
                allowed: false,
                new_tat: tat,
                remaining: 0,
                reset_us: tat - now,
                retry_after_us: new_tat - horizon,
            }
        } else {
            Step {
                allowed: true,
                new_tat,
                remaining: (horizon - new_tat) / self.interval_us,
                reset_us: new_tat - now,
                retry_after_us: 0,
            }
        }
    }
}

impl Step {
    fn into_decision(self, limit: u32) -> LimitDecision {
        let quota = Quota {
            limit,
            remaining: self.remaining.min(u64::from(limit)) as u32,
            reset_secs: ceil_secs(self.reset_us),
        };
        if self.allowed {
            LimitDecision::Allowed(quota)
        } else {
            LimitDecision::Limited {
                quota,
                retry_after_secs: ceil_secs(self.retry_after_us).max(1),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Redis backend
// ---------------------------------------------------------------------------------------

/// `Gcra::step` in Lua, atomic on the Redis server.
///
/// KEYS[1] = state key; ARGV[1] = interval (µs); ARGV[2] = window (µs).
/// Returns {allowed (0/1), remaining, reset (µs), retry_after (µs)}.
///
/// - `TIME` is Redis's clock, so replicas with skewed clocks agree. Microseconds since the
///   epoch (~1.8e15) are integers well below 2^53, so Lua's doubles hold them exactly and
///   the additions and comparisons here are exact.
/// - The TAT is written with `%.0f` because `tostring` would print `1.7e+15` and lose digits.
/// - The key expires when its TAT passes: from then on a missing key and the stored state
///   mean the same thing (a fresh identity), so Redis memory holds only active identities.
/// - `replicate_commands` makes Redis < 5 replicate the SET rather than the script (whose
///   `TIME` would differ on a replica); from Redis 5 it is the default.
const GCRA_LUA: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '')
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval
local horizon = now + window
if new_tat > horizon then
  return {0, 0, tat - now, new_tat - horizon}
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
return {1, math.floor((horizon - new_tat) / interval), new_tat - now, 0}
"#;

struct RedisBackend {
    link: RedisLink,
    script: redis::Script,
    timeout: Duration,
    namespace: String,
    breaker: Breaker,
    log: LogThrottle,
}

impl RedisBackend {
    /// One EVALSHA round trip (the client loads the script on NOSCRIPT), bounded in time as
    /// a whole, including the wait for a connection.
    async fn run(&self, key: &str, gcra: Gcra) -> Result<Step, RedisLinkError> {
        let call = async {
            let mut conn = self.link.connection().await?;
            let reply: Vec<i64> = self
                .script
                .key(key)
                .arg(gcra.interval_us)
                .arg(gcra.window_us)
                .invoke_async(&mut conn)
                .await?;
            Ok::<_, RedisLinkError>(reply)
        };
        let reply = match tokio::time::timeout(self.timeout, call).await {
            Ok(reply) => reply?,
            Err(_) => return Err(RedisLinkError::Timeout(self.timeout)),
        };
        match reply[..] {
            [allowed, remaining, reset, retry] if remaining >= 0 && reset >= 0 && retry >= 0 => {
                Ok(Step {
                    allowed: allowed == 1,
                    new_tat: 0,
                    remaining: remaining as u64,
                    reset_us: reset as u64,
                    retry_after_us: retry as u64,
                })
            }
            _ => Err(RedisLinkError::Command(redis::RedisError::from((
                redis::ErrorKind::TypeError,
                "unexpected reply from the rate-limit script",
                format!("{reply:?}"),
            )))),
        }
    }
}

fn error_kind(e: &RedisLinkError) -> &'static str {
    match e {
        RedisLinkError::Timeout(_) => "timeout",
        // The connection manager's own response timeout may fire before ours.
        RedisLinkError::Command(e) if e.is_timeout() => "timeout",
        RedisLinkError::NotConnected => "connection",
        RedisLinkError::Command(e)
            if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() =>
        {
            "connection"
        }
        RedisLinkError::Command(_) => "command",
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The protected data is always left consistent, so a panic elsewhere must not disable
    // rate limiting.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe call is on its way; a probe that never reports back (its request was
    /// cancelled) is replaced after a cool-down, so the breaker cannot stay stuck here.
    HalfOpen {
        probe_started: Instant,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Call,
    Skip { retry_after: Duration },
}

/// Skips Redis after repeated failures so a dead or hanging Redis costs requests nothing,
/// and lets one probe through per cool-down to notice when it is back.
struct Breaker {
    settings: BreakerSettings,
    state: Mutex<BreakerState>,
}

impl Breaker {
    fn new(settings: BreakerSettings) -> Breaker {
        Breaker {
            settings: BreakerSettings {
                failure_threshold: settings.failure_threshold.max(1),
                cool_down: settings.cool_down,
            },
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    fn admit(&self, now: Instant) -> Admission {
        let mut state = lock(&self.state);
        match *state {
            BreakerState::Closed { .. } => Admission::Call,
            BreakerState::Open { until } if now < until => Admission::Skip {
                retry_after: until - now,
            },
            BreakerState::HalfOpen { probe_started }
                if now < probe_started + self.settings.cool_down =>
            {
                Admission::Skip {
                    retry_after: probe_started + self.settings.cool_down - now,
                }
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => {
                *state = BreakerState::HalfOpen { probe_started: now };
                Admission::Call
            }
        }
    }

    /// Returns true when this success closed an open circuit.
    fn record_success(&self) -> bool {
        let mut state = lock(&self.state);
        let was_open = !matches!(*state, BreakerState::Closed { .. });
        *state = BreakerState::Closed { failures: 0 };
        was_open
    }

    /// Returns true when this failure opened a closed circuit.
    fn record_failure(&self, now: Instant) -> bool {
        let mut state = lock(&self.state);
        match *state {
            BreakerState::Closed { failures } => {
                let failures = failures + 1;
                if failures >= self.settings.failure_threshold {
                    *state = BreakerState::Open {
                        until: now + self.settings.cool_down,
                    };
                    true
                } else {
                    *state = BreakerState::Closed { failures };
                    false
                }
            }
            BreakerState::HalfOpen { .. } => {
                *state = BreakerState::Open {
                    until: now + self.settings.cool_down,
                };
                false
            }
            // A late failure of a call admitted before the circuit opened: nothing new.
            BreakerState::Open { .. } => false,
        }
    }

    fn is_open(&self) -> bool {
        !matches!(*lock(&self.state), BreakerState::Closed { .. })
    }
}

/// Lets a message through at most once per period and counts what it held back.
struct LogThrottle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    fn new(every: Duration) -> LogThrottle {
        LogThrottle {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(suppressed since the last message)` when a message may be logged now.
    fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = lock(&self.state);
        let (last, suppressed) = &mut *state;
        match last {
            Some(at) if now.saturating_duration_since(*at) < self.every => {
                *suppressed += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(suppressed))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// In-process backend
// ---------------------------------------------------------------------------------------

/// GCRA state per identity in a sharded map with a hard cap on identities.
///
/// An entry whose TAT has passed is exactly a fresh identity, so dropping it changes no
/// decision; those go first. Only if a shard is still full are live entries evicted, the
/// ones with the smallest TAT: they are the closest to fresh, so the least quota is forgiven,
/// while heavy users (TAT far ahead) keep their state.
struct LocalStore {
    shards: Box<[Mutex<LocalShard>]>,
    shard_cap: usize,
    hasher: RandomState,
    epoch: Instant,
}

struct LocalShard {
    /// Key: `scope:id`; value: TAT in µs since `epoch`.
    map: HashMap<Box<str>, u64>,
    last_sweep_us: u64,
}

impl LocalStore {
    fn new(max_identities: usize) -> LocalStore {
        let max_identities = max_identities.max(LOCAL_SHARDS);
        LocalStore {
            shards: (0..LOCAL_SHARDS)
                .map(|_| {
                    Mutex::new(LocalShard {
                        map: HashMap::new(),
                        last_sweep_us: 0,
                    })
                })
                .collect(),
            // Per-shard caps sum to at most the total, so the bound holds globally.
            shard_cap: max_identities / LOCAL_SHARDS,
            hasher: RandomState::new(),
            epoch: Instant::now(),
        }
    }

    fn capacity(&self) -> usize {
        self.shard_cap * LOCAL_SHARDS
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    fn check(&self, key: &str, gcra: Gcra) -> Step {
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % LOCAL_SHARDS];
        let mut shard = lock(shard);
        // Read the clock under the lock so each shard sees time move forward in lock order.
        let now = self.epoch.elapsed().as_micros() as u64;
        shard.check_at(key, gcra, now, self.shard_cap)
    }
}

impl LocalShard {
    fn check_at(&mut self, key: &str, gcra: Gcra, now: u64, cap: usize) -> Step {
        if now.saturating_sub(self.last_sweep_us) >= LOCAL_SWEEP_EVERY_US {
            self.sweep_expired(now);
        }
        let stored = self.map.get(key).copied();
        let step = gcra.step(now, stored);
        if step.allowed {
            match self.map.get_mut(key) {
                Some(tat) => *tat = step.new_tat,
                None => {
                    if self.map.len() >= cap {
                        self.make_room(now, cap);
                    }
                    self.map.insert(key.into(), step.new_tat);
                }
            }
        }
        step
    }

    fn sweep_expired(&mut self, now: u64) {
        self.map.retain(|_, tat| *tat > now);
        self.last_sweep_us = now;
    }

    /// Frees an eighth of the shard at once so the O(n) scan is paid once per `cap / 8`
    /// new identities (amortised O(1) per insert).
    fn make_room(&mut self, now: u64, cap: usize) {
        self.sweep_expired(now);
        let target = cap - cap.div_ceil(8);
        if self.map.len() <= target {
            return;
        }
        let excess = self.map.len() - target;
        let mut tats: Vec<u64> = self.map.values().copied().collect();
        let (_, &mut threshold, _) = tats.select_nth_unstable(excess - 1);
        // Entries equal to the threshold may be more than needed; evict only `excess`.
        let mut to_evict = excess;
        self.map.retain(|_, tat| {
            if to_evict > 0 && *tat <= threshold {
                to_evict -= 1;
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn gcra_constants_are_exact_integers() {
        assert_eq!(
            Gcra::per_minute(60),
            Gcra {
                interval_us: S,
                window_us: 60 * S
            }
        );
        // 60 s / 7 is not whole: rounded up, so 7 intervals span slightly more than 60 s.
        let g = Gcra::per_minute(7);
        assert_eq!(g.interval_us, 8_571_429);
        assert_eq!(g.window_us, 60_000_003);
        assert_eq!(Gcra::per_minute(0), Gcra::per_minute(1));
        assert_eq!(Gcra::per_minute(u32::MAX).interval_us, 1);
    }

    #[test]
    fn gcra_admits_exactly_the_limit_in_a_burst() {
        for limit in [1u32, 2, 7, 10, 1000, 999_983] {
            let g = Gcra::per_minute(limit);
            let now = 1_700_000_000 * S;
            let mut tat = None;
            for i in 0..limit {
                let step = g.step(now, tat);
                assert!(step.allowed, "limit {limit}: request {i} refused");
                assert_eq!(step.remaining, u64::from(limit - 1 - i));
                tat = Some(step.new_tat);
            }
            let refused = g.step(now, tat);
            assert!(!refused.allowed, "limit {limit}: request {limit} admitted");
            assert_eq!(refused.retry_after_us, g.interval_us);
            assert_eq!(refused.new_tat, tat.unwrap(), "a refusal must not charge");
        }
    }

    #[test]
    fn gcra_replenishes_one_per_interval() {
        let g = Gcra::per_minute(4); // one every 15 s
        let mut tat = None;
        for _ in 0..4 {
            tat = Some(g.step(0, tat).new_tat);
        }
        let limited = g.step(0, tat);
        assert!(!limited.allowed);
        assert_eq!(limited.reset_us, 60 * S);
        assert_eq!(limited.retry_after_us, 15 * S);
        assert!(!g.step(15 * S - 1, tat).allowed);
        let again = g.step(15 * S, tat);
        assert!(again.allowed);
        assert_eq!(again.remaining, 0);
        // After a full window idle the state is the same as a fresh identity's.
        assert_eq!(g.step(60 * S + 15 * S, tat), g.step(75 * S, None));
    }

    #[test]
    fn step_converts_to_decision_with_whole_seconds() {
        let g = Gcra::per_minute(4);
        let first = g.step(0, None).into_decision(4);
        assert_eq!(
            first,
            LimitDecision::Allowed(Quota {
                limit: 4,
                remaining: 3,
                reset_secs: 15
            })
        );
        let limited = Step {
            allowed: false,
            new_tat: 0,
            remaining: 0,
            reset_us: 1,
            retry_after_us: 1,
        }
        .into_decision(4);
        assert_eq!(
            limited,
            LimitDecision::Limited {
                quota: Quota {
                    limit: 4,
                    remaining: 0,
                    reset_secs: 1
                },
                retry_after_secs: 1
            }
        );
    }

    #[test]
    fn decisions_map_to_api_errors() {
        let limited = LimitDecision::Limited {
            quota: Quota {
                limit: 1,
                remaining: 0,
                reset_secs: 60,
            },
            retry_after_secs: 42,
        };
        let err = limited.to_error().unwrap();
        assert_eq!(err.code(), "RATE_LIMITED");
        assert_eq!(err.status().as_u16(), 429);
        let closed = LimitDecision::FailClosed {
            retry_after_secs: 1,
        };
        assert_eq!(closed.to_error().unwrap().status().as_u16(), 503);
        assert!(!closed.is_allowed() && closed.quota().is_none());
        assert!(LimitDecision::FailOpen.is_allowed());
        assert!(LimitDecision::FailOpen.to_error().is_none());
    }

    #[test]
    fn subject_ids_are_bounded_and_group_ipv6_by_64() {
        assert_eq!(Subject::ApiKey("abc".into()).id(), "abc");
        let long = "x".repeat(500);
        let hashed = Subject::ApiKey(long.clone()).id();
        assert!(hashed.starts_with("h:") && hashed.len() == 34, "{hashed}");
        assert_eq!(hashed, Subject::ApiKey(long).id(), "hashing is stable");
        assert_ne!(Subject::ApiKey("a b".into()).id(), "a b");
        // An id that looks like a hash is hashed too, so it cannot collide with one.
        assert_ne!(Subject::ApiKey(hashed.clone()).id(), hashed);

        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Subject::Ip(a).id(), "2001:db8:1:2::/64");
        assert_eq!(Subject::Ip(a).id(), Subject::Ip(b).id());
        assert_ne!(Subject::Ip(a).id(), Subject::Ip(c).id());
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(Subject::Ip(mapped).id(), "203.0.113.7");
        assert_eq!(Subject::Ip(mapped).scope(), "ip");
        assert_eq!(Subject::ApiKey("k".into()).scope(), "key");
    }

    #[test]
    fn breaker_opens_after_threshold_and_probes_after_cool_down() {
        let b = Breaker::new(BreakerSettings {
            failure_threshold: 3,
            cool_down: Duration::from_secs(1),
        });
        let t0 = Instant::now();
        assert_eq!(b.admit(t0), Admission::Call);
        assert!(!b.record_failure(t0));
        assert!(!b.record_failure(t0));
        // A success in between resets the count.
        assert!(!b.record_success());
        assert!(!b.record_failure(t0));
        assert!(!b.record_failure(t0));
        assert!(!b.is_open());
        assert!(b.record_failure(t0), "third consecutive failure opens");
        assert!(b.is_open());
        assert_eq!(
            b.admit(t0 + Duration::from_millis(400)),
            Admission::Skip {
                retry_after: Duration::from_millis(600)
            }
        );
        // Cool-down over: exactly one probe goes through.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.admit(t1), Admission::Call);
        assert!(matches!(b.admit(t1), Admission::Skip { .. }));
        // The probe fails: open again for a full cool-down.
        assert!(!b.record_failure(t1));
        assert!(matches!(
            b.admit(t1 + Duration::from_millis(999)),
            Admission::Skip { .. }
        ));
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(b.admit(t2), Admission::Call);
        assert!(b.record_success(), "a successful probe closes the circuit");
        assert!(!b.is_open());
        assert_eq!(b.admit(t2), Admission::Call);
    }

    #[test]
    fn breaker_replaces_a_lost_probe() {
        let b = Breaker::new(BreakerSettings {
            failure_threshold: 1,
            cool_down: Duration::from_secs(1),
        });
        let t0 = Instant::now();
        assert!(b.record_failure(t0));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.admit(t1), Admission::Call);
        // The probe's request was cancelled and never reported; another one is allowed later.
        assert!(matches!(b.admit(t1), Admission::Skip { .. }));
        assert_eq!(b.admit(t1 + Duration::from_secs(1)), Admission::Call);
    }

    #[test]
    fn log_throttle_lets_one_message_per_period() {
        let t = LogThrottle::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(t.admit(t0), Some(0));
        for i in 1..=10 {
            assert_eq!(t.admit(t0 + Duration::from_millis(i * 100)), None);
        }
        assert_eq!(t.admit(t0 + Duration::from_secs(5)), Some(10));
        assert_eq!(t.admit(t0 + Duration::from_secs(6)), None);
    }

    #[test]
    fn local_shard_evicts_expired_first_then_smallest_tat() {
        let mut shard = LocalShard {
            map: HashMap::new(),
            last_sweep_us: 0,
        };
        let cap = 16;
        let slow = Gcra::per_minute(1); // TAT one minute ahead per request
        let fast = Gcra::per_minute(60_000); // TAT one millisecond ahead
        shard.check_at("heavy", slow, 0, cap);
        for i in 0..15 {
            shard.check_at(&format!("light{i}"), fast, 0, cap);
        }
        assert_eq!(shard.map.len(), 16);
        // Full: a newcomer evicts the entries closest to fresh, never the heavy user.
        shard.check_at("new", fast, 0, cap);
        assert!(shard.map.len() <= cap);
        assert!(shard.map.contains_key("heavy") && shard.map.contains_key("new"));
        assert!(!shard.check_at("heavy", slow, 10, cap).allowed);
        // Once the light entries' TATs pass, they are dropped before anything else.
        let later = 2_000;
        for i in 0..40 {
            shard.check_at(&format!("more{i}"), fast, later, cap);
            assert!(shard.map.len() <= cap);
        }
        assert!(shard.map.contains_key("heavy"));
    }

    #[test]
    fn local_shard_sweeps_idle_state_periodically() {
        let mut shard = LocalShard {
            map: HashMap::new(),
            last_sweep_us: 0,
        };
        let g = Gcra::per_minute(60);
        for i in 0..100 {
            shard.check_at(&format!("k{i}"), g, 0, 1000);
        }
        assert_eq!(shard.map.len(), 100);
        shard.check_at("late", g, LOCAL_SWEEP_EVERY_US, 1000);
        assert_eq!(shard.map.len(), 1, "idle entries are gone after a window");
    }

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn client_ip_walks_forwarded_for_from_the_right() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        let proxy: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let outsider: SocketAddr = "198.51.100.9:4000".parse().unwrap();

        // Untrusted peer: its header is ignored.
        assert_eq!(
            client_ip(outsider, &headers(&["1.1.1.1"]), &trusted),
            ip("198.51.100.9")
        );
        // Trusted peer: right-most untrusted entry; the spoofed left-most one is ignored.
        assert_eq!(
            client_ip(proxy, &headers(&["6.6.6.6, 203.0.113.7"]), &trusted),
            ip("203.0.113.7")
        );
        // Chains of trusted proxies are skipped, across several header lines too.
        assert_eq!(
            client_ip(
                proxy,
                &headers(&["6.6.6.6, 203.0.113.7", "10.1.1.1"]),
                &trusted
            ),
            ip("203.0.113.7")
        );
        // Ports, brackets and blank items.
        assert_eq!(
            client_ip(proxy, &headers(&["203.0.113.7:5555, ,10.2.2.2"]), &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_ip(proxy, &headers(&["[2001:db8::7]:443"]), &trusted),
            ip("2001:db8::7")
        );
        // Garbage stops the walk at the nearest trusted hop.
        assert_eq!(
            client_ip(
                proxy,
                &headers(&["203.0.113.7, unknown, 10.3.3.3"]),
                &trusted
            ),
            ip("10.3.3.3")
        );
        // No header: the proxy itself. Everything trusted: the left-most entry.
        assert_eq!(client_ip(proxy, &headers(&[]), &trusted), ip("10.0.0.5"));
        assert_eq!(
            client_ip(proxy, &headers(&["10.9.9.9, 10.8.8.8"]), &trusted),
            ip("10.9.9.9")
        );
        // IPv4-mapped peers match IPv4 trusted ranges.
        let mapped: SocketAddr = "[::ffff:10.0.0.5]:4000".parse().unwrap();
        assert_eq!(
            client_ip(mapped, &headers(&["203.0.113.7"]), &trusted),
            ip("203.0.113.7")
        );
        // No trusted proxies configured: always the peer.
        assert_eq!(
            client_ip(proxy, &headers(&["203.0.113.7"]), &[]),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn headers_carry_the_quota() {
        let mut h = HeaderMap::new();
        apply_headers(
            &mut h,
            &Quota {
                limit: 100,
                remaining: 7,
                reset_secs: 36,
            },
        );
        assert_eq!(h["x-ratelimit-limit"], "100");
        assert_eq!(h["x-ratelimit-remaining"], "7");
        assert_eq!(h["x-ratelimit-reset"], "36");
    }
}
