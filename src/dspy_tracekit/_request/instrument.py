"""wrapt wrappers on the classes DSPy routes its own callbacks through.

``instrument()`` / ``uninstrument()`` are idempotent. Each patch records what it replaced so that
``uninstrument()`` restores the exact original attribute — and removes only tracekit's own wrappers,
never one another instrumentor put on top after ``enable()``. A missing target, or one whose
parameters are not what the wrapper reads (another DSPy version), warns once naming it and is skipped.
"""

from __future__ import annotations

import functools
import inspect
import logging
import warnings
import weakref
from time import time_ns
from typing import Any, Callable

from dspy_tracekit import versioning
from dspy_tracekit._request.patches import MissingTarget, PatchSet
from dspy_tracekit._request.tracer import acall_in_span, call_in_span, current_span, current_tags, start_span
from dspy_tracekit.mlflow._compat import runtime_context
from dspy_tracekit.records import SpanKind

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
    def wrapper(wrapped, instance, args, kwargs):
        return call_in_span(_open(describe, wrapped, instance, args, kwargs), wrapped, args, kwargs)

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


_retriever_callers: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def _embeddings_call_wrapper(wrapped, instance, args, kwargs):
    opened = _open(_describe_embeddings, wrapped, instance, args, kwargs)
    if opened is not None:
        try:  # the search runs on Unbatchify's worker thread: remember whose call it serves
            _retriever_callers[instance] = opened[0]
        except TypeError:
            pass
    return call_in_span(opened, wrapped, args, kwargs)


def _embeddings_batch_wrapper(wrapped, instance, args, kwargs):
    if current_span.get() is not None:
        return wrapped(*args, **kwargs)
    caller = _retriever_callers.get(instance)
    if caller is None or caller.end_ns is not None:
        return wrapped(*args, **kwargs)
    token = current_span.set(caller)  # a batch serving several callers nests under the latest one
    try:
        return wrapped(*args, **kwargs)
    finally:
        current_span.reset(token)


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
    add("dspy.Embedder.__call__", lambda: _patch(dspy.Embedder, "__call__", _sync(_describe_embedder)))
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
