"""The cost plugin's state: prices LM spans at their end and enforces budgets at their start."""

from __future__ import annotations

import logging
import threading
from typing import Any

from dspy_tracekit.errors import BudgetExceeded

from ._config import CostConfig
from ._ledger import BudgetLedger, Totals
from ._prices import PriceTable
from ._tokens import PromptCounter, _texts, load_local_encoding

logger = logging.getLogger("dspy_tracekit.cost")

LM = "lm"
_ZERO = {"input_cost": 0.0, "output_cost": 0.0, "total_cost": 0.0}
TRACE_TOTAL_TAG = "tracekit.cost.total_usd"
_MAX_WARNED_MODELS = 1_000  # one warning per unknown model; beyond this many names, no more warnings


def usd(x: float) -> str:
    """USD as a tag string: 12 significant digits, no float noise (``0.0000135``)."""
    return format(x, ".12g")


class _TraceCost:
    __slots__ = ("by_module", "calls", "cost", "saved", "unknown")

    def __init__(self):
        self.cost = self.saved = 0.0
        self.unknown = self.calls = 0
        self.by_module: dict[str, float] = {}


def _prompt(span) -> Any:
    kwargs = span.kwargs or {}
    messages = kwargs.get("messages")
    if messages is not None:
        return messages
    if span.args:
        return span.args[0]
    return kwargs.get("prompt")


def _model_and_params(span) -> tuple[str | None, dict]:
    """The LM's model and merged call parameters; read from the LM itself when the core has not set them
    on the span yet at span start."""
    if span.model is not None and span.params is not None:
        return span.model, span.params
    lm = span.instance
    model = span.model or getattr(lm, "model", None)
    base = getattr(lm, "kwargs", None)
    params = {**base, **(span.kwargs or {})} if isinstance(base, dict) else dict(span.kwargs or {})
    return (model if isinstance(model, str) else None), params


class CostState:
    """Everything the plugin holds for one ``enable()``; request-path methods are a few dict updates."""

    def __init__(self, config: CostConfig, table: PriceTable | None = None):
        self.config = config
        self.table = table if table is not None else PriceTable.bundled(config.prices)
        self.version = self.table.version
        self.totals = Totals(config.context_keys, config.max_groups)
        self.ledger = BudgetLedger(config.budgets, max_keys=config.max_budget_keys) if config.budgets else None
        self._trace_budgets = any(b.scope in ("trace", "compile") for b in config.budgets)
        # a tokenizer only when budgets need estimates (loading one takes ~0.3 s)
        self.counter = PromptCounter(load_local_encoding()) if config.budgets else PromptCounter(None)
        self._inflight: dict[int, tuple[Any, list]] = {}
        self._traces: dict[int, _TraceCost] = {}
        self._unknown_models: set[str] = set()
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ span start: budgets
    def span_start(self, span) -> None:
        if span.kind != LM or self.ledger is None:
            return
        trace = span.trace
        trace_key = trace.mlflow_trace_id if self._trace_budgets else None
        applicable = self.ledger.keys_for(span.tags, trace_key, trace.workload)
        if not applicable:
            return
        model, params = _model_and_params(span)
        price = self.table.lookup(model)
        estimate = 0.0  # unknown models cannot be estimated; they are not counted against budgets
        if price is not None:
            max_out = params.get("max_tokens") or params.get("max_completion_tokens") or \
                price.max_output_tokens or 0
            estimate = price.worst_case(self.counter.count(_prompt(span)), int(max_out))
        reservation, refusal, warnings = self.ledger.admit(applicable, estimate)
        for spec, key, spent in warnings:
            logger.warning("dspy-tracekit cost: budget %r%s would be exceeded: limit $%.6f, spent $%.6f, "
                           "this call could cost up to $%.6f (action 'warn': the call goes on)",
                           spec.name, f" for {key!r}" if key is not None else "", spec.limit_usd, spent, estimate)
        if refusal is not None:
            spec, key, spent = refusal
            span.set_attribute("cost.budget_exceeded", spec.name)
            raise BudgetExceeded(spec.name, spec.limit_usd, spent, estimate, key)
        self._inflight[span.span_id] = (reservation, applicable)
        span.set_attribute("cost.estimate_usd", estimate)

    # ------------------------------------------------------------------ span end: price, roll up
    def span_end(self, span) -> None:
        if span.kind == LM:
            self._price(span)
        trace = span.trace
        if trace.root is span:
            self._end_trace(trace)

    def _price(self, span) -> None:
        held = self._inflight.pop(span.span_id, None) if self._inflight else None
        if isinstance(span.error, BudgetExceeded):
            return  # refused before it was sent: nothing spent, nothing to count
        usage = span.usage or {}
        inp = usage.get("input_tokens") or 0
        out = usage.get("output_tokens") or 0
        price = self.table.lookup(span.model)
        hit = bool(span.cache_hit)
        cost = saved = 0.0
        unknown = False
        span.set_attribute("cost.price_table", self.version)
        if price is not None and price.name != span.model:
            span.set_attribute("cost.priced_as", price.name)
        if hit:
            span.cost = dict(_ZERO)
            if price is not None:
                # the core reports a hit's usage as zeros; the original call's usage, when it has it, apart
                orig = (span.attributes or {}).get("llm.cached_usage") or usage
                if orig.get("input_tokens") or orig.get("output_tokens"):
                    saved = price.cost(orig.get("input_tokens") or 0, orig.get("output_tokens") or 0,
                                       orig.get("cached_tokens") or 0, orig.get("cache_write_tokens") or 0,
                                       orig.get("reasoning_tokens") or 0).total_cost
                else:  # DSPy reports no usage for cache hits: estimate what the call would have cost
                    texts: list[str] = []
                    _texts(span.outputs if isinstance(span.outputs, (list, tuple)) else [], texts)
                    out_tokens = sum(len(self.counter.encoding.encode_ordinary(t)) if self.counter.encoding
                                     else -(-len(t) // 4) for t in texts)
                    saved = price.cost(self.counter.count(_prompt(span)), out_tokens).total_cost
                    span.set_attribute("cost.saved_estimated", True)
                span.set_attribute("cost.saved_usd", saved)
        elif span.error is not None and not usage:
            pass  # the call failed before reporting usage: no known charge
        elif price is None or not usage:
            unknown = True
            span.set_attribute("cost.unknown", True)
            self._warn_unknown(span.model, price is None)
        else:
            c = price.cost(inp, out, usage.get("cached_tokens") or 0, usage.get("cache_write_tokens") or 0,
                           usage.get("reasoning_tokens") or 0)
            span.cost = c.as_dict()
            cost = c.total_cost
        if held is not None:
            for spec, key, spent in self.ledger.settle(held[0], cost, held[1]):  # type: ignore[union-attr]
                logger.warning("dspy-tracekit cost: budget %r%s exceeded: limit $%.6f, spent $%.6f "
                               "(action 'warn')", spec.name, f" for {key!r}" if key is not None else "",
                               spec.limit_usd, spent)
        module = span.module_path or ""
        trace = span.trace
        self.totals.record(span.model or "", module, span.tags, trace.workload, cost, saved, unknown,
                           hit, inp, out)
        root = trace.root
        if root is None or root.end_ns is None or root is span:
            with self.lock:
                tc = self._traces.get(trace.trace_id)
                if tc is None:
                    tc = self._traces[trace.trace_id] = _TraceCost()
                tc.cost += cost
                tc.saved += saved
                tc.unknown += unknown
                tc.calls += 1
                tc.by_module[module] = tc.by_module.get(module, 0.0) + cost

    def _warn_unknown(self, model: str | None, no_price: bool) -> None:
        name = model or "<no model>"
        with self.lock:
            if name in self._unknown_models or len(self._unknown_models) >= _MAX_WARNED_MODELS:
                return
            self._unknown_models.add(name)
        if no_price:
            logger.warning("dspy-tracekit cost: no price for model %r in table %s; its cost is recorded as "
                           "unknown (add [tool.dspy-tracekit.cost.prices.%s])", name, self.version,
                           f'"{name}"')
        else:
            logger.warning("dspy-tracekit cost: model %r reported no token usage; its cost is recorded as "
                           "unknown", name)

    def _end_trace(self, trace) -> None:
        with self.lock:
            tc = self._traces.pop(trace.trace_id, None)
        if self._trace_budgets:
            self.ledger.end_trace(trace.mlflow_trace_id)  # type: ignore[union-attr]
        if tc is None:
            return
        trace.tags[TRACE_TOTAL_TAG] = usd(tc.cost)
        trace.tags["tracekit.cost.price_table"] = self.version
        attrs = trace.attributes
        attrs["cost.total_usd"] = tc.cost
        attrs["cost.lm_calls"] = tc.calls
        attrs["cost.by_module"] = dict(tc.by_module)
        if tc.unknown:
            trace.tags["tracekit.cost.unknown_calls"] = str(tc.unknown)
            attrs["cost.unknown_calls"] = tc.unknown
        if tc.saved:
            trace.tags["tracekit.cost.saved_usd"] = usd(tc.saved)
            attrs["cost.saved_usd"] = tc.saved

    # ------------------------------------------------------------------ reporting
    def counters(self) -> dict[str, int | float]:
        snap = self.totals.snapshot()
        o = snap["overall"]
        out: dict[str, int | float] = {
            "total_usd": o["cost_usd"], "saved_usd": o["saved_usd"], "lm_calls": o["calls"],
            "unknown_calls": o["unknown_calls"], "cache_hits": o["cache_hits"],
        }
        for model, s in snap["by_model"].items():
            out[f"by_model.{model}.usd"] = s["cost_usd"]
        for rollup, n in self.totals.evictions().items():
            out[f"evicted.{rollup}"] = n
        if self.ledger is not None:
            out["budget_refusals"] = self.ledger.refusals
            out["budget_warnings"] = self.ledger.warnings
            out["budget_accounts"] = len(self.ledger._accounts)
            out["evicted.budget_accounts"] = self.ledger.evicted_expired + self.ledger.evicted_live
            out["evicted.budget_accounts_live"] = self.ledger.evicted_live
        return out
