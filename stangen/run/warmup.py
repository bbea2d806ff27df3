"""An initial inverse metric for NUTS from the quick working fit, for large data sets.

Stan's warmup starts from the unit metric: every parameter on the unconstrained scale is assumed to have
posterior variance 1. With tens of thousands of rows the posterior sds of sigma, the intercept and the
coefficients are in the thousandths, and until the first metric window (iterations 76–100) the sampler takes
tiny steps in trees of up to 1023 leapfrogs. Starting from each parameter's approximate posterior variance
halves InstEval's warmup (47 → 21 s per chain, benchmarks/initial_metric.py; the sampling phase and its ESS
are unchanged: the windows re-estimate the metric as before).

The variances, on the unconstrained scale, from stangen.compiler.parameterization.working_fit:
- a centered group's intercept: its conditional variance given the data (the EM's V_j); when the level
  took the pooled intercept, plus τ²/J of each crossed level (their means move it); when nested, plus its
  parent group's. A noncentered group's standardized effect: V_j / τ²;
- the intercept: σ²/Σw plus τ²/J of every level (the levels' means move it); pooled coefficients:
  σ²·diag((BᵀWB)⁻¹) of the working least squares;
- log sigma: 1 / (2Σw); log sd of a level: (1 + 1/r)² / (2(J − 1)) with r its median information ratio
  (the delta method on the between-group mean square), at most 1.

Only where every parameter has such a variance — gaussian outcomes, independent errors, intercept-only
levels without group-level predictors — and only for data of at least LARGE_DATA rows, where the early
warmup is what costs (a partly filled metric was measured slower than the unit one: 89 s instead of 47);
otherwise None, and the sampler starts as Stan always does. CmdStan takes it (`metric_file`); the embedded
backend's services have no such argument, so it starts from the unit metric (its draws then differ from
CmdStan's for the same seed).
"""
from __future__ import annotations

import numpy as np

from ..compiler.model import ModelDescription
from ..compiler.parameterization import working_fit

LARGE_DATA = 10_000  # rows


def covered(desc: ModelDescription) -> bool:
    """Every parameter of the program has a variance here (see the module docstring)."""
    return (desc.family.working_metric and desc.residuals.is_default and bool(desc.levels)
            and not desc.submodels  # (a sub-model's parameters have no working variance here)
            and all(lv.kind == "intercept" and not lv.has_effects for lv in desc.levels))


def initial_inverse_metric(desc: ModelDescription, stan_data: dict, *,
                           min_rows: int | None = None) -> np.ndarray | None:
    """The diagonal of the initial inverse metric, in the order of the program's unconstrained parameters,
    or None where Stan's unit start is kept (small data, prior-only, a structure not covered)."""
    n = int(stan_data["N"])
    if n < (LARGE_DATA if min_rows is None else min_rows) or int(stan_data.get("prior_only", 0)) or not covered(desc):
        return None
    fit = working_fit(desc, stan_data)
    size = {lv.name: int(stan_data[lv.groups_key]) for lv in desc.levels}
    tau2 = {lv.name: float(fit.tau[lv.name][0, 0]) for lv in desc.levels}
    out: list[float] = []
    if desc.intercept:
        out.append(fit.sigma2 / fit.weight + sum(tau2[name] / size[name] for name in size))
    pooled = list(fit.pooled_variance[1:] if desc.spans_intercept else fit.pooled_variance)
    for term in desc.terms:
        columns = int(stan_data[term.size]) if term.categorical else 1
        out += pooled[:columns]
        del pooled[:columns]
    out.append(1.0 / (2.0 * fit.weight))  # log sigma
    for lv in desc.levels:
        ratio = max(float(np.median(fit.ratios[lv.name][:, 0])), 1e-3)
        out.append(min(1.0, (1.0 + 1.0 / ratio) ** 2 / (2.0 * max(size[lv.name] - 1, 1))))  # log sd
        if lv.integrated or lv.marginal:
            continue
        values = _group_values_variance(lv, desc, fit, stan_data)  # centered: the groups' values
        standardized = fit.group_variance[lv.name][:, 0] / tau2[lv.name]  # noncentered: z = deviation / τ
        if lv.mixed:
            centered = np.asarray(stan_data[lv.centered_groups_key], dtype=int) - 1
            noncentered = np.asarray(stan_data[lv.noncentered_groups_key], dtype=int) - 1
            out += list(values[centered]) + list(standardized[noncentered])
        elif lv.centered:
            out += list(values)
        else:
            out += list(standardized)
    metric = np.asarray(out, dtype=float)
    return metric if np.all(np.isfinite(metric)) and np.all(metric > 0) else None


def _group_values_variance(lv, desc: ModelDescription, fit, stan_data: dict) -> np.ndarray:
    """Each group's value's variance as a centered level samples it: its deviation's given the data (the EM's
    V_j); a level that took the pooled intercept has its groups' values pinned by their data, less how
    uncertain the crossed levels' means are (τ²/J of each); a nested level adds its parent group's variance."""
    variance = fit.group_variance[lv.name][:, 0].copy()
    if lv.coefficients[0].mean_from_population:
        lineage = {lv.name, *lv.ancestors} | {o.name for o in desc.levels if lv.name in o.ancestors}
        variance += sum(float(fit.tau[o.name][0, 0]) / int(stan_data[o.groups_key])
                        for o in desc.levels if o.name not in lineage)
    if lv.parent is not None and lv.parent_key in stan_data:
        parent_of = np.asarray(stan_data[lv.parent_key], dtype=int) - 1
        variance += fit.group_variance[lv.parent][parent_of, 0]
    return variance
