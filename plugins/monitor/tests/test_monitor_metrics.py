"""Metrics from every stored trace and span, on the delivery path only, weighted by 1/p."""

from __future__ import annotations

import urllib.request

import dspy
import dspy_tracekit_monitor as monitor
import pytest
from dspy_tracekit_monitor import _compat
from monitor_testkit import Intent, run, stored
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.parser import text_string_to_metric_families

import dspy_tracekit as tk
from dspy_tracekit import _state

REQUEST_PATH_HOOKS = ("tracekit_sample", "tracekit_span_start", "tracekit_span_end", "tracekit_take_trace")


def scrape(url: str | None = None) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) → value, from /metrics over HTTP."""
    text = urllib.request.urlopen(url or monitor.metrics_url(), timeout=10).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples, name, **labels) -> float:
    return sum(v for (n, lab), v in samples.items()
               if n == name and all(dict(lab).get(k) == want for k, want in labels.items()))


def test_monitor_has_no_request_path_hook(enable):
    for hook in REQUEST_PATH_HOOKS:
        assert not hasattr(monitor, hook), hook
    enable({})
    pm = _state.manager.pm
    for hook in REQUEST_PATH_HOOKS:
        assert "monitor" not in [i.plugin_name for i in getattr(pm.hook, hook).get_hookimpls()], hook
    assert "monitor" in [i.plugin_name for i in pm.hook.tracekit_traces_exported.get_hookimpls()]


def test_metrics_equal_what_the_store_holds(enable, program, store_uri, experiment):
    enable({"port": 0})
    failed = run(program, 7, errors=2)
    traces = stored(store_uri, experiment)
    m = scrape()
    assert failed == 2 and len(traces) == 7
    assert total(m, "tracekit_traces_total") == 7
    assert total(m, "tracekit_traces_total", status="error") == sum(t.info.state.value == "ERROR" for t in traces) == 2
    assert total(m, "tracekit_traces_stored_total") == 7
    assert total(m, "gen_ai_client_operation_duration_seconds_count", span_name="Intent.forward") == 7
    assert total(m, "gen_ai_client_operation_duration_seconds_count", span_name="Intent.forward",
                 status="error", error_type="RuntimeError") == 2
    assert total(m, "tracekit_span_errors_total", span_name="Intent.forward", error_type="RuntimeError") == 2
    lm = total(m, "gen_ai_client_operation_duration_seconds_count", kind="lm", gen_ai_operation_name="chat")
    assert lm == 7
    # duration sum: the stored root spans' durations
    stored_s = sum(t.info.execution_duration for t in traces) / 1000.0
    assert total(m, "gen_ai_client_operation_duration_seconds_sum", span_name="Intent.forward") == \
        pytest.approx(stored_s, abs=0.01)


def test_pipeline_counters_become_prometheus_counters(enable, program, store_uri, experiment):
    enable({"port": 0, "evaluate_every_s": 60}, plugins=("monitor", "buffer"))
    run(program, 5)
    tk.flush(30)
    monitor.current().tick()
    m = scrape()
    assert total(m, "tracekit_traces_exported_total") == tk.counters()["core.traces_exported"] == 5
    assert ("tracekit_buffer_queue_depth", ()) in m


def test_sampled_traces_count_one_over_p(enable, program, store_uri, experiment):
    enable({"port": 0}, plugins=("monitor", "sample"), sample={"ratio": 0.25})
    run(program, 200)
    traces = stored(store_uri, experiment)
    probs = {t.info.tags.get("tracekit.sampling.probability") for t in traces}
    m = scrape()
    assert probs == {"0.25"} and 0 < len(traces) < 200
    assert total(m, "tracekit_traces_stored_total") == len(traces)
    assert total(m, "tracekit_traces_total") == pytest.approx(4 * len(traces))
    assert total(m, "gen_ai_client_operation_duration_seconds_count", span_name="Intent.forward") == \
        pytest.approx(4 * len(traces))
    monitor.current().tick()  # what the monitor's thread does every second
    m = scrape()
    decisions = {k[len("sample."):]: v for k, v in tk.counters().items()
                 if k.startswith("sample.") and (".kept." in k or ".dropped." in k) and v}
    assert {dict(lab)["decision"]: v for (n, lab), v in m.items() if n == "tracekit_sampling_decisions_total"
            and v} == decisions
    assert sum(v for k, v in decisions.items() if ".kept." in k) == len(traces)
    assert sum(v for k, v in decisions.items() if ".dropped." in k) == 200 - len(traces)


def test_token_usage_by_type_and_cost(enable, store_uri, experiment):
    lm = dspy.LM("openai/gpt-4o-mini", engine="litellm", cache=False, api_key="x",
                 mock_response="[[ ## intent ## ]]\ncreate_workflow\n\n[[ ## completed ## ]]")
    enable({"port": 0}, plugins=("monitor", "cost"))
    with dspy.context(lm=lm):
        run(Intent(), 3)
    stored(store_uri, experiment)
    m = scrape()
    assert total(m, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 30
    assert total(m, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == 60
    assert total(m, "gen_ai_client_token_usage_count", gen_ai_token_type="input",
                 gen_ai_request_model="openai/gpt-4o-mini") == 3
    assert total(m, "tracekit_cost_usd_total") == pytest.approx(tk.counters()["cost.total_usd"])
    assert total(m, "tracekit_cost_usd_total") > 0


def test_a_failing_monitor_never_affects_delivery(enable, program, store_uri, experiment, monkeypatch):
    enable({})
    monkeypatch.setattr(monitor.current(), "record", lambda traces: 1 / 0)
    run(program, 3)
    assert len(stored(store_uri, experiment)) == 3
    assert tk.counters()["core.hook_errors.monitor.tracekit_traces_exported"] == 3


def test_prometheus_client_privates_resolve_and_weighted_observe_matches_repeated_observe():
    reg = CollectorRegistry()
    a = Histogram("a_seconds", "a", buckets=(0.1, 1.0), registry=reg)
    b = Histogram("b_seconds", "b", buckets=(0.1, 1.0), registry=reg)
    assert _compat.check(a) == []
    counter = Counter("c", "c", registry=reg)
    assert _compat.check(counter, "counter") == []
    _compat.counter_value(counter).inc(2.5)
    assert counter._value.get() == 2.5 == next(s.value for s in counter.collect()[0].samples)
    for v in (0.05, 0.5, 5.0):
        _compat.observe_weighted(a, v, 3.0)
        for _ in range(3):
            b.observe(v)
    got = {s.name.replace("a_", "x_"): s.value for s in a.collect()[0].samples if not s.name.endswith("created")}
    want = {s.name.replace("b_", "x_"): s.value for s in b.collect()[0].samples if not s.name.endswith("created")}
    assert got == pytest.approx(want)


def _child(queue):
    try:
        import dspy
        from monitor_testkit import Intent, dummy_lm

        mon = monitor.current()
        with dspy.context(lm=dummy_lm()):
            run(Intent(), 4, errors=1)
        tk.flush(30)
        mon.tick()
        queue.put({"thread": mon._thread.is_alive(), "stored": mon.metrics.traces_stored._value.get(),
                   "alerts": tk.counters().get("monitor.alerts.firing"), "url": monitor.metrics_url()})
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        queue.put({"error": repr(exc)})


def test_a_forked_child_gets_its_own_monitor_thread(enable, program, store_uri, experiment):
    import multiprocessing

    enable({"port": 0, "evaluate_every_s": 60, "slo": [{"name": "errors", "error_rate": 0.0, "window": "1m"}]})
    run(program, 2)
    tk.flush(30)
    parent_url = monitor.metrics_url()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue,))
    proc.start()
    got = queue.get(timeout=120)
    proc.join(60)
    assert "error" not in got, got
    assert got["thread"] is True
    assert got["alerts"] == 1                      # the child judged its own SLO window
    assert got["url"] not in (None, parent_url)    # port = 0: a free port of its own, not the parent's socket
    assert monitor.metrics_url() == parent_url and total(scrape(), "tracekit_traces_total") == 2


def test_spans_made_with_mlflows_api_are_measured_with_kind_mlflow(enable, program, store_uri, experiment):
    import mlflow

    @mlflow.trace(name="handle_request")
    def handle(message):
        return program(message=message)

    enable({"port": 0, "slo": [{"name": "requests", "kind": "mlflow", "p95_ms": 5000, "window": "1m"}]})
    for i in range(3):
        handle(f"m{i}")
    traces = stored(store_uri, experiment)
    m = scrape()
    assert len(traces) == 3
    assert total(m, "tracekit_traces_total", root_span="handle_request") == 3
    assert total(m, "gen_ai_client_operation_duration_seconds_count", span_name="handle_request", kind="mlflow") == 3
    assert total(m, "tracekit_slo_events_total", slo="requests") == 3
