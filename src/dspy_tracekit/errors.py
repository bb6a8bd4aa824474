"""Exceptions of dspy-tracekit."""

from __future__ import annotations


class TracekitAbort(Exception):
    """Raised on purpose by a plugin to stop the user's call (e.g. a cost budget).

    It is the one kind of exception a hook implementation may let reach the user's program;
    every other exception raised inside a hook is logged, counted and swallowed.
    """


class BudgetExceeded(TracekitAbort):
    """A cost budget would be exceeded by the call about to be made.

    :param budget: the budget's name, e.g. ``"per_user_id_per_day"``.
    :param limit: the limit in USD.
    :param spent: USD spent so far within the budget's window (including calls in flight).
    :param estimate: the worst-case cost of the refused call, in USD.
    """

    def __init__(self, budget: str, limit: float, spent: float, estimate: float | None = None, key=None):
        self.budget = budget
        self.limit = limit
        self.spent = spent
        self.estimate = estimate
        self.key = key
        scope = f" for {key!r}" if key is not None else ""
        est = f", this call could cost up to ${estimate:.6f}" if estimate is not None else ""
        super().__init__(f"budget {budget!r}{scope} exceeded: limit ${limit:.6f}, spent ${spent:.6f}{est}")


class ConfigError(ValueError):
    """Bad tracekit configuration: names the key (and the file it came from, when there is one)."""
