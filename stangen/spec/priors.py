"""Prior statements as the spec writes them: ``normal(0, 2.5)``, ``exponential(1)``, ``lkj(2)``.

The *family* of a prior is part of the model's structure (it appears in the Stan
program); its *numbers* are data, so changing a prior scale never recompiles.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from scipy import stats

# family → (argument names, arguments that must be > 0)
FAMILIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "normal": (("location", "scale"), ("scale",)),
    "student_t": (("df", "location", "scale"), ("df", "scale")),
    "cauchy": (("location", "scale"), ("scale",)),
    "exponential": (("rate",), ("rate",)),
    "gamma": (("shape", "rate"), ("shape", "rate")),
    "lkj": (("eta",), ("eta",)),
    "beta": (("a", "b"), ("a", "b")),
}

# family → its distribution as scipy has it (named arguments as numbers); lkj has none (a matrix, not a number)
DISTRIBUTIONS = {
    "normal": lambda a: stats.norm(a["location"], a["scale"]),
    "student_t": lambda a: stats.t(a["df"], a["location"], a["scale"]),
    "cauchy": lambda a: stats.cauchy(a["location"], a["scale"]),
    "exponential": lambda a: stats.expon(scale=1 / a["rate"]),
    "gamma": lambda a: stats.gamma(a["shape"], scale=1 / a["rate"]),
    "beta": lambda a: stats.beta(a["a"], a["b"]),
}


def draw_prior(family: str, args: dict[str, float], size: int, rng: np.random.Generator,
               lower: float | None = None, upper: float | None = None) -> np.ndarray | None:
    """`size` draws from a prior on a number, inside the parameter's declared bounds as Stan truncates it (a
    normal on an sd: half-normal), by the inverse CDF between the bounds' probabilities; None for a family with
    no draws here (lkj) or no probability inside the bounds."""
    make = DISTRIBUTIONS.get(family)
    if make is None:
        return None
    distribution = make(args)
    low = distribution.cdf(lower) if lower is not None else 0.0
    high = distribution.cdf(upper) if upper is not None else 1.0
    if not high > low:
        return None
    draws = distribution.ppf(rng.uniform(low, high, size))
    return draws[np.isfinite(draws)]


# prior class → families allowed for it
CLASS_FAMILIES: dict[str, tuple[str, ...]] = {
    "coefficient": ("normal", "student_t", "cauchy"),
    "scale": ("normal", "student_t", "cauchy", "exponential", "gamma"),
    "correlation": ("lkj",),
    "probability": ("beta",),  # a parameter between 0 and 1 (a zero-inflated family's zi, a hurdle's hu)
}

_PRIOR_RE = re.compile(r"^\s*([A-Za-z_]+)\s*\((.*)\)\s*$")


@dataclass(frozen=True)
class Prior:
    family: str
    args: tuple[float, ...]

    def __str__(self) -> str:
        return f"{self.family}({', '.join(_fmt(a) for a in self.args)})"

    @property
    def named_args(self) -> dict[str, float]:
        return dict(zip(FAMILIES[self.family][0], self.args))


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def parse_prior(text: object, prior_class: str) -> tuple[Prior | None, str | None]:
    """Parse a prior string; return (prior, None) or (None, what is wrong and allowed)."""
    allowed = CLASS_FAMILIES[prior_class]
    allowed_txt = ", ".join(f"{f}({', '.join(FAMILIES[f][0])})" for f in allowed)
    if not isinstance(text, str):
        return None, f"must be a prior such as '{_example(prior_class)}', got {text!r}; allowed: {allowed_txt}"
    match = _PRIOR_RE.match(text)
    if not match and "(" in text and ")" not in text:
        return None, (f"cannot read prior {text!r}: inside a YAML {{...}} mapping a comma splits the value; "
                      f"quote the prior ('normal(0, 1)') or write priors one per line")
    if not match:
        return None, f"cannot read prior {text!r}; write it like '{_example(prior_class)}'; allowed: {allowed_txt}"
    family, arg_text = match.group(1), match.group(2)
    if family not in allowed:
        return None, f"prior family '{family}' is not allowed here; allowed: {allowed_txt}"
    names, positive = FAMILIES[family]
    try:
        args = tuple(float(a) for a in arg_text.split(",")) if arg_text.strip() else ()
    except ValueError:
        return None, f"prior {text!r} has a non-numeric argument; arguments are numbers, e.g. '{_example(prior_class)}'"
    if len(args) != len(names):
        return None, f"{family} takes {len(names)} argument(s) ({', '.join(names)}), got {len(args)} in {text!r}"
    for name, value in zip(names, args):
        if not math.isfinite(value):
            return None, f"{family}: {name} must be finite in {text!r}"
        if name in positive and value <= 0:
            return None, f"{family}: {name} must be > 0 in {text!r}"
    return Prior(family, args), None


def _example(prior_class: str) -> str:
    return {"coefficient": "normal(0, 2.5)", "scale": "exponential(1)", "correlation": "lkj(2)",
            "probability": "beta(1, 1)"}[prior_class]
