"""The embedded backend: httpstan's compiler and Stan services, without its HTTP server.

Compiling
    stanc (shipped with httpstan) checks the program first, so a broken program
    fails in a fraction of a second with the failing line shown. The C++ build
    then goes through ``httpstan.models.build_services_extension_module`` with
    the working directory set to a scratch folder inside the stangen cache
    (setuptools leaves ~50 MB of ``build/temp.*/*.o`` files in the cwd) and
    httpstan's own cache redirected into that folder; the resulting extension
    module is moved into the stangen cache entry and the scratch folder deleted.
    A previously built module in httpstan's own (real) cache is reused by copy.

Sampling
    Each chain runs ``hmc_nuts_diag_e_adapt_wrapper`` of the compiled module in
    its own (forked) process. The module reports through httpstan's socket
    callbacks: four Unix-socket connections per chain (logger, init, sample and
    diagnostic writers), each a stream of newline-terminated JSON messages. The
    parent process owns all sockets and reassembles complete lines per
    connection before looking at them (`httpstan_api.ChainMessages`), so however the bytes
    are batched by the kernel, no message is ever seen in pieces. (httpstan's
    own HTTP view inspects raw ``recv`` chunks and fails with
    ``IndexError: pop from empty list`` when a chunk holds ``info:Iteration``
    without a whole progress line.)
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import multiprocessing
import os
import re
import select
import shlex
import shutil
import signal
import socket
import sys
import sysconfig
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core import files
from ..stanc import stanc_path
from . import cache, httpstan_api
from ._data import prepare_data
from ._draws import assemble_variables
from ._stanc import stanc_info, tail
from .base import CompiledModel, Draws, SamplerSettings, backend_error, check_threads, console_messages
from .chains import Progress, chain_failure, die_with_parent, exit_on_sigterm, display_mode
from .pch import precompiled_header

__all__ = ["PyStanBackend", "prepare_data"]

NAME = "pystan"
_BUILD_LOCK = threading.Lock()  # builds chdir and redirect fd 2: one per process at a time


@dataclass(frozen=True)
class PyStanHandle:
    module_path: str  # the compiled stan::services extension module
    program_path: str  # the program text, for error messages
    info: dict = field(default_factory=dict, compare=False)  # stanc --info


# --------------------------------------------------------------------------------------------
# compiling


def _missing_compilers() -> list[str]:
    missing = []
    for var, default in (("CXX", "g++"), ("CC", "gcc")):
        cmd = os.environ.get(var) or sysconfig.get_config_var(var) or default
        try:
            exe = shlex.split(cmd)[0]
        except (ValueError, IndexError):
            exe = cmd
        if not exe or shutil.which(exe) is None:
            missing.append(f"{exe or '(empty)'} (from {'$' + var if os.environ.get(var) else var})")
    return missing


class _NoFilenoStream(io.TextIOBase):
    """A sys.stderr stand-in without fileno(), so httpstan's build does not redirect fd 2 itself."""

    def __init__(self, target: Any):
        self._target = target

    def write(self, s: str) -> int:
        try:
            self._target.write(s)
        except Exception:  # noqa: BLE001 - never fail the build over a message
            pass
        return len(s)

    def flush(self) -> None:
        with contextlib.suppress(Exception):
            self._target.flush()

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


@contextlib.contextmanager
def _native_stderr_to(path: Path):
    """Send fd 2 (the compiler's stderr) to `path`; Python-level stderr still reaches the user."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(2)
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    old_stderr = sys.stderr
    user_stream = None
    try:
        try:
            writes_fd2 = old_stderr is not None and old_stderr.fileno() == 2
        except Exception:  # noqa: BLE001
            writes_fd2 = False
        if writes_fd2:
            user_stream = open(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
            target = user_stream
        else:
            target = old_stderr
        os.dup2(log_fd, 2)
        sys.stderr = _NoFilenoStream(target)
        yield
    finally:
        sys.stderr = old_stderr
        os.dup2(saved, 2)
        os.close(saved)
        os.close(log_fd)
        if user_stream is not None:
            with contextlib.suppress(Exception):
                user_stream.close()


# --------------------------------------------------------------------------------------------
# messages from one chain

def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM this chain process if the parent dies, and end it now if the parent is gone already."""
    die_with_parent(signal.SIGTERM)
    if os.getppid() != parent_pid:
        os._exit(1)


def _chain_main(
    module_path: str,
    function: str,
    socket_path: str,
    data: dict,
    kwargs: dict,
    init: dict,
    result_conn: Any,
    inherited: list[Any],
    parent_pid: int,
) -> None:  # pragma: no cover - runs in the chain process
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # (the parent's handler may have been inherited)
    _die_with_parent(parent_pid)
    for obj in inherited:  # the parent's sockets/pipes that fork copied: close (not just their fds)
        with contextlib.suppress(Exception):
            obj.close()
    try:
        module = httpstan_api.load_module(module_path)
        rc = httpstan_api.run_service(module, function, socket_path, data, kwargs, init)
        result_conn.send(("ok", int(rc), ""))
    except BaseException as exc:  # noqa: BLE001 - report everything to the parent
        with contextlib.suppress(Exception):
            result_conn.send(("error", type(exc).__name__, str(exc)))
    finally:
        with contextlib.suppress(Exception):
            result_conn.close()


@dataclass
class _Chain:
    index: int  # 0-based; Stan's chain id is index + 1
    socket_path: str
    listener: socket.socket
    messages: httpstan_api.ChainMessages = field(default_factory=httpstan_api.ChainMessages)
    conns: list[socket.socket] = field(default_factory=list)
    process: Any = None
    result_conn: Any = None
    result: tuple | None = None
    state: str = "waiting"  # waiting | running | done | failed

    def position(self) -> tuple[int, int, str]:
        return self.messages.iteration, self.messages.total, self.messages.phase


def _socket_dir() -> str:
    base = tempfile.gettempdir()
    if len(base) > 60:  # AF_UNIX paths are limited to ~107 bytes
        base = "/tmp"
    return str(files.scratch_folder(base, "stangen-"))


def _recv_available(chain: _Chain, conn: socket.socket) -> bool:
    """Read what is there; False when the writer closed the connection."""
    try:
        data = conn.recv(1 << 18)
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        data = b""
    if data:
        chain.messages.feed(data, conn.fileno())
        return True
    chain.messages.close(conn.fileno())
    chain.conns.remove(conn)
    conn.close()
    return False


def _accept_pending(chain: _Chain) -> None:
    while True:
        try:
            conn, _ = chain.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        conn.setblocking(False)
        chain.conns.append(conn)


def _drain(chain: _Chain, timeout: float = 30.0) -> None:
    """After the chain process exited: read every connection to its end."""
    deadline = time.monotonic() + timeout
    _accept_pending(chain)
    while chain.conns and time.monotonic() < deadline:
        readable, _, _ = select.select(chain.conns, [], [], 0.2)
        for conn in readable:
            while _recv_available(chain, conn):
                try:
                    more = select.select([conn], [], [], 0)[0]
                except (OSError, ValueError):
                    break
                if not more:
                    break
        _accept_pending(chain)
    for conn in list(chain.conns):
        chain.messages.close(conn.fileno())
        conn.close()
    chain.conns.clear()


def _stop_process(process: Any) -> None:
    if process is None:
        return
    if process.exitcode is None:
        with contextlib.suppress(Exception):
            process.terminate()
        process.join(3)
        if process.exitcode is None:
            with contextlib.suppress(Exception):
                process.kill()
            process.join(3)
    else:
        process.join(0.1)


# --------------------------------------------------------------------------------------------
# the backend


class PyStanBackend:
    """Stan through httpstan's compiled services module, run in-process (no HTTP server)."""

    name = NAME
    aliases = ("embedded", "httpstan")
    summary = "embedded"
    # httpstan builds every model with STAN_THREADS but gives no way to set how many threads a chain uses
    threads_within_chain = False
    # httpstan's services start NUTS from the unit metric: SamplerSettings.inv_metric is not used
    takes_initial_metric = False
    takes_inits = True  # the services' init context
    chain_processes = True  # one forked process per chain

    @classmethod
    def usable(cls, *, explain: bool = False) -> bool:
        return httpstan_api.installed()

    def __init__(self) -> None:
        try:
            httpstan_api.load()
        except ImportError as exc:  # pragma: no cover
            raise backend_error(
                "The embedded Stan backend needs the 'pystan' package (which provides httpstan): "
                f"pip install pystan. ({exc})",
                {"what": "import httpstan", "backend": NAME},
            ) from exc
        self.stan_version = httpstan_api.stan_version()
        self._tag = httpstan_api.build_tag()
        self.last_header: dict | None = None  # the precompiled header's use in the last build

    # ---------------------------------------------------------------- compile

    def compile(self, program: str, *, quiet: bool = False) -> CompiledModel:
        start = time.perf_counter()
        key, entry = cache.locate(self.name, self.stan_version, self._tag, program)
        model = self._cached(entry, program, key, start)
        if model is not None:
            return model
        with cache.locked(key):
            model = self._cached(entry, program, key, start)  # another process may have built it
            if model is not None:
                return model
            entry.mkdir(parents=True, exist_ok=True)
            program_path = entry / "program.stan"
            cache.atomic_write_text(program_path, program)
            info = stanc_info(stanc_path(), program, program_path, self.name)
            self.last_header = None
            compiled_now = self._build(program, program_path, entry, quiet)
            meta = {
                "backend": self.name,
                "stan_version": self.stan_version,
                "build_tag": self._tag,
                "build_seconds": time.perf_counter() - start,
                "info": info,
                "precompiled_header": self.last_header,
            }
            cache.atomic_write_text(entry / "build.json", json.dumps(meta, indent=1))
        return self._model(entry, program, key, start, info, compiled_now, meta)

    def _model(self, entry: Path, program: str, key: str, start: float, info: dict,
               compiled_now: bool, meta: dict | None = None) -> CompiledModel:
        """The CompiledModel of a finished cache entry."""
        header = (meta or {}).get("precompiled_header") or {}
        return CompiledModel(
            backend=self.name,
            program=program,
            key=key,
            compiled_now=compiled_now,
            compile_seconds=time.perf_counter() - start,
            handle=PyStanHandle(str(httpstan_api.module_file(entry)), str(entry / "program.stan"), info),
            # the one-off header build, when this compile did it (then part of compile_seconds)
            header_seconds=header.get("built_seconds") if compiled_now else None,
        )

    def _cached(self, entry: Path, program: str, key: str, start: float) -> CompiledModel | None:
        meta_path = entry / "build.json"
        module_path = httpstan_api.module_file(entry)
        if module_path is None or not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if (entry / "program.stan").read_text() != program:  # sha256 collision or tampering
                return None
        except (OSError, ValueError):
            return None
        return self._model(entry, program, key, start, meta.get("info") or {}, compiled_now=False, meta=meta)

    def _build(self, program: str, program_path: Path, entry: Path, quiet: bool) -> bool:
        """Put the extension module into `entry`; True if the C++ compiler ran."""
        # A module httpstan (e.g. pystan) built before: copy it, no compiling needed.
        existing = httpstan_api.cached_module(program)
        if existing is not None:
            files.write_with(entry / existing.name, lambda tmp: shutil.copy2(existing, tmp))
            return False

        missing = _missing_compilers()
        if missing:
            raise backend_error(
                "No C++ compiler found: the embedded Stan backend compiles each model to machine "
                f"code and needs g++ (missing: {', '.join(missing)}). Install one (e.g. "
                "'apt-get install g++' or 'conda install gxx_linux-64') or point $CXX/$CC at it.",
                {"what": "find C++ compiler", "backend": self.name, "program_path": str(program_path)},
            )
        if not quiet and display_mode() == "live":  # (a terminal or a notebook)
            once = "" if any((cache.cache_root() / self.name / self._tag).glob("pch-*/built.ok")) else \
                "; this machine's first compile also precompiles Stan's headers, once"
            print(f"Compiling the Stan program (cached afterwards{once}) ...", file=sys.stderr, flush=True)

        scratch = cache.scratch_dir()
        log_path = scratch / "compiler.log"
        with _BUILD_LOCK:
            old_cwd = os.getcwd()
            old_xdg = os.environ.get("XDG_CACHE_HOME")
            try:
                os.chdir(scratch)  # setuptools writes build/temp.*/…/*.o into the cwd
                os.environ["XDG_CACHE_HOME"] = str(scratch / "xdg")  # httpstan's cache → scratch
                try:
                    with _native_stderr_to(log_path), warnings.catch_warnings(), \
                            precompiled_header(cache.cache_root() / self.name / self._tag, httpstan_api.version(),
                                               log_path) as header:
                        warnings.simplefilter("ignore")
                        httpstan_api.build_module(program)
                    self.last_header = header.to_dict()
                    built = httpstan_api.cached_module(program)
                finally:
                    os.chdir(old_cwd)
                    if old_xdg is None:
                        os.environ.pop("XDG_CACHE_HOME", None)
                    else:
                        os.environ["XDG_CACHE_HOME"] = old_xdg
                if built is None:
                    raise RuntimeError("the build finished but produced no extension module")
                target = entry / built.name
                try:
                    os.replace(built, target)
                except OSError:  # another filesystem: copied under a unique temporary name
                    files.write_with(target, lambda tmp: shutil.copy2(built, tmp))
                with contextlib.suppress(OSError):
                    shutil.copy2(log_path, entry / "compiler.log")
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:
                log = ""
                with contextlib.suppress(OSError):
                    log = log_path.read_text(errors="replace")
                raise backend_error(
                    "Compiling the Stan program to machine code failed "
                    f"({type(exc).__name__}: {exc}). stanc accepted the program, so this is "
                    "usually a compiler installation problem (or out of memory: the C++ build "
                    "needs about 2 GB). Last compiler messages:\n"
                    + (tail(log, 30) or "(none)")
                    + f"\nThe program is at: {program_path}",
                    {
                        "what": "httpstan.models.build_services_extension_module",
                        "backend": self.name,
                        "program_path": str(program_path),
                        "stderr_tail": tail(log, 60),
                    },
                ) from exc
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return True

    # ---------------------------------------------------------------- sample

    def sample(self, model: CompiledModel, data: dict, settings: SamplerSettings | None = None) -> Draws:
        settings = settings or SamplerSettings()
        settings.validate()
        check_threads(self, settings)
        handle = model.handle
        if model.backend != self.name or not isinstance(handle, PyStanHandle):
            raise backend_error(
                f"This model was compiled by the {model.backend!r} backend, not {self.name!r} (stangen bug).",
                {"what": "sample"},
                internal=True,
            )
        record = {"what": "stan::services::sample::hmc_nuts_diag_e_adapt", "backend": self.name,
                  "program_path": handle.program_path}
        stan_data = prepare_data(data)
        try:
            module = httpstan_api.load_module(handle.module_path)
        except (ImportError, OSError) as exc:
            raise backend_error(
                f"The compiled model is gone from the cache ({handle.module_path}): compile the program "
                f"again. ({exc})",
                {**record, "what": "load compiled model", "stderr_tail": str(exc)},
            ) from exc
        try:
            names, dims = httpstan_api.parameter_names_and_dims(module, stan_data)
        except Exception as exc:  # noqa: BLE001 - Stan's data checks
            msg = _clean_paths(str(exc), handle.program_path)
            raise backend_error(
                f"Stan rejected the data: {msg}",
                {**record, "what": "read data", "stderr_tail": msg},
            ) from exc

        fixed_param = self._has_no_parameters(handle, names, dims)
        if fixed_param:
            function = httpstan_api.FIXED_PARAM
            kwargs: dict[str, Any] = dict(num_samples=settings.draws, num_thin=1)
        else:
            function = httpstan_api.NUTS
            kwargs = dict(
                num_warmup=settings.warmup, num_samples=settings.draws, num_thin=1, save_warmup=False,
                stepsize=1.0, stepsize_jitter=0.0, max_depth=settings.max_treedepth,
                delta=float(settings.adapt_delta), gamma=0.05, kappa=0.75, t0=10.0,
                init_buffer=75, term_buffer=50, window=25,
            )
        total = settings.draws + (0 if fixed_param else settings.warmup)
        kwargs.update(random_seed=settings.seed, init_radius=float(settings.init), refresh=max(1, total // 20))

        start = time.perf_counter()
        with exit_on_sigterm():
            chains = self._run_chains(handle, function, stan_data, kwargs, settings, total, record)
        sample_seconds = time.perf_counter() - start

        arrays, columns = [], None
        for c in chains:
            try:
                cols, arr = httpstan_api.parse_draw_lines(c.messages.draw_lines)
            except (ValueError, KeyError, TypeError) as exc:
                raise backend_error(f"Could not read the draws of chain {c.index + 1}: {exc} (stangen bug)",
                                    record, internal=True) from exc
            if arr.shape[0] != settings.draws or (columns is not None and cols and cols != columns):
                raise backend_error(
                    f"Chain {c.index + 1} returned {arr.shape[0]} draws, expected {settings.draws} "
                    "(stangen bug). Stan's last messages:\n" + c.messages.tail_text(),
                    {**record, "stderr_tail": c.messages.tail_text(40)}, internal=True,
                )
            columns = cols if columns is None or not columns else columns
            arrays.append(arr)
        if settings.draws == 0 or not columns:
            variables = {n: np.empty((settings.chains, settings.draws, *d)) for n, d in zip(names, dims)}
            _, stats = assemble_variables([], np.empty((settings.chains, settings.draws, 0)), [], [])
        else:
            complex_names = {n for section in ("parameters", "transformed parameters", "generated quantities")
                             for n, v in (handle.info.get(section) or {}).items()
                             if "complex" in str(v.get("type", ""))}
            variables, stats = assemble_variables(columns, np.stack(arrays), names, dims, complex_names)
        return Draws(
            variables=variables,
            sample_stats=stats,
            backend=self.name,
            stan_version=self.stan_version,
            sample_seconds=sample_seconds,
            settings=settings,
            chain_seconds=[dict(c.messages.elapsed) for c in chains],
            # Stan names the temporary file httpstan compiled; the run directory holds it as model.stan
            messages=[_clean_paths(m, "model.stan") for c in chains
                      for m in console_messages(c.index + 1, c.messages.log_lines)],
        )

    @staticmethod
    def _has_no_parameters(handle: PyStanHandle, names: list[str], dims: list[list[int]]) -> bool:
        params = handle.info.get("parameters")
        if params is None:
            return False
        size = {n: math.prod(int(x) for x in d) for n, d in zip(names, dims)}
        return sum(size.get(p, 1) for p in params) == 0

    def _run_chains(
        self, handle: PyStanHandle, function: str, data: dict, kwargs: dict,
        settings: SamplerSettings, total: int, record: dict,
    ) -> list[_Chain]:
        ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        parallel = settings.effective_parallel_chains()
        sock_dir = _socket_dir()
        chains: list[_Chain] = []
        failure: _Chain | None = None
        try:
            for i in range(settings.first_chain - 1, settings.first_chain - 1 + settings.chains):
                path = os.path.join(sock_dir, f"chain-{i + 1}.sock")
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listener.bind(path)
                listener.listen(8)
                listener.setblocking(False)
                chains.append(_Chain(i, path, listener))
            progress = Progress(chains, total, enabled=not settings.quiet)
            pending = list(chains)
            running: list[_Chain] = []
            while pending or running:
                while pending and len(running) < parallel and failure is None:
                    c = pending.pop(0)
                    init = prepare_data(settings.inits[c.index - settings.first_chain + 1]) if settings.inits else {}
                    self._start(ctx, c, chains, handle, function, data, dict(kwargs, chain=c.index + 1), init)
                    running.append(c)
                if failure is not None and not running:
                    break
                watch: list[socket.socket] = []
                for c in running:
                    watch.append(c.listener)
                    watch.extend(c.conns)
                readable, _, _ = select.select(watch, [], [], 0.05)
                owner = {}
                for c in running:
                    owner[c.listener] = c
                    for conn in c.conns:
                        owner[conn] = c
                for s in readable:
                    c = owner[s]
                    if s is c.listener:
                        _accept_pending(c)
                    elif s in c.conns:
                        _recv_available(c, s)
                for c in list(running):
                    if c.process.exitcode is None:
                        continue
                    _drain(c)
                    with contextlib.suppress(Exception):
                        if c.result_conn.poll():
                            c.result = c.result_conn.recv()
                    c.process.join(1)
                    running.remove(c)
                    if c.result is not None and c.result[0] == "ok" and c.result[1] == 0:
                        c.state = "done"
                    else:
                        c.state = "failed"
                        if failure is None:
                            failure = c
                            for other in running:  # no point in finishing the others
                                _stop_process(other.process)
                            pending.clear()
                progress.update()
            progress.update(force=True)
        finally:
            progress.close()
            for c in chains:
                _stop_process(c.process)
                for conn in c.conns:
                    conn.close()
                c.conns.clear()
                c.listener.close()
                if c.result_conn is not None:
                    c.result_conn.close()
            shutil.rmtree(sock_dir, ignore_errors=True)
        if failure is not None:
            raise self._chain_error(failure, settings, record)
        return chains

    @staticmethod
    def _start(ctx: Any, c: _Chain, chains: list[_Chain], handle: PyStanHandle, function: str,
               data: dict, kwargs: dict, init: dict) -> None:
        recv_conn, send_conn = ctx.Pipe(duplex=False)
        inherited: list[Any] = []  # the parent's sockets a forked child inherits but must not hold
        if ctx.get_start_method() == "fork":
            for other in chains:
                inherited.append(other.listener)
                inherited.extend(other.conns)
                if other.result_conn is not None:
                    inherited.append(other.result_conn)
            inherited.append(recv_conn)
        c.process = ctx.Process(
            target=_chain_main,
            args=(handle.module_path, function, c.socket_path, data, kwargs, init, send_conn, inherited,
                  os.getpid()),
            name=f"stangen-chain-{c.index + 1}",
            daemon=True,
        )
        c.process.start()
        send_conn.close()
        c.result_conn = recv_conn
        c.state = "running"

    @staticmethod
    def _chain_error(c: _Chain, settings: SamplerSettings, record: dict) -> Exception:
        stan_tail = _clean_paths(c.messages.tail_text(15), record.get("program_path", ""))
        result = c.result
        if result is None:
            code = c.process.exitcode if c.process is not None else None
            if code is not None and code < 0:
                how = f"was killed by signal {-code}" + (" (out of memory?)" if -code == signal.SIGKILL else "")
            else:
                how = f"exited unexpectedly (exit code {code})"
            detail = f"The process running chain {c.index + 1} {how}."
        elif result[0] == "ok":
            detail = f"Stan's sampler stopped with error code {result[1]} in chain {c.index + 1}."
        else:
            detail = _clean_paths(f"{result[2]}".strip() or result[1], record.get("program_path", ""))
        return chain_failure(c.index + 1, detail, stan_tail, settings, record)


_TEMP_PROGRAM = re.compile(r"'[^'\n]*httpstan_[^'\n]*?\.stan'")


def _clean_paths(text: str, program_path: str) -> str:
    """Stan names the long-deleted temp file httpstan's stanc ran on; name the cached program instead."""
    return _TEMP_PROGRAM.sub(f"'{program_path}'", text)


