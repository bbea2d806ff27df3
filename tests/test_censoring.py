"""Censored outcomes (`censoring:`, brms's cens(); issue 28): the checks with their places, the likelihood
split by kind as data for every family that has a CDF, and recovery, sampled: a left-censored gaussian (a
detection limit) and a right-censored lognormal (follow-up that ends) put every true value inside its 95%
interval, while the same data fitted as if uncensored miss the intercept."""
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


def spec_of(family: str = "gaussian", **keys) -> Spec:
    return Spec(outcome="y", family=family, predictors=["x"], levels={"g": Level()},
                censoring={"column": "status", "upper": "y_upper"}, **keys)


def frame(n: int = 40, seed: int = 1, counts: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.poisson(4, n).astype(float) if counts else rng.lognormal(0, 1, n)
    status = rng.choice(["none", "left", "right", "interval"], n, p=[0.6, 0.15, 0.15, 0.1]).astype(object)
    return pd.DataFrame({"y": y, "x": rng.normal(0, 1, n), "g": rng.choice(list("abcd"), n), "status": status,
                         "y_upper": np.where(status == "interval", y + 2, np.nan)})


# -- the spec and the data ---------------------------------------------------------------------------------

def test_problems_name_their_places():
    with pytest.raises(SpecError) as err:
        spec_of("binomial", trials="n")
    assert any(p.path == "censoring" and "not defined for family binomial" in p.message for p in err.value.problems)
    with pytest.raises(SpecError) as err:
        Spec(outcome="y", predictors=["x"], censoring={"upper": "u", "lower": "l"})
    assert {p.path for p in err.value.problems} >= {"censoring.column", "censoring.lower"}
    with pytest.raises(SpecError) as err:
        spec_of(weights="w")
    assert any(p.path == "censoring" and "weights" in p.message for p in err.value.problems)
    data = frame()
    data.loc[[2, 7], "status"] = "maybe"
    with pytest.raises(UserError) as err:
        build(spec_of(), data)
    assert any(p.path == "censoring.column" and "'maybe' at rows 3, 8" in p.message and "none, left, right or "
               "interval" in p.message for p in err.value.problems)
    data = frame()
    bad = data.index[data.status == "interval"][:1]
    data.loc[bad, "y_upper"] = data.loc[bad, "y"] - 1
    with pytest.raises(UserError) as err:
        build(spec_of(), data)
    assert any(p.path == "censoring.upper" and "must be above the value" in p.message
               and f"row {bad[0] + 1}" in p.message for p in err.value.problems)


def test_brms_codes_and_a_missing_upper_column():
    data = frame().assign(status=lambda d: d.status.map({"none": 0, "left": -1, "right": 1, "interval": 2}))
    program = build(spec_of(), data)
    assert list(program.data.stan_data["censoring"]) == list(data.status)
    with pytest.raises(UserError) as err:
        build(Spec(outcome="y", predictors=["x"], censoring={"column": "status"}), data)
    assert any(p.path == "censoring.upper" and "interval-censored" in p.message for p in err.value.problems)


def test_the_cli_reports_them_without_a_traceback(tmp_path, capsys):
    frame().assign(status="sometimes").to_csv(tmp_path / "d.csv", index=False)
    path = tmp_path / "bad.yaml"
    path.write_text("data: d.csv\noutcome: y\npredictors: [x]\ncensoring: {column: status}\nlevels: {g: {}}\n")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "censoring.column: 'status' has values 'sometimes'" in err and "Traceback" not in err


# -- the program ----------------------------------------------------------------------------------------

@pytest.mark.stanc
@pytest.mark.parametrize("family", ["gaussian", "student", "lognormal", "gamma", "poisson", "negbinomial"])
def test_the_likelihood_is_split_by_kind_as_data(family):
    counts = family in ("poisson", "negbinomial")
    program = build(spec_of(family), frame(counts=counts), generated="y_rep,log_lik")
    check(program.code)
    model = program.code.split("\nmodel {")[1].split("\ngenerated quantities")[0]
    family = program.description.family
    cdf, left = family.cdf, "left_rows" if family.cdf_vectorized else "left_rows[k]"
    for piece in ("(y[obs_rows] |", f"{cdf}_lcdf(y[{left}] |", f"{cdf}_lccdf(",
                  f"log_diff_exp({cdf}_lcdf(censoring_upper[interval_rows[k]]"):
        assert piece in model, piece
    # a count right-censored at y is at least y: the complementary CDF at y - 1
    assert ("y_right_below" in model or "y[right_rows[k]] - 1" in model) == counts
    # Stan 2.35's vectorized Poisson CDFs crash the sampler: row by row there
    assert ("for (k in 1:N_left)" in model) == (family.name == "poisson")
    assert "uncensored" in program.code and "log_lik[i] = censoring[i] == 0 ?" in program.code
    assert f"[{program.data.n}]" not in program.code  # which rows are censored is data


def test_the_printout_and_the_peers_say_so():
    program = build(spec_of(), frame())
    assert "y | cens(status, y_upper) ~" in brms_code(program)
    assert "cannot fit a censored outcome" in lme4_code(program)
    data = program.data.stan_data
    from stangen.core.censoring import Censoring
    assert Censoring.counts(data) == (f"Censored: {data['N_left']} left, {data['N_right']} right, "
                                      f"{data['N_interval']} interval of 40")


# -- recovery (sampled) ----------------------------------------------------------------------------------

def _inside(table, name, value):
    lo, hi = table.loc[name, "q2.5%"], table.loc[name, "q97.5%"]
    return lo < value < hi


@pytest.mark.sampling
def test_a_detection_limit_left_censored_gaussian_is_recovered():
    """Sites with a varying intercept, values below a detection limit (~30% of them) reported as the limit."""
    truth = {"Intercept": 1.0, "coefficients": {"x": 0.5}, "sd": {"g": 0.7}, "sigma": 1.0}
    plain = Spec(outcome="y", predictors=["x"], levels={"g": Level()})
    data = simulate(plain, truth, data=False, groups={"g": 30}, per_group=10, seed=2).data
    limit = np.quantile(data.y, 0.3)
    censored = data.assign(status=np.where(data.y < limit, "left", "none"), y=np.maximum(data.y, limit))
    assert 0.25 < (censored.status == "left").mean() < 0.35
    with_censoring = Spec(outcome="y", predictors=["x"], levels={"g": Level()}, censoring={"column": "status"})
    fit = stangen.fit(with_censoring, censored, quiet=True, backend="pystan")
    assert fit.convergence().ok, fit.convergence().text()
    table = fit.summary()
    for name, value in (("Intercept", 1.0), ("x", 0.5), ("sd(g: intercept)", 0.7), ("sigma", 1.0)):
        assert _inside(table, name, value), (name, value, table.loc[name])
    assert "Censored: 90 left of 300 rows ('status')" in fit.lme4()
    # as if uncensored (every row 'none': the plain model's likelihood, in the program already compiled): the
    # limit's values pull the intercept up and shrink sigma
    naive = stangen.fit(with_censoring, censored.assign(status="none"), quiet=True, backend="pystan").summary()
    assert naive.loc["Intercept", "q2.5%"] > 1.0 and not _inside(naive, "sigma", 1.0)


@pytest.mark.sampling
def test_a_right_censored_lognormal_is_recovered():
    """Patients with a varying intercept; follow-up ends at a fixed time, before ~15% of the events."""
    truth = {"Intercept": 2.0, "coefficients": {"x": -0.4}, "sd": {"g": 0.5}, "sigma": 0.6}
    plain = Spec(outcome="y", family="lognormal", predictors=["x"], levels={"g": Level()})
    data = simulate(plain, truth, data=False, groups={"g": 40}, per_group=8, seed=3).data
    end = np.quantile(data.y, 0.85)
    censored = data.assign(status=np.where(data.y > end, "right", "none"), y=np.minimum(data.y, end))
    with_censoring = Spec(outcome="y", family="lognormal", predictors=["x"], levels={"g": Level()},
                          censoring={"column": "status"})
    fit = stangen.fit(with_censoring, censored, quiet=True, backend="pystan")
    assert fit.convergence().ok, fit.convergence().text()
    table = fit.summary()
    for name, value in (("Intercept", 2.0), ("x", -0.4), ("sd(g: intercept)", 0.5), ("sigma", 0.6)):
        assert _inside(table, name, value), (name, value, table.loc[name])
    # as if uncensored (every row 'none'), the events after follow-up pulled down to its end: a lower intercept,
    # a smaller sigma
    naive = stangen.fit(with_censoring, censored.assign(status="none"), quiet=True, backend="pystan").summary()
    assert naive.loc["Intercept", "mean"] < table.loc["Intercept", "mean"] - 0.5 * table.loc["Intercept", "sd"]
    assert naive.loc["sigma", "mean"] < table.loc["sigma", "q2.5%"]
