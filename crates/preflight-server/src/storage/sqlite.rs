//! Embedded SQLite backend: the zero-setup default for one instance.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::evaluations::*;
use super::identity::*;
use super::{impl_store, Dialect, StoreError};
use crate::config::Config;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn open(path: &Path, config: &Config) -> Result<Self, StoreError> {
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
            .busy_timeout(config.database_statement_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(config.database_max_connections.clamp(1, 8))
            .acquire_timeout(config.database_connect_timeout)
            .idle_timeout(Duration::from_secs(300))
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl_store!(SqliteStore, MIGRATOR);

impl_identity_store!(SqliteStore);

impl Dialect for SqliteStore {
    const NAME: &'static str = "sqlite";
    const MAX_CONCURRENT_COMMITS: usize = 1;
    const MIGRATIONS_TABLE_EXISTS: &'static str =
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const LOCK_ROW: &'static str = "";
}

impl_evaluation_store!(SqliteStore);
