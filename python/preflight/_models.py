"""Typed models of what preflight computes and what its HTTP API exchanges (pydantic v2).

Field names are the API's wire names (``docs/api.md``; the server's ``/openapi.json`` is the
reference, and ``tests/test_openapi.py`` checks these models against it so drift is caught).
Response models accept unknown fields (``extra="allow"``): a newer server may add fields,
and an older client must keep working.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BoundingBox",
    "StructuralFeatures",
    "ExtractorMetadata",
    "Features",
    "Reason",
    "CorrectionRule",
    "DriftComponent",
    "Candidate",
    "Evaluation",
    "EvaluationRecord",
    "EvaluationPage",
    "Problem",
    "ProblemFieldError",
    "BatchItem",
    "BatchResult",
    "OutcomeStats",
    "Template",
    "TemplatePage",
    "Feedback",
    "DriftBucket",
    "ChangePoint",
    "DetectorState",
    "DriftReport",
    "OfflineEvaluation",
    "ReviewItem",
    "ReviewPage",
    "ClaimedReviewItem",
    "ResolvedReviewItem",
    "BulkResolveItem",
    "BulkResolutionItem",
    "BulkResolution",
    "LayoutSummary",
    "SuggestionRepresentative",
    "TemplateSuggestion",
    "TemplateSuggestionList",
    "SuggestionDecision",
    "AcceptedSuggestion",
    "DecisionBreakdown",
    "Aggregate",
    "OpenByAge",
    "ReviewQueueSummary",
    "AnalyticsSummary",
    "TimeseriesBucket",
    "Timeseries",
    "ExtractorStats",
    "ExtractorsReport",
    "TemplateStats",
    "TemplatesReport",
    "AutomatedPrecision",
    "ReliabilityBand",
    "Calibration",
    "Usage",
]


class _Wire(BaseModel):
    """Base of models sent to the server: exact fields, nothing extra."""

    model_config = ConfigDict(extra="forbid")

    def to_dict(self) -> Dict[str, Any]:
        """The JSON object as the API takes it (absent optional fields are left out)."""
        return self.model_dump(mode="json", exclude_none=True)


class _Answer(BaseModel):
    """Base of models read from the server: unknown (newer) fields are kept, not refused."""

    model_config = ConfigDict(extra="allow")


class BoundingBox(_Wire):
    """One element box, normalized to its page (0..1)."""

    x: float
    y: float
    width: float
    height: float
    element_type: str
    confidence: float
    reading_order: int
    page: Optional[int] = None


class StructuralFeatures(_Wire):
    """Counts, derived layout features and the boxes: the ``structural_features`` of an
    evaluate request (see docs/features.md for each definition)."""

    element_count: int
    table_count: int
    text_block_count: int
    image_count: int
    page_count: int
    text_density: float
    layout_complexity: float
    column_count: int
    has_header: bool
    has_footer: bool
    bounding_boxes: List[BoundingBox]


class ExtractorMetadata(_Wire):
    """What the extractor said about itself. The adapters suggest it from the file; a
    pipeline that knows the real ``latency_ms`` or ``cost_usd`` should set them."""

    vendor: str
    model: str
    version: str
    confidence: float
    latency_ms: float
    cost_usd: Optional[float] = None


class Features(BaseModel):
    """The result of :func:`preflight.features`: exactly what ``preflight features`` prints
    for the same input, without the ``file`` key."""

    model_config = ConfigDict(extra="forbid")

    format: str
    """The format the input was read as (``textract``, ``azure``, ``google``, ...)."""
    pages: int
    layout_fingerprint: str
    """The engine's canonical layout fingerprint (SHA-256 hex) of ``structural_features``."""
    structural_features: StructuralFeatures
    extractor_metadata: ExtractorMetadata
    warnings: List[str]

    def to_dict(self) -> Dict[str, Any]:
        """The same JSON object the CLI prints (without ``file``)."""
        return self.model_dump(mode="json", exclude_none=True)

    def request(self, **extra: Any) -> Dict[str, Any]:
        """The body of ``POST /v1/evaluate`` for these features; ``extra`` adds top-level
        fields such as ``client_correlation_id`` or ``pipeline_id`` (None values are dropped)."""
        body: Dict[str, Any] = {
            "structural_features": self.structural_features.to_dict(),
            "extractor_metadata": self.extractor_metadata.to_dict(),
            "layout_fingerprint": self.layout_fingerprint,
        }
        body.update({k: v for k, v in extra.items() if v is not None})
        return body


class Reason(_Answer):
    """A machine-readable ``code`` (e.g. ``LOW_MATCH_CONFIDENCE``) with a short message."""

    code: str
    message: str


class CorrectionRule(BaseModel):
    """A ``{field, rule, parameters}`` hint returned with matching evaluations."""

    model_config = ConfigDict(extra="allow")

    field: str
    rule: str
    parameters: Any = None


class DriftComponent(_Answer):
    component: str
    score: float


class Candidate(_Answer):
    """A template that was considered but not reported as the match."""

    template_id: str
    template_version_id: str
    template_version: int
    match_confidence: float


class _Decided(_Answer):
    """What every decision object offers, from the server or from the offline engine."""

    decision: str
    match_confidence: float
    template_id: Optional[str] = None
    template_version_id: Optional[str] = None
    template_version: Optional[int] = None
    reasons: List[Reason] = Field(default_factory=list)

    @property
    def template(self) -> Optional[str]:
        """The matched template's ``template_id`` (None for NEW and REJECT)."""
        return self.template_id

    @property
    def should_review(self) -> bool:
        """True unless the decision is ``MATCH``: only a MATCH may be processed without a
        human (REVIEW: check it; NEW: unknown layout; REJECT: re-extract)."""
        return self.decision != "MATCH"

    @property
    def reason_codes(self) -> List[str]:
        return [r.code for r in self.reasons]


class Alert(_Answer):
    """One entry of an evaluation's ``alerts``: a change point its commit confirmed on the
    template (``type`` is ``TEMPLATE_CHANGE_POINT``)."""

    type: str
    template_id: Optional[str] = None
    template_version_id: Optional[str] = None
    series: str
    observation: int
    detected_at_observation: int
    baseline_mean: float
    recent_mean: float
    message: str


class AlertRule(_Answer):
    """An alert rule (``/v1/alert-rules``, docs/alerts.md)."""

    id: str
    name: str
    metric: str
    operator: Optional[str] = None
    threshold: Optional[float] = None
    severity: str
    template_id: Optional[str] = None
    enabled: bool
    window_seconds: Optional[int] = None
    """Window metrics (``new_rate``, ``reject_rate``, ``review_rate``,
    ``automation_rate``): the sliding window."""
    min_volume: Optional[int] = None
    checked_until: Optional[datetime] = None
    """Window metrics: the end of the last window the server checked."""
    created_at: datetime
    updated_at: datetime


class AlertRuleList(_Answer):
    items: List[AlertRule]


class AlertRecord(_Answer):
    """A stored alert (``GET /v1/alerts``): what a rule found, with its occurrences and
    whether someone acknowledged or resolved it."""

    id: str
    rule_id: Optional[str] = None
    rule_name: str
    metric: str
    severity: str
    status: str
    template_id: Optional[str] = None
    template_version_id: Optional[str] = None
    evaluation_id: Optional[str] = None
    """``None`` for a window rule's alert and a disabled webhook endpoint's."""
    last_evaluation_id: Optional[str] = None
    value: Optional[float] = None
    threshold: Optional[float] = None
    message: str
    details: Dict[str, Any] = Field(default_factory=dict)
    occurrences: int
    delivery_status: str
    created_at: datetime
    last_seen_at: datetime
    acknowledged_at: Optional[datetime] = None
    acknowledged_by: Optional[str] = None
    resolved_at: Optional[datetime] = None
    resolved_by: Optional[str] = None


class AlertPage(_Answer):
    items: List[AlertRecord]
    next_cursor: Optional[str] = None


class Evaluation(_Decided):
    """The server's answer to ``POST /v1/evaluate`` (and one history entry's core)."""

    evaluation_id: str
    drift_score: float
    drift_components: List[DriftComponent] = Field(default_factory=list)
    reliability_score: float
    warnings: List[Reason] = Field(default_factory=list)
    correction_rules: List[CorrectionRule] = Field(default_factory=list)
    alerts: List[Alert] = Field(default_factory=list)
    replay_hash: str
    engine_version: str
    layout_fingerprint: str
    processing_time_ms: float
    client_correlation_id: Optional[str] = None
    pipeline_id: Optional[str] = None
    created_at: datetime
    runner_up: Optional[Candidate] = None


class EvaluationRecord(Evaluation):
    """One stored evaluation (``GET /v1/evaluations[/{id}]``): the answer plus what was kept."""

    extractor_vendor: str
    extractor_model: str
    client_doc_hash: Optional[str] = None
    feedback: Optional[Dict[str, Any]] = None


class EvaluationPage(_Answer):
    items: List[EvaluationRecord]
    next_cursor: Optional[str] = None


class ProblemFieldError(_Answer):
    field: str
    message: str


class Problem(_Answer):
    """An RFC 9457 problem (batch items carry one per failed document)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: Optional[str] = None
    errors: List[ProblemFieldError] = Field(default_factory=list)


class BatchItem(_Answer):
    index: int
    status: int
    evaluation: Optional[Evaluation] = None
    error: Optional[Problem] = None


class BatchResult(_Answer):
    """``POST /v1/evaluate/batch``: one item per document, in request order."""

    results: List[BatchItem]


class OutcomeStats(_Answer):
    correct: int = 0
    corrected: int = 0
    rejected: int = 0


class Template(_Answer):
    """One template version (``GET /v1/templates/{id}``)."""

    id: str
    template_id: str
    version: int
    name: Optional[str] = None
    description: Optional[str] = None
    status: str
    baseline_reliability: float
    correction_rules: List[CorrectionRule] = Field(default_factory=list)
    exemplar_count: int
    evaluation_count: int
    outcome_stats: Dict[str, OutcomeStats] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    seen_extractors: List[Dict[str, str]] = Field(default_factory=list)
    """``{vendor, model, version}`` of the extractors this version has seen on confirmed
    documents (a matched document from another is ``EXTRACTOR_CHANGED``)."""
    exemplars: Optional[List[StructuralFeatures]] = None
    """Only when fetched with ``include_exemplars=True``."""


class TemplatePage(_Answer):
    items: List[Template]
    next_cursor: Optional[str] = None


class Feedback(_Answer):
    """``POST /v1/evaluations/{id}/feedback``."""

    evaluation_id: str
    outcome: str
    previous_outcome: Optional[str] = None
    statistics_updated: bool


class DriftBucket(_Answer):
    start: datetime
    count: int
    mean_similarity: float
    mean_drift: float
    mean_reliability: float
    mean_extractor_confidence: float


class ChangePoint(_Answer):
    observation: int
    detected_at_observation: int
    series: str
    baseline_mean: float
    recent_mean: float
    evaluation_id: str
    occurred_at: datetime


class DetectorState(_Answer):
    observations: int
    changes: int


class DriftReport(_Answer):
    """``GET /v1/templates/{id}/drift``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    template_id: str
    template_version_id: str
    version: int
    evaluation_count: int
    from_: datetime = Field(alias="from")
    to: datetime
    bucket: str
    buckets: List[DriftBucket]
    truncated: bool
    change_points: List[ChangePoint]
    detector: DetectorState


class OfflineEvaluation(_Decided):
    """The offline engine's answer (:meth:`preflight.Engine.evaluate`): the decision fields
    the server would return for the same input and templates, without the stored-evaluation
    fields (``evaluation_id``, ``created_at``, ``alerts``, ``processing_time_ms``)."""

    similarity: float
    drift_score: float
    drift_components: List[DriftComponent] = Field(default_factory=list)
    reliability_score: float
    extractor_confidence: float
    warnings: List[Reason] = Field(default_factory=list)
    correction_rules: List[CorrectionRule] = Field(default_factory=list)
    replay_hash: str
    engine_version: str
    layout_fingerprint: str
    candidates_considered: int
    runner_up: Optional[Candidate] = None


# -- the review queue (docs/review.md) ----------------------------------------------------


class ReviewItem(_Answer):
    """One review item (``/v1/review-items``): an evaluation that asks for a person (REVIEW,
    NEW, REJECT) or a MATCH drawn for quality assurance, with who holds it and how it ended.

    ``status`` is ``open`` (claimable: nobody holds it, or the last lease ran out),
    ``claimed`` or ``resolved``; the holder's fields are set only while ``claimed``. The
    lease token is never listed: only :class:`ClaimedReviewItem` carries it."""

    id: str
    evaluation_id: str
    created_at: datetime
    age_seconds: int
    """Seconds since the evaluation, when the server answered."""
    decision: str
    reason: str
    """``decision`` (the answer asks for a person) or ``sample`` (a MATCH drawn for QA)."""
    priority: int
    """Higher first: REVIEW 300+, REJECT 200+, NEW 100+, sampled MATCH 0+, plus up to 99 for
    low reliability."""
    template_id: Optional[str] = None
    template_version: Optional[int] = None
    extractor_vendor: str
    extractor_model: str
    reliability_score: float
    drift_score: float
    status: str
    claimed_by: Optional[str] = None
    """The holder as the audit trail names actors (``key:<prefix>``, ``user:<id>``)."""
    claimed_at: Optional[datetime] = None
    lease_expires_at: Optional[datetime] = None
    claim_count: int
    """Claims so far; above 1 means the item came back (released, or a lease ran out)."""
    resolved_at: Optional[datetime] = None
    resolved_by: Optional[str] = None
    outcome: Optional[str] = None
    """``correct``, ``corrected`` or ``rejected`` once resolved."""


class ReviewPage(_Answer):
    items: List[ReviewItem]
    next_cursor: Optional[str] = None


class ClaimedReviewItem(_Answer):
    """A claim's answer. Keep ``lease_token``: extending, releasing and resolving under the
    claim need it, and nobody else is ever shown it."""

    item: ReviewItem
    lease_token: str


class ResolvedReviewItem(_Answer):
    """A resolved item and the evaluation feedback its outcome was recorded as (in the same
    transaction: template statistics and calibration moved with it)."""

    item: ReviewItem
    feedback: Feedback


class BulkResolveItem(_Wire):
    """One item of :meth:`preflight.Client.bulk_resolve_review_items` (a dict with the same
    keys works too). ``lease_token`` is needed only for an item held under a live lease."""

    id: str
    outcome: str
    lease_token: Optional[str] = None
    field_error_count: Optional[int] = None


class BulkResolutionItem(_Answer):
    """How one item of a bulk resolve went: ``status`` 200 with the resolved ``item``, or the
    ``problem`` the single resolve would have answered (404, 409, 422)."""

    id: str
    status: int
    item: Optional[ReviewItem] = None
    problem: Optional[Problem] = None


class BulkResolution(_Answer):
    """``POST /v1/review-items/resolve``: each item is resolved on its own, so one that
    cannot be does not hold back the others; ``results`` are in request order."""

    resolved: int
    failed: int
    results: List[BulkResolutionItem]


# -- template suggestions ------------------------------------------------------------------


class LayoutSummary(_Answer):
    """What a person needs to recognize a layout: counts and element types, never content."""

    layout_fingerprint: str
    page_count: int
    element_count: int
    table_count: int
    text_block_count: int
    image_count: int
    column_count: int
    has_header: bool
    has_footer: bool
    element_types: Dict[str, int] = Field(default_factory=dict)
    """Bounding boxes per canonical element type (``other`` for names the engine does not
    know)."""


class SuggestionRepresentative(_Answer):
    evaluation_id: str
    layout: LayoutSummary


class TemplateSuggestion(_Answer):
    """A recurring unregistered layout: NEW evaluations that would MATCH each other if one
    were registered. ``id`` is stable while the cluster's oldest member stays in the window;
    accept and dismiss recompute the clusters, so pass them the listing's window."""

    id: str
    size: int
    first_seen: datetime
    last_seen: datetime
    representative: SuggestionRepresentative
    exemplar_evaluation_ids: List[str]
    """The layouts the template is built from on accept (the representative first)."""
    cohesion: float
    min_member_similarity: float
    extractor_vendors: List[str]
    sample_evaluation_ids: List[str]
    """Up to 10 member evaluations, newest first."""


class TemplateSuggestionList(_Answer):
    """``GET /v1/template-suggestions``: largest first, then most recently seen."""

    from_ts: datetime
    to_ts: datetime
    min_size: int
    evaluations_considered: int
    input_limit: int
    truncated: bool
    """The window held more NEW evaluations than ``input_limit``; the oldest were left out
    (narrow the window with ``to_ts`` to look further back)."""
    suggestions: List[TemplateSuggestion]


class SuggestionDecision(_Answer):
    """What was decided about a suggestion (``status`` ``accepted`` or ``dismissed``)."""

    id: str
    status: str
    representative_evaluation_id: str
    layout_fingerprint: str
    size: int
    template_id: Optional[str] = None
    template_version_id: Optional[str] = None
    decided_by: str
    decided_at: datetime


class AcceptedSuggestion(_Answer):
    """An accepted suggestion: ``template`` is the template version created from the
    cluster's exemplars (version 1, active)."""

    template: Template
    suggestion: TemplateSuggestion
    decision: SuggestionDecision


# -- analytics and usage (docs/analytics.md) ----------------------------------------------


class DecisionBreakdown(_Answer):
    """Counts per decision. Attributes are lower case; the wire names (``MATCH``, ...) are
    the aliases, and ``breakdown["MATCH"]`` works too."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    match: int = Field(alias="MATCH")
    review: int = Field(alias="REVIEW")
    new: int = Field(alias="NEW")
    reject: int = Field(alias="REJECT")

    def __getitem__(self, decision: str) -> int:
        return getattr(self, decision.lower())


class Aggregate(_Answer):
    """The figures of a set of evaluations. With no evaluations ``total`` is 0 and every
    average, percentile and rate is None. Percentiles are the upper edge of the 0.01 bin
    holding the nearest-rank value (at most 0.01 above the exact one, never below)."""

    total: int
    decision_breakdown: DecisionBreakdown
    avg_drift: Optional[float] = None
    p95_drift: Optional[float] = None
    avg_reliability: Optional[float] = None
    p95_reliability: Optional[float] = None
    automation_rate: Optional[float] = None
    """MATCH ÷ total: documents that needed nobody."""
    review_rate: Optional[float] = None
    new_rate: Optional[float] = None
    reject_rate: Optional[float] = None
    review_load: int
    """REVIEW + NEW: documents a person has to look at (or register)."""


class OpenByAge(_Answer):
    under_1h: int
    from_1h_to_4h: int
    from_4h_to_24h: int
    over_24h: int


class ReviewQueueSummary(_Answer):
    """The review queue in the summary: ``open``, ``claimed`` and the ages are the queue
    now; ``resolved`` and the resolution times cover items resolved in the range."""

    open: int
    claimed: int
    oldest_open_age_seconds: Optional[int] = None
    open_by_age: OpenByAge
    resolved: int
    mean_resolution_seconds: Optional[float] = None
    max_resolution_seconds: Optional[float] = None


class AnalyticsSummary(Aggregate):
    """``GET /v1/analytics/summary``. ``from_ts``/``to_ts`` are the range covered: whole
    hours (UTC), which may be wider than the one asked for."""

    from_ts: datetime
    to_ts: datetime
    timezone: str
    review_queue: ReviewQueueSummary


class TimeseriesBucket(Aggregate):
    bucket_start: datetime


class Timeseries(_Answer):
    """``GET /v1/analytics/timeseries``: every bucket of the range, empty ones included."""

    from_ts: datetime
    to_ts: datetime
    interval: str
    timezone: str
    buckets: List[TimeseriesBucket]


class ExtractorStats(_Answer):
    """One extractor identity (vendor, model, version): an upgrade shows as a new row."""

    vendor: str
    model: str
    version: str
    count: int
    decision_breakdown: DecisionBreakdown
    automation_rate: Optional[float] = None
    avg_drift: Optional[float] = None
    avg_reliability: Optional[float] = None
    avg_match_confidence: Optional[float] = None
    avg_extractor_confidence: Optional[float] = None
    avg_latency_ms: Optional[float] = None
    avg_cost_usd: Optional[float] = None
    """Over the evaluations that reported a cost; None when none did."""
    first_seen: datetime
    last_seen: datetime


class ExtractorsReport(_Answer):
    from_ts: datetime
    to_ts: datetime
    extractors: List[ExtractorStats]


class TemplateStats(_Answer):
    """One template version; ``volume`` counts the evaluations attributed to it (MATCH and
    REVIEW)."""

    template_id: str
    template_version: int
    template_version_id: Optional[str] = None
    volume: int
    decision_breakdown: DecisionBreakdown
    automation_rate: Optional[float] = None
    avg_drift: Optional[float] = None
    avg_reliability: Optional[float] = None
    avg_match_confidence: Optional[float] = None
    change_points: int
    first_seen: datetime
    last_seen: datetime


class TemplatesReport(_Answer):
    from_ts: datetime
    to_ts: datetime
    templates: List[TemplateStats]


class AutomatedPrecision(_Answer):
    """MATCHes with feedback: ``precision`` = correct ÷ with_feedback, with its Wilson 95 %
    interval."""

    with_feedback: int
    correct: int
    precision: Optional[float] = None
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None


class ReliabilityBand(_Answer):
    band_start: float
    band_end: float
    count: int
    mean_reliability: Optional[float] = None
    accuracy: Optional[float] = None
    """Share of the band whose outcome was ``correct``."""


class Calibration(_Answer):
    """``GET /v1/analytics/calibration``: over evaluations *created* in the range that have
    feedback now. Well calibrated: each band's ``accuracy`` near its ``mean_reliability``, a
    small ``ece``, ``missed_errors`` near zero."""

    from_ts: datetime
    to_ts: datetime
    evaluations: int
    with_feedback: int
    feedback_coverage: Optional[float] = None
    automated: AutomatedPrecision
    errors: int
    """Outcomes ``corrected`` or ``rejected``."""
    review_catch_rate: Optional[float] = None
    missed_errors: int
    """Errors among MATCHes: what automation let through."""
    brier_score: Optional[float] = None
    ece: Optional[float] = None
    bands: List[ReliabilityBand]


class Usage(_Answer):
    """``GET /v1/usage``: the plan and this calendar month's (UTC) stored evaluations.
    ``monthly_limit`` and ``remaining`` are None on an unlimited plan; ``enforced`` says
    whether evaluations past the limit are refused (429 ``QUOTA_EXCEEDED``)."""

    plan: str
    period: str
    period_start: datetime
    period_end: datetime
    monthly_limit: Optional[int] = None
    limit_overridden: bool
    used: int
    remaining: Optional[int] = None
    enforced: bool
