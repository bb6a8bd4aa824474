"""One Hyperscan pass over a text: which built-in entity types can occur in it at all.

Each entity type has *triggers*: patterns that every one of its matches must contain (its literal
prefix, its anchor word, the digit run all number detectors need). Hyperscan finds all of them in one
pass at about 1 GB/s; the Redactor then runs only the detectors whose trigger fired — on clean text,
none or one of ~20. The same pass reports where ``GENERIC_SECRET``'s credential words start, so that
detector does not search for them again.

Only text whose characters beyond ASCII are symbols (``€``, ``—``, emoji: what :func:`ascii_classes`
accepts, where the detectors use their ``re.ASCII`` variants) goes through the pass: on it Python's
case-insensitive, ``\\d`` and ``\\s`` classes mean what Hyperscan's do. Other text (accented letters,
non-ASCII digits or spaces), and every text when the ``hyperscan`` wheel is not installed, is scanned
by every detector, as before. The triggers are
necessary conditions, so the findings are the same either way; ``test_redact_prefilter.py`` checks
this on the regression set.
"""

from __future__ import annotations

import threading

from ._detectors import _CREDENTIAL_NEEDLES as CREDENTIAL_NEEDLES
from ._detectors import IBAN_LENGTHS
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
    "JWT": ("eyJ",),
    "ANTHROPIC_KEY": ("sk-ant-",),
    "OPENAI_KEY": ("sk-",),
    "AWS_ACCESS_KEY_ID": ("A(?:KIA|SIA|BIA|CCA|GPA|IDA|ROA|IPA|NPA|NVA|PKA)",),
    "AWS_SECRET_KEY": ("(?i)aws", "(?i)secret", "(?i)akia", "(?i)asia", "(?i)access key", "(?i)access_key"),
    "GITHUB_TOKEN": ("gh[pousr]_", "github_pat_"),
    "SLACK_TOKEN": ("xox[abposre]-", "xapp-"),
    "STRIPE_KEY": ("_live_", "_test_"),
    "GOOGLE_API_KEY": ("AIza",),
    "BEARER_TOKEN": ("earer",),
    # the key word, then what the CREDENTIAL regex wants right after it: ``:``/``=`` or `` is ``
    "CREDENTIAL": ("(?i)(?:" + "|".join(CREDENTIAL_NEEDLES) + r")\\?[\"']?(?:" + _WS + "*[:=]|" + _WS + "+is" + _WS + ")",),
    "EMAIL": ("@",),
    # the detector looks only at the countries of the IBAN registry
    "IBAN": ("(?:" + "|".join(sorted(IBAN_LENGTHS)) + ")[0-9]{2}",),
    # phone, card, SSN and IPv4 matches all hold a digit followed by five digits or separators
    "CREDIT_CARD": (r"[0-9][0-9 \-./()]{5}",),
    "US_SSN": (r"[0-9][0-9 \-./()]{5}",),
    "PHONE": (r"[0-9][0-9 \-./()]{5}",),
    "IP_ADDRESS": (r"[0-9][0-9 \-./()]{5}", "[0-9A-Fa-f]:[0-9A-Fa-f:]*:"),
}
GENERIC = "GENERIC_SECRET"


def _escape(word: str) -> str:
    return "".join(c if c.isalnum() else f"\\x{ord(c):02x}" for c in word)


class Prefilter:
    """The compiled pass for a set of entity types (a Redactor's built-ins)."""

    __slots__ = ("_always", "_db", "_entities", "_generic_id", "_local")

    def __init__(self, entities: tuple[str, ...] | list[str]):
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
                self._entities.append(entity)
        self._generic_id = -1
        if GENERIC in entities:
            self._generic_id = len(self._entities)
            self._entities.append(GENERIC)
            for word in CONTEXT_WORDS:
                if word.isascii():  # the pass only sees ASCII text
                    exprs.append(_escape(word).encode())
                    ids.append(self._generic_id)
                    flags.append(hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_SOM_LEFTMOST)
        #: entity types without triggers (none today) are never skipped
        self._always = frozenset(e for e in entities if e not in TRIGGERS and e != GENERIC)
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=exprs, ids=ids, elements=len(exprs), flags=flags)
        self._local = threading.local()  # Hyperscan's scratch space is per thread

    def scan(self, text: str) -> tuple[set[str], list[int] | None]:
        """The entity types whose triggers occur in ``text``, and where credential words start (``None``:
        not known). ``text`` must pass :func:`ascii_classes`: its non-ASCII characters are symbols
        (``€``, ``—``, emoji), which no trigger holds and which break a trigger in UTF-8 as they do in
        the text."""
        local = self._local
        scratch = getattr(local, "scratch", None)
        if scratch is None:
            scratch = local.scratch = hyperscan.Scratch(self._db)
        active: set[str] = set(self._always)
        starts: list[int] = []
        entities = self._entities
        generic = self._generic_id

        def on_match(i: int, start: int, end: int, flags: int, ctx: object) -> None:
            if i == generic:
                starts.append(start)
            else:
                active.add(entities[i])

        ascii_text = text.isascii()
        data = text.encode("ascii") if ascii_text else text.encode("utf-8", "surrogatepass")
        self._db.scan(data, match_event_handler=on_match, scratch=scratch)
        if starts:
            active.add(GENERIC)
            starts.sort()
        if starts and not ascii_text:  # UTF-8 byte offsets → character offsets (a few words per text)
            starts = [len(data[:b].decode("utf-8", "surrogatepass")) for b in starts]
        return active, starts


def make_prefilter(entities: tuple[str, ...] | list[str]) -> Prefilter | None:
    """A prefilter for ``entities``, or ``None`` without the ``hyperscan`` wheel (every detector runs)."""
    if hyperscan is None:
        return None
    return Prefilter(entities)
