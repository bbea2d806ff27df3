"""Every use of httpstan's internals, in one place: the embedded backend (pystan.py) and the precompiled header
(pch.py) reach httpstan only through this module, and tests/test_httpstan_api.py checks each of these against
the installed httpstan, so a new httpstan is checked here (pyproject.toml pins it below 4.14).

What is used, none of it httpstan's public (HTTP) API:
- the compiled model: `httpstan.models.calculate_model_name`, `build_services_extension_module` (a coroutine,
  with the C++ build through setuptools in the current folder) and `httpstan.cache.model_directory` (where it
  puts the module, under XDG_CACHE_HOME);
- the services' calling convention: `module.<service>(socket_path, data, init, **arguments)` with the services
  `hmc_nuts_diag_e_adapt_wrapper` and `fixed_param_wrapper`; `module.get_param_names(data)`, `get_dims(data)`;
- the socket message format: newline-delimited JSON messages with a "topic" (sample, logger, diagnostic,
  initialization) and "values" (ChainMessages, parse_draw_lines);
- how the build runs the compiler: setuptools' `CCompiler.spawn` (compiler_commands).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import importlib.util
import json
import platform
import re
import sys
from collections import deque
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator

import numpy as np

from .base import elapsed_seconds
from .chains import PROGRESS

NUTS = "hmc_nuts_diag_e_adapt_wrapper"  # the services module's NUTS with a diagonal metric, adapted
FIXED_PARAM = "fixed_param_wrapper"  # for a program without parameters
_MODULES: dict[str, Any] = {}  # loaded extension modules by path


def installed() -> bool:
    return importlib.util.find_spec("httpstan") is not None


def load() -> Any:
    """httpstan with the submodules used here, imported on first use (ImportError when missing or broken)."""
    import httpstan  # the engine of the embedded backend: loaded only when it is used
    import httpstan.cache  # noqa: F401
    import httpstan.models  # noqa: F401
    return httpstan


def version() -> str:
    return load().__version__


# -- versions and locations ---------------------------------------------------------------------------------

def _httpstan_dir() -> Path:
    return Path(load().__file__).parent


def stan_version() -> str:
    """The Stan version httpstan ships (its headers' version.hpp)."""
    try:
        text = (_httpstan_dir() / "include" / "stan" / "version.hpp").read_text()
        parts = [re.search(rf"#define STAN_{p} (\d+)", text).group(1) for p in ("MAJOR", "MINOR", "PATCH")]
        return ".".join(parts)
    except (OSError, AttributeError):  # pragma: no cover
        return f"unknown (httpstan {version()})"


def build_tag() -> str:
    """What a built extension module depends on besides the program text."""
    return f"httpstan-{version()}-{sys.implementation.cache_tag}-{platform.machine()}"

# -- the compiled model ---------------------------------------------------------------------------------------

def cached_module(program: str) -> Path | None:
    """The services module httpstan's cache holds for this program (built before, by stangen or pystan)."""
    models = load().models
    return module_file(load().cache.model_directory(models.calculate_model_name(program)))


def build_module(program: str) -> None:
    """Compile the program's services module into httpstan's cache (see cached_module). The C++ build runs
    in the current folder (setuptools' build/temp.*), with httpstan's cache under XDG_CACHE_HOME."""
    _run_coroutine(load().models.build_services_extension_module(program))


def _run_coroutine(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # called from inside a running event loop (e.g. Jupyter): use a helper thread
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@contextlib.contextmanager
def compiler_commands(rewrite: Callable[[list[str]], list[str]]) -> Iterator[None]:
    """While a model builds, pass every compiler command through `rewrite` (setuptools' copy of distutils,
    which httpstan's build uses, may be loaded twice, as `distutils` and as `setuptools._distutils`: both
    CCompiler classes are wrapped)."""
    classes = []
    for name in ("distutils.ccompiler", "setuptools._distutils.ccompiler"):
        with contextlib.suppress(ImportError):
            cls = importlib.import_module(name).CCompiler
            if cls not in classes:
                classes.append(cls)
    originals = {cls: cls.__dict__["spawn"] for cls in classes}

    def spawn(self, cmd, **kwargs):
        original = next(originals[cls] for cls in type(self).__mro__ if cls in originals)
        return original(self, rewrite([str(a) for a in cmd]), **kwargs)

    for cls in classes:
        cls.spawn = spawn
    try:
        yield
    finally:
        for cls, original in originals.items():
            cls.spawn = original


# -- the services ---------------------------------------------------------------------------------------------

def module_file(directory: Path) -> Path | None:
    """The compiled services module in a folder (httpstan names it stan_services*.so), if any."""
    try:
        for p in sorted(directory.iterdir()):
            if p.is_file() and any(p.name.endswith(s) for s in EXTENSION_SUFFIXES) and p.name.startswith("stan_services"):
                return p
    except FileNotFoundError:
        pass
    return None


def load_module(path: str) -> Any:
    """The compiled services module at `path`, loaded once per process."""
    module = _MODULES.get(path)
    if module is None:
        spec = importlib.util.spec_from_file_location("stan_services", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        _MODULES[path] = module
    return module


def parameter_names_and_dims(module: Any, data: dict) -> tuple[list[str], list[list[int]]]:
    """The program's variables (parameters, transformed parameters, generated quantities) and their dims,
    given the data (Stan checks the data here: a ValueError/RuntimeError names what is wrong)."""
    return list(module.get_param_names(data)), [list(d) for d in module.get_dims(data)]


def run_service(module: Any, function: str, socket_path: str, data: dict, arguments: dict,
                init: dict | None = None) -> int:
    """Run a service (NUTS, FIXED_PARAM) of the module; its messages go to the Unix socket at socket_path.
    `init`: initial values of some parameters (as data: numpy arrays by name); the others start uniform in
    (-init_radius, init_radius). Returns the service's return code (0: ok)."""
    return int(getattr(module, function)(socket_path, data, init or {}, **arguments))


# -- the socket messages --------------------------------------------------------------------------------------

MAX_LOG_LINES = 5000  # Stan messages kept per chain for the run's log


class ChainMessages:
    """Reassembles and sorts the newline-delimited JSON messages of one chain.

    `feed(chunk, source)` accepts raw bytes exactly as received from a socket,
    in any batching: several messages per chunk, a message split over chunks,
    a progress line cut in the middle. Only complete lines are interpreted; a
    line that is not valid JSON is kept in the log tail, never raised on.
    `source` identifies the connection (each httpstan writer has its own).
    """

    def __init__(self, tail_size: int = 60):
        self._partial: dict[Hashable, bytes] = {}
        self._discard: set[Hashable] = set()  # diagnostic connections: bytes are read, not parsed
        self.draw_lines: list[bytes] = []
        self.sampler_notes: list[str] = []  # "Adaptation terminated", step size, inverse metric
        self.log_tail: deque[str] = deque(maxlen=tail_size)
        self.log_counts: dict[str, int] = {}  # how often each message appeared (bounded)
        self.log_lines: list[str] = []  # every message in order, for the run's log (bounded)
        self.iteration = 0
        self.total = 0
        self.phase = ""
        self.bad_lines = 0
        self.elapsed: dict[str, float] = {}  # Stan's own timing: 'warmup', 'sampling' → seconds

    def feed(self, chunk: bytes, source: Hashable = 0) -> None:
        if source in self._discard:
            return
        buf = self._partial.pop(source, b"") + chunk
        if b"\n" not in buf:
            self._partial[source] = buf
            return
        *lines, rest = buf.split(b"\n")
        if rest:
            self._partial[source] = rest
        for line in lines:
            self._line(line, source)
            if source in self._discard:
                return

    def close(self, source: Hashable = 0) -> None:
        """The connection ended: interpret a final line without newline, if any."""
        rest = self._partial.pop(source, b"")
        if rest.strip() and source not in self._discard:
            self._line(rest, source)
        self._discard.discard(source)

    def _line(self, line: bytes, source: Hashable) -> None:
        if not line.strip():
            return
        head = line[:64]
        if b'"topic":"sample"' in head:
            if b'"values":{' in head:
                self.draw_lines.append(line)
            else:
                msg = self._decode(line)
                if msg is not None:
                    self.sampler_notes.extend(str(v) for v in msg)
            return
        if b'"topic":"logger"' in head:
            msg = self._decode(line)
            if msg is not None:
                for text in msg:
                    self._log(str(text))
            return
        if b'"topic":"diagnostic"' in head:
            self._discard.add(source)  # per-iteration diagnostics: large and unused
            self._partial.pop(source, None)
            return
        if b'"topic":"initialization"' in head:
            return
        self.bad_lines += 1
        self.log_tail.append(line.decode("utf-8", "replace")[:500])

    def _decode(self, line: bytes) -> list | None:
        try:
            values = json.loads(line)["values"]
        except (ValueError, KeyError, TypeError):
            self.bad_lines += 1
            self.log_tail.append(line.decode("utf-8", "replace")[:500])
            return None
        return values if isinstance(values, list) else [values]

    def _log(self, text: str) -> None:
        m = PROGRESS.search(text)
        if m:
            self.iteration, self.total, self.phase = int(m.group(1)), int(m.group(2)), m.group(3).lower()
            return
        level, sep, body = text.partition(":")
        if not sep or level not in {"debug", "info", "warn", "error", "fatal"}:
            level, body = "info", text
        body = body.strip()
        self.elapsed.update(elapsed_seconds(body))
        if body:
            text = body if level == "info" else f"{level}: {body}"
            self.log_tail.append(text)
            if len(self.log_lines) < MAX_LOG_LINES:
                self.log_lines.append(text)
            if text in self.log_counts or len(self.log_counts) < 1000:
                self.log_counts[text] = self.log_counts.get(text, 0) + 1

    def tail_text(self, lines: int = 15) -> str:
        """The last distinct messages, oldest first, repeated ones marked with their count."""
        seen: list[str] = []
        for text in reversed(self.log_tail):
            if text not in seen:
                seen.append(text)
            if len(seen) >= lines:
                break
        out = []
        for text in reversed(seen):
            n = self.log_counts.get(text, 1)
            out.append(f"{text}  [×{n}]" if n > 1 else text)
        return "\n".join(out)


def parse_draw_lines(lines: list[bytes]) -> tuple[list[str], np.ndarray]:
    """Sample-writer messages → (column names, float64 array (draws, columns)).

    Uses simdjson (a pystan dependency; ~5x faster than json here) where it can:
    it rejects the NaN/Infinity tokens Stan may write, so such lines go through json.
    """
    if not lines:
        return [], np.empty((0, 0))
    try:
        import simdjson

        parser = simdjson.Parser()
    except ImportError:  # pragma: no cover
        parser = None
    columns: list[str] | None = None
    rows = []
    for line in lines:
        row = None
        if parser is not None:
            try:
                doc = parser.parse(line)
                values = doc["values"]
                if columns is None:
                    columns = list(values.keys())
                row = list(values.values())
                del values, doc  # the parser may only be reused once its objects are gone
            except (ValueError, KeyError, RuntimeError, TypeError):
                row = None
        if row is None:
            values = json.loads(line)["values"]
            if columns is None:
                columns = list(values)
            row = list(values.values())
        rows.append(row)
    assert columns is not None
    width = len(columns)
    if any(len(r) != width for r in rows):
        raise ValueError("draws with differing numbers of columns")
    return columns, np.array(rows, dtype=np.float64).reshape(len(rows), width)


# --------------------------------------------------------------------------------------------
# running chains
