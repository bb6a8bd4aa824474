"""Instrumentation says when it cannot see (issue #11 §6): a missing or changed DSPy patch target warns
once naming it; ``disable()`` removes only tracekit's own wrappers."""

from __future__ import annotations

import warnings

import dspy
import dspy.clients.execution as execution
import pytest
import wrapt
from tk_testing import IntentSig, TraceReader, dummy_lm, mock_lm

import dspy_tracekit as tk
from dspy_tracekit._request import instrument


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(instrument, "_warned", set())


def _enable_twice(store_uri, experiment_name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tk.enable(plugins=[], tracking_uri=store_uri, experiment=experiment_name)
        tk.disable()
        tk.enable(plugins=[], tracking_uri=store_uri, experiment=experiment_name)
    return [str(w.message) for w in caught if "cannot instrument" in str(w.message)]


def test_missing_patch_target_warns_once_naming_it(store_uri, experiment_name, monkeypatch, fresh_warnings):
    monkeypatch.delattr(execution, "finalize")
    hits = _enable_twice(store_uri, experiment_name)
    assert len(hits) == 1, hits
    assert "dspy.clients.execution.finalize" in hits[0] and "token usage" in hits[0]
    assert "does not exist" in hits[0] and "DSPy 3." in hits[0]


def test_changed_patch_target_warns_once_and_is_left_alone(store_uri, experiment_name, monkeypatch,
                                                           fresh_warnings):
    original = execution.finalize

    def finalize(lm, call, outcome):  # a DSPy version whose third parameter is not the result
        return original(lm, call, outcome)

    monkeypatch.setattr(execution, "finalize", finalize)
    hits = _enable_twice(store_uri, experiment_name)
    assert len(hits) == 1, hits
    assert "dspy.clients.execution.finalize" in hits[0] and "(lm, call, outcome)" in hits[0]
    assert execution.finalize is finalize  # not wrapped
    dspy.configure(lm=mock_lm("[[ ## intent ## ]]\nx\n\n[[ ## completed ## ]]"))
    dspy.Predict(IntentSig)(message="hi")  # the call still works, traced without usage
    spans = TraceReader(store_uri, experiment_name).one().data.spans
    assert len(spans) == 4


@pytest.fixture
def module_call():
    """``dspy.Module.__call__`` as DSPy defines it, put back after the test whatever it wrapped."""
    original = dspy.Module.__dict__["__call__"]
    yield original
    dspy.Module.__call__ = original


def test_disable_keeps_a_wrapper_another_instrumentor_added_after_enable(store_uri, experiment_name, module_call):
    calls = []

    def other_instrumentor(wrapped, instance, args, kwargs):
        calls.append(type(instance).__name__)
        return wrapped(*args, **kwargs)

    dspy.configure(lm=dummy_lm(n=10, intent="x"))
    tk.enable(plugins=[], tracking_uri=store_uri, experiment=experiment_name)
    wrapt.wrap_function_wrapper(dspy.Module, "__call__", other_instrumentor)
    other = dspy.Module.__dict__["__call__"]
    dspy.Predict(IntentSig)(message="traced")
    tk.disable()

    assert dspy.Module.__dict__["__call__"] is other  # still there
    assert other.__wrapped__ is module_call  # and tracekit's own wrapper is gone from under it
    dspy.Predict(IntentSig)(message="untraced")
    assert calls == ["Predict", "Predict"]

    tk.enable(plugins=[], tracking_uri=store_uri, experiment=experiment_name)  # on top of the other again
    dspy.Predict(IntentSig)(message="traced again")
    tk.disable()
    assert dspy.Module.__dict__["__call__"] is other and other.__wrapped__ is module_call
    traces = TraceReader(store_uri, experiment_name).traces()
    assert [t.data.spans[0].inputs["message"] for t in traces] == ["traced", "traced again"]
    assert all(sum(s.name == "Predict.forward" for s in t.data.spans) == 1 for t in traces)


def test_disable_keeps_a_wrapper_added_on_mlflows_span_processor_after_enable(store_uri, experiment_name):
    from mlflow.tracing.processor.base_mlflow import BaseMlflowSpanProcessor

    original = BaseMlflowSpanProcessor.__dict__["on_start"]
    started = []

    def other_instrumentor(wrapped, instance, args, kwargs):
        started.append(args[0].name)
        return wrapped(*args, **kwargs)

    tk.enable(plugins=[], tracking_uri=store_uri, experiment=experiment_name)
    try:
        wrapt.wrap_function_wrapper(BaseMlflowSpanProcessor, "on_start", other_instrumentor)
        other = BaseMlflowSpanProcessor.__dict__["on_start"]
        tk.disable()
        assert BaseMlflowSpanProcessor.__dict__["on_start"] is other
        assert other.__wrapped__ is original  # tracekit's proxy is gone from under it
    finally:
        BaseMlflowSpanProcessor.on_start = original
