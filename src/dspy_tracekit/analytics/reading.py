"""Reading traces back, page by page, through MLflow's public client API."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from dspy_tracekit.analytics._keys import _PAGE_SIZE, AnalyticsError
from dspy_tracekit.analytics.filters import build_filter
from dspy_tracekit.analytics.store import Store, _one_line, open_store

logger = logging.getLogger("dspy_tracekit.analytics")


def _search_page(store: Store, filter_string, include_spans, max_results, order_by, token):
    try:
        return store.client.search_traces(
            locations=[store.experiment_id],
            filter_string=filter_string,
            max_results=max_results,
            order_by=order_by,
            page_token=token,
            include_spans=include_spans,
        )
    except Exception as exc:  # a bad filter or a lost connection: one line for the user
        error_code = getattr(exc, "error_code", "")
        if filter_string and error_code == "INVALID_PARAMETER_VALUE":
            raise AnalyticsError(f"bad filter {filter_string!r}: {_one_line(exc)}") from exc
        raise AnalyticsError(f"cannot read traces from {store.tracking_uri}: {_one_line(exc)}") from exc


def iter_traces(
    store: Store,
    since: str | None = None,
    filter: str | None = None,
    *,
    include_spans: bool = True,
    limit: int | None = None,
    order_by: Sequence[str] = ("timestamp_ms DESC",),
    extra: Sequence[str] = (),
) -> Iterator[Any]:
    """Yield MLflow :class:`~mlflow.entities.Trace` objects page by page (newest first by default)."""
    filter_string = build_filter(since, filter, *extra)
    token, seen = None, 0
    while True:
        page_size = _PAGE_SIZE if limit is None else min(_PAGE_SIZE, limit - seen)
        if page_size <= 0:
            return
        page = _search_page(store, filter_string, include_spans, page_size, list(order_by), token)
        for trace in page:
            yield trace
            seen += 1
        token = page.token
        if not token or not len(page):
            return


def load_traces(
    tracking_uri: str | None = None,
    experiment: str | None = None,
    since: str | None = None,
    filter: str | None = None,
    *,
    limit: int | None = None,
    include_spans: bool = True,
) -> list[Any]:
    """All traces of the experiment that match (MLflow ``Trace`` objects, newest first)."""
    store = open_store(tracking_uri, experiment)
    return list(iter_traces(store, since, filter, include_spans=include_spans, limit=limit))


def count_traces(store: Store, since: str | None = None, filter: str | None = None) -> int:
    """How many traces match (reads trace metadata only, no spans)."""
    return sum(1 for _ in iter_traces(store, since, filter, include_spans=False))


def get_trace(store: Store, trace_id: str) -> Any:
    """One trace by id. :raises AnalyticsError: no such trace."""
    try:
        trace = store.client.get_trace(trace_id, display=False)
    except Exception as exc:  # MLflow raises RESOURCE_DOES_NOT_EXIST, or a transport error
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower():
            raise AnalyticsError(f"trace {trace_id!r} not found in {store.tracking_uri}") from exc
        raise AnalyticsError(f"cannot read trace {trace_id!r}: {_one_line(exc)}") from exc
    if trace is None:
        raise AnalyticsError(f"trace {trace_id!r} not found in {store.tracking_uri}")
    return trace


def last_trace(store: Store, since: str | None = None, filter: str | None = None) -> Any:
    """The newest matching trace. :raises AnalyticsError: there is none."""
    for trace in iter_traces(store, since, filter, limit=1):
        return trace
    raise AnalyticsError(f"no traces in experiment {store.experiment_name!r} match")
