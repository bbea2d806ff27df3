"""Fake data from a spec's own generative model, with given true values (or values drawn from the prior).

True values (`--params PARAMS.yaml`), in the spec's terms:

    Intercept: 0.5
    coefficients: {hours: 0.75, sex1: -0.2}     # pooled coefficients, by design column name
    effects:                                   # group-level predictors' effects, per level and coefficient
      state: {intercept: {avg_income: 0.3}, income: {avg_income: -0.1}}
    sd: {student: 0.7, state: {intercept: 0.5, income: 0.2}}   # one number for an intercept-only level
    cor: {state: 0.3}                          # 2 coefficients: one number; more: a full matrix
    sigma: 0.2                                 # with `residuals: sd_by`: {a: 0.2, b: 0.4}, one per value
    phi: 0.6                                   # with `residuals: correlation`
    parameters:                                # a sub-model's (`parameters:`), on its link scale
      sigma: {Intercept: -1.5, coefficients: {x: 0.3}, sd: {school: 0.4}}

Predictors and groups come from the data the spec names (or `data=`); otherwise they are simulated:
each top-level level has `groups[level]` groups (default 20); a nested level has that many groups per
parent group; crossed top-level levels are fully crossed; each cell of the lowest grouping gets
`per_group` rows (default 10). Numeric level-1 predictors ~ normal(0, 1); categorical ones take levels
a', 'b' with equal probability; group-level predictors ~ normal(0, 1) per group; binomial trials = 10;
an `offset:` column is the log of an exposure of 1 to 5 units (equally likely); `weights:` are 1; the
outcome is drawn uncensored (the `censoring:` column is 'none', with data too: censor the values yourself).
With `residuals:`, a series' time is 0, 1, 2, … over its rows, and `sd_by` takes 'a', 'b' with equal
probability; the errors are drawn series by series in time order (stangen/core/residuals.py).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..compiler.encoding import categorical_columns
from ..compiler.model import describe
from ..compiler.new_rows import Coefficients, inverse_link, linear_predictor, training_rows
from ..compiler.program import load_data, load_spec
from ..compiler.standata import prepare
from ..core.errors import Problem, SpecError
from ..core.families import get_family
from ..core.residuals import Residuals
from ..core.truncation import Truncation
from ..spec import Spec
from ..spec.validate import INTERCEPT
from ..spec.yaml_io import read_yaml

DEFAULT_GROUPS = 20
DEFAULT_PER_GROUP = 10
DEFAULT_TRIALS = 10


@dataclass
class Simulation:
    data: pd.DataFrame
    truth: dict[str, Any]  # the true values used, in the PARAMS format, with every value filled in


def read_params(path: str | Path) -> dict:
    raw = read_yaml(path, "file of true values")[0] or {}
    if not isinstance(raw, dict):
        raise SpecError(Problem("params", f"{path}: true values are a mapping (Intercept, coefficients, sd, ...)"))
    return raw


def _design_frame(spec: Spec, groups: dict[str, int], per_group: int, rng: np.random.Generator) -> pd.DataFrame:
    """Groups, level-1 and group-level predictors, when the spec has no data."""
    levels = spec.levels
    top = [n for n, lv in levels.items() if lv.within is None]
    children = {n: [c for c, lv in levels.items() if lv.within == n] for n in levels}

    def chains(name):  # nested paths below a top-level level: lists of (level, index)
        kids = children[name]
        if not kids:
            return [[(name, j)] for j in range(groups.get(name, DEFAULT_GROUPS))]
        out = []
        for j in range(groups.get(name, DEFAULT_GROUPS)):
            for kid in kids:  # several children of one parent are crossed within it: take the first
                out += [[(name, j), *path] for path in chains(kid)]
                break
        return out

    cells = [sum(combo, []) for combo in itertools.product(*(chains(t) for t in top))] if top else [[]]
    rows = []
    for cell in cells:
        for _ in range(per_group):
            rows.append({levels[name].id or name: f"{name[:1].upper()}{j + 1}" for name, j in cell})
    df = pd.DataFrame(rows) if rows and rows[0] else pd.DataFrame(index=range(per_group * DEFAULT_GROUPS))
    n = len(df)
    variables = {v for t in [*spec.predictors, *(t for sub in spec.parameters.values() for t in sub.predictors)]
                 for v in t.split(":")}
    for var in sorted(variables):
        df[var] = rng.choice(["a", "b"], n) if var in spec.categorical else rng.normal(0, 1, n)
    for name, lv in levels.items():
        column = lv.id or name
        for coef in lv.coefficients:
            for pred in lv.predictors_of(coef):
                if pred in df:
                    continue
                keys = df[column].unique()
                values = dict(zip(keys, rng.choice(["a", "b"], len(keys)) if pred in spec.categorical
                                  else rng.normal(0, 1, len(keys))))
                df[pred] = df[column].map(values)
    if get_family(spec.family).takes_trials:
        df[spec.trials] = DEFAULT_TRIALS
    if spec.offset:  # the log of an exposure of 1 to 5 units
        df[spec.offset] = np.log(rng.integers(1, 6, n).astype(float))
    if spec.weights:  # (likelihood weights do not change how the outcome is drawn)
        df[spec.weights] = 1.0
    Residuals.from_spec(spec.residuals).simulated_columns(df, lambda level: levels[level].id or level, rng)
    df[spec.outcome] = np.zeros(n, dtype=int if get_family(spec.family).discrete else float)
    return df


def simulate(spec: Spec | str | Path, params: dict | str | Path | None = None, *, data=None,
             groups: dict[str, int] | None = None, per_group: int = DEFAULT_PER_GROUP, seed: int = 1,
             from_prior: bool = False) -> Simulation:
    """Draw one fake data set from the spec's model. `params`: true values (see module doc) unless from_prior.
    `data`: a DataFrame or CSV whose groups and predictors are used; None: the spec's data, if it names one;
    False: simulate the design even when the spec names data."""
    spec = load_spec(spec)
    rng = np.random.default_rng(seed)
    frame, desc, prepared = simulation_design(spec, data, groups, per_group, rng)
    params = read_params(params) if isinstance(params, (str, Path)) else dict(params or {})
    truth = prior_draw(desc, prepared, rng) if from_prior else _complete(desc, prepared, params)
    frame[spec.outcome] = draw_outcome(desc, prepared, truth, rng)
    return Simulation(frame, truth)


def simulation_design(spec: Spec, data, groups: dict[str, int] | None, per_group: int, rng,
                      missing: str = "error"):
    """(design frame, description, prepared data) that simulations draw from: the data's groups and
    predictors (`data`: a frame or CSV; None: the spec's data; False: a simulated design with `groups` and
    `per_group`), without the rows `missing: drop` leaves out."""
    frame = None if data is False else load_data(spec, data)
    has_outcome = frame is not None and spec.outcome in frame
    frame = _design_frame(spec, groups or {}, per_group, rng) if frame is None else frame.copy()
    if spec.censoring:  # the outcome is drawn uncensored: every row observed
        frame[spec.censoring["column"]] = "none"
    # simulation reads X and its means whole: the noncentered description keeps every term in X (how the
    # levels are sampled does not change the model)
    desc = describe(spec.with_parameterization("noncentered"), categorical_columns(spec, frame))
    # default priors are scaled to the outcome: the real one when the data have it, else a unit-scale stand-in
    prepared = prepare(desc, frame if has_outcome else _placeholder_outcome(spec, frame, rng), missing=missing)
    if prepared.dropped is not None:  # missing: drop — the design is the rows the model uses
        frame = frame.drop(index=frame.index[[r - 1 for r in prepared.dropped.rows]]).reset_index(drop=True)
    return frame, desc, prepared


def _placeholder_outcome(spec: Spec, frame: pd.DataFrame, rng) -> pd.DataFrame:
    """Data prep needs a valid outcome column; for the design its values do not matter, and for default
    priors a gaussian stand-in has mean 0 and sd 1 (counts: 0/1)."""
    frame = frame.copy()
    n = len(frame)
    family = get_family(spec.family)
    frame[spec.outcome] = family.placeholder(n, rng, order=spec.order)
    if family.takes_trials:
        frame[spec.outcome] = np.minimum(frame[spec.outcome], frame[spec.trials])
    if spec.truncation:  # inside the range, as a truncated outcome is
        inside = Truncation.from_spec(spec.truncation).into_range(frame[spec.outcome], frame)
        frame[spec.outcome] = np.ceil(inside).astype(int) if family.discrete else inside
    return frame


def _complete(desc, prepared, params: dict) -> dict:
    """Fill in every true value; a missing one is an error naming it (no silent zeros)."""
    problems, truth = [], {}
    known = {"Intercept", "coefficients", "effects", "sd", "cor", "phi"} | {a.name for a in desc.scalar_aux}
    if desc.submodels:
        known.add("parameters")
    for key in params:
        if key not in known:
            problems.append(Problem(f"params.{key}", f"unknown key (allowed: {', '.join(sorted(known))})"))
    if desc.intercept:
        if "Intercept" not in params:
            problems.append(Problem("params.Intercept", "missing: the population intercept"))
        truth["Intercept"] = float(params.get("Intercept", 0))
    given = params.get("coefficients") or {}
    truth["coefficients"] = {}
    for term in desc.terms:
        for col in prepared.columns[term.name]:
            if col not in given:
                problems.append(Problem(f"params.coefficients.{col}", "missing: the coefficient of this column"))
            truth["coefficients"][col] = float(given.get(col, 0))
    truth["effects"], truth["sd"], truth["cor"] = {}, {}, {}
    for lv in desc.levels:
        eff = (params.get("effects") or {}).get(lv.name, {})
        for c in lv.coefficients:
            for e in c.effects:
                for col in prepared.group_columns[(lv.name, e.predictor.name)]:
                    value = (eff.get(c.name) or {}).get(col)
                    if value is None:
                        problems.append(Problem(f"params.effects.{lv.name}.{c.name}.{col}", "missing"))
                    truth["effects"].setdefault(lv.name, {}).setdefault(c.name, {})[col] = float(value or 0)
        _level_truth(lv, params, truth, "params", problems)
    res = desc.residuals

    def problem(path: str, message: str) -> None:
        problems.append(Problem(path, message))
    truth.update(res.true_values(params, prepared.sigma_labels, [a.name for a in desc.scalar_aux], problem))
    truth["parameters"] = {sub.stan: _submodel_truth(sub, prepared, (params.get("parameters") or {}).get(sub.stan),
                                                     problems) for sub in desc.submodels}
    for aux in desc.scalar_aux:  # the family's other parameters, one number each (or a list: cutpoints)
        if aux.name in truth:
            continue
        if aux.name not in params:
            problems.append(Problem(f"params.{aux.name}", f"missing: the {aux.meaning}"))
        if aux.size:
            k = desc.family.aux_length(aux, prepared.stan_data)
            given = params.get(aux.name, list(range(k)))
            ok = isinstance(given, list) and len(given) == k and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in given)
            if not ok or any(b <= a for a, b in zip(given, given[1:])):
                problems.append(Problem(f"params.{aux.name}", f"a list of {k} increasing numbers (one between each "
                                                              f"two adjacent categories), got {given!r}"))
                given = list(range(k))
            truth[aux.name] = [float(v) for v in given]
        else:
            truth[aux.name] = float(params.get(aux.name, 1))
    truth.update(res.true_phi(params, problem))
    if problems:
        raise SpecError(problems, source="true values")
    return truth


def _level_truth(lv, given: dict, truth: dict, where: str, problems: list) -> None:
    """A level's true sds (one number for an intercept-only level) and correlation (one number for two
    coefficients) from `given`'s sd and cor, into truth["sd"] and truth["cor"]; missing or malformed ones are
    problems at `where`.sd.<level>… and `where`.cor.<level>."""
    sd = (given.get("sd") or {}).get(lv.name)
    if lv.kind == "intercept" and isinstance(sd, (int, float)):
        sd = {INTERCEPT: sd}
    sd = sd or {}
    for c in lv.coefficients:
        if c.name not in sd:
            problems.append(Problem(f"{where}.sd.{lv.name}.{c.name}", "missing: the sd of this varying coefficient"))
    truth["sd"][lv.name] = {c.name: float(sd.get(c.name, 1)) for c in lv.coefficients}
    cor = (given.get("cor") or {}).get(lv.name)
    k = lv.n_coef
    if lv.kind == "correlated":
        if cor is None:
            problems.append(Problem(f"{where}.cor.{lv.name}", "missing: the correlation of the varying effects"))
            cor = np.eye(k)
        elif isinstance(cor, (int, float)):
            cor = [[1.0, cor], [cor, 1.0]] if k == 2 else None
        matrix = np.asarray(cor, dtype=float) if cor is not None else None
        if matrix is None or matrix.shape != (k, k) or np.any(np.linalg.eigvalsh(matrix) <= 0):
            problems.append(Problem(f"{where}.cor.{lv.name}", f"must be a {k}x{k} positive definite correlation "
                                                              "matrix (or one number for two coefficients)"))
            matrix = np.eye(k)
        truth["cor"][lv.name] = matrix.tolist()


def _submodel_truth(sub, prepared, given, problems: list) -> dict:
    """A sub-model's true values: Intercept, coefficients by design column, sd (and cor) per level."""
    where = f"params.parameters.{sub.stan}"
    if not isinstance(given, dict):
        problems.append(Problem(where, f"missing: the true values of {sub.stan}'s sub-model (Intercept, "
                                       "coefficients, sd), on its link scale"))
        given = {}
    out: dict = {"Intercept": float(given.get("Intercept", 0)), "coefficients": {}, "sd": {}, "cor": {}}
    if "Intercept" not in given:
        problems.append(Problem(f"{where}.Intercept", f"missing: the intercept of {sub.stan}'s sub-model"))
    for term in sub.terms:
        for col in prepared.columns[term.columns_key]:
            value = (given.get("coefficients") or {}).get(col)
            if value is None:
                problems.append(Problem(f"{where}.coefficients.{col}", "missing: the coefficient of this column"))
            out["coefficients"][col] = float(value or 0)
    for lv in sub.levels:
        _level_truth(lv, given, out, where, problems)
    return out


def _submodel_prior_draw(sub, prepared, draw, rng) -> dict:
    """A sub-model's true values drawn from its priors (its intercept's holds at its predictors' means)."""
    out: dict = {"coefficients": {}, "sd": {}, "cor": {}}
    intercept = float(draw(sub.intercept_name))
    for term in sub.terms:
        cols = prepared.columns[term.columns_key]
        values = np.atleast_1d(draw(f"beta_{term.stan}", len(cols) if term.categorical else None))
        out["coefficients"].update(dict(zip(cols, map(float, values))))
    if sub.terms:
        beta = np.array([out["coefficients"][c] for t in sub.terms for c in prepared.columns[t.columns_key]])
        intercept -= float(np.dot(prepared.stan_data[sub.means_key], beta))
    out["Intercept"] = intercept
    for lv in sub.levels:
        sds = np.atleast_1d(draw(f"sd_{lv.stan}", lv.n_coef if lv.n_coef > 1 else None))
        out["sd"][lv.name] = {c.name: float(v) for c, v in zip(lv.coefficients, sds)}
        if lv.kind == "correlated":
            out["cor"][lv.name] = _lkj(lv.n_coef, float(prepared.priors[f"L_{lv.stan}"]["args"]["eta"]), rng).tolist()
    return out


# prior family (stangen/spec/priors.py) → a draw from it (their numbers are arrays, `size` as numpy's)
PRIOR_DRAWS = {
    "normal": lambda rng, a, size: rng.normal(a["location"], a["scale"], size),
    "student_t": lambda rng, a, size: a["location"] + a["scale"] * rng.standard_t(a["df"], size),
    "cauchy": lambda rng, a, size: a["location"] + a["scale"] * rng.standard_cauchy(size),
    "exponential": lambda rng, a, size: rng.exponential(1 / a["rate"], size),
    "gamma": lambda rng, a, size: rng.gamma(a["shape"], 1 / a["rate"], size),
    "beta": lambda rng, a, size: rng.beta(a["a"], a["b"], size),
}


def prior_draw(desc, prepared, rng) -> dict:
    """True values drawn from the priors actually used (a prior predictive simulation)."""
    priors = prepared.priors

    def draw(key, size=None):
        p = priors[key]
        a = {k: np.asarray(v, dtype=float) for k, v in p["args"].items()}
        return PRIOR_DRAWS[p["family"]](rng, a, size)

    truth: dict = {"coefficients": {}, "effects": {}, "sd": {}, "cor": {}}
    if desc.intercept:
        # the prior is on the intercept at the predictor means: convert to the value at predictors = 0
        truth["Intercept"] = float(draw("Intercept"))
    for term in desc.terms:
        cols = prepared.columns[term.name]
        values = np.atleast_1d(draw(f"beta_{term.stan}", len(cols) if term.categorical else None))
        truth["coefficients"].update(dict(zip(cols, map(float, values))))
    # priors on the intercept (and cutpoints) hold at the predictors' centers; `shift` is what the linear
    # predictor at 0 differs from it: the intercept at 0 is that much lower, cutpoints that much higher
    shift = 0.0
    if desc.terms:
        beta = np.array([truth["coefficients"][c] for t in desc.terms for c in prepared.columns[t.name]])
        shift += float(np.dot(prepared.stan_data["X_means"], beta))
    for lv in desc.levels:
        for c in lv.coefficients:
            for e in c.effects:
                cols = prepared.group_columns[(lv.name, e.predictor.name)]
                values = np.atleast_1d(draw(e.name, len(cols) if e.predictor.categorical else None))
                truth["effects"].setdefault(lv.name, {}).setdefault(c.name, {}).update(dict(zip(cols, map(float, values))))
                # priors hold at the group-level predictors' centers: move to the value where they are 0
                moved = float(np.dot(np.atleast_1d(prepared.stan_data[e.predictor.center_key]), values))
                if c.term is None:
                    shift += moved
                else:
                    truth["coefficients"][c.term.name] -= moved
        if lv.at_means:  # intercept effects' priors hold at the slope predictors' means: move to 0
            effects = truth["effects"].get(lv.name, {})
            for e in lv.coefficients[0].effects:
                center = np.atleast_1d(prepared.stan_data[e.predictor.center_key])
                cols = prepared.group_columns[(lv.name, e.predictor.name)]
                for c in lv.coefficients[1:]:
                    if any(o.predictor.name == e.predictor.name for o in c.effects):
                        mean_x = float(np.mean(prepared.stan_data[c.term.values_key]))
                        slope = np.array([effects[c.name][col] for col in cols])
                        for col, value in zip(cols, slope):
                            effects[INTERCEPT][col] -= mean_x * value
                        shift -= float(np.dot(center, mean_x * slope))  # moved with the at-mean effect
        sds = np.atleast_1d(draw(f"sd_{lv.stan}", lv.n_coef if lv.n_coef > 1 else None))
        truth["sd"][lv.name] = {c.name: float(s) for c, s in zip(lv.coefficients, sds)}
        if lv.kind == "correlated":
            eta = float(priors[f"L_{lv.stan}"]["args"]["eta"])
            truth["cor"][lv.name] = _lkj(lv.n_coef, eta, rng).tolist()
        if lv.at_means:  # the program's priors hold at the slope predictors' means: move to 0
            sd_raw, cor_raw = at_zero(lv, prepared, sds, np.asarray(truth["cor"][lv.name]))
            truth["sd"][lv.name] = {c.name: float(s) for c, s in zip(lv.coefficients, sd_raw)}
            truth["cor"][lv.name] = cor_raw.tolist()
    if desc.intercept:
        truth["Intercept"] -= shift
    res = desc.residuals
    truth["parameters"] = {sub.stan: _submodel_prior_draw(sub, prepared, draw, rng) for sub in desc.submodels}
    for aux in desc.scalar_aux:
        if res.per_value_of(aux):
            truth[aux.name] = {label: float(draw(aux.name)) for label in prepared.sigma_labels}
        elif aux.size:  # a vector; an ordered one (cutpoints) sorted, and moved like the intercept
            values = np.sort(np.atleast_1d(draw(aux.name, desc.family.aux_length(aux, prepared.stan_data))))
            truth[aux.name] = [float(v + (shift if aux.moves_with_centering else 0.0)) for v in values]
        else:
            value = float(draw(aux.name))
            if aux.name == "nu":  # declared <lower=1>: a draw below is outside the parameter's support
                while value < 1:
                    value = float(draw(aux.name))
            truth[aux.name] = value
    truth.update(res.prior_draws(rng))
    return truth


def at_zero(lv, prepared, sds: np.ndarray, cor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sds and correlation of a level's intercept and slopes at the slope predictors' means → at 0
    (the varying intercept at 0 is intercept − Σ mean_k · slope_k)."""
    transform = np.eye(lv.n_coef)
    for k, c in enumerate(lv.coefficients[1:], start=1):
        transform[k, 0] = -float(np.mean(prepared.stan_data[c.term.values_key]))
    sigma = transform.T @ (np.diag(sds) @ cor @ np.diag(sds)) @ transform
    sd = np.sqrt(np.diag(sigma))
    return sd, sigma / np.outer(sd, sd)


def _lkj(k: int, eta: float, rng) -> np.ndarray:
    """One LKJ(eta) correlation matrix (onion method, Lewandowski, Kurowicka & Joe 2009)."""
    beta = eta + (k - 2) / 2
    r = 2 * rng.beta(beta, beta) - 1 if k > 1 else 0.0
    corr = np.array([[1.0, r], [r, 1.0]]) if k > 1 else np.eye(1)
    for m in range(2, k):
        beta -= 0.5
        y = rng.beta(m / 2, beta)
        z = rng.normal(size=m)
        w = np.sqrt(y) * z / np.linalg.norm(z)
        a = np.linalg.cholesky(corr)
        q = a @ w
        corr = np.block([[corr, q[:, None]], [q[None, :], np.ones((1, 1))]])
    return corr


def draw_outcome(desc, prepared, truth, rng) -> np.ndarray:
    data = prepared.stan_data
    n = prepared.n
    beta = np.array([truth["coefficients"][c] for t in desc.terms for c in prepared.columns[t.name]])
    deviations, effects = {}, {}
    for lv in desc.levels:  # each level's deviations drawn in level order (the order of the random numbers)
        deviations[lv.name] = _draw_deviations(lv, truth, data, rng)
        for c in lv.coefficients:
            for e in c.effects:
                cols = prepared.group_columns[(lv.name, e.predictor.name)]
                effects[e.name] = np.array([[truth["effects"][lv.name][c.name][col] for col in cols]])
    coefficients = Coefficients(np.array([truth.get("Intercept", 0.0)]), beta[None, :], deviations, effects)
    rows = training_rows(desc, prepared)
    eta = linear_predictor(desc, rows, coefficients)[0]
    aux = {a.name: truth[a.name] for a in desc.scalar_aux}
    for sub in desc.submodels:  # its parameter for every row, from its own linear predictor
        own = truth["parameters"][sub.stan]
        sub_beta = np.array([own["coefficients"][c] for t in sub.terms for c in prepared.columns[t.columns_key]])
        sub_deviations = {lv.name: _draw_deviations(lv, own, data, rng) for lv in sub.levels}
        values = linear_predictor(desc, rows, Coefficients(np.array([own["Intercept"]]), sub_beta[None, :],
                                                           sub_deviations, {}), submodel=sub)[0]
        aux[sub.stan] = inverse_link(sub.link, values)
    residual_sd = desc.family.residual_sd
    if residual_sd is not None and desc.submodel(residual_sd) is not None:  # each row's own residual sd
        errors = lambda: rng.normal(0, 1, n) * aux[residual_sd.name]  # noqa: E731
    else:
        errors = lambda: desc.residuals.draw_errors(truth, data, prepared.sigma_labels, n, rng)  # noqa: E731
    y = desc.family.draw(eta, aux, data.get("trials"), errors, rng)
    if desc.truncation is not None:  # only values inside the range were ever recorded
        y = desc.truncation.redraw(y, data, lambda: desc.family.draw(eta, aux, data.get("trials"), errors, rng))
    if prepared.outcome_categories:  # ordered categories: codes 1..K back to the data's labels
        labels = _category_values(prepared.outcome_categories, desc.order)
        return np.array([labels[k - 1] for k in y], dtype=object if isinstance(labels[0], str) else None)
    return y


def _draw_deviations(lv, truth: dict, data, rng) -> np.ndarray:
    """Each group's deviations at a level, (1, groups, coefficients), normal with the truth's sds and cor."""
    sd = np.array([truth["sd"][lv.name][c.name] for c in lv.coefficients])
    corr = np.asarray(truth["cor"].get(lv.name, np.eye(lv.n_coef)))
    return rng.multivariate_normal(np.zeros(lv.n_coef), np.diag(sd) @ corr @ np.diag(sd),
                                   size=data[lv.groups_key])[None]


def _category_values(categories: list[str], order: tuple | None) -> list:
    """The outcome's values for categories 1..K: the spec's `order` entries as written, else integers."""
    if order is not None:
        return list(order)
    return [int(float(c)) for c in categories]
