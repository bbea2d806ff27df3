"""Stage "encode": a DataFrame checked against a ModelDescription and coded in the model's terms (Encoded):
the outcome, every term's design columns, each row's group at every level, group-level predictor values,
the residual structure's data, the categories with their references. Independent of how the levels are
parameterized, so it runs once and the parameterization is chosen from it (stangen.compiler.parameterization).

All problems with the data are collected and raised together as one DataError; rows in messages are counted
from 1 over the data rows.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..core.errors import Problem
from ..core.frames import (
    SHOW_ROWS,
    Collector,
    compound_keys,
    is_numeric,
    label_text,
    mostly_numbers,
    rows_text,
    sort_labels,
    sorted_compound,
)
from ..spec import Spec
from .model import LevelDescription, ModelDescription


@dataclass(frozen=True)
class DroppedRows:
    """Rows left out because a column the model uses has no value there (`missing: drop`, lme4's na.omit)."""

    rows: tuple[int, ...]  # data rows, counted from 1
    by_column: tuple[tuple[str, int], ...]  # (column, how many rows miss a value there), in the spec's order

    def note(self) -> str:
        """'2 dropped: missing x' or '5 dropped: missing x (3), y (2)' (a row may miss several)."""
        several = len(self.by_column) > 1
        columns = ", ".join(f"{col} ({k})" if several else col for col, k in self.by_column)
        return f"{len(self.rows)} dropped: missing {columns}"

    def to_dict(self) -> dict:
        return {"rows": list(self.rows), "by_column": dict(self.by_column)}

    @classmethod
    def from_dict(cls, d: dict | None) -> "DroppedRows | None":
        return None if not d else cls(tuple(d["rows"]), tuple(d["by_column"].items()))


def categorical_columns(spec: Spec, df: pd.DataFrame) -> set[str]:
    """Variables used by the spec whose data are not numeric (strings, booleans, categories)."""
    used = {v for t in [*spec.predictors, *(t for sub in spec.parameters.values() for t in sub.predictors)]
            for v in t.split(":")}
    used |= {p for lv in spec.levels.values() for c in lv.coefficients for p in lv.predictors_of(c)}
    # a text column of mostly numbers is a typo, not a category: left out here, reported by prepare()
    return {v for v in used if v in df.columns and not is_numeric(df[v]) and not mostly_numbers(df[v])}


@dataclass
class Encoded:
    """The training rows in the model's terms (stage "encode"), and what they taught: the outcome coded (Stan
    data), every term's design columns on the data's scale, slope values, each level's group labels and each
    row's group, each group's group-level predictor values, the residual structure's data; the categories
    with their references. Independent of how the levels are parameterized, so it is computed once and the
    parameterization is chosen from it."""

    n: int
    outcome: dict[str, Any]  # y (and trials, K_cat), as Stan data
    design: np.ndarray  # (n, columns) of every term, not centered
    columns: dict[str, list[str]]  # term name → its design columns' names
    slopes: dict[str, np.ndarray]  # term name → its values (numeric terms)
    levels: dict[str, dict]  # level → {"labels", "index" (1-based), "predictors": {name: (values, names)}}
    residual_data: dict[str, Any]
    sigma_labels: list[str]
    outcome_categories: list[str]
    categories: dict[str, list[str]]
    missing: str = "error"
    dropped: "DroppedRows | None" = None
    sub_designs: dict[str, np.ndarray] = field(default_factory=dict)  # a sub-model's design, by its parameter

    def spans(self, desc: ModelDescription) -> dict[str, range]:
        """Term name → its columns in the design matrix."""
        out, start = {}, 0
        for term in desc.terms:
            out[term.name] = range(start, start + len(self.columns[term.name]))
            start += len(self.columns[term.name])
        return out

    def term_scales(self, desc: ModelDescription) -> dict[str, np.ndarray]:
        """Term (Term.columns_key) → the sd of each of its design columns (default priors scale by them)."""
        out = {name: self.design[:, span].std(axis=0) for name, span in self.spans(desc).items()}
        for sub in desc.submodels:
            start = 0
            for term in sub.terms:
                width = len(self.columns[term.columns_key])
                out[term.columns_key] = self.sub_designs[sub.stan][:, start:start + width].std(axis=0)
                start += width
        return out


def encode(desc: ModelDescription, df: pd.DataFrame, *, missing: str = "error") -> Encoded:
    """Check the data against the model and encode them. Raises DataError with every problem.
    `missing`: 'error' (a missing value in a used column is a problem) or 'drop' (such rows are left out)."""
    c = Collector()
    df, dropped, usable = screen_columns(dict(desc.columns), df, categorical=desc.categorical, missing=missing,
                                         c=c, whole_groups=_group_level_columns(desc))
    # each check below runs on the columns that passed the screen, so every problem is found in one go
    y = _outcome(desc, df, c) if {desc.outcome, desc.trials or desc.outcome} <= usable else {}
    if desc.offset is not None and desc.offset in usable:
        y.update(offset_data(df[desc.offset], desc.offset, c))
    if desc.weights is not None and desc.weights in usable:
        y.update(weights_data(df[desc.weights], desc.weights, c))
    if desc.censoring is not None and desc.censoring.column in usable:
        y.update(desc.censoring.stan_data(df, y.get("y"), desc.family.discrete, c))
    if desc.truncation is not None and all(b in usable for b in (desc.truncation.lower, desc.truncation.upper)
                                           if isinstance(b, str)):
        y.update(desc.truncation.stan_data(df, y.get("y"), desc.family.discrete, c))
    design, columns, slopes = design_columns(desc, df, c, usable)
    sub_designs = {}
    for sub in desc.submodels:
        sub_designs[sub.stan], more_columns, more_slopes = design_columns(desc, df, c, usable, submodel=sub)
        columns.update(more_columns)
        slopes.update(more_slopes)
    levels = {lv.name: _level(lv, desc, df, c, usable) for lv in desc.levels
              if {desc.level(a).id_column for a in lv.ancestors} | {lv.id_column} <= usable}
    residual_data, sigma_labels = _residuals(desc, df, levels, usable, c)
    c.raise_if_any()
    outcome_categories = y.pop("categories", [])
    return Encoded(len(df), y, design, columns, slopes, levels, residual_data, sigma_labels, outcome_categories,
                   _categories(desc, df), missing=missing, dropped=dropped, sub_designs=sub_designs)


def _categories(desc: ModelDescription, df: pd.DataFrame) -> dict[str, list[str]]:
    """Each categorical variable the model codes (level-1 and group-level), with its values, reference first."""
    used = {v for t in desc.terms + tuple(t for sub in desc.submodels for t in sub.terms) for v in t.variables}
    used |= {gp.column for lv in desc.levels for gp in lv.predictors if gp.categorical}
    return {var: _category_levels(desc, df, var, Collector(), "")[1] for var in sorted(used & desc.categorical)}


def screen_columns(columns: dict[str, str], df: pd.DataFrame, *, categorical, missing: str, c: "Collector",
                   whole_groups: dict[str, list[tuple[str, list[str]]]] | None = None
                   ) -> tuple[pd.DataFrame, DroppedRows | None, set[str]]:
    """The checks every used column gets on its own, all at once: present, no missing values (or, with
    missing='drop', those rows left out), numbers where numbers are expected. `columns`: column → the spec
    path naming it. `whole_groups`: group-level predictor column → [(level, its groups' id columns)], to name
    groups that have no value at all. Returns the rows to use, what was dropped, and the usable columns."""
    df = df.reset_index(drop=True)
    present = {}
    for column, path in columns.items():
        if column in df.columns:
            present[column] = path
            continue
        close = difflib.get_close_matches(column, [str(x) for x in df.columns], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f" (columns: {', '.join(map(str, df.columns))})"
        c.add(path, f"column '{column}' is not in the data{hint}")
    absent = {column: df[column].isna().to_numpy() for column in present}
    for column, groups in (whole_groups or {}).items():
        for level, id_columns in groups:
            if column in present and all(i in present for i in id_columns):
                _whole_groups_missing(column, present[column], level, id_columns, df, absent[column], c)
    usable = set(present)
    for column, path in present.items():  # before any row is dropped, so the rows named are the data's
        if column not in categorical and not path.endswith(".id"):
            _extreme_values(column, path, df[column], usable, c)
    dropped = None
    if missing == "drop":
        any_missing = np.logical_or.reduce(list(absent.values())) if absent else np.zeros(len(df), bool)
        if any_missing.all() and len(df):
            c.add("missing", "every row has a missing value in a column the model uses "
                             f"({', '.join(col for col, a in absent.items() if a.any())}); nothing is left to fit")
        elif any_missing.any():
            dropped = DroppedRows(tuple(int(i) + 1 for i in np.flatnonzero(any_missing)),
                                  tuple((col, int(a.sum())) for col, a in absent.items() if a.any()))
            df = df[~any_missing].reset_index(drop=True)
    else:
        for column, path in present.items():
            if absent[column].any():
                usable.discard(column)
                c.add(path, f"column '{column}' has {int(absent[column].sum())} missing value(s): "
                            f"{rows_text(absent[column])}; remove or impute those rows, or set `missing: drop` "
                            "(CLI --missing drop) to leave them out as lme4 does (na.omit)")
    for column, path in present.items():
        series = df[column]
        if column in categorical or is_numeric(series) or path.endswith(".id") or column not in usable:
            continue
        numbers = pd.to_numeric(series, errors="coerce")
        bad = numbers.isna().to_numpy()
        if not bad.any():  # numbers stored as text (a frame built from strings): they are numbers
            df[column] = numbers
        elif mostly_numbers(series):
            usable.discard(column)
            examples = ", ".join(repr(v) for v in series[bad].unique()[:3])
            c.add(path, f"column '{column}' is numeric except {examples} at {rows_text(bad)}; fix those values, "
                        "or list the column under `categorical:` if it really is a category")
    return df, dropped, usable


LARGEST_VALUE = 1e150  # beyond this a value's square overflows in the model's sums: no fit is possible


def _extreme_values(column: str, path: str, series: pd.Series, usable: set[str], c: Collector) -> None:
    """Infinite values, and values too large to compute with, are data problems naming their rows (a missing
    value, NaN, is the `missing:` policy's to judge)."""
    if not (is_numeric(series) or mostly_numbers(series)):
        return
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    infinite = np.isinf(numbers)
    huge = np.abs(np.where(infinite, 0, numbers)) > LARGEST_VALUE  # NaN compares False
    if infinite.any():
        c.add(path, f"column '{column}' has infinite values at {rows_text(infinite)}; fix them, or make them "
                    "missing and set `missing: drop`")
    if huge.any():
        c.add(path, f"column '{column}' has values beyond ±1e150 at {rows_text(huge)} "
                    f"(e.g. {numbers[huge][0]:g}); no model can be computed with them: fix them, or rescale the "
                    "column (a different unit)")
    if infinite.any() or huge.any():
        usable.discard(column)


def column_problems(columns: dict[str, str], df: pd.DataFrame, *, categorical, missing: str | None) -> list[Problem]:
    """The problems screen_columns finds, for a spec that has problems of its own (reported with these).
    `missing` None: the policy is unknown, so missing values are not judged."""
    c = Collector()
    screen_columns(columns, df, categorical=categorical, missing=missing or "drop", c=c)
    # with an unknown policy, what `drop` would leave is no problem of its own
    return [p for p in c.problems if missing is not None or p.path != "missing"]


def _group_level_columns(desc: ModelDescription) -> dict[str, list[tuple[str, list[str]]]]:
    """Group-level predictor column → [(level, the id columns naming its groups, outermost first)]."""
    out: dict[str, list[tuple[str, list[str]]]] = {}
    for lv in desc.levels:
        ids = [desc.level(a).id_column for a in lv.ancestors] + [lv.id_column]
        for gp in lv.predictors:
            if not gp.is_mean:
                out.setdefault(gp.column, []).append((lv.name, ids))
    return out


def _whole_groups_missing(column, path, level, id_columns, df, absent, c) -> None:
    """A group whose every row misses its group-level predictor: an error under either missing policy
    (dropping would silently remove the whole group)."""
    if not absent.any():
        return
    keys = compound_keys(df, id_columns)
    known = ~df[id_columns].isna().any(axis=1).to_numpy()
    all_missing = pd.Series(absent[known]).groupby(keys[known].to_numpy()).all()
    groups = sorted_compound(all_missing[all_missing].index.tolist())
    if groups:
        shown = ", ".join(repr(g) for g in groups[:SHOW_ROWS]) + (" …" if len(groups) > SHOW_ROWS else "")
        c.add(path, f"group-level predictor '{column}' is missing for every row of {len(groups)} '{level}' "
                    f"group(s): {shown}; give those groups a value (dropping them would lose the whole group)")


def _outcome(desc: ModelDescription, df: pd.DataFrame, c: Collector) -> dict[str, Any]:
    """The outcome (and trials) as Stan data, checked by the family (stangen/core/families.py)."""
    return desc.family.outcome_data(df[desc.outcome], desc.outcome, df[desc.trials] if desc.trials else None,
                                    desc.trials, c.add, order=desc.order)


def _finite_numbers(series: pd.Series, path: str, what: str, c: Collector, *, why: str = "",
                    infinite_hint: str = "") -> np.ndarray | None:
    """A per-row column's values, or None with the problem recorded: numbers, all finite."""
    if not is_numeric(series):
        c.add(path, f"{what} must be numeric{why}, got text such as {series.iloc[0]!r}")
        return None
    values = series.to_numpy(dtype=float)
    if not np.isfinite(values).all():
        c.add(path, f"{what} has infinite values at {rows_text(~np.isfinite(values))}{infinite_hint}")
        return None
    return values


def offset_data(series: pd.Series, column: str, c: Collector) -> dict[str, np.ndarray]:
    """The offset column as Stan data (`offsets`): numbers, finite."""
    values = _finite_numbers(series, "offset", f"offset '{column}'", c, why=" (it is added to the linear predictor)",
                             infinite_hint=" (log of 0? a row with no exposure has no information: leave it out)")
    return {} if values is None else {"offsets": values}


def weights_data(series: pd.Series, column: str, c: Collector) -> dict[str, np.ndarray]:
    """The likelihood weights as Stan data (`weights`): numbers, finite, not negative, not all 0."""
    values = _finite_numbers(series, "weights", f"weights '{column}'", c)
    if values is None:
        return {}
    if (values < 0).any():
        c.add("weights", f"weights '{column}' are negative at {rows_text(values < 0)}; a weight is 0 or more")
        return {}
    if not values.any():
        c.add("weights", f"weights '{column}' are all 0: no row would count")
        return {}
    return {"weights": values}


def _residuals(desc: ModelDescription, df: pd.DataFrame, levels: dict, usable: set[str], c: Collector
               ) -> tuple[dict[str, Any], list[str]]:
    """Stan data of the residual structure (stangen/core/residuals.py), and the values of `sd_by`."""
    return desc.residuals.stan_data(df, levels, usable, c)


def _category_levels(desc: ModelDescription, df: pd.DataFrame, var: str, c: Collector, path: str):
    labels = df[var].map(label_text)
    levels = sort_labels(labels.unique())
    reference = dict(desc.reference).get(var)
    if reference is not None:
        if reference not in levels:
            c.add(f"reference.{var}", f"'{reference}' is not a value of '{var}' (values: {', '.join(levels[:10])})")
        else:
            levels.remove(reference)
            levels.insert(0, reference)
    if len(levels) < 2:
        c.add(path, f"categorical '{var}' has a single value ({levels[0]!r}); its effect cannot be estimated")
    return labels, levels


def _variable_columns(desc, df, var, full: bool, c, path, categories=None) -> tuple[np.ndarray, list[str]]:
    """Columns for one variable: the numbers, or treatment-coded indicators (all levels when `full`).
    `categories`: the values learned from the training data (stangen.compiler.new_rows), for new rows."""
    if var not in desc.categorical:
        values = df[var].to_numpy(dtype=float)
        return values[:, None], [var]
    if categories is not None:
        labels, levels = df[var].map(label_text), list(categories[var])
        unseen = ~labels.isin(levels).to_numpy()
        if unseen.any():
            shown = ", ".join(repr(v) for v in pd.unique(labels[unseen])[:3])
            c.add(path, f"categorical '{var}' has value(s) the model was not fitted on: {shown} at {rows_text(unseen)} "
                        f"(the fitted values: {', '.join(levels[:10])})")
    else:
        labels, levels = _category_levels(desc, df, var, c, path)
    keep = levels if full else levels[1:]
    # isin, not ==: numpy's string comparison ignores a trailing NUL in a label
    matrix = np.column_stack([labels.isin([lv]).to_numpy(dtype=float) for lv in keep]) if keep else \
        np.zeros((len(df), 0))
    return matrix, [f"{var}{lv}" for lv in keep]


def design_columns(desc: ModelDescription, df: pd.DataFrame, c: Collector, usable: set[str] | None = None,
            categories: dict[str, list[str]] | None = None, submodel=None):
    """The pooled design matrix (of the model, or of a sub-model's terms). A categorical variable in a term gets
    treatment coding when the term without it is already in the model (the intercept counts as the empty
    term), and a column for every level otherwise — R's rule, so `x:g` without `x` gives each group its own
    slope, and without an intercept the first factor gets every level. Columns and slopes are keyed by
    Term.columns_key."""
    blocks, columns, slopes = [], {}, {}
    spans_intercept = desc.spans_intercept if submodel is None else True  # a sub-model has its intercept
    present: set[frozenset] = {frozenset()} if spans_intercept else set()
    terms = desc.terms if submodel is None else submodel.terms
    where = "predictors" if submodel is None else f"parameters.{submodel.stan}.predictors"
    for i, term in enumerate(terms):
        path = f"{where}[{i}]"
        if usable is not None and not set(term.variables) <= usable:
            continue  # a problem with one of its columns is reported already
        matrix, names = np.ones((len(df), 1)), [""]
        variables = frozenset(term.variables)
        for var in term.variables:
            full = var in desc.categorical and (variables - {var}) not in present
            cols, var_names = _variable_columns(desc, df, var, full, c, path, categories)
            matrix = np.column_stack([matrix[:, a] * cols[:, b] for a in range(matrix.shape[1])
                                      for b in range(cols.shape[1])]) if cols.shape[1] else cols
            names = [f"{a}:{b}" if a else b for a in names for b in var_names]
            if full and len(term.variables) == 1:
                present.add(frozenset())  # a fully coded factor spans the intercept
        present.add(variables)
        if categories is None and matrix.shape[1] and not term.categorical and np.std(matrix[:, 0]) == 0:
            c.add(path, f"predictor '{term.name}' is constant ({label_text(matrix[0, 0])}); "
                        "its coefficient cannot be estimated")
        blocks.append(matrix)
        columns[term.columns_key] = names
        if not term.categorical:
            slopes[term.columns_key] = matrix[:, 0]
    design = np.column_stack(blocks) if blocks else np.zeros((len(df), 0))
    return design, columns, slopes


def _level(level: LevelDescription, desc: ModelDescription, df: pd.DataFrame, c: Collector,
           usable: set[str] | None = None) -> dict:
    path = f"levels.{level.name}"
    own = df[level.id_column].map(label_text)
    parents = [desc.level(a) for a in level.ancestors]
    keys = group_keys(level, desc, df)
    if level.unique_labels and parents:
        parent_keys = df[parents[-1].id_column].map(label_text)
        per_group = pd.DataFrame({"g": own, "p": parent_keys}).groupby("g")["p"].nunique()
        for label in per_group[per_group > 1].index[:SHOW_ROWS]:
            where = parent_keys[own.isin([label])].unique()
            c.add(f"{path}.unique_labels",
                  f"group '{label}' of '{level.id_column}' appears under {len(where)} different "
                  f"'{parents[-1].id_column}' groups ({', '.join(sort_labels(where)[:4])}); with unique_labels: true "
                  f"each group must sit in one parent (set unique_labels: false if labels repeat across parents)")
    labels = sorted_compound(keys.unique())
    if len(labels) < 2:
        c.add(path, f"level '{level.name}' has a single group ({labels[0]!r}); a varying effect needs at least two")
    position = {lab: j for j, lab in enumerate(labels, start=1)}
    index = keys.map(position).to_numpy(dtype=int)
    predictors = {}
    for gp in level.predictors:
        if usable is None or gp.column in usable:
            predictors[gp.name] = _group_values(gp, level, df, keys, labels, desc, c)
    return {"labels": labels, "index": index, "predictors": predictors}


def group_keys(level: LevelDescription, desc: ModelDescription, df: pd.DataFrame) -> pd.Series:
    """Each row's group label at a level: a nested level's with its parents' (cask 'a' of batch 'A' is 'A:a')
    unless its labels are unique."""
    parents = [desc.level(a) for a in level.ancestors]
    if level.unique_labels or not parents:
        return df[level.id_column].map(label_text)
    return compound_keys(df, [p.id_column for p in parents] + [level.id_column])


def _group_values(gp, level, df, keys, labels, desc, c) -> tuple[np.ndarray, list[str]]:
    path = f"levels.{level.name}.{'means' if gp.is_mean else 'predictors'}"
    if gp.is_mean:
        series = df[gp.column]
        if not is_numeric(series):
            c.add(path, f"'{gp.column}' is not numeric; a group mean needs numbers")
            return np.zeros((len(labels), 1)), [gp.name]
        values = series.astype(float).groupby(keys).mean().reindex(labels).to_numpy()[:, None]
        return values, [gp.name]
    frame = pd.DataFrame({"group": keys, "value": df[gp.column].map(label_text) if gp.categorical
                          else df[gp.column].astype(float)})
    spread = frame.groupby("group")["value"].nunique()
    varying = spread[spread > 1].index.tolist()
    if varying:
        examples = ", ".join(repr(g) for g in sorted_compound(varying)[:3])
        c.add(path, f"group-level predictor '{gp.column}' varies within {len(varying)} group(s) of '{level.name}' "
                    f"(e.g. {examples}); a group-level predictor must be constant within each group "
                    f"(use `means: [{gp.column}]` for a group mean, or make it a level-1 predictor)")
    per_group = frame.groupby("group")["value"].first().reindex(labels)
    if gp.categorical:
        sub = pd.DataFrame({gp.column: per_group.to_numpy()})
        matrix, names = _variable_columns(desc, sub, gp.column, False, c, path)
        return matrix, names
    values = per_group.to_numpy(dtype=float)[:, None]
    if not varying and np.std(values) == 0:
        c.add(path, f"group-level predictor '{gp.column}' has the same value in every group of '{level.name}'")
    return values, [gp.name]
