//! Tenants, users, sessions and API keys in storage.
//!
//! Every query on a tenant-owned table carries an explicit `tenant_id` predicate; the only
//! lookups without one are by a secret (an API key's hash) or a login email, which identify
//! their tenant themselves.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

// Where callers import these today; they live with the audit trail now.
pub use super::audit::{AuditEntry, AuditFilter, NewAuditEvent};

use super::sql::{Query, Tx};
use super::{SqlStore, StoreError};

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
}

const API_KEY_COLUMNS: &str = "id, tenant_id, name, prefix, key_hash, scopes, operator, \
     rate_limit_per_minute, expires_at, created_by, created_at, last_used_at, revoked_at";

const USER_COLUMNS: &str = "id, tenant_id, email, password_hash, role, failed_logins, \
     locked_until, tokens_valid_after, created_at";

impl SqlStore {
    /// Runs a revocation of one live key; audits it only when it revoked something, so a
    /// repeated revoke leaves no second event.
    async fn revoke_audited(
        &self,
        revoke: Query,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let done = tx.execute(revoke).await? == 1;
        if done {
            tx.commit_with_audit(audit).await?;
        } else {
            tx.commit().await?;
        }
        Ok(done)
    }
}

fn select_api_keys(condition: &str) -> Query {
    Query::new(format!(
        "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE {condition}"
    ))
}

async fn insert_tenant(tx: &mut Tx, t: &Tenant, duplicate: &'static str) -> Result<(), StoreError> {
    tx.execute(
        Query::new("INSERT INTO tenants (id, name, slug, created_at) VALUES ($1, $2, $3, $4)")
            .bind(t.id)
            .bind(&t.name)
            .bind(&t.slug)
            .bind(t.created_at)
            .on_duplicate(duplicate),
    )
    .await?;
    Ok(())
}

async fn insert_user(tx: &mut Tx, u: &User) -> Result<(), StoreError> {
    tx.execute(
        Query::new(format!(
            "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(u.id)
        .bind(u.tenant_id)
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(&u.role)
        .bind(u.failed_logins)
        .bind(u.locked_until)
        .bind(u.tokens_valid_after)
        .bind(u.created_at)
        .on_duplicate("a user with this email exists"),
    )
    .await?;
    Ok(())
}

async fn insert_api_key(tx: &mut Tx, k: &ApiKeyRecord) -> Result<(), StoreError> {
    tx.execute(
        Query::new(format!(
            "INSERT INTO api_keys ({API_KEY_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
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
        .bind(k.revoked_at),
    )
    .await?;
    Ok(())
}

#[async_trait]
impl IdentityStore for SqlStore {
    async fn count_tenants(&self) -> Result<i64, StoreError> {
        let (count,): (i64,) = self
            .db
            .fetch_one(Query::new("SELECT COUNT(*) FROM tenants"))
            .await?;
        Ok(count)
    }

    async fn get_tenant(&self, id: Uuid) -> Result<Option<Tenant>, StoreError> {
        self.db
            .fetch_optional(
                Query::new("SELECT id, name, slug, created_at FROM tenants WHERE id = $1").bind(id),
            )
            .await
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.db
            .fetch_all(Query::new(
                "SELECT id, name, slug, created_at FROM tenants ORDER BY created_at, id",
            ))
            .await
    }

    async fn create_tenant(&self, t: &Tenant, audit: &NewAuditEvent) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        insert_tenant(&mut tx, t, "a tenant with this slug exists").await?;
        tx.commit_with_audit(audit).await
    }

    async fn signup(
        &self,
        t: &Tenant,
        admin: &User,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        insert_tenant(&mut tx, t, "a tenant with this name exists").await?;
        insert_user(&mut tx, admin).await?;
        tx.commit_with_audit(audit).await
    }

    async fn create_user(&self, u: &User, audit: &NewAuditEvent) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        insert_user(&mut tx, u).await?;
        tx.commit_with_audit(audit).await
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        self.db
            .fetch_optional(
                Query::new(format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
                    .bind(email),
            )
            .await
    }

    async fn record_login_failure(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        max_failures: i32,
        now: DateTime<Utc>,
        lock_until: DateTime<Utc>,
    ) -> Result<FailureOutcome, StoreError> {
        // One statement, so concurrent failures cannot lose increments. An expired
        // lock restarts the count at this failure; without that the count would run
        // past the limit and the account would never lock again.
        let (failed_logins, locked_until): (i32, Option<DateTime<Utc>>) = self
            .db
            .fetch_one(
                Query::new(
                    "UPDATE users SET \
                     failed_logins = CASE WHEN locked_until IS NOT NULL AND locked_until <= $5 \
                                          THEN 1 ELSE failed_logins + 1 END, \
                     locked_until = CASE \
                         WHEN locked_until IS NOT NULL AND locked_until <= $5 \
                             THEN CASE WHEN $3 <= 1 THEN $4 ELSE NULL END \
                         WHEN failed_logins + 1 = $3 THEN $4 \
                         ELSE locked_until END \
                     WHERE tenant_id = $1 AND id = $2 RETURNING failed_logins, locked_until",
                )
                .bind(tenant_id)
                .bind(user_id)
                .bind(max_failures)
                .bind(lock_until)
                .bind(now),
            )
            .await?;
        Ok(FailureOutcome {
            failed_logins,
            locked_now: failed_logins == max_failures && locked_until.is_some(),
        })
    }

    async fn reset_login_failures(&self, tenant_id: Uuid, user_id: Uuid) -> Result<(), StoreError> {
        self.db
            .execute(
                Query::new(
                    "UPDATE users SET failed_logins = 0, locked_until = NULL \
                     WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant_id)
                .bind(user_id),
            )
            .await?;
        Ok(())
    }

    async fn set_password(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        password_hash: &str,
        tokens_valid_after: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        tx.execute(
            Query::new(
                "UPDATE users SET password_hash = $3, tokens_valid_after = $4, failed_logins = 0, \
                 locked_until = NULL WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant_id)
            .bind(user_id)
            .bind(password_hash)
            .bind(tokens_valid_after),
        )
        .await?;
        tx.commit_with_audit(audit).await
    }

    async fn session_state(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        jti: &str,
    ) -> Result<Option<SessionState>, StoreError> {
        self.db
            .fetch_optional(
                Query::new(
                    "SELECT role, email, tokens_valid_after, \
                     EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $3) AS revoked \
                     FROM users WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant_id)
                .bind(user_id)
                .bind(jti),
            )
            .await
    }

    async fn revoke_token(
        &self,
        jti: &str,
        expires_at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        tx.execute(
            Query::new(
                "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (jti) DO NOTHING",
            )
            .bind(jti)
            .bind(expires_at),
        )
        .await?;
        // Expired entries can never match a valid token again; keep the table small.
        tx.execute(
            Query::new("DELETE FROM revoked_tokens WHERE expires_at < $1").bind(audit.occurred_at),
        )
        .await?;
        tx.commit_with_audit(audit).await
    }

    async fn create_api_key(
        &self,
        k: &ApiKeyRecord,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        insert_api_key(&mut tx, k).await?;
        tx.commit_with_audit(audit).await
    }

    async fn find_api_key_by_hash(
        &self,
        key_hash: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.db
            .fetch_optional(select_api_keys("key_hash = $1").bind(key_hash))
            .await
    }

    async fn list_api_keys(&self, tenant_id: Uuid) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.db
            .fetch_all(
                select_api_keys("tenant_id = $1 ORDER BY created_at DESC, id").bind(tenant_id),
            )
            .await
    }

    async fn list_operator_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.db
            .fetch_all(select_api_keys(
                "operator AND tenant_id IS NULL ORDER BY created_at DESC, id",
            ))
            .await
    }

    async fn find_api_key_any_tenant(&self, id: Uuid) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.db
            .fetch_optional(select_api_keys("id = $1").bind(id))
            .await
    }

    async fn revoke_api_key(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let revoke = Query::new(
            "UPDATE api_keys SET revoked_at = $3 \
             WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(tenant_id)
        .bind(id)
        .bind(at);
        self.revoke_audited(revoke, audit).await
    }

    async fn revoke_operator_key(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let revoke = Query::new(
            "UPDATE api_keys SET revoked_at = $2 \
             WHERE tenant_id IS NULL AND operator AND id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(at);
        self.revoke_audited(revoke, audit).await
    }

    async fn rotate_api_key(
        &self,
        tenant_id: Uuid,
        old_id: Uuid,
        replacement: &ApiKeyRecord,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let revoked = tx
            .execute(
                Query::new(
                    "UPDATE api_keys SET revoked_at = $3 \
                     WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
                )
                .bind(tenant_id)
                .bind(old_id)
                .bind(replacement.created_at),
            )
            .await?
            == 1;
        if !revoked {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_api_key(&mut tx, replacement).await?;
        tx.commit_with_audit(audit).await?;
        Ok(true)
    }

    async fn touch_api_keys(&self, used: &[(Uuid, DateTime<Utc>)]) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        for (id, at) in used {
            tx.execute(
                Query::new(
                    "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 \
                     AND (last_used_at IS NULL OR last_used_at < $2)",
                )
                .bind(*id)
                .bind(*at),
            )
            .await?;
        }
        tx.commit().await
    }
}
