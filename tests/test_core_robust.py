"""Tracing never breaks the program it watches: threads, fork, unreachable stores (issue #11 §5, §5b)."""

from __future__ import annotations

import ast
import gc
import sys
import threading

import dspy
import pytest
from tk_testing import TraceReader

import dspy_tracekit as tk


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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_mlflow_server(db: str, port: int, log):
    import subprocess
    import time
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
        assert proc.poll() is None, "mlflow server exited"
    raise AssertionError("mlflow server did not start within 180 s")


def _stored(uri: str, experiment: str) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return 0 if exp is None else len(client.search_traces(locations=[exp.experiment_id], max_results=200,
                                                          include_spans=False))


def _call_in_thread(fn, limit: float = 60.0) -> None:
    """Run the user's call; fail if it is held anywhere near MLflow's minutes of HTTP retries."""
    caller = threading.Thread(target=fn, daemon=True)
    caller.start()
    caller.join(limit)
    assert not caller.is_alive(), f"the user's call was still held after {limit:.0f} s"


def test_unreachable_tracking_server_never_holds_the_call_and_is_used_once_it_answers(tmp_path):
    import os
    import signal
    import time

    from tk_testing import Pipeline, dummy_lm

    port = _free_port()  # closed: nothing listens until the server starts below
    uri = f"http://127.0.0.1:{port}"
    tk.enable(plugins=[], tracking_uri=uri, experiment="late-server")
    program = Pipeline()
    dspy.configure(lm=dummy_lm(10_000))
    for i in range(3):
        _call_in_thread(lambda i=i: program(message=f"down {i}"))
    counters = tk.counters()
    assert counters["core.traces_dropped.store_unavailable"] == 3  # skipped and counted, not lost silently
    assert counters.get("core.inline_over_budget", 0) == 0

    with open(tmp_path / "server.log", "ab") as log:
        server = _start_mlflow_server(str(tmp_path / "server.db"), port, log)
        try:
            deadline = time.monotonic() + 120
            while not _stored(uri, "late-server"):  # a probe after the back-off finds the server
                assert time.monotonic() < deadline, "no trace stored 120 s after the server answered"
                _call_in_thread(lambda: program(message="up?"))
                time.sleep(0.2)
            before = _stored(uri, "late-server")
            for i in range(5):
                _call_in_thread(lambda i=i: program(message=f"up {i}"))
            assert tk.flush(30)
            assert _stored(uri, "late-server") == before + 5
            assert tk.counters().get("core.traces_dropped.export_error", 0) == 0
        finally:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(30)


def test_sixteen_threads_inline_on_sqlite_lose_nothing(fresh_store_uri):
    from tk_testing import Pipeline, dummy_lm

    tk.enable(plugins=[], tracking_uri=fresh_store_uri, experiment="threads")
    program = Pipeline()
    lm = dummy_lm(100_000)
    per_thread = 40

    def user(k: int) -> None:
        with dspy.context(lm=lm):
            for i in range(per_thread):
                program(message=f"t{k}-{i}")

    threads = [threading.Thread(target=user, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counters = tk.counters()
    assert counters.get("core.traces_dropped.export_error", 0) == 0
    assert counters["core.traces_exported"] == 16 * per_thread
    assert len(TraceReader(fresh_store_uri, "threads").traces()) == 16 * per_thread


def _child_requests(n: int, out) -> None:
    from tk_testing import Pipeline, dummy_lm

    out.put(tk.counters().get("core.traces_finished", 0))  # the child's own counters start at zero
    program = Pipeline()
    with dspy.context(lm=dummy_lm(n)):
        for i in range(n):
            program(message=f"child {i}")
    # no tk.flush(): a multiprocessing child ends with os._exit, so atexit handlers never run


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="fork start method")
@pytest.mark.parametrize("plugins", [["buffer"], []], ids=["buffer", "inline"])
def test_forked_multiprocessing_children_store_their_traces_without_flush(fresh_store_uri, tmp_path, plugins):
    import multiprocessing

    from tk_testing import Pipeline, dummy_lm

    tk.enable(plugins=plugins, tracking_uri=fresh_store_uri, experiment="fork",
              config={"buffer": {"spool_dir": str(tmp_path / "spool")}} if plugins else None)
    program = Pipeline()
    with dspy.context(lm=dummy_lm(5)):
        for i in range(5):
            program(message=f"parent {i}")
    assert tk.flush(30)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    children = [ctx.Process(target=_child_requests, args=(100, out)) for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    assert [child.exitcode for child in children] == [0, 0, 0]
    inherited = [out.get(timeout=10) for _ in children]
    assert len(TraceReader(fresh_store_uri, "fork").traces()) == 5 + 300
    assert inherited == [0, 0, 0]


def test_a_fork_while_tracing_finds_every_module_the_delivery_path_needs_imported(tmp_path):
    """enable() imports tracekit's delivery modules and MLflow's package, not all of MLflow's delivery modules
    (issue #12); the first fork() while tracing is on imports those in the parent, so that the child never
    imports them."""
    import subprocess

    script = (
        "import os, sys, dspy_tracekit as tk\n"
        f"tk.enable(plugins=['buffer'], tracking_uri='sqlite:///{tmp_path}/own.db',"
        f" config={{'buffer': {{'spool_dir': '{tmp_path}/spool'}}}})\n"
        "from dspy_tracekit._delivery.fork import DELIVERY_MODULES\n"
        "print('at enable', [m for m in DELIVERY_MODULES if m not in sys.modules])\n"
        "sys.stdout.flush()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    print('in the child', [m for m in ('dspy_tracekit._delivery.secrets', 'dspy_tracekit.mlflow.rows',"
        " *DELIVERY_MODULES) if m not in sys.modules])\n"
        "    sys.stdout.flush()\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "in the child []", out.stderr[-2000:]
    assert lines[0].startswith("at enable ['mlflow."), lines  # some were left to the fork (or the first export)


def test_mlflow_logging_an_exception_on_the_worker_formats_it_without_ast(tmp_path):
    """MLflow logs a failed write with ``logger.exception`` on the thread that writes (the buffer's worker):
    that traceback's text must not come from ``traceback``'s caret code, which calls ast.parse."""
    import subprocess

    from mlflow.tracking import MlflowClient

    db = tmp_path / "ro.db"
    MlflowClient(f"sqlite:///{db}").create_experiment("ro")
    script = (
        "import dspy_tracekit as tk\n"
        f"tk.enable(plugins=['buffer'], tracking_uri='sqlite:///file:{db}?mode=ro&uri=true', experiment='ro',"
        f" config={{'buffer': {{'spool_dir': '{tmp_path}/spool', 'retry_attempts': 1}}}})\n"
        "@tk.trace(name='f')\n"
        "def f(x):\n"
        "    return x\n"
        "f(1)\n"
        "assert tk.flush(60)\n"
        "print(tk.counters()['buffer.dead_lettered'])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1:] == ["1"], out.stderr[-3000:]
    assert "attempt to write a readonly database" in out.stderr  # MLflow logged the exception ...
    carets = [line for line in out.stderr.splitlines() if line.strip() and set(line.strip()) <= set("^~")]
    assert carets == []  # ... and its text came without carets, so without ast


@pytest.mark.parametrize(("uri", "local"), [
    ("sqlite:///mlflow.db", True), ("sqlite:////abs/mlflow.db", True), ("file:///tmp/mlruns", True), ("mlruns", True),
    ("http://127.0.0.1:5000", False), ("https://mlflow.example.com", False), ("postgresql://u:p@db/mlflow", False),
    ("mysql+pymysql://db/mlflow", False), ("databricks", False), ("databricks-uc", False),
])
def test_inline_delivery_writes_only_sqlite_and_file_stores_on_the_calling_thread(uri, local):
    from dspy_tracekit._delivery.inline import is_local

    assert is_local(uri) is local
