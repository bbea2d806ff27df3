"""Conditional effects: the expected outcome against one level-1 predictor, the other predictors at their
reference values (numbers at their training means, categories at their reference), as brms's
conditional_effects draws it — with 50% and 95% bands, one line per category of a `by` variable, and the
fitted lines of sampled groups beside the population's (the lecture's plot of each girl's trajectory).

    table = effects_table(fit, "Days", groups=10)          # one row per grid point and line
    plot_effects(fit, "Days", "plots/effects_Days.png", groups=25)

The population line is a new group at every level with its effects at 0 (predict's new_groups="population")
and its group-level predictors at their means over the fitted groups (categorical: the reference).
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..compiler.encoding import group_keys
from ..compiler.new_rows import encode_rows
from ..core.frames import label_text
from ..core.errors import Problem, UserError
from .figures import plt, save, title
from .predict import aux_draws, linear_predictor

if TYPE_CHECKING:
    from ..fitting import Fit

POINTS = 50
POPULATION = "(population)"  # the group label of the population line


def _all_terms(d):
    """The model's terms, then its sub-models' (`parameters:`)."""
    return d.terms + tuple(t for sub in d.submodels for t in sub.terms)


def numeric_predictors(fit: "Fit") -> list[str]:
    """Level-1 variables that are numbers (the ones an effects plot can run along), of the model and its
    sub-models."""
    d = fit.description
    seen = []
    for t in _all_terms(d):
        for v in t.variables:
            if v not in d.categorical and v not in seen:
                seen.append(v)
    return seen


def _by_problem(by: str | None, categorical) -> list[Problem]:
    """`by` must be one of the model's categorical level-1 predictors (`categorical`): [] or the problem."""
    if by is None or by in categorical:
        return []
    return [Problem("--by", f"'{by}' is not a categorical level-1 predictor of this model "
                            f"(categorical ones: {', '.join(sorted(categorical)) or 'none'})")]


def _check(fit: "Fit", predictor: str, by: str | None, level: str | None, parameter: str | None = None) -> None:
    d = fit.description
    problems = []
    modelled = [sub.stan for sub in d.submodels]
    if parameter is not None and parameter not in modelled:
        problems.append(Problem("--parameter", f"'{parameter}' has no sub-model in this model (parameters with one: "
                                               f"{', '.join(modelled) or 'none'})"))
    numeric = numeric_predictors(fit)
    if predictor not in numeric:
        problems.append(Problem("--predictor", f"'{predictor}' is not a numeric level-1 predictor of this model "
                                               f"(numeric ones: {', '.join(numeric) or 'none'})"))
    categorical = sorted({v for t in d.terms for v in t.variables} & d.categorical)
    problems += _by_problem(by, categorical)
    if level is not None and level not in [lv.name for lv in d.levels]:
        problems.append(Problem("--level", f"no level '{level}' (levels: {', '.join(lv.name for lv in d.levels)})"))
    if problems:
        raise UserError(problems)


def _reference_row(fit: "Fit", frame: pd.DataFrame) -> dict:
    """Every used level-1 variable at its reference: the training mean, or the reference category."""
    d, categories = fit.description, fit.program.data.categories
    row = {}
    for t in _all_terms(d):
        for v in t.variables:
            row[v] = categories[v][0] if v in d.categorical else float(frame[v].astype(float).mean())
    if d.trials:
        row[d.trials] = 1  # the expected share of successes per trial
    row.update(d.residuals.reference_values(fit.program.data.sigma_labels))
    return row


def _default_level(fit: "Fit", predictor: str) -> str | None:
    """The level whose groups' lines are drawn: the first where the predictor's slope varies, else the first."""
    d = fit.description
    for lv in d.levels:
        if any(c.term is not None and predictor in c.term.variables for c in lv.coefficients):
            return lv.name
    return d.levels[0].name if d.levels else None


def _expected(fit: "Fit", grid: pd.DataFrame, parameter: str | None = None, link: bool = False,
              probabilities: bool = False, new_groups: str = "population",
              rng: np.random.Generator | None = None) -> np.ndarray:
    """The expected outcome of each grid row per draw, (draws, rows) (or the family parameter `parameter`,
    from its sub-model; `link`: the linear predictor; `probabilities`: an ordinal outcome's category
    probabilities, (draws, rows, categories)), with new groups at 0 (`new_groups='sample'`: drawn from the
    fitted distribution with `rng`) and their group-level predictors at their means over the fitted groups
    (the reference category for a categorical one)."""
    d = fit.description
    grid = grid.copy()
    for lv in d.levels:
        for gp in lv.predictors:  # placeholders: new groups' values are set below
            if gp.column not in grid:
                grid[gp.column] = fit.program.data.categories[gp.column][0] if gp.categorical else 0.0
    rows = encode_rows(fit.program, grid, new_groups=new_groups, need_sd_by=False, need_offset=False)
    for lv in d.levels:
        known = len(fit.program.data.labels[lv.name])
        for gp in lv.predictors:
            values = rows.group_values[(lv.name, gp.name)]
            if len(values) > known:
                values[known:] = 0.0 if gp.categorical else values[:known].mean(axis=0)
    rng = rng if rng is not None else np.random.default_rng(0)
    if parameter is not None:
        return aux_draws(fit, rows, new_groups, rng)[parameter]
    eta = linear_predictor(fit, rows, new_groups, rng)
    if link:
        return eta
    aux = aux_draws(fit, rows, new_groups, rng)
    if probabilities:
        return d.family.probabilities(eta, aux["cutpoints"])
    return d.family.expected(eta, aux, rows.trials)


CONTRASTS = ("pairwise", "revpairwise", "trt.vs.ctrl")
WEIGHTS = ("equal", "proportional")
GROUPS = ("population", "sample")
NEW_GROUPS = 100  # new groups per grid cell and draw that `groups='sample'` averages over


def marginal_means(fit: "Fit", by: str, at: dict[str, float] | None = None, contrast: str | None = None,
                   scale: str = "response", weights: str = "equal", data: pd.DataFrame | None = None,
                   groups: str = "population", seed: int = 1):
    """emmeans' estimated marginal means of the expected outcome for each category of `by`, per draw: over the
    reference grid of the model's other categorical level-1 predictors (averaged with equal weights, or with
    `weights='proportional'` as often as the data have each combination), numeric predictors at their means
    (or `at`), a binomial outcome per trial. `groups='population'`: every group effect 0 (emmeans with
    re.form = NA); `'sample'`: averaged over NEW_GROUPS new groups per cell and draw, their effects drawn from
    the fitted distribution (brms's sample_new_levels; on a nonlinear link the population-averaged mean).
    Group-level predictors at their means. `scale`: 'response' or 'link'. An ordinal outcome on the response
    scale: each category's probability, one row per (by, category). Returns (means, contrasts): tables of
    estimate, est_error, 95% interval, and for contrasts P(> 0); contrasts None without `contrast`."""
    d = fit.description
    categorical = sorted({v for t in d.terms for v in t.variables} & d.categorical)
    numeric = [v for v in numeric_predictors(fit) if v in {w for t in d.terms for w in t.variables}]
    problems = []
    problems += _by_problem(str(by), categorical)  # required here
    for name in at or {}:
        if name not in numeric:
            problems.append(Problem("--at", f"'{name}' is not a numeric level-1 predictor (numeric ones: "
                                            f"{', '.join(numeric) or 'none'})"))
    for value, allowed, path in ((contrast, CONTRASTS, "--contrast"), (scale, ("response", "link"), "--scale"),
                                 (weights, WEIGHTS, "--weights"), (groups, GROUPS, "--groups")):
        if value is not None and value not in allowed:
            problems.append(Problem(path, f"unknown choice {value!r} (allowed: {', '.join(allowed)})"))
    if problems:
        raise UserError(problems)
    frame = fit.training_data(data)
    categories = fit.program.data.categories
    others = [v for v in categorical if v != by]
    combos = list(itertools.product(*(categories[v] for v in others)))
    if weights == "proportional" and others:
        keys = frame[others].map(label_text).apply(tuple, axis=1).value_counts()
        share = np.array([keys.get(tuple(combo), 0) for combo in combos], dtype=float)
        share /= share.sum()
    else:
        share = np.full(len(combos), 1.0 / len(combos))
    base = _reference_row(fit, frame) | dict(at or {}) | {lv.id_column: POPULATION for lv in d.levels}
    probabilities = d.family.ordinal and scale == "response"
    replicates = NEW_GROUPS if groups == "sample" else 1
    # the grid: categories of by × combinations of the others × copies (each copy new groups at every level:
    # the same sampled groups for every cell of a draw, so that contrasts compare like with like)
    grid = pd.DataFrame([base | {by: label} | dict(zip(others, combo))
                         for label in categories[by] for combo in combos for _ in range(replicates)])
    if groups == "sample":
        for lv in d.levels:
            grid[lv.id_column] = [f"{POPULATION} {k}" for k in range(replicates)] * (len(grid) // replicates)
    values = _expected(fit, grid, link=scale == "link", probabilities=probabilities, new_groups=groups,
                       rng=np.random.default_rng(seed))
    values = values.reshape(values.shape[0], len(categories[by]), len(combos), replicates, *values.shape[2:])
    per_cell = np.tensordot(values.mean(axis=3), share, axes=([2], [0]))  # (draws, by[, outcome categories])
    if probabilities:  # one column per (category of by, outcome category)
        outcome = fit.program.data.outcome_categories
        draws = per_cell.reshape(per_cell.shape[0], -1)
        index = pd.MultiIndex.from_product([categories[by], outcome], names=[by, d.outcome])
    else:
        draws, index = per_cell, pd.Index(categories[by], name=by)
    means = _summary(draws, index)
    if contrast is None:
        return means, None
    k = len(categories[by])
    pairs = ([(i, j) for i in range(k) for j in range(i + 1, k)] if contrast == "pairwise" else
             [(j, i) for i in range(k) for j in range(i + 1, k)] if contrast == "revpairwise" else
             [(j, 0) for j in range(1, k)])
    names = [f"{categories[by][i]} - {categories[by][j]}" for i, j in pairs]
    if probabilities:  # the contrasts of each outcome category's probability
        differences = np.concatenate([per_cell[:, i] - per_cell[:, j] for i, j in pairs], axis=1)
        index = pd.MultiIndex.from_product([names, outcome], names=["contrast", d.outcome])
    else:
        differences = np.column_stack([draws[:, i] - draws[:, j] for i, j in pairs])
        index = pd.Index(names, name="contrast")
    contrasts = _summary(differences, index)
    contrasts["P(>0)"] = (differences > 0).mean(axis=0)
    return means, contrasts


def _summary(draws: np.ndarray, index: pd.Index) -> pd.DataFrame:
    """Each column of draws: posterior mean, sd and 95% interval, one row per entry of `index`."""
    lo, hi = np.quantile(draws, [0.025, 0.975], axis=0)
    return pd.DataFrame({"estimate": draws.mean(axis=0), "est_error": draws.std(axis=0, ddof=1),
                         "q2.5%": lo, "q97.5%": hi}, index=index)


def effects_table(fit: "Fit", predictor: str, by: str | None = None, groups: int = 0, level: str | None = None,
                  points: int = POINTS, seed: int = 1, data: pd.DataFrame | None = None,
                  parameter: str | None = None) -> pd.DataFrame:
    """The lines of the effects plot: columns line ('population', a category of `by`, or a group label),
    kind ('population' or 'group'), the predictor's value, and the expected outcome's mean and 2.5/25/75/97.5%
    quantiles (group lines: the mean only). `parameter`: a family parameter with a sub-model (`parameters:`,
    e.g. 'sigma') in place of the expected outcome."""
    _check(fit, predictor, by, level, parameter)
    frame = fit.training_data(data)
    d = fit.description
    values = np.linspace(frame[predictor].min(), frame[predictor].max(), points)
    reference = _reference_row(fit, frame)
    ids = {lv.id_column: POPULATION for lv in d.levels}
    lines = [("population", {})] if by is None else [(str(c), {by: c}) for c in fit.program.data.categories[by]]
    out = []
    for label, fixed in lines:
        grid = pd.DataFrame([reference | ids | fixed] * points).assign(**{predictor: values})
        draws = _expected(fit, grid, parameter)
        q = np.quantile(draws, [0.025, 0.25, 0.75, 0.975], axis=0)
        out.append(pd.DataFrame({"line": label, "kind": "population", predictor: values, "mean": draws.mean(axis=0),
                                 "q2.5%": q[0], "q25%": q[1], "q75%": q[2], "q97.5%": q[3]}))
    level = level or _default_level(fit, predictor)
    if groups and level is not None:
        out.append(_group_lines(fit, frame, predictor, level, groups, values, reference, seed, parameter))
    return pd.concat(out, ignore_index=True)


def average_slopes(fit: "Fit", predictor: str, by: str | None = None, eps: float | None = None,
                   data: pd.DataFrame | None = None, draws: bool = False):
    """marginaleffects' avg_slopes: per draw, the mean over the data's rows (of each category of `by`) of the
    derivative of the expected outcome with respect to `predictor`, by a forward finite difference of size
    `eps` (default 1e-4 times the predictor's range, as marginaleffects), each row with its groups' effects.
    A table (by, estimate, est_error, 2.5% and 97.5% quantiles), or with `draws` the (draws, categories) array."""
    _check(fit, predictor, by, None)
    frame = fit.training_data(data).reset_index(drop=True)
    x = pd.to_numeric(frame[predictor]).to_numpy(dtype=float)
    step = eps if eps is not None else 1e-4 * float(np.ptp(x) or 1.0)
    change = (_rows_expected(fit, frame.assign(**{predictor: x + step})) - _rows_expected(fit, frame)) / step
    groups = _row_groups(frame, by, predictor)
    values = _group_means(change, groups)
    if draws:
        return values
    return _summary(values, pd.Index([label for label, _ in groups], name=by or "slope of"))


def average_comparisons(fit: "Fit", predictor: str, values: tuple | None = None, by: str | None = None,
                        data: pd.DataFrame | None = None, draws: bool = False):
    """marginaleffects' avg_comparisons: per draw, the mean over the data's rows (of each category of `by`) of
    the change in the expected outcome when `predictor` changes, each row with its groups' effects. A numeric
    predictor: from each row's value to that value + 1 ('+1'), or from values[0] to values[1] on every row; a
    categorical one: each category against the reference (every row set to each), or values[1] against
    values[0]. A table (by, contrast: estimate, est_error, 95% interval, P(> 0)), or with `draws` a dict
    contrast → (draws, by groups) array."""
    d = fit.description
    used = {v for t in _all_terms(d) for v in t.variables}  # (a sub-model's too: zi moves E[y])
    categorical = predictor in d.categorical
    problems = []
    if predictor not in used:
        problems.append(Problem("--predictor", f"'{predictor}' is not a level-1 predictor of this model "
                                               f"(predictors: {', '.join(sorted(used)) or 'none'})"))
    elif categorical and values is not None:
        known = [str(c) for c in fit.program.data.categories[predictor]]
        for value in values:
            if str(value) not in known:
                problems.append(Problem("--values", f"'{value}' is not a category of {predictor} (categories: "
                                                    f"{', '.join(known)})"))
    elif values is not None:
        try:
            values = tuple(float(v) for v in values)
        except (TypeError, ValueError):
            problems.append(Problem("--values", f"{predictor} is numeric: give two numbers, got {values!r}"))
    if values is not None and len(values) != 2:
        problems.append(Problem("--values", f"give two values (from, to), got {len(values)}"))
    problems += _by_problem(by, used & d.categorical)
    if problems:
        raise UserError(problems)
    frame = fit.training_data(data).reset_index(drop=True)
    if categorical:
        labels = {str(c): c for c in fit.program.data.categories[predictor]}
        reference = next(iter(labels))
        pairs = [(reference, other) for other in list(labels)[1:]] if values is None else \
            [(str(values[0]), str(values[1]))]
        changes = {f"{hi} - {lo}": _rows_expected(fit, frame.assign(**{predictor: labels[hi]})) -
                   _rows_expected(fit, frame.assign(**{predictor: labels[lo]})) for lo, hi in pairs}
    elif values is None:
        x = pd.to_numeric(frame[predictor]).to_numpy(dtype=float)
        changes = {"+1": _rows_expected(fit, frame.assign(**{predictor: x + 1})) - _rows_expected(fit, frame)}
    else:
        lo, hi = values
        changes = {f"{hi:g} - {lo:g}": _rows_expected(fit, frame.assign(**{predictor: hi})) -
                   _rows_expected(fit, frame.assign(**{predictor: lo}))}
    groups = _row_groups(frame, by, predictor)
    averaged = {name: _group_means(change, groups) for name, change in changes.items()}
    if draws:
        return averaged
    tables = []
    for name, value in averaged.items():
        table = _summary(value, pd.Index([label for label, _ in groups], name=by or "term"))
        table["P(>0)"] = (value > 0).mean(axis=0)
        tables.append(table.assign(contrast=name).set_index("contrast", append=True))
    return pd.concat(tables)


def _rows_expected(fit: "Fit", frame: pd.DataFrame) -> np.ndarray:
    """The expected outcome of each row per draw, (draws, rows), each row with its groups' effects; a binomial
    outcome per trial (a probability, as marginaleffects gives a binomial glmer's)."""
    rows = encode_rows(fit.program, frame, new_groups="population", need_sd_by=False)
    eta = linear_predictor(fit, rows, "population", None)
    expected = fit.description.family.expected(eta, aux_draws(fit, rows), rows.trials)
    return expected / np.asarray(rows.trials, dtype=float) if fit.description.trials else expected


def _group_means(per_row: np.ndarray, groups: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """(draws, rows) → (draws, groups): each draw's mean over each group's rows (_row_groups)."""
    return np.column_stack([per_row[:, rows].mean(axis=1) for _, rows in groups])


def _row_groups(frame: pd.DataFrame, by: str | None, label: str) -> list[tuple[str, np.ndarray]]:
    """(label, which rows) per category of `by` (its labels sorted), or one group of all rows."""
    if by is None:
        return [(label, np.ones(len(frame), dtype=bool))]
    text = frame[by].map(str)
    return [(value, (text == value).to_numpy()) for value in sorted(text.unique())]


def _group_lines(fit, frame, predictor, level, groups, values, reference, seed, parameter=None) -> pd.DataFrame:
    d = fit.description
    lv = d.level(level)
    keys = group_keys(lv, d, frame)
    labels = fit.program.data.labels[level]
    chosen = np.random.default_rng(seed).choice(len(labels), size=min(groups, len(labels)), replace=False)
    keep = {lv.name, *lv.ancestors}
    out = []
    for j in sorted(chosen):
        template = frame[keys == labels[j]].iloc[0]
        ids = {other.id_column: (template[other.id_column] if other.name in keep else POPULATION)
               for other in d.levels}
        grid = pd.DataFrame([reference | ids] * len(values)).assign(**{predictor: values})
        out.append(pd.DataFrame({"line": labels[j], "kind": "group", predictor: values,
                                 "mean": _expected(fit, grid, parameter).mean(axis=0)}))
    return pd.concat(out, ignore_index=True)


def plot_effects(fit: "Fit", predictor: str, path: str | Path, by: str | None = None, groups: int = 0,
                 level: str | None = None, data: pd.DataFrame | None = None, parameter: str | None = None) -> Path:
    """The effects plot as a PNG (see effects_table); the training data as points behind the lines (not for a
    sub-model's parameter, which no data point shows)."""
    table = effects_table(fit, predictor, by=by, groups=groups, level=level, data=data, parameter=parameter)
    d = fit.description
    frame = fit.training_data(data)
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    if d.outcome in frame and len(frame) <= 20000 and parameter is None:
        y = frame[d.outcome].astype(float) / (frame[d.trials] if d.trials else 1) if not d.family.ordinal else \
            frame[d.outcome].map({c: k + 1 for k, c in enumerate(fit.program.data.outcome_categories)})
        ax.scatter(frame[predictor], y, s=6, color="0.6", alpha=0.35, linewidths=0, label="data")
    shown_level = level or _default_level(fit, predictor)
    for k, (label, part) in enumerate(table[table["kind"] == "group"].groupby("line", sort=False)):
        ax.plot(part[predictor], part["mean"], color="tab:blue", alpha=0.35, lw=0.9,
                label=f"{shown_level} groups (posterior means)" if k == 0 else None)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (label, part) in enumerate(table[table["kind"] == "population"].groupby("line", sort=False)):
        color = "black" if by is None else colors[(k + 1) % len(colors)]
        name = "population" if by is None else f"{by} = {label}"
        ax.fill_between(part[predictor], part["q2.5%"], part["q97.5%"], color=color, alpha=0.12, lw=0)
        ax.fill_between(part[predictor], part["q25%"], part["q75%"], color=color, alpha=0.22, lw=0)
        ax.plot(part[predictor], part["mean"], color=color, lw=2, label=f"{name} (50% and 95% bands)")
    ylabel = f"expected {d.outcome}" + (f" per trial ({d.trials})" if d.trials else "") + \
        (f" at offset 0 ({d.offset} = 0: per unit of exposure for a log exposure)" if d.offset else "") + \
        (" (category number)" if d.family.ordinal else "")
    shown = d.outcome
    if parameter is not None:
        aux = next(a for a in d.family.aux if a.name == parameter)
        ylabel, shown = f"{parameter}, the {aux.meaning}", parameter
    ax.set_xlabel(predictor)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title(fit)}: {shown} against {predictor}, other predictors at their reference values",
                 fontsize=11, loc="left")
    ax.legend(fontsize=8, loc="best")
    return save(fig, path)
