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
