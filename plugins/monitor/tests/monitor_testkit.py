"""Helpers of the monitor plugin's tests: a real DSPy program, store reads, a real HTTP receiver."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy
from dspy.utils import DummyLM

import dspy_tracekit as tk


class Intent(dspy.Module):
    """A small intent program; ``slow_s`` and ``fail`` inject slow spans and errors."""

    def __init__(self):
        super().__init__()
        self.intent = dspy.Predict("message -> intent")

    def forward(self, message: str, slow_s: float = 0.0, fail: bool = False):
        out = self.intent(message=message)
        if slow_s:
            time.sleep(slow_s)
        if fail:
            raise RuntimeError("tool backend unavailable")
        return out


def dummy_lm(n: int = 100_000) -> DummyLM:
    return DummyLM([{"intent": "create_workflow"}] * n)


def run(program, n: int, errors: int = 0, slow_s: float = 0.0) -> int:
    """Call ``program`` n times, the first ``errors`` of them failing; returns the failures seen."""
    failed = 0
    for i in range(n):
        try:
            program(message=f"m{i}", fail=i < errors, slow_s=slow_s)
        except RuntimeError:
            failed += 1
    return failed


def stored(store_uri: str, experiment: str) -> list:
    import mlflow

    tk.flush(30)
    client = mlflow.MlflowClient(store_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    out, token = [], None
    while True:
        page = client.search_traces(locations=[exp.experiment_id], max_results=500, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AlertReceiver:
    """A real HTTP server on 127.0.0.1 that records the JSON bodies POSTed to it."""

    def __init__(self, delay_s: float = 0.0, status: int = 200):
        self.bodies: list[dict] = []
        self.attempts = 0
        #: cleared: requests hang (a stuck webhook) until the test sets it
        self.gate = threading.Event()
        self.gate.set()
        self.arrived = threading.Event()
        self.delay_s = delay_s
        self.status = status
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.attempts += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.arrived.set()
                receiver.gate.wait(60)
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                if receiver.status == 200:
                    receiver.bodies.append(json.loads(body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, n: int, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.bodies) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.bodies

    def close(self):
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()
