//! The store against both real backends: SQLite in a temporary directory and PostgreSQL in
//! a database created for the test (and dropped after it), at `127.0.0.1:5432`.
//!
//! PostgreSQL is part of every development machine and of CI here, so these tests fail
//! rather than skip when it cannot be reached: a silently skipped backend is untested.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use preflight_engine::{BoundingBox, DriftDetectorState, DriftObservation, StructuralFeatures};
use sqlx::types::Json;
use sqlx::Connection;
use uuid::Uuid;

use super::alerts::NewAlert;
use super::audit::{AuditFilter, NewAuditEvent};
use super::evaluations::{
    CommitEffects, DecidedEvaluation, EvaluationWrite, FeedbackWrite, Found, WriteOutcome,
};
use super::idempotency::IdempotencyRecord;
use super::identity::{Tenant, User};
use super::templates::{TemplateRow, REVISIONS_CHUNK};
use super::{Store, StoreError};
use crate::config::{Config, DatabaseConfig, StorageConfig};

const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A migrated store of one backend and what to remove afterwards.
struct TestDb {
    store: Arc<dyn Store>,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Postgres(String),
}

fn config(database: DatabaseConfig) -> StorageConfig {
    let mut config = Config::from_env_map(&HashMap::new()).expect("default config");
    config.storage.database = database;
    config.storage
}

async fn sqlite() -> TestDb {
    let dir = std::env::temp_dir().join(format!("preflight-store-test-{}", Uuid::new_v4()));
    let config = config(DatabaseConfig::Sqlite {
        path: dir.join("preflight.db"),
    });
    let store = super::open(&config).await.expect("open sqlite");
    store.migrate().await.expect("migrate sqlite");
    TestDb {
        store,
        cleanup: Cleanup::Dir(dir),
    }
}

async fn postgres() -> TestDb {
    let name = format!("preflight_test_{}", Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(POSTGRES_ADMIN_URL)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must be reachable at {POSTGRES_ADMIN_URL}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    admin.close().await.ok();
    let config = config(DatabaseConfig::Postgres {
        url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
    });
    let store = super::open(&config).await.expect("open postgres");
    store.migrate().await.expect("migrate postgres");
    TestDb {
        store,
        cleanup: Cleanup::Postgres(name),
    }
}

impl TestDb {
    async fn remove(self) {
        self.store.close().await;
        match self.cleanup {
            Cleanup::Dir(dir) => {
                std::fs::remove_dir_all(dir).ok();
            }
            Cleanup::Postgres(name) => {
                if let Ok(mut admin) = sqlx::PgConnection::connect(POSTGRES_ADMIN_URL).await {
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await
                        .ok();
                    admin.close().await.ok();
                }
            }
        }
    }
}

/// Runs `test` against a fresh store of each backend, removing it even if the test fails.
pub(crate) async fn on_both_backends<F, Fut>(test: F)
where
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    for db in [sqlite().await, postgres().await] {
        let backend = db.store.backend();
        let outcome = AssertUnwindSafe(test(db.store.clone()))
            .catch_unwind()
            .await;
        db.remove().await;
        if let Err(panic) = outcome {
            eprintln!("failed on {backend}");
            std::panic::resume_unwind(panic);
        }
    }
}

pub(crate) fn tenant() -> Tenant {
    let id = Uuid::new_v4();
    Tenant {
        id,
        name: format!("tenant {id}"),
        slug: format!("t-{}", id.simple()),
        created_at: now(),
    }
}

/// Whole microseconds: what both backends store, so rows compare equal after a round trip.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

pub(crate) fn audit(tenant_id: Uuid, action: &str) -> NewAuditEvent {
    NewAuditEvent {
        tenant_id: Some(tenant_id),
        occurred_at: now(),
        actor: "test".into(),
        action: action.into(),
        target: None,
        ip: None,
        request_id: None,
        details: serde_json::json!({"n": 1}),
    }
}

/// A layout the engine accepts as an exemplar: header, text blocks, a table and a footer.
pub(crate) fn exemplar() -> StructuralFeatures {
    let boxes: Vec<BoundingBox> = [
        (0.05, 0.03, 0.9, 0.06, "header"),
        (0.05, 0.12, 0.4, 0.05, "text"),
        (0.55, 0.12, 0.4, 0.05, "text"),
        (0.05, 0.25, 0.9, 0.4, "table"),
        (0.05, 0.7, 0.5, 0.04, "text"),
        (0.6, 0.7, 0.3, 0.04, "text"),
        (0.05, 0.94, 0.9, 0.03, "footer"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (x, y, width, height, kind))| BoundingBox {
        x,
        y,
        width,
        height,
        element_type: kind.into(),
        confidence: 0.95,
        reading_order: i as i64,
        page: None,
    })
    .collect();
    StructuralFeatures {
        element_count: boxes.len() as i64,
        table_count: 1,
        text_block_count: 4,
        image_count: 0,
        page_count: 1,
        text_density: 0.3,
        layout_complexity: 0.5,
        column_count: 2,
        has_header: true,
        has_footer: true,
        bounding_boxes: boxes,
    }
}

pub(crate) fn template(tenant_id: Uuid, template_id: &str, version: i64) -> TemplateRow {
    TemplateRow {
        id: Uuid::new_v4(),
        tenant_id,
        template_id: template_id.into(),
        version,
        name: Some("Invoice".into()),
        description: None,
        status: "active".into(),
        baseline_reliability: 0.9,
        correction_rules: Json(Vec::new()),
        exemplars: Json(vec![exemplar()]),
        outcome_stats: Json(BTreeMap::new()),
        detector_state: Json(DriftDetectorState::new()),
        seen_extractors: Json(Default::default()),
        evaluation_count: 0,
        revision: 0,
        created_at: now(),
        updated_at: now(),
    }
}

fn idempotency(tenant_id: Uuid, key: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        tenant_id,
        key: key.into(),
        route: "POST /v1/test".into(),
        request_hash: "hash".into(),
        status: 201,
        response: Json(serde_json::json!({"ok": true})),
        created_at: now(),
    }
}

fn evaluation(tenant_id: Uuid) -> DecidedEvaluation {
    DecidedEvaluation {
        id: Uuid::now_v7(),
        tenant_id,
        created_at: now(),
        decision: "NO_MATCH".into(),
        match_confidence: 0.0,
        template_id: None,
        template_version_id: None,
        template_version: None,
        similarity: 0.0,
        drift_score: 0.0,
        reliability_score: 0.5,
        extractor_confidence: 0.9,
        extractor_vendor: "vendor".into(),
        extractor_model: "model".into(),
        correlation_id: Some("c-1".into()),
        pipeline_id: None,
        client_doc_hash: None,
        layout_fingerprint: "fp".into(),
        replay_hash: "rh".into(),
        engine_version: "test".into(),
        request: Json(serde_json::json!({"features": {}})),
    }
}

/// An answer that says how many change points its commit confirmed.
struct CountingAnswer;

impl CommitEffects for CountingAnswer {
    fn answer(&self, found: &Found) -> Result<serde_json::Value, serde_json::Error> {
        Ok(serde_json::json!({"decision": "NO_MATCH", "alerts": found.change_points.len()}))
    }
    fn alerts(&self, _found: &Found) -> Vec<NewAlert> {
        Vec::new()
    }
    fn deliveries(
        &self,
        _alert: &mut NewAlert,
        _endpoints: &[super::webhooks::EndpointRow],
    ) -> Vec<super::webhooks::NewDelivery> {
        Vec::new()
    }
}

fn write(evaluation: DecidedEvaluation, idempotency: Option<IdempotencyRecord>) -> EvaluationWrite {
    let extractor = preflight_engine::ExtractorIdentity {
        vendor: evaluation.extractor_vendor.clone(),
        model: evaluation.extractor_model.clone(),
        version: "1".into(),
    };
    let metadata = preflight_engine::ExtractorMetadata {
        vendor: extractor.vendor.clone(),
        model: extractor.model.clone(),
        version: extractor.version.clone(),
        confidence: evaluation.extractor_confidence,
        latency_ms: 100.0,
        cost_usd: None,
    };
    EvaluationWrite {
        rollup: crate::domain::analytics::rollup_entry(&evaluation, &extractor, &metadata),
        usage_period: crate::domain::usage::period_of(evaluation.created_at),
        quota: None,
        review: None,
        extractor,
        evaluation,
        effects: Box::new(CountingAnswer),
        observation: None,
        idempotency,
    }
}

/// Feedback that the evaluation's review item follows, as `/feedback` sends it.
const FOLLOW: super::review::ReviewResolution<'static> =
    super::review::ReviewResolution::Follow { by: "test" };

async fn audit_actions(store: &dyn Store, tenant_id: Uuid) -> Vec<String> {
    let filter = AuditFilter {
        limit: 100,
        ..AuditFilter::default()
    };
    store
        .list_audit(tenant_id, &filter)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

pub(crate) async fn new_tenant(store: &dyn Store) -> Tenant {
    let t = tenant();
    store
        .create_tenant(&t, &audit(t.id, "tenant.create"))
        .await
        .unwrap();
    t
}

#[tokio::test]
async fn a_duplicate_template_version_is_duplicate() {
    on_both_backends(|store| async move {
        let t = new_tenant(&*store).await;
        let first = template(t.id, "invoice", 1);
        store
            .create_template(&first, &audit(t.id, "template.create"), None)
            .await
            .unwrap();
        let again = template(t.id, "invoice", 1);
        let err = store
            .create_template(&again, &audit(t.id, "template.create"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Duplicate("this template_id and version exist already")
            ),
            "{err:?}"
        );
        // The failed version left no audit row behind.
        assert_eq!(
            audit_actions(&*store, t.id).await,
            ["template.create", "tenant.create"]
        );
    })
    .await;
}

#[tokio::test]
async fn a_save_from_an_old_revision_is_stale_and_stores_nothing() {
    on_both_backends(|store| async move {
        let t = new_tenant(&*store).await;
        let mut row = template(t.id, "invoice", 1);
        let created = store
            .create_template(&row, &audit(t.id, "template.create"), None)
            .await
            .unwrap();
        row.name = Some("Renamed".into());
        let saved = store
            .save_template(&row, created, &audit(t.id, "template.update"), None)
            .await
            .unwrap();
        assert!(saved > created);
        row.name = Some("Lost update".into());
        let err = store
            .save_template(&row, created, &audit(t.id, "template.update"), None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Stale("template")), "{err:?}");
        let stored = store.get_template(t.id, row.id).await.unwrap().unwrap();
        assert_eq!(stored.name.as_deref(), Some("Renamed"));
        assert_eq!(stored.revision, saved);
        assert_eq!(
            audit_actions(&*store, t.id).await,
            ["template.update", "template.create", "tenant.create"]
        );
    })
    .await;
}

#[tokio::test]
async fn a_taken_idempotency_key_is_reported_and_stores_nothing() {
    on_both_backends(|store| async move {
        let t = new_tenant(&*store).await;
        let key = idempotency(t.id, "key-1");
        store
            .create_template(
                &template(t.id, "invoice", 1),
                &audit(t.id, "template.create"),
                Some(&key),
            )
            .await
            .unwrap();
        let second = template(t.id, "invoice", 2);
        let err = store
            .create_template(&second, &audit(t.id, "template.create"), Some(&key))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::IdempotencyKeyTaken), "{err:?}");
        assert!(store.get_template(t.id, second.id).await.unwrap().is_none());
        let found = store
            .find_idempotency(t.id, "key-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.status, 201);
        assert_eq!(found.response.0, serde_json::json!({"ok": true}));

        // The same key on feedback, and in a batch, where it skips the item instead.
        let e = evaluation(t.id);
        let outcomes = store
            .commit_evaluations(&[
                write(e.clone(), None),
                write(evaluation(t.id), Some(key.clone())),
            ])
            .await
            .unwrap();
        assert!(matches!(outcomes[0], WriteOutcome::Stored { .. }));
        assert!(matches!(outcomes[1], WriteOutcome::Duplicate));
        let err = store
            .apply_feedback(&FeedbackWrite {
                idempotency: Some(&key),
                ..FeedbackWrite::verdict(
                    t.id,
                    e.id,
                    None,
                    "correct",
                    &serde_json::json!({}),
                    now(),
                    FOLLOW,
                )
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::IdempotencyKeyTaken), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn a_commit_renders_the_change_points_it_confirms_into_the_stored_answer() {
    on_both_backends(|store| async move {
        let t = new_tenant(&*store).await;
        let tv = template(t.id, "invoice", 1);
        store
            .create_template(&tv, &audit(t.id, "template.create"), None)
            .await
            .unwrap();
        let observed = |similarity: f64, key: Option<IdempotencyRecord>| {
            let mut e = evaluation(t.id);
            e.template_id = Some("invoice".into());
            e.template_version_id = Some(tv.id);
            let mut w = write(e, key);
            w.observation = Some(DriftObservation {
                similarity,
                drift: 1.0 - similarity,
                extractor_confidence: 0.9,
            });
            w
        };
        // A steady baseline (in several commits), then a lasting drop in one batch.
        for _ in 0..4 {
            let steady: Vec<EvaluationWrite> = (0..10)
                .map(|i| observed(0.95 + f64::from(i % 3) * 0.01, None))
                .collect();
            store.commit_evaluations(&steady).await.unwrap();
        }
        let key = idempotency(t.id, "shifted-20");
        let shifted: Vec<EvaluationWrite> = (0..20)
            .map(|i| observed(0.55, (i == 19).then(|| key.clone())))
            .collect();
        let ids: Vec<Uuid> = shifted.iter().map(|w| w.evaluation.id).collect();
        let outcomes = store.commit_evaluations(&shifted).await.unwrap();
        let alerts: Vec<u64> = outcomes
            .iter()
            .map(|o| match o {
                WriteOutcome::Stored { answer, .. } => answer["alerts"].as_u64().unwrap(),
                other => panic!("nothing here is refused: {other:?}"),
            })
            .collect();
        assert!(
            alerts.iter().sum::<u64>() >= 1,
            "no change point in {alerts:?}"
        );
        let first = alerts.iter().position(|&n| n > 0).unwrap();
        let WriteOutcome::Stored { answer, .. } = &outcomes[first] else {
            unreachable!()
        };
        let stored = store
            .get_evaluation(t.id, ids[first])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            &stored.response.0, answer,
            "the stored answer is the one rendered"
        );
        let points = store.change_points(t.id, tv.id).await.unwrap();
        assert_eq!(points.len() as u64, alerts.iter().sum::<u64>());
        assert_eq!(points[0].evaluation_id, ids[first]);
        // The key's answer is the rendered one too, not what the record held.
        let WriteOutcome::Stored { answer: last, .. } = &outcomes[19] else {
            unreachable!()
        };
        let found = store
            .find_idempotency(t.id, "shifted-20")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&found.response.0, last);
        let after = store.get_template(t.id, tv.id).await.unwrap().unwrap();
        assert_eq!(after.evaluation_count, 60);
    })
    .await;
}

#[tokio::test]
async fn feedback_on_a_changed_evaluation_is_stale() {
    on_both_backends(|store| async move {
        let t = new_tenant(&*store).await;
        let e = evaluation(t.id);
        store
            .commit_evaluations(&[write(e.clone(), None)])
            .await
            .unwrap();
        let stored = store.get_evaluation(t.id, e.id).await.unwrap().unwrap();
        assert_eq!(stored.decided.request.0, e.request.0);
        assert_eq!(stored.decided.created_at, e.created_at);
        assert_eq!(
            stored.response.0,
            serde_json::json!({"decision": "NO_MATCH", "alerts": 0})
        );
        assert!(stored.feedback.is_none(), "no feedback is SQL NULL");
        let give = |previous: Option<&'static str>| {
            let store = store.clone();
            async move {
                store
                    .apply_feedback(&FeedbackWrite::verdict(
                        t.id,
                        e.id,
                        previous,
                        "rejected",
                        &serde_json::json!({"note": "wrong"}),
                        now(),
                        FOLLOW,
                    ))
                    .await
            }
        };
        give(None).await.unwrap();
        let err = give(None).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Stale("evaluation feedback")),
            "{err:?}"
        );
        let stored = store.get_evaluation(t.id, e.id).await.unwrap().unwrap();
        assert_eq!(stored.feedback_outcome.as_deref(), Some("rejected"));
    })
    .await;
}

#[tokio::test]
async fn an_audited_change_commits_with_its_audit_row_or_not_at_all() {
    on_both_backends(|store| async move {
        let t = new_tenant(&*store).await;
        assert_eq!(audit_actions(&*store, t.id).await, ["tenant.create"]);

        // The audit row cannot be written (its tenant does not exist): the tenant it
        // describes must not be stored either.
        let orphan = tenant();
        let err = store
            .create_tenant(&orphan, &audit(Uuid::new_v4(), "tenant.create"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Other(_)), "{err:?}");
        assert!(store.get_tenant(orphan.id).await.unwrap().is_none());

        // A duplicate is reported as such, with no audit row.
        let mut same_slug = tenant();
        same_slug.slug = t.slug.clone();
        let err = store
            .create_tenant(&same_slug, &audit(t.id, "tenant.create"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Duplicate("a tenant with this slug exists")),
            "{err:?}"
        );
        let user = |email: &str| User {
            id: Uuid::new_v4(),
            tenant_id: t.id,
            email: email.into(),
            password_hash: "hash".into(),
            role: "viewer".into(),
            failed_logins: 0,
            locked_until: None,
            tokens_valid_after: now(),
            created_at: now(),
        };
        store
            .create_user(&user("a@example.com"), &audit(t.id, "user.create"))
            .await
            .unwrap();
        let err = store
            .create_user(&user("a@example.com"), &audit(t.id, "user.create"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Duplicate("a user with this email exists")),
            "{err:?}"
        );
        assert_eq!(
            audit_actions(&*store, t.id).await,
            ["user.create", "tenant.create"]
        );
        let entries = store
            .list_audit(
                t.id,
                &AuditFilter {
                    limit: 1,
                    ..AuditFilter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(entries[0].details.0, serde_json::json!({"n": 1}));
    })
    .await;
}

#[tokio::test]
async fn template_revisions_answers_for_every_tenant_at_once() {
    on_both_backends(|store| async move {
        let a = new_tenant(&*store).await;
        let b = new_tenant(&*store).await;
        let idle = new_tenant(&*store).await;
        for (tenant, versions) in [(&a, 1), (&b, 3)] {
            for v in 1..=versions {
                store
                    .create_template(
                        &template(tenant.id, "invoice", v),
                        &audit(tenant.id, "template.create"),
                        None,
                    )
                    .await
                    .unwrap();
            }
        }
        // More ids than one query takes, most of them unknown: unknown tenants are left out.
        let mut ids: Vec<Uuid> = (0..REVISIONS_CHUNK * 2).map(|_| Uuid::new_v4()).collect();
        ids.insert(3, a.id);
        ids.insert(REVISIONS_CHUNK + 7, b.id);
        ids.push(idle.id);
        let mut revisions = store.template_revisions(&ids).await.unwrap();
        revisions.sort_by_key(|(_, r)| *r);
        assert_eq!(revisions, [(idle.id, 0), (a.id, 1), (b.id, 3)]);
        for (id, revision) in revisions {
            assert_eq!(store.template_revision(id).await.unwrap(), revision);
        }
        assert!(store.template_revisions(&[]).await.unwrap().is_empty());
    })
    .await;
}

/// A store of one backend opened directly (the tests above see only `dyn Store`), for
/// statements no trait method runs; and what to remove afterwards.
async fn raw_store(postgres: bool) -> (super::SqlStore, Cleanup) {
    if postgres {
        let db = self::postgres().await;
        let Cleanup::Postgres(name) = &db.cleanup else {
            unreachable!()
        };
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        db.store.close().await;
        let config = config(DatabaseConfig::Postgres { url: url.clone() });
        let raw = super::SqlStore {
            db: super::backend::connect_postgres(&url, &config).unwrap(),
        };
        (raw, Cleanup::Postgres(name.clone()))
    } else {
        let dir = std::env::temp_dir().join(format!("preflight-store-test-{}", Uuid::new_v4()));
        let config = config(DatabaseConfig::Sqlite {
            path: dir.join("preflight.db"),
        });
        let raw = super::SqlStore {
            db: super::backend::connect_sqlite(&dir.join("preflight.db"), &config)
                .await
                .unwrap(),
        };
        raw.migrate().await.unwrap();
        (raw, Cleanup::Dir(dir))
    }
}

/// The statements that roll up existing rows on upgrade: 0008's usage counters, 0011's
/// hour and day rollups and 0013's month rows.
fn backfill_statements(backend: super::Backend) -> Vec<String> {
    let (usage, rollups, months) = match backend {
        super::Backend::Postgres => (
            include_str!("../../migrations/postgres/0008_usage_and_analytics.sql"),
            include_str!("../../migrations/postgres/0011_two_grain_rollups.sql"),
            include_str!("../../migrations/postgres/0013_month_rollups.sql"),
        ),
        super::Backend::Sqlite => (
            include_str!("../../migrations/sqlite/0008_usage_and_analytics.sql"),
            include_str!("../../migrations/sqlite/0011_two_grain_rollups.sql"),
            include_str!("../../migrations/sqlite/0013_month_rollups.sql"),
        ),
    };
    let usage = &usage[usage
        .find("INSERT INTO usage_counters")
        .expect("backfill in 0008")..];
    let usage = &usage[..=usage.find(';').expect("one statement")];
    let rollups = &rollups[rollups.find("-- Backfill:").expect("backfill in 0011")..];
    let months = &months[months.find("-- Backfill:").expect("backfill in 0013")..];
    [usage, rollups, months]
        .iter()
        .flat_map(|sql| sql.split(';'))
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[tokio::test]
async fn the_upgrade_rolls_up_existing_evaluations_as_commits_do() {
    use super::sql::Query;
    use crate::domain::analytics::{feedback_delta, rollup_entry};
    use crate::domain::evaluations::FeedbackOutcome;
    for postgres in [false, true] {
        let (raw, cleanup) = raw_store(postgres).await;
        let store: &dyn Store = &raw;
        let t = new_tenant(store).await;
        let tv = Uuid::now_v7();
        let decisions = ["MATCH", "REVIEW", "NEW", "REJECT", "MATCH", "MATCH"];
        let mut writes = Vec::new();
        let mut decided = Vec::new();
        for (i, d) in decisions.iter().enumerate() {
            let mut e = evaluation(t.id);
            e.decision = d.to_string();
            e.drift_score = 0.013 * i as f64 + 0.29;
            e.reliability_score = 1.0 - 0.07 * i as f64;
            e.match_confidence = 0.5 + 0.05 * i as f64;
            if matches!(*d, "MATCH" | "REVIEW") {
                e.template_id = Some("inv".into());
                e.template_version = Some(1);
                e.template_version_id = Some(tv);
            }
            let cost = (i % 2 == 0).then_some(0.25 * i as f64);
            let version = if i < 3 { "2024-06" } else { "2025-01" };
            e.request = Json(serde_json::json!({"extractor_metadata": {
                "vendor": "vendor", "model": "model", "version": version,
                "confidence": 0.9, "latency_ms": 100.0 + i as f64, "cost_usd": cost}}));
            let metadata = preflight_engine::ExtractorMetadata {
                vendor: "vendor".into(),
                model: "model".into(),
                version: version.into(),
                confidence: 0.9,
                latency_ms: 100.0 + i as f64,
                cost_usd: cost,
            };
            let mut w = write(e.clone(), None);
            w.extractor.version = version.into();
            w.review = crate::domain::review::item_for(
                &e,
                preflight_engine::Decision::parse(d).unwrap(),
                0.0,
            );
            w.rollup = rollup_entry(&e, &w.extractor, &metadata);
            writes.push(w);
            decided.push(e);
        }
        store.commit_evaluations(&writes).await.unwrap();
        for (e, outcome) in decided.iter().zip([
            Some(FeedbackOutcome::Correct),
            Some(FeedbackOutcome::Rejected),
            None,
            None,
            Some(FeedbackOutcome::Corrected),
            None,
        ]) {
            let Some(outcome) = outcome else { continue };
            let delta = feedback_delta(e, None, outcome);
            store
                .apply_feedback(&FeedbackWrite {
                    calibration: delta.as_ref(),
                    ..FeedbackWrite::verdict(
                        t.id,
                        e.id,
                        None,
                        outcome.as_str(),
                        &serde_json::json!({}),
                        now(),
                        FOLLOW,
                    )
                })
                .await
                .unwrap();
        }
        let spans = |mut keys: Vec<&'static str>| {
            keys.extend(["first_hour", "last_hour"]);
            keys.extend(super::analytics::TOTAL_COLUMNS);
            keys
        };
        let tables = [
            ("usage_counters", "tenant_id, period", vec!["used"]),
            (
                "extractor_rollups",
                "tenant_id, grain, bucket_start, extractor_vendor, extractor_model, \
                 extractor_version",
                spans(vec![]),
            ),
            (
                "template_rollups",
                "tenant_id, grain, bucket_start, template_id, template_version",
                spans(vec!["template_version_id"]),
            ),
            (
                "score_histograms",
                "tenant_id, grain, bucket_start, metric, bin",
                vec!["n"],
            ),
            (
                "calibration_rollups",
                "tenant_id, grain, bucket_start, decision, reliability_bin",
                vec![
                    "n",
                    "correct",
                    "corrected",
                    "rejected",
                    "sum_reliability",
                    "sum_reliability_sq",
                    "sum_reliability_correct",
                ],
            ),
            (
                "review_rollups",
                "tenant_id, grain, bucket_start",
                vec![
                    "resolved",
                    "sum_resolution_seconds",
                    "max_resolution_seconds",
                ],
            ),
        ];
        for (table, _, _) in &tables {
            raw.db
                .execute(Query::new(format!(
                    "CREATE TABLE {table}_seen AS SELECT * FROM {table}"
                )))
                .await
                .unwrap();
            raw.db
                .execute(Query::new(format!("DELETE FROM {table}")))
                .await
                .unwrap();
        }
        for statement in backfill_statements(raw.db.backend()) {
            raw.db
                .execute(Query::new(statement.clone()))
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        for (table, key, values) in &tables {
            let same = key
                .split(',')
                .map(str::trim)
                .chain(values.iter().copied())
                .map(|c| {
                    if c.starts_with("sum_") {
                        format!("ABS(a.{c} - b.{c}) < 1e-9")
                    } else {
                        format!("(a.{c} = b.{c} OR (a.{c} IS NULL AND b.{c} IS NULL))")
                    }
                })
                .collect::<Vec<_>>()
                .join(" AND ");
            let (seen,): (i64,) = raw
                .db
                .fetch_one(Query::new(format!("SELECT COUNT(*) FROM {table}_seen")))
                .await
                .unwrap();
            let (rebuilt,): (i64,) = raw
                .db
                .fetch_one(Query::new(format!("SELECT COUNT(*) FROM {table}")))
                .await
                .unwrap();
            let (matched,): (i64,) = raw
                .db
                .fetch_one(Query::new(format!(
                    "SELECT COUNT(*) FROM {table}_seen a WHERE EXISTS \
                     (SELECT 1 FROM {table} b WHERE {same})"
                )))
                .await
                .unwrap();
            assert!(seen > 0, "{table}: the commits wrote rows");
            assert_eq!(
                (rebuilt, matched),
                (seen, seen),
                "{table} on {}",
                raw.db.backend().name()
            );
        }
        raw.close().await;
        TestDb {
            store: self::sqlite().await.store,
            cleanup,
        }
        .remove()
        .await;
    }
}

#[tokio::test]
async fn ranges_sum_month_day_and_hour_rows_to_what_the_evaluations_hold() {
    use super::analytics::{BucketRange, DAY, HOUR};
    use crate::domain::analytics::rollup_entry;
    // Evaluations over three UTC days (and a day away), at hours that put some in every
    // kind of edge: a range's partial first and last day, a time zone's day boundary; and
    // in the following months (day0 is 2026-05-28): July's first and last days, mid-August.
    let day0 = 1_780_000_000_i64.div_euclid(DAY) * DAY;
    let hours = [
        5,
        23,
        24,
        36,
        36,
        47,
        51,
        73,
        96 + 20,
        35 * 24 + 3,
        35 * 24 + 3,
        64 * 24 + 10,
        80 * 24 + 1,
    ];
    for postgres in [false, true] {
        let (raw, cleanup) = raw_store(postgres).await;
        let store: &dyn Store = &raw;
        let t = new_tenant(store).await;
        let mut seen = Vec::new();
        let mut writes = Vec::new();
        for (i, h) in hours.iter().enumerate() {
            let mut e = evaluation(t.id);
            e.created_at = DateTime::from_timestamp(day0 + h * HOUR + 60 * i as i64, 0).unwrap();
            e.decision = if i % 3 == 0 { "NEW" } else { "MATCH" }.into();
            e.drift_score = 0.05 * i as f64;
            e.reliability_score = 1.0 - 0.1 * i as f64;
            if i % 3 != 0 {
                e.template_id = Some(format!("tpl-{}", i % 2));
                e.template_version = Some(1);
                e.template_version_id = Some(Uuid::from_u128(i as u128 % 2 + 1));
            }
            e.extractor_vendor = if i % 2 == 0 { "aws" } else { "azure" }.into();
            let mut w = write(e.clone(), None);
            let metadata = preflight_engine::ExtractorMetadata {
                vendor: e.extractor_vendor.clone(),
                model: "model".into(),
                version: "1".into(),
                confidence: 0.9,
                latency_ms: 100.0,
                cost_usd: None,
            };
            w.rollup = rollup_entry(&e, &w.extractor, &metadata);
            seen.push(e);
            writes.push(w);
        }
        // Two commits, so upserts merge into existing hour and day rows.
        let rest = writes.split_off(4);
        store.commit_evaluations(&writes).await.unwrap();
        store.commit_evaluations(&rest).await.unwrap();

        let ranges = [
            // Whole days in UTC, by day: day rows only.
            BucketRange {
                from: day0,
                to: day0 + 3 * DAY,
                size: DAY,
                offset: 0,
            },
            // Hour edges around whole days, summed as one bucket.
            BucketRange::whole(day0 + 6 * HOUR, day0 + 2 * DAY + 4 * HOUR),
            // Days of UTC+05:00: no UTC day fits in a bucket, hour rows only.
            BucketRange {
                from: day0 - 5 * HOUR,
                to: day0 + 3 * DAY - 5 * HOUR,
                size: DAY,
                offset: 5 * HOUR,
            },
            // Hour buckets over whole days: hour rows only.
            BucketRange {
                from: day0,
                to: day0 + 2 * DAY,
                size: HOUR,
                offset: 0,
            },
            // Less than a day: hour rows only.
            BucketRange::whole(day0 + 20 * HOUR, day0 + 30 * HOUR),
            // Summed as one bucket over June and July whole: month rows for them, day rows
            // for the days either side, hour rows at the edges.
            BucketRange::whole(day0 + 6 * HOUR, day0 + 90 * DAY + 4 * HOUR),
            // The same months by day: day and hour rows only.
            BucketRange {
                from: day0,
                to: day0 + 90 * DAY,
                size: DAY,
                offset: 0,
            },
        ];
        for r in ranges {
            let inside: Vec<_> = seen
                .iter()
                .filter(|e| (r.from..r.to).contains(&e.created_at.timestamp()))
                .collect();
            let bucket = |e: &DecidedEvaluation| {
                (e.created_at.timestamp().div_euclid(HOUR) * HOUR + r.offset).div_euclid(r.size)
                    * r.size
                    - r.offset
            };
            let mut expected: std::collections::BTreeMap<i64, (i64, f64)> = Default::default();
            for e in &inside {
                let b = expected.entry(bucket(e)).or_default();
                b.0 += 1;
                b.1 += e.drift_score;
            }
            let got: Vec<(i64, i64, f64)> = store
                .totals_by_bucket(t.id, r)
                .await
                .unwrap()
                .into_iter()
                .map(|b| (b.bucket, b.totals.evaluations, b.totals.sum_drift))
                .collect();
            assert_eq!(got.len(), expected.len(), "{r:?}: {got:?} vs {expected:?}");
            for ((b, n, drift), (eb, (en, edrift))) in got.iter().zip(&expected) {
                assert_eq!((b, n), (eb, en), "{r:?}");
                assert!((drift - edrift).abs() < 1e-9, "{r:?}");
            }
            let mut bins: std::collections::BTreeMap<(i64, i16), i64> = Default::default();
            for (b, metric, _, n) in store.histogram_bins(t.id, r).await.unwrap() {
                *bins.entry((b, metric)).or_default() += n;
            }
            for (b, (n, _)) in &expected {
                assert_eq!(bins.get(&(*b, 0)), Some(n), "{r:?} drift bins of {b}");
                assert_eq!(bins.get(&(*b, 1)), Some(n), "{r:?} reliability bins of {b}");
            }
            assert_eq!(bins.len(), expected.len() * 2, "{r:?}");

            let hour = |e: &&DecidedEvaluation| e.created_at.timestamp().div_euclid(HOUR) * HOUR;
            for x in store.totals_by_extractor(t.id, r).await.unwrap() {
                let mine: Vec<_> = inside
                    .iter()
                    .filter(|e| e.extractor_vendor == x.extractor_vendor)
                    .collect();
                assert_eq!(x.totals.evaluations, mine.len() as i64, "{r:?}");
                assert_eq!(
                    x.first_bucket,
                    mine.iter().map(|e| hour(e)).min().unwrap(),
                    "{r:?}"
                );
                assert_eq!(
                    x.last_bucket,
                    mine.iter().map(|e| hour(e)).max().unwrap(),
                    "{r:?}"
                );
            }
            let templates = store.totals_by_template(t.id, r).await.unwrap();
            for x in &templates {
                let mine: Vec<_> = inside
                    .iter()
                    .filter(|e| e.template_id.as_deref() == Some(x.template_id.as_str()))
                    .collect();
                assert_eq!(x.totals.evaluations, mine.len() as i64, "{r:?}");
                assert_eq!(x.template_version_id, mine[0].template_version_id);
                assert_eq!(
                    x.first_bucket,
                    mine.iter().map(|e| hour(e)).min().unwrap(),
                    "{r:?}"
                );
                assert_eq!(
                    x.last_bucket,
                    mine.iter().map(|e| hour(e)).max().unwrap(),
                    "{r:?}"
                );
            }
            let with_template = inside.iter().filter(|e| e.template_id.is_some()).count();
            assert_eq!(
                templates.iter().map(|x| x.totals.evaluations).sum::<i64>(),
                with_template as i64,
                "{r:?}"
            );
        }
        raw.close().await;
        TestDb {
            store: self::sqlite().await.store,
            cleanup,
        }
        .remove()
        .await;
    }
}
