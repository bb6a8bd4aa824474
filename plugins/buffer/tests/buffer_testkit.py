"""Helpers of the buffer plugin's tests: a small real DSPy program, store queries, free ports."""

from __future__ import annotations

import os
import socket

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")

import dspy


class IntentDetector(dspy.Module):
    """Module → ChainOfThought → Predict → adapter format → LM → adapter parse: 6 spans per request."""

    def __init__(self):
        super().__init__()
        self.classify = dspy.ChainOfThought("message -> intent")

    def forward(self, message: str):
        return self.classify(message=message)


def make_program():
    """The program and an offline LM that always answers (DummyLM walks a long list of one answer)."""
    lm = dspy.utils.DummyLM([{"reasoning": "the user wants a workflow", "intent": "create_workflow"}] * 1_000_000)
    return IntentDetector(), lm


def make_writeup_program():
    """The write-up's shape: the user's ``@mlflow.trace`` root, a RETRIEVER ``@mlflow.trace`` with a
    ``database_query`` ``mlflow.start_span`` inside, then the ChainOfThought: 9 spans per request."""
    import mlflow

    @mlflow.trace(name="get_workflow_templates", span_type="RETRIEVER")
    def get_workflow_templates(module):
        with mlflow.start_span("database_query", span_type="TOOL") as span:
            span.set_inputs({"module": module})
            span.set_outputs({"rows": 2})
        return ["create", "run"]

    class WriteUpDetector(dspy.Module):
        def __init__(self):
            super().__init__()
            self.classify = dspy.ChainOfThought("message -> intent")

        def forward(self, message: str):
            get_workflow_templates("workflows")
            return self.classify(message=message)

    detector = WriteUpDetector()

    @mlflow.trace(name="dspy_intent_detection")
    def detect(message: str):
        return detector(message=message)

    return detect, make_program()[1]


def run_requests(program, lm, n: int, prefix: str = "m") -> None:
    with dspy.context(lm=lm):
        for i in range(n):
            program(message=f"{prefix}-{i}: help me create a workflow")


def store_trace_ids(tracking_uri: str, experiment: str) -> list[str]:
    """Every trace id in the experiment (with repeats if the store held duplicates)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    ids: list[str] = []
    token = None
    while True:
        page = client.search_traces(locations=[exp.experiment_id], max_results=500, page_token=token,
                                    include_spans=False)
        ids.extend(t.info.trace_id for t in page)
        token = page.token
        if not token:
            break
    del mlflow
    return ids


def span_counts(tracking_uri: str, experiment: str) -> dict[int, int]:
    """{spans per trace: number of traces} of an experiment, read with one SQL query (SQLite stores)."""
    import sqlite3

    from mlflow.tracking import MlflowClient

    exp = MlflowClient(tracking_uri).get_experiment_by_name(experiment)
    with sqlite3.connect(tracking_uri.removeprefix("sqlite:///")) as db:
        rows = db.execute("SELECT n, COUNT(*) FROM (SELECT COUNT(*) AS n FROM spans WHERE experiment_id = ? "
                          "GROUP BY trace_id) GROUP BY n", (int(exp.experiment_id),)).fetchall()
    return dict(rows)


def span_count(tracking_uri: str, trace_id: str) -> int:
    from mlflow.tracking import MlflowClient

    return len(MlflowClient(tracking_uri).get_trace(trace_id).data.spans)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


