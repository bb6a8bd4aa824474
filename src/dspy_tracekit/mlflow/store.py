"""Writing translated spans to an MLflow tracking store, many traces per call.

Kept apart from the translation so that the write path can be tuned (batch size, store settings)
without touching what is written.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from typing import Any

logger = logging.getLogger("dspy_tracekit")

_clients: dict[str, Any] = {}
_lock = threading.Lock()


def tracing_client(tracking_uri: str):
    with _lock:
        client = _clients.get(tracking_uri)
        if client is None:
            from mlflow.tracing.client import TracingClient

            client = _clients[tracking_uri] = TracingClient(tracking_uri)
        return client


def log_spans(tracking_uri: str, experiment_id: str, spans: list, *, fast: bool = True) -> None:
    """Write spans of one or many traces in one store call (one transaction on SQL stores).

    New traces on a store whose schema the fast path knows take it (:func:`insert_views`); anything
    else — a trace already in the store, another backend, an unknown schema — goes through MLflow's
    own ``log_spans``. ``fast=False``: straight to MLflow's ``log_spans``.
    """
    if not spans:
        return
    client = tracing_client(tracking_uri)
    if fast and fast_path_available(tracking_uri):
        from dspy_tracekit.mlflow.rows import view_of_span

        by_trace: dict[str, list] = {}
        for span in spans:
            by_trace.setdefault(span.trace_id, []).append(view_of_span(span))
        if _insert(client.store, experiment_id, list(by_trace.values())):
            return
    try:
        client.log_spans(experiment_id, spans)
    except NotImplementedError as exc:
        # MLflow's RestStore caches the server version with lru_cache, including a failed lookup
        # (server down or slow): every later log_spans would then fail as "not supported". Forget
        # the failure and report it as what it is, an unreachable server (transient: retried/spooled).
        if "could not identify MLflow server version" not in str(exc):
            raise
        from dspy_tracekit.mlflow._compat import clear_rest_server_version_cache

        clear_rest_server_version_cache()
        raise ConnectionError(f"MLflow tracking server unreachable ({exc})") from exc


def insert_views(tracking_uri: str, experiment_id: str, views: list[list]) -> bool:
    """Insert new traces (one list of :class:`~dspy_tracekit.mlflow.rows.SpanView` per trace) on the
    fast path; False when it does not apply (then use :func:`log_spans`)."""
    views = [v for v in views if v]
    if not views:
        return True
    return _insert(tracing_client(tracking_uri).store, experiment_id, views)


def log_trace_infos(tracking_uri: str, infos: list) -> None:
    """Trace metadata (``mlflow.update_current_trace(metadata=...)``) lives in MLflow's trace info, not
    in spans: merged into the stored traces the way MLflow's own exporter does (spans first, then
    ``start_trace``, which merges into an existing trace)."""
    client = tracing_client(tracking_uri)
    for info in infos:
        client.start_trace(info)


# ------------------------------------------------------------------------------------------------
# Fast path: new traces on a SQL store of a known schema, written with one executemany per table.
#
# MLflow's SqlAlchemyStore.log_spans spends most of its time per trace in SQLAlchemy: a multi-row
# INSERT ... VALUES compiled afresh for every 100 spans (its statement cache cannot hold it), an ORM
# flush per new trace, and per-trace UPDATE / merge statements (profiled: ~2/3 of the time). For
# traces that do not exist yet, the rows it ends up with are fully determined by the spans, so we
# compute the very same rows with MLflow's own helpers (aggregation, previews, tag validation, rollup
# invalidation) and insert them with cached executemany statements in one transaction.
# plugins/buffer/tests/test_buffer_store_fast_path.py compares every table with log_spans.
#
# The gate is the schema, checked at run time on each store: the four tables written here must have
# exactly the columns below, in the database and in the installed MLflow's models, and MLflow's helpers
# used here must exist. Anything else falls back to MLflow's log_spans, with one log line naming why.
# ------------------------------------------------------------------------------------------------

#: the columns of every table the fast path writes (MLflow 3.17 – 3.18 schema); all are filled below.
FAST_PATH_COLUMNS = {
    "trace_info": frozenset({
        "request_id", "experiment_id", "timestamp_ms", "execution_time_ms", "status", "client_request_id",
        "request_preview", "response_preview", "db_payload_generation", "trace_name", "session_id",
        "input_tokens", "output_tokens", "total_tokens", "cache_read_input_tokens",
        "cache_creation_input_tokens", "cache_creation_input_tokens_above_1hr", "input_cost",
        "output_cost", "total_cost"}),
    "trace_tags": frozenset({"key", "value", "request_id"}),
    "trace_request_metadata": frozenset({"key", "value", "request_id"}),
    "spans": frozenset({
        "trace_id", "experiment_id", "span_id", "parent_span_id", "name", "type", "status",
        "start_time_unix_nano", "end_time_unix_nano", "duration_ns", "content", "input_cost", "output_cost",
        "total_cost", "model_name", "model_provider"}),
}
_HELPERS = ("SqlTraceInfo", "SqlTraceTag", "SqlTraceMetadata", "SqlSpan", "SpanAttributeKey", "GenAiSemconvKey",
            "TraceTagKey", "TraceMetadataKey", "TraceState", "SpanStatusCode", "SpansLocation", "RollupFamily",
            "validate_session_id", "_try_parse_json_string", "_span_aggregation_node", "finite_float_or_none",
            "bounded_model_dimension", "_validate_trace_tag", "validate_trace_name",
            "aggregate_usage_from_span_nodes", "aggregate_cost_from_span_nodes", "TOKEN_COLUMN_BY_KEY",
            "COST_COLUMN_BY_KEY", "token_count_or_none", "enqueue_rollup_rebuild_partitions", "TraceJSONEncoder")
#: database kinds the fast path writes to (see docs/deployment.md for PostgreSQL / MySQL)
FAST_PATH_DB_TYPES = ("sqlite",)
_CHECK_FAILED = "schema check failed"
_gate: dict[str, str] = {}  # tracking URI -> "" (fast path on) or the reason it is off
_gate_lock = threading.Lock()


def fast_path_available(tracking_uri: str) -> bool:
    """True when the store at ``tracking_uri`` takes the fast path (checked once per URI, logged once if not)."""
    if os.environ.get("DSPY_TRACEKIT_FAST_STORE", "1").lower() in ("0", "false", "no", "off"):
        return False
    reason = _gate.get(tracking_uri)
    if reason is None:
        with _gate_lock:
            reason = _gate.get(tracking_uri)
            if reason is None:
                reason = _schema_mismatch(tracking_uri)
                if reason.startswith(_CHECK_FAILED):
                    # could not look (a locked or unreachable store): MLflow's path now, ask again later
                    logger.debug("dspy-tracekit: store fast path not checked for %s: %s", _redacted(tracking_uri),
                                 reason)
                    return False
                _gate[tracking_uri] = reason
                if reason and tracking_uri.startswith(("sqlite", "postgresql", "mysql", "mssql")):
                    logger.warning("dspy-tracekit: the store fast path is off for %s: %s; writing through "
                                   "MLflow's log_spans (slower)", _redacted(tracking_uri), reason)
    return not reason


def fast_path_reason(tracking_uri: str) -> str:
    """Why the fast path is off for ``tracking_uri`` ("" when on, or not checked yet)."""
    return _gate.get(tracking_uri, "")


def _schema_mismatch(tracking_uri: str) -> str:
    """"" when the fast path can write to this store, else the reason it cannot."""
    try:
        from mlflow.store.tracking import sqlalchemy_store as S

        store = tracing_client(tracking_uri).store
        if type(store) not in _sql_store_types():
            return f"not a SQL store ({type(store).__name__})"
        if store.db_type not in FAST_PATH_DB_TYPES:
            return f"database kind {store.db_type!r} not verified for the fast path"
        missing = [name for name in _HELPERS if not hasattr(S, name)]
        if missing:
            return f"MLflow {_mlflow_version()} lacks {', '.join(missing)}"
        for name in ("_get_trace_status_from_root_span", "_update_trace_info_attributes",
                     "_get_trace_artifact_location_tag", "ManagedSessionMaker"):
            if not hasattr(store, name):
                return f"MLflow {_mlflow_version()}'s store lacks {name}"
        from sqlalchemy import inspect

        models = {m.__tablename__: m for m in (S.SqlTraceInfo, S.SqlTraceTag, S.SqlTraceMetadata, S.SqlSpan)}
        inspector = inspect(store.engine)
        revision = _alembic_revision(store.engine)
        for table, expected in FAST_PATH_COLUMNS.items():
            model = frozenset(c.name for c in models[table].__table__.columns) if table in models else None
            if model != expected:
                return (f"MLflow {_mlflow_version()}'s table {table} has columns the fast path does not "
                        f"know: {sorted((model or frozenset()) ^ expected)}")
            stored = frozenset(c["name"] for c in inspector.get_columns(table))
            if stored != expected:
                return (f"the store's table {table} (alembic revision {revision}) differs from the schema "
                        f"the fast path knows: {sorted(stored ^ expected)}")
        return ""
    except Exception as exc:  # noqa: BLE001 - cannot tell: MLflow's own path is always right
        return f"{_CHECK_FAILED} ({type(exc).__name__}: {exc})"


def _alembic_revision(engine) -> str | None:
    from sqlalchemy import text

    try:
        with engine.connect() as con:
            row = con.execute(text("SELECT version_num FROM alembic_version")).first()
        return row[0] if row else None
    except Exception:  # noqa: BLE001
        return None


def _mlflow_version() -> str:
    import mlflow

    return mlflow.__version__


def _redacted(uri: str) -> str:
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return uri


def _insert(store, experiment_id: str, traces: list[list]) -> bool:
    """Insert new traces' rows exactly as ``SqlAlchemyStore.log_spans`` would; False = not applicable."""
    from mlflow.store.tracking import sqlalchemy_store as S

    if type(store) not in _sql_store_types() or store.db_type not in FAST_PATH_DB_TYPES:
        return False
    trace_ids = [views[0].trace_id for views in traces]
    exp_int = int(experiment_id)
    ensure_ascii = store.db_type == "mssql"
    encoder = S.TraceJSONEncoder(ensure_ascii=ensure_ascii)

    info_rows, tag_rows, meta_rows, span_rows, partitions = [], [], [], [], []
    blank = S.SqlTraceInfo()  # stands for "a new trace_info row": previews not set yet
    chat_usage, llm_cost = S.SpanAttributeKey.CHAT_USAGE, S.SpanAttributeKey.LLM_COST
    for trace_spans in traces:
        if any(v.has_resource for v in trace_spans):
            return False  # resource attributes become tags: not reproduced here
        trace_id = trace_spans[0].trace_id
        min_start_ms = min(s.start_ns for s in trace_spans) // 1_000_000
        end_times = [s.end_ns for s in trace_spans if s.end_ns is not None]
        max_end_ms = (max(end_times) // 1_000_000) if end_times else None
        root_status = None
        for view in trace_spans:
            if view.parent_id is None:
                root_status = (S.TraceState.ERROR.value if view.status_code == S.SpanStatusCode.ERROR
                               else S.TraceState.OK.value)
                break
        usage_nodes, cost_nodes = [], []
        session_id = user_id = root_dict = None
        trace_tags: dict[str, str] = {}
        for view in trace_spans:
            span_dict = view.span_dict
            attrs = span_dict.get("attributes", {})
            usage_nodes.append(S._span_aggregation_node(view.span_id, view.parent_id, attrs, chat_usage))
            cost_nodes.append(S._span_aggregation_node(view.span_id, view.parent_id, attrs, llm_cost))
            span_cost = None
            if attrs:
                if session_id is None and (sid := (attrs.get(S.SpanAttributeKey.SESSION_ID)
                                                   or attrs.get(S.GenAiSemconvKey.CONVERSATION_ID))):
                    session_id = S.validate_session_id(S._try_parse_json_string(sid))
                if user_id is None and (uid := attrs.get("user.id")):
                    user_id = S._try_parse_json_string(uid)
                span_cost = attrs.get(llm_cost)
            cost_values = {}
            if span_cost:
                try:
                    cost_values = json.loads(span_cost)
                except (TypeError, ValueError):
                    cost_values = {}
            model = attrs.get(S.SpanAttributeKey.MODEL)
            provider = attrs.get(S.SpanAttributeKey.MODEL_PROVIDER)
            span_rows.append({
                "trace_id": trace_id, "experiment_id": exp_int, "span_id": view.span_id,
                "parent_span_id": view.parent_id, "name": view.name, "type": view.span_type,
                "status": view.status_code, "start_time_unix_nano": view.start_ns,
                "end_time_unix_nano": view.end_ns,
                "content": encoder.encode(span_dict),
                "input_cost": S.finite_float_or_none(cost_values.get("input_cost")),
                "output_cost": S.finite_float_or_none(cost_values.get("output_cost")),
                "total_cost": S.finite_float_or_none(cost_values.get("total_cost")),
                "model_name": S.bounded_model_dimension(S._try_parse_json_string(model))
                if model is not None else None,
                "model_provider": S.bounded_model_dimension(S._try_parse_json_string(provider))
                if provider is not None else None,
            })
            partitions.append((S.RollupFamily.SPAN_COST, exp_int, [view.start_ns // 1_000_000]))
            if view.parent_id is None:
                root_dict = span_dict
                prefix = S.SpanAttributeKey.TRACE_TAG_PREFIX
                for key, value in attrs.items():
                    if key.startswith(prefix):
                        try:
                            tag_key, tag_value = S._validate_trace_tag(
                                key[len(prefix):], str(S._try_parse_json_string(value)))
                        except Exception:  # noqa: BLE001, S112 - MLflow skips invalid tags too
                            continue
                        if tag_key == S.TraceTagKey.TRACE_NAME:
                            tag_value = S.validate_trace_name(tag_value)
                        trace_tags[tag_key] = tag_value
        partitions.extend((family, exp_int, [min_start_ms, min_start_ms])
                          for family in (S.RollupFamily.TRACE_METRIC, S.RollupFamily.ASSESSMENT))
        row = dict.fromkeys(_INFO_COLUMNS)
        row.update(request_id=trace_id, experiment_id=exp_int, timestamp_ms=min_start_ms,
                   execution_time_ms=(max_end_ms - min_start_ms) if max_end_ms else None,
                   status=root_status or S.TraceState.IN_PROGRESS.value, client_request_id=None,
                   db_payload_generation=1, session_id=session_id)
        if root_dict is not None:
            for column, value in store._update_trace_info_attributes(blank, root_dict).items():
                row[column.key] = value
        if S.TraceTagKey.TRACE_NAME in trace_tags:
            row["trace_name"] = trace_tags[S.TraceTagKey.TRACE_NAME]
        usage = S.aggregate_usage_from_span_nodes(usage_nodes) or {}
        for key, column in S.TOKEN_COLUMN_BY_KEY.items():
            row[column] = S.token_count_or_none(usage.get(key))
        cost = S.aggregate_cost_from_span_nodes(cost_nodes) or {}
        for key, column in S.COST_COLUMN_BY_KEY.items():
            row[column] = S.finite_float_or_none(cost.get(key))
        info_rows.append(row)
        tags = {S.TraceTagKey.SPANS_LOCATION: S.SpansLocation.TRACKING_STORE.value}
        tags.update((k, v) for k, v in trace_tags.items() if k != S.TraceTagKey.TRACE_NAME)
        tag_rows.extend({"request_id": trace_id, "key": k, "value": v} for k, v in tags.items())
        if user_id:
            meta_rows.append({"request_id": trace_id, "key": S.TraceMetadataKey.TRACE_USER,
                              "value": user_id})

    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    try:
        with store.ManagedSessionMaker(read_only=False) as session:
            S.enqueue_rollup_rebuild_partitions(session, partitions)
            existing = session.query(S.SqlTraceInfo.request_id).filter(
                S.SqlTraceInfo.request_id.in_(trace_ids)).first()
            if existing is not None:
                return False  # an update, not a new trace: MLflow's log_spans merges it
            experiment = store.get_experiment(experiment_id)
            for trace_id in trace_ids:
                artifact = store._get_trace_artifact_location_tag(experiment, trace_id)
                tag_rows.append({"request_id": trace_id, "key": artifact.key, "value": artifact.value})
            session.execute(insert(S.SqlTraceInfo.__table__), info_rows)
            session.execute(insert(S.SqlTraceTag.__table__), tag_rows)
            if meta_rows:
                session.execute(insert(S.SqlTraceMetadata.__table__), meta_rows)
            session.execute(insert(S.SqlSpan.__table__), span_rows)
    except Exception as exc:
        # another writer created one of these traces meanwhile: MLflow's log_spans merges them. MLflow's
        # managed session wraps the IntegrityError in an MlflowException.
        if isinstance(exc, IntegrityError) or isinstance(exc.__cause__, IntegrityError):
            return False
        raise
    return True


_INFO_COLUMNS = (
    "request_id", "experiment_id", "timestamp_ms", "execution_time_ms", "status", "client_request_id",
    "request_preview", "response_preview", "db_payload_generation", "trace_name", "session_id",
    "input_tokens", "output_tokens", "total_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
    "cache_creation_input_tokens_above_1hr", "input_cost", "output_cost", "total_cost",
)


def _sql_store_types() -> tuple:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    types = [SqlAlchemyStore]
    try:
        from mlflow.store.tracking.sqlalchemy_workspace_store import WorkspaceAwareSqlAlchemyStore

        types.append(WorkspaceAwareSqlAlchemyStore)
    except ImportError:
        pass
    return tuple(types)


def reset() -> None:
    with _lock:
        _clients.clear()
    with _gate_lock:
        _gate.clear()


def _after_fork_in_child() -> None:
    """Database connections must not cross ``fork()``: a child that wrote through its parent's pooled
    SQLite connection loses writes. Give the child fresh pools (SQLAlchemy's documented recipe)."""
    module = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    if module is None:
        return
    for engine in list(getattr(module.SqlAlchemyStore, "_engine_map", {}).values()):
        try:
            engine.dispose(close=False)
        except Exception:  # noqa: BLE001, S110 - a store we cannot reset is left as it is
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
