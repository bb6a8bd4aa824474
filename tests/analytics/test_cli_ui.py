"""``dspy-tracekit ui`` starts a real ``mlflow ui`` on the store and prints the traces URL."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request

from click.testing import CliRunner

from dspy_tracekit.cli import main
from dspy_tracekit.cli.ui import free_port


def test_ui_serves_the_store_and_prints_the_experiment_traces_url(synthetic_store):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dspy_tracekit.cli", "ui", "--port", str(port), "--startup-timeout", "150",
         "--tracking-uri", synthetic_store.uri, "--experiment", synthetic_store.experiment],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        url = lines.get(timeout=180).strip()
        assert url == f"http://127.0.0.1:{port}/#/experiments/{synthetic_store.experiment_id}/traces"
        query = urllib.parse.urlencode({"experiment_name": synthetic_store.experiment})
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?{query}"
        with urllib.request.urlopen(api, timeout=30) as resp:
            experiment = json.load(resp)["experiment"]
        assert experiment["experiment_id"] == synthetic_store.experiment_id
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as resp:
            assert resp.status == 200 and b"<html" in resp.read().lower()
        ps = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True,
                            check=False)
        server_groups = [int(pid) for pid in ps.stdout.split()]  # mlflow ui runs in its own process group
        assert server_groups
        proc.send_signal(signal.SIGTERM)  # the command stops its mlflow server and exits cleanly
        assert proc.wait(timeout=60) == 0
        assert [g for g in server_groups if group_alive(g)] == []  # nothing left behind: uvicorn, job runner
    finally:
        for group in [proc.pid, *locals().get("server_groups", [])]:
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if proc.poll() is None:
            proc.wait(timeout=30)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_traces_url_points_at_the_experiment_traces_page():
    from dspy_tracekit.cli.ui import traces_url

    assert traces_url("http://mlflow.internal:5000/", "7") == "http://mlflow.internal:5000/#/experiments/7/traces"


def test_ui_with_an_unknown_experiment_fails_before_starting_anything(synthetic_store):
    result = CliRunner().invoke(main, ["ui", "--tracking-uri", synthetic_store.uri, "--experiment", "nope"])
    assert result.exit_code == 1 and result.stderr.startswith("error: experiment 'nope' not found")
