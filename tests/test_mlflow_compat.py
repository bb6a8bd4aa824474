"""Every private MLflow / OpenTelemetry symbol tracekit uses resolves on the installed MLflow."""

from __future__ import annotations

import pytest

from dspy_tracekit.mlflow import _compat as mlflow_compat


def test_every_private_symbol_resolves_on_this_mlflow():
    resolved = mlflow_compat.resolve_all()
    assert set(resolved) == {f"{m}.{p}" for m, p in mlflow_compat.PRIVATE_SYMBOLS}
    assert callable(resolved["mlflow.tracing.processor.base_mlflow.BaseMlflowSpanProcessor.on_end"])


def test_a_missing_symbol_is_named():
    original = mlflow_compat.PRIVATE_SYMBOLS
    mlflow_compat.PRIVATE_SYMBOLS = (*original, ("mlflow.tracing.fluent", "_no_such_symbol"))
    try:
        with pytest.raises(ImportError, match=r"mlflow\.tracing\.fluent\._no_such_symbol"):
            mlflow_compat.resolve_all()
    finally:
        mlflow_compat.PRIVATE_SYMBOLS = original


def test_no_other_module_imports_mlflow_privates_directly():
    """The bridge, tracer and core reach MLflow's privates only through dspy_tracekit.mlflow._compat."""
    import pathlib
    import re

    src = pathlib.Path(mlflow_compat.__file__).parent.parent  # the whole package
    names = (r"(_RUNTIME_CONTEXT|InMemoryTraceManager|_set_last_active_trace_id|BaseMlflowSpanProcessor|"
             r"mlflow_runtime_context|_get_server_version|_active_experiment_id|is_tracking_uri_set)")
    pattern = re.compile(rf"^\s*(from\s+\S+\s+)?import\s+.*\b{names}\b|\.{names}\b", re.M)
    offenders = [p.name for p in src.rglob("*.py") if p != pathlib.Path(mlflow_compat.__file__) and pattern.search(p.read_text())]
    assert offenders == []


@pytest.mark.parametrize("raw", [None, "0.25", " 0.5 ", "1", "0", "1.5", "-0.1", "half", "", "nan"])
def test_sampling_ratio_read_without_mlflow_is_mlflows(monkeypatch, raw):
    if raw is None:
        monkeypatch.delenv("MLFLOW_TRACE_SAMPLING_RATIO", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACE_SAMPLING_RATIO", raw)
    with_mlflow = mlflow_compat.mlflow_sampling_ratio()
    monkeypatch.setattr(mlflow_compat, "_imported", lambda module: False)
    assert mlflow_compat.mlflow_sampling_ratio() == with_mlflow


@pytest.mark.parametrize("env", [None, "sqlite:///elsewhere.db", "http://127.0.0.1:5000", ""])
def test_tracking_uri_and_experiment_read_without_mlflow_are_mlflows(monkeypatch, env):
    for key, value in (("MLFLOW_TRACKING_URI", env), ("MLFLOW_EXPERIMENT_NAME", env and "exp-x")):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    uri, user_set = mlflow_compat.mlflow_tracking_uri()
    experiment = mlflow_compat.mlflow_experiment()
    monkeypatch.setattr(mlflow_compat, "_imported", lambda module: False)
    uri2, user_set2 = mlflow_compat.mlflow_tracking_uri()
    assert user_set2 == user_set
    assert not user_set or uri2 == uri  # the URI only counts when the user set it
    assert mlflow_compat.mlflow_experiment() == experiment


def test_sqlite_is_a_scheme_mlflow_has_a_store_for_without_importing_it(monkeypatch):
    assert mlflow_compat.unsupported_tracking_uri("sqlite:///x.db") is None
    monkeypatch.setattr(mlflow_compat, "_imported", lambda module: False)
    assert mlflow_compat.unsupported_tracking_uri("sqlite:///x.db") is None
