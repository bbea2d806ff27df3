"""Censored outcomes: everything about `censoring:` in one place.

A censored row's value is a bound, not a measurement: `left` — the true value is at most y (below a detection
limit reported as the limit); `right` — at least y (follow-up ended before the event); `interval` — above y
and at most the row's `upper` value. Each row's kind is a column of the data, written `none`, `left`, `right`,
`interval` or as brms's 0, -1, 1, 2. For a count (a discrete outcome) "at least y" is P(Y ≥ y) = 1 − F(y − 1).

The likelihood splits the rows by kind as data: the observed rows through the family's density, the left and
right ones through its log CDF / log complementary CDF (each vectorized), the interval ones through
log(F(upper) − F(y)), one row at a time (Stan's vectorized CDFs return only their sum). A family takes
censoring when it names its CDF (Family.cdf); `log_lik` is each row's censored likelihood; `y_rep` draws
uncensored values.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .families import Family, cdf_problem, linear_predictor_vector
from .frames import Collector, label_text, rows_text

SPEC_KEYS = ("column", "upper")
# a row's kind as the data may write it → its code (brms's: 0 none, -1 left, 1 right, 2 interval)
KINDS = {"none": 0, "left": -1, "right": 1, "interval": 2}
CODES = {"0": 0, "-1": -1, "1": 1, "2": 2}


def check_spec(c, value, family: Family | None, outcome) -> dict | None:
    """`censoring:` → {column, upper} (upper None when not given), or None without the key. `c`: the spec
    checker (add, keys, string)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = {"column": value}
    if not isinstance(value, Mapping):
        c.add("censoring", f"must be a mapping ({', '.join(SPEC_KEYS)}), e.g. {{column: status, upper: time_upper}}; "
                           f"got {value!r}")
        return None
    c.keys(value, SPEC_KEYS, "censoring")
    out = {"column": c.string(value.get("column"), "censoring.column", required=True),
           "upper": c.string(value.get("upper"), "censoring.upper")}
    for key in SPEC_KEYS:
        if out[key] is not None and out[key] == outcome:
            c.add(f"censoring.{key}", f"'{outcome}' is the outcome; censoring.{key} names another column")
    problem = cdf_problem(family, "censoring")
    if problem:
        c.add("censoring", problem)
    return out


def spec_columns(value: Mapping | None) -> dict[str, str]:
    """The columns a checked `censoring:` reads for every row → their spec paths (`upper` is read for the
    interval rows only: elsewhere it may be empty)."""
    return {value["column"]: "censoring.column"} if value and value.get("column") else {}


@dataclass(frozen=True)
class Censoring:
    column: str
    upper: str | None = None

    @classmethod
    def from_spec(cls, value: Mapping | None) -> "Censoring | None":
        return cls(value["column"], value.get("upper")) if value else None

    # -- data ------------------------------------------------------------------------------------
    def stan_data(self, df: pd.DataFrame, y: np.ndarray | None, discrete: bool, c: Collector) -> dict[str, Any]:
        """Each row's kind (`censoring`, brms's codes), the rows of each kind, and the interval rows' upper
        bounds; checked, naming rows."""
        path = "censoring.column"
        text = df[self.column].map(label_text).str.strip().str.lower()
        codes = text.map(lambda v: KINDS.get(v, CODES.get(v.removesuffix(".0"))))
        unknown = codes.isna().to_numpy()
        if unknown.any():
            examples = ", ".join(repr(v) for v in pd.unique(df[self.column][unknown])[:3])
            c.add(path, f"'{self.column}' has values {examples} at {rows_text(unknown)}; a row's censoring is none, "
                        "left, right or interval (or brms's 0, -1, 1, 2)")
            return {}
        kind = codes.to_numpy(dtype=int)
        interval = kind == 2
        upper = np.zeros(len(df))
        if interval.any():
            if self.upper is None:
                c.add("censoring.upper", f"rows {rows_text(interval)} are interval-censored: `upper:` must name the "
                                         "column of their upper bounds")
                return {}
            if self.upper not in df.columns:
                c.add("censoring.upper", f"column '{self.upper}' is not in the data")
                return {}
            bound = pd.to_numeric(df[self.upper], errors="coerce").to_numpy(dtype=float)
            bad = interval & ~np.isfinite(bound)
            if bad.any():
                c.add("censoring.upper", f"'{self.upper}' has no number at {rows_text(bad)}, which are interval-censored")
                return {}
            if y is not None:
                below = interval & (bound <= y)
                if below.any():
                    c.add("censoring.upper", f"an interval's upper bound must be above the value ({y[below][0]:g} "
                                             f"to {bound[below][0]:g}) at {rows_text(below)}")
                    return {}
            upper = np.where(interval, bound, 0.0)
            if discrete and (upper[interval] != np.round(upper[interval])).any():
                c.add("censoring.upper", f"a count's interval bounds are whole numbers; '{self.upper}' is not at "
                                         f"{rows_text(interval & (upper != np.round(upper)))}")
                return {}
        out: dict[str, Any] = {"censoring": kind}
        for name, code in (("obs", 0), ("left", -1), ("right", 1), ("interval", 2)):
            rows = np.flatnonzero(kind == code) + 1
            out[f"N_{name}"] = len(rows)
            out[f"{name}_rows"] = rows
        out["censoring_upper"] = np.round(upper).astype(int) if discrete else upper
        return out

    @staticmethod
    def counts(data: Mapping) -> str:
        """'Censored: 48 right, 12 left of 600' (the printout's line)."""
        parts = [f"{int(data[f'N_{k}'])} {k}" for k in ("left", "right", "interval") if int(data.get(f"N_{k}", 0))]
        return f"Censored: {', '.join(parts) or 'none'} of {len(data['censoring'])}"

    # -- Stan ------------------------------------------------------------------------------------
    def data_lines(self, discrete: bool) -> list[str]:
        bound = "array[N] int" if discrete else "vector[N]"
        return [f"// censoring: each row's kind from '{self.column}' (0 observed, -1 left: at most y, 1 right: at least y,",
                f"// 2 interval: above y, at most its upper bound{' from ' + repr(self.upper) if self.upper else ''})",
                "array[N] int<lower=-1, upper=2> censoring;",
                f"{bound} censoring_upper;  // the interval rows' upper bounds (0 elsewhere)",
                *(f"int<lower=0> N_{k};  // {k} rows" if k != "obs" else "int<lower=0> N_obs;  // observed rows"
                  for k in ("obs", "left", "right", "interval")),
                *(f"array[N_{k}] int<lower=1, upper=N> {k}_rows;" for k in ("obs", "left", "right", "interval"))]

    def likelihood(self, family: Family, alpha: str, pooled: bool, aux_at: Callable[[str], Mapping[str, str]]) -> str:
        """The `target +=` lines: observed rows by the density, left/right by the log (complementary) CDF,
        interval rows one at a time. `alpha`, `pooled`: the linear predictor (Family.likelihood's);
        `aux_at(rows)`: the auxiliary parameters at the rows `rows`."""
        kind = "lupmf" if family.discrete else "lupdf"
        lines, mu = linear_predictor_vector(alpha, pooled)
        lines += [f"target += {family.density}_{kind}(y[obs_rows] | "
                 f"{family.density_params(f'{mu}[obs_rows]', aux_at('obs_rows'))});  // observed rows",
        ]
        if family.cdf_vectorized:
            at_least = "y_right_below" if family.discrete else "y[right_rows]"
            lines += [f"target += {family.cdf}_lcdf(y[left_rows] | "
                      f"{family.cdf_params(f'{mu}[left_rows]', aux_at('left_rows'))});  // left-censored: at most y",
                      f"target += {family.cdf}_lccdf({at_least} | "
                      f"{family.cdf_params(f'{mu}[right_rows]', aux_at('right_rows'))});  // right-censored: at least y"]
        else:  # row by row (see Family.cdf_vectorized)
            left, right = "left_rows[k]", "right_rows[k]"
            below = " - 1" if family.discrete else ""
            lines += [f"for (k in 1:N_left) target += {family.cdf}_lcdf(y[{left}] | "
                      f"{family.cdf_params(f'{mu}[{left}]', aux_at(left))});  // left-censored: at most y",
                      f"for (k in 1:N_right) target += {family.cdf}_lccdf(y[{right}]{below} | "
                      f"{family.cdf_params(f'{mu}[{right}]', aux_at(right))});  // right-censored: at least y"]
        at_k = aux_at("interval_rows[k]")
        params = family.cdf_params(f"{mu}[interval_rows[k]]", at_k)
        lines += ["for (k in 1:N_interval) {  // interval-censored: above y, at most the upper bound",
                  f"  target += log_diff_exp({family.cdf}_lcdf(censoring_upper[interval_rows[k]] | {params}),",
                  f"                         {family.cdf}_lcdf(y[interval_rows[k]] | {params}));",
                  "}"]
        return "\n    ".join(lines)

    def transformed_data(self, family: Family) -> list[str]:
        """A count right-censored at y is at least y: P(Y > y − 1), the complementary CDF at y − 1 (for the
        vectorized call; row by row it is written y - 1)."""
        if not family.discrete or not family.cdf_vectorized:
            return []
        return ["array[N_right] int y_right_below;  // right-censored counts: at least y, so above y - 1",
                "for (k in 1:N_right) y_right_below[k] = y[right_rows[k]] - 1;"]

    def log_density_at(self, family: Family, mu: str, i: str, aux: Mapping[str, str]) -> str:
        """Row i's censored log-likelihood (for log_lik)."""
        params = family.cdf_params(f"{mu}[{i}]", aux)
        at_least = f"y[{i}] - 1" if family.discrete else f"y[{i}]"
        return (f"censoring[{i}] == 0 ? {family.log_density_at(mu, i, aux)}"
                f" : censoring[{i}] == -1 ? {family.cdf}_lcdf(y[{i}] | {params})"
                f" : censoring[{i}] == 1 ? {family.cdf}_lccdf({at_least} | {params})"
                f" : log_diff_exp({family.cdf}_lcdf(censoring_upper[{i}] | {params}), {family.cdf}_lcdf(y[{i}] | {params}))")

    # -- peers and the report ------------------------------------------------------------------------
    def brms_addition(self, r_name: Callable[[str], str]) -> str:
        return f"cens({r_name(self.column)}{', ' + r_name(self.upper) if self.upper else ''})"

    def where_line(self, outcome: str) -> str:
        return (f"{outcome} is censored where '{self.column}' says so: left, at most y; right, at least y; "
                f"interval, above y and at most {self.upper or 'its upper bound'}")
