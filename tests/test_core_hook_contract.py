"""Hook implementations are called as pluggy calls them (issue #11 §1): by their own argument names,
any subset, any order, defaults honoured; tryfirst/trylast order; wrappers on every hook they can wrap.

Each plugin is written the way docs/writing-plugins.md shows a third-party author: a class with
``@hookimpl`` methods, passed to ``tk.enable(plugins=[...])``.
"""

from __future__ import annotations

import logging

import dspy
import pytest
from tk_testing import IntentSig, TraceReader, dummy_lm

import dspy_tracekit as tk
from dspy_tracekit import hookimpl
from dspy_tracekit.errors import ConfigError


def _predict(n=1):
    dspy.configure(lm=dummy_lm(n=n + 5, intent="x"))
    for i in range(n):
        dspy.Predict(IntentSig)(message=f"m{i}")


def test_implementation_taking_a_subset_of_the_arguments_is_called(store_uri, experiment_name):
    class SubsetArgs:
        def __init__(self):
            self.config = None
            self.starts = 0

        @hookimpl
        def tracekit_configure(self, config):
            self.config = config

        @hookimpl
        def tracekit_span_start(self):
            self.starts += 1

    plugin = SubsetArgs()
    tk.enable(plugins=[plugin], tracking_uri=store_uri, experiment=experiment_name,
              config={"SubsetArgs": {"level": 2}})
    _predict()
    assert plugin.config == {"level": 2}
    assert plugin.starts == 4  # Predict, adapter format, LM, adapter parse
    assert not [k for k in tk.counters() if k.startswith("core.hook_errors.")]


def test_implementation_with_reordered_arguments_gets_each_by_name(store_uri, experiment_name):
    class ReorderedArgs:
        seen: dict = {}

        @hookimpl
        def tracekit_configure(self, settings, config):
            self.seen = {"config": config, "experiment": settings.experiment}

    plugin = ReorderedArgs()
    tk.enable(plugins=[plugin], tracking_uri=store_uri, experiment=experiment_name,
              config={"ReorderedArgs": {"level": 1}})
    assert plugin.seen == {"config": {"level": 1}, "experiment": experiment_name}


def test_defaulted_argument_takes_the_callers_value_and_never_raises(store_uri, experiment_name):
    class DefaultArg:
        def __init__(self):
            self.flushed: list[float] = []
            self.ended: list[str] = []

        @hookimpl
        def tracekit_flush(self, timeout=1.0):
            self.flushed.append(timeout)

        @hookimpl
        def tracekit_span_end(self, span=None):
            self.ended.append(span.name)

    plugin = DefaultArg()
    tk.enable(plugins=[plugin], tracking_uri=store_uri, experiment=experiment_name)
    _predict()
    assert tk.flush(timeout=3.5) is True
    assert tk.disable(timeout=2.0) is True
    # disable(timeout=2.0) is one deadline for flush and shutdown: the flush gets what is left of it
    assert plugin.flushed[0] == 3.5 and len(plugin.flushed) == 2 and 1.0 < plugin.flushed[1] <= 2.0
    assert plugin.ended[-1] == "Predict.forward" and len(plugin.ended) == 4


def test_unknown_argument_stops_enable_naming_plugin_and_hook(store_uri, experiment_name):
    class UnknownArg:
        @hookimpl
        def tracekit_span_end(self, span, spam):
            pass

    with pytest.raises(ConfigError) as info:
        tk.enable(plugins=[UnknownArg()], tracking_uri=store_uri, experiment=experiment_name)
    assert "UnknownArg" in str(info.value) and "tracekit_span_end" in str(info.value)
    assert "spam" in str(info.value)


def test_tryfirst_and_trylast_order_every_hook(store_uri, experiment_name):
    calls: list[str] = []

    class Last:
        @hookimpl(trylast=True)
        def tracekit_configure(self, config, settings):
            calls.append("configure:last")

        @hookimpl(trylast=True)
        def tracekit_span_start(self, span):
            calls.append("start:last")

        @hookimpl(trylast=True)
        def tracekit_counters(self):
            calls.append("counters:last")

    class First:
        @hookimpl(tryfirst=True)
        def tracekit_configure(self, config, settings):
            calls.append("configure:first")

        @hookimpl(tryfirst=True)
        def tracekit_span_start(self, span):
            calls.append("start:first")

        @hookimpl(tryfirst=True)
        def tracekit_counters(self):
            calls.append("counters:first")

    # registered in the order that would call them the other way round without the markers
    tk.enable(plugins=[First(), Last()], tracking_uri=store_uri, experiment=experiment_name)
    _predict()
    tk.counters()
    assert calls[:2] == ["configure:first", "configure:last"]
    assert calls[2:4] == ["start:first", "start:last"]
    assert calls[-2:] == ["counters:first", "counters:last"]


def test_wrapper_on_a_request_path_hook_runs_around_every_call(store_uri, experiment_name):
    class Wrapper:
        def __init__(self):
            self.wrapped: list[tuple[str, str | None]] = []

        @hookimpl(wrapper=True)
        def tracekit_span_end(self, span):
            span.set_attribute("wrapped.before", True)
            result = yield
            self.wrapped.append((span.name, span.attributes.get("inner")))
            return result

    class Inner:
        @hookimpl
        def tracekit_span_end(self, span):
            span.set_attribute("inner", span.name)

    plugin = Wrapper()
    tk.enable(plugins=[plugin, Inner()], tracking_uri=store_uri, experiment=experiment_name)
    _predict()
    assert len(plugin.wrapped) == 4 and all(name == inner for name, inner in plugin.wrapped)
    spans = TraceReader(store_uri, experiment_name).one().data.spans
    assert all(s.attributes["wrapped.before"] is True for s in spans)


def test_old_style_hookwrapper_can_override_a_firstresult_hook(store_uri, experiment_name):
    class KeepEverything:
        @hookimpl
        def tracekit_sample(self, trace):
            return False

    class HookWrapper:
        @hookimpl(hookwrapper=True)
        def tracekit_sample(self, trace):
            outcome = yield
            if trace.root.kwargs.get("message") == "m1":
                outcome.force_result(True)

    tk.enable(plugins=[KeepEverything(), HookWrapper()], tracking_uri=store_uri, experiment=experiment_name)
    _predict(n=3)
    traces = TraceReader(store_uri, experiment_name).traces()
    assert [t.data.spans[0].inputs["message"] for t in traces] == ["m1"]


def test_failing_wrapper_is_counted_and_the_call_goes_on(store_uri, experiment_name, caplog):
    class BrokenWrapper:
        @hookimpl(wrapper=True)
        def tracekit_span_start(self, span):
            raise RuntimeError("wrapper bug")
            yield  # noqa: unreachable - makes this a generator, as pluggy requires

    tk.enable(plugins=[BrokenWrapper()], tracking_uri=store_uri, experiment=experiment_name)
    with caplog.at_level(logging.WARNING, logger="dspy_tracekit"):
        _predict(n=2)
    assert tk.counters()["core.hook_errors.BrokenWrapper.tracekit_span_start"] == 8
    assert len(TraceReader(store_uri, experiment_name).traces()) == 2
    assert sum("wrapper bug" in r.getMessage() for r in caplog.records) == 1


class ConfigureWrapper:
    @hookimpl(wrapper=True)
    def tracekit_configure(self, config, settings):
        return (yield)


class ProcessWrapper:
    @hookimpl(wrapper=True)
    def tracekit_process_trace(self, trace):
        return (yield)


class CountersWrapper:
    @hookimpl(hookwrapper=True)
    def tracekit_counters(self):
        yield


@pytest.mark.parametrize("plugin, hook", [(ConfigureWrapper, "tracekit_configure"),
                                          (ProcessWrapper, "tracekit_process_trace"),
                                          (CountersWrapper, "tracekit_counters")])
def test_wrapper_where_the_core_calls_each_plugin_alone_is_refused_at_enable(store_uri, experiment_name,
                                                                             plugin, hook):
    with pytest.raises(ConfigError) as info:
        tk.enable(plugins=[plugin()], tracking_uri=store_uri, experiment=experiment_name)
    assert plugin.__name__ in str(info.value) and hook in str(info.value)
    assert tk.counters() == {}  # tracing stayed off
