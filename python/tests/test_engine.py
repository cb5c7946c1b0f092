"""The offline engine gives the server's decisions on a real evaluation set."""

from __future__ import annotations

import json

import pytest

import preflight
from conftest import Server, data_dir, extractor_files

COMPARED = ("decision", "match_confidence", "template_id", "template_version_id",
            "template_version", "drift_score", "drift_components", "reliability_score",
            "reasons", "warnings", "correction_rules", "replay_hash", "engine_version",
            "layout_fingerprint", "runner_up")


def _convertible():
    out = []
    for f in extractor_files():
        try:
            out.append((f, preflight.features(f)))
        except preflight.AdapterError:
            pass
    return out


@pytest.fixture(scope="module")
def tenant():
    """A fresh server with templates: one per same-template group (one or two exemplars),
    feedback on some evaluations (so outcome statistics matter), a draft and a deprecated
    version (which must not match)."""
    s = Server()
    try:
        with preflight.Client(s.url, s.api_key) as c:
            groups = sorted((data_dir() / "extractors/azure/same_template").iterdir())
            for i, g in enumerate(groups):
                files = sorted(g.glob("*.ocr.json"))
                c.register_template(files[: 1 + i % 2], template_id=f"az-{g.name}",
                                    baseline_reliability=0.8 + 0.02 * i,
                                    correction_rules=[{"field": "total", "rule": "sum_check",
                                                       "parameters": {"i": i}}])
            tx = data_dir() / "extractors/textract/same_template"
            c.register_template(tx / "single-page-1.json", template_id="tx-single")
            c.register_template(tx / "textractor-singlepage-doc.json", template_id="tx-draft",
                                status="draft")
            rot = data_dir() / "extractors/textract/rotation_series"
            old = c.register_template(rot / "gib_000_degrees.json", template_id="tx-old")
            c.set_template_status(old.id, "deprecated")
            docs = _convertible()
            first = []
            # Batches of 10: the 1 MiB body limit holds about a dozen dense documents.
            for i in range(0, 60, 10):
                first += c.evaluate_batch([feat for _, feat in docs[i:i + 10]]).results
            outcomes = ["correct", "corrected", "rejected"]
            for k, item in enumerate(first):
                if item.status == 200 and item.evaluation.template_id:
                    c.feedback(item.evaluation.evaluation_id, outcomes[k % 3])
            export = c.export_templates()
            yield s, export, docs
    finally:
        s.stop()


def test_export_format(tenant, tmp_path):
    _, export, _ = tenant
    assert export["format"] == "preflight-templates" and export["version"] == 1
    statuses = sorted(t["status"] for t in export["templates"])
    assert statuses.count("active") == 7 and "draft" in statuses and "deprecated" in statuses
    assert all(len(t["exemplars"]) == t["exemplar_count"] for t in export["templates"])
    assert any(sum(sum(v.values()) for v in t["outcome_stats"].values()) for t in export["templates"])
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    assert len(preflight.Engine.from_export(path)) == 7
    with pytest.raises(preflight.EngineError):
        preflight.Engine.from_export({"format": "something-else", "version": 1, "templates": []})
    with pytest.raises(preflight.EngineError):
        preflight.Engine.from_export({"format": "preflight-templates", "version": 2, "templates": []})
    bad = dict(export["templates"][0], status="active")
    bad.pop("exemplars")
    with pytest.raises(preflight.EngineError, match="exemplars"):
        preflight.Engine.from_templates([bad])


def test_offline_equals_server(tenant, tmp_path):
    s, export, docs = tenant
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    engine = preflight.Engine.from_export(path)
    with preflight.Client(s.url, s.api_key) as c:
        served = []
        for i in range(0, len(docs), 10):
            served += c.evaluate_batch([feat for _, feat in docs[i:i + 10]]).results
        # from_templates on the API's own objects is the same engine.
        same = preflight.Engine.from_templates(
            [c.get_template(t["id"], include_exemplars=True) for t in export["templates"]])
    decisions = {}
    for (f, feat), item in zip(docs, served):
        assert item.status == 200, (f, item.error)
        server = item.evaluation.model_dump(mode="json")
        offline = engine.evaluate(feat).model_dump(mode="json")
        for k in COMPARED:
            assert offline[k] == server[k], (f, k, offline[k], server[k])
        assert same.evaluate(f).replay_hash == server["replay_hash"]
        decisions[server["decision"]] = decisions.get(server["decision"], 0) + 1
    # The set exercises more than one outcome, so equality is not trivially NEW == NEW.
    assert decisions.get("MATCH", 0) >= 10 and decisions.get("NEW", 0) >= 10, decisions
    assert len(decisions) >= 3, decisions


def test_offline_validation_matches_the_server_422(tenant):
    s, export, docs = tenant
    engine = preflight.Engine.from_export(export)
    body = docs[0][1].request()
    body["structural_features"]["page_count"] = -1
    body["extractor_metadata"]["confidence"] = 2.0
    with pytest.raises(preflight.EngineError) as offline:
        engine.evaluate(body)
    with preflight.Client(s.url, s.api_key) as c, pytest.raises(preflight.ValidationError) as served:
        c.evaluate(body)
    assert {e.field for e in offline.value.errors} == {e.field for e in served.value.errors}
