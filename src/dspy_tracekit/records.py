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
import time
import types
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

from ._delivery.secrets import MASK as SECRET_MASK
from ._delivery.secrets import is_secret_key
from ._delivery.secrets import strip_url_credentials as _strip_url
from ._delivery.tracebacks import format_exception

__all__ = ["SpanRecord", "TraceRecord", "Settings", "SpanKind", "jsonable"]


_rand = random.Random()
_getrandbits = _rand.getrandbits
if hasattr(os, "register_at_fork"):  # a forked child must not repeat its parent's trace ids
    os.register_at_fork(after_in_child=_rand.seed)
_EMPTY: dict = {}


def new_span_id() -> int:
    return _getrandbits(64) or 1


_time_ns = time.time_ns


def new_trace_id() -> int:
    """128 bits: the time in milliseconds (48 bits, as in a UUIDv7), then 80 random bits.

    The trace id leads the primary keys and indexes of the store's trace and span tables: ids that
    grow with time are appended where the last ones went, where random ones land on a random page of
    every index, and SQLite's inserts then cost more the bigger the store (100 → 190 µs per trace over
    the first 3,000 traces; flat at ~100 with these). The low 64 bits, which the sampler reads, stay
    random (W3C Trace Context level 2 asks for the rightmost 7 bytes).
    """
    return (_time_ns() // 1_000_000) << 80 | _getrandbits(80)


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
        "thread_id", "cpu_start_ns", "cpu_ns", "seen_of", "seen_fields",
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
        #: outputs that are a DSPy Prediction/Example: the object (``seen_of``) and a copy of its fields
        #: when the call returned; the copy is what is stored, unless a plugin replaced ``outputs`` since.
        #: Two fields, not a tuple: one tracked container less per span while the trace waits in a queue.
        self.seen_of: Any = None
        self.seen_fields: dict | None = None

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
    def materialize(self, marks: dict[str, int] | None = None, walk: _Walk | None = None) -> None:
        """Turn references into JSON-able values and drop credentials (delivery path only). A value
        that cannot be turned into JSON becomes a marker (see :func:`jsonable`), counted in ``marks``."""
        if self.materialized:
            return
        if walk is None:
            walk = _Walk(marks, scrub=True)
        value = walk.value
        if self.otel is not None:
            _read_otel_span(self)
        if self.inputs is None and (self.args or self.kwargs):
            self.inputs = _bind_inputs(self.func, self.instance, self.args, self.kwargs or {})
        # one walk makes the value JSON-able and masks credentials (what secrets.scrub does, fused)
        self.inputs = value(self.inputs, 0)
        seen = self.seen_fields
        self.outputs = value(seen if seen is not None and self.seen_of is self.outputs else self.outputs, 0)
        if self.params is not None:
            self.params = value(self.params, 0)
        if self.attributes:
            self.attributes = value(self.attributes, 0)
        if isinstance(self.error, BaseException):
            self.error = error_dict(self.error)
        if self.cpu_ns is not None:
            if self.attributes is None:
                self.attributes = {}
            # two readings of two clocks (and a shared CPU reading, resources.cpu_now): within [0, wall]
            wall_ns = (self.end_ns or self.start_ns) - self.start_ns
            self.attributes[CPU_ATTR] = min(max(self.cpu_ns, 0), max(wall_ns, 0)) / 1e6
        self.args = ()
        self.kwargs = None
        self.instance = None
        self.func = None
        self.otel = None
        self.seen_of = self.seen_fields = None
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

    def materialize(self) -> dict[str, int]:
        """Materialize every span; returns how many values became markers, by reason."""
        marks: dict[str, int] = {}
        walk = _Walk(marks, scrub=True)
        for span in self.spans:
            span.materialize(marks, walk)
        if self.in_flight is not None:
            self.tags[IN_FLIGHT_TAG] = str(self.in_flight)
        if self.peak_memory is not None:
            self.tags[PEAK_MEMORY_TAG] = str(self.peak_memory)
        return marks

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

class _Params:
    """A callable's signature, and the names its leading positional arguments bind to."""

    __slots__ = ("sig", "positional", "star", "skip_self")

    def __init__(self, sig: inspect.Signature, with_instance: bool):
        self.sig = sig
        params = list(sig.parameters.values())
        #: a plain function reached through an instance: its first parameter (self/cls) is the instance
        self.skip_self = with_instance and bool(params) and params[0].name in ("self", "cls")
        if self.skip_self:
            params = params[1:]
        names = []
        self.star = None
        for p in params:
            if p.kind is inspect.Parameter.VAR_POSITIONAL:
                self.star = p.name
                break
            if p.kind not in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
                break
            names.append(p.name)
        self.positional = tuple(names)


#: keyed by the function itself (a bound method's ``__func__``): DSPy makes a new ChatAdapter per call,
#: so bound methods as keys never hit and held every adapter alive.
_PARAMS_CACHE: dict[Any, _Params | None] = {}
_PARAMS_CACHE_MAX = 4_096


def _params(func, instance) -> _Params | None:
    target = getattr(func, "__func__", None) if isinstance(func, types.MethodType) else None
    bound = target is not None
    key = (target, True) if bound else (func, instance is not None)
    try:
        return _PARAMS_CACHE[key]
    except KeyError:
        pass
    except TypeError:  # unhashable callable: no cache
        key = None
    try:
        if bound:  # as inspect does for a bound method: without its first parameter (unless *args)
            sig = inspect.signature(target)
            params = list(sig.parameters.values())
            if params[0].kind is not inspect.Parameter.VAR_POSITIONAL:
                sig = sig.replace(parameters=params[1:])
            found = _Params(sig, False)
        else:
            found = _Params(inspect.signature(func), instance is not None)
    except (TypeError, ValueError, IndexError):
        found = None
    if key is not None:
        if len(_PARAMS_CACHE) >= _PARAMS_CACHE_MAX:
            _PARAMS_CACHE.clear()
        _PARAMS_CACHE[key] = found
    return found


def _bind_inputs(func, instance, args, kwargs) -> dict[str, Any]:
    """Name positional arguments after the function's parameters; fall back to ``args``."""
    if not args:
        return dict(kwargs)
    p = _params(func, instance) if func is not None else None
    if p is not None:
        n = len(p.positional)
        if not kwargs and (len(args) <= n or p.star is not None):  # the common case: all positional
            out = dict(zip(p.positional, args))
            if len(args) > n:
                out[p.star] = list(args[n:])
            return out
        sig = p.sig
        try:
            bound = sig.bind_partial(instance, *args, **kwargs) if p.skip_self else sig.bind_partial(*args, **kwargs)
            if p.skip_self:
                bound.arguments.pop(next(iter(sig.parameters)), None)
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
        "traceback": format_exception(exc)[-8000:],  # no ast: this runs on the delivery thread
    }


def _safe_str(obj) -> str:
    try:
        return str(obj)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break delivery
        return f"<unprintable {type(obj).__name__}>"


MAX_DEPTH = 20
MAX_STR = 1_000_000
#: numpy arrays with at most this many elements are stored as (nested) lists; larger ones as a marker.
MAX_ARRAY = 1_000
#: the form of a value that cannot be turned into JSON (docs/mlflow.md, "Values that are not JSON").
MARKER = "<unserializable {type}: {reason}>"


def jsonable(obj: Any, marks: dict[str, int] | None = None) -> Any:
    """A JSON-able copy of ``obj``: DSPy Predictions/Examples, pydantic models, dataclasses, enums,
    numpy values, bytes and arbitrary objects included. Never raises: a value that cannot be turned
    into JSON (a self-reference, a ``__str__`` that raises, a generator, a huge array, …) becomes a
    marker string ``<unserializable TYPE: REASON>``; strings longer than 1 MB are truncated. When given,
    ``marks`` counts what was replaced, by reason (``cycle``, ``depth``, ``unprintable``, ``not_consumed``,
    ``large_array``, ``non_finite``, ``surrogates``, ``truncated``, ``error``)."""
    return _Walk(marks).value(obj, 0)


#: dict keys already seen not to name a credential (checked for a whole dict at once, at C speed)
_PLAIN_KEYS: set[str] = set()
_PLAIN_KEYS_MAX = 10_000


class _Walk:
    """One conversion: the containers on the current path (to see self-references) and the marks.

    With ``scrub`` (the materialize stage), the same walk also does what :func:`secrets.scrub` does to
    its result: values under credential keys are masked, ``user:password@`` is cut out of URLs."""

    __slots__ = ("marks", "path", "scrub")

    def __init__(self, marks: dict[str, int] | None, scrub: bool = False):
        self.marks = marks
        self.path: set[int] = set()
        self.scrub = scrub

    def mark(self, reason: str, obj: Any, detail: str) -> str:
        self.count(reason)
        return MARKER.format(type=type(obj).__name__, reason=detail)

    def count(self, reason: str) -> None:
        if self.marks is not None:
            self.marks[reason] = self.marks.get(reason, 0) + 1

    def value(self, obj: Any, depth: int) -> Any:
        t = type(obj)
        if t is str:
            if not obj.isascii() or len(obj) > MAX_STR:
                obj = self.text(obj)
            return _strip_url(obj) if self.scrub and "@" in obj else obj
        if obj is None or t is bool or t is int:
            return obj
        if t is float:
            return obj if obj - obj == 0.0 else self.non_finite()
        if t is dict or t is list:  # the common case, inline: walking a plain dict or list cannot raise
            ident = id(obj)
            if ident in self.path:
                return self.mark("cycle", obj, "refers to itself")
            if depth > MAX_DEPTH:
                return self.mark("depth", obj, f"nested deeper than {MAX_DEPTH} levels")
            self.path.add(ident)
            d = depth + 1
            value = self.value
            if t is dict:
                out = {(k if type(k) is str and k.isascii() else self.key(k)): value(v, d)
                       for k, v in list(obj.items())}
                if self.scrub and not _PLAIN_KEYS.issuperset(out):
                    _mask(out)
            else:
                out = [value(v, d) for v in list(obj)]
            self.path.discard(ident)
            return out
        try:
            return self._value(obj, depth)
        except Exception as exc:  # noqa: BLE001 - one odd value must never cost the whole trace
            return self.mark("error", obj, f"{type(exc).__name__} while converting")

    def non_finite(self) -> None:
        self.count("non_finite")  # NaN and ±inf are not JSON: stored as null
        return None

    def text(self, s: str) -> str:
        if len(s) > MAX_STR:
            self.count("truncated")
            s = s[:MAX_STR] + f"…<truncated {len(s) - MAX_STR} chars>"
        if not s.isascii():
            try:
                s.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: no store can write it as UTF-8
                self.count("surrogates")
                s = s.encode("utf-8", "backslashreplace").decode("utf-8")
        return s

    def string(self, s: str) -> str:
        """A string value (not a key): :meth:`text`, and URL credentials cut when scrubbing."""
        s = self.text(s)
        return _strip_url(s) if self.scrub else s

    def key(self, k: Any) -> str:
        if isinstance(k, str):
            return self.text(k)
        try:
            return self.text(str(k))
        except Exception as exc:  # noqa: BLE001
            return self.mark("unprintable", k, f"str() raised {type(exc).__name__}")

    def mapping(self, items: Any, d: int) -> dict:
        out = {self.key(k): self.value(v, d) for k, v in items}
        if self.scrub and not _PLAIN_KEYS.issuperset(out):
            _mask(out)
        return out

    def _value(self, obj: Any, depth: int) -> Any:
        if obj is True or obj is False or isinstance(obj, int) and not isinstance(obj, enum.Enum):
            return obj
        if isinstance(obj, float):
            return float(obj) if obj - obj == 0.0 else self.non_finite()
        if isinstance(obj, str):
            return self.string(str(obj))
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return f"<bytes: {len(obj)} bytes>"
        if isinstance(obj, enum.Enum):
            return self.value(obj.value, depth + 1)
        if isinstance(obj, (types.GeneratorType, types.AsyncGeneratorType, types.CoroutineType)):
            return self.mark("not_consumed", obj, "not consumed")  # iterating it would take the caller's items
        if isinstance(obj, type):
            return f"<class {obj.__module__}.{obj.__qualname__}>"
        if isinstance(obj, BaseException):
            message = _safe_str(obj)
            return {"type": type(obj).__name__, "message": _strip_url(message) if self.scrub else message}
        ident = id(obj)
        if ident in self.path:
            return self.mark("cycle", obj, "refers to itself")
        if depth > MAX_DEPTH:
            return self.mark("depth", obj, f"nested deeper than {MAX_DEPTH} levels")
        self.path.add(ident)
        try:
            return self._container(obj, depth + 1)
        finally:
            self.path.discard(ident)

    def _container(self, obj: Any, d: int) -> Any:
        if isinstance(obj, dict):
            return self.mapping(list(obj.items()), d)
        if isinstance(obj, (list, tuple, set, frozenset)):
            return [self.value(v, d) for v in list(obj)]
        store = _example_store(obj)  # DSPy Example / Prediction: their fields, walked like a dict
        if store is not None:
            return self.mapping(list(store.items()), d)
        module = type(obj).__module__
        if module == "numpy" or module.startswith("numpy."):
            return self._numpy(obj, d)
        to_dict = _attr(obj, "toDict")
        if callable(to_dict):
            try:
                return self.value(to_dict(), d)
            except Exception:  # noqa: BLE001, S110 - try the next way
                pass
        model_dump = _attr(obj, "model_dump")
        if callable(model_dump):
            try:
                return self.value(model_dump(mode="json"), d)
            except Exception:  # noqa: BLE001, S110 - try the next way
                pass
        if dataclasses.is_dataclass(obj):
            out = {f.name: self.value(getattr(obj, f.name, None), d) for f in dataclasses.fields(obj)}
            if self.scrub and not _PLAIN_KEYS.issuperset(out):
                _mask(out)
            return out
        return self._describe(obj)

    def _numpy(self, obj: Any, d: int) -> Any:
        shape = getattr(obj, "shape", None)
        if shape == ():  # a numpy scalar
            return self.value(obj.item(), d)
        size = getattr(obj, "size", None)
        if isinstance(size, int) and size <= MAX_ARRAY and callable(getattr(obj, "tolist", None)):
            return self.value(obj.tolist(), d)
        if isinstance(size, int):
            return self.mark("large_array", obj, f"{getattr(obj, 'dtype', '?')} array of shape {shape}, "
                                                 f"more than {MAX_ARRAY} elements")
        return self._describe(obj)

    def _describe(self, obj: Any) -> str:
        try:
            import dspy

            if isinstance(obj, dspy.Module):
                return f"<{type(obj).__name__}>"
            if isinstance(obj, dspy.BaseLM):
                return self.string(f"<{type(obj).__name__} {getattr(obj, 'model', '')}>")
        except Exception:  # noqa: BLE001, S110
            pass
        try:
            text = str(obj)
        except Exception as exc:  # noqa: BLE001 - a broken __str__ must not break delivery
            return self.mark("unprintable", obj, f"str() raised {type(exc).__name__}")
        if not isinstance(text, str):
            return self.mark("unprintable", obj, "str() did not return a string")
        return self.string(text if len(text) <= 10_000 else text[:10_000] + "…")


def _mask(out: dict) -> None:
    """Mask, in place, the values under credential keys of a converted dict (as ``secrets.scrub``)."""
    for k, v in out.items():
        if is_secret_key(k):
            if v is not None and v != "":
                out[k] = SECRET_MASK
        elif len(_PLAIN_KEYS) < _PLAIN_KEYS_MAX and len(k) <= 40 and k.isidentifier():
            _PLAIN_KEYS.add(k)  # names of fields, not data used as keys (ids, e-mail addresses)


def _attr(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name, None)
    except Exception:  # noqa: BLE001 - a __getattr__ that raises: as if the attribute were absent
        return None


_example_type: Any = None  # dspy's Example (Prediction's base), resolved on first use


def _example_store(obj: Any) -> dict | None:
    global _example_type
    if _example_type is None:
        try:
            from dspy.primitives.example import Example
        except Exception:  # noqa: BLE001 - DSPy without Example
            Example = ()  # noqa: N806
        _example_type = Example
    if _example_type and isinstance(obj, _example_type):
        store = obj.__dict__.get("_store")
        if type(store) is dict:
            return store
    return None
