"""``dspy-tracekit ui``: run ``mlflow ui`` on the store and point at the experiment's traces."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable

from dspy_tracekit.analytics import AnalyticsError, Store

__all__ = ["free_port", "run_ui", "traces_url"]


def traces_url(base: str, experiment_id: str) -> str:
    """The MLflow UI page listing an experiment's traces."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/traces"


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now (another process may still take it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _wait_until_up(proc: subprocess.Popen, base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AnalyticsError(f"mlflow ui exited with code {proc.returncode} before serving {base}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise AnalyticsError(f"mlflow ui did not answer on {base} within {timeout:.0f}s")


def run_ui(
    store: Store,
    host: str = "127.0.0.1",
    port: int = 5000,
    startup_timeout: float = 90.0,
    workers: int = 1,
    announce: Callable[[str], object] = print,
) -> int:
    """Start ``mlflow ui`` on the store, announce the traces URL once it answers, wait until stopped.

    Ctrl-C or SIGTERM stops the server too; returns the server's exit code (0 when we stopped it).
    """
    port = port or free_port(host)
    base = f"http://{host}:{port}"
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        store.tracking_uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    # the server's chatter goes to stderr: stdout carries only the URL, so scripts can read it
    try:
        chatter = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        chatter = subprocess.DEVNULL
    # A trace viewer needs none of MLflow's background job runner (one less process to start and to stop).
    env = {**os.environ}
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # Its own process group, so stopping it stops every process mlflow ui spawned (uvicorn, job runner).
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=chatter, env=env, start_new_session=True)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        _wait_until_up(proc, base, startup_timeout)
        announce(traces_url(base, store.experiment_id))
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the server's process group (graceful), SIGKILL whatever is left after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)  # anyone left in the group?
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
