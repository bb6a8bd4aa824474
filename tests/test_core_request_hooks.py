"""The tracer's per-span hook calls (issue #12: the span hooks are called from the tracer's own loop, each
call isolated there): late registration, failures counted under the plugin's name, order, wrappers."""

from __future__ import annotations

import dspy
from tk_testing import Pipeline, TraceReader, dummy_lm

import dspy_tracekit as tk
from dspy_tracekit import _state, hookimpl
from dspy_tracekit.errors import TracekitAbort


class Seen:
    """Records every span-start and span-end call it gets, by span name."""

    def __init__(self, tag: str = "seen"):
        self.tag = tag
        self.started: list[str] = []
        self.ended: list[str] = []

    @hookimpl
    def tracekit_span_start(self, span):
        self.started.append(span.name)
        span.set_attribute(f"{self.tag}.start", True)

    @hookimpl
    def tracekit_span_end(self, span):
        self.ended.append(span.name)
        span.set_attribute(f"{self.tag}.end", span.end_ns is not None)


class TakesNothing:
    """Implements no span hook at all (the call lists start empty)."""

    @hookimpl
    def tracekit_sample(self, trace):
        return None


def _request(message="x"):
    return Pipeline()(message=message)


def test_a_span_hook_no_plugin_implemented_at_enable_is_called_for_a_plugin_registered_later(
        store_uri, experiment_name):
    tk.enable(plugins=[TakesNothing()], tracking_uri=store_uri, experiment=experiment_name)
    dspy.configure(lm=dummy_lm(n=10))
    assert not _state.manager.span_start_calls and not _state.manager.span_end_calls
    _request("before")
    late = Seen("late")
    _state.manager.register(late)
    _request("after")
    assert tk.flush(30)
    n = len(late.started)
    assert n > 2 and late.ended and sorted(late.ended) == sorted(late.started)
    traces = sorted(TraceReader(store_uri, experiment_name).traces(), key=lambda t: t.info.request_time)
    assert len(traces) == 2
    assert not any("late.start" in s.attributes for s in traces[0].data.spans)
    assert all(s.attributes.get("late.start") is True and s.attributes.get("late.end") is True
               for s in traces[1].data.spans)
    assert len(traces[1].data.spans) == n


def test_after_disable_and_enable_only_the_new_plugins_span_hooks_run(store_uri, experiment_name):
    first, second = Seen("first"), Seen("second")
    tk.enable(plugins=[first], tracking_uri=store_uri, experiment=experiment_name)
    dspy.configure(lm=dummy_lm(n=10))
    _request()
    n = len(first.started)
    tk.disable()
    tk.enable(plugins=[second], tracking_uri=store_uri, experiment=experiment_name)
    dspy.configure(lm=dummy_lm(n=10))
    _request()
    assert tk.flush(30)
    assert len(first.started) == n and len(first.ended) == n  # not called again
    assert len(second.started) == n and len(second.ended) == n


def test_a_failing_span_hook_is_counted_under_its_plugin_and_the_others_still_run_in_order(
        store_uri, experiment_name):
    order: list[str] = []

    class Broken:
        @hookimpl
        def tracekit_span_start(self, span):
            order.append("broken")
            raise RuntimeError("start")

        @hookimpl
        def tracekit_span_end(self, span):
            raise KeyError("end")

    class First:
        @hookimpl(tryfirst=True)
        def tracekit_span_start(self, span):
            order.append("first")

    class Last:
        @hookimpl(trylast=True)
        def tracekit_span_start(self, span):
            order.append("last")

    seen = Seen()
    tk.enable(plugins=[Last(), Broken(), seen, First()], tracking_uri=store_uri, experiment=experiment_name)
    dspy.configure(lm=dummy_lm(n=10))
    assert _request().intent == "create_workflow"
    assert tk.flush(30)
    n = len(seen.started)
    assert n > 2 and len(seen.ended) == n
    assert order == ["first", "broken", "last"] * n
    counters = tk.counters()
    assert counters["core.hook_errors.Broken.tracekit_span_start"] == n
    assert counters["core.hook_errors.Broken.tracekit_span_end"] == n
    spans = TraceReader(store_uri, experiment_name).one().data.spans
    assert all(s.attributes.get("seen.end") is True for s in spans)


def test_an_abort_from_a_span_end_hook_is_swallowed_and_counted_and_the_next_plugin_still_runs(
        store_uri, experiment_name):
    class AbortsLate:
        @hookimpl(tryfirst=True)
        def tracekit_span_end(self, span):
            raise TracekitAbort("too late to stop the call")

    seen = Seen()
    tk.enable(plugins=[seen, AbortsLate()], tracking_uri=store_uri, experiment=experiment_name)
    dspy.configure(lm=dummy_lm(n=10))
    assert _request().intent == "create_workflow"
    assert tk.flush(30)
    n = len(seen.started)
    assert len(seen.ended) == n
    assert tk.counters()["core.hook_errors.core.span_end"] == n


def test_a_wrapper_registered_later_on_span_end_goes_through_pluggy_around_the_plain_hooks(
        store_uri, experiment_name):
    calls: list[str] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def tracekit_span_end(self, span):
            calls.append("before")
            result = yield
            calls.append("after")
            return result

    class Plain:
        @hookimpl
        def tracekit_span_end(self, span):
            calls.append("plain")
            raise ValueError("isolated inside pluggy's loop too")

    tk.enable(plugins=[Plain()], tracking_uri=store_uri, experiment=experiment_name)
    dspy.configure(lm=dummy_lm(n=10))
    _request()
    n = calls.count("plain")
    calls.clear()
    _state.manager.register(Wrapper())
    assert _request().intent == "create_workflow"
    assert tk.flush(30)
    assert calls == ["before", "plain", "after"] * n
    assert tk.counters()["core.hook_errors.Plain.tracekit_span_end"] == 2 * n
