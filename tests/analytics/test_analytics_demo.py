"""Analytics against a store the demo populated through the real tracekit core (and the sample plugin)."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
from mlflow import MlflowClient
from mlflow.entities import Trace

from dspy_tracekit import analytics


def raw_traces(uri, experiment):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return list(client.search_traces(locations=[exp.experiment_id], max_results=1000))


def nearest_rank(values, q):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def test_demo_percentiles_per_span_name_equal_a_hand_computation(demo_store):
    traces = raw_traces(demo_store, "demo")
    assert len(traces) == 6
    durations: dict[str, list[float]] = {}
    for trace in traces:
        for span in trace.data.spans:
            durations.setdefault(span.name, []).append((span.end_time_ns - span.start_time_ns) / 1e6)
    result = analytics.stats(tracking_uri=demo_store, experiment="demo")
    assert {row.name for row in result.spans} == set(durations)
    assert result.weighted is False
    for row in result.spans:
        assert row.count == row.stored == len(durations[row.name])
        assert row.p50_ms == pytest.approx(nearest_rank(durations[row.name], 50))
        assert row.p95_ms == pytest.approx(nearest_rank(durations[row.name], 95))
        assert row.p99_ms == pytest.approx(nearest_rank(durations[row.name], 99))
    lm = [row for row in result.spans if row.span_type == "CHAT_MODEL"]
    assert lm and all(row.total_tokens > 0 for row in lm)


def test_demo_sampled_traces_are_reweighted_by_their_recorded_probability(demo_store):
    traces = raw_traces(demo_store, "demo_sampled")
    assert 0 < len(traces) < 10, "with seeded trace ids the sample plugin keeps some of the 10, not all"
    assert {t.info.tags.get("tracekit.sampling.probability") for t in traces} == {"0.5"}
    result = analytics.stats(tracking_uri=demo_store, experiment="demo_sampled")
    assert result.weighted is True
    assert result.traces_stored == len(traces)
    assert result.traces == pytest.approx(2 * len(traces))
    durations = [float(t.info.execution_duration) for t in traces]
    assert result.p95_ms == pytest.approx(nearest_rank(durations * 2, 95))


def test_demo_csv_has_one_row_per_span_and_json_reimports(demo_store):
    store = analytics.open_store(demo_store, "demo")
    out = io.StringIO()
    analytics.export_csv(analytics.iter_traces(store), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    traces = raw_traces(demo_store, "demo")
    assert len(rows) == sum(len(t.data.spans) for t in traces)
    assert {(r["trace_id"], r["span_id"]) for r in rows} == {
        (t.info.trace_id, s.span_id) for t in traces for s in t.data.spans
    }
    assert any(r.get("context.user_role") for r in rows)  # the demo's context tags became columns
    out = io.StringIO()
    analytics.export_json(analytics.iter_traces(store), out)
    loaded = [Trace.from_dict(d) for d in json.loads(out.getvalue())]
    assert sorted(t.info.trace_id for t in loaded) == sorted(t.info.trace_id for t in traces)
    assert sum(len(t.data.spans) for t in loaded) == len(rows)
