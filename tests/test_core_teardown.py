"""disable(): one deadline for flush and shutdown, spans still open are counted, the runtime is torn down."""

from __future__ import annotations

import logging
import time

import dspy
from tk_testing import Pipeline, dummy_lm

import dspy_tracekit as tk
from dspy_tracekit import hookimpl


class StuckFlush:
    """A plugin whose store never drains: its flush uses all the time it is given."""

    def __init__(self):
        self.shutdown_timeouts: list[float] = []

    @hookimpl
    def tracekit_flush(self, timeout):
        time.sleep(timeout)
        return False

    @hookimpl
    def tracekit_shutdown(self, timeout):
        self.shutdown_timeouts.append(timeout)


def test_disable_timeout_covers_flush_and_shutdown_together(store_uri, experiment_name):
    plugin = StuckFlush()
    tk.enable(plugins=[plugin], tracking_uri=store_uri, experiment=experiment_name)
    tk.disable(timeout=0.3)
    # the flush used the whole budget: the shutdown gets what is left of it, not a second 0.3 s
    assert plugin.shutdown_timeouts == [0.0]


class SeesFinalCounters:
    def __init__(self):
        self.at_shutdown: dict = {}

    @hookimpl
    def tracekit_shutdown(self, timeout):
        self.at_shutdown = tk.counters()


def test_spans_open_at_disable_are_counted(store_uri, experiment_name, caplog):
    plugin = SeesFinalCounters()
    tk.enable(plugins=[plugin], tracking_uri=store_uri, experiment=experiment_name)
    with caplog.at_level(logging.WARNING, logger="dspy_tracekit"), tk.span("request"), \
            tk.span("database_query", span_type="TOOL"):
        tk.disable()
    assert plugin.at_shutdown["core.traces_open_at_disable"] == 1
    assert plugin.at_shutdown["core.spans_open_at_disable"] == 2
    assert "still open" in caplog.text


def test_an_mlflow_span_open_at_disable_is_counted(store_uri, experiment_name):
    import mlflow

    plugin = SeesFinalCounters()
    tk.enable(plugins=[plugin], tracking_uri=store_uri, experiment=experiment_name)
    with mlflow.start_span("users_request"):
        tk.disable()
    assert plugin.at_shutdown["core.traces_open_at_disable"] == 1
    assert plugin.at_shutdown["core.spans_open_at_disable"] == 1


def test_no_span_starts_while_disable_runs(store_uri, experiment_name):
    seen = []

    class StartsASpanAtShutdown:
        @hookimpl
        def tracekit_shutdown(self, timeout):
            dspy.configure(lm=dummy_lm())
            Pipeline()(message="during disable")
            seen.append(tk.counters().get("core.traces_finished", 0))

    tk.enable(plugins=[StartsASpanAtShutdown()], tracking_uri=store_uri, experiment=experiment_name)
    tk.disable()
    assert seen == [0]


def test_enable_after_disable_builds_a_fresh_runtime(store_uri, experiment_name):
    from dspy_tracekit import _state

    tk.enable(plugins=[], tracking_uri=store_uri, experiment=experiment_name)
    first = _state.runtime
    tk.disable()
    assert _state.runtime is None and _state.delivering is None
    tk.enable(plugins=[], tracking_uri=store_uri, experiment=experiment_name)
    assert _state.runtime is not None and _state.runtime is not first
    assert _state.manager is _state.runtime.manager
