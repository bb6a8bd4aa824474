"""Helpers for the core tests (importable as ``tk_testing``: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import dspy

import dspy_tracekit as tk


class TraceReader:
    def __init__(self, uri: str, experiment: str):
        self.uri = uri
        self.experiment = experiment

    def traces(self):
        from mlflow.tracking import MlflowClient

        tk.flush(30)
        client = MlflowClient(self.uri)
        exp = client.get_experiment_by_name(self.experiment)
        if exp is None:
            return []
        infos = client.search_traces(locations=[exp.experiment_id], max_results=1000,
                                     order_by=["timestamp_ms ASC"])
        return [client.get_trace(t.info.trace_id) for t in infos]

    def one(self):
        traces = self.traces()
        assert len(traces) == 1, f"expected one trace, got {len(traces)}"
        return traces[0]


def tree_of(trace) -> dict:
    """{span name: parent span name} of a stored trace."""
    by_id = {s.span_id: s for s in trace.data.spans}
    return {s.name: (by_id[s.parent_id].name if s.parent_id else None) for s in trace.data.spans}


class IntentSig(dspy.Signature):
    """Classify the message."""

    message: str = dspy.InputField()
    intent: str = dspy.OutputField()


class Pipeline(dspy.Module):
    def __init__(self):
        super().__init__()
        self.classify = dspy.ChainOfThought(IntentSig)

    def forward(self, message):
        return self.classify(message=message)


def dummy_lm(n=20, **answer):
    answer = answer or {"reasoning": "because", "intent": "create_workflow"}
    return dspy.utils.DummyLM([answer] * n)


def mock_lm(text="[[ ## reasoning ## ]]\nr\n\n[[ ## intent ## ]]\nrun_agent\n\n[[ ## completed ## ]]", **kw):
    return dspy.LM("openai/gpt-4o-mini", cache=False, api_key="sk-test-not-a-real-key-000000", mock_response=text,
                   **kw)


@contextlib.contextmanager
def install_example_plugin(example: Path, site: Path, monkeypatch):
    """Make a plugin folder (module + pyproject.toml) discoverable exactly as ``pip install`` would: a
    ``*.dist-info`` whose ``entry_points.txt`` is generated from its ``pyproject.toml``, on ``sys.path``."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    project = tomllib.loads((example / "pyproject.toml").read_text())["project"]
    dist = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = ["[dspy_tracekit]"] + [f"{k} = {v}" for k, v in project["entry-points"]["dspy_tracekit"].items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(example))
    modules = [v.split(":")[0] for v in project["entry-points"]["dspy_tracekit"].values()]
    try:
        yield
    finally:
        for module in modules:
            sys.modules.pop(module, None)


def forget_relative_sqlite_stores() -> None:
    """Drop MLflow's (and tracekit's) cached stores for relative ``sqlite:///file.db`` URIs.

    MLflow caches one engine per URI string, resolved against the working directory of its first use;
    tests that each run in their own folder with the default ``sqlite:///mlflow.db`` would otherwise all
    write to the first test's file. (Private MLflow state: tests only.)
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._tracking_service import utils

    from dspy_tracekit.mlflow import store as mlflow_store

    engines = getattr(SqlAlchemyStore, "_engine_map", {})
    relative = [uri for uri in engines if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////")]
    for uri in relative:
        engines.pop(uri).dispose()
    if relative:
        utils._tracking_store_registry._get_store_with_resolved_uri.cache_clear()
        mlflow_store.reset()
