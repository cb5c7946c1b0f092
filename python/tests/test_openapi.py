"""The client's models, routes, bodies and query parameters against the server's own
OpenAPI description (GET /openapi.json), so a change on either side fails here."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import httpx
import pytest

import preflight
from conftest import data_dir

FEATS = preflight.features(
    data_dir() / "extractors/textract/analyze_document/multi-page-forms-samples-2-page.json")

# Server schema → client model, for every answer the client decodes.
ANSWERS = {
    "EvaluateResponse": preflight.Evaluation,
    "Alert": preflight.Alert,
    "AlertRuleView": preflight.AlertRule,
    "AlertRuleList": preflight.AlertRuleList,
    "AlertRecord": preflight.AlertRecord,
    "AlertPage": preflight.AlertPage,
    "BatchResponse": preflight.BatchResult,
    "BatchItem": preflight.BatchItem,
    "Problem": preflight.Problem,
    "TemplateView": preflight.Template,
    "TemplatePage": preflight.TemplatePage,
    "EvaluationPage": preflight.EvaluationPage,
    "FeedbackResponse": preflight.Feedback,
    "DriftReport": preflight.DriftReport,
    "DriftBucket": preflight.DriftBucket,
    "ChangePointView": preflight.ChangePoint,
    "DetectorView": preflight.DetectorState,
    "ReviewItemView": preflight.ReviewItem,
    "ReviewPage": preflight.ReviewPage,
    "ClaimedItem": preflight.ClaimedReviewItem,
    "ResolvedItem": preflight.ResolvedReviewItem,
    "BulkResolveResult": preflight.BulkResolutionItem,
    "BulkResolveResponse": preflight.BulkResolution,
    "LayoutSummary": preflight.LayoutSummary,
    "Representative": preflight.SuggestionRepresentative,
    "Suggestion": preflight.TemplateSuggestion,
    "SuggestionList": preflight.TemplateSuggestionList,
    "DecisionView": preflight.SuggestionDecision,
    "Accepted": preflight.AcceptedSuggestion,
    "DecisionBreakdown": preflight.DecisionBreakdown,
    "Aggregate": preflight.Aggregate,
    "OpenByAge": preflight.OpenByAge,
    "QueueSummary": preflight.ReviewQueueSummary,
    "Summary": preflight.AnalyticsSummary,
    "TimeseriesBucket": preflight.TimeseriesBucket,
    "Timeseries": preflight.Timeseries,
    "ExtractorStats": preflight.ExtractorStats,
    "ExtractorsReport": preflight.ExtractorsReport,
    "TemplateStats": preflight.TemplateStats,
    "TemplatesReport": preflight.TemplatesReport,
    "AutomatedPrecision": preflight.AutomatedPrecision,
    "ReliabilityBand": preflight.ReliabilityBand,
    "Calibration": preflight.Calibration,
    "UsageReport": preflight.Usage,
}

# Server schema → client model, for the pieces of request bodies the client types.
REQUESTS = {
    "BulkResolveItem": preflight.BulkResolveItem,
}


@pytest.fixture(scope="module")
def spec(server):
    r = httpx.get(server.url + "/openapi.json")
    r.raise_for_status()
    return r.json()


def _schema(spec, name):
    return spec["components"]["schemas"][name]


def _props(schema, spec):
    """Properties of a schema, following allOf and $ref (utoipa writes flatten as allOf)."""
    props, required = dict(schema.get("properties", {})), set(schema.get("required", []))
    for part in schema.get("allOf", []):
        if "$ref" in part:
            part = _schema(spec, part["$ref"].rsplit("/", 1)[1])
        p, r = _props(part, spec)
        props.update(p)
        required |= r
    return props, required


def _fields(model):
    return {f.alias or name: f for name, f in model.model_fields.items()}


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_answer_models_match_the_schemas(spec, name):
    props, required = _props(_schema(spec, name), spec)
    fields = _fields(ANSWERS[name])
    assert set(fields) == set(props), name
    # A field the client requires must be one the server always sends.
    assert {k for k, f in fields.items() if f.is_required()} <= required, name


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_request_models_match_the_schemas(spec, name):
    props, required = _props(_schema(spec, name), spec)
    fields = _fields(REQUESTS[name])
    assert set(fields) == set(props), name
    assert required <= {k for k, f in fields.items() if f.is_required()}, name


def test_evaluation_record_is_the_answer_plus_the_stored_fields(spec):
    view, _ = _props(_schema(spec, "EvaluationView"), spec)
    answer, _ = _props(_schema(spec, "EvaluateResponse"), spec)
    # EvaluationView flattens the stored answer (typed as a free object) with these fields.
    assert set(_fields(preflight.EvaluationRecord)) == set(answer) | (set(view) - {"response"})


def _calls():
    c = preflight.Client("http://unused", "k")
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return {
        "EvaluateRequest": c._evaluate(FEATS, extractor={"cost_usd": 0.01}, client_doc_hash="h",
                                       client_correlation_id="c", pipeline_id="p"),
        "BatchRequestSchema": c._evaluate_batch([FEATS]),
        "CreateTemplateRequest": c._register_template(
            FEATS, template_id="t", version=1, name="n", description="d", baseline_reliability=0.9,
            correction_rules=[], status="active",
            extractor={"vendor": "aws", "model": "textract", "version": "1"}),
        "CreateTemplateRequest#exemplars": c._register_template([FEATS, FEATS], template_id="t"),
        "AddExemplarRequest": c._add_exemplar("t", FEATS, version=1),
        "FromEvaluationRequest": c._register_from_evaluation(
            "e", template_id="t", version=1, name="n", description="d", baseline_reliability=0.9,
            correction_rules=[]),
        "StatusRequest": c._set_template_status("t", "active", version=1),
        "FeedbackRequest": c._feedback("e", "correct", field_error_count=1, review_seconds=1.0,
                                       source="s"),
        "RuleSpec": c._create_alert_rule(name="n", metric="review_rate", severity="warning",
                                         operator="gt", threshold=0.3, template_id="t",
                                         enabled=True, window_seconds=900, min_volume=20),
        "RuleChange": c._update_alert_rule("r", {"name": "n", "enabled": False,
                                                 "template_id": None}),
        "ClaimRequest": c._claim_review_item("i", lease_seconds=60, lease_token="tok"),
        "ClaimRequest#next": c._claim_next_review_item(
            decision="REVIEW", reason="decision", template_id="t", extractor_vendor="v",
            extractor_model="m", evaluation_id="e", min_age_seconds=1, max_age_seconds=2,
            sort="age", lease_seconds=60),
        "ReleaseRequest": c._release_review_item("i", "tok"),
        "ResolveRequest": c._resolve_review_item("i", "corrected", lease_token="tok",
                                                 field_error_count=1, review_seconds=2.0,
                                                 source="s"),
        "BulkResolveRequest": c._bulk_resolve_review_items(
            [preflight.BulkResolveItem(id="i", outcome="correct", lease_token="tok",
                                       field_error_count=0)], source="s"),
        "AcceptRequest": c._accept_template_suggestion(
            "s", template_id="t", name="n", description="d", from_ts=when, to_ts=when,
            min_size=3),
        None: [c._get_template("t", version=1, include_exemplars=True),
               c._list_templates(status="active", template_id="t", limit=1, cursor="x"),
               c._list_evaluations(decision="MATCH", template_id="t", correlation_id="c",
                                   pipeline_id="p", min_reliability=0.1, max_drift=0.9,
                                   from_=when, to=when, limit=1, cursor="x"),
               c._get_evaluation("e"),
               c._template_drift("t", version=1, from_=when, to=when, bucket="day"),
               c._export_templates(status="active", template_id="t"),
               c._list_alert_rules(), c._get_alert_rule("r"), c._delete_alert_rule("r"),
               c._get_alert("a"),
               c._move_alert("a", "acknowledge"), c._move_alert("a", "resolve"),
               c._list_alerts(status="open", severity="info", metric="drift",
                              delivery_status="no_endpoint", template_id="t", limit=1,
                              cursor="x"),
               c._list_review_items(status="open", decision="NEW", reason="sample",
                                    template_id="t", extractor_vendor="v", extractor_model="m",
                                    evaluation_id="e", min_age_seconds=1, max_age_seconds=2,
                                    sort="priority", limit=1, cursor="x"),
               c._get_review_item("i"),
               c._list_template_suggestions(from_ts=when, to_ts=1767225600, min_size=2),
               c._dismiss_template_suggestion("s", from_ts="2026-01-01T00:00:00Z", to_ts=when,
                                              min_size=2),
               *[c._analytics(name, model, from_ts=when, to_ts=when, tz="UTC",
                              interval="day" if name == "timeseries" else None)
                 for name, model in (("summary", preflight.AnalyticsSummary),
                                     ("timeseries", preflight.Timeseries),
                                     ("extractors", preflight.ExtractorsReport),
                                     ("templates", preflight.TemplatesReport),
                                     ("calibration", preflight.Calibration))],
               c._usage()],
    }


def _operation(spec, call):
    path = call.path
    for template, item in spec["paths"].items():
        parts, actual = template.split("/"), path.split("/")
        if len(parts) == len(actual) and all(
            p == a or (p.startswith("{") and p.endswith("}")) for p, a in zip(parts, actual)
        ):
            op = item.get(call.method.lower())
            if op:
                return template, op
    raise AssertionError(f"{call.method} {path}: no such route in /openapi.json")


def _answer_schema(op):
    """The schema name of the route's success answer (None for one without a body)."""
    for status in ("200", "201"):
        content = op.get("responses", {}).get(status, {}).get("content", {})
        ref = content.get("application/json", {}).get("schema", {}).get("$ref")
        if ref:
            return ref.rsplit("/", 1)[1]
    return None


def test_request_bodies_routes_and_query_parameters(spec):
    calls = _calls()
    every = [c for k, v in calls.items() if k for c in [v]] + calls[None]
    models = {model: name for name, model in ANSWERS.items()}
    # Checked on its own above: the view flattens the stored answer, typed as a free object.
    models[preflight.EvaluationRecord] = "EvaluationView"
    for call in every:
        template, op = _operation(spec, call)
        documented = {p["name"] for p in op.get("parameters", []) if p.get("in") == "query"}
        sent = {k for k, v in call.params.items() if v is not None}
        assert sent <= documented, (template, sent - documented)
        # The answer is decoded into the model of the schema the route documents.
        answer = _answer_schema(op)
        if call.model is not None and answer is not None:
            assert models.get(call.model) == answer, (template, call.model, answer)
    for name, call in calls.items():
        if name is None:
            continue
        schema_name = name.split("#")[0]
        props, required = _props(_schema(spec, schema_name), spec)
        body = json.loads(call.body)
        assert set(body) <= set(props), (name, set(body) - set(props))
        assert required <= set(body), (name, required - set(body))
        template, op = _operation(spec, call)
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/" + schema_name), (template, ref)
