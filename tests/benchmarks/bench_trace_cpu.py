"""The request path alone, in process: thread CPU per 6-span custom trace (tk.span), the trace taken and
discarded. ``python tests/benchmarks/bench_trace_cpu.py LABEL``; run it against two trees on PYTHONPATH,
alternating, to compare them (see test_bench_lifecycle.py for how the trees are made)."""

import os
import sys
import tempfile
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import dspy_tracekit as tk


class Discard:
    @tk.hookimpl
    def tracekit_take_trace(self, trace):
        return True


d = tempfile.mkdtemp()
tk.enable(plugins=[Discard()], tracking_uri=f"sqlite:///{d}/m.db", experiment="m")


def req():
    with tk.span("root"):
        for _ in range(5):
            with tk.span("child"):
                pass


best = []
for rep in range(7):
    t = time.thread_time()
    for _ in range(3000):
        req()
    best.append((time.thread_time() - t) / 3000 * 1e6)
print(f"{sys.argv[1]}: 6-span trace, min {min(best):.1f} us, median {sorted(best)[3]:.1f} us")
tk.disable()
