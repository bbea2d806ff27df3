"""Stage 3b: a DataFrame + ModelDescription → Stan data (sizes, design, indices, prior numbers) + label maps.

Rows in messages are counted from 1 over the data rows (a CSV's header line excluded).
All problems with the data are collected and raised together as one DataError.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError, Problem
from .model import LevelDescription, ModelDescription
from .priors import prior_values
from .residuals import sd_groups, series_data
from .spec import Spec

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
    # the missing-value policy applied ('error' or 'drop') and the rows it left out (None: none)
    missing: str = "error"
    dropped: "DroppedRows | None" = None
    # with `residuals: sd_by`: the values that have their own residual sd, in the order of sigma's entries
    sigma_labels: list[str] = field(default_factory=list)
    # an ordinal outcome's categories, lowest first: y = k is outcome_categories[k - 1]
    outcome_categories: list[str] = field(default_factory=list)
    # each categorical variable's values as fitted, the reference first (new rows are coded with these)
    categories: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.stan_data["N"])


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


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def raise_if_any(self) -> None:
        if self.problems:
            raise DataError(self.problems)


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

    def spans(self, desc: ModelDescription) -> dict[str, range]:
        """Term name → its columns in the design matrix."""
        out, start = {}, 0
        for term in desc.terms:
            out[term.name] = range(start, start + len(self.columns[term.name]))
            start += len(self.columns[term.name])
        return out

    def term_scales(self, desc: ModelDescription) -> dict[str, np.ndarray]:
        """Term name → the sd of each of its design columns (default priors scale by them)."""
        return {name: self.design[:, span].std(axis=0) for name, span in self.spans(desc).items()}


def encode(desc: ModelDescription, df: pd.DataFrame, *, missing: str = "error") -> Encoded:
    """Check the data against the model and encode them. Raises DataError with every problem.
    `missing`: 'error' (a missing value in a used column is a problem) or 'drop' (such rows are left out)."""
    c = _Collector()
    df, dropped, usable = screen_columns(dict(desc.columns), df, categorical=desc.categorical, missing=missing,
                                         c=c, whole_groups=_group_level_columns(desc))
    # each check below runs on the columns that passed the screen, so every problem is found in one go
    y = _outcome(desc, df, c) if {desc.outcome, desc.trials or desc.outcome} <= usable else {}
    design, columns, slopes = _design(desc, df, c, usable)
    levels = {lv.name: _level(lv, desc, df, c, usable) for lv in desc.levels
              if {desc.level(a).id_column for a in lv.ancestors} | {lv.id_column} <= usable}
    residual_data, sigma_labels = _residuals(desc, df, levels, usable, c)
    c.raise_if_any()
    outcome_categories = y.pop("categories", [])
    return Encoded(len(df), y, design, columns, slopes, levels, residual_data, sigma_labels, outcome_categories,
                   _categories(desc, df), missing=missing, dropped=dropped)


def likelihood_grainsize(n: int, threads: int) -> int:
    """Rows per slice of a threaded likelihood (reduce_sum's grainsize): four slices per thread. Slices of
    thousands of rows keep the cost of slicing (copying the parameters into each task) small; several per
    thread let a thread that finishes early take another (benchmarks/RESULTS.md, "Threads within a chain")."""
    return max(1, -(-n // (4 * max(1, threads))))


def write_stan_data(desc: ModelDescription, encoded: Encoded, *, prior_only: bool = False,
                    priors: bool = True, splits: Mapping[str, Any] | None = None,
                    threads_per_chain: int = 1) -> PreparedData:
    """The Stan data of the encoded rows for this description (stage "Stan data"): the pooled terms' design
    matrix centered, slope values, group indices, group-level predictors centered, and the priors' numbers
    (from the spec, or defaults scaled to the encoded data; `priors=False` leaves them out, for choosing the
    parameterization). `splits`: a mixed level's groups sampled centered (1-based), as
    stangen.parameterization chose them; a mixed level not given there is split from these data.
    `threads_per_chain`: with a threaded description, the slice size is chosen for that many threads."""
    data: dict[str, Any] = {"N": encoded.n, "prior_only": int(prior_only)}
    if desc.threads:
        data["grainsize"] = likelihood_grainsize(encoded.n, threads_per_chain)
    data.update(encoded.outcome)
    data.update(encoded.residual_data)
    spans = encoded.spans(desc)
    columns = encoded.columns
    if desc.pooled_terms:
        # only the pooled terms' columns: a term a centered level takes enters through that level's slopes
        pooled = encoded.design[:, [i for term in desc.pooled_terms for i in spans[term.name]]]
        means = pooled.mean(axis=0) if desc.spans_intercept else np.zeros(pooled.shape[1])
        data["K"] = pooled.shape[1]
        data["X"] = pooled - means
        data["X_means"] = means
        for term in desc.pooled_terms:
            if term.categorical:
                data[term.size] = len(columns[term.name])
    for term in desc.slope_terms:
        data[f"x_{term.stan}"] = encoded.slopes[term.name]
    labels, group_columns = {}, {}
    for level in desc.levels:
        info = encoded.levels[level.name]
        labels[level.name] = info["labels"]
        data[f"J_{level.stan}"] = len(info["labels"])
        data[f"idx_{level.stan}"] = info["index"]
        if level.uses_parent:
            parent = encoded.levels[level.parent]
            # every group of a nested level sits in one parent group (its label includes the parent's)
            parent_of = np.zeros(len(info["labels"]), dtype=int)
            parent_of[info["index"] - 1] = parent["index"]
            data[f"parent_{level.stan}"] = parent_of
        for gp in level.predictors:
            values, names = info["predictors"][gp.name]
            # centered so the sampler sees little correlation between an effect and its population
            # coefficient; without a population intercept there is nothing to absorb the shift
            center = values.mean(axis=0) if desc.spans_intercept else np.zeros(values.shape[1])
            if gp.categorical:
                data[gp.size] = values.shape[1]
                data[gp.data] = values - center
            else:
                data[gp.data] = values[:, 0] - center[0]
            data[f"{gp.data}_center"] = center if gp.categorical else float(center[0])
            group_columns[(level.name, gp.name)] = names
    mixed = [lv for lv in desc.levels if lv.mixed]
    if mixed:
        from .parameterization import group_split
        for level in mixed:
            given = (splits or {}).get(level.name)
            centered = np.asarray(given if given is not None else group_split(desc, data, level.name), dtype=int)
            rest = np.setdiff1d(np.arange(1, data[f"J_{level.stan}"] + 1), centered)
            data[f"J_{level.stan}_centered"] = len(centered)
            data[f"centered_{level.stan}"] = centered
            data[f"noncentered_{level.stan}"] = rest
    numbers, used = prior_values(desc, encoded) if priors else ({}, {})
    data.update(numbers)
    return PreparedData(data, labels, dict(columns), group_columns, priors=used,
                        term_scales=encoded.term_scales(desc), missing=encoded.missing, dropped=encoded.dropped,
                        sigma_labels=encoded.sigma_labels, outcome_categories=encoded.outcome_categories,
                        categories=encoded.categories)


def prepare(desc: ModelDescription, df: pd.DataFrame, *, prior_only: bool = False,
            missing: str = "error") -> PreparedData:
    """encode + write_stan_data: the data checked against the model, as Stan data. Raises DataError with
    every problem."""
    return write_stan_data(desc, encode(desc, df, missing=missing), prior_only=prior_only)


def _categories(desc: ModelDescription, df: pd.DataFrame) -> dict[str, list[str]]:
    """Each categorical variable the model codes (level-1 and group-level), with its values, reference first."""
    used = {v for t in desc.terms for v in t.variables}
    used |= {gp.column for lv in desc.levels for gp in lv.predictors if gp.categorical}
    return {var: _category_levels(desc, df, var, _Collector(), "")[1] for var in sorted(used & desc.categorical)}


def screen_columns(columns: dict[str, str], df: pd.DataFrame, *, categorical, missing: str, c: "_Collector",
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
                            f"{_rows(absent[column])}; remove or impute those rows, or set `missing: drop` "
                            "(CLI --missing drop) to leave them out as lme4 does (na.omit)")
    for column, path in present.items():
        series = df[column]
        if column in categorical or _is_numeric(series) or path.endswith(".id") or column not in usable:
            continue
        numbers = pd.to_numeric(series, errors="coerce")
        bad = numbers.isna().to_numpy()
        if not bad.any():  # numbers stored as text (a frame built from strings): they are numbers
            df[column] = numbers
        elif _mostly_numbers(series):
            usable.discard(column)
            examples = ", ".join(repr(v) for v in series[bad].unique()[:3])
            c.add(path, f"column '{column}' is numeric except {examples} at {_rows(bad)}; fix those values, "
                        "or list the column under `categorical:` if it really is a category")
    return df, dropped, usable


def column_problems(columns: dict[str, str], df: pd.DataFrame, *, categorical, missing: str | None) -> list[Problem]:
    """The problems screen_columns finds, for a spec that has problems of its own (reported with these).
    `missing` None: the policy is unknown, so missing values are not judged."""
    c = _Collector()
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
    keys = _compound_keys(df, id_columns)
    known = ~df[id_columns].isna().any(axis=1).to_numpy()
    all_missing = pd.Series(absent[known]).groupby(keys[known].to_numpy()).all()
    groups = _sorted_compound(all_missing[all_missing].index.tolist())
    if groups:
        shown = ", ".join(repr(g) for g in groups[:SHOW_ROWS]) + (" …" if len(groups) > SHOW_ROWS else "")
        c.add(path, f"group-level predictor '{column}' is missing for every row of {len(groups)} '{level}' "
                    f"group(s): {shown}; give those groups a value (dropping them would lose the whole group)")


def _compound_keys(df: pd.DataFrame, id_columns: list[str]) -> pd.Series:
    """Group labels, a nested group's with its parents': cask 'a' of batch 'A' is 'A:a'."""
    keys = df[id_columns[0]].map(label_text)
    for column in id_columns[1:]:
        keys = keys + ":" + df[column].map(label_text)
    return keys


def _outcome(desc: ModelDescription, df: pd.DataFrame, c: _Collector) -> dict[str, Any]:
    """The outcome (and trials) as Stan data, checked by the family (stangen/families.py)."""
    return desc.family.outcome_data(df[desc.outcome], desc.outcome, df[desc.trials] if desc.trials else None,
                                    desc.trials, c.add, order=desc.order)


def _residuals(desc: ModelDescription, df: pd.DataFrame, levels: dict, usable: set[str], c: _Collector
               ) -> tuple[dict[str, Any], list[str]]:
    """Stan data of the residual structure (stangen/residuals.py), and the values of `sd_by`."""
    res, data, labels = desc.residuals, {}, []
    if res is None:
        return data, labels
    if res.sd_by and res.sd_by in usable:
        more, labels = sd_groups(res, df, c)
        data.update(more)
    if res.correlation and res.time in usable and res.level in levels:
        data.update(series_data(res, df, levels[res.level]["index"], levels[res.level]["labels"], c))
    return data, labels


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


def _variable_columns(desc, df, var, full: bool, c, path, categories=None) -> tuple[np.ndarray, list[str]]:
    """Columns for one variable: the numbers, or treatment-coded indicators (all levels when `full`).
    `categories`: the values learned from the training data (stangen.encoding), for new rows."""
    if var not in desc.categorical:
        values = df[var].to_numpy(dtype=float)
        return values[:, None], [var]
    if categories is not None:
        labels, levels = df[var].map(label_text), list(categories[var])
        unseen = ~labels.isin(levels).to_numpy()
        if unseen.any():
            shown = ", ".join(repr(v) for v in pd.unique(labels[unseen])[:3])
            c.add(path, f"categorical '{var}' has value(s) the model was not fitted on: {shown} at {_rows(unseen)} "
                        f"(the fitted values: {', '.join(levels[:10])})")
    else:
        labels, levels = _category_levels(desc, df, var, c, path)
    keep = levels if full else levels[1:]
    # isin, not ==: numpy's string comparison ignores a trailing NUL in a label
    matrix = np.column_stack([labels.isin([lv]).to_numpy(dtype=float) for lv in keep]) if keep else \
        np.zeros((len(df), 0))
    return matrix, [f"{var}{lv}" for lv in keep]


def _design(desc: ModelDescription, df: pd.DataFrame, c: _Collector, usable: set[str] | None = None,
            categories: dict[str, list[str]] | None = None):
    """The pooled design matrix. A categorical variable in a term gets treatment coding when the term without
    it is already in the model (the intercept counts as the empty term), and a column for every level
    otherwise — R's rule, so `x:g` without `x` gives each group its own slope, and without an intercept the
    first factor gets every level."""
    blocks, columns, slopes = [], {}, {}
    present: set[frozenset] = {frozenset()} if desc.spans_intercept else set()
    for i, term in enumerate(desc.terms):
        path = f"predictors[{i}]"
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
        columns[term.name] = names
        if not term.categorical:
            slopes[term.name] = matrix[:, 0]
    design = np.column_stack(blocks) if blocks else np.zeros((len(df), 0))
    return design, columns, slopes


def _level(level: LevelDescription, desc: ModelDescription, df: pd.DataFrame, c: _Collector,
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
    labels = _sorted_compound(keys.unique())
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
    return _compound_keys(df, [p.id_column for p in parents] + [level.id_column])


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
