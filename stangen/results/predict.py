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

from ..compiler.new_rows import Coefficients, EncodedRows, encode_rows, inverse_link
from ..compiler.new_rows import linear_predictor as shared_linear_predictor
from ..core.errors import Problem, UserError

if TYPE_CHECKING:
    from ..fitting import Fit

KINDS = ("response", "mean", "link")
QUANTILES = (0.025, 0.5, 0.975)


def _flat(values: np.ndarray) -> np.ndarray:
    """(chain, draw, ...) → (draws, ...)."""
    return values.reshape(-1, *values.shape[2:])


def linear_predictor(fit: "Fit", rows: EncodedRows, new_groups: str, rng: np.random.Generator) -> np.ndarray:
    """The linear predictor of every row, per draw: (draws, rows)."""
    d, post = fit.description, fit.posterior
    S = post.sizes["chain"] * post.sizes["draw"]
    beta = np.concatenate([_flat(post[f"beta_{t.stan}"].values).reshape(S, -1) for t in d.terms], axis=1) \
        if d.terms else np.zeros((S, 0))
    coefficients = Coefficients(
        intercept=_flat(post["Intercept"].values) if d.intercept else np.zeros(S), beta=beta,
        deviations={lv.name: _deviations(fit, lv, rows, new_groups, rng) for lv in d.levels},
        effects={e.name: _flat(post[e.name].values).reshape(S, -1)
                 for lv in d.levels for c in lv.coefficients for e in c.effects})
    return shared_linear_predictor(d, rows, coefficients)


def _deviations(fit: "Fit", lv, rows: EncodedRows, new_groups: str, rng) -> np.ndarray:
    """Each group's deviations u per draw, (draws, groups, coefficients): fitted groups' from the draws, new
    groups' drawn from the fitted distribution ('sample') or 0 ('population')."""
    post, S = fit.posterior, fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"]
    known = len(fit.program.data.labels[lv.name])
    n_new = len(rows.new_labels.get(lv.name, []))
    q = lv.n_coef
    u = _flat(post[f"u_{lv.stan}"].values).reshape(S, known, q)
    if n_new:
        new = np.zeros((S, n_new, q))
        if new_groups == "sample":
            sd = _flat(post[f"sd_{lv.stan}"].values).reshape(S, q)
            z = rng.standard_normal((S, n_new, q))
            if lv.kind == "correlated":
                corr = _flat(post[f"corr_{lv.stan}"].values).reshape(S, q, q)
                z = np.einsum("sij,snj->sni", _factor(corr), z)
            new = z * sd[:, None, :]
        u = np.concatenate([u, new], axis=1)
    return u


def _factor(corr: np.ndarray) -> np.ndarray:
    """A square root of each correlation matrix: Cholesky, or through the eigenvalues clipped at 0 when
    rounding (a correlation near ±1 read from a CSV) left one not quite positive definite."""
    try:
        return np.linalg.cholesky(corr)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(corr)
        return vectors * np.sqrt(np.clip(values, 0, None))[:, None, :]


def aux_draws(fit: "Fit", rows: EncodedRows, new_groups: str = "population",
              rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """The family's own parameters per draw, shaped to broadcast against (draws, rows): sigma per row with
    `residuals: sd_by`, a sub-model's parameter per row (its new groups' effects as `new_groups` says); a
    vector (cutpoints) as (draws, length)."""
    post, S = fit.posterior, fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"]
    d = fit.description
    rng = rng if rng is not None else np.random.default_rng(0)
    out = {}
    for aux in d.family.aux:
        sub = d.submodel(aux)
        if sub is not None:
            beta = np.concatenate([_flat(post[t.param].values).reshape(S, -1) for t in sub.terms], axis=1) \
                if sub.terms else np.zeros((S, 0))
            coefficients = Coefficients(
                intercept=_flat(post[sub.intercept_name].values), beta=beta,
                deviations={lv.name: _deviations(fit, lv, rows, new_groups, rng) for lv in sub.levels}, effects={})
            out[aux.name] = inverse_link(sub.link, shared_linear_predictor(d, rows, coefficients, submodel=sub))
            continue
        values = _flat(post[aux.name].values)
        if aux.size:
            out[aux.name] = values.reshape(S, -1)
        elif values.ndim == 2:  # sigma per value of sd_by
            out[aux.name] = values[:, rows.sigma_group]
        else:
            out[aux.name] = values[:, None]
    return out


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
            values = _response(fit, eta, aux, rows, rng)
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


def _response(fit: "Fit", eta: np.ndarray, aux: dict[str, np.ndarray], rows: EncodedRows, rng) -> np.ndarray:
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
