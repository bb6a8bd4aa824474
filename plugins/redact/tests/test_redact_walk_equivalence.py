"""The fast structure walk (issue #12) redacts every trace exactly as the walk before it did.

The plugin at ``BEFORE_FAST_WALK`` (its package as it was at that revision, imported under another name)
and the current one process deep copies of the same traces, one after the other with one Redactor each,
so that the caches that live across traces (repeated prompts, key decisions, pseudonyms) are exercised
as on a worker: every span field, every tag, attribute and metadata value, every count (in order) and
the plugin's counters must be the same. The traces hold the regression texts in inputs, outputs, params,
errors, events, attributes, span and trace tags and metadata, in nested dicts, lists, tuples, sets,
namedtuples, dataclasses, pydantic models, JSON strings and ``dspy.Example``/``Prediction``; and the
traces a real DSPy program makes.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
import random

import dspy
import pydantic
import pytest
from dspy_tracekit_redact import _plugin as new_plugin
from dspy_tracekit_redact import _redactor as new_redactor
from dspy_tracekit_redact._detectors import _DIGIT_AT_COLON, _LETTER_NEEDLES, may_hold_builtin

import dspy_tracekit as tk
from dspy_tracekit.records import SpanRecord, TraceRecord

#: main before the fast walk (the start of session 3)
BEFORE_FAST_WALK = "798b8c9"

CONFIGS = {
    "defaults": {},
    "policies": {
        "fields": {"notes": "mask", "internal": "drop", "raw": "skip", "api_key": "scan"},
        "actions": {"EMAIL": "hash", "PHONE": "partial", "IP_ADDRESS": "drop", "SECRET_FIELD": "partial"},
        "hash_secret": "test-secret", "secret_keys": ["Account-Number", "session cookie"],
        "pseudonym_keys": ["account", "Org-Id"], "max_text_chars": 1000,
    },
    "no-pseudonyms-drop-secrets": {"pseudonyms": False, "actions": {"SECRET_FIELD": "drop", "CREDIT_CARD": "drop"},
                                   "prefilter": False},
}


def _package_at(rev: str, into):
    """The redact package as it was at git revision ``rev``, imported under another name."""
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    src = Path(new_plugin.__file__).resolve().parent
    pkg = into / f"redact_walk_{rev[:7]}"
    pkg.mkdir()
    names = subprocess.run(["git", "ls-tree", "--name-only", rev, "."], cwd=src, check=True, capture_output=True,
                           text=True).stdout.split()
    for name in (n for n in names if n.endswith(".py")):
        text = subprocess.run(["git", "show", f"{rev}:./{name}"], cwd=src, check=True, capture_output=True,
                              text=True).stdout
        (pkg / name).write_text(text)
    spec = importlib.util.spec_from_file_location(pkg.name, pkg / "__init__.py", submodule_search_locations=[str(pkg)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[pkg.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def old_package(tmp_path_factory):
    try:
        return _package_at(BEFORE_FAST_WALK, tmp_path_factory.mktemp("old"))
    except Exception as exc:  # noqa: BLE001 - no git or a shallow clone: nothing to compare with
        pytest.skip(f"cannot load the redact package at {BEFORE_FAST_WALK}: {exc}")


# ----------------------------------------------------------------------------------------------
# varied traces
# ----------------------------------------------------------------------------------------------

Point = collections.namedtuple("Point", "label value")


@dataclasses.dataclass
class Ticket:
    subject: str
    body: str
    password: str = ""
    priority: int = 0


class Customer(pydantic.BaseModel):
    name: str
    email: str
    api_key: str | None = None
    notes: list[str] = []


class BrokenStr:
    def __str__(self):
        raise RuntimeError("no text")

    def __repr__(self):  # the same in both deep copies (no address): str() of a dict holding one
        return "BrokenStr()"


class Shown:
    def __init__(self, text):
        self.text = text

    def __str__(self):
        return self.text

    def __repr__(self):
        return f"Shown({self.text!r})"


class Label(str):
    """A str subclass (an enum-like label): walked by the slow chain, not the exact-type path."""


KEYS = ["message", "content", "role", "answer", "reasoning", "notes", "internal", "raw", "api_key", "password",
        "x-auth-token", "user_token", "Client-Secret", "session cookie", "account_number", "pin", "otp", "card_number",
        "user_id", "user", "session_id", "tenant", "account", "org_id", "Org-Id", "query", "context", "demos",
        "sk-field", "count", "value", "", "mlflow.trace.user", "user.id", "session.id", "tracekit.context.user_id",
        "tracekit.context.account", "redaction.counts"]
#: the same template in every request, as DSPy's system prompts and signature instructions are
TEMPLATES = [
    "Your input fields are:\n1. `message` (str):\nYour output fields are:\n1. `intent` (str):\nAll interactions "
    "will be structured in the following way.\n\n[[ ## message ## ]]\n{message}\n\n[[ ## completed ## ]]",
    "[[ ## notes ## ]]\nescalate to ops-lead@example.com or +1 415 555 0142\n\n[[ ## intent ## ]]\nbilling",
    "Classify an admin-console message.", "create_workflow", "ratio", "1.0", "litellm-1.110.2+35012f023b38",
    "contact: support@acme.io, card 4111 1111 1111 1111", "<MASKED>", "", "token", "the api key is "
    "sk-proj-Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7",
]


class _Gen:
    def __init__(self, texts: list[str], seed: int):
        self.rng = random.Random(seed)
        self.texts = texts

    def text(self) -> str:
        r = self.rng.random()
        if r < 0.35:
            return self.rng.choice(TEMPLATES)
        if r < 0.4:
            return self.rng.choice(self.texts[:40])  # a few texts repeat across traces
        if r < 0.43:
            return "a\x00binary " + self.rng.choice(self.texts)
        if r < 0.46:
            return " ".join(self.rng.choice(self.texts) for _ in range(40))  # past max_text_chars
        return self.rng.choice(self.texts)

    def scalar(self):
        rng = self.rng
        if rng.random() < 0.004:
            return BrokenStr()  # redacted as "<BrokenStr>"; under an identifier key it fails the trace
        return rng.choice([
            lambda: self.text(), lambda: self.text(), lambda: self.text(), lambda: rng.randint(-5, 5),
            lambda: rng.choice([4111111111111111, 5362288170000, -99_999_999, 100_000_000, 4155550142]),
            lambda: rng.random(), lambda: rng.choice([True, False]), lambda: None, lambda: "",
            lambda: Label(self.text()), lambda: b"\x00\x01raw", lambda: bytearray(b"xy"),
            lambda: json.dumps({"email": "jane.roe@example.com", "n": [1, self.text()], "password": "hunter2x"}),
            lambda: json.dumps([self.text(), {"api_key": "abc"}]), lambda: "[not json}",
            lambda: Shown(self.text()),
        ])()

    def value(self, depth: int = 0):
        rng = self.rng
        if depth > 3 or rng.random() < 0.45:
            return self.scalar()
        kind = rng.randrange(11)
        if kind < 4:
            return {self.key(): self.value(depth + 1) for _ in range(rng.randint(0, 5))}
        if kind < 6:
            return [self.value(depth + 1) for _ in range(rng.randint(0, 4))]
        if kind == 6:
            return tuple(self.scalar() for _ in range(rng.randint(0, 3)))
        if kind == 7:
            return rng.choice([{self.text(), "x"}, frozenset({"a", self.text()}), Point("l", self.text())])
        if kind == 8:
            return rng.choice([Ticket("s", self.text(), password=rng.choice(["", "hunter22"]), priority=3),
                               Customer(name="n", email=self.text(), api_key=rng.choice([None, "", "k-123"]),
                                        notes=[self.text()])])
        if kind == 9:
            return dspy.Example(message=self.text(), answer=self.value(depth + 1), api_key="sk-x")
        return dspy.Prediction(reasoning=self.text(), intent=self.text())

    def key(self):
        if self.rng.random() < 0.01:
            return self.rng.choice([7, None, ("a", 1)])  # keys that are no strings
        return self.rng.choice(KEYS)

    def mapping(self, n: int) -> dict:
        return {self.key(): self.value(1) for _ in range(self.rng.randint(0, n))}

    def tags(self, n: int) -> dict:
        rng = self.rng
        out = {}
        for _ in range(rng.randint(0, n)):
            out[rng.choice(KEYS)] = rng.choice([self.text(), "jane.roe@example.com", "s-1", "", "ps_" + "a1" * 12])
        return out

    def trace(self) -> TraceRecord:
        rng = self.rng
        t = TraceRecord()
        t.tags = self.tags(6)
        t.metadata = self.tags(4)
        t.attributes = self.mapping(4)
        parent = None
        for i in range(rng.randint(1, 8)):
            s = SpanRecord(t, parent, f"span{i}", rng.choice(["module", "lm", "adapter", "tool"]))
            s.inputs = rng.choice([None, self.mapping(5), self.value()])
            s.outputs = rng.choice([None, self.mapping(3), self.value(), [self.text()]])
            s.params = rng.choice([None, {}, self.mapping(3)])
            s.error = rng.choice([None, None, {"type": "ValueError", "message": self.text(), "traceback": self.text()}])
            s.tags = rng.choice([{}, self.tags(4)])
            s.events = rng.choice([None, [], [{"name": "ev", "timestamp_ns": 1, "attributes": self.mapping(3)}]])
            s.attributes = rng.choice([None, {}, self.mapping(4), {"redaction.counts": {"FAKE": 1}, **self.mapping(3)}])
            s.materialized = True
            t.spans.append(s)
            if i == 0:
                t.root = s
            parent = s.span_id if rng.random() < 0.7 else parent
        if rng.random() < 0.1:
            t.root = None  # no root: the trace's own counts go to the totals only
        return t


def _plain(obj):
    """A comparable form: types, key order and values (Example/Prediction by their fields)."""
    if isinstance(obj, dict):
        return ("dict", [(_plain(k), _plain(v)) for k, v in obj.items()])
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [_plain(v) for v in obj])
    if isinstance(obj, (set, frozenset)):
        return (type(obj).__name__, sorted(repr(_plain(v)) for v in obj))
    if isinstance(obj, (dspy.Example, dspy.Prediction)):
        return (type(obj).__name__, _plain(obj._store), getattr(obj, "_completions", None))
    if isinstance(obj, pydantic.BaseModel):
        return (type(obj).__name__, _plain(dict(obj)))
    if isinstance(obj, (str, int, float, bool, type(None), bytes)):
        return (type(obj).__name__, obj)
    return (type(obj).__name__, repr(obj))


def _state_of(trace: TraceRecord):
    return _plain([trace.tags, trace.attributes, trace.metadata] + [
        [s.inputs, s.outputs, s.params, s.error, s.tags, s.events, s.attributes] for s in trace.spans])


def _first_difference(a: TraceRecord, b: TraceRecord) -> str:
    def walk(x, y, path):
        if type(x) is not type(y):
            return f"{path}: {type(x).__name__} {x!r:.300} != {type(y).__name__} {y!r:.300}"
        if isinstance(x, dict):
            if list(x) != list(y):
                return f"{path}: keys {list(x)!r:.300} != {list(y)!r:.300}"
            for k in x:
                found = walk(x[k], y[k], f"{path}[{k!r}]")
                if found:
                    return found
            return None
        if _plain(x) != _plain(y):
            return f"{path}: {x!r:.300} != {y!r:.300}"
        return None

    for name in ("tags", "attributes", "metadata"):
        found = walk(getattr(a, name), getattr(b, name), f"trace.{name}")
        if found:
            return found
    for i, (sa, sb) in enumerate(zip(a.spans, b.spans)):
        for name in ("inputs", "outputs", "params", "error", "tags", "events", "attributes"):
            found = walk(getattr(sa, name), getattr(sb, name), f"spans[{i}].{name}")
            if found:
                return found
    return "?"


def _run_both(old_package, config: dict, traces: list[TraceRecord]) -> dict[str, int]:
    """Both plugins over deep copies of ``traces`` in order; the plugin's counters (the same for both)."""
    old = old_package._plugin
    new_r = new_redactor.Redactor(config)
    new_r.pseudonymizer()  # writes the key both read
    old_r = old_package.Redactor(config)
    old_r.pseudonymizer()
    saved = (old._state.redactor, new_plugin._state.redactor)
    old._state.redactor, new_plugin._state.redactor = old_r, new_r
    old._state.counters.clear()
    before = dict(new_plugin._state.counters)
    try:
        for i, trace in enumerate(traces):
            a, b = copy.deepcopy(trace), copy.deepcopy(trace)
            errors = []
            for plugin, t in ((old, a), (new_plugin, b)):
                try:
                    plugin.tracekit_process_trace(t)
                    errors.append(None)
                except Exception as exc:  # noqa: BLE001 - both must fail alike (the core drops the trace)
                    errors.append(type(exc))
            assert errors[0] == errors[1], (i, errors)
            if errors[0] is None:
                assert _state_of(a) == _state_of(b), f"trace {i} redacted differently: {_first_difference(a, b)}"
    finally:
        old._state.redactor, new_plugin._state.redactor = saved
    after = {k: n - before.get(k, 0) for k, n in new_plugin._state.counters.items() if n != before.get(k, 0)}
    assert after == old._state.counters
    assert after["traces"] > 0.8 * len(traces)  # the rest failed in both (a str() that raises, …)
    return after


@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
def test_varied_traces_are_redacted_as_before(old_package, regression_set, config):
    texts = random.Random(3).sample(regression_set, 4000)
    gen = _Gen(texts, seed=len(config))
    counters = _run_both(old_package, CONFIGS[config], [gen.trace() for _ in range(600)])
    # every kind of decision was taken, many times
    for kind in ("EMAIL", "PHONE", "CREDIT_CARD", "SECRET_FIELD", "BINARY", "GENERIC_SECRET"):
        assert counters.get(f"entities.{kind}", 0) > 20, (kind, counters)
    if config != "no-pseudonyms-drop-secrets":
        assert counters.get("entities.PSEUDONYM", 0) > 100
    if config == "policies":
        assert counters.get("entities.FIELD", 0) > 100 and counters.get("entities.TRUNCATED", 0) > 10


def test_the_same_with_a_tiny_cross_trace_cache(old_package, regression_set, monkeypatch):
    """Eviction and re-admission of repeated strings change nothing either."""
    monkeypatch.setattr(new_redactor, "_SHARED_MAX_ENTRIES", 5)
    monkeypatch.setattr(new_redactor, "_SHARED_MAX_CHARS", 400)
    monkeypatch.setattr(new_redactor, "_SEEN_MAX", 7)
    monkeypatch.setattr(new_redactor, "_KEY_MEMO_MAX", 3)
    gen = _Gen(random.Random(4).sample(regression_set, 2000), seed=11)
    assert _run_both(old_package, CONFIGS["policies"], [gen.trace() for _ in range(300)])["traces"] > 240


def test_real_dspy_traces_are_redacted_as_before(old_package, regression_set, store):
    """Traces of a DSPy program (few-shot demos with PII, a tool taking credentials, context identifiers),
    taken before delivery and materialized as the worker does."""
    taken = []

    class Take:
        @tk.hookimpl
        def tracekit_take_trace(self, trace):
            taken.append(trace)
            return True

    class Sig(dspy.Signature):
        """Classify a support message."""

        message: str = dspy.InputField()
        intent: str = dspy.OutputField()

    class Program(dspy.Module):
        def __init__(self):
            super().__init__()
            self.classify = dspy.ChainOfThought(Sig)
            self.classify.predict.demos = [dspy.Example(message="I am vip@example.net", reasoning="r",
                                                        intent="account")]

        def forward(self, message):
            self.lookup({"email": "jane.roe@example.com", "api_key": "sk-live-123456789", "note": message})
            return self.classify(message=message)

        @tk.trace(name="lookup", span_type="TOOL")
        def lookup(self, customer):
            return {"found": customer["email"], "card": "4111 1111 1111 1111"}

    encodable = [t for t in regression_set if "\ud800" not in t]  # DSPy refuses lone surrogates
    texts = random.Random(5).sample(encodable, 60)
    tk.enable(plugins=["redact", Take()], tracking_uri=f"sqlite:///{store}", experiment="walk")
    lm = dspy.utils.DummyLM([{"reasoning": "mail ops@example.com", "intent": "billing"}] * 200)
    program = Program()
    with dspy.context(lm=lm):
        for i, text in enumerate(texts * 2):  # each message twice: repeats across traces
            with tk.context(user_id=f"user{i % 7}@example.com", session_id=f"s-{i % 3}"):
                program(message=text)
    tk.disable()
    assert len(taken) == 120
    for t in taken:
        t.materialize()
    counters = _run_both(old_package, {}, taken)
    assert counters["entities.EMAIL"] >= 120 * 3 and counters["entities.PSEUDONYM"] >= 120 * 2


def test_may_hold_builtin_answers_as_the_needle_scan(regression_set):
    """One compiled search gives what the digit/@/: test and the ~80 substring tests gave."""

    def slow(text: str) -> bool:
        if _DIGIT_AT_COLON.search(text) is not None:
            return True
        low = text.lower()
        return any(n in low for n in _LETTER_NEEDLES)

    rng = random.Random(9)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ _-.'İſKéüñşłёΣσς0@:"
    needles = list(_LETTER_NEEDLES)
    adversarial = [n.upper() for n in needles] + [n.title() for n in needles] + [n[:-1] for n in needles] + [
        n[1:] for n in needles] + ["x" + n + "y" for n in needles] + [n[:2] + "\u0130" + n[2:] for n in needles] + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))) for _ in range(20_000)] + [
        "ſecret", "\u212aey", "TOKEN", "Pıncode", "İd", "KEY", "a" * 1000 + "pwd", ""]
    texts = regression_set + adversarial
    differ = [t for t in texts if slow(t) != may_hold_builtin(t)]
    assert differ == []
    assert sum(not slow(t) for t in texts) > 5_000  # both answers occur


def test_lowering_moves_no_character_into_or_out_of_the_digit_class():
    """Why the digit/@/: test may run on the lower-cased text: checked for every code point."""
    import re
    import sys

    cls = re.compile(r"[\d@:]")
    assert [c for c in map(chr, range(sys.maxunicode + 1))
            if (cls.search(c) is None) != (cls.search(c.lower()) is None)] == []
