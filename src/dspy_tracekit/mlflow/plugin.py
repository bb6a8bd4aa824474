"""The MLflow core plugin: translates finished traces into MLflow spans and stores them.

Essential (cannot be disabled). Spans made through MLflow's own API reach it like every other span
(see :mod:`dspy_tracekit.mlflow.interop`); this module only translates and writes.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from dspy_tracekit.hookspecs import hookimpl
from dspy_tracekit.keys import (
    COST_ATTR,
    INPUTS_ATTR,
    KIND_ATTR,
    MODEL_ATTR,
    MODULE_PATH_ATTR,
    OUTPUTS_ATTR,
    PROVIDER_ATTR,
    REQUEST_ID_ATTR,
    SPAN_TYPE_ATTR,
    TOKEN_USAGE_ATTR,
)
from dspy_tracekit.mlflow import store as mlflow_store
from dspy_tracekit.records import SpanKind, SpanRecord, TraceRecord

logger = logging.getLogger("dspy_tracekit")

_SESSION_TAGS = ("session_id", "session")
_USER_TAGS = ("user_id", "user")


#: ``json.dumps(value, default=str, ensure_ascii=False)`` without building an encoder per call.
_encode = json.JSONEncoder(default=str, ensure_ascii=False).encode
_encode_str = json.encoder.encode_basestring  # what that encoder does with a str, in C


def _dumps(value: Any) -> str:
    """An attribute value as MLflow stores it: ``json.dumps(value, ensure_ascii=False)``, same text."""
    if value.__class__ is str:
        return _encode_str(value)
    return _encode(value)


class MlflowCorePlugin:
    """Registered under the name ``mlflow``."""

    def __init__(self):
        self.tracking_uri: str | None = None
        self.experiment_name: str | None = None
        self._experiment_id: str | None = None
        self._lock = threading.Lock()
        #: which of tracking_uri / experiment follow what the user tells MLflow (not set in tracekit's config)
        self._follow_uri = self._follow_experiment = False
        self._mlflow_seen: tuple | None = None

    @hookimpl
    def tracekit_configure(self, config, settings):
        from dspy_tracekit._versions import warn_untested
        from dspy_tracekit.config import pinned

        warn_untested()
        self.tracking_uri = settings.tracking_uri
        self.experiment_name = settings.experiment
        self._experiment_id = None
        self._follow_uri = not pinned(settings.sources, "tracking_uri")
        self._follow_experiment = not pinned(settings.sources, "experiment")
        self._mlflow_seen = _mlflow_destination() if (self._follow_uri or self._follow_experiment) else None
        # Opening a new store runs MLflow's migrations, and MLflow's SQL store prices LM spans with
        # LiteLLM (imported on first use): seconds of one-time work that would otherwise land on the
        # first traced request. Done here, in enable(), on purpose — not in a thread: concurrent
        # first imports of mlflow/litellm modules can fail with partially initialized modules.
        # Only for database stores: a tracking server that is down would make enable() wait out
        # MLflow's HTTP retries; its first export (retried by the buffer plugin) finds out instead.
        if getattr(settings, "dry_run", False):
            return  # doctor checks the config: opening a store would create it
        if self.tracking_uri.startswith(("sqlite:", "postgresql", "mysql", "mssql")):
            if self.tracking_uri.startswith("sqlite:"):
                from dspy_tracekit.mlflow.schema import create_sqlite_store

                # a new SQLite store in one step instead of MLflow's migrations (seconds)
                logger.debug("dspy-tracekit: new SQLite store %s: %s", self.tracking_uri,
                             create_sqlite_store(self.tracking_uri))
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

    def _follow_mlflow(self) -> None:
        """The user told MLflow about another destination after enable(): traces follow it, as
        MLflow's own would (only for what tracekit's config does not set)."""
        seen = _mlflow_destination()
        if seen == self._mlflow_seen:
            return
        from dspy_tracekit.config import resolve_destination

        core: dict = {"tracking_uri": None if self._follow_uri else self.tracking_uri,
                      "experiment": None if self._follow_experiment else self.experiment_name}
        resolve_destination(core, {} if self._follow_uri else {"tracking_uri": "tracekit"})
        with self._lock:
            self._mlflow_seen = seen
            if (core["tracking_uri"], core["experiment"]) != (self.tracking_uri, self.experiment_name):
                self.tracking_uri, self.experiment_name = core["tracking_uri"], core["experiment"]
                self._experiment_id = None
                logger.info("dspy-tracekit: traces now go to %s, experiment %r (MLflow's destination)",
                            self.tracking_uri, self.experiment_name)

    @hookimpl
    def tracekit_export_traces(self, traces):
        if self._mlflow_seen is not None:
            self._follow_mlflow()
        exp = self.experiment_id()
        stored = False
        if mlflow_store.fast_path_available(self.tracking_uri):
            # rows computed from our own records: no MLflow Span entities, no re-decoding our JSON
            from dspy_tracekit.mlflow.rows import trace_views

            stored = mlflow_store.insert_views(self.tracking_uri, exp, [trace_views(t) for t in traces])
        if not stored:
            spans = []
            for trace in traces:
                spans.extend(to_mlflow_spans(trace))
            mlflow_store.log_spans(self.tracking_uri, exp, spans, fast=False)
        infos = [trace_info(trace, exp) for trace in traces if _has_trace_info(trace)]
        if infos:
            mlflow_store.log_trace_infos(self.tracking_uri, infos)


def _mlflow_destination() -> tuple:
    from dspy_tracekit.mlflow import _compat as mlflow_compat

    return mlflow_compat.mlflow_tracking_uri(), mlflow_compat.mlflow_experiment()


_INFO_ATTRIBUTES = ("mlflow.client_request_id", "mlflow.request_preview", "mlflow.response_preview",
                    "mlflow.state")


def _has_trace_info(trace: TraceRecord) -> bool:
    """Does the trace carry what only MLflow's trace info holds (metadata, client request id, previews)?"""
    return bool(trace.metadata) or any(k in trace.attributes for k in _INFO_ATTRIBUTES)


def trace_info(trace: TraceRecord, experiment_id: str):
    """The MLflow ``TraceInfo`` of a trace that carries metadata; written after its spans."""
    from mlflow.entities.trace_info import TraceInfo
    from mlflow.entities.trace_location import TraceLocation
    from mlflow.entities.trace_state import TraceState

    attrs = trace.attributes
    state = attrs.get("mlflow.state") or trace.status
    end = trace.end_ns
    return TraceInfo(
        trace_id=trace.mlflow_trace_id,
        trace_location=TraceLocation.from_experiment_id(experiment_id),
        request_time=trace.start_ns // 1_000_000,
        execution_duration=None if end is None else (end - trace.start_ns) // 1_000_000,
        state=TraceState(state),
        client_request_id=attrs.get("mlflow.client_request_id"),
        request_preview=attrs.get("mlflow.request_preview"),
        response_preview=attrs.get("mlflow.response_preview"),
        trace_metadata={str(k): str(v) for k, v in trace.metadata.items()},
        tags={},
    )


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
        REQUEST_ID_ATTR: trace.mlflow_trace_id,
        SPAN_TYPE_ATTR: s.span_type or "UNKNOWN",
        KIND_ATTR: s.kind,
    }
    if s.inputs is not None:
        a[INPUTS_ATTR] = s.inputs
    if s.outputs is not None:
        a[OUTPUTS_ATTR] = s.outputs
    if s.module_path:
        a[MODULE_PATH_ATTR] = s.module_path
    for k, v in (s.tags or {}).items():
        a[f"tracekit.context.{k}"] = v
    if s.kind == SpanKind.LM:
        if s.model:
            a[MODEL_ATTR] = s.model
            a["model"] = s.model
        if s.provider:
            a[PROVIDER_ATTR] = s.provider
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
            a[TOKEN_USAGE_ATTR] = usage
            if u.get("reasoning_tokens"):
                a["tracekit.usage.reasoning_tokens"] = u["reasoning_tokens"]
        if s.cache_hit is not None:
            a["tracekit.lm.cache_hit"] = s.cache_hit
        if s.first_token_ns is not None:
            a["tracekit.lm.time_to_first_token_ms"] = (s.first_token_ns - s.start_ns) / 1e6
    if s.cost:
        a[COST_ATTR] = s.cost
    if s.attributes:
        for k, v in s.attributes.items():
            a[k] = v
    if s.parent_id is None:
        for k, v in trace.tags.items():
            a[f"mlflow.traceTag.{k}"] = str(v)
        session = trace.metadata.get("mlflow.trace.session") or next(
            (trace.tags[k] for k in _SESSION_TAGS if trace.tags.get(k)), None)
        if session:
            a["session.id"] = str(session)
        user = trace.metadata.get("mlflow.trace.user") or next(
            (trace.tags[k] for k in _USER_TAGS if trace.tags.get(k)), None)
        if user:
            a["user.id"] = str(user)
    return a


def span_attributes(trace: TraceRecord, s: SpanRecord) -> dict[str, str]:
    """MLflow span attributes (JSON-encoded values, as MLflow stores them) of a materialized span."""
    return {k: _dumps(v) for k, v in span_attribute_values(trace, s).items()}


def _events_and_status(s: SpanRecord):
    from opentelemetry.sdk.trace import Event
    from opentelemetry.trace import Status, StatusCode

    events = [Event(e["name"], _event_attributes(e.get("attributes")), timestamp=e.get("timestamp_ns"))
              for e in s.events or ()]
    err = s.error
    if err is None:
        return events, Status(StatusCode.OK)
    if not isinstance(err, dict):
        err = {"type": type(err).__name__, "message": str(err)}
    events.append(Event("exception", {
        "exception.type": err.get("type", "Exception"),
        "exception.message": err.get("message", ""),
        "exception.stacktrace": err.get("traceback", ""),
    }, timestamp=s.end_ns or s.start_ns))
    return events, Status(StatusCode.ERROR, f"{err.get('type')}: {err.get('message')}")


def _event_attributes(attrs) -> dict:
    """OpenTelemetry event attributes hold primitives (or lists of them): anything else as JSON."""
    out = {}
    for k, v in (attrs or {}).items():
        out[str(k)] = v if isinstance(v, (str, bool, int, float)) else _dumps(v)
    return out


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
