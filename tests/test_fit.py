"""Real fits on the embedded backend, checked against lme4 (tests/reference/*.json).

Five programs are compiled (sleepstudy, cbpp, penicillin, pastes, language), once per machine: the compile
cache makes later runs sample only. Runs are short (4 chains x 500 warmup + 500 draws).
"""
import json
from pathlib import Path

import numpy as np
import pytest

import stangen
from stangen.fitting import Fit

from conftest import SHORT_RUN as SHORT
from conftest import SPECS, read_example

pytestmark = pytest.mark.sampling
REFERENCE = Path(__file__).resolve().parent / "reference"
LEVEL_OF_LME4_GROUP = {"cask:batch": "cask"}


def lme4_names(model: str):
    ref = json.loads((REFERENCE / f"{model}.json").read_text())
    ref = ref.get("REML", ref.get("ML"))
    rename = {"(Intercept)": "Intercept", "sch_iqv": "mean_iq_verb"}  # sch_iqv: school mean of iq_verb
    fixef = {rename.get(k, k): v["estimate"] for k, v in ref["fixef"].items()}
    scales, cors = {}, {}
    for row in ref["varcorr"]:
        if row["group"] == "Residual":
            scales["sigma"] = row["sdcor"]
            continue
        level = LEVEL_OF_LME4_GROUP.get(row["group"], row["group"])
        name = lambda v: "intercept" if v == "(Intercept)" else v  # noqa: E731
        if row["var2"] is None:
            scales[f"sd({level}: {name(row['var1'])})"] = row["sdcor"]
        else:
            cors[f"cor({level}: {name(row['var1'])}, {name(row['var2'])})"] = row["sdcor"]
    return fixef, scales, cors


@pytest.fixture
def fits(example_fit):
    return example_fit


@pytest.mark.parametrize("model", ["sleepstudy", "cbpp", "penicillin", "pastes", "language"])
def test_agrees_with_lme4(fits, model):
    fit = fits(model)
    table = fit.summary()
    fixef, scales, cors = lme4_names(model)
    for name, estimate in fixef.items():
        row = table.loc[name]
        # the posterior mean of a fixed effect sits within half a posterior sd of lme4's estimate
        assert abs(row["mean"] - estimate) < 0.5 * row["sd"], (name, row["mean"], estimate, row["sd"])
    for name, estimate in scales.items():
        draws = fit.parameter_draws(name).reshape(-1)
        median, sd = np.median(draws), draws.std()
        # Posteriors of sds are skewed and, with few groups (6 samples, 10 batches), wide; REML's estimate is
        # close to the posterior median rather than the mean. Tolerance: one posterior sd from the median,
        # and inside the 95% interval.
        assert abs(median - estimate) < sd, (name, median, estimate, sd)
        assert np.quantile(draws, 0.025) < estimate < np.quantile(draws, 0.975), name
    for name, estimate in cors.items():
        # sleepstudy's correlation is poorly identified (lme4: 0.07); it must lie inside the 95% interval
        draws = fit.parameter_draws(name).reshape(-1)
        assert np.quantile(draws, 0.025) < estimate < np.quantile(draws, 0.975), name
    assert table["r_hat"].max() < 1.05, table["r_hat"]


def test_group_effects_are_labelled_with_the_data_labels(fits):
    fit = fits("pastes")
    u = fit.posterior["u_cask"]
    assert list(u.coords["cask"].values[:3]) == ["A:a", "A:b", "A:c"]
    sleep = fits("sleepstudy")
    u = sleep.posterior["u_Subject"]
    assert u.dims == ("chain", "draw", "Subject", "Subject_coef")
    assert list(u.coords["Subject_coef"].values) == ["intercept", "Days"]
    assert "308" in u.coords["Subject"].values
    assert set(sleep.idata.sample_stats.data_vars) >= {"diverging", "tree_depth", "energy", "lp"}
    assert sleep.idata.observed_data["y"].size == 180


def test_refit_with_new_data_reuses_the_compiled_program(fits):
    fits("sleepstudy")  # makes sure the program was compiled before
    df = read_example("sleepstudy")
    again = stangen.fit(SPECS / "sleepstudy.yaml", df[df.Subject < 350], backend="pystan",
                        chains=2, warmup=200, draws=200, seed=3, quiet=True)
    assert again.info["compiled_now"] is False
    assert again.program.stan_data["J_Subject"] < 18


def test_same_seed_gives_identical_draws():
    df = read_example("sleepstudy")
    runs = [stangen.fit(SPECS / "sleepstudy.yaml", df, backend="pystan", chains=2, warmup=150, draws=100,
                        seed=seed, quiet=True) for seed in (5, 5, 6)]
    a, b, c = (r.posterior["sigma"].values for r in runs)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_run_directory_round_trip(fits, tmp_path):
    fit = fits("cbpp")
    out = fit.save(tmp_path / "run")
    names = {p.name for p in out.iterdir()}
    assert {"spec.yaml", "model.stan", "data.json", "posterior.nc", "summary.csv", "convergence.json",
            "run.json", "COMPLETE"} <= names
    assert not [n for n in names if n.startswith(".")]
    loaded = Fit.load(out)
    assert loaded.program.code == fit.program.code
    np.testing.assert_allclose(loaded.summary()["mean"], fit.summary()["mean"])
    (out / "COMPLETE").unlink()
    with pytest.raises(stangen.StangenError, match="not a complete run") as info:
        Fit.load(out)
    assert info.value.exit_code == 1


@pytest.mark.skipif(not __import__("stangen.run.backends", fromlist=["x"]).cmdstan_available(),
                    reason="CmdStan is not installed (stangen install-cmdstan needs internet); "
                           "the embedded backend is tested above")
def test_cmdstan_backend_agrees_with_embedded_backend(fits):
    embedded = fits("sleepstudy").summary()
    other = stangen.fit(SPECS / "sleepstudy.yaml", backend="cmdstan", **SHORT).summary()
    assert (abs(other["mean"] - embedded["mean"]) < 0.5 * embedded["sd"]).all()
    assert other["r_hat"].max() < 1.05
