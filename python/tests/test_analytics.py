"""Analytics and usage through Client and AsyncClient, against a real embedded server: a
tenant of its own receives a known set of evaluations and feedback, and every figure is
checked against what the test sent."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from statistics import mean

import pytest

import preflight
from conftest import Tenant, data_dir

AZ = data_dir() / "extractors/azure/same_template/contoso_invoices_v2.1"
TEXTRACT = data_dir() / "extractors/textract/analyze_document/multi-page-forms-samples-2-page.json"
DECISIONS = ("MATCH", "REVIEW", "NEW", "REJECT")

# An extraction with no elements: REJECT.
EMPTY = {
    "structural_features": {
        "element_count": 0, "table_count": 0, "text_block_count": 0, "image_count": 0,
        "page_count": 1, "text_density": 0.0, "layout_complexity": 0.0, "column_count": 0,
        "has_header": False, "has_footer": False, "bounding_boxes": [],
    },
    "extractor_metadata": {"vendor": "aws", "model": "textract", "version": "2024-06",
                           "confidence": 0.97, "latency_ms": 850.0},
}


class Sent:
    """What the test sent to its tenant: every stored evaluation and the feedback given."""

    def __init__(self, server, tenant: Tenant):
        self.server, self.tenant = server, tenant
        invoice_1 = AZ / "Invoice_1.pdf.ocr.json"
        m = preflight.features(invoice_1).extractor_metadata
        self.azure = (m.vendor, m.model, m.version)
        with preflight.Client(server.url, tenant.api_key) as c:
            self.template = c.register_template(
                invoice_1, template_id="contoso",
                extractor={"vendor": m.vendor, "model": m.model, "version": m.version})
            key = f"analytics-{uuid.uuid4()}"
            # The same layout from its own extractor (MATCH, with a cost and latency), from
            # an upgraded one (REVIEW), an unknown layout (NEW), an empty extraction (REJECT).
            self.matches = [c.evaluate(invoice_1, idempotency_key=key,
                                       extractor={"cost_usd": 0.02, "latency_ms": 400.0}),
                            c.evaluate(invoice_1, extractor={"cost_usd": 0.04, "latency_ms": 600.0})]
            replay = c.evaluate(invoice_1, idempotency_key=key,
                                extractor={"cost_usd": 0.02, "latency_ms": 400.0})
            assert replay.evaluation_id == self.matches[0].evaluation_id  # stored once
            self.reviews = [c.evaluate(AZ / f"Invoice_{i}.pdf.ocr.json",
                                       extractor={"version": "2099-01-01"}) for i in (2, 3, 4)]
            self.new = [c.evaluate(TEXTRACT)]
            self.rejects = [c.evaluate(EMPTY)]
            self.all = self.matches + self.reviews + self.new + self.rejects
            got = Counter(e.decision for e in self.all)
            assert got == {"MATCH": 2, "REVIEW": 3, "NEW": 1, "REJECT": 1}, got
            # Verdicts: the automated MATCH was right, a REVIEW needed fixing, the NEW was
            # rejected (both errors were caught by review: none was a MATCH).
            c.feedback(self.matches[0].evaluation_id, "correct")
            c.feedback(self.reviews[0].evaluation_id, "corrected", field_error_count=1)
            c.feedback(self.new[0].evaluation_id, "rejected")
            self.feedback = {self.matches[0].evaluation_id: "correct",
                             self.reviews[0].evaluation_id: "corrected",
                             self.new[0].evaluation_id: "rejected"}

    def count(self, decision):
        return sum(e.decision == decision for e in self.all)


@pytest.fixture(scope="module")
def sent(server):
    return Sent(server, Tenant(server))


def _check_aggregate(a: preflight.Aggregate, evals):
    n = len(evals)
    assert a.total == n
    counts = Counter(e.decision for e in evals)
    assert isinstance(a.decision_breakdown, preflight.DecisionBreakdown)
    assert {d: a.decision_breakdown[d] for d in DECISIONS} == {d: counts[d] for d in DECISIONS}
    assert (a.decision_breakdown.match, a.decision_breakdown.review, a.decision_breakdown.new,
            a.decision_breakdown.reject) == tuple(counts[d] for d in DECISIONS)
    assert a.review_load == counts["REVIEW"] + counts["NEW"]
    if n == 0:
        assert (a.avg_drift, a.p95_reliability, a.automation_rate) == (None, None, None)
        return
    assert a.automation_rate == pytest.approx(counts["MATCH"] / n)
    assert a.review_rate == pytest.approx(counts["REVIEW"] / n)
    assert a.new_rate == pytest.approx(counts["NEW"] / n)
    assert a.reject_rate == pytest.approx(counts["REJECT"] / n)
    assert a.avg_reliability == pytest.approx(mean(e.reliability_score for e in evals))
    assert a.avg_drift == pytest.approx(mean(e.drift_score for e in evals))
    # The upper edge of the 0.01 bin: at most 0.01 above the highest value, never below p95.
    assert max(e.reliability_score for e in evals) <= a.p95_reliability + 1e-9
    assert a.p95_reliability <= max(e.reliability_score for e in evals) + 0.01 + 1e-9


def _check_summary(s: preflight.AnalyticsSummary, sent: Sent):
    assert isinstance(s, preflight.AnalyticsSummary) and s.timezone == "UTC"
    _check_aggregate(s, sent.all)
    q = s.review_queue
    assert isinstance(q, preflight.ReviewQueueSummary)
    # Every REVIEW, NEW and REJECT is an item; feedback resolves the item of its evaluation
    # (the MATCH has none).
    items = sent.count("REVIEW") + sent.count("NEW") + sent.count("REJECT")
    resolved = sum(1 for e in sent.all if e.evaluation_id in sent.feedback and e.decision != "MATCH")
    assert (q.open + q.claimed, q.resolved) == (items - resolved, resolved)
    assert q.open_by_age.under_1h == q.open
    assert (q.open_by_age.from_1h_to_4h, q.open_by_age.from_4h_to_24h, q.open_by_age.over_24h) == (
        0, 0, 0)
    assert q.oldest_open_age_seconds is not None and q.oldest_open_age_seconds < 3600
    assert q.mean_resolution_seconds is not None and q.max_resolution_seconds >= q.mean_resolution_seconds


def _check_extractors(r: preflight.ExtractorsReport, sent: Sent):
    rows = {(x.vendor, x.model, x.version): x for x in r.extractors}
    vendor, model, version = sent.azure
    own = rows.pop(sent.azure)
    assert isinstance(own, preflight.ExtractorStats)
    assert (own.count, own.decision_breakdown["MATCH"], own.automation_rate) == (2, 2, 1.0)
    assert own.avg_cost_usd == pytest.approx(0.03)
    assert own.avg_latency_ms == pytest.approx(500.0)
    assert own.avg_reliability == pytest.approx(mean(e.reliability_score for e in sent.matches))
    upgraded = rows.pop((vendor, model, "2099-01-01"))
    assert (upgraded.count, upgraded.decision_breakdown["REVIEW"], upgraded.automation_rate) == (
        3, 3, 0.0)
    assert upgraded.avg_cost_usd is None
    empty = rows.pop(("aws", "textract", "2024-06"))
    assert (empty.count, empty.decision_breakdown["REJECT"], empty.avg_latency_ms) == (1, 1, 850.0)
    (textract,) = rows.values()
    assert (textract.count, textract.decision_breakdown["NEW"]) == (1, 1)
    assert all(x.first_seen <= x.last_seen for x in r.extractors)


def _check_templates(r: preflight.TemplatesReport, sent: Sent):
    (t,) = r.templates
    assert isinstance(t, preflight.TemplateStats)
    assert (t.template_id, t.template_version, t.template_version_id) == (
        "contoso", 1, sent.template.id)
    assert t.volume == sent.count("MATCH") + sent.count("REVIEW")
    assert (t.decision_breakdown["MATCH"], t.decision_breakdown["REVIEW"], t.change_points) == (
        2, 3, 0)
    assert t.automation_rate == pytest.approx(2 / 5)


def _check_calibration(r: preflight.Calibration, sent: Sent):
    assert isinstance(r, preflight.Calibration)
    assert (r.evaluations, r.with_feedback) == (len(sent.all), 3)
    assert r.feedback_coverage == pytest.approx(3 / len(sent.all))
    a = r.automated
    assert isinstance(a, preflight.AutomatedPrecision)
    assert (a.with_feedback, a.correct, a.precision) == (1, 1, 1.0)
    assert 0.0 <= a.ci_low < 1.0 and a.ci_high == pytest.approx(1.0)
    assert (r.errors, r.missed_errors, r.review_catch_rate) == (2, 0, 1.0)
    assert len(r.bands) == 10 and sum(b.count for b in r.bands) == 3
    assert all(isinstance(b, preflight.ReliabilityBand) for b in r.bands)
    # Brier: mean of (reliability - [correct])^2 over the three verdicts.
    by_id = {e.evaluation_id: e for e in sent.all}
    brier = mean((by_id[i].reliability_score - (o == "correct")) ** 2
                 for i, o in sent.feedback.items())
    assert r.brier_score == pytest.approx(brier)


def _check_usage(u: preflight.Usage, sent: Sent):
    now = datetime.now(timezone.utc)
    assert isinstance(u, preflight.Usage)
    assert u.used == len(sent.all)  # the idempotent replay did not count again
    assert (u.plan, u.monthly_limit, u.remaining, u.limit_overridden, u.enforced) == (
        "free", 1000, 1000 - len(sent.all), False, False)
    assert u.period == now.strftime("%Y-%m")
    assert u.period_start <= now < u.period_end


def test_analytics_and_usage(server, sent: Sent):
    now = datetime.now(timezone.utc)
    with preflight.Client(server.url, sent.tenant.api_key) as c:
        s = c.analytics_summary()
        _check_summary(s, sent)
        assert s.to_ts - s.from_ts >= timedelta(days=30)
        assert s.from_ts.minute == s.to_ts.minute == 0  # whole hours
        # The three forms of a timestamp name the same range.
        start, end = now - timedelta(hours=3), now + timedelta(hours=1)
        for from_ts, to_ts in ((start, end), (int(start.timestamp()), int(end.timestamp())),
                               (start.isoformat(), end.strftime("%Y-%m-%dT%H:%M:%SZ")),
                               (start.replace(tzinfo=None), end.replace(tzinfo=None))):
            narrow = c.analytics_summary(from_ts=from_ts, to_ts=to_ts)
            assert narrow.from_ts == start.replace(minute=0, second=0, microsecond=0)
            _check_aggregate(narrow, sent.all)
        # A range with none of the evaluations.
        _check_aggregate(c.analytics_summary(from_ts=now - timedelta(days=3),
                                             to_ts=now - timedelta(days=2)), [])

        hourly = c.analytics_timeseries(from_ts=start, to_ts=end, interval="hour")
        assert isinstance(hourly, preflight.Timeseries)
        assert (hourly.interval, hourly.timezone) == ("hour", "UTC")
        assert len(hourly.buckets) in (4, 5)
        assert all(isinstance(b, preflight.TimeseriesBucket) for b in hourly.buckets)
        assert [b.bucket_start - hourly.from_ts for b in hourly.buckets] == [
            timedelta(hours=h) for h in range(len(hourly.buckets))]
        assert sum(b.total for b in hourly.buckets) == len(sent.all)
        for b in hourly.buckets:
            _check_aggregate(b, [e for e in sent.all
                                 if b.bucket_start <= e.created_at < b.bucket_start + timedelta(hours=1)])
        daily = c.analytics_timeseries(from_ts=now - timedelta(days=2), to_ts=now, tz="+05:00")
        assert (daily.interval, daily.timezone) == ("day", "+05:00")
        # Days begin at midnight in +05:00, 19:00 UTC the day before.
        assert {(b.bucket_start.hour, b.bucket_start.minute) for b in daily.buckets} == {(19, 0)}
        assert sum(b.total for b in daily.buckets) == len(sent.all)
        assert sum(b.decision_breakdown["REVIEW"] for b in daily.buckets) == 3

        _check_extractors(c.analytics_extractors(), sent)
        _check_templates(c.analytics_templates(tz="UTC"), sent)
        _check_calibration(c.analytics_calibration(), sent)
        _check_usage(c.usage(), sent)

        # A bad range is a 400 naming every bad parameter.
        with pytest.raises(preflight.BadRequestError) as bad:
            c.analytics_summary(from_ts=now, to_ts=now - timedelta(hours=1))
        assert (bad.value.status, bad.value.code) == (400, "INVALID_QUERY")
        assert bad.value.errors == [preflight.FieldError("from_ts", "must be before to_ts")]
        with pytest.raises(preflight.BadRequestError) as bad:
            c.analytics_timeseries(from_ts="yesterday", interval="week", tz="+05:30")
        assert {f.field for f in bad.value.errors} == {"from_ts", "interval", "tz"}
        with pytest.raises(preflight.BadRequestError) as bad:
            c.analytics_calibration(from_ts=now - timedelta(days=400), to_ts=now)
        assert [f.field for f in bad.value.errors] == ["to_ts"]
        with pytest.raises(TypeError):
            c.analytics_summary(from_ts=1.5)

        # The queue in the summary follows a claim.
        before = c.analytics_summary().review_queue
        claimed = c.claim_next_review_item()
        try:
            during = c.analytics_summary().review_queue
            assert (during.open, during.claimed) == (before.open - 1, before.claimed + 1)
        finally:
            c.release_review_item(claimed.item.id, claimed.lease_token)

    # Another tenant's figures hold none of this tenant's template versions.
    with preflight.Client(server.url, server.api_key) as other:
        assert sent.template.id not in {
            t.template_version_id for t in other.analytics_templates().templates}


def test_analytics_and_usage_async(server, sent: Sent):
    now = datetime.now(timezone.utc)
    start, end = now - timedelta(hours=3), now + timedelta(hours=1)

    async def main():
        async with preflight.AsyncClient(server.url, sent.tenant.api_key) as c:
            _check_summary(await c.analytics_summary(), sent)
            _check_aggregate(await c.analytics_summary(from_ts=int(start.timestamp()),
                                                       to_ts=end.isoformat(), tz="-08:00"),
                             sent.all)
            ts = await c.analytics_timeseries(from_ts=start, to_ts=end, interval="hour")
            assert sum(b.total for b in ts.buckets) == len(sent.all)
            _check_extractors(await c.analytics_extractors(from_ts=start, to_ts=end), sent)
            _check_templates(await c.analytics_templates(from_ts=start), sent)
            _check_calibration(await c.analytics_calibration(to_ts=end), sent)
            _check_usage(await c.usage(), sent)
            with pytest.raises(preflight.BadRequestError) as bad:
                await c.analytics_templates(from_ts=end, to_ts=start)
            assert (bad.value.code, [f.field for f in bad.value.errors]) == (
                "INVALID_QUERY", ["from_ts"])

    asyncio.run(main())
