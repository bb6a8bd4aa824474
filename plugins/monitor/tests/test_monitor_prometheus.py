"""A real Prometheus scrapes two traced processes; PromQL over the scrape equals the MLflow store.
The generated rules file passes ``promtool check rules`` and loads into that Prometheus."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from monitor_testkit import free_port, stored

from dspy_tracekit.cli import main as cli

HERE = Path(__file__).resolve().parent
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
SLO_TOML = """
[tool.dspy-tracekit]
plugins = ["monitor"]

[[tool.dspy-tracekit.monitor.slo]]
name = "intent"
span = "Intent.forward"
p95_ms = 800
error_rate = 0.02
cost_usd_per_hour = 5.0
window = "5m"

[[tool.dspy-tracekit.monitor.slo]]
name = "admin-traces"
tag = { user_role = "admin" }
error_rate = 0.1
window = "1m"
"""


def start_worker(tmp_path: Path, name: str, n: int, errors: int, monitor: dict, env=None, then=None):
    ready = tmp_path / f"{name}.ready"
    args = {"store": f"sqlite:///{tmp_path / name}.db", "experiment": name, "n": n, "errors": errors,
            "monitor": monitor, "ready": str(ready), "then": then}
    proc = subprocess.Popen([sys.executable, str(HERE / "monitor_worker.py"), json.dumps(args)],
                            stdin=subprocess.PIPE, env={**os.environ, **(env or {})})
    return proc, ready, args


def wait_ready(proc, ready: Path, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while not ready.exists():
        assert proc.poll() is None, f"worker exited with {proc.returncode}"
        assert time.monotonic() < deadline, "worker did not get ready"
        time.sleep(0.1)
    return json.loads(ready.read_text())


def stop(proc) -> None:
    try:
        proc.stdin.close()
        proc.wait(30)
    except Exception:  # noqa: BLE001
        proc.kill()


def query(base: str, promql: str) -> list:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def scalar(base: str, promql: str) -> float | None:
    result = query(base, promql)
    return float(result[0]["value"][1]) if result else None


def wait_value(base: str, promql: str, want: float, timeout: float = 90.0) -> float | None:
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = scalar(base, promql)
        if got == want:
            return got
        time.sleep(0.5)
    return got


def write_rules(tmp_path: Path) -> Path:
    cfg = tmp_path / "pyproject.toml"
    cfg.write_text(SLO_TOML)
    out = tmp_path / "rules.yml"
    result = CliRunner().invoke(cli, ["slo", "rules", "--config", str(cfg), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_slo_rules_file_passes_promtool(tmp_path):
    if PROMTOOL is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    out = write_rules(tmp_path)
    check = subprocess.run([PROMTOOL, "check", "rules", str(out)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout + check.stderr
    text = out.read_text()
    assert 'tracekit:slo_error_ratio:rate5m' in text and 'slo="admin-traces"' in text
    assert 'ALERTS{alertname="TracekitSLOBreached", alertstate="firing", slo="intent"}' in text


def test_slo_rules_with_bad_config_names_the_key(tmp_path):
    cfg = tmp_path / "pyproject.toml"
    cfg.write_text(SLO_TOML.replace('window = "5m"', 'window = "5 minutes"'))
    result = CliRunner().invoke(cli, ["slo", "rules", "--config", str(cfg)])
    assert result.exit_code == 1
    assert "slo[0] ('intent').window" in result.output and str(cfg) in result.output


def test_prometheus_scrapes_two_traced_processes_and_promql_equals_the_store(tmp_path):
    if PROMETHEUS is None:
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    rules = write_rules(tmp_path)
    slo = {"port": 0, "slo": [{"name": "intent", "span": "Intent.forward", "p95_ms": 800, "error_rate": 0.02,
                               "window": "5m"}]}
    then = {"n": 20, "errors": 4}  # a second burst once Prometheus has seen the first: rates move
    workers = [start_worker(tmp_path, "a", 12, 3, slo, then=then), start_worker(tmp_path, "b", 9, 1, slo, then=then)]
    prom = None
    try:
        infos = [wait_ready(p, r) for p, r, _ in workers]
        targets = [urllib.parse.urlsplit(i["url"]).netloc for i in infos]
        port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {rules}\n"
            "scrape_configs:\n  - job_name: tracekit\n    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n")
        log = (tmp_path / "prometheus.log").open("w")
        prom = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=log)
        base = f"http://127.0.0.1:{port}"
        store_traces = sum(len(stored(a["store"], a["experiment"])) for _, _, a in workers)
        store_errors = sum(sum(t.info.state.value == "ERROR" for t in stored(a["store"], a["experiment"]))
                           for _, _, a in workers)
        assert (store_traces, store_errors) == (21, 4)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if scalar(base, 'count(up{job="tracekit"} == 1)') == 2:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert wait_value(base, "sum(tracekit_traces_total)", store_traces) == store_traces
        assert wait_value(base, 'sum(tracekit_traces_total{status="error"})', store_errors) == store_errors
        assert scalar(base, 'sum(tracekit_span_errors_total{span_name="Intent.forward"})') == store_errors
        assert scalar(base, 'sum(gen_ai_client_operation_duration_seconds_count{span_name="Intent.forward"})') == 21
        assert scalar(base, "sum(tracekit_traces_exported_total)") == 21
        # second burst: counters increase, so the rules see rates; PromQL still equals the store
        for _, ready, _ in workers:
            Path(str(ready) + ".go").touch()
        dones = [wait_ready(p, Path(str(r) + ".done")) for p, r, _ in workers]
        store_traces = sum(len(stored(a["store"], a["experiment"])) for _, _, a in workers)
        store_errors = sum(sum(t.info.state.value == "ERROR" for t in stored(a["store"], a["experiment"]))
                           for _, _, a in workers)
        assert (store_traces, store_errors) == (61, 12)
        assert wait_value(base, "sum(tracekit_traces_total)", store_traces) == store_traces
        assert wait_value(base, 'sum(tracekit_traces_total{status="error"})', store_errors) == store_errors
        # the rules loaded and judge the fleet: 8/40 new errors > 2% → the alert fires in Prometheus
        deadline = time.monotonic() + 90
        firing = []
        while time.monotonic() < deadline and not firing:
            firing = query(base, 'ALERTS{alertname="TracekitSLOBreached", slo="intent", alertstate="firing"}')
            time.sleep(0.5)
        assert firing, (tmp_path / "prometheus.log").read_text()[-2000:]
        ratio = scalar(base, 'tracekit:slo_error_ratio:rate5m{slo="intent"}')
        assert ratio is not None and ratio > 0.02
        assert all(d["counters"]["monitor.alerts.firing"] == 1 for d in dones)  # and in each process
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(30)
            log.close()
        for p, _, _ in workers:
            stop(p)


def test_multiprocess_mode_one_endpoint_sums_every_worker(tmp_path):
    mp = tmp_path / "multiproc"
    mp.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(mp)}
    first, ready_a, _ = start_worker(tmp_path, "a", 7, 2, {"port": 0}, env)
    procs = [first]
    try:
        info_a = wait_ready(first, ready_a)
        port = int(urllib.parse.urlsplit(info_a["url"]).port)
        # a second worker configured with the same port (gunicorn-style): port in use, counted, not raised
        second, ready_b, _ = start_worker(tmp_path, "b", 5, 1, {"port": port}, env)
        procs.append(second)
        info_b = wait_ready(second, ready_b)
        # counted, not raised; >= 1: its bind is retried every 10 s, and on a busy machine the worker's first
        # export (which opens MLflow's store since #12) can take longer than that before it reports ready
        assert info_b["url"] is None and info_b["counters"]["monitor.server_errors"] >= 1
        from test_monitor_metrics import scrape, total

        m = scrape(info_a["url"])
        assert total(m, "tracekit_traces_total") == 12
        assert total(m, "tracekit_traces_total", status="error") == 3
        assert total(m, "gen_ai_client_operation_duration_seconds_count", span_name="Intent.forward") == 12
        assert len(list(mp.glob("*.db"))) >= 2  # one value file per process
    finally:
        for p in procs:
            stop(p)
