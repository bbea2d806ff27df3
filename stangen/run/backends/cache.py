"""The on-disk cache of compiled models, shared by all stangen processes.

Layout (root = env ``STANGEN_CACHE`` or ``~/.cache/stangen``)::

    <root>/<backend>/<tag>/<key>/    one compiled program (backend-specific files)
    <root>/locks/<key>.lock          inter-process lock held while compiling <key>
    <root>/tmp/                      scratch space for builds (deleted afterwards)

The key is the sha256 of (backend name, Stan version, program text). `tag`
separates builds that cannot be shared although the key is equal (e.g. a
different Python ABI for the embedded backend's extension module).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from pathlib import Path
from typing import Iterator

from ...core import files
from .base import backend_error

__all__ = ["atomic_write_text", "cache_root", "entry_dir", "locked", "program_key", "scratch_dir"]

# flock() excludes other processes; this excludes other threads of this process
# (several threads may hold different keys' flocks, but builds chdir, which is
# process-wide, so the backends also serialize whole builds with a process lock).
_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def cache_root() -> Path:
    """The cache directory: env STANGEN_CACHE, else ~/.cache/stangen (created)."""
    env = os.environ.get("STANGEN_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "stangen"
    root = root.absolute()
    root.mkdir(parents=True, exist_ok=True)
    return root


def program_key(backend: str, stan_version: str, program: str) -> str:
    """sha256 over backend name, Stan version and program text."""
    h = hashlib.sha256()
    for part in (backend, stan_version, program):
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))  # length-prefixed: no ambiguity
        h.update(data)
    return h.hexdigest()


def entry_dir(backend: str, key: str, tag: str = "") -> Path:
    """The directory holding one cached build (not created)."""
    base = cache_root() / backend
    if tag:
        base = base / tag
    return base / key


def locate(backend: str, stan_version: str, tag: str, program: str) -> tuple[str, Path]:
    """(key, entry directory) of a program's cached build; the program must be non-empty text."""
    if not isinstance(program, str) or not program.strip():
        raise backend_error("Cannot compile an empty Stan program (stangen bug).", {"what": "compile"}, internal=True)
    key = program_key(backend, stan_version, program)
    return key, entry_dir(backend, key, tag)


def scratch_dir(prefix: str = "build-") -> Path:
    """A fresh temporary directory inside the cache (same filesystem as entries); what killed processes left
    there is cleared first (core.files.scratch_folder)."""
    return files.scratch_folder(cache_root() / "tmp", prefix)


@contextlib.contextmanager
def locked(key: str) -> Iterator[Path]:
    """Hold the inter-process (and inter-thread) lock for `key`; yields the lock file path."""
    with _thread_locks_guard:
        tlock = _thread_locks.setdefault(key, threading.Lock())
    locks = cache_root() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / f"{key}.lock"
    with tlock:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield path
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so readers never see a partial file (cache entries are shared: mode 0644)."""
    files.write_text(path, text, mode=0o644)
