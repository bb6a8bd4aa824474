"""The request path: what runs on the calling thread (tracer, DSPy patches, resources)."""
