//! How often failed logins reach the audit trail: once a minute per account (or per unknown
//! email), so a guessing run cannot flood it. Counting failures towards a lockout is the
//! domain's rule (`domain::identity`); this only decides what is worth writing down.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FAILED_LOGIN_AUDIT_INTERVAL: Duration = Duration::from_secs(60);

/// Remembers when a failed login was last audited per account, so a guessing run writes one
/// audit row a minute, not one per guess.
pub struct FailedLoginThrottle {
    last: Mutex<HashMap<String, Instant>>,
}

impl FailedLoginThrottle {
    pub fn new() -> Self {
        FailedLoginThrottle {
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a failure of `key` at `now` is to be audited.
    pub fn should_record(&self, key: &str, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap();
        if last.len() > 10_000 {
            last.retain(|_, t| now.duration_since(*t) < FAILED_LOGIN_AUDIT_INTERVAL);
        }
        match last.get(key) {
            Some(t) if now.duration_since(*t) < FAILED_LOGIN_AUDIT_INTERVAL => false,
            _ => {
                last.insert(key.to_string(), now);
                true
            }
        }
    }
}

impl Default for FailedLoginThrottle {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_logins_are_audited_once_per_interval() {
        let throttle = FailedLoginThrottle::new();
        let t0 = Instant::now();
        assert!(throttle.should_record("user:1", t0));
        assert!(!throttle.should_record("user:1", t0 + Duration::from_secs(59)));
        assert!(throttle.should_record("user:2", t0 + Duration::from_secs(1)));
        assert!(throttle.should_record("user:1", t0 + Duration::from_secs(61)));
    }
}
