"""Model comparison by approximate leave-one-out cross-validation (PSIS-LOO, through ArviZ).

    a = stangen.fit("specs/sleepstudy.yaml", generated=("log_lik",))
    b = stangen.fit(random_intercept_spec, generated=("log_lik",))
    stangen.results.compare.compare({"slope": a, "intercept": b})      # best first

Fits need the pointwise log-likelihood (`generated=("log_lik",)`, CLI `--generated log_lik`), and all of them
must be fitted to the same observations (the same rows in the same order).
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import arviz as az
import numpy as np
import pandas as pd

from ..core.errors import Problem, UserError

if TYPE_CHECKING:
    from ..fitting import Fit

K_BAD = 0.7  # Pareto k above this: the PSIS estimate of that observation's elpd is unreliable
K_WARN = 0.5  # between K_WARN and K_BAD: usable, but less precise
COLUMNS = ["rank", "elpd_loo", "se", "elpd_diff", "dse", "p_loo", "weight", "k_bad", "k_warn"]
REFIT_HINT = ("refit with --generated log_lik (Python: stangen.fit(..., generated=('log_lik',))) "
              "to compare it by LOO")


def loo(fit: "Fit", name: str = "fit") -> az.ELPDData:
    """PSIS-LOO of one fit (pointwise, with Pareto k). Raises UserError when the fit has no log_lik."""
    if "log_likelihood" not in fit.idata.groups():
        raise UserError(Problem(name, f"the run has no pointwise log-likelihood (log_lik); {REFIT_HINT}"))
    with warnings.catch_warnings():  # high Pareto k is reported by compare(), in the run's terms
        warnings.simplefilter("ignore")
        return az.loo(fit.idata, pointwise=True, var_name="y")


def _same_observations(fits: dict[str, "Fit"]) -> list[Problem]:
    problems = []
    (first, reference), *rest = [(n, np.asarray(f.idata.observed_data["y"].values)) for n, f in fits.items()]
    for name, y in rest:
        if y.shape != reference.shape or not np.array_equal(y, reference):
            what = (f"{y.size} observations, '{first}' has {reference.size}" if y.shape != reference.shape
                    else f"its outcome values differ from those of '{first}'")
            problems.append(Problem(name, f"not fitted to the same data ({what}); LOO compares models of the "
                                          "same observations"))
    return problems


def compare(fits: dict[str, "Fit"]) -> pd.DataFrame:
    """Rank fits by their expected log predictive density, estimated by PSIS-LOO (ArviZ `compare`).

    Returns one row per fit (index: its name), best first: rank (1 = best), elpd_loo and its standard
    error se, elpd_diff (how much lower than the best) and its standard error dse, p_loo (effective number
    of parameters), weight (stacking weight), and the Pareto-k counts k_bad (k > 0.7: that observation's
    LOO estimate is unreliable) and k_warn (0.5 < k <= 0.7). Raises UserError when a fit has no log_lik or
    the fits were not fitted to the same observations."""
    if not fits:
        raise UserError(Problem("", "nothing to compare: give at least one fit"))
    problems = [Problem(name, f"the run has no pointwise log-likelihood (log_lik); {REFIT_HINT}")
                for name, fit in fits.items() if "log_likelihood" not in fit.idata.groups()]
    if problems:
        raise UserError(problems)
    problems = _same_observations(fits)
    if problems:
        raise UserError(problems)
    loos = {name: loo(fit, name) for name, fit in fits.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare(loos, ic="loo")
    table["rank"] = table["rank"].astype(int) + 1
    k = {name: np.asarray(result.pareto_k) for name, result in loos.items()}
    table["k_bad"] = [int((k[name] > K_BAD).sum()) for name in table.index]
    table["k_warn"] = [int(((k[name] > K_WARN) & (k[name] <= K_BAD)).sum()) for name in table.index]
    table.index.name = "run"
    return table[COLUMNS]


def pareto_k_advice(table: pd.DataFrame) -> list[str]:
    """One line per fit with Pareto-k problems (from compare()'s k_bad and k_warn), with what to do."""
    lines = []
    for name, bad, warn in zip(table.index, table["k_bad"].astype(int), table["k_warn"].astype(int)):
        if bad:
            lines.append(f"{name}: {bad} observation(s) with Pareto k > {K_BAD}: PSIS-LOO is unreliable "
                         "for them (they are very influential); their elpd_loo is likely too optimistic. Check "
                         "them for misfit (outliers, a wrong family), or estimate by K-fold cross-validation "
                         "(or refitting without each) before trusting this ranking")
        if warn:
            lines.append(f"{name}: {warn} observation(s) with {K_WARN} < Pareto k <= {K_BAD}: usable, "
                         "but the estimate is less precise; more posterior draws make it more reliable")
    return lines
