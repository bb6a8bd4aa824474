"""The request path's thread CPU per request, a baseline checkout and this one side by side (issue #12).

    TK_BASELINE_REF=b727b37 BENCH_ROUNDS=5 uv run pytest -m benchmark tests/benchmarks/test_bench_request.py -s

Each measurement is one process of bench_interop_worker.py (``BENCH_N`` requests after a warm-up, thread
CPU of the calling thread per request, median), baseline and candidate interleaved over ``BENCH_ROUNDS``
rounds, the untraced program measured in the same rounds. Two programs: the pure 6-span DSPy program and
the write-up shape (the user's MLflow spans around and inside DSPy), both with redact, sample (ratio 1),
cost and buffer. Reports medians over rounds, the cost tracekit adds to the untraced program, and the
ratio of the added costs. No timing asserts.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("bench_interop_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def _baseline(tmp_path) -> str:
    dest = tmp_path / "baseline"
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", os.environ["TK_BASELINE_REF"], "src", "plugins"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return os.pathsep.join([str(dest / "src")] + [str(p) for p in sorted((dest / "plugins").glob("*/src"))])


def _run(mode: str, n: int, store: Path, pythonpath: str) -> dict:
    store.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, str(WORKER), mode, str(n), "50", str(store)], capture_output=True,
                         text=True, check=False, env=env, timeout=1800)
    lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
    assert lines, f"{mode} failed:\n{out.stderr[-3000:]}"
    return json.loads(lines[-1])


@pytest.mark.benchmark
@pytest.mark.timeout(5400)
def test_request_path_thread_cpu_before_and_after(tmp_path):
    ref = os.environ.setdefault("TK_BASELINE_REF", "b727b37")
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    n = int(os.environ.get("BENCH_N", "300"))
    who = {"before": _baseline(tmp_path), "after": ""}
    programs = {"pure DSPy, 6 spans": ("pure_untraced", "pure_tracekit"),
                "write-up shape": ("untraced", "tracekit")}
    res: dict = {}
    for i in range(rounds):
        for label, (untraced, traced) in programs.items():
            res.setdefault((label, "untraced"), []).append(
                _run(untraced, n, tmp_path / f"u{i}", "")["cpu_median_ms"])
            for w, pp in (who.items() if i % 2 == 0 else reversed(who.items())):
                res.setdefault((label, w), []).append(_run(traced, n, tmp_path / f"{w}{i}", pp)["cpu_median_ms"])
    print(f"\n[request path] thread CPU ms per request, median of {rounds} rounds × {n} requests, "
          f"before = {ref}; all four plugins")
    print(f"{'':22}{'untraced':>10}{'before':>10}{'after':>10}{'added before':>14}{'added after':>13}"
          f"{'after/before (added)':>22}")
    for label in programs:
        u = statistics.median(res[(label, "untraced")])
        b = statistics.median(res[(label, "before")])
        a = statistics.median(res[(label, "after")])
        print(f"{label:22}{u:>10.3f}{b:>10.3f}{a:>10.3f}{b - u:>14.3f}{a - u:>13.3f}"
              f"{(a - u) / (b - u) if b > u else float('nan'):>22.2f}")
        print(f"{'':22}rounds: before {[round(x, 3) for x in res[(label, 'before')]]}, "
              f"after {[round(x, 3) for x in res[(label, 'after')]]}, untraced "
              f"{[round(x, 3) for x in res[(label, 'untraced')]]}")
