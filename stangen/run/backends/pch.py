"""A precompiled header for the embedded backend's model builds (GCC), built once per machine; and no -g.

Most of a model's compile time goes to parsing Stan's headers (`stan/model/model_header.hpp`), which are the
same for every model. CmdStan precompiles them once; httpstan does not. Here the first model build of a
machine also compiles that header, with exactly the command line of the model build (GCC uses a precompiled
header only when the macros and code-generation flags match, and silently parses the text otherwise), into
``<cache>/pystan/<tag>/pch-<flags key>/``. Every later build adds ``-include <that header>``. The key covers
the compiler (its path and version), httpstan's version and the whole command line, so a new compiler, a new
httpstan or other flags build a new header automatically.

The hook is httpstan_api.compiler_commands (distutils' ``CCompiler.spawn``), wrapped only while one model
builds (under the backend's build lock): it sees the real command httpstan's setuptools build runs, so the flags cannot drift apart. It also
leaves out the -g that Python's CFLAGS add (measured on sleepstudy's program: 30 s with it, 22 s without), and
adds CmdStan's -Wno-ignored-attributes (Eigen's warnings were 1.3 MB of each model's compiler.log).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ...core import files
from . import cache, httpstan_api

HEADER_NAME = "stan_model_header.hpp"
HEADER_TEXT = "// Stan's model header, precompiled once per machine by stangen\n#include <stan/model/model_header.hpp>\n"
DISABLE_ENV = "STANGEN_NO_PCH"  # set to 1 to build without it (to measure, or if a compiler mishandles it)


class _NoHeader(Exception):
    """The compiler did not precompile the header (the model builds without it)."""


@dataclass
class HeaderUse:
    """What happened to the precompiled header during one model build."""

    path: Path | None = None  # the header given to -include (None: not used)
    built_seconds: float | None = None  # set when this build had to make it first
    problem: str = ""  # why it was not used
    commands: list[list[str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"used": self.path is not None, "header": str(self.path) if self.path else None,
                "built_seconds": self.built_seconds, "problem": self.problem}


def _is_model_compile(cmd: list[str]) -> bool:
    return "-c" in cmd and "-x" not in cmd and any(a.endswith(".cpp") for a in cmd)


def model_compile_flags(cmd: list[str]) -> list[str]:
    """A model compile's command as stangen runs it. Python's CFLAGS add -g: debug information nobody reads, a
    quarter of the compile time (and 98% of the object's size); it changes no generated code, so the draws stay
    the same. Eigen's ~570 "ignoring attributes" warnings per model (1.3 MB of compiler.log, 4% of the compile
    time) are silenced, as CmdStan's makefiles do."""
    out = [a for a in cmd if a != "-g"]
    return out if "-Wno-ignored-attributes" in out else [*out, "-Wno-ignored-attributes"]


def _flags(cmd: list[str]) -> tuple[list[str], str]:
    """The model compile's command without its source and output, and the source's folder."""
    out, source, skip = [], "", False
    for i, arg in enumerate(cmd):
        if skip:
            skip = False
            continue
        if arg == "-o":
            skip = True
            continue
        if arg.endswith(".cpp"):
            source = arg
            continue
        out.append(arg)
    folder = str(Path(source).parent)
    # the model's own folder (an -I of httpstan's) is not part of the header's identity
    return [a for a in out if a not in (f"-I{folder}",)], folder


def _compiler_identity(compiler: str) -> str:
    path = shutil.which(compiler) or compiler
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        version = "?"
    return f"{os.path.realpath(path)}\n{version}"


def header_key(flags: list[str], httpstan_version: str) -> str:
    h = hashlib.sha256()
    for part in (_compiler_identity(flags[0]), httpstan_version, "\0".join(flags)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def ensure_header(flags: list[str], folder: Path, log_path: Path, use: HeaderUse) -> Path | None:
    """The precompiled header for these flags, built first if needed (under an inter-process lock)."""
    header, pch, done = folder / HEADER_NAME, folder / f"{HEADER_NAME}.gch", folder / "built.ok"
    if done.is_file() and pch.is_file():
        return header
    with cache.locked(f"pch-{folder.name}"):
        if done.is_file() and pch.is_file():
            return header
        folder.mkdir(parents=True, exist_ok=True)
        cache.atomic_write_text(header, HEADER_TEXT)
        start = time.perf_counter()

        def precompile(tmp: Path) -> None:
            cmd = [*flags, "-x", "c++-header", str(header), "-o", str(tmp)]
            use.commands.append(cmd)
            with open(log_path, "ab") as log:
                log.write(("precompiling Stan's header: " + " ".join(cmd) + "\n").encode())
                log.flush()
                done_run = subprocess.run(cmd, stdout=log, stderr=log, timeout=3600)
            if done_run.returncode != 0 or not tmp.stat().st_size:
                raise _NoHeader(f"the compiler could not precompile the header (exit code {done_run.returncode})")
        try:
            files.write_with(pch, precompile, mode=0o644)
        except _NoHeader as problem:
            use.problem = str(problem)
            return None
        use.built_seconds = time.perf_counter() - start
        cache.atomic_write_text(done, f"{use.built_seconds:.1f} s\n{' '.join(use.commands[-1])}\n")
    return header


@contextlib.contextmanager
def precompiled_header(root: Path, httpstan_version: str, log_path: Path) -> Iterator[HeaderUse]:
    """While a model builds through distutils, give its compile the precompiled header (built first if this
    machine has none yet). Yields a HeaderUse that says afterwards what happened."""
    use = HeaderUse()
    if os.environ.get(DISABLE_ENV) == "1":
        use.problem = f"{DISABLE_ENV}=1"
        yield use
        return

    def rewrite(cmd: list[str]) -> list[str]:
        if _is_model_compile(cmd):
            cmd = model_compile_flags(cmd)
            if use.path is None and not use.problem:
                flags, _ = _flags(cmd)
                try:
                    use.path = ensure_header(flags, root / f"pch-{header_key(flags, httpstan_version)}", log_path,
                                             use)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    use.problem = f"{type(exc).__name__}: {exc}"
            if use.path is not None:
                cmd = [*cmd, "-include", str(use.path), "-Winvalid-pch"]
        use.commands.append(cmd)
        return cmd

    with httpstan_api.compiler_commands(rewrite):
        yield use
    if use.path is not None:  # GCC says so with -Winvalid-pch when it had to parse the header instead
        with contextlib.suppress(OSError):
            log = log_path.read_text(errors="replace")
            if "not using" in log or "invalid" in log.lower() and ".gch" in log:
                use.problem = "the compiler did not accept the precompiled header (see compiler.log)"
