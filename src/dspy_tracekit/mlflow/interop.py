"""One pipeline for every span: spans made through MLflow's own API become tracekit spans.

While tracekit is enabled, MLflow still creates its live spans for the user's ``@mlflow.trace`` /
``mlflow.start_span`` (so ``span.set_inputs``, ``mlflow.get_current_active_span()`` and
``mlflow.update_current_trace()`` work as documented), but its span processor hands each span to
tracekit instead of MLflow's exporter:

* **start** (``BaseMlflowSpanProcessor.on_start``, after MLflow registered the span): a
  :class:`SpanRecord` of kind ``mlflow`` joins the trace's :class:`TraceRecord` — a new one, with
  tracekit's head-sampling decision, when the span is a root — and the span-start hooks run.
* **end** (``on_end``, instead of MLflow's export): the record notes its end, the span-end hooks run;
  when the root ends the trace takes tracekit's delivery path (buffer → keep → process → export).

DSPy spans stay plain records. Where MLflow must see one as a parent (a user's span inside a DSPy
``forward``), tracekit puts a stand-in span in MLflow's context whose span context is just
(trace id, current DSPy span id): no live MLflow span is made for a DSPy call. MLflow's in-memory
registry learns of a DSPy-rooted trace only when the first MLflow span joins it.

The bridge is installed by ``enable()`` (:func:`bridge_mlflow`), which imports MLflow on the calling thread
when the program has not (about 0.8 s). A lazy bridge — installed by a post-import hook when the program or
the buffer's first export imported MLflow — was tried and reverted (issue #12): the worker's import met the
program's own ``import mlflow`` on another thread as a concurrent circular import, and Python handed the
program a partially initialized module (``ImportError`` in the user's ``import mlflow``; the worker's
trace dead-lettered). Importing on the caller's thread inside ``enable()`` leaves no other thread of
tracekit's importing MLflow's package while the program may.

Every private MLflow symbol used here goes through :mod:`dspy_tracekit.mlflow._compat`.
"""

from __future__ import annotations

import inspect
import logging
import threading
from threading import get_ident

from dspy_tracekit import _state
from dspy_tracekit._request import resources
from dspy_tracekit._request.patches import PatchSet
from dspy_tracekit._request.resources import cpu_now
from dspy_tracekit.errors import TracekitAbort
from dspy_tracekit.keys import EXPERIMENT_ID_ATTR
from dspy_tracekit.mlflow import _compat as mlflow_compat
from dspy_tracekit.records import SpanKind, SpanRecord, TraceRecord

logger = logging.getLogger("dspy_tracekit")

#: ``mlflow_traces`` settings: "all" = every MLflow trace goes through tracekit; "dspy" = only those
#: that contain a span tracekit made (DSPy or ``tk.span``); MLflow exports the others itself.
MODES = ("all", "dspy")

#: MLflow trace metadata worth keeping: what the user set (no ``mlflow.`` prefix) plus these.
_KEPT_MLFLOW_METADATA = ("mlflow.trace.session", "mlflow.trace.user", "mlflow.modelId", "mlflow.sourceRun")
_DROPPED_TAGS = ("mlflow.traceName",)

_EXPERIMENT_ID = EXPERIMENT_ID_ATTR  # mlflow.tracing.constant.SpanAttributeKey.EXPERIMENT_ID
_PLACEHOLDER_EXPERIMENT = '"0"'  # JSON-encoded, as MLflow stores attribute values

#: a sampled-out stand-in: what a span gets as its trace when MLflow's own sampler dropped the parent.
DROPPED = object()

#: ``MLFLOW_TRACE_SAMPLING_RATIO`` as read at ``enable()`` (it narrows DSPy-rooted traces too)
_sampling_ratio = [1.0]
#: covers installing and removing a bridge, so that ``disable()`` never sees half a bridge
_install_lock = threading.Lock()


def bridge_mlflow(mgr, mode: str = "all") -> None:
    """Give ``mgr`` its MLflow bridge, importing MLflow on the calling thread if the program has not."""
    _sampling_ratio[0] = mlflow_compat.mlflow_sampling_ratio()
    _import_bridge_modules()  # here, on enable()'s thread: see the module docstring
    with _install_lock:
        _install(mgr, mode)


def unbridge_mlflow(mgr) -> None:
    """Give MLflow its own export back (``disable()``)."""
    with _install_lock:
        bridge = mgr.bridge
    if bridge is not None:
        bridge.uninstall()


def _import_bridge_modules() -> None:
    import mlflow  # noqa: F401
    import mlflow.tracing.fluent  # noqa: F401
    import mlflow.tracing.provider  # noqa: F401

    mlflow_compat.processor_class()


def _install(mgr, mode: str) -> None:
    bridge = MlflowBridge(mode=mode)
    try:
        bridge.install()
    except BaseException:
        bridge.uninstall()
        raise
    mgr.bridge = bridge  # last: the request path reads it without a lock


class MlflowBridge:
    """Routes MLflow-made spans into tracekit's traces and gives DSPy spans to MLflow as parents."""

    def __init__(self, mode: str = "all"):
        from opentelemetry import trace as otel_trace
        from opentelemetry.trace import INVALID_SPAN

        self.mode = mode
        #: OpenTelemetry trace id → the TraceRecord of every trace MLflow's registry knows.
        self.registry: dict[int, TraceRecord] = {}
        #: span id → record of MLflow-made spans still open.
        self._open: dict[int, SpanRecord] = {}
        #: mode "dspy": MLflow's own on_end calls held back until the root says whose trace it is.
        self._held: dict[int, list] = {}
        self._runtime = mlflow_compat.runtime_context(refresh=True)
        self._get_current = self._runtime.get_current
        self._get_span = otel_trace.get_current_span
        self._set_span = otel_trace.set_span_in_context
        self._invalid = INVALID_SPAN
        self._lazy_cls = _make_stand_in_class(self)
        self._patches = PatchSet()
        self._lock = threading.Lock()
        self._built_processor = False
        self.sampling_ratio = _sampling_ratio[0]

    # ------------------------------------------------------------------ install / uninstall
    def install(self) -> None:
        processor = mlflow_compat.processor_class()
        self._wrap(processor, "on_start", self._processor_on_start)
        self._wrap(processor, "on_end", self._processor_on_end)
        if self.mode == "all":
            # MLflow builds its exporter when its tracer provider starts, and the exporter opens the
            # default store (creating ./mlflow.db and running its migrations on the user's first span).
            # tracekit exports every MLflow trace itself, so MLflow gets a processor with no exporter.
            from mlflow.tracing import provider

            self._wrap(provider, "_get_mlflow_span_processor", self._build_processor)
        import mlflow
        from mlflow.tracing import fluent

        for module in (mlflow, fluent):
            if getattr(module, "update_current_trace", None) is not None:
                self._wrap(module, "update_current_trace", self._update_current_trace)

    def _wrap(self, owner, name: str, wrapper) -> None:
        self._patches.wrap(owner, name, wrapper)

    def _build_processor(self, wrapped, instance, args, kwargs):
        from mlflow.tracing import provider
        from mlflow.tracing.processor.mlflow_v3 import MlflowV3SpanProcessor

        self._built_processor = True
        export_metrics = getattr(provider, "should_export_otlp_metrics", lambda: False)()
        return MlflowV3SpanProcessor(span_exporter=_NoSpanExporter(), export_metrics=export_metrics,
                                     use_batch_processor=False)

    def uninstall(self) -> None:
        """Give MLflow its own export back exactly as it was (only our own wrappers are removed)."""
        self._patches.undo()
        if self._built_processor:
            # the tracer provider MLflow started meanwhile has our exporter-less processor: MLflow
            # builds its own again on its next span
            self._built_processor = False
            mlflow_compat.reset_tracer_provider()
        # traces still open in MLflow's registry finish through MLflow's own export from now on
        self.registry.clear()
        self._open.clear()
        held, self._held = self._held, {}
        for calls in held.values():
            for wrapped, args, kwargs in calls:
                try:
                    wrapped(*args, **kwargs)
                except Exception:  # noqa: BLE001, S110 - MLflow's own export; it logs its failures
                    pass

    # ------------------------------------------------------------------ request path: DSPy side
    def mlflow_parent(self):
        """The innermost open span, when it is MLflow's: ``(trace, span id)``, :data:`DROPPED` when
        MLflow's sampler dropped it, else None (the innermost span is ours, or there is none)."""
        otel = self._get_span(self._get_current())
        if otel is self._invalid or type(otel) is self._lazy_cls:
            return None
        ctx = otel.get_span_context()
        if not ctx.is_valid:
            return None
        trace = self.registry.get(ctx.trace_id)
        if trace is not None:
            return trace, ctx.span_id
        if not ctx.trace_flags.sampled:
            return DROPPED
        return None  # an OpenTelemetry span MLflow does not manage: our trace starts on its own

    def attach(self, trace: TraceRecord):
        """Put the stand-in for ``trace``'s current DSPy span into MLflow's context; returns the token."""
        return self._runtime.attach(self._set_span(self._lazy_cls(trace), self._get_current()))

    def register(self, trace: TraceRecord) -> None:
        """Make a DSPy-rooted trace known to MLflow's registry (first MLflow span joining it)."""
        with self._lock:
            if trace.mlflow_state is not None:
                return
            from mlflow.entities.trace_info import TraceInfo
            from mlflow.entities.trace_location import TraceLocation
            from mlflow.entities.trace_state import TraceState

            info = TraceInfo(trace_id=trace.mlflow_trace_id, trace_location=TraceLocation.from_experiment_id("0"),
                             request_time=trace.start_ns // 1_000_000, execution_duration=None,
                             state=TraceState.IN_PROGRESS, trace_metadata={}, tags={})
            mlflow_compat.trace_manager().register_trace(trace.trace_id, info)
            self.registry[trace.trace_id] = trace
            trace.mlflow_state = "ours"

    def release(self, trace: TraceRecord) -> None:
        """At the end of a trace MLflow's registry knows: forget it there, keep what the user set."""
        self.registry.pop(trace.trace_id, None)
        for span in trace.spans:  # MLflow spans left open when their trace ended: forget them too
            if span.end_ns is None and span.kind == SpanKind.MLFLOW:
                self._open.pop(span.span_id, None)
        info = mlflow_compat.pop_trace_info(trace.trace_id)
        if info is not None and trace.sampled:
            merge_trace_info(trace, info)

    # ------------------------------------------------------------------ MLflow's span processor
    def _processor_on_start(self, wrapped, instance, args, kwargs):
        span = args[0] if args else kwargs.get("span")
        try:
            if span.parent is None and _state.runtime is not None and _EXPERIMENT_ID not in span.attributes:
                # MLflow's root registration looks the experiment up (without set_experiment():
                # the default-experiment providers, ~0.5 ms of failed imports per trace); tracekit
                # decides the destination at export, so MLflow's TraceInfo only needs a placeholder.
                span.set_attribute(_EXPERIMENT_ID, _PLACEHOLDER_EXPERIMENT)
        except Exception as exc:  # noqa: BLE001 - never break the user's span
            _state.internal_error("mlflow_span_start", exc)
        result = wrapped(*args, **kwargs)
        try:
            self._mlflow_span_started(span)
        except Exception as exc:  # noqa: BLE001 - never break the user's span
            _state.internal_error("mlflow_span_start", exc)
        return result

    def _mlflow_span_started(self, otel) -> None:
        mgr = _state.active_manager()
        if mgr is None:
            return
        from dspy_tracekit._request.tracer import current_tags

        ctx = otel.context
        parent = otel.parent
        if parent is None:
            trace = TraceRecord(ctx.trace_id)
            trace.mlflow_state = "mlflow"
            record = SpanRecord(trace, None, otel.name, SpanKind.MLFLOW, None, start_ns=otel.start_time)
            record.span_id = ctx.span_id
            trace.root = record
            tags = current_tags.get()
            record.tags = tags
            if tags:
                trace.tags.update(tags)
            resources.root_start(trace)  # traces in flight, peak memory: as for a DSPy root
            sample(mgr, trace)
            self.registry[ctx.trace_id] = trace
        else:
            trace = self.registry.get(ctx.trace_id)
            if trace is None:
                return  # a span of an MLflow trace that started before enable(): MLflow's own
            record = SpanRecord(trace, parent.span_id, otel.name, SpanKind.MLFLOW, None, start_ns=otel.start_time)
            record.span_id = ctx.span_id
            record.tags = current_tags.get()
        record.otel = otel
        if resources.cpu_on:
            record.thread_id, record.cpu_start_ns = get_ident(), cpu_now(otel.start_time)
        self._open[ctx.span_id] = record
        if not trace.sampled:
            return
        trace.spans.append(record)
        for fn in mgr.span_start_fns:
            try:
                fn(record)
            except TracekitAbort as exc:  # MLflow would swallow it: an abort belongs to DSPy's calls
                mgr.hook_failed("core", "span_start(mlflow)", exc)

    def _processor_on_end(self, wrapped, instance, args, kwargs):
        try:
            span = args[0] if args else kwargs["span"]
            if self._mlflow_span_ended(wrapped, instance, args, kwargs, span):
                return None
        except Exception as exc:  # noqa: BLE001
            _state.internal_error("mlflow_span_end", exc)
        return wrapped(*args, **kwargs)

    def _mlflow_span_ended(self, wrapped, instance, args, kwargs, otel) -> bool:
        """True when tracekit took the span (MLflow's export is skipped)."""
        record = self._open.pop(otel.context.span_id, None)
        if record is None:
            return False
        mgr = _state.active_manager()
        if mgr is None:
            return False
        trace = record.trace
        if getattr(instance, "_export_metrics", False):
            instance.record_metrics_for_span(otel)
        record.end_ns = otel.end_time
        if record.cpu_start_ns is not None and record.thread_id == get_ident():
            record.cpu_ns = cpu_now(otel.end_time) - record.cpu_start_ns
        if record is trace.root:
            resources.root_end(trace)
        if self.mode == "dspy" and trace.mlflow_state == "mlflow":
            self._held.setdefault(trace.trace_id, []).append((wrapped, args, kwargs))
        if trace.sampled:
            for fn in mgr.span_end_fns:
                try:
                    fn(record)
                except Exception as exc:  # noqa: BLE001
                    mgr.hook_failed("core", "span_end", exc)
        if record is trace.root:
            held = self._held.pop(trace.trace_id, None)
            if self.mode == "dspy" and trace.mlflow_state == "mlflow":
                # no span of tracekit's in it: MLflow exports it as it would without tracekit
                self.registry.pop(trace.trace_id, None)
                mgr.counters.add("mlflow_traces_left_to_mlflow")
                for w, a, k in held or ():
                    w(*a, **k)
                return True
            self.release(trace)
            mlflow_compat.set_last_active_trace_id(trace.mlflow_trace_id)
            from dspy_tracekit._request.tracer import finish_trace

            finish_trace(mgr, trace)
        return True

    # ------------------------------------------------------------------ update_current_trace
    def _update_current_trace(self, wrapped, instance, args, kwargs):
        """``mlflow.update_current_trace()`` inside a DSPy call (no MLflow span is current there):
        the values go to tracekit's trace. Inside a user's MLflow span MLflow keeps them itself and
        tracekit takes them over when the trace ends."""
        from dspy_tracekit._request.tracer import current_span

        span = current_span.get()
        if span is None or _state.runtime is None:
            return wrapped(*args, **kwargs)
        otel = self._get_span(self._get_current())
        if type(otel) is not self._lazy_cls or otel._trace is not span.trace:
            return wrapped(*args, **kwargs)
        try:
            bound = _update_signature(wrapped).bind(*args, **kwargs)
        except TypeError:
            return wrapped(*args, **kwargs)  # MLflow reports the wrong call itself
        values = bound.arguments
        trace = span.trace
        trace.tags.update({str(k): str(v) for k, v in (values.get("tags") or {}).items()})
        metadata = {str(k): str(v) for k, v in (values.get("metadata") or {}).items()}
        for arg, key in (("session_id", "mlflow.trace.session"), ("user", "mlflow.trace.user"),
                         ("model_id", "mlflow.modelId")):
            if values.get(arg) is not None:
                metadata[key] = str(values[arg])
        trace.metadata.update(metadata)
        for arg in ("client_request_id", "request_preview", "response_preview", "state"):
            if values.get(arg) is not None:
                trace.attributes[f"mlflow.{arg}"] = str(getattr(values[arg], "value", values[arg]))
        return None


_UPDATE_SIGNATURE: list = []


def _update_signature(fn) -> inspect.Signature:
    if not _UPDATE_SIGNATURE:
        _UPDATE_SIGNATURE.append(inspect.signature(fn))
    return _UPDATE_SIGNATURE[0]


def merge_trace_info(trace: TraceRecord, info) -> None:
    """Tags and metadata the user gave MLflow's trace (``update_current_trace``, ``mlflow.tracing
    .context``) onto tracekit's trace; values MLflow computes itself (previews, totals) are not kept."""
    for key, value in (info.tags or {}).items():
        if key not in _DROPPED_TAGS:
            trace.tags[key] = str(value)
    for key, value in (info.trace_metadata or {}).items():
        if not key.startswith("mlflow.") or key in _KEPT_MLFLOW_METADATA:
            trace.metadata[key] = str(value)
    if getattr(info, "client_request_id", None):
        trace.attributes["mlflow.client_request_id"] = str(info.client_request_id)
    for attr in ("request_preview", "response_preview"):
        value = getattr(info, attr, None)
        if value:
            trace.attributes[f"mlflow.{attr}"] = str(value)
    state = getattr(getattr(info, "state", None), "value", None)
    if state in ("OK", "ERROR"):
        trace.attributes["mlflow.state"] = state


def sample(mgr, trace: TraceRecord) -> None:
    """Head sampling at a trace's root, whichever side made it: MLflow's ratio narrows it (recorded
    for the sample plugin's probability tag), then the plugins decide."""
    ratio = _sampling_ratio[0]
    if ratio < 1.0:
        trace.attributes["mlflow.sampling_ratio"] = ratio
        if (trace.trace_id & 0xFFFFFFFFFFFFFFFF) >= round(ratio * 2**64):
            trace.sampled = False  # OpenTelemetry's TraceIdRatioBased rule, as MLflow's sampler applies it
            return
    try:
        for fn in mgr.sample_fns:
            decision = fn(trace)
            if decision is not None:
                trace.sampled = bool(decision)
                break
    except TracekitAbort:
        raise
    except Exception as exc:  # noqa: BLE001 - defensive: isolation wraps hooks already
        mgr.hook_failed("core", "sample", exc)


class _NoSpanExporter:
    """The exporter of MLflow's processor while tracekit exports MLflow's traces: never writes."""

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self):
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _make_stand_in_class(bridge: MlflowBridge):
    from opentelemetry.trace import INVALID_SPAN_CONTEXT, NonRecordingSpan, SpanContext, TraceFlags

    sampled_flags, unsampled_flags = TraceFlags(TraceFlags.SAMPLED), TraceFlags(TraceFlags.DEFAULT)

    class TracekitStandInSpan(NonRecordingSpan):
        """Stands for the current DSPy span of one trace in MLflow's context: its span context is the
        (trace id, span id) a user's MLflow span needs as its parent. Nothing is materialized."""

        __slots__ = ("_trace",)

        def __init__(self, trace):
            super().__init__(INVALID_SPAN_CONTEXT)
            self._trace = trace

        def get_span_context(self):
            from dspy_tracekit._request.tracer import current_span

            record = current_span.get()
            trace = self._trace
            if record is None or record.trace is not trace or record.end_ns is not None:
                return INVALID_SPAN_CONTEXT
            if not trace.sampled:
                return SpanContext(trace.trace_id, record.span_id, False, unsampled_flags)
            if trace.mlflow_state is None:
                try:
                    bridge.register(trace)
                except Exception as exc:  # noqa: BLE001 - worst case the user's span starts its own trace
                    _state.internal_error("mlflow_register", exc)
                    return INVALID_SPAN_CONTEXT
            return SpanContext(trace.trace_id, record.span_id, False, sampled_flags)

        def is_recording(self):
            return False

    return TracekitStandInSpan
