"""Fixtures of the sample plugin's tests: real records, a real DSPy program, a real MLflow store."""

from __future__ import annotations

import os
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy
import pytest
from dspy.utils import DummyLM

import dspy_tracekit as tk
from dspy_tracekit.records import SpanRecord, TraceRecord


@pytest.fixture
def make_trace():
    """Build a finished :class:`TraceRecord` the way the core does, without running DSPy.

    ``make_trace(trace_id, spans=[("Prog.forward", "module", {...overrides}), ...])``: the first span
    is the root, the others its children.
    """

    def make(trace_id: int | None = None, spans=(("Prog.forward", "module", {}),), workload="default",
             tags=None, duration_ms: float = 1.0, attributes=None) -> TraceRecord:
        trace = TraceRecord(trace_id)
        trace.workload = workload
        trace.tags.update(tags or {})
        if attributes:
            trace.attributes.update(attributes)
        start = 1_000_000_000
        for i, (name, kind, extra) in enumerate(spans):
            span = SpanRecord(trace, None if i == 0 else trace.spans[0].span_id, name, kind,
                              start_ns=start + i)
            span.end_ns = start + i + 1000
            for key, value in (extra or {}).items():
                setattr(span, key, value)
            if i == 0:
                trace.root = span
                span.tags = dict(tags or {})
            trace.spans.append(span)
        trace.root.end_ns = start + int(duration_ms * 1_000_000)
        return trace

    return make


def head_trace(trace_id: int, workload: str = "default", root_name: str = "Prog.forward", tags=None):
    """A trace as ``tracekit_sample`` sees it: root set, not ended."""
    trace = TraceRecord(trace_id)
    trace.workload = workload
    trace.tags.update(tags or {})
    trace.root = SpanRecord(trace, None, root_name, "module", start_ns=1)
    return trace


@pytest.fixture
def at_head():
    return head_trace


class Classify(dspy.Module):
    """A small intent program: a Predict, a ChainOfThought, and ``loops`` extra Predicts."""

    def __init__(self):
        super().__init__()
        self.intent = dspy.Predict("message -> intent")
        self.answer = dspy.ChainOfThought("message, intent -> answer")
        self.refine = dspy.Predict("draft -> answer")

    def forward(self, message: str, loops: int = 0, fail: bool = False, sleep_s: float = 0.0):
        intent = self.intent(message=message).intent
        out = self.answer(message=message, intent=intent)
        for _ in range(loops):
            out = self.refine(draft=out.answer)
        if sleep_s:
            time.sleep(sleep_s)
        if fail:
            raise RuntimeError("tool backend unavailable")
        return out


@pytest.fixture
def program():
    lm = DummyLM([{"intent": "create_workflow", "reasoning": "because", "answer": "Use the builder."}] * 100_000)
    with dspy.context(lm=lm):
        yield Classify()


@pytest.fixture(scope="session")
def store_uri(tmp_path_factory):
    # One SQLite store for the session (creating MLflow's tables takes seconds); each test writes to
    # experiments of its own.
    return f"sqlite:///{tmp_path_factory.mktemp('sample-store')}/mlflow.db"


@pytest.fixture
def store(store_uri, request):
    """A real MLflow SQLite store; ``store.enable(config)`` turns tracekit on with the sample plugin."""
    prefix = request.node.name

    class Store:
        uri = store_uri

        def experiment(self, name: str) -> str:
            return f"{prefix}/{name}"

        def enable(self, sample: dict | None = None, experiment: str = "sample-tests", plugins=("sample",)):
            tk.enable(plugins=list(plugins), tracking_uri=self.uri, experiment=self.experiment(experiment),
                      config={"sample": sample} if sample is not None else None)

        def disable(self):
            tk.disable()

        def traces(self, experiment: str = "sample-tests"):
            import mlflow

            tk.flush(10.0)
            client = mlflow.MlflowClient(self.uri)
            exp = client.get_experiment_by_name(self.experiment(experiment))
            if exp is None:
                return []
            out, token = [], None
            while True:
                page = client.search_traces(locations=[exp.experiment_id], max_results=500, page_token=token)
                out.extend(page)
                token = page.token
                if not token:
                    return out

    yield Store()
    tk.disable()

