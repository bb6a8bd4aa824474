"""Delivery cost of the monitor ≤ 10 µs per span (run: uv run pytest -m benchmark plugins/monitor -s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.benchmark
@pytest.mark.parametrize("mode", ["single-process", "multiprocess"])
def test_monitor_delivery_cost_per_span(mode, tmp_path):
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if mode == "multiprocess":
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, str(HERE / "monitor_bench.py"), "30"], capture_output=True, text=True, check=False,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\nmonitor delivery cost: {json.dumps(result)}")
    assert result["mode"] == mode
    assert result["recorded_traces"] > 0
    # the goal (<= 10 us per span) is reported, not asserted: timing asserts fail on a noisy machine
    print(f"monitor delivery cost {result['monitor_us_per_span']:.2f} us/span (goal <= 10)")
