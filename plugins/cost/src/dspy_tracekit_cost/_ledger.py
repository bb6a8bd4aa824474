"""Running totals and budget accounts; both are a few dict updates under a lock.

Budgets reserve a call's worst-case cost when it starts and settle to the real cost when it ends.
Admission (check + reserve) is atomic, so a budget is exceeded only by the amount the calls admitted
before it under-estimated (a call with no ``max_tokens`` and no table ``max_output_tokens``, or a
tokenizer that counts differently from the provider's).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from ._config import BudgetSpec

__all__ = ["BudgetLedger", "Reservation", "Stat", "Totals"]


class Stat:
    """Totals of one group (a model, a module path, a user, ...)."""

    __slots__ = (
        "cache_hits",
        "calls",
        "cost_usd",
        "input_tokens",
        "output_tokens",
        "saved_usd",
        "unknown_calls",
    )

    def __init__(self):
        self.calls = self.unknown_calls = self.cache_hits = self.input_tokens = self.output_tokens = 0
        self.cost_usd = self.saved_usd = 0.0

    def add(self, cost: float, saved: float, unknown: bool, hit: bool, inp: int, out: int) -> None:
        self.calls += 1
        self.cost_usd += cost
        self.saved_usd += saved
        self.unknown_calls += unknown
        self.cache_hits += hit
        self.input_tokens += inp
        self.output_tokens += out

    def as_dict(self) -> dict[str, int | float]:
        return {k: getattr(self, k) for k in self.__slots__}


class _Groups(OrderedDict):
    """Stats per group value, least recently used first; at most ``cap`` of them (evictions counted)."""

    __slots__ = ("cap", "evicted")

    def __init__(self, cap: int):
        super().__init__()
        self.cap = cap
        self.evicted = 0

    def stat(self, value: str) -> Stat:
        s = self.get(value)
        if s is not None:
            self.move_to_end(value)
            return s
        s = self[value] = Stat()
        if len(self) > self.cap:
            self.popitem(last=False)
            self.evicted += 1
        return s


class Totals:
    """Process-wide roll-ups: overall, by model, by module path, by context tag, by workload.

    Each roll-up keeps at most ``max_groups`` values (a long-running service sees a new ``session_id``
    per session): the least recently used one is evicted and counted in :meth:`evictions`; its figures
    stay in ``overall`` and in the traces already stored.
    """

    def __init__(self, context_keys: tuple[str, ...] = (), max_groups: int = 10_000):
        self.lock = threading.Lock()
        self.context_keys = context_keys
        self.max_groups = max_groups
        self.overall = Stat()
        self.by_model = _Groups(max_groups)
        self.by_module = _Groups(max_groups)
        self.by_context: dict[str, _Groups] = {k: _Groups(max_groups) for k in context_keys}
        self.by_workload = _Groups(max_groups)

    def record(self, model: str, module: str, tags: dict[str, str], workload: str, cost: float,
               saved: float, unknown: bool, hit: bool, inp: int, out: int) -> None:
        """Add one LM call everywhere it belongs (thread-safe)."""
        stats = [self.overall]
        with self.lock:
            stats.append(self.by_model.stat(model))
            stats.append(self.by_module.stat(module))
            stats.append(self.by_workload.stat(workload))
            if tags:
                for key in self.context_keys:
                    value = tags.get(key)
                    if value is not None:
                        stats.append(self.by_context[key].stat(value))
            for s in stats:
                s.add(cost, saved, unknown, hit, inp, out)

    def evictions(self) -> dict[str, int]:
        """Groups evicted per roll-up (``by_model``, ``by_context.<tag>``, ...) since ``enable()``."""
        with self.lock:
            out = {name: g.evicted for name, g in (("by_model", self.by_model), ("by_module", self.by_module),
                                                   ("by_workload", self.by_workload))}
            out.update({f"by_context.{k}": g.evicted for k, g in self.by_context.items()})
            return out

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "overall": self.overall.as_dict(),
                "by_model": {k: v.as_dict() for k, v in self.by_model.items()},
                "by_module": {k: v.as_dict() for k, v in self.by_module.items()},
                "by_context": {key: {val: s.as_dict() for val, s in groups.items()}
                               for key, groups in self.by_context.items()},
                "by_workload": {k: v.as_dict() for k, v in self.by_workload.items()},
            }


class _Account:
    __slots__ = ("bucket", "reserved", "spent")

    def __init__(self, bucket: int):
        self.bucket = bucket
        self.spent = 0.0
        self.reserved = 0.0


class Reservation:
    """What one in-flight call holds: the accounts it reserved in and how much."""

    __slots__ = ("entries", "estimate")

    def __init__(self, entries: list[tuple[_Account, int]], estimate: float):
        self.entries = entries
        self.estimate = estimate


class BudgetLedger:
    """Spend per (budget, key, window); admission and settlement are atomic under one lock."""

    def __init__(self, specs: tuple[BudgetSpec, ...], clock=time.time, max_keys: int = 100_000):
        self.specs = specs
        self.lock = threading.Lock()
        self.clock = clock
        #: least recently used first; at most ``max_keys`` (a ``context`` budget has one per user, session …)
        self._accounts: OrderedDict[tuple[str, Any], _Account] = OrderedDict()
        self.max_keys = max_keys
        #: (budget, key) → the window last warned about: once per key and window, bounded memory
        self._warned: dict[tuple[str, Any], int] = {}
        self.refusals = 0
        self.warnings = 0
        #: accounts dropped for the cap: of an ended window (harmless) / of a live one (its spend restarts)
        self.evicted_expired = 0
        self.evicted_live = 0

    def keys_for(self, tags: dict[str, str], trace_key: Any, workload: str) -> list[tuple[BudgetSpec, Any]]:
        """The budgets that apply to a call, with the key each one counts it under."""
        out = []
        for spec in self.specs:
            if spec.scope == "process":
                out.append((spec, None))
            elif spec.scope == "trace":
                out.append((spec, trace_key))
            elif spec.scope == "compile":
                if workload == "compile":
                    out.append((spec, trace_key))
            else:
                value = tags.get(spec.key) if tags else None  # type: ignore[arg-type]
                if value is not None:
                    out.append((spec, value))
        return out

    def _account(self, spec: BudgetSpec, key: Any, now: float) -> tuple[_Account, int]:
        bucket = int(now // spec.window_seconds) if spec.window_seconds else 0
        ident = (spec.name, key)
        acct = self._accounts.get(ident)
        if acct is None or acct.bucket != bucket:
            # a new window starts empty; calls still in flight from the old one settle into nothing
            acct = self._accounts[ident] = _Account(bucket)
            if len(self._accounts) > self.max_keys:
                self._evict_oldest(now)
        self._accounts.move_to_end(ident)
        return acct, bucket

    def _evict_oldest(self, now: float) -> None:
        ident, acct = self._accounts.popitem(last=False)
        self._warned.pop(ident, None)
        spec = next((s for s in self.specs if s.name == ident[0]), None)
        live = spec is not None and (not spec.window_seconds or acct.bucket == int(now // spec.window_seconds))
        if live:
            self.evicted_live += 1
        else:
            self.evicted_expired += 1

    def admit(self, applicable: list[tuple[BudgetSpec, Any]], estimate: float
              ) -> tuple[Reservation | None, tuple[BudgetSpec, Any, float] | None, list[tuple[BudgetSpec, Any, float]]]:
        """Check every applicable budget and reserve ``estimate`` in all of them, or in none.

        :return: ``(reservation, refusal, warnings)``: ``refusal`` is the first ``raise`` budget the call
            would exceed, ``(spec, key, spent_so_far)`` — then nothing is reserved; ``warnings`` lists
            ``warn`` budgets the call would exceed, each reported once per key and window.
        """
        now = self.clock()
        warnings = []
        with self.lock:
            accounts = []
            for spec, key in applicable:
                acct, bucket = self._account(spec, key, now)
                spent = acct.spent + acct.reserved
                if spent + estimate > spec.limit_usd:
                    if spec.action == "raise":
                        self.refusals += 1
                        return None, (spec, key, spent), warnings
                    if self._first_warning(spec, key, bucket):
                        warnings.append((spec, key, spent))
                accounts.append((acct, bucket))
            for acct, _ in accounts:
                acct.reserved += estimate
            return Reservation(accounts, estimate), None, warnings

    def settle(self, reservation: Reservation, actual: float,
               applicable: list[tuple[BudgetSpec, Any]] | None = None) -> list[tuple[BudgetSpec, Any, float]]:
        """Replace a call's reservation by its real cost; returns ``warn`` budgets now over their limit."""
        warnings = []
        with self.lock:
            for i, (acct, bucket) in enumerate(reservation.entries):
                if acct.bucket != bucket:
                    continue
                acct.reserved = max(acct.reserved - reservation.estimate, 0.0)
                acct.spent += actual
                if applicable is not None:
                    spec, key = applicable[i]
                    if spec.action == "warn" and acct.spent > spec.limit_usd and \
                            self._first_warning(spec, key, bucket):
                        warnings.append((spec, key, acct.spent))
        return warnings

    def _first_warning(self, spec: BudgetSpec, key: Any, bucket: int) -> bool:
        if self._warned.get((spec.name, key)) == bucket:
            return False
        self._warned[(spec.name, key)] = bucket
        self.warnings += 1
        return True

    def spent(self, name: str, key: Any = None) -> tuple[float, float]:
        """``(spent, reserved)`` of a budget's current window (0, 0 when nothing was counted yet)."""
        with self.lock:
            acct = self._accounts.get((name, key))
            if acct is None:
                return 0.0, 0.0
            spec = next(s for s in self.specs if s.name == name)
            if spec.window_seconds and acct.bucket != int(self.clock() // spec.window_seconds):
                return 0.0, 0.0
            return acct.spent, acct.reserved

    def end_trace(self, trace_key: Any) -> None:
        """Forget the per-trace and per-run accounts of a finished trace."""
        with self.lock:
            for spec in self.specs:
                if spec.scope in ("trace", "compile"):
                    self._accounts.pop((spec.name, trace_key), None)
                    self._warned.pop((spec.name, trace_key), None)
