"""One Hyperscan pass over a text: which built-in entity types can occur in it at all.

Each entity type has *triggers*: patterns that every one of its matches must contain (its literal
prefix, its anchor word, the digit run all number detectors need). Hyperscan finds all of them in one
pass at about 1 GB/s (but a trigger of one character, EMAIL's ``@``, which ``in`` finds faster than Hyperscan's
literal matcher does); the Redactor then runs only the detectors whose trigger fired — on clean text,
none or one of ~20. The same pass reports where ``GENERIC_SECRET``'s credential words start, so that
detector does not search for them again.

Text goes through the pass when its characters mean to Python's ``re`` what their bytes mean to
Hyperscan (:func:`._detectors.pass_safe`): ASCII, or non-ASCII symbols (``€``, ``—``, emoji) and letters (``é``,
``я``, ``密``) but no Unicode digits or spaces and none of the letters that case-fold to ASCII. The
credential words of ``GENERIC_SECRET`` in text with non-ASCII letters are found by a second database over
its lower-cased form (:meth:`Prefilter.word_starts`), as some of them are not ASCII. Other text, and
every text when the ``hyperscan`` wheel is not installed, is scanned by every detector, as before. The triggers are
necessary conditions, so the findings are the same either way; ``test_redact_prefilter.py`` checks
this on the regression set.
"""

from __future__ import annotations

import re
import threading

from ._detectors import _AWS_CONTEXT_WORDS as AWS_CONTEXT_WORDS
from ._detectors import CREDENTIAL_WORDS, FOUND_NEEDLES, IBAN_LENGTHS
from ._generic import _NEEDLES as CONTEXT_NEEDLES
from ._generic import CONTEXT_WORDS

try:  # the wheel exists for CPython 3.10-3.13 on Linux, macOS and Windows; elsewhere: every detector runs
    import hyperscan
except ImportError:  # pragma: no cover - exercised by the fallback test with the import blocked
    hyperscan = None

_WS = r"[ \t\n\r\f\v]"

#: entity type → patterns (Hyperscan syntax) every match of the type contains; ``(?i)`` = caseless
TRIGGERS: dict[str, tuple[str, ...]] = {
    # what the BEARER_TOKEN regex needs after its word boundary: ``Bearer``, spaces, 16 token characters
    "BEARER_TOKEN": (f"[Bb]earer{_WS}+[A-Za-z0-9\\-._~+/]{{16}}",),
    "EMAIL": ("@",),
    # IPv6 (IPv4, phone, card and SSN: RUNS below): what its anchor wants, a hex digit, then a run of hex
    # digits and colons with seven colons or a "::" (clock times and MAC addresses switch it off)
    "IP_ADDRESS": ("[0-9A-Fa-f]:(?:[0-9A-Fa-f]*:){6}", "[0-9A-Fa-f][0-9A-Fa-f:]*::"),
}
#: triggers that switch on one detector of their type only (``Detector.gate``); the type is active too
TRIGGER_GATES = {"IP_ADDRESS": "IP_ADDRESS/v6"}
GENERIC = "GENERIC_SECRET"

_R = r"[0-9 \-./()+]"  # the characters of a phone, card, SSN or IPv4 match
_NR = r"[^0-9 \-./()+]"
_S = r"[ \-./()+]"  # a run character that is not a digit

#: a place where a phone can start (``_PHONE_CAND``'s first look-behind, without the second, which wants two
#: characters): the start of the data, or after a character that is not a word character nor one of
#: ``+-./#@:`` (a ``(`` or ``)`` opens a group too). (With the second, a space after a digit refused, the C scan
#: takes 1.1 us more per dense prompt, 3 us more on prose: more than the runs it drops save.)
_PHONE_AT = "(?:^|[^0-9A-Za-z_+\\-./#@:])"
#: the rest of a run after a group of digits that no digit follows, when the group can end the phone: a separator
#: and the rest of the run, or a character after the run that ``_PHONE_CAND``'s look-ahead lets end a candidate
#: (no word character but an ``x``, for ``x\d``, nor ``@``)
_GROUP_END = f"(?:{_S}{_R}*{_NR}|[^0-9A-Za-wyz_@ \\-./()+])"

#: what follows ``_PHONE_AT`` in the PHONE run patterns: where a phone, trimmed or not, can start (a place
#: ``_PHONE_CAND``'s look-behind allows, or after the ``(`` a candidate opens with), with what ``phone_ok`` wants
#: from there: ``+`` and 8 digits; a ``0`` and 9 more; else (trimming keeps the first groups) the first groups of one
#: of its other formats, which it takes with no others: a bare NANP or 6-9 number of 10 digits, NANP 212-555-1234
#: and 1-800-555-0199, IN 98765 43210, BR (11) 91234-5678 and (21) 2345-6789 (``_detectors._PHONE_HEADS``). Runs of
#: dates, versions, order and tracking numbers are mostly not reported (hard-negative prompts: 0.2 runs instead of
#: 2.7). In two groups, each one pattern (an alternation after one ``_PHONE_AT``): the pass reports the same run
#: ends as with one pattern per shape, and its C scan takes 2.2 us less per dense prompt, 1.7 less on hard negatives
#: and 0.2 less on prose than with the seven in one combination (all seven in one pattern, or three groups: 1-1.5 us
#: more on prose)
_PHONE_SHAPES = (
    (f"\\+(?:{_R}*[0-9]){{8}}{_R}*{_NR}", f"0(?:{_R}*[0-9]){{9}}{_R}*{_NR}"),
    (f"(?:[2-9][0-9]{{2}}[2-9][0-9]{{6}}|[6-9][0-9]{{9}}){_GROUP_END}",
     f"[2-9][0-9]{{2}}{_S}+[2-9][0-9]{{2}}{_S}+[0-9]{{4}}{_GROUP_END}",
     f"1{_S}+[2-9][0-9]{{2}}{_S}+[2-9][0-9]{{2}}{_S}+[0-9]{{4}}{_GROUP_END}",
     f"[6-9][0-9]{{4}}{_S}+[0-9]{{5}}{_GROUP_END}",
     f"[1-9]{{2}}{_S}+9?[0-9]{{4}}{_S}+[0-9]{{4}}{_GROUP_END}"),
)


def _phone_runs(groups: tuple[tuple[str, ...], ...]) -> tuple[str, ...]:
    """The PHONE run patterns of these groups of shapes: ``_PHONE_AT``, then one of a group's shapes."""
    return tuple(f"{_PHONE_AT}(?:{'|'.join(shapes)})" for shapes in groups if shapes)


#: entity type → runs of ``_R`` characters its digit-run detector can find something in (it searches only
#: those: ``_detectors.RunDetector``), with the character after the run (the data ends with a newline).
#: Hyperscan reports each run's end once; a type with no such run is inactive. (Start-of-match tracking would
#: cost ~10 us per pattern and text: the start is found from the end instead.)
RUNS: dict[str, tuple[str, ...]] = {
    # where a phone, trimmed or not, can start, with what phone_ok wants from there (``_PHONE_SHAPES``)
    "PHONE": _phone_runs(_PHONE_SHAPES),
    # a card starts with 2-6 (``card_ok``'s prefixes) after none of ``\w.-+``, and ``card_ok`` wants 13 digits
    # or more in one group, or groups of 4-6-x or 4-4-4-x (12 digits in those shapes, with no optional
    # separator before each digit: C scan 1.5 us less per prompt on hard negatives and dense prompts)
    "CREDIT_CARD": (f"(?:^|[^0-9A-Za-z_.\\-+])[2-6][0-9]{{3}}(?:[0-9]{{4}}|[ \\-][0-9]{{4}}[ \\-]|[ \\-][0-9]{{6}}[ \\-])"
                    f"[0-9]{{4}}{_R}*{_NR}",),
    # the shapes of the SSN and IPv4 regexes, which take no other character; an SSN's area is not 9xx, it starts
    # after none of ``\w-.``, and no word character, nor ``-``/``.`` and a digit, follows it; an IPv4 address starts
    # after none of ``\w.``, each of its groups is all the digits there (a group of 4 leaves the regex no match), and
    # no word character, nor ``.`` and a digit, follows it (the SSN's context, for a bare one, in the pass: C scan
    # 0.4-0.7 us more per prompt on dense and hard, 1.1 on prose, for its 0.3 runs per hard prompt)
    "US_SSN": (f"(?:^|[^0-9A-Za-z_\\-.])[0-8][0-9]{{2}}(?:[0-9]{{6}}|-[0-9]{{2}}-[0-9]{{4}}| [0-9]{{2}} [0-9]{{4}})"
               f"(?:[ ()+/]{_R}*{_NR}|[^0-9A-Za-z_ \\-./()+]|[\\-.](?:{_S}{_R}*)?{_NR})",),
    "IP_ADDRESS": (f"(?:^|[^0-9A-Za-z_.])(?:[0-9]{{1,3}}\\.){{3}}[0-9]{{1,3}}"
                   f"(?:[^0-9A-Za-z_ \\-./()+]|[ \\-/()+]{_R}*{_NR}|\\.(?:{_NR}|{_S}{_R}*{_NR}))",),
}
_RUN_BYTES = b"0123456789 -./()+"
#: how far back from a run's end its start is looked for first (most runs are shorter)
_RUN_LOOKBACK = 64

#: detector gate (entity type, or ``TYPE/name`` for one of a type's detectors) → patterns of a fixed
#: length ``n`` whose every occurrence is reported, at ``end - n``: every place the detector's regex can
#: start (``Text.positions``), found in the same pass; its detector then tries its regex there only
#: (``match``) instead of searching the whole text. A type with triggers too is active when both fire.
POSITIONS: dict[str, tuple[tuple[str, int], ...]] = {
    # the detector looks only at the countries of the IBAN registry: ``CC00``, one pattern per country (one
    # alternation of the 90 pairs scans 2-3 us slower per 2 KB prompt), at the start or after no ASCII letter, digit
    # or ``_`` (the regex's look-behind; the detector tests it on the character before too, for the non-ASCII
    # letters, a ``?`` here): the ``CC00`` inside tokens and keys go (dense prompts: 0.4 of 1.1 positions), C scan
    # unchanged
    "IBAN": tuple((f"(?:^|[^0-9A-Za-z_]){country}[0-9]{{2}}", 4) for country in sorted(IBAN_LENGTHS)),
    # every end of a key word of the CREDENTIAL regex (after no ASCII letter or digit) and what the regex wants
    # right after it, ``:``/``=`` or `` is ``: one match per key word, whose end the detector finds back from
    # there (the separator varies)
    "CREDENTIAL": ((f"(?i)(?:^|[^A-Za-z0-9])(?:{CREDENTIAL_WORDS})" + r"\\?[\"']?(?:" + _WS + "*[:=]|" + _WS + "+is"
                    + _WS + ")", 0),),
    # every start of a context word of AWS_SECRET_KEY (its run must have one within 200 characters before it)
    "AWS_SECRET_KEY": tuple((f"(?i){word}", len(word)) for word in AWS_CONTEXT_WORDS),
    # every ``://`` (where the detector looks back for the scheme); every ``[Bb]earer`` (where its regex starts: with
    # its trigger, the type is active when both fire)
    "URL_CREDENTIALS": (("://", 3),),
    "BEARER_TOKEN": (("[Bb]earer", 6),),
    # the literal prefix each of these regexes starts with
    "PRIVATE_KEY": (("-----BEGIN ", 11),),
    "JWT": (("eyJ", 3),),
    "ANTHROPIC_KEY": (("sk-ant-", 7),),
    # ``sk-`` and a character of the key, but not ``sk-ant-`` (the regex's ``(?!ant-)``: an Anthropic key is not
    # reported twice, nor tried twice): the three characters after ``sk-`` each in turn not the next of ``ant-``
    # (``proj-``, ``admin-``, ... and the key's run are of ``[A-Za-z0-9_-]``)
    "OPENAI_KEY": (("sk-[A-Z0-9_\\-b-z]", 4), ("sk-a[A-Za-mo-z0-9_\\-]", 5), ("sk-an[A-Za-su-z0-9_\\-]", 6),
                   ("sk-ant[A-Za-z0-9_]", 7)),
    "AWS_ACCESS_KEY_ID": (("A(?:KIA|SIA|BIA|CCA|GPA|IDA|ROA|IPA|NPA|NVA|PKA)", 4),),
    "GITHUB_TOKEN": (("gh[pousr]_", 4),),
    "GITHUB_TOKEN/pat": (("github_pat_", 11),),
    "SLACK_TOKEN": (("xox[abposre]-", 5),),
    "SLACK_TOKEN/app": (("xapp-", 5),),
    "STRIPE_KEY": (("(?:sk|rk|pk)_(?:live|test)_", 8),),
    "GOOGLE_API_KEY": (("AIza", 4),),
}


def _escape(word: str) -> str:
    return "".join(c if c.isalnum() else f"\\x{ord(c):02x}" for c in word)


def _alternation(patterns: list[str] | tuple[str, ...]) -> str:
    """One Hyperscan pattern that matches where any of ``patterns`` does (each in a group of its own). Under one id,
    Hyperscan reports a pattern once per end however many ways it matches there: the same reports as the patterns
    apart under that id (a trigger's: single match) or as a logical combination of them (a run type's)."""
    return patterns[0] if len(patterns) == 1 else "(?:" + ")|(?:".join(patterns) + ")"


def _one_char(pattern: str) -> bool:
    """Whether the trigger ``pattern`` is one ASCII character that stands for itself (no regex syntax, not the
    newline the pass appends): it occurs in the pass's bytes exactly where ``in`` finds it there."""
    return len(pattern) == 1 and pattern.isascii() and re.escape(pattern) == pattern and pattern != "\n"


def _pass_bytes(text: str) -> bytes:
    """What the pass scans: ``text`` with each non-ASCII character (a lone surrogate too) as one ``?``, so
    that byte offsets are character offsets. No pattern holds a ``?`` or a byte beyond ASCII, and every
    class that takes one takes the other: to each pattern a ``?`` is what a non-ASCII character's UTF-8
    bytes are (one match breaker, or one byte of a class that excludes run and word characters), and none
    takes two such bytes in a row (``test_the_pass_over_question_marks_finds_what_it_found_in_utf8``)."""
    return text.encode("ascii") if text.isascii() else text.encode("ascii", "replace")


def _report(i: int, start: int, end: int, flags: int, add) -> None:
    """The pass's match handler: ``add((id, end))``, ``add`` given as the scan's context (a module function, not a
    closure made per scan: with the matches sorted out after the scan, ~0.6 us less per prompt on clean prose, where
    that fixed cost was most of the handler's, ~0.4 on PII-dense prompts, than filing each one in a closure)."""
    add((i, end))


class Prefilter:
    """The compiled pass for a set of entity types (a Redactor's built-ins).

    Pattern ids, in this order: one per trigger gate (its patterns as one alternation, single match; a trigger of
    one character is looked for with ``in`` instead), one per digit-run type (a type with several run patterns
    has them as one alternation, reported once per run end instead of once per shape), one per ``POSITIONS`` gate
    and pattern length, then one per credential word. The match handler (``_report``) only collects
    ``(id, end)``; the credential words' and positions' starts, the runs' starts and the triggers' gates are
    sorted out after the scan, in one loop."""

    __slots__ = ("_always", "_back", "_both", "_char_triggers", "_db", "_fired_gates", "_gate_of", "_local",
                 "_n_pos", "_n_runs", "_n_triggers", "_pos", "_run_types", "_wide_any_case", "_wide_words", "_words",
                 "finders")

    def __init__(self, entities: tuple[str, ...] | list[str], cache_dir: str | None = None):
        exprs: list[bytes] = []
        ids: list[int] = []
        flags: list[int] = []
        single, dotall, caseless = hyperscan.HS_FLAG_SINGLEMATCH, hyperscan.HS_FLAG_DOTALL, hyperscan.HS_FLAG_CASELESS

        def add(pattern: str | bytes, i: int, flag: int) -> None:
            exprs.append(pattern.encode() if isinstance(pattern, str) else pattern)
            ids.append(i)
            flags.append(flag)

        #: id → what its trigger patterns make active: their gate, and its type when the gate is one detector's
        self._fired_gates: list[tuple[str, ...]] = []
        #: ``(byte, what it makes active)`` of the triggers that are one character: looked for with ``in`` in the
        #: bytes the pass scans, not compiled (a one-byte literal slows Hyperscan's literal matcher down: ``@``
        #: cost ~2.3 us per 2 KB PII-dense prompt, ``in`` 0.2)
        char_triggers: list[tuple[bytes, tuple[str, ...]]] = []
        for entity in entities:
            if entity in TRIGGERS:
                gate = TRIGGER_GATES.get(entity, entity)
                names = (gate,) if gate == entity else (gate, entity)
                by_case: dict[bool, list[str]] = {}  # caseless or not → the gate's patterns
                for pattern in TRIGGERS[entity]:
                    if _one_char(pattern):
                        char_triggers.append((pattern.encode(), names))
                    else:
                        nocase = pattern.startswith("(?i)")
                        by_case.setdefault(nocase, []).append(pattern[4:] if nocase else pattern)
                for nocase, patterns in by_case.items():  # one alternation: IPv6's two as one, C scan 0.8 us less
                    add(_alternation(patterns), len(self._fired_gates), single | dotall | (caseless if nocase else 0))
                if by_case:
                    self._fired_gates.append(names)
        self._char_triggers = tuple(char_triggers)
        self._n_triggers = len(self._fired_gates)
        #: id - _n_triggers → the digit-run type; a type with several run patterns has them as one alternation (one
        #: report per run end, as for one pattern: PHONE's seven, C scan 1.7 us less per dense prompt and 1.4 on hard
        #: negatives than through a logical combination of the seven)
        self._run_types: list[str] = [e for e in entities if RUNS.get(e)]
        for k, entity in enumerate(self._run_types):
            add(_alternation(RUNS[entity]), self._n_triggers + k, dotall)
        self._n_runs = self._n_triggers + len(self._run_types)
        #: id - _n_runs → (gate, length of its patterns): one id per gate and length (one start per end)
        self._pos: list[tuple[str, int]] = []
        for gate, patterns in POSITIONS.items():
            if gate.partition("/")[0] not in entities:
                continue
            for length in sorted({n for _, n in patterns}):
                for pattern, n in patterns:
                    if n == length:
                        add(pattern, self._n_runs + len(self._pos), dotall)
                self._pos.append((gate, length))
        self._n_pos = self._n_runs + len(self._pos)
        #: id → what a match's end is less its start (a position pattern's or a credential word's length; else 0)
        #: and the gate of a position id (else None), read by the match handler
        self._back: list[int] = [0] * self._n_runs + [n for _, n in self._pos]
        self._gate_of: list[str | None] = [None] * self._n_runs + [gate for gate, _ in self._pos]
        #: types that need a trigger and a position both
        self._both = frozenset(e for e in entities if e in TRIGGERS and e in POSITIONS)
        #: one id per credential word, as Hyperscan reports one match per id and end, so under one id "token" in
        #: "authtoken" was folded into the longer word (and "ServiceauthToken_id=..." lost its context); a word's
        #: start is its end less its length (``_back``)
        if GENERIC in entities:
            for word in CONTEXT_WORDS:
                if word.isascii():  # the others are found in the lower-cased text (word_starts)
                    add(_escape(word), len(self._back), caseless)
                    self._back.append(len(word))
        #: entity types without triggers (none today) are never skipped
        self._always = frozenset(e for e in entities
                                 if e not in TRIGGERS and e not in RUNS and e not in POSITIONS and e != GENERIC)
        #: the order the patterns are compiled in (their ids stay as above): the digit runs first (PHONE's the first
        #: of them), then the triggers, positions and words. Hyperscan builds its engines in that order, and its C
        #: scan depends on it (one process, the same patterns and ids: prose 3.4 -> 2.8, hard negatives 6.5 -> 5.6,
        #: PII-dense 9.5 -> 7.8 us per prompt than with the triggers first; the best of the 120 orders of the five
        #: kinds within noise)
        runs_first = [j for j, i in enumerate(ids) if self._n_triggers <= i < self._n_runs]
        order = runs_first + [j for j, i in enumerate(ids) if not self._n_triggers <= i < self._n_runs]
        exprs, ids, flags = [exprs[j] for j in order], [ids[j] for j in order], [flags[j] for j in order]
        from ._dbcache import compiled_database  # ~0.13 s compiled, ~0.1 ms loaded (issue #12)

        #: None: no pattern to compile (``entities = ["EMAIL"]``: its one trigger is a character, found by ``in``)
        self._db = compiled_database(exprs, ids, flags, cache_dir) if exprs else None
        #: the credential words (lower case), for text the pass does not see: found in its lower-case form;
        #: and those that are not ASCII, for text with non-ASCII letters the pass sees
        self._words = NeedleFinder(CONTEXT_NEEDLES) if GENERIC in entities else None
        wide = tuple(w for w in CONTEXT_NEEDLES if not w.isascii())
        self._wide_words = NeedleFinder(wide) if GENERIC in entities and wide else None
        #: the same, in the text itself rather than its lower-cased form (None: lower-case it)
        self._wide_any_case = _any_case_finder(wide) if self._wide_words is not None else None
        #: ``needles → finder`` for the detectors' needle searches in lower-cased text (``Text.finders``)
        self.finders: dict[tuple[str, ...], NeedleFinder] = {
            needles: NeedleFinder(needles) for needles in FOUND_NEEDLES}
        self._local = threading.local()  # Hyperscan's scratch space is per thread

    def scan(self, text: str) -> tuple[set[str], list[int], dict[str, list[tuple[int, int]]], dict[str, list[int]]]:
        """The entity types whose triggers occur in ``text``, where its ASCII credential words start
        (sorted), per digit-run entity type the ``(start, end)`` of the runs it can match in, and per
        detector gate of ``POSITIONS`` where its regex can start, sorted.
        ``text`` must pass :func:`._detectors.pass_safe`: its non-ASCII characters are symbols or letters that no
        trigger holds and that break a trigger as a ``?`` does."""
        hits: list[tuple[int, int]] = []  # (id, end) of each match, in the order reported
        data = _pass_bytes(text) + b"\n"
        db = self._db
        if db is not None:
            local = self._local
            scratch = getattr(local, "scratch", None)
            if scratch is None:
                scratch = local.scratch = hyperscan.Scratch(db)
            # positionally (data, match_event_handler, flags, context, scratch): ~0.2 us less than by keyword
            db.scan(data, _report, 0, hits.append, scratch)
        active = set(self._always)
        for char, names in self._char_triggers:
            if char in data:
                active.update(names)
        starts: list[int] = []
        positions: dict[str, list[int]] = {}
        runs: list[tuple[int, int]] = []  # (id, end) of the digit runs
        if hits:
            first_run, first_pos, first_word = self._n_triggers, self._n_runs, self._n_pos
            back, gate_of = self._back, self._gate_of
            add_start, at_gate = starts.append, positions.get
            for i, end in hits:  # each kind sorted out, the most frequent first
                if i >= first_word:
                    add_start(end - back[i])
                elif i >= first_pos:
                    at = at_gate(gate_of[i])
                    if at is None:
                        positions[gate_of[i]] = [end - back[i]]
                    else:
                        at.append(end - back[i])
                elif i >= first_run:
                    runs.append((i, end))
                else:
                    active.update(self._fired_gates[i])
        found: dict[str, list[tuple[int, int]]] = {}
        if runs:
            run_types = self._run_types  # (first_run: the loop above, which found the runs)
            run_start: dict[int, int] = {}
            for i, e in runs:
                e -= 1  # the run, and the character after it
                rs = run_start.get(e)
                if rs is None:  # where the run ends, back to the first byte that is not a run's: looked for in
                    # the 64 bytes before the end (a copy of those, not of all the data before it), further back
                    # only when they are all the run's
                    lo = e - _RUN_LOOKBACK if e > _RUN_LOOKBACK else 0
                    rs = lo + len(data[lo:e].rstrip(_RUN_BYTES))
                    if rs == lo and lo:
                        rs = len(data[:e].rstrip(_RUN_BYTES))
                    run_start[e] = rs
                spans = found.get(run_types[i - first_run])
                if spans is None:
                    found[run_types[i - first_run]] = [(rs, e)]
                else:
                    spans.append((rs, e))
            for spans in found.values():
                spans.sort()
            active.update(found)
        if positions:
            for at in positions.values():
                at.sort()
            for entity in self._both:
                if entity not in active:
                    positions.pop(entity, None)
            active.update(positions)
        for entity in self._both:
            if entity not in positions:
                active.discard(entity)
        if starts:
            active.add(GENERIC)
            starts.sort()
        return active, starts, found, positions

    def word_starts(self, low: str) -> list[int]:
        """Where a credential word (``GenericSecretDetector``'s needles) starts in ``low``, a lower-cased
        text of the same length as the original (any text: the words are matched as UTF-8 bytes)."""
        return sorted({s for s, _ in self._words.spans(low)})

    def wide_word_starts(self, low: str) -> list[int]:
        """:meth:`word_starts` of the credential words that are not ASCII (the pass finds the others)."""
        return sorted({s for s, _ in self._wide_words.spans(low)}) if self._wide_words is not None else []

    def wide_word_starts_in(self, text: str, ctx) -> list[int]:
        """:meth:`wide_word_starts` of ``text.lower()`` for a ``text`` the pass sees, from ``text`` itself where a
        finder of every case form of those words was made (lower-casing 2 KB of Cyrillic costs ~18 us)."""
        if self._wide_any_case is None:
            return self.wide_word_starts(ctx.lower)
        return sorted({s for s, _ in self._wide_any_case.spans(text)})


class NeedleFinder:
    """``find_all(hay, needles)`` (every occurrence of every needle, sorted ``(start, end)`` spans) in one
    Hyperscan pass instead of one ``str.find`` loop per needle. ASCII needles are matched in
    :func:`_pass_bytes` of ``hay`` (a non-ASCII character is a ``?`` there, which no needle holds);
    others in its UTF-8, where a match starts and ends at character boundaries: its start is converted to
    a character offset by decoding the bytes up to it, its end is the start plus the needle's length."""

    __slots__ = ("_ascii", "_db", "_lengths", "_local", "_sizes")

    def __init__(self, needles: tuple[str, ...], patterns: list[bytes] | None = None):
        self._ascii = all(w.isascii() for w in needles)
        words = [w.encode() for w in needles]
        self._sizes = [len(w) for w in words]  # in bytes (every match of a needle's pattern has this many)
        self._lengths = [len(w) for w in needles]  # in characters
        if patterns is None:
            patterns = ["".join(f"\\x{b:02x}" for b in w).encode() for w in words]
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=patterns, ids=list(range(len(words))), elements=len(words), flags=[0] * len(words))
        self._local = threading.local()

    def spans(self, hay: str) -> list[tuple[int, int]]:
        local = self._local
        scratch = getattr(local, "scratch", None)
        if scratch is None:
            scratch = local.scratch = hyperscan.Scratch(self._db)
        found: list[tuple[int, int]] = []  # (start in bytes, length in characters)
        add = found.append
        sizes = self._sizes
        lengths = self._lengths

        def on_match(i: int, start: int, end: int, flags: int, ctx: object) -> None:
            add((end - sizes[i], lengths[i]))

        ascii_bytes = self._ascii or hay.isascii()
        data = _pass_bytes(hay) if ascii_bytes else hay.encode("utf-8", "surrogatepass")
        self._db.scan(data, on_match, 0, None, scratch)  # positionally, as in Prefilter.scan
        if not found:
            return []
        found.sort()  # by start, then length: in bytes as in characters (the needles start at the same place)
        if ascii_bytes:
            return [(s, s + n) for s, n in found]
        out = []
        byte = char = 0  # the last start converted, in bytes and in characters
        for s, n in found:
            if s != byte:
                char += len(data[byte:s].decode("utf-8", "surrogatepass"))
                byte = s
            out.append((char, char + n))
        return out


def _case_forms(c: str) -> list[str]:
    """The characters whose ``lower()`` is ``c``, in text the pass sees (``_detectors.pass_safe``: no ``İ``, ``ı``,
    ``ſ``, ``K``): ``c`` and its upper and title case (a test checks every code point for the words' characters)."""
    return sorted({f for f in (c, c.upper(), c.title()) if len(f) == 1 and f.lower() == c})


def _any_case_finder(needles: tuple[str, ...]) -> NeedleFinder | None:
    """A :class:`NeedleFinder` of ``needles`` (lower case) in any case: each character as the alternation of its
    case forms, in UTF-8. ``None`` when a character's forms differ in UTF-8 length (a match's length would not be
    the needle's)."""
    patterns = []
    for needle in needles:
        parts = []
        for c in needle:
            forms = [f.encode() for f in _case_forms(c)]
            if len({len(f) for f in forms}) != 1:
                return None
            parts.append("(?:" + "|".join("".join(f"\\x{b:02x}" for b in f) for f in forms) + ")")
        patterns.append("".join(parts).encode())
    return NeedleFinder(needles, patterns)


def make_prefilter(entities: tuple[str, ...] | list[str], cache_dir: str | None = None) -> Prefilter | None:
    """A prefilter for ``entities``, or ``None`` without the ``hyperscan`` wheel (every detector runs);
    ``cache_dir``: where its compiled database is kept between processes (``None``: compiled each time)."""
    if hyperscan is None:
        return None
    return Prefilter(entities, cache_dir)
