"""Sub-models for a family's parameters (`parameters:`, issue 27): the spec's checks with their places, the
programs (one linear predictor per modelled parameter, data-independent), agreement with glmmTMB's ziformula
and dispformula fits (tests/reference/salamanders.json, scripts/reference_salamanders.R; R is never called
here), and recovery of a residual sd with its own predictor and its own group effects — a model glmmTMB 1.1.5
cannot fit (its dispformula takes no group effects)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import stangen
from stangen import Level, ParameterModel, Spec, SpecError
from stangen.cli import main
from stangen.core.errors import UserError
from stangen.compiler.program import build
from stangen.results.predict import aux_draws
from stangen.run.stanc import check
from stangen.workflows.simulate import simulate

from conftest import ROOT, SPECS

REFERENCE = json.loads((ROOT / "tests" / "reference" / "salamanders.json").read_text())


def sigma_spec(**level) -> Spec:
    """y ~ x + (x | g), with log sigma ~ x + (1 | g)."""
    return Spec(outcome="y", predictors=["x"], levels={"g": Level(varying=["intercept", "x"])},
                parameters={"sigma": ParameterModel(predictors=["x"], levels={"g": Level(**level)})})


SIGMA_TRUTH = {"Intercept": 1.0, "coefficients": {"x": 0.5}, "sd": {"g": {"intercept": 0.6, "x": 0.3}},
               "cor": {"g": 0.2}, "parameters": {"sigma": {"Intercept": -0.7, "coefficients": {"x": 0.3},
                                                           "sd": {"g": 0.4}}}}


# -- the spec -------------------------------------------------------------------------------------------

def test_problems_name_their_places():
    raw = {"outcome": "count", "family": "zero_inflated_negbinomial", "predictors": ["spp"], "levels": {"site": {}},
           "priors": {"zi": "beta(2, 2)"},
           "parameters": {"hu": {"predictors": ["mined"]}, "nu": {"predictors": ["x"]},
                          "phi": {"predictors": ["cover"], "levels": {"sample": {}, "site": {"varying": ["DOP"]}},
                                  "priors": {"cover": "gamma(1, 1)", "sd": "normal(0, 1)"}},
                          "zi": {"predictors": ["mined"], "correlated_with_main": True, "colour": 1}}}
    with pytest.raises(SpecError) as err:
        Spec.from_dict(raw)
    text = str(err.value)
    for expected in [
        "parameters.hu: family zero_inflated_negbinomial has no parameter 'hu' that a sub-model can predict "
        "(its parameters: phi, zi)",
        "parameters.nu: family zero_inflated_negbinomial has no parameter 'nu'",
        "parameters.phi.levels.sample: 'sample' is not a level of the model (levels: site)",
        "parameters.phi.levels.site.varying[0]: 'DOP' is neither 'intercept' nor a level-1 predictor term",
        "parameters.phi.priors.cover: prior family 'gamma' is not allowed here",
        "parameters.zi.correlated_with_main: group effects correlated between the model and a sub-model are not "
        "supported yet",
        "parameters.zi.colour: unknown key 'colour'",
        "priors.zi: zi has a sub-model (parameters.zi): it is no longer one number with a prior",
    ]:
        assert expected in text, (expected, text)


def test_a_family_parameter_that_cannot_have_a_sub_model_says_so():
    with pytest.raises(SpecError, match=r"parameters.nu: family student has no parameter 'nu' that a sub-model can "
                                        r"predict \(its parameters: sigma; nu cannot have one\)"):
        Spec(outcome="y", family="student", parameters={"nu": {"predictors": ["x"]}})
    with pytest.raises(SpecError, match=r"parameters.sigma: has neither predictors nor levels"):
        Spec(outcome="y", parameters={"sigma": {}})


def test_residual_structures_and_a_sigma_sub_model_are_refused():
    with pytest.raises(SpecError, match="parameters.sigma: a sub-model for sigma together with `residuals: "
                                        "correlation: ar1` is not supported yet"):
        Spec(outcome="y", levels={"g": Level()}, residuals={"correlation": "ar1", "time": "t", "level": "g"},
             parameters={"sigma": {"predictors": ["x"]}})
    with pytest.raises(SpecError, match=r"parameters.sigma: `residuals: sd_by: h` already gives sigma one value per "
                                        r"h; it is the sub-model `sigma: \{predictors: \[h\]\}`"):
        Spec(outcome="y", residuals={"sd_by": "h"}, parameters={"sigma": {"predictors": ["h"]}})


def test_the_cli_reports_them_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("outcome: y\nfamily: poisson\npredictors: [x]\nparameters:\n  sigma: {predictors: [x]}\n")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "parameters.sigma (line 5): family poisson has no parameter 'sigma' that a sub-model can predict " \
           "(its parameters: none)" in err and "Traceback" not in err


def test_round_trip_and_python_objects(tmp_path):
    spec = sigma_spec()
    (tmp_path / "spec.yaml").write_text(spec.to_yaml())
    assert Spec.from_yaml(tmp_path / "spec.yaml") == Spec.from_dict({**spec.to_dict(), "name": "spec"})
    assert "parameters:\n  sigma:\n    predictors: [x]\n    levels:\n      g: {}" in spec.to_yaml()
    assert Spec(outcome="y", predictors=["x"], parameters={"sigma": {"predictors": ["x"]}}) == \
        Spec(outcome="y", predictors=["x"], parameters={"sigma": ParameterModel(predictors=["x"])})


# -- the programs ---------------------------------------------------------------------------------------

CASES = {  # family → (its parameters: sub-model), true values of the scalar parameters left
    "gaussian": ({"sigma": ParameterModel(predictors=["x"], levels={"g": Level(varying=["intercept", "x"])})}, {}),
    "student": ({"sigma": ParameterModel(predictors=["x"])}, {"nu": 5.0}),
    "negbinomial": ({"phi": ParameterModel(predictors=["x"], levels={"g": Level()})}, {}),
    "gamma": ({"shape": ParameterModel(predictors=["x"])}, {}),
    "beta": ({"phi": ParameterModel(levels={"g": Level()})}, {}),
    "zero_inflated_poisson": ({"zi": ParameterModel(predictors=["x"], levels={"g": Level()})}, {}),
    "hurdle_negbinomial": ({"hu": ParameterModel(predictors=["x"]), "phi": ParameterModel(predictors=["x"])}, {}),
    "hurdle_lognormal": ({"hu": ParameterModel(predictors=["x"])}, {"sigma": 0.5}),
}


def _case(family: str):
    parameters, scalars = CASES[family]
    spec = Spec(outcome="y", family=family, predictors=["x"], levels={"g": Level()}, parameters=parameters)
    truth = {"Intercept": 0.5, "coefficients": {"x": 0.3}, "sd": {"g": 0.3}, **scalars, "parameters": {}}
    for name, sub in parameters.items():
        own = {"Intercept": -1.0 if name in ("zi", "hu") else 1.0, "coefficients": {"x": 0.2} if sub.predictors else {}}
        if sub.levels:
            lv = sub.levels["g"]
            own["sd"] = {"g": {c: 0.2 for c in lv.coefficients}}
            if len(lv.coefficients) == 2:
                own["cor"] = {"g": 0.1}
        truth["parameters"][name] = own
    return spec, truth


@pytest.mark.stanc
@pytest.mark.parametrize("family", sorted(CASES))
def test_programs_pass_stanc(family):
    spec, truth = _case(family)
    sim = simulate(spec, truth, data=False, groups={"g": 10}, per_group=8, seed=1)
    program = build(spec, sim.data, generated="y_rep,log_lik")
    check(program.code)
    for name in CASES[family][0]:
        sub = program.description.submodel(next(a for a in program.description.family.aux if a.name == name))
        link = "exp(" if sub.link == "log" else "inv_logit("
        # one vector per modelled parameter, in the model block and again in generated quantities
        assert program.code.count(f"vector[N] {name} = {link}") == 2
        assert f"real<lower=0> {name};" not in program.code and f"upper=1> {name};" not in program.code
    # the sizes are data: the program has no number of rows or groups in it
    assert f"[{program.data.n}]" not in program.code


def test_simulate_from_the_priors_of_a_sub_model():
    sim = simulate(sigma_spec(), None, data=False, groups={"g": 6}, per_group=4, seed=1, from_prior=True)
    own = sim.truth["parameters"]["sigma"]
    assert set(own) == {"Intercept", "coefficients", "sd", "cor"} and own["sd"]["g"]["intercept"] > 0
    with pytest.raises(SpecError, match=r"params.parameters.sigma: missing"):
        simulate(sigma_spec(), {k: v for k, v in SIGMA_TRUTH.items() if k != "parameters"}, data=False, seed=1)


# -- agreement with glmmTMB (sampled) ----------------------------------------------------------------------

SHOWN = {"(Intercept)": "Intercept"}


def _within_half_sd(table, name, ref, shown=None):
    """Within half an sd of glmmTMB's estimate: the posterior's, or glmmTMB's SE where that is larger — where
    the data say little (salamanders' zi coefficient of mined, SE 3.0 on the logit scale) the prior pulls the
    posterior in, and its sd is the smaller (1.3 with the default normal(0, 2.5) of a 0/1 column)."""
    row = table.loc[shown or SHOWN.get(name, name)]
    spread = max(row["sd"], ref.get("se") or 0.0)
    assert abs(row["mean"] - ref["estimate"]) < 0.5 * spread, (name, row["mean"], row["sd"], ref)


@pytest.mark.sampling
@pytest.mark.parametrize("family, key", [("zero_inflated_negbinomial", "zinb"), ("hurdle_poisson", "hp"),
                                         ("hurdle_negbinomial", "hnb")])
def test_zero_models_agree_with_glmmtmb(family, key, tmp_path):
    text = (SPECS / "salamanders_zinb.yaml").read_text().replace("zero_inflated_negbinomial", family)
    zero = "hu" if family.startswith("hurdle") else "zi"
    path = tmp_path / "salamanders.yaml"
    path.write_text(text.replace("  zi: {", f"  {zero}: {{").replace("../examples", str(ROOT / "examples")))
    fit = stangen.fit(path, chains=4, warmup=1000, draws=1000, seed=4, quiet=True, backend="pystan")
    assert fit.convergence().ok, fit.convergence().text()
    ref, table = REFERENCE[key], fit.summary()
    for name, r in ref["fixef"].items():
        _within_half_sd(table, name, r)
    for name, r in ref["zi"].items():  # glmmTMB's zero model (zi, the hurdle's P(0) with truncated families)
        _within_half_sd(table, name, r, shown=f"{zero}_{SHOWN.get(name, name)}")
    for name, value in (("sd(site: intercept)", ref["sd_site"]), ("phi", ref["phi"])):
        if value is not None:
            lo, hi = table.loc[name, "q2.5%"], table.loc[name, "q97.5%"]
            assert lo < value < hi, f"glmmTMB's {name} {value:.3f} outside [{lo:.3f}, {hi:.3f}]"
    printout = fit.lme4()
    assert f"{zero} ~ mined" in printout and "model (" in printout.split("Fixed effects:")[1]


@pytest.mark.sampling
def test_sigma_sub_model_agrees_with_glmmtmb_dispformula():
    fit = stangen.fit(SPECS / "sleepstudy_sigma.yaml", chains=4, warmup=1000, draws=1000, seed=1, quiet=True,
                      backend="pystan")
    assert fit.convergence().ok, fit.convergence().text()
    ref, table = REFERENCE["sleepstudy_sigma"], fit.summary()
    for name, r in ref["fixef"].items():
        _within_half_sd(table, name, r)
    for name, r in ref["disp"].items():  # glmmTMB's dispersion model is of log sigma²: halved, log sigma
        _within_half_sd(table, name, {"estimate": r["estimate"] / 2}, shown=f"sigma_{SHOWN.get(name, name)}")
    text = fit.lme4()
    assert "Dispersion: sigma ~ Days" in text and "Dispersion model (sigma" in text and "Residual" not in text


# -- recovery (sampled) ------------------------------------------------------------------------------------

@pytest.mark.sampling
def test_sigma_with_its_own_predictor_and_group_effects_is_recovered():
    """log sigma = -0.7 + 0.3 x + u_g, u_g ~ normal(0, 0.4): glmmTMB 1.1.5 cannot fit this (no group effects in
    dispformula); stangen recovers every true value, and its log_lik, y_rep and predictions use each row's own
    sigma."""
    sim = simulate(sigma_spec(), SIGMA_TRUTH, data=False, groups={"g": 40}, per_group=25, seed=6)
    fit = stangen.fit(sigma_spec(), sim.data, chains=4, warmup=1000, draws=1000, seed=3, quiet=True,
                      backend="pystan", generated="y_rep,log_lik")
    assert fit.convergence().ok, fit.convergence().text()
    expected = {"Intercept": 1.0, "x": 0.5, "sd(g: intercept)": 0.6, "sd(g: x)": 0.3, "cor(g: intercept, x)": 0.2,
                "sigma_Intercept": -0.7, "sigma_x": 0.3, "sd(g: sigma_intercept)": 0.4}
    for name, value in expected.items():  # 99% intervals: see tests/test_new_families.py
        lo, hi = np.quantile(fit.parameter_draws(name), [0.005, 0.995])
        assert lo < value < hi, f"{name}: {value} outside [{lo:.3f}, {hi:.3f}]"
    frame = fit.training_data()
    rows_link = fit.predict(frame, kind="link", draws=True).values.reshape(-1, len(frame))
    from stangen.compiler.new_rows import encode_rows
    aux = aux_draws(fit, encode_rows(fit.program, frame))
    y = np.asarray(fit.program.stan_data["y"])
    ours = fit.description.family.log_density(y[None, :], rows_link, aux, None)
    assert np.abs(ours - fit.idata.log_likelihood["y"].values.reshape(ours.shape)).max() < 1e-8
    response = fit.predict(frame, kind="response", draws=True, seed=1).values.reshape(ours.shape)
    y_rep = fit.idata.posterior_predictive["y"].values.reshape(ours.shape)
    ratio = response.std(axis=0) / y_rep.std(axis=0)  # each row's spread is its own sigma's
    assert 0.85 < np.median(ratio) < 1.15
    assert np.corrcoef(response.std(axis=0), y_rep.std(axis=0))[0, 1] > 0.9


# -- formulas, effects (no sampling) -------------------------------------------------------------------------

def test_sub_models_from_one_sided_formulas(capsys):
    """glmmTMB's ziformula / dispformula: `from-formula --zi "~ mined"`, and `zi: "~ mined"` in a spec."""
    data = str(ROOT / "examples" / "data" / "salamanders.csv")
    assert main(["from-formula", "count ~ spp + mined + (1 | site)", "--data", data, "--family",
                 "zero_inflated_negbinomial", "--zi", "~ mined", "--phi", "~ cover + (1 | site)"]) == 0
    out = capsys.readouterr().out
    assert "parameters:\n  zi:\n    predictors: [mined]\n  phi:\n    predictors: [cover]\n    levels:\n      site: {}" in out
    written = Spec.from_dict({"outcome": "Reaction", "predictors": ["Days"], "levels": {"Subject": {}},
                              "parameters": {"sigma": "~ Days + (1 | Subject)"}})
    assert written == Spec(outcome="Reaction", predictors=["Days"], levels={"Subject": Level()},
                           parameters={"sigma": ParameterModel(predictors=["Days"], levels={"Subject": Level()})})
    with pytest.raises(SpecError, match=r"parameters.sigma: a sub-model's formula is one-sided"):
        Spec.from_dict({"outcome": "y", "parameters": {"sigma": "y ~ x"}})


def test_effects_plot_a_sub_models_parameter(tmp_path):
    from test_predict import fake_fit

    from stangen.results.effects import effects_table
    fit = fake_fit(SPECS / "sleepstudy_sigma.yaml")
    table = effects_table(fit, "Days", parameter="sigma", points=5)
    post = fit.posterior
    expected = np.exp(post["Intercept_sigma"].values[..., None] + post["beta_sigma_Days"].values[..., None]
                      * table["Days"].to_numpy()).reshape(-1, 5).mean(axis=0)
    assert np.allclose(table["mean"], expected)
    assert fit.plot_effects("Days", tmp_path / "sigma.png", parameter="sigma").is_file()
    with pytest.raises(UserError, match="--parameter: 'phi' has no sub-model in this model "
                                                r"\(parameters with one: sigma\)"):
        effects_table(fit, "Days", parameter="phi")


def test_a_sigma_sub_models_level_is_centered_where_its_groups_are_data_rich():
    """`auto` centers a sub-model's intercept-only level of the residual sd when the working spread of log σ
    between groups makes the median group data-rich (n_j · 2 · τ̂² > 1): not when sigma does not vary by group."""
    from stangen.compiler.parameterization import residual_sd_spread
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(40), 25)
    for tau, low, high in ((0.0, 0.0, 0.2), (0.4, 0.3, 0.5), (0.8, 0.65, 0.95)):
        resid = rng.normal(0, 1, len(groups)) * np.exp(rng.normal(0, tau, 40))[groups]
        assert low <= residual_sd_spread(resid, groups) < high, tau
    rich = simulate(sigma_spec(), SIGMA_TRUTH, data=False, groups={"g": 40}, per_group=25, seed=6)
    assert build(sigma_spec(), rich.data).description.submodels[0].levels[0].centered
    flat = {**SIGMA_TRUTH, "parameters": {"sigma": {**SIGMA_TRUTH["parameters"]["sigma"], "sd": {"g": 0.01}}}}
    sim = simulate(sigma_spec(), flat, data=False, groups={"g": 40}, per_group=25, seed=6)
    assert not build(sigma_spec(), sim.data).description.submodels[0].levels[0].centered
    assert build(sigma_spec(parameterization="centered"), sim.data).description.submodels[0].levels[0].centered
    program = build(sigma_spec(), rich.data)
    assert "b_sigma_g ~ normal(Intercept_sigma_centered, sd_sigma_g);" in program.code
