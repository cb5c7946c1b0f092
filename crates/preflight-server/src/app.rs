//! Application state and the server's lifecycle: start, serve, shut down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::config::{redact_url, Config};
use crate::redis_link::RedisLink;
use crate::storage::{self, Store};

struct Inner {
    config: Config,
    store: Arc<dyn Store>,
    redis: Option<RedisLink>,
    metrics: PrometheusHandle,
    started_at: Instant,
}

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl AppState {
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
}

/// Opens the store and applies migrations: the `preflight migrate` command.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = storage::open(config).await?;
    store.migrate().await?;
    store.close().await;
    Ok(())
}

/// Builds the state: store (migrated in development), Redis link, metrics.
pub async fn build_state(config: Config, metrics: PrometheusHandle) -> anyhow::Result<AppState> {
    let store = storage::open(&config).await?;
    if config.is_production() {
        // Production migrates in a separate step (`preflight migrate`, an init container);
        // refusing to serve on an older schema beats failing request by request.
        match tokio::time::timeout(config.database_connect_timeout, store.pending_migrations())
            .await
        {
            Ok(Ok(pending)) if !pending.is_empty() => anyhow::bail!(
                "the database has {} pending migration(s) {:?}; run `preflight migrate` first",
                pending.len(),
                pending
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "database not reachable at start; /ready reports not_ready until it is")
            }
            Err(_) => tracing::warn!(
                "database did not answer at start; /ready reports not_ready until it does"
            ),
        }
    } else {
        store.migrate().await?;
    }
    let redis = match &config.redis_url {
        Some(url) => {
            tracing::info!(url = %redact_url(url.expose()), "using redis");
            Some(RedisLink::start(url.expose(), config.redis_timeout)?)
        }
        None => None,
    };
    Ok(AppState {
        inner: Arc::new(Inner {
            config,
            store,
            redis,
            metrics,
            started_at: Instant::now(),
        }),
    })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// Serves until a shutdown signal, then stops accepting, lets in-flight requests finish
/// within `SHUTDOWN_GRACE_SECONDS`, and closes the store.
pub async fn serve(state: AppState) -> anyhow::Result<()> {
    let config = state.config().clone();
    let addr = SocketAddr::new(config.api_host, config.api_port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(
        address = %local,
        database = state.store().backend(),
        limiter = if state.redis().is_some() { "redis" } else { "in-process" },
        environment = config.environment.as_str(),
        "preflight listening"
    );

    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let app = crate::http::router(state.clone());
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received; finishing in-flight requests");
        let _ = signalled_tx.send(());
    });

    let grace = config.shutdown_grace;
    let deadline = async move {
        if signalled_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result?,
        _ = deadline => tracing::warn!(grace_seconds = grace.as_secs(), "in-flight requests did not finish within the grace period"),
    }
    state.store().close().await;
    tracing::info!("preflight stopped");
    Ok(())
}
