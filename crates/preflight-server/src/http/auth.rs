//! The request middleware that authenticates (API key or bearer token), rate-limits the
//! caller (key, user or client IP) and attaches a [`Principal`]; and the extractors that
//! hand the principal and the client address to handlers.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use uuid::Uuid;

use super::observe::TenantTag;
use crate::auth::{Actor, Principal, Role, ScopeSet, TENANT_HEADER};
use crate::error::ApiError;
use crate::rate_limit::{apply_headers, client_ip, LimitDecision, Subject};
use crate::state::AppState;

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
                        .await?
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
            .await?
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
    let ip = client_ip(peer, req.headers(), &state.config().server.trusted_proxies);
    req.extensions_mut().insert(ClientIp(ip));

    let auth = authenticate(&state, req.headers(), ip).await;
    let (subject, limit) = match &auth {
        Ok(Some(p)) => (
            Subject::ApiKey(match &p.actor {
                Actor::ApiKey { id, .. } => id.to_string(),
                Actor::User { id, .. } => format!("user:{id}"),
            }),
            p.rate_limit_per_minute
                .unwrap_or(state.config().limits.per_minute),
        ),
        // No or bad credentials: the client IP pays, so bad keys can neither use a valid
        // key's budget nor escape a limit.
        _ => (Subject::Ip(ip), state.config().limits.unauthenticated),
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
