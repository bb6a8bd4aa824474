"""One process of the materialize / GC benchmark (issue #12); run side by side by test_bench_materialize.py.

    python bench_materialize.py MODE N STORE_DIR

The 6-span intent program on DummyLM (tests/benchmarks/bench_delivery.py's), with PYTHONPATH pointing at the
checkout to measure. Modes:

* ``materialize``: N traces captured on the request path (redact, sample ratio 1 and cost on, the traces
  taken by a capturing hook), then ``TraceRecord.materialize()`` on each: thread CPU µs per trace and per
  span. ``TK_BENCH_NO_GC=1``: the cyclic GC off while it runs.
* ``burst``: an N-request burst with all four plugins (buffer on), until every trace is stored; process
  CPU, and the CPU the cyclic GC took (``gc.callbacks``: thread CPU between each collection's start and
  stop, on whichever thread collected), collections per generation. ``TK_BENCH_BREAK=1`` (an experiment, not
  what tracekit does): cut each span's reference to its trace after export, so that delivered traces are freed
  by reference counting instead of by the cyclic GC.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_delivery import PLUGINS, _burst, _config, _program, _stored  # noqa: E402


class GcClock:
    """CPU seconds spent in the cyclic GC, from ``gc.callbacks``."""

    def __init__(self):
        self.cpu = 0.0
        self.cpu_by_generation = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self.collected = 0
        self._start: dict = {}

    def __call__(self, phase, info):
        import threading

        key = threading.get_ident()
        if phase == "start":
            self._start[key] = time.thread_time()
        else:
            t0 = self._start.pop(key, None)
            if t0 is not None:
                self.cpu += time.thread_time() - t0
                self.cpu_by_generation[info["generation"]] += time.thread_time() - t0
            self.collections[info["generation"]] += 1
            self.collected += info.get("collected", 0)


def main(mode: str, n: int, store_dir: str) -> None:
    os.makedirs(store_dir, exist_ok=True)
    uri = f"sqlite:///{store_dir}/{mode}-{os.getpid()}.db"
    import dspy

    import dspy_tracekit as tk

    answers = [{"reasoning": "The user asks to build a workflow.", "intent": "create_workflow"}] * (2 * n + 100)
    dspy.configure(lm=dspy.utils.DummyLM(answers))
    program = _program()
    out: dict = {"mode": mode, "n": n, "gc": not os.environ.get("TK_BENCH_NO_GC")}

    if mode == "burst":
        extra = []
        if os.environ.get("TK_BENCH_BREAK"):  # experiment: cut span → trace after export

            class Break:
                @tk.hookimpl
                def tracekit_traces_exported(self, traces):
                    for t in traces:
                        for s in t.spans:
                            s.trace = None

            extra = [Break()]
        tk.enable(plugins=PLUGINS + extra, tracking_uri=uri, experiment="bench", config=_config(store_dir))
        _burst(program, 20, "warm")
        assert tk.flush(120)
        before = _stored(uri)
        clock = GcClock()
        gc.collect()
        gc.callbacks.append(clock)
        t0, c0 = time.perf_counter(), time.process_time()
        _burst(program, n)
        ok = tk.flush(900)
        out.update(wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0, flushed=ok)
        gc.callbacks.remove(clock)
        out.update(gc_cpu_s=clock.cpu, gc_share=clock.cpu / out["cpu_s"], collections=clock.collections,
                   gc_cpu_by_generation=clock.cpu_by_generation,
                   collected=clock.collected)
        tk.disable()
        out["stored"] = _stored(uri) - before
        print(json.dumps(out))
        return

    captured = []

    class Capture:
        @tk.hookimpl
        def tracekit_take_trace(self, trace):
            captured.append(trace)
            return True

    tk.enable(plugins=["redact", "sample", "cost", Capture()], tracking_uri=uri, experiment="bench",
              config=_config(store_dir))
    _burst(program, 20, "warm")
    for t in captured:
        t.materialize()
    captured[:] = []
    _burst(program, n)
    traces, captured[:] = list(captured), []
    tk.disable()
    spans = sum(len(t.spans) for t in traces)
    gc.collect()
    if not out["gc"]:
        gc.disable()
    t0 = time.thread_time()
    for t in traces:
        t.materialize()
    elapsed = time.thread_time() - t0
    out.update(us_per_trace=elapsed / len(traces) * 1e6, us_per_span=elapsed / spans * 1e6,
               spans_per_trace=spans / len(traces))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
