"""Per-span thread CPU time, traces in flight, peak memory, and ``stats --by resources|load``."""

from __future__ import annotations

import json
import threading
import time

import dspy
import pytest
from click.testing import CliRunner

import dspy_tracekit as tk
from dspy_tracekit import analytics
from dspy_tracekit._request import resources
from dspy_tracekit.analytics.resources import in_flight_bucket, load_stats, resource_stats
from dspy_tracekit.cli import main
from dspy_tracekit.errors import ConfigError
from dspy_tracekit.records import CPU_ATTR, IN_FLIGHT_TAG, PEAK_MEMORY_TAG

BUSY_CPU_S = 0.05


class Work(dspy.Module):
    def __init__(self, sleep_s=0.0):
        super().__init__()
        self.qa = dspy.Predict("question -> answer")
        self.sleep_s = sleep_s

    def forward(self, question):
        with tk.span("busy", span_type="PARSER"):
            start = time.thread_time()
            while time.thread_time() - start < BUSY_CPU_S:  # spin until the thread used this much CPU
                pass
        with tk.span("sleeping", span_type="TOOL"):
            time.sleep(max(self.sleep_s, 0.1))
        return self.qa(question=question)


def spans_by_name(trace):
    return {s.name: s for s in trace.data.spans}


def test_busy_span_cpu_is_its_wall_time_and_a_sleeping_span_uses_none(traced):
    dspy.configure(lm=dspy.utils.DummyLM([{"answer": "a"}] * 3))
    Work()(question="q")
    spans = spans_by_name(traced.one())
    busy, sleeping = spans["busy"], spans["sleeping"]
    busy_wall = (busy.end_time_ns - busy.start_time_ns) / 1e6
    sleep_wall = (sleeping.end_time_ns - sleeping.start_time_ns) / 1e6
    assert BUSY_CPU_S * 1000 <= busy.attributes[CPU_ATTR] <= busy_wall * 1.01
    assert sleep_wall >= 100 and sleeping.attributes[CPU_ATTR] < 0.1 * sleep_wall
    root = spans["Work.forward"]
    assert root.attributes[CPU_ATTR] >= busy.attributes[CPU_ATTR]


def test_a_bad_cpu_time_setting_names_the_key(store_uri, experiment_name, monkeypatch):
    monkeypatch.setenv("DSPY_TRACEKIT_CPU_TIME", "sometimes")
    with pytest.raises(ConfigError, match="cpu_time"):
        tk.enable(plugins=[], tracking_uri=store_uri, experiment=experiment_name)


def test_no_cpu_time_when_off_and_peak_memory_when_on(store_uri, experiment_name, monkeypatch):
    from tk_testing import TraceReader

    monkeypatch.setenv("DSPY_TRACEKIT_CPU_TIME", "false")
    monkeypatch.setenv("DSPY_TRACEKIT_PEAK_MEMORY", "true")
    tk.enable(plugins=[], tracking_uri=store_uri, experiment=experiment_name)

    @tk.trace
    def allocate():
        block = [bytes(1000) for _ in range(5000)]  # ~5 MB held while the span runs
        return len(block)

    allocate()
    trace = TraceReader(store_uri, experiment_name).one()
    assert CPU_ATTR not in trace.data.spans[0].attributes
    assert int(trace.info.tags[PEAK_MEMORY_TAG]) >= 5000 * 1000
    tk.disable()
    import tracemalloc

    assert not tracemalloc.is_tracing()


def test_a_span_ended_on_another_thread_records_no_cpu_time(traced):
    from dspy_tracekit._request.tracer import current_span, end_span, start_span

    span, token = start_span("handoff", "custom", "UNKNOWN")
    worker = threading.Thread(target=end_span, args=(span, None))
    worker.start()
    worker.join()
    current_span.reset(token)
    assert span.cpu_start_ns is not None and span.cpu_ns is None
    (trace,) = traced.traces()
    assert CPU_ATTR not in (trace.data.spans[0].attributes or {})


def test_in_flight_counts_a_threaded_burst(traced):
    dspy.configure(lm=dspy.utils.DummyLM([{"answer": "a"}] * 40))
    program = Work(sleep_s=0.3)
    for i in range(3):
        program(question=f"serial {i}")
    burst = 6
    barrier = threading.Barrier(burst)

    def request(i):
        barrier.wait()
        program(question=f"burst {i}")

    threads = [threading.Thread(target=request, args=(i,)) for i in range(burst)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert resources.in_flight() == 0
    traces = traced.traces()
    counts = sorted(int(t.info.tags[IN_FLIGHT_TAG]) for t in traces)
    assert counts[:3] == [1, 1, 1] and counts[-1] == burst  # the last burst request saw all six
    assert sorted(counts[3:]) == list(range(1, burst + 1))
    result = load_stats(analytics.trace_views(traces))
    buckets = {b.bucket: b.stored for b in result.by_in_flight}
    assert buckets == {"1": 4, "2": 1, "3-4": 2, "5-8": 2}
    assert result.over_time and sum(w.traces for w in result.over_time) == 9
    cli = CliRunner().invoke(main, ["stats", "--by", "load", "--json", "--tracking-uri", traced.uri,
                                    "--experiment", traced.experiment], catch_exceptions=False)
    assert cli.exit_code == 0, cli.stderr
    assert json.loads(cli.stdout)["by_in_flight"] == json.loads(json.dumps(result.to_dict()))["by_in_flight"]
    table = CliRunner().invoke(main, ["stats", "--by", "load", "--tracking-uri", traced.uri,
                                      "--experiment", traced.experiment], catch_exceptions=False)
    assert table.exit_code == 0 and "in flight" in table.stdout and "requests/s" in table.stdout


def test_stats_by_resources_splits_cpu_bound_from_waiting(traced):
    dspy.configure(lm=dspy.utils.DummyLM([{"answer": "a"}] * 10))
    program = Work()
    for i in range(3):
        program(question=f"q{i}")
    result = resource_stats(analytics.trace_views(traced.traces()))
    rows = {r.name: r for r in result.spans}
    # on a shared machine a spinning span gets only part of a core: compare, do not expect CPU = wall
    assert rows["sleeping"].kind == "waiting" and rows["sleeping"].cpu_per_wall < 0.05
    assert rows["busy"].cpu_per_wall > 5 * rows["sleeping"].cpu_per_wall
    assert rows["busy"].cpu_share > 0.5  # most of the process's traced CPU went into the busy span
    assert result.traces_with_cpu == 3
    cli = CliRunner().invoke(main, ["stats", "--by", "resources", "--tracking-uri", traced.uri,
                                    "--experiment", traced.experiment], catch_exceptions=False)
    assert cli.exit_code == 0 and "busy" in cli.stdout and "waiting" in cli.stdout and "Spearman" in cli.stdout


@pytest.mark.parametrize("n,label", [(1, "1"), (2, "2"), (3, "3-4"), (4, "3-4"), (5, "5-8"), (9, "9-16"),
                                     (33, "33-64")])
def test_in_flight_buckets(n, label):
    assert in_flight_bucket(n) == label
