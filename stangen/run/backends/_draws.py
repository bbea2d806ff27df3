"""Draws as Stan writes them — flat columns named `a.1.2`, plus the sampler's statistics — to one array per
variable, (chains, draws, *dims) in row-major order, and the statistics under stangen's names. Shared by
every backend."""
from __future__ import annotations

import itertools
import math

import numpy as np

from .base import SAMPLE_STATS


def _flat_names(name: str, dims: list[int], complex_last: bool) -> list[str]:
    """Stan's flat column names of `name` in C (row-major) order of `dims`."""
    ranges = []
    for i, d in enumerate(dims):
        if complex_last and i == len(dims) - 1:
            ranges.append(["real", "imag"])
        else:
            ranges.append([str(k) for k in range(1, d + 1)])
    return [".".join((name, *idx)) for idx in itertools.product(*ranges)]


def _group_unclaimed(columns: list[str], arr: np.ndarray, claimed: set[str]) -> dict[str, np.ndarray]:
    """Fallback for columns the model's names/dims did not explain: parse `a.1.2` names."""
    groups: dict[str, list[tuple[tuple[int, ...], int]]] = {}
    singles: dict[str, np.ndarray] = {}
    for j, col in enumerate(columns):
        if col in claimed or col in SAMPLE_STATS:
            continue
        base, _, rest = col.partition(".")
        try:
            idx = tuple(int(p) for p in rest.split(".")) if rest else ()
        except ValueError:
            singles[col] = arr[:, :, j]
            continue
        groups.setdefault(base, []).append((idx, j))
    out: dict[str, np.ndarray] = {}
    for base, items in groups.items():
        ndim = {len(i) for i, _ in items}
        if ndim == {0}:
            out[base] = arr[:, :, items[0][1]]
            continue
        if len(ndim) != 1:
            for i, j in items:
                singles[".".join((base, *map(str, i)))] = arr[:, :, j]
            continue
        dims = tuple(max(i[k] for i, _ in items) for k in range(ndim.pop()))
        value = np.full(arr.shape[:2] + dims, np.nan)
        for i, j in items:
            value[(slice(None), slice(None)) + tuple(k - 1 for k in i)] = arr[:, :, j]
        out[base] = value
    out.update(singles)
    return out


def assemble_variables(
    columns: list[str],
    arr: np.ndarray,
    names: list[str],
    dims: list[list[int]],
    complex_names: set[str] = frozenset(),  # type: ignore[assignment]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(chains, draws, columns) + the model's variable names/dims → (variables, sample_stats)."""
    n_chains, n_draws = arr.shape[:2]
    position = {c: j for j, c in enumerate(columns)}
    claimed: set[str] = set()
    variables: dict[str, np.ndarray] = {}
    for name, d in zip(names, dims):
        d = [int(x) for x in d]
        if math.prod(d) == 0 and d:
            if name in complex_names:
                variables[name] = np.empty((n_chains, n_draws, *d[:-1]), dtype=np.complex128)
            else:
                variables[name] = np.empty((n_chains, n_draws, *d))
            continue
        if not d:
            if name in position:
                variables[name] = np.ascontiguousarray(arr[:, :, position[name]])
                claimed.add(name)
            continue
        is_complex = name in complex_names
        flat = _flat_names(name, d, is_complex)
        if not all(f in position for f in flat) and not is_complex and d[-1] == 2:
            alt = _flat_names(name, d, True)  # complex numbers are stored as (re, im) pairs
            if all(f in position for f in alt):
                flat, is_complex = alt, True
        if all(f in position for f in flat):
            idx = np.fromiter((position[f] for f in flat), dtype=np.intp, count=len(flat))
            value = arr[:, :, idx].reshape(n_chains, n_draws, *d)
            if is_complex:  # (…, 2) re/im pairs → complex128, as cmdstanpy returns them
                value = value[..., 0] + 1j * value[..., 1]
            variables[name] = value
            claimed.update(flat)
    for name, value in _group_unclaimed(columns, arr, claimed).items():
        variables.setdefault(name, value)

    stats: dict[str, np.ndarray] = {}
    for stan_name, ours in SAMPLE_STATS.items():
        if stan_name in position:
            col = arr[:, :, position[stan_name]]
        else:  # e.g. fixed_param writes only lp__ and accept_stat__
            col = np.zeros((n_chains, n_draws)) if ours != "energy" else np.full((n_chains, n_draws), np.nan)
        if ours in ("tree_depth", "n_leapfrog"):
            col = col.astype(np.int64)
        elif ours == "diverging":
            col = col != 0
        else:
            col = np.ascontiguousarray(col)
        stats[ours] = col
    return variables, stats
