//! The state shared by every request: configuration, store, caches, limiter, writer.
//!
//! It holds services, not rules: the domain layer (`crate::domain`) decides, the HTTP layer
//! (`crate::http`) parses and maps, and both reach the services through this handle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use preflight_engine::Decision;

use crate::auth::login_throttle::FailedLoginThrottle;
use crate::auth::passwords::PasswordHasherPool;
use crate::auth::tokens::TokenSigner;
use crate::auth::KeyVerifier;
use crate::config::Config;
use crate::outbound::{Outbound, Sealer};
use crate::rate_limit::RateLimiter;
use crate::redis_link::RedisLink;
use crate::registry::TemplateRegistry;
use crate::rule_cache::RuleCache;
use crate::storage::Store;
use crate::writer::EvaluationWriter;

/// The services every request may use, built once at start by `app::build_state`.
pub struct Inner {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub redis: Option<RedisLink>,
    pub metrics: PrometheusHandle,
    pub started_at: Instant,
    pub keys: KeyVerifier,
    pub tokens: TokenSigner,
    pub passwords: PasswordHasherPool,
    pub limiter: RateLimiter,
    pub login_throttle: FailedLoginThrottle,
    pub templates: Arc<TemplateRegistry>,
    pub writer: EvaluationWriter,
    pub alert_rules: RuleCache,
    pub outbound: Outbound,
    pub sealer: Sealer,
    /// Wakes the delivery worker when a commit queued deliveries.
    pub delivery_wakeup: tokio::sync::Notify,
    /// Evaluations answered by this instance since it started, by decision.
    pub evaluations: [std::sync::atomic::AtomicU64; 4],
}

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState {
            inner: Arc::new(inner),
        }
    }
    pub fn config(&self) -> &Config {
        &self.inner.config
    }
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }
    pub fn redis(&self) -> Option<&RedisLink> {
        self.inner.redis.as_ref()
    }
    pub fn metrics(&self) -> &PrometheusHandle {
        &self.inner.metrics
    }
    pub fn uptime(&self) -> Duration {
        self.inner.started_at.elapsed()
    }
    pub fn keys(&self) -> &KeyVerifier {
        &self.inner.keys
    }
    pub fn tokens(&self) -> &TokenSigner {
        &self.inner.tokens
    }
    pub fn passwords(&self) -> &PasswordHasherPool {
        &self.inner.passwords
    }
    pub fn limiter(&self) -> &RateLimiter {
        &self.inner.limiter
    }
    pub fn login_throttle(&self) -> &FailedLoginThrottle {
        &self.inner.login_throttle
    }
    pub fn templates(&self) -> &Arc<TemplateRegistry> {
        &self.inner.templates
    }
    pub fn writer(&self) -> &EvaluationWriter {
        &self.inner.writer
    }
    pub fn alert_rules(&self) -> &RuleCache {
        &self.inner.alert_rules
    }
    pub fn outbound(&self) -> &Outbound {
        &self.inner.outbound
    }
    pub fn sealer(&self) -> &Sealer {
        &self.inner.sealer
    }
    pub fn delivery_wakeup(&self) -> &tokio::sync::Notify {
        &self.inner.delivery_wakeup
    }

    pub fn count_evaluation(&self, decision: Decision) {
        let i = Decision::ALL
            .iter()
            .position(|d| *d == decision)
            .expect("every decision is listed");
        self.inner.evaluations[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("evaluations_total", "decision" => decision.as_str()).increment(1);
    }
    /// Evaluations answered by this instance since start, per decision.
    pub fn evaluation_counts(&self) -> Vec<(&'static str, u64)> {
        Decision::ALL
            .iter()
            .zip(&self.inner.evaluations)
            .map(|(d, n)| (d.as_str(), n.load(std::sync::atomic::Ordering::Relaxed)))
            .collect()
    }
}
