"""The plugin manager: loads plugins, isolates hook implementations, counts, runs delivery."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import Counter
from importlib.metadata import entry_points
from typing import Any, Callable

import pluggy

from . import hookspecs
from .errors import ConfigError, TracekitAbort

logger = logging.getLogger("dspy_tracekit")

ENTRY_POINT_GROUP = "dspy_tracekit"
CORE_PLUGIN = "mlflow"
#: hooks whose exceptions mean something to the caller: not swallowed by the isolation wrapper.
_UNISOLATED = {"tracekit_configure", "tracekit_process_trace", "tracekit_export_traces"}


class Counters:
    """Thread-safe counters of the core (``core.<name>``)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._c: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._c[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._c)

    def get(self, name: str) -> int:
        with self._lock:
            return self._c.get(name, 0)


class TracekitManager:
    """Wraps a :class:`pluggy.PluginManager`; keeps direct call lists for the request-path hooks."""

    def __init__(self):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.counters = Counters()
        self._failed_once: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.sample_fns: list[Callable] = []
        self.span_start_fns: list[Callable] = []
        self.span_end_fns: list[Callable] = []
        self.take_fns: list[Callable] = []
        self._undo_monitoring = None
        self.bridge = None
        self.flush_timeout = 10.0

    # ---------------------------------------------------------------- loading
    @staticmethod
    def installed_plugins() -> dict[str, Any]:
        """Entry points of the group ``dspy_tracekit``, by name."""
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}

    def load(self, names: list[str], blocked: list[str] | None = None, extra: list[Any] | None = None) -> None:
        from dspy_tracekit.mlflow import plugin as mlflow_core

        for name in blocked or []:
            if name == CORE_PLUGIN:
                raise ConfigError(f"plugin {CORE_PLUGIN!r} is the core plugin and cannot be blocked")
            self.pm.set_blocked(name)
        self.pm.register(mlflow_core.MlflowCorePlugin(), name=CORE_PLUGIN)
        installed = self.installed_plugins()
        for name in names:
            if name == CORE_PLUGIN or self.pm.is_blocked(name):
                continue
            ep = installed.get(name)
            if ep is None:
                known = ", ".join(sorted(installed)) or "none"
                raise ConfigError(f"unknown plugin {name!r} in 'plugins' (installed plugins: {known})")
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - reported as a config error naming the plugin
                raise ConfigError(f"plugin {name!r} failed to import: {type(exc).__name__}: {exc}") from exc
            self.pm.register(plugin, name=name)
        for plugin in extra or []:
            self.pm.register(plugin, name=self._object_name(plugin))
        self.pm.check_pending()
        self._isolate()
        self._refresh()
        if os.environ.get("DSPY_TRACEKIT_DEBUG_HOOKS", "").lower() in ("1", "true", "yes"):
            self._monitor()

    def _object_name(self, plugin: Any) -> str:
        base = getattr(plugin, "__name__", None) or type(plugin).__name__
        name, i = base, 1
        while self.pm.has_plugin(name):
            i += 1
            name = f"{base}-{i}"
        return name

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object at run time (tests, programmatic plugins)."""
        self.pm.register(plugin, name=name or self._object_name(plugin))
        self.pm.check_pending()
        self._isolate()
        self._refresh()

    def plugin_names(self) -> list[str]:
        return [self.pm.get_name(p) for p in self.pm.get_plugins()]

    def _isolate(self) -> None:
        for hook_name in dir(self.pm.hook):
            if not hook_name.startswith("tracekit_") or hook_name in _UNISOLATED:
                continue
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.hookwrapper or impl.wrapper or getattr(impl.function, "_tk_isolated", False):
                    continue
                impl.function = self._isolated(impl.plugin_name, hook_name, impl.function)

    def _isolated(self, plugin_name: str, hook_name: str, fn: Callable) -> Callable:
        def isolated(*args):
            try:
                return fn(*args)
            except TracekitAbort:
                raise
            except Exception as exc:  # noqa: BLE001 - a plugin must not break the user's program
                self.hook_failed(plugin_name, hook_name, exc)
                return None

        isolated._tk_isolated = True  # type: ignore[attr-defined]
        isolated.__wrapped__ = fn  # type: ignore[attr-defined]
        return isolated

    def hook_failed(self, plugin_name: str, hook_name: str, exc: BaseException) -> None:
        self.counters.add(f"hook_errors.{plugin_name}.{hook_name}")
        key = (plugin_name, hook_name)
        with self._lock:
            first = key not in self._failed_once
            self._failed_once.add(key)
        if first:
            logger.warning("dspy-tracekit: plugin %r failed in %s (further failures only counted): %s: %s",
                           plugin_name, hook_name, type(exc).__name__, exc, exc_info=exc)

    def _refresh(self) -> None:
        def fns(name):
            return [i.function for i in reversed(getattr(self.pm.hook, name).get_hookimpls())
                    if not (i.hookwrapper or i.wrapper)]

        self.sample_fns = fns("tracekit_sample")
        self.span_start_fns = fns("tracekit_span_start")
        self.span_end_fns = fns("tracekit_span_end")
        self.take_fns = fns("tracekit_take_trace")
        if self._undo_monitoring is not None:
            self._fast_paths_off()

    def _fast_paths_off(self) -> None:
        # With hook monitoring on, every hook goes through pluggy so that every call is printed.
        hook = self.pm.hook
        self.sample_fns = [lambda trace: hook.tracekit_sample(trace=trace)]
        self.span_start_fns = [lambda span: hook.tracekit_span_start(span=span)]
        self.span_end_fns = [lambda span: hook.tracekit_span_end(span=span)]
        self.take_fns = [lambda trace: hook.tracekit_take_trace(trace=trace)]

    def _monitor(self) -> None:
        def before(hook_name, hook_impls, kwargs):
            print(f"[dspy-tracekit] {hook_name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) "
                  f"-> {[i.plugin_name for i in hook_impls]}", file=sys.stderr)

        def after(outcome, hook_name, hook_impls, kwargs):
            print(f"[dspy-tracekit] {hook_name} returned {outcome.get_result()!r}", file=sys.stderr)

        self._undo_monitoring = self.pm.add_hookcall_monitoring(before, after)
        self._fast_paths_off()

    # ---------------------------------------------------------------- life cycle
    def configure(self, tables: dict[str, dict], settings, sources: dict[str, str]) -> None:
        for impl in self.pm.hook.tracekit_configure.get_hookimpls():
            name = impl.plugin_name
            table = dict(tables.get(name) or {})
            try:
                impl.function(table, settings)
            except (ConfigError, ValueError, TypeError, KeyError) as exc:
                where = sources.get(name)
                suffix = f" (from {where})" if where else ""
                raise ConfigError(f"[{name}] {exc}{suffix}") from exc

    def flush(self, timeout: float) -> bool:
        results = self.pm.hook.tracekit_flush(timeout=timeout)
        return all(r is not False for r in results)

    def shutdown(self, timeout: float) -> None:
        self.pm.hook.tracekit_shutdown(timeout=timeout)
        for plugin in list(self.pm.get_plugins()):
            self.pm.unregister(plugin)
        if self._undo_monitoring is not None:
            self._undo_monitoring()
            self._undo_monitoring = None

    def counters_snapshot(self) -> dict[str, int | float]:
        out: dict[str, int | float] = {f"core.{k}": v for k, v in self.counters.snapshot().items()}
        for impl in self.pm.hook.tracekit_counters.get_hookimpls():
            try:
                values = impl.function()
            except Exception as exc:  # noqa: BLE001
                self.hook_failed(impl.plugin_name, "tracekit_counters", exc)
                continue
            for k, v in (values or {}).items():
                out[f"{impl.plugin_name}.{k}"] = v
        return out

    # ---------------------------------------------------------------- delivery path
    def prepare(self, traces: list) -> list:
        """keep → materialize → process; returns the traces to export. Drops are counted."""
        hook = self.pm.hook
        out = []
        for trace in traces:
            keep = hook.tracekit_keep_trace(trace=trace)
            if keep is False:
                self.counters.add("traces_dropped.sampled_out")
                continue
            try:
                trace.materialize()
            except Exception as exc:  # noqa: BLE001
                self.counters.add("traces_dropped.materialize_error")
                self.hook_failed("core", "materialize", exc)
                continue
            try:
                for impl in reversed(hook.tracekit_process_trace.get_hookimpls()):
                    try:
                        impl.function(trace)
                    except Exception as exc:
                        self.hook_failed(impl.plugin_name, "tracekit_process_trace", exc)
                        raise
            except Exception:  # noqa: BLE001 - fail closed: never export an unprocessed trace
                self.counters.add("traces_dropped.process_error")
                continue
            out.append(trace)
        return out

    def export(self, traces: list) -> None:
        if not traces:
            return
        try:
            self.pm.hook.tracekit_export_traces(traces=traces)
        except Exception as exc:
            from .delivery import ExportError

            raise ExportError(f"export of {len(traces)} trace(s) failed: {type(exc).__name__}: {exc}") from exc
        self.counters.add("traces_exported", len(traces))
        # after a successful export only; each implementation isolated, none can affect delivery
        for impl in reversed(self.pm.hook.tracekit_traces_exported.get_hookimpls()):
            try:
                impl.function(traces)
            except Exception as exc:  # noqa: BLE001 - a TracekitAbort passes the isolation wrapper
                self.hook_failed(impl.plugin_name, "tracekit_traces_exported", exc)

    def deliver_inline(self, trace) -> None:
        """Deliver one finished trace on the calling thread; never raises."""
        try:
            ready = self.prepare([trace])
            self.export(ready)
        except Exception as exc:  # noqa: BLE001
            self.counters.add("traces_dropped.export_error", 1)
            self.hook_failed("core", "export", exc.__cause__ or exc)
