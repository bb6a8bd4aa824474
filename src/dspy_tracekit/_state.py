"""The tracer's runtime: one object that ``enable()`` builds and ``disable()`` tears down in a fixed order.

Two module attributes point at it:

* ``runtime`` — read by the request path on every span: tracing is on while it is set. ``disable()``
  clears it first, so no new span starts while the rest is torn down.
* ``delivering`` — read by the delivery path (``dspy_tracekit.delivery``): it stays set until the
  plugins have shut down, so a plugin's worker (the buffer's) still reaches the core's export while
  ``disable()`` flushes and stops it.

``manager`` and ``settings`` remain readable (``_state.manager``) for diagnostics and tests.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

logger = logging.getLogger("dspy_tracekit")

#: the live :class:`Runtime` (request path), or None when tracing is off.
runtime: Runtime | None = None
#: the runtime whose delivery path is usable (set from enable() until disable() has shut plugins down).
delivering: Runtime | None = None


class Runtime:
    """Everything one ``enable()`` set up: the plugin manager, the settings and the open traces.

    Teardown order (:meth:`close`): stop new spans → count what is still open → restore DSPy and
    MLflow → flush plugins → shut plugins down (the buffer spools what is left, its worker still
    exporting through the core) → unregister plugins → release resources. One deadline covers the
    flush and the shutdown, so ``disable(timeout=T)`` waits for the store at most ``T`` in all.
    """

    __slots__ = ("__weakref__", "_lock", "flush_timeout", "manager", "open_traces", "settings")

    def __init__(self, manager: Any, settings: Any, flush_timeout: float):
        self.manager = manager
        self.settings = settings
        self.flush_timeout = flush_timeout
        #: traces whose root span is open, by id: counted (not lost silently) if disable() comes first.
        #: Weak references in a plain dict (3x cheaper than a WeakValueDictionary on the request path):
        #: a root that never ends (an abandoned generator) must not keep its trace alive.
        self.open_traces: dict[int, weakref.ref] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ teardown
    def count_open(self) -> tuple[int, int]:
        """Count traces and spans still open now into ``core.traces_open_at_disable`` /
        ``core.spans_open_at_disable``; they end after tracing stopped and are not stored."""
        from .records import SpanKind

        traces = [trace for ref in list(self.open_traces.values()) if (trace := ref()) is not None]
        self.open_traces.clear()
        bridge = self.manager.bridge
        if bridge is not None:  # traces rooted in a user's MLflow span that is still open
            seen = {id(t) for t in traces}
            traces += [t for t in list(bridge.registry.values()) if id(t) not in seen
                       and t.root is not None and t.root.kind == SpanKind.MLFLOW and t.root.end_ns is None]
        spans = 0
        for trace in traces:
            spans += sum(1 for s in list(trace.spans) if s.end_ns is None) or 1  # an unsampled root: itself
        if traces:
            self.manager.counters.add("traces_open_at_disable", len(traces))
            self.manager.counters.add("spans_open_at_disable", spans)
            logger.warning("dspy-tracekit: disable() ran while %d trace(s) (%d span(s)) were still open; "
                           "they are not stored (core.traces_open_at_disable, core.spans_open_at_disable)",
                           len(traces), spans)
        return len(traces), spans

    def close(self, timeout: float | None = None) -> None:
        """Tear down in the documented order (see the class docstring); never leaves half a runtime."""
        global runtime, delivering
        from ._request.instrument import uninstrument
        from ._request.resources import reset as reset_resources

        mgr = self.manager
        wait = self.flush_timeout if timeout is None else timeout
        deadline = time.monotonic() + max(0.0, wait)
        if runtime is self:
            runtime = None  # request path: no new spans from here on
        try:
            try:
                self.count_open()
            finally:
                try:
                    uninstrument()
                finally:
                    from .mlflow.interop import unbridge_mlflow

                    unbridge_mlflow(mgr)  # MLflow gets its own export back
            try:
                mgr.flush(max(0.0, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - a plugin's flush must not stop the shutdown
                internal_error("flush", exc)
        finally:
            try:
                mgr.shutdown(max(0.0, deadline - time.monotonic()))
            finally:
                if delivering is self:
                    delivering = None
                reset_resources()  # analytics v2 (#15): stops tracemalloc if enable() started it


def active_manager() -> Any:
    """The live runtime's plugin manager, or None when tracing is off."""
    rt = runtime
    return None if rt is None else rt.manager


def __getattr__(name: str) -> Any:
    # read-only views kept for diagnostics (doctor, demo) and tests: the runtime owns both
    if name == "manager":
        rt = runtime
        return None if rt is None else rt.manager
    if name == "settings":
        rt = runtime
        return None if rt is None else rt.settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def internal_error(where: str, exc: BaseException) -> None:
    """A failure of tracekit's own bookkeeping: counted (and logged once) like a plugin's, never raised."""
    rt = runtime or delivering
    if rt is not None:
        rt.manager.hook_failed("core", where, exc)
    else:
        logging.getLogger("dspy_tracekit").debug("dspy-tracekit: %s failed: %s", where, exc)
