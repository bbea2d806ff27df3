"""Chains across machines: one fit's chains as tasks on a Dask cluster (`stangen fit --scheduler tcp://…`,
or a local cluster with `--workers N`), gathered into the draws a local run gives.

Each task compiles the program on its worker (once per worker process; a worker sharing the compile cache only
loads it) and runs one chain with Stan's chain id k and the fit's seed — what the local backends do for chain k
of a multi-chain run — so the same seed gives the same draws, wherever the chains ran. The draws are stacked
in chain order; each chain's own timing and messages come along.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from .backends import Draws, SamplerSettings, get_backend
from .manyfits import cancelled_on_error, compiled_in_process, dask_client


def run_chain(backend_name: str, code: str, stan_data: dict, settings: SamplerSettings) -> Draws:
    """One chain (settings.chains == 1, Stan id settings.first_chain), on whichever worker runs it."""
    return get_backend(backend_name).sample(compiled_in_process(backend_name, code), stan_data, settings)


def merge(parts: list[Draws], settings: SamplerSettings, seconds: float) -> Draws:
    """Chains sampled apart, as one Draws (chain order as given)."""
    first = parts[0]
    return Draws(
        variables={k: np.concatenate([p.variables[k] for p in parts], axis=0) for k in first.variables},
        sample_stats={k: np.concatenate([p.sample_stats[k] for p in parts], axis=0) for k in first.sample_stats},
        backend=first.backend, stan_version=first.stan_version, sample_seconds=seconds, settings=settings,
        chain_seconds=[c for p in parts for c in p.chain_seconds],
        messages=[m for p in parts for m in p.messages])


def sample_on_cluster(backend_name: str, code: str, stan_data: dict, settings: SamplerSettings, *,
                      scheduler: str | None = None, workers: int | None = None) -> Draws:
    """Sample `settings.chains` chains as Dask tasks: on the cluster at `scheduler`, else on a local cluster
    of `workers` processes. The caller has compiled the program here first, so workers sharing this compile
    cache only load it."""
    with dask_client(scheduler, workers) as client:
        start = time.perf_counter()
        data = client.scatter(stan_data, broadcast=True)  # sent once per worker, not once per chain
        futures = [client.submit(run_chain, backend_name, code, data,
                                 replace(settings, chains=1, first_chain=settings.first_chain + k, quiet=True,
                                         inits=settings.inits[k:k + 1] if settings.inits else None),
                                 pure=False, key=f"stangen-chain-{settings.first_chain + k}-{settings.seed}")
                   for k in range(settings.chains)]
        with cancelled_on_error(client, futures):
            parts = client.gather(futures)
    return merge(parts, settings, time.perf_counter() - start)
