"""Compiled Hyperscan databases kept on disk between processes (issue #12: first ``enable()`` ≤ 1 s).

Compiling the prefilter's database is about 0.13 s of CPU in every ``enable()``; loading its serialized
form (``hyperscan.loadb``) takes about 0.1 ms. A file is used only when all of these hold, else the
database is compiled as without a cache (and the file written again):

* its name is the SHA-256 of everything the compile reads: this format, Hyperscan's version, the
  platform and mode a database compiled here would have (``Database.info()``), every expression, id
  and flag, in order;
* it is a regular file owned by this user, not writable by group or others, in a directory that is
  neither (POSIX): nobody else can have put it there;
* it starts with this format's magic, the key (its own name: a file renamed or copied to another key is
  refused) and the SHA-256 of key and database bytes, and they match;
* Hyperscan deserializes it, and the result reports the same version, platform and mode.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import sys
import tempfile

import hyperscan

logger = logging.getLogger("dspy_tracekit.redact")

_MAGIC = b"dspy-tracekit hyperscan database 1\n"
_SUFFIX = ".hsdb"
#: files kept per directory (the newest); one per distinct prefilter config, ~0.5 MB each
KEEP = 16
#: what happened to each database asked for in this process (tests and benchmarks read it)
stats = {"compiled": 0, "loaded": 0, "rejected": 0, "written": 0}
_warned: set[str] = set()
_info: list[bytes] = []


def default_dir() -> str:
    """``$XDG_CACHE_HOME/dspy-tracekit/hyperscan`` (``~/.cache/...``; ``%LOCALAPPDATA%`` on Windows)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dspy-tracekit", "hyperscan")


def compiled_database(expressions: list[bytes], ids: list[int], flags: list[int],
                      cache_dir: str | None) -> hyperscan.Database:
    """A block-mode database of ``expressions``: from ``cache_dir`` when a trusted file holds it, else
    compiled (and stored there). ``cache_dir=None``: always compiled. Never raises for the cache's sake."""
    if cache_dir is None:
        return _compile(expressions, ids, flags)
    try:
        info = _platform_info()
        key = _key(info, expressions, ids, flags)
        path = os.path.join(cache_dir, key + _SUFFIX)
        db = _load(path, key, info)
        if db is not None:
            stats["loaded"] += 1
            return db
    except Exception as exc:  # noqa: BLE001 - a cache problem costs a compile, nothing else
        _note(cache_dir, f"{type(exc).__name__}: {exc}")
        return _compile(expressions, ids, flags)
    db = _compile(expressions, ids, flags)
    try:
        _store(cache_dir, path, key, hyperscan.dumpb(db))
    except Exception as exc:  # noqa: BLE001 - unwritable cache: compile every time, as without one
        _note(cache_dir, f"not written: {type(exc).__name__}: {exc}")
    return db


def _compile(expressions: list[bytes], ids: list[int], flags: list[int]) -> hyperscan.Database:
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=expressions, ids=ids, elements=len(expressions), flags=flags)
    stats["compiled"] += 1
    return db


def _platform_info() -> bytes:
    """What ``info()`` says of a database compiled here: Hyperscan's version, platform features, mode."""
    if not _info:
        probe = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        probe.compile(expressions=[b"a"], ids=[0], elements=1, flags=[0])
        _info.append(probe.info())
    return _info[0]


def _key(info: bytes, expressions: list[bytes], ids: list[int], flags: list[int]) -> str:
    h = hashlib.sha256(_MAGIC)
    h.update(hyperscan.__version__.encode() + b"\0" + info + b"\0" + str(hyperscan.HS_MODE_BLOCK).encode())
    for expr, i, f in zip(expressions, ids, flags, strict=True):
        h.update(b"\0%d\0%d\0%d\0" % (len(expr), i, f))
        h.update(expr)
    return h.hexdigest()


def _private(st: os.stat_result) -> bool:
    if os.name != "posix":
        return True
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _header(key: str, blob: bytes) -> bytes:
    return _MAGIC + key.encode() + b"\n" + hashlib.sha256(key.encode() + b"\0" + blob).digest()


def _load(path: str, key: str, info: bytes) -> hyperscan.Database | None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        folder = os.stat(os.path.dirname(path))
        if not (stat.S_ISREG(st.st_mode) and _private(st) and _private(folder)):
            return _reject(path, "owned by another user or writable by others")
        data = f.read()
    head = len(_MAGIC) + len(key) + 1 + 32
    blob = data[head:]
    if data[:head] != _header(key, blob):
        return _reject(path, "damaged or not made for this key (digest does not match)")
    try:
        db = hyperscan.loadb(blob, hyperscan.HS_MODE_BLOCK)
    except hyperscan.error as exc:
        return _reject(path, f"Hyperscan refused it ({exc})")
    if db.info() != info:
        return _reject(path, f"made for {db.info()!r}, here {info!r}")
    return db


def _reject(path: str, why: str) -> None:
    stats["rejected"] += 1
    if path not in _warned:
        _warned.add(path)
        logger.warning("dspy-tracekit redact: compiled-database cache file %s not used: %s (compiled instead)",
                       path, why)
    return None


def _store(cache_dir: str, path: str, key: str, blob: bytes) -> None:
    os.makedirs(cache_dir, mode=0o700, exist_ok=True)
    if not _private(os.stat(cache_dir)):
        raise PermissionError(f"{cache_dir} is writable by others or owned by another user")
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_header(key, blob) + blob)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    stats["written"] += 1
    _prune(cache_dir)


def _prune(cache_dir: str) -> None:
    try:
        entries = [e for e in os.scandir(cache_dir) if e.name.endswith(_SUFFIX)]
        entries.sort(key=lambda e: e.stat().st_mtime, reverse=True)
        for e in entries[KEEP:]:
            os.unlink(e.path)
    except OSError:  # another process pruned it meanwhile
        pass


def _note(where: str, what: str) -> None:
    if where not in _warned:
        _warned.add(where)
        logger.info("dspy-tracekit redact: compiled-database cache %s: %s", where, what)
