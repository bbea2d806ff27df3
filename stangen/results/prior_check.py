"""What the priors say before the data: a prior-only fit's predicted outcomes against the data (the prior
predictive check: brms's pp_check of a fit with sample_prior = "only"), and each population-level parameter's
prior beside its posterior (the report's "prior vs posterior" plot).

    check = prior_predictive(fit)       # a fit with prior_only=True (`stangen fit SPEC --prior-only`)
    check.table                         # statistics of the data, and of the data sets the priors predict
    check.note                          # "" or how much the priors predict beyond anything plausible
    prior_and_posterior(fit)            # [(name, Stan parameter, prior draws, posterior draws)]

Numpy over the stored draws: predictions through the shared linear predictor (stangen.results.draws), prior
draws from the prior families (stangen.spec.priors); nothing compiles.

"Absurd" is measured as Gabry et al. (2019, Visualization in Bayesian workflow) read it: orders of magnitude
beyond the data. For an outcome with no upper bound (counts, amounts, measurements: Family.unbounded), the
share of predictions whose size exceeds ABSURD_FACTOR times the data's largest (or its sd, if larger); more
than ABSURD_SHARE of them gets the note. 0/1, shares and ordered categories cannot leave their range. And for
every outcome, a data statistic that fewer than CONFLICT_TAIL of the predicted data sets reach (Box 1980) is a
prior-data conflict: the priors hardly allow data like these (the vague gamma(0.01, 0.01) on a negative
binomial's phi predicts nearly all zeros).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..compiler.model import prior_targets
from ..compiler.new_rows import training_rows
from ..spec.priors import draw_prior
from .draws import aux_draws, flat_draws, linear_predictor, thinned
from .naming import prior_names
from .predict import response_draws

if TYPE_CHECKING:
    from ..fitting import Fit

ABSURD_FACTOR = 100  # predictions beyond 100 × the data's largest |value| are absurd (issue 29's example)
ABSURD_SHARE = 0.10  # the note when more than this share of the predictions is (benchmarks/RESULTS.md)
CONFLICT_TAIL = 0.005  # a data statistic fewer predicted data sets than this reach (either way) conflicts
PREDICTION_BUDGET = 4_000_000  # draws × rows predicted: on larger data, evenly thinned draws
PRIOR_DRAWS = 4000  # prior draws per parameter for the prior vs posterior plot


@dataclass(frozen=True)
class PriorPredictive:
    """The prior predictive check of a prior-only fit."""

    outcome: str
    # statistic → the data's, the 5%, 50%, 95% quantiles of the predicted data sets', and `tail`: the share of
    # them at or beyond the data's value on its rarer side (Box's prior predictive p-value)
    table: pd.DataFrame
    draws: int  # predicted data sets
    limit: float | None  # the absurd limit (None: the outcome is bounded)
    beyond: float | None  # share of the predictions beyond it
    note: str  # "" when nothing is absurd
    caveat: str = ""  # how the data's statistics are not quite the predictions' (censored rows)

    def text(self) -> str:
        """As the printout shows it."""
        lines = [f"Prior predictive check ({self.draws} data sets of {self.outcome} from the priors; the data "
                 "were not used):", self.table.to_string(float_format=_number)]
        if self.limit is not None:
            lines.append(f"Share beyond {ABSURD_FACTOR} x the data's largest |{self.outcome}| ({_number(self.limit)}): "
                         f"{self.beyond:.1%}")
        if self.caveat:
            lines.append(f"({self.caveat})")
        if self.note:
            lines.append(f"Note: {self.note}")
        return "\n".join(lines)


def _number(value: float) -> str:
    return f"{value:.4g}"


def prior_predictive(fit: "Fit", seed: int = 1) -> PriorPredictive:
    """Data sets drawn from the prior-only fit's draws for the training rows (their predictors, groups, trials
    and offsets), summarized per data set, against the data; with the note on absurd predictions."""
    d, prepared = fit.description, fit.program.data
    rng = np.random.default_rng(seed)
    thin = thinned(fit, PREDICTION_BUDGET)
    rows = training_rows(d, prepared)
    eta = linear_predictor(thin, rows, "population", rng)
    predicted = response_draws(thin, eta, aux_draws(thin, rows, "population", rng), rows, rng)
    y = np.asarray(prepared.stan_data["y"], dtype=float)  # (ordinal: category numbers 1..K)
    statistics = {"min": np.min, "mean": np.mean, "median": np.median, "max": np.max,
                  "sd": lambda v, axis=None: np.std(v, axis=axis, ddof=1)}
    if (d.family.discrete and not d.family.ordinal) or (y == 0).any():
        statistics["share of zeros"] = lambda v, axis=None: np.mean(v == 0, axis=axis)
    rows_out = {}
    for name, statistic in statistics.items():
        per_draw = statistic(predicted, axis=1)
        observed = float(statistic(y))
        q = np.nanquantile(per_draw, [0.05, 0.5, 0.95])
        # Box's (1980) prior predictive p-value on the rarer side: how seldom the priors' data sets reach the data's
        # value (over the data sets whose statistic is a number: an overflow is not a miss)
        finite = per_draw[np.isfinite(per_draw)]
        tail = min(np.mean(finite >= observed), np.mean(finite <= observed)) if len(finite) else np.nan
        rows_out[name] = {"data": observed, "predicted 5%": q[0], "predicted 50%": q[1], "predicted 95%": q[2],
                          "tail": tail}
    table = pd.DataFrame.from_dict(rows_out, orient="index")
    table.index.name = "statistic"
    notes = []
    limit = beyond = None
    if d.family.unbounded:
        limit = ABSURD_FACTOR * max(float(np.abs(y).max()), float(y.std()), np.finfo(float).tiny)
        beyond = float(np.mean(np.abs(predicted) > limit))
        if beyond > ABSURD_SHARE:
            notes.append(f"the priors put {beyond:.0%} of the predicted {d.outcome} beyond {ABSURD_FACTOR} times the "
                         f"data's largest ({_number(limit)}): absurd values before any data"
                         + (f" (on the {d.family.link} scale a coefficient of 5 multiplies the mean by e^5 = 148)"
                            if d.family.link == "log" else ""))
    conflicts = table.index[table["tail"] < CONFLICT_TAIL]
    if len(conflicts):
        notes.append("the priors hardly allow the data's " + ", ".join(
            f"{name} ({_number(table.loc[name, 'data'])}; predicted 5–95%: {_number(table.loc[name, 'predicted 5%'])}"
            f" to {_number(table.loc[name, 'predicted 95%'])})" for name in conflicts))
    note = "; ".join(notes)
    if note:
        note += (". Narrow or move the priors of the coefficients, the intercept, the group sds or the family's "
                 "parameters (`priors:` in the spec; the Priors table lists those used) and check again with "
                 "--prior-only")
    caveat = ("the data's censored rows count at their bounds, the predictions are uncensored"
              if d.censoring is not None else "")
    return PriorPredictive(d.outcome, table, int(predicted.shape[0]), limit, beyond, note, caveat)


_BOUND = re.compile(r"(lower|upper)\s*=\s*([-0-9.eE]+)")


def prior_and_posterior(fit: "Fit", size: int = PRIOR_DRAWS, seed: int = 1) -> list[tuple[str, str, np.ndarray,
                                                                                           np.ndarray]]:
    """Each population-level number a prior is on — intercept (where the sampler has it: at the predictors'
    means), coefficients, group-level effects, family parameters, group sds — as (name, Stan parameter, prior
    draws, posterior draws). Priors are drawn in numpy from the numbers the program used, inside the
    parameter's bounds (a normal on an sd is a half-normal); correlations (lkj) and an ordinal model's ordered
    cutpoints, whose priors are not their marginals, are left out."""
    d, data = fit.description, fit.program.data
    rng = np.random.default_rng(seed)
    out = []
    for target in prior_targets(d):
        used = data.priors.get(target.key)
        if used is None or target.role == "correlation" or (target.aux is not None and target.aux.size) or \
                target.param not in fit.posterior:
            continue
        posterior = flat_draws(fit.posterior[target.param].values)
        posterior = posterior.reshape(len(posterior), -1)
        lower, upper = (0.0, None) if target.role == "sd" else _bounds(target.aux.declaration) \
            if target.aux is not None else (None, None)
        names = prior_names(target, d, data)
        args = {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in used["args"].items()}
        for i in range(posterior.shape[1]):
            element = {k: float(v[i] if len(v) > i else v[0]) for k, v in args.items()}
            prior = draw_prior(used["family"], element, size, rng, lower, upper)
            if prior is None:
                continue
            name = names[i] if len(names) == posterior.shape[1] else f"{target.param}[{i + 1}]"
            stan = target.param if posterior.shape[1] == 1 else f"{target.param}[{i + 1}]"
            out.append((name, stan, prior, posterior[:, i]))
    return out


def _bounds(declaration: str) -> tuple[float | None, float | None]:
    """(lower, upper) of a Stan declaration such as 'real<lower=0>' or 'real<lower=0, upper=1>'."""
    found = dict((kind, float(value)) for kind, value in _BOUND.findall(declaration))
    return found.get("lower"), found.get("upper")
