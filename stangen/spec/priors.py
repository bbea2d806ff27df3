"""Prior statements as the spec writes them: ``normal(0, 2.5)``, ``exponential(1)``, ``lkj(2)``.

The *family* of a prior is part of the model's structure (it appears in the Stan
program); its *numbers* are data, so changing a prior scale never recompiles.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

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

# family → numpy draws (rng, named arguments as numbers, size); lkj has none (a matrix, not a number)
SAMPLERS = {
    "normal": lambda rng, a, n: rng.normal(a["location"], a["scale"], n),
    "student_t": lambda rng, a, n: a["location"] + a["scale"] * rng.standard_t(a["df"], n),
    "cauchy": lambda rng, a, n: a["location"] + a["scale"] * rng.standard_cauchy(n),
    "exponential": lambda rng, a, n: rng.exponential(1 / a["rate"], n),
    "gamma": lambda rng, a, n: rng.gamma(a["shape"], 1 / a["rate"], n),
    "beta": lambda rng, a, n: rng.beta(a["a"], a["b"], n),
}


def draw_prior(family: str, args: dict[str, float], size: int, rng: np.random.Generator,
               lower: float | None = None, upper: float | None = None) -> np.ndarray | None:
    """`size` draws from a prior on a number, inside the parameter's declared bounds as Stan truncates it (a
    normal on an sd: half-normal); None for a family with no draws here (lkj)."""
    sampler = SAMPLERS.get(family)
    if sampler is None:
        return None
    kept = np.empty(0)
    for _ in range(50):  # rejection: the bounds keep at least a few % of any prior the spec allows
        draws = sampler(rng, args, size)
        inside = np.ones(size, dtype=bool)
        if lower is not None:
            inside &= draws > lower
        if upper is not None:
            inside &= draws < upper
        kept = np.concatenate([kept, draws[inside]])
        if len(kept) >= size:
            break
    return kept[:size]


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
