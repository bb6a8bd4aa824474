"""``GENERIC_SECRET``: a high-entropy token right after a credential word, in any of several languages.

The rule of gitleaks' ``generic-api-key`` and detect-secrets' entropy plugins, tuned for chat text:
a credential word (key, token, secret, password, authorization, credential, and their spellings in
other languages), then within a few words a token of the key/password alphabet whose Shannon
entropy, measured over its own characters, is high enough. Look-alikes that keep their shape
(UUIDs, git SHAs and other hex digests, order and tracking numbers, versions, timestamps, base64
image data) are rejected on shape before entropy is computed.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Callable

Span = tuple[int, int]

#: credential words (lower case). A word counts where it is not followed by a letter ("keyboard"
#: opens nothing) — a trailing "s" is allowed ("keys", "tokens").
CONTEXT_WORDS = (
    # English
    "key", "token", "secret", "password", "passwd", "pwd", "passphrase", "passcode", "authorization",
    "auth", "credential", "bearer", "apikey", "accesskey", "secretkey", "privatekey", "authtoken", "apitoken",
    # Spanish / Portuguese / Italian / French
    "clave", "contraseña", "contrasena", "senha", "chave", "chiave", "segreto", "parola d'ordine",
    "mot de passe", "mdp", "clé", "jeton", "secreto", "credencial", "credenziali", "identifiants",
    # German / Dutch
    "passwort", "kennwort", "schlüssel", "schluessel", "geheimnis", "zugangsdaten", "wachtwoord", "sleutel",
    # Polish / Russian / Ukrainian
    "hasło", "haslo", "klucz", "токен", "пароль", "ключ", "секрет",
    # Turkish / Japanese / Chinese / Korean
    "şifre", "sifre", "anahtar", "パスワード", "トークン", "キー", "密码", "密鑰", "密钥", "令牌", "비밀번호", "토큰",
)
#: words after which a short password-like token (8+ characters) counts; other words want 16+.
PASSWORD_WORDS = frozenset({
    "password", "passwd", "pwd", "passphrase", "passcode", "contraseña", "contrasena", "senha", "mot de passe",
    "mdp", "passwort", "kennwort", "wachtwoord", "hasło", "haslo", "пароль", "şifre", "sifre", "パスワード", "密码",
    "비밀번호", "parola d'ordine",
})

_TOKEN_CHARS = r"A-Za-z0-9+/=_\-.~!@#$%^&*()"
#: one candidate token (quotes and backticks around it are skipped by the window scan)
_TOKEN = re.compile(r"[" + _TOKEN_CHARS + r"]{8,300}")
_DIGIT = re.compile(r"[0-9]")
#: where a credential word's sentence ends: no token is looked for after it
_SENTENCE_END = re.compile(r"[.!?;]\s|\n")
_TRAILING = ".,;:?)]}'\"`"
_UUID = re.compile(r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}")
_HEX = re.compile(r"(?:0x)?[0-9A-Fa-f]+(?:[\-:][0-9A-Fa-f]+)*")
_NUMERIC = re.compile(r"[0-9+\-./:_]+")
_DATE_TIME = re.compile(r"(?i)\d{2,4}[\-/.]\d{1,2}[\-/.]\d{1,4}(?:[T ]\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?)?z?"
                        r"|\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?")
#: (its tail possessive: as ``(?:[\-+.]?[a-z0-9]+)*`` it tried every split of a run of letters and digits that the
#: token does not end with, ~2^n steps: "key 1.2aaaaaaaaaaaaaaaaaaaaaa= x" took 0.85 s in ``find``. It takes the
#: same strings, each run whole, as the greedy form's first split did; a shorter split ends before a letter,
#: digit or separator, where neither the end of a ``fullmatch`` nor ``_RUN_END`` (after ``_SHAPES_IN_RUN``) is)
_VERSION = re.compile(r"(?i)v?\d+(?:\.\d+){1,4}(?:[\-+.]?[a-z0-9]++)*+")
#: letters then digits (then letters): order, ticket, tracking, SKU numbers ("ORD-2024-123456",
#: "1Z999AA10123456784", "INC0012345", "JD014600003828394012")
_SHAPED_ID = re.compile(r"[A-Z0-9]{0,6}[\-_#]?[0-9]{2,}(?:[\-_][A-Z0-9]+)*[A-Z]{0,4}")
#: host names and words joined by separators ("web-08.example.org", "improve-enter-him-642", "MAX_RETRY_5")
_HOSTNAME = re.compile(r"(?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2,24}")
_JOINED_WORDS = re.compile(r"[a-z]+(?:[\-_.][a-z0-9]+)+|[A-Z]+(?:[\-_.][A-Z0-9]+)+")


def _alternation(*shapes: re.Pattern[str]) -> re.Pattern[str]:
    return re.compile("|".join(
        f"(?{'i' if rx.flags & re.IGNORECASE else ''}:{rx.pattern.removeprefix('(?i)')})" if rx.flags & re.IGNORECASE
        else f"(?:{rx.pattern})" for rx in shapes))


#: every shape above in one alternation: ``fullmatch`` tries each alternative to the end, so it matches
#: when one of them would (one call instead of eight)
_SHAPES = _alternation(_NUMERIC, _HEX, _UUID, _DATE_TIME, _VERSION, _SHAPED_ID, _HOSTNAME, _JOINED_WORDS)
#: ``_SHAPES`` for a run of ``_TOKEN`` characters, which holds no ``:`` and no space: the same strings, without
#: the parts that need one (so that a match inside a word cannot run on past the run)
_SHAPES_IN_RUN = _alternation(re.compile(r"[0-9+\-./_]+"), re.compile(r"(?:0x)?[0-9A-Fa-f]+(?:-[0-9A-Fa-f]+)*"), _UUID,
                              re.compile(r"\d{2,4}[\-/.]\d{1,2}[\-/.]\d{1,4}z?", re.IGNORECASE), _VERSION, _SHAPED_ID,
                              _HOSTNAME, _JOINED_WORDS)
#: letters of none of ``_SHAPES`` but ``_VERSION``, ``_HOSTNAME`` (both need a ``.``), ``_JOINED_WORDS`` (one case) and
#: ``_SHAPED_ID`` (upper case): not hex, not the ``x`` of ``0x``, not the ``T`` and ``z`` of ``_DATE_TIME``; an
#: ASCII token without ``.``, in both cases, with one of them matches no shape
_NO_SHAPE_LETTERS = frozenset("ghijklmnopqrsuvwyGHIJKLMNOPQRSUVWY")
#: symbols of passwords, not of identifiers (which use ``-``, ``_`` and ``.``)
_STRONG_SYMBOLS = frozenset("!@#$%^&*()+=~/")
#: random mixed case has capitals side by side; CamelCase identifiers ("ThisIsMyClassName") do not
_CAPITAL_PAIR = re.compile(r"(?=[A-Z][A-Z])")
#: how far after the end of a credential word the token may start
_REACH = 48
_MAX_GAP_WORDS = 3
#: the first ``_MAX_GAP_WORDS + 1`` words (runs of ``\S``, one group each) from a position to the next newline:
#: one ``match`` instead of a sentence-end search and a word iterator per credential word. The sentence
#: ends there or at the first word that ends in one of ``_SENTENCE_PUNCT`` before a space (which the word
#: loses): where ``_SENTENCE_END`` matches first
_WORDS = re.compile(r"[^\S\n]*(\S+)" + "".join(r"(?:[^\S\n]+(\S+)" for _ in range(_MAX_GAP_WORDS))
                    + ")?" * _MAX_GAP_WORDS)
_SENTENCE_PUNCT = ".!?;"
_WORD_GROUPS = tuple(range(1, _MAX_GAP_WORDS + 2))


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value``, over the characters it uses."""
    n = len(value)
    if n == 0:
        return 0.0
    # H = log2 n - (1/n) * sum(c log2 c); Counter counts at C speed, the table saves the logarithms
    counts = Counter(value).values()
    table = _C_LOG_C
    total = sum(map(table.__getitem__, counts)) if n < len(table) else sum(c * math.log2(c) for c in counts)
    return max(0.0, math.log2(n) - total / n)


_C_LOG_C = [0.0] + [c * math.log2(c) for c in range(1, 512)]
#: far more than the rounding error of ``shannon_entropy`` and of the bounds below (~1e-12 at 512 characters)
_ROUNDING = 1e-9


def _entropy_at_least(value: str, threshold: float) -> bool:
    """``shannon_entropy(value) >= threshold``, decided from the number of distinct characters ``d`` alone when
    it can be (the count of each, ~2 us, is mostly not needed). Of ``n`` characters, the entropy is at most
    log2 d (each as frequent), and at least what one character ``n - d + 1`` times and the others once give
    (log2 n - (1/n) sum(c log2 c), and c log2 c is convex: over counts of at least 1 that sum to n, the sum is
    largest at that corner). Only bounds that clear the threshold by ``_ROUNDING`` decide; else it is counted."""
    n = len(value)
    d = len(set(value))
    if d == 0:
        return shannon_entropy(value) >= threshold
    top = n - d + 1
    low = math.log2(n) - (_C_LOG_C[top] if top < len(_C_LOG_C) else top * math.log2(top)) / n
    if low >= threshold + _ROUNDING:
        return True
    if math.log2(d) < threshold - _ROUNDING:
        return False
    return shannon_entropy(value) >= threshold


class GenericSecretRule:
    """The thresholds of the detector (validated by the Redactor's config parsing)."""

    __slots__ = ("entropy", "max_length", "min_length", "min_password_length")

    #: ``min_length``: shorter tokens (down to ``min_password_length``) count only when they mix
    #: upper and lower case and digits, and have a symbol or follow a password word

    def __init__(self, entropy: float = 3.5, min_length: int = 16, min_password_length: int = 8,
                 max_length: int = 256):
        self.entropy = entropy
        self.min_length = min_length
        self.min_password_length = min_password_length
        self.max_length = max_length

    def token_ok(self, value: str, password: bool) -> bool:
        """Whether ``value`` (quotes and trailing punctuation stripped) looks like a secret."""
        n = len(value)
        if n < self.min_password_length or n > self.max_length:
            return False
        if value.startswith(("<", "base64,")) or "://" in value:
            return False
        # its classes: upper case, lower case, digit, other (for the ASCII tokens _TOKEN admits; inline, a call costs)
        digit = _DIGIT.search(value) is not None
        upper = value.lower() != value
        lower = value.upper() != value
        if not digit:
            # most keys hold digits; words, names and paths mostly do not: without, a key must be
            # long, mixed-case and clearly more random than a CamelCase identifier
            return (n >= 20 and upper and lower and len(_CAPITAL_PAIR.findall(value)) >= 2
                    and _entropy_at_least(value, self.entropy + 0.5))
        if not (upper and lower and "." not in value and value.isascii() and not _NO_SHAPE_LETTERS.isdisjoint(value)
                ) and _SHAPES.fullmatch(value):
            return False  # numbers, dates, git SHAs, digests, UUIDs, MAC addresses, versions, ids, hosts
        if "@" in value and "." in value.rpartition("@")[2]:
            return False  # an e-mail address (EMAIL's business)
        kinds = upper + lower + digit + (not value.isalnum())
        if kinds < 2:
            return False
        if n < self.min_length and not (upper and lower and (password or not _STRONG_SYMBOLS.isdisjoint(value))):
            return False  # a short token must look like a password: mixed case, digits, symbols
        if not (upper and lower) and n < 20:
            return False  # short single-case tokens: ticket and tracking numbers, hostnames
        # a random token of length n uses nearly n distinct characters: scale the threshold with
        # the most a token of that length can reach (log2 n), so short passwords can pass too
        return _entropy_at_least(value, min(self.entropy, 0.8 * math.log2(n)))


def _cjk(word: str) -> bool:
    return any(ord(c) >= 0x3000 for c in word)


def _context_regex(first: str | None = None) -> re.Pattern[str]:
    """``CONTEXT``; with ``first`` (an ASCII letter), its alternatives for the words that start with it."""
    chosen = [w for w in CONTEXT_WORDS if first is None or w[0] == first]
    words = sorted((w for w in chosen if not _cjk(w)), key=len, reverse=True)
    cjk = sorted((w for w in chosen if _cjk(w)), key=len, reverse=True)
    # a word starts and ends at a word boundary, at "_"/"-" or at a camelCase hump ("api_key",
    # "x-auth-token", "ServiceApiKey"; "monkey" and "keyboard" hold no key; "/key+" inside base64 data
    # neither); CJK words have no spaces around them
    start = r"(?:(?<![^\W_])(?<![+/=])|(?-i:(?<=[a-z])(?=[A-Z])))"  # or a camelCase hump: "sendgridKey"
    return re.compile("(?i)" + start + "(?:" + "|".join(re.escape(w) for w in words) + r")(?:s|es|e)?(?![^\W_])(?![+/])"
                      + ("|" + "|".join(re.escape(w) for w in cjk) if cjk else ""))


CONTEXT = _context_regex()
#: ``CONTEXT`` at a position holding an ASCII letter: only the words that start with it (in either case)
#: can match there (no other first letter of a word is the same letter ignoring case), tried in the
#: same order (about half the time of the whole alternation); other characters get the whole of it
_CONTEXT_AT = {c: _context_regex(c) for c in sorted({w[0] for w in CONTEXT_WORDS if w[0].isascii()})}
_CONTEXT_AT.update({c.upper(): rx for c, rx in _CONTEXT_AT.items()})
#: every match of CONTEXT starts with one of these (lower case), as the word itself does
_NEEDLES = tuple(sorted({w.lower() for w in CONTEXT_WORDS}))

# The words after a credential word that ``find`` provably drops in text where nothing is claimed, matched
# in C: ``_SKIP`` is one effective word (a word less the ``.!?;`` that ends its sentence) that gives nothing
# whatever the rule: shorter than 8, ASCII letters only (under 20 or lower case: the letters-only shortcut),
# or made of characters outside ``_TOKEN`` and token runs that ``_token`` rejects on sight — under 8
# characters, or 8-64 whose first is not ``=`` and last not ``.``/``)`` (nothing is stripped) that hold a
# digit and are one of ``_SHAPES`` or of one case and under 20 (``token_ok`` refuses both at any
# threshold). ``_RUN_END``: where a token run ends, its sentence's last ``.``/``!`` not counted. The runs'
# guards are possessive and want one case (or hex digits): a vendor key fails each in a few steps.
_TC = _TOKEN_CHARS
_RUN_END = rf"(?:(?=[.!?;]\s)|(?![{_TC}])(?!(?<=[.!?;])\s))"
_REJECTED_RUN = (rf"(?=[A-Z0-9+/=_\-.~!@#$%^&*()]{{8,65}}+(?![{_TC}])|[a-z0-9+/=_\-.~!@#$%^&*()]{{8,65}}+(?![{_TC}])"
                 rf"|[0-9A-Fa-f\-]{{8,65}}+(?![{_TC}]))"
                 rf"(?=[{_TC.replace('=', '')}][{_TC}]{{6,62}}[A-Za-z0-9+/=_\-~!@#$%^&*(]{_RUN_END})"
                 rf"(?=[A-Za-z+/=_\-.~!@#$%^&*()]*[0-9])"
                 rf"(?:(?:{_SHAPES_IN_RUN.pattern}){_RUN_END}"
                 rf"|(?=[A-Z0-9+/=_\-.~!@#$%^&*()]{{8,19}}{_RUN_END})[{_TC}]{{8,19}}{_RUN_END}"
                 rf"|(?=[a-z0-9+/=_\-.~!@#$%^&*()]{{8,19}}{_RUN_END})[{_TC}]{{8,19}}{_RUN_END})")
#: a word too short to hold a token: under 8 characters, or 8 whose last is a ``.!?;`` that ends the sentence
_SHORT_WORD = r"(?=\S{1,8}+(?!\S))\S{1,7}"
_SKIP = (rf"(?:{_SHORT_WORD}|[A-Za-z]{{8,19}}+|[a-z]{{20,300}}+"
         rf"|(?:[^\s{_TC}]++|(?=[{_TC}]{{1,8}}+(?![{_TC}]))[{_TC}]{{1,7}}{_RUN_END}|{_REJECTED_RUN})+)")
_STOP = r"[.!?;](?=\s)"  # a word's last character, where its sentence ends
_WORD_END = r"(?:\Z|(?=\s)(?<![.!?;]))"  # at the end of the text no sentence ends (as in ``find``)


def _tail_regex(skip: str = _SKIP, stop: str = _STOP, word_end: str = _WORD_END, count: int | None = None,
                read: str = r"(\S+)") -> re.Pattern[str]:
    """What ``_words`` does with the words after a credential word (as ``_WORDS`` cuts them), in one match:
    each word that ``skip`` takes, then the next one or the end of its sentence, up to ``_MAX_GAP_WORDS + 1``
    words; or the first word it does not take, in a group of its own (``lastindex`` is that group; ``None``:
    every word was skipped, or there was none). ``count``: up to that many words instead; ``read``: that word
    (the alternatives of ``read``, a group each, instead of one group)."""
    most = _MAX_GAP_WORDS + 1 if count is None else count

    def words(k: int) -> str:
        if k > most:
            return ""
        rest = words(k + 1)
        more = rf"(?:[^\S\n]+{rest}|(?![^\S\n]+\S))" if rest else ""
        return rf"(?:{skip}(?:{stop}|{word_end}{more})|{stop}|{read})"

    return re.compile(rf"[^\S\n]*(?:{words(1)}|(?!\S))")


_TAIL = _tail_regex()

# With claimed spans a word ``_SKIP`` takes may be claimed, which decides ("12345678" after "pin" when a detector
# took it): only the short words are dropped whatever is claimed (``_words`` drops them before it looks at
# claims). ``_LEAD``: ``_TAIL`` with those alone; its groups (``_READ``'s) hold the first word ``_words`` reads, of 8
# characters or more (less the ``.!?;`` that ends its sentence). ``_CONTEXT_LEAD``: ``CONTEXT`` then ``_LEAD`` in a
# look-ahead, one match per credential word: ``_LEAD`` matches everywhere (``(?!\S)`` when no word follows), so
# the look-ahead never fails and the credential word (``group(0)``, ``end()``) is the one ``CONTEXT`` matches.
# These are matched without ``_words``' end (``_REACH + max_length`` after the credential word, unknown before
# the match). What that end would change: only the words that start within ``_REACH`` matter (at the first word
# past it ``_words`` stops, with nothing); of those, a short word is read up to one character after it (9), the
# spaces before the next word up to that word, so nothing the end cuts; a word ``_words`` reads may run past
# the end, where ``_words`` cuts it: ``_find_claimed`` hands that one to ``_words``.
#: the word ``_words`` reads: a run of ``_TOKEN`` characters that is the whole word (8-300 of them; ``_token``'s run is
#: then the word), in the first group; any other, in the second
_READ = rf"([{_TC}]{{8,300}}+)(?!\S)|(\S+)"
_LEAD = _tail_regex(_SHORT_WORD, read=_READ)


def _lead_regexes(short: str = _SHORT_WORD) -> tuple[re.Pattern[str], dict[str, re.Pattern[str]], dict[int, re.Pattern[str]]]:
    """``_CONTEXT_LEAD``, ``_CONTEXT_LEAD_AT`` (per first letter, as ``_CONTEXT_AT``) and ``_LEAD_AFTER``, with
    ``short`` the words dropped whatever is claimed.

    The groups of these regexes are numbered from the last word, two a word (``_READ``'s): groups ``2k - 1``
    and ``2k`` are word ``_MAX_GAP_WORDS + 2 - k`` after the credential word (groups 1 and 2 the last that
    ``_words`` reads); ``_LEAD_AFTER[g]`` is ``_LEAD`` for the words after the one of group ``g``, numbered the
    same way (its groups are ``1 ... 2k - 2``)."""
    lead = _tail_regex(short, read=_READ).pattern

    def with_lead(rx: re.Pattern[str]) -> re.Pattern[str]:
        return re.compile("(?i)(?:" + rx.pattern.removeprefix("(?i)") + ")(?=(?-i:" + lead + "))")

    return (with_lead(CONTEXT), {c: with_lead(rx) for c, rx in _CONTEXT_AT.items()},
            {g: _tail_regex(short, count=(g - 1) // 2, read=_READ) for g in range(3, 2 * _MAX_GAP_WORDS + 3)})


_CONTEXT_LEAD, _CONTEXT_LEAD_AT, _LEAD_AFTER = _lead_regexes()


#: the first words of the credential words of several words ("parola d'ordine"), and the longest of them
_MULTI_WORD_HEADS = tuple(sorted({w.split()[0] for w in CONTEXT_WORDS if " " in w}))
_MULTI_WORD_HEAD = max(map(len, _MULTI_WORD_HEADS), default=0)


def _find_all(hay: str, needle: str) -> list[int]:
    out = []
    i = hay.find(needle)
    while i != -1:
        out.append(i)
        i = hay.find(needle, i + 1)
    return out


def _claimed_lists(spans: list[Span]) -> tuple[list[int], list[int]]:
    """The starts of ``spans`` in order, and at each the furthest end among the spans that start at or before it:
    ``(s, e)`` is covered by one of them (``cs <= s and e <= ce``) when the one at ``bisect_right(starts, s) - 1``
    reaches ``e``. (The loop, not ``accumulate(..., max)``: a ``max`` call per span costs 1.1 us for 13 spans.)
    ``Redactor.find`` hands them in order of start (not sorted again: ~0.4 us); spans out of order are sorted. The
    order among spans of one start does not matter: ``bisect_right`` lands past all of them, at the furthest end."""
    starts: list[int] = []
    reach: list[int] = []
    top = -1  # positions are >= 0
    prev = -1
    for cs, ce in spans:
        if cs < prev:
            return _claimed_lists(sorted(spans))
        prev = cs
        starts.append(cs)
        if ce > top:
            top = ce
        reach.append(top)
    return starts, reach


def _covering(spans: list[Span]) -> Callable[[int, int], bool]:
    """``(s, e) → any(cs <= s and e <= ce for cs, ce in spans)`` in O(log n), from ``_claimed_lists``."""
    starts, reach = _claimed_lists(spans)
    right = bisect.bisect_right

    def covered(s: int, e: int) -> bool:
        k = right(starts, s)
        return k > 0 and reach[k - 1] >= e

    return covered


def _value_span(text: str, s: int, e: int) -> Span:
    """The value in the token run ``text[s:e]``: less the punctuation that ends it (a ``)`` only when it closes
    nothing opened in the run) and the ``=``/``:`` before it ("key=abc", "token:abc": the value is after the
    separator)."""
    while e > s and text[e - 1] in _TRAILING and (text[e - 1] != ")" or text.count("(", s, e) < text.count(")", s, e)):
        e -= 1
    if e - s > 1 and text[s] in "=:":
        s += 1
    return s, e


def _password_word(word: str) -> bool:
    """Whether the credential word ``word`` (as in the text) is one after which short tokens count."""
    word = word.lower()
    return word in PASSWORD_WORDS or word.rstrip("s") in PASSWORD_WORDS


class GenericSecretDetector:
    """Finds ``GENERIC_SECRET`` tokens; same interface as the other detectors (``find``)."""

    entity = gate = "GENERIC_SECRET"
    priority = 58  # below CREDENTIAL ("password: x" pairs) and every vendor-prefixed kind

    __slots__ = ("rule",)
    #: what the fast-path tests look for on every detector: no candidate starts, one regex
    starts = window_starts = anchor = None
    regex = ascii_regex = CONTEXT

    def __init__(self, rule: GenericSecretRule | None = None):
        self.rule = rule or GenericSecretRule()

    def _contexts(self, text: str, ctx) -> list[re.Match[str]]:
        """What ``CONTEXT.finditer(text)`` yields, trying the regex only where a credential word starts."""
        starts = getattr(ctx, "context_starts", None)
        if starts is None:
            low = ctx.lower if ctx is not None else text.lower()
            if len(low) != len(text):  # "İ" lowers to two characters: positions in ``low`` are not in ``text``
                return list(CONTEXT.finditer(text))
            starts = sorted({i for w in _NEEDLES for i in _find_all(low, w)})
        out = []
        after = 0
        at = _CONTEXT_AT.get
        for c in starts:
            if c < after:
                continue
            m = at(text[c], CONTEXT).match(text, c)
            if m is not None:
                after = m.end()
                out.append(m)
        return out

    def find(self, text: str, ctx=None) -> list[Span]:
        starts = getattr(ctx, "context_starts", None)
        if starts is None:
            low = ctx.lower if ctx is not None else text.lower()
            if len(low) != len(text):  # "İ" lowers to two characters: positions in ``low`` are not in ``text``
                starts = [m.start() for m in CONTEXT.finditer(text)]
            else:
                starts = sorted({i for w in _NEEDLES for i in _find_all(low, w)})
        spans = getattr(ctx, "claimed", None)
        if spans:
            # spans claimed by the detectors before: a credential word is mostly followed by one (a vendor key),
            # which decides; _TAIL's skipping does not hold (a word it skips may be claimed)
            return self._find_claimed(text, starts, spans)
        out: list[Span] = []
        last_end = 0
        n = len(text)
        reach = _REACH + self.rule.max_length
        after = 0
        at = _CONTEXT_AT.get
        tail = _TAIL.match
        token_at = _TOKEN.search
        token_ok = self.rule.token_ok
        for c in starts:
            if c < after:
                continue
            rx = at(text[c])
            if rx is None:  # not an ASCII letter: the whole CONTEXT, then word by word
                m = CONTEXT.match(text, c)
                if m is None:
                    continue
                after = end = m.end()
                span = self._words(text, end, m.group(0), None)
            else:
                m = rx.match(text, c)
                if m is None:
                    continue
                after = end = m.end()
                limit = end + reach
                if limit > n:
                    limit = n
                t = tail(text, end, limit)
                g = t.lastindex
                if g is None:  # every word up to the sentence end skipped: nothing here
                    continue
                ws, we = t.span(g)  # the first word not skipped (those before it hold nothing)
                if ws - end > _REACH:
                    continue
                if we < limit and text[we - 1] in _SENTENCE_PUNCT:
                    we -= 1
                # _SKIP takes every word shorter than 8 and every one of the letters-only shortcut: this one is
                # longer and not letters-only; what _token finds in it
                span = None
                if text.find("base64,", ws, we) == -1:
                    password = None
                    tm = token_at(text, ws, we)
                    while tm is not None:
                        s, e = _value_span(text, *tm.span())
                        if password is None:
                            password = _password_word(m.group(0))
                        if token_ok(text[s:e], password):
                            span = (s, e, False)
                            break
                        tm = token_at(text, tm.end(), we)
                if span is None:  # nothing in it: the words after it, word by word
                    span = self._words(text, end, m.group(0), None)
            if span is not None and span[0] >= last_end:
                if not span[2]:
                    out.append((span[0], span[1]))
                last_end = span[1]
        return out

    def _find_claimed(self, text: str, starts: list[int], spans: list[Span]) -> list[Span]:
        """``find`` with claimed spans: what ``_words`` with ``claimed`` (whether a span covers ``s:e``) gives,
        the short words it drops whatever is claimed skipped in the credential word's match (``_CONTEXT_LEAD``)
        and after each word it reads (``_LEAD_AFTER``), the words it reads read here (its loop body and
        ``_token``'s, inline: a call each costs more than the loop), a word that runs past its end by ``_words``."""
        out: list[Span] = []
        last_end = 0
        n = len(text)
        reach = _REACH + self.rule.max_length
        cs_at, ce_max = _claimed_lists(spans)  # covered(s, e): k = right(cs_at, s), k and ce_max[k - 1] >= e
        right = bisect.bisect_right
        claimed = None  # _covering(spans), for _words
        after = 0
        # where the first word read after the last credential word starts, when a claimed span decided it without a
        # token_ok call (which depends on the word): a credential word that starts after that one's match and before
        # this word ("Authorization: Bearer <token>": "Bearer") is followed by short words only, then this word, which
        # it reads first and finds claimed as well: nothing more to take (last_end is past it), and the match end it
        # would leave in ``after`` is before this word, where the next start is past it too. (A credential word of
        # several words, "parola d'ordine", can run into this word: those are looked at.) ~0.9 starts per dense prompt
        decided = -1
        at = _CONTEXT_LEAD_AT.get
        token_at = _TOKEN.search
        token_ok = self.rule.token_ok
        for c in starts:
            if c < after or c < decided and not text[c:c + _MULTI_WORD_HEAD].lower().startswith(_MULTI_WORD_HEADS):
                continue
            m = at(text[c], _CONTEXT_LEAD).match(text, c)
            if m is None:
                continue
            after = end = m.end()
            g = m.lastindex
            if g is None:  # short words up to the end of the sentence or line, or none: _words reads none
                continue
            limit = end + reach
            if limit > n:
                limit = n
            # each word _words reads, until one decides: a span at or after the last one taken is taken (last_end),
            # and reported when no detector claimed it; nothing found: the next word, up to the sentence end
            w = m  # the match whose group g is the word read next
            while True:
                ws, we = w.span(g)
                if ws - end > _REACH:
                    break
                if we > limit:  # it runs past the end, where _words cuts it: _words
                    if claimed is None:
                        claimed = _covering(spans)
                    span = self._words(text, end, m.group(0), claimed)
                    if span is not None and span[0] >= last_end:
                        if not span[2]:
                            out.append((span[0], span[1]))
                        last_end = span[1]
                    break
                # a word _words reads (8 characters or more, less the sentence end): its loop body
                last = we < limit and text[we - 1] in _SENTENCE_PUNCT
                if last:
                    we -= 1
                if g & 1 and text[ws] != "=" and text[we - 1] not in ".)":
                    # a run of _TOKEN characters (8-300; it may have lost its last "." or "!" to the sentence end)
                    # with nothing to strip: _token's run is the word ("base64," holds a comma), claimed or checked,
                    # but the letters-only shortcut gives nothing (token_ok refuses those words too)
                    k = right(cs_at, ws)
                    if k and ce_max[k - 1] >= we:  # claimed
                        if ws >= last_end:
                            last_end = we
                        if w is m:
                            decided = ws
                        break
                    token = text[ws:we]
                    if not (token.isalpha() and (we - ws < 20 or token.islower())) and token_ok(
                            token, _password_word(m.group(0))):
                        if ws >= last_end:
                            out.append((ws, we))
                            last_end = we
                        break
                else:
                    span = None
                    token = text[ws:we]
                    if token.isalpha() and token.isascii() and (we - ws < 20 or token.islower()) and we - ws <= 300:
                        k = right(cs_at, ws)
                        if k and ce_max[k - 1] >= we:
                            span = (ws, we, True)
                            if w is m:
                                decided = ws
                    elif text.find("base64,", ws, we) == -1:  # _token, inline
                        password = None
                        tm = token_at(text, ws, we)
                        while tm is not None:
                            s, e = _value_span(text, *tm.span())
                            k = right(cs_at, s)
                            if k and ce_max[k - 1] >= e:
                                span = (s, e, True)
                                if password is None and w is m:  # no token_ok call before
                                    decided = ws
                                break
                            if password is None:
                                password = _password_word(m.group(0))
                            if token_ok(text[s:e], password):
                                span = (s, e, False)
                                break
                            tm = token_at(text, tm.end(), we)
                    if span is not None:
                        if span[0] >= last_end:
                            if not span[2]:
                                out.append((span[0], span[1]))
                            last_end = span[1]
                        break
                if last or g <= 2:  # the sentence ends with this word, or it is the last _words reads
                    break
                w = _LEAD_AFTER[g].match(text, w.end(g))  # the words after it, as _LEAD
                g = w.lastindex
                if g is None:
                    break
        return out

    def _words(self, text: str, end: int, word: str, claimed: Callable[[int, int], bool] | None
               ) -> tuple[int, int, bool] | None:
        """The token after the credential word ``word`` that ends at ``end``, word by word, up to the
        end of its sentence (``None``: none)."""
        limit = min(len(text), end + _REACH + self.rule.max_length)
        w = _WORDS.match(text, end, limit)
        if w is None:
            return None
        for g in _WORD_GROUPS:
            ws, we = w.span(g)
            if ws < 0 or ws - end > _REACH:
                break
            last = we < limit and text[we - 1] in _SENTENCE_PUNCT  # "... 12345678. Thanks": a space follows
            if last:
                we -= 1
            if we - ws < 8:  # too short to hold a token
                if last:
                    break
                continue
            token = text[ws:we]
            if token.isalpha() and token.isascii() and (we - ws < 20 or token.islower()) and we - ws <= 300:
                # one token without a digit, too short or single-case to be a key ("certificate",
                # "incorrect"): what _token finds in it is only whether it is claimed
                span = (ws, we, True) if claimed is not None and claimed(ws, we) else None
            else:
                span = self._token(text, ws, we, word, claimed)
            if span is not None:
                return span
            if last:
                break
        return None

    def _token(self, text: str, ws: int, we: int, password: bool | str,
               claimed: Callable[[int, int], bool] | None = None) -> tuple[int, int, bool] | None:
        """The secret inside the word ``text[ws:we]``, if any (after ``:``/``=``/quotes), and whether
        a more specific detector has claimed it already (then it is not checked: it is a secret).
        ``password``: whether a password word opened it, or that word (looked up when a token is checked)."""
        if text.find("base64,", ws, we) != -1:
            return None  # inline data ("data:image/png;base64,..."), not a key
        m = _TOKEN.search(text, ws, we)
        while m is not None:
            s, e = _value_span(text, *m.span())
            if claimed is not None and claimed(s, e):
                return s, e, True
            if password.__class__ is str:
                password = _password_word(password)
            if self.rule.token_ok(text[s:e], password):
                return s, e, False
            m = _TOKEN.search(text, m.end(), we)
        return None
