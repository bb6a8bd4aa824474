"""Writing translated spans to an MLflow tracking store, many traces per call.

Kept apart from the translation so that the write path can be tuned (batch size, store settings)
without touching what is written.
"""

from __future__ import annotations

import json
import logging
import operator
import os
import re
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
FAST_PATH_DB_TYPES = ("sqlite", "postgresql", "mysql")
_CHECK_FAILED = "schema check failed"
_gate: dict[str, str] = {}  # tracking URI -> "" (fast path on) or the reason it is off
_gate_lock = threading.Lock()


def fast_path_available(tracking_uri: str) -> bool:
    """True when the store at ``tracking_uri`` takes the fast path (checked once per URI, logged once if not)."""
    if not _fast_store_on():
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


def _fast_store_on() -> bool:
    from dspy_tracekit.config import ConfigError, env_flag

    try:
        return env_flag("DSPY_TRACEKIT_FAST_STORE", default=True)
    except ConfigError:  # validated at enable(); changed since: MLflow's own path is always safe
        return False


# ------------------------------------------------------------------------------------------------
# A store that refuses writes (read-only, full disk, wrong credentials): one short line, not a page
# per trace. MLflow's SQL store logs every OperationalError with its traceback (logger
# mlflow.store.db.utils); during tracekit's own writes those records are counted instead, and
# tracekit reports the failure itself: one line per store and error kind, at most every
# STORE_ERROR_LOG_INTERVAL seconds, with how many writes failed since the last line.
# ------------------------------------------------------------------------------------------------

#: seconds between two log lines about the same store and error kind
STORE_ERROR_LOG_INTERVAL = 60.0
_MLFLOW_DB_LOGGER = "mlflow.store.db.utils"
_writing = threading.local()
store_error_counts = {"store_errors": 0, "store_error_lines": 0, "mlflow_log_records_suppressed": 0}
_store_error_seen: dict[tuple[str, str], list] = {}  # (uri, error kind) -> [last line at, failures since]


class _OwnWritesFilter(logging.Filter):
    """Drops MLflow's database error records emitted inside tracekit's own store writes (counted)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(_writing, "depth", 0):
            store_error_counts["mlflow_log_records_suppressed"] += 1
            return False
        return True


_own_writes_filter = _OwnWritesFilter()


class quiet_store_writes:  # a context manager, named like contextlib's
    """Inside: MLflow's per-error database log records of this thread are counted, not printed."""

    def __enter__(self):
        log = logging.getLogger(_MLFLOW_DB_LOGGER)
        if _own_writes_filter not in log.filters:
            log.addFilter(_own_writes_filter)
        _writing.depth = getattr(_writing, "depth", 0) + 1
        return self

    def __exit__(self, *exc_info):
        _writing.depth -= 1
        return False


def reset_store_errors() -> None:
    """Start the store error counters and log intervals afresh (each ``enable()``: counters are per run)."""
    with _gate_lock:
        for key in store_error_counts:
            store_error_counts[key] = 0
        _store_error_seen.clear()


def report_store_error(tracking_uri: str, exc: BaseException, traces: int) -> None:
    """Count a failed write; log one concise line per store and error kind per interval."""
    import time

    from dspy_tracekit._delivery.secrets import strip_url_credentials

    kind = type(exc.__cause__ or exc).__name__
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else kind
    now = time.monotonic()
    with _gate_lock:
        store_error_counts["store_errors"] += 1
        seen = _store_error_seen.setdefault((tracking_uri, kind), [None, 0])
        seen[1] += 1
        if seen[0] is not None and now - seen[0] < STORE_ERROR_LOG_INTERVAL:
            return
        failures, seen[0], seen[1] = seen[1], now, 0
        store_error_counts["store_error_lines"] += 1
    logger.warning("dspy-tracekit: store %s refused a write of %d trace(s): %s: %s (%d failed write(s) since "
                   "the last report; next report in %.0f s at the earliest; see counters mlflow.store_errors)",
                   strip_url_credentials(tracking_uri), traces, kind, strip_url_credentials(text), failures,
                   STORE_ERROR_LOG_INTERVAL)


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


#: entries of each memo below; a memo is cleared when full (traces repeat a few shapes and strings)
_MEMO_SIZE = 4096
#: attribute texts up to this length have MLflow's pure helpers' results memoized
_MEMO_LEN = 256
#: (attribute key, attribute text) of a root span -> MLflow's trace tag (key, value), None: MLflow skips it
_tag_memo: dict[tuple[str, str], tuple[str, str] | None] = {}
#: attribute text of a model name / provider -> the spans table's value (``bounded_model_dimension``)
_dimension_memo: dict[str, Any] = {}
#: what an attribute of a trace id looks like (the artifact location of the others is derived from one)
_TRACE_ID = re.compile(r"tr-[0-9a-f]{32}")


def _trace_tag(S, key: str, value: str) -> tuple[str, str] | None:
    """The trace tag ``log_spans`` makes of root attribute ``mlflow.traceTag.<key>`` (None: skipped).
    Pure MLflow helpers, so memoized for short texts (the same tags come with every trace)."""
    memo = len(value) <= _MEMO_LEN
    if memo:
        found = _tag_memo.get((key, value), _tag_memo)
        if found is not _tag_memo:
            return found  # type: ignore[return-value]
    try:
        tag_key, tag_value = S._validate_trace_tag(key, str(S._try_parse_json_string(value)))
        if tag_key == S.TraceTagKey.TRACE_NAME:
            tag_value = S.validate_trace_name(tag_value)
        result: tuple[str, str] | None = (tag_key, tag_value)
    except Exception:  # noqa: BLE001 - MLflow skips invalid tags too
        result = None
    if memo:
        if len(_tag_memo) >= _MEMO_SIZE:
            _tag_memo.clear()
        _tag_memo[(key, value)] = result
    return result


def _dimension(S, value: str | None):
    """``bounded_model_dimension(_try_parse_json_string(value))`` (pure), memoized for short texts."""
    if value is None:
        return None
    found = _dimension_memo.get(value, _dimension_memo)
    if found is not _dimension_memo:
        return found
    found = S.bounded_model_dimension(S._try_parse_json_string(value))
    if len(value) <= _MEMO_LEN:
        if len(_dimension_memo) >= _MEMO_SIZE:
            _dimension_memo.clear()
        _dimension_memo[value] = found
    return found


#: (store, experiment id) -> (the store, its ``get_experiment``): read once per batch by log_spans, for the
#: artifact location only, which MLflow never changes; a deleted experiment's id fails the insert
#: (foreign keys: ``PRAGMA foreign_keys = ON`` on SQLite) and log_spans then reports it
_experiments: dict[tuple[int, str], tuple[Any, Any]] = {}


def _experiment(store, experiment_id: str):
    found = _experiments.get((id(store), experiment_id))
    if found is None or found[0] is not store:
        found = _experiments[(id(store), experiment_id)] = (store, store.get_experiment(experiment_id))
    return found[1]


def _artifact_locations(store, experiment, trace_ids: list[str]) -> list[tuple[str, str]]:
    """``store._get_trace_artifact_location_tag(experiment, id)`` (key, value) for every id: MLflow's
    helper for the first two, the rest by putting their id where the first's is (same-shaped ids only)."""
    first = store._get_trace_artifact_location_tag(experiment, trace_ids[0])
    out = [(first.key, first.value)]
    if len(trace_ids) == 1:
        return out
    second = store._get_trace_artifact_location_tag(experiment, trace_ids[1])
    out.append((second.key, second.value))
    head, found, tail = first.value.rpartition(trace_ids[0])
    derivable = (found and second.key == first.key and second.value == head + trace_ids[1] + tail
                 and _TRACE_ID.fullmatch(trace_ids[0]) and _TRACE_ID.fullmatch(trace_ids[1]))
    for trace_id in trace_ids[2:]:
        if derivable and _TRACE_ID.fullmatch(trace_id):
            out.append((first.key, head + trace_id + tail))
        else:
            tag = store._get_trace_artifact_location_tag(experiment, trace_id)
            out.append((tag.key, tag.value))
    return out


#: spans columns in the order the fast path builds its rows (``duration_ns`` is computed by the database)
_SPAN_KEYS = ("trace_id", "experiment_id", "span_id", "parent_span_id", "name", "type", "status",
              "start_time_unix_nano", "end_time_unix_nano", "content", "input_cost", "output_cost",
              "total_cost", "model_name", "model_provider")
_TAG_KEYS = ("request_id", "key", "value")


def _insert(store, experiment_id: str, traces: list[list]) -> bool:
    """Insert new traces' rows exactly as ``SqlAlchemyStore.log_spans`` would; False = not applicable."""
    from mlflow.store.tracking import sqlalchemy_store as S

    if type(store) not in _sql_store_types() or store.db_type not in FAST_PATH_DB_TYPES:
        return False
    trace_ids = [views[0].trace_id for views in traces]
    exp_int = int(experiment_id)
    ensure_ascii = store.db_type == "mssql"
    from dspy_tracekit.mlflow.rows import c_encoder, content_encoder

    json_encoder = S.TraceJSONEncoder(ensure_ascii=ensure_ascii)
    encode = c_encoder(json_encoder) or json_encoder.encode
    direct_content = content_encoder(json_encoder) or encode

    info_rows, tag_rows, meta_rows, span_rows, partitions = [], [], [], [], []
    rollups = S.rollups_enabled()  # else MLflow's enqueue_rollup_rebuild_partitions does nothing
    blank = S.SqlTraceInfo()  # stands for "a new trace_info row": previews not set yet
    chat_usage, llm_cost = S.SpanAttributeKey.CHAT_USAGE, S.SpanAttributeKey.LLM_COST
    session_key, conversation_key = S.SpanAttributeKey.SESSION_ID, S.GenAiSemconvKey.CONVERSATION_ID
    model_key, provider_key = S.SpanAttributeKey.MODEL, S.SpanAttributeKey.MODEL_PROVIDER
    tag_prefix = S.SpanAttributeKey.TRACE_TAG_PREFIX
    trace_name_key = S.TraceTagKey.TRACE_NAME
    finite = S.finite_float_or_none
    spans_location = (S.TraceTagKey.SPANS_LOCATION, S.SpansLocation.TRACKING_STORE.value)
    ok, error = S.TraceState.OK.value, S.TraceState.ERROR.value
    error_code = S.SpanStatusCode.ERROR
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
                root_status = error if view.status_code == error_code else ok
                break
        # MLflow's tree-aware aggregation finds nothing when no span carries the attribute, and exactly
        # that span's value when one span does: nodes are built only when two or more do
        with_usage = [v for v in trace_spans if chat_usage in v.span_dict.get("attributes", ())]
        with_cost = [v for v in trace_spans if llm_cost in v.span_dict.get("attributes", ())]
        usage_views = with_usage if len(with_usage) < 2 else trace_spans
        cost_views = with_cost if len(with_cost) < 2 else trace_spans
        session_id = user_id = root_dict = None
        trace_tags: dict[str, str] = {}
        for view in trace_spans:
            span_dict = view.span_dict
            attrs = span_dict.get("attributes", {})
            span_cost = None
            if attrs:
                if session_id is None and (sid := (attrs.get(session_key) or attrs.get(conversation_key))):
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
            model, provider = attrs.get(model_key), attrs.get(provider_key)
            span_rows.append((
                trace_id, exp_int, view.span_id, view.parent_id, view.name, view.span_type, view.status_code,
                view.start_ns, view.end_ns, direct_content(span_dict) if view.direct else encode(span_dict),
                finite(cost_values.get("input_cost")) if cost_values else None,
                finite(cost_values.get("output_cost")) if cost_values else None,
                finite(cost_values.get("total_cost")) if cost_values else None,
                None if model is None else _dimension(S, model),
                None if provider is None else _dimension(S, provider)))
            if rollups:
                partitions.append((S.RollupFamily.SPAN_COST, exp_int, [view.start_ns // 1_000_000]))
            if view.parent_id is None:
                root_dict = span_dict
                for key, value in attrs.items():
                    if key.startswith(tag_prefix):
                        tag = _trace_tag(S, key[len(tag_prefix):], value)
                        if tag is not None:
                            trace_tags[tag[0]] = tag[1]
        if rollups:
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
        if trace_name_key in trace_tags:
            row["trace_name"] = trace_tags[trace_name_key]
        usage = (S.aggregate_usage_from_span_nodes(
            [S._span_aggregation_node(v.span_id, v.parent_id, v.span_dict.get("attributes", {}), chat_usage)
             for v in usage_views]) or {}) if with_usage else {}
        for key, column in S.TOKEN_COLUMN_BY_KEY.items():
            row[column] = S.token_count_or_none(usage.get(key))
        cost = (S.aggregate_cost_from_span_nodes(
            [S._span_aggregation_node(v.span_id, v.parent_id, v.span_dict.get("attributes", {}), llm_cost)
             for v in cost_views]) or {}) if with_cost else {}
        for key, column in S.COST_COLUMN_BY_KEY.items():
            row[column] = finite(cost.get(key))
        if len(row) != len(_INFO_COLUMNS):
            return False  # MLflow filled a column the fast path does not know
        info_rows.append(tuple(row.values()))
        tag_rows.append((trace_id, *spans_location))
        tag_rows.extend((trace_id, k, v) for k, v in trace_tags.items() if k != trace_name_key)
        if user_id:
            meta_rows.append((trace_id, S.TraceMetadataKey.TRACE_USER, user_id))

    from sqlalchemy.exc import IntegrityError

    try:
        with store.ManagedSessionMaker(read_only=False) as session:
            if rollups:
                S.enqueue_rollup_rebuild_partitions(session, partitions)
            existing = session.query(S.SqlTraceInfo.request_id).filter(
                S.SqlTraceInfo.request_id.in_(trace_ids)).first()
            if existing is not None:
                return False  # an update, not a new trace: MLflow's log_spans merges it
            experiment = _experiment(store, experiment_id)
            tag_rows.extend((trace_id, key, value) for trace_id, (key, value)
                            in zip(trace_ids, _artifact_locations(store, experiment, trace_ids)))
            _executemany(session, S.SqlTraceInfo.__table__, _INFO_COLUMNS, info_rows)
            _executemany(session, S.SqlTraceTag.__table__, _TAG_KEYS, tag_rows)
            if meta_rows:
                _executemany(session, S.SqlTraceMetadata.__table__, _TAG_KEYS, meta_rows)
            _executemany(session, S.SqlSpan.__table__, _SPAN_KEYS, span_rows)
    except Exception as exc:
        # another writer created one of these traces meanwhile: MLflow's log_spans merges them. MLflow's
        # managed session wraps the IntegrityError in an MlflowException.
        if isinstance(exc, IntegrityError) or isinstance(exc.__cause__, IntegrityError):
            return False
        raise
    return True


#: (dialect, table, keys) -> (INSERT in the driver's SQL, positions of its parameters in our rows or None
#: when in order, (position, bind processor) of the columns that have one)
_driver_inserts: dict[tuple[str, str, tuple], tuple[str, tuple | None, tuple]] = {}


def _executemany(session, table, keys: tuple, rows: list[tuple]) -> None:
    """``session.execute(insert(table), [dict(zip(keys, row)) for row in rows])``; on SQLite without
    SQLAlchemy building every row's parameters (a third of the write): the statement SQLAlchemy compiles
    for these columns, run by the driver's executemany with each value through the column type's bind
    processor, as SQLAlchemy does. Other databases keep SQLAlchemy's executemany (its multi-row INSERT
    for PostgreSQL)."""
    from sqlalchemy import insert

    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "sqlite" or dialect.paramstyle != "qmark":
        session.execute(insert(table), [dict(zip(keys, row)) for row in rows])
        return
    plan = _driver_inserts.get((dialect.name, table.name, keys))
    if plan is None:
        compiled = insert(table).compile(dialect=dialect, column_keys=list(keys))
        order = tuple(compiled.positiontup)
        positions = None if order == keys else tuple(keys.index(key) for key in order)
        processors = tuple((i, p) for i, p in enumerate(
            table.c[key].type.dialect_impl(dialect).bind_processor(dialect) for key in order) if p is not None)
        plan = _driver_inserts[(dialect.name, table.name, keys)] = (compiled.string, positions, processors)
    sql, positions, processors = plan
    params = rows if positions is None else [tuple(map(row.__getitem__, positions)) for row in rows]
    if processors:
        # the columns with a processor (costs) are mostly NULL: such a row goes as it is
        values = operator.itemgetter(*(i for i, _ in processors), processors[0][0])
        nulls = (None,) * (len(processors) + 1)
        params = [row if values(row) == nulls else _bound(row, processors) for row in params]
    connection.exec_driver_sql(sql, params)


def _bound(row: tuple, processors: tuple) -> tuple:
    """``row`` with every value that is not None through its column's bind processor."""
    out = list(row)
    for i, process in processors:
        if out[i] is not None:
            out[i] = process(out[i])
    return tuple(out)


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
    _experiments.clear()


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
