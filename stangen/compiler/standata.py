"""Stage "Stan data": the encoded rows (stangen.compiler.encoding) written as the Stan data of a description —
sizes, the pooled design centered, slope values, group indices, group-level predictors centered, a mixed
level's split and the priors' numbers — with the label maps that read the results back (PreparedData).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from .encoding import DroppedRows, Encoded, encode
from .model import ModelDescription
from .parameterization import group_split
from .priors import prior_values


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
    stangen.compiler.parameterization chose them; a mixed level not given there is split from these data.
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
        data[term.values_key] = encoded.slopes[term.name]
    for sub in desc.submodels:  # a sub-model's design centered (its intercept at the means), slope values
        if sub.terms:
            design = encoded.sub_designs[sub.stan]
            means = design.mean(axis=0)
            data[sub.size_key] = design.shape[1]
            data[sub.design_key] = design - means
            data[sub.means_key] = means
            for term in sub.terms:
                if term.categorical:
                    data[term.size] = len(columns[term.columns_key])
        for term in sub.slope_terms:
            data[term.values_key] = encoded.slopes[term.columns_key]
    labels, group_columns = {}, {}
    for level in desc.all_levels:
        info = encoded.levels[level.name]
        labels[level.name] = info["labels"]
        data[level.groups_key] = len(info["labels"])
        data[level.index_key] = info["index"]
        if level.uses_parent:
            parent = encoded.levels[level.parent]
            # every group of a nested level sits in one parent group (its label includes the parent's)
            parent_of = np.zeros(len(info["labels"]), dtype=int)
            parent_of[info["index"] - 1] = parent["index"]
            data[level.parent_key] = parent_of
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
            data[gp.center_key] = center if gp.categorical else float(center[0])
            group_columns[(level.name, gp.name)] = names
    mixed = [lv for lv in desc.levels if lv.mixed]
    if mixed:
        for level in mixed:
            given = (splits or {}).get(level.name)
            centered = np.asarray(given if given is not None else group_split(desc, data, level.name), dtype=int)
            rest = np.setdiff1d(np.arange(1, data[level.groups_key] + 1), centered)
            data[level.centered_count_key] = len(centered)
            data[level.centered_groups_key] = centered
            data[level.noncentered_groups_key] = rest
    if desc.cross_products:
        data.update(cross_product_data(desc, data))
    numbers, used = prior_values(desc, encoded) if priors else ({}, {})
    data.update(numbers)
    return PreparedData(data, labels, dict(columns), group_columns, priors=used,
                        term_scales=encoded.term_scales(desc), missing=encoded.missing, dropped=encoded.dropped,
                        sigma_labels=encoded.sigma_labels, outcome_categories=encoded.outcome_categories,
                        categories=encoded.categories)


def full_design(desc: ModelDescription, data: Mapping[str, Any]) -> sparse.csr_matrix:
    """C, the full design of a description written with cross-products (ModelDescription.design_blocks), from
    its other Stan data: C * theta is the linear predictor of every row."""
    n = int(data["N"])
    rows = np.arange(n)
    blocks = []
    for block in desc.design_blocks:
        if block.columns == "ones":
            blocks.append(sparse.csr_matrix(np.ones((n, 1))))
        elif block.columns == "X":
            blocks.append(sparse.csr_matrix(np.asarray(data["X"], dtype=float)))
        else:
            level = block.level
            values = np.ones(n)
            if block.slope_key is not None:
                values = np.asarray(data[block.slope_key], dtype=float)
                if level.at_means:  # as the program's transformed data centers them
                    values = values - values.mean()
            index = np.asarray(data[level.index_key]) - 1
            blocks.append(sparse.csr_matrix((values, (rows, index)), shape=(n, int(data[level.groups_key]))))
    return sparse.hstack(blocks, format="csr")


def cross_product_data(desc: ModelDescription, data: Mapping[str, Any]) -> dict[str, Any]:
    """The Stan data of a likelihood written with cross-products: C'C (diagonal, and the part above it in
    compressed rows, 1-based), C'y and y'y, C the full design (full_design)."""
    design = full_design(desc, data)
    y = np.asarray(data["y"], dtype=float)
    products = (design.T @ design).tocsr()
    above = sparse.triu(products, k=1, format="csr")
    above.sort_indices()
    return {"P": design.shape[1], "Cty": design.T @ y, "yty": float(y @ y),
            "CtC_diagonal": products.diagonal(), "CtC_nonzero": int(above.nnz), "CtC_w": above.data,
            "CtC_v": above.indices + 1, "CtC_u": above.indptr + 1}


def prepare(desc: ModelDescription, df: pd.DataFrame, *, prior_only: bool = False,
            missing: str = "error") -> PreparedData:
    """encode + write_stan_data: the data checked against the model, as Stan data. Raises DataError with
    every problem."""
    return write_stan_data(desc, encode(desc, df, missing=missing), prior_only=prior_only)
