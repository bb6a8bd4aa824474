"""The delivery path, for plugins that take traces off the calling thread (e.g. ``buffer``).

A plugin whose ``tracekit_take_trace`` returned ``True`` later calls, on its own thread::

    ready = prepare(batch)      # keep/drop (tail sampling) → materialize → process (redaction)
    export(ready)               # raises ExportError; the batch can be retried or spooled

``prepare`` never raises: traces dropped on the way are counted by the core. After ``prepare`` a
trace holds JSON-able values only, so ``trace.to_dict()`` / ``TraceRecord.from_dict()`` can spool it.
"""

from __future__ import annotations

from .records import SpanRecord, TraceRecord

__all__ = ["prepare", "export", "ExportError", "SpanRecord", "TraceRecord", "is_transient"]


class ExportError(Exception):
    """Exporting a batch failed; ``__cause__`` is the store's own exception."""


def _manager():
    from . import _state

    mgr = _state.manager
    if mgr is None:
        raise RuntimeError("dspy_tracekit is not enabled")
    return mgr


def prepare(traces: list[TraceRecord]) -> list[TraceRecord]:
    """Run keep → materialize → process on ``traces``; return those to export (never raises)."""
    return _manager().prepare(traces)


def export(traces: list[TraceRecord]) -> None:
    """Export prepared traces through ``tracekit_export_traces``; raises :class:`ExportError`."""
    _manager().export(traces)


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: connection refused/reset, timeouts, HTTP 5xx/429, locked DB."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = f"{type(exc).__name__}: {exc}".lower()
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        for marker in ("database is locked", "connection refused", "connection reset", "timed out",
                       "temporarily unavailable", "max retries exceeded", "failed to establish",
                       "remote end closed", "503", "502", "504", "500 server error", "429",
                       "too many requests", "connectionerror", "could not connect to server",
                       "server closed the connection", "deadlock"):
            if marker in text:
                return True
        exc = exc.__cause__ or exc.__context__
    return False
