"""The shortcuts that make redaction fast must not change what it finds.

Each shortcut is checked against the slow form it replaces, on the labeled corpus (sentences and
ChatAdapter-shaped prompts) and on text with non-ASCII characters.
"""

from __future__ import annotations

import re

import pytest
from dspy_tracekit_redact import BUILTIN_ENTITIES, Redactor
from dspy_tracekit_redact import _prefilter as prefilter_module
from dspy_tracekit_redact._detectors import (
    NON_ASCII_SPACE,
    NON_ASCII_WORD,
    CredentialDetector,
    Text,
    ascii_classes,
    may_hold_builtin,
)

EXTRA = [
    "call +49 (0)30 12345678 or 030/1234567, card 4111-1111-1111-1111 2 times",
    "ssn 123 45 6789? no: 078-05-1120; ip 10.0.0.1, fe80::1%eth0, 2001:db8::8a2e:370:7334",
    "my_service_db_password: hunter2!! and client-secret = abc.def, the token is expired",
    "Préfixe € 12,50 — appelez le 06 12 34 56 78 ou écrivez à zoé@example.fr",
    "İstanbul office: password = Ankara2024! ſecret: x",
    "at 2024-05-01T10:22:33.123456+00:00 from 192.168.1.10 (v1.2.3.4)",
]


@pytest.fixture(scope="module")
def texts(corpus):
    sentences = [s.text for s in corpus]
    # ChatAdapter-shaped prompts: many sentences in one string, as the benchmark uses
    prompts = ["[[ ## message ## ]]\n" + " ".join(sentences[i:i + 14]) for i in range(0, 2800, 14)]
    return sentences[:3000] + prompts + EXTRA


def test_candidate_starts_find_what_finditer_finds(texts):
    """Detectors that try their regex only at candidate starts see the same matches as a scan
    (of the same anchor windows; of the whole text for ``CREDENTIAL``, whose windows are new)."""
    r = Redactor()
    checked = 0
    for det in r._detectors:
        if det.starts is None and det.window_starts is None and not isinstance(det, CredentialDetector):
            continue
        for text in texts:
            ctx = Text(text)
            windows = det.anchor(ctx) if det.window_starts is not None else [(0, len(text))]
            slow = [span for ws, we in windows for span in det._spans(text, det.regex.finditer(text, ws, we))]
            assert det.find(text, ctx) == slow, (det.entity, text[:200])
            checked += 1
    assert checked > 10_000


def test_ascii_variants_match_like_the_unicode_patterns(texts):
    r = Redactor()
    for det in r._detectors:
        for text in texts:
            if not ascii_classes(text):
                continue
            slow = [m.span() for m in det.regex.finditer(text)]
            fast = [m.span() for m in det.ascii_regex.finditer(text)]
            assert slow == fast, (det.entity, text[:200])


def test_non_ascii_word_or_space_characters_turn_the_ascii_variants_off():
    assert ascii_classes("price €12 — ok") and ascii_classes("plain")
    for ch in ("é", "ſ", "\u212a", "٣", "\xa0", "\u2009", "\u3000"):
        assert not ascii_classes(f"a{ch}b"), repr(ch)


def test_the_non_ascii_space_class_is_every_non_ascii_unicode_space():
    spaces = [chr(c) for c in range(128, 0x3001) if chr(c).isspace()]
    assert all(NON_ASCII_SPACE.fullmatch(c) for c in spaces)
    assert all(re.fullmatch(r"\s", c) for c in spaces)
    assert NON_ASCII_WORD.fullmatch("é") and not NON_ASCII_WORD.fullmatch("€")


def test_ascii_classes_agrees_with_the_unicode_classes_on_every_code_point():
    """The per-character test says what a search for a Unicode word or space character says."""
    slow = [cp for cp in range(128, 0x110000)
            if NON_ASCII_WORD.search(f"a{chr(cp)}") or NON_ASCII_SPACE.search(f"a{chr(cp)}")]
    fast = [cp for cp in range(128, 0x110000) if not ascii_classes(f"a{chr(cp)} b")]
    assert fast == slow and len(slow) > 100_000


def test_prefilter_only_skips_text_without_findings(texts):
    unfiltered = Redactor()
    unfiltered._builtin_only = False
    # and without digits, '@' and ':' (what is left must pass only on letter needles)
    texts = texts + [re.sub(r"[\d@:]", "", t) for t in texts[:3000]]
    skipped = [t for t in texts if not may_hold_builtin(t)]
    assert len(skipped) > 500
    assert [t for t in skipped if unfiltered.find(t)] == []
    assert all(may_hold_builtin(t) for t in texts if unfiltered.find(t))


def test_prefilter_skips_labels_and_findings_need_it():
    assert not may_hold_builtin("billing question")
    assert not may_hold_builtin("positive")
    r = Redactor()
    assert r.find("billing question") == []
    assert r.redact_text("the password is hunter!") == "the password is <CREDENTIAL>"


def test_custom_patterns_turn_the_prefilter_off():
    r = Redactor({"patterns": [{"name": "CODENAME", "regex": "blue falcon"}]})
    assert r.redact_text("project blue falcon") == "project <CODENAME>"


def test_a_repeated_string_is_redacted_once_and_counted_each_time():
    r = Redactor()
    prompt = "Please refund jane.doe@example.com, card 4111 1111 1111 1111."
    cache: dict = {}
    first: dict[str, int] = {}
    second: dict[str, int] = {}
    a = r.redact({"message": prompt}, first, cache)
    b = r.redact({"messages": [{"role": "user", "content": prompt}]}, second, cache)
    assert a == {"message": "Please refund <EMAIL>, card <CREDIT_CARD>."}
    assert b["messages"][0]["content"] == a["message"]
    assert first == second == {"EMAIL": 1, "CREDIT_CARD": 1}
    assert prompt in cache


def test_a_control_that_only_unicode_calls_a_space_keeps_the_unicode_regexes():
    """``\\x1c``-``\\x1f`` are ``\\s`` to the Unicode regexes, not to their ASCII variants: text with one is
    scanned as the regexes are written (it was left unredacted)."""
    r = Redactor()
    assert not ascii_classes("password\x1f: hunter2!")
    assert r.redact_text("password\x1f: hunter2!") == "password\x1f: <CREDENTIAL>"
    assert r.redact_text("my password\x1cis hunter2!") == "my password\x1cis <CREDENTIAL>"
    assert Redactor({"prefilter": False}).redact_text("password\x1e= hunter2!") == "password\x1e= <CREDENTIAL>"


def _aws_texts(n: int, seed: int = 11) -> list[str]:
    """Runs of the AWS secret alphabet 38-42 long (key-like: mixed case, digits, ``/``, ``+``) next to its
    anchor words, ``=``, other runs and the edges of the text and of the anchor's windows."""
    import random

    rng = random.Random(seed)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+"
    words = ("aws", "AWS_SECRET_ACCESS_KEY=", "secret ", "akia", "access key: ", "x", "word ", "")
    seps = (" ", "", "=", "==", "\n", "/", ".", "é", "'", "-", " " * 250)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 4)):
            parts.append(rng.choice(words))
            if rng.random() < 0.5:
                parts.append(rng.choice(seps))
            head = rng.choice(("", "", "aws", "AKIA", "Secret", "asia"))  # a window that starts at the run
            parts.append(head + "".join(rng.choice(alphabet)
                                        for _ in range(rng.choice((38, 39, 40, 40, 40, 41, 42)) - len(head))))
            parts.append(rng.choice(seps))
        out.append("".join(parts))
    return out


def test_the_aws_secret_key_run_search_finds_what_the_regex_finds():
    """AWS_SECRET_KEY searches each anchor window for its run from the character before it
    (``AwsSecretDetector``): the same findings as the regex's ``finditer`` in the same windows. (A run length
    off by one, ``=`` left out of the look-ahead, or the window searched from its own start fails this.)"""
    from dspy_tracekit_redact._detectors import AwsSecretDetector, Detector

    det = next(d for d in Redactor()._detectors if isinstance(d, AwsSecretDetector))
    texts = _aws_texts(12_000)
    found = 0
    for text in texts:
        fast = det.find(text, Text(text))
        assert fast == Detector.find(det, text, Text(text)), text
        found += len(fast)
    assert found > 2000


def _two_pass_windows(text, spans, before, after):
    """``windows`` as it was (merge the raw windows, then extend each to whitespace and merge again)."""
    out = []
    n = len(text)
    for s, e in spans:
        ws, we = max(0, s - before), min(n, e + after)
        if out and ws <= out[-1][1]:
            out[-1][1] = max(out[-1][1], we)
        else:
            out.append([ws, we])
    result = []
    for ws, we in out:
        if we < n:
            m = re.compile(r"\s").search(text, we, min(n, we + 65536))
            we = m.start() if m else min(n, we + 65536)
        if result and ws <= result[-1][1]:
            result[-1] = (result[-1][0], max(result[-1][1], we))
        else:
            result.append((ws, we))
    return result


def test_windows_are_those_of_the_two_pass_form():
    import random

    from dspy_tracekit_redact._detectors import windows

    rng = random.Random(5)
    for _ in range(100_000):
        n = rng.randint(0, 200)
        text = "".join(rng.choice("ab  \n\x1f\xa0") for _ in range(n))
        spans = sorted((s, min(n, s + rng.randint(0, 5))) for s in (rng.randint(0, max(n - 1, 0))
                                                                  for _ in range(rng.randint(0, 6))))
        before, after = rng.choice([(0, 0), (2, 0), (80, 60), (30, 0), (0, 260), (5, 5), (2, 40)])
        assert windows(text, spans, before, after) == _two_pass_windows(text, spans, before, after), (text, spans)


def _iban_by_characters(text: str, start: int, m_end: int, first4: str, length: int):
    """The IBAN detector's walk as it was: ``length - 4`` more capitals or digits, a single space skipped."""
    from dspy_tracekit_redact._detectors import iban_ok

    n_text, i, got, chars = len(text), m_end, 4, [first4]
    while got < length and i < n_text:
        c = text[i]
        if "A" <= c <= "Z" or "0" <= c <= "9":
            chars.append(c)
            got += 1
            i += 1
        elif c == " " and i + 1 < n_text and text[i + 1] != " ":
            i += 1
        else:
            break
    if got != length or (i < n_text and text[i].isalnum()) or not iban_ok("".join(chars)):
        return None
    return (start, i)


def test_the_iban_rest_pattern_takes_what_the_character_walk_took():
    """``IbanDetector`` takes the characters after ``CC00`` with one regex per length: the same findings as
    the walk it replaced, on IBANs grouped, run together, cut, with double or trailing spaces, words in
    capitals after them and characters changed (a space rule or length off fails this)."""
    import random

    from dspy_tracekit_redact._detectors import IBAN_LENGTHS, IbanDetector
    from faker import Faker

    fake = Faker()
    fake.seed_instance(9)
    rng = random.Random(9)
    det = next(d for d in Redactor()._detectors if isinstance(d, IbanDetector))
    found = 0
    for _ in range(6000):
        iban = fake.iban()
        if rng.random() < 0.5:
            iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        chars = list(iban)
        for _ in range(rng.choice((0, 0, 1, 2))):
            chars.insert(rng.randrange(1, len(chars) + 1), rng.choice((" ", "  ", "0", "A", "Z", "é", "-", "\n", "\t")))
        if rng.random() < 0.2:
            del chars[rng.randrange(len(chars)):]
        text = rng.choice(("IBAN ", "", "x", "pay to: ")) + "".join(chars) + rng.choice((" ASAP", "", " ", "  X", "0", "é", ". ok"))
        want = []
        for m in det.regex.finditer(text):
            length = IBAN_LENGTHS.get(text[m.start():m.start() + 2])
            span = length and _iban_by_characters(text, m.start(), m.end(), m.group(0), length)
            if span:
                want.append(span)
        got = det.find(text, Text(text))
        assert got == want, text
        found += len(got)
    assert found > 1000


def test_the_luhn_check_is_the_digit_loop_it_replaced():
    import random

    from dspy_tracekit_redact._detectors import luhn_ok

    def loop(digits):
        total = 0
        for i, ch in enumerate(reversed(digits)):
            d = ord(ch) - 48
            if i % 2:
                d = d * 2 - 9 if d * 2 > 9 else d * 2
            total += d
        return total % 10 == 0

    rng = random.Random(4)
    for _ in range(50_000):
        digits = "".join(rng.choice("0123456789" if rng.random() < 0.95 else "0123456789٣") for _ in range(rng.randint(0, 19)))
        assert luhn_ok(digits) == loop(digits), digits
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")


def _email_by_walk(det, text, ctx):
    """``EmailDetector.find`` as it was: the local-part run walked back one character at a time."""
    from dspy_tracekit_redact._detectors import _EMAIL_LOCAL_CHARS, _EMAIL_NOT_BEFORE, _matches_at

    spans = []
    for ws, we in det.anchor(ctx):
        starts = []
        at = text.find("@", ws, we)
        while at != -1:
            i = at
            while i > ws and text[i - 1] in _EMAIL_LOCAL_CHARS:
                i -= 1
            starts.extend(p for p in range(i, at) if text[p] != "." and (p == 0 or text[p - 1] not in _EMAIL_NOT_BEFORE))
            at = text.find("@", at + 1, we)
        if starts:
            spans.extend(det._spans(text, _matches_at(det.regex, text, starts, ws, we)))
    return spans


def test_the_email_local_part_run_gives_the_starts_the_walk_gave():
    """EMAIL reads the local-part run before each ``@`` backwards with one regex and takes starts only
    after the characters its look-behind allows: the same findings as the walk, on local parts with every
    special character, dots, look-behind characters, ``@`` runs and runs longer than the window."""
    import random

    from dspy_tracekit_redact._detectors import EmailDetector

    rng = random.Random(6)
    det = next(d for d in Redactor()._detectors if isinstance(d, EmailDetector))
    pieces = ("a", "b", "Z", "0", ".", "..", "_", "%", "+", "-", "!", "#", "$", "&", "'", "*", "/", "=", "?", "^", "`",
              "{", "|", "}", "~", "é", " ", "@", "x" * 90)
    found = 0
    for _ in range(20_000):
        local = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        text = rng.choice(("", "mail ", "x", ".", "<")) + local + "@" + rng.choice(("example.com", "ex-ample.co.uk", "a.b", "x", "@b.io")) + rng.choice(("", " ok", ".", "-x"))
        assert det.find(text, Text(text)) == _email_by_walk(det, text, Text(text)), text
        found += bool(det.find(text, Text(text)))
    assert found > 3000


def _email_texts(n: int, seed: int = 8) -> list[str]:
    """Several addresses a text, their local parts in runs of 0-100 characters (around ``_EMAIL_BEFORE``),
    after fillers that put the addresses' anchor windows together or apart, with and without spaces."""
    import random

    from dspy_tracekit_redact import _detectors

    rng = random.Random(seed)
    pieces = ("a", "Z", "0", ".", "_", "+", "-", "!", "=", "~", "é", "\udc80", "x" * 40, "y" * 75, "z" * 9, "@")
    fillers = ("", " ", "\n", "word " * 14, "word " * 40, "w" * 250, "x" * 70, "é" * 30, ", ", "k")
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 4)):
            parts.append(rng.choice(fillers))
            if rng.random() < 0.3:  # a run about as long as the read-back before the "@"
                parts.append(" " + "k" * rng.randint(_detectors._EMAIL_BEFORE - 4, _detectors._EMAIL_BEFORE + 4))
            parts.append("".join(rng.choice(pieces) for _ in range(rng.randint(0, 5))))
            parts.append("@" + rng.choice(("example.com", "ex-ample.co.uk", "a.b", "x", "b.io", "")))
            parts.append(rng.choice(("", " ", ".", "-x", "x" * 300)))
        out.append("".join(parts))
    return out


def _email_detector():
    from dspy_tracekit_redact._detectors import EmailDetector

    return next(d for d in Redactor()._detectors if isinstance(d, EmailDetector))


def _email_differences(texts: list[str], det) -> list[str]:
    return [t for t in texts if det.find(t, Text(t)) != _email_by_walk(det, t, Text(t))]


def test_email_without_windows_finds_what_the_windows_find():
    """EMAIL takes every ``@`` of a text in one go (``EmailDetector.find``) unless a run before one is longer than
    ``_EMAIL_BEFORE``: the windows' findings, on texts of several addresses with long runs and no spaces."""
    texts = _email_texts(12_000)
    assert _email_differences(texts, _email_detector()) == []
    r = Redactor()
    assert sum(1 for t in texts for f in r.find(t) if f.entity == "EMAIL") > 5_000


def test_the_email_texts_catch_a_read_back_one_past_the_window(monkeypatch):
    """...and reading runs back one character further than the windows start fails it (so it can fail)."""
    from dspy_tracekit_redact import _detectors

    texts = _email_texts(12_000)  # (made with the constant as it is)
    det = _email_detector()
    monkeypatch.setattr(_detectors, "_EMAIL_BEFORE", _detectors._EMAIL_BEFORE + 1)  # det's anchor keeps its 80
    assert _email_differences(texts, det) != []


def test_email_skips_the_starts_of_a_run_that_cannot_match_and_finds_what_the_walk_finds():
    """Inside the run before an ``@``, EMAIL tries no start when the domain fails after it or the run ends in ``.``,
    and none before the run's last ``..`` (each would have run the regex to the ``@``: a 20 KB run of ``a=`` and
    ``.@example.com`` took 2.6 s); the walk's findings, on runs of special characters with dots, double dots,
    trailing dots, good and bad domains, and a second address after the first."""
    import random

    rng = random.Random(12)
    det = _email_detector()
    pieces = ("a", "Z", "0", ".", "..", "_", "%", "+", "-", "!", "#", "=", "~", "'", "/", "é", "@", " ", "x" * 30, "a=" * 20)
    domains = ("example.com", "ex-ample.co.uk", "a.b", "x", "", "b.io", "-a.com", "a-.com", "exa mple.com", "a.b-")
    found = 0
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14))) + "@" + rng.choice(domains) + rng.choice(
            ("", " ok", ".", "-x", "@a.com", "!"))
        if rng.random() < 0.3:
            text += " " + "".join(rng.choice(pieces) for _ in range(rng.randint(0, 10))) + "@" + rng.choice(domains)
        got = det.find(text, Text(text))
        assert got == _email_by_walk(det, text, Text(text)), text
        found += len(got)
    assert found > 5_000
    # the shapes that were quadratic: found as the walk finds them (the one good address), not by trying every start
    for text in ("x@" + "a=" * 2_000 + ".@example.com", "x@" + "0xa-a=" * 700 + "@", "x@" + "a=" * 2_000 + "@example.com",
                 "x@" + "a=a.." * 800 + "@example.com"):
        assert det.find(text, Text(text)) == _email_by_walk(det, text, Text(text))


def test_the_private_key_search_finds_what_the_regex_finds():
    """PRIVATE_KEY finds its header, then the first footer after it by a search (``PrivateKeyDetector``):
    the regex's matches, on headers and footers of every shape run together, cut, nested and missing."""
    import random

    from dspy_tracekit_redact._detectors import PrivateKeyDetector

    rng = random.Random(8)
    det = next(d for d in Redactor()._detectors if isinstance(d, PrivateKeyDetector))
    pieces = ("-----BEGIN PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----", "-----BEGIN EC X PRIVATE KEY BLOCK-----",
              "-----BEGIN PRIVATE KEY----", "-----BEGIN rsa PRIVATE KEY-----", "-----END PRIVATE KEY-----",
              "-----END RSA PRIVATE KEY-----", "-----END PRIVATE KEY BLOCK-----", "-----END PRIVATE KEY", "-----END ",
              "-----END-----", "MIIEvQIBADANBg", "\n", " ", "é", "PRIVATE KEY", "-----")
    found = 0
    p = prefilter_module.Prefilter(BUILTIN_ENTITIES)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 7)))
        want = [m.span() for m in det.regex.finditer(text)]
        assert det.find(text, Text(text)) == want, text
        ctx = Text(text)
        if ctx.scannable:
            _, _, _, ctx.positions = p.scan(text)
            assert det.find(text, ctx) == want, text
        found += len(want)
    assert found > 5000


def _resolve_as_it_was(cands):
    """``find``'s resolution before its candidates were tuples in sort order (the old form): ``(start, end,
    priority, entity)`` in detector order, a stable sort by a key, then the same replacement and widening."""
    from dspy_tracekit_redact._redactor import Finding

    cands = sorted(cands, key=lambda c: (c[0], -c[2], c[0] - c[1]))
    out, lost = [], []
    for c in cands:
        if out and c[0] < out[-1][1]:
            last = out[-1]
            if (c[2], c[1] - c[0]) > (last[2], last[1] - last[0]):
                out[-1] = c
                lost.append(last)
            else:
                lost.append(c)
            continue
        out.append(c)
    for gs, ge, _, _ in (c for c in lost if c[3] == "GENERIC_SECRET"):
        for i, (s, e, prio, ent) in enumerate(out):
            if s < ge and gs < e:
                ns, ne = min(s, gs), max(e, ge)
                if (i == 0 or out[i - 1][1] <= ns) and (i + 1 == len(out) or out[i + 1][0] >= ne):
                    out[i] = (ns, ne, prio, ent)
                break
    return [Finding(s, e, ent) for s, e, _, ent in out]


def test_the_candidate_resolution_keeps_the_findings_of_the_stable_sort():
    """``find`` sorts candidates ``(start, -priority, start - end, detector index, end, entity)`` as they are
    (no key function): on random candidates with equal spans and equal priorities across detectors (custom
    patterns all have 96), overlaps and generic secrets that widen, the findings are those of the stable sort by
    key. (Without the detector index, or with ``<=`` in the replacement, this fails.)"""
    import random

    from dspy_tracekit_redact._redactor import _resolve

    rng = random.Random(21)
    entities = ("EMAIL", "OPENAI_KEY", "CODENAME", "PROJECT", "GENERIC_SECRET", "CREDENTIAL", "AWS_SECRET_KEY")
    differ = widened = 0
    for _ in range(20_000):
        detectors = [(rng.choice(entities), rng.choice((96, 96, 90, 70, 60, 58))) for _ in range(rng.randint(1, 6))]
        old, new = [], []
        for k, (entity, prio) in enumerate(detectors):
            for _ in range(rng.randint(0, 4)):
                s = rng.randint(0, 40)
                e = s + rng.randint(1, 15)
                old.append((s, e, prio, entity))
                new.append((s, -prio, s - e, k, e, entity))
        want = _resolve_as_it_was(old)
        got = [(c[0], c[4], c[5]) for c in _resolve(new)]  # a kept candidate's start, end and entity (find's Finding)
        differ += got != want
        widened += any(f not in [(c[0], c[1], c[3]) for c in old] for f in want)
    assert differ == 0
    assert widened > 500


def test_the_detectors_remembered_per_set_of_gates_follow_a_replaced_detector_tuple():
    """``find`` remembers which detectors a set of gates runs; the benchmark's per-detector timing replaces
    ``_detectors`` and must see its own detectors called, and no stale ones."""
    for r in (Redactor(), Redactor({"prefilter": False})):
        text = "mail jane@example.com now, card 4111 1111 1111 1111"
        assert [f.entity for f in r.find(text)] == ["EMAIL", "CREDIT_CARD"]
        detectors = r._detectors
        r._detectors = tuple(d for d in detectors if d.entity != "EMAIL")
        assert [f.entity for f in r.find(text)] == ["CREDIT_CARD"]
        r._detectors = detectors
        assert [f.entity for f in r.find(text)] == ["EMAIL", "CREDIT_CARD"]


def test_jwt_ok_remembers_what_it_decoded_and_answers_as_before():
    """``jwt_ok`` keeps its answer per header (the part before the first dot): on headers that repeat, differ by one
    character, do not decode or decode to something else, asked in any order, it answers as the decoding does."""
    import base64
    import binascii
    import json
    import random

    from dspy_tracekit_redact import _detectors as detectors

    def decoded(value):
        head = value.split(".", 1)[0]
        try:
            obj = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return False
        return isinstance(obj, dict) and ("alg" in obj or "typ" in obj)

    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    rng = random.Random(4)
    heads = [b64({"alg": "HS256", "typ": "JWT"}), b64({"typ": "JWT"}), b64({"kid": 1}), b64([1, 2]), "eyJhbGciOiJIUzI1NiJ9",
             "eyJ" + "A" * 17, "eyJub3Rqc29u", b64({"alg": "RS256", "kid": "k1"})]
    heads += [h[:k] + rng.choice("AQgw-_") + h[k + 1:] for h in heads for k in range(3, len(h), 3)]
    detectors._JWT_HEADS.clear()
    answers = set()
    for _ in range(6000):
        value = rng.choice(heads) + "." + rng.choice(["eyJzdWIiOiIxIn0", "x" * 9]) + ".sig" + str(rng.randint(0, 9))
        got = detectors.jwt_ok(value)
        assert got == decoded(value), value
        answers.add(got)
    assert answers == {True, False} and 0 < len(detectors._JWT_HEADS) <= detectors._JWT_HEADS_MAX


def test_the_masks_written_without_marker_are_what_marker_writes(texts):
    """``_text`` writes the marker of a masked type without calling ``marker``: under every action, default or
    per type, the redacted text and the counts are those of ``marker`` for each finding (the old form)."""
    configs = [{}, {"actions": {"default": "partial"}}, {"actions": {"EMAIL": "drop", "PHONE": "partial"}},
               {"actions": {"default": "hash", "CREDIT_CARD": "mask"}, "hash_secret": "s3cret"},
               {"actions": {"default": "drop", "IBAN": "mask"}}]
    checked = 0
    for config in configs:
        r = Redactor(config)
        for text in texts[::7]:
            findings = r.find(text)
            parts, pos, dropped, want_counts = [], 0, False, {}
            for s, e, entity in findings:
                action = r._actions.get(entity, "mask")
                dropped = dropped or action == "drop"
                parts += [text[pos:s], r.marker(entity, text[s:e], action)]
                want_counts[entity] = want_counts.get(entity, 0) + 1
                pos = e
            counts = {}
            assert r._text(text, counts) == ("".join(parts) + text[pos:] if findings else text, dropped), (config, text)
            assert counts == want_counts
            checked += bool(findings)
    assert checked > 1200
