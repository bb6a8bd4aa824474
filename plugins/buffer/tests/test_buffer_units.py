"""Config validation and the spool's framing — no store needed."""

from __future__ import annotations

import fcntl
import os

import pytest
from dspy_tracekit_buffer import BufferConfig, parse_config
from dspy_tracekit_buffer._spool import Spool, SpoolError, decode_records, encode_record


def test_config_defaults_when_table_is_empty():
    cfg = parse_config({}, environ={})
    assert cfg == BufferConfig()
    assert cfg.overflow == "spill"


@pytest.mark.parametrize(("table", "needle"), [
    ({"max_traces": 0}, "buffer.max_traces must be an integer >= 1, got 0"),
    ({"overflow": "explode"}, "buffer.overflow must be one of spill, block, drop_oldest, drop_newest"),
    ({"flush_interval": -1}, "buffer.flush_interval must be a finite number >= 0 (seconds), got -1"),
    ({"flush_interval": float("nan")}, "buffer.flush_interval must be a finite number >= 0 (seconds), got nan"),
    ({"flush_interval": float("inf")}, "buffer.flush_interval must be a finite number >= 0 (seconds), got inf"),
    ({"exit_timeout": float("inf")}, "buffer.exit_timeout must be a finite number >= 0 (seconds), got inf"),
    ({"flush_interval": "0.25"}, "buffer.flush_interval must be a finite number >= 0 (seconds), got '0.25'"),
    ({"batch_size": "many"}, "buffer.batch_size must be an integer >= 1, got 'many'"),
    ({"spool_required": "perhaps"}, "buffer.spool_required must be true or false"),
    ({"max_trace": 5}, "unknown key buffer.max_trace"),
])
def test_config_error_names_the_key(table, needle):
    with pytest.raises(ValueError, match=None) as info:
        parse_config(table, environ={})
    assert needle in str(info.value)


def test_config_reads_typed_values_from_environment_variables(monkeypatch, tmp_path):
    from dspy_tracekit.config import resolve

    monkeypatch.chdir(tmp_path)
    for key, raw in (("MAX_TRACES", "500"), ("FLUSH_INTERVAL", "0.25"), ("SPOOL_REQUIRED", "yes")):
        monkeypatch.setenv(f"DSPY_TRACEKIT_BUFFER_{key}", raw)
    table = resolve(installed=("buffer",), tracking_uri="sqlite:///unused.db").tables["buffer"]
    cfg = parse_config(table, environ={})
    assert (cfg.max_traces, cfg.flush_interval, cfg.spool_required) == (500, 0.25, True)


def test_mlflow_trace_buffer_size_sizes_the_queue_when_max_traces_is_absent():
    assert parse_config({}, environ={"MLFLOW_TRACE_BUFFER_SIZE": "123"}).max_traces == 123
    assert parse_config({"max_traces": 7}, environ={"MLFLOW_TRACE_BUFFER_SIZE": "123"}).max_traces == 7
    with pytest.raises(ValueError, match="MLFLOW_TRACE_BUFFER_SIZE must be a positive integer"):
        parse_config({}, environ={"MLFLOW_TRACE_BUFFER_SIZE": "-3"})


def test_record_framing_round_trips_unicode_and_newlines():
    rec = {"trace_id": 2**127 + 5, "text": "line1\nline2 ü 漢"}
    data = encode_record(rec) + encode_record({"n": 2})
    assert [r for _, r in decode_records(data)] == [rec, {"n": 2}]


def test_torn_record_is_detected_and_the_next_one_still_read():
    good = encode_record({"n": 1})
    torn = encode_record({"n": 2, "pad": "x" * 100})[:-40] + b"\n"  # cut mid-payload, as by a crash
    flipped = bytearray(encode_record({"n": 3}))
    flipped[-3] ^= 0x01  # same length, wrong checksum
    data = good + torn + bytes(flipped) + encode_record({"n": 4}) + b"0000"  # and a torn tail
    assert [r for _, r in decode_records(data)] == [{"n": 1}, None, None, {"n": 4}, None]


def test_spool_replays_in_write_order_and_deletes_finished_files(tmp_path):
    spool = Spool(str(tmp_path), max_bytes=10**7, rotate_bytes=200)
    for i in range(6):
        spool.append([{"n": i}])
    assert spool.pending == 6
    seen = []
    while (chunk := spool.next_chunk(4)) is not None:
        token, records, torn = chunk
        assert torn == 0
        seen.extend(r["n"] for r in records)
        spool.commit(token)
    assert seen == list(range(6))
    assert (spool.pending, spool.bytes_on_disk) == (0, 0)
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tks")] == []


def test_spool_size_cap_refuses_new_records(tmp_path):
    spool = Spool(str(tmp_path), max_bytes=100)
    spool.append([{"n": 1}])
    with pytest.raises(SpoolError, match="size cap"):
        spool.append([{"pad": "x" * 200}])
    assert spool.pending == 1


def test_orphan_files_are_claimed_but_a_live_writers_file_is_not(tmp_path):
    live = Spool(str(tmp_path), max_bytes=10**7)
    live.append([{"n": "live"}])  # holds the flock of its file
    dead = tmp_path / "spool-00000000000000000001-999999-000001.tks"
    dead.write_bytes(encode_record({"n": "dead"}) + b"00000020 deadbeef {\"torn")
    other = Spool(str(tmp_path), max_bytes=10**7)
    assert other.claim_orphans() == 2  # one good record, one torn
    token, records, torn = other.next_chunk(10)
    assert (records, torn) == ([{"n": "dead"}], 1)
    other.commit(token)
    assert not dead.exists()
    assert other.next_chunk(10) is None  # the live file stays its writer's
    fd = os.open(live._path, os.O_RDONLY)
    with pytest.raises(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


def test_replay_streams_files_in_blocks_smaller_than_a_record(tmp_path, monkeypatch):
    from dspy_tracekit_buffer import _spool

    monkeypatch.setattr(_spool, "_BLOCK", 64)
    dead = tmp_path / "spool-00000000000000000001-999999-000001.tks"
    records = [{"n": i, "pad": "x" * (i * 37)} for i in range(9)]
    dead.write_bytes(b"".join(encode_record(r) for r in records) + b"00000020 deadbeef {\"torn")
    spool = Spool(str(tmp_path), max_bytes=10**7)
    assert spool.claim_orphans() == 10
    seen, torn_total = [], 0
    while (chunk := spool.next_chunk(4)) is not None:
        token, got, torn = chunk
        seen.extend(got)
        torn_total += torn
        spool.commit(token)
    assert seen == records and torn_total == 1
    assert spool.pending == 0 and not dead.exists()


def test_enable_leaves_claiming_orphans_to_the_worker_thread(tmp_path, monkeypatch):
    import threading

    from dspy_tracekit_buffer import TraceBuffer, parse_config

    dead = tmp_path / "spool-00000000000000000001-999999-000001.tks"
    dead.write_bytes(encode_record({"trace_id": 1, "spans": []}))
    threads = []
    original = Spool.claim_orphans

    def claim(self):
        threads.append(threading.current_thread().name)
        return original(self)

    monkeypatch.setattr(Spool, "claim_orphans", claim)
    buf = TraceBuffer(parse_config({"spool_dir": str(tmp_path)}), tracking_uri="sqlite:///unused.db")
    buf.open_spool()
    assert buf.pending() >= 1  # flush() waits for what the spool may hold before it is counted
    buf._worker.join(0.01)
    for _ in range(200):
        if threads:
            break
        threading.Event().wait(0.01)
    buf.shutdown(1.0)
    assert threads == ["dspy-tracekit-buffer"]


def _big_trace(prompt: str, spans: int = 6):
    from dspy_tracekit.records import SpanRecord, TraceRecord

    trace = TraceRecord()
    for i in range(spans):
        span = SpanRecord(trace, None if i == 0 else trace.spans[0].span_id, f"s{i}", "module", start_ns=i)
        span.inputs = {"message": prompt}  # the same prompt object in every span, as DSPy passes it down
        span.outputs = {"answer": f"answer {i}"}
        span.materialized = True
        trace.spans.append(span)
    trace.root = trace.spans[0]
    return trace


def test_trace_bytes_counts_a_prompt_shared_by_spans_once():
    from dspy_tracekit_buffer._sizing import trace_bytes

    prompt = "x" * 100_000
    size = trace_bytes(_big_trace(prompt))
    assert 100_000 < size < 2 * 100_000  # one copy of the prompt, plus a little per span


def test_span_bytes_rise_at_once_and_fall_slowly():
    from dspy_tracekit_buffer._sizing import SpanBytes

    learned = SpanBytes(2048)
    learned.learn(_big_trace("x" * 60_000))
    big = learned.value
    assert big > 10_000
    learned.learn(_big_trace("small"))
    assert 2048 < learned.value < big
