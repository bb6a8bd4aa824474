"""dspy-tracekit plugin ``cost``: what every LM call, module, user and run costs, and budgets.

Prices LM spans from a pinned offline snapshot of LiteLLM's price map (``prices.json``) plus user
overrides, rolls costs up per trace, module path, model and context tag, and enforces budgets before an
LM call is sent. Enable it with ``plugins = ["cost"]`` in ``[tool.dspy-tracekit]``.
"""

from __future__ import annotations

from typing import Any

from dspy_tracekit.hookspecs import hookimpl

from ._config import BudgetSpec, CostConfig, parse_config
from ._ledger import Stat
from ._plugin import LM, TRACE_TOTAL_TAG, CostState
from ._prices import CallCost, Price, PriceTable

__all__ = [
    "TRACE_TOTAL_TAG",
    "BudgetSpec",
    "CallCost",
    "CostConfig",
    "Price",
    "PriceTable",
    "price_table",
    "totals",
]

_state: CostState | None = None


def totals() -> dict[str, Any]:
    """The running totals since the last ``enable()``.

    :return: ``{"overall": {...}, "by_model": {model: {...}}, "by_module": {path: {...}},
        "by_context": {tag: {value: {...}}}, "by_workload": {workload: {...}}}``; each leaf holds
        ``calls, cost_usd, saved_usd, unknown_calls, cache_hits, input_tokens, output_tokens``.
        Counted on the calling thread for every LM call, sampled out or not.
    """
    state = _state
    if state is None:
        return {"overall": Stat().as_dict(), "by_model": {}, "by_module": {}, "by_context": {},
                "by_workload": {}}
    return state.totals.snapshot()


def price_table() -> PriceTable:
    """The price table in use (the bundled snapshot plus config overrides), or the bundled one."""
    return _state.table if _state is not None else PriceTable.bundled()


# ---------------------------------------------------------------------------------------------
# hooks
# ---------------------------------------------------------------------------------------------


@hookimpl
def tracekit_configure(config: dict[str, Any], settings: Any) -> None:
    """Validate the ``cost`` table and start fresh totals and budget accounts."""
    global _state
    _state = CostState(parse_config(config))


@hookimpl
def tracekit_span_start(span: Any) -> None:
    """LM spans: check budgets against the call's worst-case cost; may raise ``BudgetExceeded``."""
    state = _state
    if state is not None and state.ledger is not None and span.kind == LM:  # checked here: one call less
        state.span_start(span)


@hookimpl
def tracekit_span_end(span: Any) -> None:
    """LM spans: price the usage; root spans: write the trace's total."""
    state = _state
    if state is not None and (span.kind == LM or span.trace.root is span):  # checked here: one call less
        state.span_end(span)


@hookimpl
def tracekit_counters() -> dict[str, int | float] | None:
    """Totals and budget counters for ``dspy_tracekit.counters()`` (prefixed ``cost.``)."""
    state = _state
    return state.counters() if state is not None else None

