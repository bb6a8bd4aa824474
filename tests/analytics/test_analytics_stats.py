"""Numbers from ``dspy_tracekit.analytics.stats`` against hand computations over a real MLflow store."""

from __future__ import annotations

import json
import math

import pytest
from mlflow import MlflowClient

from dspy_tracekit import analytics


def stored_spans(store, name):
    """(duration ms, trace's sampling probability) of every stored span called ``name``, read raw."""
    traces = MlflowClient(store.uri).search_traces(locations=[store.experiment_id], max_results=1000)
    out = []
    for trace in traces:
        p = float(trace.info.tags.get("tracekit.sampling.probability", "1"))
        for span in trace.data.spans:
            if span.name == name:
                out.append(((span.end_time_ns - span.start_time_ns) / 1e6, p))
    return out


def nearest_rank(values, q):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def test_weighted_percentile_with_unit_weights_is_nearest_rank():
    values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0]
    for q in (1, 25, 50, 90, 95, 99, 100):
        assert analytics.weighted_percentile(values, None, q) == nearest_rank(values, q)
    assert analytics.weighted_percentile([], None, 50) is None


def test_span_percentiles_equal_hand_computation_over_stored_durations(synthetic_store):
    result = analytics.stats(tracking_uri=synthetic_store.uri, experiment=synthetic_store.experiment)
    lm = next(row for row in result.spans if row.name == "LM")
    rows = stored_spans(synthetic_store, "LM")
    # a trace kept with p = 0.5 stands for two: replicate it and take the plain nearest rank
    replicated = [d for d, p in rows for _ in range(round(1 / p))]
    assert lm.stored == len(rows) == 30
    for q, got in ((50, lm.p50_ms), (95, lm.p95_ms), (99, lm.p99_ms)):
        assert got == pytest.approx(nearest_rank(replicated, q))


def test_counts_tokens_and_cost_are_reweighted_by_sampling_probability(synthetic_store):
    result = analytics.stats(tracking_uri=synthetic_store.uri, experiment=synthetic_store.experiment)
    plan = synthetic_store.traces
    expected = sum(1 / (t["p"] or 1.0) for t in plan)
    expected_errors = sum(1 / (t["p"] or 1.0) for t in plan if t["failed"])
    assert result.weighted is True
    assert result.traces_stored == 30
    assert result.traces == pytest.approx(expected)  # 15 traces at p=0.5 count twice: 45
    assert result.errors == pytest.approx(expected_errors)
    lm = next(row for row in result.spans if row.name == "LM")
    assert lm.count == pytest.approx(expected)
    assert lm.total_tokens == pytest.approx(120 * expected)
    assert lm.cost_usd == pytest.approx(0.0015 * expected)
    assert result.cost_by_model == {"openai/gpt-4o-mini": pytest.approx(0.0015 * expected)}
    classify = next(row for row in result.spans if row.name == "classify")
    assert classify.error_rate == pytest.approx(expected_errors / expected)


def test_error_correlation_ranks_the_failing_input_shape_by_lift(synthetic_store):
    result = analytics.stats(tracking_uri=synthetic_store.uri, experiment=synthetic_store.experiment)
    plan = synthetic_store.traces
    w = [1 / (t["p"] or 1.0) for t in plan]
    base = sum(wi for wi, t in zip(w, plan) if t["failed"]) / sum(w)
    viewer = [(wi, t) for wi, t in zip(w, plan) if t["role"] == "viewer"]
    viewer_rate = sum(wi for wi, t in viewer if t["failed"]) / sum(wi for wi, _ in viewer)
    by_feature = {c.feature: c for c in result.error_correlation}
    assert by_feature["tag user_role=viewer"].lift == pytest.approx(viewer_rate / base)
    assert "tag user_role=admin" not in by_feature  # admins never fail: lift 0, not listed
    top = result.error_correlation[0]
    assert top.feature == "input message length 128-511 chars"
    assert top.lift == pytest.approx(max(c.lift for c in result.error_correlation))


def test_execution_paths_count_each_trace_shape(synthetic_store):
    result = analytics.stats(tracking_uri=synthetic_store.uri, experiment=synthetic_store.experiment)
    shapes = {p.path: p.count for p in result.paths}
    ok = "IntentDetector(classify(ChatAdapter.format, LM, ChatAdapter.parse))"
    failed = "IntentDetector(classify(ChatAdapter.format, LM))"
    assert set(shapes) == {ok, failed}
    assert shapes[failed] == pytest.approx(result.errors)
    assert sum(p.share for p in result.paths) == pytest.approx(1.0)


def test_since_and_filter_narrow_the_traces(synthetic_store):
    recent = analytics.stats(tracking_uri=synthetic_store.uri, experiment=synthetic_store.experiment, since="7d")
    assert recent.traces_stored == sum(1 for t in synthetic_store.traces if t["age_s"] < 7 * 86400) == 24
    admins = analytics.stats(tracking_uri=synthetic_store.uri, experiment=synthetic_store.experiment,
                             filter="tag.user_role = 'admin'")
    assert admins.traces_stored == sum(1 for t in synthetic_store.traces if t["role"] == "admin")
    assert admins.errors == 0


def test_empty_experiment_gives_an_empty_well_formed_result(empty_store):
    result = analytics.stats(tracking_uri=empty_store.uri, experiment=empty_store.experiment)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["traces_stored"] == 0 and data["traces"] == 0
    assert data["spans"] == [] and data["paths"] == [] and data["error_correlation"] == []
    assert data["p95_ms"] is None and data["cost_usd"] == 0


@pytest.mark.parametrize("value", ["1h", "7d", "30m", "2w", "2026-11-01", "2026-11-01T12:00:00+02:00"])
def test_parse_since_accepts_ages_and_dates(value):
    assert analytics.parse_since(value) > 0


@pytest.mark.parametrize("value", ["yesterday", "7", "-1d", "2026-13-01", ""])
def test_parse_since_rejects_anything_else_with_one_line(value):
    with pytest.raises(analytics.AnalyticsError) as err:
        analytics.parse_since(value)
    assert "\n" not in str(err.value)
