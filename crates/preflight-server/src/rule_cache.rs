//! The tenants' alert rules, held in memory for the evaluate path.
//!
//! Every evaluation checks its tenant's rules, so reading them from the database each time
//! would add a query to the hottest path. They are kept here for [`RULE_CACHE_TTL`]: a change
//! made on this instance applies at once (the domain forgets the tenant's entry), one made on
//! another replica within the TTL. Entries of tenants that stopped evaluating are dropped
//! once the map grows past [`MAX_TENANTS`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::storage::alerts::AlertRuleRow;

pub const RULE_CACHE_TTL: Duration = Duration::from_secs(5);
const MAX_TENANTS: usize = 10_000;

/// When a tenant's rules were read, and what they were.
type Entry = (Instant, Arc<Vec<AlertRuleRow>>);

#[derive(Default)]
pub struct RuleCache {
    entries: Mutex<HashMap<Uuid, Entry>>,
}

impl RuleCache {
    /// The tenant's rules as read at most [`RULE_CACHE_TTL`] before `now`, if held.
    pub fn get(&self, tenant_id: Uuid, now: Instant) -> Option<Arc<Vec<AlertRuleRow>>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&tenant_id)
            .filter(|(read_at, _)| now.saturating_duration_since(*read_at) < RULE_CACHE_TTL)
            .map(|(_, rules)| rules.clone())
    }

    /// Holds the tenant's rules as read at `read_at`.
    pub fn put(&self, tenant_id: Uuid, rules: Arc<Vec<AlertRuleRow>>, read_at: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_TENANTS {
            entries.retain(|_, (at, _)| read_at.saturating_duration_since(*at) < RULE_CACHE_TTL);
        }
        entries.insert(tenant_id, (read_at, rules));
    }

    /// Forgets the tenant's rules, so the next evaluation reads them again.
    pub fn forget(&self, tenant_id: Uuid) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(&tenant_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl_and_can_be_forgotten() {
        let cache = RuleCache::default();
        let (tenant, t0) = (Uuid::new_v4(), Instant::now());
        cache.put(tenant, Arc::new(Vec::new()), t0);
        assert!(cache.get(tenant, t0 + RULE_CACHE_TTL / 2).is_some());
        assert!(cache.get(tenant, t0 + RULE_CACHE_TTL).is_none());
        cache.put(tenant, Arc::new(Vec::new()), t0);
        cache.forget(tenant);
        assert!(cache.get(tenant, t0).is_none());
    }
}
