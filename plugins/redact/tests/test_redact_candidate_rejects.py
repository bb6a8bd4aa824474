"""PHONE and GENERIC_SECRET reject most candidates on their shape before validating them: on generated text
made to sit at the edges of those shapes, the findings are those of the plain detectors (every candidate
validated). Each generator is checked to catch a shape made one case too narrow."""

from __future__ import annotations

import random
import re
import string

import pytest
from dspy_tracekit_redact import Redactor
from dspy_tracekit_redact import _detectors as detectors
from dspy_tracekit_redact import _generic as generic
from dspy_tracekit_redact import _prefilter as prefilter_module
from dspy_tracekit_redact._detectors import _PHONE_CAND, Detector, _v_phone, phone_ok
from dspy_tracekit_redact._generic import CONTEXT, CONTEXT_WORDS, GenericSecretDetector

needs_hyperscan = pytest.mark.skipif(prefilter_module.hyperscan is None, reason="no hyperscan wheel here")

_PHONES = ["+1 212 555 0100", "(212) 555-1234", "212-555-1234", "212.555.1234", "2125551234", "1-800-555-0199",
           "1 800 555 0199", "02079460958", "020 7946 0958", "0161 496 0000", "07700 900123", "+44 20 7946 0958",
           "0044 20 7946 0958", "98765 43210", "98765-43210", "6123456789", "01 23 45 67 89", "06.12.34.56.78",
           "030 12345678", "0151 23456789", "089/1234567", "(030) 1234567", "098765 43210", "0 98765 43210",
           "(11) 91234-5678", "(21) 2345-6789", "11 91234-5678", "+49 30 1234567", "+8613812345678", "0301234567",
           "+33 1 23 45 67 89", "00 33 1 23 45 67 89", "+(44) 20 7946 0958"]
_BEFORE = ["", "", "", "call ", "tel ", "phone: ", "a", "x", "#", "-", ".", "+", "/", ":", "@", "_", "é", "(", "0",
           "1 ", "5-", "12 ", "v", "order ", "2024-"]
_AFTER = ["", "", " ", ".", "-", "-1", ".5", "a", " 2 times", " 2", ",", "/", ")", " 12", "\n", "x1", "x12", " - 7",
          "-12", " 1234"]
_SEPARATORS = [" ", " ", "-", "-", ".", "/", ") ", " (", "  ", "(", ")", "+", " - ", "- "]


def _digits(rng: random.Random, n: int) -> str:
    first = rng.choice("0123456789123456789")
    return first + "".join(rng.choice("0123456789") for _ in range(n - 1))


def _phone_like(rng: random.Random) -> str:
    """A phone, or digit groups of the sizes phones, dates, order and build numbers have."""
    if rng.random() < 0.3:
        phone = list(rng.choice(_PHONES))
        for _ in range(rng.randint(0, 2)):  # a digit more, less or changed
            i = rng.randrange(len(phone))
            op = rng.random()
            if op < 0.3:
                phone.insert(i, rng.choice("0123456789"))
            elif op < 0.6 and phone[i].isdigit():
                del phone[i]
            elif phone[i].isdigit():
                phone[i] = rng.choice("0123456789")
        return "".join(phone)
    sizes = [rng.choice([1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 6, 7, 8, 9, 10, 11, 12]) for _ in range(rng.randint(1, 5))]
    sep = rng.choice(_SEPARATORS)
    groups = [_digits(rng, n) for n in sizes]
    text = groups[0]
    for g in groups[1:]:
        text += (sep if rng.random() < 0.8 else rng.choice(_SEPARATORS)) + g
    return rng.choice(["", "", "", "+", "00", "(", "+(", "0"]) + text


def _phone_texts(n: int, seed: int = 29) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        values = [rng.choice(_BEFORE) + _phone_like(rng) + rng.choice(_AFTER) for _ in range(rng.randint(1, 4))]
        out.append(rng.choice(["", " ", "x ", " and "]).join(values))
    return out


def _plain_phone() -> Redactor:
    """A redactor whose PHONE detector validates every candidate of the whole text (no runs, no shape test)."""
    r = Redactor({"entities": ["PHONE"], "prefilter": False})
    r._detectors = (Detector("PHONE", _PHONE_CAND, None, _v_phone, priority=55, trim=phone_ok, trim_min_digits=8),)
    return r


def _phone_differences(texts: list[str]) -> list[str]:
    fast, plain = Redactor({"entities": ["PHONE"]}), _plain_phone()
    return [t for t in texts if fast.find(t) != plain.find(t)]


@needs_hyperscan
def test_phone_candidates_rejected_on_their_groups_hide_no_phone():
    """``_PHONE_HEADS`` (candidates) and the pass's PHONE runs (``_prefilter.RUNS``) leave every phone and trimmed
    phone of 30,000 texts of phones, near misses, dates and order and build numbers."""
    texts = _phone_texts(30_000)
    plain = _plain_phone()
    found = sum(len(plain.find(t)) for t in texts)
    assert found > 5_000  # the texts hold phones of every kind...
    assert _phone_differences(texts) == []


def _phone_runs(drop: int | None = None, old: str = "", new: str = "") -> tuple[str, ...]:
    """The pass's PHONE run patterns, one shape (``_PHONE_SHAPES``, counted across its groups) left out or one
    pattern changed."""
    k = iter(range(100))
    groups = tuple(tuple(sh for sh in shapes if next(k) != drop) for shapes in prefilter_module._PHONE_SHAPES)
    runs = tuple(p.replace(old, new) if old else p for p in prefilter_module._phone_runs(groups))
    assert runs != prefilter_module.RUNS["PHONE"]
    return runs


@needs_hyperscan
def test_the_phone_runs_in_two_patterns_are_those_of_one_pattern_per_shape(monkeypatch):
    """The pass's PHONE runs from its two patterns (each an alternation of shapes) are those of the seven shapes
    each a pattern of its own (in one combination), on 30,000 texts of phones and near misses."""
    texts = _phone_texts(30_000)
    grouped = prefilter_module.Prefilter(["PHONE"])
    monkeypatch.setitem(prefilter_module.RUNS, "PHONE", tuple(
        prefilter_module._PHONE_AT + sh for shapes in prefilter_module._PHONE_SHAPES for sh in shapes))
    single = prefilter_module.Prefilter(["PHONE"])
    assert len(prefilter_module.RUNS["PHONE"]) == 7
    assert sum(bool(grouped.scan(t)[2]) for t in texts) > 10_000
    assert [t for t in texts if detectors.Text(t).scannable and grouped.scan(t) != single.scan(t)] == []


@needs_hyperscan
@pytest.mark.parametrize("narrower", [
    (detectors, "_PHONE_HEADS", detectors._PHONE_HEADS - {(2, 4, 4)}),
    (detectors, "_PHONE_HEADS", detectors._PHONE_HEADS - {(1, 3, 3)}),
    (detectors, "_PHONE_HEADS", detectors._PHONE_HEADS - {(3, 3, 4)} | {(3, 3, 3)}),
    (prefilter_module.RUNS, "PHONE", _phone_runs(drop=1)),
    (prefilter_module.RUNS, "PHONE", _phone_runs(drop=5)),
    (prefilter_module.RUNS, "PHONE", _phone_runs(drop=2)),
    (prefilter_module.RUNS, "PHONE", _phone_runs(old="9?[0-9]{4}", new="9[0-9]{4}")),
    (prefilter_module.RUNS, "PHONE", _phone_runs(old="(?:^|", new="(?:")),
    (prefilter_module.RUNS, "PHONE", _phone_runs(old="#@:])", new="#@:()])")),
    (prefilter_module.RUNS, "PHONE", _phone_runs(old="A-Za-wyz", new="A-Za-z")),
    (prefilter_module.RUNS, "PHONE", _phone_runs(old="_@ ", new="_@ ,")),
], ids=["no BR 2-4-4", "no NANP 1-3-3", "NANP 3-3-3", "no trunk 0 run", "no IN 5-5 run", "no bare 10 run",
        "no BR run 2-4", "no run at the start", "no run after a (", "no group before x", "no group before a comma"])
def test_the_phone_texts_catch_a_shape_one_case_too_narrow(monkeypatch, narrower):
    """...and a shape test (of a candidate, or of a run in the pass) that forgets one case changes findings on
    them (so the test above can fail)."""
    where, name, value = narrower
    if isinstance(where, dict):
        monkeypatch.setitem(where, name, value)
    else:
        monkeypatch.setattr(where, name, value)
    assert _phone_differences(_phone_texts(30_000)) != []


class _PlainGeneric(GenericSecretDetector):
    """GENERIC_SECRET as first written: every ``CONTEXT`` match, the end of its sentence, then word by word."""

    __slots__ = ()

    def find(self, text, ctx=None):
        out, last_end = [], 0
        spans = getattr(ctx, "claimed", None)
        claimed = (lambda s, e: any(cs <= s and e <= ce for cs, ce in spans)) if spans else None
        word = re.compile(r"\S+")
        for m in CONTEXT.finditer(text):
            lower = m.group(0).lower()
            password = lower in generic.PASSWORD_WORDS or lower.rstrip("s") in generic.PASSWORD_WORDS
            end = m.end()
            limit = min(len(text), end + generic._REACH + self.rule.max_length)
            stop = generic._SENTENCE_END.search(text, end, limit)
            limit = stop.start() if stop else limit
            gap = 0
            for w in word.finditer(text, end, limit):
                if w.start() - end > generic._REACH:
                    break
                span = self._token(text, w.start(), w.end(), password, claimed) if w.end() - w.start() >= 8 else None
                if span is not None:
                    if span[0] >= last_end:
                        if not span[2]:
                            out.append((span[0], span[1]))
                        last_end = span[1]
                    break
                gap += 1
                if gap > generic._MAX_GAP_WORDS:
                    break
        return out


def _random_case(rng: random.Random, word: str) -> str:
    return rng.choice([str.lower, str.upper, str.title, lambda w: "".join(
        c.upper() if rng.random() < 0.5 else c for c in w)])(word)


def _generic_texts(n: int, seed: int = 31) -> list[str]:
    """Credential words, then words, tokens, look-alikes and vendor keys around sentence ends."""
    rng = random.Random(seed)
    alnum = string.ascii_letters + string.digits
    chars = alnum + "+/=_-.~!@#$%^&*()"

    def token() -> str:
        kind = rng.random()
        if kind < 0.15:
            return "".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(6, 26)))
        if kind < 0.25:
            return _random_case(rng, rng.choice(["certificate", "incorrect", "tracking", "vergessen", "question",
                                                 "Authorization", "contraseña", "schlüsselbund", "日本語日本語日本語"]))
        if kind < 0.45:
            return "".join(rng.choice(chars) for _ in range(rng.randint(6, 48)))
        if kind < 0.5:
            return "".join(rng.choice(alnum) for _ in range(rng.randint(250, 320)))
        if kind < 0.55:  # after one space, its last character is the last the detector looks at
            return ("".join(rng.choice(alnum) for _ in range(288)) + '"'
                    + "".join(rng.choice(chars) for _ in range(13)) + rng.choice("!.?;"))
        if kind < 0.7:
            return rng.choice([
                "".join(rng.choice("0123456789abcdef") for _ in range(40)), "af62b4f0-f054-4c4d-b03a-54f661a61411",
                "ORD-2018-944966", "1Z3VALGX1317602610", "2022-07-12T02:13:04Z", "v1.2.3-rc1", "web-08.example.org",
                "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB", "https://x.example/a?b=c", "jane@example.com",
                "........", "(Zx8#kLm2pQ9)", "=Qw7#rT2!pL9x", ":Hx82!kLq9Zs"])
        if kind < 0.85:  # vendor keys, claimed by their own detectors first
            return rng.choice(["ghp_", "sk-ant-api03-", "xoxb-", "AKIA", "glpat-", "sk_live_"]) + "".join(
                rng.choice(alnum) for _ in range(rng.choice([16, 20, 36, 40])))
        return rng.choice(["a", "the", "is", "my", "for", "id", "new", "-", "#42", "ok", "..."])

    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 3)):
            word = _random_case(rng, rng.choice(CONTEXT_WORDS))
            parts.append(rng.choice(["", "", "api_", "x-", "my", "service", "Service", "/", "+"]) + word
                         + rng.choice(["", "", "", "s", "es", "_id", "board", "e"]))
            parts.append(rng.choice([" ", ": ", "=", " = ", '="', " is ", "\n", ". ", "! ", "; ", "\xa0", "  ",
                                     " - ", ":\t", "`", " '"]))
            for _ in range(rng.randint(0, 6)):
                parts.append(token() + rng.choice(["", "", "", ".", ",", ")", "'", "`", "?", ";", '"']))
                parts.append(rng.choice([" ", " ", " ", "  ", ". ", ", ", "\n", "? ", "\t", "\u3000", "; ", "\r", "\x1f", ".\n"]))
        out.append("".join(parts))
    return out


def _generic_differences(texts: list[str]) -> list[str]:
    # without the pass: its credential-word starts are another test's business; here every word is tried
    fast, plain = Redactor({"prefilter": False}), Redactor({"prefilter": False})
    plain._detectors = tuple(_PlainGeneric(d.rule) if isinstance(d, GenericSecretDetector) else d
                             for d in plain._detectors)
    det, plain_det = GenericSecretDetector(), _PlainGeneric()
    return [t for t in texts if fast.find(t) != plain.find(t) or det.find(t) != plain_det.find(t)]


def test_generic_secret_word_shortcuts_change_no_finding():
    """One match for the words up to the sentence end, letters-only words dropped on sight, credential
    words matched by their first letter: on 20,000 generated texts the findings are those of every
    ``CONTEXT`` match, the sentence end and each word through ``_token`` (with and without claimed spans)."""
    texts = _generic_texts(20_000)
    plain = _PlainGeneric()
    assert sum(len(plain.find(t)) for t in texts) > 3_000
    assert _generic_differences(texts) == []


@pytest.mark.parametrize("narrower", [
    ("_SENTENCE_PUNCT", ""),
    ("_SENTENCE_PUNCT", ".!?"),
    ("_WORDS", re.compile(generic._WORDS.pattern.replace("\\n", ""))),
    ("_CONTEXT_AT", {**generic._CONTEXT_AT, "K": generic._CONTEXT_AT["t"]}),
], ids=["sentence end ignored", "no semicolon", "newline ignored", "K tried as t"])
def test_the_generic_texts_catch_a_shortcut_one_case_off(monkeypatch, narrower):
    monkeypatch.setattr(generic, *narrower)
    assert _generic_differences(_generic_texts(20_000)) != []


def _tail_texts(n: int, seed: int = 47) -> list[str]:
    """Credential words, then words at the edges of what ``_generic._SKIP`` takes: single-case and mixed-case
    tokens with digits of 6-22 characters, hex runs and UUIDs of every case (and without digits), look-alikes with a character
    changed or quotes, brackets, ``=``, ``.``, ``!``, ``;`` around them, letters-only words of 6-25 and of
    about 300, words with characters outside the token alphabet inside, tokens running past the reach,
    vendor keys (claimed first), ``base64,`` data; sentence ends, newlines and the end of the text right
    after a word."""
    rng = random.Random(seed)
    tc = string.ascii_letters + string.digits + "+/=_-.~!@#$%^&*()"
    shapes = ["ORD-2019-271719", "1Z3VALGX1317602610", "INC8899713", "v1.2.3-rc1", "2024-08-03T04:12:00Z",
              "10.0.13584.3940", "web-08.example.org", "JD688173131464260546", "4E:AE:E1:8E:D9:FB", "7285089221",
              "2d150f5727a68eea2e8a78239406e6501316c5a1", "af62b4f0-f054-4c4d-b03a-54f661a61411", "KB9254",
              "DF86B97C-26F9-4DC4-B0A1-7E43F1A2B3C4", "improve-enter-him-642", "MAX_RETRY_5", "0x1f2e3d4c5b6a"]

    def mutate(word: str) -> str:
        word = list(word)
        for _ in range(rng.choice([0, 0, 1, 1, 2])):
            i = rng.randrange(len(word))
            op = rng.random()
            if op < 0.4:
                word[i] = rng.choice(tc + "é:,'\"`—")
            elif op < 0.7:
                word.insert(i, rng.choice(tc))
            elif len(word) > 1:
                del word[i]
        return "".join(word)

    def one_case(k: int) -> str:
        alphabet = rng.choice([string.ascii_uppercase, string.ascii_lowercase]) + string.digits * 2
        word = [rng.choice(alphabet) for _ in range(k)]
        word[rng.randrange(k)] = rng.choice(string.digits)
        if rng.random() < 0.3:
            word[rng.randrange(k)] = rng.choice("+/=_-.~!@#$%^&*()")
        return "".join(word)

    def hex_run() -> str:
        digits = rng.choice(["0123456789abcdef", "0123456789ABCDEF", "0123456789abcdefABCDEF", "abcdefABCDEF"])
        run = "".join(rng.choice(digits) for _ in range(rng.randint(6, 70)))
        if rng.random() < 0.3:
            cut = sorted(rng.sample(range(1, len(run)), min(3, len(run) - 1)))
            run = "-".join(run[a:b] for a, b in zip([0, *cut], [*cut, len(run)]))
        return run

    def token() -> str:
        kind = rng.random()
        if kind < 0.2:
            word = one_case(rng.randint(6, 22))
        elif kind < 0.3:
            word = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(rng.randint(6, 22)))
        elif kind < 0.42:
            word = hex_run()
        elif kind < 0.6:
            word = mutate(rng.choice(shapes))
        elif kind < 0.68:
            word = "".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(6, 25)))
            word = word.lower() if rng.random() < 0.3 else word
        elif kind < 0.71:
            word = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(295, 305)))
        elif kind < 0.76:  # token runs and other characters in one word
            word = rng.choice(["é", "—", ",", ":", "'", "\""]).join(
                rng.choice([one_case(rng.randint(3, 12)), hex_run(), rng.choice(shapes)]) for _ in range(2))
        elif kind < 0.8:
            word = "".join(rng.choice(tc) for _ in range(rng.randint(240, 320)))
        elif kind < 0.88:
            word = rng.choice(["ghp_", "sk-ant-api03-", "xoxb-", "AKIA", "sk_live_", "eyJ"]) + "".join(
                rng.choice(string.ascii_letters + string.digits) for _ in range(rng.choice([16, 20, 36, 40])))
        elif kind < 0.9:
            word = "data:image/png;base64," + one_case(30)
        elif kind < 0.93:  # a credential word inside a joined word (the later context starts inside this one)
            word = (rng.choice(["my-", "abc-", "x1-", "ab12cd-"]) + rng.choice(["token", "key", "secret", "auth"]) + "-"
                    + "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(rng.randint(8, 30))))
        else:
            word = rng.choice(["a", "the", "is", "my", "for", "id", "new", "-", "#42", "ok", "...", "header:"])
        return (rng.choice(["", "", "", "", "=", "\"", "'", "(", "`", ":"]) + word
                + rng.choice(["", "", "", "", ".", "!", ";", "?", ")", ",", "\"", "'", ".\"", "`", "!."]))

    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 3)):
            parts.append(rng.choice(["", "", "api_", "x-", "my", "Service"]) + _random_case(rng, rng.choice(CONTEXT_WORDS))
                         + rng.choice(["", "", "", "s", "_id"]))
            parts.append(rng.choice([" ", ": ", "=", " = ", '="', " is ", ". ", "\n", "\xa0", "  ", " - "]))
            for _ in range(rng.randint(0, 5)):
                parts.append(token())
                parts.append(rng.choice([" ", " ", " ", "  ", "\t", "\n", ". ", "! ", "; ", "\u3000", " " * 40]))
        if rng.random() < 0.3:
            parts.pop()  # the text ends right after its last word
        out.append("".join(parts))
    return out


class _Claimed:
    """What a Redactor hands GENERIC_SECRET, with made-up claimed spans: ones that start before a credential
    word or inside it and end in or after one of the words that follow, and ones anywhere."""

    def __init__(self, text: str, rng: random.Random):
        self.context_starts = None
        self.lower = text.lower()
        words = [m.span() for m in re.finditer(r"\S+", text)]
        self.claimed = []
        for _ in range(rng.choice([0, 1, 2, 4])):
            if words and rng.random() < 0.7:
                ws, we = rng.choice(words)
                start = max(0, ws - rng.choice([0, 0, 1, 3, 12, 40]))
                self.claimed.append((start, we + rng.choice([0, 0, 0, 1, 5, 60])))
            else:
                start = rng.randrange(len(text) + 1)
                self.claimed.append((start, start + rng.randint(1, 80)))


def _tail_differences(texts: list[str]) -> list[str]:
    """Texts where GENERIC_SECRET's findings differ from ``_PlainGeneric``'s: alone, with made-up claimed spans,
    in a Redactor with and without the pass (claimed spans, the pass's credential-word starts), and with the
    loosest thresholds."""
    rng = random.Random(59)
    claims = {t: _Claimed(t, rng) for t in texts}
    pairs = [(lambda t: GenericSecretDetector().find(t, claims[t]), lambda t: _PlainGeneric().find(t, claims[t]))]
    for config in ({"prefilter": False}, {}, {"generic_secret_entropy": 1.0, "generic_secret_min_length": 8}):
        fast, plain = Redactor(config), Redactor(config)
        plain._detectors = tuple(_PlainGeneric(d.rule) if isinstance(d, GenericSecretDetector) else d
                                 for d in plain._detectors)
        pairs.append((fast.find, plain.find))
        rule = next(d.rule for d in fast._detectors if isinstance(d, GenericSecretDetector))
        pairs.append((GenericSecretDetector(rule).find, _PlainGeneric(rule).find))
    return [t for t in texts if any(a(t) != b(t) for a, b in pairs)]


def test_the_words_skipped_in_one_match_change_no_finding():
    """Every word after a credential word that ``_TAIL`` skips in C is one ``_words`` drops, and the first one
    it does not skip is the word ``_words`` stops at: on 12,000 generated texts at the edges of ``_SKIP`` the
    findings are those of every ``CONTEXT`` match, word by word through ``_token`` (alone, with claimed spans,
    with the pass, with the loosest thresholds)."""
    texts = _tail_texts(12_000)
    plain = _PlainGeneric()
    assert sum(len(plain.find(t)) for t in texts) > 1_500
    # the texts reach both ways out of the match: words skipped, and words handed to Python
    skipped = handed = 0
    for t in texts:
        for m in CONTEXT.finditer(t):
            g = generic._TAIL.match(t, m.end(), min(len(t), m.end() + 304)).lastindex
            skipped += g is None
            handed += g is not None
    assert skipped > 5_000 and handed > 5_000
    assert _tail_differences(texts) == []


def _wider(old: str, new: str):
    """``_TAIL`` with ``old`` in ``_SKIP`` replaced by ``new``."""
    assert old in generic._SKIP
    return generic._tail_regex(generic._SKIP.replace(old, new))


@pytest.mark.parametrize("wider", [
    lambda: _wider(r"(?=\S{1,8}+(?!\S))\S{1,7}", r"(?=\S{1,9}+(?!\S))\S{1,8}"),
    lambda: _wider(r"[A-Za-z]{8,19}+", r"[A-Za-z]{8,20}+"),
    lambda: _wider("{8,19}" + generic._RUN_END, "{8,20}" + generic._RUN_END),
    lambda: _wider(r"[a-z0-9+/=_\-.~!@#$%^&*()]", r"[a-zA-Z0-9+/=_\-.~!@#$%^&*()]"),
    lambda: _wider(r"(?=[A-Za-z+/=_\-.~!@#$%^&*()]*[0-9])", ""),
    lambda: _wider(generic._SHAPES_IN_RUN.pattern, r"[A-Za-z0-9+/=_\-.~!@#$%^&*()]+"),
    lambda: generic._tail_regex(word_end=r"(?:\Z|(?=\s))"),
], ids=["short words up to 8", "letters-only up to 20", "single-case runs up to 20", "mixed-case runs",
        "runs without a digit", "any run a shape", "sentence end after a skipped word ignored"])
def test_the_tail_texts_catch_a_skip_one_case_too_wide(monkeypatch, wider):
    monkeypatch.setattr(generic, "_TAIL", wider())
    assert _tail_differences(_tail_texts(12_000)) != []


def test_the_tail_texts_catch_one_word_too_many(monkeypatch):
    monkeypatch.setattr(generic, "_MAX_GAP_WORDS", generic._MAX_GAP_WORDS + 1)
    tail = generic._tail_regex()
    monkeypatch.setattr(generic, "_MAX_GAP_WORDS", generic._MAX_GAP_WORDS - 1)
    monkeypatch.setattr(generic, "_TAIL", tail)
    assert _tail_differences(_tail_texts(12_000)) != []


def test_the_credential_word_and_its_first_words_are_one_match():
    """``_CONTEXT_LEAD`` (``_CONTEXT_LEAD_AT`` by first letter) matches where ``CONTEXT`` does, the same credential
    word, with the groups ``_LEAD`` gives after it: at every position of 4,000 generated texts."""
    texts = _tail_texts(2_000) + _generic_texts(2_000)
    matched = 0
    for t in texts:
        for i in range(len(t)):
            m = CONTEXT.match(t, i)
            both = generic._CONTEXT_LEAD_AT.get(t[i], generic._CONTEXT_LEAD).match(t, i)
            assert (m is None) == (both is None), (t, i)
            if m is not None:
                matched += 1
                assert both.span() == m.span() and both.regs[1:] == generic._LEAD.match(t, m.end()).regs[1:], (t, i)
    assert matched > 5_000


def _leads(monkeypatch, short: str = generic._SHORT_WORD, count_off: int = 0, read: str = generic._READ):
    """``_lead_regexes`` with ``short`` for the short words, ``read`` for the word read, and ``_LEAD_AFTER``
    reading ``count_off`` more words, in place of the module's."""
    monkeypatch.setattr(generic, "_READ", read)
    any_word, at, after = generic._lead_regexes(short)
    after = {g: generic._tail_regex(short, count=(g - 1) // 2 + count_off, read=read) for g in after}
    for name, value in zip(("_CONTEXT_LEAD", "_CONTEXT_LEAD_AT", "_LEAD_AFTER"), (any_word, at, after)):
        monkeypatch.setattr(generic, name, value)


@pytest.mark.parametrize("lead", [
    {"short": r"(?=\S{1,9}+(?!\S))\S{1,8}"},
    {"count_off": 1},
    {"count_off": -1},
    {"read": generic._READ.replace("([A-Za-z", "([,A-Za-z")},
], ids=["short words up to 8", "a word too many after the first read", "a word too few after the first read",
        "a comma in a token-run word"])
def test_the_tail_texts_catch_a_lead_one_case_off(monkeypatch, lead):
    """With claimed spans, the words ``_find_claimed`` skips in the credential word's match and after each word it
    reads, and the words it reads as one token run: the claimed cases of ``_tail_differences`` catch one case off."""
    _leads(monkeypatch, **lead)
    assert _tail_differences(_tail_texts(12_000)) != []


_VERSION_BEFORE = r"(?i)v?\d+(?:\.\d+){1,4}(?:[\-+.]?[a-z0-9]+)*"  # at a19b7b7: ~2^n steps on a run it cannot end


def _version_like(n: int, seed: int = 61) -> list[str]:
    """Short strings of version characters (so that the form before stays fast): digits, dots, letters, ``-+=_``."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        head = rng.choice(["", "", "v", "V", "1.", "1.2", "10.0.", "v2.3-", "1.2.3.4.5."])
        out.append(head + "".join(rng.choice("0123456789..-+aZrcx=_") for _ in range(rng.randint(0, 12))))
    return out


def _version_differences(version: str) -> list[str]:
    """Strings where ``_SHAPES``/``_SHAPES_IN_RUN`` (``fullmatch``, and a match then ``_RUN_END``) built with the
    ``_VERSION`` pattern ``version`` differ from those built with the form before."""
    def built(pattern: str) -> tuple:
        version_rx = re.compile(pattern)
        shapes = generic._SHAPES.pattern.replace(generic._VERSION.pattern.removeprefix("(?i)"),
                                                 pattern.removeprefix("(?i)"))
        in_run = generic._SHAPES_IN_RUN.pattern.replace(generic._VERSION.pattern.removeprefix("(?i)"),
                                                        pattern.removeprefix("(?i)"))
        return version_rx, re.compile(shapes), re.compile(in_run), re.compile(f"(?:{in_run}){generic._RUN_END}")

    now, before = built(version), built(_VERSION_BEFORE)
    texts = _version_like(60_000)
    return [t for t in texts if any((a.fullmatch(t) is None) != (b.fullmatch(t) is None) for a, b in zip(now[:3], before[:3]))
            or _span(now[3].match(t + " .")) != _span(before[3].match(t + " ."))
            or _span(now[3].match(t + "é")) != _span(before[3].match(t + "é"))]


def _span(m):
    return None if m is None else m.span()


def test_the_version_shape_takes_what_its_backtracking_form_took():
    """``_VERSION`` with its tail possessive (no split of a letter-and-digit run tried) takes the strings the form
    before took, and where ``_SKIP`` matches it then ``_RUN_END`` it ends where that one did, on 60,000 strings;
    a run that no token ends with is refused at once (it took ~2^n steps)."""
    assert generic._SHAPES.pattern.count(generic._VERSION.pattern.removeprefix("(?i)")) == 1
    assert generic._SHAPES_IN_RUN.pattern.count(generic._VERSION.pattern.removeprefix("(?i)")) == 1
    assert sum(generic._VERSION.fullmatch(t) is not None for t in _version_like(60_000)) > 5_000
    assert _version_differences(generic._VERSION.pattern) == []
    assert generic._SHAPES.fullmatch("1.2" + "a" * 400 + "=") is None
    assert Redactor().find("my key is 1.2" + "a9" * 150 + "= thanks") == []


def test_the_version_texts_catch_a_tail_one_case_off():
    assert _version_differences(generic._VERSION.pattern.replace(r"[\-+.]?", r"[\-+]?")) != []
    assert _version_differences(generic._VERSION.pattern.replace("{1,4}", "{2,4}")) != []


def _token_runs(n: int, seed: int = 53) -> list[str]:
    """Runs of ``_TOKEN`` characters: look-alikes with characters changed, digit and hex runs with separators."""
    rng = random.Random(seed)
    tc = string.ascii_letters + string.digits + "+/=_-.~!@#$%^&*()"
    seeds = ["ORD-2019-271719", "1Z3VALGX1317602610", "v1.2.3-rc1", "2024-08-03T04", "2024-08-03z", "10.0.13584.3940",
             "web-08.example.org", "JD688173131464260546", "0x1f2e3d4c5b6a", "af62b4f0-f054-4c4d-b03a-54f661a61411",
             "12/03/2024", "2024.01.01Z", "MAX_RETRY_5", "improve-enter-him-642", "+1-555.0100/7", "#42"]
    out = []
    for _ in range(n):
        if rng.random() < 0.6:
            run = list(rng.choice(seeds))
            for _ in range(rng.randint(0, 3)):
                i = rng.randrange(len(run))
                if rng.random() < 0.5:
                    run[i] = rng.choice(tc)
                else:
                    run.insert(i, rng.choice(rng.choice([string.digits, "-./_+zZtT", tc])))
        else:
            alphabet = rng.choice([string.digits + "-./", string.hexdigits + "-", tc, string.digits + "zZ-/."])
            run = [rng.choice(alphabet) for _ in range(rng.randint(1, 30))]
        out.append("".join(run))
    return out


def test_the_shapes_of_a_token_run_are_the_shapes():
    """``_SHAPES_IN_RUN`` (what ``_SKIP`` tries inside a word) takes the same runs as ``_SHAPES``, which can also
    take ``:`` and spaces — characters no run holds: on 50,000 runs, ``fullmatch`` agrees."""
    runs = _token_runs(50_000)
    assert not any(c in run for run in runs for c in ": ")
    assert sum(generic._SHAPES.fullmatch(run) is not None for run in runs) > 10_000
    assert [r for r in runs if (generic._SHAPES.fullmatch(r) is None) != (generic._SHAPES_IN_RUN.fullmatch(r) is None)] == []


@pytest.mark.parametrize("old, new", [
    (r"\d{1,4}z?)", r"\d{1,4})"),
    (r"(?:0x)?[0-9A-Fa-f]+(?:-[0-9A-Fa-f]+)*)", r"(?:0x)?[0-9A-Fa-f]+)"),
], ids=["dates without z", "hex without groups"])
def test_the_token_runs_catch_a_shape_one_case_off(monkeypatch, old, new):
    assert old in generic._SHAPES_IN_RUN.pattern
    monkeypatch.setattr(generic, "_SHAPES_IN_RUN", re.compile(generic._SHAPES_IN_RUN.pattern.replace(old, new)))
    with pytest.raises(AssertionError):
        test_the_shapes_of_a_token_run_are_the_shapes()


class _Spans:
    """What a Redactor hands GENERIC_SECRET: the claimed spans, no pass."""

    def __init__(self, text: str, claimed: list[tuple[int, int]]):
        self.context_starts = None
        self.lower = text.lower()
        self.claimed = claimed


def _stacked_texts(n: int, seed: int = 67) -> list[tuple[str, list[tuple[int, int]]]]:
    """A credential word, then short words among which more credential words stand ("Authorization: Bearer",
    "key token:", "password mot de passe", "clave parola"), then a long word that a made-up claimed span covers
    (or a run inside it, or nothing), then more words: tokens, secrets, credential words. "parola d'ordine" is the
    credential word whose last part is itself a long word."""
    rng = random.Random(seed)
    alnum = string.ascii_letters + string.digits
    short_words = ["a", "is", "my", "the", "-", ":", "#1", "id", "new"]
    stacked = ["bearer", "key", "token", "pwd", "mdp", "auth", "secret", "mot de passe", "parola", "clé", "ключ",
               "密码"]

    def long_word() -> str:
        kind = rng.random()
        if kind < 0.4:
            return "".join(rng.choice(alnum) for _ in range(rng.choice([9, 12, 20, 36, 40])))
        if kind < 0.55:
            # a run of 8 inside ("ordinees") is what a claimed span can decide; "parola d'ordinees" runs past it
            return rng.choice(["d'ordine", "d'ordinees", "D'ORDINEES", "d'ordinees_" + "x7" * 8])
        if kind < 0.7:
            return rng.choice(['="', "'", "`", "("]) + "".join(rng.choice(alnum) for _ in range(24)) + rng.choice(
                ['"', "'", "`", ")", ""])
        if kind < 0.8:
            return rng.choice(["certificate", "incorrect", "vergessenes"])
        return "".join(rng.choice(alnum + "+/=_-.~!@#$%^&*()") for _ in range(rng.randint(8, 30)))

    def after() -> str:
        words = []
        for _ in range(rng.randint(0, 4)):
            words.append(rng.choice([
                "".join(rng.choice(alnum) for _ in range(rng.choice([10, 16, 24]))),
                rng.choice(["Zx8#kLm2pQ9", "=Qw7#rT2!pL9x", "hunter2hunter2", "ghp_" + "a1B2" * 9]),
                _random_case(rng, rng.choice(CONTEXT_WORDS)), rng.choice(short_words),
                "".join(rng.choice(alnum + "!@#$%") for _ in range(rng.randint(8, 20)))]))
        return " ".join(words)

    out = []
    for _ in range(n):
        parts = [_random_case(rng, rng.choice(["Authorization", "password", "key", "token", "clave", "secret"])),
                 rng.choice([": ", " ", "=", " = ", " is "])]
        for _ in range(rng.randint(1, 3)):
            parts.append(_random_case(rng, rng.choice(stacked + short_words)) + rng.choice(["", "", "s", ":"]))
            parts.append(rng.choice([" ", " ", "  ", "\t"]))
        start = len("".join(parts))
        word = long_word()
        parts.append(word)
        rest = after()
        if rest:
            parts.append(rng.choice([" ", " ", ". ", "\n"]) + rest)
        text = "".join(parts)
        end = start + len(word)
        claimed = rng.choice([[(start, end)], [(start, end)], [(start - 2, end + 3)], [(start + 2, end - 1)],
                              [(start, end), (end + 1, end + 30)], []])
        out.append((text, sorted(claimed)))
    return out


def _stacked_differences(texts: list[tuple[str, list[tuple[int, int]]]]) -> list[str]:
    """Texts where GENERIC_SECRET's findings with the claimed spans differ from ``_PlainGeneric``'s, and (real
    claims, the pass's starts) where a Redactor's differ from one with ``_PlainGeneric``."""
    fast, plain = GenericSecretDetector(), _PlainGeneric()
    red, red_plain = Redactor(), Redactor()
    red_plain._detectors = tuple(_PlainGeneric(d.rule) if isinstance(d, GenericSecretDetector) else d
                                 for d in red_plain._detectors)
    return [t for t, claimed in texts if fast.find(t, _Spans(t, claimed)) != plain.find(t, _Spans(t, claimed))
            or red.find(t) != red_plain.find(t)]


def test_credential_words_before_a_claimed_word_change_no_finding():
    """A credential word among the short words between another and the word that word reads first, when a claimed
    span decided that word, is not tried again (``_find_claimed``'s ``decided``): on 12,000 generated texts the
    findings are those of every ``CONTEXT`` match, word by word (``"parola d'ordinees"``, whose match runs past
    that word, is tried)."""
    texts = _stacked_texts(12_000)
    plain = _PlainGeneric()
    assert sum(len(plain.find(t, _Spans(t, c))) for t, c in texts) > 2_000
    assert _stacked_differences(texts) == []


def test_the_stacked_texts_catch_a_credential_word_of_several_words_skipped(monkeypatch):
    """"clave parola d'ordinees <secret>": "parola" starts before the claimed "d'ordinees", and its match runs past
    it, to the secret."""
    monkeypatch.setattr(generic, "_MULTI_WORD_HEADS", ())
    monkeypatch.setattr(generic, "_MULTI_WORD_HEAD", 0)
    assert _stacked_differences(_stacked_texts(12_000)) != []
