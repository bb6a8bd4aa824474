"""Traceback text without ``ast``: safe to build on any thread.

On Python 3.11+ ``traceback.format_exception()`` places its ``^^^^`` carets by calling ``ast.parse``
on each source line, and CPython 3.11 keeps the AST converter's recursion depth in state shared by all
threads (python/cpython#106905): a traceback formatted on tracekit's delivery thread can make the
user's own ``ast.parse``/``compile`` (pytest's assertion rewriting and failure reports, for one) raise
``SystemError: AST constructor recursion depth mismatch``. Without column numbers the carets, and
with them ``ast``, are skipped; the text is otherwise what ``traceback`` prints.
"""

from __future__ import annotations

import logging
import threading
import traceback

__all__ = ["format_exception", "install_log_record_factory"]


def format_exception(exc: BaseException) -> str:
    """The text ``traceback.format_exception(exc)`` gives, without carets (never calls ``ast``, never raises)."""
    try:
        te = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
        seen: set[int] = set()
        todo = [te]
        while todo:
            one = todo.pop()
            if one is None or id(one) in seen:
                continue
            seen.add(id(one))
            for frame in one.stack:
                frame.colno = None
                frame.end_colno = None
            todo.extend((one.__cause__, one.__context__, *(getattr(one, "exceptions", None) or ())))
        return "".join(te.format())
    except Exception:  # noqa: BLE001 - the text is advisory; delivery goes on
        try:
            return f"{type(exc).__name__}: {exc}\n"
        except Exception:  # noqa: BLE001
            return f"{type(exc).__name__}: <unprintable>\n"


#: threads whose log records get their traceback text here: tracekit's own (buffer, spiller, inline, monitor)
THREAD_PREFIX = "dspy-tracekit"
_installed = False
_install_lock = threading.Lock()


def install_log_record_factory() -> None:
    """Log records made on tracekit's threads carry their traceback text already (without ``ast``).

    MLflow logs store failures with ``_logger.exception`` (SQLAlchemy's ``OperationalError``: a locked or
    read-only database) on whichever thread writes — the buffer's worker, say; a handler would then format
    that traceback with carets, calling ``ast``. ``logging.Formatter`` uses ``record.exc_text`` when it is
    set. The factory wraps whatever factory is in place, and only touches records of tracekit's threads.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def record_factory(*args, **kwargs):
            record = previous(*args, **kwargs)
            exc_info = record.exc_info
            if exc_info and exc_info[1] is not None and threading.current_thread().name.startswith(THREAD_PREFIX):
                record.exc_text = format_exception(exc_info[1]).rstrip("\n")
            return record

        logging.setLogRecordFactory(record_factory)
        _installed = True
