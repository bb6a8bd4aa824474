"""Delivery path, side by side in one run: a baseline checkout and this one (issue #12).

    TK_BASELINE_REF=main uv run pytest -m benchmark tests/benchmarks/test_bench_delivery.py -s

The baseline is ``git archive $TK_BASELINE_REF`` of src/ and plugins/, run by the same interpreter with
PYTHONPATH pointing at it; each mode of bench_delivery.py runs in its own process, baseline and
candidate interleaved over rounds; medians are reported, with ratios.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("bench_delivery.py")
ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ("buffer", "redact", "sample", "cost")


def _baseline(tmp_path) -> str:
    ref = os.environ.get("TK_BASELINE_REF", "96042eb")
    dest = tmp_path / "baseline"
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src", "plugins"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return os.pathsep.join([str(dest / "src")] + [str(dest / "plugins" / p / "src") for p in PLUGINS])


def _run(mode, n, store, pythonpath):
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, str(WORKER), mode, str(n), str(store)], capture_output=True, text=True, check=False,
                         env=env, timeout=1800)
    lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
    assert lines, f"{mode} failed:\n{out.stderr[-3000:]}"
    return json.loads(lines[-1])


@pytest.mark.benchmark
@pytest.mark.timeout(5400)
def test_delivery_path_before_and_after(tmp_path):
    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))
    n = int(os.environ.get("BENCH_N", "3000"))
    base_pp = _baseline(tmp_path)
    who = {"before": base_pp, "after": ""}
    modes = ("untraced", "request_only", "burst", "drain", "stages", "enable", "enable_imported")
    res = {(w, m): [] for w in who for m in modes}
    for r in range(rounds):
        for m in modes:
            for w, pp in who.items():
                if m == "untraced" and w == "before":
                    continue  # no tracekit code runs
                res[(w, m)].append(_run(m, n if m != "stages" else min(n, 1000), tmp_path / f"{w}{r}", pp))
    med = lambda w, m, k: statistics.median(x[k] for x in res[(w, m)])
    untraced = med("after", "untraced", "wall_s")
    print(f"\n[delivery] 6-span intent program, DummyLM, redact + sample(1.0) + cost + buffer, {rounds} rounds")
    print(f"untraced burst of {n}: {untraced:.2f} s")
    print(f"{'':28}{'before':>12}{'after':>12}{'after/before':>14}")
    for label, m, k in (("burst wall s (until stored)", "burst", "wall_s"), ("worker drain s", "drain", "drain_s"),
                        ("worker traces/s", "drain", "traces_per_s"), ("first enable() s", "enable", "enable_s"),
                        ("  then 1st trace stored s", "enable", "first_trace_stored_s"),
                        ("enable() s, dspy+mlflow in", "enable_imported", "enable_s"),
                        ("  then 1st trace stored s", "enable_imported", "first_trace_stored_s")):
        b, a = med("before", m, k), med("after", m, k)
        print(f"{label:28}{b:>12.2f}{a:>12.2f}{a / b:>14.2f}")
    print(f"{'total cost vs untraced':28}{med('before', 'burst', 'wall_s') / untraced:>12.2f}"
          f"{med('after', 'burst', 'wall_s') / untraced:>12.2f}")
    cpu_untraced = med("after", "untraced", "cpu_s")
    print(f"{'burst CPU s (process)':28}{med('before', 'burst', 'cpu_s'):>12.2f}{med('after', 'burst', 'cpu_s'):>12.2f}"
          f"{med('after', 'burst', 'cpu_s') / med('before', 'burst', 'cpu_s'):>14.2f}")
    print(f"{'CPU vs untraced CPU':28}{med('before', 'burst', 'cpu_s') / cpu_untraced:>12.2f}"
          f"{med('after', 'burst', 'cpu_s') / cpu_untraced:>12.2f}   (untraced CPU {cpu_untraced:.2f} s)")
    print(f"{'request path alone vs untraced':28}{med('before', 'request_only', 'wall_s') / untraced:>12.2f}"
          f"{med('after', 'request_only', 'wall_s') / untraced:>12.2f}   (the floor: traces taken, then dropped)")
    n_req = n / 1000  # seconds per burst → ms per request
    gc_of = lambda x, who_: sum(x["gc"].get(who_, {}).get("cpu_s", [0.0])) if "gc" in x else float("nan")
    full_of = lambda x: sum(v["collections"][2] for v in x["gc"].values()) if "gc" in x else float("nan")
    print(f"where the burst's time goes, ms per request (medians; untraced {untraced / n_req:.3f} wall, "
          f"{cpu_untraced / n_req:.3f} CPU, of which GC {statistics.median(gc_of(x, 'program') for x in res[('after', 'untraced')]) / n_req:.3f})")
    rows = (("program thread CPU (requests + tracing)", lambda x: x["program_cpu_s"]),
            ("  of which cyclic GC", lambda x: gc_of(x, "program")),
            ("program thread waiting (GIL)", lambda x: x["program_gil_wait_s"]),
            ("worker CPU (delivery)", lambda x: x["worker_cpu_s"]),
            ("  of which cyclic GC", lambda x: gc_of(x, "worker")),
            ("  worker CPU while the requests ran", lambda x: x["worker_cpu_during_program_s"]),
            ("request path alone (request_only wall - untraced)", None))
    for label, fn in rows:
        if fn is None:
            b = (med("before", "request_only", "wall_s") - untraced) / n_req
            a = (med("after", "request_only", "wall_s") - untraced) / n_req
        else:
            b = statistics.median(fn(x) for x in res[("before", "burst")]) / n_req
            a = statistics.median(fn(x) for x in res[("after", "burst")]) / n_req
        print(f"{label:52}{b:>10.3f}{a:>10.3f}")
    print(f"{'full (gen-2) collections per burst':52}{statistics.median(full_of(x) for x in res[('before', 'burst')]):>10.0f}"
          f"{statistics.median(full_of(x) for x in res[('after', 'burst')]):>10.0f}")
    stored = [x["stored"] for w in who for x in res[(w, "burst")]]
    print(f"stored per burst: {stored}")
    print(f"{'stage (µs per trace / span)':28}{'before':>18}{'after':>18}")
    for stage in ("keep", "materialize", "redact", "translate", "write"):
        b = statistics.median(x["stage_us_per_trace"][stage] for x in res[("before", "stages")])
        a = statistics.median(x["stage_us_per_trace"][stage] for x in res[("after", "stages")])
        bs = statistics.median(x["stage_us_per_span"][stage] for x in res[("before", "stages")])
        as_ = statistics.median(x["stage_us_per_span"][stage] for x in res[("after", "stages")])
        print(f"{stage:28}{b:>10.1f} /{bs:>6.1f}{a:>10.1f} /{as_:>6.1f}")
    tb = statistics.median(x["total_us_per_trace"] for x in res[("before", "stages")])
    ta = statistics.median(x["total_us_per_trace"] for x in res[("after", "stages")])
    print(f"{'total':28}{tb:>18.1f}{ta:>18.1f}")
    assert all(s == n for s in stored)
