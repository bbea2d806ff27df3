"""Likelihood weights (`weights:`, brms's weights(); issue 28): the checks with their places, the weighted
likelihood of every family (vectorized where a short exact form exists, else row by row), and the defining
property, sampled: a fit with integer weights w is the fit of the data with each row repeated w times."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import stangen
from stangen import Level, Spec, SpecError
from stangen.cli import main
from stangen.core.errors import UserError
from stangen.compiler.peers import brms_code, lme4_code
from stangen.compiler.program import build
from stangen.run.stanc import check

from conftest import ROOT, SPECS

OWLS = ROOT / "examples" / "data" / "owls.csv"
SLEEPSTUDY = ROOT / "examples" / "data" / "sleepstudy.csv"


def frame(n: int = 48, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.poisson(3, n)
    return pd.DataFrame({"y": y, "pos": y + 0.5, "b": (y > 2).astype(int), "n": y + rng.integers(0, 4, n),
                         "x": rng.normal(0, 1, n), "g": rng.choice(list("abcd"), n),
                         "w": rng.integers(1, 4, n).astype(float)})


def spec_of(family: str = "poisson", outcome: str = "y", **keys) -> Spec:
    return Spec(outcome=outcome, family=family, predictors=["x"], levels={"g": Level()}, weights="w", **keys)


# -- the spec and the data ---------------------------------------------------------------------------------

def test_problems_name_their_places():
    data = frame()
    data.loc[[1, 4], "w"] = -1.0
    with pytest.raises(UserError) as err:
        build(spec_of(), data)
    assert any(p.path == "weights" and "negative at rows 2, 5" in p.message for p in err.value.problems)
    with pytest.raises(UserError) as err:
        build(spec_of(), frame().assign(w=0.0))
    assert any(p.path == "weights" and "all 0" in p.message for p in err.value.problems)
    with pytest.raises(UserError) as err:
        build(spec_of(), frame().assign(w="heavy"))
    assert any(p.path == "weights" and "numeric" in p.message for p in err.value.problems)
    with pytest.raises(SpecError) as err:
        Spec(outcome="y", predictors=["x"], levels={"g": Level()}, weights="w",
             residuals={"correlation": "ar1", "time": "x", "level": "g"})
    assert [p.path for p in err.value.problems] == ["weights"]
    assert "correlated errors" in err.value.problems[0].message
    with pytest.raises(SpecError) as err:
        build(spec_of(), frame(), threads_per_chain=2)
    assert err.value.problems[0].path == "sampler.threads_per_chain" and "weights" in err.value.problems[0].message


def test_the_cli_reports_them_without_a_traceback(tmp_path, capsys):
    frame().assign(w=lambda d: -d.w).to_csv(tmp_path / "d.csv", index=False)
    path = tmp_path / "bad.yaml"
    path.write_text("data: d.csv\noutcome: y\nfamily: poisson\npredictors: [x]\nweights: w\nlevels: {g: {}}\n")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "weights: weights 'w' are negative at rows 1, 2, 3" in err and "Traceback" not in err


# -- the program ----------------------------------------------------------------------------------------

# family → (outcome, the weighted likelihood is one vectorized expression)
FAMILIES = {"gaussian": ("pos", True), "poisson": ("y", True), "bernoulli": ("b", True),
            "binomial": ("y", True), "negbinomial": ("y", False), "student": ("pos", False),
            "lognormal": ("pos", False), "gamma": ("pos", False), "cumulative": ("y", False),
            "zero_inflated_negbinomial": ("y", False), "hurdle_poisson": ("y", False)}


@pytest.mark.stanc
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_familys_weighted_likelihood(family):
    outcome, vectorized = FAMILIES[family]
    program = build(spec_of(family, outcome, trials="n" if family == "binomial" else None), frame(),
                    generated="y_rep,log_lik")
    check(program.code)
    model = program.code.split("\nmodel {")[1].split("\ngenerated quantities")[0]
    assert "vector<lower=0>[N] weights;" in program.code
    assert ("for (i in 1:N)" not in model) == vectorized
    assert "dot_product(weights" in model if vectorized else "target += weights[i] * (" in model
    assert "_glm_" not in model  # (Stan's GLM functions take no weights)
    # the sizes are data; log_lik is each row's own (unweighted) log density
    assert f"[{program.data.n}]" not in program.code and "log_lik[i] = weights" not in program.code


def test_the_peers_get_the_weights_and_the_printout_says_so():
    program = build(spec_of(), frame())
    assert "weights = w)" in lme4_code(program) and "brms::bf(y | weights(w) ~" in brms_code(program)
    gaussian = build(spec_of("gaussian", "pos"), frame())
    assert "precision weights" in lme4_code(gaussian)
    assert not gaussian.description.cross_products  # (the cross-products are of unweighted rows)


# -- weights are repeated rows (sampled) ---------------------------------------------------------------------

def _same_posterior(weighted, repeated, tolerance=0.15):
    a, b = weighted.summary(group_effects=True), repeated.summary(group_effects=True)
    assert list(a.index) == list(b.index)
    gap = (a["mean"] - b["mean"]).abs() / b["sd"]
    assert gap.max() < tolerance, gap.sort_values().tail(5)


def _repeated(data: pd.DataFrame, w: np.ndarray) -> pd.DataFrame:
    return data.loc[data.index.repeat(w)].reset_index(drop=True)


def _weighted_and_repeated(spec_file, data: pd.DataFrame, w: np.ndarray, priors: dict, form: str):
    """The spec fitted with weights w, and without them on the rows repeated w times: priors written out (the
    default priors are scaled to the rows as given), each level sampled the same way (`form`)."""
    base = Spec.from_yaml(spec_file)
    fits = []
    for weights, rows in (("w", data.assign(w=w)), (None, _repeated(data, w))):
        spec = Spec.from_dict({**base.to_dict(), "weights": weights, "priors": priors}, base_dir=base.base_dir)
        fits.append(stangen.fit(spec.with_parameterization(form), rows, quiet=True, backend="pystan", draws=2000))
        assert fits[-1].convergence().ok, fits[-1].convergence().text()
    return fits


@pytest.mark.sampling
def test_integer_weights_are_repeated_rows_poisson_with_an_offset():
    """Owls' Poisson model (the vectorized weighted likelihood, with its offset)."""
    data = pd.read_csv(OWLS)
    w = np.random.default_rng(5).integers(1, 4, len(data))
    weighted, repeated = _weighted_and_repeated(
        SPECS / "owls.yaml", data, w, {"intercept": "normal(0, 2)", "coefficients": "normal(0, 2)",
                                       "sd": "exponential(1)"}, "centered")
    _same_posterior(weighted, repeated)
    assert "Weights: w (likelihood weights" in weighted.lme4()


@pytest.mark.sampling
def test_integer_weights_are_repeated_rows_gaussian():
    """sleepstudy (the vectorized weighted normal density, one sigma)."""
    data = pd.read_csv(SLEEPSTUDY)
    w = np.random.default_rng(2).integers(1, 3, len(data))
    weighted, repeated = _weighted_and_repeated(
        SPECS / "sleepstudy.yaml", data, w, {"intercept": "normal(250, 100)", "coefficients": "normal(0, 50)",
                                             "sd": "exponential(0.02)", "sigma": "exponential(0.02)"}, "partial")
    _same_posterior(weighted, repeated)
