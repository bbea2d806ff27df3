"""Choosing each level's parameterization (`parameterization: auto`) from the data, before compiling.

Sampling a level's group effects *centered* (the groups' coefficients are parameters, drawn around their
predicted values) mixes well when each group's data pin its coefficient down better than the group-level
distribution does; *noncentered* (standardized effects z, scaled by the sds) mixes well in the opposite
case (Papaspiliopoulos, Roberts & Sköld 2007: for a normal hierarchy the centered sampler's convergence
rate is (σ²/n)/(τ² + σ²/n), the noncentered one's τ²/(τ² + σ²/n), so centered wins when n·τ²/σ² > 1).

The rule, per level: estimate τ² (each varying coefficient's group variance) and σ² by a few sweeps of a
moment/EM estimator over all levels (a working normal model on the link scale for non-normal families);
compute for every group and coefficient the information ratio

    I_jc = τ_c² · (data precision about group j's coefficient c)

where the data precision is n_j/σ² for an intercept, Σ_i x_i²/σ² for a slope (x as the level multiplies
it), and, for a level whose groups contain groups of a nested level varying the same coefficient, the
precision of the children's mean (1 / (τ_child²/m_j + 1/precision)). The level is centered when the
median over groups of min_c I_jc exceeds THRESHOLD (1, where the two rates are equal).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import LevelDescription, ModelDescription

THRESHOLD = 1.0
SWEEPS = 30


@dataclass(frozen=True)
class Choice:
    level: str
    parameterization: str  # centered | noncentered
    how: str  # "auto" or "spec"
    information: float | None  # median over groups of the smallest information ratio (auto only)
    reason: str

    def to_dict(self) -> dict:
        return {"level": self.level, "parameterization": self.parameterization, "how": self.how,
                "information": self.information, "reason": self.reason}


def _working_response(desc: ModelDescription, data: dict) -> tuple[np.ndarray, np.ndarray, bool]:
    """(z, w, estimate_sigma): a normal working model z_i ~ N(eta_i, σ²/w_i) around the pooled fit."""
    y = np.asarray(data["y"], dtype=float)
    if desc.family == "gaussian":
        return y, np.ones_like(y), True
    if desc.family in ("bernoulli", "binomial"):
        n = np.asarray(data["trials"], dtype=float) if desc.family == "binomial" else np.ones_like(y)
        p = np.clip(y.sum() / max(n.sum(), 1.0), 0.02, 0.98)
        w = np.maximum(n, 1.0) * p * (1 - p)
        return np.log(p / (1 - p)) + (y - n * p) / np.maximum(n, 1.0) / (p * (1 - p)), w, False
    rate = max(y.mean(), 0.05)  # poisson
    return np.log(rate) + (y - rate) / rate, np.full_like(y, rate), False


def _design(level: LevelDescription, data: dict, n: int) -> np.ndarray:
    """The values each varying coefficient multiplies at this level (N × q)."""
    columns = []
    for c in level.coefficients:
        if c.term is None:
            columns.append(np.ones(n))
        else:
            x = np.asarray(data[f"x_{c.term.stan}"], dtype=float)
            columns.append(x - x.mean() if level.at_means else x)
    return np.column_stack(columns)


def information(desc: ModelDescription, data: dict) -> dict[str, np.ndarray]:
    """Level → information ratios I_jc (groups × coefficients), from a quick moment/EM fit."""
    z, w, estimate_sigma = _working_response(desc, data)
    n = len(z)
    # pooled part: weighted least squares on the intercept and the design matrix
    base = [np.ones(n)] if desc.intercept else []
    if "X" in data and np.size(data["X"]):
        base.append(np.asarray(data["X"], dtype=float).reshape(n, -1))
    if base:
        pooled = np.column_stack(base)
        coef, *_ = np.linalg.lstsq(pooled * np.sqrt(w)[:, None], z * np.sqrt(w), rcond=None)
        resid = z - pooled @ coef
    else:
        resid = z.copy()
    sigma2 = float(np.average(resid ** 2, weights=w)) if estimate_sigma else 1.0
    levels = desc.levels
    designs = {lv.name: _design(lv, data, n) for lv in levels}
    index = {lv.name: np.asarray(data[f"idx_{lv.stan}"], dtype=int) - 1 for lv in levels}
    size = {lv.name: int(data[f"J_{lv.stan}"]) for lv in levels}
    fitted = {lv.name: np.zeros(n) for lv in levels}
    tau = {}
    for lv in levels:
        # start small: a tenth of the residual variance, on each coefficient's scale
        scale = np.mean(designs[lv.name] ** 2, axis=0)
        tau[lv.name] = np.diag(0.1 * max(np.var(resid), 1e-12) / np.maximum(scale, 1e-12))
    precision, uncertainty = {}, {}
    for _ in range(SWEEPS):
        for lv in levels:
            Z, j, J = designs[lv.name], index[lv.name], size[lv.name]
            q = Z.shape[1]
            partial = resid - sum(fitted[o.name] for o in levels if o.name != lv.name)
            # per group: A_j = Σ w z zᵀ / σ², c_j = Σ w z r / σ²
            A = np.zeros((J, q, q))
            for a in range(q):
                for b in range(a, q):
                    A[:, a, b] = A[:, b, a] = np.bincount(j, w * Z[:, a] * Z[:, b], minlength=J) / sigma2
            cvec = np.column_stack([np.bincount(j, w * Z[:, a] * partial, minlength=J) for a in range(q)]) / sigma2
            prior_precision = np.linalg.inv(tau[lv.name] + 1e-12 * np.eye(q))
            V = np.linalg.inv(A + prior_precision[None])
            mean = np.einsum("jab,jb->ja", V, cvec)
            fitted[lv.name] = np.einsum("ia,ia->i", Z, mean[j])
            tau[lv.name] = (np.einsum("ja,jb->ab", mean, mean) + V.sum(axis=0)) / J + 1e-10 * np.eye(q)
            precision[lv.name] = A
            uncertainty[lv.name] = float(np.einsum("jab,jba->", A, V)) * sigma2  # Σ_j tr(Z_jᵀWZ_j V_j)
        if estimate_sigma:  # EM: the residuals' mean square plus what the effects' uncertainty hides
            r = resid - sum(fitted.values())
            sigma2 = max(float((np.sum(w * r ** 2) + sum(uncertainty.values())) / np.sum(w)), 1e-12)
    out = {}
    for lv in levels:
        A = precision[lv.name]  # data precision about each group's coefficients (given the others)
        data_precision = np.diagonal(A, axis1=1, axis2=2).copy()
        for child in levels:  # a nested child varying the same coefficient adds its spread to the noise
            if child.parent != lv.name:
                continue
            parent_of = np.zeros(size[child.name], dtype=int)
            parent_of[index[child.name]] = index[lv.name]
            m = np.bincount(parent_of, minlength=size[lv.name]).astype(float)
            for k, c in enumerate(lv.coefficients):
                kc = next((i for i, o in enumerate(child.coefficients) if o.name == c.name), None)
                if kc is None:
                    continue
                child_var = tau[child.name][kc, kc]
                with np.errstate(divide="ignore"):
                    data_precision[:, k] = 1.0 / (child_var / np.maximum(m, 1.0) + 1.0 / np.maximum(
                        data_precision[:, k], 1e-300))
        out[lv.name] = np.diagonal(tau[lv.name])[None, :] * data_precision
    return out


def choose(desc: ModelDescription, data: dict, spec_levels) -> dict[str, Choice]:
    """Each level's parameterization: the spec's when it names one, else decided from the data."""
    auto = [lv for lv in desc.levels if spec_levels[lv.name].parameterization == "auto"]
    ratios = information(desc, data) if auto else {}
    out = {}
    for lv in desc.levels:
        given = spec_levels[lv.name].parameterization
        if given != "auto":
            out[lv.name] = Choice(lv.name, given, "spec", None, "set in the spec")
            continue
        value = float(np.median(ratios[lv.name].min(axis=1)))
        centered = value > THRESHOLD
        weakest = lv.coefficients[int(np.argmin(np.median(ratios[lv.name], axis=0)))].name
        reason = (f"median information ratio n·τ²/σ² = {value:.2g} ({'above' if centered else 'at or below'} "
                  f"{THRESHOLD:g}{'' if lv.n_coef == 1 else f'; weakest coefficient: {weakest}'}): "
                  f"{'groups are data-rich' if centered else 'groups are data-poor'}")
        out[lv.name] = Choice(lv.name, "centered" if centered else "noncentered", "auto", value, reason)
    return out
