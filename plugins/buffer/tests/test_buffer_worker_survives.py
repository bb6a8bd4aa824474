"""The buffer's worker never dies: a trace that cannot be written anywhere is counted, later ones are stored."""

from __future__ import annotations

import json
import os
import threading

from buffer_testkit import free_port, make_program, run_requests, store_trace_ids

import dspy_tracekit as tk


@tk.trace(name="lookup", span_type="TOOL")
def lookup(payload: str) -> str:
    return payload


def test_lone_surrogate_in_a_value_is_stored_as_text_and_later_traces_too(store, spool_dir):
    uri, experiment = store
    tk.enable(plugins=["buffer"], tracking_uri=uri, experiment=experiment,
              config={"buffer": {"spool_dir": spool_dir, "retry_initial_backoff": 0.01}})
    program, lm = make_program()
    lookup(payload="\udc80")  # not valid Unicode: stored as the text \udc80 (a marker value, counted)
    assert tk.flush(30)
    run_requests(program, lm, 5)
    assert tk.flush(30)
    counters = tk.counters()
    assert counters.get("buffer.dead_lettered", 0) == 0
    assert counters["core.values_marked.surrogates"] == 2  # the input and the output (lookup returns it)
    assert len(store_trace_ids(uri, experiment)) == 6
    assert "dspy-tracekit-buffer" in [t.name for t in threading.enumerate()]


def test_lone_surrogate_in_a_span_name_is_dead_lettered_and_later_traces_are_stored(store, spool_dir):
    uri, experiment = store
    tk.enable(plugins=["buffer"], tracking_uri=uri, experiment=experiment,
              config={"buffer": {"spool_dir": spool_dir, "retry_initial_backoff": 0.01}})
    program, lm = make_program()
    with tk.span("lookup \udc80", span_type="TOOL"):  # a name is not a value: the store refuses it
        pass
    assert tk.flush(30)
    run_requests(program, lm, 5)
    assert tk.flush(30)
    counters = tk.counters()
    assert counters["buffer.dead_lettered"] == 1
    assert len(store_trace_ids(uri, experiment)) == 5
    assert "dspy-tracekit-buffer" in [t.name for t in threading.enumerate()]
    with open(os.path.join(spool_dir, "dead-letter.jsonl"), "rb") as fh:
        entry = json.loads(fh.readline())
    assert "\udc80" in json.dumps(entry["trace"], ensure_ascii=False)  # read back as it was


def test_lone_surrogate_spooled_while_the_store_is_down_reads_back(tmp_path, spool_dir, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own setting: the buffer retries
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens: the store is down, traces go to the spool
    tk.enable(plugins=["buffer"], tracking_uri=uri, experiment="down",
              config={"buffer": {"spool_dir": spool_dir, "retry_attempts": 1, "retry_initial_backoff": 0.01}})
    program, lm = make_program()
    lookup(payload="\udc80")
    tk.flush(3)
    run_requests(program, lm, 3)
    tk.flush(3)
    counters = tk.counters()
    assert counters["buffer.spilled"] == 4
    assert counters.get("buffer.worker_errors", 0) == 0
    assert "dspy-tracekit-buffer" in [t.name for t in threading.enumerate()]
