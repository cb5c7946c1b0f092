//! Logs, metrics and error reporting: set up once at start.
//!
//! Metric names are the deployment guide's, exactly; `endpoint` labels are route templates so
//! cardinality stays bounded whatever paths clients send.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{Environment, LogFormat, TelemetryConfig};

pub const REQUEST_COUNT: &str = "request_count_total";
pub const REQUEST_LATENCY: &str = "request_latency_seconds";
pub const EVALUATION_LATENCY: &str = "evaluation_latency_seconds";
pub const RATE_LIMIT_HITS: &str = "rate_limit_hits_total";

const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the Prometheus recorder and registers the guide's four metrics so they are
/// visible from the first scrape.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REQUEST_LATENCY.into()), &LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(EVALUATION_LATENCY.into()), &LATENCY_BUCKETS)?
        .install_recorder()?;
    metrics::describe_counter!(
        REQUEST_COUNT,
        "HTTP requests by method, route template and status"
    );
    metrics::describe_histogram!(
        REQUEST_LATENCY,
        metrics::Unit::Seconds,
        "HTTP request latency by method and route template"
    );
    metrics::describe_histogram!(
        EVALUATION_LATENCY,
        metrics::Unit::Seconds,
        "Time to evaluate one document, by decision"
    );
    metrics::describe_counter!(
        RATE_LIMIT_HITS,
        "Requests refused by the rate limiter, by scope"
    );
    // Zero-valued series: an honest "none yet" that lets dashboards and alerts bind at once.
    for scope in ["key", "ip"] {
        metrics::counter!(RATE_LIMIT_HITS, "scope" => scope).increment(0);
    }
    // Registering the handles (without recording) makes empty histograms appear.
    for decision in ["MATCH", "REVIEW", "NEW", "REJECT"] {
        let _ = metrics::histogram!(EVALUATION_LATENCY, "decision" => decision);
    }
    Ok(handle)
}

/// Structured logs on stdout: JSON in production, human-readable otherwise.
pub fn init_logging(config: &TelemetryConfig) {
    let filter = EnvFilter::try_new(format!(
        "{level},sqlx=warn,hyper=warn,h2=warn,tower=warn,redis=warn",
        level = config.log_level
    ))
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let sentry_layer = config
        .sentry_dsn
        .as_ref()
        .map(|_| sentry::integrations::tracing::layer());
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(sentry_layer);
    let result = match config.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .try_init(),
    };
    // A second init (e.g. in-process tests) keeps the first subscriber.
    let _ = result;
}

/// Starts Sentry when `SENTRY_DSN` is set; the guard flushes events on drop.
pub fn init_sentry(
    config: &TelemetryConfig,
    environment: Environment,
) -> Option<sentry::ClientInitGuard> {
    let dsn = config.sentry_dsn.as_ref()?;
    let guard = sentry::init((
        dsn.expose(),
        sentry::ClientOptions {
            release: Some(env!("CARGO_PKG_VERSION").into()),
            environment: Some(
                config
                    .sentry_environment
                    .clone()
                    .unwrap_or_else(|| environment.as_str().to_string())
                    .into(),
            ),
            traces_sample_rate: config.sentry_traces_sample_rate,
            send_default_pii: false,
            ..Default::default()
        },
    ));
    Some(guard)
}
