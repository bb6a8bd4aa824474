"""The request path: start and end spans as plain records, on the calling thread.

No serialization, no regex, no I/O here: a span costs an object, two clock reads, a context
variable set/reset and the plugins' span hooks.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from threading import get_ident
from time import thread_time_ns, time_ns
from typing import Any

from dspy_tracekit import _state, versioning
from dspy_tracekit._request import resources
from dspy_tracekit.errors import TracekitAbort
from dspy_tracekit.mlflow._compat import runtime_context, set_last_active_trace_id
from dspy_tracekit.mlflow.interop import DROPPED, sample
from dspy_tracekit.records import SpanKind, SpanRecord, TraceRecord

logger = logging.getLogger("dspy_tracekit")

_EMPTY: dict[str, str] = {}
current_span: ContextVar[SpanRecord | None] = ContextVar("dspy_tracekit_span", default=None)
current_tags: ContextVar[dict[str, str]] = ContextVar("dspy_tracekit_tags", default=_EMPTY)

_WORKLOAD = {SpanKind.EVALUATE: "evaluate", SpanKind.COMPILE: "compile"}
_VERSIONED_KINDS = (SpanKind.EVALUATE, SpanKind.COMPILE)  # analytics v2 (#15)


def _start_span(name: str, kind: str, span_type: str | None = None, instance: Any = None, func: Any = None,
               args: tuple = (), kwargs: dict | None = None, module_path: str | None = None, setup=None):
    """Open a span under the current one (or a new trace). Returns ``(span, token)``, or ``None``
    when tracing is off. Raises only a :class:`TracekitAbort` from a plugin (span then ended)."""
    mgr = _state.manager
    if mgr is None:
        return None
    parent = current_span.get()
    bridge = mgr.bridge
    # MLflow's context only matters at a root, or in a trace an MLflow span is part of
    found = bridge.mlflow_parent() if bridge is not None and (
        parent is None or parent.trace.mlflow_state is not None) else None
    if found is not None:
        if found is DROPPED:  # MLflow's own sampler dropped the user's trace: ours is part of it
            trace = TraceRecord()
            trace.sampled = False
            span = SpanRecord(trace, None, name, kind, span_type, instance, func, args, kwargs, time_ns())
            trace.root = span
        else:  # the innermost open span is the user's MLflow span: nest under it, same trace
            trace, parent_id = found
            span = SpanRecord(trace, parent_id, name, kind, span_type, instance, func, args, kwargs, time_ns())
            if trace.mlflow_state == "mlflow":
                trace.mlflow_state = "mixed"
            if trace.sampled:
                trace.spans.append(span)
                span.ctx_token = bridge.attach(trace)
            versioning.root_version(trace, kind, instance, args, kwargs, current_tags.get())  # analytics v2 (#15)
        span.tags = current_tags.get()
        span.module_path = module_path if module_path is not None or parent is None else parent.module_path
    elif parent is None:
        trace = TraceRecord()
        span = SpanRecord(trace, None, name, kind, span_type, instance, func, args, kwargs, time_ns())
        trace.root = span
        tags = current_tags.get()
        span.tags = tags
        if tags:
            trace.tags.update(tags)
        span.module_path = module_path
        trace.workload = _WORKLOAD.get(kind, "default")
        resources.root_start(trace)  # analytics v2 (#15): traces in flight, peak memory
        versioning.root_version(trace, kind, instance, args, kwargs, tags)  # analytics v2 (#15): program version
        sample(mgr, trace)
        if trace.sampled:
            trace.spans.append(span)
        if bridge is not None:  # also when dropped: a user's MLflow span inside is then dropped with it
            span.ctx_token = bridge.attach(trace)
    else:
        trace = parent.trace
        span = SpanRecord(trace, parent.span_id, name, kind, span_type, instance, func, args, kwargs, time_ns())
        span.tags = current_tags.get()
        span.module_path = module_path if module_path is not None else parent.module_path
        if trace.sampled:
            trace.spans.append(span)
    if setup is not None:
        setup(span, instance, kwargs or {})  # details the span-start hooks need (e.g. an LM's model)
    if resources.cpu_on:  # analytics v2 (#15): thread CPU time
        span.thread_id, span.cpu_start_ns = get_ident(), thread_time_ns()
    token = current_span.set(span)
    if mgr.span_start_fns:
        try:
            for fn in mgr.span_start_fns:
                fn(span)
        except TracekitAbort as exc:
            _end_span(span, token, None, exc)
            raise
    return span, token


def start_span(*args, **kwargs):
    """Open a span (see :func:`_start_span`). Only a plugin's :class:`TracekitAbort` escapes: any other
    failure of tracekit's own turns into "no span" so the user's call goes on untraced."""
    try:
        return _start_span(*args, **kwargs)
    except TracekitAbort:
        raise
    except Exception as exc:  # noqa: BLE001
        _state.internal_error("start_span", exc)
        return None


def end_span(span: SpanRecord, token, outputs: Any = None, error: BaseException | None = None) -> None:
    """Close ``span``; never raises."""
    try:
        _end_span(span, token, outputs, error)
    except Exception as exc:  # noqa: BLE001
        _state.internal_error("end_span", exc)


def call_in_span(opened, fn, args: tuple, kwargs: dict):
    """Call ``fn`` inside the span ``opened`` (from :func:`start_span`; ``None`` = untraced), exactly once;
    its exception is recorded and re-raised untouched."""
    if opened is None:
        return fn(*args, **kwargs)
    span, token = opened
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        end_span(span, token, None, exc)
        raise
    end_span(span, token, result)
    return result


async def acall_in_span(opened, fn, args: tuple, kwargs: dict):
    """:func:`call_in_span` for a coroutine function."""
    if opened is None:
        return await fn(*args, **kwargs)
    span, token = opened
    try:
        result = await fn(*args, **kwargs)
    except BaseException as exc:
        end_span(span, token, None, exc)
        raise
    end_span(span, token, result)
    return result


def _end_span(span: SpanRecord, token, outputs: Any = None, error: BaseException | None = None) -> None:
    """Close ``span`` (never raises). Completes the trace when ``span`` is its root."""
    span.end_ns = time_ns()
    if span.cpu_start_ns is not None and span.thread_id == get_ident():  # analytics v2 (#15): CPU time
        span.cpu_ns = thread_time_ns() - span.cpu_start_ns
    span.outputs = outputs
    if error is not None:
        span.error = error
    if span.kind in _VERSIONED_KINDS:  # analytics v2 (#15): trial scores, compile result version
        versioning.on_span_end(span)
    if span.trace.root is span:  # analytics v2 (#15): traces in flight, peak memory
        resources.root_end(span.trace)
    try:
        if token is not None:
            current_span.reset(token)
    except ValueError:
        # reset from another context (e.g. an async generator finished elsewhere): restore the parent
        current_span.set(_parent_of(span))
    if span.ctx_token is not None:
        _detach_stand_in(span)
    mgr = _state.manager
    if mgr is None:
        return
    for fn in mgr.span_end_fns:
        try:
            fn(span)
        except Exception as exc:  # noqa: BLE001 - an abort after the call makes no sense: swallow
            mgr.hook_failed("core", "span_end", exc)
    if span.trace.root is span:
        finish_trace(mgr, span.trace)


def _detach_stand_in(span: SpanRecord) -> None:
    token, span.ctx_token = span.ctx_token, None
    try:
        runtime_context().detach(token)
    except Exception:  # noqa: BLE001, S110 - detached in another context (async): harmless
        pass


def _parent_of(span: SpanRecord) -> SpanRecord | None:
    if span.parent_id is None:
        return None
    for s in span.trace.spans:
        if s.span_id == span.parent_id:
            return s
    return None


def finish_trace(mgr, trace: TraceRecord) -> None:
    """A trace is complete (its root ended): hand it to the delivery path, or count it dropped."""
    if trace.mlflow_state == "ours":
        mgr.bridge.release(trace)
    if not trace.sampled:
        mgr.counters.add("traces_dropped.sampled_out_head")
        return
    mgr.counters.add("traces_finished")
    if trace.root is not None and trace.root.kind != SpanKind.MLFLOW:
        set_last_active_trace_id(trace.mlflow_trace_id)  # mlflow.get_last_active_trace_id() works
    try:
        for fn in mgr.take_fns:
            if fn(trace):
                return
    except Exception as exc:  # noqa: BLE001
        mgr.hook_failed("core", "take_trace", exc)
    mgr.deliver_inline(trace)


class SpanHandle:
    """What ``with dspy_tracekit.span(...) as s`` yields: set inputs, outputs and attributes."""

    __slots__ = ("_span",)

    def __init__(self, span: SpanRecord | None):
        self._span = span

    @property
    def record(self) -> SpanRecord | None:
        return self._span

    def set_inputs(self, inputs: Any) -> None:
        if self._span is not None:
            self._span.inputs = inputs

    def set_outputs(self, outputs: Any) -> None:
        if self._span is not None:
            self._span.outputs = outputs

    def set_attribute(self, key: str, value: Any) -> None:
        if self._span is not None:
            self._span.set_attribute(key, value)

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        for k, v in attributes.items():
            self.set_attribute(k, v)
