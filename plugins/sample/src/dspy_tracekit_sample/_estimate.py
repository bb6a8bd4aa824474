"""Horvitz–Thompson re-weighting of sampled traces.

Each kept trace was kept with the probability ``p`` written in its ``tracekit.sampling.probability``
tag, independently of the others (a ratio test on its own random trace id), so

- ``sum(y / p)`` over the kept traces is an unbiased estimate of ``sum(y)`` over all traces, and
- ``sum(y**2 * (1 - p) / p**2)`` over the kept traces is an unbiased estimate of its variance.

Use ``y = 1`` to count traces, a latency for total latency, a cost for total cost.
Traces dropped by ``max_traces_per_second`` are not accounted for: watch ``sample.*.dropped.rate_limit``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dspy_tracekit.keys import sampling_probability as _sampling_probability

from ._sampler import PROBABILITY_TAG  # noqa: F401 - re-exported

__all__ = ["Estimate", "estimate_total", "sampling_probability"]


@dataclass(frozen=True)
class Estimate:
    """A re-weighted total and its standard error."""

    total: float
    std_error: float
    kept: int


def sampling_probability(tags: Mapping[str, str] | None) -> float:
    """The probability a trace was kept with, from its MLflow trace tags.

    1.0 when untagged, or when the tag is not a probability in (0, 1]: the same reading as the
    analytics' (:func:`dspy_tracekit.keys.sampling_probability`).
    """
    return _sampling_probability(tags) or 1.0


def estimate_total(values: Iterable[tuple[float, float]]) -> Estimate:
    """Horvitz–Thompson total of ``(value, probability)`` pairs of kept traces.

    >>> estimate_total([(2.0, 0.5), (1.0, 1.0)]).total
    5.0
    """
    total = 0.0
    var = 0.0
    n = 0
    for y, p in values:
        if not 0.0 < p <= 1.0:
            raise ValueError(f"sampling probability must be in (0, 1], got {p!r}")
        total += y / p
        var += y * y * (1.0 - p) / (p * p)
        n += 1
    return Estimate(total, math.sqrt(var), n)
