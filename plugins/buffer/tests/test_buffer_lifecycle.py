"""disable() and interpreter exit with a slow or unreachable store: every queued trace is stored,
spooled or counted — none dropped while the spool can take it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import dspy_tracekit_buffer
import pytest
from buffer_testkit import free_port, make_program, run_requests, store_trace_ids

import dspy_tracekit as tk
from dspy_tracekit import hookimpl

HERE = os.path.dirname(__file__)


class SlowStore:
    """A second exporter beside the core's that takes 0.25 s per batch: the store is slow."""

    @hookimpl
    def tracekit_export_traces(self, traces):
        time.sleep(0.25)


def dropped(counters: dict) -> dict:
    return {k: v for k, v in counters.items() if k.startswith("dropped.") and v}


def test_disable_with_a_slow_store_exports_or_spools_every_queued_trace(store, spool_dir):
    uri, exp = store
    tk.enable(plugins=["buffer", SlowStore()], tracking_uri=uri, experiment=exp,
              config={"buffer": {"batch_size": 1, "flush_interval": 30, "spool_dir": spool_dir}})
    program, lm = make_program()
    run_requests(program, lm, 20)
    buf = dspy_tracekit_buffer.current()
    tk.disable(timeout=1.0)  # 20 batches x 0.25 s do not fit in 1 s
    c = buf.counters()
    assert dropped(c) == {}
    assert c["exported"] + c["spilled"] + c.get("shutdown_in_flight", 0) == 20
    assert c["spilled"] > 0
    assert len(store_trace_ids(uri, exp)) >= c["exported"]


def test_disable_with_the_store_down_spools_the_queue_and_counts_the_batch_in_flight(spool_dir, monkeypatch):
    # MLflow's default HTTP retries (minutes) hold the worker inside one export call
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    tk.enable(plugins=["buffer"], tracking_uri=f"http://127.0.0.1:{free_port()}", experiment="down",
              config={"buffer": {"batch_size": 50, "flush_interval": 0.05, "spool_dir": spool_dir}})
    program, lm = make_program()
    run_requests(program, lm, 20)
    buf = dspy_tracekit_buffer.current()
    deadline = time.monotonic() + 30
    while buf.counters()["queue_depth"] and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker took the first batch and is stuck retrying it
    run_requests(program, lm, 180, prefix="late")
    tk.disable(timeout=0.5)
    c = buf.counters()
    assert dropped(c) == {}
    assert c["shutdown_in_flight"] > 0  # held by MLflow's retries: counted, outcome unknown
    assert c["shutdown_in_flight"] + c["spilled"] == 200


EXITING_CHILD = """
import sys, time
sys.path.insert(0, {here!r})
import buffer_testkit as kit
import dspy_tracekit as tk
from dspy_tracekit import hookimpl

class SlowStore:  # slow after each batch is stored: whatever the exit cuts short is already in the store
    @hookimpl
    def tracekit_traces_exported(self, traces):
        time.sleep(0.25)

tk.enable(plugins=["buffer", SlowStore()], tracking_uri={uri!r}, experiment={exp!r},
          config={{"buffer": {{"spool_dir": {spool!r}, "flush_interval": 30, "batch_size": 1,
                               "exit_timeout": 0.25}}}})
program, lm = kit.make_program()
kit.run_requests(program, lm, 20)
# no disable: at exit the buffer has exit_timeout (0.25 s), not flush_timeout (10 s), for 20 x 0.25 s of work
"""


@pytest.mark.load  # a second interpreter start (~20 s here) would push the default run past its budget
def test_exit_timeout_bounds_the_flush_at_interpreter_exit_and_the_rest_is_spooled(tmp_path, store, spool_dir):
    uri, exp = store
    script = tmp_path / "exiting.py"
    script.write_text(EXITING_CHILD.format(here=HERE, uri=uri, exp=exp, spool=spool_dir))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    at_exit = len(store_trace_ids(uri, exp))
    assert at_exit < 20  # the core's 10 s flush_timeout would have exported all 20
    # nothing lost: the next process replays what the exiting one spooled
    tk.enable(plugins=["buffer"], tracking_uri=uri, experiment=exp, config={"buffer": {"spool_dir": spool_dir}})
    assert tk.flush(60)
    ids = store_trace_ids(uri, exp)
    assert len(ids) == len(set(ids)) == 20
