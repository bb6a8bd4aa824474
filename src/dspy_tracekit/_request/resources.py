"""Resource usage on the request path: thread CPU time per span, traces in flight, peak memory.

* CPU time (``cpu_time = true``, the default): ``time.thread_time_ns()`` when a span starts and when it
  ends, on the thread it started on. A span that ends on another thread records no CPU time (the two
  readings would be of different clocks). An ``async`` span runs on the event loop's thread: its CPU
  time includes whatever other tasks ran on that thread while it awaited — an upper bound.
* In flight: a lock-protected counter of traces started and not yet ended in this process; each root
  records the count when it started (itself included).
* Peak memory (``peak_memory = true``, off by default): ``tracemalloc`` is started at ``enable()``; each
  root records the traced memory when it starts and the highest traced memory seen when it ends, minus
  the start. ``tracemalloc`` keeps one peak per process: with traces running concurrently each one's
  peak covers the others' allocations too (an upper bound), and it slows every allocation of the
  process (see docs/analytics.md for measured figures).
"""

from __future__ import annotations

import threading
import tracemalloc
from typing import Any

from dspy_tracekit.records import TraceRecord

__all__ = ["configure", "cpu_on", "in_flight", "memory_on", "reset", "root_end", "root_start"]

#: read by the tracer on every span: module globals, not a lookup through settings.
cpu_on = True
memory_on = False
_in_flight = 0
_lock = threading.Lock()
_started_tracemalloc = False


def configure(core: dict[str, Any]) -> None:
    """Apply the core settings ``cpu_time`` and ``peak_memory`` (called by ``enable()``)."""
    global cpu_on, memory_on, _started_tracemalloc
    cpu_on = bool(core.get("cpu_time", True))
    memory_on = bool(core.get("peak_memory", False))
    if memory_on and not tracemalloc.is_tracing():
        tracemalloc.start()
        _started_tracemalloc = True


def reset() -> None:
    """``disable()``: stop what ``configure`` started."""
    global memory_on, _started_tracemalloc
    memory_on = False
    if _started_tracemalloc:
        _started_tracemalloc = False
        tracemalloc.stop()


def in_flight() -> int:
    return _in_flight


def root_start(trace: TraceRecord) -> None:
    global _in_flight
    with _lock:
        _in_flight += 1
        trace.in_flight = _in_flight
    if memory_on:
        try:
            if trace.in_flight == 1:  # alone: the process-wide peak can start from here
                tracemalloc.reset_peak()
            trace.memory_start = tracemalloc.get_traced_memory()[0]
        except Exception:  # noqa: BLE001, S110 - tracemalloc stopped meanwhile: no figure
            pass


def root_end(trace: TraceRecord) -> None:
    global _in_flight
    if trace.in_flight is None:
        return
    with _lock:
        _in_flight -= 1
    if trace.memory_start is not None:
        try:
            peak = tracemalloc.get_traced_memory()[1]
            trace.peak_memory = max(0, peak - trace.memory_start)
        except Exception:  # noqa: BLE001, S110 - tracemalloc stopped meanwhile: no figure
            pass

