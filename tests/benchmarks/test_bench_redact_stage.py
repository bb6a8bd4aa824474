"""The redact stage of the delivery path, side by side in one run: a baseline checkout and this one (issue #12).

    TK_BASELINE_REF=798b8c9 uv run pytest -m benchmark tests/benchmarks/test_bench_redact_stage.py -s

``bench_delivery.py stages`` runs in its own process per side and GC mode (the cyclic GC off with
``TK_BENCH_NO_GC=1``, and on), baseline and candidate interleaved over ``BENCH_ROUNDS`` rounds; the redact
stage's µs per trace and per span (thread CPU time) are reported as medians, with ratios. Each process
redacts ``BENCH_N`` traces it has not seen before (the burst's messages differ per request), after 20
warm-up requests, as the buffer's worker would.
"""

from __future__ import annotations

import os
import statistics

import pytest
from benchmarks.test_bench_delivery import _baseline, _run


@pytest.mark.benchmark
@pytest.mark.timeout(5400)
def test_redact_stage_before_and_after(tmp_path):
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    n = int(os.environ.get("BENCH_N", "1000"))
    os.environ.setdefault("TK_BASELINE_REF", "798b8c9")
    who = {"before": _baseline(tmp_path), "after": ""}
    gc_modes = {"GC off": "1", "GC on": ""}
    res: dict = {(w, g): [] for w in who for g in gc_modes}
    saved = os.environ.get("TK_BENCH_NO_GC")
    try:
        for r in range(rounds):
            for g, flag in gc_modes.items():
                for w, pp in who.items():
                    if flag:
                        os.environ["TK_BENCH_NO_GC"] = flag
                    else:
                        os.environ.pop("TK_BENCH_NO_GC", None)
                    res[(w, g)].append(_run("stages", n, tmp_path / f"{w}{r}{flag}", pp))
    finally:
        if saved is None:
            os.environ.pop("TK_BENCH_NO_GC", None)
        else:
            os.environ["TK_BENCH_NO_GC"] = saved
    print(f"\n[redact stage] 6-span intent program, DummyLM, {n} traces per process, {rounds} rounds, "
          f"baseline {os.environ['TK_BASELINE_REF']}; median (all rounds) µs, thread CPU time")
    print(f"{'':22}{'before':>10}{'after':>10}{'after/before':>14}   rounds before | after")
    for g in gc_modes:
        for unit, key in (("per trace", "stage_us_per_trace"), ("per span", "stage_us_per_span")):
            b = [x[key]["redact"] for x in res[("before", g)]]
            a = [x[key]["redact"] for x in res[("after", g)]]
            mb, ma = statistics.median(b), statistics.median(a)
            print(f"{g + ', ' + unit:22}{mb:>10.1f}{ma:>10.1f}{ma / mb:>14.2f}   "
                  f"{' '.join(f'{x:.0f}' for x in b)} | {' '.join(f'{x:.0f}' for x in a)}")
    for g in gc_modes:
        for w in who:
            assert all(x["stored"] >= n for x in res[(w, g)]), (w, g)
