//! What differs between PostgreSQL and SQLite, in one place: connecting, migrations, how a
//! write transaction starts and how a read row is locked. Every query is shared.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::sql::Db;
use super::StoreError;
use crate::config::StorageConfig;

/// Each backend keeps its own versioned migrations: the schemas differ in column types.
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The production store, shared by every replica.
    Postgres,
    /// The zero-setup default for one instance.
    Sqlite,
}

impl Backend {
    /// `postgresql` or `sqlite`, for status output.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgresql",
            Backend::Sqlite => "sqlite",
        }
    }

    /// How many evaluation batches may commit at once: PostgreSQL overlaps commits (and
    /// their WAL flushes); SQLite has one writer anyway.
    pub fn max_concurrent_commits(self) -> usize {
        match self {
            Backend::Postgres => 4,
            Backend::Sqlite => 1,
        }
    }

    /// Starts a transaction that will write. SQLite needs `BEGIN IMMEDIATE`: a deferred
    /// transaction that reads first cannot upgrade to a writer once another connection
    /// has written (it fails with "database is locked" instead of waiting).
    pub fn begin_write(self) -> &'static str {
        match self {
            Backend::Postgres => "BEGIN",
            Backend::Sqlite => "BEGIN IMMEDIATE",
        }
    }

    /// Appended to a SELECT that reads a row the transaction will update. SQLite needs
    /// nothing: `BEGIN IMMEDIATE` already made this transaction the only writer.
    pub fn lock_row(self) -> &'static str {
        match self {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// Appended to a subquery that claims queue rows of `table` (an alias): replicas skip
    /// the rows another one holds instead of waiting. SQLite has one writer anyway.
    pub fn skip_locked(self, table: &str) -> String {
        match self {
            Backend::Postgres => format!(" FOR UPDATE OF {table} SKIP LOCKED"),
            Backend::Sqlite => String::new(),
        }
    }

    /// A query answering whether the migrations table exists yet.
    pub fn migrations_table_exists(self) -> &'static str {
        match self {
            Backend::Postgres => "SELECT to_regclass('_sqlx_migrations') IS NOT NULL",
            Backend::Sqlite => {
                "SELECT COUNT(*) > 0 FROM sqlite_master \
                 WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
        }
    }

    pub fn migrator(self) -> &'static Migrator {
        match self {
            Backend::Postgres => &POSTGRES_MIGRATOR,
            Backend::Sqlite => &SQLITE_MIGRATOR,
        }
    }
}

/// A lazy PostgreSQL pool, so the process can start (and report not-ready) while the
/// database is still coming up.
pub fn connect_postgres(url: &str, config: &StorageConfig) -> Result<Db, StoreError> {
    let statement_timeout = format!("{}ms", config.statement_timeout.as_millis());
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Other(format!("invalid DATABASE_URL: {e}")))?
        .application_name("preflight")
        // A hung query must not hold a request (or a pool slot) forever.
        .options([("statement_timeout", statement_timeout.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .min_connections(0)
        .acquire_timeout(config.connect_timeout)
        .idle_timeout(Duration::from_secs(300))
        .test_before_acquire(true)
        .connect_lazy_with(options);
    Ok(Db::Postgres(pool))
}

/// Opens (creating if needed) the SQLite database file and its directory.
pub async fn connect_sqlite(path: &Path, config: &StorageConfig) -> Result<Db, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Other(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: an acknowledged write survives a power cut, not only a process crash.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(config.statement_timeout);
    let pool = SqlitePoolOptions::new()
        .max_connections(config.max_connections.clamp(1, 8))
        .acquire_timeout(config.connect_timeout)
        .idle_timeout(Duration::from_secs(300))
        .connect_with(options)
        .await?;
    Ok(Db::Sqlite(pool))
}
