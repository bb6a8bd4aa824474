"""Built-in detectors: compiled regexes, cheap pre-filters and validators for each entity type.

A detector answers "where in this text are values of my entity type?" with ``(start, end)`` pairs.
Every detector has a pre-filter (a substring or character test that costs ~nothing) so that the
regex only runs on text that could hold a match; most prompt text is rejected by the pre-filters.
Validators (Luhn, mod-97, SSN rules, IP octets, ...) keep look-alikes such as order numbers,
timestamps and version strings out.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable

from ._generic import CONTEXT_WORDS as GENERIC_CONTEXT_WORDS
from ._generic import GenericSecretDetector, _find_all

Span = tuple[int, int]

# ----------------------------------------------------------------------------------------------
# Validators
# ----------------------------------------------------------------------------------------------


#: a Luhn digit doubled, its digits summed (``7`` → ``14`` → ``5``), as an ASCII digit
_LUHN_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")


def luhn_ok(digits: str) -> bool:
    """The Luhn check (for ASCII digits: the doubled ones by one ``bytes.translate``, then the sum of the bytes,
    less ``48`` each: C-level calls, not a Python loop)."""
    if digits.isascii() and digits.isdigit():
        b = digits.encode()
        return (sum(b[::-2]) + sum(b[-2::-2].translate(_LUHN_DOUBLED)) - 48 * len(b)) % 10 == 0
    total = 0  # other digits ``\d`` takes (``٣``): as the check always took them, by code point
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_CARD_PREFIX = re.compile(r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|3(?:0[0-5]|[68])|35|6(?:011|5|4[4-9]|2)")


def card_ok(value: str) -> bool:
    """A card candidate (digits, each maybe after one space or ``-``: what the CREDIT_CARD regex matches, or
    the part of it before a separator) is a card number. (Each test refuses on its own: their order is the
    cheapest, not the one they were written in.)"""
    space, dash = " " in value, "-" in value
    if space and dash:  # one kind of separator: "4111 1111-1111 1111" is not how anyone writes a card
        return False
    sep = " " if space else "-" if dash else ""
    digits = value.replace(sep, "") if sep else value
    if not 13 <= len(digits) <= 19 or not _CARD_PREFIX.match(digits):
        return False
    if sep:  # the groups, split at the separator (lengths by map, the 4s by count: no generator)
        sizes = list(map(len, value.split(sep)))
        if sizes != [4, 6, 5] and sizes != [4, 6, 4] and not (
                len(sizes) >= 4 and 1 <= sizes[-1] <= 4 and sizes[:-1].count(4) == len(sizes) - 1):
            return False
    if digits.count(digits[0]) == len(digits):  # one digit repeated
        return False
    return luhn_ok(digits)


#: IBAN length per country (ISO 13616 registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "LY": 25, "SD": 18, "BI": 27,
    "DJ": 27, "SO": 23, "NI": 28, "RU": 33, "FK": 18, "OM": 23, "MN": 20, "YE": 30,
}


#: ``A`` → ``10`` … ``Z`` → ``35``: ISO 7064's letters as numbers (what ``str(int(c, 36))`` gives)
_IBAN_LETTERS = {ord(c): str(int(c, 36)) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"}


#: an ASCII letter or digit → what ``translate(_IBAN_LETTERS)`` makes of it (a digit stays itself)
_IBAN_ALNUM = {chr(c): v for c, v in _IBAN_LETTERS.items()} | {d: d for d in "0123456789"}


#: a registry country's letters as ISO 7064's numbers (``DE`` → ``1314``)
_IBAN_COUNTRY_NUMBER = {cc: cc.translate(_IBAN_LETTERS) for cc in IBAN_LENGTHS}


def iban_ok(compact: str) -> bool:
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    bban = compact[4:]
    if bban.isdecimal() and compact[2:4].isdecimal():  # no letter but the country's: no translate (1.4 us)
        return int(bban + _IBAN_COUNTRY_NUMBER[compact[:2]] + compact[2:4]) % 97 == 1
    rearranged = bban + compact[:4]
    if not rearranged.isalnum():
        return False
    if rearranged.isascii():  # ASCII letters and digits, all keys of _IBAN_ALNUM: joined, not translated (0.4 us less)
        return int("".join(map(_IBAN_ALNUM.__getitem__, rearranged))) % 97 == 1
    try:  # one translate instead of a conversion per character (``int`` takes Unicode digits as they are)
        number = int(rearranged.translate(_IBAN_LETTERS))
    except ValueError:
        return False
    return number % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    return (area != "000" and area != "666" and area[0] != "9" and group != "00" and serial != "0000"
            and area + group + serial not in ("123456789", "078051120", "219099999"))


def ipv4_ok(value: str) -> bool:
    """``value``, a match of the IPv4 regex (1-3 digits, three dots), is an address (not a version)."""
    parts = value.split(".")
    if len(parts) != 4:
        return False
    if value.isascii():  # ASCII digits: compared as strings, not made ints (0.25 vs 0.55 us)
        for p in parts:
            if len(p) > 1 and (p[0] == "0" or len(p) > 3 or (len(p) == 3 and p > _OCTET_MAX)):
                return False
        # no leading zero: one digit is below 10
        return not (parts[1] == parts[2] == parts[3] == "0" and len(parts[0]) == 1)
    for p in parts:
        if len(p) > 1 and p[0] == "0":
            return False
        if int(p) > 255:
            return False
    # "1.0.0.0"-like sequences are far more often versions than hosts
    return not (parts[1] == parts[2] == parts[3] == "0" and int(parts[0]) < 10)


_OCTET_MAX = "255"
_HEX_COLON = frozenset("0123456789abcdefABCDEF:")
#: eight groups of hex digits, no ``::``: an address as it is (``ipaddress`` takes every such value)
_V6_FULL = re.compile(r"(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}")
_HEXTETS = 8
_HEXTET_DIGITS = 4


def ipv6_ok(value: str) -> bool:
    value = value.split("%", 1)[0]
    if _V6_FULL.fullmatch(value):
        return True
    if "." not in value and _HEX_COLON.issuperset(value):
        # hex groups and colons only: what ``ipaddress.IPv6Address`` checks of them (3-9 parts, no group longer
        # than 4, eight parts or one ``::``, ends empty only as part of it), without building the address (4 us)
        parts = value.split(":")
        n = len(parts)
        if n - parts.count("") < 2 or ("::" not in value and n < 8):
            return False
        if n < 3 or n > _HEXTETS + 1 or max(map(len, parts)) > _HEXTET_DIGITS:
            return False
        inner = parts[1:-1].count("")
        if inner == 0:
            return n == _HEXTETS and parts[0] != "" and parts[-1] != ""
        if inner > 1:
            return False
        skip = parts.index("", 1, n - 1)
        hi, lo = skip, n - skip - 1
        if not parts[0]:
            hi -= 1
            if hi:
                return False
        if not parts[-1]:
            lo -= 1
            if lo:
                return False
        return hi + lo < _HEXTETS
    groups = [g for g in value.split(":") if g]
    if len(groups) < 2 and "." not in value:
        return False
    if "::" not in value and value.count(":") < 7:
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def jwt_ok(value: str) -> bool:
    head = value.split(".", 1)[0]
    ok = _JWT_HEADS.get(head)
    if ok is None:
        try:
            raw = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
            obj = json.loads(raw)
        except (binascii.Error, ValueError, UnicodeDecodeError):
            ok = False
        else:
            ok = isinstance(obj, dict) and ("alg" in obj or "typ" in obj)
        if len(_JWT_HEADS) >= _JWT_HEADS_MAX:
            _JWT_HEADS.clear()
        _JWT_HEADS[head] = ok
    return ok


#: what :func:`jwt_ok` said of a header (the part before the first dot): a few algorithms and types make
#: most headers one of a few strings, and decoding one costs 2-3 us
_JWT_HEADS: dict[str, bool] = {}
_JWT_HEADS_MAX = 1024


# ----------------------------------------------------------------------------------------------
# Phones
# ----------------------------------------------------------------------------------------------

# A run of digits with the separators people type; validated by structure below.
_PHONE_CAND = re.compile(
    r"(?<![\w+\-./#@:])(?<!\d[ \-.])(?:\+|00)?\(?\d[\d()\- ./]{5,22}\d(?!(?!x\d)[\w@]|[\-./]\d|[ \-]\d)"
)
_GROUPS = re.compile(r"\d+")
#: the phone words (lower case), for ``_PHONE_CONTEXT`` and ``_PHONE_CONTEXT_LOW``
_PHONE_WORDS = (
    r"(?:phone|tel\b|telephone|call|mobile|cell|whats\s?app|sms|text\s+me|fax|contact|reach|number is|"
    r"dial|ring|handy|portable|celular|telefone|téléphone|telefon)"
)
_PHONE_CONTEXT = re.compile("(?i)" + _PHONE_WORDS)
#: ``_PHONE_CONTEXT`` without ``(?i)``, for a lower-cased ASCII window: ``re`` then skips to the words' first
#: letters at C speed (~0.7 us a window instead of ~3.8 for the caseless alternation)
_PHONE_CONTEXT_LOW = re.compile(_PHONE_WORDS)
_E164_CC = (
    "1", "7", "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47",
    "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65", "66", "81",
    "82", "84", "86", "90", "91", "92", "93", "94", "95", "98", "212", "213", "216", "234", "254", "351",
    "352", "353", "354", "358", "370", "371", "372", "380", "420", "421", "852", "886", "971", "972",
    "966", "974",
)


def _phone_context(text: str, start: int) -> bool:
    """``_PHONE_CONTEXT.search(text, start - 40, start)``: for an ASCII window (where ``(?i)`` is ``lower()``: no
    ASCII character matches another caselessly but its other case, and every letter of the words is lower case)
    by ``_PHONE_CONTEXT_LOW`` on the lower-cased 40 characters (``tel\\b`` at the window's end: a boundary there
    too, as ``endpos`` makes it; ``\\s`` and ``\\b`` are the same on the lower-cased ASCII characters)."""
    before = text[start - 40 if start > 40 else 0:start]
    if before.isascii():
        return _PHONE_CONTEXT_LOW.search(before.lower()) is not None
    return _PHONE_CONTEXT.search(text, max(0, start - 40), start) is not None


def _nanp_ok(ten: str) -> bool:
    return ten[0] in "23456789" and ten[3] in "23456789"


def phone_ok(text: str, start: int, end: int) -> bool:
    raw = text[start:end]
    # digits = everything but the separators the candidate regex admits
    return _phone_raw_ok(text, start, raw, len(raw) - sum(map(raw.count, _PHONE_SEPARATORS)))


def _phone_raw_ok(text: str, start: int, raw: str, n: int, groups: list[str] | None = None,
                  digits: str | None = None) -> bool:
    """:func:`phone_ok` of ``raw = text[start:...]`` with ``n`` digits (its ``_GROUPS.findall`` and their
    ``join``, if known)."""
    # no format below takes fewer than 8 or more than 17 (most candidates are dates, times and
    # order numbers: cut early)
    if n < 8 or n > 17 or (n < 10 and raw[0] != "+"):
        return False
    if raw.isdecimal():
        # one group of digits (timestamps, order and tracking numbers): of the formats below only
        # the bare number after a phone word, and never after "00"
        if raw.startswith("00") or not ((n == 10 and (_nanp_ok(raw) or raw[0] in "6789"))
                                        or (n in (10, 11) and raw[0] == "0" and raw[1] != "0")):
            return False
        return _phone_context(text, start)
    if raw.count("(") != raw.count(")") or "  " in raw:
        return False
    # the separators are those of " -./" (digits and "()+" aside)
    if ("-" in raw) + ("." in raw) + ("/" in raw) > 1:  # "212-555.1234" is not a way anyone writes a number
        return False
    if groups is None:
        groups = _GROUPS.findall(raw)
    if digits is None:
        digits = "".join(groups)
    n = len(digits)
    if raw.startswith(("+", "00")):
        intl = digits[2:] if raw.startswith("00") else digits
        if not 8 <= len(intl) <= 15 or len(groups) > 7:
            return False
        if raw.startswith("00") and len(groups) < 2:
            return False
        if intl.startswith("1"):
            return len(intl) == 11 and _nanp_ok(intl[1:])
        if not intl.startswith(_E164_CC):
            return False
        return not (len(groups) == 1 and len(intl) < 10)
    sizes = [len(g) for g in groups]
    if "/" in raw and not (digits.startswith("0") and len(groups) == 2):
        return False
    if "." in raw and len(groups) < 3:
        return False
    # US / NANP: (212) 555-1234, 212-555-1234, 212.555.1234, 1-800-555-0199, 212 555 1234
    if n == 10 and sizes == [3, 3, 4] and _nanp_ok(digits):
        return True
    if n == 11 and sizes == [1, 3, 3, 4] and digits[0] == "1" and _nanp_ok(digits[1:]):
        return True
    if digits.startswith("0") and len(groups) > 1:
        # UK: 020 7946 0958, 0161 496 0000, 07700 900123, 01632 960001
        if n == 11 and digits[1] in "123789" and 2 <= len(groups) <= 3 and "(" not in raw:
            return True
        # FR: 01 23 45 67 89, 06.12.34.56.78
        if n == 10 and digits[1] in "123456789" and sizes == [2, 2, 2, 2, 2]:
            return True
        # DE: 030 12345678, 0151 23456789, 089/1234567, (030) 1234567
        if 10 <= n <= 12 and digits[1] in "123456789" and len(groups) in (2, 3) and 3 <= sizes[0] <= 5:
            return True
        # IN with trunk prefix: 098765 43210, 0 98765 43210
        return n == 11 and digits[1] in "6789" and sizes in ([6, 5], [1, 5, 5])
    # IN mobile: 98765 43210, 98765-43210
    if n == 10 and digits[0] in "6789" and sizes == [5, 5]:
        return True
    # BR: (11) 91234-5678, (21) 2345-6789, 11 91234-5678
    if n in (10, 11) and sizes[0] == 2 and len(groups) == 3 and digits[0] != "0" and digits[1] != "0":
        if n == 11 and digits[2] == "9" and sizes[1:] == [5, 4]:
            return True
        if n == 10 and sizes[1:] == [4, 4]:
            return True
    # a bare run of digits after a phone word: "call me at 2125551234", "Tel 0301234567"
    if len(groups) == 1 and ((n == 10 and (_nanp_ok(digits) or digits[0] in "6789"))
                             or (n in (10, 11) and digits[0] == "0" and digits[1] != "0")):
        return _phone_context(text, start)
    return False


_PHONE_SEPARATORS = " -./()+"
#: ``bytes.translate``'s table that makes each of ``_PHONE_SEPARATORS`` a space
_SEPARATORS_TO_SPACES = bytes.maketrans(_PHONE_SEPARATORS.encode(), b" " * len(_PHONE_SEPARATORS))


def digit_count(candidate: str) -> int:
    """Digits in a phone or card candidate, which holds nothing but digits and ``_PHONE_SEPARATORS``
    (``str.count`` is several times faster than ``str.translate`` or a regex here)."""
    return len(candidate) - sum(map(candidate.count, _PHONE_SEPARATORS))


# ----------------------------------------------------------------------------------------------
# Detector plumbing
# ----------------------------------------------------------------------------------------------


class Text:
    """The text being scanned, with what several detectors share computed once (lazily)."""

    __slots__ = ("_lower", "_num_starts", "ascii", "claimed", "context_starts", "digit_runs", "finders",
                 "positions", "scannable", "text")

    def __init__(self, text: str):
        self.text = text
        #: where GENERIC_SECRET's credential words can start, when the prefilter found them
        self.context_starts: list[int] | None = None
        #: spans found by detectors of a higher priority (for GENERIC_SECRET, which runs last)
        self.claimed: list[tuple[int, int]] | None = None
        #: the detectors may use their faster ``re.ASCII`` variants (see :func:`ascii_classes`); the
        #: Hyperscan pass may scan it (see :func:`pass_safe`)
        self.ascii, self.scannable = text_classes(text)
        self._lower: str | None = None
        self._num_starts: list[int] | None = None
        #: per digit-run entity type, the runs it can match in, when the prefilter found them
        self.digit_runs: dict[str, list[tuple[int, int]]] | None = None
        #: per entity type of the prefilter's ``POSITIONS``, every place its regex can start, when the
        #: prefilter ran (sorted)
        self.positions: dict[str, list[int]] | None = None
        #: ``needles → finder`` of :func:`find_all` in ``lower``, when the prefilter has them
        self.finders: dict | None = None

    @property
    def lower(self) -> str:
        if self._lower is None:
            self._lower = self.text.lower()
        return self._lower

    def num_starts(self) -> list[int]:
        """Where a phone, card, SSN or IPv4 can start: ``+``, ``(`` or a digit, not after a letter,
        digit or ``_``, and followed by a digit-and-separator run of at least six characters."""
        if self._num_starts is None:
            rx = _NUM_START_ASCII if self.ascii else _NUM_START
            self._num_starts = [m.start() for m in rx.finditer(self.text)]
        return self._num_starts


# A superset of the start positions of the digit-run detectors' regexes: each of them refuses a
# start right after a word character, and each match holds a run ``\d[\d \-./()]{5,}``. The character class
# comes first (the lookbehind is moved after it) so that ``re`` skips to candidates at C speed.
# (The lookahead runs after that first character: a digit needs five more run characters, ``+``/``(``
# a digit, maybe after one more ``+``/``(``.)
_NUM_START = re.compile(r"[+(\d](?<!\w[+(\d])(?=[\d \-./()]{5}|[+(]?\d[\d \-./()]{5})")
_NUM_START_ASCII = re.compile(_NUM_START.pattern, re.ASCII)
_WS = re.compile(r"\s")


def windows(text: str, spans: Iterable[Span], before: int, after: int) -> list[Span]:
    """Merged ``[start - before, end + after]`` windows, each extended to the next whitespace so
    that a token is never cut at a window's end (capped at 64 KiB); ``spans`` sorted.

    (One pass: a window is extended when the next span no longer reaches it, and merged with the window
    before it when the extension reaches that one; ``test_windows_are_those_of_the_two_pass_form`` checks
    it against the two-pass form it replaced, which took twice the time.)"""
    n = len(text)
    result: list[Span] = []
    cs = ce = -1  # the window being merged (none: cs < 0)
    for s, e in spans:
        ws = s - before if s > before else 0
        we = e + after
        if we > n:
            we = n
        if ws <= ce:
            if we > ce:
                ce = we
            continue
        if cs >= 0:
            _close(result, text, n, cs, ce)
        cs, ce = ws, we
    if cs >= 0:
        _close(result, text, n, cs, ce)
    return result


def _close(result: list[Span], text: str, n: int, cs: int, ce: int) -> None:
    """:func:`windows`' last step for the window ``[cs, ce]``: extended to the next whitespace (capped at
    64 KiB), then merged with the window before it when the extension reached that one, else appended."""
    if ce < n:
        m = _WS.search(text, ce, ce + 65536)
        ce = m.start() if m else min(n, ce + 65536)
    if result and cs <= result[-1][1]:
        last = result[-1]
        result[-1] = (last[0], ce if ce > last[1] else last[1])
    else:
        result.append((cs, ce))


def lower_find_all(ctx: Text, needles: tuple[str, ...]) -> list[Span]:
    """:func:`find_all` of ``needles`` in ``ctx.lower``, by the prefilter's finder for them if it has one."""
    finders = ctx.finders
    finder = finders.get(needles) if finders is not None else None
    return find_all(ctx.lower, needles) if finder is None else finder.spans(ctx.lower)


def find_all(hay: str, needles: tuple[str, ...]) -> list[Span]:
    """Positions of every needle (``str.find`` runs at C speed), sorted."""
    out = []
    for needle in needles:
        i = hay.find(needle)
        while i != -1:
            out.append((i, i + len(needle)))
            i = hay.find(needle, i + 1)
    out.sort()
    return out


class Detector:
    """One entity type: pre-filter → regex → validator. ``group`` picks the part to redact.

    With ``anchor``, the regex runs only in windows around the anchor's hits (cheap substring or
    digit-run searches), instead of over the whole text.
    """

    __slots__ = ("anchor", "ascii_regex", "by_position", "entity", "gate", "group", "prefilter", "priority", "regex",
                 "starts", "trim", "trim_min_digits", "validate", "window_starts")

    def __init__(self, entity: str, regex: re.Pattern[str], prefilter: Callable[[str], bool] | None,
                 validate: Callable[[str, re.Match[str]], bool] | None = None, group: int | str = 0,
                 priority: int = 50, trim: Callable[[str, int, int], bool] | None = None,
                 anchor: Callable[[Text], list[Span]] | None = None,
                 starts: Callable[[Text], list[int]] | None = None,
                 window_starts: Callable[[str, int, int], list[int]] | None = None, trim_min_digits: int = 0,
                 gate: str | None = None):
        self.entity = entity
        #: what the Hyperscan pass must report for this detector to run (its type, or one trigger of it)
        self.gate = gate or entity
        self.regex = regex
        self.prefilter = prefilter
        self.validate = validate
        self.group = group
        self.priority = priority
        #: digit-run detectors: on a failed candidate, retry without its last one or two groups
        #: ("card 4111 1111 1111 1111 2 times" must not hide the card).
        self.trim = trim
        self.anchor = anchor
        #: with ``starts``, the regex is tried (``match``) only at these sorted positions, which
        #: must include every position where it can match: the same matches ``finditer`` finds,
        #: without running the pattern at every character in between. ``None`` from it: not known
        #: (the pass did not run), the pre-filter, anchor or ``finditer`` decide.
        self.starts = starts
        #: the same inside each anchor window: ``(text, ws, we)`` → sorted candidate starts
        self.window_starts = window_starts
        #: ``trim`` fails below this many digits, and shortening drops at least one: a candidate
        #: with no more than this is not retried (most are dates such as 2024-05-11)
        self.trim_min_digits = trim_min_digits
        self.ascii_regex = ascii_variant(regex)
        #: with the pass's positions, ``find`` is :func:`matches_at_positions` of this detector alone: the
        #: Redactor runs such detectors in one loop (a plain detector whose starts are the pass's positions
        #: for its gate, with no trim and the whole match as its value)
        self.by_position = (type(self) is Detector and trim is None and group == 0
                            and getattr(starts, "pass_gate", None) == self.gate)

    def find(self, text: str, ctx: Text | None = None) -> list[Span]:
        if ctx is None:
            ctx = Text(text)
        regex = self.ascii_regex if ctx.ascii else self.regex
        if self.starts is not None:
            starts = self.starts(ctx)
            if starts is not None:  # every place a match can start: the pre-filter is implied
                return self._spans(text, _matches_at(regex, text, starts))
        if self.prefilter is not None and not self.prefilter(text):
            return []
        if self.anchor is None:
            return self._spans(text, regex.finditer(text))
        spans: list[Span] = []
        window_starts = self.window_starts
        for ws, we in self.anchor(ctx):
            if window_starts is None:
                spans.extend(self._spans(text, regex.finditer(text, ws, we)))
            else:
                spans.extend(self._spans(text, _matches_at(regex, text, window_starts(text, ws, we), ws, we)))
        return spans

    def _spans(self, text: str, matches: Iterable[re.Match[str]]) -> list[Span]:
        validate = self.validate
        group = self.group
        trim = self.trim
        out: list[Span] = []
        for m in matches:
            if validate is not None and not validate(text, m):
                if trim is not None and digit_count(m.group()) > self.trim_min_digits:
                    s = m.start()
                    e = m.end()
                    for _ in range(2):
                        cut = _LAST_SEP.search(text, s, e)
                        if cut is None:
                            break
                        e = cut.start()
                        if digit_count(text[s:e]) < self.trim_min_digits:
                            break  # and a further cut has fewer still
                        if trim(text, s, e):
                            out.append((s, e))
                            break
                continue
            s, e = m.span(group)
            if s < e:
                out.append((s, e))
        return out


def matches_at_positions(text: str, ctx: Text, group: Iterable[tuple[int, Detector]], add: Callable) -> None:
    """``add((start, -priority, start - end, index, end, entity))`` for each span ``find`` of each
    ``(index, detector)`` of ``group`` (``by_position`` detectors) gives on ``ctx``, which holds the pass's
    positions: what ``_spans(text, _matches_at(regex, text, starts))`` gives, in one loop for all of them
    instead of three calls per detector."""
    positions = ctx.positions
    ascii_text = ctx.ascii
    n = len(text)
    for k, det in group:
        starts = positions.get(det.gate)
        if not starts:
            continue
        match = (det.ascii_regex if ascii_text else det.regex).match
        validate = det.validate
        boundary = validate is _boundary  # then checked here, without a call
        prio = -det.priority
        entity = det.entity
        after = 0  # like finditer: no match starts inside the previous one
        for c in starts:
            if c < after:
                continue
            m = match(text, c, n)
            if m is None:
                continue
            s, e = m.span()
            after = e if e > c else c + 1
            if boundary:
                if s and (text[s - 1].isalnum() or text[s - 1] == "_"):
                    continue
            elif validate is not None and not validate(text, m):
                continue
            if s < e:
                add((s, prio, s - e, k, e, entity))


def _matches_at(regex: re.Pattern[str], text: str, starts: list[int], pos: int = 0,
                endpos: int | None = None) -> list[re.Match[str]]:
    """What ``regex.finditer(text, pos, endpos)`` yields, given every position where a match can start."""
    out = []
    match = regex.match
    if endpos is None:
        endpos = len(text)
    after = pos  # like finditer: no match starts inside the previous one
    for c in starts:
        if c < after:
            continue
        m = match(text, c, endpos)
        if m is not None:
            after = m.end() if m.end() > c else c + 1
            out.append(m)
    return out


#: non-ASCII characters that ``\\w`` or ``\\s`` match in Unicode mode but not with ``re.ASCII``
#: (``\\d`` and every letter that case-folds to ASCII, like ``ſ`` and the Kelvin sign, are ``\\w``).
NON_ASCII_WORD = re.compile(r"[^\W\x00-\x7f]")
NON_ASCII_SPACE = re.compile("[\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


_ASCII_BYTES = bytes(range(128))


def ascii_classes(text: str) -> bool:
    """Whether every regex matches ``text`` the same with ``re.ASCII`` as without: it is ASCII
    (O(1) in CPython), or its other characters (``€``, ``£``, ``—``, emoji, ...) are neither word
    characters nor spaces, which the ASCII and Unicode classes both treat alike.

    (What ``NON_ASCII_WORD`` and ``NON_ASCII_SPACE`` find, tested on the few non-ASCII characters
    only: ``re``'s Unicode ``\\w`` is ``str.isalnum()`` or ``_``, its ``\\s`` is ``str.isspace()``.
    Deleting the ASCII bytes of the UTF-8 form leaves them, ten times faster than a regex scan.)
    The ASCII controls ``\\x1c``-``\\x1f`` are Unicode spaces (``str.isspace()``) too: text with one
    keeps the Unicode regexes ("password\\x1f: x" is a pair to them)."""
    if _has_unicode_only_space(text):
        return False
    if text.isascii():
        return True
    others = text.encode("utf-8", "surrogatepass").translate(None, _ASCII_BYTES).decode("utf-8", "surrogatepass")
    for c in others:
        if c.isalnum() or c.isspace():
            return False
    return True


#: non-ASCII characters that ``re``'s ``(?i)`` matches with an ASCII letter, or whose ``lower()`` holds one
_FOLDS_TO_ASCII = frozenset("\u0130\u0131\u017f\u212a")


def text_classes(text: str) -> tuple[bool, bool]:
    """``(ascii_classes(text), ascii_classes(text) or pass_safe(text))``, the non-ASCII characters taken
    out once."""
    if _has_unicode_only_space(text):
        return False, False
    if text.isascii():
        return True, True
    others = text.encode("utf-8", "surrogatepass").translate(None, _ASCII_BYTES).decode("utf-8", "surrogatepass")
    # one regex search of the non-ASCII characters each, not a look at each one (text in Cyrillic or CJK holds
    # thousands): a word character or space (what ascii_classes looks for), a digit, space or fold (pass_safe)
    if _WORD_OR_SPACE.search(others) is None:
        return True, True
    if others.isalpha():  # letters only (no letter is a digit or a space): which of them fold to ASCII
        return False, not any(c in others for c in _FOLDS_TO_ASCII)
    return False, _PASS_UNSAFE.search(others) is None


#: ``str.isalnum()`` or ``str.isspace()`` (``re``'s ``\w`` is ``isalnum()`` or ``_``, its ``\s`` is ``isspace()``)
_WORD_OR_SPACE = re.compile(r"[\w\s]")
#: a non-ASCII character ``pass_safe`` refuses: ``isspace()`` (``\s``), ``isdigit()`` (``\d``, the decimal digits,
#: and the other digits: superscripts, circled and Ethiopic digits, ... as Python's Unicode database has them; a
#: digit missing here would be taken like a letter, which no ``\d`` matches either), or one of ``_FOLDS_TO_ASCII``
_PASS_UNSAFE = re.compile(
    "[\\s\\d\u0130\u0131\u017f\u212a\u00b2\u00b3\u00b9\u1369-\u1371\u19da\u2070\u2074-\u2079\u2080-\u2089"
    "\u2460-\u2468\u2474-\u247c\u2488-\u2490\u24ea\u24f5-\u24fd\u24ff\u2776-\u277e\u2780-\u2788\u278a-\u2792"
    "\U00010a40-\U00010a43\U00010e60-\U00010e68\U00011052-\U0001105a\U0001f100-\U0001f10a]")


def _has_unicode_only_space(text: str) -> bool:
    """Whether ``text`` holds one of the ASCII controls only the Unicode ``\\s`` matches (four ``in``
    scans at C speed)."""
    return "\x1c" in text or "\x1d" in text or "\x1e" in text or "\x1f" in text


def pass_safe(text: str) -> bool:
    """Whether the Hyperscan pass's triggers stay necessary for the detectors' Unicode regexes on
    ``text``: none of its characters beyond ASCII is a digit, a space, or a letter that ``(?i)`` or
    ``str.lower()`` turns into an ASCII one, and no ASCII character is a space only in Unicode
    (``\\x1c``-``\\x1f``). Then ``\\d``, ``\\s`` and case folding mean for it what the pass's byte
    classes mean; its other letters (``é``, ``я``, ``密``) only end or stop matches, in the regexes and
    in the UTF-8 the pass sees alike. (``GENERIC_SECRET``'s words are found apart: some are not ASCII.)"""
    others = text.encode("utf-8", "surrogatepass").translate(None, _ASCII_BYTES).decode("utf-8", "surrogatepass")
    for c in others:
        if c.isdigit() or c.isspace() or c in _FOLDS_TO_ASCII:
            return False
    return not _has_unicode_only_space(text)


def ascii_variant(regex: re.Pattern[str]) -> re.Pattern[str]:
    """The same pattern with ``re.ASCII``: identical matches on ASCII text (``\\d``, ``\\w``,
    ``\\s``, ``\\b`` and case folding differ only beyond ASCII) and faster, as ``re`` then tests
    character classes with a table lookup instead of Unicode database calls."""
    return re.compile(regex.pattern, (regex.flags & ~re.UNICODE) | re.ASCII)


def _anchor(needles: tuple[str, ...], before: int, after: int, lower: bool = False):
    def anchor(ctx: Text) -> list[Span]:
        if lower and len(ctx.lower) != len(ctx.text):  # "İ" lowers to two characters: no positions
            return [(0, len(ctx.text))]
        hits = lower_find_all(ctx, needles) if lower else find_all(ctx.text, needles)
        return windows(ctx.text, hits, before, after)

    return anchor


_ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def _boundary(text: str, m: re.Match[str]) -> bool:
    """No letter, digit or underscore right before the match (what a leading ``\\b`` would check,
    without stopping ``re`` from searching for the literal prefix)."""
    i = m.start()
    return i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")


def _has(*needles: str) -> Callable[[str], bool]:
    if len(needles) == 1:
        needle = needles[0]
        return lambda t: needle in t
    return lambda t: any(n in t for n in needles)


_LAST_SEP = re.compile(r"[ \-./]+\(?\d+\)?$")


_VERSION_CONTEXT = re.compile(r"(?i)\b(?:v|version|ver\.?|build|release|firmware|sdk|python|node|chrome)\s*$")
_SSN_CONTEXT = re.compile(r"(?i)(?:ssn|social security|social sec|sin\b|tax id|taxpayer)")
_AWS_CONTEXT_WORDS = ("aws", "secret", "akia", "asia", "access key")
_AWS_CONTEXT = re.compile("(?i)(?:" + "|".join(_AWS_CONTEXT_WORDS) + ")")
_ANY_DIGIT = re.compile("[0-9]")


def _v_card(text: str, m: re.Match[str]) -> bool:
    return card_ok(m.group(0))


def _trim_card(text: str, s: int, e: int) -> bool:
    return card_ok(text[s:e])


def _v_ssn(text: str, m: re.Match[str]) -> bool:
    if not ssn_ok(m.group("a"), m.group("g"), m.group("s")):
        return False
    if not m.group("sep"):  # a bare nine-digit number is an SSN only when the text says so
        return _ssn_context(text, m.start())
    return True


#: the words of ``_SSN_CONTEXT`` but ``sin\b`` ("social security" holds "social sec")
_SSN_WORDS = ("ssn", "social sec", "tax id", "taxpayer")


def _ssn_context(text: str, start: int) -> bool:
    """``_SSN_CONTEXT.search(text, start - 40, start)``: for ASCII text (where ``(?i)`` is ``lower()``) by
    ``in`` on the lower-cased 40 characters, ``sin\\b`` by ``find`` and the character after it (a boundary at the
    window's end too, as ``endpos`` makes it), 2-3 us less than the regex's caseless alternation."""
    before = text[start - 40 if start > 40 else 0:start]
    if not before.isascii():
        return _SSN_CONTEXT.search(text, max(0, start - 40), start) is not None
    low = before.lower()
    if any(w in low for w in _SSN_WORDS):
        return True
    i = low.find("sin")
    while i != -1:
        j = i + 3
        if j == len(low) or not (low[j].isalnum() or low[j] == "_"):
            return True
        i = low.find("sin", i + 1)
    return False


def _v_ipv4(text: str, m: re.Match[str]) -> bool:
    if not ipv4_ok(m.group(0)):
        return False
    return not _version_before(text, m.start())


#: the words of ``_VERSION_CONTEXT`` (``ver\.?`` as both)
_VERSION_WORDS = ("v", "version", "ver", "ver.", "build", "release", "firmware", "sdk", "python", "node", "chrome")
#: the words by their last character
_VERSION_ENDING: dict[str, tuple[str, ...]] = {}
for _word in _VERSION_WORDS:
    _VERSION_ENDING[_word[-1]] = _VERSION_ENDING.get(_word[-1], ()) + (_word,)
del _word


def _version_before(text: str, start: int) -> bool:
    r"""``_VERSION_CONTEXT.search(text, start - 12, start)``: for ASCII text (where ``(?i)`` is ``lower()`` and
    ``\s`` is ``isspace()``) by ``endswith`` on the lower-cased 12 characters less their trailing spaces (a word
    ends where ``\s*$`` starts: it ends with no space), and the boundary before the word tested on the character
    before it (``\b`` looks before the search's start too; every word starts with a letter), ~0.3 us less than the
    regex."""
    lo = start - 12 if start > 12 else 0
    before = text[lo:start]
    if not before.isascii():
        return _VERSION_CONTEXT.search(text, lo, start) is not None
    low = before.rstrip().lower()
    for word in _VERSION_ENDING.get(low[-1:], ()):  # most windows end with none of the words' last letters
        if low.endswith(word):
            p = lo + len(low) - len(word)
            if p == 0 or not (text[p - 1].isalnum() or text[p - 1] == "_"):
                return True
    return False


def _v_ipv6(text: str, m: re.Match[str]) -> bool:
    return ipv6_ok(m.group(0))


def _v_phone(text: str, m: re.Match[str]) -> bool:
    return phone_ok(text, m.start(), m.end())


#: the sizes of the first three digit groups of every phone not opened by ``+`` and not starting with ``0``:
#: NANP ``212-555-1234`` (3, 3, 4) and ``1-800-555-0199`` (1, 3, 3), BR ``(11) 91234-5678`` (2, 5, 4) and ``(21)
#: 2345-6789`` (2, 4, 4), IN ``98765 43210`` (5, 5, any: written 0); the other formats start with ``+`` or ``0``
#: or are one group of 10-11 digits. A trimmed candidate keeps its first groups but for the last one or two, and
#: the formats with three groups or more are found with all three: a candidate whose head is none of these (a date
#: ``2022-10-03 13``, an order number ``942-6135966-7899688``, a build ``10.0.13584.3940``, ``7816 0594
#: 5147``, an IPv4 address) holds no phone, trimmed or not
_PHONE_HEADS = frozenset({(3, 3, 4), (1, 3, 3), (2, 5, 4), (2, 4, 4), (5, 5, 0)})
#: IN 98765 43210's head (a name: Cython's inferred types reject the literal beside a tuple of lengths)
_FIVE_FIVE = (5, 5, 0)
#: what a candidate's first digit is when ``_PHONE_HEADS`` applies to its first three groups of digits (then it
#: is not opened by ``+`` nor starts with ``0``: ``00``, trunk ``0``), right at its start or after one ``(``
_NONZERO = "123456789"


#: how far past a run's end the digit-run regexes' look-aheads read: a match ends at the run's end at the
#: latest (it holds run characters only), and no look-ahead reads more than two characters after it (PHONE's
#: ``x\d``)
_RUN_LOOKAHEAD = 2


class RunDetector(Detector):
    """CREDIT_CARD, US_SSN, IPv4 and PHONE: with the pass's runs for the type, the regex's matches inside each run
    (``endpos`` just past it, for the look-aheads), one search per run instead of the run's
    :meth:`Text.num_starts` and a ``match`` at each (2-3x slower): every match lies inside one run (it holds run
    characters only), and a search tries every position there (``test_redact_digit_runs.py`` compares the two).

    A run is searched once (``search``, not ``finditer``: ~0.3 us less a run) when what is left of it after the
    first match is shorter than ``least``, the fewest characters a match holds: then that match is the only one
    ``finditer`` finds there; else ``finditer`` from the run's start finds them all."""

    __slots__ = ("least",)

    def __init__(self, *args, least: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        #: the fewest characters a match of the regex holds (``test_the_run_detectors_know_their_shortest_match``)
        self.least = least

    def find(self, text: str, ctx: Text | None = None) -> list[Span]:
        runs = ctx.digit_runs if ctx is not None else None
        if runs is None:  # the pass did not run: the starts over the whole text
            return Detector.find(self, text, ctx)
        spans = runs.get(self.entity)
        if not spans:
            return []
        regex = self.ascii_regex if ctx.ascii else self.regex
        search = regex.search
        least = self.least
        ahead = _RUN_LOOKAHEAD
        matches = []
        for rs, re_ in spans:
            m = search(text, rs, re_ + ahead)
            if m is not None:
                if re_ - m.end() < least:
                    matches.append(m)
                else:
                    matches.extend(regex.finditer(text, rs, re_ + ahead))
        return self._spans(text, matches)


class CardDetector(RunDetector):
    """CREDIT_CARD: ``Detector._spans`` with ``card_ok`` called here for each match (not through ``_v_card``, its
    declared validator); a match it refuses goes to ``Detector._spans`` for the trims (which checks it again: 0.04
    a dense prompt), so the trim loop is not written twice."""

    __slots__ = ()

    def _spans(self, text: str, matches: Iterable[re.Match[str]]) -> list[Span]:
        out: list[Span] = []
        for m in matches:
            if card_ok(m.group()):
                out.append(m.span())  # a match holds 13 digits at least: never empty
            else:
                out.extend(Detector._spans(self, text, (m,)))
        return out


class SsnDetector(RunDetector):
    """US_SSN: ``Detector._spans`` with its declared validator ``_v_ssn`` inline (the groups read in one call)."""

    __slots__ = ()

    def _spans(self, text: str, matches: Iterable[re.Match[str]]) -> list[Span]:
        out: list[Span] = []
        for m in matches:
            area, sep, group, serial = m.groups()
            # a bare nine-digit number is an SSN only when the text says so
            if ssn_ok(area, group, serial) and (sep or _ssn_context(text, m.start())):
                out.append(m.span())  # nine digits: never empty
        return out


class Ipv4Detector(RunDetector):
    """IPv4 (of IP_ADDRESS): ``Detector._spans`` with its declared validator ``_v_ipv4`` inline."""

    __slots__ = ()

    def _spans(self, text: str, matches: Iterable[re.Match[str]]) -> list[Span]:
        out: list[Span] = []
        for m in matches:
            if ipv4_ok(m.group()) and not _version_before(text, m.start()):
                out.append(m.span())  # four groups: never empty
        return out


class PhoneDetector(RunDetector):
    """Most phone candidates are dates, prices, versions and short order numbers: fewer than ten
    digits without a leading ``+``. Neither :func:`phone_ok` nor a trimmed candidate (fewer digits,
    same first character) can accept those, so they are dropped on their digit count alone. (The pass
    reports only runs where a phone can start: ``_prefilter.RUNS``.)"""

    __slots__ = ()

    def _spans(self, text: str, matches: Iterable[re.Match[str]]) -> list[Span]:
        # what Detector._spans does with validate=_v_phone, trim=phone_ok, trim_min_digits=8, the
        # digit count taken once
        out: list[Span] = []
        for m in matches:
            raw = m.group()
            # its groups of digits (``_GROUPS.findall``): a candidate holds digits and ``_PHONE_SEPARATORS`` only,
            # and no digit is a space: with the others made spaces, ``split`` gives them. Made spaces in its UTF-8
            # by one ``bytes.translate`` (~0.2 us less than six ``str.replace``; a non-ASCII digit's bytes are none
            # of them, and a candidate holds no lone surrogate: it is digits and separators)
            groups = raw.encode().translate(_SEPARATORS_TO_SPACES).decode().split()
            digits = "".join(groups)
            n = len(digits)
            if n < 10 and (n < 8 or raw[0] != "+"):
                continue
            c = raw[0]
            if c in _NONZERO or (c == "(" and raw[1] in _NONZERO):
                # its first three groups (0: none); the first starts with 1-9, at the start or after one "("
                f = len(groups[0])
                g = len(groups[1]) if len(groups) > 1 else 0
                if f < 10 and (_FIVE_FIVE if f == g == 5 else (f, g, len(groups[2]) if len(groups) > 2 else 0)) \
                        not in _PHONE_HEADS:
                    continue  # neither the candidate nor a trimmed one can be a phone (see _PHONE_HEADS)
            s, e = m.span()
            if _phone_raw_ok(text, s, raw, n, groups, digits):
                out.append((s, e))
                continue
            if n <= 8 or raw.isdecimal():  # no separator: nothing to cut at
                continue
            for _ in range(2):  # "call 212-555-1234 2 times": retry without the last group or two
                cut = _LAST_SEP.search(text, s, e)
                if cut is None:
                    break
                e = cut.start()
                if digit_count(text[s:e]) < 8:
                    break
                if phone_ok(text, s, e):
                    out.append((s, e))
                    break
        return out


def _v_jwt(text: str, m: re.Match[str]) -> bool:
    return jwt_ok(m.group(0))


def _v_aws_secret(text: str, m: re.Match[str]) -> bool:
    return _aws_secret_ok(text, m.start(), m.group(0))


def _aws_secret_ok(text: str, start: int, v: str) -> bool:
    """``v = text[start:start + 40]``, a run of ``[A-Za-z0-9/+]``, is an AWS secret access key."""
    kinds = ((v.lower() != v) + (v.upper() != v) + (_ANY_DIGIT.search(v) is not None)
             + ("/" in v or "+" in v))
    if kinds < 3:
        return False
    before = text[max(0, start - 200):start]
    if before.isascii():  # what the (?i) regex finds there: one of its words, in the lower-cased text
        low = before.lower()
        return any(w in low for w in _AWS_CONTEXT_WORDS)
    return bool(_AWS_CONTEXT.search(before))


#: an AWS secret key's run (``[A-Za-z0-9/+]{40}`` after none of its characters and before none of them nor
#: ``=``) with the character before it: ``re`` skips to that character (a space, mostly) at C speed, where the
#: pattern that starts at the run tries its look-behind at every letter of every word (2-3x slower)
_AWS_RUN = re.compile(r"[^A-Za-z0-9/+]([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])")
#: the characters of an AWS secret key's run
_AWS_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+"


#: where, from a context word's start, the character before an AWS secret key's run and the one after it are
_AWS_NEAR = (2, 242)
#: a byte of ``text.encode("ascii", "replace")`` (one byte per character: a non-ASCII one, a lone surrogate too, is
#: a ``?``) → 1 for a character of an AWS run (``[A-Za-z0-9/+]``), 2 for ``=``, 0 for every other
_AWS_RUN_BYTES = bytes(1 if chr(b) in _AWS_ALPHABET else 2 if b == ord("=") else 0 for b in range(256))
#: in those bytes, 40 run characters and a character that is neither one of them nor ``=``: where it is found after a
#: byte that is no run character, a match of the regex starts (it takes exactly 40, and no ``=`` after them)
_AWS_RUN_THEN_END = b"\x01" * 40 + b"\x00"


class AwsSecretDetector(Detector):
    """``finditer`` of the regex in each anchor window, found as :data:`_AWS_RUN` from the character before
    the window (a run at the very start of the text, with no character before it, by the regex itself).

    After the Hyperscan pass, where its context words start is known (``_prefilter.POSITIONS``): the runs are
    looked for only where ``_aws_secret_ok`` can take one (see :meth:`_near_words`)."""

    __slots__ = ()

    def find(self, text: str, ctx: Text | None = None) -> list[Span]:
        if ctx is None:
            ctx = Text(text)
        words = ctx.positions.get(self.entity) if ctx.positions is not None else None
        if words is not None:
            return self._near_words(text, words)
        out: list[Span] = []
        for ws, we in self.anchor(ctx):
            if ws == 0:
                m = self.regex.match(text, 0, we)
                if m is not None and _aws_secret_ok(text, 0, m.group()):
                    out.append(m.span())
                ws = 1  # the character before a run found below: at 0 or after
            for m in _AWS_RUN.finditer(text, ws - 1, we):
                s, e = m.span(1)
                if _aws_secret_ok(text, s, m.group(1)):
                    out.append((s, e))
        return out

    @staticmethod
    def _near_words(text: str, words: list[int]) -> list[Span]:
        """:meth:`find` given where every context word starts (sorted): the runs that start within 200 characters
        after one (as ``_aws_secret_ok`` wants), looked for in ``[w + 2, w + 242)`` for each word start ``w`` (a word
        is 3 characters or more; the range holds the character before the run and the one after it). Those are
        what the anchor windows hold, less runs no word is close enough to: a word starts each window, and a
        window reaches 260 characters past its last word. (A run cut at such a range's end, which the regex
        takes there, has no word within 200 before it: that word's range would reach further; so a range need
        not report it, and one that ends before the text's does not.)

        Found in each range's :data:`_AWS_RUN_BYTES` (``bytes.translate``, then ``bytes.find`` of
        :data:`_AWS_RUN_THEN_END` after the range's first character: C calls, 2x faster than ``_AWS_RUN``'s
        ``finditer``, which tries its pattern after every word): a find there not after a run character is a run
        of exactly 40 that no ``=`` follows (the text's end, a ``0`` put after the bytes of the range that ends
        there, too), after a character of the range: what ``_AWS_RUN`` matches in it. The next find starts past
        the one before, as ``finditer``'s next match starts at its end or after."""
        n = len(text)
        out: list[Span] = []
        first, last = _AWS_NEAR
        k = 0
        while k < len(words):
            a = words[k] + first
            b = words[k] + last
            k += 1
            while k < len(words) and words[k] + first <= b:
                b = words[k] + last
                k += 1
            if b < n:
                t = text[a:b].encode("ascii", "replace").translate(_AWS_RUN_BYTES)
            else:
                t = text[a:].encode("ascii", "replace").translate(_AWS_RUN_BYTES) + b"\x00"
            i = t.find(_AWS_RUN_THEN_END, 1)
            while i != -1:
                if t[i - 1] != 1:  # the run's start (a longer run is found at its last 40 characters)
                    s = a + i
                    v = text[s:s + 40]
                    if ((v.lower() != v) + (v.upper() != v) + (_ANY_DIGIT.search(v) is not None)
                            + ("/" in v or "+" in v)) >= 3:  # what _aws_secret_ok refuses first
                        # its other test: a context word in the 200 characters before the run, i.e. one that starts
                        # there (all are letters, but "access key" can run into a run that starts with its "key")
                        j = bisect_left(words, s - 200)
                        if j < len(words) and words[j] < s and not (
                                words[j] == s - 7 and text[s - 7:s + 3].lower() == "access key"):
                            out.append((s, s + 40))
                i = t.find(_AWS_RUN_THEN_END, i + 41)
        return out


_PK_HEAD = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_PK_TAIL = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")


class PrivateKeyDetector(Detector):
    """What the regex matches (its header; then up to the first footer after it, else to the end of the
    text), found as the header's match, then the footer's search after it (which skips to each ``-----END ``, its
    literal prefix, at C speed), instead of the lazy ``.*?`` trying the footer at every character of the key (2-3
    us per key)."""

    __slots__ = ()

    def find(self, text: str, ctx: Text | None = None) -> list[Span]:
        if ctx is None:
            ctx = Text(text)
        starts = self.starts(ctx)
        if starts is None:  # the pass did not run: the header's every place
            if not self.prefilter(text):
                return []
            starts = [s for s, _ in find_all(text, ("-----BEGIN ",))]  # overlapping ones too
        out: list[Span] = []
        after = 0  # like finditer: no match starts inside the one before
        for p in starts:
            if p < after:
                continue
            head = _PK_HEAD.match(text, p)
            if head is None:
                continue
            # the lazy ``.*?``: the first place after the header where a footer matches (else ``.*\Z``)
            tail = _PK_TAIL.search(text, head.end())
            end = len(text) if tail is None else tail.end()
            out.append((p, end))
            after = end if end > p else p + 1
        return out


#: the characters of a URL scheme (after its first letter)
_SCHEME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+.-")
#: how far before ``://`` its anchor window starts
_URL_BEFORE = 30


class UrlCredentialsDetector(Detector):
    """A match is a scheme right before ``://`` (a letter at a word boundary, then scheme characters), then the
    user info and ``@``. So the regex is tried (``match``) only where the scheme before each ``://`` can start:
    its run's first character and each letter after a ``+``, ``.`` or ``-`` in it (elsewhere in the run a letter
    or digit comes first: no ``\\b``). Nothing after ``://`` holds a space, and the anchor windows end at one
    (``://``, then to the next space): they cut only a scheme run longer than their 30 characters before it,
    and only there do the windows decide (and over 64 KiB). Each ``://`` is where the pass saw one
    (``_prefilter.POSITIONS``), else found by ``str.find``."""

    __slots__ = ()

    def find(self, text: str, ctx: Text | None = None) -> list[Span]:
        if "@" not in text:
            return []
        if ctx is None:
            ctx = Text(text)
        if len(text) > 65536:
            return Detector.find(self, text, ctx)
        hits = ctx.positions.get(self.entity) if ctx.positions is not None else None
        if hits is None:
            hits = _find_all(text, "://")
        match = (self.ascii_regex if ctx.ascii else self.regex).match
        back = _SCHEME_BEFORE.match
        out: list[Span] = []
        # (a match ends with "@", which neither a scheme nor "://" holds, so none starts inside the one before)
        for h in hits:
            # the start of the scheme characters' run before it (read back from one past the windows' reach)
            r = back(text, h - _URL_BEFORE - 1 if h > _URL_BEFORE + 1 else 0, h).end()
            if h - r > _URL_BEFORE:
                return Detector.find(self, text, ctx)
            for p in range(r, h):
                if text[p].isalpha() and (p == r or text[p - 1] in "+.-"):
                    m = match(text, p)
                    if m is not None:
                        out.append(m.span("ui"))  # what _spans gives (no validator; the group is never empty)
                        break
        return out


#: ``match(text, lo, h)`` ends after the last character in ``[lo, h)`` that is no scheme character (``lo``: none
#: is), where the run of them before ``h`` starts; the greedy ``.*`` goes back from ``h`` at C speed
_SCHEME_BEFORE = re.compile(r"(?s:.*[^A-Za-z0-9+.\-])?")


class BearerDetector(Detector):
    """Every match starts with ``[Bb]earer``: the regex is tried (``match``) at each ``[Bb]earer`` (where the pass
    saw one, ``_prefilter.POSITIONS``; else one character before each ``earer``, by ``str.find``) instead of
    searched for in each anchor window (``earer`` less 2, plus 40, to the next space). With the text's end as its
    end, it finds what a window finds (neither ``\\s+`` nor the token crosses the space a window ends at) unless
    40 spaces or more follow ``Bearer`` or the text is over 64 KiB, where the windows decide."""

    __slots__ = ()

    def find(self, text: str, ctx: Text | None = None) -> list[Span]:
        if ctx is None:
            ctx = Text(text)
        if len(text) > 65536:
            return Detector.find(self, text, ctx)
        starts = ctx.positions.get(self.entity) if ctx.positions is not None else None
        if starts is None:
            starts = [i - 1 for i in _find_all(text, "earer") if i]
        match = (self.ascii_regex if ctx.ascii else self.regex).match
        not_letter = _BEARER_NOT_LETTER.search
        out: list[Span] = []
        after = 0  # like finditer: no match starts inside the previous one
        for b in starts:
            if b >= after:
                m = match(text, b)
                if m is not None:
                    ts, te = m.span("tok")
                    if ts > b + 1 + _BEARER_WINDOW:  # spaces past the window's end: it stops them
                        return Detector.find(self, text, ctx)
                    after = m.end()
                    if not_letter(text, ts, te) is not None:  # _v_bearer, in the token's place in the text
                        out.append((ts, te))
        return out


#: where, from ``earer``'s start, its anchor window ends before it is extended to the next space (40 after it)
_BEARER_WINDOW = 45


#: a token character that is no letter (the token holds only ``[A-Za-z0-9\-._~+/]``: its digits are ASCII)
_BEARER_NOT_LETTER = re.compile(r"[0-9\-_.~+/]")


def _v_bearer(text: str, m: re.Match[str]) -> bool:
    """A digit or one of ``-_.~+/`` in the token (one search, not a generator over its characters)."""
    return _BEARER_NOT_LETTER.search(m.group("tok")) is not None


def _v_credential(text: str, m: re.Match[str]) -> bool:
    value = m.group("val")
    if value.startswith("<") and value.endswith(">"):  # already a redaction marker
        return False
    if m.group("is"):  # "my password is hunter2!": only password-looking words
        return any(not c.isalpha() for c in value)
    return True


class EmailDetector(Detector):
    """The regex is tried only where a match can start: in the run of local-part characters and dots right before
    an ``@`` (a local part holds no ``@``), not after one of the look-behind's characters — one or two places per
    address instead of every character.

    The anchor windows (``_EMAIL_BEFORE`` before each ``@``, 260 after it, to the next space; merged) change
    nothing but where a run longer than ``_EMAIL_BEFORE`` is cut: a match holds no space, so the regex finds the
    same with the text's end as its end as with the window's (which is a space or the text's end when the text is
    at most 64 KiB), and each window starts ``_EMAIL_BEFORE`` or more before each of its ``@``. So every ``@`` of
    the text is taken in one go, with no windows, when no run before one reaches further back than that (a
    text of at most 64 KiB); else in the windows."""

    __slots__ = ()

    def find(self, text: str, ctx: Text | None = None) -> list[Span]:
        if ctx is None:
            ctx = Text(text)
        if len(text) <= 65536:
            spans = self._at_signs(text, ctx, ((0, len(text)),), True)
            if spans is not None:
                return spans
        return self._at_signs(text, ctx, self.anchor(ctx), False)

    def _at_signs(self, text: str, ctx: Text, windows: Iterable[Span], whole: bool) -> list[Span] | None:
        """The matches at the ``@`` of each window; ``None`` (``whole``: the one window is the text, no anchor
        window) when the run before an ``@`` reaches further back than ``_EMAIL_BEFORE``, where a window can cut
        it."""
        match = (self.ascii_regex if ctx.ascii else self.regex).match
        at_sign = _EMAIL_AT.match
        special = _EMAIL_LOCAL_SPECIAL.search
        domain = _EMAIL_DOMAIN_END.match
        spans: list[Span] = []
        for ws, we in windows:
            after = ws  # what _matches_at does: no match starts inside the one before, in this window
            prev = ws  # after the "@" before (no run holds one)
            at = text.find("@", ws, we)
            while at != -1:
                # the run of local-part characters before the "@" (not before ``ws``): after the last character
                # that is none in the ``_EMAIL_BEFORE`` before it, and from ``ws`` when the run is longer; with the
                # match at the run's start
                lo = at - _EMAIL_BEFORE if at - _EMAIL_BEFORE > prev else prev
                r = at_sign(text, lo, we)
                i = r.start(1)
                if i == lo and lo > prev and text[lo - 1] in _EMAIL_LOCAL_CHARS:
                    if whole:  # a window may cut the run
                        return None
                    r = at_sign(text, prev, we)
                    i = r.start(1)
                # a start is not a "." nor after one of the look-behind's characters (the regex's own tests, in
                # the match at ``i``): inside the run only after a special character, and maybe the run's start
                if i >= after:
                    s, e = r.span(2)
                    if s >= 0:
                        spans.append((s, e))
                        after = e  # (a match is never empty)
                # the run's first special character (``at``: none); none when the match at the run's start took this
                # "@" ("first.last@example.com"): every start inside the run is before its end (``after``)
                sp = r.end(1) if after < at else at
                if sp < at - 1:
                    # a match from a start inside the run has its local part end at this "@" (the run holds
                    # local-part characters only): there is none when the domain does not match after it or the run
                    # ends in "."; none from a start before the run's last "..". Said here once, not found out by
                    # the match at each start (a 20 KB run of "a=" between two "@" took 0.9 s: quadratic)
                    if text[at - 1] == "." or domain(text, at + 1, we) is None:
                        sp = at
                    else:
                        dd = text.rfind("..", sp, at)
                        if dd != -1:
                            m = special(text, dd, at - 1)
                            sp = at if m is None else m.start()
                while sp < at - 1:  # (one right before the "@" starts nothing)
                    j = sp + 1  # after a special character, unless a "." follows it
                    if j >= after and text[j] != ".":
                        found = match(text, j, we)
                        if found is not None:
                            s, e = found.span()
                            after = e if e > j else j + 1
                            if s < e:
                                spans.append((s, e))
                    m = special(text, j, at - 1)
                    sp = at if m is None else m.start()
                prev = at + 1
                at = text.find("@", prev, we)
        return spans


class IbanDetector(Detector):
    """Takes exactly as many characters as the country's IBAN length, so a following word in
    capitals ("... 0130 00 ASAP") does not spoil the mod-97 check."""

    __slots__ = ()

    def find(self, text: str, ctx: Text | None = None) -> list[Span]:
        at = ctx.positions if ctx is not None else None
        if at is None:
            regex = self.ascii_regex if (ctx.ascii if ctx is not None else ascii_classes(text)) else self.regex
            starts = [m.start() for m in regex.finditer(text)]
        else:
            # the pass's ``CC00`` positions of the registry's countries: ``[A-Z][A-Z]\d\d`` is there, and its
            # matches cannot overlap, so the regex's look-behind (no ``\w`` before) is all that is left of it
            # (``\w``: ``isalnum`` or ``_``, which ``ascii_classes`` text means in ASCII too), tested in the loop
            starts = at.get(self.entity, ())
        n_text = len(text)
        out: list[Span] = []
        for start in starts:
            if at is not None and start and (text[start - 1].isalnum() or text[start - 1] == _UNDERSCORE):
                continue
            length = IBAN_LENGTHS.get(text[start:start + 2])
            if length is None:
                continue
            # the rest: ``length - 4`` capitals or digits, each maybe after one space
            rest = _iban_rest(text, start + 4, length)
            if rest is None:
                continue
            i = rest.end()
            if i < n_text and text[i].isalnum():
                continue
            if iban_ok(text[start:start + 4] + rest.group().replace(" ", "")):
                out.append((start, i))
        return out


_UNDERSCORE = "_"


#: IBAN length → the characters after its first four: each a capital or digit, maybe after one space
_IBAN_REST = {n: re.compile(f"(?: ?[A-Z0-9]){{{n - 4}}}") for n in set(IBAN_LENGTHS.values())}
#: the same as it is mostly written, compact or in groups of four (one repeat, not one group per character)
_IBAN_COMPACT = {n: re.compile(f"[A-Z0-9]{{{n - 4}}}") for n in set(IBAN_LENGTHS.values())}
_IBAN_GROUPED = {n: re.compile(f"(?: [A-Z0-9]{{4}}){{{(n - 4) // 4}}}"
                                + (f" [A-Z0-9]{{{(n - 4) % 4}}}" if (n - 4) % 4 else ""))
                 for n in set(IBAN_LENGTHS.values())}


def _iban_rest(text: str, i: int, length: int) -> re.Match[str] | None:
    """``_IBAN_REST[length].match(text, i)``, compact or grouped by four first: where either matches, the general
    form does too, and ends at the same place (each character maybe after one space: no choice is left). Of the two,
    only the grouped form can match at a space and only the compact one elsewhere: the one that can is tried."""
    fast = (_IBAN_GROUPED if text.startswith(" ", i) else _IBAN_COMPACT)[length].match(text, i)
    return fast or _IBAN_REST[length].match(text, i)


# ``\b[A-Z]{2}\d{2}`` with the boundary checked after the first letter: a leading character class
# lets ``re`` skip to capitals at C speed (three times faster on prompt text).
_IBAN_START = re.compile(r"[A-Z](?<!\w[A-Z])[A-Z]\d\d")

_EMAIL_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+)*"
#: the characters of ``_EMAIL_LOCAL`` with its dots, and those its look-behind refuses before a match
_EMAIL_LOCAL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-.")
_EMAIL_NOT_BEFORE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
#: the characters of ``_EMAIL_LOCAL_CHARS`` (the local part's characters and dots) that the look-behind does not
#: refuse before a start: a start inside a run follows one
_EMAIL_LOCAL_SPECIAL = re.compile(r"[!#$&'*/=?^`{|}~]")
#: how far before each ``@`` its anchor window starts
_EMAIL_BEFORE = 80
_EMAIL_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
#: the EMAIL regex (only ASCII classes: the same with ``re.ASCII``)
_EMAIL = r"(?<![A-Za-z0-9._%+\-])" + _EMAIL_LOCAL + "@" + _EMAIL_DOMAIN + r"(?![A-Za-z0-9\-])"
#: what ``_EMAIL`` wants after its "@"
_EMAIL_DOMAIN_END = re.compile(_EMAIL_DOMAIN + r"(?![A-Za-z0-9\-])")
#: ``match(text, lo)`` for an ``@`` at ``at`` and no ``@`` in ``[lo, at)``: group 1 starts after the last character
#: there that is none of ``_EMAIL_LOCAL_CHARS`` (``lo``: none is), where the run of them before ``at`` starts, and
#: ends at the run's first ``_EMAIL_LOCAL_SPECIAL`` character (``at``: none); group 2 is the EMAIL regex's match at
#: that start, if any (the greedy ``[^@]*`` goes to ``at`` and back at C speed)
_EMAIL_AT = re.compile(r"(?:[^@]*[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-@])?(?=([A-Za-z0-9%+_.\-]*))(" + _EMAIL + ")?")

CREDENTIAL_WORDS = (
    r"password|passwd|pwd|passphrase|pass|secret|client[_\-]?secret|api[_\-]?key|apikey|access[_\-]?key|"
    r"secret[_\-]?key|access[_\-]?token|auth[_\-]?token|refresh[_\-]?token|token|pin|credentials?"
)
#: what the ``CREDENTIAL`` regex takes after its key word: the separator, then the value
_CREDENTIAL_VALUE = (r"\\?[\"']?(?:\s*[:=]\s*|\s+(?P<is>is)\s+)\\?[\"']?(?P<val>[^\s\"'`,;\\]{3,}?)\.?"
                     r"(?=[\s\"'`,;\\]|\Z)")


def _num_starts(ctx: Text) -> list[int]:
    """Where a digit-run detector's regex can start when the pass did not run (``RunDetector.find``)."""
    return ctx.num_starts()


def _pass_starts(gate: str) -> Callable[[Text], list[int] | None]:
    """Where the Hyperscan pass saw the literal prefix of the detector ``gate`` (``_prefilter.POSITIONS``),
    ``None`` when it did not run on the text."""
    def starts(ctx: Text) -> list[int] | None:
        positions = ctx.positions
        return None if positions is None else positions.get(gate, [])

    starts.pass_gate = gate
    return starts


def builtin_detectors() -> dict[str, list[Detector]]:
    """Every built-in entity type with its detectors (compiled once per process)."""
    d: dict[str, list[Detector]] = {}

    def add(det: Detector) -> None:
        d.setdefault(det.entity, []).append(det)

    add(PrivateKeyDetector("PRIVATE_KEY", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY"
        r"(?: BLOCK)?-----|.*\Z)", re.DOTALL), _has("PRIVATE KEY"), priority=100, starts=_pass_starts("PRIVATE_KEY")))
    add(UrlCredentialsDetector("URL_CREDENTIALS", re.compile(
        r"\b[A-Za-z][A-Za-z0-9+.\-]*://(?P<ui>[^\s/@:<>\"']+:[^\s/@<>\"']+)@"),
        lambda t: "@" in t, group="ui", priority=95, anchor=_anchor(("://",), 30, 0)))
    add(Detector("JWT", re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
                 _has("eyJ"), lambda t, m: _boundary(t, m) and _v_jwt(t, m), priority=92,
                 starts=_pass_starts("JWT")))
    add(Detector("ANTHROPIC_KEY", re.compile(r"sk-ant-[A-Za-z0-9_\-]{20,}"), _has("sk-ant-"), _boundary, priority=91,
                 starts=_pass_starts("ANTHROPIC_KEY")))
    add(Detector("OPENAI_KEY", re.compile(
        r"sk-(?!ant-)(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}"), _has("sk-"), _boundary, priority=90,
        starts=_pass_starts("OPENAI_KEY")))
    add(Detector("AWS_ACCESS_KEY_ID", re.compile(
        r"A(?:KIA|SIA|BIA|CCA|GPA|IDA|ROA|IPA|NPA|NVA|PKA)[A-Z0-9]{16}\b"),
        lambda t: _AWS_IDS.search(t) is not None, _boundary, priority=90, starts=_pass_starts("AWS_ACCESS_KEY_ID")))
    # ``(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}``, the lookbehind after the first character (``re`` skips faster)
    add(AwsSecretDetector("AWS_SECRET_KEY", re.compile(r"[A-Za-z0-9/+](?<![A-Za-z0-9/+]{2})[A-Za-z0-9/+]{39}(?![A-Za-z0-9/+=])"),
                 None, _v_aws_secret, priority=70, anchor=_anchor(_AWS_NEEDLES, 0, 260, lower=True)))
    add(Detector("GITHUB_TOKEN", re.compile(r"gh[pousr]_[A-Za-z0-9]{36,255}\b"), _has("gh"), _boundary, priority=90,
                 starts=_pass_starts("GITHUB_TOKEN")))
    add(Detector("GITHUB_TOKEN", re.compile(r"github_pat_[A-Za-z0-9_]{22,255}\b"), _has("github_pat_"), _boundary,
                 priority=90, starts=_pass_starts("GITHUB_TOKEN/pat"), gate="GITHUB_TOKEN/pat"))
    add(Detector("SLACK_TOKEN", re.compile(r"xox[abposre]-[A-Za-z0-9\-]{10,}"), _has("xox"), _boundary, priority=90,
                 starts=_pass_starts("SLACK_TOKEN")))
    add(Detector("SLACK_TOKEN", re.compile(r"xapp-[A-Za-z0-9\-]{10,}"), _has("xapp-"), _boundary, priority=90,
                 starts=_pass_starts("SLACK_TOKEN/app"), gate="SLACK_TOKEN/app"))
    add(Detector("STRIPE_KEY", re.compile(r"(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"),
                 None, _boundary, priority=90, anchor=_anchor(("_live_", "_test_"), 2, 0),
                 starts=_pass_starts("STRIPE_KEY")))
    add(Detector("GOOGLE_API_KEY", re.compile(r"AIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])"), _has("AIza"),
                 _boundary, priority=90, starts=_pass_starts("GOOGLE_API_KEY")))
    add(BearerDetector("BEARER_TOKEN", re.compile(r"\b[Bb]earer\s+(?P<tok>[A-Za-z0-9\-._~+/]{16,}=*)"),
                 None, _v_bearer, group="tok", priority=80, anchor=_anchor(("earer",), 2, 40)))
    add(CredentialDetector("CREDENTIAL", re.compile(
        r"(?i)(?<![A-Za-z0-9])(?:[A-Za-z0-9]+[_\-])*(?:" + CREDENTIAL_WORDS + r")(?![A-Za-z0-9])" + _CREDENTIAL_VALUE),
        None, _v_credential, group="val", priority=60))
    add(EmailDetector("EMAIL", re.compile(_EMAIL),
        None, priority=85, anchor=_anchor(("@",), _EMAIL_BEFORE, 260)))
    add(IbanDetector("IBAN", _IBAN_START, None, priority=75))
    add(CardDetector("CREDIT_CARD", re.compile(
        r"(?<![\w.\-+])(?<!\d[ \-])\d(?:[ \-]?\d){12,18}(?![\w]|[ \-]\d)"), None, _v_card, priority=72, trim=_trim_card,
        starts=_num_starts, trim_min_digits=13, least=13))
    add(SsnDetector("US_SSN", re.compile(
        r"(?<![\w\-.])(?P<a>\d{3})(?P<sep>[\- ]?)(?P<g>\d{2})(?P=sep)(?P<s>\d{4})(?![\w]|[\-.]\d)"),
        None, _v_ssn, priority=71, starts=_num_starts, least=9))
    add(Ipv4Detector("IP_ADDRESS", re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w]|\.\d)"),
                 None, _v_ipv4, priority=65, starts=_num_starts, least=7))
    add(Ipv6Detector("IP_ADDRESS", re.compile(
        r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:){1,7}(?::|(?::[0-9A-Fa-f]{1,4}){1,7}|[0-9A-Fa-f]{1,4})"
        r"(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3}|(?<=[0-9A-Fa-f])\.\d{1,3}\.\d{1,3}\.\d{1,3})?(?:%[\w.]+)?(?![\w:])"),
        None, _v_ipv6, priority=65, anchor=_v6_anchor, window_starts=_v6_starts, gate="IP_ADDRESS/v6"))
    add(PhoneDetector("PHONE", _PHONE_CAND, None, _v_phone, priority=55, trim=phone_ok, starts=_num_starts,
                      trim_min_digits=8, least=7))
    d["GENERIC_SECRET"] = [GenericSecretDetector()]
    return d


# where an IPv6 regex match can start: a hex digit not after a word character, ':' or '.', and
# a ':' within its first four hex digits
_V6_START = re.compile(r"[0-9A-Fa-f](?<![\w:.][0-9A-Fa-f])(?=[0-9A-Fa-f]{0,3}:)")


def _v6_hits(text: str) -> list[Span]:
    """The runs of hex digits and colons that can hold an IPv6 address (``ipv6_ok`` wants ``::`` or seven
    colons), each from the hex digit before its first colon to its last colon; clock times such as
    ``10:22:33`` are none."""
    hits = []
    for m in _V6_ANCHOR.finditer(text):
        s, e = m.span()
        if text.count(":", s, e) >= 7 or text.find("::", s, e) != -1:
            hits.append((s - 1, e))  # the hex digit before the first colon
    return hits


_HEX = "0123456789ABCDEFabcdef"
#: the longest text :class:`Ipv6Detector` matches without the windows' ends (which are capped at 64 KiB past a hit)
_V6_WINDOWLESS = 65536
#: how far back from a run's first colon its first character is looked for: a group of up to 4 hex digits, or
#: one of 5 (no address: the regex fails there)
_V6_SEG = 5


class Ipv6Detector(Detector):
    """In each anchor window, the regex is tried only at the first character of each run of hex digits and colons
    that can hold an address (:func:`_v6_hits`): inside a run, every other place follows a hex digit or a colon,
    which the look-behind refuses; a run without such a hit has fewer than seven colons and no ``::``, and so
    has every match in it (its colons are the run's), which ``ipv6_ok`` rejects; and a match's tail or zone
    never reaches into the next run. One ``match`` per address, instead of one at each hex digit before a colon
    in the 100 characters around it.

    In text of 64 KiB or less, the windows' ends (the regex's ``endpos``) are left out: a window ends at a
    whitespace (or the text's end) at or after the first one that follows each of its hits, and a match, which
    starts in its hit's first group, holds no whitespace, nor does anything its look-ahead reads match one: so the
    regex finds the same match with the text's end as ``endpos``. (Past 64 KiB a window can end inside a token:
    there the windows decide.) The match is checked with ``ipv6_ok`` here, not through ``_spans`` (no trim, the
    whole match, never empty: ``h:`` at least)."""

    __slots__ = ()

    def find(self, text: str, ctx: Text | None = None) -> list[Span]:
        hits = _v6_hits(text)
        if not hits:
            return []
        regex = self.ascii_regex if (ctx.ascii if ctx is not None else ascii_classes(text)) else self.regex
        match = regex.match
        if len(text) <= _V6_WINDOWLESS:
            out: list[Span] = []
            for s, _ in hits:
                s += 1  # the first colon, after the run's first group (if it has at most 4 digits)
                seg = text[s - _V6_SEG if s > _V6_SEG else 0:s]
                m = match(text, s - (len(seg) - len(seg.rstrip(_HEX))))
                if m is not None and ipv6_ok(m.group()):
                    out.append(m.span())
            return out
        matches = []
        k = 0
        for _, we in windows(text, hits, 40, 60):  # the windows' ends are the regex's ``endpos``, as before
            while k < len(hits) and hits[k][0] < we:
                s = hits[k][0] + 1  # the first colon, after the run's first group (if it has at most 4 digits)
                k += 1
                seg = text[s - _V6_SEG if s > _V6_SEG else 0:s]
                m = match(text, s - (len(seg) - len(seg.rstrip(_HEX))), we)
                if m is not None:
                    matches.append(m)
        return self._spans(text, matches)


def _v6_anchor(ctx: Text) -> list[Span]:
    """Windows around :func:`_v6_hits` (what ``Detector.find`` searches, with ``_v6_starts``: the form
    :class:`Ipv6Detector` replaced, kept for comparison)."""
    hits = _v6_hits(ctx.text)
    return windows(ctx.text, hits, 40, 60) if hits else []


def _v6_starts(text: str, ws: int, we: int) -> list[int]:
    return [m.start() for m in _V6_START.finditer(text, ws, we)]


_AWS_NEEDLES = ("aws", "secret", "akia", "asia", "access key", "access_key")
#: every key word of ``CREDENTIAL`` ends with one of these
_CREDENTIAL_NEEDLES = ("password", "passwd", "pwd", "passphrase", "pass", "secret", "key", "token", "pin",
                       "credential", "credentials")
_CREDENTIAL_NEEDLE = re.compile("(?i)" + "|".join(_CREDENTIAL_NEEDLES[:-1]) + "s?")
#: what the ``CREDENTIAL`` regex wants right after its key word (the pass's trigger says the same)
_CREDENTIAL_TAIL = re.compile(r"(?i)\\?[\"']?(?:\s*[:=]|\s+is\s)")
_CREDENTIAL_TAIL_ASCII = re.compile(_CREDENTIAL_TAIL.pattern, re.IGNORECASE | re.ASCII)


#: the regex after its key word, its lazy value taken whole: the lazy ``val`` is the run of value characters
#: less one ``.`` it ends with (if three are left), and the match ends where the run does either way (a
#: look-ahead at every character of a 40-108 character key costs ~2 us)
_CREDENTIAL_AFTER_KEY = re.compile("(?i)" + _CREDENTIAL_VALUE.partition("(?P<val>")[0] + r"(?P<val>[^\s\"'`,;\\]{3,})")
_CREDENTIAL_AFTER_KEY_ASCII = re.compile(_CREDENTIAL_AFTER_KEY.pattern, re.IGNORECASE | re.ASCII)
#: the whitespace of the pass's separator, and every character the regex's separator can take
_PASS_SPACE = frozenset(" \t\n\r\f\v")
_SEPARATOR_CHARS = frozenset(" \t\n\r\f\v\\\"':=iIsS")
#: 61 characters a separator can take: only a separator that long can reach the end of the window the needle
#: search gives the regex (60 characters after the key word, or the next space after that) and go on past it
_LONG_SEPARATOR = re.compile(r"[ \t\n\r\f\v\\\"':=iIsS]{61}")


class CredentialDetector(Detector):
    """``password: …`` pairs. The regex runs only where a needle ends a word ("shipping", "keyboard"
    and "passport" open no window), and inside a window only at the starts of the tokens holding
    those needles (the key may carry a ``name_`` prefix), instead of at every character.

    After the Hyperscan pass, where every key word that the regex's separator follows ends is known
    (``_prefilter.POSITIONS``): the regex's part after its key word is tried there only (see
    :meth:`_after_keys`)."""

    __slots__ = ()

    def find(self, text: str, ctx: Text | None = None) -> list[Span]:
        if ctx is None:
            ctx = Text(text)
        ends = ctx.positions.get(self.entity) if ctx.positions is not None else None
        if ends is not None:
            spans = self._after_keys(text, ctx, ends)
            if spans is not None:
                return spans
        regex = self.ascii_regex if ctx.ascii else self.regex
        low = ctx.lower
        n = len(text)
        if len(low) != n:  # "İ" lowers to two characters: positions in ``low`` are not positions in ``text``
            hits = [m.span() for m in _CREDENTIAL_NEEDLE.finditer(text)]
            keys = None
        else:
            hits = [h for h in lower_find_all(ctx, _CREDENTIAL_NEEDLES) if h[1] >= n or low[h[1]] not in _ASCII_ALNUM]
            # every occurrence is a hit here, so a match's key word ends at one that the regex's
            # separator follows, and the match starts at one of that hit's token starts (in the same
            # window): the other hits add no start that can match
            tail = (_CREDENTIAL_TAIL_ASCII if ctx.ascii else _CREDENTIAL_TAIL).match
            keys = {h for h in hits if tail(text, h[1]) is not None}
            if not keys:
                return []
        if not hits:
            return []
        spans: list[Span] = []
        k = 0
        for ws, we in windows(text, hits, 80, 60):
            starts = set()
            while k < len(hits) and hits[k][0] < we:
                if keys is None or hits[k] in keys:
                    _token_starts(text, hits[k][0], ws, starts)
                k += 1
            if starts:
                spans.extend(self._spans(text, _matches_at(regex, text, sorted(starts), ws, we)))
        return spans

    def _after_keys(self, text: str, ctx: Text, ends: list[int]) -> list[Span] | None:
        """:meth:`find` from where the pass's matches of a key word and the regex's separator end (sorted;
        ``None``: not known here, for the needle search to decide).

        Each end gives the key word's end ``k`` (what precedes the separator's ``:``/``=`` or `` is ``: spaces, a
        quote, a backslash). The regex matches at one of the starts of the token before ``k`` iff one of its key
        words ends at ``k`` after no ASCII letter or digit (what the pass saw) and its part after the key word
        matches at ``k``; ``val`` is then that part's, whichever start it came from (no token character is a
        separator's, so the key word always ends at ``k``, and the needle search's token starts include the key
        word's). A match ends where no token character is, so the one before skips a key whole or not at all.
        The needle search's windows only cut what a separator of 61 characters or a value of 64 KiB could cross:
        for those (no text of those sizes here), ``None``."""
        n = len(text)
        if n > 65536:
            return None
        after_key = (_CREDENTIAL_AFTER_KEY_ASCII if ctx.ascii else _CREDENTIAL_AFTER_KEY).match
        space = _PASS_SPACE
        out: list[Span] = []
        after = 0  # like finditer: no match starts inside the previous one
        for e in ends:
            if e > n:  # `` is`` and the newline the pass adds: the regex wants a space in the text
                continue
            k = e - 1 if text[e - 1] in ":=" else e - 3  # `` is `` ends with a space, ``is`` before it
            while text[k - 1] in space:
                k -= 1
            if text[k - 1] in "\"'":
                k -= 1
            if text[k - 1] == "\\":
                k -= 1
            if k <= after:
                continue
            if k + 60 < n and text[k + 60] in _SEPARATOR_CHARS and _LONG_SEPARATOR.match(text, k):
                return None
            m = after_key(text, k)
            if m is None:
                continue
            vs, ve = m.span(2)  # ``val`` (group 1 is ``is``: by number, not name)
            after = ve  # the match's end
            if text[ve - 1] == "." and ve - vs > 3:
                ve -= 1
            # what _v_credential refuses: a redaction marker; after `` is ``, a word of letters only
            if not (text[vs] == "<" and text[ve - 1] == ">") and not (m.start(1) >= 0 and text[vs:ve].isalpha()):
                out.append((vs, ve))
        return out


def _token_starts(text: str, i: int, ws: int, out: set[int]) -> None:
    """Add ``i`` and, walking back to the start of its ``name_name-name`` token (not before ``ws``),
    every position not preceded by an ASCII letter or digit. Non-ASCII characters count as token
    characters: ``(?i)[a-z]`` also matches ``ſ`` and ``K``."""
    out.add(i)
    while i > ws:
        c = text[i - 1]
        if c.isascii() and not (c.isalnum() or c in "_-"):
            return
        i -= 1
        if i == ws or not (text[i - 1].isascii() and text[i - 1].isalnum()):
            out.add(i)


_AWS_IDS = re.compile(r"A(?:KIA|SIA|BIA|CCA|GPA|IDA|ROA|IPA|NPA|NVA|PKA)")
# ``[0-9A-Fa-f]:[0-9A-Fa-f:]*:`` starting at the colon (``re`` then jumps between colons at C speed);
# the anchor puts the hex digit back
_V6_ANCHOR = re.compile(r":(?<=[0-9A-Fa-f]:)[0-9A-Fa-f:]*:")

_DIGIT_AT_COLON = re.compile(r"[\d@:]")
#: what every built-in detector needs when the text has no digit, ``@`` or ``:`` (lower case)
_LETTER_NEEDLES = (
    "key", "pass", "pwd", "secret", "token", "pin", "credential", "sk-", "eyj", "aws", "gh", "github_pat_",
    "xox", "xapp-", "_live_", "_test_", "aiza", "earer", "akia", "asia", "abia", "acca", "agpa", "aida", "aroa",
    "aipa", "anpa", "anva", "apka",
) + tuple(w for w in GENERIC_CONTEXT_WORDS if w not in ("key", "token", "secret", "passwd", "pwd", "password"))


def _needle_trie(needles: Iterable[str]) -> str:
    """One regex alternation of ``needles`` as a trie (``k(?:e(?:nnwort|y)|lucz)``): at each position
    the engine follows one branch per character instead of trying every needle in turn. Needles that
    hold a shorter needle are left out: wherever they occur, so does the shorter one."""
    words = {n for n in needles if not any(m != n and m in n for m in needles)}
    trie: dict = {}
    for w in words:
        node = trie
        for c in w:
            node = node.setdefault(c, {})
        node[""] = {}  # no word is a prefix of another (prefixes are substrings): ends are leaves

    def emit(node: dict) -> str:
        alts = [re.escape(c) + emit(sub) for c, sub in sorted(node.items()) if c]
        if not alts:
            return ""
        if len(alts) == 1:
            return alts[0]
        if all(len(c) == 1 and not node[c].keys() - {""} for c in node if c):
            return "[" + "".join(alts) + "]"
        return "(?:" + "|".join(alts) + ")"

    return emit(trie)


#: ``[\d@:]`` in the text, or a letter needle in its lower-case form, in one search of the lower-case
#: text (lowering turns no character into, nor out of, ``[\d@:]``; test_redact_walk_equivalence checks every
#: code point)
_MAY_HOLD = re.compile(r"[\d@:]|" + _needle_trie(_LETTER_NEEDLES))


def may_hold_builtin(text: str) -> bool:
    """False when no built-in detector can find anything in ``text``: one cheap test instead of
    ~20 detector calls for the short labels, names and enum values that fill span attributes.

    The same answer as ``_DIGIT_AT_COLON.search(text) or any(n in text.lower() for n in
    _LETTER_NEEDLES)``, in one compiled search (test_redact_walk_equivalence compares the two)."""
    return _MAY_HOLD.search(text.lower()) is not None


#: built-in entity types, in the order the docs list them.
BUILTIN_ENTITIES = (
    "EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS", "URL_CREDENTIALS",
    "OPENAI_KEY", "ANTHROPIC_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_KEY", "GITHUB_TOKEN", "SLACK_TOKEN",
    "STRIPE_KEY", "GOOGLE_API_KEY", "JWT", "BEARER_TOKEN", "PRIVATE_KEY", "CREDENTIAL", "GENERIC_SECRET",
)

#: not text detectors, but counted and configurable like entities.
SPECIAL_ENTITIES = ("SECRET_FIELD", "FIELD", "BINARY", "TRUNCATED")

#: how a value is normalised before hashing, so ``John@X.com`` and ``john@x.com`` join.
def normalize(entity: str, value: str) -> str:
    if entity == "EMAIL":
        return value.lower()
    if entity in ("PHONE", "CREDIT_CARD", "US_SSN"):
        return "".join(c for c in value if c.isdigit())
    if entity == "IBAN":
        return value.replace(" ", "").upper()
    if entity == "IP_ADDRESS" and ":" in value:
        try:
            return str(ipaddress.IPv6Address(value.split("%", 1)[0]))
        except ValueError:
            return value.lower()
    return value


#: the needle sets the prefilter finds in one Hyperscan pass for :func:`lower_find_all`
FOUND_NEEDLES = (_CREDENTIAL_NEEDLES, _AWS_NEEDLES)
