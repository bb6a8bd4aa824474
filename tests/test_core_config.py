"""Configuration: files, environment, arguments, and clear errors naming the key and the file."""

from __future__ import annotations

import dspy
import pytest
from tk_testing import dummy_lm

import dspy_tracekit as tk
from dspy_tracekit import _state
from dspy_tracekit.errors import ConfigError


def _write(path, text):
    path.write_text(text)
    return path


def test_pyproject_table_configures_plugins_store_and_experiment(tmp_path, store_uri):
    _write(tmp_path / "pyproject.toml", f"""
[project]
name = "app"
[tool.dspy-tracekit]
plugins = ["sample"]
tracking_uri = "{store_uri}"
experiment = "from-file"
[tool.dspy-tracekit.sample]
ratio = 1.0
""")
    assert tk.enable()
    assert _state.settings.experiment == "from-file"
    assert _state.settings.tracking_uri == store_uri
    assert "sample" in _state.settings.plugins
    assert _state.settings.sources["experiment"].endswith("pyproject.toml")


def test_dspy_tracekit_toml_is_found_from_a_subdirectory(tmp_path, monkeypatch, store_uri):
    _write(tmp_path / "dspy-tracekit.toml", f'experiment = "own-file"\ntracking_uri = "{store_uri}"\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    tk.enable(plugins=[])
    assert _state.settings.experiment == "own-file"


def test_environment_overrides_file_and_arguments_override_both(tmp_path, monkeypatch, store_uri):
    _write(tmp_path / "dspy-tracekit.toml", f'experiment = "file"\ntracking_uri = "{store_uri}"\n')
    monkeypatch.setenv("DSPY_TRACEKIT_EXPERIMENT", "env")
    tk.enable(plugins=[])
    assert _state.settings.experiment == "env"
    tk.disable()
    tk.enable(plugins=[], experiment="arg")
    assert _state.settings.experiment == "arg"


def test_plugin_table_from_environment_reaches_the_plugin(monkeypatch, store_uri):
    monkeypatch.setenv("DSPY_TRACEKIT_SAMPLE_RATIO", "1.5")
    with pytest.raises(ConfigError) as info:
        tk.enable(plugins=["sample"], tracking_uri=store_uri)
    assert "ratio" in str(info.value) and "DSPY_TRACEKIT_SAMPLE_RATIO" in str(info.value)


def test_unknown_plugin_lists_the_installed_ones(store_uri):
    with pytest.raises(ConfigError) as info:
        tk.enable(plugins=["no-such-plugin"], tracking_uri=store_uri)
    message = str(info.value)
    assert "no-such-plugin" in message
    for name in ("redact", "sample", "cost", "buffer"):
        assert name in message
    assert _state.manager is None


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    path = _write(tmp_path / "dspy-tracekit.toml", 'experimnet = "typo"\n')
    with pytest.raises(ConfigError) as info:
        tk.enable()
    assert "experimnet" in str(info.value) and str(path) in str(info.value)


def test_wrong_type_names_the_key_and_the_file(tmp_path):
    path = _write(tmp_path / "dspy-tracekit.toml", 'plugins = ["redact"]\nflush_timeout = "soon"\n')
    with pytest.raises(ConfigError) as info:
        tk.enable()
    assert "flush_timeout" in str(info.value) and str(path) in str(info.value)


def test_unreadable_config_file_is_reported(tmp_path):
    path = _write(tmp_path / "dspy-tracekit.toml", "plugins = [unclosed\n")
    with pytest.raises(ConfigError) as info:
        tk.enable()
    assert str(path) in str(info.value) and "TOML" in str(info.value)


def test_table_for_a_plugin_that_is_not_installed(tmp_path):
    _write(tmp_path / "dspy-tracekit.toml", "[redactor]\nx = 1\n")
    with pytest.raises(ConfigError) as info:
        tk.enable()
    assert "redactor" in str(info.value) and "installed plugins" in str(info.value)


def test_unknown_environment_setting_is_an_error(monkeypatch):
    monkeypatch.setenv("DSPY_TRACEKIT_EXPERIMNET", "x")
    with pytest.raises(ConfigError) as info:
        tk.enable(plugins=[])
    assert "DSPY_TRACEKIT_EXPERIMNET" in str(info.value)


def test_core_plugin_cannot_be_blocked(store_uri):
    with pytest.raises(ConfigError) as info:
        tk.enable(plugins=[], tracking_uri=store_uri, config=None) if False else None
        from dspy_tracekit.manager import TracekitManager

        TracekitManager().load([], blocked=["mlflow"])
    assert "mlflow" in str(info.value)


def test_blocked_plugin_is_not_loaded(monkeypatch, store_uri):
    monkeypatch.setenv("DSPY_TRACEKIT_BLOCKED", "sample")
    tk.enable(plugins=["sample", "cost"], tracking_uri=store_uri)
    assert "sample" not in _state.settings.plugins and "cost" in _state.settings.plugins


@pytest.mark.parametrize("var,value", [("DSPY_TRACEKIT_DISABLE", "1"), ("MLFLOW_ENABLE_TRACING", "false")])
def test_environment_switches_tracing_off(monkeypatch, store_uri, var, value):
    import dspy.primitives.module as module_mod

    before = module_mod.Module.__dict__["__call__"]
    monkeypatch.setenv(var, value)
    assert tk.enable(plugins=[], tracking_uri=store_uri) is False
    assert _state.manager is None
    assert module_mod.Module.__dict__["__call__"] is before  # nothing instrumented: zero cost
    dspy.configure(lm=dummy_lm())
    dspy.Predict("message -> intent")(message="x")
    assert tk.counters() == {}


def test_default_store_is_sqlite_mlflow_db_in_working_directory(tmp_path):
    tk.enable(plugins=[])
    assert _state.settings.tracking_uri == "sqlite:///mlflow.db"


def test_bad_mlflow_traces_value_fails_enable_naming_key_value_and_source(monkeypatch):
    monkeypatch.setenv("DSPY_TRACEKIT_MLFLOW_TRACES", "some")
    with pytest.raises(ConfigError, match=r"'mlflow_traces' must be \"all\" or \"dspy\", got 'some' "
                                          r"\(environment variable DSPY_TRACEKIT_MLFLOW_TRACES\)"):
        tk.enable(plugins=[])


# ---------------------------------------------------------------- configuration fails closed (#11 §4)


def test_invalid_toml_in_pyproject_stops_enable_naming_the_file_and_line(tmp_path):
    path = _write(tmp_path / "pyproject.toml", '[project]\nname = "app"\n[tool.dspy-tracekit]\n'
                                               'plugins = ["redact"\n[tool.dspy-tracekit.redact]\n')
    with pytest.raises(ConfigError) as info:
        tk.enable()
    assert f"{path}:5" in str(info.value) and "not valid TOML" in str(info.value)
    assert _state.manager is None


def test_an_unrelated_broken_pyproject_further_up_is_skipped(tmp_path, monkeypatch, store_uri):
    _write(tmp_path / "pyproject.toml", '[project\nname = "other"\n')
    sub = tmp_path / "app"
    sub.mkdir()
    _write(sub / "dspy-tracekit.toml", f'tracking_uri = "{store_uri}"\nexperiment = "own"\n')
    monkeypatch.chdir(sub)
    assert tk.enable(plugins=[])
    assert _state.settings.experiment == "own"


def test_doctor_reports_invalid_toml_as_a_problem_not_ok(tmp_path):
    from click.testing import CliRunner

    from dspy_tracekit.cli import main

    path = _write(tmp_path / "pyproject.toml", '[tool.dspy-tracekit]\nplugins = ["redact"\n')
    result = CliRunner().invoke(main, ["doctor", "--json"])
    import json

    findings = json.loads(result.output)
    assert findings["ok"] is False
    assert any(str(path) in p and "TOML" in p for p in findings["problems"])


@pytest.mark.parametrize("line, key, shown", [
    ("flush_timeout = -1", "flush_timeout", "-1"),
    ("flush_timeout = nan", "flush_timeout", "nan"),
    ('plugins = "redact"', "plugins", "'redact'"),
    ('mlflow_traces = "some"', "mlflow_traces", "'some'"),
    ('cpu_time = "maybe"', "cpu_time", "'maybe'"),
    ('tracking_uri = "bogus://x"', "tracking_uri", "'bogus://x'"),
])
def test_bad_core_value_in_the_file_stops_enable_naming_key_value_and_file(tmp_path, line, key, shown):
    path = _write(tmp_path / "dspy-tracekit.toml", line + "\n")
    with pytest.raises(ConfigError) as info:
        tk.enable()
    message = str(info.value)
    assert f"'{key}'" in message and shown in message and str(path) in message, message
    assert _state.manager is None


@pytest.mark.parametrize("table, key, shown", [
    ('[sample]\nratio = "0.5"', "sample.ratio", "'0.5'"),
    ("[buffer]\nflush_interval = nan", "buffer.flush_interval", "nan"),
    ("[buffer]\nflush_interval = inf", "buffer.flush_interval", "inf"),
    ("[buffer]\nexit_timeout = inf", "buffer.exit_timeout", "inf"),
    ('[buffer]\nspool_required = "perhaps"', "buffer.spool_required", "'perhaps'"),
])
def test_bad_plugin_value_in_the_file_stops_enable_naming_key_value_and_file(tmp_path, store_uri, table, key,
                                                                             shown):
    path = _write(tmp_path / "dspy-tracekit.toml",
                  f'plugins = ["sample", "buffer"]\ntracking_uri = "{store_uri}"\n{table}\n')
    with pytest.raises(ConfigError) as info:
        tk.enable()
    message = str(info.value)
    assert key in message and shown in message and str(path) in message, message
    assert _state.manager is None


def test_a_plugin_key_from_the_environment_is_named_with_its_variable_even_in_a_table_from_the_file(
        tmp_path, monkeypatch, store_uri):
    _write(tmp_path / "dspy-tracekit.toml", f'tracking_uri = "{store_uri}"\n[sample]\nratio = 0.5\n')
    monkeypatch.setenv("DSPY_TRACEKIT_SAMPLE_KEEP_ERRORS", "perhaps")
    with pytest.raises(ConfigError, match="DSPY_TRACEKIT_SAMPLE_KEEP_ERRORS"):
        tk.enable(plugins=["sample"])


@pytest.mark.parametrize("var, value", [("DSPY_TRACEKIT_DEBUG", "1"), ("DSPY_TRACEKIT_FAST_STORE", "0"),
                                        ("DSPY_TRACEKIT_DEBUG_HOOKS", "0"), ("DSPY_TRACEKIT_CPU_TIME", "1"),
                                        ("DSPY_TRACEKIT_ENABLED", "yes")])
def test_every_documented_environment_variable_is_a_setting(monkeypatch, store_uri, var, value):
    monkeypatch.setenv(var, value)
    assert tk.enable(plugins=[], tracking_uri=store_uri)


def test_every_dspy_tracekit_variable_named_in_docs_or_source_is_a_schema_key():
    import pathlib
    import re

    from dspy_tracekit.config import CORE_SCHEMA

    root = pathlib.Path(__file__).resolve().parents[1]
    schema_vars = {env for _t, _d, env, _doc in CORE_SCHEMA.values()}
    # plugin settings are DSPY_TRACEKIT_<PLUGIN>_<KEY>: the plugin validates its own keys
    plugin_prefixes = ("DSPY_TRACEKIT_REDACT_", "DSPY_TRACEKIT_SAMPLE_", "DSPY_TRACEKIT_COST_",
                       "DSPY_TRACEKIT_BUFFER_", "DSPY_TRACEKIT_MONITOR_", "DSPY_TRACEKIT_TENANT_")
    files = [*root.joinpath("docs").rglob("*.md"), *root.joinpath("src").rglob("*.py"), root / "README.md"]
    named = set()
    for f in files:
        named.update(re.findall(r"DSPY_TRACEKIT_[A-Z0-9_]*[A-Z0-9]", f.read_text(encoding="utf-8")))
    loose = sorted(v for v in named if v not in schema_vars and not (v + "_").startswith(plugin_prefixes))
    assert loose == []


@pytest.mark.parametrize("value, expected", [("1", True), ("YES", True), ("on", True), ("true", True),
                                             ("0", False), ("No", False), ("off", False), ("false", False)])
def test_one_yes_no_parser_reads_every_documented_spelling(monkeypatch, value, expected):
    from dspy_tracekit.config import env_flag, resolve

    monkeypatch.setenv("DSPY_TRACEKIT_PEAK_MEMORY", value)
    assert resolve(tracking_uri="sqlite:///unused.db").core["peak_memory"] is expected
    assert env_flag("DSPY_TRACEKIT_PEAK_MEMORY") is expected


@pytest.mark.parametrize("var", ["DSPY_TRACEKIT_DISABLE", "DSPY_TRACEKIT_DEBUG_HOOKS", "DSPY_TRACEKIT_FAST_STORE"])
def test_a_yes_no_variable_with_another_value_stops_enable_naming_it(monkeypatch, store_uri, var):
    monkeypatch.setenv(var, "maybe")
    with pytest.raises(ConfigError, match=f"must be true or false.*got 'maybe'.*{var}"):
        tk.enable(plugins=[], tracking_uri=store_uri)


def test_bogus_tracking_uri_argument_stops_enable_without_printing_its_password():
    with pytest.raises(ConfigError) as info:
        tk.enable(plugins=[], tracking_uri="bogus://admin:hunter2@db.example/x")
    assert "bogus://" in str(info.value) and "hunter2" not in str(info.value)
    assert "enable(tracking_uri=...)" in str(info.value)


def test_enable_with_plugins_as_one_string_names_the_mistake(tmp_path, monkeypatch):
    """``enable(plugins="redact")`` is a list of plugin names gone wrong, not plugins 'r', 'e', 'd' …"""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(tk.ConfigError, match=r"list of plugin names.*plugins=\['redact'\]"):
        tk.enable(plugins="redact")
    assert tk.counters() == {}  # nothing was enabled


def test_a_context_value_whose_str_raises_never_breaks_the_program(tmp_path, monkeypatch):
    class Unprintable:
        def __str__(self):
            raise RuntimeError("no text")

    monkeypatch.chdir(tmp_path)
    dspy.configure(lm=dspy.utils.DummyLM([{"answer": "4"}]))
    tk.enable(plugins=[], tracking_uri=f"sqlite:///{tmp_path}/m.db")
    try:
        with tk.context(user_id="u-1", weird=Unprintable()) as tags:
            assert dspy.Predict("question -> answer")(question="2+2?").answer == "4"
        assert tags["weird"] == "<unserializable Unprintable: str() raised RuntimeError>"
        assert tags["user_id"] == "u-1"
        assert tk.flush(30)
    finally:
        tk.disable()
