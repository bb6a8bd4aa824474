"""Export: JSON and CSV, one row per span."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import IO, Any

from dspy_tracekit.analytics.views import trace_views

logger = logging.getLogger("dspy_tracekit.analytics")


CSV_COLUMNS = [
    "trace_id",
    "span_id",
    "parent_id",
    "name",
    "span_type",
    "start_time",
    "start_ns",
    "duration_ms",
    "status",
    "error",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "model",
    "module",
    "sampling_probability",
]


def _fmt_num(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def span_rows(traces: Iterable[Any]) -> Iterator[dict[str, str]]:
    """One CSV row per span (all values strings); context tags as ``context.<key>`` columns."""
    for view in trace_views(traces):
        for s in view.spans:
            context = {**view.context, **s.context}
            row = {
                "trace_id": s.trace_id,
                "span_id": s.span_id,
                "parent_id": s.parent_id or "",
                "name": s.name,
                "span_type": s.span_type,
                "start_time": datetime.fromtimestamp(s.start_ns / 1e9, timezone.utc).isoformat(
                    timespec="microseconds"
                ),
                "start_ns": str(s.start_ns),
                "duration_ms": _fmt_num(s.duration_ms),
                "status": s.status,
                "error": s.error or "",
                "input_tokens": _fmt_num(s.input_tokens),
                "output_tokens": _fmt_num(s.output_tokens),
                "total_tokens": _fmt_num(s.total_tokens),
                "cost_usd": _fmt_num(s.cost_usd),
                "model": s.model or "",
                "module": s.module or "",
                "sampling_probability": _fmt_num(view.probability),
            }
            row.update({f"context.{k}": v for k, v in sorted(context.items())})
            yield row


def export_csv(traces: Iterable[Any], out: IO[str], on_trace: Callable[[], None] | None = None) -> int:
    """Write one row per span; returns the number of rows. Context columns are the union over traces."""
    rows = []
    for trace in traces:
        rows.extend(span_rows([trace]))
        if on_trace:
            on_trace()
    context_cols = sorted({k for row in rows for k in row if k.startswith("context.")})
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS + context_cols, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return len(rows)


def export_json(traces: Iterable[Any], out: IO[str], on_trace: Callable[[], None] | None = None) -> int:
    """Write a JSON array of full traces (``Trace.to_dict()``, re-readable with ``Trace.from_dict``)."""
    out.write("[")
    n = 0
    for trace in traces:
        out.write(",\n" if n else "\n")
        out.write(json.dumps(trace.to_dict(), default=str))
        n += 1
        if on_trace:
            on_trace()
    out.write("\n]\n" if n else "]\n")
    return n
