"""The HTML report: its charts' numbers, and that a real browser opens it without touching the network."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time

import pytest

from dspy_tracekit import analytics
from dspy_tracekit.analytics.report import latency_bins, render_report, time_buckets

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


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``).

    The page's own network events are what count: Chromium's background traffic (time sync, sign-in
    probes) is not the page's and never shows up as ``Network.requestWillBeSent`` for it.
    """

    def __init__(self, profile):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds():  # Chromium reads commands on fd 3 and writes replies on fd 4
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire_fds, pass_fds=(3, 4),  # noqa: PLW1509 - the child only calls os.dup2 (no locks)
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _read(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._from_browser, 65536)
            if not chunk:
                raise EOFError("Chromium closed the pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method, params=None, session=None, timeout=60.0):
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                assert "error" not in reply, reply
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read(deadline))

    def open(self, url):
        """Load ``url`` in a fresh tab; return (URLs the page requested, failures, console errors, svg count)."""
        self.events.clear()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network", "Page", "Log", "Runtime"):
            self.call(f"{domain}.enable", session=session)
        self.call("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired")
        svgs = self.call("Runtime.evaluate", {"expression": "document.querySelectorAll('svg').length"},
                         session=session)["result"]["value"]
        mine = [e for e in self.events if e.get("sessionId") == session]
        requested = [e["params"]["request"]["url"] for e in mine if e["method"] == "Network.requestWillBeSent"]
        failed = [e["params"] for e in mine if e["method"] == "Network.loadingFailed"]
        errors = [e["params"]["entry"]["text"] for e in mine
                  if e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"]
        self.call("Target.closeTarget", {"targetId": target})
        return requested, failed, errors, svgs

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except (OSError, TimeoutError, EOFError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._to_browser)
        os.close(self._from_browser)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium from the distribution (apt-get install chromium)")
def test_report_opens_in_headless_chromium_without_network_requests(synthetic_store, tmp_path):
    store = analytics.open_store(synthetic_store.uri, synthetic_store.experiment)
    views = analytics.trace_views(analytics.iter_traces(store))
    result = analytics.stats(views, experiment=store.experiment_name, tracking_uri=store.tracking_uri)
    report = tmp_path / "report.html"
    report.write_text(render_report(views, result))
    # the control proves the check can fail: a page that fetches a chart from a CDN is caught
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><html><body><img src="http://cdn.example.invalid/chart.png"></body></html>')
    browser = Chromium(tmp_path / "profile")
    try:
        c_requested, c_failed, _, _ = browser.open(control.as_uri())
        requested, failed, errors, svgs = browser.open(report.as_uri())
    finally:
        browser.close()
    assert "http://cdn.example.invalid/chart.png" in c_requested and c_failed
    assert requested == [report.as_uri()]  # the file itself, nothing else
    assert failed == [] and errors == []
    assert svgs == 9
