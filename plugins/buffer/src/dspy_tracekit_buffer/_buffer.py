"""TraceBuffer: a bounded queue on the calling thread, a batching worker, a spiller and a spool."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, deque
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from dspy_tracekit import delivery
from dspy_tracekit.records import TraceRecord

from ._config import SPAN_BYTES_ESTIMATE, BufferConfig
from ._sizing import SpanBytes
from ._spool import Spool, SpoolError, check_writable

logger = logging.getLogger("dspy_tracekit.buffer")


class TraceBuffer:
    """Takes finished traces off the calling thread and delivers them in batches, losing none silently.

    * ``take()`` (calling thread): O(1) — a lock, a length check, an append. No serialization.
    * worker thread: ``prepare`` (keep → materialize → redact) a batch, ``export`` it with retries;
      if the store stays unreachable the prepared batch goes to the spool, and the spool is replayed
      (oldest first) once a probe succeeds.
    * spiller thread (``overflow = "spill"``): prepares and spools traces that did not fit the queue.
    """

    def __init__(self, cfg: BufferConfig, tracking_uri: str | None = None):
        self.cfg = cfg
        self.tracking_uri = tracking_uri
        self._counts: Counter[str] = Counter()
        #: bytes per queued span, learned from prepared traces (``max_bytes`` is charged with it)
        self._span_bytes = SpanBytes(SPAN_BYTES_ESTIMATE)
        self._init_runtime()
        self.spool: Spool | None = None
        self.spool_unavailable = ""
        self._warned: set[str] = set()

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # worker waits for traces
        self._space = threading.Condition(self._lock)  # "block" policy waits for room
        self._idle = threading.Condition(self._lock)  # flush waits for the queue to drain
        self._spill_cv = threading.Condition(self._lock)
        self._queue: deque[tuple[TraceRecord, int]] = deque()
        self._bytes = 0
        self._overflow: deque[TraceRecord] = deque()
        self._inflight = 0
        self._spilling = 0
        self._flushing = 0
        self._claiming = False  # spool files of dead processes not claimed yet (worker does it)
        self._stopping = False
        self._closed = False
        self._worker: threading.Thread | None = None
        self._spiller: threading.Thread | None = None
        self._pid = os.getpid()
        #: delivered traces freed at once by ``delivery.release`` (diagnostics: the buffer's counters)
        self._released = 0
        #: circuit breaker: while the store is down, batches go straight to the spool.
        self._store_down_until = 0.0
        self._probe_backoff = self.cfg.retry_initial_backoff
        self._stop_event = threading.Event()

    # ================================================================== set-up
    def open_spool(self, required: bool = False) -> None:
        """Check the spool directory and claim files left by crashed processes (runs at enable).

        :param required: raise ValueError when the directory is not writable (also with ``spool_required``).
        """
        try:
            check_writable(self.cfg.spool_dir)
        except OSError as exc:
            self.spool_unavailable = f"{type(exc).__name__}: {exc}"
            self._counts["spool_errors"] += 1
            msg = (f"buffer.spool_dir {os.path.abspath(self.cfg.spool_dir)!r} is not writable "
                   f"({exc.strerror or exc}); traces that cannot reach the store will be dropped and "
                   f"counted as buffer.dropped.spool_unavailable")
            if self.cfg.spool_required or required:
                raise ValueError(f"buffer.spool_dir {self.cfg.spool_dir!r} is not writable "
                                 f"({exc.strerror or exc})") from exc
            logger.error("dspy-tracekit: %s", msg)
            return
        self.spool = Spool(self.cfg.spool_dir, self.cfg.spool_max_bytes)
        if self.spool.has_orphans():
            # claimed, counted and replayed on the worker: enable() does not read the spool
            with self._lock:
                self._claiming = True
            self._start_worker()

    def _claim_orphans(self) -> None:
        try:
            claimed = self.spool.claim_orphans() if self.spool is not None else 0
        except OSError as exc:
            claimed = 0
            self._warn_once("claim", f"claiming spool files failed: {exc}")
        finally:
            with self._lock:
                self._claiming = False
                self._idle.notify_all()
        if claimed:
            logger.info("dspy-tracekit: replaying %d spooled trace(s) from %s", claimed, self.spool.directory)

    # ================================================================== request path
    def take(self, trace: TraceRecord) -> bool | None:
        """Queue a finished trace (calling thread). Always True: a refused trace is counted, not lost silently."""
        size = len(trace.spans) * self._span_bytes.value
        cfg = self.cfg
        with self._lock:
            if self._closed:
                return None  # after shutdown: the core delivers inline
            if len(self._queue) < cfg.max_traces and self._bytes + size <= cfg.max_bytes:
                self._queue.append((trace, size))
                self._bytes += size
                self._counts["queued"] += 1
                if len(self._queue) >= cfg.batch_size:
                    self._work.notify()
            else:
                self._overflow_locked(trace, size)
            started = self._worker is not None
        if not started:
            self._start_worker()
        return True

    def _overflow_locked(self, trace: TraceRecord, size: int) -> None:
        policy = self.cfg.overflow
        if policy == "drop_newest":
            self._counts["dropped.queue_full"] += 1
        elif policy == "drop_oldest":
            if self._queue:
                _, old_size = self._queue.popleft()
                self._bytes -= old_size
            self._queue.append((trace, size))
            self._bytes += size
            self._counts["queued"] += 1
            self._counts["dropped.queue_full"] += 1
        elif policy == "block":
            deadline = time.monotonic() + self.cfg.block_timeout
            self._work.notify()
            while len(self._queue) >= self.cfg.max_traces or self._bytes + size > self.cfg.max_bytes:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    self._counts["dropped.block_timeout"] += 1
                    return
                self._space.wait(remaining)
            self._queue.append((trace, size))
            self._bytes += size
            self._counts["queued"] += 1
        else:  # spill: the spiller prepares (redacts) and spools it; bounded like the queue
            if self.spool is None:
                self._counts["dropped.spool_unavailable"] += 1
            else:
                if len(self._overflow) >= self.cfg.max_traces:
                    # the disk does not keep up either: back-pressure for up to block_timeout
                    deadline = time.monotonic() + self.cfg.block_timeout
                    while len(self._overflow) >= self.cfg.max_traces:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 or self._closed:
                            self._counts["dropped.spill_queue_full"] += 1
                            return
                        self._space.wait(remaining)
                self._overflow.append(trace)
                self._counts["queued"] += 1
                if self._spiller is None:
                    self._spiller = threading.Thread(target=self._spill_loop, name="dspy-tracekit-spiller",
                                                     daemon=True)
                    self._spiller.start()
                self._spill_cv.notify()

    # ================================================================== threads
    def _start_worker(self) -> None:
        with self._lock:
            if self._worker is not None or self._closed:
                return
            self._worker = threading.Thread(target=self._run, name="dspy-tracekit-buffer", daemon=True)
            self._worker.start()

    def _core_ready(self) -> bool:
        """The worker may start during ``enable()`` (spool replay) before the core is live: wait for it."""
        while not self._stopping:
            try:
                delivery.prepare([])
                return True
            except RuntimeError:  # "dspy_tracekit is not enabled" (yet)
                self._stop_event.wait(0.05)
        return False

    def _run(self) -> None:
        if self._claiming:
            self._claim_orphans()
        if not self._core_ready():
            return
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                n = len(batch)
                traces = [t for t, _ in batch]
                batch = None  # its tuples hold the traces too: `traces` is the worker's only reference now
                try:
                    self._deliver(traces)
                except Exception as exc:  # noqa: BLE001 - the worker never dies: later traces depend on it
                    self._worker_failed("deliver", exc, n)
                finally:
                    # stored, spooled or counted: what nothing else holds is freed now, not by the cyclic
                    # GC (before _done, so that a flush() that returns has seen it)
                    self._released += delivery.release(traces)
                    traces = None
                    self._done(n)
            if not self._stopping:
                try:
                    if self._should_replay():
                        self._replay_chunk()
                except Exception as exc:  # noqa: BLE001
                    self._worker_failed("replay", exc, 0)
                    self._stop_event.wait(self._probe_backoff)  # no busy loop over a spool chunk that fails

    def _next_batch(self) -> list[tuple[TraceRecord, int]] | None:
        cfg = self.cfg
        with self._lock:
            if not self._stopping and (not self._queue or (len(self._queue) < cfg.batch_size
                                                           and not self._flushing)):
                self._work.wait(self._wait_time())
            if self._stopping and not self._queue:
                return None
            n = min(len(self._queue), cfg.batch_size)
            batch = [self._queue.popleft() for _ in range(n)]
            self._bytes -= sum(s for _, s in batch)
            self._inflight += n
            if n:
                self._space.notify_all()
            return batch

    def _wait_time(self) -> float:
        if self._queue:
            return self.cfg.flush_interval
        if self.spool is not None and self.spool.pending:
            return max(0.01, min(self.cfg.flush_interval, self._store_down_until - time.monotonic()))
        return max(self.cfg.flush_interval, 1.0)

    def _worker_failed(self, step: str, exc: BaseException, n: int) -> None:
        """An unexpected failure on the worker: the batch is counted as lost, the worker goes on."""
        self._count("worker_errors")
        if n:
            self._count("dropped.worker_error", n)
        self._warn_once(f"worker_{step}", f"{step} failed, {n} trace(s) dropped (buffer.dropped.worker_error); "
                        f"the worker goes on: {delivery.format_exception(exc).rstrip()}")

    def _done(self, n: int) -> None:
        with self._lock:
            self._inflight -= n
            if self._counts.get("shutdown_in_flight"):  # finished after shutdown: its outcome is counted now
                self._counts["shutdown_in_flight"] -= min(n, self._counts["shutdown_in_flight"])
            self._idle.notify_all()

    def _spill_loop(self) -> None:
        while True:
            with self._lock:
                while not self._overflow and not self._stopping:
                    self._spill_cv.wait(1.0)
                if not self._overflow:
                    return
                n = min(len(self._overflow), self.cfg.batch_size)
                batch = [self._overflow.popleft() for _ in range(n)]
                self._spilling += n
                self._space.notify_all()
            try:
                self._spill(delivery.prepare(batch))
            except Exception as exc:  # noqa: BLE001 - the program must keep running
                self._warn_once("spill", f"spilling {n} trace(s) failed: {type(exc).__name__}: {exc}")
                self._count("dropped.spill_error", n)
            finally:
                with self._lock:
                    self._spilling -= n
                    if self._counts.get("shutdown_in_flight"):
                        self._counts["shutdown_in_flight"] -= min(n, self._counts["shutdown_in_flight"])
                    self._idle.notify_all()

    # ================================================================== delivery
    def _deliver(self, traces: list[TraceRecord]) -> None:
        try:
            ready = delivery.prepare(traces)
        except Exception as exc:  # noqa: BLE001 - prepare never raises; belt and braces
            self._warn_once("prepare", f"prepare failed: {type(exc).__name__}: {exc}")
            self._count("dropped.prepare_error", len(traces))
            return
        if not ready:
            return
        try:
            self._span_bytes.learn(ready[0])  # one sample per batch: what queued traces really hold
        except Exception:  # noqa: BLE001, S110 - sizing is advisory; the old figure stays
            pass
        if self.spool is not None and self._store_is_down() and time.monotonic() < self._store_down_until:
            self._spill(ready)  # the store is down: no retries until the next probe
            return
        self._export(ready, replay=False)

    def _export(self, ready: list[TraceRecord], replay: bool) -> bool:
        """Export with retries. True when stored (or dead-lettered); False when the store is unreachable."""
        try:
            self._retrying(probe=self._store_is_down())(delivery.export, ready)
        except Exception as exc:  # noqa: BLE001
            if delivery.is_transient(exc):
                self._store_down(exc)
                if not replay:
                    self._spill(ready)
                return False
            self._permanent_failure(ready, exc, replay)
            return True
        self._store_up()
        self._count("replayed" if replay else "exported", len(ready))
        return True

    def _retrying(self, probe: bool) -> Retrying:
        cfg = self.cfg
        return Retrying(
            stop=stop_after_attempt(1 if probe else cfg.retry_attempts) | self._stop_requested,
            wait=wait_exponential_jitter(initial=cfg.retry_initial_backoff, max=cfg.retry_max_backoff),
            retry=retry_if_exception(delivery.is_transient),
            sleep=self._stop_event.wait,
            before_sleep=lambda state: self._count("retried"),
            reraise=True,
        )

    def _stop_requested(self, retry_state: Any) -> bool:
        return self._stopping

    def _permanent_failure(self, ready: list[TraceRecord], exc: BaseException, replay: bool) -> None:
        """Find the traces the store refuses (one by one) and dead-letter them with the reason."""
        if len(ready) == 1:
            self._dead_letter(ready, exc)
            return
        for trace in ready:
            try:
                delivery.export([trace])
            except Exception as exc1:  # noqa: BLE001
                if delivery.is_transient(exc1):
                    self._spill([trace])
                else:
                    self._dead_letter([trace], exc1)
            else:
                self._count("replayed" if replay else "exported")

    def _dead_letter(self, traces: list[TraceRecord], exc: BaseException) -> None:
        cause = exc.__cause__ or exc
        reason = f"{type(cause).__name__}: {cause}"[:4000]
        entries = [{"time": time.time(), "reason": "permanent export error", "error": reason,
                    "trace": t.to_dict()} for t in traces]
        # the log gets the first line: a database error goes on with its SQL parameters (trace content)
        self._warn_once("dead_letter", f"the store refused {len(traces)} trace(s); written to "
                        f"{os.path.abspath(self.cfg.dead_letter_file)}: {reason.splitlines()[0][:300]}")
        try:
            (self.spool or Spool(self.cfg.spool_dir, self.cfg.spool_max_bytes)).dead_letter(
                self.cfg.dead_letter_file, entries)
        except Exception as exc2:  # noqa: BLE001 - OSError, or a value json/utf-8 cannot write: count, go on
            self._warn_once("dead_letter_write", f"writing the dead-letter file failed: {type(exc2).__name__}: {exc2}")
            self._count("dropped.dead_letter_error", len(traces))
            return
        self._count("dead_lettered", len(traces))

    def _spill(self, ready: list[TraceRecord]) -> None:
        if not ready:
            return
        if self.spool is None:
            self._count("dropped.spool_unavailable", len(ready))
            return
        try:
            self.spool.append([t.to_dict() for t in ready])
        except SpoolError as exc:
            reason = "spool_full" if "size cap" in str(exc) else "spool_error"
            self._warn_once(reason, f"{exc}; {len(ready)} trace(s) dropped (buffer.dropped.{reason})")
            self._count(f"dropped.{reason}", len(ready))
            if reason == "spool_error":
                self._count("spool_errors")
            return
        self._count("spilled", len(ready))

    # ================================================================== replay
    def _should_replay(self) -> bool:
        if self.spool is None or not self.spool.pending:
            return False
        return not self._store_is_down() or time.monotonic() >= self._store_down_until

    def _replay_chunk(self) -> None:
        """Replay up to one batch of spooled traces, oldest first, skipping ids already stored."""
        spool = self.spool
        assert spool is not None
        chunk = spool.next_chunk(self.cfg.batch_size)
        if chunk is None:
            return
        token, records, torn = chunk
        if torn:
            self._count("spool_torn", torn)
            self._warn_once("torn", f"skipped {torn} torn record(s) in the spool (a crash mid-write)")
        traces = []
        for rec in records:
            try:
                traces.append(TraceRecord.from_dict(rec))
            except Exception:  # noqa: BLE001 - a record that does not parse is as good as torn
                self._count("spool_torn")
        try:
            existing = self._existing_ids([t.mlflow_trace_id for t in traces])
        except Exception as exc:  # noqa: BLE001
            if delivery.is_transient(exc):
                self._store_down(exc)
                return
            existing = set()
        fresh = [t for t in traces if t.mlflow_trace_id not in existing]
        if len(fresh) < len(traces):
            self._count("replay_skipped_existing", len(traces) - len(fresh))
        if not fresh or self._export(fresh, replay=True):
            spool.commit(token)

    def _existing_ids(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        # imported on first replay, not in enable(): MLflow's tracking client and store take seconds to import
        from mlflow.tracing.client import TracingClient

        store = TracingClient(self.tracking_uri).store
        return {info.trace_id for info in store.batch_get_trace_infos(ids)}

    # ================================================================== store health
    def _store_is_down(self) -> bool:
        return self._store_down_until > 0.0

    def _store_down(self, exc: BaseException) -> None:
        first = self._store_down_until == 0.0
        self._store_down_until = time.monotonic() + self._probe_backoff
        self._probe_backoff = min(self.cfg.retry_max_backoff, max(0.05, self._probe_backoff * 2))
        self._count("store_unavailable_events" if first else "store_probes_failed")
        if first:
            logger.warning("dspy-tracekit: the trace store is unreachable (%s: %s); spooling traces to %s "
                           "until it is back", type(exc).__name__, exc,
                           self.spool.directory if self.spool else "<no spool>")

    def _store_up(self) -> None:
        if self._store_down_until:
            logger.info("dspy-tracekit: the trace store is reachable again; replaying the spool")
        self._store_down_until = 0.0
        self._probe_backoff = self.cfg.retry_initial_backoff

    # ================================================================== flush / shutdown
    def pending(self) -> int:
        with self._lock:
            return self._pending_locked()

    def _pending_locked(self) -> int:
        spooled = self.spool.pending if self.spool is not None else 0
        return (len(self._queue) + len(self._overflow) + self._inflight + self._spilling + spooled
                + self._claiming)

    def flush(self, timeout: float) -> bool:
        """Wait until every taken trace is in the store (or refused and counted); False on timeout."""
        deadline = time.monotonic() + max(0.0, timeout)
        if self.spool is not None and self.spool.pending:
            self._start_worker()
        with self._lock:
            self._flushing += 1
            self._work.notify_all()
            self._spill_cv.notify_all()
            try:
                while self._pending_locked():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._worker is None:
                        return False
                    self._work.notify_all()
                    self._idle.wait(min(remaining, 0.05))
                return True
            finally:
                self._flushing -= 1

    def shutdown(self, timeout: float) -> None:
        """Stop the threads, waiting at most ``timeout`` for them; what is still queued then goes to the
        spool (local disk: not bounded by ``timeout``), or is counted as ``dropped.shutdown_timeout``
        without a spool. A batch a thread is still exporting is counted as ``shutdown_in_flight``."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            if self._closed:
                return
            self._stopping = True
            self._stop_event.set()
            self._work.notify_all()
            self._spill_cv.notify_all()
            self._space.notify_all()
        for thread in (self._spiller, self._worker):
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._closed = True
            left = list(self._queue) + [(t, 0) for t in self._overflow]
            self._queue.clear()
            self._overflow.clear()
            self._bytes = 0
            self._space.notify_all()
            in_flight = self._inflight + self._spilling
        if in_flight:
            # the store holds a thread past the deadline (e.g. MLflow's HTTP retries): their outcome is
            # unknown now; they are stored or spooled only if the process lives long enough
            self._count("shutdown_in_flight", in_flight)
            self._warn_once("in_flight", f"{in_flight} trace(s) were still being exported when shutdown's "
                            "timeout ran out (buffer.shutdown_in_flight)")
        if left:
            traces = [t for t, _ in left]
            if self.spool is not None:
                self._spill(delivery.prepare(traces))  # never dropped while the spool can take them
            else:
                self._count("dropped.shutdown_timeout", len(traces))
        if self.spool is not None:
            self.spool.close()

    # ================================================================== fork
    def after_fork_in_child(self) -> None:
        """A forked child starts empty: the parent's queue, threads and spool files stay the parent's."""
        self._counts = Counter()
        self._init_runtime()
        if self.spool is not None:
            self.spool.forget_after_fork()

    # ================================================================== counters
    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _warn_once(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        logger.warning("dspy-tracekit buffer: %s", message)

    def counters(self) -> dict[str, int | float]:
        with self._lock:
            out: dict[str, int | float] = {k: 0 for k in ("queued", "exported", "retried", "spilled", "replayed",
                                                          "dead_lettered")}
            out.update(self._counts)
            out["queue_depth"] = len(self._queue)
            out["spill_queue_depth"] = len(self._overflow) + self._spilling
            out["queue_bytes_estimate"] = self._bytes
            out["span_bytes_estimate"] = self._span_bytes.value
            if self.spool is not None:
                out["spool_pending"] = self.spool.pending
                out["spool_bytes"] = self.spool.bytes_on_disk
                out["spool_errors"] = self._counts.get("spool_errors", 0)
            else:
                out["spool_unavailable"] = 1 if self.spool_unavailable else 0
            return out
