"""Time filters: ``--since 1h``, ISO dates, and MLflow filter strings."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone

from dspy_tracekit.analytics._keys import AnalyticsError

logger = logging.getLogger("dspy_tracekit.analytics")


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(value: str) -> timedelta:
    """``"30m"``, ``"1h"``, ``"7d"``, ``"2w"`` → a :class:`timedelta`.

    :raises AnalyticsError: anything else.
    """
    match = _AGE.match(value or "")
    if not match:
        raise AnalyticsError(f"bad duration {value!r}: use a number and a unit, like 30m, 1h, 7d or 2w")
    amount, unit = float(match.group(1)), match.group(2).lower()
    return timedelta(seconds=amount * _UNIT_SECONDS[unit])


def parse_since(value: str, now: datetime | None = None) -> int:
    """``"1h"`` / ``"7d"`` (ago) or a date ``"2026-11-01"`` / ISO time (UTC unless it says) → epoch ms.

    :raises AnalyticsError: the value is neither an age nor a date.
    """
    now = now or datetime.now(timezone.utc)
    if _AGE.match(value or ""):
        return int((now - parse_age(value)).timestamp() * 1000)
    try:
        when = datetime.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        raise AnalyticsError(
            f"bad --since {value!r}: use an age like 1h or 7d, or a date like 2026-11-01"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def build_filter(since: str | None = None, filter: str | None = None, *extra: str) -> str | None:
    """AND together ``--since``, the user's MLflow filter string and any extra clauses."""
    clauses = []
    if since:
        clauses.append(f"trace.timestamp_ms >= {parse_since(since)}")
    if filter and filter.strip():
        clauses.append(filter.strip())
    clauses.extend(extra)
    return " AND ".join(clauses) or None
