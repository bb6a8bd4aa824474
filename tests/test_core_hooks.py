"""One test per hook (``test_hook_<name>``), plus the meta-tests that keep docs/hooks.md complete."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import ClassVar

import dspy
import pytest
from tk_testing import IntentSig, TraceReader, dummy_lm

import dspy_tracekit as tk
from dspy_tracekit import hookimpl, hookspecs
from dspy_tracekit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name, fn in vars(hookspecs).items() if name.startswith("tracekit_") and callable(fn))


def _run(store_uri, experiment, plugin, n=1, config=None):
    tk.enable(plugins=[plugin], tracking_uri=store_uri, experiment=experiment, config=config)
    dspy.configure(lm=dummy_lm(n=n + 5, intent="x"))
    for i in range(n):
        dspy.Predict(IntentSig)(message=f"m{i}")
    return TraceReader(store_uri, experiment)


def test_every_hook_has_a_doc_section_with_signature_and_example():
    text = (ROOT / "docs" / "hooks.md").read_text()
    for name in HOOKS:
        sig = inspect.signature(getattr(hookspecs, name))
        params = ", ".join(sig.parameters)
        match = re.search(rf"^## `{name}\(([^)]*)\)`", text, re.M)
        assert match, f"docs/hooks.md has no section for {name}"
        assert match.group(1) == params, f"{name}: documented ({match.group(1)}) != spec ({params})"
        section = text[match.end():].split("\n## ", 1)[0]
        assert "@hookimpl" in section and f"def {name}(" in section, f"{name}: no example"


def test_every_hook_has_a_test():
    names = {n for n in globals() if n.startswith("test_hook_")}
    missing = [h for h in HOOKS if f"test_hook_{h}" not in names]
    assert not missing, f"hooks without a test_hook_<name>: {missing}"


def test_hook_tracekit_configure(store_uri, experiment_name):
    seen = {}

    class Configured:
        @hookimpl
        def tracekit_configure(self, config, settings):
            seen.update(config=config, experiment=settings.experiment)
            if config.get("level", 1) < 0:
                raise ValueError("Configured.level must be >= 0")

    tk.enable(plugins=[Configured()], tracking_uri=store_uri, experiment=experiment_name,
              config={"Configured": {"level": 3}})
    assert seen == {"config": {"level": 3}, "experiment": experiment_name}
    tk.disable()
    with pytest.raises(ConfigError) as info:
        tk.enable(plugins=[Configured()], tracking_uri=store_uri, config={"Configured": {"level": -1}})
    assert "Configured.level" in str(info.value) and "enable(config=...)" in str(info.value)


def test_hook_tracekit_sample(store_uri, experiment_name):
    class DropOdd:
        @hookimpl
        def tracekit_sample(self, trace):
            return not trace.root.kwargs["message"].endswith(("1", "3"))

    reader = _run(store_uri, experiment_name, DropOdd(), n=4)
    assert sorted(t.data.spans[0].inputs["message"] for t in reader.traces()) == ["m0", "m2"]
    assert tk.counters()["core.traces_dropped.sampled_out_head"] == 2


def test_hook_tracekit_span_start(store_uri, experiment_name):
    class Tenant:
        @hookimpl
        def tracekit_span_start(self, span):
            span.set_attribute("tenant", "acme")

    reader = _run(store_uri, experiment_name, Tenant())
    assert all(s.attributes["tenant"] == "acme" for s in reader.one().data.spans)


def test_hook_tracekit_span_end(store_uri, experiment_name):
    class Usage:
        @hookimpl
        def tracekit_span_end(self, span):
            if span.kind == "lm":
                span.set_attribute("saw_usage", span.usage is not None)
                span.set_attribute("ended", span.end_ns is not None)

    reader = _run(store_uri, experiment_name, Usage())
    lm = next(s for s in reader.one().data.spans if s.span_type == "CHAT_MODEL")
    assert lm.attributes["saw_usage"] is True and lm.attributes["ended"] is True


def test_hook_tracekit_take_trace(store_uri, experiment_name):
    class Holder:
        def __init__(self):
            self.held = []

        @hookimpl
        def tracekit_take_trace(self, trace):
            self.held.append(trace)
            return True

        @hookimpl
        def tracekit_flush(self, timeout):
            from dspy_tracekit.delivery import export, prepare

            export(prepare(self.held))
            self.held.clear()
            return True

    holder = Holder()
    reader = _run(store_uri, experiment_name, holder, n=2)
    assert len(holder.held) == 2
    from mlflow.tracking import MlflowClient

    exp = MlflowClient(store_uri).get_experiment_by_name(experiment_name)
    assert exp is None or MlflowClient(store_uri).search_traces(locations=[exp.experiment_id]) == []
    assert len(reader.traces()) == 2  # reader.traces() flushes first
    assert holder.held == []


def test_hook_tracekit_keep_trace(store_uri, experiment_name):
    class KeepErrorsOnly:
        @hookimpl
        def tracekit_keep_trace(self, trace):
            return trace.has_error

    reader = _run(store_uri, experiment_name, KeepErrorsOnly(), n=2)
    assert reader.traces() == []
    assert tk.counters()["core.traces_dropped.sampled_out"] == 2


def test_hook_tracekit_process_trace(store_uri, experiment_name):
    class Upper:
        @hookimpl
        def tracekit_process_trace(self, trace):
            for span in trace.spans:
                if isinstance(span.inputs, dict) and "message" in span.inputs:
                    span.inputs["message"] = span.inputs["message"].upper()
            trace.tags["processed"] = "yes"

    reader = _run(store_uri, experiment_name, Upper())
    trace = reader.one()
    assert trace.data.spans[0].inputs == {"message": "M0"}
    assert trace.info.tags["processed"] == "yes"


def test_hook_tracekit_export_traces(store_uri, experiment_name):
    class Copy:
        def __init__(self):
            self.batches = []

        @hookimpl
        def tracekit_export_traces(self, traces):
            self.batches.append([t.to_dict() for t in traces])

    copy = Copy()
    reader = _run(store_uri, experiment_name, copy, n=2)
    assert len(copy.batches) == 2
    assert copy.batches[0][0]["spans"][0]["inputs"] == {"message": "m0"}
    assert len(reader.traces()) == 2  # the MLflow core plugin exported too


def test_hook_tracekit_flush(store_uri, experiment_name):
    class Slow:
        @hookimpl
        def tracekit_flush(self, timeout):
            return False  # still pending

    _run(store_uri, experiment_name, Slow())
    assert tk.flush(0.1) is False


def test_hook_tracekit_shutdown(store_uri, experiment_name):
    class Closer:
        closed_with = None

        @hookimpl
        def tracekit_shutdown(self, timeout):
            Closer.closed_with = timeout

    _run(store_uri, experiment_name, Closer())
    tk.disable(timeout=2.5)
    assert Closer.closed_with == 2.5


def test_hook_tracekit_counters(store_uri, experiment_name):
    class Counting:
        n = 0

        @hookimpl
        def tracekit_span_end(self, span):
            Counting.n += 1

        @hookimpl
        def tracekit_counters(self):
            return {"spans": Counting.n}

    _run(store_uri, experiment_name, Counting())
    assert tk.counters()["Counting.spans"] == 4


def test_hook_tracekit_traces_exported(store_uri, experiment_name):
    class Stored:
        def __init__(self):
            self.batches = []

        @hookimpl
        def tracekit_traces_exported(self, traces):
            self.batches.append([(t.spans[0].inputs, t.tags.get("processed")) for t in traces])

    stored = Stored()
    reader = _run(store_uri, experiment_name, stored, n=2)
    assert len(reader.traces()) == 2
    # after export, materialized: inputs are JSON-able values
    assert stored.batches == [[({"message": "m0"}, None)], [({"message": "m1"}, None)]]


def test_hook_tracekit_traces_exported_failure_never_affects_delivery(store_uri, experiment_name):
    class Broken:
        @hookimpl
        def tracekit_traces_exported(self, traces):
            raise RuntimeError("metrics backend down")

    class Aborting:
        @hookimpl
        def tracekit_traces_exported(self, traces):
            raise tk.TracekitAbort("not here")

    tk.enable(plugins=[Broken(), Aborting()], tracking_uri=store_uri, experiment=experiment_name)
    dspy.configure(lm=dummy_lm(n=5, intent="x"))
    dspy.Predict(IntentSig)(message="m0")
    counters = tk.counters()
    assert len(TraceReader(store_uri, experiment_name).traces()) == 1
    assert counters["core.traces_exported"] == 1
    assert "core.traces_dropped.export_error" not in counters
    assert counters["core.hook_errors.Broken.tracekit_traces_exported"] == 1


def test_hook_tracekit_traces_exported_not_called_when_export_fails(store_uri, experiment_name):
    class FailingStore:
        @hookimpl
        def tracekit_export_traces(self, traces):
            raise OSError("disk full")

    class Stored:
        calls = 0

        @hookimpl
        def tracekit_traces_exported(self, traces):
            Stored.calls += 1

    tk.enable(plugins=[FailingStore(), Stored()], tracking_uri=store_uri, experiment=experiment_name)
    dspy.configure(lm=dummy_lm(n=5, intent="x"))
    dspy.Predict(IntentSig)(message="m0")
    assert tk.counters()["core.traces_dropped.export_error"] == 1
    assert Stored.calls == 0


def test_hook_tracekit_alert(store_uri, experiment_name):
    from dspy_tracekit import delivery

    class Pager:
        alerts: ClassVar[list] = []

        @hookimpl
        def tracekit_alert(self, alert):
            Pager.alerts.append(alert)

    class Broken:
        @hookimpl
        def tracekit_alert(self, alert):
            raise RuntimeError("pager down")

    assert delivery.alert({"slo": "x", "state": "firing"}) is False  # not enabled: nobody to call
    tk.enable(plugins=[Broken(), Pager()], tracking_uri=store_uri, experiment=experiment_name)
    assert delivery.alert({"slo": "x", "state": "firing"}) is True
    assert Pager.alerts == [{"slo": "x", "state": "firing"}]
    assert tk.counters()["core.hook_errors.Broken.tracekit_alert"] == 1
