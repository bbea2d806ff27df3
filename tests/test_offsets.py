"""Offsets (`offset:`, lme4's offset(); issue 28): the spec's and the data's checks with their places, the
formula's offset(x) both ways, the program (the offset in every linear predictor, data-independent),
predictions that take each new row's offset, agreement with glmmTMB and glmer on glmmTMB's Owls data
(tests/reference/owls.json, scripts/reference_owls.R; R is never called here) and recovery on simulated
counts with the Owls exposures."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import stangen
from stangen import Level, Spec, SpecError
from stangen.cli import main
from stangen.core.errors import UserError
from stangen.compiler.peers import lme4_code
from stangen.compiler.program import build
from stangen.run.stanc import check
from stangen.workflows.simulate import simulate

from conftest import ROOT, SPECS
from test_predict import fake_fit

REFERENCE = json.loads((ROOT / "tests" / "reference" / "owls.json").read_text())
OWLS = ROOT / "examples" / "data" / "owls.csv"


def counts_spec(**keys) -> Spec:
    return Spec(outcome="y", family="poisson", predictors=["x"], levels={"g": Level()}, offset="log_e", **keys)


def frame(n: int = 40, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"y": rng.poisson(3, n), "x": rng.normal(0, 1, n), "g": rng.choice(list("abcd"), n),
                         "log_e": np.log(rng.integers(1, 6, n).astype(float))})


# -- the spec and the data ---------------------------------------------------------------------------------

def test_problems_name_their_places():
    with pytest.raises(SpecError) as err:
        Spec(outcome="y", predictors=["x"], offset="log(e)")
    assert any(p.path == "offset" and "is an expression" in p.message and "add the transformed values" in p.message
               for p in err.value.problems)
    with pytest.raises(SpecError) as err:
        Spec(outcome="y", predictors=["x"], offset="y")
    assert [p.path for p in err.value.problems] == ["offset"] and "is the outcome" in err.value.problems[0].message
    data = frame()
    data["log_e"] = data["log_e"].astype(str) + "x"
    with pytest.raises(UserError) as err:
        build(counts_spec(), data)
    assert any(p.path == "offset" and "must be numeric" in p.message for p in err.value.problems)
    data = frame()
    data.loc[3, "log_e"] = -np.inf
    with pytest.raises(UserError) as err:
        build(counts_spec(), data)
    assert any(p.path == "offset" and "infinite values at row 4" in p.message for p in err.value.problems)


def test_a_missing_offset_follows_the_missing_policy():
    data = frame()
    data.loc[[2, 5], "log_e"] = np.nan
    with pytest.raises(UserError) as err:
        build(counts_spec(), data)
    assert any(p.path == "offset" and "missing" in p.message for p in err.value.problems)
    program = build(counts_spec(missing="drop"), data)
    assert program.data.n == len(data) - 2 and len(program.data.stan_data["offsets"]) == len(data) - 2


def test_the_cli_reports_them_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("outcome: y\nfamily: poisson\npredictors: [x]\noffset: log(exposure)\n")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "offset (line 4): 'log(exposure)' is an expression" in err and "Traceback" not in err


# -- formulas ----------------------------------------------------------------------------------------------

def test_a_formulas_offset_is_read_and_written_back(capsys):
    spec = Spec.from_formula("calls ~ food * sex + offset(log_brood) + (1 | nest)", family="poisson")
    assert spec.offset == "log_brood" and "log_brood" not in spec.predictors
    assert Spec.from_dict(spec.to_dict()) == spec and "offset: log_brood" in spec.to_yaml()
    assert "glmer(calls ~ food + sex + food:sex + offset(log_brood) + (1 | nest), data = d, family = poisson)" \
        in lme4_code(build(SPECS / "owls.yaml"))
    assert main(["from-formula", "calls ~ food + offset(log_brood) + (1 | nest)", "--family", "poisson",
                 "--data", str(OWLS)]) == 0
    assert "offset: log_brood" in capsys.readouterr().out


@pytest.mark.parametrize("text, says", [
    ("y ~ x + offset(log(e)) + (1 | g)", "add log(e) to the data as a column"),
    ("y ~ x + offset(a) + offset(b) + (1 | g)", "a model takes one offset column"),
])
def test_offsets_a_spec_cannot_take_are_refused(text, says):
    with pytest.raises(SpecError) as err:
        Spec.from_formula(text)
    assert any(says in p.message for p in err.value.problems), err.value.problems


# -- the program ----------------------------------------------------------------------------------------

@pytest.mark.stanc
@pytest.mark.parametrize("levels", [True, False])
def test_the_offset_enters_every_linear_predictor(levels):
    spec = counts_spec() if levels else Spec(outcome="y", family="poisson", predictors=["x"], offset="log_e")
    program = build(spec, frame(), generated="y_rep,log_lik")
    check(program.code)
    assert "vector[N] offsets;" in program.code
    # in the model block's likelihood and again for y_rep and log_lik; never the sum of two offsets
    assert program.code.count("+ offsets;") == 2 and program.code.count("offsets") == 3
    assert f"[{program.data.n}]" not in program.code  # the sizes are data


@pytest.mark.stanc
def test_the_threaded_program_slices_the_offset():
    program = build(counts_spec(), frame(), threads_per_chain=2)
    check(program.code)
    assert "vector offsets" in program.code and "offsets[start:end]" in program.code


def test_the_gaussian_likelihood_with_an_offset_is_not_written_with_cross_products():
    spec = Spec(outcome="y", predictors=["x"], levels={"g": Level()}, offset="log_e")
    assert not build(spec, frame()).description.cross_products
    assert build(Spec(outcome="y", predictors=["x"], levels={"g": Level()}), frame()).description.cross_products


def test_the_default_intercept_prior_is_centered_less_the_offsets_mean():
    data = frame()
    with_offset = build(counts_spec(), data).data.stan_data["prior_Intercept_location"]
    without = build(Spec(outcome="y", family="poisson", predictors=["x"], levels={"g": Level()}),
                    data).data.stan_data["prior_Intercept_location"]
    assert with_offset == pytest.approx(without - data["log_e"].mean())


# -- predictions -------------------------------------------------------------------------------------------

def test_predictions_take_each_new_rows_offset(tmp_path):
    fit = fake_fit(SPECS / "owls.yaml")
    new = pd.read_csv(OWLS).head(6)
    link = fit.predict(new, kind="link", draws=True)
    doubled = fit.predict(new.assign(log_brood=new.log_brood + np.log(2)), kind="link", draws=True)
    assert np.allclose(np.asarray(doubled) - np.asarray(link), np.log(2))
    with pytest.raises(UserError) as err:
        fit.predict(new.drop(columns="log_brood"), kind="mean")
    assert any(p.path == "offset" and "'log_brood' is not in the new data" in p.message for p in err.value.problems)
    # the effects plot is per unit of exposure (offset 0): it needs no offset column in its grid
    frame().to_csv(tmp_path / "counts.csv", index=False)
    (tmp_path / "counts.yaml").write_text("data: counts.csv\nfamily: poisson\noutcome: y\npredictors: [x]\n"
                                          "offset: log_e\nlevels: {g: {}}\n")
    assert fake_fit(tmp_path / "counts.yaml").plot_effects("x", tmp_path / "effects.png").exists()


def test_fitted_values_use_the_training_offsets():
    fit = fake_fit(SPECS / "owls.yaml")
    data = pd.read_csv(OWLS)
    fitted = fit.fitted()
    same = fit.predict(data, kind="mean")
    assert np.allclose(fitted["mean"].to_numpy(), same["mean"].to_numpy())


def test_the_printout_names_the_offset():
    fit = fake_fit(SPECS / "owls.yaml")
    text = fit.lme4()
    assert "Formula: calls ~ food + sex + food:sex + offset(log_brood) + (1 | nest), family = poisson" in text
    assert "Offset: log_brood" in text


# -- agreement with glmmTMB and glmer, recovery (sampled) -----------------------------------------------------

SHOWN = {"(Intercept)": "Intercept"}


def _within_half_sd(table, name, ref):
    row = table.loc[SHOWN.get(name, name)]
    assert abs(row["mean"] - ref["estimate"]) < 0.5 * row["sd"], (name, row["mean"], row["sd"], ref)


def _inside(table, name, value):
    lo, hi = table.loc[name, "q2.5%"], table.loc[name, "q97.5%"]
    assert lo < value < hi, f"{name}: {value:.3f} outside [{lo:.3f}, {hi:.3f}]"


@pytest.mark.sampling
def test_owls_poisson_agrees_with_glmmtmb_and_glmer():
    fit = stangen.fit(SPECS / "owls.yaml", quiet=True, backend="pystan")
    assert fit.convergence().ok, fit.convergence().text()
    ref, table = REFERENCE["poisson"], fit.summary()
    for name in ref["fixef"]:
        _within_half_sd(table, name, ref["fixef"][name])
        _within_half_sd(table, name, ref["fixef_glmer"][name])
    _inside(table, "sd(nest: intercept)", ref["sd_nest"])


@pytest.mark.sampling
def test_owls_zero_inflated_negbinomial_agrees_with_glmmtmb():
    fit = stangen.fit(SPECS / "owls_zinb.yaml", quiet=True, backend="pystan")
    assert fit.convergence().ok, fit.convergence().text()
    ref, table = REFERENCE["zinb"], fit.summary()
    for name, r in ref["fixef"].items():
        _within_half_sd(table, name, r)
    _inside(table, "sd(nest: intercept)", ref["sd_nest"])
    _inside(table, "phi", ref["phi"])
    _inside(table, "zi", 1 / (1 + np.exp(-ref["zi"]["(Intercept)"]["estimate"])))  # glmmTMB's is logit(zi)


@pytest.mark.sampling
def test_counts_with_exposures_are_recovered():
    """Simulated calls with the Owls design and exposures (the same program as the Owls fit): every true value
    inside its 95% interval; the offset carries log(brood) so the intercept is the rate per chick."""
    truth = {"Intercept": 0.5, "coefficients": {"foodSatiated": -0.6, "sexMale": 0.1, "foodSatiated:sexMale": 0.2},
             "sd": {"nest": 0.4}}
    sim = simulate(SPECS / "owls.yaml", truth, data=OWLS, seed=3)
    fit = stangen.fit(SPECS / "owls.yaml", sim.data, quiet=True, backend="pystan")
    assert fit.convergence().ok, fit.convergence().text()
    table = fit.summary()
    _inside(table, "Intercept", 0.5)
    for name, value in truth["coefficients"].items():
        _inside(table, name, value)
    _inside(table, "sd(nest: intercept)", 0.4)
    # the simulated counts scale with the exposures: per chick they do not
    per_chick = sim.data.calls / np.exp(sim.data.log_brood)
    assert np.corrcoef(sim.data.calls, sim.data.log_brood)[0, 1] > np.corrcoef(per_chick, sim.data.log_brood)[0, 1]
