"""Hook specifications: one hook per step of the tracing pipeline.

The request path (calling thread)::

    tracekit_sample (at a trace's root) → tracekit_span_start / tracekit_span_end (every span)
    → tracekit_take_trace (root ended)

The delivery path (inline, or on the buffer's worker thread)::

    tracekit_keep_trace → tracekit_process_trace → tracekit_export_traces

Plus life-cycle hooks: tracekit_configure, tracekit_flush, tracekit_shutdown, tracekit_counters.

Hooks on the request path run on the user's thread for every span: keep them to a few
microseconds, and never serialize, match regexes or do I/O there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .records import Settings, SpanRecord, TraceRecord

PROJECT = "dspy_tracekit"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -------------------------------------------------------------------------
# Life cycle
# -------------------------------------------------------------------------


@hookspec
def tracekit_configure(config: dict[str, Any], settings: Settings) -> None:
    """Configure a plugin from its own config table, once per ``enable()``.

    Called for each plugin separately, with that plugin's table only: ``[tool.dspy-tracekit.<name>]``
    merged with ``DSPY_TRACEKIT_<NAME>_*`` environment variables and ``enable(config={<name>: ...})``.

    :param config: the plugin's table (a fresh dict; an empty dict when there is none).
    :param settings: the core's resolved settings (tracking URI, experiment, enabled plugin names);
        read-only.

    Raise :class:`ValueError` (or :class:`dspy_tracekit.errors.ConfigError`) naming the key for bad
    config: ``enable()`` fails with that message and the file the value came from.
    """


@hookspec
def tracekit_flush(timeout: float) -> bool | None:
    """Deliver every trace finished so far, waiting at most ``timeout`` seconds.

    :param timeout: seconds this plugin may wait.
    :return: ``False`` if traces were still pending when the timeout passed; ``True`` or ``None``
        when everything this plugin holds has been delivered.
    """


@hookspec
def tracekit_shutdown(timeout: float) -> None:
    """Release threads, files and connections; called by ``disable()`` and at interpreter exit.

    ``tracekit_flush`` has already been called. A plugin may be configured again after this.

    :param timeout: seconds this plugin may still spend (for example to close files).
    """


@hookspec
def tracekit_counters() -> dict[str, int | float] | None:
    """Report this plugin's counters (exported, dropped by reason, cost totals, …).

    :return: a flat mapping of counter name to number; names are prefixed with the plugin's name by
        the caller (``buffer.exported``).
    """


# -------------------------------------------------------------------------
# Request path (calling thread)
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def tracekit_sample(trace: TraceRecord) -> bool | None:
    """Decide at a trace's root span whether the trace is recorded.

    Called once per trace, when its root span starts (``trace.root`` is set, not yet ended).
    A dropped trace still calls ``tracekit_span_start`` / ``tracekit_span_end`` for each span (so
    that cost totals stay exact), but no span is kept and nothing is delivered.

    :param trace: the trace being started.
    :return: ``True`` to record it, ``False`` to drop it, ``None`` for no opinion (recorded).

    Stops at first non-None result.
    """


@hookspec
def tracekit_span_start(span: SpanRecord) -> None:
    """A span starts, on the calling thread, before the wrapped call runs.

    Spans made with MLflow's own API (``span.kind == "mlflow"``) pass here too, when MLflow starts them.

    :param span: the new span; ``span.trace.sampled`` tells whether the trace is recorded.

    Raising a :class:`dspy_tracekit.TracekitAbort` here stops the call before it is made (e.g. a cost
    budget on an LM span); the span ends with that error.
    """


@hookspec
def tracekit_span_end(span: SpanRecord) -> None:
    """A span ended, on the calling thread; ``span.outputs``, ``span.error``, ``span.usage`` are set.

    :param span: the finished span.
    """


@hookspec(firstresult=True)
def tracekit_take_trace(trace: TraceRecord) -> bool | None:
    """A recorded trace is complete (its root span ended). Take it for later delivery?

    :param trace: the finished trace.
    :return: ``True`` if this plugin took the trace (it then runs the delivery path itself, with
        :func:`dspy_tracekit.delivery.prepare` and :func:`dspy_tracekit.delivery.export`);
        ``None`` to let the core deliver it inline, on the calling thread.

    Stops at first non-None result.
    """


# -------------------------------------------------------------------------
# Delivery path (inline, or a plugin's worker thread)
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def tracekit_keep_trace(trace: TraceRecord) -> bool | None:
    """Keep or drop a finished trace (tail sampling).

    :param trace: the finished trace, not yet processed.
    :return: ``False`` to drop it (counted as sampled out), ``True`` to keep it, ``None`` for no
        opinion (kept).

    Stops at first non-None result.
    """


@hookspec
def tracekit_process_trace(trace: TraceRecord) -> None:
    """Change a kept trace in place before it is exported or written to disk (e.g. redaction).

    :param trace: the trace to change.

    Fails closed: if any implementation raises, the trace is dropped (and counted), never exported
    unprocessed.
    """


@hookspec
def tracekit_export_traces(traces: list[TraceRecord]) -> None:
    """Store a batch of processed traces.

    The core's MLflow plugin implements it. An implementation raises on failure so that the caller
    (the inline delivery or the buffer plugin) can count, retry or spool the batch.

    :param traces: processed traces, in completion order.
    """
