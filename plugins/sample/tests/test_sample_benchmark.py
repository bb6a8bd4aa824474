"""Request-path cost of a head-dropped and of a kept trace, side by side with untraced, in one run.

Run: ``uv run pytest -m benchmark plugins/sample/tests/test_sample_benchmark.py -s``

The same DSPy program (DummyLM; Predict + ChainOfThought + one more Predict: 3 LM calls, 14 spans)
runs under each configuration, in interleaved rounds, each request timed on the calling thread:

- ``untraced``: tracekit off.
- ``head-dropped``: ``sample`` with ``ratio = 0``, ``keep_errors = false`` — dropped at the root.
- ``kept (request path)``: ``sample`` with ``ratio = 1``; a plugin takes each finished trace and
  discards it, so what is timed is recording + sampling, not the export (which a buffer moves off the
  calling thread).
- ``core only (request path)``: no ``sample`` plugin, same take-and-discard: the core's own cost, to
  show what the sample plugin adds to a kept trace.
- ``tail-dropped (inline)``: ``sample`` with ``ratio = 0`` and ``keep_errors = true``: recorded until it
  completes, then dropped by the tail on the calling thread (no buffer) — what an undecided trace costs.
"""

from __future__ import annotations

import gc
import statistics
import time

import pytest

import dspy_tracekit as tk
from dspy_tracekit import hookimpl


class TakeAndDiscard:
    """Takes every finished trace off the calling thread's hands and drops it (no export)."""

    def __init__(self):
        self.taken = 0

    @hookimpl
    def tracekit_take_trace(self, trace):
        self.taken += 1
        return True


CONFIGS = {
    "untraced": None,
    "head-dropped": (["sample"], {"ratio": 0.0, "keep_errors": False}),
    "kept (request path)": (["sample", "take"], {"ratio": 1.0, "keep_errors": False}),
    "core only (request path)": (["take"], None),
    "tail-dropped (inline)": (["sample"], {"ratio": 0.0}),
}


@pytest.mark.benchmark
def test_sample_request_path_cost_side_by_side(program, store_uri):
    rounds, per_round, warmup = 30, 30, 5
    times: dict[str, list[int]] = {name: [] for name in CONFIGS}
    cpu: dict[str, list[int]] = {name: [] for name in CONFIGS}
    checks: dict[str, dict] = {}
    for r in range(rounds):
        for name, spec in CONFIGS.items():
            taker = TakeAndDiscard()
            if spec is not None:
                plugins, table = spec
                plugins = [taker if p == "take" else p for p in plugins]
                tk.enable(plugins=plugins, tracking_uri=store_uri, experiment="sample-benchmark",
                          config={"sample": table} if table is not None else None)
            try:
                for i in range(warmup):
                    program(message=f"warm {i}", loops=1)
                gc.collect()
                gc.disable()
                try:
                    for i in range(per_round):
                        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                        program(message=f"request {r}/{i}", loops=1)
                        c1, t1 = time.thread_time_ns(), time.perf_counter_ns()
                        times[name].append(t1 - t0)
                        cpu[name].append(c1 - c0)
                finally:
                    gc.enable()
                if spec is not None:
                    checks[name] = {**tk.counters(), "taken": taker.taken}
            finally:
                if spec is not None:
                    tk.disable()

    n = rounds * per_round
    base = statistics.median(times["untraced"])
    base_cpu = statistics.median(cpu["untraced"])
    print(f"\nsample plugin request-path benchmark: {n} requests per configuration, "
          f"{rounds} interleaved rounds, 14 spans per request")
    print("wall = perf_counter per request; cpu = the calling thread's CPU time (robust to other processes)")
    print(f"{'configuration':28s} {'wall med µs':>11s} {'× untraced':>10s} {'cpu med µs':>10s} "
          f"{'× untraced':>10s} {'+cpu µs':>8s}")
    for name in CONFIGS:
        med, cmed = statistics.median(times[name]), statistics.median(cpu[name])
        print(f"{name:28s} {med / 1e3:11.1f} {med / base:10.3f} {cmed / 1e3:10.1f} {cmed / base_cpu:10.3f} "
              f"{(cmed - base_cpu) / 1e3:8.1f}")

    _hook_costs()

    # Each configuration did what its name says (counters of the last round).
    assert checks["head-dropped"]["sample.head.dropped.ratio"] == per_round + warmup
    assert checks["head-dropped"].get("core.traces_finished", 0) == 0
    assert checks["kept (request path)"]["sample.head.kept.ratio"] == per_round + warmup
    assert checks["kept (request path)"]["taken"] == per_round + warmup
    assert checks["core only (request path)"]["taken"] == per_round + warmup
    assert checks["tail-dropped (inline)"]["sample.tail.dropped.ratio"] == per_round + warmup
    assert checks["tail-dropped (inline)"].get("core.traces_exported", 0) == 0


def _hook_costs() -> None:
    """The sample hooks alone, on real records: µs per call (min of 5 repeats of 20,000 calls)."""
    import timeit

    from dspy_tracekit_sample import Sampler, parse_policy

    from dspy_tracekit.records import SpanRecord, TraceRecord

    def trace_with(n_spans: int, trace_id: int) -> TraceRecord:
        t = TraceRecord(trace_id)
        t.root = SpanRecord(t, None, "Classify.forward", "module", start_ns=0)
        t.spans.append(t.root)
        for i in range(n_spans - 1):
            s = SpanRecord(t, t.root.span_id, f"Predict.forward.{i}", "predict", "LLM", start_ns=i)
            s.end_ns = i + 10
            t.spans.append(s)
        t.root.end_ns = 5_000_000
        return t

    high = (1 << 64) - 1  # above every ratio < 1: the worst case for a drop decision
    cases = {
        "head: drop (no tail rules)": (Sampler(parse_policy({"ratio": 0.1, "keep_errors": False})).head, high),
        "head: keep + tag (no tail rules)": (Sampler(parse_policy({"ratio": 1.0, "keep_errors": False})).head, 1),
        "head: keep + tag + rate limit": (Sampler(parse_policy({"ratio": 1.0, "keep_errors": False,
                                                                "max_traces_per_second": 1e12})).head, 1),
        "head: pending (tail rules)": (Sampler(parse_policy({"ratio": 0.1})).head, high),
        "tail: 3 rules, none match, 14 spans": (Sampler(parse_policy({"ratio": 0.1, "rules": [
            {"latency_ms_over": 1000}, {"tag": "user_role", "regex": "^admin"}]})).tail, high),
    }
    print(f"{'sample hook alone (14-span trace)':40s} {'µs/call':>8s}")
    for label, (fn, trace_id) in cases.items():
        t = trace_with(14, trace_id)
        if label.startswith("tail"):
            call = lambda fn=fn, t=t: fn(t)
        else:
            def call(fn=fn, t=t):
                t.tags.clear()
                return fn(t)
        best = min(timeit.repeat(call, number=20_000, repeat=5)) / 20_000
        print(f"{label:40s} {best * 1e6:8.2f}")
