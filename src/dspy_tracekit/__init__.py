"""dspy-tracekit: pluggable tracing middleware for DSPy programs, stored as MLflow traces.

::

    import dspy_tracekit as tk
    tk.enable()                                   # config from pyproject.toml / dspy-tracekit.toml / env
    with tk.context(user_role="admin", session_id="s-1"):
        program(message="Help me create a workflow")
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import logging
import threading
import warnings
from typing import Any, Callable

from dspy_tracekit._request.tracer import (
    SpanHandle,
    acall_in_span,
    call_in_span,
    current_span,
    current_tags,
    end_span,
    start_span,
)

from . import _state
from .errors import BudgetExceeded, ConfigError, TracekitAbort
from .hookspecs import hookimpl
from .records import SpanKind

__all__ = [
    "enable", "disable", "flush", "context", "trace", "span", "counters", "hookimpl",
    "TracekitAbort", "BudgetExceeded", "ConfigError",
]
__version__ = "0.1.0"

logger = logging.getLogger("dspy_tracekit")
_lock = threading.RLock()


def enable(plugins: list[str | Any] | None = None, tracking_uri: str | None = None,
           experiment: str | None = None, config: dict[str, dict] | None = None) -> bool:
    """Read config, load plugins, instrument DSPy. Returns False when tracing stays off.

    :param plugins: plugin names (entry points of the group ``dspy_tracekit``) and/or plugin objects
        (modules or instances with ``@hookimpl`` functions). ``[]`` = the MLflow core alone;
        ``None`` = as configured.
    :param tracking_uri: MLflow tracking URI (default: config, else what MLflow was told —
        ``MLFLOW_TRACKING_URI`` / ``mlflow.set_tracking_uri()`` — else ``sqlite:///mlflow.db``).
    :param experiment: MLflow experiment name (default: config, else MLflow's active experiment, else
        ``dspy_tracekit``).
    :param config: plugin name → config table; overrides files and environment.
    :raises ConfigError: unknown plugin or key, wrong type, unreadable file (names key and file).
    """
    from .config import resolve, tracing_disabled_by_env

    with _lock:
        if _state.runtime is not None:
            warnings.warn("dspy_tracekit.enable() called while enabled; call disable() first to reconfigure",
                          RuntimeWarning, stacklevel=2)
            return False
        if tracing_disabled_by_env():
            return False
        from dspy_tracekit._request.instrument import instrument
        from dspy_tracekit.mlflow.interop import bridge_mlflow, unbridge_mlflow

        from .manager import TracekitManager
        from .records import Settings

        if plugins is not None and (isinstance(plugins, (str, bytes)) or not hasattr(plugins, "__iter__")):
            raise ConfigError(f"enable(plugins=...) takes a list of plugin names or objects, not "
                              f"{type(plugins).__name__} {plugins!r} (e.g. plugins=[{plugins!r}])")
        plugins = None if plugins is None else list(plugins)
        mgr = TracekitManager()
        names = None if plugins is None else [p for p in plugins if isinstance(p, str)]
        objects = [] if plugins is None else [p for p in plugins if not isinstance(p, str)]
        object_names = tuple(getattr(p, "__name__", None) or type(p).__name__ for p in objects)
        installed = mgr.installed_plugins()
        cfg = resolve(plugins=names, tracking_uri=tracking_uri, experiment=experiment, config=config,
                      installed=tuple(installed) + object_names)
        if not cfg.core["enabled"] or cfg.core["disable"]:
            return False
        try:
            mgr.load(cfg.core["plugins"], cfg.core["blocked"], extra=objects,
                     debug_hooks=cfg.core["debug_hooks"], installed=installed)
            settings = Settings(tracking_uri=cfg.core["tracking_uri"], experiment=cfg.core["experiment"],
                                plugins=tuple(mgr.plugin_names()), config_files=cfg.files,
                                sources=dict(cfg.sources), mlflow_traces=cfg.core["mlflow_traces"])
            mgr.configure(cfg.tables, settings, cfg.sources)
        except Exception:
            try:
                mgr.shutdown(0.0)
            except Exception:  # noqa: BLE001
                pass
            raise
        mgr.flush_timeout = float(cfg.core["flush_timeout"])
        rt = _state.Runtime(mgr, settings, mgr.flush_timeout)
        # imports MLflow here, on the caller's thread, if the program has not (see mlflow/interop.py)
        bridge_mlflow(mgr, settings.mlflow_traces)
        try:
            from dspy_tracekit._request.resources import configure as configure_resources

            configure_resources(cfg.core)  # analytics v2 (#15): cpu_time, peak_memory
            instrument()
        except BaseException:
            unbridge_mlflow(mgr)
            raise
        _state.delivering = rt
        _state.runtime = rt
        return True


def disable(timeout: float | None = None) -> bool:
    """Stop tracing, deliver or spool what is pending, shut plugins down and restore DSPy.

    ``timeout`` (default: ``flush_timeout``) bounds the wait for the store, flush and shutdown together.
    Traces still open are counted (``core.traces_open_at_disable``, ``core.spans_open_at_disable``).
    ``enable()`` works again after it.
    """
    with _lock:
        rt = _state.runtime
        if rt is None:
            return False
        rt.close(timeout)
        return True


def flush(timeout: float = 10.0) -> bool:
    """Wait until every trace finished so far is stored, or ``timeout`` seconds pass.

    :return: True when nothing is pending any more.
    """
    rt = _state.runtime
    if rt is None:
        return True
    return rt.manager.flush(timeout)


def counters() -> dict[str, int | float]:
    """Counters of the core (``core.*``) and of every plugin (``<plugin>.*``); ``{}`` when tracing is off.

    While ``disable()`` runs (e.g. from a plugin's ``tracekit_shutdown``) they are still readable.
    """
    rt = _state.runtime or _state.delivering
    return {} if rt is None else rt.manager.counters_snapshot()


def _suspend(opened):
    """A generator's span must not stay current in the caller's context between its yields."""
    record, token = opened
    current_span.reset(token)
    return record


def _current_trace():
    """The trace the caller is in: its current DSPy span's, else the trace of the user's MLflow span."""
    cur = current_span.get()
    if cur is not None:
        return cur.trace
    rt = _state.runtime
    mgr = None if rt is None else rt.manager
    if mgr is None or mgr.bridge is None:
        return None
    found = mgr.bridge.mlflow_parent()
    return found[0] if isinstance(found, tuple) else None


def _at_exit() -> None:
    try:
        disable()
    except Exception as exc:  # noqa: BLE001
        logger.warning("dspy-tracekit: error while flushing at exit: %s", exc)


# Registered at import, before any plugin module can import this package: atexit runs handlers last
# in, first out, so a plugin's own exit handler (the buffer's, with its exit_timeout) runs before this one.
atexit.register(_at_exit)


@contextlib.contextmanager
def context(**tags: Any):
    """Tags (user_role, current_module, tab, session_id, user_id, …) on every span inside, and on the trace.

    ``session_id`` and ``user_id`` also become MLflow's trace session and user.
    """
    merged = {**current_tags.get(), **{k: _tag_text(v) for k, v in tags.items()}}
    token = current_tags.set(merged)
    trace = _current_trace()
    if trace is not None and trace.sampled:
        trace.tags.update(merged)
    try:
        yield merged
    finally:
        current_tags.reset(token)


def _tag_text(value: Any) -> str:
    """A context tag's value as text; never raises into the program (a marker names what failed)."""
    if type(value) is str:
        return value
    try:
        return str(value)
    except Exception as exc:  # noqa: BLE001 - tracing must not break the caller's `with tk.context(...)`
        return f"<unserializable {type(value).__name__}: str() raised {type(exc).__name__}>"


@contextlib.contextmanager
def span(name: str, span_type: str = "UNKNOWN", attributes: dict[str, Any] | None = None):
    """A custom span: ``with span("database_query", span_type="TOOL") as s: s.set_inputs(...)``.

    An exception inside is recorded on the span and re-raised unchanged.
    """
    opened = start_span(name, SpanKind.CUSTOM, span_type)
    if opened is None:
        yield SpanHandle(None)
        return
    record, token = opened
    handle = SpanHandle(record)
    if attributes:
        handle.set_attributes(attributes)
    try:
        yield handle
    except BaseException as exc:
        end_span(record, token, record.outputs, exc)
        raise
    end_span(record, token, record.outputs)


def trace(func: Callable | None = None, *, name: str | None = None, span_type: str = "UNKNOWN"):
    """Decorator for a custom span around a function (sync, async, generator or async generator).

    Same shape as ``mlflow.trace``: the call's arguments are the inputs, the return value (or the
    list of yielded items) the outputs.
    """

    def decorate(fn: Callable) -> Callable:
        span_name = name or fn.__name__

        if inspect.isasyncgenfunction(fn):
            @functools.wraps(fn)
            async def agen_wrapper(*args, **kwargs):
                opened = start_span(span_name, SpanKind.CUSTOM, span_type, func=fn, args=args, kwargs=kwargs)
                agen = fn(*args, **kwargs)
                if opened is None:
                    async for item in agen:
                        yield item
                    return
                record, items = _suspend(opened), []
                try:
                    while True:
                        token = current_span.set(record)  # current only while the generator runs
                        try:
                            item = await agen.__anext__()
                        except StopAsyncIteration:
                            break
                        finally:
                            current_span.reset(token)
                        items.append(item)
                        yield item
                except GeneratorExit:
                    await agen.aclose()
                    end_span(record, None, items)
                    raise
                except BaseException as exc:
                    end_span(record, None, items, exc)
                    raise
                end_span(record, None, items)
            return agen_wrapper

        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen_wrapper(*args, **kwargs):
                opened = start_span(span_name, SpanKind.CUSTOM, span_type, func=fn, args=args, kwargs=kwargs)
                gen = fn(*args, **kwargs)
                if opened is None:
                    return (yield from gen)
                record, items = _suspend(opened), []
                try:
                    while True:
                        token = current_span.set(record)  # current only while the generator runs
                        try:
                            item = next(gen)
                        except StopIteration as stop:
                            result = stop.value
                            break
                        finally:
                            current_span.reset(token)
                        items.append(item)
                        yield item
                except GeneratorExit:
                    gen.close()
                    end_span(record, None, items)
                    raise
                except BaseException as exc:
                    end_span(record, None, items, exc)
                    raise
                end_span(record, None, items)
                return result
            return gen_wrapper

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args, **kwargs):
                opened = start_span(span_name, SpanKind.CUSTOM, span_type, func=fn, args=args, kwargs=kwargs)
                return await acall_in_span(opened, fn, args, kwargs)
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            opened = start_span(span_name, SpanKind.CUSTOM, span_type, func=fn, args=args, kwargs=kwargs)
            return call_in_span(opened, fn, args, kwargs)
        return wrapper

    return decorate(func) if func is not None else decorate
