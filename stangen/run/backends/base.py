"""The interface every sampling backend implements.

A backend turns Stan program text into a `CompiledModel` (cached on disk, see
`stangen.run.backends.cache`) and runs NUTS on it, returning `Draws`: one numpy
array per Stan variable, shaped ``(chains, draws, *dims)`` in Stan's natural
(row-major) index order, plus the per-draw sampler statistics.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

try:  # the package-wide error type, when the rest of stangen provides it
    from ...core.errors import BackendError
except ImportError:  # pragma: no cover - only while the package is incomplete

    class BackendError(Exception):  # type: ignore[no-redef]
        """Compiling or sampling failed; the message is in user terms."""

        exit_code = 2

        def __init__(self, message: str, record: dict | None = None, *, internal: bool = False):
            super().__init__(message)
            self.record = record
            if internal:
                self.exit_code = 3


__all__ = [
    "SAMPLE_STATS",
    "Backend",
    "BackendError",
    "CompiledModel",
    "Draws",
    "SamplerSettings",
    "backend_error",
    "check_threads",
    "elapsed_seconds",
]

def console_messages(chain: int, lines) -> list[str]:
    """Stan's console lines of one chain without the progress lines, each 'chain <k>: <text>'; a message
    repeated in a row (warm-up rejections) once, with its count."""
    out: list[str] = []
    last, count = None, 0
    for line in [*lines, None]:
        text = None if line is None else line.strip()
        if text is not None and (not text or text.startswith("Iteration:")):
            continue
        if text == last:
            count += 1
            continue
        if last is not None:
            out.append(f"chain {chain}: {last}" + (f"  [×{count}]" if count > 1 else ""))
        last, count = text, 1
    return out


# Stan's closing lines of a chain (console, or comments of its CSV file):
# "Elapsed Time: 0.05 seconds (Warm-up)", "0.04 seconds (Sampling)", "0.09 seconds (Total)"
ELAPSED = re.compile(r"([0-9.]+(?:[eE][-+]?[0-9]+)?) seconds \((Warm-up|Sampling|Total)\)")


def elapsed_seconds(text: str) -> dict[str, float]:
    """Stan's own timing of one chain from its closing lines: {'warmup', 'sampling', 'total'} → seconds."""
    return {m.group(2).lower().replace("-", ""): float(m.group(1)) for m in ELAPSED.finditer(text)}


# Stan's sampler columns → the names used in Draws.sample_stats
SAMPLE_STATS: dict[str, str] = {
    "lp__": "lp",
    "accept_stat__": "acceptance_rate",
    "stepsize__": "step_size",
    "treedepth__": "tree_depth",
    "n_leapfrog__": "n_leapfrog",
    "divergent__": "diverging",
    "energy__": "energy",
}


@dataclass(frozen=True)
class SamplerSettings:
    chains: int = 4
    parallel_chains: int | None = None  # None → os.cpu_count()
    warmup: int = 1000
    draws: int = 1000
    seed: int = 1
    adapt_delta: float = 0.8
    max_treedepth: int = 10
    init: float = 2.0  # uniform(-init, init) radius on the unconstrained scale
    quiet: bool = False  # no progress output
    # Stan's id of the first chain (chains are first_chain, first_chain + 1, …): a chain sampled on its own
    # with its id and the fit's seed draws what it draws in a multi-chain run (stangen/run/distributed.py)
    first_chain: int = 1
    # threads within each chain (CmdStan's num_threads): the program must be the threaded one, whose
    # likelihood reduce_sum splits into slices of rows (stangen.compiler.program.build(threads_per_chain=…))
    threads_per_chain: int = 1
    # the diagonal of the initial inverse metric, in the order of the unconstrained parameters (None: Stan's
    # unit start); stangen/run/warmup.py. CmdStan takes it (metric_file); the embedded backend cannot
    inv_metric: tuple[float, ...] | None = field(default=None, repr=False)
    # initial values of some parameters per chain (position k: Stan's chain first_chain + k), on their own
    # scale by the program's names (stangen/compiler/start.py); the others start uniform in (-init, init).
    # None: every parameter does
    inits: tuple[dict, ...] | None = field(default=None, repr=False)

    def validate(self) -> None:
        """Raise BackendError for settings no sampler can run with."""
        problems = []
        if not isinstance(self.chains, int) or self.chains < 1:
            problems.append(f"chains must be a positive integer (got {self.chains!r})")
        if self.parallel_chains is not None and (not isinstance(self.parallel_chains, int) or self.parallel_chains < 1):
            problems.append(f"parallel_chains must be a positive integer (got {self.parallel_chains!r})")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            problems.append(f"warmup must be a non-negative integer (got {self.warmup!r})")
        if not isinstance(self.draws, int) or self.draws < 0:
            problems.append(f"draws must be a non-negative integer (got {self.draws!r})")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**31:
            problems.append(f"seed must be an integer between 0 and 2147483647 (got {self.seed!r})")
        if not 0 < float(self.adapt_delta) < 1:
            problems.append(f"adapt_delta must be strictly between 0 and 1 (got {self.adapt_delta!r})")
        if not isinstance(self.max_treedepth, int) or self.max_treedepth < 1:
            problems.append(f"max_treedepth must be a positive integer (got {self.max_treedepth!r})")
        if not isinstance(self.first_chain, int) or self.first_chain < 1:
            problems.append(f"first_chain must be a positive integer (got {self.first_chain!r})")
        if not isinstance(self.threads_per_chain, int) or self.threads_per_chain < 1:
            problems.append(f"threads_per_chain must be a positive integer (got {self.threads_per_chain!r})")
        if not float(self.init) >= 0:
            problems.append(f"init must be a non-negative number (got {self.init!r})")
        if self.inits is not None and len(self.inits) != self.chains:
            problems.append(f"inits must hold one set of values per chain ({len(self.inits)} for {self.chains} chains)")
        if self.inits is not None and float(self.init) != 2.0:
            # CmdStan takes a radius or an init file, and starts a file's missing parameters in (-2, 2)
            problems.append(f"inits start the other parameters in (-2, 2): init must be 2 with them (got {self.init!r})")
        if problems:
            raise backend_error("Invalid sampler settings: " + "; ".join(problems) + ".", {"what": "sample"})

    def effective_parallel_chains(self) -> int:
        """Chains run at once: parallel_chains, else as many as the cores hold with threads_per_chain each."""
        limit = self.parallel_chains if self.parallel_chains is not None else \
            (os.cpu_count() or 1) // max(1, self.threads_per_chain)
        return max(1, min(self.chains, limit))


@dataclass(frozen=True)
class CompiledModel:
    backend: str
    program: str
    key: str  # sha256 of program + backend + stan version
    compiled_now: bool
    compile_seconds: float
    handle: Any = field(repr=False, compare=False)  # backend-specific
    # seconds of compile_seconds spent on a one-off per-machine build (the embedded backend's precompiled
    # header), when this compile did it
    header_seconds: float | None = None


@dataclass
class Draws:
    # Stan variable name → (chains, draws, *dims), natural row-major index order
    variables: dict[str, np.ndarray]
    # (chains, draws): lp, acceptance_rate, step_size, tree_depth, n_leapfrog, diverging (bool), energy
    sample_stats: dict[str, np.ndarray]
    backend: str
    stan_version: str
    sample_seconds: float
    settings: SamplerSettings
    # per chain, Stan's own timing of its phases: {'warmup': s, 'sampling': s, 'total': s} (when reported)
    chain_seconds: list[dict[str, float]] = field(default_factory=list)
    # Stan's informational messages (gradient timing, rejections during warmup, elapsed times), 'chain k: ...'
    # lines; they go to the run's stan.log, and to the terminal only when asked (--verbose)
    messages: list[str] = field(default_factory=list)

    @property
    def num_chains(self) -> int:
        return int(self.sample_stats["lp"].shape[0]) if "lp" in self.sample_stats else self.settings.chains

    @property
    def num_draws(self) -> int:
        return int(self.sample_stats["lp"].shape[1]) if "lp" in self.sample_stats else self.settings.draws


@runtime_checkable
class Backend(Protocol):
    name: str
    aliases: tuple[str, ...]  # other names get_backend accepts
    summary: str  # a few words for the list of backends in messages
    stan_version: str
    # runs a threaded program's reduce_sum with SamplerSettings.threads_per_chain threads
    threads_within_chain: bool
    # starts NUTS from SamplerSettings.inv_metric
    takes_initial_metric: bool
    # starts chains from SamplerSettings.inits (Stan's init: values for some parameters, the rest uniform)
    takes_inits: bool
    # runs each chain in a process of its own (False: threads of this process)
    chain_processes: bool

    @classmethod
    def usable(cls, *, explain: bool = False) -> bool:
        """Whether the backend can run here (checked before `auto` picks it); `explain`: say why not, when
        the user asked for it (e.g. an environment variable pointing at nothing)."""
        ...

    def compile(self, program: str) -> CompiledModel: ...

    def sample(self, model: CompiledModel, data: dict, settings: SamplerSettings) -> Draws: ...


def check_threads(backend: "Backend", settings: SamplerSettings) -> None:
    """Raise BackendError when the settings ask for threads within a chain and the backend cannot run them."""
    if settings.threads_per_chain > 1 and not getattr(backend, "threads_within_chain", False):
        raise backend_error(
            f"threads_per_chain = {settings.threads_per_chain} needs the CmdStan backend: the {backend.name} "
            "backend cannot set how many threads a chain uses. Use --backend cmdstan (CMDSTAN pointing at a "
            "built CmdStan), or threads_per_chain 1 with the chains in parallel.",
            {"what": "sample", "backend": backend.name})


def backend_error(message: str, record: dict | None = None, *, internal: bool = False) -> BackendError:
    """Build a BackendError; `record` says what ran (program path, stderr tail, ...)."""
    record = dict(record or {})
    try:
        return BackendError(message, record, internal=internal)
    except TypeError:  # a BackendError with a narrower constructor
        err = BackendError(message)
        err.record = record
        return err
