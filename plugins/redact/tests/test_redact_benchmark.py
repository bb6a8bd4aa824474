"""Throughput of redaction on prompt-like text, on one core, against baselines in the same process.

Run: ``uv run pytest plugins/redact/tests/test_redact_benchmark.py -m benchmark -s -q``
"""

from __future__ import annotations

import json
import os
import time

import pytest
from dspy_tracekit_redact import Redactor

pytestmark = pytest.mark.benchmark

SYSTEM = (
    "Your input fields are:\n1. `message` (str): the customer's message\n2. `history` (str)\n"
    "Your output fields are:\n1. `reasoning` (str)\n2. `intent` (str)\n3. `reply` (str)\n"
    "All interactions will be structured in the following way, with the appropriate values filled in.\n\n"
    "[[ ## message ## ]]\n{message}\n\n[[ ## history ## ]]\n{history}\n\n[[ ## reasoning ## ]]\n{reasoning}\n\n"
    "[[ ## intent ## ]]\n{intent}\n\n[[ ## reply ## ]]\n{reply}\n\n[[ ## completed ## ]]\n"
    "In adhering to this structure, your objective is: Classify a support message and draft a reply.\n"
)


def _prompts(corpus, n_bytes: int, with_pii: bool) -> list[str]:
    """ChatAdapter-shaped prompts (system text + a few-shot demo + a chat history of corpus sentences)."""
    sentences = [s.text for s in corpus if bool(s.spans) == with_pii or not with_pii and not s.spans]
    clean = [s.text for s in corpus if not s.spans]
    out, size, i = [], 0, 0
    while size < n_bytes:
        history = " ".join(clean[(i * 7 + k) % len(clean)] for k in range(12))
        message = " ".join(sentences[(i * 3 + k) % len(sentences)] for k in range(2))
        prompt = (SYSTEM + "\n[[ ## message ## ]]\n" + message + "\n\n[[ ## history ## ]]\n" + history
                  + "\n\nRespond with the corresponding output fields, starting with the field `[[ ## reasoning ## ]]`.")
        out.append(prompt)
        size += len(prompt.encode())
        i += 1
    return out


def _mb_per_s(fn, prompts, repeat: int = 3) -> float:
    size = sum(len(p.encode()) for p in prompts)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in prompts:
            fn(p)
        best = min(best, time.perf_counter() - t0)
    return size / best / 1e6


def _trace_like(r: Redactor, prompt: str, cache: dict | None) -> None:
    r.redact({"message": prompt}, {}, cache)
    r.redact({"messages": [{"role": "user", "content": prompt}]}, {}, cache)


def test_redaction_throughput_on_prompt_text(corpus):
    r = Redactor()
    r.redact_text("warm-up 4111 1111 1111 1111 a@b.co")
    pii = _prompts(corpus, 2_000_000, with_pii=True)
    clean = _prompts(corpus, 2_000_000, with_pii=False)
    avg = sum(len(p) for p in pii) / len(pii)
    per_prompt_pii = sum(len(r.find(p)) for p in pii) / len(pii)

    rows = {
        "json.dumps (baseline: what export does anyway)": _mb_per_s(json.dumps, pii),
        "redact_text, prompts with PII": _mb_per_s(r.redact_text, pii),
        "redact_text, clean prompts": _mb_per_s(r.redact_text, clean),
        "redact (dict of messages), prompts with PII": _mb_per_s(
            lambda p: r.redact({"messages": [{"role": "user", "content": p}]}), pii),
        # a trace: the module span's input and the LM span's messages hold the same prompt
        "trace-like (input + LM messages), no cache": _mb_per_s(lambda p: _trace_like(r, p, None), pii) * 2,
        "trace-like (input + LM messages), per-trace cache": _mb_per_s(lambda p: _trace_like(r, p, {}), pii) * 2,
    }
    print(f"\nredact throughput, one core; {len(pii)} prompts of ~{avg:.0f} chars, "
          f"{per_prompt_pii:.1f} values found per PII prompt")
    base = rows["json.dumps (baseline: what export does anyway)"]
    for name, mbs in rows.items():
        print(f"  {name:<52} {mbs:8.1f} MB/s   {base / mbs:6.1f}x the json.dumps time")
    assert per_prompt_pii >= 1.0  # the PII prompts do carry values to redact
    assert all(v > 0 for v in rows.values())


#: the redactor before the fast paths (candidate starts, ASCII variants, pre-filter, per-trace cache)
BEFORE_FAST_PATHS = "47138fba673ce908f93c1ba7dc737a7840871c0f"


def _redactor_at(rev: str, into) -> type:
    """``Redactor`` as it was at git revision ``rev``, imported under another package name."""
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "dspy_tracekit_redact"
    pkg = into / f"redact_{rev[:7]}"
    pkg.mkdir()
    names = subprocess.run(["git", "ls-tree", "--name-only", rev, "."], cwd=src, check=True, capture_output=True,
                           text=True).stdout.split()
    for name in (n for n in names if n.endswith(".py")):  # the package's modules at ``rev``
        text = subprocess.run(["git", "show", f"{rev}:./{name}"], cwd=src, check=True, capture_output=True,
                              text=True).stdout
        (pkg / name).write_text(text)
    spec = importlib.util.spec_from_file_location(pkg.name, pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[pkg.name] = module
    spec.loader.exec_module(module)
    return module.Redactor


def test_redaction_throughput_before_and_after_the_fast_paths(corpus, tmp_path):
    """The same prompts through the redactor before the fast paths and now, rounds interleaved."""
    try:
        before = _redactor_at(BEFORE_FAST_PATHS, tmp_path)()
    except Exception as exc:  # noqa: BLE001 - no git or a shallow clone: nothing to compare with
        pytest.skip(f"cannot load the redactor at {BEFORE_FAST_PATHS[:7]}: {exc}")
    from dspy_tracekit_redact import BUILTIN_ENTITIES

    after = Redactor()
    same_kinds = Redactor({"entities": [e for e in BUILTIN_ENTITIES if e != "GENERIC_SECRET"]})  # new in v2
    pii = _prompts(corpus, 1_000_000, with_pii=True)
    clean = _prompts(corpus, 1_000_000, with_pii=False)
    for p in pii[:200] + clean[:200]:
        assert same_kinds.find(p) == before.find(p)  # same findings, or the comparison means nothing
    rows = [
        ("redact_text, prompts with PII", lambda r: (lambda p: r.redact_text(p)), pii, 1),
        ("redact_text, clean prompts", lambda r: (lambda p: r.redact_text(p)), clean, 1),
        ("trace-like (input + LM messages)", lambda r: (
            (lambda p: _trace_like(r, p, {})) if r is after else (lambda p: (
                r.redact({"message": p}, {}), r.redact({"messages": [{"role": "user", "content": p}]}, {})))),
         pii, 2),
    ]
    print(f"\nredact throughput before ({BEFORE_FAST_PATHS[:7]}) and after the fast paths, one core, "
          "best of 5 interleaved rounds")
    ratios = []
    for name, make, prompts, factor in rows:
        b = a = 0.0
        for _ in range(5):
            b = max(b, _mb_per_s(make(before), prompts, repeat=1) * factor)
            a = max(a, _mb_per_s(make(after), prompts, repeat=1) * factor)
        ratios.append(a / b)
        print(f"  {name:<36} before {b:6.1f} MB/s   after {a:6.1f} MB/s   x{a / b:.2f}")
    assert all(r > 0 for r in ratios)


#: main before Redaction v2 (issue #13): no GENERIC_SECRET, no pseudonyms, no prefilter
BEFORE_V2 = "96042eb6591608bfe8a7435245462b434db4c3ac"


def _prose_prompts(n_bytes: int, seed: int = 5) -> list[str]:
    """ChatAdapter-shaped prompts whose message and history are Faker prose: clean text nobody here wrote."""
    from faker import Faker

    fake = Faker()
    fake.seed_instance(seed)
    out, size = [], 0
    while size < n_bytes:
        history = " ".join(fake.paragraph(nb_sentences=5) for _ in range(5))
        prompt = (SYSTEM + "\n[[ ## message ## ]]\n" + fake.paragraph(nb_sentences=3) + "\n\n[[ ## history ## ]]\n"
                  + history + "\n\nRespond with the corresponding output fields, starting with the field "
                  "`[[ ## reasoning ## ]]`.")
        out.append(prompt)
        size += len(prompt.encode())
    return out


def _dense_prompts(corpus, n_bytes: int) -> list[str]:
    """Prompts whose message and history are sentences that each hold a value (~15 values per prompt)."""
    pii = [s.text for s in corpus if s.spans]
    out, size, i = [], 0, 0
    while size < n_bytes:
        message = " ".join(pii[(i * 15 + k) % len(pii)] for k in range(3))
        history = " ".join(pii[(i * 15 + 3 + k) % len(pii)] for k in range(12))
        prompt = SYSTEM + "\n[[ ## message ## ]]\n" + message + "\n\n[[ ## history ## ]]\n" + history
        out.append(prompt)
        size += len(prompt.encode())
        i += 1
    return out


def test_redaction_v2_side_by_side(corpus, regression_set, tmp_path):
    """Redaction v2 against main before it, in one run: identical findings on the regression set, then
    redact_text throughput on four kinds of text, best of 5 interleaved rounds.

    Run: ``uv run pytest plugins/redact/tests/test_redact_benchmark.py -m benchmark -s -q -k v2``
    """
    from dspy_tracekit_redact import BUILTIN_ENTITIES

    try:
        before = _redactor_at(BEFORE_V2, tmp_path)()
    except Exception as exc:  # noqa: BLE001 - no git or a shallow clone: nothing to compare with
        pytest.skip(f"cannot load the redactor at {BEFORE_V2[:7]}: {exc}")
    v2 = Redactor()
    v2_slow = Redactor({"prefilter": False})
    v2_old_kinds = Redactor({"entities": [e for e in BUILTIN_ENTITIES if e != "GENERIC_SECRET"]})
    t0 = time.perf_counter()
    same_as_before = sum(before.find(t) == v2_old_kinds.find(t) for t in regression_set)
    same_with_prefilter = sum(v2.find(t) == v2_slow.find(t) for t in regression_set)
    generic = sum(1 for t in regression_set for f in v2.find(t) if f.entity == "GENERIC_SECRET")
    print(f"\nregression set: {len(regression_set)} texts ({time.perf_counter() - t0:.0f} s)")
    print(f"  main ({BEFORE_V2[:7]}) vs v2 without GENERIC_SECRET: identical findings on {same_as_before}")
    print(f"  v2 with vs without the Hyperscan prefilter:   identical findings on {same_with_prefilter}")
    print(f"  GENERIC_SECRET findings v2 adds: {generic}")
    assert same_as_before == same_with_prefilter == len(regression_set)

    sets = [
        ("clean prose prompts (Faker)", _prose_prompts(1_000_000)),
        ("clean prompts, hard negatives", _prompts(corpus, 1_000_000, with_pii=False)),
        ("prompts with PII (~2 per prompt)", _prompts(corpus, 1_000_000, with_pii=True)),
        ("PII-dense prompts (~15 per prompt)", _dense_prompts(corpus, 1_000_000)),
    ]
    engines = [("main", before), ("v2 no prefilter", v2_slow), ("v2", v2)]
    print("redact_text MB/s, one core, best of 5 interleaved rounds")
    print(f"  {'text':<36}" + "".join(f"{name:>17}" for name, _ in engines) + "   v2/main")
    for label, prompts in sets:
        best = dict.fromkeys((n for n, _ in engines), 0.0)
        for _ in range(5):
            for name, r in engines:
                best[name] = max(best[name], _mb_per_s(r.redact_text, prompts, repeat=1))
        print(f"  {label:<36}" + "".join(f"{best[n]:17.1f}" for n, _ in engines) + f"   x{best['v2'] / best['main']:.1f}")
        assert all(v > 0 for v in best.values())


#: Redaction v2 before the throughput work of its second session (digit runs from Hyperscan, cheaper
#: validators): the speed figures of issue #13 are measured against it
BEFORE_RUNS = "fd411b9"


def test_redaction_v2_throughput_work_side_by_side(corpus, regression_set, tmp_path):
    """The redactor before the throughput work and now, in one run: identical findings on the regression
    set, then redact_text MB/s (thread CPU time, best of 5 interleaved rounds) on four kinds of text.

    Run: ``uv run pytest plugins/redact/tests/test_redact_benchmark.py -m benchmark -s -q -k throughput_work``
    """
    try:
        before = _redactor_at(BEFORE_RUNS, tmp_path)()
    except Exception as exc:  # noqa: BLE001 - no git or a shallow clone: nothing to compare with
        pytest.skip(f"cannot load the redactor at {BEFORE_RUNS}: {exc}")
    now = Redactor()
    same = sum(before.find(t) == now.find(t) for t in regression_set)
    print(f"\nregression set: {len(regression_set)} texts; {BEFORE_RUNS} vs now: identical findings on {same}")
    assert same == len(regression_set)

    def mb_per_s(r, prompts):
        size = sum(len(p.encode()) for p in prompts)
        t0 = time.thread_time()
        for p in prompts:
            r.redact_text(p)
        return size / (time.thread_time() - t0) / 1e6

    sets = [
        ("clean prose prompts (Faker)", _prose_prompts(1_000_000)),
        ("clean prompts, hard negatives", _prompts(corpus, 1_000_000, with_pii=False)),
        ("prompts with PII (~2 per prompt)", _prompts(corpus, 1_000_000, with_pii=True)),
        ("PII-dense prompts (~15 per prompt)", _dense_prompts(corpus, 1_000_000)),
    ]
    print(f"redact_text MB/s, thread CPU time, best of 5 interleaved rounds\n  {'text':<36}{BEFORE_RUNS:>10}{'now':>10}")
    for label, prompts in sets:
        b = a = 0.0
        for _ in range(5):
            b = max(b, mb_per_s(before, prompts))
            a = max(a, mb_per_s(now, prompts))
        print(f"  {label:<36}{b:10.1f}{a:10.1f}   x{a / b:.2f}")
        assert a > 0 and b > 0


#: main at the start of the engine-speed work (issue #13 §4): the before of its figures (798b8c9 in its first
#: session, b727b37 in its second; ``TK_BASELINE_REF`` picks another)
BEFORE_ENGINE = os.environ.get("TK_BASELINE_REF", "b727b37")


class _Timed:
    """A detector whose ``find`` adds its thread CPU time to ``acc[entity]``."""

    def __init__(self, det, acc: dict[str, int]):
        self._det, self._acc = det, acc
        self.entity, self.gate, self.priority = det.entity, det.gate, det.priority  # what ``find`` reads

    def __getattr__(self, name):
        return getattr(self._det, name)

    def find(self, text, ctx=None):
        tt = time.thread_time_ns
        t0 = tt()
        out = list(self._det.find(text, ctx))
        self._acc[self._det.entity] = self._acc.get(self._det.entity, 0) + tt() - t0
        return out


#: the step of ``_per_detector_us`` that holds the detectors a Redactor runs in one loop at the pass's positions
AT_POSITIONS = "keys at the pass's positions (8 prefixed + JWT)"


def _per_detector_us(r: Redactor, prompts: list[str]) -> dict[str, float]:
    """Thread CPU µs per prompt of each step of ``r.find``: each detector's ``find`` as ``r.find`` calls it,
    and the rest (the Hyperscan pass, the text's classes, sorting the candidates) as "pass + find()".
    Works on any revision's Redactor: its detectors are wrapped for the run, ``find`` is its own.

    Since the detectors that only match at the pass's positions (the 8 prefixed-key detectors and JWT,
    ``by_position``) run in one loop (``Redactor._at_positions``) instead of one ``find`` each, that loop is
    timed as one step, ``AT_POSITIONS``; before it, the same detectors appear under their own names. (Text
    the pass does not see still calls their ``find``, which then counts under their names.)"""
    acc: dict[str, int] = {}
    detectors = r._detectors
    r._detectors = tuple(_Timed(d, acc) for d in detectors)
    tt = time.thread_time_ns
    at_positions = getattr(r, "_at_positions", None)
    if at_positions is not None:
        unwrapped: dict[int, tuple] = {}  # id(group) → its detectors unwrapped (no __getattr__ in the loop)

        def timed(text, ctx, group, add):
            inner = unwrapped.get(id(group))
            if inner is None:
                inner = unwrapped[id(group)] = tuple((k, d._det if isinstance(d, _Timed) else d) for k, d in group)
            group = inner
            t0 = tt()
            at_positions(text, ctx, group, add)
            acc[AT_POSITIONS] = acc.get(AT_POSITIONS, 0) + tt() - t0

        r._at_positions = timed
    try:
        t0 = tt()
        for text in prompts:
            r.find(text)
        total = tt() - t0
    finally:
        r._detectors = detectors
        if at_positions is not None:
            del r._at_positions
    acc = {"pass + find()": total - sum(acc.values()), **acc}
    return {k: v / len(prompts) / 1000 for k, v in sorted(acc.items(), key=lambda kv: -kv[1])}


def _columns(before: Redactor, now: Redactor, python_engine) -> list[tuple[str, Redactor]]:
    """The redactors the engine benchmarks compare: ``BEFORE_ENGINE``, now as Python (where the installed engine is
    compiled: the same sources, the ``.py`` files; the ``python_engine`` fixture), and now as installed."""
    pure = python_engine.Redactor() if python_engine is not None else None
    return [(BEFORE_ENGINE, before)] + ([("now .py", pure), ("now", now)] if pure is not None else [("now", now)])


def _same_findings(columns: list[tuple[str, Redactor]], texts: list[str]) -> None:
    """Each redactor's findings on ``texts`` are the first one's: printed, and asserted."""
    (base_name, base), *others = columns
    expected = [base.find(t) for t in texts]
    for name, r in others:
        differ = [t for t, f in zip(texts, expected) if r.find(t) != f]
        print(f"{len(texts)} texts; {base_name} vs {name}: identical findings on {len(texts) - len(differ)}")
        assert differ == []


def _mb_per_s_side_by_side(columns: list[tuple[str, Redactor]], sets: list[tuple[str, list[str]]]) -> None:
    """Print ``redact_text`` MB/s of each redactor of ``columns`` per labelled set of prompts (thread CPU time, best
    of 5 interleaved rounds), with the ratios of the last to the first (and to the one before it, when there are
    three) and the µs per prompt of the last."""

    def mb_per_s(r, prompts):
        size = sum(len(p.encode()) for p in prompts)
        t0 = time.thread_time()
        for p in prompts:
            r.redact_text(p)
        return size / (time.thread_time() - t0) / 1e6

    names = [name for name, _ in columns]
    ratios = f"   x vs {names[0]}" + (f", vs {names[1]}" if len(columns) == 3 else "")
    print("redact_text MB/s, thread CPU time, best of 5 interleaved rounds\n  "
          f"{'text':<36}" + "".join(f"{name:>10}" for name in names) + ratios)
    for label, prompts in sets:
        best = [0.0] * len(columns)
        for _ in range(5):
            for k, (_, r) in enumerate(columns):
                best[k] = max(best[k], mb_per_s(r, prompts))
        per_prompt = sum(len(p.encode()) for p in prompts) / len(prompts) / best[-1]
        versus = f"x{best[-1] / best[0]:.2f}" + (f", x{best[-1] / best[1]:.2f}" if len(columns) == 3 else "")
        print(f"  {label:<36}" + "".join(f"{b:10.1f}" for b in best) + f"   {versus}   ({per_prompt:.0f} us per prompt "
              f"{names[-1]})")
        assert all(b > 0 for b in best)


def test_redaction_engine_speed_side_by_side(corpus, regression_set, tmp_path, python_engine):
    """The redactor at the start of the engine-speed work (``BEFORE_ENGINE``) and now, in one run: identical
    findings on the regression set and the benchmark prompts, redact_text MB/s per kind of text (thread CPU
    time, best of 5 interleaved rounds), then where the time of each kind goes, per detector, before and now.

    Run: ``uv run pytest plugins/redact/tests/test_redact_benchmark.py -m benchmark -s -q -k engine_speed``
    """
    try:
        before = _redactor_at(BEFORE_ENGINE, tmp_path)()
    except Exception as exc:  # noqa: BLE001 - no git or a shallow clone: nothing to compare with
        pytest.skip(f"cannot load the redactor at {BEFORE_ENGINE}: {exc}")
    now = Redactor()
    sets = [
        ("clean prose prompts (Faker)", _prose_prompts(1_000_000)),
        ("clean prompts, hard negatives", _prompts(corpus, 1_000_000, with_pii=False)),
        ("prompts with PII (~2 per prompt)", _prompts(corpus, 1_000_000, with_pii=True)),
        ("PII-dense prompts (~15 per prompt)", _dense_prompts(corpus, 1_000_000)),
    ]
    columns = _columns(before, now, python_engine)
    print("\nregression set + benchmark prompts")
    _same_findings(columns, list(regression_set) + [p for _, prompts in sets for p in prompts])

    _mb_per_s_side_by_side(columns, sets)
    print(f"where the time goes, thread CPU us per prompt, {BEFORE_ENGINE} -> now (best of 3 interleaved; "
          "steps under 1 us in both left out)")
    for label, prompts in sets:
        runs = {"before": [], "now": []}
        for _ in range(3):
            runs["before"].append(_per_detector_us(before, prompts))
            runs["now"].append(_per_detector_us(now, prompts))
        best = {name: {k: min(run.get(k, 0.0) for run in rs) for rs in [rs] for k in {k for run in rs for k in run}}
                for name, rs in runs.items()}
        steps = sorted(best["before"].keys() | best["now"].keys(), key=lambda k: -best["before"].get(k, 0.0))
        print(f"  {label}: total {sum(best['before'].values()):.0f} -> {sum(best['now'].values()):.0f}; " + ", ".join(
            f"{k} {best['before'].get(k, 0.0):.1f} -> {best['now'].get(k, 0.0):.1f}" for k in steps
            if max(best["before"].get(k, 0.0), best["now"].get(k, 0.0)) >= 1.0))


def _faker_prompts(locale: str, n_bytes: int, seed: int = 3) -> list[str]:
    """ChatAdapter-shaped prompts of Faker text in ``locale`` (prose, an e-mail address, a phone number)."""
    from faker import Faker

    fake = Faker(locale)
    fake.seed_instance(seed)
    out, size = [], 0
    while size < n_bytes:
        prompt = (SYSTEM + "\n[[ ## message ## ]]\n" + fake.paragraph(nb_sentences=3) + " " + fake.email() + " "
                  + fake.phone_number() + "\n\n[[ ## history ## ]]\n" + " ".join(fake.paragraph(nb_sentences=5)
                                                                                for _ in range(4)))
        out.append(prompt)
        size += len(prompt.encode())
    return out


def test_redaction_engine_speed_on_non_english_prompts(tmp_path, python_engine):
    """``BEFORE_ENGINE`` and now on prompts in Russian, Japanese and German (text whose non-ASCII letters the pass
    sees): identical findings, then redact_text MB/s (thread CPU time, best of 5 interleaved rounds).

    Run: ``uv run pytest plugins/redact/tests/test_redact_benchmark.py -m benchmark -s -q -k non_english``
    """
    try:
        before = _redactor_at(BEFORE_ENGINE, tmp_path)()
    except Exception as exc:  # noqa: BLE001 - no git or a shallow clone: nothing to compare with
        pytest.skip(f"cannot load the redactor at {BEFORE_ENGINE}: {exc}")
    now = Redactor()
    sets = [(locale, _faker_prompts(locale, 300_000)) for locale in ("ru_RU", "ja_JP", "de_DE")]
    columns = _columns(before, now, python_engine)
    print()
    _same_findings(columns, [p for _, prompts in sets for p in prompts])

    _mb_per_s_side_by_side(columns, [(f"Faker {label} prompts", prompts) for label, prompts in sets])
