"""The buffer end to end: real DSPy program, real SQLite MLflow store, real plugins in the pipeline.

Faults are injected by small plugins registered next to the MLflow core (an exporter that refuses
for a while, a gate that holds the worker): the store itself is never mocked.
"""

from __future__ import annotations

import glob
import json
import os
import pathlib
import threading

import pytest
from buffer_testkit import make_program, run_requests, span_count, store_trace_ids
from dspy_tracekit_buffer import current

import dspy_tracekit as tk
from dspy_tracekit import delivery, hookimpl
from dspy_tracekit.records import TraceRecord


def counters() -> dict:
    return {k.removeprefix("buffer."): v for k, v in tk.counters().items() if k.startswith("buffer.")}


class Gate:
    """Holds the buffer's worker inside ``prepare`` until opened, so that the queue fills up."""

    def __init__(self):
        self.open = threading.Event()

    @hookimpl
    def tracekit_process_trace(self, trace):
        if threading.current_thread().name == "dspy-tracekit-buffer":
            self.open.wait(30)


class Masker:
    """A stand-in for redaction: replaces every span's inputs and outputs."""

    @hookimpl
    def tracekit_process_trace(self, trace):
        for span in trace.spans:
            span.inputs = {"masked": True}
            span.outputs = {"masked": True}


class FlakyStore:
    """An exporter that refuses with ConnectionRefusedError while ``down`` (called before the MLflow core)."""

    def __init__(self, down: bool = True, failures: int | None = None):
        self.down = down
        self.failures = failures
        self.calls = 0

    @hookimpl
    def tracekit_export_traces(self, traces):
        self.calls += 1
        if self.failures is not None:
            if self.calls <= self.failures:
                raise ConnectionRefusedError(111, "Connection refused")
            return
        if self.down:
            raise ConnectionRefusedError(111, "Connection refused")


class Poison:
    """Refuses, permanently, any trace whose request mentions 'poison'."""

    @hookimpl
    def tracekit_export_traces(self, traces):
        for t in traces:
            if "poison" in json.dumps(t.root.inputs):
                raise ValueError(f"malformed trace {t.mlflow_trace_id}")


FAST = {"flush_interval": 0.05, "retry_initial_backoff": 0.01, "retry_max_backoff": 0.05}


def enable(store, spool_dir, *extra, **cfg):
    uri, exp = store
    tk.enable(plugins=["buffer", *extra], tracking_uri=uri, experiment=exp,
              config={"buffer": {"spool_dir": spool_dir, **FAST, **cfg}})


def assert_stored_once(store, n: int) -> list[str]:
    ids = store_trace_ids(*store)
    assert len(ids) == n
    assert len(set(ids)) == n, "a trace was stored twice"
    return ids


def test_burst_of_300_requests_is_stored_once_each(store, spool_dir):
    enable(store, spool_dir)
    program, lm = make_program()
    run_requests(program, lm, 300)
    assert tk.flush(60)
    c = counters()
    assert (c["queued"], c["exported"], c["spilled"]) == (300, 300, 0)
    ids = assert_stored_once(store, 300)
    assert span_count(store[0], ids[0]) == 6


def test_overflow_spills_redacted_traces_to_disk_and_replays_them(store, spool_dir):
    gate = Gate()
    enable(store, spool_dir, Masker(), gate, max_traces=10, batch_size=10)
    program, lm = make_program()
    run_requests(program, lm, 60, prefix="secret-customer-text")
    for _ in range(400):  # the spiller runs on its own thread: wait for it to write
        c = counters()
        if c["spilled"] + c.get("dropped.spill_queue_full", 0) >= 40 and c["spill_queue_depth"] == 0:
            break
        threading.Event().wait(0.05)
    spooled = b"".join(pathlib.Path(p).read_bytes() for p in glob.glob(os.path.join(spool_dir, "*.tks")))
    assert spooled.count(b"\n") >= 40, (tk.counters(), [t.name for t in threading.enumerate()])
    assert b"secret-customer-text" not in spooled and b'"masked":true' in spooled
    gate.open.set()
    assert tk.flush(60)
    c = counters()
    assert c["spilled"] >= 40 and c["replayed"] == c["spilled"]
    assert c["exported"] + c["replayed"] == 60
    assert_stored_once(store, 60)


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
def test_drop_policies_count_every_refused_trace(store, spool_dir, policy):
    gate = Gate()
    enable(store, spool_dir, gate, overflow=policy, max_traces=5, batch_size=5)
    program, lm = make_program()
    run_requests(program, lm, 30)
    gate.open.set()
    assert tk.flush(60)
    c = counters()
    assert c["dropped.queue_full"] >= 15
    assert c["exported"] + c["dropped.queue_full"] == 30
    assert_stored_once(store, c["exported"])


def test_block_policy_waits_then_counts_a_timeout(store, spool_dir):
    gate = Gate()
    enable(store, spool_dir, gate, overflow="block", max_traces=2, batch_size=2, block_timeout=0.02)
    program, lm = make_program()
    run_requests(program, lm, 10)
    gate.open.set()
    assert tk.flush(60)
    c = counters()
    assert c["dropped.block_timeout"] >= 1
    assert c["exported"] + c["dropped.block_timeout"] == 10
    assert_stored_once(store, c["exported"])


def test_transient_errors_are_retried_and_nothing_is_lost(store, spool_dir):
    flaky = FlakyStore(failures=3)
    enable(store, spool_dir, flaky, retry_attempts=5)
    program, lm = make_program()
    run_requests(program, lm, 20)
    assert tk.flush(30)
    c = counters()
    assert c["retried"] >= 3 and c["spilled"] == 0
    assert_stored_once(store, 20)


def test_store_outage_spools_then_replays_when_the_store_is_back(store, spool_dir):
    flaky = FlakyStore(down=True)
    enable(store, spool_dir, flaky, retry_attempts=2, batch_size=10)
    program, lm = make_program()
    run_requests(program, lm, 50)
    assert tk.flush(1.0) is False  # the store is down: traces are pending, on disk
    assert counters()["spool_pending"] > 0
    flaky.down = False
    assert tk.flush(30)
    c = counters()
    assert c["spilled"] == 50 - c["exported"] and c["replayed"] == c["spilled"]
    assert c["store_unavailable_events"] >= 1
    assert_stored_once(store, 50)


def test_permanent_error_dead_letters_only_the_refused_trace(store, spool_dir):
    enable(store, spool_dir, Poison(), batch_size=50)
    program, lm = make_program()
    run_requests(program, lm, 10)
    run_requests(program, lm, 1, prefix="poison")
    assert tk.flush(30)
    c = counters()
    assert (c["exported"], c["dead_lettered"]) == (10, 1)
    assert_stored_once(store, 10)
    [line] = pathlib.Path(spool_dir, "dead-letter.jsonl").read_text().splitlines()
    entry = json.loads(line)
    assert "ValueError: malformed trace" in entry["error"]
    assert "poison" in json.dumps(entry["trace"]["spans"][0]["inputs"])


class Capture:
    def __init__(self):
        self.dicts = []

    @hookimpl
    def tracekit_process_trace(self, trace):
        self.dicts.append(trace.to_dict())


def test_writing_a_trace_twice_keeps_one_trace_with_the_same_spans_and_usage(store, spool_dir):
    """The replay relies on this as a second line of defence (it also skips ids already stored)."""
    import dspy
    from mlflow.tracking import MlflowClient

    capture = Capture()
    enable(store, spool_dir, capture)
    lm = dspy.LM("openai/gpt-4o-mini", cache=False, api_key="x",
                 mock_response="[[ ## reasoning ## ]]\nr\n\n[[ ## intent ## ]]\nbuy\n\n[[ ## completed ## ]]")
    program, _ = make_program()
    with dspy.context(lm=lm):
        program(message="hello")
    assert tk.flush(30)
    [tid] = assert_stored_once(store, 1)
    before = MlflowClient(store[0]).get_trace(tid)
    delivery.export([TraceRecord.from_dict(capture.dicts[0])])
    after = MlflowClient(store[0]).get_trace(tid)
    assert_stored_once(store, 1)
    assert len(after.data.spans) == len(before.data.spans) == 6
    assert after.info.token_usage == before.info.token_usage
    assert before.info.token_usage["total_tokens"] == 30


def test_forked_child_gets_a_working_buffer_and_the_parent_keeps_its_own(store, spool_dir):
    enable(store, spool_dir)
    program, lm = make_program()
    run_requests(program, lm, 5, prefix="parent")
    assert tk.flush(30)
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            run_requests(program, lm, 7, prefix="child")
            ok = tk.flush(30)
            code = 0 if ok and counters()["exported"] == 7 else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    run_requests(program, lm, 3, prefix="parent2")
    assert tk.flush(30)
    assert counters()["exported"] == 8
    assert_stored_once(store, 15)
    assert current() is not None
