"""Request-path cost of the hook call lists, before and after pluggy's calling contract (issue #11 §1).

    uv run pytest -m benchmark tests/benchmarks/test_bench_hooks.py -s

One process, one traced program; the manager's request-path call lists are swapped between the
previous build (positional calls through the old isolation wrapper, copied below) and the current
one, interleaved over rounds. Reports thread CPU time per request (median of per-round medians) and
ratios against the same run's untraced figure. A wrapper on a request-path hook is measured too (it
goes through pluggy's call loop). No timing asserts.
"""

from __future__ import annotations

import os
import statistics
import time

import dspy
import pytest
from tk_testing import Pipeline, dummy_lm

import dspy_tracekit as tk
from dspy_tracekit import _state, hookimpl
from dspy_tracekit.errors import TracekitAbort


class Tenant:
    @hookimpl
    def tracekit_sample(self, trace):
        return None

    @hookimpl
    def tracekit_span_start(self, span):
        span.set_attribute("tenant", "acme")

    @hookimpl
    def tracekit_span_end(self, span):
        span.set_attribute("ended", True)


class Discard:
    """Takes every trace, so that only the calling thread's hook work is measured (no delivery)."""

    @hookimpl
    def tracekit_take_trace(self, trace):
        return True


class EndWrapper:
    @hookimpl(wrapper=True)
    def tracekit_span_end(self, span):
        return (yield)


def _legacy_lists(mgr):
    """The call lists as the manager built them before: ``fn(*args)`` through the old wrapper."""

    def isolated(plugin_name, hook_name, fn):
        def call(*args):
            try:
                return fn(*args)
            except TracekitAbort:
                raise
            except Exception as exc:  # noqa: BLE001
                mgr.hook_failed(plugin_name, hook_name, exc)
                return None

        return call

    def fns(name):
        return [isolated(i.plugin_name, name, getattr(i.function, "__wrapped__", i.function))
                for i in reversed(getattr(mgr.pm.hook, name).get_hookimpls()) if not (i.hookwrapper or i.wrapper)]

    return {"sample_fns": fns("tracekit_sample"), "span_start_fns": fns("tracekit_span_start"),
            "span_end_fns": fns("tracekit_span_end"), "take_fns": fns("tracekit_take_trace")}


def _per_request_cpu_ms(program, n):
    out = []
    for i in range(n):
        t0 = time.thread_time_ns()
        program(message=f"m{i}")
        out.append((time.thread_time_ns() - t0) / 1e6)
    return statistics.median(out)


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
def test_hook_call_lists_before_and_after(store_uri, experiment_name):
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    n = int(os.environ.get("BENCH_N", "300"))
    dspy.configure(lm=dummy_lm(n=10 ** 6))
    program = Pipeline()
    _per_request_cpu_ms(program, 50)  # warm-up, untraced

    modes = {"before": [Tenant, Discard], "after": [Tenant, Discard], "after+wrapper": [Tenant, Discard, EndWrapper]}
    results: dict[str, list[float]] = {m: [] for m in ("untraced", *modes)}
    order = list(modes)
    for r in range(rounds):
        results["untraced"].append(_per_request_cpu_ms(program, n))
        for mode in order[r % len(order):] + order[:r % len(order)]:  # rotated: no mode always runs first
            plugins = modes[mode]
            tk.enable(plugins=[p() for p in plugins], tracking_uri=store_uri, experiment=experiment_name)
            if mode == "before":
                for k, v in _legacy_lists(_state.manager).items():
                    setattr(_state.manager, k, v)
            _per_request_cpu_ms(program, 20)
            results[mode].append(_per_request_cpu_ms(program, n))
            tk.disable()

    med = {m: statistics.median(v) for m, v in results.items()}
    base = med["untraced"]
    print(f"\nrequest path, Pipeline (ChainOfThought, 5 spans) on DummyLM, 3 request-path hooks + take_trace, "
          f"{rounds} rounds x {n} requests; thread CPU ms per request (median of round medians)")
    print(f"{'mode':<16}{'cpu ms':>10}{'added ms':>10}{'/untraced':>11}")
    for m, v in med.items():
        print(f"{m:<16}{v:>10.3f}{v - base:>10.3f}{v / base:>11.3f}")
    print(f"after/before added time: {(med['after'] - base) / (med['before'] - base):.3f}")
    assert all(len(v) == rounds for v in results.values())
