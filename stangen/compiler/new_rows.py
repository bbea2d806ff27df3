"""New rows in the fitted model's terms: the design columns, each row's group at every level (known or new),
and the group-level predictor values of new groups — coded as the training data taught (`Encoding`: what
data.encode learned — categories with their reference, design column names, group labels, and each fitted
group's group-level predictor values — kept with a run). The coding itself is data.py's, shared with the
training rows (`design_columns`, `group_keys`).

    rows = encode_rows(fit.program, new_frame, new_groups="sample")

Problems with the new rows are reported together as one DataError that names the column, value, group or
rows, like the training data's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..core.errors import Problem, UserError
from ..core.frames import Collector, is_numeric, label_text, rows_text, sorted_compound
from .encoding import design_columns, group_keys

NEW_GROUPS = ("error", "sample", "population")
SHOW = 5


@dataclass(frozen=True)
class Encoding:
    """What the training data taught about coding rows, kept with a run (run.json and data.json): each
    categorical variable's values (reference first), each term's design columns, each level's group labels
    (a nested group's with its parents'), each fitted group's group-level predictor values on the data's
    scale, the ordinal outcome's categories and the values of `sd_by`."""

    categories: dict[str, list[str]]
    columns: dict[str, list[str]]
    labels: dict[str, list[str]]
    group_columns: dict[tuple[str, str], list[str]]
    group_values: dict[tuple[str, str], np.ndarray]  # (level, predictor) → (fitted groups, columns)
    outcome_categories: list[str]
    sigma_labels: list[str]

    @classmethod
    def of(cls, desc, prepared) -> "Encoding":
        data = prepared.stan_data
        values = {}
        for lv in desc.levels:
            for gp in lv.predictors:
                raw = np.asarray(data[gp.data], dtype=float) + np.asarray(data[gp.center_key], dtype=float)
                values[(lv.name, gp.name)] = raw.reshape(len(prepared.labels[lv.name]), -1)
        return cls(prepared.categories, prepared.columns, prepared.labels, prepared.group_columns, values,
                   prepared.outcome_categories, prepared.sigma_labels)


@dataclass
class EncodedRows:
    """New rows, encoded. Group indices are 0-based: below len(known labels) a fitted group, from there on the
    new groups in `new_labels` order."""

    n: int
    design: np.ndarray  # (n, columns) of every term, on the data's scale (not centered), in the fitted order
    slopes: dict[str, np.ndarray]  # term name → its values, for varying slopes
    group: dict[str, np.ndarray] = field(default_factory=dict)  # level → each row's group index
    new_labels: dict[str, list[str]] = field(default_factory=dict)  # level → its new groups
    # (level, group-level predictor) → values of the known groups, then the new ones: (groups, columns)
    group_values: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    trials: np.ndarray | None = None
    offsets: np.ndarray | None = None  # each row's offset (`offset:`), added to the model's linear predictor
    bounds: dict[str, np.ndarray] = field(default_factory=dict)  # truncation_lower/upper of each row (`truncation:`)
    sigma_group: np.ndarray | None = None  # 0-based index of each row's residual sd (residuals: sd_by)
    # a sub-model's (`parameters:`) design on the data's scale, by its parameter (its slopes are in `slopes`,
    # keyed by Term.columns_key)
    sub_designs: dict[str, np.ndarray] = field(default_factory=dict)


def encode_rows(program, frame: pd.DataFrame, *, new_groups: str = "error", need_trials: bool = True,
                need_sd_by: bool = True, need_offset: bool = True, need_bounds: bool = False) -> EncodedRows:
    """Encode `frame` (no outcome needed) for the fitted `program`. `new_groups`: 'error' (every unseen group
    is reported), 'sample' or 'population' (unseen groups are allowed; they need their group-level
    predictors). `need_offset`: False takes the offset as 0 (a plot per unit of exposure); `need_bounds`: the
    truncation bounds of each row (new outcomes drawn inside them). Raises DataError naming every problem."""
    if new_groups not in NEW_GROUPS:
        raise UserError(Problem("new_groups", f"unknown choice {new_groups!r} (allowed: {', '.join(NEW_GROUPS)})"))
    desc, prepared = program.description, Encoding.of(program.description, program.data)
    coded = {v for t in desc.terms for v in t.variables} | {gp.column for lv in desc.levels for gp in lv.predictors}
    if (coded & desc.categorical) - set(prepared.categories):
        raise UserError(Problem("run", "this run does not record its categories (it was saved by an older "
                                       "stangen): fit it again to predict from it"))
    c = Collector()
    frame = frame.reset_index(drop=True)
    needed = _needed_columns(desc, need_trials, need_sd_by, need_offset)
    if desc.truncation is not None and need_bounds:
        for column, path in desc.truncation.columns().items():
            needed.setdefault(column, path)
    for column, path in needed.items():
        if column not in frame.columns:
            c.add(path, f"column '{column}' is not in the new data (columns: {', '.join(map(str, frame.columns))})")
        elif frame[column].isna().any():
            c.add(path, f"column '{column}' has missing values in the new data at {rows_text(frame[column].isna().to_numpy())}")
    c.raise_if_any()
    for column, path in needed.items():
        kinds = desc.categorical | {lv.id_column for lv in desc.levels}
        if column not in kinds and not is_numeric(frame[column]):
            numbers = pd.to_numeric(frame[column], errors="coerce")
            if numbers.isna().any():
                c.add(path, f"column '{column}' must be numeric; got {frame[column][numbers.isna()].iloc[0]!r} "
                            f"at {rows_text(numbers.isna().to_numpy())}")
            else:
                frame[column] = numbers
    c.raise_if_any()
    design, columns, slopes = design_columns(desc, frame, c, categories=prepared.categories)
    rows = EncodedRows(len(frame), design, slopes)
    for sub in desc.submodels:
        rows.sub_designs[sub.stan], _, more = design_columns(desc, frame, c, categories=prepared.categories,
                                                             submodel=sub)
        rows.slopes.update(more)
    for lv in desc.levels:
        _encode_level(lv, desc, prepared, frame, rows, new_groups, c)
    if desc.trials and need_trials:
        trials = frame[desc.trials].to_numpy(dtype=float)
        bad = (trials < 0) | (trials != np.round(trials))
        if bad.any():
            c.add("trials", f"trials column '{desc.trials}' must hold non-negative integers; bad at {rows_text(bad)}")
        rows.trials = np.round(trials).astype(int)
    if desc.offset is not None and need_offset:
        rows.offsets = frame[desc.offset].to_numpy(dtype=float)
        if not np.isfinite(rows.offsets).all():
            c.add("offset", f"offset '{desc.offset}' has infinite values in the new data at "
                            f"{rows_text(~np.isfinite(rows.offsets))}")
    if desc.truncation is not None and need_bounds:
        rows.bounds = {f"truncation_{k}": desc.truncation.values(frame, k) for k in desc.truncation.bounds}
    if need_sd_by:
        rows.sigma_group = desc.residuals.new_row_sd_index(frame, prepared.sigma_labels, c, rows_text)
    c.raise_if_any()
    return rows


def _needed_columns(desc, need_trials: bool, need_sd_by: bool, need_offset: bool = True) -> dict[str, str]:
    """The columns new rows must have → the spec path naming each: predictors and level ids always;
    group-level predictors only for new groups (checked there); trials, sd_by and the offset when the
    prediction uses them."""
    needed: dict[str, str] = {}
    for i, term in enumerate(desc.terms):
        for var in term.variables:
            needed.setdefault(var, f"predictors[{i}]")
    for sub in desc.submodels:
        for i, term in enumerate(sub.terms):
            for var in term.variables:
                needed.setdefault(var, f"parameters.{sub.stan}.predictors[{i}]")
    for lv in desc.levels:
        needed.setdefault(lv.id_column, f"levels.{lv.name}.id")
    if desc.trials and need_trials:
        needed.setdefault(desc.trials, "trials")
    if desc.offset is not None and need_offset:
        needed.setdefault(desc.offset, "offset")
    if need_sd_by:
        for column, path in desc.residuals.new_row_columns().items():
            needed.setdefault(column, path)
    return needed


def _encode_level(lv, desc, prepared, frame, rows: EncodedRows, new_groups: str, c: Collector) -> None:
    known = prepared.labels[lv.name]
    position = {label: j for j, label in enumerate(known)}
    keys = group_keys(lv, desc, frame)
    unseen = sorted_compound(pd.unique(keys[~keys.isin(known)]))
    if unseen and new_groups == "error":
        shown = ", ".join(repr(g) for g in unseen[:SHOW]) + (f" … ({len(unseen)} groups)" if len(unseen) > SHOW else "")
        c.add(f"levels.{lv.name}", f"{len(unseen)} '{lv.name}' group(s) the model was not fitted on: {shown}; "
                                   "predict for new groups with new_groups='sample' (draw their effects from the "
                                   "fitted distribution) or 'population' (their effects at 0, lme4's re.form = NA)")
    position.update({label: len(known) + k for k, label in enumerate(unseen)})
    rows.group[lv.name] = keys.map(position).to_numpy(dtype=int)
    rows.new_labels[lv.name] = list(unseen)
    for gp in lv.predictors:
        fitted = prepared.group_values[(lv.name, gp.name)]
        new = _new_group_values(gp, lv, desc, prepared, frame, keys, unseen, c) \
            if unseen and new_groups != "error" else np.zeros((0, fitted.shape[1]))
        rows.group_values[(lv.name, gp.name)] = np.vstack([fitted, new]) if len(new) else fitted


def _new_group_values(gp, lv, desc, prepared, frame, keys, unseen, c) -> np.ndarray:
    """A new group's value of a group-level predictor: from the new rows (constant within the group), or for
    a group mean (`means:`) the mean of its rows."""
    path = f"levels.{lv.name}.{'means' if gp.is_mean else 'predictors'}"
    width = len(prepared.group_columns[(lv.name, gp.name)])
    out = np.zeros((len(unseen), width))
    if gp.column not in frame.columns:
        c.add(path, f"column '{gp.column}' is not in the new data; new '{lv.name}' groups "
                    f"({', '.join(repr(g) for g in unseen[:SHOW])}) need their {gp.name}")
        return out
    mine = keys.isin(unseen).to_numpy()
    values = frame[gp.column][mine]
    group = keys[mine]
    if values.isna().any():
        missing = sorted(set(group[values.isna()]))
        c.add(path, f"'{gp.column}' is missing for new '{lv.name}' group(s) {', '.join(repr(g) for g in missing[:SHOW])} "
                    f"at {rows_text((frame[gp.column].isna() & pd.Series(mine)).to_numpy())}")
        return out
    if gp.is_mean:
        means = values.astype(float).groupby(group).mean()
        return means.reindex(unseen).to_numpy()[:, None]
    shown = values.map(label_text) if gp.categorical else values.astype(float)
    spread = shown.groupby(group).nunique()
    varying = spread[spread > 1].index.tolist()
    if varying:
        c.add(path, f"group-level predictor '{gp.column}' varies within new '{lv.name}' group(s) "
                    f"{', '.join(repr(g) for g in sorted_compound(varying)[:SHOW])}; it must be constant within each group")
        return out
    first = shown.groupby(group).first().reindex(unseen)
    if not gp.categorical:
        return first.to_numpy(dtype=float)[:, None]
    levels = prepared.categories[gp.column]
    bad = sorted(set(first) - set(levels))
    if bad:
        c.add(path, f"categorical '{gp.column}' of new '{lv.name}' groups has value(s) the model was not fitted on: "
                    f"{', '.join(repr(b) for b in bad[:SHOW])} (the fitted values: {', '.join(levels[:10])})")
        return out
    names = prepared.group_columns[(lv.name, gp.name)]
    coded = [f"{gp.column}{v}" for v in first]
    return np.array([[1.0 if code == name else 0.0 for name in names] for code in coded])


# -- the linear predictor of encoded rows (predict with posterior draws, simulate with true values) ------------

@dataclass(frozen=True)
class Coefficients:
    """A model's coefficients for S draws (S = 1 for one set of values, such as simulation's truth)."""

    intercept: np.ndarray  # (S,); zeros without a population intercept
    beta: np.ndarray  # (S, design columns) in the rows' design order
    deviations: dict[str, np.ndarray]  # level → each group's deviations u: (S, groups, coefficients)
    effects: dict[str, np.ndarray]  # a group effect's Stan name → its coefficients: (S, its predictor's columns)


def linear_predictor(desc, rows: EncodedRows, coefficients: Coefficients, submodel=None) -> np.ndarray:
    """The linear predictor of every row for each of the S coefficient sets: (S, rows). A group's varying
    coefficient is the population's plus its group-level predictors' effects (at the group's values) plus its
    deviation. `submodel`: a sub-model's linear predictor (on its link scale) instead of the model's."""
    eta = np.zeros((len(coefficients.intercept), rows.n)) + coefficients.intercept[:, None]
    design = rows.design if submodel is None else rows.sub_designs[submodel.stan]
    if design.shape[1]:
        eta += coefficients.beta @ design.T
    for lv in desc.levels if submodel is None else submodel.levels:
        values = coefficients.deviations[lv.name].copy()  # (S, groups, coefficients)
        for k, c in enumerate(lv.coefficients):
            for e in c.effects:
                w = rows.group_values[(lv.name, e.predictor.name)]  # (groups, columns)
                values[:, :, k] += coefficients.effects[e.name] @ w.T
        index = rows.group[lv.name]
        for k, c in enumerate(lv.coefficients):
            eta += values[:, index, k] * (1.0 if c.term is None else rows.slopes[c.term.columns_key])
    if submodel is None and rows.offsets is not None:
        eta += rows.offsets
    return eta


def inverse_link(link: str, values: np.ndarray) -> np.ndarray:
    """A sub-model's parameter from its linear predictor."""
    return np.exp(values) if link == "log" else 1 / (1 + np.exp(-values))


def training_rows(desc, prepared) -> EncodedRows:
    """The training rows as EncodedRows, from their Stan data (the design back on the data's scale, a column per
    term in the terms' order: X's, and a slope's values for a term whose coefficient a centered level took)."""
    data = prepared.stan_data
    pooled = np.asarray(data["X"], dtype=float) + np.asarray(data["X_means"], dtype=float) if "X" in data \
        else np.zeros((prepared.n, 0))
    parts, at = [], 0
    for term in desc.terms:
        if term.absorbed:  # (numeric: a varying slope's values)
            parts.append(np.asarray(data[term.values_key], dtype=float)[:, None])
        else:
            width = len(prepared.columns[term.columns_key])
            parts.append(pooled[:, at:at + width])
            at += width
    design = np.hstack(parts) if parts else np.zeros((prepared.n, 0))
    slopes = {t.columns_key: np.asarray(data[t.values_key], dtype=float) for t in desc.all_slope_terms}
    group = {lv.name: np.asarray(data[lv.index_key]) - 1 for lv in desc.levels}
    sub_designs = {sub.stan: np.asarray(data[sub.design_key], dtype=float) + np.asarray(data[sub.means_key], dtype=float)
                   if sub.terms else np.zeros((prepared.n, 0)) for sub in desc.submodels}
    bounds = {key: np.asarray(data[key]) for key in ("truncation_lower", "truncation_upper") if key in data}
    sigma_group = np.asarray(data["sigma_group"]) - 1 if "sigma_group" in data else None
    return EncodedRows(prepared.n, design, slopes, group, {}, Encoding.of(desc, prepared).group_values,
                       trials=data.get("trials"), sub_designs=sub_designs, offsets=data.get("offsets"),
                       bounds=bounds, sigma_group=sigma_group)
