"""Plain records of spans and traces.

On the calling thread a :class:`SpanRecord` holds references only (the call's ``args``/``kwargs``,
its result, the exception). :meth:`TraceRecord.materialize` — run on the delivery path — turns
them into JSON-able values (``inputs``, ``outputs``, ``error``), drops credentials, and releases the
references. Plugins on the delivery path (``tracekit_process_trace``) see materialized traces.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import os
import random
import traceback
from dataclasses import dataclass, field
from typing import Any

from dspy_tracekit.keys import (  # noqa: F401 - re-exported (defined once, there)
    CPU_ATTR,
    EXPERIMENT_ID_ATTR,
    IN_FLIGHT_TAG,
    INPUTS_ATTR,
    MODEL_ATTR,
    OUTPUTS_ATTR,
    PEAK_MEMORY_TAG,
    REQUEST_ID_ATTR,
    SPAN_TYPE_ATTR,
    TOKEN_USAGE_ATTR,
    VERSION_TAG,
)

__all__ = ["SpanRecord", "TraceRecord", "Settings", "SpanKind", "jsonable"]


_rand = random.Random()
_getrandbits = _rand.getrandbits
if hasattr(os, "register_at_fork"):  # a forked child must not repeat its parent's trace ids
    os.register_at_fork(after_in_child=_rand.seed)
_EMPTY: dict = {}


def new_span_id() -> int:
    return _getrandbits(64) or 1


def new_trace_id() -> int:
    return _getrandbits(128) or 1


class SpanKind:
    """What a span stands for; the MLflow translation maps each kind to a span type."""

    MODULE = "module"
    PREDICT = "predict"
    LM = "lm"
    ADAPTER_FORMAT = "adapter.format"
    ADAPTER_PARSE = "adapter.parse"
    TOOL = "tool"
    RETRIEVER = "retriever"
    EMBEDDER = "embedder"
    EVALUATE = "evaluate"
    COMPILE = "compile"
    CUSTOM = "custom"
    #: a span made through MLflow's own API (``@mlflow.trace``, ``mlflow.start_span``, MLflow autologgers)
    MLFLOW = "mlflow"


@dataclass(frozen=True)
class Settings:
    """The core's resolved settings, handed to plugins in ``tracekit_configure`` (read-only)."""

    tracking_uri: str
    experiment: str
    plugins: tuple[str, ...] = ()
    config_files: tuple[str, ...] = ()
    sources: dict = field(default_factory=dict)
    #: "all" or "dspy": which traces made with MLflow's own API go through tracekit.
    mlflow_traces: str = "all"
    #: True when ``dspy-tracekit doctor`` configures the plugins only to check their tables: validate
    #: the config, but create nothing (no store, no directories, no threads, no servers).
    dry_run: bool = False


class SpanRecord:
    """One span: a module, predictor, LM, adapter, tool, retriever, evaluation, compile or custom call.

    Request-path fields are set by the instrumentation; ``inputs``/``outputs``/``error`` become
    JSON-able values on the delivery path (see :meth:`TraceRecord.materialize`).
    """

    __slots__ = (
        "trace", "span_id", "parent_id", "name", "kind", "span_type", "start_ns", "end_ns",
        "instance", "func", "args", "kwargs", "inputs", "outputs", "error", "attributes",
        "model", "provider", "params", "usage", "cache_hit", "first_token_ns", "cost",
        "module_path", "tags", "materialized", "events", "otel", "ctx_token",
        "thread_id", "cpu_start_ns", "cpu_ns",
    )

    def __init__(self, trace: TraceRecord, parent_id: int | None, name: str, kind: str,
                 span_type: str | None = None, instance: Any = None, func: Any = None,
                 args: tuple = (), kwargs: dict | None = None, start_ns: int = 0):
        self.trace = trace
        self.span_id = new_span_id()
        self.parent_id = parent_id
        self.name = name
        self.kind = kind
        self.span_type = span_type
        self.start_ns = start_ns
        self.end_ns: int | None = None
        self.instance = instance
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.inputs: Any = None
        self.outputs: Any = None
        self.error: Any = None
        self.attributes: dict[str, Any] | None = None
        #: LM calls: model name, provider, call parameters, token usage, cache hit.
        self.model: str | None = None
        self.provider: str | None = None
        self.params: dict[str, Any] | None = None
        #: ``{"input_tokens", "output_tokens", "total_tokens", "cached_tokens", "reasoning_tokens"}``
        self.usage: dict[str, int] | None = None
        self.cache_hit: bool | None = None
        self.first_token_ns: int | None = None
        #: set by a cost plugin: ``{"input_cost", "output_cost", "total_cost", ...}`` in USD.
        self.cost: dict[str, float] | None = None
        #: dotted path of the DSPy module that made the call, e.g. ``IntentDetector.classify``.
        self.module_path: str | None = None
        #: the ``dspy_tracekit.context(...)`` tags in force when the span started (do not mutate).
        self.tags: dict[str, str] = _EMPTY
        self.materialized = False
        #: span events other than the exception (``[{"name", "timestamp_ns", "attributes"}]``).
        self.events: list[dict[str, Any]] | None = None
        #: MLflow-made spans: the finished OpenTelemetry span, read on the delivery path.
        self.otel: Any = None
        #: the token of the stand-in this span put into MLflow's context (detached when it ends).
        self.ctx_token: Any = None
        #: thread CPU time: the thread the span started on, its CPU clock then, and the CPU time the
        #: span used (``None`` when off, or when the span ended on another thread).
        self.thread_id: int | None = None
        self.cpu_start_ns: int | None = None
        self.cpu_ns: int | None = None

    # -- convenience for plugins --------------------------------------------------------------
    def set_attribute(self, key: str, value: Any) -> None:
        if self.attributes is None:
            self.attributes = {}
        self.attributes[key] = value

    @property
    def duration_ns(self) -> int | None:
        return None if self.end_ns is None else self.end_ns - self.start_ns

    @property
    def is_root(self) -> bool:
        return self.trace.root is self

    def __repr__(self) -> str:
        return f"<SpanRecord {self.name} kind={self.kind} id={self.span_id:016x}>"

    # -- delivery path ------------------------------------------------------------------------
    def materialize(self) -> None:
        """Turn references into JSON-able values and drop credentials (delivery path only)."""
        if self.materialized:
            return
        from dspy_tracekit._delivery.secrets import scrub

        if self.otel is not None:
            _read_otel_span(self)
        if self.inputs is None and (self.args or self.kwargs):
            self.inputs = _bind_inputs(self.func, self.instance, self.args, self.kwargs or {})
        self.inputs = scrub(jsonable(self.inputs))
        self.outputs = scrub(jsonable(self.outputs))
        if self.params is not None:
            self.params = scrub(jsonable(self.params))
        if self.attributes:
            self.attributes = scrub(jsonable(self.attributes))
        if isinstance(self.error, BaseException):
            self.error = error_dict(self.error)
        if self.cpu_ns is not None:
            if self.attributes is None:
                self.attributes = {}
            self.attributes[CPU_ATTR] = self.cpu_ns / 1e6
        self.args = ()
        self.kwargs = None
        self.instance = None
        self.func = None
        self.otel = None
        self.materialized = True

    def to_dict(self) -> dict[str, Any]:
        self.materialize()
        return {
            "span_id": self.span_id, "parent_id": self.parent_id, "name": self.name, "kind": self.kind,
            "span_type": self.span_type, "start_ns": self.start_ns, "end_ns": self.end_ns,
            "inputs": self.inputs, "outputs": self.outputs, "error": self.error,
            "attributes": self.attributes, "model": self.model, "provider": self.provider,
            "params": self.params, "usage": self.usage, "cache_hit": self.cache_hit,
            "first_token_ns": self.first_token_ns, "cost": self.cost, "module_path": self.module_path,
            "tags": dict(self.tags), "events": self.events, "cpu_ns": self.cpu_ns,
        }

    @classmethod
    def from_dict(cls, trace: TraceRecord, d: dict[str, Any]) -> SpanRecord:
        s = cls(trace, d.get("parent_id"), d["name"], d["kind"], d.get("span_type"), start_ns=d["start_ns"])
        s.span_id = d["span_id"]
        for key in ("end_ns", "inputs", "outputs", "error", "attributes", "model", "provider", "params",
                    "usage", "cache_hit", "first_token_ns", "cost", "module_path", "events", "cpu_ns"):
            setattr(s, key, d.get(key))
        s.tags = dict(d.get("tags") or {})
        s.materialized = True
        return s


class TraceRecord:
    """A trace: its spans in start order, context tags, and what plugins attach to it."""

    __slots__ = ("trace_id", "root", "spans", "tags", "metadata", "attributes", "sampled", "workload",
                 "mlflow_state", "in_flight", "memory_start", "peak_memory", "__weakref__")

    def __init__(self, trace_id: int | None = None):
        self.trace_id = trace_id if trace_id is not None else new_trace_id()
        self.root: SpanRecord | None = None
        self.spans: list[SpanRecord] = []
        #: context tags (``dspy_tracekit.context(...)``) and plugin tags → MLflow trace tags.
        self.tags: dict[str, str] = {}
        #: MLflow trace metadata (``mlflow.update_current_trace(metadata=...)``, session, user).
        self.metadata: dict[str, str] = {}
        #: free space for plugins (e.g. ``sampling.probability``, ``cost.total``); JSON-able values.
        self.attributes: dict[str, Any] = {}
        self.sampled = True
        #: ``"evaluate"``, ``"compile"`` or ``"default"``: what kind of run the trace's root is.
        self.workload = "default"
        #: MLflow's in-memory trace registry knows this trace (an MLflow span is or was part of it):
        #: None = no; "ours" = registered by tracekit (root made by DSPy); "mlflow" = MLflow's root.
        self.mlflow_state: str | None = None
        #: traces of this process in flight when this one started (this one included).
        self.in_flight: int | None = None
        #: optional (``peak_memory = true``): traced memory when the root started, and the peak
        #: above it while the trace ran, in bytes (``tracemalloc``).
        self.memory_start: int | None = None
        self.peak_memory: int | None = None

    @property
    def mlflow_trace_id(self) -> str:
        return f"tr-{self.trace_id:032x}"

    @property
    def start_ns(self) -> int:
        return self.root.start_ns if self.root else 0

    @property
    def end_ns(self) -> int | None:
        return self.root.end_ns if self.root else None

    @property
    def duration_ns(self) -> int | None:
        return self.root.duration_ns if self.root else None

    @property
    def has_error(self) -> bool:
        return any(s.error is not None for s in self.spans)

    @property
    def status(self) -> str:
        return "ERROR" if self.root is not None and self.root.error is not None else "OK"

    def materialize(self) -> None:
        for span in self.spans:
            span.materialize()
        if self.in_flight is not None:
            self.tags[IN_FLIGHT_TAG] = str(self.in_flight)
        if self.peak_memory is not None:
            self.tags[PEAK_MEMORY_TAG] = str(self.peak_memory)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id, "tags": self.tags, "metadata": self.metadata,
            "attributes": jsonable(self.attributes),
            "workload": self.workload, "spans": [s.to_dict() for s in self.spans],
            "in_flight": self.in_flight, "peak_memory": self.peak_memory,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TraceRecord:
        t = cls(d["trace_id"])
        t.tags = dict(d.get("tags") or {})
        t.metadata = dict(d.get("metadata") or {})
        t.attributes = dict(d.get("attributes") or {})
        t.workload = d.get("workload", "default")
        t.in_flight = d.get("in_flight")
        t.peak_memory = d.get("peak_memory")
        t.spans = [SpanRecord.from_dict(t, sd) for sd in d["spans"]]
        t.root = next((s for s in t.spans if s.parent_id is None), t.spans[0] if t.spans else None)
        return t

    def __repr__(self) -> str:
        name = self.root.name if self.root else "?"
        return f"<TraceRecord {self.mlflow_trace_id} {name} spans={len(self.spans)}>"


# ----------------------------------------------------------------------------------------------
# Delivery-path helpers
# ----------------------------------------------------------------------------------------------

_SIG_CACHE: dict[Any, inspect.Signature | None] = {}


def _signature(func):
    try:
        return _SIG_CACHE[func]
    except (KeyError, TypeError):
        pass
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        sig = None
    try:
        _SIG_CACHE[func] = sig
    except TypeError:
        pass
    return sig


def _bind_inputs(func, instance, args, kwargs) -> dict[str, Any]:
    """Name positional arguments after the function's parameters; fall back to ``args``."""
    if not args:
        return dict(kwargs)
    sig = _signature(func) if func is not None else None
    if sig is not None:
        try:
            params = list(sig.parameters.values())
            if instance is not None and params and params[0].name in ("self", "cls"):
                bound = sig.bind_partial(instance, *args, **kwargs)
                bound.arguments.pop(params[0].name, None)
            else:
                bound = sig.bind_partial(*args, **kwargs)
            out = {}
            for name, value in bound.arguments.items():
                kind = sig.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    out.update(value)
                elif kind is inspect.Parameter.VAR_POSITIONAL:
                    out[name] = list(value)
                else:
                    out[name] = value
            return out
        except TypeError:
            pass
    out = dict(kwargs)
    out["args"] = list(args)
    return out


#: MLflow span attributes that become SpanRecord fields rather than attributes (MLflow-made spans).
_OTEL_FIELDS = {INPUTS_ATTR: "inputs", OUTPUTS_ATTR: "outputs", SPAN_TYPE_ATTR: "span_type"}
#: MLflow's own bookkeeping, not the user's data: the request id is rewritten at export, and the
#: experiment id is the destination's (tracekit's config decides it).
_OTEL_DROPPED = frozenset({REQUEST_ID_ATTR, EXPERIMENT_ID_ATTR})


def _decode(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, tuple):
        return list(value)
    return value


def _read_otel_span(span: SpanRecord) -> None:
    """Fill an MLflow-made span's fields from its finished OpenTelemetry span (delivery path).

    MLflow stores every attribute JSON-encoded; they are decoded here so that plugins (redaction)
    see plain values like on every other span. Exceptions become ``error``; other events ``events``.
    """
    otel = span.otel
    attrs: dict[str, Any] = {}
    for key, raw in (otel.attributes or {}).items():
        if key in _OTEL_DROPPED:
            continue
        field_name = _OTEL_FIELDS.get(key)
        if field_name is not None:
            setattr(span, field_name, _decode(raw))
        else:
            attrs[key] = _decode(raw)
    if attrs:
        span.attributes = {**attrs, **(span.attributes or {})}
    usage = attrs.get(TOKEN_USAGE_ATTR)
    if isinstance(usage, dict):
        span.usage = usage
    model = attrs.get(MODEL_ATTR)
    if isinstance(model, str):
        span.model = model
    events = []
    for ev in otel.events or ():
        ev_attrs = dict(ev.attributes or {})
        if ev.name == "exception" and span.error is None:
            span.error = {"type": str(ev_attrs.get("exception.type", "Exception")),
                          "message": str(ev_attrs.get("exception.message", "")),
                          "traceback": str(ev_attrs.get("exception.stacktrace", ""))[-8000:]}
            continue
        events.append({"name": ev.name, "timestamp_ns": ev.timestamp,
                       "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in ev_attrs.items()}})
    if events:
        span.events = events
    status = getattr(otel, "status", None)
    if span.error is None and status is not None and getattr(status.status_code, "name", "") == "ERROR":
        desc = status.description or ""
        kind, _, message = desc.partition(": ")
        span.error = {"type": kind if message else "Error", "message": message or desc, "traceback": ""}
    if span.end_ns is None:
        span.end_ns = otel.end_time


def error_dict(exc: BaseException) -> dict[str, str]:
    return {
        "type": type(exc).__name__,
        "message": _safe_str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:],
    }


def _safe_str(obj) -> str:
    try:
        return str(obj)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break delivery
        return f"<unprintable {type(obj).__name__}>"


MAX_DEPTH = 20
MAX_STR = 1_000_000


def jsonable(obj: Any, _depth: int = 0) -> Any:
    """A JSON-able copy of ``obj``: DSPy Predictions/Examples, pydantic models, dataclasses, enums,
    bytes and arbitrary objects included. Strings longer than 1 MB are truncated with a marker."""
    if obj is None or obj is True or obj is False or isinstance(obj, (int, float)):
        if isinstance(obj, float) and obj != obj:  # NaN is not JSON
            return None
        return obj
    if isinstance(obj, str):
        if len(obj) > MAX_STR:
            return obj[:MAX_STR] + f"…<truncated {len(obj) - MAX_STR} chars>"
        return obj
    if _depth > MAX_DEPTH:
        return f"<{type(obj).__name__}: nested too deep>"
    d = _depth + 1
    if isinstance(obj, dict):
        return {str(k): jsonable(v, d) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v, d) for v in obj]
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return f"<bytes: {len(obj)} bytes>"
    if isinstance(obj, enum.Enum):
        return jsonable(obj.value, d)
    # DSPy Example / Prediction (and anything with a ``toDict``)
    to_dict = getattr(obj, "toDict", None)
    if callable(to_dict):
        try:
            return jsonable(to_dict(), d)
        except Exception:  # noqa: BLE001
            pass
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump) and not isinstance(obj, type):
        try:
            return jsonable(model_dump(mode="json"), d)
        except Exception:  # noqa: BLE001
            pass
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        try:
            return jsonable(dataclasses.asdict(obj), d)
        except Exception:  # noqa: BLE001
            pass
    if isinstance(obj, BaseException):
        return {"type": type(obj).__name__, "message": _safe_str(obj)}
    if isinstance(obj, type):
        return f"<class {obj.__module__}.{obj.__qualname__}>"
    return _describe(obj)


def _describe(obj) -> str:
    try:
        import dspy

        if isinstance(obj, dspy.Module):
            return f"<{type(obj).__name__}>"
        if isinstance(obj, dspy.BaseLM):
            return f"<{type(obj).__name__} {getattr(obj, 'model', '')}>"
    except Exception:  # noqa: BLE001
        pass
    text = _safe_str(obj)
    return text if len(text) <= 10_000 else text[:10_000] + "…"
