"""Analytics v2 (#15) request-path costs, side by side in one process. Not part of the default run.

    uv run pytest -m benchmark tests/benchmarks/test_bench_analytics2.py -s

* per span: thread CPU time on vs off (``resources.cpu_on``), a child span opened and closed under an
  open root, interleaved rounds, median of per-round medians;
* per request: the 6-span ChainOfThought program on DummyLM with cpu_time on vs off, and with the program
  version lookup (cached fingerprint) vs without — traces are taken and dropped by a plugin, so delivery
  is not measured;
* peak memory (tracemalloc) on vs off, per request;
* the fingerprint uncached (what compile/load/save cost once).
"""

from __future__ import annotations

import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import dspy
import pytest

import dspy_tracekit as tk
from dspy_tracekit import hookimpl, versioning
from dspy_tracekit._request import resources
from dspy_tracekit._request.tracer import end_span, start_span

sys.path.insert(0, str(Path(__file__).parents[1]))
from tk_testing import Pipeline, dummy_lm


class DropTraces:
    @hookimpl
    def tracekit_take_trace(self, trace):
        return True


def _spans_ns(n: int) -> float:
    root = start_span("root", "custom", "UNKNOWN")
    t0 = time.perf_counter_ns()
    for _ in range(n):
        span, token = start_span("child", "custom", "UNKNOWN")
        end_span(span, token)
    elapsed = (time.perf_counter_ns() - t0) / n
    end_span(*root)
    return elapsed


def _isolated_costs(program) -> dict[str, float]:
    import timeit
    from threading import get_ident
    from time import thread_time_ns

    from dspy_tracekit.records import TraceRecord

    trace = TraceRecord()
    cases = {
        "baseline (empty statement)": ("pass", {}),
        "CPU time: get_ident + thread_time_ns, start and end": (
            "a = get_ident(); b = thread_time_ns(); get_ident() == a; thread_time_ns() - b",
            {"get_ident": get_ident, "thread_time_ns": thread_time_ns}),
        "in flight: root_start + root_end": ("root_start(t); root_end(t)",
                                             {"root_start": resources.root_start, "root_end": resources.root_end,
                                              "t": trace}),
        "program version: version_of(program), cached": ("version_of(p)",
                                                          {"version_of": versioning.version_of, "p": program}),
    }
    samples = {k: [] for k in cases}
    for _ in range(15):
        for k, (stmt, g) in cases.items():
            samples[k].append(timeit.timeit(stmt, globals=g, number=20000) / 20000 * 1e9)
    base = statistics.median(samples["baseline (empty statement)"])
    return {k: statistics.median(v) - (base if k != "baseline (empty statement)" else 0) for k, v in samples.items()}


def _requests_ms(program, n: int) -> float:
    dspy.configure(lm=dummy_lm(n=n + 10))  # a fresh LM: its history does not grow across rounds
    times = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        program(message=f"m{i}")
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(times)


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
def test_analytics2_request_path_costs(tmp_path):
    rounds, n_spans, n_req = 7, 300, 300
    tk.enable(plugins=[DropTraces()], tracking_uri=f"sqlite:///{tmp_path}/b.db", experiment="bench")
    program = Pipeline()
    real_root_version = versioning.root_version
    span_ns = {"cpu on": [], "cpu off": []}
    req_ms = {"cpu on": [], "cpu off": [], "no version": [], "peak memory": []}
    try:
        _spans_ns(1000)
        _requests_ms(program, 50)
        for _ in range(rounds * 20):
            for mode in ("cpu on", "cpu off"):
                resources.cpu_on = mode == "cpu on"
                span_ns[mode].append(_spans_ns(n_spans))
            for mode in ("cpu on", "cpu off", "no version", "peak memory"):
                resources.cpu_on = mode != "cpu off"
                versioning.root_version = (lambda *a: None) if mode == "no version" else real_root_version
                if mode == "peak memory":
                    tracemalloc.start()
                    resources.memory_on = True
                try:
                    req_ms[mode].append(_requests_ms(program, n_req))
                finally:
                    if mode == "peak memory":
                        resources.memory_on = False
                        tracemalloc.stop()
        isolated = _isolated_costs(program)
        t0 = time.perf_counter_ns()
        for _ in range(200):
            versioning.version_of(program)
        cached_ns = (time.perf_counter_ns() - t0) / 200
        t0 = time.perf_counter_ns()
        for _ in range(50):
            versioning.fingerprint(program)
        uncached_us = (time.perf_counter_ns() - t0) / 50 / 1000
    finally:
        resources.cpu_on = True
        versioning.root_version = real_root_version
        tk.disable()
    span = {m: statistics.median(v) for m, v in span_ns.items()}
    req = {m: statistics.median(v) for m, v in req_ms.items()}
    print("\nisolated, timeit, interleaved with an empty baseline, median of 15 repeats (ns per call):")
    for k, v in isolated.items():
        print(f"  {k:<48} {v:6.0f} ns")
    print(f"per span (child span open+close, {rounds * 20} rounds x {n_spans}, median of round means):")
    print(f"  cpu_time on  {span['cpu on']:8.0f} ns\n  cpu_time off {span['cpu off']:8.0f} ns"
          f"\n  CPU time adds {span['cpu on'] - span['cpu off']:6.0f} ns per span "
          f"(ratio {span['cpu on'] / span['cpu off']:.3f})")
    print(f"per request (6-span ChainOfThought on DummyLM, traces dropped, {rounds} rounds x {n_req}, medians):")
    for m, v in req.items():
        print(f"  {m:<12} {v * 1000:8.1f} µs  ratio to 'cpu off' {v / req['cpu off']:.3f}")
    print(f"  program version lookup adds {(req['cpu on'] - req['no version']) * 1e6:6.0f} ns per request")
    print(f"version_of(program), cached: {cached_ns:.0f} ns; fingerprint uncached: {uncached_us:.0f} µs")
    assert all(len(v) == rounds * 20 for v in span_ns.values())
