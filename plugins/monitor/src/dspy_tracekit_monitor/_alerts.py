"""Alert sinks: the log, and a webhook that posts JSON from a thread of its own."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

__all__ = ["WebhookSink", "log_alert"]

logger = logging.getLogger("dspy_tracekit.monitor")


def log_alert(alert: dict[str, Any]) -> None:
    observed = alert.get("observed") or {}
    if alert.get("state") == "firing":
        logger.warning("dspy-tracekit SLO %r breached (%s) over %s: observed %s, thresholds %s",
                       alert.get("slo"), ", ".join(alert.get("breaches") or ()), alert.get("window"),
                       _short(observed), alert.get("thresholds"))
    else:
        logger.warning("dspy-tracekit SLO %r %s over %s: observed %s", alert.get("slo"), alert.get("state"),
                       alert.get("window"), _short(observed))


def _short(observed: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in observed.items()
                     if v is not None)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 429 or exc.code >= 500
    return isinstance(exc, (urllib.error.URLError, OSError, TimeoutError))


class WebhookSink:
    """POSTs each alert as JSON to ``url``, on its own thread, with ``retries`` retries (exponential
    back-off) and a per-attempt ``timeout``. ``send`` never blocks: a full queue drops (and counts)."""

    def __init__(self, url: str, timeout: float = 5.0, retries: int = 3, queue_size: int = 1000,
                 on_outcome=None, backoff: float = 0.2):
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._warned = False
        self._on_outcome = on_outcome
        self._thread = threading.Thread(target=self._run, name="dspy-tracekit-monitor-webhook", daemon=True)
        self._thread.start()

    def send(self, alert: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(alert)
        except queue.Full:
            self._count("dropped")

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1
        if self._on_outcome is not None:
            try:
                self._on_outcome(outcome)
            except Exception:  # noqa: BLE001, S110 - a metrics callback must not stop the webhook thread
                pass

    def _post(self, body: bytes) -> None:
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "dspy-tracekit-monitor"})
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            resp.read()

    def _attempt(self, body: bytes) -> None:
        for attempt in Retrying(stop=stop_after_attempt(self.retries + 1), reraise=True,
                                wait=wait_exponential(multiplier=self.backoff, max=5.0),
                                retry=retry_if_exception(_retryable)):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self._count("retried")
                if self._stop.is_set() and attempt.retry_state.attempt_number > 1:
                    raise TimeoutError("monitor shutting down")
                self._post(body)

    def _run(self) -> None:
        while True:
            alert = self.queue.get()
            if alert is None:
                return
            try:
                self._attempt(json.dumps(alert, default=str).encode())
                self._count("sent")
            except Exception as exc:  # noqa: BLE001 - a webhook must never reach the program
                if not self._warned:  # logged before it is counted: whoever sees the count finds the line
                    self._warned = True
                    logger.warning("dspy-tracekit monitor: webhook %s failed (further failures only counted "
                                   "as monitor.webhook.failed): %s: %s", self.url, type(exc).__name__, exc)
                self._count("failed")

    def counters(self) -> dict[str, int]:
        with self._lock:
            out = {f"webhook.{k}": 0 for k in ("sent", "failed", "retried", "dropped")}
            out.update({f"webhook.{k}": v for k, v in self.counts.items()})
        out["webhook.pending"] = self.queue.qsize()
        return out

    def close(self, timeout: float) -> None:
        """Deliver what is queued within ``timeout`` seconds; what is left is counted as dropped."""
        deadline = time.monotonic() + max(0.0, timeout)
        while not self.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stop.set()
        left = 0
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                left += 1
        for _ in range(left):
            self._count("dropped")
        try:
            self.queue.put_nowait(None)
        except queue.Full:  # pragma: no cover - emptied just above
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()))
