"""A long-running service: 100,000 requests, each with its own session id, keep the process's memory flat.

    uv run pytest -m load tests/test_core_soak.py -s

The production plugin set minus the buffer (sample keeps 1% of the traces, inline into a real SQLite
store; cost rolls every LM call up per session). Prints the resident set size after warm-up and at the end.
"""

from __future__ import annotations

import gc
import os

import dspy
import pytest
from tk_testing import IntentSig

import dspy_tracekit as tk

REQUESTS = int(os.environ.get("SOAK_REQUESTS", "100000"))
WARMUP = 20_000  # past the cost plugin's default max_groups (10,000) and DSPy's LM history (10,000)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.load
@pytest.mark.timeout(3600)
def test_rss_stays_flat_over_100k_requests_with_unique_session_ids(store_uri, experiment_name):
    tk.enable(plugins=["cost", "sample"], tracking_uri=store_uri, experiment=experiment_name,
              config={"sample": {"ratio": 0.01, "keep_errors": False}})
    answer = {"reasoning": "because", "intent": "create_workflow"}
    dspy.configure(lm=dspy.utils.DummyLM([answer] * (REQUESTS + 10)))
    program = dspy.ChainOfThought(IntentSig)
    figures = {}
    for i in range(REQUESTS):
        with tk.context(session_id=f"session-{i}", user_id=f"user-{i}"):
            program(message=f"request {i}: help me create a workflow")
        if i + 1 in (WARMUP, REQUESTS // 2, REQUESTS):
            gc.collect()
            figures[i + 1] = rss_bytes()
    c = tk.counters()
    warm, end = figures[WARMUP], figures[REQUESTS]
    print(f"\nRSS after {WARMUP:,} requests (warm-up): {warm / 2**20:.1f} MiB; after {REQUESTS // 2:,}: "
          f"{figures[REQUESTS // 2] / 2**20:.1f} MiB; after {REQUESTS:,}: {end / 2**20:.1f} MiB "
          f"(growth {(end - warm) / 2**20:+.1f} MiB over {REQUESTS - WARMUP:,} new sessions)")
    print({k: v for k, v in c.items() if "evicted" in k or k.startswith("core.traces")})
    assert c["cost.lm_calls"] == REQUESTS
    assert c["cost.evicted.by_context.session_id"] == REQUESTS - 10_000
    # 80,000 more sessions kept forever cost ~19 MiB (241 bytes each, measured on the old code)
    assert end - warm < 8 * 2**20
