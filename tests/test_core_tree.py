"""The trace tree: nesting, span types, LM details, context tags, search."""

from __future__ import annotations

import json

import dspy
import mlflow
import pytest
from tk_testing import Pipeline, dummy_lm, mock_lm, tree_of

import dspy_tracekit as tk


def test_nested_modules_form_one_tree_with_mlflow_span_types(traced):
    dspy.configure(lm=dummy_lm())
    Pipeline()(message="make a workflow")
    trace = traced.one()
    tree = tree_of(trace)
    assert tree == {
        "Pipeline.forward": None,
        "ChainOfThought.forward": "Pipeline.forward",
        "Predict.forward": "ChainOfThought.forward",
        "ChatAdapter.format": "Predict.forward",
        "DummyLM.__call__": "Predict.forward",
        "ChatAdapter.parse": "Predict.forward",
    }
    types = {s.name: s.span_type for s in trace.data.spans}
    assert types == {"Pipeline.forward": "CHAIN", "ChainOfThought.forward": "CHAIN", "Predict.forward": "LLM",
                     "ChatAdapter.format": "PARSER", "DummyLM.__call__": "CHAT_MODEL", "ChatAdapter.parse": "PARSER"}
    root = trace.data.spans[0]
    assert root.inputs == {"message": "make a workflow"}
    assert root.outputs == {"reasoning": "because", "intent": "create_workflow"}
    assert trace.info.state.value == "OK"


def test_lm_span_records_model_params_usage_and_messages(traced):
    dspy.configure(lm=mock_lm(temperature=0.3, max_tokens=99))
    Pipeline()(message="run it")
    lm_span = next(s for s in traced.one().data.spans if s.span_type == "CHAT_MODEL")
    assert lm_span.name == "LM.__call__"
    attrs = lm_span.attributes
    assert attrs["mlflow.llm.model"] == "openai/gpt-4o-mini"
    assert attrs["mlflow.llm.provider"] == "openai"
    assert attrs["temperature"] == 0.3 and attrs["max_tokens"] == 99
    assert attrs["mlflow.chat.tokenUsage"] == {"input_tokens": 10, "output_tokens": 20, "total_tokens": 30}
    assert lm_span.inputs["messages"][-1]["role"] == "user"
    assert "run it" in lm_span.inputs["messages"][-1]["content"]
    assert "run_agent" in json.dumps(lm_span.outputs)


def test_trace_token_usage_is_aggregated_by_mlflow(traced):
    dspy.configure(lm=mock_lm())
    Pipeline()(message="a")
    trace = traced.one()
    assert trace.info.token_usage["total_tokens"] == 30


def test_context_tags_reach_every_span_and_the_trace(traced):
    dspy.configure(lm=dummy_lm())
    with tk.context(user_role="admin", current_module="workflows", tab="editor", session_id="s-1", user_id="u-7"):
        Pipeline()(message="x")
    trace = traced.one()
    assert trace.info.tags["user_role"] == "admin"
    assert trace.info.tags["tab"] == "editor"
    assert trace.info.request_metadata.get("mlflow.trace.user") == "u-7"
    assert trace.info.request_metadata.get("mlflow.trace.session") == "s-1" or \
        getattr(trace.info, "session_id", None) == "s-1" or trace.info.tags.get("session_id") == "s-1"
    for s in trace.data.spans:
        assert s.attributes["tracekit.context.current_module"] == "workflows"


def test_module_path_names_the_attribute_that_holds_each_module(traced):
    dspy.configure(lm=dummy_lm())
    Pipeline()(message="x")
    paths = {s.name: s.attributes.get("tracekit.module_path") for s in traced.one().data.spans}
    assert paths["Predict.forward"] == "Pipeline.classify.predict"
    assert paths["DummyLM.__call__"] == "Pipeline.classify.predict"


def test_search_traces_by_span_name_finds_our_traces(traced):
    dspy.configure(lm=dummy_lm())
    Pipeline()(message="x")
    dspy.Predict(IntentOnly)(message="y")
    traced.traces()
    mlflow.set_tracking_uri(traced.uri)
    exp = mlflow.get_experiment_by_name(traced.experiment)
    found = mlflow.search_traces(locations=[exp.experiment_id], filter_string="span.name = 'Pipeline.forward'",
                                 return_type="list")
    assert len(found) == 1
    assert found[0].data.spans[0].name == "Pipeline.forward"


class IntentOnly(dspy.Signature):
    """Classify."""

    message: str = dspy.InputField()
    intent: str = dspy.OutputField()


def test_react_with_tools_is_an_agent_with_tool_spans(traced):
    def lookup_order(order_id: str) -> str:
        """Look up an order."""
        return f"order {order_id} shipped"

    react = dspy.ReAct("question -> answer", tools=[lookup_order], max_iters=3)
    dspy.configure(lm=dspy.utils.DummyLM([
        {"next_thought": "look it up", "next_tool_name": "lookup_order", "next_tool_args": {"order_id": "A1"}},
        {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}},
        {"reasoning": "found", "answer": "shipped"},
    ]))
    react(question="where is A1?")
    trace = traced.one()
    types = {s.name: s.span_type for s in trace.data.spans}
    assert types["ReAct.forward"] == "AGENT"
    tool = next(s for s in trace.data.spans if s.name == "lookup_order")
    assert tool.span_type == "TOOL"
    assert tool.outputs == "order A1 shipped"
    assert tree_of(trace)["lookup_order"] == "ReAct.forward"


def test_retriever_and_embedder_spans(traced):
    def embed(texts):
        return [[float(len(t)), float(t.count("a")), 1.0] for t in texts]

    embedder = dspy.Embedder(embed)
    search = dspy.retrievers.Embeddings(corpus=["alpha", "beta", "gamma delta"], embedder=embedder, k=2)
    with tk.span("lookup", span_type="CHAIN"):
        search("alphabet")
    lookup = next(t for t in traced.traces() if t.data.spans[0].name == "lookup")
    types = {s.name: s.span_type for s in lookup.data.spans}
    assert types["Embeddings.__call__"] == "RETRIEVER"
    assert types["Embedder.__call__"] == "EMBEDDING"
    assert tree_of(lookup)["Embedder.__call__"] == "Embeddings.__call__"
    retrieved = next(s for s in lookup.data.spans if s.name == "Embeddings.__call__")
    assert len(retrieved.outputs["passages"]) == 2 and set(retrieved.outputs["passages"]) <= {"alpha", "beta", "gamma delta"}


def test_error_reaches_user_unchanged_and_is_recorded(traced):
    class Boom(Exception):
        pass

    err = Boom("broken tool")

    class Failing(dspy.Module):
        def forward(self, x):
            raise err

    with pytest.raises(Boom) as info:
        Failing()(x=1)
    assert info.value is err
    trace = traced.one()
    span = trace.data.spans[0]
    assert trace.info.state.value == "ERROR"
    assert span.status.status_code.value == "ERROR"
    assert span.events[0].name == "exception"
    assert span.events[0].attributes["exception.type"] == "Boom"
    assert span.events[0].attributes["exception.message"] == "broken tool"


def test_results_are_identical_with_and_without_tracing(store_uri, experiment_name):
    def run():
        dspy.configure(lm=dummy_lm())
        return Pipeline()(message="same")

    untraced = run()
    tk.enable(plugins=[], tracking_uri=store_uri, experiment=experiment_name)
    traced_result = run()
    tk.disable()
    assert repr(untraced) == repr(traced_result)
    assert untraced.toDict() == traced_result.toDict()


def test_user_callback_still_fires(traced):
    from dspy.utils.callback import BaseCallback

    seen = []

    class Recorder(BaseCallback):
        def on_module_start(self, call_id, instance, inputs):
            seen.append(("module", type(instance).__name__))

        def on_lm_end(self, call_id, outputs, exception=None):
            seen.append(("lm_end", exception is None))

    dspy.configure(lm=dummy_lm(), callbacks=[Recorder()])
    Pipeline()(message="x")
    assert ("module", "Pipeline") in seen and ("lm_end", True) in seen
    assert len(traced.one().data.spans) == 6


def test_dspy_retrieve_is_a_retriever_span(traced):
    class Passage:
        def __init__(self, text):
            self.long_text = text

    def rm(query, k=3, **kwargs):
        return [Passage(f"{query} passage {i}") for i in range(k)]

    dspy.configure(rm=rm)
    try:
        result = dspy.Retrieve(k=2)("refund policy")
    finally:
        dspy.configure(rm=None)
    assert result.passages == ["refund policy passage 0", "refund policy passage 1"]
    span = traced.one().data.spans[0]
    assert span.name == "Retrieve.forward" and span.span_type == "RETRIEVER"
    assert span.inputs == {"args": ["refund policy"]} or span.inputs.get("query") == "refund policy" \
        or span.inputs == {"args": ["refund policy"]}
    assert span.outputs == {"passages": ["refund policy passage 0", "refund policy passage 1"]}


def test_missing_wrap_target_warns_once_and_the_rest_is_traced(store_uri, experiment_name, monkeypatch):
    """A DSPy version without one of the targets: that target is skipped with one warning."""
    import warnings

    from tk_testing import TraceReader

    from dspy_tracekit._request import instrument

    monkeypatch.delattr(dspy, "Embedder")  # as in a DSPy version that has no Embedder
    monkeypatch.setattr(instrument, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tk.enable(plugins=[], tracking_uri=store_uri, experiment=experiment_name)
        tk.disable()
        tk.enable(plugins=[], tracking_uri=store_uri, experiment=experiment_name)
    relevant = [w for w in caught if "dspy.Embedder.__call__" in str(w.message)]
    assert len(relevant) == 1
    dspy.configure(lm=dummy_lm())
    Pipeline()(message="x")
    assert len(TraceReader(store_uri, experiment_name).one().data.spans) == 6
