"""CREDENTIAL and AWS_SECRET_KEY after the Hyperscan pass work from what the pass reports (where a key word and
the separator end; where AWS's context words start) instead of searching lower-cased text for their needles,
BEARER_TOKEN and URL_CREDENTIALS match where their regexes can start (where the pass saw ``[Bb]earer`` or ``://``, or
``str.find`` found them) instead of searching windows:
on generated text made to sit at the edges of those shortcuts, the findings are those of the needle searches
(the detectors as they run on text the pass does not see). Each generator is checked to catch a shortcut made
one case wrong."""

from __future__ import annotations

import random
import re

import pytest
from dspy_tracekit_redact import BUILTIN_ENTITIES, Redactor
from dspy_tracekit_redact import _detectors as detectors
from dspy_tracekit_redact import _prefilter as prefilter_module
from dspy_tracekit_redact._detectors import CredentialDetector, Text

needs_hyperscan = pytest.mark.skipif(prefilter_module.hyperscan is None, reason="no hyperscan wheel here")

#: key words of every alternative (with and without ``_``/``-``, in any case, with a ``name_`` prefix) and
#: look-alikes that end with a needle but are no key word
_KEY_WORDS = (
    "password", "passwd", "pwd", "passphrase", "pass", "secret", "client_secret", "client-secret", "clientsecret",
    "api_key", "api-key", "apikey", "APIKEY", "Api_Key", "access_key", "accesskey", "secret_key", "secretkey",
    "access_token", "accesstoken", "auth_token", "authtoken", "refresh-token", "refreshtoken", "token", "pin",
    "credential", "credentials", "PASSWORD", "my_db_password", "a-b_c-token", "x__token", "_token", "-pin",
    "é_password", "passwordé", "key_pass", "9pass", "key", "monkey", "passport", "keyboard", "pins", "tokens",
    "spin", "bypass", "xpassword",
)
#: separators the regex takes (``:``/``=``/`` is `` after spaces, a quote, a backslash) and near misses; some
#: are as long as the needle search's window after the key word (60), one shorter or longer
_SEPARATORS = (
    ":", "=", " is ", " : ", '": ', '\\": ', "': ", "\\:", " = ", "\t=\t", "\n:\n", ":=", "::", " IS ", " iS ",
    "is ", " is", "  is  ", '"', "'", " ", ':"', "=\\'", ' is "', ': \\"', ":" + "\n" * 59,
    *(":" + " " * k for k in range(57, 63)), *(" " * k + ":" for k in range(57, 63)),
    *(" " * k + "is " for k in range(55, 62)), *('\\"' + " " * k + "= " for k in range(55, 61)),
)
_LONG = frozenset(s for s in _SEPARATORS if len(s) > 50)
_VALUES = (
    "hunter2", "hunter2!", "ab", "abc", "abc.", "abc..", "x.y", "<CREDENTIAL>", "<x", "sk-abcdef", "hunter",
    "Zq8#mP2!vL9x", "a,b", "a;b", "a`b", "a'b", "token: zz9", "password=xyz1", "is", "isis", "é1é", "a" * 70,
    "is hunter2!", '"quoted1"', "'q2'", "v\\w1", ":", "==", "xyz   abc",
    "ab.", "abc...", "a.b.", "abcd.", "x.", "....", ".abc", "<a>", "<ab>.", "hunter.",
    "sk-ant-api03-" + "Ab9" * 30 + ".",
)
_FILL = ("", " ", " ", "\n", ", ", ". ", "; ", "and ", "é ", "x", "_", "-", '"', "`", "(", " " * 40, "word ",
         "the key to ")


def _credential_texts(n: int, seed: int = 41) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 5)):
            parts.append(rng.choice(_FILL))
            word = rng.choice(_KEY_WORDS)
            if rng.random() < 0.3:
                word = "".join(c.upper() if rng.random() < 0.5 else c for c in word)
            parts.append(word)
            sep = rng.choice(_SEPARATORS)
            while sep in _LONG and rng.random() < 0.6:  # most keys with a separator of everyday length
                sep = rng.choice(_SEPARATORS)
            parts.append(sep)
            parts.append(rng.choice(_VALUES))
            if rng.random() < 0.3:
                parts.append(rng.choice(_FILL) * rng.randint(1, 20))
        out.append("".join(parts))
    return out + ["x" * 65530 + " password: abc", "password: " + "a" * 70000]


def _prepared(p, text: str) -> Text:
    ctx = Text(text)
    ctx.finders = p.finders
    if ctx.scannable:
        _, ctx.context_starts, ctx.digit_runs, ctx.positions = p.scan(text)
    return ctx


def _credential_differences(texts: list[str], counts: dict | None = None) -> list[str]:
    p = prefilter_module.Prefilter(BUILTIN_ENTITIES)
    det = next(d for d in Redactor()._detectors if isinstance(d, CredentialDetector))
    differ = []
    for text in texts:
        needles = Text(text)
        needles.finders = p.finders  # no positions: the needle search
        slow = det.find(text, needles)
        ctx = _prepared(p, text)
        ends = ctx.positions.get("CREDENTIAL", []) if ctx.positions is not None else None
        fast = det.find(text, ctx) if ends else []  # the Redactor runs it where the pass saw a key only
        if fast != slow:
            differ.append(text)
        if counts is not None:
            counts["found"] += len(slow)
            if ends:
                counts["after keys" if det._after_keys(text, ctx, ends) is not None else "needles"] += 1
    return differ


@needs_hyperscan
def test_credential_from_the_ends_the_pass_reports_finds_what_the_needle_search_finds():
    """``CredentialDetector._after_keys``: the regex's part after the key word, tried where the pass saw a
    needle and a separator end, finds what the needle search's windows and token starts find."""
    from collections import Counter

    counts: Counter = Counter()
    texts = _credential_texts(20_000)
    assert _credential_differences(texts, counts) == []
    assert counts["found"] > 15_000
    assert counts["after keys"] > 10_000 and counts["needles"] > 1_000  # both ways are taken


@needs_hyperscan
def test_credential_from_the_pass_leaves_every_redactor_finding():
    """The same through the Redactor (every detector, the overlaps resolved) as without the pass."""
    fast, slow = Redactor(), Redactor({"prefilter": False})
    texts = _credential_texts(3_000, seed=43)
    assert sum(f.entity == "CREDENTIAL" for t in texts for f in slow.find(t)) > 2_000
    assert [t for t in texts if fast.find(t) != slow.find(t)] == []


def _pass_pattern(old: str, new: str):
    (pattern, length), = prefilter_module.POSITIONS["CREDENTIAL"]
    assert old in pattern
    return {**prefilter_module.POSITIONS, "CREDENTIAL": ((pattern.replace(old, new, 1), length),)}


_WS = prefilter_module._WS


@needs_hyperscan
@pytest.mark.parametrize("broken", [
    ("_LONG_SEPARATOR", re.compile(detectors._LONG_SEPARATOR.pattern.replace("{61}", "{62}"))),
    ("_SEPARATOR_CHARS", detectors._SEPARATOR_CHARS - {"s"}),
    ("POSITIONS", ("\\\\?", "")),
    ("POSITIONS", ("|" + _WS + "+is" + _WS, "")),
    ("POSITIONS", ("|pin|", "|")),
    ("POSITIONS", ("(?:^|[^A-Za-z0-9])", "[^A-Za-z0-9]")),
    ("POSITIONS", ("(?:^|[^A-Za-z0-9])", "(?:^|[^A-Za-z0-9_])")),
], ids=["separator of 62", "no s in a separator", "pass: no backslash", "pass: no ' is '", "pass: no pin",
        "pass: not at the start", "pass: not after _"])
def test_the_credential_texts_catch_a_shortcut_one_case_off(monkeypatch, broken):
    """...and a shortcut one case off changes findings on them (so the test above can fail)."""
    name, value = broken
    if name == "POSITIONS":
        monkeypatch.setattr(prefilter_module, "POSITIONS", _pass_pattern(*value))
    else:
        monkeypatch.setattr(detectors, name, value)
    assert _credential_differences(_credential_texts(12_000)) != []


#: what sits before an AWS run: its context words in any case, a needle of the old anchor that is none
#: (``access_key``), look-alikes, and fillers that put the word 190-210 characters before the run
_AWS_WORDS = ("aws", "AWS", "Secret", "SECRET", "akia", "AKIA", "asia", "access key", "Access Key", "access_key",
              "aws_secret_access_key", "AWS_SECRET_ACCESS_KEY=", "acess key", "ass", "sec ret", "x", "",
              "access ", "ACCESS ")
_AWS_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+"
#: (a lone surrogate too: ``_near_words`` reads the ranges as ``encode("ascii", "replace")`` bytes, one per character)
_AWS_SEPARATORS = (" ", "", "=", "==", "\n", "/", ".", "é", "'", "-", ": ", "_", '"', "\udc80", "=\udc80")


def _aws_run(rng: random.Random) -> str:
    n = rng.choice((38, 39, 40, 40, 40, 40, 41, 42))
    if rng.random() < 0.15:  # hex (a git SHA), lower case only, or no digit: one or two kinds
        alphabet = rng.choice(("0123456789abcdef", "abcdefghijklmnop", "ABCDEFGHIJKabc/+"))
        return "".join(rng.choice(alphabet) for _ in range(n))
    head = rng.choice(("", "", "", "key", "Key", "aws", "Secret", "AKIA"))  # "access " + "key...": a word into the run
    return head + "".join(rng.choice(_AWS_ALPHABET) for _ in range(n - len(head)))


def _aws_texts(n: int, seed: int = 47) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 4)):
            parts.append(rng.choice(_AWS_WORDS))
            if rng.random() < 0.5:
                parts.append(rng.choice(_AWS_SEPARATORS))
            if rng.random() < 0.4:  # the word about 200 characters before the run
                gap = rng.randint(150, 215)
                parts.append(rng.choice((" ", "é", "word ", "ab cd ")) * (gap // 4) + " " * (gap % 4))
            parts.append(_aws_run(rng))
            parts.append(rng.choice(_AWS_SEPARATORS))
        out.append("".join(parts))
    return out


def _aws_differences(texts: list[str], counts: dict | None = None) -> list[str]:
    p = prefilter_module.Prefilter(BUILTIN_ENTITIES)
    det = next(d for d in Redactor()._detectors if isinstance(d, detectors.AwsSecretDetector))
    differ = []
    for text in texts:
        anchor = Text(text)
        anchor.finders = p.finders  # no positions: the anchor windows
        slow = det.find(text, anchor)
        ctx = _prepared(p, text)
        words = ctx.positions.get("AWS_SECRET_KEY", []) if ctx.positions is not None else None
        fast = det.find(text, ctx) if words is None or words else []  # run where the pass saw a context word
        if fast != slow:
            differ.append(text)
        if counts is not None:
            counts["found"] += len(slow)
            counts["near words"] += bool(words)
    return differ


@needs_hyperscan
def test_aws_secret_key_near_the_context_words_of_the_pass_finds_what_the_anchor_windows_find():
    """``AwsSecretDetector._near_words``: runs looked for within reach of the context words the pass saw are
    the runs the anchor windows of the needle search hold and ``_aws_secret_ok`` takes."""
    from collections import Counter

    counts: Counter = Counter()
    texts = _aws_texts(15_000)
    assert _aws_differences(texts, counts) == []
    assert counts["found"] > 4_000 and counts["near words"] > 10_000


@needs_hyperscan
def test_aws_secret_key_from_the_pass_leaves_every_redactor_finding():
    fast, slow = Redactor(), Redactor({"prefilter": False})
    texts = _aws_texts(3_000, seed=53)
    assert sum(f.entity == "AWS_SECRET_KEY" for t in texts for f in slow.find(t)) > 800
    assert [t for t in texts if fast.find(t) != slow.find(t)] == []


@needs_hyperscan
@pytest.mark.parametrize("broken", [(4, 242), (2, 240), (2, 239)],
                         ids=["from the word's 4th character", "to 240 after it", "to 239 after it"])
def test_the_aws_texts_catch_a_range_one_case_off(monkeypatch, broken):
    """...and a range one character short changes findings on them (so the test above can fail)."""
    monkeypatch.setattr(detectors, "_AWS_NEAR", broken)
    assert _aws_differences(_aws_texts(15_000)) != []


def _aws_bytes_with(char: str, value: int) -> bytes:
    table = bytearray(detectors._AWS_RUN_BYTES)
    table[ord(char)] = value
    return bytes(table)


@needs_hyperscan
@pytest.mark.parametrize("char, value", [("=", 0), ("+", 0), ("?", 1), ("0", 2)],
                         ids=["= as an end", "+ as no run character", "non-ASCII as a run character", "0 as ="])
def test_the_aws_texts_catch_a_run_byte_one_case_off(monkeypatch, char, value):
    """...and so does a byte of ``_near_words``' table that says another kind of character than the regex sees
    (``?``: what a non-ASCII character or a lone surrogate is in the encoded range)."""
    monkeypatch.setattr(detectors, "_AWS_RUN_BYTES", _aws_bytes_with(char, value))
    assert _aws_differences(_aws_texts(15_000)) != []


_BEARER_BEFORE = ("", " ", "x", "_", "-", "é", "Authorization: ", "'", "\n", "(")
_BEARER_WORDS = ("Bearer", "bearer", "BEARER", "Bearers", "bearer bond", "earer", "Bearer Bearer")
_BEARER_SPACES = (" ", "  ", "\t", "\n", "", "=", " " * 39, " " * 40, " " * 41, " " * 42, " " * 45, "\t" * 41)
_BEARER_TOKEN = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"


def _bearer_texts(n: int, seed: int = 59) -> list[str]:
    """``Bearer`` and look-alikes, then spaces up to one past the anchor window's end, then tokens of 14-40
    characters (letters only, which the validator refuses; with ``=`` padding; holding ``bearer``)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 4)):
            parts.append(rng.choice(_BEARER_BEFORE))
            parts.append(rng.choice(_BEARER_WORDS))
            parts.append(rng.choice(_BEARER_SPACES))
            alphabet = _BEARER_TOKEN if rng.random() < 0.8 else _BEARER_TOKEN[:52]
            token = "".join(rng.choice(alphabet) for _ in range(rng.choice((14, 15, 16, 16, 17, 24, 40))))
            if rng.random() < 0.15:
                token = token[:8] + rng.choice(("Bearer", "bearer ", "earer")) + token[8:]
            parts.append(token + rng.choice(("", "", "=", "==", " ", ".", "'")))
        out.append("".join(parts))
    return out


def _bearer_differences(texts: list[str], counts: dict | None = None) -> list[str]:
    """Texts where ``BearerDetector.find`` differs from the anchor windows, with ``str.find`` or (with the
    ``hyperscan`` wheel) where the pass saw ``[Bb]earer``."""
    from dspy_tracekit_redact._detectors import BearerDetector, Detector

    det = next(d for d in Redactor()._detectors if isinstance(d, BearerDetector))
    p = prefilter_module.Prefilter(BUILTIN_ENTITIES) if prefilter_module.hyperscan is not None else None
    differ = []
    for text in texts:
        slow = Detector.find(det, text, Text(text))  # the anchor windows
        if det.find(text, Text(text)) != slow or (p is not None and det.find(text, _prepared(p, text)) != slow):
            differ.append(text)
        if counts is not None:
            counts["found"] += len(slow)
    return differ


def test_bearer_token_matched_at_each_earer_finds_what_the_anchor_windows_find():
    """``BearerDetector``: the regex tried one character before each ``earer``, to the text's end, finds what
    its search in the anchor windows finds (the windows decide after 40 spaces)."""
    from collections import Counter

    counts: Counter = Counter()
    assert _bearer_differences(_bearer_texts(15_000), counts) == []
    assert counts["found"] > 4_000


def test_the_bearer_texts_catch_a_window_one_off(monkeypatch):
    monkeypatch.setattr(detectors, "_BEARER_WINDOW", detectors._BEARER_WINDOW + 1)
    assert _bearer_differences(_bearer_texts(15_000)) != []


@needs_hyperscan
def test_the_bearer_texts_catch_a_pass_position_one_case_off(monkeypatch):
    monkeypatch.setitem(prefilter_module.POSITIONS, "BEARER_TOKEN", (("Bearer", 6),))
    assert _bearer_differences(_bearer_texts(15_000)) != []


def _redactor_differences(texts: list[str], prefilter) -> list[str]:
    fast, slow = Redactor(), Redactor({"prefilter": False})
    fast._prefilter = prefilter
    return [t for t in texts if fast.find(t) != slow.find(t)]


@needs_hyperscan
def test_the_bearer_trigger_of_the_pass_leaves_every_finding(monkeypatch):
    """The pass's BEARER_TOKEN trigger (``Bearer``, spaces, 16 token characters) fires wherever the detector can
    find a token; one token character more and it misses some."""
    texts = _bearer_texts(4_000, seed=61)
    assert _redactor_differences(texts, prefilter_module.Prefilter(BUILTIN_ENTITIES)) == []
    (trigger,) = prefilter_module.TRIGGERS["BEARER_TOKEN"]
    monkeypatch.setitem(prefilter_module.TRIGGERS, "BEARER_TOKEN", (trigger.replace("{16}", "{17}"),))
    assert _redactor_differences(texts, prefilter_module.Prefilter(BUILTIN_ENTITIES)) != []


_SCHEMES = ("https", "postgres", "mongodb+srv", "redis", "a.b-c", "x", "1http", "http2", "git+ssh", "s3", "-ftp",
            "svn+ssh.x", "h" * 29, "h" * 30, "h" * 31, "a" * 12 + "+" + "b" * 18, "ab.cd" * 7, "")
_URL_BEFORE = ("", " ", "_", "é", "-", ".", "+", "x", "(", "'", "\n", "9", "a" * 35 + ".", "@")
_USER_INFO = ("user:pass", "u:p", "user", "u:p:q", "a/b:c", "u:p<x", "jane.doe:s3cr3t!", "u: p", "é:ü", ":p", "u:")


def _url_texts(n: int, seed: int = 67) -> list[str]:
    """Schemes up to one past the anchor window's 30 characters, after word characters or not, with user info
    or its near misses, URLs run together (``a://u:p@b://u:p@c``)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 4)):
            parts.append(rng.choice(_URL_BEFORE) + rng.choice(_SCHEMES) + rng.choice(("://", "://", ":/", "//")))
            parts.append(rng.choice(_USER_INFO) + rng.choice(("@", "@", "@@", "", " @")))
            parts.append(rng.choice(("db.example.com/x", "h", "", " ", "host:5432 ", "b")))
        out.append("".join(parts))
    return out


def _url_differences(texts: list[str], counts: dict | None = None) -> list[str]:
    """Texts where ``UrlCredentialsDetector.find`` differs from the anchor windows, with ``str.find`` or (with the
    ``hyperscan`` wheel) where the pass saw ``://``."""
    from dspy_tracekit_redact._detectors import Detector, UrlCredentialsDetector

    det = next(d for d in Redactor()._detectors if isinstance(d, UrlCredentialsDetector))
    p = prefilter_module.Prefilter(BUILTIN_ENTITIES) if prefilter_module.hyperscan is not None else None
    differ = []
    for text in texts:
        slow = Detector.find(det, text, Text(text))  # the anchor windows
        if det.find(text, Text(text)) != slow or (p is not None and det.find(text, _prepared(p, text)) != slow):
            differ.append(text)
        if counts is not None:
            counts["found"] += len(slow)
    return differ


def test_url_credentials_matched_at_scheme_starts_find_what_the_anchor_windows_find():
    """``UrlCredentialsDetector``: the regex tried where the scheme before each ``://`` can start finds what its
    search in the anchor windows finds (the windows decide for a scheme run longer than 30)."""
    from collections import Counter

    counts: Counter = Counter()
    assert _url_differences(_url_texts(15_000), counts) == []
    assert counts["found"] > 3_000


def test_the_url_texts_catch_a_window_one_off(monkeypatch):
    monkeypatch.setattr(detectors, "_URL_BEFORE", detectors._URL_BEFORE + 1)
    assert _url_differences(_url_texts(15_000)) != []


@needs_hyperscan
def test_the_url_texts_catch_a_pass_position_one_case_off(monkeypatch):
    """(``?``: a non-ASCII character right after ``://``, as the pass sees it)"""
    monkeypatch.setitem(prefilter_module.POSITIONS, "URL_CREDENTIALS", (("://[^?]", 4),))
    assert _url_differences(_url_texts(15_000)) != []


def test_the_bearer_validator_is_the_test_of_every_token_character():
    """``_v_bearer`` (one search) says what ``any(c.isdigit() or c in "-_.~+/" ...)`` over the token says, on
    tokens of the regex's characters with at most two that are no letter."""
    from dspy_tracekit_redact._detectors import BearerDetector, _v_bearer

    regex = next(d for d in Redactor()._detectors if isinstance(d, BearerDetector)).regex
    rng = random.Random(71)
    letters, others = _BEARER_TOKEN[:52], _BEARER_TOKEN[52:]
    checked = 0
    for _ in range(20_000):
        token = [rng.choice(letters) for _ in range(rng.randint(16, 40))]
        for _ in range(rng.choice((0, 0, 1, 2))):
            token[rng.randrange(len(token))] = rng.choice(others)
        m = regex.match("Bearer " + "".join(token) + rng.choice(("", "=", "==")))
        tok = m.group("tok")
        assert _v_bearer("", m) == any(c.isdigit() or c in "-_.~+/" for c in tok), tok
        checked += not _v_bearer("", m)
    assert checked > 5_000
