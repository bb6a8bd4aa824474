"""The request path: start and end spans as plain records, on the calling thread.

No serialization, no regex, no I/O here: a span costs an object, two clock reads, a context
variable set/reset and the plugins' span hooks.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from threading import get_ident
from time import time_ns
from typing import Any
from weakref import ref as _weakref

from dspy_tracekit import _state, versioning
from dspy_tracekit._request import resources
from dspy_tracekit._request.resources import cpu_now
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

#: containers up to this size also get their dict/list items copied; larger ones are copied one level.
_SNAPSHOT_ITEMS = 8
_example_type: Any = None  # dspy's Example (Prediction's base), resolved on first use
#: dspy's History: ``history.messages`` is a list that grows after the call (DSPy's ReActV2 appends
#: to it in place between its steps), so a History is copied too. Resolved on the first span.
_history_type: Any = None


def _resolve_dspy_types() -> None:
    global _example_type, _history_type
    try:
        from dspy.adapters.types.history import History
        from dspy.primitives.example import Example
    except Exception:  # noqa: BLE001 - another DSPy: those values are held as they are
        History = Example = ()  # noqa: N806
    _example_type, _history_type = Example, History


def _copy_history(history: Any) -> Any:
    try:
        return type(history).model_construct(messages=list(history.messages))
    except Exception:  # noqa: BLE001 - never let bookkeeping break the call
        return history


def snapshot(value: Any) -> Any:
    """What the call saw, for a value held until delivery: plain dicts and lists are copied (and their
    dict/list items, for small ones), so a key the caller adds after the call is not stored and the
    delivery path never walks a container the caller is changing. Other objects are kept as they are."""
    t = type(value)
    if t is dict:
        out = value.copy()
        if len(value) <= _SNAPSHOT_ITEMS:
            for k, v in value.items():
                t = type(v)
                if t is dict or t is list:
                    out[k] = out if v is value else v.copy()  # a self-reference stays one
                elif t is _history_type:
                    out[k] = _copy_history(v)
        return out
    if t is list:
        copied = value.copy()
        if len(value) <= _SNAPSHOT_ITEMS:
            for i, v in enumerate(value):
                t = type(v)
                if t is dict or t is list:
                    copied[i] = copied if v is value else v.copy()
                elif t is _history_type:
                    copied[i] = _copy_history(v)
        return copied
    if t is _history_type:
        return _copy_history(value)
    return value


def _snapshot_call(args: tuple, kwargs: dict | None) -> tuple[tuple, dict | None]:
    """``args``/``kwargs`` with their dict and list values snapshotted (the same objects when none is)."""
    if _history_type is None:
        _resolve_dspy_types()
    for a in args:
        t = type(a)
        if t is dict or t is list or t is _history_type:
            args = tuple([snapshot(a) for a in args])
            break
    if kwargs:
        copied = None
        for k, v in kwargs.items():
            t = type(v)
            if t is dict or t is list or t is _history_type:
                if copied is None:
                    copied = kwargs.copy()
                copied[k] = snapshot(v)
        if copied is not None:
            kwargs = copied
    return args, kwargs


def _snapshot_outputs(span: SpanRecord, outputs: Any) -> Any:
    """Outputs as returned: dicts and lists are copied; a DSPy ``Prediction``/``Example`` stays the
    same object (plugins and the version tracking match it by identity) and its fields are copied
    beside it."""
    t = type(outputs)
    if t is dict or t is list:
        return snapshot(outputs)
    if outputs is None or t is str or t is int or t is float or t is bool:
        return outputs
    if _example_type is None:
        _resolve_dspy_types()
    if _example_type and isinstance(outputs, _example_type):
        store = outputs.__dict__.get("_store")
        if type(store) is dict:
            span.seen_of, span.seen_fields = outputs, snapshot(store)
    return outputs


def _start_span(name: str, kind: str, span_type: str | None = None, instance: Any = None, func: Any = None,
               args: tuple = (), kwargs: dict | None = None, module_path: str | None = None, setup=None):
    """Open a span under the current one (or a new trace). Returns ``(span, token)``, or ``None``
    when tracing is off. Raises only a :class:`TracekitAbort` from a plugin (span then ended)."""
    rt = _state.runtime
    if rt is None:
        return None
    mgr = rt.manager
    parent = current_span.get()
    if parent is not None and parent.trace.mlflow_state is None:
        # the common case, in this frame: a child in a trace no MLflow span is part of (no MLflow context)
        trace = parent.trace
        if trace.sampled:  # a dropped trace stores nothing
            if args or kwargs:
                args, kwargs = _snapshot_call(args, kwargs)
            span = SpanRecord(trace, parent.span_id, name, kind, span_type, instance, func if args else None,
                              args, kwargs, time_ns())
            trace.spans.append(span)
        else:
            span = SpanRecord(trace, parent.span_id, name, kind, span_type, instance, func if args else None,
                              args, kwargs, time_ns())
        span.tags = current_tags.get()
        span.module_path = module_path if module_path is not None else parent.module_path
    else:
        span, kwargs = _open_root_or_in_mlflow(rt, mgr, parent, name, kind, span_type, instance, func, args,
                                               kwargs, module_path)
    if setup is not None:
        setup(span, instance, kwargs or {})  # details the span-start hooks need (e.g. an LM's model)
    if resources.cpu_on:  # analytics v2 (#15): thread CPU time
        span.thread_id, span.cpu_start_ns = get_ident(), cpu_now(span.start_ns)
    token = current_span.set(span)
    calls = mgr.span_start_calls
    if calls:
        try:
            for fn, plugin in calls:
                try:
                    fn(span)
                except TracekitAbort:
                    raise
                except Exception as exc:  # noqa: BLE001 - a plugin must not break the user's program
                    if plugin is None:  # pluggy's call loop (a wrapper): its implementations are isolated
                        raise
                    mgr.hook_failed(plugin, "tracekit_span_start", exc)
        except TracekitAbort as exc:
            _end_span(span, token, None, exc)
            raise
    return span, token


def _open_root_or_in_mlflow(rt, mgr, parent: SpanRecord | None, name: str, kind: str, span_type: str | None,
                            instance: Any, func: Any, args: tuple, kwargs: dict | None, module_path: str | None):
    """The span record of a root, or of a span in a trace an MLflow span is part of (MLflow's context is
    read); returns it with the kwargs it holds."""
    bridge = mgr.bridge
    if (args or kwargs) and (parent is None or parent.trace.sampled):  # a dropped trace stores nothing
        args, kwargs = _snapshot_call(args, kwargs)
    if not args:  # func only names positional arguments (at materialize): not held for the others
        func = None
    # MLflow's context only matters at a root, or in a trace an MLflow span is part of
    found = bridge.mlflow_parent() if bridge is not None else None
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
        rt.open_traces[id(trace)] = _weakref(trace)  # counted if disable() comes before its end
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
    return span, kwargs


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
    span.end_ns = end = time_ns()
    if span.cpu_start_ns is not None and span.thread_id == get_ident():  # analytics v2 (#15): CPU time
        span.cpu_ns = cpu_now(end) - span.cpu_start_ns  # kept within [0, wall] when materialized
    trace = span.trace
    span.outputs = _snapshot_outputs(span, outputs) if trace.sampled else outputs
    if error is not None:
        span.error = error
    if span.kind in _VERSIONED_KINDS:  # analytics v2 (#15): trial scores, compile result version
        versioning.on_span_end(span)
    root = trace.root is span
    if root:  # analytics v2 (#15): traces in flight, peak memory
        resources.root_end(trace)
    try:
        if token is not None:
            current_span.reset(token)
    except ValueError:
        # reset from another context (e.g. an async generator finished elsewhere): restore the parent
        current_span.set(_parent_of(span))
    if span.ctx_token is not None:
        _detach_stand_in(span)
    rt = _state.runtime
    if rt is None:
        return  # tracing stopped while the span was open: counted by disable() (spans_open_at_disable)
    mgr = rt.manager
    for fn, plugin in mgr.span_end_calls:
        try:
            fn(span)
        except TracekitAbort as exc:  # an abort after the call makes no sense: swallow
            mgr.hook_failed("core", "span_end", exc)
        except Exception as exc:  # noqa: BLE001 - a plugin must not break the user's program
            mgr.hook_failed(plugin or "core", "tracekit_span_end" if plugin else "span_end", exc)
    if root and trace.root is span:
        rt.open_traces.pop(id(trace), None)
        finish_trace(mgr, trace)


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
            self._span.inputs = snapshot(inputs)

    def set_outputs(self, outputs: Any) -> None:
        if self._span is not None:
            self._span.outputs = _snapshot_outputs(self._span, outputs)

    def set_attribute(self, key: str, value: Any) -> None:
        if self._span is not None:
            self._span.set_attribute(key, value)

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        for k, v in attributes.items():
            self.set_attribute(k, v)
