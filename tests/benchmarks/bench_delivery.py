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
  ``TK_BENCH_FLOOR=1`` adds the physical floor of the write: ``sqlite3`` alone inserting the very rows
  the write stage stored into a copy of the store as it was before, with MLflow's connection settings
  (``PRAGMA foreign_keys = ON`` ...), the same batches, one transaction each (see :func:`_floor`).
* ``drain``: N traces captured, put in the buffer's queue before its worker starts; time to drain.
* ``enable``: seconds of the first ``enable()`` on a new SQLite store (imports included; wall and thread
  CPU), then of the first request until its trace is stored (wall and process CPU: the worker's share
  counts); ``enable_dspy``: the same after ``import dspy``; ``enable_imported``: after ``import dspy, mlflow``.

Run with ``PYTHONPATH`` pointing at another checkout's ``src`` folders to measure that code instead.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
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


#: what MLflow's managed session runs on every SQLite connection (mlflow/store/db/utils.py)
_MLFLOW_PRAGMAS = ("PRAGMA foreign_keys = ON", "PRAGMA busy_timeout = 20000", "PRAGMA case_sensitive_like = true")
_FLOOR_VARIANTS = {"mlflow_settings": (), "synchronous_off": ("PRAGMA synchronous = OFF",)}


def _floor(written: str, before: str, batches: list[list[str]]) -> dict:
    """µs per trace for ``sqlite3`` alone to insert the rows of ``batches`` (trace ids) that ``written``
    holds into a copy of ``before`` (the store before the write stage): thread CPU and wall time, per
    variant of the connection's settings (synchronous_off: what the fsyncs at commit add)."""
    import shutil
    import sqlite3

    src = sqlite3.connect(written)
    tables = {}
    for table, id_col in (("trace_info", "request_id"), ("trace_tags", "request_id"),
                          ("trace_request_metadata", "request_id"), ("spans", "trace_id")):
        cols = [r[1] for r in src.execute(f"pragma table_xinfo({table})") if r[6] == 0]  # not generated
        by_id: dict[str, list] = {}
        at = cols.index(id_col)
        for row in src.execute(f"select {', '.join(cols)} from {table}"):
            by_id.setdefault(row[at], []).append(row)
        sql = f"insert into {table} ({', '.join(cols)}) values ({', '.join('?' * len(cols))})"
        tables[table] = (sql, by_id)
    src.close()
    ids = [i for b in batches for i in b]
    prepared = [[(sql, [r for i in b for r in by_id.get(i, ())]) for sql, by_id in tables.values()]
                for b in batches]
    out: dict = {"rows_per_trace": sum(len(rows) for p in prepared for _, rows in p) / len(ids)}
    for name, pragmas in _FLOOR_VARIANTS.items():
        target = f"{before}.{name}"
        shutil.copy(before, target)
        con = sqlite3.connect(target, isolation_level=None)
        for pragma in _MLFLOW_PRAGMAS + pragmas:
            con.execute(pragma)
        t0, w0 = time.thread_time(), time.perf_counter()
        for batch in prepared:
            con.execute("BEGIN")
            for sql, rows in batch:
                if rows:
                    con.executemany(sql, rows)
            con.execute("COMMIT")
        out[f"{name}_us_per_trace"] = (time.thread_time() - t0) / len(ids) * 1e6
        out[f"{name}_wall_us_per_trace"] = (time.perf_counter() - w0) / len(ids) * 1e6
        con.close()
    return out


def _thread_cpu(thread) -> float:
    """CPU seconds a thread (of this process) has used so far."""
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


class _GcClock:
    """The cyclic GC's collections and thread CPU, per generation and per thread (``gc.callbacks``)."""

    def __init__(self):
        self.cpu: dict = {}
        self.count: dict = {}
        self._start: dict = {}

    def __call__(self, phase, info):
        key = threading.get_ident()
        if phase == "start":
            self._start[key] = time.thread_time()
            return
        t0 = self._start.pop(key, None)
        slot = (key, info["generation"])
        self.count[slot] = self.count.get(slot, 0) + 1
        if t0 is not None:
            self.cpu[slot] = self.cpu.get(slot, 0.0) + time.thread_time() - t0

    def report(self, worker) -> dict:
        who = {threading.main_thread().ident: "program"}
        if worker is not None:
            who[worker.ident] = "worker"
        out: dict = {}
        for (key, gen), n in self.count.items():
            name = who.get(key, "other")
            entry = out.setdefault(name, {"cpu_s": [0.0, 0.0, 0.0], "collections": [0, 0, 0]})
            entry["collections"][gen] += n
            entry["cpu_s"][gen] += self.cpu.get((key, gen), 0.0)
        return out


def main(mode: str, n: int, store_dir: str) -> None:
    os.makedirs(store_dir, exist_ok=True)
    uri = f"sqlite:///{store_dir}/{mode}-{os.getpid()}.db"
    if mode in ("enable", "enable_dspy", "enable_imported"):
        if mode in ("enable_dspy", "enable_imported"):
            import dspy  # noqa: F401 - what a DSPy program has imported before enable() (it defines modules)
        if mode == "enable_imported":
            import mlflow  # noqa: F401 - and one that uses MLflow's API too
        t0, c0 = time.perf_counter(), time.thread_time()
        import dspy_tracekit as tk

        tk.enable(plugins=PLUGINS, tracking_uri=uri, experiment="bench", config=_config(store_dir))
        elapsed, cpu = time.perf_counter() - t0, time.thread_time() - c0
        mlflow_imported = "mlflow" in sys.modules
        import dspy

        dspy.configure(lm=dspy.utils.DummyLM([{"reasoning": "r", "intent": "create_workflow"}] * 10))
        program = _program()
        t1, p1 = time.perf_counter(), time.process_time()
        program(message="the first request")  # what enable() left for later is paid by the first export
        flushed = tk.flush(600)
        first, first_cpu = time.perf_counter() - t1, time.process_time() - p1
        tk.disable()
        print(json.dumps({"mode": mode, "enable_s": elapsed, "enable_cpu_s": cpu, "first_trace_stored_s": first,
                          "first_trace_cpu_s": first_cpu, "flushed": flushed, "stored": _stored(uri),
                          "mlflow_imported_by_enable": mlflow_imported}))
        return

    import dspy

    answers = [{"reasoning": "The user asks to build a workflow.", "intent": "create_workflow"}] * (2 * n + 100)
    dspy.configure(lm=dspy.utils.DummyLM(answers))
    program = _program()
    out: dict = {"mode": mode, "n": n}
    if mode == "untraced":
        _burst(program, 20, "warm")
        clock = _GcClock()
        gc.callbacks.append(clock)
        t0, c0 = time.perf_counter(), time.process_time()
        _burst(program, n)
        out.update(wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0)
        gc.callbacks.remove(clock)
        out["gc"] = clock.report(None)
        print(json.dumps(out))
        return

    import dspy_tracekit as tk

    if mode == "burst":
        tk.enable(plugins=PLUGINS, tracking_uri=uri, experiment="bench", config=_config(store_dir))
        if os.environ.get("TK_BENCH_GC_FREEZE"):  # what the cyclic GC's full collections cost (#12)
            gc.freeze()
        _burst(program, 20, "warm")
        assert tk.flush(120)
        before = _stored(uri)
        from dspy_tracekit_buffer import current

        worker = current()._worker
        clock = _GcClock()
        gc.callbacks.append(clock)
        t0, c0 = time.perf_counter(), time.process_time()
        m0, w0 = time.thread_time(), _thread_cpu(worker)
        _burst(program, n)
        program_wall, program_cpu, worker_during = time.perf_counter() - t0, time.thread_time() - m0, \
            _thread_cpu(worker) - w0
        ok = tk.flush(900)
        out.update(wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0, flushed=ok)
        gc.callbacks.remove(clock)
        # where the burst's time goes: the program's thread (the requests and their tracing), the buffer's
        # worker (delivery), the cyclic GC on each, and the wall the program's thread spent not running
        # (waiting for the GIL: its wall minus its CPU while the requests ran)
        out.update(program_wall_s=program_wall, program_cpu_s=time.thread_time() - m0,
                   program_gil_wait_s=program_wall - program_cpu, worker_cpu_s=_thread_cpu(worker) - w0,
                   worker_cpu_during_program_s=worker_during, gc=clock.report(worker))
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
        gc.disable()
        out["gc"] = "disabled"

    walls: dict[str, float] = {}

    def timed(name, fn):
        t0, w0 = time.thread_time(), time.perf_counter()
        fn()
        stage[name] = time.thread_time() - t0
        walls[name] = time.perf_counter() - w0

    timed("keep", lambda: [hook.tracekit_keep_trace(trace=t) for t in traces])
    timed("materialize", lambda: [t.materialize() for t in traces])
    procs = [impl.function for impl in reversed(hook.tracekit_process_trace.get_hookimpls())]
    timed("redact", lambda: [[p(t) for p in procs] for t in traces])
    batch = 200
    chunks = [traces[i:i + batch] for i in range(0, len(traces), batch)]
    translated = []
    direct = hasattr(mlflow_store, "fast_path_available") and mlflow_store.fast_path_available(uri)
    out["direct_rows"] = direct
    db_path = uri[len("sqlite:///"):]
    floor = os.environ.get("TK_BENCH_FLOOR")
    if floor:
        import shutil

        shutil.copy(db_path, f"{db_path}.before-write")
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
    if floor:
        out["floor"] = _floor(db_path, f"{db_path}.before-write", [[t.mlflow_trace_id for t in c] for c in chunks])
    out["stage_us_per_trace"] = {k: v / len(traces) * 1e6 for k, v in stage.items()}
    out["stage_wall_us_per_trace"] = {k: v / len(traces) * 1e6 for k, v in walls.items()}
    out["stage_us_per_span"] = {k: v / spans * 1e6 for k, v in stage.items()}
    out["total_us_per_trace"] = sum(stage.values()) / len(traces) * 1e6
    tk.disable()
    out["stored"] = _stored(uri)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
