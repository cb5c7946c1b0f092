//! `serve` and `migrate`: load configuration once, set up telemetry, run.

use std::process::ExitCode;

use preflight_server::config::{Config, GivenKeys};
use preflight_server::{app, secrets, telemetry};

/// Reads `.env` (development only) and parses the environment; a bad configuration is one
/// message naming every problem, and exit code 2. Shared by every command that opens the
/// database, so they all see the same configuration as the server.
pub(crate) fn load_config() -> Result<Config<GivenKeys>, ExitCode> {
    let production = std::env::var("PREFLIGHT_ENV")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "production" | "prod"
            )
        })
        .unwrap_or(false);
    if !production {
        // Variables already set in the environment win over `.env`.
        let _ = dotenvy::dotenv();
    }
    Config::from_process_env().map_err(|e| {
        eprint!("preflight: {e}");
        ExitCode::from(2)
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub fn serve() -> anyhow::Result<ExitCode> {
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let _sentry = telemetry::init_sentry(&config.telemetry, config.environment);
    telemetry::init_logging(&config.telemetry);
    let (config, generated) = secrets::resolve_keys(config)?;
    if !generated.is_empty() {
        tracing::warn!(
            secrets = ?generated,
            dir = %config.data_dir.display(),
            "generated development secrets and kept them in the data directory; \
             set JWT_SECRET and API_KEY_SALT for anything but local development"
        );
    }
    let metrics = telemetry::install_metrics()?;
    preflight_server::rate_limit::describe_metrics();
    runtime()?.block_on(async move {
        let state = app::build_state(config, metrics).await?;
        app::serve(state).await
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn migrate() -> anyhow::Result<ExitCode> {
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    telemetry::init_logging(&config.telemetry);
    runtime()?.block_on(app::migrate(&config.storage))?;
    eprintln!("preflight: migrations applied");
    Ok(ExitCode::SUCCESS)
}
