"""The review queue and template suggestions through Client and AsyncClient, against a real
embedded server: each test signs up a tenant of its own, so the queue and the suggestions
hold exactly what the test evaluated."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import datetime, timedelta, timezone

import pytest

import preflight
from conftest import Tenant, data_dir

AZ = data_dir() / "extractors/azure/same_template/contoso_invoices_v2.1"
AZ_OLD = data_dir() / "extractors/azure/same_template/contoso_invoices_v2.0"
HERO = data_dir() / "extractors/azure/same_template/hero_purchase_orders_v2.0"
TEXTRACT = data_dir() / "extractors/textract/analyze_document/multi-page-forms-samples-2-page.json"

# The template is registered as having seen the files' own extractor; the same layout from
# another extractor version is REVIEW (EXTRACTOR_CHANGED), a deterministic way to get one.
UPGRADED = {"version": "2099-01-01"}


def _identity(path):
    m = preflight.features(path).extractor_metadata
    return {"vendor": m.vendor, "model": m.model, "version": m.version}


def _priority(e: preflight.Evaluation) -> int:
    # docs/review.md: class by decision, then round((1 - reliability) * 99), half away from 0.
    base = {"REVIEW": 300, "REJECT": 200, "NEW": 100, "MATCH": 0}[e.decision]
    return base + math.floor((1 - min(max(e.reliability_score, 0.0), 1.0)) * 99 + 0.5)


def _populate(c: preflight.Client):
    """One template; two REVIEWs of its layout from an upgraded extractor, a NEW, a MATCH.
    Returns (reviews, new, match)."""
    c.register_template(AZ / "Invoice_1.pdf.ocr.json", template_id="contoso",
                        extractor=_identity(AZ / "Invoice_1.pdf.ocr.json"))
    reviews = [c.evaluate(AZ / f"Invoice_{i}.pdf.ocr.json", extractor=UPGRADED) for i in (2, 3)]
    assert [e.decision for e in reviews] == ["REVIEW", "REVIEW"], reviews
    assert all("EXTRACTOR_CHANGED" in e.reason_codes for e in reviews)
    new = c.evaluate(TEXTRACT)
    assert new.decision == "NEW"
    match = c.evaluate(AZ / "Invoice_1.pdf.ocr.json")
    assert match.decision == "MATCH", match
    return reviews, new, match


def _queue_order(evals):
    """Evaluation ids in the queue's order: priority, highest first, then oldest."""
    return [e.evaluation_id for e in sorted(evals, key=lambda e: (-_priority(e), e.created_at))]


def test_review_queue(server, tenant: Tenant):
    reviewer_2 = tenant.mint_key("reviewer 2", ["evaluate", "read"])
    with preflight.Client(server.url, tenant.api_key) as c, \
            preflight.Client(server.url, reviewer_2) as c2, \
            preflight.Client(server.url, server.api_key) as other_tenant:
        reviews, new, match = _populate(c)

        # Items exist for exactly the answers that ask for a person, in the queue's order.
        page = c.list_review_items()
        assert isinstance(page, preflight.ReviewPage) and page.next_cursor is None
        items = page.items
        assert [i.evaluation_id for i in items] == _queue_order(reviews + [new])
        by_eval = {i.evaluation_id: i for i in items}
        assert match.evaluation_id not in by_eval
        for e in reviews + [new]:
            i = by_eval[e.evaluation_id]
            assert isinstance(i, preflight.ReviewItem)
            assert (i.decision, i.reason, i.status, i.claim_count) == (e.decision, "decision",
                                                                        "open", 0)
            assert i.priority == _priority(e)
            assert i.reliability_score == e.reliability_score
            assert i.template_id == e.template_id and i.outcome is None
            assert i.claimed_by is None and i.lease_expires_at is None
        assert by_eval[reviews[0].evaluation_id].template_version == 1
        assert by_eval[new.evaluation_id].extractor_vendor == "aws-textract"

        # Filters and paging.
        assert [i.evaluation_id for i in c.list_review_items(decision="NEW").items] == [
            new.evaluation_id]
        assert c.list_review_items(evaluation_id=reviews[1].evaluation_id).items[0].id == \
            by_eval[reviews[1].evaluation_id].id
        assert len(c.list_review_items(template_id="contoso").items) == 2
        assert c.list_review_items(decision="MATCH").items == []
        first = c.list_review_items(limit=1)
        assert len(first.items) == 1 and first.next_cursor
        assert [i.id for i in c.iter_review_items(limit=1)] == [i.id for i in items]
        assert [i.evaluation_id for i in c.iter_review_items(sort="age", limit=2)] == [
            e.evaluation_id for e in sorted(reviews + [new], key=lambda e: e.created_at)]
        with pytest.raises(preflight.ValidationError) as bad:
            c.list_review_items(status="stuck", sort="random")
        assert {f.field for f in bad.value.errors} == {"status", "sort"}

        item = by_eval[reviews[0].evaluation_id]
        got = c.get_review_item(item.id)
        assert isinstance(got, preflight.ReviewItem)
        assert got.model_dump(exclude={"age_seconds"}) == item.model_dump(exclude={"age_seconds"})

        # Claim; someone else's claim is a 409 saying it is held; extend; release.
        claimed = c.claim_review_item(item.id, lease_seconds=120)
        assert isinstance(claimed, preflight.ClaimedReviewItem)
        assert claimed.item.status == "claimed" and claimed.item.claim_count == 1
        assert claimed.item.claimed_by and claimed.lease_token
        assert claimed.item.lease_expires_at - claimed.item.claimed_at == timedelta(seconds=120)
        with pytest.raises(preflight.PreflightError) as taken:
            c2.claim_review_item(item.id)
        assert isinstance(taken.value, preflight.ConflictError)
        assert (taken.value.status, taken.value.code) == (409, "CONFLICT")
        assert "claimed by someone else" in taken.value.detail
        with pytest.raises(preflight.ConflictError):
            c2.resolve_review_item(item.id, "correct")
        assert c.list_review_items(status="claimed").items[0].id == item.id
        extended = c.claim_review_item(item.id, lease_token=claimed.lease_token,
                                       lease_seconds=900)
        assert extended.lease_token == claimed.lease_token
        assert extended.item.lease_expires_at > claimed.item.lease_expires_at
        with pytest.raises(preflight.ValidationError) as bad:
            c.claim_review_item(item.id, lease_token=claimed.lease_token, lease_seconds=0)
        assert [f.field for f in bad.value.errors] == ["lease_seconds"]
        released = c.release_review_item(item.id, claimed.lease_token)
        assert isinstance(released, preflight.ReviewItem)
        assert (released.status, released.claimed_by) == ("open", None)
        with pytest.raises(preflight.ConflictError):
            c.release_review_item(item.id, claimed.lease_token)

        # Claim-next by the second reviewer: the first open REVIEW in the queue's order.
        nxt = c2.claim_next_review_item(decision="REVIEW", lease_seconds=60)
        assert isinstance(nxt, preflight.ClaimedReviewItem)
        assert nxt.item.evaluation_id == _queue_order(reviews)[0]
        assert nxt.item.claimed_by != claimed.item.claimed_by
        assert c.claim_next_review_item(decision="MATCH") is None

        # Resolve under the claim: recorded as the evaluation's feedback.
        done = c2.resolve_review_item(nxt.item.id, "corrected", lease_token=nxt.lease_token,
                                      field_error_count=2, review_seconds=12.5)
        assert isinstance(done, preflight.ResolvedReviewItem)
        assert (done.item.status, done.item.outcome) == ("resolved", "corrected")
        assert done.item.resolved_by == nxt.item.claimed_by
        assert isinstance(done.feedback, preflight.Feedback)
        assert (done.feedback.evaluation_id, done.feedback.outcome,
                done.feedback.statistics_updated) == (nxt.item.evaluation_id, "corrected", True)
        fb = c.get_evaluation(nxt.item.evaluation_id).feedback
        assert fb["outcome"] == "corrected"
        assert {k: fb["details"][k] for k in ("field_error_count", "review_seconds", "source")} == {
            "field_error_count": 2, "review_seconds": 12.5, "source": "review-queue"}
        again = c2.resolve_review_item(nxt.item.id, "corrected", lease_token=nxt.lease_token)
        assert again.item.outcome == "corrected" and not again.feedback.statistics_updated
        with pytest.raises(preflight.ConflictError) as twice:
            c.resolve_review_item(nxt.item.id, "correct")
        assert "resolved" in twice.value.detail
        with pytest.raises(preflight.ConflictError):
            c.claim_review_item(nxt.item.id)

        # Bulk: each item on its own, failures reported per item.
        rest = [i for i in items if i.id != nxt.item.id]
        missing = str(uuid.uuid4())
        bulk = c.bulk_resolve_review_items([
            preflight.BulkResolveItem(id=rest[0].id, outcome="correct"),
            {"id": rest[1].id, "outcome": "maybe"},
            {"id": missing, "outcome": "correct"},
            {"id": nxt.item.id, "outcome": "rejected"},
        ], source="py-bulk")
        assert isinstance(bulk, preflight.BulkResolution)
        assert (bulk.resolved, bulk.failed) == (1, 3)
        assert [r.id for r in bulk.results] == [rest[0].id, rest[1].id, missing, nxt.item.id]
        assert [r.status for r in bulk.results] == [200, 422, 404, 409]
        assert bulk.results[0].item.outcome == "correct" and bulk.results[0].problem is None
        assert [r.problem.code for r in bulk.results[1:]] == [
            "VALIDATION_FAILED", "NOT_FOUND", "CONFLICT"]
        assert bulk.results[1].problem.errors[0].field == "outcome"
        assert c.get_evaluation(rest[0].evaluation_id).feedback["details"]["source"] == "py-bulk"
        with pytest.raises(preflight.ValidationError) as bad:
            c.bulk_resolve_review_items([])
        assert [f.field for f in bad.value.errors] == ["items"]

        assert [i.id for i in c.list_review_items().items] == [rest[1].id]
        assert {i.id for i in c.iter_review_items(status="resolved")} == {nxt.item.id, rest[0].id}
        last = c.claim_next_review_item()
        assert last.item.id == rest[1].id
        c.resolve_review_item(last.item.id, "rejected", lease_token=last.lease_token)
        assert c.claim_next_review_item() is None

        # Another tenant's item is a 404, as a missing one.
        for call in (lambda: other_tenant.get_review_item(item.id),
                     lambda: other_tenant.claim_review_item(item.id),
                     lambda: other_tenant.resolve_review_item(item.id, "correct")):
            with pytest.raises(preflight.NotFoundError) as e:
                call()
            assert (e.value.status, e.value.code) == (404, "NOT_FOUND")
        assert item.id not in {i.id for i in other_tenant.iter_review_items(status="resolved")}


def test_review_queue_async(server, tenant: Tenant):
    reviewer_2 = tenant.mint_key("reviewer 2", ["evaluate", "read"])
    with preflight.Client(server.url, tenant.api_key) as setup:
        reviews, new, match = _populate(setup)

    async def main():
        async with preflight.AsyncClient(server.url, tenant.api_key) as c, \
                preflight.AsyncClient(server.url, reviewer_2) as c2, \
                preflight.AsyncClient(server.url, server.api_key) as other_tenant:
            page = await c.list_review_items()
            assert [i.evaluation_id for i in page.items] == _queue_order(reviews + [new])
            assert [i.id async for i in c.iter_review_items(limit=1)] == [
                i.id for i in page.items]
            item = page.items[0]
            assert (await c.get_review_item(item.id)).id == item.id

            claimed = await c.claim_review_item(item.id)
            assert claimed.item.lease_expires_at - claimed.item.claimed_at == timedelta(
                seconds=600)
            with pytest.raises(preflight.ConflictError) as taken:
                await c2.claim_review_item(item.id)
            assert (taken.value.status, taken.value.code) == (409, "CONFLICT")
            assert (await c.release_review_item(item.id, claimed.lease_token)).status == "open"

            nxt = await c2.claim_next_review_item(template_id="contoso")
            assert nxt.item.id == item.id and nxt.item.claim_count == 2
            done = await c2.resolve_review_item(item.id, "correct", lease_token=nxt.lease_token)
            assert done.feedback.outcome == "correct" and done.item.status == "resolved"
            assert (await c.get_evaluation(item.evaluation_id)).feedback["outcome"] == "correct"

            rest = [i for i in page.items if i.id != item.id]
            bulk = await c.bulk_resolve_review_items(
                [{"id": rest[0].id, "outcome": "corrected", "field_error_count": 1},
                 {"id": item.id, "outcome": "rejected"}])
            assert (bulk.resolved, bulk.failed) == (1, 1)
            assert [r.status for r in bulk.results] == [200, 409]
            fb = (await c.get_evaluation(rest[0].evaluation_id)).feedback
            assert (fb["outcome"], fb["details"]["field_error_count"]) == ("corrected", 1)

            last = await c.claim_next_review_item(lease_seconds=30)
            assert last.item.id == rest[1].id
            await c.resolve_review_item(last.item.id, "correct", lease_token=last.lease_token)
            assert await c.claim_next_review_item() is None
            assert (await c.list_review_items()).items == []

            with pytest.raises(preflight.NotFoundError):
                await other_tenant.get_review_item(item.id)
            with pytest.raises(preflight.NotFoundError):
                await other_tenant.release_review_item(item.id, nxt.lease_token)

    asyncio.run(main())


# -- template suggestions --------------------------------------------------------------------


# Files of one layout each that cluster (Form_4 of the purchase orders is too far from the
# others: it is a suggestion's member in no grouping).
INVOICES = [AZ / f"Invoice_{i}.pdf.ocr.json" for i in range(1, 6)]
INVOICES_OLD = [AZ_OLD / f"Invoice_{i}.pdf.ocr.json" for i in range(1, 5)]
ORDERS = [HERO / f"Form_{i}.jpg.ocr.json" for i in (1, 2, 3, 5)]


def _new_evaluations(c, paths):
    out = [c.evaluate(p) for p in paths]
    assert [e.decision for e in out] == ["NEW"] * len(paths), [e.decision for e in out]
    return out


def _check_suggestion(s, members):
    ids = {e.evaluation_id for e in members}
    assert isinstance(s, preflight.TemplateSuggestion)
    assert s.size == len(members)
    assert set(s.sample_evaluation_ids) == ids
    assert s.sample_evaluation_ids == sorted(s.sample_evaluation_ids, reverse=True)
    assert s.first_seen == min(e.created_at for e in members)
    assert s.last_seen == max(e.created_at for e in members)
    assert s.representative.evaluation_id in ids
    assert s.exemplar_evaluation_ids[0] == s.representative.evaluation_id
    assert set(s.exemplar_evaluation_ids) <= ids
    assert s.extractor_vendors == ["azure-document-intelligence"]
    assert 0.675 <= s.min_member_similarity <= s.cohesion <= 1.0
    assert len(s.id) == 64
    layout = s.representative.layout
    assert isinstance(layout, preflight.LayoutSummary)
    rep = next(e for e in members if e.evaluation_id == s.representative.evaluation_id)
    assert layout.layout_fingerprint == rep.layout_fingerprint
    assert sum(layout.element_types.values()) == layout.element_count > 0


def test_template_suggestions(server, tenant: Tenant):
    with preflight.Client(server.url, tenant.api_key) as c, \
            preflight.Client(server.url, server.api_key) as other_tenant:
        invoices = _new_evaluations(c, INVOICES)
        orders = _new_evaluations(c, ORDERS)
        single = c.evaluate(TEXTRACT)
        assert single.decision == "NEW"

        listing = c.list_template_suggestions()
        assert isinstance(listing, preflight.TemplateSuggestionList)
        assert (listing.evaluations_considered, listing.truncated, listing.min_size,
                listing.input_limit) == (10, False, 3, 5000)
        assert len(listing.suggestions) == 2
        by_member = {s.representative.evaluation_id: s for s in listing.suggestions}
        inv = next(s for r, s in by_member.items() if r in {e.evaluation_id for e in invoices})
        po = next(s for r, s in by_member.items() if r in {e.evaluation_id for e in orders})
        _check_suggestion(inv, invoices)
        _check_suggestion(po, orders)
        assert [s.id for s in c.list_template_suggestions(min_size=5).suggestions] == [inv.id]
        assert c.list_template_suggestions(min_size=6).suggestions == []
        window = dict(from_ts=listing.from_ts, to_ts=listing.to_ts)
        assert [s.id for s in c.list_template_suggestions(**window).suggestions] == [
            s.id for s in listing.suggestions]

        # Another tenant sees none of them and cannot decide them.
        assert not {s.id for s in other_tenant.list_template_suggestions().suggestions} & {
            inv.id, po.id}
        with pytest.raises(preflight.NotFoundError):
            other_tenant.dismiss_template_suggestion(inv.id)

        # Accept: a template from the cluster's exemplars, which the layout then matches.
        accepted = c.accept_template_suggestion(inv.id, template_id="contoso-invoice",
                                                name="Contoso invoice", **window)
        assert isinstance(accepted, preflight.AcceptedSuggestion)
        t = accepted.template
        assert isinstance(t, preflight.Template)
        assert (t.template_id, t.version, t.status, t.name) == (
            "contoso-invoice", 1, "active", "Contoso invoice")
        assert t.exemplar_count == len(inv.exemplar_evaluation_ids)
        assert accepted.suggestion.id == inv.id and accepted.suggestion.size == 5
        d = accepted.decision
        assert isinstance(d, preflight.SuggestionDecision)
        assert (d.id, d.status, d.template_id, d.template_version_id, d.size) == (
            inv.id, "accepted", "contoso-invoice", t.id, 5)
        assert c.get_template("contoso-invoice").id == t.id
        assert c.evaluate(AZ / "Invoice_3.pdf.ocr.json").template == "contoso-invoice"
        with pytest.raises(preflight.ConflictError) as again:
            c.accept_template_suggestion(inv.id, template_id="contoso-invoice-2")
        assert again.value.code == "CONFLICT" and "accepted already" in again.value.detail

        # Dismiss: gone from the listing for good; dismissing again answers the same.
        dismissed = c.dismiss_template_suggestion(po.id, **window)
        assert isinstance(dismissed, preflight.SuggestionDecision)
        assert (dismissed.id, dismissed.status, dismissed.size, dismissed.template_id) == (
            po.id, "dismissed", 4, None)
        assert dismissed.representative_evaluation_id == po.representative.evaluation_id
        assert c.list_template_suggestions().suggestions == []
        assert c.dismiss_template_suggestion(po.id) == dismissed
        with pytest.raises(preflight.ConflictError):
            c.accept_template_suggestion(po.id, template_id="hero-po")
        c.evaluate(HERO / "Form_1.jpg.ocr.json")
        assert c.list_template_suggestions(min_size=2).suggestions == []

        # Bad input.
        with pytest.raises(preflight.ValidationError) as bad:
            c.dismiss_template_suggestion("not-a-suggestion")
        assert [f.field for f in bad.value.errors] == ["id"]
        with pytest.raises(preflight.NotFoundError):
            c.dismiss_template_suggestion("0" * 64)
        now = datetime.now(timezone.utc)
        with pytest.raises(preflight.BadRequestError) as bad:
            c.list_template_suggestions(from_ts=now, to_ts=now - timedelta(hours=1), min_size=1)
        assert (bad.value.status, bad.value.code) == (400, "INVALID_QUERY")
        assert {f.field for f in bad.value.errors} == {"from_ts", "min_size"}


def test_template_suggestions_async(server, tenant: Tenant):
    with preflight.Client(server.url, tenant.api_key) as setup:
        invoices = _new_evaluations(setup, INVOICES_OLD)
        orders = _new_evaluations(setup, ORDERS[:3])

    async def main():
        async with preflight.AsyncClient(server.url, tenant.api_key) as c:
            listing = await c.list_template_suggestions(to_ts=datetime.now(timezone.utc))
            assert [s.size for s in listing.suggestions] == [4, 3]
            inv, po = listing.suggestions
            _check_suggestion(inv, invoices)
            _check_suggestion(po, orders)
            key = f"accept-{uuid.uuid4()}"
            window = dict(from_ts=listing.from_ts, to_ts=listing.to_ts)
            accepted = await c.accept_template_suggestion(inv.id, template_id="contoso-v2.0",
                                                          idempotency_key=key, **window)
            assert accepted.template.template_id == "contoso-v2.0"
            # The same key and body replay the first answer instead of a 409.
            replay = await c.accept_template_suggestion(inv.id, template_id="contoso-v2.0",
                                                        idempotency_key=key, **window)
            assert replay.template.id == accepted.template.id
            dismissed = await c.dismiss_template_suggestion(po.id, min_size=3)
            assert dismissed.status == "dismissed"
            assert (await c.list_template_suggestions(min_size=2)).suggestions == []

    asyncio.run(main())
