"""The ``dspy-tracekit`` command line."""

from __future__ import annotations

import os

import click

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at run time


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dspy-tracekit")
def main() -> None:
    """Trace DSPy programs into MLflow, and read the traces back."""


@main.command()
@click.option("--n", "n", default=24, show_default=True, help="How many messages to classify.")
@click.option("--model", default=None, help="A LiteLLM model name (e.g. openai/gpt-4o-mini); needs its API key. "
              "Default: an offline deterministic LM.")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite:///mlflow.db).")
@click.option("--experiment", default="dspy_intent_classification", show_default=True)
@click.option("--plugins", default=None, help="Comma-separated plugins to enable (default: from config).")
@click.option("--seed", default=0, show_default=True, help="Seed for the message mix.")
@click.option("--latency-ms", default=25.0, show_default=True,
              help="Simulated latency of the offline LM per call (0 for none).")
def demo(n, model, tracking_uri, experiment, plugins, seed, latency_ms):
    """Run the intent-detection demo and print the last trace as a tree."""
    from .demo.app import run_demo

    plugin_list = None if plugins is None else [p.strip() for p in plugins.split(",") if p.strip()]
    raise SystemExit(run_demo(n=n, model=model, tracking_uri=tracking_uri, experiment=experiment,
                              plugins=plugin_list, seed=seed, latency_ms=latency_ms))


if __name__ == "__main__":  # pragma: no cover
    main()
