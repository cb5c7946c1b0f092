"""Vendor SDK objects, built from the shared JSON with the SDKs themselves, give the features
of the JSON they were built from."""

from __future__ import annotations

import json

import pytest

import preflight
from conftest import data_dir, extractor_files


def _converts(path):
    try:
        preflight.features(path)
        return True
    except preflight.AdapterError:
        return False


def _same(a, b, where):
    assert json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True), where


def test_textractor_document():
    from textractor.parsers import response_parser

    files = [f for f in extractor_files() if "/textract/" in str(f) and _converts(f)]
    assert len(files) >= 30
    for f in files:
        response = json.loads(f.read_text())
        doc = response_parser.parse(response) if "Blocks" in response else None
        if doc is None:
            continue
        _same(preflight.features(doc), preflight.features(f), f)
    # A plain boto3-style response dict is the common case.
    _same(preflight.features(json.loads(files[0].read_text())), preflight.features(files[0]), files[0])


def test_azure_analyze_result():
    from azure.ai.documentintelligence.models import AnalyzeResult

    checked = 0
    for f in extractor_files():
        if "/azure/" not in str(f) or not _converts(f):
            continue
        raw = json.loads(f.read_text())
        if "analyzeResult" not in raw:
            continue
        result = AnalyzeResult(raw["analyzeResult"])
        ours = preflight.features(result)
        # The SDK object is the analyzeResult without the operation envelope, so compare with
        # that dict; the layout is the file's (the envelope only adds the latency).
        _same(ours, preflight.features(raw["analyzeResult"]), f)
        assert ours.structural_features == preflight.features(f).structural_features, f
        checked += 1
    assert checked >= 40
    # The one Document Intelligence 3.x reading in the data, which is what the v4 SDK models.
    v3 = data_dir() / "extractors/azure/cross_version/lorem_testdata.jpg.v3-2021-09-30-preview.ocr.json"
    r = preflight.features(AnalyzeResult(json.loads(v3.read_text())["analyzeResult"]))
    assert r.format == "azure" and r.structural_features.text_block_count > 0


def _float32_close(ours, raw, where):
    """Document AI's proto stores coordinates and confidences as float32, so a JSON written
    with more digits than float32 holds (the toolbox's files) comes back rounded: the same
    layout (fingerprint, types, order, counts) with numbers within float32 precision."""
    a, b = ours.to_dict(), raw.to_dict()
    assert ours.layout_fingerprint == raw.layout_fingerprint, where
    boxes_a = a["structural_features"].pop("bounding_boxes")
    boxes_b = b["structural_features"].pop("bounding_boxes")
    assert len(boxes_a) == len(boxes_b), where
    for x, y in zip(boxes_a, boxes_b):
        assert {k: v for k, v in x.items() if isinstance(v, (str, int)) and not isinstance(v, bool)} == {
            k: v for k, v in y.items() if isinstance(v, (str, int)) and not isinstance(v, bool)}, where
        for k in ("x", "y", "width", "height", "confidence"):
            assert abs(x[k] - y[k]) <= 1e-6 * max(1.0, abs(y[k])), (where, k)
    ca, cb = a["extractor_metadata"].pop("confidence"), b["extractor_metadata"].pop("confidence")
    assert abs(ca - cb) <= 1e-6, where
    for k in ("text_density", "layout_complexity"):
        assert abs(a["structural_features"].pop(k) - b["structural_features"].pop(k)) <= 1e-6, where
    assert a == b, where


def test_document_ai_document_proto():
    from google.cloud import documentai

    checked = exact = 0
    for f in extractor_files():
        if "/google/docai/" not in str(f) or not _converts(f):
            continue
        raw = preflight.features(f)
        doc = documentai.Document.from_json(f.read_text(), ignore_unknown_fields=True)
        for obj in (doc, documentai.Document.pb(doc)):  # proto-plus, and the raw protobuf
            ours = preflight.features(obj)
            if ours.to_dict() == raw.to_dict():
                exact += 1
            else:
                _float32_close(ours, raw, f)
        checked += 1
    assert checked >= 8
    # Files the service wrote itself hold float32 values already and come back identical.
    assert exact >= 8, exact


def test_docling_is_refused_with_a_clear_message():
    # docling is not a test dependency (it pulls in torch); a stand-in with docling's module
    # name and export_to_dict() exercises the dispatch.
    class DoclingDocument:
        __module__ = "docling_core.types.doc.document"

        def export_to_dict(self):
            return {"schema_name": "DoclingDocument", "pages": {}, "texts": []}

    with pytest.raises(preflight.AdapterError) as e:
        preflight.features(DoclingDocument())
    assert "docling" in str(e.value) and e.value.kind == "unsupported"
