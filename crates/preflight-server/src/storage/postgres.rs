//! PostgreSQL backend: the production store, shared by every replica.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::evaluations::*;
use super::identity::*;
use super::{impl_store, Dialect, StoreError};
use crate::config::Config;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub fn open(url: &str, config: &Config) -> Result<Self, StoreError> {
        let statement_timeout = format!("{}ms", config.database_statement_timeout.as_millis());
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("invalid DATABASE_URL: {e}")))?
            .application_name("preflight")
            // A hung query must not hold a request (or a pool slot) forever.
            .options([("statement_timeout", statement_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(config.database_max_connections)
            .min_connections(0)
            .acquire_timeout(config.database_connect_timeout)
            .idle_timeout(std::time::Duration::from_secs(300))
            .test_before_acquire(true)
            .connect_lazy_with(options);
        Ok(PostgresStore { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl_store!(PostgresStore, MIGRATOR);

impl_identity_store!(PostgresStore);

impl Dialect for PostgresStore {
    const NAME: &'static str = "postgresql";
    const MAX_CONCURRENT_COMMITS: usize = 4;
    const MIGRATIONS_TABLE_EXISTS: &'static str =
        "SELECT to_regclass('_sqlx_migrations') IS NOT NULL";
    const BEGIN_WRITE: &'static str = "BEGIN";
    const LOCK_ROW: &'static str = " FOR UPDATE";
}

impl_evaluation_store!(PostgresStore);
