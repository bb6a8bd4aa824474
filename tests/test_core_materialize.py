"""The materialize stage: one walk makes values JSON-able and masks credentials; inputs named per parameter."""

from __future__ import annotations

import collections
import dataclasses
import gc
import math

import dspy
import pydantic
from tk_testing import Pipeline, dummy_lm

import dspy_tracekit as tk
from dspy_tracekit._delivery.secrets import scrub
from dspy_tracekit.records import SpanKind, SpanRecord, TraceRecord, _bind_inputs, jsonable


@dataclasses.dataclass
class Conn:
    host: str
    password: str
    url: str


class Settings(pydantic.BaseModel):
    endpoint: str = "https://svc:pw@api.example/v1"
    openai_api_key: str = "sk-model"


class Boom(Exception):
    pass


class Shown:
    def __str__(self):
        return "see https://bob:pw@internal.example/x"


def _nested(n):
    value: list = ["too deep"]
    for _ in range(n):
        value = [value]
    return value


def _values():
    loop: dict = {"name": "loop"}
    loop["self"] = loop
    return [
        "plain", "https://user:secret@host.example/v1", "", None, 3, 2.5, math.nan, True, "ünïcode \udc80",
        {"api_key": "sk-1", "API-Key": "sk-2", "db_password": "x", "token": "", "secret": None, "ok": "fine"},
        {"nested": [{"authorization": "Bearer abc", "note": "ftp://a:b@c.example"}], "headers": {"h": "v"}},
        {"password": {"deep": "value"}, "cookies": [], "x_api_key": 0, "pwd": math.inf},
        [("tuple", "http://u:p@h.example"), {"set"}, b"bytes"],
        {1: "int key", ("t",): "tuple key", "client-secret": "s"},
        Conn("db.example", "hunter2", "postgresql://app:hunter2@db.example/app"),
        Boom("failed at https://svc:pw@api.example"),
        dspy.Prediction(answer="x", api_key="sk-pred", link="https://a:b@c.example"),
        dspy.Example(question="q", credentials={"k": "v"}),
        Shown(),
        collections.OrderedDict(api_key="sk-od", other="x"),
        Settings(),
        {"ok": 1, "auth_token": "t"},
        {"ok": 2, "auth_token": "t"},  # the same keys again: the second walk takes the cached key check
        loop,
        {"deep": _nested(25)},
    ]


def _materialized(value, field: str):
    trace = TraceRecord()
    span = SpanRecord(trace, None, "s", SpanKind.CUSTOM)
    trace.root = span
    trace.spans.append(span)
    setattr(span, field, value)
    marks = trace.materialize()
    return getattr(span, field), marks


def test_materialize_masks_credentials_exactly_as_scrub_of_jsonable():
    for field in ("inputs", "outputs", "params", "attributes"):
        for value in _values():
            if field == "attributes" and not isinstance(value, dict):
                continue
            expected_marks: dict = {}
            expected = scrub(jsonable(value, expected_marks))
            got, marks = _materialized(value, field)
            assert repr(got) == repr(expected), (field, value)
            assert marks == expected_marks, (field, value)


def test_inputs_are_named_after_the_parameters_of_a_bound_method():
    class Adapter:
        def format(self, signature, demos, inputs=None, *rest, flag=False, **extra):
            pass

    a = Adapter()
    assert _bind_inputs(a.format, a, ("sig", [1]), {}) == {"signature": "sig", "demos": [1]}
    assert _bind_inputs(a.format, a, ("sig", [1], {"q": 1}, "r1", "r2"), {}) == {
        "signature": "sig", "demos": [1], "inputs": {"q": 1}, "rest": ["r1", "r2"]}
    assert _bind_inputs(a.format, a, ("sig",), {"flag": True, "inputs": 2, "demos": 3, "z": 4}) == {
        "signature": "sig", "demos": 3, "inputs": 2, "flag": True, "z": 4}
    assert _bind_inputs(Adapter.format, a, ("sig", [1]), {}) == {"signature": "sig", "demos": [1]}
    assert _bind_inputs(a.format, a, ("sig",), {"signature": "twice"}) == {"signature": "twice", "args": ["sig"]}

    def tool(query, k=3):
        pass

    assert _bind_inputs(tool, None, ("q", 5, "extra"), {}) == {"args": ["q", 5, "extra"]}
    assert _bind_inputs(tool, None, ("q",), {}) == {"query": "q"}


def test_delivered_traces_do_not_keep_the_adapters_of_their_calls_alive(fresh_store_uri):
    """DSPy makes a new ChatAdapter for each call: naming its format/parse arguments must not keep it."""
    def adapters() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) is dspy.ChatAdapter)

    tk.enable(plugins=[], tracking_uri=fresh_store_uri, experiment="materialize")
    dspy.configure(lm=dummy_lm(60))
    program = Pipeline()
    before = adapters()  # other tests of the session may hold some of their own
    for i in range(40):
        program(message=f"request {i}")
    assert tk.flush(60)
    assert tk.counters()["core.traces_exported"] == 40
    alive = adapters() - before
    assert alive <= 2, f"{alive} more ChatAdapter objects alive after 40 delivered traces"
