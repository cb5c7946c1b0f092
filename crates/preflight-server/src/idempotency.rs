//! `Idempotency-Key` on POST routes: the same key and body within 24 hours returns the first
//! answer and stores nothing twice; the same key with another body is a 422.
//!
//! The record is written in the same transaction as the resource it answers for, so a retry
//! can never find one without the other.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::store_unavailable;
use crate::error::{ApiError, FieldError};
use crate::storage::evaluations::IdempotencyRecord;

pub const HEADER: &str = "idempotency-key";
/// How long a key is remembered.
pub const RETENTION_HOURS: i64 = 24;

/// A fresh key for this request, ready to be stored with its answer.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub tenant_id: Uuid,
    pub key: String,
    pub route: String,
    pub request_hash: String,
}

impl IdempotencyKey {
    /// The record to store with the answer.
    pub fn record(&self, status: StatusCode, response: &serde_json::Value) -> IdempotencyRecord {
        IdempotencyRecord {
            tenant_id: self.tenant_id,
            key: self.key.clone(),
            route: self.route.clone(),
            request_hash: self.request_hash.clone(),
            status: i32::from(status.as_u16()),
            response: sqlx::types::Json(response.clone()),
            created_at: Utc::now(),
        }
    }

    /// A derived key for item `i` of a batch (each item is stored on its own).
    pub fn item(&self, i: usize) -> IdempotencyKey {
        IdempotencyKey {
            key: format!("{}#{i}", self.key),
            ..self.clone()
        }
    }
}

pub enum Begin {
    /// No header: proceed without idempotency.
    None,
    /// Proceed, and store the answer under this key.
    Fresh(IdempotencyKey),
    /// Already answered: send this again.
    Replay(Response),
}

fn invalid(message: &str) -> ApiError {
    ApiError::Validation(vec![FieldError {
        field: "Idempotency-Key".into(),
        message: message.into(),
    }])
}

pub fn request_hash(route: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update(b"\n");
    h.update(body);
    hex::encode(h.finalize())
}

/// The key of this request, if it sent one.
pub fn parse(
    tenant_id: Uuid,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(raw) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = raw
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| invalid("must be 1 to 255 visible ASCII characters"))?
        .to_string();
    Ok(Some(IdempotencyKey {
        tenant_id,
        key,
        route: route.to_string(),
        request_hash: request_hash(route, body),
    }))
}

/// Reads the header and, if the key was seen, decides between replay and mismatch.
pub async fn begin(
    state: &AppState,
    tenant_id: Uuid,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
) -> Result<Begin, ApiError> {
    let Some(fresh) = parse(tenant_id, headers, route, body)? else {
        return Ok(Begin::None);
    };
    match lookup(state, &fresh).await? {
        Some(replay) => Ok(Begin::Replay(replay)),
        None => Ok(Begin::Fresh(fresh)),
    }
}

/// The stored answer for `key`, if there is one and it is still within the window; a 422 if
/// it was for a different request.
pub async fn lookup(state: &AppState, key: &IdempotencyKey) -> Result<Option<Response>, ApiError> {
    let found = state
        .store()
        .find_idempotency(key.tenant_id, &key.key)
        .await
        .map_err(store_unavailable)?;
    let Some(record) = found else { return Ok(None) };
    if record.created_at < Utc::now() - chrono::Duration::hours(RETENTION_HOURS) {
        return Ok(None);
    }
    if record.request_hash != key.request_hash || record.route != key.route {
        return Err(invalid("was already used with a different request"));
    }
    Ok(Some(replay(&record)))
}

pub fn replay(record: &IdempotencyRecord) -> Response {
    let status = StatusCode::from_u16(record.status as u16).unwrap_or(StatusCode::OK);
    let mut resp = (status, axum::Json(record.response.0.clone())).into_response();
    resp.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    resp
}
