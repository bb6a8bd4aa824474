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

from .engine import IntentEngine

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


def run_batch(detector: IntentDetector, reqs: list[dict]) -> tuple[int, int]:
    ok = failed = 0
    for r in reqs:
        with tk.context(user_role=r["user_role"], current_module=r["current_module"], tab=r["tab"],
                        session_id=r["session_id"], user_id=r["user_id"]):
            try:
                detect_intent(detector, r["message"], r["user_role"], r["current_module"])
                ok += 1
            except IntentValidationError:
                failed += 1
    return ok, failed


def run_demo(n: int = 24, model: str | None = None, tracking_uri: str | None = None,
             experiment: str = "dspy_intent_classification", plugins: list[str] | None = None,
             seed: int = 0, latency_ms: float = 0.0, out=None) -> int:
    """Classify ``n`` messages with tracing on, then print the last trace as a tree. Returns an exit code."""
    import time

    from rich.console import Console

    console = Console(file=out or sys.stdout, highlight=False)
    enabled_here = tk.enable(plugins=plugins, tracking_uri=tracking_uri, experiment=experiment)
    from dspy_tracekit import _state

    if _state.settings is None:
        console.print("[yellow]tracing is off (DSPY_TRACEKIT_DISABLE / MLFLOW_ENABLE_TRACING=false)[/]")
    try:
        detector = build_program()
        t0 = time.perf_counter()
        try:
            with dspy.context(lm=make_lm(model, latency_ms)):
                ok, failed = run_batch(detector, requests(n, seed))
        except Exception as exc:  # noqa: BLE001 - e.g. a real provider without its API key
            console.print(f"[red]error:[/] the LM call failed: {type(exc).__name__}: {str(exc)[:300]}")
            return 1
        elapsed = time.perf_counter() - t0
        tk.flush(30.0)
        settings = _state.settings
        uri = settings.tracking_uri if settings else tracking_uri
        exp = settings.experiment if settings else experiment
    finally:
        if enabled_here:
            tk.disable()
    console.print(f"classified {ok + failed} messages: {ok} ok, {failed} failed validation "
                  f"({elapsed * 1000 / max(1, n):.1f} ms per request)")
    if uri is None:
        return 0
    from .render import last_trace, render_tree

    trace = last_trace(uri, exp)
    if trace is not None:
        console.print(render_tree(trace))
        console.print(f"trace {trace.info.trace_id}: {len(trace.data.spans)} spans, status {trace.info.state}")
    console.print(f"experiment '{exp}' in {uri}")
    console.print(f"open the MLflow UI:  uv run mlflow ui --backend-store-uri {uri}")
    return 0
