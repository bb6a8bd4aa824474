"""Request-path cost of the boundary snapshot (#11 §3), side by side in one process. Not in the default run.

    uv run pytest -m benchmark tests/benchmarks/test_bench_values.py -s

The 6-span ChainOfThought program on DummyLM runs with tracekit's request path on (a plugin takes and
discards each finished trace, so no delivery runs), in rounds that alternate the snapshot on and off
(off = the tracer's snapshot helpers replaced by the identity, as before #11 §3; the order
alternates between rounds). Reported: median thread
CPU time per request, and what the snapshot adds per request and per span. Two inputs: a plain message,
and a message with a 50-turn chat history (a list of 50 dicts, each copied).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import dspy
import pytest

import dspy_tracekit as tk
from dspy_tracekit._request import tracer

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


class Sig(dspy.Signature):
    """Classify an admin-console message."""

    message: str = dspy.InputField()
    turns: list[dict] = dspy.InputField()
    intent: str = dspy.OutputField()


class IntentProgram(dspy.Module):
    def __init__(self):
        super().__init__()
        self.classify = dspy.ChainOfThought(Sig)

    def forward(self, message, turns):
        return self.classify(message=message, turns=turns)


class Discard:
    @tk.hookimpl
    def tracekit_take_trace(self, trace):
        return True


def _per_request_cpu(program, n, turns):
    cpu = []
    for i in range(n):
        c0 = time.thread_time_ns()
        program(message=f"Help me create a workflow number {i}", turns=turns)
        cpu.append(time.thread_time_ns() - c0)
    return statistics.median(cpu) / 1000  # µs


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
def test_snapshot_request_path_cost_side_by_side(tmp_path, monkeypatch):
    rounds = int(os.environ.get("BENCH_ROUNDS", "7"))
    n = int(os.environ.get("BENCH_N", "200"))
    answers = [{"reasoning": "The user asks to build a workflow.", "intent": "create_workflow"}]
    dspy.configure(lm=dspy.utils.DummyLM(answers * (2 * rounds * n * 2 + 100)))
    tk.enable(plugins=[Discard()], tracking_uri=f"sqlite:///{tmp_path}/bench.db", experiment="bench")
    program = IntentProgram()
    on = (tracer._snapshot_call, tracer._snapshot_outputs, tracer.snapshot)
    off = (lambda args, kwargs: (args, kwargs), lambda span, outputs: outputs, lambda value: value)

    def use(fns):
        for name, fn in zip(("_snapshot_call", "_snapshot_outputs", "snapshot"), fns):
            monkeypatch.setattr(tracer, name, fn)

    cases = {"plain": [], "history50": [{"role": "user", "content": f"turn {i}"} for i in range(50)]}
    results = {(case, mode): [] for case in cases for mode in ("off", "on")}
    for case, turns in cases.items():
        program(message="warm up", turns=turns)
        for r in range(rounds):
            order = (("off", off), ("on", on)) if r % 2 == 0 else (("on", on), ("off", off))  # no order bias
            for mode, fns in order:
                use(fns)
                dspy.settings.lm.history.clear()  # DSPy's LM keeps every call: later blocks would pay for it
                results[(case, mode)].append(_per_request_cpu(program, n, turns))
    use(on)
    tk.disable()
    spans = 6
    print(f"\nboundary snapshot, 6-span program on DummyLM, {rounds} interleaved rounds x {n} requests, "
          "median thread CPU µs/request")
    print(f"{'input':<11}{'off':>9}{'on':>9}{'added':>8}{'per span':>10}{'ratio':>8}")
    for case in cases:
        off_us = statistics.median(results[(case, "off")])
        on_us = statistics.median(results[(case, "on")])
        print(f"{case:<11}{off_us:>9.1f}{on_us:>9.1f}{on_us - off_us:>8.1f}{(on_us - off_us) / spans:>10.2f}"
              f"{on_us / off_us:>8.3f}")
    assert all(len(v) == rounds for v in results.values())


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
def test_jsonable_delivery_cost_against_the_baseline(tmp_path):
    """Delivery path: ``jsonable`` (now with markers and self-reference checks) against the baseline's, on
    the inputs/outputs of real spans of the 6-span program, interleaved in one process.

        TK_BASELINE_REF=fd411b9 uv run pytest -m benchmark tests/benchmarks/test_bench_values.py -s -k jsonable
    """
    import importlib.util
    import subprocess
    from pathlib import Path

    from dspy_tracekit.records import _bind_inputs, jsonable

    ref = os.environ.get("TK_BASELINE_REF", "fd411b9")
    root = Path(__file__).resolve().parents[2]
    source = subprocess.run(["git", "-C", str(root), "show", f"{ref}:src/dspy_tracekit/records.py"],
                            capture_output=True, check=True, text=True).stdout
    (tmp_path / "old_records.py").write_text(source)
    spec = importlib.util.spec_from_file_location("old_records", tmp_path / "old_records.py")
    old = importlib.util.module_from_spec(spec)
    sys.modules["old_records"] = old  # its dataclasses look their module up
    try:
        spec.loader.exec_module(old)
    finally:
        del sys.modules["old_records"]

    captured = []

    class Keep:
        @tk.hookimpl
        def tracekit_take_trace(self, trace):
            captured.append(trace)
            return True

    answers = [{"reasoning": "The user asks to build a workflow.", "intent": "create_workflow"}]
    dspy.configure(lm=dspy.utils.DummyLM(answers * 100))
    tk.enable(plugins=[Keep()], tracking_uri=f"sqlite:///{tmp_path}/bench.db", experiment="bench")
    turns = [{"role": "user", "content": f"turn {i}"} for i in range(5)]
    for i in range(20):
        IntentProgram()(message=f"Help me create a workflow number {i}", turns=turns)
    tk.disable()
    values = []
    for trace in captured:
        for s in trace.spans:
            values.append(_bind_inputs(s.func, s.instance, s.args, s.kwargs or {}))
            values.append(s.outputs)
    rounds = int(os.environ.get("BENCH_ROUNDS", "7"))
    times = {"baseline": [], "candidate": []}
    for _ in range(rounds):
        for name, fn in (("baseline", old.jsonable), ("candidate", jsonable)):
            c0 = time.thread_time_ns()
            for _ in range(20):
                for v in values:
                    fn(v)
            times[name].append((time.thread_time_ns() - c0) / (20 * len(captured)) / 1000)
    base, cand = statistics.median(times["baseline"]), statistics.median(times["candidate"])
    print(f"\njsonable on the inputs and outputs of a 6-span trace, thread CPU µs per trace, {rounds} rounds: "
          f"baseline ({ref}) {base:.1f}, candidate {cand:.1f}, ratio {cand / base:.3f}")
    assert old.jsonable(values[0]) == jsonable(values[0])


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
def test_snapshot_cost_on_the_spans_of_real_requests(tmp_path):
    """The snapshot alone, on the arguments and results of every span of real requests (captured from
    the 6-span program, plain and with a 50-turn history): thread CPU per request, best of 15 repeats
    (the end-to-end figures above move by tens of µs on a busy machine; this one does not)."""
    captured = []

    class Keep:
        @tk.hookimpl
        def tracekit_take_trace(self, trace):
            captured.append(trace)
            return True

    answers = [{"reasoning": "The user asks to build a workflow.", "intent": "create_workflow"}]
    dspy.configure(lm=dspy.utils.DummyLM(answers * 10))
    tk.enable(plugins=[Keep()], tracking_uri=f"sqlite:///{tmp_path}/bench.db", experiment="bench")
    history = [{"role": "user", "content": f"turn {i}"} for i in range(50)]
    for turns in ([], history):
        IntentProgram()(message="Help me create a workflow", turns=turns)
    tk.disable()
    print("\nsnapshot alone, thread CPU µs per request (6 spans), best of 15 x 2000")
    for name, trace in zip(("plain", "history50"), captured):
        calls = [(s.args, s.kwargs) for s in trace.spans]
        outputs = [(s, s.outputs) for s in trace.spans]
        n = 2000

        def run():
            c0 = time.thread_time_ns()
            for _ in range(n):
                for args, kwargs in calls:
                    tracer._snapshot_call(args, kwargs)
                for span, out in outputs:
                    tracer._snapshot_outputs(span, out)
            return (time.thread_time_ns() - c0) / n / 1000

        best = min(run() for _ in range(15))
        print(f"{name:<11}{best:>8.2f} µs/request  {best / len(trace.spans):>6.2f} µs/span")
    assert len(captured) == 2
