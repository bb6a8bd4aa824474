"""Tracing never breaks the program it watches: threads, fork, unreachable stores (issue #11 §5, §5b)."""

from __future__ import annotations

import ast
import gc
import sys
import threading

import dspy
import pytest

import dspy_tracekit as tk
from tk_testing import TraceReader


class Failing(dspy.Module):
    """A module whose call fails some frames down: each failed span's traceback is formatted on delivery."""

    def forward(self, depth: int):
        return self.down(depth)

    def down(self, depth: int):
        if depth == 0:
            return {}["missing"] + (1).bit_length()
        return self.down(depth - 1)


class _Finalized:
    """Cyclic garbage with a finalizer: collecting it runs Python code inside C loops such as
    ast.parse's object conversion, where CPython then switches threads (what pytest's heap does)."""

    def __del__(self):
        sum(range(20))


def _garbage():
    for _ in range(20):
        one = _Finalized()
        one.me = one


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="python/cpython#106905 is a 3.11 race")
def test_delivery_thread_tracebacks_do_not_break_ast_parse_on_other_threads(store_uri, experiment_name, tmp_path):
    tk.enable(plugins=["buffer"], tracking_uri=store_uri, experiment=experiment_name,
              config={"buffer": {"spool_dir": str(tmp_path / "spool"), "batch_size": 50}})
    program = Failing()
    n = 300
    for _ in range(n):
        with pytest.raises(KeyError):
            program(depth=20)
    source = "\n".join(f"def f{i}(a, b):\n    return [x * (a + b) for x in range(a) if x % 3 == {i % 3}]\n"
                       for i in range(100))
    flushed: list[bool] = []
    flusher = threading.Thread(target=lambda: flushed.append(tk.flush(120)))
    errors: list[str] = []
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        flusher.start()
        while flusher.is_alive():  # the user's own ast.parse while the worker formats 300 tracebacks
            _garbage()
            try:
                ast.parse(source)
            except SystemError as exc:
                errors.append(str(exc))
        flusher.join()
    finally:
        sys.setswitchinterval(old_interval)
        gc.collect()
    counters = tk.counters()
    assert errors == [], f"{len(errors)} ast.parse calls failed: {errors[:3]}"
    assert flushed == [True]
    assert counters.get("core.traces_dropped.materialize_error", 0) == 0
    stored = TraceReader(store_uri, experiment_name).traces()
    assert len(stored) == n
    assert "KeyError" in stored[0].data.spans[0].events[0].attributes["exception.stacktrace"]
