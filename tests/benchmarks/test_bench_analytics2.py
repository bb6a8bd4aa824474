"""Analytics v2 (#15) request-path costs, side by side in one process. Not part of the default run.

    uv run pytest -m benchmark tests/benchmarks/test_bench_analytics2.py -s

* per span: thread CPU time off / on with a ``thread_time_ns()`` at every span boundary (window 0: what
  tracekit did before readings were shared) / on with readings shared in ``resources.CPU_WINDOW_NS``
  (the default); a child span opened and closed under an open root, interleaved rounds, median of
  per-round means;
* per request: the 6-span ChainOfThought program on DummyLM in the same three modes, and with the program
  version lookup (cached fingerprint) vs without — traces are taken and dropped by a plugin, so delivery
  is not measured; wall time (median per request) and the thread's CPU time per request (one batch);
* clock readings per request in each mode (counted in a separate pass);
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


CPU_MODES = {"cpu off": (False, resources.CPU_WINDOW_NS), "cpu every boundary": (True, 0),
             "cpu shared": (True, resources.CPU_WINDOW_NS)}


def _set_cpu_mode(mode: str) -> None:
    resources.cpu_on, resources.cpu_window_ns = CPU_MODES.get(mode, CPU_MODES["cpu shared"])


def _spans_ns(n: int) -> float:
    root = start_span("root", "custom", "UNKNOWN")
    t0 = time.thread_time_ns()  # CPU time of this thread: what other processes on the machine do not inflate
    for _ in range(n):
        span, token = start_span("child", "custom", "UNKNOWN")
        end_span(span, token)
    elapsed = (time.thread_time_ns() - t0) / n
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
        "CPU time before: get_ident + thread_time_ns, start and end": (
            "a = get_ident(); b = thread_time_ns(); get_ident() == a; thread_time_ns() - b",
            {"get_ident": get_ident, "thread_time_ns": thread_time_ns}),
        "CPU time now, 2 us apart (reading shared)": (
            "w = time_ns(); a = get_ident(); b = cpu_now(w); get_ident() == a; cpu_now(w + 2000) - b",
            {"get_ident": get_ident, "cpu_now": resources.cpu_now, "time_ns": time.time_ns}),
        "CPU time now, window 0 (reading at each end)": (
            "w = -time_ns(); a = get_ident(); b = cpu_now(w); get_ident() == a; cpu_now(w - 2000) - b",
            {"get_ident": get_ident, "cpu_now": resources.cpu_now, "time_ns": time.time_ns}),
        "time_ns (part of the two rows above)": ("time_ns()", {"time_ns": time.time_ns}),
        "in flight: root_start + root_end": ("root_start(t); root_end(t)",
                                             {"root_start": resources.root_start, "root_end": resources.root_end,
                                              "t": trace}),
        "program version: version_of(program), cached": ("version_of(p)",
                                                          {"version_of": versioning.version_of, "p": program}),
    }
    samples = {k: [] for k in cases}
    for _ in range(15):
        for k, (stmt, g) in cases.items():
            timer = timeit.Timer(stmt, globals=g, timer=time.thread_time)  # thread CPU, not wall
            samples[k].append(timer.timeit(number=20000) / 20000 * 1e9)
    base = statistics.median(samples["baseline (empty statement)"])
    return {k: statistics.median(v) - (base if k != "baseline (empty statement)" else 0) for k, v in samples.items()}


def _requests_ms(program, n: int) -> tuple[float, float]:
    """(median wall ms per request, thread CPU ms per request over the batch)."""
    dspy.configure(lm=dummy_lm(n=n + 10))  # a fresh LM: its history does not grow across rounds
    times = []
    cpu0 = time.thread_time_ns()
    for i in range(n):
        t0 = time.perf_counter_ns()
        program(message=f"m{i}")
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(times), (time.thread_time_ns() - cpu0) / n / 1e6


def _readings_per_request(program, n: int = 200) -> dict[str, float]:
    count = [0]

    def counted():
        count[0] += 1
        return time.thread_time_ns()

    out = {}
    resources.thread_time_ns = counted
    try:
        for mode in CPU_MODES:
            _set_cpu_mode(mode)
            dspy.configure(lm=dummy_lm(n=n + 10))
            count[0] = 0
            for i in range(n):
                program(message=f"m{i}")
            out[mode] = count[0] / n
    finally:
        resources.thread_time_ns = time.thread_time_ns
    return out


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
def test_analytics2_request_path_costs(tmp_path):
    rounds, n_spans, n_req = 7, 300, 300
    tk.enable(plugins=[DropTraces()], tracking_uri=f"sqlite:///{tmp_path}/b.db", experiment="bench")
    program = Pipeline()
    real_root_version = versioning.root_version
    span_ns = {m: [] for m in CPU_MODES}
    req_modes = (*CPU_MODES, "no version", "peak memory")
    req_ms = {m: [] for m in req_modes}
    req_cpu = {m: [] for m in req_modes}
    try:
        _spans_ns(1000)
        _requests_ms(program, 50)
        for _ in range(rounds * 20):
            for mode in CPU_MODES:
                _set_cpu_mode(mode)
                span_ns[mode].append(_spans_ns(n_spans))
        for _ in range(rounds * 2):
            for mode in req_modes:
                _set_cpu_mode(mode)
                versioning.root_version = (lambda *a: None) if mode == "no version" else real_root_version
                if mode == "peak memory":
                    tracemalloc.start()
                    resources.memory_on = True
                try:
                    wall, cpu = _requests_ms(program, n_req)
                    req_ms[mode].append(wall)
                    req_cpu[mode].append(cpu)
                finally:
                    if mode == "peak memory":
                        resources.memory_on = False
                        tracemalloc.stop()
        versioning.root_version = real_root_version
        readings = _readings_per_request(program)
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
        _set_cpu_mode("cpu shared")
        versioning.root_version = real_root_version
        tk.disable()
    span = {m: statistics.median(v) for m, v in span_ns.items()}
    req = {m: statistics.median(v) for m, v in req_ms.items()}
    cpu = {m: statistics.median(v) for m, v in req_cpu.items()}
    print("\nisolated, timeit on thread CPU time, interleaved with an empty baseline, median of 15 repeats (ns):")
    for k, v in isolated.items():
        print(f"  {k:<48} {v:6.0f} ns")
    print(f"per span (child span open+close, thread CPU, {rounds * 20} rounds x {n_spans}, median of round means):")
    for m in CPU_MODES:
        print(f"  {m:<20} {span[m]:8.0f} ns   CPU time adds {span[m] - span['cpu off']:6.0f} ns per span "
              f"(ratio {span[m] / span['cpu off']:.3f})")
    print(f"per request (6-span ChainOfThought on DummyLM, traces dropped, {rounds * 2} rounds x {n_req}, medians):")
    for m in req_modes:
        print(f"  {m:<20} wall {req[m] * 1000:8.1f} µs (ratio {req[m] / req['cpu off']:.3f})   thread CPU "
              f"{cpu[m] * 1000:8.1f} µs (ratio {cpu[m] / cpu['cpu off']:.3f}, "
              f"{(cpu[m] - cpu['cpu off']) * 1e6 / 6:+6.0f} ns per span)")
    print(f"  program version lookup adds {(req['cpu shared'] - req['no version']) * 1e6:6.0f} ns per request")
    print("thread_time_ns() readings per request: "
          + ", ".join(f"{m} {v:.2f}" for m, v in readings.items()))
    print(f"version_of(program), cached: {cached_ns:.0f} ns; fingerprint uncached: {uncached_us:.0f} µs")
    assert all(len(v) == rounds * 20 for v in span_ns.values())
    assert readings["cpu shared"] < readings["cpu every boundary"]
