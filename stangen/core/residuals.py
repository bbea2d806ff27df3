"""The level-1 errors' structure: everything about `residuals:` in one place.

By default the errors are independent with one sd. A spec can make them
- autocorrelated in time within each group of a level (nlme `corAR1` / `corCAR1`): the errors of one series
  are a stationary AR(1) process in its time column, corr(e_s, e_t) = φ^|t − s|. `ar1` takes integer times
  (gaps allowed), φ in (−1, 1); `car1` takes real-valued times, φ in (0, 1);
- heteroscedastic (nlme `varIdent(form = ~1 | g)`): one residual sd per value of a categorical column.
Both together as in nlme: e_i = σ_g(i) · ε_i with ε a unit-variance AR(1) process.

The likelihood is exact and O(N): each series sorted by time, its first observation is normal(μ, σ), each
next one normal(μ_t + φ^Δt · (σ_t/σ_{t−1}) · (y_{t−1} − μ_{t−1}), σ_t · √(1 − φ^{2Δt})) — the Markov
factorization of the multivariate normal with that covariance, vectorized over all series; series boundaries
and gaps are data, so the program does not depend on them.

The objects: a `Residuals` (the whole `residuals:` key; `INDEPENDENT` without it) is made of parts — an
`ErrorSeries` (errors correlated within series, of a `Correlation` kind: AR1, CAR1) and an `SdByValue`
(nlme's varIdent). Everything the rest of stangen needs to know about the errors is a method of Residuals:
the spec's checks, the Stan data, the template pieces (templates/residuals.stan.j2), the numpy densities,
simulation, names in the results, the printout and the report's equations. Nothing outside this module asks
which structure it has (tests/test_residuals.py checks it). To add a correlation kind, add a Correlation
below (and its Stan pieces if the AR(1) ones do not fit); to add a part, add a class with the ResidualPart
hooks and give Residuals a field for it.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from .families import FAMILIES, AuxParameter, Family
from .frames import Collector, label_text, sort_labels

SPEC_KEYS = ("correlation", "time", "level", "sd_by")


@dataclass(frozen=True)
class Correlation:
    """A kind of error correlation within series (an nlme corStruct)."""

    name: str  # as the spec writes it
    label: str  # in messages and printouts
    phi_lower: int  # φ's lower bound: a continuous-time process cannot alternate in sign
    integer_times: bool  # the time column must hold integers
    times: str  # what it takes, for the list of allowed kinds


AR1 = Correlation("ar1", "AR(1)", -1, True, "integer times, gaps allowed")
CAR1 = Correlation("car1", "continuous AR(1)", 0, False, "real-valued times")
CORRELATIONS = {c.name: c for c in (AR1, CAR1)}


# -- the spec ----------------------------------------------------------------------------------------

def check_spec(c, value, family: Family | None, levels: Mapping, outcome, suggest: Callable[[str, Any], str]
               ) -> dict | None:
    """`residuals:` → {correlation, time, level, sd_by} (None where not given), or None without the key.
    `c`: the spec checker (add, keys, string); `suggest(word, options)`: its "did you mean"."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        c.add("residuals", f"must be a mapping ({', '.join(SPEC_KEYS)}), got {value!r}")
        return None
    c.keys(value, SPEC_KEYS, "residuals")
    out = {"correlation": None, "time": None, "level": None, "sd_by": None}
    correlation = value.get("correlation")
    if correlation is not None and correlation not in CORRELATIONS:
        allowed = "; ".join(f"{k.name} — {k.times}" for k in CORRELATIONS.values())
        c.add("residuals.correlation", f"unknown correlation {correlation!r}{suggest(str(correlation), CORRELATIONS)} "
                                       f"(allowed: {allowed})")
    else:
        out["correlation"] = correlation
    out["time"] = c.string(value.get("time"), "residuals.time")
    out["sd_by"] = c.string(value.get("sd_by"), "residuals.sd_by")
    out["level"] = c.string(value.get("level"), "residuals.level")
    if family is not None and not family.residual_structures:
        having = [f.name for f in FAMILIES.values() if f.residual_structures]
        c.add("residuals", f"residual structures are for family {' or '.join(having)} only (this spec's family is "
                           f"{family})")
    if correlation is None and out["sd_by"] is None and "correlation" not in value:
        c.add("residuals", "gives neither `correlation` nor `sd_by`: nothing to change about the residuals")
    if out["correlation"]:
        if out["time"] is None and "time" not in value:
            c.add("residuals.time", f"`correlation: {correlation}` needs `time:`, the column of each observation's "
                                    "time within its series")
        if out["level"] is None and "level" not in value:
            if len(levels) == 1:
                out["level"] = next(iter(levels))
            else:
                c.add("residuals.level", "which level's groups are the series? With "
                                         f"{'no levels' if not levels else 'several levels'}, `level:` is required"
                                         + (f" (levels: {', '.join(levels)})" if levels else ""))
        elif out["level"] is not None and out["level"] not in levels:
            c.add("residuals.level", f"no level named '{out['level']}'{suggest(out['level'], levels)} "
                                     f"(levels: {', '.join(levels) or 'none'})")
            out["level"] = None
    elif (out["time"] is not None or out["level"] is not None) and "correlation" not in value:
        first, *more = CORRELATIONS
        kinds = f"`correlation: {first}`" + "".join(f" or `{k}`" for k in more)
        c.add("residuals", f"`time` and `level` describe correlated errors: give {kinds} too")
    for key in ("time", "sd_by"):
        if out[key] is not None and out[key] == outcome:
            c.add(f"residuals.{key}", "the outcome cannot be used here")
    return out


def spec_series_level(value: Mapping | None) -> str | None:
    """The level whose groups are the error series of a checked `residuals:` (None: independent errors)."""
    return value.get("level") if value and value.get("correlation") else None


def spec_columns(value: Mapping | None) -> dict[str, str]:
    """The data columns a checked `residuals:` uses → the spec path naming each."""
    return {value[key]: f"residuals.{key}" for key in ("time", "sd_by") if value and value.get(key)}


def spec_variables(value: Mapping | None) -> list[str]:
    """The columns a checked `residuals:` reads as categories (they may be listed under `categorical:`)."""
    return [value["sd_by"]] if value and value.get("sd_by") else []


def sub_model_problem(value: Mapping | None, parameter: str) -> str | None:
    """Why a checked `residuals:` cannot go with a sub-model for `parameter` (None: it can): the residual sd
    of correlated errors, or one per value of `sd_by`, is the residual structure's."""
    if parameter != "sigma" or not value:
        return None
    if value.get("correlation"):
        return (f"a sub-model for sigma together with `residuals: correlation: {value['correlation']}` is not "
                "supported yet: the correlated errors' likelihood takes one residual sd; drop one of them")
    if value.get("sd_by"):
        return (f"`residuals: sd_by: {value['sd_by']}` already gives sigma one value per {value['sd_by']}; it is "
                f"the sub-model `sigma: {{predictors: [{value['sd_by']}]}}`: give one of them")
    return None


# -- the parts -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ErrorSeries:
    """Errors correlated in time within each group of a level (nlme corAR1 / corCAR1)."""

    correlation: Correlation
    time: str  # the time column
    level: str  # the level whose groups are the series

    def stan_data(self, df: pd.DataFrame, series: np.ndarray, labels: list[str], c: Collector) -> dict[str, Any]:
        """Which observations start a series, and for each other one the observation before it in its series
        and the time since then. `series`: each row's group (1-based) of the level; `labels`: those groups'
        labels (for messages)."""
        path = "residuals.time"
        time = pd.to_numeric(df[self.time], errors="coerce").to_numpy(dtype=float)
        if np.isnan(time).any():
            i = int(np.flatnonzero(np.isnan(time))[0])
            c.add(path, f"'{self.time}' must hold numbers (times), but is {df[self.time].iloc[i]!r} at row {i + 1}")
            return {}
        if self.correlation.integer_times:
            fractional = time != np.round(time)
            if fractional.any():
                i = int(np.flatnonzero(fractional)[0])
                real_valued = next((k.name for k in CORRELATIONS.values() if not k.integer_times), "")
                c.add(path, f"`correlation: {self.correlation.name}` needs integer times, but '{self.time}' is "
                            f"{time[i]:g} at row {i + 1}{' and more' if fractional.sum() > 1 else ''}; use "
                            f"`correlation: {real_valued}` for real-valued times")
                return {}
        order = np.lexsort((time, series))  # by series, then time
        s, t = series[order], time[order]
        starts = np.r_[True, s[1:] != s[:-1]]
        gaps = np.r_[np.inf, np.diff(t)]
        repeated = ~starts & (gaps == 0)
        if repeated.any():
            shown = []
            for k in np.flatnonzero(repeated)[:3]:
                shown.append(f"'{labels[s[k] - 1]}' at {self.time} {t[k]:g} (rows {order[k - 1] + 1} and "
                             f"{order[k] + 1})")
            c.add(path, f"a series has two observations at the same time: {'; '.join(shown)}"
                        f"{' …' if repeated.sum() > 3 else ''}; each group of '{self.level}' needs distinct times")
            return {}
        following = ~starts
        sizes = np.bincount(series - 1, minlength=len(labels))
        return {"N_first": int(starts.sum()), "obs_first": order[starts] + 1,
                "N_next": int(following.sum()), "obs_next": order[following] + 1,
                "obs_prev": order[np.flatnonzero(following) - 1] + 1,
                "gap": t[following] - t[np.flatnonzero(following) - 1],
                # each group's series as one block: a program that integrates the level's effects out sums over
                # them (series_rows: where each starts in series_obs, then N + 1; Stan's compressed rows)
                "series_obs": order + 1, "series_rows": np.r_[0, np.cumsum(sizes)] + 1}

    @property
    def parameter_name(self) -> str:
        """phi's display name in summaries: 'phi (AR(1), Days within Subject)'."""
        return f"phi ({self.correlation.label}, {self.time} within {self.level})"

    def formula(self) -> str:
        return f"~{self.time} | {self.level}"


@dataclass(frozen=True)
class SdByValue:
    """One residual sd per value of a categorical column (nlme varIdent(form = ~1 | column))."""

    column: str

    def stan_data(self, df: pd.DataFrame, c: Collector) -> tuple[dict[str, Any], list[str]]:
        """Each observation's value (1-based) and the values in order."""
        path = "residuals.sd_by"
        series = df[self.column]
        if pd.api.types.is_float_dtype(series) and (series != series.round()).any():
            c.add(path, f"'{self.column}' must be categorical (a group's label), but has values such as "
                        f"{series[series != series.round()].iloc[0]:g}; one sd per value needs few distinct values")
            return {}, []
        values = series.map(label_text)
        labels = sort_labels(values.unique())
        counts = values.value_counts()
        single = [v for v in labels if counts[v] < 2]
        if single:
            c.add(path, f"value{'s' if len(single) > 1 else ''} {', '.join(repr(v) for v in single[:5])} of "
                        f"'{self.column}' {'have' if len(single) > 1 else 'has'} a single observation: its own "
                        "residual sd cannot be estimated")
        if len(labels) < 2:
            c.add(path, f"'{self.column}' has a single value ({labels[0]!r}): one sd per value is just one sd")
        position = {v: k for k, v in enumerate(labels, start=1)}
        return {"K_sigma": len(labels), "sigma_group": values.map(position).to_numpy(dtype=int)}, labels


# -- the whole structure -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Residuals:
    """The level-1 errors' structure of a model; INDEPENDENT (no parts) without `residuals:`."""

    series: ErrorSeries | None = None
    sd_by: SdByValue | None = None

    @classmethod
    def from_spec(cls, value: Mapping[str, Any] | None) -> "Residuals":
        if not value:
            return INDEPENDENT
        series = ErrorSeries(CORRELATIONS[value["correlation"]], value.get("time"), value.get("level")) \
            if value.get("correlation") else None
        sd_by = SdByValue(value["sd_by"]) if value.get("sd_by") else None
        return cls(series, sd_by)

    @property
    def parts(self) -> tuple:
        return tuple(p for p in (self.sd_by, self.series) if p is not None)

    @property
    def label(self) -> str:
        return self.series.correlation.label if self.series else "independent"

    @property
    def series_level(self) -> str | None:
        """The level whose groups are the error series (None: the errors are not correlated)."""
        return self.series.level if self.series else None

    @property
    def is_default(self) -> bool:
        """Independent errors with one sd (no `residuals:`): what quick estimates of the model assume."""
        return not self.parts

    # -- the model ------------------------------------------------------------------------------
    @property
    def splits_by_rows(self) -> bool:
        """The log-likelihood is a sum over observations (reduce_sum can split it): not with correlated errors,
        whose observations depend on the one before them in their series."""
        return self.series is None

    def threading_problem(self) -> str | None:
        """Why threads within a chain cannot slice this model's likelihood by rows (None: they can)."""
        if self.splits_by_rows:
            return None
        return (f"threads within a chain split the likelihood into slices of rows, but the {self.label} errors "
                f"of `residuals:` tie each observation to the one before it in its {self.series.level} series; "
                "use threads_per_chain: 1 (run more chains in parallel instead)")

    def per_value_of(self, aux: AuxParameter) -> str | None:
        """The column whose values each have their own value of this auxiliary parameter (sd_by: sigma), else
        None (one number for the whole data)."""
        return self.sd_by.column if self.sd_by and aux.name == "sigma" else None

    def has_own_likelihood(self) -> bool:
        """The program's likelihood is this structure's (its template pieces), not the family's."""
        return self.series is not None

    # -- data ------------------------------------------------------------------------------------
    def stan_data(self, df: pd.DataFrame, levels: Mapping[str, dict], usable: set[str], c: Collector
                  ) -> tuple[dict[str, Any], list[str]]:
        """The structure's Stan data, and the values that have their own residual sd (in sigma's order).
        `levels`: each encoded level's {"index", "labels"}; `usable`: the columns that passed the screen."""
        data, labels = {}, []
        if self.sd_by and self.sd_by.column in usable:
            more, labels = self.sd_by.stan_data(df, c)
            data.update(more)
        if self.series and self.series.time in usable and self.series.level in levels:
            level = levels[self.series.level]
            data.update(self.series.stan_data(df, level["index"], level["labels"], c))
        return data, labels

    def slice_rows(self) -> tuple[str, ...]:
        """Per-observation Stan data a threaded likelihood slices by rows."""
        return ("sigma_group",) if self.sd_by else ()

    # -- Stan expressions: Python decides, the templates spell ------------------------------------
    @property
    def sigma_expr(self) -> str:
        """Each observation's residual sd (an N-vector, or the one sd)."""
        return "sigma[sigma_group]" if self.sd_by else "sigma"

    def sd_of(self, index: str) -> str:
        """The residual sds of the observations `index` (an index array, or one index)."""
        return f"sigma[sigma_group[{index}]]" if self.sd_by else "sigma"

    def aux_expr(self, aux: AuxParameter, index: str | None = None) -> str | None:
        """The Stan expression of an auxiliary parameter this structure shapes (sigma), else None."""
        if aux.name != "sigma":
            return None
        return self.sigma_expr if index is None else self.sd_of(index)

    def ratio(self, this: str, before: str, vector: bool = True) -> str:
        """' .* sd(this) ./ sd(before)': the earlier residual on this observation's scale ('' with one sd)."""
        if not self.sd_by:
            return ""
        times, over = (" .* ", " ./ ") if vector else (" * ", " / ")
        return f"{times}{self.sd_of(this)}{over}{self.sd_of(before)}"

    def per_unit_sd(self, expr: str) -> str:
        """The rows of an N-row Stan vector or matrix divided by each observation's residual sd."""
        return f"diag_pre_multiply(inv(sigma[sigma_group]), {expr})" if self.sd_by else f"{expr} / sigma"

    def log_sd_sum(self) -> str:
        """The sum of the observations' log residual sds, in Stan."""
        return "sum(log(sigma[sigma_group]))" if self.sd_by else "N * log(sigma)"

    def standardized(self) -> str:
        """Dividing the errors by their sd, in Stan."""
        return " ./ sigma[sigma_group]" if self.sd_by else " / sigma"

    def pieces(self, slot: str) -> list[str]:
        """The template macros (templates/residuals.stan.j2) that fill a slot of the program: "data" (the data
        block), "parameters", "sigma" (the residual sd's declaration; none: the family's), "likelihood",
        "predictive" (y_rep) and "log_lik" (none: the family's)."""
        if slot == "data":
            return (["sd_by_data"] if self.sd_by else []) + (["series_data"] if self.series else [])
        if slot == "parameters":
            return ["series_parameters"] if self.series else []
        if slot == "sigma":
            return ["sd_by_sigma"] if self.sd_by else []
        if slot in ("likelihood", "predictive", "log_lik"):
            return [f"series_{slot}"] if self.series else []
        raise KeyError(slot)

    def header_line(self, outcome: str, family_line: str) -> str:
        """The program header's first equation (the family's, when the errors are independent)."""
        if not self.parts:
            return family_line
        sd = f"sigma[{self.sd_by.column}[i]]" if self.sd_by else "sigma"
        if self.series:
            t = self.series.time
            return (f"{outcome}[i] = mu[i] + {sd} * a[i],  a: within each {self.series.level} a unit-variance "
                    f"{self.label} process in {t}, corr(a[i], a[k]) = phi^|{t}[i] - {t}[k]|")
        return f"{outcome}[i] ~ normal(mu[i], {sd})"

    def peer_note(self) -> str | None:
        """What an lme4/brms formula cannot say about these errors (a comment in `render --as`)."""
        if not self.parts:
            return None
        series = f"{self.label} in {self.series.time} within {self.series.level}" if self.series else "independent"
        sd_by = f", one sd per value of {self.sd_by.column}" if self.sd_by else ""
        return (f"# stangen's errors: {series}{sd_by} — a formula cannot say this; "
                "nlme::lme(..., correlation = corAR1/corCAR1(form = ~ time | group), weights = varIdent(...)) "
                "or brms's ar() / sigma ~ 0 + sd_by can")

    # -- results ---------------------------------------------------------------------------------
    def value_name(self, aux: AuxParameter, label: str) -> str:
        """The display name of one value's own parameter: 'sigma(group: a)'."""
        return f"{aux.name}({self.per_value_of(aux)}: {label})"

    def own_parameters(self) -> list[tuple[str, str]]:
        """The structure's own parameters: (display name, Stan variable) — phi with correlated errors."""
        return [(self.series.parameter_name, "phi")] if self.series else []

    def mean_variance(self, sigma: np.ndarray, data: Mapping) -> np.ndarray:
        """The residual variance per draw, averaged over the observations (sigma's draws: (chain, draw) or,
        with one sd per value, (chain, draw, value))."""
        if self.sd_by:
            counts = np.bincount(np.asarray(data["sigma_group"]) - 1, minlength=sigma.shape[2])
            return (sigma.reshape(-1, sigma.shape[2]) ** 2) @ (counts / counts.sum())
        return sigma.reshape(-1) ** 2

    def effective_observations(self, posterior, data: Mapping, n: int) -> dict[str, np.ndarray]:
        """With correlated errors, per draw: the information in a series about its mean, 1ᵀC⁻¹1 for its
        error correlation matrix C, averaged over the series, and summed over all of them."""
        if not self.series:
            return {}
        phi = posterior["phi"].values.reshape(-1)
        rho = phi[:, None] ** np.asarray(data["gap"], dtype=float)[None, :]
        within = n - 2 * (rho / (1 + rho)).sum(axis=1)  # summed over all series
        level = self.series.level
        return {f"effective obs per series({level})": within / int(data["N_first"]),
                f"effective N within series({level})": within}

    def effective_observation_lines(self, draws: Mapping[str, np.ndarray], data: Mapping, n: int) -> list[str]:
        """The printout's line of effective observations per series (see effective_observations)."""
        if not self.series:
            return []
        level = self.series.level
        per = draws[f"effective obs per series({level})"]
        lo, hi = np.quantile(per, [0.025, 0.975])
        series = int(data["N_first"])
        return [f"Effective obs per {level} series (AR errors): {per.mean():.2f} [{lo:.2f}, {hi:.2f}] "
                f"of {n / series:.2f}"]

    def printout(self, posterior, sigma_labels: list[str], digits: int,
                 columns: Callable[[list[tuple], int], list[str]]) -> list[str]:
        """nlme's blocks for the errors' structure: 'Correlation Structure' (phi) and 'Variance function'
        (each value's sd relative to the first's); [] for independent errors with one sd. `columns(rows,
        left)`: the printout's column layout."""
        lines = []
        if self.series:
            phi = posterior["phi"].values
            lo, hi = np.quantile(phi, [0.025, 0.975])
            lines += ["", f"Correlation Structure: {self.label}", f" Formula: {self.series.formula()}",
                      " Parameter estimate (posterior mean, 95% interval):",
                      f"  Phi {phi.mean():.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"]
        if self.sd_by:
            sigma = posterior["sigma"].values
            ratio = sigma / sigma[..., :1]
            rows = [tuple(sigma_labels), tuple(f"{ratio[..., k].mean():.{digits}f}" for k in range(len(sigma_labels)))]
            lines += ["", "Variance function:", " Structure: Different standard deviations per stratum",
                      f" Formula: ~1 | {self.sd_by.column}",
                      " Parameter estimates (sd relative to the first, posterior means):"]
            lines += columns(rows, 0)
        return lines

    def sigma_subscript(self, obs: str) -> str:
        """The report's subscript of σ: 'g(i)' with one sd per value, '' with one sd."""
        return f"g({obs})" if self.sd_by else ""

    def error_process(self) -> tuple[str, str, str] | None:
        """The report's error process (level, label, time), or None for independent errors."""
        return (self.series.level, self.label, self.series.time) if self.series else None

    def where_sigma(self) -> str | None:
        """The report's line saying what σ is, when not the one residual sd."""
        return f"σ_g: sigma(…), the residual sd of each value g of {self.sd_by.column}" if self.sd_by else None

    def where_own(self) -> list[str]:
        """The report's lines saying what the structure's own parameters are."""
        if not self.series:
            return []
        return [f"φ: phi, the correlation of a {self.series.level}'s errors one {self.series.time} unit apart"]

    # -- new rows --------------------------------------------------------------------------------
    def new_row_columns(self) -> dict[str, str]:
        """Columns new rows need for response draws → their spec paths (sd_by: which sd applies)."""
        return {self.sd_by.column: "residuals.sd_by"} if self.sd_by else {}

    def new_row_sd_index(self, frame: pd.DataFrame, sigma_labels: list[str], c: Collector,
                         rows_text: Callable[[np.ndarray], str]) -> np.ndarray | None:
        """Each new row's residual sd (0-based index into sigma), or None with one sd or a problem."""
        if not self.sd_by:
            return None
        column = self.sd_by.column
        labels = frame[column].map(label_text)
        unknown = ~labels.isin(sigma_labels).to_numpy()
        if unknown.any():
            c.add("residuals.sd_by", f"'{column}' has value(s) without a fitted residual sd: "
                                     f"{', '.join(repr(v) for v in pd.unique(labels[unknown])[:3])} at "
                                     f"{rows_text(unknown)} (fitted: {', '.join(sigma_labels)})")
            return None
        return labels.map({lab: k for k, lab in enumerate(sigma_labels)}).to_numpy(int)

    def reference_values(self, sigma_labels: list[str]) -> dict[str, str]:
        """A reference row's values of the structure's columns (the first value's sd)."""
        return {self.sd_by.column: sigma_labels[0]} if self.sd_by else {}

    # -- simulation ------------------------------------------------------------------------------
    def simulated_columns(self, df: pd.DataFrame, series_column: Callable[[str], str], rng) -> None:
        """Add the structure's columns to a simulated design: a series' time 0, 1, 2, … over its rows; the
        sd_by column 'a' or 'b' with equal probability. `series_column(level)`: the level's id column."""
        if self.series:
            df[self.series.time] = df.groupby(series_column(self.series.level)).cumcount()
        if self.sd_by and self.sd_by.column not in df:
            df[self.sd_by.column] = rng.choice(["a", "b"], len(df))

    def true_values(self, params: Mapping, sigma_labels: list[str], aux_names, problem) -> dict[str, Any]:
        """The structure's true values from a params file: sigma per value, phi. `problem(path, message)`."""
        truth: dict[str, Any] = {}
        if "sigma" in aux_names and self.sd_by:
            given = params.get("sigma")
            given = {str(k): v for k, v in given.items()} if isinstance(given, dict) else given
            if isinstance(given, dict) and set(given) >= set(sigma_labels):
                truth["sigma"] = {label: float(given[label]) for label in sigma_labels}
            elif isinstance(given, (int, float)) and not isinstance(given, bool):
                truth["sigma"] = {label: float(given) for label in sigma_labels}
            else:
                problem("params.sigma", f"the residual sd of each value of '{self.sd_by.column}' "
                                        f"({', '.join(sigma_labels)}), or one number for all")
                truth["sigma"] = {label: 1.0 for label in sigma_labels}
        return truth

    def true_phi(self, params: Mapping, problem) -> dict[str, float]:
        """phi from a params file (after the family's parameters, as simulation reads them)."""
        if not self.series:
            return {}
        phi, lower = params.get("phi"), self.series.correlation.phi_lower
        if not isinstance(phi, (int, float)) or isinstance(phi, bool) or not lower < phi < 1:
            problem("params.phi", f"the errors' correlation one {self.series.time} unit apart, in "
                                  f"({lower}, 1), got {phi!r}")
            phi = 0.5
        return {"phi": float(phi)}

    def prior_draws(self, rng) -> dict[str, float]:
        """The structure's own parameters drawn from their priors (phi: uniform on its range)."""
        return {"phi": float(rng.uniform(self.series.correlation.phi_lower, 1))} if self.series else {}

    def truth_names(self, truth: Mapping, aux: AuxParameter, sigma_labels: list[str]) -> dict[str, float] | None:
        """True values of a per-value parameter under their summary names (None: not per value)."""
        if self.per_value_of(aux) is None:
            return None
        return {self.value_name(aux, label): truth[aux.name][label] for label in sigma_labels}

    def own_truth_names(self, truth: Mapping) -> dict[str, float]:
        return {self.series.parameter_name: truth["phi"]} if self.series else {}

    def draw_errors(self, truth: Mapping, data: Mapping, sigma_labels: list[str], n: int, rng) -> np.ndarray:
        """Gaussian errors: independent with one sd, or an sd per value and/or AR(1) within each series,
        drawn series by series in time order (the order of obs_next)."""
        if self.sd_by:
            sd = np.array([truth["sigma"][label] for label in sigma_labels])[np.asarray(data["sigma_group"]) - 1]
        else:
            sd = np.full(n, float(truth["sigma"]))
        if not self.series:
            return rng.normal(0, sd)
        a = np.empty(n)  # the unit-variance AR process
        first = np.asarray(data["obs_first"]) - 1
        a[first] = rng.normal(0, 1, len(first))
        rho = truth["phi"] ** np.asarray(data["gap"], dtype=float)
        for i, j, r in zip(np.asarray(data["obs_next"]) - 1, np.asarray(data["obs_prev"]) - 1, rho):
            a[i] = r * a[j] + rng.normal(0, np.sqrt(1 - r * r))
        return sd * a


INDEPENDENT = Residuals()


# -- numpy densities (the program's, for tests and checks) ------------------------------------------------

def ar1_loo_log_density(r: np.ndarray, sd: np.ndarray, phi: float, nxt: np.ndarray, prev: np.ndarray,
                        gap: np.ndarray) -> np.ndarray:
    """Each observation's log density given all the others of its series, as the program's log_lik computes
    it (numpy, 0-based indices; tests compare it with the multivariate normal's conditionals)."""

    e = r / sd
    rho = phi ** gap
    w, c = rho ** 2 / (1 - rho ** 2), rho / (1 - rho ** 2)
    precision, linear = np.ones(len(r)), np.zeros(len(r))
    np.add.at(precision, nxt, w)
    np.add.at(precision, prev, w)
    np.add.at(linear, nxt, c * e[prev])
    np.add.at(linear, prev, c * e[nxt])
    return norm.logpdf(e, linear / precision, 1 / np.sqrt(precision)) - np.log(sd)


def ar1_log_density(r: np.ndarray, sd: np.ndarray, phi: float, first: np.ndarray, nxt: np.ndarray,
                    prev: np.ndarray, gap: np.ndarray) -> float:
    """The conditional (Markov) factorization in numpy, as the program computes it; 0-based indices.
    (tests compare it with the multivariate normal density.)"""

    phi_gap = phi ** gap
    return float(norm.logpdf(r[first], 0, sd[first]).sum() + norm.logpdf(
        r[nxt], phi_gap * sd[nxt] / sd[prev] * r[prev], sd[nxt] * np.sqrt(1 - phi_gap ** 2)).sum())
