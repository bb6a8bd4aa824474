"""First ``enable()`` on a new SQLite store, side by side with a baseline checkout (issue #12: ≤ 1 s).

    TK_BASELINE_REF=798b8c9 BENCH_ROUNDS=5 uv run pytest -m benchmark tests/benchmarks/test_bench_enable.py -s

Three programs: a bare interpreter (enable() pays every import, DSPy's included), one that has imported
DSPy (any DSPy program: it defines its modules with it), one that has imported DSPy and MLflow. Each run is
a fresh process of bench_delivery.py (all four plugins), baseline and candidate interleaved, after one
warm-up run each (so that both read compiled .pyc files, as an installed wheel does). Medians and best of
N; wall and CPU.

"after" runs with the redact prefilter's compiled-database cache warm (``XDG_CACHE_HOME`` of this run, filled
by the warm-up); "after, cold cache" with an empty one each time: a machine's very first ``enable()``.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_bench_delivery import _baseline, _run  # noqa: E402

MODES = (("bare interpreter", "enable"), ("after import dspy", "enable_dspy"),
         ("after import dspy, mlflow", "enable_imported"))
KEYS = (("enable() wall s", "enable_s"), ("enable() thread CPU s", "enable_cpu_s"),
        ("then 1st trace stored, wall s", "first_trace_stored_s"),
        ("then 1st trace stored, CPU s", "first_trace_cpu_s"))


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
def test_first_enable_before_and_after(tmp_path, monkeypatch):
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    base = _baseline(tmp_path)
    who = {"before": base, "after": "", "cold": ""}
    runs = iter(range(10**6))

    def run(w, m, store):
        cache = tmp_path / (f"cold-cache-{next(runs)}" if w == "cold" else "cache")
        monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
        return _run(m, 1, store, who[w])

    for w in who:  # warm-up: compile .pyc for both checkouts (and fill the warm cache)
        for _, m in MODES:
            run(w, m, tmp_path / f"warm-{w}")
    res = {(w, m): [] for w in who for _, m in MODES}
    for r in range(rounds):
        for _, m in MODES:
            for w in (list(who) if r % 2 == 0 else list(reversed(who))):
                res[(w, m)].append(run(w, m, tmp_path / f"{w}{r}"))
    print(f"\n[first enable()] new SQLite store, redact + sample + cost + buffer, {rounds} rounds, "
          f"median (best)")
    print(f"{'':34}{'before':>16}{'after':>16}{'after/before':>14}{'after, cold cache':>20}{'cold/before':>13}")
    for title, m in MODES:
        print(title)
        for label, k in KEYS:
            b, a, c = ([x[k] for x in res[(w, m)]] for w in who)
            mb = statistics.median(b)
            print(f"  {label:32}{mb:>8.3f} ({min(b):.3f}){statistics.median(a):>8.3f} "
                  f"({min(a):.3f}){statistics.median(a) / mb:>10.2f}{statistics.median(c):>12.3f} ({min(c):.3f})"
                  f"{statistics.median(c) / mb:>9.2f}")
        print(f"  {'MLflow imported by enable()':32}{str(res[('before', m)][0]['mlflow_imported_by_enable']):>16}"
              f"{str(res[('after', m)][0]['mlflow_imported_by_enable']):>16}")
    assert all(x["stored"] == 1 for v in res.values() for x in v)
