"""dspy-tracekit plugin: the tenant's name on every span and on every trace."""

from dspy_tracekit import hookimpl

_tenant = "unknown"


@hookimpl
def tracekit_configure(config, settings):
    """``[tool.dspy-tracekit.tenant] name = "acme"``, or ``DSPY_TRACEKIT_TENANT_NAME=acme``."""
    global _tenant
    name = config.get("name", "unknown")
    if not isinstance(name, str) or not name:
        raise ValueError(f"tenant.name must be a non-empty string, got {name!r}")
    _tenant = name


@hookimpl
def tracekit_span_start(span):
    span.set_attribute("tenant", _tenant)  # request path: one dict write, nothing more


@hookimpl
def tracekit_process_trace(trace):
    trace.tags["tenant"] = _tenant  # trace tags are searchable: --filter "tag.tenant = 'acme'"
