//! Each tenant's active templates, held in the engine's in-memory index.
//!
//! Loaded lazily on a tenant's first evaluation, then kept exact by revision: every template
//! change bumps the tenant's `template_revision` in the same transaction, and a background
//! task reads the revisions of all loaded tenants in one query every [`SYNC_INTERVAL`] and,
//! only for tenants whose revision moved past what their index has, applies the template
//! versions that changed. A change made through any replica is therefore visible on every
//! other within about half a second (plus two queries), and an idle tick costs one query
//! however many tenants are loaded; the replica that made a change refreshes at once. Memory is bounded by [`Config::template_cache_max`] templates in total:
//! past it, the least recently used tenants are dropped and reloaded on demand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use preflight_engine::{Template, TemplateIndex, ValidationErrors};
use uuid::Uuid;

use crate::storage::evaluations::TemplateRow;
use crate::storage::{Store, StoreError};

pub const SYNC_INTERVAL: Duration = Duration::from_millis(500);

struct TenantIndex {
    index: TemplateIndex,
    revision: i64,
}

struct Entry {
    state: RwLock<TenantIndex>,
    /// Milliseconds since the registry started, for LRU eviction.
    last_used: AtomicU64,
    /// One loader or refresher at a time per tenant.
    sync: tokio::sync::Mutex<()>,
    /// Set once the first load finished: nobody may evaluate against a half-loaded index.
    loaded: tokio::sync::OnceCell<()>,
}

pub struct TemplateRegistry {
    store: Arc<dyn Store>,
    tenants: RwLock<HashMap<Uuid, Arc<Entry>>>,
    started: Instant,
    max_templates: usize,
}

/// Builds the engine template of a stored version under `template_id`. This is also the
/// real validation of a version's exemplars, reliability and rules (the domain runs it on
/// every change before saving).
pub fn build_engine_template(
    row: &TemplateRow,
    template_id: &str,
) -> Result<Template, ValidationErrors> {
    let mut t = Template::new(
        template_id,
        row.version,
        row.id.to_string(),
        row.exemplars.0.clone(),
        row.baseline_reliability,
        row.correction_rules.0.clone(),
    )?;
    t.outcome_stats = row.outcome_stats.0.clone();
    t.seen_extractors = row.seen_extractors.0.clone();
    Ok(t)
}

/// The engine template for a stored active version.
pub fn engine_template(row: &TemplateRow) -> Option<Template> {
    build_engine_template(row, &row.template_id)
        .map_err(
            |e| tracing::error!(template = %row.id, error = %e, "stored template does not build"),
        )
        .ok()
}

impl TemplateRegistry {
    pub fn new(store: Arc<dyn Store>, max_templates: usize) -> Self {
        TemplateRegistry {
            store,
            tenants: RwLock::new(HashMap::new()),
            started: Instant::now(),
            max_templates,
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn entry(&self, tenant_id: Uuid) -> Result<Arc<Entry>, StoreError> {
        let existing = self.tenants.read().unwrap().get(&tenant_id).cloned();
        if let Some(e) = existing {
            e.last_used.store(self.now_ms(), Ordering::Relaxed);
            // A concurrent first request may still be loading it: wait for that load.
            e.loaded
                .get_or_try_init(|| self.sync_entry(tenant_id, &e))
                .await?;
            return Ok(e);
        }
        let entry = Arc::new(Entry {
            state: RwLock::new(TenantIndex {
                index: TemplateIndex::new(),
                revision: 0,
            }),
            last_used: AtomicU64::new(self.now_ms()),
            sync: tokio::sync::Mutex::new(()),
            loaded: tokio::sync::OnceCell::new(),
        });
        let entry = {
            let mut map = self.tenants.write().unwrap();
            map.entry(tenant_id).or_insert(entry).clone()
        };
        entry
            .loaded
            .get_or_try_init(|| self.sync_entry(tenant_id, &entry))
            .await?;
        self.evict_if_needed(tenant_id);
        Ok(entry)
    }

    /// Applies every template change since the entry's revision.
    async fn sync_entry(&self, tenant_id: Uuid, entry: &Entry) -> Result<(), StoreError> {
        let _guard = entry.sync.lock().await;
        let current = self.store.template_revision(tenant_id).await?;
        self.apply_changes(tenant_id, entry, current).await
    }

    /// Applies the template changes between the entry's revision and `current`, the
    /// tenant's revision as just read. The caller holds `entry.sync`.
    async fn apply_changes(
        &self,
        tenant_id: Uuid,
        entry: &Entry,
        current: i64,
    ) -> Result<(), StoreError> {
        let known = entry.state.read().unwrap().revision;
        // Every template change bumps the revision, so revision 0 means none ever existed.
        if current <= known {
            return Ok(());
        }
        let rows = self.store.templates_changed_since(tenant_id, known).await?;
        // Build outside the lock: evaluations keep running meanwhile.
        let built: Vec<(String, Option<Template>, i64)> = rows
            .iter()
            .map(|r| {
                let t = (r.status == "active").then(|| engine_template(r)).flatten();
                (r.id.to_string(), t, r.revision)
            })
            .collect();
        let mut state = entry.state.write().unwrap();
        let mut revision = state.revision.max(current);
        for (id, template, rev) in built {
            revision = revision.max(rev);
            match template {
                Some(t) => state.index.insert(t),
                None => {
                    state.index.remove(&id);
                }
            }
        }
        state.revision = revision;
        Ok(())
    }

    /// Brings one tenant up to date now (after a change made by this instance).
    pub async fn refresh(&self, tenant_id: Uuid) -> Result<(), StoreError> {
        let entry = self.tenants.read().unwrap().get(&tenant_id).cloned();
        match entry {
            Some(e) => self.sync_entry(tenant_id, &e).await,
            None => Ok(()),
        }
    }

    /// Runs `f` against the tenant's index, loading it first if needed.
    pub async fn with_index<R>(
        &self,
        tenant_id: Uuid,
        f: impl FnOnce(&TemplateIndex) -> R,
    ) -> Result<R, StoreError> {
        let entry = self.entry(tenant_id).await?;
        let state = entry.state.read().unwrap();
        Ok(f(&state.index))
    }

    /// Drops least recently used tenants while over the memory bound (never `keep`).
    fn evict_if_needed(&self, keep: Uuid) {
        let mut map = self.tenants.write().unwrap();
        loop {
            let total: usize = map
                .values()
                .map(|e| e.state.read().unwrap().index.len())
                .sum();
            if total <= self.max_templates || map.len() <= 1 {
                return;
            }
            let victim = map
                .iter()
                .filter(|(id, _)| **id != keep)
                .min_by_key(|(_, e)| e.last_used.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            match victim {
                Some(id) => {
                    map.remove(&id);
                }
                None => return,
            }
        }
    }

    /// Templates and tenants currently held, and approximate bytes.
    pub fn stats(&self) -> (usize, usize, usize) {
        let map = self.tenants.read().unwrap();
        let mut templates = 0;
        let mut bytes = 0;
        for e in map.values() {
            let s = e.state.read().unwrap();
            templates += s.index.len();
            bytes += s.index.approx_memory_bytes();
        }
        (map.len(), templates, bytes)
    }

    /// Keeps every loaded tenant in step with the database; runs until the process ends.
    pub async fn sync_forever(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SYNC_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let entries: Vec<(Uuid, Arc<Entry>)> = self
                .tenants
                .read()
                .unwrap()
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            if entries.is_empty() {
                continue;
            }
            let ids: Vec<Uuid> = entries.iter().map(|(id, _)| *id).collect();
            let revisions: HashMap<Uuid, i64> = match self.store.template_revisions(&ids).await {
                Ok(r) => r.into_iter().collect(),
                Err(e) => {
                    tracing::debug!(error = %e, "template sync skipped");
                    continue;
                }
            };
            for (tenant_id, entry) in entries {
                // A tenant that no longer exists has no templates to apply either.
                let current = revisions.get(&tenant_id).copied().unwrap_or(0);
                if current <= entry.state.read().unwrap().revision {
                    continue;
                }
                let _guard = entry.sync.lock().await;
                if let Err(e) = self.apply_changes(tenant_id, &entry, current).await {
                    tracing::debug!(tenant = %tenant_id, error = %e, "template sync skipped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::{audit, new_tenant, on_both_backends, template};

    #[tokio::test]
    async fn the_sync_picks_up_a_change_in_one_of_many_loaded_tenants() {
        on_both_backends(|store| async move {
            let registry = Arc::new(TemplateRegistry::new(store.clone(), 1000));
            let mut tenants = Vec::new();
            for _ in 0..5 {
                tenants.push(new_tenant(&*store).await.id);
            }
            let create = |tenant_id: Uuid, template_id: &'static str| {
                let store = store.clone();
                async move {
                    store
                        .create_template(
                            &template(tenant_id, template_id, 1),
                            &audit(tenant_id, "template.create"),
                            None,
                        )
                        .await
                        .unwrap();
                }
            };
            create(tenants[0], "loaded-before").await;
            for id in &tenants {
                registry.with_index(*id, |_| ()).await.unwrap();
            }
            assert_eq!(registry.stats().1, 1, "the template exemplar builds");
            let sync = tokio::spawn(registry.clone().sync_forever());
            // Made straight in the store, as another replica would: only the sync can see it.
            create(tenants[3], "changed-elsewhere").await;
            let deadline = Instant::now() + Duration::from_secs(10);
            while registry.with_index(tenants[3], |i| i.len()).await.unwrap() == 0 {
                assert!(
                    Instant::now() < deadline,
                    "the sync did not pick up the change"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sync.abort();
            let (loaded, templates, _) = registry.stats();
            assert_eq!((loaded, templates), (5, 2));
            assert_eq!(
                registry.with_index(tenants[0], |i| i.len()).await.unwrap(),
                1
            );
        })
        .await;
    }
}
