"""Parameter recovery: fit data simulated from known values; every true value must lie in its 95% interval.

These exercise what agreement with lme4 cannot pin down exactly: group-level predictors of intercepts at two
levels (turnout: three nested levels) and of slopes (a cross-level interaction on the exam design), including
the back-transform from the internally centered predictors to the reported original-scale coefficients.
Seeds are fixed, so the outcome is deterministic.
"""
import numpy as np
import pytest

import stangen

from conftest import SPECS, read_example

pytestmark = pytest.mark.sampling
SHORT = dict(chains=4, warmup=500, draws=500, seed=7, quiet=True)


def assert_recovered(fit, truth):
    table = fit.summary()
    missed = {name: (value, table.loc[name, "q2.5%"], table.loc[name, "q97.5%"])
              for name, value in truth.items() if not table.loc[name, "q2.5%"] < value < table.loc[name, "q97.5%"]}
    assert not missed, f"true values outside the 95% interval: {missed}\n{table}"
    assert table["r_hat"].max() < 1.05


def test_three_level_turnout_recovers_truth():
    # true values from examples/simulate_turnout.py, which made examples/data/turnout.csv (see its seed note)
    fit = stangen.fit(SPECS / "turnout.yaml", backend="pystan", **SHORT)
    assert_recovered(fit, {"Intercept": 0.55, "urban": -0.08, "county_income (county)": 0.04,
                           "state_margin (state)": -0.3, "sd(state: intercept)": 0.05,
                           "sd(county: intercept)": 0.03, "sigma": 0.06})


def simulate_exam(seed=3):
    """Outcomes for the real exam design (schools, standLRT, schavg) from known parameters."""
    rng = np.random.default_rng(seed)
    df = read_example("exam")[["school", "standLRT", "schavg"]].copy()
    schools = np.sort(df.school.unique())
    sd = np.array([0.3, 0.12])
    corr = np.array([[1, 0.4], [0.4, 1]])
    u = rng.multivariate_normal([0, 0], np.diag(sd) @ corr @ np.diag(sd), size=len(schools))
    j = np.searchsorted(schools, df.school.to_numpy())
    intercept = 0.1 + 0.35 * df.schavg + u[j, 0]
    slope = 0.55 + 0.15 * df.schavg + u[j, 1]
    df["normexam"] = intercept + slope * df.standLRT + rng.normal(0, 0.75, len(df))
    return df


def test_cross_level_interaction_recovers_truth():
    fit = stangen.fit(SPECS / "exam.yaml", simulate_exam(), backend="pystan", **SHORT)
    assert_recovered(fit, {"Intercept": 0.1, "standLRT": 0.55, "schavg": 0.35, "standLRT:schavg": 0.15,
                           "sd(school: intercept)": 0.3, "sd(school: standLRT)": 0.12,
                           "cor(school: intercept, standLRT)": 0.4, "sigma": 0.75})
    # the reported (original-scale) coefficients differ from the internal centered ones by design
    centered = fit.posterior["beta_standLRT_centered"].values.mean()
    assert abs(centered - fit.summary().loc["standLRT", "mean"]) > 0  # schavg is not centered at 0
