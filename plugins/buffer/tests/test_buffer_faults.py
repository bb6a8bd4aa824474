"""Crash, bad spool directory and full disk — in real subprocesses, against real stores."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
from buffer_testkit import free_port, make_program, run_requests, store_trace_ids

import dspy_tracekit as tk
from dspy_tracekit.errors import ConfigError

HERE = os.path.dirname(__file__)

#: a traced process whose store (an HTTP URI nobody listens on) refuses connections: every trace is spooled.
CHILD = textwrap.dedent("""
    import os, sys, time, resource, signal
    sys.path.insert(0, {here!r})
    import buffer_testkit as kit
    import dspy_tracekit as tk
    spool, n, fsize = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    tk.enable(plugins=["buffer"], tracking_uri="http://127.0.0.1:{port}", experiment="crash",
              config={{"buffer": {{"spool_dir": spool, "retry_attempts": 1, "flush_interval": 0.05,
                                  "retry_initial_backoff": 0.05, "retry_max_backoff": 0.2}}}})
    program, lm = kit.make_program()
    if fsize:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full disk: writes fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    kit.run_requests(program, lm, n, prefix="crash")
    while True:
        c = tk.counters()
        if c.get("buffer.spilled", 0) + c.get("buffer.dropped.spool_error", 0) >= n:
            break
        time.sleep(0.05)
    print("COUNTERS", {{k: v for k, v in c.items() if k.startswith("buffer.")}}, flush=True)
    if not fsize:
        time.sleep(600)  # wait to be killed
""")


def run_child(tmp_path, spool_dir: str, n: int, fsize: int = 0) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(here=HERE, port=free_port()))
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    return subprocess.Popen([sys.executable, str(script), spool_dir, str(n), str(fsize)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_counters(proc: subprocess.Popen) -> dict:
    for line in proc.stdout:
        if line.startswith("COUNTERS"):
            return eval(line.split(" ", 1)[1])
    proc.wait(5)
    raise AssertionError(f"child exited {proc.returncode}: {proc.stderr.read()[-3000:]}")


def test_sigkilled_process_spool_is_replayed_once_at_next_enable(tmp_path, store, spool_dir):
    proc = run_child(tmp_path, spool_dir, 40)
    try:
        assert read_counters(proc)["buffer.spilled"] == 40
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    [spool_file] = [f for f in os.listdir(spool_dir) if f.endswith(".tks")]
    with open(os.path.join(spool_dir, spool_file), "ab") as f:
        f.write(b"00000400 0badf00d {\"trace_id\": 1, \"spa")  # torn by the kill
    shutil.copy(os.path.join(spool_dir, spool_file), tmp_path / "copy.tks")

    uri, exp = store
    tk.enable(plugins=["buffer"], tracking_uri=uri, experiment=exp, config={"buffer": {"spool_dir": spool_dir}})
    assert tk.flush(60)
    c = tk.counters()
    assert (c["buffer.replayed"], c["buffer.spool_torn"]) == (40, 1)
    assert os.listdir(spool_dir) == []
    tk.disable()

    # the same file again, as if the crash had hit after the store write and before the delete
    shutil.copy(tmp_path / "copy.tks", os.path.join(spool_dir, spool_file))
    tk.enable(plugins=["buffer"], tracking_uri=uri, experiment=exp, config={"buffer": {"spool_dir": spool_dir}})
    assert tk.flush(60)
    c = tk.counters()
    assert (c["buffer.replayed"], c["buffer.replay_skipped_existing"]) == (0, 40)
    ids = store_trace_ids(uri, exp)
    assert len(ids) == len(set(ids)) == 40


@pytest.mark.load
def test_full_disk_is_counted_and_the_program_keeps_running(tmp_path, spool_dir):
    proc = run_child(tmp_path, spool_dir, 20, fsize=64 * 1024)  # room for a handful of traces
    c = read_counters(proc)
    assert proc.wait(60) == 0
    assert c["buffer.dropped.spool_error"] > 0
    assert c["buffer.spilled"] + c["buffer.dropped.spool_error"] == 20
    assert c["buffer.spool_errors"] >= 1


def test_unwritable_spool_dir_is_reported_at_enable_and_tracing_goes_on(tmp_path, store, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    uri, exp = store
    with caplog.at_level(logging.ERROR, logger="dspy_tracekit.buffer"):
        tk.enable(plugins=["buffer"], tracking_uri=uri, experiment=exp,
                  config={"buffer": {"spool_dir": str(blocker / "spool")}})
    assert "buffer.spool_dir" in caplog.text and "not writable" in caplog.text
    program, lm = make_program()
    run_requests(program, lm, 5)
    assert tk.flush(30)
    c = tk.counters()
    assert (c["buffer.spool_unavailable"], c["buffer.exported"]) == (1, 5)
    assert len(store_trace_ids(uri, exp)) == 5


def test_spool_required_turns_an_unwritable_spool_dir_into_a_config_error(tmp_path, store):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"buffer\.spool_dir .* is not writable"):
        tk.enable(plugins=["buffer"], tracking_uri=store[0], experiment=store[1],
                  config={"buffer": {"spool_dir": str(blocker / "spool"), "spool_required": True}})


def test_unreachable_tracking_server_is_transient_even_after_mlflow_cached_its_failed_version_lookup(
        monkeypatch):
    """MLflow's RestStore caches a failed server-version lookup; the store layer must not turn a
    short outage into "log_spans is not supported" (a permanent error: everything dead-lettered)."""
    from mlflow.store.tracking.rest_store import RestStore

    from dspy_tracekit.delivery import is_transient
    from dspy_tracekit.mlflow import plugin as mlflow_core
    from dspy_tracekit.mlflow import store as mlflow_store
    from dspy_tracekit.records import SpanRecord, TraceRecord

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"  # nobody listens: connection refused
    trace = TraceRecord()
    root = SpanRecord(trace, None, "root", "module", "CHAIN", start_ns=1_000_000)
    root.end_ns = 2_000_000
    trace.root, trace.spans = root, [root]
    trace.materialize()
    spans = mlflow_core.to_mlflow_spans(trace)
    for _ in range(2):  # the second call would hit MLflow's cached failure
        with pytest.raises(ConnectionError) as info:
            mlflow_store.log_spans(uri, "0", spans)
        assert is_transient(info.value)
    assert RestStore._get_server_version.cache_info().currsize == 0


EXITING_CHILD = """
import sys
sys.path.insert(0, {here!r})
import buffer_testkit as kit
import dspy_tracekit as tk
tk.enable(plugins=["buffer"], tracking_uri={uri!r}, experiment={exp!r},
          config={{"buffer": {{"spool_dir": {spool!r}, "flush_interval": 30}}}})
program, lm = kit.make_program()
kit.run_requests(program, lm, 25)
# no flush, no disable: the traces wait in the queue (flush_interval 30 s) until the interpreter exits
"""


@pytest.mark.load  # a second interpreter start (~20 s here) would push the default run past its budget
def test_traces_still_queued_at_interpreter_exit_are_stored(tmp_path, store, spool_dir):
    uri, exp = store
    script = tmp_path / "exiting.py"
    script.write_text(EXITING_CHILD.format(here=HERE, uri=uri, exp=exp, spool=spool_dir))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    ids = store_trace_ids(uri, exp)
    assert len(ids) == len(set(ids)) == 25
