"""Multilevel quantities as posterior distributions (one value per draw → mean and 95% interval).

ICC(level) — the intraclass correlation / variance partition coefficient of a level's varying intercept:
    tau²_level / (sum of all levels' intercept variances + residual variance).
    Residual variance: sigma² (gaussian); pi²/3 on the latent logit scale (bernoulli, binomial);
    ln(1 + 1/lambda) with lambda = exp(Intercept + sum tau²/2) for poisson (the lognormal approximation of
    Nakagawa, Johnson & Schielzeth 2017). With varying slopes, the intercept variance is the one at
    predictors = 0, as in lme4's printout.
pooling(level: coefficient) — how far group estimates are pulled toward their prediction (Gelman & Hill 2007,
    ch. 12): per group, omega_j = s² / (s² + tau² · n_j) for an intercept and s² / (s² + tau² · S_xx,j) for a
    slope of x (S_xx,j: the within-group sum of squares of x), averaged over groups; s² is the residual variance
    above. 0 = no pooling, 1 = complete pooling. Other levels are ignored (an approximation with several levels).
R2(level: coefficient) — proportional reduction of a varying coefficient's variance by the group-level
    predictors (Raudenbush & Bryk; Snijders & Bosker's level-2 R²): 1 - tau²(with) / tau²(without), from a fit
    of the same spec without the level's group-level predictors (`without_group_predictors`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..spec import Level, Spec
from ..spec.validate import INTERCEPT

if TYPE_CHECKING:
    from ..fitting import Fit


def _sd(fit: "Fit", level, k: int) -> np.ndarray:
    values = fit.posterior[f"sd_{level.stan}"].values
    return (values if values.ndim == 2 else values[..., k]).reshape(-1)


def residual_variance(fit: "Fit") -> np.ndarray:
    d = fit.description
    n = fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"]
    if d.family == "gaussian":
        sigma = fit.posterior["sigma"].values
        if sigma.ndim == 3:  # one sd per value of sd_by: the residual variance averaged over the observations
            counts = np.bincount(np.asarray(fit.program.stan_data["sigma_group"]) - 1, minlength=sigma.shape[2])
            return (sigma.reshape(-1, sigma.shape[2]) ** 2) @ (counts / counts.sum())
        return sigma.reshape(-1) ** 2
    if d.family in ("bernoulli", "binomial"):
        return np.full(n, np.pi ** 2 / 3)
    intercept_var = sum(_sd(fit, lv, 0) ** 2 for lv in d.levels if lv.coefficients[0].name == INTERCEPT)
    if d.intercept:
        log_mean = fit.posterior["Intercept"].values.reshape(-1)
    else:
        log_mean = np.full(n, np.log(max(np.mean(fit.program.stan_data["y"]), 1e-3)))
    lam = np.exp(log_mean + np.asarray(intercept_var) / 2)
    return np.log1p(1 / lam)


def icc(fit: "Fit") -> dict[str, np.ndarray]:
    levels = [lv for lv in fit.description.levels if lv.coefficients[0].name == INTERCEPT]
    variances = {lv.name: _sd(fit, lv, 0) ** 2 for lv in levels}
    total = sum(variances.values()) + residual_variance(fit)
    return {f"ICC({name})": v / total for name, v in variances.items()}


def pooling(fit: "Fit") -> dict[str, np.ndarray]:
    data = fit.program.stan_data
    s2 = residual_variance(fit)
    out = {}
    for lv in fit.description.levels:
        idx = np.asarray(data[f"idx_{lv.stan}"]) - 1
        n_groups = len(fit.program.data.labels[lv.name])
        for k, c in enumerate(lv.coefficients):
            if c.term is None:
                information = np.bincount(idx, minlength=n_groups).astype(float)
            else:
                x = np.asarray(data[f"x_{c.term.stan}"], dtype=float)
                counts = np.maximum(np.bincount(idx, minlength=n_groups), 1)
                means = np.bincount(idx, weights=x, minlength=n_groups) / counts
                information = np.bincount(idx, weights=(x - means[idx]) ** 2, minlength=n_groups)
            tau2 = _sd(fit, lv, k) ** 2
            omega = s2[:, None] / (s2[:, None] + tau2[:, None] * information[None, :])
            out[f"pooling({lv.name}: {c.name})"] = omega.mean(axis=1)
    return out


def _table(draws: dict[str, np.ndarray]) -> pd.DataFrame:
    rows = {name: {"mean": v.mean(), "q2.5%": np.quantile(v, 0.025), "q97.5%": np.quantile(v, 0.975)}
            for name, v in draws.items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("quantity")


def quantities(fit: "Fit") -> pd.DataFrame:
    """ICC of each level and pooling factor of each varying coefficient: mean and 95% interval."""
    return _table(icc(fit) | pooling(fit))


def without_group_predictors(spec: Spec) -> Spec:
    """The same spec with every level's group-level predictors (and group means) removed."""
    raw = spec.to_dict()
    levels = {}
    for name, level in spec.levels.items():
        levels[name] = Level(id=level.id, within=level.within, varying=list(level.coefficients),
                             correlated=level.correlated, unique_labels=level.unique_labels)
    raw["levels"] = levels
    return Spec(**{k: v for k, v in raw.items()}, base_dir=spec.base_dir)


def explained_variance(fit: "Fit", baseline: "Fit") -> pd.DataFrame:
    """R2 per varying coefficient that has group-level predictors in `fit` (baseline: fitted without them)."""
    draws = {}
    for lv in fit.description.levels:
        base_level = next((b for b in baseline.description.levels if b.name == lv.name), None)
        if base_level is None:
            continue
        base_names = [c.name for c in base_level.coefficients]
        for k, c in enumerate(lv.coefficients):
            if not c.effects or c.name not in base_names:
                continue
            with_, without = _sd(fit, lv, k) ** 2, _sd(baseline, base_level, base_names.index(c.name)) ** 2
            n = min(len(with_), len(without))
            draws[f"R2({lv.name}: {c.name})"] = 1 - with_[:n] / without[:n]
    return _table(draws)
