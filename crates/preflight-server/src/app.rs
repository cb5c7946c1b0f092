//! Application state and the server's lifecycle: start, serve, shut down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::auth::login_throttle::FailedLoginThrottle;
use crate::auth::passwords::PasswordHasherPool;
use crate::auth::tokens::TokenSigner;
use crate::auth::{KeyVerifier, ScopeSet, USAGE_FLUSH_INTERVAL};
use crate::config::{redact_url, Config, StorageConfig};
use crate::domain::audit::{self, AuditAction, AuditExt};
use crate::domain::identity::{self, Acting};
use crate::outbound::{AddressGuard, Outbound, Sealer};
use crate::rate_limit::RateLimiter;
use crate::redis_link::RedisLink;
use crate::registry::TemplateRegistry;
use crate::state::{AppState, Inner};
use crate::storage::{self, Store};
use crate::writer::EvaluationWriter;

/// Opens the store and applies migrations: the `preflight migrate` command.
pub async fn migrate(storage_config: &StorageConfig) -> anyhow::Result<()> {
    let store = storage::open(storage_config).await?;
    store.migrate().await?;
    store.close().await;
    Ok(())
}

/// Builds the state: store (migrated in development), Redis link, metrics.
pub async fn build_state(config: Config, metrics: PrometheusHandle) -> anyhow::Result<AppState> {
    let store = storage::open(&config.storage).await?;
    if config.is_production() {
        // Production migrates in a separate step (`preflight migrate`, an init container);
        // refusing to serve on an older schema beats failing request by request.
        match tokio::time::timeout(config.storage.connect_timeout, store.pending_migrations()).await
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
    if !config.is_production() {
        bootstrap_first_tenant(store.as_ref(), &config).await?;
    }
    let redis = match &config.redis.url {
        Some(url) => {
            tracing::info!(url = %redact_url(url.expose()), "using redis");
            Some(RedisLink::start(url.expose(), config.redis.timeout)?)
        }
        None => None,
    };
    let keys = &config.auth.keys;
    let passwords = PasswordHasherPool::new();
    passwords.warm_up();
    let state = AppState::new(Inner {
        keys: KeyVerifier::new(keys.api_key_salt.expose()),
        tokens: TokenSigner::new(keys.jwt_secret.expose(), config.auth.jwt_expire_minutes),
        passwords,
        limiter: RateLimiter::new(&config.limits, &config.redis, redis.clone()),
        login_throttle: FailedLoginThrottle::new(),
        templates: Arc::new(TemplateRegistry::new(
            store.clone(),
            config.storage.template_cache_max,
        )),
        writer: EvaluationWriter::start(store.clone()),
        alert_rules: Default::default(),
        outbound: Outbound::new(
            AddressGuard::new(config.webhooks.allowed_cidrs.clone()),
            config.webhooks.timeout,
        )?,
        sealer: Sealer::new(keys.api_key_salt.expose()),
        delivery_wakeup: Default::default(),
        evaluations: Default::default(),
        config,
        store,
        redis,
        metrics,
        started_at: Instant::now(),
    });
    tokio::spawn(state.templates().clone().sync_forever());
    tokio::spawn(crate::delivery::supervise(state.clone()));
    tokio::spawn(crate::alert_windows::supervise(state.clone()));
    let janitor = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let before = chrono::Utc::now()
                - chrono::Duration::hours(crate::domain::idempotency::RETENTION_HOURS);
            if let Err(e) = janitor.store().purge_idempotency(before).await {
                tracing::debug!(error = %e, "idempotency purge skipped");
            }
        }
    });
    let flusher = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(USAGE_FLUSH_INTERVAL);
        tick.tick().await;
        loop {
            tick.tick().await;
            flusher.keys().flush_usage(flusher.store().as_ref()).await;
        }
    });
    Ok(state)
}

/// On the very first start of a development or embedded install, creates a `default` tenant
/// and prints a tenant-admin key once, so a newcomer can call the API right away.
async fn bootstrap_first_tenant(store: &dyn Store, config: &Config) -> anyhow::Result<()> {
    if store.count_tenants().await? > 0 {
        return Ok(());
    }
    let salt = &config.auth.keys.api_key_salt;
    let system = Acting {
        actor: "system".into(),
        ip: None,
        request_id: None,
    };
    let tenant = identity::create_tenant(store, "Default", Some("default"), &system).await?;
    let scopes = ScopeSet::all();
    let (record, secret) = crate::auth::keys::new_api_key_record(
        salt.expose(),
        crate::auth::keys::KeySpec {
            tenant_id: Some(tenant.id),
            name: "first-start admin key".into(),
            scopes,
            operator: false,
            rate_limit_per_minute: None,
            expires_at: None,
            created_by: "system".into(),
        },
    );
    let event = audit::event(Some(tenant.id), "system", AuditAction::ApiKeyCreated)
        .target(format!("api_key:{}", record.id))
        .details(serde_json::json!({"prefix": record.prefix, "scopes": scopes.names()}));
    store.create_api_key(&record, &event).await?;
    // Printed, not logged: it must not end up in log storage, and it is shown this once
    // (exactly one occurrence; the hint refers to it through the variable the CLI reads).
    // With API_PORT=0 the kernel picks the port after this runs; the listening line says it.
    let port = match config.server.port {
        0 => "PORT".to_string(),
        p => p.to_string(),
    };
    println!(
        "\npreflight: first start: created tenant \"default\" ({}) and a tenant-admin API key.\n\
         Store it now, it is not shown again:\n\n    export PREFLIGHT_API_KEY={}\n\n\
         Try: curl -H \"X-API-Key: $PREFLIGHT_API_KEY\" http://localhost:{port}/v1/status\n",
        tenant.id, secret
    );
    Ok(())
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
    let addr = SocketAddr::new(config.server.host, config.server.port);
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

    let grace = config.server.shutdown_grace;
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
    state.keys().flush_usage(state.store().as_ref()).await;
    state.store().close().await;
    tracing::info!("preflight stopped");
    Ok(())
}
