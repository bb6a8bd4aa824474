"""How many bytes a queued trace holds, learned on the worker from a sample of prepared traces.

``take()`` (calling thread) charges a trace ``spans × bytes-per-span`` against ``max_bytes`` — a
multiplication, no serialization. The worker measures one prepared trace of every batch: the unique
strings it holds (the prompts, messages and answers that make a trace big: a prompt repeated in five
spans is one object, counted once) plus a fixed cost per span and per container, and moves the
per-span figure towards it (a rise is taken at once, a fall slowly), so the bound follows the
traces the program really makes.
"""

from __future__ import annotations

import sys

#: what a span costs before its payload: the SpanRecord, its dicts, ids, timestamps (measured ~1 KiB)
SPAN_OVERHEAD = 1024
#: per dict / list entry held by a span's values
ENTRY_OVERHEAD = 72
_getsizeof = sys.getsizeof


def trace_bytes(trace) -> int:
    """Bytes a materialized trace holds: unique strings by size, containers by entry, spans by count."""
    seen: set[int] = set()
    total = SPAN_OVERHEAD * len(trace.spans)
    stack: list = []
    for span in trace.spans:
        stack.extend((span.inputs, span.outputs, span.params, span.attributes, span.error, span.usage,
                      span.cost))
    stack.append(trace.tags)
    while stack:
        obj = stack.pop()
        if obj is None or obj is True or obj is False:
            continue
        cls = obj.__class__
        if cls is str:
            if id(obj) not in seen:
                seen.add(id(obj))
                total += _getsizeof(obj)
        elif cls is dict:
            if id(obj) not in seen:
                seen.add(id(obj))
                total += ENTRY_OVERHEAD * len(obj)
                stack.extend(obj.keys())
                stack.extend(obj.values())
        elif cls is list or cls is tuple:
            if id(obj) not in seen:
                seen.add(id(obj))
                total += 8 * len(obj) + 56
                stack.extend(obj)
        else:
            total += 32
    return total


class SpanBytes:
    """The per-span figure ``take()`` multiplies by; updated from measured traces (worker thread)."""

    __slots__ = ("samples", "value")

    def __init__(self, initial: int):
        self.value = initial
        self.samples = 0

    def learn(self, trace) -> None:
        n = len(trace.spans)
        if not n:
            return
        measured = trace_bytes(trace) / n
        # up at once (the bound must not lag behind bigger traces), down by a fifth per sample
        self.value = int(measured if measured > self.value or not self.samples
                         else self.value + (measured - self.value) * 0.2)
        self.samples += 1
