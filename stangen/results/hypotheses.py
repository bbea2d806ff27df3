"""Hypotheses about the population-level parameters, as brms's `hypothesis()`: `"Days > 5"`,
`"foodSatiated + 0.5 * sexMale < 0"`, `"`sd(Subject: Days)` = 5"`. Each side is arithmetic (+ − × ÷, numbers,
parentheses) over the parameters' names as the summary shows them; a name that is not a Python identifier is
written in backticks. Computed from the draws: the posterior of left − right, its 95% interval, and for a
one-sided hypothesis the posterior probability that it holds and the evidence ratio p / (1 − p) (brms's
Post.Prob and Evid.Ratio); for `=` the probability that left − right is above 0 (no point hypothesis is
tested: a Bayes factor needs priors the spec does not state as such)."""
from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..core.errors import Problem, UserError, suggest

if TYPE_CHECKING:
    from ..fitting import Fit

OPERATORS = {">": "greater", "<": "less", ">=": "greater", "<=": "less", "=": "equal", "==": "equal"}
_SPLIT = re.compile(r"(>=|<=|==|=|>|<)")
_BACKTICKED = re.compile(r"`([^`]+)`")
_NAME = re.compile(r"(?<![0-9A-Za-z_.])[A-Za-z_][A-Za-z0-9_.]*")  # (not the e of 1e5)


def hypothesis(fit: "Fit", text: str, prob: float = 0.95) -> pd.DataFrame:
    """One row per hypothesis (several separated by ';'): hypothesis, estimate, est_error, lower, upper,
    post_prob, evid_ratio."""
    rows = [_one(fit, part.strip(), prob) for part in text.split(";") if part.strip()]
    if not rows:
        raise UserError(Problem("hypothesis", "is empty: write e.g. 'Days > 5' or 'a - b > 0'"))
    return pd.DataFrame(rows).set_index("hypothesis")


def _one(fit: "Fit", text: str, prob: float) -> dict:
    parts = _SPLIT.split(text)
    if len(parts) != 3:
        raise UserError(Problem("hypothesis", f"{text!r}: write one comparison, left (>, <, >=, <=, =) right, "
                                              "e.g. 'Days > 5'"))
    left, operator, right = (p.strip() for p in parts)
    names = fit.parameters()
    draws = _evaluate(fit, left or "0", names, text) - _evaluate(fit, right or "0", names, text)
    draws = np.asarray(draws, dtype=float).reshape(-1)
    lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2])
    kind = OPERATORS[operator]
    post = (draws > 0).mean() if kind in ("greater", "equal") else (draws < 0).mean()
    ratio = np.inf if post == 1 else post / (1 - post)
    return {"hypothesis": text, "estimate": draws.mean(), "est_error": draws.std(ddof=1), "lower": lo, "upper": hi,
            "post_prob": post, "evid_ratio": ratio if kind != "equal" else np.nan}


def _evaluate(fit: "Fit", side: str, names: dict[str, str], text: str) -> np.ndarray:
    """A side's draws: its parameter names replaced by placeholders, then the arithmetic evaluated safely."""
    values: dict[str, np.ndarray] = {}

    def placeholder(name: str) -> str:
        if name not in names:
            longer = [n for n in names if n.startswith(f"{name}(") or n.startswith(f"{name}:")]
            hint = f"; write a name with spaces, ':' or parentheses in backticks: `{longer[0]}`" if longer else ""
            raise UserError(Problem("hypothesis", f"{text!r}: no parameter {name!r}{suggest(name, names)}{hint} "
                                                  f"(parameters: {', '.join(names)})"))
        key = f"_p{len(values)}"
        values[key] = fit.parameter_draws(name).reshape(-1)
        return key

    side = _BACKTICKED.sub(lambda m: placeholder(m.group(1)), side)
    side = _NAME.sub(lambda m: m.group(0) if m.group(0).startswith("_p") and m.group(0) in values
                     else placeholder(m.group(0)), side)
    try:
        tree = ast.parse(side, mode="eval")
    except SyntaxError:
        raise UserError(Problem("hypothesis", f"{text!r}: cannot read it as arithmetic (+, -, *, /, numbers, "
                                              "parameter names; a name with spaces or ':' in backticks)")) from None
    return _value(tree.body, values, text)


def _value(node, values: dict[str, np.ndarray], text: str):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.Name) and node.id in values:
        return values[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _value(node.operand, values, text)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
        a, b = _value(node.left, values, text), _value(node.right, values, text)
        return {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}[type(node.op)](a, b)
    raise UserError(Problem("hypothesis", f"{text!r}: only +, -, *, /, numbers and parameter names are allowed"))
