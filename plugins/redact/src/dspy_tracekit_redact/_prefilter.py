"""One Hyperscan pass over a text: which built-in entity types can occur in it at all.

Each entity type has *triggers*: patterns that every one of its matches must contain (its literal
prefix, its anchor word, the digit run all number detectors need). Hyperscan finds all of them in one
pass at about 1 GB/s; the Redactor then runs only the detectors whose trigger fired — on clean text,
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

import bisect
import threading

from ._detectors import _CREDENTIAL_NEEDLES as CREDENTIAL_NEEDLES
from ._detectors import FOUND_NEEDLES, IBAN_LENGTHS
from ._generic import _NEEDLES as CONTEXT_NEEDLES
from ._generic import CONTEXT_WORDS

try:  # the wheel exists for CPython 3.10-3.13 on Linux, macOS and Windows; elsewhere: every detector runs
    import hyperscan
except ImportError:  # pragma: no cover - exercised by the fallback test with the import blocked
    hyperscan = None

_WS = r"[ \t\n\r\f\v]"

#: entity type → patterns (Hyperscan syntax) every match of the type contains; ``(?i)`` = caseless
TRIGGERS: dict[str, tuple[str, ...]] = {
    "PRIVATE_KEY": ("PRIVATE KEY",),
    "URL_CREDENTIALS": ("://",),
    "BEARER_TOKEN": ("earer",),
    "AWS_SECRET_KEY": ("(?i)aws", "(?i)secret", "(?i)akia", "(?i)asia", "(?i)access key", "(?i)access_key"),
    # the key word, then what the CREDENTIAL regex wants right after it: ``:``/``=`` or `` is ``
    "CREDENTIAL": ("(?i)(?:" + "|".join(CREDENTIAL_NEEDLES) + r")\\?[\"']?(?:" + _WS + "*[:=]|" + _WS + "+is" + _WS + ")",),
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
#: ``+-./#@:`` (a ``(`` or ``)`` opens a group too)
_PHONE_AT = "(?:^|[^0-9A-Za-z_+\\-./#@:])"
#: the rest of a run after a group of digits that no digit follows
_GROUP_END = f"(?:{_S}{_R}*)?{_NR}"

#: entity type → runs of ``_R`` characters its digit-run detector can find something in (it searches only
#: those: ``_detectors.RunDetector``), with the character after the run (the data ends with a newline).
#: Hyperscan reports each run's end once; a type with no such run is inactive. (Start-of-match tracking would
#: cost ~10 us per pattern and text: the start is found from the end instead.)
RUNS: dict[str, tuple[str, ...]] = {
    # where a phone, trimmed or not, can start (a place ``_PHONE_CAND``'s look-behind allows, or after the ``(``
    # a candidate opens with), with what ``phone_ok`` wants from there: ``+`` and 8 digits; a ``0`` and 9 more;
    # else (trimming keeps the first groups) the first groups of one of its other formats, which it takes with
    # no others: NANP 212-555-1234 and 1-800-555-0199, IN 98765 43210, BR (11) 91234-5678 and (21) 2345-6789,
    # a bare NANP or 6-9 number of 10 digits (``_detectors._PHONE_HEADS``). Runs of dates, versions, order and
    # tracking numbers are mostly not reported (hard-negative prompts: 0.2 runs instead of 2.7)
    "PHONE": (f"{_PHONE_AT}\\+(?:{_R}*[0-9]){{8}}{_R}*{_NR}",
              f"{_PHONE_AT}0(?:{_R}*[0-9]){{9}}{_R}*{_NR}",
              f"{_PHONE_AT}(?:[2-9][0-9]{{2}}[2-9][0-9]{{6}}|[6-9][0-9]{{9}}){_GROUP_END}",
              f"{_PHONE_AT}[2-9][0-9]{{2}}{_S}+[2-9][0-9]{{2}}{_S}+[0-9]{{4}}{_GROUP_END}",
              f"{_PHONE_AT}1{_S}+[2-9][0-9]{{2}}{_S}+[2-9][0-9]{{2}}{_S}+[0-9]{{4}}{_GROUP_END}",
              f"{_PHONE_AT}[6-9][0-9]{{4}}{_S}+[0-9]{{5}}{_GROUP_END}",
              f"{_PHONE_AT}[1-9]{{2}}{_S}+9?[0-9]{{4}}{_S}+[0-9]{{4}}{_GROUP_END}"),
    # a card starts with 2-6 (``card_ok``'s prefixes) after none of ``\w.-+``, and ``card_ok`` wants 13 digits
    # or more in one group, or groups of 4-6-x or 4-4-4-x (12 digits in those shapes, with no optional
    # separator before each digit: C scan 1.5 us less per prompt on hard negatives and dense prompts)
    "CREDIT_CARD": (f"(?:^|[^0-9A-Za-z_.\\-+])[2-6][0-9]{{3}}(?:[0-9]{{4}}|[ \\-][0-9]{{4}}[ \\-]|[ \\-][0-9]{{6}}[ \\-])"
                    f"[0-9]{{4}}{_R}*{_NR}",),
    # the shapes of the SSN and IPv4 regexes, which take no other character; an SSN's area is not 9xx, it starts
    # after none of ``\w-.``, and no word character, nor ``-``/``.`` and a digit, follows it
    "US_SSN": (f"(?:^|[^0-9A-Za-z_\\-.])[0-8][0-9]{{2}}(?:[0-9]{{6}}|-[0-9]{{2}}-[0-9]{{4}}| [0-9]{{2}} [0-9]{{4}})"
               f"(?:[ ()+/]{_R}*{_NR}|[^0-9A-Za-z_ \\-./()+]|[\\-.](?:{_S}{_R}*)?{_NR})",),
    "IP_ADDRESS": (f"[0-9](?:[0-9]?[0-9]?\\.[0-9]){{3}}{_R}*{_NR}",),
}
_RUN_BYTES = b"0123456789 -./()+"

#: detector gate (entity type, or ``TYPE/name`` for one of a type's detectors) → patterns of a fixed
#: length ``n`` whose every occurrence is reported, at ``end - n``: every place the detector's regex can
#: start (``Text.positions``), found in the same pass; its detector then tries its regex there only
#: (``match``) instead of searching the whole text. A type with triggers too is active when both fire.
POSITIONS: dict[str, tuple[tuple[str, int], ...]] = {
    # the detector looks only at the countries of the IBAN registry: ``CC00``, one pattern per country (one
    # alternation of the 90 pairs scans 2-3 us slower per 2 KB prompt)
    "IBAN": tuple((f"{country}[0-9]{{2}}", 4) for country in sorted(IBAN_LENGTHS)),
    # the literal prefix each of these regexes starts with
    "PRIVATE_KEY": (("-----BEGIN ", 11),),
    "JWT": (("eyJ", 3),),
    "ANTHROPIC_KEY": (("sk-ant-", 7),),
    "OPENAI_KEY": (("sk-", 3),),
    "AWS_ACCESS_KEY_ID": (("A(?:KIA|SIA|BIA|CCA|GPA|IDA|ROA|IPA|NPA|NVA|PKA)", 4),),
    "GITHUB_TOKEN": (("gh[pousr]_", 4),),
    "GITHUB_TOKEN/pat": (("github_pat_", 11),),
    "SLACK_TOKEN": (("xox[abposre]-", 5),),
    "SLACK_TOKEN/app": (("xapp-", 5),),
    "STRIPE_KEY": (("(?:sk|rk|pk)_(?:live|test)_", 8),),
    "GOOGLE_API_KEY": (("AIza", 4),),
}
#: the first byte of a UTF-8 sequence of more than one byte, and how many bytes follow it
_LEAD = "[\\xc0-\\xff]"


def _escape(word: str) -> str:
    return "".join(c if c.isalnum() else f"\\x{ord(c):02x}" for c in word)


class Prefilter:
    """The compiled pass for a set of entity types (a Redactor's built-ins)."""

    __slots__ = ("_always", "_db", "_entities", "_both", "_generic_id", "_lead_id", "_local", "_pos_ids", "_run_ids",
                 "_word_lengths", "_words", "finders")

    def __init__(self, entities: tuple[str, ...] | list[str], cache_dir: str | None = None):
        exprs: list[bytes] = []
        ids: list[int] = []
        flags: list[int] = []
        self._entities: list[str] = []
        for entity in entities:
            for pattern in TRIGGERS.get(entity, ()):
                caseless = pattern.startswith("(?i)")
                exprs.append((pattern[4:] if caseless else pattern).encode())
                ids.append(len(self._entities))
                flags.append(hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_DOTALL
                             | (hyperscan.HS_FLAG_CASELESS if caseless else 0))
                self._entities.append(TRIGGER_GATES.get(entity, entity))
        #: pattern id → entity type, for the run patterns
        self._run_ids: dict[int, str] = {}
        for entity in entities:
            for pattern in RUNS.get(entity, ()):
                self._run_ids[len(self._entities)] = entity
                exprs.append(pattern.encode())
                ids.append(len(self._entities))
                flags.append(hyperscan.HS_FLAG_DOTALL)
                self._entities.append(entity)
        #: pattern id → (entity type, its length), for the position patterns
        self._pos_ids: dict[int, tuple[str, int]] = {}
        for gate, patterns in POSITIONS.items():
            if gate.partition("/")[0] not in entities:
                continue
            for pattern, length in patterns:
                self._pos_ids[len(self._entities)] = (gate, length)
                exprs.append(pattern.encode())
                ids.append(len(self._entities))
                flags.append(hyperscan.HS_FLAG_DOTALL)
                self._entities.append(gate)
        #: types that need a trigger and a position both
        self._both = frozenset(e for e in entities if e in TRIGGERS and e in POSITIONS)
        self._lead_id = len(self._entities)
        self._entities.append("")
        exprs.append(_LEAD.encode())
        ids.append(self._lead_id)
        flags.append(0)
        #: the credential words come last, one id each, from this id on (none: never): Hyperscan reports one
        #: match per id and end, so under one id "token" in "authtoken" was folded into the longer word (and
        #: "ServiceauthToken_id=..." lost its context); a word's start is its end less its length
        self._generic_id = 1 << 62
        self._word_lengths: list[int] = []
        if GENERIC in entities:
            self._generic_id = len(self._entities)
            for word in CONTEXT_WORDS:
                if word.isascii():  # the pass only sees ASCII text
                    exprs.append(_escape(word).encode())
                    ids.append(len(self._entities))
                    flags.append(hyperscan.HS_FLAG_CASELESS)
                    self._entities.append(GENERIC)
                    self._word_lengths.append(len(word))
        #: entity types without triggers (none today) are never skipped
        self._always = frozenset(e for e in entities
                                 if e not in TRIGGERS and e not in RUNS and e not in POSITIONS and e != GENERIC)
        from ._dbcache import compiled_database  # ~0.13 s compiled, ~0.1 ms loaded (issue #12)

        self._db = compiled_database(exprs, ids, flags, cache_dir)
        #: the credential words (lower case), for text the pass does not see: found in its lower-case form
        self._words = NeedleFinder(CONTEXT_NEEDLES) if GENERIC in entities else None
        #: ``needles → finder`` for the detectors' needle searches in lower-cased text (``Text.finders``)
        self.finders: dict[tuple[str, ...], NeedleFinder] = {
            needles: NeedleFinder(needles) for needles in FOUND_NEEDLES}
        self._local = threading.local()  # Hyperscan's scratch space is per thread

    def scan(self, text: str) -> tuple[set[str], list[int] | None, dict[str, list[tuple[int, int]]],
                                       dict[str, list[int]]]:
        """The entity types whose triggers occur in ``text``, where credential words start (``None``:
        not known), per digit-run entity type the ``(start, end)`` of the runs it can match in, and per
        detector gate of ``POSITIONS`` where its regex can start, sorted.
        ``text`` must pass :func:`._detectors.pass_safe`: its non-ASCII characters are symbols or letters that no
        trigger holds and that break a trigger in UTF-8 as they do in the text."""
        local = self._local
        scratch = getattr(local, "scratch", None)
        if scratch is None:
            scratch = local.scratch = hyperscan.Scratch(self._db)
        active: set[str] = set(self._always)
        starts: list[int] = []
        hits: list[tuple[str, int]] = []  # (entity type, end of a run it can match in)
        at: list[tuple[str, int]] = []  # (entity type, where its regex can start)
        leads: list[int] = []
        entities = self._entities
        generic = self._generic_id
        lead = self._lead_id
        run_ids = self._run_ids
        pos_ids = self._pos_ids

        word_lengths = self._word_lengths

        def on_match(i: int, start: int, end: int, flags: int, ctx: object) -> None:
            if i >= generic:
                starts.append(end - word_lengths[i - generic])
            elif i == lead:
                leads.append(end - 1)
            elif i in run_ids:
                hits.append((run_ids[i], end - 1))  # the run, and the character after it
            elif i in pos_ids:
                entity, length = pos_ids[i]
                at.append((entity, end - length))
            else:
                active.add(entities[i])

        ascii_text = text.isascii()
        data = (text.encode("ascii") if ascii_text else text.encode("utf-8", "surrogatepass")) + b"\n"
        self._db.scan(data, match_event_handler=on_match, scratch=scratch)
        for entity, gate in TRIGGER_GATES.items():
            if gate in active:
                active.add(entity)
        if starts:
            active.add(GENERIC)
            starts.sort()
        found: dict[str, list[tuple[int, int]]] = {}
        if hits:
            run_start: dict[int, int] = {}
            for entity, e in sorted(set(hits)):
                rs = run_start.get(e)
                if rs is None:  # where the run ends, back to the first byte that is not a run's
                    rs = run_start[e] = len(data[:e].rstrip(_RUN_BYTES))
                found.setdefault(entity, []).append((rs, e))
            active.update(found)
        positions: dict[str, list[int]] = {}
        if at:
            both = self._both
            for entity, b in sorted(at):
                if entity not in both or entity in active:
                    positions.setdefault(entity, []).append(b)
        for entity in self._both - positions.keys():
            active.discard(entity)
        active.update(positions)
        if leads and (starts or found or positions):  # UTF-8 byte offsets → character offsets
            to_char = _char_offsets(data, leads)
            starts = [to_char(b) for b in starts]
            found = {k: [(to_char(s), to_char(e)) for s, e in v] for k, v in found.items()}
            positions = {k: [to_char(b) for b in v] for k, v in positions.items()}
        return active, starts, found, positions


    def word_starts(self, low: str) -> list[int]:
        """Where a credential word (``GenericSecretDetector``'s needles) starts in ``low``, a lower-cased
        text of the same length as the original (any text: the words are matched as UTF-8 bytes)."""
        return sorted({s for s, _ in self._words.spans(low)})


class NeedleFinder:
    """``find_all(hay, needles)`` (every occurrence of every needle, sorted ``(start, end)`` spans) in one
    Hyperscan pass over the UTF-8 of ``hay`` instead of one ``str.find`` loop per needle: the needles
    are literal byte strings, and a UTF-8 match starts and ends at character boundaries."""

    __slots__ = ("_db", "_lengths", "_local")

    def __init__(self, needles: tuple[str, ...]):
        words = [w.encode() for w in needles]
        self._lengths = [len(w) for w in words] + [0]
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=["".join(f"\\x{b:02x}" for b in w).encode() for w in words] + [_LEAD.encode()],
                         ids=list(range(len(words) + 1)), elements=len(words) + 1, flags=[0] * (len(words) + 1))
        self._local = threading.local()

    def spans(self, hay: str) -> list[tuple[int, int]]:
        local = self._local
        scratch = getattr(local, "scratch", None)
        if scratch is None:
            scratch = local.scratch = hyperscan.Scratch(self._db)
        lengths = self._lengths
        lead = len(lengths) - 1
        found: list[tuple[int, int]] = []
        leads: list[int] = []

        def on_match(i: int, start: int, end: int, flags: int, ctx: object) -> None:
            if i == lead:
                leads.append(end - 1)
            else:
                found.append((end - lengths[i], end))

        data = hay.encode("utf-8", "surrogatepass")
        self._db.scan(data, match_event_handler=on_match, scratch=scratch)
        if not found:
            return []
        found.sort()
        if leads:
            to_char = _char_offsets(data, leads)
            found = [(to_char(s), to_char(e)) for s, e in found]
        return found


def _char_offsets(data: bytes, leads: list[int]):
    """``byte offset → character offset`` in ``data``, given where its multi-byte characters start."""
    extra = []  # bytes beyond the first of each multi-byte character, added up
    total = 0
    for b in leads:
        first = data[b]
        total += 1 if first < 0xE0 else 2 if first < 0xF0 else 3
        extra.append(total)

    def to_char(offset: int) -> int:
        k = bisect.bisect_left(leads, offset)  # multi-byte characters that start before ``offset``
        return offset - (extra[k - 1] if k else 0)

    return to_char


def make_prefilter(entities: tuple[str, ...] | list[str], cache_dir: str | None = None) -> Prefilter | None:
    """A prefilter for ``entities``, or ``None`` without the ``hyperscan`` wheel (every detector runs);
    ``cache_dir``: where its compiled database is kept between processes (``None``: compiled each time)."""
    if hyperscan is None:
        return None
    return Prefilter(entities, cache_dir)
