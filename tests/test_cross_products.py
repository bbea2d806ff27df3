"""The gaussian likelihood written with the full design's cross-products (ModelDescription.cross_products): the
Stan data must give, for any coefficients, exactly the residual sum of squares of a pass over the rows, and the
design C must hold the same terms as the linear predictor the other programs (and generated quantities) sum.
The fits that agree with lme4 (test_classics, test_large_crossed, …) run through it too."""
import re

import numpy as np
import pytest

from stangen import Spec
from stangen.compiler.codegen import eta_terms
from stangen.compiler.program import build
from stangen.compiler.standata import full_design
from conftest import SPECS

# every gaussian structure of the examples: slopes at their means with a partial level, nested with the parent
# integrated out, crossed, group-level predictors, a level taking the pooled intercept
SPEC_NAMES = ["sleepstudy", "blackmore", "language", "pastes", "penicillin", "exam", "turnout", "elections"]


def rss_as_the_program_computes(data: dict, theta: np.ndarray) -> float:
    """y'y - 2 theta'C'y + theta'C'C theta from the Stan data, with csr_matrix_times_vector's 1-based arrays."""
    w, v, u = np.asarray(data["CtC_w"]), np.asarray(data["CtC_v"]) - 1, np.asarray(data["CtC_u"]) - 1
    above = np.array([w[u[i]:u[i + 1]] @ theta[v[u[i]:u[i + 1]]] for i in range(data["P"])])
    return float(data["yty"] - 2 * np.asarray(data["Cty"]) @ theta + np.asarray(data["CtC_diagonal"]) @ theta ** 2
                 + 2 * theta @ above)


def linear_predictor_by_rows(program, values: dict[str, np.ndarray]) -> np.ndarray:
    """The linear predictor of every row as the per-row programs write it (codegen.eta_terms, then X * beta),
    evaluated from the Stan data and the given group values / coefficients."""
    data, d = program.stan_data, program.description
    eta = np.zeros(data["N"])
    for expr, _note in eta_terms(d):
        m = re.fullmatch(r"(\w+)\[(\w+)(?:, (\d+))?\](?: \.\* (\w+))?", expr)
        if m is None:  # the pooled intercept
            eta += values[expr]
            continue
        name, index, column, x = m.groups()
        group = np.asarray(data[index]) - 1
        coef = values[name] if column is None else values[name][:, int(column) - 1]
        slope = 1.0
        if x is not None:
            raw = x.removesuffix("_at_mean")
            slope = np.asarray(data[raw], dtype=float)
            slope = slope - slope.mean() if x.endswith("_at_mean") else slope
        eta += coef[group] * slope
    if d.pooled_terms:
        eta += np.asarray(data["X"]) @ values["beta"]
    return eta


# and each form auto does not pick for them (the group values theta reads differ: b_, u_, r_, mixed pieces)
FORCED = [("sleepstudy", "centered"), ("sleepstudy", "noncentered"), ("pastes", "centered"),
          ("pastes", "noncentered"), ("penicillin", "noncentered"), ("language", "noncentered"), ("insteval", "mixed")]


@pytest.mark.parametrize("name, form", [(n, None) for n in SPEC_NAMES] + FORCED)
def test_cross_products_give_the_residual_sum_of_squares_of_the_rows(name, form):
    spec = Spec.from_yaml(SPECS / f"{name}.yaml")
    program = build(spec if form is None else spec.with_parameterization(form))
    if form is not None:
        assert {c.parameterization for c in program.parameterization} == {form}
    d, data = program.description, program.stan_data
    assert d.cross_products
    rng = np.random.default_rng(7)
    # random values for each block of theta, named as the program names them
    values, pieces = {}, []
    for block in d.design_blocks:
        base = block.value.split("[")[0]
        if block.columns == "ones":
            values[base] = rng.normal()
            pieces.append(np.array([values[base]]))
        elif block.columns == "X":
            values["beta"] = rng.normal(size=data["K"])
            pieces.append(values["beta"])
        else:
            lv = block.level
            if base not in values:
                shape = (data[lv.groups_key],) if lv.kind == "intercept" else (data[lv.groups_key], lv.n_coef)
                values[base] = rng.normal(size=shape)
            column = block.coefficient.column
            pieces.append(values[base] if lv.kind == "intercept" else values[base][:, column - 1])
    theta = np.concatenate(pieces)
    assert len(theta) == data["P"]
    eta = linear_predictor_by_rows(program, values)
    y = np.asarray(data["y"], dtype=float)
    expected = float(np.sum((y - eta) ** 2))
    assert rss_as_the_program_computes(data, theta) == pytest.approx(expected, rel=1e-9)
    assert full_design(d, data) @ theta == pytest.approx(eta, rel=1e-9, abs=1e-9)


def test_not_where_the_likelihood_is_not_independent_rows_of_one_sd():
    base = Spec.from_yaml(SPECS / "sleepstudy.yaml")
    assert build(base).description.cross_products
    assert not build(SPECS / "blackmore_car1.yaml").description.cross_products  # AR errors
    assert not build(SPECS / "sleepstudy_student.yaml").description.cross_products  # not gaussian
    assert not build(base, threads_per_chain=2).description.cross_products  # threads slice the rows
    program = build(base)
    assert "csr_matrix_times_vector" in program.code and "normal_id_glm" not in program.code.split("model {")[1] \
        .split("generated quantities")[0]
