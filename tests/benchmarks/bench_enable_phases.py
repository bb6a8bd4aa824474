"""Where the first ``enable()`` on a new SQLite store spends its thread CPU, phase by phase (issue #12).

    python tests/benchmarks/bench_enable_phases.py [ROUNDS] [BASELINE_REF]

Runs fresh processes, baseline (``git archive BASELINE_REF``, default b727b37) and this checkout interleaved,
after ``import dspy`` and after ``import dspy, mlflow``; all four plugins. Each phase is timed by wrapping the
function that does it (the same names exist in both checkouts); ``gc`` is the cyclic collector's share of
``enable()``, whichever phase it landed in. Prints medians in ms. Not a test (no asserts): a profile.
"""

from __future__ import annotations

import functools
import gc
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PLUGINS = ("redact", "sample", "cost", "buffer")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _one(mode: str, store_dir: str) -> dict:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import dspy  # noqa: F401 - what a DSPy program has imported before enable()

    if mode == "both":
        import mlflow  # noqa: F401
    t: dict[str, float] = {}
    in_gc = [0.0, 0.0, False]

    def on_gc(phase, info):
        if in_gc[2]:
            if phase == "start":
                in_gc[1] = time.thread_time()
            else:
                in_gc[0] += time.thread_time() - in_gc[1]

    gc.callbacks.append(on_gc)

    def timed(owner, attr, label, static=False):
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            c = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                t[label] = t.get(label, 0.0) + time.thread_time() - c

        setattr(owner, attr, staticmethod(wrapper) if static else wrapper)

    in_gc[2] = True
    c0, w0 = time.thread_time(), time.perf_counter()
    import dspy_tracekit as tk

    t["import dspy_tracekit"] = time.thread_time() - c0
    manager = importlib.import_module("dspy_tracekit.manager")
    interop = importlib.import_module("dspy_tracekit.mlflow.interop")
    instrument = importlib.import_module("dspy_tracekit._request.instrument")
    timed(manager.TracekitManager, "installed_plugins", "entry points", static=True)
    timed(manager.TracekitManager, "load", "manager.load (plugin imports)")
    timed(interop, "_import_bridge_modules", "bridge: import MLflow (+ its processor)")
    timed(interop, "_install", "bridge: install")
    timed(instrument, "instrument", "instrument DSPy")
    call_impl = manager.call_impl

    def configure(impl, kwargs):
        c = time.thread_time()
        try:
            return call_impl(impl, kwargs)
        finally:
            label = f"configure {impl.plugin_name}"
            t[label] = t.get(label, 0.0) + time.thread_time() - c

    manager.call_impl = configure
    c1 = time.thread_time()
    tk.enable(plugins=list(PLUGINS), tracking_uri=f"sqlite:///{store_dir}/s-{os.getpid()}.db", experiment="bench",
              config={"buffer": {"spool_dir": f"{store_dir}/spool-{os.getpid()}"}, "sample": {"ratio": 1.0}})
    t["enable() total"] = time.thread_time() - c1
    t["import + enable() total"] = time.thread_time() - c0
    t["wall"] = time.perf_counter() - w0
    in_gc[2] = False
    t["gc (inside the phases above)"] = in_gc[0]
    manager.call_impl = call_impl
    tk.disable()
    return {k: v * 1000 for k, v in t.items()}


def main(rounds: int, ref: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", ROOT, "archive", ref, "src", "plugins"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        base = os.pathsep.join([f"{tmp}/src"] + [f"{tmp}/plugins/{p}/src" for p in PLUGINS])
        res: dict[tuple[str, str, str], list[float]] = {}
        for r in range(rounds + 1):  # round 0: warm-up (.pyc, the prefilter's database cache)
            for mode in ("dspy", "both"):
                order = [("before", base), ("after", "")]
                for who, pythonpath in (order if r % 2 else order[::-1]):
                    env = {**os.environ, "XDG_CACHE_HOME": f"{tmp}/cache",
                           **({"PYTHONPATH": pythonpath} if pythonpath else {})}
                    out = subprocess.run([sys.executable, __file__, "--one", mode, tmp], capture_output=True,
                                         text=True, env=env, check=False)
                    lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
                    assert lines, out.stderr[-3000:]
                    if r:
                        for k, v in json.loads(lines[-1]).items():
                            res.setdefault((mode, k, who), []).append(v)
        for mode, title in (("dspy", "after import dspy"), ("both", "after import dspy, mlflow")):
            print(f"\n{title}: thread CPU ms, median of {rounds} ({ref} / this checkout)")
            for m, k, w in res:
                if m == mode and w == "after":
                    b, a = res.get((m, k, "before"), [float("nan")]), res[(m, k, w)]
                    print(f"  {k:42}{statistics.median(b):>9.1f}{statistics.median(a):>9.1f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(_one(sys.argv[2], sys.argv[3])))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 3, sys.argv[2] if len(sys.argv) > 2 else "b727b37")
