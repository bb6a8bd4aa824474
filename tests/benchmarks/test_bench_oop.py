"""Delivery in a second process beside the in-process design, in one run (issue #12, a measurement).

    BENCH_ROUNDS=3 uv run pytest -m benchmark tests/benchmarks/test_bench_oop.py -s

Each round runs, each in its own process and interleaved: ``bench_delivery.py untraced``, ``request_only``
(traces taken then dropped: the request path alone), ``burst`` (today's design: the buffer's worker thread
in the program's process), ``bench_oop.py oop`` (keep + materialize + pickle on a parent thread, redact +
store in a spawned child), ``bench_oop.py parent_only`` (the parent's side alone, no child), then ``burst``
and ``oop`` again with ``gc.freeze()`` after start-up. Once per run: ``oop_raw`` (do the records pickle
before materialize?) and ``serial`` (pickle vs marshal/orjson of ``to_dict``). Medians are reported, as
ratios to the untraced burst of the same run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
DELIVERY, OOP = HERE / "bench_delivery.py", HERE / "bench_oop.py"


def _run(script: Path, mode: str, n: int, store: Path, **extra: str) -> dict:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **extra}
    out = subprocess.run([sys.executable, str(script), mode, str(n), str(store)], capture_output=True, text=True,
                         check=False, env=env, timeout=1800)
    lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
    assert lines, f"{mode} failed:\n{out.stderr[-3000:]}"
    return json.loads(lines[-1])


@pytest.mark.benchmark
@pytest.mark.timeout(5400)
def test_delivery_in_a_second_process(tmp_path):
    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))
    n = int(os.environ.get("BENCH_N", "3000"))
    # (label, script, mode, env): the *_freeze runs call gc.freeze() after start-up (both processes for oop)
    modes = (("untraced", DELIVERY, "untraced", {}), ("request_only", DELIVERY, "request_only", {}),
             ("burst", DELIVERY, "burst", {}), ("oop", OOP, "oop", {}), ("parent_only", OOP, "parent_only", {}),
             ("burst_freeze", DELIVERY, "burst", {"TK_BENCH_GC_FREEZE": "1"}),
             ("oop_freeze", OOP, "oop", {"TK_OOP_GC_FREEZE": "1"}))
    res: dict[str, list[dict]] = {label: [] for label, *_ in modes}
    raw = _run(OOP, "oop_raw", n, tmp_path / "raw")
    serial = _run(OOP, "serial", min(n, 1000), tmp_path / "serial")["serial"]
    for r in range(rounds):
        for label, script, m, env in modes:
            res[label].append(_run(script, m, n, tmp_path / f"r{r}", **env))

    def med(m, k):
        return statistics.median(x[k] for x in res[m])

    def med_sub(m, d, k):
        return statistics.median(x[d][k] for x in res[m])

    uw, uc = med("untraced", "wall_s"), med("untraced", "cpu_s")
    print(f"\n[oop] 6-span intent program, DummyLM, redact + sample(1.0) + cost, burst of {n}, {rounds} rounds, "
          f"medians; ratios to the untraced burst of this run (wall {uw:.2f} s, CPU {uc:.2f} s)")
    print(f"{'mode':52}{'wall s':>9}{'x wall':>8}{'CPU s':>9}{'x CPU':>8}")
    rows = (("untraced", "untraced", "wall_s", "cpu_s"),
            ("request path alone (taken, dropped)", "request_only", "wall_s", "cpu_s"),
            ("in-process: buffer worker thread", "burst", "wall_s", "cpu_s"),
            ("second process (wall: child stored all; parent CPU)", "oop", "wall_s", "parent_cpu_s"),
            ("parent side alone (no child, bytes dropped)", "parent_only", "wall_s", "parent_cpu_s"),
            ("in-process, gc.freeze()", "burst_freeze", "wall_s", "cpu_s"),
            ("second process, gc.freeze() (same)", "oop_freeze", "wall_s", "parent_cpu_s"))
    for label, m, kw, kc in rows:
        w, c = med(m, kw), med(m, kc)
        print(f"{label:52}{w:>9.2f}{w / uw:>8.2f}{c:>9.2f}{c / uc:>8.2f}")
    for m, tag in (("oop", ""), ("oop_freeze", ", gc.freeze()")):
        cc = med(m, "child_cpu_s")
        tot = statistics.median(x["parent_cpu_s"] + x["child_cpu_s"] for x in res[m])
        print(f"{'second process' + tag + ': child CPU':52}{'':>17}{cc:>9.2f}{cc / uc:>8.2f}")
        print(f"{'second process' + tag + ': parent + child CPU':52}{'':>17}{tot:>9.2f}{tot / uc:>8.2f}")
    th = {k: statistics.median(x["parent_thread_cpu_s"][k] for x in res["oop"]) for k in ("sender", "acks")}
    main_cpu = statistics.median(x["parent_cpu_s"] - sum(x["parent_thread_cpu_s"].values()) for x in res["oop"])
    print(f"second process, parent CPU by thread: program {main_cpu:.2f} s ({main_cpu / uc:.2f} x untraced CPU), "
          f"sender {th['sender']:.2f} s, ack reader {th['acks']:.2f} s; cyclic GC CPU {med('oop', 'parent_gc_cpu_s'):.2f} s "
          f"in {med('oop', 'parent_gc_collections'):.0f} collections")
    for m in ("oop", "parent_only"):
        sched = {k: statistics.median(x["main_thread_requests"][k] for x in res[m])
                 for k in ("wall_s", "on_cpu_s", "runnable_waiting_s", "blocked_s")}
        print(f"{m}: program thread during the requests: wall {sched['wall_s']:.2f} s = on a CPU "
              f"{sched['on_cpu_s']:.2f} + runnable, waiting for a CPU {sched['runnable_waiting_s']:.2f} + blocked "
              f"(GIL, locks) {sched['blocked_s']:.2f}")
    cs = {k: statistics.median(x["child_sched"][k] for x in res["oop"]) for k in ("wall_s", "on_cpu_s",
                                                                               "runnable_waiting_s")}
    proj = statistics.median(max(x["main_thread_requests"]["on_cpu_s"] + x["main_thread_requests"]["blocked_s"],
                                 x["child_sched"]["on_cpu_s"]) for x in res["oop"])
    print(f"oop, idle-machine projection (NOT measured: no waiting for a CPU, the child alone on the second core): "
          f"wall >= max(program thread on a CPU + blocked, child on a CPU) = {proj:.2f} s = {proj / uc:.2f} x the "
          f"untraced burst's CPU")
    print(f"oop: child during the burst: wall {cs['wall_s']:.2f} s, on a CPU {cs['on_cpu_s']:.2f}, runnable waiting "
          f"{cs['runnable_waiting_s']:.2f}")
    print(f"second process, requests alone (until the last request returned): {med('oop', 'requests_wall_s'):.2f} s"
          f" = {med('oop', 'requests_wall_s') / uw:.2f} x untraced")
    for m in ("oop", "oop_freeze"):
        print(f"{m}, µs per trace (thread CPU): parent "
              + ", ".join(f"{k} {med_sub(m, 'parent_us_per_trace', k):.1f}"
                          for k in ("keep", "materialize", "pickle", "send"))
              + "; child " + ", ".join(f"{k} {med_sub(m, 'child_us_per_trace', k):.1f}"
                                       for k in ("unpickle", "redact", "export"))
              + f"; child GC CPU {med(m, 'child_gc_cpu_s'):.2f} s, parent GC CPU {med(m, 'parent_gc_cpu_s'):.2f} s")
    print(f"serialisation: {med('oop', 'bytes_per_trace'):.0f} bytes per trace (pickle protocol 5), "
          f"batches per burst {[x['batches'] for x in res['oop']]}")
    print(f"child start-up (spawn -> imports -> enable() -> ready, not in the burst): wall "
          f"{med('oop', 'child_startup_wall_s'):.2f} s, child CPU {med('oop', 'child_startup_cpu_s'):.2f} s")
    print("serialisations of the same materialized traces, batches of 200, µs per trace (thread CPU, best of 5):")
    for name, v in serial.items():
        if "fails" in v:
            print(f"  {name}: fails ({v['fails']})")
        else:
            print(f"  {name}: dump {v['dump_us']:.1f} + load {v['load_us']:.1f} = {v['dump_us'] + v['load_us']:.1f}, "
                  f"{v['bytes']:.0f} bytes, round trip equal (to_dict): {v['round_trip_equal']}")
    if raw.get("raw_pickles"):
        print(f"send before materialize: wall {raw['wall_s']:.2f} s, parent CPU {raw['parent_cpu_s']:.2f} s, "
              f"child CPU {raw['child_cpu_s']:.2f} s (one run)")
    else:
        print(f"send before materialize: the raw records do not pickle ({raw['error']}); failing fields:")
        for field, why in raw["failing_fields"].items():
            print(f"  {field}: {why.splitlines()[0]}")
    stored = {m: [x["stored"] for x in res[m]] for m in ("burst", "oop", "burst_freeze", "oop_freeze")}
    print(f"stored per burst: {stored}")
    assert all(s == n for v in stored.values() for s in v)
