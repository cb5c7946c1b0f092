//! Tenants, users, API keys, sessions and the audit trail in storage.
//!
//! The SQL is written once: ids bind as `Uuid` and times as `DateTime<Utc>` on both
//! backends (SQLite stores them as 16-byte blobs and RFC 3339 text), so one macro body
//! implements the trait for PostgreSQL and SQLite alike. Every query on a tenant-owned table
//! carries an explicit `tenant_id` predicate; the only lookups without one are by a secret
//! (an API key's hash) or a login email, which identify their tenant themselves.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::StoreError;

#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub role: String,
    pub failed_logins: i32,
    pub locked_until: Option<DateTime<Utc>>,
    pub tokens_valid_after: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    /// Space-separated scope names.
    pub scopes: String,
    pub operator: bool,
    pub rate_limit_per_minute: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What a session check needs to know about a token's user, in one round trip.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionState {
    pub role: String,
    pub email: String,
    pub tokens_valid_after: DateTime<Utc>,
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub tenant_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    /// Never a secret: callers pass ids, prefixes, names and counts only.
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub tenant_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: sqlx::types::Json<serde_json::Value>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Return entries with an id below this one (cursor pagination, newest first).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Result of recording a failed login.
#[derive(Debug, Clone, Copy)]
pub struct FailureOutcome {
    pub failed_logins: i32,
    /// True when this failure is the one that locked the account.
    pub locked_now: bool,
}

#[async_trait]
pub trait IdentityStore: Send + Sync {
    async fn count_tenants(&self) -> Result<i64, StoreError>;
    async fn get_tenant(&self, id: Uuid) -> Result<Option<Tenant>, StoreError>;
    /// Every tenant, oldest first (operator CLI only).
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    async fn create_tenant(&self, tenant: &Tenant, audit: &NewAuditEvent)
        -> Result<(), StoreError>;
    /// Creates a tenant and its first admin user atomically.
    async fn signup(
        &self,
        tenant: &Tenant,
        admin: &User,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
    async fn create_user(&self, user: &User, audit: &NewAuditEvent) -> Result<(), StoreError>;
    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError>;
    /// Counts a failed login and locks the account when the count reaches `max_failures`.
    /// A lock that has expired by `now` starts the count over, so every lockout window
    /// allows at most `max_failures` guesses (not unlimited ones after the first lock).
    async fn record_login_failure(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        max_failures: i32,
        now: DateTime<Utc>,
        lock_until: DateTime<Utc>,
    ) -> Result<FailureOutcome, StoreError>;
    async fn reset_login_failures(&self, tenant_id: Uuid, user_id: Uuid) -> Result<(), StoreError>;
    async fn set_password(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        password_hash: &str,
        tokens_valid_after: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
    async fn session_state(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        jti: &str,
    ) -> Result<Option<SessionState>, StoreError>;
    async fn revoke_token(
        &self,
        jti: &str,
        expires_at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;

    async fn create_api_key(
        &self,
        key: &ApiKeyRecord,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
    async fn find_api_key_by_hash(
        &self,
        key_hash: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError>;
    async fn list_api_keys(&self, tenant_id: Uuid) -> Result<Vec<ApiKeyRecord>, StoreError>;
    async fn list_operator_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// A key by id in any tenant. Operator CLI only: HTTP handlers always go through a
    /// tenant predicate instead.
    async fn find_api_key_any_tenant(&self, id: Uuid) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Revokes a tenant's key; false when no such live key exists in that tenant.
    async fn revoke_api_key(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    /// Revokes an operator key (operator path only).
    async fn revoke_operator_key(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    /// Revokes `old_id` and stores `replacement` in one transaction.
    async fn rotate_api_key(
        &self,
        tenant_id: Uuid,
        old_id: Uuid,
        replacement: &ApiKeyRecord,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    /// Records last use for many keys in one go (batched off the request path).
    async fn touch_api_keys(&self, used: &[(Uuid, DateTime<Utc>)]) -> Result<(), StoreError>;

    async fn append_audit(&self, event: &NewAuditEvent) -> Result<(), StoreError>;
    async fn list_audit(
        &self,
        tenant_id: Uuid,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEntry>, StoreError>;
}

/// Maps a unique-constraint violation to a conflict, anything else through `From`.
pub(crate) fn conflict_or(e: sqlx::Error, what: &'static str) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            return StoreError::Duplicate(what);
        }
    }
    e.into()
}

/// One implementation of [`IdentityStore`] for any sqlx pool whose driver binds `Uuid`,
/// `DateTime<Utc>` and `Json` (both of ours do).
macro_rules! impl_identity_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::identity::IdentityStore for $store {
            async fn count_tenants(&self) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM tenants").fetch_one(&self.pool).await?)
            }

            async fn get_tenant(&self, id: uuid::Uuid) -> Result<Option<Tenant>, StoreError> {
                Ok(sqlx::query_as("SELECT id, name, slug, created_at FROM tenants WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
                Ok(sqlx::query_as("SELECT id, name, slug, created_at FROM tenants ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn create_tenant(&self, t: &Tenant, audit: &NewAuditEvent) -> Result<(), StoreError> {
                let mut tx = self.pool.begin_with(<$store as Dialect>::BEGIN_WRITE).await?;
                sqlx::query("INSERT INTO tenants (id, name, slug, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(t.id).bind(&t.name).bind(&t.slug).bind(t.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| conflict_or(e, "a tenant with this slug exists"))?;
                insert_audit!(&mut *tx, audit);
                tx.commit().await?;
                Ok(())
            }

            async fn signup(&self, t: &Tenant, admin: &User, audit: &NewAuditEvent) -> Result<(), StoreError> {
                let mut tx = self.pool.begin_with(<$store as Dialect>::BEGIN_WRITE).await?;
                sqlx::query("INSERT INTO tenants (id, name, slug, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(t.id).bind(&t.name).bind(&t.slug).bind(t.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| conflict_or(e, "a tenant with this name exists"))?;
                insert_user!(&mut *tx, admin);
                insert_audit!(&mut *tx, audit);
                tx.commit().await?;
                Ok(())
            }

            async fn create_user(&self, u: &User, audit: &NewAuditEvent) -> Result<(), StoreError> {
                let mut tx = self.pool.begin_with(<$store as Dialect>::BEGIN_WRITE).await?;
                insert_user!(&mut *tx, u);
                insert_audit!(&mut *tx, audit);
                tx.commit().await?;
                Ok(())
            }

            async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, tenant_id, email, password_hash, role, failed_logins, locked_until, \
                     tokens_valid_after, created_at FROM users WHERE email = $1",
                )
                .bind(email)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn record_login_failure(
                &self,
                tenant_id: uuid::Uuid,
                user_id: uuid::Uuid,
                max_failures: i32,
                now: chrono::DateTime<chrono::Utc>,
                lock_until: chrono::DateTime<chrono::Utc>,
            ) -> Result<FailureOutcome, StoreError> {
                // One statement, so concurrent failures cannot lose increments. An expired
                // lock restarts the count at this failure; without that the count would run
                // past the limit and the account would never lock again.
                let (failed_logins, locked_until): (i32, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
                    "UPDATE users SET \
                     failed_logins = CASE WHEN locked_until IS NOT NULL AND locked_until <= $5 THEN 1 \
                                          ELSE failed_logins + 1 END, \
                     locked_until = CASE \
                         WHEN locked_until IS NOT NULL AND locked_until <= $5 \
                             THEN CASE WHEN $3 <= 1 THEN $4 ELSE NULL END \
                         WHEN failed_logins + 1 = $3 THEN $4 \
                         ELSE locked_until END \
                     WHERE tenant_id = $1 AND id = $2 RETURNING failed_logins, locked_until",
                )
                .bind(tenant_id).bind(user_id).bind(max_failures).bind(lock_until).bind(now)
                .fetch_one(&self.pool)
                .await?;
                Ok(FailureOutcome {
                    failed_logins,
                    locked_now: failed_logins == max_failures && locked_until.is_some(),
                })
            }

            async fn reset_login_failures(&self, tenant_id: uuid::Uuid, user_id: uuid::Uuid) -> Result<(), StoreError> {
                sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant_id).bind(user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn set_password(
                &self,
                tenant_id: uuid::Uuid,
                user_id: uuid::Uuid,
                password_hash: &str,
                tokens_valid_after: chrono::DateTime<chrono::Utc>,
                audit: &NewAuditEvent,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin_with(<$store as Dialect>::BEGIN_WRITE).await?;
                sqlx::query(
                    "UPDATE users SET password_hash = $3, tokens_valid_after = $4, failed_logins = 0, \
                     locked_until = NULL WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant_id).bind(user_id).bind(password_hash).bind(tokens_valid_after)
                .execute(&mut *tx)
                .await?;
                insert_audit!(&mut *tx, audit);
                tx.commit().await?;
                Ok(())
            }

            async fn session_state(&self, tenant_id: uuid::Uuid, user_id: uuid::Uuid, jti: &str) -> Result<Option<SessionState>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT role, email, tokens_valid_after, \
                     EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $3) AS revoked \
                     FROM users WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant_id).bind(user_id).bind(jti)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn revoke_token(&self, jti: &str, expires_at: chrono::DateTime<chrono::Utc>, audit: &NewAuditEvent) -> Result<(), StoreError> {
                let mut tx = self.pool.begin_with(<$store as Dialect>::BEGIN_WRITE).await?;
                sqlx::query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING")
                    .bind(jti).bind(expires_at)
                    .execute(&mut *tx)
                    .await?;
                // Expired entries can never match a valid token again; keep the table small.
                sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
                    .bind(audit.occurred_at)
                    .execute(&mut *tx)
                    .await?;
                insert_audit!(&mut *tx, audit);
                tx.commit().await?;
                Ok(())
            }

            async fn create_api_key(&self, k: &ApiKeyRecord, audit: &NewAuditEvent) -> Result<(), StoreError> {
                let mut tx = self.pool.begin_with(<$store as Dialect>::BEGIN_WRITE).await?;
                insert_api_key!(&mut *tx, k);
                insert_audit!(&mut *tx, audit);
                tx.commit().await?;
                Ok(())
            }

            async fn find_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
                Ok(sqlx::query_as(concat!("SELECT ", api_key_columns!(), " FROM api_keys WHERE key_hash = $1"))
                    .bind(key_hash)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_api_keys(&self, tenant_id: uuid::Uuid) -> Result<Vec<ApiKeyRecord>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ", api_key_columns!(),
                    " FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id"
                ))
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn list_operator_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ", api_key_columns!(),
                    " FROM api_keys WHERE operator AND tenant_id IS NULL ORDER BY created_at DESC, id"
                ))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn find_api_key_any_tenant(&self, id: uuid::Uuid) -> Result<Option<ApiKeyRecord>, StoreError> {
                Ok(sqlx::query_as(concat!("SELECT ", api_key_columns!(), " FROM api_keys WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn revoke_api_key(&self, tenant_id: uuid::Uuid, id: uuid::Uuid, at: chrono::DateTime<chrono::Utc>, audit: &NewAuditEvent) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin_with(<$store as Dialect>::BEGIN_WRITE).await?;
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
                )
                .bind(tenant_id).bind(id).bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected() == 1;
                if done {
                    insert_audit!(&mut *tx, audit);
                }
                tx.commit().await?;
                Ok(done)
            }

            async fn revoke_operator_key(&self, id: uuid::Uuid, at: chrono::DateTime<chrono::Utc>, audit: &NewAuditEvent) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin_with(<$store as Dialect>::BEGIN_WRITE).await?;
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_at = $2 WHERE tenant_id IS NULL AND operator AND id = $1 AND revoked_at IS NULL",
                )
                .bind(id).bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected() == 1;
                if done {
                    insert_audit!(&mut *tx, audit);
                }
                tx.commit().await?;
                Ok(done)
            }

            async fn rotate_api_key(
                &self,
                tenant_id: uuid::Uuid,
                old_id: uuid::Uuid,
                replacement: &ApiKeyRecord,
                audit: &NewAuditEvent,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin_with(<$store as Dialect>::BEGIN_WRITE).await?;
                let revoked = sqlx::query(
                    "UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
                )
                .bind(tenant_id).bind(old_id).bind(replacement.created_at)
                .execute(&mut *tx)
                .await?
                .rows_affected() == 1;
                if !revoked {
                    tx.rollback().await?;
                    return Ok(false);
                }
                insert_api_key!(&mut *tx, replacement);
                insert_audit!(&mut *tx, audit);
                tx.commit().await?;
                Ok(true)
            }

            async fn touch_api_keys(&self, used: &[(uuid::Uuid, chrono::DateTime<chrono::Utc>)]) -> Result<(), StoreError> {
                let mut tx = self.pool.begin_with(<$store as Dialect>::BEGIN_WRITE).await?;
                for (id, at) in used {
                    sqlx::query(
                        "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 \
                         AND (last_used_at IS NULL OR last_used_at < $2)",
                    )
                    .bind(*id).bind(*at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn append_audit(&self, event: &NewAuditEvent) -> Result<(), StoreError> {
                insert_audit!(&self.pool, event);
                Ok(())
            }

            async fn list_audit(&self, tenant_id: uuid::Uuid, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, tenant_id, occurred_at, actor, action, target, ip, request_id, details \
                     FROM audit_log WHERE tenant_id = $1 \
                     AND ($2 IS NULL OR action = $2) \
                     AND ($3 IS NULL OR actor = $3) \
                     AND ($4 IS NULL OR occurred_at >= $4) \
                     AND ($5 IS NULL OR occurred_at < $5) \
                     AND ($6 IS NULL OR id < $6) \
                     ORDER BY id DESC LIMIT $7",
                )
                .bind(tenant_id)
                .bind(f.action.as_deref())
                .bind(f.actor.as_deref())
                .bind(f.from)
                .bind(f.to)
                .bind(f.before_id)
                .bind(f.limit)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}

macro_rules! api_key_columns {
    () => {
        "id, tenant_id, name, prefix, key_hash, scopes, operator, rate_limit_per_minute, \
         expires_at, created_by, created_at, last_used_at, revoked_at"
    };
}

macro_rules! insert_api_key {
    ($exec:expr, $k:expr) => {{
        let k = $k;
        sqlx::query(concat!(
            "INSERT INTO api_keys (",
            api_key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(k.id)
        .bind(k.tenant_id)
        .bind(&k.name)
        .bind(&k.prefix)
        .bind(&k.key_hash)
        .bind(&k.scopes)
        .bind(k.operator)
        .bind(k.rate_limit_per_minute)
        .bind(k.expires_at)
        .bind(&k.created_by)
        .bind(k.created_at)
        .bind(k.last_used_at)
        .bind(k.revoked_at)
        .execute($exec)
        .await?;
    }};
}

macro_rules! insert_user {
    ($exec:expr, $u:expr) => {{
        let u = $u;
        sqlx::query(
            "INSERT INTO users (id, tenant_id, email, password_hash, role, failed_logins, locked_until, \
             tokens_valid_after, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(u.id).bind(u.tenant_id).bind(&u.email).bind(&u.password_hash).bind(&u.role)
        .bind(u.failed_logins).bind(u.locked_until).bind(u.tokens_valid_after).bind(u.created_at)
        .execute($exec)
        .await
        .map_err(|e| conflict_or(e, "a user with this email exists"))?;
    }};
}

macro_rules! insert_audit {
    ($exec:expr, $e:expr) => {{
        let e = $e;
        sqlx::query(
            "INSERT INTO audit_log (tenant_id, occurred_at, actor, action, target, ip, request_id, details) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(e.tenant_id).bind(e.occurred_at).bind(&e.actor).bind(&e.action)
        .bind(e.target.as_deref()).bind(e.ip.as_deref()).bind(e.request_id.as_deref())
        .bind(sqlx::types::Json(&e.details))
        .execute($exec)
        .await?;
    }};
}

pub(crate) use {api_key_columns, impl_identity_store, insert_api_key, insert_audit, insert_user};
