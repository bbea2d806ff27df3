"""Rank-normalized R-hat, bulk and tail ESS and the MCSE of the mean, for many parameters at once.

The numbers are ArviZ's (Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021, as `arviz.rhat`, `arviz.ess`
and `arviz.mcse` compute them in ArviZ 0.23), computed on a (chains, draws, parameters) array in one pass:
ArviZ loops over parameters in Python, which took 24 of the 38 s after sampling on InstEval's 4,121 group
effects and population parameters. Ranks, normal scores and autocovariances (by FFT) are taken for every
parameter at once; only Geyer's truncation of each parameter's autocorrelations stays a short loop.
tests/test_diagnostics.py holds them equal to ArviZ's.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import stats
from scipy.fft import next_fast_len

TAIL_PROBS = (0.05, 0.95)


def _split(x: np.ndarray) -> np.ndarray:
    """(chains, draws, K) → (2·chains, draws//2, K): each chain's first and last half as chains of their own."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half:]], axis=0)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Normal scores of each parameter's ranks over all its draws (Blom's offset 3/8)."""
    m, n, k = x.shape
    rank = stats.rankdata(x.reshape(m * n, k), method="average", axis=0)
    return stats.norm.ppf((rank - 3 / 8) / (m * n - 2 * 3 / 8 + 1)).reshape(m, n, k)


def _autocov(x: np.ndarray) -> np.ndarray:
    """Autocovariance of each chain at every lag, along axis 1."""
    n = x.shape[1]
    size = next_fast_len(2 * n)
    centred = x - x.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(centred, n=size, axis=1)
    spectrum *= np.conjugate(spectrum)
    return np.fft.irfft(spectrum, n=size, axis=1)[:, :n] / n


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of each parameter of a (chains, draws, K) array (already split), as ArviZ's `_ess`."""
    m, n, k = x.shape
    total = m * n
    out = np.full(k, np.nan)
    finite = np.isfinite(x).all(axis=(0, 1))
    constant = finite & (x.max(axis=(0, 1)) - x.min(axis=(0, 1)) < np.finfo(float).resolution)
    out[constant] = total
    todo = np.flatnonzero(finite & ~constant)
    if not todo.size or n < 4:
        return out
    y = x[:, :, todo]
    acov = _autocov(y)
    mean_var = acov[:, 0, :].mean(axis=0) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + y.mean(axis=1).var(axis=0, ddof=1)
    rho = 1.0 - (mean_var[None, :] - acov.mean(axis=0)) / var_plus[None, :]  # (lags, K)
    floor = 1 / np.log10(total)
    for column, index in enumerate(todo):
        out[index] = total / max(_tau(rho[:, column], n), floor)
    return out


def _tau(rho: np.ndarray, n: int) -> float:
    """Geyer's initial positive and monotone sequence estimate of the integrated autocorrelation time."""
    kept = np.zeros(n)
    kept[0] = even = 1.0
    kept[1] = odd = rho[1]
    t = 1
    while t < n - 3 and even + odd > 0.0:
        even, odd = rho[t + 1], rho[t + 2]
        if even + odd >= 0:
            kept[t + 1], kept[t + 2] = even, odd
        t += 2
    max_t = t - 2
    if even > 0:
        kept[max_t + 1] = even
    t = 1
    while t <= max_t - 2:
        if kept[t + 1] + kept[t + 2] > kept[t - 1] + kept[t]:
            kept[t + 1] = kept[t + 2] = (kept[t - 1] + kept[t]) / 2.0
        t += 2
    tau = -1.0 + 2.0 * kept[: max_t + 1].sum() + kept[max_t + 1: max_t + 2].sum()
    return float("nan") if np.isnan(kept).any() else tau


def _rhat(x: np.ndarray) -> np.ndarray:
    """Classic R-hat of each parameter of a (chains, draws, K) array."""
    n = x.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = n * x.mean(axis=1).var(axis=0, ddof=1)
        within = x.var(axis=1, ddof=1).mean(axis=0)
        return np.sqrt((between / within + n - 1) / n)


def diagnostics(draws: np.ndarray) -> dict[str, np.ndarray]:
    """{'mcse_mean', 'ess_bulk', 'ess_tail', 'r_hat'} of each parameter of draws (chains, draws, K). Large
    arrays are cut into blocks of parameters worked on by one thread per core (the sorts and FFTs release
    the GIL)."""
    x = np.asarray(draws, dtype=float)
    k = x.shape[2]
    workers = min(os.cpu_count() or 1, max(1, k // MIN_BLOCK))
    if workers == 1:
        return _diagnostics(x)
    blocks = np.array_split(np.arange(k), workers)
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(lambda columns: _diagnostics(x[:, :, columns]), blocks))
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


MIN_BLOCK = 200  # parameters: fewer are not worth a thread


def _diagnostics(x: np.ndarray) -> dict[str, np.ndarray]:
    m, n, k = x.shape
    valid = np.isfinite(x).all(axis=(0, 1)) & (n >= 4)
    nan = np.full(k, np.nan)
    if not valid.any():
        return {"mcse_mean": nan, "ess_bulk": nan.copy(), "ess_tail": nan.copy(), "r_hat": nan.copy()}
    x = np.where(valid, x, 0.0)
    split = _split(x)
    flat = x.reshape(m * n, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        mcse_mean = flat.std(axis=0, ddof=1) / np.sqrt(_ess(split))
    z = _z_scale(split)  # for the bulk ESS and the bulk R-hat alike
    ess_bulk = _ess(z)
    ess_tail = np.minimum(*[_ess(_split((x <= np.quantile(flat, p, axis=0)).astype(float))) for p in TAIL_PROBS])
    if m >= 2:  # R-hat compares chains: ArviZ gives none for one chain
        folded = np.abs(split - np.median(split.reshape(-1, k), axis=0))
        r_hat = np.maximum(_rhat(z), _rhat(_z_scale(folded)))
    else:
        r_hat = nan.copy()
    return {name: np.where(valid, values, np.nan) for name, values in
            {"mcse_mean": mcse_mean, "ess_bulk": ess_bulk, "ess_tail": ess_tail, "r_hat": r_hat}.items()}
