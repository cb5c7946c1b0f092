//! API key material: generation, the visible prefix, and the keyed hash that is all we store.

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

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
}
