//! Template suggestions: a tenant's NEW evaluations grouped by layout, so that a recurring
//! unknown layout becomes a template in one step.
//!
//! A listing reads the tenant's NEW evaluations of a window and clusters them with the
//! engine's `cluster_layouts` (pure and deterministic; docs/engine.md, *Clustering NEW
//! layouts*). Nothing about a suggestion is stored until an operator decides on it, so a
//! listing always reflects the data. The rules, stated once so the API docs can repeat them:
//!
//! - **Window.** `from_ts`/`to_ts` (RFC 3339, to the nanosecond, or unix seconds), default
//!   the last 30 days, at most 366 days, `from_ts < to_ts`; violations are 400
//!   `INVALID_QUERY`. Within it, the [`MAX_INPUT`] most recent NEW evaluations are
//!   clustered (the answer says whether the cap cut the window), which keeps one call
//!   interactive (reading, validating and clustering a few thousand layouts), and an
//!   older layout that still recurs has members among the recent ones anyway.
//! - **Ids.** A suggestion's id is the engine's cluster key, `cluster_key(leader)`, where
//!   the leader is the cluster's oldest member. Newer evaluations never change it; it
//!   changes when the leader leaves the input (the window's start, or the cap, moves past
//!   it). Accept and dismiss recompute the clusters with the same query parameters as the
//!   listing and answer 409 when the id is no longer a suggestion of that listing but still
//!   names one of its evaluations (list again), 404 when it names nothing of the tenant's.
//! - **Dismissed** suggestions do not come back: the decision is stored with the
//!   representative's layout, and a later cluster is left out when its id is a dismissed
//!   one, or when its representative's layout similarity to a dismissed representative
//!   (registered alone as a template, scored exactly as `evaluate` scores) reaches the
//!   clustering threshold — that is, when it would have joined the dismissed cluster.
//! - **Accepted** suggestions become a template (version 1, through
//!   `templates::create_with`, so validation, the index refresh and the audit are those of
//!   every creation) whose exemplars are the cluster's exemplars; its members are recorded
//!   in the same transaction and left out of later listings (new documents of the layout
//!   MATCH the template and are not NEW any more).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use preflight_engine::{
    cluster_key, cluster_layouts, evaluate, validate, ClusterInput, ClusterParams, ElementType,
    ExtractorIdentity, ExtractorMetadata, LayoutCluster, Policy, StructuralFeatures, Template,
    TemplateIndex, ValidatedDocument,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::audit::AuditExt;
use super::idempotency::IdempotencyKey;
use super::templates::{self, Created, LayoutSource, NewVersion, TemplateView};
use crate::error::{ApiError, FieldError, Violations};
use crate::state::AppState;
use crate::storage::identity::NewAuditEvent;
use crate::storage::suggestions::{SuggestionDecision, SuggestionInput};
use crate::storage::StoreError;

/// The most recent NEW evaluations of the window that one listing clusters.
pub const MAX_INPUT: usize = 5_000;
/// Member ids shown per suggestion (the most recent).
pub const SAMPLE_MEMBERS: usize = 10;
const DAY: i64 = 86_400;
const DEFAULT_WINDOW: i64 = 30 * DAY;
const MAX_WINDOW: i64 = 366 * DAY;
/// `min_size` bounds: a pair is already a pattern; past the input cap nothing qualifies.
const MIN_MIN_SIZE: usize = 2;

/// The query string of every suggestion route: accept and dismiss take the listing's, so
/// they recompute the clusters the client saw.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuggestionQuery {
    /// Start, RFC 3339 or unix seconds; default `to_ts` minus 30 days.
    pub from_ts: Option<String>,
    /// End (exclusive), RFC 3339 or unix seconds; default now.
    pub to_ts: Option<String>,
    /// Smallest cluster to suggest, 2..=5000 (default 3, the engine's `min_cluster_size`).
    // Read as text so a bad value gets this route's own 400 naming the bounds, not the
    // query extractor's generic one; documented as the integer it must be.
    #[param(value_type = Option<u32>, minimum = 2, maximum = 5000)]
    pub min_size: Option<String>,
}

/// A checked query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub min_size: usize,
}

/// An instant as RFC 3339 (to the nanosecond: a window may start exactly at an
/// evaluation's `created_at`) or unix seconds.
fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return DateTime::from_timestamp(secs, 0);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Checks the window and `min_size`; every problem at once (400 `INVALID_QUERY`).
pub fn parse_window(q: &SuggestionQuery, now: DateTime<Utc>) -> Result<Window, ApiError> {
    let mut v = Violations::default();
    let mut instant = |name: &str, raw: &Option<String>| {
        raw.as_deref().and_then(|s| {
            let t = parse_instant(s);
            if t.is_none() {
                v.add(name, "must be an RFC 3339 timestamp or unix seconds");
            }
            t
        })
    };
    let to_raw = instant("to_ts", &q.to_ts);
    let from_raw = instant("from_ts", &q.from_ts);
    let to = to_raw.unwrap_or(now);
    let from = from_raw.unwrap_or(to - chrono::Duration::seconds(DEFAULT_WINDOW));
    if from >= to {
        v.add("from_ts", "must be before to_ts");
    } else if (to - from).num_seconds() > MAX_WINDOW {
        v.add("to_ts", "the window may span at most 366 days");
    }
    let default_size = ClusterParams::default().min_cluster_size;
    let min_size = match q.min_size.as_deref().map(str::trim) {
        None => default_size,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (MIN_MIN_SIZE..=MAX_INPUT).contains(&n) => n,
            _ => {
                v.add("min_size", "must be a whole number from 2 to 5000");
                default_size
            }
        },
    };
    let errors = v.into_errors();
    if !errors.is_empty() {
        return Err(ApiError::InvalidQuery(errors));
    }
    Ok(Window { from, to, min_size })
}

/// A suggestion id as sent: the engine's cluster keys are 64 hexadecimal digits. Anything
/// else is the client's mistake (422), not a missing suggestion.
pub fn parse_id(raw: &str) -> Result<String, ApiError> {
    if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(ApiError::Validation(vec![FieldError {
            field: "id".into(),
            message:
                "must be a suggestion id (64 hexadecimal digits) from GET /v1/template-suggestions"
                    .into(),
        }]))
    }
}

/// Counts and types of a layout: what a person needs to recognize it, and nothing of the
/// document's content (the features hold none; element types are reported by their
/// canonical names only).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LayoutSummary {
    pub layout_fingerprint: String,
    pub page_count: i64,
    pub element_count: i64,
    pub table_count: i64,
    pub text_block_count: i64,
    pub image_count: i64,
    pub column_count: i64,
    pub has_header: bool,
    pub has_footer: bool,
    /// Bounding boxes per canonical element type (`other` for names the engine does not
    /// know).
    pub element_types: BTreeMap<String, usize>,
}

impl LayoutSummary {
    fn of(doc: &ValidatedDocument) -> LayoutSummary {
        let f = doc.features();
        let mut element_types = BTreeMap::new();
        for b in &f.bounding_boxes {
            let name = ElementType::parse(&b.element_type).map_or("other", |t| t.as_str());
            *element_types.entry(name.to_string()).or_default() += 1;
        }
        LayoutSummary {
            layout_fingerprint: doc.layout_fingerprint().to_string(),
            page_count: f.page_count,
            element_count: f.element_count,
            table_count: f.table_count,
            text_block_count: f.text_block_count,
            image_count: f.image_count,
            column_count: f.column_count,
            has_header: f.has_header,
            has_footer: f.has_footer,
            element_types,
        }
    }
}

/// The member a suggestion is shown by.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Representative {
    pub evaluation_id: Uuid,
    pub layout: LayoutSummary,
}

/// One suggested template: a cluster of NEW evaluations that would MATCH each other.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Suggestion {
    /// The cluster key (64 hex digits); stable while the cluster's oldest member is in the
    /// window.
    pub id: String,
    /// Member evaluations.
    pub size: usize,
    /// `created_at` of the oldest and newest member.
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub representative: Representative,
    /// The evaluations whose layouts become the template's exemplars on accept (the
    /// representative first, distinct layout fingerprints).
    pub exemplar_evaluation_ids: Vec<Uuid>,
    /// Mean and lowest layout similarity of the (checked) members to the representative.
    pub cohesion: f64,
    pub min_member_similarity: f64,
    /// Extractor vendors of the members, sorted.
    pub extractor_vendors: Vec<String>,
    /// Up to 10 member ids, newest first.
    pub sample_evaluation_ids: Vec<Uuid>,
}

/// `GET /v1/template-suggestions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuggestionList {
    pub from_ts: DateTime<Utc>,
    pub to_ts: DateTime<Utc>,
    pub min_size: usize,
    /// NEW evaluations clustered (the window's, without accepted suggestions' members, at
    /// most `input_limit`).
    pub evaluations_considered: usize,
    pub input_limit: usize,
    /// Whether the window held more NEW evaluations than `input_limit` (the oldest were
    /// left out).
    pub truncated: bool,
    /// Largest first, then most recently seen.
    pub suggestions: Vec<Suggestion>,
}

/// What was decided about a suggestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SuggestionStatus {
    Accepted,
    Dismissed,
}

impl SuggestionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SuggestionStatus::Accepted => "accepted",
            SuggestionStatus::Dismissed => "dismissed",
        }
    }

    fn parse(s: &str) -> Option<SuggestionStatus> {
        [SuggestionStatus::Accepted, SuggestionStatus::Dismissed]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// A stored decision, as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionView {
    pub id: String,
    pub status: SuggestionStatus,
    pub representative_evaluation_id: Uuid,
    pub layout_fingerprint: String,
    /// Members when decided.
    pub size: i64,
    /// The template an accepted suggestion became.
    pub template_id: Option<String>,
    pub template_version_id: Option<Uuid>,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
}

impl DecisionView {
    fn of(d: &SuggestionDecision) -> DecisionView {
        DecisionView {
            id: d.suggestion_id.clone(),
            // Rows are written only here, with one of the two names.
            status: SuggestionStatus::parse(&d.status).unwrap_or(SuggestionStatus::Dismissed),
            representative_evaluation_id: d.representative_evaluation_id,
            layout_fingerprint: d.layout_fingerprint.clone(),
            size: d.size,
            template_id: d.template_id.clone(),
            template_version_id: d.template_version_id,
            decided_by: d.decided_by.clone(),
            decided_at: d.decided_at,
        }
    }
}

/// One clustered evaluation.
struct Member {
    id: Uuid,
    key: String,
    created_at: DateTime<Utc>,
    vendor: String,
    extractor: ExtractorIdentity,
    doc: ValidatedDocument,
}

/// The stored request's parts clustering needs (it holds more; serde skips the rest).
#[derive(Deserialize)]
struct StoredRequest {
    structural_features: StructuralFeatures,
    extractor_metadata: ExtractorMetadata,
}

/// The clusters of one window, with the members they were computed from.
struct Computed {
    members: Vec<Member>,
    /// Position of each member by its id string.
    by_id: BTreeMap<String, usize>,
    /// Suggestions in listing order, with their engine clusters.
    clusters: Vec<(LayoutCluster, Suggestion)>,
    truncated: bool,
}

impl Computed {
    /// Whether `key` is the cluster key a member of this input would have as a leader: the
    /// id named something of the tenant's that is no longer a suggestion.
    fn names_a_member(&self, key: &str) -> bool {
        self.members.iter().any(|m| m.key == key)
    }

    fn find(&self, key: &str) -> Option<&(LayoutCluster, Suggestion)> {
        self.clusters.iter().find(|(c, _)| c.key == key)
    }

    fn member(&self, id: &str) -> &Member {
        &self.members[self.by_id[id]]
    }
}

fn parse_member(row: SuggestionInput) -> Option<Member> {
    let stored: StoredRequest = match serde_json::from_value(row.request.0) {
        Ok(s) => s,
        Err(e) => {
            // Every stored request was parsed from this shape before it was decided.
            tracing::warn!(evaluation = %row.id, error = %e, "stored request skipped by suggestions");
            return None;
        }
    };
    let doc = validate(&stored.structural_features, &stored.extractor_metadata).ok()?;
    Some(Member {
        id: row.id,
        key: cluster_key(&row.id.to_string()),
        created_at: row.created_at,
        vendor: row.extractor_vendor,
        extractor: ExtractorIdentity::of(&stored.extractor_metadata),
        doc,
    })
}

/// The listing's view of an engine cluster.
fn suggestion_of(
    c: &LayoutCluster,
    members: &[Member],
    by_id: &BTreeMap<String, usize>,
) -> Suggestion {
    let of = |id: &String| &members[by_id[id]];
    let mut first = DateTime::<Utc>::MAX_UTC;
    let mut last = DateTime::<Utc>::MIN_UTC;
    let mut vendors = BTreeSet::new();
    for m in c.members.iter().map(of) {
        first = first.min(m.created_at);
        last = last.max(m.created_at);
        vendors.insert(m.vendor.clone());
    }
    let rep = of(&c.representative);
    Suggestion {
        id: c.key.clone(),
        size: c.members.len(),
        first_seen: first,
        last_seen: last,
        representative: Representative {
            evaluation_id: rep.id,
            layout: LayoutSummary::of(&rep.doc),
        },
        exemplar_evaluation_ids: c.exemplars.iter().map(|e| of(e).id).collect(),
        cohesion: c.cohesion,
        min_member_similarity: c.min_member_similarity,
        extractor_vendors: vendors.into_iter().collect(),
        // Members are sorted by id, and ids by time.
        sample_evaluation_ids: c
            .members
            .iter()
            .rev()
            .take(SAMPLE_MEMBERS)
            .map(|e| of(e).id)
            .collect(),
    }
}

/// The dismissed layouts, each registered alone as a template: a representative is
/// scored against them exactly as `evaluate` scores a document.
fn dismissed_index(decisions: &[SuggestionDecision]) -> TemplateIndex {
    let mut index = TemplateIndex::new();
    for d in decisions
        .iter()
        .filter(|d| d.status == SuggestionStatus::Dismissed.as_str())
    {
        match Template::new(
            &d.suggestion_id,
            1,
            d.suggestion_id.clone(),
            vec![d.representative_features.0.clone()],
            0.9,
            Vec::new(),
        ) {
            Ok(t) => index.insert(t),
            // Stored from a validated document, so it builds; if not, only its key is kept.
            Err(e) => {
                tracing::warn!(suggestion = %d.suggestion_id, error = %e, "dismissed layout does not build")
            }
        }
    }
    index
}

/// Clusters the window's NEW evaluations and leaves out what was decided (pure; runs on a
/// blocking thread).
fn cluster_window(
    window: Window,
    rows: Vec<SuggestionInput>,
    decisions: Vec<SuggestionDecision>,
) -> Computed {
    let truncated = rows.len() > MAX_INPUT;
    let members: Vec<Member> = rows
        .into_iter()
        .take(MAX_INPUT)
        .filter_map(parse_member)
        .collect();
    let ids: Vec<String> = members.iter().map(|m| m.id.to_string()).collect();
    let by_id: BTreeMap<String, usize> = ids.iter().cloned().zip(0..).collect();
    let inputs: Vec<ClusterInput<'_>> = ids
        .iter()
        .zip(&members)
        .map(|(id, m)| ClusterInput {
            id,
            document: &m.doc,
        })
        .collect();
    let params = ClusterParams {
        min_cluster_size: window.min_size,
        ..ClusterParams::default()
    };
    let found = cluster_layouts(&inputs, &params);
    let decided: HashSet<&str> = decisions.iter().map(|d| d.suggestion_id.as_str()).collect();
    let dismissed = dismissed_index(&decisions);
    let policy = Policy::default();
    let mut clusters: Vec<(LayoutCluster, Suggestion)> = found
        .into_iter()
        .filter(|c| !decided.contains(c.key.as_str()))
        .filter(|c| {
            // Would the representative have joined a dismissed cluster? The closest
            // dismissed layout is the one `evaluate` ranks first.
            dismissed.is_empty()
                || evaluate(&dismissed, &members[by_id[&c.representative]].doc, &policy)
                    .closest_template
                    .is_none_or(|t| t.similarity < params.min_similarity)
        })
        .map(|c| {
            let s = suggestion_of(&c, &members, &by_id);
            (c, s)
        })
        .collect();
    clusters.sort_by(|a, b| {
        b.1.size
            .cmp(&a.1.size)
            .then_with(|| b.1.last_seen.cmp(&a.1.last_seen))
            .then_with(|| a.1.id.cmp(&b.1.id))
    });
    Computed {
        members,
        by_id,
        clusters,
        truncated,
    }
}

async fn compute(state: &AppState, tenant_id: Uuid, window: Window) -> Result<Computed, ApiError> {
    let store = state.store();
    // One more than the cap says whether the cap cut the window.
    let rows = store
        .suggestion_inputs(tenant_id, window.from, window.to, MAX_INPUT as i64 + 1)
        .await?;
    let decisions = store.suggestion_decisions(tenant_id).await?;
    // Validating and clustering thousands of layouts is CPU work: off the async workers.
    tokio::task::spawn_blocking(move || cluster_window(window, rows, decisions))
        .await
        .map_err(ApiError::internal)
}

/// The tenant's suggestions in the window.
pub async fn list(
    state: &AppState,
    tenant_id: Uuid,
    q: &SuggestionQuery,
    now: DateTime<Utc>,
) -> Result<SuggestionList, ApiError> {
    let window = parse_window(q, now)?;
    let computed = compute(state, tenant_id, window).await?;
    Ok(SuggestionList {
        from_ts: window.from,
        to_ts: window.to,
        min_size: window.min_size,
        evaluations_considered: computed.members.len(),
        input_limit: MAX_INPUT,
        truncated: computed.truncated,
        suggestions: computed.clusters.into_iter().map(|(_, s)| s).collect(),
    })
}

fn not_found() -> ApiError {
    ApiError::NotFound("template suggestion".into())
}

/// Why `key` is not a current suggestion: 409 when it names one of the listing's
/// evaluations (the clusters changed since), else 404.
fn gone(computed: &Computed, key: &str) -> ApiError {
    if computed.names_a_member(key) {
        ApiError::Conflict(
            "this suggestion is no longer in the listing (new evaluations or a moved window \
             changed its cluster); list the suggestions again and use the new id"
                .into(),
        )
    } else {
        not_found()
    }
}

/// A decision taken earlier, where a new one was asked for.
fn decided_already(d: &SuggestionDecision) -> ApiError {
    match SuggestionStatus::parse(&d.status) {
        Some(SuggestionStatus::Accepted) => ApiError::Conflict(format!(
            "this suggestion was accepted already, as template {:?}",
            d.template_id.as_deref().unwrap_or_default()
        )),
        _ => ApiError::Conflict("this suggestion was dismissed".into()),
    }
}

fn decision_row(
    tenant_id: Uuid,
    computed: &Computed,
    cluster: &LayoutCluster,
    status: SuggestionStatus,
    actor: &str,
    at: DateTime<Utc>,
) -> SuggestionDecision {
    let rep = computed.member(&cluster.representative);
    // PostgreSQL keeps microseconds: the decision answered now is the one read back later.
    let at = DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at);
    SuggestionDecision {
        tenant_id,
        suggestion_id: cluster.key.clone(),
        status: status.as_str().to_string(),
        representative_evaluation_id: rep.id,
        representative_features: sqlx::types::Json(rep.doc.features().clone()),
        layout_fingerprint: rep.doc.layout_fingerprint().to_string(),
        size: cluster.members.len() as i64,
        template_id: None,
        template_version_id: None,
        decided_by: actor.to_string(),
        decided_at: at,
    }
}

/// Dismisses a suggestion; dismissing it again answers the stored decision.
pub async fn dismiss(
    state: &AppState,
    tenant_id: Uuid,
    id: &str,
    q: &SuggestionQuery,
    event: NewAuditEvent,
    now: DateTime<Utc>,
) -> Result<DecisionView, ApiError> {
    let key = parse_id(id)?;
    let window = parse_window(q, now)?;
    let store = state.store();
    if let Some(d) = store.suggestion_decision(tenant_id, &key).await? {
        return match SuggestionStatus::parse(&d.status) {
            Some(SuggestionStatus::Dismissed) => Ok(DecisionView::of(&d)),
            _ => Err(decided_already(&d)),
        };
    }
    let computed = compute(state, tenant_id, window).await?;
    let Some((cluster, suggestion)) = computed.find(&key) else {
        return Err(gone(&computed, &key));
    };
    let decision = decision_row(
        tenant_id,
        &computed,
        cluster,
        SuggestionStatus::Dismissed,
        &event.actor,
        now,
    );
    let audit = event
        .target(format!("template_suggestion:{key}"))
        .details(serde_json::json!({
            "suggestion_id": key,
            "size": suggestion.size,
            "representative_evaluation_id": suggestion.representative.evaluation_id,
            "layout_fingerprint": decision.layout_fingerprint,
        }));
    match store.dismiss_suggestion(&decision, &audit).await {
        Ok(()) => Ok(DecisionView::of(&decision)),
        // Decided concurrently: a concurrent dismissal is this one's answer too.
        Err(StoreError::Duplicate(_)) => match store.suggestion_decision(tenant_id, &key).await? {
            Some(d) if d.status == SuggestionStatus::Dismissed.as_str() => Ok(DecisionView::of(&d)),
            Some(d) => Err(decided_already(&d)),
            None => Err(StoreError::Stale("template suggestion").into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// What the client asks an accepted suggestion's template to be.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    /// The new template's id: 1 to 200 of `A-Z a-z 0-9 . _ : -`; it gets version 1.
    pub template_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
}

/// `POST /v1/template-suggestions/{id}/accept`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub template: TemplateView,
    /// The suggestion as accepted.
    pub suggestion: Suggestion,
    pub decision: DecisionView,
}

/// The result of an acceptance: the answer, or an earlier one replayed for the same key.
pub enum AcceptOutcome {
    New(Box<Accepted>),
    Replayed(super::idempotency::Replay),
}

/// Turns a suggestion into a template version 1 whose exemplars are the cluster's.
#[allow(clippy::too_many_arguments)]
pub async fn accept(
    state: &AppState,
    tenant_id: Uuid,
    id: &str,
    q: &SuggestionQuery,
    req: AcceptRequest,
    template_event: NewAuditEvent,
    event: NewAuditEvent,
    key: Option<&IdempotencyKey>,
    now: DateTime<Utc>,
) -> Result<AcceptOutcome, ApiError> {
    let suggestion_id = parse_id(id)?;
    let window = parse_window(q, now)?;
    let store = state.store();
    if let Some(d) = store.suggestion_decision(tenant_id, &suggestion_id).await? {
        return Err(decided_already(&d));
    }
    let computed = compute(state, tenant_id, window).await?;
    let Some((cluster, suggestion)) = computed.find(&suggestion_id) else {
        return Err(gone(&computed, &suggestion_id));
    };
    let exemplars: Vec<&Member> = cluster
        .exemplars
        .iter()
        .map(|e| computed.member(e))
        .collect();
    // The template has seen the exemplars' extractor when they share one; otherwise the
    // first matched document's is the first it sees, as for any template.
    let extractors: BTreeSet<&ExtractorIdentity> = exemplars.iter().map(|m| &m.extractor).collect();
    let layout = LayoutSource::Suggestion {
        id: suggestion_id.clone(),
        exemplar_evaluation_ids: exemplars.iter().map(|m| m.id).collect(),
        exemplars: exemplars.iter().map(|m| m.doc.features().clone()).collect(),
        extractor: (extractors.len() == 1)
            .then(|| extractors.into_iter().next().cloned())
            .flatten(),
    };
    let spec = NewVersion {
        template_id: req.template_id.clone(),
        version: Some(1),
        name: req.name,
        description: req.description,
        baseline_reliability: None,
        correction_rules: None,
        status: None,
        extractor: None,
    };
    let mut decision = decision_row(
        tenant_id,
        &computed,
        cluster,
        SuggestionStatus::Accepted,
        &template_event.actor,
        now,
    );
    decision.template_id = Some(req.template_id);
    let members: Vec<Uuid> = cluster
        .members
        .iter()
        .map(|m| computed.member(m).id)
        .collect();
    let accepted = |view: &TemplateView| {
        let mut d = decision.clone();
        d.template_version_id = Some(view.id);
        Accepted {
            template: view.clone(),
            suggestion: suggestion.clone(),
            decision: DecisionView::of(&d),
        }
    };
    let event = event.target(format!("template_suggestion:{suggestion_id}"));
    let created = templates::create_with(
        state,
        tenant_id,
        spec,
        layout,
        template_event,
        key,
        |view| serde_json::to_value(accepted(view)),
        |row, template_audit, record| {
            let mut decision = decision.clone();
            decision.template_version_id = Some(row.id);
            let audit = event.clone().details(serde_json::json!({
                "suggestion_id": decision.suggestion_id,
                "size": decision.size,
                "template_id": row.template_id,
                "template_version_id": row.id,
                "exemplar_evaluation_ids": suggestion.exemplar_evaluation_ids,
            }));
            let members = &members;
            async move {
                store
                    .accept_suggestion(
                        &row,
                        &template_audit,
                        &decision,
                        members,
                        &audit,
                        record.as_ref(),
                    )
                    .await
            }
        },
    )
    .await?;
    Ok(match created {
        Created::New(view) => AcceptOutcome::New(Box::new(accepted(view.as_ref()))),
        Created::Replayed(r) => AcceptOutcome::Replayed(r),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn query(from: Option<&str>, to: Option<&str>, min: Option<&str>) -> SuggestionQuery {
        SuggestionQuery {
            from_ts: from.map(Into::into),
            to_ts: to.map(Into::into),
            min_size: min.map(Into::into),
        }
    }

    fn fields(e: ApiError) -> Vec<String> {
        match e {
            ApiError::InvalidQuery(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected InvalidQuery, got {other:?}"),
        }
    }

    #[test]
    fn the_default_window_is_the_last_thirty_days_and_size_three() {
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 10, 34, 5).unwrap();
        let w = parse_window(&SuggestionQuery::default(), now).unwrap();
        assert_eq!(w.to, now);
        assert_eq!(
            w.from,
            Utc.with_ymd_and_hms(2026, 11, 2, 10, 34, 5).unwrap()
        );
        assert_eq!(w.min_size, 3);
    }

    #[test]
    fn bad_windows_and_sizes_name_every_parameter() {
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).unwrap();
        let backwards = query(
            Some("2026-12-02T00:00:00Z"),
            Some("2026-12-01T00:00:00Z"),
            None,
        );
        assert_eq!(
            fields(parse_window(&backwards, now).unwrap_err()),
            ["from_ts"]
        );
        let long = query(
            Some("2025-01-01T00:00:00Z"),
            Some("2026-12-01T00:00:00Z"),
            None,
        );
        assert_eq!(fields(parse_window(&long, now).unwrap_err()), ["to_ts"]);
        let garbage = query(Some("yesterday"), None, Some("1"));
        assert_eq!(
            fields(parse_window(&garbage, now).unwrap_err()),
            ["from_ts", "min_size"]
        );
        for bad in ["x", "-3", "5001", "2.5"] {
            assert_eq!(
                fields(parse_window(&query(None, None, Some(bad)), now).unwrap_err()),
                ["min_size"],
                "{bad}"
            );
        }
        let ok = query(Some("1764633600"), None, Some("2"));
        let w = parse_window(&ok, now).unwrap();
        assert_eq!((w.from.timestamp(), w.min_size), (1_764_633_600, 2));
    }

    #[test]
    fn ids_are_cluster_keys() {
        let key = cluster_key("0190c8b2-0000-7000-8000-000000000000");
        assert_eq!(parse_id(&key).unwrap(), key);
        assert_eq!(parse_id(&key.to_ascii_uppercase()).unwrap(), key);
        for bad in ["", "abc", &key[1..], &format!("{}g", &key[1..])] {
            assert!(
                matches!(parse_id(bad), Err(ApiError::Validation(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in [SuggestionStatus::Accepted, SuggestionStatus::Dismissed] {
            assert_eq!(SuggestionStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
