"""Families: everything about a likelihood in one object, one registry of them.

A `Family` owns its name and link; what a valid outcome is (with the row-naming error for each violation);
its auxiliary parameters (sigma …: Stan declaration, prior class and default, meaning); its Stan pieces (the
GLM function where Stan has one, else the vectorized lpdf/lpmf; the rng of y_rep; the pointwise
log-likelihood); and its numpy hooks (inverse link, random draws for `simulate`, the working response of the
`auto` parameterization (Fisher scoring at a linear predictor), the latent residual variance of ICC and
pooling). Nothing outside this module
compares a family's name: the rest of stangen asks the family (tests/test_families.py greps for it).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import special, stats

from .errors import Problem, SpecError
from .frames import is_numeric, label_text, rows_text, sort_labels

if TYPE_CHECKING:
    from ..fitting import Fit


@dataclass(frozen=True)
class AuxParameter:
    """A family's parameter besides the linear predictor."""

    name: str  # Stan name, prior key (`priors: {sigma: …}`) and the summary's name
    declaration: str  # its Stan type: "real<lower=0>"
    meaning: str  # in words: "residual sd"
    prior_class: str = "scale"  # spec/priors.py class: which prior families it takes
    # the default prior: (prior family, its numbers), as brms chooses them; None: exponential(1 / s_y)
    default_prior: tuple[str, tuple[float, ...]] | None = None
    size: str = ""  # a vector's Stan size (cutpoints: "K_cat - 1"); "" for a number
    shown: str = ""  # a vector's elements are shown as shown[label] (cutpoint[1|2]); "" for a number
    # a location on the linear predictor's scale (an ordinal model's cutpoints): with centered predictors the
    # sampler's parameter is <name>_centered, at the predictors' means, and <name> at 0 is derived from it
    moves_with_centering: bool = False
    brms_class: str = ""  # the same parameter's prior class in brms ("" = its name)
    # the link of a sub-model for it (`parameters:`): "log" for a positive parameter, "logit" for a probability;
    # "" where it cannot have one (nu, bounded below by 1; cutpoints)
    link: str = ""
    sub_model_title: str = "Dispersion model"  # the printout's block of its sub-model, as glmmTMB names it

    @property
    def sub_model(self) -> bool:
        """A linear predictor can take this parameter's place (`parameters: {<name>: …}`)."""
        return bool(self.link)


SIGMA = AuxParameter("sigma", "real<lower=0>", "residual sd", link="log")
# most passes of Fisher scoring for a family whose working response depends on the linear predictor (they
# stop earlier once the group variances settle: 4-9 on the example specs)
SCORING_STEPS = 25


@dataclass(frozen=True)
class Family:
    name: str
    link: str  # "identity" | "logit" | "log"
    aux: tuple[AuxParameter, ...] = ()
    takes_trials: bool = False  # binomial: `trials:` is required, and only here
    residual_structures: bool = False  # `residuals:` (correlated errors, sd_by) apply
    # Stan pieces: the vectorized density of `y | alpha` (GLM with X and beta when the model has pooled terms)
    glm_function: str = ""  # e.g. normal_id_glm
    density: str = ""  # e.g. normal (lpdf) or bernoulli_logit (lpmf)
    discrete: bool = False  # an integer outcome (lpmf, array[N] int)
    # the report's equations: y = linear predictor + ε (additive errors), else y ~ distribution(mean) with
    # link(mean) = linear predictor
    additive_errors: bool = False
    distribution: str = ""  # "Poisson"
    mean_symbol: str = "η"  # "λ"
    # the density's parameters after `y |` when they are not (linear predictor, auxiliary parameters…):
    # a format with {mu} and the auxiliary parameters' names, e.g. "{nu}, {mu}, {sigma}"
    arguments: str = ""
    # ordered categories (cumulative): `order:` applies, and K − 1 cutpoints replace the population intercept
    ordinal: bool = False
    mean_link: str = ""  # the report's equations: the link applied to mean_symbol ("" = link)
    brms: str = ""  # the same likelihood in brms (the benchmark's peer programs): "negbinomial()"
    # the R call of the usual maximum-likelihood peer: a format with {formula} (or {log_formula} on log(y),
    # {ordered_formula} with the outcome as an ordered factor); "" when lme4 & co. have no such family
    lme4_call: str = ""
    # stangen/run/warmup.py has an approximate posterior variance for each of its auxiliary parameters (gaussian:
    # log sigma, 1 / (2N)), so a large fit can start from an estimated metric
    working_metric: bool = False
    # most passes of Fisher scoring in the `auto` working fit: 1 where the working response does not depend on
    # the linear predictor (identity-link families), else until it settles (stangen/compiler/parameterization.py)
    working_steps: int = 1
    # the likelihood can be written with the design's cross-products instead of a pass over the rows (a normal
    # density with an identity link: its log is a quadratic in the coefficients); see cross_product_likelihood
    cross_products: bool = False
    # the GLM function takes its auxiliary parameter as a vector (one per observation: a sub-model's); Stan 2.35's
    # neg_binomial_2_log_glm takes only a number
    glm_vector_aux: bool = True
    # the distribution whose log CDFs a censored outcome uses ("normal", "poisson"; "" = censoring is not
    # defined), and its parameters as a format with {mu} and the auxiliary parameters ("" = the density's)
    cdf: str = ""
    cdf_arguments: str = ""
    # the CDFs take vectors: False where Stan 2.35's vectorized ones crash the sampler (poisson_lcdf and
    # poisson_lccdf with a vector of rates: signal 11, measured), so censoring and truncation sum row by row
    cdf_vectorized: bool = True
    # the outcome has no upper bound (counts, amounts, measurements): a prior-only fit's check flags predictions
    # far beyond the data's largest (stangen/results/prior_check.py); False for 0/1, shares and categories
    unbounded: bool = True

    def __str__(self) -> str:  # how a family is printed: its name, as the spec writes it
        return self.name

    # -- the program ----------------------------------------------------------------------------------
    @property
    def stan_link(self) -> str:
        """The link as the program's header names it ('' for identity)."""
        return "" if self.link == "identity" else self.link

    @property
    def y_rep_type(self) -> str:
        return "array[N] int" if self.discrete else "vector[N]"

    def data_lines(self, outcome: str, trials: str | None) -> list[str]:
        """The outcome's declarations in the data block (with comments in the spec's terms)."""
        return [f"array[N] int<lower=0> y;  // outcome: {outcome} (counts)"] if self.discrete else \
            [f"vector[N] y;  // outcome: {outcome}"]

    def _aux(self, aux: Mapping[str, str] | None) -> dict[str, str]:
        """Each auxiliary parameter's Stan expression: `aux` (from ModelDescription.aux_exprs: sigma may be per
        observation with `residuals: sd_by`, cutpoints the centered ones) or its own name."""
        return {a.name: (aux or {}).get(a.name, a.name) for a in self.aux}

    def _args(self, aux) -> str:
        return "".join(f", {value}" for value in self._aux(aux).values())

    def _params(self, mu: str, aux, given: str) -> str:
        """The density's parameters for the linear predictor `mu`."""
        if self.arguments:
            return self.arguments.format(mu=mu, **self._aux(aux))
        return f"{given}{mu}{self._args(aux)}"

    def density_params(self, mu: str, aux: Mapping[str, str] | None) -> str:
        """The density's parameters after `y |` for the linear predictor `mu` (families with trials take no
        censoring or truncation, the only callers)."""
        return self._params(mu, aux, "")

    def cdf_params(self, mu: str, aux: Mapping[str, str] | None) -> str:
        """The parameters of the family's CDF (Family.cdf) for the linear predictor `mu`."""
        if self.cdf_arguments:
            return self.cdf_arguments.format(mu=mu, **self._aux(aux))
        return self._params(mu, aux, "")

    def _given(self, rows: str = "") -> str:
        return f"trials{rows}, " if self.takes_trials else ""

    def likelihood(self, alpha: str, pooled: bool, aux: Mapping[str, str] | None = None) -> str:
        """`target += …` of all observations; `pooled`: with X * beta (through the GLM function where Stan
        has one). `alpha`: the rest of the linear predictor, "0" when there is none."""
        return f"target += {self.log_density_expr(alpha, pooled, aux)};"

    def log_density_expr(self, alpha: str, pooled: bool, aux: Mapping[str, str] | None = None,
                         rows: str = "") -> str:
        """The log density of y (unnormalized) as one expression: the likelihood's right side. `rows`
        ("[start:end]"): of a slice of the rows (reduce_sum), the per-observation data indexed by it."""
        kind = "lupmf" if self.discrete else "lupdf"
        per_row = getattr(aux, "per_row", frozenset())  # parameters with a value per observation (sub-models)
        if pooled and self.glm_function and (self.glm_vector_aux or not per_row):
            return f"{self.glm_function}_{kind}(y{rows} | {self._given(rows)}X{rows}, {alpha}, beta{self._args(aux)})"
        mu = (f"X{rows} * beta" if alpha == "0" else f"{alpha} + X{rows} * beta") if pooled else alpha
        return f"{self.density}_{kind}(y{rows} | {self._params(mu, aux, self._given(rows))})"

    def functions(self) -> tuple[str, ...]:
        """The Stan functions the family's pieces call: macros of templates/families.stan.j2, by name."""
        return ()

    def threading_problem(self) -> str | None:
        """Why threads within a chain cannot slice this family's likelihood by rows (None: they can)."""
        return None

    @property
    def outcome_argument(self) -> str:
        """The outcome's type as a function argument (reduce_sum's slice function takes y whole)."""
        return "array[] int" if self.discrete else "vector"

    def predictive_draws(self, eta: str, aux: Mapping[str, str] | None = None) -> str:
        """y_rep = … (a replicate of the outcome)."""
        draw = f"{self.density}_rng({self._params(eta, aux, self._given())})"
        return f"y_rep = {draw};" if self.discrete else f"y_rep = to_vector({draw});"

    def pointwise_log_likelihood(self, eta: str, i: str, aux: Mapping[str, str] | None = None) -> str:
        return f"log_lik[{i}] = {self.log_density_at(eta, i, aux)};"

    def log_density_at(self, eta: str, i: str, aux: Mapping[str, str] | None = None) -> str:
        """The log density of observation `i` given the linear predictor vector `eta` (`aux`: at `i`)."""
        kind = "lpmf" if self.discrete else "lpdf"
        given = f"trials[{i}], " if self.takes_trials else ""
        return f"{self.density}_{kind}(y[{i}] | {self._params(f'{eta}[{i}]', aux, given)})"

    # -- likelihood weights (`weights:`) ------------------------------------------------------------
    def weighted_log_density(self, mu: str, aux: Mapping[str, str] | None = None) -> str | None:
        """Σ weights[i] · log density of y[i] given the linear predictor vector `mu`, vectorized (constants
        dropped, as the unweighted likelihood's lupdf/lupmf drops them), or None: the family's is then summed row
        by row with log_density_at (Stan's vectorized densities return only their sum)."""
        return None

    def weighted_likelihood(self, alpha: str, pooled: bool, aux: Mapping[str, str] | None,
                            aux_at: Mapping[str, str] | None) -> str:
        """`target += …` of all observations, each row's log density times its weight. `alpha`: the rest of the
        linear predictor, the vector "eta" or a number; `aux_at`: the auxiliary parameters at observation i."""
        lines, mu = linear_predictor_vector(alpha, pooled)
        vectorized = self.weighted_log_density(mu, aux)
        if vectorized is not None:
            lines.append(f"target += {vectorized};  // each row's log density times its weight")
        else:  # (Stan's vectorized densities return only their sum)
            lines += ["for (i in 1:N) {  // each row's log density times its weight, row by row",
                      f"  target += weights[i] * ({self.log_density_at(mu, 'i', aux_at)});", "}"]
        return "\n    ".join(lines)

    def header(self, outcome: str, trials: str | None) -> tuple[str, str]:
        """The program's equations: (the outcome's distribution, the left side of the linear predictor)."""
        raise NotImplementedError

    # -- data -----------------------------------------------------------------------------------------
    def outcome_data(self, series: pd.Series, column: str, trials: pd.Series | None, trials_column: str | None,
                     problem, order: tuple | None = None) -> dict[str, Any]:
        """Check the outcome (and trials) column; `problem(path, message)` records what is wrong, naming rows.
        Returns the Stan data of the outcome; an ordinal family adds "categories", the labels of y = 1, 2, …
        (`order`: the spec's order of them)."""
        raise NotImplementedError

    def outcome_scale(self, y: np.ndarray) -> tuple[float, float]:
        """(s_y, the default intercept prior's location): the scale default priors are relative to."""
        return 1.0, 0.0

    def sub_model_location(self, aux: AuxParameter, y: np.ndarray) -> float:
        """Where the default prior of a sub-model's intercept is centered, on its link scale: log s_y for a
        residual sd, else 0 (a shape or precision of 1, a probability of 1/2)."""
        return float(np.log(self.outcome_scale(y)[0])) if aux is self.residual_sd else 0.0

    # -- numpy hooks ----------------------------------------------------------------------------------
    def working_response(self, y: np.ndarray, trials: np.ndarray | None, eta: np.ndarray | None = None,
                         cells: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
        """(z, w, estimate_sigma): a normal working model z_i ~ N(η_i, σ²/w_i) for the `auto` choice, by Fisher
        scoring at the linear predictor `eta` (None: the link of the outcome's mean, the pooled start):
        w_i = I_i, the Fisher information of row i's density about η_i, and z_i = η_i + U_i/I_i with U_i its
        score; the family's other parameters (φ, shape) estimated by moments of the residuals at `eta`,
        centered within `cells` (each row's combination of groups, see _dispersion_moment).
        estimate_sigma: the working model's σ² is estimated (identity-link families); else σ² = 1."""
        raise NotImplementedError

    def draw(self, eta: np.ndarray, aux: dict[str, Any], trials: np.ndarray | None, errors, rng) -> np.ndarray:
        """Outcomes drawn given the linear predictor (simulate); `errors()` draws a gaussian family's errors."""
        raise NotImplementedError

    def placeholder(self, n: int, rng, order: tuple | None = None) -> np.ndarray:
        """A valid stand-in outcome (simulate prepares the data before it has the real one)."""
        return np.arange(n) % 2

    def latent_residual_variance(self, fit: "Fit", intercept_variance) -> np.ndarray:
        """The residual variance on the latent scale, per draw (ICC, pooling)."""
        raise NotImplementedError

    def expected(self, eta: np.ndarray, aux: Mapping[str, np.ndarray], trials: np.ndarray | None) -> np.ndarray:
        """E[y] given the linear predictor (predict kind="mean"); `aux` broadcasts against eta."""
        raise NotImplementedError

    def log_density(self, y: np.ndarray, eta: np.ndarray, aux: Mapping[str, np.ndarray],
                    trials: np.ndarray | None) -> np.ndarray:
        """log p(y | eta, aux) of each observation, as the program's log_lik (independent errors)."""
        raise NotImplementedError

    def aux_length(self, aux: AuxParameter, stan_data: Mapping) -> int:
        """How many numbers a (vector) auxiliary parameter holds, given the Stan data."""
        return 1

    @staticmethod
    def aux_labels(categories: list[str]) -> list[str]:
        """Labels of a vector auxiliary parameter's elements (an ordinal model's cutpoints: '1|2', …)."""
        return []

    @property
    def is_default(self) -> bool:
        """lme4's and the spec's default family (no `family = …` in the lme4 formula)."""
        return self.name == DEFAULT

    @property
    def residual_sd(self) -> AuxParameter | None:
        """The auxiliary parameter that is a residual sd (the printout's Residual row), if any."""
        return next((a for a in self.aux if a.name == "sigma"), None)


def _inv_logit(x):
    return 1 / (1 + np.exp(-np.asarray(x, dtype=float)))


def _numbers(series: pd.Series, column: str, family: str, problem) -> np.ndarray | None:

    if not is_numeric(series):
        problem("outcome", f"outcome '{column}' must be numeric for family {family}, got text such as "
                           f"{series.iloc[0]!r}")
        return None
    y = series.to_numpy(dtype=float)
    if not np.isfinite(y).all():
        problem("outcome", f"outcome '{column}' has infinite values at {rows_text(~np.isfinite(y))}")
        return None
    return y


@dataclass(frozen=True)
class Gaussian(Family):
    def header(self, outcome, trials):
        return f"{outcome}[i] ~ normal(mu[i], sigma)", "mu[i]"

    def weighted_log_density(self, mu, aux=None):
        if self.density != "normal":  # (Student and Lognormal build on this class)
            return None
        sigma = self._aux(aux)["sigma"]
        if sigma == "sigma" and "sigma" not in getattr(aux, "per_row", ()):  # one residual sd
            return f"-sum(weights) * log(sigma) - 0.5 * dot_product(weights, square(y - {mu})) / square(sigma)"
        return f"-dot_product(weights, log({sigma}) + 0.5 * square((y - {mu}) ./ {sigma}))"

    def cross_product_likelihood(self, rss: str, aux: Mapping[str, str] | None = None) -> str:
        """`target += …` of all N observations from their residual sum of squares `rss` (a Stan expression):
        normal_lupdf(y | mu, sigma) summed over the rows, as the GLM function has it."""
        sigma = self._aux(aux)["sigma"]
        return f"target += -N * log({sigma}) - 0.5 * {rss} / square({sigma});  // sum of normal_lupdf(y | mu, {sigma})"

    def outcome_data(self, series, column, trials, trials_column, problem, order=None):
        y = _numbers(series, column, self.name, problem)
        if y is None:
            return {}
        if np.std(y) == 0:
            problem("outcome", f"outcome '{column}' is constant ({y[0]}); there is nothing to model")
        return {"y": y}

    def outcome_scale(self, y):
        return float(np.std(y)), float(np.mean(y))

    def working_response(self, y, trials, eta=None, cells=None):
        return y, np.ones_like(y), True

    def draw(self, eta, aux, trials, errors, rng):
        return eta + errors()

    def placeholder(self, n, rng, order=None):
        return rng.normal(0, 1, n)

    def latent_residual_variance(self, fit, intercept_variance):
        # the residual structure knows whether sigma is one number or one per value of a column
        return fit.description.residuals.mean_variance(fit.posterior["sigma"].values, fit.program.stan_data)

    def expected(self, eta, aux, trials):
        return eta

    def log_density(self, y, eta, aux, trials):
        return stats.norm.logpdf(y, eta, aux["sigma"])


def _start(eta: np.ndarray | None, y: np.ndarray, value: float) -> np.ndarray:
    """The linear predictor to score at: the given one, else the pooled start `value` on every row."""
    return np.full(len(y), value, dtype=float) if eta is None else np.clip(np.asarray(eta, dtype=float), -30, 30)


def _logit_working_response(y, n, eta):
    n = np.maximum(n, 1.0)
    start = np.clip(y.sum() / n.sum(), 0.02, 0.98)
    eta = _start(eta, y, np.log(start / (1 - start)))
    p = np.clip(_inv_logit(eta), 1e-4, 1 - 1e-4)
    return eta + (y - n * p) / (n * p * (1 - p)), n * p * (1 - p), False


def _dispersion_moment(resid: np.ndarray, cells: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(r², w) for a dispersion's moment equation Σ w·r² = Σ w·Var(y): the residuals centered within cells
    (rows sharing every group), weighted 1 − 1/n_cell, so that what the fitted group effects miss (the
    working fit shrinks them) is not taken for dispersion: ticks with 4 chicks per brood put the brood
    spread into φ otherwise, φ fell, the broods looked data-poor, and the fit shrank them further. Without
    cells, or with fewer than a tenth of the rows repeating a cell, the plain residuals (weight 1)."""
    if cells is not None and len(cells) == len(resid):
        count = np.bincount(cells)
        weight = 1.0 - 1.0 / count[cells]
        if np.mean(count[cells] > 1) >= 0.1:
            mean = np.bincount(cells, resid) / count
            return (resid - mean[cells]) ** 2, weight
    return resid ** 2, np.ones_like(resid)


def _log_link_scoring(y, eta, mu, information):
    """(z, w, False) for a log-link family at eta (μ = exp(η)), w its Fisher information: the score about η
    is (y − μ)·I/μ, so z = η + (y − μ)/μ."""
    return eta + (y - mu) / mu, information, False


def _logistic_variance(fit, intercept_variance):
    n = fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"]
    return np.full(n, np.pi ** 2 / 3)


@dataclass(frozen=True)
class Bernoulli(Family):
    unbounded: bool = False  # (the prior predictive check has nothing to flag above)
    def header(self, outcome, trials):
        return f"{outcome}[i] ~ bernoulli(p[i])", "logit(p[i])"

    def weighted_log_density(self, mu, aux=None):
        return f"dot_product(weights, to_vector(y) .* {mu} - log1p_exp({mu}))"

    def data_lines(self, outcome, trials):
        return [f"array[N] int<lower=0, upper=1> y;  // outcome: {outcome} (0/1)"]

    def outcome_data(self, series, column, trials, trials_column, problem, order=None):
        if pd.api.types.is_bool_dtype(series):
            series = series.astype(int)
        y = _numbers(series, column, self.name, problem)
        if y is None:
            return {}
        bad = ~np.isin(y, (0, 1))
        if bad.any():
            problem("outcome", f"family {self.name} needs outcome '{column}' to be 0 or 1; other values at {rows_text(bad)}")
        return {"y": y.astype(int)}

    working_steps: int = SCORING_STEPS

    def working_response(self, y, trials, eta=None, cells=None):
        return _logit_working_response(y, np.ones_like(y), eta)

    def draw(self, eta, aux, trials, errors, rng):
        return rng.binomial(1, 1 / (1 + np.exp(-eta)))

    def latent_residual_variance(self, fit, intercept_variance):
        return _logistic_variance(fit, intercept_variance)

    def expected(self, eta, aux, trials):
        return _inv_logit(eta)

    def log_density(self, y, eta, aux, trials):
        return stats.bernoulli.logpmf(y, _inv_logit(eta))


def _counts(y, column, family, problem) -> np.ndarray:

    bad = (y < 0) | (y != np.round(y))
    if bad.any():
        problem("outcome", f"family {family} needs outcome '{column}' to be a non-negative integer count; "
                           f"bad values ({', '.join(label_text(v) for v in np.unique(y[bad])[:3])}) at {rows_text(bad)}")
    return np.round(y).astype(int)


@dataclass(frozen=True)
class Binomial(Family):
    unbounded: bool = False  # (the prior predictive check has nothing to flag above)
    def header(self, outcome, trials):
        return f"{outcome}[i] ~ binomial({trials}[i], p[i])", "logit(p[i])"

    def weighted_log_density(self, mu, aux=None):
        return f"dot_product(weights, to_vector(y) .* {mu} - to_vector(trials) .* log1p_exp({mu}))"

    def data_lines(self, outcome, trials):
        return [f"array[N] int<lower=0> trials;  // trials: {trials}", f"array[N] int<lower=0> y;  // successes: {outcome}"]

    def predictive_draws(self, eta, aux=None):
        return f"y_rep = binomial_rng(trials, inv_logit({eta}));  // (Stan has no binomial_logit_rng)"

    def outcome_data(self, series, column, trials, trials_column, problem, order=None):

        y = _numbers(series, column, self.name, problem)
        if y is None:
            return {}
        out: dict[str, Any] = {"y": _counts(y, column, self.name, problem)}
        if not is_numeric(trials):
            problem("trials", f"trials column '{trials_column}' must hold integer counts")
            return out
        n = trials.to_numpy(dtype=float)
        bad_n = (n < 0) | (n != np.round(n))
        if bad_n.any():
            problem("trials", f"trials column '{trials_column}' must hold non-negative integers; bad at {rows_text(bad_n)}")
        over = y > n
        if over.any():
            problem("outcome", f"successes '{column}' exceed trials '{trials_column}' at {rows_text(over)}")
        out["trials"] = np.round(n).astype(int)
        return out

    working_steps: int = SCORING_STEPS

    def working_response(self, y, trials, eta=None, cells=None):
        return _logit_working_response(y, np.asarray(trials, dtype=float), eta)

    def draw(self, eta, aux, trials, errors, rng):
        return rng.binomial(np.asarray(trials), 1 / (1 + np.exp(-eta)))

    def latent_residual_variance(self, fit, intercept_variance):
        return _logistic_variance(fit, intercept_variance)

    def expected(self, eta, aux, trials):
        return np.asarray(trials) * _inv_logit(eta)  # on the count scale

    def log_density(self, y, eta, aux, trials):
        return stats.binom.logpmf(y, trials, _inv_logit(eta))


@dataclass(frozen=True)
class Poisson(Family):
    def header(self, outcome, trials):
        return f"{outcome}[i] ~ poisson(lambda[i])", "log(lambda[i])"

    def weighted_log_density(self, mu, aux=None):
        if self.density != "poisson_log":  # (the negative binomial builds on this class)
            return None
        return f"dot_product(weights, to_vector(y) .* {mu} - exp({mu}))"

    def outcome_data(self, series, column, trials, trials_column, problem, order=None):
        y = _numbers(series, column, self.name, problem)
        return {} if y is None else {"y": _counts(y, column, self.name, problem)}

    def outcome_scale(self, y):
        return 1.0, float(np.log(max(np.mean(y), 0.1)))

    working_steps: int = SCORING_STEPS

    def working_response(self, y, trials, eta=None, cells=None):
        eta = _start(eta, y, np.log(max(y.mean(), 0.05)))
        mu = np.exp(eta)
        return _log_link_scoring(y, eta, mu, mu)  # Poisson: I = μ

    def draw(self, eta, aux, trials, errors, rng):
        return rng.poisson(np.exp(np.clip(eta, -30, 20)))

    @staticmethod
    def mean_count(fit, intercept_variance) -> np.ndarray:
        """λ = exp(Intercept + Σ τ²/2) per draw: the mean count of the lognormal approximation."""
        n = fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"]
        if fit.description.intercept:
            log_mean = fit.posterior["Intercept"].values.reshape(-1)
        else:
            log_mean = np.full(n, np.log(max(np.mean(fit.program.stan_data["y"]), 1e-3)))
        return np.exp(log_mean + np.asarray(intercept_variance) / 2)

    def latent_residual_variance(self, fit, intercept_variance):
        """ln(1 + 1/λ): the lognormal approximation (Nakagawa et al. 2017)."""
        return np.log1p(1 / self.mean_count(fit, intercept_variance))

    def expected(self, eta, aux, trials):
        return np.exp(eta)

    def log_density(self, y, eta, aux, trials):
        return stats.poisson.logpmf(y, np.exp(eta))

    # -- as the counts of a zero-inflated or hurdle family (ZeroFamily) ---------------------------------
    def stan_log_zero(self, mu: str, aux: Mapping[str, str]) -> str:
        """log P(count = 0) at the linear predictor `mu` (a Stan expression), elementwise."""
        return f"-exp({mu})"

    def positive_rng_function(self) -> str:
        """The Stan function (a macro of templates/families.stan.j2) that draws a count given that it is
        positive (a hurdle's positive part), called as <its name>(eta, <the family's parameters>)."""
        return "positive_poisson_log_rng"

    def draw_positive(self, eta, aux, rng) -> np.ndarray:
        """Counts drawn given that they are positive (by the inverse of the distribution function)."""
        mu = np.exp(np.clip(eta, -30, 20))
        p0 = stats.poisson.pmf(0, mu)
        return _positive_counts(stats.poisson.ppf(rng.uniform(p0, 1.0), mu))


COUNT_CAP = float(np.exp(20.0))  # the largest rate counts are drawn at (exp of the clipped linear predictor)


def _positive_counts(quantiles: np.ndarray) -> np.ndarray:
    """Counts from quantiles of a count distribution given y > 0: at least 1, and a quantile at probability 1 (a
    zero probability that rounds to 1 for a tiny phi) at COUNT_CAP, not inf."""
    quantiles = np.where(np.isfinite(quantiles), quantiles, COUNT_CAP)
    return np.maximum(np.minimum(quantiles, COUNT_CAP), 1).astype(np.int64)


def _positive_outcome(series, column, family, problem) -> dict[str, Any]:
    """The Stan data of an outcome that must be positive (lognormal, gamma)."""
    y = _numbers(series, column, family, problem)
    if y is None:
        return {}
    bad = y <= 0
    if bad.any():
        problem("outcome", f"family {family} needs outcome '{column}' to be positive; values ≤ 0 at {rows_text(bad)}")
    return {"y": y}


@dataclass(frozen=True)
class NegBinomial(Poisson):
    """NB2: variance μ + μ²/φ (glmmTMB's nbinom2, lme4's glmer.nb, brms's negbinomial)."""

    def header(self, outcome, trials):
        return f"{outcome}[i] ~ neg_binomial_2(lambda[i], phi)", "log(lambda[i])"

    def working_response(self, y, trials, eta=None, cells=None):
        eta = _start(eta, y, np.log(max(y.mean(), 0.05)))
        mu = np.exp(eta)
        square, w = _dispersion_moment(y - mu, cells)
        excess = float(np.sum(w * (square - mu)))
        phi = float(np.sum(w * mu ** 2)) / excess if excess > 1e-9 else 1e6  # moments: var = μ + μ²/φ
        return _log_link_scoring(y, eta, mu, mu / (1 + mu / phi))

    def draw(self, eta, aux, trials, errors, rng):
        # as a gamma mixture of Poissons (the same NB2): numpy's negative_binomial refuses the p below 1e-30 that a
        # tiny phi from the vague default prior gives in a prior-only fit; rates capped as Poisson's are
        mu = np.exp(np.clip(eta, -30, 20))
        phi = np.broadcast_to(np.asarray(aux["phi"], dtype=float), mu.shape)
        with np.errstate(invalid="ignore", over="ignore"):  # 0 × inf: a rate of 0, below
            rate = rng.standard_gamma(phi) * (mu / np.maximum(phi, np.finfo(float).tiny))
        return rng.poisson(np.minimum(np.nan_to_num(rate, nan=0.0, posinf=COUNT_CAP), COUNT_CAP))

    def latent_residual_variance(self, fit, intercept_variance):
        """ln(1 + 1/λ + 1/φ): the lognormal approximation for NB2 (Nakagawa, Johnson & Schielzeth 2017)."""
        return np.log1p(1 / self.mean_count(fit, intercept_variance) + 1 / fit.posterior["phi"].values.reshape(-1))

    def log_density(self, y, eta, aux, trials):
        mu, phi = np.exp(eta), aux["phi"]
        return stats.nbinom.logpmf(y, phi, phi / (phi + mu))

    def stan_log_zero(self, mu, aux):
        phi = aux["phi"]
        return f"-{phi} .* log1p_exp({mu} - log({phi}))"  # φ·log(φ/(φ + μ))

    def positive_rng_function(self):
        return "positive_neg_binomial_2_log_rng"

    def draw_positive(self, eta, aux, rng):
        # phi below 1e-10 (the vague default prior's tail, in a prior-only fit) overflows scipy's quantile; the
        # zero-truncated distribution has about the same shape there
        mu, phi = np.exp(np.clip(eta, -30, 20)), np.maximum(aux["phi"], 1e-10)
        p = phi / (phi + mu)
        p0 = stats.nbinom.pmf(0, phi, p)
        return _positive_counts(stats.nbinom.ppf(rng.uniform(p0, 1.0), phi, p))


@dataclass(frozen=True)
class Student(Gaussian):
    """Student-t errors: sigma the scale, nu the degrees of freedom (brms's student)."""

    def header(self, outcome, trials):
        return f"{outcome}[i] ~ student_t(nu, mu[i], sigma)", "mu[i]"

    def draw(self, eta, aux, trials, errors, rng):
        return eta + aux["sigma"] * rng.standard_t(aux["nu"], len(eta))

    def latent_residual_variance(self, fit, intercept_variance):
        """σ²·ν/(ν − 2), the t distribution's variance; not defined (NaN) for draws with ν ≤ 2."""
        sigma, nu = fit.posterior["sigma"].values.reshape(-1), fit.posterior["nu"].values.reshape(-1)
        return np.where(nu > 2, sigma ** 2 * nu / np.maximum(nu - 2, 1e-12), np.nan)

    def expected(self, eta, aux, trials):
        return np.where(aux["nu"] > 1, eta, np.nan)  # a t distribution with ν ≤ 1 has no mean

    def log_density(self, y, eta, aux, trials):
        return stats.t.logpdf(y, aux["nu"], eta, aux["sigma"])


@dataclass(frozen=True)
class Lognormal(Gaussian):
    """log(y) normal: the linear predictor and sigma are on the log scale."""

    def header(self, outcome, trials):
        return f"{outcome}[i] ~ lognormal(mu[i], sigma)", "mu[i]"

    def outcome_data(self, series, column, trials, trials_column, problem, order=None):
        return _positive_outcome(series, column, self.name, problem)

    def outcome_scale(self, y):
        logs = np.log(np.where(y > 0, y, 1.0))
        return float(np.std(logs)) or 1.0, float(np.mean(logs))

    def working_response(self, y, trials, eta=None, cells=None):
        return np.log(np.where(y > 0, y, 1.0)), np.ones_like(y), True

    def draw(self, eta, aux, trials, errors, rng):
        return np.exp(eta + aux["sigma"] * rng.normal(0, 1, len(eta)))

    def placeholder(self, n, rng, order=None):
        return np.exp(rng.normal(0, 1, n))

    def latent_residual_variance(self, fit, intercept_variance):
        return fit.posterior["sigma"].values.reshape(-1) ** 2  # on the log scale

    def expected(self, eta, aux, trials):
        return np.exp(eta + aux["sigma"] ** 2 / 2)

    def log_density(self, y, eta, aux, trials):
        return stats.norm.logpdf(np.log(y), eta, aux["sigma"]) - np.log(y)


@dataclass(frozen=True)
class GammaFamily(Family):
    """Gamma with a log link: mean μ = exp(η), shape k (variance μ²/k; glmmTMB's Gamma(link = "log"))."""

    def header(self, outcome, trials):
        return f"{outcome}[i] ~ gamma(shape, shape / mu[i])", "log(mu[i])"

    def outcome_data(self, series, column, trials, trials_column, problem, order=None):
        return _positive_outcome(series, column, self.name, problem)

    def outcome_scale(self, y):
        return 1.0, float(np.log(max(np.mean(y), 1e-6)))

    working_steps: int = SCORING_STEPS

    def working_response(self, y, trials, eta=None, cells=None):
        eta = _start(eta, y, np.log(max(float(np.mean(y)), 1e-6)))
        mu = np.exp(eta)
        square, w = _dispersion_moment(y - mu, cells)
        shape = float(np.sum(w * mu ** 2)) / max(float(np.sum(w * square)), 1e-12)  # moments: var = μ²/shape
        return _log_link_scoring(y, eta, mu, np.full_like(mu, shape))  # I = shape

    def draw(self, eta, aux, trials, errors, rng):
        mu = np.exp(np.clip(eta, -30, 20))
        return rng.gamma(aux["shape"], mu / aux["shape"])

    def placeholder(self, n, rng, order=None):
        return np.exp(rng.normal(0, 1, n))

    def latent_residual_variance(self, fit, intercept_variance):
        """trigamma(k): the variance of log(y) for a gamma with shape k (Nakagawa et al. 2017)."""
        from scipy.special import polygamma
        return polygamma(1, fit.posterior["shape"].values.reshape(-1))

    def expected(self, eta, aux, trials):
        return np.exp(eta)

    def log_density(self, y, eta, aux, trials):
        return stats.gamma.logpdf(y, aux["shape"], scale=np.exp(eta) / aux["shape"])


@dataclass(frozen=True)
class BetaFamily(Family):
    """Beta with a logit link: mean μ = inv_logit(η), precision φ (variance μ(1 − μ)/(1 + φ); glmmTMB's
    beta_family, brms's Beta)."""
    unbounded: bool = False  # (the prior predictive check has nothing to flag above)

    def header(self, outcome, trials):
        return f"{outcome}[i] ~ beta(mu[i] * phi, (1 - mu[i]) * phi)", "logit(mu[i])"

    def outcome_data(self, series, column, trials, trials_column, problem, order=None):
        y = _numbers(series, column, self.name, problem)
        if y is None:
            return {}
        bad = (y <= 0) | (y >= 1)
        if bad.any():
            problem("outcome", f"family {self.name} needs outcome '{column}' strictly between 0 and 1; values at 0 "
                               f"or 1 (or outside) at {rows_text(bad)} (a beta density is 0 or infinite there: squeeze "
                               "them, e.g. (y·(n − 1) + 0.5)/n, or model the 0s and 1s apart)")
        return {"y": y}

    def outcome_scale(self, y):
        m = float(np.clip(np.mean(y), 0.01, 0.99))
        return 1.0, float(np.log(m / (1 - m)))

    working_steps: int = SCORING_STEPS

    def working_response(self, y, trials, eta=None, cells=None):
        m = float(np.clip(np.mean(y), 0.02, 0.98))
        eta = _start(eta, y, np.log(m / (1 - m)))
        mu = np.clip(_inv_logit(eta), 1e-4, 1 - 1e-4)
        square, w = _dispersion_moment(y - mu, cells)
        spread = max(float(np.sum(w * square) / np.sum(w * mu * (1 - mu))), 1e-9)
        phi = max(1 / spread - 1, 0.1)  # moments: var = μ(1 − μ)/(1 + φ)
        a, b = mu * phi, (1 - mu) * phi
        slope = mu * (1 - mu)  # dμ/dη
        # about μ: score φ(logit y − ψ(a) + ψ(b)), information φ²(ψ'(a) + ψ'(b)); η by the chain rule
        y = np.clip(y, 1e-9, 1 - 1e-9)
        score = phi * (np.log(y / (1 - y)) - special.digamma(a) + special.digamma(b)) * slope
        information = phi ** 2 * (special.polygamma(1, a) + special.polygamma(1, b)) * slope ** 2
        return eta + score / information, information, False

    def draw(self, eta, aux, trials, errors, rng):
        mu = 1 / (1 + np.exp(-eta))
        return np.clip(rng.beta(mu * aux["phi"], (1 - mu) * aux["phi"]), 1e-12, 1 - 1e-12)

    def placeholder(self, n, rng, order=None):
        return rng.uniform(0.2, 0.8, n)

    def latent_residual_variance(self, fit, intercept_variance):
        return None  # no latent-scale residual variance: ICC and pooling are not defined for beta

    def expected(self, eta, aux, trials):
        return _inv_logit(eta)

    def log_density(self, y, eta, aux, trials):
        mu = _inv_logit(eta)
        return stats.beta.logpdf(y, mu * aux["phi"], (1 - mu) * aux["phi"])


def _category_text(values) -> str:
    return ", ".join(repr(label_text(v)) for v in values)


@dataclass(frozen=True)
class Cumulative(Family):
    """Ordered categories 1 < 2 < … < K (ordinal::clmm, brms's cumulative("logit")):
    P(y ≤ k) = inv_logit(cutpoint_k − η), with K − 1 ordered cutpoints in place of the population intercept."""
    unbounded: bool = False  # (the prior predictive check has nothing to flag above)

    def header(self, outcome, trials):
        return f"{outcome}[i] ~ ordered_logistic(eta[i], cutpoints),  P({outcome}[i] <= k) = inv_logit(cutpoints[k] - eta[i])", "eta[i]"

    def data_lines(self, outcome, trials):
        return ["int<lower=2> K_cat;  // number of categories", 
                f"array[N] int<lower=1, upper=K_cat> y;  // outcome: {outcome}, as category 1..K_cat in its order"]

    def log_density_expr(self, alpha, pooled, aux=None, rows=""):
        cuts = self._aux(aux)["cutpoints"]
        if pooled and alpha == "0":  # Stan's GLM function has no term besides X * beta
            return f"ordered_logistic_glm_lupmf(y{rows} | X{rows}, beta, {cuts})"
        mu = (f"X{rows} * beta" if alpha == "0" else f"{alpha} + X{rows} * beta") if pooled else alpha
        return f"ordered_logistic_lupmf(y{rows} | {mu}, {cuts})"

    def predictive_draws(self, eta, aux=None):
        cuts = self._aux(aux)["cutpoints"]
        return f"for (i in 1:N) y_rep[i] = ordered_logistic_rng({eta}[i], {cuts});  // (Stan's rng takes one at a time)"

    def log_density_at(self, eta, i, aux=None):
        return f"ordered_logistic_lpmf(y[{i}] | {eta}[{i}], {self._aux(aux)['cutpoints']})"

    def outcome_data(self, series, column, trials, trials_column, problem, order=None):

        text = series.map(label_text)
        if order is not None:
            categories = [label_text(v) for v in order]
            unknown = ~text.isin(categories).to_numpy()
            if unknown.any():
                problem("outcome", f"outcome '{column}' has values not listed in `order` "
                                   f"({_category_text(pd.unique(series[unknown])[:3])}) at {rows_text(unknown)}; "
                                   f"`order` lists {_category_text(categories)}")
                return {}
        elif is_numeric(series) and np.all(np.isfinite(series.to_numpy(dtype=float))) and \
                np.all(series.to_numpy(dtype=float) == np.round(series.to_numpy(dtype=float))):
            categories = sort_labels(text.unique())
        else:
            problem("outcome", f"family {self.name} needs ordered categories: outcome '{column}' holds "
                               f"{'text' if not is_numeric(series) else 'non-integer numbers'} (such as "
                               f"{_category_text(series.iloc[:1])}); give their order with a top-level "
                               "`order: [lowest, …, highest]`, or code them as integers")
            return {}
        unseen = [c for c in categories if not (text == c).any()]
        if unseen:
            problem("order", f"no row of '{column}' is in categor{'ies' if len(unseen) > 1 else 'y'} "
                             f"{_category_text(unseen)}: the cutpoints around an empty category are not "
                             "identified by the data; leave it out of `order` (or merge it with a neighbour)")
        if len(categories) < 2:
            problem("outcome", f"outcome '{column}' has one category ({_category_text(categories)}); an ordinal "
                               "model needs at least 2")
            return {}
        code = {c: k + 1 for k, c in enumerate(categories)}
        return {"y": text.map(code).to_numpy(dtype=int), "K_cat": len(categories), "categories": categories}

    def aux_length(self, aux: AuxParameter, stan_data: Mapping) -> int:
        return int(stan_data["K_cat"]) - 1

    @staticmethod
    def aux_labels(categories: list[str]) -> list[str]:
        """The cutpoints' labels as ordinal::clmm prints them: '1|2', '2|3', …"""
        return [f"{a}|{b}" for a, b in zip(categories, categories[1:])]

    working_steps: int = SCORING_STEPS

    def working_response(self, y, trials, eta=None, cells=None):
        """Fisher scoring about η with the cutpoints held at the logits of the outcome's cumulative proportions
        (the pooled fit, with η centered): P(y = k) = F(c_k − η) − F(c_{k−1} − η), F the logistic."""
        y = np.clip(np.asarray(y, dtype=int), 1, None)
        eta = _start(eta, y, 0.0)
        counts = np.bincount(y, minlength=max(int(y.max()), 2) + 1)[1:] if len(y) else np.ones(2)
        cum = np.clip(np.cumsum(counts)[:-1] / max(counts.sum(), 1), 1e-3, 1 - 1e-3)
        cuts = np.concatenate([[-np.inf], np.log(cum / (1 - cum)), [np.inf]])
        below = _inv_logit(cuts[None, :] - eta[:, None])  # F(c_k − η), k = 0..K
        density = below * (1 - below)  # the logistic density f(c_k − η) (0 at ±∞)
        prob = np.maximum(np.diff(below, axis=1), 1e-12)  # P(y = k), k = 1..K
        change = density[:, :-1] - density[:, 1:]  # dP(y = k)/dη
        k = np.clip(y, 1, prob.shape[1]) - 1
        rows = np.arange(len(y))
        information = np.sum(change ** 2 / prob, axis=1)
        score = change[rows, k] / prob[rows, k]
        return eta + score / np.maximum(information, 1e-12), information, False

    def draw(self, eta, aux, trials, errors, rng):
        """Category codes 1..K: the latent η + logistic noise, cut at the cutpoints."""
        latent = eta + rng.logistic(0, 1, len(eta))
        return 1 + np.searchsorted(np.sort(np.atleast_1d(np.asarray(aux["cutpoints"], dtype=float))), latent)

    def placeholder(self, n, rng, order=None):
        if order is None:
            raise SpecError(Problem("order", f"simulating a {self.name} model without data needs its categories: "
                                             "list them with a top-level `order: [lowest, …, highest]`"))
        return np.array([order[k % len(order)] for k in range(n)], dtype=object)

    def latent_residual_variance(self, fit, intercept_variance):
        return _logistic_variance(fit, intercept_variance)

    @staticmethod
    def probabilities(eta: np.ndarray, cutpoints: np.ndarray) -> np.ndarray:
        """P(y = k), k = 1..K, as the last axis: eta (..., n), cutpoints (..., K − 1) per draw."""
        cuts = np.asarray(cutpoints, dtype=float)
        below = _inv_logit(cuts[..., None, :] - eta[..., None])  # P(y ≤ k), k = 1..K − 1
        zeros, ones = np.zeros(below.shape[:-1] + (1,)), np.ones(below.shape[:-1] + (1,))
        return np.diff(np.concatenate([zeros, below, ones], axis=-1), axis=-1)

    def expected(self, eta, aux, trials):
        """The expected category number (1..K); predict also gives each category's probability."""
        probs = self.probabilities(eta, aux["cutpoints"])
        return probs @ np.arange(1, probs.shape[-1] + 1)

    def log_density(self, y, eta, aux, trials):
        probs = self.probabilities(eta, aux["cutpoints"])
        return np.log(np.take_along_axis(probs, np.asarray(y, dtype=int)[..., None] - 1, axis=-1)[..., 0])


GAMMA_VAGUE = ("gamma", (0.01, 0.01))  # brms's default for shape and precision parameters


def _split_mu(alpha: str, pooled: bool, rows: str, size: str) -> str:
    """The linear predictor (alpha + X * beta when pooled) at the observations `rows` (an index array of
    `size`), as a vector: alpha is the vector eta with levels, else the intercept (or "0")."""
    vector = alpha == "eta"
    if not pooled:
        return f"{alpha}[{rows}]" if vector else f"rep_vector({alpha}, {size})"
    design = f"X[{rows}] * beta"
    if alpha == "0":
        return design
    return f"{alpha}[{rows}] + {design}" if vector else f"{alpha} + {design}"


def cdf_problem(family: Family | None, what: str) -> str | None:
    """Why `what` (censoring, truncation: each needs the family's CDF) is not defined for `family` (None: it is,
    or the family is unknown)."""
    if family is None or family.cdf:
        return None
    takers = [f.name for f in FAMILIES.values() if f.cdf]
    return f"{what} is not defined for family {family} (it is for {', '.join(takers)})"


def linear_predictor_vector(alpha: str, pooled: bool) -> tuple[list[str], str]:
    """(the lines declaring it, its name): the whole linear predictor as one vector, for a likelihood that
    indexes it by rows. `alpha`: the vector "eta", or a number (the intercept, or 0); `pooled`: plus X * beta."""
    if not pooled and alpha == "eta":
        return [], alpha
    rest = ("X * beta" if alpha == "0" else f"{alpha} + X * beta") if pooled else f"rep_vector({alpha}, N)"
    return [f"vector[N] mu = {rest};  // the linear predictor"], "mu"


def _plus(left: str, right: str) -> str:
    """left + right, written left - rest when right is a negation."""
    return f"{left} - {right[1:]}" if right.startswith("-") else f"{left} + {right}"


def _zero_split_data(y: np.ndarray) -> dict[str, Any]:
    """The rows where the outcome is 0 and where it is positive (1-based), data of the split likelihood."""
    zero = np.flatnonzero(y == 0) + 1
    positive = np.flatnonzero(y > 0) + 1
    return {"N_zero": len(zero), "zero_rows": zero, "N_positive": len(positive), "positive_rows": positive}


ZERO_SPLIT_LINES = [
    "int<lower=0> N_zero;  // observations whose outcome is 0,",
    "array[N_zero] int<lower=1, upper=N> zero_rows;  // their rows",
    "int<lower=0> N_positive;  // observations whose outcome is positive,",
    "array[N_positive] int<lower=1, upper=N> positive_rows;  // their rows",
]


@dataclass(frozen=True)
class ZeroFamily(Family):
    """A family that treats zeros apart from the rest: a zero-inflated count (a mixture of a point mass at 0
    and the count distribution: P(0) = zi + (1 − zi)·P(count = 0), P(k) = (1 − zi)·P(count = k)) or a hurdle
    (P(0) = hu, P(y) = (1 − hu)·p(y | y > 0)). `base` is the family of the counts (or of the positive part);
    `zero` the name of the zero probability (zi or hu). The likelihood is split as data: the rows where the
    outcome is 0 and the rows where it is positive, each vectorized, with no per-row branch in the model block.
    glmmTMB's ziformula (with truncated_* families for hurdles), brms's zero_inflated_* and hurdle_*."""

    base: Family | None = None
    hurdle: bool = False

    @property
    def zero(self) -> AuxParameter:
        return self.aux[-1]

    def header(self, outcome, trials):
        args = ", ".join([f"{self.base.mean_symbol}[i]"] + [a.name for a in self.base.aux])
        given = f" given {outcome}[i] > 0" if self.hurdle else ""
        return (f"{outcome}[i] = 0 with probability {self.zero.name}, else {outcome}[i] ~ "
                f"{self.base.distribution.lower()}({args}){given}", self.base.header(outcome, trials)[1])

    def data_lines(self, outcome, trials):
        kind = "counts" if self.base.discrete else "zero or positive"
        first = (f"array[N] int<lower=0> y;  // outcome: {outcome} ({kind})" if self.base.discrete else
                 f"vector<lower=0>[N] y;  // outcome: {outcome} ({kind})")
        return [first] + ZERO_SPLIT_LINES

    def outcome_data(self, series, column, trials, trials_column, problem, order=None):
        y = _numbers(series, column, self.name, problem)
        if y is None:
            return {}
        if self.base.discrete:
            y = _counts(y, column, self.name, problem)
        else:
            bad = y < 0
            if bad.any():
                problem("outcome", f"family {self.name} needs outcome '{column}' to be 0 or positive; negative "
                                   f"values at {rows_text(bad)}")
        if not (y == 0).any():
            problem("outcome", f"outcome '{column}' has no zeros: family {self.name} would estimate its "
                               f"{self.zero.name} at 0; use family {self.base.name}")
        return {"y": y} | _zero_split_data(np.asarray(y))

    def outcome_scale(self, y):
        positive = np.asarray(y)[np.asarray(y) > 0]
        return self.base.outcome_scale(positive if len(positive) else np.ones(1))

    # -- the program ----------------------------------------------------------------------------------
    def _at(self, aux: Mapping[str, str] | None, rows: str) -> dict[str, str]:
        """Each parameter's expression at the observations `rows` (a per-observation one indexed by them)."""
        at = getattr(aux, "at", None)
        return dict(at(rows)) if at is not None else self._aux(aux)

    def likelihood(self, alpha, pooled, aux=None):
        z = self.zero.name
        on_zero, on_positive = self._at(aux, "zero_rows"), self._at(aux, "positive_rows")
        zero_mu = _split_mu(alpha, pooled, "zero_rows", "N_zero")
        positive_mu = _split_mu(alpha, pooled, "positive_rows", "N_positive")
        kind = "lupmf" if self.base.discrete else "lupdf"
        base_args = "".join(f", {on_positive[a.name]}" for a in self.base.aux)
        positive = f"{self.base.density}_{kind}(y[positive_rows] | {positive_mu}{base_args})"
        zp, zz = on_positive[z], on_zero[z]
        keep = f"N_positive * log1m({zp})" if zp == z else f"sum(log1m({zp}))"
        lines = ["{"]
        if self.hurdle:
            lines.append(f"  // hurdle: a 0 with probability {z}; a positive value from the {self.base.name} "
                         "given it is positive")
            lines.append(f"  target += {'N_zero * log(' + zz + ')' if zz == z else 'sum(log(' + zz + '))'};"
                         "  // the rows whose outcome is 0")
            if self.base.discrete:
                lines.append(f"  vector[N_positive] mu = {positive_mu};")
                positive = f"{self.base.density}_{kind}(y[positive_rows] | mu{base_args})"
                truncation = f" - sum(log1m_exp({self.base.stan_log_zero('mu', on_positive)}))"
            else:
                truncation = ""
            lines.append(f"  target += {keep} + {positive}{truncation};  // the positive rows")
        else:
            lines.append(f"  // zero-inflated: a 0 is a structural zero (probability {z}) or a {self.base.name} 0")
            lines.append(f"  target += sum(log_sum_exp(log({zz}), {_plus(f'log1m({zz})', self.base.stan_log_zero(zero_mu, on_zero))}));"
                         "  // the rows whose outcome is 0")
            lines.append(f"  target += {keep} + {positive};  // the positive rows")
        lines.append("}")
        return "\n    ".join(lines)

    def log_density_expr(self, alpha, pooled, aux=None, rows=""):
        raise ValueError(f"family {self.name} has no one-expression likelihood (stangen bug: threads are refused)")

    def predictive_draws(self, eta, aux=None):
        at = self._at(aux, "i")
        z = at[self.zero.name]
        base_args = "".join(f", {at[a.name]}" for a in self.base.aux)
        if self.hurdle:
            draw = (f"{self.base.positive_rng_function()}({eta}[i]{base_args})" if self.base.discrete else
                    f"{self.base.density}_rng({eta}[i]{base_args})")
        else:
            draw = f"{self.base.density}_rng({eta}[i]{base_args})"
        return f"for (i in 1:N) y_rep[i] = bernoulli_rng({z}) ? 0 : {draw};"

    def log_density_at(self, eta, i, aux=None):
        at = self._aux(aux)  # (already at observation i)
        z = at[self.zero.name]
        mu = f"{eta}[{i}]"
        kind = "lpmf" if self.base.discrete else "lpdf"
        base_args = "".join(f", {at[a.name]}" for a in self.base.aux)
        positive = f"{self.base.density}_{kind}(y[{i}] | {mu}{base_args})"
        if self.hurdle:
            truncation = f" - log1m_exp({self.base.stan_log_zero(mu, at)})" if self.base.discrete else ""
            return f"y[{i}] == 0 ? log({z}) : log1m({z}) + {positive}{truncation}"
        zero = f"log_sum_exp(log({z}), {_plus(f'log1m({z})', self.base.stan_log_zero(mu, at))})"
        return f"y[{i}] == 0 ? {zero} : log1m({z}) + {positive}"

    def functions(self):
        return (self.base.positive_rng_function(),) if self.hurdle and self.base.discrete else ()

    def threading_problem(self) -> str | None:
        return (f"family {self.name} splits its likelihood into the rows whose outcome is 0 and the others, which "
                "threads within a chain cannot slice yet; use threads_per_chain: 1")

    # -- numpy hooks ----------------------------------------------------------------------------------
    def _zero_probability(self, aux) -> np.ndarray:
        return np.asarray(aux[self.zero.name], dtype=float)

    def _log_zero(self, eta, aux) -> np.ndarray:
        return self.base.log_density(np.zeros_like(eta), eta, aux, None)

    def expected(self, eta, aux, trials):
        keep = 1 - self._zero_probability(aux)
        mean = self.base.expected(eta, aux, trials)
        if self.hurdle and self.base.discrete:
            return keep * mean / -np.expm1(self._log_zero(eta, aux))
        return keep * mean

    def log_density(self, y, eta, aux, trials):
        y = np.asarray(y)
        z = self._zero_probability(aux)
        zero = y == 0
        safe = np.where(zero, 1, y) if self.base.discrete else np.where(zero, 1.0, y)
        positive = np.log1p(-z) + self.base.log_density(safe, eta, aux, trials)
        if self.hurdle:
            if self.base.discrete:
                positive = positive - np.log(-np.expm1(self._log_zero(eta, aux)))
            return np.where(zero, np.log(z), positive)
        return np.where(zero, np.logaddexp(np.log(z), np.log1p(-z) + self._log_zero(eta, aux)), positive)

    def draw(self, eta, aux, trials, errors, rng):
        z = np.broadcast_to(self._zero_probability(aux), np.shape(eta))
        if self.hurdle and self.base.discrete:
            values = self.base.draw_positive(eta, aux, rng)
        else:
            values = self.base.draw(eta, aux, trials, errors, rng)
        return np.where(rng.uniform(size=np.shape(eta)) < z, 0, values)

    def placeholder(self, n, rng, order=None):
        return (np.arange(n) % 3 == 0) * (1 + np.arange(n) % 4)

    def working_response(self, y, trials, eta=None, cells=None):
        """The base family's working response on the positive rows (zero rows weight 0: for a hurdle they say
        nothing about the count's mean; for a zero-inflated family an approximation that leaves out which
        zeros are structural)."""
        y = np.asarray(y, dtype=float)
        positive = y > 0
        z, w, estimate = self.base.working_response(np.where(positive, y, 1.0), trials, eta, cells)
        return z, np.where(positive, w, 0.0), estimate

    def latent_residual_variance(self, fit, intercept_variance):
        return None  # no latent-scale residual variance: ICC and pooling are not defined for a zero mixture


def _zero(name: str, meaning: str, title: str) -> AuxParameter:
    return AuxParameter(name, "real<lower=0, upper=1>", meaning, prior_class="probability",
                        default_prior=("beta", (1.0, 1.0)), link="logit", sub_model_title=title)


ZI = _zero("zi", "probability of a structural zero", "Zero-inflation model")
HU = _zero("hu", "probability of a zero (the hurdle)", "Zero (hurdle) model")

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Gaussian("gaussian", "identity", cdf="normal", lme4_call="lme4::lmer({formula}, data = d)",  brms="gaussian()",  aux=(SIGMA,), residual_structures=True, glm_function="normal_id_glm",
             density="normal", additive_errors=True, working_metric=True, cross_products=True),
    Bernoulli("bernoulli", "logit", lme4_call="lme4::glmer({formula}, data = d, family = binomial)",  brms="bernoulli()",  glm_function="bernoulli_logit_glm", density="bernoulli_logit", discrete=True,
              distribution="Bernoulli", mean_symbol="p"),
    Binomial("binomial", "logit", lme4_call="lme4::glmer({formula}, data = d, family = binomial)",  brms="binomial()",  takes_trials=True, glm_function="binomial_logit_glm", density="binomial_logit",
             discrete=True, distribution="Binomial", mean_symbol="p"),
    Poisson("poisson", "log", cdf="poisson", cdf_arguments="exp({mu})", cdf_vectorized=False, lme4_call="lme4::glmer({formula}, data = d, family = poisson)",  brms="poisson()",  glm_function="poisson_log_glm", density="poisson_log", discrete=True,
            distribution="Poisson", mean_symbol="λ"),
    NegBinomial("negbinomial", "log", cdf="neg_binomial_2", cdf_arguments="exp({mu}), {phi}", lme4_call="lme4::glmer.nb({formula}, data = d)",  brms="negbinomial()",  glm_function="neg_binomial_2_log_glm", glm_vector_aux=False, density="neg_binomial_2_log",
                discrete=True, distribution="NegBinomial", mean_symbol="λ",
                aux=(AuxParameter("phi", "real<lower=0>", "shape of the negative binomial (variance μ + μ²/φ)",
                                  default_prior=GAMMA_VAGUE, brms_class="shape", link="log"),)),
    Student("student", "identity", cdf="student_t", brms="student()",  density="student_t", arguments="{nu}, {mu}, {sigma}", distribution="Student-t",
            mean_symbol="μ", aux=(SIGMA, AuxParameter("nu", "real<lower=1>", "degrees of freedom",
                                                      default_prior=("gamma", (2.0, 0.1))))),
    Lognormal("lognormal", "identity", cdf="lognormal", lme4_call="lme4::lmer({log_formula}, data = d)",  brms="lognormal()",  density="lognormal", distribution="Lognormal", mean_symbol="μ",
              aux=(AuxParameter("sigma", "real<lower=0>", "residual sd on the log scale", link="log"),)),
    GammaFamily("gamma", "log", cdf="gamma", lme4_call="lme4::glmer({formula}, data = d, family = Gamma(link = \"log\"))",  brms="Gamma(link = \"log\")",  density="gamma", arguments="{shape}, {shape} .* exp(-({mu}))", distribution="Gamma",
                mean_symbol="μ", aux=(AuxParameter("shape", "real<lower=0>", "shape of the gamma (variance μ²/shape)",
                                                   default_prior=GAMMA_VAGUE, link="log"),)),
    Cumulative("cumulative", "logit", lme4_call="ordinal::clmm({ordered_formula}, data = d)",  brms="cumulative(\"logit\")",  discrete=True, ordinal=True, distribution="OrderedLogistic",
               mean_symbol="η", mean_link="identity",
               aux=(AuxParameter("cutpoints", "ordered[K_cat - 1]", "cutpoints between adjacent categories, "
                                 "P(y <= k) = inv_logit(cutpoint k - η)", prior_class="coefficient", default_prior=("student_t", (3.0, 0.0, 2.5)),
                                 size="K_cat - 1", shown="cutpoint", moves_with_centering=True, brms_class="Intercept"),)),
    BetaFamily("beta", "logit", cdf="beta_proportion", lme4_call="glmmTMB::glmmTMB({formula}, data = d, family = glmmTMB::beta_family())",  brms="Beta()",  density="beta_proportion", arguments="inv_logit({mu}), {phi}", distribution="Beta",
               mean_symbol="μ", aux=(AuxParameter("phi", "real<lower=0>", "precision of the beta (variance "
                                                  "μ(1 − μ)/(1 + φ))", default_prior=GAMMA_VAGUE, link="log"),)),
)}
_BY_NAME = {f.name: f for f in FAMILIES.values()}
_ZERO_CALL = "glmmTMB::glmmTMB({formula}, ziformula = {zi_formula}, data = d, family = %s)"
for _family in (
    ZeroFamily("zero_inflated_poisson", "log", base=_BY_NAME["poisson"], aux=(ZI,),
               lme4_call=_ZERO_CALL % "poisson", brms="zero_inflated_poisson()"),
    ZeroFamily("zero_inflated_negbinomial", "log", base=_BY_NAME["negbinomial"], aux=(*_BY_NAME["negbinomial"].aux, ZI),
               lme4_call=_ZERO_CALL % "glmmTMB::nbinom2", brms="zero_inflated_negbinomial()"),
    ZeroFamily("hurdle_poisson", "log", base=_BY_NAME["poisson"], aux=(HU,), hurdle=True,
               lme4_call=_ZERO_CALL % "glmmTMB::truncated_poisson", brms="hurdle_poisson()"),
    ZeroFamily("hurdle_negbinomial", "log", base=_BY_NAME["negbinomial"], aux=(*_BY_NAME["negbinomial"].aux, HU),
               hurdle=True, lme4_call=_ZERO_CALL % "glmmTMB::truncated_nbinom2", brms="hurdle_negbinomial()"),
    ZeroFamily("hurdle_lognormal", "identity", base=_BY_NAME["lognormal"], aux=(*_BY_NAME["lognormal"].aux, HU),
               hurdle=True, brms="hurdle_lognormal()"),
):
    kind = "Hurdle" if _family.hurdle else "ZeroInflated"
    FAMILIES[_family.name] = replace(_family, discrete=_family.base.discrete,
                                     distribution=f"{kind}{_family.base.distribution}",
                                     mean_symbol=_family.base.mean_symbol, density=_family.base.density,
                                     working_steps=_family.base.working_steps)
DEFAULT = "gaussian"


def get_family(name: str) -> Family:
    """The family called `name`; a KeyError for an unknown one (the spec validation reports it first)."""
    return FAMILIES[name]
