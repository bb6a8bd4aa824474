"""The HTML report: its charts' numbers, and that a real browser opens it without touching the network."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading

import pytest

from dspy_tracekit import analytics
from dspy_tracekit.report import latency_bins, render_report, time_buckets

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)),
                shutil.which("chromium"))


def test_latency_bins_count_every_weighted_duration_once():
    durations = [1.0, 2.0, 2.5, 40.0, 100.0]
    weights = [1.0, 2.0, 1.0, 1.0, 0.5]
    edges, counts = latency_bins(durations, weights, bins=8)
    assert sum(counts) == pytest.approx(sum(weights))
    assert len(edges) == 9 and edges[-1] == pytest.approx(100.0)
    assert edges[1] / edges[0] == pytest.approx(edges[2] / edges[1])  # 100× spread: log-spaced bins


def test_time_buckets_cover_all_traces(synthetic_store):
    store = analytics.open_store(synthetic_store.uri, synthetic_store.experiment)
    views = analytics.trace_views(analytics.iter_traces(store))
    buckets = time_buckets(views, max_buckets=10)
    assert len(buckets) == 10
    assert sum(len(group) for _, group in buckets) == len(views) == 30
    assert [start for start, _ in buckets] == sorted(start for start, _ in buckets)


def test_empty_report_is_a_valid_page(empty_store):
    result = analytics.stats([], experiment="empty", tracking_uri=empty_store.uri)
    html = render_report([], result)
    assert html.startswith("<!DOCTYPE html>") and "No traces match." in html and "<svg" not in html


class RecordingProxy:
    """An HTTP proxy that answers nothing and writes down every request a browser sends it."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    first = conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
                    self.requests.append(first)
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def open_in_chromium(path, proxy: RecordingProxy, tmp_path) -> str:
    """Load a file in headless Chromium with every request forced through ``proxy``; return the DOM."""
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
        "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
        "--disable-domain-reliability", "--no-pings", "--disable-features=MediaRouter,OptimizationHints",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        f"--proxy-server=http://127.0.0.1:{proxy.port}", "--proxy-bypass-list=<-loopback>",
        "--virtual-time-budget=3000", "--dump-dom", path.as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium from the distribution (apt-get install chromium)")
def test_report_opens_in_headless_chromium_without_network_requests(synthetic_store, tmp_path):
    store = analytics.open_store(synthetic_store.uri, synthetic_store.experiment)
    views = analytics.trace_views(analytics.iter_traces(store))
    result = analytics.stats(views, experiment=store.experiment_name, tracking_uri=store.tracking_uri)
    report = tmp_path / "report.html"
    report.write_text(render_report(views, result))
    # the control proves the detector works: a page that fetches something shows up at the proxy
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><html><body><img src="http://cdn.example.invalid/chart.png"></body></html>')
    proxy = RecordingProxy()
    try:
        dom = open_in_chromium(report, proxy, tmp_path)
        report_requests = list(proxy.requests)
        open_in_chromium(control, proxy, tmp_path)
        control_requests = proxy.requests[len(report_requests):]
    finally:
        proxy.close()
    assert any("cdn.example.invalid" in r for r in control_requests), control_requests
    assert report_requests == [], report_requests
    assert dom.count("<svg") == 9 and "Latency by span name" in dom
