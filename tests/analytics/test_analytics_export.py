"""Export (CSV, JSON) and retention (prune) against a real MLflow store."""

from __future__ import annotations

import csv
import io
import json

import pytest
from mlflow import MlflowClient
from mlflow.entities import Trace

from dspy_tracekit import analytics


def all_traces(store):
    return list(MlflowClient(store.uri).search_traces(locations=[store.experiment_id], max_results=1000))


def test_csv_has_one_row_per_stored_span_and_round_trips(synthetic_store):
    store = analytics.open_store(synthetic_store.uri, synthetic_store.experiment)
    out = io.StringIO()
    n = analytics.export_csv(analytics.iter_traces(store), out)
    raw = all_traces(synthetic_store)
    spans = {(t.info.trace_id, s.span_id): s for t in raw for s in t.data.spans}
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert n == len(rows) == len(spans)
    for row in rows:
        span = spans[(row["trace_id"], row["span_id"])]
        assert row["name"] == span.name
        assert (row["parent_id"] or None) == span.parent_id
        assert int(row["start_ns"]) == span.start_time_ns
        assert float(row["duration_ms"]) == pytest.approx((span.end_time_ns - span.start_time_ns) / 1e6)
        assert row["status"] == span.status.status_code.value
        assert row["context.user_role"] == span.attributes["tracekit.context.user_role"]
    lm_rows = [r for r in rows if r["name"] == "LM"]
    assert {r["total_tokens"] for r in lm_rows} == {"120"}
    assert {float(r["cost_usd"]) for r in lm_rows} == {0.0015}


def test_json_export_reimports_with_mlflow(synthetic_store):
    store = analytics.open_store(synthetic_store.uri, synthetic_store.experiment)
    out = io.StringIO()
    n = analytics.export_json(analytics.iter_traces(store), out)
    loaded = [Trace.from_dict(d) for d in json.loads(out.getvalue())]
    originals = {t.info.trace_id: t for t in all_traces(synthetic_store)}
    assert n == len(loaded) == len(originals) == 30
    for trace in loaded:
        original = originals[trace.info.trace_id]
        assert trace.info.state == original.info.state
        assert trace.info.tags.get("user_role") == original.info.tags.get("user_role")
        assert [s.span_id for s in trace.data.spans] == [s.span_id for s in original.data.spans]
        assert [s.attributes for s in trace.data.spans] == [s.attributes for s in original.data.spans]


def test_json_export_of_nothing_is_an_empty_array(empty_store):
    store = analytics.open_store(empty_store.uri, empty_store.experiment)
    out = io.StringIO()
    assert analytics.export_json(analytics.iter_traces(store), out) == 0
    assert json.loads(out.getvalue()) == []


def test_prune_deletes_exactly_the_old_traces(store_copy):
    store = analytics.open_store(store_copy.uri, store_copy.experiment)
    plan = analytics.plan_prune(store, "30d")
    old = {t["trace_id"] for t in store_copy.traces if t["age_s"] > 30 * 86400}
    assert set(plan.trace_ids) == old and len(old) == 6
    assert analytics.prune(plan) == 6
    left = {t.info.trace_id for t in all_traces(store_copy)}
    assert left == {t["trace_id"] for t in store_copy.traces} - old


def test_prune_keep_errors_spares_old_failed_traces(store_copy):
    store = analytics.open_store(store_copy.uri, store_copy.experiment)
    plan = analytics.plan_prune(store, "30d", keep_errors=True)
    old_ok = {t["trace_id"] for t in store_copy.traces if t["age_s"] > 30 * 86400 and not t["failed"]}
    old_failed = {t["trace_id"] for t in store_copy.traces if t["age_s"] > 30 * 86400 and t["failed"]}
    assert old_failed, "the fixture must hold old failed traces for this test to mean anything"
    assert set(plan.trace_ids) == old_ok and plan.errors == 0
    analytics.prune(plan)
    left = {t.info.trace_id for t in all_traces(store_copy)}
    assert old_failed <= left and not (old_ok & left)
