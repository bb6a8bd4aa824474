"""``python -m dspy_tracekit.cli``: the ``dspy-tracekit`` command."""

from dspy_tracekit.cli import main

main()
