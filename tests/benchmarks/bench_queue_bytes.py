"""What queued traces really hold vs what the buffer charges them against max_bytes (issue #12).

    uv run python tests/benchmarks/bench_queue_bytes.py [N]

N requests of the 6-span intent program with ~100 KB messages are kept as the buffer's queue keeps
them (finished, not yet prepared); tracemalloc measures what they hold. Printed side by side: that,
the old charge (spans × 2 KiB), the JSON size of the prepared trace, and the buffer's learned charge
(dspy_tracekit_buffer._sizing.trace_bytes of a prepared trace).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import tracemalloc

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, os.path.dirname(__file__))


def main(n: int) -> None:
    import bench_delivery
    import dspy
    from dspy_tracekit_buffer._sizing import trace_bytes

    import dspy_tracekit as tk

    kept = []

    class Keep:
        @tk.hookimpl
        def tracekit_take_trace(self, trace):
            kept.append(trace)
            return True

    tmp = tempfile.mkdtemp()
    tk.enable(plugins=["redact", "sample", "cost", Keep()], tracking_uri=f"sqlite:///{tmp}/m.db", experiment="m")
    dspy.configure(lm=dspy.utils.DummyLM([{"reasoning": "r" * 2000, "intent": "i"}] * (n + 10)))
    program = bench_delivery._program()
    program(message="warm")
    kept.clear()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        program(message=f"{i} " + "lorem ipsum dolor sit amet " * 3800)
    gc.collect()
    held = (tracemalloc.get_traced_memory()[0] - base) / n
    tracemalloc.stop()
    sample = kept[:20]
    spans = len(sample[0].spans)
    for t in sample:
        t.materialize()
    as_json = sum(len(json.dumps(t.to_dict(), ensure_ascii=False, default=str)) for t in sample) / len(sample)
    learned = sum(trace_bytes(t) for t in sample) / len(sample)
    tk.disable()
    kib = 1024
    print(f"per queued trace ({spans} spans, ~100 KB message), {n} traces:")
    print(f"  held in memory (tracemalloc)        : {held / kib:8.1f} KiB")
    print(f"  old charge, spans x 2 KiB           : {spans * 2:8.1f} KiB")
    print(f"  JSON of the prepared trace          : {as_json / kib:8.1f} KiB")
    print(f"  new charge (learned, sampled sizing): {learned / kib:8.1f} KiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
