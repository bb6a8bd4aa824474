"""Request-path cost of the cost plugin's hooks, side by side with a bare baseline in one process.

Run: uv run pytest -m benchmark plugins/cost/tests/test_cost_bench.py -s
"""

from __future__ import annotations

import time

import pytest
from dspy_tracekit_cost._config import parse_config
from dspy_tracekit_cost._plugin import CostState

from dspy_tracekit.records import SpanRecord, TraceRecord

MESSAGES = [{"role": "system", "content": "You are a helpful support agent. " * 20},
            {"role": "user", "content": "Help me create a workflow for onboarding new customers. " * 5}]
N = 20_000


def _lm_span(trace):
    span = SpanRecord(trace, 1, "LM.__call__", "lm", kwargs={"messages": MESSAGES})
    span.model = "openai/gpt-4o-mini"
    span.params = {"max_tokens": 500, "temperature": 0.0}
    span.usage = {"input_tokens": 900, "output_tokens": 120, "total_tokens": 1020, "cached_tokens": 512}
    span.tags = {"user_id": "u-1"}
    span.module_path = "Support.classify"
    return span


def _per_span_us(fn, spans):
    t0 = time.perf_counter()
    for s in spans:
        fn(s)
    return (time.perf_counter() - t0) / len(spans) * 1e6


@pytest.mark.benchmark
def test_cost_bench_hook_cost_per_lm_span():
    trace = TraceRecord()
    trace.root = SpanRecord(trace, None, "root", "module")
    plain = CostState(parse_config({}))
    budgets = CostState(parse_config({"budgets": {"u": {"limit_usd": 1e9, "scope": "context", "key": "user_id",
                                                        "window": "day", "action": "raise"}}}))
    spans = [_lm_span(trace) for _ in range(N)]
    baseline = _per_span_us(lambda s: SpanRecord(trace, 1, "x", "lm"), spans)  # making one record
    end_only = _per_span_us(plain.span_end, spans)
    spans = [_lm_span(trace) for _ in range(N)]
    start_budget = _per_span_us(budgets.span_start, spans)
    end_budget = _per_span_us(budgets.span_end, spans)
    print(f"\nper LM span (µs): new SpanRecord {baseline:.2f} | span_end (no budgets) {end_only:.2f} "
          f"({end_only / baseline:.1f}x) | span_start with a budget, {budgets.counter.method} "
          f"{start_budget:.2f} ({start_budget / baseline:.1f}x) | span_end with a budget {end_budget:.2f}")
    assert plain.totals.snapshot()["overall"]["calls"] == N
    assert budgets.totals.snapshot()["overall"]["calls"] == N
