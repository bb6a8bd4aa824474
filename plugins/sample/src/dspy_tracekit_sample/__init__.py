"""dspy-tracekit plugin ``sample``: head and tail sampling in-process, with unbiased totals.

Enable it with ``plugins = ["sample"]`` and a ``[tool.dspy-tracekit.sample]`` table (see the README).
The hooks:

- ``tracekit_sample`` (request path): parent-based, then the trace-id ratio of the trace's workload;
  drops a trace at its root when no rule could keep it, leaves it to the tail otherwise.
- ``tracekit_keep_trace`` (delivery path): the tail rules, first match wins.
- ``tracekit_counters``: kept / dropped per rule and stage.

Every kept trace carries the MLflow trace tags ``tracekit.sampling.probability`` and
``tracekit.sampling.rule``; :func:`estimate_total` re-weights values read back from MLflow.
"""

from __future__ import annotations

from typing import Any

from dspy_tracekit import hookimpl

from ._estimate import Estimate, estimate_total, sampling_probability
from ._policy import SamplingPolicy, parse_policy, ratio_bound
from ._sampler import PROBABILITY_TAG, RULE_TAG, Sampler, TokenBucket

__all__ = [
    "PROBABILITY_TAG", "RULE_TAG", "Estimate", "Sampler", "SamplingPolicy", "TokenBucket",
    "estimate_total", "parse_policy", "ratio_bound", "sampling_probability",
]

#: the sampler of the current ``enable()`` (replaced by each ``tracekit_configure``).
_sampler = Sampler()


@hookimpl
def tracekit_configure(config: dict[str, Any], settings: Any) -> None:
    """Validate the table and build the sampler; a bad key fails ``enable()`` with its name."""
    global _sampler
    _sampler = Sampler(parse_policy(config))


@hookimpl
def tracekit_sample(trace) -> bool | None:
    return _sampler.head(trace)


@hookimpl
def tracekit_keep_trace(trace) -> bool | None:
    return _sampler.tail(trace)


@hookimpl
def tracekit_counters() -> dict[str, int | float] | None:
    return _sampler.counters()
