"""The intent-detection demo application (``dspy-tracekit demo``)."""

from __future__ import annotations

import random
import sqlite3
import sys
import tempfile
import threading
from pathlib import Path

import dspy

import dspy_tracekit as tk
from dspy_tracekit.cli.demo.engine import IntentEngine

INTENTS = ("create_workflow", "run_agent", "view_reports", "manage_users", "other")
MODULES = ("workflows", "agents", "reports", "users", "settings")
ROLES = ("admin", "analyst", "operator", "viewer")
TABS = ("overview", "editor", "history", "settings")

MESSAGES = [
    "Help me create a new workflow for invoice approval",
    "Can you build a workflow that automates onboarding emails?",
    "Run the data-cleanup agent on last week's uploads",
    "Launch the support triage agent now",
    "Show me the weekly metrics dashboard",
    "I need the quarterly revenue report as a chart",
    "Invite jane@example.com as a new user with analyst role",
    "Remove access for the contractor accounts",
    "What is the weather like in Paris today?",
    "Trigger the agent that syncs CRM contacts",
    "Set up a workflow to archive stale tickets",
    "asdf qq",
]


class IntentSignature(dspy.Signature):
    """Classify an admin-console message into one intent, given who asks and from where."""

    message: str = dspy.InputField(desc="the user's message")
    user_role: str = dspy.InputField(desc="role of the user: admin, analyst, operator, viewer")
    current_module: str = dspy.InputField(desc="the console module the user is in")
    templates: str = dspy.InputField(desc="workflow and agent templates available to this user")
    intent: str = dspy.OutputField(desc="one of: " + ", ".join(INTENTS))
    confidence: float = dspy.OutputField(desc="0.0 to 1.0")


class IntentValidationError(ValueError):
    """The classifier's answer is not a usable intent."""


class TemplateStore:
    """Workflow and agent templates in a real SQLite database."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        con = sqlite3.connect(path)
        con.executescript("""
            CREATE TABLE IF NOT EXISTS workflow_templates (id INTEGER PRIMARY KEY, name TEXT, module TEXT, min_role TEXT);
            CREATE TABLE IF NOT EXISTS agent_templates (id INTEGER PRIMARY KEY, name TEXT, module TEXT, min_role TEXT);
        """)
        if con.execute("SELECT COUNT(*) FROM workflow_templates").fetchone()[0] == 0:
            con.executemany("INSERT INTO workflow_templates (name, module, min_role) VALUES (?, ?, ?)", [
                ("invoice_approval", "workflows", "operator"), ("employee_onboarding", "workflows", "admin"),
                ("ticket_archival", "workflows", "operator"), ("weekly_digest", "reports", "analyst"),
            ])
            con.executemany("INSERT INTO agent_templates (name, module, min_role) VALUES (?, ?, ?)", [
                ("support_triage", "agents", "operator"), ("data_cleanup", "agents", "admin"),
                ("crm_sync", "agents", "operator"), ("report_writer", "reports", "analyst"),
            ])
            con.commit()
        con.close()

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = sqlite3.connect(self.path)
        return con

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with tk.span("database_query", span_type="TOOL") as s:
            s.set_inputs({"sql": sql, "params": list(params)})
            rows = self._con().execute(sql, params).fetchall()
            s.set_outputs({"row_count": len(rows)})
            return rows


class IntentDetector(dspy.Module):
    """Classifies a console message; fetches templates, processes context, validates the result."""

    def __init__(self, store: TemplateStore):
        super().__init__()
        self.store = store
        self.classify = dspy.ChainOfThought(IntentSignature)

    @tk.trace(name="get_workflow_templates", span_type="RETRIEVER")
    def get_workflow_templates(self, current_module: str) -> list[str]:
        return [r[0] for r in self.store.query(
            "SELECT name FROM workflow_templates WHERE module = ? OR ? = 'workflows'", (current_module, current_module))]

    @tk.trace(name="get_agent_templates", span_type="RETRIEVER")
    def get_agent_templates(self, current_module: str) -> list[str]:
        return [r[0] for r in self.store.query(
            "SELECT name FROM agent_templates WHERE module = ? OR ? = 'agents'", (current_module, current_module))]

    @tk.trace(name="process_context", span_type="CHAIN")
    def process_context(self, user_role: str, current_module: str, workflows: list[str], agents: list[str]) -> str:
        visible = workflows + agents if user_role in ("admin", "operator") else workflows[:2]
        return f"module={current_module}; role={user_role}; templates: {', '.join(visible) or 'none'}"

    @tk.trace(name="validate_result", span_type="PARSER")
    def validate_result(self, prediction: dspy.Prediction) -> dict:
        intent = str(prediction.intent).strip()
        if intent not in INTENTS:
            raise IntentValidationError(f"model answered intent {intent!r}, not one of {', '.join(INTENTS)}")
        try:
            confidence = float(prediction.confidence)
        except (TypeError, ValueError) as exc:
            raise IntentValidationError(f"confidence {prediction.confidence!r} is not a number") from exc
        if not 0.0 <= confidence <= 1.0:
            raise IntentValidationError(f"confidence {confidence} is outside [0, 1]")
        return {"intent": intent, "confidence": confidence, "needs_review": confidence < 0.5}

    def forward(self, message: str, user_role: str, current_module: str) -> dspy.Prediction:
        workflows = self.get_workflow_templates(current_module)
        agents = self.get_agent_templates(current_module)
        templates = self.process_context(user_role, current_module, workflows, agents)
        prediction = self.classify(message=message, user_role=user_role, current_module=current_module,
                                   templates=templates)
        result = self.validate_result(prediction)
        return dspy.Prediction(reasoning=prediction.reasoning, **result)


@tk.trace(name="dspy_intent_detection", span_type="CHAIN")
def detect_intent(detector: IntentDetector, message: str, user_role: str, current_module: str) -> dict:
    prediction = detector(message=message, user_role=user_role, current_module=current_module)
    return {"intent": prediction.intent, "confidence": prediction.confidence,
            "needs_review": prediction.needs_review}


def make_lm(model: str | None = None, latency_ms: float = 0.0) -> dspy.LM:
    """The demo's LM: offline by default (a deterministic engine under a real model name)."""
    if model:
        return dspy.LM(model, cache=False)
    return dspy.LM("openai/gpt-4o-mini", engine=IntentEngine(latency_ms=latency_ms), cache=False,
                   temperature=0.0, max_tokens=256)


def build_program(workdir: Path | None = None) -> IntentDetector:
    workdir = Path(workdir or tempfile.mkdtemp(prefix="dspy-tracekit-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    return IntentDetector(TemplateStore(workdir / "templates.db"))


def requests(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        out.append({"message": MESSAGES[i % len(MESSAGES)] if i < len(MESSAGES) else rng.choice(MESSAGES),
                    "user_role": rng.choice(ROLES), "current_module": rng.choice(MODULES),
                    "tab": rng.choice(TABS), "session_id": f"session-{rng.randrange(1, 6)}",
                    "user_id": f"user-{rng.randrange(1, 11)}"})
    return out


def run_batch(detector: IntentDetector, reqs: list[dict],
              times: list[float] | None = None) -> tuple[int, int]:
    """Run the requests; ``times`` (when given) gets each request's wall time in seconds."""
    import time

    ok = failed = 0
    for r in reqs:
        t0 = time.perf_counter()
        with tk.context(user_role=r["user_role"], current_module=r["current_module"], tab=r["tab"],
                        session_id=r["session_id"], user_id=r["user_id"]):
            try:
                detect_intent(detector, r["message"], r["user_role"], r["current_module"])
                ok += 1
            except IntentValidationError:
                failed += 1
        if times is not None:
            times.append(time.perf_counter() - t0)
    return ok, failed


def run_demo(n: int = 24, model: str | None = None, tracking_uri: str | None = None,
             experiment: str | None = None, plugins: list[str] | None = None,
             seed: int = 0, latency_ms: float = 0.0, out=None) -> int:
    """Classify ``n`` messages with tracing on, print the last trace as a tree and the commands that read
    the traces back. Returns an exit code.

    ``tracking_uri`` / ``experiment`` default to what ``dspy_tracekit.enable()`` resolves (tracekit config,
    environment, defaults) — the same place the read commands (``stats``, ``tree``, …) look by default.
    """
    import time

    from rich.console import Console

    console = Console(file=out or sys.stdout, highlight=False)
    enabled_here = tk.enable(plugins=plugins, tracking_uri=tracking_uri, experiment=experiment)
    from dspy_tracekit import _state

    if _state.settings is None:
        console.print("[yellow]tracing is off (DSPY_TRACEKIT_DISABLE / MLFLOW_ENABLE_TRACING=false)[/]")
    try:
        detector = build_program()
        times: list[float] = []
        t0 = time.perf_counter()
        try:
            with dspy.context(lm=make_lm(model, latency_ms)):
                ok, failed = run_batch(detector, requests(n, seed), times)
        except Exception as exc:  # noqa: BLE001 - e.g. a real provider without its API key
            from rich.markup import escape

            console.print(f"[red]error:[/] the LM call failed: {escape(type(exc).__name__)}: {escape(str(exc)[:300])}")
            return 1
        elapsed = time.perf_counter() - t0
        tk.flush(30.0)
        settings = _state.settings
        uri = settings.tracking_uri if settings else tracking_uri
        exp = settings.experiment if settings else experiment
    finally:
        if enabled_here:
            tk.disable()
    # the median, not the mean: without the buffer the first request's end also opens the store (and
    # MLflow imports LiteLLM to price the LM span), a one-time cost of the process, printed apart
    later = sorted(times[1:]) or times
    median_ms = later[len(later) // 2] * 1000 if later else elapsed * 1000 / max(1, n)
    slow_first = len(times) > 1 and times[0] * 1000 > 3 * median_ms
    first = (f"; the first took {times[0] * 1000:.0f} ms: opening the store, once per process"
             if slow_first else "")
    console.print(f"classified {ok + failed} messages: {ok} ok, {failed} failed validation "
                  f"({median_ms:.1f} ms per request, median{first})")
    if uri is None:
        return 0
    from rich.markup import escape

    from dspy_tracekit.cli.demo.render import last_trace, render_tree

    trace = last_trace(uri, exp)
    if trace is not None:
        console.print(render_tree(trace))
        console.print(f"trace {trace.info.trace_id}: {len(trace.data.spans)} spans, status {trace.info.state}")
    console.print(escape(f"experiment '{exp}' in {uri}"))
    console.print("Next:")
    width = max(len(cmd) for cmd, _ in next_commands(uri, exp))
    for cmd, what in next_commands(uri, exp):
        console.print(escape(f"  {cmd.ljust(width)}   # {what}"), soft_wrap=True)
    return 0


def command_name() -> str:
    """How to call ``dspy-tracekit`` again from the shell that ran this one."""
    import os
    import shlex
    import shutil

    if os.environ.get("UV_RUN_RECURSION_DEPTH"):  # started by `uv run`: the venv's scripts are not on PATH
        return "uv run dspy-tracekit"
    here = os.path.join(os.path.dirname(sys.executable), "dspy-tracekit")
    found = shutil.which("dspy-tracekit")
    if not os.path.exists(here) or (found and os.path.realpath(found) == os.path.realpath(here)):
        return "dspy-tracekit"
    return shlex.quote(here)  # a virtual environment that is not activated: its script by path


def next_commands(tracking_uri: str, experiment: str) -> list[tuple[str, str]]:
    """The read commands to try after the demo, with only the flags needed to find its traces."""
    import shlex

    from dspy_tracekit.config import resolve
    from dspy_tracekit.errors import ConfigError

    try:
        default = resolve()
        default_uri, default_exp = default.core["tracking_uri"], default.core["experiment"]
    except ConfigError:
        default_uri = default_exp = None
    flags = ""
    if tracking_uri != default_uri:
        flags += f" --tracking-uri {shlex.quote(tracking_uri)}"
    if experiment != default_exp:
        flags += f" -e {shlex.quote(experiment)}"
    cmd = command_name()
    return [
        (f"{cmd} stats{flags}", "latency, errors, tokens and cost per span name"),
        (f"{cmd} tree --last{flags}", "the newest trace as a tree"),
        (f"{cmd} report{flags} --out report.html", "one HTML file to share"),
        (f"{cmd} ui{flags}", "the MLflow UI on these traces"),
    ]
