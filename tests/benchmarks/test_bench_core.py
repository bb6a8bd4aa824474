"""Side-by-side benchmark of the request path (issue: core, §9). Not part of the default run.

    uv run pytest -m benchmark tests/benchmarks/test_bench_core.py -s

Each mode runs in its own process (autolog cannot be undone in-process); modes are interleaved over
rounds and the median of the per-round medians is reported, with ratios against the same run's baseline.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("bench_worker.py")
MODES = ["untraced", "autolog", "autolog_sync", "tracekit", "capture"]


def run_modes(modes, rounds, n, warmup, tmp_path):
    results = {m: [] for m in modes}
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    for r in range(rounds):
        for mode in modes:
            out = subprocess.run([sys.executable, str(WORKER), mode, str(n), str(warmup), str(tmp_path / f"r{r}")],
                                 capture_output=True, text=True, env=env, timeout=900)
            (tmp_path / f"r{r}").mkdir(exist_ok=True)
            line = [x for x in out.stdout.splitlines() if x.startswith("{")]
            assert line, f"{mode} failed:\n{out.stderr[-3000:]}"
            results[mode].append(json.loads(line[-1]))
    return results


@pytest.mark.benchmark
@pytest.mark.timeout(5400)
def test_request_path_overhead_side_by_side(tmp_path):
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    n = int(os.environ.get("BENCH_N", "300"))
    for r in range(rounds):
        (tmp_path / f"r{r}").mkdir()
    results = run_modes(MODES, rounds, n, 30, tmp_path)
    med = {m: statistics.median(x["median_ms"] for x in results[m]) for m in MODES}
    cpu = {m: statistics.median(x["cpu_median_ms"] for x in results[m]) for m in MODES}
    base = med["untraced"]
    added = {m: med[m] - base for m in MODES}
    print(f"\nrequest path, 6-span ChainOfThought program on DummyLM, {rounds} rounds x {n} requests, medians")
    print(f"{'mode':<14}{'ms/request':>12}{'added ms':>10}{'thread cpu ms':>15}")
    for m in MODES:
        print(f"{m:<14}{med[m]:>12.3f}{added[m]:>10.3f}{cpu[m]:>15.3f}")
    d_over_c = added["tracekit"] / added["autolog_sync"]
    e_over_b = added["capture"] / added["autolog"]
    print(f"(d)/(c) tracekit inline vs autolog sync, added time: {d_over_c:.3f}  (goal <= 0.2)")
    print(f"(e)/(b) tracekit capture vs autolog async, added time: {e_over_b:.3f}  (goal <= 0.1)")
    (Path(__file__).parent / "last_core_results.json").write_text(json.dumps(
        {"median_ms": med, "added_ms": added, "cpu_ms": cpu, "d_over_c": d_over_c, "e_over_b": e_over_b}, indent=1))
    assert all(x["n"] == n for m in MODES for x in results[m])
