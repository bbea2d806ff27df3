"""stangen simulate: fake data from a spec's model. Checked with model-free estimates (no sampling)."""
import numpy as np
import pandas as pd
import pytest
import yaml

from stangen import Level, Spec, SpecError
from stangen.cli import main
from stangen.workflows.simulate import _lkj, simulate

from conftest import SPECS


def test_random_intercepts_and_slope_have_the_true_moments():
    spec = Spec(outcome="score", predictors=["hours"], levels={"student": Level()})
    truth = {"Intercept": 2.0, "coefficients": {"hours": 0.75}, "sd": {"student": 0.7}, "sigma": 0.2}
    sim = simulate(spec, truth, groups={"student": 2000}, per_group=5, seed=1)
    df = sim.data
    assert len(df) == 10000 and df.student.nunique() == 2000
    # within-student least squares recovers the slope; between-student variance of means = tau^2 + sigma^2/n
    centered = df.groupby("student")[["score", "hours"]].transform(lambda v: v - v.mean())
    slope = (centered.score * centered.hours).sum() / (centered.hours ** 2).sum()
    assert slope == pytest.approx(0.75, abs=0.01)
    means = df.groupby("student")[["score", "hours"]].mean()
    resid = means.score - 2.0 - 0.75 * means.hours
    assert resid.var() == pytest.approx(0.7 ** 2 + 0.2 ** 2 / 5, rel=0.1)


def test_cross_level_interaction_has_the_true_population_values():
    spec = Spec(outcome="y", predictors=["x"], levels={"school": Level(varying={"intercept": ["w"], "x": ["w"]})})
    truth = {"Intercept": 0.1, "coefficients": {"x": 0.55},
             "effects": {"school": {"intercept": {"w": 0.35}, "x": {"w": 0.15}}},
             "sd": {"school": {"intercept": 0.3, "x": 0.12}}, "cor": {"school": 0.4}, "sigma": 0.75}
    df = simulate(spec, truth, groups={"school": 2000}, per_group=10, seed=5).data
    # pooled least squares with the interaction recovers the population values (school effects average out)
    X = np.column_stack([np.ones(len(df)), df.x, df.w, df.x * df.w])
    coef, *_ = np.linalg.lstsq(X, df.y, rcond=None)
    np.testing.assert_allclose(coef, [0.1, 0.55, 0.35, 0.15], atol=0.03)


def test_a_real_design_is_kept_and_only_the_outcome_replaced():
    truth = {"Intercept": 0.1, "coefficients": {"standLRT": 0.55},
             "effects": {"school": {"intercept": {"schavg": 0.35}, "standLRT": {"schavg": 0.15}}},
             "sd": {"school": {"intercept": 0.3, "standLRT": 0.12}}, "cor": {"school": 0.4}, "sigma": 0.75}
    sim = simulate(SPECS / "exam.yaml", truth, seed=5)
    original = pd.read_csv(SPECS.parent / "examples" / "data" / "exam.csv")
    assert sim.data.drop(columns="normexam").equals(original.drop(columns="normexam"))
    assert not np.allclose(sim.data.normexam, original.normexam)


def test_nested_and_crossed_designs_are_generated():
    spec = Spec(outcome="y", levels={"state": Level(), "county": Level(within="state"), "year": Level()})
    sim = simulate(spec, {"Intercept": 0, "sd": {"state": 1, "county": 1, "year": 1}, "sigma": 1},
                   groups={"state": 5, "county": 3, "year": 4}, per_group=2, seed=1)
    df = sim.data
    assert df.state.nunique() == 5 and df.year.nunique() == 4
    assert df.groupby("state").county.nunique().eq(3).all()
    assert len(df) == 5 * 3 * 4 * 2


@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson"])
def test_discrete_families_give_valid_outcomes(family):
    spec = Spec(outcome="y", family=family, trials="n" if family == "binomial" else None, predictors=["x"],
                levels={"g": Level()})
    sim = simulate(spec, {"Intercept": 0.2, "coefficients": {"x": 0.5}, "sd": {"g": 0.5}}, seed=2)
    y = sim.data.y.to_numpy()
    assert (y >= 0).all() and np.issubdtype(y.dtype, np.integer)
    if family == "bernoulli":
        assert set(np.unique(y)) == {0, 1}
    if family == "binomial":
        assert (y <= sim.data.n).all()


def test_missing_true_values_are_all_named():
    spec = Spec(outcome="y", predictors=["x"], levels={"g": Level(varying=["intercept", "x"])})
    with pytest.raises(SpecError) as info:
        simulate(spec, {"Intercept": 1, "bogus": 2})
    paths = {p.path for p in info.value.problems}
    assert paths == {"params.bogus", "params.coefficients.x", "params.sd.g.intercept", "params.sd.g.x",
                     "params.cor.g", "params.sigma"}


def test_from_prior_draws_every_value():
    sim = simulate(SPECS / "sleepstudy.yaml", from_prior=True, seed=3)
    t = sim.truth
    assert set(t["sd"]["Subject"]) == {"intercept", "Days"} and t["sigma"] > 0
    assert np.allclose(np.diag(t["cor"]["Subject"]), 1)


def test_lkj_draws_are_correlation_matrices():
    rng = np.random.default_rng(0)
    for k in (2, 3, 5):
        m = _lkj(k, 2.0, rng)
        assert np.allclose(np.diag(m), 1) and np.allclose(m, m.T) and np.linalg.eigvalsh(m).min() > 0


def test_cli_writes_data_and_truth(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("outcome: y\nlevels: {g: {}}\n")
    params = tmp_path / "p.yaml"
    params.write_text("Intercept: 1\nsd: {g: 0.5}\nsigma: 1\n")
    out = tmp_path / "d.csv"
    assert main(["simulate", str(spec), "--params", str(params), "--groups", "g=7", "-o", str(out)]) == 0
    assert yaml.safe_load(out.with_suffix(".truth.yaml").read_text())["sd"]["g"]["intercept"] == 0.5
    assert main(["simulate", str(spec), "-o", str(out)]) == 1
