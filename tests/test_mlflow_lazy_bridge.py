"""MLflow imported by the program after enable() — right after the first request, while the buffer's
worker makes its first export — is bridged exactly as when the program imported it before enable().

Issue #12 tried a lazy bridge (enable() left MLflow unimported; the worker's first export imported it):
under load the worker's import and the program's own ``import mlflow`` met as a concurrent circular
import, and the program's import failed with "cannot import name ... from partially initialized module"
(4 runs of 4 in parallel). enable() now imports MLflow on its own thread; these tests hold that.

Each case runs in a fresh interpreter (the test process has imported MLflow long ago): the same script
with MLflow imported before enable() and after it, compared trace by trace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_SCRIPT = r"""
import json, os, sys
when, uri, spool = sys.argv[1:4]
import dspy
if when == "before":
    import mlflow
import dspy_tracekit as tk
from dspy_tracekit import _state

tk.enable(plugins=["buffer"], tracking_uri=uri, experiment="lazy", config={"buffer": {"spool_dir": spool}})
out = {"mlflow_imported_by_enable": "mlflow" in sys.modules}
dspy.configure(lm=dspy.utils.DummyLM([{"reasoning": "r", "intent": "create_workflow"}] * 20))


class Sig(dspy.Signature):
    message: str = dspy.InputField()
    intent: str = dspy.OutputField()


class Program(dspy.Module):
    def __init__(self):
        super().__init__()
        self.classify = dspy.ChainOfThought(Sig)

    def forward(self, message):
        import mlflow

        with mlflow.start_span("database_query", span_type="TOOL") as span:  # a user span inside DSPy
            span.set_inputs({"message": message})
        return self.classify(message=message)


dspy.ChainOfThought(Sig)(message="first")  # DSPy only: the buffer's worker opens the store for its export
if when == "after-flush":
    assert tk.flush(300)
out["bridge_before_import"] = _state.manager.bridge is not None
import mlflow  # "after-race": while the worker's first export opens MLflow's store

out["last_active_at_import"] = mlflow.get_last_active_trace_id()  # the DSPy trace of "first"


@mlflow.trace(name="handle_request")
def handle(message):
    return Program()(message=message).intent


handle("second")  # the write-up's shape: user root, DSPy inside, user span inside DSPy's forward
with mlflow.start_span("mlflow_only") as span:  # MLflow's API alone
    span.set_inputs({"q": 1})
mlflow.dspy.autolog()
dspy.Predict(Sig)(message="third")
mlflow.dspy.autolog(disable=True)
assert tk.flush(300)
out["last_active"] = mlflow.get_last_active_trace_id()
out["hook_errors"] = sorted(k for k in tk.counters() if "hook_errors" in k)
tk.disable()
mlflow.flush_trace_async_logging()

from mlflow import MlflowClient

client = MlflowClient(uri)
traces = client.search_traces(locations=[client.get_experiment_by_name("lazy").experiment_id], max_results=50)
trees = []
for trace in traces:
    names = {s.span_id: s.name for s in trace.data.spans}
    trees.append(sorted([s.name, names.get(s.parent_id, "")] for s in trace.data.spans))
out["trees"] = sorted(trees)
out["first_trace_id"] = [t.info.trace_id for t in traces if t.data.spans[0].name == "ChainOfThought.forward"]
out["mlflows_own_store"] = os.path.exists("mlflow.db")
print(json.dumps(out))
"""


def _run(tmp_path, when: str, mode: str) -> dict:
    cwd = tmp_path / f"{when}-{mode}"
    cwd.mkdir()
    env = {**os.environ, "DSPY_TRACEKIT_MLFLOW_TRACES": mode, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        env.pop(key, None)
    out = subprocess.run([sys.executable, "-c", _SCRIPT, when, f"sqlite:///{cwd / 'tk.db'}", str(cwd / "spool")],
                         cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert out.returncode == 0 and lines, out.stderr[-4000:]
    return json.loads(lines[-1])


@pytest.mark.parametrize(("mode", "later"), [("all", "after-flush"), ("all", "after-race"), ("dspy", "after-race")])
def test_mlflow_imported_after_enable_is_bridged_exactly_as_when_imported_before(tmp_path, mode, later):
    before = _run(tmp_path, "before", mode)
    after = _run(tmp_path, later, mode)
    for result in (before, after):
        assert result["mlflow_imported_by_enable"] is True
        assert result["bridge_before_import"] is True
        assert result["hook_errors"] == []
        assert result["first_trace_id"] == [result["last_active_at_import"]]
        assert result["last_active"] is not None
    # the same traces, the same trees, the same split between tracekit's store and MLflow's own
    assert after["trees"] == before["trees"]
    assert after["mlflows_own_store"] == before["mlflows_own_store"] == (mode == "dspy")
    assert ["database_query", "Program.forward"] in next(t for t in after["trees"] if ["handle_request", ""] in t)


_DISABLED_FIRST = r"""
import json, os, sys
import dspy
import dspy_tracekit as tk

tk.enable(plugins=[], tracking_uri=sys.argv[1], experiment="lazy")
tk.disable()  # before the program imported MLflow: the MLflow it imports next is MLflow's own again
import mlflow
from mlflow.tracing import provider
from mlflow.tracing.processor.base_mlflow import BaseMlflowSpanProcessor

patched = [name for name, obj in (("on_start", BaseMlflowSpanProcessor.__dict__["on_start"]),
                                  ("on_end", BaseMlflowSpanProcessor.__dict__["on_end"]),
                                  ("_get_mlflow_span_processor", provider._get_mlflow_span_processor),
                                  ("update_current_trace", mlflow.update_current_trace))
           if hasattr(obj, "__wrapped__")]
with mlflow.start_span("after_disable"):
    pass
mlflow.flush_trace_async_logging()
print(json.dumps({"patched": patched, "own": mlflow.get_trace(mlflow.get_last_active_trace_id()).data.spans[0].name}))
"""


def test_after_disable_the_mlflow_the_program_imports_exports_by_itself(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DSPY_TRACEKIT_"))}
    out = subprocess.run([sys.executable, "-c", _DISABLED_FIRST, f"sqlite:///{tmp_path / 'tk.db'}"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert out.returncode == 0 and lines, out.stderr[-4000:]
    result = json.loads(lines[-1])
    assert result == {"patched": [], "own": "after_disable"}
    assert (tmp_path / "mlflow.db").exists()  # MLflow's own export, to its own default store


_IMPORTED_INSIDE_FORWARD = r"""
import json, sys
import dspy
import dspy_tracekit as tk

uri = sys.argv[1]
tk.enable(plugins=[], tracking_uri=uri, experiment="inside")


class Program(dspy.Module):
    def __init__(self):
        super().__init__()
        self.answer = dspy.Predict("question -> answer")

    def forward(self, question):
        import mlflow  # the program's first import of MLflow, inside a running DSPy call

        with mlflow.start_span("database_query"):
            pass
        return self.answer(question=question)


dspy.configure(lm=dspy.utils.DummyLM([{"answer": "4"}]))
Program()(question="2+2?")
assert tk.flush(120)
tk.disable()
from mlflow import MlflowClient

client = MlflowClient(uri)
traces = client.search_traces(locations=[client.get_experiment_by_name("inside").experiment_id])
trees = []
for trace in traces:
    names = {s.span_id: s.name for s in trace.data.spans}
    trees.append(sorted([s.name, names.get(s.parent_id, "")] for s in trace.data.spans))
print(json.dumps({"trees": trees}))
"""


def test_mlflow_first_imported_inside_a_dspy_call_nests_the_users_span_under_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DSPY_TRACEKIT_"))}
    out = subprocess.run([sys.executable, "-c", _IMPORTED_INSIDE_FORWARD, f"sqlite:///{tmp_path / 'tk.db'}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert out.returncode == 0 and lines, out.stderr[-4000:]
    (tree,) = json.loads(lines[-1])["trees"]  # one trace: the user's span did not start one of its own
    assert ["database_query", "Program.forward"] in tree and ["Program.forward", ""] in tree
    assert not (tmp_path / "mlflow.db").exists()
