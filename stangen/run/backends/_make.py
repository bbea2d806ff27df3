"""A Stan program built by a make-driven toolchain (CmdStan, BridgeStan) into its compile-cache entry: the
steps those backends share. An entry holds ``model.stan``, the built product, ``compiler.log`` and
``build.json`` (the build's record: which installation built it, timings, stanc's --info)."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

from . import cache
from ._stanc import stanc_info, tail
from .base import backend_error

BUILD_RECORD = "build.json"
LOG = "compiler.log"
MAKE_JOBS = f"-j{max(1, min(2, os.cpu_count() or 1))}"  # a model build gains little from more


def cached(entry: Path, program: str, product: Path, installation: tuple[str, str]) -> dict | None:
    """The entry's build record, when the entry holds this program's built product from this installation
    (`installation`: the record's key naming it, and its value)."""
    try:
        meta = json.loads((entry / BUILD_RECORD).read_text())
        if (entry / "model.stan").read_text() != program or not product.is_file():
            return None
    except (OSError, ValueError):
        return None
    key, value = installation
    return meta if meta.get(key) == value else None


def prepare(entry: Path, program: str, product: Path, stanc: Path, backend: str) -> dict:
    """A fresh build in `entry`: what an earlier one left removed, the program written and checked by stanc
    (a program stanc rejects is reported as a stangen bug there); stanc's --info."""
    entry.mkdir(parents=True, exist_ok=True)
    for stale in (product, entry / BUILD_RECORD, entry / "model.hpp", entry / LOG):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    stan_file = entry / "model.stan"
    cache.atomic_write_text(stan_file, program)
    return stanc_info(stanc, program, stan_file, backend)


def run_make(cmd: list[str], folder: str, product: Path, *, toolchain: str, installation: str, backend: str,
             lock=None, leftovers: tuple[str, ...] = ("model.hpp",)) -> None:
    """Run `cmd` (make) in the toolchain's `folder`, its output appended to the entry's compiler.log, and
    remove the intermediate `leftovers`. A make that cannot run, fails or builds no `product` is a
    BackendError with the log's tail; `installation` names what to suspect ("the CmdStan installation")."""
    entry = product.parent
    log_path, stan_file = entry / LOG, entry / "model.stan"
    record = {"what": " ".join(cmd), "backend": backend, "program_path": str(stan_file)}
    try:
        with lock or contextlib.nullcontext(), open(log_path, "ab") as log:
            done = subprocess.run(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise backend_error(f"Could not run {toolchain}'s make in {folder}: {exc}", record) from exc
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    if done.returncode != 0 or not product.is_file():
        raise backend_error(
            f"Compiling the Stan program with {toolchain} failed. stanc accepted the program, so this is usually "
            f"a problem with the C++ toolchain or {installation} ({folder}). Last "
            f"compiler messages:\n{tail(log, 30) or '(none)'}\nThe program is at: {stan_file}",
            {**record, "stderr_tail": tail(log, 60)},
        )
    for leftover in leftovers:
        with contextlib.suppress(FileNotFoundError):
            (entry / leftover).unlink()


def record_build(entry: Path, meta: dict) -> dict:
    """Write the entry's build record (last: an entry without it is rebuilt)."""
    cache.atomic_write_text(entry / BUILD_RECORD, json.dumps(meta, indent=1))
    return meta
