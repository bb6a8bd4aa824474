"""A traced process for the Prometheus tests: ``python monitor_worker.py '<json>'``.

Runs ``n`` requests of a real DSPy program (``errors`` of them failing) with the monitor plugin,
writes ``{"url": ..., "pid": ...}`` to ``ready``; with ``then`` = {"n", "errors"}, waits for the file
``<ready>.go``, runs those requests and writes ``<ready>.done``; keeps serving /metrics until stdin closes.
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def report(path: str, url) -> None:
    import dspy_tracekit as tk

    with open(path + ".tmp", "w") as fh:
        json.dump({"url": url, "pid": os.getpid(), "counters": tk.counters()}, fh)
    os.replace(path + ".tmp", path)


def main() -> None:
    args = json.loads(sys.argv[1])
    import dspy
    import dspy_tracekit_monitor as monitor
    from monitor_testkit import Intent, dummy_lm, run

    import dspy_tracekit as tk

    tk.enable(plugins=["monitor"], tracking_uri=args["store"], experiment=args["experiment"],
              config={"monitor": args.get("monitor", {})})
    with dspy.context(lm=dummy_lm()):
        run(Intent(), args["n"], errors=args.get("errors", 0))
    tk.flush(30)
    monitor.current().tick()
    report(args["ready"], monitor.metrics_url())
    then = args.get("then")
    if then:
        while not os.path.exists(args["ready"] + ".go"):
            time.sleep(0.05)
        with dspy.context(lm=dummy_lm()):
            run(Intent(), then["n"], errors=then.get("errors", 0))
        tk.flush(30)
        report(args["ready"] + ".done", monitor.metrics_url())
    sys.stdin.read()  # until the test closes our stdin
    tk.disable()


if __name__ == "__main__":
    main()
