"""The one-pass Hyperscan prefilter skips detectors that cannot match: it must never change a finding."""

from __future__ import annotations

import pytest
from dspy_tracekit_redact import BUILTIN_ENTITIES, Redactor
from dspy_tracekit_redact import _prefilter as prefilter_module
from dspy_tracekit_redact._detectors import Text
from dspy_tracekit_redact._generic import CONTEXT, GenericSecretDetector

needs_hyperscan = pytest.mark.skipif(prefilter_module.hyperscan is None, reason="no hyperscan wheel here")


@needs_hyperscan
def test_the_prefilter_changes_no_finding_on_the_regression_set(regression_set):
    fast, slow = Redactor(), Redactor({"prefilter": False})
    assert fast._prefilter is not None and slow._prefilter is None
    differ = [t for t in regression_set if fast.find(t) != slow.find(t)]
    assert differ == []
    assert len(regression_set) > 25_000
    assert sum(1 for t in regression_set if slow.find(t)) > 5_000  # the set does hold findings


@needs_hyperscan
def test_the_prefilter_skips_most_detectors_on_prose(regression_set):
    p = prefilter_module.Prefilter(BUILTIN_ENTITIES)
    prose = regression_set[-7500:]
    active = [p.scan(t)[0] for t in prose if Text(t).ascii]
    assert sum(len(a) for a in active) / len(active) < 4  # of 20 entity types


@needs_hyperscan
def test_credential_word_starts_from_the_pass_are_those_finditer_finds(regression_set):
    p = prefilter_module.Prefilter(BUILTIN_ENTITIES)
    det = GenericSecretDetector()
    checked = 0
    for text in regression_set:
        ctx = Text(text)
        if not ctx.ascii:
            continue
        _, ctx.context_starts, _, _ = p.scan(text)
        assert [m.span() for m in det._contexts(text, ctx)] == [m.span() for m in CONTEXT.finditer(text)], text
        checked += 1
    assert checked > 15_000


def test_credential_word_needles_find_what_finditer_finds(regression_set):
    det = GenericSecretDetector()
    for text in regression_set[::3]:
        assert [m.span() for m in det._contexts(text, Text(text))] == [m.span() for m in CONTEXT.finditer(text)]


def test_every_entity_type_has_triggers_or_is_never_skipped():
    assert set(BUILTIN_ENTITIES) - set(prefilter_module.TRIGGERS) - set(prefilter_module.RUNS) - set(
        prefilter_module.POSITIONS) == {"GENERIC_SECRET"}


def test_without_the_hyperscan_wheel_every_detector_runs(monkeypatch, regression_set):
    monkeypatch.setattr(prefilter_module, "hyperscan", None)
    r = Redactor()
    assert r._prefilter is None
    assert r.redact_text("mail jane@example.com, key sk-" + "a" * 30) == "mail <EMAIL>, key <OPENAI_KEY>"
    slow = Redactor({"prefilter": False})
    assert all(r.find(t) == slow.find(t) for t in regression_set[::50])


def test_the_prefilter_setting_is_validated():
    with pytest.raises(ValueError, match=r"redact\.prefilter: must be true or false"):
        Redactor({"prefilter": "fast"})


@needs_hyperscan
def test_custom_patterns_always_run_with_the_prefilter():
    r = Redactor({"patterns": [{"name": "CODENAME", "regex": "blue falcon"}]})
    assert r.redact_text("project blue falcon, jane@example.com") == "project <CODENAME>, <EMAIL>"


@needs_hyperscan
def test_the_prefilter_works_from_many_threads():
    import concurrent.futures

    r = Redactor()
    texts = [f"user{i}@example.com called +44 20 7946 09{i % 10}8 about order {i}" for i in range(400)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        out = list(pool.map(r.redact_text, texts))
    assert all(o.startswith("<EMAIL> called <PHONE>") for o in out)


def test_pass_safe_refuses_every_character_whose_classes_differ_from_the_pass_bytes():
    """What the pass's byte classes cannot mean: a Unicode digit or space, a letter ``(?i)`` or ``lower()``
    turns into ASCII, and the four ASCII controls only the Unicode ``\\s`` matches."""
    import re

    from dspy_tracekit_redact._detectors import ascii_classes, pass_safe, text_classes

    unicode_only = re.compile(r"[\d\s]|(?i:[a-z])")
    differ = [cp for cp in range(0x1c, 0x110000) if (cp >= 128 or cp < 0x20) and (
        unicode_only.match(chr(cp)) and not re.match(r"(?a)[\d\s]|(?ai:[a-z])", chr(cp))
        or any(x.isascii() for x in chr(cp).lower()) and cp >= 128)]
    assert len(differ) > 600  # Unicode digits and spaces, ſ, K, İ, ı, \x1c-\x1f
    assert [cp for cp in differ if pass_safe(f"a{chr(cp)} b")] == []
    assert pass_safe("café, пароль, 密码, € 12 — 😀")
    # what Text uses: both answers in one pass over the non-ASCII characters
    assert all(text_classes(t) == (ascii_classes(t), ascii_classes(t) or pass_safe(t))
               for t in [f"a{chr(cp)} b" for cp in range(0x1c, 0x3000)] + ["x\x1fé", "é", "€", "ab"])


@needs_hyperscan
def test_text_with_accented_letters_goes_through_the_pass_with_the_same_findings(regression_set):
    fast, slow = Redactor(), Redactor({"prefilter": False})
    accented = [t for t in regression_set if not Text(t).ascii and Text(t).scannable]
    assert len(accented) > 1000
    assert [t for t in accented if fast.find(t) != slow.find(t)] == []
    text = "Señor, my contraseña: Zq8#mP2!vL9x, card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00"
    assert Text(text).scannable
    assert [f.entity for f in fast.find(text)] == [f.entity for f in slow.find(text)] == [
        "GENERIC_SECRET", "CREDIT_CARD", "IBAN"]


def _luhn_completed(rng, prefix: str, n: int) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(n - len(prefix) - 1))
    for c in "0123456789":
        total = 0
        for i, ch in enumerate(reversed(body + c)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return body + c
    raise AssertionError


def _number_texts(n: int, seed: int = 13) -> list[str]:
    """Phones, cards and SSNs (valid and near misses) after and before what their look-arounds test."""
    import random

    rng = random.Random(seed)

    def card() -> str:
        digits = _luhn_completed(rng, rng.choice(["4", "51", "55", "34", "37", "6011", "35", "2221", "1", "9", "0"]),
                                 rng.choice([13, 14, 15, 16, 17, 19]))
        sep = rng.choice(["", " ", "-", " ", "."])
        return sep.join(digits[i:i + 4] for i in range(0, len(digits), 4)) if sep and rng.random() < .8 else digits

    def ssn() -> str:
        sep = rng.choice(["", "-", " ", "-", "."])
        return sep.join((rng.choice(["123", "078", "666", "900", "001", "536", "000", "899"]),
                         rng.choice(["45", "00", "12"]), rng.choice(["6789", "0000", "1120"])))

    phones = ["+1 212 555 0100", "(212) 555-1234", "212-555-1234", "2125551234", "02079460958", "020 7946 0958",
              "+44 20 7946 0958", "0044 20 7946 0958", "98765 43210", "6123456789", "01 23 45 67 89", "030 12345678",
              "089/1234567", "(11) 91234-5678", "1-800-555-0199", "+49 30 1234567", "+8613812345678", "0301234567"]
    before = ["", "", "ssn ", "SSN: ", "call ", "tel ", "card ", "a", "x", "#", "-", ".", "+", "v", "version ", "_", "é",
              "(", "0", "1 "]
    after = ["", "", " ", ".", "-", "-1", ".5", "a", " 2 times", ",", "/", ")", " 12", "\n", "x1"]
    out = []
    for _ in range(n):
        values = [rng.choice(before) + rng.choice([card, ssn, lambda: rng.choice(phones)])() + rng.choice(after)
                  for _ in range(rng.randint(1, 4))]
        out.append(rng.choice(["", " ", "x "]).join(values))
    return out


@needs_hyperscan
def test_the_digit_run_shapes_of_the_pass_keep_every_phone_card_and_ssn():
    """The pass's run patterns say which runs can hold a phone, card or SSN (``RUNS``): on numbers made to
    sit at their edges, the findings are those of every detector on every run. (A digit or prefix less in
    a shape fails this.)"""
    from collections import Counter

    fast, slow = Redactor(), Redactor({"prefilter": False})
    texts = _number_texts(15_000)
    kinds = Counter(f.entity for t in texts for f in slow.find(t))
    assert min(kinds["PHONE"], kinds["CREDIT_CARD"], kinds["US_SSN"]) > 500
    assert [t for t in texts if fast.find(t) != slow.find(t)] == []


@needs_hyperscan
def test_the_ipv6_trigger_wants_seven_colons_or_a_double_colon():
    p = prefilter_module.Prefilter(BUILTIN_ENTITIES)
    assert "IP_ADDRESS" not in p.scan("at 13:10:50.993 from 00:1a:2b:3c:4d:5e")[0]
    r, slow = Redactor(), Redactor({"prefilter": False})
    for text in ("host 2001:0db8:85a3:0000:0000:8a2e:0370:7334 down", "host fe80::1%eth0 down", "via 2001:db8::8a2e:370:7334."):
        assert [f.entity for f in r.find(text)] == [f.entity for f in slow.find(text)] == ["IP_ADDRESS"], text


@needs_hyperscan
def test_the_needle_finders_find_what_find_all_finds(regression_set):
    """The Hyperscan needle searches over lower-cased text (CREDENTIAL's words, AWS_SECRET_KEY's anchor, the
    credential words of GENERIC_SECRET in non-ASCII text) give every occurrence, as the str.find loops do."""
    from dspy_tracekit_redact._detectors import FOUND_NEEDLES, find_all
    from dspy_tracekit_redact._generic import _NEEDLES

    p = prefilter_module.Prefilter(BUILTIN_ENTITIES)
    for text in regression_set[::2] + ["PASSWORD: İx", "passpasswordpass", "ſecret, Kelvin \u212a, \ud800 key"]:
        low = text.lower()
        for needles in FOUND_NEEDLES:
            assert p.finders[needles].spans(low) == find_all(low, needles), text
        assert p.word_starts(low) == sorted({s for s, _ in find_all(low, _NEEDLES)}), text


#: what a prefixed key's regex starts with (every alternative of ``_prefilter.POSITIONS``' literals), plus
#: look-alikes one character off
_KEY_PREFIXES = (
    "-----BEGIN PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----", "-----END PRIVATE KEY-----", "-----BEGIN ",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.", "eyJ0eXAiOiJKV1QifQ.eyJhIjoxfQ.", "eyJ0eXAiOiJKV1QifQ.",
    "eyJ", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.", "sk-ant-", "sk-ant-api03-", "sk-", "sk-proj-", "sk-None-",
    "sk-a", "sk-an", "sk-ant", "sk-admin-", "sk-é", "sk-_",
    *(f"A{k}" for k in ("KIA", "SIA", "BIA", "CCA", "GPA", "IDA", "ROA", "IPA", "NPA", "NVA", "PKA", "KIB")),
    *(f"gh{c}_" for c in "pousrx"), "github_pat_", "github_pa_", *(f"xox{c}-" for c in "abposrex"), "xapp-", "xap-",
    *(f"{a}_{b}_" for a in ("sk", "rk", "pk", "xk") for b in ("live", "test")), "AIza", "AIz", "Bearer ",
)


def _prefixed_key_texts(n: int, seed: int = 7) -> list[str]:
    """Prefixes of the key detectors run together with token characters, separators and non-ASCII letters
    the pass sees (``é``, ``я``): keys at text edges, after word characters, inside each other."""
    import random

    rng = random.Random(seed)
    token = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    seps = (" ", " ", "\n", "_", "-", ".", "=", "é", "я", "/", ":", "'")
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.3:
                parts.append(rng.choice(seps))
            parts.append(rng.choice(_KEY_PREFIXES))
            alphabet = token if rng.random() < 0.7 else token[:26] + token[52:62]  # AKIA... wants [A-Z0-9]{16}
            parts.append("".join(rng.choice(alphabet) for _ in range(rng.choice((8, 16, 16, 20, 24, 35, 35, 36, 40)))))
            if rng.random() < 0.5:
                parts.append(rng.choice(seps))
        out.append("".join(parts))
    return out


@needs_hyperscan
def test_the_key_prefix_positions_of_the_pass_keep_every_prefixed_key():
    """The prefixed-key detectors try their regexes only where the pass saw their prefix
    (``_prefilter.POSITIONS``): on prefixes run together at every edge, the findings are those of every
    detector searching the whole text. (A prefix alternative less, or a wrong prefix length, fails this.)"""
    from collections import Counter

    fast, slow = Redactor(), Redactor({"prefilter": False})
    texts = _prefixed_key_texts(12_000)
    kinds = Counter(f.entity for t in texts for f in slow.find(t))
    for entity in ("PRIVATE_KEY", "JWT", "ANTHROPIC_KEY", "OPENAI_KEY", "AWS_ACCESS_KEY_ID", "GITHUB_TOKEN",
                   "SLACK_TOKEN", "STRIPE_KEY", "GOOGLE_API_KEY"):
        assert kinds[entity] > 30, (entity, kinds)
    assert [t for t in texts if fast.find(t) != slow.find(t)] == []


@needs_hyperscan
def test_the_iban_positions_of_the_pass_are_every_registry_country_and_two_digits():
    """``POSITIONS["IBAN"]`` (one pattern per country): every place a registry country code and two digits
    start after no ASCII letter, digit or ``_``, overlapping ones too, as a look-ahead regex finds them (a country
    less fails this)."""
    import random
    import re

    from dspy_tracekit_redact._detectors import IBAN_LENGTHS

    rng = random.Random(3)
    at = re.compile("(?<![0-9A-Za-z_])(?=(?:" + "|".join(IBAN_LENGTHS) + ")[0-9]{2})")
    p = prefilter_module.Prefilter(BUILTIN_ENTITIES)
    pieces = [*IBAN_LENGTHS, "QZ", "de", "D", "E", "0", "1", "42", "9", " ", "é", "-", "_", "a", "\n"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(30))
        assert p.scan(text)[3].get("IBAN", []) == [m.start() for m in at.finditer(text)], text


@needs_hyperscan
def test_a_credential_word_that_ends_where_a_longer_one_ends_still_opens_a_context():
    """"token" in "authToken" ends where "authtoken" ends: the pass reports both (it folded them into the
    longer one, whose start is no word start here, and the secret after "Token_id=" was left; rgeneric's find)."""
    texts = ["ServiceauthToken_id=aN0PS_^fU*9g&zz", "myapiKey=aN0PS_^fU*9g&zz1", "mysecretKey: aN0PS_^fU*9g&zz1x",
             "theaccessKey=Qm9keVRleHQ_xT7pLw2", "MyApiToken = Qm9keVRleHQ_xT7pLw2zz"]
    fast, slow = Redactor(), Redactor({"prefilter": False})
    for text in texts:
        assert [f.entity for f in slow.find(text)] == ["GENERIC_SECRET"], text
        assert fast.find(text) == slow.find(text), text


class _Utf8Pass:
    """The pass as it was before it scanned ``?`` for each non-ASCII character (the old form, for the
    equivalence test): one id per pattern, the UTF-8 of the text, a pattern reporting every first byte of a
    multi-byte character, and byte offsets converted to character offsets after the scan."""

    def __init__(self, entities=BUILTIN_ENTITIES):
        import hyperscan
        from dspy_tracekit_redact._generic import CONTEXT_WORDS

        m = prefilter_module
        self.exprs, self.ids, self.flags, self.kinds = [], [], [], []

        def add(pattern, kind, flag):
            self.exprs.append(pattern.encode())
            self.ids.append(len(self.kinds))
            self.flags.append(flag)
            self.kinds.append(kind)

        for entity in entities:
            for pattern in m.TRIGGERS.get(entity, ()):
                nocase = pattern.startswith("(?i)")
                add(pattern[4:] if nocase else pattern, ("trigger", m.TRIGGER_GATES.get(entity, entity)),
                    hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_DOTALL | (hyperscan.HS_FLAG_CASELESS if nocase else 0))
        for entity in entities:
            for pattern in m.RUNS.get(entity, ()):
                add(pattern, ("run", entity), hyperscan.HS_FLAG_DOTALL)
        for gate, patterns in m.POSITIONS.items():
            if gate.partition("/")[0] in entities:
                for pattern, length in patterns:
                    add(pattern, ("at", gate, length), hyperscan.HS_FLAG_DOTALL)
        add("[\\xc0-\\xff]", ("lead",), 0)
        for word in CONTEXT_WORDS:
            if word.isascii() and "GENERIC_SECRET" in entities:
                add(m._escape(word), ("word", len(word)), hyperscan.HS_FLAG_CASELESS)
        self.both = {e for e in entities if e in m.TRIGGERS and e in m.POSITIONS}
        self.db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self.db.compile(expressions=self.exprs, ids=self.ids, elements=len(self.exprs), flags=self.flags)
        self.scratch = hyperscan.Scratch(self.db)

    def scan(self, text):
        import bisect

        active, starts, hits, at, leads = set(), [], [], [], []

        def on_match(i, start, end, flags, ctx):
            kind = self.kinds[i]
            if kind[0] == "word":
                starts.append(end - kind[1])
            elif kind[0] == "lead":
                leads.append(end - 1)
            elif kind[0] == "run":
                hits.append((kind[1], end - 1))
            elif kind[0] == "at":
                at.append((kind[1], end - kind[2]))
            else:
                active.add(kind[1])

        data = text.encode("utf-8", "surrogatepass") + b"\n"
        self.db.scan(data, match_event_handler=on_match, scratch=self.scratch)
        for entity, gate in prefilter_module.TRIGGER_GATES.items():
            if gate in active:
                active.add(entity)
        if starts:
            active.add("GENERIC_SECRET")
        found = {}
        for entity, e in sorted(set(hits)):
            found.setdefault(entity, []).append((len(data[:e].rstrip(prefilter_module._RUN_BYTES)), e))
        active.update(found)
        positions = {}
        for entity, b in sorted(at):
            if entity not in self.both or entity in active:
                positions.setdefault(entity, []).append(b)
        active -= self.both - positions.keys()
        active.update(positions)
        extra, total = [], 0
        for b in leads:
            total += 1 if data[b] < 0xE0 else 2 if data[b] < 0xF0 else 3
            extra.append(total)

        def to_char(offset):
            k = bisect.bisect_left(leads, offset)
            return offset - (extra[k - 1] if k else 0)

        return (active, sorted(to_char(b) for b in starts),
                {k: [(to_char(s), to_char(e)) for s, e in v] for k, v in found.items()},
                {k: [to_char(b) for b in v] for k, v in positions.items()})


#: what the pass's patterns hold, one character off, and the non-ASCII characters it sees (2, 3 and 4 bytes of
#: UTF-8, a lone surrogate) with ``?``, which stands for them now
_PASS_PIECES = (
    "4111 1111 1111 1111", "4111-1111-1111-1111", "378282246310005", "123-45-6789", "123 45 6789", "123456789",
    "+1 212 555 0100", "(212) 555-1234", "212-555-1234", "2125551234", "02079460958", "98765 43210", "1-800-555-0199",
    "+44 20 7946 0958", "0044 20", "192.168.1.10", "10.0.0.1", "2001:db8::1", "fe80::1%eth0", "1:2:3:4:5:6:7:8",
    "DE89370400440532013000", "GB82 WEST 1234 5698 7654 32", "DE8", "FR14", "eyJhbGciOiJIUzI1NiJ9", "sk-ant-",
    "sk-", "sk-proj-", "sk-an", "AKIA", "ASIA", "ghp_", "github_pat_", "xoxb-", "xapp-", "sk_live_", "pk_test_", "AIza", "-----BEGIN ",
    "PRIVATE KEY", "-----BEGIN RSA PRIVATE KEY-----", "https://", "://", "Bearer ", "earer", "aws", "AWS", "secret", "access key", "access_key",
    "password: ", "Passwd=", "api_key is ", "token=", "PIN: ", "credentials:", "key", "Token", "authToken",
    "contraseña", "clé", "пароль", "密码", "mot de passe", "a@b.co", "@", ":", " ", "\n", "-", ".", "(", ")", "+",
    "/", "0", "1", "9", "12", "2024-05-11", "x", "_", "#",
)
_PASS_WIDE = ("é", "я", "—", "€", "密", "😀", "\ud800", "?", "ñ", "ü")


def _pass_texts(n: int, seed: int = 11) -> list[str]:
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 8)):
            piece = rng.choice(_PASS_PIECES)
            if rng.random() < 0.3:  # a non-ASCII character or "?" inside the piece
                k = rng.randint(0, len(piece))
                piece = piece[:k] + rng.choice(_PASS_WIDE) + piece[k:]
            parts.append(piece)
            if rng.random() < 0.5:
                parts.append(rng.choice(_PASS_WIDE) * rng.choice((1, 1, 2, 3)))
        out.append("".join(parts))
    return out


@needs_hyperscan
def test_the_pass_over_question_marks_finds_what_it_found_in_utf8():
    """The pass scans ``?`` for each non-ASCII character (character offsets without conversion) and reports
    one run end per type and run: on values of every pattern cut and joined by non-ASCII characters and ``?``,
    it gives what the pass over UTF-8 with offsets converted gave (a pattern that takes two such bytes in a row,
    or two bytes for a character, fails this)."""
    from dspy_tracekit_redact._detectors import pass_safe

    new, old = prefilter_module.Prefilter(BUILTIN_ENTITIES), _Utf8Pass()
    texts = [t for t in _pass_texts(12_000) if pass_safe(t)]
    assert len(texts) > 11_000 and sum(not t.isascii() for t in texts) > 5_000
    assert [t for t in texts if new.scan(t) != old.scan(t)] == []
    # every kind of report occurs
    reports = [old.scan(t) for t in texts[:3000]]
    assert all(sum(1 for r in reports if k in r[2]) > 100 for k in ("PHONE", "CREDIT_CARD", "US_SSN", "IP_ADDRESS"))
    assert all(sum(1 for r in reports if k in r[3]) > 50 for k in ("IBAN", "JWT", "OPENAI_KEY", "PRIVATE_KEY")), [
        (k, sum(1 for r in reports if k in r[3])) for k in ("IBAN", "JWT", "OPENAI_KEY", "PRIVATE_KEY")]
    assert sum(1 for r in reports if r[1]) > 1000


@needs_hyperscan
def test_runs_longer_than_the_look_back_start_where_the_whole_data_says():
    """A run's start is looked for in the 64 bytes before its end first (``_RUN_LOOKBACK``), further back when they
    are all the run's: on runs of 20 to 300 run characters ending in a phone, card, SSN or IPv4 (its start 63, 64,
    65 bytes back too), at the text's start or after a letter or a non-ASCII one, the pass gives what the
    reference pass gives (without the fallback further back this fails)."""
    import random

    rng = random.Random(21)
    new, old = prefilter_module.Prefilter(BUILTIN_ENTITIES), _Utf8Pass()
    ends = ("212-555-1234", "4111 1111 1111 1111", "123-45-6789", "192.168.1.10", "+44 20 7946 0958", "2024-05-11")
    texts = []
    for n in (*range(55, 75), *rng.sample(range(20, 300), 40)):
        for end in ends:
            body = "".join(rng.choice("0123456789 -./()+") for _ in range(n - len(end))) + end
            for before in ("", "x", "é", "call "):
                texts.append(before + body + rng.choice(("", " ok", "\n", "é")))
    assert sum(1 for t in texts if any(e - s > 64 for spans in old.scan(t)[2].values() for s, e in spans)) > 500
    assert [t for t in texts if new.scan(t) != old.scan(t)] == []


@needs_hyperscan
def test_a_one_character_trigger_is_looked_for_in_the_bytes_the_pass_scans():
    """``@`` (EMAIL's trigger) is not compiled into the pass (``_one_char``): it is looked for with ``in``, where the
    reference pass's pattern reports it; the other triggers stay compiled."""
    new = prefilter_module.Prefilter(BUILTIN_ENTITIES)
    assert [c for c, _ in new._char_triggers] == [b"@"]
    assert not prefilter_module._one_char("\n") and not prefilter_module._one_char(".")
    old = _Utf8Pass()
    texts = ["@", "a@b", "é@", "x", "", "@\n", "mail me: jane@example.com", "?", "＠"]
    assert [t for t in texts if new.scan(t) != old.scan(t)] == []
    assert "EMAIL" in new.scan("a@b")[0] and "EMAIL" not in new.scan("ab＠")[0]
    # with EMAIL alone there is no pattern to compile, and no database: the pass is the "in" alone
    only = Redactor({"entities": ["EMAIL"], "prefilter_cache": False})
    assert only._prefilter._db is None and only._prefilter.scan("x a@b.co")[0] == {"EMAIL"}
    assert only.redact_text("mail a@b.co, card 4111 1111 1111 1111") == "mail <EMAIL>, card 4111 1111 1111 1111"


@needs_hyperscan
def test_the_credential_words_of_text_with_non_ascii_letters_are_those_of_its_lower_case_form():
    """In text the pass sees that is not ASCII, the pass's ASCII credential words and the others looked for in
    the lower-cased text are every credential word of the lower-cased text (what ``find`` took before)."""
    import random

    from dspy_tracekit_redact._detectors import pass_safe

    rng = random.Random(16)
    p = prefilter_module.Prefilter(BUILTIN_ENTITIES)
    texts = [t for t in _pass_texts(12_000, seed=12) if not t.isascii() and pass_safe(t)]
    # the words in every case: the non-ASCII ones are looked for in the text itself, each character in its case forms
    texts = [t if rng.random() < 0.4 else "".join(c.upper() if rng.random() < 0.5 else c for c in t) for t in texts]
    texts += ["CONTRASEÑA: x", "Пароль=abc", "SCHLÜSSEL ключ 密码 clé", "hasło şifre トークン", "ŞIFRE HASŁO КЛЮЧ СЕКРЕТ ТоКеН"]
    texts = [t for t in texts if pass_safe(t)]
    assert len(texts) > 5_000
    for text in texts:
        low = text.lower()
        assert len(low) == len(text)
        assert sorted({*p.scan(text)[1], *p.wide_word_starts(low)}) == p.word_starts(low), text
        assert p.wide_word_starts_in(text, Text(text)) == p.wide_word_starts(low), text
    assert sum(1 for t in texts if p.wide_word_starts(t.lower()) and t.lower() != t) > 300


def test_the_case_forms_of_the_non_ascii_credential_words_are_every_character_that_lowers_to_theirs():
    """What the any-case finder takes for each character of the non-ASCII credential words: every code point whose
    ``lower()`` is that character, but the four letters text the pass sees cannot hold (``İ``, ``ı``, ``ſ``, ``K``)."""
    from dspy_tracekit_redact._detectors import _FOLDS_TO_ASCII
    from dspy_tracekit_redact._generic import _NEEDLES

    chars = {c for w in _NEEDLES if not w.isascii() for c in w}
    forms = {c: set() for c in chars}
    for cp in range(0x110000):
        low = chr(cp).lower()
        if low in forms and chr(cp) not in _FOLDS_TO_ASCII:
            forms[low].add(chr(cp))
    assert {c: set(prefilter_module._case_forms(c)) for c in chars} == forms
    assert prefilter_module.Prefilter(BUILTIN_ENTITIES)._wide_any_case is not None


@needs_hyperscan
def test_the_detectors_that_match_at_the_pass_positions_find_in_one_loop_what_each_finds():
    """The prefixed-key detectors (and JWT) run as one loop over the pass's positions
    (``matches_at_positions``): on prefixes run together at every edge, each candidate is one that detector's
    own ``find`` gives on the same pass results, and no other (a skipped overlap check or a validator left out
    fails this)."""
    from dspy_tracekit_redact._detectors import matches_at_positions

    r = Redactor()
    group = [(k, d) for k, d in enumerate(r._detectors) if getattr(d, "by_position", False)]
    assert {d.entity for _, d in group} == {"JWT", "ANTHROPIC_KEY", "OPENAI_KEY", "AWS_ACCESS_KEY_ID", "GITHUB_TOKEN",
                                            "SLACK_TOKEN", "STRIPE_KEY", "GOOGLE_API_KEY"}
    p = prefilter_module.Prefilter(BUILTIN_ENTITIES)
    found = 0
    for text in _prefixed_key_texts(8000, seed=9) + _pass_texts(3000, seed=10):
        ctx = Text(text)
        if not ctx.scannable:
            continue
        _, _, _, ctx.positions = p.scan(text)
        want = sorted((s, -d.priority, s - e, k, e, d.entity) for k, d in group for s, e in d.find(text, ctx))
        got = []
        matches_at_positions(text, ctx, group, got.append)
        assert sorted(got) == want, text
        found += len(want)
    assert found > 4000


@needs_hyperscan
def test_a_position_gate_with_patterns_of_several_lengths_reports_each_start(monkeypatch):
    """``POSITIONS`` entries of one gate may have different lengths (one id per gate and length): each start
    is reported, as the pass with one id per pattern reported it."""
    monkeypatch.setitem(prefilter_module.POSITIONS, "AWS_SECRET_KEY/test",
                        (("aws", 3), ("secret", 6), ("access key", 10), ("AKIA", 4), ("ASIA", 4)))
    new, old = prefilter_module.Prefilter(BUILTIN_ENTITIES), _Utf8Pass()
    texts = _pass_texts(4000, seed=14)
    assert sum(1 for t in texts if "AWS_SECRET_KEY/test" in old.scan(t)[3]) > 600
    assert [t for t in texts if new.scan(t) != old.scan(t)] == []


def test_text_classes_of_long_non_ascii_text_are_those_of_each_character():
    """``text_classes`` looks at each distinct non-ASCII character once when there are many: on long Cyrillic,
    CJK and accented text with one character that turns the pass off (a Unicode digit or space, ``ſ``, ``K``)
    anywhere or none, it answers as ``ascii_classes`` and ``pass_safe`` do."""
    import random

    from dspy_tracekit_redact._detectors import ascii_classes, pass_safe, text_classes

    # text whose non-ASCII characters are letters only takes a shortcut: no letter is a digit or a space
    assert not [cp for cp in range(0x80, 0x110000) if chr(cp).isalpha() and (chr(cp).isdigit() or chr(cp).isspace())]
    rng = random.Random(15)
    letters = "абвгдежзиклмнопрстуфхцчшщыэюя密码令牌パスワードéñüłş abc123:"
    unsafe = ("٣", "\u3000", "\xa0", "ſ", "\u212a", "²", "\u0130", "\u0131", "\x1f")
    refused = 0
    for _ in range(3000):
        alphabet = letters + rng.choice(("", "€—😀«»"))  # letters only, or with symbols too
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(20, 400)))
        if rng.random() < 0.5:
            k = rng.randint(0, len(text))
            text = text[:k] + rng.choice(unsafe) + text[k:]
        want = (ascii_classes(text), ascii_classes(text) or pass_safe(text))
        assert text_classes(text) == want, text
        refused += not want[1]
    assert 1000 < refused < 2000


def test_the_classes_text_classes_searches_are_those_of_the_character_tests():
    """``text_classes`` searches the non-ASCII characters with two regexes instead of testing each: they match
    exactly the non-ASCII code points ``isalnum() or isspace()`` (``ascii_classes``), and ``isdigit() or
    isspace()`` or a letter that folds to ASCII (``pass_safe``), in this Python's Unicode database."""
    from dspy_tracekit_redact._detectors import _FOLDS_TO_ASCII, _PASS_UNSAFE, _WORD_OR_SPACE

    chars = [chr(cp) for cp in range(0x80, 0x110000)]
    assert [c for c in chars if (_WORD_OR_SPACE.match(c) is not None) != (c.isalnum() or c.isspace())] == []
    assert [c for c in chars if (_PASS_UNSAFE.match(c) is not None) != (
        c.isdigit() or c.isspace() or c in _FOLDS_TO_ASCII)] == []
