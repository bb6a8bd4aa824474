"""dspy-tracekit plugin ``buffer``: batched background export that keeps up and loses nothing.

Enable it with ``plugins = [..., "buffer"]``. Finished traces are queued on the calling thread (O(1),
no serialization) and a background worker prepares (keep → redact) and exports them in batches.
If the store is unreachable, prepared traces go to an append-only on-disk spool that is replayed
when the store is back — or at the next ``enable()`` after a crash. Every trace that is not stored
is counted under ``buffer.dropped.<reason>`` or written to the dead-letter file.
"""

from __future__ import annotations

import atexit
import os
import time
from typing import Any

from dspy_tracekit.hookspecs import hookimpl
from dspy_tracekit.records import Settings, TraceRecord

from ._buffer import TraceBuffer
from ._config import DEFAULT_SPOOL_DIR, OVERFLOW_POLICIES, SPAN_BYTES_ESTIMATE, BufferConfig, parse_config

__all__ = [
    "DEFAULT_SPOOL_DIR",
    "OVERFLOW_POLICIES",
    "SPAN_BYTES_ESTIMATE",
    "BufferConfig",
    "TraceBuffer",
    "current",
    "parse_config",
]

_buffer: TraceBuffer | None = None


def current() -> TraceBuffer | None:
    """The active buffer (None when the plugin is not configured) — for tests and diagnostics."""
    return _buffer


@hookimpl
def tracekit_configure(config: dict[str, Any], settings: Settings) -> None:
    global _buffer
    cfg = parse_config(config)
    if getattr(settings, "dry_run", False):
        return  # doctor: the table is valid; no buffer, no spool directory
    old, _buffer = _buffer, None
    if old is not None:
        old.shutdown(1.0)
    buf = TraceBuffer(cfg, tracking_uri=settings.tracking_uri)
    buf.open_spool()  # raises ValueError only with spool_required = true
    _buffer = buf


@hookimpl
def tracekit_take_trace(trace: TraceRecord) -> bool | None:
    buf = _buffer
    return None if buf is None else buf.take(trace)


@hookimpl
def tracekit_flush(timeout: float) -> bool | None:
    buf = _buffer
    return None if buf is None else buf.flush(timeout)


@hookimpl
def tracekit_shutdown(timeout: float) -> None:
    global _buffer
    buf, _buffer = _buffer, None
    if buf is not None:
        buf.shutdown(timeout)


@hookimpl
def tracekit_counters() -> dict[str, int | float] | None:
    buf = _buffer
    return None if buf is None else buf.counters()


def _at_exit() -> None:
    """Exit-time flush within ``exit_timeout``; what does not make it is spooled or counted."""
    global _buffer
    buf, _buffer = _buffer, None
    if buf is None:
        return
    deadline = time.monotonic() + buf.cfg.exit_timeout
    buf.flush(buf.cfg.exit_timeout)
    buf.shutdown(max(0.0, deadline - time.monotonic()))


def _after_fork_in_child() -> None:
    # (the core re-seeds its own id generator at fork: dspy_tracekit.records)
    buf = _buffer
    if buf is not None:
        buf.after_fork_in_child()


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
