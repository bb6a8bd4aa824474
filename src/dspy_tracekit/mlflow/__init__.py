"""MLflow: the core export plugin, translation, interop with MLflow's own spans, the store fast path.

Every private MLflow / OpenTelemetry symbol is reached through :mod:`dspy_tracekit.mlflow._compat`.
"""
