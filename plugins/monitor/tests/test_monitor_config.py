"""Bad input stops enable() naming the key; run-time trouble (port in use, unreachable webhook) is
reported and counted, never raised into the program."""

from __future__ import annotations

import logging
import socket

import dspy_tracekit_monitor as monitor
import pytest
from dspy_tracekit_monitor import parse_config, parse_window
from monitor_testkit import run, stored

import dspy_tracekit as tk
from dspy_tracekit import ConfigError


@pytest.mark.parametrize("table, message", [
    ({"slo": [{"name": "a", "spam": "x", "p95_ms": 5}]}, "unknown key slo[0] ('a').spam"),
    ({"slo": [{"name": "a", "p95_ms": -1}]}, "slo[0] ('a').p95_ms must be a number of milliseconds > 0, got -1"),
    ({"slo": [{"name": "a", "p95_ms": 5, "window": "5 minutes"}]},
     "slo[0] ('a').window must be a duration like '30s', '5m', '1h' or '1d', got '5 minutes'"),
    ({"slo": [{"name": "a", "error_rate": 2}]}, "slo[0] ('a').error_rate must be a fraction >= 0 and <= 1"),
    ({"slo": [{"name": "a"}]}, "slo[0] ('a') needs at least one objective"),
    ({"slo": [{"p95_ms": 3}]}, "slo[0].name is required"),
    ({"slo": [{"name": "a", "p95_ms": 3}, {"name": "a", "p95_ms": 4}]}, "'a' is used by two SLOs"),
    ({"slo": [{"name": "a", "p95_ms": 3, "tag": {"user_role": 3}}]}, "slo[0] ('a').tag must be a table"),
    ({"port": 70000}, "port must be an integer from 0"),
    ({"port": "9464"}, "port must be an integer"),
    ({"webhook_url": "not a url"}, "webhook_url must be an http:// or https:// URL with a host, got 'not a url'"),
    ({"webhook_url": "ftp://example.invalid/x"}, "webhook_url must be an http:// or https:// URL"),
    ({"hysteresis": 1.5}, "hysteresis must be a fraction"),
    ({"prot": 9464}, "unknown key 'prot'"),
])
def test_bad_config_stops_enable_naming_the_key(store_uri, experiment, table, message):
    with pytest.raises(ConfigError) as err:
        tk.enable(plugins=["monitor"], tracking_uri=store_uri, experiment=experiment, config={"monitor": table})
    assert "[monitor]" in str(err.value)
    assert message in str(err.value)
    assert tk.counters() == {}  # not enabled


def test_config_from_pyproject_names_the_file(tmp_path, monkeypatch, store_uri):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.dspy-tracekit]\nplugins = ["monitor"]\n\n'
        '[[tool.dspy-tracekit.monitor.slo]]\nname = "intent"\nspan = "Intent.forward"\nwindow = "5 minutes"\n'
        "p95_ms = 800\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        tk.enable(tracking_uri=store_uri)
    assert "slo[0] ('intent').window" in str(err.value)
    assert str(tmp_path / "pyproject.toml") in str(err.value)


def test_slo_table_parses_selectors_and_objectives():
    cfg = parse_config({"port": 0, "slo": [{"name": "intent-latency", "span": "IntentDetector.forward",
                                            "module": "IntentDetector*", "kind": "module",
                                            "tag": {"user_role": "admin"}, "p95_ms": 800, "error_rate": 0.02,
                                            "cost_usd_per_hour": 5.0, "window": "5m"}]})
    (slo,) = cfg.slos
    assert (slo.window_s, slo.p95_ms, slo.error_rate, slo.cost_usd_per_hour) == (300, 800.0, 0.02, 5.0)
    assert slo.selector() == {"span": "IntentDetector.forward", "module": "IntentDetector*", "kind": "module",
                              "tag": {"user_role": "admin"}}
    assert parse_window("1h") == 3600 and parse_window("30s") == 30


def test_port_in_use_is_reported_and_counted_not_raised(enable, program, store_uri, experiment, caplog):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        with caplog.at_level(logging.WARNING, logger="dspy_tracekit.monitor"):
            enable({"port": port})
        run(program, 3)
        counters = tk.counters()
    finally:
        busy.close()
    assert counters["monitor.server_errors"] == 1
    assert monitor.metrics_url() is None
    assert f"cannot serve /metrics on 127.0.0.1:{port}" in caplog.text
    assert len(stored(store_uri, experiment)) == 3  # tracing went on


def test_unreachable_webhook_is_counted_not_raised(enable, program, store_uri, experiment, caplog):
    from monitor_testkit import free_port

    url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    with caplog.at_level(logging.WARNING, logger="dspy_tracekit.monitor"):
        enable({"webhook_url": url, "webhook_retries": 1, "webhook_timeout_s": 0.5, "evaluate_every_s": 60,
                "slo": [{"name": "errors", "error_rate": 0.0, "window": "1m"}]})
        run(program, 2, errors=1)
        alerts = monitor.current().tick()
        mon = monitor.current()
        import time

        deadline = time.monotonic() + 20
        while mon.webhook.counters()["webhook.failed"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        counters = tk.counters()
    assert [a["state"] for a in alerts] == ["firing"]
    assert counters["monitor.webhook.failed"] == 1
    assert counters["monitor.webhook.retried"] == 1
    assert f"webhook {url} failed" in caplog.text
    assert len(stored(store_uri, experiment)) == 2


def test_settings_from_environment_variables(monkeypatch, enable, program):
    monkeypatch.setenv("DSPY_TRACEKIT_MONITOR_PORT", "0")
    monkeypatch.setenv("DSPY_TRACEKIT_MONITOR_HYSTERESIS", "0.25")
    enable(None)
    assert monitor.metrics_url() is not None
    assert monitor.current().cfg.hysteresis == 0.25


def test_doctor_dry_run_validates_the_table_and_starts_nothing():
    from dspy_tracekit.records import Settings

    settings = Settings(tracking_uri="sqlite:///unused.db", experiment="x", dry_run=True)
    monitor.tracekit_configure({"port": 0, "webhook_url": "http://127.0.0.1:9/x"}, settings)
    assert monitor.current() is None
    with pytest.raises(ValueError, match="webhook_url"):
        monitor.tracekit_configure({"webhook_url": "nope"}, settings)
