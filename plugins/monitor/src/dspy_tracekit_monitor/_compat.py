"""The prometheus_client internals the monitor relies on, in one place (a test resolves each one).

A Prometheus histogram counts observations; the monitor counts each span ``1/p`` times (``p`` its
trace's sampling probability) so that rates stay unbiased. prometheus_client has no weighted
``observe``, so :func:`observe_weighted` adds the weight to the bucket the value falls in, the way
``Histogram.observe`` adds 1 (its buckets are stored per bucket and made cumulative when collected).
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRIVATE_SYMBOLS", "check", "observe_weighted"]

#: attributes of a labelled ``prometheus_client.Histogram`` child used below.
PRIVATE_SYMBOLS = ("_upper_bounds", "_buckets", "_sum")


def observe_weighted(child: Any, value: float, weight: float) -> None:
    """``child.observe(value)`` counted ``weight`` times (weight may be fractional)."""
    if weight == 1.0:
        child.observe(value)
        return
    child._sum.inc(value * weight)
    for i, bound in enumerate(child._upper_bounds):
        if value <= bound:
            child._buckets[i].inc(weight)
            break


def check(child: Any) -> list[str]:
    """The private attributes missing on a histogram child (empty when this module works)."""
    return [name for name in PRIVATE_SYMBOLS if not hasattr(child, name)]
