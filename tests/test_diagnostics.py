"""stangen.results.diagnostics: R-hat, bulk and tail ESS and the MCSE of the mean for many parameters at
once, equal to ArviZ's per-parameter numbers (what summary.csv and the verdict showed before)."""
from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import xarray as xr

from stangen.results.diagnostics import diagnostics


def arviz_numbers(draws):
    data = xr.Dataset({"x": (("chain", "draw", "parameter"), draws)})
    return {"mcse_mean": az.mcse(data, method="mean")["x"].values, "ess_bulk": az.ess(data, method="bulk")["x"].values,
            "ess_tail": az.ess(data, method="tail")["x"].values, "r_hat": az.rhat(data)["x"].values}


def hard_draws(chains=4, n=500, seed=0):
    """Columns of many kinds: independent, autocorrelated (AR(1) of several strengths), a chain shifted
    (R-hat well above 1), heavy tails, discrete values with ties, an odd number of draws' worth of structure."""
    rng = np.random.default_rng(seed)
    columns = [rng.normal(size=(chains, n))]
    for phi in (0.3, 0.9, 0.99):
        e = rng.normal(size=(chains, n))
        ar = np.zeros_like(e)
        for t in range(1, n):
            ar[:, t] = phi * ar[:, t - 1] + e[:, t]
        columns.append(ar)
    shifted = rng.normal(size=(chains, n))
    shifted[0] += 1.5
    columns += [shifted, rng.standard_t(2, size=(chains, n)), rng.poisson(2, size=(chains, n)).astype(float),
                rng.normal(size=(chains, n)) * np.linspace(0.5, 2, n)]
    return np.stack(columns, axis=-1)


@pytest.mark.parametrize("chains, n", [(4, 500), (4, 1000), (2, 301), (1, 200)])
def test_the_numbers_are_arviz_numbers(chains, n):
    draws = hard_draws(chains, n)
    ours, theirs = diagnostics(draws), arviz_numbers(draws)
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-7, atol=1e-10, err_msg=name)


def test_constant_and_non_finite_columns_are_as_arviz_has_them():
    draws = hard_draws(4, 100)[..., :2].copy()
    draws = np.concatenate([draws, np.full((4, 100, 1), 3.0), draws[..., :1].copy()], axis=-1)
    draws[1, 5, 3] = np.nan
    ours = diagnostics(draws)
    assert ours["ess_bulk"][2] == 400 and np.isnan(ours["r_hat"][3]) and np.isnan(ours["ess_bulk"][3])
    theirs = arviz_numbers(draws)
    np.testing.assert_allclose(ours["ess_bulk"][:2], theirs["ess_bulk"][:2], rtol=1e-7)
