"""Request path of a program shaped like the write-up (the user's MLflow spans around and inside DSPy),
side by side: MLflow alone on the user's spans (baseline), + ``mlflow.dspy.autolog()``, and tracekit
with all four plugins. Not part of the default run.

    uv run pytest -m benchmark tests/benchmarks/test_bench_interop.py -s

One process per mode, modes interleaved over rounds; the median of per-round medians is reported with
ratios against the same run's baseline. ``BENCH_BEFORE_PYTHON=/path/to/other/venv/bin/python`` adds a
``tracekit_before`` and a ``pure_tracekit_before`` row run by another checkout's interpreter (e.g. ``main`` before a change), so "a trace
that never touches MLflow's API costs no more than before" is measured in the same run.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("bench_interop_worker.py")
MODES = ["untraced", "baseline", "autolog", "tracekit", "pure_untraced", "pure_tracekit"]


def _run(python: str, worker: Path, mode: str, n: int, warmup: int, store: Path) -> dict:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run([python, str(worker), mode, str(n), str(warmup), str(store)],
                         capture_output=True, text=True, env=env, timeout=1800, cwd=store)
    line = [x for x in out.stdout.splitlines() if x.startswith("{")]
    assert line, f"{mode} failed:\n{out.stderr[-3000:]}"
    return json.loads(line[-1])


@pytest.mark.benchmark
@pytest.mark.timeout(5400)
def test_write_up_shaped_request_path_side_by_side(tmp_path):
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    n = int(os.environ.get("BENCH_N", "300"))
    before = os.environ.get("BENCH_BEFORE_PYTHON")
    modes = MODES + (["tracekit_before", "pure_tracekit_before"] if before else [])
    worker_copy = tmp_path / WORKER.name  # outside the checkout: the "before" interpreter imports its own code
    shutil.copy(WORKER, worker_copy)
    results = {m: [] for m in modes}
    for r in range(rounds):
        for mode in modes:
            store = tmp_path / f"r{r}-{mode}"
            store.mkdir()
            if mode.endswith("_before"):
                results[mode].append(_run(before, worker_copy, mode.removesuffix("_before"), n, 30, store))
            else:
                results[mode].append(_run(sys.executable, worker_copy, mode, n, 30, store))
    med = {m: statistics.median(x["median_ms"] for x in results[m]) for m in modes}
    cpu = {m: statistics.median(x["cpu_median_ms"] for x in results[m]) for m in modes}
    print(f"\nwrite-up-shaped request (user root + RETRIEVER + database_query + 6 DSPy spans) on DummyLM, "
          f"{rounds} rounds x {n} requests, one process per mode, medians")
    print(f"{'mode':<22}{'ms/request':>12}{'vs baseline':>13}{'thread cpu ms':>15}")
    for m in modes:
        ref = med["baseline"] if not m.startswith("pure_") else med["pure_untraced"]
        print(f"{m:<22}{med[m]:>12.3f}{med[m] - ref:>+13.3f}{cpu[m]:>15.3f}")
    auto_added = med["autolog"] - med["baseline"]
    tk_added = med["tracekit"] - med["baseline"]
    ratio = tk_added / auto_added
    print(f"tracekit added / autolog added (over the user's own spans): {ratio:.3f}  (goal <= 0.2; "
          f"negative = tracekit's total is below the baseline)")
    print(f"user spans traced by MLflow alone cost {med['baseline'] - med['untraced']:.3f} ms over untraced")
    (Path(__file__).parent / "last_interop_results.json").write_text(json.dumps(
        {"median_ms": med, "cpu_ms": cpu, "ratio": ratio}, indent=1))
    assert all(x["n"] == n for m in modes for x in results[m])
