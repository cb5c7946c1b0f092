//! Password hashing with Argon2id, off the async runtime and with bounded concurrency, so a
//! login flood queues instead of starving every other request of CPU.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

pub const MIN_PASSWORD_LEN: usize = 12;
pub const MAX_PASSWORD_LEN: usize = 256;

#[derive(Clone)]
pub struct PasswordHasherPool {
    permits: Arc<Semaphore>,
}

/// Verified against when an email is unknown, so a miss costs as much as a hit.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_blocking("preflight-timing-equalizer").expect("hash dummy password"))
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
}

fn verify_blocking(password: &str, encoded: &str) -> bool {
    match PasswordHash::new(encoded) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

impl PasswordHasherPool {
    /// One permit per core: Argon2 is CPU-bound, more in parallel only adds queueing.
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        PasswordHasherPool {
            permits: Arc::new(Semaphore::new(cores)),
        }
    }

    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || hash_blocking(&password)).await?
    }

    /// Verifies against `encoded`, or against a dummy hash when there is no user, so the
    /// answer takes the same time either way.
    pub async fn verify(&self, password: String, encoded: Option<String>) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || match encoded {
            Some(e) => verify_blocking(&password, &e),
            None => {
                let _ = verify_blocking(&password, dummy_hash());
                false
            }
        })
        .await
        .map_err(Into::into)
    }

    /// Computes the dummy hash ahead of the first login.
    pub fn warm_up(&self) {
        tokio::task::spawn_blocking(|| {
            let _ = dummy_hash();
        });
    }
}

impl Default for PasswordHasherPool {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a new password is refused, if it is.
pub fn password_problem(password: &str) -> Option<String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Some(format!("must be at least {MIN_PASSWORD_LEN} characters"));
    }
    if n > MAX_PASSWORD_LEN {
        return Some(format!("must be at most {MAX_PASSWORD_LEN} characters"));
    }
    None
}
