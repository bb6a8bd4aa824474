"""Long load and fault tests (marker ``load``; loopback only, each bounded in time).

    uv run pytest -m load plugins/buffer/tests -s

1. burst: 3,000 requests of the demo's intent program → 3,000 traces in the SQLite store.
2. outage: a real ``mlflow server`` (SQLite backend) on 127.0.0.1 killed for 30 s mid-run and
   restarted → every trace stored once.
3. crash: a traced process SIGKILLed mid-run → the next ``enable()`` replays every spooled trace once.
(4. full disk and exit-time flush: ``test_buffer_faults.py``, also marked ``load``.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from buffer_testkit import (
    free_port,
    make_program,
    make_writeup_program,
    run_requests,
    span_counts,
    store_trace_ids,
)
from dspy_tracekit_buffer._spool import decode_records

import dspy_tracekit as tk

pytestmark = pytest.mark.load


def test_burst_of_3000_demo_requests_all_reach_the_store(store, spool_dir, tmp_path):
    import dspy

    from dspy_tracekit.cli.demo import app

    uri, exp = store
    tk.enable(plugins=["buffer"], tracking_uri=uri, experiment=exp, config={"buffer": {"spool_dir": spool_dir}})
    detector = app.build_program(tmp_path / "demo")
    reqs = app.requests(3000)
    t0 = time.perf_counter()
    with dspy.context(lm=app.make_lm()):
        ok, failed = app.run_batch(detector, reqs)
    t1 = time.perf_counter()
    assert tk.flush(600)
    t2 = time.perf_counter()
    c = tk.counters()
    print(f"\n[burst] 3000 demo requests in {t1 - t0:.1f} s; all stored {t2 - t0:.1f} s after the first "
          f"-> {3000 / (t2 - t0):.0f} traces/s; {({k: v for k, v in c.items() if k.startswith('buffer.')})}")
    assert ok + failed == 3000
    ids = store_trace_ids(uri, exp)
    assert len(ids) == len(set(ids)) == 3000
    assert c["buffer.exported"] + c["buffer.replayed"] == 3000


def test_burst_of_3000_write_up_requests_with_user_spans_all_complete_in_the_store(store, spool_dir):
    """The user's MLflow spans around and inside DSPy, all four plugins: every trace, whole, stored once."""
    uri, exp = store
    tk.enable(plugins=["redact", "sample", "cost", "buffer"], tracking_uri=uri, experiment=exp,
              config={"buffer": {"spool_dir": spool_dir}, "sample": {"ratio": 1.0}})
    detect, lm = make_writeup_program()
    t0 = time.perf_counter()
    run_requests(detect, lm, 3000)
    t1 = time.perf_counter()
    assert tk.flush(600)
    t2 = time.perf_counter()
    c = tk.counters()
    print(f"\n[burst, write-up shape] 3000 requests in {t1 - t0:.1f} s; all stored {t2 - t0:.1f} s after the "
          f"first -> {3000 / (t2 - t0):.0f} traces/s; {({k: v for k, v in c.items() if k.startswith('buffer.')})}")
    ids = store_trace_ids(uri, exp)
    assert len(ids) == len(set(ids)) == 3000
    assert span_counts(uri, exp) == {9: 3000}  # user spans and DSPy spans in every trace


def _start_server(db: str, port: int, log) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
        assert proc.poll() is None, "mlflow server exited"
    raise AssertionError("mlflow server did not start within 180 s")


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the server and its uvicorn worker: our own process group
    proc.wait(30)


def test_server_killed_for_30s_mid_run_loses_nothing_and_duplicates_nothing(tmp_path, spool_dir, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the buffer retries, not the client
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    db, port = str(tmp_path / "server.db"), free_port()
    uri = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "ab")  # noqa: SIM115 - kept open for both server runs
    server = _start_server(db, port, log)
    tk.enable(plugins=["buffer"], tracking_uri=uri, experiment="outage",
              config={"buffer": {"spool_dir": spool_dir, "flush_interval": 0.2, "retry_attempts": 3,
                                 "retry_max_backoff": 2.0}})
    program, lm = make_program()
    done = threading.Event()
    sent = [0]

    def traffic():  # steady traffic through the whole outage
        while not done.is_set():
            run_requests(program, lm, 10, prefix=f"t{sent[0]}")
            sent[0] += 10
            time.sleep(0.1)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        time.sleep(5)
        _kill(server)
        killed_at = sent[0]
        time.sleep(30)
        during = sent[0] - killed_at
        server = _start_server(db, port, log)
        time.sleep(3)
    finally:
        done.set()
        worker.join()
    assert tk.flush(300)
    c = tk.counters()
    tk.disable()
    _kill(server)
    print(f"\n[outage] sent {sent[0]} ({during} while the server was down); "
          f"{({k: v for k, v in c.items() if k.startswith('buffer.')})}")
    assert during > 0 and c["buffer.spilled"] > 0
    ids = store_trace_ids(f"sqlite:///{db}", "outage")
    assert len(ids) == sent[0]
    assert len(set(ids)) == sent[0], "a trace was stored twice"


CRASH_CHILD = """
import sys, time
sys.path.insert(0, {here!r})
import buffer_testkit as kit
import dspy_tracekit as tk
tk.enable(plugins=["buffer"], tracking_uri="http://127.0.0.1:{port}", experiment="crash",
          config={{"buffer": {{"spool_dir": {spool!r}, "retry_attempts": 1, "flush_interval": 0.05}}}})
program, lm = kit.make_program()
print("READY", flush=True)
kit.run_requests(program, lm, 100000)
"""


@pytest.mark.parametrize("shape", ["dspy", "write_up"])
def test_process_killed_mid_run_replays_every_spooled_trace_once(tmp_path, store, spool_dir, shape):
    script = tmp_path / "child.py"
    child = CRASH_CHILD if shape == "dspy" else CRASH_CHILD.replace("kit.make_program()", "kit.make_writeup_program()")
    script.write_text(child.format(here=os.path.dirname(__file__), port=free_port(), spool=spool_dir))
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill it while it is still writing
            size = sum(os.path.getsize(os.path.join(spool_dir, f)) for f in os.listdir(spool_dir)
                       if f.endswith(".tks"))
            if size > 2_000_000:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    records = [r for f in sorted(os.listdir(spool_dir)) if f.endswith(".tks")
               for _, r in decode_records(open(os.path.join(spool_dir, f), "rb").read())]  # noqa: SIM115
    good = {r["trace_id"] for r in records if r is not None}
    assert len(good) > 100

    uri, exp = store
    tk.enable(plugins=["buffer"], tracking_uri=uri, experiment=exp, config={"buffer": {"spool_dir": spool_dir}})
    assert tk.flush(600)
    c = tk.counters()
    print(f"\n[crash] {len(good)} spooled traces, {len(records) - len(good)} torn; "
          f"{({k: v for k, v in c.items() if k.startswith('buffer.')})}")
    ids = store_trace_ids(uri, exp)
    assert len(ids) == len(set(ids)) == len(good)
    assert c["buffer.replayed"] == len(good)
    assert span_counts(uri, exp) == {6 if shape == "dspy" else 9: len(good)}
