"""``preflight.Engine``: the decision engine in-process, on exported templates.

The engine is preflight-engine itself (``preflight._native.Engine``): the same template
construction (exemplars, baseline reliability, correction rules, outcome statistics), the
same index and the same default policy as the server, so the same input and templates give
the server's decision, confidence, template and replay hash.

The export document (docs/python.md)::

    {"format": "preflight-templates", "version": 1,
     "templates": [ <GET /v1/templates/{id}?include=exemplars>, ... ]}

Only ``active`` versions take part in matching, as on the server.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, Mapping, Optional, Union

from . import _native
from ._client import EXPORT_FORMAT, EXPORT_VERSION, _evaluate_body
from ._errors import EngineError, _engine_error
from ._features import PageSize
from ._models import OfflineEvaluation, Template

__all__ = ["Engine"]


class Engine:
    """A tenant's templates held in the engine's index, evaluated without a server."""

    def __init__(self, templates: Iterable[Union[Mapping[str, Any], Template]]):
        records = [
            t.model_dump(mode="json", exclude_none=True) if isinstance(t, Template) else dict(t)
            for t in templates
        ]
        try:
            self._native = _native.Engine(json.dumps(records, allow_nan=False))
        except _native.EngineError as e:
            raise _engine_error(e) from None

    @classmethod
    def from_templates(cls, templates: Iterable[Union[Mapping[str, Any], Template]]) -> "Engine":
        """From template objects as the API returns them, with their exemplars
        (:meth:`Client.get_template` with ``include_exemplars=True``, or their dicts)."""
        return cls(templates)

    @classmethod
    def from_export(cls, source: Union[str, "os.PathLike[str]", Mapping[str, Any]]) -> "Engine":
        """From an export document: a path to its JSON file, or the parsed document
        (:meth:`Client.export_templates`)."""
        if isinstance(source, Mapping):
            doc: Any = source
        else:
            with open(source, "rb") as f:
                doc = json.load(f)
        if not isinstance(doc, Mapping) or doc.get("format") != EXPORT_FORMAT:
            raise EngineError(f"not a preflight template export (expected format {EXPORT_FORMAT!r})")
        if doc.get("version") != EXPORT_VERSION:
            raise EngineError(
                f"unsupported export version {doc.get('version')!r} (this package reads {EXPORT_VERSION})"
            )
        templates = doc.get("templates")
        if not isinstance(templates, list):
            raise EngineError("export: 'templates' must be a list")
        return cls(templates)

    def __len__(self) -> int:
        """Number of active template versions held."""
        return len(self._native)

    def evaluate(self, document: Any, *, from_: Optional[str] = None,
                 page_size: Optional[PageSize] = None,
                 extractor: Optional[Dict[str, Any]] = None) -> OfflineEvaluation:
        """Decides one document as the server would. ``document`` is anything
        :meth:`Client.evaluate` takes (extractor output, :class:`Features`, a request dict).
        Invalid features raise :class:`preflight.EngineError` listing the fields a server
        422 would list."""
        body = _evaluate_body(document, from_=from_, page_size=page_size, extractor=extractor,
                              client_doc_hash=None, client_correlation_id=None, pipeline_id=None)
        try:
            text = self._native.evaluate_json(json.dumps(body, allow_nan=False))
        except _native.EngineError as e:
            raise _engine_error(e) from None
        return OfflineEvaluation.model_validate_json(text)
