"""The intent-detection demo: the application dspy-tracekit comes from."""
