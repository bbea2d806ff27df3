"""Default priors, scaled to the data, and the numbers of every prior as Stan data.

Defaults (weakly informative, in the spirit of rstanarm's autoscaling). With s_y the
outcome's sd for gaussian models and 1 otherwise (logit and log scales), s_x the sd of a
design column, and s_w the sd of a group-level predictor over groups:

| parameter                         | default prior                                   |
|-----------------------------------|-------------------------------------------------|
| intercept (at predictor means)    | normal(m, 2.5·s_y); m = mean(y) gaussian, log(mean(y)) poisson, 0 logit |
| coefficient of column x           | normal(0, c / s_x); c = 2.5·s_y on the outcome's scale (identity link), 1.25 on a logit or log scale |
| effect of group predictor w on the intercept | normal(0, c / s_w)                   |
| effect of w on the slope of x     | normal(0, c / (s_x·s_w))                        |
| sigma (gaussian, student; lognormal: s_y of log y) | exponential(1 / s_y)             |
| phi, shape, nu (other families)   | the family's (stangen/core/families.py): gamma(0.01, 0.01); nu gamma(2, 0.1) |
| cutpoints (cumulative), each      | student_t(3, 0, 2.5), as brms (at the predictors' means)         |
| sd of a varying intercept         | exponential(1 / s_y)                            |
| sd of a varying slope of x        | exponential(s_x / s_y)                          |
| correlation of varying effects    | lkj(2)                                          |
| a sub-model's (`parameters:`) intercept | normal(log s_y for sigma, else 0; 2.5), on its link scale |
| its coefficients, sds             | as above with s_y = 1 (on the link scale)       |

On a logit or log scale (and a sub-model's link scale) a coefficient multiplies odds or means by e^b, so c is
Gelman, Jakulin, Pittau & Su's (2008) 2.5 per two sds of x: 2.5 for a balanced 0/1 column (rstanarm's 2.5 / s_x
gives it 5). With rstanarm's scale the default priors of glmmTMB's Owls model predicted 14% of the counts
beyond 100 times the largest one observed (benchmarks/prior_predictive.py, benchmarks/RESULTS.md).

A prior written in the spec is used exactly as written (no rescaling).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..spec.priors import FAMILIES as PRIOR_FAMILIES
from .model import ModelDescription, PriorTarget, prior_targets

if TYPE_CHECKING:
    from .encoding import Encoded

DEFAULT_LKJ_ETA = 2.0
COEF_SCALE = 2.5  # a coefficient's sd per sd of x, in outcome sds (identity link) and for the intercept
LINK_COEF_SCALE = 1.25  # a coefficient's sd per sd of x on a logit or log scale (Gelman et al. 2008)


def _safe(sd: np.ndarray) -> np.ndarray:
    """A zero sd (constant column; reported as a data problem elsewhere) must not become inf here."""
    sd = np.atleast_1d(np.asarray(sd, dtype=float))
    return np.where(sd > 0, sd, 1.0)


def _slope_scale(encoded: "Encoded", term) -> float:
    return 1.0 if term is None else float(_safe(np.std(encoded.slopes[term.columns_key]))[0])


def _default_args(target: PriorTarget, desc: ModelDescription, encoded: "Encoded",
                  term_scales: dict[str, np.ndarray]) -> dict[str, np.ndarray | float]:
    y = np.asarray(encoded.outcome["y"], dtype=float)
    s_y, y_loc = desc.family.outcome_scale(y)
    if target.submodel is not None:  # on the sub-model's link scale: coefficients of scale 1
        s_y, y_loc = 1.0, desc.family.sub_model_location(target.submodel.aux, y)
    role = target.role
    # a coefficient's scale per sd of its column: on the outcome's scale in outcome sds, on a link scale fixed
    coef_scale = COEF_SCALE * s_y if target.submodel is None and desc.family.link == "identity" else LINK_COEF_SCALE
    if role == "intercept":
        if target.submodel is None and "offsets" in encoded.outcome:  # the offset carries part of the location
            y_loc -= float(np.mean(encoded.outcome["offsets"]))
        return {"location": y_loc, "scale": COEF_SCALE * s_y}
    if role == "term":
        s_x = _safe(term_scales[target.term.columns_key])
        return {"location": np.zeros_like(s_x), "scale": coef_scale / s_x}
    if role == "effect":
        s_k = _slope_scale(encoded, target.coefficient.term)
        values, _ = encoded.levels[target.level.name]["predictors"][target.effect.predictor.name]
        s_w = _safe(np.std(np.asarray(values, dtype=float), axis=0))
        return {"location": np.zeros_like(s_w), "scale": coef_scale / (s_k * s_w)}
    if role == "aux":  # the family's default (stangen/core/families.py): fixed numbers, or exponential(1 / s_y)
        if target.aux.default_prior:
            family, args = target.aux.default_prior
            return dict(zip(PRIOR_FAMILIES[family][0], args))
        return {"rate": 1.0 / s_y}
    if role == "sd":
        s_x = np.array([_slope_scale(encoded, c.term) for c in target.level.coefficients])
        return {"rate": s_x / s_y}
    if role == "correlation":
        return {"eta": DEFAULT_LKJ_ETA}
    raise ValueError(f"no default prior for role {role}")


def prior_values(desc: ModelDescription, encoded: "Encoded") -> tuple[dict[str, object], dict[str, dict]]:
    """The numbers of every prior: (Stan data entries prior_<key>_<arg>, what was used per prior key: param,
    family, source, args), from the spec or defaults scaled to the encoded data."""
    term_scales = encoded.term_scales(desc)
    numbers: dict[str, object] = {}
    used: dict[str, dict] = {}
    for target in prior_targets(desc):
        choice = target.choice
        if choice.given is None:
            args = _default_args(target, desc, encoded, term_scales)
        else:
            args = dict(choice.given.named_args)
        shape = _length(target, desc, encoded)
        values = {}
        for name in choice.arg_names:
            value = args[name]
            if target.vector and target.role != "correlation":
                value = np.broadcast_to(np.asarray(value, dtype=float), (shape,)).copy()
            else:
                value = float(np.asarray(value, dtype=float).reshape(-1)[0])
            values[name] = value
            numbers[target.data_name(name)] = value
        used[target.key] = {"param": target.param, "family": choice.family, "source": choice.source, "args": values}
    return numbers, used


def _length(target: PriorTarget, desc: ModelDescription, encoded: "Encoded") -> int:
    if target.role == "term":
        return len(encoded.columns[target.term.columns_key])
    if target.role == "effect":
        return len(encoded.levels[target.level.name]["predictors"][target.effect.predictor.name][1])
    if target.role == "sd":
        return target.level.n_coef
    if target.role == "aux":
        return desc.family.aux_length(target.aux, encoded.outcome)
    return 1
