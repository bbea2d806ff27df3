"""Where the sampler starts: the population-level parameters near the quick working fit, each chain apart.

Stan starts every parameter uniformly in (-2, 2) on the unconstrained scale. For a group-level sd that is
anything from 0.14 to 7.4, whatever the outcome's scale: with a log link, a slope's sd of 7 on a predictor
ranging over 20 units puts exp(±100) into the likelihood, and a chain that starts there can spend its whole
warmup crawling out with a step size of 1e-60, then sample with a metric fitted to the crawl (claims, partial:
one chain in 3 of 6 seeds took 1023 leapfrog steps per draw; benchmarks/RESULTS.md, "Where the chains start").

So stangen starts the population-level parameters where the working fit (stangen.compiler.parameterization,
the moment/EM fit `auto` decides the parameterization from) puts them, each chain at its own point about a
posterior width around it, so that R-hat still compares chains that started apart:
- the intercept, the pooled coefficients and the group-level predictors' effects: the working estimate plus
  uniform(-2, 2) working standard errors (a coefficient that varies by group including how uncertain the
  mean of the groups' coefficients is, τ²/J, as in lme4's standard errors);
- each group-level sd: the working sd, at least a tenth of the residual sd per unit of its coefficient's
  predictor (a level whose working variance is 0 does not start in the neck of its funnel), times
  exp(uniform(-0.5, 0.5)).
Everything else (group effects, correlations, the family's parameters, residual structures) starts as Stan
starts it, uniform in (-2, 2). The values are on the parameters' own (constrained) scale, by the program's
names, for any backend to pass as Stan's init.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import ModelDescription, prior_targets
from .parameterization import WorkingFit, level_design

SE_SPREAD = 2.0  # a location starts within ± this many working standard errors of its estimate
LOG_SD_SPREAD = 0.5  # an sd starts within exp(± this) of its working value
SD_FLOOR = 0.1  # an sd starts at least at this share of the residual sd (per unit of its predictor)


@dataclass(frozen=True)
class StartValue:
    """One parameter's start: its value (a scalar, or a vector's elements) and how far chains spread around it
    (`spread`: standard errors of a location, added; log-scale for a positive parameter, multiplied)."""

    name: str
    value: tuple[float, ...]
    spread: tuple[float, ...]
    vector: bool
    positive: bool = False


@dataclass(frozen=True)
class StartingPoint:
    values: tuple[StartValue, ...]

    def chain(self, seed: int, chain_id: int) -> dict[str, float | list[float]]:
        """The initial values of chain `chain_id` (Stan's chain id) for a run with `seed`: the same for the
        same pair on any backend and any machine, so a chain sampled on its own draws what it draws in a run."""
        rng = np.random.default_rng([seed, chain_id, 0x57A27])
        out: dict[str, float | list[float]] = {}
        for v in self.values:
            value, spread = np.asarray(v.value), np.asarray(v.spread)
            u = rng.uniform(-1.0, 1.0, size=value.shape)
            drawn = value * np.exp(u * spread) if v.positive else value + u * spread
            out[v.name] = [float(x) for x in drawn] if v.vector else float(drawn[0])
        return out


def starting_point(desc: ModelDescription, view: ModelDescription, working: WorkingFit,
                   design: dict) -> StartingPoint:
    """The start of `desc`'s population-level parameters from the working fit made on `view` (the all-
    noncentered description, whose pooled part holds every coefficient) with its Stan data `design`."""
    located = _working_locations(view, working, design)
    floors = _sd_floors(view, working, design)
    out: list[StartValue] = []
    for target in prior_targets(desc):
        if target.role == "intercept":
            key = "intercept"
        elif target.role == "term":
            key = ("term", target.term.name)
        elif target.role == "effect":
            key = ("effect", target.level.name, target.coefficient.name, target.effect.name)
        elif target.role == "sd":
            level = next((lv for lv in view.levels if lv.name == target.level.name), None)
            tau = working.tau.get(target.level.name)
            if level is None or tau is None or level.n_coef != target.level.n_coef:
                continue
            sd = np.maximum(np.sqrt(np.clip(np.diagonal(tau), 0.0, None)), floors[level.name])
            out.append(StartValue(target.param, tuple(sd), (LOG_SD_SPREAD,) * len(sd), target.vector, True))
            continue
        else:  # correlations, the family's parameters: Stan's own start
            continue
        if key not in located:
            continue
        estimate, se = located[key]
        if len(estimate) != 1 and not target.vector:
            continue
        out.append(StartValue(target.param, tuple(estimate), tuple(SE_SPREAD * s for s in se), target.vector))
    return StartingPoint(tuple(out))


def _working_locations(view: ModelDescription, working: WorkingFit, design: dict) -> dict:
    """The working fit's pooled estimates and standard errors by what they belong to ("intercept",
    ("term", name), ("effect", level, coefficient, effect)), in the order _working_pass stacks them."""
    estimates = list(working.pooled)
    se = list(np.sqrt(np.clip(working.pooled_variance, 0.0, None)))
    out: dict = {}

    def take(key, count: int, term: str | None = None, varies: bool = False) -> None:
        """The next `count` coefficients; `varies`: the coefficient of `term` (None: the intercept) varies by
        group, so how uncertain the mean of the groups' coefficients is (τ²/J of each level) adds to its SE."""
        extra = sum(float(working.tau[lv.name][k, k]) / int(design[lv.groups_key]) for lv in view.levels
                    for k, c in enumerate(lv.coefficients)
                    if (c.term.name if c.term is not None else None) == term) if varies else 0.0
        out[key] = (tuple(estimates[:count]), tuple(float(np.sqrt(s ** 2 + extra)) for s in se[:count]))
        del estimates[:count], se[:count]

    if view.spans_intercept:  # the ones column: the intercept, or what takes its place (ordinal cutpoints)
        take("intercept", 1, varies=True)
        if not view.intercept:
            del out["intercept"]
    if "X" in design and np.size(design["X"]):
        for term in view.pooled_terms:
            take(("term", term.name), int(design[term.size]) if term.categorical else 1, term.name, varies=True)
    for lv in view.levels:
        for c in lv.coefficients:
            for e in c.effects:
                columns = int(np.size(design[e.predictor.data]) // int(design[lv.groups_key]))
                take(("effect", lv.name, c.name, e.name), columns)
    return out


def _sd_floors(view: ModelDescription, working: WorkingFit, design: dict) -> dict[str, np.ndarray]:
    """Each level's least starting sds: SD_FLOOR residual sds per root mean square of each coefficient's
    predictor (1 for an intercept)."""
    n = int(design["N"])
    return {lv.name: SD_FLOOR * np.sqrt(working.sigma2 / np.maximum(np.mean(level_design(lv, design, n) ** 2,
                                                                            axis=0), 1e-12))
            for lv in view.levels}
