"""MLflow's own spans and ours form one trace, whichever wraps which."""

from __future__ import annotations

import dspy
import mlflow

import dspy_tracekit as tk

from tk_testing import Pipeline, dummy_lm, tree_of


def _use_store(traced):
    mlflow.set_tracking_uri(traced.uri)
    mlflow.set_experiment(traced.experiment)


def test_dspy_call_inside_user_mlflow_trace_is_one_trace(traced):
    _use_store(traced)
    dspy.configure(lm=dummy_lm())

    @mlflow.trace(name="handle_request", span_type="CHAIN")
    def handle_request(message):
        return Pipeline()(message=message).intent

    assert handle_request("hi") == "create_workflow"
    mlflow.flush_trace_async_logging()
    trace = traced.one()
    tree = tree_of(trace)
    assert tree["handle_request"] is None
    assert tree["Pipeline.forward"] == "handle_request"
    assert tree["DummyLM.__call__"] == "Predict.forward"
    assert len(trace.data.spans) == 7
    lm = next(s for s in trace.data.spans if s.name == "DummyLM.__call__")
    assert lm.span_type == "CHAT_MODEL"


def test_user_mlflow_span_inside_dspy_forward_nests_under_it(traced):
    _use_store(traced)
    dspy.configure(lm=dummy_lm())

    class WithUserSpans(dspy.Module):
        def __init__(self):
            super().__init__()
            self.classify = dspy.Predict("message -> intent")

        def forward(self, message):
            with mlflow.start_span("user_lookup", span_type="RETRIEVER") as s:
                s.set_inputs({"q": message})
                s.set_outputs({"hits": 3})
            return self.classify(message=message)

    @mlflow.trace(name="user_tool")
    def user_tool(x):
        return x * 2

    def tool_fn(x: int) -> int:
        """Doubles x via the user's traced helper."""
        return user_tool(x)

    WithUserSpans()(message="hello")
    mlflow.flush_trace_async_logging()
    trace = traced.one()
    tree = tree_of(trace)
    assert tree["WithUserSpans.forward"] is None
    assert tree["user_lookup"] == "WithUserSpans.forward"
    assert tree["Predict.forward"] == "WithUserSpans.forward"
    lookup = next(s for s in trace.data.spans if s.name == "user_lookup")
    assert lookup.inputs == {"q": "hello"}
    root = trace.data.spans[0]
    assert root.start_time_ns <= lookup.start_time_ns <= lookup.end_time_ns <= root.end_time_ns

    tool = dspy.Tool(tool_fn)
    assert tool(x=4) == 8
    mlflow.flush_trace_async_logging()
    tool_trace = next(t for t in traced.traces() if t.data.spans[0].name == "tool_fn")
    assert tree_of(tool_trace)["user_tool"] == "tool_fn"


def test_traces_without_mlflow_api_do_not_materialize_live_spans(traced):
    dspy.configure(lm=dummy_lm())
    Pipeline()(message="x")
    counters = tk.counters()
    assert counters.get("core.traces_exported") == 1
    assert "core.traces_exported_live" not in counters
