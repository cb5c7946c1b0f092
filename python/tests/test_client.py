"""Client and AsyncClient against a real embedded server, plus scripted retry behaviour."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid

import httpx
import pytest

import preflight
from conftest import Server, data_dir

AZ = data_dir() / "extractors/azure/same_template/contoso_invoices_v2.1"
TEXTRACT = data_dir() / "extractors/textract/analyze_document/multi-page-forms-samples-2-page.json"


class Recording(httpx.BaseTransport):
    """Sends through a real transport and keeps every request."""

    def __init__(self):
        self.inner = httpx.HTTPTransport()
        self.requests = []

    def handle_request(self, request):
        request.read()
        self.requests.append(request)
        return self.inner.handle_request(request)


def _tid(name):
    return f"py-{name}-{uuid.uuid4().hex[:8]}"


def test_every_route(server):
    rec = Recording()
    with preflight.Client(server.url, server.api_key, transport=rec) as c:
        tid = _tid("contoso")
        t = c.register_template(AZ / "Invoice_1.pdf.ocr.json", template_id=tid, name="contoso")
        assert isinstance(t, preflight.Template)
        assert (t.template_id, t.version, t.status, t.exemplar_count) == (tid, 1, "active", 1)

        e = c.evaluate(AZ / "Invoice_2.pdf.ocr.json", pipeline_id="py-tests",
                       client_correlation_id="Invoice_2")
        assert isinstance(e, preflight.Evaluation)
        assert e.decision in ("MATCH", "REVIEW") and e.template == tid
        assert e.template_version_id == t.id and e.template_version == 1
        assert e.should_review == (e.decision != "MATCH")
        assert all(isinstance(r, preflight.Reason) for r in e.reasons)

        got = c.get_evaluation(e.evaluation_id)
        assert isinstance(got, preflight.EvaluationRecord)
        assert got.evaluation_id == e.evaluation_id and got.decision == e.decision
        assert got.pipeline_id == "py-tests" and got.extractor_vendor == "azure-document-intelligence"
        import hashlib
        assert got.client_doc_hash == hashlib.sha256((AZ / "Invoice_2.pdf.ocr.json").read_bytes()).hexdigest()

        page = c.list_evaluations(template_id=tid, pipeline_id="py-tests", limit=10)
        assert [i.evaluation_id for i in page.items] == [e.evaluation_id]
        assert list(c.iter_evaluations(correlation_id="Invoice_2", limit=1))[0].evaluation_id == e.evaluation_id

        fb = c.feedback(e.evaluation_id, "corrected", field_error_count=2, review_seconds=30.5,
                        source="py-tests")
        assert (fb.outcome, fb.previous_outcome, fb.statistics_updated) == ("corrected", None, True)
        assert c.get_evaluation(e.evaluation_id).feedback["outcome"] == "corrected"

        t2 = c.add_exemplar(tid, AZ / "Invoice_3.pdf.ocr.json")
        assert t2.exemplar_count == 2
        full = c.get_template(tid, include_exemplars=True)
        assert len(full.exemplars) == 2 and isinstance(full.exemplars[0], preflight.StructuralFeatures)
        assert [s.corrected for s in full.outcome_stats.values()] == [1]
        assert c.get_template(tid).exemplars is None
        assert any(x.id == t.id for x in c.iter_templates(template_id=tid))
        assert c.list_templates(template_id=tid, status="active").items[0].id == t.id

        drift = c.template_drift(tid, bucket="hour")
        assert isinstance(drift, preflight.DriftReport)
        assert drift.template_version_id == t.id and drift.bucket == "hour"
        assert sum(b.count for b in drift.buckets) == 1

        batch = c.evaluate_batch([
            AZ / "Invoice_4.pdf.ocr.json",
            preflight.features(AZ / "Invoice_5.pdf.ocr.json"),
            {"structural_features": {"element_count": -1}, "extractor_metadata": {}},
        ])
        assert [r.status for r in batch.results] == [200, 200, 422]
        assert batch.results[0].evaluation.template == tid
        assert batch.results[2].error.code == "VALIDATION_FAILED"
        assert batch.results[2].error.errors[0].field.startswith("documents[2].")

        new = c.evaluate(TEXTRACT)
        from_eval = c.register_template_from_evaluation(new.evaluation_id, template_id=tid + "-tx")
        assert from_eval.template_id == tid + "-tx" and from_eval.exemplar_count == 1
        assert c.evaluate(TEXTRACT).template == tid + "-tx"
        c.set_template_status(from_eval.id, "deprecated")

        dep = c.set_template_status(tid, "deprecated")
        assert dep.status == "deprecated"
        after = c.evaluate(AZ / "Invoice_2.pdf.ocr.json")
        assert after.template != tid

    posts = [r for r in rec.requests if r.method == "POST"]
    assert len(posts) >= 6
    keys = [r.headers.get("idempotency-key") for r in posts]
    assert all(k and k.startswith("pfpy-") for k in keys) and len(set(keys)) == len(keys)
    assert all(r.headers["user-agent"] == f"preflight-python/{preflight.__version__}" for r in rec.requests)


def test_problem_json_errors(server, client):
    with preflight.Client(server.url, "pf_not_a_key") as bad:
        with pytest.raises(preflight.AuthenticationError) as e:
            bad.evaluate(TEXTRACT)
    assert e.value.status == 401 and e.value.code and e.value.request_id

    with pytest.raises(preflight.NotFoundError) as e:
        client.get_template("no-such-template")
    assert e.value.status == 404 and e.value.code == "NOT_FOUND"

    with pytest.raises(preflight.ValidationError) as e:
        client.register_template(TEXTRACT, template_id="bad id with spaces", baseline_reliability=2.0)
    fields = {fe.field for fe in e.value.errors}
    assert {"template_id", "baseline_reliability"} <= fields, e.value.errors
    assert e.value.code == "VALIDATION_FAILED" and "template_id" in str(e.value)

    tid = _tid("conflict")
    client.register_template(TEXTRACT, template_id=tid, version=1)
    with pytest.raises(preflight.ConflictError) as e:
        client.register_template(TEXTRACT, template_id=tid, version=1)
    assert e.value.status == 409
    with pytest.raises(preflight.ConflictError):
        client.set_template_status(tid, "draft")

    with pytest.raises(preflight.NotFoundError):
        client.feedback(str(uuid.uuid4()), "correct")


def test_idempotency_key_replays(client):
    key = f"test-{uuid.uuid4()}"
    a = client.evaluate(TEXTRACT, idempotency_key=key)
    b = client.evaluate(TEXTRACT, idempotency_key=key)
    c = client.evaluate(TEXTRACT)
    assert a.evaluation_id == b.evaluation_id != c.evaluation_id


def test_bodies_are_json_and_non_finite_numbers_never_leave(server):
    rec = Recording()
    with preflight.Client(server.url, server.api_key, transport=rec) as c:
        feats = preflight.features(TEXTRACT)
        c.evaluate(feats, pipeline_id="NaN-Infinity line", extractor={"latency_ms": 12.5})
        sent = json.loads(rec.requests[-1].content)
        assert sent["structural_features"] == feats.structural_features.to_dict()
        assert sent["pipeline_id"] == "NaN-Infinity line"
        assert sent["extractor_metadata"]["latency_ms"] == 12.5
        before = len(rec.requests)
        for bad in (float("nan"), float("inf")):
            with pytest.raises(ValueError):
                c.evaluate(feats, extractor={"latency_ms": bad})
        assert len(rec.requests) == before


def _answer(server):
    with preflight.Client(server.url, server.api_key) as c:
        return c._run(c._evaluate(TEXTRACT))  # a real Evaluation, for the scripted server


def test_retries_honour_retry_after_and_keep_the_key(server):
    real = _answer(server).model_dump(mode="json")
    seen, waits = [], []
    script = [
        httpx.Response(503, headers={"Retry-After": "2"}, json={"status": 503, "code": "SERVICE_UNAVAILABLE"}),
        httpx.Response(429, headers={"Retry-After": "1"}, json={"status": 429, "code": "RATE_LIMITED"}),
        httpx.Response(200, json=real),
    ]

    def handler(request):
        seen.append(request)
        return script[len(seen) - 1]

    with preflight.Client("http://scripted", "k", transport=httpx.MockTransport(handler),
                          sleep=waits.append, backoff=0.1) as c:
        e = c.evaluate(TEXTRACT)
    assert e.evaluation_id == real["evaluation_id"]
    assert len(seen) == 3
    assert len({r.headers["idempotency-key"] for r in seen}) == 1
    assert len({r.content for r in seen}) == 1
    assert 2.0 <= waits[0] <= 2.25 and 1.0 <= waits[1] <= 1.25, waits

    # Used up: the last answer is raised, with its Retry-After.
    waits.clear()
    always = httpx.MockTransport(lambda r: httpx.Response(
        503, headers={"Retry-After": "3"},
        json={"type": "about:blank", "title": "Service Unavailable", "status": 503,
              "detail": "database unavailable", "code": "SERVICE_UNAVAILABLE"}))
    with preflight.Client("http://scripted", "k", transport=always, sleep=waits.append, retries=2) as c:
        with pytest.raises(preflight.ServiceUnavailableError) as err:
            c.evaluate(TEXTRACT)
    assert err.value.retry_after == 3.0 and err.value.detail == "database unavailable"
    assert len(waits) == 2

    # Backoff grows exponentially (with jitter) when the server gives no Retry-After.
    waits.clear()
    plain = httpx.MockTransport(lambda r: httpx.Response(502))
    with preflight.Client("http://scripted", "k", transport=plain, sleep=waits.append, retries=4,
                          backoff=1.0, max_backoff=4.0) as c:
        with pytest.raises(preflight.ApiError) as err:
            c.get_template("x")
    assert err.value.status == 502 and err.value.code is None
    steps = [1.0, 2.0, 4.0, 4.0]
    assert all(s / 2 <= w <= s for w, s in zip(waits, steps)), waits

    # 4xx other than 429 are not retried.
    calls = []
    once = httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(
        422, json={"status": 422, "code": "VALIDATION_FAILED", "detail": "x",
                   "errors": [{"field": "a", "message": "b"}]}))
    with preflight.Client("http://scripted", "k", transport=once, sleep=waits.append) as c:
        with pytest.raises(preflight.ValidationError) as err:
            c.evaluate(TEXTRACT)
    assert len(calls) == 1 and err.value.errors == [preflight.FieldError("a", "b")]


def test_network_errors_and_timeouts_are_retried_then_raised():
    waits = []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with preflight.Client(f"http://127.0.0.1:{port}", "k", retries=2, sleep=waits.append) as c:
        with pytest.raises(preflight.TransportError) as e:
            c.get_template("x")
    assert e.value.attempts == 3 and len(waits) == 2

    # A server that accepts and never answers: the per-attempt timeout fires.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with preflight.Client(url, "k", retries=1, timeout=0.3, sleep=lambda s: None) as c:
            with pytest.raises(preflight.TransportError) as e:
                c.evaluate(TEXTRACT)
    assert e.value.attempts == 2 and isinstance(e.value.__cause__, httpx.TimeoutException)


def test_real_rate_limit_is_a_rate_limit_error():
    s = Server({"RATE_LIMIT_PER_MINUTE": "2"})
    try:
        with preflight.Client(s.url, s.api_key, retries=0) as c:
            for _ in range(2):
                with pytest.raises(preflight.NotFoundError):
                    c.get_template("nothing")
            with pytest.raises(preflight.RateLimitError) as e:
                c.get_template("nothing")
        assert e.value.status == 429 and e.value.code == "RATE_LIMITED"
        assert e.value.retry_after is not None and e.value.retry_after > 0
    finally:
        s.stop()


def test_async_client(server):
    async def main():
        async with preflight.AsyncClient(server.url, server.api_key) as c:
            tid = _tid("async")
            t = await c.register_template([AZ / "Invoice_1.pdf.ocr.json", AZ / "Invoice_2.pdf.ocr.json"],
                                          template_id=tid)
            assert t.exemplar_count == 2
            results = await asyncio.gather(*(c.evaluate(AZ / f"Invoice_{i}.pdf.ocr.json") for i in (3, 4, 5)))
            assert all(r.template == tid for r in results)
            got = await c.get_evaluation(results[0].evaluation_id)
            assert got.evaluation_id == results[0].evaluation_id
            batch = await c.evaluate_batch([AZ / "Invoice_3.pdf.ocr.json"])
            assert batch.results[0].status == 200
            fb = await c.feedback(results[1].evaluation_id, "correct")
            assert fb.statistics_updated
            assert (await c.get_template(tid)).exemplar_count == 2
            assert (await c.list_templates(template_id=tid)).items[0].id == t.id
            assert (await c.list_evaluations(template_id=tid, limit=1)).items
            # Following the cursor one item a page: every evaluation, newest first, once.
            followed = [e.evaluation_id async for e in c.iter_evaluations(template_id=tid, limit=1)]
            assert followed == [e.evaluation_id for e in (
                await c.list_evaluations(template_id=tid, limit=100)).items]
            assert set(followed) == {r.evaluation_id for r in results} | {
                batch.results[0].evaluation.evaluation_id}
            assert [x.id async for x in c.iter_templates(template_id=tid, limit=1)] == [t.id]
            assert [a async for a in c.iter_alerts(template_id=tid, limit=1)] == []
            assert (await c.template_drift(tid)).evaluation_count >= 3
            assert (await c.add_exemplar(tid, AZ / "Invoice_3.pdf.ocr.json")).exemplar_count == 3
            assert (await c.set_template_status(tid, "deprecated")).status == "deprecated"
            with pytest.raises(preflight.NotFoundError):
                await c.get_template("missing-" + tid)

        waits = []

        async def sleep(s):
            waits.append(s)

        n = []

        def handler(request):
            n.append(request)
            return httpx.Response(503, headers={"Retry-After": "1"}) if len(n) == 1 else httpx.Response(
                404, json={"status": 404, "code": "NOT_FOUND", "detail": "template not found"})

        async with preflight.AsyncClient("http://scripted", "k", transport=httpx.MockTransport(handler),
                                         sleep=sleep) as c:
            with pytest.raises(preflight.NotFoundError):
                await c.get_template("x")
        assert len(n) == 2 and 1.0 <= waits[0] <= 1.25

    asyncio.run(main())


def test_check_three_lines(server, monkeypatch):
    monkeypatch.setenv("PREFLIGHT_URL", server.url)
    monkeypatch.setenv("PREFLIGHT_API_KEY", server.api_key)
    monkeypatch.setattr(preflight._check, "_default", None)
    import preflight as pf

    textract_response = json.loads(TEXTRACT.read_text())
    result = pf.check(textract_response)
    assert result.decision in ("MATCH", "REVIEW", "NEW", "REJECT")
    assert result.should_review == (result.decision != "MATCH")
    assert isinstance(result.reasons, list) and (result.template is None or isinstance(result.template, str))
    assert pf.default_client().url == server.url

    monkeypatch.delenv("PREFLIGHT_API_KEY")
    monkeypatch.setattr(preflight._check, "_default", None)
    with pytest.raises(pf.PreflightError, match="PREFLIGHT_API_KEY"):
        pf.check(textract_response)
    assert "pf_" not in repr(pf.Client(server.url, server.api_key))


def test_alert_rules_and_alerts(server):
    with preflight.Client(server.url, server.api_key) as c:
        tid = _tid("alerts")
        c.register_template(AZ / "Invoice_1.pdf.ocr.json", template_id=tid)
        rule = c.create_alert_rule(name="py shaky", metric="reliability", operator="lt",
                                   threshold=0.999, severity="critical")
        try:
            assert isinstance(rule, preflight.AlertRule)
            assert (rule.metric, rule.operator, rule.threshold, rule.enabled) == (
                "reliability", "lt", 0.999, True)
            assert rule.id in [r.id for r in c.list_alert_rules()]
            e = c.evaluate(AZ / "Invoice_2.pdf.ocr.json")
            # Other tests register the same layout: any of those templates may match.
            assert e.template is not None and e.reliability_score < 0.999
            mine = [a for a in c.iter_alerts(metric="reliability") if a.rule_id == rule.id]
            assert len(mine) == 1
            alert = mine[0]
            assert isinstance(alert, preflight.AlertRecord)
            assert (alert.evaluation_id, alert.severity, alert.status) == (
                e.evaluation_id, "critical", "open")
            assert c.get_alert(alert.id).id == alert.id
            assert c.acknowledge_alert(alert.id).status == "acknowledged"
            assert c.resolve_alert(alert.id).status == "resolved"
            off = c.update_alert_rule(rule.id, enabled=False, template_id=tid)
            assert (off.enabled, off.template_id, off.threshold) == (False, tid, 0.999)
            assert c.update_alert_rule(rule.id, template_id=None).template_id is None
            with pytest.raises(preflight.ValidationError) as bad:
                c.create_alert_rule(name="x", metric="latency", severity="info")
            assert "metric" in [f.field for f in bad.value.errors]
            with pytest.raises(preflight.NotFoundError):
                c.get_alert(str(uuid.uuid4()))
            window = c.create_alert_rule(name="py automation", metric="automation_rate",
                                         operator="lt", threshold=0.5, severity="warning",
                                         window_seconds=600, min_volume=1000)
            try:
                got = c.get_alert_rule(window.id)
                assert (got.window_seconds, got.min_volume) == (600, 1000)
                assert got.checked_until is not None
                with pytest.raises(preflight.ValidationError) as bad:
                    c.create_alert_rule(name="x", metric="new_rate", operator="gt",
                                        threshold=0.5, severity="info", template_id=tid)
                assert "template_id" in [f.field for f in bad.value.errors]
            finally:
                c.delete_alert_rule(window.id)
        finally:
            assert c.delete_alert_rule(rule.id) is None
        assert rule.id not in [r.id for r in c.list_alert_rules()]

    async def run():
        async with preflight.AsyncClient(server.url, server.api_key) as a:
            page = await a.list_alerts(limit=1)
            assert isinstance(page, preflight.AlertPage)
            rules = await a.list_alert_rules()
            assert all(isinstance(r, preflight.AlertRule) for r in rules)
            for r in rules:
                assert (await a.get_alert_rule(r.id)).id == r.id

    asyncio.run(run())
