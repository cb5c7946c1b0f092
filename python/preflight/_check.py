"""The three-line path: ``preflight.check(document)`` with a default client.

The default client is made on first use from ``PREFLIGHT_URL`` (default
``http://127.0.0.1:8000``) and ``PREFLIGHT_API_KEY``, or set with :func:`configure`.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional

from ._client import Client
from ._features import PageSize
from ._models import Evaluation

__all__ = ["check", "configure", "default_client"]

_lock = threading.Lock()
_default: Optional[Client] = None


def configure(url: Optional[str] = None, api_key: Optional[str] = None, **options: Any) -> Client:
    """Replaces the default client used by :func:`check` (options as for :class:`Client`)."""
    global _default
    client = Client(url, api_key, **options)
    with _lock:
        old, _default = _default, client
    if old is not None:
        old.close()
    return client


def default_client() -> Client:
    """The client :func:`check` uses, created from the environment on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = Client()
        return _default


def check(document: Any, *, from_: Optional[str] = None, page_size: Optional[PageSize] = None,
          extractor: Optional[Dict[str, Any]] = None, client: Optional[Client] = None,
          **options: Any) -> Evaluation:
    """Features of ``document`` computed locally, then ``POST /v1/evaluate``.

    ``document`` is anything :func:`preflight.features` reads (a Textract response dict, an
    Azure ``AnalyzeResult``, a Document AI ``Document``, a path, bytes...). The answer has
    ``.decision``, ``.template``, ``.reasons`` and ``.should_review``. ``options`` are passed
    to :meth:`Client.evaluate` (``pipeline_id``, ``client_correlation_id``, ...).
    """
    return (client or default_client()).evaluate(
        document, from_=from_, page_size=page_size, extractor=extractor, **options
    )
