"""Writing translated spans to an MLflow tracking store, many traces per call.

Kept apart from the translation so that the write path can be tuned (batch size, store settings)
without touching what is written.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

_clients: dict[str, Any] = {}
_lock = threading.Lock()


def tracing_client(tracking_uri: str):
    with _lock:
        client = _clients.get(tracking_uri)
        if client is None:
            from mlflow.tracing.client import TracingClient

            client = _clients[tracking_uri] = TracingClient(tracking_uri)
        return client


def log_spans(tracking_uri: str, experiment_id: str, spans: list) -> None:
    """Write spans of one or many traces in one store call (one transaction on SQL stores).

    New traces on a SQLite store take the fast path (:func:`_fast_insert`); anything else — a trace
    already in the store, another backend, another MLflow version — goes through MLflow's own
    ``log_spans``.
    """
    if not spans:
        return
    client = tracing_client(tracking_uri)
    if _fast_path_allowed() and _fast_insert(client.store, experiment_id, spans):
        return
    try:
        client.log_spans(experiment_id, spans)
    except NotImplementedError as exc:
        # MLflow's RestStore caches the server version with lru_cache, including a failed lookup
        # (server down or slow): every later log_spans would then fail as "not supported". Forget
        # the failure and report it as what it is, an unreachable server (transient: retried/spooled).
        if "could not identify MLflow server version" not in str(exc):
            raise
        from .mlflow_compat import clear_rest_server_version_cache

        clear_rest_server_version_cache()
        raise ConnectionError(f"MLflow tracking server unreachable ({exc})") from exc


def log_trace_infos(tracking_uri: str, infos: list) -> None:
    """Trace metadata (``mlflow.update_current_trace(metadata=...)``) lives in MLflow's trace info, not
    in spans: merged into the stored traces the way MLflow's own exporter does (spans first, then
    ``start_trace``, which merges into an existing trace)."""
    client = tracing_client(tracking_uri)
    for info in infos:
        client.start_trace(info)


# ------------------------------------------------------------------------------------------------
# Fast path: new traces on a SQLite store, written with one executemany per table.
#
# MLflow's SqlAlchemyStore.log_spans spends most of its time per trace in SQLAlchemy: a multi-row
# INSERT ... VALUES compiled afresh for every 100 spans (its statement cache cannot hold it), an ORM
# flush per new trace, and per-trace UPDATE / merge statements (profiled: ~2/3 of the time). For
# traces that do not exist yet, the rows it ends up with are fully determined by the spans, so we
# compute the very same rows with MLflow's own helpers (translation, aggregation, previews, tag
# validation, rollup invalidation) and insert them with cached executemany statements in one
# transaction. plugins/buffer/tests/test_buffer_store_fast_path.py compares every table with log_spans.
# ------------------------------------------------------------------------------------------------

#: MLflow versions whose SqlAlchemyStore.log_spans the fast path reproduces (checked table by table).
FAST_PATH_MLFLOW_VERSIONS = ("3.17.",)


def _fast_path_allowed() -> bool:
    if os.environ.get("DSPY_TRACEKIT_FAST_STORE", "1").lower() in ("0", "false", "no", "off"):
        return False
    import mlflow

    return mlflow.__version__.startswith(FAST_PATH_MLFLOW_VERSIONS)


def _fast_insert(store, experiment_id: str, spans: list) -> bool:
    """Insert new traces' rows exactly as ``SqlAlchemyStore.log_spans`` would; False = not applicable."""
    from mlflow.store.tracking import sqlalchemy_store as S

    if type(store) not in _sql_store_types() or store.db_type != "sqlite":
        return False
    by_trace: dict[str, list] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    trace_ids = list(by_trace)
    exp_int = int(experiment_id)

    info_rows, tag_rows, meta_rows, span_rows, partitions = [], [], [], [], []
    blank = S.SqlTraceInfo()  # stands for "a new trace_info row": previews not set yet
    for trace_id, trace_spans in by_trace.items():
        min_start_ms = min(s.start_time_ns for s in trace_spans) // 1_000_000
        end_times = [s.end_time_ns for s in trace_spans if s.end_time_ns is not None]
        max_end_ms = (max(end_times) // 1_000_000) if end_times else None
        root_status = store._get_trace_status_from_root_span(trace_spans)
        usage_nodes, cost_nodes = [], []
        session_id = user_id = root_dict = None
        trace_tags: dict[str, str] = {}
        for span in trace_spans:
            span_dict = S.translate_span_when_storing(span)
            attrs = span_dict.get("attributes", {})
            usage_nodes.append(S._span_aggregation_node(span.span_id, span.parent_id, attrs,
                                                         S.SpanAttributeKey.CHAT_USAGE))
            cost_nodes.append(S._span_aggregation_node(span.span_id, span.parent_id, attrs,
                                                        S.SpanAttributeKey.LLM_COST))
            span_cost = None
            if attrs:
                if session_id is None and (sid := (attrs.get(S.SpanAttributeKey.SESSION_ID)
                                                   or attrs.get(S.GenAiSemconvKey.CONVERSATION_ID))):
                    session_id = S.validate_session_id(S._try_parse_json_string(sid))
                if user_id is None and (uid := attrs.get("user.id")):
                    user_id = S._try_parse_json_string(uid)
                span_cost = attrs.get(S.SpanAttributeKey.LLM_COST)
            cost_values = {}
            if span_cost:
                try:
                    cost_values = json.loads(span_cost)
                except (TypeError, ValueError):
                    cost_values = {}
            span_rows.append({
                "trace_id": trace_id, "experiment_id": exp_int, "span_id": span.span_id,
                "parent_span_id": span.parent_id, "name": span.name, "type": span.span_type,
                "status": span.status.status_code, "start_time_unix_nano": span.start_time_ns,
                "end_time_unix_nano": span.end_time_ns,
                "content": json.dumps(span_dict, cls=S.TraceJSONEncoder, ensure_ascii=False),
                "input_cost": S.finite_float_or_none(cost_values.get("input_cost")),
                "output_cost": S.finite_float_or_none(cost_values.get("output_cost")),
                "total_cost": S.finite_float_or_none(cost_values.get("total_cost")),
                "model_name": S.bounded_model_dimension(
                    S._try_parse_json_string(attrs.get(S.SpanAttributeKey.MODEL))),
                "model_provider": S.bounded_model_dimension(
                    S._try_parse_json_string(attrs.get(S.SpanAttributeKey.MODEL_PROVIDER))),
            })
            partitions.append((S.RollupFamily.SPAN_COST, exp_int, [span.start_time_ns // 1_000_000]))
            if span.parent_id is None:
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
        if any(getattr(span._span, "resource", None) is not None and span._span.resource.attributes
               for span in trace_spans):
            return False  # resource attributes become tags: not reproduced here
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
