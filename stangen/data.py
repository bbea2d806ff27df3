"""Stage 3b: a DataFrame + ModelDescription → Stan data (sizes, design, indices, prior numbers) + label maps.

Rows in messages are counted from 1 over the data rows (a CSV's header line excluded).
All problems with the data are collected and raised together as one DataError.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError, Problem
from .model import LevelDescription, ModelDescription, Term
from .priors import prior_values
from .spec import Spec
from .spec.validate import INTERCEPT

SHOW_ROWS = 5


@dataclass
class PreparedData:
    stan_data: dict[str, Any]
    labels: dict[str, list[str]]  # level name → group labels in index order (group j has label labels[j-1])
    columns: dict[str, list[str]]  # term name → names of its coefficients (one per design column)
    group_columns: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (level, predictor) → names
    priors: dict[str, dict[str, Any]] = field(default_factory=dict)  # prior key → {family, args} used
    # term name → sd of each of its design columns (default priors scale by them, whether or not the
    # term's column is in X)
    term_scales: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.stan_data["N"])


def read_csv(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(Problem("data", f"data file not found: {path}")) from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(Problem("data", f"cannot read {path} as CSV: {exc}")) from None


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _rows(mask: np.ndarray) -> str:
    idx = np.flatnonzero(mask) + 1
    shown = ", ".join(str(i) for i in idx[:SHOW_ROWS])
    return f"row{'s' if len(idx) > 1 else ''} {shown}" + (f" … ({len(idx)} rows)" if len(idx) > SHOW_ROWS else "")


def label_text(value) -> str:
    """How a group label or category is shown: 308, not 308.0."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def sort_labels(labels) -> list[str]:
    """Numbers in numeric order (2 before 10), otherwise text order."""
    labels = list(labels)
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def categorical_columns(spec: Spec, df: pd.DataFrame) -> set[str]:
    """Variables used by the spec whose data are not numeric (strings, booleans, categories)."""
    used = {v for t in spec.predictors for v in t.split(":")}
    used |= {p for lv in spec.levels.values() for c in lv.coefficients for p in lv.predictors_of(c)}
    # a text column of mostly numbers is a typo, not a category: left out here, reported by prepare()
    return {v for v in used if v in df.columns and not _is_numeric(df[v]) and not _mostly_numbers(df[v])}


def _mostly_numbers(series: pd.Series) -> bool:
    return pd.to_numeric(series, errors="coerce").notna().mean() >= 0.5


def _used_columns(desc: ModelDescription) -> dict[str, str]:
    """column → the spec path that uses it first."""
    used: dict[str, str] = {desc.outcome: "outcome"}
    if desc.trials:
        used.setdefault(desc.trials, "trials")
    for i, term in enumerate(desc.terms):
        for var in term.variables:
            used.setdefault(var, f"predictors[{i}]")
    for level in desc.levels:
        used.setdefault(level.id_column, f"levels.{level.name}.id")
        for gp in level.predictors:
            key = "means" if gp.is_mean else "predictors"
            used.setdefault(gp.column, f"levels.{level.name}.{key}")
    return used


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def raise_if_any(self) -> None:
        if self.problems:
            raise DataError(self.problems)


def prepare(desc: ModelDescription, df: pd.DataFrame, *, prior_only: bool = False) -> PreparedData:
    """Check the data against the model and build the Stan data dict. Raises DataError with every problem."""
    c = _Collector()
    used = _used_columns(desc)
    for column, path in used.items():
        if column not in df.columns:
            close = difflib.get_close_matches(column, [str(x) for x in df.columns], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f" (columns: {', '.join(map(str, df.columns))})"
            c.add(path, f"column '{column}' is not in the data{hint}")
    c.raise_if_any()
    df = df.reset_index(drop=True)
    for column, path in used.items():
        missing = df[column].isna().to_numpy()
        if missing.any():
            c.add(path, f"column '{column}' has {int(missing.sum())} missing value(s): {_rows(missing)}; "
                        "remove or impute those rows first")
    c.raise_if_any()
    _check_kinds(desc, df, used, c)
    c.raise_if_any()
    y = _outcome(desc, df, c)
    design, columns, slopes = _design(desc, df, c)
    levels = {lv.name: _level(lv, desc, df, c) for lv in desc.levels}
    c.raise_if_any()

    data: dict[str, Any] = {"N": len(df), "prior_only": int(prior_only)}
    data.update(y)
    spans, start = {}, 0  # term name → its columns in the design matrix
    for term in desc.terms:
        spans[term.name] = range(start, start + len(columns[term.name]))
        start += len(columns[term.name])
    term_scales = {name: design[:, span].std(axis=0) for name, span in spans.items()}
    if desc.pooled_terms:
        # only the pooled terms' columns: a term a centered level takes enters through that level's slopes
        pooled = design[:, [i for term in desc.pooled_terms for i in spans[term.name]]]
        means = pooled.mean(axis=0) if desc.intercept else np.zeros(pooled.shape[1])
        data["K"] = pooled.shape[1]
        data["X"] = pooled - means
        data["X_means"] = means
        for term in desc.pooled_terms:
            if term.categorical:
                data[term.size] = len(columns[term.name])
    for term in desc.slope_terms:
        data[f"x_{term.stan}"] = slopes[term.name]
    labels, group_columns = {}, {}
    for level in desc.levels:
        info = levels[level.name]
        labels[level.name] = info["labels"]
        data[f"J_{level.stan}"] = len(info["labels"])
        data[f"idx_{level.stan}"] = info["index"]
        if level.uses_parent:
            parent = levels[level.parent]
            # every group of a nested level sits in one parent group (its label includes the parent's)
            parent_of = np.zeros(len(info["labels"]), dtype=int)
            parent_of[info["index"] - 1] = parent["index"]
            data[f"parent_{level.stan}"] = parent_of
        for gp in level.predictors:
            values, names = info["predictors"][gp.name]
            # centered so the sampler sees little correlation between an effect and its population
            # coefficient; without a population intercept there is nothing to absorb the shift
            center = values.mean(axis=0) if desc.intercept else np.zeros(values.shape[1])
            if gp.categorical:
                data[gp.size] = values.shape[1]
                data[gp.data] = values - center
            else:
                data[gp.data] = values[:, 0] - center[0]
            data[f"{gp.data}_center"] = center if gp.categorical else float(center[0])
            group_columns[(level.name, gp.name)] = names
    prepared = PreparedData(data, labels, columns, group_columns, term_scales=term_scales)
    prior_values(desc, prepared)
    return prepared


def _check_kinds(desc: ModelDescription, df: pd.DataFrame, used: dict[str, str], c: _Collector) -> None:
    for column, path in used.items():
        series = df[column]
        if column in desc.categorical or _is_numeric(series) or path.endswith(".id"):
            continue
        bad = pd.to_numeric(series, errors="coerce").isna().to_numpy()
        if _mostly_numbers(series):
            examples = ", ".join(repr(v) for v in series[bad].unique()[:3])
            c.add(path, f"column '{column}' is numeric except {examples} at {_rows(bad)}; fix those values, "
                        "or list the column under `categorical:` if it really is a category")


def _outcome(desc: ModelDescription, df: pd.DataFrame, c: _Collector) -> dict[str, Any]:
    family, column = desc.family, desc.outcome
    series = df[column]
    if pd.api.types.is_bool_dtype(series) and family == "bernoulli":
        series = series.astype(int)
    if not _is_numeric(series):
        c.add("outcome", f"outcome '{column}' must be numeric for family {family}, got text such as {series.iloc[0]!r}")
        return {}
    y = series.to_numpy(dtype=float)
    if not np.isfinite(y).all():
        c.add("outcome", f"outcome '{column}' has infinite values at {_rows(~np.isfinite(y))}")
        return {}
    if family == "gaussian":
        if np.std(y) == 0:
            c.add("outcome", f"outcome '{column}' is constant ({y[0]}); there is nothing to model")
        return {"y": y}
    integer = y == np.round(y)
    if family == "bernoulli":
        bad = ~np.isin(y, (0, 1))
        if bad.any():
            c.add("outcome", f"family bernoulli needs outcome '{column}' to be 0 or 1; other values at {_rows(bad)}")
        return {"y": y.astype(int)}
    bad = (y < 0) | ~integer
    if bad.any():
        c.add("outcome", f"family {family} needs outcome '{column}' to be a non-negative integer count; "
                         f"bad values ({', '.join(label_text(v) for v in np.unique(y[bad])[:3])}) at {_rows(bad)}")
    out: dict[str, Any] = {"y": np.round(y).astype(int)}
    if family == "binomial":
        trials = df[desc.trials]
        if not _is_numeric(trials):
            c.add("trials", f"trials column '{desc.trials}' must hold integer counts")
            return out
        n = trials.to_numpy(dtype=float)
        bad_n = (n < 0) | (n != np.round(n))
        if bad_n.any():
            c.add("trials", f"trials column '{desc.trials}' must hold non-negative integers; bad at {_rows(bad_n)}")
        over = y > n
        if over.any():
            c.add("outcome", f"successes '{column}' exceed trials '{desc.trials}' at {_rows(over)}")
        out["trials"] = np.round(n).astype(int)
    return out


def _category_levels(desc: ModelDescription, df: pd.DataFrame, var: str, c: _Collector, path: str):
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


def _variable_columns(desc, df, var, full: bool, c, path) -> tuple[np.ndarray, list[str]]:
    """Columns for one variable: the numbers, or treatment-coded indicators (all levels when `full`)."""
    if var not in desc.categorical:
        values = df[var].to_numpy(dtype=float)
        return values[:, None], [var]
    labels, levels = _category_levels(desc, df, var, c, path)
    keep = levels if full else levels[1:]
    # isin, not ==: numpy's string comparison ignores a trailing NUL in a label
    matrix = np.column_stack([labels.isin([lv]).to_numpy(dtype=float) for lv in keep]) if keep else \
        np.zeros((len(df), 0))
    return matrix, [f"{var}{lv}" for lv in keep]


def _design(desc: ModelDescription, df: pd.DataFrame, c: _Collector):
    """The pooled design matrix. A categorical variable in a term gets treatment coding when the term without
    it is already in the model (the intercept counts as the empty term), and a column for every level
    otherwise — R's rule, so `x:g` without `x` gives each group its own slope, and without an intercept the
    first factor gets every level."""
    blocks, columns, slopes = [], {}, {}
    present: set[frozenset] = {frozenset()} if desc.intercept else set()
    for i, term in enumerate(desc.terms):
        path = f"predictors[{i}]"
        matrix, names = np.ones((len(df), 1)), [""]
        variables = frozenset(term.variables)
        for var in term.variables:
            full = var in desc.categorical and (variables - {var}) not in present
            cols, var_names = _variable_columns(desc, df, var, full, c, path)
            matrix = np.column_stack([matrix[:, a] * cols[:, b] for a in range(matrix.shape[1])
                                      for b in range(cols.shape[1])]) if cols.shape[1] else cols
            names = [f"{a}:{b}" if a else b for a in names for b in var_names]
            if full and len(term.variables) == 1:
                present.add(frozenset())  # a fully coded factor spans the intercept
        present.add(variables)
        if matrix.shape[1] and not term.categorical and np.std(matrix[:, 0]) == 0:
            c.add(path, f"predictor '{term.name}' is constant ({label_text(matrix[0, 0])}); "
                        "its coefficient cannot be estimated")
        blocks.append(matrix)
        columns[term.name] = names
        if not term.categorical:
            slopes[term.name] = matrix[:, 0]
    design = np.column_stack(blocks) if blocks else np.zeros((len(df), 0))
    return design, columns, slopes


def _level(level: LevelDescription, desc: ModelDescription, df: pd.DataFrame, c: _Collector) -> dict:
    path = f"levels.{level.name}"
    own = df[level.id_column].map(label_text)
    parents = [desc.level(a) for a in level.ancestors]
    if level.unique_labels or not parents:
        keys = own
    else:  # a nested level's groups are named with their parents: cask 'a' of batch 'A' is 'A:a'
        keys = own
        for parent in reversed(parents):
            keys = df[parent.id_column].map(label_text) + ":" + keys
    if level.unique_labels and parents:
        parent_keys = df[parents[-1].id_column].map(label_text)
        per_group = pd.DataFrame({"g": own, "p": parent_keys}).groupby("g")["p"].nunique()
        for label in per_group[per_group > 1].index[:SHOW_ROWS]:
            where = parent_keys[own.isin([label])].unique()
            c.add(f"{path}.unique_labels",
                  f"group '{label}' of '{level.id_column}' appears under {len(where)} different "
                  f"'{parents[-1].id_column}' groups ({', '.join(sort_labels(where)[:4])}); with unique_labels: true "
                  f"each group must sit in one parent (set unique_labels: false if labels repeat across parents)")
    labels = _sorted_compound(keys.unique())
    if len(labels) < 2:
        c.add(path, f"level '{level.name}' has a single group ({labels[0]!r}); a varying effect needs at least two")
    position = {lab: j for j, lab in enumerate(labels, start=1)}
    index = keys.map(position).to_numpy(dtype=int)
    predictors = {}
    for gp in level.predictors:
        predictors[gp.name] = _group_values(gp, level, df, keys, labels, desc, c)
    return {"labels": labels, "index": index, "predictors": predictors}


def _sorted_compound(labels) -> list[str]:
    parts = [lab.split(":") for lab in labels]
    width = max((len(p) for p in parts), default=1)
    orders = []
    for k in range(width):
        values = sort_labels({p[k] for p in parts if len(p) > k})
        orders.append({v: i for i, v in enumerate(values)})
    return sorted(labels, key=lambda lab: tuple(orders[k][v] for k, v in enumerate(lab.split(":"))))


def _group_values(gp, level, df, keys, labels, desc, c) -> tuple[np.ndarray, list[str]]:
    path = f"levels.{level.name}.{'means' if gp.is_mean else 'predictors'}"
    if gp.is_mean:
        series = df[gp.column]
        if not _is_numeric(series):
            c.add(path, f"'{gp.column}' is not numeric; a group mean needs numbers")
            return np.zeros((len(labels), 1)), [gp.name]
        values = series.astype(float).groupby(keys).mean().reindex(labels).to_numpy()[:, None]
        return values, [gp.name]
    frame = pd.DataFrame({"group": keys, "value": df[gp.column].map(label_text) if gp.categorical
                          else df[gp.column].astype(float)})
    spread = frame.groupby("group")["value"].nunique()
    varying = spread[spread > 1].index.tolist()
    if varying:
        examples = ", ".join(repr(g) for g in _sorted_compound(varying)[:3])
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
