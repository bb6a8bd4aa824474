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


def span_count(tracking_uri: str, trace_id: str) -> int:
    from mlflow.tracking import MlflowClient

    return len(MlflowClient(tracking_uri).get_trace(trace_id).data.spans)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


