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
    path = _write(tmp_path / "dspy-tracekit.toml", 'plugins = "redact"\nflush_timeout = "soon"\n')
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
