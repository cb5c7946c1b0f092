//! API key material: generation, the visible prefix, and the keyed hash that is all we store.

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;

use super::ScopeSet;
use crate::storage::identity::ApiKeyRecord;

/// Every key starts with this, so secret scanners and humans can recognise one.
pub const KEY_PREFIX: &str = "pf_";
const ID_LEN: usize = 8;

/// A freshly generated key: shown once, never stored in clear.
pub struct GeneratedKey {
    /// The whole secret, e.g. `pf_Ab3dE9xQ_<43 chars>`.
    pub secret: String,
    /// The visible part, e.g. `pf_Ab3dE9xQ`, safe to list and log.
    pub prefix: String,
}

const ID_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// 256 random bits in the secret part (the contract asks for at least 128).
pub fn generate_key() -> GeneratedKey {
    let mut rng = rand::rng();
    let id: String = (0..ID_LEN)
        .map(|_| ID_ALPHABET[(rng.next_u32() as usize) % ID_ALPHABET.len()] as char)
        .collect();
    let mut secret_bytes = [0u8; 32];
    rng.fill_bytes(&mut secret_bytes);
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_bytes);
    let prefix = format!("{KEY_PREFIX}{id}");
    GeneratedKey {
        secret: format!("{prefix}_{body}"),
        prefix,
    }
}

/// HMAC-SHA256 of the key under `API_KEY_SALT`, hex. A database leak alone reveals nothing
/// usable, and lookups are by this value so no clear key is ever compared in SQL.
pub fn hash_key(salt: &str, key: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(salt.as_bytes()).expect("HMAC takes any key length");
    mac.update(key.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// What a new key is for; everything else about it (id, secret, hash, times) is generated.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// `None` only for operator keys, which only `preflight admin` mints.
    pub tenant_id: Option<Uuid>,
    pub name: String,
    pub scopes: ScopeSet,
    pub operator: bool,
    pub rate_limit_per_minute: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Audit name of whoever minted it, e.g. `user:<id>`, `operator-cli`, `system`.
    pub created_by: String,
}

/// The one place a key record is built (HTTP, first start and the admin CLI alike), so
/// every key has the same shape and is hashed the same way. Returns the record to store and
/// the secret to show once.
pub fn new_api_key_record(salt: &str, spec: KeySpec) -> (ApiKeyRecord, String) {
    let generated = generate_key();
    let record = ApiKeyRecord {
        id: Uuid::now_v7(),
        tenant_id: spec.tenant_id,
        name: spec.name,
        prefix: generated.prefix,
        key_hash: hash_key(salt, &generated.secret),
        scopes: spec.scopes.to_storage(),
        operator: spec.operator,
        rate_limit_per_minute: spec.rate_limit_per_minute,
        expires_at: spec.expires_at,
        created_by: spec.created_by,
        created_at: Utc::now(),
        last_used_at: None,
        revoked_at: None,
    };
    (record, generated.secret)
}

/// Cheap shape check before any hashing or lookup.
pub fn looks_like_key(candidate: &str) -> bool {
    candidate.len() <= 128
        && candidate.starts_with(KEY_PREFIX)
        && candidate
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_prefixed_and_hash_stably() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(&a.prefix));
        assert!(looks_like_key(&a.secret));
        assert_eq!(a.prefix.len(), KEY_PREFIX.len() + ID_LEN);
        // 32 random bytes → 43 base64url characters.
        assert_eq!(a.secret.len(), a.prefix.len() + 1 + 43);
        assert_eq!(hash_key("salt-1", &a.secret), hash_key("salt-1", &a.secret));
        assert_ne!(hash_key("salt-1", &a.secret), hash_key("salt-2", &a.secret));
        assert!(!looks_like_key("Bearer xyz"));
    }

    #[test]
    fn records_store_only_the_keyed_hash_of_the_secret() {
        let (record, secret) = new_api_key_record(
            "salt-1",
            KeySpec {
                tenant_id: None,
                name: "ops".into(),
                scopes: ScopeSet::from_iter([super::super::Scope::Read]),
                operator: true,
                rate_limit_per_minute: Some(10),
                expires_at: None,
                created_by: "operator-cli".into(),
            },
        );
        assert!(secret.starts_with(&record.prefix));
        assert_eq!(record.key_hash, hash_key("salt-1", &secret));
        assert!(!record.key_hash.contains(&secret[record.prefix.len() + 1..]));
        assert_eq!(record.scopes, "read");
        assert!(record.operator && record.tenant_id.is_none());
        assert!(record.revoked_at.is_none() && record.last_used_at.is_none());
    }
}
