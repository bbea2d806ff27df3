"""The nutpie backend: the same Stan program, compiled by BridgeStan into a shared library, sampled by nutpie's
NUTS (the sampler PyMC made its default), whose mass-matrix adaptation uses the gradients as well as the draws.

Compiling runs BridgeStan's make for ``<cache>/nutpie/bridgestan-<version>-…/<key>/model_model.so`` beside
``model.stan`` (cached by program text like the other backends, under the key's inter-process lock), always
with STAN_THREADS, which nutpie needs. As for the embedded backend (pch.py), the first build precompiles
Stan's model header with exactly BridgeStan's compile command (`make print-COMPILE.cpp`), and every build
includes it (BridgeStan's USER_INCLUDE); STANGEN_NO_PCH=1 builds without it. BridgeStan's C++ sources are found at $BRIDGESTAN, else where the
bridgestan package keeps them (~/.bridgestan/bridgestan-<version>); stangen never lets bridgestan download
them. nutpie and bridgestan are an optional extra: `pip install stangen[nutpie]`.

What differs from Stan's sampler, by design:
- the draws: another algorithm, so the same seed gives other draws than CmdStan or the embedded backend;
- warmup: nutpie's tuning (`warmup` steps; it needs fewer than Stan's 1000, see benchmarks/RESULTS.md);
- the starting point: nutpie draws each chain's start from a standard normal on the unconstrained scale;
  `init` (Stan's uniform radius) does not apply, and an initial metric is not taken;
- chains run as threads of this process, so a chain that crashes takes no separate process down.

Sampling drives nutpie's sampler object (`CompiledStanModel._make_sampler`, `nutpie._lib`) and converts its
trace with `nutpie.sample._arrow_to_arviz`, instead of calling `nutpie.sample`: that function turns Ctrl-C
into a partial result and draws its own progress bars. These are nutpie 0.16's internals, which is why the
extra pins nutpie below 0.17; this module is the one place that uses them.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from . import _make, cache
from ._data import prepare_data
from .base import CompiledModel, Draws, SamplerSettings, backend_error
from .chains import Progress, chain_failure, exit_on_sigterm, indent, display_mode
from .pch import DISABLE_ENV, HeaderUse, ensure_header, header_key

__all__ = ["NutpieBackend", "locate_bridgestan"]

NAME = "nutpie"
BRIDGESTAN_SERIES = "2.7"  # the BridgeStan sources this backend builds with (pyproject's extra pins the same)
# nutpie's sampler statistics → stangen's names (base.SAMPLE_STATS's values)
# (its step size is jittered draw by draw around the adapted one, step_size_bar: that one is reported, as Stan's)
STATS = {"logp": "lp", "mean_tree_accept": "acceptance_rate", "step_size_bar": "step_size", "depth": "tree_depth",
         "n_steps": "n_leapfrog", "diverging": "diverging", "energy": "energy"}


class BridgeStanMissing(Exception):
    """No usable BridgeStan sources or Python packages; the message says what is missing."""


def _missing_packages() -> list[str]:
    return [name for name in ("nutpie", "bridgestan") if find_spec(name) is None]


def locate_bridgestan() -> Path:
    """BridgeStan's C++ sources: $BRIDGESTAN, else the bridgestan package's own folder. Raises
    BridgeStanMissing naming what was tried."""
    env = os.environ.get("BRIDGESTAN")
    candidates = [Path(env).expanduser()] if env else sorted(
        (Path.home() / ".bridgestan").glob(f"bridgestan-{BRIDGESTAN_SERIES}*"), reverse=True)
    for path in candidates:
        if (path / "Makefile").is_file() and (path / "src").is_dir():
            return path.resolve()
    if env:
        raise BridgeStanMissing(f"BRIDGESTAN={env} is not a BridgeStan source folder (no Makefile and src/)")
    raise BridgeStanMissing("BRIDGESTAN is not set and ~/.bridgestan holds no BridgeStan sources "
                            f"{BRIDGESTAN_SERIES} (offline: bash ../shared/bridgestan-offline/setup.sh \"$CMDSTAN\")")


def _stan_version(bridgestan: Path) -> str:
    """The Stan version BridgeStan builds against: its make/local's STAN= folder (else its own stan/)."""
    stan = bridgestan / "stan"
    with contextlib.suppress(OSError):
        m = re.search(r"^STAN=(\S+)", (bridgestan / "make" / "local").read_text(), re.M)
        if m:
            stan = Path(m.group(1))
    with contextlib.suppress(OSError):
        text = (stan / "src" / "stan" / "version.hpp").read_text()
        parts = [re.search(rf"#define STAN_{p}\s+(\d+)", text) for p in ("MAJOR", "MINOR", "PATCH")]
        if all(parts):
            return ".".join(m.group(1) for m in parts)
    return "unknown"


def _stanc(bridgestan: Path) -> Path:
    with contextlib.suppress(OSError):
        m = re.search(r"^STANC=(\S+)", (bridgestan / "make" / "local").read_text(), re.M)
        if m:
            return Path(m.group(1))
    return bridgestan / "bin" / "stanc"


_NOTED: set[str] = set()


class NutpieBackend:
    """nutpie's NUTS on a BridgeStan build: the same interface as the other backends."""

    name = NAME
    aliases = ("bridgestan",)
    summary = "nutpie on BridgeStan, when installed"
    threads_within_chain = False
    takes_initial_metric = False
    takes_inits = False  # nutpie draws each chain's start from a standard normal (unconstrained)
    chain_processes = False  # nutpie's chains are threads of this process
    # `auto` picks nutpie only where benchmarks/RESULTS.md measures it fastest (not yet: asked for by name)
    chosen_by_auto = False

    @classmethod
    def usable(cls, *, explain: bool = False) -> bool:
        """True if nutpie, bridgestan and BridgeStan's sources are there; with `explain`, when BRIDGESTAN
        names something unusable, say so once."""
        try:
            if _missing_packages():
                return False
            locate_bridgestan()
            return True
        except BridgeStanMissing as exc:
            if explain and os.environ.get("BRIDGESTAN") and str(exc) not in _NOTED:
                _NOTED.add(str(exc))
                print(f"note: {exc}; not using nutpie", file=sys.stderr)
            return False

    def __init__(self) -> None:
        missing = _missing_packages()
        try:
            if missing:
                raise BridgeStanMissing(f"the Python package(s) {', '.join(missing)} are not installed "
                                        "(pip install 'stangen[nutpie]')")
            path = locate_bridgestan()
        except BridgeStanMissing as exc:
            raise backend_error(
                f"The nutpie backend is not available: {exc}. Use another backend (--backend pystan or cmdstan), "
                "or install it: pip install 'stangen[nutpie]' and BRIDGESTAN pointing at BridgeStan's sources.",
                {"what": "find BridgeStan", "backend": NAME, "BRIDGESTAN": os.environ.get("BRIDGESTAN", "")},
            ) from None
        import bridgestan
        import nutpie
        self.bridgestan_path = str(path)
        self.stan_version = _stan_version(path)
        self.versions = {"nutpie": nutpie.__version__, "bridgestan": bridgestan.__version__}
        where = hashlib.sha256(self.bridgestan_path.encode()).hexdigest()[:10]
        self._tag = f"bridgestan-{bridgestan.__version__}-stan-{self.stan_version}-{platform.machine()}-{where}"

    # ---------------------------------------------------------------- compile

    def compile(self, program: str, *, quiet: bool = False) -> CompiledModel:
        start = time.perf_counter()
        key, entry = cache.locate(self.name, self.stan_version, self._tag, program)
        stan_file, library = entry / "model.stan", entry / "model_model.so"
        compiled_now = False
        with cache.locked(key):
            meta = self._cached(entry, program)
            if meta is None:
                meta = self._build(program, entry, library, quiet, start)
                compiled_now = True
        header = meta.get("header") or {}
        return CompiledModel(
            backend=self.name, program=program, key=key, compiled_now=compiled_now,
            compile_seconds=time.perf_counter() - start,
            handle={"stan_file": str(stan_file), "library": str(library), "info": meta.get("info") or {},
                    "header": header},
            header_seconds=header.get("built_seconds") if compiled_now else None,
        )

    def _cached(self, entry: Path, program: str) -> dict | None:
        return _make.cached(entry, program, entry / "model_model.so", ("bridgestan_path", self.bridgestan_path))

    def _build(self, program: str, entry: Path, library: Path, quiet: bool, start: float) -> dict:
        info = _make.prepare(entry, program, library, _stanc(Path(self.bridgestan_path)), self.name)
        if not quiet and display_mode() == "live":  # (a terminal or a notebook)
            print("Compiling the Stan program with BridgeStan (cached afterwards) ...", file=sys.stderr, flush=True)
        # nutpie runs its chains as threads of one process: the library must be built thread-safe
        make_args = ["STAN_THREADS=true", "STANCFLAGS=--include-paths=."]
        use = self._header(make_args, entry / _make.LOG)
        if use.path is not None:
            make_args.append(f"USER_INCLUDE=-include {use.path} -Winvalid-pch")
        _make.run_make(["make", _make.MAKE_JOBS, *make_args, str(library)], self.bridgestan_path, library,
                       toolchain="BridgeStan", installation="the BridgeStan sources", backend=self.name,
                       leftovers=("model.hpp", "model.o"))
        return _make.record_build(entry, {"backend": self.name, "stan_version": self.stan_version,
                                          "bridgestan_path": self.bridgestan_path, "versions": self.versions,
                                          "build_seconds": time.perf_counter() - start, "info": info,
                                          "header": use.to_dict()})

    def _header(self, make_args: list[str], log_path: Path) -> HeaderUse:
        """Stan's model header precompiled with BridgeStan's own compile command (built once per machine)."""
        use = HeaderUse()
        if os.environ.get(DISABLE_ENV) == "1":
            use.problem = f"{DISABLE_ENV}=1"
            return use
        try:
            printed = subprocess.run(["make", "-s", *make_args, "print-COMPILE.cpp"], cwd=self.bridgestan_path,
                                     capture_output=True, text=True, timeout=120).stdout
            flags = shlex.split(printed.partition("COMPILE.cpp = ")[2].strip().rstrip(";"))
            if not flags or flags[-1] != "-c":
                use.problem = f"unexpected compile command from BridgeStan's make: {printed.strip()[:200]!r}"
                return use
            folder = cache.cache_root() / self.name / self._tag / f"pch-{header_key(flags, self._tag)}"
            use.path = ensure_header(flags, folder, log_path, use)
        except (OSError, subprocess.TimeoutExpired) as exc:
            use.problem = f"{type(exc).__name__}: {exc}"
        return use

    # ---------------------------------------------------------------- sample

    def sample(self, model: CompiledModel, data: dict, settings: SamplerSettings | None = None) -> Draws:
        from nutpie import _lib
        from nutpie.compile_stan import CompiledStanModel

        settings = settings or SamplerSettings()
        settings.validate()
        if model.backend != self.name:
            raise backend_error(
                f"This model was compiled by the {model.backend!r} backend, not {self.name!r} (stangen bug).",
                {"what": "sample"}, internal=True)
        record = {"what": "nutpie sample", "backend": self.name, "program_path": model.handle["stan_file"]}
        try:
            compiled = CompiledStanModel(_coords={}, code=model.program, data=None,
                                         library=_lib.StanLibrary(model.handle["library"]), model=None,
                                         dims={}, model_name="model")
            with_data = compiled.with_data(**prepare_data(data))
        except Exception as exc:  # Stan's data checks, raised through BridgeStan
            raise backend_error(f"Stan rejected the data: {_clean(exc)}", {**record, "stderr_tail": _clean(exc)}) from None
        start = time.perf_counter()
        idata = _run(with_data, settings, record)
        seconds = time.perf_counter() - start
        variables = {name: np.ascontiguousarray(idata.posterior[name].values) for name in idata.posterior.data_vars}
        stats = {}
        for theirs, ours in STATS.items():
            if theirs not in idata.sample_stats:
                raise backend_error(f"nutpie's draws have no {theirs!r} statistic (stangen bug: a nutpie "
                                    f"{self.versions['nutpie']} it does not know)", record, internal=True)
            values = idata.sample_stats[theirs].values
            if ours in ("tree_depth", "n_leapfrog"):
                values = values.astype(np.int64)
            elif ours == "diverging":
                values = values.astype(bool)
            stats[ours] = np.ascontiguousarray(values)
        gradients = stats["n_leapfrog"].sum(axis=1)
        return Draws(
            variables=variables, sample_stats=stats, backend=self.name, stan_version=self.stan_version,
            sample_seconds=seconds, settings=settings,
            # nutpie times the run, not each chain's phases: each chain is given the run's time
            chain_seconds=[{"total": seconds, "sampling": seconds}] * settings.chains,
            messages=[f"chain {settings.first_chain + k}: nutpie {self.versions['nutpie']} "
                      f"(BridgeStan {self.versions['bridgestan']}): {int(gradients[k])} gradient evaluations in "
                      f"{settings.draws} draws, {int(stats['diverging'][k].sum())} divergent"
                      for k in range(settings.chains)])


# what nutpie's progress callback is given, one chain per `;` (its template language is upon's)
PROGRESS_TEMPLATE = ("{% for chain in chains %}{{ chain.finished_draws }} {{ chain.total_draws }} {{ chain.tuning }} "
                     "{{ chain.started }};{% endfor %}")


class _ChainState:
    """One chain as the progress display (chains.Progress) reads it."""

    def __init__(self, index: int):
        self.index, self.state, self._position = index, "waiting", (0, 0, "")

    def position(self) -> tuple[int, int, str]:
        return self._position

    def read(self, text: str) -> None:
        finished, total, tuning, started = text.split()
        if started == "true":
            self.state = "done" if finished == total else "running"
        self._position = (int(finished), int(total), "warmup" if tuning == "true" else "sampling")


def _run(with_data, settings: SamplerSettings, record: dict):
    """Sample with nutpie's sampler object (nutpie's own `sample` turns Ctrl-C into a partial result and has
    its own progress bars): stangen's progress lines on a terminal, Ctrl-C and SIGTERM stop every chain."""
    import importlib

    from nutpie import _lib
    arrow_to_arviz = importlib.import_module("nutpie.sample")._arrow_to_arviz

    nuts = _lib.PyNutsSettings.Diag(_seed(settings))
    nuts.num_tune, nuts.num_draws, nuts.num_chains = settings.warmup, settings.draws, settings.chains
    nuts.maxdepth = settings.max_treedepth
    nuts.target_accept = float(settings.adapt_delta)
    cores = settings.effective_parallel_chains()
    chains = [_ChainState(k) for k in range(settings.first_chain - 1, settings.first_chain - 1 + settings.chains)]
    display = Progress(chains, settings.warmup + settings.draws, enabled=not settings.quiet)

    def update(formatted: str) -> None:  # called from nutpie's threads
        for chain, text in zip(chains, formatted.split(";")):
            with contextlib.suppress(ValueError):
                chain.read(text)

    progress = (_lib.ProgressType.template_callback(250, PROGRESS_TEMPLATE, cores, update) if display.enabled
                else _lib.ProgressType.none())
    try:
        sampler = with_data._make_sampler(nuts, np.zeros(with_data.n_dim), cores, progress, _lib.PyStorage.arrow())
    except Exception as exc:
        raise backend_error(f"nutpie could not start: {_clean(exc)}", {**record, "stderr_tail": str(exc)}) from None
    display.update(force=True)  # every chain waiting: a small model can be done before the first redraw
    try:
        with exit_on_sigterm():
            while True:
                try:
                    sampler.wait(0.25)
                    break
                except TimeoutError:  # not finished yet (its is_finished() raises this too): redraw the lines
                    display.update()
        results = sampler.take_results()
    except (KeyboardInterrupt, SystemExit):
        with contextlib.suppress(Exception):
            sampler.abort()
        raise
    except Exception as exc:
        with contextlib.suppress(Exception):
            sampler.abort()
        message = _clean(exc)
        if "initialization points failed" in message:
            raise backend_error(
                "nutpie could not find a starting point: at every initial value it tried (standard normal on the "
                "unconstrained scale; nutpie does not take `init`) the log density or its gradient was not "
                "finite. Check the priors and the data (e.g. a scale that can be zero, extreme predictor "
                "values), or sample with another backend and init=0.5 (a narrower range).\n"
                f"Stan's last messages:\n{indent(message)}", {**record, "stderr_tail": message}) from None
        raise chain_failure(1, f"nutpie stopped: {message}", message, settings, record) from None
    for chain in chains:
        chain.state = "done"
    display.update(force=True)
    draws, stats = results.get_arrow_trace()
    return arrow_to_arviz(draws, stats, skip_vars=["gradient", "unconstrained_draw", "mass_matrix_inv",
                                                   "mass_matrix_eigvals", "mass_matrix_stds", "divergence_start",
                                                   "divergence_end", "divergence_momentum",
                                                   "divergence_start_gradient"],
                          coords={}, save_warmup=False)


def _clean(exc: BaseException) -> str:
    """nutpie's error text without its Rust backtrace (RUST_BACKTRACE) or the C++ layers' prefixes."""
    text = re.split(r"\n\s*(?:Stack backtrace:|\d+: )", str(exc), maxsplit=1)[0]
    text = re.sub(r"(Failed to construct model: )?construct\(\) failed with exception: (Exception: )?", "", text)
    text = text.replace("Logp function returned error: ", "").replace("BridgeStan(EvaluationFailed(\"", "")
    text = re.sub(r"log_density_gradient\(\) failed with exception: (Exception: )?", "", text)
    text = re.sub(r'(\\n)?"\)\)$', "", text.strip())
    return "\n".join(line.strip() for line in text.splitlines() if line.strip()) or type(exc).__name__


def _seed(settings: SamplerSettings) -> int:
    """nutpie takes one seed for all its chains: a chain sampled on its own (first_chain > 1, on a cluster)
    gets a seed of its own, derived from the fit's seed and its chain id."""
    if settings.first_chain == 1:
        return settings.seed
    return int.from_bytes(hashlib.sha256(f"{settings.seed}-{settings.first_chain}".encode()).digest()[:4], "little")
