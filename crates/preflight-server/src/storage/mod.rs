//! Storage behind one trait: PostgreSQL in production, embedded SQLite by default.
//!
//! Handlers only see `dyn Store`, so both backends serve the same API and the same tests.
//! One type, [`SqlStore`], implements it for both: each query is written once as ordinary
//! Rust ([`sql::Query`]) and run on either pool; what really differs between the backends
//! is in [`backend::Backend`]. The traits are split per aggregate, one module each. Each
//! backend has its own versioned migrations under `migrations/<backend>/`.

pub mod alerts;
pub mod analytics;
pub mod audit;
mod backend;
pub mod evaluations;
pub mod idempotency;
pub mod identity;
pub mod review;
mod sql;
pub mod suggestions;
pub mod templates;
#[cfg(test)]
pub(crate) mod tests;
pub mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;

pub use alerts::AlertStore;
pub use analytics::AnalyticsStore;
pub use audit::AuditStore;
pub use backend::Backend;
pub use evaluations::EvaluationStore;
pub use idempotency::IdempotencyStore;
pub use identity::IdentityStore;
pub use review::ReviewStore;
pub use suggestions::SuggestionStore;
pub use templates::TemplateStore;
pub use webhooks::WebhookStore;

use crate::config::{DatabaseConfig, StorageConfig};
use sql::{Db, Query};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or did not answer in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A row with this natural key exists already; the text says which, for the client
    /// (today's messages, e.g. "a user with this email exists", "this template_id and version exist already").
    #[error("{0}")]
    Duplicate(&'static str),
    /// The row changed since it was read (an optimistic check failed): re-read and retry.
    /// The text names what changed, e.g. "template", "evaluation feedback".
    #[error("the {0} changed concurrently")]
    Stale(&'static str),
    /// The row is not in a state that allows the change (e.g. a review item another
    /// reviewer holds); the text names the row. Nothing was written.
    #[error("the {0} does not allow this change now")]
    Conflict(&'static str),
    /// The Idempotency-Key was claimed in the meantime (a concurrent retry of the same request).
    #[error("the idempotency key was used meanwhile")]
    IdempotencyKeyTaken,
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("database error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) if is_timeout_or_shutdown(db.code().as_deref()) => {
                StoreError::Unavailable(db.to_string())
            }
            other => StoreError::Other(other.to_string()),
        }
    }
}

/// PostgreSQL SQLSTATEs that mean "try again later", not "your query is wrong":
/// statement timeout (57014), admin/crash shutdown (57P01..57P03), too many connections (53300).
fn is_timeout_or_shutdown(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("57014" | "57P01" | "57P02" | "57P03" | "53300" | "5") // "5" = SQLITE_BUSY
    )
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migration(e.to_string())
    }
}

#[async_trait]
pub trait Store:
    TemplateStore
    + EvaluationStore
    + IdentityStore
    + AuditStore
    + IdempotencyStore
    + AlertStore
    + WebhookStore
    + AnalyticsStore
    + ReviewStore
    + SuggestionStore
    + Send
    + Sync
    + 'static
{
    /// `postgresql` or `sqlite`, for status output.
    fn backend(&self) -> &'static str;
    /// How many evaluation batches may commit at once: PostgreSQL overlaps commits (and
    /// their WAL flushes); SQLite has one writer anyway.
    fn max_concurrent_commits(&self) -> usize;
    /// One cheap round trip; used by `/ready`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Applies every pending migration of this backend.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Versions of migrations this binary knows but the database has not applied.
    async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError>;
    /// Closes the pool, waiting for in-flight queries.
    async fn close(&self);
}

/// Opens the configured backend. PostgreSQL connects lazily so the process can start (and
/// report not-ready) while the database is still coming up.
pub async fn open(config: &StorageConfig) -> Result<Arc<dyn Store>, StoreError> {
    let db = match &config.database {
        DatabaseConfig::Sqlite { path } => backend::connect_sqlite(path, config).await?,
        DatabaseConfig::Postgres { url } => backend::connect_postgres(url, config)?,
    };
    Ok(Arc::new(SqlStore { db }))
}

/// The one [`Store`] implementation, over a pool of either backend.
pub struct SqlStore {
    db: Db,
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.db.backend().name()
    }

    fn max_concurrent_commits(&self) -> usize {
        self.db.backend().max_concurrent_commits()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.execute(Query::new("SELECT 1")).await?;
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = self.db.backend().migrator();
        match &self.db {
            Db::Postgres(pool) => migrator.run(pool).await?,
            Db::Sqlite(pool) => migrator.run(pool).await?,
        }
        Ok(())
    }

    async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let backend = self.db.backend();
        let (exists,): (bool,) = self
            .db
            .fetch_one(Query::new(backend.migrations_table_exists()))
            .await?;
        let applied: Vec<i64> = if exists {
            self.db
                .fetch_all::<(i64,)>(Query::new(
                    "SELECT version FROM _sqlx_migrations WHERE success",
                ))
                .await?
                .into_iter()
                .map(|(v,)| v)
                .collect()
        } else {
            Vec::new()
        };
        Ok(missing_versions(backend.migrator(), &applied))
    }

    async fn close(&self) {
        match &self.db {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite(pool) => pool.close().await,
        }
    }
}

/// Versions in `known` that are absent from `applied`.
fn missing_versions(known: &sqlx::migrate::Migrator, applied: &[i64]) -> Vec<i64> {
    known
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect()
}
