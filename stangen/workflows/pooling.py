"""Complete, no and partial pooling of one level, side by side (Gelman & Hill 2007, ch. 12).

    complete pooling  the level dropped: one coefficient for all groups
    no pooling        each group its own coefficients, with no shared distribution: the level's id as a
                      categorical predictor with one column per group and no common intercept (so the
                      groups' intercepts are not tied to a reference group, which samples much better),
                      and its interaction with each varying slope, again one column per group
    partial pooling   the spec as written (group coefficients from lme4-style `coef`)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.ticker import ScalarFormatter

from ..compiler.program import load_data, load_spec
from ..core.errors import Problem, SpecError
from ..fitting import fit
from ..results.figures import plt, save
from ..spec import Spec
from ..spec.validate import INTERCEPT


def complete_pooling_spec(spec: Spec, level: str) -> Spec:
    raw = spec.to_dict()
    raw["levels"] = {n: lv for n, lv in spec.levels.items() if n != level and lv.within != level}
    raw["name"] = f"{spec.name}_complete_pooling"
    return Spec(**raw, base_dir=spec.base_dir)


def no_pooling_spec(spec: Spec, level: str) -> Spec:
    lv = spec.levels[level]
    group = lv.id or level
    raw = spec.to_dict()
    slopes = [c for c in lv.coefficients if c != INTERCEPT]
    others = [t for t in spec.predictors if t not in slopes]
    # x:group without x: every group gets its own slope column (no reference group to correlate with)
    raw["predictors"] = [group] + others + [f"{s}:{group}" for s in slopes]
    raw["categorical"] = sorted(set(spec.categorical) | {group})
    if INTERCEPT in lv.coefficients:
        raw["intercept"] = False  # the first categorical term then has a column for every group
    raw["levels"] = {n: other for n, other in spec.levels.items() if n != level and other.within != level}
    raw["name"] = f"{spec.name}_no_pooling"
    return Spec(**raw, base_dir=spec.base_dir)


def _check(spec: Spec, level: str) -> None:
    if level not in spec.levels:
        raise SpecError(Problem("--level", f"no level '{level}' in the spec (levels: {', '.join(spec.levels)})"))
    if spec.levels[level].within is not None or any(lv.within == level for lv in spec.levels.values()):
        raise SpecError(Problem("--level", f"'{level}' is nested; pooling comparisons take a level that is neither "
                                           "nested in nor a parent of another"))


def compare_pooling(spec: Spec | str | Path, level: str, data=None, **settings: Any):
    """Fit the three variants; return (table per group, fits by variant name)."""

    spec = load_spec(spec)
    _check(spec, level)
    frame = load_data(spec, data)
    variants = {"complete": complete_pooling_spec(spec, level), "none": no_pooling_spec(spec, level),
                "partial": spec}
    fits = {name: fit(s, frame, **settings) for name, s in variants.items()}
    return pooling_table(fits, level), fits


def pooling_table(fits: dict, level: str) -> pd.DataFrame:
    """Per group and varying coefficient: posterior mean under each variant, and the group's size."""
    partial = fits["partial"]
    lv = partial.description.level(level)
    labels = partial.program.data.labels[level]
    sizes = np.bincount(np.asarray(partial.program.stan_data[lv.index_key]) - 1, minlength=len(labels))
    rows = []
    partial_coef = partial.coef()[level]
    for c in lv.coefficients:
        complete = _population(fits["complete"], c.name)
        none = _no_pooling(fits["none"], lv, c.name, labels)
        for j, label in enumerate(labels):
            rows.append({"group": label, "coefficient": c.name, "n": int(sizes[j]), "complete": complete,
                         "none": none[j], "partial": partial_coef.loc[label, c.name]})
    return pd.DataFrame(rows)


def _population(fit, coefficient: str) -> float:
    fixef = fit.fixef()["Estimate"]
    return float(fixef["Intercept" if coefficient == INTERCEPT else coefficient])


def _no_pooling(fit, lv, coefficient: str, labels: list[str]) -> np.ndarray:
    """Each group's own coefficient: one column per group for the intercept and for each slope."""
    group = lv.id_column
    names = {str(k): v for k, v in fit.fixef()["Estimate"].items()}
    prefix = group if coefficient == INTERCEPT else f"{coefficient}:{group}"
    return np.array([names[f"{prefix}{label}"] for label in labels])


def plot_pooling(table: pd.DataFrame, coefficient: str, path: str | Path, title: str = "") -> Path:
    """No-pooling and partial-pooling estimates against group size, with the complete-pooling line."""
    sub = table[table.coefficient == coefficient]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    sizes = sub.n.to_numpy().astype(float)
    spread = sizes.max() / sizes.min() > 3
    jitter = np.random.default_rng(0).uniform(-1, 1, len(sub))  # so equal-sized groups do not overlap
    x = sizes * np.exp(0.04 * jitter) if spread else sizes + 0.3 * jitter
    ax.scatter(x, sub.none, s=18, facecolors="none", edgecolors="tab:gray", label="no pooling")
    ax.scatter(x, sub.partial, s=18, color="tab:blue", label="partial pooling (multilevel)")
    for xi, a, b in zip(x, sub.none, sub.partial):
        ax.plot([xi, xi], [a, b], color="tab:blue", alpha=0.25, linewidth=0.8)
    ax.axhline(sub.complete.iloc[0], color="tab:red", linestyle="--", label="complete pooling")
    if spread:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(ScalarFormatter())
    ax.set_xlabel("observations in the group" + (" (log scale)" if spread else ""))
    ax.set_ylabel(f"estimated {coefficient}")
    ax.set_title(title or f"{coefficient}: no, partial and complete pooling")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return save(fig, path, dpi="figure")
