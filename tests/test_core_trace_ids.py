"""Trace ids: time-ordered in their high bits (the store appends instead of inserting at random pages),
random in the low 64 bits that the sampler reads."""

from __future__ import annotations

import time

from dspy_tracekit.records import TraceRecord, new_trace_id


def test_trace_ids_made_later_sort_after_earlier_ones():
    ids = []
    for _ in range(20):
        ids.append(new_trace_id())
        time.sleep(0.002)
    assert ids == sorted(ids)  # random 128-bit ids: in order with probability 1/20!
    assert all(0 < i < 2**128 for i in ids)


def test_a_trace_id_starts_with_the_time_it_was_made_in_milliseconds():
    before = time.time_ns() // 1_000_000
    trace = TraceRecord()
    after = time.time_ns() // 1_000_000
    assert before <= trace.trace_id >> 80 <= after
    assert trace.mlflow_trace_id == f"tr-{trace.trace_id:032x}" and len(trace.mlflow_trace_id) == 35


def test_the_low_64_bits_the_sampler_reads_stay_uniform():
    low = [new_trace_id() & (2**64 - 1) for _ in range(20_000)]
    assert len(set(low)) == len(low)
    for ratio in (0.01, 0.1, 0.5):  # what the sample plugin keeps: low 64 bits below ratio × 2**64
        kept = sum(u < ratio * 2**64 for u in low) / len(low)
        assert abs(kept - ratio) < 4 * (ratio * (1 - ratio) / len(low)) ** 0.5 + 1e-3, (ratio, kept)
    top_bits = {u >> 60 for u in low}  # the random part reaches the top of the 64 bits too
    assert len(top_bits) == 16
