"""Custom spans: @trace on sync/async/generator functions and the span() context manager."""

from __future__ import annotations

import asyncio

import pytest
from tk_testing import tree_of

import dspy_tracekit as tk


def test_trace_decorator_sync_records_inputs_outputs_and_type(traced):
    @tk.trace(name="get_workflow_templates", span_type="RETRIEVER")
    def get_templates(module, limit=3):
        with tk.span("database_query", span_type="TOOL") as s:
            s.set_inputs({"sql": "SELECT 1"})
            s.set_outputs({"rows": 2})
            s.set_attribute("db.system", "sqlite")
        return ["a", "b"]

    assert get_templates("workflows") == ["a", "b"]
    trace = traced.one()
    assert tree_of(trace) == {"get_workflow_templates": None, "database_query": "get_workflow_templates"}
    root, child = trace.data.spans
    assert root.span_type == "RETRIEVER" and child.span_type == "TOOL"
    assert root.inputs == {"module": "workflows", "limit": 3} or root.inputs == {"module": "workflows"}
    assert root.outputs == ["a", "b"]
    assert child.inputs == {"sql": "SELECT 1"} and child.outputs == {"rows": 2}
    assert child.attributes["db.system"] == "sqlite"


def test_trace_decorator_async_and_generators(traced):
    @tk.trace(span_type="CHAIN")
    async def fetch(x):
        await asyncio.sleep(0)
        return x + 1

    @tk.trace
    def numbers(n):
        yield from range(n)

    @tk.trace(name="agen")
    async def anumbers(n):
        for i in range(n):
            yield i

    async def run():
        items = [i async for i in anumbers(2)]
        return await fetch(1), items

    assert asyncio.run(run()) == (2, [0, 1])
    assert list(numbers(3)) == [0, 1, 2]
    by_name = {t.data.spans[0].name: t.data.spans[0] for t in traced.traces()}
    assert by_name["fetch"].outputs == 2
    assert by_name["numbers"].outputs == [0, 1, 2]
    assert by_name["agen"].outputs == [0, 1]


def test_exception_in_custom_span_is_recorded_and_reraised(traced):
    with pytest.raises(KeyError):
        with tk.span("lookup"):
            raise KeyError("missing")
    span = traced.one().data.spans[0]
    assert span.status.status_code.value == "ERROR"
    assert span.events[0].attributes["exception.type"] == "KeyError"


def test_custom_spans_are_passthrough_when_tracing_is_off():
    @tk.trace(name="f")
    def f(x):
        return x * 2

    with tk.span("s") as s:
        s.set_inputs({"a": 1})  # a no-op handle: must not fail
    assert f(2) == 4


def test_generator_span_is_not_current_in_the_caller_between_yields(traced):
    @tk.trace(name="produce")
    def produce():
        with tk.span("inside_generator"):
            pass
        yield 1
        yield 2

    @tk.trace(name="request")
    def request():
        gen = produce()
        first = next(gen)
        with tk.span("caller_work"):  # runs while the generator is suspended
            pass
        rest = list(gen)
        return [first, *rest]

    assert request() == [1, 2]
    tree = tree_of(traced.one())
    assert tree["produce"] == "request"
    assert tree["inside_generator"] == "produce"
    assert tree["caller_work"] == "request"


def test_generator_closed_early_ends_its_span_ok(traced):
    @tk.trace(name="numbers")
    def numbers():
        yield from range(10)

    gen = numbers()
    assert next(gen) == 0
    gen.close()
    span = traced.one().data.spans[0]
    assert span.status.status_code.value == "OK"
    assert span.outputs == [0]
