"""The "write your own plugin" tutorial's example works as the docs say, through the real plugin manager.

The example (``docs/examples/tenant_tag/``) is made discoverable exactly as ``pip install`` would: a
``*.dist-info`` folder whose ``entry_points.txt`` is generated from the example's own ``pyproject.toml``,
put on ``sys.path`` next to the module. So a typo in the entry point, the module or the hooks fails here,
and nothing is installed into the environment.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tk_testing import install_example_plugin

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "tenant_tag"


@pytest.fixture
def tenant_plugin_installed(tmp_path, monkeypatch):
    with install_example_plugin(EXAMPLE, tmp_path / "site", monkeypatch):
        yield


def test_the_example_is_about_twenty_lines():
    code = [ln for ln in (EXAMPLE / "tracekit_tenant.py").read_text().splitlines() if ln.strip()]
    assert len(code) <= 25


def test_tenant_tag_lands_on_every_span_and_the_trace(tenant_plugin_installed, tmp_path):
    import dspy
    from mlflow import MlflowClient

    import dspy_tracekit as tk
    from dspy_tracekit.manager import TracekitManager

    assert "tenant" in TracekitManager.installed_plugins()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tk.enable(plugins=["tenant"], tracking_uri=uri, experiment="tutorial", config={"tenant": {"name": "acme"}})
    try:
        program = dspy.Predict("question -> answer")
        with dspy.context(lm=dspy.utils.DummyLM([{"answer": "42"}])):
            program(question="What is six times seven?")
        assert tk.flush(30)
    finally:
        tk.disable()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tutorial")
    traces = client.search_traces(locations=[experiment.experiment_id], filter_string="tag.tenant = 'acme'")
    assert len(traces) == 1
    spans = traces[0].data.spans
    assert len(spans) >= 3  # Predict, adapter format/parse, LM
    assert {s.attributes.get("tenant") for s in spans} == {"acme"}


def test_bad_tenant_config_stops_enable_naming_the_key(tenant_plugin_installed, tmp_path):
    import dspy_tracekit as tk
    from dspy_tracekit.errors import ConfigError

    with pytest.raises(ConfigError, match="tenant.name"):
        tk.enable(plugins=["tenant"], tracking_uri=f"sqlite:///{tmp_path / 'x.db'}", config={"tenant": {"name": 5}})
    tk.disable()


def test_the_tutorial_stats_filter_finds_the_tenant_traces(tenant_plugin_installed, tmp_path):
    """The tutorial's `dspy-tracekit stats --filter "tag.tenant = 'acme'"`, run as written, finds the trace."""
    import shlex

    import dspy
    from click.testing import CliRunner

    import dspy_tracekit as tk
    from dspy_tracekit.cli import main

    page = (EXAMPLE.parents[1] / "tutorial-plugin.md").read_text()
    (line,) = [ln for ln in page.splitlines() if ln.startswith("dspy-tracekit stats --filter")]
    args = shlex.split(line)[1:]
    tk.enable(plugins=["tenant"], config={"tenant": {"name": "acme"}})  # default store and experiment
    try:
        with dspy.context(lm=dspy.utils.DummyLM([{"answer": "42"}])):
            dspy.Predict("question -> answer")(question="What is six times seven?")
    finally:
        tk.disable()
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "1 trace from 1 stored" in result.stdout
    other = CliRunner().invoke(main, ["stats", "--filter", "tag.tenant = 'other'"])
    assert "No traces match." in other.stdout
