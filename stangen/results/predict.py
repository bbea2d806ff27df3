"""Predictions for new rows from a fit's posterior draws: the linear predictor, the expected outcome, or new
outcomes — in known groups, in new groups (their effects drawn from the fitted distribution, or set to 0),
like lme4's predict(re.form, allow.new.levels) and brms's posterior_epred / posterior_predict.

Computed in numpy from the draws, not in Stan: the draws hold every piece on the data's scale (Intercept,
beta_*, the group-level effects and each group's deviation u_<level> where all predictors are 0, the sds and
correlations), so the linear predictor of any row is a sum of products, and new groups' effects are normal
draws. Nothing is compiled, and it works the same for every backend and for a saved run.
(tests/test_predict.py checks it against the program: on the training rows the log-density of the
predicted linear predictor equals Stan's log_lik draw by draw, and response draws match y_rep.)

With `residuals:` AR(1) errors, response draws use each row's marginal error (sd sigma), not the error
process given the series' observed residuals.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from ..compiler.new_rows import EncodedRows, encode_rows
from .draws import aux_draws, linear_predictor
from ..core.errors import Problem, UserError

if TYPE_CHECKING:
    from ..fitting import Fit

KINDS = ("response", "mean", "link")
QUANTILES = (0.025, 0.5, 0.975)


def predict(fit: "Fit", newdata: pd.DataFrame, kind: str = "response", new_groups: str = "error",
            draws: bool = False, seed: int | None = None, quantiles=QUANTILES):
    """Predictions for the rows of `newdata` (the outcome column is not needed).

    kind: 'response' (new outcomes: posterior predictive draws), 'mean' (the expected outcome: the count scale
    for binomial, the expected category number for an ordinal family, which also gets each category's
    probability), 'link' (the linear predictor).
    new_groups: 'error' (list every group the model was not fitted on), 'sample' (draw a new group's effects
    from the fitted distribution; its group-level predictors must be in newdata), 'population' (its effects
    at 0). A new group nested in a fitted one keeps the fitted parent's effect.
    Returns newdata's columns plus mean, sd and the quantiles, or with draws=True an xarray DataArray
    (chain, draw, row)."""
    if kind not in KINDS:
        raise UserError(Problem("kind", f"unknown kind {kind!r} (allowed: {', '.join(KINDS)})"))
    d = fit.description
    rng = np.random.default_rng(seed)
    rows = encode_rows(fit.program, newdata, new_groups=new_groups, need_trials=kind != "link",
                       need_sd_by=kind == "response", need_bounds=kind == "response")
    eta = linear_predictor(fit, rows, new_groups, rng)
    probabilities = None
    if kind == "link":
        values = eta
    else:
        aux = aux_draws(fit, rows, new_groups, rng)
        if kind == "mean":
            values = d.family.expected(eta, aux, rows.trials)
            if d.family.ordinal:
                probabilities = d.family.probabilities(eta, aux["cutpoints"])
        else:
            values = response_draws(fit, eta, aux, rows, rng)
    chains, per_chain = fit.posterior.sizes["chain"], fit.posterior.sizes["draw"]
    if draws:
        return xr.DataArray(values.reshape(chains, per_chain, rows.n).astype(float), dims=("chain", "draw", "row"),
                            coords={"chain": fit.posterior["chain"].values, "draw": fit.posterior["draw"].values,
                                    "row": np.arange(rows.n)}, name=f"{d.outcome} ({kind})")
    table = newdata.reset_index(drop=True).copy()
    table["mean"] = values.mean(axis=0)
    table["sd"] = values.std(axis=0, ddof=1)
    for q, value in zip(quantiles, np.quantile(values, quantiles, axis=0)):
        table[f"q{100 * q:g}%"] = value
    if probabilities is not None:  # ordinal: each category's probability (posterior mean)
        for k, label in enumerate(fit.program.data.outcome_categories):
            table[f"P({label})"] = probabilities[..., k].mean(axis=0)
    return table


def response_draws(fit: "Fit", eta: np.ndarray, aux: dict[str, np.ndarray], rows: EncodedRows, rng) -> np.ndarray:
    """New outcomes, draw by draw (an ordinal outcome as its category number 1..K; a truncated outcome inside
    its range, an uncensored one)."""
    family, truncation = fit.description.family, fit.description.truncation
    out = np.empty(eta.shape)
    for s in range(eta.shape[0]):
        # draw s of each: a number, a per-row sigma (sd_by) or a vector (cutpoints)
        aux_s = {name: value[s] if value.shape[1] > 1 else value[s, 0] for name, value in aux.items()}
        sigma = aux_s.get("sigma")

        def draw(s=s, aux_s=aux_s, sigma=sigma):
            return family.draw(eta[s], aux_s, rows.trials, lambda: rng.normal(0, 1, eta.shape[1]) * sigma, rng)
        out[s] = draw() if truncation is None else truncation.redraw(draw(), rows.bounds, draw)
    return out
