"""Delivery in a second process: one process of the measurement for issue #12 (run by test_bench_oop.py).

    python bench_oop.py MODE N STORE_DIR

A MEASUREMENT of an alternative design, not a product change: what would the burst's total cost be if the
delivery path ran in another process, on the second core, instead of on a thread that shares the GIL with
the program?

* ``oop``: the same N-request burst as ``bench_delivery.py burst`` (its ``_program``, ``_burst``,
  ``_config``), redact + sample (ratio 1) + cost on the request path as in production; a take-trace plugin
  hands each finished trace to a parent-side thread, which runs the keep hook, materializes the trace
  (``trace.materialize()``, as the buffer's worker does), and sends it in batches (the buffer's policy:
  ``batch_size`` 200, or what is queued after ``flush_interval`` 0.5 s, or at once on flush), pickled
  (protocol 5) over a ``multiprocessing`` pipe, to a child process (spawn start method). The child runs
  the rest of the delivery path as ``bench_delivery.py stages`` does (the redact plugin's process hook,
  then the core plugin's ``tracekit_export_traces``: ``trace_views`` + ``insert_views`` into the SQLite
  store) and acknowledges each batch with the running count.
* ``oop_raw``: the same, but the parent sends the trace before materialize and the child materializes.
  If the raw records do not pickle, the mode says so and which fields fail, and why.
* ``serial``: N materialized traces serialised and read back in batches: pickle protocol 5 of the records
  against marshal / orjson of ``to_dict()`` rebuilt with ``from_dict`` (thread CPU, best of 5).
* ``parent_only``: the parent's side of ``oop`` alone (take, keep, materialize, pickle; the bytes are
  dropped, no child): what the program's process pays, without a second process competing for the cores.

Printed (one JSON line): wall until the child has stored all N, parent and child process CPU over that
window, the serialisation cost per trace (parent ``pickle.dumps`` and child ``pickle.loads``, thread CPU),
bytes per trace, the child's start-up (spawn → imports → ``enable()`` → ready; excluded from the burst),
and the rows stored (counted as ``bench_delivery._stored`` does). Also where the program's thread spent
the burst's wall time (``/proc/thread-self/schedstat``: on a CPU, runnable but waiting for one — the
machine's load — or blocked: the GIL, a lock), the same for the child, and the parent's cyclic-GC CPU.

``TK_OOP_BATCH`` / ``TK_OOP_INTERVAL`` change the batch size / flush interval; ``TK_OOP_GC_FREEZE=1`` calls
``gc.freeze()`` after start-up in both processes (what the cyclic GC's full collections cost).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import pickle
import sys
import threading
import time
from collections import deque

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_delivery import _burst, _config, _program, _stored  # noqa: E402

PROTOCOL = 5
BATCH = int(os.environ.get("TK_OOP_BATCH", "200"))
INTERVAL = float(os.environ.get("TK_OOP_INTERVAL", "0.5"))
MARK, STOP = b"mark", b"stop"
FREEZE = bool(os.environ.get("TK_OOP_GC_FREEZE"))  # gc.freeze() after start-up, in parent and child


def _sched() -> tuple[float, float]:
    """The calling thread's seconds on a CPU and seconds runnable but waiting for one (the machine's load);
    the rest of a wall interval the thread was blocked (the GIL, a lock, the pipe)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            run, wait, _ = f.read().split()
        return int(run) / 1e9, int(wait) / 1e9
    except OSError:
        return 0.0, 0.0


# -- child: the rest of the delivery path ---------------------------------------------------------------
def _child(conn, uri: str, store_dir: str, raw: bool) -> None:
    w0, c0 = time.perf_counter(), time.process_time()
    import dspy_tracekit as tk
    from dspy_tracekit import _state

    # the child only delivers: the redact plugin (its process hook) and the core plugin (export)
    tk.enable(plugins=["redact"], tracking_uri=uri, experiment="bench")
    mgr = _state.manager
    core = mgr.pm.get_plugin("mlflow")
    core.experiment_id()
    procs = [impl.function for impl in reversed(mgr.pm.hook.tracekit_process_trace.get_hookimpls())]
    import gc

    if FREEZE:
        gc.freeze()
    gcs = [0.0, 0.0]

    def on_gc(phase, info):  # the child's cyclic-GC CPU (it lands inside whichever stage allocates)
        if phase == "start":
            gcs[1] = time.thread_time()
        else:
            gcs[0] += time.thread_time() - gcs[1]

    gc.callbacks.append(on_gc)
    conn.send_bytes(pickle.dumps(("ready", time.perf_counter() - w0, time.process_time() - c0)))
    stats = dict.fromkeys(("unpickle", "materialize", "redact", "export"), 0.0)
    stored = 0
    cpu0, sched0, wall0 = time.process_time(), _sched(), time.perf_counter()
    while True:
        msg = conn.recv_bytes()
        if msg == MARK:  # the burst starts: count from here
            stats = dict.fromkeys(stats, 0.0)
            gcs[0] = 0.0
            stored, cpu0, sched0, wall0 = 0, time.process_time(), _sched(), time.perf_counter()
            conn.send_bytes(pickle.dumps(("marked",)))
            continue
        if msg == STOP:
            break
        t = time.thread_time()
        batch = pickle.loads(msg)
        t1 = time.thread_time()
        stats["unpickle"] += t1 - t
        if raw:
            for trace in batch:
                trace.materialize()
        t2 = time.thread_time()
        stats["materialize"] += t2 - t1
        for trace in batch:
            for p in procs:
                p(trace)
        t3 = time.thread_time()
        stats["redact"] += t3 - t2
        core.tracekit_export_traces(batch)
        stats["export"] += time.thread_time() - t3
        stored += len(batch)
        sched = _sched()
        stats["sched_run"], stats["sched_wait"] = sched[0] - sched0[0], sched[1] - sched0[1]
        stats["wall"] = time.perf_counter() - wall0
        stats["gc_cpu"] = gcs[0]
        conn.send_bytes(pickle.dumps(("ack", stored, time.process_time() - cpu0, stats)))
    tk.disable()
    conn.close()


# -- parent: the take-trace plugin and the sending thread -------------------------------------------------
class Sender:
    """Takes finished traces (the request path's only cost), a thread keeps/materializes/pickles/sends them."""

    def __init__(self, conn, hook, raw: bool):
        self.conn, self.hook, self.raw = conn, hook, raw
        self.queue: deque = deque()
        self.cond = threading.Condition()
        self.flushing = False
        self.stopping = False
        self.stats = dict.fromkeys(("keep", "materialize", "pickle", "send"), 0.0)
        self.bytes = 0
        self.sent = 0
        self.batches = 0
        self.thread = threading.Thread(target=self._run, name="oop-sender", daemon=True)
        self.thread.start()

    def take(self, trace) -> None:
        with self.cond:
            self.queue.append(trace)
            if len(self.queue) >= BATCH:
                self.cond.notify()

    def send_raw(self, data: bytes) -> None:
        with self.cond:
            self.queue.append(data)
            self.cond.notify()

    def flush(self) -> None:
        with self.cond:
            self.flushing = True
            self.cond.notify()

    def reset(self) -> None:
        self.stats = dict.fromkeys(self.stats, 0.0)
        self.bytes = self.sent = self.batches = 0

    def _run(self) -> None:
        while True:
            with self.cond:
                if not self.stopping and (not self.queue or (len(self.queue) < BATCH and not self.flushing)):
                    self.cond.wait(INTERVAL if self.queue else 1.0)
                if self.stopping and not self.queue:
                    return
                n = min(len(self.queue), BATCH)
                items = [self.queue.popleft() for _ in range(n)]
                if not self.queue:
                    self.flushing = False
            batch = []
            for item in items:
                if isinstance(item, bytes):  # a control message, in order with the traces
                    self._send(batch)
                    batch = []
                    self.conn.send_bytes(item)
                    continue
                t0 = time.thread_time()
                keep = self.hook.tracekit_keep_trace(trace=item)
                t1 = time.thread_time()
                self.stats["keep"] += t1 - t0
                if keep is False:
                    continue
                if not self.raw:
                    item.materialize()
                    self.stats["materialize"] += time.thread_time() - t1
                batch.append(item)
            self._send(batch)

    def _send(self, batch) -> None:
        if not batch:
            return
        t0 = time.thread_time()
        data = pickle.dumps(batch, protocol=PROTOCOL)
        self.stats["pickle"] += time.thread_time() - t0
        self.bytes += len(data)
        self.sent += len(batch)
        self.batches += 1
        if self.conn is None:  # parent_only: the bytes are dropped
            return
        t1 = time.thread_time()
        self.conn.send_bytes(data)
        self.stats["send"] += time.thread_time() - t1


class Acks:
    """Reads the child's messages on its own thread (the child must never block on a full pipe)."""

    def __init__(self, conn):
        self.conn = conn
        self.last: tuple = ()
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="oop-acks", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                msg = pickle.loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                return
            with self.cond:
                self.last = msg
                self.cond.notify_all()

    def wait_for(self, pred, timeout: float) -> tuple:
        with self.cond:
            ok = self.cond.wait_for(lambda: self.last and pred(self.last), timeout)
            assert ok, f"child did not answer in {timeout} s (last message: {self.last[:2]})"
            return self.last


def _raw_pickle_report(trace) -> dict:
    """Why a trace taken before materialize does not pickle: each span field that fails, with the error."""
    fails: dict[str, str] = {}
    for span in trace.spans:
        for name in type(span).__slots__:
            if name == "trace":
                continue
            value = getattr(span, name, None)
            try:
                pickle.dumps(value, protocol=PROTOCOL)
            except Exception as exc:  # noqa: BLE001 - the reason is the report
                key = f"{span.kind}.{name}"
                fails.setdefault(key, f"{type(value).__name__}: {type(exc).__name__}: {str(exc)[:160]}")
    return fails


def _serial(traces: list) -> dict:
    """µs per trace (thread CPU, best of 5, batches of BATCH) to serialise / deserialise materialized traces:
    pickle protocol 5 of the records, and marshal / orjson of ``to_dict()`` rebuilt with ``from_dict``
    (checked: the rebuilt trace's ``to_dict()`` equals the original's)."""
    import marshal

    import orjson

    from dspy_tracekit.records import TraceRecord

    chunks = [traces[i:i + BATCH] for i in range(0, len(traces), BATCH)]
    ways = {
        "pickle5": (lambda c: pickle.dumps(c, protocol=PROTOCOL), pickle.loads),
        "marshal_to_dict": (lambda c: marshal.dumps([t.to_dict() for t in c]),
                            lambda b: [TraceRecord.from_dict(d) for d in marshal.loads(b)]),
        "orjson_to_dict": (lambda c: orjson.dumps([t.to_dict() for t in c]),
                           lambda b: [TraceRecord.from_dict(d) for d in orjson.loads(b)]),
    }
    out: dict = {}
    for name, (dump, load) in ways.items():
        best_d = best_l = float("inf")
        size = 0
        try:
            dump(chunks[0])
        except Exception as exc:  # noqa: BLE001 - the reason is the report
            out[name] = {"fails": f"{type(exc).__name__}: {str(exc)[:160]}"}
            continue
        for _ in range(5):
            t0 = time.thread_time()
            blobs = [dump(c) for c in chunks]
            t1 = time.thread_time()
            back = [load(b) for b in blobs]
            t2 = time.thread_time()
            best_d, best_l = min(best_d, t1 - t0), min(best_l, t2 - t1)
            size = sum(len(b) for b in blobs)
        same = all(a.to_dict() == b.to_dict() for c, bc in zip(chunks, back) for a, b in zip(c, bc))
        out[name] = {"dump_us": best_d / len(traces) * 1e6, "load_us": best_l / len(traces) * 1e6,
                     "bytes": size / len(traces), "round_trip_equal": same}
    return out


def main(mode: str, n: int, store_dir: str) -> None:
    if mode == "serial":  # the serialisations compared on the same materialized traces
        import dspy

        import dspy_tracekit as tk

        answers = [{"reasoning": "The user asks to build a workflow.", "intent": "create_workflow"}] * (n + 100)
        dspy.configure(lm=dspy.utils.DummyLM(answers))
        got = []

        class Keep:
            @tk.hookimpl
            def tracekit_take_trace(self, trace):
                got.append(trace)
                return True

        os.makedirs(store_dir, exist_ok=True)
        tk.enable(plugins=["redact", "sample", "cost", Keep()], tracking_uri=f"sqlite:///{store_dir}/serial.db",
                  experiment="bench", config=_config(store_dir))
        _burst(_program(), n)
        tk.disable()
        for t in got:
            t.materialize()
        print(json.dumps({"mode": mode, "n": n, "batch_size": BATCH, "serial": _serial(got)}))
        return
    assert mode in ("oop", "oop_raw", "parent_only"), f"unknown mode {mode!r} (oop, oop_raw, parent_only)"
    raw = mode == "oop_raw"
    alone = mode == "parent_only"
    os.makedirs(store_dir, exist_ok=True)
    uri = f"sqlite:///{store_dir}/{mode}-{os.getpid()}.db"
    out: dict = {"mode": mode, "n": n, "batch_size": BATCH, "flush_interval": INTERVAL, "protocol": PROTOCOL}

    import dspy

    answers = [{"reasoning": "The user asks to build a workflow.", "intent": "create_workflow"}] * (2 * n + 100)
    dspy.configure(lm=dspy.utils.DummyLM(answers))
    program = _program()
    import dspy_tracekit as tk
    from dspy_tracekit import _state

    if raw:  # do the raw records pickle at all? try one trace before starting anything
        one = []

        class Grab:
            @tk.hookimpl
            def tracekit_take_trace(self, trace):
                one.append(trace)
                return True

        tk.enable(plugins=["redact", "sample", "cost", Grab()], tracking_uri=uri, experiment="bench",
                  config=_config(store_dir))
        _burst(program, 1, "probe")
        tk.disable()
        try:
            pickle.dumps(one[0], protocol=PROTOCOL)
        except Exception as exc:  # noqa: BLE001
            out.update(raw_pickles=False, error=f"{type(exc).__name__}: {str(exc)[:200]}",
                       failing_fields=_raw_pickle_report(one[0]))
            print(json.dumps(out))
            return
        out["raw_pickles"] = True

    if alone:
        parent_conn = child = None
    else:
        ctx = mp.get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        w0 = time.perf_counter()
        child = ctx.Process(target=_child, args=(child_conn, uri, store_dir, raw), daemon=True)
        child.start()
        acks = Acks(parent_conn)
        ready = acks.wait_for(lambda m: m[0] == "ready", 300)
        out.update(child_startup_wall_s=time.perf_counter() - w0, child_startup_in_child_wall_s=ready[1],
                   child_startup_cpu_s=ready[2])

    sender: Sender | None = None

    class Take:
        @tk.hookimpl
        def tracekit_take_trace(self, trace):
            sender.take(trace)
            return True

    tk.enable(plugins=["redact", "sample", "cost", Take()], tracking_uri=uri,
              experiment="bench", config=_config(store_dir))
    sender = Sender(parent_conn, _state.manager.pm.hook, raw)
    out["gc_freeze"] = FREEZE
    if FREEZE:
        import gc

        gc.freeze()
    _burst(program, 20, "warm")  # the first write (experiment, statement caches) outside the timing
    sender.flush()
    if alone:
        while sender.sent < 20:
            time.sleep(0.005)
    else:
        acks.wait_for(lambda m: m[0] == "ack" and m[1] == 20, 120)
        before = _stored(uri)
        sender.send_raw(MARK)
        acks.wait_for(lambda m: m[0] == "marked", 60)
    sender.reset()
    clocks = {"sender": time.pthread_getcpuclockid(sender.thread.ident)}
    if not alone:
        clocks["acks"] = time.pthread_getcpuclockid(acks.thread.ident)
    th0 = {k: time.clock_gettime(c) for k, c in clocks.items()}
    gc_s = [0.0, 0.0, 0]  # CPU in the cyclic GC (thread CPU of whichever thread collects), start, count

    def on_gc(phase, info):
        if phase == "start":
            gc_s[1] = time.thread_time()
        else:
            gc_s[0] += time.thread_time() - gc_s[1]
            gc_s[2] += 1

    import gc

    gc.callbacks.append(on_gc)
    t0, c0, s0 = time.perf_counter(), time.process_time(), _sched()
    _burst(program, n)
    s1 = _sched()
    requests_s = time.perf_counter() - t0
    sender.flush()
    if alone:
        while sender.sent < n:
            time.sleep(0.005)
    else:
        last = acks.wait_for(lambda m: m[0] == "ack" and m[1] >= n, 900)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    gc.callbacks.remove(on_gc)
    threads = {k: time.clock_gettime(c) - th0[k] for k, c in clocks.items()}
    main_sched = {"wall_s": requests_s, "on_cpu_s": s1[0] - s0[0], "runnable_waiting_s": s1[1] - s0[1],
                  "blocked_s": requests_s - (s1[0] - s0[0]) - (s1[1] - s0[1])}
    sent = sender.sent or 1
    if alone:  # what the parent pays alone: take, keep, materialize, pickle (bytes dropped), no child
        tk.disable()
        out.update(wall_s=wall, requests_wall_s=requests_s, parent_cpu_s=cpu, parent_thread_cpu_s=threads,
                   main_thread_requests=main_sched, parent_gc_cpu_s=gc_s[0], parent_gc_collections=gc_s[2],
                   batches=sender.batches, bytes_per_trace=sender.bytes / sent,
                   parent_us_per_trace={k: v / sent * 1e6 for k, v in sender.stats.items()})
        print(json.dumps(out))
        return
    tk.disable()
    sender.send_raw(STOP)
    child.join(60)
    stats = last[3]
    out.update(
        wall_s=wall, requests_wall_s=requests_s, parent_cpu_s=cpu, child_cpu_s=last[2],
        parent_thread_cpu_s=threads,
        main_thread_requests=main_sched,
        child_gc_cpu_s=stats.pop("gc_cpu"),
        child_sched={"wall_s": stats.pop("wall"), "on_cpu_s": stats.pop("sched_run"),
                     "runnable_waiting_s": stats.pop("sched_wait")}, parent_gc_cpu_s=gc_s[0], parent_gc_collections=gc_s[2],
        stored_acked=last[1], stored=_stored(uri) - before, batches=sender.batches,
        bytes_per_trace=sender.bytes / sent,
        parent_us_per_trace={k: v / sent * 1e6 for k, v in sender.stats.items()},
        child_us_per_trace={k: v / sent * 1e6 for k, v in stats.items()},
        child_exit=child.exitcode,
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
