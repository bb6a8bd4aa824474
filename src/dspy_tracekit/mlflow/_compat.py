"""Every private MLflow / OpenTelemetry symbol tracekit's MLflow integration relies on, in one place.

Each name below is resolved by :func:`resolve_all` (``tests/test_mlflow_compat.py`` calls it on every
supported MLflow version), so a release that moves or renames one fails a test that names it instead
of breaking interop silently. Public entry points (``mlflow.start_span``, ``mlflow.get_tracking_uri``,
…) are used directly elsewhere.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

#: (module, attribute path) of every private symbol used; resolved by :func:`resolve_all`.
PRIVATE_SYMBOLS: tuple[tuple[str, str], ...] = (
    # MLflow's span processor: its start/end hooks are where MLflow-made spans enter tracekit
    ("mlflow.tracing.processor.base_mlflow", "BaseMlflowSpanProcessor.on_start"),
    ("mlflow.tracing.processor.base_mlflow", "BaseMlflowSpanProcessor.on_end"),
    ("mlflow.tracing.processor.base_mlflow", "BaseMlflowSpanProcessor.record_metrics_for_span"),
    ("mlflow.tracing.processor.base_mlflow", "BaseMlflowSpanProcessor._get_basic_trace_metadata"),
    ("mlflow.tracing.provider", "_get_mlflow_span_processor"),
    ("mlflow.tracing.provider", "provider.reset"),
    # the in-memory registry behind get_current_active_span / update_current_trace
    ("mlflow.tracing.trace_manager", "InMemoryTraceManager.get_instance"),
    ("mlflow.tracing.trace_manager", "InMemoryTraceManager.register_trace"),
    ("mlflow.tracing.trace_manager", "InMemoryTraceManager.get_mlflow_trace_id_from_otel_id"),
    ("mlflow.tracing.trace_manager", "InMemoryTraceManager.pop_trace"),
    # the redact plugin's span processor redacts the tags and metadata of traces MLflow exports itself
    ("mlflow.tracing.trace_manager", "InMemoryTraceManager.get_trace"),
    ("mlflow.tracing.trace_manager", "InMemoryTraceManager.get_instance()._lock"),  # see pop_trace_info
    ("mlflow.tracing.trace_manager", "InMemoryTraceManager.get_instance()._traces"),
    ("mlflow.tracing.trace_manager", "InMemoryTraceManager.get_instance()._otel_id_to_mlflow_trace_id"),
    ("mlflow.tracing.fluent", "_set_last_active_trace_id"),
    # MLflow's own tracing context (apart from the global OpenTelemetry one)
    ("mlflow.tracing.provider", "mlflow_runtime_context"),
    ("mlflow.tracing.provider", "get_current_context"),
    ("mlflow.environment_variables", "MLFLOW_USE_DEFAULT_TRACER_PROVIDER"),
    ("mlflow.environment_variables", "MLFLOW_TRACE_SAMPLING_RATIO"),
    ("opentelemetry.context", "_RUNTIME_CONTEXT"),
    ("mlflow.tracing.utils", "build_otel_context"),
    # what the user told MLflow about the destination
    ("mlflow.tracking._tracking_service.utils", "is_tracking_uri_set"),
    ("mlflow.tracking.fluent", "_active_experiment_id"),
    # which URI schemes MLflow has a tracking store for (built-ins and store plugins): enable() checks
    ("mlflow.tracking._tracking_service.utils", "_tracking_store_registry.get_store_builder"),
    ("mlflow.tracking.registry", "UnsupportedModelRegistryStoreURIException"),
    # MLflow's REST store caches a failed server-version lookup (see mlflow_store.log_spans)
    ("mlflow.store.tracking.rest_store", "RestStore._get_server_version"),
    # DSPy: SIMBA's own candidate runner, wrapped to record its trials (optimizer_trials.py, #15)
    ("dspy.teleprompt.simba", "wrap_program"),
    ("dspy.teleprompt.simba", "prepare_models_for_resampling"),
)


def _imported(module: str) -> bool:
    """Whether ``module`` is imported: before MLflow is, tracekit reads what MLflow would read without it."""
    return module in sys.modules


def _resolve(module: str, path: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in path.split("."):
        call = part.endswith("()")
        obj = getattr(obj, part[:-2] if call else part)
        if call:
            obj = obj()
    return obj


def resolve_all() -> dict[str, Any]:
    """Resolve every symbol of :data:`PRIVATE_SYMBOLS`; raises naming the first one missing."""
    out = {}
    for module, path in PRIVATE_SYMBOLS:
        try:
            out[f"{module}.{path}"] = _resolve(module, path)
        except (ImportError, AttributeError) as exc:
            raise ImportError(f"dspy-tracekit needs {module}.{path}, missing in this MLflow: {exc}") from exc
    return out


# ------------------------------------------------------------------------------------------------
# accessors used by the bridge and the core
# ------------------------------------------------------------------------------------------------

def dspy_simba_module():
    """``dspy.teleprompt.simba``, after checking the private names tracekit wraps in it resolve."""
    for module, path in PRIVATE_SYMBOLS:
        if module == "dspy.teleprompt.simba":
            _resolve(module, path)
    return importlib.import_module("dspy.teleprompt.simba")


def processor_class():
    from mlflow.tracing.processor.base_mlflow import BaseMlflowSpanProcessor

    return BaseMlflowSpanProcessor


def trace_manager():
    from mlflow.tracing.trace_manager import InMemoryTraceManager

    return InMemoryTraceManager.get_instance()


_runtime: list = []


def runtime_context(refresh: bool = False):
    """The context MLflow's ``@mlflow.trace`` / ``start_span`` look up their parent in (resolved once:
    MLflow reads an environment variable on every lookup otherwise; the MLflow bridge refreshes it)."""
    if _runtime and not refresh:
        return _runtime[0]
    from mlflow.environment_variables import MLFLOW_USE_DEFAULT_TRACER_PROVIDER

    if MLFLOW_USE_DEFAULT_TRACER_PROVIDER.get():
        from mlflow.tracing import provider

        runtime = provider.mlflow_runtime_context
    else:
        from opentelemetry import context as otel_context

        runtime = otel_context._RUNTIME_CONTEXT
    _runtime[:] = [runtime]
    return runtime


def set_last_active_trace_id(trace_id: str) -> None:
    """What ``mlflow.get_last_active_trace_id()`` returns. On the request path: a dict lookup, not an
    import statement (the bridge imported ``mlflow.tracing.fluent`` at ``enable()``)."""
    fluent = sys.modules.get("mlflow.tracing.fluent")
    if fluent is not None:
        fluent._set_last_active_trace_id(trace_id)


def build_otel_context(trace_id: int, span_id: int):
    from mlflow.tracing.utils import build_otel_context as build

    return build(trace_id, span_id)


def mlflow_sampling_ratio() -> float:
    """``MLFLOW_TRACE_SAMPLING_RATIO`` as MLflow reads it (1.0 when unset or invalid); before MLflow is
    imported, read the way MLflow's variable reads it (``float(value)``)."""
    try:
        if _imported("mlflow.environment_variables"):
            from mlflow.environment_variables import MLFLOW_TRACE_SAMPLING_RATIO

            ratio = MLFLOW_TRACE_SAMPLING_RATIO.get()
        else:
            raw = os.environ.get("MLFLOW_TRACE_SAMPLING_RATIO")
            ratio = 1.0 if raw is None else float(raw)
    except Exception:  # noqa: BLE001 - MLflow ignores an invalid value too
        return 1.0
    if ratio is None or not 0.0 <= ratio <= 1.0:
        return 1.0
    return float(ratio)


def mlflow_tracking_uri() -> tuple[str, bool]:
    """MLflow's current tracking URI and whether the user set it (env or ``set_tracking_uri()``).

    Before MLflow's tracking module is imported nobody can have called ``set_tracking_uri()``: then only
    ``MLFLOW_TRACKING_URI`` counts (as MLflow reads it), and MLflow is not imported for it.
    """
    if not _imported("mlflow.tracking._tracking_service.utils"):
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        return (uri, True) if uri else ("", False)
    import mlflow
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    return mlflow.get_tracking_uri(), bool(is_tracking_uri_set())


def unsupported_tracking_uri(uri: str) -> list[str] | None:
    """None when MLflow has a tracking store for ``uri``'s scheme, else the schemes it supports."""
    if (uri.startswith("sqlite:") and not _imported("mlflow.tracking._tracking_service.utils")
            and importlib.util.find_spec("sqlalchemy") is not None):
        return None  # MLflow registers its database engines when SQLAlchemy is there: no need to import it
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry
    from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException

    try:
        _tracking_store_registry.get_store_builder(uri)
    except UnsupportedModelRegistryStoreURIException as exc:
        return sorted(exc.supported_uri_schemes)
    return None


def mlflow_experiment() -> tuple[str, str] | None:
    """What the user told MLflow about the experiment: ``("name", n)``, ``("id", i)`` or None."""
    # not imported: set_experiment() was not called
    fluent = sys.modules.get("mlflow.tracking.fluent") if _imported("mlflow.tracking.fluent") else None
    active = getattr(fluent, "_active_experiment_id", None)
    if active:
        return ("id", str(active))
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if name:
        return ("name", name)
    exp_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
    if exp_id:
        return ("id", exp_id)
    return None


def clear_rest_server_version_cache() -> None:
    from mlflow.store.tracking.rest_store import RestStore

    RestStore._get_server_version.cache_clear()


def pop_trace_info(otel_trace_id: int):
    """Remove a trace from MLflow's in-memory registry; return its ``TraceInfo`` (None if unknown).

    Cheaper than ``pop_trace`` (which also builds immutable copies of every span, unused here).
    """
    manager = trace_manager()
    lock = getattr(manager, "_lock", None)
    ids = getattr(manager, "_otel_id_to_mlflow_trace_id", None)
    traces = getattr(manager, "_traces", None)
    if lock is None or ids is None or traces is None:
        popped = manager.pop_trace(otel_trace_id)
        return None if popped is None else popped.trace.info
    with lock:
        mlflow_id = ids.pop(otel_trace_id, None)
        internal = traces.pop(mlflow_id, None) if mlflow_id else None
    return None if internal is None else internal.info


def reset_tracer_provider() -> None:
    """Make MLflow build its tracer provider (and span processors) afresh on its next span, keeping
    the user's destination and tracing configuration (unlike ``mlflow.tracing.provider.reset()``)."""
    from mlflow.tracing import provider

    provider.provider.reset()


def forget_mlflow_destination() -> None:
    """Undo ``mlflow.set_tracking_uri()`` / ``mlflow.set_experiment()`` (test isolation)."""
    import mlflow
    from mlflow.tracking import fluent

    mlflow.set_tracking_uri(None)  # also unsets MLFLOW_TRACKING_URI, which set_tracking_uri() exports
    fluent._active_experiment_id = None
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # set_experiment() exports it too
    reset_tracer_provider()  # MLflow's exporter holds the store of the working directory it started in
