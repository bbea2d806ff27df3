"""The CmdStan backend, through cmdstanpy (used when a CmdStan installation exists).

Executables live in the stangen cache like the embedded backend's modules:
``<cache>/cmdstan/cmdstan-<version>-<machine>/<key>/model`` next to
``model.stan``; compiling holds the key's inter-process lock. CSV output goes
to a scratch folder in the cache that is removed once the draws are read.
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import cache
from ._data import prepare_data
from ._stanc import program_context, stanc_error_message, stanc_location, tail
from .base import (SAMPLE_STATS, CompiledModel, Draws, SamplerSettings, backend_error, console_messages,
                   elapsed_seconds)

__all__ = ["CmdStanBackend", "find_cmdstan"]

NAME = "cmdstan"
EXE_SUFFIX = ".exe" if sys.platform.startswith("win") else ""
SIG_FIGS = 12  # CmdStan's default of 6 significant digits loses too much; 18 is the maximum


def find_cmdstan() -> str | None:
    """The CmdStan directory cmdstanpy would use ($CMDSTAN or ~/.cmdstan), if valid and built."""
    try:
        import cmdstanpy
    except ImportError:
        return None
    try:
        with _quiet_cmdstanpy(True):
            path = cmdstanpy.cmdstan_path()
    except Exception:  # noqa: BLE001 - ValueError when absent/invalid
        return None
    if not os.path.exists(os.path.join(path, "bin", "stanc" + EXE_SUFFIX)):
        return None  # unpacked but never built
    return path


def _cmdstan_version(path: str) -> str:
    try:
        text = Path(path, "makefile").read_text()
        m = re.search(r"CMDSTAN_VERSION\s*:=\s*(\S+)", text)
        if m:
            return m.group(1)
    except OSError:
        pass
    return "unknown"


@contextlib.contextmanager
def _quiet_cmdstanpy(quiet: bool):
    """cmdstanpy logs INFO lines to stderr; silence them (but not errors) when quiet."""
    logger = logging.getLogger("cmdstanpy")
    old = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class CmdStanBackend:
    """CmdStan via cmdstanpy; same interface as the embedded backend."""

    name = NAME

    def __init__(self) -> None:
        path = find_cmdstan()
        if path is None:
            try:
                import cmdstanpy  # noqa: F401

                why = "cmdstanpy is installed but finds no (built) CmdStan installation ($CMDSTAN or ~/.cmdstan)"
            except ImportError:
                why = "the 'cmdstanpy' package is not installed"
            raise backend_error(
                f"The CmdStan backend is not available: {why}. Either use the embedded backend "
                "(backend 'pystan', the default when CmdStan is absent), or install CmdStan with "
                "'stangen install-cmdstan' (or 'python -m cmdstanpy.install_cmdstan') and try again.",
                {"what": "find CmdStan", "backend": NAME, "CMDSTAN": os.environ.get("CMDSTAN", "")},
            )
        self.cmdstan_path = path
        self.stan_version = _cmdstan_version(path)
        self._tag = f"cmdstan-{self.stan_version}-{platform.machine()}"

    # ---------------------------------------------------------------- compile

    def compile(self, program: str, *, quiet: bool = False) -> CompiledModel:
        import cmdstanpy

        start = time.perf_counter()
        key, entry = cache.locate(self.name, self.stan_version, self._tag, program)
        stan_file = entry / "model.stan"
        exe_file = entry / f"model{EXE_SUFFIX}"
        compiled_now = False
        with cache.locked(key):
            fresh = exe_file.is_file() and (entry / "build.json").is_file()
            if fresh:
                with contextlib.suppress(OSError):
                    fresh = stan_file.read_text() == program
            if not fresh:
                entry.mkdir(parents=True, exist_ok=True)
                for stale in (exe_file, entry / "build.json", entry / "model.hpp"):
                    with contextlib.suppress(FileNotFoundError):
                        stale.unlink()
                cache.atomic_write_text(stan_file, program)
                self._check_with_stanc(program, stan_file)
                if not quiet and _stderr_is_tty():
                    print("Compiling the Stan program with CmdStan (about a minute; cached afterwards) ...",
                          file=sys.stderr, flush=True)
                try:
                    with _quiet_cmdstanpy(True):
                        cmdstanpy.CmdStanModel(stan_file=str(stan_file))
                except Exception as exc:  # noqa: BLE001 - cmdstanpy raises ValueError with the console
                    console = str(exc)
                    raise backend_error(
                        "Compiling the Stan program with CmdStan failed. stanc accepted the program, so "
                        "this is usually a problem with the C++ toolchain or the CmdStan installation "
                        "(try 'python -m cmdstanpy.rebuild_cmdstan'). Last compiler messages:\n"
                        + tail(console, 30)
                        + f"\nThe program is at: {stan_file}",
                        {"what": "cmdstanpy.CmdStanModel(stan_file)", "backend": self.name,
                         "program_path": str(stan_file), "stderr_tail": tail(console, 60)},
                    ) from exc
                if not exe_file.is_file():
                    raise backend_error(
                        f"CmdStan reported success but produced no executable at {exe_file}.",
                        {"what": "cmdstanpy.CmdStanModel(stan_file)", "backend": self.name,
                         "program_path": str(stan_file)}, internal=True,
                    )
                with contextlib.suppress(FileNotFoundError):
                    (entry / "model.hpp").unlink()
                cache.atomic_write_text(entry / "build.json", json.dumps(
                    {"backend": self.name, "stan_version": self.stan_version, "cmdstan": self.cmdstan_path,
                     "build_seconds": time.perf_counter() - start}, indent=1))
                compiled_now = True
        return CompiledModel(
            backend=self.name,
            program=program,
            key=key,
            compiled_now=compiled_now,
            compile_seconds=time.perf_counter() - start,
            handle={"stan_file": str(stan_file), "exe_file": str(exe_file)},
        )

    def _check_with_stanc(self, program: str, stan_file: Path) -> None:
        stanc = os.path.join(self.cmdstan_path, "bin", "stanc" + EXE_SUFFIX)
        cmd = [stanc, "--info", str(stan_file)]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise backend_error(f"Could not run CmdStan's stanc at {stanc}: {exc}",
                                {"what": " ".join(cmd), "program_path": str(stan_file)}) from exc
        if done.returncode != 0:
            stderr = done.stderr.decode("utf-8", "replace") or done.stdout.decode("utf-8", "replace")
            loc = stanc_location(stderr)
            raise backend_error(
                stanc_error_message(stderr, program, str(stan_file)),
                {"what": " ".join(cmd), "backend": self.name, "program_path": str(stan_file),
                 "stderr_tail": tail(stderr), "line": loc[0] if loc else None,
                 "context": program_context(program, *loc) if loc else ""},
                internal=True,
            )

    # ---------------------------------------------------------------- sample

    def sample(self, model: CompiledModel, data: dict, settings: SamplerSettings | None = None) -> Draws:
        import cmdstanpy

        settings = settings or SamplerSettings()
        settings.validate()
        if model.backend != self.name:
            raise backend_error(
                f"This model was compiled by the {model.backend!r} backend, not {self.name!r} (stangen bug).",
                {"what": "sample"}, internal=True,
            )
        stan_file, exe_file = model.handle["stan_file"], model.handle["exe_file"]
        record = {"what": "cmdstanpy.CmdStanModel.sample", "backend": self.name, "program_path": stan_file}
        stan_data = {k: v.tolist() if v.size else _empty_list(v.shape) for k, v in prepare_data(data).items()}
        out_dir = cache.scratch_dir("run-")
        start = time.perf_counter()
        try:
            with _quiet_cmdstanpy(settings.quiet):
                try:
                    cmd_model = cmdstanpy.CmdStanModel(stan_file=stan_file, exe_file=exe_file)
                    fit = cmd_model.sample(
                        data=stan_data,
                        chains=settings.chains,
                        parallel_chains=settings.effective_parallel_chains(),
                        seed=settings.seed,
                        inits=float(settings.init),
                        iter_warmup=settings.warmup,
                        iter_sampling=settings.draws,
                        adapt_delta=float(settings.adapt_delta),
                        max_treedepth=settings.max_treedepth,
                        show_progress=not settings.quiet and _stderr_is_tty(),
                        output_dir=str(out_dir),
                        sig_figs=SIG_FIGS,
                    )
                except RuntimeError as exc:
                    raise self._sampling_error(exc, out_dir, settings, record) from exc
                except ValueError as exc:  # argument/data validation in cmdstanpy
                    raise backend_error(f"CmdStan could not run: {exc}", {**record, "stderr_tail": str(exc)}) from exc
                sample_seconds = time.perf_counter() - start
                draws = draws_from_fit(fit, settings, self.stan_version, sample_seconds)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        return draws

    @staticmethod
    def _sampling_error(exc: Exception, out_dir: Path, settings: SamplerSettings, record: dict) -> Exception:
        console = ""
        for path in sorted(glob.glob(os.path.join(str(out_dir), "*.txt"))):
            with contextlib.suppress(OSError):
                console += Path(path).read_text(errors="replace")
        text = f"{exc}\n{console}"
        stan_tail = tail("\n".join(line for line in console.splitlines()
                                   if line.strip() and not line.lstrip().startswith(("Iteration:", "Chain"))), 15)
        rec = {**record, "stderr_tail": stan_tail or tail(str(exc), 15)}
        if "Initialization failed" in text or "Rejecting initial value" in text or "Initialization between" in text:
            return backend_error(
                "Stan could not find a starting point: at every random initial value (uniform in "
                f"(-{settings.init:g}, {settings.init:g}) on the unconstrained scale) the log density or its "
                "gradient was not finite. Try init=0.5 (a narrower range), or check the priors and the data "
                "(e.g. a scale that can be zero, extreme predictor values).\nStan's last messages:\n"
                + "\n".join("    " + line for line in (stan_tail or tail(str(exc), 15)).splitlines()),
                rec,
            )
        return backend_error(
            "Sampling with CmdStan failed:\n" + tail(str(exc), 15)
            + (f"\nStan's last messages:\n{stan_tail}" if stan_tail else "")
            + f"\nThe program is at: {record.get('program_path')}",
            rec,
        )


def draws_from_fit(fit: Any, settings: SamplerSettings, stan_version: str, sample_seconds: float) -> Draws:
    """A cmdstanpy CmdStanMCMC → Draws: (chains, draws, *dims) variables, (chains, draws) stats."""
    raw = fit.draws()  # (draws, chains, columns); reads the CSV files now
    n_draws, n_chains = raw.shape[0], raw.shape[1]
    variables = {
        name: np.ascontiguousarray(np.swapaxes(var.extract_reshape(raw), 0, 1))
        for name, var in fit.metadata.stan_vars.items()
    }
    method = {name: np.asarray(var.extract_reshape(raw)) for name, var in fit.metadata.method_vars.items()}
    stats: dict[str, np.ndarray] = {}
    for stan_name, ours in SAMPLE_STATS.items():
        col = method.get(stan_name)
        if col is None:  # fixed_param runs write only lp__ and accept_stat__
            col = np.full((n_chains, n_draws), np.nan) if ours == "energy" else np.zeros((n_chains, n_draws))
        else:
            col = col.reshape(n_draws, n_chains).T
        if ours in ("tree_depth", "n_leapfrog"):
            col = col.astype(np.int64)
        elif ours == "diverging":
            col = col != 0
        else:
            col = np.ascontiguousarray(col, dtype=np.float64)
        stats[ours] = col
    return Draws(
        variables=variables,
        sample_stats=stats,
        backend=NAME,
        stan_version=stan_version,
        sample_seconds=sample_seconds,
        settings=settings,
        chain_seconds=[elapsed_seconds(Path(f).read_text(errors="replace")) for f in fit.runset.csv_files],
        messages=[m for k, f in enumerate(getattr(fit.runset, "stdout_files", None) or [], start=1)
                  if Path(f).exists() for m in console_messages(k, Path(f).read_text(errors="replace").splitlines())],
    )


def _empty_list(shape: tuple[int, ...]) -> Any:
    """A nested empty list keeping the leading non-zero dimensions (e.g. (2, 0) → [[], []])."""
    if not shape or shape[0] == 0:
        return []
    return [_empty_list(shape[1:]) for _ in range(shape[0])]
