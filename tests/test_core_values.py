"""What is stored is what the call saw (#11 §3): odd values become markers, never cost the trace."""

from __future__ import annotations

import itertools
import os

import dspy
import numpy as np

import dspy_tracekit as tk
from dspy_tracekit.records import jsonable


class BadRepr:
    def __repr__(self):
        raise RuntimeError("no repr")

    __str__ = __repr__


class Echo(dspy.Module):
    """A DSPy program that takes any value and returns it in its prediction."""

    def forward(self, payload):
        return dspy.Prediction(echo=payload)


def odd_values() -> dict:
    selfref: dict = {"a": 1}
    selfref["me"] = selfref
    selflist: list = [1]
    selflist.append(selflist)
    wide: dict = {}
    wide.update(a=wide, b=wide, c=[wide, wide])  # walked naively, 4**20 nodes
    deep: list = []
    cur = deep
    for _ in range(100):
        nxt: list = []
        cur.append(nxt)
        cur = nxt
    return {
        "selfref_dict": selfref, "selfref_list": selflist, "wide_selfref": wide, "bad_repr": BadRepr(),
        "generator": (i for i in range(3)), "nul": "a\x00b", "numpy": np.arange(6).reshape(2, 3),
        "numpy_big": np.zeros((50, 100), dtype=np.float32), "np_float": np.float32(1.5), "np_int": np.int64(3),
        "big": "x" * 5_000_000, "bytes": b"\x00\xff", "set": {1, 2}, "complex": 1 + 2j, "inf": float("inf"),
        "nan": float("nan"), "surrogate": "\udc80", "odd_keys": {(1, 2): "tuple key", None: 1},
        "bad_key": {BadRepr(): 1}, "deep": deep, "count": itertools.count(), "module": os,
        "bad_repr_in_list": [BadRepr()],
    }


def test_odd_values_become_markers_and_every_trace_is_kept(traced):
    values = odd_values()
    program = Echo()
    for name, value in values.items():
        with tk.context(case=name):
            program(payload=value)
    traces = traced.traces()
    counters = tk.counters()
    assert counters.get("core.traces_dropped.materialize_error", 0) == 0
    assert counters.get("core.traces_dropped.export_error", 0) == 0
    assert len(traces) == len(values) == 23
    stored = {t.info.tags["case"]: t.data.spans[0] for t in traces}

    assert stored["selfref_dict"].inputs == {"payload": {"a": 1, "me": "<unserializable dict: refers to itself>"}}
    assert stored["selfref_list"].inputs == {"payload": [1, "<unserializable list: refers to itself>"]}
    for case in ("selfref_dict", "selfref_list", "wide_selfref"):  # cut where it refers back, wherever that is
        assert "refers to itself>" in str(stored[case].inputs) and "refers to itself>" in str(stored[case].outputs)
    assert stored["bad_repr"].inputs == {"payload": "<unserializable BadRepr: str() raised RuntimeError>"}
    assert stored["bad_key"].inputs == {"payload": {"<unserializable BadRepr: str() raised RuntimeError>": 1}}
    assert stored["generator"].inputs == {"payload": "<unserializable generator: not consumed>"}
    assert stored["numpy"].inputs == {"payload": [[0, 1, 2], [3, 4, 5]]}
    assert stored["numpy_big"].inputs == {"payload": "<unserializable ndarray: float32 array of shape (50, 100), "
                                                     "more than 1000 elements>"}
    assert stored["np_float"].inputs == {"payload": 1.5} and stored["np_int"].inputs == {"payload": 3}
    assert stored["surrogate"].inputs == {"payload": "\\udc80"}
    assert stored["nul"].inputs == {"payload": "a\x00b"}
    assert stored["inf"].inputs == {"payload": None} and stored["nan"].inputs == {"payload": None}
    assert stored["deep"].inputs["payload"][0][0][0] == [[[[[[[[[[[[[[[[[
        "<unserializable list: nested deeper than 20 levels>"]]]]]]]]]]]]]]]]]
    assert stored["big"].inputs["payload"].endswith("…<truncated 4000000 chars>")

    assert counters["core.values_marked.cycle"] >= 6  # in the inputs and outputs of each of the three
    assert counters["core.values_marked.unprintable"] == 3 * 2
    assert counters["core.values_marked.not_consumed"] == 2
    assert counters["core.values_marked.large_array"] == 2
    assert counters["core.values_marked.surrogates"] == 2
    assert counters["core.values_marked.non_finite"] == 4
    assert counters["core.values_marked"] == sum(v for k, v in counters.items()
                                                 if k.startswith("core.values_marked."))


def test_jsonable_never_raises_on_an_object_whose_attribute_lookup_fails():
    class Hostile:
        def __getattr__(self, name):
            raise RuntimeError(f"no {name}")

        def __str__(self):
            raise ValueError("no str either")

    marks: dict = {}
    assert jsonable({"x": Hostile()}, marks) == {"x": "<unserializable Hostile: str() raised ValueError>"}
    assert marks == {"unprintable": 1}


def test_stored_inputs_and_outputs_are_what_the_call_saw_not_later_changes(traced):
    program = Echo()
    context = {"customer": "c-1"}
    items = ["first"]
    with tk.span("request"):
        prediction = program(payload=context)
        context["added_later"] = "by the caller, after the call returned"
        prediction.echo = "replaced later"
        prediction["note"] = "a field added later"
        tk_items = program(items)
        items.append("appended later")
        with tk.span("custom") as s:
            query = {"q": "what the span saw"}
            s.set_inputs(query)
        query["q"] = "changed after"
    spans = {(s.name, str(s.inputs)): s for s in traced.one().data.spans}
    echo_dict = next(s for s in spans.values() if s.name == "Echo.forward" and "customer" in str(s.inputs))
    assert echo_dict.inputs == {"payload": {"customer": "c-1"}}
    assert echo_dict.outputs == {"echo": {"customer": "c-1"}}
    echo_list = next(s for s in spans.values() if s.name == "Echo.forward" and "first" in str(s.inputs))
    assert echo_list.inputs == {"args": [["first"]]} and echo_list.outputs == {"echo": ["first"]}
    custom = next(s for s in spans.values() if s.name == "custom")
    assert custom.inputs == {"q": "what the span saw"}
    assert tk_items.echo == ["first", "appended later"]  # the caller's own objects are untouched


def test_delivery_never_walks_a_dict_the_caller_is_changing(traced):
    shared: dict = {}

    class Caller:
        """Stands in for the caller's thread: changes the caller's dict while delivery walks it."""

        def __str__(self):
            shared[f"added {len(shared)}"] = "while the trace was being delivered"
            return "caller"

    shared.update(first=Caller(), second="two")
    Echo()(payload=shared)
    stored = traced.one().data.spans[0]
    assert tk.counters().get("core.traces_dropped.materialize_error", 0) == 0
    assert stored.inputs == {"payload": {"first": "caller", "second": "two"}}


def test_a_history_that_grows_after_the_call_is_stored_as_the_call_saw_it(traced):
    class Chat(dspy.Signature):
        """Answer the question."""

        question: str = dspy.InputField()
        history: dspy.History = dspy.InputField()
        answer: str = dspy.OutputField()

    dspy.configure(lm=dspy.utils.DummyLM([{"answer": "Paris"}, {"answer": "Yes"}]))
    predict = dspy.Predict(Chat)
    history = dspy.History(messages=[])
    with tk.span("conversation"):  # as DSPy's docs keep a conversation: append each turn to the history
        for question in ("What is the capital of France?", "Are you sure?"):
            outputs = predict(question=question, history=history)
            history.messages.append({"question": question, **outputs})
    spans = [s for s in traced.one().data.spans if s.name == "Predict.forward"]
    assert [len(s.inputs["history"]["messages"]) for s in spans] == [0, 1]
    assert spans[1].inputs["history"]["messages"][0] == {"question": "What is the capital of France?",
                                                          "answer": "Paris"}
