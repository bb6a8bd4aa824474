"""PHONE, CREDIT_CARD, US_SSN and IP_ADDRESS take their candidates from the runs of the Hyperscan pass in fewer
steps than they first did: on generated text made of these values, their near misses and what sits around
them (letters, ``x1``, ``@``, dots, non-ASCII letters), the findings are those of the first form. Each
comparison is checked to catch a deliberately broken shape."""

from __future__ import annotations

import random
import re

import pytest
from dspy_tracekit_redact import Redactor
from dspy_tracekit_redact import _detectors as detectors
from dspy_tracekit_redact import _prefilter as prefilter_module
from dspy_tracekit_redact._detectors import _NUM_START, _NUM_START_ASCII, Text, _matches_at

needs_hyperscan = pytest.mark.skipif(prefilter_module.hyperscan is None, reason="no hyperscan wheel here")

DIGIT_TYPES = ("PHONE", "CREDIT_CARD", "US_SSN", "IP_ADDRESS")

_PHONES = ["+1 212 555 0100", "(212) 555-1234", "212-555-1234", "212.555.1234", "2125551234", "1-800-555-0199",
           "020 7946 0958", "+44 20 7946 0958", "0044 20 7946 0958", "98765 43210", "01 23 45 67 89",
           "06.12.34.56.78", "089/1234567", "(030) 1234567", "(11) 91234-5678", "+33 1 23 45 67 89",
           "+(44) 20 7946 0958", "0301234567", "+8613812345678"]
_BEFORE = ["", "", " ", "a", "x", "é", "#", "-", ".", "+", "/", ":", "@", "_", "(", ")", "0", "1 ", "12 ", "v",
           "version ", "ssn ", "SSN: ", "call ", "tel ", "card ", "ip ", "é ", "2024-"]
_AFTER = ["", "", " ", ".", "-", "a", "é", "x1", "x12", "x", "@", ".5", "-1", " 1", " 2 times", ",", ")", "(", "/",
          "\n", "_", ":"]
_SEPS = [" ", "-", ".", "/", "(", ")", "+", "  ", " - "]


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 * (d > 4)
        total += d
    return body + str(-total % 10)


def _card(rng: random.Random) -> str:
    prefix = rng.choice(["4", "51", "55", "2221", "2720", "34", "37", "300", "36", "35", "6011", "65", "644", "62"])
    n = rng.choice([13, 15, 16, 16, 16, 19])
    digits = _luhn_complete(prefix + "".join(rng.choice("0123456789") for _ in range(n - 1 - len(prefix))))
    sep = rng.choice(["", "", " ", "-", " ", "."])
    if not sep:
        return digits
    if n == 15 and rng.random() < 0.5:
        return sep.join((digits[:4], digits[4:10], digits[10:]))
    return sep.join(digits[i:i + 4] for i in range(0, n, 4))


def _ssn(rng: random.Random) -> str:
    area = rng.choice(["000", "666", "900", "078", "123", "219"] + [f"{rng.randint(1, 899):03d}"] * 6)
    group = rng.choice(["00"] + [f"{rng.randint(1, 99):02d}"] * 5)
    serial = rng.choice(["0000"] + [f"{rng.randint(1, 9999):04d}"] * 5)
    sep = rng.choice(["-", " ", "", "-", ".", "/"])
    return area + sep + group + sep + serial


def _ipv4(rng: random.Random) -> str:
    octets = [rng.choice([0, 1, 9, 10, 127, 192, 255, 256, 300, rng.randint(0, 255)]) for _ in range(4)]
    parts = [str(o) if rng.random() > 0.05 else f"0{o}" for o in octets]
    return ".".join(parts[:rng.choice([4, 4, 4, 3, 5])])


def _groups(rng: random.Random) -> str:
    sizes = [rng.choice([1, 2, 3, 3, 4, 4, 5, 6, 9, 10, 11, 13, 16]) for _ in range(rng.randint(1, 5))]
    sep = rng.choice(_SEPS)
    out = "".join(rng.choice("0123456789") for _ in range(sizes[0]))
    for n in sizes[1:]:
        out += (sep if rng.random() < 0.8 else rng.choice(_SEPS)) + "".join(rng.choice("0123456789") for _ in range(n))
    return rng.choice(["", "", "", "+", "00", "(", "0"]) + out


def _mutate(rng: random.Random, value: str) -> str:
    chars = list(value)
    for _ in range(rng.choice([0, 0, 1, 1, 2])):  # a digit more, less or changed, or a separator changed
        i = rng.randrange(len(chars))
        op = rng.random()
        if op < 0.3:
            chars.insert(i, rng.choice("0123456789"))
        elif op < 0.5 and len(chars) > 1:
            del chars[i]
        elif chars[i].isdigit():
            chars[i] = rng.choice("0123456789")
        else:
            chars[i] = rng.choice(_SEPS)
    return "".join(chars)


def digit_texts(n: int, seed: int = 31) -> list[str]:
    """Texts of 1-4 phones, cards, SSNs, IPv4 addresses and digit groups, most of them mutated, each between
    what the detectors' look-arounds test; a few hold non-ASCII letters (the Unicode regexes)."""
    rng = random.Random(seed)
    makers = [lambda r: r.choice(_PHONES), _card, _ssn, _ipv4, _groups]
    out = []
    for _ in range(n):
        values = [rng.choice(_BEFORE) + _mutate(rng, rng.choice(makers)(rng)) + rng.choice(_AFTER)
                  for _ in range(rng.randint(1, 4))]
        out.append(rng.choice(["", " ", "x ", " and ", ", é "]).join(values))
    return out


def _scanned(r: Redactor, text: str) -> Text:
    ctx = Text(text)
    if ctx.scannable:
        _, ctx.context_starts, ctx.digit_runs, ctx.positions = r._prefilter.scan(text)
    return ctx


#: where in a run of the pass a phone can start, as PHONE first searched each run before its candidates (the pass's
#: PHONE patterns say it now)
_PHONE_RUN = re.compile(r"(?<![\w+\-./#@:])(?<!\d[ \-.])(?:\+|(?:0|[0-9]{10}|[0-9]{5}[^0-9]+[0-9]{5}(?![0-9])"
                        r"|[0-9]{3}[^0-9]+[0-9]{3}[^0-9]+[0-9]{4}(?![0-9])|[0-9][^0-9]+[0-9]{3}[^0-9]+[0-9]{3}(?![0-9])"
                        r"|[0-9]{2}[^0-9]+[0-9]{4,5}[^0-9]+[0-9]{4}(?![0-9])))")


def first_form(det, text: str, ctx: Text):
    """The detector as it first took the pass's runs: every ``num_starts`` position inside its runs (PHONE: inside
    the runs ``_PHONE_RUN`` keeps), then a ``match`` at each."""
    if ctx.digit_runs is None:
        return det.find(text, ctx)
    rx = _NUM_START_ASCII if ctx.ascii else _NUM_START
    runs = ctx.digit_runs.get(det.entity) or []
    if det.entity == "PHONE":
        runs = [(rs, re_) for rs, re_ in runs if _PHONE_RUN.search(text, rs, re_)]
    starts = [m.start() for rs, re_ in runs for m in rx.finditer(text, rs, re_)]
    return det._spans(text, _matches_at(det.ascii_regex if ctx.ascii else det.regex, text, starts))


def _run_differences(texts: list[str], least: int | None = None) -> list[tuple[str, str]]:
    r = Redactor({"entities": list(DIGIT_TYPES)})
    if least is not None:  # a run searched once when what is left after its first match is shorter than this
        for det in r._detectors:
            if isinstance(det, detectors.RunDetector):
                det.least = least
    dets = [d for d in r._detectors if d.entity in DIGIT_TYPES and d.gate != "IP_ADDRESS/v6"]
    out = []
    for text in texts:
        ctx = _scanned(r, text)
        for det in dets:
            if det.find(text, ctx) != first_form(det, text, ctx):
                out.append((det.entity, text))
    return out


@needs_hyperscan
def test_the_digit_detectors_search_each_run_as_they_matched_at_its_starts():
    """``finditer`` inside each run of the pass finds what a ``match`` at each of the run's starts found, for
    the four digit-run detectors, on 20,000 texts (and the whole redactor with the pass as without it)."""
    texts = digit_texts(20_000)
    r = Redactor({"entities": list(DIGIT_TYPES)})
    found = {e: sum(f.entity == e for t in texts for f in r.find(t)) for e in DIGIT_TYPES}
    assert min(found.values()) > 300, found  # the texts hold values of every type...
    assert sum(_scanned(r, t).ascii is False for t in texts) > 1_000  # ...and Unicode text
    assert _run_differences(texts) == []
    plain = Redactor({"entities": list(DIGIT_TYPES), "prefilter": False})
    assert [t for t in texts if r.find(t) != plain.find(t)] == []


@needs_hyperscan
@pytest.mark.parametrize("lookahead", [0, 1])
def test_the_digit_texts_catch_a_look_ahead_cut_short(monkeypatch, lookahead):
    """...and a search that stops the look-aheads short of what they read past the run changes findings on
    them (``1234567890123456a``; ``212-555-1234x5`` needs two characters), so the test above can fail."""
    monkeypatch.setattr(detectors, "_RUN_LOOKAHEAD", lookahead)
    assert _run_differences(digit_texts(20_000)) != []


def test_the_digit_detectors_check_their_candidates_as_the_generic_spans_did():
    """CREDIT_CARD, US_SSN and IPv4 check their candidates in their own ``_spans`` (the validator inline, card trims
    through ``Detector._spans``): the same spans as ``Detector._spans`` with their declared validator and trim, on
    every candidate of the digit texts (the regexes' matches over the whole text)."""
    r = Redactor({"entities": list(DIGIT_TYPES)})
    dets = [d for d in r._detectors if type(d) in (detectors.CardDetector, detectors.SsnDetector,
                                                     detectors.Ipv4Detector)]
    assert len(dets) == 3
    kept = dict.fromkeys((d.entity for d in dets), 0)
    refused = dict(kept)
    for text in digit_texts(20_000):
        ascii_text = Text(text).ascii
        for det in dets:
            matches = list((det.ascii_regex if ascii_text else det.regex).finditer(text))
            spans = det._spans(text, matches)
            assert spans == detectors.Detector._spans(det, text, matches), (det.entity, text)
            kept[det.entity] += len(spans)
            refused[det.entity] += len(matches) - len(spans)
    assert min(kept.values()) > 300 and min(refused.values()) > 300, (kept, refused)


def _shortest_match(regex: re.Pattern[str]) -> int:
    """The fewest characters a match of ``regex`` holds, as ``re``'s own parser gives it."""
    try:
        from re import _parser as parser  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10
        import sre_parse as parser
    return parser.parse(regex.pattern, regex.flags).getwidth()[0]


def test_the_run_detectors_know_their_shortest_match():
    """A run is searched once when what is left of it after its first match is shorter than the detector's
    ``least``: that holds only while no match of its regex is shorter (else a second match there is lost)."""
    dets = [d for d in Redactor()._detectors if isinstance(d, detectors.RunDetector)]
    assert sorted(d.entity for d in dets) == sorted(DIGIT_TYPES)
    for det in dets:
        assert 0 < det.least <= _shortest_match(det.regex), det.entity
        assert det.least <= _shortest_match(det.ascii_regex), det.entity


@needs_hyperscan
def test_the_digit_texts_catch_a_run_searched_once_too_often():
    """...and runs searched once whatever is left after their first match change findings on the digit texts (they
    hold runs of several values), so the first test can fail."""
    assert _run_differences(digit_texts(20_000), least=10**6) != []


def _card_ok_first(value: str) -> bool:
    """``card_ok`` as it was first written (a set of separators, the groups by regex, a set of digits)."""
    digits = value.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or not detectors._CARD_PREFIX.match(digits):
        return False
    seps = {c for c in value if c in " -"}
    if len(seps) > 1:
        return False
    if seps:
        sizes = [len(g) for g in re.findall(r"\d+", value)]
        if sizes not in ([4, 6, 5], [4, 6, 4]) and not (
                all(n == 4 for n in sizes[:-1]) and 1 <= sizes[-1] <= 4 and len(sizes) >= 4):
            return False
    if len(set(digits)) < 2:
        return False
    return detectors.luhn_ok(digits)


def card_candidates(n: int, seed: int = 37) -> list[str]:
    """What ``card_ok`` is given: 13-19 digits (cards of every brand and layout, Luhn-valid or not, one digit
    repeated, prefixes at the edges of the brands' ranges), each maybe after one space or ``-``, and the parts of
    them before a separator (the trims)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.4:
            value = _card(rng).replace(".", "-")  # no "." in what the regex matches
        elif r < 0.5:
            value = rng.choice("0123456789") * rng.randint(12, 20)
        else:
            prefix = rng.choice(["2", "22", "221", "2229", "272", "2721", "30", "306", "34", "35", "38", "39", "50",
                                 "51", "56", "60", "601", "6011", "64", "643", "649", "65", "7", "1", "0"])
            value = prefix + "".join(rng.choice("0123456789") for _ in range(rng.randint(10, 19)))
            if rng.random() < 0.5:
                value = _luhn_complete(value[:-1])
        if rng.random() < 0.6 and " " not in value and "-" not in value:  # regrouped
            sizes = rng.choice([[4, 6, 5], [4, 6, 4], [4, 4, 4, 4], [4, 4, 4, 1], [4, 4, 4, 3], [4, 4, 4, 4, 3],
                                [4, 4, 4, 5], [3, 4, 4, 4], [4, 4, 4], [4, 6, 6], [4, 5, 5], [2, 4, 4, 4, 2]])
            groups, i = [], 0
            for k in sizes:
                groups.append(value[i:i + k])
                i += k
            groups = [g for g in groups if g] or [value]
            seps = [rng.choice([" ", "-"]) if rng.random() < 0.1 else None for _ in groups[1:]]
            sep = rng.choice([" ", "-"])
            value = groups[0] + "".join((s or sep) + g for s, g in zip(seps, groups[1:]))
        out.append(value)
        cut = max(value.rfind(" "), value.rfind("-"))
        if cut > 0:
            out.append(value[:cut])
    return out


def _card_differences(card_ok) -> list[str]:
    return [v for v in card_candidates(100_000) if card_ok(v) != _card_ok_first(v)]


def test_card_ok_is_the_check_it_replaced():
    """``card_ok`` (groups split at the one separator, one digit repeated by ``count``, Luhn by byte sums)
    answers as it first did on 100,000+ card candidates, a quarter of them cards."""
    values = card_candidates(100_000)
    assert sum(map(_card_ok_first, values)) > 20_000
    assert _card_differences(detectors.card_ok) == []


def _card_ok_without_4_6_4(value: str) -> bool:
    """A ``card_ok`` that forgets the 4-6-4 layout."""
    return detectors.card_ok(value) and [len(g) for g in value.replace("-", " ").split(" ")] != [4, 6, 4]


def _card_ok_without_repeat_test(value: str) -> bool:
    """A ``card_ok`` that lets one repeated digit through (``0000 0000 0000 0``)."""
    digits = value.replace(" ", "").replace("-", "")
    return detectors.card_ok(value) or (13 <= len(digits) <= 19 and detectors._CARD_PREFIX.match(digits) is not None
                                        and detectors.luhn_ok(digits) and len(set(value) - {" ", "-"}) == 1)


@pytest.mark.parametrize("broken", [_card_ok_without_4_6_4, _card_ok_without_repeat_test])
def test_the_card_candidates_catch_a_check_one_case_off(broken):
    """...and a check one case off answers differently on them (so the test above can fail)."""
    assert _card_differences(broken) != []



_CONTEXT_BITS = ["ssn", "SSN", "Ssn", "social security", "Social Sec", "social  sec", "socialsec", "sin", "SIN", "Sin",
                 "sin_", "sin1", "sinx", "sin.", "sin ", "using", "business", "tax id", "Tax ID", "taxid", "tax-id",
                 "taxpayer", "TAXPAYER", "ſsn", "ſin", "é", "K", " ", "  ", "\t", "\n", "\x1f", "\xa0", ":", "#", "_",
                 "x", "ab", "1", "12", "-", "İ", "number is ", "my "]


def _window_cases(bits: list[str], n: int, seed: int, most: int, near: int) -> list[tuple[str, int]]:
    """``n`` texts of 1 to ``most`` of ``bits`` each, and a place in each: its end half the time, else mostly within
    ``near`` characters of its start (the cases of the context tests below)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text = "".join(rng.choice(bits) for _ in range(rng.randint(1, most)))
        start = min(len(text), rng.choice([len(text), len(text), rng.randint(0, near), rng.randint(0, len(text))]))
        out.append((text, start))
    return out


def context_cases(n: int, seed: int = 41) -> list[tuple[str, int]]:
    """``(text, start)``: a run of words, spaces and look-alikes of the SSN context words (the words cut, joined to
    letters, digits and ``_``, in other cases, with ``ſ``, ``é``, ``\x1f`` and ``\xa0``), and a place in it, mostly
    0-45 characters after its start (the window is 40 characters)."""
    return _window_cases(_CONTEXT_BITS, n, seed, 12, 45)


def _context_differences(ssn_context) -> list[tuple[str, int]]:
    first = detectors._SSN_CONTEXT.search
    return [(t, s) for t, s in context_cases(100_000) if ssn_context(t, s) != bool(first(t, max(0, s - 40), s))]


def test_the_ssn_context_is_the_regex_search_it_replaced():
    """``_ssn_context`` (``in`` and ``find`` on the lower-cased window) answers as the regex search did on
    100,000 windows of context words and their look-alikes."""
    cases = context_cases(100_000)
    assert sum(bool(detectors._SSN_CONTEXT.search(t, max(0, s - 40), s)) for t, s in cases) > 20_000
    assert _context_differences(detectors._ssn_context) == []


def _ssn_context_without_sin_at_the_end(text: str, start: int) -> bool:
    """An ``_ssn_context`` that forgets the boundary ``endpos`` makes after a ``sin`` at the window's end."""
    low = text[max(0, start - 40):start].lower()
    return detectors._ssn_context(text, start) and not (
        low.isascii() and low.endswith("sin") and "sin" not in low[:-3] and not any(w in low for w in detectors._SSN_WORDS))


@pytest.mark.parametrize("broken", ["sin at the window's end", "no tax id"])
def test_the_context_windows_catch_a_word_test_one_case_off(monkeypatch, broken):
    """...and a word test one case off answers differently on them (so the test above can fail)."""
    ssn = detectors._ssn_context
    if broken == "sin at the window's end":
        ssn = _ssn_context_without_sin_at_the_end
    else:
        monkeypatch.setattr(detectors, "_SSN_WORDS", ("ssn", "social sec", "taxpayer"))
    assert _context_differences(ssn) != []


_PHONE_BITS = ["phone", "PHONE", "Phone", "telephone", "tel", "Tel", "TEL", "tel.", "tel:", "tel_", "tel1", "telx",
               "telefon", "Telefone", "téléphone", "TÉLÉPHONE", "call", "CALL", "mobile", "cell", "whatsapp", "WhatsApp",
               "whats app", "whats  app", "whats\tapp", "whats\x1fapp", "whats\xa0app", "text me", "text  me",
               "Text\nme", "textme", "text\x1cme", "sms", "ſms", "fax", "contact", "reach", "number is", "Number Is",
               "number  is", "dial", "ring", "handy", "portable", "celular", "ceLLular", "K", "İ", "ı", "é", " ", "  ",
               "\t", "\n", "\x1f", "\xa0", ":", "#", "_", "x", "ab", "1", "-", "my "]


def phone_context_cases(n: int, seed: int = 43) -> list[tuple[str, int]]:
    """``(text, start)``: runs of the phone context words and their look-alikes (cut, joined, in other cases, with
    ``ſ``, ``İ``, ``é``, ``\x1f``, ``\xa0``, ``tel`` before letters, digits and ``_``), and a place in it, mostly
    0-45 characters after its start (the window is 40 characters)."""
    return _window_cases(_PHONE_BITS, n, seed, 12, 45)


def _phone_context_differences(phone_context) -> list[tuple[str, int]]:
    first = detectors._PHONE_CONTEXT.search
    return [(t, s) for t, s in phone_context_cases(100_000)
            if phone_context(t, s) != bool(first(t, max(0, s - 40), s))]


def test_the_phone_context_is_the_regex_search_it_replaced():
    """``_phone_context`` (the words' regex without ``(?i)`` on the lower-cased ASCII window) answers as the caseless
    search in the text did on 100,000 windows of phone words and their look-alikes, some not ASCII."""
    cases = phone_context_cases(100_000)
    found = [bool(detectors._PHONE_CONTEXT.search(t, max(0, s - 40), s)) for t, s in cases]
    assert 20_000 < sum(found) < 90_000
    assert sum(t[max(0, s - 40):s].isascii() and not f for (t, s), f in zip(cases, found)) > 5_000
    assert _phone_context_differences(detectors._phone_context) == []


def _phone_context_not_at_the_end(text: str, start: int) -> bool:
    """A ``_phone_context`` that forgets the boundary ``endpos`` makes after a ``tel`` at the window's end."""
    before = text[max(0, start - 40):start]
    if before.isascii():
        return detectors._PHONE_CONTEXT_LOW.search(before.lower() + "x") is not None
    return detectors._phone_context(text, start)


def _phone_context_case_sensitive(text: str, start: int) -> bool:
    """A ``_phone_context`` that forgets to lower-case the window."""
    before = text[max(0, start - 40):start]
    if before.isascii():
        return detectors._PHONE_CONTEXT_LOW.search(before) is not None
    return detectors._phone_context(text, start)


@pytest.mark.parametrize("broken", [_phone_context_not_at_the_end, _phone_context_case_sensitive])
def test_the_phone_context_windows_catch_a_word_test_one_case_off(broken):
    """...and a context test one case off answers differently on them (so the test above can fail)."""
    assert _phone_context_differences(broken) != []


_VERSION_BITS = ["v", "V", "version", "Version", "VER", "ver.", "ver", "build", "Build", "release", "firmware", "sdk",
                 "SDK", "python", "node", "chrome", "Chrome", "nv", "xv", "_v", "1v", "év", "K", "ſdk", " ", "  ",
                 "\t", "\n", "\x1f", "\xa0", ".", ":", "-", "(", "x", "ab", "1", "é", "server ", "ip "]


def version_cases(n: int, seed: int = 59) -> list[tuple[str, int]]:
    """``(text, start)``: version words, their look-alikes (after a letter, digit, ``_`` or ``é``, in other cases, with
    ``ſ`` and the Kelvin sign), spaces (``\x1f``, ``\xa0``) and punctuation, and a place in it, mostly near its end
    (the window is 12 characters)."""
    return _window_cases(_VERSION_BITS, n, seed, 6, 16)


def _version_differences(version_before) -> list[tuple[str, int]]:
    first = detectors._VERSION_CONTEXT.search
    return [(t, s) for t, s in version_cases(100_000) if version_before(t, s) != bool(first(t, max(0, s - 12), s))]


def test_the_version_context_is_the_regex_search_it_replaced():
    """``_version_before`` (``endswith`` on the lower-cased window, the boundary on the character before the word)
    answers as the regex search did on 100,000 windows of version words and their look-alikes."""
    cases = version_cases(100_000)
    assert 10_000 < sum(bool(detectors._VERSION_CONTEXT.search(t, max(0, s - 12), s)) for t, s in cases) < 90_000
    assert _version_differences(detectors._version_before) == []


@pytest.mark.parametrize("broken", [("_VERSION_ENDING", {k: v for k, v in detectors._VERSION_ENDING.items() if k != "."}),
                                    ("_VERSION_CONTEXT", re.compile(r"(?i)(?:v|version|ver\.?|build|release|firmware"
                                                                    r"|sdk|python|node|chrome)\s*$"))],
                         ids=["no 'ver.'", "no boundary before the word"])
def test_the_version_windows_catch_a_word_test_one_case_off(monkeypatch, broken):
    """...and a word test one case off answers differently on them (so the test above can fail)."""
    if broken[0] == "_VERSION_ENDING":
        monkeypatch.setattr(detectors, *broken)
        assert _version_differences(detectors._version_before) != []
    else:  # the first form without its boundary: what the boundary test in the fast one must give
        first = broken[1].search
        assert [(t, s) for t, s in version_cases(100_000)
                if detectors._version_before(t, s) != bool(first(t, max(0, s - 12), s))] != []


def _v6_value(rng: random.Random) -> str:
    groups = ["".join(rng.choice("0123456789abcdefABCDEF") for _ in range(rng.choice([1, 2, 3, 4, 4, 4, 5])))
              for _ in range(rng.choice([2, 3, 5, 6, 7, 8, 8, 8, 9]))]
    value = ":".join(groups)
    r = rng.random()
    if r < 0.35:  # one "::" (or two, or ":::")
        i = rng.randrange(len(value))
        value = value[:i] + rng.choice(["::", "::", ":::", "::1::"]) + value[i:]
    elif r < 0.45:
        value = rng.choice(["::", "fe80::", "::ffff:", "1::"]) + value
    if rng.random() < 0.15:
        value += rng.choice([".1.2.3", ":192.168.0.1", ":1.2.3", ".300.1.1", ":01.2.3.4"])
    if rng.random() < 0.15:
        value += rng.choice(["%eth0", "%1", "%en0.5", "%", "%eth0:1", "%x.1:2"])
    return value


def v6_texts(n: int, seed: int = 43) -> list[str]:
    """Texts of 1-4 IPv6 addresses and look-alikes (groups of 1-5 hex digits, 2-9 of them, ``::`` anywhere, IPv4
    tails, zones, clock times, MAC addresses) between letters, colons, dots, ``%``, digits and non-ASCII letters."""
    rng = random.Random(seed)
    before = ["", " ", "a", "g", ":", ".", "%", "1", "-", "(", "é", "ip ", "[", "x:", "1.", "::"]
    after = ["", " ", "a", "g", ":", ".", "%", "1", "]", "/64", ",", "é", ".5", ":x", "::", " 10:22:33",
             "%" + "e" * 90, "%eth0." + "1" * 80 + ":1::2", "g" * 90, "\n"]  # past the windows' 60 characters
    other = ["10:22:33", "aa:bb:cc:dd:ee:ff", "12:30", "a:b:c:d:e:f:g:h", "1:2:3:4:5:6:7", "dead:beef"]
    out = []
    for _ in range(n):
        values = [rng.choice(before) + (_v6_value(rng) if rng.random() < 0.85 else rng.choice(other))
                  + rng.choice(after) for _ in range(rng.randint(1, 4))]
        out.append(rng.choice(["", " ", " and ", "x", ", é "]).join(values))
    return out


def _v6_differences(texts: list[str]) -> list[str]:
    r = Redactor({"entities": ["IP_ADDRESS"]})
    det = next(d for d in r._detectors if d.gate == "IP_ADDRESS/v6")
    out = []
    for text in texts:
        ctx = _scanned(r, text)
        if det.find(text, ctx) != detectors.Detector.find(det, text, ctx):
            out.append(text)
    return out


def test_ipv6_is_matched_at_the_start_of_each_run_as_at_every_start_in_its_windows():
    """``Ipv6Detector`` (one ``match`` at the first character of each run that can hold an address, to the text's
    end) finds what the anchor windows searched at every ``_V6_START`` found, on 20,000 texts (zones and tokens
    longer than the windows' 60 characters after a hit among them), and on texts over 64 KiB."""
    texts = v6_texts(20_000)
    long = "fe80::1%" + "a" * 70_000 + " 2001:db8::1 " + "x" * 70_000 + "1:2:3:4:5:6:7:8 x"
    assert len(Redactor({"entities": ["IP_ADDRESS"]}).find(long)) == 2
    assert _v6_differences([long, long[:65_000], " ".join(texts[:3000])]) == []
    r = Redactor({"entities": ["IP_ADDRESS"]})
    assert sum(len(r.find(t)) for t in texts) > 2_000
    assert _v6_differences(texts) == []


@pytest.mark.parametrize("broken", [("_HEX", "0123456789ABCDEF"), ("_V6_SEG", 3)],
                         ids=["lower-case hex forgotten", "first group of 2 at most"])
def test_the_v6_texts_catch_a_run_start_one_case_off(monkeypatch, broken):
    """...and a run start one case off changes findings on them (so the test above can fail)."""
    monkeypatch.setattr(detectors, *broken)
    assert _v6_differences(v6_texts(20_000)) != []


def _ipv6_ok_first(value: str) -> bool:
    """``ipv6_ok`` as it was: every value through ``ipaddress.IPv6Address``."""
    import ipaddress

    value = value.split("%", 1)[0]
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


def ipv6_values(seed: int = 47) -> list[str]:
    """What the IPv6 regex matches in the IPv6 texts, and 100,000 strings of hex groups, colons, dots and ``%``."""
    det = next(d for d in Redactor({"entities": ["IP_ADDRESS"]})._detectors if d.gate == "IP_ADDRESS/v6")
    values = [m.group() for t in v6_texts(20_000) for m in det.regex.finditer(t)]
    rng = random.Random(seed)
    bits = ["0", "a", "F", "12", "abcd", "12345", ":", ":", "::", ".", "%", "g", "1.2.3.4", "eth0"]
    return values + ["".join(rng.choice(bits) for _ in range(rng.randint(0, 20))) for _ in range(100_000)]


def _ipv6_differences() -> list[str]:
    return [v for v in ipv6_values() if detectors.ipv6_ok(v) != _ipv6_ok_first(v)]


def test_ipv6_ok_is_the_ipaddress_check_it_replaced():
    """``ipv6_ok`` (hex groups and colons counted, not parsed by ``ipaddress``) answers as it did on the IPv6
    regex's matches and 100,000 strings of its characters."""
    assert sum(map(_ipv6_ok_first, ipv6_values())) > 1_500
    assert _ipv6_differences() == []


@pytest.mark.parametrize("broken", [("_HEXTETS", 9), ("_HEXTET_DIGITS", 5),
                                    ("_V6_FULL", re.compile(r"(?:[0-9A-Fa-f]{1,4}:){6}[0-9A-Fa-f]{1,4}"))],
                         ids=["'::' for no group and ten parts", "groups of 5 digits", "seven groups as they are"])
def test_the_ipv6_values_catch_a_check_one_case_off(monkeypatch, broken):
    """...and a check one case off answers differently on them (so the test above can fail)."""
    monkeypatch.setattr(detectors, *broken)
    assert _ipv6_differences() != []


def _pass_differences(texts: list[str]) -> list[str]:
    fast = Redactor({"entities": list(DIGIT_TYPES)})
    plain = Redactor({"entities": list(DIGIT_TYPES), "prefilter": False})
    return [t for t in texts if fast.find(t) != plain.find(t)]


def _card_runs(old: str, new: str) -> tuple[str, ...]:
    return tuple(p.replace(old, new) for p in prefilter_module.RUNS["CREDIT_CARD"])


@needs_hyperscan
@pytest.mark.parametrize("narrower", [_card_runs("|[ \\-][0-9]{6}[ \\-]", ""), _card_runs("[2-6]", "[3-6]"),
                                      _card_runs("(?:^|", "(?:"), _card_runs("[0-9]{3}(?:[0-9]{4}", "[0-9]{3}(?:[0-9]{6}")],
                         ids=["no 4-6-x", "no 2-series", "no run at the start", "one group of 14 or more"])
def test_the_digit_texts_catch_a_card_run_one_case_too_narrow(monkeypatch, narrower):
    """The pass's CREDIT_CARD run pattern (one group of 13 digits or more, or 4-6-x or 4-4-4-x from a 2-6 on) keeps
    every card of the digit texts (the first test), and one narrowed by a case changes findings on them."""
    monkeypatch.setitem(prefilter_module.RUNS, "CREDIT_CARD", narrower)
    assert _pass_differences(digit_texts(20_000)) != []


def _ipv4_runs(old: str, new: str) -> tuple[str, ...]:
    runs = tuple(p.replace(old, new) for p in prefilter_module.RUNS["IP_ADDRESS"])
    assert runs != prefilter_module.RUNS["IP_ADDRESS"]
    return runs


@needs_hyperscan
@pytest.mark.parametrize("narrower", [
    _ipv4_runs("(?:^|", "(?:"), _ipv4_runs("[^0-9A-Za-z_.])", "[^0-9A-Za-z_.(])"),
    _ipv4_runs("[0-9]{1,3}(?:", "[0-9]{1,2}(?:"), _ipv4_runs("[^0-9A-Za-z_ \\-./()+]|", "[^0-9A-Za-z_ \\-./()+,]|"),
    _ipv4_runs("|[ \\-/()+]", "|[\\-/()+]"), _ipv4_runs("\\.(?:[^0-9 \\-./()+]|", "\\.(?:")],
    ids=["no run at the start", "none after (", "a last octet of 2 digits at most", "none before a comma",
         "none before a space", "none before a dot at the run's end"])
def test_the_digit_texts_catch_an_ipv4_run_one_case_too_narrow(monkeypatch, narrower):
    """The pass's IP_ADDRESS run pattern (the IPv4 regex's shape: four groups of 1-3 digits after no word character
    or dot, then no word character nor a dot and a digit) keeps every address of the digit texts (the first test),
    and one narrowed by a case changes findings on them."""
    monkeypatch.setitem(prefilter_module.RUNS, "IP_ADDRESS", narrower)
    assert _pass_differences(digit_texts(20_000)) != []


def _phone_raw_ok_first(text: str, start: int, raw: str, n: int) -> bool:
    """``_phone_raw_ok`` as it was at 5544055 (every call finds the groups and sizes)."""
    # no format below takes fewer than 8 or more than 17 (most candidates are dates, times and
    # order numbers: cut early)
    if n < 8 or n > 17 or (n < 10 and raw[0] != "+"):
        return False
    if raw.isdecimal():
        # one group of digits (timestamps, order and tracking numbers): of the formats below only
        # the bare number after a phone word, and never after "00"
        if raw.startswith("00") or not ((n == 10 and (detectors._nanp_ok(raw) or raw[0] in "6789"))
                                        or (n in (10, 11) and raw[0] == "0" and raw[1] != "0")):
            return False
        return bool(detectors._PHONE_CONTEXT.search(text, max(0, start - 40), start))
    if raw.count("(") != raw.count(")") or "  " in raw:
        return False
    # the separators are those of " -./" (digits and "()+" aside)
    if ("-" in raw) + ("." in raw) + ("/" in raw) > 1:  # "212-555.1234" is not a way anyone writes a number
        return False
    groups = detectors._GROUPS.findall(raw)
    digits = "".join(groups)
    n = len(digits)
    sizes = [len(g) for g in groups]
    if raw.startswith(("+", "00")):
        intl = digits[2:] if raw.startswith("00") else digits
        if not 8 <= len(intl) <= 15 or len(groups) > 7:
            return False
        if raw.startswith("00") and len(groups) < 2:
            return False
        if intl.startswith("1"):
            return len(intl) == 11 and detectors._nanp_ok(intl[1:])
        if not intl.startswith(detectors._E164_CC):
            return False
        return not (len(groups) == 1 and len(intl) < 10)
    if "/" in raw and not (digits.startswith("0") and len(groups) == 2):
        return False
    if "." in raw and len(groups) < 3:
        return False
    # US / NANP: (212) 555-1234, 212-555-1234, 212.555.1234, 1-800-555-0199, 212 555 1234
    if n == 10 and sizes == [3, 3, 4] and detectors._nanp_ok(digits):
        return True
    if n == 11 and sizes == [1, 3, 3, 4] and digits[0] == "1" and detectors._nanp_ok(digits[1:]):
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
    if len(groups) == 1 and ((n == 10 and (detectors._nanp_ok(digits) or digits[0] in "6789"))
                             or (n in (10, 11) and digits[0] == "0" and digits[1] != "0")):
        return bool(detectors._PHONE_CONTEXT.search(text, max(0, start - 40), start))
    return False


def _phone_ok_first(text: str, start: int, end: int) -> bool:
    """``phone_ok`` as it was (its digits counted, then its groups found, each once per call)."""
    raw = text[start:end]
    return _phone_raw_ok_first(text, start, raw, len(raw) - sum(map(raw.count, detectors._PHONE_SEPARATORS)))


_PHONE_HEAD_FIRST = re.compile(r"\(?([1-9]\d*)\D*(\d*)\D*(\d*)")


class _PhoneFirst(detectors.RunDetector):
    """``PhoneDetector`` as it was: the digits counted, the head of a candidate by ``_PHONE_HEAD``'s regex."""

    __slots__ = ()

    def _spans(self, text, matches):
        out = []
        for m in matches:
            raw = m.group()
            n = len(raw) - sum(map(raw.count, detectors._PHONE_SEPARATORS))
            if n < 10 and (n < 8 or raw[0] != "+"):
                continue
            if raw[0] != "+":
                head = _PHONE_HEAD_FIRST.match(raw)
                if head is not None:
                    f, g = len(head[1]), len(head[2])
                    if f < 10 and ((5, 5, 0) if f == g == 5 else (f, g, len(head[3]))) not in detectors._PHONE_HEADS:
                        continue
            s, e = m.span()
            if _phone_ok_first(text, s, e):
                out.append((s, e))
                continue
            if n <= 8 or raw.isdecimal():
                continue
            for _ in range(2):
                cut = detectors._LAST_SEP.search(text, s, e)
                if cut is None:
                    break
                e = cut.start()
                if detectors.digit_count(text[s:e]) < 8:
                    break
                if _phone_ok_first(text, s, e):
                    out.append((s, e))
                    break
        return out


def _phone_first_differences(texts: list[str]) -> list[str]:
    fast = Redactor({"entities": ["PHONE"]})
    first = Redactor({"entities": ["PHONE"]})
    det = first._detectors[0]
    first._detectors = (_PhoneFirst("PHONE", det.regex, None, detectors._v_phone, priority=55, trim=phone_ok_first_trim,
                                    starts=det.starts, trim_min_digits=8),)
    return [t for t in texts if fast.find(t) != first.find(t)]


def phone_ok_first_trim(text: str, s: int, e: int) -> bool:
    return _phone_ok_first(text, s, e)


def _phone_texts():
    """test_redact_candidate_rejects' phone texts (phones of every format, near misses, digit groups) and the
    digit texts."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_phone_rejects", Path(__file__).with_name(
        "test_redact_candidate_rejects.py"))
    rejects = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rejects)
    texts = rejects._phone_texts(15_000) + digit_texts(5_000)
    # and some with their digits in other scripts (``\d`` takes them; the pass does not see such text)
    other = [str.maketrans("0123456789", "".join(chr(z + k) for k in range(10))) for z in (0x660, 0x966, 0xff10)]
    return texts + [t.translate(other[i % 3]) for i, t in enumerate(texts[:3000:3])]


def test_the_phone_candidates_are_read_from_their_groups_as_they_were_from_a_count_and_a_regex():
    """``PhoneDetector`` (the groups found once per candidate, by ``split`` with the separators made spaces, its
    head read from them) finds what it found with the digits counted, ``_PHONE_HEAD`` matched and the groups found
    again in ``phone_ok``, on 20,000 texts of phones, near misses and digit groups (1,000 of them in Arabic-Indic,
    Devanagari or full-width digits), with and without the pass."""
    texts = _phone_texts()
    fast = Redactor({"entities": ["PHONE"]})
    assert sum(len(fast.find(t)) for t in texts) > 3_000
    assert _phone_first_differences(texts) == []
    plain = Redactor({"entities": ["PHONE"], "prefilter": False})
    first = Redactor({"entities": ["PHONE"], "prefilter": False})
    first._detectors = (_PhoneFirst("PHONE", plain._detectors[0].regex, None, detectors._v_phone, priority=55,
                                    trim=phone_ok_first_trim, starts=plain._detectors[0].starts, trim_min_digits=8),)
    assert [t for t in texts[::4] if plain.find(t) != first.find(t)] == []


@pytest.mark.parametrize("broken", [("_NONZERO", "0123456789"), ("_GROUPS", re.compile(r"\d{1,4}"))],
                         ids=["a 0 first read as a head", "groups cut at 4 digits"])
def test_the_phone_texts_catch_a_head_read_one_case_off(monkeypatch, broken):
    """...and a head read one case off changes findings on them (so the test above can fail)."""
    monkeypatch.setattr(detectors, *broken)
    assert _phone_first_differences(_phone_texts()) != []


def _iban_ok_first(compact: str) -> bool:
    """``iban_ok`` as it was: every value's letters through one ``translate``."""
    if detectors.IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    if not rearranged.isalnum():
        return False
    try:
        number = int(rearranged.translate(detectors._IBAN_LETTERS))
    except ValueError:
        return False
    return number % 97 == 1


def _iban(rng: random.Random, digits_only: bool = False) -> str:
    """A registry country's IBAN (valid, or one character off), compact."""
    cc = rng.choice(sorted(detectors.IBAN_LENGTHS))
    n = detectors.IBAN_LENGTHS[cc]
    alphabet = "0123456789" if digits_only or rng.random() < 0.6 else "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    bban = "".join(rng.choice(alphabet) for _ in range(n - 4))
    check = 98 - int((bban + cc + "00").translate(detectors._IBAN_LETTERS)) % 97
    value = f"{cc}{check:02d}{bban}"
    if rng.random() < 0.3:
        i = rng.randrange(2, len(value))
        value = value[:i] + rng.choice("0123456789A٣a é") + value[i + rng.choice([0, 1, 1]):]
    return value


def iban_values(n: int = 100_000, seed: int = 53) -> list[str]:
    rng = random.Random(seed)
    return [_iban(rng) if rng.random() < 0.9 else rng.choice(["XX", "de", "D1", "GB"]) + _iban(rng)[2:]
            for _ in range(n)]


def _iban_differences() -> list[str]:
    return [v for v in iban_values() if detectors.iban_ok(v) != _iban_ok_first(v)]


def test_iban_ok_is_the_check_it_replaced():
    """``iban_ok`` (the country's number looked up when the rest is digits, the ASCII letters' numbers joined)
    answers as the ``translate`` of every letter did, on 100,000 IBANs of every registry country, valid or a character off."""
    assert sum(map(_iban_ok_first, iban_values())) > 40_000
    assert _iban_differences() == []


def test_the_iban_values_catch_a_country_number_one_case_off(monkeypatch):
    """...and one country's number wrong changes answers on them (so the test above can fail)."""
    monkeypatch.setitem(detectors._IBAN_COUNTRY_NUMBER, "DE", "1413")
    assert _iban_differences() != []


def test_the_iban_values_catch_a_letter_number_one_case_off(monkeypatch):
    """...and one ASCII letter's number wrong in the join of ASCII values changes answers on them too."""
    monkeypatch.setitem(detectors._IBAN_ALNUM, "Q", "27")
    assert _iban_differences() != []


def iban_texts(n: int, seed: int = 59) -> list[str]:
    """Texts of 1-3 IBANs (compact or in groups of four) after letters, digits, ``_``, ``é``, ``€`` and spaces."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        values = []
        for _ in range(rng.randint(1, 3)):
            value = _iban(rng)
            if rng.random() < 0.5:
                value = " ".join(value[i:i + 4] for i in range(0, len(value), 4))
            values.append(rng.choice(["", " ", "a", "1", "_", "é", "€", "-", "IBAN ", "IBAN:", "x_"]) + value
                          + rng.choice(["", " ", ".", "a", "A", " ASAP"]))
        out.append(rng.choice([" ", ", ", " and ", "é "]).join(values))
    return out


def _iban_text_differences(texts: list[str]) -> list[str]:
    fast = Redactor({"entities": ["IBAN"]})
    plain = Redactor({"entities": ["IBAN"], "prefilter": False})
    return [t for t in texts if fast.find(t) != plain.find(t)]


@needs_hyperscan
def test_the_iban_starts_of_the_pass_keep_every_iban():
    """``IbanDetector`` with the pass's positions (the look-behind tested on the character before) finds what the
    regex's ``finditer`` finds, on 10,000 texts."""
    texts = iban_texts(10_000)
    fast = Redactor({"entities": ["IBAN"]})
    assert sum(len(fast.find(t)) for t in texts) > 4_000
    assert _iban_text_differences(texts) == []


def _iban_positions(old: str, new: str) -> tuple[tuple[str, int], ...]:
    positions = tuple((p.replace(old, new), n) for p, n in prefilter_module.POSITIONS["IBAN"])
    assert positions != prefilter_module.POSITIONS["IBAN"]
    return positions


@needs_hyperscan
@pytest.mark.parametrize("broken", ["detector and pass forget _", "the pass refuses -", "the pass refuses the start"])
def test_the_iban_texts_catch_a_look_behind_one_case_off(monkeypatch, broken):
    """...and a look-behind that forgets ``_`` (in the detector, and in the pass, which refuses it first) or one
    that refuses ``-`` or the text's start in the pass changes findings on them (so the test above can fail)."""
    if broken == "detector and pass forget _":
        monkeypatch.setattr(detectors, "_UNDERSCORE", "-")
        monkeypatch.setitem(prefilter_module.POSITIONS, "IBAN", _iban_positions("A-Za-z_]", "A-Za-z]"))
    elif broken == "the pass refuses -":
        monkeypatch.setitem(prefilter_module.POSITIONS, "IBAN", _iban_positions("A-Za-z_]", "A-Za-z_\\-]"))
    else:
        monkeypatch.setitem(prefilter_module.POSITIONS, "IBAN", _iban_positions("(?:^|", "(?:"))
    assert _iban_text_differences(iban_texts(10_000)) != []


def _ipv4_ok_first(value: str) -> bool:
    """``ipv4_ok`` as it was: every part made an int."""
    parts = value.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if len(p) > 1 and p[0] == "0":
            return False
        if int(p) > 255:
            return False
    return not (parts[1] == parts[2] == parts[3] == "0" and int(parts[0]) < 10)


def ipv4_values(n: int = 100_000, seed: int = 61) -> list[str]:
    """What the IPv4 regex matches: 1-3 digits (0-999, leading zeros, ``٣``), three dots; and 3 or 5 parts."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = [rng.choice(["0", "1", "9", "10", "99", "100", "199", "200", "249", "250", "255", "256", "260", "299",
                             "300", "999", "00", "01", "010", "٣", "1٣"] + [str(rng.randint(0, 300))] * 8)
                 for _ in range(rng.choice([4, 4, 4, 4, 3, 5]))]
        if rng.random() < 0.2:
            parts[1:] = ["0"] * (len(parts) - 1)
        out.append(".".join(parts))
    return out


def _ipv4_differences() -> list[str]:
    return [v for v in ipv4_values() if detectors.ipv4_ok(v) != _ipv4_ok_first(v)]


def test_ipv4_ok_is_the_check_it_replaced():
    """``ipv4_ok`` (ASCII octets compared as strings) answers as the ``int`` of each part did, on 100,000 values."""
    assert 10_000 < sum(map(_ipv4_ok_first, ipv4_values())) < 90_000
    assert _ipv4_differences() == []


@pytest.mark.parametrize("broken", ["256", "254"])
def test_the_ipv4_values_catch_an_octet_bound_one_off(monkeypatch, broken):
    """...and the largest octet one off answers differently on them (so the test above can fail)."""
    monkeypatch.setattr(detectors, "_OCTET_MAX", broken)
    assert _ipv4_differences() != []


def _iban_rest_differences() -> list[tuple[str, int]]:
    """Where ``_iban_rest`` (compact, grouped by four, else the general form) and the general form alone differ, at
    every ``CC00`` of a registry country in the IBAN texts (and in them with their spaces doubled or moved)."""
    texts = iban_texts(5_000)
    rng = random.Random(67)
    texts += [t.replace(" ", "  ", 1) for t in texts[:1000]] + [
        "".join(c + " " if c.isalnum() and rng.random() < 0.2 else c for c in t) for t in texts[1000:2000]]
    out = []
    for text in texts:
        for m in re.finditer(r"(?=[A-Z]{2}[0-9]{2})", text):
            i = m.start()
            length = detectors.IBAN_LENGTHS.get(text[i:i + 2])
            if length is None:
                continue
            new, first = detectors._iban_rest(text, i + 4, length), detectors._IBAN_REST[length].match(text, i + 4)
            if (new and new.span()) != (first and first.span()):
                out.append((text, i))
    return out


def test_the_iban_rest_is_found_as_the_general_form_finds_it():
    """``_iban_rest`` (one repeat for the compact and the grouped layouts first) ends where the general form ends."""
    assert _iban_rest_differences() == []


@pytest.mark.parametrize("broken", ["_IBAN_COMPACT", "_IBAN_GROUPED"])
def test_the_iban_layouts_catch_a_fast_form_one_character_long(monkeypatch, broken):
    """...and a fast form that takes one character more changes where the rest ends (so the test above can fail)."""
    if broken == "_IBAN_COMPACT":
        longer = {n: re.compile(f"[A-Z0-9]{{{n - 3}}}") for n in detectors._IBAN_COMPACT}
    else:
        longer = {n: re.compile(f"(?: [A-Z0-9]{{4}}){{{(n - 4) // 4}}} ?[A-Z0-9]{{{(n - 4) % 4 + 1}}}")
                  for n in detectors._IBAN_GROUPED}
    monkeypatch.setattr(detectors, broken, longer)
    assert _iban_rest_differences() != []
