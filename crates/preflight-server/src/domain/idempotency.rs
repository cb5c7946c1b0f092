//! `Idempotency-Key`: the same key and body within 24 hours returns the first answer and
//! stores nothing twice; the same key with another body is a 422.
//!
//! One mechanism for every keyed route, single and batch alike: a record is written in the
//! same transaction as the resource it answers for, so a retry can never find one without
//! the other, and [`lookup`] is the only place that decides between replay, mismatch and
//! expiry.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{ApiError, FieldError};
use crate::state::AppState;
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

/// An answer stored earlier for the same key and request, to be sent again.
#[derive(Debug, Clone)]
pub struct Replay {
    pub status: u16,
    pub body: serde_json::Value,
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

impl IdempotencyKey {
    /// The key of this request, if it sent one (`header` is the raw header value).
    pub fn parse(
        tenant_id: Uuid,
        header: Option<&[u8]>,
        route: &str,
        body: &[u8],
    ) -> Result<Option<IdempotencyKey>, ApiError> {
        let Some(raw) = header else { return Ok(None) };
        let key = std::str::from_utf8(raw)
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

    /// The record to store with the answer.
    pub fn record(
        &self,
        status: u16,
        answer: &impl Serialize,
    ) -> Result<IdempotencyRecord, ApiError> {
        let mut record = self.claim(status);
        record.response =
            sqlx::types::Json(serde_json::to_value(answer).map_err(ApiError::internal)?);
        Ok(record)
    }

    /// The record for a write whose commit renders the answer and stores it with the key
    /// (an evaluation: its alerts are known only in its commit). Its answer is empty until then.
    pub fn claim(&self, status: u16) -> IdempotencyRecord {
        IdempotencyRecord {
            tenant_id: self.tenant_id,
            key: self.key.clone(),
            route: self.route.clone(),
            request_hash: self.request_hash.clone(),
            status: i32::from(status),
            response: sqlx::types::Json(serde_json::Value::Null),
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

/// What a stored record means for a request that presents the same key at `now`.
fn judge(
    record: IdempotencyRecord,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<Option<Replay>, ApiError> {
    if record.created_at < now - chrono::Duration::hours(RETENTION_HOURS) {
        return Ok(None);
    }
    if record.request_hash != key.request_hash || record.route != key.route {
        return Err(invalid("was already used with a different request"));
    }
    Ok(Some(Replay {
        status: u16::try_from(record.status).unwrap_or(200),
        body: record.response.0,
    }))
}

/// The stored answer for `key`, if there is one and it is still within the window; a 422 if
/// it was for a different request.
pub async fn lookup(state: &AppState, key: &IdempotencyKey) -> Result<Option<Replay>, ApiError> {
    match state
        .store()
        .find_idempotency(key.tenant_id, &key.key)
        .await?
    {
        Some(record) => judge(record, key, Utc::now()),
        None => Ok(None),
    }
}

/// Where a keyed request stands before it does anything.
pub enum Begin {
    /// Proceed (storing the answer under the key, if one was sent).
    Proceed(Option<IdempotencyKey>),
    /// Already answered: send this again.
    Replay(Replay),
}

/// Decides between a first attempt and a replay.
pub async fn begin(state: &AppState, key: Option<IdempotencyKey>) -> Result<Begin, ApiError> {
    let Some(key) = key else {
        return Ok(Begin::Proceed(None));
    };
    match lookup(state, &key).await? {
        Some(replay) => Ok(Begin::Replay(replay)),
        None => Ok(Begin::Proceed(Some(key))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> IdempotencyKey {
        IdempotencyKey::parse(Uuid::nil(), Some(b"k-1"), "/v1/evaluate", b"{}")
            .unwrap()
            .unwrap()
    }

    fn stored(key: &IdempotencyKey, at: DateTime<Utc>) -> IdempotencyRecord {
        let mut r = key.record(200, &serde_json::json!({"ok": true})).unwrap();
        r.created_at = at;
        r
    }

    #[test]
    fn keys_must_be_visible_ascii_of_bounded_length() {
        assert!(IdempotencyKey::parse(Uuid::nil(), None, "/r", b"")
            .unwrap()
            .is_none());
        for bad in [&b""[..], b"   ", b"has space", "é".as_bytes(), &[b'a'; 256]] {
            assert!(IdempotencyKey::parse(Uuid::nil(), Some(bad), "/r", b"").is_err());
        }
        assert!(IdempotencyKey::parse(Uuid::nil(), Some(&[b'a'; 255]), "/r", b"").is_ok());
    }

    #[test]
    fn a_record_within_the_window_replays_and_an_older_one_is_forgotten() {
        let now = Utc::now();
        let k = key();
        let fresh = judge(stored(&k, now - chrono::Duration::hours(23)), &k, now).unwrap();
        assert_eq!(fresh.unwrap().body, serde_json::json!({"ok": true}));
        let expired = judge(stored(&k, now - chrono::Duration::hours(25)), &k, now).unwrap();
        assert!(expired.is_none());
    }

    #[test]
    fn the_same_key_with_another_body_or_route_is_refused() {
        let now = Utc::now();
        let k = key();
        let other_body =
            IdempotencyKey::parse(Uuid::nil(), Some(b"k-1"), "/v1/evaluate", b"{\"a\":1}")
                .unwrap()
                .unwrap();
        assert!(judge(stored(&k, now), &other_body, now).is_err());
        let other_route = IdempotencyKey {
            route: "/v1/templates".into(),
            ..k.clone()
        };
        assert!(judge(stored(&k, now), &other_route, now).is_err());
    }

    #[test]
    fn batch_items_get_their_own_keys() {
        assert_eq!(key().item(3).key, "k-1#3");
    }
}
