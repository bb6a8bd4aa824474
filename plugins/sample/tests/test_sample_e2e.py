"""The sample plugin inside the real core: a DSPy program on DummyLM, traces in a real MLflow store."""

from __future__ import annotations

import dspy
import mlflow
import pytest
from dspy_tracekit_sample import PROBABILITY_TAG, RULE_TAG, estimate_total, sampling_probability

import dspy_tracekit as tk
from dspy_tracekit.errors import ConfigError


def _run(program, n: int, **kwargs_of):
    """Call the program ``n`` times; ``kwargs_of(i)`` gives each call's extra arguments."""
    for i in range(n):
        extra = kwargs_of["per_call"](i) if "per_call" in kwargs_of else {}
        tags = extra.pop("tags", {})
        with tk.context(**tags):
            try:
                program(message=f"request {i}", **extra)
            except RuntimeError:
                pass


def test_errors_and_slow_requests_are_stored_while_ratio_is_zero(program, store):
    store.enable({"ratio": 0.0, "rules": [{"name": "slow", "latency_ms_over": 40}]})

    def per_call(i):
        return {"fail": i % 10 == 3, "sleep_s": 0.06 if i % 10 == 7 else 0.0, "tags": {"request": str(i)}}

    _run(program, 30, per_call=per_call)
    traces = store.traces()
    by_request = {t.info.tags["request"]: t for t in traces}
    assert set(by_request) >= {str(i) for i in range(30) if i % 10 in (3, 7)}
    for i in range(30):
        if i % 10 == 3:
            assert by_request[str(i)].info.tags[RULE_TAG] == "errors"
            assert by_request[str(i)].info.state == "ERROR"
        if i % 10 == 7:
            assert by_request[str(i)].info.tags[RULE_TAG] == "slow"
            assert by_request[str(i)].info.tags[PROBABILITY_TAG] == "1.0"
    # ratio 0: nothing is ever kept by the ratio itself
    assert all(t.info.tags[RULE_TAG] in ("errors", "slow") for t in traces)
    counters = tk.counters()
    assert counters["sample.head.pending"] == 30
    assert counters["sample.tail.kept.errors"] == 3
    assert counters["sample.kept"] + counters["sample.dropped"] == 30


def test_head_dropped_requests_leave_no_trace_and_are_counted(program, store):
    store.enable({"ratio": 0.0, "keep_errors": False})
    _run(program, 10, per_call=lambda i: {"fail": i == 4})
    assert store.traces() == []
    counters = tk.counters()
    assert counters.get("sample.head.dropped.ratio") == 10, counters
    assert counters["core.traces_dropped.sampled_out_head"] == 10
    assert counters.get("core.traces_finished", 0) == 0


def test_kept_traces_carry_probability_and_rule_tags_in_mlflow(program, store):
    store.enable({"ratio": 1.0, "keep_errors": False})
    _run(program, 3)
    traces = store.traces()
    assert len(traces) == 3
    for t in traces:
        assert t.info.tags[PROBABILITY_TAG] == "1.0" and t.info.tags[RULE_TAG] == "ratio"
        assert sampling_probability(t.info.tags) == 1.0


def test_a_users_mlflow_trace_with_dspy_inside_is_one_decision(program, store):
    """The user's ``@mlflow.trace`` root is the trace's root: one head decision covers its DSPy spans."""
    store.enable({"ratio": 0.0, "keep_errors": False})

    @mlflow.trace(name="handle_request")
    def handle(message):
        return program(message=message)

    handle("inside a user trace")
    program(message="outside any user trace")
    assert store.traces() == []  # ratio 0: neither the user's trace nor the plain DSPy one is stored
    counters = tk.counters()
    assert counters["sample.head.dropped.ratio"] == 2
    assert counters["core.traces_dropped.sampled_out_head"] == 2


def test_a_kept_users_mlflow_trace_carries_the_sampling_tags(program, store):
    store.enable({"ratio": 1.0, "keep_errors": False})

    @mlflow.trace(name="handle_request")
    def handle(message):
        return program(message=message)

    handle("inside a user trace")
    (trace,) = store.traces()
    names = [s.name for s in trace.data.spans]
    assert names[0] == "handle_request" and "Classify.forward" in names and "DummyLM.__call__" in names
    assert trace.info.tags[RULE_TAG] == "ratio" and trace.info.tags[PROBABILITY_TAG] == "1.0"


def test_dspy_call_inside_a_sampled_out_mlflow_trace_is_dropped_with_it(program, store):
    store.enable({"ratio": 1.0})

    @mlflow.trace(name="handle_request", sampling_ratio_override=0.0)  # MLflow's sampler drops it
    def handle(message):
        return program(message=message)

    handle("inside a sampled-out user trace")
    program(message="outside any user trace")  # ratio 1: kept
    traces = store.traces()
    assert [t.data.spans[0].name for t in traces] == ["Classify.forward"]
    assert tk.counters()["core.traces_dropped.sampled_out_head"] == 1


def test_mlflow_sampling_ratio_narrows_the_recorded_probability(program, store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACE_SAMPLING_RATIO", "0.5")
    store.enable({"ratio": 1.0, "keep_errors": False})
    _run(program, 60)
    traces = store.traces()
    assert 0 < len(traces) < 60  # MLflow's rule kept about half
    assert {t.info.tags[PROBABILITY_TAG] for t in traces} == {"0.5"}
    assert all((int(t.info.trace_id[3:], 16) & (2**64 - 1)) < 2**63 for t in traces)
    assert tk.counters()["core.traces_dropped.sampled_out_head"] == 60 - len(traces)


def test_evaluate_runs_use_evaluate_ratio(program, store):
    store.enable({"ratio": 1.0, "evaluate_ratio": 0.0, "keep_errors": False})
    devset = [dspy.Example(message=f"m{i}", answer="Use the builder.").with_inputs("message") for i in range(3)]
    dspy.Evaluate(devset=devset, metric=lambda ex, pred, trace=None: ex.answer == pred.answer,
                  num_threads=1, display_progress=False)(program)
    program(message="a plain call")
    traces = store.traces()
    assert len(traces) == 1 and traces[0].data.spans[0].name == "Classify.forward"
    assert tk.counters()["sample.head.dropped.evaluate_ratio"] == 1


def test_reweighted_totals_of_a_sampled_run_estimate_the_unsampled_totals(program, store):
    """200 requests, sampled at mixed probabilities; HT totals recover the unsampled totals.

    Unsampled truth by construction: 200 traces; request ``i`` makes ``2 + i % 4`` LM calls (checked
    on every stored trace, so the truth is what the core records)."""
    n = 200

    def per_call(i):
        return {"loops": i % 4, "fail": i % 23 == 5,
                "tags": {"tier": "gold" if i % 6 == 0 else "free", "request": str(i)}}

    def lm_calls(trace) -> int:
        return sum(1 for s in trace.data.spans if s.name == "DummyLM.__call__")

    store.enable({"ratio": 0.15, "rules": [{"name": "gold", "tag": "tier", "equals": "gold", "ratio": 0.5}]})
    _run(program, n, per_call=per_call)
    sampled = store.traces()
    assert 0 < len(sampled) < n
    for t in sampled:
        assert lm_calls(t) == 2 + int(t.info.tags["request"]) % 4
    true_traces, true_calls = n, sum(2 + i % 4 for i in range(n))
    probabilities = [sampling_probability(t.info.tags) for t in sampled]
    assert set(probabilities) <= {0.15, 0.5, 1.0} and len(set(probabilities)) == 3
    for values, truth in (([1.0] * len(sampled), true_traces),
                          ([float(lm_calls(t)) for t in sampled], true_calls)):
        est = estimate_total(zip(values, probabilities))
        assert est.std_error > 0
        assert abs(est.total - truth) <= 4.5 * est.std_error, (est, truth)
    counters = tk.counters()
    assert counters["sample.kept"] == len(sampled) and counters["sample.kept"] + counters["sample.dropped"] == n


@pytest.mark.parametrize(("table", "key"), [
    ({"ratio": 1.5}, "sample.ratio must be between 0 and 1, got 1.5"),
    ({"rules": [{"latency_ms_over": 10}, {"tag": "a", "equals": "b"}, {"tag": "a", "regex": "(("}]},
     "sample.rules[2].regex"),
    ({"rules": [{"span_name": "x", "colour": "red"}]}, "sample.rules[0].colour: unknown key"),
    ({"max_traces_per_second": -3}, "sample.max_traces_per_second"),
])
def test_bad_config_fails_enable_naming_the_key(store, table, key):
    with pytest.raises(ConfigError) as info:
        store.enable(table)
    assert key in str(info.value) and "[sample]" in str(info.value)
    assert tk.counters() == {}  # not enabled



def test_cost_rule_keeps_expensive_requests_priced_by_the_cost_plugin(program, store):
    """The real cost plugin prices a real dspy.LM call through LiteLLM (mock_response, real usage)."""
    lm = dspy.LM("openai/gpt-4o-mini", cache=False, api_key="x", mock_response=(
        "[[ ## intent ## ]]\nx\n\n[[ ## reasoning ## ]]\nr\n\n[[ ## answer ## ]]\ny\n\n[[ ## completed ## ]]"))
    store.enable({"ratio": 0.0, "keep_errors": False, "rules": [{"name": "costly", "cost_usd_over": 0.0}]},
                 plugins=("sample", "cost"))
    with dspy.context(lm=lm):
        program(message="priced")
    with dspy.context(lm=dspy.utils.DummyLM([{"intent": "x", "reasoning": "r", "answer": "y"}] * 10)):
        program(message="free")  # DummyLM reports no usage: unknown cost, not over the threshold
    traces = store.traces()
    assert len(traces) == 1
    assert traces[0].info.tags[RULE_TAG] == "costly"
    assert float(traces[0].info.tags["tracekit.cost.total_usd"]) > 0
