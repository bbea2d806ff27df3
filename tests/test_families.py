"""Families are objects (stangen/core/families.py): nothing else names a family to compare it, and every family
answers for its own pieces."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from stangen.core.families import FAMILIES, get_family
from stangen.spec.priors import FAMILIES as PRIOR_FAMILIES

ROOT = Path(__file__).resolve().parents[1]


def family_comparisons(source: str) -> list[int]:
    """Lines of `x == "poisson"`, `x != 'gaussian'`, `x in ("bernoulli", "binomial")`, or a dict keyed by family
    names (a lookup table per family): the branches that fall through for a family nobody listed."""
    names, lines = set(FAMILIES), []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for o in operands:
                values = o.elts if isinstance(o, (ast.Tuple, ast.List, ast.Set)) else [o]
                if any(isinstance(v, ast.Constant) and v.value in names for v in values):
                    lines.append(node.lineno)
        elif isinstance(node, ast.Dict):
            # (a table of prior families is not one of likelihoods: gamma and beta are both)
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if len(keys & names) >= 2 and not keys <= set(PRIOR_FAMILIES):
                lines.append(node.lineno)
    return lines


def test_no_family_name_is_compared_outside_families_py():
    found = []
    for path in sorted((ROOT / "stangen").rglob("*.py")):
        if path.name != "families.py":
            found += [f"{path.relative_to(ROOT)}:{n}" for n in family_comparisons(path.read_text())]
    compared = re.compile(r"""(==|!=|\bin)\s*\(?\s*["'](%s)["']""" % "|".join(FAMILIES))
    for path in sorted((ROOT / "templates").glob("*.j2")):
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if compared.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "family names compared outside stangen/core/families.py:\n" + "\n".join(found)


def test_the_check_can_fail():
    """The check finds the kinds of comparison the refactor removed."""
    assert family_comparisons('if desc.family == "poisson": pass') == [1]
    assert family_comparisons('ok = family in ("bernoulli", "binomial")') == [1]
    assert family_comparisons('LINKS = {"gaussian": "", "poisson": "log"}') == [1]
    assert family_comparisons('x = "gamma"') == []  # a prior family of that name is not a comparison


def test_unknown_family_is_an_error_not_a_fallthrough():
    with pytest.raises(KeyError):
        get_family("gausian")


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_has_every_piece(name):
    family = get_family(name)
    assert str(family) == name
    for pooled in (True, False):  # one statement, or a block of them (a likelihood split as data)
        assert re.match(r"target \+= |\{\n(.*\n)*\s*target \+= ", family.likelihood("eta", pooled=pooled))
    assert re.match(r"(for \(i in 1:N\) )?y_rep(\[i\])? = ", family.predictive_draws("eta"))
    assert family.pointwise_log_likelihood("eta", "i").startswith("log_lik[i] = ")
    first, lhs = family.header("y", "n")
    assert first.startswith("y[i]") and "[i]" in lhs
    y = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    z, w, _ = family.working_response(y, np.full(5, 3.0))
    # weights: the Fisher information of each row (0 for a hurdle's zeros: they say nothing of the counts)
    assert z.shape == w.shape == (5,) and np.all(w >= 0) and np.sum(w > 0) >= 3
    rng = np.random.default_rng(1)
    draws = family.draw(np.zeros(5), {a.name: 1.0 for a in family.aux}, np.full(5, 3), lambda: rng.normal(0, 1, 5), rng)
    assert draws.shape == (5,)
