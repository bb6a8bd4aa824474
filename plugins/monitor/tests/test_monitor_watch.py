"""``dspy-tracekit watch``: live numbers from a running process's /metrics (under tmux), or the store."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from monitor_testkit import run, stored
from test_monitor_prometheus import start_worker, stop, wait_ready

import dspy_tracekit as tk
from dspy_tracekit.cli import main as cli

TMUX = shutil.which("tmux")
SLO = {"name": "intent", "span": "Intent.forward", "p95_ms": 800, "error_rate": 0.02, "window": "5m"}
TOML = ('[[tool.dspy-tracekit.monitor.slo]]\nname = "intent"\nspan = "Intent.forward"\np95_ms = 800\n'
        'error_rate = 0.02\nwindow = "5m"\n')


def test_watch_under_tmux_shows_live_numbers_and_exits_on_ctrl_c(tmp_path):
    if TMUX is None:
        pytest.skip("tmux not installed (apt-get install tmux)")
    proc, ready, _ = start_worker(tmp_path, "w", 12, 3, {"port": 0, "slo": [SLO]})
    sock = f"tk-watch-{uuid.uuid4().hex[:8]}"
    cfg = tmp_path / "pyproject.toml"
    cfg.write_text(TOML)

    def tmux(*args, check=True):
        return subprocess.run([TMUX, "-L", sock, *args], capture_output=True, text=True, check=check)

    try:
        url = wait_ready(proc, ready)["url"]
        cmd = (f"{sys.executable} -m dspy_tracekit.cli watch --url {url} --interval 0.5 --config {cfg}; "
               f"echo WATCH-EXITED-$?; sleep 60")
        tmux("new-session", "-d", "-s", "w", "-x", "180", "-y", "40", cmd)
        deadline = time.monotonic() + 60
        screen = ""
        while time.monotonic() < deadline:
            screen = tmux("capture-pane", "-p", "-t", "w", check=False).stdout
            if "Intent.forward" in screen and "BREACHED" in screen and "req/s" in screen:
                break
            time.sleep(0.2)
        assert "Intent.forward" in screen, screen
        row = next(line for line in screen.splitlines() if "Intent.forward" in line)
        assert "25.0%" in row, row                       # 3 of 12 failed
        assert "BREACHED" in screen and "intent" in screen, screen
        assert "traces: 12" in screen, screen
        tmux("send-keys", "-t", "w", "C-c")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "WATCH-EXITED-" not in screen:
            screen = tmux("capture-pane", "-p", "-t", "w", check=False).stdout
            time.sleep(0.2)
        assert "WATCH-EXITED-0" in screen, screen
        assert "Traceback" not in screen, screen
    finally:
        tmux("kill-server", check=False)
        stop(proc)


def test_watch_reads_the_store_without_a_metrics_endpoint(enable, program, store_uri, experiment, tmp_path):
    enable({})
    run(program, 6, errors=2)
    assert len(stored(store_uri, experiment)) == 6
    tk.disable()
    cfg = tmp_path / "pyproject.toml"
    cfg.write_text(TOML)
    result = CliRunner().invoke(cli, ["watch", "--tracking-uri", store_uri, "--experiment", experiment,
                                      "--window", "1h", "--config", str(cfg), "--iterations", "1"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "Intent.forward" in line)
    assert "33.3%" in row, result.output
    assert "BREACHED" in result.output and "traces: 6" in result.output


def test_watch_with_an_unreachable_endpoint_says_so_and_goes_on(tmp_path):
    from monitor_testkit import free_port

    url = f"http://127.0.0.1:{free_port()}/metrics"
    result = CliRunner().invoke(cli, ["watch", "--url", url, "--interval", "0.05", "--iterations", "2",
                                      "--config", str(Path(__file__).parent / "nonexistent.toml")])
    assert result.exit_code == 2  # click: the --config file must exist
    (tmp_path / "empty.toml").write_text("")
    result = CliRunner().invoke(cli, ["watch", "--url", url, "--interval", "0.05", "--iterations", "2",
                                      "--config", str(tmp_path / "empty.toml")])
    assert result.exit_code == 0, result.output
    assert f"cannot read {url}" in " ".join(result.output.split())
