//! Who is calling: API keys for machines, JWT sessions for dashboard users, and the request
//! middleware that authenticates, rate-limits and attaches a [`Principal`].
//!
//! Key verification is on the hot path of every evaluation, so verified keys are cached in
//! process for [`KEY_CACHE_TTL`]; a revocation drops the entry at once on the instance that
//! served it and reaches every other replica within that TTL. `last_used_at` is recorded in
//! memory and written in batches every [`USAGE_FLUSH_INTERVAL`].

pub mod keys;
pub mod passwords;
pub mod scopes;
pub mod tokens;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ApiError;
use crate::http::observe::TenantTag;
use crate::rate_limit::{apply_headers, client_ip, LimitDecision, Subject};
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

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized {
                code: "MISSING_CREDENTIALS",
                detail: "send an X-API-Key header or an Authorization: Bearer token".into(),
            })
    }
}

/// The caller's address as used for limits and audit.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub std::net::IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientIp>()
            .copied()
            .unwrap_or(ClientIp(std::net::IpAddr::from([127, 0, 0, 1]))))
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
                    .await
                    .map_err(store_unavailable)?
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

pub fn store_unavailable(e: crate::storage::StoreError) -> ApiError {
    match e {
        crate::storage::StoreError::Unavailable(_) => ApiError::Unavailable {
            what: "database",
            retry_after_secs: 5,
        },
        other => ApiError::internal(other),
    }
}

fn invalid_key() -> ApiError {
    ApiError::Unauthorized {
        code: "INVALID_API_KEY",
        detail: "the API key is invalid, expired or revoked".into(),
    }
}

fn invalid_token() -> ApiError {
    ApiError::Unauthorized {
        code: "INVALID_TOKEN",
        detail: "the bearer token is invalid, expired or revoked".into(),
    }
}

/// Resolves credentials into a principal. `Ok(None)` means no credentials were sent.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    ip: std::net::IpAddr,
) -> Result<Option<Principal>, ApiError> {
    let now = Utc::now();
    if let Some(value) = headers.get("x-api-key") {
        let presented = value.to_str().map_err(|_| invalid_key())?.trim();
        let key = state
            .keys()
            .verify(state.store().as_ref(), presented, now)
            .await?
            .ok_or_else(invalid_key)?;
        let tenant_id = if key.operator {
            match headers.get(TENANT_HEADER) {
                None => None,
                Some(v) => {
                    let id = v
                        .to_str()
                        .ok()
                        .and_then(|s| Uuid::parse_str(s.trim()).ok())
                        .ok_or_else(|| ApiError::NotFound("tenant".into()))?;
                    state
                        .store()
                        .get_tenant(id)
                        .await
                        .map_err(store_unavailable)?
                        .ok_or_else(|| ApiError::NotFound("tenant".into()))?;
                    Some(id)
                }
            }
        } else {
            key.tenant_id
        };
        return Ok(Some(Principal {
            tenant_id,
            actor: Actor::ApiKey {
                id: key.id,
                prefix: key.prefix.clone(),
            },
            scopes: if key.operator {
                ScopeSet::all()
            } else {
                ScopeSet::from_storage(&key.scopes)
            },
            operator: key.operator,
            rate_limit_per_minute: key
                .rate_limit_per_minute
                .and_then(|l| u32::try_from(l).ok()),
            client_ip: ip,
        }));
    }
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().map_err(|_| invalid_token())?;
        let token = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .ok_or_else(invalid_token)?
            .trim();
        let claims = state.tokens().verify(token).ok_or_else(invalid_token)?;
        let session = state
            .store()
            .session_state(claims.tid, claims.sub, &claims.jti)
            .await
            .map_err(store_unavailable)?
            .ok_or_else(invalid_token)?;
        // Tokens issued before a password change are void; iat has whole-second precision.
        if session.revoked || claims.iat < session.tokens_valid_after.timestamp() {
            return Err(invalid_token());
        }
        let role = Role::parse(&session.role).ok_or_else(invalid_token)?;
        return Ok(Some(Principal {
            tenant_id: Some(claims.tid),
            actor: Actor::User {
                id: claims.sub,
                email: session.email,
                jti: claims.jti.clone(),
                issued_at: claims.issued_at(),
                expires_at: claims.expires_at(),
            },
            scopes: role.scopes(),
            operator: false,
            rate_limit_per_minute: None,
            client_ip: ip,
        }));
    }
    Ok(None)
}

/// Authenticates, applies the rate limit of the caller (key, user or client IP), and records
/// who acted for the log line.
pub async fn middleware(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let ip = client_ip(peer, req.headers(), &state.config().trusted_proxies);
    req.extensions_mut().insert(ClientIp(ip));

    let auth = authenticate(&state, req.headers(), ip).await;
    let (subject, limit) = match &auth {
        Ok(Some(p)) => (
            Subject::ApiKey(match &p.actor {
                Actor::ApiKey { id, .. } => id.to_string(),
                Actor::User { id, .. } => format!("user:{id}"),
            }),
            p.rate_limit_per_minute
                .unwrap_or(state.config().rate_limit_per_minute),
        ),
        // No or bad credentials: the client IP pays, so bad keys can neither use a valid
        // key's budget nor escape a limit.
        _ => (Subject::Ip(ip), state.config().rate_limit_unauthenticated),
    };
    let quota = match state.limiter().check(&subject, limit).await {
        LimitDecision::Allowed(q) => Some(q),
        LimitDecision::Limited {
            quota,
            retry_after_secs,
        } => {
            let mut resp = ApiError::RateLimited { retry_after_secs }.into_response();
            apply_headers(resp.headers_mut(), &quota);
            return resp;
        }
        LimitDecision::FailOpen => None,
        LimitDecision::FailClosed { retry_after_secs } => {
            return ApiError::Unavailable {
                what: "rate limiter",
                retry_after_secs,
            }
            .into_response();
        }
    };

    let tenant = match auth {
        Ok(Some(principal)) => {
            let tenant = principal.tenant_id;
            req.extensions_mut().insert(principal);
            tenant
        }
        Ok(None) => None,
        Err(e) => {
            let mut resp = e.into_response();
            if let Some(q) = &quota {
                apply_headers(resp.headers_mut(), q);
            }
            return resp;
        }
    };
    let mut resp = next.run(req).await;
    if let Some(q) = &quota {
        apply_headers(resp.headers_mut(), q);
    }
    if let Some(t) = tenant {
        resp.extensions_mut().insert(TenantTag(t.to_string()));
    }
    resp
}
