"""Translate and write stages of the delivery path, side by side in one run: a baseline checkout and this one
(issue #12), plus the worker's drain rate and the write's physical floor.

    TK_BASELINE_REF=798b8c9 uv run pytest -m benchmark tests/benchmarks/test_bench_store.py -s

Each round runs ``bench_delivery.py stages`` (1,000 traces) for baseline and candidate, with the cyclic GC off
and on, then ``drain`` (3,000 traces); processes interleaved, medians over rounds (``BENCH_ROUNDS``, 3).
The floor (``TK_BENCH_FLOOR=1``, candidate only, GC off) is ``sqlite3`` alone inserting the very rows the write
stage stored, with MLflow's connection settings and the same batches and transactions.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("_bench_delivery_runner", Path(__file__).with_name("test_bench_delivery.py"))
_runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_runner)
_baseline, _run = _runner._baseline, _runner._run


@pytest.mark.benchmark
@pytest.mark.timeout(5400)
def test_translate_and_write_before_and_after(tmp_path, monkeypatch):
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    who = {"before": _baseline(tmp_path), "after": ""}
    res: dict = {}
    for r in range(rounds):
        for gc in ("off", "on"):
            for w, pp in who.items():
                if gc == "off":
                    monkeypatch.setenv("TK_BENCH_NO_GC", "1")
                else:
                    monkeypatch.delenv("TK_BENCH_NO_GC", raising=False)
                if w == "after" and gc == "off":
                    monkeypatch.setenv("TK_BENCH_FLOOR", "1")
                out = _run("stages", 1000, tmp_path / f"{w}{gc}{r}", pp)
                monkeypatch.delenv("TK_BENCH_FLOOR", raising=False)
                res.setdefault((w, gc), []).append(out)
        monkeypatch.delenv("TK_BENCH_NO_GC", raising=False)
        for w, pp in who.items():
            res.setdefault((w, "drain"), []).append(_run("drain", 3000, tmp_path / f"{w}drain{r}", pp))

    def med(w, gc, stage, unit="trace"):
        return statistics.median(x[f"stage_us_per_{unit}"][stage] for x in res[(w, gc)])

    print(f"\n[store] 6-span intent program, DummyLM, redact + sample(1.0) + cost; {rounds} rounds, medians, "
          "thread CPU µs")
    print(f"{'stage':22}{'GC':>4}{'before /trace':>15}{'after /trace':>14}{'before /span':>14}{'after /span':>13}"
          f"{'after/before':>14}")
    for gc in ("off", "on"):
        for stage in ("translate", "write"):
            b, a = med("before", gc, stage), med("after", gc, stage)
            print(f"{stage:22}{gc:>4}{b:>15.1f}{a:>14.1f}{med('before', gc, stage, 'span'):>14.1f}"
                  f"{med('after', gc, stage, 'span'):>13.1f}{a / b:>14.2f}")
        tb = statistics.median(x["total_us_per_trace"] for x in res[("before", gc)])
        ta = statistics.median(x["total_us_per_trace"] for x in res[("after", gc)])
        print(f"{'all five stages':22}{gc:>4}{tb:>15.1f}{ta:>14.1f}{'':>27}{ta / tb:>14.2f}")
    floor = [x["floor"] for x in res[("after", "off")]]
    print(f"physical floor (sqlite3 alone, same rows, {floor[0]['rows_per_trace']:.0f} rows/trace): "
          f"{statistics.median(f['mlflow_settings_us_per_trace'] for f in floor):.1f} µs/trace thread CPU, "
          f"{statistics.median(f['mlflow_settings_wall_us_per_trace'] for f in floor):.1f} wall; with "
          f"synchronous=OFF {statistics.median(f['synchronous_off_us_per_trace'] for f in floor):.1f} CPU, "
          f"{statistics.median(f['synchronous_off_wall_us_per_trace'] for f in floor):.1f} wall")
    b = statistics.median(x["traces_per_s"] for x in res[("before", "drain")])
    a = statistics.median(x["traces_per_s"] for x in res[("after", "drain")])
    print(f"worker drain of 3,000: {b:.0f} -> {a:.0f} traces/s ({a / b:.2f} x)")
    assert all(x["stored"] == 1020 for k, v in res.items() if k[1] != "drain" for x in v)
