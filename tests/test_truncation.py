"""Truncated outcomes (`truncation:`, brms's trunc(); issue 28): the checks with their places, the programs
(each density over the range's probability; bounds are data, numbers or columns alike), draws inside the
range, and recovery, sampled: a zero-truncated Poisson with a varying intercept puts every true value inside
its 95% interval, while the same counts fitted as untruncated overstate the rate."""
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
from stangen.workflows.simulate import simulate


def spec_of(family: str = "poisson", **truncation) -> Spec:
    return Spec(outcome="y", family=family, predictors=["x"], levels={"g": Level()},
                truncation=truncation or {"lower": 1})


def frame(n: int = 40, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"y": rng.poisson(3, n) + 1, "x": rng.normal(0, 1, n), "g": rng.choice(list("abcd"), n),
                         "cap": 30})


# -- the spec and the data ---------------------------------------------------------------------------------

def test_problems_name_their_places():
    with pytest.raises(SpecError) as err:
        spec_of(lower=5, upper=2)
    assert any(p.path == "truncation" and "must be below upper" in p.message for p in err.value.problems)
    with pytest.raises(SpecError) as err:
        Spec(outcome="y", family="bernoulli", predictors=["x"], truncation={"upper": 1})
    assert any(p.path == "truncation" and "not defined for family bernoulli" in p.message for p in err.value.problems)
    with pytest.raises(SpecError) as err:
        Spec(outcome="y", predictors=["x"], truncation={"lower": True, "middle": 3})
    assert {p.path for p in err.value.problems} >= {"truncation.lower", "truncation.middle"}
    data = frame()
    data.loc[[0, 9], "y"] = 0
    with pytest.raises(UserError) as err:
        build(spec_of(), data)
    assert any(p.path == "truncation" and "outside the truncation range [1, ∞) at rows 1, 10" in p.message
               for p in err.value.problems)


def test_the_cli_reports_them_without_a_traceback(tmp_path, capsys):
    frame().assign(y=0).to_csv(tmp_path / "d.csv", index=False)
    path = tmp_path / "bad.yaml"
    path.write_text("data: d.csv\nfamily: poisson\noutcome: y\npredictors: [x]\ntruncation: {lower: 1}\n")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "truncation: outcome values outside the truncation range [1, ∞)" in err and "Traceback" not in err


# -- the program ----------------------------------------------------------------------------------------

@pytest.mark.stanc
@pytest.mark.parametrize("family, bounds, vectorized", [
    ("poisson", {"lower": 1}, False), ("negbinomial", {"upper": "cap"}, True),
    ("poisson", {"lower": 1, "upper": "cap"}, False), ("gaussian", {"lower": 0, "upper": 30}, False),
    ("lognormal", {"upper": 40}, True), ("gamma", {"lower": 0.5}, True)])
def test_each_density_over_the_ranges_probability(family, bounds, vectorized):
    program = build(spec_of(family, **bounds), frame().assign(y=lambda d: d.y + 0.5 * (family in ("lognormal", "gamma"))),
                    generated="y_rep,log_lik")
    check(program.code)
    model = program.code.split("\nmodel {")[1].split("\ngenerated quantities")[0]
    assert ("for (i in 1:N)" not in model) == vectorized
    assert ("truncation_lower_below" in model) == (program.description.family.discrete and "lower" in bounds)
    assert "drawn again while outside" in program.code and "log_lik[i] -=" in program.code
    # a bound written as a number is data too: the same program as with a column of that number
    assert f"[{program.data.n}]" not in program.code


def test_numbers_and_columns_give_the_same_program():
    number = build(spec_of("negbinomial", upper=30), frame())
    column = build(spec_of("negbinomial", upper="cap"), frame())
    strip = lambda code: "\n".join(line.split("//")[0] for line in code.splitlines())  # noqa: E731
    assert strip(number.code) == strip(column.code)
    assert list(number.data.stan_data["truncation_upper"]) == list(column.data.stan_data["truncation_upper"])


def test_the_peers_and_the_printout_say_so():
    program = build(spec_of(), frame())
    assert "y | trunc(lb = 1) ~" in brms_code(program) and "cannot fit a truncated outcome" in lme4_code(program)


def test_simulated_values_stay_inside_the_range():
    sim = simulate(spec_of(lower=1, upper=4), {"Intercept": 0.8, "coefficients": {"x": 0.4}, "sd": {"g": 0.5}},
                   data=False, groups={"g": 10}, per_group=20, seed=2)
    assert sim.data.y.between(1, 4).all() and set(sim.data.y) == {1, 2, 3, 4}


def test_new_outcomes_are_drawn_inside_the_range(tmp_path):
    from test_predict import fake_fit
    frame().to_csv(tmp_path / "counts.csv", index=False)
    (tmp_path / "counts.yaml").write_text("data: counts.csv\nfamily: poisson\noutcome: y\npredictors: [x]\n"
                                          "truncation: {lower: 1, upper: cap}\nlevels: {g: {}}\n")
    fit = fake_fit(tmp_path / "counts.yaml")
    new = frame().head(8).assign(cap=[2, 3, 4, 5, 6, 7, 8, 9])
    draws = np.asarray(fit.predict(new, kind="response", draws=True, seed=1)).reshape(-1, 8)
    assert (draws >= 1).all() and (draws <= new.cap.to_numpy()).all() and (draws[:, 0] == 2).any()
    with pytest.raises(UserError) as err:  # the per-row bound is a column new rows need
        fit.predict(new.drop(columns="cap"), kind="response")
    assert any(p.path == "truncation.upper" for p in err.value.problems)


# -- recovery (sampled) ----------------------------------------------------------------------------------

@pytest.mark.sampling
def test_a_zero_truncated_poisson_is_recovered():
    truth = {"Intercept": 0.3, "coefficients": {"x": 0.4}, "sd": {"g": 0.5}}
    spec = spec_of()
    sim = simulate(spec, truth, data=False, groups={"g": 30}, per_group=10, seed=5)
    assert sim.data.y.min() == 1
    fit = stangen.fit(spec, sim.data, quiet=True, backend="pystan")
    assert fit.convergence().ok, fit.convergence().text()
    table = fit.summary()
    for name, value in (("Intercept", 0.3), ("x", 0.4), ("sd(g: intercept)", 0.5)):
        lo, hi = table.loc[name, "q2.5%"], table.loc[name, "q97.5%"]
        assert lo < value < hi, (name, value, lo, hi)
    assert "Truncated: y in [1, ∞)" in fit.lme4()
    naive = stangen.fit(Spec(outcome="y", family="poisson", predictors=["x"], levels={"g": Level()}), sim.data,
                        quiet=True, backend="pystan").summary()
    assert naive.loc["Intercept", "q2.5%"] > 0.3  # without the zeros that could not be recorded, a higher rate
