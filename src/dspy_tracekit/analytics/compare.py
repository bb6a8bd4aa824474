"""``dspy-tracekit compare A B``: two sets of traces side by side, with the significance of each change.

A side is a program version (the trace tag ``tracekit.program_version``: a fingerprint, or what
``tk.context(program_version=...)`` set), a time range, or an MLflow filter:

* ``3210da4fa66d`` or ``version:v7`` — one program version (a unique fingerprint prefix is enough);
* ``2026-11-01..2026-11-08``, ``7d..1d``, ``range:1h..`` — traces started in ``[since, until)``; either
  end may be an age (``7d`` = seven days ago) or a date/ISO time (UTC unless it says), or empty;
* ``filter:tag.user_role = 'admin'`` — any MLflow trace filter.

For each span name and overall (one row per trace): count, P50/P95 latency, error rate, tokens and cost
per request, and the metric score where traces carry one (the per-example scores ``Evaluate`` records).
Tests: latency P50/P95 — a bootstrap 95% confidence interval of B − A (2,000 resamples, fixed seed);
tokens, cost, score — the Mann-Whitney U rank test; error rate — Fisher's exact test (both from SciPy).
Counts are weighted by 1/sampling probability; the tests use the stored traces unweighted.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dspy_tracekit.analytics import (
    AnalyticsError,
    Store,
    TraceView,
    iter_traces,
    parse_since,
    trace_views,
    weighted_percentile,
)
from dspy_tracekit.analytics.views import subtree
from dspy_tracekit.records import VERSION_TAG
from dspy_tracekit.versioning import EXAMPLE_SCORE_ATTR

__all__ = ["CompareRow", "Comparison", "Side", "compare", "compare_views", "known_versions", "parse_side"]

OVERALL = "(overall)"
_VERSION_FILTER = "tag.`" + VERSION_TAG + "`"
_BOOTSTRAP = 2000


@dataclass
class Side:
    """One side of a comparison, as the user wrote it and as it was resolved."""

    text: str
    kind: str  # "version", "range" or "filter"
    version: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    filter: str | None = None
    traces: int = 0

    @property
    def label(self) -> str:
        return self.text

    def clauses(self) -> list[str]:
        out = []
        if self.version is not None:
            out.append(f"{_VERSION_FILTER} = '{_quote(self.version)}'")
        if self.since_ms is not None:
            out.append(f"trace.timestamp_ms >= {self.since_ms}")
        if self.until_ms is not None:
            out.append(f"trace.timestamp_ms < {self.until_ms}")
        if self.filter:
            out.append(self.filter)
        return out


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def parse_side(text: str, name: str = "A") -> Side:
    """Parse a side (see the module doc). :raises AnalyticsError: an unreadable side."""
    raw = (text or "").strip()
    if not raw:
        raise AnalyticsError(f"side {name} is empty: give a program version, a range like 7d..1d, or filter:EXPR")
    if raw.startswith("filter:"):
        expr = raw[len("filter:"):].strip()
        if not expr:
            raise AnalyticsError(f"side {name} {raw!r}: filter: needs an MLflow filter expression")
        return Side(raw, "filter", filter=expr)
    if raw.startswith("version:"):
        version = raw[len("version:"):].strip()
        if not version:
            raise AnalyticsError(f"side {name} {raw!r}: version: needs a program version")
        return Side(raw, "version", version=version)
    if raw.startswith("range:") or ".." in raw:
        body = raw.removeprefix("range:")
        if ".." not in body:
            raise AnalyticsError(f"side {name} {raw!r}: a range is SINCE..UNTIL, e.g. 7d..1d or 2026-11-01..2026-11-08")
        start, _, end = body.partition("..")
        since_ms = _when(start, name, raw) if start.strip() else None
        until_ms = _when(end, name, raw) if end.strip() else None
        if since_ms is not None and until_ms is not None and since_ms >= until_ms:
            raise AnalyticsError(f"side {name} {raw!r}: the range ends before it starts")
        return Side(raw, "range", since_ms=since_ms, until_ms=until_ms)
    return Side(raw, "version", version=raw)


def _when(value: str, name: str, raw: str) -> int:
    try:
        return parse_since(value.strip())
    except AnalyticsError:
        raise AnalyticsError(
            f"side {name} {raw!r}: {value.strip()!r} is neither an age (30m, 7d) nor a date (2026-11-01)"
        ) from None


def known_versions(store: Store, limit: int = 5000) -> dict[str, int]:
    """Program versions in the experiment (newest first) with their trace counts (reads tags only)."""
    seen: dict[str, int] = {}
    for trace in iter_traces(store, include_spans=False, limit=limit):
        version = (trace.info.tags or {}).get(VERSION_TAG)
        if version:
            seen[version] = seen.get(version, 0) + 1
    return seen


def _resolve_version(store: Store, side: Side, name: str) -> None:
    known = known_versions(store)
    if side.version in known:
        return
    matches = [v for v in known if v.startswith(side.version)]
    if len(matches) == 1:
        side.version = matches[0]
        return
    if len(matches) > 1:
        raise AnalyticsError(f"side {name}: program version prefix {side.version!r} is ambiguous "
                             f"({', '.join(matches[:5])})")
    listed = ", ".join(list(known)[:8]) or "none: no trace carries a program version"
    raise AnalyticsError(f"side {name}: unknown program version {side.version!r} in experiment "
                         f"{store.experiment_name!r} (known: {listed})")


def _overlap(a: Side, b: Side) -> bool:
    lo_a, hi_a = a.since_ms if a.since_ms is not None else -math.inf, a.until_ms if a.until_ms is not None else math.inf
    lo_b, hi_b = b.since_ms if b.since_ms is not None else -math.inf, b.until_ms if b.until_ms is not None else math.inf
    return lo_a < hi_b and lo_b < hi_a


@dataclass
class CompareRow:
    """One metric of one group (a span name, or ``(overall)``) on both sides."""

    group: str
    metric: str
    a: float | None
    b: float | None
    change: float | None
    change_pct: float | None
    test: str | None
    p_value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    significant: bool = False


@dataclass
class Comparison:
    """What ``dspy-tracekit compare`` prints; ``to_dict()`` is its ``--json``."""

    experiment: str
    tracking_uri: str
    a: Side
    b: Side
    alpha: float
    rows: list[CompareRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def row(self, group: str, metric: str) -> CompareRow | None:
        return next((r for r in self.rows if r.group == group and r.metric == metric), None)

    @property
    def significant(self) -> list[CompareRow]:
        return [r for r in self.rows if r.significant]


def compare(store: Store, a_text: str, b_text: str, *, since: str | None = None, until: str | None = None,
            filter: str | None = None, alpha: float = 0.05) -> Comparison:
    """Compare side ``a_text`` with side ``b_text`` (see :func:`parse_side`), both narrowed by
    ``since``/``until``/``filter``. :raises AnalyticsError: unknown version, empty side, overlapping ranges."""
    if not 0 < alpha < 1:
        raise AnalyticsError(f"--alpha must be between 0 and 1, got {alpha}")
    a, b = parse_side(a_text, "A"), parse_side(b_text, "B")
    if a.text == b.text:
        raise AnalyticsError(f"sides A and B are the same ({a.text!r}): nothing to compare")
    if a.kind == "range" and b.kind == "range" and _overlap(a, b):
        raise AnalyticsError(f"ranges overlap: A {a.text!r} and B {b.text!r} share traces; "
                             "give ranges that do not overlap")
    common = []
    if since:
        common.append(f"trace.timestamp_ms >= {parse_since(since)}")
    if until:
        common.append(f"trace.timestamp_ms < {_until(until)}")
    if filter and filter.strip():
        common.append(filter.strip())
    for side, name in ((a, "A"), (b, "B")):
        if side.kind == "version":
            _resolve_version(store, side, name)
    views = {}
    for side, name in ((a, "A"), (b, "B")):
        clauses = side.clauses() + common
        views[name] = trace_views(iter_traces(store, None, " AND ".join(clauses)))
        side.traces = len(views[name])
        if not views[name]:
            narrowed = " within the --since/--until/--filter given" if common else ""
            raise AnalyticsError(f"side {name} ({side.text!r}) matches no traces in experiment "
                                 f"{store.experiment_name!r}{narrowed}")
    result = compare_views(views["A"], views["B"], alpha=alpha)
    result.experiment, result.tracking_uri, result.a, result.b = store.experiment_name, store.tracking_uri, a, b
    return result


def _until(value: str) -> int:
    try:
        return parse_since(value)
    except AnalyticsError:
        raise AnalyticsError(f"bad --until {value!r}: use an age like 1h or 7d, or a date like 2026-11-01") from None


# --------------------------------------------------------------------------------------------------
# The numbers
# --------------------------------------------------------------------------------------------------


@dataclass
class _Group:
    durations: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    failed: list[bool] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def add(self, duration, weight, failed, tokens, cost):
        self.durations.append(duration)
        self.weights.append(weight)
        self.failed.append(failed)
        self.tokens.append(tokens)
        self.cost.append(cost)


def _groups(views: Sequence[TraceView]) -> dict[str, _Group]:
    groups: dict[str, _Group] = defaultdict(_Group)
    overall = groups[OVERALL]
    for view in views:
        tokens = sum(s.total_tokens or 0 for s in view.spans)
        overall.add(view.duration_ms, view.weight, view.failed, tokens, view.cost_usd)
        for span in view.spans:
            sub = subtree(span)
            groups[span.name].add(span.duration_ms, view.weight, span.failed,
                                  sum(s.total_tokens or 0 for s in sub), sum(s.cost_usd or 0 for s in sub))
            score = span.attributes.get(EXAMPLE_SCORE_ATTR)
            if isinstance(score, (int, float)) and not isinstance(score, bool):
                groups[span.name].scores.append(float(score))
                overall.scores.append(float(score))
    return groups


def _pct_change(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a == 0:
        return None
    return (b - a) / abs(a) * 100.0


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _constant_equal(x: Sequence[float], y: Sequence[float]) -> bool:
    return len(set(x)) == 1 and set(x) == set(y)


def _rank_test(x: Sequence[float], y: Sequence[float]) -> float | None:
    if len(x) < 2 or len(y) < 2:
        return None
    if _constant_equal(x, y):
        return 1.0
    from scipy.stats import mannwhitneyu

    p = float(mannwhitneyu(x, y, alternative="two-sided").pvalue)
    return None if math.isnan(p) else p


def _fisher(fa: Sequence[bool], fb: Sequence[bool]) -> float | None:
    if len(fa) < 2 or len(fb) < 2:
        return None
    ea, eb = sum(fa), sum(fb)
    if ea == 0 and eb == 0:
        return 1.0
    from scipy.stats import fisher_exact

    return float(fisher_exact([[ea, len(fa) - ea], [eb, len(fb) - eb]]).pvalue)


def _bootstrap_ci(x: Sequence[float], y: Sequence[float], q: float, alpha: float) -> tuple[float, float] | None:
    if len(x) < 2 or len(y) < 2:
        return None
    import numpy as np

    rng = np.random.default_rng(15)
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ix = rng.integers(0, len(xa), size=(_BOOTSTRAP, len(xa)))
    iy = rng.integers(0, len(ya), size=(_BOOTSTRAP, len(ya)))
    qa = np.quantile(xa[ix], q / 100.0, axis=1, method="inverted_cdf")
    qb = np.quantile(ya[iy], q / 100.0, axis=1, method="inverted_cdf")
    diff = qb - qa
    lo, hi = np.quantile(diff, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def compare_views(a: Sequence[TraceView], b: Sequence[TraceView], alpha: float = 0.05,
                  max_groups: int | None = None) -> Comparison:
    """The comparison of two lists of trace views (no store needed)."""
    ga, gb = _groups(a), _groups(b)
    names = [OVERALL] + sorted((set(ga) | set(gb)) - {OVERALL},
                               key=lambda n: -(sum(ga[n].weights) if n in ga else 0) - (sum(gb[n].weights) if n in gb else 0))
    if max_groups is not None:
        names = names[:max_groups]
    rows: list[CompareRow] = []
    for name in names:
        x, y = ga.get(name), gb.get(name)
        rows.extend(_group_rows(name, x, y, alpha))
    return Comparison(experiment="", tracking_uri="", a=Side("A", "views", traces=len(a)),
                      b=Side("B", "views", traces=len(b)), alpha=alpha, rows=rows)


def _group_rows(name: str, x: _Group | None, y: _Group | None, alpha: float) -> list[CompareRow]:
    def row(metric, va, vb, test=None, p=None, ci=None):
        change = None if va is None or vb is None else vb - va
        significant = False
        if p is not None:
            significant = p < alpha
        if ci is not None:
            significant = ci[0] > 0 or ci[1] < 0
        return CompareRow(name, metric, va, vb, change, _pct_change(va, vb), test, p,
                          ci[0] if ci else None, ci[1] if ci else None, significant)

    empty = _Group()
    x, y = x or empty, y or empty
    out = [row("count", float(sum(x.weights)), float(sum(y.weights)))]
    for q in (50, 95):
        out.append(row(f"p{q}_ms", weighted_percentile(x.durations, x.weights, q),
                       weighted_percentile(y.durations, y.weights, q), f"bootstrap {100 * (1 - alpha):g}% CI",
                       ci=_bootstrap_ci(x.durations, y.durations, q, alpha)))
    out.append(row("error_rate", _rate(x), _rate(y), "Fisher exact", _fisher(x.failed, y.failed)))
    out.append(row("tokens_per_request", _wmean(x.tokens, x.weights), _wmean(y.tokens, y.weights),
                   "Mann-Whitney U", _rank_test(x.tokens, y.tokens)))
    out.append(row("cost_per_request", _wmean(x.cost, x.weights), _wmean(y.cost, y.weights),
                   "Mann-Whitney U", _rank_test(x.cost, y.cost)))
    if x.scores or y.scores:
        out.append(row("score", _mean(x.scores), _mean(y.scores), "Mann-Whitney U", _rank_test(x.scores, y.scores)))
    return out


def _rate(g: _Group) -> float | None:
    total = sum(g.weights)
    if not total:
        return None
    return sum(w for w, f in zip(g.weights, g.failed) if f) / total


def _wmean(values: Sequence[float], weights: Sequence[float]) -> float | None:
    total = sum(weights)
    if not total:
        return None
    return sum(v * w for v, w in zip(values, weights)) / total
