"""Optional generated quantities (y_rep, log_lik) and model comparison by PSIS-LOO (`stangen compare`).

Two programs are compiled (once per machine, then cached): sleepstudy with a random intercept and with a random
intercept and Days slope (the spec as written), both with generated=("y_rep", "log_lik"). Runs are short
(4 chains x 300 warmup + 300 draws). With generated quantities off, programs stay as pinned in tests/golden/
(tests/test_golden.py).
"""
import numpy as np
import pytest
from scipy import stats

import stangen
from stangen.cli import main
from stangen.core.errors import SpecError
from stangen.fitting import Fit
from stangen.compiler.model import describe
from stangen.compiler.program import build
from stangen.results.compare import compare
from stangen.run.stanc import check

from conftest import read_example, GOLDEN, SPECS

pytestmark = pytest.mark.sampling
SHORT = dict(chains=4, warmup=300, draws=300, seed=7, quiet=True, backend="pystan")
BOTH = ("y_rep", "log_lik")
SPEC_FILES = sorted(SPECS.glob("*.yaml"))


def sleepstudy(varying: list[str]) -> stangen.Spec:
    """specs/sleepstudy.yaml with other varying coefficients (same name, so the spec-as-written program is shared)."""
    base = stangen.Spec.from_yaml(SPECS / "sleepstudy.yaml")
    return stangen.Spec.from_dict({**base.to_dict(), "levels": {"Subject": {"varying": varying}}},
                                  base_dir=SPECS)


@pytest.fixture(scope="module")
def fits():
    return {"intercept": stangen.fit(sleepstudy(["intercept"]), generated=BOTH, **SHORT),
            "slope": stangen.fit(SPECS / "sleepstudy.yaml", generated=BOTH, **SHORT)}


# -- the program ------------------------------------------------------------------------------

@pytest.mark.parametrize("spec_file", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_off_by_default_leaves_the_program_as_pinned(spec_file):
    assert build(spec_file, generated=()).code == build(spec_file).code == (GOLDEN / f"{spec_file.stem}.stan").read_text()


@pytest.mark.stanc
@pytest.mark.parametrize("spec_file", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_program_with_generated_quantities_passes_stanc(spec_file):
    code = build(spec_file, generated=BOTH).code
    check(code)
    assert "y_rep" in code and "log_lik" in code
    # the pinned program is a prefix of the new one up to generated quantities: the model block is unchanged
    pinned = (GOLDEN / f"{spec_file.stem}.stan").read_text()
    assert code.split("generated quantities")[0] == pinned.split("generated quantities")[0]


@pytest.mark.stanc
@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson"])
@pytest.mark.parametrize("levels", [{}, {"Subject": {"varying": ["intercept"]}}], ids=["no levels", "levels"])
@pytest.mark.parametrize("predictors", [[], ["Days"]], ids=["no terms", "terms"])
def test_other_families_pass_stanc(family, levels, predictors):
    raw = {k: v for k, v in sleepstudy(["intercept"]).to_dict().items() if k != "data"}  # program only
    raw |= {"family": family, "levels": levels, "predictors": predictors}
    if family == "binomial":
        raw["trials"] = "n"
    code = build(stangen.Spec.from_dict(raw), generated=BOTH).code
    check(code)
    assert "array[N] int y_rep;" in code


def test_choice_of_generated_quantities_is_normalized_and_checked():
    spec = stangen.Spec.from_yaml(SPECS / "sleepstudy.yaml")
    assert describe(spec, generated=["log_lik", "y_rep", "log_lik"]).generated == BOTH
    assert describe(spec, generated="log_lik, y_rep").generated == BOTH
    assert describe(spec).generated == ()
    assert build(spec, generated=("log_lik", "y_rep")).code == build(spec, generated="y_rep,log_lik").code
    with pytest.raises(SpecError, match="unknown generated quantity 'yrep'"):
        describe(spec, generated=("yrep",))


# -- fits -------------------------------------------------------------------------------------

def test_groups_of_the_inference_data(fits):
    fit = fits["slope"]
    idata = fit.idata
    assert {"posterior_predictive", "log_likelihood", "observed_data"} <= set(idata.groups())
    assert "y_rep" not in idata.posterior and "log_lik" not in idata.posterior
    assert idata.posterior_predictive["y"].dims == ("chain", "draw", "obs")
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "obs")
    assert idata.observed_data["y"].dims == ("obs",)
    assert idata.posterior_predictive["y"].shape == (4, 300, 180)
    assert fit.info["generated"] == list(BOTH)


@pytest.mark.parametrize("model", ["intercept", "slope"])
def test_posterior_predictive_draws_resemble_the_data(fits, model):
    fit = fits[model]
    y = fit.idata.observed_data["y"].values
    y_rep = fit.idata.posterior_predictive["y"].values.reshape(-1, y.size)
    assert abs(y_rep.mean() - y.mean()) < 0.1 * y.std()
    # per observation, the predictive mean follows the data; the spread per draw is that of the data
    assert np.corrcoef(y_rep.mean(axis=0), y)[0, 1] > 0.7
    assert 0.8 < np.median(y_rep.std(axis=1)) / y.std() < 1.2


@pytest.mark.parametrize("model", ["intercept", "slope"])
def test_log_lik_equals_a_recomputation_from_the_posterior(fits, model):
    """The linear predictor of generated quantities is the model block's: recompute log_lik with numpy/scipy
    from the reported (original-scale) Intercept, slope and group deviations, whichever way the levels were
    sampled (this also checks the transformation back from the sampler's scale)."""
    fit = fits[model]
    post, data = fit.posterior, fit.program.stan_data
    idx = np.asarray(data["idx_Subject"]) - 1
    days = read_example("sleepstudy").Days.to_numpy(dtype=float)
    log_lik = fit.idata.log_likelihood["y"].values
    for chain, draw in [(0, 0), (1, 57), (3, 299)]:
        at = lambda name: post[name].values[chain, draw]  # noqa: E731
        u = at("u_Subject")
        mu = at("Intercept") + at("beta_Days") * days
        mu = mu + (u[idx] if model == "intercept" else u[idx, 0] + u[idx, 1] * days)
        expected = stats.norm.logpdf(data["y"], mu, at("sigma"))
        np.testing.assert_allclose(log_lik[chain, draw], expected, rtol=1e-6, atol=1e-8)


def test_compare_ranks_the_random_slope_model_first(fits):
    table = compare(fits)
    assert list(table.columns[:7]) == ["rank", "elpd_loo", "se", "elpd_diff", "dse", "p_loo", "weight"]
    assert list(table.index) == ["slope", "intercept"]
    assert list(table["rank"]) == [1, 2]
    # lme4 (likelihood ratio test) and textbooks agree: sleepstudy needs the varying Days slope. (LOO sees
    # it less sharply: a few outlying reaction times make dse large; here elpd_diff is about 23 +- 12.)
    assert table.loc["intercept", "elpd_diff"] > table.loc["intercept", "dse"]
    assert table.loc["slope", "weight"] > 0.75
    # a few influential observations (as in brms's sleepstudy examples); counted, per run
    assert table.loc["slope", "k_bad"] + table.loc["slope", "k_warn"] > 0


def test_compare_command(fits, tmp_path, capsys):
    dirs = {name: str(fit.save(tmp_path / name)) for name, fit in fits.items()}
    assert main(["compare", dirs["intercept"], dirs["slope"]]) == 0
    out = capsys.readouterr().out
    rows = [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] in dirs]
    assert rows == ["slope", "intercept"]
    assert "Pareto k" in out


def test_compare_command_needs_log_lik(fits, tmp_path, capsys):
    fit = fits["slope"]
    groups = {g: fit.idata[g] for g in fit.idata.groups() if g != "log_likelihood"}
    without = Fit(fit.program, __import__("arviz").InferenceData(**groups), fit.info).save(tmp_path / "no_lik")
    with_lik = fit.save(tmp_path / "slope")
    assert main(["compare", str(with_lik), str(without)]) == 1
    err = capsys.readouterr().err
    assert "no_lik" in err and "--generated log_lik" in err
