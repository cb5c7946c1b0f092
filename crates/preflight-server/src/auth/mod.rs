//! Who is calling: API keys for machines, JWT sessions for dashboard users, and the
//! [`Principal`] a request acts as (the HTTP middleware that builds it is `http::auth`).
//!
//! Key verification is on the hot path of every evaluation, so verified keys are cached in
//! process for [`KEY_CACHE_TTL`]; a revocation drops the entry at once on the instance that
//! served it and reaches every other replica within that TTL. `last_used_at` is recorded in
//! memory and written in batches every [`USAGE_FLUSH_INTERVAL`].

pub mod keys;
pub mod login_throttle;
pub mod passwords;
pub mod scopes;
pub mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::error::ApiError;
use crate::storage::identity::ApiKeyRecord;
use crate::storage::Store;
pub use scopes::{Role, Scope, ScopeSet};

/// How long a verified key is trusted without asking the database again; also the bound on
/// how long a revoked key keeps working on *other* replicas.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// How often `last_used_at` is written.
pub const USAGE_FLUSH_INTERVAL: Duration = Duration::from_secs(30);
/// Cache entries beyond this are dropped wholesale; it only costs re-verification.
const KEY_CACHE_CAPACITY: usize = 100_000;
/// Operators pick the tenant they act for with this header.
pub const TENANT_HEADER: &str = "x-preflight-tenant";

/// Who made the request.
#[derive(Debug, Clone)]
pub enum Actor {
    ApiKey {
        id: Uuid,
        prefix: String,
    },
    User {
        id: Uuid,
        email: String,
        jti: String,
        /// The token's `iat`: a refreshed token is issued no earlier, so it survives the
        /// same password-change cut as the token it replaces.
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
}

impl Actor {
    /// How the actor is written in the audit trail (never a secret).
    pub fn audit_name(&self) -> String {
        match self {
            Actor::ApiKey { prefix, .. } => format!("key:{prefix}"),
            Actor::User { id, .. } => format!("user:{id}"),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The tenant acted for. `None` only for an operator key without `X-Preflight-Tenant`.
    pub tenant_id: Option<Uuid>,
    pub actor: Actor,
    pub scopes: ScopeSet,
    pub operator: bool,
    pub rate_limit_per_minute: Option<u32>,
    pub client_ip: std::net::IpAddr,
}

impl Principal {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this credential lacks the `{}` scope",
                scope.as_str()
            )))
        }
    }

    /// The tenant of a request that needs `scope`: the scope check first (403), then the
    /// tenant an operator key must name.
    pub fn tenant_with(&self, scope: Scope) -> Result<Uuid, ApiError> {
        self.require(scope)?;
        self.tenant()
    }

    /// The tenant every query of this request is bound to.
    pub fn tenant(&self) -> Result<Uuid, ApiError> {
        self.tenant_id.ok_or_else(|| {
            ApiError::Forbidden(format!(
                "operator keys must name a tenant with the {TENANT_HEADER} header"
            ))
        })
    }

    pub fn audit_actor(&self) -> String {
        self.actor.audit_name()
    }
}

#[derive(Clone)]
struct CachedKey {
    verified_at: Instant,
    /// `None`: known not to be a live key (also cached, so bad-key floods skip the database).
    key: Option<Arc<ApiKeyRecord>>,
}

/// Verified-key cache and batched usage tracking.
pub struct KeyVerifier {
    salt: String,
    cache: Mutex<HashMap<String, CachedKey>>,
    usage: Mutex<HashMap<Uuid, DateTime<Utc>>>,
}

impl KeyVerifier {
    pub fn new(salt: &str) -> Self {
        KeyVerifier {
            salt: salt.to_string(),
            cache: Mutex::new(HashMap::new()),
            usage: Mutex::new(HashMap::new()),
        }
    }

    pub fn hash(&self, key: &str) -> String {
        keys::hash_key(&self.salt, key)
    }

    /// A new key record hashed under this server's salt, and its secret (shown once).
    pub fn mint(&self, spec: keys::KeySpec) -> (ApiKeyRecord, String) {
        keys::new_api_key_record(&self.salt, spec)
    }

    /// The live key behind `presented`, if any.
    pub async fn verify(
        &self,
        store: &dyn Store,
        presented: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Arc<ApiKeyRecord>>, ApiError> {
        if !keys::looks_like_key(presented) {
            return Ok(None);
        }
        let hash = self.hash(presented);
        let cached = self
            .cache
            .lock()
            .unwrap()
            .get(&hash)
            .filter(|c| c.verified_at.elapsed() < KEY_CACHE_TTL)
            .cloned();
        let record = match cached {
            Some(c) => c.key,
            None => {
                let found = store
                    .find_api_key_by_hash(&hash)
                    .await?
                    // The index lookup found it by hash; compare again in constant time so
                    // no code path compares key material with an early exit.
                    .filter(|k| bool::from(k.key_hash.as_bytes().ct_eq(hash.as_bytes())))
                    .map(Arc::new);
                let mut cache = self.cache.lock().unwrap();
                if cache.len() >= KEY_CACHE_CAPACITY {
                    cache.clear();
                }
                cache.insert(
                    hash,
                    CachedKey {
                        verified_at: Instant::now(),
                        key: found.clone(),
                    },
                );
                found
            }
        };
        let live =
            record.filter(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|e| e > now));
        if let Some(k) = &live {
            self.usage.lock().unwrap().insert(k.id, now);
        }
        Ok(live)
    }

    /// Drops every cached entry of a key at once (revoke/rotate on this instance).
    pub fn forget(&self, key_id: Uuid) {
        self.cache
            .lock()
            .unwrap()
            .retain(|_, c| c.key.as_ref().is_none_or(|k| k.id != key_id));
    }

    /// Writes pending `last_used_at` values; called periodically and at shutdown.
    pub async fn flush_usage(&self, store: &dyn Store) {
        let pending: Vec<(Uuid, DateTime<Utc>)> = std::mem::take(&mut *self.usage.lock().unwrap())
            .into_iter()
            .collect();
        if pending.is_empty() {
            return;
        }
        if let Err(e) = store.touch_api_keys(&pending).await {
            tracing::warn!(error = %e, keys = pending.len(), "could not record key usage; will retry");
            let mut usage = self.usage.lock().unwrap();
            for (id, at) in pending {
                usage.entry(id).or_insert(at);
            }
        }
    }
}
