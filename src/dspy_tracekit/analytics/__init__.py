"""Trace analytics: read tracekit's MLflow traces back and turn them into answers.

Everything here reads the store through MLflow's public client API (``MlflowClient.search_traces``,
``get_trace``, ``delete_traces``), so it works on any MLflow store — the embedded SQLite file, or a
tracking server backed by PostgreSQL. The ``dspy-tracekit`` command line is a thin layer over the
functions below; they return plain dataclasses with ``to_dict()`` so scripts get the same numbers.

Sampling: when the sample plugin kept a trace with probability ``p`` it writes the trace tag
``tracekit.sampling.probability``; every count, token sum, cost and percentile here weighs that
trace by ``1/p``, so the figures estimate the full traffic rather than the sampled subset.
"""

from __future__ import annotations

from dspy_tracekit.analytics._keys import (  # noqa: F401
    _INTERNAL_TAG_PREFIXES,
    _MODEL_SPAN_TYPES,
    _MODULE_SPAN_TYPES,
    _PAGE_SIZE,
    CONTEXT_ATTR_PREFIX,
    COST_ATTR,
    MODEL_ATTR,
    MODULE_PATH_ATTR,
    SAMPLING_TAG,
    TOKEN_USAGE_ATTR,
    AnalyticsError,
)
from dspy_tracekit.analytics.export import (  # noqa: F401
    CSV_COLUMNS,
    _fmt_num,
    export_csv,
    export_json,
    span_rows,
)
from dspy_tracekit.analytics.filters import (  # noqa: F401
    _AGE,
    _UNIT_SECONDS,
    build_filter,
    parse_age,
    parse_since,
)
from dspy_tracekit.analytics.reading import (  # noqa: F401
    _search_page,
    count_traces,
    get_trace,
    iter_traces,
    last_trace,
    load_traces,
)
from dspy_tracekit.analytics.retention import (  # noqa: F401
    PrunePlan,
    plan_prune,
    prune,
)
from dspy_tracekit.analytics.store import (  # noqa: F401
    Store,
    _bound_http_retries,
    _existing_experiments,
    _one_line,
    _sqlite_path,
    default_settings,
    experiment_names,
    open_store,
)
from dspy_tracekit.analytics.summary import (  # noqa: F401
    Correlation,
    PathStats,
    SlowSpan,
    SpanStats,
    Stats,
    _length_bucket,
    error_correlation,
    execution_path,
    stats,
    trace_features,
    weighted_percentile,
)
from dspy_tracekit.analytics.views import (  # noqa: F401
    SpanView,
    TraceView,
    _as_dict,
    _num,
    _root_inputs,
    _span_view,
    _status,
    sampling_probability,
    trace_view,
    trace_views,
)

__all__ = [
    "AnalyticsError",
    "PrunePlan",
    "SpanView",
    "Stats",
    "Store",
    "TraceView",
    "build_filter",
    "count_traces",
    "export_csv",
    "export_json",
    "get_trace",
    "iter_traces",
    "last_trace",
    "load_traces",
    "open_store",
    "parse_age",
    "parse_since",
    "plan_prune",
    "prune",
    "span_rows",
    "stats",
    "trace_views",
    "weighted_percentile",
]
