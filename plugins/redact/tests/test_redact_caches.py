"""What the structure walk remembers across traces (issue #12): used, counted, bounded, thread-safe."""

from __future__ import annotations

import random
import threading

from dspy_tracekit_redact import Redactor
from dspy_tracekit_redact import _plugin as plugin
from dspy_tracekit_redact import _redactor as redactor_module
from dspy_tracekit_redact._pseudonym import Pseudonymizer

from dspy_tracekit.records import SpanRecord, TraceRecord

SYSTEM = ("Your input fields are:\n1. `message` (str):\nYour output fields are:\n1. `intent` (str):\n"
          "Escalations go to ops-lead@example.com. In adhering to this structure, your objective is: classify.")


class CountingRedactor(Redactor):
    """Counts the scans of each text (``find`` is what every uncached string goes through)."""

    def __init__(self, config=None):
        super().__init__(config)
        self.scans: dict[str, int] = {}

    def find(self, text):
        self.scans[text] = self.scans.get(text, 0) + 1
        return super().find(text)


def _trace(message: str) -> TraceRecord:
    t = TraceRecord()
    root = SpanRecord(t, None, "Program.forward", "module")
    lm = SpanRecord(t, root.span_id, "LM.__call__", "lm")
    root.inputs = {"message": message}
    lm.inputs = {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": message}]}
    lm.outputs = [SYSTEM]
    t.root, t.spans = root, [root, lm]
    for s in t.spans:
        s.materialized = True
    return t


def test_a_prompt_repeated_across_traces_is_scanned_twice_and_counted_in_every_trace():
    r = CountingRedactor()
    saved = plugin._state.redactor
    plugin._state.redactor = r
    try:
        traces = [_trace(f"request {i}: mail jane{i}@example.org") for i in range(5)]
        for t in traces:
            plugin.tracekit_process_trace(t)
    finally:
        plugin._state.redactor = saved
    # once in the first trace, once more in the second (now seen twice: kept), never after
    assert r.scans[SYSTEM] == 2
    assert r.scans["request 4: mail jane4@example.org"] == 1  # once per trace, as before
    for i, t in enumerate(traces):
        lm = t.spans[1]
        assert lm.outputs == [SYSTEM.replace("ops-lead@example.com", "<EMAIL>")]
        assert lm.attributes["redaction.counts"] == {"EMAIL": 3}, i  # the system prompt twice, the message once
        assert t.spans[0].attributes["redaction.counts"] == {"EMAIL": 1}


def test_the_cross_trace_cache_stays_within_its_bounds_and_keeps_answering(monkeypatch):
    monkeypatch.setattr(redactor_module, "_SHARED_MAX_ENTRIES", 50)
    monkeypatch.setattr(redactor_module, "_SHARED_MAX_CHARS", 3_000)
    monkeypatch.setattr(redactor_module, "_SHARED_MAX_STRING", 400)
    r = Redactor()
    reference = Redactor()
    rng = random.Random(1)
    texts = [f"ticket {i}: call +1 415 555 {i:04d} or mail user{i}@example.com " + "x" * rng.randint(0, 120)
             for i in range(400)] + ["long " * 100 + "jane@example.com"]
    for _ in range(6):
        for text in rng.sample(texts, len(texts)):
            counts: dict[str, int] = {}
            got = r.redact({"message": text}, counts, {})  # a new per-trace cache: another trace
            want_counts: dict[str, int] = {}
            assert got == reference.redact({"message": text}, want_counts)
            assert counts == want_counts
            assert len(r._shared) <= 50
            assert r._shared_chars == sum(len(k) for k in r._shared) <= 3_000
    assert len(r._shared) > 10  # it was used
    assert all(len(k) <= 400 for k in r._shared)


def test_one_redactor_shared_by_threads_redacts_as_one_thread_does(monkeypatch):
    """Worker threads (inline delivery on the callers' threads) share the plugin's Redactor: admissions
    and evictions of the cross-trace cache race, the answers must not."""
    monkeypatch.setattr(redactor_module, "_SHARED_MAX_ENTRIES", 16)
    monkeypatch.setattr(redactor_module, "_SEEN_MAX", 64)
    monkeypatch.setattr(redactor_module, "_KEY_MEMO_MAX", 4)
    texts = [f"user {i % 40}: mail u{i % 40}@example.com, card 4111 1111 1111 1111, key sk-{i % 7:0>40}"
             for i in range(400)]
    keys = ["message", "password", "note", "api_key", "x-token", "content", "Client-Secret"]
    reference = Redactor()
    want = [reference.redact({keys[i % len(keys)]: t}, {}) for i, t in enumerate(texts)]
    r = Redactor()
    bad: list = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(4):
            for i in rng.sample(range(len(texts)), len(texts)):
                counts: dict[str, int] = {}
                if r.redact({keys[i % len(keys)]: texts[i]}, counts, {}) != want[i]:
                    bad.append(i)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []


def test_pseudonymizer_memos_give_what_it_computes_and_stay_bounded(monkeypatch):
    from dspy_tracekit_redact import _pseudonym

    monkeypatch.setattr(_pseudonym, "_MEMO_MAX", 10)
    pz = Pseudonymizer(b"k" * 32, ("user_id", "session_id", "account"))
    fresh = Pseudonymizer(b"k" * 32, ("user_id", "session_id", "account"))
    for i in range(200):
        key = ["user_id", "tracekit.context.Session-Id", "mlflow.trace.user", "note", f"k{i}", "Account"][i % 6]
        assert pz.kind(key) == fresh._kind(key)
        value = f" Jane{i % 13}@Example.com "
        kind = pz.kind(key) or "user"
        assert pz.pseudonym(kind, value) == fresh._pseudonym(kind, value.strip())
        assert len(pz._kinds) <= 10 and len(pz._pseudonyms) <= 10
    assert pz.kind(7) is None and pz.pseudonym("user", "ps_" + "ab" * 12) == "ps_" + "ab" * 12
