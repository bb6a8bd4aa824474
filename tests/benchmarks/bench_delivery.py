"""One process of the delivery benchmark (issue #12); run side by side by test_bench_delivery.py.

    python bench_delivery.py MODE N STORE_DIR

Modes (the 6-span intent program on DummyLM, all four plugins: redact, sample ratio 1, cost, buffer):

* ``untraced``: wall time of an N-request burst, no tracing.
* ``burst``: wall time of the same burst traced, until every trace is stored (``tk.flush``); traces stored.
* ``request_only``: the same burst with the buffer replaced by a plugin that takes each finished trace and
  drops it: the request path alone, the floor under the whole pipeline's cost.
* ``stages``: N traces captured on the request path, then each delivery stage run on all of them in
  turn (keep, materialize, redact, translate, write), µs per trace and per span (``TK_BENCH_NO_GC=1``:
  with the cyclic GC off, so that its collections do not land on whichever stage allocates).
* ``drain``: N traces captured, put in the buffer's queue before its worker starts; time to drain.
* ``enable``: seconds of the first ``enable()`` on a new SQLite store (imports included), then of the first
  request until its trace is stored; ``enable_imported``: the same after ``import dspy, mlflow``.

Run with ``PYTHONPATH`` pointing at another checkout's ``src`` folders to measure that code instead.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
PLUGINS = ["redact", "sample", "cost", "buffer"]


def _program():
    import dspy

    class Sig(dspy.Signature):
        """Classify an admin-console message."""

        message: str = dspy.InputField()
        intent: str = dspy.OutputField()

    class IntentProgram(dspy.Module):
        def __init__(self):
            super().__init__()
            self.classify = dspy.ChainOfThought(Sig)

        def forward(self, message):
            return self.classify(message=message)

    return IntentProgram()


def _burst(program, n, prefix="req"):
    for i in range(n):
        program(message=f"{prefix} {i}: help me create a workflow, mail ops-{i}@example.com")


def _config(store_dir):
    return {"buffer": {"spool_dir": f"{store_dir}/spool-{os.getpid()}"}, "sample": {"ratio": 1.0}}


def _stored(uri: str) -> int:
    import sqlite3

    con = sqlite3.connect(uri[len("sqlite:///"):])
    try:
        return con.execute("select count(*) from trace_info").fetchone()[0]
    finally:
        con.close()


def main(mode: str, n: int, store_dir: str) -> None:
    os.makedirs(store_dir, exist_ok=True)
    uri = f"sqlite:///{store_dir}/{mode}-{os.getpid()}.db"
    if mode in ("enable", "enable_imported"):
        if mode == "enable_imported":
            import dspy  # noqa: F401 - what a DSPy program that uses MLflow has imported before enable()
            import mlflow  # noqa: F401
        t0 = time.perf_counter()
        import dspy_tracekit as tk

        tk.enable(plugins=PLUGINS, tracking_uri=uri, experiment="bench", config=_config(store_dir))
        elapsed = time.perf_counter() - t0
        import dspy

        dspy.configure(lm=dspy.utils.DummyLM([{"reasoning": "r", "intent": "create_workflow"}] * 10))
        program = _program()
        t1 = time.perf_counter()
        program(message="the first request")  # what enable() left for later is paid by the first export
        flushed = tk.flush(600)
        first = time.perf_counter() - t1
        tk.disable()
        print(json.dumps({"mode": mode, "enable_s": elapsed, "first_trace_stored_s": first, "flushed": flushed,
                          "stored": _stored(uri)}))
        return

    import dspy

    answers = [{"reasoning": "The user asks to build a workflow.", "intent": "create_workflow"}] * (2 * n + 100)
    dspy.configure(lm=dspy.utils.DummyLM(answers))
    program = _program()
    out: dict = {"mode": mode, "n": n}
    if mode == "untraced":
        _burst(program, 20, "warm")
        t0, c0 = time.perf_counter(), time.process_time()
        _burst(program, n)
        out.update(wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0)
        print(json.dumps(out))
        return

    import dspy_tracekit as tk

    if mode == "burst":
        tk.enable(plugins=PLUGINS, tracking_uri=uri, experiment="bench", config=_config(store_dir))
        if os.environ.get("TK_BENCH_GC_FREEZE"):  # what the cyclic GC's full collections cost (#12)
            import gc

            gc.freeze()
        _burst(program, 20, "warm")
        assert tk.flush(120)
        before = _stored(uri)
        t0, c0 = time.perf_counter(), time.process_time()
        _burst(program, n)
        ok = tk.flush(900)
        out.update(wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0, flushed=ok)
        tk.disable()
        out["stored"] = _stored(uri) - before
        print(json.dumps(out))
        return

    if mode == "request_only":
        class Drop:
            @tk.hookimpl
            def tracekit_take_trace(self, trace):
                return True

        tk.enable(plugins=["redact", "sample", "cost", Drop()], tracking_uri=uri, experiment="bench",
                  config=_config(store_dir))
        _burst(program, 20, "warm")
        t0, c0 = time.perf_counter(), time.process_time()
        _burst(program, n)
        out.update(wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0)
        tk.disable()
        print(json.dumps(out))
        return

    captured = []

    class Capture:
        @tk.hookimpl
        def tracekit_take_trace(self, trace):
            captured.append(trace)
            return True

    # sample's and cost's request-path hooks run as in production; the capture takes the finished traces
    tk.enable(plugins=["redact", "sample", "cost", Capture()], tracking_uri=uri, experiment="bench",
              config=_config(store_dir))
    _burst(program, 20, "warm")
    warm, captured[:] = list(captured), []
    _burst(program, n)
    traces, captured[:] = list(captured), []
    tk.disable()
    spans = sum(len(t.spans) for t in traces)
    out["spans_per_trace"] = spans / len(traces)

    if mode == "drain":
        from dspy_tracekit_buffer import current

        tk.enable(plugins=PLUGINS, tracking_uri=uri, experiment="bench", config=_config(store_dir))
        buf = current()
        for t in warm:  # first write (experiment, statement caches) outside the timing
            buf.take(t)
        assert tk.flush(60)
        with buf._lock:  # the worker idles waiting for work: fill the queue in one go, then wake it
            for t in traces:
                buf._queue.append((t, 0))
            t0, c0 = time.perf_counter(), time.process_time()
            buf._work.notify_all()
        ok = tk.flush(900)
        elapsed = time.perf_counter() - t0
        out.update(drain_s=elapsed, cpu_s=time.process_time() - c0, traces_per_s=len(traces) / elapsed,
                   flushed=ok)
        tk.disable()
        print(json.dumps(out))
        return

    # stages: each stage over all traces, timed apart (thread CPU time)
    from dspy_tracekit import _state
    from dspy_tracekit.mlflow import plugin as mlflow_core
    from dspy_tracekit.mlflow import store as mlflow_store

    tk.enable(plugins=["redact", "sample", "cost"], tracking_uri=uri, experiment="bench",
              config=_config(store_dir))
    mgr = _state.manager
    hook = mgr.pm.hook
    core = mgr.pm.get_plugin("mlflow")
    exp = core.experiment_id()
    for t in warm:
        t.materialize()
        for impl in reversed(hook.tracekit_process_trace.get_hookimpls()):
            impl.function(t)
    core.tracekit_export_traces(warm)
    stage: dict[str, float] = {}
    if os.environ.get("TK_BENCH_NO_GC"):  # each stage's own cost, without the cyclic GC landing on it
        import gc

        gc.disable()
        out["gc"] = "disabled"

    def timed(name, fn):
        t0 = time.thread_time()
        fn()
        stage[name] = time.thread_time() - t0

    timed("keep", lambda: [hook.tracekit_keep_trace(trace=t) for t in traces])
    timed("materialize", lambda: [t.materialize() for t in traces])
    procs = [impl.function for impl in reversed(hook.tracekit_process_trace.get_hookimpls())]
    timed("redact", lambda: [[p(t) for p in procs] for t in traces])
    batch = 200
    chunks = [traces[i:i + batch] for i in range(0, len(traces), batch)]
    translated = []
    direct = hasattr(mlflow_store, "fast_path_available") and mlflow_store.fast_path_available(uri)
    out["direct_rows"] = direct
    if direct:  # this checkout writes rows straight from the records (what the core plugin does)
        from dspy_tracekit.mlflow import rows as mlflow_rows

        timed("translate", lambda: translated.extend([mlflow_rows.trace_views(t) for t in c] for c in chunks))
        timed("write", lambda: [mlflow_store.insert_views(uri, exp, views) for views in translated])
    else:
        timed("translate", lambda: translated.extend(
            [s for t in c for s in mlflow_core.to_mlflow_spans(t)] for c in chunks))
        timed("write", lambda: [mlflow_store.log_spans(uri, exp, spans_) for spans_ in translated])
    if direct:
        out["direct_translation"] = mlflow_rows._Direct.on
    out["stage_us_per_trace"] = {k: v / len(traces) * 1e6 for k, v in stage.items()}
    out["stage_us_per_span"] = {k: v / spans * 1e6 for k, v in stage.items()}
    out["total_us_per_trace"] = sum(stage.values()) / len(traces) * 1e6
    tk.disable()
    out["stored"] = _stored(uri)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
