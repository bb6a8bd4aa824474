"""One benchmark process: the write-up-shaped program (the user's MLflow spans around and inside DSPy)
or the pure-DSPy program, N requests in one mode; prints per-request timings as one JSON line.

Modes:
  untraced       MLflow tracing disabled, no DSPy tracing (the program's own cost)
  baseline       only the user's MLflow spans, traced and exported by MLflow itself (async export)
  autolog        baseline + ``mlflow.dspy.autolog()``
  tracekit       ``tk.enable()`` with redact, sample (ratio 1), cost and buffer; the user's spans go
                 through tracekit's pipeline too
  pure_untraced  the 6-span DSPy program alone, untraced
  pure_tracekit  the same with tracekit and all four plugins (a trace that never touches MLflow's API)

Usage: python bench_interop_worker.py MODE N WARMUP STORE_DIR
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def main(mode: str, n: int, warmup: int, store_dir: str) -> None:
    import dspy
    import mlflow

    uri = f"sqlite:///{store_dir}/{mode}-{os.getpid()}.db"

    @mlflow.trace(name="get_workflow_templates", span_type="RETRIEVER")
    def get_workflow_templates(module):
        with mlflow.start_span("database_query", span_type="TOOL") as span:
            span.set_inputs({"module": module})
            span.set_outputs({"rows": 2})
        return ["create", "run"]

    class Sig(dspy.Signature):
        """Classify an admin-console message."""

        message: str = dspy.InputField()
        intent: str = dspy.OutputField()

    class IntentDetector(dspy.Module):
        def __init__(self, with_user_spans: bool):
            super().__init__()
            self.classify = dspy.ChainOfThought(Sig)
            self.with_user_spans = with_user_spans

        def forward(self, message):
            if self.with_user_spans:
                get_workflow_templates("workflows")
            return self.classify(message=message)

    pure = mode.startswith("pure_")
    detector = IntentDetector(with_user_spans=not pure)

    @mlflow.trace(name="dspy_intent_detection")
    def detect(message):
        return detector(message=message)

    call = detector if pure else detect
    answers = [{"reasoning": "The user asks to build a workflow.", "intent": "create_workflow"}] * (n + warmup + 5)
    dspy.configure(lm=dspy.utils.DummyLM(answers))
    flush = lambda: None  # noqa: E731

    if mode in ("untraced", "pure_untraced"):
        mlflow.tracing.disable()
    elif mode in ("baseline", "autolog"):
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("bench")
        if mode == "autolog":
            mlflow.dspy.autolog()
        flush = mlflow.flush_trace_async_logging
    elif mode in ("tracekit", "pure_tracekit"):
        import dspy_tracekit as tk

        tk.enable(plugins=["redact", "sample", "cost", "buffer"], tracking_uri=uri, experiment="bench",
                  config={"buffer": {"spool_dir": f"{store_dir}/spool-{os.getpid()}"}, "sample": {"ratio": 1.0}})
        flush = lambda: tk.flush(300)  # noqa: E731
    else:
        raise SystemExit(f"unknown mode {mode}")

    for i in range(warmup):
        call(message=f"warm up {i}")
    flush()
    times, cpu = [], []
    for i in range(n):
        t0 = time.perf_counter()
        c0 = time.thread_time()
        call(message=f"Help me create a workflow number {i}")
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
