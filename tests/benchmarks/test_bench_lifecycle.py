"""Request path before/after a change, side by side in one run (issue #11 §2: the runtime object).

    uv run pytest -m benchmark tests/benchmarks/test_bench_lifecycle.py -s
    BENCH_BASELINE_REF=main BENCH_ROUNDS=5 BENCH_N=400 uv run pytest -m benchmark ... -s

The baseline is ``git archive <BENCH_BASELINE_REF>`` of ``src/`` and ``plugins/``, the candidate a copy
of this checkout's; each is put first on ``PYTHONPATH`` (so both load the same way: the editable install
alone measured ~50 µs per request slower than the same code on ``PYTHONPATH``). Each (mode, tree) runs in its own process
(``bench_worker.py``), interleaved over rounds; medians of thread CPU time per request are reported
with candidate/baseline ratios. No timing asserts: the figures are for the reader.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("bench_worker.py")
PLUGINS = ("buffer", "cost", "monitor", "redact", "sample")


def baseline_tree(ref: str, into: Path) -> str:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src", "plugins"], capture_output=True,
                             check=True).stdout
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return os.pathsep.join([str(into / "src")] + [str(into / "plugins" / p / "src") for p in PLUGINS])


def candidate_tree(into: Path) -> str:
    import shutil

    ignore = shutil.ignore_patterns("__pycache__", "tests", "*.pyc")
    shutil.copytree(ROOT / "src", into / "src", ignore=ignore)
    for p in PLUGINS:
        shutil.copytree(ROOT / "plugins" / p / "src", into / "plugins" / p / "src", ignore=ignore)
    return os.pathsep.join([str(into / "src")] + [str(into / "plugins" / p / "src") for p in PLUGINS])


def run(mode: str, n: int, store: Path, pythonpath: str | None) -> dict:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    store.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([sys.executable, str(WORKER), mode, str(n), "30", str(store)], capture_output=True,
                         text=True, env=env, timeout=900, check=False)
    line = [x for x in out.stdout.splitlines() if x.startswith("{")]
    assert line, f"{mode} failed:\n{out.stderr[-3000:]}"
    return json.loads(line[-1])


@pytest.mark.benchmark
@pytest.mark.timeout(5400)
def test_request_path_before_and_after_side_by_side(tmp_path):
    ref = os.environ.get("BENCH_BASELINE_REF", "main")
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    n = int(os.environ.get("BENCH_N", "300"))
    old_path = baseline_tree(ref, tmp_path / "baseline")
    new_path = candidate_tree(tmp_path / "candidate")
    modes = os.environ.get("BENCH_MODES", "capture,plugins").split(",")
    runs = [("untraced", "candidate")] + [(m, t) for m in modes for t in ("baseline", "candidate")]
    cpu: dict[tuple[str, str], list[float]] = {r: [] for r in runs}
    wall: dict[tuple[str, str], list[float]] = {r: [] for r in runs}
    for r in range(rounds):
        for mode, tree in (runs if r % 2 == 0 else [runs[0], *reversed(runs[1:])]):
            res = run(mode, n, tmp_path / f"r{r}-{tree}", old_path if tree == "baseline" else new_path)
            cpu[(mode, tree)].append(res["cpu_median_ms"])
            wall[(mode, tree)].append(res["median_ms"])
    med = {k: statistics.median(v) for k, v in cpu.items()}
    base = med[("untraced", "candidate")]
    print(f"\nthread CPU per request, 6-span program on DummyLM, {rounds} rounds x {n}, baseline = {ref}")
    print(f"  untraced                 {base:.3f} ms")
    for mode in modes:
        old, new = med[(mode, "baseline")], med[(mode, "candidate")]
        print(f"  {mode:8s} baseline {old:.3f} ms (+{old - base:.3f})   candidate {new:.3f} ms (+{new - base:.3f})"
              f"   candidate/baseline added: {(new - base) / max(old - base, 1e-9):.2f}")
    assert all(len(v) == rounds for v in cpu.values())
