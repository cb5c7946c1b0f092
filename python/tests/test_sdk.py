"""Vendor SDK objects, built from the shared JSON with the SDKs themselves, give the features
of the JSON they were built from."""

from __future__ import annotations

import json

import pytest

import preflight
from conftest import cli_features, data_dir, extractor_files


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


# docling: DoclingDocument objects built with docling-core (pydantic types, no models) from
# the shared data's real layouts, as docling's layout model would report those pages.

# PubLayNet category → (docling label, engine type the adapters must give).
PUBLAYNET = {"text": ("text", "text"), "title": ("title", "title"), "list": ("list_item", "list"),
             "table": ("table", "table"), "figure": ("picture", "figure")}
# DocBank token label → (docling label, engine type).
DOCBANK = {"paragraph": ("text", "text"), "abstract": ("text", "text"), "author": ("text", "text"),
           "date": ("text", "text"), "reference": ("reference", "text"), "caption": ("caption", "text"),
           "title": ("title", "title"), "section": ("section_header", "heading"),
           "list": ("list_item", "list"), "table": ("table", "table"), "figure": ("picture", "figure"),
           "equation": ("formula", "formula"), "footer": ("page_footer", "footer")}
# Text given to every item: it must not reach the features.
SENTINEL = "Sentinel Quokka paragraph"


def _docling_document(name, pages, bottom_left=False):
    """A DoclingDocument with ``pages`` = [(width, height, [(docling label, (l, t, r, b))])],
    boxes in top-left page coordinates; ``bottom_left`` stores them with docling's own
    conversion to a bottom-left origin."""
    from docling_core.types.doc import (BoundingBox, CoordOrigin, DocItemLabel, DoclingDocument,
                                        ProvenanceItem, Size, TableData)
    from docling_core.types.doc.document import DocumentOrigin

    doc = DoclingDocument(name=name, origin=DocumentOrigin(
        mimetype="image/jpeg", binary_hash=1, filename=f"{name}.jpg"))
    for page_no, (width, height, items) in enumerate(pages, start=1):
        doc.add_page(page_no=page_no, size=Size(width=width, height=height))
        lists = None
        for label, ltrb in items:
            bbox = BoundingBox.from_tuple(ltrb, CoordOrigin.TOPLEFT)
            if bottom_left:
                bbox = bbox.to_bottom_left_origin(page_height=height)
            prov = ProvenanceItem(page_no=page_no, bbox=bbox, charspan=(0, len(SENTINEL)))
            if label == "list_item":
                lists = lists or doc.add_list_group()
                doc.add_list_item(text=SENTINEL, parent=lists, prov=prov)
                continue
            lists = None
            if label == "table":
                doc.add_table(data=TableData(num_rows=0, num_cols=0), prov=prov)
            elif label == "picture":
                doc.add_picture(prov=prov)
            elif label == "title":
                doc.add_title(text=SENTINEL, prov=prov)
            elif label == "section_header":
                doc.add_heading(text=SENTINEL, prov=prov)
            elif label == "formula":
                doc.add_formula(text=SENTINEL, prov=prov)
            else:
                doc.add_text(label=DocItemLabel(label), text=SENTINEL, prov=prov)
    return doc


def _publaynet_pages():
    """[(file name, width, height, [(category, [x, y, w, h])])] in the sample's order."""
    coco = json.loads((data_dir() / "layouts/publaynet/samples.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    pages = []
    for im in coco["images"]:
        regions = [(names[a["category_id"]], a["bbox"]) for a in coco["annotations"]
                   if a["image_id"] == im["id"]]
        pages.append((im["file_name"], im["width"], im["height"], regions))
    return pages


def _docbank_pages(n):
    """The first ``n`` DocBank pages: [(file stem, [(label, [x0, y0, x1, y1])])], 0–1000."""
    files = sorted(p for p in (data_dir() / "layouts/docbank").glob("*.txt") if p.name != "labels.txt")
    pages = []
    for f in files[:n]:
        tokens = []
        for line in f.read_text(encoding="utf-8").splitlines():
            cols = line.split("\t")
            tokens.append((cols[9], [float(c) for c in cols[1:5]]))
        pages.append((f.stem, tokens))
    return pages


def _check_docling(doc, expected_boxes, tmp_path):
    """``features(doc)`` equals ``features(doc.export_to_dict())``, the CLI's ``--from docling``
    and its auto-detection on the saved JSON; the boxes are ``expected_boxes``
    ([(page, engine type, [x, y, w, h])], normalized); no text or file name leaks."""
    ours = preflight.features(doc)
    _same(ours, preflight.features(doc.export_to_dict()), doc.name)
    path = tmp_path / f"{doc.name}.json"
    doc.save_as_json(path)
    for flags in (("--from", "docling"), ()):
        cli = cli_features([path], *flags)[str(path)]
        assert isinstance(cli, dict), cli
        assert json.dumps(ours.to_dict(), sort_keys=True) == json.dumps(cli, sort_keys=True)
    assert ours.format == "docling"
    assert ours.extractor_metadata.vendor == "docling"
    boxes = ours.structural_features.bounding_boxes
    assert [(b.page, b.element_type) for b in boxes] == [(p, t) for p, t, _ in expected_boxes]
    for b, (_, _, want) in zip(boxes, expected_boxes):
        assert [b.x, b.y, b.width, b.height] == pytest.approx(want, abs=1e-9), (doc.name, b)
    text = json.dumps(ours.to_dict())
    assert "Quokka" not in text and doc.name not in text
    return ours


def test_docling_documents_of_publaynet_pages(tmp_path):
    pages = _publaynet_pages()
    assert len(pages) == 20 and sum(len(r) for *_, r in pages) == 193
    for name, width, height, regions in pages[:6]:
        items = [(PUBLAYNET[c][0], (x, y, x + w, y + h)) for c, (x, y, w, h) in regions]
        expected = [(0, PUBLAYNET[c][1], [x / width, y / height, w / width, h / height])
                    for c, (x, y, w, h) in regions]
        doc = _docling_document(name.rsplit(".", 1)[0], [(width, height, items)])
        ours = _check_docling(doc, expected, tmp_path)
        counts = {c: sum(1 for r in regions if r[0] == c) for c in PUBLAYNET}
        sf = ours.structural_features
        assert (sf.page_count, sf.text_block_count, sf.table_count, sf.image_count) == (
            1, counts["text"], counts["table"], counts["figure"])
        # docling's own bottom-left conversion of the same boxes: the same layout.
        flipped = preflight.features(
            _docling_document(doc.name, [(width, height, items)], bottom_left=True))
        assert flipped.layout_fingerprint == ours.layout_fingerprint
        for a, b in zip(flipped.structural_features.bounding_boxes, sf.bounding_boxes):
            assert [a.x, a.y, a.width, a.height] == pytest.approx([b.x, b.y, b.width, b.height], abs=1e-9)
    # All 20 pages as one document: page by page, in order.
    doc = _docling_document("publaynet_sample", [
        (w, h, [(PUBLAYNET[c][0], (x, y, x + bw, y + bh)) for c, (x, y, bw, bh) in regions])
        for _, w, h, regions in pages])
    expected = [(i, PUBLAYNET[c][1], [x / w, y / h, bw / w, bh / h])
                for i, (_, w, h, regions) in enumerate(pages) for c, (x, y, bw, bh) in regions]
    ours = _check_docling(doc, expected, tmp_path)
    assert ours.pages == 20 and ours.structural_features.element_count == 193


def test_docling_documents_of_docbank_pages(tmp_path):
    # One docling item per DocBank token, on a 1000 × 1000 page (DocBank's coordinate space).
    checked = 0
    for stem, tokens in _docbank_pages(5):
        items = [(DOCBANK[label][0], tuple(box)) for label, box in tokens]
        kept = [(label, box) for label, box in tokens if box[2] > box[0] and box[3] > box[1]]
        expected = [(0, DOCBANK[label][1], [x0 / 1000, y0 / 1000, (x1 - x0) / 1000, (y1 - y0) / 1000])
                    for label, (x0, y0, x1, y1) in kept]
        doc = _docling_document(stem.replace(".", "_"), [(1000.0, 1000.0, items)])
        ours = _check_docling(doc, expected, tmp_path)
        dropped = len(tokens) - len(kept)
        zero_area = [w for w in ours.warnings if w.startswith("dropped ")]
        assert zero_area == ([f"dropped {dropped} boxes with zero area inside the page"] if dropped else [])
        checked += 1
    assert checked == 5


def test_docling_evaluate_body_is_the_features_request():
    # The client's evaluate/check requests are built from the same features (no refusal, no
    # client_doc_hash: the bytes are not the caller's file).
    from preflight._client import _evaluate_body

    _, w, h, regions = _publaynet_pages()[0]
    doc = _docling_document("publaynet_first", [(w, h, [(PUBLAYNET[c][0], (x, y, x + bw, y + bh))
                                                        for c, (x, y, bw, bh) in regions])])
    body = _evaluate_body(doc, from_=None, page_size=None, extractor=None, client_doc_hash=None,
                          client_correlation_id=None, pipeline_id=None)
    assert body == preflight.features(doc).request()
    assert "client_doc_hash" not in body and body["structural_features"]["element_count"] == len(regions)
