"""The cumulative (ordinal) family: ordered categories from integers or text with `order:`, K − 1 ordered
cutpoints in place of the intercept (sampled at the predictors' means, reported at 0), its spec and data
errors, simulation, and recovery of every true value with a varying intercept and slope and a group-level
predictor."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

import stangen
from stangen import DataError, Level, Spec, SpecError
from stangen.compiler.program import build
from stangen.workflows.simulate import simulate
from stangen.run.stanc import check

ORDER = ["never", "rarely", "often", "always"]
CUTPOINTS = [-1.2, 0.1, 1.5]
TRUTH = {"coefficients": {"x": 0.6}, "effects": {"g": {"intercept": {"w": 0.5}}},
         "sd": {"g": {"intercept": 0.6, "x": 0.3}}, "cor": {"g": 0.2}, "cutpoints": CUTPOINTS}


def spec(**more) -> Spec:
    return Spec(outcome="y", family="cumulative", predictors=["x"], order=ORDER,
                levels={"g": Level(varying={"intercept": ["w"], "x": []})}, **more)


def small(seed: int = 1, groups: int = 8, per_group: int = 6) -> pd.DataFrame:
    return simulate(spec(), TRUTH, data=False, groups={"g": groups}, per_group=per_group, seed=seed).data


@pytest.mark.stanc
@pytest.mark.parametrize("generated", [(), ("y_rep", "log_lik")], ids=["plain", "generated"])
def test_program_passes_stanc(generated):
    program = build(spec(), small(), generated=generated)
    check(program.code)
    assert "ordered[K_cat - 1] cutpoints_centered;" in program.code
    assert "ordered_logistic_lupmf(y | eta + X * beta, cutpoints_centered)" in program.code
    assert "Intercept" not in program.code  # the cutpoints take its place
    assert program.stan_data["K_cat"] == 4 and program.data.outcome_categories == ORDER


@pytest.mark.stanc
def test_without_levels_the_glm_function_is_used():
    program = build(Spec(outcome="y", family="cumulative", predictors=["x"], order=ORDER), small())
    check(program.code)
    assert "ordered_logistic_glm_lupmf(y | X, beta, cutpoints_centered)" in program.code


def test_integers_are_ordered_as_numbers_and_text_needs_order():
    df = small()
    codes = {label: k for k, label in enumerate(ORDER, start=-1)}  # -1, 0, 1, 2
    df["y"] = df["y"].map(codes)
    s = Spec(outcome="y", family="cumulative", predictors=["x"], levels={"g": Level()})
    program = build(s, df)
    assert program.data.outcome_categories == ["-1", "0", "1", "2"]
    assert list(program.stan_data["y"][:5]) == list(df["y"][:5] + 2)
    df["y"] = df["y"].map({v: k for k, v in codes.items()})
    with pytest.raises(DataError, match=r"outcome: family cumulative needs ordered categories: outcome 'y' holds "
                                        r"text.*`order: \[lowest"):
        build(s, df)


def test_values_outside_order_and_empty_categories_are_reported_with_rows():
    df = small()
    df.loc[[2, 5], "y"] = "sometimes"
    with pytest.raises(DataError, match=r"values not listed in `order` \('sometimes'\) at rows 3, 6"):
        build(spec(), df)
    df = small()
    df = df[df["y"] != "rarely"]
    with pytest.raises(DataError, match=r"order: no row of 'y' is in category 'rarely'"):
        build(spec(), df)


def test_spec_errors_name_the_key():
    with pytest.raises(SpecError, match=r"intercept: family cumulative has no population intercept"):
        spec(intercept=True)
    assert spec(intercept=False).intercept is False and spec().intercept is False
    with pytest.raises(SpecError, match=r"order: only family cumulative takes `order:`"):
        Spec(outcome="y", order=["a", "b"])
    with pytest.raises(SpecError, match=r"order: lists 'a' more than once"):
        Spec(outcome="y", family="cumulative", order=["a", "b", "a"])
    with pytest.raises(SpecError, match=r"order: must be a list"):
        Spec(outcome="y", family="cumulative", order="a < b")
    with pytest.raises(SpecError, match=r"priors.cutpoints: family gaussian has no parameter 'cutpoints'"):
        Spec(outcome="y", priors={"cutpoints": "normal(0, 5)"})
    written = yaml.safe_load(spec().to_yaml())
    assert "intercept" not in written and written["order"] == ORDER
    assert Spec.from_dict(written) == spec()


def test_simulation_writes_the_categories_and_needs_them():
    df = small(groups=30, per_group=20)
    assert set(df["y"]) == set(ORDER)
    shares = df["y"].value_counts(normalize=True)
    assert shares["always"] > 0.1 and shares["never"] > 0.1
    sim = simulate(spec(), None, data=False, groups={"g": 6}, per_group=4, seed=2, from_prior=True)
    assert len(sim.truth["cutpoints"]) == 3 and sorted(sim.truth["cutpoints"]) == sim.truth["cutpoints"]
    with pytest.raises(SpecError, match=r"params.cutpoints: a list of 3 increasing numbers"):
        simulate(spec(), TRUTH | {"cutpoints": [0.5, 0.1, 2]}, data=False, groups={"g": 4}, per_group=3)
    no_order = Spec(outcome="y", family="cumulative", predictors=["x"], levels={"g": Level()})
    with pytest.raises(SpecError, match=r"order: simulating a cumulative model without data needs its categories"):
        simulate(no_order, TRUTH, data=False)


def test_the_working_response_scores_categories_in_order():
    family = spec().family
    from stangen.core.families import get_family
    z, w, estimate = get_family(family).working_response(np.array([1, 1, 2, 3, 3, 3]), None)
    # Fisher information about η: below the logistic's 1/3 for a continuous latent outcome, with 3 categories
    assert z[0] < z[2] < z[3] and not estimate and np.all((0 < w) & (w < 1 / 3))


@pytest.mark.sampling
def test_recovery(tmp_path):
    sim = simulate(spec(), TRUTH, data=False, groups={"g": 40}, per_group=15, seed=6)
    fit = stangen.fit(spec(), sim.data, chains=4, warmup=1000, draws=1000, seed=3, quiet=True, backend="pystan")
    report = fit.convergence()
    assert report.status in ("pass", "warn"), report.text()
    expected = {"x": 0.6, "w": 0.5, "sd(g: intercept)": 0.6, "sd(g: x)": 0.3, "cor(g: intercept, x)": 0.2} | {
        f"cutpoint[{a}|{b}]": c for a, b, c in zip(ORDER, ORDER[1:], CUTPOINTS)}
    # as in tests/test_new_families.py: 99% intervals, so that eight values on one data set are all covered
    # about 92% of the time when the model is right
    for name, value in expected.items():
        lo, hi = np.quantile(fit.parameter_draws(name), [0.005, 0.995])
        assert lo < value < hi, f"{name}: {value} outside [{lo:.3f}, {hi:.3f}]"
    text = fit.lme4()
    assert text.splitlines()[0].startswith("Bayesian multilevel model (cumulative, logit link)")
    assert "never|rarely" in text and "y ~ x + w + (x | g), family = cumulative" in text
    loaded = stangen.Fit.load(fit.save(tmp_path / "run"))
    assert list(loaded.summary().index) == list(fit.summary().index)
