"""dspy-tracekit plugin: cost."""
