//! Storage behind one trait: PostgreSQL in production, embedded SQLite by default.
//!
//! Handlers only see `dyn Store`, so both backends serve the same API and the same tests.
//! Each backend has its own versioned migrations under `migrations/<backend>/`.

pub mod evaluations;
pub mod identity;
mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

pub use evaluations::EvaluationStore;
pub use identity::IdentityStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::config::{Config, DatabaseConfig};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or did not answer in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A row with this natural key exists already; the text says which, for the client.
    #[error("{0}")]
    Duplicate(&'static str),
    /// The row changed since it was read (an optimistic check failed): re-read and retry.
    /// The text names what changed.
    #[error("the {0} changed concurrently")]
    Stale(&'static str),
    /// The Idempotency-Key was claimed in the meantime (a concurrent retry of the request).
    #[error("the idempotency key was claimed concurrently")]
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
pub trait Store: IdentityStore + EvaluationStore + Send + Sync + 'static {
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
pub async fn open(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    match &config.database {
        DatabaseConfig::Sqlite { path } => Ok(Arc::new(SqliteStore::open(path, config).await?)),
        DatabaseConfig::Postgres { url } => Ok(Arc::new(PostgresStore::open(url, config)?)),
    }
}

/// What differs between the backends; everything else is written once.
pub trait Dialect {
    /// `postgresql` or `sqlite`, for status output.
    const NAME: &'static str;
    /// How many evaluation batches may commit at once: PostgreSQL overlaps commits (and
    /// their WAL flushes); SQLite has one writer anyway.
    const MAX_CONCURRENT_COMMITS: usize;
    /// A query answering whether the migrations table exists yet.
    const MIGRATIONS_TABLE_EXISTS: &'static str;
    /// Starts a transaction that will write. SQLite needs `BEGIN IMMEDIATE`: a deferred
    /// transaction that reads first cannot upgrade to a writer once another connection
    /// has written (it fails with "database is locked" instead of waiting).
    const BEGIN_WRITE: &'static str;
    /// Appended to a SELECT that reads a row the transaction will update.
    const LOCK_ROW: &'static str;
}

/// The [`Store`] implementation shared by both backends, given the backend's migrator.
macro_rules! impl_store {
    ($store:ty, $migrator:expr) => {
        #[async_trait::async_trait]
        impl $crate::storage::Store for $store {
            fn backend(&self) -> &'static str {
                <$store as $crate::storage::Dialect>::NAME
            }

            fn max_concurrent_commits(&self) -> usize {
                <$store as $crate::storage::Dialect>::MAX_CONCURRENT_COMMITS
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn migrate(&self) -> Result<(), StoreError> {
                $migrator.run(&self.pool).await?;
                Ok(())
            }

            async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
                let exists: bool = sqlx::query_scalar(
                    <$store as $crate::storage::Dialect>::MIGRATIONS_TABLE_EXISTS,
                )
                .fetch_one(&self.pool)
                .await?;
                let applied: Vec<i64> = if exists {
                    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                        .fetch_all(&self.pool)
                        .await?
                } else {
                    Vec::new()
                };
                Ok($crate::storage::missing_versions(&$migrator, &applied))
            }

            async fn close(&self) {
                self.pool.close().await;
            }
        }
    };
}

pub(crate) use impl_store;

/// Versions in `known` that are absent from `applied`.
fn missing_versions(known: &sqlx::migrate::Migrator, applied: &[i64]) -> Vec<i64> {
    known
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect()
}
