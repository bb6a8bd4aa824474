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
