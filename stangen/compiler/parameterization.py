"""Choosing each level's parameterization (`parameterization: auto`) from the data, before compiling.

Sampling a level's group effects *centered* (the groups' coefficients are parameters, drawn around their
predicted values) mixes well when each group's data pin its coefficient down better than the group-level
distribution does; *noncentered* (standardized effects z, scaled by the sds) mixes well in the opposite
case (Papaspiliopoulos, Roberts & Sköld 2007: for a normal hierarchy the centered sampler's convergence
rate is (σ²/n)/(τ² + σ²/n), the noncentered one's τ²/(τ² + σ²/n), so centered wins when n·τ²/σ² > 1).

The rule, per level: estimate τ² (each varying coefficient's group variance, around the coefficient its
group-level predictors predict) and σ² by a few sweeps of a moment/EM estimator over all levels; compute
for every group and coefficient the information ratio

    I_jc = τ_c² · (data precision about group j's coefficient c)

where the data precision is n_j/σ² for an intercept, Σ_i x_i²/σ² for a slope (x as the level multiplies
it; each row weighted by its Fisher information for a non-normal family, see below), and, for a level whose groups contain groups of a nested level varying the same coefficient, the
precision of the children's mean (1 / (τ_child²/m_j + 1/precision)). The level is centered when the
median over groups of min_c I_jc exceeds THRESHOLD (1, where the two rates are equal).

Non-normal families: the working model is z_i ~ N(η_i, 1/I_i), with I_i the Fisher information of row i's
density about its linear predictor and z_i = η_i + U_i/I_i (U_i its score), the family's other parameters
(φ, shape) estimated by moments of the residuals (each family's `working_response`,
stangen/core/families.py). Fisher scoring repeats the EM fit at the linear predictor the previous pass
fitted, pooled part and group effects together (penalized quasi-likelihood), until the group variances
settle. Measured (tests/test_parameterization.py, 400 groups each): within 20% of the true ratio for
Poisson, NB, gamma and beta, 24–29% under for Bernoulli, binomial and ordinal data (PQL's known shrinkage
of τ² for binary data); the moment fit of the pooled data that came before was up to 5.6× under (ordinal)
and 2× under (NB, gamma, beta), and took epilepsy (NB) for data-poor (0.077) where it is data-rich (3.1).

A level with few groups may not be decidable: its τ² is then so uncertain that the posterior holds both
regions, where centered groups sit in a funnel and where noncentered ones lie along a curved ridge. The
90% interval of the information ratio is (1 + I)·(J − 1)/χ²_{J−1} − 1 (the between-group mean square of J
balanced groups is (τ² + σ²/n)·χ²_{J−1}/(J − 1)); when it reaches below THRESHOLD/2 and above 2·THRESHOLD,
the level is *undecided*: it keeps the form its estimate points to, and the sampler's adapt_delta is raised
to UNDECIDED_ADAPT_DELTA (0.9) unless the spec or the caller sets it. Measured on pastes with its batch
level noncentered (batch: I = 0.4 from 10 batches, interval 0–2.8): at adapt_delta 0.8, 10 of 20 seeds gave
divergences (20 in all, at large sd_batch); at 0.9, 1 of 60 (one divergence); at 0.95, 2 of 60. (Pastes'
batch level is now integrated out instead, see _integrate_parents: 0 of 60 at 0.8.)

Crossed levels: the pooled intercept becomes the mean of one centered level's groups, the one whose groups'
mean is least certain (largest τ²/J); another centered crossed level is drawn around 0, which is fine
while its τ²/J is at most RIDGE (1/4) of that level's — otherwise the two means trade off along a ridge,
and the crossed levels are sampled noncentered.

Coefficients of one level that disagree (a data-rich intercept, a data-poor slope): the level is sampled
*partial*, its leading data-rich coefficients centered and the rest noncentered given them (see
_leading_data_rich; model.LevelDescription.centered_coefficients). Nested levels: the working fit splits
the intercept variance between child and parent by within-parent moments (_child_variance), and a pair
whose parents often hold a single child is sampled noncentered (_single_child_ridges).

Correlated errors: in a gaussian model with AR(1)/CAR(1) errors, the level whose groups are the series is
integrated out of the likelihood (_integrate_series): its effects would trade off against σ and φ.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.stats import chi2

from ..spec.validate import marginal_level_name
from .model import CENTERED_FORMS, LevelDescription, ModelDescription, integrable_child

THRESHOLD = 1.0
SWEEPS = 30
# Fisher scoring in the working fit stops when no group covariance moves by more than this fraction
SCORING_TOLERANCE = 0.01
# a nested level's variance is split from its parent's by moments when this many parents hold two of its groups
MIN_PARENTS = 5
# a nested pair is sampled noncentered when at least this share of the parent's groups hold one child group
SINGLE_CHILD_SHARE = 0.25
# an undecided level's interval reaches below THRESHOLD / UNDECIDED_FACTOR and above THRESHOLD * UNDECIDED_FACTOR
UNDECIDED_FACTOR = 2.0
UNDECIDED_ADAPT_DELTA = 0.9
# a sampled level of fewer groups than this: its sd's posterior has long tails (the prior holds them), where a
# chain diverges whichever form the effects take; sampled at FEW_GROUPS_ADAPT_DELTA (rstanarm's stan_glmer
# default for every model; legislators' 8 and 6 groups: 8 of 8 seeds pass at 0.95, 8 of 9 at 0.8;
# benchmarks/RESULTS.md, "Few groups")
FEW_GROUPS = 10
FEW_GROUPS_ADAPT_DELTA = 0.95


@dataclass(frozen=True)
class Choice:
    level: str
    parameterization: str  # centered | noncentered
    how: str  # "auto" or "spec"
    information: float | None  # median over groups of the smallest information ratio (auto only)
    reason: str
    # the order in which centered levels are offered the pooled coefficients as their groups' mean
    # (0 first): by decreasing τ²/J (see model._link_levels)
    pooled_rank: int = 0
    # 90% interval of the information ratio, from the number of groups (auto only)
    interval: tuple[float, float] | None = None
    # the level the spec crosses this one with, but whose groups each hold all of this level's rows of a
    # group (lecturers within departments): sampled as nested there (see implied_nesting)
    nested_in: str | None = None
    # mixed: the groups (1-based) sampled centered; the others are noncentered
    centered_groups: tuple[int, ...] | None = None
    # partial: how many of the level's first coefficients are sampled centered; the others are noncentered
    centered_coefficients: int | None = None
    # partial: the level's coefficients' names (for the label)
    coefficient_names: tuple[str, ...] | None = None
    groups: int | None = None  # how many groups the data hold (None: decided without data)

    @property
    def label(self) -> str:
        """'d centered within dept': the level, its form and an implied parent."""
        return f"{self.level} {self.form}"

    @property
    def form(self) -> str:
        """'centered within dept', 'partial (intercept centered; x noncentered)': the form, its split and an
        implied parent."""
        split = ""
        if self.parameterization == "mixed" and self.centered_groups is not None:
            split = f" ({len(self.centered_groups)} groups centered, the others noncentered)"
        if self.parameterization == "partial" and self.centered_coefficients and self.coefficient_names:
            k = self.centered_coefficients
            split = (f" ({', '.join(self.coefficient_names[:k])} centered; "
                     f"{', '.join(self.coefficient_names[k:])} noncentered)")
        return f"{self.parameterization}{split}" + (f" within {self.nested_in}" if self.nested_in else "")

    @property
    def undecided(self) -> bool:
        """The data cannot tell whether this level is data-rich or data-poor (see the module docstring)."""
        return bool(self.how == "auto" and self.parameterization != "integrated" and self.interval is not None
                    and self.interval[0] < THRESHOLD / UNDECIDED_FACTOR
                    and self.interval[1] > THRESHOLD * UNDECIDED_FACTOR)

    @property
    def few_groups(self) -> bool:
        """A sampled level of fewer than FEW_GROUPS groups (an integrated level's effects are not sampled)."""
        return self.groups is not None and self.groups < FEW_GROUPS and self.parameterization != "integrated"

    def to_dict(self) -> dict:
        return {"level": self.level, "parameterization": self.parameterization, "how": self.how,
                "information": self.information, "reason": self.reason, "pooled_rank": self.pooled_rank,
                "interval": None if self.interval is None else list(self.interval), "nested_in": self.nested_in,
                "centered_groups": None if self.centered_groups is None else list(self.centered_groups),
                "centered_coefficients": self.centered_coefficients,
                "coefficient_names": None if self.coefficient_names is None else list(self.coefficient_names),
                "groups": self.groups}

    @classmethod
    def from_dict(cls, values: dict) -> "Choice":
        values = dict(values)
        for key in ("interval", "centered_groups", "coefficient_names"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def information_interval(ratio: float, groups: int, level: float = 0.9) -> tuple[float, float]:
    """Interval for a level's information ratio n·τ²/σ² estimated from `groups` groups: the between-group
    mean square is (τ² + σ²/n)·χ²_{J−1}/(J − 1), so (1 + I) is known up to that factor."""
    df = max(groups - 1, 1)
    tail = (1 - level) / 2
    low, high = ((1 + ratio) * df / chi2.ppf(q, df) - 1 for q in (1 - tail, tail))
    return float(max(low, 0.0)), float(high)


def suggested_adapt_delta(choices) -> float | None:
    """adapt_delta to sample with when the spec and the caller leave it open: raised when a level has few
    groups, or is undecided."""
    if any(c.few_groups for c in choices):
        return FEW_GROUPS_ADAPT_DELTA
    return UNDECIDED_ADAPT_DELTA if any(c.undecided for c in choices) else None


def _working_response(desc: ModelDescription, data: dict, eta: np.ndarray | None,
                      cells: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """(z, w, estimate_sigma): a normal working model z_i ~ N(η_i, σ²/w_i), by the family's Fisher scoring at
    the linear predictor `eta` (None: the pooled start; stangen/core/families.py), its dispersion from the
    residuals within `cells` (_cells)."""
    y = np.asarray(data["y"], dtype=float)
    trials = np.asarray(data["trials"], dtype=float) if "trials" in data else None
    # the working model is of the linear predictor without the offset (its coefficient is fixed at 1), each
    # row's precision times its likelihood weight
    offsets = np.asarray(data["offsets"], dtype=float) if "offsets" in data else 0.0
    z, w, estimate_sigma = desc.family.working_response(y, trials, None if eta is None else eta + offsets, cells)
    if "weights" in data:
        w = w * np.asarray(data["weights"], dtype=float)
    return z - offsets, w, estimate_sigma


def _cells(desc: ModelDescription, data: dict) -> np.ndarray | None:
    """Each row's cell: its combination of groups over all levels (numbered from 0), or None without levels."""
    if not desc.levels:
        return None
    index = np.column_stack([np.asarray(data[lv.index_key], dtype=int) for lv in desc.levels])
    return np.unique(index, axis=0, return_inverse=True)[1].ravel()


def _group_predictor_columns(desc: ModelDescription, data: dict, n: int) -> list[np.ndarray]:
    """Each group-level predictor's values on the rows (times the slope's values for a slope's predictor): in
    the working fit's pooled part, so that τ² is the groups' spread around their predicted coefficients,
    which is what the sampler's group effects are."""
    columns = []
    for lv in desc.levels:
        index = np.asarray(data[lv.index_key], dtype=int) - 1
        design = level_design(lv, data, n)
        for k, c in enumerate(lv.coefficients):
            for e in c.effects:
                values = np.asarray(data[e.predictor.data], dtype=float).reshape(int(data[lv.groups_key]), -1)
                columns.extend(values[index, m] * design[:, k] for m in range(values.shape[1]))
    return columns


def level_design(level: LevelDescription, data: dict, n: int) -> np.ndarray:
    """The values each varying coefficient multiplies at this level (N × q)."""
    columns = []
    for c in level.coefficients:
        if c.term is None:
            columns.append(np.ones(n))
        else:
            x = np.asarray(data[c.term.values_key], dtype=float)
            columns.append(x - x.mean() if level.at_means else x)
    return np.column_stack(columns)


def information(desc: ModelDescription, data: dict) -> dict[str, np.ndarray]:
    """Level → information ratios I_jc (groups × coefficients), from a quick moment/EM fit."""
    return estimate(desc, data)[0]


@dataclass(frozen=True)
class WorkingFit:
    """The quick moment/EM fit of the working normal model: what the information ratios, and a large fit's
    initial metric (stangen/run/warmup.py), are computed from."""
    ratios: dict[str, np.ndarray]  # level → information ratios I_jc (groups × coefficients)
    uncertainty: dict[str, float]  # level → τ²/J of its first coefficient (how uncertain its groups' mean is)
    sigma2: float  # the working residual variance (1 for families without one)
    tau: dict[str, np.ndarray]  # level → the group-level covariance of its coefficients (q × q)
    group_variance: dict[str, np.ndarray]  # level → each group's coefficient variances given the data (J × q)
    # the pooled part's coefficients are [intercept,] X's columns, then the group-level predictors' effects in
    # _group_predictor_columns' order (level, coefficient, effect, column): their σ²·diag((BᵀWB)⁻¹) ...
    pooled_variance: np.ndarray
    weight: float  # Σ w, the working observations' total weight
    pooled: np.ndarray  # ... and their estimates (where stangen/compiler/start.py starts the chains)
    working_residual: np.ndarray | None = None  # each row's working response less its fitted linear predictor


def estimate(desc: ModelDescription, data: dict) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """(information ratios per level, τ²/J of each level's first coefficient: how uncertain the mean of its
    groups is) from a quick moment/EM fit."""
    fit = working_fit(desc, data)
    return fit.ratios, fit.uncertainty


def working_fit(desc: ModelDescription, data: dict) -> WorkingFit:
    """The quick moment/EM fit of the working normal model (see the module docstring): for a family whose
    working response depends on the linear predictor, a few passes of Fisher scoring, each at the linear
    predictor the previous pass fitted (pooled part and group effects: penalized quasi-likelihood)."""
    cells = _cells(desc, data)
    z, w, estimate_sigma = _working_response(desc, data, None, cells)
    fit, eta = _working_pass(desc, data, z, w, estimate_sigma)
    for _ in range(desc.family.working_steps - 1):
        before = fit
        z, w, estimate_sigma = _working_response(desc, data, eta, cells)
        fit, eta = _working_pass(desc, data, z, w, estimate_sigma, start=before.tau)
        if all(np.allclose(fit.tau[lv], before.tau[lv], rtol=SCORING_TOLERANCE, atol=0) for lv in fit.tau):
            break
    return replace(fit, working_residual=np.asarray(z, dtype=float) - eta)


def _working_pass(desc: ModelDescription, data: dict, z: np.ndarray, w: np.ndarray, estimate_sigma: bool,
                  start: dict[str, np.ndarray] | None = None) -> tuple[WorkingFit, np.ndarray]:
    """One EM fit of z_i ~ N(η_i, σ²/w_i), from the group covariances `start` (None: small ones): the
    working fit, and its linear predictor η (pooled part and group effects)."""
    n = len(z)
    # pooled part: weighted least squares on the intercept, the design matrix and the group-level predictors
    base = [np.ones(n)] if desc.spans_intercept else []
    if "X" in data and np.size(data["X"]):
        base.append(np.asarray(data["X"], dtype=float).reshape(n, -1))
    base.extend(_group_predictor_columns(desc, data, n))
    if base:
        pooled = np.column_stack(base)
        coef, *_ = np.linalg.lstsq(pooled * np.sqrt(w)[:, None], z * np.sqrt(w), rcond=None)
        resid = z - pooled @ coef
        unscaled = np.diagonal(np.linalg.pinv((pooled * w[:, None]).T @ pooled))
    else:
        coef = np.zeros(0)
        resid = z.copy()
        unscaled = np.zeros(0)
    sigma2 = float(np.average(resid ** 2, weights=w)) if estimate_sigma else 1.0
    levels = desc.levels
    designs = {lv.name: level_design(lv, data, n) for lv in levels}
    index = {lv.name: np.asarray(data[lv.index_key], dtype=int) - 1 for lv in levels}
    size = {lv.name: int(data[lv.groups_key]) for lv in levels}
    fitted = {lv.name: np.zeros(n) for lv in levels}
    tau = dict(start) if start is not None else {}
    for lv in levels if start is None else ():
        # start small: a tenth of the residual variance, on each coefficient's scale
        scale = np.mean(designs[lv.name] ** 2, axis=0)
        tau[lv.name] = np.diag(0.1 * max(np.var(resid), 1e-12) / np.maximum(scale, 1e-12))
    precision, hidden, group_variance = {}, {}, {}
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
            group_variance[lv.name] = np.diagonal(V, axis1=1, axis2=2).copy()
            hidden[lv.name] = float(np.einsum("jab,jba->", A, V)) * sigma2  # Σ_j tr(Z_jᵀWZ_j V_j)
        if estimate_sigma:  # EM: the residuals' mean square plus what the effects' uncertainty hides
            r = resid - sum(fitted.values())
            sigma2 = max(float((np.sum(w * r ** 2) + sum(hidden.values())) / np.sum(w)), 1e-12)
    data_precision = {}
    for lv in levels:
        A = precision[lv.name]  # data precision about each group's coefficients (given the others)
        data_precision[lv.name] = np.diagonal(A, axis1=1, axis2=2).copy()
        for child in levels:  # a nested child varying the same coefficient adds its spread to the noise
            if child.parent != lv.name:
                continue
            parent_of = _parent_groups(index[child.name], index[lv.name], size[child.name])
            m = np.bincount(parent_of, minlength=size[lv.name]).astype(float)
            # the intercepts' variances split between the two levels by moments of the children's means
            partial = resid - sum(fitted[o.name] for o in levels if o.name not in (lv.name, child.name))
            means = _child_means(partial, w, index[child.name], parent_of)
            for k, c in enumerate(lv.coefficients):
                kc = next((i for i, o in enumerate(child.coefficients) if o.name == c.name), None)
                if kc is None:
                    continue
                if c.term is None:
                    within = _child_variance(means, parent_of, sigma2)
                    if within is not None:
                        tau[child.name][kc, kc] = within
                child_var = tau[child.name][kc, kc]
                with np.errstate(divide="ignore"):
                    data_precision[lv.name][:, k] = 1.0 / (child_var / np.maximum(m, 1.0) + 1.0 / np.maximum(
                        data_precision[lv.name][:, k], 1e-300))
                if c.term is None:
                    tau[lv.name][k, k] = _parent_variance(means, parent_of, child_var, sigma2)
    out = {lv.name: np.diagonal(tau[lv.name])[None, :] * data_precision[lv.name] for lv in levels}
    fit = WorkingFit(out, {lv.name: float(tau[lv.name][0, 0]) / size[lv.name] for lv in levels}, sigma2, tau,
                     group_variance, sigma2 * unscaled, float(np.sum(w)), coef)
    return fit, z - resid + sum(fitted.values(), np.zeros(n))


def _parent_groups(child_index: np.ndarray, parent_index: np.ndarray, children: int) -> np.ndarray:
    """Each child group's parent group (0-based), from the rows' 0-based group indices of the two levels."""
    parent_of = np.zeros(children, dtype=int)
    parent_of[child_index] = parent_index
    return parent_of


def _child_means(partial, w, child_index, parent_of) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(each child group's weight, its weighted mean of `partial`, each parent group's number of children, its
    mean of its children's means): what both nested variances' moment estimates start from."""
    n_child = np.bincount(child_index, weights=w)
    child_mean = np.bincount(child_index, weights=w * partial) / np.maximum(n_child, 1e-300)
    m = np.bincount(parent_of, minlength=parent_of.max() + 1).astype(float)
    parent_mean = np.bincount(parent_of, weights=child_mean, minlength=len(m)) / np.maximum(m, 1.0)
    return n_child, child_mean, m, parent_mean


def _child_variance(means, parent_of, sigma2) -> float | None:
    """Moment estimate of a nested level's intercept variance from the spread of its groups' means within
    their parent groups (those holding two or more): E[Σ_c (mean_c − mean_p)²] = (m_p − 1)(τ² + σ²/n_c).
    The EM sweeps alone split the two levels' variance badly when parents hold one or two children
    (simulated ticks, 2 broods per location: brood 0.60 and location 0.13 for 0.36 and 0.64). None when
    fewer than MIN_PARENTS parents hold two children. `means`: _child_means."""
    n_child, child_mean, m, parent_mean = means
    if np.sum(m >= 2) < MIN_PARENTS:
        return None
    shared = m[parent_of] >= 2  # children with a sibling
    between = float(np.sum((child_mean - parent_mean[parent_of])[shared] ** 2) / np.sum(m[m >= 2] - 1))
    noise = float(np.mean(sigma2 / np.maximum(n_child[shared], 1e-300)))
    return max(between - noise, 1e-10)


def _parent_variance(means, parent_of, child_var, sigma2) -> float:
    """Moment estimate of a parent level's intercept variance from its children's means: the variance of the
    parents' means of child means, less what the children's spread and the residual put into it. (The EM
    sweeps above treat the levels one at a time and let the children soak up the parent's variance.)
    `means`: _child_means."""
    n_child, _, m, parent_mean = means
    noise = np.bincount(parent_of, weights=child_var + sigma2 / np.maximum(n_child, 1e-300),
                        minlength=len(m)) / np.maximum(m, 1.0) ** 2
    return float(max(np.var(parent_mean, ddof=1) - noise.mean(), 1e-10))


def implied_nesting(desc: ModelDescription, data: dict, spec_levels) -> dict[str, str]:
    """Levels the spec crosses whose groups lie within another level's groups in the data: level → that
    level (the one with the most groups, when several contain it).

    `(1 | d) + (1 | dept)` with every lecturer d in one department is the model of d nested in dept: the same
    likelihood and priors (u_d ~ N(0, τ_d) plus v_dept is θ_d ~ N(v_dept, τ_d)). Crossed, the sampler sees
    the intercept, the department effects and the lecturer effects trade off along a ridge (InstEval: max
    R-hat 2.98, sd(dept) 1.64 against lme4's 0.083); nested, each lecturer is drawn around its department and
    each department around the intercept. Only levels whose sampling is left to stangen (`auto`) are
    rearranged; labels stay the level's own (they are unique: each sits in one parent)."""
    top = [lv for lv in desc.levels if lv.parent is None and spec_levels[lv.name].parameterization == "auto"]
    index = {lv.name: np.asarray(data[lv.index_key], dtype=int) - 1 for lv in top}
    size = {lv.name: int(data[lv.groups_key]) for lv in top}
    out: dict[str, str] = {}
    for child in top:
        containing = []
        for parent in top:
            if parent is child or size[parent.name] >= size[child.name]:
                continue
            first = _parent_groups(index[child.name], index[parent.name], size[child.name])  # one per child group
            if np.array_equal(first[index[child.name]], index[parent.name]):
                containing.append(parent)
        if containing:
            out[child.name] = max(containing, key=lambda lv: size[lv.name]).name
    return out


def _nested_view(desc: ModelDescription, nesting: dict[str, str]) -> ModelDescription:
    """The description with the implied nesting (parents, ancestors), for estimating and choosing."""
    if not nesting:
        return desc
    parent = {lv.name: nesting.get(lv.name, lv.parent) for lv in desc.levels}

    def ancestors(name):
        chain, p = [], parent[name]
        while p is not None:
            chain.insert(0, p)
            p = parent[p]
        return tuple(chain)

    return replace(desc, levels=tuple(replace(lv, parent=parent[lv.name], ancestors=ancestors(lv.name),
                                              unique_labels=lv.unique_labels or lv.name in nesting)
                                      for lv in desc.levels))


# a level's groups are sampled each in its own form (mixed) when at least MIXED_SHARE of them are clearly
# data-poor (information ratio below THRESHOLD / MIXED_MARGIN) and as many clearly data-rich (above
# THRESHOLD * MIXED_MARGIN), among at least MIXED_MIN_GROUPS groups (fewer leave τ² too uncertain to tell a
# group's side). Groups near THRESHOLD mix about as well either way, and a level mostly near it is better
# left in one form: InstEval's students (29% below 1 but only 4% below 1/2) sampled mixed took 81 s of warmup
# per chain against 50 s centered, at the same sampling cost (benchmarks/RESULTS.md).
MIXED_SHARE = 0.1
MIXED_MARGIN = 2.0
MIXED_MIN_GROUPS = 20


def group_split(desc: ModelDescription, data: dict, level: str) -> tuple[int, ...]:
    """The groups of a mixed level to sample centered, computed from the data (see _centered_groups)."""
    return _centered_groups(information(desc, data)[level][:, 0])


def _leading_data_rich(per_coefficient: np.ndarray) -> int:
    """How many of a level's first coefficients are data-rich (median information ratio above THRESHOLD):
    the ones a partial level samples centered. (Centering the first k keeps the rest a standardized
    Cholesky block given them, so only a leading run can be centered.)"""
    k = 0
    while k < len(per_coefficient) and per_coefficient[k] > THRESHOLD:
        k += 1
    return k


def _centered_groups(ratios: np.ndarray) -> tuple[int, ...]:
    """The groups (1-based) of a mixed level to sample centered: those whose information ratio exceeds
    THRESHOLD."""
    return tuple(int(j) for j in np.flatnonzero(ratios > THRESHOLD) + 1)


def _spans_threshold(ratios: np.ndarray) -> bool:
    """A level holding both clearly data-poor and clearly data-rich groups."""
    return len(ratios) >= MIXED_MIN_GROUPS and np.mean(ratios < THRESHOLD / MIXED_MARGIN) >= MIXED_SHARE \
        and np.mean(ratios > THRESHOLD * MIXED_MARGIN) >= MIXED_SHARE


@dataclass(frozen=True)
class Decision:
    """Each level's parameterization, and the working fit it was decided from (None without data) with the
    description that fit was made on (every level noncentered, the data's implied nesting applied): where
    the sampler's starting point comes from too (stangen/compiler/start.py)."""
    choices: dict[str, Choice]
    working: WorkingFit | None
    view: ModelDescription


def decide(desc: ModelDescription, data: dict | None, spec_levels) -> Decision:
    """Each level's parameterization: the spec's when it names one, else decided from the data (without
    data: noncentered, and the pooled coefficients offered in the spec's order)."""
    nesting = implied_nesting(desc, data, spec_levels) if data is not None else {}
    desc = _nested_view(desc, nesting)
    working = working_fit(desc, data) if data is not None else None
    if working is None:
        ratios, uncertainty = {}, {lv.name: 0.0 for lv in desc.levels}
    else:
        ratios, uncertainty = working.ratios, working.uncertainty
    uncertainty = _with_nested(desc, uncertainty)
    order = sorted(desc.levels, key=lambda lv: -uncertainty[lv.name])
    rank = {lv.name: i for i, lv in enumerate(order)}
    out = {}
    for lv in desc.levels:
        given = spec_levels[lv.name].parameterization
        names = tuple(c.name for c in lv.coefficients)
        if given != "auto":
            split = leading = None
            if given == "mixed" and data is not None:
                split = _centered_groups(ratios[lv.name][:, 0])
            if given == "partial":
                leading = 1 if data is None else min(max(
                    _leading_data_rich(np.median(ratios[lv.name], axis=0)), 1), lv.n_coef - 1)
            out[lv.name] = Choice(lv.name, given, "spec", None, "set in the spec", rank[lv.name],
                                  centered_groups=split, centered_coefficients=leading,
                                  coefficient_names=names if given == "partial" else None)
            continue
        if data is None:
            out[lv.name] = Choice(lv.name, "noncentered", "auto", None, "no data to decide from: noncentered",
                                  rank[lv.name])
            continue
        value = float(np.median(ratios[lv.name].min(axis=1)))
        centered = value > THRESHOLD
        weakest = lv.coefficients[int(np.argmin(np.median(ratios[lv.name], axis=0)))].name
        reason = (f"median information ratio n·τ²/σ² = {value:.2g} ({'above' if centered else 'at or below'} "
                  f"{THRESHOLD:g}{'' if lv.n_coef == 1 else f'; weakest coefficient: {weakest}'}): "
                  f"{'groups are data-rich' if centered else 'groups are data-poor'}")
        out[lv.name] = Choice(lv.name, "centered" if centered else "noncentered", "auto", value, reason,
                              rank[lv.name], information_interval(value, len(ratios[lv.name])))
        per_coefficient = np.median(ratios[lv.name], axis=0)
        if lv.n_coef > 1 and lv.coefficients[0].term is None and per_coefficient[0] > THRESHOLD:
            # the slopes are never centered: a centered slope diverged where the standardized one did not,
            # at every ratio measured (sleepstudy's 4.1: 9 divergences in 12 seeds centered, none partial;
            # benchmarks/RESULTS.md, "Varying slopes: centered or standardized given the intercept")
            out[lv.name] = replace(out[lv.name], parameterization="partial", centered_coefficients=1,
                                   coefficient_names=names, reason=(
                f"median information ratios n·τ²/σ² {', '.join(f'{n} {r:.2g}' for n, r in zip(names, per_coefficient))}: "
                f"the intercept is data-rich (above {THRESHOLD:g}) and sampled centered, the slopes noncentered "
                "given it (slopes are not centered: centered, they diverged where standardized they did not)"))
        group_ratios = ratios[lv.name][:, 0]
        if lv.kind == "intercept" and _spans_threshold(group_ratios):
            split = _centered_groups(group_ratios)
            out[lv.name] = replace(out[lv.name], parameterization="mixed", centered_groups=split, reason=(
                f"information ratios n_j·τ²/σ² from {group_ratios.min():.2g} to {group_ratios.max():.2g} "
                f"(median {value:.2g}): the groups range from data-poor to data-rich, so each is sampled in its "
                f"own form: {len(split)} centered (ratio above {THRESHOLD:g}), {len(group_ratios) - len(split)} "
                "noncentered"))
    # integrate first: an integrated parent's nested level then holds the intercept in its place, and the
    # crossed-ridge rule weighs it against the other crossed levels
    out = _single_child_ridges(desc, out, data) if data is not None else out
    out = _integrate_series(desc, out, data) if data is not None else out
    out = _center_under_integrated(desc, _crossed_ridges(desc, _integrate_parents(desc, out), uncertainty))
    for name, parent in nesting.items():
        out[name] = replace(out[name], nested_in=parent, reason=(
            f"{out[name].reason}; sampled within {parent}: each {name} group lies within one {parent} group in "
            f"the data (the same model as crossed)"))
    for name, choice in out.items():
        if working is not None:
            out[name] = choice = replace(choice, groups=len(ratios[name]))
        if choice.few_groups:
            out[name] = choice = replace(choice, reason=(
                f"{choice.reason}; with {choice.groups} groups (fewer than {FEW_GROUPS}) its sd's posterior has "
                f"long tails, so adapt_delta is raised to {FEW_GROUPS_ADAPT_DELTA:g} (unless set)"))
        elif choice.undecided:
            out[name] = replace(choice, reason=(
                f"{choice.reason}; but with {len(ratios[name])} groups its 90% interval {choice.interval[0]:.2g}–"
                f"{choice.interval[1]:.2g} holds data-poor and data-rich values, so adapt_delta is raised to "
                f"{UNDECIDED_ADAPT_DELTA:g} (unless set)"))
    return Decision(out, working, desc)


def _with_nested(desc: ModelDescription, uncertainty: dict[str, float]) -> dict[str, float]:
    """How uncertain the mean of a level's group values is, nested levels below it included: a department's
    lecturers' mean moves with the department effects' mean and with their own (τ²/J of each)."""
    out = dict(uncertainty)

    def total(lv) -> float:
        return uncertainty[lv.name] + sum(total(child) for child in desc.levels if child.parent == lv.name)

    for lv in desc.levels:
        out[lv.name] = total(lv)
    return out


# a centered crossed level drawn around 0 stays centered only while the mean of its groups is this much
# better determined (in variance, τ²/J) than that of the level holding the pooled intercept
RIDGE = 0.25


def _crossed_ridges(desc: ModelDescription, choices: dict[str, Choice], uncertainty: dict[str, float]):
    """Crossed levels: only one centered level can have the pooled intercept as its groups' mean; another
    centered one is drawn around 0, and its groups' mean then trades off against the intercept. When that
    mean is about as uncertain as the intercept (few groups, large sd), the sampler crawls along the ridge
    (seen: legislators, 8 parties × 6 chambers); noncentered, it does not."""
    top = [lv for lv in desc.levels if lv.parent is None and lv.coefficients[0].term is None]
    # an integrated level counts as centered: its nested level is drawn around the intercept in its place
    centered = sorted((lv for lv in top if choices[lv.name].parameterization in (*CENTERED_FORMS, "integrated")),
                      key=lambda lv: choices[lv.name].pooled_rank)
    if not desc.intercept or len(centered) < 2:
        return choices
    taker = centered[0]
    ridges = [(lv, uncertainty[lv.name] / max(uncertainty[taker.name], 1e-300)) for lv in centered[1:]]
    ridges = [(lv, ratio) for lv, ratio in ridges if ratio > RIDGE]
    if not ridges:
        return choices
    # measured on legislators: noncentering the taker too mixes better than centering it alone
    # (min bulk ESS 1039 vs 438 for 4 x 1000 draws)
    other, ratio = ridges[0]
    for lv in centered:
        choice = choices[lv.name]
        if choice.how == "auto" and choice.parameterization in CENTERED_FORMS:
            choices[lv.name] = replace(choice, parameterization="noncentered", centered_groups=None,
                                       centered_coefficients=None, coefficient_names=None, reason=(
                f"{choice.reason}, but crossed levels {taker.name} and {other.name} have groups' means of "
                f"similar uncertainty (τ²/J ratio {ratio:.2g}, above {RIDGE:g}): centered, one of them would "
                f"trade off against the intercept along a ridge"))
    return choices


def _single_child_ridges(desc: ModelDescription, choices: dict[str, Choice], data: dict) -> dict[str, Choice]:
    """A nested level whose parent groups often hold a single one of its groups: there only the sum of the
    child's and the parent's intercepts is in the data, a ridge the centered forms sample along and the
    noncentered ones do not (their standardized effects' priors split the sum). Both levels noncentered
    when at least SINGLE_CHILD_SHARE of the parents hold one child. Measured on simulated ticks (a third of
    60 locations with one brood, 4 × 500 + 500, two seeds): both noncentered min ESS 442-460; brood centered
    within location centered 106-110, brood mixed within location centered 172-333; brood noncentered under
    a centered location 224-251."""
    for lv in desc.levels:
        if lv.parent is None or lv.coefficients[0].term is not None:
            continue
        parent = next(p for p in desc.levels if p.name == lv.parent)
        parent_of = _parent_groups(np.asarray(data[lv.index_key], dtype=int) - 1,
                                   np.asarray(data[parent.index_key], dtype=int) - 1, int(data[lv.groups_key]))
        share = float(np.mean(np.bincount(parent_of, minlength=int(data[parent.groups_key])) == 1))
        if share < SINGLE_CHILD_SHARE:
            continue
        for name in (lv.name, parent.name):
            choice = choices[name]
            if choice.how == "auto" and choice.parameterization != "noncentered":
                choices[name] = replace(choice, parameterization="noncentered", centered_groups=None,
                                        centered_coefficients=None, coefficient_names=None, reason=(
                    f"{choice.reason}; but {share:.0%} of the {parent.name} groups hold a single {lv.name} group, "
                    f"whose intercept only sums with its {parent.name}'s in the data: noncentered, the two are "
                    "not sampled along that ridge"))
    return choices


def _integrate_series(desc: ModelDescription, choices: dict[str, Choice], data: dict) -> dict[str, Choice]:
    """The level of a gaussian model's correlated error series (no level within it) is integrated out of the
    likelihood: each series is jointly normal, its effects' covariance added to the errors', and the effects
    are drawn afterwards given the data (model.LevelDescription.marginal). Sampled as parameters, they trade
    off against the errors' sd and φ (a group's slope and an AR process both bend its series), and neither
    form mixes. Measured on simulated wellbeing (150 people × up to 8 waves, AR(1), intercept and wave slope
    varying; 4 × 1000 + 1000, CmdStan, seed 2): min bulk ESS of the population parameters 1382 integrated,
    88 centered, 267 noncentered (benchmarks/RESULTS.md)."""
    name = marginal_level_name(desc.residuals.series_level, {lv.name: lv.parent for lv in desc.levels})
    if name is None or choices[name].how != "auto" or "series_rows" not in data:
        return choices
    choice = choices[name]
    choices[name] = replace(choice, parameterization="integrated", centered_groups=None, centered_coefficients=None,
                            coefficient_names=None, reason=(
        f"{choice.reason}; but {name} holds the series of the {desc.residuals.label} errors, so its effects are "
        "integrated out of the likelihood (each series jointly normal) and drawn afterwards given the data: they "
        "would trade off against sigma and phi as parameters"))
    return choices


def _integrate_parents(desc: ModelDescription, choices: dict[str, Choice]) -> dict[str, Choice]:
    """A data-poor intercept-only top level whose only nested level is a centered intercept-only level
    (pastes: 10 batches, 3 casks each) is integrated out: given the children's intercepts its effects are
    normal, so the program keeps only its sd and the children's intercepts, jointly normal within each
    parent group. Neither of its own forms is safe there: noncentered, its posterior reaches sds where the
    batches are data-rich (divergences at large sd_batch); centered, it has a funnel at small ones.
    The same for such a level that is undecided (too few groups to tell): InstEval's 14 departments over
    their lecturers, centered, gave 2 divergences in 4 × 1000 draws at adapt_delta 0.9."""
    for lv in desc.levels:
        choice, child = choices[lv.name], integrable_child(lv, desc.levels)
        if choice.how != "auto" or not (choice.parameterization == "noncentered" or choice.undecided) \
                or child is None or choices[child.name].parameterization != "centered":
            continue
        choices[lv.name] = replace(
            choice, parameterization="integrated", centered_groups=None,
            reason=f"{choice.reason}; its only nested level, {child.name}, is centered "
                   f"and varies only the intercept, so the {lv.name} effects are integrated out of the model "
                   f"(drawn afterwards, given the {child.name} intercepts): no {lv.name} effects to sample")
    return choices


def _center_under_integrated(desc: ModelDescription, choices: dict[str, Choice]) -> dict[str, Choice]:
    """The level nested in an integrated one carries its effects: its intercepts must be parameters."""
    for lv in desc.levels:
        choice = choices[lv.name]
        if lv.parent and choices[lv.parent].parameterization == "integrated" and choice.parameterization != "centered":
            if choice.how != "auto":  # the spec validation rules this out
                raise ValueError(f"{lv.name} is {choice.parameterization} under integrated {lv.parent} (stangen bug)")
            choices[lv.name] = replace(choice, parameterization="centered", centered_groups=None,
                                       centered_coefficients=None, coefficient_names=None, reason=(
                f"{choice.reason}; centered all the same: {lv.parent} is integrated out over its intercepts"))
    return choices


# the variance of log(χ²₁), the sampling variance of one row's log squared residual about its log σ²
LOG_CHI2_VARIANCE = np.pi ** 2 / 2
# the Fisher information of one normal observation about log σ
LOG_SIGMA_INFORMATION = 2.0


def residual_sd_spread(resid: np.ndarray, groups: np.ndarray) -> float:
    """A working estimate of the sd of log σ between the groups (a sub-model `sigma ~ (1 | g)`) from the
    working fit's residuals: the moments of the groups' mean log squared residual, less the sampling variance
    of such a mean (var log χ²₁ = π²/2 per row), halved from log σ² to log σ. 0 when the spread is within
    what sampling alone gives."""
    count = np.bincount(groups)
    if len(resid) < 4:
        return 0.0
    logs = np.log(np.maximum(resid ** 2, 1e-300))
    present = count > 0
    means = (np.bincount(groups, logs) / np.maximum(count, 1))[present]
    between = float(np.var(means, ddof=1)) if len(means) > 1 else 0.0
    noise = float(np.mean(LOG_CHI2_VARIANCE / count[present]))
    return float(np.sqrt(max(between - noise, 0.0))) / 2


def sub_model_centering(desc: ModelDescription, data: dict | None, spec,
                        working: WorkingFit | None = None) -> list[tuple[str, str]]:
    """The (parameter, level) pairs of sub-models (`parameters:`) to sample centered: those the spec sets
    centered, and under `auto` an intercept-only level of a residual sd's sub-model whose median group is
    data-rich, n_j · I · τ̂² > 1, with I = 2 (LOG_SIGMA_INFORMATION) and τ̂ a working estimate of
    the spread of log σ between the groups (residual_sd_spread of the `working` fit's residuals). Other
    sub-models' levels have no working estimate yet: noncentered. (SBC of benchmarks/specs/sbc_sigma.yaml, whose prior puts many sds near 0: a
    fixed guess of τ centered those too and gave divergences in half the fits; see benchmarks/RESULTS.md.)"""
    if data is None:
        return []
    out = []
    for sub in desc.submodels:
        for lv in sub.levels:
            setting = spec.parameters[sub.stan].levels[lv.name].parameterization
            if lv.kind == "intercept" and setting == "centered":
                out.append((sub.stan, lv.name))
            if lv.kind != "intercept" or setting != "auto" or sub.aux is not desc.family.residual_sd or \
                    working is None or working.working_residual is None:
                continue
            groups = np.asarray(data[lv.index_key]) - 1
            sizes = np.bincount(groups, minlength=int(data[lv.groups_key]))
            tau = residual_sd_spread(working.working_residual, groups)
            if float(np.median(sizes)) * LOG_SIGMA_INFORMATION * tau ** 2 > 1:
                out.append((sub.stan, lv.name))
    return out


def describe_options(choices) -> dict:
    """What `model.describe` needs of the choices: parameterization, pooled_order, nested."""
    return {"parameterization": {c.level: c.parameterization for c in choices},
            "pooled_order": pooled_order(choices),
            "nested": {c.level: c.nested_in for c in choices if c.nested_in},
            "partial": {c.level: c.centered_coefficients for c in choices if c.centered_coefficients}}


def pooled_order(choices) -> list[str]:
    """Level names in the order they are offered the pooled coefficients (model.describe's pooled_order)."""
    return [c.level for c in sorted(choices, key=lambda c: c.pooled_rank)]
