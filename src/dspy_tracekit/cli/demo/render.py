"""Print a stored MLflow trace as a tree (used by the demo)."""

from __future__ import annotations

import json

from rich.markup import escape
from rich.tree import Tree

from dspy_tracekit.keys import COST_ATTR, TOKEN_USAGE_ATTR


def last_trace(tracking_uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    traces = client.search_traces(locations=[exp.experiment_id], max_results=1, order_by=["timestamp_ms DESC"])
    if not traces:
        return None
    return client.get_trace(traces[0].info.trace_id)


def _label(span) -> str:
    ms = (span.end_time_ns - span.start_time_ns) / 1e6 if span.end_time_ns else 0.0
    dur = f"{ms:.0f}ms" if ms >= 10 else f"{ms:.1f}ms"
    parts = [escape(f"{span.name} ({dur})")]
    attrs = span.attributes
    usage = attrs.get(TOKEN_USAGE_ATTR)
    if isinstance(usage, str):
        usage = json.loads(usage)
    if usage:
        parts.append(f"[dim]{usage.get('input_tokens', 0)}→{usage.get('output_tokens', 0)} tokens[/]")
    cost = attrs.get(COST_ATTR)
    if cost:
        parts.append(f"[dim]${float(cost.get('total_cost', 0)):.6f}[/]")
    if span.status.status_code.value == "ERROR":
        parts.append(f"[red]ERROR {escape(span.status.description or '')}[/]")
    return " ".join(parts)


def render_tree(trace) -> Tree:
    spans = trace.data.spans
    children: dict = {}
    for s in spans:
        children.setdefault(s.parent_id, []).append(s)
    for kids in children.values():
        kids.sort(key=lambda s: s.start_time_ns)
    roots = children.get(None, [])
    tree = Tree(_label(roots[0]) if roots else "(empty trace)")

    def add(node, span):
        for child in children.get(span.span_id, []):
            add(node.add(_label(child)), child)

    if roots:
        add(tree, roots[0])
    return tree
