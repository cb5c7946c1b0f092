//! Template versions: what a valid version is, its status lifecycle, versioning and
//! optimistic edits.
//!
//! Every rule about templates lives here; the HTTP handlers only parse and map. A change is
//! committed together with its audit event (and, when the client sent one, its
//! Idempotency-Key record), then this instance's template index is brought up to date at
//! once (other instances follow within the registry's sync interval). Metadata edits are
//! optimistic: a concurrent change (another edit, or feedback moving the outcome statistics)
//! makes the save fail as stale, and the edit is re-applied to a fresh read, so no update is
//! lost.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use preflight_engine::{
    CorrectionRule, DriftDetectorState, ExtractorIdentity, OutcomeStats, StructuralFeatures,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::audit::{AuditAction, AuditExt};
use super::idempotency::IdempotencyKey;
use crate::error::{ApiError, FieldError, Violations};
use crate::registry::build_engine_template;
use crate::state::AppState;
use crate::storage::evaluations::{IdempotencyRecord, TemplateFilter, TemplateRow};
use crate::storage::identity::NewAuditEvent;
use crate::storage::templates::TEMPLATE_VERSION_EXISTS;
use crate::storage::StoreError;

/// Active template versions one tenant may hold; bounds the in-memory index per tenant.
pub const MAX_ACTIVE_TEMPLATES: i64 = 50_000;
/// Exemplars one version may learn from; more adds cost without teaching much more.
pub const MAX_EXEMPLARS: usize = 50;
const MAX_TEMPLATE_ID_LEN: usize = 200;
const MAX_NAME_LEN: usize = 200;
const MAX_DESCRIPTION_LEN: usize = 2_000;
const MAX_CORRECTION_RULES: usize = 100;
const DEFAULT_BASELINE_RELIABILITY: f64 = 0.9;
/// Re-reads after an optimistic conflict before giving up with a 409.
const SAVE_RETRIES: usize = 3;

/// Where a template version is in its lifecycle; only `Active` versions take part in matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TemplateStatus {
    Draft,
    Active,
    Deprecated,
    Archived,
}

impl TemplateStatus {
    pub const ALL: [TemplateStatus; 4] = [
        TemplateStatus::Draft,
        TemplateStatus::Active,
        TemplateStatus::Deprecated,
        TemplateStatus::Archived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TemplateStatus::Draft => "draft",
            TemplateStatus::Active => "active",
            TemplateStatus::Deprecated => "deprecated",
            TemplateStatus::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Option<TemplateStatus> {
        TemplateStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The lifecycle: a draft is published or dropped, an active version is retired, a
    /// retired one comes back or is archived for good.
    pub fn can_become(self, to: TemplateStatus) -> bool {
        use TemplateStatus::*;
        matches!(
            (self, to),
            (Draft, Active)
                | (Draft, Archived)
                | (Active, Deprecated)
                | (Deprecated, Active)
                | (Deprecated, Archived)
        )
    }
}

impl fmt::Display for TemplateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status stored in a row; rows are only ever written through this module.
fn status_of(row: &TemplateRow) -> TemplateStatus {
    TemplateStatus::parse(&row.status).unwrap_or(TemplateStatus::Archived)
}

/// How a client names a template version: its own id, or a `template_id` (the newest
/// version, or the one asked for).
#[derive(Debug, Clone)]
pub enum TemplateRef {
    /// A version id, which may also be a `template_id` that happens to look like a UUID.
    Id(Uuid, String),
    Name(String),
}

impl TemplateRef {
    /// The reference as the client wrote it.
    pub fn as_str(&self) -> &str {
        match self {
            TemplateRef::Id(_, raw) | TemplateRef::Name(raw) => raw,
        }
    }

    pub fn parse(raw: &str) -> TemplateRef {
        match Uuid::parse_str(raw) {
            Ok(id) => TemplateRef::Id(id, raw.to_string()),
            Err(_) => TemplateRef::Name(raw.to_string()),
        }
    }
}

/// One template version as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateView {
    /// The version's own id (`template_version_id` in evaluations).
    pub id: Uuid,
    pub template_id: String,
    pub version: i64,
    pub name: Option<String>,
    pub description: Option<String>,
    /// `draft`, `active`, `deprecated` or `archived`; only `active` versions match.
    pub status: TemplateStatus,
    pub baseline_reliability: f64,
    #[schema(value_type = Vec<Object>)]
    pub correction_rules: Vec<CorrectionRule>,
    pub exemplar_count: usize,
    /// Evaluations matched to this version so far.
    pub evaluation_count: i64,
    /// Feedback counters per extractor, keyed `vendor/model`.
    #[schema(value_type = Object)]
    pub outcome_stats: BTreeMap<String, OutcomeStats>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The extractors (`vendor`, `model`, `version`) this version has seen on confirmed
    /// documents; a matched document from another is REVIEW with `EXTRACTOR_CHANGED`.
    /// Empty until the first matched evaluation (or the `extractor` sent at registration).
    #[schema(value_type = Vec<Object>)]
    pub seen_extractors: Vec<ExtractorIdentity>,
    /// Only with `?include=exemplars`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub exemplars: Option<Vec<StructuralFeatures>>,
}

impl TemplateView {
    pub fn of(row: &TemplateRow, include_exemplars: bool) -> TemplateView {
        TemplateView {
            id: row.id,
            template_id: row.template_id.clone(),
            version: row.version,
            name: row.name.clone(),
            description: row.description.clone(),
            status: status_of(row),
            baseline_reliability: row.baseline_reliability,
            correction_rules: row.correction_rules.0.clone(),
            exemplar_count: row.exemplars.0.len(),
            evaluation_count: row.evaluation_count,
            outcome_stats: row.outcome_stats.0.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            seen_extractors: row.seen_extractors.0.iter().cloned().collect(),
            exemplars: include_exemplars.then(|| row.exemplars.0.clone()),
        }
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("template".into())
}

pub fn valid_template_id(id: &str) -> bool {
    let n = id.chars().count();
    (1..=MAX_TEMPLATE_ID_LEN).contains(&n)
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Finds a version by its id, or by `template_id` (newest, or `version`). Another tenant's
/// template is the same 404 as a missing one: every query carries the tenant.
pub async fn resolve(
    state: &AppState,
    tenant_id: Uuid,
    target: &TemplateRef,
    version: Option<i64>,
) -> Result<TemplateRow, ApiError> {
    let name = match target {
        TemplateRef::Id(uuid, raw) => {
            if let Some(row) = state.store().get_template(tenant_id, *uuid).await? {
                return match version {
                    Some(v) if v != row.version => Err(not_found()),
                    _ => Ok(row),
                };
            }
            // A template_id may itself look like a UUID; fall through to the name lookup.
            raw
        }
        TemplateRef::Name(name) => name,
    };
    if !valid_template_id(name) {
        return Err(not_found());
    }
    state
        .store()
        .find_template(tenant_id, name, version)
        .await?
        .ok_or_else(not_found)
}

/// The tenant's versions in id (creation) order, one page.
pub async fn list(
    state: &AppState,
    tenant_id: Uuid,
    status: Option<TemplateStatus>,
    template_id: Option<String>,
    after_id: Option<Uuid>,
    limit: i64,
) -> Result<Vec<TemplateRow>, ApiError> {
    Ok(state
        .store()
        .list_templates(
            tenant_id,
            &TemplateFilter {
                status: status.map(|s| s.as_str().to_string()),
                template_id,
                after_id,
                limit,
            },
        )
        .await?)
}

/// Longest vendor, model or version name of an extractor identity.
const MAX_EXTRACTOR_FIELD: usize = 256;

/// What an export document says it is, so a reader can refuse what it does not understand.
pub const EXPORT_FORMAT: &str = "preflight-templates";
pub const EXPORT_VERSION: u32 = 1;
/// The most versions one export holds: past it, export by `status` or `template_id`.
pub const MAX_EXPORT_VERSIONS: usize = 5_000;
/// Rows read per query while an export is assembled.
const EXPORT_PAGE: i64 = 500;

/// A snapshot of a tenant's templates with their exemplars, for the offline engine (the
/// Python package's `Engine.from_export`) or a backup.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateExport {
    /// Always `preflight-templates`.
    #[schema(value_type = String)]
    pub format: &'static str,
    /// The export format's version (1).
    pub version: u32,
    /// Every selected version in id (creation) order, each as
    /// `GET /v1/templates/{id}?include=exemplars` returns it.
    pub templates: Vec<TemplateView>,
}

/// The tenant's versions (those of `status`, or of one `template_id`) with their exemplars.
pub async fn export(
    state: &AppState,
    tenant_id: Uuid,
    status: Option<TemplateStatus>,
    template_id: Option<String>,
) -> Result<TemplateExport, ApiError> {
    let mut templates = Vec::new();
    let mut after_id = None;
    loop {
        let rows = list(
            state,
            tenant_id,
            status,
            template_id.clone(),
            after_id,
            EXPORT_PAGE,
        )
        .await?;
        after_id = rows.last().map(|r| r.id);
        templates.extend(rows.iter().map(|r| TemplateView::of(r, true)));
        if templates.len() > MAX_EXPORT_VERSIONS {
            return Err(ApiError::Validation(vec![FieldError {
                field: "status".into(),
                message: format!(
                    "more than {MAX_EXPORT_VERSIONS} versions match; export by status or template_id"
                ),
            }]));
        }
        if (rows.len() as i64) < EXPORT_PAGE {
            break;
        }
    }
    Ok(TemplateExport {
        format: EXPORT_FORMAT,
        version: EXPORT_VERSION,
        templates,
    })
}

/// Checks of the metadata fields shared by every route that sets them.
fn check_metadata(
    v: &mut Violations,
    name: Option<&str>,
    description: Option<&str>,
    correction_rules: Option<&[CorrectionRule]>,
) {
    if let Some(name) = name {
        v.check(
            name.chars().count() <= MAX_NAME_LEN,
            "name",
            "must be at most 200 characters",
        );
    }
    if let Some(d) = description {
        v.check(
            d.chars().count() <= MAX_DESCRIPTION_LEN,
            "description",
            "must be at most 2000 characters",
        );
    }
    if let Some(rules) = correction_rules {
        v.check(
            rules.len() <= MAX_CORRECTION_RULES,
            "correction_rules",
            "must hold at most 100 rules",
        );
    }
}

/// Builds the engine template from a row, which is the real validation of its exemplars,
/// its reliability and its rules. Engine paths (`exemplars[i]`) are renamed to the field
/// the client actually sent.
fn engine_check(v: &mut Violations, row: &TemplateRow, rename: &dyn Fn(&str) -> String) {
    // The client's template_id is checked by our own, stricter rule.
    if let Err(errors) = build_engine_template(row, "validated-separately") {
        for e in errors.into_vec() {
            // An empty name marks a problem already reported under the field the client used.
            let field = rename(&e.field);
            if !field.is_empty() {
                v.add(field, e.message);
            }
        }
    }
}

/// Where a new version's layout comes from: what the client sent, or a stored evaluation
/// (whose layout problems are then reported against the evaluation, in one entry).
pub enum LayoutSource {
    /// `structural_features` (one exemplar) and/or `exemplars` (a list), as sent.
    Sent {
        one: Option<StructuralFeatures>,
        many: Option<Vec<StructuralFeatures>>,
    },
    Evaluation {
        id: Uuid,
        decision: String,
        features: StructuralFeatures,
        /// The extractor that produced it, which the new version has then seen.
        extractor: Option<ExtractorIdentity>,
    },
    /// A template suggestion's exemplars (`domain::suggestions`): the layouts of stored
    /// evaluations, whose problems are reported against the suggestion `id`.
    Suggestion {
        id: String,
        exemplar_evaluation_ids: Vec<Uuid>,
        exemplars: Vec<StructuralFeatures>,
        /// The extractor of every exemplar, when they share one.
        extractor: Option<ExtractorIdentity>,
    },
}

/// What a client asked to create, from either creation route.
pub struct NewVersion {
    pub template_id: String,
    pub version: Option<i64>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub baseline_reliability: Option<f64>,
    pub correction_rules: Option<Vec<CorrectionRule>>,
    /// `active` (default) or `draft`, as sent.
    pub status: Option<String>,
    /// The extractor that produced the exemplars, if the client says: the version has
    /// seen it (else the first matched evaluation's extractor is the first it sees).
    pub extractor: Option<ExtractorIdentity>,
}

/// A new version that passed every check.
struct ValidVersion {
    template_id: String,
    version: Option<i64>,
    name: Option<String>,
    description: Option<String>,
    exemplars: Vec<StructuralFeatures>,
    baseline_reliability: f64,
    correction_rules: Vec<CorrectionRule>,
    status: TemplateStatus,
    seen_extractors: BTreeSet<ExtractorIdentity>,
}

impl ValidVersion {
    fn row(&self, tenant_id: Uuid, version: i64) -> TemplateRow {
        let now = Utc::now();
        TemplateRow {
            id: Uuid::now_v7(),
            tenant_id,
            template_id: self.template_id.clone(),
            version,
            name: self.name.clone(),
            description: self.description.clone(),
            status: self.status.as_str().to_string(),
            baseline_reliability: self.baseline_reliability,
            correction_rules: sqlx::types::Json(self.correction_rules.clone()),
            exemplars: sqlx::types::Json(self.exemplars.clone()),
            outcome_stats: sqlx::types::Json(BTreeMap::new()),
            detector_state: sqlx::types::Json(DriftDetectorState::new()),
            seen_extractors: sqlx::types::Json(self.seen_extractors.clone()),
            evaluation_count: 0,
            revision: 0,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Checks a new version and its layout; every problem at once.
fn validate_new(spec: NewVersion, layout: &LayoutSource) -> Result<ValidVersion, ApiError> {
    let mut v = Violations::default();
    // Which field the exemplars came from, for renaming the engine's paths; `None` when the
    // layout problem was already reported (nothing usable was sent).
    let mut sent_as_one = None;
    let exemplars = match layout {
        LayoutSource::Sent { one, many } => match (one, many) {
            (Some(_), Some(_)) => {
                v.add(
                    "exemplars",
                    "send either structural_features or exemplars, not both",
                );
                Vec::new()
            }
            (Some(f), None) => {
                sent_as_one = Some(true);
                vec![f.clone()]
            }
            (None, Some(list)) => {
                v.check(
                    !list.is_empty(),
                    "exemplars",
                    "at least one exemplar layout is required",
                );
                if !list.is_empty() {
                    sent_as_one = Some(false);
                }
                list.clone()
            }
            (None, None) => {
                v.add(
                    "structural_features",
                    "an exemplar layout is required (structural_features or exemplars)",
                );
                Vec::new()
            }
        },
        LayoutSource::Evaluation { features, .. } => vec![features.clone()],
        LayoutSource::Suggestion { exemplars, .. } => exemplars.clone(),
    };
    let status = match spec.status.as_deref() {
        None => TemplateStatus::Active,
        Some(s) => match TemplateStatus::parse(s) {
            Some(s @ (TemplateStatus::Active | TemplateStatus::Draft)) => s,
            _ => {
                v.add("status", "must be active or draft");
                TemplateStatus::Active
            }
        },
    };
    v.check(
        valid_template_id(&spec.template_id),
        "template_id",
        "must be 1 to 200 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'",
    );
    if let Some(version) = spec.version {
        v.check(version >= 1, "version", "must be at least 1");
    }
    check_metadata(
        &mut v,
        spec.name.as_deref(),
        spec.description.as_deref(),
        spec.correction_rules.as_deref(),
    );
    v.check(
        exemplars.len() <= MAX_EXEMPLARS,
        "exemplars",
        "must hold at most 50 exemplar layouts",
    );
    let extractor = match layout {
        LayoutSource::Evaluation { extractor, .. } | LayoutSource::Suggestion { extractor, .. } => {
            extractor.clone()
        }
        LayoutSource::Sent { .. } => spec.extractor.clone(),
    };
    if let Some(e) = &extractor {
        for (name, value) in [
            ("vendor", &e.vendor),
            ("model", &e.model),
            ("version", &e.version),
        ] {
            let n = value.trim().chars().count();
            v.check(
                (1..=MAX_EXTRACTOR_FIELD).contains(&n),
                &format!("extractor.{name}"),
                "must be 1 to 256 characters",
            );
        }
    }
    let valid = ValidVersion {
        template_id: spec.template_id,
        version: spec.version,
        name: spec.name,
        description: spec.description,
        exemplars,
        baseline_reliability: spec
            .baseline_reliability
            .unwrap_or(DEFAULT_BASELINE_RELIABILITY),
        correction_rules: spec.correction_rules.unwrap_or_default(),
        status,
        seen_extractors: extractor.into_iter().collect(),
    };
    let row = valid.row(Uuid::nil(), valid.version.unwrap_or(1));
    match layout {
        LayoutSource::Sent { .. } => engine_check(&mut v, &row, &|field| match sent_as_one {
            None if field == "exemplars" => String::new(),
            Some(true) => field.replacen("exemplars[0]", "structural_features", 1),
            _ => field.to_string(),
        }),
        LayoutSource::Evaluation { .. } | LayoutSource::Suggestion { .. } => {
            // The client did not send the layout, so its problems are reported against
            // the evaluation (or suggestion), in one entry (e.g. a REJECTed, empty
            // extraction).
            let (source, what) = match layout {
                LayoutSource::Suggestion { .. } => ("id", "suggestion"),
                _ => ("evaluation_id", "evaluation"),
            };
            let mut layout = Violations::default();
            engine_check(&mut layout, &row, &|field| field.to_string());
            let (problems, kept): (Vec<FieldError>, Vec<FieldError>) = layout
                .into_errors()
                .into_iter()
                .partition(|e| e.field.starts_with("exemplars"));
            for e in kept {
                v.add(e.field, e.message);
            }
            if !problems.is_empty() {
                let text: Vec<String> = problems
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect();
                v.add(
                    source,
                    format!(
                        "this {what}'s layout cannot be a template: {}",
                        text.join("; ")
                    ),
                );
            }
        }
    }
    v.into_result()?;
    Ok(valid)
}

/// Refuses a new active version past the per-tenant bound. Concurrent creations can pass
/// the check together, so the bound may be exceeded by a handful; it protects memory, not
/// an invariant.
async fn check_active_limit(state: &AppState, tenant_id: Uuid) -> Result<(), ApiError> {
    let active = state
        .store()
        .count_templates(tenant_id, TemplateStatus::Active.as_str())
        .await?;
    if active >= MAX_ACTIVE_TEMPLATES {
        return Err(ApiError::Conflict(format!(
            "this tenant already has {active} active template versions (the limit is \
             {MAX_ACTIVE_TEMPLATES}); deprecate or archive some first"
        )));
    }
    Ok(())
}

/// Brings this instance's index up to date. The change is committed already, so a failure
/// here must not turn into an error: the background sync applies it shortly.
async fn refresh(state: &AppState, tenant_id: Uuid) {
    if let Err(e) = state.templates().refresh(tenant_id).await {
        tracing::warn!(tenant = %tenant_id, error = %e, "template index refresh deferred to the background sync");
    }
}

/// The answer of a creation: the view, or an earlier answer replayed for the same key.
pub enum Created {
    New(Box<TemplateView>),
    Replayed(super::idempotency::Replay),
}

/// Stores a new version (with its idempotency record in the same transaction).
pub async fn create(
    state: &AppState,
    tenant_id: Uuid,
    spec: NewVersion,
    layout: LayoutSource,
    event: NewAuditEvent,
    key: Option<&IdempotencyKey>,
) -> Result<Created, ApiError> {
    let store = state.store().clone();
    create_with(
        state,
        tenant_id,
        spec,
        layout,
        event,
        key,
        |view| serde_json::to_value(view),
        move |row, audit, record| {
            let store = store.clone();
            async move { store.create_template(&row, &audit, record.as_ref()).await }
        },
    )
    .await
}

/// [`create`], with the keyed answer and the write in the caller's hands: `answer` is what
/// an Idempotency-Key stores (from the new version's view), and `write` stores the row
/// with its audit event and idempotency record — with more in the same transaction, for a
/// creation that is part of another change (an accepted suggestion). Validation, the
/// active-template limit, version collisions and the index refresh are this function's.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn create_with<A, W, F>(
    state: &AppState,
    tenant_id: Uuid,
    spec: NewVersion,
    layout: LayoutSource,
    event: NewAuditEvent,
    key: Option<&IdempotencyKey>,
    answer: A,
    write: W,
) -> Result<Created, ApiError>
where
    A: Fn(&TemplateView) -> Result<serde_json::Value, serde_json::Error>,
    W: Fn(TemplateRow, NewAuditEvent, Option<IdempotencyRecord>) -> F,
    F: std::future::Future<Output = Result<i64, StoreError>>,
{
    let spec = validate_new(spec, &layout)?;
    if spec.status == TemplateStatus::Active {
        check_active_limit(state, tenant_id).await?;
    }
    // A defaulted version can collide with a concurrent creation of the same template_id;
    // such a collision is retried with the next number, an explicit one is the client's 409.
    for _attempt in 0..=SAVE_RETRIES {
        let version = match spec.version {
            Some(v) => v,
            None => {
                state
                    .store()
                    .max_template_version(tenant_id, &spec.template_id)
                    .await?
                    .unwrap_or(0)
                    + 1
            }
        };
        let row = spec.row(tenant_id, version);
        let view = TemplateView::of(&row, false);
        let body = answer(&view).map_err(ApiError::internal)?;
        let record = key.map(|k| k.record(201, &body)).transpose()?;
        let mut details = serde_json::json!({
            "template_id": row.template_id,
            "version": row.version,
            "status": row.status,
            "exemplar_count": row.exemplars.0.len(),
        });
        if let Some(d) = details.as_object_mut() {
            match &layout {
                LayoutSource::Evaluation { id, decision, .. } => {
                    d.insert("evaluation_id".into(), serde_json::json!(id));
                    d.insert("evaluation_decision".into(), serde_json::json!(decision));
                }
                LayoutSource::Suggestion {
                    id,
                    exemplar_evaluation_ids,
                    ..
                } => {
                    d.insert("suggestion_id".into(), serde_json::json!(id));
                    d.insert(
                        "exemplar_evaluation_ids".into(),
                        serde_json::json!(exemplar_evaluation_ids),
                    );
                }
                LayoutSource::Sent { .. } => {}
            }
        }
        let audit = event
            .clone()
            .target(format!("template:{}", row.id))
            .details(details);
        match write(row, audit, record).await {
            Ok(_) => {
                refresh(state, tenant_id).await;
                return Ok(Created::New(Box::new(view)));
            }
            Err(StoreError::IdempotencyKeyTaken) => {
                // A concurrent retry of this request claimed the key: answer what it stored.
                let key = key.expect("a key was claimed");
                return match super::idempotency::lookup(state, key).await? {
                    Some(replay) => Ok(Created::Replayed(replay)),
                    None => Err(StoreError::IdempotencyKeyTaken.into()),
                };
            }
            // Another row of the same transaction was taken (e.g. the suggestion being
            // accepted was decided meanwhile): that is the conflict, not the version.
            Err(StoreError::Duplicate(message)) if message != TEMPLATE_VERSION_EXISTS => {
                return Err(ApiError::Conflict(message.to_string()));
            }
            Err(StoreError::Duplicate(message)) => {
                if spec.version.is_none() {
                    continue;
                }
                tracing::debug!(%message, "template version exists");
                return Err(ApiError::Conflict(format!(
                    "template {:?} version {version} exists already",
                    spec.template_id
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(format!(
        "template {:?} is being versioned concurrently; retry",
        spec.template_id
    )))
}

/// The result of applying an edit to a fresh read.
enum Edit {
    /// Nothing to save (e.g. the status is already the one asked for).
    Unchanged,
    /// Save, auditing these details.
    Changed(serde_json::Value),
}

/// Applies `edit` to the current row and saves it if nobody changed it meanwhile; on a
/// stale save the edit is re-applied to a fresh read, up to [`SAVE_RETRIES`] times.
async fn save_edit(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
    event: NewAuditEvent,
    key: Option<&IdempotencyKey>,
    mut edit: impl FnMut(&mut TemplateRow) -> Result<Edit, ApiError>,
) -> Result<TemplateRow, ApiError> {
    for _attempt in 0..=SAVE_RETRIES {
        let mut row = state
            .store()
            .get_template(tenant_id, id)
            .await?
            .ok_or_else(not_found)?;
        let expected = row.revision;
        let details = match edit(&mut row)? {
            Edit::Unchanged => return Ok(row),
            Edit::Changed(details) => details,
        };
        row.updated_at = Utc::now();
        let audit = event
            .clone()
            .target(format!("template:{id}"))
            .details(details);
        // The answer is the saved view, stored with the change in one transaction (only
        // exemplar additions are keyed, and they answer 201).
        let record = key
            .map(|k| k.record(201, &TemplateView::of(&row, false)))
            .transpose()?;
        match state
            .store()
            .save_template(&row, expected, &audit, record.as_ref())
            .await
        {
            Ok(revision) => {
                row.revision = revision;
                refresh(state, tenant_id).await;
                return Ok(row);
            }
            Err(StoreError::IdempotencyKeyTaken) => {
                return Err(ApiError::Conflict(
                    "a request with this Idempotency-Key was completed meanwhile; retry to get its answer".into(),
                ));
            }
            Err(StoreError::Stale(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(
        "the template kept changing concurrently; retry".into(),
    ))
}

/// Metadata changes; the layout itself changes through exemplars or a new version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataEdit {
    pub name: Option<String>,
    pub description: Option<String>,
    pub baseline_reliability: Option<f64>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub correction_rules: Option<Vec<CorrectionRule>>,
}

impl MetadataEdit {
    fn apply(&self, row: &mut TemplateRow) {
        if let Some(n) = &self.name {
            row.name = Some(n.clone());
        }
        if let Some(d) = &self.description {
            row.description = Some(d.clone());
        }
        if let Some(b) = self.baseline_reliability {
            row.baseline_reliability = b;
        }
        if let Some(r) = &self.correction_rules {
            row.correction_rules = sqlx::types::Json(r.clone());
        }
    }

    fn changed_fields(&self) -> Vec<&'static str> {
        [
            ("name", self.name.is_some()),
            ("description", self.description.is_some()),
            ("baseline_reliability", self.baseline_reliability.is_some()),
            ("correction_rules", self.correction_rules.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, present)| present.then_some(f))
        .collect()
    }
}

/// Changes a version's name, description, baseline reliability or correction rules.
pub async fn update_metadata(
    state: &AppState,
    tenant_id: Uuid,
    target: &TemplateRow,
    edit: MetadataEdit,
    event: NewAuditEvent,
) -> Result<TemplateRow, ApiError> {
    let mut v = Violations::default();
    check_metadata(
        &mut v,
        edit.name.as_deref(),
        edit.description.as_deref(),
        edit.correction_rules.as_deref(),
    );
    // Reliability and rules are checked by the engine against the current exemplars.
    let mut candidate = target.clone();
    edit.apply(&mut candidate);
    engine_check(&mut v, &candidate, &|f| f.to_string());
    v.into_result()?;
    let changed = edit.changed_fields();
    save_edit(state, tenant_id, target.id, event, None, |row| {
        if changed.is_empty() {
            return Ok(Edit::Unchanged);
        }
        edit.apply(row);
        Ok(Edit::Changed(serde_json::json!({
            "template_id": row.template_id,
            "version": row.version,
            "fields": changed,
        })))
    })
    .await
}

/// Adds an exemplar so the version learns its natural variation (up to 50 per version).
pub async fn add_exemplar(
    state: &AppState,
    tenant_id: Uuid,
    target: &TemplateRow,
    features: StructuralFeatures,
    event: NewAuditEvent,
    key: Option<&IdempotencyKey>,
) -> Result<TemplateRow, ApiError> {
    save_edit(state, tenant_id, target.id, event, key, |row| {
        if row.exemplars.0.len() >= MAX_EXEMPLARS {
            return Err(ApiError::Conflict(format!(
                "this version holds {MAX_EXEMPLARS} exemplars already; register a new version instead"
            )));
        }
        row.exemplars.0.push(features.clone());
        let added = format!("exemplars[{}]", row.exemplars.0.len() - 1);
        let mut v = Violations::default();
        engine_check(&mut v, row, &|f| f.replacen(&added, "structural_features", 1));
        v.into_result()?;
        Ok(Edit::Changed(serde_json::json!({
            "template_id": row.template_id,
            "version": row.version,
            "exemplar_count": row.exemplars.0.len(),
        })))
    })
    .await
}

/// The audit details of a status change.
fn status_change(row: &mut TemplateRow, to: TemplateStatus) -> Edit {
    let from = status_of(row);
    row.status = to.as_str().to_string();
    Edit::Changed(serde_json::json!({
        "template_id": row.template_id,
        "version": row.version,
        "from": from,
        "to": to,
    }))
}

/// Moves a version through its lifecycle.
pub async fn set_status(
    state: &AppState,
    tenant_id: Uuid,
    target: &TemplateRow,
    to: TemplateStatus,
    event: NewAuditEvent,
) -> Result<TemplateRow, ApiError> {
    if to == TemplateStatus::Active && status_of(target) != TemplateStatus::Active {
        check_active_limit(state, tenant_id).await?;
    }
    save_edit(state, tenant_id, target.id, event, None, |row| {
        let from = status_of(row);
        if from == to {
            return Ok(Edit::Unchanged);
        }
        if !from.can_become(to) {
            return Err(ApiError::Conflict(format!(
                "a template cannot go from {from} to {to}"
            )));
        }
        Ok(status_change(row, to))
    })
    .await
}

/// Deprecates a version: it stops matching, its history and statistics are kept.
pub async fn deprecate(
    state: &AppState,
    tenant_id: Uuid,
    target: &TemplateRow,
    event: NewAuditEvent,
) -> Result<TemplateRow, ApiError> {
    save_edit(state, tenant_id, target.id, event, None, |row| {
        match status_of(row) {
            TemplateStatus::Deprecated => Ok(Edit::Unchanged),
            TemplateStatus::Archived => Err(ApiError::Conflict(
                "an archived template cannot be deprecated".into(),
            )),
            // DELETE retires a draft too, which the status route only allows as `archived`.
            TemplateStatus::Draft | TemplateStatus::Active => {
                Ok(status_change(row, TemplateStatus::Deprecated))
            }
        }
    })
    .await
}

/// The audit action of each template change, so handlers cannot mislabel one.
pub fn action_for_create(layout: &LayoutSource) -> AuditAction {
    match layout {
        LayoutSource::Sent { .. } | LayoutSource::Suggestion { .. } => AuditAction::TemplateCreated,
        LayoutSource::Evaluation { .. } => AuditAction::TemplateCreatedFromEvaluation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_ids_follow_the_documented_alphabet() {
        assert!(valid_template_id("acme-invoice.v2:eu_1"));
        assert!(!valid_template_id(""));
        assert!(!valid_template_id("has space"));
        assert!(!valid_template_id("slash/inside"));
        assert!(valid_template_id(&"a".repeat(200)));
        assert!(!valid_template_id(&"a".repeat(201)));
    }

    #[test]
    fn only_the_documented_transitions_are_allowed() {
        use TemplateStatus::*;
        let allowed = [
            (Draft, Active),
            (Draft, Archived),
            (Active, Deprecated),
            (Deprecated, Active),
            (Deprecated, Archived),
        ];
        for from in TemplateStatus::ALL {
            for to in TemplateStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in TemplateStatus::ALL {
            assert_eq!(TemplateStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(TemplateStatus::parse("Active"), None);
    }
}
