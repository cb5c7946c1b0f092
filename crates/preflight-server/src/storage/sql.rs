//! SQL written once, run on either backend.
//!
//! A [`Query`] is SQL text with `$N` placeholders plus the values to bind, as plain data.
//! [`Db`] (a pool) and [`Tx`] (a write transaction) run it on PostgreSQL or SQLite; rows
//! decode through the same `#[derive(sqlx::FromRow)]` structs on both. Ids bind as `Uuid`,
//! times as `DateTime<Utc>` and documents as JSON on both backends, so SQLite stores them as
//! 16-byte blobs, RFC 3339 text and JSON text, and PostgreSQL as `uuid`, `timestamptz` and
//! `jsonb`: the same Rust types the schema of each backend's migrations expects.
//!
//! `$N` works on SQLite too: sqlx binds a `$N` parameter to the N-th value whatever the
//! order the numbers appear in. What SQLite does not do is complain about a value that was
//! never bound (it reads NULL), so debug builds check that every query uses exactly the
//! placeholders `$1..=$len` of its values.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::postgres::{PgPool, PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqlitePool, SqliteRow};
use sqlx::types::Json;
use sqlx::{Arguments, Database, Encode, FromRow, Transaction, Type};
use uuid::Uuid;

use super::backend::Backend;
use super::StoreError;

/// One bound value. Texts and JSON are owned so a query can be built from borrowed rows and
/// run later; binding then borrows from the query, so nothing is copied twice.
#[derive(Debug, Clone)]
pub enum Arg {
    Uuid(Uuid),
    OptUuid(Option<Uuid>),
    I64(i64),
    OptI64(Option<i64>),
    I32(i32),
    OptI32(Option<i32>),
    F64(f64),
    OptF64(Option<f64>),
    Bool(bool),
    Text(String),
    OptText(Option<String>),
    Time(DateTime<Utc>),
    OptTime(Option<DateTime<Utc>>),
    Json(Json<Box<RawValue>>),
    /// A value that could not be serialized; running the query reports it.
    Invalid(String),
}

impl Arg {
    /// A JSON document (`jsonb` on PostgreSQL, text on SQLite), serialized as `Json<T>` is.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Arg {
        match serde_json::value::to_raw_value(value) {
            Ok(raw) => Arg::Json(Json(raw)),
            Err(e) => Arg::Invalid(e.to_string()),
        }
    }
}

impl From<Uuid> for Arg {
    fn from(v: Uuid) -> Self {
        Arg::Uuid(v)
    }
}
impl From<Option<Uuid>> for Arg {
    fn from(v: Option<Uuid>) -> Self {
        Arg::OptUuid(v)
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::I64(v)
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::OptI64(v)
    }
}
impl From<i32> for Arg {
    fn from(v: i32) -> Self {
        Arg::I32(v)
    }
}
impl From<Option<i32>> for Arg {
    fn from(v: Option<i32>) -> Self {
        Arg::OptI32(v)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Arg::F64(v)
    }
}
impl From<Option<f64>> for Arg {
    fn from(v: Option<f64>) -> Self {
        Arg::OptF64(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_owned())
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(v.clone())
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::OptText(v.map(str::to_owned))
    }
}
impl From<DateTime<Utc>> for Arg {
    fn from(v: DateTime<Utc>) -> Self {
        Arg::Time(v)
    }
}
impl From<Option<DateTime<Utc>>> for Arg {
    fn from(v: Option<DateTime<Utc>>) -> Self {
        Arg::OptTime(v)
    }
}

/// SQL text and its bound values.
#[derive(Debug, Clone)]
pub struct Query {
    sql: String,
    args: Vec<Arg>,
    /// What a unique-constraint violation means to the client, if this statement can cause one.
    duplicate: Option<&'static str>,
}

impl Query {
    pub fn new(sql: impl Into<String>) -> Self {
        Query {
            sql: sql.into(),
            args: Vec::new(),
            duplicate: None,
        }
    }

    /// One row of a tenant's: `SELECT {columns} FROM {table} WHERE tenant_id = $1 AND id = $2`.
    pub fn tenant_row(columns: &str, table: &str, tenant_id: Uuid, id: Uuid) -> Self {
        Query::new(format!(
            "SELECT {columns} FROM {table} WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
    }

    /// `INSERT INTO {table} ({columns}) VALUES ($1, …)`, `values` in `columns` order.
    pub fn insert_row(table: &str, columns: &str, values: Vec<Arg>) -> Self {
        Query::new(format!("INSERT INTO {table} ({columns}) VALUES "))
            .push_tuples(std::iter::once(values))
    }

    /// Writes every column of a tenant's row: `columns` (and `values`, in that order) start
    /// with `id, tenant_id`, which name the row; the others are set. Insert and update of
    /// one table thus share one list of values.
    pub fn update_tenant_row(table: &str, columns: &str, values: Vec<Arg>) -> Self {
        let names: Vec<&str> = columns.split(',').map(str::trim).collect();
        debug_assert_eq!(
            names[..2],
            ["id", "tenant_id"],
            "the key columns come first"
        );
        let set: Vec<String> = (3..=names.len()).map(|i| format!("${i}")).collect();
        let q = Query::new(format!(
            "UPDATE {table} SET ({}) = ({}) WHERE id = $1 AND tenant_id = $2",
            names[2..].join(", "),
            set.join(", ")
        ));
        values.into_iter().fold(q, |q, v| q.bind(v))
    }

    /// `DELETE FROM {table} WHERE tenant_id = $1 AND id = $2`.
    pub fn delete_tenant_row(table: &str, tenant_id: Uuid, id: Uuid) -> Self {
        Query::new(format!(
            "DELETE FROM {table} WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
    }

    /// Every row of a tenant's in creation order (for small per-tenant tables).
    pub fn tenant_rows(columns: &str, table: &str, tenant_id: Uuid) -> Self {
        Query::new(format!(
            "SELECT {columns} FROM {table} WHERE tenant_id = $1 ORDER BY created_at, id"
        ))
        .bind(tenant_id)
    }

    /// Reports a unique-constraint violation of this statement as
    /// [`StoreError::Duplicate`] with `what` (e.g. "a user with this email exists").
    pub fn on_duplicate(mut self, what: &'static str) -> Self {
        self.duplicate = Some(what);
        self
    }

    fn error(&self, e: sqlx::Error) -> StoreError {
        match (&e, self.duplicate) {
            (sqlx::Error::Database(db), Some(what)) if db.is_unique_violation() => {
                StoreError::Duplicate(what)
            }
            _ => e.into(),
        }
    }

    /// Binds the next placeholder, `$<number of values so far + 1>`.
    pub fn bind(mut self, value: impl Into<Arg>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Appends SQL text.
    pub fn push(mut self, sql: &str) -> Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends `(<v>, <v>), (<v>, <v>), ...`: one parenthesized tuple per row, each value
    /// bound to the next placeholder. After `VALUES ` it is a multi-row insert or a CTE's
    /// rows; after `(a, b) IN (` a list of keys.
    pub fn push_tuples<R, I>(mut self, rows: R) -> Self
    where
        R: IntoIterator<Item = I>,
        I: IntoIterator<Item = Arg>,
    {
        for (i, row) in rows.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.sql.push('(');
            self = self.push_list(row);
            self.sql.push(')');
        }
        self
    }

    /// Appends `<v>, <v>, ...`, each value bound to the next placeholder (for `IN (...)`).
    pub fn push_list(mut self, values: impl IntoIterator<Item = Arg>) -> Self {
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.args.push(value);
            self.sql.push('$');
            self.sql.push_str(&self.args.len().to_string());
        }
        self
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    fn checked(&self) -> &Self {
        #[cfg(debug_assertions)]
        if let Err(e) = check_placeholders(&self.sql, self.args.len()) {
            panic!("{e} in query: {}", self.sql);
        }
        self
    }

    fn pg_args(&self) -> Result<<Postgres as Database>::Arguments<'_>, sqlx::Error> {
        arguments::<Postgres>(&self.checked().args)
    }

    fn sqlite_args(&self) -> Result<<Sqlite as Database>::Arguments<'_>, sqlx::Error> {
        arguments::<Sqlite>(&self.checked().args)
    }
}

/// Every `$N` lies in `1..=len` and every one of them is used.
#[cfg_attr(not(debug_assertions), allow(dead_code))]
fn check_placeholders(sql: &str, len: usize) -> Result<(), String> {
    let mut used = vec![false; len];
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let digits = bytes[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if digits > 0 {
                let n: usize = sql[i + 1..i + 1 + digits].parse().unwrap_or(0);
                match used.get_mut(n.wrapping_sub(1)) {
                    Some(slot) => *slot = true,
                    None => return Err(format!("${n} has no bound value (there are {len})")),
                }
            }
            i += 1 + digits;
        } else {
            i += 1;
        }
    }
    match used.iter().position(|u| !u) {
        Some(unused) => Err(format!(
            "value {} is bound but ${} is not used",
            unused + 1,
            unused + 1
        )),
        None => Ok(()),
    }
}

/// Binds `args` in order, for any backend whose driver encodes our value types.
fn arguments<'q, DB>(args: &'q [Arg]) -> Result<<DB as Database>::Arguments<'q>, sqlx::Error>
where
    DB: Database,
    Uuid: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    i32: Encode<'q, DB> + Type<DB>,
    f64: Encode<'q, DB> + Type<DB>,
    bool: Encode<'q, DB> + Type<DB>,
    &'q str: Encode<'q, DB> + Type<DB>,
    DateTime<Utc>: Encode<'q, DB> + Type<DB>,
    Json<Box<RawValue>>: Encode<'q, DB> + Type<DB>,
    // Each driver implements `Option<T>` itself, so the optional forms are bounds too.
    Option<Uuid>: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    Option<i32>: Encode<'q, DB> + Type<DB>,
    Option<f64>: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    Option<DateTime<Utc>>: Encode<'q, DB> + Type<DB>,
    Option<&'q Json<Box<RawValue>>>: Encode<'q, DB> + Type<DB>,
{
    let mut out = <DB as Database>::Arguments::<'q>::default();
    out.reserve(args.len(), 0);
    for arg in args {
        let added = match arg {
            Arg::Uuid(v) => out.add(*v),
            Arg::OptUuid(v) => out.add(*v),
            Arg::I64(v) => out.add(*v),
            Arg::OptI64(v) => out.add(*v),
            Arg::I32(v) => out.add(*v),
            Arg::OptI32(v) => out.add(*v),
            Arg::F64(v) => out.add(*v),
            Arg::OptF64(v) => out.add(*v),
            Arg::Bool(v) => out.add(*v),
            Arg::Text(v) => out.add(v.as_str()),
            Arg::OptText(v) => out.add(v.as_deref()),
            Arg::Time(v) => out.add(*v),
            Arg::OptTime(v) => out.add(*v),
            Arg::Json(v) => out.add(v),
            Arg::Invalid(e) => return Err(sqlx::Error::Encode(e.clone().into())),
        };
        added.map_err(sqlx::Error::Encode)?;
    }
    Ok(out)
}

/// A row type both backends decode: every `#[derive(sqlx::FromRow)]` struct and tuples of
/// column types, such as `(i64,)` for a scalar.
pub trait Record:
    for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

impl<T> Record for T where
    T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

/// A connection pool of either backend.
#[derive(Debug, Clone)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    pub fn backend(&self) -> Backend {
        match self {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Starts a transaction that will write, the way the backend needs (see
    /// [`Backend::begin_write`]).
    pub async fn begin_write(&self) -> Result<Tx, StoreError> {
        let begin = self.backend().begin_write();
        Ok(match self {
            Db::Postgres(pool) => Tx::Postgres(pool.begin_with(begin).await?),
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin_with(begin).await?),
        })
    }

    pub async fn fetch_all<T: Record>(&self, q: Query) -> Result<Vec<T>, StoreError> {
        let rows = match self {
            Db::Postgres(pool) => match q.pg_args() {
                Ok(args) => sqlx::query_as_with(q.sql(), args).fetch_all(pool).await,
                Err(e) => Err(e),
            },
            Db::Sqlite(pool) => match q.sqlite_args() {
                Ok(args) => sqlx::query_as_with(q.sql(), args).fetch_all(pool).await,
                Err(e) => Err(e),
            },
        };
        rows.map_err(|e| q.error(e))
    }

    pub async fn fetch_optional<T: Record>(&self, q: Query) -> Result<Option<T>, StoreError> {
        let row = match self {
            Db::Postgres(pool) => match q.pg_args() {
                Ok(args) => {
                    sqlx::query_as_with(q.sql(), args)
                        .fetch_optional(pool)
                        .await
                }
                Err(e) => Err(e),
            },
            Db::Sqlite(pool) => match q.sqlite_args() {
                Ok(args) => {
                    sqlx::query_as_with(q.sql(), args)
                        .fetch_optional(pool)
                        .await
                }
                Err(e) => Err(e),
            },
        };
        row.map_err(|e| q.error(e))
    }

    pub async fn fetch_one<T: Record>(&self, q: Query) -> Result<T, StoreError> {
        let row = match self {
            Db::Postgres(pool) => match q.pg_args() {
                Ok(args) => sqlx::query_as_with(q.sql(), args).fetch_one(pool).await,
                Err(e) => Err(e),
            },
            Db::Sqlite(pool) => match q.sqlite_args() {
                Ok(args) => sqlx::query_as_with(q.sql(), args).fetch_one(pool).await,
                Err(e) => Err(e),
            },
        };
        row.map_err(|e| q.error(e))
    }

    /// Runs a statement; returns how many rows it changed.
    pub async fn execute(&self, q: Query) -> Result<u64, StoreError> {
        let done = match self {
            Db::Postgres(pool) => match q.pg_args() {
                Ok(args) => sqlx::query_with(q.sql(), args)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected()),
                Err(e) => Err(e),
            },
            Db::Sqlite(pool) => match q.sqlite_args() {
                Ok(args) => sqlx::query_with(q.sql(), args)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected()),
                Err(e) => Err(e),
            },
        };
        done.map_err(|e| q.error(e))
    }
}

/// A write transaction of either backend. Dropped without [`Tx::commit`] it rolls back.
pub enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Tx {
    pub fn backend(&self) -> Backend {
        match self {
            Tx::Postgres(_) => Backend::Postgres,
            Tx::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Postgres(tx) => tx.commit().await?,
            Tx::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Rolls back now rather than when the connection is next used.
    pub async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Tx::Postgres(tx) => tx.rollback().await?,
            Tx::Sqlite(tx) => tx.rollback().await?,
        }
        Ok(())
    }

    pub async fn fetch_all<T: Record>(&mut self, q: Query) -> Result<Vec<T>, StoreError> {
        let rows = match self {
            Tx::Postgres(tx) => match q.pg_args() {
                Ok(args) => {
                    sqlx::query_as_with(q.sql(), args)
                        .fetch_all(&mut **tx)
                        .await
                }
                Err(e) => Err(e),
            },
            Tx::Sqlite(tx) => match q.sqlite_args() {
                Ok(args) => {
                    sqlx::query_as_with(q.sql(), args)
                        .fetch_all(&mut **tx)
                        .await
                }
                Err(e) => Err(e),
            },
        };
        rows.map_err(|e| q.error(e))
    }

    pub async fn fetch_one<T: Record>(&mut self, q: Query) -> Result<T, StoreError> {
        let row = match self {
            Tx::Postgres(tx) => match q.pg_args() {
                Ok(args) => {
                    sqlx::query_as_with(q.sql(), args)
                        .fetch_one(&mut **tx)
                        .await
                }
                Err(e) => Err(e),
            },
            Tx::Sqlite(tx) => match q.sqlite_args() {
                Ok(args) => {
                    sqlx::query_as_with(q.sql(), args)
                        .fetch_one(&mut **tx)
                        .await
                }
                Err(e) => Err(e),
            },
        };
        row.map_err(|e| q.error(e))
    }

    /// Runs a statement; returns how many rows it changed.
    pub async fn execute(&mut self, q: Query) -> Result<u64, StoreError> {
        let done = match self {
            Tx::Postgres(tx) => match q.pg_args() {
                Ok(args) => sqlx::query_with(q.sql(), args)
                    .execute(&mut **tx)
                    .await
                    .map(|r| r.rows_affected()),
                Err(e) => Err(e),
            },
            Tx::Sqlite(tx) => match q.sqlite_args() {
                Ok(args) => sqlx::query_with(q.sql(), args)
                    .execute(&mut **tx)
                    .await
                    .map(|r| r.rows_affected()),
                Err(e) => Err(e),
            },
        };
        done.map_err(|e| q.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_must_match_the_bound_values() {
        assert!(check_placeholders("SELECT $1, $2 WHERE $1 = $2", 2).is_ok());
        // Order of first appearance does not matter to sqlx, only the numbers.
        assert!(check_placeholders("SELECT $2 WHERE x = $1", 2).is_ok());
        assert!(check_placeholders("SELECT $1, $3", 3).is_err());
        assert!(check_placeholders("SELECT $1, $2", 1).is_err());
        assert!(check_placeholders("SELECT 1", 0).is_ok());
    }

    #[test]
    fn tuples_number_their_placeholders_after_the_values_so_far() {
        let q = Query::new("INSERT INTO t (a, b, c) VALUES ")
            .push_tuples([[Arg::I64(1), Arg::I64(2)], [Arg::I64(3), Arg::I64(4)]]);
        assert_eq!(q.sql(), "INSERT INTO t (a, b, c) VALUES ($1, $2), ($3, $4)");
        let q = Query::new("SELECT 1 WHERE x = $1 AND y IN (")
            .bind(7_i64)
            .push_list([Arg::I64(8), Arg::I64(9)])
            .push(")");
        assert_eq!(q.sql(), "SELECT 1 WHERE x = $1 AND y IN ($2, $3)");
        assert!(check_placeholders(q.sql(), q.args.len()).is_ok());
    }

    #[test]
    fn a_row_is_inserted_and_updated_from_one_list_of_values() {
        let values = || vec![Arg::I64(1), Arg::I64(2), Arg::I64(3), Arg::I64(4)];
        let insert = Query::insert_row("t", "id, tenant_id, a, b", values());
        assert_eq!(
            insert.sql(),
            "INSERT INTO t (id, tenant_id, a, b) VALUES ($1, $2, $3, $4)"
        );
        let update = Query::update_tenant_row("t", "id, tenant_id, a, b", values());
        assert_eq!(
            update.sql(),
            "UPDATE t SET (a, b) = ($3, $4) WHERE id = $1 AND tenant_id = $2"
        );
        assert!(check_placeholders(update.sql(), update.args.len()).is_ok());
    }
}
