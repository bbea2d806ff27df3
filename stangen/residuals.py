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
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .data import _Collector

# how each correlation is named in messages and in nlme's printout
LABELS = {"ar1": "AR(1)", "car1": "continuous AR(1)"}


@dataclass(frozen=True)
class Residuals:
    correlation: str | None  # None | "ar1" | "car1"
    time: str | None  # the time column (with a correlation)
    level: str | None  # the level whose groups are the series (with a correlation)
    sd_by: str | None  # the column whose values get their own sd

    @classmethod
    def from_spec(cls, value: Mapping[str, Any] | None) -> "Residuals | None":
        if not value:
            return None
        return cls(value.get("correlation"), value.get("time"), value.get("level"), value.get("sd_by"))

    @property
    def label(self) -> str:
        return LABELS.get(self.correlation or "", "independent")

    @property
    def splits_by_rows(self) -> bool:
        """The log-likelihood is a sum over observations (reduce_sum can split it): not with correlated errors,
        whose observations depend on the one before them in their series."""
        return self.correlation is None

    @property
    def phi_lower(self) -> int:
        """φ's lower bound: a continuous-time process cannot alternate in sign."""
        return 0 if self.correlation == "car1" else -1

    # Stan expressions of residual sds: Python decides, the templates spell
    @property
    def sigma_expr(self) -> str:
        """Each observation's residual sd (an N-vector, or the one sd)."""
        return "sigma[sigma_group]" if self.sd_by else "sigma"

    def sd_of(self, index: str) -> str:
        """The residual sds of the observations `index` (an index array, or one index)."""
        return f"sigma[sigma_group[{index}]]" if self.sd_by else "sigma"

    def ratio(self, this: str, before: str, vector: bool = True) -> str:
        """' .* sd(this) ./ sd(before)': the earlier residual on this observation's scale ('' with one sd)."""
        if not self.sd_by:
            return ""
        times, over = (" .* ", " ./ ") if vector else (" * ", " / ")
        return f"{times}{self.sd_of(this)}{over}{self.sd_of(before)}"

    def formula(self) -> str:
        """nlme's notation: '~age | subject' (correlation), '~1 | group' (sd_by)."""
        return f"~{self.time} | {self.level}" if self.correlation else f"~1 | {self.sd_by}"


def series_data(res: Residuals, df: pd.DataFrame, series: np.ndarray, labels: list[str], c: "_Collector",
                ) -> dict[str, Any]:
    """Stan data of the correlated errors: which observations start a series, and for each other one the
    observation before it in its series and the time since then. `series`: each row's group (1-based) of the
    level `res.level`; `labels`: those groups' labels (for messages)."""
    path = "residuals.time"
    time = pd.to_numeric(df[res.time], errors="coerce").to_numpy(dtype=float)
    if np.isnan(time).any():
        i = int(np.flatnonzero(np.isnan(time))[0])
        c.add(path, f"'{res.time}' must hold numbers (times), but is {df[res.time].iloc[i]!r} at row {i + 1}")
        return {}
    if res.correlation == "ar1":
        fractional = time != np.round(time)
        if fractional.any():
            i = int(np.flatnonzero(fractional)[0])
            c.add(path, f"`correlation: ar1` needs integer times, but '{res.time}' is {time[i]:g} at row {i + 1}"
                        f"{' and more' if fractional.sum() > 1 else ''}; use `correlation: car1` for real-valued times")
            return {}
    order = np.lexsort((time, series))  # by series, then time
    s, t = series[order], time[order]
    starts = np.r_[True, s[1:] != s[:-1]]
    gaps = np.r_[np.inf, np.diff(t)]
    repeated = ~starts & (gaps == 0)
    if repeated.any():
        shown = []
        for k in np.flatnonzero(repeated)[:3]:
            shown.append(f"'{labels[s[k] - 1]}' at {res.time} {t[k]:g} (rows {order[k - 1] + 1} and {order[k] + 1})")
        c.add(path, f"a series has two observations at the same time: {'; '.join(shown)}"
                    f"{' …' if repeated.sum() > 3 else ''}; each group of '{res.level}' needs distinct times")
        return {}
    following = ~starts
    return {"N_first": int(starts.sum()), "obs_first": order[starts] + 1,
            "N_next": int(following.sum()), "obs_next": order[following] + 1,
            "obs_prev": order[np.flatnonzero(following) - 1] + 1, "gap": t[following] - t[np.flatnonzero(following) - 1]}


def sd_groups(res: Residuals, df: pd.DataFrame, c: "_Collector") -> tuple[dict[str, Any], list[str]]:
    """Stan data of `sd_by` (each observation's value, 1-based) and the values in order."""
    from .data import label_text, sort_labels

    path = "residuals.sd_by"
    series = df[res.sd_by]
    if pd.api.types.is_float_dtype(series) and (series != series.round()).any():
        c.add(path, f"'{res.sd_by}' must be categorical (a group's label), but has values such as "
                    f"{series[series != series.round()].iloc[0]:g}; one sd per value needs few distinct values")
        return {}, []
    values = series.map(label_text)
    labels = sort_labels(values.unique())
    counts = values.value_counts()
    single = [v for v in labels if counts[v] < 2]
    if single:
        c.add(path, f"value{'s' if len(single) > 1 else ''} {', '.join(repr(v) for v in single[:5])} of "
                    f"'{res.sd_by}' {'have' if len(single) > 1 else 'has'} a single observation: its own residual "
                    "sd cannot be estimated")
    if len(labels) < 2:
        c.add(path, f"'{res.sd_by}' has a single value ({labels[0]!r}): one sd per value is just one sd")
    position = {v: k for k, v in enumerate(labels, start=1)}
    return {"K_sigma": len(labels), "sigma_group": values.map(position).to_numpy(dtype=int)}, labels


def ar1_loo_log_density(r: np.ndarray, sd: np.ndarray, phi: float, nxt: np.ndarray, prev: np.ndarray,
                        gap: np.ndarray) -> np.ndarray:
    """Each observation's log density given all the others of its series, as the program's log_lik computes
    it (numpy, 0-based indices; tests compare it with the multivariate normal's conditionals)."""
    from scipy.stats import norm

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
    from scipy.stats import norm

    phi_gap = phi ** gap
    return float(norm.logpdf(r[first], 0, sd[first]).sum() + norm.logpdf(
        r[nxt], phi_gap * sd[nxt] / sd[prev] * r[prev], sd[nxt] * np.sqrt(1 - phi_gap ** 2)).sum())
