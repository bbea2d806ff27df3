"""Families are objects (stangen/families.py): nothing else names a family to compare it, and every family
answers for its own pieces."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from stangen.families import FAMILIES, get_family

ROOT = Path(__file__).resolve().parents[1]


def test_no_family_name_is_written_outside_families_py():
    """A string literal equal to a family's name anywhere else would be a comparison waiting to fall through."""
    names = set(FAMILIES)
    found = []
    for path in sorted((ROOT / "stangen").rglob("*.py")):
        if path.name == "families.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    literal = re.compile(r"""["'](%s)["']""" % "|".join(names))
    for path in sorted((ROOT / "templates").glob("*.stan.j2")):
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if literal.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "family names outside stangen/families.py:\n" + "\n".join(found)


def test_the_check_can_fail(tmp_path):
    """(The AST walk sees a comparison like the ones that were removed.)"""
    tree = ast.parse('if desc.family == "poisson": pass')
    assert any(isinstance(n, ast.Constant) and n.value in FAMILIES for n in ast.walk(tree))


def test_unknown_family_is_an_error_not_a_fallthrough():
    with pytest.raises(KeyError):
        get_family("gausian")


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_has_every_piece(name):
    family = get_family(name)
    assert str(family) == name
    assert family.likelihood("eta", pooled=True).startswith("target += ")
    assert family.likelihood("eta", pooled=False).startswith("target += ")
    assert family.predictive_draws("eta").startswith("y_rep = ")
    assert family.pointwise_log_likelihood("eta", "i").startswith("log_lik[i] = ")
    first, lhs = family.header("y", "n")
    assert first.startswith("y[i]") and "[i]" in lhs
    y = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    z, w, _ = family.working_response(y, np.full(5, 3.0))
    assert z.shape == w.shape == (5,) and np.all(w > 0)
    rng = np.random.default_rng(1)
    draws = family.draw(np.zeros(5), {a.name: 1.0 for a in family.aux}, np.full(5, 3), lambda: rng.normal(0, 1, 5), rng)
    assert draws.shape == (5,)
