"""Delivered traces are freed by reference counting (``delivery.release``), not left to the cyclic GC —
and a trace or span that anything still holds after delivery is left exactly as it was."""

from __future__ import annotations

import gc
import weakref

from buffer_testkit import make_program, run_requests, store_trace_ids

import dspy_tracekit as tk
from dspy_tracekit import delivery, hookimpl
from dspy_tracekit.records import SpanRecord, TraceRecord


def _enable(store, spool_dir, *extra):
    uri, exp = store
    tk.enable(plugins=["buffer", *extra], tracking_uri=uri, experiment=exp,
              config={"buffer": {"spool_dir": spool_dir, "flush_interval": 0.05}})


def _span_records() -> set[int]:
    return {id(o) for o in gc.get_objects() if type(o) is SpanRecord}


def test_delivered_traces_are_freed_without_the_cyclic_gc(store, spool_dir):
    _enable(store, spool_dir)
    program, lm = make_program()
    run_requests(program, lm, 5, prefix="warm")
    assert tk.flush(60)
    gc.collect()
    before = _span_records()
    gc.disable()  # whatever is left now stays in the GC's lists: only reference counting frees anything
    try:
        run_requests(program, lm, 20)
        assert tk.flush(60)
        left = _span_records() - before
    finally:
        gc.enable()
    assert len(store_trace_ids(*store)) == 25
    # on b727b37 every delivered span stayed until a collection: 120 (20 traces × 6 spans)
    assert len(left) <= 6, f"{len(left)} spans of delivered traces wait for the cyclic GC"


class Keeper:
    """A plugin that keeps, after delivery, one whole trace and one span of another trace."""

    def __init__(self):
        self.trace: TraceRecord | None = None
        self.span: SpanRecord | None = None

    @hookimpl
    def tracekit_traces_exported(self, traces):
        if self.trace is None:
            self.trace = traces[0]
        if self.span is None and len(traces) > 1:
            self.span = traces[1].spans[-1]


def test_a_trace_or_span_a_plugin_keeps_after_delivery_is_left_whole(store, spool_dir):
    keeper = Keeper()
    _enable(store, spool_dir, keeper)
    program, lm = make_program()
    run_requests(program, lm, 10)
    assert tk.flush(60)
    assert keeper.trace is not None and keeper.span is not None
    assert all(s.trace is keeper.trace for s in keeper.trace.spans)
    other = keeper.span.trace
    assert other is not None and other is not keeper.trace
    assert keeper.span in other.spans and all(s.trace is other for s in other.spans)
    assert other.root.name == keeper.trace.root.name


def test_a_span_handle_kept_by_the_program_still_reaches_its_trace(store, spool_dir):
    _enable(store, spool_dir)
    with tk.span("kept_by_the_user") as handle:
        handle.set_outputs({"rows": 2})
    assert tk.flush(60)
    trace = handle.record.trace
    assert trace is not None and trace.root is handle.record and trace.spans == [handle.record]


def _traces(n: int) -> list[TraceRecord]:
    out = []
    for _ in range(n):
        trace = TraceRecord()
        root = SpanRecord(trace, None, "root", "module")
        trace.root = root
        trace.spans.extend([root, SpanRecord(trace, root.span_id, "child", "lm")])
        out.append(trace)
    return out


def test_release_cuts_only_what_nothing_else_holds():
    traces = _traces(4)
    held_trace = traces[1]
    held_span = traces[2].spans[1]
    watched = weakref.ref(traces[3])
    assert delivery.release(traces) == 1
    assert all(s.trace is None for s in traces[0].spans)
    assert all(s.trace is held_trace for s in held_trace.spans)
    assert all(s.trace is traces[2] for s in traces[2].spans) and held_span.trace is traces[2]
    assert watched() is traces[3] and all(s.trace is traces[3] for s in traces[3].spans)


def test_release_frees_a_trace_when_its_list_goes():
    traces = _traces(1)
    trace_id = traces[0].trace_id
    gc.disable()
    try:
        delivery.release(traces)
        spans = [id(s) for s in traces[0].spans]
        del traces
        alive = {id(o) for o in gc.get_objects() if type(o) is SpanRecord and o.trace is None}
    finally:
        gc.enable()
    assert not alive & set(spans), f"trace {trace_id:x} was not freed by reference counting"


def test_release_of_what_is_not_a_trace_does_nothing():
    assert delivery.release([object(), None, "x"]) == 0
    assert delivery.release([]) == 0
