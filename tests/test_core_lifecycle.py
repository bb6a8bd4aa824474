"""enable/disable, deepcopy/pickle/save-load, optimizers, plugin isolation, fail-closed processing."""

from __future__ import annotations

import copy
import pickle
import warnings

import dspy
import pytest
from tk_testing import IntentSig, Pipeline, dummy_lm

import dspy_tracekit as tk
from dspy_tracekit import TracekitAbort, hookimpl


def test_enable_disable_twice_each_trace_once(store_uri, experiment_name):
    from tk_testing import TraceReader

    reader = TraceReader(store_uri, experiment_name)
    for _ in range(2):
        assert tk.enable(plugins=[], tracking_uri=store_uri, experiment=experiment_name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert tk.enable(plugins=[], tracking_uri=store_uri) is False
        assert any("while enabled" in str(w.message) for w in caught)
        dspy.configure(lm=dummy_lm())
        Pipeline()(message="x")
        assert tk.disable() is True
        assert tk.disable() is False
        Pipeline()(message="untraced")
    assert len(reader.traces()) == 2


def test_disable_restores_dspy_exactly(store_uri):
    from dspy.adapters.chat_adapter import ChatAdapter

    originals = (dspy.Module.__dict__["__call__"], dspy.BaseLM.__dict__["__call__"],
                 ChatAdapter.__dict__["format"], dspy.Tool.__dict__["__call__"])
    tk.enable(plugins=[], tracking_uri=store_uri)
    assert dspy.Module.__dict__["__call__"] is not originals[0]
    tk.disable()
    assert (dspy.Module.__dict__["__call__"], dspy.BaseLM.__dict__["__call__"],
            ChatAdapter.__dict__["format"], dspy.Tool.__dict__["__call__"]) == originals


def test_adapter_subclass_defined_after_enable_is_traced_once(traced):
    from dspy.adapters.chat_adapter import ChatAdapter

    class MyAdapter(ChatAdapter):
        pass

    dspy.configure(lm=dummy_lm(), adapter=MyAdapter())
    dspy.Predict(IntentSig)(message="x")
    names = [s.name for s in traced.one().data.spans]
    assert names.count("MyAdapter.format") == 1 and names.count("MyAdapter.parse") == 1


def test_program_stays_deepcopyable_picklable_and_saveable(traced, tmp_path):
    program = Pipeline()
    dspy.configure(lm=dummy_lm())
    program(message="warm")
    clone = copy.deepcopy(program)
    assert clone(message="x").intent == "create_workflow"
    predict = dspy.Predict(IntentSig)
    restored = pickle.loads(pickle.dumps(predict))
    assert type(restored) is dspy.Predict
    program.save(tmp_path / "p.json")
    loaded = Pipeline()
    loaded.load(tmp_path / "p.json")
    assert loaded(message="y").intent == "create_workflow"


def test_bootstrap_fewshot_compile_is_traced_as_one_chain(traced):
    dspy.configure(lm=dummy_lm(n=50))
    trainset = [dspy.Example(message=f"m{i}", intent="create_workflow").with_inputs("message") for i in range(4)]
    optimizer = dspy.BootstrapFewShot(metric=lambda ex, pred, trace=None: True, max_bootstrapped_demos=2,
                                      max_labeled_demos=2)
    compiled = optimizer.compile(Pipeline(), trainset=trainset)
    assert compiled(message="z").intent == "create_workflow"
    traces = traced.traces()
    compile_trace = next(t for t in traces if t.data.spans[0].name == "BootstrapFewShot.compile")
    root = compile_trace.data.spans[0]
    assert root.span_type == "CHAIN"
    assert sum(1 for s in compile_trace.data.spans if s.name == "Pipeline.forward") >= 2


class RaisesEverywhere:
    """A plugin whose every hook raises."""

    def __init__(self):
        self.calls = 0

    def _boom(self, *_):
        self.calls += 1
        raise RuntimeError("plugin bug")

    @hookimpl
    def tracekit_sample(self, trace):
        self._boom()

    @hookimpl
    def tracekit_span_start(self, span):
        self._boom()

    @hookimpl
    def tracekit_span_end(self, span):
        self._boom()

    @hookimpl
    def tracekit_take_trace(self, trace):
        self._boom()

    @hookimpl
    def tracekit_keep_trace(self, trace):
        self._boom()

    @hookimpl
    def tracekit_flush(self, timeout):
        self._boom()

    @hookimpl
    def tracekit_counters(self):
        self._boom()

    @hookimpl
    def tracekit_shutdown(self, timeout):
        self._boom()


def test_plugin_raising_in_every_hook_never_breaks_the_program(store_uri, experiment_name, caplog):
    from tk_testing import TraceReader

    plugin = RaisesEverywhere()
    tk.enable(plugins=[plugin], tracking_uri=store_uri, experiment=experiment_name)
    dspy.configure(lm=dummy_lm())
    assert Pipeline()(message="x").intent == "create_workflow"
    assert Pipeline()(message="y").intent == "create_workflow"
    counters = tk.counters()
    assert plugin.calls > 10
    assert counters["core.hook_errors.RaisesEverywhere.tracekit_span_start"] >= 12
    assert counters["core.hook_errors.RaisesEverywhere.tracekit_take_trace"] == 2
    # logged once per (plugin, hook), not once per call
    assert sum("failed in tracekit_span_start" in r.getMessage() for r in caplog.records) == 1
    assert len(TraceReader(store_uri, experiment_name).traces()) == 2


class Abort(TracekitAbort):
    pass


class AbortsLM:
    @hookimpl
    def tracekit_span_start(self, span):
        if span.kind == "lm":
            raise Abort("stop before the LM call")


def test_tracekit_abort_reaches_the_caller_before_the_lm_is_called(traced):
    from dspy_tracekit import _state

    _state.manager.register(AbortsLM())
    lm = dummy_lm()
    dspy.configure(lm=lm)
    with pytest.raises(Abort):
        dspy.Predict(IntentSig)(message="x")
    assert lm.history == []
    trace = traced.one()
    lm_span = next(s for s in trace.data.spans if s.span_type == "CHAT_MODEL")
    assert lm_span.status.status_code.value == "ERROR"


class BrokenProcessor:
    @hookimpl
    def tracekit_process_trace(self, trace):
        if trace.root.inputs.get("message") == "poison":
            raise ValueError("cannot process")


def test_failed_processing_drops_the_trace_never_exports_it_raw(traced):
    from dspy_tracekit import _state

    _state.manager.register(BrokenProcessor())
    dspy.configure(lm=dummy_lm())
    Pipeline()(message="poison")
    Pipeline()(message="fine")
    traces = traced.traces()
    assert [t.data.spans[0].inputs["message"] for t in traces] == ["fine"]
    assert tk.counters()["core.traces_dropped.process_error"] == 1


def test_debug_env_var_prints_every_hook_call(monkeypatch, store_uri, capsys):
    monkeypatch.setenv("DSPY_TRACEKIT_DEBUG_HOOKS", "1")
    tk.enable(plugins=[], tracking_uri=store_uri)
    dspy.configure(lm=dummy_lm())
    dspy.Predict(IntentSig)(message="x")
    err = capsys.readouterr().err
    assert "tracekit_span_start(span=<SpanRecord Predict.forward" in err
    assert "tracekit_export_traces" in err


def test_forked_child_makes_trace_ids_of_its_own():
    import os

    from dspy_tracekit.records import new_trace_id

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(write, str(new_trace_id()).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child_id = int(os.read(read, 100))
    assert child_id != new_trace_id()


def test_permanent_store_errors_are_not_transient():
    import sqlite3

    from dspy_tracekit.delivery import is_transient

    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert is_transient(ConnectionRefusedError(111, "Connection refused"))
    assert not is_transient(sqlite3.OperationalError("no such table: spans"))
    assert not is_transient(ValueError("bad span"))
    assert is_transient(RuntimeError("API request failed with error code 503 != 200"))
    # digits inside a trace id are not an HTTP status
    assert not is_transient(ValueError("malformed trace tr-8b503a4290e1c5029f5d3429ab500c11"))
