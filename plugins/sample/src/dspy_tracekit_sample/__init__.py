"""dspy-tracekit plugin: sample."""
