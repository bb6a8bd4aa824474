"""Tiny inline-SVG charts: no JavaScript, no fonts, no external resources.

Each function returns one ``<svg>`` element as a string. Hovering a bar or point shows its exact value
through the SVG ``<title>`` element, which every browser renders natively.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

__all__ = ["bar_chart", "histogram", "line_chart", "nice_ticks"]

_FG = "#333"
_GRID = "#ddd"
_BAR = "#4e79a7"
_LINE = "#e15759"


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


def nice_ticks(upper: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least ``upper`` (1-2-5 steps)."""
    if upper <= 0 or not math.isfinite(upper):
        return [0.0, 1.0]
    raw = upper / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [0.0]
    while ticks[-1] < upper - 1e-12:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def _frame(width: int, height: int, body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" '
        f'font-family="sans-serif" font-size="11">' + "".join(body) + "</svg>"
    )


def histogram(
    edges: Sequence[float],
    counts: Sequence[float],
    label: str,
    unit: str = "ms",
    width: int = 360,
    height: int = 160,
) -> str:
    """Bars for ``counts[i]`` between ``edges[i]`` and ``edges[i+1]`` (equal widths on screen)."""
    left, right, top, bottom = 40, 10, 10, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = nice_ticks(max(counts) if counts else 1)
    y_max = ticks[-1] or 1
    body = []
    for t in ticks:
        y = top + plot_h - plot_h * t / y_max
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{_GRID}"/>')
        body.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" fill="{_FG}">{_fmt(t)}</text>')
    n = max(1, len(counts))
    bar_w = plot_w / n
    for i, c in enumerate(counts):
        h = plot_h * c / y_max
        x = left + i * bar_w
        tip = f"{_fmt(edges[i])}–{_fmt(edges[i + 1])} {unit}: {_fmt(c)}"
        body.append(
            f'<rect x="{x + 0.5:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar_w - 1, 0.5):.1f}" '
            f'height="{h:.1f}" fill="{_BAR}"><title>{escape(tip)}</title></rect>'
        )
    for i in (0, n // 2, n):
        if i < len(edges):
            x = left + i * bar_w
            anchor = "start" if i == 0 else ("end" if i == n else "middle")
            body.append(
                f'<text x="{x:.1f}" y="{height - 14}" text-anchor="{anchor}" fill="{_FG}">'
                f"{_fmt(edges[i])}</text>"
            )
    body.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 2}" text-anchor="middle" fill="{_FG}">'
        f"{escape(unit)}</text>"
    )
    return _frame(width, height, body, label)


def line_chart(
    points: Sequence[tuple[str, float | None]],
    label: str,
    y_unit: str = "",
    y_max: float | None = None,
    width: int = 720,
    height: int = 200,
) -> str:
    """A line through ``(x label, y)`` points in order; ``None`` leaves a gap (no data in that bucket)."""
    left, right, top, bottom = 50, 10, 10, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, v in points if v is not None]
    ticks = nice_ticks(y_max if y_max is not None else (max(values) if values else 1))
    top_value = ticks[-1] or 1
    body = []
    for t in ticks:
        y = top + plot_h - plot_h * t / top_value
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{_GRID}"/>')
        body.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" fill="{_FG}">'
            f"{_fmt(t)}{escape(y_unit)}</text>"
        )
    n = len(points)
    step = plot_w / max(1, n - 1)
    segment: list[str] = []
    segments: list[list[str]] = [segment]
    for i, (x_label, v) in enumerate(points):
        x = left + (i * step if n > 1 else plot_w / 2)
        if v is None:
            segment = []
            segments.append(segment)
            continue
        y = top + plot_h - plot_h * min(v, top_value) / top_value
        segment.append(f"{x:.1f},{y:.1f}")
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{_LINE}">'
            f"<title>{escape(x_label)}: {_fmt(v)}{escape(y_unit)}</title></circle>"
        )
    for seg in segments:
        if len(seg) > 1:
            body.append(
                f'<polyline points="{" ".join(seg)}" fill="none" stroke="{_LINE}" stroke-width="1.5"/>'
            )
    for i in sorted({0, n - 1}):
        if 0 <= i < n:
            x = left + (i * step if n > 1 else plot_w / 2)
            anchor = "start" if i == 0 and n > 1 else ("end" if n > 1 else "middle")
            body.append(
                f'<text x="{x:.1f}" y="{height - 16}" text-anchor="{anchor}" fill="{_FG}">'
                f"{escape(points[i][0])}</text>"
            )
    return _frame(width, height, body, label)


def bar_chart(
    items: Sequence[tuple[str, float]], label: str, unit: str = "$", width: int = 720, bar_height: int = 18
) -> str:
    """Horizontal bars, largest first as given; the value is printed at the end of each bar."""
    left = min(320, 12 + 7 * max((len(name) for name, _ in items), default=4))
    right, top = 90, 6
    height = top * 2 + bar_height * max(1, len(items)) + 4
    plot_w = width - left - right
    top_value = max((v for _, v in items), default=0) or 1
    body = []
    for i, (name, v) in enumerate(items):
        y = top + i * bar_height
        w = plot_w * v / top_value
        value = f"${v:,.6f}" if unit == "$" else f"{_fmt(v)} {unit}"
        shown = name if len(name) <= 45 else name[:44] + "…"
        body.append(
            f'<text x="{left - 6}" y="{y + bar_height * 0.7:.1f}" text-anchor="end" fill="{_FG}">'
            f"{escape(shown)}</text>"
        )
        body.append(
            f'<rect x="{left}" y="{y + 2}" width="{max(w, 0.5):.1f}" height="{bar_height - 4}" '
            f'fill="{_BAR}"><title>{escape(name)}: {escape(value)}</title></rect>'
        )
        body.append(
            f'<text x="{left + w + 4:.1f}" y="{y + bar_height * 0.7:.1f}" fill="{_FG}">{escape(value)}</text>'
        )
    return _frame(width, height, body, label)
