"""Many fits of one program at once, on Dask: the layer under `stangen sbc` (and the kfold and plan commands
of the same issue).

    results = run_fits(program_code, jobs, summarize, settings=SamplerSettings(chains=2, ...),
                       scheduler=None, workers=2, results_file=out / "fits.jsonl")

- The program is compiled once, here, before any task. A worker compiles from the program text (the compile
  cache's key) into its own cache at most once — under the cache's lock, so worker processes that share a
  cache folder (a local cluster: they share this machine's) find the artifact already built and only load
  it, and a worker on another machine builds it once into its cache. Each worker process keeps the compiled
  model for the rest of the batch.
- `scheduler`: None → a local cluster with `workers` processes (default: the machine's cores), one thread
  each; or the address of a running Dask scheduler ("tcp://host:port"); or "inline" (no Dask: one fit after
  another in this process, for debugging).
- Each job carries its own seed (derive them from one master seed with `job_seeds`), so a rerun reproduces
  every fit. A fit that fails is recorded with its reason and the batch goes on; progress is printed as fits
  done / total; every finished fit is appended to `results_file` at once (JSON lines), so an interrupted batch
  keeps what it did, and a rerun with the same file skips the jobs already there.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from tqdm import tqdm

from ..core.errors import Problem, UserError, require_count
from .backends import SamplerSettings, get_backend
from .backends.chains import display_mode, terminal_size

INLINE = "inline"


@dataclass(frozen=True)
class FitJob:
    """One fit of a batch: the Stan data (for the batch's program), its seed, and anything the summary needs
    (true values, held-out rows …), carried to the worker and back."""

    index: int
    stan_data: dict
    seed: int
    payload: dict = field(default_factory=dict)


@dataclass
class FitResult:
    index: int
    ok: bool
    reason: str | None  # why it failed
    seconds: float  # the whole task on the worker: sampling and summary
    sample_seconds: float
    divergences: int
    output: dict  # what `summarize` returned
    worker: str = ""  # host:pid of the worker process
    compiled: bool = False  # this task compiled the program (the worker's cache did not have it)
    batch: str = ""  # the batch's fingerprint (program, settings, job seeds): a rerun resumes only its own fits

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=_json_default)


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def job_seeds(master_seed: int, n: int) -> list[int]:
    """n independent seeds (< 2^31) from one master seed: the same master seed gives the same seeds."""
    children = np.random.SeedSequence(master_seed).spawn(n)
    return [int(child.generate_state(1)[0] % (2**31 - 1)) for child in children]


# -- the worker side ------------------------------------------------------------------------------

_COMPILED: dict[tuple[str, str], Any] = {}  # (backend, program) → CompiledModel, per worker process


def compiled_in_process(backend_name: str, code: str):
    """The program compiled (or loaded from the cache) once per worker process."""
    key = (backend_name, code)
    if key not in _COMPILED:
        _COMPILED[key] = get_backend(backend_name).compile(code, quiet=True)
    return _COMPILED[key]


def run_job(backend_name: str, code: str, settings: SamplerSettings, job: FitJob,
            summarize: Callable[[Any, FitJob], dict]) -> FitResult:
    """Compile (once per process) and sample one job, then summarize its draws; failures become results."""
    start = time.perf_counter()
    worker = f"{os.uname().nodename}:{os.getpid()}"
    try:
        backend = get_backend(backend_name)
        first = (backend_name, code) not in _COMPILED
        model = compiled_in_process(backend_name, code)
        draws = backend.sample(model, job.stan_data, replace(settings, seed=job.seed, quiet=True))
        divergences = int(np.asarray(draws.sample_stats.get("diverging", 0)).sum())
        output = summarize(draws, job)
        return FitResult(job.index, True, None, time.perf_counter() - start, draws.sample_seconds, divergences,
                         output, worker, compiled=first and model.compiled_now)
    except Exception as exc:  # one failed fit is a result, not the end of the batch
        return FitResult(job.index, False, f"{type(exc).__name__}: {exc}"[:2000], time.perf_counter() - start,
                         0.0, 0, {}, worker)


# -- the client side ------------------------------------------------------------------------------

def _fingerprint(code: str, settings: SamplerSettings, jobs: list[FitJob], backend: str, summarize) -> str:
    """What makes a batch: backend, program, settings, the summary function, and every job's index, seed, Stan
    data and payload (another design, truth or held-out set is another batch)."""
    import hashlib
    import pickle
    digest = hashlib.sha256(json.dumps([backend, code, asdict(replace(settings, quiet=True)),
                                        getattr(summarize, "__qualname__", repr(summarize))]).encode())
    for job in jobs:
        digest.update(pickle.dumps((job.index, job.seed, job.stan_data, job.payload), protocol=4))
    return digest.hexdigest()[:16]


def _done_before(results_file: Path | None, batch: str) -> dict[int, FitResult]:
    """The fits of this batch already in the results file (an interrupted run); another batch's lines (other
    program, settings or seeds) are not reused."""
    if results_file is None or not results_file.exists():
        return {}
    done = {}
    for line in results_file.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by an interruption
            continue
        if record.get("batch") == batch:
            done[record["index"]] = FitResult(**record)
    return done


def local_cluster(workers: int | None):
    """A local Dask cluster: `workers` processes (default: cores), one thread each. Worker processes are not
    daemonic, because the embedded backend runs each chain in a child process."""
    if workers is not None:
        require_count("workers", workers, "the number of Dask worker processes")
    import dask
    from distributed import LocalCluster
    with dask.config.set({"distributed.worker.daemon": False, "distributed.admin.system-monitor.gil.enabled": False}):
        return LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                            dashboard_address=":0", silence_logs=40)


def run_fits(code: str, jobs: Iterable[FitJob], summarize: Callable[[Any, FitJob], dict], *,
             settings: SamplerSettings, backend: str = "pystan", scheduler: str | None = None,
             workers: int | None = None, results_file: str | Path | None = None, progress: bool = True,
             label: str = "fits") -> list[FitResult]:
    """Fit every job with the same program; results in job order (see the module's doc)."""
    jobs = list(jobs)
    results_file = Path(results_file) if results_file is not None else None
    batch = _fingerprint(code, settings, jobs, backend, summarize)
    done = _done_before(results_file, batch)
    if results_file is not None and results_file.exists() and not done:
        results_file.unlink()  # another batch's fits: start afresh
    todo = [job for job in jobs if job.index not in done]
    get_backend(backend).compile(code)  # once, here, before any task (workers sharing the cache only load it)
    results = dict(done)
    total, start = len(jobs), time.perf_counter()
    # a terminal or a notebook: one tqdm bar, redrawn; a log: a line every tenth of the batch
    bar = None
    if progress and todo and display_mode() == "live":
        columns, rows = terminal_size()  # (0 x 0 on a bare pseudo-terminal: tqdm would hide the bar)
        bar = tqdm(total=total, initial=len(done), desc=label, file=sys.stderr, ncols=columns, nrows=rows)

    def record(result: FitResult) -> None:
        result.batch = batch
        results[result.index] = result
        if results_file is not None:
            # made with the first result, not before: a run that never starts (no scheduler) leaves no folder
            results_file.parent.mkdir(parents=True, exist_ok=True)
            with open(results_file, "a", encoding="utf-8") as handle:
                handle.write(result.to_json() + "\n")
        if progress:
            failed = sum(not r.ok for r in results.values())
            if bar is not None:
                bar.update(1)
                if failed:
                    bar.set_postfix_str(f"{failed} failed")
            elif len(results) == total or len(results) % max(total // 10, 1) == 0:
                print(f"{label}: {len(results)}/{total} done" + (f", {failed} failed" if failed else "") +
                      f" ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)

    try:
        if scheduler == INLINE:
            for job in todo:
                record(run_job(backend, code, settings, job, summarize))
        elif todo:
            _on_dask(code, todo, summarize, settings, backend, scheduler, workers, record)
    finally:
        if bar is not None:
            bar.close()
    return [results[job.index] for job in jobs if job.index in results]


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int | None):
    """A Dask client: of the cluster at `scheduler`, else of a local cluster of `workers` processes (closed
    with the client). A scheduler that cannot be reached within Dask's connect timeout
    (`distributed.comm.timeouts.connect`, 30 s unless set; `--scheduler-timeout` on the command line) is a
    UserError naming the address."""
    from distributed import Client
    cluster = local_cluster(workers) if scheduler is None else None
    client = Client(cluster) if cluster is not None else _connect(scheduler)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _connect(scheduler: str):
    """A client of the running scheduler at this address, or a UserError saying why not."""
    import gc

    import dask
    from distributed import Client
    timeout = dask.config.get("distributed.comm.timeouts.connect")
    try:
        return Client(scheduler, timeout=timeout)
    except (OSError, ValueError, TypeError, MemoryError) as exc:  # Dask's TimeoutError is an OSError
        # MemoryError: something that is not a Dask scheduler answered, and its reply was read as a frame length
        reason = str(exc) if not isinstance(exc, MemoryError) else "what answered is not a Dask scheduler"
    # the half-made client closes itself when collected, and complains to stderr that it never connected
    with contextlib.redirect_stderr(io.StringIO()):
        gc.collect()
    raise UserError(Problem("scheduler", f"cannot use the Dask scheduler at {scheduler!r}: {reason}. Check the "
                                         "address (tcp://host:port) and that the scheduler runs; a slow network "
                                         "may need a longer --scheduler-timeout (Dask's "
                                         "distributed.comm.timeouts.connect)"))


@contextlib.contextmanager
def cancelled_on_error(client, futures):
    """Cancel the tasks not yet done when the caller stops waiting for them (an error, Ctrl-C)."""
    try:
        yield futures
    except BaseException:
        client.cancel(futures)
        raise


def _on_dask(code, todo, summarize, settings, backend, scheduler, workers, record) -> None:
    from distributed import as_completed
    with dask_client(scheduler, workers) as client:
        futures = [client.submit(run_job, backend, code, settings, job, summarize, pure=False,
                                 key=f"stangen-fit-{job.index}-{job.seed}") for job in todo]
        with cancelled_on_error(client, futures):
            for future in as_completed(futures):
                record(future.result())
