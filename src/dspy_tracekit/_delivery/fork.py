"""What a forked child needs from the core: counters of its own, and its traces stored when it ends.

A ``multiprocessing`` child (``fork`` start method) ends with ``os._exit()``: ``atexit`` handlers —
tracekit's flush among them — never run, so 0 of 300 traces were stored unless the child called
``flush()`` itself. multiprocessing runs its own finalizers first: one is registered in each child.
A child also starts with its parent's counters (they would be counted twice when both are summed),
and a child can find a module half-imported by another thread of its parent at ``fork()`` time, so
everything the delivery path imports is imported by the parent before it forks: tracekit's own modules
by ``enable()``, MLflow's and OpenTelemetry's (about 1 s) by the first ``fork()`` while tracing is on
(``os.register_at_fork(before=...)``) — not by ``enable()``, which a program that never forks would
pay for nothing (issue #12). The parent's import waits for one another thread may have under way.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing.util
import os
import sys

from .. import _state

logger = logging.getLogger("dspy_tracekit")

#: imported at enable(): a forked child must not import them (an import lock held by another thread
#: of the parent at fork time, or a half-initialized module, costs the child every trace)
DELIVERY_MODULES = (
    "dspy_tracekit._delivery.secrets", "dspy_tracekit.delivery", "dspy_tracekit.mlflow.plugin",
    "dspy_tracekit.mlflow.store", "dspy_tracekit.mlflow.rows", "mlflow.exceptions", "mlflow.tracking", "mlflow.tracing.client",
    "mlflow.entities.span", "mlflow.entities.trace_info", "mlflow.entities.trace_location",
    "mlflow.entities.trace_state", "mlflow.tracing.utils", "mlflow.tracing.otel.translation",
    "opentelemetry.trace", "opentelemetry.sdk.trace", "opentelemetry.sdk.resources",
)


def import_delivery_modules(upstream: bool = True) -> None:
    """Import :data:`DELIVERY_MODULES`; with ``upstream=False`` only tracekit's own (``enable()``)."""
    for name in DELIVERY_MODULES:
        if not upstream and not name.startswith("dspy_tracekit"):
            continue
        if name in sys.modules and not getattr(getattr(sys.modules[name], "__spec__", None), "_initializing", False):
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - an optional module; the delivery path reports it if used
            logger.debug("dspy-tracekit: could not import %s at enable(): %s", name, exc)


def _flush_at_child_exit() -> None:
    if _state.manager is None:
        return
    import dspy_tracekit

    dspy_tracekit._at_exit()  # what atexit does in a process that ends normally: flush, shut down


class _Marker:
    """multiprocessing calls its after-fork hooks for live objects only: this one lives forever."""


_MARKER = _Marker()


def _in_multiprocessing_child(_marker) -> None:
    # registered after multiprocessing cleared its parent's finalizers in the child
    multiprocessing.util.Finalize(None, _flush_at_child_exit, exitpriority=10)


def _before_fork() -> None:
    if _state.runtime is None and _state.delivering is None:
        return
    try:
        import_delivery_modules()
    except Exception as exc:  # noqa: BLE001 - never stop the program's fork
        _state.internal_error("before_fork", exc)


def _after_fork_in_child() -> None:
    mgr = _state.manager
    if mgr is not None:
        try:
            mgr.counters.reset()
        except Exception as exc:  # noqa: BLE001
            _state.internal_error("after_fork", exc)


multiprocessing.util.register_after_fork(_MARKER, _in_multiprocessing_child)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
