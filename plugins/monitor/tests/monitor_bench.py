"""Delivery cost of the monitor plugin per span: ``python monitor_bench.py [rounds]`` prints JSON.

Real traces of a real DSPy program (DummyLM) are captured, prepared (materialized) once, then
delivered again and again through ``TracekitManager.export`` (plus, with the monitor, the flush of
its collected increments into prometheus_client that its thread does every second) — the core's export hook answered by a
no-op store so that SQLite's noise does not drown microseconds — alternately without the monitor
(baseline) and with it (3 SLOs, one with a tag selector; half the traces tagged p = 0.5), in the
same process. Set PROMETHEUS_MULTIPROC_DIR to measure prometheus_client's multiprocess mode.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from typing import ClassVar

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def main(rounds: int = 30, n_traces: int = 200) -> dict:
    import dspy
    import dspy_tracekit_monitor as monitor
    from monitor_testkit import Intent, dummy_lm

    import dspy_tracekit as tk
    from dspy_tracekit import _state, delivery, hookimpl

    class Capture:
        traces: ClassVar[list] = []

        @hookimpl
        def tracekit_take_trace(self, trace):
            Capture.traces.append(trace)
            return True

    class NullStore:
        @hookimpl
        def tracekit_export_traces(self, traces):
            return None

    store = tempfile.mkdtemp()
    slos = [{"name": "intent", "span": "Intent.forward", "p95_ms": 800, "error_rate": 0.02, "window": "5m"},
            {"name": "lm", "kind": "lm", "p95_ms": 500, "cost_usd_per_hour": 5.0, "window": "1m"},
            {"name": "admins", "tag": {"user_role": "admin"}, "error_rate": 0.1, "window": "5m"}]
    tk.enable(plugins=["monitor", Capture(), NullStore()], tracking_uri=f"sqlite:///{store}/m.db",
              experiment="bench", config={"monitor": {"slo": slos, "evaluate_every_s": 3600}})
    with dspy.context(lm=dummy_lm()):
        prog = Intent()
        for i in range(n_traces):
            with tk.context(user_role="admin" if i % 3 == 0 else "user"):
                try:
                    prog(message=f"m{i}", fail=i % 10 == 0)
                except RuntimeError:
                    pass
    traces = delivery.prepare(Capture.traces)
    for i, t in enumerate(traces):
        if i % 2:
            t.tags["tracekit.sampling.probability"] = "0.5"
    spans = sum(len(t.spans) for t in traces)
    mgr = _state.manager
    mgr.pm.unregister(name="mlflow")  # the no-op store alone answers tracekit_export_traces
    mod = mgr.pm.get_plugin("monitor")

    mon = monitor.current()

    def deliver(with_monitor: bool) -> int:
        t0 = time.perf_counter_ns()
        for t in traces:
            mgr.export([t])
        if with_monitor:  # counted too: what the monitor's thread does with the collected increments
            mon.flush_metrics()
        return time.perf_counter_ns() - t0

    base, cand = [], []
    for _ in range(3):  # warm-up: label children, caches
        deliver(True)
    for r in range(rounds):
        for with_monitor in ((False, True) if r % 2 == 0 else (True, False)):
            if with_monitor and not mgr.pm.is_registered(mod):
                mgr.register(mod, name="monitor")
            if not with_monitor and mgr.pm.is_registered(mod):
                mgr.pm.unregister(mod)
            (cand if with_monitor else base).append(deliver(with_monitor) / spans / 1000.0)
    mgr.register(mod, name="monitor")
    mon.flush_metrics()
    recorded = mon.metrics.traces_stored._value.get()
    tk.disable()
    b, c = statistics.median(base), statistics.median(cand)
    return {"mode": "multiprocess" if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else "single-process",
            "traces": len(traces), "spans": spans, "rounds": rounds,
            "baseline_us_per_span": round(b, 3), "with_monitor_us_per_span": round(c, 3),
            "monitor_us_per_span": round(c - b, 3), "ratio": round(c / b, 2), "recorded_traces": recorded}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)))
