"""Exceptions raised by the preflight package.

Every exception derives from :class:`PreflightError`. Messages never quote document content:
adapter errors name a JSON key, a line number or a byte offset; API errors carry the
server's problem+json fields, which hold no document text either.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

__all__ = [
    "PreflightError",
    "AdapterError",
    "EngineError",
    "UnsupportedInputError",
    "ApiError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "PayloadTooLargeError",
    "UnsupportedMediaTypeError",
    "ValidationError",
    "RateLimitError",
    "ServiceUnavailableError",
    "TransportError",
    "FieldError",
]


class PreflightError(Exception):
    """Base class of every error this package raises."""


# The native module raises its own exception types; the package converts them into these
# (same message), so callers see one hierarchy under PreflightError.
class AdapterError(PreflightError, ValueError):
    """An extractor output could not be turned into features.

    ``kind`` is one of ``unrecognized`` (no supported extractor output), ``unknown_format_name``,
    ``malformed``, ``no_layout``, ``invalid_option``, ``not_tesseract`` or ``unsupported``
    (an object type this package cannot convert); ``unrecognized`` is True when the input is
    no extractor output at all.
    """

    kind: str
    unrecognized: bool

    def __init__(self, message: str, kind: str = "unsupported", unrecognized: bool = False):
        super().__init__(message)
        self.kind = kind
        self.unrecognized = unrecognized


class UnsupportedInputError(AdapterError, TypeError):
    """The object passed to :func:`preflight.features` is of no type it can read."""

    def __init__(self, message: str):
        super().__init__(message, kind="unsupported", unrecognized=True)


class EngineError(PreflightError, ValueError):
    """The offline engine refused its templates or a document; ``errors`` lists
    :class:`FieldError` items (the same fields a server 422 would list)."""

    errors: List["FieldError"]

    def __init__(self, message: str, errors: Optional[List["FieldError"]] = None):
        super().__init__(message)
        self.errors = errors or []


def _adapter_error(native: BaseException) -> AdapterError:
    return AdapterError(
        str(native),
        kind=getattr(native, "kind", "unsupported"),
        unrecognized=bool(getattr(native, "unrecognized", False)),
    )


def _engine_error(native: BaseException) -> EngineError:
    pairs = getattr(native, "errors", None) or []
    return EngineError(str(native), [FieldError(field=f, message=m) for f, m in pairs])


class FieldError:
    """One invalid field of a 422 answer (or of an offline engine refusal)."""

    __slots__ = ("field", "message")

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message

    def __repr__(self) -> str:
        return f"FieldError(field={self.field!r}, message={self.message!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FieldError)
            and other.field == self.field
            and other.message == self.message
        )


class ApiError(PreflightError):
    """The server answered with an error (RFC 9457 problem+json).

    Attributes: ``status`` (HTTP status), ``code`` (stable machine-readable code such as
    ``VALIDATION_FAILED``; None if the body was not problem+json), ``title``, ``detail``,
    ``type``, ``request_id``, ``errors`` (field errors of a 422), ``retry_after`` (seconds,
    from the header) and ``problem`` (the whole decoded body).
    """

    def __init__(
        self,
        status: int,
        problem: Mapping[str, Any],
        retry_after: Optional[float] = None,
        request_id: Optional[str] = None,
    ):
        self.status = status
        self.problem: Dict[str, Any] = dict(problem)
        self.code: Optional[str] = self.problem.get("code")
        self.title: Optional[str] = self.problem.get("title")
        self.detail: Optional[str] = self.problem.get("detail")
        self.type: Optional[str] = self.problem.get("type")
        self.request_id: Optional[str] = self.problem.get("request_id") or request_id
        self.errors: List[FieldError] = [
            FieldError(str(e.get("field", "")), str(e.get("message", "")))
            for e in self.problem.get("errors") or []
            if isinstance(e, Mapping)
        ]
        self.retry_after = retry_after
        super().__init__(self._message())

    def _message(self) -> str:
        text = f"HTTP {self.status}"
        if self.code:
            text += f" {self.code}"
        if self.detail:
            text += f": {self.detail}"
        if self.errors:
            text += " (" + "; ".join(f"{e.field}: {e.message}" for e in self.errors) + ")"
        return text


class BadRequestError(ApiError):
    """400: the body was not valid JSON (``MALFORMED_JSON``), or a query parameter was
    refused (``INVALID_QUERY``, e.g. an analytics range whose ``from_ts`` is not before its
    ``to_ts``; ``errors`` names every bad parameter)."""


class AuthenticationError(ApiError):
    """401: missing or invalid API key or token."""


class PermissionDeniedError(ApiError):
    """403: the key lacks the scope the route needs."""


class NotFoundError(ApiError):
    """404: no such resource in this tenant."""


class ConflictError(ApiError):
    """409: e.g. the template version exists, or a status change is not allowed."""


class PayloadTooLargeError(ApiError):
    """413: the body is larger than the server's limit."""


class UnsupportedMediaTypeError(ApiError):
    """415: the body was not sent as JSON."""


class ValidationError(ApiError):
    """422: invalid fields; ``errors`` lists every one."""


class RateLimitError(ApiError):
    """429: rate limited (raised once the retries are used up)."""


class ServiceUnavailableError(ApiError):
    """503: a dependency of the server is down (raised once the retries are used up)."""


_BY_STATUS = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: ValidationError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def api_error(
    status: int,
    problem: Mapping[str, Any],
    retry_after: Optional[float] = None,
    request_id: Optional[str] = None,
) -> ApiError:
    """The most specific :class:`ApiError` subclass for ``status``."""
    cls = _BY_STATUS.get(status, ApiError)
    return cls(status, problem, retry_after=retry_after, request_id=request_id)


class TransportError(PreflightError):
    """The server could not be reached (connection refused, DNS, timeout), after the retries."""

    def __init__(self, message: str, attempts: int):
        super().__init__(f"{message} (after {attempts} attempt{'s' if attempts != 1 else ''})")
        self.attempts = attempts
