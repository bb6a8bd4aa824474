"""The plugin manager: loads plugins, isolates hook implementations, counts, runs delivery."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from importlib.metadata import entry_points
from typing import Any, Callable

import pluggy

from . import hookspecs
from ._delivery import fork as _fork
from ._delivery import inline as _inline
from ._delivery.tracebacks import format_exception, install_log_record_factory
from .errors import ConfigError, TracekitAbort

logger = logging.getLogger("dspy_tracekit")

ENTRY_POINT_GROUP = "dspy_tracekit"
CORE_PLUGIN = "mlflow"
#: hooks whose exceptions mean something to the caller: not swallowed by the isolation wrapper.
_UNISOLATED = {"tracekit_configure", "tracekit_process_trace", "tracekit_export_traces"}
#: hooks called after the fact, where an abort has nothing left to stop: swallowed like any error.
_NEVER_ABORT = {"tracekit_traces_exported"}
#: hooks the core calls one implementation at a time, so a wrapper would have nothing to wrap.
_NO_WRAPPERS = {
    "tracekit_configure": "the core calls each plugin's tracekit_configure with that plugin's own table",
    "tracekit_counters": "the core calls each plugin's tracekit_counters to prefix its counters",
    "tracekit_process_trace": "it fails closed: a wrapper could turn a failed redaction into an export",
}


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

    def reset(self) -> None:
        """Start from zero (a forked child): a new lock, as another thread may have held the old one."""
        self._lock = threading.Lock()
        self._c = Counter()


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
        #: the tracer's per-span call lists: ``(function, plugin name)`` (see :meth:`_direct_calls`)
        self.span_start_calls: tuple[tuple[Callable, str | None], ...] = ()
        self.span_end_calls: tuple[tuple[Callable, str | None], ...] = ()
        self._undo_monitoring = None
        self.bridge = None
        self.flush_timeout = 10.0
        self.inline = _inline.register(_inline.InlineDelivery(self))

    # ---------------------------------------------------------------- loading
    @staticmethod
    def installed_plugins() -> dict[str, Any]:
        """Entry points of the group ``dspy_tracekit``, by name."""
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}

    def load(self, names: list[str], blocked: list[str] | None = None, extra: list[Any] | None = None,
             debug_hooks: bool | None = None, installed: dict[str, Any] | None = None) -> None:
        """Register the core and the named plugins; ``installed``: :meth:`installed_plugins` if the caller
        has it already (reading every distribution's entry points again costs ~10 ms)."""
        from dspy_tracekit.mlflow import plugin as mlflow_core

        from .config import env_flag

        for name in blocked or []:
            if name == CORE_PLUGIN:
                raise ConfigError(f"plugin {CORE_PLUGIN!r} is the core plugin and cannot be blocked")
            self.pm.set_blocked(name)
        self.pm.register(mlflow_core.MlflowCorePlugin(), name=CORE_PLUGIN)
        if installed is None:
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
            self._register(plugin, name)
        for plugin in extra or []:
            self._register(plugin, self._object_name(plugin))
        self._check_impls()
        self._isolate()
        self._refresh()
        # a forked child must not import them (another thread's lock); MLflow's are imported by the first
        # fork() instead, so that enable() does not import MLflow for a program that has not (issue #12)
        _fork.import_delivery_modules(upstream=False)
        install_log_record_factory()  # MLflow's logger.exception on our threads: no ast
        if env_flag("DSPY_TRACEKIT_DEBUG_HOOKS") if debug_hooks is None else debug_hooks:
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
        self._register(plugin, name or self._object_name(plugin))
        try:
            self._check_impls()
        except ConfigError:
            self.pm.unregister(plugin)  # refused: the running manager stays as it was
            raise
        self._isolate()
        self._refresh()

    def _register(self, plugin: Any, name: str) -> None:
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:  # an argument the hook does not have, a non-generator wrapper
            raise ConfigError(f"plugin {name!r} cannot be registered: {exc}") from exc

    def _check_impls(self) -> None:
        """Misspelled hooks (pluggy's ``check_pending``) and wrappers on hooks that cannot take one stop
        ``enable()`` naming the plugin and the hook."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise ConfigError(str(exc)) from exc
        for hook_name, why in _NO_WRAPPERS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.wrapper or impl.hookwrapper:
                    kind = "wrapper=True" if impl.wrapper else "hookwrapper=True"
                    raise ConfigError(f"plugin {impl.plugin_name!r}: @hookimpl({kind}) on {hook_name} is not "
                                      f"supported ({why}); implement it as a plain hook")

    def plugin_names(self) -> list[str]:
        return [self.pm.get_name(p) for p in self.pm.get_plugins()]

    def _isolate(self) -> None:
        for hook_name in dir(self.pm.hook):
            if not hook_name.startswith("tracekit_") or hook_name in _UNISOLATED:
                continue
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if getattr(impl.function, "_tk_isolated", False):
                    continue
                if impl.wrapper:
                    impl.function = self._isolated_wrapper(impl.plugin_name, hook_name, impl.function)
                elif impl.hookwrapper:
                    impl.function = self._isolated_hookwrapper(impl.plugin_name, hook_name, impl.function)
                else:
                    impl.function = self._isolated(impl.plugin_name, hook_name, impl.function,
                                                   keywords=bool(impl.kwargnames))

    def _isolated(self, plugin_name: str, hook_name: str, fn: Callable, keywords: bool = True) -> Callable:
        # pluggy passes the implementation's own arguments: positionals by name, defaulted ones as
        # keywords; without defaulted ones the wrapper takes positionals only (cheapest on the request path)
        abort = TracekitAbort if hook_name not in _NEVER_ABORT else ()

        def isolated_kw(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except abort:
                raise
            except Exception as exc:  # noqa: BLE001 - a plugin must not break the user's program
                self.hook_failed(plugin_name, hook_name, exc)
                return None

        def isolated_positional(*args):
            try:
                return fn(*args)
            except abort:
                raise
            except Exception as exc:  # noqa: BLE001 - a plugin must not break the user's program
                self.hook_failed(plugin_name, hook_name, exc)
                return None

        isolated = isolated_kw if keywords else isolated_positional

        isolated._tk_isolated = True  # type: ignore[attr-defined]
        isolated.__wrapped__ = fn  # type: ignore[attr-defined]
        return isolated

    def _isolated_wrapper(self, plugin_name: str, hook_name: str, fn: Callable) -> Callable:
        """A ``wrapper=True`` implementation whose own failures are logged and counted, never raised:
        what it does not handle behaves as if the wrapper were not there."""
        failed = self.hook_failed

        def isolated(*args, **kwargs):
            try:
                gen = fn(*args, **kwargs)
                next(gen)
            except TracekitAbort:
                raise
            except Exception as exc:  # noqa: BLE001 - includes StopIteration: it did not yield
                failed(plugin_name, hook_name, exc)
                return (yield)
            inner = None
            try:
                result = yield
            except GeneratorExit:
                gen.close()
                raise
            except BaseException as exc:  # an implementation inside raised: the wrapper sees it
                inner = exc
            if inner is None:
                try:
                    gen.send(result)
                except StopIteration as stop:
                    return stop.value
                except TracekitAbort:
                    raise
                except Exception as exc:  # noqa: BLE001
                    failed(plugin_name, hook_name, exc)
                    return result
                gen.close()
                failed(plugin_name, hook_name, RuntimeError("wrapper yielded twice"))
                return result
            try:
                gen.throw(inner)
            except StopIteration as stop:
                return stop.value
            except BaseException as exc:
                if exc is inner or isinstance(exc, TracekitAbort) or not isinstance(exc, Exception):
                    raise
                bad: BaseException = exc
            else:
                gen.close()
                bad = RuntimeError("wrapper yielded twice")
            failed(plugin_name, hook_name, bad)
            raise inner  # outside the except block: the original exception, untouched

        isolated._tk_isolated = True  # type: ignore[attr-defined]
        isolated.__wrapped__ = fn  # type: ignore[attr-defined]
        return isolated

    def _isolated_hookwrapper(self, plugin_name: str, hook_name: str, fn: Callable) -> Callable:
        """An old-style ``hookwrapper=True`` implementation, isolated like :meth:`_isolated_wrapper`."""
        failed = self.hook_failed

        def isolated(*args, **kwargs):
            try:
                gen = fn(*args, **kwargs)
                next(gen)
            except TracekitAbort:
                raise
            except Exception as exc:  # noqa: BLE001
                failed(plugin_name, hook_name, exc)
                yield
                return
            outcome = yield
            try:
                gen.send(outcome)
            except StopIteration:
                return
            except TracekitAbort:
                raise
            except Exception as exc:  # noqa: BLE001
                failed(plugin_name, hook_name, exc)
                return
            gen.close()
            failed(plugin_name, hook_name, RuntimeError("hookwrapper yielded twice"))

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
            # one line: a database error's full text carries the SQL and its parameters (trace content);
            # the traceback only under debug logging, as text: logging's own traceback calls ast on
            # Python 3.11 (python/cpython#106905)
            text = str(exc).strip()
            logger.warning("dspy-tracekit: plugin %r failed in %s (further failures only counted): %s: %s%s",
                           plugin_name, hook_name, type(exc).__name__, text.splitlines()[0][:300] if text else "",
                           "\n" + format_exception(exc).rstrip() if logger.isEnabledFor(logging.DEBUG) else "")

    def _refresh(self) -> None:
        self.sample_fns = self._fast_calls("tracekit_sample", "trace")
        self.span_start_fns = self._fast_calls("tracekit_span_start", "span")
        self.span_end_fns = self._fast_calls("tracekit_span_end", "span")
        self.take_fns = self._fast_calls("tracekit_take_trace", "trace")
        self.span_start_calls = self._direct_calls("tracekit_span_start", "span")
        self.span_end_calls = self._direct_calls("tracekit_span_end", "span")
        if self._undo_monitoring is not None:
            self._fast_paths_off()

    def _direct_calls(self, hook_name: str, arg: str) -> tuple[tuple[Callable, str | None], ...]:
        """What the tracer calls for ``hook_name`` on every span: ``(function, plugin name)`` pairs in
        pluggy's order, each function the implementation itself (not its isolation wrapper: the tracer's
        loop isolates each call and counts a failure under the plugin's name, one frame less per call).
        With a wrapper on the hook, one call through pluggy (plugin name None: its implementations are
        isolated there). Only the hooks' one argument is passed, as pluggy would."""
        caller = getattr(self.pm.hook, hook_name)
        impls = caller.get_hookimpls()
        if any(i.wrapper or i.hookwrapper for i in impls):
            return ((_via_pluggy(caller, arg), None),)
        return tuple((_one_arg_call(i, arg, raw=True), i.plugin_name) for i in reversed(impls))

    def _fast_calls(self, hook_name: str, arg: str) -> list[Callable]:
        """What the request path calls for ``hook_name``, in pluggy's order (tryfirst first, trylast
        last): one plain function per implementation, each taking the hook's one argument."""
        caller = getattr(self.pm.hook, hook_name)
        impls = caller.get_hookimpls()
        if any(i.wrapper or i.hookwrapper for i in impls):
            return [_via_pluggy(caller, arg)]  # a wrapper needs pluggy's call loop around the others
        return [_one_arg_call(i, arg) for i in reversed(impls)]

    def _fast_paths_off(self) -> None:
        # With hook monitoring on, every hook goes through pluggy so that every call is printed.
        hook = self.pm.hook
        self.sample_fns = [_via_pluggy(hook.tracekit_sample, "trace")]
        self.span_start_fns = [_via_pluggy(hook.tracekit_span_start, "span")]
        self.span_end_fns = [_via_pluggy(hook.tracekit_span_end, "span")]
        self.take_fns = [_via_pluggy(hook.tracekit_take_trace, "trace")]
        self.span_start_calls = ((self.span_start_fns[0], None),)
        self.span_end_calls = ((self.span_end_fns[0], None),)

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
        for impl in _configure_order(self.pm.hook.tracekit_configure.get_hookimpls()):
            name = impl.plugin_name
            table = dict(tables.get(name) or {})
            try:
                call_impl(impl, {"config": table, "settings": settings})
            except (ConfigError, ValueError, TypeError, KeyError) as exc:
                # the key's own source when the plugin's validator named it (a table can mix file and env)
                where = sources.get(getattr(exc, "key", None) or "", sources.get(name))
                suffix = f" (from {where})" if where else ""
                raise ConfigError(f"[{name}] {exc}{suffix}") from exc

    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        results = self.pm.hook.tracekit_flush(timeout=timeout)
        inline_done = self.inline.wait(deadline - time.monotonic())  # exports still on a helper thread
        return inline_done and all(r is not False for r in results)

    def shutdown(self, timeout: float) -> None:
        self.pm.hook.tracekit_shutdown(timeout=timeout)
        for plugin in list(self.pm.get_plugins()):
            self.pm.unregister(plugin)
        if self._undo_monitoring is not None:
            self._undo_monitoring()
            self._undo_monitoring = None

    def counters_snapshot(self) -> dict[str, int | float]:
        out: dict[str, int | float] = {f"core.{k}": v for k, v in self.counters.snapshot().items()}
        for impl in reversed(self.pm.hook.tracekit_counters.get_hookimpls()):
            try:
                values = call_impl(impl, {})
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
                marks = trace.materialize()
                for reason, n in (marks or {}).items():  # values stored as markers: the trace is kept
                    self.counters.add("values_marked", n)
                    self.counters.add(f"values_marked.{reason}", n)
            except Exception as exc:  # noqa: BLE001
                self.counters.add("traces_dropped.materialize_error")
                self.hook_failed("core", "materialize", exc)
                continue
            try:
                for impl in reversed(hook.tracekit_process_trace.get_hookimpls()):
                    try:
                        call_impl(impl, {"trace": trace})
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
        # after a successful export only; each implementation isolated (aborts too), none can affect delivery
        try:
            self.pm.hook.tracekit_traces_exported(traces=traces)
        except Exception as exc:  # noqa: BLE001 - only a wrapper's own misuse of pluggy gets here
            self.hook_failed("core", "tracekit_traces_exported", exc)

    def deliver_inline(self, trace) -> None:
        """Deliver one finished trace from the calling thread, within a bounded budget; never raises."""
        try:
            self.inline.deliver(trace, self._store_uri())
        except Exception as exc:  # noqa: BLE001
            self.counters.add("traces_dropped.export_error", 1)
            self.hook_failed("core", "export", exc.__cause__ or exc)

    def _store_uri(self) -> str | None:
        core = self.pm.get_plugin(CORE_PLUGIN)
        uri = getattr(core, "tracking_uri", None)
        return uri if isinstance(uri, str) else None

# ---------------------------------------------------------------- calling implementations as pluggy does


def call_impl(impl: pluggy.HookImpl, kwargs: dict[str, Any]) -> Any:
    """Call one implementation the way pluggy does: its own positional parameters by name, its
    defaulted ones as keywords when the call provides them (otherwise their defaults hold)."""
    args = [kwargs[a] for a in impl.argnames]
    extra = {k: kwargs[k] for k in impl.kwargnames if k in kwargs}
    return impl.function(*args, **extra) if extra else impl.function(*args)


def _configure_order(impls: list) -> list:
    """``tryfirst`` implementations first and ``trylast`` last, as pluggy orders them; the others in
    registration order — the core's MLflow plugin (registered first) is configured before the plugins,
    so a plugin's threads and servers do not start while the core is still opening its store."""
    first = [i for i in reversed(impls) if i.tryfirst]
    last = [i for i in reversed(impls) if i.trylast]
    return first + [i for i in impls if not (i.tryfirst or i.trylast)] + last


def _one_arg_call(impl: pluggy.HookImpl, arg: str, raw: bool = False) -> Callable[[Any], Any]:
    """``impl`` as a function of the hook's single argument ``arg``; the common form, ``(self, arg)``,
    is the implementation itself (no extra frame on the request path). ``raw``: the plugin's own
    function, without tracekit's isolation wrapper (the caller isolates the call)."""
    fn = impl.function
    if raw:
        fn = getattr(fn, "__wrapped__", fn) if getattr(fn, "_tk_isolated", False) else fn
    if impl.argnames == (arg,):
        return fn
    if arg in impl.kwargnames:
        return lambda value: fn(**{arg: value})
    return lambda value: fn()


def _via_pluggy(caller, arg: str) -> Callable[[Any], Any]:
    """One call through pluggy's own loop (wrappers, firstresult), as a function of ``arg``."""
    return lambda value: caller(**{arg: value})
