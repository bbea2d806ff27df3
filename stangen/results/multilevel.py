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
design effect(level) — how much a level's clustering inflates the variance of a mean, against as many
    independent observations (Kish): 1 + (n̄ − 1)·ρ, n̄ the mean group size and ρ the correlation of two
    observations in one group: ICC(level), plus its ancestors' ICCs for a nested level (they share those
    groups too); on the latent scale for non-gaussian families; with unequal groups also
    the size-weighted version 1 + (n_w − 1)·ICC, n_w = Σ n_j² / N (the mean group size an observation sees;
    equal to n̄ when groups are equal). effective N(level) = N / design effect: as many independent observations.
effective obs per series (with AR errors, `residuals: correlation`) — the information in a series of n_j
    observations about its mean, 1ᵀC⁻¹1 for its error correlation matrix C: n_j − 2·Σ ρ_k/(1 + ρ_k) over its
    consecutive pairs, ρ_k = φ^gap_k. With unit gaps this is (n − (n − 2)φ)/(1 + φ) ≈ n(1 − φ)/(1 + φ), the
    lecture's formula; uneven gaps are used as they are. Reported as the mean over series, and summed
    (effective N within series).
R2 marginal / R2 conditional (Nakagawa & Schielzeth 2013; Johnson 2014 for varying slopes; Nakagawa, Johnson
    & Schielzeth 2017 for the latent scale), per draw: σ²_f / (σ²_f + σ²_levels + σ²_ε) and
    (σ²_f + σ²_levels) / (…), with σ²_f the variance over the rows of the fixed part of the linear predictor
    (intercept, coefficients, group-level predictors' effects; the offset left out), σ²_levels each level's
    mean over the rows of z_i' Σ z_i (its coefficients' covariance at the row's slope values: τ² for an
    intercept) and σ²_ε the residual variance above (latent where the family has one), as performance::
    r2_nakagawa computes them; not with a sub-model for a family parameter (the residual variance then differs
    between rows).
Bayes R2 (Gelman, Goodrich, Gabry & Vehtari 2019, as brms's bayes_R2), per draw: var(ŷ) / (var(ŷ) + var(y − ŷ))
    over the rows, ŷ each row's expected outcome given its groups.
R2(level: coefficient) — proportional reduction of a varying coefficient's variance by the group-level
    predictors (Raudenbush & Bryk; Snijders & Bosker's level-2 R²): 1 - tau²(with) / tau²(without), from a fit
    of the same spec without the level's group-level predictors (`without_group_predictors`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..compiler.new_rows import training_rows
from ..spec import Level, Spec
from ..spec.validate import INTERCEPT
from .draws import aux_draws, flat_draws, linear_predictor, thinned

if TYPE_CHECKING:
    from ..fitting import Fit


def _sd(fit: "Fit", level, k: int) -> np.ndarray:
    values = fit.posterior[f"sd_{level.stan}"].values
    return (values if values.ndim == 2 else values[..., k]).reshape(-1)


def residual_variance(fit: "Fit") -> np.ndarray:
    """The residual variance per draw, on the latent scale where the family has one (stangen/core/families.py);
    None with a sub-model for a family parameter (`parameters:`): the residual variance then differs between
    observations, and an ICC is no longer one number (as performance::icc declines such models)."""
    d = fit.description
    if d.submodels:
        return None
    intercept_var = sum(_sd(fit, lv, 0) ** 2 for lv in d.levels if lv.coefficients[0].name == INTERCEPT)
    return d.family.latent_residual_variance(fit, intercept_var)


def icc(fit: "Fit") -> dict[str, np.ndarray]:
    """ICC per level with a varying intercept; {} where the family has no latent residual variance (beta)."""
    levels = [lv for lv in fit.description.levels if lv.coefficients[0].name == INTERCEPT]
    variances = {lv.name: _sd(fit, lv, 0) ** 2 for lv in levels}
    residual = residual_variance(fit)
    if residual is None:
        return {}
    total = sum(variances.values()) + residual
    return {f"ICC({name})": v / total for name, v in variances.items()}


def pooling(fit: "Fit") -> dict[str, np.ndarray]:
    data = fit.program.stan_data
    s2 = residual_variance(fit)
    out = {}
    if s2 is None:  # not defined for this family
        return out
    for lv in fit.description.levels:
        idx = np.asarray(data[lv.index_key]) - 1
        n_groups = len(fit.program.data.labels[lv.name])
        for k, c in enumerate(lv.coefficients):
            if c.term is None:
                information = np.bincount(idx, minlength=n_groups).astype(float)
            else:
                x = np.asarray(data[c.term.values_key], dtype=float)
                counts = np.maximum(np.bincount(idx, minlength=n_groups), 1)
                means = np.bincount(idx, weights=x, minlength=n_groups) / counts
                information = np.bincount(idx, weights=(x - means[idx]) ** 2, minlength=n_groups)
            tau2 = _sd(fit, lv, k) ** 2
            omega = s2[:, None] / (s2[:, None] + tau2[:, None] * information[None, :])
            out[f"pooling({lv.name}: {c.name})"] = omega.mean(axis=1)
    return out


def design_effects(fit: "Fit") -> dict[str, np.ndarray]:
    """Design effect and effective N per level with a varying intercept; effective observations per series
    with AR errors (see the module docstring)."""
    data = fit.program.stan_data
    n = int(data["N"])
    out = {}
    shares = {name[len("ICC("):-1]: rho for name, rho in icc(fit).items()}
    for level in fit.description.levels:
        if level.name not in shares:
            continue
        # two observations in one group of a nested level also share its ancestors' groups: their correlation
        # is the level's variance share plus its ancestors'
        rho = shares[level.name] + sum(shares.get(a, 0.0) for a in level.ancestors)
        sizes = np.bincount(np.asarray(data[level.index_key]) - 1).astype(float)
        mean_size, weighted_size = sizes.mean(), (sizes ** 2).sum() / n
        out[f"design effect({level.name})"] = deff = 1 + (mean_size - 1) * rho
        out[f"effective N({level.name})"] = n / deff
        if not np.isclose(mean_size, weighted_size):
            out[f"design effect({level.name}, size-weighted)"] = deff_w = 1 + (weighted_size - 1) * rho
            out[f"effective N({level.name}, size-weighted)"] = n / deff_w
    out.update(fit.description.residuals.effective_observations(fit.posterior, data, n))
    return out


R2_BUDGET = 20_000_000  # draws × rows held at once: on larger data the R²s come from evenly thinned draws


def r_squared(fit: "Fit") -> dict[str, np.ndarray]:
    """Nakagawa's marginal and conditional R² and the Bayesian R², per draw (see the module docstring); on large
    data from every k-th draw of each chain (R2_BUDGET), which their intervals do not need more of."""
    d, prepared = fit.description, fit.program.data
    fit = thinned(fit, R2_BUDGET)  # the same fit, fewer draws: what the functions below read of it
    rows = training_rows(d, prepared)
    out = {}
    residual = residual_variance(fit)
    if residual is not None:
        fixed = linear_predictor(fit, replace(rows, offsets=None), "population", None, group_effects=False)
        var_f = fixed.var(axis=1)
        var_levels = sum(_level_variance(fit, lv, rows) for lv in d.levels)
        total = var_f + var_levels + residual
        out["R2 marginal"], out["R2 conditional"] = var_f / total, (var_f + var_levels) / total
    expected = d.family.expected(linear_predictor(fit, rows, "population", None), aux_draws(fit, rows), rows.trials)
    y = np.asarray(prepared.stan_data["y"], dtype=float)  # (an ordinal outcome: its category numbers 1..K)
    var_fit, var_res = expected.var(axis=1), (y[None, :] - expected).var(axis=1)
    out["Bayes R2"] = var_fit / (var_fit + var_res)
    return out


def _level_variance(fit: "Fit", level, rows) -> np.ndarray:
    """A level's variance in the linear predictor, per draw: the mean over the rows of z_i' Σ z_i, z_i the row's
    values of the level's coefficients (1 for the intercept), Σ their covariance (Johnson 2014)."""
    post = fit.posterior
    q = level.n_coef
    sd = flat_draws(post[f"sd_{level.stan}"].values).reshape(-1, q)
    corr = flat_draws(post[f"corr_{level.stan}"].values).reshape(-1, q, q) if level.kind == "correlated" \
        else np.broadcast_to(np.eye(q), (len(sd), q, q))
    cov = corr * sd[:, :, None] * sd[:, None, :]
    z = np.column_stack([np.ones(rows.n) if c.term is None else rows.slopes[c.term.columns_key]
                         for c in level.coefficients])  # (rows, q)
    # mean over rows of z_i' Σ z_i = Σ_jk Σ_jk · mean(z_ij z_ik): the rows' second moments once, not per draw
    return np.einsum("sij,ij->s", cov, z.T @ z / rows.n)


def _table(draws: dict[str, np.ndarray]) -> pd.DataFrame:
    """Mean and 95% interval of each quantity over the draws where it is defined (student's variance is not for
    ν ≤ 2); `undefined` is the share of draws where it is not."""
    rows = {}
    for name, v in draws.items():
        ok = np.isfinite(v)
        rows[name] = {"mean": v[ok].mean() if ok.any() else np.nan,
                      "q2.5%": np.quantile(v[ok], 0.025) if ok.any() else np.nan,
                      "q97.5%": np.quantile(v[ok], 0.975) if ok.any() else np.nan}
        if not ok.all():
            rows[name]["undefined"] = 1 - ok.mean()
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("quantity")


def quantities(fit: "Fit") -> pd.DataFrame:
    """ICC of each level, pooling factor of each varying coefficient, design effects and effective N, R²:
    mean and 95% interval."""
    return _table(icc(fit) | pooling(fit) | design_effects(fit) | r_squared(fit))


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
