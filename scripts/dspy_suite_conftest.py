"""Root conftest for running DSPy's own test suite with dspy-tracekit on or off (scripts/dspy-suite).

Copied next to DSPy's ``tests/`` folder. ``TK_DSPY_SUITE=on`` enables tracing with the four
standard plugins (redact, sample, cost, buffer) into a SQLite store in a temporary directory before
the first test, and flushes and disables it after the last; ``off`` leaves tracing off. Nothing else
differs between the two runs.
"""

import json
import os
import tempfile

_STATE: dict = {}


def pytest_configure(config):
    if os.environ.get("TK_DSPY_SUITE", "off") != "on":
        return
    import dspy_tracekit as tk

    tmp = tempfile.mkdtemp(prefix="tk-dspy-suite-")
    _STATE["tmp"] = tmp
    enabled = tk.enable(plugins=["redact", "sample", "cost", "buffer"],
                        tracking_uri=f"sqlite:///{tmp}/mlflow.db", experiment="dspy-suite",
                        config={"buffer": {"spool_dir": os.path.join(tmp, "spool"),
                                           "dead_letter_path": os.path.join(tmp, "dead-letter.jsonl")}})
    if not enabled:
        raise RuntimeError("dspy_tracekit.enable() returned False: the suite would run untraced")


def pytest_unconfigure(config):
    if "tmp" not in _STATE:
        return
    import dspy_tracekit as tk

    flushed = tk.flush(timeout=60.0)
    counters = tk.counters() if hasattr(tk, "counters") else {}
    tk.disable()
    out = os.environ.get("TK_DSPY_SUITE_COUNTERS")
    if out:
        with open(out, "w") as fh:
            json.dump({"flushed": flushed, "store": _STATE["tmp"], "counters": counters}, fh, indent=1,
                      sort_keys=True, default=str)
