"""Materialize stage and the burst's GC, side by side in one run: a baseline checkout and this one (issue #12).

    TK_BASELINE_REF=798b8c9 uv run pytest -m benchmark tests/benchmarks/test_bench_materialize.py -s

Each measurement of bench_materialize.py runs in its own process, baseline and candidate interleaved over
rounds (``BENCH_ROUNDS``); medians are reported, with ratios. Materialize: 1,000 captured 6-span traces,
thread CPU, GC off and on. Burst: ``BENCH_N`` requests (3,000) with all four plugins, process CPU and the
share the cyclic GC took of it (``gc.callbacks``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("bench_materialize.py")
ROOT = Path(__file__).resolve().parents[2]


def _baseline(tmp_path) -> str:
    dest = tmp_path / "baseline"
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", os.environ["TK_BASELINE_REF"], "src", "plugins"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return os.pathsep.join([str(dest / "src")] + [str(p) for p in sorted((dest / "plugins").glob("*/src"))])


def _run(mode, n, store, pythonpath, no_gc=False):
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("TK_BENCH_NO_GC", None)
    if no_gc:
        env["TK_BENCH_NO_GC"] = "1"
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, str(WORKER), mode, str(n), str(store)], capture_output=True, text=True,
                         check=False, env=env, timeout=1800)
    lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
    assert lines, f"{mode} failed:\n{out.stderr[-3000:]}"
    return json.loads(lines[-1])


@pytest.mark.benchmark
@pytest.mark.timeout(5400)
def test_materialize_and_burst_gc_before_and_after(tmp_path, monkeypatch):
    monkeypatch.setenv("TK_BASELINE_REF", os.environ.get("TK_BASELINE_REF", "798b8c9"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    n = int(os.environ.get("BENCH_N", "3000"))
    who = {"before": _baseline(tmp_path), "after": ""}
    runs = {"materialize, GC off": ("materialize", True), "materialize, GC on": ("materialize", False),
            "burst": ("burst", False)}
    res = {(w, r): [] for w in who for r in runs}
    for i in range(rounds):
        for label, (mode, no_gc) in runs.items():
            for w, pp in (who.items() if i % 2 == 0 else reversed(who.items())):
                res[(w, label)].append(_run(mode, 1000 if mode == "materialize" else n, tmp_path / f"{w}{i}", pp,
                                            no_gc))
    med = lambda w, label, k: statistics.median(x[k] for x in res[(w, label)])  # noqa: E731
    print(f"\n[materialize] 6-span intent program, DummyLM, {rounds} rounds, before = {os.environ['TK_BASELINE_REF']}")
    print(f"{'':34}{'before':>10}{'after':>10}{'after/before':>14}")
    rows = [(f"{label} µs/trace", label, "us_per_trace") for label in runs if label != "burst"]
    rows += [(f"{label} µs/span", label, "us_per_span") for label in runs if label != "burst"]
    rows += [(f"burst of {n}: process CPU s", "burst", "cpu_s"), ("burst: GC CPU s", "burst", "gc_cpu_s"),
             ("burst: GC share of CPU", "burst", "gc_share"), ("burst: wall s (until stored)", "burst", "wall_s")]
    for text, label, k in rows:
        b, a = med("before", label, k), med("after", label, k)
        print(f"{text:34}{b:>10.3f}{a:>10.3f}{a / b:>14.2f}")
    for w in who:
        print(w, "burst collections per generation:", [x["collections"] for x in res[(w, "burst")]],
              "GC s per generation:", [[round(g, 3) for g in x["gc_cpu_by_generation"]] for x in res[(w, "burst")]])
    assert all(x["stored"] == n for w in who for x in res[(w, "burst")])
