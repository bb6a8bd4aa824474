"""wrapt wrappers on the classes DSPy routes its own callbacks through.

``instrument()`` / ``uninstrument()`` are idempotent. Each patch records what it replaced so that
``uninstrument()`` restores the exact original attribute — and removes only tracekit's own wrappers,
never one another instrumentor put on top after ``enable()``. A missing target, or one whose
parameters are not what the wrapper reads (another DSPy version), warns once naming it and is skipped.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import threading
import warnings
from contextvars import ContextVar
from time import time_ns
from typing import Any, Callable

from dspy_tracekit import _state, versioning
from dspy_tracekit._request import optimizer_trials
from dspy_tracekit._request.patches import MissingTarget, PatchSet
from dspy_tracekit._request.tracer import (
    _end_span,
    _start_span,
    acall_in_span,
    call_in_span,
    current_span,
    current_tags,
    end_span,
    start_span,
)
from dspy_tracekit.errors import TracekitAbort
from dspy_tracekit.mlflow._compat import runtime_context
from dspy_tracekit.records import SpanKind

LM = SpanKind.LM

logger = logging.getLogger("dspy_tracekit")

_patches = PatchSet()
_warned: set[str] = set()
_instrumented = False


def _patch(owner: Any, name: str, wrapper: Callable, expect: tuple[str, ...] = ()) -> bool:
    """Wrap ``owner.name``. ``expect``: the leading parameter names the wrapper reads by position; a
    target whose signature differs is not wrapped (raises :class:`ChangedTarget`)."""
    if expect:
        _check_parameters(owner, name, expect)
    return _patches.wrap(owner, name, wrapper)


class ChangedTarget(TypeError):
    """A patch target's parameters are not those the wrapper reads (another DSPy version)."""


def _check_parameters(owner: Any, name: str, expect: tuple[str, ...]) -> None:
    target = getattr(owner, name, None)
    if target is None:
        return  # reported as missing by the wrap itself
    try:
        found = tuple(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return
    if found[:len(expect)] != expect:
        raise ChangedTarget(f"its parameters changed: expected ({', '.join(expect)}, ...), "
                            f"found ({', '.join(found)})")


def _missing(target: str, exc: BaseException | None = None, lost: str = "those calls will not be traced") -> None:
    if target not in _warned:
        _warned.add(target)
        try:
            from importlib.metadata import version

            where = f"DSPy {version('dspy')}"
        except Exception:  # noqa: BLE001
            where = "this DSPy version"
        reason = "it does not exist" if isinstance(exc, MissingTarget) else exc
        warnings.warn(f"dspy-tracekit: cannot instrument {target} in {where} ({reason}); {lost}",
                      RuntimeWarning, stacklevel=3)


# ------------------------------------------------------------------------------------------
# wrapper factories: call ``wrapped`` exactly once, re-raise the original exception untouched
# ------------------------------------------------------------------------------------------

def _sync(describe: Callable) -> Callable:
    # what _open, start_span, call_in_span and end_span do, in one frame: this runs for every DSPy call
    def wrapper(wrapped, instance, args, kwargs):
        if _state.runtime is None:
            return wrapped(*args, **kwargs)
        try:
            d = describe(instance, args, kwargs)
        except Exception:  # noqa: BLE001 - never let bookkeeping break the call
            d = None
        if d is None:
            return wrapped(*args, **kwargs)
        kind = d[1]
        try:
            opened = _start_span(d[0], kind, d[2], instance, wrapped, args, kwargs, d[3] if len(d) > 3 else None,
                                 _lm_start if kind == LM else None)
        except TracekitAbort:
            raise
        except Exception as exc:  # noqa: BLE001 - tracekit's own failure: the call goes on untraced
            _state.internal_error("start_span", exc)
            opened = None
        if opened is None:
            return wrapped(*args, **kwargs)
        span, token = opened
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            end_span(span, token, None, exc)
            raise
        try:
            _end_span(span, token, result)
        except Exception as exc:  # noqa: BLE001
            _state.internal_error("end_span", exc)
        return result

    return wrapper


def _async(describe: Callable) -> Callable:
    def wrapper(wrapped, instance, args, kwargs):
        # the span opens inside the coroutine, so it belongs to the task that awaits it
        async def run():
            opened = _open(describe, wrapped, instance, args, kwargs)
            return await acall_in_span(opened, wrapped, args, kwargs)

        return run()

    return wrapper


def _open(describe: Callable, wrapped, instance, args, kwargs):
    try:
        d = describe(instance, args, kwargs)
    except Exception:  # noqa: BLE001 - never let bookkeeping break the call
        d = None
    if d is None:
        return None
    return start_span(d[0], d[1], d[2], instance, wrapped, args, kwargs, d[3] if len(d) > 3 else None,
                      _lm_start if d[1] == SpanKind.LM else None)


# ------------------------------------------------------------------------------------------
# what each target is
# ------------------------------------------------------------------------------------------

_module_types: dict[type, tuple[str, str]] = {}


def _module_kind(cls: type) -> tuple[str, str]:
    try:
        return _module_types[cls]
    except KeyError:
        pass
    import dspy

    kind, span_type = SpanKind.MODULE, "CHAIN"
    try:
        if issubclass(cls, dspy.Predict):
            kind, span_type = SpanKind.PREDICT, "LLM"
        elif issubclass(cls, dspy.ReAct):
            span_type = "AGENT"
        elif issubclass(cls, dspy.Retrieve):
            kind, span_type = SpanKind.RETRIEVER, "RETRIEVER"
    except (AttributeError, TypeError):
        pass
    _module_types[cls] = (kind, span_type)
    return kind, span_type


_child_names: dict[tuple[int, int], str] = {}


def _child_name(parent_instance: Any, child: Any) -> str | None:
    key = (id(parent_instance), id(child))
    name = _child_names.get(key)
    if name is None:
        name = type(child).__name__
        try:
            for attr, value in vars(parent_instance).items():
                if value is child:
                    name = attr
                    break
        except TypeError:
            pass
        if len(_child_names) > 50_000:
            _child_names.clear()
        _child_names[key] = name
    return name


def _describe_module(instance, args, kwargs):
    cls = type(instance)
    kind, span_type = _module_kind(cls)
    parent = current_span.get()
    if parent is not None and parent.kind in (SpanKind.MODULE, SpanKind.PREDICT, SpanKind.RETRIEVER) \
            and parent.instance is not None:
        if parent.instance is instance:
            return None  # re-entrant call of the same module (e.g. Predict.__call__ → Module.__call__)
        path = f"{parent.module_path}.{_child_name(parent.instance, instance)}"
    elif parent is not None and parent.module_path:
        path = f"{parent.module_path}.{cls.__name__}"
    else:
        path = cls.__name__
    return f"{cls.__name__}.forward", kind, span_type, path


def _describe_lm(instance, args, kwargs):
    span_type = "LLM" if getattr(instance, "model_type", "chat") == "text" else "CHAT_MODEL"
    return f"{type(instance).__name__}.__call__", SpanKind.LM, span_type


def _describe_adapter(method: str):
    kind = SpanKind.ADAPTER_FORMAT if method == "format" else SpanKind.ADAPTER_PARSE

    def describe(instance, args, kwargs):
        parent = current_span.get()
        if parent is not None and parent.kind == kind and parent.instance is instance:
            return None  # a subclass's wrapper around its parent's: one span per call
        return f"{type(instance).__name__}.{method}", kind, "PARSER"

    return describe


def _describe_tool(instance, args, kwargs):
    return str(getattr(instance, "name", None) or type(instance).__name__), SpanKind.TOOL, "TOOL"


def _describe_embeddings(instance, args, kwargs):
    return f"{type(instance).__name__}.__call__", SpanKind.RETRIEVER, "RETRIEVER"


def _describe_retrieve(instance, args, kwargs):
    return f"{type(instance).__name__}.forward", SpanKind.RETRIEVER, "RETRIEVER"


def _describe_embedder(instance, args, kwargs):
    return f"{type(instance).__name__}.__call__", SpanKind.EMBEDDER, "EMBEDDING"


def _describe_evaluate(instance, args, kwargs):
    return f"{type(instance).__name__}.__call__", SpanKind.EVALUATE, "EVALUATOR"


def _describe_compile(instance, args, kwargs):
    parent = current_span.get()
    if parent is not None and parent.kind == SpanKind.COMPILE and parent.instance is instance:
        return None
    return f"{type(instance).__name__}.compile", SpanKind.COMPILE, "CHAIN"


# ------------------------------------------------------------------------------------------
# LM details (request path: references and a shallow dict merge only)
# ------------------------------------------------------------------------------------------

def _lm_start(span, lm, kwargs) -> None:
    model = getattr(lm, "model", None)
    span.model = model if isinstance(model, str) else None
    if span.model and "/" in span.model:
        span.provider = span.model.split("/", 1)[0]
    base = getattr(lm, "kwargs", None)
    span.params = {**base, **kwargs} if isinstance(base, dict) else dict(kwargs)
    span.params.pop("messages", None)


def _usage(raw: Any) -> dict[str, int] | None:
    if not raw:
        return None
    get = raw.get if isinstance(raw, dict) else (lambda k, d=None: getattr(raw, k, d))
    inp = get("prompt_tokens") or get("input_tokens") or 0
    out = get("completion_tokens") or get("output_tokens") or 0
    usage = {"input_tokens": int(inp), "output_tokens": int(out),
             "total_tokens": int(get("total_tokens") or (inp + out))}
    pd = get("prompt_tokens_details") or {}
    cd = get("completion_tokens_details") or {}
    pget = pd.get if isinstance(pd, dict) else (lambda k, d=None: getattr(pd, k, d))
    cget = cd.get if isinstance(cd, dict) else (lambda k, d=None: getattr(cd, k, d))
    cached = pget("cached_tokens") or get("cache_read_input_tokens") or get("cached_tokens")
    if cached:
        usage["cached_tokens"] = int(cached)
    written = pget("cache_creation_tokens") or get("cache_creation_input_tokens")
    if written:
        usage["cache_write_tokens"] = int(written)
    reasoning = cget("reasoning_tokens") or get("reasoning_tokens")
    if reasoning:
        usage["reasoning_tokens"] = int(reasoning)
    return usage


def _finalize_wrapper(wrapped, instance, args, kwargs):
    result_obj = args[2] if len(args) > 2 else kwargs.get("result")
    span = current_span.get()
    if span is not None and span.kind == SpanKind.LM and result_obj is not None:
        try:
            span.cache_hit = bool(getattr(result_obj, "cache_hit", False))
            span.usage = _usage(getattr(result_obj, "usage", None)) or (
                {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0} if span.cache_hit else None)
            if span.cache_hit:
                # what the cached answer cost when it was made: lets a cost plugin report the saving
                responses = getattr(result_obj, "responses", None) or ()
                raw = responses[0] if responses else getattr(result_obj, "raw", None)
                cached = _usage(getattr(raw, "usage", None) if raw is not None else None)
                if cached:
                    span.set_attribute("llm.cached_usage", cached)
            response_model = getattr(result_obj, "response_model", None)
            if response_model:
                span.set_attribute("llm.response_model", response_model)
        except Exception:  # noqa: BLE001 - never break the LM call over bookkeeping
            pass
    return wrapped(*args, **kwargs)


def _stream_emitted_wrapper(wrapped, instance, args, kwargs):
    span = current_span.get()
    if span is not None and span.kind == SpanKind.LM and span.first_token_ns is None:
        span.first_token_ns = time_ns()
    return wrapped(*args, **kwargs)


# ``dspy.retrievers.Embeddings`` sends each query to a worker thread (``Unbatchify``) that embeds the
# queries of several callers in one batch. Each query is matched to the span of the call that sent it,
# so that the batch's Embedder span nests under its own caller and holds that caller's queries only.
_embedding_lock = threading.Lock()
#: queries waiting for a batch: ``(id(retriever), id(query)) → [(query, caller span), ...]``
_embedding_callers: dict[tuple[int, int], list[tuple[Any, Any]]] = {}


class _SharedBatch:
    """A batch of queries from several callers, on the worker thread: ``callers[i]`` sent ``queries[i]``."""

    __slots__ = ("queries", "callers")

    def __init__(self, queries: list, callers: list):
        self.queries = queries
        self.callers = callers


_embedding_batch: ContextVar[_SharedBatch | None] = ContextVar("dspy_tracekit_embedding_batch", default=None)


def _embeddings_call_wrapper(wrapped, instance, args, kwargs):
    opened = _open(_describe_embeddings, wrapped, instance, args, kwargs)
    if opened is None:
        return wrapped(*args, **kwargs)
    query = args[0] if args else kwargs.get("query")
    key, entry = (id(instance), id(query)), (query, opened[0])
    with _embedding_lock:
        _embedding_callers.setdefault(key, []).append(entry)
    try:
        return call_in_span(opened, wrapped, args, kwargs)
    finally:
        with _embedding_lock:  # not claimed by a batch (an error, or a search outside Unbatchify)
            waiting = _embedding_callers.get(key)
            if waiting is not None:
                waiting[:] = [e for e in waiting if e is not entry]
                if not waiting:
                    del _embedding_callers[key]


def _claim_callers(instance, queries) -> list:
    """The caller span of each query of a batch (``None`` for a query no traced call is waiting for)."""
    callers = []
    with _embedding_lock:
        for query in queries:
            key = (id(instance), id(query))
            waiting = _embedding_callers.get(key)
            caller = None
            if waiting:
                for i, (q, span) in enumerate(waiting):
                    if q is query and span.end_ns is None:
                        caller = span
                        del waiting[i]
                        break
                if not waiting:
                    del _embedding_callers[key]
            callers.append(caller)
    return callers


def _embeddings_batch_wrapper(wrapped, instance, args, kwargs):
    if current_span.get() is not None:  # called inside a traced call, on its thread: nests as usual
        return wrapped(*args, **kwargs)
    queries = args[0] if args else kwargs.get("queries")
    try:
        callers = _claim_callers(instance, queries) if isinstance(queries, list) else []
    except Exception:  # noqa: BLE001 - never let bookkeeping break the search
        callers = []
    owners = {id(c): c for c in callers if c is not None}
    if not owners:
        return wrapped(*args, **kwargs)
    if len(owners) == 1 and None not in callers:  # one caller's batch: it runs inside that caller's span
        token, tags_token = current_span.set(callers[0]), current_tags.set(callers[0].tags)
        try:
            return wrapped(*args, **kwargs)
        finally:
            current_tags.reset(tags_token)
            current_span.reset(token)
    token = _embedding_batch.set(_SharedBatch(queries, callers))
    try:
        return wrapped(*args, **kwargs)
    finally:
        _embedding_batch.reset(token)


def _embedder_call_wrapper(wrapped, instance, args, kwargs):
    batch = _embedding_batch.get()
    if batch is not None and current_span.get() is None \
            and (args[0] if args else kwargs.get("inputs")) is batch.queries:
        return _embed_shared_batch(batch, wrapped, instance, args, kwargs)
    return call_in_span(_open(_describe_embedder, wrapped, instance, args, kwargs), wrapped, args, kwargs)


def _embed_shared_batch(batch: _SharedBatch, wrapped, instance, args, kwargs):
    """Embed a batch that serves several callers in one call, as DSPy does; each caller's trace gets an
    Embedder span with its own queries and their embeddings, never another caller's."""
    groups: dict[int, tuple[Any, list[int]]] = {}
    for i, caller in enumerate(batch.callers):
        if caller is not None:
            groups.setdefault(id(caller), (caller, []))[1].append(i)
    opened = []
    for caller, rows in groups.values():
        own = [batch.queries[i] for i in rows]
        call_args, call_kwargs = ((own, *args[1:]), kwargs) if args else (args, {**kwargs, "inputs": own})
        ctx = contextvars.copy_context()  # one per caller: each span is current in its own context
        ctx.run(current_span.set, caller)
        ctx.run(current_tags.set, caller.tags)
        try:
            o = ctx.run(_open, _describe_embedder, wrapped, instance, call_args, call_kwargs)
        except TracekitAbort:  # a plugin stopped this caller's span: the batch still serves everyone
            o = None
        if o is not None:
            opened.append((ctx, o, rows))
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        for ctx, (span, token), _ in opened:
            ctx.run(end_span, span, token, None, exc)
        raise
    for ctx, (span, token), rows in opened:
        ctx.run(end_span, span, token, _rows(result, rows))
    return result


def _rows(result: Any, rows: list[int]) -> Any:
    try:
        if hasattr(result, "shape"):  # a numpy array: its rows, copied
            return result[rows]
        return [result[i] for i in rows]
    except Exception:  # noqa: BLE001 - an unexpected result: the span keeps no outputs
        return None


def _parallel_execute_wrapper(wrapped, instance, args, kwargs):
    """Worker threads of ``ParallelExecutor`` inherit the caller's span, context tags and MLflow's
    tracing context (so a user's MLflow span inside a worker nests under the caller's span)."""
    span = current_span.get()
    tags = current_tags.get()
    runtime = runtime_context()
    mlflow_ctx = runtime.get_current()
    if span is None and not tags and not mlflow_ctx:
        return wrapped(*args, **kwargs)
    function = args[0] if args else kwargs.pop("function")
    rest = args[1:] if args else ()

    @functools.wraps(function)
    def in_caller_context(*a, **kw):
        t1 = current_span.set(span)
        t2 = current_tags.set(tags)
        t3 = runtime.attach(mlflow_ctx)
        try:
            return function(*a, **kw)
        finally:
            try:
                runtime.detach(t3)
            except Exception:  # noqa: BLE001, S110 - detached elsewhere: harmless
                pass
            current_tags.reset(t2)
            current_span.reset(t1)

    return wrapped(in_caller_context, *rest, **kwargs)


# ------------------------------------------------------------------------------------------
# subclasses of Adapter / Teleprompter, including those defined after instrument()
# ------------------------------------------------------------------------------------------

def _all_subclasses(cls: type) -> list[type]:
    out, todo = [], [cls]
    while todo:
        c = todo.pop()
        for sub in c.__subclasses__():
            if sub not in out:
                out.append(sub)
                todo.append(sub)
    return out


def _patch_adapter_class(cls: type) -> None:
    for method in ("format", "parse"):
        if method in cls.__dict__:
            _patch(cls, method, _sync(_describe_adapter(method)))


def _patch_teleprompter_class(cls: type) -> None:
    if "compile" in cls.__dict__:
        fn = cls.__dict__["compile"]
        _patch(cls, "compile", (_async if inspect.iscoroutinefunction(fn) else _sync)(_describe_compile))


def _hook_init_subclass(base: type, patch_class: Callable) -> None:
    original = base.__dict__.get("__init_subclass__")

    def __init_subclass__(cls, **kw):
        if original is not None:
            original.__func__(cls, **kw)
        else:
            super(base, cls).__init_subclass__(**kw)
        patch_class(cls)

    __init_subclass__._tk_patched = True  # type: ignore[attr-defined]
    _patches.replace(base, "__init_subclass__", classmethod(__init_subclass__))


# ------------------------------------------------------------------------------------------

def instrument() -> bool:
    """Wrap DSPy. Returns False (and does nothing) when already instrumented."""
    global _instrumented
    if _instrumented:
        return False
    import dspy

    targets: list[tuple[str, Callable[[], None], str]] = []

    def add(label: str, fn: Callable[[], None], lost: str = "those calls will not be traced") -> None:
        targets.append((label, fn, lost))

    add("dspy.Module.__call__", lambda: _patch(dspy.Module, "__call__", _sync(_describe_module)))
    add("dspy.Module.acall", lambda: _patch(dspy.Module, "acall", _async(_describe_module)))
    add("dspy.BaseLM.__call__", lambda: _patch(dspy.BaseLM, "__call__", _sync(_describe_lm)))
    add("dspy.BaseLM.acall", lambda: _patch(dspy.BaseLM, "acall", _async(_describe_lm)))
    add("dspy.Tool.__call__", lambda: _patch(dspy.Tool, "__call__", _sync(_describe_tool)))
    add("dspy.Tool.acall", lambda: _patch(dspy.Tool, "acall", _async(_describe_tool)))
    add("dspy.Retrieve.__call__", lambda: _patch(dspy.Retrieve, "__call__", _sync(_describe_retrieve)))
    add("dspy.retrievers.Embeddings.__call__",
        lambda: _patch(dspy.retrievers.Embeddings, "__call__", _embeddings_call_wrapper))
    add("dspy.retrievers.Embeddings._batch_forward",
        lambda: _patch(dspy.retrievers.Embeddings, "_batch_forward", _embeddings_batch_wrapper))
    add("dspy.Embedder.__call__", lambda: _patch(dspy.Embedder, "__call__", _embedder_call_wrapper))
    add("dspy.Embedder.acall", lambda: _patch(dspy.Embedder, "acall", _async(_describe_embedder)))
    add("dspy.Evaluate.__call__", lambda: _patch(dspy.Evaluate, "__call__", _sync(_describe_evaluate)))

    def adapters():
        from dspy.adapters.base import Adapter

        for cls in [Adapter, *_all_subclasses(Adapter)]:
            _patch_adapter_class(cls)
        _hook_init_subclass(Adapter, _patch_adapter_class)

    def teleprompters():
        from dspy.teleprompt.teleprompt import Teleprompter

        for cls in [Teleprompter, *_all_subclasses(Teleprompter)]:
            _patch_teleprompter_class(cls)
        _hook_init_subclass(Teleprompter, _patch_teleprompter_class)

    def execution():
        import dspy.clients.execution as execution

        return execution

    def lm_module():
        import dspy.clients.lm as lm_module  # LiteLLM's streaming path reports its first chunk here

        return lm_module

    def parallel():
        from dspy.utils.parallelizer import ParallelExecutor

        _patch(ParallelExecutor, "execute", _parallel_execute_wrapper, expect=("self", "function"))

    add("dspy.Adapter.format/parse (every subclass)", adapters)
    add("dspy.Teleprompter.compile (every subclass)", teleprompters)
    add("dspy.clients.execution.finalize",
        lambda: _patch(execution(), "finalize", _finalize_wrapper, expect=("lm", "call", "result")),
        "LM spans will have no token usage and no cache hit")
    add("dspy.clients.execution.stream_emitted",
        lambda: _patch(execution(), "stream_emitted", _stream_emitted_wrapper),
        "streamed LM spans will have no time to first token")
    add("dspy.clients.lm.stream_emitted", lambda: _patch(lm_module(), "stream_emitted", _stream_emitted_wrapper),
        "LM spans streamed through LiteLLM will have no time to first token")
    add("dspy.utils.parallelizer.ParallelExecutor.execute", parallel,
        "dspy.Parallel and Evaluate(num_threads=...) workers will start traces of their own")
    add("dspy.BaseModule.load_state/save (program versions, #15)", lambda: versioning.instrument(_patch))
    add("dspy.SIMBA candidate evaluations (dspy.Parallel.forward, #15)", lambda: optimizer_trials.instrument(_patch))

    for label, fn, lost in targets:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - unknown DSPy version: skip that target
            _missing(label, exc, lost)
    _instrumented = True
    return True


def uninstrument() -> bool:
    global _instrumented
    if not _instrumented:
        return False
    _patches.undo()
    _module_types.clear()
    _child_names.clear()
    _instrumented = False
    return True
