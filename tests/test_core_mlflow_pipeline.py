"""One pipeline for every span: MLflow's own spans and DSPy's form one trace, in tracekit's store.

Written the way the docs tell users to work: ``tk.enable(tracking_uri=..., experiment=...)`` and then
MLflow's API as usual — no ``mlflow.set_tracking_uri()`` / ``set_experiment()`` anywhere (a test of
destination resolution sets MLflow's destination on purpose, as a user of MLflow alone would).
"""

from __future__ import annotations

import asyncio

import dspy
import mlflow
import pytest
from tk_testing import IntentSig, Pipeline, TraceReader, dummy_lm, mock_lm, tree_of

import dspy_tracekit as tk
from dspy_tracekit import hookimpl
from dspy_tracekit.records import SpanKind


def _enable(store_uri, experiment_name, plugins=(), **kw):
    tk.enable(plugins=list(plugins), tracking_uri=store_uri, experiment=experiment_name, **kw)
    return TraceReader(store_uri, experiment_name)


class IntentDetector(dspy.Module):
    """The write-up's program: a RETRIEVER user span with a database_query span inside, then CoT."""

    def __init__(self):
        super().__init__()
        self.classify = dspy.ChainOfThought(IntentSig)

    def forward(self, message):
        templates = get_workflow_templates("workflows")
        return self.classify(message=f"{message} ({len(templates)} templates)")


@mlflow.trace(name="get_workflow_templates", span_type="RETRIEVER")
def get_workflow_templates(module):
    with mlflow.start_span("database_query", span_type="TOOL") as span:
        span.set_inputs({"module": module})
        rows = ["create", "run"]
        span.set_outputs({"rows": len(rows)})
    return rows


@mlflow.trace(name="dspy_intent_detection")
def detect(message):
    return IntentDetector()(message=message).intent


def test_write_up_program_is_one_trace_in_tracekits_store_not_mlflows(store_uri, experiment_name, tmp_path):
    reader = _enable(store_uri, experiment_name)
    dspy.configure(lm=dummy_lm())
    assert detect("Help me create a workflow") == "create_workflow"
    trace = reader.one()
    tree = tree_of(trace)
    assert tree["dspy_intent_detection"] is None
    assert tree["IntentDetector.forward"] == "dspy_intent_detection"
    assert tree["get_workflow_templates"] == "IntentDetector.forward"
    assert tree["database_query"] == "get_workflow_templates"
    assert tree["ChainOfThought.forward"] == "IntentDetector.forward"
    assert tree["DummyLM.__call__"] == "Predict.forward"
    assert len(trace.data.spans) == 9
    types = {s.name: s.span_type for s in trace.data.spans}
    assert types["get_workflow_templates"] == "RETRIEVER" and types["database_query"] == "TOOL"
    assert types["DummyLM.__call__"] == "CHAT_MODEL"
    query = next(s for s in trace.data.spans if s.name == "database_query")
    assert query.inputs == {"module": "workflows"} and query.outputs == {"rows": 2}
    assert query.attributes["tracekit.kind"] == SpanKind.MLFLOW
    assert trace.info.state == "OK"
    # nothing went to MLflow's own default destination
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
    assert mlflow.get_last_active_trace_id() == trace.info.trace_id


def test_user_span_inside_dspy_forward_and_tool_nests_under_them(store_uri, experiment_name):
    reader = _enable(store_uri, experiment_name)
    dspy.configure(lm=dummy_lm())

    class WithUserSpans(dspy.Module):
        def __init__(self):
            super().__init__()
            self.classify = dspy.Predict(IntentSig)

        def forward(self, message):
            with mlflow.start_span("user_lookup", span_type="RETRIEVER") as s:
                s.set_inputs({"q": message})
                assert mlflow.get_current_active_span().name == "user_lookup"
                s.set_outputs({"hits": 3})
            return self.classify(message=message)

    @mlflow.trace(name="user_tool")
    def user_tool(x):
        return x * 2

    def tool_fn(x: int) -> int:
        """Doubles x via the user's traced helper."""
        return user_tool(x)

    WithUserSpans()(message="hello")
    assert dspy.Tool(tool_fn)(x=4) == 8
    first, second = reader.traces()
    tree = tree_of(first)
    assert tree["WithUserSpans.forward"] is None
    assert tree["user_lookup"] == "WithUserSpans.forward"
    assert tree["Predict.forward"] == "WithUserSpans.forward"
    lookup = next(s for s in first.data.spans if s.name == "user_lookup")
    root = first.data.spans[0]
    assert root.start_time_ns <= lookup.start_time_ns <= lookup.end_time_ns <= root.end_time_ns
    assert tree_of(second) == {"tool_fn": None, "user_tool": "tool_fn"}
    assert mlflow.get_last_active_trace_id() == second.info.trace_id


def test_three_levels_deep_user_dspy_user_dspy(store_uri, experiment_name):
    reader = _enable(store_uri, experiment_name)
    dspy.configure(lm=dummy_lm())

    class Inner(dspy.Module):
        def __init__(self):
            super().__init__()
            self.classify = dspy.Predict(IntentSig)

        def forward(self, message):
            with mlflow.start_span("user_inner"):
                return self.classify(message=message)

    class Outer(dspy.Module):
        def __init__(self):
            super().__init__()
            self.inner = Inner()

        def forward(self, message):
            with mlflow.start_span("user_middle"):
                return self.inner(message=message)

    @mlflow.trace(name="user_root")
    def root(message):
        return Outer()(message=message)

    root("deep")
    tree = tree_of(reader.one())
    assert tree["user_root"] is None
    assert tree["Outer.forward"] == "user_root"
    assert tree["user_middle"] == "Outer.forward"
    assert tree["Inner.forward"] == "user_middle"
    assert tree["user_inner"] == "Inner.forward"
    assert tree["Predict.forward"] == "user_inner"
    assert tree["DummyLM.__call__"] == "Predict.forward"


def test_concurrent_async_requests_keep_their_own_trees(store_uri, experiment_name):
    reader = _enable(store_uri, experiment_name)
    dspy.configure(lm=dummy_lm(200))
    program = dspy.ChainOfThought(IntentSig)

    @mlflow.trace(name="handle")
    async def handle(i):
        with tk.context(request=str(i)):
            with mlflow.start_span("prepare") as s:
                s.set_inputs({"i": i})
                await asyncio.sleep(0.001)
            return await program.acall(message=f"m{i}")

    async def main():
        return await asyncio.gather(*(handle(i) for i in range(20)))

    asyncio.run(main())
    traces = reader.traces()
    assert len(traces) == 20
    seen = set()
    for trace in traces:
        tree = tree_of(trace)
        assert tree["handle"] is None and tree["prepare"] == "handle"
        assert tree["ChainOfThought.forward"] == "handle" and tree["Predict.forward"] == "ChainOfThought.forward"
        assert len(trace.data.spans) == 7
        prepare = next(s for s in trace.data.spans if s.name == "prepare")
        assert str(prepare.inputs["i"]) == trace.info.tags["request"]
        seen.add(trace.info.tags["request"])
    assert seen == {str(i) for i in range(20)}


def test_user_spans_in_parallel_workers_nest_under_the_workers_spans(store_uri, experiment_name):
    reader = _enable(store_uri, experiment_name)
    dspy.configure(lm=dummy_lm(20))

    class Step(dspy.Module):
        def __init__(self):
            super().__init__()
            self.classify = dspy.Predict(IntentSig)

        def forward(self, message):
            with mlflow.start_span("worker_lookup"):
                return self.classify(message=message)

    step = Step()

    @mlflow.trace(name="fan_out")
    def fan_out():
        return dspy.Parallel(num_threads=4)([(step, {"message": f"m{i}"}) for i in range(4)])

    assert len(fan_out()) == 4
    trace = reader.one()
    by_id = {s.span_id: s for s in trace.data.spans}
    lookups = [s for s in trace.data.spans if s.name == "worker_lookup"]
    assert len(lookups) == 4
    assert all(by_id[s.parent_id].name == "Step.forward" for s in lookups)
    assert all(by_id[by_id[s.parent_id].parent_id].name == "fan_out" for s in lookups)


def test_streaming_inside_a_user_span_is_one_trace_with_time_to_first_token(store_uri, experiment_name):
    reader = _enable(store_uri, experiment_name)
    program = dspy.streamify(dspy.Predict("question -> answer"))

    @mlflow.trace(name="stream_request")
    def run():
        async def consume():
            return [c async for c in program(question="hi")]

        return asyncio.run(consume())

    with dspy.context(lm=dummy_lm(5, answer="streamed")):
        out = run()
    assert isinstance(out[-1], dspy.Prediction) and out[-1].answer == "streamed"
    trace = reader.one()
    tree = tree_of(trace)
    assert tree["stream_request"] is None and tree["Predict.forward"] == "stream_request"


def test_exception_in_a_user_span_is_recorded_and_reaches_the_caller(store_uri, experiment_name):
    reader = _enable(store_uri, experiment_name)
    dspy.configure(lm=dummy_lm())
    boom = ValueError("template store down")

    class Failing(dspy.Module):
        def forward(self, message):
            with mlflow.start_span("database_query"):
                raise boom

    @mlflow.trace(name="request")
    def request():
        return Failing()(message="x")

    with pytest.raises(ValueError) as info:
        request()
    assert info.value is boom
    trace = reader.one()
    assert trace.info.state == "ERROR"
    query = next(s for s in trace.data.spans if s.name == "database_query")
    assert query.status.status_code == "ERROR"
    event = next(e for e in query.events if e.name == "exception")
    assert event.attributes["exception.type"] == "ValueError"
    assert "template store down" in event.attributes["exception.message"]


def test_update_current_trace_tags_and_metadata_are_stored_from_both_sides(store_uri, experiment_name):
    reader = _enable(store_uri, experiment_name)
    dspy.configure(lm=dummy_lm())

    class Tagging(dspy.Module):
        def __init__(self):
            super().__init__()
            self.classify = dspy.Predict(IntentSig)

        def forward(self, message):
            mlflow.update_current_trace(tags={"from_dspy": "yes"}, metadata={"app_version": "7"})
            return self.classify(message=message)

    @mlflow.trace(name="request")
    def request():
        mlflow.update_current_trace(tags={"from_user": "yes"}, session_id="s-9", user="u-9")
        return Tagging()(message="x")

    request()
    Tagging()(message="pure DSPy root")
    first, second = reader.traces()
    assert first.info.tags["from_user"] == "yes" and first.info.tags["from_dspy"] == "yes"
    assert first.info.trace_metadata["app_version"] == "7"
    assert first.info.trace_metadata["mlflow.trace.user"] == "u-9"
    assert first.info.trace_metadata["mlflow.trace.session"] == "s-9"
    assert second.info.tags["from_dspy"] == "yes" and second.info.trace_metadata["app_version"] == "7"


def test_context_tags_user_and_session_reach_traces_rooted_in_user_spans(store_uri, experiment_name):
    reader = _enable(store_uri, experiment_name)
    dspy.configure(lm=dummy_lm())

    @mlflow.trace(name="request")
    def request():
        with tk.context(user_role="admin", user_id="u-7", session_id="s-1"):
            return Pipeline()(message="x")

    request()
    trace = reader.one()
    assert trace.info.tags["user_role"] == "admin" and trace.info.tags["user_id"] == "u-7"
    assert trace.info.trace_metadata["mlflow.trace.user"] == "u-7"
    assert trace.info.trace_metadata["mlflow.trace.session"] == "s-1"


def test_plugins_see_mlflow_spans_in_span_start_and_end_with_their_kind(store_uri, experiment_name):
    class Seen:
        def __init__(self):
            self.started, self.ended = [], []

        @hookimpl
        def tracekit_span_start(self, span):
            self.started.append((span.name, span.kind))

        @hookimpl
        def tracekit_span_end(self, span):
            self.ended.append((span.name, span.kind))
            span.set_attribute("tenant", "acme")

    seen = Seen()
    reader = _enable(store_uri, experiment_name, plugins=[seen])
    dspy.configure(lm=dummy_lm())
    detect("x")
    trace = reader.one()
    assert ("dspy_intent_detection", SpanKind.MLFLOW) in seen.started
    assert ("database_query", SpanKind.MLFLOW) in seen.ended
    assert ("IntentDetector.forward", SpanKind.MODULE) in seen.started
    assert len(seen.started) == len(seen.ended) == len(trace.data.spans) == 9
    assert all(s.attributes["tenant"] == "acme" for s in trace.data.spans)


@pytest.mark.parametrize("where", ["mlflow_root", "dspy_root"])
def test_head_dropped_trace_stores_nothing(store_uri, experiment_name, where):
    class DropAll:
        @hookimpl
        def tracekit_sample(self, trace):
            return False

    reader = _enable(store_uri, experiment_name, plugins=[DropAll()])
    dspy.configure(lm=dummy_lm())
    if where == "mlflow_root":
        detect("x")
    else:
        IntentDetector()(message="x")
    assert reader.traces() == []
    assert tk.counters()["core.traces_dropped.sampled_out_head"] == 1


def test_tail_dropped_trace_stores_nothing(store_uri, experiment_name):
    class DropAtTail:
        @hookimpl
        def tracekit_keep_trace(self, trace):
            return False

    reader = _enable(store_uri, experiment_name, plugins=[DropAtTail()])
    dspy.configure(lm=dummy_lm())
    detect("x")
    assert reader.traces() == []
    assert tk.counters()["core.traces_dropped.sampled_out"] == 1


def test_mlflow_only_traces_go_through_tracekit_by_default(store_uri, experiment_name, tmp_path):
    reader = _enable(store_uri, experiment_name)
    assert get_workflow_templates("billing") == ["create", "run"]
    trace = reader.one()
    assert tree_of(trace) == {"get_workflow_templates": None, "database_query": "get_workflow_templates"}
    assert not (tmp_path / "mlflow.db").exists()


def test_mlflow_traces_dspy_leaves_mlflow_only_traces_to_mlflow(store_uri, experiment_name, tmp_path,
                                                                monkeypatch):
    monkeypatch.setenv("DSPY_TRACEKIT_MLFLOW_TRACES", "dspy")
    reader = _enable(store_uri, experiment_name)
    dspy.configure(lm=dummy_lm())
    get_workflow_templates("billing")  # MLflow only: MLflow exports it to its own default store
    mlflow_only_id = mlflow.get_last_active_trace_id()
    detect("x")  # contains DSPy spans: tracekit's
    mlflow.flush_trace_async_logging()
    trace = reader.one()
    assert trace.data.spans[0].name == "dspy_intent_detection"
    assert (tmp_path / "mlflow.db").exists()
    mine = mlflow.get_trace(mlflow_only_id)
    assert mine is not None and [s.name for s in mine.data.spans][0] == "get_workflow_templates"
    assert tk.counters()["core.mlflow_traces_left_to_mlflow"] == 1


def test_trace_totals_equal_the_sum_of_lm_spans(store_uri, experiment_name):
    reader = _enable(store_uri, experiment_name, plugins=["cost"])

    class TwoCalls(dspy.Module):
        def __init__(self):
            super().__init__()
            self.a = dspy.ChainOfThought(IntentSig)
            self.b = dspy.ChainOfThought(IntentSig)

        def forward(self, message):
            with mlflow.start_span("between"):
                self.a(message=message)
            return self.b(message=message)

    @mlflow.trace(name="request")
    def request():
        return TwoCalls()(message="x")

    with dspy.context(lm=mock_lm()):
        request()
    trace = reader.one()
    lm_spans = [s for s in trace.data.spans if s.span_type == "CHAT_MODEL"]
    assert len(lm_spans) == 2
    usage = [s.attributes["mlflow.chat.tokenUsage"] for s in lm_spans]
    assert trace.info.token_usage["input_tokens"] == sum(u["input_tokens"] for u in usage) > 0
    assert trace.info.token_usage["total_tokens"] == sum(u["total_tokens"] for u in usage)
    costs = [s.attributes["mlflow.llm.cost"]["total_cost"] for s in lm_spans]
    assert trace.info.cost["total_cost"] == pytest.approx(sum(costs))
    assert float(trace.info.tags["tracekit.cost.total_usd"]) == pytest.approx(sum(costs))


def test_litellm_autolog_spans_nest_under_the_lm_span(store_uri, experiment_name):
    reader = _enable(store_uri, experiment_name)
    mlflow.litellm.autolog()
    try:
        with dspy.context(lm=mock_lm()):
            dspy.ChainOfThought(IntentSig)(message="x")
    finally:
        mlflow.litellm.autolog(disable=True)
    trace = reader.one()
    by_id = {s.span_id: s for s in trace.data.spans}
    litellm_spans = [s for s in trace.data.spans if s.attributes.get("tracekit.kind") == SpanKind.MLFLOW]
    assert litellm_spans, [s.name for s in trace.data.spans]
    assert all(by_id[s.parent_id].span_type == "CHAT_MODEL" for s in litellm_spans)
    # usage on both the LM span and the nested litellm span is counted once
    lm = next(s for s in trace.data.spans if s.span_type == "CHAT_MODEL" and s.parent_id
              and by_id[s.parent_id].name == "Predict.forward")
    assert trace.info.token_usage["total_tokens"] == lm.attributes["mlflow.chat.tokenUsage"]["total_tokens"]


def test_flush_covers_mlflow_rooted_traces_in_the_buffer(store_uri, experiment_name):
    reader = _enable(store_uri, experiment_name, plugins=["buffer"],
                     config={"buffer": {"flush_interval": 30.0, "batch_size": 1000}})
    dspy.configure(lm=dummy_lm(100))
    for i in range(10):
        detect(f"m{i}")
    assert tk.counters()["buffer.queued"] == 10
    assert tk.flush(30) is True
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name(experiment_name)
    infos = client.search_traces(locations=[exp.experiment_id], max_results=100)
    assert len(infos) == 10 and all(i.info.state == "OK" for i in infos)
    assert all(len(reader_trace.data.spans) == 9 for reader_trace in reader.traces())


def test_disable_gives_mlflow_its_export_back_exactly(store_uri, experiment_name, tmp_path):
    from mlflow.tracing import provider
    from mlflow.tracing.processor.base_mlflow import BaseMlflowSpanProcessor

    before = (BaseMlflowSpanProcessor.__dict__["on_start"], BaseMlflowSpanProcessor.__dict__["on_end"],
              provider._get_mlflow_span_processor, mlflow.update_current_trace)
    reader = _enable(store_uri, experiment_name)
    get_workflow_templates("during")
    tk.disable()
    after = (BaseMlflowSpanProcessor.__dict__["on_start"], BaseMlflowSpanProcessor.__dict__["on_end"],
             provider._get_mlflow_span_processor, mlflow.update_current_trace)
    assert all(a is b for a, b in zip(before, after))
    get_workflow_templates("after")  # MLflow's own export, to its own default store
    after_id = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()
    assert len(reader.traces()) == 1
    assert (tmp_path / "mlflow.db").exists()
    assert mlflow.get_trace(after_id).data.spans[0].name == "get_workflow_templates"


def test_destination_follows_what_the_user_told_mlflow(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/users.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "users-experiment")
    assert tk.enable(plugins=[])
    from dspy_tracekit import _state

    assert _state.settings.tracking_uri == uri and _state.settings.experiment == "users-experiment"
    get_workflow_templates("x")
    TraceReader(uri, "users-experiment").one()


def test_destination_follows_set_tracking_uri_called_after_enable(tmp_path):
    tk.enable(plugins=[])
    uri = f"sqlite:///{tmp_path}/later.db"
    mlflow.set_tracking_uri(uri)  # what a user of MLflow alone does; tracekit's config is silent
    mlflow.set_experiment("later")
    get_workflow_templates("x")
    TraceReader(uri, "later").one()


def test_tracekit_config_wins_over_mlflows_destination(store_uri, experiment_name, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/users.db")
    reader = _enable(store_uri, experiment_name)
    get_workflow_templates("x")
    reader.one()
    assert not (tmp_path / "users.db").exists()


def test_mlflow_sampling_ratio_narrows_dspy_rooted_traces_too(store_uri, experiment_name, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACE_SAMPLING_RATIO", "0.0")
    reader = _enable(store_uri, experiment_name)
    dspy.configure(lm=dummy_lm())
    Pipeline()(message="x")
    assert reader.traces() == []
    assert tk.counters()["core.traces_dropped.sampled_out_head"] == 1


def test_traces_without_mlflow_api_touch_no_mlflow_state(store_uri, experiment_name):
    from dspy_tracekit import _state

    reader = _enable(store_uri, experiment_name)
    dspy.configure(lm=dummy_lm())
    Pipeline()(message="x")
    assert len(reader.traces()) == 1
    assert _state.manager.bridge.registry == {}
    from dspy_tracekit.mlflow._compat import trace_manager

    assert len(trace_manager()._traces) == 0



def test_start_span_no_context_spans_are_tracekit_spans_too(store_uri, experiment_name):
    reader = _enable(store_uri, experiment_name)
    root = mlflow.start_span_no_context("batch_job", span_type="CHAIN", inputs={"n": 2})
    child = mlflow.start_span_no_context("step", parent_span=root)
    child.end(outputs={"ok": True})
    root.end(outputs={"done": 2})
    trace = reader.one()
    assert tree_of(trace) == {"batch_job": None, "step": "batch_job"}
    assert trace.data.spans[0].inputs == {"n": 2} and trace.data.spans[0].outputs == {"done": 2}


def test_mlflow_rooted_traces_get_load_and_cpu_figures_like_dspy_rooted_ones(store_uri, experiment_name):
    reader = _enable(store_uri, experiment_name)
    dspy.configure(lm=dummy_lm())
    detect("x")
    IntentDetector()(message="y")
    mlflow_rooted, dspy_rooted = reader.traces()
    for trace in (mlflow_rooted, dspy_rooted):
        assert trace.info.tags["tracekit.load.in_flight"] == "1"
        assert trace.info.tags["tracekit.program_version"]
    query = next(s for s in mlflow_rooted.data.spans if s.name == "database_query")
    assert query.attributes["tracekit.cpu_ms"] >= 0
    assert mlflow_rooted.data.spans[0].attributes["tracekit.cpu_ms"] > 0  # the user's root span
