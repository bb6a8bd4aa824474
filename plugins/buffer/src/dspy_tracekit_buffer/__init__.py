"""dspy-tracekit plugin: buffer."""
