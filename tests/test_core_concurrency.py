"""Threads, asyncio and streaming: one request, one trace."""

from __future__ import annotations

import asyncio

import dspy
from tk_testing import IntentSig, dummy_lm, mock_lm, tree_of

import dspy_tracekit as tk


class FanOut(dspy.Module):
    def __init__(self):
        super().__init__()
        self.classify = dspy.Predict(IntentSig)

    def forward(self, messages):
        parallel = dspy.Parallel(num_threads=4)
        return parallel([(self.classify, {"message": m}) for m in messages])


def test_parallel_fan_out_is_one_trace_with_four_children(traced):
    dspy.configure(lm=mock_lm("[[ ## intent ## ]]\nother\n\n[[ ## completed ## ]]"))
    results = FanOut()(messages=["a", "b", "c", "d"])
    assert len(results) == 4
    trace = traced.one()
    root = trace.data.spans[0]
    assert root.name == "FanOut.forward"
    children = [s for s in trace.data.spans if s.parent_id == root.span_id]
    assert [c.name for c in children] == ["Predict.forward"] * 4
    assert len({c.span_id for c in children}) == 4
    lm_spans = [s for s in trace.data.spans if s.span_type == "CHAT_MODEL"]
    assert len(lm_spans) == 4


def test_evaluate_with_threads_is_one_trace(traced):
    dspy.configure(lm=dummy_lm(n=10, intent="create_workflow"))
    devset = [dspy.Example(message=f"m{i}", intent="create_workflow").with_inputs("message") for i in range(6)]
    evaluate = dspy.Evaluate(devset=devset, metric=lambda ex, pred, trace=None: ex.intent == pred.intent,
                             num_threads=3, display_progress=False)
    result = evaluate(dspy.Predict(IntentSig))
    assert result.score == 100.0
    trace = traced.one()
    root = trace.data.spans[0]
    assert root.span_type == "EVALUATOR" and root.name == "Evaluate.__call__"
    predicts = [s for s in trace.data.spans if s.name == "Predict.forward"]
    assert len(predicts) == 6 and all(p.parent_id == root.span_id for p in predicts)


def test_hundred_concurrent_acalls_give_hundred_separate_trees(traced):
    answers = {f"question q{i:03d}": {"intent": f"intent-{i:03d}"} for i in range(100)}
    dspy.configure(lm=dspy.utils.DummyLM(answers))
    program = dspy.Predict(IntentSig)

    async def main():
        return await asyncio.gather(*[program.acall(message=f"question q{i:03d}") for i in range(100)])

    results = asyncio.run(main())
    assert [r.intent for r in results] == [f"intent-{i:03d}" for i in range(100)]
    traces = traced.traces()
    assert len(traces) == 100
    for t in traces:
        tree = tree_of(t)
        assert tree["Predict.forward"] is None
        assert tree["DummyLM.__call__"] == "Predict.forward"
        assert len(t.data.spans) == 4
        root = t.data.spans[0]
        lm = next(s for s in t.data.spans if s.name == "DummyLM.__call__")
        i = root.inputs["message"].split()[-1][1:]
        # the LM span in this tree answered this tree's question, not another task's
        assert f"intent-{i}" in str(lm.outputs)


def test_context_tags_follow_parallel_workers(traced):
    dspy.configure(lm=mock_lm("[[ ## intent ## ]]\nother\n\n[[ ## completed ## ]]"))
    with tk.context(tenant="acme"):
        FanOut()(messages=["a", "b"])
    for s in traced.one().data.spans:
        assert s.attributes["tracekit.context.tenant"] == "acme"


def test_streaming_gives_one_lm_span_with_final_text_and_time_to_first_token(traced):
    dspy.configure(lm=mock_lm("[[ ## intent ## ]]\nview_reports\n\n[[ ## completed ## ]]"))
    program = dspy.streamify(dspy.Predict(IntentSig),
                             stream_listeners=[dspy.streaming.StreamListener(signature_field_name="intent")])

    async def consume():
        final = None
        async for chunk in program(message="show me the dashboard"):
            if isinstance(chunk, dspy.Prediction):
                final = chunk
        return final

    final = asyncio.run(consume())
    assert final.intent == "view_reports"
    trace = traced.one()
    lm_spans = [s for s in trace.data.spans if s.span_type == "CHAT_MODEL"]
    assert len(lm_spans) == 1
    assert "view_reports" in str(lm_spans[0].outputs)
    ttft = lm_spans[0].attributes.get("tracekit.lm.time_to_first_token_ms")
    assert ttft is not None and ttft >= 0
