"""Retention: plan and run deletions of old traces."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from dspy_tracekit.analytics._keys import AnalyticsError
from dspy_tracekit.analytics.filters import parse_age
from dspy_tracekit.analytics.reading import iter_traces
from dspy_tracekit.analytics.store import Store, _one_line

logger = logging.getLogger("dspy_tracekit.analytics")


@dataclass
class PrunePlan:
    """The traces a prune would delete: exactly these ids, nothing found later."""

    store: Store
    cutoff_ms: int
    keep_errors: bool
    trace_ids: list[str]
    errors: int
    oldest_ms: int | None
    newest_ms: int | None
    sample: list[tuple[str, int, str]]


def plan_prune(
    store: Store,
    older_than: str,
    keep_errors: bool = False,
    filter: str | None = None,
    now: datetime | None = None,
    since: str | None = None,
) -> PrunePlan:
    """Find the traces older than ``older_than`` (``30d``…), skipping failed ones if ``keep_errors``."""
    now = now or datetime.now(timezone.utc)
    cutoff_ms = int((now - parse_age(older_than)).timestamp() * 1000)
    extra = [f"trace.timestamp_ms < {cutoff_ms}"]
    if keep_errors:
        extra.append("trace.status != 'ERROR'")
    ids, times, errors, sample = [], [], 0, []
    for trace in iter_traces(
        store, since, filter, include_spans=False, order_by=("timestamp_ms ASC",), extra=extra
    ):
        info = trace.info
        state = str(getattr(info.state, "value", info.state))
        ids.append(info.trace_id)
        times.append(int(info.request_time or 0))
        errors += state == "ERROR"
        if len(sample) < 10:
            sample.append((info.trace_id, int(info.request_time or 0), state))
    return PrunePlan(
        store=store,
        cutoff_ms=cutoff_ms,
        keep_errors=keep_errors,
        trace_ids=ids,
        errors=errors,
        oldest_ms=min(times) if times else None,
        newest_ms=max(times) if times else None,
        sample=sample,
    )


def prune(plan: PrunePlan, batch: int = 100, on_batch: Callable[[int], None] | None = None) -> int:
    """Delete exactly the traces of ``plan`` with MLflow's ``delete_traces``; returns how many went."""
    deleted = 0
    for i in range(0, len(plan.trace_ids), batch):
        chunk = plan.trace_ids[i : i + batch]
        try:
            deleted += plan.store.client.delete_traces(plan.store.experiment_id, trace_ids=chunk) or 0
        except Exception as exc:  # reported as one line; earlier batches stay deleted
            raise AnalyticsError(f"deleting traces failed after {deleted}: {_one_line(exc)}") from exc
        if on_batch:
            on_batch(len(chunk))
    return deleted
