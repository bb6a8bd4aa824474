"""dspy-tracekit plugin: redact."""
