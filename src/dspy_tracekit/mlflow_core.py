"""The MLflow core plugin: translates finished traces into MLflow spans and stores them.

Essential (cannot be disabled). Also owns the bridge to MLflow's own live spans, so that a DSPy call
inside a user's ``@mlflow.trace`` and a user's ``mlflow.start_span`` inside a DSPy ``forward`` each
form one trace.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from . import mlflow_store
from .hookspecs import hookimpl
from .records import SpanKind, SpanRecord, TraceRecord

logger = logging.getLogger("dspy_tracekit")

_SESSION_TAGS = ("session_id", "session")
_USER_TAGS = ("user_id", "user")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


class MlflowCorePlugin:
    """Registered under the name ``mlflow``."""

    def __init__(self):
        self.tracking_uri: str | None = None
        self.experiment_name: str | None = None
        self._experiment_id: str | None = None
        self._lock = threading.Lock()

    @hookimpl
    def tracekit_configure(self, config, settings):
        self.tracking_uri = settings.tracking_uri
        self.experiment_name = settings.experiment
        self._experiment_id = None
        # Opening a new store runs MLflow's migrations, and MLflow's SQL store prices LM spans with
        # LiteLLM (imported on first use): seconds of one-time work that would otherwise land on the
        # first traced request. Done here, in enable(), on purpose — not in a thread: concurrent
        # first imports of mlflow/litellm modules can fail with partially initialized modules.
        # Only for database stores: a tracking server that is down would make enable() wait out
        # MLflow's HTTP retries; its first export (retried by the buffer plugin) finds out instead.
        if getattr(settings, "dry_run", False):
            return  # doctor checks the config: opening a store would create it
        if self.tracking_uri.startswith(("sqlite:", "postgresql", "mysql", "mssql")):
            try:
                self.experiment_id()
                mlflow_store.tracing_client(self.tracking_uri).store  # noqa: B018 - opens the store
            except Exception as exc:  # noqa: BLE001 - reported again at the first export
                logger.warning("dspy-tracekit: tracking store %s not usable yet: %s", self.tracking_uri, exc)
            try:
                import litellm  # noqa: F401
            except ImportError:
                pass

    def experiment_id(self) -> str:
        with self._lock:
            if self._experiment_id is None:
                self._experiment_id = resolve_experiment(self.tracking_uri, self.experiment_name)
            return self._experiment_id

    @hookimpl
    def tracekit_export_traces(self, traces):
        exp = self.experiment_id()
        spans = []
        for trace in traces:
            spans.extend(to_mlflow_spans(trace))
        mlflow_store.log_spans(self.tracking_uri, exp, spans)


def resolve_experiment(tracking_uri: str, name: str) -> str:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        exp = client.get_experiment_by_name(name)  # another process created it meanwhile
        if exp is None:
            raise
        return exp.experiment_id


# ------------------------------------------------------------------------------------------
# translation (delivery path)
# ------------------------------------------------------------------------------------------

def span_attribute_values(trace: TraceRecord, s: SpanRecord) -> dict[str, Any]:
    """MLflow span attributes of a materialized span, as plain values (not yet JSON-encoded)."""
    a: dict[str, Any] = {
        "mlflow.traceRequestId": trace.mlflow_trace_id,
        "mlflow.spanType": s.span_type or "UNKNOWN",
        "tracekit.kind": s.kind,
    }
    if s.inputs is not None:
        a["mlflow.spanInputs"] = s.inputs
    if s.outputs is not None:
        a["mlflow.spanOutputs"] = s.outputs
    if s.module_path:
        a["tracekit.module_path"] = s.module_path
    for k, v in (s.tags or {}).items():
        a[f"tracekit.context.{k}"] = v
    if s.kind == SpanKind.LM:
        if s.model:
            a["mlflow.llm.model"] = s.model
            a["model"] = s.model
        if s.provider:
            a["mlflow.llm.provider"] = s.provider
        for k, v in (s.params or {}).items():
            if v is not None and k not in a:
                a[k] = v
        if s.usage:
            u = s.usage
            usage = {"input_tokens": u.get("input_tokens", 0), "output_tokens": u.get("output_tokens", 0),
                     "total_tokens": u.get("total_tokens", 0)}
            if u.get("cached_tokens"):
                usage["cache_read_input_tokens"] = u["cached_tokens"]
            if u.get("cache_write_tokens"):
                usage["cache_creation_input_tokens"] = u["cache_write_tokens"]
            a["mlflow.chat.tokenUsage"] = usage
            if u.get("reasoning_tokens"):
                a["tracekit.usage.reasoning_tokens"] = u["reasoning_tokens"]
        if s.cache_hit is not None:
            a["tracekit.lm.cache_hit"] = s.cache_hit
        if s.first_token_ns is not None:
            a["tracekit.lm.time_to_first_token_ms"] = (s.first_token_ns - s.start_ns) / 1e6
    if s.cost:
        a["mlflow.llm.cost"] = s.cost
    if s.attributes:
        for k, v in s.attributes.items():
            a[k] = v
    if s.parent_id is None:
        for k, v in trace.tags.items():
            a[f"mlflow.traceTag.{k}"] = str(v)
        for k in _SESSION_TAGS:
            if trace.tags.get(k):
                a["session.id"] = str(trace.tags[k])
                break
        for k in _USER_TAGS:
            if trace.tags.get(k):
                a["user.id"] = str(trace.tags[k])
                break
    return a


def span_attributes(trace: TraceRecord, s: SpanRecord) -> dict[str, str]:
    """MLflow span attributes (JSON-encoded values, as MLflow stores them) of a materialized span."""
    return {k: _dumps(v) for k, v in span_attribute_values(trace, s).items()}


def _events_and_status(s: SpanRecord):
    from opentelemetry.sdk.trace import Event
    from opentelemetry.trace import Status, StatusCode

    err = s.error
    if err is None:
        return [], Status(StatusCode.OK)
    if not isinstance(err, dict):
        err = {"type": type(err).__name__, "message": str(err)}
    event = Event("exception", {
        "exception.type": err.get("type", "Exception"),
        "exception.message": err.get("message", ""),
        "exception.stacktrace": err.get("traceback", ""),
    }, timestamp=s.end_ns or s.start_ns)
    return [event], Status(StatusCode.ERROR, f"{err.get('type')}: {err.get('message')}")


def to_mlflow_spans(trace: TraceRecord) -> list:
    """MLflow ``Span`` entities of a materialized trace, ready for ``log_spans``."""
    from mlflow.entities.span import Span
    from mlflow.tracing.utils import build_otel_context
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan

    resource = Resource.get_empty()
    tid = trace.trace_id
    out = []
    known = {s.span_id for s in trace.spans}
    for s in trace.spans:
        events, status = _events_and_status(s)
        parent_id = s.parent_id if s.parent_id in known else None
        if parent_id is None and s is not trace.root and trace.root is not None:
            parent_id = trace.root.span_id  # orphan (its parent was not recorded): hang it on the root
        otel = ReadableSpan(
            name=s.name,
            context=build_otel_context(tid, s.span_id),
            parent=build_otel_context(tid, parent_id) if parent_id is not None else None,
            start_time=s.start_ns,
            end_time=s.end_ns if s.end_ns is not None else s.start_ns,
            attributes=span_attributes(trace, s),
            status=status,
            events=events,
            resource=resource,
        )
        out.append(Span(otel))
    return out


# ------------------------------------------------------------------------------------------
# interop with MLflow's live spans
# ------------------------------------------------------------------------------------------

class MlflowBridge:
    """Connects deferred tracekit spans with MLflow's live spans, in both directions.

    * DSPy inside a user's MLflow span: at our root, the active MLflow span becomes the parent; at the
      end the (processed) trace is attached as live child spans, so MLflow exports one trace.
    * A user's MLflow span inside a DSPy call: every recorded span puts a cheap lazy span into MLflow's
      runtime context; only when MLflow asks it for its context (a user's span starting under it) is
      the chain of open tracekit spans materialized as live MLflow spans.
    """

    def __init__(self):
        from mlflow.environment_variables import MLFLOW_USE_DEFAULT_TRACER_PROVIDER
        from mlflow.tracing import provider
        from opentelemetry import context as otel_context
        from opentelemetry import trace as otel_trace

        # resolved once: MLflow reads an environment variable on every context lookup otherwise
        self._runtime = provider.mlflow_runtime_context if MLFLOW_USE_DEFAULT_TRACER_PROVIDER.get() \
            else otel_context._RUNTIME_CONTEXT
        self._otel_trace = otel_trace
        self._lazy_cls = _make_lazy_span_class()
        self._lock = threading.RLock()
        self._materializing = threading.local()

    # -- direction 1 ---------------------------------------------------------------------------
    def active_mlflow_span(self):
        otel_span = self._otel_trace.get_current_span(self._runtime.get_current())
        if isinstance(otel_span, self._lazy_cls) or not otel_span.get_span_context().is_valid:
            return None
        import mlflow

        return mlflow.get_current_active_span()

    @staticmethod
    def trace_id_of(live) -> int:
        return live._span.context.trace_id

    # -- direction 2 ---------------------------------------------------------------------------
    def on_trace_start(self, root: SpanRecord) -> None:
        """One lazy span per trace in MLflow's context; it stands for whichever of our spans is current."""
        ctx = self._otel_trace.set_span_in_context(self._lazy_cls(self, root.trace), self._runtime.get_current())
        root.ctx_token = self._runtime.attach(ctx)

    def on_trace_end(self, root: SpanRecord) -> None:
        token = root.ctx_token
        if token is not None:
            root.ctx_token = None
            try:
                self._runtime.detach(token)
            except Exception:  # noqa: BLE001 - detached in another context (async): harmless
                pass

    def materialize_chain(self, span: SpanRecord):
        """Create live MLflow spans for ``span`` and its open ancestors; return ``span``'s live span."""
        import mlflow

        with self._lock:
            self._materializing.active = True  # MLflow consults the context while we create the chain
            try:
                return self._materialize_chain(span, mlflow)
            finally:
                self._materializing.active = False

    def _materialize_chain(self, span: SpanRecord, mlflow):
        if True:
            chain = []
            by_id = {s.span_id: s for s in span.trace.spans}
            cur = span
            while cur is not None and cur.live is None:
                chain.append(cur)
                cur = by_id.get(cur.parent_id) if cur.parent_id is not None else None
            trace = span.trace
            for rec in reversed(chain):
                parent_live = by_id[rec.parent_id].live if rec.parent_id in by_id else trace.mlflow_parent
                rec.live = mlflow.start_span_no_context(
                    rec.name, span_type=rec.span_type or "UNKNOWN", parent_span=parent_live,
                    start_time_ns=rec.start_ns)
                if rec is trace.root and trace.mlflow_parent is None:
                    trace.trace_id = rec.live._span.context.trace_id
            return span.live

    def deliver_live(self, mgr, trace: TraceRecord) -> None:
        """Attach a finished (processed) trace to MLflow's live trace it belongs to."""
        try:
            ready = mgr.prepare([trace])
            if not ready:
                self._abandon(trace)
                return
            import mlflow
            from mlflow.entities import SpanStatusCode

            by_id = {s.span_id: s for s in trace.spans}
            for s in trace.spans:
                attrs = {k: v for k, v in span_attribute_values(trace, s).items()
                         if not k.startswith(("mlflow.traceRequestId", "mlflow.spanType", "mlflow.spanInputs",
                                              "mlflow.spanOutputs", "mlflow.traceTag."))}
                live = s.live
                if live is None:
                    parent = by_id.get(s.parent_id)
                    parent_live = parent.live if parent is not None else trace.mlflow_parent
                    live = s.live = mlflow.start_span_no_context(
                        s.name, span_type=s.span_type or "UNKNOWN", parent_span=parent_live,
                        start_time_ns=s.start_ns)
                if s.inputs is not None:
                    live.set_inputs(s.inputs)
                live.set_attributes(attrs)
                if s.error is not None:
                    err = s.error if isinstance(s.error, dict) else {"type": "Error", "message": str(s.error)}
                    live.record_exception(f"{err.get('type')}: {err.get('message')}")
                    live.set_status(SpanStatusCode.ERROR)
            # end children before parents so MLflow sees a complete tree when the root ends
            for s in reversed(trace.spans):
                s.live.end(outputs=s.outputs, end_time_ns=s.end_ns)
            if trace.mlflow_parent is not None and trace.tags:
                try:
                    from mlflow.tracing.trace_manager import InMemoryTraceManager

                    mgr_ = InMemoryTraceManager.get_instance()
                    with mgr_.get_trace(trace.mlflow_parent.trace_id) as live_trace:
                        if live_trace is not None:
                            for k, v in trace.tags.items():
                                live_trace.info.tags.setdefault(k, str(v))
                except Exception:  # noqa: BLE001
                    pass
            mgr.counters.add("traces_exported_live")
        except Exception as exc:  # noqa: BLE001
            mgr.counters.add("traces_dropped.export_error")
            mgr.hook_failed("core", "deliver_live", exc)
            self._abandon(trace)

    @staticmethod
    def _abandon(trace: TraceRecord) -> None:
        for s in reversed(trace.spans):
            if s.live is not None:
                try:
                    s.live.end(end_time_ns=s.end_ns)
                except Exception:  # noqa: BLE001
                    pass


def _make_lazy_span_class():
    from opentelemetry.trace import INVALID_SPAN_CONTEXT, NonRecordingSpan

    class LazyTracekitSpan(NonRecordingSpan):
        """Stands for a tracekit span in MLflow's context; becomes live only when asked for its context."""

        __slots__ = ("_bridge", "_trace")

        def __init__(self, bridge, trace):
            super().__init__(INVALID_SPAN_CONTEXT)
            self._bridge = bridge
            self._trace = trace

        def get_span_context(self):
            from .tracer import current_span

            record = current_span.get()
            if record is None or record.trace is not self._trace or record.end_ns is not None \
                    or getattr(self._bridge._materializing, "active", False):
                return INVALID_SPAN_CONTEXT
            try:
                live = record.live or self._bridge.materialize_chain(record)
                return live._span.get_span_context()
            except Exception as exc:  # noqa: BLE001 - worst case the user's span starts its own trace
                logger.debug("dspy-tracekit: could not materialize %s: %s", record.name, exc)
                return INVALID_SPAN_CONTEXT

        def is_recording(self):
            return False

    return LazyTracekitSpan
