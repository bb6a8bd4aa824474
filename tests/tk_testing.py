"""Helpers for the core tests (importable as ``tk_testing``: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import dspy

import dspy_tracekit as tk


class TraceReader:
    def __init__(self, uri: str, experiment: str):
        self.uri = uri
        self.experiment = experiment

    def traces(self):
        from mlflow.tracking import MlflowClient

        tk.flush(30)
        client = MlflowClient(self.uri)
        exp = client.get_experiment_by_name(self.experiment)
        if exp is None:
            return []
        infos = client.search_traces(locations=[exp.experiment_id], max_results=1000,
                                     order_by=["timestamp_ms ASC"])
        return [client.get_trace(t.info.trace_id) for t in infos]

    def one(self):
        traces = self.traces()
        assert len(traces) == 1, f"expected one trace, got {len(traces)}"
        return traces[0]


def tree_of(trace) -> dict:
    """{span name: parent span name} of a stored trace."""
    by_id = {s.span_id: s for s in trace.data.spans}
    return {s.name: (by_id[s.parent_id].name if s.parent_id else None) for s in trace.data.spans}


class IntentSig(dspy.Signature):
    """Classify the message."""

    message: str = dspy.InputField()
    intent: str = dspy.OutputField()


class Pipeline(dspy.Module):
    def __init__(self):
        super().__init__()
        self.classify = dspy.ChainOfThought(IntentSig)

    def forward(self, message):
        return self.classify(message=message)


def dummy_lm(n=20, **answer):
    answer = answer or {"reasoning": "because", "intent": "create_workflow"}
    return dspy.utils.DummyLM([answer] * n)


def mock_lm(text="[[ ## reasoning ## ]]\nr\n\n[[ ## intent ## ]]\nrun_agent\n\n[[ ## completed ## ]]", **kw):
    return dspy.LM("openai/gpt-4o-mini", cache=False, api_key="sk-test-not-a-real-key-000000", mock_response=text,
                   **kw)
