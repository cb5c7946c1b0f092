"""``preflight.features``: an extractor's output → structural features, in-process.

The conversion itself is the Rust adapters' (``preflight._native.features_json`` runs the
code ``preflight features`` runs), so the result is the CLI's, number for number. This
module only turns what a Python pipeline holds into the bytes the adapters read:

* a path (``str`` or ``os.PathLike``) → the file's bytes, as the CLI reads them;
* ``bytes`` / ``bytearray`` / ``memoryview`` → as they are;
* a ``str`` holding the document itself (JSON, hOCR, TSV) → its UTF-8 bytes. A ``str`` is
  taken as content when it starts with ``{``, ``[`` or ``<`` or contains a line break or a
  tab, else as a path;
* a parsed ``dict`` / ``list`` (a boto3 Textract response, a REST JSON body) → compact JSON;
* vendor SDK objects, converted with the SDK's own serializer into the REST JSON shape the
  adapters read: Azure ``AnalyzeResult`` (azure-ai-documentintelligence; ``as_dict()``),
  Google Document AI ``Document`` (proto-plus ``to_json`` or protobuf ``MessageToJson``, enum
  names and camelCase keys like the REST API), textractor ``Document`` (its ``response``),
  docling ``DoclingDocument`` (``export_to_dict()``).

Nothing here reads or copies text out of the document; error messages name types, never
values.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import os
from typing import Any, Mapping, Optional, Tuple, Union

from . import _native
from ._errors import AdapterError, UnsupportedInputError, _adapter_error
from ._models import Features

__all__ = ["features", "to_bytes", "PageSize"]

PageSize = Tuple[float, float]
"""A page size ``(width, height)`` in the input's own units."""


def _json_default(value: Any) -> Any:
    # boto3 and the Azure SDK may leave datetimes and Decimals in their dicts; the REST JSON
    # has strings and numbers there.
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        # Raw bytes (e.g. an inline page image) carry no layout; the REST JSON has base64
        # there, which the adapters ignore too.
        return None
    as_dict = _sdk_mapping(value)
    if as_dict is not None:
        return as_dict
    raise UnsupportedInputError(
        f"cannot serialize a {type(value).__module__}.{type(value).__qualname__} inside the input"
    )


def _dumps(obj: Any) -> bytes:
    try:
        text = json.dumps(
            obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
        )
    except ValueError:
        # allow_nan=False: NaN/Infinity are not JSON, and no extractor writes them.
        raise AdapterError(
            "the input holds a NaN or infinite number, which JSON cannot carry",
            kind="malformed",
        ) from None
    return text.encode("utf-8")


def _module(obj: Any) -> str:
    return type(obj).__module__ or ""


def _sdk_mapping(obj: Any) -> Optional[Any]:
    """A JSON-ready value for a known SDK model object, else None."""
    module = _module(obj)
    if module.startswith("azure.") and callable(getattr(obj, "as_dict", None)):
        # azure-ai-documentintelligence models: as_dict() gives the REST (camelCase) shape.
        return obj.as_dict()
    return None


def _google_json(obj: Any) -> Optional[str]:
    """REST JSON of a Document AI proto message (proto-plus or plain protobuf), else None."""
    cls = type(obj)
    if _module(obj).startswith("google.") and callable(getattr(cls, "to_json", None)) and hasattr(
        cls, "pb"
    ):
        # proto-plus: enum names (not integers) and camelCase keys, as the REST API writes.
        return cls.to_json(obj, use_integers_for_enums=False, indent=None)
    if hasattr(obj, "DESCRIPTOR") and callable(getattr(obj, "SerializeToString", None)):
        from google.protobuf import json_format

        return json_format.MessageToJson(obj, indent=None)
    return None


def to_bytes(obj: Any) -> Tuple[bytes, Optional[str], bool]:
    """The bytes the adapters read for ``obj``, the format it implies (or None), and whether
    the bytes are the caller's own file or buffer (so hashing them identifies the file)."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj), None, True
    if isinstance(obj, os.PathLike):
        with open(obj, "rb") as f:
            return f.read(), None, True
    if isinstance(obj, str):
        head = obj.lstrip()[:1]
        if head in ("{", "[", "<") or "\n" in obj or "\t" in obj:
            return obj.encode("utf-8"), None, True
        with open(obj, "rb") as f:
            return f.read(), None, True
    if isinstance(obj, (dict, list)):
        return _dumps(obj), None, False
    module = _module(obj)
    name = type(obj).__name__
    if module.startswith("docling"):
        if callable(getattr(obj, "export_to_dict", None)):
            # docling-core's DoclingDocument: export_to_dict() is the JSON save_as_json writes.
            return _dumps(obj.export_to_dict()), "docling", False
    if module.startswith("textractor") and isinstance(getattr(obj, "response", None), Mapping):
        # amazon-textract-textractor's Document keeps the raw API response.
        return _dumps(dict(obj.response)), "textract", False
    sdk = _sdk_mapping(obj)
    if sdk is not None:
        return _dumps(sdk), "azure", False
    google = _google_json(obj)
    if google is not None:
        return google.encode("utf-8"), "google", False
    if isinstance(obj, Mapping):
        return _dumps(dict(obj)), None, False
    raise UnsupportedInputError(
        f"preflight.features() cannot read a {module}.{name}: pass a path, bytes, a JSON "
        "string, a parsed dict, or an Azure / Document AI / textractor / docling document object"
    )


def _features_of_bytes(
    data: bytes, from_: Optional[str], page_size: Optional[PageSize]
) -> Features:
    width, height = (None, None) if page_size is None else page_size
    try:
        text = _native.features_json(data, from_, width, height)
    except _native.AdapterError as e:
        raise _adapter_error(e) from None
    return Features.model_validate_json(text)


def features(
    obj_or_path: Union[str, "os.PathLike[str]", bytes, Mapping[str, Any], Any],
    from_: Optional[str] = None,
    page_size: Optional[PageSize] = None,
) -> Features:
    """Structural features of one extractor output, computed locally (nothing is sent).

    ``from_`` forces a format, with the names of ``preflight features --from``
    (``textract``, ``azure``, ``google``, ``tesseract-tsv``, ``hocr``, ``paddleocr``,
    ``docling``, ``tesseract``, and aliases); by default it is detected from the content, or
    implied by the SDK object's type. ``page_size=(width, height)`` gives the page size in the input's
    units for formats that carry none (PaddleOCR, Tesseract pages without a page box).

    Raises :class:`preflight.AdapterError` (with the adapters' message and a ``kind``) when
    the input is no supported extractor output, and :class:`preflight.UnsupportedInputError`
    for an object type it cannot read.
    """
    data, implied, _ = to_bytes(obj_or_path)
    return _features_of_bytes(data, from_ if from_ is not None else implied, page_size)
