"""Prior predictive checks and prior vs posterior (issue 29): a prior-only fit's predicted data sets against the
data, with a note when the priors predict absurd values; each population-level parameter's prior drawn in numpy
beside its posterior."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import stangen
from stangen.results.plots import all_plots
from stangen.results.prior_check import ABSURD_FACTOR, prior_and_posterior, prior_predictive
from stangen.spec.priors import draw_prior

from conftest import ROOT, SPECS
from test_predict import fake_fit


def test_priors_are_drawn_inside_the_parameter_s_bounds():
    rng = np.random.default_rng(1)
    half = draw_prior("normal", {"location": 0.0, "scale": 2.0}, 200_000, rng, lower=0.0)
    assert half.min() > 0 and half.mean() == pytest.approx(2 * np.sqrt(2 / np.pi), rel=0.01)
    t = draw_prior("student_t", {"df": 3.0, "location": 1.0, "scale": 2.0}, 200_000, rng)
    assert np.median(t) == pytest.approx(1.0, abs=0.03)
    assert draw_prior("gamma", {"shape": 2.0, "rate": 0.1}, 200_000, rng, lower=1.0).min() > 1
    assert draw_prior("exponential", {"rate": 0.5}, 200_000, rng).mean() == pytest.approx(2.0, rel=0.01)
    assert draw_prior("lkj", {"eta": 2.0}, 10, rng) is None
    # a prior with little mass inside the bounds (normal(-5, 1) on an sd) still gives its draws, all inside
    far = draw_prior("normal", {"location": -5.0, "scale": 1.0}, 1000, rng, lower=0.0)
    assert len(far) == 1000 and far.min() > 0
    assert draw_prior("normal", {"location": 0.0, "scale": 1.0}, 10, rng, lower=50.0) is None  # none inside


def test_counts_drawn_with_a_vanishing_phi_are_counts():
    """The vague default gamma(0.01, 0.01) on phi reaches 1e-300 and below in a prior-only fit: draws stay
    non-negative counts (no NaN rate, no inf quantile cast to a negative integer)."""
    from stangen.core.families import FAMILIES
    rng = np.random.default_rng(2)
    eta = np.full(200, 3.0)
    for phi in (1e-320, 1e-30, 1e-3, 5.0):
        counts = FAMILIES["negbinomial"].draw(eta, {"phi": np.float64(phi)}, None, None, rng)
        assert counts.min() >= 0 and np.isfinite(counts).all()
        positive = FAMILIES["hurdle_negbinomial"].base.draw_positive(eta, {"phi": np.float64(phi)}, rng)
        assert positive.min() >= 1
    many = FAMILIES["negbinomial"].draw(np.full(200_000, 1.0), {"phi": np.float64(2.0)}, None, None, rng)
    mu = np.e
    assert many.mean() == pytest.approx(mu, rel=0.02) and many.var() == pytest.approx(mu + mu ** 2 / 2, rel=0.05)


def test_the_prior_predictive_table_summarizes_each_predicted_data_set():
    fit = fake_fit(SPECS / "owls.yaml")
    fit.info["prior_only"] = True
    check = prior_predictive(fit)
    y = np.asarray(fit.program.stan_data["y"], dtype=float)
    assert check.table.loc["max", "data"] == y.max() and check.table.loc["share of zeros", "data"] == (y == 0).mean()
    assert check.limit == ABSURD_FACTOR * y.max() and check.beyond == 0
    # the made-up draws (all near 0) predict a few calls and hardly any zeros: none of the 10 data sets reaches the
    # data's share of zeros, a prior-data conflict (Box's p-value 0)
    assert check.table.loc["share of zeros", "tail"] == 0 and "beyond" not in check.note
    assert "the priors hardly allow the data's mean (6.72; predicted 5–95%" in check.note
    assert "share of zeros (0.2604" in check.note
    fit.posterior["Intercept"] = fit.posterior["Intercept"] + 12  # e^12 calls per chick: absurd
    absurd = prior_predictive(fit)
    assert absurd.beyond > 0.5 and "beyond 100 times the data's largest (3200)" in absurd.note
    assert absurd.table.loc["median", "predicted 50%"] > 10_000
    assert "Prior predictive check (10 data sets of calls" in absurd.text() and "Note: the priors put" in absurd.text()
    bounded = fake_fit(SPECS / "cbpp.yaml")  # a binomial count cannot exceed its trials: nothing to flag
    check = prior_predictive(bounded)
    assert check.limit is None and "beyond" not in check.note and "Share beyond" not in check.text()


def test_prior_and_posterior_pairs_every_number_a_prior_is_on(tmp_path):
    fit = fake_fit(SPECS / "owls.yaml")
    pairs = {name: (stan, prior, posterior) for name, stan, prior, posterior in prior_and_posterior(fit)}
    assert set(pairs) >= {"foodSatiated", "sexMale", "foodSatiated:sexMale", "sd(nest: intercept)"}
    stan, prior, posterior = pairs["sd(nest: intercept)"]
    assert stan == "sd_nest" and prior.min() > 0 and prior.mean() == pytest.approx(1.0, rel=0.1)  # exponential(1)
    assert np.array_equal(posterior, fit.posterior["sd_nest"].values.reshape(-1))
    plots = all_plots(fit, tmp_path)
    assert plots.paths["prior_posterior"].exists()
    fit.info["prior_only"] = True
    assert "prior_posterior" not in all_plots(fit, tmp_path).paths


@pytest.mark.sampling
def test_wide_priors_get_the_absurd_prior_predictive_note_and_the_defaults_do_not(tmp_path, capsys):
    """Owls' poisson counts: normal(0, 10) on the coefficients predicts counts far beyond anything observed;
    the default priors (2.5 per two sds on the log scale) do not. Both from the same program (prior_only is
    data), through `stangen fit --prior-only` and its report."""
    from stangen.cli import main
    spec = stangen.Spec.from_yaml(SPECS / "owls.yaml")
    wide = stangen.Spec.from_dict({**spec.to_dict(), "priors": {"coefficients": "normal(0, 10)"}},
                                  base_dir=spec.base_dir)
    wide_check = stangen.fit(wide, prior_only=True, quiet=True, backend="pystan").prior_predictive()
    assert wide_check.note and wide_check.beyond > 0.2, wide_check.text()
    (tmp_path / "owls.yaml").write_text((SPECS / "owls.yaml").read_text().replace(
        "../examples/data/owls.csv", str(ROOT / "examples" / "data" / "owls.csv")))
    run = tmp_path / "prior"
    assert main(["fit", str(tmp_path / "owls.yaml"), "--prior-only", "--backend", "pystan", "--quiet",
                 "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "Prior predictive check (4000 data sets of calls" in out and "Note:" not in out, out
    report = (run / "report.md").read_text()
    assert "## Prior predictive check" in report and "**PASS**" in report.split("## Prior predictive check")[1]
    default = stangen.Fit.load(run).prior_predictive()
    assert default.beyond < 0.05 and default.note == ""
    frame = pd.read_csv(ROOT / "examples" / "data" / "owls.csv")
    assert default.table.loc["max", "data"] == frame["calls"].max()
