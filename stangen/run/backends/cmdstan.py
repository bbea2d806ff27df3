"""The CmdStan backend: CmdStan's `make` builds each program, stangen runs and watches the chain processes.

Executables live in the stangen cache like the embedded backend's modules:
``<cache>/cmdstan/cmdstan-<version>-<machine>-<installation>/<key>/model`` next to ``model.stan``, so a
program built by one CmdStan installation is never run with another's libraries. Compiling holds the key's
inter-process lock.

Sampling starts one process per chain (`model sample … id=k random seed=S`, the arguments cmdstanpy would
pass, so seeds mean the same as in cmdstanpy and in the embedded backend), at most `parallel_chains` at a
time, each in its own session: a Ctrl-C at the terminal reaches stangen, which stops them. SIGINT and
SIGTERM stop every chain process within a second and remove the scratch folder. Their console output is
read for the progress display and kept as Stan's messages (the run's stan.log), never printed; draws are read
from the CSV files, and Stan's timing from their last lines only.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import _make, cache
from ._data import prepare_data
from ._draws import assemble_variables
from ._stanc import tail
from .base import CompiledModel, Draws, SamplerSettings, backend_error, console_messages, elapsed_seconds
from .chains import PROGRESS, Progress, chain_failure, die_with_parent, exit_on_sigterm, display_mode

__all__ = ["CmdStanBackend", "CmdStanMissing", "find_cmdstan", "locate_cmdstan"]

NAME = "cmdstan"
EXE_SUFFIX = ".exe" if sys.platform.startswith("win") else ""
SIG_FIGS = 12  # CmdStan's default of 6 significant digits loses too much; 18 is the maximum
TAIL_BYTES = 4096  # Stan's elapsed-time comments close a CSV: read only this much of its end


# -------------------------------------------------------------------------------------------------
# finding CmdStan

class CmdStanMissing(Exception):
    """No usable CmdStan; the message says which path was tried and what it lacks."""


def _problem_with(path: Path) -> str | None:
    """What keeps `path` from being a built CmdStan installation, or None."""
    if not path.exists():
        return "does not exist"
    if not (path / "makefile").is_file():
        return "is not a CmdStan folder (it has no makefile)"
    if not (path / "bin" / f"stanc{EXE_SUFFIX}").is_file():
        return "is a CmdStan folder that was never built (no bin/stanc; run `make build` in it)"
    return None


def locate_cmdstan() -> Path:
    """The CmdStan installation to use: $CMDSTAN if set, else the newest built one in ~/.cmdstan (where
    cmdstanpy installs). Raises CmdStanMissing naming the path and the problem."""
    env = os.environ.get("CMDSTAN")
    if env:
        path = Path(env).expanduser()
        problem = _problem_with(path)
        if problem:
            raise CmdStanMissing(f"CMDSTAN={env} {problem}")
        return path.resolve()
    home = Path.home() / ".cmdstan"
    candidates = sorted(home.glob("cmdstan-*"), key=lambda p: [int(x) if x.isdigit() else 0 for x in
                                                                re.split(r"[.-]", p.name)[1:]], reverse=True)
    for path in candidates:
        if _problem_with(path) is None:
            return path.resolve()
    raise CmdStanMissing(f"CMDSTAN is not set and {home} holds no built CmdStan")


def find_cmdstan() -> str | None:
    """The CmdStan installation, or None."""
    try:
        return str(locate_cmdstan())
    except CmdStanMissing:
        return None


def _cmdstan_version(path: Path) -> str:
    with contextlib.suppress(OSError):
        m = re.search(r"CMDSTAN_VERSION\s*:=\s*(\S+)", (path / "makefile").read_text())
        if m:
            return m.group(1)
    return "unknown"


def uses_threads(program: str) -> bool:
    """The program sums its likelihood with reduce_sum (stangen's threaded program): build it with
    STAN_THREADS and give its chains num_threads."""
    return re.search(r"\breduce_sum\s*\(", program) is not None


# -------------------------------------------------------------------------------------------------
# running chains

@dataclass
class _Chain:
    index: int  # 0-based; CmdStan's id is index + 1
    csv: Path
    console: Path
    process: subprocess.Popen | None = None
    state: str = "waiting"
    iteration: int = 0
    total: int = 0
    phase: str = ""
    _read: int = 0  # bytes of the console file already looked at
    _rest: str = ""

    def position(self) -> tuple[int, int, str]:
        return self.iteration, self.total, self.phase

    def follow(self) -> None:
        """Read what the chain wrote to its console since last time, for the progress display."""
        with contextlib.suppress(OSError):
            with open(self.console, "rb") as fh:
                fh.seek(self._read)
                chunk = fh.read()
            self._read += len(chunk)
            lines = (self._rest + chunk.decode("utf-8", "replace")).split("\n")
            self._rest = lines.pop()
            for line in lines:
                m = PROGRESS.search(line)
                if m:
                    self.iteration, self.total, self.phase = int(m.group(1)), int(m.group(2)), m.group(3)

    def console_lines(self) -> list[str]:
        with contextlib.suppress(OSError):
            return self.console.read_text(errors="replace").splitlines()
        return []


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    die_with_parent(signal.SIGKILL)  # a CmdStan chain has no handler to clean up: end it at once


def _stop(process: subprocess.Popen | None) -> None:
    """End a chain process: SIGTERM, then SIGKILL if it is still there after half a second."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(0.5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(2)


def read_csv_draws(path: Path) -> tuple[list[str], np.ndarray]:
    """A CmdStan output CSV → (column names, float64 array (draws, columns)); comment lines skipped."""
    frame = pd.read_csv(path, comment="#", dtype=np.float64, engine="c")
    return list(frame.columns), frame.to_numpy()


def csv_elapsed(path: Path) -> dict[str, float]:
    """Stan's timing of a chain from the comment lines that end its CSV (its tail only: a CSV can be large)."""
    with contextlib.suppress(OSError):
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - TAIL_BYTES))
            return elapsed_seconds(fh.read().decode("utf-8", "replace"))
    return {}


# -------------------------------------------------------------------------------------------------

def install_cmdstan(version: str | None = None, folder: str | None = None, quiet: bool = False,
                    cores: int = 1) -> str | None:
    """Download and build CmdStan with cmdstanpy (`stangen install-cmdstan`); its path, or None on failure.
    `quiet`: cmdstanpy's progress is not shown."""
    import cmdstanpy  # optional use: only this command needs it, and it is slow to import

    with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
        ok = cmdstanpy.install_cmdstan(version=version, dir=folder, progress=not quiet, cores=cores)
    return str(cmdstanpy.cmdstan_path()) if ok else None


_NOTED: set[str] = set()  # CMDSTAN problems already told


class CmdStanBackend:
    """CmdStan: the same interface as the embedded backend."""

    name = NAME
    aliases = ("cmdstanpy",)
    summary = "CmdStan, when installed"
    threads_within_chain = True  # a program with reduce_sum is built with STAN_THREADS, run with num_threads
    takes_initial_metric = True  # SamplerSettings.inv_metric, as metric_file
    takes_inits = True  # SamplerSettings.inits, as one init file per chain
    chain_processes = True  # one CmdStan process per chain

    @classmethod
    def usable(cls, *, explain: bool = False) -> bool:
        """True if CmdStan is there. With `explain`, when CMDSTAN names something unusable, say so (once)
        instead of falling back to the embedded backend without a word."""
        try:
            locate_cmdstan()
            return True
        except CmdStanMissing as exc:
            if explain and os.environ.get("CMDSTAN") and str(exc) not in _NOTED:
                _NOTED.add(str(exc))
                print(f"note: {exc}; using the embedded backend (pystan)", file=sys.stderr)
            return False

    def __init__(self) -> None:
        try:
            path = locate_cmdstan()
        except CmdStanMissing as exc:
            raise backend_error(
                f"The CmdStan backend is not available: {exc}. Either use the embedded backend "
                "(backend 'pystan', the default when CmdStan is absent), or point CMDSTAN at a built CmdStan "
                "(offline: bash ../shared/cmdstan-offline/build.sh; online: 'stangen install-cmdstan').",
                {"what": "find CmdStan", "backend": NAME, "CMDSTAN": os.environ.get("CMDSTAN", "")},
            ) from None
        self.cmdstan_path = str(path)
        self.stan_version = _cmdstan_version(path)
        # which installation built an executable is part of where it is cached (its libraries are linked in)
        where = hashlib.sha256(self.cmdstan_path.encode()).hexdigest()[:10]
        self._tag = f"cmdstan-{self.stan_version}-{platform.machine()}-{where}"

    # ---------------------------------------------------------------- compile

    def compile(self, program: str, *, quiet: bool = False) -> CompiledModel:
        start = time.perf_counter()
        key, entry = cache.locate(self.name, self.stan_version, self._tag, program)
        stan_file, exe_file = entry / "model.stan", entry / f"model{EXE_SUFFIX}"
        compiled_now = False
        with cache.locked(key):
            meta = self._cached(entry, program)
            if meta is None:
                meta = self._build(program, entry, exe_file, quiet, start)
                compiled_now = True
        return CompiledModel(
            backend=self.name, program=program, key=key, compiled_now=compiled_now,
            compile_seconds=time.perf_counter() - start,
            handle={"stan_file": str(stan_file), "exe_file": str(exe_file), "info": meta.get("info") or {},
                    "threads": uses_threads(program)},
        )

    def _cached(self, entry: Path, program: str) -> dict | None:
        return _make.cached(entry, program, entry / f"model{EXE_SUFFIX}", ("cmdstan", self.cmdstan_path))

    def _build(self, program: str, entry: Path, exe_file: Path, quiet: bool, start: float) -> dict:
        info = _make.prepare(entry, program, exe_file, Path(self.cmdstan_path) / "bin" / f"stanc{EXE_SUFFIX}",
                             self.name)
        if not quiet and display_mode() == "live":  # (a terminal or a notebook)
            print("Compiling the Stan program with CmdStan (cached afterwards) ...", file=sys.stderr, flush=True)
        threads = uses_threads(program)
        # STAN_THREADS: a reduce_sum program runs its slices on num_threads threads (without it, one)
        cmd = ["make", _make.MAKE_JOBS, *(["STAN_THREADS=true"] if threads else []), str(exe_file)]
        # CmdStan's threaded main and precompiled header are built by the first threaded program: one build at
        # a time makes them
        _make.run_make(cmd, self.cmdstan_path, exe_file, toolchain="CmdStan", installation="the CmdStan installation",
                       backend=self.name, lock=cache.locked(f"cmdstan-threads-{self._tag}") if threads else None)
        return _make.record_build(entry, {"backend": self.name, "stan_version": self.stan_version,
                                          "cmdstan": self.cmdstan_path, "build_seconds": time.perf_counter() - start,
                                          "info": info, "stan_threads": threads})

    # ---------------------------------------------------------------- sample

    def sample(self, model: CompiledModel, data: dict, settings: SamplerSettings | None = None) -> Draws:
        settings = settings or SamplerSettings()
        settings.validate()
        if model.backend != self.name:
            raise backend_error(
                f"This model was compiled by the {model.backend!r} backend, not {self.name!r} (stangen bug).",
                {"what": "sample"}, internal=True,
            )
        exe_file = model.handle["exe_file"]
        record = {"what": "CmdStan sample", "backend": self.name, "program_path": model.handle["stan_file"]}
        stan_data = {k: v.tolist() for k, v in prepare_data(data).items()}
        scratch = cache.scratch_dir("run-")
        start = time.perf_counter()
        try:
            data_file = scratch / "data.json"
            data_file.write_text(json.dumps(stan_data))
            if settings.inv_metric is not None:
                (scratch / "metric.json").write_text(json.dumps({"inv_metric": list(settings.inv_metric)}))
            ids = range(settings.first_chain, settings.first_chain + settings.chains)
            for k, values in enumerate(settings.inits or ()):
                (scratch / f"init-{ids[k]}.json").write_text(json.dumps(values))
            chains = [_Chain(i - 1, scratch / f"chain-{i}.csv", scratch / f"chain-{i}.txt") for i in ids]
            threads = settings.threads_per_chain if model.handle.get("threads") else 1
            with exit_on_sigterm():
                self._run(chains, exe_file, data_file, settings, threads, record)
            sample_seconds = time.perf_counter() - start
            arrays, columns = [], None
            for c in chains:
                cols, arr = read_csv_draws(c.csv)
                if arr.shape[0] != settings.draws or (columns is not None and cols != columns):
                    raise backend_error(f"Chain {c.index + 1} wrote {arr.shape[0]} draws, expected {settings.draws} "
                                        "(stangen bug).", record, internal=True)
                columns = cols
                arrays.append(arr)
            variables, stats = assemble_variables(columns or [], np.stack(arrays) if arrays else
                                                  np.empty((settings.chains, settings.draws, 0)), [], [])
            return Draws(
                variables=variables, sample_stats=stats, backend=self.name, stan_version=self.stan_version,
                sample_seconds=sample_seconds, settings=settings,
                chain_seconds=[csv_elapsed(c.csv) for c in chains],
                messages=[m for c in chains for m in console_messages(c.index + 1, c.console_lines())],
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    @staticmethod
    def _command(exe: str, c: _Chain, data_file: Path, settings: SamplerSettings, threads: int) -> list[str]:
        total = settings.warmup + settings.draws
        return [exe, *([f"num_threads={threads}"] if threads > 1 else []),
                f"id={c.index + 1}", "random", f"seed={settings.seed}", "data", f"file={data_file}",
                # CmdStan takes either a radius or a file, whose missing parameters then start in (-2, 2)
                f"init={data_file.parent / f'init-{c.index + 1}.json'}" if settings.inits else f"init={settings.init:g}",
                "output", f"file={c.csv}", f"refresh={max(1, total // 20)}",
                f"sig_figs={SIG_FIGS}", "method=sample", f"num_samples={settings.draws}",
                f"num_warmup={settings.warmup}", "algorithm=hmc", "engine=nuts",
                f"max_depth={settings.max_treedepth}",
                *(["metric=diag_e", f"metric_file={data_file.parent / 'metric.json'}"]
                  if settings.inv_metric is not None else []),
                # no warmup, no adaptation (CmdStan refuses to adapt in 0 iterations; cmdstanpy does the same)
                "adapt", f"engaged={int(settings.warmup > 0)}", f"delta={float(settings.adapt_delta)}"]

    def _run(self, chains: list[_Chain], exe: str, data_file: Path, settings: SamplerSettings, threads: int,
             record: dict) -> None:
        progress = Progress(chains, settings.warmup + settings.draws, enabled=not settings.quiet)
        pending, running = list(chains), []
        failed: _Chain | None = None
        try:
            while pending or running:
                while pending and len(running) < settings.effective_parallel_chains():
                    c = pending.pop(0)
                    with open(c.console, "wb") as console:
                        c.process = subprocess.Popen(
                            self._command(exe, c, data_file, settings, threads), stdout=console, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
                    c.state = "running"
                    running.append(c)
                time.sleep(0.05)
                for c in list(running):
                    c.follow()
                    if c.process.poll() is None:
                        continue
                    running.remove(c)
                    c.state = "done" if c.process.returncode == 0 else "failed"
                    if c.state == "failed":  # the first failure is the one to report; the others are stopped
                        failed = c
                        pending.clear()
                        for other in running:
                            _stop(other.process)
                        break
                progress.update()
                if failed is not None:
                    break
            progress.update(force=True)
        finally:
            progress.close()
            for c in chains:
                _stop(c.process)
        if failed is not None:
            code = failed.process.returncode
            how = f"was stopped by signal {-code}" if code < 0 else f"ended with exit code {code}"
            stan_tail = tail("\n".join(line for line in failed.console_lines()
                                       if line.strip() and not PROGRESS.search(line)), 15)
            raise chain_failure(failed.index + 1, f"CmdStan's process for chain {failed.index + 1} {how}.",
                                stan_tail, settings, record)
