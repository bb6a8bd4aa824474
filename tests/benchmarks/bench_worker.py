"""One benchmark process: run the 6-span intent program N times in one mode, print per-request timings.

Modes: untraced, autolog (mlflow.dspy.autolog, async export), autolog_sync (async export off),
tracekit (core only, inline delivery), capture (tracekit's request path; a plugin takes and discards
each finished trace), plugins (redact, sample, cost, buffer all on).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def main(mode: str, n: int, warmup: int, store_dir: str) -> None:
    if mode == "autolog_sync":
        os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    import dspy
    import mlflow

    uri = f"sqlite:///{store_dir}/{mode}.db"

    class Sig(dspy.Signature):
        """Classify an admin-console message."""

        message: str = dspy.InputField()
        intent: str = dspy.OutputField()

    class IntentProgram(dspy.Module):
        def __init__(self):
            super().__init__()
            self.classify = dspy.ChainOfThought(Sig)

        def forward(self, message):
            return self.classify(message=message)

    answers = [{"reasoning": "The user asks to build a workflow.", "intent": "create_workflow"}] * (n + warmup + 5)
    dspy.configure(lm=dspy.utils.DummyLM(answers))
    program = IntentProgram()
    flush = lambda: None  # noqa: E731

    if mode in ("autolog", "autolog_sync"):
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("bench")
        mlflow.dspy.autolog()
        flush = mlflow.flush_trace_async_logging
    elif mode in ("tracekit", "capture", "plugins"):
        import dspy_tracekit as tk

        if mode == "capture":
            class Discard:
                @tk.hookimpl
                def tracekit_take_trace(self, trace):
                    return True

            tk.enable(plugins=[Discard()], tracking_uri=uri, experiment="bench")
        elif mode == "plugins":
            tk.enable(plugins=["redact", "sample", "cost", "buffer"], tracking_uri=uri, experiment="bench",
                      config={"buffer": {"spool_dir": f"{store_dir}/spool-{os.getpid()}"}})
        else:
            tk.enable(plugins=[], tracking_uri=uri, experiment="bench")
        flush = lambda: tk.flush(120)  # noqa: E731
    elif mode != "untraced":
        raise SystemExit(f"unknown mode {mode}")

    for i in range(warmup):
        program(message=f"warm up {i}")
    flush()
    times = []
    cpu = []
    for i in range(n):
        t0 = time.perf_counter()
        c0 = time.thread_time()
        program(message=f"Help me create a workflow number {i}")
        cpu.append(time.thread_time() - c0)
        times.append(time.perf_counter() - t0)
    t_flush = time.perf_counter()
    flush()
    flush_s = time.perf_counter() - t_flush
    print(json.dumps({"mode": mode, "n": n, "median_ms": statistics.median(times) * 1000,
                      "mean_ms": statistics.fmean(times) * 1000, "cpu_median_ms": statistics.median(cpu) * 1000,
                      "flush_s": flush_s}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
