"""The prometheus_client internals the monitor relies on, in one place (a test resolves each one).

A Prometheus histogram counts observations; the monitor counts each span ``1/p`` times (``p`` its
trace's sampling probability) so that rates stay unbiased. prometheus_client has no weighted
``observe``, so :func:`observe_weighted` adds the weight to the bucket the value falls in, the way
``Histogram.observe`` adds 1 (its buckets are stored per bucket and made cumulative when collected),
found by bisection instead of a linear scan. :func:`counter_value` is the value object behind a
labelled counter: its ``inc`` skips the public method's argument checks (the monitor only adds
non-negative amounts), which matters at a few increments per span.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

__all__ = ["COUNTER_SYMBOLS", "HISTOGRAM_SYMBOLS", "check", "counter_value", "histogram_values", "observe_weighted"]

#: attributes of a labelled ``prometheus_client.Histogram`` / ``Counter`` child used below.
HISTOGRAM_SYMBOLS = ("_upper_bounds", "_buckets", "_sum")
COUNTER_SYMBOLS = ("_value",)


def observe_weighted(child: Any, value: float, weight: float) -> None:
    """``child.observe(value)`` counted ``weight`` times (weight may be fractional)."""
    child._sum.inc(value * weight)
    child._buckets[bisect_left(child._upper_bounds, value)].inc(weight)


def histogram_values(child: Any) -> tuple[Any, list, tuple]:
    """``(sum value, bucket values, upper bounds)`` of a labelled histogram."""
    return child._sum, child._buckets, child._upper_bounds


def counter_value(child: Any) -> Any:
    """The value behind a labelled counter: ``counter_value(c).inc(x)`` == ``c.inc(x)`` for x >= 0."""
    return child._value


def check(child: Any, kind: str = "histogram") -> list[str]:
    """The private attributes missing on a histogram (or counter) child (empty when this module works)."""
    names = HISTOGRAM_SYMBOLS if kind == "histogram" else COUNTER_SYMBOLS
    return [name for name in names if not hasattr(child, name)]
