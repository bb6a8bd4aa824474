"""The layout keeps its promises (issue #11 §7): plugins use only the public API, names live once."""

from __future__ import annotations

import ast
import pathlib
import re

import dspy_tracekit
from dspy_tracekit import keys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC = pathlib.Path(dspy_tracekit.__file__).parent
PLUGIN_SOURCES = sorted(p for p in ROOT.glob("plugins/*/src/**/*.py"))
#: what a plugin (ours or a third party's) may import from the core
PUBLIC_MODULES = {"dspy_tracekit", "dspy_tracekit.config", "dspy_tracekit.delivery", "dspy_tracekit.errors",
                  "dspy_tracekit.hookspecs", "dspy_tracekit.keys", "dspy_tracekit.records"}


def _core_imports(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("dspy_tracekit"):
            if node.module.split(".")[0] == "dspy_tracekit":
                yield node.module, [a.name for a in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "dspy_tracekit":
                    yield a.name, [], node.lineno


def test_the_plugins_import_only_the_public_api():
    assert PLUGIN_SOURCES, "no plugin sources found"
    offenders = []
    for path in PLUGIN_SOURCES:
        text = path.read_text()
        for module, names, line in _core_imports(path):
            private_names = [n for n in names if n.startswith("_")]
            if module not in PUBLIC_MODULES or private_names:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {module} {private_names or ''}")
        # private core names reached through an attribute (getattr(records, "_rand"), tk._state)
        for m in re.finditer(r"\b(?:tk|dspy_tracekit|records|delivery|hookspecs|config|errors|keys)\._[a-z]\w*"
                             r"|getattr\((?:tk|records|delivery|config)\s*,\s*[\"']_", text):
            offenders.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert offenders == []


def test_every_trace_key_is_spelled_once():
    """Attribute and tag names are written as literals only in dspy_tracekit.keys."""
    values = {name: value for name, value in vars(keys).items() if name.isupper() and isinstance(value, str)}
    assert len(values) >= 15
    sources = [p for p in [*SRC.rglob("*.py"), *PLUGIN_SOURCES] if p != pathlib.Path(keys.__file__)]
    repeated = []
    for path in sources:
        text = path.read_text()
        for name, value in values.items():
            if f'"{value}"' in text or f"'{value}'" in text:
                repeated.append(f"{path.name}: {name} = {value!r}")
    assert repeated == []


def test_one_reading_of_the_sampling_tag():
    """The analytics and the sample plugin weigh a trace by the same probability, whatever the tag says."""
    from dspy_tracekit_sample import sampling_probability as plugin_reading

    from dspy_tracekit.analytics import sampling_probability as analytics_reading

    for value in ("0.25", "1", "1.0", "0", "-0.5", "1.5", "nan", "inf", "garbage", "", None):
        tags = {} if value is None else {keys.SAMPLING_PROBABILITY_TAG: value}
        assert (analytics_reading(tags) or 1.0) == plugin_reading(tags), value
    assert plugin_reading({keys.SAMPLING_PROBABILITY_TAG: "0.25"}) == 0.25


def test_one_list_of_credential_keys():
    """The core's masking and the redact plugin's secret keys start from the same list."""
    from dspy_tracekit_redact import DEFAULT_SECRET_KEYS

    from dspy_tracekit._delivery import secrets

    assert keys.CREDENTIAL_KEYS <= DEFAULT_SECRET_KEYS
    assert secrets.SECRET_KEYS is keys.CREDENTIAL_KEYS
    for key in ("API-Key", "db_password", "stripe_api_key", "Authorization", "x_goog_api_key"):
        assert secrets.is_secret_key(key), key
    assert not secrets.is_secret_key("message")


def test_the_packages_show_the_two_paths():
    """A newcomer finds the request path, the delivery path, MLflow, analytics and the CLI as packages."""
    for package in ("_request", "_delivery", "mlflow", "analytics", "cli"):
        assert (SRC / package / "__init__.py").is_file(), package
    flat = sorted(p.name for p in SRC.glob("*.py"))
    assert not [n for n in flat if n.startswith(("mlflow_", "analytics_", "cli_"))], flat
    assert not (SRC / "analytics.py").exists() and not (SRC / "cli.py").exists()
