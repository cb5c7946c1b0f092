"""``preflight.Client`` and ``preflight.AsyncClient``: the HTTP API on httpx.

Both clients share every request's construction (:class:`_Call`) and differ only in how
they send and wait. Behaviour, identical for both:

* ``X-API-Key`` authentication; ``User-Agent: preflight-python/<version>``.
* Every POST to a route that takes an ``Idempotency-Key`` (evaluate, batch, templates,
  exemplars, feedback, accepting a suggestion) carries one (generated per call unless
  given; all attempts of one call reuse it), so a retry after a lost answer returns the
  first answer and the server stores nothing twice. The other POSTs are safe to repeat by
  their nature (acknowledging an alert, resolving a review item with the same outcome,
  dismissing a suggestion) or fail visibly (a second claim is a 409).
* Retries after a network error (connect, read, timeout), a 429 or a 502/503/504, at most
  ``retries`` times. The wait before retry *n* is exponential with jitter — a step of
  ``backoff * 2**(n-1)`` seconds capped at ``max_backoff``, half fixed and half random, so
  workers that failed together don't come back together — and at least the server's
  ``Retry-After`` (plus up to 0.25 s of jitter; capped at 120 s). Other errors are not
  retried: they would fail the same way.
* Errors are raised as :class:`preflight.ApiError` subclasses carrying the problem+json
  fields (``status``, ``code``, ``detail``, ``errors``, ``request_id``...).
* Documents given as extractor output are turned into features locally
  (:func:`preflight.features`); only layout metadata is sent.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import random
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import (Any, AsyncIterator, Awaitable, Callable, Dict, Iterator, List, Mapping, Optional,
                    Sequence, Type, TypeVar, Union)

import httpx
import pydantic_core
from pydantic import BaseModel

from . import _native
from ._errors import PreflightError, TransportError, api_error
from ._features import PageSize, _features_of_bytes, features, to_bytes
from ._models import (
    AcceptedSuggestion,
    AlertPage,
    AlertRecord,
    AlertRule,
    AlertRuleList,
    AnalyticsSummary,
    BatchResult,
    BulkResolution,
    BulkResolveItem,
    Calibration,
    ClaimedReviewItem,
    Evaluation,
    EvaluationPage,
    EvaluationRecord,
    ExtractorsReport,
    Feedback,
    DriftReport,
    Features,
    ResolvedReviewItem,
    ReviewItem,
    ReviewPage,
    StructuralFeatures,
    SuggestionDecision,
    Template,
    TemplatePage,
    TemplatesReport,
    TemplateSuggestionList,
    Timeseries,
    Usage,
)

__all__ = ["Client", "AsyncClient", "DEFAULT_URL", "EXPORT_FORMAT", "EXPORT_VERSION"]

DEFAULT_URL = "http://127.0.0.1:8000"
EXPORT_FORMAT = "preflight-templates"
EXPORT_VERSION = 1
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER = 120.0

M = TypeVar("M", bound=BaseModel)


def _follow(list_page: Callable[..., Any], filters: Dict[str, Any]) -> Iterator[Any]:
    """Every item of every page ``list_page`` returns, following ``next_cursor``: the one
    loop behind each ``iter_*``."""
    cursor = None
    while True:
        page = list_page(cursor=cursor, **filters)
        yield from page.items
        if not page.next_cursor:
            return
        cursor = page.next_cursor


async def _follow_async(list_page: Callable[..., Awaitable[Any]],
                        filters: Dict[str, Any]) -> AsyncIterator[Any]:
    """:func:`_follow` for the asynchronous client."""
    cursor = None
    while True:
        page = await list_page(cursor=cursor, **filters)
        for item in page.items:
            yield item
        if not page.next_cursor:
            return
        cursor = page.next_cursor


@dataclass
class _Call:
    """One API call, independent of how it is sent."""

    method: str
    path: str
    model: Optional[Type[BaseModel]]
    body: Optional[bytes] = None
    params: Dict[str, Any] = field(default_factory=dict)
    idempotency_key: Optional[str] = None


def _retry_after(response: httpx.Response) -> Optional[float]:
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _body(obj: Dict[str, Any]) -> bytes:
    # Serialized once per call, so every attempt sends the same bytes under the same key.
    # pydantic-core's serializer (Rust) takes a sixth of json.dumps's time on a document's
    # features; it writes a non-finite float as NaN/Infinity, which JSON cannot carry, so
    # a body that may hold one is serialized again by json.dumps, which refuses it.
    try:
        body = pydantic_core.to_json(obj)
    except pydantic_core.PydanticSerializationError as e:
        raise TypeError(f"the request body cannot be serialized as JSON: {e}") from None
    if b"NaN" in body or b"Infinity" in body:
        json.dumps(obj, allow_nan=False)
    return body


def _query(params: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, datetime):
            v = v.isoformat()
        elif isinstance(v, bool):
            v = "true" if v else "false"
        out[k] = v
    return out


Instant = Union[datetime, str, int]
"""A timestamp parameter: a ``datetime`` (a naive one is taken as UTC), an RFC 3339 string,
or unix seconds."""


def _instant(value: Optional[Instant], name: str) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.isoformat()
    if isinstance(value, bool):  # an int to Python, never a time
        raise TypeError(f"{name} must be a datetime, an RFC 3339 string or unix seconds")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"{name} must be a datetime, an RFC 3339 string or unix seconds")


def _window(from_ts: Optional[Instant], to_ts: Optional[Instant]) -> Dict[str, Any]:
    return {"from_ts": _instant(from_ts, "from_ts"), "to_ts": _instant(to_ts, "to_ts")}


def _bulk_item(item: Union[BulkResolveItem, Mapping[str, Any]]) -> Dict[str, Any]:
    if isinstance(item, BulkResolveItem):
        return item.to_dict()
    # Unknown keys are sent as they are: the server names them in its 422.
    return {k: v for k, v in dict(item).items() if v is not None}


def _segment(value: str) -> str:
    # Path parameters are ids chosen by the caller; keep each one a single path segment.
    return urllib.parse.quote(str(value), safe="")


def _features_dict(
    document: Any, from_: Optional[str], page_size: Optional[PageSize]
) -> Dict[str, Any]:
    """``structural_features`` of a document given any way :func:`features` accepts, or as
    Features / StructuralFeatures / their dicts."""
    if isinstance(document, Features):
        return document.structural_features.to_dict()
    if isinstance(document, StructuralFeatures):
        return document.to_dict()
    if isinstance(document, dict):
        if "structural_features" in document:
            return dict(document["structural_features"])
        if "bounding_boxes" in document and "element_count" in document:
            return dict(document)
    return features(document, from_=from_, page_size=page_size).structural_features.to_dict()


def _evaluate_body(
    document: Any,
    *,
    from_: Optional[str],
    page_size: Optional[PageSize],
    extractor: Optional[Dict[str, Any]],
    client_doc_hash: Optional[str],
    client_correlation_id: Optional[str],
    pipeline_id: Optional[str],
) -> Dict[str, Any]:
    if isinstance(document, Features):
        body = document.request()
    elif isinstance(document, dict) and "structural_features" in document:
        # A prepared request, or what `preflight features` printed.
        body = {
            k: document[k]
            for k in (
                "structural_features",
                "extractor_metadata",
                "layout_fingerprint",
                "client_doc_hash",
                "client_correlation_id",
                "pipeline_id",
            )
            if document.get(k) is not None
        }
    else:
        data, implied, own_bytes = to_bytes(document)
        feats = _features_of_bytes(data, from_ if from_ is not None else implied, page_size)
        body = feats.request()
        if own_bytes and client_doc_hash is None:
            # As the CLI: the SHA-256 of the file's bytes, so the evaluation can be found by file.
            client_doc_hash = hashlib.sha256(data).hexdigest()
    if extractor:
        meta = dict(body.get("extractor_metadata") or {})
        meta.update(extractor)
        body["extractor_metadata"] = meta
    for k, v in (
        ("client_doc_hash", client_doc_hash),
        ("client_correlation_id", client_correlation_id),
        ("pipeline_id", pipeline_id),
    ):
        if v is not None:
            body[k] = v
    return body


class _Base:
    """Configuration, request construction and answer decoding shared by both clients."""

    def __init__(
        self,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 10.0,
        headers: Optional[Dict[str, str]] = None,
    ):
        url = url or os.environ.get("PREFLIGHT_URL") or DEFAULT_URL
        api_key = api_key or os.environ.get("PREFLIGHT_API_KEY")
        if not api_key:
            raise PreflightError("no API key: pass api_key= or set PREFLIGHT_API_KEY")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        # A path prefix (https://host/preflight/) is kept: routes are joined below it.
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self._headers = {
            "X-API-Key": api_key,
            "User-Agent": f"preflight-python/{_native.VERSION}",
            "Accept": "application/json",
        }
        self._headers.update(headers or {})

    def __repr__(self) -> str:
        # Never the key.
        return f"{type(self).__name__}(url={self.url!r})"

    # -- request construction -------------------------------------------------------------

    def _post(self, path: str, body: Dict[str, Any], model: Optional[Type[BaseModel]],
              idempotency_key: Optional[str]) -> _Call:
        return _Call("POST", path, model, _body(body), {},
                     idempotency_key or f"pfpy-{uuid.uuid4().hex}")

    def _prepare(self, call: _Call) -> Dict[str, Any]:
        headers = dict(self._headers)
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        if call.idempotency_key:
            headers["Idempotency-Key"] = call.idempotency_key
        return {
            "method": call.method,
            "url": self.url + call.path,
            "headers": headers,
            "content": call.body,
            "params": _query(call.params),
        }

    def _delay(self, attempt: int, response: Optional[httpx.Response]) -> float:
        step = min(self.backoff * (2 ** (attempt - 1)), self.max_backoff)
        wait = step / 2 + random.uniform(0, step / 2)
        if response is not None:
            after = _retry_after(response)
            if after is not None:
                wait = max(wait, min(after, MAX_RETRY_AFTER) + random.uniform(0, 0.25))
        return wait

    @staticmethod
    def _retryable(response: httpx.Response) -> bool:
        return response.status_code in RETRY_STATUSES

    @staticmethod
    def _decode(call: _Call, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                problem = response.json()
                if not isinstance(problem, dict):
                    problem = {}
            except ValueError:
                problem = {}
            raise api_error(
                response.status_code,
                problem,
                retry_after=_retry_after(response),
                request_id=response.headers.get("x-request-id"),
            )
        if response.status_code == 204:
            return None  # claim-next with nothing open; deletions
        if call.model is None:
            return response.json() if response.content else None
        return call.model.model_validate_json(response.content)

    # -- the routes ---------------------------------------------------------------------------

    def _evaluate(self, document: Any, *, from_: Optional[str] = None,
                  page_size: Optional[PageSize] = None, extractor: Optional[Dict[str, Any]] = None,
                  client_doc_hash: Optional[str] = None, client_correlation_id: Optional[str] = None,
                  pipeline_id: Optional[str] = None, idempotency_key: Optional[str] = None) -> _Call:
        body = _evaluate_body(document, from_=from_, page_size=page_size, extractor=extractor,
                              client_doc_hash=client_doc_hash,
                              client_correlation_id=client_correlation_id, pipeline_id=pipeline_id)
        return self._post("/v1/evaluate", body, Evaluation, idempotency_key)

    def _evaluate_batch(self, documents: Sequence[Any], *, from_: Optional[str] = None,
                        page_size: Optional[PageSize] = None, pipeline_id: Optional[str] = None,
                        idempotency_key: Optional[str] = None) -> _Call:
        bodies = [
            _evaluate_body(d, from_=from_, page_size=page_size, extractor=None,
                           client_doc_hash=None, client_correlation_id=None,
                           pipeline_id=pipeline_id)
            for d in documents
        ]
        return self._post("/v1/evaluate/batch", {"documents": bodies}, BatchResult, idempotency_key)

    def _register_template(self, documents: Any, *, template_id: str, version: Optional[int] = None,
                           name: Optional[str] = None, description: Optional[str] = None,
                           baseline_reliability: Optional[float] = None,
                           correction_rules: Optional[List[Dict[str, Any]]] = None,
                           status: Optional[str] = None, from_: Optional[str] = None,
                           page_size: Optional[PageSize] = None,
                           extractor: Optional[Dict[str, str]] = None,
                           idempotency_key: Optional[str] = None) -> _Call:
        body: Dict[str, Any] = {"template_id": template_id}
        if extractor is not None:
            body["extractor"] = {k: extractor[k] for k in ("vendor", "model", "version")}
        if isinstance(documents, (list, tuple)) and not _looks_like_paddle(documents):
            body["exemplars"] = [_features_dict(d, from_, page_size) for d in documents]
        else:
            body["structural_features"] = _features_dict(documents, from_, page_size)
        for k, v in (("version", version), ("name", name), ("description", description),
                     ("baseline_reliability", baseline_reliability),
                     ("correction_rules", correction_rules), ("status", status)):
            if v is not None:
                body[k] = v
        return self._post("/v1/templates", body, Template, idempotency_key)

    def _register_from_evaluation(self, evaluation_id: str, *, template_id: str,
                                  version: Optional[int] = None, name: Optional[str] = None,
                                  description: Optional[str] = None,
                                  baseline_reliability: Optional[float] = None,
                                  correction_rules: Optional[List[Dict[str, Any]]] = None,
                                  idempotency_key: Optional[str] = None) -> _Call:
        body: Dict[str, Any] = {"template_id": template_id}
        for k, v in (("version", version), ("name", name), ("description", description),
                     ("baseline_reliability", baseline_reliability),
                     ("correction_rules", correction_rules)):
            if v is not None:
                body[k] = v
        return self._post(f"/v1/templates/from-evaluation/{_segment(evaluation_id)}", body,
                          Template, idempotency_key)

    def _get_template(self, id: str, *, version: Optional[int] = None,
                      include_exemplars: bool = False) -> _Call:
        params = {"version": version, "include": "exemplars" if include_exemplars else None}
        return _Call("GET", f"/v1/templates/{_segment(id)}", Template, params=params)

    def _list_templates(self, *, status: Optional[str] = None, template_id: Optional[str] = None,
                        limit: Optional[int] = None, cursor: Optional[str] = None) -> _Call:
        params = {"status": status, "template_id": template_id, "limit": limit, "cursor": cursor}
        return _Call("GET", "/v1/templates", TemplatePage, params=params)

    def _add_exemplar(self, id: str, document: Any, *, version: Optional[int] = None,
                      from_: Optional[str] = None, page_size: Optional[PageSize] = None,
                      idempotency_key: Optional[str] = None) -> _Call:
        call = self._post(f"/v1/templates/{_segment(id)}/exemplars",
                          {"structural_features": _features_dict(document, from_, page_size)},
                          Template, idempotency_key)
        call.params = {"version": version}
        return call

    def _set_template_status(self, id: str, status: str, *, version: Optional[int] = None) -> _Call:
        return _Call("PATCH", f"/v1/templates/{_segment(id)}/status", Template,
                     body=_body({"status": status}), params={"version": version})

    def _list_evaluations(self, *, decision: Optional[str] = None,
                          template_id: Optional[str] = None, correlation_id: Optional[str] = None,
                          pipeline_id: Optional[str] = None, min_reliability: Optional[float] = None,
                          max_drift: Optional[float] = None, from_: Optional[datetime] = None,
                          to: Optional[datetime] = None, limit: Optional[int] = None,
                          cursor: Optional[str] = None) -> _Call:
        params = {"decision": decision, "template_id": template_id,
                  "correlation_id": correlation_id, "pipeline_id": pipeline_id,
                  "min_reliability": min_reliability, "max_drift": max_drift, "from": from_,
                  "to": to, "limit": limit, "cursor": cursor}
        return _Call("GET", "/v1/evaluations", EvaluationPage, params=params)

    def _get_evaluation(self, evaluation_id: str) -> _Call:
        return _Call("GET", f"/v1/evaluations/{_segment(evaluation_id)}", EvaluationRecord)

    def _feedback(self, evaluation_id: str, outcome: str, *,
                  field_error_count: Optional[int] = None, review_seconds: Optional[float] = None,
                  source: Optional[str] = None, idempotency_key: Optional[str] = None) -> _Call:
        body: Dict[str, Any] = {"outcome": outcome}
        for k, v in (("field_error_count", field_error_count),
                     ("review_seconds", review_seconds), ("source", source)):
            if v is not None:
                body[k] = v
        return self._post(f"/v1/evaluations/{_segment(evaluation_id)}/feedback", body, Feedback,
                          idempotency_key)

    def _template_drift(self, id: str, *, version: Optional[int] = None,
                        from_: Optional[datetime] = None, to: Optional[datetime] = None,
                        bucket: Optional[str] = None) -> _Call:
        params = {"version": version, "from": from_, "to": to, "bucket": bucket}
        return _Call("GET", f"/v1/templates/{_segment(id)}/drift", DriftReport, params=params)

    def _create_alert_rule(self, *, name: str, metric: str, severity: str,
                           operator: Optional[str] = None, threshold: Optional[float] = None,
                           template_id: Optional[str] = None,
                           enabled: Optional[bool] = None,
                           window_seconds: Optional[int] = None,
                           min_volume: Optional[int] = None) -> _Call:
        body: Dict[str, Any] = {"name": name, "metric": metric, "severity": severity}
        for k, v in (("operator", operator), ("threshold", threshold),
                     ("template_id", template_id), ("enabled", enabled),
                     ("window_seconds", window_seconds), ("min_volume", min_volume)):
            if v is not None:
                body[k] = v
        return _Call("POST", "/v1/alert-rules", AlertRule, _body(body))

    def _list_alert_rules(self) -> _Call:
        return _Call("GET", "/v1/alert-rules", AlertRuleList)

    def _get_alert_rule(self, id: str) -> _Call:
        return _Call("GET", f"/v1/alert-rules/{_segment(id)}", AlertRule)

    def _update_alert_rule(self, id: str, changes: Dict[str, Any]) -> _Call:
        return _Call("PATCH", f"/v1/alert-rules/{_segment(id)}", AlertRule, _body(changes))

    def _delete_alert_rule(self, id: str) -> _Call:
        return _Call("DELETE", f"/v1/alert-rules/{_segment(id)}", None)

    def _list_alerts(self, *, status: Optional[str] = None, severity: Optional[str] = None,
                     metric: Optional[str] = None, delivery_status: Optional[str] = None,
                     template_id: Optional[str] = None, limit: Optional[int] = None,
                     cursor: Optional[str] = None) -> _Call:
        params = {"status": status, "severity": severity, "metric": metric,
                  "delivery_status": delivery_status, "template_id": template_id,
                  "limit": limit, "cursor": cursor}
        return _Call("GET", "/v1/alerts", AlertPage, params=params)

    def _get_alert(self, id: str) -> _Call:
        return _Call("GET", f"/v1/alerts/{_segment(id)}", AlertRecord)

    def _move_alert(self, id: str, to: str) -> _Call:
        return _Call("POST", f"/v1/alerts/{_segment(id)}/{to}", AlertRecord)

    def _export_templates(self, *, status: Optional[str] = None,
                          template_id: Optional[str] = None) -> _Call:
        # The document stays a dict: it is written to a file or handed to Engine.from_export.
        params = {"status": status, "template_id": template_id}
        return _Call("GET", "/v1/templates/export", None, params=params)

    # -- the review queue ---------------------------------------------------------------------

    @staticmethod
    def _queue_selection(*, decision: Optional[str], reason: Optional[str],
                         template_id: Optional[str], extractor_vendor: Optional[str],
                         extractor_model: Optional[str], evaluation_id: Optional[str],
                         min_age_seconds: Optional[int], max_age_seconds: Optional[int],
                         sort: Optional[str]) -> Dict[str, Any]:
        return {"decision": decision, "reason": reason, "template_id": template_id,
                "extractor_vendor": extractor_vendor, "extractor_model": extractor_model,
                "evaluation_id": evaluation_id, "min_age_seconds": min_age_seconds,
                "max_age_seconds": max_age_seconds, "sort": sort}

    def _list_review_items(self, *, status: Optional[str] = None,
                           decision: Optional[str] = None, reason: Optional[str] = None,
                           template_id: Optional[str] = None,
                           extractor_vendor: Optional[str] = None,
                           extractor_model: Optional[str] = None,
                           evaluation_id: Optional[str] = None,
                           min_age_seconds: Optional[int] = None,
                           max_age_seconds: Optional[int] = None, sort: Optional[str] = None,
                           limit: Optional[int] = None, cursor: Optional[str] = None) -> _Call:
        params = self._queue_selection(
            decision=decision, reason=reason, template_id=template_id,
            extractor_vendor=extractor_vendor, extractor_model=extractor_model,
            evaluation_id=evaluation_id, min_age_seconds=min_age_seconds,
            max_age_seconds=max_age_seconds, sort=sort)
        params.update({"status": status, "limit": limit, "cursor": cursor})
        return _Call("GET", "/v1/review-items", ReviewPage, params=params)

    def _get_review_item(self, id: str) -> _Call:
        return _Call("GET", f"/v1/review-items/{_segment(id)}", ReviewItem)

    def _claim_review_item(self, id: str, *, lease_seconds: Optional[int] = None,
                           lease_token: Optional[str] = None) -> _Call:
        body = {k: v for k, v in (("lease_seconds", lease_seconds), ("lease_token", lease_token))
                if v is not None}
        return _Call("POST", f"/v1/review-items/{_segment(id)}/claim", ClaimedReviewItem,
                     _body(body))

    def _claim_next_review_item(self, *, decision: Optional[str] = None,
                                reason: Optional[str] = None, template_id: Optional[str] = None,
                                extractor_vendor: Optional[str] = None,
                                extractor_model: Optional[str] = None,
                                evaluation_id: Optional[str] = None,
                                min_age_seconds: Optional[int] = None,
                                max_age_seconds: Optional[int] = None,
                                sort: Optional[str] = None,
                                lease_seconds: Optional[int] = None) -> _Call:
        params = self._queue_selection(
            decision=decision, reason=reason, template_id=template_id,
            extractor_vendor=extractor_vendor, extractor_model=extractor_model,
            evaluation_id=evaluation_id, min_age_seconds=min_age_seconds,
            max_age_seconds=max_age_seconds, sort=sort)
        body = {} if lease_seconds is None else {"lease_seconds": lease_seconds}
        return _Call("POST", "/v1/review-items/claim-next", ClaimedReviewItem, _body(body),
                     params=params)

    def _release_review_item(self, id: str, lease_token: str) -> _Call:
        return _Call("POST", f"/v1/review-items/{_segment(id)}/release", ReviewItem,
                     _body({"lease_token": lease_token}))

    def _resolve_review_item(self, id: str, outcome: str, *, lease_token: Optional[str] = None,
                             field_error_count: Optional[int] = None,
                             review_seconds: Optional[float] = None,
                             source: Optional[str] = None) -> _Call:
        body: Dict[str, Any] = {"outcome": outcome}
        for k, v in (("lease_token", lease_token), ("field_error_count", field_error_count),
                     ("review_seconds", review_seconds), ("source", source)):
            if v is not None:
                body[k] = v
        return _Call("POST", f"/v1/review-items/{_segment(id)}/resolve", ResolvedReviewItem,
                     _body(body))

    def _bulk_resolve_review_items(self, items: Sequence[Union[BulkResolveItem, Mapping[str, Any]]],
                                   *, source: Optional[str] = None) -> _Call:
        body: Dict[str, Any] = {"items": [_bulk_item(i) for i in items]}
        if source is not None:
            body["source"] = source
        return _Call("POST", "/v1/review-items/resolve", BulkResolution, _body(body))

    # -- template suggestions -------------------------------------------------------------

    def _list_template_suggestions(self, *, from_ts: Optional[Instant] = None,
                                   to_ts: Optional[Instant] = None,
                                   min_size: Optional[int] = None) -> _Call:
        params = dict(_window(from_ts, to_ts), min_size=min_size)
        return _Call("GET", "/v1/template-suggestions", TemplateSuggestionList, params=params)

    def _accept_template_suggestion(self, id: str, *, template_id: str,
                                    name: Optional[str] = None,
                                    description: Optional[str] = None,
                                    from_ts: Optional[Instant] = None,
                                    to_ts: Optional[Instant] = None,
                                    min_size: Optional[int] = None,
                                    idempotency_key: Optional[str] = None) -> _Call:
        body: Dict[str, Any] = {"template_id": template_id}
        for k, v in (("name", name), ("description", description)):
            if v is not None:
                body[k] = v
        call = self._post(f"/v1/template-suggestions/{_segment(id)}/accept", body,
                          AcceptedSuggestion, idempotency_key)
        call.params = dict(_window(from_ts, to_ts), min_size=min_size)
        return call

    def _dismiss_template_suggestion(self, id: str, *, from_ts: Optional[Instant] = None,
                                     to_ts: Optional[Instant] = None,
                                     min_size: Optional[int] = None) -> _Call:
        params = dict(_window(from_ts, to_ts), min_size=min_size)
        return _Call("POST", f"/v1/template-suggestions/{_segment(id)}/dismiss",
                     SuggestionDecision, params=params)

    # -- analytics and usage --------------------------------------------------------------

    def _analytics(self, report: str, model: Type[BaseModel], *,
                   from_ts: Optional[Instant] = None, to_ts: Optional[Instant] = None,
                   tz: Optional[str] = None, interval: Optional[str] = None) -> _Call:
        params = dict(_window(from_ts, to_ts), tz=tz, interval=interval)
        return _Call("GET", f"/v1/analytics/{report}", model, params=params)

    def _usage(self) -> _Call:
        return _Call("GET", "/v1/usage", Usage)


def _looks_like_paddle(value: Sequence[Any]) -> bool:
    # A PaddleOCR result is itself a list; a list of documents holds no bare polygons.
    return bool(value) and isinstance(value[0], list) and bool(value[0]) and isinstance(
        value[0][0], list
    ) and bool(value[0][0]) and isinstance(value[0][0][0], (int, float, list))


class Client(_Base):
    """Synchronous client of a preflight server.

    ``url`` defaults to ``PREFLIGHT_URL`` (else ``http://127.0.0.1:8000``), ``api_key`` to
    ``PREFLIGHT_API_KEY``. ``timeout`` is per attempt (connect, send, read) in seconds.
    ``transport`` / ``http_client`` let tests and proxies supply their own httpx pieces.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None, *,
                 timeout: float = 30.0, retries: int = 3, backoff: float = 0.25,
                 max_backoff: float = 10.0, headers: Optional[Dict[str, str]] = None,
                 transport: Optional[httpx.BaseTransport] = None,
                 http_client: Optional[httpx.Client] = None,
                 sleep: Callable[[float], None] = time.sleep):
        super().__init__(url, api_key, timeout=timeout, retries=retries, backoff=backoff,
                         max_backoff=max_backoff, headers=headers)
        self._own = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout, transport=transport)
        self._sleep = sleep

    def close(self) -> None:
        if self._own:
            self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _run(self, call: _Call) -> Any:
        request = self._prepare(call)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(**request)
            except httpx.TransportError as e:
                if attempt > self.retries:
                    raise TransportError(f"cannot reach {self.url}: {e}", attempt) from e
                self._sleep(self._delay(attempt, None))
                continue
            if self._retryable(response) and attempt <= self.retries:
                self._sleep(self._delay(attempt, response))
                continue
            return self._decode(call, response)

    def evaluate(self, document: Any, *, from_: Optional[str] = None,
                 page_size: Optional[PageSize] = None, extractor: Optional[Dict[str, Any]] = None,
                 client_doc_hash: Optional[str] = None, client_correlation_id: Optional[str] = None,
                 pipeline_id: Optional[str] = None, idempotency_key: Optional[str] = None) -> Evaluation:
        """``POST /v1/evaluate``. ``document`` is :class:`Features`, a prepared request dict,
        or anything :func:`preflight.features` reads (features are then computed locally).
        ``extractor`` overrides fields of the suggested ``extractor_metadata`` (e.g. the real
        ``latency_ms`` and ``cost_usd``). For a path or bytes, ``client_doc_hash`` defaults to
        their SHA-256, as the CLI sends it."""
        return self._run(self._evaluate(document, from_=from_, page_size=page_size,
                                        extractor=extractor, client_doc_hash=client_doc_hash,
                                        client_correlation_id=client_correlation_id,
                                        pipeline_id=pipeline_id, idempotency_key=idempotency_key))

    def evaluate_batch(self, documents: Sequence[Any], *, from_: Optional[str] = None,
                       page_size: Optional[PageSize] = None, pipeline_id: Optional[str] = None,
                       idempotency_key: Optional[str] = None) -> BatchResult:
        """``POST /v1/evaluate/batch`` (1 to 100 documents; one result each, in order)."""
        return self._run(self._evaluate_batch(documents, from_=from_, page_size=page_size,
                                              pipeline_id=pipeline_id,
                                              idempotency_key=idempotency_key))

    def register_template(self, documents: Any, *, template_id: str, version: Optional[int] = None,
                          name: Optional[str] = None, description: Optional[str] = None,
                          baseline_reliability: Optional[float] = None,
                          correction_rules: Optional[List[Dict[str, Any]]] = None,
                          status: Optional[str] = None, from_: Optional[str] = None,
                          page_size: Optional[PageSize] = None,
                          extractor: Optional[Dict[str, str]] = None,
                          idempotency_key: Optional[str] = None) -> Template:
        """``POST /v1/templates`` from one sample (a file, an object, features) or a list of
        samples of the same layout (sent as ``exemplars``). ``extractor`` (``vendor``,
        ``model``, ``version``) names the extractor of the samples: the template has seen it,
        and a matched document from another is REVIEW with ``EXTRACTOR_CHANGED``."""
        return self._run(self._register_template(
            documents, template_id=template_id, version=version, name=name,
            description=description, baseline_reliability=baseline_reliability,
            correction_rules=correction_rules, status=status, from_=from_, page_size=page_size,
            extractor=extractor, idempotency_key=idempotency_key))

    def register_template_from_evaluation(
            self, evaluation_id: str, *, template_id: str, version: Optional[int] = None,
            name: Optional[str] = None, description: Optional[str] = None,
            baseline_reliability: Optional[float] = None,
            correction_rules: Optional[List[Dict[str, Any]]] = None,
            idempotency_key: Optional[str] = None) -> Template:
        """``POST /v1/templates/from-evaluation/{evaluation_id}``: the layout of a stored
        evaluation (typically a NEW one) becomes a template."""
        return self._run(self._register_from_evaluation(
            evaluation_id, template_id=template_id, version=version, name=name,
            description=description, baseline_reliability=baseline_reliability,
            correction_rules=correction_rules, idempotency_key=idempotency_key))

    def get_template(self, id: str, *, version: Optional[int] = None,
                     include_exemplars: bool = False) -> Template:
        """``GET /v1/templates/{id}``: ``id`` is a version id or a ``template_id``."""
        return self._run(self._get_template(id, version=version,
                                            include_exemplars=include_exemplars))

    def list_templates(self, *, status: Optional[str] = None, template_id: Optional[str] = None,
                       limit: Optional[int] = None, cursor: Optional[str] = None) -> TemplatePage:
        """``GET /v1/templates`` (one page)."""
        return self._run(self._list_templates(status=status, template_id=template_id,
                                              limit=limit, cursor=cursor))

    def iter_templates(self, **filters: Any) -> Iterator[Template]:
        """Every template version matching ``filters``, following the cursor."""
        return _follow(self.list_templates, filters)

    def add_exemplar(self, id: str, document: Any, *, version: Optional[int] = None,
                     from_: Optional[str] = None, page_size: Optional[PageSize] = None,
                     idempotency_key: Optional[str] = None) -> Template:
        """``POST /v1/templates/{id}/exemplars``."""
        return self._run(self._add_exemplar(id, document, version=version, from_=from_,
                                            page_size=page_size, idempotency_key=idempotency_key))

    def set_template_status(self, id: str, status: str, *, version: Optional[int] = None) -> Template:
        """``PATCH /v1/templates/{id}/status`` (``draft``, ``active``, ``deprecated``, ``archived``)."""
        return self._run(self._set_template_status(id, status, version=version))

    def list_evaluations(self, *, decision: Optional[str] = None,
                         template_id: Optional[str] = None, correlation_id: Optional[str] = None,
                         pipeline_id: Optional[str] = None, min_reliability: Optional[float] = None,
                         max_drift: Optional[float] = None, from_: Optional[datetime] = None,
                         to: Optional[datetime] = None, limit: Optional[int] = None,
                         cursor: Optional[str] = None) -> EvaluationPage:
        """``GET /v1/evaluations`` (one page, newest first)."""
        return self._run(self._list_evaluations(
            decision=decision, template_id=template_id, correlation_id=correlation_id,
            pipeline_id=pipeline_id, min_reliability=min_reliability, max_drift=max_drift,
            from_=from_, to=to, limit=limit, cursor=cursor))

    def iter_evaluations(self, **filters: Any) -> Iterator[EvaluationRecord]:
        """Every evaluation matching ``filters``, newest first, following the cursor."""
        return _follow(self.list_evaluations, filters)

    def get_evaluation(self, evaluation_id: str) -> EvaluationRecord:
        """``GET /v1/evaluations/{id}``."""
        return self._run(self._get_evaluation(evaluation_id))

    def feedback(self, evaluation_id: str, outcome: str, *,
                 field_error_count: Optional[int] = None, review_seconds: Optional[float] = None,
                 source: Optional[str] = None, idempotency_key: Optional[str] = None) -> Feedback:
        """``POST /v1/evaluations/{id}/feedback`` (``correct``, ``corrected`` or ``rejected``)."""
        return self._run(self._feedback(evaluation_id, outcome,
                                        field_error_count=field_error_count,
                                        review_seconds=review_seconds, source=source,
                                        idempotency_key=idempotency_key))

    def template_drift(self, id: str, *, version: Optional[int] = None,
                       from_: Optional[datetime] = None, to: Optional[datetime] = None,
                       bucket: Optional[str] = None) -> DriftReport:
        """``GET /v1/templates/{id}/drift``."""
        return self._run(self._template_drift(id, version=version, from_=from_, to=to,
                                              bucket=bucket))

    def create_alert_rule(self, *, name: str, metric: str, severity: str,
                          operator: Optional[str] = None, threshold: Optional[float] = None,
                          template_id: Optional[str] = None,
                          enabled: Optional[bool] = None,
                          window_seconds: Optional[int] = None,
                          min_volume: Optional[int] = None) -> AlertRule:
        """``POST /v1/alert-rules`` (docs/alerts.md). A tenant's first rule replaces the
        built-in rules. Window metrics (``new_rate``, ``reject_rate``, ``review_rate``,
        ``automation_rate``) take ``window_seconds`` and ``min_volume``."""
        return self._run(self._create_alert_rule(
            name=name, metric=metric, severity=severity, operator=operator,
            threshold=threshold, template_id=template_id, enabled=enabled,
            window_seconds=window_seconds, min_volume=min_volume))

    def get_alert_rule(self, id: str) -> AlertRule:
        """``GET /v1/alert-rules/{id}``, with a window rule's progress."""
        return self._run(self._get_alert_rule(id))

    def list_alert_rules(self) -> List[AlertRule]:
        """``GET /v1/alert-rules``: the tenant's rules in creation order."""
        return self._run(self._list_alert_rules()).items

    def update_alert_rule(self, id: str, **changes: Any) -> AlertRule:
        """``PATCH /v1/alert-rules/{id}`` with the fields given (``enabled=False``;
        ``template_id=None`` widens the rule to every template)."""
        return self._run(self._update_alert_rule(id, changes))

    def delete_alert_rule(self, id: str) -> None:
        """``DELETE /v1/alert-rules/{id}``."""
        self._run(self._delete_alert_rule(id))

    def list_alerts(self, *, status: Optional[str] = None, severity: Optional[str] = None,
                    metric: Optional[str] = None, delivery_status: Optional[str] = None,
                    template_id: Optional[str] = None, limit: Optional[int] = None,
                    cursor: Optional[str] = None) -> AlertPage:
        """``GET /v1/alerts`` (one page, newest first)."""
        return self._run(self._list_alerts(
            status=status, severity=severity, metric=metric, delivery_status=delivery_status,
            template_id=template_id, limit=limit, cursor=cursor))

    def iter_alerts(self, **filters: Any) -> Iterator[AlertRecord]:
        """Every alert matching ``filters``, newest first, following the cursor."""
        return _follow(self.list_alerts, filters)

    def get_alert(self, id: str) -> AlertRecord:
        """``GET /v1/alerts/{id}``."""
        return self._run(self._get_alert(id))

    def acknowledge_alert(self, id: str) -> AlertRecord:
        """``POST /v1/alerts/{id}/acknowledge``."""
        return self._run(self._move_alert(id, "acknowledge"))

    def resolve_alert(self, id: str) -> AlertRecord:
        """``POST /v1/alerts/{id}/resolve``."""
        return self._run(self._move_alert(id, "resolve"))

    def export_templates(self, *, status: Optional[str] = None,
                         template_id: Optional[str] = None) -> Dict[str, Any]:
        """``GET /v1/templates/export``: the tenant's versions (or those of ``status`` /
        ``template_id``) with their exemplars, as the export document (docs/python.md) that
        :meth:`preflight.Engine.from_export` loads."""
        return self._run(self._export_templates(status=status, template_id=template_id))

    # -- the review queue (docs/review.md) --------------------------------------------------

    def list_review_items(self, *, status: Optional[str] = None, decision: Optional[str] = None,
                          reason: Optional[str] = None, template_id: Optional[str] = None,
                          extractor_vendor: Optional[str] = None,
                          extractor_model: Optional[str] = None,
                          evaluation_id: Optional[str] = None,
                          min_age_seconds: Optional[int] = None,
                          max_age_seconds: Optional[int] = None, sort: Optional[str] = None,
                          limit: Optional[int] = None, cursor: Optional[str] = None) -> ReviewPage:
        """``GET /v1/review-items`` (one page): by default the unresolved items (``open`` and
        ``claimed``), highest priority first, then oldest; ``sort="age"`` is oldest first.
        ``status`` is ``open``, ``claimed``, ``resolved`` or ``unresolved``; the other filters
        combine with AND."""
        return self._run(self._list_review_items(
            status=status, decision=decision, reason=reason, template_id=template_id,
            extractor_vendor=extractor_vendor, extractor_model=extractor_model,
            evaluation_id=evaluation_id, min_age_seconds=min_age_seconds,
            max_age_seconds=max_age_seconds, sort=sort, limit=limit, cursor=cursor))

    def iter_review_items(self, **filters: Any) -> Iterator[ReviewItem]:
        """Every item matching ``filters`` (those of :meth:`list_review_items`), in the
        queue's order, following the cursor. Pages neither skip nor repeat items while new
        ones arrive."""
        return _follow(self.list_review_items, filters)

    def get_review_item(self, id: str) -> ReviewItem:
        """``GET /v1/review-items/{id}``."""
        return self._run(self._get_review_item(id))

    def claim_review_item(self, id: str, *, lease_seconds: Optional[int] = None,
                          lease_token: Optional[str] = None) -> ClaimedReviewItem:
        """``POST /v1/review-items/{id}/claim``: hold the item for ``lease_seconds`` (1 to
        14 400, default 600). With the claim's ``lease_token``, extends it instead. While
        someone else holds the item, or once it is resolved, raises :class:`ConflictError`
        (409). A lease that runs out returns the item to the queue by itself."""
        return self._run(self._claim_review_item(id, lease_seconds=lease_seconds,
                                                 lease_token=lease_token))

    def claim_next_review_item(self, *, decision: Optional[str] = None,
                               reason: Optional[str] = None, template_id: Optional[str] = None,
                               extractor_vendor: Optional[str] = None,
                               extractor_model: Optional[str] = None,
                               evaluation_id: Optional[str] = None,
                               min_age_seconds: Optional[int] = None,
                               max_age_seconds: Optional[int] = None, sort: Optional[str] = None,
                               lease_seconds: Optional[int] = None) -> Optional[ClaimedReviewItem]:
        """``POST /v1/review-items/claim-next``: claims the first open item the filters
        select, in the queue's order; ``None`` when nothing is open. Reviewers asking at
        once each get a different item, so a worker loop needs no coordination."""
        return self._run(self._claim_next_review_item(
            decision=decision, reason=reason, template_id=template_id,
            extractor_vendor=extractor_vendor, extractor_model=extractor_model,
            evaluation_id=evaluation_id, min_age_seconds=min_age_seconds,
            max_age_seconds=max_age_seconds, sort=sort, lease_seconds=lease_seconds))

    def release_review_item(self, id: str, lease_token: str) -> ReviewItem:
        """``POST /v1/review-items/{id}/release``: give a claimed item back now rather than
        when its lease runs out. 409 when the token no longer holds it."""
        return self._run(self._release_review_item(id, lease_token))

    def resolve_review_item(self, id: str, outcome: str, *, lease_token: Optional[str] = None,
                            field_error_count: Optional[int] = None,
                            review_seconds: Optional[float] = None,
                            source: Optional[str] = None) -> ResolvedReviewItem:
        """``POST /v1/review-items/{id}/resolve``: ``outcome`` (``correct``, ``corrected``,
        ``rejected``) is recorded as the evaluation's feedback in the same transaction, as
        :meth:`feedback` would record it (``source`` defaults to ``review-queue``,
        ``review_seconds`` to the time since the claim). An open item needs no token; one
        held by someone else is a 409. Repeating the same resolve is safe: it answers the
        item as it is."""
        return self._run(self._resolve_review_item(
            id, outcome, lease_token=lease_token, field_error_count=field_error_count,
            review_seconds=review_seconds, source=source))

    def bulk_resolve_review_items(self, items: Sequence[Union[BulkResolveItem, Mapping[str, Any]]],
                                  *, source: Optional[str] = None) -> BulkResolution:
        """``POST /v1/review-items/resolve``: 1 to 100 items (:class:`BulkResolveItem` or
        dicts with ``id``, ``outcome`` and optionally ``lease_token``, ``field_error_count``),
        each resolved on its own. An item that cannot be resolved does not raise: its result
        carries the ``problem`` (404, 409, 422) and the others go through."""
        return self._run(self._bulk_resolve_review_items(items, source=source))

    # -- template suggestions (docs/review.md) ----------------------------------------------

    def list_template_suggestions(self, *, from_ts: Optional[Instant] = None,
                                  to_ts: Optional[Instant] = None,
                                  min_size: Optional[int] = None) -> TemplateSuggestionList:
        """``GET /v1/template-suggestions``: the tenant's recurring unregistered layouts (NEW
        evaluations of ``[from_ts, to_ts)``, default the last 30 days, clustered), largest
        first. ``min_size`` is the smallest cluster suggested (default 3)."""
        return self._run(self._list_template_suggestions(from_ts=from_ts, to_ts=to_ts,
                                                         min_size=min_size))

    def accept_template_suggestion(self, id: str, *, template_id: str, name: Optional[str] = None,
                                   description: Optional[str] = None,
                                   from_ts: Optional[Instant] = None,
                                   to_ts: Optional[Instant] = None,
                                   min_size: Optional[int] = None,
                                   idempotency_key: Optional[str] = None) -> AcceptedSuggestion:
        """``POST /v1/template-suggestions/{id}/accept``: registers the suggestion's layout
        as ``template_id`` version 1 (``.template`` of the answer) from the cluster's
        exemplars; its members leave later listings. The server clusters the window again,
        so give the window and ``min_size`` you listed with; a 409 means the clusters have
        changed since (list again) or the suggestion was decided already."""
        return self._run(self._accept_template_suggestion(
            id, template_id=template_id, name=name, description=description, from_ts=from_ts,
            to_ts=to_ts, min_size=min_size, idempotency_key=idempotency_key))

    def dismiss_template_suggestion(self, id: str, *, from_ts: Optional[Instant] = None,
                                    to_ts: Optional[Instant] = None,
                                    min_size: Optional[int] = None) -> SuggestionDecision:
        """``POST /v1/template-suggestions/{id}/dismiss``: puts the layout aside for good;
        neither this suggestion nor a later cluster of the same layout is listed again.
        Dismissing again answers the same decision. Give the listing's window, as for
        :meth:`accept_template_suggestion`."""
        return self._run(self._dismiss_template_suggestion(id, from_ts=from_ts, to_ts=to_ts,
                                                           min_size=min_size))

    # -- analytics and usage (docs/analytics.md) --------------------------------------------

    def analytics_summary(self, *, from_ts: Optional[Instant] = None,
                          to_ts: Optional[Instant] = None,
                          tz: Optional[str] = None) -> AnalyticsSummary:
        """``GET /v1/analytics/summary``: decisions, drift, reliability and rates over
        ``[from_ts, to_ts)`` (default the last 30 days, widened to whole hours; the answer
        says which range it covers), with the review queue's state now. ``tz`` is ``UTC``
        or a whole-hour offset such as ``+05:00``. A bad range is a
        :class:`BadRequestError` (400 ``INVALID_QUERY``) naming every bad parameter."""
        return self._run(self._analytics("summary", AnalyticsSummary, from_ts=from_ts,
                                         to_ts=to_ts, tz=tz))

    def analytics_timeseries(self, *, from_ts: Optional[Instant] = None,
                             to_ts: Optional[Instant] = None, tz: Optional[str] = None,
                             interval: Optional[str] = None) -> Timeseries:
        """``GET /v1/analytics/timeseries``: the summary's figures per ``interval`` (``hour``
        or ``day``, default ``day``; days begin at midnight in ``tz``), every bucket of the
        range included, at most 1 000."""
        return self._run(self._analytics("timeseries", Timeseries, from_ts=from_ts,
                                         to_ts=to_ts, tz=tz, interval=interval))

    def analytics_extractors(self, *, from_ts: Optional[Instant] = None,
                             to_ts: Optional[Instant] = None,
                             tz: Optional[str] = None) -> ExtractorsReport:
        """``GET /v1/analytics/extractors``: per extractor vendor, model and version, so an
        upgrade can be compared with the version before it."""
        return self._run(self._analytics("extractors", ExtractorsReport, from_ts=from_ts,
                                         to_ts=to_ts, tz=tz))

    def analytics_templates(self, *, from_ts: Optional[Instant] = None,
                            to_ts: Optional[Instant] = None,
                            tz: Optional[str] = None) -> TemplatesReport:
        """``GET /v1/analytics/templates``: per template version, with the change points its
        drift detector confirmed in the range."""
        return self._run(self._analytics("templates", TemplatesReport, from_ts=from_ts,
                                         to_ts=to_ts, tz=tz))

    def analytics_calibration(self, *, from_ts: Optional[Instant] = None,
                              to_ts: Optional[Instant] = None,
                              tz: Optional[str] = None) -> Calibration:
        """``GET /v1/analytics/calibration``: whether reliability means what it says and
        review catches the errors, over evaluations created in the range that have feedback
        (from :meth:`feedback` or a resolved review item)."""
        return self._run(self._analytics("calibration", Calibration, from_ts=from_ts,
                                         to_ts=to_ts, tz=tz))

    def usage(self) -> Usage:
        """``GET /v1/usage``: the tenant's plan and the evaluations stored this calendar
        month (UTC); an idempotent replay does not count again."""
        return self._run(self._usage())


class AsyncClient(_Base):
    """Asynchronous client (asyncio or trio, through httpx/anyio); the same methods as
    :class:`Client`, awaited. Use ``async with`` or ``await client.aclose()``."""

    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None, *,
                 timeout: float = 30.0, retries: int = 3, backoff: float = 0.25,
                 max_backoff: float = 10.0, headers: Optional[Dict[str, str]] = None,
                 transport: Optional[httpx.AsyncBaseTransport] = None,
                 http_client: Optional[httpx.AsyncClient] = None,
                 sleep: Optional[Callable[[float], Any]] = None):
        super().__init__(url, api_key, timeout=timeout, retries=retries, backoff=backoff,
                         max_backoff=max_backoff, headers=headers)
        self._own = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout, transport=transport)
        self._sleep = sleep

    async def aclose(self) -> None:
        if self._own:
            await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _wait(self, seconds: float) -> None:
        if self._sleep is not None:
            await self._sleep(seconds)
        else:
            import anyio

            await anyio.sleep(seconds)

    async def _run(self, call: _Call) -> Any:
        request = self._prepare(call)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(**request)
            except httpx.TransportError as e:
                if attempt > self.retries:
                    raise TransportError(f"cannot reach {self.url}: {e}", attempt) from e
                await self._wait(self._delay(attempt, None))
                continue
            if self._retryable(response) and attempt <= self.retries:
                await self._wait(self._delay(attempt, response))
                continue
            return self._decode(call, response)

    async def evaluate(self, document: Any, *, from_: Optional[str] = None,
                       page_size: Optional[PageSize] = None,
                       extractor: Optional[Dict[str, Any]] = None,
                       client_doc_hash: Optional[str] = None,
                       client_correlation_id: Optional[str] = None,
                       pipeline_id: Optional[str] = None,
                       idempotency_key: Optional[str] = None) -> Evaluation:
        """See :meth:`Client.evaluate`."""
        return await self._run(self._evaluate(document, from_=from_, page_size=page_size,
                                              extractor=extractor, client_doc_hash=client_doc_hash,
                                              client_correlation_id=client_correlation_id,
                                              pipeline_id=pipeline_id,
                                              idempotency_key=idempotency_key))

    async def evaluate_batch(self, documents: Sequence[Any], *, from_: Optional[str] = None,
                             page_size: Optional[PageSize] = None,
                             pipeline_id: Optional[str] = None,
                             idempotency_key: Optional[str] = None) -> BatchResult:
        """See :meth:`Client.evaluate_batch`."""
        return await self._run(self._evaluate_batch(documents, from_=from_, page_size=page_size,
                                                    pipeline_id=pipeline_id,
                                                    idempotency_key=idempotency_key))

    async def register_template(self, documents: Any, *, template_id: str,
                                version: Optional[int] = None, name: Optional[str] = None,
                                description: Optional[str] = None,
                                baseline_reliability: Optional[float] = None,
                                correction_rules: Optional[List[Dict[str, Any]]] = None,
                                status: Optional[str] = None, from_: Optional[str] = None,
                                page_size: Optional[PageSize] = None,
                                extractor: Optional[Dict[str, str]] = None,
                                idempotency_key: Optional[str] = None) -> Template:
        """See :meth:`Client.register_template`."""
        return await self._run(self._register_template(
            documents, template_id=template_id, version=version, name=name,
            description=description, baseline_reliability=baseline_reliability,
            correction_rules=correction_rules, status=status, from_=from_, page_size=page_size,
            extractor=extractor, idempotency_key=idempotency_key))

    async def register_template_from_evaluation(
            self, evaluation_id: str, *, template_id: str, version: Optional[int] = None,
            name: Optional[str] = None, description: Optional[str] = None,
            baseline_reliability: Optional[float] = None,
            correction_rules: Optional[List[Dict[str, Any]]] = None,
            idempotency_key: Optional[str] = None) -> Template:
        """See :meth:`Client.register_template_from_evaluation`."""
        return await self._run(self._register_from_evaluation(
            evaluation_id, template_id=template_id, version=version, name=name,
            description=description, baseline_reliability=baseline_reliability,
            correction_rules=correction_rules, idempotency_key=idempotency_key))

    async def get_template(self, id: str, *, version: Optional[int] = None,
                           include_exemplars: bool = False) -> Template:
        """See :meth:`Client.get_template`."""
        return await self._run(self._get_template(id, version=version,
                                                  include_exemplars=include_exemplars))

    async def list_templates(self, *, status: Optional[str] = None,
                             template_id: Optional[str] = None, limit: Optional[int] = None,
                             cursor: Optional[str] = None) -> TemplatePage:
        """See :meth:`Client.list_templates`."""
        return await self._run(self._list_templates(status=status, template_id=template_id,
                                                    limit=limit, cursor=cursor))

    def iter_templates(self, **filters: Any) -> AsyncIterator[Template]:
        """See :meth:`Client.iter_templates` (``async for``)."""
        return _follow_async(self.list_templates, filters)

    async def add_exemplar(self, id: str, document: Any, *, version: Optional[int] = None,
                           from_: Optional[str] = None, page_size: Optional[PageSize] = None,
                           idempotency_key: Optional[str] = None) -> Template:
        """See :meth:`Client.add_exemplar`."""
        return await self._run(self._add_exemplar(id, document, version=version, from_=from_,
                                                  page_size=page_size,
                                                  idempotency_key=idempotency_key))

    async def set_template_status(self, id: str, status: str, *,
                                  version: Optional[int] = None) -> Template:
        """See :meth:`Client.set_template_status`."""
        return await self._run(self._set_template_status(id, status, version=version))

    async def list_evaluations(self, *, decision: Optional[str] = None,
                               template_id: Optional[str] = None,
                               correlation_id: Optional[str] = None,
                               pipeline_id: Optional[str] = None,
                               min_reliability: Optional[float] = None,
                               max_drift: Optional[float] = None,
                               from_: Optional[datetime] = None, to: Optional[datetime] = None,
                               limit: Optional[int] = None,
                               cursor: Optional[str] = None) -> EvaluationPage:
        """See :meth:`Client.list_evaluations`."""
        return await self._run(self._list_evaluations(
            decision=decision, template_id=template_id, correlation_id=correlation_id,
            pipeline_id=pipeline_id, min_reliability=min_reliability, max_drift=max_drift,
            from_=from_, to=to, limit=limit, cursor=cursor))

    def iter_evaluations(self, **filters: Any) -> AsyncIterator[EvaluationRecord]:
        """See :meth:`Client.iter_evaluations` (``async for``)."""
        return _follow_async(self.list_evaluations, filters)

    async def get_evaluation(self, evaluation_id: str) -> EvaluationRecord:
        """See :meth:`Client.get_evaluation`."""
        return await self._run(self._get_evaluation(evaluation_id))

    async def feedback(self, evaluation_id: str, outcome: str, *,
                       field_error_count: Optional[int] = None,
                       review_seconds: Optional[float] = None, source: Optional[str] = None,
                       idempotency_key: Optional[str] = None) -> Feedback:
        """See :meth:`Client.feedback`."""
        return await self._run(self._feedback(evaluation_id, outcome,
                                              field_error_count=field_error_count,
                                              review_seconds=review_seconds, source=source,
                                              idempotency_key=idempotency_key))

    async def template_drift(self, id: str, *, version: Optional[int] = None,
                             from_: Optional[datetime] = None, to: Optional[datetime] = None,
                             bucket: Optional[str] = None) -> DriftReport:
        """See :meth:`Client.template_drift`."""
        return await self._run(self._template_drift(id, version=version, from_=from_, to=to,
                                                    bucket=bucket))

    async def create_alert_rule(self, *, name: str, metric: str, severity: str,
                                operator: Optional[str] = None,
                                threshold: Optional[float] = None,
                                template_id: Optional[str] = None,
                                enabled: Optional[bool] = None,
                                window_seconds: Optional[int] = None,
                                min_volume: Optional[int] = None) -> AlertRule:
        """See :meth:`Client.create_alert_rule`."""
        return await self._run(self._create_alert_rule(
            name=name, metric=metric, severity=severity, operator=operator,
            threshold=threshold, template_id=template_id, enabled=enabled,
            window_seconds=window_seconds, min_volume=min_volume))

    async def get_alert_rule(self, id: str) -> AlertRule:
        """See :meth:`Client.get_alert_rule`."""
        return await self._run(self._get_alert_rule(id))

    async def list_alert_rules(self) -> List[AlertRule]:
        """See :meth:`Client.list_alert_rules`."""
        return (await self._run(self._list_alert_rules())).items

    async def update_alert_rule(self, id: str, **changes: Any) -> AlertRule:
        """See :meth:`Client.update_alert_rule`."""
        return await self._run(self._update_alert_rule(id, changes))

    async def delete_alert_rule(self, id: str) -> None:
        """See :meth:`Client.delete_alert_rule`."""
        await self._run(self._delete_alert_rule(id))

    async def list_alerts(self, *, status: Optional[str] = None,
                          severity: Optional[str] = None, metric: Optional[str] = None,
                          delivery_status: Optional[str] = None,
                          template_id: Optional[str] = None, limit: Optional[int] = None,
                          cursor: Optional[str] = None) -> AlertPage:
        """See :meth:`Client.list_alerts`."""
        return await self._run(self._list_alerts(
            status=status, severity=severity, metric=metric, delivery_status=delivery_status,
            template_id=template_id, limit=limit, cursor=cursor))

    def iter_alerts(self, **filters: Any) -> AsyncIterator[AlertRecord]:
        """See :meth:`Client.iter_alerts` (``async for``)."""
        return _follow_async(self.list_alerts, filters)

    async def get_alert(self, id: str) -> AlertRecord:
        """See :meth:`Client.get_alert`."""
        return await self._run(self._get_alert(id))

    async def acknowledge_alert(self, id: str) -> AlertRecord:
        """See :meth:`Client.acknowledge_alert`."""
        return await self._run(self._move_alert(id, "acknowledge"))

    async def resolve_alert(self, id: str) -> AlertRecord:
        """See :meth:`Client.resolve_alert`."""
        return await self._run(self._move_alert(id, "resolve"))

    async def export_templates(self, *, status: Optional[str] = None,
                               template_id: Optional[str] = None) -> Dict[str, Any]:
        """See :meth:`Client.export_templates`."""
        return await self._run(self._export_templates(status=status, template_id=template_id))

    async def list_review_items(self, *, status: Optional[str] = None,
                                decision: Optional[str] = None, reason: Optional[str] = None,
                                template_id: Optional[str] = None,
                                extractor_vendor: Optional[str] = None,
                                extractor_model: Optional[str] = None,
                                evaluation_id: Optional[str] = None,
                                min_age_seconds: Optional[int] = None,
                                max_age_seconds: Optional[int] = None,
                                sort: Optional[str] = None, limit: Optional[int] = None,
                                cursor: Optional[str] = None) -> ReviewPage:
        """See :meth:`Client.list_review_items`."""
        return await self._run(self._list_review_items(
            status=status, decision=decision, reason=reason, template_id=template_id,
            extractor_vendor=extractor_vendor, extractor_model=extractor_model,
            evaluation_id=evaluation_id, min_age_seconds=min_age_seconds,
            max_age_seconds=max_age_seconds, sort=sort, limit=limit, cursor=cursor))

    def iter_review_items(self, **filters: Any) -> AsyncIterator[ReviewItem]:
        """See :meth:`Client.iter_review_items` (``async for``)."""
        return _follow_async(self.list_review_items, filters)

    async def get_review_item(self, id: str) -> ReviewItem:
        """See :meth:`Client.get_review_item`."""
        return await self._run(self._get_review_item(id))

    async def claim_review_item(self, id: str, *, lease_seconds: Optional[int] = None,
                                lease_token: Optional[str] = None) -> ClaimedReviewItem:
        """See :meth:`Client.claim_review_item`."""
        return await self._run(self._claim_review_item(id, lease_seconds=lease_seconds,
                                                       lease_token=lease_token))

    async def claim_next_review_item(
            self, *, decision: Optional[str] = None, reason: Optional[str] = None,
            template_id: Optional[str] = None, extractor_vendor: Optional[str] = None,
            extractor_model: Optional[str] = None, evaluation_id: Optional[str] = None,
            min_age_seconds: Optional[int] = None, max_age_seconds: Optional[int] = None,
            sort: Optional[str] = None,
            lease_seconds: Optional[int] = None) -> Optional[ClaimedReviewItem]:
        """See :meth:`Client.claim_next_review_item`."""
        return await self._run(self._claim_next_review_item(
            decision=decision, reason=reason, template_id=template_id,
            extractor_vendor=extractor_vendor, extractor_model=extractor_model,
            evaluation_id=evaluation_id, min_age_seconds=min_age_seconds,
            max_age_seconds=max_age_seconds, sort=sort, lease_seconds=lease_seconds))

    async def release_review_item(self, id: str, lease_token: str) -> ReviewItem:
        """See :meth:`Client.release_review_item`."""
        return await self._run(self._release_review_item(id, lease_token))

    async def resolve_review_item(self, id: str, outcome: str, *,
                                  lease_token: Optional[str] = None,
                                  field_error_count: Optional[int] = None,
                                  review_seconds: Optional[float] = None,
                                  source: Optional[str] = None) -> ResolvedReviewItem:
        """See :meth:`Client.resolve_review_item`."""
        return await self._run(self._resolve_review_item(
            id, outcome, lease_token=lease_token, field_error_count=field_error_count,
            review_seconds=review_seconds, source=source))

    async def bulk_resolve_review_items(
            self, items: Sequence[Union[BulkResolveItem, Mapping[str, Any]]], *,
            source: Optional[str] = None) -> BulkResolution:
        """See :meth:`Client.bulk_resolve_review_items`."""
        return await self._run(self._bulk_resolve_review_items(items, source=source))

    async def list_template_suggestions(self, *, from_ts: Optional[Instant] = None,
                                        to_ts: Optional[Instant] = None,
                                        min_size: Optional[int] = None) -> TemplateSuggestionList:
        """See :meth:`Client.list_template_suggestions`."""
        return await self._run(self._list_template_suggestions(from_ts=from_ts, to_ts=to_ts,
                                                               min_size=min_size))

    async def accept_template_suggestion(self, id: str, *, template_id: str,
                                         name: Optional[str] = None,
                                         description: Optional[str] = None,
                                         from_ts: Optional[Instant] = None,
                                         to_ts: Optional[Instant] = None,
                                         min_size: Optional[int] = None,
                                         idempotency_key: Optional[str] = None) -> AcceptedSuggestion:
        """See :meth:`Client.accept_template_suggestion`."""
        return await self._run(self._accept_template_suggestion(
            id, template_id=template_id, name=name, description=description, from_ts=from_ts,
            to_ts=to_ts, min_size=min_size, idempotency_key=idempotency_key))

    async def dismiss_template_suggestion(self, id: str, *, from_ts: Optional[Instant] = None,
                                          to_ts: Optional[Instant] = None,
                                          min_size: Optional[int] = None) -> SuggestionDecision:
        """See :meth:`Client.dismiss_template_suggestion`."""
        return await self._run(self._dismiss_template_suggestion(id, from_ts=from_ts,
                                                                 to_ts=to_ts, min_size=min_size))

    async def analytics_summary(self, *, from_ts: Optional[Instant] = None,
                                to_ts: Optional[Instant] = None,
                                tz: Optional[str] = None) -> AnalyticsSummary:
        """See :meth:`Client.analytics_summary`."""
        return await self._run(self._analytics("summary", AnalyticsSummary, from_ts=from_ts,
                                               to_ts=to_ts, tz=tz))

    async def analytics_timeseries(self, *, from_ts: Optional[Instant] = None,
                                   to_ts: Optional[Instant] = None, tz: Optional[str] = None,
                                   interval: Optional[str] = None) -> Timeseries:
        """See :meth:`Client.analytics_timeseries`."""
        return await self._run(self._analytics("timeseries", Timeseries, from_ts=from_ts,
                                               to_ts=to_ts, tz=tz, interval=interval))

    async def analytics_extractors(self, *, from_ts: Optional[Instant] = None,
                                   to_ts: Optional[Instant] = None,
                                   tz: Optional[str] = None) -> ExtractorsReport:
        """See :meth:`Client.analytics_extractors`."""
        return await self._run(self._analytics("extractors", ExtractorsReport, from_ts=from_ts,
                                               to_ts=to_ts, tz=tz))

    async def analytics_templates(self, *, from_ts: Optional[Instant] = None,
                                  to_ts: Optional[Instant] = None,
                                  tz: Optional[str] = None) -> TemplatesReport:
        """See :meth:`Client.analytics_templates`."""
        return await self._run(self._analytics("templates", TemplatesReport, from_ts=from_ts,
                                               to_ts=to_ts, tz=tz))

    async def analytics_calibration(self, *, from_ts: Optional[Instant] = None,
                                    to_ts: Optional[Instant] = None,
                                    tz: Optional[str] = None) -> Calibration:
        """See :meth:`Client.analytics_calibration`."""
        return await self._run(self._analytics("calibration", Calibration, from_ts=from_ts,
                                               to_ts=to_ts, tz=tz))

    async def usage(self) -> Usage:
        """See :meth:`Client.usage`."""
        return await self._run(self._usage())
