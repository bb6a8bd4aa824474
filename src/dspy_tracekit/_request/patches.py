"""tracekit's wrapt patches of other libraries (DSPy's classes, MLflow's tracing internals), in one place.

A :class:`PatchSet` records what each patch replaced and undoes its patches in reverse order. Undoing
removes only tracekit's own proxies: when another instrumentor wrapped a patched attribute after us, its
wrapper stays where it is and ours is taken out from under it (its ``__wrapped__`` becomes the original).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import wrapt

logger = logging.getLogger("dspy_tracekit")

#: set on every proxy tracekit makes (``_self_`` attributes live on the proxy, not the wrapped function)
MARK = "_self_tk_patched"
_MAX_CHAIN = 32
#: every wrapt proxy's base (wrapt 2 puts ``ObjectProxy`` above it); checked on ``type()``, since a
#: proxy's ``__class__`` is the wrapped object's
_PROXY: type = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)


def _is_proxy(obj: Any) -> bool:
    return issubclass(type(obj), _PROXY)


def _is_method_descriptor(obj: Any) -> bool:
    return issubclass(type(obj), (classmethod, staticmethod))


class MissingTarget(AttributeError):
    """The attribute to patch does not exist (another version of the library)."""


def _current(owner: Any, name: str) -> Any:
    return owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)


def _own_mark(obj: Any) -> bool:
    # getattr on a wrapt proxy falls through to what it wraps: ask the proxy's own attributes only
    try:
        return object.__getattribute__(obj, MARK) is True
    except AttributeError:
        return False


def is_ours(obj: Any) -> bool:
    """True when ``obj`` is one of tracekit's proxies, or a chain of wrapt proxies with one of ours in it."""
    for _ in range(_MAX_CHAIN):
        if _is_method_descriptor(obj):
            obj = obj.__func__
        if not _is_proxy(obj):
            return False
        if _own_mark(obj):
            return True
        obj = obj.__wrapped__
    return False


class PatchSet:
    """The patches of one part of tracekit (DSPy instrumentation, the MLflow bridge)."""

    def __init__(self) -> None:
        #: (owner, name, what was there before, what tracekit put there), in the order applied
        self._applied: list[tuple[Any, str, Any, Any]] = []

    def __len__(self) -> int:
        return len(self._applied)

    def wrap(self, owner: Any, name: str, wrapper: Callable, label: str | None = None) -> bool:
        """Put a wrapt proxy calling ``wrapper(wrapped, instance, args, kwargs)`` on ``owner.name``.

        :return: False when the attribute is tracekit's already.
        :raises MissingTarget: naming the target, when ``owner`` has no such attribute.
        """
        original = _current(owner, name)
        if original is None:
            raise MissingTarget(f"{label or _label(owner, name)} does not exist")
        if is_ours(original):
            return False
        if _is_method_descriptor(original):
            inner = wrapt.FunctionWrapper(original.__func__, wrapper)
            setattr(inner, MARK, True)
            patched: Any = type(original)(inner)
        else:
            patched = wrapt.FunctionWrapper(original, wrapper)
            setattr(patched, MARK, True)
        setattr(owner, name, patched)
        self._applied.append((owner, name, original, patched))
        return True

    def replace(self, owner: Any, name: str, value: Any) -> None:
        """Set ``owner.name = value`` (not a proxy, e.g. a class's ``__init_subclass__``); undone like a wrap."""
        original = _current(owner, name)
        setattr(owner, name, value)
        self._applied.append((owner, name, original, value))

    def undo(self) -> None:
        """Remove every patch of this set, newest first; only tracekit's own."""
        while self._applied:
            owner, name, original, patched = self._applied.pop()
            current = _current(owner, name)
            if current is patched:
                if original is None:
                    try:
                        delattr(owner, name)
                    except AttributeError:
                        pass
                else:
                    setattr(owner, name, original)
            elif not _splice_out(current, patched, original):
                # not under a wrapt proxy we can reach: ours stays, and does nothing while tracing is off
                logger.debug("dspy-tracekit: %s was replaced after tracekit patched it; left as it is",
                             _label(owner, name))


def _splice_out(top: Any, patched: Any, original: Any) -> bool:
    """Another library's wrapt proxies sit on top of ``patched``: make the one right above it wrap
    ``original`` instead. False when ``patched`` is not found below ``top``."""
    obj = top
    for _ in range(_MAX_CHAIN):
        if not _is_proxy(obj):
            return False
        below = obj.__wrapped__
        if below is patched:
            try:
                obj.__wrapped__ = original
            except (AttributeError, TypeError):
                return False
            return True
        obj = below
    return False


def _label(owner: Any, name: str) -> str:
    if isinstance(owner, type):
        return f"{owner.__module__}.{owner.__qualname__}.{name}"
    return f"{getattr(owner, '__name__', type(owner).__name__)}.{name}"
