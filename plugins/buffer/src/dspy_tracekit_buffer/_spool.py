"""The durable spool: append-only, framed, fsync'd files of prepared (redacted) traces.

One record per line::

    <payload length, 8 hex> <crc32 of payload, 8 hex> <payload: trace.to_dict() as JSON>\\n

The length and checksum let a reader detect a record torn by a crash (SIGKILL, power loss,
full disk) and skip it: JSON escapes newlines, so the reader resynchronises at the next ``\\n``.

Each process writes its own files (``spool-<time_ns>-<pid>-<seq>.tks``) and holds an exclusive
``flock`` on the one it is writing and on the ones it is replaying: a crashed process's locks are
gone, so the next ``enable()`` in any process can claim and replay its files. Files are replayed in
name order (creation time) and deleted once every record is in the store.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

SUFFIX = ".tks"
PREFIX = "spool-"
DEAD_LETTER = "dead-letter.jsonl"
_HEADER_LEN = 18  # "xxxxxxxx xxxxxxxx "


class SpoolError(OSError):
    """Writing to the spool failed (unwritable directory, full disk, size cap)."""


def _utf8(text: str) -> bytes:
    # A lone surrogate ("\udc80") can only sit inside a JSON string, where "\\udc80" is its JSON escape:
    # backslashreplace writes exactly that, so the record stays valid JSON and reads back the same.
    return text.encode("utf-8", "backslashreplace")


def encode_record(record: dict[str, Any]) -> bytes:
    payload = _utf8(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
    return b"%08x %08x " % (len(payload), zlib.crc32(payload)) + payload + b"\n"


def decode_records(data: bytes, start: int = 0) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """Yield ``(end_offset, record)`` for each record from ``start``; ``record`` is None when torn."""
    pos = start
    n = len(data)
    while pos < n:
        nl = data.find(b"\n", pos)
        line_end = n if nl < 0 else nl
        record = _decode_line(data, pos, line_end)
        pos = n if nl < 0 else nl + 1
        yield pos, record


def _decode_line(data: bytes, start: int, end: int) -> dict[str, Any] | None:
    if end - start < _HEADER_LEN or data[start + 8:start + 9] != b" " or data[start + 17:start + 18] != b" ":
        return None
    try:
        length = int(data[start:start + 8], 16)
        crc = int(data[start + 9:start + 17], 16)
    except ValueError:
        return None
    payload = data[start + _HEADER_LEN:end]
    if len(payload) != length or zlib.crc32(payload) != crc:
        return None
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def check_writable(directory: str) -> None:
    """Create ``directory`` if needed and prove a file can be written and fsync'd there."""
    os.makedirs(directory, exist_ok=True)
    probe = os.path.join(directory, f".probe-{os.getpid()}-{threading.get_ident()}")
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"ok")
        os.fsync(fd)
    finally:
        os.close(fd)
        try:
            os.unlink(probe)
        except OSError:
            pass


_BLOCK = 1 << 20  # replay reads files in blocks of this size: memory stays bounded whatever the spool holds


@dataclass
class _Claimed:
    """A spool file this process replays: its open locked descriptor and how far it got."""

    path: str
    fd: int
    offset: int = 0
    records_left: int = 0


@dataclass
class SpoolStats:
    written: int = 0
    torn: int = 0
    errors: int = 0
    last_error: str = ""
    extra: dict[str, int] = field(default_factory=dict)


class Spool:
    """Append-only spool directory shared by the worker and the spiller thread (thread-safe)."""

    def __init__(self, directory: str, max_bytes: int, rotate_bytes: int = 8 * 1024 * 1024):
        self.directory = os.path.abspath(directory)
        self.max_bytes = max_bytes
        self.rotate_bytes = rotate_bytes
        self.stats = SpoolStats()
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: str | None = None
        self._size = 0  # bytes in the file being written
        self._records_in_current = 0
        self._seq = 0
        self._claimed: list[_Claimed] = []
        self._claimed_paths: set[str] = set()
        #: bytes of spool files on disk that this process knows of (its own and claimed ones).
        self.bytes_on_disk = 0
        #: records waiting for replay (written by this process or claimed from a dead one).
        self.pending = 0

    # ------------------------------------------------------------------ writing
    def append(self, records: list[dict[str, Any]]) -> int:
        """Append records and fsync once; returns how many were written. Raises :class:`SpoolError`."""
        if not records:
            return 0
        blob = b"".join(encode_record(r) for r in records)
        with self._lock:
            if self.bytes_on_disk + len(blob) > self.max_bytes:
                raise SpoolError(errno.ENOSPC, f"spool size cap of {self.max_bytes} bytes reached "
                                 f"in {self.directory}")
            if self._fd is None or self._size >= self.rotate_bytes:
                self._rotate_locked()
            assert self._fd is not None
            start = self._size
            try:
                view = memoryview(blob)
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
                os.fsync(self._fd)
            except OSError as exc:
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                # Cut the partial record so the file stays clean; a new file is opened next time.
                try:
                    os.ftruncate(self._fd, start)
                except OSError:
                    pass
                self._close_current_locked()
                raise SpoolError(exc.errno or errno.EIO, f"writing the spool in {self.directory} "
                                 f"failed: {exc.strerror or exc}") from exc
            self._size += len(blob)
            self.bytes_on_disk += len(blob)
            self._records_in_current += len(records)
            self.pending += len(records)
            self.stats.written += len(records)
            return len(records)

    def _rotate_locked(self) -> None:
        self._close_current_locked()
        os.makedirs(self.directory, exist_ok=True)
        self._seq += 1
        name = f"{PREFIX}{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}{SUFFIX}"
        path = os.path.join(self.directory, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd, self._path, self._size, self._records_in_current = fd, path, 0, 0

    def _close_current_locked(self) -> None:
        """Hand the file being written over to the replay list (keeps its lock)."""
        fd, path = self._fd, self._path
        self._fd = self._path = None
        records, self._records_in_current, self._size = self._records_in_current, 0, 0
        if fd is None or path is None:
            return
        if records == 0:
            os.close(fd)
            _unlink(path)
            return
        self._claimed.append(_Claimed(path, fd, 0, records))
        self._claimed_paths.add(path)

    # ------------------------------------------------------------------ replay
    def has_orphans(self) -> bool:
        """Whether the directory holds spool files this process does not hold (a directory listing)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return False
        with self._lock:
            mine = self._claimed_paths | {self._path}
        return any(n.startswith(PREFIX) and n.endswith(SUFFIX) and os.path.join(self.directory, n) not in mine
                   for n in names)

    def claim_orphans(self) -> int:
        """Claim spool files of dead processes (no lock held on them); returns records claimed.

        Reads each file once in blocks to count its records (lines), without decoding or keeping them:
        the buffer calls this on its worker thread, and replay streams the files (:meth:`next_chunk`).
        """
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.startswith(PREFIX) and n.endswith(SUFFIX))
        except FileNotFoundError:
            return 0
        claimed = 0
        with self._lock:
            for name in names:
                path = os.path.join(self.directory, name)
                if path in self._claimed_paths or path == self._path:
                    continue
                try:
                    fd = os.open(path, os.O_RDWR)
                except OSError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)  # a live process writes or replays it
                    continue
                if os.fstat(fd).st_nlink == 0:  # replayed and deleted meanwhile
                    os.close(fd)
                    continue
                size, count = _count_lines(fd)
                self._claimed.append(_Claimed(path, fd, 0, count))
                self._claimed_paths.add(path)
                self.bytes_on_disk += size
                self.pending += count
                claimed += count
            self._claimed.sort(key=lambda c: os.path.basename(c.path))
        return claimed

    def has_pending(self) -> bool:
        with self._lock:
            return bool(self._claimed) or self._records_in_current > 0

    def next_chunk(self, limit: int) -> tuple[Any, list[dict[str, Any]], int] | None:
        """The next up to ``limit`` records to replay, oldest first: ``(token, records, torn)``.

        Nothing is consumed until :meth:`commit` is called with the token.
        """
        with self._lock:
            if not self._claimed and self._records_in_current > 0:
                self._close_current_locked()
            while self._claimed:
                c = self._claimed[0]
                records: list[dict[str, Any]] = []
                torn = 0
                end = c.offset
                for end, record in _read_records(c.fd, c.offset, limit):
                    if record is None:
                        torn += 1
                    else:
                        records.append(record)
                if records or torn:
                    return (c, end, len(records) + torn), records, torn
                self._finish_locked(c)
            return None

    def commit(self, token: Any) -> None:
        """Mark a chunk from :meth:`next_chunk` as stored; deletes the file when it is done."""
        c, end, count = token
        with self._lock:
            c.offset = end
            c.records_left = max(0, c.records_left - count)
            try:
                done = c.offset >= os.fstat(c.fd).st_size
            except OSError:
                done = True
            if done:
                self._finish_locked(c)
            # last: flush() reads ``pending`` without this lock and must not see 0 before the cleanup
            self.pending = max(0, self.pending - count)

    def _finish_locked(self, c: _Claimed) -> None:
        _unlink(c.path)
        try:
            os.close(c.fd)
        except OSError:
            pass
        self.pending = max(0, self.pending - c.records_left)
        if c in self._claimed:
            self._claimed.remove(c)
        self._claimed_paths.discard(c.path)
        self._recount_locked()

    def _recount_locked(self) -> None:
        """Size of the files this process holds, from the files themselves (the cap is checked on it)."""
        total = 0
        for fd in [self._fd] + [c.fd for c in self._claimed]:
            if fd is not None:
                try:
                    total += os.fstat(fd).st_size
                except OSError:
                    pass
        self.bytes_on_disk = total

    # ------------------------------------------------------------------ dead letters
    def dead_letter(self, path: str, entries: list[dict[str, Any]]) -> None:
        """Append JSON lines ``{"time", "reason", "error", "trace"}`` to the dead-letter file."""
        blob = b"".join(_utf8(json.dumps(e, ensure_ascii=False)) + b"\n" for e in entries)
        with self._lock:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, blob)
                os.fsync(fd)
            finally:
                os.close(fd)

    # ------------------------------------------------------------------ life cycle
    def close(self) -> None:
        """Release files and locks; what was not replayed stays on disk for the next run."""
        with self._lock:
            for fd in [self._fd] + [c.fd for c in self._claimed]:
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._fd = self._path = None
            self._claimed.clear()
            self._claimed_paths.clear()
            self._records_in_current = 0
            self.pending = 0

    def forget_after_fork(self) -> None:
        """In a forked child: the parent owns the open files; close our copies without unlocking."""
        self._lock = threading.Lock()
        for fd in [self._fd] + [c.fd for c in self._claimed]:
            if fd is not None:
                try:
                    os.close(fd)  # flock is on the shared open file description: the parent keeps it
                except OSError:
                    pass
        self._fd = self._path = None
        self._size = self._records_in_current = 0
        self._claimed = []
        self._claimed_paths = set()
        self.bytes_on_disk = 0
        self.pending = 0
        self.stats = SpoolStats()


def _count_lines(fd: int) -> tuple[int, int]:
    """(size, records) of a spool file, read in blocks: a torn last line counts as a record."""
    size = lines = 0
    last = b"\n"
    while True:
        block = os.pread(fd, _BLOCK, size)
        if not block:
            break
        size += len(block)
        lines += block.count(b"\n")
        last = block[-1:]
    return size, lines + (last != b"\n")


def _read_records(fd: int, offset: int, limit: int) -> list[tuple[int, dict[str, Any] | None]]:
    """Up to ``limit`` records from ``offset``: ``(end_offset, record or None when torn)``.

    Reads blocks until ``limit`` complete lines (or the end of the file) are in hand: memory holds one
    chunk of records, not the file.
    """
    out: list[tuple[int, dict[str, Any] | None]] = []
    buf = b""
    base = offset  # file offset of buf[0]
    pos = offset  # next byte to read
    while len(out) < limit:
        block = os.pread(fd, _BLOCK, pos)
        eof = not block
        buf += block
        pos += len(block)
        start = 0
        while len(out) < limit:
            nl = buf.find(b"\n", start)
            if nl < 0:
                if eof and start < len(buf):  # a torn last line without its newline
                    out.append((base + len(buf), _decode_line(buf, start, len(buf))))
                    start = len(buf)
                break
            out.append((base + nl + 1, _decode_line(buf, start, nl)))
            start = nl + 1
        buf = buf[start:]
        base += start
        if eof:
            break
    return out


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
