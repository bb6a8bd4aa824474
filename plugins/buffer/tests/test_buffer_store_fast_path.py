"""The store fast path (``dspy_tracekit.mlflow_store``) writes exactly the rows MLflow's log_spans writes.

Same spans, two copies of one migrated SQLite store: one written by ``TracingClient.log_spans``, one by
the fast path; every table is compared row by row, and MLflow's readers are checked on the fast one.
"""

from __future__ import annotations

import shutil
import sqlite3

import dspy
from buffer_testkit import make_program

import dspy_tracekit as tk
from dspy_tracekit import hookimpl, mlflow_core, mlflow_store
from dspy_tracekit.records import TraceRecord


class Capture:
    def __init__(self):
        self.dicts = []

    @hookimpl
    def tracekit_process_trace(self, trace):
        for span in trace.spans:
            if span.kind == "lm":
                span.cost = {"input_cost": 0.001, "output_cost": 0.002, "total_cost": 0.003}
        self.dicts.append(trace.to_dict())


def _traces(tmp_path, store):
    capture = Capture()
    tk.enable(plugins=[capture], tracking_uri=store[0], experiment="capture")
    lm = dspy.LM("openai/gpt-4o-mini", cache=False, api_key="x",
                 mock_response="[[ ## reasoning ## ]]\nr\n\n[[ ## intent ## ]]\nbuy ü\n\n[[ ## completed ## ]]")
    program, _ = make_program()
    with dspy.context(lm=lm):
        with tk.context(session_id="s-1", user_id="u-7", user_role="admin"):
            program(message="hello, I want to buy")
        program(message="no context here")
    assert tk.flush(30)
    tk.disable()
    return [TraceRecord.from_dict(d) for d in capture.dicts]


WRITE_TIME = {"creation_time", "last_update_time", "enqueued_at_ms", "created_at_ms", "updated_at_ms"}


def _dump(path) -> dict[str, list]:
    con = sqlite3.connect(path)
    tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
    out = {}
    for table in tables:
        if table == "alembic_version":
            continue
        cols = [r[1] for r in con.execute(f"pragma table_info({table})")]
        rows = con.execute(f"select * from {table}").fetchall()
        # wall-clock time of the write itself differs between the two runs
        out[table] = sorted((tuple((c, v) for c, v in zip(cols, r) if c not in WRITE_TIME) for r in rows),
                            key=repr)
    con.close()
    return out


def test_fast_path_writes_the_same_rows_as_mlflow_log_spans(tmp_path, store, _template_db):
    from mlflow.tracking import MlflowClient

    traces = _traces(tmp_path, store)
    assert len(traces) == 2
    spans = [s for t in traces for s in mlflow_core.to_mlflow_spans(t)]
    paths = []
    for name in ("reference", "fast"):
        path = tmp_path / f"{name}.db"
        shutil.copy(_template_db, path)
        paths.append(path)
        uri = f"sqlite:///{path}"
        exp = MlflowClient(uri).create_experiment("same", artifact_location="/tmp/same-artifacts")
        client = mlflow_store.tracing_client(uri)
        if name == "reference":
            client.log_spans(exp, spans)
        else:
            assert mlflow_store._fast_insert(client.store, exp, spans) is True
            assert mlflow_store._fast_insert(client.store, exp, spans) is False  # exists: log_spans' job
    reference, fast = (_dump(p) for p in paths)
    assert reference.keys() == fast.keys()
    for table in reference:
        assert fast[table] == reference[table], table
    assert len(fast["spans"]) == 12 and len(fast["trace_info"]) == 2

    client = MlflowClient(f"sqlite:///{paths[1]}")
    got = client.get_trace(traces[0].mlflow_trace_id)
    assert len(got.data.spans) == 6
    assert got.info.token_usage["total_tokens"] == 30
    assert got.info.tags["user_role"] == "admin"
    found = client.search_traces(locations=[exp], filter_string="metadata.`mlflow.trace.user` = 'u-7'")
    assert [t.info.trace_id for t in found] == [traces[0].mlflow_trace_id]
