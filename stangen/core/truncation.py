"""Truncated outcomes: everything about `truncation:` in one place.

A truncated outcome was only ever recorded inside a range: values outside it never made it into the data
(a count of at least 1, a reading below the instrument's maximum). Each row's density is the family's divided
by the probability of the range, P(L ≤ Y ≤ U); for a count the lower bound is included, P(Y ≥ L) =
1 − F(L − 1). A bound is a number or a column (per-row bounds); either way the program reads it as data, so
the same program serves both.

The likelihood subtracts log P(range) of every row, vectorized for one bound (Stan's vectorized lccdf/lcdf),
one row at a time for two (log_diff_exp of two log CDFs). `log_lik` is the truncated density; `y_rep` and
`simulate` draw inside the range (rejection: a draw outside it is drawn again, at most MAX_TRIES times).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .families import Family, cdf_problem, linear_predictor_vector
from .frames import Collector, rows_text

SPEC_KEYS = ("lower", "upper")
MAX_TRIES = 1000  # draws of one y_rep value before the last is kept (a range of tiny probability)


def _bound(c, value, path: str) -> float | str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        c.add(path, f"must be a number or a column name, got {value!r}")
        return None
    if isinstance(value, (int, float)):
        if not np.isfinite(value):
            c.add(path, f"must be finite (leave the bound out for none), got {value!r}")
            return None
        return float(value)
    return value


def check_spec(c, value, family: Family | None, outcome) -> dict | None:
    """`truncation:` → {lower, upper} (each a number, a column name or None), or None without the key."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        c.add("truncation", f"must be a mapping (lower, upper: numbers or column names), e.g. {{lower: 0}}; got {value!r}")
        return None
    c.keys(value, SPEC_KEYS, "truncation")
    out = {key: _bound(c, value.get(key), f"truncation.{key}") for key in SPEC_KEYS}
    if out["lower"] is None and out["upper"] is None and not any(k in value for k in SPEC_KEYS):
        c.add("truncation", "gives neither `lower` nor `upper`: nothing is truncated")
    if isinstance(out["lower"], float) and isinstance(out["upper"], float) and out["lower"] >= out["upper"]:
        c.add("truncation", f"lower ({out['lower']:g}) must be below upper ({out['upper']:g})")
    for key in SPEC_KEYS:
        if out[key] == outcome:
            c.add(f"truncation.{key}", f"'{outcome}' is the outcome; a bound is a number or another column")
    problem = cdf_problem(family, "truncation")
    if problem:
        c.add("truncation", problem)
    return out


def spec_columns(value: Mapping | None) -> dict[str, str]:
    """The bound columns a checked `truncation:` reads → their spec paths."""
    return {v: f"truncation.{k}" for k, v in (value or {}).items() if isinstance(v, str)}


@dataclass(frozen=True)
class Truncation:
    lower: float | str | None = None
    upper: float | str | None = None

    @classmethod
    def from_spec(cls, value: Mapping | None) -> "Truncation | None":
        return cls(value.get("lower"), value.get("upper")) if value else None

    @property
    def bounds(self) -> tuple[str, ...]:
        return tuple(k for k in SPEC_KEYS if getattr(self, k) is not None)

    def columns(self) -> dict[str, str]:
        """The bound columns → their spec paths (a bound given as a number has none)."""
        return spec_columns({k: getattr(self, k) for k in SPEC_KEYS})

    def text(self) -> str:
        """'[1, ∞)', '[0, 100]', '(-∞, limit]' (a column's name for a per-row bound)."""
        lo = "-∞" if self.lower is None else (f"{self.lower:g}" if isinstance(self.lower, float) else self.lower)
        hi = "∞" if self.upper is None else (f"{self.upper:g}" if isinstance(self.upper, float) else self.upper)
        return f"{'(' if self.lower is None else '['}{lo}, {hi}{')' if self.upper is None else ']'}"

    # -- data ------------------------------------------------------------------------------------
    def values(self, df: pd.DataFrame, key: str) -> np.ndarray | None:
        """Each row's bound `key` (None: the bound is not given)."""
        bound = getattr(self, key)
        if bound is None:
            return None
        if isinstance(bound, str):
            return pd.to_numeric(df[bound], errors="coerce").to_numpy(dtype=float)
        return np.full(len(df), float(bound))

    def stan_data(self, df: pd.DataFrame, y: np.ndarray | None, discrete: bool, c: Collector) -> dict[str, Any]:
        """Each row's bounds (`truncation_lower`, `truncation_upper`), checked: numbers, lower below upper, the
        outcome inside them (rows named)."""
        out: dict[str, Any] = {}
        bounds = {}
        for key in self.bounds:
            values = self.values(df, key)
            path = f"truncation.{key}"
            if not np.isfinite(values).all():
                c.add(path, f"'{getattr(self, key)}' has no number at {rows_text(~np.isfinite(values))}")
                return {}
            if discrete and (values != np.round(values)).any():
                c.add(path, f"a count's bounds are whole numbers; not at {rows_text(values != np.round(values))}")
                return {}
            bounds[key] = values
            out[f"truncation_{key}"] = np.round(values).astype(int) if discrete else values
        if len(bounds) == 2 and (bounds["lower"] >= bounds["upper"]).any():
            c.add("truncation", f"lower must be below upper; not at {rows_text(bounds['lower'] >= bounds['upper'])}")
            return {}
        if y is not None:
            outside = np.zeros(len(y), dtype=bool)
            for key, values in bounds.items():
                outside |= (y < values) if key == "lower" else (y > values)
            if outside.any():
                c.add("truncation", f"outcome values outside the truncation range {self.text()} at "
                                    f"{rows_text(outside)} (e.g. {y[outside][0]:g}): a truncated outcome has none there")
                return {}
        return out

    # -- Stan ------------------------------------------------------------------------------------
    def data_lines(self, discrete: bool) -> list[str]:
        kind = "array[N] int" if discrete else "vector[N]"
        return [f"{kind} truncation_{key};  // truncation: each row's {key} bound "
                f"({getattr(self, key) if isinstance(getattr(self, key), str) else 'the same for all'})"
                for key in self.bounds]

    def transformed_data(self, family: Family) -> list[str]:
        """A count truncated below at L keeps L: P(Y ≥ L) = P(Y > L − 1)."""
        if not family.discrete or self.lower is None:
            return []
        return ["array[N] int truncation_lower_below;  // counts: at least the lower bound, so above it - 1",
                "for (i in 1:N) truncation_lower_below[i] = truncation_lower[i] - 1;"]

    def _lower(self, discrete: bool, i: str = "") -> str:
        return f"truncation_lower_below{i}" if discrete else f"truncation_lower{i}"

    def log_probability_at(self, family: Family, mu: str, i: str, aux: Mapping[str, str]) -> str:
        """log P(lower ≤ Y ≤ upper) of row i."""
        params = family.cdf_params(f"{mu}[{i}]", aux)
        lower, upper = self._lower(family.discrete, f"[{i}]"), f"truncation_upper[{i}]"
        if self.lower is not None and self.upper is not None:
            return (f"log_diff_exp({family.cdf}_lcdf({upper} | {params}), "
                    f"{family.cdf}_lcdf({lower} | {params}))")
        if self.lower is not None:
            return f"{family.cdf}_lccdf({lower} | {params})"
        return f"{family.cdf}_lcdf({upper} | {params})"

    def likelihood(self, family: Family, alpha: str, pooled: bool, aux_at: Callable[[str | None], Mapping[str, str]]) -> str:
        """The lines after the family's likelihood: minus each row's log P(range)."""
        lines, mu = linear_predictor_vector(alpha, pooled)
        if len(self.bounds) == 2 or not family.cdf_vectorized:  # (see Family.cdf_vectorized)
            lines += [f"for (i in 1:N) {{  // truncation: each row's density over P({self.text()})",
                      f"  target += -{self.log_probability_at(family, mu, 'i', aux_at('i'))};", "}"]
        else:
            params = family.cdf_params(mu, aux_at(None))
            if self.lower is not None:
                lines.append(f"target += -{family.cdf}_lccdf({self._lower(family.discrete)} | {params});"
                             f"  // truncation: each row's density over P({self.text()})")
            else:
                lines.append(f"target += -{family.cdf}_lcdf(truncation_upper | {params});"
                             f"  // truncation: each row's density over P({self.text()})")
        return "\n    ".join(lines)

    def predictive_draws(self, family: Family, eta: str, aux: Mapping[str, str]) -> str:
        """y_rep inside the range, row by row: a draw outside it is drawn again (at most MAX_TRIES times)."""
        draw = f"{family.density}_rng({family.density_params(f'{eta}[i]', aux)})"
        inside = " && ".join((["y_rep[i] >= truncation_lower[i]"] if self.lower is not None else []) +
                             (["y_rep[i] <= truncation_upper[i]"] if self.upper is not None else []))
        return "\n    ".join([
            f"for (i in 1:N) {{  // inside the truncation range {self.text()}: drawn again while outside",
            f"  y_rep[i] = {draw};",
            f"  for (t in 1:{MAX_TRIES}) {{",
            f"    if ({inside}) break;",
            f"    y_rep[i] = {draw};",
            "  }",
            "}"])

    # -- numpy -----------------------------------------------------------------------------------
    def outside(self, y: np.ndarray, data: Mapping) -> np.ndarray:
        """The rows whose value lies outside the range (`data`: the Stan data, with the rows' bounds)."""
        out = np.zeros(len(y), dtype=bool)
        for key in self.bounds:
            values = np.asarray(data[f"truncation_{key}"], dtype=float)
            out |= (y < values) if key == "lower" else (y > values)
        return out

    def redraw(self, y: np.ndarray, data: Mapping, draw: Callable[[], np.ndarray]) -> np.ndarray:
        """`y` with the values outside the range drawn again from `draw()` (all rows' new values) until
        inside, at most MAX_TRIES times (simulate's truncated draws)."""
        y = np.array(y)
        for _ in range(MAX_TRIES):
            bad = self.outside(y, data)
            if not bad.any():
                break
            y[bad] = draw()[bad]
        return y

    def into_range(self, y: np.ndarray, df: pd.DataFrame) -> np.ndarray:
        """`y` moved into the range (a placeholder outcome for a simulated design)."""
        y = np.array(y, dtype=float)
        lower, upper = self.values(df, "lower"), self.values(df, "upper")
        if lower is not None:
            y = np.maximum(y, lower)
        if upper is not None:
            y = np.minimum(y, upper)
        return y

    # -- peers and the report ------------------------------------------------------------------------
    def brms_addition(self, r_name: Callable[[str], str]) -> str:
        def text(v):
            return f"{v:g}" if isinstance(v, float) else r_name(v)
        parts = ([f"lb = {text(self.lower)}"] if self.lower is not None else []) + \
            ([f"ub = {text(self.upper)}"] if self.upper is not None else [])
        return f"trunc({', '.join(parts)})"

    def where_line(self, outcome: str) -> str:
        return f"{outcome} is truncated to {self.text()}: each density is divided by the probability of that range"
