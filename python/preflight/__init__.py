"""preflight for Python pipelines.

Decides MATCH / REVIEW / NEW / REJECT for a document extraction from its layout metadata
only. The package shares the Rust adapters and engine of the ``preflight`` binary:

* :func:`features` — an extractor's output (path, bytes, dict, SDK object) → structural
  features, exactly as ``preflight features`` computes them; nothing leaves the process;
* :class:`Client` / :class:`AsyncClient` — the HTTP API (evaluate, batch, templates,
  history, feedback, drift, alerts, the review queue, template suggestions, analytics and
  usage) with retries, idempotency keys and typed answers;
* :func:`check` — ``pf.check(textract_response).should_review`` in three lines;
* :class:`Engine` — offline decisions on exported templates, equal to the server's.

See docs/python.md in the repository.
"""

from ._native import ENGINE_VERSION, VERSION as __version__
from ._errors import (
    AdapterError,
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    EngineError,
    FieldError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PreflightError,
    RateLimitError,
    ServiceUnavailableError,
    TransportError,
    UnsupportedInputError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from ._features import PageSize, features
from ._models import (
    AcceptedSuggestion,
    Aggregate,
    Alert,
    AlertPage,
    AlertRecord,
    AlertRule,
    AlertRuleList,
    AnalyticsSummary,
    AutomatedPrecision,
    BatchItem,
    BatchResult,
    BoundingBox,
    BulkResolution,
    BulkResolutionItem,
    BulkResolveItem,
    Calibration,
    Candidate,
    ChangePoint,
    ClaimedReviewItem,
    CorrectionRule,
    DecisionBreakdown,
    DetectorState,
    DriftBucket,
    DriftComponent,
    DriftReport,
    Evaluation,
    EvaluationPage,
    EvaluationRecord,
    ExtractorMetadata,
    ExtractorStats,
    ExtractorsReport,
    Features,
    Feedback,
    LayoutSummary,
    OfflineEvaluation,
    OpenByAge,
    OutcomeStats,
    Problem,
    ProblemFieldError,
    Reason,
    ReliabilityBand,
    ResolvedReviewItem,
    ReviewItem,
    ReviewPage,
    ReviewQueueSummary,
    StructuralFeatures,
    SuggestionDecision,
    SuggestionRepresentative,
    Template,
    TemplatePage,
    TemplateStats,
    TemplateSuggestion,
    TemplateSuggestionList,
    TemplatesReport,
    Timeseries,
    TimeseriesBucket,
    Usage,
)
from ._client import DEFAULT_URL, EXPORT_FORMAT, EXPORT_VERSION, AsyncClient, Client
from ._check import check, configure, default_client
from ._engine import Engine
from . import _errors, _models

__all__ = [
    "Alert",
    "AlertPage",
    "AlertRecord",
    "AlertRule",
    "AlertRuleList",
    "__version__",
    "ENGINE_VERSION",
    "features",
    "PageSize",
    "Client",
    "AsyncClient",
    "check",
    "configure",
    "default_client",
    "Engine",
    "DEFAULT_URL",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    # every public error and model, as their modules declare them
    *_errors.__all__,
    *_models.__all__,
]
