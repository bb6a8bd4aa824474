"""The delivery path, for plugins that take traces off the calling thread (e.g. ``buffer``).

A plugin whose ``tracekit_take_trace`` returned ``True`` later calls, on its own thread::

    ready = prepare(batch)      # keep/drop (tail sampling) → materialize → process (redaction)
    export(ready)               # raises ExportError; the batch can be retried or spooled
    release(batch)              # optional, when done with the batch: see :func:`release`

A plugin that raises alerts (e.g. ``monitor``) calls :func:`alert` to reach every
``tracekit_alert`` implementation. A plugin that logs an exception from its own thread uses
:func:`format_exception` rather than ``exc_info=`` (``traceback`` calls ``ast`` on Python 3.11+, which
is not thread-safe on 3.11: python/cpython#106905).

``prepare`` never raises: traces dropped on the way are counted by the core. After ``prepare`` a
trace holds JSON-able values only, so ``trace.to_dict()`` / ``TraceRecord.from_dict()`` can spool it.
"""

from __future__ import annotations

import re
import sys
import weakref

from ._delivery.tracebacks import format_exception
from .records import SpanRecord, TraceRecord

__all__ = ["prepare", "export", "release", "alert", "ExportError", "SpanRecord", "TraceRecord", "is_transient",
           "format_exception"]


class ExportError(Exception):
    """Exporting a batch failed; ``__cause__`` is the store's own exception."""


def _manager():
    from . import _state

    rt = _state.delivering  # set until disable() has shut the plugins down: workers can finish their work
    if rt is None:
        raise RuntimeError("dspy_tracekit is not enabled")
    return rt.manager


def prepare(traces: list[TraceRecord]) -> list[TraceRecord]:
    """Run keep → materialize → process on ``traces``; return those to export (never raises)."""
    return _manager().prepare(traces)


def export(traces: list[TraceRecord]) -> None:
    """Export prepared traces through ``tracekit_export_traces``; raises :class:`ExportError`."""
    _manager().export(traces)


#: CPython 3.10–3.13 with the GIL, where ``sys.getrefcount`` counts every strong reference, locals and
#: arguments included (what release()'s expected counts assume, and what its tests check). 3.14 may count
#: borrowed references lower, and a free-threaded build counts differently: there release() does nothing,
#: rather than risk cutting a trace someone still holds.
_getrefcount = (sys.getrefcount if sys.implementation.name == "cpython" and sys.version_info < (3, 14)
                and getattr(sys, "_is_gil_enabled", lambda: True)() else None)
_getweakrefcount = weakref.getweakrefcount


def release(traces: list[TraceRecord]) -> int:
    """Let reference counting free the traces of ``traces`` that nothing else holds (call when done).

    A span points back to its trace (``span.trace``) and the trace holds its spans, so a delivered trace
    is otherwise freed only by the cyclic GC, which then has to find it (a burst of 3,000 traces left
    ~57,000 objects to it). For each trace that is held by nothing but ``traces`` (no other reference
    to the trace or to any of its spans, no weak reference to the trace), this cuts its spans' ``trace``
    back-references: nothing else can reach that trace, so nothing can see the change, and the trace is
    freed as soon as the caller drops ``traces``. A trace or span that anything else still holds (a
    plugin, a test, a ``SpanHandle``) is left exactly as it is. ``traces`` must be the caller's only
    reference to them (a list it drops next). Never raises. Does nothing outside CPython 3.10–3.13 with the
    GIL (see ``_getrefcount``).

    :return: how many traces were released.
    """
    if _getrefcount is None:
        return 0
    released = 0
    for trace in traces:
        try:
            spans = trace.spans
            # held by: the list, the loop variable, getrefcount's argument, and each span's back-reference
            if _getrefcount(trace) != 3 + len(spans) or _getweakrefcount(trace) or type(spans) is not list:
                continue
            for span in spans:
                # held by: trace.spans, the loop variable, getrefcount's argument (and trace.root)
                if span.trace is not trace or _getrefcount(span) != (4 if span is trace.root else 3):
                    break
            else:
                for span in spans:
                    span.trace = None
                released += 1
        except Exception:  # noqa: BLE001, S112 - not a TraceRecord as the core makes them: left as it is
            continue
    return released


def alert(payload: dict) -> bool:
    """Hand an alert to every ``tracekit_alert`` implementation (isolated: never raises for them).

    :return: False when tracing is not enabled (nothing was called), True otherwise.
    """
    from . import _state

    rt = _state.delivering
    if rt is None:
        return False
    mgr = rt.manager
    mgr.pm.hook.tracekit_alert(alert=payload)
    return True


_TRANSIENT_TEXT = ("database is locked", "connection refused", "connection reset", "timed out",
                   "temporarily unavailable", "max retries exceeded", "failed to establish",
                   "remote end closed", "too many requests", "service unavailable", "bad gateway",
                   "gateway timeout", "connectionerror", "could not connect to server",
                   "server closed the connection", "deadlock",
                   # a full disk under the store (SQLITE_FULL, ENOSPC): spooled, replayed when space is back
                   "database or disk is full", "no space left on device")
# an HTTP status named as such ("error code 503", "status: 429"), not any digits in a message:
# trace ids and other text in error messages contain "503" or "429" by chance
_TRANSIENT_STATUS = re.compile(r"(?:error code|status(?: code)?|http(?: error)?)\s*:?\s*(5\d\d|429)\b", re.I)


def _http_status(exc: BaseException) -> int | None:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return status
    get = getattr(exc, "get_http_status_code", None)
    # only for MLflow's errors that came back from a server: a plain MlflowException defaults to 500
    if callable(get) and type(exc).__name__ == "RestException":
        try:
            code = get()
            return code if isinstance(code, int) else None
        except Exception:  # noqa: BLE001
            return None
    return None


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: connection refused/reset, timeouts, HTTP 5xx/429, a locked database."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        status = _http_status(exc)
        if status is not None and (status == 429 or 500 <= status < 600) and status != 501:
            return True
        text = f"{type(exc).__name__}: {exc}".lower()
        if any(marker in text for marker in _TRANSIENT_TEXT) or _TRANSIENT_STATUS.search(text):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
