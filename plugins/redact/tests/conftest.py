"""Shared fixtures of the redact plugin's tests: a labeled support-chat corpus (fixed seed)."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import random
import string
from dataclasses import dataclass, field

import pytest
from faker import Faker

SEED = 20261115
# fixed bounds: Faker's relative "-3y" would make the corpus depend on today's date
_START = datetime.datetime(2022, 1, 1)
_END = datetime.datetime(2026, 12, 31)


@dataclass
class Sample:
    text: str
    #: planted values: (start, end, entity, subtype)
    spans: list[tuple[int, int, str, str]] = field(default_factory=list)


class _Builder:
    """Builds a sentence from pieces, remembering where planted values land."""

    def __init__(self):
        self.parts: list[str] = []
        self.spans: list[tuple[int, int, str, str]] = []
        self.pos = 0

    def text(self, s: str) -> _Builder:
        self.parts.append(s)
        self.pos += len(s)
        return self

    def value(self, s: str, entity: str, subtype: str, inner: tuple[int, int] | None = None) -> _Builder:
        if inner is None:
            self.spans.append((self.pos, self.pos + len(s), entity, subtype))
        else:
            self.spans.append((self.pos + inner[0], self.pos + inner[1], entity, subtype))
        return self.text(s)

    def build(self) -> Sample:
        return Sample("".join(self.parts), self.spans)


class CorpusGenerator:
    def __init__(self, seed: int = SEED):
        self.rng = random.Random(seed)
        Faker.seed(seed)
        self.fake = Faker("en_US")
        self.locales = {loc: Faker(loc) for loc in ("de_DE", "en_GB", "fr_FR", "nl_NL", "es_ES", "it_IT")}
        for i, f in enumerate(self.locales.values()):
            f.seed_instance(seed + i + 1)
        self.fake.seed_instance(seed)

    # -- helpers -------------------------------------------------------------------------------
    def digits(self, n: int, first: str = "0123456789") -> str:
        return self.rng.choice(first) + "".join(self.rng.choice(string.digits) for _ in range(n - 1))

    def chars(self, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def pick(self, seq):
        return self.rng.choice(seq)

    # -- values ---------------------------------------------------------------------------------
    def phone(self, country: str) -> str:
        d, p = self.digits, self.pick
        if country == "US":
            a, e, x = d(3, "23456789"), d(3, "23456789"), d(4)
            return p([f"({a}) {e}-{x}", f"{a}-{e}-{x}", f"{a}.{e}.{x}", f"+1 {a}-{e}-{x}", f"+1 ({a}) {e}-{x}",
                      f"1-800-{e}-{x}", f"{a} {e} {x}", f"+1 {a} {e} {x}"])
        if country == "UK":
            return p([f"020 {d(4, '3789')} {d(4)}", f"+44 20 {d(4, '3789')} {d(4)}", f"07{d(3)} {d(6)}",
                      f"+44 7{d(3)} {d(6)}", f"0161 {d(3)} {d(4)}", f"+44 161 {d(3)} {d(4)}", f"01632 {d(6)}"])
        if country == "DE":
            return p([f"030 {d(8, '123456789')}", f"+49 30 {d(8, '123456789')}", f"0151 {d(8)}",
                      f"+49 151 {d(8)}", f"089/{d(7, '123456789')}", f"(030) {d(7, '123456789')}",
                      f"0171 {d(3)} {d(4)}", f"+49 (0)30 {d(8, '123456789')}"])
        if country == "FR":
            pairs = " ".join(d(2) for _ in range(4))
            dots = ".".join(d(2) for _ in range(4))
            return p([f"01 {pairs}", f"06 {pairs}", f"07 {pairs}", f"+33 1 {pairs}", f"+33 6 {pairs}",
                      f"06.{dots}", f"04 {pairs}"])
        if country == "IN":
            m = d(5, "6789")
            return p([f"+91 {m} {d(5)}", f"{m} {d(5)}", f"+91-{m}-{d(5)}", f"0{m} {d(5)}", f"+91 {m}{d(5)}",
                      f"{m}-{d(5)}"])
        if country == "BR":
            ddd = d(2, "123456789")[0] + d(1, "123456789")
            return p([f"({ddd}) 9{d(4)}-{d(4)}", f"+55 {ddd} 9{d(4)}-{d(4)}", f"({ddd}) {d(4, '2345')}-{d(4)}",
                      f"+55 ({ddd}) 9{d(4)}-{d(4)}", f"{ddd} 9{d(4)}-{d(4)}"])
        # E.164, compact
        return p([f"+1{d(3, '23456789')}{d(3, '23456789')}{d(4)}", f"+44{d(10, '127')}", f"+4915{d(9)}",
                  f"+336{d(8)}", f"+5511{d(9)}", f"+91{d(10, '6789')}", f"+3162{d(7)}"])

    def card(self) -> str:
        kind = self.pick(["visa16", "mastercard", "amex", "discover", "jcb16", "visa16"])
        number = self.fake.credit_card_number(card_type=kind)
        style = self.pick(["plain", "space", "dash"])
        if style == "plain":
            return number
        sep = " " if style == "space" else "-"
        if len(number) == 15:
            return sep.join([number[:4], number[4:10], number[10:]])
        return sep.join(number[i:i + 4] for i in range(0, len(number), 4))

    def iban(self) -> str:
        value = self.pick(list(self.locales.values())).iban()
        if self.rng.random() < 0.5:
            return " ".join(value[i:i + 4] for i in range(0, len(value), 4))
        return value

    def ip(self) -> tuple[str, str]:
        r = self.rng.random()
        if r < 0.35:
            return self.fake.ipv4_public(), "IPv4"
        if r < 0.55:
            return self.fake.ipv4_private(), "IPv4"
        v6 = ipaddress.IPv6Address(self.fake.ipv6())
        if self.rng.random() < 0.3:
            v6 = ipaddress.IPv6Address("2001:db8::" + ":".join(f"{self.rng.randrange(65536):x}" for _ in range(2)))
        return (v6.compressed if self.rng.random() < 0.6 else v6.exploded), "IPv6"

    def jwt(self) -> str:
        def b64(obj) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

        head = b64({"alg": self.pick(["HS256", "RS256"]), "typ": "JWT"})
        body = b64({"sub": self.digits(8), "name": self.fake.name(), "iat": 1700000000 + self.rng.randrange(10**7)})
        return f"{head}.{body}.{self.chars(43, string.ascii_letters + string.digits + '-_')}"

    def pem(self) -> str:
        kind = self.pick(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
        lines = [self.chars(64, string.ascii_letters + string.digits + "+/") for _ in range(self.rng.randint(3, 8))]
        return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----"

    def password(self) -> str:
        return self.fake.password(length=self.rng.randint(8, 16), special_chars=True, digits=True,
                                  upper_case=True, lower_case=True)

    def generic_secret(self) -> str:
        """A key without a vendor prefix: AWS-style base64, hex-free alphanumerics, url-safe, or a password."""
        kind = self.pick(["b64_40", "alnum", "urlsafe", "password"])
        if kind == "b64_40":
            return self.chars(40, B64 + "/+")
        if kind == "alnum":
            return self.chars(self.rng.randint(20, 48))
        if kind == "urlsafe":
            return self.chars(self.rng.randint(24, 64), B64 + "-_")
        return self.password()

    # -- positive sentences ---------------------------------------------------------------------
    def positive(self, entity: str, subtype: str | None = None) -> Sample:
        b = _Builder()
        name = self.fake.first_name()
        opener = self.pick(["", "Hi, ", "Hello team, ", f"Hi, this is {name}. ", "Quick question: ", "Urgent: "])
        b.text(opener)
        neg = self.negative_clause() if self.rng.random() < 0.4 else ""
        if entity == "EMAIL":
            v = self.pick([self.fake.email(), self.fake.free_email(), self.fake.company_email(),
                           (f"{name.lower()}.{self.fake.last_name().lower()}+{self.pick(['support', 'shop'])}@"
                            f"{self.fake.domain_name(2)}")])
            t = self.pick(["please send the receipt to {} instead.", "my login email is {}", "contact me at {}, thanks",
                           "the account under {} is locked.", "Email: {}"])
            self._fill(b, t, v, "EMAIL", "email")
        elif entity == "PHONE":
            v = self.phone(subtype)
            t = self.pick(["you can call me on {} after 5pm.", "my number is {}", "Phone: {}",
                           "please update my phone to {}.", "reach me at {} if anything changes",
                           "text {} when the courier is close"])
            self._fill(b, t, v, "PHONE", subtype)
        elif entity == "CREDIT_CARD":
            t = self.pick(["I was charged twice on card {}.", "please refund to {}", "card number {} exp 09/27",
                           "Can you remove the card ending in... actually the full number is {}"])
            self._fill(b, t, self.card(), "CREDIT_CARD", "card")
        elif entity == "IBAN":
            t = self.pick(["please wire the refund to IBAN {}.", "my bank account: {}", "IBAN {} (Sparkasse)",
                           "new payout account is {}"])
            self._fill(b, t, self.iban(), "IBAN", "iban")
        elif entity == "US_SSN":
            v = self.fake.ssn()
            if self.rng.random() < 0.15:
                v = v.replace("-", " ")
            t = self.pick(["my SSN is {} for the tax form.", "social security number: {}",
                           "the W-9 lists {} as the SSN", "verify me with {}"])
            self._fill(b, t, v, "US_SSN", "ssn")
        elif entity == "IP_ADDRESS":
            v, sub = self.ip()
            t = self.pick(["requests from {} are blocked.", "my server IP is {}", "we whitelisted {} yesterday",
                           "login attempt from {} at 10:22", "ssh to {} fails"])
            self._fill(b, t, v, "IP_ADDRESS", sub)
        elif entity == "URL_CREDENTIALS":
            user = self.fake.user_name()
            pw = self.chars(self.rng.randint(8, 16), string.ascii_letters + string.digits + "!$*_-")
            scheme = self.pick(["https", "postgres", "mysql", "ftp", "redis", "amqp"])
            url = f"{scheme}://{user}:{pw}@{self.fake.domain_name()}/{self.fake.uri_path()}"
            start = len(scheme) + 3
            t = self.pick(["the webhook posts to {} and fails", "connection string: {}", "I set DATABASE_URL={}"])
            pre, post = t.split("{}")
            b.text(pre).value(url, "URL_CREDENTIALS", "url", (start, start + len(user) + 1 + len(pw))).text(post)
        elif entity in _SECRET_MAKERS:
            v = _SECRET_MAKERS[entity](self)
            t = self.pick(_SECRET_TEMPLATES.get(entity, _GENERIC_SECRET_TEMPLATES))
            if entity == "BEARER_TOKEN":
                pre, post = t.split("{}")
                b.text(pre).value(v, entity, entity.lower()).text(post)
            else:
                self._fill(b, t, v, entity, entity.lower())
        elif entity == "GENERIC_SECRET":
            v = self.generic_secret()
            t = self.pick(_GENERIC_SECRET_SENTENCES)
            self._fill(b, t, v, "GENERIC_SECRET", "generic")
        elif entity == "CREDENTIAL":
            v = self.password()
            t = self.pick(["my password is {} and it stopped working", "password={}", "login: admin, pwd: {}",
                           "the client_secret: {} was rotated", "\"password\": \"{}\"", "set secret={} in the env",
                           "API_KEY={}"])
            self._fill(b, t, v, "CREDENTIAL", "credential")
        else:
            raise ValueError(entity)
        if neg:
            b.text(" " + neg)
        return b.build()

    def _fill(self, b: _Builder, template: str, value: str, entity: str, subtype: str) -> None:
        pre, post = template.split("{}")
        b.text(pre).value(value, entity, subtype).text(post)

    # -- hard negatives -------------------------------------------------------------------------
    def negative_clause(self) -> str:
        d, p, f = self.digits, self.pick, self.fake
        kind = p(["order", "date", "timestamp", "uuid", "version", "price", "tracking", "misc", "credctx", "image"])
        if kind == "credctx":  # a credential word right before something that is not a secret
            return p([f"the key for commit {self.chars(40, '0123456789abcdef')} is wrong",
                      f"token id {f.uuid4()} expired", f"API key {f.uuid4()} was revoked",
                      f"the token expired at {f.date_time_between(_START, _END).isoformat()}Z",
                      f"key version {self.rng.randint(1, 9)}.{self.rng.randint(0, 30)}.{self.rng.randint(0, 99)}",
                      f"the secret sha256 {self.chars(64, '0123456789abcdef')} matches",
                      f"password reset for order ORD-{f.year()}-{d(6)}",
                      f"token for ticket INC{d(7)} please", f"key tracking number 1Z{self.chars(6, string.ascii_uppercase + string.digits)}{d(10)}",
                      f"mi clave de pedido es {d(10)}", f"Passwort vergessen seit {f.date_time_between(_START, _END):%d.%m.%Y}",
                      f"auth header missing on build {self.rng.randint(100, 9999)}",
                      f"the keyboard model KB{d(4)} and monkey {d(3)}"])
        if kind == "image":  # base64 image data, no credential word before it
            blob = self.chars(self.rng.randint(60, 400), B64 + "+/")
            return p([f"screenshot: data:image/png;base64,iVBORw0KGgo{blob}==", f"attached image/jpeg;base64,/9j/4AAQ{blob}"])
        if kind == "order":
            return p([f"Order ORD-{f.year()}-{d(6)} still hasn't shipped.", f"order #{d(8)} arrived damaged",
                      f"Amazon order {d(3, '123456789')}-{d(7)}-{d(7)} is missing", f"ticket INC{d(7)} was closed",
                      f"invoice INV-{d(5)} is wrong", f"my customer number is {d(9, '12345')}",
                      f"reference {d(10, '1')}", f"PO {d(6)}-{d(2)}"])
        if kind == "date":
            dt = f.date_time_between(_START, _END)
            return p([f"it happened on {dt:%Y-%m-%d}", f"since {dt:%d/%m/%Y}", f"on {dt:%B %d, %Y}",
                      f"last charge {dt:%d.%m.%Y}", f"delivery date {dt:%m/%d/%y}", f"due {dt:%d %b %Y}"])
        if kind == "timestamp":
            dt = f.date_time_between(_START, _END)
            ts = int(dt.timestamp())
            return p([f"at {dt.isoformat()}Z", f"log time {ts}", f"event ts={ts}{d(3)}", f"at {dt:%Y-%m-%d %H:%M:%S}",
                      f"error at {dt:%H:%M:%S}.{d(3)}", f"at {dt:%Y-%m-%dT%H:%M:%S}.{d(6)}+00:00"])
        if kind == "uuid":
            u = f.uuid4()
            return p([f"request id {u}", f"session {u.upper()}", f"trace {u.replace('-', '')}"])
        if kind == "version":
            return p([f"app version {self.rng.randint(1, 20)}.{self.rng.randint(0, 30)}.{self.rng.randint(0, 99)}",
                      f"on v{self.rng.randint(1, 9)}.{self.rng.randint(0, 20)}.{self.rng.randint(0, 9)}",
                      (f"firmware {self.rng.randint(1, 9)}.{self.rng.randint(0, 9)}.{self.rng.randint(0, 9)}."
                       f"{self.rng.randint(0, 99)}"),
                      f"build 10.0.{self.rng.randint(10000, 22631)}.{self.rng.randint(1, 4000)}",
                      f"Python 3.{self.rng.randint(8, 13)}.{self.rng.randint(0, 12)}",
                      (f"version {self.rng.randint(1, 9)}.{self.rng.randint(0, 9)}.{self.rng.randint(0, 9)}."
                       f"{self.rng.randint(0, 9)}")])
        if kind == "price":
            amount = self.rng.randint(1, 500000) / 100
            return p([f"I paid ${amount:,.2f}", f"refund of €{amount:.2f}", f"total USD {amount:.2f}",
                      f"£{amount:,.2f} was taken", f"price {amount:.2f} EUR", f"{int(amount):,} INR per month"])
        if kind == "tracking":
            return p([f"UPS tracking 1Z{self.chars(6, string.ascii_uppercase + string.digits)}{d(10)}",
                      f"USPS {d(4, '9')} {d(4)} {d(4)} {d(4)} {d(4)} {d(2)}", f"USPS tracking 9400{d(18)}",
                      f"FedEx {d(12, '7')}", f"FedEx {d(4, '7')} {d(4)} {d(4)}", f"DHL JD{d(18)}",
                      f"Royal Mail {self.chars(2, string.ascii_uppercase)}{d(9)}GB"])
        return p([f"commit {self.chars(40, '0123456789abcdef')}", f"zip {d(5, '123456789')}-{d(4)}",
                  f"port {self.rng.randint(1024, 65535)}", f"HTTP {self.pick(['404', '500', '502'])}",
                  f"about {self.rng.randint(2, 99)}% of the time", f"account ACC-{d(6)}",
                  f"mac {':'.join(self.chars(2, '0123456789ABCDEF') for _ in range(6))}",
                  f"sku {self.chars(3, string.ascii_uppercase)}-{d(4)}-{d(2)}",
                  f"model XPS {d(4)}", f"{self.rng.randint(1, 12)}:{self.rng.randint(10, 59)} pm",
                  f"room {d(3)}, floor {self.rng.randint(1, 40)}", "the token has expired",
                  "the password is incorrect", "I lost my bearer bond certificate"])

    def negative(self) -> Sample:
        b = _Builder()
        b.text(self.pick(["", "Hi, ", "Hello, ", "Thanks! ", "Still waiting: "]))
        b.text(self.negative_clause())
        if self.rng.random() < 0.5:
            b.text(" and " + self.negative_clause())
        b.text(self.pick([".", "", " - please help.", " Any update?"]))
        return b.build()

    def corpus(self, per_entity: int = 200, per_phone_country: int = 80, negatives: int = 2000) -> list[Sample]:
        out: list[Sample] = []
        for entity in ENTITIES:
            if entity == "PHONE":
                for country in PHONE_COUNTRIES:
                    out.extend(self.positive("PHONE", country) for _ in range(per_phone_country))
            else:
                out.extend(self.positive(entity) for _ in range(per_entity))
        out.extend(self.negative() for _ in range(negatives))
        self.rng.shuffle(out)
        return out


B64 = string.ascii_letters + string.digits
_SECRET_MAKERS = {
    "OPENAI_KEY": lambda g: g.pick([f"sk-{g.chars(48)}", f"sk-proj-{g.chars(120, B64 + '_-')}",
                                    f"sk-svcacct-{g.chars(90, B64 + '_-')}"]),
    "ANTHROPIC_KEY": lambda g: f"sk-ant-api03-{g.chars(93, B64 + '_-')}AA",
    "AWS_ACCESS_KEY_ID": lambda g: g.pick(["AKIA", "ASIA"]) + g.chars(16, string.ascii_uppercase + "234567"),
    "AWS_SECRET_KEY": lambda g: g.chars(40, B64 + "/+"),
    "GITHUB_TOKEN": lambda g: g.pick([f"ghp_{g.chars(36)}", f"github_pat_{g.chars(22)}_{g.chars(59)}",
                                      f"gho_{g.chars(36)}"]),
    "SLACK_TOKEN": lambda g: f"{g.pick(['xoxb', 'xoxp', 'xoxa'])}-{g.digits(11)}-{g.digits(12)}-{g.chars(24)}",
    "STRIPE_KEY": lambda g: f"{g.pick(['sk_live_', 'rk_live_', 'sk_test_'])}{g.chars(g.rng.randint(24, 99))}",
    "GOOGLE_API_KEY": lambda g: f"AIza{g.chars(35, B64 + '_-')}",
    "JWT": lambda g: g.jwt(),
    "BEARER_TOKEN": lambda g: g.chars(g.rng.randint(24, 64), B64 + "-._~"),
    "PRIVATE_KEY": lambda g: g.pem(),
}
_GENERIC_SECRET_TEMPLATES = ["my key {} stopped working", "here is the key: {}", "I accidentally pasted {} in chat",
                             "config has {} - is that safe?", "export KEY=\"{}\""]
_SECRET_TEMPLATES = {
    "AWS_SECRET_KEY": ["aws_secret_access_key = {}", "AWS secret key: {}", "my secret access key is {}",
                       "AWS_SECRET_ACCESS_KEY={} in the .env"],
    "BEARER_TOKEN": ["curl -H 'Authorization: Bearer {}' fails", "Authorization: Bearer {}",
                     "I send bearer {} in the header"],
    "PRIVATE_KEY": ["here is the key file:\n{}\nwhy is it rejected?", "{}"],
    "JWT": ["the session cookie is {}", "token {} is rejected", "Authorization header: JWT {}"],
}

ENTITIES = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS", "URL_CREDENTIALS", "OPENAI_KEY",
            "ANTHROPIC_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_KEY", "GITHUB_TOKEN", "SLACK_TOKEN", "STRIPE_KEY",
            "GOOGLE_API_KEY", "JWT", "BEARER_TOKEN", "PRIVATE_KEY", "CREDENTIAL", "GENERIC_SECRET")
#: keys with no vendor prefix after a credential word, in several languages (no "password:" pairs:
#: those are CREDENTIAL's)
_GENERIC_SECRET_SENTENCES = [
    "I pasted my key `{}` into the settings", "Authorization failed with token `{}`",
    "the token {} stopped working yesterday", "my API key {} returns 401", "the client credential {} leaked in the logs?",
    "here is my new password {} please reset", "credentials {} do not work",
    "mi clave {} no funciona", "mi contraseña nueva {} no sirve", "la mia chiave {} è scaduta",
    "mon mot de passe {} ne marche pas", "ma clé {} est refusée", "mein Passwort {} geht nicht",
    "der Schlüssel {} wurde abgelehnt", "minha senha {} não funciona", "мой токен {} не работает",
    "ваш пароль {} устарел", "het wachtwoord {} klopt niet", "我的密码 {} 不能用",
]
PHONE_COUNTRIES = ("US", "UK", "DE", "FR", "IN", "BR", "E164")


@pytest.fixture(autouse=True)
def _own_config_dir(tmp_path, monkeypatch):
    """The pseudonym key goes to the test's own config directory, never the real home."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("APPDATA", str(tmp_path / "config"))


@pytest.fixture(scope="session")
def python_engine(tmp_path_factory):
    """This checkout's redact package imported from its ``.py`` files under another name (no compiled module is beside
    them there, nor the build record), when the installed engine runs compiled; else None (it runs as Python)."""
    import importlib.util
    import shutil
    import sys
    from pathlib import Path

    import dspy_tracekit_redact

    if not dspy_tracekit_redact.COMPILED:
        return None
    pkg = tmp_path_factory.mktemp("python_engine") / "redact_as_python"
    pkg.mkdir()
    for path in Path(dspy_tracekit_redact.__file__).parent.glob("*.py"):
        if path.name != "_compiled_from.py":
            shutil.copy(path, pkg / path.name)
    spec = importlib.util.spec_from_file_location(pkg.name, pkg / "__init__.py", submodule_search_locations=[str(pkg)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[pkg.name] = module
    spec.loader.exec_module(module)
    assert not module.COMPILED and module._redactor.__file__.endswith(".py")
    return module


@pytest.fixture(scope="session")
def corpus() -> list[Sample]:
    return CorpusGenerator().corpus()


def _prose(seed: int, n: int) -> list[str]:
    """Support-like prose this project did not write: Faker paragraphs, some with an identifier in them."""
    fake = Faker()
    fake.seed_instance(seed)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = fake.paragraph(nb_sentences=rng.randint(2, 6)).split()
        if rng.random() < 0.5:
            words.insert(rng.randrange(len(words)), rng.choice([
                fake.hostname(), fake.uri(), fake.file_path(), fake.isbn13(), fake.sha1(), fake.uuid4(),
                fake.date(), fake.time(), fake.email(), fake.phone_number(), fake.ipv4(), fake.iban(),
                fake.credit_card_number(), fake.ssn(), fake.password(), rng.choice(["token", "key", "password"])]))
        out.append(" ".join(words))
    return out


def regression_texts(corpus: list[Sample]) -> list[str]:
    """The texts on which a faster redactor must find exactly what the slower one finds: the labeled
    corpus, ChatAdapter-shaped prompts made of it, its sentences with non-ASCII characters mixed in
    (accents, ``€``, ``İ``, ``ſ``, the Kelvin sign, non-breaking and ideographic spaces, Arabic-Indic
    digits), the same without digits, ``@`` and ``:``, and Faker prose with and without values."""
    import re

    sentences = [s.text for s in corpus]
    rng = random.Random(SEED)
    prompts = ["[[ ## message ## ]]\n" + " ".join(sentences[i:i + 14]) + "\n\n[[ ## completed ## ]]"
               for i in range(0, len(sentences) - 14, 7)]
    oddities = ["é", "€", "İ", "ſ", "\u212a", "\xa0", "\u3000", "٣", "—", "😀", "ñ", "ü", "\ud800"]
    mixed = []
    for t in sentences:
        chars = list(t)
        for _ in range(rng.randint(1, 3)):
            chars.insert(rng.randrange(len(chars) + 1), rng.choice(oddities))
        mixed.append("".join(chars))
    stripped = [re.sub(r"[\d@:]", "", t) for t in sentences]
    return sentences + prompts + mixed + stripped + _prose(SEED, 6000) + _prose(SEED + 1, 1500)


@pytest.fixture(scope="session")
def regression_set(corpus) -> list[str]:
    return regression_texts(corpus)


@pytest.fixture(scope="session")
def corpus_generator() -> type[CorpusGenerator]:
    return CorpusGenerator


# ----------------------------------------------------------------------------------------------
# tracing fixtures (the core's tests/conftest.py does not reach plugins/)
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh working directory and SQLite store; tracing and MLflow's globals reset afterwards."""
    import os

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    for key in list(os.environ):
        if key.startswith("DSPY_TRACEKIT_"):
            monkeypatch.delenv(key)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tmp_path / "mlflow.db"
    yield path
    import dspy
    import mlflow.tracing

    import dspy_tracekit as tk

    tk.disable()
    dspy.configure(lm=None, callbacks=[])
    mlflow.tracing.configure(span_processors=[])
    # MLflow's own exporter (mlflow_traces = "dspy") holds this folder's ./mlflow.db, and a test may have told
    # MLflow a store (mlflow.set_tracking_uri): the next test gets its own, as in the core's tests
    mlflow.tracing.reset()
    from tk_testing import forget_relative_sqlite_stores  # tests/ is on pythonpath

    from dspy_tracekit.mlflow._compat import forget_mlflow_destination

    forget_mlflow_destination()
    forget_relative_sqlite_stores()


def store_bytes(path) -> bytes:
    """Every byte under the store's directory: the SQLite file, its journal/WAL, MLflow's artifact
    directories and any spool. Fails if the SQLite file itself is missing (nothing was tested)."""
    assert path.exists(), f"no store at {path}"
    return b"".join(p.read_bytes() for p in sorted(path.parent.rglob("*")) if p.is_file())


def encodings(value: str) -> list[bytes]:
    """The forms a value can take in the store: plain, JSON-escaped (once and twice), ASCII-escaped."""
    out = {value}
    once = json.dumps(value)[1:-1]
    out.add(once)
    out.add(json.dumps(once)[1:-1])
    out.add(json.dumps(value, ensure_ascii=True)[1:-1])
    return [v.encode() for v in out]


def leaks(path, values) -> list[str]:
    data = store_bytes(path)
    return [v for v in values if any(e in data for e in encodings(v))]


@pytest.fixture
def scan():
    """``scan.leaks(path, values)`` / ``scan.store_bytes(path)`` as a fixture (helpers are not importable:
    the name ``conftest`` is taken by the core's tests on the import path)."""
    import types

    return types.SimpleNamespace(leaks=leaks, store_bytes=store_bytes)
